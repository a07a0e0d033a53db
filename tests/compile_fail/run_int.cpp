// expect: is not awaitable
#include <corio/corio.hpp>

int main() {
    corio::run(42);
}
