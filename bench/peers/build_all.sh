#!/usr/bin/env bash
# Build every compiled peer of the benchmark suite into OUT_DIR, as OUT_DIR/<name>-peer:
#
#     bench/peers/build_all.sh OUT_DIR
#
# Runs bench/peers/<name>/build.sh OUT_DIR for tokio, go, libuv and asio; prints one line per
# peer ("tokio: built" or "tokio: NOT BUILT: <the last line its build script wrote on stderr>")
# and writes OUT_DIR/status.json, e.g. {"tokio": {"built": true}, "go": {"built": false,
# "reason": "..."}}, which bench/run_bench.py reads to report a missing peer with its reason.
# Exits 0 even when a peer failed to build (that peer is reported, not fatal); 2 on a usage error.
set -euo pipefail

peers=(tokio go libuv asio)

if (($# != 1)) || [[ $1 == -h || $1 == --help ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# The build scripts want an absolute path.
out=$(readlink -m "$1")
mkdir -p "$out"

# A JSON string literal for one line of text: quotes and backslashes escaped, control characters
# (there should be none on one line, but a build tool may print a tab) turned into spaces.
json_string() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=$(printf '%s' "$s" | tr '\000-\037' ' ')
    printf '"%s"' "$s"
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
entries=()
for name in "${peers[@]}"; do
    script=$here/$name/build.sh
    reason=
    if [[ ! -f $script ]]; then
        reason="bench/peers/$name/build.sh not found"
    elif bash "$script" "$out" >/dev/null 2>"$log"; then
        if [[ ! -x $out/$name-peer ]]; then
            reason="build.sh succeeded but did not produce $out/$name-peer"
        fi
    else
        status=$?
        # The script's own one-line explanation is its last non-empty line on stderr.
        reason=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)
        reason=${reason:-"build.sh exited with status $status and printed nothing on stderr"}
    fi
    if [[ -z $reason ]]; then
        echo "$name: built"
        entries+=("$(json_string "$name"): {\"built\": true}")
    else
        echo "$name: NOT BUILT: $reason"
        entries+=("$(json_string "$name"): {\"built\": false, \"reason\": $(json_string "$reason")}")
    fi
done

# Written whole, then renamed, so that a reader never sees half a file.
{
    printf '{\n'
    for i in "${!entries[@]}"; do
        sep=,
        ((i == ${#entries[@]} - 1)) && sep=
        printf '  %s%s\n' "${entries[$i]}" "$sep"
    done
    printf '}\n'
} >"$out/status.json.tmp"
mv "$out/status.json.tmp" "$out/status.json"
