// What the synchronisation primitives and queues have in common: a FIFO list of suspended tasks,
// each represented by a node that lives in its awaiter, so in the waiting coroutine's frame.
// Waiting and waking allocate nothing.
//
// The protocol every primitive follows, and that cancellation safety rests on:
//   - a node in the list is Waiting; a cancellation takes it out of the list (state Cancelled)
//     and wakes the task, which raises CancelledError having been given nothing;
//   - whoever wakes a node first hands it what it waited for (the lock, a permit, an item, a
//     free slot) and marks it Woken; from then on the task owns that.
//   - a task cancelled after it was Woken but before it ran finds the cancellation pending when
//     it resumes (TaskCore::must_cancel); the primitive decides whether to give back what it was
//     handed and raise, or to keep it and let the cancellation surface at the next suspension.
#pragma once

#include <coroutine>

#include "corio/detail/future_core.hpp"
#include "corio/detail/intrusive.hpp"
#include "corio/errors.hpp"
#include "corio/events.hpp"

namespace corio::detail {

// The node's state needs no field of its own (it is in every waiting task's frame):
//   not yet suspended   task == nullptr
//   waiting             linked into the primitive's list
//   woken               unlinked, `cancel` still set
//   cancelled           unlinked, `cancel` cleared (a woken task can no longer be cancelled
//                       through its node: waking clears TaskCore::waiter)
struct WaitNode : ListHook, Waiter {
    TaskCore* task = nullptr;

    WaitNode() noexcept = default;
    // Awaiters are copied only before they are awaited (e.g. returned from a function); a copy
    // is never linked.
    WaitNode(const WaitNode&) noexcept : ListHook(), Waiter() {}
    WaitNode& operator=(const WaitNode&) = delete;
    ~WaitNode() { unlink(); }

    bool suspended() const noexcept { return task != nullptr; }

    // Links the node at the back of `list` and suspends the current task at `h`. `what` names the
    // operation for the error raised outside a task.
    void wait_on(List<WaitNode>& list, std::coroutine_handle<> h, const char* what) {
        TaskCore* t = t_state.current_task;
        if (t == nullptr) throw_outside_task(what);
        task = t;
        if (cancel == nullptr) cancel = &cancel_waiting;
        list.push_back(*this);
        t->suspend(h, this);
    }

    // Takes the node out of its list and schedules its task: it was given what it waited for.
    void wake() noexcept {
        unlink();
        task->wake();
    }

    // After resumption: throws CancelledError if the wait was cancelled. Otherwise the node was
    // woken, and the result says whether a cancellation arrived after that (the caller then
    // deals with what it was handed, and raises with task->throw_cancelled() or not).
    bool cancelled_after_wake() const {
        if (cancel == nullptr) task->throw_cancelled();
        return task->must_cancel;
    }

    // The default cancellation: leave the list and wake up to raise CancelledError.
    static bool cancel_waiting(Waiter* w, TaskCore& t) noexcept {
        auto* self = static_cast<WaitNode*>(w);
        self->unlink();
        self->cancel = nullptr;
        t.wake();
        return true;
    }

    [[noreturn]] static void throw_outside_task(const char* what);
};

using WaitList = List<WaitNode>;

// Wakes the oldest waiter; false when there is none.
inline bool wake_first(WaitList& list) noexcept {
    if (list.empty()) return false;
    list.front().wake();
    return true;
}

inline void wake_all(WaitList& list) noexcept {
    while (wake_first(list)) {
    }
}

}  // namespace corio::detail
