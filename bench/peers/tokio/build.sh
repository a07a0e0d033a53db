#!/usr/bin/env bash
# Builds the tokio peer offline with Debian's Rust toolchain and crates:
#
#     bench/peers/tokio/build.sh OUT_DIR     (an absolute path; created if missing)
#
# produces OUT_DIR/tokio-peer. Prints "built tokio-peer" on success; on failure, one line on
# stderr saying why, and exits 1. Everything cargo writes (a copy of the sources, Cargo.lock,
# CARGO_HOME, the target directory) lives under OUT_DIR, so the source tree stays clean and a
# second run with nothing changed only checks fingerprints.
set -euo pipefail

fail() {
    echo "tokio build.sh: $*" >&2
    exit 1
}

[[ $# -eq 1 && $1 == /* ]] || fail "usage: build.sh OUT_DIR (an absolute path)"
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
registry=/usr/share/cargo/registry

# Debian's toolchain by absolute path: a rustup cargo or rustc earlier on PATH (~/.cargo/bin)
# would not build against Debian's crates the same way.
[[ -x /usr/bin/cargo ]] || fail "cargo is not installed (apt-get install cargo)"
[[ -x /usr/bin/rustc ]] || fail "rustc is not installed (apt-get install rustc)"
for crate in tokio tokio-macros libc; do
    compgen -G "$registry/$crate-[0-9]*" >/dev/null ||
        fail "librust-$crate-dev is not installed (no $registry/$crate-*)"
done

mkdir -p "$out" || fail "cannot create $out"
src=$out/tokio-src
cargo_home=$out/tokio-cargo-home
log=$out/tokio-build.log

# Copy the sources, touching only the files that changed, so that cargo's fingerprints (which
# include modification times) stay valid between runs.
(
    cd "$here"
    find Cargo.toml src -type f
) | while IFS= read -r file; do
    if ! cmp -s "$here/$file" "$src/$file"; then
        install -D -m 644 "$here/$file" "$src/$file" || exit 1
    fi
done || fail "cannot copy the sources to $src"
# A source file removed from the repository must not linger in the copy.
if [[ -d $src/src ]]; then
    (
        cd "$src"
        find src -type f
    ) | while IFS= read -r file; do
        [[ -e $here/$file ]] || rm -f "$src/$file" || exit 1
    done || fail "cannot remove stale sources from $src"
fi

# A private CARGO_HOME whose crates.io is Debian's directory of crate sources.
mkdir -p "$cargo_home" || fail "cannot create $cargo_home"
cat >"$cargo_home/config.toml" <<EOF || fail "cannot write $cargo_home/config.toml"
[source.crates-io]
replace-with = "debian-packages"

[source.debian-packages]
directory = "$registry"

[net]
offline = true
EOF

# Resolve afresh each time against the crates Debian has installed now (a stale lock could name
# a version an upgrade removed); an unchanged resolution does not cause a rebuild.
rm -f "$src/Cargo.lock"

# From the copy: cargo also reads .cargo/config.toml files up from its working directory, and
# the caller's may hold some.
if ! (cd "$src" && exec env CARGO_HOME="$cargo_home" CARGO_TARGET_DIR="$out/tokio-target" \
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc PATH="/usr/bin:/bin:$PATH" \
    /usr/bin/cargo build --release --offline) >"$log" 2>&1; then
    reason=$(grep -m1 -E '^error' "$log" || true)
    fail "cargo build failed: ${reason:-see the log} (full log: $log)"
fi

# Copy then rename, so that a running tokio-peer is never overwritten in place.
if ! cp "$out/tokio-target/release/tokio-peer" "$out/tokio-peer.tmp" ||
    ! mv -f "$out/tokio-peer.tmp" "$out/tokio-peer"; then
    fail "cannot install $out/tokio-peer"
fi
echo "built tokio-peer"
