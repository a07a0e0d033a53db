// expect: a ProcessPoolExecutor job's result must be void or mean the same in another process
#include <corio/process_pool.hpp>

const char* name_of(int code) {
    return code == 0 ? "ok" : "error";
}

void f(corio::ProcessPoolExecutor& pool) {
    (void)corio::run_in_executor(pool, name_of, 0);  // an address in the worker process
}
