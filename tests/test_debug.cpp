// Tests for corio's debugging features: call graphs (corio/graph.hpp), the reports debug mode
// makes through the loop's exception handler (slow steps, coroutines never awaited, exceptions
// never retrieved, loop methods called from another thread), the loop's statistics
// (EventLoop::stats) and the watchdog thread.
//
// Line numbers: each coroutine below records the line of its co_await in a variable set to
// `__LINE__ + 1` on the line just before it, so the tests compare exact suspension lines. A
// coroutine's definition line differs between compilers (g++ gives the line of its closing
// brace, clang that of its opening one), so tests that look at it accept either.
//
// Timing: the slow-step and watchdog tests block the loop's thread on purpose (sleep_for, or a
// spin on steady_clock), which lasts at least as long as asked; they assert only lower bounds,
// and upper bounds that leave hundreds of milliseconds to spare.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "corio/testing.hpp"

using namespace std::chrono_literals;
using corio::EventLoop;
using corio::ExceptionContext;
using corio::LoopOptions;
using corio::WatchdogOptions;
using SteadyClock = std::chrono::steady_clock;

// Functions the watchdog must find on the loop thread's native stack: out of line, and with
// work after the blocking call so that it is not a tail call either.
[[gnu::noinline]] void corio_test_block_the_loop_thread(corio::Duration d) {
    std::this_thread::sleep_for(d);
    std::atomic_signal_fence(std::memory_order_seq_cst);
}

[[gnu::noinline]] void corio_test_spin_on_the_cpu(corio::Duration d) {
    const auto end = SteadyClock::now() + d;
    while (SteadyClock::now() < end) {
        std::atomic_signal_fence(std::memory_order_seq_cst);
    }
}

namespace {

// --- helpers -------------------------------------------------------------------------------

struct TestError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

bool starts_with(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
}

// The number that follows `prefix` in `text` (e.g. the seconds after "took "); -1 if absent.
double number_after(const std::string& text, std::string_view prefix) {
    const std::size_t at = text.find(prefix);
    if (at == std::string::npos) return -1;
    return std::strtod(text.c_str() + at + prefix.size(), nullptr);
}

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::size_t begin = 0;
    for (;;) {
        const std::size_t end = text.find('\n', begin);
        lines.push_back(text.substr(begin, end == std::string::npos ? end : end - begin));
        if (end == std::string::npos) return lines;
        begin = end + 1;
    }
}

// The last component of this file's path, as the loop's reports print it.
std::string this_file_base() {
    const std::string path = __FILE__;
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The id a call graph prints for a task: the address of its state.
std::string id_of(const corio::AnyTask& task) {
    char id[32];
    std::snprintf(id, sizeof id, "%#llx",
                  static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(task.core())));
    return id;
}

// Whether two handles refer to the same task.
bool same(const corio::AnyTask& x, const corio::AnyTask& y) {
    return x.core() == y.core();
}

// Blocks the calling thread (the loop's, when a task or callback calls it).
void block_for(corio::Duration d) {
    std::this_thread::sleep_for(d);
}

// Checks one entry of a call stack: a coroutine of this file, suspended at `line`.
void expect_frame(const corio::FrameCallGraphEntry& entry, std::string_view function,
                  std::uint32_t line) {
    EXPECT_EQ(std::string_view(entry.function), function);
    EXPECT_STREQ(entry.file, __FILE__);
    EXPECT_EQ(entry.line, line) << "in " << function;
    EXPECT_NE(entry.def_line, 0u) << "in " << function;
}

// Sets (or unsets, with nullptr) an environment variable and restores it on destruction.
class EnvGuard {
  public:
    EnvGuard(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value != nullptr) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~EnvGuard() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }
    EnvGuard(const EnvGuard&) = delete;
    EnvGuard& operator=(const EnvGuard&) = delete;

  private:
    const char* name_;
    std::optional<std::string> old_;
};

// An exception handler that keeps every context it is given.
struct Reports {
    std::vector<ExceptionContext> all;

    void install(EventLoop& loop) {
        loop.set_exception_handler(
            [this](EventLoop&, const ExceptionContext& c) { all.push_back(c); });
    }
    // The contexts whose message contains `text`.
    std::vector<ExceptionContext> with(std::string_view text) const {
        std::vector<ExceptionContext> out;
        for (const ExceptionContext& c : all) {
            if (contains(c.message, text)) out.push_back(c);
        }
        return out;
    }
    std::string messages() const {
        std::string out;
        for (const ExceptionContext& c : all) out += "\n  " + c.message;
        return out;
    }
};

// A debug-mode loop's options. Debug mode also starts the watchdog (1 s threshold), which the
// short blocking steps of these tests never reach.
LoopOptions debug_mode(bool on) {
    return LoopOptions{.debug = on};
}

// Collects the watchdog's reports (made on its thread) with the time each arrived.
struct WatchdogLog {
    struct Entry {
        SteadyClock::time_point at;
        std::string text;
    };
    std::mutex mutex;
    std::vector<Entry> entries;

    WatchdogOptions options(corio::Duration threshold) {
        return WatchdogOptions{.threshold = threshold, .report = [this](const std::string& text) {
                                   const auto now = SteadyClock::now();
                                   std::lock_guard lock(mutex);
                                   entries.push_back(Entry{now, text});
                               }};
    }
    // Call once the watchdog is stopped (set_watchdog(nullopt) or the loop destroyed): its last
    // report, the end of a stall, may come just after run_until_complete() returns.
    std::vector<Entry> taken() {
        std::lock_guard lock(mutex);
        return entries;
    }
};

constexpr std::string_view kStallReport = "corio watchdog: the event loop has not polled for ";
constexpr std::string_view kEndReport =
    "corio watchdog: the event loop polled again after a stall of ";

// Writes what is written to stderr meanwhile into a temporary file.
class StderrCapture {
  public:
    StderrCapture() : file_(std::tmpfile()) {
        std::fflush(stderr);
        saved_ = ::dup(2);
        ::dup2(::fileno(file_), 2);
    }
    ~StderrCapture() {
        restore();
        std::fclose(file_);
    }
    StderrCapture(const StderrCapture&) = delete;
    StderrCapture& operator=(const StderrCapture&) = delete;

    std::string finish() {
        restore();
        std::string text;
        std::rewind(file_);
        char buf[4096];
        std::size_t n = 0;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) text.append(buf, n);
        return text;
    }

  private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        saved_ = -1;
    }
    std::FILE* file_;
    int saved_ = -1;
};

std::string read_all(std::FILE* f) {
    std::string text;
    std::rewind(f);
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    return text;
}

// --- coroutines with known co_await lines ----------------------------------------------------

// The lines of co_awaits, recorded by the coroutines as they run.
struct Lines {
    std::uint32_t a = 0;
    std::uint32_t b = 0;
    std::uint32_t c = 0;
};

corio::Coro<> wait_for_event(corio::Event& go) {
    co_await go.wait();
}

// Three nested coroutines: nest1 awaits nest2, which awaits nest3, which waits for `go`.
corio::Coro<> nest3(corio::Event& go, Lines& l) {
    l.c = __LINE__ + 1;
    co_await go.wait();
}

corio::Coro<> nest2(corio::Event& go, Lines& l) {
    l.b = __LINE__ + 1;
    co_await nest3(go, l);
}

corio::Coro<> nest1(corio::Event& go, Lines& l) {
    l.a = __LINE__ + 1;
    co_await nest2(go, l);
}

corio::Coro<> awaits_task(corio::Task<> target, std::uint32_t& line) {
    line = __LINE__ + 1;
    co_await target;
}

// Awaits `target` one coroutine down: a waiter with a chain of two.
corio::Coro<> awaits_through(corio::Task<> target, Lines& l) {
    l.b = __LINE__ + 1;
    co_await awaits_task(target, l.a);
}

// Waits one pass, then awaits `target`: it starts waiting after a waiter created later.
corio::Coro<> awaits_task_later(corio::Task<> target, std::uint32_t& line) {
    co_await corio::sleep(0s);
    line = __LINE__ + 1;
    co_await target;
}

corio::Coro<> gathers(corio::Task<> x, corio::Task<> y, std::uint32_t& line) {
    line = __LINE__ + 1;
    co_await corio::gather(x, y);
}

corio::Coro<> runs_a_group(corio::Event& go, corio::AnyTask& child, std::uint32_t& line) {
    auto body = [&](corio::TaskGroup& tg) -> corio::Coro<> {
        child = tg.create_task(wait_for_event(go), "child");
        co_return;
    };
    line = __LINE__ + 1;
    co_await corio::task_group(body);
}

// Half of a deadlock: awaits the task in `*other` (set once both exist).
corio::Coro<> awaits_the_other(const corio::Task<>* other, std::uint32_t& line) {
    co_await corio::sleep(0s);
    line = __LINE__ + 1;
    co_await *other;
}

// The other half: waits for `*other` too, or for `*gate`, which ends the deadlock.
corio::Coro<> awaits_the_other_or_gate(const corio::Task<>* other, const corio::Task<>* gate,
                                       std::uint32_t& line) {
    co_await corio::sleep(0s);
    std::vector<corio::Task<>> either{*other, *gate};
    line = __LINE__ + 1;
    co_await corio::wait(std::move(either), corio::FIRST_COMPLETED);
}

// One side of a deadlock through events: waits for `mine`, and only then would set `theirs`.
corio::Coro<> waits_then_sets(corio::Event& mine, corio::Event& theirs) {
    co_await mine.wait();
    theirs.set();
}

corio::Coro<> returns_at_once() {
    co_return;
}

corio::Coro<std::optional<corio::FutureCallGraph>> graph_from_a_nested_coroutine(
    std::uint32_t& line) {
    co_await corio::sleep(0s);
    line = __LINE__ + 1;
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph();
    co_return g;
}

// A plain function (not a coroutine) that captures the running task's graph.
std::optional<corio::FutureCallGraph> graph_from_a_plain_function() {
    return corio::capture_call_graph();
}

// =============================================================================================
// Call graphs
// =============================================================================================

CORIO_TEST(CallGraph, ListsTheNestedCoroutinesInnermostFirstWithTheirCoAwaitLines) {
    corio::Event go;
    Lines l;
    corio::Task<> t = corio::create_task(nest1(go, l), "nested");
    co_await corio::sleep(0s);  // it runs up to go.wait()
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(t);
    CORIO_ASSERT(g.has_value());
    EXPECT_TRUE(same(g->task, t));
    EXPECT_EQ(g->task.get_name(), "nested");
    CORIO_ASSERT(g->call_stack.size() == 3);
    expect_frame(g->call_stack[0], "nest3", l.c);
    expect_frame(g->call_stack[1], "nest2", l.b);
    expect_frame(g->call_stack[2], "nest1", l.a);
    // The definition: the line of the opening brace (clang) or the closing one (g++).
    const std::uint32_t def = g->call_stack[0].def_line;
    EXPECT_TRUE(def == l.c - 2 || def == l.c + 1) << def;
    EXPECT_TRUE(g->awaited_by.empty());
    go.set();
    co_await t;
}

CORIO_TEST(CallGraph, ATaskThatHasNotStartedShowsItsCoroutineAtItsDefinition) {
    corio::Event go;
    Lines l;
    corio::Task<> t = corio::create_task(nest1(go, l), "fresh");
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(t);
    CORIO_ASSERT(g.has_value());
    CORIO_ASSERT(g->call_stack.size() == 1);
    EXPECT_STREQ(g->call_stack[0].function, "nest1");
    EXPECT_EQ(g->call_stack[0].line, g->call_stack[0].def_line);
    go.set();
    co_await t;
}

CORIO_TEST(CallGraph, LimitKeepsTheInnermostEntries) {
    corio::Event go;
    Lines l;
    corio::Task<> t = corio::create_task(nest1(go, l), "nested");
    co_await corio::sleep(0s);
    std::optional<corio::FutureCallGraph> two = corio::capture_call_graph(t, 2);
    CORIO_ASSERT(two.has_value());
    CORIO_ASSERT(two->call_stack.size() == 2);
    expect_frame(two->call_stack[0], "nest3", l.c);
    expect_frame(two->call_stack[1], "nest2", l.b);
    std::optional<corio::FutureCallGraph> one = corio::capture_call_graph(t, 1);
    CORIO_ASSERT(one.has_value());
    CORIO_ASSERT(one->call_stack.size() == 1);
    expect_frame(one->call_stack[0], "nest3", l.c);
    std::optional<corio::FutureCallGraph> more = corio::capture_call_graph(t, 10);
    CORIO_ASSERT(more.has_value());
    EXPECT_EQ(more->call_stack.size(), 3u);
    std::optional<corio::FutureCallGraph> none = corio::capture_call_graph(t, 0);
    CORIO_ASSERT(none.has_value());
    EXPECT_TRUE(none->call_stack.empty());
    go.set();
    co_await t;
}

CORIO_TEST(CallGraph, ADoneTaskHasAnEmptyCallStack) {
    corio::Task<> t = corio::create_task(returns_at_once(), "finished");
    co_await t;
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(t);
    CORIO_ASSERT(g.has_value());
    EXPECT_TRUE(g->call_stack.empty());
    EXPECT_TRUE(g->awaited_by.empty());
    EXPECT_EQ(corio::format_call_graph(*g), "* Task(name='finished', id=" + id_of(t) + ")");
}

TEST(CallGraph, AnEmptyHandleGivesNothing) {
    EXPECT_FALSE(corio::capture_call_graph(corio::AnyTask()).has_value());
    EXPECT_EQ(corio::format_call_graph(corio::AnyTask()), "");
}

TEST(CallGraph, CapturingTheCurrentTaskOutsideATaskGivesNothing) {
    EXPECT_FALSE(corio::capture_call_graph().has_value());
    // Nor in a callback of a running loop: no task runs there.
    EventLoop loop;
    bool ran = false;
    bool captured = true;
    loop.call_soon([&] {
        ran = true;
        captured = corio::capture_call_graph().has_value();
        loop.stop();
    });
    loop.run_forever();
    EXPECT_TRUE(ran);
    EXPECT_FALSE(captured);
}

CORIO_TEST(CallGraph, CapturingTheCurrentTaskPutsTheLineOfTheCallOnTheInnermostEntry) {
    co_await corio::sleep(0s);
    const std::uint32_t line = __LINE__ + 1;
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph();
    CORIO_ASSERT(g.has_value());
    EXPECT_TRUE(same(g->task, corio::current_task()));
    EXPECT_EQ(g->task.get_name(), "test body");
    CORIO_ASSERT(g->call_stack.size() == 1);
    expect_frame(g->call_stack[0],
                 "corio_test_body_CallGraph_"
                 "CapturingTheCurrentTaskPutsTheLineOfTheCallOnTheInnermostEntry",
                 line);
}

CORIO_TEST(CallGraph, CapturingFromANestedCoroutineGivesItsLineAndTheCoAwaitsAboveIt) {
    std::uint32_t inner = 0;
    const std::uint32_t outer = __LINE__ + 1;
    std::optional<corio::FutureCallGraph> g = co_await graph_from_a_nested_coroutine(inner);
    CORIO_ASSERT(g.has_value());
    CORIO_ASSERT(g->call_stack.size() == 2);
    expect_frame(g->call_stack[0], "graph_from_a_nested_coroutine", inner);
    expect_frame(g->call_stack[1],
                 "corio_test_body_CallGraph_"
                 "CapturingFromANestedCoroutineGivesItsLineAndTheCoAwaitsAboveIt",
                 outer);
}

CORIO_TEST(CallGraph, CapturingFromAPlainFunctionKeepsTheCoroutinesLastCoAwait) {
    // The innermost coroutine is the one that called the function; the function's line is not
    // in it, so the entry keeps the line of the coroutine's latest co_await.
    const std::uint32_t line = __LINE__ + 1;
    co_await corio::sleep(0s);
    std::optional<corio::FutureCallGraph> g = graph_from_a_plain_function();
    CORIO_ASSERT(g.has_value());
    CORIO_ASSERT(g->call_stack.size() == 1);
    EXPECT_EQ(g->call_stack[0].line, line);
}

CORIO_TEST(CallGraph, ATaskAwaitedByAnotherListsItWithItsOwnChain) {
    corio::Event go;
    Lines inner_lines;
    Lines waiter_lines;
    corio::Task<> inner = corio::create_task(nest1(go, inner_lines), "inner");
    corio::Task<> waiter = corio::create_task(awaits_through(inner, waiter_lines), "waiter");
    co_await corio::sleep(0s);
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(inner);
    CORIO_ASSERT(g.has_value());
    EXPECT_EQ(g->call_stack.size(), 3u);
    CORIO_ASSERT(g->awaited_by.size() == 1);
    const corio::FutureCallGraph& w = g->awaited_by[0];
    EXPECT_TRUE(same(w.task, waiter));
    CORIO_ASSERT(w.call_stack.size() == 2);
    expect_frame(w.call_stack[0], "awaits_task", waiter_lines.a);
    expect_frame(w.call_stack[1], "awaits_through", waiter_lines.b);
    EXPECT_TRUE(w.awaited_by.empty());
    // The limit applies to the waiters' call stacks too.
    std::optional<corio::FutureCallGraph> limited = corio::capture_call_graph(inner, 1);
    CORIO_ASSERT(limited.has_value() && limited->awaited_by.size() == 1);
    EXPECT_EQ(limited->call_stack.size(), 1u);
    CORIO_ASSERT(limited->awaited_by[0].call_stack.size() == 1);
    expect_frame(limited->awaited_by[0].call_stack[0], "awaits_task", waiter_lines.a);
    go.set();
    co_await waiter;
    co_await inner;
}

CORIO_TEST(CallGraph, ATaskAwaitedByGatherListsTheGatheringTask) {
    corio::Event go;
    corio::Task<> x = corio::create_task(wait_for_event(go), "x");
    corio::Task<> y = corio::create_task(wait_for_event(go), "y");
    std::uint32_t line = 0;
    corio::Task<> gatherer = corio::create_task(gathers(x, y, line), "gatherer");
    co_await corio::sleep(0s);
    for (const corio::Task<>* t : {&x, &y}) {
        std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(*t);
        CORIO_ASSERT(g.has_value());
        CORIO_ASSERT(g->awaited_by.size() == 1);
        const corio::FutureCallGraph& w = g->awaited_by[0];
        EXPECT_TRUE(same(w.task, gatherer));
        // Innermost, gather's own coroutine; outermost, the task's, at its co_await.
        CORIO_ASSERT(w.call_stack.size() >= 2);
        expect_frame(w.call_stack.back(), "gathers", line);
    }
    go.set();
    co_await gatherer;
}

CORIO_TEST(CallGraph, ATaskWaitingTwiceOnTheSameTaskIsListedOnce) {
    corio::Event go;
    corio::Task<> x = corio::create_task(wait_for_event(go), "x");
    std::uint32_t line = 0;
    corio::Task<> gatherer = corio::create_task(gathers(x, x, line), "gatherer");
    co_await corio::sleep(0s);
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(x);
    CORIO_ASSERT(g.has_value());
    CORIO_ASSERT(g->awaited_by.size() == 1);
    EXPECT_TRUE(same(g->awaited_by[0].task, gatherer));
    go.set();
    co_await gatherer;
}

CORIO_TEST(CallGraph, TwoTasksAwaitingTheSameTaskAreListedOldestWaiterFirst) {
    corio::Event go;
    corio::Task<> inner = corio::create_task(wait_for_event(go), "inner");
    // Created first, but starts waiting one pass after the other.
    std::uint32_t late_line = 0;
    std::uint32_t early_line = 0;
    corio::Task<> late = corio::create_task(awaits_task_later(inner, late_line), "late");
    corio::Task<> early = corio::create_task(awaits_task(inner, early_line), "early");
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(inner);
    CORIO_ASSERT(g.has_value());
    CORIO_ASSERT(g->awaited_by.size() == 2);
    EXPECT_TRUE(same(g->awaited_by[0].task, early)) << g->awaited_by[0].task.get_name();
    EXPECT_TRUE(same(g->awaited_by[1].task, late)) << g->awaited_by[1].task.get_name();
    CORIO_ASSERT(g->awaited_by[0].call_stack.size() == 1);
    CORIO_ASSERT(g->awaited_by[1].call_stack.size() == 1);
    expect_frame(g->awaited_by[0].call_stack[0], "awaits_task", early_line);
    expect_frame(g->awaited_by[1].call_stack[0], "awaits_task_later", late_line);
    go.set();
    co_await late;
    co_await early;
}

CORIO_TEST(CallGraph, ATaskGroupChildListsTheTaskThatRunsTheGroup) {
    corio::Event go;
    corio::AnyTask child;
    std::uint32_t line = 0;
    corio::Task<> parent = corio::create_task(runs_a_group(go, child, line), "parent");
    co_await corio::sleep(0s);
    CORIO_ASSERT(static_cast<bool>(child));
    EXPECT_EQ(child.get_name(), "child");
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(child);
    CORIO_ASSERT(g.has_value());
    CORIO_ASSERT(g->awaited_by.size() == 1);
    const corio::FutureCallGraph& p = g->awaited_by[0];
    EXPECT_TRUE(same(p.task, parent));
    // Innermost, the group's exit; outermost, the parent's co_await of task_group().
    CORIO_ASSERT(!p.call_stack.empty());
    expect_frame(p.call_stack.back(), "runs_a_group", line);
    go.set();
    co_await parent;
}

CORIO_TEST(CallGraph, TwoTasksAwaitingEachOtherByCoAwaitAndWaitDoNotMakeItRecurseForever) {
    corio::Task<> a;
    corio::Task<> b;
    corio::Event open_gate;
    corio::Task<> gate = corio::create_task(wait_for_event(open_gate), "gate");
    std::uint32_t a_line = 0;
    std::uint32_t b_line = 0;
    a = corio::create_task(awaits_the_other(&b, a_line), "a");
    b = corio::create_task(awaits_the_other_or_gate(&a, &gate, b_line), "b");
    co_await corio::sleep(0s);
    co_await corio::sleep(0s);
    // a awaits b (co_await), b awaits a (wait()): each lists the other, once.
    std::optional<corio::FutureCallGraph> ga = corio::capture_call_graph(a);
    CORIO_ASSERT(ga.has_value());
    CORIO_ASSERT(ga->awaited_by.size() == 1);
    EXPECT_TRUE(same(ga->awaited_by[0].task, b));
    EXPECT_TRUE(ga->awaited_by[0].awaited_by.empty());
    CORIO_ASSERT(!ga->awaited_by[0].call_stack.empty());
    expect_frame(ga->awaited_by[0].call_stack.back(), "awaits_the_other_or_gate", b_line);
    std::optional<corio::FutureCallGraph> gb = corio::capture_call_graph(b);
    CORIO_ASSERT(gb.has_value());
    CORIO_ASSERT(gb->awaited_by.size() == 1);
    EXPECT_TRUE(same(gb->awaited_by[0].task, a));
    EXPECT_TRUE(gb->awaited_by[0].awaited_by.empty());
    CORIO_ASSERT(gb->awaited_by[0].call_stack.size() == 1);
    expect_frame(gb->awaited_by[0].call_stack[0], "awaits_the_other", a_line);
    const std::string text = corio::format_call_graph(a);
    EXPECT_TRUE(contains(text, "* Task(name='a'")) << text;
    EXPECT_TRUE(contains(text, "* Task(name='b'")) << text;
    // The gate ends b's wait; then a's await of b completes.
    open_gate.set();
    co_await b;
    co_await a;
    co_await gate;
}

TEST(CallGraph, TwoTasksAwaitingEachOtherDirectlyDoNotMakeItRecurseForever) {
    // Both by co_await: nothing but closing the loop ends this one (cancelling either task
    // would forward the cancellation around the cycle forever; see the report).
    EventLoop loop;
    Reports reports;
    reports.install(loop);
    corio::Task<> a;
    corio::Task<> b;
    std::uint32_t a_line = 0;
    std::uint32_t b_line = 0;
    std::optional<corio::FutureCallGraph> ga;
    std::optional<corio::FutureCallGraph> gb;
    std::string text;
    auto body = [&]() -> corio::Coro<> {
        a = corio::create_task(awaits_the_other(&b, a_line), "a");
        b = corio::create_task(awaits_the_other(&a, b_line), "b");
        co_await corio::sleep(0s);
        co_await corio::sleep(0s);
        ga = corio::capture_call_graph(a);
        gb = corio::capture_call_graph(b);
        text = corio::format_call_graph(a);
    };
    loop.run_until_complete(body());
    ASSERT_TRUE(ga.has_value());
    ASSERT_EQ(ga->awaited_by.size(), 1u);
    EXPECT_TRUE(same(ga->awaited_by[0].task, b));
    EXPECT_TRUE(ga->awaited_by[0].awaited_by.empty());
    ASSERT_EQ(ga->awaited_by[0].call_stack.size(), 1u);
    expect_frame(ga->awaited_by[0].call_stack[0], "awaits_the_other", b_line);
    ASSERT_TRUE(gb.has_value());
    ASSERT_EQ(gb->awaited_by.size(), 1u);
    EXPECT_TRUE(same(gb->awaited_by[0].task, a));
    EXPECT_TRUE(gb->awaited_by[0].awaited_by.empty());
    ASSERT_EQ(gb->awaited_by[0].call_stack.size(), 1u);
    expect_frame(gb->awaited_by[0].call_stack[0], "awaits_the_other", a_line);
    EXPECT_EQ(split_lines(text).size(), 7u) << text;
    ga.reset();
    gb.reset();
    loop.close();
    EXPECT_EQ(reports.with("Task was destroyed but it is pending").size(), 2u)
        << reports.messages();
}

CORIO_TEST(CallGraph, TwoTasksDeadlockedThroughEventsAreNotAwaitedByEachOther) {
    // Each waits for an event only the other would set: no task awaits a task.
    corio::Event for_a;
    corio::Event for_b;
    corio::Task<> a = corio::create_task(waits_then_sets(for_a, for_b), "a");
    corio::Task<> b = corio::create_task(waits_then_sets(for_b, for_a), "b");
    co_await corio::sleep(0s);
    for (const corio::Task<>* t : {&a, &b}) {
        std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(*t);
        CORIO_ASSERT(g.has_value());
        EXPECT_EQ(g->call_stack.size(), 1u);
        EXPECT_TRUE(g->awaited_by.empty());
    }
    for_a.set();
    co_await a;
    co_await b;
}

CORIO_TEST(CallGraph, FormatCallGraphLaysItOutAsAsyncioDoes) {
    corio::Event go;
    Lines inner_lines;
    Lines waiter_lines;
    std::uint32_t top_line = 0;
    corio::Task<> inner = corio::create_task(nest1(go, inner_lines), "inner");
    corio::Task<> waiter = corio::create_task(awaits_through(inner, waiter_lines), "waiter");
    corio::Task<> top = corio::create_task(awaits_task(waiter, top_line), "top");
    co_await corio::sleep(0s);
    const std::string file = __FILE__;
    auto frame = [&](std::string_view indent, std::uint32_t line, std::string_view function) {
        return std::string(indent) + "|   File '" + file + "', line " + std::to_string(line) +
               ", in async " + std::string(function) + "()";
    };
    const std::vector<std::string> expected = {
        "* Task(name='inner', id=" + id_of(inner) + ")",
        "  + Call stack:",
        frame("  ", inner_lines.c, "nest3"),
        frame("  ", inner_lines.b, "nest2"),
        frame("  ", inner_lines.a, "nest1"),
        "  + Awaited by:",
        "    * Task(name='waiter', id=" + id_of(waiter) + ")",
        "      + Call stack:",
        frame("      ", waiter_lines.a, "awaits_task"),
        frame("      ", waiter_lines.b, "awaits_through"),
        "      + Awaited by:",
        "        * Task(name='top', id=" + id_of(top) + ")",
        "          + Call stack:",
        frame("          ", top_line, "awaits_task"),
    };
    const std::string text = corio::format_call_graph(inner);
    EXPECT_EQ(split_lines(text), expected);
    EXPECT_FALSE(text.empty() || text.back() == '\n');
    // The same from a captured graph.
    std::optional<corio::FutureCallGraph> g = corio::capture_call_graph(inner);
    CORIO_ASSERT(g.has_value());
    EXPECT_EQ(corio::format_call_graph(*g), text);
    go.set();
    co_await top;
}

CORIO_TEST(CallGraph, PrintCallGraphWritesTheFormattedGraphAndANewline) {
    corio::Event go;
    Lines l;
    std::uint32_t waiter_line = 0;
    corio::Task<> inner = corio::create_task(nest1(go, l), "inner");
    corio::Task<> waiter = corio::create_task(awaits_task(inner, waiter_line), "waiter");
    co_await corio::sleep(0s);
    std::FILE* f = std::tmpfile();
    CORIO_ASSERT(f != nullptr);
    corio::print_call_graph(inner, f);
    const std::string printed = read_all(f);
    std::fclose(f);
    EXPECT_EQ(printed, corio::format_call_graph(inner) + "\n");
    // With a limit.
    f = std::tmpfile();
    CORIO_ASSERT(f != nullptr);
    corio::print_call_graph(inner, f, 1);
    const std::string limited = read_all(f);
    std::fclose(f);
    EXPECT_EQ(limited, corio::format_call_graph(inner, 1) + "\n");
    EXPECT_EQ(split_lines(limited).size(), 8u) << limited;  // 4 + 3 lines, and the newline
    // The running task's graph, at the line of the call.
    f = std::tmpfile();
    CORIO_ASSERT(f != nullptr);
    const std::uint32_t line = __LINE__ + 1;
    corio::print_call_graph(f);
    const std::string current = read_all(f);
    std::fclose(f);
    // (The harness's own wrapper task awaits the body: an "Awaited by" part follows.)
    const std::vector<std::string> lines = split_lines(current);
    CORIO_ASSERT(lines.size() >= 4);
    EXPECT_EQ(lines[0], "* Task(name='test body', id=" + id_of(corio::current_task()) + ")");
    EXPECT_EQ(lines[1], "  + Call stack:");
    EXPECT_TRUE(contains(lines[2], "', line " + std::to_string(line) + ", in async ")) << lines[2];
    EXPECT_EQ(lines.back(), "");
    EXPECT_NE(lines[lines.size() - 2], "");
    go.set();
    co_await waiter;
}

// =============================================================================================
// Debug-mode reports
// =============================================================================================

corio::Coro<> blocks_between_two_awaits(Lines& l) {
    l.a = __LINE__ + 1;
    co_await corio::sleep(0s);
    block_for(80ms);
    l.b = __LINE__ + 1;
    co_await corio::sleep(0s);
}

corio::Coro<> blocks_before_its_first_await(Lines& l) {
    block_for(80ms);
    l.a = __LINE__ + 1;
    co_await corio::sleep(0s);
}

corio::Coro<> blocks_after_its_last_await(Lines& l) {
    l.a = __LINE__ + 1;
    co_await corio::sleep(0s);
    block_for(80ms);
}

// Steps from one of its own co_awaits into a coroutine that blocks, then suspends in it.
corio::Coro<> steps_into_a_blocking_coroutine(Lines& l) {
    l.b = __LINE__ + 1;
    co_await corio::sleep(0s);
    co_await blocks_before_its_first_await(l);
}

corio::Coro<> yields(int times) {
    for (int i = 0; i < times; ++i) co_await corio::sleep(0s);
}

// --- resources dropped without being closed -------------------------------------------------

// A stream writer dropped open, a process dropped while its child runs, a datagram endpoint
// dropped open: each is reported in debug mode, naming the task that dropped it; closed ones are
// not, and nothing is reported with debug mode off.
corio::Coro<> drops_resources(bool close_them) {
    corio::Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(corio::SocketAddress::ip("127.0.0.1", 0));
    listener.listen();
    {
        auto [reader, writer] =
            co_await corio::open_connection("127.0.0.1", listener.getsockname().port());
        auto accepted = co_await corio::sock_accept(listener);
        (void)accepted;
        if (close_them) {
            writer.close();
            co_await writer.wait_closed();
        }
    }
    {
        corio::Process p = co_await corio::create_subprocess_exec("sleep", "30");
        if (close_them) {
            p.kill();
            co_await p.wait();
        }
    }
    {
        corio::DatagramOptions options{.local_addr = {{"127.0.0.1", 0}}};
        corio::DatagramEndpoint e = co_await corio::create_datagram_endpoint(options);
        if (close_them) e.close();
    }
    {
        corio::ClientConnected ignore = [](corio::StreamReader,
                                           corio::StreamWriter w) -> corio::Coro<> {
            w.close();
            co_return;
        };
        corio::Server server = co_await corio::start_server(ignore, "127.0.0.1", 0);
        if (close_them) {
            server.close();
            co_await server.wait_closed();
        }
    }
    // The killed child is reaped before the loop closes.
    co_await corio::sleep(100ms);
}

TEST(DebugReports, ResourcesDroppedWithoutCloseAreReportedWithTheTaskThatDroppedThem) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    loop.run_until_complete(loop.create_task(drops_resources(false), "dropper"));
    for (const char* what :
         {"unclosed StreamWriter to 127.0.0.1:", "unclosed Process (pid ",
          "unclosed DatagramEndpoint on 127.0.0.1:", "unclosed Server on 127.0.0.1:"}) {
        const auto found = reports.with(what);
        ASSERT_EQ(found.size(), 1u) << what << reports.messages();
        EXPECT_EQ(found[0].task, "dropper");
        EXPECT_EQ(std::string_view(found[0].coroutine.function), "drops_resources");
        EXPECT_TRUE(contains(found[0].location.file, "test_debug.cpp")) << found[0].location.file;
        EXPECT_TRUE(contains(found[0].call_graph, "* Task(name='dropper'")) << found[0].call_graph;
    }
    EXPECT_EQ(reports.all.size(), 4u) << reports.messages();
}

TEST(DebugReports, ClosedResourcesAreNotReported) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    loop.run_until_complete(loop.create_task(drops_resources(true), "closer"));
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

TEST(DebugReports, DroppedResourcesAreNotReportedWithDebugModeOff) {
    EventLoop loop(debug_mode(false));
    Reports reports;
    reports.install(loop);
    loop.run_until_complete(loop.create_task(drops_resources(false), "dropper"));
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

// --- sockets still open when their loop closes ----------------------------------------------

// A Socket closes itself when destroyed, so dropping one is no mistake; one that is never
// destroyed (leaked, or kept past its loop) is reported when the loop closes.
struct KeptSockets {
    std::optional<corio::Socket> listener;
    std::optional<corio::Socket> accepted;
    std::uint32_t listener_line = 0;
    std::uint32_t accept_line = 0;
};

corio::Coro<> keeps_sockets(KeptSockets& kept) {
    kept.listener_line = __LINE__ + 1;
    corio::Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(corio::SocketAddress::ip("127.0.0.1", 0));
    listener.listen();
    kept.listener = std::move(listener);
    corio::Socket client(AF_INET, SOCK_STREAM);  // closed by going out of scope: not reported
    co_await corio::sock_connect(client, kept.listener->getsockname());
    kept.accept_line = __LINE__ + 1;
    kept.accepted = (co_await corio::sock_accept(*kept.listener)).first;
    corio::Socket closed(AF_INET, SOCK_DGRAM);
    closed.close();
    corio::Socket detached(AF_INET, SOCK_DGRAM);
    ::close(detached.detach());
}

TEST(DebugReports, SocketsStillOpenWhenTheLoopClosesAreReportedWithTheTaskThatCreatedThem) {
    KeptSockets kept;
    corio::Socket outside(AF_INET, SOCK_STREAM);  // created with no loop running: not tracked
    Reports reports;
    {
        EventLoop loop(debug_mode(true));
        reports.install(loop);
        loop.run_until_complete(loop.create_task(keeps_sockets(kept), "keeper"));
        EXPECT_TRUE(reports.with("unclosed Socket").empty()) << "reported before the loop closed";
        loop.close();
    }
    const std::string port = std::to_string(kept.listener->getsockname().port());
    const auto found = reports.with("unclosed Socket");
    ASSERT_EQ(found.size(), 2u) << reports.messages();
    const std::string suffix = ": still open when its event loop closed";
    // Sorted by descriptor: the listener was created first.
    EXPECT_EQ(found[0].message, "unclosed Socket fd=" + std::to_string(kept.listener->fileno()) +
                                    " AF_INET SOCK_STREAM laddr=127.0.0.1:" + port + suffix);
    EXPECT_EQ(found[0].location.line, kept.listener_line);
    EXPECT_TRUE(contains(found[0].location.file, "test_debug.cpp")) << found[0].location.file;
    // accept() makes its socket inside the library: the location is the user's co_await.
    EXPECT_TRUE(starts_with(
        found[1].message, "unclosed Socket fd=" + std::to_string(kept.accepted->fileno()) +
                              " AF_INET SOCK_STREAM laddr=127.0.0.1:" + port + " raddr=127.0.0.1:"))
        << found[1].message;
    EXPECT_TRUE(found[1].message.ends_with(suffix)) << found[1].message;
    EXPECT_TRUE(contains(found[1].location.file, "test_debug.cpp")) << found[1].location.file;
    EXPECT_EQ(found[1].location.line, kept.accept_line);
    for (const ExceptionContext& c : found) {
        EXPECT_EQ(c.task, "keeper");
        EXPECT_EQ(std::string_view(c.coroutine.function), "keeps_sockets");
    }
    EXPECT_EQ(reports.all.size(), 2u) << reports.messages();
}

TEST(DebugReports, SocketsStillOpenWhenTheLoopClosesAreNotReportedWithDebugModeOff) {
    KeptSockets kept;
    EventLoop loop(debug_mode(false));
    Reports reports;
    reports.install(loop);
    loop.run_until_complete(loop.create_task(keeps_sockets(kept), "keeper"));
    loop.close();
    EXPECT_TRUE(kept.listener && *kept.listener);
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

TEST(DebugReports, ASocketOutlivingOneLoopIsNotReportedByAnother) {
    KeptSockets kept;
    EventLoop first(debug_mode(true));
    Reports first_reports, second_reports;
    first_reports.install(first);
    first.run_until_complete(first.create_task(keeps_sockets(kept), "keeper"));
    {
        EventLoop second(debug_mode(true));
        second_reports.install(second);
        auto other = []() -> corio::Coro<> { co_await corio::sleep(0s); };
        second.run_until_complete(second.create_task(other(), "other"));
        second.close();
    }
    EXPECT_TRUE(second_reports.all.empty()) << second_reports.messages();
    // Closed before their loop closes: not reported by it either.
    kept.listener.reset();
    kept.accepted.reset();
    first.close();
    EXPECT_TRUE(first_reports.all.empty()) << first_reports.messages();
}

TEST(DebugReports, ASlowStepNamesTheTaskAndTheTwoCoAwaitsItRanBetween) {
    EventLoop loop(debug_mode(true));
    loop.slow_callback_duration = 50ms;
    Reports reports;
    reports.install(loop);
    Lines l;
    corio::Task<> t = loop.create_task(blocks_between_two_awaits(l), "slowpoke");
    loop.run_until_complete(t);
    const std::string base = this_file_base();
    const std::string span = "(from " + base + ":" + std::to_string(l.a) +
                             " in blocks_between_two_awaits() to " + base + ":" +
                             std::to_string(l.b) + " in blocks_between_two_awaits())";
    // Only the blocking step matters here (a fast step delayed by a loaded machine could be
    // reported too, and is not looked at).
    const std::vector<ExceptionContext> found = reports.with(span);
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    const ExceptionContext& c = found[0];
    EXPECT_TRUE(starts_with(c.message, "Executing task slowpoke took ")) << c.message;
    EXPECT_TRUE(c.message.ends_with(" seconds " + span)) << c.message;
    EXPECT_GE(number_after(c.message, "took "), 0.079) << c.message;
    EXPECT_EQ(c.task, "slowpoke");
    EXPECT_STREQ(c.coroutine.function, "blocks_between_two_awaits");
    EXPECT_STREQ(c.coroutine.file, __FILE__);
    EXPECT_FALSE(c.exception);
    // Where it ended: the second co_await.
    EXPECT_STREQ(c.location.function, "blocks_between_two_awaits");
    EXPECT_STREQ(c.location.file, __FILE__);
    EXPECT_EQ(c.location.line, l.b);
    // The task's call graph, suspended at that co_await.
    EXPECT_TRUE(starts_with(c.call_graph, "* Task(name='slowpoke', id=" + id_of(t) + ")"))
        << c.call_graph;
    EXPECT_TRUE(contains(c.call_graph,
                         "line " + std::to_string(l.b) + ", in async blocks_between_two_awaits()"))
        << c.call_graph;
}

TEST(DebugReports, ASlowFirstStepSaysFromTheStartOfTheCoroutine) {
    EventLoop loop(debug_mode(true));
    loop.slow_callback_duration = 50ms;
    Reports reports;
    reports.install(loop);
    Lines l;
    loop.run_until_complete(loop.create_task(blocks_before_its_first_await(l), "starter"));
    const std::string span = "(from the start of blocks_before_its_first_await() to " +
                             this_file_base() + ":" + std::to_string(l.a) +
                             " in blocks_before_its_first_await())";
    const std::vector<ExceptionContext> found = reports.with(span);
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    EXPECT_TRUE(starts_with(found[0].message, "Executing task starter took ")) << found[0].message;
    EXPECT_TRUE(found[0].message.ends_with(" seconds " + span)) << found[0].message;
    EXPECT_EQ(found[0].location.line, l.a);
    EXPECT_EQ(found[0].task, "starter");
}

TEST(DebugReports, ASlowStepThatEndsTheTaskSaysToItsEnd) {
    EventLoop loop(debug_mode(true));
    loop.slow_callback_duration = 50ms;
    Reports reports;
    reports.install(loop);
    Lines l;
    loop.run_until_complete(loop.create_task(blocks_after_its_last_await(l), "finisher"));
    const std::string span = "(from " + this_file_base() + ":" + std::to_string(l.a) +
                             " in blocks_after_its_last_await() to its end)";
    const std::vector<ExceptionContext> found = reports.with(span);
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    const ExceptionContext& c = found[0];
    EXPECT_TRUE(starts_with(c.message, "Executing task finisher took ")) << c.message;
    EXPECT_TRUE(c.message.ends_with(" seconds " + span)) << c.message;
    // It ended where it started, at its last co_await; a done task has no call graph.
    EXPECT_STREQ(c.location.function, "blocks_after_its_last_await");
    EXPECT_EQ(c.location.line, l.a);
    EXPECT_EQ(c.call_graph, "");
}

TEST(DebugReports, ASlowStepAcrossCoroutinesNamesBothEnds) {
    EventLoop loop(debug_mode(true));
    loop.slow_callback_duration = 50ms;
    Reports reports;
    reports.install(loop);
    Lines l;
    loop.run_until_complete(loop.create_task(steps_into_a_blocking_coroutine(l), "deep"));
    const std::string base = this_file_base();
    const std::string span = "(from " + base + ":" + std::to_string(l.b) +
                             " in steps_into_a_blocking_coroutine() to " + base + ":" +
                             std::to_string(l.a) + " in blocks_before_its_first_await())";
    const std::vector<ExceptionContext> found = reports.with(span);
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    const ExceptionContext& c = found[0];
    EXPECT_EQ(c.task, "deep");
    EXPECT_STREQ(c.coroutine.function, "steps_into_a_blocking_coroutine");
    EXPECT_STREQ(c.location.function, "blocks_before_its_first_await");
    EXPECT_EQ(c.location.line, l.a);
    EXPECT_TRUE(contains(c.call_graph, ", in async blocks_before_its_first_await()"))
        << c.call_graph;
    EXPECT_TRUE(contains(c.call_graph, "line " + std::to_string(l.b + 1) +
                                           ", in async steps_into_a_blocking_coroutine()"))
        << c.call_graph;
}

TEST(DebugReports, ASlowCallbackIsReportedAsACallback) {
    EventLoop loop(debug_mode(true));
    loop.slow_callback_duration = 50ms;
    Reports reports;
    reports.install(loop);
    loop.call_soon([] { block_for(80ms); });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    // The first report is the blocking callback's, the first to run (the stop callback is fast
    // but, on a loaded machine, not reliably under 50 ms).
    const std::vector<ExceptionContext> found = reports.with("Executing callback took ");
    ASSERT_FALSE(found.empty()) << reports.messages();
    const ExceptionContext& c = found[0];
    EXPECT_TRUE(starts_with(c.message, "Executing callback took ")) << c.message;
    EXPECT_TRUE(c.message.ends_with(" seconds")) << c.message;
    EXPECT_GE(number_after(c.message, "took "), 0.079) << c.message;
    EXPECT_EQ(c.task, "");
    EXPECT_EQ(c.call_graph, "");
}

TEST(DebugReports, SlowStepsAreNotReportedWithDebugModeOff) {
    EventLoop loop(debug_mode(false));
    EXPECT_FALSE(loop.get_debug());
    loop.slow_callback_duration = 50ms;
    Reports reports;
    reports.install(loop);
    Lines l;
    loop.call_soon([] { block_for(80ms); });
    loop.run_until_complete(loop.create_task(blocks_between_two_awaits(l), "slowpoke"));
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

TEST(DebugReports, FastStepsAreNotReported) {
    EventLoop loop(debug_mode(true));
    // Far above what a step that only yields takes, even on a loaded machine.
    loop.slow_callback_duration = 500ms;
    Reports reports;
    reports.install(loop);
    loop.call_soon([] {});
    loop.run_until_complete(loop.create_task(yields(5), "quick"));
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

TEST(DebugReports, SetDebugTurnsTheSlowStepReportsOnAndOff) {
    EventLoop loop(debug_mode(false));
    loop.slow_callback_duration = 50ms;
    Reports reports;
    reports.install(loop);
    loop.set_debug(true);
    EXPECT_TRUE(loop.get_debug());
    Lines l;
    loop.run_until_complete(loop.create_task(blocks_after_its_last_await(l), "on"));
    const std::string span = "(from " + this_file_base() + ":" + std::to_string(l.a) +
                             " in blocks_after_its_last_await() to its end)";
    const std::vector<ExceptionContext> found = reports.with(span);
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    EXPECT_TRUE(starts_with(found[0].message, "Executing task on took ")) << found[0].message;
    loop.set_debug(false);
    loop.run_until_complete(loop.create_task(blocks_after_its_last_await(l), "off"));
    EXPECT_EQ(reports.with("Executing task off took ").size(), 0u) << reports.messages();
}

// --- coroutines never awaited ----------------------------------------------------------------

constexpr std::uint32_t kNeverAwaitedFirstLine = __LINE__ + 1;
corio::Coro<int> never_awaited() {
    co_return 1;
}
constexpr std::uint32_t kNeverAwaitedLastLine = __LINE__ - 1;

corio::Coro<> drops_a_coroutine() {
    (void)never_awaited();
    co_await corio::sleep(0s);
}

corio::Coro<> awaits_its_coroutines() {
    int sum = co_await never_awaited();
    corio::Coro<int> kept = never_awaited();
    corio::Coro<int> moved = std::move(kept);
    sum += co_await std::move(moved);
    corio::Task<int> task = corio::create_task(never_awaited());
    sum += co_await task;
    EXPECT_EQ(sum, 3);
}

TEST(DebugReports, ACoroutineNeverAwaitedIsReportedWithWhereItIsDefinedAndWhoDroppedIt) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    corio::Task<> t = loop.create_task(drops_a_coroutine(), "dropper");
    loop.run_until_complete(t);
    const std::vector<ExceptionContext> found = reports.with("was never awaited");
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    const ExceptionContext& c = found[0];
    EXPECT_EQ(c.message, "coroutine 'never_awaited' was never awaited");
    EXPECT_FALSE(c.exception);
    EXPECT_STREQ(c.location.function, "never_awaited");
    EXPECT_STREQ(c.location.file, __FILE__);
    EXPECT_TRUE(c.location.line == kNeverAwaitedFirstLine ||
                c.location.line == kNeverAwaitedLastLine)
        << c.location.line;
    EXPECT_EQ(c.task, "dropper");
    EXPECT_STREQ(c.coroutine.function, "drops_a_coroutine");
    EXPECT_TRUE(starts_with(c.call_graph, "* Task(name='dropper', id=" + id_of(t) + ")"))
        << c.call_graph;
    EXPECT_TRUE(contains(c.call_graph, ", in async drops_a_coroutine()")) << c.call_graph;
}

TEST(DebugReports, ACoroutineDroppedByACallbackIsReportedWithoutATask) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    loop.call_soon([] { (void)never_awaited(); });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    const std::vector<ExceptionContext> found = reports.with("was never awaited");
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    EXPECT_EQ(found[0].message, "coroutine 'never_awaited' was never awaited");
    EXPECT_STREQ(found[0].location.function, "never_awaited");
    EXPECT_EQ(found[0].task, "");
    EXPECT_EQ(found[0].call_graph, "");
}

TEST(DebugReports, ACoroutineNeverAwaitedIsNotReportedWithDebugModeOff) {
    EventLoop loop(debug_mode(false));
    Reports reports;
    reports.install(loop);
    loop.run_until_complete(loop.create_task(drops_a_coroutine(), "dropper"));
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

TEST(DebugReports, CoroutinesThatWereAwaitedAreNeverReported) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    // Awaited directly, awaited after a move, and run as a task.
    loop.run_until_complete(loop.create_task(awaits_its_coroutines(), "awaiter"));
    EXPECT_TRUE(reports.with("was never awaited").empty()) << reports.messages();
}

TEST(DebugReports, ACoroutineNeverAwaitedOutsideARunningLoopIsNotReported) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    (void)never_awaited();
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

// --- exceptions never retrieved --------------------------------------------------------------

corio::Coro<> fails_after_a_step() {
    co_await corio::sleep(0s);
    throw TestError("boom");
}

TEST(DebugReports, ATaskExceptionNeverRetrievedIsReportedWithTheTaskAndItsCoroutine) {
    EventLoop loop(debug_mode(false));
    Reports reports;
    reports.install(loop);
    corio::Task<> t = loop.create_task(fails_after_a_step(), "doomed");
    loop.run_until_complete(yields(3));
    ASSERT_TRUE(t.done());
    // Reported when the last reference goes, not before.
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
    t = corio::Task<>();
    const std::vector<ExceptionContext> found = reports.with("exception was never retrieved");
    ASSERT_EQ(found.size(), 1u) << reports.messages();
    const ExceptionContext& c = found[0];
    EXPECT_EQ(c.message, "Task exception was never retrieved");
    EXPECT_EQ(c.task, "doomed");
    EXPECT_STREQ(c.coroutine.function, "fails_after_a_step");
    EXPECT_STREQ(c.coroutine.file, __FILE__);
    ASSERT_TRUE(c.exception);
    try {
        std::rethrow_exception(c.exception);
    } catch (const TestError& e) {
        EXPECT_STREQ(e.what(), "boom");
    } catch (...) {
        ADD_FAILURE() << "not the task's exception";
    }
}

TEST(DebugReports, ATaskExceptionThatWasRetrievedIsNotReported) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    corio::Task<> t = loop.create_task(fails_after_a_step(), "doomed");
    loop.run_until_complete(yields(3));
    ASSERT_TRUE(t.done());
    EXPECT_TRUE(static_cast<bool>(t.exception()));
    t = corio::Task<>();
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

// --- loop methods called from another thread -------------------------------------------------

// Runs `body` on another thread and waits for it, from a task: the loop runs, and its thread is
// blocked in join() meanwhile, so what the other thread does cannot race with it.
template <class F>
void on_another_thread(F body) {
    std::thread other(std::move(body));
    other.join();
}

TEST(DebugReports, LoopMethodsCalledFromAnotherThreadRaiseRuntimeErrorInDebugMode) {
    EventLoop loop(debug_mode(true));
    Reports reports;
    reports.install(loop);
    int fds[2] = {-1, -1};
    ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    std::vector<std::pair<std::string, std::string>> outcomes;  // method, error message
    bool threadsafe_ran = false;
    corio::Event threadsafe_done;
    auto body = [&]() -> corio::Coro<> {
        co_await corio::sleep(0s);
        auto attempts = [&] {
            auto attempt = [&](const char* method, auto call) {
                try {
                    call();
                    outcomes.emplace_back(method, "");
                } catch (const corio::RuntimeError& e) {
                    outcomes.emplace_back(method, e.what());
                }
            };
            attempt("call_soon", [&] { loop.call_soon([] {}); });
            attempt("call_later", [&] { loop.call_later(1h, [] {}); });
            attempt("call_at", [&] { loop.call_at(loop.time() + 1h, [] {}); });
            attempt("create_task", [&] { loop.create_task(returns_at_once()); });
            attempt("add_reader", [&] { loop.add_reader(fds[0], [] {}); });
            attempt("add_writer", [&] { loop.add_writer(fds[1], [] {}); });
            attempt("remove_reader", [&] { loop.remove_reader(fds[0]); });
            attempt("remove_writer", [&] { loop.remove_writer(fds[1]); });
            // The one method meant for other threads still works.
            loop.call_soon_threadsafe([&] {
                threadsafe_ran = true;
                threadsafe_done.set();
            });
        };
        on_another_thread(attempts);
        co_await threadsafe_done.wait();
    };
    loop.run_until_complete(body());
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_TRUE(threadsafe_ran);
    ASSERT_EQ(outcomes.size(), 8u);
    for (const auto& [method, error] : outcomes) {
        EXPECT_TRUE(contains(error,
                             "Non-thread-safe operation invoked on an event loop other "
                             "than the current one"))
            << method << ": " << error;
        EXPECT_TRUE(contains(error, "call_soon_threadsafe")) << method << ": " << error;
    }
    // Nothing was scheduled, nor reported (the Coro given to create_task was dropped on the
    // other thread, where no loop runs).
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
    const auto pending = corio::detail::LoopAccess::pending(loop);
    EXPECT_EQ(pending.callbacks + pending.timers + pending.readers + pending.writers, 0u);
}

TEST(DebugReports, TheSameThreadCanCallTheLoopsMethodsInDebugMode) {
    EventLoop loop(debug_mode(true));
    int ran = 0;
    auto body = [&]() -> corio::Coro<> {
        loop.call_soon([&] { ++ran; });
        corio::TimerHandle later = loop.call_later(1h, [] {});
        later.cancel();
        co_await corio::create_task(returns_at_once());
        co_await corio::sleep(0s);
    };
    loop.run_until_complete(body());
    EXPECT_EQ(ran, 1);
}

TEST(DebugReports, WithDebugModeOffTheThreadIsNotChecked) {
    // Only while the loop's thread waits for the other one (join), so the calls do not race
    // with it; the check itself is what is absent.
    EventLoop loop(debug_mode(false));
    int ran = 0;
    bool threw = false;
    auto body = [&]() -> corio::Coro<> {
        auto schedule = [&] {
            try {
                loop.call_soon([&] { ++ran; });
                loop.call_later(0s, [&] { ++ran; });
            } catch (...) {
                threw = true;
            }
        };
        on_another_thread(schedule);
        co_await corio::sleep(1ms);
        co_await corio::sleep(1ms);
    };
    loop.run_until_complete(body());
    EXPECT_FALSE(threw);
    EXPECT_EQ(ran, 2);
}

// =============================================================================================
// Loop statistics
// =============================================================================================

TEST(LoopStats, ANewLoopHasDoneNothing) {
    EventLoop loop;
    const corio::LoopStats s = loop.stats();
    EXPECT_EQ(s.iterations, 0u);
    EXPECT_EQ(s.polls, 0u);
    EXPECT_EQ(s.task_steps, 0u);
    EXPECT_EQ(s.callbacks, 0u);
    EXPECT_EQ(s.time_polling, corio::Duration::zero());
    EXPECT_EQ(s.time_running, corio::Duration::zero());
    EXPECT_EQ(s.longest_step, corio::Duration::zero());
    EXPECT_EQ(s.longest_step_task, "");
}

TEST(LoopStats, CountsTheCallbacksRun) {
    EventLoop loop;
    constexpr int kCallbacks = 25;
    int ran = 0;
    for (int i = 0; i < kCallbacks; ++i) loop.call_soon([&] { ++ran; });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    ASSERT_EQ(ran, kCallbacks);
    const corio::LoopStats s = loop.stats();
    EXPECT_GE(s.callbacks, static_cast<std::uint64_t>(kCallbacks));
    EXPECT_GE(s.iterations, 1u);
    EXPECT_GE(s.iterations, s.polls);
    EXPECT_GE(s.time_running, corio::Duration::zero());
}

TEST(LoopStats, CountsTheTaskStepsAndThePasses) {
    EventLoop loop;
    constexpr int kYields = 20;
    loop.run_until_complete(loop.create_task(yields(kYields), "yielder"));
    const corio::LoopStats s = loop.stats();
    // Its first step, and one after each sleep(0); each resumption on a later pass.
    EXPECT_GE(s.task_steps, static_cast<std::uint64_t>(kYields + 1));
    EXPECT_GE(s.iterations, static_cast<std::uint64_t>(kYields + 1));
    EXPECT_GE(s.iterations, s.polls);
}

TEST(LoopStats, TimePollingGrowsWhileTheLoopSleeps) {
    EventLoop loop;
    const corio::LoopStats before = loop.stats();
    loop.run_until_complete(corio::sleep(100ms));
    const corio::LoopStats after = loop.stats();
    EXPECT_GE(after.polls, before.polls + 1);
    EXPECT_GE(after.time_polling - before.time_polling, corio::Duration(90ms));
    EXPECT_GE(after.time_running, corio::Duration::zero());
}

TEST(LoopStats, TimeRunningGrowsWhileAStepBlocks) {
    EventLoop loop;
    auto blocks = []() -> corio::Coro<> {
        block_for(100ms);
        co_return;
    };
    loop.run_until_complete(blocks());
    const corio::LoopStats s = loop.stats();
    EXPECT_GE(s.time_running, corio::Duration(90ms));
}

TEST(LoopStats, StatsFromInsideTheLoopIncludeTheCurrentRun) {
    EventLoop loop;
    corio::LoopStats inside;
    auto body = [&]() -> corio::Coro<> {
        co_await corio::sleep(20ms);
        block_for(20ms);
        inside = corio::get_running_loop().stats();
    };
    loop.run_until_complete(body());
    EXPECT_GE(inside.task_steps, 1u);
    EXPECT_GE(inside.polls, 1u);
    EXPECT_GE(inside.time_polling, corio::Duration(15ms));
    EXPECT_GE(inside.time_running, corio::Duration(15ms));
    const corio::LoopStats after = loop.stats();
    EXPECT_GE(after.task_steps, inside.task_steps);
    EXPECT_GE(after.time_running + after.time_polling, inside.time_running + inside.time_polling);
}

TEST(LoopStats, TheLongestStepIsNotMeasuredWithDebugModeOff) {
    EventLoop loop(debug_mode(false));
    Lines l;
    loop.run_until_complete(loop.create_task(blocks_after_its_last_await(l), "blocker"));
    const corio::LoopStats s = loop.stats();
    EXPECT_EQ(s.longest_step, corio::Duration::zero());
    EXPECT_EQ(s.longest_step_task, "");
}

TEST(LoopStats, TheLongestStepIsMeasuredInDebugModeWithItsTask) {
    EventLoop loop(debug_mode(true));
    loop.slow_callback_duration = 10s;  // no slow-step reports
    Reports reports;
    reports.install(loop);
    Lines l;
    loop.run_until_complete(loop.create_task(yields(3), "quick"));
    loop.run_until_complete(loop.create_task(blocks_after_its_last_await(l), "blocker"));
    loop.run_until_complete(loop.create_task(yields(3), "quick"));
    const corio::LoopStats s = loop.stats();
    EXPECT_GE(s.longest_step, corio::Duration(80ms));
    EXPECT_EQ(s.longest_step_task, "blocker");
    EXPECT_TRUE(reports.all.empty()) << reports.messages();
}

TEST(LoopStats, ALongestStepInACallbackHasNoTaskName) {
    EventLoop loop(debug_mode(true));
    loop.slow_callback_duration = 10s;
    loop.call_soon([] { block_for(80ms); });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    const corio::LoopStats s = loop.stats();
    EXPECT_GE(s.longest_step, corio::Duration(80ms));
    EXPECT_EQ(s.longest_step_task, "");
}

// =============================================================================================
// The watchdog
// =============================================================================================

struct Stall {
    std::uint32_t inner_line = 0;
    std::uint32_t outer_line = 0;
    SteadyClock::time_point began{};
    SteadyClock::time_point ended{};
};

corio::Coro<> stalls_in_a_blocking_call(Stall& s, corio::Duration d) {
    s.inner_line = __LINE__ + 1;
    co_await corio::sleep(0s);
    s.began = SteadyClock::now();
    corio_test_block_the_loop_thread(d);
    s.ended = SteadyClock::now();
}

corio::Coro<> stalling_task(Stall& s, corio::Duration d) {
    s.outer_line = __LINE__ + 1;
    co_await stalls_in_a_blocking_call(s, d);
}

// The reports of one stall: one or more "has not polled" reports (at 1x, 2x, 4x... the threshold)
// and then one end report. Returns how many stall reports there were (0: not that shape).
std::size_t stall_reports_then_end(const std::vector<WatchdogLog::Entry>& reports) {
    if (reports.size() < 2 || !starts_with(reports.back().text, kEndReport)) return 0;
    for (std::size_t i = 0; i + 1 < reports.size(); ++i)
        if (!starts_with(reports[i].text, kStallReport)) return 0;
    return reports.size() - 1;
}

TEST(Watchdog, AStalledLoopIsReportedWhileItIsStuckThenWhenItPollsAgain) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(1s)});  // the default threshold
    ASSERT_TRUE(loop.has_watchdog());
    Stall s;
    corio::Task<> t = loop.create_task(stalling_task(s, 1500ms), "staller");
    loop.run_until_complete(t);
    const std::string id = id_of(t);
    loop.set_watchdog(std::nullopt);  // waits for its thread: every report is in
    const std::vector<WatchdogLog::Entry> reports = log.taken();
    ASSERT_EQ(reports.size(), 2u);

    // While it was stuck: before the blocking call returned.
    const std::string& text = reports[0].text;
    EXPECT_LT(reports[0].at, s.ended) << "the report came after the stall had ended";
    EXPECT_GT(reports[0].at, s.began);
    EXPECT_TRUE(starts_with(text, kStallReport)) << text;
    EXPECT_GE(number_after(text, kStallReport), 1.0) << text;
    // Asleep in the kernel: the thread is off the CPU, in (clock_)nanosleep.
    EXPECT_TRUE(contains(text, "its thread is off-CPU in clock_nanosleep") ||
                contains(text, "its thread is off-CPU in nanosleep"))
        << text;
    // The task, its coroutine, and its await chain with the co_await lines.
    EXPECT_TRUE(contains(
        text, std::string("running task: staller (coroutine stalling_task at ") + __FILE__ + ":"))
        << text;
    EXPECT_TRUE(contains(text, "* Task(name='staller', id=" + id + ")")) << text;
    const std::string file = __FILE__;
    EXPECT_TRUE(contains(text, "|   File '" + file + "', line " + std::to_string(s.outer_line) +
                                   ", in async stalling_task()"))
        << text;
    EXPECT_TRUE(contains(text, "|   File '" + file + "', line " + std::to_string(s.inner_line) +
                                   ", in async stalls_in_a_blocking_call()"))
        << text;
    // The loop thread's native stack, symbolized, down to the function that blocks.
    EXPECT_TRUE(contains(text, "native stack of the loop thread (TID ")) << text;
    EXPECT_TRUE(contains(text, "#0  0x")) << text;
    // (This holds under AddressSanitizer too: its build shows the same frames.)
    EXPECT_TRUE(contains(text, "corio_test_block_the_loop_thread")) << text;

    // Then, once it polled again: how long it lasted.
    const std::string& end = reports[1].text;
    EXPECT_TRUE(starts_with(end, kEndReport)) << end;
    EXPECT_GE(number_after(end, kEndReport), 1.4) << end;
    EXPECT_GE(reports[1].at, s.ended);
}

TEST(Watchdog, ACpuBoundStallIsReportedOnCpu) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(500ms)});
    auto spins = []() -> corio::Coro<> {
        co_await corio::sleep(0s);
        corio_test_spin_on_the_cpu(1300ms);
    };
    loop.run_until_complete(loop.create_task(spins(), "spinner"));
    loop.set_watchdog(std::nullopt);
    const std::vector<WatchdogLog::Entry> reports = log.taken();
    ASSERT_GE(stall_reports_then_end(reports), 1u);  // at 0.5 s, and again at 1 s
    EXPECT_TRUE(contains(reports[0].text, "; its thread is on-CPU")) << reports[0].text;
    EXPECT_TRUE(contains(reports[0].text, "running task: spinner (coroutine ")) << reports[0].text;
    EXPECT_GE(number_after(reports.back().text, kEndReport), 1.2) << reports.back().text;
}

TEST(Watchdog, AStallInACallbackSaysNoTaskWasRunning) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(200ms)});
    loop.call_soon([] { corio_test_block_the_loop_thread(600ms); });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    loop.set_watchdog(std::nullopt);
    const std::vector<WatchdogLog::Entry> reports = log.taken();
    ASSERT_GE(stall_reports_then_end(reports), 1u);
    EXPECT_TRUE(contains(reports[0].text, "running: a callback, not a task")) << reports[0].text;
}

TEST(Watchdog, AnIdleLoopIsNeverReported) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(200ms)});
    loop.run_until_complete(loop.create_task(corio::sleep(3s), "sleeper"));
    loop.set_watchdog(std::nullopt);
    EXPECT_TRUE(log.taken().empty());
}

TEST(Watchdog, AStallShorterThanTheThresholdIsNotReported) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(1s)});
    Stall s;
    loop.run_until_complete(loop.create_task(stalling_task(s, 300ms), "brief"));
    loop.set_watchdog(std::nullopt);
    EXPECT_TRUE(log.taken().empty());
}

TEST(Watchdog, EachStallIsReportedAndItsEndOnce) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(250ms)});
    auto stalls_twice = []() -> corio::Coro<> {
        corio_test_block_the_loop_thread(800ms);
        co_await corio::sleep(20ms);  // the loop polls in between
        corio_test_block_the_loop_thread(800ms);
    };
    loop.run_until_complete(loop.create_task(stalls_twice(), "twice"));
    loop.set_watchdog(std::nullopt);
    const std::vector<WatchdogLog::Entry> reports = log.taken();
    // Split at the end reports: two stalls, each reported (at 0.25 s and 0.5 s) then ended.
    std::vector<std::vector<WatchdogLog::Entry>> stalls(1);
    for (const auto& r : reports) {
        stalls.back().push_back(r);
        if (starts_with(r.text, kEndReport)) stalls.emplace_back();
    }
    ASSERT_TRUE(stalls.back().empty()) << "reports after the last end report";
    stalls.pop_back();
    ASSERT_EQ(stalls.size(), 2u);
    for (const auto& stall : stalls) {
        ASSERT_GE(stall_reports_then_end(stall), 1u);
        EXPECT_TRUE(contains(stall.front().text, "running task: twice ")) << stall.front().text;
        EXPECT_GE(number_after(stall.back().text, kEndReport), 0.7) << stall.back().text;
    }
}

// The issue's own case: a blocking sleep of 4 s on the loop thread with a 1 s threshold.
TEST(Watchdog, AFourSecondSleepIsReportedOffCpuWhileItLastsThenItsTotal) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(1s)});
    Stall s;
    loop.run_until_complete(loop.create_task(stalling_task(s, 4s), "sleeper"));
    loop.set_watchdog(std::nullopt);
    const std::vector<WatchdogLog::Entry> reports = log.taken();
    // At 1 s and 2 s at least (4 s is when it ends), then the total.
    ASSERT_GE(stall_reports_then_end(reports), 2u);
    for (std::size_t i = 0; i + 1 < reports.size(); ++i) {
        const std::string& text = reports[i].text;
        EXPECT_TRUE(contains(text, "its thread is off-CPU in clock_nanosleep") ||
                    contains(text, "its thread is off-CPU in nanosleep"))
            << text;
        EXPECT_TRUE(contains(text, "running task: sleeper ")) << text;
    }
    EXPECT_LT(reports[0].at, s.ended);
    EXPECT_LT(reports[1].at, s.ended);
    EXPECT_GE(number_after(reports[1].text, kStallReport), 2.0) << reports[1].text;
    EXPECT_GE(number_after(reports.back().text, kEndReport), 3.9) << reports.back().text;
}

TEST(Watchdog, ALongStallIsReportedAgainAtTwiceAndFourTimesTheThresholdAndCounted) {
    WatchdogLog log;
    EventLoop loop(LoopOptions{.watchdog = log.options(300ms)});
    Stall s;
    loop.run_until_complete(loop.create_task(stalling_task(s, 1500ms), "long"));
    // The end is recorded by the watchdog's thread once it sees the loop poll again.
    loop.run_until_complete(loop.create_task(corio::sleep(200ms)));
    const corio::LoopStats stats = loop.stats();
    loop.set_watchdog(std::nullopt);
    const std::vector<WatchdogLog::Entry> reports = log.taken();
    // At 0.3 s, 0.6 s and 1.2 s (2.4 s would be after the end), then the total.
    ASSERT_EQ(stall_reports_then_end(reports), 3u);
    const double firsts[] = {0.3, 0.6, 1.2};
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_GE(number_after(reports[i].text, kStallReport), firsts[i]) << reports[i].text;
        EXPECT_LT(reports[i].at, s.ended) << "report " << i << " came after the stall";
        EXPECT_TRUE(contains(reports[i].text, "running task: long ")) << reports[i].text;
    }
    EXPECT_GE(number_after(reports[3].text, kEndReport), 1.4) << reports[3].text;
    // 1.5 s is 4 to 8 thresholds, off the CPU.
    EXPECT_EQ(stats.stall_threshold, corio::Duration(300ms));
    EXPECT_EQ(stats.stalls_off_cpu[2], 1u);
    EXPECT_EQ(stats.stalls_off_cpu[0] + stats.stalls_off_cpu[1] + stats.stalls_off_cpu[3], 0u);
    EXPECT_EQ(stats.stalls_on_cpu[0] + stats.stalls_on_cpu[1] + stats.stalls_on_cpu[2] +
                  stats.stalls_on_cpu[3],
              0u);
    EXPECT_GE(stats.longest_stall, corio::Duration(1400ms));
}

TEST(Watchdog, ReportsGoToStderrWithoutAReportFunction) {
    EnvGuard watchdog("CORIO_WATCHDOG", "200");
    EnvGuard debug("CORIO_DEBUG", nullptr);
    StderrCapture capture;
    {
        EventLoop loop;
        EXPECT_TRUE(loop.has_watchdog());
        loop.call_soon([] { corio_test_block_the_loop_thread(500ms); });
        loop.call_soon([&] { loop.stop(); });
        loop.run_forever();
    }  // the watchdog's thread is joined: every report is written
    const std::string text = capture.finish();
    EXPECT_TRUE(starts_with(text, kStallReport)) << text;
    EXPECT_TRUE(contains(text, kEndReport)) << text;
}

TEST(Watchdog, AReportFunctionThatThrowsDoesNotStopTheWatchdog) {
    std::mutex mutex;
    std::vector<std::string> delivered;
    int calls = 0;
    auto report = [&](const std::string& text) {
        std::lock_guard lock(mutex);
        if (++calls == 1) throw TestError("the report function failed");
        delivered.push_back(text);
    };
    StderrCapture capture;
    {
        EventLoop loop(
            LoopOptions{.watchdog = WatchdogOptions{.threshold = 200ms, .report = report}});
        loop.call_soon([] { corio_test_block_the_loop_thread(500ms); });
        loop.call_soon([&] { loop.stop(); });
        loop.run_forever();
    }
    const std::string text = capture.finish();
    EXPECT_TRUE(contains(text, "corio watchdog: the report function threw")) << text;
    // The first report threw; the others (again at 2x the threshold, then the end) came.
    EXPECT_GE(calls, 2);
    ASSERT_EQ(delivered.size(), static_cast<std::size_t>(calls - 1));
    EXPECT_TRUE(starts_with(delivered.back(), kEndReport)) << delivered.back();
}

TEST(Watchdog, TheCorioWatchdogVariableTurnsItOn) {
    EnvGuard debug("CORIO_DEBUG", nullptr);
    {
        EnvGuard watchdog("CORIO_WATCHDOG", nullptr);
        EventLoop loop;
        EXPECT_FALSE(loop.has_watchdog());
    }
    {
        EnvGuard watchdog("CORIO_WATCHDOG", "");
        EventLoop loop;
        EXPECT_FALSE(loop.has_watchdog());
    }
    {
        EnvGuard watchdog("CORIO_WATCHDOG", "250");
        EventLoop loop;
        EXPECT_TRUE(loop.has_watchdog());
        // Debug mode off, as it was: the variable turns on the watchdog only.
        EXPECT_FALSE(loop.get_debug());
    }
}

TEST(Watchdog, ABadCorioWatchdogValueMakesTheLoopConstructorThrow) {
    EnvGuard debug("CORIO_DEBUG", nullptr);
    for (const char* value : {"abc", "0", "-5", "12x", "1.5"}) {
        EnvGuard watchdog("CORIO_WATCHDOG", value);
        try {
            EventLoop loop;
            ADD_FAILURE() << "CORIO_WATCHDOG=" << value << " was accepted";
        } catch (const corio::RuntimeError& e) {
            EXPECT_TRUE(contains(e.what(), "CORIO_WATCHDOG")) << e.what();
            EXPECT_TRUE(contains(e.what(), value)) << e.what();
        }
    }
}

TEST(Watchdog, LoopOptionsOverrideTheVariable) {
    EnvGuard debug("CORIO_DEBUG", nullptr);
    EnvGuard watchdog("CORIO_WATCHDOG", "abc");
    EventLoop loop(LoopOptions{.watchdog = WatchdogOptions{}});
    EXPECT_TRUE(loop.has_watchdog());
}

TEST(Watchdog, DebugModeTurnsItOn) {
    EnvGuard watchdog("CORIO_WATCHDOG", nullptr);
    EventLoop with_debug(debug_mode(true));
    EXPECT_TRUE(with_debug.has_watchdog());
    EventLoop without_debug(debug_mode(false));
    EXPECT_FALSE(without_debug.has_watchdog());
}

TEST(Watchdog, SetWatchdogTurnsItOnAndOff) {
    EventLoop loop(debug_mode(true));
    ASSERT_TRUE(loop.has_watchdog());
    loop.set_watchdog(std::nullopt);
    EXPECT_FALSE(loop.has_watchdog());
    loop.set_watchdog(std::nullopt);  // already off
    EXPECT_FALSE(loop.has_watchdog());
    loop.set_watchdog(WatchdogOptions{.threshold = 300ms});
    EXPECT_TRUE(loop.has_watchdog());
    // The loop still runs normally with it, and after it is replaced.
    loop.run_until_complete(yields(2));
    loop.set_watchdog(WatchdogOptions{.threshold = 2s});
    EXPECT_TRUE(loop.has_watchdog());
    loop.run_until_complete(yields(2));
}

TEST(Watchdog, SetWatchdogWhileTheLoopRunsThrowsRuntimeError) {
    EventLoop loop(debug_mode(false));
    loop.set_watchdog(WatchdogOptions{});
    bool threw_on = false;
    bool threw_off = false;
    auto body = [&]() -> corio::Coro<> {
        try {
            loop.set_watchdog(WatchdogOptions{.threshold = 2s});
        } catch (const corio::RuntimeError&) {
            threw_on = true;
        }
        try {
            loop.set_watchdog(std::nullopt);
        } catch (const corio::RuntimeError&) {
            threw_off = true;
        }
        co_return;
    };
    loop.run_until_complete(body());
    EXPECT_TRUE(threw_on);
    EXPECT_TRUE(threw_off);
    EXPECT_TRUE(loop.has_watchdog());
}

TEST(Watchdog, SetWatchdogOnAClosedLoopThrowsRuntimeError) {
    EventLoop loop(debug_mode(false));
    loop.close();
    EXPECT_THROW(loop.set_watchdog(WatchdogOptions{}), corio::RuntimeError);
    EXPECT_FALSE(loop.has_watchdog());
}

TEST(Watchdog, AThresholdThatIsNotPositiveIsAValueError) {
    EventLoop loop(debug_mode(false));
    EXPECT_THROW(loop.set_watchdog(WatchdogOptions{.threshold = 0s}), corio::ValueError);
    EXPECT_THROW(loop.set_watchdog(WatchdogOptions{.threshold = -1s}), corio::ValueError);
    EXPECT_THROW(EventLoop(LoopOptions{.watchdog = WatchdogOptions{.threshold = 0s}}),
                 corio::ValueError);
    EXPECT_THROW(EventLoop(LoopOptions{.watchdog = WatchdogOptions{.threshold = -5ms}}),
                 corio::ValueError);
}

TEST(Watchdog, ARejectedThresholdLeavesTheWatchdogInPlace) {
    // A call that throws ValueError for its argument changes nothing.
    EventLoop loop(debug_mode(false));
    loop.set_watchdog(WatchdogOptions{.threshold = 300ms});
    ASSERT_TRUE(loop.has_watchdog());
    EXPECT_THROW(loop.set_watchdog(WatchdogOptions{.threshold = 0s}), corio::ValueError);
    EXPECT_TRUE(loop.has_watchdog());
}

}  // namespace
