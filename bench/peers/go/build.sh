#!/bin/bash
# Builds the Go peer offline as OUT_DIR/go-peer: standard library only, Debian's golang-go.
#
#     bench/peers/go/build.sh OUT_DIR     (an absolute path; created if missing)
#
# Prints "built go-peer" on success; on failure one line on stderr saying why, and exits 1.
# The Go build cache lives under OUT_DIR, so a rebuild with nothing changed is quick.
set -u

fail() {
    echo "go-peer: $*" >&2
    exit 1
}

[ $# -eq 1 ] || fail "usage: build.sh OUT_DIR"
case "$1" in
/*) out=$1 ;;
*) fail "OUT_DIR must be an absolute path, got '$1'" ;;
esac

go=/usr/bin/go
[ -x "$go" ] || fail "golang-go is not installed ($go is missing)"

src=$(cd "$(dirname "$0")" && pwd) || fail "cannot find the peer's source directory"
mkdir -p "$out/go-peer.build" || fail "cannot create $out/go-peer.build"
log="$out/go-peer.build/build.log"

# No module is downloaded (go.mod has no requirements): GOPROXY=off makes sure nothing tries.
# GOFLAGS, GOWORK and GOTOOLCHAIN from the caller's environment must not change the build.
# CGO_ENABLED=0: pure Go (net's own resolver), no C compiler involved.
if ! (cd "$src" && env -u GOTOOLCHAIN -u GOFLAGS -u GOOS -u GOARCH \
    GOCACHE="$out/go-peer.build/cache" GOPATH="$out/go-peer.build/gopath" \
    GOPROXY=off GOWORK=off GO111MODULE=on CGO_ENABLED=0 \
    "$go" build -trimpath -o "$out/go-peer" .) >"$log" 2>&1; then
    # The first line that is not a "# package" heading says what went wrong.
    why=$(grep -v '^#' "$log" | head -n 1)
    fail "go build failed: ${why:-see $log} (full log: $log)"
fi
echo "built go-peer"
