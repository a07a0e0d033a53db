// corio's micro benchmarks (Google Benchmark). bench/run_micro.py runs this program with
// --benchmark_format=json and compares it with asyncio and uvloop; see bench/README.md.
//
// Every benchmark makes exactly one timed measurement per repetition (Iterations(1) with
// UseManualTime(): the time reported is the one the benchmark measured itself, around the part
// that matters) and publishes its result as user counters, which run_micro.py reads:
//
//   spawn_join            ns_per_op                 create_task + co_await, N times in a row
//   ping_pong             ns_per_op                 one hand-off between two tasks via futures
//   ping_pong_event       ns_per_op                 the same via two Events
//   call_soon             ns_per_op, callbacks_per_s
//   timers_1m             overhead_s, total_s       N call_later spread over [0, 0.999] s
//   queue_1m              ns_per_op, items_per_s    N items from a producer to a consumer task
//                                                   through a Queue of maxsize 100
//   lock_uncontended      ns_per_op                 acquire + release of a free Lock, N times
//   event_set_wait        ns_per_op                 set(), wait() (ready), clear(), N times
//   suspended_task_bytes  bytes_per_task, allocs_per_task
//   spawn_join_batch      ns_per_op                 (extra) 1000 tasks, then gather them
//   sleep_zero_yield      ns_per_op                 (extra) two tasks alternating sleep(0s)
//
// CORIO_BENCH_QUICK=1 in the environment selects the smaller N (smoke tests). Each benchmark
// runs on a fresh loop (corio::run or its own corio::EventLoop).

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <benchmark/benchmark.h>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

// --- counting allocations --------------------------------------------------------------------
//
// suspended_task_bytes counts the allocations made while the tasks are created and suspend;
// queue_1m, lock_uncontended and event_set_wait count those made during the timed span. corio
// takes coroutine frames and callback nodes from its pool (src/pool.cpp), which calls
// malloc directly, and libstdc++'s operator new calls malloc too, so counting malloc (and
// calloc/realloc) catches every allocation once. This program interposes glibc's malloc with a
// counting wrapper around __libc_malloc. Sanitizers intercept malloc themselves, so under them
// nothing is interposed and the allocs_per_* counters are not reported.

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CORIO_BENCH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define CORIO_BENCH_SANITIZED 1
#endif
#endif

#if defined(__GLIBC__) && !defined(CORIO_BENCH_SANITIZED)
#define CORIO_BENCH_COUNT_ALLOCS 1
#endif

namespace {

std::atomic<bool> g_counting{false};
std::atomic<std::uint64_t> g_allocations{0};

inline void count_allocation() noexcept {
    if (g_counting.load(std::memory_order_relaxed))
        g_allocations.fetch_add(1, std::memory_order_relaxed);
}

void start_counting_allocations() noexcept {
    g_allocations.store(0);
    g_counting.store(true);
}

// The number of allocations since start_counting_allocations().
std::uint64_t stop_counting_allocations() noexcept {
    g_counting.store(false);
    return g_allocations.load();
}

}  // namespace

#ifdef CORIO_BENCH_COUNT_ALLOCS
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* p, std::size_t size);

void* malloc(std::size_t size) noexcept {
    count_allocation();
    return __libc_malloc(size);
}
void* calloc(std::size_t count, std::size_t size) noexcept {
    count_allocation();
    return __libc_calloc(count, size);
}
void* realloc(void* p, std::size_t size) noexcept {
    count_allocation();
    return __libc_realloc(p, size);
}
}
#endif

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

// The CPU time of the calling thread. Besides the wall time that run_micro.py reads, the
// benchmarks that never block report cpu_ns_per_op: on a shared machine, where the wall time
// includes the time other processes ran, it is the better estimate of the cost itself.
double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// A point in wall time and in the thread's CPU time.
struct Stamp {
    Clock::time_point wall;
    double cpu = 0;
    static Stamp now() { return Stamp{Clock::now(), thread_cpu_seconds()}; }
};

// Seconds of wall and of CPU time between two stamps.
struct Elapsed {
    double wall = 0;
    double cpu = 0;
};

Elapsed elapsed(const Stamp& a, const Stamp& b) {
    return Elapsed{seconds_between(a.wall, b.wall), b.cpu - a.cpu};
}

bool quick_mode() {
    const char* v = std::getenv("CORIO_BENCH_QUICK");
    return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

long pick_n(long full, long quick) {
    return quick_mode() ? quick : full;
}

// Resident set size in bytes, from /proc/self/statm (read without allocating).
long rss_bytes() {
    int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[128];
    ssize_t len = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (len <= 0) return -1;
    buf[len] = '\0';
    char* p = buf;
    std::strtol(p, &p, 10);  // size
    long resident = std::strtol(p, nullptr, 10);
    return resident * ::sysconf(_SC_PAGESIZE);
}

// Runs one measurement; an exception becomes the benchmark's error (an entry with
// error_occurred, which run_micro.py reports) instead of ending the program.
template <class F>
bool guarded(benchmark::State& state, F&& f) {
    std::string error;
    try {
        f();
        return true;
    } catch (const std::exception& e) {
        error = e.what();
    } catch (const corio::BaseException& e) {
        error = std::string("corio::BaseException: ") + e.what();
    } catch (...) {
        error = "unknown exception";
    }
    state.SkipWithError(error.c_str());
    return false;
}

// One measurement per repetition, reported in milliseconds.
void one_shot(benchmark::internal::Benchmark* b) {
    b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
}

// Sets the iteration time and the per-operation counters for `ops` operations.
void report_per_op(benchmark::State& state, const Elapsed& e, long ops) {
    state.SetIterationTime(e.wall);
    state.counters["ns_per_op"] = e.wall * 1e9 / static_cast<double>(ops);
    state.counters["cpu_ns_per_op"] = e.cpu * 1e9 / static_cast<double>(ops);
}

// A measurement and the allocations made during it.
struct Counted {
    Elapsed elapsed;
    std::uint64_t allocations = 0;
};

// Sets `counter` to the allocations per operation, where they are counted.
void report_allocs(benchmark::State& state, const char* counter, std::uint64_t allocations,
                   long ops) {
#ifdef CORIO_BENCH_COUNT_ALLOCS
    state.counters[counter] = static_cast<double>(allocations) / static_cast<double>(ops);
#else
    static_cast<void>(state);
    static_cast<void>(counter);
    static_cast<void>(allocations);
    static_cast<void>(ops);
#endif
}

corio::Coro<int> trivial() {
    co_return 1;
}

// --- suspended_task_bytes ---------------------------------------------------------------------
//
// Registered first, and run on a fresh thread. Both matter because freed memory hides growth of
// the resident set: corio caches freed frames per thread (src/pool.cpp, up to 16 Ki blocks per
// size class), and malloc keeps freed chunks resident. A fresh thread starts with an empty corio
// pool, and malloc_trim(0) right before the first reading returns malloc's free pages to the
// kernel (in every arena), so every frame created afterwards faults in new pages. The numbers
// thus hold even with --benchmark_filter, repetitions, or after other benchmarks.
//
// bytes_per_task includes everything the library allocates per task: the coroutine frame
// (which holds the task's state) and the loop's registry of live tasks. Task handles are not
// kept (each task counts its own completion), so no vector of handles is measured.

struct MemContext {
    long n = 0;
    long started = 0;
    long finished = 0;
    corio::Event gate;         // what every task awaits, as the Python peer's asyncio.Event
    corio::Future<> all_done;  // set by the last task to finish
};

struct MemResult {
    double bytes_per_task = 0;
    double allocs_per_task = -1;
    double seconds = 0;
    std::string error;
};

corio::Coro<> gate_waiter(MemContext& c) {
    ++c.started;
    co_await c.gate.wait();
    if (++c.finished == c.n) c.all_done.set_result();
}

corio::Coro<> suspended_tasks_main(MemContext& c, MemResult& r) {
    c.all_done = corio::get_running_loop().create_future();
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
    long before = rss_bytes();
    start_counting_allocations();
    auto t0 = Clock::now();
    for (long i = 0; i < c.n; ++i) corio::create_task(gate_waiter(c));
    // The tasks start on the next pass and suspend on the gate; two yields leave a margin.
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    auto t1 = Clock::now();
    std::uint64_t allocations = stop_counting_allocations();
    long after = rss_bytes();
    if (c.started != c.n || c.finished != 0) {
        r.error = "the tasks did not all start and suspend";
    } else if (before < 0 || after < 0) {
        r.error = "cannot read /proc/self/statm";
    }
    r.bytes_per_task = static_cast<double>(after - before) / static_cast<double>(c.n);
#ifdef CORIO_BENCH_COUNT_ALLOCS
    r.allocs_per_task = static_cast<double>(allocations) / static_cast<double>(c.n);
#else
    static_cast<void>(allocations);
#endif
    r.seconds = seconds_between(t0, t1);
    c.gate.set();
    co_await c.all_done;
}

void BM_suspended_task_bytes(benchmark::State& state) {
    const long n = pick_n(100'000, 20'000);
    for (auto _ : state) {
        MemResult r;
        std::thread worker([&] {
            try {
                MemContext c;
                c.n = n;
                corio::RunOptions options;
                options.handle_sigint = false;  // not the main thread anyway
                corio::run(suspended_tasks_main(c, r), options);
            } catch (const std::exception& e) {
                r.error = e.what();
            } catch (...) {
                r.error = "exception in the benchmark thread";
            }
        });
        worker.join();
        if (!r.error.empty()) {
            state.SkipWithError(r.error.c_str());
            break;
        }
        state.SetIterationTime(r.seconds);
        state.counters["bytes_per_task"] = r.bytes_per_task;
        if (r.allocs_per_task >= 0) state.counters["allocs_per_task"] = r.allocs_per_task;
    }
    state.SetLabel("N=" + std::to_string(n));
}
BENCHMARK(BM_suspended_task_bytes)->Name("suspended_task_bytes")->Apply(one_shot);

// --- spawn_join -------------------------------------------------------------------------------

corio::Coro<Elapsed> spawn_join_main(long n) {
    long sum = 0;
    Stamp t0 = Stamp::now();
    for (long i = 0; i < n; ++i) sum += co_await corio::create_task(trivial());
    Stamp t1 = Stamp::now();
    if (sum != n) throw corio::RuntimeError("spawn_join: wrong sum of results");
    co_return elapsed(t0, t1);
}

void BM_spawn_join(benchmark::State& state) {
    const long n = pick_n(1'000'000, 200'000);
    for (auto _ : state) {
        Elapsed e;
        if (!guarded(state, [&] { e = corio::run(spawn_join_main(n)); })) break;
        report_per_op(state, e, n);
    }
    state.SetLabel("N=" + std::to_string(n));
}
BENCHMARK(BM_spawn_join)->Name("spawn_join")->Apply(one_shot);

// --- ping_pong --------------------------------------------------------------------------------
//
// A resolves B's future and awaits a fresh future of its own; B, woken, makes itself a fresh
// future, resolves A's and awaits its own. One round trip is two hand-offs.

struct PingPong {
    long n = 0;
    corio::Future<> a_waits;
    corio::Future<> b_waits;
};

corio::Coro<> ping(PingPong& s) {
    corio::EventLoop& loop = corio::get_running_loop();
    for (long i = 0; i < s.n; ++i) {
        corio::Future<> mine = loop.create_future();
        s.a_waits = mine;
        s.b_waits.set_result();  // hand off to B
        co_await mine;
    }
}

corio::Coro<> pong(PingPong& s) {
    corio::EventLoop& loop = corio::get_running_loop();
    for (long i = 0; i < s.n; ++i) {
        co_await s.b_waits;
        s.b_waits = loop.create_future();
        s.a_waits.set_result();  // hand off to A
    }
}

corio::Coro<Elapsed> ping_pong_main(long n) {
    PingPong s;
    s.n = n;
    s.b_waits = corio::get_running_loop().create_future();
    Stamp t0 = Stamp::now();
    auto b = corio::create_task(pong(s));  // B starts first and waits for A
    auto a = corio::create_task(ping(s));
    co_await corio::gather(b, a);
    Stamp t1 = Stamp::now();
    co_return elapsed(t0, t1);
}

void BM_ping_pong(benchmark::State& state) {
    const long n = pick_n(1'000'000, 200'000);
    for (auto _ : state) {
        Elapsed e;
        if (!guarded(state, [&] { e = corio::run(ping_pong_main(n)); })) break;
        report_per_op(state, e, 2 * n);
    }
    state.SetLabel("N=" + std::to_string(n));
}
BENCHMARK(BM_ping_pong)->Name("ping_pong")->Apply(one_shot);

// --- ping_pong_event --------------------------------------------------------------------------
//
// The same round trips through two Events: A sets B's event and waits on its own, B the mirror;
// each clears its own event when woken. No future is created per hand-off.

struct EventPingPong {
    long n = 0;
    corio::Event a_wakes;
    corio::Event b_wakes;
};

corio::Coro<> ping_event(EventPingPong& s) {
    for (long i = 0; i < s.n; ++i) {
        s.b_wakes.set();  // hand off to B
        co_await s.a_wakes.wait();
        s.a_wakes.clear();
    }
}

corio::Coro<> pong_event(EventPingPong& s) {
    for (long i = 0; i < s.n; ++i) {
        co_await s.b_wakes.wait();
        s.b_wakes.clear();
        s.a_wakes.set();  // hand off to A
    }
}

corio::Coro<Elapsed> ping_pong_event_main(long n) {
    EventPingPong s;
    s.n = n;
    Stamp t0 = Stamp::now();
    auto b = corio::create_task(pong_event(s));  // B starts first and waits for A
    auto a = corio::create_task(ping_event(s));
    co_await corio::gather(b, a);
    Stamp t1 = Stamp::now();
    co_return elapsed(t0, t1);
}

void BM_ping_pong_event(benchmark::State& state) {
    const long n = pick_n(1'000'000, 200'000);
    for (auto _ : state) {
        Elapsed e;
        if (!guarded(state, [&] { e = corio::run(ping_pong_event_main(n)); })) break;
        report_per_op(state, e, 2 * n);
    }
    state.SetLabel("N=" + std::to_string(n));
}
BENCHMARK(BM_ping_pong_event)->Name("ping_pong_event")->Apply(one_shot);

// --- call_soon --------------------------------------------------------------------------------
//
// A callback on the running loop schedules N callbacks; each increments a counter and the last
// one takes the time and stops the loop. Measured: from the first call_soon to the last run.

struct CallbackRun {
    corio::EventLoop* loop = nullptr;
    long n = 0;
    long count = 0;
    Stamp t0;
    Stamp scheduled;  // after the last call_soon/call_later
    Stamp t1;
};

void count_and_maybe_stop(CallbackRun* c) {
    if (++c->count == c->n) {
        c->t1 = Stamp::now();
        c->loop->stop();
    }
}

void BM_call_soon(benchmark::State& state) {
    const long n = pick_n(10'000'000, 1'000'000);
    for (auto _ : state) {
        CallbackRun c;
        c.n = n;
        bool ok = guarded(state, [&] {
            corio::EventLoop loop;
            c.loop = &loop;
            loop.call_soon([&c] {
                c.t0 = Stamp::now();
                for (long i = 0; i < c.n; ++i)
                    c.loop->call_soon([p = &c] { count_and_maybe_stop(p); });
                c.scheduled = Stamp::now();
            });
            loop.run_forever();
            if (c.count != c.n) throw corio::RuntimeError("call_soon: not every callback ran");
        });
        if (!ok) break;
        Elapsed e = elapsed(c.t0, c.t1);
        report_per_op(state, e, n);
        state.counters["callbacks_per_s"] = static_cast<double>(n) / e.wall;
        // Of ns_per_op, the part spent in call_soon itself (the rest runs the callbacks).
        state.counters["schedule_ns_per_op"] =
            seconds_between(c.t0.wall, c.scheduled.wall) * 1e9 / static_cast<double>(n);
    }
    state.SetLabel("N=" + std::to_string(n));
}
BENCHMARK(BM_call_soon)->Name("call_soon")->Apply(one_shot);

// --- timers_1m --------------------------------------------------------------------------------
//
// N call_later with delays (i % 1000) ms, spread over [0, 0.999] s; wall time from before the
// first call_later to the last callback. overhead_s is what exceeds the longest delay.

void BM_timers_1m(benchmark::State& state) {
    const long n = pick_n(1'000'000, 100'000);
    std::vector<corio::Duration> delays;
    for (int i = 0; i < 1000; ++i) delays.push_back(std::chrono::milliseconds(i));
    for (auto _ : state) {
        CallbackRun c;
        c.n = n;
        bool ok = guarded(state, [&] {
            corio::EventLoop loop;
            c.loop = &loop;
            loop.call_soon([&c, &delays] {
                c.t0 = Stamp::now();
                for (long i = 0; i < c.n; ++i) {
                    c.loop->call_later(delays[static_cast<std::size_t>(i % 1000)],
                                       [p = &c] { count_and_maybe_stop(p); });
                }
                c.scheduled = Stamp::now();
            });
            loop.run_forever();
            if (c.count != c.n) throw corio::RuntimeError("timers_1m: not every callback ran");
        });
        if (!ok) break;
        Elapsed e = elapsed(c.t0, c.t1);
        state.SetIterationTime(e.wall);
        state.counters["total_s"] = e.wall;
        state.counters["overhead_s"] = e.wall - 0.999;
        state.counters["cpu_s"] = e.cpu;  // CPU time the loop spent (the rest is waiting)
        // The last call_later (a delay of 0.999 s) comes this long after the first, so the
        // overhead cannot be less: what exceeds it is the loop firing timers late.
        state.counters["schedule_s"] = seconds_between(c.t0.wall, c.scheduled.wall);
    }
    state.SetLabel("N=" + std::to_string(n));
}
BENCHMARK(BM_timers_1m)->Name("timers_1m")->Apply(one_shot);

// --- queue_1m ---------------------------------------------------------------------------------
//
// A producer task puts 0 .. N-1 into a Queue of maxsize 100, a consumer task gets them and sums
// them. Measured: from before creating the two tasks until both are done; ns_per_op is per item.

corio::Coro<> queue_producer(corio::Queue<long>& q, long n) {
    for (long i = 0; i < n; ++i) co_await q.put(i);
}

corio::Coro<long> queue_consumer(corio::Queue<long>& q, long n) {
    long sum = 0;
    for (long i = 0; i < n; ++i) sum += co_await q.get();
    co_return sum;
}

corio::Coro<Counted> queue_main(long n) {
    corio::Queue<long> q(100);
    start_counting_allocations();
    Stamp t0 = Stamp::now();
    auto producer = corio::create_task(queue_producer(q, n));
    auto consumer = corio::create_task(queue_consumer(q, n));
    co_await corio::gather(producer, consumer);
    Stamp t1 = Stamp::now();
    Counted r;
    r.allocations = stop_counting_allocations();
    r.elapsed = elapsed(t0, t1);
    if (consumer.result() != n * (n - 1) / 2) {
        throw corio::RuntimeError("queue_1m: wrong sum of the items");
    }
    co_return r;
}

void BM_queue_1m(benchmark::State& state) {
    const long n = pick_n(1'000'000, 100'000);
    for (auto _ : state) {
        Counted r;
        if (!guarded(state, [&] { r = corio::run(queue_main(n)); })) break;
        report_per_op(state, r.elapsed, n);
        state.counters["items_per_s"] = static_cast<double>(n) / r.elapsed.wall;
        report_allocs(state, "allocs_per_item", r.allocations, n);
    }
    state.SetLabel("N=" + std::to_string(n) + ", maxsize 100");
}
BENCHMARK(BM_queue_1m)->Name("queue_1m")->Apply(one_shot);

// --- lock_uncontended, event_set_wait ---------------------------------------------------------
//
// One task, N times: take and give back a Lock nobody else wants (`async with lock: pass`), or
// set an Event, wait for it (already set: no suspension) and clear it. Neither should allocate.

corio::Coro<Counted> lock_uncontended_main(long n) {
    corio::Lock lock;
    start_counting_allocations();
    Stamp t0 = Stamp::now();
    for (long i = 0; i < n; ++i) {
        auto held = co_await lock.guard();
    }
    Stamp t1 = Stamp::now();
    Counted r;
    r.allocations = stop_counting_allocations();
    r.elapsed = elapsed(t0, t1);
    if (lock.locked()) throw corio::RuntimeError("lock_uncontended: the lock is still held");
    co_return r;
}

corio::Coro<Counted> event_set_wait_main(long n) {
    corio::Event ev;
    start_counting_allocations();
    Stamp t0 = Stamp::now();
    for (long i = 0; i < n; ++i) {
        ev.set();
        co_await ev.wait();
        ev.clear();
    }
    Stamp t1 = Stamp::now();
    Counted r;
    r.allocations = stop_counting_allocations();
    r.elapsed = elapsed(t0, t1);
    co_return r;
}

template <corio::Coro<Counted> (*Main)(long)>
void BM_one_task_ops(benchmark::State& state) {
    const long n = pick_n(1'000'000, 100'000);
    for (auto _ : state) {
        Counted r;
        if (!guarded(state, [&] { r = corio::run(Main(n)); })) break;
        report_per_op(state, r.elapsed, n);
        report_allocs(state, "allocs_per_op", r.allocations, n);
    }
    state.SetLabel("N=" + std::to_string(n));
}
BENCHMARK(BM_one_task_ops<lock_uncontended_main>)->Name("lock_uncontended")->Apply(one_shot);
BENCHMARK(BM_one_task_ops<event_set_wait_main>)->Name("event_set_wait")->Apply(one_shot);

// --- extras, not read by run_micro.py ---------------------------------------------------------

// Creates a batch of 1000 tasks, then gathers them; ns_per_op is per task.
corio::Coro<Elapsed> spawn_join_batch_main(long n, long batch) {
    long sum = 0;
    std::vector<corio::Task<int>> tasks;
    tasks.reserve(static_cast<std::size_t>(batch));
    Stamp t0 = Stamp::now();
    for (long done = 0; done < n; done += batch) {
        tasks.clear();
        for (long j = 0; j < batch; ++j) tasks.push_back(corio::create_task(trivial()));
        std::vector<int> results = co_await corio::gather(tasks);
        for (int v : results) sum += v;
    }
    Stamp t1 = Stamp::now();
    if (sum != n) throw corio::RuntimeError("spawn_join_batch: wrong sum of results");
    co_return elapsed(t0, t1);
}

void BM_spawn_join_batch(benchmark::State& state) {
    const long batch = 1000;
    const long n = pick_n(1'000'000, 200'000);
    for (auto _ : state) {
        Elapsed e;
        if (!guarded(state, [&] { e = corio::run(spawn_join_batch_main(n, batch)); })) break;
        report_per_op(state, e, n);
    }
    state.SetLabel("N=" + std::to_string(n) + " in batches of " + std::to_string(batch));
}
BENCHMARK(BM_spawn_join_batch)->Name("spawn_join_batch")->Apply(one_shot);

// Two tasks that each yield with sleep(0s) N times: they alternate on every pass of the loop.
// ns_per_op is per yield (2N of them).
corio::Coro<> yielder(long n) {
    for (long i = 0; i < n; ++i) co_await corio::sleep(0s);
}

corio::Coro<Elapsed> sleep_zero_main(long n) {
    Stamp t0 = Stamp::now();
    auto a = corio::create_task(yielder(n));
    auto b = corio::create_task(yielder(n));
    co_await a;
    co_await b;
    Stamp t1 = Stamp::now();
    co_return elapsed(t0, t1);
}

void BM_sleep_zero_yield(benchmark::State& state) {
    const long n = pick_n(1'000'000, 200'000);
    for (auto _ : state) {
        Elapsed e;
        if (!guarded(state, [&] { e = corio::run(sleep_zero_main(n)); })) break;
        report_per_op(state, e, 2 * n);
    }
    state.SetLabel("N=" + std::to_string(n) + " per task");
}
BENCHMARK(BM_sleep_zero_yield)->Name("sleep_zero_yield")->Apply(one_shot);

}  // namespace

BENCHMARK_MAIN();
