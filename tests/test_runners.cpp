// Tests for corio::run() and corio::Runner (include/corio/runners.hpp), after the behaviours
// pinned by CPython's Lib/test/test_asyncio/test_runners.py.
// The tests that wait for timers run on a virtual clock (RunOptions::virtual_clock), where
// loop.time() jumps from deadline to deadline, so they assert exact times; ...OnTheRealClock
// tests, and those about threads and SIGINT, keep real time covered.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "corio/corio.hpp"

namespace {

using namespace std::chrono_literals;

// --- helpers ---------------------------------------------------------------------------------

class CustomError : public std::runtime_error {
  public:
    explicit CustomError(const std::string& what) : std::runtime_error(what) {}
};

corio::Coro<int> return_value(int v) {
    co_await corio::sleep(0s);
    co_return v;
}

corio::Coro<int> throw_custom_error() {
    co_await corio::sleep(0s);
    throw CustomError("main failed");
}

corio::Coro<> set_flag(bool* flag) {
    co_await corio::sleep(0s);
    *flag = true;
}

corio::Coro<int> sleep_then_return(corio::Duration delay, int v) {
    co_await corio::sleep(delay);
    co_return v;
}

// Run options with a virtual clock.
corio::RunOptions virtual_clock() {
    corio::RunOptions options;
    options.virtual_clock = corio::VirtualClock{};
    return options;
}

// A task that, when cancelled, cleans up (a 10 ms sleep) before it finishes cancelled; the loop
// time when the cleanup is done goes to *cleaned_at if given.
corio::Coro<> cleanup_slowly_when_cancelled(bool* started, bool* cleaned,
                                            corio::TimePoint* cleaned_at = nullptr) {
    *started = true;
    std::exception_ptr cancel;
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError&) {
        cancel = std::current_exception();
    }
    if (cancel) {
        co_await corio::sleep(10ms);
        *cleaned = true;
        if (cleaned_at != nullptr) *cleaned_at = corio::get_running_loop().time();
        std::rethrow_exception(cancel);
    }
}

// A task that answers cancellation with another exception.
corio::Coro<> raise_when_cancelled() {
    bool cancelled = false;
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError&) {
        cancelled = true;
    }
    if (cancelled) throw std::logic_error("failed while being cancelled");
}

// A task that swallows cancellation and returns normally.
corio::Coro<int> swallow_cancellation(bool* cancelled) {
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError&) {
        *cancelled = true;
    }
    co_return 1;
}

// The SIGINT disposition now.
void (*sigint_handler())(int) {
    struct sigaction current {};
    ::sigaction(SIGINT, nullptr, &current);
    return current.sa_handler;
}

// (Not RunOptions{.handle_sigint = false}: GCC 12's -Wmissing-field-initializers flags a
// designated initializer that skips the first members.)
corio::RunOptions no_sigint_handling() {
    corio::RunOptions options;
    options.handle_sigint = false;
    return options;
}

bool sigint_is_default() {
    return sigint_handler() == SIG_DFL;
}

// A handler tests install themselves; counts the SIGINTs it gets.
std::atomic<int> g_custom_sigint_count{0};
extern "C" void count_sigint(int) {
    g_custom_sigint_count.fetch_add(1);
}
static_assert(std::atomic<int>::is_always_lock_free);

void install_sigint(void (*handler)(int)) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &action, nullptr);
}

// The main task of the SIGINT tests: has SIGINT raised once it waits, and records whether the
// wait ended in CancelledError. Refuses to raise SIGINT if run() installed no handler (so that a
// broken run() fails the test instead of killing the test binary).
corio::Coro<int> wait_for_sigint(bool* saw_cancel) {
    if (sigint_is_default()) {
        ADD_FAILURE() << "SIGINT still has its default disposition inside run()";
        co_return -1;
    }
    corio::get_running_loop().call_later(20ms, [] { ::raise(SIGINT); });
    try {
        co_await corio::sleep(5s);
    } catch (const corio::CancelledError&) {
        *saw_cancel = true;
        throw;
    }
    co_return 0;
}

// Tests that touch SIGINT start from the default disposition, whatever the test binary
// inherited (a background job may inherit SIG_IGN), and restore what they found.
class RunnersSigint : public ::testing::Test {
  protected:
    void SetUp() override {
        ::sigaction(SIGINT, nullptr, &saved_);
        install_sigint(SIG_DFL);
        g_custom_sigint_count.store(0);
    }
    void TearDown() override { ::sigaction(SIGINT, &saved_, nullptr); }

  private:
    struct sigaction saved_ {};
};

using RunnersSigintDeathTest = RunnersSigint;

// --- run(): results and errors ---------------------------------------------------------------

TEST(Runners, RunReturnsMainCoroutineValue) {
    EXPECT_EQ(corio::run(return_value(42)), 42);
}

TEST(Runners, RunReturnsMoveOnlyValue) {
    auto make = []() -> corio::Coro<std::unique_ptr<int>> {
        co_await corio::sleep(0s);
        co_return std::make_unique<int>(7);
    };
    std::unique_ptr<int> p = corio::run(make());
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 7);
}

TEST(Runners, RunRethrowsMainExceptionWithItsType) {
    try {
        corio::run(throw_custom_error());
        FAIL() << "run() did not throw";
    } catch (const CustomError& e) {
        EXPECT_STREQ(e.what(), "main failed");
    }
}

TEST(Runners, RunRethrowsCorioErrorWithItsType) {
    auto main = []() -> corio::Coro<> {
        co_await corio::sleep(0s);
        throw corio::TimeoutError();
    };
    EXPECT_THROW(corio::run(main()), corio::TimeoutError);
}

TEST(Runners, RunAcceptsVoidCoro) {
    bool flag = false;
    corio::run(set_flag(&flag));
    EXPECT_TRUE(flag);
}

TEST(Runners, RunAcceptsImmediatelyInvokedLambdaCoroutine) {
    EXPECT_EQ(corio::run([]() -> corio::Coro<int> { co_return 3; }()), 3);
}

TEST(Runners, RunMainTaskCancellingItselfRaisesCancelledErrorNotInterrupted) {
    auto main = []() -> corio::Coro<int> {
        corio::current_task().cancel();
        co_await corio::sleep(0s);
        co_return 1;
    };
    EXPECT_THROW(corio::run(main()), corio::CancelledError);
}

TEST(Runners, MainTaskCancellingItselfIsCancelledAtItsNextAwaitWithoutWaiting) {
    // asyncio: a task that cancels itself has the future it next awaits cancelled at once.
    auto main = []() -> corio::Coro<corio::Duration> {
        corio::EventLoop& loop = corio::get_running_loop();
        corio::TimePoint start = loop.time();
        corio::current_task().cancel();
        try {
            co_await corio::sleep(2s);
        } catch (const corio::CancelledError&) {
            co_return loop.time() - start;
        }
        co_return corio::Duration::max();
    };
    corio::Duration elapsed = corio::run(main(), virtual_clock());
    EXPECT_EQ(elapsed, corio::Duration::zero());  // at once, not after the 2 s sleep
}

TEST(Runners, RunDebugOptionTurnsOnLoopDebug) {
    auto get_debug = []() -> corio::Coro<bool> {
        co_await corio::sleep(0s);
        co_return corio::get_running_loop().get_debug();
    };
    EXPECT_TRUE(corio::run(get_debug(), corio::RunOptions{.debug = true}));
    EXPECT_FALSE(corio::run(get_debug(), corio::RunOptions{.debug = false}));
}

TEST(Runners, RunMainIsTheCurrentTaskOfANewRunningLoop) {
    auto main = []() -> corio::Coro<> {
        EXPECT_TRUE(corio::current_task());
        EXPECT_TRUE(corio::get_running_loop().is_running());
        std::vector<corio::AnyTask> tasks = corio::all_tasks();
        EXPECT_EQ(tasks.size(), 1u);
        if (!tasks.empty()) {
            EXPECT_TRUE(tasks[0] == corio::current_task());
        }
        co_return;
    };
    corio::run(main());
    EXPECT_THROW(corio::get_running_loop(), corio::RuntimeError);
}

TEST(Runners, RunInsideRunningLoopRaisesRuntimeError) {
    auto main = []() -> corio::Coro<int> {
        int outcome = 0;
        try {
            corio::run(return_value(1));
            outcome = 1;
        } catch (const corio::RuntimeError&) {
            outcome = 2;
        }
        co_await corio::sleep(0s);
        co_return outcome;
    };
    EXPECT_EQ(corio::run(main()), 2);
}

TEST(Runners, RunnerRunInsideRunningLoopRaisesRuntimeError) {
    corio::Runner inner;
    auto main = [](corio::Runner* r) -> corio::Coro<int> {
        int outcome = 0;
        try {
            r->run(return_value(1));
            outcome = 1;
        } catch (const corio::RuntimeError&) {
            outcome = 2;
        }
        co_await corio::sleep(0s);
        co_return outcome;
    };
    EXPECT_EQ(corio::run(main(&inner)), 2);
    // The failed attempt left the runner usable.
    EXPECT_EQ(inner.run(return_value(5)), 5);
}

TEST(Runners, SequentialRunsEachGetAFreshLoop) {
    EXPECT_EQ(corio::run(return_value(1)), 1);
    EXPECT_THROW(corio::run(throw_custom_error()), CustomError);
    EXPECT_EQ(corio::run(return_value(2)), 2);
}

// --- run(): tasks left over when main returns --------------------------------------------------

TEST(Runners, RunCancelsLeftoverTasksAndWaitsForThem) {
    bool started = false;
    bool cleaned = false;
    corio::TimePoint main_returned{}, cleaned_at{};
    auto main = [](bool* s, bool* c, corio::TimePoint* returned,
                   corio::TimePoint* at) -> corio::Coro<int> {
        corio::create_task(cleanup_slowly_when_cancelled(s, c, at));
        co_await corio::sleep(0s);  // let it start
        co_await corio::sleep(5s);
        *returned = corio::get_running_loop().time();
        co_return 9;
    };
    EXPECT_EQ(corio::run(main(&started, &cleaned, &main_returned, &cleaned_at), virtual_clock()),
              9);
    EXPECT_TRUE(started);
    EXPECT_TRUE(cleaned);
    // Cancelled when main returned, 5 s in (not at its 10 s sleep's end), then the 10 ms cleanup.
    EXPECT_EQ(cleaned_at - main_returned, corio::Duration(10ms));
}

TEST(Runners, RunCancelsLeftoverTasksAndWaitsForThemOnTheRealClock) {
    bool started = false;
    bool cleaned = false;
    auto main = [](bool* s, bool* c) -> corio::Coro<int> {
        corio::create_task(cleanup_slowly_when_cancelled(s, c));
        co_await corio::sleep(0s);  // let it start
        co_return 9;
    };
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(corio::run(main(&started, &cleaned)), 9);
    auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(started);
    EXPECT_TRUE(cleaned);
    EXPECT_GE(elapsed, 9ms);  // the cleanup's 10 ms sleep, waited for in real time
    EXPECT_LT(elapsed, 5s);   // but not the 10 s sleep it was cancelled from
}

TEST(Runners, RunCancelsLeftoverTasksWhenMainRaises) {
    bool started = false;
    bool cleaned = false;
    auto main = [](bool* s, bool* c) -> corio::Coro<int> {
        corio::create_task(cleanup_slowly_when_cancelled(s, c));
        co_await corio::sleep(0s);
        throw CustomError("main failed");
    };
    EXPECT_THROW(corio::run(main(&started, &cleaned), virtual_clock()), CustomError);
    EXPECT_TRUE(started);
    EXPECT_TRUE(cleaned);
}

TEST(Runners, LeftoverTaskRaisingWhileCancelledIsReportedToExceptionHandler) {
    std::vector<corio::ExceptionContext> reports;
    bool swallowed = false;
    {
        corio::Runner runner;
        runner.get_loop().set_exception_handler(
            [&reports](corio::EventLoop&, const corio::ExceptionContext& c) {
                reports.push_back(c);
            });
        auto main = [](bool* sw) -> corio::Coro<> {
            corio::create_task(raise_when_cancelled(), "raiser");
            corio::create_task(swallow_cancellation(sw), "swallower");
            corio::create_task(corio::sleep(10s), "plain sleeper");
            co_await corio::sleep(0s);
        };
        runner.run(main(&swallowed));
        EXPECT_TRUE(reports.empty());
        runner.close();
        EXPECT_TRUE(swallowed);
        ASSERT_EQ(reports.size(), 1u);
        EXPECT_EQ(reports[0].message, "unhandled exception during corio::run() shutdown");
        EXPECT_EQ(reports[0].task, "raiser");
        ASSERT_TRUE(reports[0].exception);
        try {
            std::rethrow_exception(reports[0].exception);
        } catch (const std::logic_error& e) {
            EXPECT_STREQ(e.what(), "failed while being cancelled");
        } catch (...) {
            ADD_FAILURE() << "reported exception has the wrong type";
        }
    }
    // The exception was retrieved by the shutdown report: no second report when the task is
    // freed ("exception was never retrieved").
    EXPECT_EQ(reports.size(), 1u);
}

// --- Runner ------------------------------------------------------------------------------------

TEST(Runners, RunnerRunsSeveralTimesOnTheSameLoop) {
    corio::Runner runner(virtual_clock());
    corio::Task<int> background;
    auto first = [](corio::Task<int>* out) -> corio::Coro<int> {
        *out = corio::create_task(sleep_then_return(10ms, 42));
        co_await corio::sleep(0s);
        co_return 1;
    };
    auto second = [](corio::Task<int> t) -> corio::Coro<int> { co_return co_await t; };
    EXPECT_EQ(runner.run(first(&background)), 1);
    // run() does not cancel what is left: that is close()'s job.
    ASSERT_TRUE(background);
    EXPECT_FALSE(background.done());
    corio::TimePoint start = runner.get_loop().time();
    EXPECT_EQ(runner.run(second(background)), 42);
    EXPECT_TRUE(background.done());
    // The clock stood still between the runs: the 10 ms sleep ended 10 ms after it started.
    EXPECT_EQ(runner.get_loop().time() - start, corio::Duration(10ms));
}

TEST(Runners, RunnerGetLoopReturnsTheLoopRunUses) {
    corio::Runner runner;
    corio::EventLoop* loop = &runner.get_loop();
    EXPECT_EQ(&runner.get_loop(), loop);
    EXPECT_FALSE(loop->is_running());
    auto main = []() -> corio::Coro<corio::EventLoop*> {
        co_await corio::sleep(0s);
        co_return &corio::get_running_loop();
    };
    EXPECT_EQ(runner.run(main()), loop);
    EXPECT_EQ(runner.run(main()), loop);
    EXPECT_EQ(&runner.get_loop(), loop);
    EXPECT_FALSE(loop->is_closed());
}

TEST(Runners, RunnerDebugOptionAppliesToItsLoop) {
    corio::Runner debug_runner(corio::RunOptions{.debug = true});
    EXPECT_TRUE(debug_runner.get_loop().get_debug());
    corio::Runner plain_runner(corio::RunOptions{.debug = false});
    EXPECT_FALSE(plain_runner.get_loop().get_debug());
}

TEST(Runners, RunnerCloseClosesTheLoop) {
    corio::Runner runner;
    corio::EventLoop& loop = runner.get_loop();
    EXPECT_EQ(runner.run(return_value(3)), 3);
    EXPECT_FALSE(loop.is_closed());
    runner.close();
    EXPECT_TRUE(loop.is_closed());
}

TEST(Runners, RunnerCloseCancelsLeftoverTasksAndWaitsForThem) {
    corio::Runner runner(virtual_clock());
    bool started = false;
    bool cleaned = false;
    corio::TimePoint cleaned_at{};
    auto main = [](bool* s, bool* c, corio::TimePoint* at) -> corio::Coro<> {
        corio::create_task(cleanup_slowly_when_cancelled(s, c, at));
        co_await corio::sleep(0s);
    };
    runner.run(main(&started, &cleaned, &cleaned_at));
    EXPECT_TRUE(started);
    EXPECT_FALSE(cleaned);
    corio::TimePoint closing = runner.get_loop().time();
    runner.close();
    EXPECT_TRUE(cleaned);
    EXPECT_EQ(cleaned_at - closing, corio::Duration(10ms));
}

TEST(Runners, RunnerRunAfterCloseRaisesRuntimeError) {
    corio::Runner runner;
    EXPECT_EQ(runner.run(return_value(1)), 1);
    runner.close();
    EXPECT_THROW(runner.run(return_value(2)), corio::RuntimeError);
    EXPECT_THROW(runner.get_loop(), corio::RuntimeError);
}

TEST(Runners, RunnerClosedBeforeFirstUseRefusesToRun) {
    corio::Runner runner;
    runner.close();
    EXPECT_THROW(runner.run(return_value(2)), corio::RuntimeError);
    EXPECT_THROW(runner.get_loop(), corio::RuntimeError);
}

TEST(Runners, RunnerCloseIsIdempotent) {
    corio::Runner runner;
    corio::EventLoop& loop = runner.get_loop();
    EXPECT_EQ(runner.run(return_value(1)), 1);
    runner.close();
    EXPECT_NO_THROW(runner.close());
    EXPECT_TRUE(loop.is_closed());
}

TEST(Runners, RunnerDestructorClosesAndCancelsLeftoverTasks) {
    bool started = false;
    bool cleaned = false;
    corio::TimePoint closing{}, cleaned_at{};
    {
        corio::Runner runner(virtual_clock());
        auto main = [](bool* s, bool* c, corio::TimePoint* at) -> corio::Coro<> {
            corio::create_task(cleanup_slowly_when_cancelled(s, c, at));
            co_await corio::sleep(0s);
        };
        runner.run(main(&started, &cleaned, &cleaned_at));
        EXPECT_TRUE(started);
        EXPECT_FALSE(cleaned);
        closing = runner.get_loop().time();
    }
    EXPECT_TRUE(cleaned);
    EXPECT_EQ(cleaned_at - closing, corio::Duration(10ms));
}

TEST(Runners, RunnerStaysUsableAfterMainRaises) {
    corio::Runner runner;
    EXPECT_THROW(runner.run(throw_custom_error()), CustomError);
    EXPECT_EQ(runner.run(return_value(6)), 6);
}

TEST(Runners, RunnerRunAcceptsATaskOfItsLoop) {
    corio::Runner runner(virtual_clock());
    corio::TimePoint start = runner.get_loop().time();
    corio::Task<int> task = runner.get_loop().create_task(sleep_then_return(1s, 11));
    EXPECT_EQ(runner.run(task), 11);
    EXPECT_TRUE(task.done());
    EXPECT_EQ(runner.get_loop().time() - start, corio::Duration(1s));
}

TEST(Runners, RunnerRunAcceptsAFutureOfItsLoop) {
    corio::Runner runner(virtual_clock());
    corio::EventLoop& loop = runner.get_loop();
    corio::TimePoint start = loop.time();
    corio::Future<int> future = loop.create_future<int>();
    loop.call_later(1s, [future]() mutable { future.set_result(12); });
    EXPECT_EQ(runner.run(future), 12);
    EXPECT_EQ(loop.time() - start, corio::Duration(1s));
}

TEST(Runners, TwoRunnersOnOneThreadHaveIndependentLoops) {
    corio::Runner a;
    corio::Runner b;
    corio::EventLoop& loop_a = a.get_loop();
    corio::EventLoop& loop_b = b.get_loop();
    EXPECT_NE(&loop_a, &loop_b);
    EXPECT_EQ(a.run(return_value(1)), 1);
    EXPECT_EQ(b.run(return_value(2)), 2);
    a.close();
    EXPECT_TRUE(loop_a.is_closed());
    EXPECT_FALSE(loop_b.is_closed());
    EXPECT_EQ(b.run(return_value(3)), 3);
}

TEST(Runners, RunnerOnAnotherThreadWhileMainThreadLoopRuns) {
    auto main = []() -> corio::Coro<int> {
        corio::EventLoop& loop = corio::get_running_loop();
        corio::Future<int> result = loop.create_future<int>();
        std::atomic<bool> distinct_loop{false};
        std::thread worker([&loop, &distinct_loop, r = result]() mutable {
            int v = -1;
            try {
                corio::Runner runner;
                auto body = [](corio::EventLoop* other,
                               std::atomic<bool>* distinct) -> corio::Coro<int> {
                    distinct->store(&corio::get_running_loop() != other);
                    co_await corio::sleep(1ms);
                    co_return 21;
                };
                v = runner.run(body(&loop, &distinct_loop));
            } catch (...) {
                v = -2;
            }
            loop.call_soon_threadsafe([r = std::move(r), v]() mutable { r.set_result(v); });
        });
        int v = 0;
        try {
            v = co_await result;
        } catch (...) {
            worker.join();
            throw;
        }
        worker.join();
        EXPECT_TRUE(distinct_loop.load());
        co_return v;
    };
    EXPECT_EQ(corio::run(main()), 21);
}

// --- SIGINT ------------------------------------------------------------------------------------

TEST_F(RunnersSigint, SigintCancelsMainTaskAndRunRaisesInterrupted) {
    bool saw_cancel = false;
    EXPECT_THROW(corio::run(wait_for_sigint(&saw_cancel)), corio::Interrupted);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, SigintFromAnotherThreadInterruptsRun) {
    std::atomic<bool> waiting{false};
    std::atomic<bool> stop{false};
    bool saw_cancel = false;
    auto main = [](std::atomic<bool>* w, bool* saw) -> corio::Coro<int> {
        if (sigint_is_default()) {
            ADD_FAILURE() << "SIGINT still has its default disposition inside run()";
            co_return -1;
        }
        w->store(true);
        try {
            co_await corio::sleep(5s);
        } catch (const corio::CancelledError&) {
            *saw = true;
            throw;
        }
        co_return 0;
    };
    std::thread killer([&waiting, &stop] {
        while (!waiting.load() && !stop.load()) std::this_thread::sleep_for(1ms);
        if (waiting.load()) ::kill(::getpid(), SIGINT);
    });
    try {
        corio::run(main(&waiting, &saw_cancel));
        ADD_FAILURE() << "run() was not interrupted";
    } catch (const corio::Interrupted&) {
    }
    stop.store(true);
    killer.join();
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, SigintInterruptsMainTaskBusyWithoutWaiting) {
    // The main task never waits on anything but sleep(0): the cancellation must still land.
    auto main = []() -> corio::Coro<long> {
        if (sigint_is_default()) {
            ADD_FAILURE() << "SIGINT still has its default disposition inside run()";
            co_return -1;
        }
        long i = 0;
        for (; i < 10'000'000; ++i) {
            if (i == 10) ::raise(SIGINT);
            co_await corio::sleep(0s);
        }
        co_return i;
    };
    EXPECT_THROW(corio::run(main()), corio::Interrupted);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, RunInstallsSigintHandlerOnlyWhileRunning) {
    auto observe = []() -> corio::Coro<bool> {
        co_await corio::sleep(0s);
        co_return sigint_is_default();
    };
    EXPECT_FALSE(corio::run(observe()));
    EXPECT_TRUE(sigint_is_default());
    // Restored also when main raises.
    EXPECT_THROW(corio::run(throw_custom_error()), CustomError);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, MainTaskThatSwallowsSigintCancellationMakesRunReturnNormally) {
    auto main = []() -> corio::Coro<int> {
        bool saw_cancel = false;
        int status = co_await [](bool* saw) -> corio::Coro<int> {
            try {
                co_return co_await wait_for_sigint(saw);
            } catch (const corio::CancelledError&) {
                co_return 5;
            }
        }(&saw_cancel);
        EXPECT_TRUE(saw_cancel);
        co_return status;
    };
    EXPECT_EQ(corio::run(main()), 5);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, MainTaskRaisingAnotherErrorAfterSigintPropagatesThatError) {
    auto main = []() -> corio::Coro<int> {
        bool saw_cancel = false;
        bool cancelled = false;
        try {
            co_await wait_for_sigint(&saw_cancel);
        } catch (const corio::CancelledError&) {
            cancelled = true;
        }
        if (cancelled) throw CustomError("cleanup failed");
        co_return 0;
    };
    EXPECT_THROW(corio::run(main()), CustomError);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, RunnerHandlesSigintInEachRunAndStaysUsable) {
    corio::Runner runner;
    bool saw_cancel = false;
    EXPECT_THROW(runner.run(wait_for_sigint(&saw_cancel)), corio::Interrupted);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(sigint_is_default());
    // A later run is not affected by the earlier interruption ...
    EXPECT_EQ(runner.run(return_value(4)), 4);
    // ... and is interruptible again.
    saw_cancel = false;
    EXPECT_THROW(runner.run(wait_for_sigint(&saw_cancel)), corio::Interrupted);
    EXPECT_TRUE(saw_cancel);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, RunLeavesAHandlerInstalledBeforeItAlone) {
    install_sigint(&count_sigint);
    auto main = []() -> corio::Coro<int> {
        bool ours = sigint_handler() == &count_sigint;
        EXPECT_TRUE(ours);
        if (!ours) co_return -1;
        corio::get_running_loop().call_later(5ms, [] { ::raise(SIGINT); });
        co_await corio::sleep(50ms);
        co_return 7;
    };
    EXPECT_EQ(corio::run(main()), 7);
    EXPECT_EQ(g_custom_sigint_count.load(), 1);
    EXPECT_EQ(sigint_handler(), &count_sigint);
}

TEST_F(RunnersSigint, HandleSigintFalseLeavesDefaultDisposition) {
    auto observe = []() -> corio::Coro<bool> {
        co_await corio::sleep(0s);
        co_return sigint_is_default();
    };
    EXPECT_TRUE(corio::run(observe(), no_sigint_handling()));
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigint, HandleSigintFalseDoesNotInterruptRun) {
    install_sigint(&count_sigint);
    auto main = []() -> corio::Coro<int> {
        corio::get_running_loop().call_later(5ms, [] { ::raise(SIGINT); });
        co_await corio::sleep(50ms);
        co_return 8;
    };
    EXPECT_EQ(corio::run(main(), no_sigint_handling()), 8);
    EXPECT_EQ(g_custom_sigint_count.load(), 1);
    EXPECT_EQ(sigint_handler(), &count_sigint);
}

TEST_F(RunnersSigint, RunnerOnNonMainThreadLeavesSigintAlone) {
    bool default_inside = false;
    std::thread worker([&default_inside] {
        corio::Runner runner;
        auto observe = []() -> corio::Coro<bool> {
            co_await corio::sleep(0s);
            co_return sigint_is_default();
        };
        default_inside = runner.run(observe());
    });
    worker.join();
    EXPECT_TRUE(default_inside);
    EXPECT_TRUE(sigint_is_default());
}

TEST_F(RunnersSigintDeathTest, SecondSigintGetsTheDefaultAction) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    auto main = []() -> corio::Coro<> {
        if (sigint_is_default()) co_return;  // the child then exits 0: the test fails
        bool cancelled = false;
        try {
            ::raise(SIGINT);
            co_await corio::sleep(5s);
        } catch (const corio::CancelledError&) {
            cancelled = true;
        }
        if (cancelled) {
            corio::current_task().uncancel();
            ::raise(SIGINT);  // ends the process
            co_await corio::sleep(5s);
        }
    };
    EXPECT_EXIT(
        {
            corio::run(main());
            std::_Exit(0);
        },
        ::testing::KilledBySignal(SIGINT), "");
}

TEST_F(RunnersSigintDeathTest, HandleSigintFalseLeavesSigintFatal) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    auto main = []() -> corio::Coro<> {
        ::raise(SIGINT);
        co_await corio::sleep(5s);
    };
    EXPECT_EXIT(
        {
            corio::run(main(), no_sigint_handling());
            std::_Exit(0);
        },
        ::testing::KilledBySignal(SIGINT), "");
}

}  // namespace
