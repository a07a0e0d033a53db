// expect: is not awaitable
// gather() of plain values must say what it expected.
#include <corio/corio.hpp>

corio::Coro<> f() {
    co_await corio::gather(1, 2);
}
