#include "backend_readiness.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace corio::detail {

ReadinessBackend::ReadinessBackend() {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

ReadinessBackend::~ReadinessBackend() {
    ::close(wake_fd_);
}

ReadinessBackend::FdState& ReadinessBackend::ensure_state(int fd) {
    if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 1);
    if (!fds_[fd]) fds_[fd] = std::make_unique<FdState>();
    return *fds_[fd];
}

// Performs the operation's system call. True when it is finished (result set), false when
// the descriptor is not ready (EAGAIN) and the op must wait.
bool ReadinessBackend::attempt(IoOp& op) noexcept {
    ssize_t n = 0;
    switch (op.kind) {
        case IoOp::Kind::Readable:
        case IoOp::Kind::Writable:
            op.result = 0;
            return true;
        case IoOp::Kind::Read:
            do {
                n = ::read(op.fd, op.buf, op.len);
            } while (n < 0 && errno == EINTR);
            break;
        case IoOp::Kind::Write:
            do {
                n = ::write(op.fd, op.buf, op.len);
            } while (n < 0 && errno == EINTR);
            break;
        case IoOp::Kind::Send:
            do {
                n = ::send(op.fd, op.buf, op.len, MSG_NOSIGNAL);
            } while (n < 0 && errno == EINTR);
            break;
        case IoOp::Kind::Accept: {
            auto addrlen = static_cast<socklen_t>(op.len);
            do {
                n = ::accept4(op.fd, static_cast<sockaddr*>(op.buf), &addrlen,
                              SOCK_NONBLOCK | SOCK_CLOEXEC);
            } while (n < 0 && errno == EINTR);
            if (n >= 0) op.len = addrlen;
            // A connection that was reset before we took it: take the next one (as asyncio).
            if (n < 0 && errno == ECONNABORTED) errno = EAGAIN;
            break;
        }
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    op.result = n < 0 ? -errno : n;
    return true;
}

bool ReadinessBackend::submit(IoOp& op) {
    if (op.fd < 0) throw std::system_error(EBADF, std::generic_category(), "invalid descriptor");
    // Try first: a transfer that can proceed now never touches the kernel's wait machinery.
    if (op.transfers() && op.try_first && attempt(op)) return true;

    FdState& s = ensure_state(op.fd);
    (op.reads() ? s.readers : s.writers).push_back(op);
    std::uint32_t want = s.interest | wanted(s);
    if (want != s.interest) {
        try {
            set_interest(op.fd, s, want);
        } catch (...) {
            op.unlink();
            throw;
        }
    }
    return false;
}

void ReadinessBackend::withdraw(IoOp& op) noexcept {
    // An operation's interest is dropped lazily: the next event without a waiter narrows it. An
    // op that is withdrawn and resubmitted right away (the common case) costs no system call.
    const bool watch = op.persistent;
    op.unlink();
    // A watch (add_reader) goes for good, and asyncio's idiom is remove_reader, then close: the
    // kernel must forget the descriptor now, or one that reuses its number would never be
    // watched (epoll drops a closed descriptor by itself, and our record of it would be stale).
    if (!watch) return;
    FdState* s = state(op.fd);
    if (s == nullptr || wanted(*s) == s->interest) return;
    try {
        set_interest(op.fd, *s, wanted(*s));
    } catch (const std::system_error&) {
        s->interest = 0;  // already closed: the kernel has forgotten it
    }
}

void ReadinessBackend::forget(int fd, int err) noexcept {
    FdState* s = state(fd);
    if (s == nullptr) return;
    for (List<IoOp>* list : {&s->readers, &s->writers}) {
        List<IoOp> kept;
        while (IoOp* op = list->pop_front()) {
            if (op->persistent) {
                kept.push_back(*op);  // a watch (add_reader) stays until remove_reader
                continue;
            }
            op->result = -err;
            op->complete(op);  // only schedules
        }
        list->splice(kept);
    }
    try {
        set_interest(fd, *s, wanted(*s));
    } catch (const std::system_error&) {
        s->interest = 0;
    }
}

void ReadinessBackend::process(List<IoOp>& list) {
    // Ops added while completing (by code the completion schedules) wait for the next event;
    // completions only schedule, so nothing here can run user code.
    List<IoOp> kept;
    while (IoOp* op = list.pop_front()) {
        if (!attempt(*op)) {
            kept.push_back(*op);
            break;  // not ready after all: the rest wait behind it, in order
        }
        if (op->persistent) kept.push_back(*op);
        op->complete(op);
    }
    // Restore order: what stayed, then what was behind it.
    kept.splice(list);
    list.splice(kept);
}

void ReadinessBackend::dispatch(int fd, bool in, bool out) {
    FdState* s = state(fd);
    if (s == nullptr) return;
    // Read interest is narrowed only when a readable event finds nobody waiting: a reader that
    // was served usually reads again soon (a connection alternating between reading and
    // writing), and dropping the interest now would cost two epoll_ctl calls per read. Write
    // interest goes as soon as nobody waits: a socket is writable nearly always, so keeping it
    // would only make the next poll return at once for nobody.
    std::uint32_t unused = 0;
    if (in) {
        if (s->readers.empty()) unused |= kIn;
        process(s->readers);
    }
    if (out) process(s->writers);
    const std::uint32_t want = ((s->interest & kIn & ~unused) | wanted(*s));
    if (want != s->interest) {
        try {
            set_interest(fd, *s, want);
        } catch (const std::system_error&) {
            // The descriptor was closed under us; the kernel has already forgotten it.
            s->interest = 0;
        }
    }
}

void ReadinessBackend::wakeup() noexcept {
    std::uint64_t one = 1;
    // EAGAIN means the counter is saturated: a wake-up is pending anyway.
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void ReadinessBackend::drain_wakeup() noexcept {
    std::uint64_t value = 0;
    [[maybe_unused]] ssize_t n = ::read(wake_fd_, &value, sizeof value);
}

std::unique_ptr<Backend> make_backend(BackendKind kind) {
    if (kind == BackendKind::Auto) {
        const char* env = std::getenv("CORIO_BACKEND");
        std::string_view v = env != nullptr ? env : "";
        if (v == "poll") {
            kind = BackendKind::Poll;
        } else if (v == "epoll" || v.empty()) {
            kind = BackendKind::Epoll;
        } else {
            throw RuntimeError("CORIO_BACKEND must be 'epoll' or 'poll', not '" + std::string(v) +
                               "'");
        }
    }
    return kind == BackendKind::Poll ? make_poll_backend() : make_epoll_backend();
}

}  // namespace corio::detail
