// Deadlines for a piece of code (asyncio.timeout, timeout_at, wait_for).
//
//     // Give up on fetch() after 5 s: TimeoutError.
//     std::string page = co_await corio::wait_for(fetch(url), 5s);
//
//     // A deadline over several steps, pushed back as progress is made:
//     co_await corio::timeout(10s, [&](corio::Timeout& t) -> corio::Coro<> {
//         while (auto chunk = co_await read_chunk()) {
//             t.reschedule(corio::get_running_loop().time() + 10s);
//         }
//     });
//
// The body runs inside the current task. When the deadline passes the task is cancelled; the
// CancelledError unwinds the body and leaves it as TimeoutError. A cancellation that comes from
// elsewhere (a cancel() of the task) passes through as CancelledError, as in asyncio: the
// cancel-request count (task.cancelling()) tells the two apart.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/coro.hpp"
#include "corio/events.hpp"
#include "corio/tasks.hpp"

namespace corio {

// The scope object of timeout()/timeout_at(): where its deadline is, and a way to move it.
class Timeout : private detail::TimerNode {
  public:
    enum class State { Created, Entered, Expiring, Expired, Exited };

    Timeout(const Timeout&) = delete;
    Timeout& operator=(const Timeout&) = delete;
    ~Timeout() { disarm(); }

    // The deadline, on the loop's clock; nullopt for none.
    std::optional<TimePoint> when() const noexcept { return when_; }
    // Moves the deadline (nullopt: no deadline). Only while the body runs.
    void reschedule(std::optional<TimePoint> when);
    // True once the deadline has passed and the body was cancelled for it.
    bool expired() const noexcept { return state_ == State::Expiring || state_ == State::Expired; }
    State state() const noexcept { return state_; }

    // The scope protocol (asyncio's __aenter__/__aexit__): timeout_at() calls these around its
    // body; call them yourself only to build a scope of your own.
    explicit Timeout(std::optional<TimePoint> when) noexcept : when_(when) {}
    void enter();
    // Turns the body's outcome into the scope's: TimeoutError for its own expiry.
    void exit(std::exception_ptr& e);

  private:
    void disarm() noexcept;

    State state_ = State::Created;
    std::optional<TimePoint> when_;
    detail::TaskCore* task_ = nullptr;
    std::uint32_t cancelling_at_enter_ = 0;
};

namespace detail {

template <class B>
decltype(auto) timeout_body(B& body, Timeout& scope) {
    if constexpr (std::is_invocable_v<B&, Timeout&>) {
        return std::invoke(body, scope);
    } else if constexpr (std::is_invocable_v<B&>) {
        return std::invoke(body);
    } else {
        return std::move(body);
    }
}

template <class B>
using timeout_awaitable_t = decltype(timeout_body(std::declval<B&>(), std::declval<Timeout&>()));

template <class B>
using timeout_result_t = run_result_t<timeout_awaitable_t<B>>;

template <class B>
concept TimeoutBody = Awaitable<timeout_awaitable_t<B>>;

template <class B>
concept NotTimeoutBody = !TimeoutBody<B>;

template <class B>
constexpr void reject_timeout_body() {
    static_assert(always_false<B>,
                  "corio::timeout needs a body that is awaitable, or a callable returning an "
                  "awaitable (optionally taking corio::Timeout&)");
}

}  // namespace detail

// Runs `body` (an awaitable, or a callable returning one, optionally taking Timeout&) with a
// deadline at `when` on the loop's clock; nullopt means none. Throws TimeoutError if it passes.
template <detail::TimeoutBody B>
Coro<detail::timeout_result_t<B>> timeout_at(std::optional<TimePoint> when, B body) {
    using R = detail::timeout_result_t<B>;
    Timeout scope(when);
    scope.enter();
    auto outcome = co_await detail::settle(detail::timeout_body(body, scope));
    std::exception_ptr error = outcome.exception();
    scope.exit(error);
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<R>) co_return std::move(outcome.value());
}

template <detail::NotTimeoutBody B>
void timeout_at(std::optional<TimePoint>, B) {
    detail::reject_timeout_body<B>();
}

// timeout_at(now + delay); a nullopt delay means no deadline.
template <detail::TimeoutBody B>
Coro<detail::timeout_result_t<B>> timeout(std::optional<Duration> delay, B body) {
    std::optional<TimePoint> when;
    if (delay) when = get_running_loop().time() + *delay;
    return timeout_at(when, std::move(body));
}

template <class Rep, class Period, detail::TimeoutBody B>
auto timeout(std::chrono::duration<Rep, Period> delay, B body) {
    return timeout(std::optional<Duration>(std::chrono::ceil<Duration>(delay)), std::move(body));
}

template <class D, detail::NotTimeoutBody B>
void timeout(D, B) {
    detail::reject_timeout_body<B>();
}

// Waits for `aw` for at most `delay`; on expiry cancels it and throws TimeoutError.
template <Awaitable A, class Rep, class Period>
Coro<run_result_t<A>> wait_for(A aw, std::chrono::duration<Rep, Period> delay) {
    if (delay <= delay.zero()) {
        // As asyncio: no time at all, so the awaitable gets no step unless already done.
        if constexpr (detail::is_future<A>::value) {
            // A future is waited on as it is (asyncio's ensure_future returns it unchanged).
            if (!aw.done()) {
                aw.cancel();
                throw TimeoutError();
            }
            co_return co_await aw;
        }
        auto task = detail::ensure_task(std::move(aw));
        if (!task.done()) {
            task.cancel();
            detail::MultiWait done({task.core()}, detail::MultiWait::Until::AllCompleted,
                                   detail::MultiWait::OnCancel::Raise);
            co_await done.wait();
            if (task.cancelled()) throw TimeoutError();
        }
        co_return co_await std::move(task);
    }
    co_return co_await timeout(std::chrono::ceil<Duration>(delay), std::move(aw));
}

template <detail::NotAwaitable A, class Rep, class Period>
void wait_for(A&&, std::chrono::duration<Rep, Period>) {
    detail::reject_non_awaitable<A>();
}

}  // namespace corio
