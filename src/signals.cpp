// EventLoop::add_signal_handler / remove_signal_handler: signals delivered on the loop's thread.
//
// A C signal handler may only do async-signal-safe things, so it marks the signal pending and
// wakes the owning loop (an eventfd write). The loop, back from polling, queues the callbacks of
// the signals that arrived. Several deliveries before the loop gets to them run the callback
// once, as with asyncio.
#include <signal.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <string>

#include "corio/events.hpp"

namespace corio {
namespace {

std::array<std::atomic<EventLoop*>, NSIG> g_owner{};  // the loop handling each signal
std::array<std::atomic<bool>, NSIG> g_pending{};      // delivered, not yet dispatched
std::array<struct sigaction, NSIG> g_previous{};      // to restore; guarded by g_mutex
std::mutex g_mutex;

extern "C" void on_signal(int sig) {
    const int saved_errno = errno;  // a signal handler must leave errno as it found it
    g_pending[static_cast<std::size_t>(sig)].store(true);
    if (EventLoop* loop = g_owner[static_cast<std::size_t>(sig)].load())
        detail::LoopAccess::notify_signal(*loop);
    errno = saved_errno;
}

void check_signal_number(int sig) {
    if (sig <= 0 || sig >= NSIG) throw ValueError("invalid signal number " + std::to_string(sig));
}

}  // namespace

void EventLoop::add_signal_function(int sig, std::function<void()> fn) {
    check_open();
    check_signal_number(sig);
    const auto i = static_cast<std::size_t>(sig);
    std::lock_guard lock(g_mutex);
    EventLoop* owner = g_owner[i].load();
    if (owner != nullptr && owner != this)
        throw RuntimeError("signal " + std::to_string(sig) + " is handled by another event loop");
    if (owner == nullptr) {
        struct sigaction action {};
        action.sa_handler = &on_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;  // system calls of other threads are not cut short
        g_pending[i].store(false);
        g_owner[i].store(this);
        if (::sigaction(sig, &action, &g_previous[i]) != 0) {
            const int err = errno;
            g_owner[i].store(nullptr);
            throw_os_error(err, "sigaction(" + std::to_string(sig) + ")");
        }
    }
    signal_handlers_[sig] = std::make_shared<std::function<void()>>(std::move(fn));
}

bool EventLoop::remove_signal_handler(int sig) {
    check_signal_number(sig);
    auto it = signal_handlers_.find(sig);
    if (it == signal_handlers_.end()) return false;
    signal_handlers_.erase(it);
    const auto i = static_cast<std::size_t>(sig);
    std::lock_guard lock(g_mutex);
    ::sigaction(sig, &g_previous[i], nullptr);
    g_owner[i].store(nullptr);
    g_pending[i].store(false);
    return true;
}

void EventLoop::dispatch_signals() {
    for (const auto& [sig, fn] : signal_handlers_) {
        if (!g_pending[static_cast<std::size_t>(sig)].exchange(false)) continue;
        // A callback of its own for each delivery, so that removing the handler from inside
        // one leaves the others intact.
        call_soon([fn = fn] { (*fn)(); });
    }
}

}  // namespace corio
