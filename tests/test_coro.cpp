// corio::Coro<T>: lazy coroutines awaited by direct (symmetric) transfer.
// The tests of foreign awaiters resumed by a timer run on a virtual clock (corio::testing with
// corio::VirtualClock), so they assert exactly when the task resumed; ...OnTheRealClock keeps
// real time covered.
#include <gtest/gtest.h>

#include <algorithm>

#include <chrono>
#include <corio/corio.hpp>
#include <corio/testing.hpp>
#include <coroutine>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct CodedError : std::runtime_error {
    int code;
    explicit CodedError(int c) : std::runtime_error("coded " + std::to_string(c)), code(c) {}
};

corio::Coro<int> set_flag_and_return(bool* ran, int v) {
    *ran = true;
    co_return v;
}

}  // namespace

TEST(Coro, IsLazyBodyRunsOnlyWhenAwaited) {
    bool ran = false;
    corio::run([](bool* ran) -> corio::Coro<> {
        auto c = set_flag_and_return(ran, 1);
        co_await corio::sleep(0s);
        EXPECT_FALSE(*ran);  // created, and the loop went round, but never awaited
        int v = co_await std::move(c);
        EXPECT_TRUE(*ran);
        EXPECT_EQ(v, 1);
    }(&ran));
    EXPECT_TRUE(ran);
}

TEST(Coro, CreatingOutsideALoopRunsNothing) {
    bool ran = false;
    auto c = set_flag_and_return(&ran, 7);
    EXPECT_TRUE(static_cast<bool>(c));
    EXPECT_FALSE(ran);
    EXPECT_EQ(corio::run(std::move(c)), 7);
    EXPECT_TRUE(ran);
}

namespace {

corio::Coro<int> add(int a, int b) {
    co_await corio::sleep(1ms);
    co_return a + b;
}

corio::Coro<std::string> greet(std::string name) {
    int n = co_await add(2, 3);
    co_return "hello " + name + " " + std::to_string(n);
}

}  // namespace

TEST(Coro, CoAwaitReturnsTheValue) {
    EXPECT_EQ(corio::run(greet("corio")), "hello corio 5");
}

namespace {

corio::Coro<int> throws_coded(int code) {
    co_await corio::sleep(0s);
    throw CodedError(code);
}

corio::Coro<int> middle_passes_through(int code) {
    int v = co_await throws_coded(code);
    ADD_FAILURE() << "middle coroutine went on after its callee threw";
    co_return v;
}

corio::Coro<int> throws_int_synchronously() {
    throw 42;
    co_return 0;
}

}  // namespace

TEST(Coro, ExceptionPropagatesThroughNestedCorosWithItsType) {
    int code = corio::run([]() -> corio::Coro<int> {
        try {
            co_await middle_passes_through(13);
        } catch (const CodedError& e) {
            co_return e.code;
        }
        co_return -1;
    }());
    EXPECT_EQ(code, 13);
}

TEST(Coro, NonStdExceptionPropagatesThroughCoro) {
    int caught = corio::run([]() -> corio::Coro<int> {
        try {
            co_await throws_int_synchronously();
        } catch (int v) {
            co_return v;
        }
        co_return -1;
    }());
    EXPECT_EQ(caught, 42);
}

TEST(Coro, ExceptionEscapingTheMainCoroIsRethrownByRun) {
    EXPECT_THROW(corio::run(middle_passes_through(1)), CodedError);
}

namespace {

corio::Coro<> void_step(std::vector<int>* log, int v) {
    co_await corio::sleep(0s);
    log->push_back(v);
}

corio::Coro<> void_throws() {
    co_await corio::sleep(0s);
    throw CodedError(3);
}

}  // namespace

TEST(Coro, VoidCoro) {
    static_assert(std::is_void_v<corio::await_result_t<corio::Coro<>>>);
    std::vector<int> log;
    corio::run([](std::vector<int>* log) -> corio::Coro<> {
        co_await void_step(log, 1);
        co_await void_step(log, 2);
        bool caught = false;
        try {
            co_await void_throws();
        } catch (const CodedError& e) {
            caught = e.code == 3;
        }
        EXPECT_TRUE(caught);
    }(&log));
    EXPECT_EQ(log, (std::vector<int>{1, 2}));
}

namespace {

corio::Coro<std::unique_ptr<int>> make_unique_later(int v) {
    co_await corio::sleep(0s);
    co_return std::make_unique<int>(v);
}

}  // namespace

TEST(Coro, MoveOnlyResult) {
    static_assert(std::is_same_v<corio::await_result_t<corio::Coro<std::unique_ptr<int>>>,
                                 std::unique_ptr<int>>);
    auto p = corio::run([]() -> corio::Coro<std::unique_ptr<int>> {
        std::unique_ptr<int> a = co_await make_unique_later(4);
        std::unique_ptr<int> b = co_await make_unique_later(*a + 1);
        co_return b;
    }());
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 5);
}

TEST(Coro, AwaitedTwiceThrowsRuntimeError) {
    corio::run([]() -> corio::Coro<> {
        bool ran = false;
        auto c = set_flag_and_return(&ran, 3);
        int v = co_await c;
        EXPECT_EQ(v, 3);
        ran = false;
        EXPECT_THROW(co_await c, corio::RuntimeError);
        EXPECT_FALSE(ran);  // the body did not run again
    }());
}

namespace {

corio::Coro<int> await_lvalue(corio::Coro<int>* c) {
    co_return co_await *c;
}

corio::Coro<int> suspend_then_return(int v) {
    co_await corio::sleep(5ms);
    co_return v;
}

}  // namespace

CORIO_TEST_WITH(Coro, AwaitedWhileAlreadyBeingAwaitedThrowsRuntimeError,
                {.virtual_clock = corio::VirtualClock{}}) {
    auto shared = suspend_then_return(8);
    auto first = corio::create_task(await_lvalue(&shared));
    co_await corio::sleep(0s);  // `first` is now suspended inside `shared`
    EXPECT_THROW(co_await shared, corio::RuntimeError);
    int v = co_await first;
    EXPECT_EQ(v, 8);
}

TEST(Coro, AwaitingEmptyCoroThrowsRuntimeError) {
    corio::run([]() -> corio::Coro<> {
        corio::Coro<int> empty;
        EXPECT_FALSE(static_cast<bool>(empty));
        EXPECT_THROW(co_await empty, corio::RuntimeError);
        EXPECT_THROW(co_await std::move(empty), corio::RuntimeError);
    }());
}

TEST(Coro, AwaitingMovedFromCoroThrowsRuntimeError) {
    corio::run([]() -> corio::Coro<> {
        bool ran = false;
        auto c = set_flag_and_return(&ran, 6);
        auto d = std::move(c);
        EXPECT_FALSE(static_cast<bool>(c));  // NOLINT(bugprone-use-after-move)
        EXPECT_THROW(co_await c, corio::RuntimeError);
        EXPECT_FALSE(ran);
        int v = co_await d;
        EXPECT_EQ(v, 6);
    }());
}

namespace {

// Counts live instances; owns heap memory so that a leak shows under LSan.
struct Tracked {
    static inline int live = 0;
    std::unique_ptr<std::string> payload;
    explicit Tracked(std::string s) : payload(std::make_unique<std::string>(std::move(s))) {
        ++live;
    }
    Tracked(Tracked&& o) noexcept : payload(std::move(o.payload)) { ++live; }
    Tracked(const Tracked&) = delete;
    ~Tracked() { --live; }
};

corio::Coro<int> takes_tracked(Tracked t, std::vector<int> v, bool* ran) {
    *ran = true;
    co_await corio::sleep(0s);
    co_return static_cast<int>(t.payload->size() + v.size());
}

}  // namespace

TEST(Coro, DestroyedWithoutBeingAwaitedNeverRunsAndDestroysItsParameters) {
    Tracked::live = 0;
    bool ran = false;
    {
        auto c = takes_tracked(Tracked("a parameter long enough to be on the heap"),
                               std::vector<int>(100, 1), &ran);
        EXPECT_EQ(Tracked::live, 1);  // the copy in the coroutine frame
    }
    EXPECT_EQ(Tracked::live, 0);
    EXPECT_FALSE(ran);
}

TEST(Coro, DestroyedUnawaitedInsideATaskNeverRuns) {
    Tracked::live = 0;
    bool ran = false;
    corio::run([](bool* ran) -> corio::Coro<> {
        {
            auto c = takes_tracked(Tracked("x"), {1, 2}, ran);
            co_await corio::sleep(0s);
            EXPECT_EQ(Tracked::live, 1);
        }
        EXPECT_EQ(Tracked::live, 0);
    }(&ran));
    EXPECT_FALSE(ran);
    EXPECT_EQ(Tracked::live, 0);
}

TEST(Coro, ParametersAreDestroyedAfterTheCoroIsAwaited) {
    Tracked::live = 0;
    bool ran = false;
    int v = corio::run([](bool* ran) -> corio::Coro<int> {
        co_return co_await takes_tracked(Tracked("abc"), std::vector<int>(2, 0), ran);
    }(&ran));
    EXPECT_EQ(v, 5);
    EXPECT_TRUE(ran);
    EXPECT_EQ(Tracked::live, 0);
}

namespace {

// Completes without suspending: each level is entered and left by symmetric transfer.
corio::Coro<long> nest(int depth) {
    if (depth == 0) co_return 0;
    long below = co_await nest(depth - 1);
    co_return below + 1;
}

corio::Coro<> nest_void(int depth, long* count) {
    if (depth == 0) co_return;
    co_await nest_void(depth - 1, count);
    ++*count;
}

corio::Coro<long> sum_of_sequential_awaits(int n) {
    long sum = 0;
    for (int i = 0; i < n; ++i) sum += co_await nest(1);
    co_return sum;
}

constexpr int kDeep = 100000;

// Runs `fn` (which returns whether its result was right) in a child process, so that a stack
// overflow fails only the test that caused it.
template <class F>
void expect_runs_in_child(F fn) {
    EXPECT_EXIT(std::exit(fn() ? 0 : 3), ::testing::ExitedWithCode(0), "");
}

}  // namespace

// 100000 nested frames resumed with ordinary calls would need several MB of stack (more under
// ASan): these only pass if entering and leaving an awaited Coro are tail calls (symmetric
// transfer).
TEST(Coro, DeepChainOfSynchronousAwaitsDoesNotOverflowTheStack) {
    expect_runs_in_child([] { return corio::run(nest(kDeep)) == kDeep; });
}

TEST(Coro, DeepChainOfSynchronousVoidAwaitsDoesNotOverflowTheStack) {
    expect_runs_in_child([] {
        long count = 0;
        corio::run(nest_void(kDeep, &count));
        return count == kDeep;
    });
}

// The same for a loop of awaits that all complete without suspending: the stack must not grow
// with each iteration.
TEST(Coro, ManySequentialSynchronousAwaitsDoNotGrowTheStack) {
    expect_runs_in_child([] { return corio::run(sum_of_sequential_awaits(kDeep)) == kDeep; });
}

// A shallow chain, in process, so that the result is checked even where the deep ones crash.
TEST(Coro, ChainOfSynchronousAwaitsReturnsThroughEveryLevel) {
    EXPECT_EQ(corio::run(nest(200)), 200);
    long count = 0;
    corio::run(nest_void(200, &count));
    EXPECT_EQ(count, 200);
    EXPECT_EQ(corio::run(sum_of_sequential_awaits(200)), 200);
}

namespace {

// Records the current task before and after a suspension. (Returning the handle from the task
// would make the task own a reference to itself: a cycle.)
corio::Coro<> inner_current_task(std::vector<corio::AnyTask>* seen) {
    seen->push_back(corio::current_task());
    co_await corio::sleep(1ms);
    seen->push_back(corio::current_task());
}

corio::Coro<> outer_current_task(std::vector<corio::AnyTask>* seen) {
    co_await inner_current_task(seen);
}

}  // namespace

TEST(Coro, NestedCoroSeesCurrentTaskEqualToItsTask) {
    corio::run([]() -> corio::Coro<> {
        auto main_task = corio::current_task();
        EXPECT_TRUE(static_cast<bool>(main_task));
        std::vector<corio::AnyTask> seen1;
        std::vector<corio::AnyTask> seen2;
        auto t1 = corio::create_task(outer_current_task(&seen1));
        auto t2 = corio::create_task(outer_current_task(&seen2));
        co_await t1;
        co_await t2;
        EXPECT_EQ(seen1.size(), 2u);
        EXPECT_EQ(seen2.size(), 2u);
        for (auto& t : seen1) EXPECT_TRUE(t == t1);
        for (auto& t : seen2) EXPECT_TRUE(t == t2);
        // Awaited directly, the nested Coro runs in the awaiting task.
        std::vector<corio::AnyTask> seen_here;
        co_await outer_current_task(&seen_here);
        EXPECT_EQ(seen_here.size(), 2u);
        for (auto& t : seen_here) EXPECT_TRUE(t == main_task);
    }());
}

// --- awaitables that are not corio's ---------------------------------------------------------

namespace {

// A plain C++ awaiter that knows nothing of corio: it resumes the coroutine from a loop callback.
struct ResumeSoon {
    int value;
    bool* suspended = nullptr;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        if (suspended != nullptr) *suspended = true;
        corio::get_running_loop().call_soon([h] { h.resume(); });
    }
    int await_resume() const noexcept { return value * 2; }
};

// Awaitable through a member operator co_await.
struct MemberCoAwait {
    int value;
    ResumeSoon operator co_await() const { return ResumeSoon{value + 1}; }
};

// Awaitable through a free operator co_await.
struct FreeCoAwait {
    int value;
};
ResumeSoon operator co_await(FreeCoAwait a) {
    return ResumeSoon{a.value + 2};
}

// Ready at once: never suspends.
struct AlreadyReady {
    bool await_ready() const noexcept { return true; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    std::string await_resume() const { return "ready"; }
};

}  // namespace

TEST(Coro, CustomAwaiterResumedByLoopCallback) {
    bool suspended = false;
    int v = corio::run([](bool* suspended) -> corio::Coro<int> {
        int r = co_await ResumeSoon{10, suspended};
        co_return r;
    }(&suspended));
    EXPECT_TRUE(suspended);
    EXPECT_EQ(v, 20);
}

TEST(Coro, CustomAwaiterAwaitedInNestedCoroAndLoopKeepsWorkingAfterwards) {
    std::vector<std::string> log;
    corio::run([](std::vector<std::string>* log) -> corio::Coro<> {
        auto other = corio::create_task([](std::vector<std::string>* log) -> corio::Coro<> {
            co_await corio::sleep(0s);
            log->push_back("other");
        }(log));
        int r = co_await [](std::vector<std::string>* log) -> corio::Coro<int> {
            int x = co_await ResumeSoon{4};
            log->push_back("custom " + std::to_string(x));
            // corio's own awaitables still work after a foreign resumption.
            co_await corio::sleep(1ms);
            auto f = corio::get_running_loop().create_future<int>();
            corio::get_running_loop().call_soon([f]() mutable { f.set_result(3); });
            int y = co_await f;
            co_return x + y;
        }(log);
        EXPECT_EQ(r, 11);
        co_await other;
        std::string s = co_await AlreadyReady{};
        EXPECT_EQ(s, "ready");
    }(&log));
    // A foreign resumption schedules the task (it resumes through the loop, like every task),
    // so the order against `other` is the loop's business; both must have run.
    ASSERT_EQ(log.size(), 2u);
    EXPECT_NE(std::find(log.begin(), log.end(), "custom 8"), log.end());
    EXPECT_NE(std::find(log.begin(), log.end(), "other"), log.end());
}

TEST(Coro, CustomAwaiterResumedByLoopCallbackKeepsCurrentTask) {
    corio::run([]() -> corio::Coro<> {
        corio::AnyTask me = corio::current_task();
        co_await ResumeSoon{1};
        EXPECT_TRUE(corio::current_task() == me);
        co_await corio::sleep(0s);
        EXPECT_TRUE(corio::current_task() == me);
    }());
}

// What relies on the current task (timeout(), task_group(), current_task()) must keep working
// after a foreign awaiter resumed the coroutine.
TEST(Coro, TimeoutWorksAfterCustomAwaiterResumes) {
    int v = corio::run([]() -> corio::Coro<int> {
        co_await ResumeSoon{1};
        int r = co_await corio::timeout(1s, [](corio::Timeout&) -> corio::Coro<int> {
            co_await corio::sleep(1ms);
            co_return 5;
        });
        co_return r;
    }());
    EXPECT_EQ(v, 5);
}

TEST(Coro, AwaitableWithMemberOperatorCoAwait) {
    int v = corio::run([]() -> corio::Coro<int> { co_return co_await MemberCoAwait{5}; }());
    EXPECT_EQ(v, 12);
}

TEST(Coro, AwaitableWithFreeOperatorCoAwait) {
    int v = corio::run([]() -> corio::Coro<int> { co_return co_await FreeCoAwait{5}; }());
    EXPECT_EQ(v, 14);
}

namespace {

// Resumes the coroutine after `delay`, from a call_later callback.
struct ResumeLater {
    corio::Duration delay;
    bool* resumed_by_timer;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        bool* flag = resumed_by_timer;
        corio::get_running_loop().call_later(delay, [h, flag] {
            *flag = true;
            h.resume();
        });
    }
    void await_resume() const noexcept {}
};

corio::Coro<> wait_on_foreign(bool* resumed_by_timer, bool* after) {
    co_await ResumeLater{std::chrono::milliseconds(20), resumed_by_timer};
    *after = true;
}

}  // namespace

CORIO_TEST_WITH(Coro, PendingCancellationIsRaisedWhenCustomAwaiterResumes,
                {.virtual_clock = corio::VirtualClock{}}) {
    auto& loop = corio::get_running_loop();
    auto start = loop.time();
    bool resumed = false;
    bool after = false;
    auto task = corio::create_task(wait_on_foreign(&resumed, &after));
    co_await corio::sleep(0s);  // the task is now suspended on the foreign awaiter
    EXPECT_TRUE(task.cancel("stop waiting"));
    EXPECT_FALSE(task.done());  // it cannot end until the foreign awaiter resumes it
    std::string message = "<not thrown>";
    try {
        co_await task;
    } catch (const corio::CancelledError& e) {
        message = e.message();
    }
    EXPECT_EQ(message, "stop waiting");
    EXPECT_TRUE(resumed);  // the cancellation surfaced only when the timer resumed it ...
    EXPECT_EQ(loop.time() - start, corio::Duration(20ms));  // ... exactly 20 ms later
    EXPECT_TRUE(task.cancelled());
    EXPECT_FALSE(after);
}

TEST(Coro, PendingCancellationIsRaisedWhenCustomAwaiterResumesOnTheRealClock) {
    bool resumed_by_timer = false;
    bool after = false;
    double waited = 0;
    corio::run([](bool* resumed, bool* after, double* waited) -> corio::Coro<> {
        auto& loop = corio::get_running_loop();
        auto start = loop.time();
        auto task = corio::create_task(wait_on_foreign(resumed, after));
        co_await corio::sleep(0s);  // the task is now suspended on the foreign awaiter
        EXPECT_TRUE(task.cancel("stop waiting"));
        EXPECT_FALSE(task.done());  // it cannot end until the foreign awaiter resumes it
        std::string message = "<not thrown>";
        try {
            co_await task;
        } catch (const corio::CancelledError& e) {
            message = e.message();
        }
        *waited = std::chrono::duration<double>(loop.time() - start).count();
        EXPECT_EQ(message, "stop waiting");
        EXPECT_TRUE(*resumed);  // the cancellation surfaced only when the timer resumed it
        EXPECT_TRUE(task.cancelled());
    }(&resumed_by_timer, &after, &waited));
    EXPECT_TRUE(resumed_by_timer);
    EXPECT_FALSE(after);
    EXPECT_GE(waited, 0.019);  // the foreign awaiter's 20 ms
    EXPECT_LT(waited, 5.0);
}

CORIO_TEST_WITH(Coro, CancellationCaughtAfterCustomAwaiterLetsTheTaskGoOn,
                {.virtual_clock = corio::VirtualClock{}}) {
    auto& loop = corio::get_running_loop();
    auto start = loop.time();
    bool resumed = false;
    auto task = corio::create_task([](bool* resumed) -> corio::Coro<int> {
        try {
            co_await ResumeLater{std::chrono::milliseconds(5), resumed};
        } catch (const corio::CancelledError&) {
            co_return 1;  // swallowing the cancellation: the task ends normally
        }
        co_return 0;
    }(&resumed));
    co_await corio::sleep(0s);
    task.cancel();
    int v = co_await task;
    EXPECT_EQ(v, 1);
    EXPECT_TRUE(resumed);
    EXPECT_EQ(loop.time() - start, corio::Duration(5ms));
    EXPECT_FALSE(task.cancelled());
}

// --- location ------------------------------------------------------------------------------

namespace {

corio::Coro<int> a_coroutine_with_a_distinctive_name() {
    co_return 1;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

TEST(Coro, LocationReportsFunctionNameAndFile) {
    auto c = a_coroutine_with_a_distinctive_name();
    corio::SourceLocation loc = c.location();
    EXPECT_NE(std::string(loc.function).find("a_coroutine_with_a_distinctive_name"),
              std::string::npos)
        << loc.function;
    EXPECT_TRUE(ends_with(loc.file, "test_coro.cpp")) << loc.file;
    EXPECT_GT(loc.line, 0u);
    // Also through the task that runs it.
    corio::run([](corio::Coro<int> c) -> corio::Coro<> {
        auto t = corio::create_task(std::move(c));
        EXPECT_NE(std::string(t.get_coro().function).find("a_coroutine_with_a_distinctive_name"),
                  std::string::npos);
        co_await t;
    }(std::move(c)));
}

TEST(Coro, LocationOfEmptyCoroIsEmpty) {
    corio::Coro<int> c;
    EXPECT_STREQ(c.location().file, "");
    EXPECT_STREQ(c.location().function, "");
    EXPECT_EQ(c.location().line, 0u);
}
