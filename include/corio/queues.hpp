// Queues between tasks of one loop (asyncio.queues): Queue (FIFO), LifoQueue, PriorityQueue.
//
//     corio::Queue<Job> jobs(100);          // at most 100 items: put() waits when full
//     co_await jobs.put(Job{...});          // producer
//     Job job = co_await jobs.get();        // consumer
//     jobs.task_done();                     // ... and join() returns once every item is done
//
// maxsize 0 means unbounded. Move-only element types work. Not thread-safe: to feed a queue
// from another thread, go through loop.call_soon_threadsafe.
//
// Items and free slots are handed over directly: put() gives its item to the oldest waiting
// get(), and get() lets the oldest waiting put() in, so waiters are served in order and a newly
// arrived task never overtakes one that waits. Cancellation loses nothing:
//   - get() raises CancelledError only if it took nothing. A getter cancelled after an item was
//     handed to it, before it could run, gives the item back (to the next waiting getter, or
//     into the queue where it would be had it never been taken: first out of a Queue, last out
//     of a LifoQueue); until it is drained, qsize() may then exceed maxsize by one.
//   - put() raises CancelledError only if it inserted nothing. A put() admitted into the queue
//     has happened: it returns normally, and a cancellation that arrived in the meantime is
//     raised at the task's next suspension.
//
// shutdown() (Python 3.13): put() and put_nowait() then raise QueueShutDown, and so do get()
// and get_nowait() once the queue is empty; tasks blocked in either are woken to raise it.
// shutdown(true) also drops the items still queued (counting them as done for join()).
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "corio/detail/wait_list.hpp"
#include "corio/errors.hpp"
#include "corio/locks.hpp"

namespace corio {

namespace detail {

// The orders: where put() inserts and what get() removes. put_back() returns an item that was
// handed to a getter cancelled before it could run, so that the queue is as if the item had never
// been taken. Such an item was handed over while the queue was empty, so it is older than every
// item put into the store since; `seq` (its put order) ranks it among the other items given back.
// A ring buffer that grows by doubling and never shrinks, so that a queue in steady use stops
// allocating (std::deque allocates and frees a block for every few hundred bytes that pass).
template <class T>
class Ring {
  public:
    Ring() noexcept = default;
    Ring(Ring&& o) noexcept
        : buf_(std::exchange(o.buf_, nullptr)),
          cap_(std::exchange(o.cap_, 0)),
          head_(std::exchange(o.head_, 0)),
          size_(std::exchange(o.size_, 0)) {}
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    Ring& operator=(Ring&&) = delete;
    ~Ring() {
        for (std::size_t i = 0; i < size_; ++i) std::destroy_at(slot(i));
        if (buf_ != nullptr) std::allocator<T>().deallocate(buf_, cap_);
    }

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    void push_back(T&& item) {
        if (size_ == cap_) grow();
        std::construct_at(slot(size_), std::move(item));
        ++size_;
    }
    T pop_front() {
        T* front = slot(0);
        T item = std::move(*front);
        std::destroy_at(front);
        head_ = (head_ + 1) & (cap_ - 1);
        --size_;
        return item;
    }
    // Inserts at position `at` (0 is the front), moving the items from there on back by one.
    void insert(std::size_t at, T&& item) {
        push_back(std::move(item));
        for (std::size_t i = size_ - 1; i > at; --i) std::swap(*slot(i), *slot(i - 1));
    }

  private:
    T* slot(std::size_t i) noexcept { return buf_ + ((head_ + i) & (cap_ - 1)); }
    void grow() {
        const std::size_t cap = cap_ == 0 ? 16 : cap_ * 2;
        T* buf = std::allocator<T>().allocate(cap);
        std::size_t moved = 0;
        try {
            for (; moved < size_; ++moved) std::construct_at(buf + moved, std::move(*slot(moved)));
        } catch (...) {
            std::destroy_n(buf, moved);
            std::allocator<T>().deallocate(buf, cap);
            throw;
        }
        for (std::size_t i = 0; i < size_; ++i) std::destroy_at(slot(i));
        if (buf_ != nullptr) std::allocator<T>().deallocate(buf_, cap_);
        buf_ = buf;
        cap_ = cap;
        head_ = 0;
    }

    T* buf_ = nullptr;
    std::size_t cap_ = 0;  // 0 or a power of two
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

// The put order of the items given back at one end of a store, ascending: where the next one
// goes among them.
class ReturnedRun {
  public:
    std::size_t size() const noexcept { return seqs_.size(); }
    bool empty() const noexcept { return seqs_.empty(); }
    // Records `seq` and returns its position in the run.
    std::size_t insert(std::uint64_t seq) {
        const auto at = std::upper_bound(seqs_.begin(), seqs_.end(), seq);
        const auto index = static_cast<std::size_t>(at - seqs_.begin());
        seqs_.insert(at, seq);
        return index;
    }
    void pop_first() { seqs_.erase(seqs_.begin()); }
    void pop_last() { seqs_.pop_back(); }

  private:
    std::vector<std::uint64_t> seqs_;
};

template <class T>
class FifoStore {
  public:
    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    void push(T&& item) { items_.push_back(std::move(item)); }
    T pop() {
        if (!returned_.empty()) returned_.pop_first();
        return items_.pop_front();
    }
    // Into the run of given-back items at the front, in put order.
    void put_back(T&& item, std::uint64_t seq) {
        items_.insert(returned_.insert(seq), std::move(item));
    }

  private:
    Ring<T> items_;
    ReturnedRun returned_;  // the given-back items at the front
};

template <class T>
class LifoStore {
  public:
    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    void push(T&& item) { items_.push_back(std::move(item)); }
    T pop() {
        if (returned_.size() == items_.size()) returned_.pop_last();
        T item = std::move(items_.back());
        items_.pop_back();
        return item;
    }
    // Older than everything above it: into the run of given-back items at the bottom.
    void put_back(T&& item, std::uint64_t seq) {
        const auto at = static_cast<std::ptrdiff_t>(returned_.insert(seq));
        items_.insert(items_.begin() + at, std::move(item));
    }

  private:
    std::vector<T> items_;
    ReturnedRun returned_;  // the given-back items at the bottom
};

// A binary heap whose top is the smallest item by Compare (Python's heapq order).
template <class T, class Compare>
class PriorityStore {
  public:
    explicit PriorityStore(Compare less = Compare()) : greater_{std::move(less)} {}
    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    void push(T&& item) {
        items_.push_back(std::move(item));
        std::push_heap(items_.begin(), items_.end(), greater_);
    }
    T pop() {
        std::pop_heap(items_.begin(), items_.end(), greater_);
        T item = std::move(items_.back());
        items_.pop_back();
        return item;
    }
    void put_back(T&& item, std::uint64_t) { push(std::move(item)); }

  private:
    struct Greater {
        Compare less;
        bool operator()(const T& a, const T& b) { return less(b, a); }
    };
    Greater greater_;
    std::vector<T> items_;
};

template <class T, class Store>
class BasicQueue {
  public:
    using value_type = T;

    // maxsize 0: unbounded.
    explicit BasicQueue(std::size_t maxsize = 0, Store store = Store())
        : store_(std::move(store)), maxsize_(maxsize) {
        finished_.set();
    }
    BasicQueue(const BasicQueue&) = delete;
    BasicQueue& operator=(const BasicQueue&) = delete;

    std::size_t maxsize() const noexcept { return maxsize_; }
    std::size_t qsize() const noexcept { return store_.size(); }
    bool empty() const noexcept { return store_.empty(); }
    bool full() const noexcept { return maxsize_ > 0 && store_.size() >= maxsize_; }

    // Inserts without waiting: QueueFull if full, QueueShutDown after shutdown().
    void put_nowait(T item) {
        if (shutdown_) throw QueueShutDown();
        if (full()) throw QueueFull();
        admit(std::move(item));
    }

    // Removes without waiting: QueueEmpty if empty (QueueShutDown if also shut down).
    T get_nowait() {
        if (store_.empty()) {
            if (shutdown_) throw QueueShutDown();
            throw QueueEmpty();
        }
        T item = store_.pop();
        admit_waiting_putter();
        return item;
    }

    struct PutAwaiter : WaitNode {
        static constexpr bool corio_cancel_aware = true;
        BasicQueue* queue;
        T item;
        bool shut = false;  // woken by shutdown(), not admitted

        PutAwaiter(BasicQueue* q, T&& i) : queue(q), item(std::move(i)) {}
        PutAwaiter(BasicQueue* q, const T& i) : queue(q), item(i) {}
        bool await_ready() const noexcept { return queue->shutdown_ || !queue->full(); }
        void await_suspend(std::coroutine_handle<> h) {
            wait_on(queue->putters_, h, "corio::Queue::put()");
        }
        void await_resume() {
            if (!suspended()) return queue->put_nowait(std::move(item));
            bool cancel_pending = cancelled_after_wake();
            if (!shut) return;  // admitted: the put happened; a late cancellation stays pending
            if (cancel_pending) task->throw_cancelled();
            throw QueueShutDown();
        }
    };
    // Inserts `item`, first waiting for a free slot while the queue is full.
    AwaitOp<PutAwaiter, BasicQueue*, T> put(T item) {
        return AwaitOp<PutAwaiter, BasicQueue*, T>(this, std::move(item));
    }

    struct GetAwaiter : WaitNode {
        static constexpr bool corio_cancel_aware = true;
        BasicQueue* queue;
        std::optional<T> item;  // handed over by put(); empty when woken by shutdown()
        std::uint64_t seq = 0;  // the item's put order

        explicit GetAwaiter(BasicQueue* q) noexcept : queue(q) {}
        bool await_ready() const noexcept { return queue->shutdown_ || !queue->store_.empty(); }
        void await_suspend(std::coroutine_handle<> h) {
            wait_on(queue->getters_, h, "corio::Queue::get()");
        }
        T await_resume() {
            if (!suspended()) return queue->get_nowait();
            if (cancelled_after_wake()) {
                // Cancelled after an item was handed over: it goes back, not lost.
                if (item) queue->give_back(std::move(*item), seq);
                task->throw_cancelled();
            }
            if (!item) throw QueueShutDown();
            return std::move(*item);
        }
    };
    // Removes and returns an item, first waiting while the queue is empty.
    AwaitOp<GetAwaiter, BasicQueue*> get() noexcept {
        return AwaitOp<GetAwaiter, BasicQueue*>(this);
    }

    // Marks one item taken by get() as processed. ValueError when called more often than items
    // were put.
    void task_done() {
        if (unfinished_ == 0) throw ValueError("task_done() called too many times");
        if (--unfinished_ == 0) finished_.set();
    }
    // Waits until every item put has been marked with task_done().
    auto join() noexcept { return finished_.wait(); }

    // Shuts the queue down (see the header comment). `immediate` also drops the queued items.
    void shutdown(bool immediate = false) {
        shutdown_ = true;
        if (immediate) {
            immediate_ = true;
            while (!store_.empty()) {
                static_cast<void>(store_.pop());
                count_done();
            }
        }
        wake_all(getters_);
        while (!putters_.empty()) {
            auto& p = static_cast<PutAwaiter&>(putters_.front());
            p.shut = true;
            p.wake();
        }
    }

  private:
    // A new item: to the oldest waiting getter, or into the store.
    void admit(T&& item) {
        ++unfinished_;
        finished_.clear();
        const std::uint64_t seq = ++put_seq_;
        if (!hand_to_getter(item, seq)) store_.push(std::move(item));
    }
    bool hand_to_getter(T& item, std::uint64_t seq) {
        if (getters_.empty()) return false;
        auto& g = static_cast<GetAwaiter&>(getters_.front());
        g.item.emplace(std::move(item));
        g.seq = seq;
        g.wake();
        return true;
    }
    // A slot was freed: the oldest waiting putter's item goes in.
    void admit_waiting_putter() {
        if (putters_.empty() || full()) return;
        auto& p = static_cast<PutAwaiter&>(putters_.front());
        admit(std::move(p.item));
        p.wake();
    }
    // An item handed to a getter that was cancelled before it could run.
    void give_back(T&& item, std::uint64_t seq) {
        if (immediate_) {
            count_done();  // dropped, as shutdown(true) dropped the rest
            return;
        }
        if (!hand_to_getter(item, seq)) store_.put_back(std::move(item), seq);
    }
    void count_done() noexcept {
        if (unfinished_ > 0 && --unfinished_ == 0) finished_.set();
    }

    Store store_;
    std::size_t maxsize_;
    std::size_t unfinished_ = 0;
    std::uint64_t put_seq_ = 0;
    bool shutdown_ = false;
    bool immediate_ = false;
    WaitList getters_;
    WaitList putters_;
    Event finished_;
};

}  // namespace detail

// First in, first out (asyncio.Queue).
template <class T>
class Queue : public detail::BasicQueue<T, detail::FifoStore<T>> {
  public:
    explicit Queue(std::size_t maxsize = 0)
        : detail::BasicQueue<T, detail::FifoStore<T>>(maxsize) {}
};

// Last in, first out (asyncio.LifoQueue).
template <class T>
class LifoQueue : public detail::BasicQueue<T, detail::LifoStore<T>> {
  public:
    explicit LifoQueue(std::size_t maxsize = 0)
        : detail::BasicQueue<T, detail::LifoStore<T>>(maxsize) {}
};

// Smallest first by `Compare` (asyncio.PriorityQueue, whose order is Python's `<`). Items that
// compare equal come out in no particular order; add a sequence number to the item to keep
// them first in, first out.
template <class T, class Compare = std::less<T>>
class PriorityQueue : public detail::BasicQueue<T, detail::PriorityStore<T, Compare>> {
  public:
    explicit PriorityQueue(std::size_t maxsize = 0, Compare less = Compare())
        : detail::BasicQueue<T, detail::PriorityStore<T, Compare>>(
              maxsize, detail::PriorityStore<T, Compare>(std::move(less))) {}
};

}  // namespace corio
