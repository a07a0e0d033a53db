// expect: a ProcessPoolExecutor job's arguments must mean the same in another process
#include <corio/process_pool.hpp>

int sum(const int* values, int n) {
    int s = 0;
    for (int i = 0; i < n; ++i) s += values[i];
    return s;
}

void f(corio::ProcessPoolExecutor& pool) {
    const int values[] = {1, 2, 3};
    (void)corio::run_in_executor(pool, sum, values, 3);  // an address of this process
}
