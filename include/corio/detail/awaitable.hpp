// What corio accepts after co_await, and the diagnostics for what it does not.
#pragma once

#include <concepts>
#include <coroutine>
#include <tuple>
#include <type_traits>
#include <utility>

namespace corio::detail {

template <class A>
concept HasMemberCoAwait = requires(A&& a) {
    std::forward<A>(a).operator co_await();
};

template <class A>
concept HasFreeCoAwait = requires(A&& a) {
    operator co_await(std::forward<A>(a));
};

template <class A>
concept IsAwaiter = requires(A&& a, std::coroutine_handle<> h) {
    { a.await_ready() } -> std::convertible_to<bool>;
    a.await_suspend(h);
    a.await_resume();
};

template <class A>
decltype(auto) get_awaiter(A&& a) {
    if constexpr (HasMemberCoAwait<A>) {
        return std::forward<A>(a).operator co_await();
    } else if constexpr (HasFreeCoAwait<A>) {
        return operator co_await(std::forward<A>(a));
    } else {
        return std::forward<A>(a);
    }
}

}  // namespace corio::detail

namespace corio {

// Anything `co_await` accepts: corio's Coro, Task and Future, and any C++ awaitable.
template <class A>
concept Awaitable = detail::HasMemberCoAwait<A> || detail::HasFreeCoAwait<A> ||
    detail::IsAwaiter<std::remove_reference_t<A>>;

// The type `co_await a` produces.
template <Awaitable A>
using await_result_t = decltype(detail::get_awaiter(std::declval<A>()).await_resume());

// What run_until_complete()/run() return for `a`: the result by value.
template <Awaitable A>
using run_result_t = std::remove_cvref_t<await_result_t<A>>;

}  // namespace corio

namespace corio::detail {

template <class A>
concept NotAwaitable = !Awaitable<A>;

// What corio's awaitable functions (sleep, lock.acquire(), queue.get(), ...) return: the
// arguments of the awaiter, which `co_await` constructs in place. g++ keeps the temporary that
// such a function returns in the coroutine frame beside the awaiter, for the whole co_await, so
// the temporary is kept as small as the arguments rather than a second copy of the awaiter.
template <class Awaiter, class... Args>
class [[nodiscard]] AwaitOp {
  public:
    explicit AwaitOp(Args... args) : args_(std::move(args)...) {}

    Awaiter operator co_await() && { return std::make_from_tuple<Awaiter>(std::move(args_)); }
    Awaiter operator co_await() const& { return std::make_from_tuple<Awaiter>(args_); }

  private:
    std::tuple<Args...> args_;
};

template <class>
inline constexpr bool always_false = false;

// Fallback overloads call this so that misuse reads as a sentence, not a template backtrace.
template <class A>
constexpr void reject_non_awaitable() {
    static_assert(always_false<A>,
                  "corio: the argument is not awaitable; expected a corio::Coro, corio::Task, "
                  "corio::Future, or a type with await_ready/await_suspend/await_resume or an "
                  "operator co_await");
}

}  // namespace corio::detail
