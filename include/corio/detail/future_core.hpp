// The untyped state shared by Future<T> and Task<T>, and the protocol between a suspended task
// and what it waits for.
//
// A task is suspended on exactly one thing at a time. The awaiter that suspends it registers a
// Waiter, which knows how to undo the wait (leave a wait list, disarm a timer, withdraw an I/O
// operation) when the task is cancelled: that is how cancellation loses nothing.
#pragma once

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "corio/detail/intrusive.hpp"
#include "corio/detail/loop_core.hpp"
#include "corio/detail/pool.hpp"
#include "corio/detail/source_location.hpp"

namespace corio {
class EventLoop;
}

namespace corio::detail {

struct FutureCore;
struct TaskCore;

// Lifecycle of a future or task: Pending, then exactly one of Finished or Cancelled.
enum class FutureState : std::uint8_t { Pending, Finished, Cancelled };

// A node in a future's list of waiters. `notify` is called when the future completes, from
// within the completion, and must only schedule work. Unlinking is O(1) and safe to repeat.
struct DoneWaiter {
    DoneWaiter* next = nullptr;
    DoneWaiter** pprev = nullptr;  // the pointer that points at this node, when linked
    void (*notify)(DoneWaiter*, FutureCore&) = nullptr;
    // The task that waits, when one does (a done callback has none): what a call graph lists as
    // "awaited by" (corio/graph.hpp).
    TaskCore* task = nullptr;

    bool linked() const noexcept { return pprev != nullptr; }
    void unlink() noexcept {
        if (pprev == nullptr) return;
        *pprev = next;
        if (next != nullptr) next->pprev = pprev;
        next = nullptr;
        pprev = nullptr;
    }
};

// A future's waiters: one pointer in every future and task (a doubly-linked list would take
// two). Waiters are added at the front and notified in the order they were added.
class WaiterList {
  public:
    WaiterList() noexcept = default;
    WaiterList(const WaiterList&) = delete;
    WaiterList& operator=(const WaiterList&) = delete;
    ~WaiterList() { clear(); }

    bool empty() const noexcept { return head_ == nullptr; }
    void add(DoneWaiter& w) noexcept {
        w.next = head_;
        if (head_ != nullptr) head_->pprev = &w.next;
        head_ = &w;
        w.pprev = &head_;
    }
    // Turns the list so that the oldest waiter comes first; take() then pops in that order.
    // Waiters stay linked until taken, so one may still leave (or be freed) meanwhile.
    void oldest_first() noexcept {
        DoneWaiter* reversed = nullptr;
        while (head_ != nullptr) {
            DoneWaiter* n = head_;
            head_ = n->next;
            n->next = reversed;
            reversed = n;
        }
        head_ = reversed;
        DoneWaiter** pp = &head_;
        for (DoneWaiter* n = head_; n != nullptr; n = n->next) {
            n->pprev = pp;
            pp = &n->next;
        }
    }
    DoneWaiter* take() noexcept {
        DoneWaiter* w = head_;
        if (w != nullptr) w->unlink();
        return w;
    }
    void clear() noexcept {
        while (head_ != nullptr) head_->unlink();
    }
    template <class F>
    void for_each(F&& f) const {
        for (const DoneWaiter* w = head_; w != nullptr; w = w->next) f(*w);
    }

  private:
    DoneWaiter* head_ = nullptr;
};

// The undo half of a suspension. `cancel` is called by Task::cancel() while the task is
// suspended on this waiter; it returns true when the cancellation was taken over (the task will
// be woken and see CancelledError, or what it awaits will finish cancelled), false when the
// task must instead be cancelled at its next resumption.
struct Waiter {
    bool (*cancel)(Waiter*, TaskCore&) = nullptr;
};

// The rarely used parts of a future, allocated on first use: most futures and tasks succeed
// without a name, a done callback or a cancellation message.
struct FutureExtra {
    ~FutureExtra();
    std::exception_ptr exception;  // the failure; also the exception slot of a nested coroutine
    std::string name;
    std::string cancel_message;
    std::vector<std::pair<std::uint64_t, std::function<void(FutureCore&)>>> callbacks;
    std::uint64_t next_callback_id = 1;
    std::coroutine_handle<> relay;  // see TaskCore::relay()
};

// Every byte here is in every task's frame (a task's state is its root coroutine's promise), so
// the fields are packed: the flags share one byte, and what only tasks use fills the rest of the
// first 16 bytes.
struct FutureCore {
    enum class Kind : std::uint8_t { Future, Task };

    FutureState state : 2 = FutureState::Pending;
    Kind kind : 1 = Kind::Future;
    bool exception_retrieved : 1 = false;
    bool must_cancel : 1 = false;  // task only: throw CancelledError at the next resumption
    bool started : 1 = false;      // task only: its first step has run
    bool transfer : 1 = false;     // task only: a Coro call or return set resume_point
    bool queued : 1 = false;       // task only: in the ready queue (TaskCore::waiter())
    // Task only: passing a cancellation on to what it awaits (request_cancel). Seen again, it
    // means tasks await each other in a cycle, and the cycle must be cut rather than followed.
    bool passing_cancel : 1 = false;
    std::uint16_t cancel_requests = 0;  // task only: requests not withdrawn (saturates)
    std::uint32_t refs = 0;
    std::uint32_t registry_index = 0;  // position in the loop's registry of live futures
    std::uint32_t id = 0;              // task only: the N of its default name "Task-N"
    WaiterList waiters;
    FutureExtra* extra = nullptr;
    EventLoop* loop = nullptr;

    FutureCore() = default;
    FutureCore(const FutureCore&) = delete;
    FutureCore& operator=(const FutureCore&) = delete;
    ~FutureCore();

    bool done() const noexcept { return state != FutureState::Pending; }
    bool cancelled() const noexcept { return state == FutureState::Cancelled; }

    void add_ref() noexcept { ++refs; }
    void release() noexcept {
        if (--refs == 0) dispose();
    }

    FutureExtra& ensure_extra();
    const std::string& cancel_message() const noexcept;

    // Whether it holds a failure (or CancelledError): the check on every hot path.
    bool failed() const noexcept { return extra != nullptr && extra->exception; }
    // The failure (or CancelledError) it completed with; null when it succeeded or is pending.
    std::exception_ptr error() const noexcept {
        return failed() ? extra->exception : std::exception_ptr();
    }
    void set_error(std::exception_ptr e);

    // Cancels a future, or requests cancellation of a task. False if already done.
    bool cancel(const std::string& message);

    // Completes the future: wakes its waiters and schedules its done callbacks.
    void set_finished(std::exception_ptr e);
    void set_cancelled(std::exception_ptr cancelled_error);

    // The exception a waiter should see, marking it as retrieved. Null when it succeeded.
    std::exception_ptr take_exception() noexcept;
    // Throws InvalidStateError unless done; rethrows the failure; marks it retrieved.
    void check_result();

    std::uint64_t add_done_callback(std::function<void(FutureCore&)> fn);
    std::size_t remove_done_callback(std::uint64_t id) noexcept;

    // Reports an exception nobody retrieved (asyncio's "Task exception was never retrieved").
    void report_unretrieved() noexcept;

    std::exception_ptr make_cancelled_error() const;

  private:
    void complete();
    void schedule_done_callback(std::function<void(FutureCore&)> fn);
    // Frees the future (its box) or the task (its coroutine frame) when the last reference goes.
    void dispose() noexcept;
};

// A Future's heap object knows how to delete itself with its value type; a task needs no such
// pointer because its frame is destroyed through its coroutine handle.
struct FutureBoxBase : FutureCore, Pooled {
    void (*destroy)(FutureBoxBase*) noexcept = nullptr;
};

// A task's state. It lives at the front of the root coroutine's promise (every Coro promise
// derives from it), so spawning a task costs the coroutine frame and nothing else.
//
// Every Coro promise derives from TaskCore, also those that are never a task's root: they use
// `resume_point` for the coroutine that awaits them (see PromiseBase).
struct TaskCore : FutureCore, Runnable {
    std::coroutine_handle<> resume_point;  // root: the innermost coroutine to resume

    // What the task is suspended on, if anything. A task waits on something or sits in the
    // ready queue, never both, so the waiter shares its word with the queue's link
    // (Runnable::next_ready); `queued` says which of the two the word holds.
    Waiter* waiter() const noexcept {
        return queued ? nullptr : reinterpret_cast<Waiter*>(next_ready);
    }
    void set_waiter(Waiter* w) noexcept {
        assert(!queued);
        next_ready = reinterpret_cast<std::uintptr_t>(w);
    }

    // Called by an awaiter about to suspend the task.
    void suspend(std::coroutine_handle<> h, Waiter* w) {
        resume_point = h;
        set_waiter(w);
        // Cancelled while it ran (e.g. by itself): the wait it starts now is cancelled at
        // once, as asyncio does at the end of a step, rather than after the wait is over.
        if (must_cancel && w != nullptr && w->cancel(w, *this)) must_cancel = false;
    }
    // Schedules the task to resume at its suspension point.
    void wake() noexcept;
    // A Coro called or returned within the task: its step goes on with `h`. The step loop
    // (task_step) resumes it, so a chain of synchronous calls never grows the stack, whatever
    // the compiler does with symmetric transfer (g++ < 15 at -O0 or with ASan does not make it
    // a tail call).
    void transfer_to(std::coroutine_handle<> h) noexcept {
        resume_point = h;
        transfer = true;
    }
    // A handle that, when resumed, schedules this task: what foreign awaiters get, so that the
    // task resumes through the loop, with current_task() right.
    std::coroutine_handle<> relay();

    bool request_cancel(const std::string& message);
    std::uint32_t uncancel() noexcept {
        if (cancel_requests > 0) --cancel_requests;
        if (cancel_requests == 0) must_cancel = false;
        return cancel_requests;
    }
    // If a cancellation is pending, consumes it and throws CancelledError.
    void throw_if_cancel_requested() {
        if (must_cancel) {
            must_cancel = false;
            throw_cancelled();
        }
    }
    // Throws CancelledError, which also answers any cancellation requested meanwhile.
    [[noreturn]] void throw_cancelled();

    std::string name() const;
    // The task's coroutine (the root of its await chain).
    SourceLocation coroutine() const noexcept;
};

// The ready-queue entry point of every task (tasks.cpp).
void task_step(Runnable* r);

}  // namespace corio::detail
