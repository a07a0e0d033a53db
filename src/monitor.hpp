// The monitor endpoint: lets corio-ps and corio-pstree list the tasks of this process's loops
// (LoopOptions::monitor, docs/debugging.md).
//
// One endpoint per process, served by a thread of its own (so that a loop that is stuck can
// still be looked at): a Unix socket in the abstract namespace, "corio-monitor-<pid>". Only a
// client of the same user (or root) is answered; the kernel vouches for the peer's credentials
// (SO_PEERCRED), and clients check the server's in turn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace corio {
class EventLoop;
}

namespace corio::detail {

// Text written into a fixed buffer: what a signal handler may produce.
class FixedText {
  public:
    FixedText(char* buffer, std::size_t capacity) noexcept : buf_(buffer), cap_(capacity) {}
    FixedText& operator<<(std::string_view s) noexcept;
    FixedText& operator<<(char c) noexcept { return *this << std::string_view(&c, 1); }
    FixedText& number(std::uint64_t v) noexcept;
    FixedText& hex(std::uintptr_t v) noexcept;
    // `s` with newlines and tabs, which separate the protocol's fields, turned into spaces.
    FixedText& field(std::string_view s) noexcept;
    std::string_view view() const noexcept { return {buf_, len_}; }
    bool truncated() const noexcept { return truncated_; }

  private:
    char* buf_;
    std::size_t cap_;
    std::size_t len_ = 0;
    bool truncated_ = false;
};

// Writes the loop's tasks and statistics in the monitor's protocol. Runs on the loop's thread
// (in a callback, or in a signal handler when the loop is stuck): allocates nothing.
void write_loop_snapshot(EventLoop& loop, FixedText& out) noexcept;

// Whether a loop created with `option` gets the endpoint: the option, else CORIO_MONITOR,
// debug mode or the watchdog.
bool monitor_wanted(const bool* option, bool debug, bool watchdog);

// Registration of a loop with the process's endpoint (created with the first loop).
void monitor_attach(EventLoop& loop);
void monitor_detach(EventLoop& loop) noexcept;
// On the loop's thread, as run_forever() starts and returns.
void monitor_loop_running(EventLoop& loop, bool running) noexcept;

// The abstract socket name of process `pid`'s endpoint (without the leading '\0').
std::string monitor_socket_name(long pid);

}  // namespace corio::detail
