// Synchronisation primitives for tasks of one loop (asyncio.locks): Lock, Event, Condition,
// Semaphore, BoundedSemaphore, Barrier.
//
//     corio::Lock lock;
//     {
//         auto held = co_await lock.guard();  // `async with lock:`
//         co_await write_record(file);
//     }                                       // released here, also when an exception leaves
//
// They are not thread-safe (neither are asyncio's): use them from the tasks of one loop. To wake
// a task from another thread, go through loop.call_soon_threadsafe.
//
// Waiters are served first come, first served. A primitive hands what it releases (the lock, a
// permit) straight to the oldest waiter, so a task that arrives later never overtakes one that
// waits. Cancellation never leaves anything behind: a cancelled acquire() does not hold the lock
// and passes its turn on; a cancelled Condition::wait() re-acquires the lock before the
// CancelledError reaches the caller. A primitive must outlive the tasks waiting on it.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "corio/coro.hpp"
#include "corio/detail/wait_list.hpp"
#include "corio/errors.hpp"

namespace corio {

namespace detail {

// A count of permits handed over directly. Invariant: while tasks wait, no permit is free, so
// release() gives its permit to the oldest waiter instead of making it free.
class Permits {
  public:
    explicit Permits(std::size_t n) noexcept : free_(n) {}
    Permits(const Permits&) = delete;
    Permits& operator=(const Permits&) = delete;

    std::size_t free() const noexcept { return free_; }
    bool has_waiters() const noexcept { return !waiters_.empty(); }
    WaitList& waiters() noexcept { return waiters_; }

    bool try_take() noexcept {
        if (free_ == 0) return false;
        --free_;
        return true;
    }
    void give() noexcept {
        if (!wake_first(waiters_)) ++free_;
    }

    // The awaiter of acquire(): a permit, or CancelledError and no permit.
    struct Acquire : WaitNode {
        static constexpr bool corio_cancel_aware = true;
        Permits* permits;

        explicit Acquire(Permits* p) noexcept : permits(p) {}
        bool await_ready() noexcept { return permits->try_take(); }
        void await_suspend(std::coroutine_handle<> h) {
            wait_on(permits->waiters_, h, "acquiring a corio::Lock or corio::Semaphore");
        }
        void await_resume() {
            if (suspended() && cancelled_after_wake()) {
                // Given the permit, then cancelled before it ran: the permit goes on to the next.
                permits->give();
                task->throw_cancelled();
            }
        }
    };

    using AcquireOp = AwaitOp<Acquire, Permits*>;

  private:
    std::size_t free_;
    WaitList waiters_;
};

// The awaiter of guard(): acquire(), then a guard that releases.
template <class Primitive>
struct GuardAcquire : Permits::Acquire {
    Primitive* owner;

    GuardAcquire(Permits* p, Primitive* o) noexcept : Acquire(p), owner(o) {}
    [[nodiscard]] typename Primitive::Guard await_resume() {
        Acquire::await_resume();
        return typename Primitive::Guard(*owner);
    }
};

template <class Primitive>
using GuardOp = AwaitOp<GuardAcquire<Primitive>, Permits*, Primitive*>;

}  // namespace detail

// Releases what a guard() acquired when it goes out of scope: the RAII form of `async with`.
// Movable, not copyable; release() gives it back early. Keep it in a variable:
// `co_await lock.guard();` as a statement releases at the end of that statement (clang warns
// about the discarded guard; g++ 12 does not).
template <class Primitive>
class [[nodiscard]] Guard {
  public:
    explicit Guard(Primitive& p) noexcept : p_(&p) {}
    Guard(Guard&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Guard& operator=(Guard&& o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    ~Guard() { reset(); }

    // True until released.
    bool owns() const noexcept { return p_ != nullptr; }
    explicit operator bool() const noexcept { return owns(); }
    // Releases now; the destructor then does nothing.
    void release() {
        if (p_ != nullptr) std::exchange(p_, nullptr)->release();
    }

  private:
    void reset() noexcept {
        // Releasing cannot fail while the guard owns what it releases.
        if (p_ != nullptr) std::exchange(p_, nullptr)->release();
    }

    Primitive* p_;
};

// A mutual-exclusion lock for tasks (asyncio.Lock). Not reentrant: a task that holds it and
// acquires it again waits forever. Any task may release it (asyncio's rule).
class Lock {
  public:
    using Guard = corio::Guard<Lock>;

    Lock() noexcept : permits_(1) {}
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

    bool locked() const noexcept { return permits_.free() == 0; }

    // `co_await lock.acquire();` waits for the lock, then holds it until release().
    detail::Permits::AcquireOp acquire() noexcept { return detail::Permits::AcquireOp(&permits_); }
    // `auto held = co_await lock.guard();` holds the lock until `held` goes out of scope.
    detail::GuardOp<Lock> guard() noexcept { return detail::GuardOp<Lock>(&permits_, this); }
    // Releases the lock, handing it to the oldest waiter. RuntimeError if it is not locked.
    void release() {
        if (!locked()) throw RuntimeError("Lock is not acquired.");
        permits_.give();
    }

  private:
    friend class Condition;
    detail::Permits permits_;
};

// A counter of permits (asyncio.Semaphore): acquire() takes one, waiting while there is none;
// release() returns one. `value` is the number free at the start; a negative one is ValueError.
class Semaphore {
  public:
    using Guard = corio::Guard<Semaphore>;

    explicit Semaphore(std::int64_t value = 1) : Semaphore(value, kUnbounded) {}
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;

    // True when acquire() would wait.
    bool locked() const noexcept { return permits_.free() == 0; }
    // The number of free permits.
    std::size_t value() const noexcept { return permits_.free(); }

    detail::Permits::AcquireOp acquire() noexcept { return detail::Permits::AcquireOp(&permits_); }
    detail::GuardOp<Semaphore> guard() noexcept {
        return detail::GuardOp<Semaphore>(&permits_, this);
    }
    // Returns a permit, handing it to the oldest waiter if there is one. For a
    // BoundedSemaphore, ValueError if that would exceed its initial value.
    void release();

  protected:
    static constexpr std::size_t kUnbounded = ~std::size_t{0};
    Semaphore(std::int64_t value, std::size_t bound);

  private:
    detail::Permits permits_;
    std::size_t bound_;
};

// A Semaphore that refuses to be released more often than acquired: release() beyond the
// initial value raises ValueError, which catches a release without its acquire.
class BoundedSemaphore : public Semaphore {
  public:
    explicit BoundedSemaphore(std::int64_t value = 1)
        : Semaphore(value, value > 0 ? static_cast<std::size_t>(value) : 0) {}
};

// A flag tasks can wait for (asyncio.Event). set() wakes every waiter; wait() on a set event
// returns at once; clear() lowers the flag again.
class Event {
  public:
    Event() noexcept = default;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;

    bool is_set() const noexcept { return flag_; }
    void set() noexcept {
        if (flag_) return;
        flag_ = true;
        detail::wake_all(waiters_);
    }
    void clear() noexcept { flag_ = false; }

    struct WaitAwaiter : detail::WaitNode {
        static constexpr bool corio_cancel_aware = true;
        Event* event;

        explicit WaitAwaiter(Event* e) noexcept : event(e) {}
        bool await_ready() const noexcept { return event->flag_; }
        void await_suspend(std::coroutine_handle<> h) {
            wait_on(event->waiters_, h, "corio::Event::wait()");
        }
        void await_resume() {
            // A cancellation after set() still raises (as in asyncio); the event stays set.
            if (suspended() && cancelled_after_wake()) task->throw_cancelled();
        }
    };
    // `co_await event.wait();` returns once the event is set.
    detail::AwaitOp<WaitAwaiter, Event*> wait() noexcept {
        return detail::AwaitOp<WaitAwaiter, Event*>(this);
    }

  private:
    bool flag_ = false;
    detail::WaitList waiters_;
};

// A condition variable for tasks (asyncio.Condition): wait() releases the lock, waits for a
// notify(), and re-acquires the lock before it returns, also when it raises.
//
//     auto held = co_await cond.guard();
//     co_await cond.wait_for([&] { return !items.empty(); });
//
// By default the condition has its own Lock; pass one to share it between conditions.
class Condition {
  public:
    using Guard = corio::Guard<Lock>;

    Condition() noexcept : lock_(&own_) {}
    explicit Condition(Lock& lock) noexcept : lock_(&lock) {}
    Condition(const Condition&) = delete;
    Condition& operator=(const Condition&) = delete;

    bool locked() const noexcept { return lock_->locked(); }
    detail::Permits::AcquireOp acquire() noexcept { return lock_->acquire(); }
    detail::GuardOp<Lock> guard() noexcept { return lock_->guard(); }
    void release() { lock_->release(); }

    struct WaitAwaiter : detail::WaitNode {
        static constexpr bool corio_cancel_aware = true;
        Condition* cond;
        bool notified = false;     // moved to the lock's queue by notify()
        bool reacquiring = false;  // waiting for the lock (notified, or cancelled)
        bool cancelled = false;    // cancelled: raise once the lock is held again
        bool passed_on = false;    // the notification went to another waiter

        explicit WaitAwaiter(Condition* c) noexcept : cond(c) {}
        bool await_ready() const {
            if (!cond->locked()) throw RuntimeError("cannot wait on un-acquired lock");
            return false;
        }
        void await_suspend(std::coroutine_handle<> h) { cond->suspend(*this, h); }
        void await_resume() { cond->resumed(*this); }
    };
    // Releases the lock, waits to be notified, then re-acquires the lock. RuntimeError unless
    // the lock is held. On cancellation the lock is held again when CancelledError surfaces.
    detail::AwaitOp<WaitAwaiter, Condition*> wait() noexcept {
        return detail::AwaitOp<WaitAwaiter, Condition*>(this);
    }

    // Waits until pred() is true (checked first, then after each notification) and returns its
    // last value. The lock must be held.
    template <class Pred>
    Coro<std::decay_t<std::invoke_result_t<Pred&>>> wait_for(Pred pred) {
        auto result = pred();
        while (!result) {
            co_await wait();
            result = pred();
        }
        co_return result;
    }

    // Wakes up to n waiters (they run once they get the lock). RuntimeError unless locked.
    void notify(std::size_t n = 1);
    void notify_all();

  private:
    void suspend(WaitAwaiter& w, std::coroutine_handle<> h);
    void resumed(WaitAwaiter& w);
    // Moves up to n waiters from the condition to the lock's queue.
    void wake(std::size_t n) noexcept;
    // Puts a waiter that stopped waiting for notification in line for the lock.
    void reacquire(WaitAwaiter& w) noexcept;
    static bool on_cancel(detail::Waiter* w, detail::TaskCore& t) noexcept;

    Lock own_;
    Lock* lock_;
    detail::WaitList waiters_;
};

// Makes a fixed number of tasks wait for each other (asyncio.Barrier): each wait() blocks until
// `parties` tasks are waiting, then all are released together and the barrier is ready again.
// wait() returns the task's arrival index, 0 .. parties-1, a different one for each task of a
// round (also when a waiter was cancelled before the round filled). reset() and abort() raise
// BrokenBarrierError in the tasks that wait (abort() also in later ones, until reset()).
// asyncio's reset() and abort() are coroutines only to take a lock; here they are plain calls.
class Barrier {
  public:
    explicit Barrier(std::size_t parties);
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;

    Coro<std::size_t> wait();
    void reset() noexcept;
    void abort() noexcept;

    std::size_t parties() const noexcept { return parties_; }
    // The number of tasks waiting for the barrier to fill.
    std::size_t n_waiting() const noexcept { return state_ == State::Filling ? count_ : 0; }
    bool broken() const noexcept { return state_ == State::Broken; }

  private:
    enum class State : std::uint8_t { Filling, Draining, Resetting, Broken };
    struct Changed;  // waits for the next change of state
    struct Arrival : detail::ListHook {
        std::size_t index = 0;
    };
    Changed changed() noexcept;
    void set_state(State s) noexcept;
    void leave() noexcept;

    std::size_t parties_;
    std::size_t count_ = 0;
    State state_ = State::Filling;
    detail::WaitList waiters_;
    detail::List<Arrival> arrivals_;  // the tasks waiting for this round to fill, in order
};

}  // namespace corio
