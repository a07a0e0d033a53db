// corio::staggered_race (asyncio.staggered.staggered_race), the engine of Happy Eyeballs.
//
// Every test runs on the virtual clock, so the schedule of the attempts is asserted exactly:
// attempt k+1 starts `delay` after attempt k, or the moment attempt k fails. The attempts are
// scripted: each records when it started, then succeeds, fails or hangs as told, and records
// whether it was cancelled. The harness fails a test that leaves an attempt running or an
// exception unretrieved.
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "corio/corio.hpp"
#include "corio/staggered.hpp"
#include "corio/testing.hpp"

using namespace std::chrono_literals;

namespace {

#define RACE_TEST(suite, name) \
    CORIO_TEST_WITH(suite, name, {.virtual_clock = corio::VirtualClock{}, .timeout = 1h})

corio::TimePoint now() {
    return corio::get_running_loop().time();
}

// What the attempts did, in loop time since the race began.
struct Log {
    corio::TimePoint t0 = now();
    std::map<std::size_t, corio::Duration> started;
    std::set<std::size_t> cancelled;
    std::set<std::size_t> cleaned_up;  // finished a slow cleanup after being cancelled
};

struct Step {
    enum Kind { Succeed, Fail, Hang };
    Kind kind;
    corio::Duration after = 0ms;  // how long it runs before succeeding or failing
    int value = 0;
};

using Factory = std::function<corio::Coro<int>()>;

// Runs one scripted attempt; a failure is a std::runtime_error("attempt <i>").
corio::Coro<int> scripted(Step step, std::size_t i, Log* log) {
    log->started[i] = now() - log->t0;
    try {
        if (step.kind == Step::Hang) {
            corio::Event never;
            co_await never.wait();
        } else {
            co_await corio::sleep(step.after);
        }
    } catch (const corio::CancelledError&) {
        log->cancelled.insert(i);
        throw;
    }
    if (step.kind == Step::Fail) throw std::runtime_error("attempt " + std::to_string(i));
    co_return step.value;
}

std::vector<Factory> factories(const std::vector<Step>& steps, Log& log) {
    std::vector<Factory> out;
    for (std::size_t i = 0; i < steps.size(); ++i)
        out.push_back([step = steps[i], i, log = &log] { return scripted(step, i, log); });
    return out;
}

std::map<std::size_t, corio::Duration> starts(std::initializer_list<corio::Duration> times) {
    std::map<std::size_t, corio::Duration> out;
    std::size_t i = 0;
    for (corio::Duration t : times) out[i++] = t;
    return out;
}

std::string message_of(const std::exception_ptr& e) {
    return e ? corio::describe(e) : std::string("null");
}

bool failed_as(const std::exception_ptr& e, std::size_t i) {
    try {
        if (e) std::rethrow_exception(e);
    } catch (const std::runtime_error& x) {
        return x.what() == "attempt " + std::to_string(i);
    } catch (...) {
    }
    return false;
}

// A result that owns something: `live` counts the ones not destroyed yet.
class Resource {
  public:
    Resource(int id, int* live, int* made) : id_(id), live_(live) {
        ++*live_;
        ++*made;
    }
    Resource(Resource&& o) noexcept : id_(o.id_), live_(std::exchange(o.live_, nullptr)) {}
    Resource& operator=(Resource&&) = delete;
    ~Resource() {
        if (live_ != nullptr) --*live_;
    }
    int id() const noexcept { return id_; }

  private:
    int id_;
    int* live_;
};

struct Counts {
    int live = 0;
    int made = 0;
};

// Succeeds with a Resource after `after`.
corio::Coro<Resource> resource_after(corio::Duration after, int id, Counts* counts) {
    co_await corio::sleep(after);
    co_return Resource(id, &counts->live, &counts->made);
}

// Hangs, and when cancelled returns a Resource all the same (it swallows the cancellation).
corio::Coro<Resource> stubborn_resource(int id, Counts* counts) {
    try {
        corio::Event never;
        co_await never.wait();
    } catch (const corio::CancelledError&) {
    }
    co_return Resource(id, &counts->live, &counts->made);
}

// Hangs; when cancelled, takes `cleanup` to clean up before it raises CancelledError.
corio::Coro<int> slow_to_cancel(corio::Duration cleanup, std::size_t i, Log* log) {
    log->started[i] = now() - log->t0;
    bool cancelled = false;
    try {
        corio::Event never;
        co_await never.wait();
    } catch (const corio::CancelledError&) {
        cancelled = true;  // (no co_await inside a catch block)
    }
    if (cancelled) {
        log->cancelled.insert(i);
        co_await corio::sleep(cleanup);
        log->cleaned_up.insert(i);
        throw corio::CancelledError();
    }
    co_return 0;
}

}  // namespace

// --- the schedule ----------------------------------------------------------------------------

RACE_TEST(StaggeredRace, AttemptKStartsKDelaysInWhileTheEarlierOnesHang) {
    Log log;
    const std::vector<Step> steps = {{Step::Hang}, {Step::Hang}, {Step::Succeed, 10ms, 7}};
    auto race = co_await corio::staggered_race(factories(steps, log), 100ms);
    EXPECT_EQ(now() - log.t0, corio::Duration(210ms));
    EXPECT_EQ(log.started, starts({0ms, 100ms, 200ms}));
    CORIO_ASSERT(race.winner_index.has_value());
    EXPECT_EQ(*race.winner_index, 2u);
    EXPECT_EQ(race.winner_result, 7);
    // The losers were cancelled and awaited: their CancelledError is there, as in asyncio.
    EXPECT_EQ(log.cancelled, (std::set<std::size_t>{0, 1}));
    CORIO_ASSERT(race.exceptions.size() == 3u);
    EXPECT_TRUE(corio::is_cancellation(race.exceptions[0])) << message_of(race.exceptions[0]);
    EXPECT_TRUE(corio::is_cancellation(race.exceptions[1])) << message_of(race.exceptions[1]);
    EXPECT_FALSE(race.exceptions[2]) << message_of(race.exceptions[2]);
}

RACE_TEST(StaggeredRace, AFailureStartsTheNextAttemptAtOnceAndTheDelayCountsFromThere) {
    Log log;
    const std::vector<Step> steps = {{Step::Fail, 30ms}, {Step::Hang}, {Step::Succeed, 0ms, 5}};
    auto race = co_await corio::staggered_race(factories(steps, log), 100ms);
    // Attempt 1 starts when attempt 0 fails (30 ms, not 100 ms); attempt 2 a delay later.
    EXPECT_EQ(log.started, starts({0ms, 30ms, 130ms}));
    EXPECT_EQ(now() - log.t0, corio::Duration(130ms));
    EXPECT_EQ(race.winner_index, 2u);
    EXPECT_EQ(race.winner_result, 5);
    CORIO_ASSERT(race.exceptions.size() == 3u);
    EXPECT_TRUE(failed_as(race.exceptions[0], 0)) << message_of(race.exceptions[0]);
    EXPECT_TRUE(corio::is_cancellation(race.exceptions[1])) << message_of(race.exceptions[1]);
}

RACE_TEST(StaggeredRace, OnlyTheLatestAttemptsFailureStartsTheNextEarly) {
    Log log;
    // Attempt 0 fails at 150 ms, while attempt 1 (started at 100 ms) runs: attempt 2 still
    // waits for attempt 1's delay (200 ms), as asyncio's does.
    const std::vector<Step> steps = {{Step::Fail, 150ms}, {Step::Hang}, {Step::Succeed, 0ms, 9}};
    auto race = co_await corio::staggered_race(factories(steps, log), 100ms);
    EXPECT_EQ(log.started, starts({0ms, 100ms, 200ms}));
    EXPECT_EQ(race.winner_index, 2u);
    EXPECT_TRUE(failed_as(race.exceptions.at(0), 0)) << message_of(race.exceptions.at(0));
}

RACE_TEST(StaggeredRace, WithoutADelayAnAttemptStartsOnlyWhenThePreviousFails) {
    Log log;
    const std::vector<Step> steps = {
        {Step::Fail, 1s}, {Step::Fail, 500ms}, {Step::Succeed, 10ms, 3}};
    auto race = co_await corio::staggered_race(factories(steps, log), std::nullopt);
    EXPECT_EQ(log.started, starts({0ms, 1000ms, 1500ms}));
    EXPECT_EQ(now() - log.t0, corio::Duration(1510ms));
    EXPECT_EQ(race.winner_index, 2u);
    EXPECT_EQ(race.winner_result, 3);
    CORIO_ASSERT(race.exceptions.size() == 3u);
    EXPECT_TRUE(failed_as(race.exceptions[0], 0));
    EXPECT_TRUE(failed_as(race.exceptions[1], 1));
    EXPECT_FALSE(race.exceptions[2]);
}

RACE_TEST(StaggeredRace, AZeroDelayStartsEveryAttemptAtOnce) {
    Log log;
    const std::vector<Step> steps = {
        {Step::Succeed, 30ms, 0}, {Step::Succeed, 10ms, 1}, {Step::Succeed, 20ms, 2}};
    auto race = co_await corio::staggered_race(factories(steps, log), 0ms);
    EXPECT_EQ(log.started, starts({0ms, 0ms, 0ms}));
    EXPECT_EQ(race.winner_index, 1u);
    EXPECT_EQ(now() - log.t0, corio::Duration(10ms));
    EXPECT_EQ(log.cancelled, (std::set<std::size_t>{0, 2}));
}

RACE_TEST(StaggeredRace, TheFirstToSucceedWinsEvenWhenStartedLater) {
    Log log;
    const std::vector<Step> steps = {{Step::Succeed, 500ms, 1}, {Step::Succeed, 100ms, 2}};
    auto race = co_await corio::staggered_race(factories(steps, log), 100ms);
    EXPECT_EQ(race.winner_index, 1u);
    EXPECT_EQ(race.winner_result, 2);
    EXPECT_EQ(now() - log.t0, corio::Duration(200ms));
    EXPECT_EQ(log.cancelled, (std::set<std::size_t>{0}));
}

RACE_TEST(StaggeredRace, AnAttemptThatWinsAtOnceStartsNoOther) {
    Log log;
    int later_calls = 0;
    std::vector<Factory> fs = factories({{Step::Succeed, 0ms, 4}}, log);
    fs.push_back([&later_calls]() -> corio::Coro<int> {
        ++later_calls;
        co_return 0;
    });
    auto race = co_await corio::staggered_race(std::move(fs), 100ms);
    EXPECT_EQ(race.winner_index, 0u);
    EXPECT_EQ(race.winner_result, 4);
    EXPECT_EQ(later_calls, 0);
    EXPECT_EQ(race.exceptions.size(), 1u);  // only the attempts started have an entry
    EXPECT_EQ(now() - log.t0, corio::Duration(0ms));
}

// --- failures ---------------------------------------------------------------------------------

RACE_TEST(StaggeredRace, WhenEveryAttemptFailsThereIsNoWinnerAndEachFailureIsThere) {
    Log log;
    const std::vector<Step> steps = {{Step::Fail, 10ms}, {Step::Fail, 0ms}, {Step::Fail, 20ms}};
    auto race = co_await corio::staggered_race(factories(steps, log), 1s);
    EXPECT_EQ(log.started, starts({0ms, 10ms, 10ms}));
    EXPECT_EQ(now() - log.t0, corio::Duration(30ms));
    EXPECT_FALSE(race.winner_index.has_value());
    EXPECT_FALSE(race.winner_result.has_value());
    CORIO_ASSERT(race.exceptions.size() == 3u);
    for (std::size_t i = 0; i < 3; ++i)
        EXPECT_TRUE(failed_as(race.exceptions[i], i))
            << i << ": " << message_of(race.exceptions[i]);
}

RACE_TEST(StaggeredRace, AFactoryThatThrowsFailsItsAttemptAndTheNextStartsAtOnce) {
    Log log;
    std::vector<Factory> fs;
    fs.push_back([]() -> corio::Coro<int> { throw std::runtime_error("attempt 0"); });
    fs.push_back([&log] { return scripted({Step::Succeed, 5ms, 8}, 1, &log); });
    auto race = co_await corio::staggered_race(std::move(fs), 100ms);
    EXPECT_EQ(log.started, (std::map<std::size_t, corio::Duration>{{1, 0ms}}));
    EXPECT_EQ(race.winner_index, 1u);
    EXPECT_EQ(race.winner_result, 8);
    EXPECT_TRUE(failed_as(race.exceptions.at(0), 0)) << message_of(race.exceptions.at(0));
}

RACE_TEST(StaggeredRace, NoFactoriesMeansNoWinnerAndNoExceptions) {
    std::vector<Factory> none;
    auto race = co_await corio::staggered_race(std::move(none), 100ms);
    EXPECT_FALSE(race.winner_index.has_value());
    EXPECT_TRUE(race.exceptions.empty());
}

RACE_TEST(StaggeredRace, VoidAttemptsReportTheWinnerByIndex) {
    int ran = 0;
    std::vector<std::function<corio::Coro<>()>> fs;
    fs.push_back([]() -> corio::Coro<> {
        co_await corio::sleep(1s);
        throw std::runtime_error("too slow");
    });
    fs.push_back([&ran]() -> corio::Coro<> {
        ++ran;
        co_return;
    });
    auto race = co_await corio::staggered_race(std::move(fs), 50ms);
    EXPECT_EQ(race.winner_index, 1u);
    EXPECT_TRUE(race.winner_result.has_value());
    EXPECT_EQ(ran, 1);
    EXPECT_TRUE(corio::is_cancellation(race.exceptions.at(0)));
}

// --- cancellation and the results of losers ----------------------------------------------------

RACE_TEST(StaggeredRace, CancellingTheCallerCancelsAndAwaitsEveryAttempt) {
    Log log;
    std::vector<Factory> fs;
    for (std::size_t i = 0; i < 3; ++i)
        fs.push_back([i, &log] { return slow_to_cancel(50ms, i, &log); });
    auto racer = corio::create_task(corio::staggered_race(std::move(fs), 100ms), "racer");
    co_await corio::sleep(150ms);
    EXPECT_EQ(log.started, starts({0ms, 100ms}));
    racer.cancel();
    bool cancelled = false;
    try {
        co_await racer;
    } catch (const corio::CancelledError&) {
        cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    // The race ended only once both attempts had cleaned up; the third never started.
    EXPECT_EQ(now() - log.t0, corio::Duration(200ms));
    EXPECT_EQ(log.cleaned_up, (std::set<std::size_t>{0, 1}));
    EXPECT_EQ(log.started.size(), 2u);
}

RACE_TEST(StaggeredRace, ACallerCancelledBeforehandRaisesCancelledErrorAndLeavesNothingRunning) {
    Log log;
    corio::current_task().cancel();
    bool cancelled = false;
    try {
        const std::vector<Step> steps = {{Step::Hang}, {Step::Hang}};
        (void)co_await corio::staggered_race(factories(steps, log), 10ms);
    } catch (const corio::CancelledError&) {
        cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(corio::current_task().uncancel(), 0u);
    // The first attempt was cancelled before its first step, so its body never ran (as an
    // asyncio task cancelled before it starts); no other attempt was started.
    EXPECT_TRUE(log.started.empty());
    EXPECT_EQ(now() - log.t0, corio::Duration(0ms));
}

RACE_TEST(StaggeredRace, ALoserThatSucceedsDespiteItsCancellationHasItsResultDestroyed) {
    Counts counts;
    std::vector<std::function<corio::Coro<Resource>()>> fs;
    fs.push_back([&counts] { return stubborn_resource(0, &counts); });
    fs.push_back([&counts] { return resource_after(0ms, 1, &counts); });
    auto race = co_await corio::staggered_race(std::move(fs), 50ms);
    CORIO_ASSERT(race.winner_result.has_value());
    EXPECT_EQ(race.winner_index, 1u);
    EXPECT_EQ(race.winner_result->id(), 1);
    // Attempt 0 made its Resource after it was cancelled; it is gone, the winner's is not.
    EXPECT_EQ(counts.made, 2);
    EXPECT_EQ(counts.live, 1);
    EXPECT_FALSE(race.exceptions.at(0)) << message_of(race.exceptions.at(0));
}

RACE_TEST(StaggeredRace, TwoAttemptsSucceedingAtTheSameMomentLeaveOnlyTheWinnersResult) {
    Counts counts;
    std::vector<std::function<corio::Coro<Resource>()>> fs;
    fs.push_back([&counts] { return resource_after(100ms, 0, &counts); });
    fs.push_back([&counts] { return resource_after(50ms, 1, &counts); });  // starts at 50 ms
    auto race = co_await corio::staggered_race(std::move(fs), 50ms);
    // Both finish at 100 ms, before the race sees either: the first to finish wins.
    CORIO_ASSERT(race.winner_result.has_value());
    EXPECT_EQ(race.winner_index, 0u);
    EXPECT_EQ(race.winner_result->id(), 0);
    EXPECT_EQ(counts.made, 2);
    EXPECT_EQ(counts.live, 1);
    CORIO_ASSERT(race.exceptions.size() == 2u);
    EXPECT_FALSE(race.exceptions[0]);
    EXPECT_FALSE(race.exceptions[1]) << message_of(race.exceptions[1]);
}
