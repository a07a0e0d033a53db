// Child processes (guide section 10): communicate, streaming a child's output line by line, exit
// statuses, signals, and the error for a missing program.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

corio::Coro<> amain() {
    // Input in, output out, both at once: no deadlock however much flows each way.
    corio::Process sort =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "sort");
    auto [sorted, ignored] = co_await sort.communicate("pear\napple\nfig\n");
    std::printf("sort: %s", sorted.c_str());
    std::printf("sort exited with %d\n", *sort.returncode());

    // A child's output as it comes, line by line; its stderr merged into stdout.
    corio::Process sh = co_await corio::create_subprocess_shell(
        "for i in 1 2 3; do echo line $i; done; echo oops >&2; exit 3",
        {.out = corio::PIPE, .err = corio::STDOUT});
    for (;;) {
        std::string line = co_await sh.out().readline();
        if (line.empty()) break;  // end of stream: the child closed its stdout
        std::printf("shell said: %s", line.c_str());
    }
    std::printf("shell exited with %d\n", co_await sh.wait());

    // Arguments are passed as they are, without a shell: spaces and quotes included.
    std::vector<std::string> words{"two words", "it's"};
    corio::Process echo =
        co_await corio::create_subprocess_exec({.out = corio::PIPE}, "printf", "[%s]\n", words);
    auto [echoed, unused] = co_await echo.communicate();
    std::printf("%s", echoed.c_str());

    // Signals: a killed child's returncode is minus the signal number, as in Python.
    corio::Process sleeper = co_await corio::create_subprocess_exec("sleep", "60");
    sleeper.terminate();
    std::printf("sleep was stopped by signal %d\n", -co_await sleeper.wait());

    // A program that cannot be run is an error that names it.
    try {
        co_await corio::create_subprocess_exec("no-such-program", "--help");
    } catch (const corio::FileNotFoundError& e) {
        std::printf("FileNotFoundError: %s\n", e.what());
    }

    // Cancelled while waiting: the Process goes out of scope, which kills the child; the loop
    // reaps it, so no zombie is left behind.
    auto waiter = [](pid_t& pid) -> corio::Coro<> {
        corio::Process p = co_await corio::create_subprocess_exec("sleep", "60");
        pid = p.pid();
        co_await p.wait();
    };
    pid_t pid = 0;
    auto task = corio::create_task(waiter(pid));
    co_await corio::sleep(50ms);
    task.cancel();
    try {
        co_await task;
    } catch (const corio::CancelledError&) {
    }
    while (::kill(pid, 0) == 0) co_await corio::sleep(10ms);  // until it is reaped
    std::printf("the cancelled task's child is gone\n");
}

int main() {
    corio::run(amain());
}
