#!/usr/bin/env bash
# Install missing dependencies, then configure, build and run every test (debug preset).
# Extra arguments go to ctest, e.g. `scripts/test.sh -R timeout`.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

scripts/deps.sh
cmake --preset debug
cmake --build --preset debug
ctest --preset debug "$@"
