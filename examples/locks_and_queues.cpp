// locks_and_queues: asyncio's synchronisation primitives and queues, in corio.
//
//     async with lock:                         auto held = co_await lock.guard();
//         ...                                  ...   // released at the end of the scope
//     async with sem:                          auto permit = co_await sem.guard();
//     await event.wait()                       co_await event.wait();
//     await queue.put(x); x = await queue.get() co_await queue.put(x); x = co_await queue.get();
//
// The example checks what it shows and exits non-zero if corio got anything wrong.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

namespace {

int failures = 0;
void check(bool ok, const char* what) {
    std::printf("%s %s\n", ok ? "ok:  " : "FAIL:", what);
    if (!ok) ++failures;
}

// --- Lock: one task at a time in a critical section that awaits --------------------------------

struct Account {
    corio::Lock lock;
    int balance = 100;
};

// Without the lock, two withdrawals could both see 100 and both succeed.
corio::Coro<bool> withdraw(Account& account, int amount) {
    auto held = co_await account.lock.guard();
    if (account.balance < amount) co_return false;
    co_await corio::sleep(1ms);  // stands for a round trip to the bank's database
    account.balance -= amount;
    co_return true;
}  // `held` releases the lock here, also when an exception leaves the function

// --- Semaphore: at most N at once ---------------------------------------------------------------

struct Crawler {
    corio::Semaphore slots{3};  // at most 3 downloads at a time
    int running = 0;
    int most_running = 0;
};

corio::Coro<> download(Crawler& c) {
    auto slot = co_await c.slots.guard();
    c.most_running = std::max(c.most_running, ++c.running);
    co_await corio::sleep(2ms);
    --c.running;
}

// --- Event and Condition ------------------------------------------------------------------------

corio::Coro<std::string> wait_for_go(corio::Event& go, std::string name) {
    co_await go.wait();
    co_return name;
}

struct Mailbox {
    corio::Condition changed;
    std::vector<std::string> letters;
};

corio::Coro<std::string> wait_for_letter(Mailbox& box) {
    auto held = co_await box.changed.guard();
    co_await box.changed.wait_for([&] { return !box.letters.empty(); });
    std::string letter = box.letters.back();
    box.letters.pop_back();
    co_return letter;
}

// --- Queue: a pipeline with back-pressure and a clean shutdown ---------------------------------

corio::Coro<int> square_worker(corio::Queue<int>& in, corio::Queue<int>& out) {
    int handled = 0;
    try {
        for (;;) {
            int n = co_await in.get();
            co_await out.put(n * n);  // waits while `out` is full: back-pressure
            in.task_done();
            ++handled;
        }
    } catch (const corio::QueueShutDown&) {
        // shutdown() was called and the queue is empty: the worker's job is over.
    }
    co_return handled;
}

corio::Coro<int> amain() {
    // Lock
    Account account;
    auto first = corio::create_task(withdraw(account, 80));
    auto second = corio::create_task(withdraw(account, 80));
    auto [a, b] = co_await corio::gather(first, second);
    check(a != b && account.balance == 20, "Lock: only one of two withdrawals of 80 from 100");
    check(!account.lock.locked(), "Lock: released by the guards");

    // Semaphore
    Crawler crawler;
    std::vector<corio::Task<>> downloads;
    for (int i = 0; i < 10; ++i) downloads.push_back(corio::create_task(download(crawler)));
    co_await corio::gather(downloads);
    check(crawler.most_running == 3, "Semaphore(3): never more than 3 downloads at once");

    // Event: every waiter wakes on set()
    corio::Event go;
    auto r1 = corio::create_task(wait_for_go(go, "runner 1"));
    auto r2 = corio::create_task(wait_for_go(go, "runner 2"));
    co_await corio::sleep(1ms);
    check(!r1.done() && !r2.done(), "Event: waiters wait until set()");
    go.set();
    auto [n1, n2] = co_await corio::gather(r1, r2);
    check(n1 == "runner 1" && n2 == "runner 2", "Event: set() wakes every waiter");

    // Condition: wait for a predicate over shared state
    Mailbox box;
    auto reader = corio::create_task(wait_for_letter(box));
    co_await corio::sleep(1ms);
    {
        auto held = co_await box.changed.guard();
        box.letters.push_back("hello");
        box.changed.notify();
    }
    check(co_await reader == "hello", "Condition: wait_for() returns once the predicate holds");

    // Queue: numbers -> 2 workers -> squares, through queues of 2 items
    corio::Queue<int> numbers(2);
    corio::Queue<int> squares(2);
    std::vector<corio::Task<int>> workers;
    workers.push_back(corio::create_task(square_worker(numbers, squares)));
    workers.push_back(corio::create_task(square_worker(numbers, squares)));
    auto collector = corio::create_task([](corio::Queue<int>& q) -> corio::Coro<long> {
        long sum = 0;
        try {
            for (;;) sum += co_await q.get();
        } catch (const corio::QueueShutDown&) {
        }
        co_return sum;
    }(squares));
    std::size_t most_queued = 0;
    for (int n = 1; n <= 100; ++n) {
        co_await numbers.put(n);  // waits while both items are still queued
        most_queued = std::max(most_queued, numbers.qsize());
    }
    co_await numbers.join();  // every number taken and marked task_done()
    numbers.shutdown();       // the idle workers raise QueueShutDown and return
    auto handled = co_await corio::gather(workers);
    squares.shutdown();  // the collector drains what is left, then stops
    long sum = co_await collector;
    check(most_queued <= 2, "Queue(2): the producer never got more than 2 items ahead");
    check(handled[0] + handled[1] == 100, "Queue: every number handled exactly once");
    check(sum == 338350, "Queue: the sum of the squares of 1..100 is 338350");

    std::printf("%s\n", failures == 0 ? "all checks passed" : "SOME CHECKS FAILED");
    co_return failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
    return corio::run(amain());
}
