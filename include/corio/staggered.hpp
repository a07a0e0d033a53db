// Staggered races (asyncio.staggered.staggered_race): start attempts one after another, each
// `delay` after the previous one or as soon as the latest one fails, and keep the first that
// succeeds. The engine of Happy Eyeballs (RFC 8305) in corio::create_connection.
//
//     std::vector<std::function<corio::Coro<std::string>()>> mirrors = {...};
//     auto race = co_await corio::staggered_race(mirrors, 200ms);
//     if (race.winner_index) use(*race.winner_result);
//     else for (auto& e : race.exceptions) log(corio::describe(e));   // every attempt failed
//
// Nothing outlives the race: once an attempt wins, the others are cancelled and awaited before
// staggered_race returns, and cancelling the caller cancels and awaits every attempt too. An
// attempt that succeeds after the winner (in the same loop iteration, or by ignoring its
// cancellation) has its result destroyed before staggered_race returns, so results that own a
// resource (a corio::Socket, a std::unique_ptr) release it: prefer such RAII results.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/coro.hpp"
#include "corio/errors.hpp"
#include "corio/events.hpp"
#include "corio/tasks.hpp"

namespace corio {

// What staggered_race returns: asyncio's (winner_result, winner_index, exceptions).
template <class T>
struct StaggeredResult {
    // The winner's result (std::monostate for `void`); empty when no attempt succeeded.
    std::optional<detail::stored_t<T>> winner_result;
    std::optional<std::size_t> winner_index;
    // One entry per attempt started, in order: what it raised (CancelledError for one cancelled
    // because another won), or null for the winner and for an attempt that succeeded after it.
    // When no attempt succeeded, every attempt was started and every entry holds its failure.
    std::vector<std::exception_ptr> exceptions;
};

namespace detail {

// A callable that starts one attempt: it returns an awaitable (typically a Coro).
template <class F>
concept AttemptFactory = std::is_invocable_v<F&> && Awaitable<std::invoke_result_t<F&>>;

template <class F>
concept NotAttemptFactory = !AttemptFactory<F>;

template <AttemptFactory F>
using attempt_result_t = run_result_t<std::invoke_result_t<F&>>;

}  // namespace detail

// Runs the attempts that `factories` start, staggered: attempt 0 at once, then attempt k+1
// either `delay` after attempt k started or as soon as attempt k fails, whichever comes first
// (with no delay, only when it fails). The first attempt to succeed wins; the others are
// cancelled and awaited. Cancelling the caller cancels every attempt, waits for them all, and
// raises CancelledError. A factory that throws fails its attempt at once.
template <detail::AttemptFactory F>
Coro<StaggeredResult<detail::attempt_result_t<F>>> staggered_race(std::vector<F> factories,
                                                                  std::optional<Duration> delay) {
    using T = detail::attempt_result_t<F>;
    EventLoop& loop = get_running_loop();
    StaggeredResult<T> out;
    std::vector<Task<T>> tasks;        // tasks[i] runs attempt i (empty if its factory threw)
    std::vector<std::size_t> running;  // the attempts not finished yet
    TimePoint last_start{};
    bool cancelled = false;
    bool attempts_cancelled = false;  // MultiWait passed the caller's cancellation on to them
    std::exception_ptr cancel_error;  // a CancelledError delivered to us, to raise at the end
    bool latest_failed = false;

    // Starts the next attempt; false if its factory threw (the attempt has then failed).
    auto start_next = [&]() -> bool {
        const std::size_t i = tasks.size();
        last_start = loop.time();
        out.exceptions.emplace_back();
        try {
            tasks.push_back(create_task(std::invoke(factories[i]),
                                        "staggered_race attempt " + std::to_string(i)));
        } catch (...) {
            tasks.emplace_back();
            out.exceptions[i] = std::current_exception();
            return false;
        }
        running.push_back(i);
        return true;
    };
    // Starts attempts until one is running or none is left (the latest has failed).
    auto start_one = [&] {
        while (tasks.size() < factories.size() && !start_next()) {
        }
    };
    // Takes the outcome of attempt i, which has finished.
    auto settle = [&](std::size_t i) {
        detail::FutureCore* core = tasks[i].core();
        if (std::exception_ptr e = core->take_exception()) {
            out.exceptions[i] = std::move(e);
            if (i + 1 == tasks.size()) latest_failed = true;
        } else if (!out.winner_index) {
            out.winner_index = i;
            if constexpr (std::is_void_v<T>) {
                out.winner_result.emplace();
            } else {
                out.winner_result.emplace(std::move(Task<T>::value_of(core)));
            }
        }
        // A later success keeps its result in its task, destroyed with it below.
    };
    // Waits until `until` holds for the running attempts (or `deadline` passes) and settles
    // those that finished. A cancellation of the caller is noted, not raised: the attempts
    // must be awaited first.
    auto wait_running = [&](detail::MultiWait::Until until,
                            std::optional<TimePoint> deadline) -> Coro<> {
        const std::vector<std::size_t> watched = running;
        std::vector<detail::FutureCore*> cores;
        for (std::size_t i : watched) cores.push_back(tasks[i].core());
        detail::MultiWait mw(std::move(cores), until, detail::MultiWait::OnCancel::CancelChildren);
        mw.set_deadline(deadline);
        try {
            co_await mw.wait();
        } catch (const CancelledError&) {
            // Cancelled while already woken: MultiWait did not get to cancel the attempts.
            cancel_error = std::current_exception();
        }
        if (mw.outer_cancelled()) attempts_cancelled = true;
        if (mw.outer_cancelled() || cancel_error) cancelled = true;
        for (std::size_t k : mw.take_completed()) {
            settle(watched[k]);
            std::erase(running, watched[k]);
        }
    };

    start_one();
    while (!running.empty() && !out.winner_index && !cancelled) {
        std::optional<TimePoint> deadline;
        if (delay && tasks.size() < factories.size()) deadline = last_start + *delay;
        latest_failed = false;
        co_await wait_running(detail::MultiWait::Until::AnyCompleted, deadline);
        if (out.winner_index || cancelled) break;
        if (latest_failed || (deadline && loop.time() >= *deadline)) start_one();
    }

    // Once only: a second cancel() would interrupt an attempt's cleanup of the first.
    if (!attempts_cancelled) {
        for (std::size_t i : running) tasks[i].cancel();
    }
    while (!running.empty()) {
        co_await wait_running(detail::MultiWait::Until::AllCompleted, std::nullopt);
    }
    tasks.clear();  // destroys the results of attempts that succeeded after the winner
    if (cancel_error) std::rethrow_exception(cancel_error);
    if (cancelled) current_task().core()->throw_cancelled();
    co_return out;
}

template <detail::AttemptFactory F, class Rep, class Period>
Coro<StaggeredResult<detail::attempt_result_t<F>>> staggered_race(
    std::vector<F> factories, std::chrono::duration<Rep, Period> delay) {
    return staggered_race(std::move(factories),
                          std::optional<Duration>(std::chrono::ceil<Duration>(delay)));
}

template <detail::NotAttemptFactory F, class D>
void staggered_race(std::vector<F>, D) {
    static_assert(detail::always_false<F>,
                  "corio::staggered_race needs callables that take no argument and return an "
                  "awaitable, e.g. [addr] { return connect_to(addr); }");
}

}  // namespace corio
