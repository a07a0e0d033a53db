// expect: takes a Coro by value
// A Coro runs once: create_task must consume it, so an lvalue needs an explicit std::move.
#include <corio/corio.hpp>

corio::Coro<int> g() {
    co_return 1;
}

corio::Coro<> f() {
    auto c = g();
    corio::create_task(c);
    co_return;
}
