// expect: is not awaitable
// co_await on a plain value must be rejected with a readable message, not a template backtrace.
#include <corio/corio.hpp>

corio::Coro<> f() {
    co_await 42;
}
