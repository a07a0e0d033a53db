// expect: a ProcessPoolExecutor job cannot capture state
#include <corio/process_pool.hpp>

void f(corio::ProcessPoolExecutor& pool) {
    int base = 40;
    auto add = [base](int x) { return base + x; };  // the worker process has no `base`
    (void)corio::run_in_executor(pool, add, 2);
}
