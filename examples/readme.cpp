#include <corio/corio.hpp>

#include <chrono>

using namespace std::chrono_literals;

corio::Coro<int> answer(std::chrono::milliseconds delay) {
    co_await corio::sleep(delay);
    co_return 42;
}

corio::Coro<int> amain() {
    auto task = corio::create_task(answer(20ms));  // starts running concurrently
    auto [a, b] = co_await corio::gather(answer(10ms), answer(10ms));
    co_return a + b + co_await task;  // about 20 ms in all, not 40
}

int main() {
    return corio::run(amain()) == 3 * 42 ? 0 : 1;
}
