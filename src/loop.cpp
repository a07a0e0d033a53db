#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend.hpp"
#include "corio/coro.hpp"
#include "corio/events.hpp"
#include "corio/executors.hpp"
#include "corio/graph.hpp"
#include "monitor.hpp"
#include "watchdog.hpp"

namespace corio {
namespace detail {
namespace {

// I/O gets polled at least this often while the ready queue never drains, so that a busy loop
// stays fair to descriptors and to other threads (tokio uses the same kind of bound).
constexpr unsigned kPollEvery = 61;

void invoke_callback(CallbackNode* node) {
    if (node->cancelled) return;
    try {
        node->invoke();
    } catch (...) {
        node->loop->call_exception_handler(
            ExceptionContext{"Exception in callback", std::current_exception(), {}, {}});
    }
}

void callback_step(Runnable* r) {
    auto* node = static_cast<CallbackNode*>(r);
    invoke_callback(node);
    // What the callback captured is destroyed here, on the loop's thread, even when another
    // thread holds the last Handle (call_soon_threadsafe).
    node->drop_callable();
    node->release();  // the queue's reference
}

void callback_timer_fire(TimerNode* t) {
    auto* node = static_cast<TimedCallback*>(t);
    // The heap's reference passes to the ready queue.
    LoopAccess::schedule(*node->loop, node, RunKind::Callback);
}

bool env_flag(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

// CORIO_VIRTUAL_CLOCK: unset, empty or 0 for real time; 1 for a virtual clock with autojump
// threshold 0; `<n>ms` for a threshold of n milliseconds.
std::optional<VirtualClock> virtual_clock_from_env() {
    const char* v = std::getenv("CORIO_VIRTUAL_CLOCK");
    if (v == nullptr || *v == '\0' || std::string_view(v) == "0") return std::nullopt;
    std::string_view text(v);
    if (text == "1") return VirtualClock{};
    if (text.size() > 2 && text.substr(text.size() - 2) == "ms") {
        std::string_view digits = text.substr(0, text.size() - 2);
        long ms = 0;
        bool ok = digits.size() <= 9;
        for (char c : digits) {
            if (c < '0' || c > '9') ok = false;
            ms = ms * 10 + (c - '0');
        }
        if (ok) return VirtualClock{std::chrono::milliseconds(ms)};
    }
    throw RuntimeError("CORIO_VIRTUAL_CLOCK must be 0, 1 or a threshold such as 20ms, not '" +
                       std::string(text) + "'");
}

}  // namespace

CallbackNode::CallbackNode() noexcept = default;

TimedCallback::TimedCallback() noexcept {
    timed = true;
    fire = &callback_timer_fire;
}

EventLoop& running_loop_or_throw() {
    if (t_state.running_loop == nullptr) throw RuntimeError("no running event loop");
    return *t_state.running_loop;
}

}  // namespace detail

// A watched descriptor (add_reader/add_writer): a persistent readiness op and the callback
// it queues, at most once per pass.
struct EventLoop::Watch : detail::Runnable, detail::IoOp {
    detail::CallbackNode* callback = nullptr;
    EventLoop* loop = nullptr;
    bool queued = false;
    bool removed = false;

    ~Watch() {
        if (callback != nullptr) callback->release();
    }

    static void on_ready(detail::IoOp* op) {
        auto* w = static_cast<Watch*>(op);
        if (!w->queued) {
            w->queued = true;
            detail::LoopAccess::schedule(*w->loop, w, detail::RunKind::Watch);
        }
    }
    static void step(detail::Runnable* r) {
        auto* w = static_cast<Watch*>(r);
        w->queued = false;
        if (w->removed) {
            delete w;
            return;
        }
        detail::CallbackNode* cb = w->callback;
        cb->add_ref();  // the callback may remove (and free) the watch
        detail::invoke_callback(cb);
        cb->release();
    }
};

EventLoop::EventLoop(LoopOptions options)
    : backend_(detail::make_backend(options.backend)),
      debug_(options.debug ? *options.debug : detail::env_flag("CORIO_DEBUG")) {
    std::optional<VirtualClock> clock =
        options.virtual_clock ? options.virtual_clock : detail::virtual_clock_from_env();
    if (clock) {
        if (clock->autojump_threshold < Duration::zero())
            throw ValueError("VirtualClock::autojump_threshold must not be negative");
        virtual_clock_ = true;
        autojump_threshold_ = clock->autojump_threshold;
        virtual_now_ = Clock::now();
    }
    if (options.watchdog) {
        set_watchdog(std::move(options.watchdog));
    } else if (const char* ms = std::getenv("CORIO_WATCHDOG"); ms != nullptr && *ms != '\0') {
        char* end = nullptr;
        const long value = std::strtol(ms, &end, 10);
        if (*end != '\0' || value <= 0)
            throw RuntimeError(std::string("CORIO_WATCHDOG must be a threshold in milliseconds, "
                                           "not '") +
                               ms + "'");
        set_watchdog(WatchdogOptions{std::chrono::milliseconds(value)});
    } else if (debug_) {
        set_watchdog(WatchdogOptions{});
    }
    if (detail::monitor_wanted(options.monitor ? &*options.monitor : nullptr, debug_,
                               watchdog_ != nullptr)) {
        detail::monitor_attach(*this);
        monitored_ = true;
    }
}

void EventLoop::set_watchdog(std::optional<WatchdogOptions> options) {
    if (running_) throw RuntimeError("set_watchdog() cannot be called while the loop runs");
    check_open();
    // Made first: options it rejects leave the current watchdog in place.
    std::unique_ptr<detail::Watchdog> next;
    if (options) next = std::make_unique<detail::Watchdog>(std::move(*options));
    watchdog_ = std::move(next);
}

void EventLoop::advance_time(Duration d) {
    if (!virtual_clock_) throw RuntimeError("advance_time() needs a loop with a virtual clock");
    if (d < Duration::zero()) throw ValueError("advance_time() cannot move time backwards");
    virtual_now_ += d;
}

EventLoop::~EventLoop() {
    if (running_) {
        std::fputs("corio: an EventLoop was destroyed while running\n", stderr);
        std::abort();
    }
    close();
}

const char* EventLoop::backend_name() const noexcept {
    return backend_ ? backend_->name() : "closed";
}

void EventLoop::throw_closed() {
    throw RuntimeError("Event loop is closed");
}

LoopStats EventLoop::stats() const {
    LoopStats s = detail::LoopAccess::counters(*this);
    s.longest_step_task = longest_step_task_;
    return s;
}

// Allocates nothing (the monitor calls it in a signal handler).
LoopStats detail::LoopAccess::counters(const EventLoop& loop) noexcept {
    LoopStats s;
    s.iterations = loop.stat_iterations_;
    s.polls = loop.stat_polls_;
    s.task_steps = loop.stat_steps_[static_cast<std::size_t>(RunKind::Task)];
    s.callbacks = loop.stat_steps_[static_cast<std::size_t>(RunKind::Callback)] +
                  loop.stat_steps_[static_cast<std::size_t>(RunKind::Watch)];
    Duration total = loop.stat_run_total_;
    if (loop.running_) total += Clock::now() - loop.run_started_;
    s.time_polling = loop.stat_polling_;
    s.time_running = total > s.time_polling ? total - s.time_polling : Duration::zero();
    s.longest_step = loop.longest_step_;
    if (loop.watchdog_) loop.watchdog_->stall_stats(s);
    return s;
}

void EventLoop::check_thread() const {
    const void* owner = running_thread_.load(std::memory_order_relaxed);
    if (owner != nullptr && owner != &detail::t_state) {
        throw RuntimeError(
            "Non-thread-safe operation invoked on an event loop other than the current one "
            "(from another thread, use call_soon_threadsafe)");
    }
}

void Handle::cancel() noexcept {
    if (!node_ || node_->cancelled) return;
    node_->cancelled = true;
    node_->drop_callable();
    if (!node_->timed) return;
    auto* timed = static_cast<detail::TimedCallback*>(node_.get());
    if (timed->armed()) {
        node_->loop->disarm_timer(*timed);
        node_->release();  // the heap's reference
    }
}

// --- timers: a 4-ary min-heap on (deadline, seq), each node knowing its index ------------

namespace {
bool earlier(const detail::TimerNode* a, const detail::TimerNode* b) noexcept {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}
}  // namespace

void EventLoop::TimerHeap::sift_up(std::size_t i) noexcept {
    detail::TimerNode* n = heap[i];
    while (i > 0) {
        std::size_t parent = (i - 1) / 4;
        if (!earlier(n, heap[parent])) break;
        heap[i] = heap[parent];
        heap[i]->heap_index = i;
        i = parent;
    }
    heap[i] = n;
    n->heap_index = i;
}

void EventLoop::TimerHeap::sift_down(std::size_t i) noexcept {
    detail::TimerNode* n = heap[i];
    std::size_t size = heap.size();
    for (;;) {
        std::size_t first = 4 * i + 1;
        if (first >= size) break;
        std::size_t best = first;
        std::size_t end = first + 4 < size ? first + 4 : size;
        for (std::size_t c = first + 1; c < end; ++c) {
            if (earlier(heap[c], heap[best])) best = c;
        }
        if (!earlier(heap[best], n)) break;
        heap[i] = heap[best];
        heap[i]->heap_index = i;
        i = best;
    }
    heap[i] = n;
    n->heap_index = i;
}

void EventLoop::TimerHeap::push(detail::TimerNode* n) {
    n->seq = next_seq++;
    heap.push_back(n);
    sift_up(heap.size() - 1);
}

void EventLoop::TimerHeap::remove(detail::TimerNode* n) noexcept {
    std::size_t i = n->heap_index;
    n->heap_index = detail::TimerNode::kNotInHeap;
    detail::TimerNode* last = heap.back();
    heap.pop_back();
    if (last == n) return;
    heap[i] = last;
    last->heap_index = i;
    if (i > 0 && earlier(last, heap[(i - 1) / 4])) {
        sift_up(i);
    } else {
        sift_down(i);
    }
}

void EventLoop::arm_timer(detail::TimerNode& node) {
    check_open();
    timers_.push(&node);
}

void EventLoop::disarm_timer(detail::TimerNode& node) noexcept {
    if (node.armed()) timers_.remove(&node);
}

void EventLoop::fire_due_timers() {
    TimePoint now = time();
    while (detail::TimerNode* t = timers_.top()) {
        if (t->deadline > now) break;
        timers_.remove(t);
        t->fire(t);
    }
}

int EventLoop::poll_timeout_ms() {
    detail::TimerNode* t = timers_.top();
    if (t == nullptr) return -1;
    Duration left = t->deadline - time();
    if (left <= Duration::zero()) return 0;
    // A virtual clock waits only the autojump threshold for I/O, then jumps (run_once).
    if (virtual_clock_) left = autojump_threshold_;
    // Round up: waking a hair early would only cost another pass.
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// Nothing became ready while the loop waited the autojump threshold: time passes at once.
void EventLoop::jump_to_next_timer() noexcept {
    if (detail::TimerNode* t = timers_.top(); t != nullptr && t->deadline > virtual_now_)
        virtual_now_ = t->deadline;
}

detail::LoopAccess::Pending detail::LoopAccess::pending(EventLoop& loop) {
    Pending p;
    loop.ready_.for_each([&p](Runnable* r, RunKind kind) {
        if (kind == RunKind::Callback && !static_cast<CallbackNode*>(r)->cancelled) ++p.callbacks;
    });
    for (TimerNode* t : loop.timers_.heap) {
        if (t->fire == &callback_timer_fire && !static_cast<TimedCallback*>(t)->cancelled)
            ++p.timers;
    }
    {
        std::lock_guard lock(loop.ts_mutex_);
        for (CallbackNode* node : loop.ts_queue_) p.callbacks += node->cancelled ? 0 : 1;
    }
    p.readers = loop.readers_.size();
    p.writers = loop.writers_.size();
    return p;
}

// --- other threads -----------------------------------------------------------------------

void EventLoop::push_threadsafe(detail::CallbackNode* node) {
    std::lock_guard lock(ts_mutex_);
    if (ts_closed_) {
        node->release();
        node->release();
        throw RuntimeError("Event loop is closed");
    }
    bool was_empty = ts_queue_.empty();
    ts_queue_.push_back(node);
    // One wake-up per batch: the loop reads the eventfd before it takes the batch, so a push
    // that finds the queue non-empty is sure to be seen.
    if (was_empty) backend_->wakeup();
}

void EventLoop::drain_threadsafe() {
    if (sigint_pending_.exchange(false) && on_sigint_) on_sigint_();
    if (signal_pending_.exchange(false)) dispatch_signals();
    std::vector<detail::CallbackNode*> batch;
    {
        std::lock_guard lock(ts_mutex_);
        batch.swap(ts_queue_);
    }
    for (detail::CallbackNode* node : batch) ready_.push(node, detail::RunKind::Callback);
}

void detail::LoopAccess::notify_sigint(EventLoop& loop) noexcept {
    loop.sigint_pending_.store(true);
    loop.backend_->wakeup();
}

void detail::LoopAccess::notify_signal(EventLoop& loop) noexcept {
    loop.signal_pending_.store(true);
    loop.backend_->wakeup();
}

// --- descriptors ---------------------------------------------------------------------------

void EventLoop::add_watch(int fd, bool read, detail::CallbackNode* node) {
    try {
        check_open_and_thread();
    } catch (...) {
        node->release();
        throw;
    }
    auto& map = read ? readers_ : writers_;
    if (auto it = map.find(fd); it != map.end()) {
        it->second->callback->release();
        it->second->callback = node;
        return;
    }
    auto w = std::make_unique<Watch>();
    w->loop = this;
    w->callback = node;
    w->kind = read ? detail::IoOp::Kind::Readable : detail::IoOp::Kind::Writable;
    w->persistent = true;
    w->fd = fd;
    w->complete = &Watch::on_ready;
    backend_->submit(*w);
    map.emplace(fd, w.release());
}

bool EventLoop::remove_watch(int fd, bool read) {
    if (closed_) return false;
    if (debug_) [[unlikely]]
        check_thread();
    auto& map = read ? readers_ : writers_;
    auto it = map.find(fd);
    if (it == map.end()) return false;
    Watch* w = it->second;
    map.erase(it);
    backend_->withdraw(*w);
    if (w->queued) {
        w->removed = true;  // freed when its queued step runs (or at close)
    } else {
        delete w;
    }
    return true;
}

bool EventLoop::remove_reader(int fd) {
    return remove_watch(fd, true);
}
bool EventLoop::remove_writer(int fd) {
    return remove_watch(fd, false);
}

bool detail::LoopAccess::submit(EventLoop& loop, IoOp& op) {
    loop.check_open();
    return loop.backend_->submit(op);
}

void detail::LoopAccess::withdraw(EventLoop& loop, IoOp& op) noexcept {
    if (loop.backend_) loop.backend_->withdraw(op);
}

void detail::LoopAccess::forget(EventLoop& loop, int fd, int err) noexcept {
    if (loop.backend_) loop.backend_->forget(fd, err);
}

// --- running -------------------------------------------------------------------------------

void EventLoop::check_can_run() const {
    check_open();
    if (running_) throw RuntimeError("This event loop is already running");
    if (detail::t_state.running_loop != nullptr)
        throw RuntimeError("Cannot run the event loop while another loop is running");
}

void EventLoop::run_forever() {
    check_can_run();
    detail::t_state.running_loop = this;
    running_ = true;
    running_thread_.store(&detail::t_state, std::memory_order_relaxed);
    run_started_ = Clock::now();
    if (watchdog_) watchdog_->loop_started(run_started_);
    if (monitored_) detail::monitor_loop_running(*this, true);
    struct Reset {
        EventLoop* loop;
        ~Reset() {
            if (loop->watchdog_) loop->watchdog_->loop_stopped();
            if (loop->monitored_) detail::monitor_loop_running(*loop, false);
            loop->stat_run_total_ += Clock::now() - loop->run_started_;
            loop->running_thread_.store(nullptr, std::memory_order_relaxed);
            loop->stopping_ = false;
            loop->running_ = false;
            detail::t_state.running_loop = nullptr;
            detail::t_state.current_task = nullptr;
        }
    } reset{this};
    for (;;) {
        run_once();
        if (stopping_) break;
    }
}

inline void EventLoop::step(detail::ReadyQueue::Entry e) {
    ++stat_steps_[static_cast<std::size_t>(e.kind)];
    if (e.kind == detail::RunKind::Task) {
        detail::task_step(e.runnable);
    } else if (e.kind == detail::RunKind::Callback) {
        detail::callback_step(e.runnable);
    } else {
        Watch::step(e.runnable);
    }
}

void EventLoop::run_once() {
    ++stat_iterations_;
    if (ready_.empty() || passes_since_poll_ >= detail::kPollEvery) {
        passes_since_poll_ = 0;
        const bool idle = ready_.empty() && !stopping_;
        int timeout = idle ? poll_timeout_ms() : 0;
        if (watchdog_) watchdog_->before_poll(timeout);
        const TimePoint before = Clock::now();
        const bool woken = backend_->poll(timeout);
        const TimePoint after = Clock::now();
        if (watchdog_) watchdog_->after_poll(after);
        stat_polling_ += after - before;
        ++stat_polls_;
        if (woken) drain_threadsafe();
        if (virtual_clock_ && idle && ready_.empty()) jump_to_next_timer();
    } else {
        ++passes_since_poll_;
    }
    if (timers_.top() != nullptr) fire_due_timers();
    // Only what is ready now: what this pass schedules runs on the next one.
    for (std::size_t n = ready_.size(); n > 0; --n) {
        if (debug_) [[unlikely]] {
            run_ready_timed(ready_.pop());
        } else {
            step(ready_.pop());
        }
    }
}

// Debug mode: reports the steps that hold the loop too long. A task's report says between which
// two co_awaits it ran (what held the loop is in between), and its call graph.
void EventLoop::run_ready_timed(detail::ReadyQueue::Entry e) {
    detail::TaskCore* task = nullptr;
    detail::Ref<detail::TaskCore> keep;  // the step may finish the task and drop the loop's ref
    SourceLocation from;
    bool fresh = false;  // its first step: it starts at the top of its coroutine
    if (e.kind == detail::RunKind::Task) {
        task = static_cast<detail::TaskCore*>(e.runnable);
        keep = detail::Ref<detail::TaskCore>(task);
        from = detail::innermost_location(*task);
        fresh = !task->started;
    }
    // Real time, also under a virtual clock: a slow step is slow on the wall.
    const TimePoint start = Clock::now();
    step(e);
    const Duration took = Clock::now() - start;
    if (took > longest_step_) {
        longest_step_ = took;
        longest_step_task_ = task != nullptr ? task->name() : std::string();
    }
    if (took < slow_callback_duration) return;
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.3f", std::chrono::duration<double>(took).count());
    ExceptionContext ctx;
    if (task == nullptr) {
        ctx.message = std::string("Executing callback took ") + seconds + " seconds";
    } else {
        ctx.task = task->name();
        ctx.coroutine = task->coroutine();
        std::string span = fresh
                               ? " (from the start of " + std::string(from.function) + "() to "
                               : " (from " + std::string(detail::base_name(from.file)) + ":" +
                                     std::to_string(from.line) + " in " + from.function + "() to ";
        if (task->done()) {
            span += "its end)";
            ctx.location = from;
        } else {
            ctx.location = detail::innermost_location(*task);
            span += std::string(detail::base_name(ctx.location.file)) + ":" +
                    std::to_string(ctx.location.line) + " in " + ctx.location.function + "())";
            ctx.call_graph = format_call_graph(AnyTask(task));
        }
        ctx.message = "Executing task " + ctx.task + " took " + seconds + " seconds" + span;
    }
    call_exception_handler(ctx);
}

// --- closing -------------------------------------------------------------------------------

void EventLoop::close() {
    if (running_) throw RuntimeError("Cannot close a running event loop");
    if (closed_) return;
    closed_ = true;
    watchdog_.reset();
    if (monitored_) {
        detail::monitor_detach(*this);
        monitored_ = false;
    }
    // As asyncio: the default executor takes no new work. Its running jobs finish on their
    // threads (their outcomes, posted to a closed loop, are dropped); if this was the last
    // reference, the pool's destructor waits for them.
    if (default_executor_) {
        std::shared_ptr<ThreadPoolExecutor> executor = std::move(default_executor_);
        executor->shutdown(false);
    }
    while (!signal_handlers_.empty()) remove_signal_handler(signal_handlers_.begin()->first);
    {
        std::lock_guard lock(ts_mutex_);
        ts_closed_ = true;
    }
    // Nothing may be scheduled once we start freeing; tasks are handled below.
    while (!ready_.empty()) {
        detail::ReadyQueue::Entry e = ready_.pop();
        if (e.kind == detail::RunKind::Callback) {
            auto* node = static_cast<detail::CallbackNode*>(e.runnable);
            node->drop_callable();
            node->release();
        } else if (e.kind == detail::RunKind::Watch) {
            auto* w = static_cast<Watch*>(e.runnable);
            w->queued = false;
            if (w->removed) delete w;
        } else {
            static_cast<detail::TaskCore*>(e.runnable)->queued = false;
        }
    }
    // Pending tasks: withdraw what they wait on (their frames' destructors do that, while the
    // timers and the backend are still here), mark them cancelled, free those nobody holds.
    // Futures and tasks that users still hold are detached from the loop.
    std::vector<detail::FutureCore*> live = cores_;
    for (detail::FutureCore* c : live) c->add_ref();
    for (detail::FutureCore* c : live) abandon_on_close(*c);
    // Frames are freed while they can still reach the loop; what survives is detached after.
    for (detail::FutureCore* c : live) c->release();
    std::vector<detail::FutureCore*> held = cores_;
    for (detail::FutureCore* c : held) detail::LoopAccess::unregister_core(*c);
    // Timers left are callbacks (call_later) or belong to frames still held by a Task handle;
    // mark them all disarmed so that those frames never touch the heap again.
    for (detail::TimerNode* t : timers_.heap) {
        t->heap_index = detail::TimerNode::kNotInHeap;
        if (t->fire == &detail::callback_timer_fire) {
            auto* node = static_cast<detail::TimedCallback*>(t);
            node->drop_callable();
            node->release();
        }
    }
    timers_.heap.clear();
    for (auto* map : {&readers_, &writers_}) {
        for (auto& [fd, w] : *map) {
            backend_->withdraw(*w);
            delete w;
        }
        map->clear();
    }
    // A closed loop can no longer see its children exit: kill and reap the ones still running
    // rather than leave them, and later their zombies, behind.
    if (child_watcher_) detail::close_child_watcher(*child_watcher_);
    std::vector<detail::CallbackNode*> leftover;
    {
        std::lock_guard lock(ts_mutex_);
        leftover.swap(ts_queue_);
    }
    for (detail::CallbackNode* node : leftover) {
        node->drop_callable();
        node->release();
    }
    backend_.reset();  // unlinks any I/O op a surviving frame still holds
    detail::report_sockets_open_at_close(*this);
}

void EventLoop::abandon_on_close(detail::FutureCore& c) noexcept {
    if (c.done()) return;
    // Its waiters are pending tasks that are being freed too: nobody is to be woken.
    c.waiters.clear();
    c.state = detail::FutureState::Cancelled;
    c.set_error(std::make_exception_ptr(CancelledError("the event loop was closed")));
    c.exception_retrieved = true;
    if (c.kind != detail::FutureCore::Kind::Task) return;
    auto& t = static_cast<detail::TaskCore&>(c);
    call_exception_handler(
        ExceptionContext{"Task was destroyed but it is pending", nullptr, t.name(), t.coroutine()});
    if (!t.queued) t.set_waiter(nullptr);
    t.release();  // the loop's reference
}

// --- errors --------------------------------------------------------------------------------

void EventLoop::call_exception_handler(const ExceptionContext& context) noexcept {
    if (!handler_) {
        default_exception_handler(context);
        return;
    }
    try {
        handler_(*this, context);
    } catch (...) {
        default_exception_handler(ExceptionContext{
            "Unhandled error in exception handler", std::current_exception(), {}, {}});
        default_exception_handler(context);
    }
}

void EventLoop::default_exception_handler(const ExceptionContext& context) noexcept {
    detail::print_exception_context(context);
}

void detail::print_exception_context(const ExceptionContext& context) noexcept {
    try {
        std::string text = "corio: " + context.message + "\n";
        if (!context.task.empty()) {
            text += "  task: " + context.task;
            if (context.coroutine.line != 0) {
                text += " (coroutine " + std::string(context.coroutine.function) + " at " +
                        context.coroutine.file + ":" + std::to_string(context.coroutine.line) + ")";
            }
            text += "\n";
        }
        if (context.location.line != 0) {
            text += "  at: " + std::string(context.location.function) + " at " +
                    context.location.file + ":" + std::to_string(context.location.line) + "\n";
        }
        if (context.exception) text += "  exception: " + describe(context.exception) + "\n";
        if (!context.call_graph.empty()) {
            std::size_t begin = 0;
            while (begin < context.call_graph.size()) {
                std::size_t end = context.call_graph.find('\n', begin);
                if (end == std::string::npos) end = context.call_graph.size();
                text += "  " + context.call_graph.substr(begin, end - begin) + "\n";
                begin = end + 1;
            }
        }
        std::fputs(text.c_str(), stderr);
    } catch (...) {
        std::fputs("corio: an error occurred and could not be formatted\n", stderr);
    }
}

EventLoop& get_running_loop() {
    return detail::running_loop_or_throw();
}

}  // namespace corio
