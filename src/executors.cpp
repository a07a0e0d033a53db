#include "corio/executors.hpp"

#include <algorithm>
#include <cstdio>

#include "corio/coro.hpp"

namespace corio {

namespace detail {
namespace {

// A job made from a plain std::function (ThreadPoolExecutor::submit): its exception, having
// nobody to go to, is reported.
struct FunctionJob final : Job {
    std::function<void()> fn;
    explicit FunctionJob(std::function<void()> f) : fn(std::move(f)) {}
    void run() noexcept override {
        try {
            fn();
        } catch (...) {
            std::fprintf(stderr, "corio: exception in a ThreadPoolExecutor job: %s\n",
                         describe(std::current_exception()).c_str());
        }
    }
};

}  // namespace
}  // namespace detail

std::size_t ThreadPoolExecutor::default_max_workers() noexcept {
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    return std::min<std::size_t>(32, cores + 4);
}

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers) : max_workers_(max_workers) {
    if (max_workers == 0) throw ValueError("max_workers must be greater than 0");
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
    shutdown(true);
}

void ThreadPoolExecutor::submit(std::function<void()> fn) {
    if (!fn) throw ValueError("ThreadPoolExecutor::submit() of an empty function");
    submit(std::make_unique<detail::FunctionJob>(std::move(fn)));
}

void ThreadPoolExecutor::submit(std::unique_ptr<detail::Job> job) {
    std::unique_lock lock(mutex_);
    if (shut_down_) {
        lock.unlock();
        job->refused();  // the caller learns it from the exception
        job.reset();
        throw RuntimeError("cannot schedule new futures after shutdown");
    }
    jobs_.push_back(std::move(job));
    if (idle_ == 0 && threads_.size() < max_workers_) {
        threads_.emplace_back([this] { work(); });
    } else {
        wake_.notify_one();
    }
}

void ThreadPoolExecutor::work() noexcept {
    std::unique_lock lock(mutex_);
    for (;;) {
        while (jobs_.empty() && !shut_down_) {
            ++idle_;
            wake_.wait(lock);
            --idle_;
        }
        if (jobs_.empty()) return;  // shut down, and nothing left to run
        std::unique_ptr<detail::Job> job = std::move(jobs_.front());
        jobs_.pop_front();
        lock.unlock();
        job->run();
        job.reset();
        lock.lock();
    }
}

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_pending) {
    std::deque<std::unique_ptr<detail::Job>> dropped;
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(mutex_);
        shut_down_ = true;
        if (cancel_pending) dropped.swap(jobs_);
        if (wait) threads.swap(threads_);
    }
    wake_.notify_all();
    dropped.clear();  // outside the lock: each tells its waiter
    for (std::thread& t : threads) {
        if (t.get_id() == std::this_thread::get_id()) {
            t.detach();  // a job shutting down its own pool: it cannot join itself
        } else {
            t.join();
        }
    }
}

// --- the loop's default executor -----------------------------------------------------------

ThreadPoolExecutor& EventLoop::default_executor() {
    check_open();
    if (default_executor_shut_down_) throw RuntimeError("Executor shutdown has been called");
    if (!default_executor_) default_executor_ = std::make_shared<ThreadPoolExecutor>();
    return *default_executor_;
}

void EventLoop::set_default_executor(std::shared_ptr<ThreadPoolExecutor> executor) {
    if (!executor) throw ValueError("set_default_executor() needs an executor");
    default_executor_ = std::move(executor);
}

Coro<void> EventLoop::shutdown_default_executor() {
    default_executor_shut_down_ = true;
    std::shared_ptr<ThreadPoolExecutor> executor = std::move(default_executor_);
    if (!executor) co_return;
    // Joining the pool's threads blocks, so a thread of its own does it while the loop runs.
    ThreadPoolExecutor joiner(1);
    // (Built before the co_await: g++ 12 destroys a lambda temporary of a co_await expression
    // twice.)
    auto shut_down = [executor] { executor->shutdown(true); };
    co_await run_in_executor(joiner, std::move(shut_down));
}

}  // namespace corio
