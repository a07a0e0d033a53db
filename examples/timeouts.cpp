// timeouts: giving up on slow work, with wait_for() and timeout().
//
//   corio::wait_for(aw, 50ms)            asyncio.wait_for(aw, 0.05)
//   corio::timeout(100ms, body)          async with asyncio.timeout(0.1) as t: ...
//   t.reschedule(loop.time() + 100ms)    t.reschedule(loop.time() + 0.1)
//
// When a deadline passes, the work is cancelled (it sees CancelledError at its co_await, and
// can clean up), and the code that set the deadline sees TimeoutError.
//
// The example checks what it shows and exits non-zero if corio got anything wrong.
#include <chrono>
#include <cstdio>
#include <optional>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

// Stands for a network request that takes `d`; notes whether it was cancelled.
corio::Coro<int> request(corio::Duration d, bool& was_cancelled) {
    try {
        co_await corio::sleep(d);
    } catch (const corio::CancelledError&) {
        was_cancelled = true;  // close the socket, release the buffer, ...
        throw;                 // always let a cancellation continue on its way
    }
    co_return 42;
}

// Stands for one chunk of a download; `stall` makes it never arrive.
corio::Coro<bool> next_chunk(bool stall) {
    co_await corio::sleep(stall ? 10s : 10ms);
    co_return true;
}

// Reads `chunks` chunks under an idle timeout: the deadline is pushed back after each chunk, so
// a long but steady download is fine while a stalled one is not.
corio::Coro<int> download(int chunks, bool stall_at_end) {
    int received = 0;
    co_await corio::timeout(100ms, [&](corio::Timeout& t) -> corio::Coro<> {
        for (int i = 0; i < chunks; ++i) {
            co_await next_chunk(false);
            ++received;
            const std::optional<corio::TimePoint> before = t.when();
            t.reschedule(corio::get_running_loop().time() + 100ms);  // progress: more time
            if (!before || !t.when() || *t.when() <= *before) {
                std::printf("reschedule() did not move the deadline later\n");
                throw corio::RuntimeError("deadline not moved");
            }
        }
        if (stall_at_end) co_await next_chunk(true);
    });
    co_return received;
}

corio::Coro<int> amain() {
    corio::EventLoop& loop = corio::get_running_loop();
    int failures = 0;
    auto check = [&failures](bool ok, const char* what) {
        std::printf("%s %s\n", ok ? "ok:  " : "FAIL:", what);
        if (!ok) ++failures;
    };

    // 1. wait_for() a request that is fast enough: its result comes through.
    bool cancelled = false;
    const int value = co_await corio::wait_for(request(10ms, cancelled), 500ms);
    check(value == 42 && !cancelled, "wait_for(10 ms request, 500 ms) returns the result");

    // 2. wait_for() a request that is too slow: TimeoutError once 50 ms have passed, and the
    //    request itself was cancelled (wait_for does not leave it running).
    cancelled = false;
    corio::TimePoint start = loop.time();
    bool timed_out = false;
    try {
        co_await corio::wait_for(request(10s, cancelled), 50ms);
    } catch (const corio::TimeoutError&) {
        timed_out = true;
    }
    check(timed_out, "wait_for(10 s request, 50 ms) raises TimeoutError");
    check(loop.time() - start >= 50ms, "...not before the 50 ms deadline");
    check(cancelled, "...and the request saw CancelledError");

    // 3. timeout() with reschedule: 15 chunks of 10 ms (150 ms in all) under a 100 ms idle
    //    timeout finish, because each chunk moves the deadline.
    const int received = co_await download(15, false);
    check(received == 15, "a steady 150 ms download under a 100 ms idle timeout completes");

    // 4. The same download stalling after 3 chunks: TimeoutError 100 ms after the last chunk.
    start = loop.time();
    timed_out = false;
    try {
        co_await download(3, true);
    } catch (const corio::TimeoutError&) {
        timed_out = true;
    }
    check(timed_out, "a download that stalls raises TimeoutError");
    check(loop.time() - start >= 130ms, "...100 ms after its last chunk, not sooner");

    co_return failures == 0 ? 0 : 1;
}

int main() {
    return corio::run(amain());
}
