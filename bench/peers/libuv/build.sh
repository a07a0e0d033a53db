#!/bin/bash
# Builds the libuv peer as OUT_DIR/libuv-peer from libuv_peer.c and Debian's libuv1-dev.
#
#     bench/peers/libuv/build.sh OUT_DIR     (an absolute path; created if missing)
#
# Prints "built libuv-peer" on success; on failure one line on stderr saying why, and exits 1.
# Nothing is compiled when the executable is newer than the source and this script.
set -u

fail() {
    echo "libuv-peer: $*" >&2
    exit 1
}

[ $# -eq 1 ] || fail "usage: build.sh OUT_DIR"
case "$1" in
/*) out=$1 ;;
*) fail "OUT_DIR must be an absolute path, got '$1'" ;;
esac

src=$(cd "$(dirname "$0")" && pwd) || fail "cannot find the peer's source directory"
exe="$out/libuv-peer"

command -v cc >/dev/null 2>&1 || fail "no C compiler: cc is not installed"
command -v pkg-config >/dev/null 2>&1 || fail "pkg-config is not installed"
flags=$(pkg-config --cflags --libs libuv 2>/dev/null) || fail "libuv1-dev is not installed"

if [ -x "$exe" ] && [ "$exe" -nt "$src/libuv_peer.c" ] && [ "$exe" -nt "$src/build.sh" ]; then
    echo "built libuv-peer"
    exit 0
fi

mkdir -p "$out" || fail "cannot create $out"
log="$out/libuv-peer.build.log"
# Compile to a temporary name and rename, so that a failed build never leaves a stale or
# half-written executable that the up-to-date check above would accept.
# shellcheck disable=SC2086  # $flags is a list of words from pkg-config
if ! cc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$exe.tmp" "$src/libuv_peer.c" $flags \
    >"$log" 2>&1; then
    rm -f "$exe.tmp"
    why=$(grep -m 1 -E 'error|Error' "$log")
    fail "cc failed: ${why:-see $log} (full log: $log)"
fi
mv -f "$exe.tmp" "$exe" || fail "cannot move $exe.tmp to $exe"
echo "built libuv-peer"
