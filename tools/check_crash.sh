#!/usr/bin/env bash
# Usage: check_crash.sh <path to crash_demo>
#
# A corio program that dies in three nested coroutines must say which task was running, its
# await chain and its native stack on stderr, and still die of the same signal (exit status
# 128 + signal), also through a handler installed before corio's, and not at all with
# CORIO_CRASH_HANDLER=0.
set -uo pipefail
demo=${1:?usage: check_crash.sh <path to crash_demo>}

failures=0
fail() {
    echo "check_crash: $*" >&2
    failures=$((failures + 1))
}
run() {  # run <mode> [env...]: sets out (stderr) and status
    out=$(env "${@:2}" "$demo" "$1" 2>&1 >/dev/null)
    status=$?
}
expect() {  # expect <what> <extended regex>
    grep -qE -- "$2" <<<"$out" || fail "$1: no line matching '$2' in:
$out"
}
expect_status() {  # expect_status <what> <status>
    ((status == $2)) || fail "$1: exit status $status, expected $2"
}
expect_chain() {  # the task and its three coroutines, innermost first, with file:line
    expect "$1" "^  running task: doomed$"
    expect "$1" "^  await chain \(innermost first"
    local chain
    chain=$(grep -E '^    (innermost|middle|outermost) at .*crash_demo\.cpp:[0-9]+$' <<<"$out" |
        sed -E 's/^    ([a-z]+) at .*/\1/' | tr '\n' ' ')
    [[ $chain == "innermost middle outermost " ]] ||
        fail "$1: the await chain reads '$chain', expected 'innermost middle outermost'"
    expect "$1" "^  native stack:$"
    # With debug information the frame has its file and line; a release build has only names.
    expect "$1" "^    #[0-9]+ 0x[0-9a-f]+ in .*crash_here.*$"
}

run segv
expect "segv" "^corio: the process is dying of SIGSEGV"
expect_chain "segv"
expect_status "segv" 139

run abort
expect "abort" "^corio: the process is dying of SIGABRT"
expect_chain "abort"
expect_status "abort" 134

run terminate
expect "terminate" "^corio: std::terminate was called with an exception: boom$"
expect "terminate" "^corio: the process is dying of std::terminate$"
expect_chain "terminate"
expect_status "terminate" 134

run chained
expect "chained" "^corio: the process is dying of SIGSEGV"
expect "chained" "^crash_demo: the handler installed before corio ran$"
expect_status "chained" 139

run segv CORIO_CRASH_HANDLER=0
if grep -q "^corio:" <<<"$out"; then fail "CORIO_CRASH_HANDLER=0 still reported: $out"; fi
expect_status "segv with CORIO_CRASH_HANDLER=0" 139

if ((failures > 0)); then
    echo "----- $failures check(s) failed -----" >&2
    exit 1
fi
echo "check_crash: all checks passed"
