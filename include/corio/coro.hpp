// corio::Coro<T>: a coroutine, what `async def` is in Python.
//
//     corio::Coro<int> add(int a, int b) {
//         co_await corio::sleep(10ms);
//         co_return a + b;
//     }
//     int sum = co_await add(1, 2);           // runs inside the awaiting task
//     auto task = corio::create_task(add(1, 2));  // runs concurrently as its own task
//
// A Coro is lazy: nothing runs until it is awaited or wrapped in a Task. Awaiting one is a
// direct call with no trip through the loop, and the stack stays flat however deep the chain
// (see docs/architecture.md). A Coro destroyed without being awaited frees its frame and never
// runs.
//
// Each Coro records where it is defined and the line of the co_await it is suspended at, so a
// task's await chain can be printed with source locations (see the debugging docs).
#pragma once

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/detail/awaitable.hpp"
#include "corio/detail/future_core.hpp"
#include "corio/detail/pool.hpp"
#include "corio/detail/source_location.hpp"
#include "corio/errors.hpp"

namespace corio {

template <class T = void>
class Coro;

namespace detail {

// Awaiters that handle cancellation themselves (they register a Waiter, or cannot suspend the
// task) say so; for any other awaitable a pending cancellation is raised when it resumes.
template <class A>
concept CancelAware = requires {
    std::remove_cvref_t<A>::corio_cancel_aware;
};

struct PromiseBase;

// The task an awaiter suspends. Coros run only inside their task's step (task_step resumes
// every one of them, see TaskCore::transfer_to), so that is the task the loop is stepping.
template <class P>
TaskCore* task_of(std::coroutine_handle<P>) noexcept {
    return t_state.current_task;
}

// Every Coro promise can become the root of a task (it derives from TaskCore); a nested Coro
// leaves those fields unused but one: `resume_point` is the coroutine that awaits it (its
// continuation), which a root has no use for. The await chain of a task is thus linked from the
// innermost coroutine (the root's resume_point) outwards, one continuation after the other.
struct PromiseBase : TaskCore {
    // The coroutine's definition, and the line of its latest co_await. Kept as plain fields
    // (not a SourceLocation member) so that the two lines share one word.
    const char* def_file;
    const char* def_function;
    std::uint32_t def_line;
    std::uint32_t suspended_line = 0;

    explicit PromiseBase(SourceLocation loc) noexcept
        : def_file(loc.file), def_function(loc.function), def_line(loc.line) {}
    SourceLocation where() const noexcept { return {def_file, def_function, def_line}; }

    static void* operator new(std::size_t size) { return pool_allocate(size); }
    static void operator delete(void* p, std::size_t size) noexcept { pool_deallocate(p, size); }

    std::suspend_always initial_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { set_error(std::current_exception()); }

    bool is_root() const noexcept { return kind == Kind::Task; }
    // Awaited as a Coro (or, for a root, given to a task): it must not start a second time.
    bool claimed() const noexcept { return static_cast<bool>(resume_point); }
    std::coroutine_handle<> continuation() const noexcept { return resume_point; }

    // Wraps an awaitable corio does not know: it resumes through the task, and a cancellation
    // requested meanwhile is raised when it does.
    template <class Inner>
    struct CheckedAwaiter {
        Inner inner;

        bool await_ready() { return inner.await_ready(); }
        template <class P>
        decltype(auto) await_suspend(std::coroutine_handle<P> h) {
            TaskCore* task = t_state.current_task;
            if (task == nullptr) return inner.await_suspend(h);
            // The foreign awaiter resumes a relay that schedules the task, instead of
            // resuming the coroutine behind the loop's back.
            task->suspend(h, nullptr);
            return inner.await_suspend(task->relay());
        }
        decltype(auto) await_resume() {
            if (TaskCore* task = t_state.current_task) task->throw_if_cancel_requested();
            return inner.await_resume();
        }
    };

    // Only the line is taken (the file and function are the coroutine's own): g++ keeps the
    // default argument in the coroutine frame for the duration of the co_await.
    template <Awaitable A>
    decltype(auto) await_transform(A&& a, std::uint32_t line = __builtin_LINE()) {
        suspended_line = line;
        using Inner = decltype(get_awaiter(std::forward<A>(a)));
        if constexpr (CancelAware<Inner>) {
            // corio's own awaiters handle cancellation themselves: no wrapper.
            return get_awaiter(std::forward<A>(a));
        } else {
            return CheckedAwaiter<Inner>{get_awaiter(std::forward<A>(a))};
        }
    }
    template <detail::NotAwaitable A>
    void await_transform(A&&, std::uint32_t = __builtin_LINE()) {
        reject_non_awaitable<A>();
    }

    struct FinalAwaiter {
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            PromiseBase& p = h.promise();
            if (!p.is_root()) {
                TaskCore* task = t_state.current_task;
                if (task == nullptr) return p.continuation();
                task->transfer_to(p.continuation());
                return std::noop_coroutine();
            }
            p.finish_task();  // task_step drops the loop's reference afterwards
            return std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }

    // The root coroutine returned: complete the task.
    void finish_task() noexcept;
};

// Debug mode: reports a coroutine destroyed without ever having run (Python's "coroutine ...
// was never awaited").
void report_never_awaited(const PromiseBase& p) noexcept;

template <class T>
struct Promise : PromiseBase {
    static_assert(!std::is_reference_v<T>, "corio::Coro<T&> is not supported; return a pointer");
    std::optional<T> result;

    explicit Promise(SourceLocation loc = SourceLocation::current()) noexcept : PromiseBase(loc) {}
    Coro<T> get_return_object() noexcept;
    template <class U = T>
    void return_value(U&& v) {
        result.emplace(std::forward<U>(v));
    }
    T take_result() {
        if (failed()) std::rethrow_exception(extra->exception);
        return std::move(*result);
    }
};

template <>
struct Promise<void> : PromiseBase {
    explicit Promise(SourceLocation loc = SourceLocation::current()) noexcept : PromiseBase(loc) {}
    Coro<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void take_result() {
        if (failed()) std::rethrow_exception(extra->exception);
    }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Coro {
  public:
    using promise_type = detail::Promise<T>;
    using value_type = T;
    using handle_type = std::coroutine_handle<promise_type>;
    // An await chain is walked through type-erased handles (corio/graph.hpp), which finds each
    // promise at the offset of PromiseBase's: equal alignment is what guarantees that.
    static_assert(alignof(promise_type) == alignof(detail::PromiseBase),
                  "corio::Coro<T> does not support an over-aligned T: return it in a box");

    Coro() noexcept = default;
    explicit Coro(handle_type h) noexcept : h_(h) {}
    Coro(Coro&& other) noexcept : h_(std::exchange(other.h_, {})) {}
    Coro& operator=(Coro&& other) noexcept {
        if (this != &other) {
            reset();
            h_ = std::exchange(other.h_, {});
        }
        return *this;
    }
    ~Coro() { reset(); }

    explicit operator bool() const noexcept { return static_cast<bool>(h_); }
    // Where the coroutine is defined.
    SourceLocation location() const noexcept {
        return h_ ? h_.promise().where() : SourceLocation{};
    }

    struct Awaiter {
        static constexpr bool corio_cancel_aware = true;
        handle_type h;

        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) noexcept {
            h.promise().resume_point = caller;  // its continuation
            detail::TaskCore* task = detail::t_state.current_task;
            if (task == nullptr) return h;  // outside any task: plain symmetric transfer
            task->transfer_to(h);
            return std::noop_coroutine();
        }
        T await_resume() { return h.promise().take_result(); }
    };

    Awaiter operator co_await() && { return Awaiter{checked_handle()}; }
    Awaiter operator co_await() & { return Awaiter{checked_handle()}; }

    // Gives up ownership of the frame (used by create_task).
    handle_type release() noexcept { return std::exchange(h_, {}); }

  private:
    handle_type checked_handle() const {
        if (!h_) throw RuntimeError("co_await on an empty or moved-from corio::Coro");
        if (h_.promise().claimed() || h_.done())
            throw RuntimeError("corio::Coro awaited twice: a coroutine runs once");
        return h_;
    }
    void reset() noexcept {
        if (h_) {
            if (!h_.promise().claimed()) [[unlikely]]
                detail::report_never_awaited(h_.promise());
            h_.destroy();
        }
        h_ = {};
    }

    handle_type h_;
};

namespace detail {

template <class T>
Coro<T> Promise<T>::get_return_object() noexcept {
    return Coro<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}

inline Coro<void> Promise<void>::get_return_object() noexcept {
    return Coro<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}

}  // namespace detail
}  // namespace corio
