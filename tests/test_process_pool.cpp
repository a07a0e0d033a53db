// corio::ProcessPoolExecutor and run_in_executor with it (concurrent.futures.ProcessPoolExecutor
// with loop.run_in_executor).
//
// Jobs run in other processes, so they cannot share a Gate with the test: jobs that must stay
// running block reading a FIFO in a temporary directory until the test writes to it, and
// tell that they started, or leave a side effect, by creating files there. Nothing synchronises
// by sleeping; whatever waits for another process gives up after kPatience, so that a broken
// library makes a test fail rather than hang.
//
// Every test also checks that the pool left no process behind: this binary has no other
// children, so when a test ends it must have none at all (running or unreaped).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "corio/process_pool.hpp"
#include "corio/testing.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kPatience = 5s;
constexpr int kPatienceMs = 5000;

// --- processes -----------------------------------------------------------------------------------

// The parent of `pid`, from /proc/<pid>/stat; -1 if there is no such process.
pid_t parent_of(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return -1;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so from the last ')'.
    const std::size_t close = line.rfind(')');
    if (close == std::string::npos) return -1;
    char state = 0;
    int ppid = -1;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return -1;
    return ppid;
}

// The processes whose parent is this one, running or unreaped.
std::set<pid_t> child_processes() {
    std::set<pid_t> children;
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return children;
    while (const dirent* entry = ::readdir(proc)) {
        char* end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0') continue;
        if (parent_of(static_cast<pid_t>(pid)) == ::getpid())
            children.insert(static_cast<pid_t>(pid));
    }
    ::closedir(proc);
    return children;
}

// True when this process has no child at all, running or unreaped (waitid without reaping).
bool no_child_processes() {
    siginfo_t info{};
    return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1 && errno == ECHILD;
}

void expect_no_child_processes() {
    EXPECT_TRUE(no_child_processes())
        << "the pool left " << child_processes().size() << " process(es) behind";
}

// True when `pid` is not, or no longer, a child of this process: it has been reaped.
bool reaped(pid_t pid) {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == -1 &&
           errno == ECHILD;
}

// Waits until our child `pid` has ended, leaving it for its owner to reap.
bool wait_until_dead(pid_t pid) {
    siginfo_t info{};
    int r = 0;
    do {
        r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT);
    } while (r < 0 && errno == EINTR);
    return r == 0;
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
    return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

bool mentions(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

// --- files shared with the jobs
// -------------------------------------------------------------------

// A temporary directory, removed with its contents.
class TempDir {
  public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "corio-ppool-XXXXXX");
        if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ignored;
        if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
    }
    bool ok() const { return !path_.empty(); }
    const std::string& path() const { return path_; }
    std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

  private:
    std::string path_;
};

bool exists(const std::string& path) {
    return ::access(path.c_str(), F_OK) == 0;
}

bool create_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

// Polls until `path` exists, without blocking the loop; false after kPatience.
corio::Coro<bool> eventually_exists(std::string path) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (!exists(path)) {
        if (std::chrono::steady_clock::now() > deadline) co_return false;
        co_await corio::sleep(1ms);
    }
    co_return true;
}

// The FIFO `dir/release` that blocked jobs read a byte from. The test holds it open for
// reading and writing, so that a job's open never blocks and the FIFO never reports end of
// file early; release() lets one blocked job go on. The destructor lets them all go.
class Release {
  public:
    explicit Release(const TempDir& dir) : path_(dir.file("release")) {
        if (::mkfifo(path_.c_str(), 0600) == 0)
            fd_ = ::open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    }
    Release(const Release&) = delete;
    Release& operator=(const Release&) = delete;
    ~Release() {
        if (fd_ < 0) return;
        const char bytes[16] = {};
        (void)!::write(fd_, bytes, sizeof bytes);
        ::close(fd_);
    }
    bool ok() const { return fd_ >= 0; }
    void release() const { (void)!::write(fd_, "x", 1); }

  private:
    std::string path_;
    int fd_ = -1;
};

// --- jobs: they run in the workers
// ----------------------------------------------------------------

struct Point {
    int x;
    double y;
    char tag[8];
};

int square(int x) {
    return x * x;
}

double scale(double x, double by) {
    return x * by;
}

Point shifted(Point p, int dx) {
    p.x += dx;
    p.y *= 2;
    p.tag[0] = 'S';
    return p;
}

std::string greet(const std::string& name) {
    return "hello, " + name;
}

std::vector<std::byte> inverted(std::vector<std::byte> bytes) {
    for (std::byte& b : bytes) b = ~b;
    return bytes;
}

using Nested = std::tuple<std::optional<int>, std::optional<std::string>,
                          std::pair<std::string, std::vector<std::string>>, std::array<short, 3>,
                          std::vector<bool>>;

Nested echo_nested(Nested n) {
    return n;
}

std::size_t total_length(std::vector<std::string> words) {
    std::size_t n = 0;
    for (const std::string& w : words) n += w.size();
    return n;
}

pid_t worker_pid() {
    return ::getpid();
}

void touch(std::string path) {
    create_file(path);
}

// Creates dir/started, then blocks until the test releases it; false if it never did.
bool block_until_released(std::string dir) {
    create_file(dir + "/started");
    const int fd = ::open((dir + "/release").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    char byte = 0;
    const bool released = ::poll(&p, 1, kPatienceMs) == 1 && ::read(fd, &byte, 1) == 1;
    ::close(fd);
    return released;
}

// Blocks as above, then creates dir/finished.
int block_then_finish(std::string dir) {
    const bool released = block_until_released(dir);
    create_file(dir + "/finished");
    return released ? 7 : -1;
}

// Creates dir/<me>, then waits until dir/<other> exists: true only if the two jobs ran at the
// same time.
bool meet(std::string dir, std::string me, std::string other) {
    create_file(dir + "/" + me);
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (!exists(dir + "/" + other)) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);  // polling interval, not synchronisation
    }
    return true;
}

long count_primes(long below) {
    long n = 0;
    for (long i = 2; i < below; ++i) {
        bool prime = true;
        for (long d = 2; d * d <= i; ++d) {
            if (i % d == 0) {
                prime = false;
                break;
            }
        }
        n += prime ? 1 : 0;
    }
    return n;
}

struct ParseError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum Failure {
    kInvalidArgument,
    kOutOfRange,
    kLogicError,
    kRuntimeError,
    kOverflowError,
    kValueError,
    kInvalidStateError,
    kFileNotFound,
    kTimeout,
    kParseError,
    kNotAnException,
};

int fail_with(Failure kind, std::string message) {
    switch (kind) {
        case kInvalidArgument:
            throw std::invalid_argument(message);
        case kOutOfRange:
            throw std::out_of_range(message);
        case kLogicError:
            throw std::logic_error(message);
        case kRuntimeError:
            throw std::runtime_error(message);
        case kOverflowError:
            throw std::overflow_error(message);
        case kValueError:
            throw corio::ValueError(message);
        case kInvalidStateError:
            throw corio::InvalidStateError(message);
        case kFileNotFound:
            corio::throw_os_error(ENOENT, message);
        case kTimeout:
            throw corio::TimeoutError(message);
        case kParseError:
            throw ParseError(message);
        case kNotAnException:
            throw 42;
    }
    return 0;
}

int crash_with(int sig) {
    ::raise(sig);
    return 0;
}

int exit_with(int status) {
    ::_exit(status);
}

int abort_now() {
    std::abort();
}

// Set before and after the pool is created: jobs see the value it had then.
int g_generation = 0;

int generation() {
    return g_generation;
}

int bump_generation() {
    return ++g_generation;
}

// What the worker has open besides the standard streams: the targets of its descriptors.
std::vector<std::string> open_descriptors() {
    std::vector<std::string> targets;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return {"(no /proc/self/fd)"};
    while (const dirent* entry = ::readdir(dir)) {
        char* end = nullptr;
        const long fd = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd <= 2 || fd == ::dirfd(dir)) continue;
        char target[256] = {};
        const std::string link = "/proc/self/fd/" + std::string(entry->d_name);
        const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
        targets.emplace_back(n > 0 ? target : "?");
    }
    ::closedir(dir);
    return targets;
}

// {SIGUSR1 at its default action, SIGUSR2 unblocked, SIGWINCH ignored} in the worker.
std::array<bool, 3> signal_state() {
    struct sigaction usr1 {};
    struct sigaction winch {};
    sigset_t blocked;
    sigemptyset(&blocked);
    ::sigaction(SIGUSR1, nullptr, &usr1);
    ::sigaction(SIGWINCH, nullptr, &winch);
    ::sigprocmask(SIG_BLOCK, nullptr, &blocked);
    return {usr1.sa_handler == SIG_DFL, sigismember(&blocked, SIGUSR2) == 0,
            winch.sa_handler == SIG_IGN};
}

int usable_cpus() {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    return ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : -1;
}

// Pins the job's own thread to one CPU through its pthread handle; how many CPUs the worker may
// then use (1 if the call reached the worker's thread).
int pin_own_thread() {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    if (::pthread_setaffinity_np(::pthread_self(), sizeof one, &one) != 0) return -1;
    return usable_cpus();
}

struct Doubler {
    int operator()(int x) const { return 2 * x; }
};

// --- awaiting
// --------------------------------------------------------------------------------------

// Awaits run_in_executor(pool, f, args...) in a coroutine of its own, to run it as a task.
template <class F, class... A>
corio::Coro<std::decay_t<std::invoke_result_t<F&, A...>>> in_pool(corio::ProcessPoolExecutor& pool,
                                                                  F f, A... args) {
    co_return co_await corio::run_in_executor(pool, f, std::move(args)...);
}

// What awaiting `awaitable` raised, or null.
template <class A>
corio::Coro<std::exception_ptr> error_of(A awaitable) {
    std::exception_ptr error;
    try {
        (void)co_await std::move(awaitable);
    } catch (...) {
        error = std::current_exception();
    }
    co_return error;
}

// `e` holds an exception of exactly type E whose what() is `what`.
template <class E>
::testing::AssertionResult raised_exactly(const std::exception_ptr& e, const std::string& what) {
    if (!e) return ::testing::AssertionFailure() << "nothing was raised";
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        if (typeid(x) != typeid(E))
            return ::testing::AssertionFailure()
                   << "raised " << corio::describe(e) << ", not a " << typeid(E).name();
        if (x.what() != what)
            return ::testing::AssertionFailure() << "what() is '" << x.what() << "'";
        return ::testing::AssertionSuccess();
    } catch (...) {
        return ::testing::AssertionFailure() << "raised " << corio::describe(e);
    }
}

// The BrokenProcessPool in `e`, if that is what it holds.
std::optional<corio::BrokenProcessPool> broken_pool(const std::exception_ptr& e) {
    try {
        if (e) std::rethrow_exception(e);
    } catch (const corio::BrokenProcessPool& b) {
        return b;
    } catch (...) {
    }
    return std::nullopt;
}

// ================================================================================================
// Results and arguments
// ================================================================================================

CORIO_TEST(ProcessPool, ReturnsPlainValues) {
    {
        corio::ProcessPoolExecutor pool(2);
        EXPECT_EQ(co_await corio::run_in_executor(pool, square, 12), 144);
        EXPECT_DOUBLE_EQ(co_await corio::run_in_executor(pool, scale, 1.5, 4.0), 6.0);
        const Point p{3, 0.25, "point"};
        const Point q = co_await corio::run_in_executor(pool, shifted, p, 4);
        EXPECT_EQ(q.x, 7);
        EXPECT_DOUBLE_EQ(q.y, 0.5);
        EXPECT_STREQ(q.tag, "Soint");
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, SendsTextAsStringsWhateverFormItIsGivenIn) {
    {
        corio::ProcessPoolExecutor pool(1);
        const std::string name = "world";
        EXPECT_EQ(co_await corio::run_in_executor(pool, greet, name), "hello, world");
        EXPECT_EQ(co_await corio::run_in_executor(pool, greet, "literal"), "hello, literal");
        const std::string_view view = std::string_view("a view, not all of it").substr(0, 6);
        EXPECT_EQ(co_await corio::run_in_executor(pool, greet, view), "hello, a view");
        const std::vector<std::string> words = {"one", "three", ""};
        EXPECT_EQ(co_await corio::run_in_executor(pool, total_length, words), 8u);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, CarriesAMebibyteByteBufferBothWaysIntact) {
    {
        corio::ProcessPoolExecutor pool(1);
        std::vector<std::byte> data(1 << 20);
        for (std::size_t i = 0; i < data.size(); ++i)
            data[i] = static_cast<std::byte>((i * 7 + i / 251) & 0xff);
        const std::vector<std::byte> out = co_await corio::run_in_executor(pool, inverted, data);
        CORIO_ASSERT(out.size() == data.size());
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < data.size(); ++i) wrong += out[i] == ~data[i] ? 0 : 1;
        EXPECT_EQ(wrong, 0u);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, CarriesNestedContainersIntact) {
    {
        corio::ProcessPoolExecutor pool(1);
        const Nested full{
            5, std::nullopt, {"key", {"a", "", "ccc"}}, {-1, 0, 32767}, {true, false, true, true}};
        EXPECT_EQ(co_await corio::run_in_executor(pool, echo_nested, full), full);
        const Nested empty{};
        EXPECT_EQ(co_await corio::run_in_executor(pool, echo_nested, empty), empty);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, AVoidJobHasRunWhenTheAwaitReturns) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    {
        corio::ProcessPoolExecutor pool(1);
        const std::string path = dir.file("touched");
        co_await corio::run_in_executor(pool, touch, path);
        EXPECT_TRUE(exists(path));
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, RunsCapturelessLambdasAndFunctionObjectsWithoutData) {
    {
        corio::ProcessPoolExecutor pool(1);
        auto length = [](std::string_view s) { return s.size(); };
        EXPECT_EQ(co_await corio::run_in_executor(pool, length, "seven!!"), 7u);
        auto generic = [](auto a, auto b) { return a + b; };
        EXPECT_EQ(co_await corio::run_in_executor(pool, generic, 2, 40), 42);
        EXPECT_EQ(co_await corio::run_in_executor(pool, Doubler{}, 21), 42);
    }
    expect_no_child_processes();
}

// ================================================================================================
// The processes
// ================================================================================================

CORIO_TEST(ProcessPool, RunsTheJobInAWorkerThatIsAChildOfThisProcess) {
    {
        corio::ProcessPoolExecutor pool(2);
        const std::vector<pid_t> workers = pool.worker_pids();
        EXPECT_EQ(workers.size(), 2u);
        for (pid_t pid : workers) EXPECT_EQ(parent_of(pid), ::getpid()) << "worker " << pid;
        // The workers and the zygote that forks them.
        EXPECT_EQ(child_processes().size(), 3u);

        const pid_t ran_in = co_await corio::run_in_executor(pool, worker_pid);
        EXPECT_NE(ran_in, ::getpid());
        EXPECT_TRUE(contains(workers, ran_in)) << ran_in;
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, RunsJobsAtTheSameTimeOnSeparateWorkers) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    {
        corio::ProcessPoolExecutor pool(2);
        // Each job waits for the other to have started: both return true only if they ran at
        // the same time.
        auto a =
            corio::create_task(in_pool(pool, meet, dir.path(), std::string("a"), std::string("b")));
        auto b =
            corio::create_task(in_pool(pool, meet, dir.path(), std::string("b"), std::string("a")));
        EXPECT_TRUE(co_await a);
        EXPECT_TRUE(co_await b);

        // CPU-bound work on both workers at once completes with the right results.
        auto c = corio::create_task(in_pool(pool, count_primes, 30000L));
        auto d = corio::create_task(in_pool(pool, count_primes, 20000L));
        EXPECT_EQ(co_await c, 3245);
        EXPECT_EQ(co_await d, 2262);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, MoreJobsThanWorkersAllCompleteWithTheirOwnResults) {
    {
        corio::ProcessPoolExecutor pool(2);
        std::vector<corio::Task<int>> tasks;
        for (int i = 0; i < 12; ++i) tasks.push_back(corio::create_task(in_pool(pool, square, i)));
        for (int i = 0; i < 12; ++i) EXPECT_EQ(co_await tasks[static_cast<std::size_t>(i)], i * i);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, JobsSeeTheProgramAsItWasWhenThePoolWasCreatedAndCannotChangeIt) {
    {
        g_generation = 1;
        corio::ProcessPoolExecutor pool(1);
        g_generation = 2;
        EXPECT_EQ(co_await corio::run_in_executor(pool, generation), 1);
        EXPECT_EQ(co_await corio::run_in_executor(pool, bump_generation), 2);
        EXPECT_EQ(g_generation, 2) << "a job changed this process's memory";
        // A replacement worker, too, is a copy of the program as it was at the pool's creation.
        (void)co_await error_of(corio::run_in_executor(pool, crash_with, SIGSEGV));
        EXPECT_EQ(co_await corio::run_in_executor(pool, generation), 1);
        g_generation = 0;
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPool, ZeroWorkersIsAValueError) {
    EXPECT_THROW(corio::ProcessPoolExecutor(0), corio::ValueError);
    expect_no_child_processes();
    co_return;
}

CORIO_TEST(ProcessPool, ByDefaultStartsOneWorkerPerUsableCpu) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CORIO_ASSERT(::sched_getaffinity(0, sizeof cpus, &cpus) == 0);
    const auto usable = static_cast<std::size_t>(CPU_COUNT(&cpus));
    EXPECT_EQ(corio::ProcessPoolExecutor::default_max_workers(), usable);
    {
        corio::ProcessPoolExecutor pool;
        EXPECT_EQ(pool.max_workers(), usable);
        EXPECT_EQ(pool.worker_pids().size(), usable);
    }
    expect_no_child_processes();
    co_return;
}

// ================================================================================================
// Isolation: what the workers inherit
// ================================================================================================

CORIO_TEST(ProcessPoolIsolation, DescriptorsOpenWhenThePoolIsCreatedAreNotHeldByItsProcesses) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    Release release(dir);
    CORIO_ASSERT(release.ok());
    int pipe_fds[2];
    CORIO_ASSERT(::pipe2(pipe_fds, O_NONBLOCK) == 0);  // not even close-on-exec
    {
        corio::ProcessPoolExecutor pool(2);
        ::close(pipe_fds[1]);
        // End of file at once: no process of the pool holds a copy of the write end.
        char byte = 0;
        EXPECT_EQ(::read(pipe_fds[0], &byte, 1), 0) << "errno " << errno;

        // With the first worker busy, the job runs on the second, which must not have inherited
        // the first one's channel either: it holds the standard streams and its own channel.
        auto busy = corio::create_task(in_pool(pool, block_until_released, dir.path()));
        CORIO_ASSERT(co_await eventually_exists(dir.file("started")));
        const std::vector<std::string> held =
            co_await corio::run_in_executor(pool, open_descriptors);
        EXPECT_EQ(held.size(), 1u);
        for (const std::string& target : held) EXPECT_TRUE(target.starts_with("socket:")) << target;
        release.release();
        EXPECT_TRUE(co_await busy);
    }
    ::close(pipe_fds[0]);
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolIsolation, WorkersStartWithDefaultSignalHandlersNothingBlockedIgnoredKept) {
    corio::EventLoop& loop = corio::get_running_loop();
    // corio's handler writes to a descriptor of the loop: in a worker, where that descriptor is
    // closed or its number reused, it must not run.
    loop.add_signal_handler(SIGUSR1, [] {});
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigset_t old_mask;
    ::pthread_sigmask(SIG_BLOCK, &usr2, &old_mask);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction old_winch {};
    ::sigaction(SIGWINCH, &ignore, &old_winch);
    std::array<bool, 3> state{};
    {
        corio::ProcessPoolExecutor pool(1);
        ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
        ::sigaction(SIGWINCH, &old_winch, nullptr);
        loop.remove_signal_handler(SIGUSR1);
        state = co_await corio::run_in_executor(pool, signal_state);
    }
    EXPECT_TRUE(state[0]) << "a handler of the parent is installed in the worker";
    EXPECT_TRUE(state[1]) << "a signal blocked in the parent is blocked in the worker";
    EXPECT_TRUE(state[2]) << "an ignored signal is no longer ignored in the worker";
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolIsolation, PthreadCallsOnTheJobsOwnThreadActOnItsWorkerNotOnTheZygote) {
    const int all = usable_cpus();
    CORIO_ASSERT(all > 0);
    {
        corio::ProcessPoolExecutor pool(1);
        EXPECT_EQ(co_await corio::run_in_executor(pool, pin_own_thread), 1);
        // A worker forked after that has every CPU: the call did not pin the zygote.
        (void)co_await error_of(corio::run_in_executor(pool, crash_with, SIGKILL));
        EXPECT_EQ(co_await corio::run_in_executor(pool, usable_cpus), all);
    }
    expect_no_child_processes();
}

// ================================================================================================
// Exceptions
// ================================================================================================

CORIO_TEST(ProcessPoolExceptions, StandardExceptionsComeBackWithTheirTypeAndMessage) {
    {
        corio::ProcessPoolExecutor pool(1);
        const std::string m = "what went wrong";
        EXPECT_TRUE(raised_exactly<std::invalid_argument>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kInvalidArgument, m)), m));
        EXPECT_TRUE(raised_exactly<std::out_of_range>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kOutOfRange, m)), m));
        EXPECT_TRUE(raised_exactly<std::logic_error>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kLogicError, m)), m));
        EXPECT_TRUE(raised_exactly<std::runtime_error>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kRuntimeError, m)), m));
        EXPECT_TRUE(raised_exactly<std::overflow_error>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kOverflowError, m)), m));
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolExceptions, CorioErrorsComeBackWithTheirTypeAndMessage) {
    {
        corio::ProcessPoolExecutor pool(1);
        const std::string m = "nope";
        EXPECT_TRUE(raised_exactly<corio::ValueError>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kValueError, m)), m));
        EXPECT_TRUE(raised_exactly<corio::InvalidStateError>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kInvalidStateError, m)), m));
        EXPECT_TRUE(raised_exactly<corio::TimeoutError>(
            co_await error_of(corio::run_in_executor(pool, fail_with, kTimeout, m)), m));

        const std::string path = "/no/such/file";
        const std::exception_ptr e =
            co_await error_of(corio::run_in_executor(pool, fail_with, kFileNotFound, path));
        EXPECT_TRUE(raised_exactly<corio::FileNotFoundError>(
            e, "[Errno 2] No such file or directory: /no/such/file"));
        EXPECT_TRUE(corio::holds<corio::OSError>(e));
        try {
            if (e) std::rethrow_exception(e);
        } catch (const corio::OSError& os) {
            EXPECT_EQ(os.code(), ENOENT);
        }
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolExceptions, AnExceptionOfAnotherClassIsARuntimeErrorNamingIt) {
    {
        corio::ProcessPoolExecutor pool(1);
        const std::string m = "unexpected token";
        const std::exception_ptr e =
            co_await error_of(corio::run_in_executor(pool, fail_with, kParseError, m));
        EXPECT_TRUE(raised_exactly<corio::RuntimeError>(
            e, "(anonymous namespace)::ParseError: unexpected token"));
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolExceptions, SomethingThatIsNotAnExceptionClassIsARuntimeError) {
    {
        corio::ProcessPoolExecutor pool(1);
        const std::string m = "unused";
        const std::exception_ptr e =
            co_await error_of(corio::run_in_executor(pool, fail_with, kNotAnException, m));
        EXPECT_TRUE(corio::holds<corio::RuntimeError>(e)) << corio::describe(e);
        EXPECT_FALSE(corio::holds<corio::BrokenProcessPool>(e));
        EXPECT_TRUE(mentions(corio::describe(e), "unknown exception")) << corio::describe(e);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolExceptions, AJobThatThrowsLeavesItsWorkerServing) {
    {
        corio::ProcessPoolExecutor pool(1);
        const std::vector<pid_t> before = pool.worker_pids();
        const std::string m = "once";
        (void)co_await error_of(corio::run_in_executor(pool, fail_with, kRuntimeError, m));
        EXPECT_EQ(co_await corio::run_in_executor(pool, square, 3), 9);
        EXPECT_EQ(pool.worker_pids(), before);
    }
    expect_no_child_processes();
}

// ================================================================================================
// Workers that die
// ================================================================================================

CORIO_TEST(ProcessPoolCrashes, ACrashFailsTheJobWithBrokenProcessPoolNamingTheSignal) {
    {
        corio::ProcessPoolExecutor pool(1);
        const pid_t crashed = pool.worker_pids().at(0);
        const std::exception_ptr e =
            co_await error_of(corio::run_in_executor(pool, crash_with, SIGSEGV));
        const std::optional<corio::BrokenProcessPool> broken = broken_pool(e);
        CORIO_ASSERT(broken.has_value());
        EXPECT_TRUE(corio::holds<corio::RuntimeError>(e));
        EXPECT_EQ(std::string(broken->what()),
                  "worker " + std::to_string(crashed) +
                      " died of signal 11 (SIGSEGV: Segmentation fault) while running a job");
        EXPECT_EQ(broken->pid(), crashed);
        EXPECT_EQ(broken->term_signal(), SIGSEGV);
        EXPECT_EQ(broken->exit_status(), -1);
        EXPECT_TRUE(reaped(crashed));

        // The pool goes on, on a replacement.
        const pid_t next = co_await corio::run_in_executor(pool, worker_pid);
        EXPECT_NE(next, crashed);
        EXPECT_EQ(pool.worker_pids(), std::vector<pid_t>{next});
        EXPECT_EQ(parent_of(next), ::getpid());
        EXPECT_EQ(co_await corio::run_in_executor(pool, square, 5), 25);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolCrashes, AJobThatExitsFailsWithBrokenProcessPoolNamingTheStatus) {
    {
        corio::ProcessPoolExecutor pool(1);
        const pid_t exited = pool.worker_pids().at(0);
        const std::exception_ptr e = co_await error_of(corio::run_in_executor(pool, exit_with, 3));
        const std::optional<corio::BrokenProcessPool> broken = broken_pool(e);
        CORIO_ASSERT(broken.has_value());
        EXPECT_EQ(std::string(broken->what()),
                  "worker " + std::to_string(exited) + " exited with status 3 while running a job");
        EXPECT_EQ(broken->exit_status(), 3);
        EXPECT_EQ(broken->term_signal(), 0);
        EXPECT_EQ(co_await corio::run_in_executor(pool, square, 6), 36);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolCrashes, AJobThatAbortsFailsWithBrokenProcessPoolNamingSIGABRT) {
    {
        corio::ProcessPoolExecutor pool(1);
        const std::exception_ptr e = co_await error_of(corio::run_in_executor(pool, abort_now));
        const std::optional<corio::BrokenProcessPool> broken = broken_pool(e);
        CORIO_ASSERT(broken.has_value());
        EXPECT_TRUE(mentions(broken->what(), "(SIGABRT: Aborted)")) << broken->what();
        EXPECT_EQ(co_await corio::run_in_executor(pool, square, 7), 49);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolCrashes, OtherWorkersGoOnWithTheirJobsWhileOneCrashes) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    Release release(dir);
    CORIO_ASSERT(release.ok());
    {
        corio::ProcessPoolExecutor pool(2);
        auto blocked = corio::create_task(in_pool(pool, block_until_released, dir.path()));
        CORIO_ASSERT(co_await eventually_exists(dir.file("started")));
        // The other worker takes the crash, and its replacement the next job.
        const std::exception_ptr e =
            co_await error_of(corio::run_in_executor(pool, crash_with, SIGKILL));
        EXPECT_TRUE(corio::holds<corio::BrokenProcessPool>(e)) << corio::describe(e);
        EXPECT_EQ(co_await corio::run_in_executor(pool, square, 8), 64);
        release.release();
        EXPECT_TRUE(co_await blocked);
        EXPECT_EQ(pool.worker_pids().size(), 2u);
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolCrashes, AWorkerKilledWhileIdleIsReplacedBeforeItsNextJob) {
    {
        corio::ProcessPoolExecutor pool(1);
        const pid_t killed = pool.worker_pids().at(0);
        CORIO_ASSERT(::kill(killed, SIGKILL) == 0);
        CORIO_ASSERT(wait_until_dead(killed));
        // The job does not pay for a death it had nothing to do with.
        const pid_t ran_in = co_await corio::run_in_executor(pool, worker_pid);
        EXPECT_NE(ran_in, killed);
        EXPECT_EQ(pool.worker_pids(), std::vector<pid_t>{ran_in});
        EXPECT_TRUE(reaped(killed));
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolCrashes, WithoutItsZygoteThePoolCannotReplaceAWorkerAndSaysWhy) {
    {
        corio::ProcessPoolExecutor pool(1);
        const pid_t worker = pool.worker_pids().at(0);
        std::set<pid_t> others = child_processes();
        others.erase(worker);
        CORIO_ASSERT(others.size() == 1u);
        const pid_t zygote = *others.begin();
        CORIO_ASSERT(::kill(zygote, SIGKILL) == 0);
        CORIO_ASSERT(wait_until_dead(zygote));

        // The worker itself does not need the zygote.
        EXPECT_EQ(co_await corio::run_in_executor(pool, square, 4), 16);

        const std::exception_ptr crash =
            co_await error_of(corio::run_in_executor(pool, crash_with, SIGSEGV));
        const std::optional<corio::BrokenProcessPool> broken = broken_pool(crash);
        CORIO_ASSERT(broken.has_value());
        const std::string what = broken->what();
        EXPECT_TRUE(mentions(what, "died of signal 11 (SIGSEGV")) << what;
        EXPECT_TRUE(mentions(what, "no replacement could be started")) << what;
        EXPECT_TRUE(mentions(
            what, "zygote process " + std::to_string(zygote) + " died of signal 9 (SIGKILL"))
            << what;
        EXPECT_TRUE(pool.worker_pids().empty());

        const std::exception_ptr next = co_await error_of(corio::run_in_executor(pool, square, 2));
        const std::optional<corio::BrokenProcessPool> none = broken_pool(next);
        CORIO_ASSERT(none.has_value());
        EXPECT_TRUE(mentions(none->what(), "no worker process can be started")) << none->what();
        EXPECT_EQ(none->pid(), -1);
        EXPECT_TRUE(reaped(zygote));
    }
    expect_no_child_processes();
}

// ================================================================================================
// Cancellation: a job still queued when its task is cancelled never runs; a running one runs to
// its end and its result is dropped.
// ================================================================================================

CORIO_TEST(ProcessPoolCancellation, CancellingATaskWhoseJobIsQueuedKeepsTheJobFromEverRunning) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    Release release(dir);
    CORIO_ASSERT(release.ok());
    {
        corio::ProcessPoolExecutor pool(1);
        auto first = corio::create_task(in_pool(pool, block_until_released, dir.path()));
        auto second = corio::create_task(in_pool(pool, touch, dir.file("second-ran")));
        // Both tasks have handed in their jobs once the first job runs; the second waits behind
        // it for the only worker.
        CORIO_ASSERT(co_await eventually_exists(dir.file("started")));

        second.cancel();
        EXPECT_THROW(co_await second, corio::CancelledError);
        release.release();
        EXPECT_TRUE(co_await first);
        // A job queued after the cancelled one runs after the point where it would have run.
        co_await corio::run_in_executor(pool, touch, dir.file("third-ran"));
        EXPECT_TRUE(exists(dir.file("third-ran")));
        EXPECT_FALSE(exists(dir.file("second-ran")))
            << "asyncio cancels the concurrent future of a call that has not started";
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolCancellation, CancellingATaskWhoseJobIsRunningRaisesAtOnceAndTheJobGoesOn) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    Release release(dir);
    CORIO_ASSERT(release.ok());
    {
        corio::ProcessPoolExecutor pool(1);
        const pid_t worker = pool.worker_pids().at(0);
        auto call = corio::create_task(in_pool(pool, block_then_finish, dir.path()));
        CORIO_ASSERT(co_await eventually_exists(dir.file("started")));

        call.cancel();
        EXPECT_THROW(co_await call, corio::CancelledError);
        EXPECT_FALSE(exists(dir.file("finished"))) << "the task must not wait for the job";

        release.release();
        // The job runs to its end in the same worker, which then serves the next job.
        EXPECT_EQ(co_await corio::run_in_executor(pool, worker_pid), worker);
        EXPECT_TRUE(exists(dir.file("finished")));
    }
    expect_no_child_processes();
}

// ================================================================================================
// Shutdown
// ================================================================================================

CORIO_TEST(ProcessPoolShutdown, ShutdownReapsEveryWorkerAndTheZygote) {
    corio::ProcessPoolExecutor pool(3);
    const std::vector<pid_t> workers = pool.worker_pids();
    EXPECT_EQ(workers.size(), 3u);
    EXPECT_EQ(co_await corio::run_in_executor(pool, square, 2), 4);
    pool.shutdown();
    for (pid_t pid : workers) EXPECT_TRUE(reaped(pid)) << "worker " << pid;
    EXPECT_TRUE(pool.worker_pids().empty());
    expect_no_child_processes();  // the zygote too
    pool.shutdown();              // a second time: nothing left to do
}

CORIO_TEST(ProcessPoolShutdown, ShutdownRunsTheJobsAlreadyQueuedFirst) {
    {
        corio::ProcessPoolExecutor pool(1);
        auto a = corio::create_task(in_pool(pool, square, 10));
        auto b = corio::create_task(in_pool(pool, square, 11));
        co_await corio::sleep(0s);  // both tasks hand in their jobs
        pool.shutdown();
        expect_no_child_processes();
        EXPECT_EQ(co_await a, 100);
        EXPECT_EQ(co_await b, 121);
    }
}

CORIO_TEST(ProcessPoolShutdown, AfterShutdownRunInExecutorRaisesRuntimeErrorAndTheJobNeverRuns) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    {
        corio::ProcessPoolExecutor pool(1);
        pool.shutdown();
        const std::exception_ptr e =
            co_await error_of(corio::run_in_executor(pool, touch, dir.file("ran")));
        EXPECT_TRUE(
            raised_exactly<corio::RuntimeError>(e, "cannot schedule new futures after shutdown"));
        EXPECT_FALSE(exists(dir.file("ran")));
    }
    expect_no_child_processes();
}

CORIO_TEST(ProcessPoolShutdown,
           ShutdownWithCancelPendingCancelsQueuedJobsAndTheRunningOneFinishes) {
    TempDir dir;
    CORIO_ASSERT(dir.ok());
    Release release(dir);
    CORIO_ASSERT(release.ok());
    {
        corio::ProcessPoolExecutor pool(1);
        auto running = corio::create_task(in_pool(pool, block_until_released, dir.path()));
        auto queued = corio::create_task(in_pool(pool, touch, dir.file("queued-ran")));
        CORIO_ASSERT(co_await eventually_exists(dir.file("started")));

        pool.shutdown(false, true);
        EXPECT_THROW(co_await queued, corio::CancelledError);
        release.release();
        EXPECT_TRUE(co_await running);
        pool.shutdown();
        EXPECT_FALSE(exists(dir.file("queued-ran")));
    }
    expect_no_child_processes();
}

}  // namespace
