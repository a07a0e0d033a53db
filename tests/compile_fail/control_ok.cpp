// Positive control for the compile_fail harness: this must compile, so a compile error in the
// other cases means the misuse was rejected, not that the harness itself is broken.
#include <corio/corio.hpp>

corio::Coro<int> f() {
    co_return 1;
}

int main() {}
