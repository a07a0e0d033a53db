#!/usr/bin/env bash
# Install the Debian packages corio's build, tests and CI need, but only those that are missing,
# so running it every time is cheap.
#   --bench   also install what the benchmarks and their peers need (bench/README.md): Google
#             Benchmark, uvloop, libuv, Asio, Rust's tokio crates, Go, wrk, nginx, matplotlib
set -euo pipefail

packages=(cmake ninja-build g++ clang clang-format libgtest-dev libgmock-dev libbenchmark-dev
    libclang-rt-14-dev python3 git curl socat netcat-openbsd)
# libclang-rt-14-dev: clang's sanitizer runtimes; clang-format: the format check in .ci/run;
# python3, curl, socat and nc: clients of the server examples' tests.

for arg in "$@"; do
    case $arg in
        --bench)
            packages+=(python3-uvloop libuv1-dev libasio-dev cargo rustc librust-tokio-dev golang-go
                wrk nginx-light python3-matplotlib util-linux)
            ;;
        -h | --help)
            sed -n '2,5p' "$0"
            exit 0
            ;;
        *)
            echo "deps.sh: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

missing=()
for package in "${packages[@]}"; do
    # dpkg-query fails for packages dpkg has never heard of; that simply means "missing".
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "deps.sh: all ${#packages[@]} required packages are installed"
    exit 0
fi

as_root=()
if ((EUID != 0)); then
    as_root=(sudo)
fi
echo "deps.sh: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
echo "deps.sh: installed ${missing[*]}"
