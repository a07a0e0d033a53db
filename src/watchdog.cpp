// The watchdog: notices a loop that does not come back to poll, and says what holds it.
//
// The loop thread's stack and await chain are taken by the loop thread itself, in a signal
// handler the watchdog triggers (pthread_kill): the stuck thread is interrupted where it is, so
// what is read is what it is doing, and nothing races with it meanwhile. The handler only copies
// pointers and numbers into a preallocated snapshot; the watchdog thread formats them.
#include "watchdog.hpp"

#include <semaphore.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "corio/coro.hpp"
#include "corio/graph.hpp"
#include "stacktrace.hpp"

namespace corio::detail {
namespace {

struct Snapshot {
    static constexpr int kMaxFrames = 64;
    static constexpr int kMaxChain = 32;

    void* frames[kMaxFrames];
    int frame_count = 0;
    void* interrupted_at = nullptr;  // the loop thread's instruction when the signal came
    bool in_task = false;
    std::uint32_t task_id = 0;
    char task_name[96] = {};
    const void* task_address = nullptr;
    SourceLocation coroutine;
    FrameCallGraphEntry chain[kMaxChain];
    int chain_length = 0;
};

// Runs on the loop thread, interrupted wherever it is stuck: reads only, no allocation.
void fill(void* arg, void* context) noexcept {
    Snapshot& s = *static_cast<Snapshot*>(arg);
    s.frame_count = capture_stack(s.frames, Snapshot::kMaxFrames);
    s.interrupted_at = interrupted_pc(context);
    const TaskCore* task = t_state.current_task;
    s.in_task = task != nullptr;
    if (task == nullptr) return;
    s.task_address = task;
    s.task_id = task->id;
    if (task->extra != nullptr && !task->extra->name.empty()) {
        const std::string& name = task->extra->name;
        const std::size_t n = std::min(name.size(), sizeof s.task_name - 1);
        std::memcpy(s.task_name, name.data(), n);
        s.task_name[n] = '\0';
    }
    s.coroutine = static_cast<const PromiseBase&>(*task).where();
    walk_await_chain(*task, [&](const PromiseBase& p) {
        s.chain[s.chain_length++] = frame_entry(p);
        return s.chain_length < Snapshot::kMaxChain;
    });
}

std::string read_line(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

// The name of the system call a thread sits in, from /proc/self/task/TID/syscall.
std::string syscall_name(long number) {
    struct Name {
        long number;
        const char* name;
    };
    static constexpr Name names[] = {
        {SYS_read, "read"},
        {SYS_write, "write"},
        {SYS_readv, "readv"},
        {SYS_writev, "writev"},
        {SYS_pread64, "pread64"},
        {SYS_pwrite64, "pwrite64"},
        {SYS_openat, "openat"},
        {SYS_close, "close"},
        {SYS_nanosleep, "nanosleep"},
        {SYS_clock_nanosleep, "clock_nanosleep"},
        {SYS_futex, "futex"},
        {SYS_ppoll, "ppoll"},
        {SYS_pselect6, "pselect6"},
        {SYS_epoll_pwait, "epoll_pwait"},
        {SYS_accept4, "accept4"},
        {SYS_connect, "connect"},
        {SYS_recvfrom, "recvfrom"},
        {SYS_sendto, "sendto"},
        {SYS_recvmsg, "recvmsg"},
        {SYS_sendmsg, "sendmsg"},
        {SYS_wait4, "wait4"},
        {SYS_waitid, "waitid"},
        {SYS_fsync, "fsync"},
        {SYS_fdatasync, "fdatasync"},
        {SYS_flock, "flock"},
        {SYS_fcntl, "fcntl"},
        {SYS_ioctl, "ioctl"},
        {SYS_rt_sigtimedwait, "rt_sigtimedwait"},
        {SYS_rt_sigsuspend, "rt_sigsuspend"},
#ifdef SYS_poll
        {SYS_poll, "poll"},
#endif
#ifdef SYS_select
        {SYS_select, "select"},
#endif
#ifdef SYS_epoll_wait
        {SYS_epoll_wait, "epoll_wait"},
#endif
#ifdef SYS_accept
        {SYS_accept, "accept"},
#endif
#ifdef SYS_pause
        {SYS_pause, "pause"},
#endif
    };
    for (const Name& n : names)
        if (n.number == number) return n.name;
    return "system call " + std::to_string(number);
}

// "on-CPU" or "off-CPU in clock_nanosleep (kernel: hrtimer_nanosleep)", from /proc: the thread's
// scheduler state (running or runnable: it wants the CPU), and else the system call it sits in.
// `cpu_share` (the CPU time it used over a short interval) is reported beside it.
std::string cpu_state(pid_t tid, double cpu_share, Duration window) {
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    const std::string stat = read_line(task + "/stat");
    const std::size_t paren = stat.rfind(')');
    const char state =
        paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
    char share[64];
    std::snprintf(share, sizeof share, " (it used %.0f%% of a CPU over the last %.0f ms)",
                  cpu_share * 100, std::chrono::duration<double, std::milli>(window).count());
    if (state == 'R' || (state == '?' && cpu_share >= 0.25)) return "on-CPU" + std::string(share);
    std::string text = "off-CPU";
    const std::string call = read_line(task + "/syscall");
    if (!call.empty() && call != "running") {
        char* end = nullptr;
        const long number = std::strtol(call.c_str(), &end, 10);
        if (end != call.c_str() && number >= 0) text += " in " + syscall_name(number);
    }
    const std::string wchan = read_line(task + "/wchan");
    if (!wchan.empty() && wchan != "0") text += " (kernel: " + wchan + ")";
    return text + share;
}

double seconds(Duration d) {
    return std::chrono::duration<double>(d).count();
}

std::string format_seconds(Duration d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f s", seconds(d));
    return buf;
}

Duration thread_cpu_time(clockid_t clock) {
    timespec ts{};
    if (clock_gettime(clock, &ts) != 0) return Duration::zero();
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace

Watchdog::Watchdog(WatchdogOptions options) : options_(std::move(options)) {
    if (options_.threshold <= Duration::zero())
        throw ValueError("WatchdogOptions::threshold must be positive");
    prepare_stack_traces();
    thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    // Unparks the thread (the loop is not running, so nothing else writes the state now).
    state_.store(~std::uint32_t{0});
    state_.notify_all();
    thread_.join();
}

void Watchdog::loop_started(TimePoint now) noexcept {
    {
        std::lock_guard lock(mutex_);
        loop_thread_ = pthread_self();
        loop_tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
        if (pthread_getcpuclockid(loop_thread_, &loop_cpu_clock_) != 0)
            loop_cpu_clock_ = CLOCK_THREAD_CPUTIME_ID;
        thread_known_ = true;
    }
    after_poll(now);  // running, and not in poll
}

void Watchdog::emit(const std::string& text) {
    if (options_.report) {
        try {
            options_.report(text);
        } catch (...) {
            std::fputs("corio watchdog: the report function threw\n", stderr);
        }
    } else {
        std::fputs(text.c_str(), stderr);
    }
}

void Watchdog::run() {
    std::unique_lock lock(mutex_);
    bool warmed_up = false;
    while (!stop_) {
        std::uint32_t state = state_.load();
        if (state == kIdle) {
            // Parked until the loop leaves poll: no periodic wake-ups while it is idle.
            parked_.store(true);
            lock.unlock();
            if (state_.load() == kIdle) state_.wait(kIdle);
            lock.lock();
            parked_.store(false);
            continue;
        }
        const TimePoint since{Duration(busy_since_.load(std::memory_order_relaxed))};
        if (!still(state)) continue;
        // Reading the debug information takes a good fraction of a second of CPU: done when a
        // stall looks likely (the loop has been busy for half the threshold), so that a program
        // that never stalls never pays for it, and the first report still comes while the loop
        // is stuck.
        const TimePoint due = since + (warmed_up ? options_.threshold : options_.threshold / 2);
        if (Clock::now() < due) {
            wake_.wait_until(lock, due, [&] { return stop_; });
            continue;
        }
        if (!warmed_up) {
            lock.unlock();
            warm_up_symbolizer();
            lock.lock();
            warmed_up = true;
            continue;
        }
        if (!still(state)) continue;
        report_stall(lock, state, since);
    }
}

std::string Watchdog::describe_loop_thread(TimePoint since, const std::string& where) {
    Snapshot snapshot;
    const bool answered = run_in_signal_handler(loop_thread_, &fill, &snapshot, 1000);
    std::string text = "corio watchdog: the event loop has not polled for " +
                       format_seconds(Clock::now() - since) + "; its thread is " + where + "\n";
    if (!answered) {
        text += "  (the loop thread did not answer the request for its stack)\n";
    } else if (!snapshot.in_task) {
        text += "  running: a callback, not a task\n";
    } else {
        const std::string name = snapshot.task_name[0] != '\0'
                                     ? std::string(snapshot.task_name)
                                     : "Task-" + std::to_string(snapshot.task_id);
        text += "  running task: " + name + " (coroutine " + snapshot.coroutine.function + " at " +
                snapshot.coroutine.file + ":" + std::to_string(snapshot.coroutine.line) + ")\n";
        char id[32];
        std::snprintf(id, sizeof id, "%#llx",
                      static_cast<unsigned long long>(
                          reinterpret_cast<std::uintptr_t>(snapshot.task_address)));
        text += "  * Task(name='" + name + "', id=" + id + ")\n";
        text += "    + Call stack (the innermost coroutine runs past the line shown):\n";
        for (int i = 0; i < snapshot.chain_length; ++i)
            text += "    " + format_frame(snapshot.chain[i]) + "\n";
    }
    if (answered && snapshot.frame_count > 0) {
        text += "  native stack of the loop thread (TID " + std::to_string(loop_tid_) + "):\n";
        // The first frames are the signal handler's own: start where the thread was stopped.
        int first = 0;
        for (int i = 0; i < snapshot.frame_count; ++i) {
            if (snapshot.frames[i] == snapshot.interrupted_at) {
                first = i;
                break;
            }
        }
        text += symbolize_stack(snapshot.frames + first, snapshot.frame_count - first, "    ");
    }
    return text;
}

void Watchdog::report_stall(std::unique_lock<std::mutex>& lock, std::uint32_t state,
                            TimePoint since) {
    // On- or off-CPU: how much of a short interval the loop thread spent running.
    const Duration sample = std::chrono::milliseconds(50);
    const Duration cpu_before = thread_cpu_time(loop_cpu_clock_);
    const TimePoint wall_before = Clock::now();
    wake_.wait_for(lock, sample, [&] { return stop_; });
    if (stop_) return;
    Duration cpu_at = thread_cpu_time(loop_cpu_clock_);
    TimePoint wall_at = Clock::now();
    const double share = seconds(cpu_at - cpu_before) / seconds(wall_at - wall_before);
    if (!still(state)) {
        record_stall(Clock::now() - since, share >= 0.5);
        emit("corio watchdog: the event loop did not poll for " +
             format_seconds(Clock::now() - since) + " (it went on before it could be looked at)\n");
        return;
    }
    // Before the capture, which interrupts the system call the thread may be in.
    std::string where = cpu_state(loop_tid_, share, wall_at - wall_before);
    const bool on_cpu = where.rfind("on-CPU", 0) == 0;
    std::string text = describe_loop_thread(since, where);
    lock.unlock();
    emit(text);
    lock.lock();

    // Again at 2x, 4x, 8x... the threshold while the stall lasts; then its total, when the loop
    // polls again (or stops).
    Duration next = 2 * options_.threshold;
    while (!stop_ && still(state)) {
        wake_.wait_for(lock, std::chrono::milliseconds(10));
        if (stop_ || !still(state) || Clock::now() < since + next) continue;
        next *= 2;
        const Duration cpu_now = thread_cpu_time(loop_cpu_clock_);
        const TimePoint wall_now = Clock::now();
        where = cpu_state(loop_tid_, seconds(cpu_now - cpu_at) / seconds(wall_now - wall_at),
                          wall_now - wall_at);
        cpu_at = cpu_now;
        wall_at = wall_now;
        text = describe_loop_thread(since, where);
        if (!still(state)) break;  // it ended meanwhile: the report would be about what follows
        lock.unlock();
        emit(text);
        lock.lock();
    }
    if (still(state)) return;  // the watchdog itself is being stopped
    const Duration total = Clock::now() - since;
    record_stall(total, on_cpu);
    emit("corio watchdog: the event loop polled again after a stall of " + format_seconds(total) +
         "\n");
}

void Watchdog::record_stall(Duration total, bool on_cpu) noexcept {
    // Buckets by powers of two of the threshold: [1, 2), [2, 4), [4, 8), [8, inf).
    std::size_t bucket = 0;
    for (Duration limit = 2 * options_.threshold; bucket < kStallBuckets - 1 && total >= limit;
         limit *= 2)
        ++bucket;
    (on_cpu ? stalls_on_cpu_ : stalls_off_cpu_)[bucket].fetch_add(1, std::memory_order_relaxed);
    Clock::rep longest = longest_stall_.load(std::memory_order_relaxed);
    while (total.count() > longest && !longest_stall_.compare_exchange_weak(
                                          longest, total.count(), std::memory_order_relaxed)) {
    }
}

void Watchdog::stall_stats(LoopStats& s) const noexcept {
    static_assert(std::tuple_size_v<decltype(s.stalls_on_cpu)> == kStallBuckets);
    s.stall_threshold = options_.threshold;
    for (std::size_t i = 0; i < kStallBuckets; ++i) {
        s.stalls_on_cpu[i] = stalls_on_cpu_[i].load(std::memory_order_relaxed);
        s.stalls_off_cpu[i] = stalls_off_cpu_[i].load(std::memory_order_relaxed);
    }
    s.longest_stall = Duration(longest_stall_.load(std::memory_order_relaxed));
}

}  // namespace corio::detail
