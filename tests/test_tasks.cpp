// Tests for corio/tasks.hpp: Task, create_task, cancellation, sleep, gather, wait,
// as_completed, shield, current_task/all_tasks, and the "nothing is lost" guarantees.
// The behaviours pinned here are asyncio's (CPython's Lib/test/test_asyncio/test_tasks.py).
// The tests that wait for timers run on a virtual clock (corio::VirtualClock), where loop.time()
// jumps from deadline to deadline, so their elapsed times are exact; the tests named
// ...OnTheRealClock keep real time covered, with generous bounds.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;
using corio::AnyTask;
using corio::CancelledError;
using corio::Coro;
using corio::Future;
using corio::Task;

namespace {

// --- helpers: small coroutines used as task bodies ----------------------------------------

// Yields to the loop `yields` times, records `v` in *order (if given), returns v.
Coro<int> value_after(int v, int yields, std::vector<int>* order = nullptr) {
    for (int i = 0; i < yields; ++i) co_await corio::sleep(0s);
    if (order != nullptr) order->push_back(v);
    co_return v;
}

Coro<std::string> string_after(std::string s, int yields, std::vector<int>* order, int tag) {
    for (int i = 0; i < yields; ++i) co_await corio::sleep(0s);
    order->push_back(tag);
    co_return s;
}

Coro<> void_after(int yields, bool* ran) {
    for (int i = 0; i < yields; ++i) co_await corio::sleep(0s);
    *ran = true;
}

Coro<int> fail_after_yield(std::string message) {
    co_await corio::sleep(0s);
    throw std::runtime_error(message);
}

Coro<int> wait_future(Future<int> f) {
    co_return co_await f;
}

Coro<> set_flag(bool* flag) {
    *flag = true;
    co_return;
}

Coro<int> sleep_long(bool* started = nullptr) {
    if (started != nullptr) *started = true;
    co_await corio::sleep(10s);
    co_return 0;
}

Coro<> cancel_after_yield(AnyTask t) {
    co_await corio::sleep(0s);
    t.cancel();
}

Coro<int> named_coroutine_for_get_coro() {
    co_return 3;
}

// Runs `aw` and tells whether it raised CancelledError (message in *message if given).
template <class A>
Coro<bool> raises_cancelled(A aw, std::string* message = nullptr) {
    bool raised = false;
    try {
        co_await aw;
    } catch (const CancelledError& e) {
        raised = true;
        if (message != nullptr) *message = e.what();
    }
    co_return raised;
}

bool contains(const std::vector<AnyTask>& v, const AnyTask& t) {
    return std::find(v.begin(), v.end(), t) != v.end();
}

int task_number(const std::string& name) {
    std::smatch m;
    static const std::regex re("^Task-([0-9]+)$");
    if (!std::regex_match(name, m, re)) return -1;
    return std::stoi(m[1].str());
}

// corio::run() on a virtual clock.
template <class A>
auto run_virtual(A&& main) {
    return corio::run(std::forward<A>(main),
                      corio::RunOptions{.virtual_clock = corio::VirtualClock{}});
}

std::string message_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (const corio::BaseException& x) {
        return x.what();
    } catch (...) {
        return "?";
    }
}

}  // namespace

// --- create_task, result, exception, names --------------------------------------------------

namespace {
Coro<> create_task_main() {
    bool ran = false;
    Task<> t = corio::create_task(set_flag(&ran));
    EXPECT_FALSE(ran) << "create_task must schedule, not run synchronously";
    EXPECT_FALSE(t.done());
    co_await corio::sleep(0s);
    EXPECT_TRUE(ran);
    EXPECT_TRUE(t.done());
}
}  // namespace

TEST(Tasks, CreateTaskSchedulesForTheNextPassNotSynchronously) {
    corio::run(create_task_main());
}

namespace {
Coro<> result_and_exception_main() {
    Task<int> ok = corio::create_task(value_after(42, 1));
    Task<int> bad = corio::create_task(fail_after_yield("boom"));
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    EXPECT_TRUE(ok.done());
    EXPECT_TRUE(bad.done());
    EXPECT_EQ(ok.result(), 42);
    EXPECT_EQ(ok.exception(), nullptr);
    EXPECT_FALSE(ok.cancelled());

    std::exception_ptr e = bad.exception();
    EXPECT_NE(e, nullptr);
    EXPECT_EQ(message_of(e), "boom");
    EXPECT_FALSE(bad.cancelled());
    EXPECT_THROW(bad.result(), std::runtime_error);
}
}  // namespace

TEST(Tasks, ResultAndExceptionOfFinishedTask) {
    corio::run(result_and_exception_main());
}

namespace {
Coro<> pending_result_main() {
    auto f = corio::get_running_loop().create_future<int>();
    Task<int> t = corio::create_task(wait_future(f));
    EXPECT_THROW(t.result(), corio::InvalidStateError);
    EXPECT_THROW(t.exception(), corio::InvalidStateError);
    co_await corio::sleep(0s);
    EXPECT_THROW(t.result(), corio::InvalidStateError);
    EXPECT_THROW(t.exception(), corio::InvalidStateError);
    f.set_result(1);
    int v = co_await t;
    EXPECT_EQ(v, 1);
}
}  // namespace

TEST(Tasks, ResultAndExceptionOfPendingTaskRaiseInvalidStateError) {
    corio::run(pending_result_main());
}

namespace {
Coro<> cancelled_result_main() {
    Task<int> t = corio::create_task(sleep_long());
    co_await corio::sleep(0s);
    EXPECT_TRUE(t.cancel());
    bool raised = co_await raises_cancelled(t);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(t.cancelled());
    EXPECT_THROW(t.result(), CancelledError);
    EXPECT_THROW(t.exception(), CancelledError);
}
}  // namespace

TEST(Tasks, ResultAndExceptionOfCancelledTaskRaiseCancelledError) {
    corio::run(cancelled_result_main());
}

namespace {
Coro<> default_name_main() {
    Task<int> a = corio::create_task(value_after(1, 0));
    Task<int> b = corio::create_task(value_after(2, 0));
    int na = task_number(a.get_name());
    int nb = task_number(b.get_name());
    EXPECT_GT(na, 0) << a.get_name();
    EXPECT_GT(nb, 0) << b.get_name();
    EXPECT_LT(na, nb) << "tasks are numbered in creation order";
    EXPECT_GT(task_number(corio::current_task().get_name()), 0);
    co_await a;
    co_await b;
}
}  // namespace

TEST(Tasks, DefaultNameIsTaskN) {
    corio::run(default_name_main());
}

namespace {
Coro<> named_main() {
    Task<int> t = corio::create_task(value_after(1, 1), "worker");
    EXPECT_EQ(t.get_name(), "worker");
    t.set_name("renamed");
    EXPECT_EQ(t.get_name(), "renamed");
    co_await t;
    EXPECT_EQ(t.get_name(), "renamed");
}
}  // namespace

TEST(Tasks, NameGivenToCreateTaskAndSetNameChangesIt) {
    corio::run(named_main());
}

namespace {
Coro<> get_coro_main() {
    Task<int> t = corio::create_task(named_coroutine_for_get_coro());
    corio::SourceLocation where = t.get_coro();
    EXPECT_NE(std::string(where.function).find("named_coroutine_for_get_coro"), std::string::npos)
        << where.function;
    EXPECT_NE(std::string(where.file).find("test_tasks.cpp"), std::string::npos) << where.file;
    EXPECT_GT(where.line, 0u);
    co_await t;
}
}  // namespace

TEST(Tasks, GetCoroNamesTheCoroutineFunctionAndFile) {
    corio::run(get_coro_main());
}

// --- done callbacks -------------------------------------------------------------------------

namespace {
Coro<> done_callback_main() {
    Task<int> t = corio::create_task(value_after(7, 0));
    int calls = 0;
    bool same_task = false;
    int seen_result = 0;
    t.add_done_callback([&, t](Task<int> done) {
        ++calls;
        same_task = done == t;
        seen_result = done.result();
    });
    co_await corio::sleep(0s);  // t runs and completes; its callback is scheduled behind us
    EXPECT_TRUE(t.done());
    EXPECT_EQ(calls, 0) << "done callbacks are scheduled with call_soon, not run synchronously";
    co_await corio::sleep(0s);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(same_task);
    EXPECT_EQ(seen_result, 7);
}
}  // namespace

TEST(Tasks, DoneCallbackRunsThroughTheLoopAndReceivesTheTask) {
    corio::run(done_callback_main());
}

namespace {
Coro<> remove_callback_main() {
    Task<int> t = corio::create_task(value_after(1, 1));
    bool removed_ran = false;
    bool kept_ran = false;
    corio::CallbackId id = t.add_done_callback([&](Task<int>) { removed_ran = true; });
    t.add_done_callback([&](Task<int>) { kept_ran = true; });
    EXPECT_EQ(t.remove_done_callback(id), 1u);
    EXPECT_EQ(t.remove_done_callback(id), 0u);
    co_await t;
    for (int i = 0; i < 5; ++i) co_await corio::sleep(0s);
    EXPECT_TRUE(kept_ran);
    EXPECT_FALSE(removed_ran);
}
}  // namespace

TEST(Tasks, RemoveDoneCallbackReturnsNumberRemovedAndItDoesNotRun) {
    corio::run(remove_callback_main());
}

namespace {
Coro<> callback_on_done_task_main() {
    Task<int> t = corio::create_task(value_after(5, 0));
    co_await t;
    EXPECT_TRUE(t.done());
    int seen = 0;
    t.add_done_callback([&](Task<int> done) { seen = done.result(); });
    EXPECT_EQ(seen, 0) << "scheduled, not run synchronously";
    co_await corio::sleep(0s);
    EXPECT_EQ(seen, 5);
}
}  // namespace

TEST(Tasks, DoneCallbackAddedToDoneTaskIsStillScheduled) {
    corio::run(callback_on_done_task_main());
}

// --- cancellation ---------------------------------------------------------------------------

namespace {
Coro<> cancel_done_main() {
    Task<int> t = corio::create_task(value_after(1, 0));
    co_await t;
    EXPECT_FALSE(t.cancel());
    EXPECT_FALSE(t.cancelled());
    EXPECT_EQ(t.cancelling(), 0u);
    EXPECT_EQ(t.result(), 1);
}
}  // namespace

TEST(Tasks, CancelOnDoneTaskReturnsFalse) {
    corio::run(cancel_done_main());
}

namespace {
struct SleepProbe {
    bool started = false;
    bool caught_at_sleep = false;
    bool after_sleep = false;
};

Coro<> probe_sleep(SleepProbe* p) {
    p->started = true;
    try {
        co_await corio::sleep(10s);
        p->after_sleep = true;
    } catch (const CancelledError&) {
        p->caught_at_sleep = true;
        throw;
    }
}

Coro<> cancel_sleeping_main() {
    auto& loop = corio::get_running_loop();
    auto start = loop.time();
    SleepProbe p;
    Task<> t = corio::create_task(probe_sleep(&p));
    co_await corio::sleep(0s);
    EXPECT_TRUE(p.started);
    EXPECT_TRUE(t.cancel());
    bool raised = co_await raises_cancelled(t);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(p.caught_at_sleep);
    EXPECT_FALSE(p.after_sleep);
    EXPECT_TRUE(t.cancelled());
    EXPECT_EQ(loop.time() - start, corio::Duration::zero()) << "the 10 s sleep must be interrupted";
}
}  // namespace

TEST(Tasks, CancelSleepingTaskRaisesCancelledErrorAtItsSleep) {
    run_virtual(cancel_sleeping_main());
}

namespace {
Coro<> record_cancel_message(std::string* inside) {
    try {
        co_await corio::sleep(10s);
    } catch (const CancelledError& e) {
        *inside = e.what();
        throw;
    }
}

Coro<> cancel_message_main() {
    std::string inside;
    Task<> t = corio::create_task(record_cancel_message(&inside));
    co_await corio::sleep(0s);
    t.cancel("stop now");
    std::string outside;
    bool raised = co_await raises_cancelled(t, &outside);
    EXPECT_TRUE(raised);
    EXPECT_EQ(inside, "stop now");
    EXPECT_EQ(outside, "stop now");
    std::string from_exception;
    try {
        t.exception();
    } catch (const CancelledError& e) {
        from_exception = e.what();
    }
    EXPECT_EQ(from_exception, "stop now");
}
}  // namespace

TEST(Tasks, CancelMessageIsCarriedByCancelledError) {
    corio::run(cancel_message_main());
}

namespace {
Coro<int> swallow_cancel() {
    bool was_cancelled = false;
    try {
        co_await corio::sleep(10s);
    } catch (const CancelledError&) {
        was_cancelled = true;
    }
    co_await corio::sleep(0s);  // still usable after catching
    co_return was_cancelled ? 5 : -1;
}

Coro<> swallow_cancel_main() {
    Task<int> t = corio::create_task(swallow_cancel());
    co_await corio::sleep(0s);
    EXPECT_TRUE(t.cancel());
    int v = co_await t;
    EXPECT_EQ(v, 5);
    EXPECT_TRUE(t.done());
    EXPECT_FALSE(t.cancelled());
}
}  // namespace

TEST(Tasks, TaskCatchingCancelledErrorContinuesAndFinishesNormally) {
    corio::run(swallow_cancel_main());
}

namespace {
Coro<int> await_inner(Task<int> inner) {
    int v = co_await inner;
    co_return v;
}

Coro<> cancel_outer_main() {
    Task<int> inner = corio::create_task(sleep_long());
    Task<int> outer = corio::create_task(await_inner(inner));
    co_await corio::sleep(0s);
    EXPECT_TRUE(outer.cancel());
    bool raised = co_await raises_cancelled(outer);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(outer.cancelled());
    EXPECT_TRUE(inner.done());
    EXPECT_TRUE(inner.cancelled());
}
}  // namespace

TEST(Tasks, CancellingTaskAwaitingAnotherTaskCancelsTheInnerOne) {
    corio::run(cancel_outer_main());
}

namespace {
// Two tasks awaiting each other (a deadlock in the program): cancelling one must not pass the
// cancellation round the cycle forever (it used to overflow the stack); both end cancelled.
Coro<> await_task(Task<>* other) {
    co_await corio::sleep(0s);
    co_await *other;
}

Coro<> cancel_cycle_main() {
    Task<> a;
    Task<> b;
    a = corio::create_task(await_task(&b), "a");
    b = corio::create_task(await_task(&a), "b");
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);  // both are now suspended on each other
    EXPECT_TRUE(a.cancel());
    EXPECT_TRUE(co_await raises_cancelled(a));
    EXPECT_TRUE(co_await raises_cancelled(b));
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
}
}  // namespace

TEST(Tasks, CancellingOneOfTwoTasksAwaitingEachOtherCancelsBothWithoutLooping) {
    corio::run(cancel_cycle_main());
}

namespace {
Coro<> cancel_before_run_main() {
    bool ran = false;
    Task<> t = corio::create_task(set_flag(&ran));
    EXPECT_TRUE(t.cancel());
    bool raised = co_await raises_cancelled(t);
    EXPECT_TRUE(raised);
    EXPECT_FALSE(ran) << "a task cancelled before its first step never runs its body";
    EXPECT_TRUE(t.cancelled());
}
}  // namespace

TEST(Tasks, TaskCancelledBeforeItRanNeverRunsItsBody) {
    corio::run(cancel_before_run_main());
}

namespace {
Coro<> cancelling_count_main() {
    Task<int> t = corio::create_task(sleep_long());
    co_await corio::sleep(0s);
    EXPECT_EQ(t.cancelling(), 0u);
    EXPECT_TRUE(t.cancel());
    EXPECT_EQ(t.cancelling(), 1u);
    EXPECT_TRUE(t.cancel());
    EXPECT_EQ(t.cancelling(), 2u);
    EXPECT_EQ(t.uncancel(), 1u);
    EXPECT_EQ(t.cancelling(), 1u);
    bool raised = co_await raises_cancelled(t);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(t.cancelled());
}
}  // namespace

TEST(Tasks, CancellingCountsRequestsAndUncancelWithdrawsOne) {
    corio::run(cancelling_count_main());
}

namespace {
// Counts the CancelledErrors it sees; keeps going after each.
Coro<int> count_cancellations() {
    int seen = 0;
    try {
        co_await corio::sleep(10s);
    } catch (const CancelledError&) {
        ++seen;
    }
    try {
        co_await corio::sleep(0s);
    } catch (const CancelledError&) {
        ++seen;
    }
    co_return seen;
}

Coro<> cancel_twice_main() {
    Task<int> t = corio::create_task(count_cancellations());
    co_await corio::sleep(0s);
    t.cancel();
    t.cancel();
    EXPECT_EQ(t.cancelling(), 2u);
    int seen = co_await t;
    // asyncio: both requests are delivered as one CancelledError at the task's next step.
    EXPECT_EQ(seen, 1);
}
}  // namespace

TEST(Tasks, CancelTwiceRaisesOneCancelledError) {
    corio::run(cancel_twice_main());
}

namespace {
struct WakeProbe {
    bool got_value = false;
    bool got_cancelled = false;
};

Coro<> await_future_probe(Future<int> f, WakeProbe* p) {
    try {
        co_await f;
        p->got_value = true;
    } catch (const CancelledError&) {
        p->got_cancelled = true;
        throw;
    }
}

Coro<> cancel_while_scheduled_main() {
    auto f = corio::get_running_loop().create_future<int>();
    WakeProbe p;
    Task<> t = corio::create_task(await_future_probe(f, &p));
    co_await corio::sleep(0s);  // t now waits on f
    f.set_result(1);            // t is scheduled to resume...
    EXPECT_TRUE(t.cancel());    // ...and cancelled before it runs
    bool raised = co_await raises_cancelled(t);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(p.got_cancelled);
    EXPECT_FALSE(p.got_value);
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(f.cancelled()) << "the future was already done";
}
}  // namespace

TEST(Tasks, TaskCancelledWhileScheduledToResumeGetsCancelledError) {
    corio::run(cancel_while_scheduled_main());
}

namespace {
// Cancels its own task, then returns without another suspension: asyncio ends such a task
// cancelled, since cancel() returned true.
Coro<int> cancel_self_then_return(bool* cancel_returned) {
    *cancel_returned = corio::current_task().cancel();
    co_return 7;
}

Coro<> cancelled_after_last_suspension_main() {
    bool cancel_returned = false;
    Task<int> t = corio::create_task(cancel_self_then_return(&cancel_returned));
    bool raised = co_await raises_cancelled(t);
    EXPECT_TRUE(cancel_returned);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(t.cancelled());
}

// A request withdrawn with uncancel() before the task returns does not cancel it.
Coro<int> cancel_self_uncancel_return() {
    corio::current_task().cancel();
    corio::current_task().uncancel();
    co_return 8;
}

Coro<> withdrawn_cancellation_main() {
    Task<int> t = corio::create_task(cancel_self_uncancel_return());
    EXPECT_EQ(co_await t, 8);
    EXPECT_FALSE(t.cancelled());
}
}  // namespace

TEST(Tasks, TaskThatReturnsWithCancellationPendingEndsCancelled) {
    corio::run(cancelled_after_last_suspension_main());
}

TEST(Tasks, TaskThatReturnsAfterItsCancellationWasWithdrawnSucceeds) {
    corio::run(withdrawn_cancellation_main());
}

namespace {
struct StdCatchProbe {
    bool caught_by_std = false;
    bool continued = false;
};

Coro<> catch_std_exception(StdCatchProbe* p) {
    try {
        co_await corio::sleep(10s);
    } catch (const std::exception&) {
        p->caught_by_std = true;
    }
    p->continued = true;
}

Coro<> std_catch_main() {
    StdCatchProbe p;
    Task<> t = corio::create_task(catch_std_exception(&p));
    co_await corio::sleep(0s);
    t.cancel();
    bool raised = co_await raises_cancelled(t);
    EXPECT_TRUE(raised);
    EXPECT_FALSE(p.caught_by_std);
    EXPECT_FALSE(p.continued);
    EXPECT_TRUE(t.cancelled());
}
}  // namespace

TEST(Tasks, CatchStdExceptionDoesNotCatchCancelledError) {
    corio::run(std_catch_main());
}

namespace {
Coro<> raise_cancelled_error() {
    co_await corio::sleep(0s);
    throw CancelledError("raised by hand");
}

Coro<> escaping_cancelled_main() {
    Task<> t = corio::create_task(raise_cancelled_error());
    std::string message;
    bool raised = co_await raises_cancelled(t, &message);
    EXPECT_TRUE(raised);
    EXPECT_EQ(message, "raised by hand");
    EXPECT_TRUE(t.done());
    EXPECT_TRUE(t.cancelled());
    EXPECT_EQ(t.cancelling(), 0u);
}
}  // namespace

TEST(Tasks, CancelledErrorEscapingUncancelledTaskMarksItCancelled) {
    corio::run(escaping_cancelled_main());
}

// --- awaiting tasks ---------------------------------------------------------------------------

namespace {
Coro<int> await_self(Task<int>* self, bool* got_runtime_error) {
    try {
        co_await *self;
    } catch (const corio::RuntimeError&) {
        *got_runtime_error = true;
    }
    co_return 1;
}

Coro<> await_self_main() {
    bool got = false;
    Task<int> t;
    t = corio::create_task(await_self(&t, &got));
    int v = co_await t;
    EXPECT_EQ(v, 1);
    EXPECT_TRUE(got);
}
}  // namespace

TEST(Tasks, TaskAwaitingItselfRaisesRuntimeError) {
    corio::run(await_self_main());
}

namespace {
Coro<> await_lvalue_main() {
    Task<int> t = corio::create_task(value_after(42, 1));
    int& a = co_await t;
    EXPECT_EQ(a, 42);
    int& b = co_await t;  // a done task can be awaited again
    EXPECT_EQ(b, 42);
    EXPECT_EQ(&a, &b) << "both refer to the result the task keeps";
    a = 43;
    EXPECT_EQ(t.result(), 43);
}
}  // namespace

TEST(Tasks, AwaitingTaskLvalueReturnsReferenceToItsResult) {
    corio::run(await_lvalue_main());
}

namespace {
Coro<std::unique_ptr<int>> make_unique_after_yield(int v) {
    co_await corio::sleep(0s);
    co_return std::make_unique<int>(v);
}

Coro<> await_moved_main() {
    Task<std::unique_ptr<int>> t = corio::create_task(make_unique_after_yield(7));
    Task<std::unique_ptr<int>> keep = t;
    std::unique_ptr<int> p = co_await std::move(t);
    EXPECT_NE(p, nullptr);
    if (p) {
        EXPECT_EQ(*p, 7);
    }
    EXPECT_EQ(keep.result(), nullptr) << "the result was moved out of the task";
}
}  // namespace

TEST(Tasks, AwaitingMovedTaskMovesTheResultOut) {
    corio::run(await_moved_main());
}

// --- current_task, all_tasks ------------------------------------------------------------------

namespace {
Coro<> record_current(AnyTask* out) {
    *out = corio::current_task();
    co_return;
}

Coro<> current_task_main() {
    AnyTask seen;
    Task<> t = corio::create_task(record_current(&seen));
    co_await t;
    EXPECT_TRUE(seen);
    EXPECT_TRUE(seen == t);
    AnyTask me = corio::current_task();
    EXPECT_TRUE(me);
    EXPECT_FALSE(me == t);
}
}  // namespace

TEST(Tasks, CurrentTaskInsideTaskIsThatTask) {
    corio::run(current_task_main());

    corio::EventLoop loop;
    AnyTask seen;
    Task<> root = loop.create_task(record_current(&seen));
    loop.run_until_complete(root);
    EXPECT_TRUE(seen == root);
}

TEST(Tasks, CurrentTaskOutsideLoopIsEmpty) {
    EXPECT_FALSE(corio::current_task());
    corio::run(value_after(1, 1));
    EXPECT_FALSE(corio::current_task());
}

namespace {
Coro<> all_tasks_main() {
    auto f = corio::get_running_loop().create_future<int>();
    Task<int> pending = corio::create_task(wait_future(f));
    Task<int> finished = corio::create_task(value_after(1, 0));
    co_await corio::sleep(0s);
    EXPECT_TRUE(finished.done());
    std::vector<AnyTask> all = corio::all_tasks();
    EXPECT_TRUE(contains(all, corio::current_task()));
    EXPECT_TRUE(contains(all, pending));
    EXPECT_FALSE(contains(all, finished));
    EXPECT_EQ(all.size(), 2u);
    f.set_result(2);
    co_await pending;
    all = corio::all_tasks();
    EXPECT_FALSE(contains(all, pending));
    EXPECT_EQ(all.size(), 1u);
}
}  // namespace

TEST(Tasks, AllTasksListsPendingTasksIncludingTheCurrentOne) {
    corio::run(all_tasks_main());
}

// --- sleep ------------------------------------------------------------------------------------

namespace {
template <class D>
Coro<> append_and_yield(std::string* log, char c, int times, D delay) {
    for (int i = 0; i < times; ++i) {
        log->push_back(c);
        co_await corio::sleep(delay);
    }
}

template <class D>
Coro<> interleave_main(std::string* log, D delay) {
    Task<> a = corio::create_task(append_and_yield(log, 'A', 3, delay));
    Task<> b = corio::create_task(append_and_yield(log, 'B', 3, delay));
    co_await a;
    co_await b;
}
}  // namespace

TEST(Tasks, SleepZeroYieldsExactlyOnce) {
    std::string log;
    corio::run(interleave_main(&log, 0s));
    EXPECT_EQ(log, "ABABAB");
}

namespace {
Coro<> sleep_duration_main() {
    auto& loop = corio::get_running_loop();
    auto start = loop.time();
    co_await corio::sleep(50ms);
    auto elapsed = loop.time() - start;
    EXPECT_GE(elapsed, 45ms);
    EXPECT_LT(elapsed, 2s);
}

Coro<> sleep_exact_duration_main() {
    auto& loop = corio::get_running_loop();
    auto start = loop.time();
    co_await corio::sleep(50ms);
    EXPECT_EQ(loop.time() - start, corio::Duration(50ms));
    co_await corio::sleep(std::chrono::hours(24));
    EXPECT_EQ(loop.time() - start, corio::Duration(24h + 50ms));
}

Coro<int> value_after_sleep(int v, corio::Duration d, std::vector<corio::Duration>* woke) {
    auto start = corio::get_running_loop().time();
    co_await corio::sleep(d);
    woke->push_back(corio::get_running_loop().time() - start);
    co_return v;
}

Coro<> gather_sleeps_main() {
    auto& loop = corio::get_running_loop();
    auto start = loop.time();
    std::vector<corio::Duration> woke;
    auto r =
        co_await corio::gather(value_after_sleep(1, 3s, &woke), value_after_sleep(2, 1s, &woke),
                               value_after_sleep(3, 2s, &woke));
    EXPECT_EQ(r, std::make_tuple(1, 2, 3));
    EXPECT_EQ(loop.time() - start, corio::Duration(3s)) << "the longest sleep, not their sum";
    std::vector<corio::Duration> expected = {1s, 2s, 3s};
    EXPECT_EQ(woke, expected) << "each woke at its own deadline, in deadline order";
}
}  // namespace

TEST(Tasks, SleepWaitsAtLeastItsDurationOnTheRealClock) {
    corio::run(sleep_duration_main());
}

TEST(Tasks, SleepWaitsExactlyItsDuration) {
    run_virtual(sleep_exact_duration_main());
}

TEST(Tasks, GatheredSleepsRunConcurrentlyAndWakeAtTheirDeadlines) {
    run_virtual(gather_sleeps_main());
}

TEST(Tasks, NegativeSleepActsLikeZero) {
    std::string log;
    corio::run(interleave_main(&log, -10ms));
    EXPECT_EQ(log, "ABABAB");
}

// --- gather -----------------------------------------------------------------------------------

namespace {
Coro<> gather_order_main() {
    std::vector<int> completion;
    auto r = co_await corio::gather(value_after(1, 3, &completion),
                                    string_after("two", 1, &completion, 2),
                                    value_after(3, 2, &completion));
    static_assert(std::is_same_v<decltype(r), std::tuple<int, std::string, int>>);
    EXPECT_EQ(std::get<0>(r), 1);
    EXPECT_EQ(std::get<1>(r), "two");
    EXPECT_EQ(std::get<2>(r), 3);
    EXPECT_EQ(completion, (std::vector<int>{2, 3, 1})) << "they did finish out of order";
}
}  // namespace

TEST(Tasks, GatherReturnsResultsInArgumentOrder) {
    corio::run(gather_order_main());
}

namespace {
Coro<> gather_void_main() {
    bool ran = false;
    auto r = co_await corio::gather(void_after(1, &ran), value_after(4, 0));
    static_assert(std::is_same_v<decltype(r), std::tuple<std::monostate, int>>);
    EXPECT_TRUE(ran);
    EXPECT_EQ(std::get<1>(r), 4);
}
}  // namespace

TEST(Tasks, GatherVoidResultsBecomeMonostate) {
    corio::run(gather_void_main());
}

namespace {
Coro<> gather_coro_range_main() {
    std::vector<int> completion;
    std::vector<Coro<int>> coros;
    coros.push_back(value_after(10, 3, &completion));
    coros.push_back(value_after(20, 1, &completion));
    coros.push_back(value_after(30, 2, &completion));
    std::vector<int> r = co_await corio::gather(std::move(coros));
    EXPECT_EQ(r, (std::vector<int>{10, 20, 30}));
    EXPECT_EQ(completion, (std::vector<int>{20, 30, 10}));
}
}  // namespace

TEST(Tasks, GatherRangeOfCorosReturnsVectorInOrder) {
    corio::run(gather_coro_range_main());
}

namespace {
Coro<> gather_task_range_main() {
    std::vector<int> completion;
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(value_after(10, 2, &completion)));
    tasks.push_back(corio::create_task(value_after(20, 0, &completion)));
    tasks.push_back(corio::create_task(value_after(30, 1, &completion)));
    std::vector<int> r = co_await corio::gather(tasks);
    EXPECT_EQ(r, (std::vector<int>{10, 20, 30}));
    EXPECT_EQ(completion, (std::vector<int>{20, 30, 10}));
}
}  // namespace

TEST(Tasks, GatherRangeOfTasksReturnsVectorInOrder) {
    corio::run(gather_task_range_main());
}

namespace {
Coro<> gather_empty_main() {
    std::vector<Task<int>> none;
    std::vector<int> r = co_await corio::gather(none);
    EXPECT_TRUE(r.empty());
}
}  // namespace

TEST(Tasks, GatherOfEmptyRangeReturnsEmptyVector) {
    corio::run(gather_empty_main());
}

namespace {
Coro<> gather_first_exception_main() {
    auto f = corio::get_running_loop().create_future<int>();
    Task<int> slow = corio::create_task(wait_future(f));
    Task<int> bad = corio::create_task(fail_after_yield("first failure"));
    std::string caught;
    try {
        co_await corio::gather(slow, bad);
    } catch (const std::runtime_error& e) {
        caught = e.what();
    }
    EXPECT_EQ(caught, "first failure");
    EXPECT_FALSE(slow.done()) << "gather raised as soon as the failure happened";
    EXPECT_FALSE(slow.cancelled());
    f.set_result(8);
    int v = co_await slow;  // the other task kept running
    EXPECT_EQ(v, 8);
}
}  // namespace

TEST(Tasks, GatherPropagatesFirstExceptionAtOnceWhileOthersKeepRunning) {
    corio::run(gather_first_exception_main());
}

namespace {
Coro<> gather_cancelled_child_main() {
    Task<int> victim = corio::create_task(sleep_long());
    Task<int> other = corio::create_task(value_after(2, 3));
    Task<> canceller = corio::create_task(cancel_after_yield(victim));
    bool raised = co_await raises_cancelled(corio::gather(victim, other));
    EXPECT_TRUE(raised);
    EXPECT_TRUE(victim.cancelled());
    EXPECT_EQ(corio::current_task().cancelling(), 0u) << "the awaiting task was not cancelled";
    int v = co_await other;
    EXPECT_EQ(v, 2);
    co_await canceller;
}
}  // namespace

TEST(Tasks, GatherRaisesCancelledErrorWhenAChildIsCancelled) {
    corio::run(gather_cancelled_child_main());
}

namespace {
Coro<> gather_two(Task<int> a, Task<int> b) {
    co_await corio::gather(a, b);
}

Coro<> cancel_gather_main() {
    Task<int> a = corio::create_task(sleep_long());
    Task<int> b = corio::create_task(sleep_long());
    Task<> outer = corio::create_task(gather_two(a, b));
    co_await corio::sleep(0s);
    EXPECT_TRUE(outer.cancel());
    bool raised = co_await raises_cancelled(outer);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(outer.cancelled());
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
}
}  // namespace

TEST(Tasks, CancellingTaskAwaitingGatherCancelsAllChildren) {
    corio::run(cancel_gather_main());
}

namespace {
Coro<> gather_settled_main() {
    Task<int> doomed = corio::create_task(sleep_long());
    doomed.cancel();
    bool ran = false;
    auto [ok, bad, nothing, cancelled] = co_await corio::gather_settled(
        value_after(1, 2), fail_after_yield("settled failure"), void_after(1, &ran), doomed);

    EXPECT_TRUE(ok.has_value());
    EXPECT_EQ(ok.value(), 1);
    EXPECT_EQ(ok.exception(), nullptr);
    EXPECT_FALSE(ok.cancelled());

    EXPECT_FALSE(bad.has_value());
    EXPECT_EQ(message_of(bad.exception()), "settled failure");
    EXPECT_THROW(bad.value(), std::runtime_error);
    EXPECT_FALSE(bad.cancelled());

    EXPECT_TRUE(nothing.has_value());
    static_assert(std::is_same_v<decltype(nothing.value()), std::monostate&>);
    EXPECT_TRUE(ran);

    EXPECT_FALSE(cancelled.has_value());
    EXPECT_TRUE(cancelled.cancelled());
    EXPECT_THROW(cancelled.value(), CancelledError);
}
}  // namespace

TEST(Tasks, GatherSettledReturnsOutcomesInOrder) {
    corio::run(gather_settled_main());
}

namespace {
// On cancellation, takes two more loop passes to clean up before re-raising.
Coro<int> slow_cleanup(bool* cleaned) {
    bool cancelled = false;
    try {
        co_await corio::sleep(10s);
    } catch (const CancelledError&) {
        cancelled = true;
    }
    if (cancelled) {
        co_await corio::sleep(0s);
        co_await corio::sleep(0s);
        *cleaned = true;
        throw CancelledError();
    }
    co_return 0;
}

Coro<> settle_two(Task<int> a, Task<int> b, bool* cleaned, bool* cleaned_when_raised) {
    try {
        co_await corio::gather_settled(a, b);
    } catch (const CancelledError&) {
        *cleaned_when_raised = *cleaned;
        throw;
    }
}

Coro<> cancel_gather_settled_main() {
    bool cleaned = false;
    bool cleaned_when_raised = false;
    Task<int> a = corio::create_task(sleep_long());
    Task<int> b = corio::create_task(slow_cleanup(&cleaned));
    Task<> outer = corio::create_task(settle_two(a, b, &cleaned, &cleaned_when_raised));
    co_await corio::sleep(0s);
    EXPECT_TRUE(outer.cancel());
    bool raised = co_await raises_cancelled(outer);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(outer.cancelled());
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
    EXPECT_TRUE(cleaned_when_raised) << "CancelledError comes after the children are done";
}
}  // namespace

TEST(Tasks, GatherSettledWhenAwaiterCancelledCancelsChildrenThenRaises) {
    corio::run(cancel_gather_settled_main());
}

// --- wait -------------------------------------------------------------------------------------

namespace {
Coro<> wait_all_main() {
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(value_after(1, 3)));
    tasks.push_back(corio::create_task(value_after(2, 1)));
    tasks.push_back(corio::create_task(value_after(3, 2)));
    auto r = co_await corio::wait(tasks, corio::ALL_COMPLETED);
    EXPECT_EQ(r.done.size(), 3u);
    EXPECT_TRUE(r.pending.empty());
    for (auto& t : tasks) EXPECT_TRUE(t.done());
    if (r.done.size() == 3) {
        EXPECT_TRUE(r.done[0] == tasks[0]);
        EXPECT_TRUE(r.done[1] == tasks[1]);
        EXPECT_TRUE(r.done[2] == tasks[2]);
    }
}
}  // namespace

TEST(Tasks, WaitAllCompletedWaitsForAll) {
    corio::run(wait_all_main());
}

namespace {
Coro<> wait_first_completed_main() {
    auto f = corio::get_running_loop().create_future<int>();
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(wait_future(f)));
    tasks.push_back(corio::create_task(value_after(2, 2)));
    tasks.push_back(corio::create_task(wait_future(f)));
    auto r = co_await corio::wait(tasks, corio::FIRST_COMPLETED);
    EXPECT_EQ(r.done.size(), 1u);
    EXPECT_EQ(r.pending.size(), 2u);
    if (r.done.size() == 1) {
        EXPECT_TRUE(r.done[0] == tasks[1]);
    }
    for (auto& t : r.pending) EXPECT_FALSE(t.done());
    f.set_result(0);
    co_await corio::gather(tasks);
}
}  // namespace

TEST(Tasks, WaitFirstCompletedReturnsAsSoonAsOneIsDone) {
    corio::run(wait_first_completed_main());
}

namespace {
Coro<> wait_first_exception_main() {
    auto f = corio::get_running_loop().create_future<int>();
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(value_after(1, 0)));  // completes first, successfully
    tasks.push_back(corio::create_task(fail_after_yield("wait failure")));
    tasks.push_back(corio::create_task(wait_future(f)));
    auto r = co_await corio::wait(tasks, corio::FIRST_EXCEPTION);
    EXPECT_EQ(r.done.size(), 2u);
    EXPECT_EQ(r.pending.size(), 1u);
    if (r.pending.size() == 1) {
        EXPECT_TRUE(r.pending[0] == tasks[2]);
    }
    EXPECT_FALSE(tasks[2].done());
    EXPECT_EQ(message_of(tasks[1].exception()), "wait failure");
    f.set_result(3);
    int v = co_await tasks[2];
    EXPECT_EQ(v, 3);
}
}  // namespace

TEST(Tasks, WaitFirstExceptionReturnsAtTheFirstException) {
    corio::run(wait_first_exception_main());
}

namespace {
Coro<> wait_first_exception_no_failure_main() {
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(value_after(1, 2)));
    tasks.push_back(corio::create_task(value_after(2, 0)));
    tasks.push_back(corio::create_task(value_after(3, 4)));
    auto r = co_await corio::wait(tasks, corio::FIRST_EXCEPTION);
    EXPECT_EQ(r.done.size(), 3u);
    EXPECT_TRUE(r.pending.empty());
    for (auto& t : tasks) EXPECT_TRUE(t.done());
}
}  // namespace

TEST(Tasks, WaitFirstExceptionWithoutFailureWaitsForAll) {
    corio::run(wait_first_exception_no_failure_main());
}

namespace {
Coro<> wait_timeout_main() {
    auto& loop = corio::get_running_loop();
    auto f = loop.create_future<int>();
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(value_after(1, 0)));
    tasks.push_back(corio::create_task(wait_future(f)));
    auto start = loop.time();
    auto r = co_await corio::wait(tasks, corio::ALL_COMPLETED, 20ms);
    auto elapsed = loop.time() - start;
    EXPECT_EQ(elapsed, corio::Duration(20ms));
    EXPECT_EQ(r.done.size(), 1u);
    EXPECT_EQ(r.pending.size(), 1u);
    if (r.pending.size() == 1) {
        EXPECT_TRUE(r.pending[0] == tasks[1]);
    }
    EXPECT_FALSE(tasks[1].done());
    EXPECT_FALSE(tasks[1].cancelled()) << "wait never cancels on timeout";
    co_await corio::sleep(0s);
    EXPECT_FALSE(tasks[1].done());
    f.set_result(6);
    int v = co_await tasks[1];
    EXPECT_EQ(v, 6);
}
}  // namespace

TEST(Tasks, WaitTimeoutReturnsWithPendingTasksAndDoesNotCancelThem) {
    run_virtual(wait_timeout_main());
}

namespace {
Coro<> wait_empty_main() {
    std::vector<Task<int>> none;
    bool threw = false;
    try {
        co_await corio::wait(none);
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    EXPECT_TRUE(threw);
}
}  // namespace

TEST(Tasks, WaitOnEmptyVectorThrowsInvalidArgument) {
    corio::run(wait_empty_main());
}

namespace {
Coro<> wait_in_task(std::vector<Task<int>> tasks) {
    co_await corio::wait(tasks);
}

Coro<> cancel_waiter_main() {
    auto f = corio::get_running_loop().create_future<int>();
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(wait_future(f)));
    tasks.push_back(corio::create_task(wait_future(f)));
    Task<> waiter = corio::create_task(wait_in_task(tasks));
    co_await corio::sleep(0s);
    EXPECT_TRUE(waiter.cancel());
    bool raised = co_await raises_cancelled(waiter);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(waiter.cancelled());
    for (auto& t : tasks) EXPECT_FALSE(t.done());
    f.set_result(4);
    std::vector<int> r = co_await corio::gather(tasks);
    EXPECT_EQ(r, (std::vector<int>{4, 4}));
}
}  // namespace

TEST(Tasks, CancellingTheWaiterDoesNotCancelTheWaitedTasks) {
    corio::run(cancel_waiter_main());
}

// --- as_completed -----------------------------------------------------------------------------

namespace {
Coro<> as_completed_range_main() {
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(value_after(30, 3)));
    tasks.push_back(corio::create_task(value_after(10, 1)));
    tasks.push_back(corio::create_task(value_after(20, 2)));
    std::vector<int> got;
    auto ac = corio::as_completed(tasks);
    for (auto next : ac) {
        int v = co_await next;
        got.push_back(v);
    }
    EXPECT_EQ(got, (std::vector<int>{10, 20, 30}));
    EXPECT_EQ(ac.remaining(), 0u);
}
}  // namespace

TEST(Tasks, AsCompletedYieldsResultsInCompletionOrder) {
    corio::run(as_completed_range_main());
}

namespace {
Coro<> as_completed_next_task_main() {
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(value_after(30, 3)));
    tasks.push_back(corio::create_task(value_after(10, 1)));
    tasks.push_back(corio::create_task(value_after(20, 2)));
    auto ac = corio::as_completed(tasks);
    Task<int> first = co_await ac.next_task();
    Task<int> second = co_await ac.next_task();
    Task<int> third = co_await ac.next_task();
    EXPECT_TRUE(first == tasks[1]);
    EXPECT_TRUE(second == tasks[2]);
    EXPECT_TRUE(third == tasks[0]);
    EXPECT_TRUE(first.done());
    EXPECT_EQ(first.result(), 10);
}
}  // namespace

TEST(Tasks, AsCompletedNextTaskReturnsTasksInCompletionOrder) {
    corio::run(as_completed_next_task_main());
}

namespace {
Coro<> as_completed_timeout_main() {
    auto& loop = corio::get_running_loop();
    auto f = loop.create_future<int>();
    std::vector<Task<int>> tasks;
    tasks.push_back(corio::create_task(wait_future(f)));
    tasks.push_back(corio::create_task(value_after(5, 1)));
    auto start = loop.time();
    auto ac = corio::as_completed(tasks, 20ms);
    int v = co_await ac.next();
    EXPECT_EQ(v, 5);
    bool timed_out = false;
    try {
        co_await ac.next();
    } catch (const corio::TimeoutError&) {
        timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(loop.time() - start, corio::Duration(20ms));
    EXPECT_FALSE(tasks[0].done());
    f.set_result(1);
    co_await tasks[0];
}
}  // namespace

TEST(Tasks, AsCompletedWithTimeoutThrowsTimeoutErrorOnceDeadlinePasses) {
    run_virtual(as_completed_timeout_main());
}

// --- shield -----------------------------------------------------------------------------------

namespace {
Coro<int> await_shielded(Task<int> inner, bool* got_cancelled) {
    try {
        int v = co_await corio::shield(inner);
        co_return v;
    } catch (const CancelledError&) {
        *got_cancelled = true;
        throw;
    }
}

Coro<> shield_outer_cancel_main() {
    auto f = corio::get_running_loop().create_future<int>();
    Task<int> inner = corio::create_task(wait_future(f));
    bool got_cancelled = false;
    Task<int> outer = corio::create_task(await_shielded(inner, &got_cancelled));
    co_await corio::sleep(0s);
    EXPECT_TRUE(outer.cancel());
    co_await corio::sleep(0s);
    EXPECT_TRUE(outer.done()) << "the awaiting task is cancelled at once";
    EXPECT_TRUE(outer.cancelled());
    EXPECT_TRUE(got_cancelled);
    EXPECT_FALSE(inner.done()) << "the shielded task keeps running";
    f.set_result(9);
    int v = co_await inner;
    EXPECT_EQ(v, 9);
    EXPECT_FALSE(inner.cancelled());
}
}  // namespace

TEST(Tasks, ShieldCancellingAwaiterRaisesAtOnceWhileInnerCompletes) {
    corio::run(shield_outer_cancel_main());
}

namespace {
Coro<> shield_inner_cancel_main() {
    Task<int> inner = corio::create_task(sleep_long());
    bool got_cancelled = false;
    Task<int> outer = corio::create_task(await_shielded(inner, &got_cancelled));
    co_await corio::sleep(0s);
    EXPECT_TRUE(inner.cancel());
    bool raised = co_await raises_cancelled(outer);
    EXPECT_TRUE(raised);
    EXPECT_TRUE(got_cancelled);
    EXPECT_TRUE(inner.cancelled());
    EXPECT_TRUE(outer.cancelled());
}
}  // namespace

TEST(Tasks, ShieldRaisesCancelledErrorWhenInnerTaskIsCancelled) {
    corio::run(shield_inner_cancel_main());
}

// --- nothing is lost --------------------------------------------------------------------------

namespace {
using Reports = std::vector<corio::ExceptionContext>;

void record_reports(corio::EventLoop& loop, Reports* reports) {
    loop.set_exception_handler(
        [reports](corio::EventLoop&, const corio::ExceptionContext& c) { reports->push_back(c); });
}

void expect_unretrieved_report(const Reports& reports, const std::string& task,
                               const std::string& message) {
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].message, "Task exception was never retrieved");
    EXPECT_EQ(reports[0].task, task);
    EXPECT_EQ(message_of(reports[0].exception), message);
}

Coro<> orphan_failure_main(Reports* reports) {
    record_reports(corio::get_running_loop(), reports);
    corio::create_task(fail_after_yield("nobody listens"), "orphan");
    for (int i = 0; i < 3; ++i) co_await corio::sleep(0s);
    expect_unretrieved_report(*reports, "orphan", "nobody listens");
}
}  // namespace

TEST(Tasks, UnretrievedExceptionOfUnheldTaskIsReportedWhenItIsDestroyed) {
    Reports reports;
    corio::run(orphan_failure_main(&reports));
    EXPECT_EQ(reports.size(), 1u);
}

namespace {
Coro<> drop_last_handle_main(Reports* reports) {
    record_reports(corio::get_running_loop(), reports);
    Task<int> t = corio::create_task(fail_after_yield("dropped"), "held");
    for (int i = 0; i < 3; ++i) co_await corio::sleep(0s);
    EXPECT_TRUE(t.done());
    EXPECT_TRUE(reports->empty()) << "not reported while a handle could still retrieve it";
    t = Task<int>();
    expect_unretrieved_report(*reports, "held", "dropped");
}
}  // namespace

TEST(Tasks, UnretrievedExceptionIsReportedWhenLastHandleIsDropped) {
    Reports reports;
    corio::run(drop_last_handle_main(&reports));
    EXPECT_EQ(reports.size(), 1u);
}

namespace {
Coro<> hold_while_sleeping(Task<int> held) {
    co_await corio::sleep(10s);
    co_await held;
}

Coro<> failure_held_by_pending_task_main() {
    Task<int> t = corio::create_task(fail_after_yield("held at close"), "failing");
    corio::create_task(hold_while_sleeping(t));
    for (int i = 0; i < 3; ++i) co_await corio::sleep(0s);
    EXPECT_TRUE(t.done());
}
}  // namespace

TEST(Tasks, UnretrievedExceptionIsReportedOnRunnerClose) {
    Reports reports;
    corio::Runner runner;
    record_reports(runner.get_loop(), &reports);
    runner.run(failure_held_by_pending_task_main());
    EXPECT_TRUE(reports.empty()) << "a pending task still holds the failed one";
    runner.close();  // cancels the holder, which drops the last handle
    expect_unretrieved_report(reports, "failing", "held at close");
}

namespace {
Coro<> retrieved_main(Reports* reports) {
    record_reports(corio::get_running_loop(), reports);
    Task<int> awaited = corio::create_task(fail_after_yield("awaited"));
    Task<int> asked = corio::create_task(fail_after_yield("asked"));
    Task<int> resulted = corio::create_task(fail_after_yield("resulted"));
    bool caught = false;
    try {
        co_await awaited;
    } catch (const std::runtime_error&) {
        caught = true;
    }
    EXPECT_TRUE(caught);
    co_await corio::sleep(0s);
    EXPECT_TRUE(asked.done());
    EXPECT_TRUE(resulted.done());
    EXPECT_NE(asked.exception(), nullptr);
    EXPECT_THROW(resulted.result(), std::runtime_error);
    awaited = Task<int>();
    asked = Task<int>();
    resulted = Task<int>();
    EXPECT_TRUE(reports->empty());
}
}  // namespace

TEST(Tasks, RetrievedExceptionIsNotReported) {
    Reports reports;
    corio::run(retrieved_main(&reports));
    EXPECT_TRUE(reports.empty());
}

namespace {
struct LiveCounter {
    int* live;
    explicit LiveCounter(int* l) : live(l) { ++*live; }
    LiveCounter(const LiveCounter& o) : live(o.live) { ++*live; }
    LiveCounter& operator=(const LiveCounter&) = delete;
    ~LiveCounter() { --*live; }
};

Coro<> never_awaited(LiveCounter counter, bool* ran) {
    *ran = counter.live != nullptr;
    co_return;
}

Coro<> unawaited_coro_main() {
    int live = 0;
    bool ran = false;
    {
        Coro<> c = never_awaited(LiveCounter(&live), &ran);
        EXPECT_EQ(live, 1) << "the frame holds its copy of the parameter";
        co_await corio::sleep(0s);
        EXPECT_FALSE(ran) << "a Coro is lazy";
    }
    EXPECT_EQ(live, 0) << "destroying the Coro frees its frame and its parameters";
    co_await corio::sleep(0s);
    EXPECT_FALSE(ran);
}
}  // namespace

TEST(Tasks, UnawaitedCoroFreesItsFrameAndNeverRunsItsBody) {
    corio::run(unawaited_coro_main());
}

// --- empty handles ------------------------------------------------------------------------

TEST(Tasks, EmptyTaskHandleRaisesInvalidStateErrorInsteadOfCrashing) {
    Task<int> empty;
    EXPECT_FALSE(static_cast<bool>(empty));
    EXPECT_THROW((void)empty.done(), corio::InvalidStateError);
    EXPECT_THROW(empty.cancel(), corio::InvalidStateError);
    EXPECT_THROW((void)empty.result(), corio::InvalidStateError);
    // current_task() outside a task is such an empty handle.
    EXPECT_THROW((void)corio::current_task().get_name(), corio::InvalidStateError);
    corio::run([]() -> Coro<> {
        Task<int> none;
        EXPECT_THROW(co_await none, corio::InvalidStateError);
    }());
}

TEST(Tasks, EmptyFutureHandleRaisesInvalidStateError) {
    Future<int> empty;
    EXPECT_THROW((void)empty.done(), corio::InvalidStateError);
    EXPECT_THROW(empty.set_result(1), corio::InvalidStateError);
}

// --- durations of any type --------------------------------------------------------------------

TEST(Tasks, WaitAndAsCompletedTakeAnyDurationType) {
    run_virtual([]() -> Coro<> {
        auto& loop = corio::get_running_loop();
        std::vector<Task<void>> tasks;
        tasks.push_back(corio::create_task(corio::sleep(1h)));
        using Seconds = std::chrono::duration<double>;
        auto start = loop.time();
        auto r = co_await corio::wait(tasks, corio::ALL_COMPLETED, Seconds(0.5));
        EXPECT_EQ(r.pending.size(), 1u);
        EXPECT_EQ(loop.time() - start, corio::Duration(500ms));
        auto ac = corio::as_completed(tasks, std::chrono::minutes(1));
        EXPECT_THROW(co_await ac.next_task(), corio::TimeoutError);
        EXPECT_EQ(loop.time() - start, corio::Duration(500ms + 1min));
        tasks[0].cancel();
    }());
}
