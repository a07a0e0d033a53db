// EventLoop::add_signal_handler / remove_signal_handler (asyncio's loop methods of the same
// names, CPython's test_unix_events signal tests where they apply).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <latch>
#include <thread>

#include "corio/testing.hpp"

using namespace std::chrono_literals;

namespace {

// The disposition of `sig` as a handler pointer (SIG_DFL, SIG_IGN or a function).
void (*disposition(int sig))(int) {
    struct sigaction current {};
    ::sigaction(sig, nullptr, &current);
    return current.sa_handler;
}

}  // namespace

CORIO_TEST(Signals, HandlerRunsOnTheLoopThreadWhenTheSignalArrives) {
    corio::EventLoop& loop = corio::get_running_loop();
    const std::thread::id loop_thread = std::this_thread::get_id();
    std::thread::id ran_on;
    corio::Event got;
    loop.add_signal_handler(SIGUSR1, [&] {
        ran_on = std::this_thread::get_id();
        got.set();
    });
    std::raise(SIGUSR1);
    co_await got.wait();
    EXPECT_EQ(ran_on, loop_thread);
    EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
}

CORIO_TEST(Signals, HandlerGetsItsArguments) {
    corio::EventLoop& loop = corio::get_running_loop();
    int received = 0;
    corio::Event got;
    loop.add_signal_handler(
        SIGUSR2,
        [&](int sig) {
            received = sig;
            got.set();
        },
        SIGUSR2);
    std::raise(SIGUSR2);
    co_await got.wait();
    EXPECT_EQ(received, SIGUSR2);
    loop.remove_signal_handler(SIGUSR2);
}

CORIO_TEST(Signals, SignalFromAnotherThreadWakesAnIdleLoop) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Event got;
    loop.add_signal_handler(SIGUSR1, [&] { got.set(); });
    std::thread sender([] {
        std::this_thread::sleep_for(10ms);
        ::kill(::getpid(), SIGUSR1);
    });
    co_await got.wait();  // the loop sleeps in the backend until the signal wakes it
    sender.join();
    EXPECT_TRUE(got.is_set());
    loop.remove_signal_handler(SIGUSR1);
}

CORIO_TEST(Signals, EachDeliveryRunsTheHandlerAgain) {
    corio::EventLoop& loop = corio::get_running_loop();
    int hits = 0;
    loop.add_signal_handler(SIGUSR1, [&] { ++hits; });
    for (int i = 0; i < 3; ++i) {
        std::raise(SIGUSR1);
        for (int pass = 0; pass < 5 && hits == i; ++pass) co_await corio::sleep(1ms);
    }
    EXPECT_EQ(hits, 3);
    loop.remove_signal_handler(SIGUSR1);
}

CORIO_TEST(Signals, SecondAddReplacesTheHandler) {
    corio::EventLoop& loop = corio::get_running_loop();
    int first = 0;
    int second = 0;
    corio::Event got;
    loop.add_signal_handler(SIGUSR1, [&] { ++first; });
    loop.add_signal_handler(SIGUSR1, [&] {
        ++second;
        got.set();
    });
    std::raise(SIGUSR1);
    co_await got.wait();
    EXPECT_EQ(first, 0);
    EXPECT_EQ(second, 1);
    loop.remove_signal_handler(SIGUSR1);
}

CORIO_TEST(Signals, RemoveRestoresThePreviousDisposition) {
    corio::EventLoop& loop = corio::get_running_loop();
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction saved {};
    ::sigaction(SIGUSR2, &ignore, &saved);
    loop.add_signal_handler(SIGUSR2, [] {});
    EXPECT_NE(disposition(SIGUSR2), SIG_IGN);
    EXPECT_TRUE(loop.remove_signal_handler(SIGUSR2));
    EXPECT_EQ(disposition(SIGUSR2), SIG_IGN);
    EXPECT_FALSE(loop.remove_signal_handler(SIGUSR2));
    ::sigaction(SIGUSR2, &saved, nullptr);
    co_return;
}

CORIO_TEST(Signals, RemovedHandlerNoLongerRuns) {
    corio::EventLoop& loop = corio::get_running_loop();
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction saved {};
    ::sigaction(SIGUSR1, &ignore, &saved);  // what remove restores: the signal is then harmless
    int hits = 0;
    loop.add_signal_handler(SIGUSR1, [&] { ++hits; });
    loop.remove_signal_handler(SIGUSR1);
    std::raise(SIGUSR1);
    co_await corio::sleep(5ms);
    EXPECT_EQ(hits, 0);
    ::sigaction(SIGUSR1, &saved, nullptr);
}

CORIO_TEST(Signals, InvalidSignalNumbersAreValueErrors) {
    corio::EventLoop& loop = corio::get_running_loop();
    EXPECT_THROW(loop.add_signal_handler(0, [] {}), corio::ValueError);
    EXPECT_THROW(loop.add_signal_handler(-1, [] {}), corio::ValueError);
    EXPECT_THROW(loop.add_signal_handler(NSIG, [] {}), corio::ValueError);
    EXPECT_THROW(loop.remove_signal_handler(NSIG + 5), corio::ValueError);
    co_return;
}

CORIO_TEST(Signals, UncatchableSignalsAreOSErrors) {
    corio::EventLoop& loop = corio::get_running_loop();
    EXPECT_THROW(loop.add_signal_handler(SIGKILL, [] {}), corio::OSError);
    EXPECT_THROW(loop.add_signal_handler(SIGSTOP, [] {}), corio::OSError);
    EXPECT_FALSE(loop.remove_signal_handler(SIGKILL));
    co_return;
}

TEST(Signals, ASignalBelongsToOneLoopAtATime) {
    corio::EventLoop first;
    first.add_signal_handler(SIGUSR1, [] {});
    corio::EventLoop second;
    EXPECT_THROW(second.add_signal_handler(SIGUSR1, [] {}), corio::RuntimeError);
    first.close();  // closing removes its handlers: the signal is free again
    second.add_signal_handler(SIGUSR1, [] {});
    EXPECT_TRUE(second.remove_signal_handler(SIGUSR1));
}

TEST(Signals, CloseRestoresTheDispositions) {
    const auto before = disposition(SIGUSR2);
    {
        corio::EventLoop loop;
        loop.add_signal_handler(SIGUSR2, [] {});
        EXPECT_NE(disposition(SIGUSR2), before);
    }
    EXPECT_EQ(disposition(SIGUSR2), before);
}

TEST(Signals, AddingToAClosedLoopIsARuntimeError) {
    corio::EventLoop loop;
    loop.close();
    EXPECT_THROW(loop.add_signal_handler(SIGUSR1, [] {}), corio::RuntimeError);
}

CORIO_TEST(Signals, AnExceptionInTheHandlerIsReportedAndTheLoopGoesOn) {
    corio::EventLoop& loop = corio::get_running_loop();
    std::string reported;
    loop.set_exception_handler([&](corio::EventLoop&, const corio::ExceptionContext& ctx) {
        reported = corio::describe(ctx.exception);
    });
    loop.add_signal_handler(SIGUSR1, [] { throw std::runtime_error("in the handler"); });
    std::raise(SIGUSR1);
    for (int pass = 0; pass < 20 && reported.empty(); ++pass) co_await corio::sleep(1ms);
    EXPECT_NE(reported.find("in the handler"), std::string::npos);
    loop.remove_signal_handler(SIGUSR1);
}
