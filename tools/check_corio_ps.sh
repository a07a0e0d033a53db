#!/usr/bin/env bash
# Usage: check_corio_ps.sh <dir with corio-ps, corio-pstree and corio_ps_demo>
#
# Runs corio-ps and corio-pstree against a live corio program (tools/ps_demo.cpp): once while its
# loop waits, once while a task blocks it (the endpoint must still answer, from another thread),
# as another user (who must get nothing), and against a process that is not a corio program.
set -uo pipefail
dir=${1:?usage: check_corio_ps.sh <build dir of the tools>}
ps=$dir/corio-ps
pstree=$dir/corio-pstree
demo=$dir/corio_ps_demo
source_file=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/ps_demo.cpp

failures=0
fail() {
    echo "check_corio_ps: $*" >&2
    failures=$((failures + 1))
}
line_of() {  # the line of ps_demo.cpp marked "// LINE <name>"
    grep -n "// LINE $1\$" "$source_file" | cut -d: -f1
}
expect() {  # expect <what> <output> <extended regex>
    grep -qE -- "$3" <<<"$2" || fail "$1: no line matching '$3' in:
$2"
}

start_demo() {  # start_demo [stuck]: runs the demo in the background, sets demo_pid
    exec {demo_out}< <("$demo" "$@")
    demo_pid=$!
    local line
    if ! read -r -t 20 line <&"$demo_out" || [[ $line != "ready "* ]]; then
        fail "the demo did not start (read '$line')"
        return 1
    fi
    demo_pid=${line#ready }
}
stop_demo() {
    kill "$demo_pid" 2>/dev/null
    exec {demo_out}<&-
}

read_line=$(line_of read_reply)
fetch_line=$(line_of fetch)

# A loop that waits: every task, its coroutine stack with the lines of its co_awaits, and who
# awaits it (the TaskGroup's children are awaited by the task that runs the group).
if start_demo; then
    out=$("$ps" "$demo_pid" 2>&1) || fail "corio-ps exited with $?: $out"
    expect "corio-ps" "$out" "^loop 0 \((epoll|poll), thread [0-9]+\): running$"
    expect "corio-ps" "$out" "iterations, [0-9]+ polls, [0-9]+ task steps"
    expect "corio-ps" "$out" "^  TASK +NAME +STATE +COROUTINE STACK \(innermost first\) +AWAITED BY$"
    expect "corio-ps" "$out" "^  0x[0-9a-f]+ +fetch-a +waiting +read_reply ps_demo.cpp:$read_line <- fetch ps_demo.cpp:$fetch_line +Task-1$"
    expect "corio-ps" "$out" "^  0x[0-9a-f]+ +fetch-b +waiting +read_reply ps_demo.cpp:$read_line <- fetch ps_demo.cpp:$fetch_line +Task-1$"
    expect "corio-ps" "$out" "^  0x[0-9a-f]+ +Task-1 +waiting +.*amain ps_demo.cpp:[0-9]+$"

    out=$("$pstree" "$demo_pid" 2>&1) || fail "corio-pstree exited with $?: $out"
    expect "corio-pstree" "$out" "^└── \(T\) Task-1$"
    expect "corio-pstree" "$out" "^    └──  amain ps_demo.cpp:[0-9]+$"
    expect "corio-pstree" "$out" "├── \(T\) fetch-a$"
    expect "corio-pstree" "$out" "└──  fetch ps_demo.cpp:$fetch_line$"
    expect "corio-pstree" "$out" "└──  read_reply ps_demo.cpp:$read_line$"

    # Another user gets nothing (SO_PEERCRED), when we can become one.
    if ((EUID == 0)) && command -v setpriv >/dev/null; then
        if out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$ps" "$demo_pid" 2>&1); then
            fail "another user could read the tasks: $out"
        else
            expect "corio-ps as another user" "$out" "did not answer"
        fi
    else
        echo "check_corio_ps: not root, skipping the other-user check"
    fi
    stop_demo
fi

# A loop stuck in a blocking call: the answer comes within about a second anyway, says the loop
# is stuck, and marks the task that blocks it as running.
if start_demo stuck; then
    sleep 0.5  # the blocker starts blocking 200 ms after the tasks are ready
    start=$(date +%s%N)
    out=$("$ps" "$demo_pid" 2>&1) || fail "corio-ps on a stuck loop exited with $?: $out"
    took_ms=$((($(date +%s%N) - start) / 1000000))
    ((took_ms < 3000)) || fail "corio-ps took $took_ms ms on a stuck loop (expected about 1 s)"
    expect "corio-ps (stuck)" "$out" "STUCK: it did not answer within 1 s"
    expect "corio-ps (stuck)" "$out" "^  0x[0-9a-f]+ +blocker +running +blocker ps_demo.cpp:[0-9]+ +Task-1$"
    expect "corio-ps (stuck)" "$out" "^  0x[0-9a-f]+ +fetch-a +waiting +read_reply ps_demo.cpp:$read_line"
    out=$("$pstree" "$demo_pid" 2>&1) || fail "corio-pstree on a stuck loop exited with $?: $out"
    expect "corio-pstree (stuck)" "$out" "\(T\) blocker  \[running\]$"
    stop_demo
fi

# Not a corio program: a clear error, exit status 1.
sleep 30 &
other=$!
if out=$("$ps" "$other" 2>&1); then
    fail "corio-ps succeeded on a process that is not a corio program: $out"
else
    expect "corio-ps on sleep" "$out" "cannot reach process $other"
fi
kill "$other" 2>/dev/null
wait "$other" 2>/dev/null
if out=$("$ps" not-a-pid 2>&1); then fail "corio-ps accepted 'not-a-pid'"; fi
expect "corio-ps not-a-pid" "$out" "not a process id: 'not-a-pid'"

if ((failures > 0)); then
    echo "----- $failures check(s) failed -----" >&2
    exit 1
fi
echo "check_corio_ps: all checks passed"
