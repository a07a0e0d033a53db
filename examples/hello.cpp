// hello: the smallest useful corio program.
//
// The Python it mirrors:
//
//     async def greet(who, delay, log):
//         await asyncio.sleep(delay)
//         log.append(who)
//         return f"hello, {who}"
//
//     async def main():
//         log = []
//         results = await asyncio.gather(greet("world", 0.03, log), greet("corio", 0.02, log),
//                                        greet("asyncio", 0.01, log))
//
//     asyncio.run(main())
//
// The example checks what it shows and exits non-zero if corio got anything wrong.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

// A coroutine (Python's `async def`): it returns a corio::Coro<T>, and uses co_await/co_return.
// Calling greet(...) runs nothing yet; it runs when it is awaited or wrapped in a task.
corio::Coro<std::string> greet(std::string who, std::chrono::milliseconds delay,
                               std::vector<std::string>& finished) {
    // Suspends this coroutine only; the loop runs the others meanwhile. (A blocking
    // std::this_thread::sleep_for here would stop all of them: the time.sleep bug.)
    co_await corio::sleep(delay);
    finished.push_back(who);
    co_return "hello, " + who;
}

corio::Coro<int> amain() {
    corio::EventLoop& loop = corio::get_running_loop();
    const corio::TimePoint start = loop.time();
    std::vector<std::string> finished;  // who finished, in order

    // gather() turns each coroutine into a task, so all three wait at the same time, and
    // returns their results in the order they were given, whatever order they finish in.
    auto [a, b, c] =
        co_await corio::gather(greet("world", 30ms, finished), greet("corio", 20ms, finished),
                               greet("asyncio", 10ms, finished));
    const auto elapsed = std::chrono::duration<double, std::milli>(loop.time() - start);

    std::printf("%s / %s / %s\n", a.c_str(), b.c_str(), c.c_str());
    std::printf("finished first: %s, then %s, then %s; total %.1f ms\n", finished.at(0).c_str(),
                finished.at(1).c_str(), finished.at(2).c_str(), elapsed.count());

    // Self-checks. Results come back in argument order...
    if (a != "hello, world" || b != "hello, corio" || c != "hello, asyncio") co_return 1;
    // ...but the shortest sleep finished first: the three really ran side by side (awaited one
    // after another, "world" would have finished first).
    if (finished.size() != 3 || finished[0] != "asyncio" || finished[1] != "corio" ||
        finished[2] != "world") {
        co_return 1;
    }
    // A sleep never ends early: the whole gather took at least the longest sleep.
    if (elapsed < 30ms) co_return 1;
    co_return 0;
}

int main() {
    // corio::run() is asyncio.run(): a fresh loop, run amain() to the end, clean up, close the
    // loop, and return amain()'s result (or rethrow its exception).
    return corio::run(amain());
}
