#!/usr/bin/env bash
# Install missing dependencies, build the tour (release preset) and run it.
# Extra arguments go to the tour binary.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

scripts/deps.sh
cmake --preset release
cmake --build --preset release --target corio_tour
exec build/release/examples/corio_tour "$@"
