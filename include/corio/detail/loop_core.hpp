// The loop's intrusive building blocks: what sits in the ready queue, the timer heap and the
// backend. Each lives inside the object that waits (a task's promise, a sleep's awaiter, a
// callback node), so scheduling, sleeping and waiting on a descriptor allocate nothing.
#pragma once

#include <sys/types.h>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "corio/detail/intrusive.hpp"

namespace corio {

class EventLoop;

// The loop's clock. loop.time() is a point on it; call_at() takes one.
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

namespace detail {

// An entry of the ready queue: something to run on the next pass. What it is (and so how to
// run it) travels in the low bits of the link that points at it, which keeps a function pointer
// out of every task's frame.
struct Runnable {
    std::uintptr_t next_ready = 0;  // the next entry, tagged with its kind
};

enum class RunKind : std::uintptr_t { Task = 0, Callback = 1, Watch = 2 };

// FIFO of Runnables, singly linked through the entries themselves.
class ReadyQueue {
  public:
    struct Entry {
        Runnable* runnable;
        RunKind kind;
    };

    bool empty() const noexcept { return head_ == 0; }
    void push(Runnable* r, RunKind kind) noexcept {
        assert(r != tail_ && r->next_ready == 0 && "scheduled twice");
        static_assert(alignof(Runnable) >= 4, "the tag needs two free bits");
        const auto link = reinterpret_cast<std::uintptr_t>(r) | static_cast<std::uintptr_t>(kind);
        if (tail_ != nullptr) {
            tail_->next_ready = link;
        } else {
            head_ = link;
        }
        tail_ = r;
        ++size_;
    }
    // Not empty.
    Entry pop() noexcept {
        assert(head_ != 0);
        Entry e{reinterpret_cast<Runnable*>(head_ & ~kTagMask),
                static_cast<RunKind>(head_ & kTagMask)};
        head_ = e.runnable->next_ready;
        if (head_ == 0) tail_ = nullptr;
        e.runnable->next_ready = 0;
        --size_;
        return e;
    }
    std::size_t size() const noexcept { return size_; }
    template <class F>
    void for_each(F&& f) const {
        for (std::uintptr_t link = head_; link != 0;) {
            auto* r = reinterpret_cast<Runnable*>(link & ~kTagMask);
            f(r, static_cast<RunKind>(link & kTagMask));
            link = r->next_ready;
        }
    }

  private:
    static constexpr std::uintptr_t kTagMask = 3;
    std::uintptr_t head_ = 0;
    Runnable* tail_ = nullptr;
    std::size_t size_ = 0;
};

// A timer in the loop's heap. `fire` is called by the loop when the deadline passes; it must
// only schedule work (push to the ready queue, cancel a task), never run user code itself.
struct TimerNode {
    static constexpr std::size_t kNotInHeap = ~std::size_t{0};
    TimePoint deadline{};
    std::uint64_t seq = 0;  // tie-break: equal deadlines fire in the order they were armed
    std::size_t heap_index = kNotInHeap;
    void (*fire)(TimerNode*) = nullptr;

    bool armed() const noexcept { return heap_index != kNotInHeap; }
};

// An I/O operation handed to the backend: the unit of the operation-based backend interface.
// A readiness backend (epoll, poll) tries the system call first and waits for readiness only
// on EAGAIN; a completion backend would submit it as is. `complete` runs on the loop thread
// when the operation finished and, like TimerNode::fire, only schedules work.
struct IoOp : ListHook {
    enum class Kind : std::uint8_t {
        Readable,  // wait until fd is readable (or hung up / in error)
        Writable,  // wait until fd is writable (or in error)
        Read,      // read(fd, buf, len)
        Write,     // write(fd, buf, len)
        Send,      // send(fd, buf, len, MSG_NOSIGNAL): a write to a socket that raises no SIGPIPE
        Accept,    // accept4(fd, buf, &len, SOCK_NONBLOCK | SOCK_CLOEXEC): buf holds the address
    };
    Kind kind = Kind::Readable;
    bool persistent = false;  // stays registered after completing (add_reader/add_writer)
    // Try the system call before waiting (the default). False when the caller knows the
    // descriptor has nothing for it now (its previous read came back short).
    bool try_first = true;
    int fd = -1;
    void* buf = nullptr;
    std::size_t len = 0;
    ssize_t result = 0;  // bytes transferred, or -errno
    void (*complete)(IoOp*) = nullptr;

    bool reads() const noexcept {
        return kind == Kind::Readable || kind == Kind::Read || kind == Kind::Accept;
    }
    // Moves data (or a connection) rather than only waiting for readiness.
    bool transfers() const noexcept { return kind != Kind::Readable && kind != Kind::Writable; }
};

}  // namespace detail
}  // namespace corio

namespace corio::detail {

struct TaskCore;

// What the loop publishes about the current thread: the running loop and the task being
// stepped. Read by get_running_loop(), current_task() and by awaiters outside a Coro.
struct ThreadState {
    EventLoop* running_loop = nullptr;
    TaskCore* current_task = nullptr;
};

inline thread_local ThreadState t_state;

}  // namespace corio::detail
