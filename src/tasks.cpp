#include <cstdint>
#include <string>
#include <utility>

#include "corio/coro.hpp"
#include "corio/events.hpp"
#include "corio/graph.hpp"
#include "corio/tasks.hpp"

namespace corio::detail {
namespace {

// A done callback waiting in the ready queue keeps its future alive.
using CoreRef = Ref<FutureCore>;

const std::string kEmpty;

// A task's outcome: a CancelledError makes it cancelled, anything else finished.
void record_outcome(TaskCore& t, std::exception_ptr e) noexcept {
    if (e && is_cancellation(e)) {
        t.set_cancelled(std::move(e));
    } else {
        t.set_finished(std::move(e));
    }
}

}  // namespace

FutureCore::~FutureCore() {
    LoopAccess::unregister_core(*this);
    delete extra;
}

void FutureCore::dispose() noexcept {
    report_unretrieved();
    if (kind == Kind::Task) {
        auto& p = static_cast<PromiseBase&>(static_cast<TaskCore&>(*this));
        std::coroutine_handle<PromiseBase>::from_promise(p).destroy();
    } else {
        auto* box = static_cast<FutureBoxBase*>(this);
        box->destroy(box);
    }
}

FutureExtra& FutureCore::ensure_extra() {
    if (extra == nullptr) extra = new FutureExtra;
    return *extra;
}

const std::string& FutureCore::cancel_message() const noexcept {
    return extra != nullptr ? extra->cancel_message : kEmpty;
}

void FutureCore::set_error(std::exception_ptr e) {
    if (e) {
        ensure_extra().exception = std::move(e);
    } else if (extra != nullptr) {
        extra->exception = nullptr;
    }
}

std::exception_ptr FutureCore::make_cancelled_error() const {
    return std::make_exception_ptr(CancelledError(cancel_message()));
}

bool FutureCore::cancel(const std::string& message) {
    if (kind == Kind::Task) return static_cast<TaskCore*>(this)->request_cancel(message);
    if (done()) return false;
    if (!message.empty()) ensure_extra().cancel_message = message;
    set_cancelled(make_cancelled_error());
    return true;
}

void FutureCore::set_finished(std::exception_ptr e) {
    state = FutureState::Finished;
    set_error(std::move(e));
    complete();
}

void FutureCore::set_cancelled(std::exception_ptr cancelled_error) {
    state = FutureState::Cancelled;
    set_error(std::move(cancelled_error));
    complete();
}

void FutureCore::complete() {
    waiters.oldest_first();
    while (DoneWaiter* w = waiters.take()) w->notify(w, *this);
    if (extra == nullptr || extra->callbacks.empty() || loop == nullptr) return;
    auto callbacks = std::move(extra->callbacks);
    extra->callbacks.clear();
    for (auto& entry : callbacks) {
        try {
            schedule_done_callback(std::move(entry.second));
        } catch (...) {
            loop->call_exception_handler(ExceptionContext{
                "could not schedule a done callback", std::current_exception(), {}, {}});
        }
    }
}

// Done callbacks run from the loop, as asyncio runs them, never inside the completion.
void FutureCore::schedule_done_callback(std::function<void(FutureCore&)> fn) {
    loop->call_soon([ref = CoreRef(this), fn = std::move(fn)]() mutable { fn(*ref); });
}

std::exception_ptr FutureCore::take_exception() noexcept {
    exception_retrieved = true;
    return error();
}

void FutureCore::check_result() {
    if (!done()) throw InvalidStateError("Result is not set.");
    exception_retrieved = true;
    if (failed()) std::rethrow_exception(extra->exception);
}

std::uint64_t FutureCore::add_done_callback(std::function<void(FutureCore&)> fn) {
    FutureExtra& x = ensure_extra();
    std::uint64_t id = x.next_callback_id++;
    if (done()) {
        if (loop == nullptr) throw RuntimeError("Event loop is closed");
        schedule_done_callback(std::move(fn));
    } else {
        x.callbacks.emplace_back(id, std::move(fn));
    }
    return id;
}

std::size_t FutureCore::remove_done_callback(std::uint64_t id) noexcept {
    if (extra == nullptr) return 0;
    auto& cbs = extra->callbacks;
    std::size_t before = cbs.size();
    std::erase_if(cbs, [id](const auto& e) { return e.first == id; });
    return before - cbs.size();
}

void FutureCore::report_unretrieved() noexcept {
    if (state != FutureState::Finished || !failed() || exception_retrieved) return;
    ExceptionContext ctx;
    ctx.exception = error();
    if (kind == Kind::Task) {
        auto& t = static_cast<TaskCore&>(*this);
        ctx.message = "Task exception was never retrieved";
        try {
            ctx.task = t.name();
        } catch (...) {
        }
        ctx.coroutine = t.coroutine();
    } else {
        ctx.message = "Future exception was never retrieved";
    }
    if (loop != nullptr) {
        loop->call_exception_handler(ctx);
    } else {
        print_exception_context(ctx);
    }
}

namespace {

// A debug-mode report about something dropped: `location` is where it comes from (if known),
// and the running task, when there is one, says where it was dropped.
void report_dropped(const std::string& message, SourceLocation location) noexcept {
    EventLoop* loop = t_state.running_loop;
    if (loop == nullptr || !loop->get_debug()) return;
    try {
        ExceptionContext ctx;
        ctx.message = message;
        if (TaskCore* t = t_state.current_task) {
            ctx.task = t->name();
            ctx.coroutine = t->coroutine();
            ctx.call_graph = format_call_graph(AnyTask(t));
            if (location.line == 0) location = innermost_location(*t);
        }
        ctx.location = location;
        loop->call_exception_handler(ctx);
    } catch (...) {
        // A report must never turn a destructor into a crash.
    }
}

}  // namespace

void report_never_awaited(const PromiseBase& p) noexcept {
    if (t_state.running_loop == nullptr || !t_state.running_loop->get_debug()) return;
    report_dropped(std::string("coroutine '") + p.def_function + "' was never awaited", p.where());
}

void report_unclosed(const char* what, const std::string& details) noexcept {
    if (t_state.running_loop == nullptr || !t_state.running_loop->get_debug()) return;
    try {
        report_dropped(std::string("unclosed ") + what + (details.empty() ? "" : " " + details),
                       SourceLocation{});
    } catch (...) {
    }
}

bool TaskCore::request_cancel(const std::string& message) {
    if (done()) return false;
    if (cancel_requests < UINT16_MAX) ++cancel_requests;
    if (!message.empty()) ensure_extra().cancel_message = message;
    if (Waiter* w = waiter(); w != nullptr && !passing_cancel) {
        passing_cancel = true;
        const bool taken = w->cancel(w, *this);
        passing_cancel = false;
        if (taken) return true;
    }
    must_cancel = true;
    return true;
}

void TaskCore::throw_cancelled() {
    must_cancel = false;
    throw CancelledError(cancel_message());
}

std::string TaskCore::name() const {
    if (extra != nullptr && !extra->name.empty()) return extra->name;
    return "Task-" + std::to_string(id);
}

SourceLocation TaskCore::coroutine() const noexcept {
    return static_cast<const PromiseBase&>(*this).where();
}

void PromiseBase::finish_task() noexcept {
    if (failed()) {
        record_outcome(*this, extra->exception);
    } else if (must_cancel) {
        // Cancelled after its last suspension, and returned without seeing it: the task ends
        // cancelled all the same, as in asyncio, since cancel() promised it would.
        must_cancel = false;
        set_cancelled(make_cancelled_error());
    } else {
        set_finished(nullptr);
    }
}

void task_step(Runnable* r) {
    auto* t = static_cast<TaskCore*>(r);
    t->queued = false;
    if (!t->started) {
        t->started = true;
        if (t->must_cancel) {
            // Cancelled before its first step: it never runs, as in asyncio.
            t->must_cancel = false;
            record_outcome(*t, t->make_cancelled_error());
            t->release();  // the loop's reference
            return;
        }
    }
    TaskCore* previous = t_state.current_task;
    t_state.current_task = t;
    do {
        t->transfer = false;
        t->resume_point.resume();
    } while (t->transfer);
    t_state.current_task = previous;
    if (t->done()) t->release();  // the loop's reference; the frame may go with it
}

namespace {

// The coroutine behind TaskCore::relay(): each resumption schedules the task.
struct Relay {
    struct promise_type {
        Relay get_return_object() noexcept {
            return Relay{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
        static void* operator new(std::size_t size) { return pool_allocate(size); }
        static void operator delete(void* p, std::size_t size) noexcept {
            pool_deallocate(p, size);
        }
    };
    std::coroutine_handle<promise_type> handle;
};

Relay relay_body(TaskCore* task) {
    for (;;) {
        task->wake();
        co_await std::suspend_always{};
    }
}

}  // namespace

std::coroutine_handle<> TaskCore::relay() {
    FutureExtra& x = ensure_extra();
    if (!x.relay) x.relay = relay_body(this).handle;
    return x.relay;
}

FutureExtra::~FutureExtra() {
    if (relay) relay.destroy();
}

}  // namespace corio::detail

namespace corio::detail {

MultiWait::MultiWait(std::vector<FutureCore*> targets, Until until, OnCancel on_cancel)
    : targets_(std::move(targets)),
      nodes_(new Node[targets_.size()]),
      until_(until),
      on_cancel_(on_cancel) {
    timer_.owner = this;
    timer_.fire = [](TimerNode* t) {
        MultiWait* self = static_cast<Timer*>(t)->owner;
        self->timed_out_ = true;
        self->waiting_ = false;
        self->task_->wake();
    };
    cancel = [](Waiter* w, TaskCore& t) {
        auto* self = static_cast<MultiWait*>(w);
        if (self->on_cancel_ == OnCancel::CancelChildren) {
            // Keep waiting: the children finish cancelled and that ends the wait.
            self->outer_cancelled_ = true;
            for (FutureCore* c : self->targets_) {
                if (!c->done()) c->cancel(t.cancel_message());
            }
            return true;
        }
        self->abandoned_ = true;
        self->wake_owner();
        return true;
    };
    for (std::size_t i = 0; i < targets_.size(); ++i) {
        if (targets_[i]->done()) {
            on_done(i);
            continue;
        }
        Node& n = nodes_[i];
        n.owner = this;
        n.index = i;
        n.task = t_state.current_task;
        n.notify = [](DoneWaiter* w, FutureCore&) noexcept {
            auto* node = static_cast<Node*>(w);
            node->owner->on_done(node->index);
        };
        targets_[i]->waiters.add(n);
    }
}

MultiWait::~MultiWait() {
    for (std::size_t i = 0; i < targets_.size(); ++i) nodes_[i].unlink();
    if (timer_.armed()) LoopAccess::disarm(*loop_, timer_);
}

bool MultiWait::failed(std::size_t index) const noexcept {
    return static_cast<bool>(targets_[index]->error());
}

void MultiWait::on_done(std::size_t index) {
    ++done_;
    completed_.push_back(index);
    if (failed(index) && first_failure_ == ~std::size_t{0}) first_failure_ = index;
    if (failed(index) && !targets_[index]->cancelled() && first_exception_ == ~std::size_t{0}) {
        first_exception_ = index;
    }
    if (waiting_ && satisfied()) wake_owner();
}

bool MultiWait::satisfied() const noexcept {
    constexpr std::size_t none = ~std::size_t{0};
    switch (until_) {
        case Until::AnyCompleted:
            return completed_.size() > unseen_;
        case Until::FirstFailure:
            return first_failure_ != none || done_ == targets_.size();
        case Until::FirstException:
            return first_exception_ != none || done_ == targets_.size();
        case Until::AllCompleted:
            return done_ == targets_.size();
    }
    return true;
}

std::vector<std::size_t> MultiWait::take_completed() {
    std::vector<std::size_t> out(completed_.begin() + static_cast<std::ptrdiff_t>(unseen_),
                                 completed_.end());
    unseen_ = completed_.size();
    return out;
}

bool MultiWait::suspend(TaskCore* task, std::coroutine_handle<> h) {
    if (task == nullptr) throw RuntimeError("corio: this must be awaited inside a task");
    task_ = task;
    loop_ = task->loop;
    suspended_ = false;
    if (deadline_) {
        if (*deadline_ <= loop_->time()) {
            timed_out_ = true;
            return false;
        }
        timer_.deadline = *deadline_;
        LoopAccess::arm(*loop_, timer_);
    }
    waiting_ = true;
    suspended_ = true;
    task->suspend(h, this);
    return true;
}

void MultiWait::wake_owner() noexcept {
    waiting_ = false;
    if (timer_.armed()) LoopAccess::disarm(*loop_, timer_);
    task_->wake();
}

bool MultiWait::resumed() {
    if (suspended_) {
        suspended_ = false;
        if (abandoned_) {
            abandoned_ = false;
            task_->throw_cancelled();
        }
        task_->throw_if_cancel_requested();
    }
    return timed_out_;
}

}  // namespace corio::detail

namespace corio {

std::vector<AnyTask> all_tasks() {
    std::vector<AnyTask> out;
    for (detail::FutureCore* c : detail::LoopAccess::cores(get_running_loop())) {
        if (c->kind == detail::FutureCore::Kind::Task && !c->done()) {
            out.emplace_back(static_cast<detail::TaskCore*>(c));
        }
    }
    return out;
}

}  // namespace corio
