// expect: corio::timeout needs a body that is awaitable
#include <corio/corio.hpp>

#include <chrono>

corio::Coro<> f() {
    co_await corio::timeout(std::chrono::seconds(1), 42);
}
