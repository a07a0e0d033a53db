// corio::TaskGroup: structured concurrency (asyncio.TaskGroup).
//
//     co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
//         tg.create_task(download("a"));
//         tg.create_task(download("b"));
//         co_return;
//     });  // both downloads are done here, or all were cancelled and ExceptionGroup thrown
//
//     std::optional<int> n = co_await corio::task_group([&](corio::TaskGroup& tg)
//                                                            -> corio::Coro<int> { ... });
//
// The body runs in the current task; the children run concurrently. task_group() returns only
// when every child is done: no child outlives the group. The first child to fail (other than
// by cancellation) cancels the body and the other children; all failures are then thrown
// together as an ExceptionGroup. Cancelling the task that runs the group cancels the children
// too, and the CancelledError propagates once they are done. tg.cancel() stops the group early
// without an error.
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/intrusive.hpp"
#include "corio/tasks.hpp"

namespace corio {

namespace detail {
struct GroupKey {};
}  // namespace detail

class TaskGroup {
  public:
    TaskGroup(const TaskGroup&) = delete;
    TaskGroup& operator=(const TaskGroup&) = delete;
    ~TaskGroup();

    // Starts a child task. RuntimeError once the group is shutting down or finished (the
    // coroutine is then destroyed without running).
    template <Awaitable A>
    Task<run_result_t<A>> create_task(A&& aw, std::string name = {}) {
        try {
            check_accepting();
        } catch (...) {
            // Refused, as asyncio closes the coroutine: not a coroutine "never awaited" by
            // mistake, so debug mode must not report it.
            if constexpr (detail::is_coro<std::remove_cvref_t<A>>::value) {
                if (auto h = aw.release()) {
                    h.promise().resume_point = std::noop_coroutine();
                    h.destroy();
                }
            }
            throw;
        }
        auto task = corio::create_task(std::forward<A>(aw), std::move(name));
        adopt(task);
        return task;
    }
    template <detail::NotAwaitable A>
    void create_task(A&&, std::string = {}) {
        detail::reject_non_awaitable<A>();
    }

    // Cancels the children and the body; the group then exits without an error. Idempotent.
    void cancel();

    // Number of children not done yet.
    std::size_t size() const noexcept { return children_.size(); }

    // Only task_group() makes and finishes a group: that is what guarantees the children are
    // waited for. (The key type is internal.)
    explicit TaskGroup(detail::GroupKey);
    Coro<> exit(detail::GroupKey, std::exception_ptr body_error);

  private:
    struct Child;
    struct Joiner;
    friend struct Joiner;

    void check_accepting() const;
    void adopt(const AnyTask& task);
    void on_child_done(Child& child);
    void abort();

    AnyTask parent_;
    struct ChildHook : detail::ListHook {};
    detail::List<Child, ChildHook> children_;
    std::vector<std::exception_ptr> errors_;
    std::exception_ptr base_error_;
    Joiner* joiner_ = nullptr;
    bool exiting_ = false;
    bool aborting_ = false;
    bool parent_cancel_requested_ = false;
};

namespace detail {

template <class F>
concept GroupBody =
    std::is_invocable_v<F&, TaskGroup&> && Awaitable<std::invoke_result_t<F&, TaskGroup&>>;

template <class F>
concept NotGroupBody = !GroupBody<F>;

template <GroupBody F>
using group_result_t = run_result_t<std::invoke_result_t<F&, TaskGroup&>>;

template <GroupBody F>
using group_return_t =
    std::conditional_t<std::is_void_v<group_result_t<F>>, void, std::optional<group_result_t<F>>>;

}  // namespace detail

// Runs body(group) and then waits for every child of the group; see TaskGroup. A body that
// returns a value makes task_group() return std::optional of it, empty when tg.cancel() stopped
// the group before the body returned (there is then no value, and no error either).
template <detail::GroupBody F>
Coro<detail::group_return_t<F>> task_group(F body) {
    using R = detail::group_result_t<F>;
    TaskGroup group{detail::GroupKey{}};
    auto outcome = co_await detail::settle(std::invoke(body, group));
    co_await group.exit(detail::GroupKey{}, outcome.exception());
    if constexpr (!std::is_void_v<R>) {
        if (outcome.has_value()) co_return std::move(outcome.value());
        co_return std::nullopt;
    }
}

template <detail::NotGroupBody F>
void task_group(F) {
    static_assert(detail::always_false<F>,
                  "corio::task_group needs a callable taking corio::TaskGroup& and returning an "
                  "awaitable, e.g. [&](corio::TaskGroup& tg) -> corio::Coro<> { ... }");
}

}  // namespace corio
