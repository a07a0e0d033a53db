#!/bin/bash
# Builds the Asio peer: bench/peers/asio/build.sh OUT_DIR  ->  OUT_DIR/asio-peer
#
# Offline, from Debian's packages only: libasio-dev (standalone Asio, header-only) and g++.
# Prints "built asio-peer" on success; on failure one line on stderr saying why, and exits 1.
# Idempotent: when neither the source, this script nor the compile command changed since the
# last build, nothing is compiled (compiling Asio takes several seconds).
set -u -o pipefail

fail() {
    echo "asio build: $*" >&2
    exit 1
}

[ $# -eq 1 ] || fail "usage: build.sh OUT_DIR"
case "$1" in
    /*) out=$1 ;;
    *) fail "OUT_DIR must be an absolute path (got '$1')" ;;
esac

here=$(cd "$(dirname "$0")" && pwd) || fail "cannot find the script's directory"
src="$here/asio_peer.cpp"
[ -f "$src" ] || fail "$src is missing"
[ -f /usr/include/asio.hpp ] || fail "libasio-dev is not installed"
cxx=${CXX:-g++}
command -v "$cxx" >/dev/null 2>&1 || fail "$cxx is not installed (Debian package g++)"

mkdir -p "$out" || fail "cannot create $out"
bin="$out/asio-peer"
stamp="$out/asio-peer.cmd"  # the compile command of the current binary
log="$out/asio-peer.log"    # the compiler's messages of the last build
cmd=("$cxx" -std=c++20 -O2 -DNDEBUG -Wall -Wextra -Werror -pthread -o "$bin.tmp" "$src")

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$bin" -nt "$src" ] && [ "$bin" -nt "$here/build.sh" ] &&
    [ "$(cat "$stamp")" = "${cmd[*]}" ]; then
    echo "built asio-peer"
    exit 0
fi

# Build into a temporary name, so that a failed build never leaves a broken asio-peer behind.
if ! "${cmd[@]}" >"$log" 2>&1; then
    rm -f "$bin.tmp"
    fail "compiling $src failed (first error: $(grep -m1 ' error: ' "$log" || echo 'see log')); full log: $log"
fi
mv -f "$bin.tmp" "$bin" || fail "cannot move the binary to $bin"
printf '%s\n' "${cmd[*]}" >"$stamp" || fail "cannot write $stamp"
echo "built asio-peer"
