// corio::run() and corio::Runner: the way into corio from main() (asyncio.run, asyncio.Runner).
//
//     corio::Coro<int> amain() { co_await corio::sleep(1s); co_return 0; }
//     int main() { return corio::run(amain()); }
//
// run() creates a loop, runs the coroutine as the main task, then cancels the tasks left over
// and waits for them, closes the loop, and returns the main task's result or rethrows its
// exception. While it runs, the first SIGINT (Ctrl-C) cancels the main task and run() then
// throws corio::Interrupted; a second SIGINT gets the default action (the process ends).
// Runner does the same for several run() calls on one loop.
#pragma once

#include <optional>
#include <utility>

#include "corio/coro.hpp"
#include "corio/events.hpp"
#include "corio/tasks.hpp"

namespace corio {

struct RunOptions {
    // Debug mode; when unset, CORIO_DEBUG=1 in the environment turns it on.
    std::optional<bool> debug{};
    BackendKind backend = BackendKind::Auto;
    // Turn SIGINT into cancellation of the main task (only on the main thread, and only while
    // SIGINT has its default disposition, as asyncio does).
    bool handle_sigint = true;
    // A virtual clock for tests (see VirtualClock); when unset, CORIO_VIRTUAL_CLOCK decides.
    std::optional<VirtualClock> virtual_clock{};
    // The watchdog (see WatchdogOptions); when unset, CORIO_WATCHDOG=<ms> or debug mode decide.
    std::optional<WatchdogOptions> watchdog{};
    // The monitor endpoint for corio-ps (see LoopOptions::monitor).
    std::optional<bool> monitor{};
    // Crash reports: when the process dies of SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT or
    // std::terminate, stderr shows the running task, its await chain and the native stack, and
    // the process then dies of that signal as it would have. Unset: on, unless
    // CORIO_CRASH_HANDLER=0. Installed once per process; handlers installed before are chained.
    std::optional<bool> crash_handler{};
};

class Runner {
  public:
    explicit Runner(RunOptions options = {}) : options_(std::move(options)) {}
    ~Runner();
    Runner(const Runner&) = delete;
    Runner& operator=(const Runner&) = delete;

    // Runs `main` to completion on the runner's loop; returns its result or rethrows.
    template <Awaitable A>
    run_result_t<A> run(A&& main);
    template <detail::NotAwaitable A>
    void run(A&&) {
        detail::reject_non_awaitable<A>();
    }

    // The runner's loop (created on first use).
    EventLoop& get_loop();
    // Cancels the tasks left, waits for them, and closes the loop. Idempotent.
    void close();

  private:
    // Installs the SIGINT handler for one run(), and restores the previous one.
    class SigintScope {
      public:
        SigintScope(EventLoop& loop, AnyTask main, bool enabled);
        ~SigintScope();
        bool interrupted() const noexcept { return interrupted_; }

      private:
        EventLoop& loop_;
        bool installed_ = false;
        bool interrupted_ = false;
        struct Saved;
        Saved* saved_ = nullptr;
    };

    void check_can_run();
    void cancel_all_tasks();

    RunOptions options_;
    std::optional<EventLoop> loop_;
    bool closed_ = false;
};

template <Awaitable A>
run_result_t<A> Runner::run(A&& main) {
    check_can_run();
    EventLoop& loop = get_loop();
    auto task = loop.create_task(std::forward<A>(main));
    SigintScope sigint(loop, task, options_.handle_sigint);
    try {
        return loop.run_until_complete(task);
    } catch (const CancelledError&) {
        if (sigint.interrupted() && task.uncancel() == 0) throw Interrupted();
        throw;
    }
}

// Runs `main` on a new loop and closes the loop; see the top of this file.
template <Awaitable A>
run_result_t<A> run(A&& main, RunOptions options = {}) {
    Runner runner(options);
    return runner.run(std::forward<A>(main));
}
template <detail::NotAwaitable A>
void run(A&&, RunOptions = {}) {
    detail::reject_non_awaitable<A>();
}

}  // namespace corio
