// Tests for corio/queues.hpp: Queue (FIFO), LifoQueue, PriorityQueue.
//
// The behaviours are asyncio's (CPython 3.13, Lib/test/test_asyncio/test_queues.py, including
// shutdown), plus what corio documents on top of it: items and free slots are handed over
// directly to the oldest waiter, and cancellation never loses or duplicates an item.
//
// Tasks are sequenced with sleep(0s), which yields to the loop exactly once; no test depends on
// timing except the ones that let a short timeout expire (and those only assert what happens
// after it did).

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;
using corio::AnyTask;
using corio::CancelledError;
using corio::Coro;
using corio::LifoQueue;
using corio::PriorityQueue;
using corio::Queue;
using corio::QueueEmpty;
using corio::QueueFull;
using corio::QueueShutDown;
using corio::Task;
using corio::ValueError;

namespace {

// --- helpers ---------------------------------------------------------------------------------

Coro<> yield_times(int n) {
    for (int i = 0; i < n; ++i) co_await corio::sleep(0s);
}

Coro<> set_flag(bool* flag) {
    *flag = true;
    co_return;
}

// How many passes of the loop a task gets to finish what it was woken for. Every task in these
// tests needs one or two; the bound turns a library bug that leaves a task hanging into a
// failure instead of a test that never ends.
constexpr int kPatience = 50;

Coro<> yield_until_done(const AnyTask& t, int passes = kPatience) {
    for (int i = 0; i < passes && !t.done(); ++i) co_await corio::sleep(0s);
}

// Waits until `t` is done, whatever its outcome; the test inspects the task afterwards. A task
// still pending after that many passes is a failure: it is reported, then cancelled.
Coro<> wait_done(AnyTask t, int passes = kPatience) {
    co_await yield_until_done(t, passes);
    if (!t.done()) {
        ADD_FAILURE() << t.get_name() << " is still pending after " << passes
                      << " passes of the loop";
        t.cancel();
        co_await yield_until_done(t);
        if (!t.done()) co_return;
    }
    try {
        co_await t;
    } catch (...) {
    }
}

// The outcome of `t` (its result, or its exception rethrown), after wait_done(t).
template <class T>
Coro<T> result_of(Task<T> t) {
    co_await wait_done(t);
    if (!t.done()) throw std::runtime_error(t.get_name() + " is stuck");
    if constexpr (std::is_void_v<T>) {
        co_await std::move(t);
    } else {
        co_return co_await std::move(t);
    }
}

// Cancels the tasks that are still running and waits for all of them, so that none outlives
// the queue it uses (also when an expectation failed).
template <class... T>
Coro<> cancel_and_wait(Task<T>... tasks) {
    std::vector<AnyTask> all{AnyTask(tasks)...};
    for (auto& t : all) t.cancel();
    for (auto& t : all) co_await wait_done(t);
}

Coro<> cancel_and_wait_all(std::vector<Task<void>> tasks) {
    for (auto& t : tasks) t.cancel();
    for (auto& t : tasks) co_await wait_done(t);
}

// q.get() and q.put(item) awaited in a task of their own and waited for with result_of(): an
// operation that should complete at once but waits for ever fails the test instead of hanging.
template <class Q>
Coro<typename Q::value_type> bounded_get(Q& q) {
    co_return co_await result_of(corio::create_task(q.get()));
}

template <class Q>
Coro<> bounded_put(Q& q, typename Q::value_type item) {
    co_await result_of(corio::create_task(q.put(std::move(item))));
}

template <class Q>
Coro<> join_and_flag(Q* q, bool* returned) {
    co_await q->join();
    *returned = true;
}

// Whether join() returns without waiting: a task awaiting it then finishes in its first step,
// before the task that created it runs again.
template <class Q>
Coro<bool> join_returns_at_once(Q* q) {
    bool returned = false;
    auto joiner = corio::create_task(join_and_flag(q, &returned));
    co_await corio::sleep(0s);
    bool at_once = returned;
    co_await cancel_and_wait(joiner);
    co_return at_once;
}

template <class Q, class T>
Coro<> put_and_flag(Q* q, T item, bool* done) {
    co_await q->put(std::move(item));
    *done = true;
}

// Puts 0..n-1, recording each value once its put() has returned.
Coro<> put_range(Queue<int>* q, int n, std::vector<int>* put) {
    for (int i = 0; i < n; ++i) {
        co_await q->put(i);
        put->push_back(i);
    }
}

Coro<> get_n(Queue<int>* q, int n, std::vector<int>* out) {
    for (int i = 0; i < n; ++i) {
        int v = co_await q->get();
        out->push_back(v);
    }
}

// put(), then records stage 1, yields once, records stage 2.
Coro<> put_then_yield(Queue<int>* q, int v, int* stage) {
    co_await q->put(v);
    *stage = 1;
    co_await corio::sleep(0s);
    *stage = 2;
}

// Drains a queue with get_nowait().
template <class Q>
std::vector<typename Q::value_type> drain(Q& q) {
    std::vector<typename Q::value_type> out;
    while (!q.empty()) out.push_back(q.get_nowait());
    return out;
}

std::vector<int> sorted(std::vector<int> v) {
    std::sort(v.begin(), v.end());
    return v;
}

// Move-only and not default-constructible; `*live` counts the instances that hold a value.
class Token {
  public:
    Token(int id, int* live) : id_(id), live_(live) { ++*live_; }
    Token(Token&& o) noexcept : id_(o.id_), live_(std::exchange(o.live_, nullptr)) {}
    Token& operator=(Token&& o) noexcept {
        if (this != &o) {
            release();
            id_ = o.id_;
            live_ = std::exchange(o.live_, nullptr);
        }
        return *this;
    }
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token() { release(); }

    int id() const { return id_; }
    bool operator<(const Token& o) const { return id_ < o.id_; }

  private:
    void release() {
        if (live_ != nullptr) --*live_;
        live_ = nullptr;
    }
    int id_;
    int* live_;
};
static_assert(!std::is_default_constructible_v<Token>);
static_assert(!std::is_copy_constructible_v<Token>);

template <class Q>
std::vector<int> drain_ids(Q& q) {
    std::vector<int> ids;
    while (!q.empty()) ids.push_back(q.get_nowait().id());
    return ids;
}

}  // namespace

// === Queue: basics ============================================================================

TEST(Queue, NewQueueIsEmptyUnboundedAndNotFull) {
    Queue<int> q;
    EXPECT_EQ(q.maxsize(), 0u);
    EXPECT_EQ(q.qsize(), 0u);
    EXPECT_TRUE(q.empty());
    EXPECT_FALSE(q.full());
}

TEST(Queue, EmptyFollowsPutAndGet) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        EXPECT_TRUE(q.empty());
        co_await q.put(1);
        EXPECT_FALSE(q.empty());
        EXPECT_EQ(q.qsize(), 1u);
        int v = co_await q.get();
        EXPECT_EQ(v, 1);
        EXPECT_TRUE(q.empty());
        EXPECT_EQ(q.qsize(), 0u);
    }());
}

TEST(Queue, FullOnlyWhenBoundedAndAtMaxsize) {
    Queue<int> unbounded;
    for (int i = 0; i < 1000; ++i) unbounded.put_nowait(i);
    EXPECT_FALSE(unbounded.full());
    EXPECT_EQ(unbounded.qsize(), 1000u);

    Queue<int> q(2);
    EXPECT_EQ(q.maxsize(), 2u);
    q.put_nowait(1);
    EXPECT_FALSE(q.full());
    q.put_nowait(2);
    EXPECT_TRUE(q.full());
    EXPECT_EQ(q.get_nowait(), 1);
    EXPECT_FALSE(q.full());
}

TEST(Queue, NowaitOperationsWorkWithoutARunningLoop) {
    Queue<std::string> q;
    q.put_nowait("a");
    q.put_nowait("b");
    EXPECT_EQ(q.qsize(), 2u);
    EXPECT_EQ(q.get_nowait(), "a");
    EXPECT_EQ(q.get_nowait(), "b");
    EXPECT_TRUE(q.empty());
}

TEST(Queue, GetNowaitOnEmptyQueueRaisesQueueEmpty) {
    Queue<int> q;
    EXPECT_THROW(q.get_nowait(), QueueEmpty);
    // An ordinary error, caught by `catch (const corio::Error&)`.
    EXPECT_THROW(q.get_nowait(), corio::Error);
    q.put_nowait(1);
    EXPECT_EQ(q.get_nowait(), 1);
    EXPECT_THROW(q.get_nowait(), QueueEmpty);
}

TEST(Queue, PutNowaitOnFullQueueRaisesQueueFullAndInsertsNothing) {
    Queue<int> q(1);
    q.put_nowait(1);
    EXPECT_THROW(q.put_nowait(2), QueueFull);
    EXPECT_THROW(q.put_nowait(2), corio::Error);
    EXPECT_EQ(q.qsize(), 1u);
    EXPECT_EQ(q.get_nowait(), 1);
    EXPECT_THROW(q.get_nowait(), QueueEmpty);
}

TEST(Queue, ItemsComeOutInPutOrder) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        co_await q.put(1);
        co_await q.put(3);
        co_await q.put(2);
        std::vector<int> got;
        for (int i = 0; i < 3; ++i) {
            int v = co_await q.get();
            got.push_back(v);
        }
        EXPECT_EQ(got, (std::vector<int>{1, 3, 2}));
    }());
}

TEST(Queue, PutWithRoomAndGetWithAnItemDoNotSuspend) {
    corio::run([]() -> Coro<> {
        Queue<int> q(100);
        bool other_ran = false;
        auto other = corio::create_task(set_flag(&other_ran));
        for (int i = 0; i < 100; ++i) co_await q.put(i);
        EXPECT_TRUE(q.full());
        for (int i = 0; i < 100; ++i) {
            int v = co_await q.get();
            EXPECT_EQ(v, i);
        }
        EXPECT_FALSE(other_ran);  // this task never yielded to the loop
        co_await result_of(other);
        EXPECT_TRUE(other_ran);
    }());
}

TEST(Queue, GetWaitsUntilAnItemIsPut) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await yield_times(3);
        EXPECT_FALSE(getter.done());
        corio::get_running_loop().call_soon([&q] { q.put_nowait(42); });
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 42);
    }());
}

TEST(Queue, PutToAWaitingGetterHandsTheItemOverDirectly) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(7);
        // The item went to the getter, not into the queue: nobody else can take it.
        EXPECT_EQ(q.qsize(), 0u);
        EXPECT_TRUE(q.empty());
        EXPECT_THROW(q.get_nowait(), QueueEmpty);
        EXPECT_FALSE(getter.done());
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 7);
    }());
}

TEST(Queue, ItemHandedToAWaitingGetterDoesNotCountTowardsMaxsize) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);  // handed over
        q.put_nowait(2);  // fits: the queue itself is still empty
        EXPECT_TRUE(q.full());
        EXPECT_THROW(q.put_nowait(3), QueueFull);
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 1);
        EXPECT_EQ(q.get_nowait(), 2);
    }());
}

TEST(Queue, WaitingGettersAreServedInArrivalOrder) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto g1 = corio::create_task(q.get());
        auto g2 = corio::create_task(q.get());
        auto g3 = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        co_await corio::sleep(0s);
        EXPECT_TRUE(g1.done());
        EXPECT_FALSE(g2.done());
        EXPECT_FALSE(g3.done());
        q.put_nowait(2);
        q.put_nowait(3);
        int v1 = co_await result_of(g1);
        int v2 = co_await result_of(g2);
        int v3 = co_await result_of(g3);
        EXPECT_EQ(v1, 1);
        EXPECT_EQ(v2, 2);
        EXPECT_EQ(v3, 3);
    }());
}

TEST(Queue, NewGetterDoesNotOvertakeAGetterThatWasHandedAnItem) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto first = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);                          // handed to `first`, which has not run yet
        auto late = corio::create_task(q.get());  // arrives before `first` runs
        co_await yield_times(2);
        EXPECT_TRUE(first.done());
        EXPECT_FALSE(late.done());
        q.put_nowait(2);
        int v1 = co_await result_of(first);
        int v2 = co_await result_of(late);
        EXPECT_EQ(v1, 1);
        EXPECT_EQ(v2, 2);
    }());
}

TEST(Queue, PutWaitsWhileTheQueueIsFull) {
    corio::run([]() -> Coro<> {
        Queue<int> q(2);
        std::vector<int> have_been_put;
        auto putter = corio::create_task(put_range(&q, 3, &have_been_put));
        co_await yield_times(2);
        EXPECT_EQ(have_been_put, (std::vector<int>{0, 1}));
        EXPECT_TRUE(q.full());
        EXPECT_FALSE(putter.done());

        int v0 = co_await bounded_get(q);
        EXPECT_EQ(v0, 0);
        co_await corio::sleep(0s);
        EXPECT_EQ(have_been_put, (std::vector<int>{0, 1, 2}));
        int v1 = co_await bounded_get(q);
        int v2 = co_await bounded_get(q);
        EXPECT_EQ(v1, 1);
        EXPECT_EQ(v2, 2);
        EXPECT_TRUE(putter.done());
        co_await result_of(putter);
    }());
}

TEST(Queue, GetFromAFullQueueAdmitsTheWaitingPutterAtOnce) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        bool put_returned = false;
        auto putter = corio::create_task(put_and_flag(&q, 2, &put_returned));
        co_await corio::sleep(0s);
        EXPECT_FALSE(put_returned);

        EXPECT_EQ(q.get_nowait(), 1);
        // The putter's item is in before the putter even runs, so the queue is full again and a
        // newcomer cannot take the slot.
        EXPECT_EQ(q.qsize(), 1u);
        EXPECT_TRUE(q.full());
        EXPECT_THROW(q.put_nowait(3), QueueFull);
        EXPECT_FALSE(put_returned);

        co_await result_of(putter);
        EXPECT_TRUE(put_returned);
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_TRUE(q.empty());
    }());
}

TEST(Queue, WaitingPuttersAreServedInArrivalOrder) {
    corio::run([]() -> Coro<> {
        Queue<std::string> q(1);
        auto pa = corio::create_task(q.put("a"));
        auto pb = corio::create_task(q.put("b"));
        auto pc = corio::create_task(q.put("c"));
        co_await corio::sleep(0s);
        EXPECT_TRUE(pa.done());
        EXPECT_FALSE(pb.done());
        EXPECT_FALSE(pc.done());
        std::vector<std::string> got;
        for (int i = 0; i < 3; ++i) {
            std::string s = co_await bounded_get(q);
            got.push_back(s);
        }
        EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c"}));
        co_await result_of(pb);
        co_await result_of(pc);
        co_await cancel_and_wait(pa, pb, pc);
    }());
}

TEST(Queue, NewPutterDoesNotOvertakeAWaitingPutter) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(0);
        auto first = corio::create_task(q.put(1));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 0);              // admits `first`
        auto late = corio::create_task(q.put(2));  // arrives before `first` runs
        co_await yield_times(2);
        EXPECT_TRUE(first.done());
        EXPECT_FALSE(late.done());
        EXPECT_EQ(q.get_nowait(), 1);
        EXPECT_EQ(q.get_nowait(), 2);
        co_await result_of(late);
        co_await cancel_and_wait(first, late);
    }());
}

TEST(Queue, AdmittedPutterItemGoesBehindTheItemsAlreadyQueued) {
    corio::run([]() -> Coro<> {
        Queue<int> q(2);
        q.put_nowait(1);
        q.put_nowait(2);
        auto putter = corio::create_task(q.put(3));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 1);
        EXPECT_EQ(q.qsize(), 2u);
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_EQ(q.get_nowait(), 3);
        co_await result_of(putter);
    }());
}

TEST(Queue, ProducerAndConsumerThroughASizeOneQueueTransferEverythingInOrder) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        std::vector<int> put;
        std::vector<int> got;
        auto producer = corio::create_task(put_range(&q, 50, &put));
        auto consumer = corio::create_task(get_n(&q, 50, &got));
        co_await wait_done(producer, 1000);
        co_await wait_done(consumer, 1000);
        EXPECT_TRUE(producer.done() && !producer.cancelled());
        EXPECT_TRUE(consumer.done() && !consumer.cancelled());
        std::vector<int> expected(50);
        for (int i = 0; i < 50; ++i) expected[i] = i;
        EXPECT_EQ(put, expected);
        EXPECT_EQ(got, expected);
        EXPECT_TRUE(q.empty());
    }());
}

Coro<> take_what_is_there(Queue<int>* q, std::vector<int>* taken) {
    co_await corio::sleep(0s);
    std::size_t n = q->qsize();
    for (std::size_t i = 0; i < n; ++i) taken->push_back(q->get_nowait());
}

TEST(Queue, GetNowaitLetsEveryWaitingPutterFinish) {
    corio::run([]() -> Coro<> {
        Queue<int> q(2);
        std::vector<int> taken;
        std::vector<Task<void>> tasks;
        tasks.push_back(corio::create_task(take_what_is_there(&q, &taken)));
        for (int i = 0; i < 4; ++i) tasks.push_back(corio::create_task(q.put(i)));
        for (auto& t : tasks) co_await wait_done(t);
        for (auto& t : tasks) EXPECT_TRUE(t.done() && !t.cancelled());
        // 0 and 1 were taken; each get_nowait() admitted one waiting putter.
        EXPECT_EQ(taken, (std::vector<int>{0, 1}));
        EXPECT_EQ(drain(q), (std::vector<int>{2, 3}));
    }());
}

// === LifoQueue ================================================================================

TEST(LifoQueue, LastInFirstOut) {
    corio::run([]() -> Coro<> {
        LifoQueue<int> q;
        co_await q.put(1);
        co_await q.put(3);
        co_await q.put(2);
        std::vector<int> got;
        for (int i = 0; i < 3; ++i) {
            int v = co_await q.get();
            got.push_back(v);
        }
        EXPECT_EQ(got, (std::vector<int>{2, 3, 1}));
    }());
}

TEST(LifoQueue, NowaitRaisesQueueEmptyAndQueueFull) {
    LifoQueue<int> q(2);
    EXPECT_EQ(q.maxsize(), 2u);
    EXPECT_THROW(q.get_nowait(), QueueEmpty);
    q.put_nowait(1);
    q.put_nowait(2);
    EXPECT_TRUE(q.full());
    EXPECT_THROW(q.put_nowait(3), QueueFull);
    EXPECT_EQ(q.get_nowait(), 2);
    EXPECT_EQ(q.get_nowait(), 1);
    EXPECT_THROW(q.get_nowait(), QueueEmpty);
}

TEST(LifoQueue, WaitingGetterReceivesTheItemDirectly) {
    corio::run([]() -> Coro<> {
        LifoQueue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        q.put_nowait(2);
        EXPECT_EQ(q.qsize(), 1u);
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 1);
        EXPECT_EQ(q.get_nowait(), 2);
    }());
}

TEST(LifoQueue, AdmittedPutterItemIsTheNextToComeOut) {
    corio::run([]() -> Coro<> {
        LifoQueue<int> q(2);
        q.put_nowait(1);
        q.put_nowait(2);
        auto putter = corio::create_task(q.put(3));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_TRUE(q.full());
        EXPECT_EQ(q.get_nowait(), 3);
        EXPECT_EQ(q.get_nowait(), 1);
        co_await result_of(putter);
    }());
}

TEST(LifoQueue, GetterCancelledAfterHandOverKeepsLastInFirstOutOrder) {
    corio::run([]() -> Coro<> {
        LifoQueue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);  // handed to the getter
        q.put_nowait(2);  // queued: the last one in
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
        // Nobody received 1, so the queue holds 1 then 2 in put order: 2 comes out first.
        EXPECT_EQ(drain(q), (std::vector<int>{2, 1}));
    }());
}

// === PriorityQueue ============================================================================

TEST(PriorityQueue, SmallestComesOutFirst) {
    corio::run([]() -> Coro<> {
        PriorityQueue<int> q;
        co_await q.put(1);
        co_await q.put(3);
        co_await q.put(2);
        std::vector<int> got;
        for (int i = 0; i < 3; ++i) {
            int v = co_await q.get();
            got.push_back(v);
        }
        EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
    }());
}

TEST(PriorityQueue, ManyItemsWithDuplicatesComeOutSorted) {
    PriorityQueue<int> q;
    std::mt19937 rng(7);
    std::vector<int> put;
    for (int i = 0; i < 300; ++i) {
        int v = static_cast<int>(rng() % 50);
        put.push_back(v);
        q.put_nowait(v);
    }
    EXPECT_EQ(q.qsize(), 300u);
    EXPECT_EQ(drain(q), sorted(put));
}

TEST(PriorityQueue, GreaterComparatorGivesLargestFirst) {
    PriorityQueue<int, std::greater<int>> q;
    for (int v : {4, 9, 1, 7}) q.put_nowait(v);
    EXPECT_EQ(drain(q), (std::vector<int>{9, 7, 4, 1}));
}

TEST(PriorityQueue, ComparatorOnAFieldWithSequenceNumberKeepsTiesInPutOrder) {
    struct Job {
        int priority;
        int seq;
        std::string name;
    };
    struct ByPriorityThenSeq {
        bool operator()(const Job& a, const Job& b) const {
            return a.priority != b.priority ? a.priority < b.priority : a.seq < b.seq;
        }
    };
    PriorityQueue<Job, ByPriorityThenSeq> q;
    int seq = 0;
    q.put_nowait(Job{2, seq++, "low-a"});
    q.put_nowait(Job{1, seq++, "high-a"});
    q.put_nowait(Job{2, seq++, "low-b"});
    q.put_nowait(Job{1, seq++, "high-b"});
    q.put_nowait(Job{0, seq++, "urgent"});
    std::vector<std::string> names;
    while (!q.empty()) names.push_back(q.get_nowait().name);
    EXPECT_EQ(names, (std::vector<std::string>{"urgent", "high-a", "high-b", "low-a", "low-b"}));
}

TEST(PriorityQueue, ComparatorWithStateAndNoDefaultConstructorIsUsed) {
    class ByRank {
      public:
        explicit ByRank(const std::map<std::string, int>& rank) : rank_(&rank) {}
        bool operator()(const std::string& a, const std::string& b) const {
            return rank_->at(a) < rank_->at(b);
        }

      private:
        const std::map<std::string, int>* rank_;
    };
    static_assert(!std::is_default_constructible_v<ByRank>);
    std::map<std::string, int> rank{{"gold", 1}, {"silver", 2}, {"bronze", 3}};
    PriorityQueue<std::string, ByRank> q(0, ByRank(rank));
    q.put_nowait("bronze");
    q.put_nowait("gold");
    q.put_nowait("silver");
    EXPECT_EQ(drain(q), (std::vector<std::string>{"gold", "silver", "bronze"}));
}

TEST(PriorityQueue, AdmittedPutterItemTakesItsPlaceInPriorityOrder) {
    corio::run([]() -> Coro<> {
        PriorityQueue<int> q(2);
        q.put_nowait(5);
        q.put_nowait(7);
        auto putter = corio::create_task(q.put(1));
        co_await corio::sleep(0s);
        EXPECT_FALSE(putter.done());
        EXPECT_EQ(q.get_nowait(), 5);
        EXPECT_TRUE(q.full());
        EXPECT_EQ(q.get_nowait(), 1);
        EXPECT_EQ(q.get_nowait(), 7);
        co_await result_of(putter);
    }());
}

TEST(PriorityQueue, WaitingGetterTakesTheFirstItemPutEvenIfItIsNotTheSmallest) {
    corio::run([]() -> Coro<> {
        PriorityQueue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(9);
        q.put_nowait(1);
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 9);
        EXPECT_EQ(drain(q), std::vector<int>{1});
    }());
}

TEST(PriorityQueue, GetterCancelledAfterHandOverReturnsTheItemToItsPriorityPlace) {
    corio::run([]() -> Coro<> {
        PriorityQueue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(5);  // handed over
        q.put_nowait(9);
        q.put_nowait(1);
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
        EXPECT_EQ(drain(q), (std::vector<int>{1, 5, 9}));
    }());
}

// === join() and task_done() ===================================================================

TEST(QueueJoin, JoinReturnsAtOnceWhenNothingWasPut) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        bool at_once = co_await join_returns_at_once(&q);
        EXPECT_TRUE(at_once);
        at_once = co_await join_returns_at_once(&q);
        EXPECT_TRUE(at_once);
    }());
}

TEST(QueueJoin, TaskDoneWithNothingUnfinishedRaisesValueError) {
    Queue<int> q;
    EXPECT_THROW(q.task_done(), ValueError);
    LifoQueue<int> lq;
    EXPECT_THROW(lq.task_done(), ValueError);
    PriorityQueue<int> pq;
    EXPECT_THROW(pq.task_done(), ValueError);
}

TEST(QueueJoin, TaskDoneMoreTimesThanItemsPutRaisesValueError) {
    Queue<int> q;
    q.put_nowait(1);
    q.put_nowait(2);
    (void)q.get_nowait();
    q.task_done();
    q.task_done();  // counts items put, whether or not they were taken
    EXPECT_THROW(q.task_done(), ValueError);
}

Coro<> summing_worker(Queue<int>* q, int* sum) {
    for (;;) {
        int v = co_await q->get();
        co_await corio::sleep(0s);
        *sum += v;
        q->task_done();
    }
}

TEST(QueueJoin, JoinWaitsUntilWorkersMarkEveryItemDone) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        for (int i = 0; i < 100; ++i) q.put_nowait(i);
        int sum = 0;
        auto w1 = corio::create_task(summing_worker(&q, &sum));
        auto w2 = corio::create_task(summing_worker(&q, &sum));
        auto joiner = corio::create_task(q.join());
        co_await wait_done(joiner, 1000);
        EXPECT_TRUE(joiner.done());
        EXPECT_EQ(sum, 4950);
        EXPECT_TRUE(q.empty());
        co_await cancel_and_wait(w1, w2, joiner);
    }());
}

TEST(QueueJoin, JoinWaitsForAnItemTakenButNotMarkedDone) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        q.put_nowait(1);
        auto joiner = corio::create_task(q.join());
        int v = co_await bounded_get(q);
        EXPECT_EQ(v, 1);
        co_await yield_times(3);
        EXPECT_FALSE(joiner.done());
        q.task_done();
        co_await corio::sleep(0s);
        EXPECT_TRUE(joiner.done());
        co_await cancel_and_wait(joiner);
    }());
}

TEST(QueueJoin, EveryJoinerWakesWhenTheLastItemIsDone) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        q.put_nowait(1);
        auto j1 = corio::create_task(q.join());
        auto j2 = corio::create_task(q.join());
        auto j3 = corio::create_task(q.join());
        co_await corio::sleep(0s);
        (void)q.get_nowait();
        q.task_done();
        co_await corio::sleep(0s);
        EXPECT_TRUE(j1.done());
        EXPECT_TRUE(j2.done());
        EXPECT_TRUE(j3.done());
        co_await cancel_and_wait(j1, j2, j3);
    }());
}

TEST(QueueJoin, PutAfterJoinReturnedMakesTheNextJoinWait) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        q.put_nowait(1);
        (void)q.get_nowait();
        q.task_done();
        bool at_once = co_await join_returns_at_once(&q);
        EXPECT_TRUE(at_once);
        q.put_nowait(2);
        auto joiner = corio::create_task(q.join());
        co_await yield_times(2);
        EXPECT_FALSE(joiner.done());
        (void)q.get_nowait();
        q.task_done();
        co_await corio::sleep(0s);
        EXPECT_TRUE(joiner.done());
        co_await cancel_and_wait(joiner);
    }());
}

TEST(QueueJoin, ItemHandedToAWaitingGetterCountsAsUnfinished) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        auto joiner = corio::create_task(q.join());
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 1);
        co_await yield_times(2);
        EXPECT_FALSE(joiner.done());
        q.task_done();
        co_await corio::sleep(0s);
        EXPECT_TRUE(joiner.done());
        EXPECT_THROW(q.task_done(), ValueError);
        co_await cancel_and_wait(joiner);
    }());
}

TEST(QueueJoin, ItemOfAnAdmittedPutterCountsAsUnfinished) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        auto joiner = corio::create_task(q.join());
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 1);  // admits 2
        q.task_done();
        co_await yield_times(2);
        EXPECT_FALSE(joiner.done());
        EXPECT_EQ(q.get_nowait(), 2);
        q.task_done();
        co_await corio::sleep(0s);
        EXPECT_TRUE(joiner.done());
        EXPECT_THROW(q.task_done(), ValueError);
        co_await cancel_and_wait(putter, joiner);
    }());
}

TEST(QueueJoin, PutCancelledWhileWaitingIsNotCountedAsUnfinished) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        co_await corio::sleep(0s);
        putter.cancel();
        co_await wait_done(putter);
        EXPECT_TRUE(putter.cancelled());
        EXPECT_EQ(q.get_nowait(), 1);
        q.task_done();
        // At once: the cancelled put counts for nothing.
        bool at_once = co_await join_returns_at_once(&q);
        EXPECT_TRUE(at_once);
        EXPECT_THROW(q.task_done(), ValueError);
    }());
}

TEST(QueueJoin, ItemGivenBackByACancelledGetterStaysUnfinished) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        getter.cancel();
        co_await wait_done(getter);
        auto joiner = corio::create_task(q.join());
        co_await yield_times(2);
        EXPECT_FALSE(joiner.done());
        EXPECT_EQ(q.get_nowait(), 1);
        q.task_done();
        co_await corio::sleep(0s);
        EXPECT_TRUE(joiner.done());
        EXPECT_THROW(q.task_done(), ValueError);
        co_await cancel_and_wait(joiner);
    }());
}

template <class Q>
Coro<> counting_worker(Q* q, int* done) {
    for (;;) {
        (void)co_await q->get();
        co_await corio::sleep(0s);
        ++*done;
        q->task_done();
    }
}

template <class Q>
Coro<> workers_and_join_scenario() {
    Q q;
    for (int i = 0; i < 20; ++i) q.put_nowait(i);
    int done = 0;
    auto w1 = corio::create_task(counting_worker(&q, &done));
    auto w2 = corio::create_task(counting_worker(&q, &done));
    auto joiner = corio::create_task(q.join());
    co_await wait_done(joiner, 1000);
    EXPECT_TRUE(joiner.done());
    EXPECT_EQ(done, 20);
    EXPECT_TRUE(q.empty());
    EXPECT_THROW(q.task_done(), ValueError);
    co_await cancel_and_wait(w1, w2, joiner);
}

TEST(QueueJoin, JoinAndTaskDoneWorkTheSameForLifoAndPriorityQueues) {
    corio::run(workers_and_join_scenario<LifoQueue<int>>());
    corio::run(workers_and_join_scenario<PriorityQueue<int>>());
}

// === shutdown() ===============================================================================

// The four scenarios of asyncio's _QueueShutdownTestMixin, run for each kind of queue.

template <class Q>
Coro<> shutdown_empty_scenario() {
    Q q;
    auto getter = corio::create_task(q.get());
    co_await corio::sleep(0s);  // the getter waits before the shutdown
    q.shutdown();
    EXPECT_EQ(q.qsize(), 0u);
    bool at_once = co_await join_returns_at_once(&q);
    EXPECT_TRUE(at_once);
    EXPECT_TRUE(getter.done());
    EXPECT_THROW(co_await result_of(getter), QueueShutDown);
    EXPECT_THROW(co_await bounded_put(q, 1), QueueShutDown);
    EXPECT_THROW(q.put_nowait(1), QueueShutDown);
    EXPECT_THROW(co_await bounded_get(q), QueueShutDown);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
    EXPECT_TRUE(q.empty());
    co_await cancel_and_wait(getter);
}

template <class Q>
Coro<> shutdown_nonempty_scenario() {
    Q q(1);
    q.put_nowait(1);
    auto joiner = corio::create_task(q.join());
    auto putter = corio::create_task(q.put(2));
    co_await corio::sleep(0s);
    EXPECT_FALSE(putter.done());

    q.shutdown();
    EXPECT_EQ(q.qsize(), 1u);
    co_await corio::sleep(0s);
    EXPECT_TRUE(putter.done());
    EXPECT_THROW(co_await result_of(putter), QueueShutDown);

    int v = co_await bounded_get(q);  // what was queued can still be taken
    EXPECT_EQ(v, 1);
    co_await corio::sleep(0s);
    EXPECT_FALSE(joiner.done());

    EXPECT_THROW(co_await bounded_put(q, 3), QueueShutDown);
    EXPECT_THROW(q.put_nowait(3), QueueShutDown);
    EXPECT_THROW(co_await bounded_get(q), QueueShutDown);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);

    q.task_done();
    co_await corio::sleep(0s);
    EXPECT_TRUE(joiner.done());
    EXPECT_THROW(q.task_done(), ValueError);
    co_await cancel_and_wait(joiner, putter);
}

template <class Q>
Coro<> shutdown_immediate_scenario() {
    Q q;
    q.put_nowait(1);
    auto joiner = corio::create_task(q.join());
    q.shutdown(true);
    EXPECT_EQ(q.qsize(), 0u);
    co_await corio::sleep(0s);
    EXPECT_TRUE(joiner.done());
    EXPECT_FALSE(joiner.cancelled());

    EXPECT_THROW(co_await bounded_put(q, 2), QueueShutDown);
    EXPECT_THROW(q.put_nowait(2), QueueShutDown);
    EXPECT_THROW(co_await bounded_get(q), QueueShutDown);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
    EXPECT_THROW(q.task_done(), ValueError);  // the dropped item counted as done
    co_await cancel_and_wait(joiner);
}

template <class Q>
Coro<> shutdown_immediate_with_unfinished_scenario() {
    Q q;
    q.put_nowait(1);
    q.put_nowait(1);
    auto joiner = corio::create_task(q.join());
    int v = co_await bounded_get(q);
    EXPECT_EQ(v, 1);

    q.shutdown(true);  // unfinished: 2 -> 1 (the item taken is still being worked on)
    EXPECT_EQ(q.qsize(), 0u);
    co_await corio::sleep(0s);
    EXPECT_FALSE(joiner.done());

    EXPECT_THROW(co_await bounded_put(q, 2), QueueShutDown);
    EXPECT_THROW(q.put_nowait(2), QueueShutDown);
    EXPECT_THROW(co_await bounded_get(q), QueueShutDown);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);

    q.task_done();
    EXPECT_THROW(q.task_done(), ValueError);
    co_await corio::sleep(0s);
    EXPECT_TRUE(joiner.done());
    co_await cancel_and_wait(joiner);
}

TEST(QueueShutdown, EmptyQueueWakesGetterAndRaisesQueueShutDownEverywhere) {
    corio::run(shutdown_empty_scenario<Queue<int>>());
    corio::run(shutdown_empty_scenario<LifoQueue<int>>());
    corio::run(shutdown_empty_scenario<PriorityQueue<int>>());
}

TEST(QueueShutdown, NonEmptyQueueWakesPutterKeepsItemsForGetAndJoinWaitsForTaskDone) {
    corio::run(shutdown_nonempty_scenario<Queue<int>>());
    corio::run(shutdown_nonempty_scenario<LifoQueue<int>>());
    corio::run(shutdown_nonempty_scenario<PriorityQueue<int>>());
}

TEST(QueueShutdown, ImmediateDropsItemsAndReleasesJoin) {
    corio::run(shutdown_immediate_scenario<Queue<int>>());
    corio::run(shutdown_immediate_scenario<LifoQueue<int>>());
    corio::run(shutdown_immediate_scenario<PriorityQueue<int>>());
}

TEST(QueueShutdown, ImmediateStillWaitsForItemsAlreadyTaken) {
    corio::run(shutdown_immediate_with_unfinished_scenario<Queue<int>>());
    corio::run(shutdown_immediate_with_unfinished_scenario<LifoQueue<int>>());
    corio::run(shutdown_immediate_with_unfinished_scenario<PriorityQueue<int>>());
}

TEST(QueueShutdown, GetNowaitReturnsQueuedItemsThenRaisesQueueShutDownNotQueueEmpty) {
    Queue<int> q;
    q.put_nowait(1);
    q.put_nowait(2);
    q.shutdown();
    EXPECT_EQ(q.qsize(), 2u);
    EXPECT_EQ(q.get_nowait(), 1);
    EXPECT_EQ(q.get_nowait(), 2);
    try {
        (void)q.get_nowait();
        ADD_FAILURE() << "get_nowait() on an empty shut-down queue did not raise";
    } catch (const QueueShutDown&) {
    } catch (const QueueEmpty&) {
        ADD_FAILURE() << "raised QueueEmpty instead of QueueShutDown";
    }
}

TEST(QueueShutdown, PutNowaitOnAFullShutDownQueueRaisesQueueShutDown) {
    Queue<int> q(1);
    q.put_nowait(1);
    q.shutdown();
    try {
        q.put_nowait(2);
        ADD_FAILURE() << "put_nowait() after shutdown() did not raise";
    } catch (const QueueShutDown&) {
    } catch (const QueueFull&) {
        ADD_FAILURE() << "raised QueueFull instead of QueueShutDown";
    }
    EXPECT_EQ(q.qsize(), 1u);
}

TEST(QueueShutdown, WakesEveryBlockedGetter) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto g1 = corio::create_task(q.get());
        auto g2 = corio::create_task(q.get());
        auto g3 = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.shutdown();
        co_await corio::sleep(0s);
        EXPECT_TRUE(g1.done());
        EXPECT_TRUE(g2.done());
        EXPECT_TRUE(g3.done());
        EXPECT_THROW(co_await result_of(g1), QueueShutDown);
        EXPECT_THROW(co_await result_of(g2), QueueShutDown);
        EXPECT_THROW(co_await result_of(g3), QueueShutDown);
        co_await cancel_and_wait(g1, g2, g3);
    }());
}

TEST(QueueShutdown, WakesEveryBlockedPutterWithoutInsertingItsItem) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto p1 = corio::create_task(q.put(2));
        auto p2 = corio::create_task(q.put(3));
        auto p3 = corio::create_task(q.put(4));
        co_await corio::sleep(0s);
        q.shutdown();
        co_await corio::sleep(0s);
        EXPECT_THROW(co_await result_of(p1), QueueShutDown);
        EXPECT_THROW(co_await result_of(p2), QueueShutDown);
        EXPECT_THROW(co_await result_of(p3), QueueShutDown);
        EXPECT_EQ(drain(q), std::vector<int>{1});
        q.task_done();
        EXPECT_THROW(q.task_done(), ValueError);  // the refused puts count for nothing
        co_await cancel_and_wait(p1, p2, p3);
    }());
}

TEST(QueueShutdown, ImmediateReleasesJoinersAndBlockedPutters) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        auto joiner = corio::create_task(q.join());
        co_await corio::sleep(0s);
        q.shutdown(true);
        EXPECT_TRUE(q.empty());
        co_await corio::sleep(0s);
        EXPECT_TRUE(joiner.done());
        EXPECT_FALSE(joiner.cancelled());
        EXPECT_THROW(co_await result_of(putter), QueueShutDown);
        co_await cancel_and_wait(putter, joiner);
    }());
}

TEST(QueueShutdown, GetterHandedAnItemBeforeImmediateShutdownStillReceivesIt) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        q.put_nowait(2);  // queued: dropped by the shutdown
        q.shutdown(true);
        EXPECT_TRUE(q.empty());
        auto joiner = corio::create_task(q.join());
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 1);
        co_await corio::sleep(0s);
        EXPECT_FALSE(joiner.done());  // item 1 is being worked on
        q.task_done();
        co_await corio::sleep(0s);
        EXPECT_TRUE(joiner.done());
        EXPECT_THROW(q.task_done(), ValueError);
        co_await cancel_and_wait(joiner);
    }());
}

TEST(QueueShutdown, PutterAdmittedBeforeShutdownReturnsNormallyAndItsItemCanBeTaken) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 1);  // admits 2
        q.shutdown();
        co_await wait_done(putter);
        EXPECT_FALSE(putter.cancelled());
        EXPECT_EQ(putter.exception(), nullptr);
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_THROW(q.get_nowait(), QueueShutDown);
    }());
}

TEST(QueueShutdown, PutterAdmittedBeforeImmediateShutdownReturnsNormallyAndItsItemIsDropped) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 1);  // admits 2
        q.task_done();
        q.shutdown(true);  // drops 2, counting it done
        EXPECT_TRUE(q.empty());
        co_await wait_done(putter);
        EXPECT_FALSE(putter.cancelled());
        EXPECT_EQ(putter.exception(), nullptr);
        bool at_once = co_await join_returns_at_once(&q);
        EXPECT_TRUE(at_once);
        EXPECT_THROW(q.task_done(), ValueError);
    }());
}

TEST(QueueShutdown, ImmediateShutdownAfterAPlainOneDropsWhatIsLeft) {
    Queue<int> q;
    q.put_nowait(1);
    q.put_nowait(2);
    q.shutdown();
    EXPECT_EQ(q.qsize(), 2u);
    q.shutdown(true);
    EXPECT_EQ(q.qsize(), 0u);
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
    EXPECT_THROW(q.task_done(), ValueError);
}

TEST(QueueShutdown, GetterWokenByShutdownThenCancelledRaisesCancelledError) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.shutdown();
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
    }());
}

TEST(QueueShutdown, PutterWokenByShutdownThenCancelledRaisesCancelledError) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        co_await corio::sleep(0s);
        q.shutdown();
        putter.cancel();
        co_await wait_done(putter);
        EXPECT_TRUE(putter.cancelled());
        EXPECT_EQ(drain(q), std::vector<int>{1});
    }());
}

TEST(QueueShutdown, GetterCancelledAfterHandOverReturnsTheItemToAShutDownQueue) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        q.shutdown();
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
        EXPECT_EQ(q.get_nowait(), 1);
        EXPECT_THROW(q.get_nowait(), QueueShutDown);
    }());
}

TEST(QueueShutdown, GetterCancelledAfterHandOverAndImmediateShutdownDropsTheItemAsDone) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        q.shutdown(true);
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
        EXPECT_TRUE(q.empty());
        // Dropped like the other queued items: join() has nothing to wait for.
        bool at_once = co_await join_returns_at_once(&q);
        EXPECT_TRUE(at_once);
        EXPECT_THROW(q.task_done(), ValueError);
    }());
}

// === cancellation =============================================================================

TEST(QueueCancellation, GetCancelledWhileWaitingTakesNothing) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
        EXPECT_THROW(co_await result_of(getter), CancelledError);
        q.put_nowait(1);  // nobody waits any more: the item is queued
        EXPECT_EQ(q.qsize(), 1u);
        EXPECT_EQ(q.get_nowait(), 1);
    }());
}

TEST(QueueCancellation, LaterPutSkipsAGetterCancelledWhileWaiting) {
    corio::run([]() -> Coro<> {
        Queue<std::string> q;
        auto g1 = corio::create_task(q.get());
        auto g2 = corio::create_task(q.get());
        co_await corio::sleep(0s);
        g1.cancel();
        co_await corio::sleep(0s);
        EXPECT_TRUE(g1.done());
        q.put_nowait("a");
        co_await corio::sleep(0s);
        EXPECT_TRUE(g2.done());
        std::string v = co_await result_of(g2);
        EXPECT_EQ(v, "a");
        EXPECT_TRUE(g1.cancelled());
        co_await cancel_and_wait(g1, g2);
    }());
}

TEST(QueueCancellation, GetCancelledAfterHandOverRaisesAndLeavesTheItemAtTheFront) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto reader = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);  // handed to the reader...
        q.put_nowait(2);
        reader.cancel();  // ...which is cancelled before it could run
        co_await wait_done(reader);
        EXPECT_TRUE(reader.cancelled());
        EXPECT_EQ(q.qsize(), 2u);
        // A new reader gets 1: had it gone missing, it would get 2.
        auto again = corio::create_task(q.get());
        int v = co_await result_of(again);
        EXPECT_EQ(v, 1);
        EXPECT_EQ(drain(q), std::vector<int>{2});
    }());
}

TEST(QueueCancellation, GetCancelledAfterHandOverPassesTheItemToTheNextWaitingGetter) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto g1 = corio::create_task(q.get());
        auto g2 = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);  // handed to g1
        g1.cancel();
        co_await wait_done(g1);
        EXPECT_TRUE(g1.cancelled());
        co_await corio::sleep(0s);
        EXPECT_TRUE(g2.done());
        int v = co_await result_of(g2);
        EXPECT_EQ(v, 1);
        EXPECT_TRUE(q.empty());
    }());
}

TEST(QueueCancellation, GetCancelledAfterHandOverAmongSeveralReadersLosesNothing) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto r1 = corio::create_task(q.get());
        auto r2 = corio::create_task(q.get());
        auto r3 = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);
        q.put_nowait(2);
        r1.cancel();
        EXPECT_THROW(co_await result_of(r1), CancelledError);
        co_await wait_done(r2);
        co_await wait_done(r3);
        std::vector<int> got;
        for (Task<int>* r : {&r2, &r3}) {
            EXPECT_TRUE(r->done() && !r->cancelled());
            if (r->done() && !r->cancelled()) got.push_back(r->result());
        }
        EXPECT_EQ(sorted(got), (std::vector<int>{1, 2}));
        EXPECT_TRUE(q.empty());
    }());
}

TEST(QueueCancellation, GettersCancelledAfterHandOverReceiveNothingAndEveryItemArrivesOnce) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        std::vector<Task<int>> getters;
        for (int i = 0; i < 6; ++i) getters.push_back(corio::create_task(q.get()));
        co_await corio::sleep(0s);
        for (int v = 1; v <= 4; ++v) q.put_nowait(v);  // to getters 0..3; 4 and 5 still wait
        getters[0].cancel();
        getters[2].cancel();
        getters[3].cancel();
        co_await yield_times(3);
        for (int i : {0, 2, 3}) EXPECT_TRUE(getters[i].cancelled()) << i;
        // Each item given back goes to the oldest getter still waiting, then to the queue.
        for (int i : {1, 4, 5}) EXPECT_TRUE(getters[i].done() && !getters[i].cancelled()) << i;
        if (getters[1].done() && !getters[1].cancelled()) {
            EXPECT_EQ(getters[1].result(), 2);
        }
        if (getters[4].done() && !getters[4].cancelled()) {
            EXPECT_EQ(getters[4].result(), 1);
        }
        if (getters[5].done() && !getters[5].cancelled()) {
            EXPECT_EQ(getters[5].result(), 3);
        }
        std::vector<int> received;
        for (auto& g : getters) {
            if (g.done() && !g.cancelled()) received.push_back(g.result());
        }
        for (int v : drain(q)) received.push_back(v);
        EXPECT_EQ(sorted(received), (std::vector<int>{1, 2, 3, 4}));
        for (auto& g : getters) g.cancel();
        for (auto& g : getters) co_await wait_done(g);
    }());
}

TEST(QueueCancellation, ItemsGivenBackBySeveralCancelledGettersKeepTheirPutOrder) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto g1 = corio::create_task(q.get());
        auto g2 = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);  // to g1
        q.put_nowait(2);  // to g2
        q.put_nowait(3);  // queued
        g1.cancel();
        g2.cancel();
        co_await wait_done(g1);
        co_await wait_done(g2);
        EXPECT_TRUE(g1.cancelled());
        EXPECT_TRUE(g2.cancelled());
        // Nobody received anything: a FIFO queue gives the items in the order they were put.
        EXPECT_EQ(drain(q), (std::vector<int>{1, 2, 3}));
    }());
}

TEST(QueueCancellation, ItemGivenBackMayMakeTheQueueExceedMaxsizeByOne) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(1);  // handed over
        q.put_nowait(2);  // queued: the queue is full
        EXPECT_TRUE(q.full());
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
        EXPECT_EQ(q.qsize(), 2u);
        EXPECT_TRUE(q.full());
        EXPECT_THROW(q.put_nowait(3), QueueFull);
        EXPECT_EQ(q.get_nowait(), 1);
        EXPECT_TRUE(q.full());
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_FALSE(q.full());
    }());
}

TEST(QueueCancellation, PutCancelledWhileWaitingDoesNotInsert) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        co_await corio::sleep(0s);
        putter.cancel();
        EXPECT_THROW(co_await result_of(putter), CancelledError);
        EXPECT_EQ(q.qsize(), 1u);
        EXPECT_EQ(q.get_nowait(), 1);
        co_await yield_times(2);
        EXPECT_TRUE(q.empty());  // the freed slot was not given to the cancelled putter
        EXPECT_THROW(q.get_nowait(), QueueEmpty);
    }());
}

TEST(QueueCancellation, GetSkipsAPutterCancelledWhileWaiting) {
    corio::run([]() -> Coro<> {
        Queue<std::string> q(1);
        auto pa = corio::create_task(q.put("a"));
        auto pb = corio::create_task(q.put("b"));
        auto px = corio::create_task(q.put("X"));
        co_await corio::sleep(0s);
        EXPECT_TRUE(pa.done());
        EXPECT_FALSE(pb.done());
        px.cancel();
        co_await corio::sleep(0s);
        EXPECT_TRUE(px.done());
        EXPECT_TRUE(px.cancelled());
        EXPECT_EQ(q.get_nowait(), "a");  // admits b
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), "b");
        co_await result_of(pb);
        EXPECT_TRUE(q.empty());
        co_await yield_times(2);
        EXPECT_TRUE(q.empty());  // X never arrives
        co_await cancel_and_wait(pa, pb, px);
    }());
}

TEST(QueueCancellation, PutCancelledWhileWaitingLetsTheNextPutterIn) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(0);
        auto p1 = corio::create_task(q.put(1));
        auto p2 = corio::create_task(q.put(2));
        co_await corio::sleep(0s);
        p1.cancel();
        co_await wait_done(p1);
        EXPECT_TRUE(p1.cancelled());
        EXPECT_EQ(q.get_nowait(), 0);  // admits p2 at once
        EXPECT_TRUE(q.full());
        EXPECT_EQ(q.get_nowait(), 2);
        co_await result_of(p2);
    }());
}

TEST(QueueCancellation, AdmittedPutCancelledBeforeItRanReturnsAndRaisesAtTheNextSuspension) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        int stage = 0;
        auto putter = corio::create_task(put_then_yield(&q, 2, &stage));
        co_await corio::sleep(0s);
        EXPECT_EQ(stage, 0);
        EXPECT_EQ(q.get_nowait(), 1);  // admits 2
        putter.cancel();               // before the putter ran
        co_await wait_done(putter);
        EXPECT_EQ(stage, 1);                       // put() returned normally...
        EXPECT_TRUE(putter.cancelled());           // ...and the next co_await raised CancelledError
        EXPECT_EQ(drain(q), std::vector<int>{2});  // the item is in, once
    }());
}

TEST(QueueCancellation, AdmittedPutCancelledInATaskThatThenReturnsEndsTheTaskCancelled) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        auto putter = corio::create_task(q.put(2));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 1);
        putter.cancel();
        co_await wait_done(putter);
        EXPECT_TRUE(putter.cancelled());
        // The put happened all the same: 2 is queued, exactly once.
        EXPECT_EQ(drain(q), std::vector<int>{2});
        q.task_done();
        q.task_done();
        EXPECT_THROW(q.task_done(), ValueError);
    }());
}

Coro<> put_then_withdraw_cancellation(Queue<int>* q, int v, bool* finished) {
    co_await q->put(v);
    corio::current_task().uncancel();
    co_await corio::sleep(0s);
    *finished = true;
}

TEST(QueueCancellation, PendingCancellationAfterAnAdmittedPutCanBeWithdrawn) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        bool finished = false;
        auto putter = corio::create_task(put_then_withdraw_cancellation(&q, 2, &finished));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait(), 1);
        putter.cancel();
        co_await wait_done(putter);
        EXPECT_TRUE(finished);
        EXPECT_FALSE(putter.cancelled());
        EXPECT_EQ(drain(q), std::vector<int>{2});
    }());
}

TEST(QueueCancellation, WaitForOnAnEmptyQueueTimesOutAndTakesNothing) {
    corio::run([]() -> Coro<> {
        Queue<int> q(5);
        EXPECT_THROW(co_await corio::wait_for(q.get(), 10ms), corio::TimeoutError);
        q.put_nowait(1);  // no getter is left waiting to take it
        EXPECT_EQ(q.qsize(), 1u);
        EXPECT_EQ(q.get_nowait(), 1);
    }());
}

TEST(QueueCancellation, WaitForReturnsAnItemPutBeforeTheDeadline) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(corio::wait_for(q.get(), 10s));
        co_await corio::sleep(0s);
        q.put_nowait(1);
        int v = co_await result_of(getter);
        EXPECT_EQ(v, 1);
        EXPECT_TRUE(q.empty());
    }());
}

TEST(QueueCancellation, WaitForWithZeroTimeoutOnANonEmptyQueueTakesNothing) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        q.put_nowait(1);
        // As asyncio: a timeout <= 0 gives the get() no step at all.
        EXPECT_THROW(co_await corio::wait_for(q.get(), 0s), corio::TimeoutError);
        EXPECT_EQ(drain(q), std::vector<int>{1});
    }());
}

TEST(QueueCancellation, CancellingATaskWaitingInWaitForGetRaisesCancelledErrorAndTakesNothing) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        auto getter = corio::create_task(corio::wait_for(q.get(), 10s));
        co_await corio::sleep(0s);
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());  // not a TimeoutError: the cancel came from outside
        q.put_nowait(1);
        EXPECT_EQ(drain(q), std::vector<int>{1});
    }());
}

TEST(QueueCancellation, TimeoutOnABlockedPutDoesNotInsert) {
    corio::run([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        EXPECT_THROW(co_await corio::timeout(10ms, q.put(2)), corio::TimeoutError);
        EXPECT_EQ(q.get_nowait(), 1);
        co_await yield_times(2);
        EXPECT_THROW(q.get_nowait(), QueueEmpty);
    }());
}

Coro<> get_with_timeout(Queue<int>* q, corio::Timeout** scope, std::optional<int>* got,
                        bool* timed_out) {
    try {
        int v = co_await corio::timeout(10s, [q, scope](corio::Timeout& t) {
            *scope = &t;
            return q->get();
        });
        *got = v;
    } catch (const corio::TimeoutError&) {
        *timed_out = true;
    }
}

TEST(QueueCancellation, TimeoutExpiringAsAnItemIsHandedOverLosesNothing) {
    corio::run([]() -> Coro<> {
        Queue<int> q;
        corio::Timeout* scope = nullptr;
        std::optional<int> got;
        bool timed_out = false;
        auto getter = corio::create_task(get_with_timeout(&q, &scope, &got, &timed_out));
        co_await corio::sleep(0s);
        EXPECT_NE(scope, nullptr);
        if (scope == nullptr) co_return;
        q.put_nowait(7);  // handed to the getter...
        // ...whose deadline passes before it could run.
        scope->reschedule(corio::get_running_loop().time() - 1s);
        co_await wait_done(getter);
        EXPECT_TRUE(getter.done());
        EXPECT_FALSE(getter.cancelled());
        if (timed_out) {
            EXPECT_FALSE(got.has_value());
            EXPECT_EQ(drain(q), std::vector<int>{7});
        } else {
            EXPECT_EQ(got, 7);
            EXPECT_TRUE(q.empty());
        }
    }());
}

// Many producers and consumers, cancelled at random (deterministically: fixed seed, and only
// sleep(0s) to interleave), including right after an item was handed over or a putter
// admitted. Whatever happens, the items received plus those left in the queue are exactly the
// items whose put returned normally.

struct Ledger {
    std::vector<int> put_ok;    // items whose put()/put_nowait() returned normally
    std::vector<int> received;  // items get()/get_nowait() returned
};

template <class Q>
Coro<> stress_producer(Q* q, Ledger* ledger, int first, int count) {
    for (int v = first; v < first + count; ++v) {
        co_await q->put(v);
        ledger->put_ok.push_back(v);
        if (v % 3 == 0) co_await corio::sleep(0s);
    }
}

template <class Q>
Coro<> stress_consumer(Q* q, Ledger* ledger) {
    for (int n = 0;; ++n) {
        int v = co_await q->get();
        ledger->received.push_back(v);
        if (n % 2 == 0) co_await corio::sleep(0s);
    }
}

template <class Q>
Coro<> stress_scenario(unsigned seed) {
    Q q(3);
    Ledger ledger;
    std::mt19937 rng(seed);
    std::vector<Task<void>> producers;
    std::vector<Task<void>> consumers;
    int next = 0;
    int handed_then_cancelled = 0;
    int admitted_then_cancelled = 0;
    auto cancel_one = [&rng](std::vector<Task<void>>& tasks) {
        std::vector<Task<void>*> live;
        for (auto& t : tasks) {
            if (!t.done()) live.push_back(&t);
        }
        if (!live.empty()) live[rng() % live.size()]->cancel();
    };
    auto cancel_all = [](std::vector<Task<void>>& tasks) {
        for (auto& t : tasks) t.cancel();
    };
    for (int round = 0; round < 800; ++round) {
        switch (rng() % 8) {
            case 0:
                producers.push_back(corio::create_task(stress_producer(&q, &ledger, next, 4)));
                next += 4;
                break;
            case 1:
                consumers.push_back(corio::create_task(stress_consumer(&q, &ledger)));
                break;
            case 2:
                cancel_one(producers);
                break;
            case 3:
                cancel_one(consumers);
                break;
            case 4:
                if (!q.full()) {
                    std::size_t before = q.qsize();
                    q.put_nowait(next);
                    ledger.put_ok.push_back(next);
                    ++next;
                    if (q.qsize() == before) {
                        // Handed to a waiting consumer, which has not run yet.
                        cancel_all(consumers);
                        ++handed_then_cancelled;
                    }
                }
                break;
            case 5:
                if (!q.empty()) {
                    std::size_t before = q.qsize();
                    ledger.received.push_back(q.get_nowait());
                    if (q.qsize() == before) {
                        // A waiting producer was admitted and has not run yet.
                        cancel_all(producers);
                        ++admitted_then_cancelled;
                    }
                }
                break;
            default:
                break;
        }
        if (rng() % 3 != 0) co_await corio::sleep(0s);
    }
    co_await cancel_and_wait_all(producers);
    co_await cancel_and_wait_all(consumers);
    for (auto v : drain(q)) ledger.received.push_back(v);

    EXPECT_GT(handed_then_cancelled, 0);
    EXPECT_GT(admitted_then_cancelled, 0);
    EXPECT_GT(ledger.put_ok.size(), 100u);
    EXPECT_EQ(sorted(ledger.received), sorted(ledger.put_ok));
    // The unfinished count agrees: one task_done() per item put, and not one more.
    for (std::size_t i = 0; i < ledger.put_ok.size(); ++i) q.task_done();
    EXPECT_THROW(q.task_done(), ValueError);
    bool at_once = co_await join_returns_at_once(&q);
    EXPECT_TRUE(at_once);
}

TEST(QueueCancellation, RandomCancellationsNeitherLoseNorDuplicateItemsFifo) {
    corio::run(stress_scenario<Queue<int>>(1));
    corio::run(stress_scenario<Queue<int>>(2024));
}

TEST(QueueCancellation, RandomCancellationsNeitherLoseNorDuplicateItemsLifo) {
    corio::run(stress_scenario<LifoQueue<int>>(3));
}

TEST(QueueCancellation, RandomCancellationsNeitherLoseNorDuplicateItemsPriority) {
    corio::run(stress_scenario<PriorityQueue<int>>(4));
}

// === move-only items ==========================================================================

TEST(QueueMoveOnly, UniquePtrGoesThroughTheQueueAsTheSameObject) {
    corio::run([]() -> Coro<> {
        Queue<std::unique_ptr<int>> q;
        auto a = std::make_unique<int>(1);
        auto b = std::make_unique<int>(2);
        int* pa = a.get();
        int* pb = b.get();
        q.put_nowait(std::move(a));
        co_await q.put(std::move(b));
        std::unique_ptr<int> ga = q.get_nowait();
        std::unique_ptr<int> gb = co_await q.get();
        EXPECT_EQ(ga.get(), pa);
        EXPECT_EQ(gb.get(), pb);
        EXPECT_EQ(*gb, 2);
    }());
}

TEST(QueueMoveOnly, UniquePtrHandedToAWaitingGetterAndThroughABlockedPutter) {
    corio::run([]() -> Coro<> {
        Queue<std::unique_ptr<int>> q(1);
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        auto one = std::make_unique<int>(1);
        int* p1 = one.get();
        q.put_nowait(std::move(one));  // handed over
        std::unique_ptr<int> r1 = co_await result_of(std::move(getter));
        EXPECT_EQ(r1.get(), p1);

        q.put_nowait(std::make_unique<int>(2));
        auto three = std::make_unique<int>(3);
        int* p3 = three.get();
        auto putter = corio::create_task(q.put(std::move(three)));
        co_await corio::sleep(0s);
        EXPECT_FALSE(putter.done());
        std::unique_ptr<int> r2 = q.get_nowait();  // admits 3
        EXPECT_EQ(*r2, 2);
        co_await result_of(putter);
        std::unique_ptr<int> r3 = co_await bounded_get(q);
        EXPECT_EQ(r3.get(), p3);
    }());
}

TEST(QueueMoveOnly, UniquePtrGivenBackByACancelledGetterIsNotLost) {
    corio::run([]() -> Coro<> {
        Queue<std::unique_ptr<int>> q;
        auto getter = corio::create_task(q.get());
        co_await corio::sleep(0s);
        auto item = std::make_unique<int>(5);
        int* p = item.get();
        q.put_nowait(std::move(item));
        getter.cancel();
        co_await wait_done(getter);
        EXPECT_TRUE(getter.cancelled());
        EXPECT_EQ(q.qsize(), 1u);
        if (q.empty()) co_return;
        std::unique_ptr<int> back = q.get_nowait();
        EXPECT_EQ(back.get(), p);
    }());
}

TEST(QueueMoveOnly, PriorityQueueOfUniquePtrWithAComparatorOnThePointee) {
    struct ByValue {
        bool operator()(const std::unique_ptr<int>& a, const std::unique_ptr<int>& b) const {
            return *a < *b;
        }
    };
    PriorityQueue<std::unique_ptr<int>, ByValue> q;
    for (int v : {3, 1, 4, 1, 5}) q.put_nowait(std::make_unique<int>(v));
    std::vector<int> got;
    while (!q.empty()) got.push_back(*q.get_nowait());
    EXPECT_EQ(got, (std::vector<int>{1, 1, 3, 4, 5}));
}

template <class Q>
Coro<> token_scenario(std::vector<int> expected_order) {
    int live = 0;
    {
        Q q(3);
        q.put_nowait(Token(1, &live));
        co_await q.put(Token(3, &live));
        q.put_nowait(Token(2, &live));
        EXPECT_EQ(live, 3);
        EXPECT_THROW(q.put_nowait(Token(9, &live)), QueueFull);
        EXPECT_EQ(live, 3);  // the refused item was destroyed, not kept
        std::vector<int> ids;
        Token first = q.get_nowait();
        ids.push_back(first.id());
        Token second = co_await q.get();
        ids.push_back(second.id());
        for (int id : drain_ids(q)) ids.push_back(id);
        EXPECT_EQ(ids, expected_order);
    }
    EXPECT_EQ(live, 0);
}

TEST(QueueMoveOnly, MoveOnlyTypeWithoutDefaultConstructorWorksInEveryQueue) {
    corio::run(token_scenario<Queue<Token>>({1, 3, 2}));
    corio::run(token_scenario<LifoQueue<Token>>({2, 3, 1}));
    corio::run(token_scenario<PriorityQueue<Token>>({1, 2, 3}));
}

TEST(QueueMoveOnly, MoveOnlyTypeThroughHandOverBackPressureAndGiveBack) {
    int live = 0;
    corio::run([&live]() -> Coro<> {
        Queue<Token> q(1);
        auto g1 = corio::create_task(q.get());
        auto g2 = corio::create_task(q.get());
        co_await corio::sleep(0s);
        q.put_nowait(Token(1, &live));  // to g1
        g1.cancel();                    // gives it back: to g2
        co_await wait_done(g1);
        Token t1 = co_await result_of(std::move(g2));
        EXPECT_EQ(t1.id(), 1);

        q.put_nowait(Token(2, &live));
        auto putter = corio::create_task(q.put(Token(3, &live)));
        co_await corio::sleep(0s);
        EXPECT_EQ(q.get_nowait().id(), 2);  // admits 3
        co_await result_of(putter);
        EXPECT_EQ(drain_ids(q), std::vector<int>{3});
        EXPECT_EQ(live, 1);  // t1
    }());
    EXPECT_EQ(live, 0);
}

TEST(QueueMoveOnly, ImmediateShutdownDestroysTheDroppedItems) {
    int live = 0;
    Queue<Token> q;
    q.put_nowait(Token(1, &live));
    q.put_nowait(Token(2, &live));
    EXPECT_EQ(live, 2);
    q.shutdown(true);
    EXPECT_EQ(live, 0);
}

TEST(QueueMoveOnly, ItemsOfRefusedOrCancelledPutsAreDestroyed) {
    int live = 0;
    corio::run([&live]() -> Coro<> {
        Queue<Token> q(1);
        q.put_nowait(Token(1, &live));
        {
            auto cancelled = corio::create_task(q.put(Token(2, &live)));
            auto refused = corio::create_task(q.put(Token(3, &live)));
            co_await corio::sleep(0s);
            cancelled.cancel();
            co_await wait_done(cancelled);
            q.shutdown();
            co_await wait_done(refused);
            EXPECT_TRUE(cancelled.cancelled());
            EXPECT_THROW(co_await result_of(refused), QueueShutDown);
        }
        EXPECT_EQ(live, 1);  // only the queued item is left
        EXPECT_EQ(drain_ids(q), std::vector<int>{1});
        EXPECT_EQ(live, 0);
    }());
    EXPECT_EQ(live, 0);
}

TEST(QueueMoveOnly, DestroyingAQueueDestroysItsItems) {
    int live = 0;
    {
        LifoQueue<Token> lq;
        PriorityQueue<Token> pq;
        Queue<Token> q;
        for (int i = 0; i < 5; ++i) {
            q.put_nowait(Token(i, &live));
            lq.put_nowait(Token(i, &live));
            pq.put_nowait(Token(i, &live));
        }
        EXPECT_EQ(live, 15);
    }
    EXPECT_EQ(live, 0);
}
