// corio::testing: run coroutine test bodies from GoogleTest (the `corio::testing` CMake target,
// which links GoogleTest; the corio library itself does not).
//
//     #include <corio/testing.hpp>
//
//     CORIO_TEST(Retry, GivesUpAfterThreeAttempts) {          // a TEST whose body is a Coro
//         int attempts = 0;
//         EXPECT_THROW(co_await retry(flaky(attempts), 3), corio::TimeoutError);
//         EXPECT_EQ(attempts, 3);
//     }
//
//     CORIO_TEST_WITH(Cache, ExpiresAfterAnHour, {.virtual_clock = corio::VirtualClock{}}) {
//         ...                                                   // an hour passes in microseconds
//     }
//
// Each body runs on a fresh event loop, and the test fails, naming the culprit, when the body
//   - raises (the exception is described), or runs past Options::timeout (it is cancelled);
//   - leaves a task running (each is named, with its coroutine; they are then cancelled);
//   - leaves an exception nobody retrieved (reported by the loop's exception handler);
//   - leaves a file descriptor open that it opened;
//   - leaves callbacks scheduled, timers armed, or descriptors watched on the loop.
//
// GoogleTest's ASSERT_* macros `return`, which a coroutine cannot; use EXPECT_*, or
// CORIO_ASSERT(condition), which records a failure and ends the body.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/corio.hpp"

namespace corio::testing {

struct Options {
    // Runs the body on a virtual clock (see corio::VirtualClock); unset: real time, unless
    // CORIO_VIRTUAL_CLOCK is set in the environment.
    std::optional<VirtualClock> virtual_clock{};
    // Cancels the body and fails the test once it has run this long in loop time (virtual time
    // under a virtual clock). Unset: no limit.
    std::optional<Duration> timeout{};
    BackendKind backend = BackendKind::Auto;
    std::optional<bool> debug{};
    // The checks after the body; turn one off only for a test that means to leave that behind.
    bool check_tasks = true;
    bool check_exceptions = true;
    bool check_descriptors = true;
    bool check_callbacks = true;
};

// Thrown by CORIO_ASSERT to end a test body after recording the failure; run() expects it.
struct AssertionAbort {};

namespace detail {

// The body's loop, checks and reports; `make_task` creates the body's task on the loop.
void run_checked(const Options& options, const std::function<AnyTask(EventLoop&)>& make_task);

}  // namespace detail

// Runs `body` (a Coro or any awaitable) as the main task of a fresh loop and checks what it left
// behind (see the header comment), recording GoogleTest failures.
template <Awaitable A>
void run(A&& body, Options options = {}) {
    std::optional<std::remove_cvref_t<A>> held;
    held.emplace(std::forward<A>(body));
    detail::run_checked(options, [&held](EventLoop& loop) -> AnyTask {
        return loop.create_task(std::move(*held), "test body");
    });
}

}  // namespace corio::testing

// Records a failure and ends the test body when `condition` is false.
#define CORIO_ASSERT(condition)                                     \
    do {                                                            \
        if (!(condition)) {                                         \
            ADD_FAILURE() << "CORIO_ASSERT(" #condition ") failed"; \
            throw ::corio::testing::AssertionAbort{};               \
        }                                                           \
    } while (false)

// A GoogleTest test whose body is a corio::Coro<>, run by corio::testing::run().
#define CORIO_TEST(suite, name) CORIO_TEST_WITH(suite, name, {})

// The same with corio::testing::Options, e.g. {.virtual_clock = corio::VirtualClock{}}.
#define CORIO_TEST_WITH(suite, name, ...)                             \
    static ::corio::Coro<> corio_test_body_##suite##_##name();        \
    TEST(suite, name) {                                               \
        ::corio::testing::run(corio_test_body_##suite##_##name(),     \
                              ::corio::testing::Options __VA_ARGS__); \
    }                                                                 \
    static ::corio::Coro<> corio_test_body_##suite##_##name()
