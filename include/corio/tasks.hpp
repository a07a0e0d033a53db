// Tasks and the functions that combine awaitables (asyncio.tasks).
//
//     corio::Coro<> main() {
//         auto a = corio::create_task(fetch("a"));    // starts running concurrently
//         auto b = corio::create_task(fetch("b"));
//         auto [ra, rb] = co_await corio::gather(a, b);
//         co_await corio::sleep(100ms);
//     }
//
// A Task<T> is a shared handle to a running coroutine: copies refer to the same task, and the
// task keeps running whether or not anyone holds a handle (the loop holds it until it is done).
// Tasks belong to the thread of their loop.
//
// Cancellation follows asyncio: task.cancel() makes the co_await the task is suspended at throw
// CancelledError. A task awaiting another task passes the cancellation on to it (unless the
// inner one is shielded). CancelledError does not derive from std::exception; see errors.hpp.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/awaitable.hpp"
#include "corio/detail/future_core.hpp"
#include "corio/events.hpp"
#include "corio/futures.hpp"

namespace corio {

// A handle to a task whose result type does not matter: what current_task() and all_tasks()
// return, and the base of Task<T>.
class AnyTask {
  public:
    AnyTask() noexcept = default;
    explicit AnyTask(detail::TaskCore* core) noexcept : core_(core) {}

    bool done() const { return ref().done(); }
    bool cancelled() const { return ref().cancelled(); }

    // Requests cancellation: the task's pending co_await throws CancelledError(message).
    // False if the task is already done.
    bool cancel(const std::string& message = {}) { return ref().cancel(message); }
    // Number of cancellation requests not yet withdrawn by uncancel().
    std::uint32_t cancelling() const { return ref().cancel_requests; }
    // Withdraws one cancellation request; returns how many remain.
    std::uint32_t uncancel() { return ref().uncancel(); }

    // The exception the task failed with, or null; InvalidStateError while pending; throws
    // CancelledError if it was cancelled.
    std::exception_ptr exception() const {
        if (!done()) throw InvalidStateError("Exception is not set.");
        if (cancelled()) std::rethrow_exception(ref().take_exception());
        return ref().take_exception();
    }

    std::string get_name() const { return ref().name(); }
    void set_name(std::string name) { ref().ensure_extra().name = std::move(name); }
    // Where the task's coroutine is defined (asyncio's get_coro()).
    SourceLocation get_coro() const { return ref().coroutine(); }

    // Schedules fn(task) with call_soon once the task is done.
    template <class F>
    CallbackId add_done_callback(F fn) {
        return ref().add_done_callback([fn = std::move(fn)](detail::FutureCore& c) mutable {
            fn(AnyTask(static_cast<detail::TaskCore*>(&c)));
        });
    }
    std::size_t remove_done_callback(CallbackId id) { return ref().remove_done_callback(id); }

    // Awaiting an AnyTask waits for it and rethrows its failure.
    struct Awaiter : detail::AwaitCore {
        using AwaitCore::AwaitCore;
        void await_resume() {
            resume_checks();
            target->check_result();
        }
    };
    Awaiter operator co_await() const { return Awaiter(&ref()); }

    explicit operator bool() const noexcept { return static_cast<bool>(core_); }
    bool operator==(const AnyTask& o) const noexcept { return core_ == o.core_; }

    detail::TaskCore* core() const noexcept { return core_.get(); }

  protected:
    // The task, or InvalidStateError for an empty handle (default-constructed or moved-from,
    // or current_task() outside a task).
    detail::TaskCore& ref() const {
        if (!core_) throw InvalidStateError("empty corio::Task handle");
        return *core_;
    }

    detail::Ref<detail::TaskCore> core_;
};

template <class T = void>
class Task : public AnyTask {
  public:
    using value_type = T;
    using AnyTask::AnyTask;

    // The task's result; InvalidStateError while pending; rethrows its failure, or
    // CancelledError if it was cancelled.
    decltype(auto) result() const {
        ref().check_result();
        if constexpr (!std::is_void_v<T>) return value();
    }

    template <class F>
    CallbackId add_done_callback(F fn) {
        return ref().add_done_callback([fn = std::move(fn)](detail::FutureCore& c) mutable {
            fn(Task(static_cast<detail::TaskCore*>(&c)));
        });
    }

    // `co_await task` yields a reference to the result (the task keeps it);
    // `co_await std::move(task)` moves it out.
    template <bool Move>
    struct Awaiter : detail::AwaitCore {
        using AwaitCore::AwaitCore;
        decltype(auto) await_resume() {
            resume_checks();
            target->check_result();
            if constexpr (std::is_void_v<T>) {
                return;
            } else if constexpr (Move) {
                return T(std::move(value_of(target)));
            } else {
                return static_cast<T&>(value_of(target));
            }
        }
    };
    Awaiter<false> operator co_await() const& { return Awaiter<false>(&ref()); }
    Awaiter<true> operator co_await() && { return Awaiter<true>(&ref()); }

    // For corio's own combinators.
    // (Instantiated only for non-void T.)
    static std::add_lvalue_reference_t<T> value_of(detail::FutureCore* c) {
        auto& base = static_cast<detail::PromiseBase&>(static_cast<detail::TaskCore&>(*c));
        return *static_cast<detail::Promise<T>&>(base).result;
    }

  private:
    std::add_lvalue_reference_t<T> value() const { return value_of(core_.get()); }
};

namespace detail {

template <class A>
struct is_coro : std::false_type {};
template <class T>
struct is_coro<Coro<T>> : std::true_type {};

template <class A>
struct is_task : std::false_type {};
template <class T>
struct is_task<Task<T>> : std::true_type {};
template <class T>
struct is_future : std::false_type {};
template <class T>
struct is_future<Future<T>> : std::true_type {};

// A task's result is a value: an awaitable that yields a reference (a Future, a Task lvalue)
// has its result copied.
template <class A, class T>
Coro<T> wrap_awaitable(A aw) {
    co_return co_await std::move(aw);
}

// What gather() and friends store for a `void` result.
template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

}  // namespace detail

template <Awaitable A>
Task<run_result_t<A>> EventLoop::create_task(A&& aw, std::string name) {
    using T = run_result_t<A>;
    using D = std::remove_cvref_t<A>;
    static_assert(!detail::is_coro<D>::value || std::is_rvalue_reference_v<A&&>,
                  "corio::create_task takes a Coro by value: pass f() or std::move(coro)");
    check_open_and_thread();
    Coro<T> coro;
    if constexpr (detail::is_coro<D>::value) {
        coro = std::move(aw);
    } else {
        coro = detail::wrap_awaitable<D, T>(std::forward<A>(aw));
    }
    auto h = coro.release();
    if (!h) throw RuntimeError("create_task() of an empty corio::Coro");
    detail::PromiseBase& p = h.promise();
    if (p.claimed()) throw RuntimeError("create_task() of a Coro that is already running");
    p.kind = detail::FutureCore::Kind::Task;
    p.resume_point = h;
    p.id = detail::LoopAccess::next_task_id(*this);
    // FutureCore::dispose() finds the frame from the PromiseBase; that needs the promise at
    // the same offset, which equal alignment guarantees.
    static_assert(alignof(detail::Promise<T>) == alignof(detail::PromiseBase));
    p.refs = 1;  // the loop's, until the task is done
    if (!name.empty()) p.ensure_extra().name = std::move(name);
    detail::LoopAccess::register_core(*this, p);
    p.queued = true;
    detail::LoopAccess::schedule(*this, &p, detail::RunKind::Task);
    return Task<T>(&p);
}

// Wraps `aw` in a task on the running loop and schedules it (asyncio.create_task).
template <Awaitable A>
Task<run_result_t<A>> create_task(A&& aw, std::string name = {}) {
    return get_running_loop().create_task(std::forward<A>(aw), std::move(name));
}
template <detail::NotAwaitable A>
void create_task(A&&, std::string = {}) {
    detail::reject_non_awaitable<A>();
}

template <Awaitable A>
run_result_t<A> EventLoop::run_until_complete(A&& aw) {
    using T = run_result_t<A>;
    check_can_run();  // before making a task that could then never run
    Task<T> task;
    if constexpr (detail::is_task<std::remove_cvref_t<A>>::value) {
        task = aw;
    } else {
        task = create_task(std::forward<A>(aw));
    }
    struct Stopper : detail::DoneWaiter {
        EventLoop* loop;
        ~Stopper() { unlink(); }
    } stopper;
    stopper.loop = this;
    stopper.notify = [](detail::DoneWaiter* w, detail::FutureCore&) noexcept {
        static_cast<Stopper*>(w)->loop->stop();
    };
    if (!task.done()) task.core()->waiters.add(stopper);
    if (!task.done()) run_forever();
    if (!task.done()) throw RuntimeError("Event loop stopped before Future completed.");
    if constexpr (std::is_void_v<T>) {
        task.result();
    } else {
        return T(std::move(task.result()));
    }
}

// The task running on this thread, or an empty handle outside a task.
inline AnyTask current_task() noexcept {
    return AnyTask(detail::t_state.current_task);
}

// The tasks of the running loop that are not done yet.
std::vector<AnyTask> all_tasks();

// --- sleep ---------------------------------------------------------------------------------

namespace detail {

struct SleepAwaiter : TimerNode, Waiter {
    static constexpr bool corio_cancel_aware = true;

    Duration delay;
    TaskCore* task = nullptr;
    bool cancelled = false;

    explicit SleepAwaiter(Duration d) noexcept : delay(d) {}
    SleepAwaiter(const SleepAwaiter& o) noexcept : TimerNode(), Waiter(), delay(o.delay) {}
    ~SleepAwaiter() {
        if (armed()) LoopAccess::disarm(*task->loop, *this);
    }

    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) {
        task = task_of(h);
        if (task == nullptr) throw RuntimeError("corio::sleep() must be awaited inside a task");
        if (delay <= Duration::zero()) {
            // sleep(0): yield to the loop once, behind everything already ready.
            task->suspend(h, nullptr);
            task->wake();
            return;
        }
        deadline = task->loop->time() + delay;
        fire = [](TimerNode* t) { static_cast<SleepAwaiter*>(t)->task->wake(); };
        cancel = [](Waiter* w, TaskCore& t) {
            auto* self = static_cast<SleepAwaiter*>(w);
            LoopAccess::disarm(*t.loop, *self);
            self->cancelled = true;
            t.wake();
            return true;
        };
        LoopAccess::arm(*task->loop, *this);
        task->suspend(h, this);
    }
    void await_resume() {
        if (cancelled) task->throw_cancelled();
        task->throw_if_cancel_requested();
    }
};

}  // namespace detail

// Suspends the current task for `delay`; sleep(0s) yields to the loop once.
template <class Rep, class Period>
detail::AwaitOp<detail::SleepAwaiter, Duration> sleep(std::chrono::duration<Rep, Period> delay) {
    return detail::AwaitOp<detail::SleepAwaiter, Duration>(std::chrono::ceil<Duration>(delay));
}

// --- helpers shared by the combinators -----------------------------------------------------

namespace detail {

// What gather() and friends accept: a Task<T> is used as is, anything else awaitable becomes a
// task (asyncio's ensure_future).
template <class A>
auto ensure_task(A&& aw) {
    using D = std::remove_cvref_t<A>;
    if constexpr (is_task<D>::value) {
        return D(aw);
    } else {
        return create_task(std::forward<A>(aw));
    }
}

// Waits on several futures at once: the engine of gather, wait and as_completed.
class MultiWait : public Waiter {
  public:
    enum class Until { AnyCompleted, FirstFailure, FirstException, AllCompleted };
    enum class OnCancel { Raise, CancelChildren };

    MultiWait(std::vector<FutureCore*> targets, Until until, OnCancel on_cancel);
    ~MultiWait();
    MultiWait(const MultiWait&) = delete;
    MultiWait& operator=(const MultiWait&) = delete;

    void set_deadline(std::optional<TimePoint> deadline) { deadline_ = deadline; }

    struct Awaiter {
        static constexpr bool corio_cancel_aware = true;
        MultiWait* self;
        bool await_ready() const noexcept { return self->satisfied(); }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return self->suspend(task_of(h), h);
        }
        // True when the wait ended by timing out.
        bool await_resume() { return self->resumed(); }
    };
    // Suspends until the condition holds (or the deadline passes: then yields true).
    Awaiter wait() noexcept { return Awaiter{this}; }

    bool satisfied() const noexcept;
    std::size_t first_failure() const noexcept { return first_failure_; }
    bool outer_cancelled() const noexcept { return outer_cancelled_; }
    // Indices completed since the last call, in completion order.
    std::vector<std::size_t> take_completed();
    std::size_t size() const noexcept { return targets_.size(); }
    std::size_t done_count() const noexcept { return done_; }

  private:
    struct Node : DoneWaiter {
        MultiWait* owner = nullptr;
        std::size_t index = 0;
    };
    struct Timer : TimerNode {
        MultiWait* owner = nullptr;
    };

    bool suspend(TaskCore* task, std::coroutine_handle<> h);
    bool resumed();
    void on_done(std::size_t index);
    void wake_owner() noexcept;
    bool failed(std::size_t index) const noexcept;

    std::vector<FutureCore*> targets_;
    std::unique_ptr<Node[]> nodes_;
    Until until_;
    OnCancel on_cancel_;
    std::size_t done_ = 0;
    std::size_t first_failure_ = ~std::size_t{0};
    std::size_t first_exception_ = ~std::size_t{0};
    std::vector<std::size_t> completed_;
    std::size_t unseen_ = 0;  // completions not yet taken by take_completed()
    TaskCore* task_ = nullptr;
    EventLoop* loop_ = nullptr;
    std::optional<TimePoint> deadline_;
    Timer timer_;
    bool waiting_ = false;
    bool suspended_ = false;
    bool timed_out_ = false;
    bool abandoned_ = false;
    bool outer_cancelled_ = false;
};

template <class T>
stored_t<T> copy_result(FutureCore* c) {
    if constexpr (std::is_void_v<T>) {
        return {};
    } else if constexpr (std::is_copy_constructible_v<T>) {
        return Task<T>::value_of(c);
    } else {
        return std::move(Task<T>::value_of(c));
    }
}

}  // namespace detail

// --- gather ---------------------------------------------------------------------------------

// The outcome of one awaitable in gather_settled(): a value or an exception.
template <class T>
class Outcome {
  public:
    explicit Outcome(detail::stored_t<T> v) : v_(std::move(v)) {}
    explicit Outcome(std::exception_ptr e) : v_(std::move(e)) {}

    bool has_value() const noexcept { return v_.index() == 0; }
    // The value, or rethrows the exception.
    detail::stored_t<T>& value() {
        if (!has_value()) std::rethrow_exception(std::get<1>(v_));
        return std::get<0>(v_);
    }
    std::exception_ptr exception() const noexcept {
        return has_value() ? nullptr : std::get<1>(v_);
    }
    bool cancelled() const noexcept { return is_cancellation(exception()); }

  private:
    std::variant<detail::stored_t<T>, std::exception_ptr> v_;
};

namespace detail {

// Awaits `aw` and returns what it produced, value or exception, without throwing: for scopes
// that act on the outcome before passing it on (timeout, task_group).
template <class A>
Coro<Outcome<run_result_t<A>>> settle(A aw) {
    using R = run_result_t<A>;
    try {
        if constexpr (std::is_void_v<R>) {
            co_await aw;
            co_return Outcome<R>(std::monostate{});
        } else {
            co_return Outcome<R>(co_await aw);
        }
    } catch (...) {
        co_return Outcome<R>(std::current_exception());
    }
}

template <class T>
Outcome<T> outcome_of(FutureCore* c) {
    if (std::exception_ptr e = c->take_exception()) return Outcome<T>(e);
    return Outcome<T>(copy_result<T>(c));
}

template <class... T, std::size_t... I>
Coro<std::tuple<stored_t<T>...>> gather_tuple(std::tuple<Task<T>...> tasks,
                                              std::index_sequence<I...>) {
    MultiWait mw({std::get<I>(tasks).core()...}, MultiWait::Until::FirstFailure,
                 MultiWait::OnCancel::CancelChildren);
    co_await mw.wait();
    if (mw.first_failure() < sizeof...(T)) {
        FutureCore* failed =
            std::array<FutureCore*, sizeof...(T)>{std::get<I>(tasks).core()...}[mw.first_failure()];
        std::rethrow_exception(failed->take_exception());
    }
    (std::get<I>(tasks).core()->take_exception(), ...);
    co_return std::tuple<stored_t<T>...>(copy_result<T>(std::get<I>(tasks).core())...);
}

template <class... T, std::size_t... I>
Coro<std::tuple<Outcome<T>...>> gather_settled_tuple(std::tuple<Task<T>...> tasks,
                                                     std::index_sequence<I...>) {
    MultiWait mw({std::get<I>(tasks).core()...}, MultiWait::Until::AllCompleted,
                 MultiWait::OnCancel::CancelChildren);
    co_await mw.wait();
    if (mw.outer_cancelled()) current_task().core()->throw_cancelled();
    co_return std::tuple<Outcome<T>...>(outcome_of<T>(std::get<I>(tasks).core())...);
}

// The futures behind a list of tasks, for MultiWait.
template <class Handle>
std::vector<FutureCore*> cores_of(const std::vector<Handle>& tasks) {
    std::vector<FutureCore*> cores;
    cores.reserve(tasks.size());
    for (const auto& t : tasks) cores.push_back(t.core());
    return cores;
}

template <class T>
Coro<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> gather_vector(
    std::vector<Task<T>> tasks) {
    std::vector<FutureCore*> cores = cores_of(tasks);
    MultiWait mw(cores, MultiWait::Until::FirstFailure, MultiWait::OnCancel::CancelChildren);
    co_await mw.wait();
    if (mw.first_failure() < cores.size()) {
        std::rethrow_exception(cores[mw.first_failure()]->take_exception());
    }
    for (FutureCore* c : cores) c->take_exception();
    if constexpr (!std::is_void_v<T>) {
        std::vector<T> out;
        out.reserve(cores.size());
        for (FutureCore* c : cores) out.push_back(copy_result<T>(c));
        co_return out;
    }
}

template <class T>
Coro<std::vector<Outcome<T>>> gather_settled_vector(std::vector<Task<T>> tasks) {
    std::vector<FutureCore*> cores = cores_of(tasks);
    MultiWait mw(cores, MultiWait::Until::AllCompleted, MultiWait::OnCancel::CancelChildren);
    co_await mw.wait();
    if (mw.outer_cancelled()) current_task().core()->throw_cancelled();
    std::vector<Outcome<T>> out;
    out.reserve(cores.size());
    for (FutureCore* c : cores) out.push_back(outcome_of<T>(c));
    co_return out;
}

// The elements of a range passed as an rvalue are moved from (a vector of Coros is consumed).
template <class R>
using range_element_t =
    std::conditional_t<std::is_lvalue_reference_v<R>, std::ranges::range_reference_t<R>,
                       std::ranges::range_rvalue_reference_t<R>>;

template <class R>
using range_task_t = decltype(ensure_task(std::declval<range_element_t<R>>()));

template <class R>
auto tasks_of(R&& range) {
    std::vector<range_task_t<R>> tasks;
    for (auto&& aw : range) tasks.push_back(ensure_task(static_cast<range_element_t<R>>(aw)));
    return tasks;
}

template <class R>
concept AwaitableRange =
    std::ranges::input_range<R> && Awaitable<std::ranges::range_reference_t<R>>;

}  // namespace detail

// Runs the awaitables concurrently (coroutines become tasks at once) and returns their results
// as a tuple, `void` results as std::monostate. The first failure propagates as soon as it
// happens; the other awaitables keep running (asyncio semantics). Cancelling the awaiting task
// cancels them all.
template <Awaitable A0, Awaitable... A>
auto gather(A0&& first, A&&... rest) {
    return detail::gather_tuple(std::make_tuple(detail::ensure_task(std::forward<A0>(first)),
                                                detail::ensure_task(std::forward<A>(rest))...),
                                std::index_sequence_for<A0, A...>{});
}

// gather() over a range: a std::vector of the results (nothing for `void`).
template <detail::AwaitableRange R>
auto gather(R&& range) {
    return detail::gather_vector(detail::tasks_of(std::forward<R>(range)));
}

// gather(return_exceptions=True): waits for all and returns each Outcome, value or exception.
template <Awaitable A0, Awaitable... A>
auto gather_settled(A0&& first, A&&... rest) {
    return detail::gather_settled_tuple(
        std::make_tuple(detail::ensure_task(std::forward<A0>(first)),
                        detail::ensure_task(std::forward<A>(rest))...),
        std::index_sequence_for<A0, A...>{});
}

template <detail::AwaitableRange R>
auto gather_settled(R&& range) {
    return detail::gather_settled_vector(detail::tasks_of(std::forward<R>(range)));
}

// Anything else is a readable compile error.
template <class... A>
void gather(A&&...) {
    (detail::reject_non_awaitable<A>(), ...);
}
template <class... A>
void gather_settled(A&&...) {
    (detail::reject_non_awaitable<A>(), ...);
}

// --- shield ---------------------------------------------------------------------------------

namespace detail {

// What shield() returns: awaiting it waits for the task, but cancelling the awaiting task only
// abandons the wait.
template <class T>
struct Shielded {
    Task<T> task;

    struct Awaiter : Task<T>::template Awaiter<false> {
        Task<T> keep;
        explicit Awaiter(Task<T> t)
            : Task<T>::template Awaiter<false>(t.core()), keep(std::move(t)) {
            this->shielded = true;
        }
    };
    Awaiter operator co_await() const { return Awaiter(task); }
};

}  // namespace detail

// Protects an awaitable from cancellation: cancelling the awaiting task raises CancelledError
// in it at once, while the shielded task keeps running to completion.
template <Awaitable A>
auto shield(A&& aw) {
    auto task = detail::ensure_task(std::forward<A>(aw));
    using T = typename decltype(task)::value_type;
    return detail::Shielded<T>{std::move(task)};
}
template <detail::NotAwaitable A>
void shield(A&&) {
    detail::reject_non_awaitable<A>();
}

// --- wait and as_completed ------------------------------------------------------------------

enum class ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::FIRST_COMPLETED;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::FIRST_EXCEPTION;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::ALL_COMPLETED;

template <class T>
struct WaitResult {
    std::vector<Task<T>> done;
    std::vector<Task<T>> pending;
};

// Waits until `return_when` holds or `timeout` passes, and splits the tasks into done and
// pending (in the order given). Never cancels the tasks; a timeout is not an error.
template <class T>
Coro<WaitResult<T>> wait(std::vector<Task<T>> tasks, ReturnWhen return_when = ALL_COMPLETED,
                         std::optional<Duration> timeout = std::nullopt) {
    if (tasks.empty()) throw std::invalid_argument("corio::wait() of an empty set of tasks");
    std::vector<detail::FutureCore*> cores = detail::cores_of(tasks);
    using Until = detail::MultiWait::Until;
    Until until = return_when == FIRST_COMPLETED   ? Until::AnyCompleted
                  : return_when == FIRST_EXCEPTION ? Until::FirstException
                                                   : Until::AllCompleted;
    detail::MultiWait mw(cores, until, detail::MultiWait::OnCancel::Raise);
    if (timeout) mw.set_deadline(get_running_loop().time() + *timeout);
    co_await mw.wait();
    WaitResult<T> r;
    for (auto& t : tasks) (t.done() ? r.done : r.pending).push_back(std::move(t));
    co_return r;
}
template <class T, class Rep, class Period>
Coro<WaitResult<T>> wait(std::vector<Task<T>> tasks, ReturnWhen return_when,
                         std::chrono::duration<Rep, Period> timeout) {
    return wait(std::move(tasks), return_when,
                std::optional<Duration>(std::chrono::ceil<Duration>(timeout)));
}

// Yields the given tasks in the order they complete (asyncio.as_completed):
//
//     auto ac = corio::as_completed(tasks);
//     for (auto next : ac) {            // one awaitable per task
//         int r = co_await next;         // the next result to arrive (or its exception)
//     }
//
// or `Task<T> t = co_await ac.next_task();`. With a timeout, awaiting after the deadline throws
// TimeoutError.
template <class T>
class AsCompleted {
  public:
    AsCompleted(std::vector<Task<T>> tasks, std::optional<Duration> timeout)
        : tasks_(std::move(tasks)),
          mw_(detail::cores_of(tasks_), detail::MultiWait::Until::AnyCompleted,
              detail::MultiWait::OnCancel::Raise) {
        if (timeout) mw_.set_deadline(get_running_loop().time() + *timeout);
    }

    std::size_t remaining() const noexcept { return tasks_.size() - yielded_; }

    // The next task to complete.
    Coro<Task<T>> next_task() {
        if (remaining() == 0) throw InvalidStateError("as_completed: no tasks left");
        while (ready_.empty()) {
            for (std::size_t i : mw_.take_completed()) ready_.push_back(i);
            if (!ready_.empty()) break;
            if (co_await mw_.wait()) throw TimeoutError();
        }
        std::size_t i = ready_.front();
        ready_.erase(ready_.begin());
        ++yielded_;
        co_return tasks_[i];
    }
    // The result of the next task to complete.
    Coro<T> next() {
        Task<T> t = co_await next_task();
        co_return co_await std::move(t);
    }

    struct Iterator {
        AsCompleted* owner;
        std::size_t left;
        Coro<T> operator*() const { return owner->next(); }
        Iterator& operator++() {
            --left;
            return *this;
        }
        bool operator==(std::default_sentinel_t) const noexcept { return left == 0; }
    };
    Iterator begin() { return Iterator{this, remaining()}; }
    std::default_sentinel_t end() const noexcept { return {}; }

  private:
    std::vector<Task<T>> tasks_;
    detail::MultiWait mw_;
    std::vector<std::size_t> ready_;
    std::size_t yielded_ = 0;
};

template <class T>
AsCompleted<T> as_completed(std::vector<Task<T>> tasks,
                            std::optional<Duration> timeout = std::nullopt) {
    return AsCompleted<T>(std::move(tasks), timeout);
}
template <class T, class Rep, class Period>
AsCompleted<T> as_completed(std::vector<Task<T>> tasks,
                            std::chrono::duration<Rep, Period> timeout) {
    return AsCompleted<T>(std::move(tasks), std::chrono::ceil<Duration>(timeout));
}

}  // namespace corio
