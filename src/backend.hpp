// The backend interface: the only code that talks to the kernel's readiness or completion API.
//
// It is operation-based (see detail::IoOp): the loop hands over "read into this buffer", "wait
// until writable", ... and hears back through IoOp::complete. A readiness backend tries the
// system call first and waits only on EAGAIN; a completion backend (io_uring) would submit the
// operation as is. Nothing above this layer knows which kind it talks to.
#pragma once

#include <memory>

#include "corio/detail/loop_core.hpp"
#include "corio/events.hpp"

namespace corio::detail {

class Backend {
  public:
    virtual ~Backend() = default;
    virtual const char* name() const noexcept = 0;

    // Starts `op`. Returns true if it completed at once (op.result is set and `complete` will
    // not be called); false if it is pending and `complete` will be called from poll().
    virtual bool submit(IoOp& op) = 0;
    // Withdraws a pending op: `complete` will not be called for it. No-op if not pending.
    virtual void withdraw(IoOp& op) noexcept = 0;
    // The descriptor is about to be closed: completes its pending ops with -err (persistent
    // ones stay) and stops watching it.
    virtual void forget(int fd, int err) noexcept = 0;
    // Waits up to timeout_ms (-1: no limit) and completes what is ready. Returns true if
    // wakeup() was called since the previous poll.
    virtual bool poll(int timeout_ms) = 0;
    // Makes a blocked or the next poll() return. Thread-safe and async-signal-safe.
    virtual void wakeup() noexcept = 0;
};

std::unique_ptr<Backend> make_epoll_backend();
std::unique_ptr<Backend> make_poll_backend();
std::unique_ptr<Backend> make_backend(BackendKind kind);

}  // namespace corio::detail
