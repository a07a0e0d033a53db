// expect: is not awaitable
// create_task() takes something to run; a plain value must be rejected up front.
#include <corio/corio.hpp>

void f() {
    corio::create_task(42);
}
