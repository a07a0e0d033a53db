#include "corio/timeouts.hpp"

namespace corio {

void Timeout::enter() {
    if (state_ != State::Created) throw RuntimeError("Timeout has already been entered");
    task_ = detail::t_state.current_task;
    if (task_ == nullptr) throw RuntimeError("Timeout should be used inside a task");
    state_ = State::Entered;
    cancelling_at_enter_ = task_->cancel_requests;
    fire = [](detail::TimerNode* t) {
        auto* self = static_cast<Timeout*>(t);
        self->state_ = State::Expiring;
        self->task_->request_cancel({});
    };
    reschedule(when_);
}

void Timeout::reschedule(std::optional<TimePoint> when) {
    if (state_ != State::Entered) {
        if (state_ == State::Created) throw RuntimeError("Timeout has not been entered");
        throw RuntimeError("Cannot change the deadline of a Timeout that expired or exited");
    }
    disarm();
    when_ = when;
    if (when_) {
        deadline = *when_;  // a past deadline fires on the loop's next pass
        detail::LoopAccess::arm(*task_->loop, *this);
    }
}

void Timeout::disarm() noexcept {
    if (armed()) detail::LoopAccess::disarm(*task_->loop, *this);
}

void Timeout::exit(std::exception_ptr& e) {
    disarm();
    if (state_ == State::Expiring) {
        state_ = State::Expired;
        // Our own cancellation, and no other one pending: it becomes a TimeoutError.
        if (task_->uncancel() <= cancelling_at_enter_ && is_cancellation(e)) {
            try {
                throw TimeoutError();
            } catch (...) {
                e = std::current_exception();
            }
        }
    } else if (state_ == State::Entered) {
        state_ = State::Exited;
    }
}

}  // namespace corio
