// The epoll backend: level-triggered, interest kept registered while waiters come and go and
// narrowed only when an event finds nobody waiting, so a connection that alternates between
// reading and waiting costs no epoll_ctl per operation.
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <vector>

#include "backend_readiness.hpp"

namespace corio::detail {
namespace {

class EpollBackend final : public ReadinessBackend {
  public:
    EpollBackend() : events_(64) {
        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = wake_fd();
        if (::epoll_ctl(ep_, EPOLL_CTL_ADD, wake_fd(), &ev) < 0) {
            int err = errno;
            ::close(ep_);
            throw std::system_error(err, std::generic_category(), "epoll_ctl(eventfd)");
        }
    }
    ~EpollBackend() override { ::close(ep_); }

    const char* name() const noexcept override { return "epoll"; }

    bool poll(int timeout_ms) override {
        int n = ::epoll_wait(ep_, events_.data(), static_cast<int>(events_.size()), timeout_ms);
        if (n < 0) {
            if (errno == EINTR) return false;
            throw std::system_error(errno, std::generic_category(), "epoll_wait");
        }
        bool woke = false;
        for (int i = 0; i < n; ++i) {
            const epoll_event& ev = events_[i];
            if (ev.data.fd == wake_fd()) {
                drain_wakeup();
                woke = true;
                continue;
            }
            bool fault = (ev.events & (EPOLLERR | EPOLLHUP)) != 0;
            dispatch(ev.data.fd, fault || (ev.events & EPOLLIN) != 0,
                     fault || (ev.events & EPOLLOUT) != 0);
        }
        if (static_cast<std::size_t>(n) == events_.size()) events_.resize(events_.size() * 2);
        return woke;
    }

  protected:
    void set_interest(int fd, FdState& s, std::uint32_t want) override {
        if (want == 0) {
            // EBADF/ENOENT: already closed, and so already gone from the interest list.
            if (s.interest != 0) ::epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
            s.interest = 0;
            return;
        }
        epoll_event ev{};
        ev.events = ((want & kIn) ? EPOLLIN : 0u) | ((want & kOut) ? EPOLLOUT : 0u);
        ev.data.fd = fd;
        int op = s.interest != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        int r = ::epoll_ctl(ep_, op, fd, &ev);
        if (r < 0 && op == EPOLL_CTL_MOD && errno == ENOENT) {
            // The descriptor was closed and its number reused since we registered it.
            r = ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
        } else if (r < 0 && op == EPOLL_CTL_ADD && errno == EEXIST) {
            r = ::epoll_ctl(ep_, EPOLL_CTL_MOD, fd, &ev);
        }
        if (r < 0) throw std::system_error(errno, std::generic_category(), "epoll_ctl");
        s.interest = want;
    }

  private:
    int ep_ = -1;
    std::vector<epoll_event> events_;
};

}  // namespace

std::unique_ptr<Backend> make_epoll_backend() {
    return std::make_unique<EpollBackend>();
}

}  // namespace corio::detail
