// corio::Future<T>: the behaviours of asyncio.Future (CPython's test_futures.py, where they apply).
// The tests where a timer settles a future run on a virtual clock (RunOptions::virtual_clock), so
// they assert exactly when the awaiter woke; ...OnTheRealClock and the thread test keep real
// time covered.
#include <gtest/gtest.h>

#include <chrono>
#include <corio/corio.hpp>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct Boom : std::runtime_error {
    int code;
    explicit Boom(int c) : std::runtime_error("boom " + std::to_string(c)), code(c) {}
};

// The message of the CancelledError `e` holds; fails the test if it holds something else.
std::string cancelled_message(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const corio::CancelledError& c) {
        return c.message();
    } catch (...) {
        ADD_FAILURE() << "expected a CancelledError";
    }
    return "<not a CancelledError>";
}

// corio::run() on a virtual clock.
template <class A>
auto run_virtual(A&& main) {
    return corio::run(std::forward<A>(main),
                      corio::RunOptions{.virtual_clock = corio::VirtualClock{}});
}

// Runs `fn()` and returns the CancelledError's message; fails the test if it does not throw one.
template <class F>
std::string cancelled_message_of(F&& fn) {
    try {
        fn();
    } catch (...) {
        return cancelled_message(std::current_exception());
    }
    ADD_FAILURE() << "expected a CancelledError, nothing was thrown";
    return "<nothing thrown>";
}

// Records what the exception handler is given.
struct HandlerLog {
    std::vector<corio::ExceptionContext> reports;
    void install(corio::EventLoop& loop) {
        loop.set_exception_handler(
            [this](corio::EventLoop&, const corio::ExceptionContext& c) { reports.push_back(c); });
    }
};

}  // namespace

// --- state without a running loop ------------------------------------------------------------

TEST(Futures, DefaultConstructedHandleIsEmpty) {
    corio::Future<int> f;
    EXPECT_FALSE(static_cast<bool>(f));
    corio::EventLoop loop;
    f = loop.create_future<int>();
    EXPECT_TRUE(static_cast<bool>(f));
}

TEST(Futures, CreatedFutureIsPendingAndNotCancelled) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    EXPECT_FALSE(f.done());
    EXPECT_FALSE(f.cancelled());
}

TEST(Futures, SetResultMakesItDoneAndResultReturnsIt) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    f.set_result(42);
    EXPECT_TRUE(f.done());
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(f.result(), 42);
    EXPECT_EQ(f.exception(), nullptr);
}

TEST(Futures, CopiesShareTheResult) {
    corio::EventLoop loop;
    auto f = loop.create_future<std::string>();
    corio::Future<std::string> g = f;
    EXPECT_TRUE(f == g);
    g.set_result("shared");
    EXPECT_TRUE(f.done());
    EXPECT_EQ(f.result(), "shared");
    EXPECT_NE(f, loop.create_future<std::string>());
}

TEST(Futures, ResultWhilePendingThrowsInvalidStateError) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    EXPECT_THROW(f.result(), corio::InvalidStateError);
    EXPECT_FALSE(f.done());
}

TEST(Futures, ExceptionWhilePendingThrowsInvalidStateError) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    EXPECT_THROW(f.exception(), corio::InvalidStateError);
    EXPECT_FALSE(f.done());
}

TEST(Futures, SetResultTwiceThrowsInvalidStateErrorAndKeepsTheFirst) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    f.set_result(1);
    EXPECT_THROW(f.set_result(2), corio::InvalidStateError);
    EXPECT_EQ(f.result(), 1);
}

TEST(Futures, SetExceptionAfterSetResultThrowsInvalidStateError) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    f.set_result(1);
    EXPECT_THROW(f.set_exception(std::make_exception_ptr(Boom(1))), corio::InvalidStateError);
    EXPECT_EQ(f.result(), 1);
}

TEST(Futures, SetResultAfterCancelThrowsInvalidStateError) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    ASSERT_TRUE(f.cancel());
    EXPECT_THROW(f.set_result(1), corio::InvalidStateError);
    EXPECT_THROW(f.set_exception(std::make_exception_ptr(Boom(1))), corio::InvalidStateError);
    EXPECT_TRUE(f.cancelled());
}

TEST(Futures, SetExceptionThenResultRethrowsAndExceptionReturnsIt) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    f.set_exception(std::make_exception_ptr(Boom(7)));
    EXPECT_TRUE(f.done());
    EXPECT_FALSE(f.cancelled());
    try {
        f.result();
        ADD_FAILURE() << "result() did not throw";
    } catch (const Boom& b) {
        EXPECT_EQ(b.code, 7);
    }
    std::exception_ptr e = f.exception();
    ASSERT_NE(e, nullptr);
    try {
        std::rethrow_exception(e);
    } catch (const Boom& b) {
        EXPECT_EQ(b.code, 7);
    }
}

TEST(Futures, SetExceptionWithCancelledErrorIsInvalidArgument) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    EXPECT_THROW(f.set_exception(std::make_exception_ptr(corio::CancelledError("no"))),
                 std::invalid_argument);
    EXPECT_FALSE(f.done());
}

TEST(Futures, SetExceptionWithNullIsInvalidArgument) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    EXPECT_THROW(f.set_exception(nullptr), std::invalid_argument);
    EXPECT_FALSE(f.done());
}

TEST(Futures, CancelMakesItCancelledAndResultThrowsCancelledErrorWithMessage) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    EXPECT_TRUE(f.cancel("stop it"));
    EXPECT_TRUE(f.cancelled());
    EXPECT_TRUE(f.done());
    EXPECT_EQ(cancelled_message_of([&] { f.result(); }), "stop it");
    EXPECT_EQ(cancelled_message_of([&] { f.exception(); }), "stop it");
}

TEST(Futures, CancelWithoutMessageGivesEmptyMessage) {
    corio::EventLoop loop;
    auto f = loop.create_future<void>();
    EXPECT_TRUE(f.cancel());
    EXPECT_EQ(cancelled_message_of([&] { f.result(); }), "");
}

TEST(Futures, CancelOnDoneFutureReturnsFalse) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    f.set_result(3);
    EXPECT_FALSE(f.cancel());
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(f.result(), 3);

    auto g = loop.create_future<int>();
    g.set_exception(std::make_exception_ptr(Boom(1)));
    EXPECT_FALSE(g.cancel());
    EXPECT_FALSE(g.cancelled());
    EXPECT_NE(g.exception(), nullptr);

    auto h = loop.create_future<int>();
    EXPECT_TRUE(h.cancel("first"));
    EXPECT_FALSE(h.cancel("second"));
    EXPECT_EQ(cancelled_message_of([&] { h.result(); }), "first");
}

// --- awaiting ----------------------------------------------------------------------------

TEST(Futures, AwaitReturnsResultSetLaterByCallback) {
    int v = run_virtual([]() -> corio::Coro<int> {
        auto& loop = corio::get_running_loop();
        auto start = loop.time();
        auto f = loop.create_future<int>();
        loop.call_later(10s, [f]() mutable { f.set_result(42); });
        int r = co_await f;
        EXPECT_EQ(loop.time() - start, corio::Duration(10s));
        co_return r;
    }());
    EXPECT_EQ(v, 42);
}

TEST(Futures, AwaitReturnsResultSetLaterByCallbackOnTheRealClock) {
    double waited = 0;
    int v = corio::run([](double* waited) -> corio::Coro<int> {
        auto& loop = corio::get_running_loop();
        auto start = loop.time();
        auto f = loop.create_future<int>();
        loop.call_later(10ms, [f]() mutable { f.set_result(42); });
        int r = co_await f;
        *waited = std::chrono::duration<double>(loop.time() - start).count();
        co_return r;
    }(&waited));
    EXPECT_EQ(v, 42);
    EXPECT_GE(waited, 0.009);
    EXPECT_LT(waited, 5.0);
}

TEST(Futures, AwaitDoneFutureReturnsAtOnce) {
    corio::run([]() -> corio::Coro<> {
        auto f = corio::get_running_loop().create_future<int>();
        f.set_result(5);
        int r = co_await f;
        EXPECT_EQ(r, 5);
        int again = co_await f;  // a future may be awaited any number of times
        EXPECT_EQ(again, 5);
    }());
}

TEST(Futures, AwaitRethrowsTheExceptionWithItsType) {
    corio::run([]() -> corio::Coro<> {
        auto& loop = corio::get_running_loop();
        auto f = loop.create_future<int>();
        loop.call_soon([f]() mutable { f.set_exception(std::make_exception_ptr(Boom(9))); });
        int code = 0;
        try {
            co_await f;
        } catch (const Boom& b) {
            code = b.code;
        }
        EXPECT_EQ(code, 9);
    }());
}

namespace {

corio::Coro<> await_and_record(corio::Future<int> f, int id, std::vector<int>* order,
                               std::vector<int>* values) {
    int v = co_await f;
    order->push_back(id);
    values->push_back(v);
}

}  // namespace

TEST(Futures, SeveralAwaitersAllWakeWithTheValueInTheOrderTheyStartedAwaiting) {
    std::vector<int> order;
    std::vector<int> values;
    corio::run([](std::vector<int>* order, std::vector<int>* values) -> corio::Coro<> {
        auto f = corio::get_running_loop().create_future<int>();
        std::vector<corio::Task<void>> tasks;
        // Started in the order 2, 0, 1: they begin awaiting in that order.
        for (int id : {2, 0, 1})
            tasks.push_back(corio::create_task(await_and_record(f, id, order, values)));
        co_await corio::sleep(0s);
        for (auto& t : tasks) EXPECT_FALSE(t.done());
        EXPECT_TRUE(order->empty());
        f.set_result(17);
        EXPECT_TRUE(order->empty());  // set_result only schedules the awaiters
        co_await corio::gather(tasks);
    }(&order, &values));
    EXPECT_EQ(order, (std::vector<int>{2, 0, 1}));
    EXPECT_EQ(values, (std::vector<int>{17, 17, 17}));
}

TEST(Futures, AwaitingAlreadyCancelledFutureRaisesCancelledError) {
    corio::run([]() -> corio::Coro<> {
        auto f = corio::get_running_loop().create_future<int>();
        f.cancel("gone");
        std::string message = "<not thrown>";
        try {
            co_await f;
        } catch (const corio::CancelledError& e) {
            message = e.message();
        }
        EXPECT_EQ(message, "gone");
    }());
}

TEST(Futures, FutureCancelledWhileAwaitedRaisesCancelledErrorInAwaiter) {
    run_virtual([]() -> corio::Coro<> {
        auto& loop = corio::get_running_loop();
        auto start = loop.time();
        auto f = loop.create_future<int>();
        loop.call_later(5ms, [f]() mutable { f.cancel("later"); });
        std::string message = "<not thrown>";
        try {
            co_await f;
        } catch (const corio::CancelledError& e) {
            message = e.message();
        }
        EXPECT_EQ(message, "later");
        EXPECT_EQ(loop.time() - start, corio::Duration(5ms));
        // The awaiting task itself was not cancelled: it goes on.
        EXPECT_EQ(corio::current_task().cancelling(), 0u);
        co_await corio::sleep(0s);
    }());
}

namespace {

corio::Coro<int> await_future(corio::Future<int> f, bool* after_await) {
    int v = co_await f;
    *after_await = true;
    co_return v;
}

}  // namespace

TEST(Futures, CancellingTaskThatAwaitsFutureCancelsTheFuture) {
    corio::run([]() -> corio::Coro<> {
        auto f = corio::get_running_loop().create_future<int>();
        bool after_await = false;
        auto task = corio::create_task(await_future(f, &after_await));
        co_await corio::sleep(0s);
        EXPECT_FALSE(task.done());
        EXPECT_TRUE(task.cancel("from main"));
        EXPECT_TRUE(f.cancelled());  // at once, as asyncio's Task.cancel() does
        std::string message = "<not thrown>";
        try {
            co_await task;
        } catch (const corio::CancelledError& e) {
            message = e.message();
        }
        EXPECT_EQ(message, "from main");
        EXPECT_TRUE(task.cancelled());
        EXPECT_FALSE(after_await);
        EXPECT_EQ(cancelled_message_of([&] { f.result(); }), "from main");
    }());
}

TEST(Futures, CancellingOneAwaiterCancelsFutureForTheOtherAwaitersToo) {
    corio::run([]() -> corio::Coro<> {
        auto f = corio::get_running_loop().create_future<int>();
        bool a_after = false;
        bool b_after = false;
        auto a = corio::create_task(await_future(f, &a_after));
        auto b = corio::create_task(await_future(f, &b_after));
        co_await corio::sleep(0s);
        a.cancel();
        auto outcomes = co_await corio::gather_settled(a, b);
        EXPECT_TRUE(std::get<0>(outcomes).cancelled());
        EXPECT_TRUE(std::get<1>(outcomes).cancelled());
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.cancelled());
        EXPECT_FALSE(a_after);
        EXPECT_FALSE(b_after);
    }());
}

// --- done callbacks ----------------------------------------------------------------------

TEST(Futures, DoneCallbackIsScheduledThroughTheLoopAfterCompletion) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    std::vector<std::string> log;
    f.add_done_callback(
        [&log](corio::Future<int> g) { log.push_back("cb " + std::to_string(g.result())); });
    loop.call_soon([&log] { log.push_back("earlier callback"); });
    f.set_result(4);
    EXPECT_TRUE(log.empty());  // not called from set_result
    loop.call_soon([&] {
        log.push_back("stop");
        loop.stop();
    });
    loop.run_forever();
    EXPECT_EQ(log, (std::vector<std::string>{"earlier callback", "cb 4", "stop"}));
}

TEST(Futures, DoneCallbackReceivesTheFuture) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    corio::Future<int> seen;
    f.add_done_callback([&seen](corio::Future<int> g) { seen = g; });
    f.cancel();
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    ASSERT_TRUE(static_cast<bool>(seen));
    EXPECT_TRUE(seen == f);
    EXPECT_TRUE(seen.cancelled());
}

TEST(Futures, DoneCallbacksRunInRegistrationOrder) {
    corio::EventLoop loop;
    auto f = loop.create_future<void>();
    std::vector<int> order;
    for (int i = 0; i < 4; ++i)
        f.add_done_callback([&order, i](corio::Future<void>) { order.push_back(i); });
    f.set_result();
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
}

TEST(Futures, DoneCallbackAddedToDoneFutureIsScheduledNotCalled) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    f.set_result(1);
    int calls = 0;
    f.add_done_callback([&calls](corio::Future<int>) { ++calls; });
    EXPECT_EQ(calls, 0);
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(calls, 1);
}

TEST(Futures, RemoveDoneCallbackPreventsTheCall) {
    corio::EventLoop loop;
    auto f = loop.create_future<int>();
    std::vector<int> called;
    auto id0 = f.add_done_callback([&called](corio::Future<int>) { called.push_back(0); });
    auto id1 = f.add_done_callback([&called](corio::Future<int>) { called.push_back(1); });
    auto id2 = f.add_done_callback([&called](corio::Future<int>) { called.push_back(2); });
    EXPECT_NE(id0, id1);
    EXPECT_NE(id1, id2);
    EXPECT_EQ(f.remove_done_callback(id1), 1u);
    EXPECT_EQ(f.remove_done_callback(id1), 0u);  // already removed
    EXPECT_EQ(f.remove_done_callback(id2 + 100), 0u);
    f.set_result(0);
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(called, (std::vector<int>{0, 2}));
}

TEST(Futures, DoneCallbackKeepsFutureAliveAfterLastHandleIsDropped) {
    corio::EventLoop loop;
    int result = 0;
    {
        auto f = loop.create_future<int>();
        f.add_done_callback([&result](corio::Future<int> g) { result = g.result(); });
        f.set_result(11);
    }
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(result, 11);
}

TEST(Futures, ThrowingDoneCallbackIsReportedAndOthersStillRun) {
    corio::EventLoop loop;
    HandlerLog log;
    log.install(loop);
    auto f = loop.create_future<int>();
    std::vector<int> called;
    f.add_done_callback([](corio::Future<int>) { throw Boom(8); });
    f.add_done_callback([&called](corio::Future<int>) { called.push_back(1); });
    f.set_result(0);
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(called, (std::vector<int>{1}));
    ASSERT_EQ(log.reports.size(), 1u);
    bool is_boom = false;
    try {
        std::rethrow_exception(log.reports[0].exception);
    } catch (const Boom& b) {
        is_boom = b.code == 8;
    } catch (...) {
    }
    EXPECT_TRUE(is_boom);
}

TEST(Futures, CreateFutureOnClosedLoopThrowsRuntimeError) {
    corio::EventLoop loop;
    loop.close();
    EXPECT_THROW(loop.create_future<int>(), corio::RuntimeError);
}

// --- result types --------------------------------------------------------------------------

TEST(Futures, VoidFutureSetResultAndAwait) {
    run_virtual([]() -> corio::Coro<> {
        auto& loop = corio::get_running_loop();
        auto start = loop.time();
        auto f = loop.create_future<void>();
        static_assert(std::is_void_v<corio::await_result_t<corio::Future<void>&>>);
        static_assert(std::is_void_v<decltype(f.result())>);
        EXPECT_THROW(f.result(), corio::InvalidStateError);
        loop.call_later(5ms, [f]() mutable { f.set_result(); });
        co_await f;
        EXPECT_EQ(loop.time() - start, corio::Duration(5ms));
        EXPECT_TRUE(f.done());
        EXPECT_NO_THROW(f.result());
        EXPECT_THROW(f.set_result(), corio::InvalidStateError);
    }());
}

TEST(Futures, VoidFutureExceptionPropagatesToAwaiter) {
    corio::run([]() -> corio::Coro<> {
        auto& loop = corio::get_running_loop();
        auto f = loop.create_future<void>();
        loop.call_soon([f]() mutable { f.set_exception(std::make_exception_ptr(Boom(2))); });
        bool caught = false;
        try {
            co_await f;
        } catch (const Boom& b) {
            caught = b.code == 2;
        }
        EXPECT_TRUE(caught);
    }());
}

namespace {

using UPtr = std::unique_ptr<int>;

corio::Coro<> await_unique(corio::Future<UPtr> f, std::vector<const UPtr*>* seen) {
    UPtr& r = co_await f;
    seen->push_back(&r);
    EXPECT_EQ(*r, 9);
}

}  // namespace

TEST(Futures, MoveOnlyResultIsAwaitedByReferenceByEveryAwaiter) {
    static_assert(std::is_same_v<corio::await_result_t<corio::Future<UPtr>&>, UPtr&>);
    static_assert(std::is_same_v<corio::await_result_t<const corio::Future<UPtr>&>, UPtr&>);
    std::vector<const UPtr*> seen;
    corio::run([](std::vector<const UPtr*>* seen) -> corio::Coro<> {
        auto f = corio::get_running_loop().create_future<UPtr>();
        auto a = corio::create_task(await_unique(f, seen));
        auto b = corio::create_task(await_unique(f, seen));
        co_await corio::sleep(0s);
        f.set_result(std::make_unique<int>(9));
        co_await a;
        co_await b;
        EXPECT_EQ(seen->size(), 2u);
        for (const UPtr* p : *seen) EXPECT_EQ(p, &f.result());  // the same object, not copies
        // The value can be moved out through the reference.
        UPtr& ref = co_await f;
        UPtr taken = std::move(ref);
        EXPECT_TRUE(taken != nullptr && *taken == 9);
        EXPECT_EQ(f.result(), nullptr);
    }(&seen));
    EXPECT_EQ(seen.size(), 2u);
}

// --- threads -------------------------------------------------------------------------------

TEST(Futures, SetFromAnotherThreadThroughCallSoonThreadsafeWakesTheAwaiter) {
    int v = corio::run([]() -> corio::Coro<int> {
        auto& loop = corio::get_running_loop();
        auto f = loop.create_future<int>();
        // The other thread touches only the loop; the future is used on the loop's thread.
        std::thread setter([&loop, &f] {
            std::this_thread::sleep_for(20ms);
            loop.call_soon_threadsafe([&f] { f.set_result(99); });
        });
        int r = 0;
        try {
            r = co_await f;
        } catch (...) {
            setter.join();
            throw;
        }
        setter.join();
        co_return r;
    }());
    EXPECT_EQ(v, 99);
}

// --- unretrieved exceptions --------------------------------------------------------------

TEST(Futures, UnretrievedExceptionIsReportedWhenLastHandleIsDropped) {
    corio::EventLoop loop;
    HandlerLog log;
    log.install(loop);
    {
        auto f = loop.create_future<int>();
        f.set_exception(std::make_exception_ptr(Boom(5)));
        { corio::Future<int> copy = f; }
        EXPECT_TRUE(log.reports.empty());  // a copy is still alive
    }
    ASSERT_EQ(log.reports.size(), 1u);
    EXPECT_EQ(log.reports[0].message, "Future exception was never retrieved");
    ASSERT_NE(log.reports[0].exception, nullptr);
    try {
        std::rethrow_exception(log.reports[0].exception);
    } catch (const Boom& b) {
        EXPECT_EQ(b.code, 5);
    }
}

TEST(Futures, ExceptionRetrievedByResultIsNotReported) {
    corio::EventLoop loop;
    HandlerLog log;
    log.install(loop);
    {
        auto f = loop.create_future<int>();
        f.set_exception(std::make_exception_ptr(Boom(5)));
        EXPECT_THROW(f.result(), Boom);
    }
    EXPECT_TRUE(log.reports.empty());
}

TEST(Futures, ExceptionRetrievedByExceptionIsNotReported) {
    corio::EventLoop loop;
    HandlerLog log;
    log.install(loop);
    {
        auto f = loop.create_future<int>();
        f.set_exception(std::make_exception_ptr(Boom(5)));
        EXPECT_NE(f.exception(), nullptr);
    }
    EXPECT_TRUE(log.reports.empty());
}

TEST(Futures, ExceptionRetrievedByAwaitIsNotReported) {
    corio::EventLoop loop;
    HandlerLog log;
    log.install(loop);
    bool caught = loop.run_until_complete([]() -> corio::Coro<bool> {
        auto& loop = corio::get_running_loop();
        auto f = loop.create_future<int>();
        loop.call_soon([f]() mutable { f.set_exception(std::make_exception_ptr(Boom(3))); });
        try {
            co_await f;
        } catch (const Boom&) {
            co_return true;
        }
        co_return false;
    }());
    EXPECT_TRUE(caught);
    EXPECT_TRUE(log.reports.empty());
    loop.close();
    EXPECT_TRUE(log.reports.empty());
}

TEST(Futures, CancelledOrSuccessfulFutureDroppedUnretrievedIsNotReported) {
    corio::EventLoop loop;
    HandlerLog log;
    log.install(loop);
    {
        auto a = loop.create_future<int>();
        a.cancel("x");
        auto b = loop.create_future<int>();
        b.set_result(1);
        auto c = loop.create_future<int>();  // never completed
    }
    EXPECT_TRUE(log.reports.empty());
}
