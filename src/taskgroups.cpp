#include "corio/taskgroups.hpp"

namespace corio {
namespace {

bool is_interrupt(const std::exception_ptr& e) noexcept {
    return holds<Interrupted>(e);
}

}  // namespace

// A child's link in the group, registered on the child's waiter list.
struct TaskGroup::Child : ChildHook, detail::DoneWaiter {
    AnyTask child;
    TaskGroup* group = nullptr;
};

// The exit phase's wait for the last child.
struct TaskGroup::Joiner : detail::Waiter {
    static constexpr bool corio_cancel_aware = true;
    TaskGroup* group;
    detail::TaskCore* task = nullptr;
    bool suspended = false;
    bool cancelled = false;

    explicit Joiner(TaskGroup* g) noexcept : group(g) {}
    ~Joiner() {
        if (group->joiner_ == this) group->joiner_ = nullptr;
    }
    bool await_ready() const noexcept { return group->children_.empty(); }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        task = detail::task_of(h);
        group->joiner_ = this;
        cancel = [](detail::Waiter* w, detail::TaskCore& t) {
            auto* self = static_cast<Joiner*>(w);
            self->cancelled = true;
            self->group->joiner_ = nullptr;
            t.wake();
            return true;
        };
        suspended = true;
        task->suspend(h, this);
    }
    void await_resume() {
        if (!suspended) return;
        if (cancelled) task->throw_cancelled();
        task->throw_if_cancel_requested();
    }
};

TaskGroup::TaskGroup(detail::GroupKey) : parent_(current_task()) {
    if (!parent_) throw RuntimeError("TaskGroup cannot determine the parent task");
}

TaskGroup::~TaskGroup() {
    // Only when the frame running the group is destroyed without finishing (its loop was
    // closed): drop the links to the children.
    while (Child* c = children_.pop_front()) {
        c->DoneWaiter::unlink();
        delete c;
    }
}

void TaskGroup::check_accepting() const {
    if (exiting_ && children_.empty()) throw RuntimeError("TaskGroup is finished");
    if (aborting_) throw RuntimeError("TaskGroup is shutting down");
}

void TaskGroup::adopt(const AnyTask& task) {
    auto* c = new Child;
    c->child = task;
    c->DoneWaiter::task = parent_.core();  // the group's children are awaited by its parent
    c->group = this;
    c->notify = [](detail::DoneWaiter* w, detail::FutureCore&) noexcept {
        auto* child = static_cast<Child*>(w);
        child->group->on_child_done(*child);
    };
    children_.push_back(*c);
    task.core()->waiters.add(*c);
}

void TaskGroup::on_child_done(Child& child) {
    static_cast<ChildHook&>(child).unlink();
    AnyTask task = std::move(child.child);
    delete &child;
    if (joiner_ != nullptr && children_.empty()) {
        Joiner* j = joiner_;
        joiner_ = nullptr;
        j->task->wake();
    }
    if (task.cancelled()) return;
    std::exception_ptr e = task.core()->take_exception();
    if (!e) return;
    errors_.push_back(e);
    if (is_interrupt(e) && !base_error_) base_error_ = e;
    if (parent_.done()) {
        if (detail::FutureCore* core = task.core(); core->loop != nullptr) {
            core->loop->call_exception_handler(ExceptionContext{
                "Task " + task.get_name() + " has errored out but its parent task " +
                    parent_.get_name() + " is already completed",
                e, task.get_name(), task.get_coro()});
        }
        return;
    }
    if (!aborting_ && !parent_cancel_requested_) {
        // Interrupt whatever the body is doing; exit() withdraws this cancellation again.
        abort();
        parent_cancel_requested_ = true;
        parent_.cancel();
    }
}

void TaskGroup::abort() {
    aborting_ = true;
    children_.for_each([](Child& c) {
        if (!c.child.done()) c.child.cancel();
    });
}

void TaskGroup::cancel() {
    if (exiting_ && children_.empty()) return;
    if (aborting_) return;
    abort();
    if (!parent_cancel_requested_) {
        parent_cancel_requested_ = true;
        parent_.cancel();
    }
}

Coro<> TaskGroup::exit(detail::GroupKey, std::exception_ptr body_error) {
    exiting_ = true;
    bool body_cancelled = is_cancellation(body_error);
    if (is_interrupt(body_error) && !base_error_) base_error_ = body_error;
    std::exception_ptr propagate = body_cancelled ? body_error : nullptr;
    if (body_error && !aborting_) abort();

    // Loop: the parent may be cancelled again (and again) while its children wind down.
    std::exception_ptr pending_cancel;
    while (!children_.empty()) {
        try {
            co_await Joiner(this);
        } catch (const CancelledError&) {
            pending_cancel = std::current_exception();
            if (!aborting_) {
                propagate = pending_cancel;
                abort();
            }
        }
    }

    if (base_error_) {
        for (const auto& e : errors_) {
            if (e == base_error_) continue;
            parent_.core()->loop->call_exception_handler(ExceptionContext{
                "TaskGroup task exception was not propagated because the TaskGroup body is "
                "being closed with an Interrupted",
                e, parent_.get_name(), parent_.get_coro()});
        }
        std::rethrow_exception(base_error_);
    }
    if (parent_cancel_requested_) {
        if (parent_.uncancel() == 0) {
            propagate = nullptr;  // the only cancellation was ours
        } else if (!propagate) {
            propagate = pending_cancel;
        }
    }
    if (propagate && errors_.empty()) std::rethrow_exception(propagate);
    if (body_error && !body_cancelled) errors_.push_back(body_error);
    if (!errors_.empty()) {
        if (parent_.cancelling() > 0) {
            // Keep an outside cancellation pending for the parent's next await.
            parent_.uncancel();
            parent_.cancel();
        }
        throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors_));
    }
}

}  // namespace corio
