// The poll() backend: portable to any POSIX system. The pollfd array is kept between calls and
// edited in place when interest changes, so a pass costs one poll() and a scan of the array.
#include <poll.h>

#include <cerrno>
#include <system_error>
#include <utility>
#include <vector>

#include "backend_readiness.hpp"

namespace corio::detail {
namespace {

class PollBackend final : public ReadinessBackend {
  public:
    PollBackend() { pfds_.push_back(pollfd{wake_fd(), POLLIN, 0}); }

    const char* name() const noexcept override { return "poll"; }

    bool poll(int timeout_ms) override {
        int n = ::poll(pfds_.data(), pfds_.size(), timeout_ms);
        if (n < 0) {
            if (errno == EINTR) return false;
            throw std::system_error(errno, std::generic_category(), "poll");
        }
        bool woke = false;
        ready_.clear();
        for (const pollfd& p : pfds_) {
            if (p.revents == 0) continue;
            if (p.fd == wake_fd()) {
                drain_wakeup();
                woke = true;
            } else {
                ready_.emplace_back(p.fd, p.revents);
            }
        }
        // Dispatch after the scan: completing may edit pfds_.
        for (auto [fd, revents] : ready_) {
            bool fault = (revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
            dispatch(fd, fault || (revents & POLLIN) != 0, fault || (revents & POLLOUT) != 0);
            if ((revents & POLLNVAL) != 0) {
                // Closed without telling us: stop watching, or poll() would report it forever.
                if (FdState* s = state(fd); s != nullptr && s->slot >= 0) set_interest(fd, *s, 0);
            }
        }
        return woke;
    }

  protected:
    void set_interest(int fd, FdState& s, std::uint32_t want) override {
        if (want == 0) {
            if (s.slot >= 0) {
                std::size_t last = pfds_.size() - 1;
                if (static_cast<std::size_t>(s.slot) != last) {
                    pfds_[s.slot] = pfds_[last];
                    state(pfds_[s.slot].fd)->slot = s.slot;
                }
                pfds_.pop_back();
                s.slot = -1;
            }
            s.interest = 0;
            return;
        }
        if (s.slot < 0) {
            s.slot = static_cast<int>(pfds_.size());
            pfds_.push_back(pollfd{fd, 0, 0});
        }
        pfds_[s.slot].events =
            static_cast<short>(((want & kIn) ? POLLIN : 0) | ((want & kOut) ? POLLOUT : 0));
        s.interest = want;
    }

  private:
    std::vector<pollfd> pfds_;
    std::vector<std::pair<int, short>> ready_;
};

}  // namespace

std::unique_ptr<Backend> make_poll_backend() {
    return std::make_unique<PollBackend>();
}

}  // namespace corio::detail
