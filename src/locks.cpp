#include "corio/locks.hpp"

#include <string>

namespace corio {

namespace detail {

void WaitNode::throw_outside_task(const char* what) {
    throw RuntimeError(std::string(what) + " must be awaited inside a corio task");
}

}  // namespace detail

// --- Semaphore ---------------------------------------------------------------------------------

Semaphore::Semaphore(std::int64_t value, std::size_t bound)
    : permits_(value > 0 ? static_cast<std::size_t>(value) : 0), bound_(bound) {
    if (value < 0) throw ValueError("Semaphore initial value must be >= 0");
}

void Semaphore::release() {
    if (permits_.free() >= bound_) throw ValueError("BoundedSemaphore released too many times");
    permits_.give();
}

// --- Condition ---------------------------------------------------------------------------------
//
// A waiter goes through two queues: the condition's, until notified, then the lock's, until the
// lock is handed to it. A cancellation in the first moves it to the second at once (it must hold
// the lock again before it raises); a cancellation in the second only marks it, and passes its
// notification on to another waiter, since it will not act on it.

void Condition::suspend(WaitAwaiter& w, std::coroutine_handle<> h) {
    if (detail::t_state.current_task == nullptr)
        detail::WaitNode::throw_outside_task("corio::Condition::wait()");
    w.cancel = &on_cancel;
    lock_->release();
    w.wait_on(waiters_, h, "corio::Condition::wait()");
}

void Condition::resumed(WaitAwaiter& w) {
    // The lock is held again here.
    if (w.cancelled) w.task->throw_cancelled();
    if (w.task->must_cancel) {
        // Cancelled after the lock was handed over: raise, and let another waiter have the
        // notification this one will not act on.
        if (w.notified && !w.passed_on) wake(1);
        w.task->throw_cancelled();
    }
}

void Condition::notify(std::size_t n) {
    if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
    wake(n);
}

void Condition::notify_all() {
    notify(~std::size_t{0});
}

void Condition::wake(std::size_t n) noexcept {
    for (; n > 0 && !waiters_.empty(); --n) {
        auto& w = static_cast<WaitAwaiter&>(waiters_.front());
        w.unlink();
        w.notified = true;
        reacquire(w);
    }
}

void Condition::reacquire(WaitAwaiter& w) noexcept {
    w.reacquiring = true;
    if (lock_->permits_.try_take()) {
        w.wake();
    } else {
        lock_->permits_.waiters().push_back(w);
    }
}

bool Condition::on_cancel(detail::Waiter* waiter, detail::TaskCore&) noexcept {
    auto& w = *static_cast<WaitAwaiter*>(waiter);
    w.cancelled = true;
    if (!w.reacquiring) {
        w.unlink();
        w.cond->reacquire(w);
    } else if (w.notified && !w.passed_on) {
        w.passed_on = true;
        w.cond->wake(1);
    }
    return true;  // the task raises CancelledError once it holds the lock
}

// --- Barrier -----------------------------------------------------------------------------------

struct Barrier::Changed : detail::WaitNode {
    static constexpr bool corio_cancel_aware = true;
    Barrier* barrier;

    explicit Changed(Barrier* b) noexcept : barrier(b) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        wait_on(barrier->waiters_, h, "corio::Barrier::wait()");
    }
    void await_resume() {
        if (cancelled_after_wake()) task->throw_cancelled();
    }
};

Barrier::Barrier(std::size_t parties) : parties_(parties) {
    if (parties == 0) throw ValueError("parties must be > 0");
}

Barrier::Changed Barrier::changed() noexcept {
    return Changed(this);
}

void Barrier::set_state(State s) noexcept {
    state_ = s;
    detail::wake_all(waiters_);
}

Coro<std::size_t> Barrier::wait() {
    // Wait while the previous round drains or a reset completes.
    while (state_ == State::Draining || state_ == State::Resetting) co_await changed();
    if (state_ == State::Broken) throw BrokenBarrierError("Barrier aborted");
    Arrival me;
    arrivals_.push_back(me);
    ++count_;
    try {
        if (count_ == parties_) {
            // The last to arrive releases the others. Indices are handed out now, in arrival
            // order among those still here, so that they are 0..parties-1 even when a waiter
            // was cancelled meanwhile (asyncio's index is the count at arrival, which repeats).
            std::size_t index = 0;
            while (Arrival* a = arrivals_.pop_front()) a->index = index++;
            set_state(State::Draining);
        } else {
            while (state_ == State::Filling) co_await changed();
            if (state_ == State::Broken || state_ == State::Resetting)
                throw BrokenBarrierError("Abort or reset of barrier");
        }
    } catch (...) {
        me.unlink();
        leave();
        throw;
    }
    leave();
    co_return me.index;
}

void Barrier::leave() noexcept {
    if (--count_ > 0) return;
    // The last one out: the barrier is ready for the next round.
    set_state(state_ == State::Resetting || state_ == State::Draining ? State::Filling : state_);
}

void Barrier::reset() noexcept {
    set_state(count_ > 0 ? State::Resetting : State::Filling);
}

void Barrier::abort() noexcept {
    set_state(State::Broken);
}

}  // namespace corio
