// corio::EventLoop: asyncio's event loop (asyncio.events / base_events).
//
// One loop per thread, one thread per loop. A pass of the loop polls the backend (epoll or
// poll) with a timeout derived from the next timer, fires the timers that are due, and runs
// what is ready. Most programs never touch the loop directly: corio::run() creates one, runs the
// main coroutine and closes it. The loop's own API is for callbacks and integration:
//
//     corio::EventLoop loop;
//     loop.call_later(50ms, [&] { loop.stop(); });
//     loop.run_forever();
//
// Misuse is a corio::RuntimeError: running a loop while another runs on the thread, running a
// loop that is already running, or using a closed loop.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "corio/detail/awaitable.hpp"
#include "corio/detail/future_core.hpp"
#include "corio/detail/loop_core.hpp"
#include "corio/detail/pool.hpp"
#include "corio/detail/ref.hpp"
#include "corio/detail/source_location.hpp"
#include "corio/errors.hpp"

namespace corio {

template <class T>
class Task;
template <class T>
class Future;
template <class T>
class Coro;
class ThreadPoolExecutor;
namespace detail {
class ChildWatcher;
class Watchdog;
}  // namespace detail

// Which kernel interface the loop waits with. Auto picks the best available (epoll on Linux);
// the environment variable CORIO_BACKEND=epoll|poll overrides Auto.
enum class BackendKind { Auto, Epoll, Poll };

// A virtual clock, for tests (Trio's MockClock with autojump, tokio's time::pause()): loop.time()
// stands still while tasks and callbacks run, and when the loop would wait for its next timer it
// jumps straight to that timer's deadline instead. A test of a one-hour timeout then takes
// microseconds, and timers fire in exactly the order real time would give.
//
// Before jumping, the loop polls the backend for `autojump_threshold` of real time, so that I/O
// that is about to complete (a socket, a pipe, another thread's call_soon_threadsafe) still wins
// over a timer. 0, the default, suits code that only waits on timers; give real I/O a few
// milliseconds. With nothing to wait for but I/O, the loop waits for it as usual.
struct VirtualClock {
    Duration autojump_threshold{};
};

// The watchdog: a thread that notices when the loop has not come back to poll for longer than
// `threshold` (a task or callback that blocks it) and, while it is still stuck, reports the task
// running, its await chain, and the loop thread's native stack, symbolized; then, when the loop
// polls again, how long the stall lasted. An idle loop (waiting in poll) is never a stall, and
// the watchdog thread sleeps for as long as the loop is idle.
struct WatchdogOptions {
    Duration threshold = std::chrono::seconds(1);
    // Receives each report, on the watchdog's thread; unset: reports go to stderr.
    std::function<void(const std::string&)> report{};
};

struct LoopOptions {
    BackendKind backend = BackendKind::Auto;
    // Debug mode; when unset, CORIO_DEBUG=1 in the environment turns it on.
    std::optional<bool> debug{};
    // A virtual clock; when unset, CORIO_VIRTUAL_CLOCK in the environment turns it on: `1` with
    // a threshold of 0, or a threshold such as `20ms`.
    std::optional<VirtualClock> virtual_clock{};
    // The watchdog; when unset, CORIO_WATCHDOG=<threshold in ms> in the environment turns it
    // on, and so does debug mode (with a 1 s threshold).
    std::optional<WatchdogOptions> watchdog{};
    // The monitor endpoint that corio-ps and corio-pstree talk to (docs/debugging.md); when
    // unset, CORIO_MONITOR=1 turns it on, and so do debug mode and the watchdog.
    std::optional<bool> monitor{};
};

// What a loop has done since it was created (EventLoop::stats(); corio-ps shows them too).
struct LoopStats {
    std::uint64_t iterations = 0;  // passes of the loop
    std::uint64_t polls = 0;       // waits in the backend (epoll_wait or poll calls)
    std::uint64_t task_steps = 0;  // times a task was resumed
    std::uint64_t callbacks = 0;   // callbacks run: call_soon, call_later, readers, writers
    Duration time_polling{};       // in the backend's wait: idle, or collecting I/O
    Duration time_running{};       // the rest of the time run_forever() ran
    // The longest single step and the task that took it ("" for a callback). Steps are timed
    // in debug mode only; zero otherwise.
    Duration longest_step{};
    std::string longest_step_task{};
    // With the watchdog: the stalls that ended, by duration in multiples of the threshold
    // ([1, 2), [2, 4), [4, 8), 8 and more), for a loop thread that was running (on-CPU) or
    // waiting in the kernel (off-CPU), and the longest.
    Duration stall_threshold{};
    std::array<std::uint64_t, 4> stalls_on_cpu{};
    std::array<std::uint64_t, 4> stalls_off_cpu{};
    Duration longest_stall{};
};

// What is passed to the exception handler (asyncio's context dict).
struct ExceptionContext {
    std::string message{};
    std::exception_ptr exception{};  // may be null
    std::string task{};              // name of the task concerned, if any
    SourceLocation coroutine{};      // that task's coroutine, if known
    // Where it happened, when known: the co_await at which a slow step ended, where a coroutine
    // that was never awaited is defined, ...
    SourceLocation location{};
    // The task's await chain and the tasks awaiting it (corio/graph.hpp), in debug mode.
    std::string call_graph{};
};

namespace detail {

struct LoopAccess;
class Backend;

// A scheduled callback: what call_soon/call_later/call_at and add_reader put in the loop.
struct CallbackNode : Runnable {
    std::atomic<std::uint32_t> refs{1};
    bool cancelled = false;
    // Set for call_soon_threadsafe nodes, whose Handle may be dropped on another thread; the
    // others are touched by the loop's thread only and skip the locked instructions.
    bool shared = false;
    bool timed = false;  // a TimedCallback (call_later/call_at)
    EventLoop* loop = nullptr;

    CallbackNode() noexcept;
    virtual ~CallbackNode() = default;
    virtual void invoke() = 0;
    // Destroys the callable (and what it captured) once it will not run again.
    virtual void drop_callable() noexcept = 0;

    void add_ref() noexcept {
        if (shared) {
            refs.fetch_add(1, std::memory_order_relaxed);
        } else {
            refs.store(refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
    }
    void release() noexcept {
        if (shared) {
            if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
            return;
        }
        std::uint32_t n = refs.load(std::memory_order_relaxed) - 1;
        refs.store(n, std::memory_order_relaxed);
        if (n == 0) delete this;
    }
    static void operator delete(void* p, std::size_t size) noexcept { pool_deallocate(p, size); }
};

// A callback that is also a timer; plain call_soon nodes leave the timer fields out.
struct TimedCallback : CallbackNode, TimerNode {
    TimedCallback() noexcept;
};

template <class F, class Base>
struct CallbackImpl final : Base {
    std::optional<F> fn;
    explicit CallbackImpl(F&& f) : fn(std::move(f)) {}
    static void* operator new(std::size_t size) { return pool_allocate(size); }
    void invoke() override { (*fn)(); }
    void drop_callable() noexcept override { fn.reset(); }
};

template <class F, class... Args>
auto bind_callback(F&& f, Args&&... args) {
    return [fn = std::forward<F>(f), ... a = std::forward<Args>(args)]() mutable {
        std::invoke(fn, a...);
    };
}

}  // namespace detail

// A callback scheduled with call_soon (asyncio.Handle). Copies share the callback. Like the
// loop, a Handle belongs to the loop's thread; only one returned by call_soon_threadsafe may be
// copied or dropped on another thread (cancel() is still for the loop's thread).
class Handle {
  public:
    Handle() noexcept = default;
    // Adopts the reference the loop made for the caller.
    explicit Handle(detail::CallbackNode* node) noexcept
        : node_(detail::Ref<detail::CallbackNode>::adopt(node)) {}

    // Prevents the callback from running; a no-op if it already ran. Loop thread only.
    void cancel() noexcept;
    bool cancelled() const noexcept { return node_ && node_->cancelled; }

  protected:
    detail::Ref<detail::CallbackNode> node_;
};

// A callback scheduled with call_later/call_at (asyncio.TimerHandle).
class TimerHandle : public Handle {
  public:
    using Handle::Handle;
    TimePoint when() const noexcept {
        return node_ ? static_cast<const detail::TimedCallback*>(node_.get())->deadline
                     : TimePoint{};
    }
};

class EventLoop {
  public:
    using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;

    explicit EventLoop(LoopOptions options = {});
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // --- scheduling callbacks -----------------------------------------------------------
    // Runs f(args...) on a later pass of the loop, in the order scheduled.
    template <class F, class... Args>
    Handle call_soon(F&& f, Args&&... args) {
        check_open_and_thread();
        auto* node = make_node(std::forward<F>(f), std::forward<Args>(args)...);
        node->add_ref();  // the queue's reference
        ready_.push(node, detail::RunKind::Callback);
        return Handle(node);
    }
    // Runs f(args...) once `delay` has passed (on the loop's clock).
    template <class F, class... Args>
    TimerHandle call_later(Duration delay, F&& f, Args&&... args) {
        return call_at(time() + delay, std::forward<F>(f), std::forward<Args>(args)...);
    }
    template <class Rep, class Period, class F, class... Args>
    TimerHandle call_later(std::chrono::duration<Rep, Period> delay, F&& f, Args&&... args) {
        return call_later(std::chrono::duration_cast<Duration>(delay), std::forward<F>(f),
                          std::forward<Args>(args)...);
    }
    // Runs f(args...) at `when` (a point of loop.time()).
    template <class F, class... Args>
    TimerHandle call_at(TimePoint when, F&& f, Args&&... args) {
        check_open_and_thread();
        auto* node =
            make_node<detail::TimedCallback>(std::forward<F>(f), std::forward<Args>(args)...);
        node->add_ref();  // the heap's reference
        node->deadline = when;
        arm_timer(*node);
        return TimerHandle(node);
    }
    // The one method other threads may call: schedules f(args...) on the loop and wakes it.
    template <class F, class... Args>
    Handle call_soon_threadsafe(F&& f, Args&&... args) {
        auto* node = make_node(std::forward<F>(f), std::forward<Args>(args)...);
        node->shared = true;
        node->add_ref();
        push_threadsafe(node);
        return Handle(node);
    }

    // The loop's clock (monotonic), or its virtual time under a VirtualClock.
    TimePoint time() const noexcept { return virtual_clock_ ? virtual_now_ : Clock::now(); }
    // Whether the loop runs on a virtual clock (LoopOptions::virtual_clock).
    bool has_virtual_clock() const noexcept { return virtual_clock_; }
    // Moves a virtual clock forward by `d` (trio's MockClock.jump, tokio's time::advance): the
    // timers that fall due run on the next pass. RuntimeError without a virtual clock,
    // ValueError for a negative `d`.
    void advance_time(Duration d);

    // --- signals --------------------------------------------------------------------------
    // Runs callback(args...) on the loop's thread, as a callback, each time the process
    // receives signal `sig` (asyncio's add_signal_handler). A second call for the same signal
    // replaces the callback. A signal belongs to one loop at a time: RuntimeError if another
    // loop handles it; ValueError for an invalid number; OSError for a signal that cannot be
    // caught (SIGKILL, SIGSTOP).
    template <class F, class... Args>
    void add_signal_handler(int sig, F&& callback, Args&&... args) {
        auto bound = detail::bind_callback(std::forward<F>(callback), std::forward<Args>(args)...);
        add_signal_function(sig, std::function<void()>(std::move(bound)));
    }
    // Stops handling `sig` and restores the disposition it had before add_signal_handler.
    // False if the loop did not handle it. close() removes every handler.
    bool remove_signal_handler(int sig);

    // --- executors (corio/executors.hpp) --------------------------------------------------
    // The pool to_thread() uses, created on first use (asyncio's default executor).
    // RuntimeError once shutdown_default_executor() has been called.
    ThreadPoolExecutor& default_executor();
    void set_default_executor(std::shared_ptr<ThreadPoolExecutor> executor);
    // Shuts the default executor down, waiting for its jobs on another thread so that the loop
    // keeps running meanwhile. corio::run() and Runner call it on exit; close() shuts the pool
    // down itself if it is still there (then blocking until the jobs have run).
    Coro<void> shutdown_default_executor();

    // --- watching file descriptors ------------------------------------------------------
    // Runs callback() whenever fd is readable (level-triggered), until remove_reader(fd).
    // A second add_reader for the same fd replaces the callback.
    template <class F>
    void add_reader(int fd, F&& callback) {
        add_watch(fd, true, make_node(std::forward<F>(callback)));
    }
    template <class F>
    void add_writer(int fd, F&& callback) {
        add_watch(fd, false, make_node(std::forward<F>(callback)));
    }
    // True if a callback was registered for fd.
    bool remove_reader(int fd);
    bool remove_writer(int fd);

    // --- running and stopping -----------------------------------------------------------
    // Runs until stop() is called.
    void run_forever();
    // Runs until `aw` (a Coro, Task or Future) completes; returns its result or rethrows.
    template <Awaitable A>
    run_result_t<A> run_until_complete(A&& aw);
    template <detail::NotAwaitable A>
    void run_until_complete(A&&) {
        detail::reject_non_awaitable<A>();
    }
    // Makes run_forever() return after the current pass. Loop thread only; from another
    // thread use call_soon_threadsafe([&] { loop.stop(); }).
    void stop() noexcept { stopping_ = true; }
    bool is_running() const noexcept { return running_; }
    bool is_closed() const noexcept { return closed_; }
    // Frees what the loop holds: pending callbacks, timers, and tasks that never finished
    // (their frames are destroyed, after their pending waits are withdrawn). Idempotent.
    void close();

    // --- tasks and futures --------------------------------------------------------------
    template <Awaitable A>
    Task<run_result_t<A>> create_task(A&& aw, std::string name = {});
    template <detail::NotAwaitable A>
    void create_task(A&&, std::string = {}) {
        detail::reject_non_awaitable<A>();
    }
    template <class T = void>
    Future<T> create_future();

    // --- errors and debugging -----------------------------------------------------------
    void set_exception_handler(ExceptionHandler handler) { handler_ = std::move(handler); }
    const ExceptionHandler& get_exception_handler() const noexcept { return handler_; }
    // Reports through the handler set, or the default one. Never throws.
    void call_exception_handler(const ExceptionContext& context) noexcept;
    // Writes the report to stderr.
    void default_exception_handler(const ExceptionContext& context) noexcept;

    void set_debug(bool enabled) noexcept { debug_ = enabled; }
    bool get_debug() const noexcept { return debug_; }
    // In debug mode, a step that runs longer than this is reported.
    Duration slow_callback_duration = std::chrono::milliseconds(100);

    // "epoll" or "poll".
    const char* backend_name() const noexcept;

    // Counters and times of the loop's work. Loop thread only.
    LoopStats stats() const;

    // Starts (or, with nullopt, stops) the watchdog; see WatchdogOptions. Not while running.
    void set_watchdog(std::optional<WatchdogOptions> options);
    bool has_watchdog() const noexcept { return static_cast<bool>(watchdog_); }

  private:
    friend struct detail::LoopAccess;
    friend class Handle;

    template <class Base = detail::CallbackNode, class F, class... Args>
    Base* make_node(F&& f, Args&&... args) {
        auto bound = detail::bind_callback(std::forward<F>(f), std::forward<Args>(args)...);
        Base* node = new detail::CallbackImpl<decltype(bound), Base>(std::move(bound));
        node->loop = this;
        return node;
    }

    void check_open() const {
        if (closed_) throw_closed();
    }
    // Debug mode also catches a call from a thread that is not the running loop's (asyncio's
    // _check_thread): such a call races with the loop instead of using call_soon_threadsafe.
    void check_open_and_thread() const {
        check_open();
        if (debug_) [[unlikely]]
            check_thread();
    }
    void check_thread() const;
    [[noreturn]] static void throw_closed();
    // RuntimeError unless the loop can start running now (asyncio's checks, in its order).
    void check_can_run() const;
    void arm_timer(detail::TimerNode& node);
    void disarm_timer(detail::TimerNode& node) noexcept;
    void push_threadsafe(detail::CallbackNode* node);
    void add_watch(int fd, bool read, detail::CallbackNode* node);
    bool remove_watch(int fd, bool read);
    void run_once();
    void run_ready_timed(detail::ReadyQueue::Entry e);
    void step(detail::ReadyQueue::Entry e);
    void fire_due_timers();
    void drain_threadsafe();
    int poll_timeout_ms();
    void jump_to_next_timer() noexcept;
    void abandon_on_close(detail::FutureCore& c) noexcept;

    struct Watch;
    struct TimerHeap {
        std::vector<detail::TimerNode*> heap;
        std::uint64_t next_seq = 0;
        void push(detail::TimerNode* n);
        void remove(detail::TimerNode* n) noexcept;
        detail::TimerNode* top() const noexcept { return heap.empty() ? nullptr : heap.front(); }
        void sift_up(std::size_t i) noexcept;
        void sift_down(std::size_t i) noexcept;
    };

    detail::ReadyQueue ready_;
    TimerHeap timers_;
    std::unique_ptr<detail::Backend> backend_;
    bool running_ = false;
    bool closed_ = false;
    bool stopping_ = false;
    bool debug_ = false;
    bool virtual_clock_ = false;
    // The running thread's corio::detail::t_state, an identity for the thread (debug checks).
    std::atomic<const void*> running_thread_{nullptr};
    Duration autojump_threshold_{};
    TimePoint virtual_now_{};
    unsigned passes_since_poll_ = 0;

    // stats(): plain counters, and real time measured around each poll only (a clock read per
    // step would cost the hot paths; debug mode times the steps anyway).
    std::uint64_t stat_iterations_ = 0;
    std::uint64_t stat_polls_ = 0;
    std::uint64_t stat_steps_[3] = {0, 0, 0};  // by detail::RunKind
    Duration stat_polling_{};
    Duration stat_run_total_{};  // of run_forever() calls that have returned
    TimePoint run_started_{};    // of the current run_forever() (real time)
    Duration longest_step_{};
    std::string longest_step_task_;

    std::mutex ts_mutex_;
    std::vector<detail::CallbackNode*> ts_queue_;  // guarded by ts_mutex_
    bool ts_closed_ = false;                       // guarded by ts_mutex_

    // Every live future and task of this loop, for all_tasks() and for close(), which frees
    // the pending ones and detaches the rest from the loop.
    std::vector<detail::FutureCore*> cores_;
    std::uint32_t next_task_id_ = 1;

    std::unordered_map<int, Watch*> readers_;
    std::unordered_map<int, Watch*> writers_;

    ExceptionHandler handler_;

    std::shared_ptr<ThreadPoolExecutor> default_executor_;
    bool default_executor_shut_down_ = false;

    // SIGINT as corio::run() handles it: the signal handler only sets the flag and wakes the
    // loop (both async-signal-safe); the loop then calls on_sigint_.
    std::atomic<bool> sigint_pending_{false};
    std::function<void()> on_sigint_;

    // add_signal_handler: the C handler marks the signal pending (process-wide, per signal) and
    // sets signal_pending_; the loop then queues the callbacks of the signals that arrived.
    std::atomic<bool> signal_pending_{false};
    std::unordered_map<int, std::shared_ptr<std::function<void()>>> signal_handlers_;
    void add_signal_function(int sig, std::function<void()> fn);
    void dispatch_signals();

    // Watches this loop's child processes (corio/subprocess.hpp); created with the first one.
    std::shared_ptr<detail::ChildWatcher> child_watcher_;

    std::unique_ptr<detail::Watchdog> watchdog_;
    bool monitored_ = false;  // registered with the process's monitor endpoint
};

// The loop running on this thread. Throws RuntimeError("no running event loop") outside one.
EventLoop& get_running_loop();

namespace detail {

// The loop's internals that corio's own awaiters use; not for users.
struct LoopAccess {
    static void schedule(EventLoop& loop, Runnable* r, RunKind kind) noexcept {
        loop.ready_.push(r, kind);
    }
    static void arm(EventLoop& loop, TimerNode& t) { loop.arm_timer(t); }
    static void disarm(EventLoop& loop, TimerNode& t) noexcept { loop.disarm_timer(t); }
    static bool submit(EventLoop& loop, IoOp& op);
    static void withdraw(EventLoop& loop, IoOp& op) noexcept;
    // Before closing fd: its pending operations complete with -err.
    static void forget(EventLoop& loop, int fd, int err) noexcept;
    static void register_core(EventLoop& loop, FutureCore& c) {
        c.loop = &loop;
        c.registry_index = static_cast<std::uint32_t>(loop.cores_.size());
        loop.cores_.push_back(&c);
    }
    static void unregister_core(FutureCore& c) noexcept {
        if (c.loop == nullptr) return;
        auto& v = c.loop->cores_;
        FutureCore* last = v.back();
        v[c.registry_index] = last;
        last->registry_index = c.registry_index;
        v.pop_back();
        c.loop = nullptr;
    }
    static const std::vector<FutureCore*>& cores(EventLoop& loop) noexcept { return loop.cores_; }
    static std::uint32_t next_task_id(EventLoop& loop) noexcept { return loop.next_task_id_++; }
    static std::shared_ptr<ChildWatcher>& child_watcher(EventLoop& loop) noexcept {
        return loop.child_watcher_;
    }
    static void set_sigint_callback(EventLoop& loop, std::function<void()> fn) {
        loop.on_sigint_ = std::move(fn);
    }
    // Async-signal-safe.
    static void notify_sigint(EventLoop& loop) noexcept;
    static void notify_signal(EventLoop& loop) noexcept;
    // What is still scheduled besides tasks (for corio::testing): callbacks queued and not
    // cancelled, call_later/call_at timers armed, descriptors watched.
    struct Pending {
        std::size_t callbacks = 0;
        std::size_t timers = 0;
        std::size_t readers = 0;
        std::size_t writers = 0;
    };
    static Pending pending(EventLoop& loop);
    // stats() without the longest step's task name: allocates nothing.
    static LoopStats counters(const EventLoop& loop) noexcept;
};

inline void TaskCore::wake() noexcept {
    set_waiter(nullptr);
    queued = true;
    LoopAccess::schedule(*loop, this, RunKind::Task);
}

EventLoop& running_loop_or_throw();

// Kills and reaps the children the loop still watches (src/subprocess.cpp); for close().
void close_child_watcher(ChildWatcher& watcher) noexcept;

// Debug mode: reports a resource dropped without having been closed (asyncio's "unclosed ..."
// ResourceWarning), naming the running task and where it is.
void report_unclosed(const char* what, const std::string& details) noexcept;
// Debug mode: reports the Sockets created under `loop` and still open (src/sockets.cpp); for
// close().
void report_sockets_open_at_close(EventLoop& loop) noexcept;
// Whether the loop running on this thread is in debug mode (what such reports check first).
inline bool running_in_debug_mode() noexcept {
    return t_state.running_loop != nullptr && t_state.running_loop->get_debug();
}

// The default exception handler's output, usable without a loop.
void print_exception_context(const ExceptionContext& context) noexcept;

}  // namespace detail
}  // namespace corio
