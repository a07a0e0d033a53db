// Tests for corio::EventLoop: callbacks, timers, other threads, descriptors, running and
// stopping, misuse, the exception handler, debug mode, backends and closing.
// The timer tests run on a virtual clock (LoopOptions::virtual_clock), where loop.time() jumps
// from deadline to deadline, so they assert exact firing times; ...OnTheRealClock tests, and
// those about threads, descriptors, blocking and the poll timeout, keep real time covered.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "corio/corio.hpp"

using namespace std::chrono_literals;
using corio::EventLoop;
using corio::ExceptionContext;
using corio::LoopOptions;
using corio::RuntimeError;

namespace {

// --- helpers -------------------------------------------------------------------------------

struct TestError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A loop's options with a virtual clock.
LoopOptions virtual_clock() {
    return LoopOptions{.virtual_clock = corio::VirtualClock{}};
}

// Runs exactly one pass of the loop (stop() before run_forever()).
void run_one_pass(EventLoop& loop) {
    loop.stop();
    loop.run_forever();
}

// A non-blocking pair of descriptors: [0] reads, [1] writes.
struct FdPair {
    int fds[2] = {-1, -1};
    ~FdPair() {
        for (int fd : fds) {
            if (fd >= 0) ::close(fd);
        }
    }
    int r() const { return fds[0]; }
    int w() const { return fds[1]; }
};

std::unique_ptr<FdPair> make_pipe() {
    auto p = std::make_unique<FdPair>();
    if (::pipe2(p->fds, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    return p;
}

std::unique_ptr<FdPair> make_socketpair() {
    auto p = std::make_unique<FdPair>();
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p->fds) != 0)
        throw std::runtime_error("socketpair failed");
    return p;
}

void write_byte(int fd) {
    char c = 'x';
    ASSERT_EQ(::write(fd, &c, 1), 1);
}

void drain(int fd) {
    char buf[256];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
}

// Sets (or unsets, with nullptr) an environment variable and restores it on destruction.
class EnvGuard {
  public:
    EnvGuard(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value != nullptr) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~EnvGuard() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }
    EnvGuard(const EnvGuard&) = delete;
    EnvGuard& operator=(const EnvGuard&) = delete;

  private:
    const char* name_;
    std::optional<std::string> old_;
};

// An exception handler that records what it is given.
struct Recorder {
    struct Entry {
        std::string message;
        std::exception_ptr exception;
        std::string task;
    };
    std::vector<Entry> entries;

    EventLoop::ExceptionHandler handler() {
        return [this](EventLoop&, const ExceptionContext& c) {
            entries.push_back(Entry{c.message, c.exception, c.task});
        };
    }
    std::size_t count(std::string_view message) const {
        std::size_t n = 0;
        for (const auto& e : entries) n += e.message == message ? 1 : 0;
        return n;
    }
};

std::string what_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "<not a std::exception>";
    }
}

bool contains(const std::string& haystack, std::string_view needle) {
    return haystack.find(needle) != std::string::npos;
}

// Sets *flag when destroyed: shows that a coroutine frame was freed.
struct DestroyFlag {
    bool* flag;
    explicit DestroyFlag(bool* f) : flag(f) {}
    DestroyFlag(const DestroyFlag&) = delete;
    ~DestroyFlag() { *flag = true; }
};

corio::Coro<int> answer_after_sleep() {
    co_await corio::sleep(1ms);
    co_return 42;
}

corio::Coro<int> fail_after_sleep() {
    co_await corio::sleep(1ms);
    throw TestError("coro failed");
}

corio::Coro<int> sleep_forever(bool* destroyed) {
    DestroyFlag guard(destroyed);
    co_await corio::sleep(1h);
    co_return 1;
}

// The frame owns `token` from the start, so its release shows the frame was freed even if
// the body never ran.
corio::Coro<> sleep_forever_holding(std::shared_ptr<int> token) {
    co_await corio::sleep(1h);
    (void)token;
}

corio::Coro<int> await_future(corio::Future<int> f, bool* destroyed) {
    DestroyFlag guard(destroyed);
    co_return co_await f;
}

corio::Coro<> stop_loop_then_sleep() {
    corio::get_running_loop().stop();
    co_await corio::sleep(1h);
}

corio::Coro<EventLoop*> running_loop_in_coro() {
    co_await corio::sleep(0s);
    co_return &corio::get_running_loop();
}

// --- call_soon -------------------------------------------------------------------------------

TEST(CallSoon, RunsCallbacksInFifoOrder) {
    EventLoop loop;
    std::vector<int> order;
    for (int i = 0; i < 10; ++i) loop.call_soon([&order, i] { order.push_back(i); });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(CallSoon, PassesArgumentsToCallback) {
    EventLoop loop;
    int got_int = 0;
    std::string got_str;
    loop.call_soon(
        [&](int a, const std::string& b) {
            got_int = a;
            got_str = b;
        },
        7, std::string("seven"));
    run_one_pass(loop);
    EXPECT_EQ(got_int, 7);
    EXPECT_EQ(got_str, "seven");
}

TEST(CallSoon, CancelledHandleDoesNotRun) {
    EventLoop loop;
    bool ran = false;
    bool other_ran = false;
    corio::Handle h = loop.call_soon([&] { ran = true; });
    loop.call_soon([&] { other_ran = true; });
    EXPECT_FALSE(h.cancelled());
    h.cancel();
    EXPECT_TRUE(h.cancelled());
    run_one_pass(loop);
    run_one_pass(loop);
    EXPECT_FALSE(ran);
    EXPECT_TRUE(other_ran);
}

TEST(CallSoon, CallbackScheduledDuringPassRunsOnNextPass) {
    EventLoop loop;
    std::vector<std::string> log;
    loop.call_soon([&] {
        log.push_back("first");
        loop.call_soon([&] { log.push_back("scheduled-in-pass"); });
    });
    loop.call_soon([&] { log.push_back("second"); });
    run_one_pass(loop);
    EXPECT_EQ(log, (std::vector<std::string>{"first", "second"}));
    run_one_pass(loop);
    EXPECT_EQ(log, (std::vector<std::string>{"first", "second", "scheduled-in-pass"}));
}

// --- call_later / call_at --------------------------------------------------------------------

TEST(Timers, CallAtFiresInDeadlineOrderAndNotEarlyOnTheRealClock) {
    EventLoop loop;
    std::vector<int> order;
    std::vector<bool> on_time;
    corio::TimePoint base = loop.time();
    for (int i : {3, 1, 2}) {
        corio::TimePoint when = base + i * 10ms;
        loop.call_at(when, [&, i, when] {
            order.push_back(i);
            on_time.push_back(loop.time() >= when);
        });
    }
    loop.call_at(base + 40ms, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(on_time, (std::vector<bool>{true, true, true}));
}

TEST(Timers, CallAtFiresExactlyAtItsDeadline) {
    EventLoop loop(virtual_clock());
    std::vector<int> order;
    std::vector<corio::Duration> fired_at;
    corio::TimePoint base = loop.time();
    for (int i : {3, 1, 2}) {
        loop.call_at(base + i * 10ms, [&, i] {
            order.push_back(i);
            fired_at.push_back(loop.time() - base);
        });
    }
    loop.call_at(base + 40ms, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
    std::vector<corio::Duration> expected = {10ms, 20ms, 30ms};
    EXPECT_EQ(fired_at, expected);
    EXPECT_EQ(loop.time() - base, corio::Duration(40ms));
}

TEST(Timers, CallLaterFiresInDelayOrder) {
    EventLoop loop(virtual_clock());
    std::vector<int> order;
    std::vector<corio::Duration> fired_at;
    corio::TimePoint start = loop.time();
    auto record = [&](int i) {
        order.push_back(i);
        fired_at.push_back(loop.time() - start);
    };
    loop.call_later(30s, record, 3);
    loop.call_later(10s, record, 1);
    loop.call_later(20s, record, 2);
    loop.call_later(1h, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
    std::vector<corio::Duration> expected = {10s, 20s, 30s};
    EXPECT_EQ(fired_at, expected);
    EXPECT_EQ(loop.time() - start, corio::Duration(1h));
}

TEST(Timers, EqualDeadlinesFireInSchedulingOrder) {
    EventLoop loop(virtual_clock());
    std::vector<int> order;
    bool all_on_time = true;
    corio::TimePoint when = loop.time() + 5ms;
    for (int i = 0; i < 20; ++i) {
        loop.call_at(when, [&, i] {
            order.push_back(i);
            all_on_time = all_on_time && loop.time() == when;
        });
    }
    loop.call_at(when, [&] { loop.stop(); });
    loop.run_forever();
    std::vector<int> expected;
    for (int i = 0; i < 20; ++i) expected.push_back(i);
    EXPECT_EQ(order, expected);
    EXPECT_TRUE(all_on_time);
}

TEST(Timers, CallAtInThePastFiresOnNextPass) {
    EventLoop loop;
    bool fired = false;
    loop.call_at(loop.time() - 1s, [&] { fired = true; });
    run_one_pass(loop);
    EXPECT_TRUE(fired);
}

TEST(Timers, CancelledTimerDoesNotFireAndWhenReturnsDeadline) {
    EventLoop loop(virtual_clock());
    bool fired = false;
    corio::TimePoint when = loop.time() + 5ms;
    corio::TimerHandle h = loop.call_at(when, [&] { fired = true; });
    EXPECT_EQ(h.when(), when);

    corio::TimePoint before = loop.time();
    corio::TimerHandle later = loop.call_later(20ms, [] {});
    EXPECT_EQ(later.when(), before + 20ms);  // the clock stands still while code runs

    h.cancel();
    EXPECT_TRUE(h.cancelled());
    loop.call_at(when + 20ms, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_FALSE(fired);
    EXPECT_EQ(loop.time(), when + 20ms);
}

TEST(Timers, CancelAfterFiringIsHarmless) {
    EventLoop loop(virtual_clock());
    int fired = 0;
    corio::TimerHandle h = loop.call_later(1ms, [&] {
        ++fired;
        loop.stop();
    });
    loop.run_forever();
    ASSERT_EQ(fired, 1);
    h.cancel();
    h.cancel();
    run_one_pass(loop);
    EXPECT_EQ(fired, 1);
    // The loop still works after that.
    bool later = false;
    loop.call_later(1ms, [&] {
        later = true;
        loop.stop();
    });
    loop.run_forever();
    EXPECT_TRUE(later);
}

TEST(Timers, TimeIsMonotonic) {
    EventLoop loop;
    corio::TimePoint prev = loop.time();
    for (int i = 0; i < 1000; ++i) {
        corio::TimePoint now = loop.time();
        ASSERT_GE(now, prev);
        prev = now;
    }
    std::this_thread::sleep_for(2ms);
    EXPECT_GT(loop.time(), prev);
}

// --- call_soon_threadsafe ------------------------------------------------------------------------

TEST(CallSoonThreadsafe, CallbacksFromSeveralThreadsWakeBlockedLoop) {
    constexpr int kThreads = 4;
    constexpr int kPerThread = 100;
    EventLoop loop;

    // A safety net that does not use the wake-up under test: if the loop is never woken, a
    // watchdog makes a pipe readable after 10 s and its reader stops the loop.
    auto watchdog_pipe = make_pipe();
    bool timed_out = false;
    loop.add_reader(watchdog_pipe->r(), [&] {
        timed_out = true;
        loop.stop();
    });
    std::mutex m;
    std::condition_variable cv;
    bool finished = false;
    std::thread watchdog([&] {
        std::unique_lock lock(m);
        if (!cv.wait_for(lock, 10s, [&] { return finished; })) write_byte(watchdog_pipe->w());
    });

    std::atomic<bool> loop_started{false};
    int received = 0;
    std::vector<int> last_seen(kThreads, -1);
    bool in_order = true;
    loop.call_soon([&] { loop_started = true; });

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            while (!loop_started) std::this_thread::sleep_for(1ms);
            // Give the loop time to block in poll: it has no timers and nothing ready.
            std::this_thread::sleep_for(20ms);
            for (int i = 0; i < kPerThread; ++i) {
                loop.call_soon_threadsafe([&, t, i] {
                    if (last_seen[t] != i - 1) in_order = false;
                    last_seen[t] = i;
                    if (++received == kThreads * kPerThread) loop.stop();
                });
            }
        });
    }
    loop.run_forever();
    for (auto& th : threads) th.join();
    {
        std::lock_guard lock(m);
        finished = true;
    }
    cv.notify_one();
    watchdog.join();

    EXPECT_FALSE(timed_out);
    EXPECT_EQ(received, kThreads * kPerThread);
    EXPECT_TRUE(in_order) << "callbacks from one thread ran out of order";
    loop.remove_reader(watchdog_pipe->r());
}

TEST(CallSoonThreadsafe, ThrowsAfterClose) {
    EventLoop loop;
    loop.close();
    bool ran = false;
    EXPECT_THROW(loop.call_soon_threadsafe([&] { ran = true; }), RuntimeError);

    bool threw = false;
    std::thread other([&] {
        try {
            loop.call_soon_threadsafe([&] { ran = true; });
        } catch (const RuntimeError&) {
            threw = true;
        }
    });
    other.join();
    EXPECT_TRUE(threw);
    EXPECT_FALSE(ran);
}

// --- add_reader / add_writer -------------------------------------------------------------------

void check_reader_is_level_triggered(const FdPair& p) {
    EventLoop loop;
    int calls = 0;
    loop.add_reader(p.r(), [&] { ++calls; });
    run_one_pass(loop);
    EXPECT_EQ(calls, 0) << "fired with nothing to read";

    write_byte(p.w());
    run_one_pass(loop);
    EXPECT_EQ(calls, 1);
    // Not drained: still readable, so it fires again.
    run_one_pass(loop);
    EXPECT_EQ(calls, 2);

    drain(p.r());
    run_one_pass(loop);
    EXPECT_EQ(calls, 2) << "fired after the data was drained";

    write_byte(p.w());
    run_one_pass(loop);
    EXPECT_EQ(calls, 3);
    EXPECT_TRUE(loop.remove_reader(p.r()));
}

TEST(Readers, PipeReaderFiresWhileReadable) {
    auto p = make_pipe();
    check_reader_is_level_triggered(*p);
}

TEST(Readers, SocketReaderFiresWhileReadable) {
    auto p = make_socketpair();
    check_reader_is_level_triggered(*p);
}

TEST(Readers, ReaderWakesLoopBlockedInPoll) {
    auto p = make_pipe();
    EventLoop loop;
    bool got = false;
    loop.add_reader(p->r(), [&] {
        drain(p->r());
        got = true;
        loop.stop();
    });
    std::thread writer([&] {
        std::this_thread::sleep_for(20ms);
        write_byte(p->w());
    });
    loop.run_forever();
    writer.join();
    EXPECT_TRUE(got);
    EXPECT_TRUE(loop.remove_reader(p->r()));
}

TEST(Readers, RemoveReaderReportsWhetherOneWasRegistered) {
    auto p = make_pipe();
    EventLoop loop;
    EXPECT_FALSE(loop.remove_reader(p->r()));
    int calls = 0;
    loop.add_reader(p->r(), [&] { ++calls; });
    EXPECT_TRUE(loop.remove_reader(p->r()));
    EXPECT_FALSE(loop.remove_reader(p->r()));

    write_byte(p->w());
    run_one_pass(loop);
    EXPECT_EQ(calls, 0);
}

// asyncio's idiom: remove_reader, then close. epoll forgets a closed descriptor by itself; the
// loop must not go on believing it is watched, or a descriptor that reuses the number (the
// next pipe, a child's pidfd, an accepted socket) is never watched at all.
TEST(Readers, ADescriptorNumberReusedAfterRemoveReaderAndCloseIsWatchedAgain) {
    EventLoop loop;
    int previous_fd = -1;
    for (int round = 0; round < 3; ++round) {
        auto p = make_pipe();
        if (previous_fd >= 0) {
            ASSERT_EQ(p->r(), previous_fd) << "the test needs the number reused";
        }
        int calls = 0;
        loop.add_reader(p->r(), [&] { ++calls; });
        write_byte(p->w());
        run_one_pass(loop);
        EXPECT_EQ(calls, 1) << "round " << round;
        EXPECT_TRUE(loop.remove_reader(p->r()));
        previous_fd = p->r();
    }  // each pipe is closed here, after remove_reader
}

TEST(Readers, SecondAddReaderReplacesCallback) {
    auto p = make_socketpair();
    EventLoop loop;
    int first = 0;
    int second = 0;
    loop.add_reader(p->r(), [&] { ++first; });
    loop.add_reader(p->r(), [&] { ++second; });
    write_byte(p->w());
    run_one_pass(loop);
    EXPECT_EQ(first, 0);
    EXPECT_EQ(second, 1);
    EXPECT_TRUE(loop.remove_reader(p->r()));
    EXPECT_FALSE(loop.remove_reader(p->r()));
}

TEST(Readers, ReaderCallbackMayRemoveItself) {
    auto p = make_pipe();
    EventLoop loop;
    int calls = 0;
    std::optional<bool> removed;
    loop.add_reader(p->r(), [&] {
        ++calls;
        removed = loop.remove_reader(p->r());
    });
    write_byte(p->w());
    run_one_pass(loop);
    run_one_pass(loop);  // still readable, but no longer watched
    EXPECT_EQ(calls, 1);
    ASSERT_TRUE(removed.has_value());
    EXPECT_TRUE(*removed);
    EXPECT_FALSE(loop.remove_reader(p->r()));
}

TEST(Readers, RemovedByAnotherCallbackInSamePassDoesNotRun) {
    auto a = make_pipe();
    auto b = make_socketpair();
    EventLoop loop;
    int calls_a = 0;
    int calls_b = 0;
    // Both become ready in the same pass; whichever runs first removes the other, whose
    // already-queued call must then not happen.
    loop.add_reader(a->r(), [&] {
        ++calls_a;
        loop.remove_reader(b->r());
    });
    loop.add_reader(b->r(), [&] {
        ++calls_b;
        loop.remove_reader(a->r());
    });
    write_byte(a->w());
    write_byte(b->w());
    run_one_pass(loop);
    EXPECT_EQ(calls_a + calls_b, 1);
    // Exactly one is still registered.
    int still = (loop.remove_reader(a->r()) ? 1 : 0) + (loop.remove_reader(b->r()) ? 1 : 0);
    EXPECT_EQ(still, 1);
}

TEST(Readers, WriterRemovedByReaderCallbackInSamePassDoesNotRun) {
    auto p = make_socketpair();
    auto q = make_pipe();
    EventLoop loop;
    int reader_calls = 0;
    int writer_calls = 0;
    loop.add_reader(q->r(), [&] {
        ++reader_calls;
        loop.remove_writer(p->r());
    });
    loop.add_writer(p->r(), [&] {
        ++writer_calls;
        loop.remove_reader(q->r());
    });
    write_byte(q->w());
    run_one_pass(loop);
    EXPECT_EQ(reader_calls + writer_calls, 1);
    loop.remove_reader(q->r());
    loop.remove_writer(p->r());
}

TEST(Writers, WriterFiresOnWritableSocketAndPipe) {
    auto s = make_socketpair();
    auto p = make_pipe();
    EventLoop loop;
    int socket_calls = 0;
    int pipe_calls = 0;
    loop.add_writer(s->w(), [&] { ++socket_calls; });
    loop.add_writer(p->w(), [&] { ++pipe_calls; });
    run_one_pass(loop);
    EXPECT_EQ(socket_calls, 1);
    EXPECT_EQ(pipe_calls, 1);
    run_one_pass(loop);  // still writable: level-triggered
    EXPECT_EQ(socket_calls, 2);
    EXPECT_EQ(pipe_calls, 2);
    EXPECT_TRUE(loop.remove_writer(s->w()));
    EXPECT_TRUE(loop.remove_writer(p->w()));
    EXPECT_FALSE(loop.remove_writer(p->w()));
    run_one_pass(loop);
    EXPECT_EQ(socket_calls, 2);
    EXPECT_EQ(pipe_calls, 2);
}

TEST(Writers, WriterDoesNotFireOnFullPipeUntilDrained) {
    auto p = make_pipe();
    // Fill the pipe.
    std::vector<char> chunk(65536, 'x');
    while (::write(p->w(), chunk.data(), chunk.size()) > 0) {
    }
    EventLoop loop;
    int calls = 0;
    loop.add_writer(p->w(), [&] { ++calls; });
    run_one_pass(loop);
    EXPECT_EQ(calls, 0);
    drain(p->r());
    run_one_pass(loop);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(loop.remove_writer(p->w()));
}

TEST(Readers, ReaderAndWriterOnSameFdAreIndependent) {
    auto s = make_socketpair();
    EventLoop loop;
    int reads = 0;
    int writes = 0;
    loop.add_reader(s->r(), [&] { ++reads; });
    loop.add_writer(s->r(), [&] { ++writes; });
    run_one_pass(loop);
    EXPECT_EQ(reads, 0);
    EXPECT_EQ(writes, 1);
    EXPECT_TRUE(loop.remove_writer(s->r()));
    write_byte(s->w());
    run_one_pass(loop);
    EXPECT_EQ(reads, 1);
    EXPECT_EQ(writes, 1);
    EXPECT_TRUE(loop.remove_reader(s->r()));
}

// --- run_until_complete ----------------------------------------------------------------------

TEST(RunUntilComplete, ReturnsCoroValue) {
    EventLoop loop;
    EXPECT_EQ(loop.run_until_complete(answer_after_sleep()), 42);
    EXPECT_FALSE(loop.is_running());
}

TEST(RunUntilComplete, RethrowsCoroException) {
    EventLoop loop;
    try {
        loop.run_until_complete(fail_after_sleep());
        FAIL() << "no exception";
    } catch (const TestError& e) {
        EXPECT_STREQ(e.what(), "coro failed");
    }
    // The loop is usable afterwards.
    EXPECT_EQ(loop.run_until_complete(answer_after_sleep()), 42);
}

TEST(RunUntilComplete, AcceptsTask) {
    EventLoop loop;
    corio::Task<int> task = loop.create_task(answer_after_sleep());
    EXPECT_FALSE(task.done());
    EXPECT_EQ(loop.run_until_complete(task), 42);
    EXPECT_TRUE(task.done());
    EXPECT_EQ(task.result(), 42);
    // A done task: returns at once.
    EXPECT_EQ(loop.run_until_complete(task), 42);
}

TEST(RunUntilComplete, AcceptsFuture) {
    EventLoop loop;
    corio::Future<int> f = loop.create_future<int>();
    loop.call_later(1ms, [f]() mutable { f.set_result(7); });
    EXPECT_EQ(loop.run_until_complete(f), 7);
    EXPECT_TRUE(f.done());

    corio::Future<int> g = loop.create_future<int>();
    loop.call_soon([g]() mutable { g.set_exception(std::make_exception_ptr(TestError("f"))); });
    EXPECT_THROW(loop.run_until_complete(g), TestError);

    corio::Future<> v = loop.create_future();
    loop.call_soon([v]() mutable { v.set_result(); });
    loop.run_until_complete(v);
    EXPECT_TRUE(v.done());
}

TEST(RunUntilComplete, StopInsideThrowsRuntimeError) {
    Recorder rec;
    EventLoop loop;
    loop.set_exception_handler(rec.handler());
    try {
        loop.run_until_complete(stop_loop_then_sleep());
        FAIL() << "no exception";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop stopped before Future completed.");
    }
    EXPECT_FALSE(loop.is_running());

    corio::Future<> f = loop.create_future();
    loop.call_soon([&] { loop.stop(); });
    try {
        loop.run_until_complete(f);
        FAIL() << "no exception";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop stopped before Future completed.");
    }
    loop.close();
}

// --- run_forever / stop -----------------------------------------------------------------------

TEST(RunForever, StopFromCallbackEndsAfterCurrentPass) {
    EventLoop loop;
    std::vector<std::string> log;
    loop.call_soon([&] {
        log.push_back("stopper");
        loop.stop();
        loop.call_soon([&] { log.push_back("next-pass"); });
    });
    loop.call_soon([&] { log.push_back("same-pass"); });
    loop.run_forever();
    EXPECT_EQ(log, (std::vector<std::string>{"stopper", "same-pass"}));
    // The stop request was consumed: the next run sees the rest.
    run_one_pass(loop);
    EXPECT_EQ(log, (std::vector<std::string>{"stopper", "same-pass", "next-pass"}));
}

TEST(RunForever, StopBeforeRunForeverRunsExactlyOnePass) {
    EventLoop loop;
    int passes = 0;
    std::function<void()> again = [&] {
        ++passes;
        loop.call_soon(again);
    };
    loop.call_soon(again);
    loop.stop();
    loop.run_forever();
    EXPECT_EQ(passes, 1);
    loop.stop();
    loop.run_forever();
    EXPECT_EQ(passes, 2);
}

TEST(RunForever, StopBeforeRunForeverDoesNotWaitForTimers) {
    EventLoop loop;
    bool fired = false;
    loop.call_later(1h, [&] { fired = true; });
    auto start = std::chrono::steady_clock::now();
    run_one_pass(loop);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_FALSE(fired);
}

TEST(RunForever, IsRunningInsideCallbackOnly) {
    EventLoop loop;
    EXPECT_FALSE(loop.is_running());
    std::optional<bool> inside;
    loop.call_soon([&] {
        inside = loop.is_running();
        loop.stop();
    });
    loop.run_forever();
    ASSERT_TRUE(inside.has_value());
    EXPECT_TRUE(*inside);
    EXPECT_FALSE(loop.is_running());
}

// --- one running loop per thread, closed loops -------------------------------------------------

TEST(LoopMisuse, RunningSecondLoopInsideRunningLoopThrows) {
    EventLoop outer;
    EventLoop inner;
    bool threw = false;
    EventLoop* running_after = nullptr;
    outer.call_soon([&] {
        try {
            inner.run_forever();
        } catch (const RuntimeError&) {
            threw = true;
        }
        running_after = &corio::get_running_loop();
        outer.stop();
    });
    outer.run_forever();
    EXPECT_TRUE(threw);
    EXPECT_EQ(running_after, &outer);
    EXPECT_FALSE(inner.is_running());
    // Both loops still work on their own.
    bool ran = false;
    inner.call_soon([&] { ran = true; });
    run_one_pass(inner);
    EXPECT_TRUE(ran);
}

TEST(LoopMisuse, RunUntilCompleteOfSecondLoopInsideRunningLoopThrows) {
    Recorder rec;
    EventLoop outer;
    EventLoop inner;
    inner.set_exception_handler(rec.handler());
    bool threw = false;
    outer.call_soon([&] {
        try {
            inner.run_until_complete(answer_after_sleep());
        } catch (const RuntimeError&) {
            threw = true;
        }
        outer.stop();
    });
    outer.run_forever();
    EXPECT_TRUE(threw);
}

TEST(LoopMisuse, RunningSameLoopWhileRunningThrows) {
    EventLoop loop;
    bool threw = false;
    bool still_running = false;
    loop.call_soon([&] {
        try {
            loop.run_forever();
        } catch (const RuntimeError&) {
            threw = true;
        }
        still_running = loop.is_running();
        loop.stop();
    });
    loop.run_forever();
    EXPECT_TRUE(threw);
    EXPECT_TRUE(still_running);
    EXPECT_FALSE(loop.is_running());
}

TEST(LoopMisuse, ClosedLoopRejectsEveryUse) {
    EventLoop loop;
    loop.close();
    EXPECT_TRUE(loop.is_closed());
    EXPECT_THROW(loop.call_soon([] {}), RuntimeError);
    EXPECT_THROW(loop.call_later(1ms, [] {}), RuntimeError);
    EXPECT_THROW(loop.call_at(loop.time(), [] {}), RuntimeError);
    EXPECT_THROW(loop.run_forever(), RuntimeError);
    EXPECT_THROW(loop.create_task(answer_after_sleep()), RuntimeError);
    EXPECT_THROW(loop.create_future<int>(), RuntimeError);
    EXPECT_THROW(loop.run_until_complete(answer_after_sleep()), RuntimeError);
    auto p = make_pipe();
    EXPECT_THROW(loop.add_reader(p->r(), [] {}), RuntimeError);
    EXPECT_THROW(loop.add_writer(p->w(), [] {}), RuntimeError);
}

TEST(LoopMisuse, CloseWhileRunningThrows) {
    EventLoop loop;
    bool threw = false;
    loop.call_soon([&] {
        try {
            loop.close();
        } catch (const RuntimeError&) {
            threw = true;
        }
        loop.stop();
    });
    loop.run_forever();
    EXPECT_TRUE(threw);
    EXPECT_FALSE(loop.is_closed());
    // Still usable.
    bool ran = false;
    loop.call_soon([&] { ran = true; });
    run_one_pass(loop);
    EXPECT_TRUE(ran);
}

TEST(LoopMisuse, CloseTwiceIsFine) {
    EventLoop loop;
    loop.call_soon([] {});
    loop.close();
    EXPECT_NO_THROW(loop.close());
    EXPECT_TRUE(loop.is_closed());
}

TEST(GetRunningLoop, ThrowsOutsideALoop) {
    try {
        corio::get_running_loop();
        FAIL() << "no exception";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "no running event loop");
    }
    // Also after a loop has run on this thread and returned.
    EventLoop loop;
    run_one_pass(loop);
    EXPECT_THROW(corio::get_running_loop(), RuntimeError);
}

TEST(GetRunningLoop, ReturnsTheLoopInsideCallbacksAndCoroutines) {
    EventLoop loop;
    EventLoop* in_callback = nullptr;
    loop.call_soon([&] { in_callback = &corio::get_running_loop(); });
    run_one_pass(loop);
    EXPECT_EQ(in_callback, &loop);
    EXPECT_EQ(loop.run_until_complete(running_loop_in_coro()), &loop);
}

// --- exception handler
// -----------------------------------------------------------------------------

TEST(ExceptionHandler, CallbackExceptionGoesToHandler) {
    Recorder rec;
    EventLoop loop;
    loop.set_exception_handler(rec.handler());
    bool after = false;
    loop.call_soon([] { throw TestError("boom"); });
    loop.call_soon([&] { after = true; });
    run_one_pass(loop);
    EXPECT_TRUE(after) << "an exception in one callback stopped the others";
    ASSERT_EQ(rec.entries.size(), 1u);
    EXPECT_EQ(rec.entries[0].message, "Exception in callback");
    ASSERT_TRUE(rec.entries[0].exception);
    EXPECT_THROW(std::rethrow_exception(rec.entries[0].exception), TestError);
    EXPECT_EQ(what_of(rec.entries[0].exception), "boom");
}

TEST(ExceptionHandler, TimerAndReaderExceptionsGoToHandler) {
    Recorder rec;
    EventLoop loop;
    loop.set_exception_handler(rec.handler());
    auto p = make_pipe();
    loop.call_at(loop.time() - 1ms, [] { throw TestError("timer"); });
    loop.add_reader(p->r(), [] { throw TestError("reader"); });
    write_byte(p->w());
    run_one_pass(loop);
    loop.remove_reader(p->r());
    ASSERT_EQ(rec.count("Exception in callback"), 2u);
    std::vector<std::string> whats;
    for (const auto& e : rec.entries) whats.push_back(what_of(e.exception));
    std::sort(whats.begin(), whats.end());
    EXPECT_EQ(whats, (std::vector<std::string>{"reader", "timer"}));
}

TEST(ExceptionHandler, GetExceptionHandlerReturnsTheOneSet) {
    EventLoop loop;
    EXPECT_FALSE(loop.get_exception_handler());
    int calls = 0;
    loop.set_exception_handler([&](EventLoop& l, const ExceptionContext& c) {
        EXPECT_EQ(&l, &loop);
        EXPECT_EQ(c.message, "via getter");
        ++calls;
    });
    ASSERT_TRUE(loop.get_exception_handler());
    loop.get_exception_handler()(loop, ExceptionContext{"via getter", nullptr, {}, {}});
    EXPECT_EQ(calls, 1);
    loop.call_exception_handler(ExceptionContext{"via getter", nullptr, {}, {}});
    EXPECT_EQ(calls, 2);
    loop.set_exception_handler(nullptr);
    EXPECT_FALSE(loop.get_exception_handler());
}

TEST(ExceptionHandler, NoHandlerUsesDefaultWhichWritesToStderr) {
    EventLoop loop;
    testing::internal::CaptureStderr();
    loop.call_exception_handler(ExceptionContext{
        "something odd happened", std::make_exception_ptr(TestError("kaboom")), "the-task", {}});
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(contains(out, "something odd happened")) << out;
    EXPECT_TRUE(contains(out, "kaboom")) << out;
    EXPECT_TRUE(contains(out, "the-task")) << out;

    testing::internal::CaptureStderr();
    loop.default_exception_handler(ExceptionContext{"direct call", nullptr, {}, {}});
    out = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(contains(out, "direct call")) << out;
}

TEST(ExceptionHandler, CallbackExceptionWithoutHandlerIsPrinted) {
    EventLoop loop;
    loop.call_soon([] { throw TestError("unhandled-in-callback"); });
    testing::internal::CaptureStderr();
    run_one_pass(loop);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(contains(out, "Exception in callback")) << out;
    EXPECT_TRUE(contains(out, "unhandled-in-callback")) << out;
}

TEST(ExceptionHandler, ThrowingHandlerFallsBackToDefault) {
    EventLoop loop;
    int handler_calls = 0;
    loop.set_exception_handler([&](EventLoop&, const ExceptionContext&) {
        ++handler_calls;
        throw TestError("handler broke");
    });
    bool after = false;
    loop.call_soon([] { throw TestError("original"); });
    loop.call_soon([&] { after = true; });
    testing::internal::CaptureStderr();
    run_one_pass(loop);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(handler_calls, 1);
    EXPECT_TRUE(after);
    EXPECT_TRUE(contains(out, "Exception in callback")) << out;
    EXPECT_TRUE(contains(out, "original")) << out;
    EXPECT_TRUE(contains(out, "handler broke")) << out;

    // Direct calls too, and a handler throwing something that is not a std::exception.
    loop.set_exception_handler(
        [](EventLoop&, const ExceptionContext&) { throw corio::CancelledError("odd"); });
    testing::internal::CaptureStderr();
    EXPECT_NO_THROW(loop.call_exception_handler(ExceptionContext{"direct", nullptr, {}, {}}));
    out = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(contains(out, "direct")) << out;
}

// --- debug mode ----------------------------------------------------------------------------------

TEST(Debug, SetDebugAndGetDebug) {
    EventLoop loop(LoopOptions{.debug = false});
    EXPECT_FALSE(loop.get_debug());
    loop.set_debug(true);
    EXPECT_TRUE(loop.get_debug());
    loop.set_debug(false);
    EXPECT_FALSE(loop.get_debug());

    EventLoop debug_loop(LoopOptions{.debug = true});
    EXPECT_TRUE(debug_loop.get_debug());
}

TEST(Debug, CorioDebugEnvironmentVariable) {
    {
        EnvGuard env("CORIO_DEBUG", "1");
        EventLoop loop;
        EXPECT_TRUE(loop.get_debug());
        EventLoop explicit_off(LoopOptions{.debug = false});
        EXPECT_FALSE(explicit_off.get_debug());
    }
    {
        EnvGuard env("CORIO_DEBUG", nullptr);
        EventLoop loop;
        EXPECT_FALSE(loop.get_debug());
        EventLoop explicit_on(LoopOptions{.debug = true});
        EXPECT_TRUE(explicit_on.get_debug());
    }
    {
        EnvGuard env("CORIO_DEBUG", "0");
        EventLoop loop;
        EXPECT_FALSE(loop.get_debug());
    }
}

TEST(Debug, SlowCallbackIsReportedInDebugMode) {
    EventLoop loop(LoopOptions{.debug = true});
    loop.slow_callback_duration = 10ms;
    loop.call_soon([] { std::this_thread::sleep_for(30ms); });
    testing::internal::CaptureStderr();
    run_one_pass(loop);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(contains(out, "callback")) << out;
    EXPECT_TRUE(contains(out, "took")) << out;
}

TEST(Debug, SlowCallbackIsNotReportedOutsideDebugMode) {
    EventLoop loop(LoopOptions{.debug = false});
    loop.slow_callback_duration = 10ms;
    loop.call_soon([] { std::this_thread::sleep_for(30ms); });
    testing::internal::CaptureStderr();
    run_one_pass(loop);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(out, "");
}

// --- backends ----------------------------------------------------------------------------------

TEST(Backend, NameFollowsCorioBackend) {
    EventLoop loop;
    const char* env = std::getenv("CORIO_BACKEND");
    std::string_view v = env != nullptr ? env : "";
    std::string expected = v == "poll" ? "poll" : "epoll";
    EXPECT_EQ(std::string(loop.backend_name()), expected);
}

TEST(Backend, OptionsForceBackend) {
    EventLoop poll_loop(LoopOptions{.backend = corio::BackendKind::Poll});
    EXPECT_STREQ(poll_loop.backend_name(), "poll");
    EventLoop epoll_loop(LoopOptions{.backend = corio::BackendKind::Epoll});
    EXPECT_STREQ(epoll_loop.backend_name(), "epoll");

    // The forced poll loop works: a timer and a reader.
    auto p = make_pipe();
    int reads = 0;
    bool fired = false;
    poll_loop.add_reader(p->r(), [&] { ++reads; });
    poll_loop.call_later(1ms, [&] {
        fired = true;
        poll_loop.stop();
    });
    write_byte(p->w());
    poll_loop.run_forever();
    EXPECT_TRUE(fired);
    EXPECT_GE(reads, 1);
    EXPECT_TRUE(poll_loop.remove_reader(p->r()));
}

TEST(Backend, BogusCorioBackendMakesConstructorThrow) {
    EnvGuard env("CORIO_BACKEND", "bogus");
    EXPECT_THROW(EventLoop{}, RuntimeError);
    // An explicit choice does not look at the variable.
    EventLoop loop(LoopOptions{.backend = corio::BackendKind::Poll});
    EXPECT_STREQ(loop.backend_name(), "poll");
}

// --- closing ---------------------------------------------------------------------------------

TEST(Close, FreesPendingCallbacksTimersAndWatches) {
    auto token = std::make_shared<int>(0);
    auto p = make_pipe();
    {
        EventLoop loop;
        loop.call_soon([token] {});
        loop.call_later(1h, [token] {});
        corio::TimerHandle kept = loop.call_later(1h, [token] {});
        loop.add_reader(p->r(), [token] {});
        loop.add_writer(p->w(), [token] {});
        EXPECT_EQ(token.use_count(), 6);
        loop.close();
        // Every callback that can no longer run is destroyed by close(), on the loop's
        // thread, including the one a user's handle still refers to.
        EXPECT_EQ(token.use_count(), 1);
        kept.cancel();
        EXPECT_TRUE(kept.cancelled());
    }
    EXPECT_EQ(token.use_count(), 1);
}

TEST(Close, PendingTasksAreFreedAndReported) {
    Recorder rec;
    bool started_destroyed = false;
    auto token = std::make_shared<int>(0);
    {
        EventLoop loop;
        loop.set_exception_handler(rec.handler());
        loop.create_task(sleep_forever(&started_destroyed), "sleeper");
        run_one_pass(loop);  // the task starts and suspends in sleep
        loop.create_task(sleep_forever_holding(token), "never-started");
        EXPECT_EQ(token.use_count(), 2);
        EXPECT_FALSE(started_destroyed);
        loop.close();
        EXPECT_TRUE(started_destroyed);
        EXPECT_EQ(token.use_count(), 1) << "the unstarted task's frame was not freed";
    }
    ASSERT_EQ(rec.count("Task was destroyed but it is pending"), 2u);
    std::vector<std::string> names;
    for (const auto& e : rec.entries) names.push_back(e.task);
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"never-started", "sleeper"}));
}

TEST(Close, PendingTaskReportGoesToStderrWithoutHandler) {
    bool destroyed = false;
    EventLoop loop;
    loop.create_task(sleep_forever(&destroyed), "lonely-task");
    run_one_pass(loop);
    testing::internal::CaptureStderr();
    loop.close();
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(destroyed);
    EXPECT_TRUE(contains(out, "Task was destroyed but it is pending")) << out;
    EXPECT_TRUE(contains(out, "lonely-task")) << out;
}

TEST(Close, TaskHandleKeptAfterCloseIsDoneAndCancelled) {
    Recorder rec;
    bool destroyed = false;
    std::optional<corio::Task<int>> task;
    {
        auto loop = std::make_unique<EventLoop>();
        loop->set_exception_handler(rec.handler());
        task = loop->create_task(sleep_forever(&destroyed), "kept");
        run_one_pass(*loop);
        EXPECT_FALSE(task->done());
        loop->close();
        EXPECT_TRUE(task->done());
        EXPECT_TRUE(task->cancelled());
        EXPECT_EQ(rec.count("Task was destroyed but it is pending"), 1u);
    }  // the loop is destroyed here; the task handle outlives it
    EXPECT_TRUE(task->done());
    EXPECT_TRUE(task->cancelled());
    EXPECT_THROW(task->result(), corio::CancelledError);
    task.reset();
    EXPECT_TRUE(destroyed);
}

TEST(Close, TaskAwaitingKeptFutureIsFreed) {
    Recorder rec;
    bool destroyed = false;
    std::optional<corio::Future<int>> fut;
    {
        EventLoop loop;
        loop.set_exception_handler(rec.handler());
        fut = loop.create_future<int>();
        loop.create_task(await_future(*fut, &destroyed), "waiter");
        run_one_pass(loop);
        EXPECT_FALSE(destroyed);
    }
    EXPECT_TRUE(destroyed);
    EXPECT_EQ(rec.count("Task was destroyed but it is pending"), 1u);
    fut.reset();
}

TEST(Close, PendingFutureHeldAfterLoopDestroyedIsSafe) {
    std::optional<corio::Future<int>> fut;
    {
        EventLoop loop;
        fut = loop.create_future<int>();
        EXPECT_FALSE(fut->done());
    }
    // Only the handle is left: destroying it must be safe (ASan/LSan check).
    fut.reset();
    EXPECT_FALSE(fut.has_value());
}

TEST(Close, CompletedFutureAndTaskHeldAfterLoopDestroyedKeepResults) {
    std::optional<corio::Future<int>> fut;
    std::optional<corio::Task<int>> task;
    {
        EventLoop loop;
        fut = loop.create_future<int>();
        fut->set_result(5);
        task = loop.create_task(answer_after_sleep());
        loop.run_until_complete(*task);
    }
    EXPECT_EQ(fut->result(), 5);
    EXPECT_EQ(task->result(), 42);
    fut.reset();
    task.reset();
}

}  // namespace

TEST(RunUntilComplete, RefusedOnASecondLoopLeavesNoTaskBehind) {
    EventLoop outer;
    EventLoop inner;
    std::vector<std::string> reports;
    inner.set_exception_handler(
        [&](EventLoop&, const corio::ExceptionContext& c) { reports.push_back(c.message); });
    outer.run_until_complete([&]() -> corio::Coro<> {
        EXPECT_THROW(inner.run_until_complete(corio::sleep(0s)), RuntimeError);
        co_return;
    }());
    inner.close();
    EXPECT_TRUE(reports.empty()) << reports.front();
}

TEST(CallSoonThreadsafe, CallbackIsDestroyedOnTheLoopThread) {
    // The other thread keeps its Handle past the callback's run: what the callback captured
    // must still be destroyed on the loop's thread.
    struct Probe {
        std::thread::id* destroyed_on;
        bool armed = true;
        explicit Probe(std::thread::id* d) : destroyed_on(d) {}
        Probe(Probe&& o) noexcept : destroyed_on(o.destroyed_on) { o.armed = false; }
        ~Probe() {
            if (armed) *destroyed_on = std::this_thread::get_id();
        }
    };
    EventLoop loop;
    std::thread::id destroyed_on;
    std::promise<void> release;
    corio::Future<void> done = loop.create_future();
    corio::Future<void>* done_ptr = &done;
    std::thread other([&] {
        corio::Handle h = loop.call_soon_threadsafe(
            [p = Probe(&destroyed_on), done_ptr] { done_ptr->set_result(); });
        release.get_future().wait();  // hold the handle until the loop has run the callback
    });
    loop.run_until_complete(done);
    EXPECT_EQ(destroyed_on, std::this_thread::get_id());
    release.set_value();
    other.join();
}
