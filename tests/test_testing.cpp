// The virtual clock (VirtualClock, advance_time, CORIO_VIRTUAL_CLOCK) and the corio::testing
// harness (run, CORIO_TEST, CORIO_TEST_WITH, CORIO_ASSERT).
//
// Under a virtual clock every time is asserted exactly: loop.time() differences equal the
// durations waited. Real time is only bounded loosely (an hour of virtual time must not take a
// second), or from below where the loop must really have waited. The harness's reports are
// checked by intercepting GoogleTest's failures (gtest-spi.h).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "corio/testing.hpp"

using namespace std::chrono_literals;
using corio::Coro;
using corio::Duration;
using corio::TimePoint;

namespace {

using RealClock = std::chrono::steady_clock;

// Durations as nanosecond counts, so that a failed EXPECT_EQ prints numbers.
template <class Rep, class Period>
std::int64_t ns(std::chrono::duration<Rep, Period> d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

std::int64_t real_since(RealClock::time_point t0) {
    return ns(RealClock::now() - t0);
}

TimePoint now() {
    return corio::get_running_loop().time();
}

corio::RunOptions virtual_run(Duration threshold = Duration::zero()) {
    corio::RunOptions options;
    options.virtual_clock = corio::VirtualClock{threshold};
    return options;
}

corio::LoopOptions virtual_loop(Duration threshold = Duration::zero()) {
    corio::LoopOptions options;
    options.virtual_clock = corio::VirtualClock{threshold};
    return options;
}

corio::testing::Options virtual_harness() {
    corio::testing::Options options;
    options.virtual_clock = corio::VirtualClock{};
    return options;
}

// Sets (or, given nullptr, unsets) an environment variable for the scope, then restores it.
class ScopedEnv {
  public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value != nullptr) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~ScopedEnv() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

  private:
    const char* name_;
    std::optional<std::string> old_;
};

// A non-blocking AF_UNIX stream socket pair, closed at the end of the scope.
struct SocketPair {
    int a = -1;
    int b = -1;
    SocketPair() {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0) {
            a = fds[0];
            b = fds[1];
        }
    }
    ~SocketPair() {
        if (a >= 0) ::close(a);
        if (b >= 0) ::close(b);
    }
    SocketPair(const SocketPair&) = delete;
    SocketPair& operator=(const SocketPair&) = delete;
};

bool write_byte(int fd, char c) {
    return ::write(fd, &c, 1) == 1;
}

// A thread joined at the end of the scope, also when the test body throws.
struct JoinedThread {
    std::thread thread;
    ~JoinedThread() {
        if (thread.joinable()) thread.join();
    }
};

// Watches `fd`: its first byte resolves *target (unless already done), and the watch goes.
void resolve_on_first_byte(corio::EventLoop& loop, int fd, corio::Future<char>* target) {
    loop.add_reader(fd, [&loop, fd, target] {
        char c = 0;
        if (::read(fd, &c, 1) != 1) return;
        loop.remove_reader(fd);
        if (!target->done()) target->set_result(c);
    });
}

Coro<> nap(Duration d) {
    co_await corio::sleep(d);
}

Coro<int> sleep_then(Duration d, int value, bool* cancelled = nullptr) {
    try {
        co_await corio::sleep(d);
    } catch (const corio::CancelledError&) {
        if (cancelled != nullptr) *cancelled = true;
        throw;
    }
    co_return value;
}

// Sleeps `d`; stamps (relative to t0) when it finished, or when it was cancelled.
Coro<int> sleep_and_stamp(Duration d, int value, TimePoint t0, std::int64_t* done_at,
                          std::int64_t* cancelled_at = nullptr) {
    try {
        co_await corio::sleep(d);
    } catch (const corio::CancelledError&) {
        if (cancelled_at != nullptr) *cancelled_at = ns(now() - t0);
        throw;
    }
    *done_at = ns(now() - t0);
    co_return value;
}

// Which events ran, in order, and when (relative to t0).
struct Trace {
    TimePoint t0{};
    std::vector<int> order;
    std::vector<std::int64_t> at;
    void hit(int id) {
        order.push_back(id);
        at.push_back(ns(now() - t0));
    }
};

Coro<> sleep_and_hit(Duration d, int id, Trace* trace) {
    co_await corio::sleep(d);
    trace->hit(id);
}

// Runs f with GoogleTest's failures intercepted, and returns their messages.
std::vector<std::string> failures_of(const std::function<void()>& f) {
    ::testing::TestPartResultArray results;
    {
        ::testing::ScopedFakeTestPartResultReporter reporter(
            ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
        f();
    }
    std::vector<std::string> messages;
    for (int i = 0; i < results.size(); ++i)
        messages.emplace_back(results.GetTestPartResult(i).message());
    return messages;
}

std::string joined(const std::vector<std::string>& messages) {
    std::string all;
    for (const std::string& m : messages) all += "\n[failure] " + m;
    return all;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

// --- virtual time: long waits are instant and exact ---------------------------------------------

TEST(VirtualClock, OneHourSleepEndsAtExactlyOneHourInNoRealTime) {
    std::int64_t elapsed = -1;
    const auto real0 = RealClock::now();
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            co_await corio::sleep(1h);
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_EQ(elapsed, ns(1h));
    EXPECT_LT(real_since(real0), ns(1s));
}

TEST(VirtualClock, WaitForOneHourRaisesTimeoutErrorAtExactlyOneHour) {
    bool timed_out = false;
    bool inner_cancelled = false;
    std::int64_t elapsed = -1;
    const auto real0 = RealClock::now();
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            try {
                co_await corio::wait_for(sleep_then(2h, 1, &inner_cancelled), 1h);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(inner_cancelled);
    EXPECT_EQ(elapsed, ns(1h));
    EXPECT_LT(real_since(real0), ns(1s));
}

TEST(VirtualClock, WaitForReturnsAtTheInnerCompletionTimeWhenInTime) {
    int result = 0;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            result = co_await corio::wait_for(sleep_then(30min, 7), 1h);
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_EQ(result, 7);
    EXPECT_EQ(elapsed, ns(30min));
}

TEST(VirtualClock, TimeoutScopeExpiresAtExactlyItsDeadline) {
    bool timed_out = false;
    bool expired_seen = false;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            try {
                co_await corio::timeout(1h, [&](corio::Timeout& scope) -> Coro<> {
                    try {
                        co_await corio::sleep(10h);
                    } catch (const corio::CancelledError&) {
                        expired_seen = scope.expired();
                        throw;
                    }
                });
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(expired_seen);
    EXPECT_EQ(elapsed, ns(1h));
}

TEST(VirtualClock, TimeoutAtAnAbsoluteDeadlineExpiresExactlyThere) {
    bool timed_out = false;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            co_await corio::sleep(10min);
            const std::optional<TimePoint> deadline = t0 + 90min;
            try {
                co_await corio::timeout_at(deadline, sleep_then(2h, 1));
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(elapsed, ns(90min));
}

// --- virtual time: the order real time would give ----------------------------------------------

TEST(VirtualClock, CallLaterTimersFireInDeadlineOrderAtExactTimes) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    const std::vector<int> delays_s{7, 3, 11, 1, 5, 2, 13, 4};
    std::vector<int> order;
    std::vector<std::int64_t> at;
    for (std::size_t i = 0; i < delays_s.size(); ++i) {
        loop.call_later(std::chrono::seconds(delays_s[i]), [&, i] {
            order.push_back(static_cast<int>(i));
            at.push_back(ns(loop.time() - t0));
            if (order.size() == delays_s.size()) loop.stop();
        });
    }
    loop.run_forever();
    const std::vector<int> expected_order{3, 5, 1, 7, 4, 0, 2, 6};
    EXPECT_EQ(order, expected_order);
    ASSERT_EQ(at.size(), delays_s.size());
    for (std::size_t k = 0; k < order.size(); ++k)
        EXPECT_EQ(at[k], ns(std::chrono::seconds(delays_s[static_cast<std::size_t>(order[k])])))
            << "event " << order[k];
}

TEST(VirtualClock, EqualDeadlinesFireInTheOrderTheyWereScheduled) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    std::vector<int> order;
    std::vector<std::int64_t> at;
    auto record = [&](int id) {
        order.push_back(id);
        at.push_back(ns(loop.time() - t0));
    };
    // call_at and call_later aimed at the same instant (time does not move while scheduling).
    loop.call_at(t0 + 5s, record, 0);
    loop.call_later(5s, record, 1);
    loop.call_at(t0 + 5s, record, 2);
    loop.call_later(5s, record, 3);
    loop.call_at(t0 + 5s, record, 4);
    loop.call_at(t0 + 5s, [&] { loop.stop(); });
    loop.run_forever();
    const std::vector<int> expected_order{0, 1, 2, 3, 4};
    EXPECT_EQ(order, expected_order);
    for (std::int64_t t : at) EXPECT_EQ(t, ns(5s));
}

TEST(VirtualClock, ManySleepsAndCallbacksWithMixedDelaysFireInRealTimeOrder) {
    constexpr int kEach = 60;
    // Delays of 1..12 quarter-seconds from a fixed LCG, so many deadlines coincide.
    std::vector<Duration> callback_delays;
    std::vector<Duration> task_delays;
    std::uint32_t seed = 12345;
    auto next_delay = [&seed] {
        seed = seed * 1103515245u + 12345u;
        return Duration(250ms) * static_cast<int>(1 + (seed >> 16) % 12);
    };
    for (int i = 0; i < kEach; ++i) callback_delays.push_back(next_delay());
    for (int i = 0; i < kEach; ++i) task_delays.push_back(next_delay());

    Trace trace;
    corio::run(
        [&]() -> Coro<> {
            corio::EventLoop& loop = corio::get_running_loop();
            trace.t0 = loop.time();
            std::vector<corio::Task<>> tasks;
            for (int i = 0; i < kEach; ++i)
                tasks.push_back(corio::create_task(
                    sleep_and_hit(task_delays[static_cast<std::size_t>(i)], kEach + i, &trace)));
            // Armed now, before the tasks' sleeps (which arm on the tasks' first step).
            for (int i = 0; i < kEach; ++i)
                loop.call_later(callback_delays[static_cast<std::size_t>(i)],
                                [&trace, i] { trace.hit(i); });
            co_await corio::gather(tasks);
        }(),
        virtual_run());

    // Real time's order: by deadline, then by the order the timers were armed.
    std::vector<std::pair<Duration, int>> expected;
    for (int i = 0; i < kEach; ++i) expected.emplace_back(callback_delays[std::size_t(i)], i);
    for (int i = 0; i < kEach; ++i) expected.emplace_back(task_delays[std::size_t(i)], kEach + i);
    std::stable_sort(expected.begin(), expected.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    ASSERT_EQ(trace.order.size(), expected.size());
    for (std::size_t k = 0; k < expected.size(); ++k) {
        EXPECT_EQ(trace.order[k], expected[k].second) << "position " << k;
        EXPECT_EQ(trace.at[k], ns(expected[k].first)) << "position " << k;
    }
}

TEST(VirtualClock, TasksSleepingEqualDurationsWakeInTheOrderTheyStarted) {
    Trace trace;
    corio::run(
        [&]() -> Coro<> {
            trace.t0 = now();
            std::vector<corio::Task<>> tasks;
            for (int i = 0; i < 6; ++i)
                tasks.push_back(corio::create_task(sleep_and_hit(1s, i, &trace)));
            co_await corio::gather(tasks);
        }(),
        virtual_run());
    const std::vector<int> expected_order{0, 1, 2, 3, 4, 5};
    EXPECT_EQ(trace.order, expected_order);
    for (std::int64_t t : trace.at) EXPECT_EQ(t, ns(1s));
}

TEST(VirtualClock, CallAtInThePastRunsOnTheNextPassWithoutMovingTime) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    std::vector<std::string> order;
    std::vector<std::int64_t> at;
    auto record = [&](const char* what) {
        order.emplace_back(what);
        at.push_back(ns(loop.time() - t0));
    };
    loop.call_later(1h, [&] {
        record("hour");
        loop.stop();
    });
    loop.call_at(t0 - 10min, record, "past");
    loop.call_later(-5s, record, "negative");
    loop.call_later(0s, record, "zero");
    loop.run_forever();
    const std::vector<std::string> expected_order{"past", "negative", "zero", "hour"};
    EXPECT_EQ(order, expected_order);
    const std::vector<std::int64_t> expected_at{0, 0, 0, ns(1h)};
    EXPECT_EQ(at, expected_at);
    EXPECT_EQ(ns(loop.time() - t0), ns(1h));
}

TEST(VirtualClock, TimersArmedByCallbacksDuringJumpsKeepExactTimes) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    std::vector<std::int64_t> chain_at;
    std::vector<std::int64_t> same_instant_at;
    // Step k runs k seconds after step k-1 (1, 3, 6, 10, 15 s) and also arms a timer for the
    // very instant it runs at.
    std::function<void(int)> step = [&](int k) {
        chain_at.push_back(ns(loop.time() - t0));
        loop.call_at(loop.time(), [&] { same_instant_at.push_back(ns(loop.time() - t0)); });
        if (k < 5) loop.call_later(std::chrono::seconds(k + 1), step, k + 1);
    };
    loop.call_later(1s, step, 1);
    std::int64_t stop_at = -1;
    loop.call_later(1h, [&] {
        stop_at = ns(loop.time() - t0);
        loop.stop();
    });
    loop.run_forever();
    const std::vector<std::int64_t> expected{ns(1s), ns(3s), ns(6s), ns(10s), ns(15s)};
    EXPECT_EQ(chain_at, expected);
    EXPECT_EQ(same_instant_at, expected);
    EXPECT_EQ(stop_at, ns(1h));
}

// --- virtual time stands still unless the loop waits -------------------------------------------

TEST(VirtualClock, TimeStandsStillWhileTasksKeepRunning) {
    bool sleeper_done = false;
    bool sleeper_done_while_busy = false;
    bool time_moved = false;
    std::int64_t sleeper_at = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            // Named, so that the closure outlives the task that runs it.
            auto sleeper_body = [&]() -> Coro<> {
                co_await corio::sleep(1ms);
                sleeper_done = true;
                sleeper_at = ns(now() - t0);
            };
            auto sleeper = corio::create_task(sleeper_body());
            // Hundreds of passes, each taking real time: the 1 ms timer must not fall due.
            for (int i = 0; i < 300; ++i) {
                co_await corio::sleep(0s);
                if (now() != t0) time_moved = true;
                if (sleeper_done) sleeper_done_while_busy = true;
            }
            co_await sleeper;
        }(),
        virtual_run());
    EXPECT_FALSE(time_moved);
    EXPECT_FALSE(sleeper_done_while_busy);
    EXPECT_TRUE(sleeper_done);
    EXPECT_EQ(sleeper_at, ns(1ms));
}

TEST(VirtualClock, TimeStandsStillWhileRealTimePassesInsideAStep) {
    std::int64_t during_step = -1;
    std::int64_t after_sleep = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            std::this_thread::sleep_for(5ms);  // a slow step
            during_step = ns(now() - t0);
            co_await corio::sleep(1s);
            after_sleep = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_EQ(during_step, 0);
    EXPECT_EQ(after_sleep, ns(1s));
}

TEST(VirtualClock, IdleLoopTimeStartsAtTheRealClockAndThenStandsStill) {
    const TimePoint before = corio::Clock::now();
    corio::EventLoop loop(virtual_loop());
    const TimePoint after = corio::Clock::now();
    const TimePoint t0 = loop.time();
    EXPECT_LE(before, t0);
    EXPECT_LE(t0, after);
    std::this_thread::sleep_for(3ms);
    EXPECT_EQ(ns(loop.time() - t0), 0);
}

TEST(VirtualClock, StopBeforeTheLoopGoesIdleDoesNotJumpToTheNextTimer) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    bool hour_fired = false;
    loop.call_later(5s, [&] { loop.stop(); });
    loop.call_later(1h, [&] {
        hour_fired = true;
        loop.stop();
    });
    loop.run_forever();
    EXPECT_EQ(ns(loop.time() - t0), ns(5s));
    EXPECT_FALSE(hour_fired);
    loop.run_forever();
    EXPECT_TRUE(hour_fired);
    EXPECT_EQ(ns(loop.time() - t0), ns(1h));
}

TEST(VirtualClock, CancelledTimerDoesNotPullTimeForward) {
    std::int64_t elapsed = -1;
    bool fired = false;
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    loop.run_until_complete([&]() -> Coro<> {
        corio::TimerHandle far = loop.call_later(1h, [&] { fired = true; });
        far.cancel();
        co_await corio::sleep(1s);
        elapsed = ns(loop.time() - t0);
    }());
    EXPECT_EQ(elapsed, ns(1s));
    EXPECT_FALSE(fired);
    EXPECT_EQ(ns(loop.time() - t0), ns(1s));
}

TEST(VirtualClock, TimerHandleWhenIsTheExactVirtualDeadline) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    corio::TimerHandle later = loop.call_later(90min, [] {});
    corio::TimerHandle at = loop.call_at(t0 + 2h, [] {});
    EXPECT_EQ(ns(later.when() - t0), ns(90min));
    EXPECT_EQ(ns(at.when() - t0), ns(2h));
    later.cancel();
    at.cancel();
}

// --- advance_time ------------------------------------------------------------------------------

TEST(VirtualClock, AdvanceTimeMovesTheClockAndDueTimersFireOnTheNextPass) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    bool due_fired_synchronously = true;
    std::int64_t due_fired_at = -1;
    bool later_fired = false;
    std::int64_t after_advance = -1;
    std::int64_t after_passes = -1;
    loop.run_until_complete([&]() -> Coro<> {
        loop.call_later(10s, [&] { due_fired_at = ns(loop.time() - t0); });
        corio::TimerHandle later = loop.call_later(20s, [&] { later_fired = true; });
        loop.advance_time(15s);
        after_advance = ns(loop.time() - t0);
        due_fired_synchronously = due_fired_at != -1;
        co_await corio::sleep(0s);
        co_await corio::sleep(0s);
        after_passes = ns(loop.time() - t0);
        later.cancel();
    }());
    EXPECT_EQ(after_advance, ns(15s));
    EXPECT_FALSE(due_fired_synchronously);
    EXPECT_EQ(due_fired_at, ns(15s));
    EXPECT_FALSE(later_fired);
    EXPECT_EQ(after_passes, ns(15s));
}

TEST(VirtualClock, AdvanceTimeWakesASleepingTaskAtTheAdvancedTime) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    std::int64_t woke_at = -1;
    loop.run_until_complete([&]() -> Coro<> {
        auto sleeper_body = [&]() -> Coro<> {
            co_await corio::sleep(10s);
            woke_at = ns(loop.time() - t0);
        };
        auto sleeper = corio::create_task(sleeper_body());
        co_await corio::sleep(0s);  // the sleeper arms its timer
        loop.advance_time(25s);
        co_await sleeper;
    }());
    EXPECT_EQ(woke_at, ns(25s));
    EXPECT_EQ(ns(loop.time() - t0), ns(25s));
}

TEST(VirtualClock, AdvanceTimeShortOfADeadlineLeavesTheTimerForItsExactDeadline) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    std::int64_t fired_at = -1;
    loop.call_later(10s, [&] {
        fired_at = ns(loop.time() - t0);
        loop.stop();
    });
    loop.advance_time(4s);
    loop.run_forever();
    EXPECT_EQ(fired_at, ns(10s));
}

TEST(VirtualClock, AdvanceTimeBeforeRunningFiresTheDueTimerWithoutJumpingFurther) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    std::int64_t first_at = -1;
    bool second_fired = false;
    loop.call_later(1h, [&] {
        first_at = ns(loop.time() - t0);
        loop.stop();
    });
    corio::TimerHandle second = loop.call_later(2h, [&] { second_fired = true; });
    loop.advance_time(1h + 30min);
    EXPECT_EQ(ns(loop.time() - t0), ns(1h + 30min));
    loop.run_forever();
    EXPECT_EQ(first_at, ns(1h + 30min));
    EXPECT_FALSE(second_fired);
    EXPECT_EQ(ns(loop.time() - t0), ns(1h + 30min));
    second.cancel();
}

TEST(VirtualClock, AdvanceTimeWithoutAVirtualClockRaisesRuntimeError) {
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", nullptr);
    corio::EventLoop loop;
    EXPECT_THROW(loop.advance_time(1s), corio::RuntimeError);
    EXPECT_THROW(loop.advance_time(0s), corio::RuntimeError);
}

TEST(VirtualClock, AdvanceTimeBackwardsRaisesValueErrorAndKeepsTheTime) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    EXPECT_THROW(loop.advance_time(-1ns), corio::ValueError);
    EXPECT_THROW(loop.advance_time(-1h), corio::ValueError);
    EXPECT_EQ(ns(loop.time() - t0), 0);
    loop.advance_time(0s);
    EXPECT_EQ(ns(loop.time() - t0), 0);
}

TEST(VirtualClock, HasVirtualClockReflectsTheOptions) {
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", nullptr);
    corio::EventLoop real;
    EXPECT_FALSE(real.has_virtual_clock());
    corio::EventLoop virtual_zero(virtual_loop());
    EXPECT_TRUE(virtual_zero.has_virtual_clock());
    corio::EventLoop virtual_threshold(virtual_loop(20ms));
    EXPECT_TRUE(virtual_threshold.has_virtual_clock());

    bool in_virtual_run = false;
    corio::run(
        [&]() -> Coro<> {
            in_virtual_run = corio::get_running_loop().has_virtual_clock();
            co_return;
        }(),
        virtual_run());
    EXPECT_TRUE(in_virtual_run);
    bool in_real_run = true;
    corio::run([&]() -> Coro<> {
        in_real_run = corio::get_running_loop().has_virtual_clock();
        co_return;
    }());
    EXPECT_FALSE(in_real_run);
}

// --- combinators under a virtual clock ---------------------------------------------------------

TEST(VirtualClock, GatherOfSleepsCompletesAtTheLongest) {
    std::int64_t done_at[3] = {-1, -1, -1};
    std::int64_t elapsed = -1;
    std::tuple<int, int, int> results;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            results = co_await corio::gather(sleep_and_stamp(3s, 1, t0, &done_at[0]),
                                             sleep_and_stamp(1h, 2, t0, &done_at[1]),
                                             sleep_and_stamp(20min, 3, t0, &done_at[2]));
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_EQ(results, std::make_tuple(1, 2, 3));
    EXPECT_EQ(done_at[0], ns(3s));
    EXPECT_EQ(done_at[1], ns(1h));
    EXPECT_EQ(done_at[2], ns(20min));
    EXPECT_EQ(elapsed, ns(1h));
}

TEST(VirtualClock, TaskGroupExitsWhenItsLastChildFinishes) {
    std::int64_t done_at[3] = {-1, -1, -1};
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            co_await corio::task_group([&](corio::TaskGroup& tg) -> Coro<> {
                tg.create_task(sleep_and_stamp(1s, 1, t0, &done_at[0]));
                tg.create_task(sleep_and_stamp(3h, 2, t0, &done_at[1]));
                tg.create_task(sleep_and_stamp(2min, 3, t0, &done_at[2]));
                co_return;
            });
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_EQ(done_at[0], ns(1s));
    EXPECT_EQ(done_at[1], ns(3h));
    EXPECT_EQ(done_at[2], ns(2min));
    EXPECT_EQ(elapsed, ns(3h));
}

TEST(VirtualClock, TimeoutAroundATaskGroupCancelsTheSlowChildAtTheDeadline) {
    std::int64_t fast_done = -1;
    std::int64_t slow_done = -1;
    std::int64_t slow_cancelled = -1;
    std::int64_t elapsed = -1;
    bool timed_out = false;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            try {
                co_await corio::timeout(90s, [&]() {
                    return corio::task_group([&](corio::TaskGroup& tg) -> Coro<> {
                        tg.create_task(sleep_and_stamp(1min, 1, t0, &fast_done));
                        tg.create_task(sleep_and_stamp(1h, 2, t0, &slow_done, &slow_cancelled));
                        co_return;
                    });
                });
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(fast_done, ns(1min));
    EXPECT_EQ(slow_done, -1);
    EXPECT_EQ(slow_cancelled, ns(90s));
    EXPECT_EQ(elapsed, ns(90s));
}

TEST(VirtualClock, TaskGroupChildWithItsOwnTimeoutFailsTheGroupAtItsDeadline) {
    std::int64_t sibling_cancelled = -1;
    std::int64_t sibling_done = -1;
    std::int64_t elapsed = -1;
    bool group_failed_with_timeout = false;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            try {
                co_await corio::task_group([&](corio::TaskGroup& tg) -> Coro<> {
                    tg.create_task(corio::wait_for(sleep_then(2h, 1), 45min));
                    tg.create_task(sleep_and_stamp(5h, 2, t0, &sibling_done, &sibling_cancelled));
                    co_return;
                });
            } catch (const corio::ExceptionGroup& group) {
                group_failed_with_timeout = group.exceptions().size() == 1;
                try {
                    std::rethrow_exception(group.exceptions().at(0));
                } catch (const corio::TimeoutError&) {
                } catch (...) {
                    group_failed_with_timeout = false;
                }
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(group_failed_with_timeout);
    EXPECT_EQ(sibling_done, -1);
    EXPECT_EQ(sibling_cancelled, ns(45min));
    EXPECT_EQ(elapsed, ns(45min));
}

TEST(VirtualClock, NestedTimeoutsTheInnerOneExpiresFirstAtItsDeadline) {
    std::int64_t inner_at = -1;
    std::int64_t outer_body_done = -1;
    bool outer_expired = true;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            co_await corio::timeout(1h, [&](corio::Timeout& outer) -> Coro<> {
                try {
                    co_await corio::timeout(30min, sleep_then(2h, 1));
                } catch (const corio::TimeoutError&) {
                    inner_at = ns(now() - t0);
                }
                co_await corio::sleep(10min);
                outer_body_done = ns(now() - t0);
                outer_expired = outer.expired();
            });
        }(),
        virtual_run());
    EXPECT_EQ(inner_at, ns(30min));
    EXPECT_EQ(outer_body_done, ns(40min));
    EXPECT_FALSE(outer_expired);
}

TEST(VirtualClock, NestedTimeoutsTheOuterOneExpiresFirstAtItsDeadline) {
    bool inner_expired = true;
    bool outer_expired = false;
    bool timed_out = false;
    std::int64_t cancelled_at = -1;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            try {
                co_await corio::timeout(10min, [&](corio::Timeout& outer) -> Coro<> {
                    co_await corio::timeout(1h, [&](corio::Timeout& inner) -> Coro<> {
                        try {
                            co_await corio::sleep(2h);
                        } catch (const corio::CancelledError&) {
                            inner_expired = inner.expired();
                            outer_expired = outer.expired();
                            cancelled_at = ns(now() - t0);
                            throw;
                        }
                    });
                });
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_FALSE(inner_expired);
    EXPECT_TRUE(outer_expired);
    EXPECT_EQ(cancelled_at, ns(10min));
    EXPECT_EQ(elapsed, ns(10min));
}

TEST(VirtualClock, WaitForZeroTimesOutAPendingAwaitableWithoutMovingTime) {
    bool timed_out = false;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            try {
                co_await corio::wait_for(sleep_then(1s, 1), 0s);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(elapsed, 0);
}

TEST(VirtualClock, WaitForZeroReturnsTheResultOfATaskAlreadyDone) {
    int result = 0;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            auto task = corio::create_task(sleep_then(0s, 5));
            while (!task.done()) co_await corio::sleep(0s);
            result = co_await corio::wait_for(task, 0s);
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_EQ(result, 5);
    EXPECT_EQ(elapsed, 0);
}

// asyncio.wait_for(fut, 0) returns the result of a future that is already done.
TEST(VirtualClock, WaitForZeroReturnsTheResultOfAFutureAlreadyDone) {
    int result = 0;
    bool timed_out = false;
    corio::run(
        [&]() -> Coro<> {
            corio::Future<int> fut = corio::get_running_loop().create_future<int>();
            fut.set_result(9);
            try {
                result = co_await corio::wait_for(fut, 0s);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
        }(),
        virtual_run());
    EXPECT_FALSE(timed_out);
    EXPECT_EQ(result, 9);
}

TEST(VirtualClock, TaskAwaitedWithATimeoutIsCancelledAtExactlyTheDeadline) {
    std::int64_t done_at = -1;
    std::int64_t cancelled_at = -1;
    std::int64_t elapsed = -1;
    bool timed_out = false;
    bool task_cancelled = false;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            auto worker =
                corio::create_task(sleep_and_stamp(3h, 1, t0, &done_at, &cancelled_at), "worker");
            try {
                co_await corio::wait_for(worker, 45min);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            task_cancelled = worker.cancelled();
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(task_cancelled);
    EXPECT_EQ(done_at, -1);
    EXPECT_EQ(cancelled_at, ns(45min));
    EXPECT_EQ(elapsed, ns(45min));
}

// The timeout's timer is armed before the body's sleep, so at the shared instant it fires first.
TEST(VirtualClock, BodyDueAtTheSameInstantAsItsTimeoutTimesOutSinceTheTimeoutWasArmedFirst) {
    bool timed_out = false;
    bool body_cancelled = false;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            const TimePoint t0 = now();
            try {
                co_await corio::timeout(1h, sleep_then(1h, 1, &body_cancelled));
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            elapsed = ns(now() - t0);
        }(),
        virtual_run());
    EXPECT_TRUE(timed_out);
    EXPECT_TRUE(body_cancelled);
    EXPECT_EQ(elapsed, ns(1h));
}

// --- how a virtual clock is chosen -------------------------------------------------------------

TEST(VirtualClock, RunOptionsVirtualClockAndRunnerKeepTimeAcrossRuns) {
    corio::Runner runner(virtual_run());
    corio::EventLoop& loop = runner.get_loop();
    EXPECT_TRUE(loop.has_virtual_clock());
    const TimePoint t0 = loop.time();
    const auto real0 = RealClock::now();
    runner.run(nap(1h));
    EXPECT_EQ(ns(loop.time() - t0), ns(1h));
    runner.run(nap(30min));
    EXPECT_EQ(ns(loop.time() - t0), ns(90min));
    EXPECT_LT(real_since(real0), ns(1s));
}

TEST(VirtualClock, LoopOptionsVirtualClockWithRunUntilComplete) {
    corio::EventLoop loop(virtual_loop());
    const TimePoint t0 = loop.time();
    const int r = loop.run_until_complete(sleep_then(2h, 3));
    EXPECT_EQ(r, 3);
    EXPECT_EQ(ns(loop.time() - t0), ns(2h));
    loop.run_until_complete(nap(1ns));
    EXPECT_EQ(ns(loop.time() - t0), ns(2h + 1ns));
}

TEST(VirtualClock, EachJumpFirstWaitsTheAutojumpThresholdInRealTime) {
    corio::EventLoop loop(virtual_loop(30ms));
    const TimePoint t0 = loop.time();
    const auto real0 = RealClock::now();
    loop.run_until_complete(nap(1h));
    EXPECT_GE(real_since(real0), ns(25ms));
    EXPECT_LT(real_since(real0), ns(5s));
    EXPECT_EQ(ns(loop.time() - t0), ns(1h));
}

TEST(VirtualClock, NegativeAutojumpThresholdRaisesValueError) {
    EXPECT_THROW({ corio::EventLoop loop(virtual_loop(-1ms)); }, corio::ValueError);
    EXPECT_THROW(corio::run(nap(1s), virtual_run(-1ns)), corio::ValueError);
}

TEST(VirtualClock, EnvironmentValueOneTurnsOnAVirtualClock) {
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", "1");
    corio::EventLoop loop;
    EXPECT_TRUE(loop.has_virtual_clock());
    const TimePoint t0 = loop.time();
    const auto real0 = RealClock::now();
    loop.run_until_complete(nap(1h));
    EXPECT_EQ(ns(loop.time() - t0), ns(1h));
    EXPECT_LT(real_since(real0), ns(1s));

    bool in_run = false;
    corio::run([&]() -> Coro<> {
        in_run = corio::get_running_loop().has_virtual_clock();
        co_return;
    }());
    EXPECT_TRUE(in_run);
}

TEST(VirtualClock, EnvironmentThresholdInMillisecondsIsWaitedBeforeAJump) {
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", "20ms");
    corio::EventLoop loop;
    EXPECT_TRUE(loop.has_virtual_clock());
    const TimePoint t0 = loop.time();
    const auto real0 = RealClock::now();
    loop.run_until_complete(nap(1h));
    EXPECT_GE(real_since(real0), ns(15ms));
    EXPECT_EQ(ns(loop.time() - t0), ns(1h));
}

TEST(VirtualClock, EnvironmentValueZeroOrEmptyKeepsTheRealClock) {
    {
        ScopedEnv env("CORIO_VIRTUAL_CLOCK", "0");
        corio::EventLoop loop;
        EXPECT_FALSE(loop.has_virtual_clock());
    }
    {
        ScopedEnv env("CORIO_VIRTUAL_CLOCK", "");
        corio::EventLoop loop;
        EXPECT_FALSE(loop.has_virtual_clock());
    }
}

TEST(VirtualClock, InvalidEnvironmentValueRaisesRuntimeError) {
    for (const char* value : {"yes", "2", "20s", "ms", "-5ms", "1.5ms", "20 ms", "1234567890ms"}) {
        ScopedEnv env("CORIO_VIRTUAL_CLOCK", value);
        bool threw = false;
        try {
            corio::EventLoop loop;
        } catch (const corio::RuntimeError& e) {
            threw = true;
            EXPECT_TRUE(contains(e.what(), "CORIO_VIRTUAL_CLOCK")) << e.what();
        }
        EXPECT_TRUE(threw) << "CORIO_VIRTUAL_CLOCK=" << value;
    }
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", "bogus");
    EXPECT_THROW(corio::run(nap(1ms)), corio::RuntimeError);
}

TEST(VirtualClock, ExplicitOptionsOverrideTheEnvironment) {
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", "bogus");
    corio::EventLoop loop(virtual_loop());
    EXPECT_TRUE(loop.has_virtual_clock());
    bool in_run = false;
    corio::run(
        [&]() -> Coro<> {
            in_run = corio::get_running_loop().has_virtual_clock();
            co_return;
        }(),
        virtual_run(5ms));
    EXPECT_TRUE(in_run);
}

// --- real I/O under a virtual clock ------------------------------------------------------------

TEST(VirtualClockIo, RealWriteWithinTheAutojumpThresholdBeatsAOneHourTimer) {
    SocketPair sp;
    ASSERT_GE(sp.a, 0);
    JoinedThread writer;
    std::atomic<bool> wrote{false};
    char got = 0;
    std::int64_t elapsed = -1;
    // A generous threshold: the write comes after ~5 ms, the loop waits up to 200 ms for it.
    corio::run(
        [&]() -> Coro<> {
            corio::EventLoop& loop = corio::get_running_loop();
            corio::Future<char> fut = loop.create_future<char>();
            resolve_on_first_byte(loop, sp.a, &fut);
            const TimePoint t0 = loop.time();
            writer.thread = std::thread([&wrote, fd = sp.b] {
                std::this_thread::sleep_for(5ms);
                wrote = write_byte(fd, 'x');
            });
            got = co_await corio::wait_for(fut, 1h);
            elapsed = ns(loop.time() - t0);
        }(),
        virtual_run(200ms));
    writer.thread.join();
    EXPECT_TRUE(wrote);
    EXPECT_EQ(got, 'x');
    EXPECT_EQ(elapsed, 0);
}

TEST(VirtualClockIo, WithNoTimersPendingTheLoopWaitsForIoBeyondTheThreshold) {
    SocketPair sp;
    ASSERT_GE(sp.a, 0);
    JoinedThread writer;
    char got = 0;
    std::int64_t elapsed = -1;
    const auto real0 = RealClock::now();
    corio::run(
        [&]() -> Coro<> {
            corio::EventLoop& loop = corio::get_running_loop();
            corio::Future<char> fut = loop.create_future<char>();
            resolve_on_first_byte(loop, sp.a, &fut);
            const TimePoint t0 = loop.time();
            writer.thread = std::thread([fd = sp.b] {
                std::this_thread::sleep_for(60ms);  // three times the threshold
                write_byte(fd, 'y');
            });
            got = co_await fut;
            elapsed = ns(loop.time() - t0);
        }(),
        virtual_run(20ms));
    writer.thread.join();
    EXPECT_EQ(got, 'y');
    EXPECT_EQ(elapsed, 0);
    EXPECT_GE(real_since(real0), ns(55ms));
}

// The documented trade-off of threshold 0: the loop does not wait for I/O at all while a timer
// is pending, so a timer an hour away wins over a write that is yet to come. (Here the write
// only happens once the timer has fired, which makes the outcome certain.)
TEST(VirtualClockIo, WithThresholdZeroAPendingTimerWinsOverIoNotReadyYet) {
    SocketPair sp;
    ASSERT_GE(sp.a, 0);
    JoinedThread writer;
    std::atomic<bool> go{false};
    bool timed_out = false;
    std::int64_t timed_out_at = -1;
    std::int64_t read_at = -1;
    char got = 0;
    corio::run(
        [&]() -> Coro<> {
            corio::EventLoop& loop = corio::get_running_loop();
            corio::Future<char> first = loop.create_future<char>();
            corio::Future<char> second = loop.create_future<char>();
            corio::Future<char>* target = &first;
            loop.add_reader(sp.a, [&] {
                char c = 0;
                if (::read(sp.a, &c, 1) != 1) return;
                loop.remove_reader(sp.a);
                if (!target->done()) target->set_result(c);
            });
            writer.thread = std::thread([&go, fd = sp.b] {
                for (int i = 0; i < 10000 && !go; ++i) std::this_thread::sleep_for(1ms);
                write_byte(fd, 'z');
            });
            const TimePoint t0 = loop.time();
            try {
                co_await corio::wait_for(first, 1h);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            timed_out_at = ns(loop.time() - t0);
            target = &second;
            go = true;
            got = co_await second;
            read_at = ns(loop.time() - t0);
        }(),
        virtual_run(0s));
    writer.thread.join();
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(timed_out_at, ns(1h));
    EXPECT_EQ(got, 'z');
    EXPECT_EQ(read_at, ns(1h));
}

TEST(VirtualClockIo, WriteFromACallLaterIsReadAtTheExactVirtualTime) {
    SocketPair sp;
    ASSERT_GE(sp.a, 0);
    char got = 0;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            corio::EventLoop& loop = corio::get_running_loop();
            corio::Future<char> fut = loop.create_future<char>();
            resolve_on_first_byte(loop, sp.a, &fut);
            const TimePoint t0 = loop.time();
            loop.call_later(30min, [fd = sp.b] { write_byte(fd, 'w'); });
            got = co_await corio::wait_for(fut, 1h);
            elapsed = ns(loop.time() - t0);
        }(),
        virtual_run(0s));
    EXPECT_EQ(got, 'w');
    EXPECT_EQ(elapsed, ns(30min));
}

TEST(VirtualClockIo, CallSoonThreadsafeWakesALoopWaitingOnIo) {
    SocketPair sp;  // watched, never written: the loop has nothing but I/O to wait for
    ASSERT_GE(sp.a, 0);
    JoinedThread other;
    int got = 0;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            corio::EventLoop& loop = corio::get_running_loop();
            corio::Future<char> never = loop.create_future<char>();
            resolve_on_first_byte(loop, sp.a, &never);
            corio::Future<int> fut = loop.create_future<int>();
            corio::Future<int>* target = &fut;
            const TimePoint t0 = loop.time();
            other.thread = std::thread([&loop, target] {
                std::this_thread::sleep_for(10ms);
                loop.call_soon_threadsafe([target] { target->set_result(7); });
            });
            got = co_await fut;
            elapsed = ns(loop.time() - t0);
            loop.remove_reader(sp.a);
            never.cancel();
        }(),
        virtual_run(0s));
    other.thread.join();
    EXPECT_EQ(got, 7);
    EXPECT_EQ(elapsed, 0);
}

TEST(VirtualClockIo, CallSoonThreadsafeWithinTheThresholdBeatsAOneHourTimer) {
    JoinedThread other;
    int got = 0;
    std::int64_t elapsed = -1;
    corio::run(
        [&]() -> Coro<> {
            corio::EventLoop& loop = corio::get_running_loop();
            corio::Future<int> fut = loop.create_future<int>();
            corio::Future<int>* target = &fut;
            const TimePoint t0 = loop.time();
            other.thread = std::thread([&loop, target] {
                std::this_thread::sleep_for(5ms);
                loop.call_soon_threadsafe([target] { target->set_result(8); });
            });
            got = co_await corio::wait_for(fut, 1h);
            elapsed = ns(loop.time() - t0);
        }(),
        virtual_run(200ms));
    other.thread.join();
    EXPECT_EQ(got, 8);
    EXPECT_EQ(elapsed, 0);
}

// --- the harness: bodies that pass -------------------------------------------------------------

CORIO_TEST(Harness, CoroTestRunsTheBodyAsATaskNamedTestBody) {
    EXPECT_EQ(corio::current_task().get_name(), "test body");
    const TimePoint t0 = now();
    co_await corio::sleep(1ms);
    EXPECT_GE(ns(now() - t0), ns(1ms));
}

CORIO_TEST_WITH(Harness, CoroTestWithRunsOnTheGivenVirtualClock,
                {.virtual_clock = corio::VirtualClock{}, .timeout = 2h}) {
    EXPECT_TRUE(corio::get_running_loop().has_virtual_clock());
    const TimePoint t0 = now();
    co_await corio::sleep(1h);
    EXPECT_EQ(ns(now() - t0), ns(1h));
}

CORIO_TEST_WITH(Harness, CoroTestWithPassesTheBackend, {.backend = corio::BackendKind::Poll}) {
    EXPECT_STREQ(corio::get_running_loop().backend_name(), "poll");
    co_await corio::sleep(0s);
}

namespace {

std::int64_t g_virtual_body_elapsed = -1;
Coro<> body_sleeps_59_minutes() {
    const TimePoint t0 = now();
    co_await corio::sleep(59min);
    g_virtual_body_elapsed = ns(now() - t0);
}

Coro<int> body_returns_a_value() {
    co_await corio::sleep(0s);
    co_return 42;
}

bool g_env_body_virtual = false;
Coro<> body_checks_virtual_clock() {
    g_env_body_virtual = corio::get_running_loop().has_virtual_clock();
    co_await corio::sleep(1h);
}

}  // namespace

TEST(Harness, TimeoutIsMeasuredInVirtualTimeUnderAVirtualClock) {
    corio::testing::Options options = virtual_harness();
    options.timeout = 1h;
    g_virtual_body_elapsed = -1;
    const auto real0 = RealClock::now();
    const auto failures =
        failures_of([&] { corio::testing::run(body_sleeps_59_minutes(), options); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
    EXPECT_EQ(g_virtual_body_elapsed, ns(59min));
    EXPECT_LT(real_since(real0), ns(1s));
}

TEST(Harness, BodyReturningAValuePasses) {
    const auto failures = failures_of([] { corio::testing::run(body_returns_a_value()); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
}

TEST(Harness, UsesTheEnvironmentVirtualClockWhenOptionsLeaveItUnset) {
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", "1");
    g_env_body_virtual = false;
    const auto real0 = RealClock::now();
    const auto failures = failures_of([] { corio::testing::run(body_checks_virtual_clock()); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
    EXPECT_TRUE(g_env_body_virtual);
    EXPECT_LT(real_since(real0), ns(1s));
}

// --- the harness: what it reports --------------------------------------------------------------

namespace {

Coro<> body_raises_value_error() {
    co_await corio::sleep(0s);
    throw corio::ValueError("bad widget 42");
}

Coro<> body_raises_logic_error() {
    co_await corio::sleep(0s);
    throw std::logic_error("invariant broken");
}

Coro<> body_raises_an_int() {
    co_await corio::sleep(0s);
    throw 42;
}

int g_expected_answer = 42;
Coro<> body_with_a_failing_expect() {
    co_await corio::sleep(0s);
    EXPECT_EQ(g_expected_answer, 41);
}

int g_stuck_line = 0;
std::int64_t g_stuck_cancelled_at = -1;
Coro<> stuck_forever_body() {
    const TimePoint t0 = now();
    try {
        g_stuck_line = __LINE__ + 1;
        co_await corio::sleep(24h);
    } catch (const corio::CancelledError&) {
        g_stuck_cancelled_at = ns(now() - t0);
        throw;
    }
}

Coro<> stuck_on_a_future_body() {
    corio::Future<> never = corio::get_running_loop().create_future();
    co_await never;
}

bool g_swallowed = false;
Coro<> body_swallows_cancellation() {
    try {
        co_await corio::sleep(24h);
    } catch (const corio::CancelledError&) {
        g_swallowed = true;
    }
}

bool g_leak_cancelled = false;
Coro<> leaked_sleeper() {
    try {
        co_await corio::sleep(1h);
    } catch (const corio::CancelledError&) {
        g_leak_cancelled = true;
        throw;
    }
}

Coro<> body_leaks_a_task() {
    auto leaked = corio::create_task(leaked_sleeper(), "leaky worker");
    co_await corio::sleep(0s);  // it starts, and sleeps
}

bool g_unstarted_ran = false;
Coro<> never_started_worker() {
    g_unstarted_ran = true;
    co_return;
}

Coro<> body_leaks_an_unstarted_task() {
    auto leaked = corio::create_task(never_started_worker(), "idle worker");
    co_return;
}

Coro<> doomed_worker() {
    co_await corio::sleep(0s);
    throw corio::ValueError("disk on fire");
}

Coro<> body_drops_a_failed_task() {
    auto task = corio::create_task(doomed_worker(), "doomed");
    while (!task.done()) co_await corio::sleep(0s);
}

Coro<> body_drops_a_failed_future() {
    corio::Future<int> fut = corio::get_running_loop().create_future<int>();
    fut.set_exception(std::make_exception_ptr(corio::ValueError("lost result")));
    co_await corio::sleep(0s);
}

int g_leaked_fd = -1;
Coro<> body_opens_dev_null() {
    g_leaked_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    co_return;
}

void close_leaked_fd() {
    if (g_leaked_fd >= 0) ::close(g_leaked_fd);
    g_leaked_fd = -1;
}

Coro<> body_leaves_call_later_armed() {
    corio::get_running_loop().call_later(1h, [] {});
    co_return;
}

Coro<> body_leaves_call_soon_queued() {
    corio::get_running_loop().call_soon([] {});
    co_return;
}

Coro<> body_leaves_call_soon_threadsafe_queued() {
    corio::get_running_loop().call_soon_threadsafe([] {});
    co_return;
}

int g_pipe[2] = {-1, -1};
Coro<> body_leaves_a_reader() {
    corio::get_running_loop().add_reader(g_pipe[0], [] {});
    co_return;
}

Coro<> body_leaves_a_writer() {
    corio::get_running_loop().add_writer(g_pipe[1], [] {});
    co_return;
}

Coro<> body_leaves_every_kind_of_callback() {
    corio::EventLoop& loop = corio::get_running_loop();
    loop.call_later(1h, [] {});
    loop.call_soon([] {});
    loop.add_reader(g_pipe[0], [] {});
    loop.add_writer(g_pipe[1], [] {});
    co_return;
}

Coro<> body_leaks_a_task_and_a_timer() {
    auto leaked = corio::create_task(leaked_sleeper(), "second leak");
    corio::get_running_loop().call_later(1h, [] {});
    co_await corio::sleep(0s);
}

struct HarnessWithPipe : ::testing::Test {
    void SetUp() override { ASSERT_EQ(::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK), 0); }
    void TearDown() override {
        for (int& fd : g_pipe) {
            if (fd >= 0) ::close(fd);
            fd = -1;
        }
    }
};

}  // namespace

TEST(Harness, ReportsABodyThatRaisesWithTheExceptionTypeAndMessage) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_raises_value_error()),
                            "the test body raised corio::ValueError: bad widget 42");
}

TEST(Harness, ReportsABodyThatRaisesAStandardException) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_raises_logic_error()),
                            "std::logic_error: invariant broken");
}

TEST(Harness, ReportsABodyThatRaisesSomethingThatIsNoException) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_raises_an_int()), "the test body raised");
}

TEST(Harness, RecordsExpectFailuresInsideTheBody) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_with_a_failing_expect()), "g_expected_answer");
}

TEST(Harness, ReportsATimeoutInstantlyUnderAVirtualClockNamingTheBodysCoroutine) {
    corio::testing::Options options = virtual_harness();
    options.timeout = 10s;
    g_stuck_cancelled_at = -1;
    const auto real0 = RealClock::now();
    const auto failures = failures_of([&] { corio::testing::run(stuck_forever_body(), options); });
    ASSERT_EQ(failures.size(), 1u) << joined(failures);
    EXPECT_TRUE(contains(failures[0], "timed out")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "stuck_forever_body")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "last co_await at line " + std::to_string(g_stuck_line)))
        << failures[0];
    EXPECT_EQ(g_stuck_cancelled_at, ns(10s));
    EXPECT_LT(real_since(real0), ns(1s));
}

TEST(Harness, ReportsATimeoutOfABodyWaitingOnAFutureNobodySets) {
    corio::testing::Options options = virtual_harness();
    options.timeout = 1h;
    EXPECT_NONFATAL_FAILURE(corio::testing::run(stuck_on_a_future_body(), options), "timed out");
}

TEST(Harness, ReportsATimeoutOnTheRealClockToo) {
    ScopedEnv env("CORIO_VIRTUAL_CLOCK", nullptr);
    corio::testing::Options options;
    options.timeout = 30ms;
    EXPECT_NONFATAL_FAILURE(corio::testing::run(stuck_forever_body(), options), "timed out");
}

TEST(Harness, ReportsATimeoutEvenWhenTheBodySwallowsTheCancellation) {
    corio::testing::Options options = virtual_harness();
    options.timeout = 5s;
    g_swallowed = false;
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_swallows_cancellation(), options),
                            "timed out");
    EXPECT_TRUE(g_swallowed);
}

TEST(Harness, ReportsATaskLeftRunningByNameAndCancelsIt) {
    g_leak_cancelled = false;
    const auto failures = failures_of([] { corio::testing::run(body_leaks_a_task()); });
    ASSERT_EQ(failures.size(), 1u) << joined(failures);
    EXPECT_TRUE(contains(failures[0], "left 1 task(s) running")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "leaky worker")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "leaked_sleeper")) << failures[0];
    EXPECT_TRUE(g_leak_cancelled);
}

TEST(Harness, ReportsATaskLeftBeforeItEverStarted) {
    g_unstarted_ran = false;
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_leaks_an_unstarted_task()), "idle worker");
    EXPECT_FALSE(g_unstarted_ran);
}

TEST(Harness, LeakedTaskIsCancelledEvenWithTheTaskCheckOff) {
    corio::testing::Options options;
    options.check_tasks = false;
    g_leak_cancelled = false;
    const auto failures = failures_of([&] { corio::testing::run(body_leaks_a_task(), options); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
    EXPECT_TRUE(g_leak_cancelled);
}

TEST(Harness, ReportsAnExceptionNeverRetrievedWithTaskNameAndMessage) {
    const auto failures = failures_of([] { corio::testing::run(body_drops_a_failed_task()); });
    ASSERT_EQ(failures.size(), 1u) << joined(failures);
    EXPECT_TRUE(contains(failures[0], "never retrieved")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "doomed")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "doomed_worker")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "disk on fire")) << failures[0];
}

TEST(Harness, ReportsAFutureExceptionNeverRetrieved) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_drops_a_failed_future()), "lost result");
}

TEST(Harness, UnretrievedExceptionPassesWithTheExceptionCheckOff) {
    corio::testing::Options options;
    options.check_exceptions = false;
    const auto failures =
        failures_of([&] { corio::testing::run(body_drops_a_failed_task(), options); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
}

TEST(Harness, ReportsADescriptorLeftOpenWithItsTarget) {
    g_leaked_fd = -1;
    const auto failures = failures_of([] { corio::testing::run(body_opens_dev_null()); });
    const int fd = g_leaked_fd;
    close_leaked_fd();
    ASSERT_GE(fd, 0);
    ASSERT_EQ(failures.size(), 1u) << joined(failures);
    EXPECT_TRUE(contains(failures[0], "descriptors open")) << failures[0];
    EXPECT_TRUE(contains(failures[0], "fd " + std::to_string(fd) + " -> /dev/null")) << failures[0];
}

TEST(Harness, LeakedDescriptorPassesWithTheDescriptorCheckOff) {
    corio::testing::Options options;
    options.check_descriptors = false;
    g_leaked_fd = -1;
    const auto failures = failures_of([&] { corio::testing::run(body_opens_dev_null(), options); });
    const int fd = g_leaked_fd;
    close_leaked_fd();
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(failures.empty()) << joined(failures);
}

TEST(Harness, ReportsACallLaterLeftArmed) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_leaves_call_later_armed()),
                            "1 call_later/call_at timer(s) armed");
}

TEST(Harness, ReportsACallSoonLeftQueued) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_leaves_call_soon_queued()),
                            "1 callback(s) scheduled");
}

TEST(Harness, ReportsACallSoonThreadsafeLeftQueued) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_leaves_call_soon_threadsafe_queued()),
                            "1 callback(s) scheduled");
}

TEST_F(HarnessWithPipe, ReportsAReaderLeftRegistered) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_leaves_a_reader()), "1 reader(s)");
}

TEST_F(HarnessWithPipe, ReportsAWriterLeftRegistered) {
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_leaves_a_writer()), "1 writer(s)");
}

TEST_F(HarnessWithPipe, PassesCallbacksLeftBehindWithTheCallbackCheckOff) {
    corio::testing::Options options;
    options.check_callbacks = false;
    const auto failures =
        failures_of([&] { corio::testing::run(body_leaves_every_kind_of_callback(), options); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
}

TEST(Harness, ReportsEachProblemOfOneBodySeparately) {
    const auto failures = failures_of([] { corio::testing::run(body_leaks_a_task_and_a_timer()); });
    ASSERT_EQ(failures.size(), 2u) << joined(failures);
    const std::string all = joined(failures);
    EXPECT_TRUE(contains(all, "1 call_later/call_at timer(s) armed")) << all;
    EXPECT_TRUE(contains(all, "second leak")) << all;
}

// --- the harness: CORIO_ASSERT and a clean body ------------------------------------------------

namespace {

bool g_after_assert = false;
Coro<> body_with_a_false_assert() {
    co_await corio::sleep(0s);
    CORIO_ASSERT(2 + 2 == 5);
    g_after_assert = true;
}

Coro<> body_with_a_true_assert() {
    co_await corio::sleep(0s);
    CORIO_ASSERT(2 + 2 == 4);
    g_after_assert = true;
}

Coro<int> checked_half(int x) {
    co_await corio::sleep(0s);
    CORIO_ASSERT(x % 2 == 0);
    co_return x / 2;
}

Coro<> body_with_a_nested_false_assert() {
    const int half = co_await checked_half(3);
    (void)half;
    g_after_assert = true;
}

Coro<> clean_body() {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::TimerHandle timer = loop.call_later(1h, [] {});
    timer.cancel();
    corio::Handle soon = loop.call_soon([] {});
    soon.cancel();
    int fds[2] = {-1, -1};
    CORIO_ASSERT(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
    corio::Future<> writable = loop.create_future();
    loop.add_reader(fds[0], [] {});
    loop.add_writer(fds[1], [&writable] {
        if (!writable.done()) writable.set_result();
    });
    co_await writable;
    EXPECT_TRUE(loop.remove_reader(fds[0]));
    EXPECT_TRUE(loop.remove_writer(fds[1]));
    ::close(fds[0]);
    ::close(fds[1]);
    co_await corio::create_task(nap(1s), "helper");
    auto failing = corio::create_task(doomed_worker(), "handled");
    try {
        co_await failing;
    } catch (const corio::ValueError&) {
    }
}

}  // namespace

TEST(Harness, CorioAssertEndsTheBodyAndRecordsTheFailure) {
    g_after_assert = false;
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_with_a_false_assert()),
                            "CORIO_ASSERT(2 + 2 == 5) failed");
    EXPECT_FALSE(g_after_assert);
}

TEST(Harness, CorioAssertThatHoldsLetsTheBodyGoOn) {
    g_after_assert = false;
    const auto failures = failures_of([] { corio::testing::run(body_with_a_true_assert()); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
    EXPECT_TRUE(g_after_assert);
}

TEST(Harness, CorioAssertInANestedCoroutineEndsTheWholeBody) {
    g_after_assert = false;
    EXPECT_NONFATAL_FAILURE(corio::testing::run(body_with_a_nested_false_assert()),
                            "CORIO_ASSERT(x % 2 == 0) failed");
    EXPECT_FALSE(g_after_assert);
}

TEST(Harness, CleanBodyWithCancelledTimerHandleAndRemovedReaderPasses) {
    const auto failures = failures_of([] { corio::testing::run(clean_body(), virtual_harness()); });
    EXPECT_TRUE(failures.empty()) << joined(failures);
}
