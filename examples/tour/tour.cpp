// The corio tour: the lessons of "How Python's asyncio event loop works", measured live.
//
// Each lesson runs in its own corio::run() (a fresh loop, as asyncio.run() gives), prints what
// it is about to show, and then the numbers it measured on this machine just now. The numbers
// vary from run to run; the shape of the output does not (examples/tour/check_tour.sh relies
// on it).
//
//   lesson 1  the loop is one thread, and waiting is cheap
//   lesson 2  a coroutine that never awaits holds the whole loop
//   lesson 3  co_await runs things one after another; create_task runs them side by side
//   lesson 4  timeouts and cancellation
//   lesson 5  what is running: current_task, all_tasks, get_coro
//   lesson 6  a bounded queue gives a pipeline back-pressure
//   lesson 7  one thread serves a thousand connections
//   lesson 8  a child process is a pair of streams
//   lesson 9  hunting the call that blocks the loop
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

namespace {

double ms(corio::Duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}
double seconds(corio::Duration d) {
    return std::chrono::duration<double>(d).count();
}
corio::TimePoint now() {
    return corio::get_running_loop().time();
}

const char* basename_of(const char* path) {
    const char* slash = std::strrchr(path, '/');
    return slash != nullptr ? slash + 1 : path;
}

// ---------------------------------------------------------------------------------------------
// Lesson 1: the loop is one thread.

corio::Coro<> sleeper(std::set<std::thread::id>& threads) {
    threads.insert(std::this_thread::get_id());
    co_await corio::sleep(1s);
    threads.insert(std::this_thread::get_id());
}

corio::Coro<> lesson1() {
    constexpr int kTasks = 10000;
    std::printf("lesson 1: the loop is one thread, and waiting is cheap\n");
    std::printf(
        "  %d tasks each co_await corio::sleep(1s) at the same time. No thread is\n"
        "  created: a waiting task is a coroutine frame with a timer in the loop's heap.\n",
        kTasks);
    std::set<std::thread::id> threads;  // every thread a task ran on
    const corio::TimePoint start = now();
    std::vector<corio::Task<>> tasks;
    tasks.reserve(kTasks);
    for (int i = 0; i < kTasks; ++i) tasks.push_back(corio::create_task(sleeper(threads)));
    co_await corio::gather(tasks);
    const double took = seconds(now() - start);
    std::printf("  %d tasks slept 1 s each; all done in %.2f s on %zu thread%s (backend: %s)\n",
                kTasks, took, threads.size(), threads.size() == 1 ? "" : "s",
                corio::get_running_loop().backend_name());
    std::printf(
        "  %d threads blocked in sleep() would need %d stacks; here one thread\n"
        "  waited for all of them at once.\n",
        kTasks, kTasks);
}

// ---------------------------------------------------------------------------------------------
// Lesson 2: a coroutine that never awaits holds the loop.

// Ticks every 100 ms and remembers the longest time between two ticks. Any gap much longer than
// 100 ms is time during which the loop could not run anything.
struct Heartbeat {
    corio::TimePoint last{};
    corio::Duration largest{};
};

corio::Coro<> heartbeat(Heartbeat& hb) {
    hb.last = now();
    for (;;) {
        co_await corio::sleep(100ms);
        const corio::TimePoint t = now();
        hb.largest = std::max(hb.largest, t - hb.last);
        hb.last = t;
    }
}

volatile std::uint64_t g_sink = 0;

// Burns CPU for `d` without ever suspending: the "while True" loop of the article.
void compute_for(corio::Duration d) {
    const auto end = corio::Clock::now() + d;
    std::uint64_t x = g_sink + 1;
    while (corio::Clock::now() < end) {
        for (int i = 0; i < 1000; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    g_sink = x;
}

corio::Coro<> nothing() {
    co_return;
}

corio::Coro<> blocking_sleep() {
    std::this_thread::sleep_for(300ms);  // the time.sleep(0.3) bug: the thread, and the loop, stop
    co_return;
}

corio::Coro<> blocking_compute() {
    compute_for(300ms);  // CPU work with no co_await: nothing else runs until it returns
    co_return;
}

corio::Coro<> polite_sleep() {
    co_await corio::sleep(300ms);  // suspends this task; the loop runs the others meanwhile
}

corio::Coro<> chunked_compute() {
    for (int chunk = 0; chunk < 30; ++chunk) {
        compute_for(10ms);
        co_await corio::sleep(0s);  // let the loop run whatever is ready, then continue
    }
}

corio::Coro<> compute_in_thread() {
    // The same 300 ms of CPU work on a thread of the loop's default pool: the loop stays free.
    co_await corio::to_thread(compute_for, corio::Duration(300ms));
}

// Runs `work` as a task next to a heartbeat; returns the heartbeat's largest gap, in ms.
corio::Coro<double> largest_gap_while(corio::Coro<> work) {
    Heartbeat hb;
    auto beat = corio::create_task(heartbeat(hb), "heartbeat");
    co_await corio::sleep(30ms);
    co_await corio::create_task(std::move(work), "worker");
    co_await corio::sleep(120ms);  // let the heartbeat tick once more after the work
    beat.cancel();
    try {
        co_await beat;
    } catch (const corio::CancelledError&) {
    }
    co_return ms(hb.largest);
}

corio::Coro<> lesson2() {
    std::printf("lesson 2: a coroutine that never awaits holds the whole loop\n");
    std::printf(
        "  A heartbeat task does co_await corio::sleep(100ms) in a loop; its largest gap\n"
        "  between ticks shows how long the loop was unable to run it.\n");
    const double normal = co_await largest_gap_while(nothing());
    std::printf(
        "  normal:  heartbeat alone                                          "
        "largest gap %6.1f ms\n",
        normal);
    const double slept = co_await largest_gap_while(blocking_sleep());
    std::printf(
        "  blocked: std::this_thread::sleep_for(300ms) (the time.sleep bug)  "
        "largest gap %6.1f ms\n",
        slept);
    const double computed = co_await largest_gap_while(blocking_compute());
    std::printf(
        "  blocked: 300 ms of CPU work with no co_await                      "
        "largest gap %6.1f ms\n",
        computed);
    const double awaited = co_await largest_gap_while(polite_sleep());
    std::printf(
        "  fixed:   co_await corio::sleep(300ms) instead                     "
        "largest gap %6.1f ms\n",
        awaited);
    const double chunked = co_await largest_gap_while(chunked_compute());
    std::printf(
        "  fixed:   the CPU work in 10 ms chunks, co_await sleep(0s) between "
        "largest gap %6.1f ms\n",
        chunked);
    const double threaded = co_await largest_gap_while(compute_in_thread());
    std::printf(
        "  fixed:   the CPU work on a thread: co_await corio::to_thread(...) "
        "largest gap %6.1f ms\n",
        threaded);
    std::printf(
        "  Switching happens only at co_await. Yielding between chunks keeps the loop\n"
        "  responsive but does not make the work cheaper: it still runs on the loop's\n"
        "  one thread. corio::to_thread runs it on another thread while the loop goes on.\n"
        "  This lesson runs in debug mode (RunOptions{.debug = true}, or CORIO_DEBUG=1):\n"
        "  the loop named each task step that held it over 100 ms, on stderr.\n");
}

// ---------------------------------------------------------------------------------------------
// Lesson 3: awaiting in sequence vs create_task.

corio::Coro<int> operation(int n) {
    co_await corio::sleep(200ms);  // stands for a 200 ms network request
    co_return n * 10;
}

corio::Coro<> lesson3() {
    std::printf(
        "lesson 3: co_await runs things one after another; create_task runs them side "
        "by side\n");
    std::printf("  Three operations of 200 ms each.\n");
    corio::TimePoint start = now();
    const int a = co_await operation(1);
    const int b = co_await operation(2);
    const int c = co_await operation(3);
    const double sequential = ms(now() - start);
    std::printf(
        "  sequential: co_await operation(n) three times        -> %6.1f ms "
        "(results %d %d %d)\n",
        sequential, a, b, c);

    start = now();
    auto t1 = corio::create_task(operation(1));
    auto t2 = corio::create_task(operation(2));
    auto t3 = corio::create_task(operation(3));
    auto [x, y, z] = co_await corio::gather(t1, t2, t3);
    const double gathered = ms(now() - start);
    std::printf(
        "  gathered:   create_task(operation(n)) x3, gather()   -> %6.1f ms "
        "(results %d %d %d)\n",
        gathered, x, y, z);
    std::printf(
        "  A Coro is lazy: operation(1) alone runs nothing. co_await runs it to the end\n"
        "  before the next line; create_task starts it now, concurrently.\n");
}

// ---------------------------------------------------------------------------------------------
// Lesson 4: timeouts and cancellation.

corio::Coro<> slow_operation(bool& saw_cancel) {
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError&) {
        saw_cancel = true;  // a real operation would close its socket here
        throw;
    }
}

corio::Coro<> worker() {
    try {
        co_await corio::sleep(10s);
    } catch (const corio::CancelledError& e) {
        std::printf(
            "  inside the task: CancelledError(\"%s\") raised at its co_await; it cleans "
            "up and re-raises\n",
            e.what());
        throw;
    }
}

corio::Coro<> download(corio::Duration d, bool& cancelled) {
    try {
        co_await corio::sleep(d);
    } catch (const corio::CancelledError&) {
        cancelled = true;
        throw;
    }
}

corio::Coro<> parse_config() {
    co_await corio::sleep(100ms);
    throw corio::ValueError("bad line 3 in config");
}

corio::Coro<> lesson4() {
    std::printf("lesson 4: timeouts and cancellation\n");

    // wait_for: a deadline on one awaitable.
    bool saw_cancel = false;
    corio::TimePoint start = now();
    try {
        co_await corio::wait_for(slow_operation(saw_cancel), 150ms);
        std::printf("  wait_for: the operation finished (unexpected)\n");
    } catch (const corio::TimeoutError&) {
        std::printf("  wait_for(slow_operation(), 150ms) -> TimeoutError after %.1f ms\n",
                    ms(now() - start));
    }
    std::printf("  the slow operation itself %s CancelledError, so it could clean up\n",
                saw_cancel ? "received" : "did NOT receive");

    // cancel(): CancelledError is raised inside the task, at the co_await it is suspended at.
    auto task = corio::create_task(worker(), "worker");
    co_await corio::sleep(50ms);
    task.cancel("stop, please");
    try {
        co_await task;
    } catch (const corio::CancelledError&) {
        std::printf("  awaiting the cancelled task raises CancelledError; task.cancelled() = %s\n",
                    task.cancelled() ? "true" : "false");
    }

    // TaskGroup: one child fails, the group cancels the others and reports the failure.
    bool a_cancelled = false;
    bool b_cancelled = false;
    start = now();
    try {
        co_await corio::task_group([&](corio::TaskGroup& tg) -> corio::Coro<> {
            tg.create_task(download(1s, a_cancelled), "download-a");
            tg.create_task(parse_config(), "parse-config");
            tg.create_task(download(1s, b_cancelled), "download-b");
            co_return;
        });
        std::printf("  task_group: finished without an error (unexpected)\n");
    } catch (const corio::ExceptionGroup&) {
        // describe() gives "Type: message", then one "  - Type: message" line per failure.
        std::string report = corio::describe(std::current_exception());
        for (std::size_t at = report.find('\n'); at != std::string::npos;
             at = report.find('\n', at + 1)) {
            report.insert(at + 1, "  ");
        }
        std::printf("  TaskGroup raised after %.1f ms: %s\n", ms(now() - start), report.c_str());
    }
    std::printf(
        "  the other children: download-a %s, download-b %s (1 s downloads, not waited "
        "for)\n",
        a_cancelled ? "cancelled" : "NOT cancelled", b_cancelled ? "cancelled" : "NOT cancelled");
}

// ---------------------------------------------------------------------------------------------
// Lesson 5: what is running.

corio::Coro<> fetch(std::string& seen_name) {
    seen_name = corio::current_task().get_name();  // asyncio.current_task().get_name()
    co_await corio::sleep(50ms);
}

corio::Coro<> lesson5() {
    std::printf("lesson 5: what is running: current_task(), all_tasks(), get_coro()\n");
    const corio::AnyTask self = corio::current_task();
    std::printf("  this lesson runs in task %s\n", self.get_name().c_str());

    std::vector<std::string> seen(3);
    std::vector<corio::Task<>> fetches;
    fetches.push_back(corio::create_task(fetch(seen[0]), "fetch-a"));
    fetches.push_back(corio::create_task(fetch(seen[1]), "fetch-b"));
    fetches.push_back(corio::create_task(fetch(seen[2]), "fetch-c"));
    co_await corio::sleep(0s);  // one pass of the loop: the fetches start and suspend

    std::vector<corio::AnyTask> tasks = corio::all_tasks();
    std::sort(tasks.begin(), tasks.end(), [](const corio::AnyTask& l, const corio::AnyTask& r) {
        return l.get_name() < r.get_name();
    });
    std::printf("  all_tasks(): %zu tasks not done\n", tasks.size());
    for (const corio::AnyTask& t : tasks) {
        const corio::SourceLocation where = t.get_coro();
        std::printf("    %-8s get_coro(): %s at %s:%u%s\n", t.get_name().c_str(), where.function,
                    basename_of(where.file), static_cast<unsigned>(where.line),
                    t == self ? "  <- current_task()" : "");
    }
    std::printf("  inside each fetch, current_task().get_name() was: %s, %s, %s\n", seen[0].c_str(),
                seen[1].c_str(), seen[2].c_str());
    co_await corio::gather(fetches);
}

// ---------------------------------------------------------------------------------------------
// Lesson 6: a bounded queue gives a pipeline back-pressure.

struct Pipeline {
    std::size_t peak = 0;         // the most records ever waiting in the queue
    double producer_ms = 0;       // how long the producer took to hand over every record
    std::vector<int> processed;   // what the workers finished, in any order
    int stopped_by_shutdown = 0;  // workers that ended on QueueShutDown
};

constexpr int kRecords = 24;

corio::Coro<> producer(corio::Queue<int>& q, Pipeline& p) {
    const corio::TimePoint start = now();
    for (int record = 0; record < kRecords; ++record) {
        co_await q.put(record);  // suspends only while the queue is full
        p.peak = std::max(p.peak, q.qsize());
    }
    p.producer_ms = ms(now() - start);
}

corio::Coro<> pipeline_worker(corio::Queue<int>& q, Pipeline& p) {
    try {
        for (;;) {
            const int record = co_await q.get();
            co_await corio::sleep(10ms);  // stands for 10 ms of work on the record
            p.processed.push_back(record);
            q.task_done();
        }
    } catch (const corio::QueueShutDown&) {
        ++p.stopped_by_shutdown;  // the queue was shut down and is empty: nothing more to do
    }
}

corio::Coro<Pipeline> run_pipeline(std::size_t maxsize) {
    corio::Queue<int> q(maxsize);
    Pipeline p;
    std::vector<corio::Task<>> workers;
    workers.push_back(corio::create_task(pipeline_worker(q, p)));
    workers.push_back(corio::create_task(pipeline_worker(q, p)));
    co_await producer(q, p);
    co_await q.join();  // every record put has been marked task_done()
    q.shutdown();       // wakes the idle workers with QueueShutDown
    co_await corio::gather(workers);
    co_return p;
}

corio::Coro<> lesson6() {
    std::printf("lesson 6: a bounded queue gives a pipeline back-pressure\n");
    std::printf("  A producer emits %d records at once; 2 workers take 10 ms per record.\n",
                kRecords);
    const Pipeline unbounded = co_await run_pipeline(0);
    const Pipeline bounded = co_await run_pipeline(4);
    for (const Pipeline* p : {&unbounded, &bounded}) {
        std::vector<int> seen = p->processed;
        std::sort(seen.begin(), seen.end());
        bool exactly_once = static_cast<int>(seen.size()) == kRecords;
        for (int i = 0; exactly_once && i < kRecords; ++i) exactly_once = seen[i] == i;
        std::printf(
            "  %-17s producer done after %6.1f ms, at most %2zu records waiting; "
            "%s; %d workers stopped by shutdown()\n",
            p == &unbounded ? "Queue<int>():" : "Queue<int>(4):", p->producer_ms, p->peak,
            exactly_once ? "every record processed once" : "records LOST or repeated",
            p->stopped_by_shutdown);
    }
    std::printf(
        "  Unbounded, put() never waits: the producer races ahead and the backlog grows with\n"
        "  the input. Bounded, put() suspends while the queue is full, so the producer runs\n"
        "  at the workers' pace and at most 4 records wait in memory.\n");
}

// ---------------------------------------------------------------------------------------------
// Lesson 7: one thread serves a thousand connections.

constexpr int kClients = 1000;

struct EchoStats {
    int open = 0;
    int most_open = 0;
    std::set<std::thread::id> threads;
};

corio::Coro<> echo_line(corio::StreamReader reader, corio::StreamWriter writer, EchoStats& s) {
    s.most_open = std::max(s.most_open, ++s.open);
    s.threads.insert(std::this_thread::get_id());
    std::string line = co_await reader.readline();
    writer.write(line);
    co_await writer.drain();
    writer.close();
    co_await writer.wait_closed();
    --s.open;
}

corio::Coro<bool> echo_client(std::uint16_t port, int id, corio::Event& go, int& connected) {
    auto [reader, writer] = co_await corio::open_connection("127.0.0.1", port);
    ++connected;
    co_await go.wait();  // every client holds its connection open until all have connected
    const std::string line = "client " + std::to_string(id) + "\n";
    writer.write(line);
    co_await writer.drain();
    const bool ok = co_await reader.readline() == line;
    writer.close();
    co_await writer.wait_closed();
    co_return ok;
}

// 2 x kClients descriptors are needed (both ends of each connection are in this process).
void allow_enough_descriptors() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    const rlim_t want = 2 * kClients + 64;
    if (limit.rlim_cur < want && (limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= want)) {
        limit.rlim_cur = want;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

corio::Coro<> lesson7() {
    std::printf("lesson 7: one thread serves a thousand connections\n");
    std::printf(
        "  An echo server and %d clients in one program: the clients connect at once, each\n"
        "  sends a line and waits for it to come back.\n",
        kClients);
    allow_enough_descriptors();
    EchoStats stats;
    corio::ClientConnected handler = [&stats](corio::StreamReader r, corio::StreamWriter w) {
        return echo_line(std::move(r), std::move(w), stats);
    };
    corio::Server server =
        co_await corio::start_server(handler, "127.0.0.1", 0, 4096, 2 * kClients);
    const std::uint16_t port = server.addresses().at(0).port();

    const corio::TimePoint start = now();
    corio::Event go;
    int connected = 0;
    std::vector<corio::Task<bool>> clients;
    for (int i = 0; i < kClients; ++i)
        clients.push_back(corio::create_task(echo_client(port, i, go, connected)));
    // Every connection is open on both sides before any client sends.
    while (connected < kClients || stats.open < kClients) co_await corio::sleep(1ms);
    go.set();
    std::vector<bool> results = co_await corio::gather(clients);
    const double took = ms(now() - start);
    const auto correct = std::count(results.begin(), results.end(), true);
    server.close();
    co_await server.wait_closed();
    std::printf(
        "  %ld of %d echoes correct in %.1f ms; the server had %d connections open at once,\n",
        static_cast<long>(correct), kClients, took, stats.most_open);
    std::printf("  all served on %zu thread(s), the same one the clients ran on\n",
                stats.threads.size());
    std::printf(
        "  Each connection is a task that waits in co_await most of the time; a waiting task\n"
        "  costs a coroutine frame and a registered descriptor, not a thread.\n");
}

// ---------------------------------------------------------------------------------------------
// Lesson 8: a child process is a pair of streams.

constexpr int kNumbers = 100000;

// Writes kNumbers pseudo-random numbers, one per line, waiting in drain() whenever the child
// falls behind, then closes the child's stdin: that end of stream is what lets sort answer.
corio::Coro<> feed_numbers(corio::StreamWriter& in) {
    std::uint32_t x = 12345;
    std::string chunk;
    for (int i = 0; i < kNumbers; ++i) {
        x = x * 1103515245u + 12345u;  // a fixed sequence: the same input every run
        chunk += std::to_string((x >> 8) % 1000000) + "\n";
        if (chunk.size() >= 4096 || i + 1 == kNumbers) {
            in.write(chunk);
            chunk.clear();
            co_await in.drain();
        }
    }
    in.close();
    co_await in.wait_closed();
}

struct SortedOutput {
    int lines = 0;
    bool sorted = true;
    long first = -1;
    long last = -1;
};

corio::Coro<SortedOutput> read_sorted(corio::StreamReader& out) {
    SortedOutput r;
    for (;;) {
        std::string line = co_await out.readline();
        if (line.empty()) break;  // end of stream
        const long v = std::stol(line);
        if (r.lines > 0 && v < r.last) r.sorted = false;
        if (r.lines == 0) r.first = v;
        r.last = v;
        ++r.lines;
    }
    co_return r;
}

corio::Coro<> lesson8() {
    std::printf("lesson 8: a child process is a pair of streams\n");
    std::printf(
        "  `sort -n` runs as a child process; one task writes %d numbers to its stdin while\n"
        "  another reads its stdout, line by line, and the loop waits for neither.\n",
        kNumbers);
    const corio::TimePoint start = now();
    corio::Process sort = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .out = corio::PIPE}, "sort", "-n");
    auto feeding = corio::create_task(feed_numbers(sort.in()));
    auto reading = corio::create_task(read_sorted(sort.out()));
    co_await feeding;
    const SortedOutput out = co_await reading;
    const int status = co_await sort.wait();
    std::printf(
        "  sort -n: %d numbers in, %d lines out, sorted: %s, from %ld to %ld; exit status %d\n",
        kNumbers, out.lines, out.sorted ? "yes" : "no", out.first, out.last, status);
    std::printf("  both sides took %.1f ms together, on the loop's one thread\n",
                ms(now() - start));

    // The shell, and what a failure looks like.
    corio::Process shell = co_await corio::create_subprocess_shell(
        "printf 'pear\\napple\\nfig\\n' | sort | head -n 1", {.out = corio::PIPE});
    auto [first, ignored] = co_await shell.communicate();
    (void)ignored;
    while (!first.empty() && first.back() == '\n') first.pop_back();
    std::printf("  a shell pipeline printed \"%s\" and exited with %d\n", first.c_str(),
                *shell.returncode());
    try {
        co_await corio::create_subprocess_exec("no-such-command");
    } catch (const corio::FileNotFoundError& e) {
        std::printf("  a missing program: FileNotFoundError: %s\n", e.what());
    }
    std::printf(
        "  The pipes are streams: write/drain and readline as on a socket, with the same\n"
        "  back-pressure. communicate() does both sides at once for you.\n");
}

// ---------------------------------------------------------------------------------------------
// Lesson 9: hunting the call that blocks the loop.

// A library call that blocks: the bug the lesson hunts.
[[gnu::noinline]] int legacy_fetch() {
    std::this_thread::sleep_for(800ms);
    return 42;
}

corio::Coro<int> checkout(bool fixed) {
    co_await corio::sleep(10ms);
    int r = fixed ? co_await corio::to_thread(legacy_fetch) : legacy_fetch();
    co_await corio::sleep(10ms);
    co_return r;
}

struct Hunt {
    std::mutex mutex;
    std::vector<std::string> watchdog;  // reports, as the watchdog thread delivered them
    std::vector<double> watchdog_ms;    // when each arrived, since the lesson started
    std::vector<std::string> debug;     // the loop's debug-mode reports
    corio::Clock::time_point start = corio::Clock::now();
};

// The first line of `text` that contains `needle`, without its indentation.
std::string line_with(const std::string& text, const std::string& needle) {
    std::size_t at = text.find(needle);
    if (at == std::string::npos) return "(not found)";
    std::size_t begin = text.rfind('\n', at);
    begin = begin == std::string::npos ? 0 : begin + 1;
    while (begin < text.size() && text[begin] == ' ') ++begin;
    return text.substr(begin, text.find('\n', at) - begin);
}

corio::Coro<> hunt(Hunt& h, bool fixed) {
    corio::get_running_loop().set_exception_handler(
        [&h](corio::EventLoop&, const corio::ExceptionContext& ctx) {
            h.debug.push_back(ctx.message);
        });
    h.start = corio::Clock::now();
    co_await corio::create_task(checkout(fixed), "checkout");
}

void lesson9() {
    std::printf("lesson 9: hunting the call that blocks the loop\n");
    std::printf(
        "  checkout() calls legacy_fetch(), which blocks for 800 ms. Debug mode and a\n"
        "  watchdog with a 300 ms threshold are on.\n");
    for (const bool fixed : {false, true}) {
        Hunt h;
        corio::WatchdogOptions watchdog{
            300ms, [&h](const std::string& report) {
                std::lock_guard lock(h.mutex);
                h.watchdog.push_back(report);
                h.watchdog_ms.push_back(ms(corio::Clock::now() - h.start));
            }};
        corio::run(hunt(h, fixed), corio::RunOptions{.debug = true, .watchdog = watchdog});
        std::lock_guard lock(h.mutex);
        if (!fixed) {
            const std::string& first = h.watchdog.empty() ? std::string() : h.watchdog.front();
            std::printf("  the watchdog, %.0f ms in, while legacy_fetch() was still blocking:\n",
                        h.watchdog_ms.empty() ? -1.0 : h.watchdog_ms.front());
            std::printf("    %s\n", line_with(first, "has not polled").c_str());
            std::printf("    %s\n", line_with(first, "running task:").c_str());
            std::printf("    native stack: %s\n", line_with(first, "legacy_fetch").c_str());
            std::printf("  debug mode, once the step was over:\n");
            for (const std::string& d : h.debug) std::printf("    %s\n", d.c_str());
        } else {
            std::printf(
                "  fixed with co_await corio::to_thread(legacy_fetch): %zu watchdog report(s), "
                "%zu debug report(s)\n",
                h.watchdog.size(), h.debug.size());
        }
    }
    std::printf(
        "  The watchdog speaks while the loop is stuck and names the task, the coroutine\n"
        "  and the native stack; debug mode names the two co_awaits the step ran between.\n"
        "  The cure: an awaitable (corio::sleep) or another thread (corio::to_thread).\n");
}

}  // namespace

int main() {
    // Line-buffered, so that whatever was printed before a crash is not lost in a pipe.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf(
        "corio tour: the lessons of \"How Python's asyncio event loop works\", measured "
        "live\n\n");

    corio::run(lesson1());
    std::printf("\n");
    corio::run(lesson2(), corio::RunOptions{.debug = true});
    std::printf("\n");
    corio::run(lesson3());
    std::printf("\n");
    corio::run(lesson4());
    std::printf("\n");
    corio::run(lesson5());
    // Outside corio::run() there is no loop, and no task.
    try {
        corio::get_running_loop();
        std::printf("  outside corio::run(): get_running_loop() returned a loop (unexpected)\n");
    } catch (const corio::RuntimeError& e) {
        std::printf(
            "  outside corio::run(): get_running_loop() raises RuntimeError(\"%s\"); "
            "current_task() is %s\n",
            e.what(), corio::current_task() ? "a task (unexpected)" : "empty");
    }
    std::printf("\n");
    corio::run(lesson6());
    std::printf("\n");
    corio::run(lesson7());
    std::printf("\n");
    corio::run(lesson8());
    std::printf("\n");
    lesson9();

    std::printf("\ntour finished\n");
    return 0;
}
