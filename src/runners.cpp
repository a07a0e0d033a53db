#include "corio/runners.hpp"

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>

#include "corio/coro.hpp"
#include "crash.hpp"

namespace corio {
namespace {

// The loop whose run() owns SIGINT right now. A signal handler can only reach it through a
// global; only one run() on the main thread can own it at a time.
std::atomic<EventLoop*> g_sigint_loop{nullptr};

extern "C" void on_sigint(int) {
    if (EventLoop* loop = g_sigint_loop.load()) detail::LoopAccess::notify_sigint(*loop);
}

Coro<> wait_all(std::vector<AnyTask> tasks) {
    detail::MultiWait all(detail::cores_of(tasks), detail::MultiWait::Until::AllCompleted,
                          detail::MultiWait::OnCancel::Raise);
    co_await all.wait();
}

}  // namespace

struct Runner::SigintScope::Saved {
    struct sigaction action;
};

Runner::SigintScope::SigintScope(EventLoop& loop, AnyTask main, bool enabled) : loop_(loop) {
    if (!enabled || ::getpid() != ::gettid()) return;
    struct sigaction current {};
    if (::sigaction(SIGINT, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) return;
    EventLoop* expected = nullptr;
    if (!g_sigint_loop.compare_exchange_strong(expected, &loop)) return;
    detail::LoopAccess::set_sigint_callback(loop, [this, main]() mutable {
        interrupted_ = true;
        if (!main.done()) main.cancel();
    });
    saved_ = new Saved{current};
    struct sigaction action {};
    action.sa_handler = &on_sigint;
    sigemptyset(&action.sa_mask);
    // The first SIGINT cancels the main task; the handler then reverts to the default, so a
    // second one ends a program that does not stop.
    action.sa_flags = SA_RESETHAND | SA_RESTART;
    ::sigaction(SIGINT, &action, nullptr);
    installed_ = true;
}

Runner::SigintScope::~SigintScope() {
    if (!installed_) return;
    ::sigaction(SIGINT, &saved_->action, nullptr);
    delete saved_;
    g_sigint_loop.store(nullptr);
    detail::LoopAccess::set_sigint_callback(loop_, nullptr);
}

Runner::~Runner() {
    try {
        close();
    } catch (...) {
        detail::print_exception_context(
            ExceptionContext{"error while closing a Runner", std::current_exception(), {}, {}});
    }
}

EventLoop& Runner::get_loop() {
    if (closed_) throw RuntimeError("Runner is closed");
    if (detail::crash_handler_wanted(options_.crash_handler ? &*options_.crash_handler : nullptr))
        detail::install_crash_handler();
    if (!loop_)
        loop_.emplace(LoopOptions{.backend = options_.backend,
                                  .debug = options_.debug,
                                  .virtual_clock = options_.virtual_clock,
                                  .watchdog = options_.watchdog,
                                  .monitor = options_.monitor});
    return *loop_;
}

void Runner::check_can_run() {
    if (detail::t_state.running_loop != nullptr)
        throw RuntimeError("Runner.run() cannot be called from a running event loop");
    if (closed_) throw RuntimeError("Runner is closed");
}

void Runner::close() {
    if (closed_) return;
    closed_ = true;
    if (!loop_) return;
    struct CloseLoop {
        std::optional<EventLoop>& loop;
        ~CloseLoop() { loop->close(); }
    } closer{loop_};
    cancel_all_tasks();
    loop_->run_until_complete(loop_->shutdown_default_executor());  // as asyncio.run()
}

void Runner::cancel_all_tasks() {
    std::vector<AnyTask> pending;
    for (detail::FutureCore* c : detail::LoopAccess::cores(*loop_)) {
        if (c->kind == detail::FutureCore::Kind::Task && !c->done()) {
            pending.emplace_back(static_cast<detail::TaskCore*>(c));
        }
    }
    if (pending.empty()) return;
    for (auto& t : pending) t.cancel();
    loop_->run_until_complete(wait_all(pending));
    for (auto& t : pending) {
        if (t.cancelled()) continue;
        if (std::exception_ptr e = t.core()->take_exception()) {
            loop_->call_exception_handler(ExceptionContext{
                "unhandled exception during corio::run() shutdown", e, t.get_name(), t.get_coro()});
        }
    }
}

}  // namespace corio
