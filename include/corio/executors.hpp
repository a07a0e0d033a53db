// Running blocking or CPU-heavy calls on other threads without blocking the loop
// (concurrent.futures.ThreadPoolExecutor, loop.run_in_executor, asyncio.to_thread).
//
//     std::string text = co_await corio::to_thread(read_whole_file, path);   // default pool
//     corio::ThreadPoolExecutor pool(4);
//     double r = co_await corio::run_in_executor(pool, simulate, params);
//
// The call runs on a pool thread; its result, or the exception it threw, comes back to the
// awaiting task on the loop's thread, and the loop keeps running other tasks meanwhile.
//
// Cancellation: a thread cannot be interrupted. Cancelling the awaiting task stops the waiting
// at once (the task gets CancelledError); the call itself runs to its end on its thread, and its
// result is dropped, as in asyncio. Arguments are copied or moved into the job, so nothing the
// call uses may be a reference to the awaiting coroutine's locals unless the coroutine outlives
// the call.
#pragma once

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/detail/awaitable.hpp"
#include "corio/detail/future_core.hpp"
#include "corio/errors.hpp"
#include "corio/events.hpp"

namespace corio {

namespace detail {

// A unit of work for a pool thread. A job destroyed without having run (its pool was shut down
// with cancel_pending) must still let its waiter know: see ThreadCall.
struct Job {
    virtual ~Job() = default;
    virtual void run() noexcept = 0;
    // The pool refused the job (it is shut down): the submitter learns it from the exception,
    // so the job must not report anything when destroyed.
    virtual void refused() noexcept {}
};

}  // namespace detail

// A pool of threads that run submitted jobs in order of submission (the
// concurrent.futures.ThreadPoolExecutor of Python). Threads start when work arrives, up to
// max_workers, and stay until shutdown. Thread-safe.
class ThreadPoolExecutor {
  public:
    // asyncio's default: min(32, hardware threads + 4).
    static std::size_t default_max_workers() noexcept;

    explicit ThreadPoolExecutor(std::size_t max_workers = default_max_workers());
    ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
    ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;
    // shutdown(): waits for the queued jobs and the threads.
    ~ThreadPoolExecutor();

    // Queues fn() to run on a pool thread. RuntimeError after shutdown. An exception fn throws
    // is reported to stderr (use run_in_executor to get results and exceptions back).
    void submit(std::function<void()> fn);
    void submit(std::unique_ptr<detail::Job> job);

    // Refuses new work. With `wait`, returns once every queued job has run (or, with
    // `cancel_pending`, been dropped) and the threads have exited. Safe to call more than once;
    // not from one of the pool's own threads.
    void shutdown(bool wait = true, bool cancel_pending = false);

    std::size_t max_workers() const noexcept { return max_workers_; }

  private:
    void work() noexcept;

    const std::size_t max_workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::unique_ptr<detail::Job>> jobs_;  // guarded by mutex_
    std::vector<std::thread> threads_;               // guarded by mutex_
    std::size_t idle_ = 0;                           // guarded by mutex_
    bool shut_down_ = false;                         // guarded by mutex_
};

namespace detail {

// What a call on another thread shares with the task that awaits it. The worker writes the
// outcome, then posts to the loop (call_soon_threadsafe, whose lock orders the two); everything
// else is touched on the loop's thread only.
template <class R>
struct ThreadCallState {
    using Value = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
    enum Phase : int { Queued, Running, Abandoned };

    // Queued -> Running when a worker starts the call; Queued -> Abandoned when the awaiting
    // task is cancelled first: then the call never runs (asyncio cancels a concurrent future
    // that has not started).
    std::atomic<int> phase{Queued};
    std::optional<Value> value;
    std::exception_ptr error;
    bool dropped = false;  // the pool was shut down before the call ran

    EventLoop* loop = nullptr;
    TaskCore* task = nullptr;  // loop thread only; null once the task stopped waiting
};

// Lets the awaiting task go on (on the loop's thread), unless it stopped waiting.
template <class R>
void post_outcome(const std::shared_ptr<ThreadCallState<R>>& state) noexcept {
    try {
        state->loop->call_soon_threadsafe([state] {
            if (TaskCore* t = state->task) {
                state->task = nullptr;
                t->wake();
            }
        });
    } catch (...) {
        // The loop is closed: nobody is waiting any more.
    }
}

template <class R, class Fn>
struct ThreadCallJob final : Job {
    std::shared_ptr<ThreadCallState<R>> state;
    Fn fn;
    bool ran = false;

    ThreadCallJob(std::shared_ptr<ThreadCallState<R>> s, Fn f)
        : state(std::move(s)), fn(std::move(f)) {}
    ~ThreadCallJob() override {
        if (!ran) {
            state->dropped = true;
            post_outcome(state);
        }
    }
    void refused() noexcept override { ran = true; }
    void run() noexcept override {
        ran = true;
        int expected = ThreadCallState<R>::Queued;
        if (!state->phase.compare_exchange_strong(expected, ThreadCallState<R>::Running))
            return;  // the task stopped waiting before the call started: it never runs
        try {
            if constexpr (std::is_void_v<R>) {
                std::invoke(fn);
                state->value.emplace();
            } else {
                state->value.emplace(std::invoke(fn));
            }
        } catch (...) {
            state->error = std::current_exception();
        }
        post_outcome(state);
    }
};

// The awaiter of run_in_executor: submits the call, suspends, and resumes with its outcome.
template <class R, class Fn>
class ThreadCall : Waiter {
  public:
    static constexpr bool corio_cancel_aware = true;

    ThreadCall(ThreadPoolExecutor* executor, Fn fn) : executor_(executor), fn_(std::move(fn)) {}
    ThreadCall(ThreadCall&&) = default;
    ~ThreadCall() {
        if (state_) state_->task = nullptr;  // e.g. the frame destroyed by loop.close()
    }

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        TaskCore* task = t_state.current_task;
        if (task == nullptr) throw RuntimeError("run_in_executor() must be awaited inside a task");
        state_ = std::make_shared<ThreadCallState<R>>();
        state_->loop = task->loop;
        state_->task = task;
        executor_->submit(std::make_unique<ThreadCallJob<R, Fn>>(state_, std::move(fn_)));
        task_ = task;
        cancel = &on_cancel;
        task->suspend(h, this);
    }
    R await_resume() {
        if (cancelled_) task_->throw_cancelled();
        // The call finished, but the task was cancelled before it could run: drop the result.
        task_->throw_if_cancel_requested();
        if (state_->dropped) throw CancelledError("the executor was shut down before the call ran");
        if (state_->error) std::rethrow_exception(state_->error);
        if constexpr (!std::is_void_v<R>) return std::move(*state_->value);
    }

  private:
    static bool on_cancel(Waiter* w, TaskCore& t) noexcept {
        auto* self = static_cast<ThreadCall*>(w);
        // Not started yet: it never will. Running: it runs to its end, and its outcome, when
        // it comes, is dropped.
        int expected = ThreadCallState<R>::Queued;
        self->state_->phase.compare_exchange_strong(expected, ThreadCallState<R>::Abandoned);
        self->state_->task = nullptr;
        self->cancelled_ = true;
        t.wake();
        return true;
    }

    ThreadPoolExecutor* executor_;
    Fn fn_;
    std::shared_ptr<ThreadCallState<R>> state_;
    TaskCore* task_ = nullptr;
    bool cancelled_ = false;
};

// The call with its arguments bound by value.
template <class F, class... Args>
auto bind_call(F&& f, Args&&... args) {
    return [f = std::forward<F>(f),
            args = std::make_tuple(std::forward<Args>(args)...)]() mutable -> decltype(auto) {
        return std::apply(f, std::move(args));
    };
}

}  // namespace detail

// Runs f(args...) on `executor` and waits for its result (loop.run_in_executor). f and the
// arguments are moved or copied into the job.
template <class F, class... Args>
auto run_in_executor(ThreadPoolExecutor& executor, F&& f, Args&&... args) {
    auto call = detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    using Fn = decltype(call);
    using R = std::decay_t<std::invoke_result_t<Fn&>>;
    return detail::AwaitOp<detail::ThreadCall<R, Fn>, ThreadPoolExecutor*, Fn>(&executor,
                                                                               std::move(call));
}

// Runs f(args...) on the running loop's default executor (asyncio.to_thread).
template <class F, class... Args>
auto to_thread(F&& f, Args&&... args) {
    return run_in_executor(get_running_loop().default_executor(), std::forward<F>(f),
                           std::forward<Args>(args)...);
}

}  // namespace corio
