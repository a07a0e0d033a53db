#!/usr/bin/env bash
# Usage: check_tour.sh <path-to-corio_tour>
#
# Runs the tour and checks that it taught what it claims, from its own output: every lesson
# printed, in order, and each measured number on the right side of the lesson's point. The
# bounds are loose on purpose (the machine may be slow, shared, or running ASan): each check
# compares a wait that is long by construction with one that is short, or allows several times
# the expected time. The tour's output is printed when a check fails.
set -uo pipefail

tour=${1:?usage: check_tour.sh <path-to-corio_tour>}

# Only stdout is checked; stderr (the loop's debug reports, sanitizer reports) goes straight
# through. A hung tour must not hang the test suite.
if command -v timeout >/dev/null; then
    output=$(timeout 120 "$tour")
else
    output=$("$tour")
fi
status=$?

failures=0
fail() {
    echo "check_tour: $*" >&2
    failures=$((failures + 1))
}

# numbers <regex>: what the first group of the extended regex captures, on each line that
# matches it (one per line). number <regex>: the first of them; empty if none.
numbers() {
    local re=$1
    [[ $re == ^* ]] || re=".*$re"
    sed -nE "s#$re.*#\\1#p" <<<"$output"
}
number() {
    numbers "$1" | head -n 1
}
# awk evaluates a comparison of decimal numbers: holds "1.5 < 3".
holds() {
    awk "BEGIN { exit !($1) }" </dev/null
}
is_number() {
    [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]
}

if ((status != 0)); then
    fail "$tour exited with status $status"
fi

# The lessons, each once and in order.
previous=0
for n in 1 2 3 4 5 6 7 8 9; do
    line=$(grep -n -m1 "^lesson $n: " <<<"$output" | cut -d: -f1)
    if [[ -z $line ]]; then
        fail "no line beginning with 'lesson $n:'"
    elif ((line <= previous)); then
        fail "'lesson $n:' is out of order"
    else
        previous=$line
    fi
done

# Lesson 1: 10000 one-second sleeps overlap: done in about 1 s (never less), on one thread.
total=$(number 'all done in ([0-9.]+) s on')
threads=$(number 'all done in [0-9.]+ s on ([0-9]+) thread')
if ! is_number "$total"; then
    fail "lesson 1: no 'all done in <seconds> s' line"
elif ! holds "$total >= 0.99 && $total < 3"; then
    fail "lesson 1: 10000 concurrent 1 s sleeps took $total s (expected at least 1 s, under 3 s)"
fi
if [[ $threads != 1 ]]; then
    fail "lesson 1: the tasks ran on '${threads}' threads (expected 1)"
fi

# Lesson 2: a step that never awaits stalls the heartbeat for its whole 300 ms; the fixed
# versions do not. Every blocked gap must exceed every fixed gap.
blocked=$(numbers '^  blocked:.*largest gap +([0-9.]+) ms')
fixed=$(numbers '^  fixed:.*largest gap +([0-9.]+) ms')
normal=$(number '^  normal:.*largest gap +([0-9.]+) ms')
if [[ $(wc -w <<<"$blocked") != 2 || $(wc -w <<<"$fixed") != 3 ]] || ! is_number "$normal"; then
    fail "lesson 2: expected a 'normal:' line, two 'blocked:' and three 'fixed:' lines with a gap"
else
    for b in $blocked; do
        if ! holds "$b >= 290"; then
            fail "lesson 2: a blocked gap of $b ms is shorter than the 300 ms block"
        fi
        for f in $fixed; do
            if ! holds "$b > $f"; then
                fail "lesson 2: the blocked gap ($b ms) is not larger than the fixed gap ($f ms)"
            fi
        done
    done
    if ! holds "$normal >= 95"; then
        fail "lesson 2: a 100 ms heartbeat had a largest gap of only $normal ms"
    fi
fi

# Lesson 3: three 200 ms operations: awaited in turn >= 600 ms; as tasks, less than that.
sequential=$(number '^  sequential:.*-> +([0-9.]+) ms')
gathered=$(number '^  gathered:.*-> +([0-9.]+) ms')
if ! is_number "$sequential" || ! is_number "$gathered"; then
    fail "lesson 3: expected a 'sequential: ... -> <ms> ms' and a 'gathered: ... -> <ms> ms' line"
else
    if ! holds "$sequential >= 590"; then
        fail "lesson 3: three 200 ms operations in sequence took only $sequential ms"
    fi
    if ! holds "$gathered >= 190 && $gathered < $sequential"; then
        fail "lesson 3: gathered took $gathered ms, sequential $sequential ms"
    fi
fi

# Lesson 4: the timeout, the cancellation seen inside the task, the TaskGroup's report.
expect() {  # expect <description> <extended regex>
    grep -qE -- "$2" <<<"$output" || fail "$1: no line matching '$2'"
}
expect "lesson 4 (wait_for)" '-> TimeoutError after [0-9.]+ ms'
expect "lesson 4 (wait_for)" 'slow operation itself received CancelledError'
expect "lesson 4 (cancel)" 'inside the task: CancelledError\("stop, please"\)'
expect "lesson 4 (cancel)" 'task.cancelled\(\) = true'
expect "lesson 4 (TaskGroup)" 'ExceptionGroup: .*\(1 sub-exception\)'
expect "lesson 4 (TaskGroup)" '^ +- corio::ValueError: bad line 3 in config$'
expect "lesson 4 (TaskGroup)" 'download-a cancelled, download-b cancelled'

# Lesson 5: the running lesson task and its three fetches, with where each coroutine lives.
expect "lesson 5" '^  all_tasks\(\): 4 tasks not done$'
expect "lesson 5" 'get_coro\(\): lesson5 at tour\.cpp:[0-9]+  <- current_task\(\)$'
expect "lesson 5" 'fetch-c +get_coro\(\): fetch at tour\.cpp:[0-9]+$'
expect "lesson 5" 'current_task\(\)\.get_name\(\) was: fetch-a, fetch-b, fetch-c$'
expect "lesson 5" 'get_running_loop\(\) raises RuntimeError.*current_task\(\) is empty$'

# Lesson 6: unbounded, the producer never waits and the whole input piles up; bounded, it waits
# for the workers (24 records, 2 workers, 10 ms each: over 50 ms) and at most 4 wait.
unbounded_ms=$(number '^  Queue<int>\(\): +producer done after +([0-9.]+) ms')
unbounded_peak=$(number '^  Queue<int>\(\):.*at most +([0-9]+) records')
bounded_ms=$(number '^  Queue<int>\(4\): +producer done after +([0-9.]+) ms')
bounded_peak=$(number '^  Queue<int>\(4\):.*at most +([0-9]+) records')
if ! is_number "$unbounded_ms" || ! is_number "$bounded_ms"; then
    fail "lesson 6: expected a 'Queue<int>():' and a 'Queue<int>(4):' line with the producer's time"
else
    [[ $unbounded_peak == 24 ]] || fail "lesson 6: unbounded backlog peaked at '$unbounded_peak' (expected 24)"
    [[ $bounded_peak == 4 ]] || fail "lesson 6: bounded backlog peaked at '$bounded_peak' (expected 4)"
    holds "$bounded_ms >= 50" || fail "lesson 6: the bounded producer finished after only $bounded_ms ms"
    holds "$unbounded_ms < $bounded_ms" || fail "lesson 6: unbounded $unbounded_ms ms is not below bounded $bounded_ms ms"
fi
if [[ $(grep -c 'every record processed once; 2 workers stopped by shutdown()' <<<"$output") != 2 ]]; then
    fail "lesson 6: both pipelines must process every record once and stop both workers"
fi

# Lesson 7: a thousand connections, all open at once, all echoed, on the loop's one thread.
expect "lesson 7" '^  1000 of 1000 echoes correct in [0-9.]+ ms; the server had 1000 connections open at once,$'
expect "lesson 7" '^  all served on 1 thread\(s\), the same one the clients ran on$'

# Lesson 8: every number through sort and back, in order; a shell pipeline; a clear error.
expect "lesson 8" '^  sort -n: 100000 numbers in, 100000 lines out, sorted: yes, from [0-9]+ to [0-9]+; exit status 0$'
expect "lesson 8" "^  both sides took [0-9.]+ ms together, on the loop's one thread$"
expect "lesson 8" '^  a shell pipeline printed "apple" and exited with 0$'
expect "lesson 8" "^  a missing program: FileNotFoundError: \[Errno 2\] No such file or directory: 'no-such-command'$"

# Lesson 9: the watchdog reported while the call still blocked (before 800 ms), naming the task,
# the state of the thread and the blocking function in the native stack; debug mode named the
# step; the fixed version produced no report at all.
at=$(number '^  the watchdog, ([0-9]+) ms in, while legacy_fetch\(\) was still blocking:$')
if ! is_number "$at" || ! holds "$at >= 300 && $at < 800"; then
    fail "lesson 9: the watchdog report came at '$at' ms (expected between 300 and 800)"
fi
expect "lesson 9" '^    corio watchdog: the event loop has not polled for 0\.[3-4][0-9]+ s; its thread is off-CPU in (clock_)?nanosleep'
expect "lesson 9" '^    running task: checkout \(coroutine checkout at .*tour\.cpp:[0-9]+\)$'
# (at tour.cpp:<line> with debug information; at the program's path in a release build)
expect "lesson 9" '^    native stack: #[0-9]+ +0x[0-9a-f]+ in (.*::)?legacy_fetch(\(\))? at .*(tour\.cpp:[0-9]+|corio_tour)$'
expect "lesson 9" '^    Executing task checkout took (0\.[89]|[1-9]\.)[0-9]* seconds \(from tour\.cpp:[0-9]+ in checkout\(\) to tour\.cpp:[0-9]+ in checkout\(\)\)$'
expect "lesson 9" '^  fixed with co_await corio::to_thread\(legacy_fetch\): 0 watchdog report\(s\), 0 debug report\(s\)$'

# The end: a tour that stops early, yet exits 0, still fails.
if [[ $(tail -n 1 <<<"$output") != "tour finished" ]]; then
    fail "the last line is not 'tour finished'"
fi

if ((failures > 0)); then
    echo "----- tour output -----" >&2
    printf '%s\n' "$output" >&2
    echo "----- $failures check(s) failed -----" >&2
    exit 1
fi
echo "check_tour: all checks passed"
