// expect: is not awaitable
#include <corio/corio.hpp>

corio::Coro<> f() {
    co_await corio::shield(7);
}
