// Testing code written with corio: the examples of docs/testing.md, as a GoogleTest program
// linked with corio::testing. Each test body is a coroutine run on a fresh loop; the harness
// fails the test if the body leaves a task, an unretrieved exception, a descriptor or a pending
// callback behind.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "corio/testing.hpp"

using namespace std::chrono_literals;

namespace {

// --- the code under test -----------------------------------------------------------------------

class Unavailable : public corio::Error {
  public:
    using corio::Error::Error;
};

// Calls `attempt` until it succeeds, waiting 100 ms, 200 ms, 400 ms, ... between attempts, and
// gives up after `attempts` tries by rethrowing the last failure.
template <class F>
corio::Coro<std::string> retry(F attempt, int attempts) {
    corio::Duration pause = 100ms;
    for (int i = 1;; ++i) {
        try {
            co_return co_await attempt();
        } catch (const Unavailable&) {
            if (i == attempts) throw;
        }
        co_await corio::sleep(pause);
        pause *= 2;
    }
}

// A tiny server: answers each request from `requests` on `replies`, and drops a client that
// stays silent for 30 s.
struct Connection {
    corio::Queue<std::string> requests;
    corio::Queue<std::string> replies;
};

corio::Coro<> serve(Connection& c) {
    for (;;) {
        std::string request;
        bool idle = false;
        try {
            request = co_await corio::wait_for(c.requests.get(), 30s);
        } catch (const corio::TimeoutError&) {
            idle = true;  // (no co_await inside a catch block: C++ forbids it)
        }
        if (idle) {
            co_await c.replies.put("bye: idle");
            co_return;
        }
        co_await c.replies.put("echo: " + request);
    }
}

}  // namespace

// --- a retry loop, on the virtual clock: exact times, no waiting -------------------------------

CORIO_TEST_WITH(Retry, BacksOffExponentiallyThenSucceeds,
                {.virtual_clock = corio::VirtualClock{}}) {
    corio::EventLoop& loop = corio::get_running_loop();
    std::vector<corio::Duration> attempted_at;
    const corio::TimePoint start = loop.time();
    auto flaky = [&]() -> corio::Coro<std::string> {
        attempted_at.push_back(loop.time() - start);
        if (attempted_at.size() < 4) throw Unavailable("try again");
        co_return "ok";
    };
    EXPECT_EQ(co_await retry(flaky, 5), "ok");
    const std::vector<corio::Duration> expected = {0ms, 100ms, 300ms, 700ms};
    EXPECT_EQ(attempted_at, expected);
}

CORIO_TEST_WITH(Retry, GivesUpAfterTheLastAttempt, {.virtual_clock = corio::VirtualClock{}}) {
    int calls = 0;
    auto down = [&]() -> corio::Coro<std::string> {
        ++calls;
        throw Unavailable("down");
        co_return "";
    };
    bool gave_up = false;
    try {
        co_await retry(down, 3);
    } catch (const Unavailable&) {
        gave_up = true;
    }
    EXPECT_TRUE(gave_up);
    EXPECT_EQ(calls, 3);
}

// --- a timeout: an hour-long wait_for in microseconds ------------------------------------------

CORIO_TEST_WITH(Timeouts, AnHourLongDeadlineExpiresExactlyOnTime,
                {.virtual_clock = corio::VirtualClock{}}) {
    corio::EventLoop& loop = corio::get_running_loop();
    const corio::TimePoint start = loop.time();
    corio::Event never;
    bool timed_out = false;
    try {
        co_await corio::wait_for(never.wait(), 1h);
    } catch (const corio::TimeoutError&) {
        timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(loop.time() - start, corio::Duration(1h));
}

// --- a server: its replies, and its idle timeout ------------------------------------------------

CORIO_TEST_WITH(Server, EchoesEachRequestThenDropsAnIdleClient,
                {.virtual_clock = corio::VirtualClock{}}) {
    corio::EventLoop& loop = corio::get_running_loop();
    Connection c;
    corio::Task<> server = corio::create_task(serve(c), "server");

    co_await c.requests.put("hello");
    EXPECT_EQ(co_await c.replies.get(), "echo: hello");
    co_await corio::sleep(29s);  // silent, but not for long enough
    co_await c.requests.put("still here");
    EXPECT_EQ(co_await c.replies.get(), "echo: still here");

    const corio::TimePoint silent_from = loop.time();
    EXPECT_EQ(co_await c.replies.get(), "bye: idle");
    EXPECT_EQ(loop.time() - silent_from, corio::Duration(30s));
    co_await server;  // the server task must have ended, or the harness fails the test
}

// --- real I/O on the virtual clock: the autojump threshold ------------------------------------

// Reads one message from a non-blocking descriptor, waiting with add_reader.
corio::Coro<std::string> read_message(int fd) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Future<std::string> message = loop.create_future<std::string>();
    loop.add_reader(fd, [&] {
        char buf[256];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        loop.remove_reader(fd);
        message.set_result(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
    });
    try {
        co_return co_await message;
    } catch (...) {
        loop.remove_reader(fd);  // cancelled (e.g. by a timeout): stop watching
        throw;
    }
}

// The peer is another thread that answers after 5 ms of real time. With an autojump threshold
// of 5 s the loop waits up to that long for I/O before it lets virtual time jump to the 10 s
// deadline, so the real reply arrives first, even on a slow machine; the wait ends as soon as
// the reply is there, so a generous threshold costs nothing.
CORIO_TEST_WITH(RealIo, AReplyWithinTheThresholdBeatsAVirtualDeadline,
                {.virtual_clock = corio::VirtualClock{.autojump_threshold = 5s}}) {
    int fds[2];
    CORIO_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    std::thread peer([fd = fds[1]] {
        std::this_thread::sleep_for(5ms);
        const char reply[] = "pong";
        (void)!::write(fd, reply, std::strlen(reply));
    });
    std::string reply;
    try {
        reply = co_await corio::wait_for(read_message(fds[0]), 10s);
    } catch (const corio::TimeoutError&) {
        reply = "timed out";
    }
    peer.join();
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_EQ(reply, "pong");
}
