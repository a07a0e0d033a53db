// Checks on exceptions that several test files share (what a test awaited raised, and of what
// kind). Header only, included by the test files that use it.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <string>

#include "corio/corio.hpp"

namespace corio_test {

// What awaiting `aw` raised (CancelledError included), or null. `aw` is awaited as an lvalue:
// awaiting a Task by rvalue would move its result out of the shared task.
template <class A>
corio::Coro<std::exception_ptr> raised_by(A aw) {
    std::exception_ptr error;
    try {
        co_await aw;
    } catch (...) {
        error = std::current_exception();
    }
    co_return error;
}

// Whether `e` holds an E; on failure, says what it holds.
template <class E>
::testing::AssertionResult is_a(const std::exception_ptr& e) {
    if (corio::holds<E>(e)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "raised " << (e ? corio::describe(e) : std::string("nothing"));
}

// The OSError code `e` holds; -1 when it holds no OSError (or nothing).
inline int os_code(const std::exception_ptr& e) {
    if (!e) return -1;
    try {
        std::rethrow_exception(e);
    } catch (const corio::OSError& x) {
        return x.code();
    } catch (...) {
        return -1;
    }
}

}  // namespace corio_test
