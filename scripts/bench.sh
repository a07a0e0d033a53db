#!/usr/bin/env bash
# The benchmark suite in one command (bench/run_bench.py compares corio with its peers):
# install the missing Debian packages, build corio's release preset (the bench programs land in
# build/release/bench) and the peers (build/peers), then run the suite.
#
#     scripts/bench.sh [--quick] [other bench/run_bench.py options]
#
# The report goes to bench/results/DATE.md (DATE-quick.md with --quick), the raw samples to
# DATE.json and the plots to DATE/; --help lists run_bench.py's options. The full run takes about
# 15 minutes, --quick about 2.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

for arg in "$@"; do
    if [[ $arg == -h || $arg == --help ]]; then
        sed -n '2,10p' "$0"
        echo
        exec /usr/bin/python3 bench/run_bench.py --help
    fi
done

scripts/deps.sh --bench
cmake --preset release
cmake --build --preset release
bench/peers/build_all.sh build/peers
# Debian's interpreter: python3-uvloop is installed for it, not for another python3 on PATH.
exec /usr/bin/python3 bench/run_bench.py "$@"
