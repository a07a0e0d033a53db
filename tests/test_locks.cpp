// Tests for corio/locks.hpp: Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier and
// their RAII guards (`auto held = co_await lock.guard();` is `async with lock:`).
//
// The behaviours pinned here are asyncio's (CPython's Lib/test/test_asyncio/test_locks.py, and
// the `async with` parts of test_pep492.py), with corio's documented differences: a release
// hands the lock or permit straight to the oldest waiter (so locked() stays true, and a later
// arrival can never overtake), and a cancellation never leaves anything behind, also when it
// arrives after the hand-over but before the woken task ran.
//
// Tasks are sequenced with sleep(0s), which yields to the loop exactly once: what a task wakes
// in one pass of the loop runs in the next one. Only the timeout tests wait for a deadline, and
// only for deadlines that nothing can beat, so no outcome depends on the machine's speed. The
// primitives live in the TEST bodies, so that they outlive every task corio::run() cleans up.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <numeric>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;
using corio::AnyTask;
using corio::CancelledError;
using corio::Coro;

// --- counting allocations ----------------------------------------------------------------------
//
// The global operator new/delete are replaced for this binary: they forward to malloc/free and
// count the allocations made on this thread while counting is on.

namespace {

thread_local bool t_counting = false;
std::atomic<std::size_t> g_allocations{0};

void* counted_malloc(std::size_t n) noexcept {
    if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n == 0 ? 1 : n);
}

void* counted_aligned(std::size_t n, std::align_val_t al) noexcept {
    if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
    auto a = static_cast<std::size_t>(al);
    if (a < sizeof(void*)) a = sizeof(void*);
    std::size_t rounded = (n == 0 ? 1 : n) + a - 1;
    rounded -= rounded % a;
    return std::aligned_alloc(a, rounded);
}

void* checked(void* p) {
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

// Counts the allocations made on this thread while it lives.
class AllocationCounter {
  public:
    AllocationCounter() {
        g_allocations.store(0);
        t_counting = true;
    }
    ~AllocationCounter() { t_counting = false; }
    AllocationCounter(const AllocationCounter&) = delete;
    AllocationCounter& operator=(const AllocationCounter&) = delete;
    std::size_t stop() {
        t_counting = false;
        return g_allocations.load();
    }
};

}  // namespace

void* operator new(std::size_t n) {
    return checked(counted_malloc(n));
}
void* operator new[](std::size_t n) {
    return checked(counted_malloc(n));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return counted_malloc(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return counted_malloc(n);
}
void* operator new(std::size_t n, std::align_val_t al) {
    return checked(counted_aligned(n, al));
}
void* operator new[](std::size_t n, std::align_val_t al) {
    return checked(counted_aligned(n, al));
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return counted_aligned(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return counted_aligned(n, al);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}

namespace {

// --- helpers: small coroutines used as task bodies ---------------------------------------------

// Yields to the loop n times.
Coro<> yield_n(int n = 1) {
    for (int i = 0; i < n; ++i) co_await corio::sleep(0s);
}

// Waits for `t` to finish, whatever its outcome (which the caller then inspects). It polls, for
// at most ~5 s: a broken primitive that strands a task then fails the test instead of hanging
// the whole binary.
Coro<> finish(AnyTask t) {
    for (int i = 0; i < 100 && !t.done(); ++i) co_await corio::sleep(0s);
    for (int i = 0; i < 5000 && !t.done(); ++i) co_await corio::sleep(1ms);
    if (!t.done()) {
        ADD_FAILURE() << "a task did not finish";
        co_return;
    }
    try {
        co_await t;
    } catch (...) {
    }
}

Coro<> set_flag(bool* flag) {
    *flag = true;
    co_return;
}

// Acquires `p` (a Lock, Condition or Semaphore), appends `id` to `log`, and releases it again
// unless `keep`. A cancelled acquire appends -id and rethrows.
template <class P>
Coro<> acquire_log(P& p, std::vector<int>& log, int id, bool keep = false) {
    try {
        co_await p.acquire();
    } catch (const CancelledError&) {
        log.push_back(-id);
        throw;
    }
    log.push_back(id);
    if (!keep) p.release();
}

// The same through guard(); the guard releases at the end.
template <class P>
Coro<> guard_log(P& p, std::vector<int>& log, int id) {
    try {
        auto held = co_await p.guard();
        log.push_back(id);
    } catch (const CancelledError&) {
        log.push_back(-id);
        throw;
    }
}

// Holds `p` (through a guard) from when it gets it until `ev` is set.
template <class P>
Coro<> hold_until(P& p, corio::Event& ev, std::vector<int>& log, int id) {
    auto held = co_await p.guard();
    log.push_back(id);
    co_await ev.wait();
}

// Acquires `p` within `d`, and releases it; sets *timed_out on TimeoutError.
template <class P>
Coro<> acquire_within(P& p, corio::Duration d, bool* timed_out) {
    bool acquired = false;
    try {
        co_await corio::wait_for(p.acquire(), d);
        acquired = true;
    } catch (const corio::TimeoutError&) {
        *timed_out = true;
    }
    if (acquired) p.release();
}

// Appends `id` once `ev` is set; a cancelled wait appends -id and rethrows.
Coro<> wait_log(corio::Event& ev, std::vector<int>& log, int id) {
    try {
        co_await ev.wait();
    } catch (const CancelledError&) {
        log.push_back(-id);
        throw;
    }
    log.push_back(id);
}

// Takes cond's lock, waits for one notification, appends `id`, and releases the lock unless
// `keep`. A cancelled wait appends -id, records whether the lock was held when CancelledError
// surfaced, releases the lock and rethrows.
Coro<> cond_wait_log(corio::Condition& cond, std::vector<int>& log, int id, bool keep = false,
                     bool* held_on_cancel = nullptr) {
    co_await cond.acquire();
    try {
        co_await cond.wait();
    } catch (const CancelledError&) {
        log.push_back(-id);
        if (held_on_cancel != nullptr) *held_on_cancel = cond.locked();
        cond.release();
        throw;
    }
    log.push_back(id);
    if (!keep) cond.release();
}

// Waits on the barrier; counts a BrokenBarrierError in *broken instead of raising it.
Coro<> barrier_wait_counting(corio::Barrier& b, int* broken, int* passed = nullptr) {
    try {
        co_await b.wait();
    } catch (const corio::BrokenBarrierError&) {
        ++*broken;
        co_return;
    }
    if (passed != nullptr) ++*passed;
}

std::vector<int> positives(const std::vector<int>& log) {
    std::vector<int> out;
    for (int v : log)
        if (v > 0) out.push_back(v);
    return out;
}

std::vector<std::size_t> sorted_results(const std::vector<corio::Task<std::size_t>>& tasks) {
    std::vector<std::size_t> out;
    for (const auto& t : tasks) out.push_back(t.result());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::size_t> iota_n(std::size_t n) {
    std::vector<std::size_t> out(n);
    std::iota(out.begin(), out.end(), std::size_t{0});
    return out;
}

}  // namespace

// --- Lock --------------------------------------------------------------------------------------

TEST(Lock, AcquireLocksAndReleaseUnlocks) {
    corio::Lock lock;
    EXPECT_FALSE(lock.locked());
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        EXPECT_TRUE(lock.locked());
        lock.release();
        EXPECT_FALSE(lock.locked());
    }());
    EXPECT_FALSE(lock.locked());
}

TEST(Lock, ReleaseOfAnUnlockedLockRaisesRuntimeError) {
    corio::Lock lock;
    EXPECT_THROW(lock.release(), corio::RuntimeError);
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        lock.release();
        EXPECT_THROW(lock.release(), corio::RuntimeError);
    }());
    EXPECT_FALSE(lock.locked());
}

TEST(Lock, UncontendedAcquireDoesNotYieldToOtherTasks) {
    corio::Lock lock;
    bool other_ran = false;
    corio::run([&]() -> Coro<> {
        auto other = corio::create_task(set_flag(&other_ran));
        co_await lock.acquire();
        EXPECT_FALSE(other_ran);
        lock.release();
        co_await finish(other);
        EXPECT_TRUE(other_ran);
    }());
}

TEST(Lock, WaitersAcquireInArrivalOrder) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto t1 = corio::create_task(acquire_log(lock, log, 1, true));
        auto t2 = corio::create_task(acquire_log(lock, log, 2, true));
        co_await yield_n();
        EXPECT_TRUE(log.empty());

        lock.release();
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));

        auto t3 = corio::create_task(acquire_log(lock, log, 3, true));
        lock.release();
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1, 2}));

        lock.release();
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));
        EXPECT_TRUE(t1.done() && t2.done() && t3.done());
        EXPECT_TRUE(lock.locked());  // t3 kept it
        lock.release();
        EXPECT_FALSE(lock.locked());
    }());
}

TEST(Lock, ReleaseHandsTheLockStraightToTheOldestWaiter) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto t = corio::create_task(acquire_log(lock, log, 1, true));
        co_await yield_n();
        lock.release();
        // asyncio briefly reports an unlocked lock here; corio has already given it to t.
        EXPECT_TRUE(lock.locked());
        EXPECT_TRUE(log.empty());
        co_await finish(t);
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_TRUE(lock.locked());
        lock.release();
        EXPECT_FALSE(lock.locked());
    }());
}

TEST(Lock, ALaterArrivalNeverOvertakesAWokenWaiter) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto first = corio::create_task(acquire_log(lock, log, 1, true));
        co_await yield_n();  // `first` waits
        // `late` is scheduled before `first` is woken, so it runs first: it must still wait.
        auto late = corio::create_task(acquire_log(lock, log, 2, true));
        lock.release();
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_FALSE(late.done());
        EXPECT_TRUE(lock.locked());

        lock.release();  // on behalf of `first`
        co_await finish(late);
        EXPECT_EQ(log, (std::vector<int>{1, 2}));
        lock.release();
    }());
    EXPECT_FALSE(lock.locked());
}

TEST(Lock, TheReleasingTaskQueuesBehindTheWaiterItHandedTheLockTo) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto t = corio::create_task(acquire_log(lock, log, 1));
        co_await yield_n();
        lock.release();
        co_await lock.acquire();  // must wait for t to have had its turn
        log.push_back(0);
        lock.release();
        co_await finish(t);
    }());
    EXPECT_EQ(log, (std::vector<int>{1, 0}));
    EXPECT_FALSE(lock.locked());
}

TEST(Lock, AnyTaskMayReleaseIt) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t = corio::create_task(acquire_log(lock, log, 1, true));
        co_await finish(t);
        EXPECT_TRUE(lock.locked());
        lock.release();
        EXPECT_FALSE(lock.locked());
    }());
    EXPECT_EQ(log, (std::vector<int>{1}));
}

TEST(Lock, CancelledWhileWaitingLeavesNoWaiterBehind) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto t = corio::create_task(acquire_log(lock, log, 1));
        co_await yield_n();
        EXPECT_TRUE(t.cancel());
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(log, (std::vector<int>{-1}));  // CancelledError came out of acquire()
        EXPECT_TRUE(lock.locked());              // still ours
        lock.release();
        EXPECT_FALSE(lock.locked());  // nobody left in line to hand it to
    }());
}

TEST(Lock, CancelledWaiterIsSkippedByAConcurrentRelease) {
    // A holds the lock until `go`; B and C wait. Setting `go` and cancelling B in the same step
    // must give the lock to C, and leave it free at the end.
    corio::Lock lock;
    corio::Event go;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto a = corio::create_task(hold_until(lock, go, log, 1));
        co_await yield_n();
        EXPECT_TRUE(lock.locked());
        auto b = corio::create_task(acquire_log(lock, log, 2));
        auto c = corio::create_task(acquire_log(lock, log, 3));
        co_await yield_n();

        go.set();
        b.cancel();
        co_await finish(a);
        co_await finish(b);
        co_await finish(c);
        EXPECT_FALSE(lock.locked());
        EXPECT_TRUE(a.done() && !a.cancelled());
        EXPECT_TRUE(b.cancelled());
        EXPECT_TRUE(c.done() && !c.cancelled());
    }());
    EXPECT_EQ(positives(log), (std::vector<int>{1, 3}));
}

TEST(Lock, CancelledAfterHandOverPassesTheLockToTheNextWaiter) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto b = corio::create_task(acquire_log(lock, log, 1, true));
        auto c = corio::create_task(acquire_log(lock, log, 2, true));
        co_await yield_n();

        lock.release();  // handed to b ...
        b.cancel();      // ... which is cancelled before it could run
        co_await finish(b);
        EXPECT_TRUE(b.cancelled());
        co_await finish(c);
        EXPECT_TRUE(c.done() && !c.cancelled());
        EXPECT_EQ(log, (std::vector<int>{-1, 2}));  // only one of them ever held it
        EXPECT_TRUE(lock.locked());                 // c kept it
        lock.release();
        EXPECT_FALSE(lock.locked());
    }());
}

TEST(Lock, CancelledAfterHandOverWithNobodyElseWaitingLeavesTheLockFree) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto t = corio::create_task(acquire_log(lock, log, 1, true));
        co_await yield_n();
        lock.release();
        t.cancel();
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(log, (std::vector<int>{-1}));
        EXPECT_FALSE(lock.locked());
        co_await corio::wait_for(lock.acquire(), 5s);  // and it can be taken again
        lock.release();
    }());
}

TEST(Lock, SurvivorsOfSeveralCancellationsKeepTheirFifoOrder) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        std::vector<corio::Task<>> tasks;
        for (int id = 1; id <= 6; ++id)
            tasks.push_back(corio::create_task(acquire_log(lock, log, id)));
        co_await yield_n();
        tasks[1].cancel();  // 2 and 5 while they wait
        tasks[4].cancel();
        lock.release();     // handed to 1 ...
        tasks[0].cancel();  // ... which is cancelled before it runs
        for (auto& t : tasks) co_await finish(t);
        EXPECT_TRUE(tasks[0].cancelled() && tasks[1].cancelled() && tasks[4].cancelled());
        EXPECT_FALSE(lock.locked());
    }());
    EXPECT_EQ(positives(log), (std::vector<int>{3, 4, 6}));
    std::vector<int> cancelled;
    for (int v : log)
        if (v < 0) cancelled.push_back(-v);
    std::sort(cancelled.begin(), cancelled.end());
    EXPECT_EQ(cancelled, (std::vector<int>{1, 2, 5}));
}

TEST(Lock, WaitForTimingOutOnAcquireLeavesTheLockToTheNextWaiter) {
    corio::Lock lock;
    std::vector<int> log;
    bool timed_out = false;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto a = corio::create_task(acquire_within(lock, 20ms, &timed_out));
        auto b = corio::create_task(acquire_log(lock, log, 2));
        co_await finish(a);  // nothing releases the lock before a's deadline
        EXPECT_TRUE(timed_out);
        EXPECT_TRUE(lock.locked());
        lock.release();
        co_await finish(b);
        EXPECT_EQ(log, (std::vector<int>{2}));
        EXPECT_FALSE(lock.locked());
    }());
}

TEST(Lock, TimeoutScopeExpiringDuringAcquireLeavesTheLockConsistent) {
    corio::Lock lock;
    bool timed_out = false;
    bool acquired = false;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto t_body = [&]() -> Coro<> {
            try {
                co_await corio::timeout(20ms, [&]() -> Coro<> {
                    co_await lock.acquire();
                    acquired = true;
                });
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
        };
        auto t = corio::create_task(t_body());
        co_await finish(t);
        EXPECT_TRUE(timed_out);
        EXPECT_FALSE(acquired);
        lock.release();
        EXPECT_FALSE(lock.locked());
    }());
}

// --- Event -------------------------------------------------------------------------------------

TEST(Event, StartsClearAndSetAndClearToggleTheFlag) {
    corio::Event ev;
    EXPECT_FALSE(ev.is_set());
    ev.set();
    EXPECT_TRUE(ev.is_set());
    ev.set();
    EXPECT_TRUE(ev.is_set());
    ev.clear();
    EXPECT_FALSE(ev.is_set());
}

TEST(Event, WaitOnASetEventReturnsWithoutYielding) {
    corio::Event ev;
    bool other_ran = false;
    corio::run([&]() -> Coro<> {
        ev.set();
        auto other = corio::create_task(set_flag(&other_ran));
        co_await ev.wait();
        EXPECT_FALSE(other_ran);
        co_await finish(other);
    }());
    EXPECT_TRUE(ev.is_set());
}

TEST(Event, SetWakesEveryWaiter) {
    corio::Event ev;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(wait_log(ev, log, 1));
        auto t2 = corio::create_task(wait_log(ev, log, 2));
        co_await yield_n();
        EXPECT_TRUE(log.empty());
        auto t3 = corio::create_task(wait_log(ev, log, 3));  // not yet waiting
        ev.set();
        co_await yield_n();
        // t3 ran first (it was scheduled before set() woke the others) and did not wait.
        EXPECT_EQ(log, (std::vector<int>{3, 1, 2}));
        EXPECT_TRUE(t1.done() && t2.done() && t3.done());
    }());
}

TEST(Event, WaitersWokenBySetStillRunIfTheEventIsClearedAgain) {
    corio::Event ev;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t = corio::create_task(wait_log(ev, log, 1));
        co_await yield_n();
        ev.set();
        ev.clear();
        EXPECT_FALSE(ev.is_set());
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_TRUE(t.done());
    }());
}

TEST(Event, WaitAfterClearBlocksUntilTheNextSet) {
    corio::Event ev;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        ev.set();
        ev.clear();
        auto t = corio::create_task(wait_log(ev, log, 1));
        co_await yield_n(3);
        EXPECT_FALSE(t.done());
        ev.set();
        co_await finish(t);
        EXPECT_EQ(log, (std::vector<int>{1}));
    }());
}

TEST(Event, CancelledWhileWaitingRaisesAndLeavesNoWaiterBehind) {
    corio::Event ev;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(wait_log(ev, log, 1));
        co_await yield_n();
        t1.cancel();
        co_await finish(t1);
        EXPECT_TRUE(t1.cancelled());
        EXPECT_EQ(log, (std::vector<int>{-1}));

        auto t2 = corio::create_task(wait_log(ev, log, 2));
        co_await yield_n();
        ev.set();
        co_await finish(t2);
        EXPECT_EQ(log, (std::vector<int>{-1, 2}));
    }());
}

TEST(Event, CancelledAfterSetStillRaisesAndTheEventStaysSet) {
    corio::Event ev;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(wait_log(ev, log, 1));
        auto t2 = corio::create_task(wait_log(ev, log, 2));
        co_await yield_n();
        ev.set();
        t1.cancel();  // woken, but not yet run
        co_await finish(t1);
        co_await finish(t2);
        EXPECT_TRUE(t1.cancelled());
        EXPECT_TRUE(t2.done() && !t2.cancelled());
        EXPECT_TRUE(ev.is_set());
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, 2}));
}

TEST(Event, WaitForTimingOutLeavesOtherWaitersIntact) {
    corio::Event ev;
    std::vector<int> log;
    bool timed_out = false;
    corio::run([&]() -> Coro<> {
        auto t1_body = [&]() -> Coro<> {
            try {
                co_await corio::wait_for(ev.wait(), 20ms);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
        };
        auto t1 = corio::create_task(t1_body());
        auto t2 = corio::create_task(wait_log(ev, log, 2));
        co_await finish(t1);
        EXPECT_TRUE(timed_out);
        EXPECT_FALSE(t2.done());
        ev.set();
        co_await finish(t2);
        EXPECT_EQ(log, (std::vector<int>{2}));
    }());
}

// --- Condition ---------------------------------------------------------------------------------

TEST(Condition, WaitReleasesTheLockAndReturnsHoldingItAgain) {
    corio::Condition cond;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(cond_wait_log(cond, log, 1, true));
        auto t2 = corio::create_task(cond_wait_log(cond, log, 2, true));
        auto t3 = corio::create_task(cond_wait_log(cond, log, 3, true));
        co_await yield_n();
        EXPECT_TRUE(log.empty());
        EXPECT_FALSE(cond.locked());  // all three wait, having released it

        co_await cond.acquire();
        cond.notify();
        co_await yield_n();
        EXPECT_TRUE(log.empty());  // t1 needs the lock first
        EXPECT_TRUE(cond.locked());

        cond.release();
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_TRUE(cond.locked());  // t1 returned from wait() holding it

        cond.notify(2);
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_TRUE(cond.locked());

        cond.release();  // on behalf of t1
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1, 2}));
        EXPECT_TRUE(cond.locked());

        cond.release();  // on behalf of t2
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));
        EXPECT_TRUE(cond.locked());
        EXPECT_TRUE(t1.done() && t2.done() && t3.done());
        cond.release();
    }());
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, WaitWithoutTheLockRaisesRuntimeError) {
    corio::Condition cond;
    bool raised = false;
    corio::run([&]() -> Coro<> {
        try {
            co_await cond.wait();
        } catch (const corio::RuntimeError&) {
            raised = true;
        }
    }());
    EXPECT_TRUE(raised);
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, NotifyWithoutTheLockRaisesRuntimeError) {
    corio::Condition cond;
    EXPECT_THROW(cond.notify(), corio::RuntimeError);
    EXPECT_THROW(cond.notify(3), corio::RuntimeError);
    EXPECT_THROW(cond.notify_all(), corio::RuntimeError);
}

TEST(Condition, WaitForWithoutTheLockRaisesUnlessThePredicateHoldsAtOnce) {
    corio::Condition cond;
    int value = 0;
    bool raised = false;
    corio::run([&]() -> Coro<> {
        value = co_await cond.wait_for([] { return 7; });
        try {
            co_await cond.wait_for([] { return false; });
        } catch (const corio::RuntimeError&) {
            raised = true;
        }
    }());
    EXPECT_EQ(value, 7);
    EXPECT_TRUE(raised);
}

TEST(Condition, NotifyWakesWaitersInFifoOrderAndNotifyNWakesN) {
    corio::Condition cond;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(cond_wait_log(cond, log, 1));
        auto t2 = corio::create_task(cond_wait_log(cond, log, 2));
        auto t3 = corio::create_task(cond_wait_log(cond, log, 3));
        co_await yield_n();

        co_await cond.acquire();
        cond.notify(1);
        cond.release();
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));

        co_await cond.acquire();
        cond.notify(1);
        cond.notify(2048);
        cond.release();
        co_await finish(t2);
        co_await finish(t3);
        EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));
        EXPECT_TRUE(t1.done());
    }());
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, NotifyAllWakesEveryWaiter) {
    corio::Condition cond;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(cond_wait_log(cond, log, 1));
        auto t2 = corio::create_task(cond_wait_log(cond, log, 2));
        co_await yield_n();
        co_await cond.acquire();
        cond.notify_all();
        cond.release();
        co_await finish(t1);
        co_await finish(t2);
    }());
    EXPECT_EQ(log, (std::vector<int>{1, 2}));
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, ANotificationWithoutWaitersIsLost) {
    corio::Condition cond;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await cond.acquire();
        cond.notify();
        cond.notify_all();
        cond.release();
        auto t = corio::create_task(cond_wait_log(cond, log, 1));
        co_await yield_n(3);
        EXPECT_FALSE(t.done());
        co_await cond.acquire();
        cond.notify();
        cond.release();
        co_await finish(t);
    }());
    EXPECT_EQ(log, (std::vector<int>{1}));
}

TEST(Condition, WaitForWaitsUntilThePredicateHoldsAndReturnsItsValue) {
    corio::Condition cond;
    int level = 0;
    int result = 0;
    int checks = 0;
    corio::run([&]() -> Coro<> {
        auto t_body = [&]() -> Coro<> {
            auto held = co_await cond.guard();
            result = co_await cond.wait_for([&] {
                ++checks;
                return level >= 2 ? level : 0;
            });
            EXPECT_TRUE(cond.locked());
        };
        auto t = corio::create_task(t_body());
        co_await yield_n();
        EXPECT_EQ(checks, 1);  // checked before waiting

        co_await cond.acquire();
        level = 1;
        cond.notify();
        cond.release();
        co_await yield_n(2);
        EXPECT_EQ(checks, 2);  // woken, checked, and waiting again
        EXPECT_FALSE(t.done());
        EXPECT_FALSE(cond.locked());

        co_await cond.acquire();
        level = 2;
        cond.notify();
        cond.release();
        co_await yield_n(2);
        EXPECT_TRUE(t.done());
        co_await finish(t);
    }());
    EXPECT_EQ(result, 2);
    EXPECT_EQ(checks, 3);
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, WaitForWithATruePredicateNeitherWaitsNorReleasesTheLock) {
    corio::Condition cond;
    bool other_ran = false;
    corio::run([&]() -> Coro<> {
        auto held = co_await cond.guard();
        auto other = corio::create_task(set_flag(&other_ran));
        bool r = co_await cond.wait_for([] { return true; });
        EXPECT_TRUE(r);
        EXPECT_FALSE(other_ran);
        EXPECT_TRUE(cond.locked());
        held.release();
        co_await finish(other);
    }());
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, AConditionOnAGivenLockSharesIt) {
    corio::Lock lock;
    corio::Condition cond(lock);
    corio::run([&]() -> Coro<> {
        EXPECT_FALSE(lock.locked());
        EXPECT_FALSE(cond.locked());
        {
            auto held = co_await cond.guard();
            EXPECT_TRUE(lock.locked());
            EXPECT_TRUE(cond.locked());
        }
        EXPECT_FALSE(lock.locked());
        EXPECT_FALSE(cond.locked());
        {
            auto held = co_await lock.guard();
            EXPECT_TRUE(lock.locked());
            EXPECT_TRUE(cond.locked());
            EXPECT_NO_THROW(cond.notify());  // the shared lock is held
        }
        EXPECT_FALSE(cond.locked());
        co_await cond.acquire();
        lock.release();
        EXPECT_FALSE(cond.locked());
    }());
}

TEST(Condition, TwoConditionsOnOneLockNotifyOnlyTheirOwnWaiters) {
    corio::Lock lock;
    corio::Condition a(lock);
    corio::Condition b(lock);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto ta = corio::create_task(cond_wait_log(a, log, 1));
        auto tb = corio::create_task(cond_wait_log(b, log, 2));
        co_await yield_n();
        EXPECT_FALSE(lock.locked());

        co_await lock.acquire();
        b.notify_all();
        lock.release();
        co_await finish(tb);
        EXPECT_EQ(log, (std::vector<int>{2}));
        co_await yield_n(2);
        EXPECT_FALSE(ta.done());

        co_await lock.acquire();
        a.notify();
        lock.release();
        co_await finish(ta);
        EXPECT_EQ(log, (std::vector<int>{2, 1}));
    }());
    EXPECT_FALSE(lock.locked());
}

TEST(Condition, CancelledWhileWaitingHoldsTheLockWhenCancelledErrorSurfaces) {
    corio::Condition cond;
    std::vector<int> log;
    bool held_on_cancel = false;
    corio::run([&]() -> Coro<> {
        auto t = corio::create_task(cond_wait_log(cond, log, 1, false, &held_on_cancel));
        co_await yield_n();
        EXPECT_FALSE(cond.locked());
        t.cancel();
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_TRUE(held_on_cancel);
        EXPECT_FALSE(cond.locked());  // the task could release it in its handler

        // The cancelled waiter left nothing behind: a notification goes to a new waiter.
        auto t2 = corio::create_task(cond_wait_log(cond, log, 2));
        co_await yield_n();
        co_await cond.acquire();
        cond.notify(1);
        cond.release();
        co_await yield_n(3);
        EXPECT_TRUE(t2.done());
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, 2}));
}

TEST(Condition, CancelledWhileWaitingRaisesOnlyOnceItHasTheLockAgain) {
    corio::Condition cond;
    std::vector<int> log;
    bool held_on_cancel = false;
    corio::run([&]() -> Coro<> {
        auto t = corio::create_task(cond_wait_log(cond, log, 1, false, &held_on_cancel));
        co_await yield_n();
        co_await cond.acquire();
        t.cancel();
        co_await yield_n(3);
        EXPECT_FALSE(t.done());  // waits for the lock we hold
        EXPECT_TRUE(log.empty());
        cond.release();
        EXPECT_TRUE(cond.locked());  // handed to t
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_TRUE(held_on_cancel);
    }());
    EXPECT_EQ(log, (std::vector<int>{-1}));
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, CancelledAfterNotifyWhileWaitingForTheLockRaisesHoldingIt) {
    corio::Condition cond;
    std::vector<int> log;
    bool held_on_cancel = false;
    corio::run([&]() -> Coro<> {
        auto t = corio::create_task(cond_wait_log(cond, log, 1, false, &held_on_cancel));
        co_await yield_n();
        co_await cond.acquire();
        cond.notify();
        co_await yield_n();  // t is in line for the lock
        t.cancel();
        co_await yield_n();
        EXPECT_FALSE(t.done());
        cond.release();
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_TRUE(held_on_cancel);
    }());
    EXPECT_EQ(log, (std::vector<int>{-1}));
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, NotifiedWaiterCancelledBeforeItGetsTheLockPassesTheNotificationOn) {
    corio::Condition cond;
    std::vector<int> log;
    bool held_on_cancel = false;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(cond_wait_log(cond, log, 1, false, &held_on_cancel));
        auto t2 = corio::create_task(cond_wait_log(cond, log, 2));
        co_await yield_n();
        co_await cond.acquire();
        cond.notify(1);  // t1 only
        t1.cancel();     // t1 will not act on it: t2 must be woken instead
        cond.release();
        co_await finish(t1);
        co_await yield_n(3);
        EXPECT_TRUE(t1.cancelled());
        EXPECT_TRUE(held_on_cancel);
        EXPECT_TRUE(t2.done() && !t2.cancelled());
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, 2}));
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, WaiterCancelledAfterTheLockWasHandedToItPassesTheNotificationOn) {
    corio::Condition cond;
    std::vector<int> log;
    bool held_on_cancel = false;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(cond_wait_log(cond, log, 1, false, &held_on_cancel));
        auto t2 = corio::create_task(cond_wait_log(cond, log, 2));
        co_await yield_n();
        co_await cond.acquire();
        cond.notify(1);
        cond.release();  // the lock goes to t1 ...
        t1.cancel();     // ... cancelled before it ran
        co_await finish(t1);
        co_await yield_n(3);
        EXPECT_TRUE(t1.cancelled());
        EXPECT_TRUE(held_on_cancel);
        EXPECT_TRUE(t2.done() && !t2.cancelled());
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, 2}));
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, AWaiterCancelledBeforeBeingNotifiedDoesNotUseUpANotification) {
    corio::Condition cond;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(cond_wait_log(cond, log, 1));
        auto t2 = corio::create_task(cond_wait_log(cond, log, 2));
        co_await yield_n();
        co_await cond.acquire();
        t1.cancel();     // now in line for the lock, no longer waiting for a notification
        cond.notify(1);  // so this one is t2's
        cond.release();
        co_await finish(t1);
        co_await yield_n(3);
        EXPECT_TRUE(t1.cancelled());
        EXPECT_TRUE(t2.done() && !t2.cancelled());
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, 2}));
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, WaitInATaskAlreadyCancelledRaisesWithTheLockHeld) {
    corio::Condition cond;
    bool held_on_cancel = false;
    bool cancelled = false;
    corio::run([&]() -> Coro<> {
        auto t_body = [&]() -> Coro<> {
            auto held = co_await cond.guard();
            corio::current_task().cancel();
            try {
                co_await cond.wait();
            } catch (const CancelledError&) {
                cancelled = true;
                held_on_cancel = cond.locked();
                throw;
            }
        };
        auto t = corio::create_task(t_body());
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
    }());
    EXPECT_TRUE(cancelled);
    EXPECT_TRUE(held_on_cancel);
    EXPECT_FALSE(cond.locked());
}

TEST(Condition, WaitForTimingOutInsideTheGuardKeepsTheLock) {
    corio::Condition cond;
    bool timed_out = false;
    corio::run([&]() -> Coro<> {
        {
            auto held = co_await cond.guard();
            try {
                co_await corio::wait_for(cond.wait(), 20ms);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
            EXPECT_TRUE(cond.locked());
            EXPECT_TRUE(held.owns());
        }
        EXPECT_FALSE(cond.locked());
    }());
    EXPECT_TRUE(timed_out);
}

// --- Semaphore ---------------------------------------------------------------------------------

TEST(Semaphore, InitialValueIsTheNumberOfFreePermits) {
    corio::Semaphore sem;
    EXPECT_EQ(sem.value(), 1u);
    EXPECT_FALSE(sem.locked());
    corio::Semaphore none(0);
    EXPECT_EQ(none.value(), 0u);
    EXPECT_TRUE(none.locked());
}

TEST(Semaphore, NegativeInitialValueRaisesValueError) {
    EXPECT_THROW(corio::Semaphore(-1), corio::ValueError);
}

TEST(Semaphore, ValueCountsTheFreePermits) {
    corio::Semaphore sem(3);
    corio::run([&]() -> Coro<> {
        co_await sem.acquire();
        EXPECT_EQ(sem.value(), 2u);
        co_await sem.acquire();
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_FALSE(sem.locked());
        co_await sem.acquire();
        EXPECT_EQ(sem.value(), 0u);
        EXPECT_TRUE(sem.locked());
        sem.release();
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_FALSE(sem.locked());
        sem.release();
        sem.release();
    }());
    EXPECT_EQ(sem.value(), 3u);
}

TEST(Semaphore, ReleaseWithoutWaitersMayGoBeyondTheInitialValue) {
    corio::Semaphore sem(1);
    sem.release();
    EXPECT_EQ(sem.value(), 2u);
    corio::run([&]() -> Coro<> {
        co_await sem.acquire();
        co_await sem.acquire();
        EXPECT_TRUE(sem.locked());
    }());
}

TEST(Semaphore, ReleaseHandsPermitsToWaitersInFifoOrder) {
    corio::Semaphore sem(3);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await sem.acquire();
        co_await sem.acquire();
        EXPECT_FALSE(sem.locked());
        auto t1 = corio::create_task(acquire_log(sem, log, 1, true));
        auto t2 = corio::create_task(acquire_log(sem, log, 2, true));
        auto t3 = corio::create_task(acquire_log(sem, log, 3, true));
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_TRUE(sem.locked());
        EXPECT_EQ(sem.value(), 0u);

        auto t4 = corio::create_task(acquire_log(sem, log, 4, true));
        sem.release();
        sem.release();
        EXPECT_EQ(sem.value(), 0u);  // both went straight to t2 and t3
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));  // t4 ran first, and had to wait
        EXPECT_EQ(sem.value(), 0u);
        EXPECT_FALSE(t4.done());

        sem.release();
        co_await finish(t4);
        EXPECT_EQ(log, (std::vector<int>{1, 2, 3, 4}));
        EXPECT_TRUE(t1.done() && t2.done() && t3.done());
    }());
}

TEST(Semaphore, APermitHandedOverBelongsToItsWaiterEvenBeforeItRuns) {
    // Two releases hand permits to t2 and t3; t2 then releases and re-acquires within one step:
    // that takes the permit it just freed, never t3's.
    corio::Semaphore sem(1);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(acquire_log(sem, log, 1, true));
        auto t2_body = [&]() -> Coro<> {
            co_await sem.acquire();
            log.push_back(2);
            sem.release();
            EXPECT_EQ(sem.value(), 1u);  // t3's permit is not among the free ones
            co_await sem.acquire();
            log.push_back(4);
        };
        auto t2 = corio::create_task(t2_body());
        auto t3 = corio::create_task(acquire_log(sem, log, 3, true));
        co_await yield_n();
        sem.release();
        sem.release();
        EXPECT_EQ(sem.value(), 0u);
        co_await finish(t1);
        co_await finish(t2);
        co_await finish(t3);
        EXPECT_TRUE(!t2.cancelled() && !t3.cancelled());
    }());
    EXPECT_EQ(log, (std::vector<int>{1, 2, 4, 3}));
    EXPECT_EQ(sem.value(), 0u);
}

TEST(Semaphore, TasksThatComeBackQueueBehindTheOthers) {
    corio::Semaphore sem(1);
    std::vector<int> log;
    auto worker = [&](int id) -> Coro<> {
        for (int round = 1; round <= 2; ++round) {
            co_await sem.acquire();
            log.push_back(id * 10 + round);
            co_await corio::sleep(0s);
            sem.release();
        }
    };
    corio::run([&]() -> Coro<> {
        auto a = corio::create_task(worker(1));
        auto b = corio::create_task(worker(2));
        auto c = corio::create_task(worker(3));
        co_await finish(a);
        co_await finish(b);
        co_await finish(c);
    }());
    EXPECT_EQ(log, (std::vector<int>{11, 21, 31, 12, 22, 32}));
    EXPECT_EQ(sem.value(), 1u);
}

TEST(Semaphore, ALaterArrivalNeverOvertakesAWokenWaiter) {
    corio::Semaphore sem(0);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto first = corio::create_task(acquire_log(sem, log, 1, true));
        co_await yield_n();
        auto late = corio::create_task(acquire_log(sem, log, 2, true));
        sem.release();  // handed to `first`; `late` runs before it does
        co_await yield_n();
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_FALSE(late.done());
        sem.release();
        co_await finish(late);
        EXPECT_EQ(log, (std::vector<int>{1, 2}));
    }());
    EXPECT_EQ(sem.value(), 0u);
}

TEST(Semaphore, CancelledWhileWaitingLeavesNoWaiterBehind) {
    corio::Semaphore sem(1);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await sem.acquire();
        auto t = corio::create_task(acquire_log(sem, log, 1));
        co_await yield_n();
        t.cancel();
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(log, (std::vector<int>{-1}));
        EXPECT_EQ(sem.value(), 0u);
        sem.release();
        EXPECT_EQ(sem.value(), 1u);  // nobody stale took it
    }());
}

TEST(Semaphore, WaitersCancelledBeforeAReleaseAreSkipped) {
    corio::Semaphore sem(0);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (int id = 1; id <= 4; ++id)
            t.push_back(corio::create_task(acquire_log(sem, log, id, true)));
        co_await yield_n();
        t[0].cancel();
        t[1].cancel();
        sem.release();
        co_await yield_n(2);
        EXPECT_TRUE(t[0].cancelled() && t[1].cancelled());
        EXPECT_TRUE(t[2].done() && !t[2].cancelled());
        EXPECT_FALSE(t[3].done());
        EXPECT_EQ(sem.value(), 0u);
        t[3].cancel();
        co_await finish(t[3]);
        EXPECT_TRUE(t[3].cancelled());
        EXPECT_EQ(sem.value(), 0u);  // t3 still holds the one permit
    }());
    EXPECT_EQ(positives(log), (std::vector<int>{3}));
}

TEST(Semaphore, CancelledWaitersDropOutOfTheFifoOrder) {
    corio::Semaphore sem(0);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(acquire_log(sem, log, 1, true));
        auto t2 = corio::create_task(acquire_log(sem, log, 2, true));
        auto t3 = corio::create_task(acquire_log(sem, log, 3, true));
        co_await yield_n();
        t1.cancel();
        co_await yield_n();
        sem.release();
        sem.release();
        co_await finish(t1);
        co_await finish(t2);
        co_await finish(t3);
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, 2, 3}));
    EXPECT_EQ(sem.value(), 0u);
}

TEST(Semaphore, CancelledAfterHandOverPassesThePermitToTheNextWaiter) {
    corio::Semaphore sem(0);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(acquire_log(sem, log, 1, true));
        auto t2 = corio::create_task(acquire_log(sem, log, 2, true));
        co_await yield_n();
        sem.release();  // handed to t1 ...
        t1.cancel();    // ... which is cancelled before it ran
        co_await finish(t1);
        co_await finish(t2);
        EXPECT_TRUE(t1.cancelled());
        EXPECT_TRUE(t2.done() && !t2.cancelled());
        EXPECT_EQ(sem.value(), 0u);  // exactly one permit, now t2's
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, 2}));
}

TEST(Semaphore, CancelledAfterHandOverWithNobodyElseWaitingReturnsThePermit) {
    corio::Semaphore sem(0);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto t = corio::create_task(acquire_log(sem, log, 1, true));
        co_await yield_n();
        sem.release();
        t.cancel();
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_FALSE(sem.locked());
    }());
    EXPECT_EQ(log, (std::vector<int>{-1}));
}

TEST(Semaphore, CancellingTheWaiterAGuardHandedItsPermitToDoesNotHang) {
    // c1 leaves its guard's scope (handing the permit to c2), then cancels c2 before c2 ran:
    // the permit must come back, so that a later acquire succeeds at once.
    corio::Semaphore sem(1);
    std::vector<int> log;
    corio::Task<> c2;
    bool acquired_later = false;
    corio::run([&]() -> Coro<> {
        auto c1_body = [&]() -> Coro<> {
            {
                auto held = co_await sem.guard();
                co_await corio::sleep(0s);
            }
            c2.cancel();
        };
        auto c1 = corio::create_task(c1_body());
        c2 = corio::create_task(guard_log(sem, log, 2));
        co_await finish(c1);
        co_await finish(c2);
        EXPECT_TRUE(c1.done() && !c1.cancelled());
        EXPECT_TRUE(c2.cancelled());
        EXPECT_EQ(sem.value(), 1u);
        co_await corio::wait_for(sem.acquire(), 5s);
        acquired_later = true;
        sem.release();
    }());
    EXPECT_EQ(log, (std::vector<int>{-2}));
    EXPECT_TRUE(acquired_later);
}

TEST(Semaphore, WaitForTimingOutOnAcquireLeavesTheValueConsistent) {
    corio::Semaphore sem(0);
    std::vector<int> log;
    bool timed_out = false;
    corio::run([&]() -> Coro<> {
        auto a = corio::create_task(acquire_within(sem, 20ms, &timed_out));
        auto b = corio::create_task(acquire_log(sem, log, 2));
        co_await finish(a);
        EXPECT_TRUE(timed_out);
        EXPECT_EQ(sem.value(), 0u);
        sem.release();  // to b, not to the timed-out a
        co_await finish(b);
        EXPECT_EQ(log, (std::vector<int>{2}));
        EXPECT_EQ(sem.value(), 1u);
    }());
}

// --- BoundedSemaphore --------------------------------------------------------------------------

TEST(BoundedSemaphore, NegativeInitialValueRaisesValueError) {
    EXPECT_THROW(corio::BoundedSemaphore(-1), corio::ValueError);
}

TEST(BoundedSemaphore, ReleaseBeyondTheInitialValueRaisesValueError) {
    corio::BoundedSemaphore sem;
    EXPECT_EQ(sem.value(), 1u);
    EXPECT_THROW(sem.release(), corio::ValueError);
    EXPECT_EQ(sem.value(), 1u);

    corio::BoundedSemaphore three(3);
    EXPECT_THROW(three.release(), corio::ValueError);
    EXPECT_EQ(three.value(), 3u);
}

TEST(BoundedSemaphore, AcquireAndReleaseStayWithinTheBound) {
    corio::BoundedSemaphore sem(2);
    corio::run([&]() -> Coro<> {
        for (int i = 0; i < 3; ++i) {
            co_await sem.acquire();
            co_await sem.acquire();
            EXPECT_TRUE(sem.locked());
            sem.release();
            sem.release();
            EXPECT_EQ(sem.value(), 2u);
        }
        EXPECT_THROW(sem.release(), corio::ValueError);
        EXPECT_EQ(sem.value(), 2u);
    }());
}

TEST(BoundedSemaphore, ZeroPermitsIsLockedAndCannotBeReleased) {
    corio::BoundedSemaphore sem(0);
    EXPECT_TRUE(sem.locked());
    EXPECT_THROW(sem.release(), corio::ValueError);
    EXPECT_EQ(sem.value(), 0u);
}

TEST(BoundedSemaphore, ReleaseWithAWaiterHandsThePermitOver) {
    corio::BoundedSemaphore sem(1);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await sem.acquire();
        auto t = corio::create_task(acquire_log(sem, log, 1));
        co_await yield_n();
        sem.release();
        EXPECT_EQ(sem.value(), 0u);
        co_await finish(t);
        EXPECT_EQ(log, (std::vector<int>{1}));
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_THROW(sem.release(), corio::ValueError);
    }());
}

TEST(BoundedSemaphore, CancelledAfterHandOverReturnsThePermitWithinTheBound) {
    corio::BoundedSemaphore sem(1);
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await sem.acquire();
        auto t = corio::create_task(acquire_log(sem, log, 1, true));
        co_await yield_n();
        sem.release();
        t.cancel();
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(sem.value(), 1u);
        EXPECT_THROW(sem.release(), corio::ValueError);  // no permit was duplicated
        EXPECT_EQ(sem.value(), 1u);
    }());
    EXPECT_EQ(log, (std::vector<int>{-1}));
}

// --- Barrier -----------------------------------------------------------------------------------

static_assert(std::is_base_of_v<corio::RuntimeError, corio::BrokenBarrierError>);

TEST(Barrier, NeedsAPartyAndStartsEmptyAndUnbroken) {
    EXPECT_THROW(corio::Barrier(0), corio::ValueError);
    corio::Barrier b(5);
    EXPECT_EQ(b.parties(), 5u);
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
}

TEST(Barrier, ASinglePartyNeverWaits) {
    corio::Barrier b(1);
    bool other_ran = false;
    corio::run([&]() -> Coro<> {
        auto other = corio::create_task(set_flag(&other_ran));
        std::size_t i = co_await b.wait();
        EXPECT_EQ(i, 0u);
        std::size_t j = co_await b.wait();
        EXPECT_EQ(j, 0u);
        EXPECT_FALSE(other_ran);
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_FALSE(b.broken());
        co_await finish(other);
    }());
}

TEST(Barrier, TheLastArrivalReleasesEveryone) {
    corio::Barrier b(3);
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<std::size_t>> t;
        t.push_back(corio::create_task(b.wait()));
        co_await yield_n();
        EXPECT_EQ(b.n_waiting(), 1u);
        t.push_back(corio::create_task(b.wait()));
        co_await yield_n();
        EXPECT_EQ(b.n_waiting(), 2u);
        EXPECT_FALSE(t[0].done() || t[1].done());
        t.push_back(corio::create_task(b.wait()));
        for (auto& x : t) co_await finish(x);
        // Each got its arrival index.
        EXPECT_EQ(t[0].result(), 0u);
        EXPECT_EQ(t[1].result(), 1u);
        EXPECT_EQ(t[2].result(), 2u);
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_FALSE(b.broken());
    }());
}

TEST(Barrier, IsReusableForManyRoundsWithUniqueIndicesPerRound) {
    constexpr std::size_t kParties = 4;
    constexpr int kRounds = 20;
    corio::Barrier b(kParties);
    std::vector<int> arrivals(kRounds, 0);
    std::vector<std::vector<std::size_t>> indices(kRounds);
    bool mixed_rounds = false;
    auto party = [&](int pace) -> Coro<> {
        for (int r = 0; r < kRounds; ++r) {
            co_await yield_n((pace + r) % 3);  // arrive in a different order each round
            ++arrivals[r];
            std::size_t i = co_await b.wait();
            // Nobody passes round r before all parties arrived at it.
            if (arrivals[r] != static_cast<int>(kParties)) mixed_rounds = true;
            indices[r].push_back(i);
        }
    };
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (std::size_t p = 0; p < kParties; ++p) t.push_back(corio::create_task(party(int(p))));
        for (auto& x : t) co_await finish(x);
        for (auto& x : t) EXPECT_TRUE(x.done() && !x.cancelled());
    }());
    EXPECT_FALSE(mixed_rounds);
    for (auto& round : indices) {
        std::sort(round.begin(), round.end());
        EXPECT_EQ(round, iota_n(kParties));
    }
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
}

TEST(Barrier, AnArrivalWhileTheBarrierDrainsWaitsForTheNextRound) {
    corio::Barrier b(3);
    std::size_t first = 99;
    std::size_t second = 99;
    corio::run([&]() -> Coro<> {
        auto t0 = corio::create_task(b.wait());
        auto t1 = corio::create_task(b.wait());
        // The last to arrive passes at once and waits again while t0 and t1 are still leaving.
        auto rusher_body = [&]() -> Coro<> {
            first = co_await b.wait();
            second = co_await b.wait();
        };
        auto rusher = corio::create_task(rusher_body());
        co_await finish(t0);
        co_await finish(t1);
        co_await yield_n(3);
        EXPECT_EQ(first, 2u);
        EXPECT_EQ(t0.result(), 0u);
        EXPECT_EQ(t1.result(), 1u);
        EXPECT_FALSE(rusher.done());
        EXPECT_EQ(b.n_waiting(), 1u);  // it counts for the new round only

        auto u1 = corio::create_task(b.wait());
        auto u2 = corio::create_task(b.wait());
        co_await finish(rusher);
        co_await finish(u1);
        co_await finish(u2);
        EXPECT_EQ(second, 0u);
        EXPECT_EQ(u1.result(), 1u);
        EXPECT_EQ(u2.result(), 2u);
    }());
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
}

TEST(Barrier, ACancelledWaiterLeavesTheCountConsistent) {
    corio::Barrier b(3);
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(b.wait());
        co_await yield_n();
        auto t2 = corio::create_task(b.wait());
        co_await yield_n();
        EXPECT_EQ(b.n_waiting(), 2u);

        t1.cancel();
        co_await finish(t1);
        EXPECT_TRUE(t1.cancelled());
        EXPECT_EQ(b.n_waiting(), 1u);
        EXPECT_FALSE(b.broken());

        auto t3 = corio::create_task(b.wait());
        co_await yield_n();
        EXPECT_EQ(b.n_waiting(), 2u);
        EXPECT_FALSE(t2.done());
        auto t4 = corio::create_task(b.wait());
        co_await finish(t2);
        co_await finish(t3);
        co_await finish(t4);
        std::vector<corio::Task<std::size_t>> passed{t2, t3, t4};
        EXPECT_EQ(sorted_results(passed), iota_n(3));
    }());
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
}

TEST(Barrier, AWaiterCancelledAfterBeingReleasedLeavesTheCountConsistent) {
    corio::Barrier b(2);
    corio::run([&]() -> Coro<> {
        auto t = corio::create_task(b.wait());
        co_await yield_n();
        std::size_t i = co_await b.wait();  // releases t ...
        EXPECT_EQ(i, 1u);
        t.cancel();  // ... which is cancelled before it ran
        co_await finish(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_FALSE(b.broken());

        // The next round fills and passes normally.
        auto u1 = corio::create_task(b.wait());
        auto u2 = corio::create_task(b.wait());
        co_await yield_n(3);
        EXPECT_TRUE(u1.done() && u2.done());
        if (u1.done() && u2.done()) {
            EXPECT_EQ(u1.result(), 0u);
            EXPECT_EQ(u2.result(), 1u);
        }
    }());
    EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, WaitForTimingOutLeavesTheBarrierUnbroken) {
    corio::Barrier b(2);
    bool timed_out = false;
    corio::run([&]() -> Coro<> {
        auto t_body = [&]() -> Coro<> {
            try {
                co_await corio::wait_for(b.wait(), 20ms);
            } catch (const corio::TimeoutError&) {
                timed_out = true;
            }
        };
        auto t = corio::create_task(t_body());
        co_await finish(t);
        EXPECT_TRUE(timed_out);
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_FALSE(b.broken());
        auto u1 = corio::create_task(b.wait());
        auto u2 = corio::create_task(b.wait());
        co_await finish(u1);
        co_await finish(u2);
        EXPECT_EQ(u1.result(), 0u);
        EXPECT_EQ(u2.result(), 1u);
    }());
}

TEST(Barrier, ResetWithoutWaitersKeepsItUsable) {
    corio::Barrier b(1);
    b.reset();
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
    corio::run([&]() -> Coro<> {
        std::size_t i = co_await b.wait();
        EXPECT_EQ(i, 0u);
    }());
}

TEST(Barrier, ResetRaisesBrokenBarrierErrorInTheWaiters) {
    constexpr int kParties = 5;
    corio::Barrier b(kParties);
    int broken = 0;
    int passed = 0;
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (int i = 0; i < kParties - 1; ++i)
            t.push_back(corio::create_task(barrier_wait_counting(b, &broken)));
        co_await yield_n();
        EXPECT_EQ(b.n_waiting(), 4u);
        b.reset();
        for (auto& x : t) co_await finish(x);
        EXPECT_EQ(broken, kParties - 1);
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_FALSE(b.broken());

        // A full round passes afterwards.
        t.clear();
        for (int i = 0; i < kParties; ++i)
            t.push_back(corio::create_task(barrier_wait_counting(b, &broken, &passed)));
        for (auto& x : t) co_await finish(x);
    }());
    EXPECT_EQ(broken, kParties - 1);
    EXPECT_EQ(passed, kParties);
}

TEST(Barrier, WaitersBrokenByResetCanWaitAgain) {
    constexpr int kParties = 5;
    corio::Barrier b(kParties);
    int broken = 0;
    int passed = 0;
    auto waiter = [&]() -> Coro<> {
        try {
            co_await b.wait();
        } catch (const corio::BrokenBarrierError&) {
            ++broken;
        }
        co_await b.wait();
        ++passed;
    };
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (int i = 0; i < kParties - 1; ++i) t.push_back(corio::create_task(waiter()));
        co_await yield_n();
        b.reset();
        co_await yield_n();
        auto last_body = [&]() -> Coro<> {
            co_await b.wait();
            ++passed;
        };
        auto last = corio::create_task(last_body());
        for (auto& x : t) co_await finish(x);
        co_await finish(last);
    }());
    EXPECT_EQ(broken, kParties - 1);
    EXPECT_EQ(passed, kParties);
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
}

TEST(Barrier, ResetWhileDrainingBreaksOnlyThoseThatHaveNotLeft) {
    // Five pass; when the third has left, it resets: the two still draining get
    // BrokenBarrierError (asyncio does the same).
    constexpr int kParties = 5;
    corio::Barrier b(kParties);
    int broken = 0;
    int passed = 0;
    auto party = [&]() -> Coro<> {
        try {
            co_await b.wait();
        } catch (const corio::BrokenBarrierError&) {
            ++broken;
            co_return;
        }
        if (++passed == 3) b.reset();
    };
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (int i = 0; i < kParties; ++i) t.push_back(corio::create_task(party()));
        for (auto& x : t) co_await finish(x);
        EXPECT_EQ(b.n_waiting(), 0u);
        EXPECT_FALSE(b.broken());
        int again = 0;
        t.clear();
        for (int i = 0; i < kParties; ++i)
            t.push_back(corio::create_task(barrier_wait_counting(b, &broken, &again)));
        for (auto& x : t) co_await finish(x);
        EXPECT_EQ(again, kParties);
    }());
    EXPECT_EQ(passed, 3);
    EXPECT_EQ(broken, 2);
}

TEST(Barrier, ResetOnceAllHaveLeftDoesNotDisturbTheNextRound) {
    constexpr int kParties = 5;
    corio::Barrier b(kParties);
    int left = 0;
    int second_ok = 0;
    int second_broken = 0;
    int third_ok = 0;
    auto party = [&]() -> Coro<> {
        co_await b.wait();
        if (++left == kParties) {
            b.reset();  // everybody has left the first round
            co_await b.wait();
        } else {
            try {
                co_await b.wait();
                ++second_ok;
            } catch (const corio::BrokenBarrierError&) {
                ++second_broken;
            }
        }
        co_await b.wait();
        ++third_ok;
    };
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (int i = 0; i < kParties; ++i) t.push_back(corio::create_task(party()));
        for (auto& x : t) co_await finish(x);
    }());
    EXPECT_EQ(second_ok, kParties - 1);
    EXPECT_EQ(second_broken, 0);
    EXPECT_EQ(third_ok, kParties);
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
}

TEST(Barrier, AbortWithoutWaitersBreaksIt) {
    corio::Barrier b(1);
    b.abort();
    EXPECT_TRUE(b.broken());
    EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, AbortBreaksWaitersAndLaterArrivalsUntilReset) {
    corio::Barrier b(3);
    int broken = 0;
    int passed = 0;
    corio::run([&]() -> Coro<> {
        auto t1 = corio::create_task(barrier_wait_counting(b, &broken));
        auto t2 = corio::create_task(barrier_wait_counting(b, &broken));
        co_await yield_n();
        b.abort();
        co_await finish(t1);
        co_await finish(t2);
        EXPECT_EQ(broken, 2);
        EXPECT_TRUE(b.broken());
        EXPECT_EQ(b.n_waiting(), 0u);

        bool raised = false;
        try {
            co_await b.wait();
        } catch (const corio::BrokenBarrierError&) {
            raised = true;
        }
        EXPECT_TRUE(raised);
        EXPECT_TRUE(b.broken());

        b.reset();
        EXPECT_FALSE(b.broken());
        std::vector<corio::Task<>> t;
        for (int i = 0; i < 3; ++i)
            t.push_back(corio::create_task(barrier_wait_counting(b, &broken, &passed)));
        for (auto& x : t) co_await finish(x);
    }());
    EXPECT_EQ(broken, 2);
    EXPECT_EQ(passed, 3);
}

TEST(Barrier, APartyThatFailsAndAbortsBreaksTheOthers) {
    constexpr int kParties = 5;
    corio::Barrier b(kParties);
    int passed_second = 0;
    int broken = 0;
    int failed = 0;
    auto party = [&]() -> Coro<> {
        try {
            std::size_t i = co_await b.wait();
            if (i == kParties / 2) throw std::logic_error("party failed");
            co_await b.wait();
            ++passed_second;
        } catch (const corio::BrokenBarrierError&) {
            ++broken;
        } catch (const std::logic_error&) {
            ++failed;
            b.abort();
        }
    };
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (int i = 0; i < kParties; ++i) t.push_back(corio::create_task(party()));
        for (auto& x : t) co_await finish(x);
    }());
    EXPECT_EQ(failed, 1);
    EXPECT_EQ(passed_second, 0);
    EXPECT_EQ(broken, kParties - 1);
    EXPECT_TRUE(b.broken());
    EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, AbortedThenResetItServesAnotherRound) {
    constexpr int kParties = 5;
    corio::Barrier b1(kParties);
    corio::Barrier b2(kParties);
    int passed_second = 0;
    int broken = 0;
    int third = 0;
    auto party = [&]() -> Coro<> {
        try {
            std::size_t i = co_await b1.wait();
            if (i == kParties / 2) throw std::logic_error("party failed");
            co_await b1.wait();
            ++passed_second;
        } catch (const corio::BrokenBarrierError&) {
            ++broken;
        } catch (const std::logic_error&) {
            b1.abort();
        }
        // Once everyone passed b2, nobody is in b1: one party resets it, and the second b2
        // round keeps anyone from entering b1 before that.
        std::size_t j = co_await b2.wait();
        if (j == kParties / 2) b1.reset();
        co_await b2.wait();
        co_await b1.wait();
        ++third;
    };
    corio::run([&]() -> Coro<> {
        std::vector<corio::Task<>> t;
        for (int i = 0; i < kParties; ++i) t.push_back(corio::create_task(party()));
        for (auto& x : t) co_await finish(x);
    }());
    EXPECT_EQ(passed_second, 0);
    EXPECT_EQ(broken, kParties - 1);
    EXPECT_EQ(third, kParties);
    EXPECT_FALSE(b1.broken());
    EXPECT_EQ(b1.n_waiting(), 0u);
}

// --- Guards ------------------------------------------------------------------------------------

TEST(Guards, GuardHoldsTheLockUntilItsScopeEnds) {
    corio::Lock lock;
    corio::run([&]() -> Coro<> {
        {
            auto held = co_await lock.guard();
            EXPECT_TRUE(lock.locked());
            EXPECT_TRUE(held.owns());
            EXPECT_TRUE(static_cast<bool>(held));
        }
        EXPECT_FALSE(lock.locked());
    }());
}

TEST(Guards, GuardReleasesWhenAnExceptionLeavesItsScope) {
    corio::Lock lock;
    corio::Semaphore sem(2);
    bool caught = false;
    corio::run([&]() -> Coro<> {
        try {
            auto l = co_await lock.guard();
            auto s = co_await sem.guard();
            EXPECT_EQ(sem.value(), 1u);
            throw std::runtime_error("boom");
        } catch (const std::runtime_error&) {
            caught = true;
            EXPECT_FALSE(lock.locked());
            EXPECT_EQ(sem.value(), 2u);
        }
    }());
    EXPECT_TRUE(caught);
}

TEST(Guards, GuardReleasesWhenItsTaskIsCancelledInsideTheScope) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        auto holder_body = [&]() -> Coro<> {
            auto held = co_await lock.guard();
            co_await corio::sleep(10s);
        };
        auto holder = corio::create_task(holder_body());
        auto waiter = corio::create_task(acquire_log(lock, log, 2));
        co_await yield_n();
        EXPECT_TRUE(lock.locked());
        holder.cancel();
        co_await finish(holder);
        EXPECT_TRUE(holder.cancelled());
        co_await finish(waiter);  // the guard handed the lock on as it unwound
        EXPECT_FALSE(lock.locked());
    }());
    EXPECT_EQ(log, (std::vector<int>{2}));
}

TEST(Guards, GuardHandsTheLockToTheOldestWaiterAtScopeExit) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        corio::Task<> t1;
        corio::Task<> t2;
        {
            auto held = co_await lock.guard();
            t1 = corio::create_task(guard_log(lock, log, 1));
            t2 = corio::create_task(guard_log(lock, log, 2));
            co_await yield_n();
        }
        EXPECT_TRUE(lock.locked());  // handed to t1
        co_await finish(t1);
        co_await finish(t2);
        EXPECT_FALSE(lock.locked());
    }());
    EXPECT_EQ(log, (std::vector<int>{1, 2}));
}

TEST(Guards, AMovedGuardReleasesExactlyOnce) {
    corio::Lock lock;
    corio::run([&]() -> Coro<> {
        {
            auto g1 = co_await lock.guard();
            corio::Lock::Guard g2(std::move(g1));
            EXPECT_FALSE(g1.owns());
            EXPECT_TRUE(g2.owns());
            EXPECT_TRUE(lock.locked());
            {
                corio::Lock::Guard g3 = std::move(g2);
                EXPECT_FALSE(g2.owns());
                EXPECT_TRUE(g3.owns());
            }
            EXPECT_FALSE(lock.locked());  // g3 released it
            co_await lock.acquire();      // held again, by hand this time
        }
        // The moved-from g1 and g2 released nothing when they went.
        EXPECT_TRUE(lock.locked());
        lock.release();
    }());
    EXPECT_FALSE(lock.locked());
}

TEST(Guards, MoveAssignmentReleasesWhatTheTargetHeld) {
    corio::Lock a;
    corio::Lock b;
    corio::run([&]() -> Coro<> {
        {
            auto ga = co_await a.guard();
            auto gb = co_await b.guard();
            ga = std::move(gb);
            EXPECT_FALSE(a.locked());
            EXPECT_TRUE(b.locked());
            EXPECT_TRUE(ga.owns());
            EXPECT_FALSE(gb.owns());
        }
        EXPECT_FALSE(b.locked());
    }());
}

TEST(Guards, ReleaseGivesTheLockBackEarlyAndOnlyOnce) {
    corio::Lock lock;
    corio::run([&]() -> Coro<> {
        {
            auto held = co_await lock.guard();
            held.release();
            EXPECT_FALSE(held.owns());
            EXPECT_FALSE(lock.locked());
            held.release();  // a no-op now
            EXPECT_FALSE(lock.locked());
            co_await lock.acquire();
        }
        EXPECT_TRUE(lock.locked());  // the released guard did not release it again
        lock.release();
    }());
}

TEST(Guards, SemaphoreGuardsReturnTheirPermits) {
    corio::Semaphore sem(2);
    corio::BoundedSemaphore bounded(1);
    corio::run([&]() -> Coro<> {
        {
            auto g1 = co_await sem.guard();
            auto g2 = co_await sem.guard();
            EXPECT_EQ(sem.value(), 0u);
            EXPECT_TRUE(sem.locked());
            auto g3 = co_await bounded.guard();
            EXPECT_EQ(bounded.value(), 0u);
        }
        EXPECT_EQ(sem.value(), 2u);
        EXPECT_EQ(bounded.value(), 1u);  // released within its bound, no ValueError
    }());
}

TEST(Guards, ConditionGuardIsHeldAcrossWait) {
    corio::Condition cond;
    bool ready = false;
    bool owned_after_wait = false;
    corio::run([&]() -> Coro<> {
        auto notifier_body = [&]() -> Coro<> {
            auto held = co_await cond.guard();
            ready = true;
            cond.notify_all();
        };
        auto notifier = corio::create_task(notifier_body());
        {
            auto held = co_await cond.guard();
            co_await cond.wait_for([&] { return ready; });
            owned_after_wait = held.owns() && cond.locked();
        }
        EXPECT_FALSE(cond.locked());
        co_await finish(notifier);
    }());
    EXPECT_TRUE(owned_after_wait);
}

TEST(Guards, ACancelledGuardAcquireLeavesNoGuardBehind) {
    corio::Lock lock;
    std::vector<int> log;
    corio::run([&]() -> Coro<> {
        co_await lock.acquire();
        auto waiting = corio::create_task(guard_log(lock, log, 1));
        co_await yield_n();
        waiting.cancel();
        co_await finish(waiting);
        EXPECT_TRUE(waiting.cancelled());
        EXPECT_TRUE(lock.locked());  // no guard was made that could release our lock

        auto handed = corio::create_task(guard_log(lock, log, 2));
        co_await yield_n();
        lock.release();   // handed to `handed` ...
        handed.cancel();  // ... cancelled before it ran: no guard, the lock is passed back
        co_await finish(handed);
        EXPECT_TRUE(handed.cancelled());
        EXPECT_FALSE(lock.locked());
    }());
    EXPECT_EQ(log, (std::vector<int>{-1, -2}));
}

// --- Allocation ---------------------------------------------------------------------------------

namespace {

constexpr int kIterations = 1000;

Coro<> lock_ping(corio::Lock& lock, int iterations) {
    for (int i = 0; i < iterations; ++i) {
        auto held = co_await lock.guard();
        co_await corio::sleep(0s);
    }
}

}  // namespace

TEST(Allocation, TheCounterSeesAnAllocation) {
    static void* volatile sink = nullptr;
    AllocationCounter counter;
    sink = ::operator new(16);
    ::operator delete(sink);
    EXPECT_EQ(counter.stop(), 1u);
}

TEST(Allocation, UncontendedLockAcquireAndReleaseAllocateNothing) {
    corio::Lock lock;
    std::size_t allocations = 99;
    corio::run([&]() -> Coro<> {
        AllocationCounter counter;
        for (int i = 0; i < kIterations; ++i) {
            auto held = co_await lock.guard();
        }
        for (int i = 0; i < kIterations; ++i) {
            co_await lock.acquire();
            lock.release();
        }
        allocations = counter.stop();
    }());
    EXPECT_EQ(allocations, 0u);
    EXPECT_FALSE(lock.locked());
}

TEST(Allocation, EventSetWaitAndClearAllocateNothing) {
    corio::Event ev;
    std::size_t allocations = 99;
    corio::run([&]() -> Coro<> {
        AllocationCounter counter;
        for (int i = 0; i < kIterations; ++i) {
            ev.set();
            co_await ev.wait();
            ev.clear();
        }
        allocations = counter.stop();
    }());
    EXPECT_EQ(allocations, 0u);
    EXPECT_FALSE(ev.is_set());
}

TEST(Allocation, UncontendedSemaphoreAcquireAndReleaseAllocateNothing) {
    corio::Semaphore sem(2);
    corio::BoundedSemaphore bounded(1);
    std::size_t allocations = 99;
    corio::run([&]() -> Coro<> {
        AllocationCounter counter;
        for (int i = 0; i < kIterations; ++i) {
            co_await sem.acquire();
            { auto held = co_await sem.guard(); }
            sem.release();
            auto b = co_await bounded.guard();
        }
        allocations = counter.stop();
    }());
    EXPECT_EQ(allocations, 0u);
    EXPECT_EQ(sem.value(), 2u);
    EXPECT_EQ(bounded.value(), 1u);
}

TEST(Allocation, ContendedLockHandOverAllocatesNothing) {
    corio::Lock lock;
    std::size_t allocations = 99;
    corio::run([&]() -> Coro<> {
        // Warm up the loop, then make the tasks (their frames are allocations) before counting.
        auto w1 = corio::create_task(lock_ping(lock, 50));
        auto w2 = corio::create_task(lock_ping(lock, 50));
        co_await w1;
        co_await w2;
        auto a = corio::create_task(lock_ping(lock, kIterations));
        auto b = corio::create_task(lock_ping(lock, kIterations));
        AllocationCounter counter;
        co_await a;
        co_await b;
        allocations = counter.stop();
    }());
    EXPECT_EQ(allocations, 0u);
    EXPECT_FALSE(lock.locked());
}
