// The watchdog (docs/debugging.md): a task blocks the loop for 1.5 s; the watchdog reports it
// after 1 s, while it is still blocked, then the stall's total. The reports go to stderr.
#include <chrono>
#include <thread>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

void deep_blocking_call() {
    std::this_thread::sleep_for(1500ms);
}

corio::Coro<> inner() {
    co_await corio::sleep(1ms);
    deep_blocking_call();
    co_await corio::sleep(1ms);
}

corio::Coro<> worker() {
    co_await inner();
}

corio::Coro<> amain() {
    co_await corio::create_task(worker(), "worker");
}

int main() {
    corio::run(amain(), {.watchdog = corio::WatchdogOptions{}});
}
