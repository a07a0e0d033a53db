// expect: task_group needs a callable taking corio::TaskGroup&
#include <corio/corio.hpp>

corio::Coro<> f() {
    co_await corio::task_group(42);
}
