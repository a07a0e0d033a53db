// The awaiter of one backend operation (detail::IoOp): what every socket call suspends on.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <coroutine>
#include <cstddef>

#include "corio/detail/future_core.hpp"
#include "corio/detail/loop_core.hpp"
#include "corio/errors.hpp"
#include "corio/events.hpp"

namespace corio::detail {

// Submits the operation (a readiness backend tries the system call first and suspends only on
// EAGAIN) and resumes with its result: bytes transferred, a descriptor, or -errno.
//
// Cancellation withdraws an operation still pending and raises CancelledError. An operation that
// completed is never undone: its data has moved. If the task is cancelled after that but before
// it ran, the result is returned all the same and the cancellation is raised at the task's next
// suspension, so a read that was cancelled loses no bytes.
struct IoAwaiter : IoOp, Waiter {
    static constexpr bool corio_cancel_aware = true;

    TaskCore* task = nullptr;
    bool cancelled = false;

    IoAwaiter(Kind k, int descriptor, void* buffer, std::size_t length,
              bool try_at_once = true) noexcept {
        kind = k;
        fd = descriptor;
        buf = buffer;
        len = length;
        try_first = try_at_once;
    }
    IoAwaiter(const IoAwaiter& o) noexcept : IoAwaiter(o.kind, o.fd, o.buf, o.len, o.try_first) {}
    IoAwaiter& operator=(const IoAwaiter&) = delete;
    ~IoAwaiter() {
        if (linked()) LoopAccess::withdraw(*task->loop, *this);
    }

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        TaskCore* t = t_state.current_task;
        if (t == nullptr) throw RuntimeError("a corio socket operation must be awaited in a task");
        if (fd < 0) throw_os_error(EBADF, "an operation on a closed socket");
        task = t;
        complete = [](IoOp* op) { static_cast<IoAwaiter*>(op)->task->wake(); };
        if (LoopAccess::submit(*t->loop, *this)) return false;  // done at once
        cancel = [](Waiter* w, TaskCore& tc) {
            auto* self = static_cast<IoAwaiter*>(w);
            LoopAccess::withdraw(*tc.loop, *self);
            self->cancelled = true;
            tc.wake();
            return true;
        };
        t->suspend(h, this);
        return true;
    }
    ssize_t await_resume() {
        if (cancelled) task->throw_cancelled();
        return result;
    }
};

}  // namespace corio::detail
