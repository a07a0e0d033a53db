// The loop's watchdog thread (WatchdogOptions in corio/events.hpp).
#pragma once

#include <pthread.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "corio/events.hpp"

namespace corio::detail {

// The loop tells the watchdog when it enters and leaves its poll, through two atomics; the
// watchdog thread does everything else. While the loop is idle in poll the thread is parked on
// an atomic wait, so an idle loop costs no wake-ups; the loop pays for a wake only when it
// leaves poll while the watchdog is parked, which happens at most once per threshold.
class Watchdog {
  public:
    explicit Watchdog(WatchdogOptions options);
    ~Watchdog();
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    // On the loop's thread, as run_forever() starts and returns.
    void loop_started(TimePoint now) noexcept;
    void loop_stopped() noexcept { state_.store(kIdle); }

    // Only a poll that may block makes the loop idle: a busy loop polls without waiting every
    // few dozen steps, and parking the watchdog for each of those would cost a wake-up each.
    void before_poll(int timeout_ms) noexcept {
        if (timeout_ms != 0) state_.store(kIdle);
    }
    void after_poll(TimePoint now) noexcept {
        busy_since_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
        if (++generation_ == kIdle) ++generation_;
        state_.store(generation_);
        if (parked_.load()) state_.notify_one();
    }

    Duration threshold() const noexcept { return options_.threshold; }

    static constexpr std::size_t kStallBuckets = 4;
    // The stall statistics of LoopStats. Allocates nothing (the monitor reads it in a signal
    // handler).
    void stall_stats(LoopStats& s) const noexcept;

  private:
    static constexpr std::uint32_t kIdle = 0;

    void run();
    // The loop has been busy since `since` (real time) without polling, for over the threshold.
    void report_stall(std::unique_lock<std::mutex>& lock, std::uint32_t state, TimePoint since);
    void emit(const std::string& text);
    // The report's body: the state of the loop thread, its task, await chain and native stack.
    std::string describe_loop_thread(TimePoint since, const std::string& where);
    void record_stall(Duration total, bool on_cpu) noexcept;
    bool still(std::uint32_t state) const noexcept { return state_.load() == state; }

    const WatchdogOptions options_;
    // kIdle while the loop polls or is not running; otherwise which busy stretch it is in.
    std::atomic<std::uint32_t> state_{kIdle};
    std::atomic<Clock::rep> busy_since_{0};
    std::atomic<bool> parked_{false};
    std::uint32_t generation_ = 0;  // loop thread only

    // The loop's thread, for its stack and CPU time (set by loop_started, read after).
    std::atomic<bool> thread_known_{false};
    pthread_t loop_thread_{};
    pid_t loop_tid_ = 0;
    clockid_t loop_cpu_clock_{};

    // Stalls that ended, by duration (see record_stall) and by whether the thread ran.
    std::atomic<std::uint64_t> stalls_on_cpu_[kStallBuckets] = {};
    std::atomic<std::uint64_t> stalls_off_cpu_[kStallBuckets] = {};
    std::atomic<Clock::rep> longest_stall_{0};

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;  // guarded by mutex_
    std::thread thread_;
};

}  // namespace corio::detail
