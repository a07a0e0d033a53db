// expect: a ProcessPoolExecutor job must be callable with its arguments as rvalues
#include <corio/process_pool.hpp>

#include <string>

void append_suffix(std::string& s) {
    s += "!";
}

void f(corio::ProcessPoolExecutor& pool) {
    std::string s = "hello";
    (void)corio::run_in_executor(pool, append_suffix, s);  // the change would stay in the worker
}
