// What the epoll and poll backends share: per-descriptor wait lists, the try-first rule, and
// the wake-up eventfd. A subclass only says how interest is registered with the kernel and how
// to wait.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend.hpp"

namespace corio::detail {

class ReadinessBackend : public Backend {
  public:
    ReadinessBackend();
    ~ReadinessBackend() override;

    bool submit(IoOp& op) override;
    void withdraw(IoOp& op) noexcept override;
    void forget(int fd, int err) noexcept override;
    void wakeup() noexcept override;

  protected:
    static constexpr std::uint32_t kIn = 1;
    static constexpr std::uint32_t kOut = 2;

    struct FdState {
        List<IoOp> readers;
        List<IoOp> writers;
        std::uint32_t interest = 0;  // what the kernel is told to watch (kIn | kOut)
        int slot = -1;               // backend-specific (poll: index in the pollfd array)
    };

    // Tells the kernel to watch `want` for fd (0: stop watching).
    virtual void set_interest(int fd, FdState& s, std::uint32_t want) = 0;

    // Delivers readiness of fd; `in`/`out` include hang-up and error conditions.
    void dispatch(int fd, bool in, bool out);
    // Reads the eventfd after a wake-up.
    void drain_wakeup() noexcept;

    int wake_fd() const noexcept { return wake_fd_; }
    FdState* state(int fd) noexcept {
        return fd >= 0 && static_cast<std::size_t>(fd) < fds_.size() ? fds_[fd].get() : nullptr;
    }

  private:
    static bool attempt(IoOp& op) noexcept;
    void process(List<IoOp>& list);
    static std::uint32_t wanted(FdState& s) noexcept {
        return (s.readers.empty() ? 0 : kIn) | (s.writers.empty() ? 0 : kOut);
    }

    FdState& ensure_state(int fd);

    // Indexed by descriptor. Boxed because wait lists must not move.
    std::vector<std::unique_ptr<FdState>> fds_;
    int wake_fd_ = -1;
};

}  // namespace corio::detail
