// corio::Future<T>: a result that will be set later (asyncio.Future).
//
//     corio::Future<int> f = loop.create_future<int>();
//     loop.call_later(10ms, [f]() mutable { f.set_result(42); });
//     int v = co_await f;
//
// Futures are for bridging callbacks into coroutines; code that computes a value should be a
// Coro, and code that runs concurrently a Task. A Future is a shared handle: copies refer to the
// same result, and any number of tasks may await it. It belongs to its loop's thread; from
// another thread, set it through loop.call_soon_threadsafe.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "corio/coro.hpp"
#include "corio/detail/future_core.hpp"
#include "corio/events.hpp"

namespace corio {

using CallbackId = std::uint64_t;

namespace detail {

template <class T>
struct FutureBox : FutureBoxBase {
    std::optional<T> value;
};
template <>
struct FutureBox<void> : FutureBoxBase {};

// The awaiting side of a future or task: registers on the target's waiter list and suspends
// the current task. Cancelling the awaiting task cancels the target (asyncio's rule), unless
// shielded, in which case only the wait is abandoned.
struct AwaitCore : DoneWaiter, Waiter {
    static constexpr bool corio_cancel_aware = true;

    FutureCore* target;
    bool shielded = false;
    bool suspended = false;
    bool abandoned = false;  // shielded wait given up because the awaiting task was cancelled

    explicit AwaitCore(FutureCore* t, bool shield = false) noexcept : target(t), shielded(shield) {}
    AwaitCore(const AwaitCore& o) noexcept
        : DoneWaiter(), Waiter(), target(o.target), shielded(o.shielded) {}
    ~AwaitCore() { DoneWaiter::unlink(); }

    bool await_ready() const noexcept { return target->done(); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        task = task_of(h);
        if (task == nullptr) throw RuntimeError("a corio future must be awaited inside a task");
        if (task == target) throw RuntimeError("a task cannot await itself");
        notify = &on_done;
        cancel = &on_cancel;
        target->waiters.add(*this);
        suspended = true;
        task->suspend(h, this);
    }
    // Raises what the awaiting task must see; then the target's outcome is the caller's.
    void resume_checks() {
        if (!suspended) return;
        if (abandoned) task->throw_cancelled();
        task->throw_if_cancel_requested();
    }

    static void on_done(DoneWaiter* w, FutureCore&) noexcept {
        static_cast<AwaitCore*>(w)->task->wake();
    }
    static bool on_cancel(Waiter* w, TaskCore& t) {
        auto* self = static_cast<AwaitCore*>(w);
        // The target is the task whose cancellation reached us (tasks awaiting each other in a
        // cycle): passing it back would go round forever. Stop waiting instead, as a shielded
        // wait does; the cycle then unwinds with CancelledError.
        const bool cycle = self->target->kind == FutureCore::Kind::Task &&
                           static_cast<TaskCore*>(self->target)->passing_cancel;
        if (self->shielded || cycle) {
            self->DoneWaiter::unlink();
            self->abandoned = true;
            t.wake();
            return true;
        }
        return self->target->cancel(t.cancel_message());
    }
};

template <class T>
T& box_value(FutureCore* c) {
    return *static_cast<FutureBox<T>*>(c)->value;
}

}  // namespace detail

template <class T = void>
class Future {
  public:
    using value_type = T;

    Future() noexcept = default;

    bool done() const { return box().done(); }
    bool cancelled() const { return box().cancelled(); }

    // Cancels the future and wakes its awaiters with CancelledError. False if already done.
    bool cancel(const std::string& message = {}) { return box().cancel(message); }

    // Sets the result (no argument for Future<void>) and wakes the awaiters.
    template <class... U>
    void set_result(U&&... value) {
        static_assert(sizeof...(U) == (std::is_void_v<T> ? 0 : 1),
                      "Future<T>::set_result takes one value, Future<void>::set_result none");
        check_pending();
        if constexpr (!std::is_void_v<T>) box().value.emplace(std::forward<U>(value)...);
        box().set_finished(nullptr);
    }
    void set_exception(std::exception_ptr e) {
        if (!e) throw std::invalid_argument("Future::set_exception needs an exception");
        check_pending();
        if (is_cancellation(e)) {
            // asyncio refuses CancelledError here: use cancel().
            throw std::invalid_argument("CancelledError cannot be set as a Future's exception");
        }
        box().set_finished(std::move(e));
    }

    // The result; InvalidStateError while pending; rethrows the failure or CancelledError.
    decltype(auto) result() {
        box().check_result();
        if constexpr (!std::is_void_v<T>) return detail::box_value<T>(box_.get());
    }
    // The exception (null on success); InvalidStateError while pending; throws
    // CancelledError if cancelled.
    std::exception_ptr exception() {
        if (!done()) throw InvalidStateError("Exception is not set.");
        if (cancelled()) std::rethrow_exception(box().take_exception());
        return box().take_exception();
    }

    // Schedules fn(future) with call_soon once the future is done.
    template <class F>
    CallbackId add_done_callback(F fn) {
        return box().add_done_callback([fn = std::move(fn)](detail::FutureCore& c) mutable {
            fn(Future(static_cast<detail::FutureBox<T>*>(&c)));
        });
    }
    std::size_t remove_done_callback(CallbackId id) { return box().remove_done_callback(id); }

    struct Awaiter : detail::AwaitCore {
        using AwaitCore::AwaitCore;
        decltype(auto) await_resume() {
            resume_checks();
            target->check_result();
            if constexpr (!std::is_void_v<T>) return detail::box_value<T>(target);
        }
    };
    Awaiter operator co_await() const { return Awaiter(&box()); }

    explicit operator bool() const noexcept { return static_cast<bool>(box_); }
    bool operator==(const Future& o) const noexcept { return box_ == o.box_; }

    // For corio's own combinators.
    detail::FutureCore* core() const noexcept { return box_.get(); }

  private:
    template <class>
    friend class Future;
    friend class EventLoop;

    explicit Future(detail::FutureBox<T>* b) noexcept : box_(b) {}

    // The future, or InvalidStateError for an empty (default-constructed or moved-from) handle.
    detail::FutureBox<T>& box() const {
        if (!box_) throw InvalidStateError("empty corio::Future handle");
        return *box_;
    }
    void check_pending() const {
        if (box().done()) throw InvalidStateError("invalid state: the future is already done");
    }

    detail::Ref<detail::FutureBox<T>> box_;
};

template <class T>
Future<T> EventLoop::create_future() {
    check_open();
    auto* b = new detail::FutureBox<T>();
    b->kind = detail::FutureCore::Kind::Future;
    b->destroy = [](detail::FutureBoxBase* c) noexcept {
        delete static_cast<detail::FutureBox<T>*>(c);
    };
    detail::LoopAccess::register_core(*this, *b);
    return Future<T>(b);
}

}  // namespace corio
