// corio::ThreadPoolExecutor, run_in_executor, to_thread and the loop's default executor
// (concurrent.futures.ThreadPoolExecutor, loop.run_in_executor, asyncio.to_thread,
// loop.shutdown_default_executor).
//
// Nothing here synchronises by sleeping. Jobs that must stay running block on a Gate that the
// test opens; the loop side waits for what happens on other threads by polling without blocking
// the loop (eventually()). Every wait across threads gives up after kPatience, so that a broken
// library makes a test fail rather than hang.
#include <dirent.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "corio/executors.hpp"
#include "corio/testing.hpp"

using namespace std::chrono_literals;

namespace {

// How long anything waits for another thread before the test gives up (and fails).
constexpr auto kPatience = 5s;

// A one-shot signal between threads. Copies share the state, so jobs capture it by value and
// never dangle.
class Gate {
  public:
    void open() const {
        std::lock_guard lock(s_->mutex);
        s_->open = true;
        s_->cv.notify_all();
    }
    bool is_open() const {
        std::lock_guard lock(s_->mutex);
        return s_->open;
    }
    // Blocks until open(); false if that took longer than kPatience.
    bool wait() const {
        std::unique_lock lock(s_->mutex);
        return s_->cv.wait_for(lock, kPatience, [this] { return s_->open; });
    }

  private:
    struct State {
        std::mutex mutex;
        std::condition_variable cv;
        bool open = false;
    };
    std::shared_ptr<State> s_ = std::make_shared<State>();
};

// Opens a gate when destroyed: in a test body, releases blocked jobs however the body ends;
// inside a job's callable or result, tells when that object is gone.
class OpenOnDestroy {
  public:
    explicit OpenOnDestroy(Gate gate) : gate_(std::move(gate)) {}
    OpenOnDestroy(const OpenOnDestroy&) = delete;
    OpenOnDestroy& operator=(const OpenOnDestroy&) = delete;
    ~OpenOnDestroy() { gate_.open(); }

  private:
    Gate gate_;
};

// A result whose dropping is observable: `dropped` opens when the last copy is destroyed.
struct Tracked {
    std::shared_ptr<OpenOnDestroy> on_drop;
    int value = 0;
};

Tracked tracked(Gate dropped, int value) {
    Tracked t;
    t.on_drop = std::make_shared<OpenOnDestroy>(std::move(dropped));
    t.value = value;
    return t;
}

// An exception whose dropping is observable in the same way.
struct TrackedError : std::runtime_error {
    TrackedError(Gate dropped, const std::string& what)
        : std::runtime_error(what), on_drop(std::make_shared<OpenOnDestroy>(std::move(dropped))) {}
    std::shared_ptr<OpenOnDestroy> on_drop;
};

// A user exception type with data of its own.
struct ParseError : std::runtime_error {
    ParseError(const std::string& what, int at) : std::runtime_error(what), line(at) {}
    int line;
};

// n threads meet: each arrive_and_wait() returns true once all n have arrived (false after
// kPatience), which proves that n jobs were running at the same time.
class Rendezvous {
  public:
    explicit Rendezvous(std::size_t n) : n_(n) {}
    bool arrive_and_wait() {
        std::unique_lock lock(mutex_);
        ++arrived_;
        cv_.notify_all();
        return cv_.wait_for(lock, kPatience, [this] { return arrived_ >= n_; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    const std::size_t n_;
    std::size_t arrived_ = 0;
};

// What jobs record, in order, from any thread.
class Log {
  public:
    void add(std::string entry) {
        std::lock_guard lock(mutex_);
        entries_.push_back(std::move(entry));
    }
    std::vector<std::string> entries() const {
        std::lock_guard lock(mutex_);
        return entries_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> entries_;
};

// The thread ids jobs ran on.
class ThreadIds {
  public:
    void add_current() {
        std::lock_guard lock(mutex_);
        ids_.insert(std::this_thread::get_id());
    }
    std::set<std::thread::id> ids() const {
        std::lock_guard lock(mutex_);
        return ids_;
    }

  private:
    mutable std::mutex mutex_;
    std::set<std::thread::id> ids_;
};

// Waits, without blocking the loop, until pred() holds; false after kPatience.
corio::Coro<bool> eventually(std::function<bool()> pred) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) co_return false;
        co_await corio::sleep(1ms);
    }
    co_return true;
}

// Awaits to_thread(f) / run_in_executor(pool, f) in a coroutine of its own, to run it as a task.
template <class F>
corio::Coro<std::invoke_result_t<F&>> in_thread(F f) {
    co_return co_await corio::to_thread(std::move(f));
}

template <class F>
corio::Coro<std::invoke_result_t<F&>> in_pool(corio::ThreadPoolExecutor& pool, F f) {
    co_return co_await corio::run_in_executor(pool, std::move(f));
}

// Ticks `ticks` up `n` times, yielding to the loop in between, then opens `gate`.
corio::Coro<> tick_then_open(int& ticks, int n, Gate gate) {
    for (int i = 0; i < n; ++i) {
        co_await corio::sleep(0s);
        ++ticks;
    }
    gate.open();
}

// Blocks the calling thread until `pool` refuses new work (shutdown() has begun on another
// thread), then opens `gate`: how a test releases a job only once a blocking shutdown() or
// destructor is already waiting for it.
void open_once_refusing(corio::ThreadPoolExecutor& pool, Gate gate) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            pool.submit([] {});
        } catch (const corio::RuntimeError&) {
            break;
        }
        std::this_thread::sleep_for(100us);  // polling interval, not synchronisation
    }
    gate.open();
}

// The kernel ids of this process's threads, if /proc tells. Compared as sets, so that a thread
// of an earlier test that is still being reaped cannot skew a count.
std::optional<std::set<std::string>> process_threads() {
    DIR* dir = ::opendir("/proc/self/task");
    if (dir == nullptr) return std::nullopt;
    std::set<std::string> tids;
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] != '.') tids.insert(entry->d_name);
    }
    ::closedir(dir);
    return tids;
}

// How many threads run now that did not at `before`.
std::size_t threads_started_since(const std::set<std::string>& before) {
    std::size_t n = 0;
    for (const std::string& tid : process_threads().value_or(std::set<std::string>{})) {
        n += before.count(tid) == 0 ? 1 : 0;
    }
    return n;
}

std::thread::id current_thread_id() {
    return std::this_thread::get_id();
}

// ============================================================================================
// to_thread: results, exceptions, arguments, threads
// ============================================================================================

CORIO_TEST(ToThread, ReturnsTheCallsValue) {
    auto answer = [] { return 42; };
    const int v = co_await corio::to_thread(answer);
    EXPECT_EQ(v, 42);
}

CORIO_TEST(ToThread, ReturnsAMoveOnlyResult) {
    auto make = [] { return std::make_unique<std::string>("made on a pool thread"); };
    std::unique_ptr<std::string> p = co_await corio::to_thread(make);
    CORIO_ASSERT(p != nullptr);
    EXPECT_EQ(*p, "made on a pool thread");
}

CORIO_TEST(ToThread, ReturnsALargeResultIntact) {
    auto make = [] {
        std::vector<int> v(100000);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int>(i);
        return v;
    };
    const std::vector<int> v = co_await corio::to_thread(make);
    CORIO_ASSERT(v.size() == 100000u);
    EXPECT_EQ(v.front(), 0);
    EXPECT_EQ(v[4321], 4321);
    EXPECT_EQ(v.back(), 99999);
}

CORIO_TEST(ToThread, AVoidCallHasRunWhenTheAwaitReturns) {
    auto ran = std::make_shared<std::atomic<bool>>(false);
    auto job = [ran] { *ran = true; };
    static_assert(std::is_void_v<corio::await_result_t<decltype(corio::to_thread(job))>>);
    co_await corio::to_thread(std::move(job));
    EXPECT_TRUE(*ran);
}

CORIO_TEST(ToThread, AReferenceReturnedByTheCallComesBackAsACopy) {
    int stored = 1;
    auto get = [&stored]() -> int& { return stored; };
    static_assert(std::is_same_v<corio::await_result_t<decltype(corio::to_thread(get))>, int>);
    const int v = co_await corio::to_thread(get);
    stored = 2;
    EXPECT_EQ(v, 1);
}

CORIO_TEST(ToThread, RethrowsAStdExceptionWithItsTypeAndMessage) {
    auto fail = []() -> int { throw std::invalid_argument("bad argument"); };
    bool caught = false;
    try {
        (void)co_await corio::to_thread(fail);
    } catch (const std::invalid_argument& e) {
        caught = true;
        EXPECT_STREQ(e.what(), "bad argument");
    }
    EXPECT_TRUE(caught);
}

CORIO_TEST(ToThread, RethrowsCorioErrorsWithTheirTypeAndMessage) {
    auto value_error = [] { throw corio::ValueError("not a number"); };
    auto timeout_error = []() -> std::string { throw corio::TimeoutError("too slow"); };
    bool caught_value = false;
    bool caught_timeout = false;
    try {
        co_await corio::to_thread(value_error);
    } catch (const corio::ValueError& e) {
        caught_value = true;
        EXPECT_STREQ(e.what(), "not a number");
    }
    try {
        (void)co_await corio::to_thread(timeout_error);
    } catch (const corio::TimeoutError& e) {
        caught_timeout = true;
        EXPECT_STREQ(e.what(), "too slow");
    }
    EXPECT_TRUE(caught_value);
    EXPECT_TRUE(caught_timeout);
}

CORIO_TEST(ToThread, RethrowsAUserExceptionWithItsData) {
    auto parse = []() -> int { throw ParseError("unexpected token", 17); };
    bool caught = false;
    try {
        (void)co_await corio::to_thread(parse);
    } catch (const ParseError& e) {
        caught = true;
        EXPECT_STREQ(e.what(), "unexpected token");
        EXPECT_EQ(e.line, 17);
    }
    EXPECT_TRUE(caught);
}

CORIO_TEST(ToThread, RethrowsAnExceptionThatIsNotAStdException) {
    auto fail = []() -> int { throw 7; };
    bool caught = false;
    try {
        (void)co_await corio::to_thread(fail);
    } catch (int v) {
        caught = true;
        EXPECT_EQ(v, 7);
    }
    EXPECT_TRUE(caught);
}

CORIO_TEST(ToThread, TheTaskGoesOnAfterTheCallThrew) {
    auto fail = []() -> int { throw std::runtime_error("first call fails"); };
    auto succeed = [] { return 2; };
    EXPECT_THROW((void)co_await corio::to_thread(fail), std::runtime_error);
    const int v = co_await corio::to_thread(succeed);
    EXPECT_EQ(v, 2);
}

CORIO_TEST(ToThread, PassesTheArgumentsToTheCall) {
    auto describe = [](const std::string& name, int count, double ratio) {
        return name + ":" + std::to_string(count) + ":" + std::to_string(ratio > 0.5);
    };
    const std::string s = co_await corio::to_thread(describe, std::string("apples"), 3, 0.75);
    EXPECT_EQ(s, "apples:3:1");
}

CORIO_TEST(ToThread, MovesAMoveOnlyArgumentIntoTheCall) {
    auto p = std::make_unique<int>(21);
    auto twice = [](std::unique_ptr<int> q) { return *q * 2; };
    const int v = co_await corio::to_thread(twice, std::move(p));
    EXPECT_EQ(v, 42);
    EXPECT_EQ(p, nullptr);
}

CORIO_TEST(ToThread, MovesAMoveOnlyCallableIntoTheCall) {
    auto job = [owned = std::make_unique<int>(5)] { return *owned + 1; };
    const int v = co_await corio::to_thread(std::move(job));
    EXPECT_EQ(v, 6);
}

CORIO_TEST(ToThread, CopiesATemporaryArgumentSoItOutlivesTheExpressionThatMadeIt) {
    auto length = [](const std::string& s) { return s.size(); };
    // The temporary string dies at the end of this statement, before the call runs.
    auto call = corio::to_thread(length, std::string(1000, 'x'));
    const std::size_t n = co_await std::move(call);
    EXPECT_EQ(n, 1000u);
}

CORIO_TEST(ToThread, CopiesAnLvalueArgumentWhenTheCallIsMade) {
    auto echo = [](const std::string& s) { return s; };
    std::string text = "before";
    auto call = corio::to_thread(echo, text);
    text = "after";
    const std::string seen = co_await std::move(call);
    EXPECT_EQ(seen, "before");
    EXPECT_EQ(text, "after");
}

CORIO_TEST(ToThread, StdRefPassesAReferenceToTheCall) {
    int counter = 1;
    auto bump = [](int& c) { c += 5; };
    co_await corio::to_thread(bump, std::ref(counter));
    EXPECT_EQ(counter, 6);
}

CORIO_TEST(ToThread, RunsTheCallOnAnotherThread) {
    const std::thread::id id = co_await corio::to_thread(current_thread_id);
    EXPECT_NE(id, std::this_thread::get_id());
}

CORIO_TEST(ToThread, TheLoopKeepsRunningTasksWhileTheCallBlocks) {
    // The call can only finish once a loop-side task has run 10 steps and opened the gate.
    Gate release;
    OpenOnDestroy unblock(release);
    int ticks = 0;
    auto ticker = corio::create_task(tick_then_open(ticks, 10, release));
    auto job = [release] { return release.wait(); };
    const bool released = co_await corio::to_thread(std::move(job));
    EXPECT_TRUE(released) << "the call was never released: the loop did not run meanwhile";
    EXPECT_EQ(ticks, 10);
    co_await ticker;
}

CORIO_TEST(ToThread, ManyConcurrentCallsEachGetTheirOwnResult) {
    std::vector<corio::Task<int>> calls;
    for (int i = 0; i < 50; ++i) {
        auto square = [i] { return i * i; };
        calls.push_back(corio::create_task(in_thread(square)));
    }
    const std::vector<int> results = co_await corio::gather(calls);
    CORIO_ASSERT(results.size() == 50u);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(results[static_cast<std::size_t>(i)], i * i);
}

TEST(ToThread, WithoutARunningLoopThrowsRuntimeError) {
    auto job = [] { return 1; };
    EXPECT_THROW((void)corio::to_thread(job), corio::RuntimeError);
}

// ============================================================================================
// run_in_executor: a given pool, parallelism, order
// ============================================================================================

CORIO_TEST(RunInExecutor, RunsTheCallOnTheGivenPool) {
    corio::ThreadPoolExecutor pool(1);
    std::promise<std::thread::id> pool_thread;
    auto record = [&pool_thread] { pool_thread.set_value(std::this_thread::get_id()); };
    pool.submit(record);
    std::future<std::thread::id> f = pool_thread.get_future();
    CORIO_ASSERT(f.wait_for(kPatience) == std::future_status::ready);
    const std::thread::id id = co_await corio::run_in_executor(pool, current_thread_id);
    EXPECT_EQ(id, f.get());
}

CORIO_TEST(RunInExecutor, RunsUpToMaxWorkersCallsAtTheSameTime) {
    // Each call returns only once all four are running.
    corio::ThreadPoolExecutor pool(4);
    auto meet = std::make_shared<Rendezvous>(4);
    std::vector<corio::Task<bool>> calls;
    for (int i = 0; i < 4; ++i) {
        auto job = [meet] { return meet->arrive_and_wait(); };
        calls.push_back(corio::create_task(in_pool(pool, std::move(job))));
    }
    const std::vector<bool> met = co_await corio::gather(calls);
    CORIO_ASSERT(met.size() == 4u);
    for (bool m : met) EXPECT_TRUE(m);
}

CORIO_TEST(RunInExecutor, AOneWorkerPoolRunsCallsOneAtATimeInSubmissionOrder) {
    corio::ThreadPoolExecutor pool(1);
    auto log = std::make_shared<Log>();
    Gate started;
    Gate release;
    OpenOnDestroy unblock(release);
    std::vector<corio::Task<int>> calls;
    for (int i = 0; i < 5; ++i) {
        // Call 0 blocks until the others are all queued behind it.
        auto job = [log, started, release, i] {
            log->add("start " + std::to_string(i));
            if (i == 0) {
                started.open();
                release.wait();
            }
            log->add("end " + std::to_string(i));
            return i;
        };
        calls.push_back(corio::create_task(in_pool(pool, std::move(job))));
    }
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);
    release.open();
    const std::vector<int> results = co_await corio::gather(calls);
    EXPECT_EQ(results, (std::vector<int>{0, 1, 2, 3, 4}));
    const std::vector<std::string> expected = {"start 0", "end 0", "start 1", "end 1",
                                               "start 2", "end 2", "start 3", "end 3",
                                               "start 4", "end 4"};
    EXPECT_EQ(log->entries(), expected);
}

CORIO_TEST(RunInExecutor, MoreCallsThanWorkersAllComplete) {
    corio::ThreadPoolExecutor pool(2);
    std::vector<corio::Task<int>> calls;
    for (int i = 0; i < 20; ++i) {
        auto job = [i] { return i + 100; };
        calls.push_back(corio::create_task(in_pool(pool, job)));
    }
    const std::vector<int> results = co_await corio::gather(calls);
    CORIO_ASSERT(results.size() == 20u);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(results[static_cast<std::size_t>(i)], i + 100);
}

CORIO_TEST(RunInExecutor, OnAShutDownPoolRaisesRuntimeErrorAtTheAwaitAndNeverRunsTheCall) {
    corio::ThreadPoolExecutor pool(1);
    pool.shutdown();
    Gate ran;
    auto job = [ran] {
        ran.open();
        return 1;
    };
    auto call = corio::run_in_executor(pool, std::move(job));  // nothing submitted yet
    EXPECT_THROW((void)co_await std::move(call), corio::RuntimeError);
    EXPECT_FALSE(ran.is_open());
}

// ============================================================================================
// Cancellation. asyncio's rules: a thread cannot be interrupted, so cancelling the awaiting
// task stops the waiting at once (CancelledError) while the call runs on to its end and its
// result or exception is dropped; a call still queued (not started) is cancelled and never
// runs; a cancellation that arrives after the call finished but before the task resumed still
// wins over the result.
// ============================================================================================

CORIO_TEST(ToThreadCancellation, CancellingTheTaskRaisesCancelledErrorAtOnceWhileTheCallRunsOn) {
    Gate started;
    Gate release;
    Gate finished;
    Gate dropped;
    OpenOnDestroy unblock(release);
    auto job = [started, release, finished, dropped] {
        started.open();
        release.wait();
        finished.open();
        return tracked(dropped, 7);
    };
    auto call = corio::create_task(in_thread(std::move(job)));
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);

    call.cancel();
    EXPECT_THROW(co_await call, corio::CancelledError);
    EXPECT_TRUE(call.cancelled());
    EXPECT_FALSE(finished.is_open()) << "the task must not wait for the call to end";

    release.open();  // the call now runs to its end; its result goes nowhere
    const bool done = co_await eventually([&] { return dropped.is_open(); });
    EXPECT_TRUE(done) << "the result of the abandoned call was never released";
    EXPECT_TRUE(finished.is_open());
}

CORIO_TEST(ToThreadCancellation, TheExceptionOfAnAbandonedCallIsDroppedUnreported) {
    Gate started;
    Gate release;
    Gate dropped;
    OpenOnDestroy unblock(release);
    auto job = [started, release, dropped]() -> int {
        started.open();
        release.wait();
        throw TrackedError(dropped, "nobody is listening");
    };
    auto call = corio::create_task(in_thread(std::move(job)));
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);
    call.cancel();
    EXPECT_THROW(co_await call, corio::CancelledError);
    release.open();
    // The harness fails the test if the loop reports the exception.
    const bool done = co_await eventually([&] { return dropped.is_open(); });
    EXPECT_TRUE(done);
}

CORIO_TEST(ToThreadCancellation, WaitForRaisesTimeoutErrorWhileTheCallRunsOnAndFinishesLater) {
    Gate release;
    Gate finished;
    Gate dropped;
    OpenOnDestroy unblock(release);
    auto job = [release, finished, dropped] {
        release.wait();
        finished.open();
        return tracked(dropped, 1);
    };
    auto waited = corio::wait_for(corio::to_thread(std::move(job)), 20ms);
    EXPECT_THROW((void)co_await std::move(waited), corio::TimeoutError);
    EXPECT_FALSE(finished.is_open());
    release.open();
    const bool done = co_await eventually([&] { return dropped.is_open(); });
    EXPECT_TRUE(done);
    EXPECT_TRUE(finished.is_open());
}

CORIO_TEST(ToThreadCancellation, CancelAfterTheCallFinishedButBeforeItsOutcomeArrivedRaises) {
    Gate started;
    Gate release;
    Gate job_gone;
    Gate dropped;
    OpenOnDestroy unblock(release);
    // The callable is destroyed on the pool thread after the call has returned and its outcome
    // has been sent to the loop.
    auto job = [started, release, dropped, hook = std::make_unique<OpenOnDestroy>(job_gone)] {
        started.open();
        release.wait();
        return tracked(dropped, 3);
    };
    auto call = corio::create_task(in_thread(std::move(job)));
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);
    release.open();
    // Blocks the loop's thread, so the outcome cannot be taken in meanwhile.
    CORIO_ASSERT(job_gone.wait());
    call.cancel();
    EXPECT_THROW(co_await call, corio::CancelledError);
    const bool done = co_await eventually([&] { return dropped.is_open(); });
    EXPECT_TRUE(done) << "the result must be dropped";
}

CORIO_TEST(ToThreadCancellation, CancelAfterTheOutcomeArrivedButBeforeTheTaskResumedRaises) {
    Gate started;
    Gate release;
    Gate job_gone;
    Gate dropped;
    OpenOnDestroy unblock(release);
    auto job = [started, release, dropped, hook = std::make_unique<OpenOnDestroy>(job_gone)] {
        started.open();
        release.wait();
        return tracked(dropped, 3);
    };
    auto call = corio::create_task(in_thread(std::move(job)));
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);
    release.open();
    CORIO_ASSERT(job_gone.wait());
    // The outcome is queued for the loop; the cancellation is queued right behind it, so it is
    // taken in after the outcome has woken the task and before the task runs.
    bool was_pending = false;
    auto cancel = [&call, &was_pending] { was_pending = call.cancel(); };
    corio::get_running_loop().call_soon_threadsafe(cancel);
    EXPECT_THROW(co_await call, corio::CancelledError);
    EXPECT_TRUE(was_pending);
    const bool done = co_await eventually([&] { return dropped.is_open(); });
    EXPECT_TRUE(done) << "the result must be dropped";
}

CORIO_TEST(ToThreadCancellation, CancellingWhileTheCallIsStillQueuedKeepsItFromEverRunning) {
    corio::ThreadPoolExecutor pool(1);
    Gate started;
    Gate release;
    Gate queued_ran;
    OpenOnDestroy unblock(release);
    auto blocker = [started, release] {
        started.open();
        return release.wait();
    };
    auto queued = [queued_ran] {
        queued_ran.open();
        return 2;
    };
    auto first = corio::create_task(in_pool(pool, std::move(blocker)));
    auto second = corio::create_task(in_pool(pool, std::move(queued)));  // queued behind it
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);

    second.cancel();
    EXPECT_THROW(co_await second, corio::CancelledError);
    release.open();
    EXPECT_TRUE(co_await first);
    pool.shutdown(true);  // whatever was going to run has run
    EXPECT_FALSE(queued_ran.is_open())
        << "asyncio cancels the concurrent future of a call that has not started";
    co_await corio::sleep(1ms);  // lets the loop take in any outcome posted meanwhile
}

// Swallows the cancellation of a blocked call, then makes another call.
corio::Coro<int> swallow_then_call_again(Gate started, Gate release, Gate dropped) {
    auto blocked = [started, release, dropped] {
        started.open();
        release.wait();
        return tracked(dropped, 0);
    };
    try {
        (void)co_await corio::to_thread(std::move(blocked));
    } catch (const corio::CancelledError&) {
    }
    auto second = [] { return 5; };
    co_return co_await corio::to_thread(second);
}

CORIO_TEST(ToThreadCancellation, ATaskThatSwallowsTheCancellationCanAwaitAnotherCall) {
    Gate started;
    Gate release;
    Gate dropped;
    OpenOnDestroy unblock(release);
    auto task = corio::create_task(swallow_then_call_again(started, release, dropped));
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);
    task.cancel();
    const int v = co_await task;
    EXPECT_EQ(v, 5);
    release.open();
    const bool done = co_await eventually([&] { return dropped.is_open(); });
    EXPECT_TRUE(done);
}

// ============================================================================================
// ThreadPoolExecutor
// ============================================================================================

TEST(ThreadPoolExecutor, DefaultMaxWorkersIsTheLesserOf32AndHardwareThreadsPlus4) {
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    EXPECT_EQ(corio::ThreadPoolExecutor::default_max_workers(),
              std::min<std::size_t>(32, cores + 4));
}

TEST(ThreadPoolExecutor, MaxWorkersIsTheDefaultOrWhatWasAskedFor) {
    corio::ThreadPoolExecutor by_default;
    EXPECT_EQ(by_default.max_workers(), corio::ThreadPoolExecutor::default_max_workers());
    corio::ThreadPoolExecutor three(3);
    EXPECT_EQ(three.max_workers(), 3u);
}

TEST(ThreadPoolExecutor, ZeroMaxWorkersThrowsValueError) {
    EXPECT_THROW(corio::ThreadPoolExecutor(0), corio::ValueError);
}

TEST(ThreadPoolExecutor, SubmitRunsTheFunctionOnAPoolThread) {
    corio::ThreadPoolExecutor pool(2);
    std::promise<std::thread::id> ran_on;
    pool.submit([&ran_on] { ran_on.set_value(std::this_thread::get_id()); });
    std::future<std::thread::id> f = ran_on.get_future();
    ASSERT_EQ(f.wait_for(kPatience), std::future_status::ready);
    EXPECT_NE(f.get(), std::this_thread::get_id());
}

TEST(ThreadPoolExecutor, SubmitOfAnEmptyFunctionThrowsValueError) {
    corio::ThreadPoolExecutor pool(1);
    EXPECT_THROW(pool.submit(std::function<void()>()), corio::ValueError);
}

TEST(ThreadPoolExecutor, SubmitAfterShutdownThrowsRuntimeErrorAndDoesNotRun) {
    corio::ThreadPoolExecutor pool(1);
    pool.shutdown();
    Gate ran;
    EXPECT_THROW(pool.submit([ran] { ran.open(); }), corio::RuntimeError);
    EXPECT_FALSE(ran.is_open());
}

TEST(ThreadPoolExecutor, AOneWorkerPoolRunsJobsInSubmissionOrder) {
    corio::ThreadPoolExecutor pool(1);
    auto log = std::make_shared<Log>();
    Gate release;
    OpenOnDestroy unblock(release);
    pool.submit([release] { release.wait(); });  // everything below queues behind it
    for (int i = 0; i < 10; ++i) pool.submit([log, i] { log->add(std::to_string(i)); });
    release.open();
    pool.shutdown(true);
    const std::vector<std::string> expected = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    EXPECT_EQ(log->entries(), expected);
}

TEST(ThreadPoolExecutor, ShutdownWaitsForTheRunningAndQueuedJobs) {
    corio::ThreadPoolExecutor pool(1);
    Gate started;
    Gate release;
    Gate first_done;
    auto count = std::make_shared<std::atomic<int>>(0);
    pool.submit([started, release, first_done] {
        started.open();
        release.wait();
        first_done.open();
    });
    for (int i = 0; i < 4; ++i) pool.submit([count] { ++*count; });
    ASSERT_TRUE(started.wait());
    // The first job is released only once shutdown() is waiting.
    std::thread opener(open_once_refusing, std::ref(pool), release);
    pool.shutdown(true);
    EXPECT_TRUE(first_done.is_open());
    EXPECT_EQ(count->load(), 4);
    opener.join();
}

TEST(ThreadPoolExecutor, ShutdownWithCancelPendingDropsTheJobsNotYetStarted) {
    corio::ThreadPoolExecutor pool(1);
    Gate started;
    Gate release;
    Gate first_done;
    auto count = std::make_shared<std::atomic<int>>(0);
    pool.submit([started, release, first_done] {
        started.open();
        release.wait();
        first_done.open();
    });
    for (int i = 0; i < 4; ++i) pool.submit([count] { ++*count; });
    ASSERT_TRUE(started.wait());
    std::thread opener(open_once_refusing, std::ref(pool), release);
    pool.shutdown(true, true);
    EXPECT_TRUE(first_done.is_open()) << "the running job runs to its end";
    EXPECT_EQ(count->load(), 0) << "the queued jobs are dropped";
    opener.join();
}

TEST(ThreadPoolExecutor, ShutdownWithoutWaitReturnsWhileAJobRunsAndRefusesNewWork) {
    Gate finished;
    Gate release;
    bool finished_at_shutdown = true;
    {
        corio::ThreadPoolExecutor pool(1);
        Gate started;
        OpenOnDestroy unblock(release);
        pool.submit([started, release, finished] {
            started.open();
            release.wait();
            finished.open();
        });
        ASSERT_TRUE(started.wait());
        pool.shutdown(false);
        finished_at_shutdown = finished.is_open();
        EXPECT_THROW(pool.submit([] {}), corio::RuntimeError);
        release.open();
    }
    EXPECT_FALSE(finished_at_shutdown);
    EXPECT_TRUE(finished.is_open());
}

TEST(ThreadPoolExecutor, ShutdownMoreThanOnceIsHarmless) {
    corio::ThreadPoolExecutor pool(2);
    Gate ran;
    pool.submit([ran] { ran.open(); });
    EXPECT_NO_THROW(pool.shutdown());
    EXPECT_NO_THROW(pool.shutdown());
    EXPECT_NO_THROW(pool.shutdown(false, true));
    EXPECT_TRUE(ran.is_open());
}

TEST(ThreadPoolExecutor, TheDestructorWaitsForTheRunningJob) {
    Gate started;
    Gate release;
    auto finished = std::make_shared<std::atomic<bool>>(false);
    std::thread opener;
    {
        corio::ThreadPoolExecutor pool(1);
        pool.submit([started, release, finished] {
            started.open();
            release.wait();
            std::this_thread::sleep_for(20ms);  // widens the window a non-waiting pool would show
            *finished = true;
        });
        ASSERT_TRUE(started.wait());
        // Released only once the destructor has begun (the pool then refuses work).
        opener = std::thread(open_once_refusing, std::ref(pool), release);
    }
    EXPECT_TRUE(*finished);
    opener.join();
}

TEST(ThreadPoolExecutor, CreatesThreadsOnlyWhenWorkArrives) {
    const std::optional<std::set<std::string>> before = process_threads();
    if (!before) GTEST_SKIP() << "/proc/self/task is not readable";
    corio::ThreadPoolExecutor pool(4);
    EXPECT_EQ(threads_started_since(*before), 0u) << "no thread before the first job";
    Gate started;
    Gate release;
    OpenOnDestroy unblock(release);
    pool.submit([started, release] {
        started.open();
        release.wait();
    });
    ASSERT_TRUE(started.wait());
    EXPECT_EQ(threads_started_since(*before), 1u) << "one job, one thread";
    release.open();
}

TEST(ThreadPoolExecutor, NeverRunsMoreThreadsThanMaxWorkers) {
    const std::optional<std::set<std::string>> before = process_threads();
    if (!before) GTEST_SKIP() << "/proc/self/task is not readable";
    corio::ThreadPoolExecutor pool(2);
    auto ids = std::make_shared<ThreadIds>();
    Gate release;
    OpenOnDestroy unblock(release);
    std::vector<Gate> started(6);
    for (const Gate& s : started) {
        pool.submit([ids, s, release] {
            ids->add_current();
            s.open();
            release.wait();
        });
    }
    ASSERT_TRUE(started[0].wait());
    ASSERT_TRUE(started[1].wait());
    EXPECT_EQ(threads_started_since(*before), 2u) << "4 jobs wait in the queue, not on new threads";
    release.open();
    pool.shutdown(true);
    for (const Gate& s : started) EXPECT_TRUE(s.is_open());
    EXPECT_EQ(ids->ids().size(), 2u);
}

TEST(ThreadPoolExecutor, AJobThatThrowsIsReportedAndThePoolKeepsWorking) {
    corio::ThreadPoolExecutor pool(1);
    ::testing::internal::CaptureStderr();
    pool.submit([] { throw std::runtime_error("job exploded"); });
    std::promise<int> after;
    pool.submit([&after] { after.set_value(7); });
    std::future<int> f = after.get_future();
    const bool ready = f.wait_for(kPatience) == std::future_status::ready;
    pool.shutdown(true);
    const std::string err = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(ready);
    EXPECT_EQ(f.get(), 7);
    EXPECT_NE(err.find("job exploded"), std::string::npos) << "stderr: " << err;
}

CORIO_TEST(ThreadPoolExecutor, ShutdownWithCancelPendingGivesTheAwaitingTasksCancelledError) {
    corio::ThreadPoolExecutor pool(1);
    Gate started;
    Gate release;
    Gate b_ran;
    Gate c_ran;
    OpenOnDestroy unblock(release);
    auto blocker = [started, release] {
        started.open();
        return release.wait();
    };
    auto job_b = [b_ran] {
        b_ran.open();
        return 2;
    };
    auto job_c = [c_ran] { c_ran.open(); };
    auto a = corio::create_task(in_pool(pool, std::move(blocker)));
    auto b = corio::create_task(in_pool(pool, std::move(job_b)));
    auto c = corio::create_task(in_pool(pool, std::move(job_c)));
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);

    pool.shutdown(false, true);
    EXPECT_THROW(co_await b, corio::CancelledError);
    EXPECT_THROW(co_await c, corio::CancelledError);
    EXPECT_TRUE(b.cancelled());
    EXPECT_TRUE(c.cancelled());
    release.open();
    EXPECT_TRUE(co_await a) << "the running call still completes";
    EXPECT_FALSE(b_ran.is_open());
    EXPECT_FALSE(c_ran.is_open());
}

// ============================================================================================
// The loop's default executor
// ============================================================================================

CORIO_TEST(DefaultExecutor, IsCreatedOnceWithTheDefaultMaxWorkers) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::ThreadPoolExecutor& first = loop.default_executor();
    EXPECT_EQ(&loop.default_executor(), &first);
    EXPECT_EQ(first.max_workers(), corio::ThreadPoolExecutor::default_max_workers());
    co_return;
}

CORIO_TEST(DefaultExecutor, ToThreadRunsOnTheDefaultExecutorsThreads) {
    // Occupy every thread the default pool can have at once, to learn all their ids.
    corio::ThreadPoolExecutor& pool = corio::get_running_loop().default_executor();
    const std::size_t n = pool.max_workers();
    auto meet = std::make_shared<Rendezvous>(n);
    auto ids = std::make_shared<ThreadIds>();
    auto all_met = std::make_shared<std::atomic<std::size_t>>(0);
    for (std::size_t i = 0; i < n; ++i) {
        pool.submit([meet, ids, all_met] {
            ids->add_current();
            if (meet->arrive_and_wait()) ++*all_met;
        });
    }
    const bool ok = co_await eventually([&] { return all_met->load() == n; });
    CORIO_ASSERT(ok);
    CORIO_ASSERT(ids->ids().size() == n);
    const std::thread::id id = co_await corio::to_thread(current_thread_id);
    EXPECT_EQ(ids->ids().count(id), 1u);
}

CORIO_TEST(DefaultExecutor, SetDefaultExecutorMakesToThreadRunOnThatPool) {
    corio::EventLoop& loop = corio::get_running_loop();
    auto pool = std::make_shared<corio::ThreadPoolExecutor>(1);
    std::promise<std::thread::id> pool_thread;
    pool->submit([&pool_thread] { pool_thread.set_value(std::this_thread::get_id()); });
    std::future<std::thread::id> f = pool_thread.get_future();
    CORIO_ASSERT(f.wait_for(kPatience) == std::future_status::ready);
    const std::thread::id expected = f.get();

    loop.set_default_executor(pool);
    EXPECT_EQ(&loop.default_executor(), pool.get());
    for (int i = 0; i < 3; ++i) {
        const std::thread::id id = co_await corio::to_thread(current_thread_id);
        EXPECT_EQ(id, expected);
    }
}

CORIO_TEST(DefaultExecutor, SetDefaultExecutorToNullThrowsValueErrorAndKeepsTheOldOne) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::ThreadPoolExecutor& before = loop.default_executor();
    EXPECT_THROW(loop.set_default_executor(nullptr), corio::ValueError);
    EXPECT_EQ(&loop.default_executor(), &before);
    co_return;
}

CORIO_TEST(DefaultExecutor, ShutdownWaitsForRunningJobsWithoutBlockingTheLoop) {
    corio::EventLoop& loop = corio::get_running_loop();
    Gate started;
    Gate release;
    Gate finished;
    OpenOnDestroy unblock(release);
    auto job = [started, release, finished] {
        started.open();
        const bool released = release.wait();
        finished.open();
        return released;
    };
    auto call = corio::create_task(in_thread(std::move(job)));
    const bool ok = co_await eventually([&] { return started.is_open(); });
    CORIO_ASSERT(ok);

    // The job can only end once a loop-side task has run 5 steps during the shutdown.
    int ticks = 0;
    auto ticker = corio::create_task(tick_then_open(ticks, 5, release));
    co_await loop.shutdown_default_executor();
    EXPECT_TRUE(finished.is_open()) << "shutdown_default_executor() returned before the job ended";
    EXPECT_EQ(ticks, 5);
    EXPECT_TRUE(co_await call) << "the job was not released: the loop was blocked";
    co_await ticker;
}

CORIO_TEST(DefaultExecutor, AfterShutdownToThreadRaisesRuntimeError) {
    corio::EventLoop& loop = corio::get_running_loop();
    auto warm_up = [] { return 1; };
    (void)co_await corio::to_thread(warm_up);  // the default executor exists
    co_await loop.shutdown_default_executor();
    auto job = [] { return 2; };
    EXPECT_THROW((void)co_await corio::to_thread(job), corio::RuntimeError);
    EXPECT_THROW(loop.default_executor(), corio::RuntimeError);
}

CORIO_TEST(DefaultExecutor, ShutdownBeforeAnyUseAndTwiceIsHarmlessAndStillRefusesWork) {
    corio::EventLoop& loop = corio::get_running_loop();
    co_await loop.shutdown_default_executor();
    co_await loop.shutdown_default_executor();
    EXPECT_THROW(loop.default_executor(), corio::RuntimeError);
}

CORIO_TEST(DefaultExecutor, ShutdownShutsDownAnExecutorSetByTheUser) {
    corio::EventLoop& loop = corio::get_running_loop();
    auto pool = std::make_shared<corio::ThreadPoolExecutor>(2);
    loop.set_default_executor(pool);
    co_await loop.shutdown_default_executor();
    EXPECT_THROW(pool->submit([] {}), corio::RuntimeError);
}

CORIO_TEST(DefaultExecutor, AfterShutdownEvenANewlySetExecutorIsNotUsedByToThread) {
    // asyncio: run_in_executor(None, ...) checks _executor_shutdown_called whatever the default
    // executor is, so to_thread keeps raising RuntimeError.
    corio::EventLoop& loop = corio::get_running_loop();
    co_await loop.shutdown_default_executor();
    loop.set_default_executor(std::make_shared<corio::ThreadPoolExecutor>(1));
    auto job = [] { return 1; };
    EXPECT_THROW((void)co_await corio::to_thread(job), corio::RuntimeError);
}

// Starts a job on the default executor that is still running when this returns; `finished`
// is set at the job's very end.
corio::Coro<> start_background_job(std::shared_ptr<std::atomic<bool>> finished) {
    Gate started;
    auto job = [started, finished] {
        started.open();
        std::this_thread::sleep_for(50ms);  // widens the window a non-waiting shutdown would show
        *finished = true;
    };
    corio::get_running_loop().default_executor().submit(job);
    const bool ok = co_await eventually([&] { return started.is_open(); });
    EXPECT_TRUE(ok);
}

TEST(DefaultExecutor, RunShutsItDownAndWaitsForItsJobsBeforeReturning) {
    auto finished = std::make_shared<std::atomic<bool>>(false);
    corio::run(start_background_job(finished));
    EXPECT_TRUE(*finished);
}

TEST(DefaultExecutor, RunnerCloseShutsItDownAndWaitsForItsJobs) {
    auto finished = std::make_shared<std::atomic<bool>>(false);
    corio::Runner runner;
    runner.run(start_background_job(finished));
    runner.close();
    EXPECT_TRUE(*finished);
}

TEST(DefaultExecutor, EventLoopCloseShutsItDownAndWaitsForItsJobs) {
    auto finished = std::make_shared<std::atomic<bool>>(false);
    corio::EventLoop loop;
    loop.run_until_complete(start_background_job(finished));
    loop.close();
    EXPECT_TRUE(*finished);
    EXPECT_THROW(loop.default_executor(), corio::RuntimeError);
}

TEST(DefaultExecutor, EventLoopCloseShutsDownAnExecutorTheUserStillHolds) {
    auto pool = std::make_shared<corio::ThreadPoolExecutor>(1);
    {
        corio::EventLoop loop;
        loop.set_default_executor(pool);
        loop.close();
    }
    EXPECT_THROW(pool->submit([] {}), corio::RuntimeError);
}

}  // namespace
