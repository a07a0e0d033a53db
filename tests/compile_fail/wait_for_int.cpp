// expect: is not awaitable
#include <corio/corio.hpp>

#include <chrono>

corio::Coro<> f() {
    co_await corio::wait_for(42, std::chrono::seconds(1));
}
