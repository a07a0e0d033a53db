// corio subprocesses (asyncio.subprocess): create_subprocess_exec, create_subprocess_shell,
// Process (wait, communicate, send_signal, terminate, kill), the Stdio choices and
// ProcessOptions, and the loop's child watcher. The behaviours are those CPython pins in
// Lib/test/test_asyncio/test_subprocess.py (and the relevant ones of test_subprocess.py).
//
// The binary runs four times (tests/CMakeLists.txt): on each backend (CORIO_BACKEND=epoll|poll),
// with each child watcher (pidfd by default, CORIO_CHILD_WATCHER=sigchld for the SIGCHLD one).
//
// Every test runs under corio::testing, which fails it when it leaves a descriptor open, a task
// running, an exception unretrieved or a reader watched (a child still watched through its
// pidfd counts), and cancels a body that runs past kBodyTimeout. On top of that, every test
// checks that this process has no child left, zombies included: once at the end of the body,
// while the loop still runs (so the watcher, not the loop's close(), must have reaped them),
// and again once the loop is closed.
//
// Nothing synchronises by sleeping. A child is known to run once it has printed a line, to be
// blocked once it waits for input only the test can give, and to have exited once waitid()
// (WNOWAIT: it stays a zombie for the watcher to reap) says so. Waiting for the watcher to reap
// a child polls, with a generous bound, for the child to leave this process's list of children.
// The programs are Debian's coreutils, dash (/bin/sh) and /usr/bin/python3.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "corio/testing.hpp"
#include "support.hpp"

using corio_test::is_a;
using corio_test::os_code;
using corio_test::raised_by;

using namespace std::chrono_literals;
using corio::Process;

extern char** environ;  // NOLINT: POSIX declares it nowhere

namespace {

// A body that hangs is cancelled (and its test failed) after this long: generous, as 8 MiB
// go through `cat` under the sanitizers.
const corio::Duration kBodyTimeout = std::chrono::seconds(30);
// How long a test waits for the watcher to reap a child before it fails.
constexpr auto kPatience = 20s;
// The real interpreter, not whatever shim PATH finds first.
const std::string kPython = "/usr/bin/python3";

// Whether this run uses the SIGCHLD child watcher (tests/CMakeLists.txt) rather than pidfds.
bool sigchld_watcher() {
    const char* choice = std::getenv("CORIO_CHILD_WATCHER");
    return choice != nullptr && std::string_view(choice) == "sigchld";
}

// --- children of this process --------------------------------------------------------------

// The pids of this process's children, zombies included: every thread's list (a child belongs
// to the thread that created it).
std::vector<pid_t> our_children() {
    std::vector<pid_t> pids;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream in(task.path() / "children");
        pid_t pid = 0;
        while (in >> pid) pids.push_back(pid);
    }
    return pids;
}

bool is_our_child(pid_t pid) {
    const std::vector<pid_t> pids = our_children();
    return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

// "1234 (sleep) S" for each pid: its name and state (Z: a zombie nobody reaped).
std::string describe_processes(const std::vector<pid_t>& pids) {
    std::string s;
    for (pid_t pid : pids) {
        std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
        std::string stat;
        std::getline(in, stat);
        const auto close = stat.rfind(')');
        s += "\n  - " + (close == std::string::npos ? std::to_string(pid) + " (gone)"
                                                    : stat.substr(0, close + 3));
    }
    return s;
}

void expect_no_children(const char* when) {
    const std::vector<pid_t> pids = our_children();
    EXPECT_TRUE(pids.empty()) << "child process(es) left " << when << ":"
                              << describe_processes(pids);
}

// Waits until the watcher has reaped `pid` (it is no longer our child, not even a zombie, and
// kill(pid, 0) finds no such process); false if that takes longer than kPatience.
corio::Coro<bool> reaped(pid_t pid) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (is_our_child(pid)) {
        if (std::chrono::steady_clock::now() > give_up) co_return false;
        co_await corio::sleep(1ms);
    }
    co_return ::kill(pid, 0) != 0 && errno == ESRCH;
}

// How the child `pid` ended, without reaping it (waitid WNOWAIT: it stays a zombie for the
// watcher). Blocks until it has ended: only for children that end on their own or have been
// signalled. "exited 3", "killed by signal 9", "reaped already", or the error.
std::string ended_how(pid_t pid) {
    siginfo_t info{};
    int rc = 0;
    do {
        rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0 && errno == ECHILD) return "reaped already";
    if (rc != 0) return std::string("waitid: ") + std::strerror(errno);
    if (info.si_code == CLD_EXITED) return "exited " + std::to_string(info.si_status);
    if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED)
        return "killed by signal " + std::to_string(info.si_status);
    return "si_code " + std::to_string(info.si_code);
}

// A child started without corio, reaped by the test itself: at the latest when this goes.
class ReapOnExit {
  public:
    explicit ReapOnExit(pid_t pid) noexcept : pid_(pid) {}
    ~ReapOnExit() { (void)reap(); }
    ReapOnExit(const ReapOnExit&) = delete;
    ReapOnExit& operator=(const ReapOnExit&) = delete;
    // waitpid(pid): its status, or empty (with an error reported) if it was not ours to reap.
    std::optional<int> reap() {
        if (pid_ < 0) return std::nullopt;
        const pid_t pid = std::exchange(pid_, -1);
        int status = 0;
        pid_t r = -1;
        do {
            r = ::waitpid(pid, &status, 0);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            ADD_FAILURE() << "waitpid: " << std::strerror(errno);
            return std::nullopt;
        }
        return status;
    }

  private:
    pid_t pid_;
};

// The body, then the check for children while the loop still runs.
corio::Coro<> checking_children(corio::Coro<> body) {
    co_await std::move(body);
    expect_no_children("at the end of the test body");
}

}  // namespace

// A CORIO_TEST that also fails when a child process is left, at the end of the body and after
// the loop's close().
#define SUBPROCESS_TEST(suite, name)                                                    \
    static corio::Coro<> subprocess_test_body_##suite##_##name();                       \
    TEST(suite, name) {                                                                 \
        corio::testing::run(checking_children(subprocess_test_body_##suite##_##name()), \
                            corio::testing::Options{.timeout = kBodyTimeout});          \
        expect_no_children("after the loop was closed");                                \
    }                                                                                   \
    static corio::Coro<> subprocess_test_body_##suite##_##name()

namespace {

// --- outcomes ------------------------------------------------------------------------------
//
// (g++ 12 destroys twice a temporary with a non-trivial destructor made in a co_await
// expression: ProcessOptions that set `cwd` or `env` are therefore named variables here, never
// braced temporaries inside `co_await create_subprocess_exec(...)`.)

// The message of the exception `e` holds ("" for none).
std::string message_of(const std::exception_ptr& e) {
    if (!e) return "";
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (const corio::BaseException& x) {
        return x.what();
    } catch (...) {
        return "?";
    }
}

// What starting a child raised, or null. Should the start succeed where the test expects an
// error, the child is killed and reaped, so that the failure is reported alone.
corio::Coro<std::exception_ptr> spawn_error(corio::Coro<Process> spawning) {
    std::optional<Process> started;
    std::exception_ptr error;
    try {
        started.emplace(co_await std::move(spawning));
    } catch (...) {
        error = std::current_exception();
    }
    if (started) {
        started->kill();
        (void)co_await started->wait();
    }
    co_return error;
}

corio::Coro<> passes(int n = 8) {
    for (int i = 0; i < n; ++i) co_await corio::sleep(0s);
}

// --- files and descriptors -----------------------------------------------------------------

// A descriptor closed when it goes out of scope.
class UniqueFd {
  public:
    explicit UniqueFd(int fd = -1) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~UniqueFd() { reset(); }
    int get() const noexcept { return fd_; }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_;
};

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

Pipe make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Everything left to read from a blocking descriptor, up to end of file.
std::string read_all(int fd) {
    std::string s;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        s.append(buf, static_cast<std::size_t>(n));
    }
    return s;
}

std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// A fresh temporary directory, removed with its contents.
class TempDir {
  public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "corio-subprocess-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        // Canonical, so that it compares equal to what `pwd` prints.
        path_ = std::filesystem::canonical(pattern);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const noexcept { return path_; }
    std::string str() const { return path_.string(); }

    // Writes `content` to the file `name` in the directory, with permissions `mode`.
    std::string file(const std::string& name, const std::string& content,
                     mode_t mode = 0644) const {
        const std::filesystem::path p = path_ / name;
        {
            std::ofstream out(p, std::ios::binary);
            out << content;
        }
        if (::chmod(p.c_str(), mode) != 0) throw std::runtime_error("chmod failed");
        return p.string();
    }

  private:
    std::filesystem::path path_;
};

// Waits up to kPatience for a blocking descriptor to become readable, then reads one byte:
// the byte, or '\0' if none came in time.
char read_byte_within_patience(int fd) {
    pollfd p{fd, POLLIN, 0};
    const int timeout_ms =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(kPatience).count());
    if (::poll(&p, 1, timeout_ms) != 1) return '\0';
    char c = '\0';
    return ::read(fd, &c, 1) == 1 ? c : '\0';
}

// The bytes 0..250 repeated: data in which a lost, repeated or reordered block shows.
std::string pattern_bytes(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 251);
    return s;
}

// The fields of /proc/<pid>/stat after the command name: [0] is the state, [1] the ppid, [2]
// the process group, [3] the session.
std::vector<std::string> proc_stat_fields(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(in, stat);
    std::vector<std::string> fields;
    const auto close = stat.rfind(')');
    if (close == std::string::npos) return fields;
    std::istringstream rest(stat.substr(close + 1));
    std::string f;
    while (rest >> f) fields.push_back(f);
    return fields;
}

// The lines of `s`, sorted.
std::vector<std::string> sorted_lines(const std::string& s) {
    std::vector<std::string> lines;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    std::sort(lines.begin(), lines.end());
    return lines;
}

// Restores a signal's disposition on destruction.
class SignalDispositionGuard {
  public:
    SignalDispositionGuard(int sig, void (*handler)(int)) : sig_(sig) {
        struct sigaction action {};
        action.sa_handler = handler;
        sigemptyset(&action.sa_mask);
        ::sigaction(sig, &action, &previous_);
    }
    ~SignalDispositionGuard() { ::sigaction(sig_, &previous_, nullptr); }
    SignalDispositionGuard(const SignalDispositionGuard&) = delete;
    SignalDispositionGuard& operator=(const SignalDispositionGuard&) = delete;

  private:
    int sig_;
    struct sigaction previous_ {};
};

// Restores the calling thread's signal mask on destruction.
class SignalMaskGuard {
  public:
    explicit SignalMaskGuard(int block) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, block);
        ::pthread_sigmask(SIG_BLOCK, &set, &previous_);
    }
    ~SignalMaskGuard() { ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
    SignalMaskGuard(const SignalMaskGuard&) = delete;
    SignalMaskGuard& operator=(const SignalMaskGuard&) = delete;

  private:
    sigset_t previous_{};
};

// A field of /proc/<pid>/status given as hexadecimal (SigBlk, SigIgn, ...), from its text.
std::uint64_t status_mask(const std::string& status, const std::string& field) {
    std::istringstream in(status);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0)
            return std::stoull(line.substr(field.size() + 1), nullptr, 16);
    }
    throw std::runtime_error("no " + field + " in the status");
}

constexpr std::uint64_t signal_bit(int sig) {
    return std::uint64_t{1} << (sig - 1);
}

}  // namespace

// === Pipes: the child's stdin, stdout and stderr as streams ===================================

SUBPROCESS_TEST(SubprocessPipes, CatEchoesStdinToStdoutThenExitsZeroOnEndOfInput) {
    Process cat =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    cat.in().write("line 1\n");
    co_await cat.in().drain();
    EXPECT_EQ(co_await cat.out().readline(), "line 1\n");  // a round trip while it runs
    EXPECT_FALSE(cat.returncode());
    cat.in().write("line 2\n");
    cat.in().close();
    co_await cat.in().wait_closed();
    EXPECT_EQ(co_await cat.out().read(-1), "line 2\n");
    EXPECT_EQ(co_await cat.wait(), 0);
    EXPECT_EQ(cat.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessPipes, ReturncodeIsEmptyWhileTheChildRunsAndPidIsTheChilds) {
    Process sh = co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE},
                                                        "sh", "-c", "echo $$; read x; exit 3");
    EXPECT_GT(sh.pid(), 0);
    EXPECT_EQ(co_await sh.out().readline(), std::to_string(sh.pid()) + "\n");
    EXPECT_FALSE(sh.returncode());  // it waits for a line only we can give
    EXPECT_TRUE(is_our_child(sh.pid()));
    sh.in().write("go\n");
    EXPECT_EQ(co_await sh.wait(), 3);
    EXPECT_EQ(sh.returncode(), 3);
    sh.in().close();
}

SUBPROCESS_TEST(SubprocessPipes, WhatTheChildWroteIsStillReadableAfterItExited) {
    // 16 KiB to each stream: less than the pipes hold, so the child need not wait for us.
    const std::string script =
        "import sys\n"
        "sys.stdout.write('o' * 16384)\n"
        "sys.stderr.write('e' * 16384)\n";
    Process py = co_await corio::create_subprocess_exec({.out = corio::PIPE, .err = corio::PIPE},
                                                        kPython, "-c", script);
    EXPECT_EQ(co_await py.wait(), 0);
    EXPECT_EQ(co_await py.out().read(-1), std::string(16384, 'o'));
    EXPECT_EQ(co_await py.err().read(-1), std::string(16384, 'e'));
    EXPECT_TRUE(py.out().at_eof());
}

SUBPROCESS_TEST(SubprocessPipes, AChildThatClosesItsStdoutEarlyGivesEndOfStreamWhileItRuns) {
    Process sh = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE}, "sh", "-c",
        "echo early; exec >&-; read line; echo \"got $line\" >&2; exit 4");
    EXPECT_EQ(co_await sh.out().read(-1), "early\n");  // the end of the stream...
    EXPECT_FALSE(sh.returncode());                     // ...and the child still runs
    EXPECT_TRUE(is_our_child(sh.pid()));
    sh.in().write("x\n");
    co_await sh.in().drain();
    EXPECT_EQ(co_await sh.err().readline(), "got x\n");
    EXPECT_EQ(co_await sh.wait(), 4);
    sh.in().close();
}

SUBPROCESS_TEST(SubprocessPipes, StdoutForErrMergesStderrIntoStdout) {
    Process sh =
        co_await corio::create_subprocess_exec({.out = corio::PIPE, .err = corio::STDOUT}, "sh",
                                               "-c", "echo out; echo err >&2; echo out2");
    EXPECT_FALSE(sh.err());  // no stream of its own
    EXPECT_EQ(co_await sh.out().read(-1), "out\nerr\nout2\n");
    EXPECT_EQ(co_await sh.wait(), 0);
}

SUBPROCESS_TEST(SubprocessPipes, StreamsThatAreNotPipesHaveEmptyHandles) {
    Process t = co_await corio::create_subprocess_exec("true");
    EXPECT_FALSE(t.in());
    EXPECT_FALSE(t.out());
    EXPECT_FALSE(t.err());
    EXPECT_EQ(co_await t.wait(), 0);
    Process d = co_await corio::create_subprocess_exec(
        {.in = corio::DEVNULL, .out = corio::DEVNULL, .err = corio::DEVNULL}, "true");
    EXPECT_FALSE(d.in());
    EXPECT_FALSE(d.out());
    EXPECT_FALSE(d.err());
    EXPECT_EQ(co_await d.wait(), 0);
}

SUBPROCESS_TEST(SubprocessPipes, TheLimitOptionAppliesToReadlineOnStdoutAndStderr) {
    const std::string long_line(40, 'x');
    Process sh = co_await corio::create_subprocess_exec(
        {.out = corio::PIPE, .err = corio::PIPE, .limit = 16}, "sh", "-c",
        "echo short; echo " + long_line + "; echo " + long_line + " >&2");
    EXPECT_EQ(sh.out().limit(), 16u);
    EXPECT_EQ(sh.err().limit(), 16u);
    EXPECT_EQ(co_await sh.out().readline(), "short\n");
    EXPECT_TRUE(is_a<corio::LimitOverrunError>(co_await raised_by(sh.out().readline())));
    EXPECT_TRUE(is_a<corio::LimitOverrunError>(co_await raised_by(sh.err().readline())));
    // The streams stay usable up to their end.
    (void)co_await sh.out().read(-1);
    (void)co_await sh.err().read(-1);
    EXPECT_TRUE(sh.out().at_eof());
    EXPECT_EQ(co_await sh.wait(), 0);
}

SUBPROCESS_TEST(SubprocessPipes, WritingToAChildThatHasExitedRaisesBrokenPipeNotSigpipe) {
    // SIGPIPE keeps its default action here: had the write raised it, the test would be dead.
    Process t = co_await corio::create_subprocess_exec({.in = corio::PIPE}, "true");
    EXPECT_EQ(co_await t.wait(), 0);
    auto write_and_drain = [&t]() -> corio::Coro<> {
        t.in().write("data for nobody\n");
        co_await t.in().drain();
    };
    EXPECT_TRUE(is_a<corio::BrokenPipeError>(co_await raised_by(write_and_drain())));
    t.in().abort();
}

// === communicate =============================================================================

SUBPROCESS_TEST(SubprocessCommunicate, SendsTheInputAndReturnsStdoutAndStderr) {
    Process sort = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE}, "sort", "-n");
    auto [out, err] = co_await sort.communicate("3\n1\n2\n");
    EXPECT_EQ(out, "1\n2\n3\n");
    EXPECT_EQ(err, "");
    EXPECT_EQ(sort.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessCommunicate, CollectsStdoutAndStderrApartAndWaitsForTheExit) {
    Process sh = co_await corio::create_subprocess_exec({.out = corio::PIPE, .err = corio::PIPE},
                                                        "sh", "-c", "echo o; echo e >&2; exit 3");
    auto [out, err] = co_await sh.communicate();
    EXPECT_EQ(out, "o\n");
    EXPECT_EQ(err, "e\n");
    EXPECT_EQ(sh.returncode(), 3);
}

SUBPROCESS_TEST(SubprocessCommunicate, WithoutInputClosesStdinSoThatCatEnds) {
    Process cat =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    auto [out, err] = co_await cat.communicate();
    EXPECT_EQ(out, "");
    EXPECT_EQ(err, "");  // stderr is not a PIPE
    EXPECT_EQ(cat.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessCommunicate, EightMebibytesGoThroughCatIntact) {
    const std::string input = pattern_bytes(8u << 20);
    Process cat =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    auto [out, err] = co_await cat.communicate(input);
    EXPECT_EQ(out.size(), input.size());
    EXPECT_TRUE(out == input);  // (not EXPECT_EQ: a failure would print 16 MiB)
    EXPECT_EQ(cat.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessCommunicate, AChildFillingStdoutAndStderrBeforeReadingDoesNotDeadlock) {
    // 4 MiB to stdout, then 4 MiB to stderr, and only then does it read its 4 MiB of input
    // (and echo it): each step blocks until the parent takes the previous one in.
    const std::size_t n = 4u << 20;
    const std::string script =
        "import sys\n"
        "n = int(sys.argv[1])\n"
        "sys.stdout.buffer.write(b'o' * n); sys.stdout.buffer.flush()\n"
        "sys.stderr.buffer.write(b'e' * n); sys.stderr.buffer.flush()\n"
        "data = sys.stdin.buffer.read()\n"
        "sys.stdout.buffer.write(data); sys.stdout.buffer.flush()\n";
    const std::string input = pattern_bytes(n);
    Process py = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE}, kPython, "-c", script,
        std::to_string(n));
    auto [out, err] = co_await py.communicate(input);
    EXPECT_EQ(out.size(), 2 * n);
    EXPECT_TRUE(out == std::string(n, 'o') + input);
    EXPECT_EQ(err.size(), n);
    EXPECT_TRUE(err == std::string(n, 'e'));
    EXPECT_EQ(py.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessCommunicate, AChildThatExitsWithoutReadingItsInputIsNotAnError) {
    // Far more than a pipe holds: the writes meet a closed pipe, which communicate ignores.
    const std::string input = pattern_bytes(4u << 20);
    Process t = co_await corio::create_subprocess_exec({.in = corio::PIPE}, "true");
    auto [out, err] = co_await t.communicate(input);
    EXPECT_EQ(out, "");
    EXPECT_EQ(err, "");
    EXPECT_EQ(t.returncode(), 0);

    Process sh = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .out = corio::PIPE}, "sh", "-c", "read first; echo \"$first\"; exit 3");
    auto [out2, err2] = co_await sh.communicate("one\n" + input);
    EXPECT_EQ(out2, "one\n");
    EXPECT_EQ(sh.returncode(), 3);
}

SUBPROCESS_TEST(SubprocessCommunicate, CommunicatingAgainAfterTheEndGivesNothingMoreAndTheCode) {
    Process sh = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE}, "sh", "-c",
        "cat; echo done >&2; exit 2");
    auto [out, err] = co_await sh.communicate("once\n");
    EXPECT_EQ(out, "once\n");
    EXPECT_EQ(err, "done\n");
    auto [out2, err2] = co_await sh.communicate();
    EXPECT_EQ(out2, "");
    EXPECT_EQ(err2, "");
    EXPECT_EQ(sh.returncode(), 2);
}

SUBPROCESS_TEST(SubprocessCommunicate, InputWhenStdinIsNotAPipeIsAValueError) {
    Process cat =
        co_await corio::create_subprocess_exec({.in = corio::DEVNULL, .out = corio::PIPE}, "cat");
    EXPECT_TRUE(is_a<corio::ValueError>(co_await raised_by(cat.communicate("input"))));
    // The Process is untouched: communicate without input still works.
    auto [out, err] = co_await cat.communicate();
    EXPECT_EQ(out, "");
    EXPECT_EQ(cat.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessCommunicate, ACommunicateThatTimesOutLeavesTheChildToKill) {
    // The usual way to bound a child's run: it keeps stdout open far longer than we wait.
    Process sh = co_await corio::create_subprocess_exec({.out = corio::PIPE}, "sh", "-c",
                                                        "echo partial; exec sleep 30");
    EXPECT_TRUE(
        is_a<corio::TimeoutError>(co_await raised_by(corio::wait_for(sh.communicate(), 100ms))));
    EXPECT_FALSE(sh.returncode());
    sh.kill();
    EXPECT_EQ(co_await sh.wait(), -SIGKILL);
    // A cancelled read loses nothing (streams.hpp): what came before the timeout is still there.
    EXPECT_EQ(co_await sh.out().read(-1), "partial\n");
}

SUBPROCESS_TEST(SubprocessCommunicate, ManyChildrenCommunicateAtOnce) {
    constexpr int kChildren = 20;
    auto one = [](int i) -> corio::Coro<std::string> {
        Process cat =
            co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
        auto [out, err] = co_await cat.communicate(std::string(100000, static_cast<char>('a' + i)));
        co_return out;
    };
    std::vector<corio::Coro<std::string>> runs;
    for (int i = 0; i < kChildren; ++i) runs.push_back(one(i));
    std::vector<std::string> outs = co_await corio::gather(std::move(runs));
    CORIO_ASSERT(outs.size() == kChildren);
    for (int i = 0; i < kChildren; ++i)
        EXPECT_TRUE(outs[static_cast<std::size_t>(i)] ==
                    std::string(100000, static_cast<char>('a' + i)))
            << "child " << i;
}

// === The shell ===============================================================================

SUBPROCESS_TEST(SubprocessShell, TheShellsExitStatusIsTheReturncode) {
    Process sh = co_await corio::create_subprocess_shell("exit 7");
    EXPECT_EQ(co_await sh.wait(), 7);
}

SUBPROCESS_TEST(SubprocessShell, RunsAPipeline) {
    Process sh =
        co_await corio::create_subprocess_shell("printf 'b\\na\\n' | sort", {.out = corio::PIPE});
    auto [out, err] = co_await sh.communicate();
    EXPECT_EQ(out, "a\nb\n");
    EXPECT_EQ(sh.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessShell, TheShellsSyntaxApplies) {
    // Options first (the other overload), variables, quoting, redirection, stdin.
    Process sh = co_await corio::create_subprocess_shell(
        {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE},
        "x='a  b'; echo \"$x\"; read y; echo \"[$y]\" >&2; echo $0");
    auto [out, err] = co_await sh.communicate("from stdin\n");
    EXPECT_EQ(out, "a  b\n/bin/sh\n");
    EXPECT_EQ(err, "[from stdin]\n");
    EXPECT_EQ(sh.returncode(), 0);
}

// === Arguments ===============================================================================

SUBPROCESS_TEST(SubprocessArguments, ReachTheChildByteForByte) {
    // Each argument as the child's os.fsencode gives it back, joined by NULs: no shell, no
    // splitting, no quoting, no globbing, no encoding on the way.
    const std::string script =
        "import os, sys\n"
        "sys.stdout.buffer.write(b'\\0'.join(os.fsencode(a) for a in sys.argv[1:]))\n";
    const std::vector<std::string> args{"two words",         "",         "'single'", "\"double\"",
                                        "back\\slash",       "$HOME",    "*",        "new\nline",
                                        "\xc3\xa9t\xc3\xa9", "\xff\xfe", "-c",       " lead"};
    Process py =
        co_await corio::create_subprocess_exec({.out = corio::PIPE}, kPython, "-c", script, args);
    auto [out, err] = co_await py.communicate();
    std::string expected;
    for (std::size_t i = 0; i < args.size(); ++i)
        expected += (i ? std::string(1, '\0') : "") + args[i];
    EXPECT_EQ(out, expected);
    EXPECT_EQ(py.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessArguments, TheProgramIsArgvZeroAsGivenNotAsFoundInPath) {
    Process cat =
        co_await corio::create_subprocess_exec({.out = corio::PIPE}, "cat", "/proc/self/cmdline");
    auto [cmdline, err] = co_await cat.communicate();
    EXPECT_EQ(cmdline, std::string("cat\0/proc/self/cmdline\0", 23));
    EXPECT_EQ(cat.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessArguments, RangesOfArgumentsAreSplicedInPlace) {
    const std::vector<std::string> middle{"b", "c"};
    const std::vector<std::string_view> views{"d", "e"};
    const std::vector<std::string> none;
    const std::string f = "f";
    Process printf_ = co_await corio::create_subprocess_exec(
        {.out = corio::PIPE}, "printf", "%s|", "a", middle, none, views, f, std::string_view("g"));
    auto [out, err] = co_await printf_.communicate();
    EXPECT_EQ(out, "a|b|c|d|e|f|g|");
    EXPECT_EQ(printf_.returncode(), 0);
}

// === Stdio: DEVNULL, descriptors, inheritance =================================================

SUBPROCESS_TEST(SubprocessStdio, DevnullStdinReadsEndOfFileAtOnce) {
    Process cat =
        co_await corio::create_subprocess_exec({.in = corio::DEVNULL, .out = corio::PIPE}, "cat");
    EXPECT_EQ(co_await cat.out().read(-1), "");
    EXPECT_EQ(co_await cat.wait(), 0);
}

SUBPROCESS_TEST(SubprocessStdio, DevnullConnectsEachStreamToDevNull) {
    // What the child's 0, 1 and 2 are, written to whichever of them is a PIPE.
    const std::string script =
        "import os, sys\n"
        "out = int(sys.argv[1])\n"
        "names = [os.readlink('/proc/self/fd/%d' % fd) for fd in (0, 1, 2)]\n"
        "os.write(out, ' '.join(n if n == '/dev/null' else 'other' for n in names).encode())\n";
    Process a = co_await corio::create_subprocess_exec(
        {.in = corio::DEVNULL, .out = corio::DEVNULL, .err = corio::PIPE}, kPython, "-c", script,
        "2");
    auto [out_a, err_a] = co_await a.communicate();
    EXPECT_EQ(err_a, "/dev/null /dev/null other");
    EXPECT_EQ(a.returncode(), 0);

    Process b = co_await corio::create_subprocess_exec({.out = corio::PIPE, .err = corio::DEVNULL},
                                                       kPython, "-c", script, "1");
    auto [out_b, err_b] = co_await b.communicate();
    EXPECT_EQ(out_b.substr(out_b.find(' ')), " other /dev/null");  // (stdin: inherited)
    EXPECT_EQ(b.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessStdio, AStdioFdSendsStdoutAndStderrToACallersFile) {
    TempDir dir;
    const std::string path = dir.file("out.txt", "");
    UniqueFd file(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    CORIO_ASSERT(file.get() >= 0);
    Process sh = co_await corio::create_subprocess_exec(
        {.out = corio::Stdio::fd(file.get()), .err = corio::STDOUT}, "sh", "-c",
        "echo out; echo err >&2");
    EXPECT_EQ(co_await sh.wait(), 0);
    EXPECT_EQ(::fcntl(file.get(), F_GETFD), FD_CLOEXEC);  // still ours, still open, unchanged
    EXPECT_EQ(slurp(path), "out\nerr\n");
}

SUBPROCESS_TEST(SubprocessStdio, AStdioFdFeedsStdinFromACallersFile) {
    TempDir dir;
    const std::string path = dir.file("in.txt", "z\ny\nx\n");
    UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    CORIO_ASSERT(file.get() >= 0);
    Process sort = co_await corio::create_subprocess_exec(
        {.in = corio::Stdio::fd(file.get()), .out = corio::PIPE}, "sort");
    auto [out, err] = co_await sort.communicate();
    EXPECT_EQ(out, "x\ny\nz\n");
    EXPECT_EQ(sort.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessStdio, AStdioFdConnectsStdoutToACallersPipeAndKeepsNoCopy) {
    Pipe pipe = make_pipe();
    Process sh = co_await corio::create_subprocess_exec({.out = corio::Stdio::fd(pipe.write.get())},
                                                        "sh", "-c", "echo through the pipe");
    pipe.write.reset();
    EXPECT_EQ(co_await sh.wait(), 0);
    // End of file comes only if no copy of the write end is left open anywhere.
    EXPECT_EQ(read_all(pipe.read.get()), "through the pipe\n");
}

SUBPROCESS_TEST(SubprocessStdio, InheritedStreamsAreTheCallersOwn) {
    // Which files the child's 0, 1 and 2 are (device and inode), written to a file since its
    // stdout is ours. Ours are compared, whatever the test runner made them.
    TempDir dir;
    const std::string report = (dir.path() / "report").string();
    const std::string script =
        "import os, sys\n"
        "lines = []\n"
        "for fd in (0, 1, 2):\n"
        "    try:\n"
        "        st = os.fstat(fd)\n"
        "        lines.append('%d:%d\\n' % (st.st_dev, st.st_ino))\n"
        "    except OSError:\n"
        "        lines.append('closed\\n')\n"
        "with open(sys.argv[1], 'w') as f:  # (after: it could take a closed 0, 1 or 2)\n"
        "    f.write(''.join(lines))\n";
    Process py = co_await corio::create_subprocess_exec(kPython, "-c", script, report);
    EXPECT_EQ(co_await py.wait(), 0);
    std::string ours;
    for (int fd = 0; fd < 3; ++fd) {
        struct stat st {};
        ours += ::fstat(fd, &st) == 0
                    ? std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + "\n"
                    : "closed\n";
    }
    EXPECT_EQ(slurp(report), ours);
}

SUBPROCESS_TEST(SubprocessStdio, StdoutIsOnlyForErr) {
    auto in_stdout = corio::create_subprocess_exec({.in = corio::STDOUT}, "true");
    EXPECT_TRUE(is_a<corio::ValueError>(co_await spawn_error(std::move(in_stdout))));
    auto out_stdout = corio::create_subprocess_exec({.out = corio::STDOUT}, "true");
    EXPECT_TRUE(is_a<corio::ValueError>(co_await spawn_error(std::move(out_stdout))));
    // With pipes planned before the misuse is found: none of them leaks (the harness checks).
    auto with_pipes =
        corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::STDOUT}, "true");
    EXPECT_TRUE(is_a<corio::ValueError>(co_await spawn_error(std::move(with_pipes))));
    EXPECT_TRUE(our_children().empty());
}

SUBPROCESS_TEST(SubprocessStdio, ABadStdioFdIsAnError) {
    auto negative = corio::create_subprocess_exec({.out = corio::Stdio::fd(-1)}, "true");
    EXPECT_TRUE(is_a<corio::ValueError>(co_await spawn_error(std::move(negative))));
    // A descriptor that is not open: EBADF, before any child exists.
    const int closed = 1000;
    CORIO_ASSERT(::fcntl(closed, F_GETFD) == -1 && errno == EBADF);
    auto not_open =
        corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::Stdio::fd(closed)}, "true");
    const std::exception_ptr e = co_await spawn_error(std::move(not_open));
    EXPECT_TRUE(is_a<corio::OSError>(e));
    EXPECT_EQ(os_code(e), EBADF) << message_of(e);
    EXPECT_TRUE(our_children().empty());
}

// === Errors from starting the program ==========================================================

SUBPROCESS_TEST(SubprocessErrors, AMissingProgramIsFileNotFoundErrorNamingIt) {
    const std::exception_ptr e =
        co_await spawn_error(corio::create_subprocess_exec("corio-no-such-program", "arg"));
    EXPECT_TRUE(is_a<corio::FileNotFoundError>(e));
    EXPECT_EQ(os_code(e), ENOENT);
    EXPECT_NE(message_of(e).find("corio-no-such-program"), std::string::npos) << message_of(e);
}

SUBPROCESS_TEST(SubprocessErrors, AMissingProgramWithAllThreePipesLeaksNothing) {
    // CPython's test_popen_error_with_stdin_pipe: the pipes made for the child are closed
    // again (the harness fails the test for a descriptor left open), and no child is left.
    const std::exception_ptr e = co_await spawn_error(corio::create_subprocess_exec(
        {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE}, "corio-no-such-program"));
    EXPECT_TRUE(is_a<corio::FileNotFoundError>(e));
    EXPECT_TRUE(our_children().empty());
    const std::exception_ptr by_path = co_await spawn_error(
        corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE, .err = corio::STDOUT},
                                      "/nonexistent-corio-dir/program"));
    EXPECT_TRUE(is_a<corio::FileNotFoundError>(by_path));
    EXPECT_NE(message_of(by_path).find("/nonexistent-corio-dir/program"), std::string::npos)
        << message_of(by_path);
    EXPECT_TRUE(our_children().empty());
}

SUBPROCESS_TEST(SubprocessErrors, ANonExecutableFileIsPermissionError) {
    TempDir dir;
    const std::string path = dir.file("not-executable", "#!/bin/sh\necho no\n", 0644);
    const std::exception_ptr by_path = co_await spawn_error(corio::create_subprocess_exec(path));
    EXPECT_TRUE(is_a<corio::PermissionError>(by_path));
    EXPECT_EQ(os_code(by_path), EACCES);
    // Found through PATH, not executable: the same, not "not found".
    const corio::ProcessOptions options{.env = {{{"PATH", dir.str()}}}};
    const std::exception_ptr by_name =
        co_await spawn_error(corio::create_subprocess_exec(options, "not-executable"));
    EXPECT_TRUE(is_a<corio::PermissionError>(by_name));
    EXPECT_NE(message_of(by_name).find("not-executable"), std::string::npos) << message_of(by_name);
}

SUBPROCESS_TEST(SubprocessErrors, ADirectoryAsTheProgramIsPermissionError) {
    TempDir dir;
    const std::exception_ptr e = co_await spawn_error(corio::create_subprocess_exec(dir.str()));
    EXPECT_TRUE(is_a<corio::PermissionError>(e));
    EXPECT_EQ(os_code(e), EACCES) << message_of(e);
}

SUBPROCESS_TEST(SubprocessErrors, AnExecutableWithoutAShebangIsAnExecFormatError) {
    // As Python's subprocess (OSError [Errno 8]): no silent fallback to running it with sh.
    TempDir dir;
    const std::string path = dir.file("no-shebang", "echo ran by a shell\n", 0755);
    const std::exception_ptr e =
        co_await spawn_error(corio::create_subprocess_exec({.out = corio::PIPE}, path));
    EXPECT_TRUE(is_a<corio::OSError>(e));
    EXPECT_EQ(os_code(e), ENOEXEC) << message_of(e);
}

SUBPROCESS_TEST(SubprocessErrors, AMissingWorkingDirectoryIsFileNotFoundErrorNamingIt) {
    TempDir dir;
    const std::string missing = (dir.path() / "no-such-dir").string();
    const corio::ProcessOptions in_missing{.out = corio::PIPE, .cwd = missing};
    const std::exception_ptr e =
        co_await spawn_error(corio::create_subprocess_exec(in_missing, "pwd"));
    EXPECT_TRUE(is_a<corio::FileNotFoundError>(e));
    EXPECT_NE(message_of(e).find(missing), std::string::npos) << message_of(e);
    // A file as the working directory: ENOTDIR, naming it too.
    const std::string file = dir.file("a-file", "");
    const corio::ProcessOptions in_file{.cwd = file};
    const std::exception_ptr f =
        co_await spawn_error(corio::create_subprocess_exec(in_file, "pwd"));
    EXPECT_EQ(os_code(f), ENOTDIR) << message_of(f);
    EXPECT_NE(message_of(f).find(file), std::string::npos) << message_of(f);
}

SUBPROCESS_TEST(SubprocessErrors, AnEmbeddedNulIsAValueError) {
    // As Python's "ValueError: embedded null byte": a C string would end there, and the child
    // would run with something else than what was asked.
    const std::string nul("a\0b", 3);
    EXPECT_TRUE(is_a<corio::ValueError>(
        co_await spawn_error(corio::create_subprocess_exec("printf", "%s", nul))));
    EXPECT_TRUE(is_a<corio::ValueError>(
        co_await spawn_error(corio::create_subprocess_exec(std::string("true\0x", 6)))));
    EXPECT_TRUE(is_a<corio::ValueError>(
        co_await spawn_error(corio::create_subprocess_shell(std::string("exit 0\0; exit 1", 15)))));
    const corio::ProcessOptions value{.env = {{{"A", nul}, {"PATH", "/usr/bin:/bin"}}}};
    EXPECT_TRUE(is_a<corio::ValueError>(
        co_await spawn_error(corio::create_subprocess_exec(value, "true"))));
    const corio::ProcessOptions name{.env = {{{nul, "x"}, {"PATH", "/usr/bin:/bin"}}}};
    EXPECT_TRUE(
        is_a<corio::ValueError>(co_await spawn_error(corio::create_subprocess_exec(name, "true"))));
    const corio::ProcessOptions cwd{.cwd = std::string("/\0nonexistent", 13)};
    EXPECT_TRUE(
        is_a<corio::ValueError>(co_await spawn_error(corio::create_subprocess_exec(cwd, "true"))));
}

SUBPROCESS_TEST(SubprocessErrors, RunningOutOfDescriptorsFailsWithoutLeavingAnything) {
    // RLIMIT_NOFILE caps descriptor numbers: set to the lowest free one, no descriptor can be
    // opened; a little above, a few can.
    struct NofileLimit {
        rlimit saved{};
        explicit NofileLimit(rlim_t soft) {
            ::getrlimit(RLIMIT_NOFILE, &saved);
            rlimit limit = saved;
            limit.rlim_cur = soft;
            ::setrlimit(RLIMIT_NOFILE, &limit);
        }
        ~NofileLimit() { ::setrlimit(RLIMIT_NOFILE, &saved); }
    };
    const int lowest_free = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    CORIO_ASSERT(lowest_free >= 0);
    ::close(lowest_free);

    // Room for the first pipe (two descriptors) and one more: the second pipe fails, and the
    // first is closed again (the harness checks).
    std::exception_ptr pipes_error;
    {
        NofileLimit limit(static_cast<rlim_t>(lowest_free) + 3);
        pipes_error = co_await spawn_error(corio::create_subprocess_exec(
            {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE}, "true"));
    }
    EXPECT_EQ(os_code(pipes_error), EMFILE) << message_of(pipes_error);
    EXPECT_TRUE(our_children().empty());

    // No room at all: the child starts, but the pidfd watcher cannot open its pidfd. Either the
    // child is killed and reaped before the error is raised, or (the SIGCHLD watcher needs no
    // descriptor) it runs normally.
    std::optional<Process> started;
    std::exception_ptr pidfd_error;
    {
        NofileLimit limit(static_cast<rlim_t>(lowest_free));
        try {
            started.emplace(co_await corio::create_subprocess_exec("sh", "-c", "exit 3"));
        } catch (...) {
            pidfd_error = std::current_exception();
        }
    }
    if (started) {
        EXPECT_EQ(co_await started->wait(), 3);
    } else {
        EXPECT_EQ(os_code(pidfd_error), EMFILE) << message_of(pidfd_error);
        EXPECT_TRUE(our_children().empty()) << describe_processes(our_children());
    }
}

SUBPROCESS_TEST(SubprocessErrors, MisusedOptionsAreValueErrors) {
    EXPECT_TRUE(is_a<corio::ValueError>(co_await spawn_error(corio::create_subprocess_exec(""))));
    const corio::ProcessOptions equals{.env = {{{"A=B", "x"}}}};
    EXPECT_TRUE(is_a<corio::ValueError>(
        co_await spawn_error(corio::create_subprocess_exec(equals, "true"))));
    const corio::ProcessOptions empty_name{.env = {{{"", "x"}, {"PATH", "/usr/bin:/bin"}}}};
    EXPECT_TRUE(is_a<corio::ValueError>(
        co_await spawn_error(corio::create_subprocess_exec(empty_name, "true"))));
    EXPECT_TRUE(is_a<corio::ValueError>(co_await spawn_error(
        corio::create_subprocess_exec({.in = corio::PIPE, .process_group = -1}, "true"))));
    EXPECT_TRUE(our_children().empty());
}

SUBPROCESS_TEST(SubprocessErrors, AnEmptyProcessHandleRaisesRuntimeError) {
    Process p;
    EXPECT_EQ(p.pid(), -1);
    EXPECT_FALSE(p.returncode());
    EXPECT_FALSE(p.in());
    EXPECT_FALSE(p.out());
    EXPECT_FALSE(p.err());
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(p.wait())));
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(p.communicate())));
    EXPECT_THROW(p.send_signal(SIGTERM), corio::RuntimeError);
    EXPECT_THROW(p.kill(), corio::RuntimeError);
}

// === Working directory and environment =========================================================

SUBPROCESS_TEST(SubprocessEnvironment, TheWorkingDirectoryIsHonoured) {
    TempDir dir;
    const corio::ProcessOptions options{.out = corio::PIPE, .cwd = dir.str()};
    Process pwd = co_await corio::create_subprocess_exec(options, "pwd");
    auto [out, err] = co_await pwd.communicate();
    EXPECT_EQ(out, dir.str() + "\n");
    EXPECT_EQ(pwd.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessEnvironment, ARelativeProgramPathIsFoundFromTheWorkingDirectory) {
    // As Python's subprocess on POSIX: "./tool" is looked up in cwd, not in ours.
    TempDir dir;
    dir.file("tool", "#!/bin/sh\necho \"tool ran in $(pwd)\"\n", 0755);
    const corio::ProcessOptions options{.out = corio::PIPE, .cwd = dir.str()};
    Process tool = co_await corio::create_subprocess_exec(options, "./tool");
    auto [out, err] = co_await tool.communicate();
    EXPECT_EQ(out, "tool ran in " + dir.str() + "\n");
    EXPECT_EQ(tool.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessEnvironment, EnvReplacesTheWholeEnvironment) {
    std::map<std::string, std::string> env{{"CORIO_A", "1"},
                                           {"CORIO_B", "two words = and an equals sign"},
                                           {"CORIO_EMPTY", ""},
                                           {"CORIO_UTF8", "\xc3\xa9t\xc3\xa9"},
                                           {"PATH", "/usr/bin:/bin"}};
    const corio::ProcessOptions options{.out = corio::PIPE, .env = env};
    Process printenv = co_await corio::create_subprocess_exec(options, "env");
    auto [out, err] = co_await printenv.communicate();
    std::vector<std::string> expected;
    for (const auto& [name, value] : env) expected.push_back(name + "=" + value);
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(sorted_lines(out), expected);
    EXPECT_EQ(printenv.returncode(), 0);
    // An empty environment is an environment too.
    const corio::ProcessOptions empty{.out = corio::PIPE,
                                      .env = std::map<std::string, std::string>{}};
    Process bare = co_await corio::create_subprocess_exec(empty, "/usr/bin/env");
    auto [bare_out, bare_err] = co_await bare.communicate();
    EXPECT_EQ(bare_out, "");
    EXPECT_EQ(bare.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessEnvironment, WithoutEnvTheChildInheritsOurs) {
    ::setenv("CORIO_SUBPROCESS_TEST_VARIABLE", "inherited value", 1);
    Process sh = co_await corio::create_subprocess_exec({.out = corio::PIPE}, "sh", "-c",
                                                        "echo \"$CORIO_SUBPROCESS_TEST_VARIABLE\"");
    auto [out, err] = co_await sh.communicate();
    ::unsetenv("CORIO_SUBPROCESS_TEST_VARIABLE");
    EXPECT_EQ(out, "inherited value\n");
}

SUBPROCESS_TEST(SubprocessEnvironment, ANonExecutableFileEarlierInPathDoesNotHideALaterProgram) {
    // As execvp: the search goes on past a file it may not execute.
    TempDir first;
    TempDir second;
    first.file("corio-test-tool", "#!/bin/sh\necho first\n", 0644);
    second.file("corio-test-tool", "#!/bin/sh\necho second\n", 0755);
    const corio::ProcessOptions options{.out = corio::PIPE,
                                        .env = {{{"PATH", first.str() + ":" + second.str()}}}};
    Process tool = co_await corio::create_subprocess_exec(options, "corio-test-tool");
    auto [out, err] = co_await tool.communicate();
    EXPECT_EQ(out, "second\n");
    EXPECT_EQ(tool.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessEnvironment, ThePathOfTheGivenEnvironmentIsTheOneSearched) {
    TempDir dir;
    dir.file("corio-test-tool", "#!/bin/sh\necho \"tool got $1\"\n", 0755);
    const corio::ProcessOptions options{.out = corio::PIPE,
                                        .env = {{{"PATH", "/nonexistent-corio-dir:" + dir.str()}}}};
    Process tool =
        co_await corio::create_subprocess_exec(options, "corio-test-tool", "an argument");
    auto [out, err] = co_await tool.communicate();
    EXPECT_EQ(out, "tool got an argument\n");
    EXPECT_EQ(tool.returncode(), 0);
    // Not in our own PATH: without the environment, it is not found.
    EXPECT_TRUE(is_a<corio::FileNotFoundError>(
        co_await spawn_error(corio::create_subprocess_exec("corio-test-tool"))));
    // And our PATH is not searched when the given environment has another.
    const corio::ProcessOptions elsewhere{.env = {{{"PATH", dir.str()}}}};
    EXPECT_TRUE(is_a<corio::FileNotFoundError>(
        co_await spawn_error(corio::create_subprocess_exec(elsewhere, "true"))));
}

// === Sessions and process groups ==============================================================

SUBPROCESS_TEST(SubprocessSessions, StartNewSessionGivesTheChildASessionOfItsOwn) {
    Process cat = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .start_new_session = true}, "cat");
    const std::vector<std::string> stat = proc_stat_fields(cat.pid());
    CORIO_ASSERT(stat.size() > 3);
    EXPECT_EQ(stat[3], std::to_string(cat.pid()));  // session id: its own pid
    EXPECT_EQ(stat[2], std::to_string(cat.pid()));  // process group too
    EXPECT_NE(std::to_string(::getsid(0)), stat[3]);
    cat.in().close();
    EXPECT_EQ(co_await cat.wait(), 0);
}

SUBPROCESS_TEST(SubprocessSessions, ByDefaultTheChildSharesOurSessionAndGroup) {
    Process cat = co_await corio::create_subprocess_exec({.in = corio::PIPE}, "cat");
    const std::vector<std::string> stat = proc_stat_fields(cat.pid());
    CORIO_ASSERT(stat.size() > 3);
    EXPECT_EQ(stat[2], std::to_string(::getpgrp()));
    EXPECT_EQ(stat[3], std::to_string(::getsid(0)));
    cat.in().close();
    EXPECT_EQ(co_await cat.wait(), 0);
}

SUBPROCESS_TEST(SubprocessSessions, ProcessGroupZeroMakesTheChildAGroupLeaderInOurSession) {
    Process leader =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .process_group = 0}, "cat");
    const std::vector<std::string> stat = proc_stat_fields(leader.pid());
    CORIO_ASSERT(stat.size() > 3);
    EXPECT_EQ(stat[2], std::to_string(leader.pid()));
    EXPECT_EQ(stat[3], std::to_string(::getsid(0)));

    // A second child joins the first one's group.
    Process member = co_await corio::create_subprocess_exec(
        {.in = corio::PIPE, .process_group = leader.pid()}, "cat");
    const std::vector<std::string> member_stat = proc_stat_fields(member.pid());
    CORIO_ASSERT(member_stat.size() > 3);
    EXPECT_EQ(member_stat[2], std::to_string(leader.pid()));

    // A signal to the group reaches both, and not us.
    EXPECT_EQ(::kill(-leader.pid(), SIGTERM), 0);
    EXPECT_EQ(co_await leader.wait(), -SIGTERM);
    EXPECT_EQ(co_await member.wait(), -SIGTERM);
    leader.in().close();
    member.in().close();
}

// === Signals ==================================================================================

SUBPROCESS_TEST(SubprocessSignals, KillEndsTheChildWithMinusSigkill) {
    Process cat = co_await corio::create_subprocess_exec({.in = corio::PIPE}, "cat");
    cat.kill();
    EXPECT_EQ(co_await cat.wait(), -SIGKILL);
    EXPECT_EQ(cat.returncode(), -SIGKILL);
    cat.in().close();
}

SUBPROCESS_TEST(SubprocessSignals, TerminateEndsTheChildWithMinusSigterm) {
    Process cat = co_await corio::create_subprocess_exec({.in = corio::PIPE}, "cat");
    cat.terminate();
    EXPECT_EQ(co_await cat.wait(), -SIGTERM);
    cat.in().close();
}

SUBPROCESS_TEST(SubprocessSignals, SendSignalReachesAChildThatHandlesIt) {
    // The handler's C half writes to the wakeup pipe, so a signal that comes before the select
    // is not lost (as it could be just before a signal.pause()).
    const std::string script =
        "import os, select, signal, sys\n"
        "def on_hup(sig, frame):\n"
        "    print('got SIGHUP', flush=True)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGHUP, on_hup)\n"
        "r, w = os.pipe()\n"
        "os.set_blocking(w, False)\n"
        "signal.set_wakeup_fd(w)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    select.select([r], [], [])\n"
        "    os.read(r, 1)\n";
    Process py =
        co_await corio::create_subprocess_exec({.out = corio::PIPE}, kPython, "-c", script);
    EXPECT_EQ(co_await py.out().readline(), "ready\n");  // the handler is in place
    py.send_signal(SIGHUP);
    EXPECT_EQ(co_await py.out().readline(), "got SIGHUP\n");
    EXPECT_EQ(co_await py.wait(), 3);
}

SUBPROCESS_TEST(SubprocessSignals, AnInvalidSignalIsAnOSErrorAndTheChildRunsOn) {
    Process cat =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    const std::exception_ptr e = [&cat] {
        try {
            cat.send_signal(100000);
        } catch (...) {
            return std::current_exception();
        }
        return std::exception_ptr();
    }();
    EXPECT_TRUE(is_a<corio::OSError>(e));
    EXPECT_EQ(os_code(e), EINVAL) << message_of(e);
    auto [out, err] = co_await cat.communicate("alive\n");
    EXPECT_EQ(out, "alive\n");
    EXPECT_EQ(cat.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessSignals, SignalsAfterTheExitAreNoOps) {
    Process t = co_await corio::create_subprocess_exec("true");
    EXPECT_EQ(co_await t.wait(), 0);
    // Reaped: the pid may belong to another process already, which must not be signalled.
    EXPECT_NO_THROW(t.send_signal(SIGTERM));
    EXPECT_NO_THROW(t.terminate());
    EXPECT_NO_THROW(t.kill());
    EXPECT_EQ(t.returncode(), 0);
    EXPECT_EQ(co_await t.wait(), 0);
}

SUBPROCESS_TEST(SubprocessSignals, ASignalToAnExitedButUnreapedChildIsHarmless) {
    // The child ends when we close the pipe it reads; waitid(WNOWAIT) then sees it a zombie,
    // which the loop has had no chance to reap.
    Pipe pipe = make_pipe();
    Process sh = co_await corio::create_subprocess_exec({.in = corio::Stdio::fd(pipe.read.get())},
                                                        "sh", "-c", "read x; exit 4");
    pipe.read.reset();
    pipe.write.reset();
    EXPECT_EQ(ended_how(sh.pid()), "exited 4");
    EXPECT_FALSE(sh.returncode());
    EXPECT_NO_THROW(sh.send_signal(SIGTERM));
    EXPECT_NO_THROW(sh.kill());
    EXPECT_EQ(co_await sh.wait(), 4);  // the exit status, not the signals
}

SUBPROCESS_TEST(SubprocessSignals, TheChildStartsWithNoSignalBlockedAndSigpipeAtItsDefault) {
    // As Python's restore_signals: even if we ignore SIGPIPE and SIGXFSZ and block SIGUSR1, the
    // program starts with the defaults, or `yes | head -1` would never end by SIGPIPE.
    SignalDispositionGuard pipe_ignored(SIGPIPE, SIG_IGN);
    SignalDispositionGuard xfsz_ignored(SIGXFSZ, SIG_IGN);
    SignalMaskGuard usr1_blocked(SIGUSR1);
    Process cat =
        co_await corio::create_subprocess_exec({.out = corio::PIPE}, "cat", "/proc/self/status");
    auto [status, err] = co_await cat.communicate();
    EXPECT_EQ(cat.returncode(), 0);
    EXPECT_EQ(status_mask(status, "SigBlk"), 0u) << status;
    EXPECT_EQ(status_mask(status, "SigIgn") & signal_bit(SIGPIPE), 0u) << status;
    EXPECT_EQ(status_mask(status, "SigIgn") & signal_bit(SIGXFSZ), 0u) << status;

    // And so, in a pipeline, `yes` ends by SIGPIPE (128 + 13) once `head` has had its line;
    // had the shell started with SIGPIPE ignored, it could not undo that, and `yes` would exit 1
    // on EPIPE instead.
    Process sh = co_await corio::create_subprocess_shell(
        "{ yes; echo \"yes: $?\" >&2; } | head -n 1 >/dev/null", {.err = corio::PIPE});
    auto [out, yes_status] = co_await sh.communicate();
    EXPECT_EQ(yes_status, "yes: 141\n");
    EXPECT_EQ(sh.returncode(), 0);
}

// === wait ===================================================================================

SUBPROCESS_TEST(SubprocessWait, ConcurrentWaitersAllGetTheReturncode) {
    Process sh =
        co_await corio::create_subprocess_exec({.in = corio::PIPE}, "sh", "-c", "read x; exit 5");
    auto w1 = corio::create_task(sh.wait(), "wait 1");
    auto w2 = corio::create_task(sh.wait(), "wait 2");
    auto w3 = corio::create_task(sh.wait(), "wait 3");
    co_await passes();
    EXPECT_FALSE(w1.done() || w2.done() || w3.done());
    sh.in().write("go\n");
    auto [a, b, c] = co_await corio::gather(w1, w2, w3);
    EXPECT_EQ(a, 5);
    EXPECT_EQ(b, 5);
    EXPECT_EQ(c, 5);
    sh.in().close();
}

SUBPROCESS_TEST(SubprocessWait, WaitAfterTheExitReturnsAtOnce) {
    Process sh = co_await corio::create_subprocess_exec("sh", "-c", "exit 5");
    EXPECT_EQ(co_await sh.wait(), 5);
    auto again = corio::create_task(sh.wait(), "wait again");
    co_await corio::sleep(0s);  // one pass of the loop: the task ran once
    CORIO_ASSERT(again.done());
    EXPECT_EQ(again.result(), 5);
    EXPECT_EQ(co_await sh.wait(), 5);
}

SUBPROCESS_TEST(SubprocessWait, CancellingAWaitLeavesTheChildRunningAndTheProcessUsable) {
    Process cat =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    auto waiting = corio::create_task(cat.wait(), "wait");
    co_await passes();
    CORIO_ASSERT(!waiting.done());
    waiting.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(waiting)));
    EXPECT_FALSE(cat.returncode());
    EXPECT_TRUE(is_our_child(cat.pid()));
    cat.in().write("still here\n");  // it runs, and its pipes work
    EXPECT_EQ(co_await cat.out().readline(), "still here\n");
    cat.in().close();
    EXPECT_EQ(co_await cat.wait(), 0);
}

SUBPROCESS_TEST(SubprocessWait, AWaitThatTimesOutLeavesTheChildRunning) {
    Process cat = co_await corio::create_subprocess_exec({.in = corio::PIPE}, "cat");
    EXPECT_TRUE(is_a<corio::TimeoutError>(co_await raised_by(corio::wait_for(cat.wait(), 20ms))));
    EXPECT_FALSE(cat.returncode());
    cat.in().close();
    EXPECT_EQ(co_await cat.wait(), 0);
}

SUBPROCESS_TEST(SubprocessWait, WaitReturnsWhenTheChildExitsThoughAGrandchildHoldsItsStdout) {
    // The shell leaves a background `sleep` behind with its stdout: the pipe stays open, but the
    // child has exited, and that is what wait() waits for.
    Process sh = co_await corio::create_subprocess_exec({.out = corio::PIPE}, "sh", "-c",
                                                        "sleep 30 & echo $!");
    const std::string line = co_await sh.out().readline();
    const pid_t grandchild = static_cast<pid_t>(std::stol(line));
    EXPECT_EQ(co_await sh.wait(), 0);
    EXPECT_FALSE(sh.out().at_eof());
    EXPECT_EQ(::kill(grandchild, SIGKILL), 0);  // not ours: whoever adopted it reaps it
    EXPECT_EQ(co_await sh.out().read(-1), "");  // its end of the pipe is closed now
}

// === The Process's lifetime and the watcher ====================================================

SUBPROCESS_TEST(SubprocessLifetime, DestroyingAProcessKillsItsChildWhichTheLoopThenReaps) {
    pid_t pid = -1;
    {
        Process sleeper = co_await corio::create_subprocess_exec("sleep", "30");
        pid = sleeper.pid();
    }
    // (If it were not killed, it would end on its own after 30 s and say so.)
    EXPECT_EQ(ended_how(pid), "killed by signal 9");
    EXPECT_TRUE(co_await reaped(pid));
}

SUBPROCESS_TEST(SubprocessLifetime, CancellingTheTaskThatOwnsAProcessKillsAndReapsItsChild) {
    pid_t pid = -1;
    corio::Event started;
    auto owner = [&]() -> corio::Coro<int> {
        Process sleeper = co_await corio::create_subprocess_exec("sleep", "30");
        pid = sleeper.pid();
        started.set();
        co_return co_await sleeper.wait();
    };
    auto task = corio::create_task(owner(), "owner");
    co_await started.wait();
    co_await passes();  // the task waits for its child
    task.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(task)));
    // The loop has run since the kill, so the watcher may have reaped it already; either way it
    // is reaped well within kPatience, which is shorter than the 30 s it would sleep otherwise.
    const std::string how = ended_how(pid);
    EXPECT_TRUE(how == "killed by signal 9" || how == "reaped already") << how;
    EXPECT_TRUE(co_await reaped(pid));
}

SUBPROCESS_TEST(SubprocessLifetime, MoveAssigningOverARunningProcessKillsTheOldChild) {
    Process a = co_await corio::create_subprocess_exec("sleep", "30");
    Process b =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    const pid_t old_pid = a.pid();
    const pid_t b_pid = b.pid();
    a = std::move(b);
    EXPECT_EQ(a.pid(), b_pid);
    EXPECT_EQ(ended_how(old_pid), "killed by signal 9");
    EXPECT_TRUE(co_await reaped(old_pid));
    // The moved-to handle has the child and its pipes.
    auto [out, err] = co_await a.communicate("moved\n");
    EXPECT_EQ(out, "moved\n");
    EXPECT_EQ(a.returncode(), 0);
}

SUBPROCESS_TEST(SubprocessLifetime, AMovedFromProcessIsEmptyAndTheMovedToOneWorks) {
    Process a =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    const pid_t pid = a.pid();
    Process b(std::move(a));
    EXPECT_EQ(a.pid(), -1);  // NOLINT(bugprone-use-after-move): what is being tested
    EXPECT_FALSE(a.in());    // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(b.pid(), pid);
    EXPECT_TRUE(is_our_child(pid));  // not killed by the move
    auto [out, err] = co_await b.communicate("kept\n");
    EXPECT_EQ(out, "kept\n");
    EXPECT_EQ(b.returncode(), 0);
    a = Process();  // assigning over an empty handle is fine
}

// (A regression test: with the epoll backend, the second child's pidfd, which gets the first
// one's descriptor number, used to be never watched, and its wait() hung.)
SUBPROCESS_TEST(SubprocessLifetime, ChildrenRunOneAfterAnotherAreEachSeenToExit) {
    for (int i = 0; i < 5; ++i) {
        Process sh =
            co_await corio::create_subprocess_exec("sh", "-c", "exit " + std::to_string(i));
        EXPECT_EQ(co_await corio::wait_for(sh.wait(), 10s), i);
    }
}

// (A regression test: with the epoll backend, a descriptor that got the number of a reaped
// child's pidfd used to be never watched.)
SUBPROCESS_TEST(SubprocessLifetime, ADescriptorNumberFreedByAReapedChildWorksForAStream) {
    // The watcher closes a child's pidfd once it has reaped it; the next descriptor opened gets
    // that number, and must be watched afresh.
    Process t = co_await corio::create_subprocess_exec("true");
    std::optional<int> pidfd;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        if (std::filesystem::read_symlink(entry.path(), ec).string() == "anon_inode:[pidfd]")
            pidfd = std::stoi(entry.path().filename().string());
    }
    EXPECT_EQ(co_await t.wait(), 0);
    int pair[2];
    CORIO_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    auto [reader, writer] = corio::open_stream(corio::Socket::adopt(pair[0]));
    UniqueFd peer(pair[1]);
    if (pidfd) {
        EXPECT_EQ(pair[0], *pidfd);  // (the SIGCHLD watcher has no pidfd to reuse)
    }
    auto reading = corio::create_task(reader.readline(), "readline");
    co_await passes();  // the read waits for the descriptor to become readable
    CORIO_ASSERT(::send(peer.get(), "ping\n", 5, MSG_NOSIGNAL) == 5);
    EXPECT_EQ(co_await corio::wait_for(reading, 10s), "ping\n");
    writer.close();
}

SUBPROCESS_TEST(SubprocessLifetime, FiftyChildrenAtOnceEachGiveTheirOwnCode) {
    // Exits close together: SIGCHLD deliveries merge, and the watcher must still see each.
    constexpr int kChildren = 50;
    auto one = [](int code) -> corio::Coro<int> {
        Process sh =
            co_await corio::create_subprocess_exec("sh", "-c", "exit " + std::to_string(code));
        co_return co_await sh.wait();
    };
    std::vector<corio::Coro<int>> runs;
    for (int i = 0; i < kChildren; ++i) runs.push_back(one(i));
    const std::vector<int> codes = co_await corio::gather(std::move(runs));
    CORIO_ASSERT(codes.size() == kChildren);
    for (int i = 0; i < kChildren; ++i) EXPECT_EQ(codes[static_cast<std::size_t>(i)], i);
}

SUBPROCESS_TEST(SubprocessLifetime, FiftyChildrenReleasedTogetherAreAllReaped) {
    // All blocked on one pipe, then released at once by closing it: their exits (and SIGCHLDs)
    // come as close together as can be.
    constexpr int kChildren = 50;
    Pipe gate = make_pipe();
    std::vector<Process> children;
    for (int i = 0; i < kChildren; ++i) {
        children.push_back(
            co_await corio::create_subprocess_exec({.in = corio::Stdio::fd(gate.read.get())}, "sh",
                                                   "-c", "read x; exit " + std::to_string(i)));
    }
    gate.read.reset();
    gate.write.reset();
    std::vector<corio::Coro<int>> waits;
    for (Process& p : children) waits.push_back(p.wait());
    const std::vector<int> codes = co_await corio::gather(std::move(waits));
    CORIO_ASSERT(codes.size() == kChildren);
    for (int i = 0; i < kChildren; ++i) EXPECT_EQ(codes[static_cast<std::size_t>(i)], i);
}

SUBPROCESS_TEST(SubprocessLifetime, TheWatcherReapsOnlyItsOwnChildren) {
    // A child that other code started and will reap itself: it exits, then our child exits
    // and is reaped (SIGCHLD, with the fallback watcher, says nothing of whose child it was).
    pid_t other = -1;
    char sh[] = "sh";
    char dash_c[] = "-c";
    char exit9[] = "exit 9";
    char* argv[] = {sh, dash_c, exit9, nullptr};
    CORIO_ASSERT(::posix_spawnp(&other, "sh", nullptr, nullptr, argv, environ) == 0);
    ReapOnExit reap_other(other);  // whatever happens to the test
    EXPECT_EQ(ended_how(other), "exited 9");
    Process t = co_await corio::create_subprocess_exec("true");
    EXPECT_EQ(co_await t.wait(), 0);
    Process u = co_await corio::create_subprocess_exec("true");
    EXPECT_EQ(co_await u.wait(), 0);
    co_await passes();
    const std::optional<int> status = reap_other.reap();  // still ours to reap
    CORIO_ASSERT(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 9);
}

SUBPROCESS_TEST(SubprocessLifetime, AChildReapedBySomeoneElseEndsTheWaitWith255) {
    // As Python: its status is lost, and wait() must not hang.
    Pipe pipe = make_pipe();
    Process sh = co_await corio::create_subprocess_exec({.in = corio::Stdio::fd(pipe.read.get())},
                                                        "sh", "-c", "read x; exit 4");
    pipe.read.reset();
    pipe.write.reset();
    int status = 0;
    EXPECT_EQ(::waitpid(sh.pid(), &status, 0), sh.pid());
    EXPECT_EQ(co_await sh.wait(), 255);
}

SUBPROCESS_TEST(SubprocessLifetime,
                AnotherThreadsLoopWithChildrenLeavesOursWorkingOrFailingBeforeAnyChild) {
    // One loop per thread, each with its children. With pidfds, ours starts and reaps its own
    // child; the SIGCHLD watcher, SIGCHLD being one loop's at a time, raises RuntimeError, but
    // before it has started a child: one without a Process would run on with nobody to stop it.
    Pipe ready = make_pipe();  // the thread writes a byte once its child runs
    Pipe gate = make_pipe();   // closing the write end ends the thread's child
    int thread_code = -1;
    std::string thread_error;
    std::thread other([&] {
        try {
            auto body = [&]() -> corio::Coro<int> {
                Process sh = co_await corio::create_subprocess_exec(
                    {.in = corio::Stdio::fd(gate.read.get())}, "sh", "-c", "read x; exit 6");
                (void)!::write(ready.write.get(), "r", 1);
                co_return co_await sh.wait();
            };
            thread_code = corio::run(body(), corio::RunOptions{.handle_sigint = false});
        } catch (const std::exception& e) {
            thread_error = e.what();
            (void)!::write(ready.write.get(), "e", 1);
        }
    });
    struct Release {
        Pipe& gate;
        std::thread& other;
        ~Release() {
            gate.write.reset();  // the thread's child ends, and so does the thread
            other.join();
        }
    } release{gate, other};
    EXPECT_EQ(read_byte_within_patience(ready.read.get()), 'r') << thread_error;

    const std::vector<pid_t> before = our_children();
    std::optional<Process> mine;
    std::exception_ptr error;
    try {
        mine.emplace(co_await corio::create_subprocess_exec("sh", "-c", "exit 8"));
    } catch (...) {
        error = std::current_exception();
    }
    if (mine) {
        EXPECT_EQ(co_await mine->wait(), 8);
    } else {
        EXPECT_TRUE(sigchld_watcher()) << "the pidfd watcher failed: " << corio::describe(error);
        EXPECT_TRUE(is_a<corio::RuntimeError>(error));
        EXPECT_EQ(our_children(), before)
            << "create_subprocess_exec raised " << corio::describe(error)
            << " but left a child running:" << describe_processes(our_children());
    }
}

// === Isolation: what the child does not get ===================================================

SUBPROCESS_TEST(SubprocessIsolation, TheChildInheritsNoneOfTheLoopsDescriptors) {
    // Descriptors of the loop (its backend, its wake-up), another child's pipes, a stream:
    // all close-on-exec. The child may only have its 0, 1 and 2, and what this process itself
    // inherited without close-on-exec from whoever started it.
    Process other =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    int pair[2];
    CORIO_ASSERT(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    auto [reader, writer] = corio::open_stream(corio::Socket::adopt(pair[0]));
    UniqueFd peer(pair[1]);

    std::map<int, std::string> inheritable;  // ours, without close-on-exec
    std::set<int> all_ours;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        const int fd = std::stoi(entry.path().filename().string());
        all_ours.insert(fd);
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0 && (flags & FD_CLOEXEC) == 0) {
            std::error_code ec;
            inheritable[fd] = std::filesystem::read_symlink(entry.path(), ec).string();
        }
    }
    const std::string script =
        "import os\n"
        "for name in sorted(os.listdir('/proc/self/fd'), key=int):\n"
        "    try:\n"
        "        print(name, os.readlink('/proc/self/fd/' + name))\n"
        "    except OSError:\n"
        "        pass  # the directory listing's own descriptor, closed by now\n";
    Process py =
        co_await corio::create_subprocess_exec({.out = corio::PIPE}, kPython, "-c", script);
    auto [listing, err] = co_await py.communicate();
    EXPECT_EQ(py.returncode(), 0);
    std::istringstream lines(listing);
    int fd = -1;
    std::string target;
    int count = 0;
    while (lines >> fd >> target) {
        ++count;
        if (fd <= 2) continue;
        auto it = inheritable.find(fd);
        EXPECT_TRUE(it != inheritable.end() && it->second == target)
            << "the child has descriptor " << fd << " -> " << target
            << (all_ours.count(fd) ? " (one of ours, close-on-exec)" : "");
    }
    EXPECT_GE(count, 3) << listing;
    other.in().close();
    EXPECT_EQ(co_await other.wait(), 0);
    writer.close();
}

SUBPROCESS_TEST(SubprocessIsolation, AnotherChildDoesNotHoldOurPipesOpen) {
    // If b inherited a's stdin, a would never see the end of its input while b runs.
    Process a =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    Process b =
        co_await corio::create_subprocess_exec({.in = corio::PIPE, .out = corio::PIPE}, "cat");
    a.in().write("to a\n");
    a.in().close();
    EXPECT_EQ(co_await a.out().read(-1), "to a\n");
    EXPECT_EQ(co_await a.wait(), 0);
    EXPECT_FALSE(b.returncode());  // b still runs
    auto [out, err] = co_await b.communicate("to b\n");
    EXPECT_EQ(out, "to b\n");
    EXPECT_EQ(b.returncode(), 0);
}

// === Closing the loop with children left ========================================================

// These make loops of their own, so they are plain TESTs (a loop cannot run inside another).

TEST(SubprocessLoopClose, ClosingTheLoopKillsAndReapsAChildStillRunning) {
    struct sigaction sigchld_before {};
    ::sigaction(SIGCHLD, nullptr, &sigchld_before);
    Process kept;  // outlives the loop
    {
        corio::EventLoop loop;
        auto start = [&kept]() -> corio::Coro<> {
            kept = co_await corio::create_subprocess_exec("sleep", "30");
        };
        loop.run_until_complete(start());
        EXPECT_FALSE(kept.returncode());
        EXPECT_TRUE(is_our_child(kept.pid()));
        loop.close();
        // At once: close() does not leave it for later.
        EXPECT_EQ(kept.returncode(), -SIGKILL);
        EXPECT_FALSE(is_our_child(kept.pid()));
    }
    EXPECT_EQ(kept.returncode(), -SIGKILL);
    EXPECT_NO_THROW(kept.send_signal(SIGTERM));  // reaped: a no-op
    // The SIGCHLD watcher, if it was the one in use, gave the disposition back.
    struct sigaction sigchld {};
    ::sigaction(SIGCHLD, nullptr, &sigchld);
    EXPECT_TRUE(sigchld.sa_handler == sigchld_before.sa_handler);
    expect_no_children("after the loop was closed");
}

TEST(SubprocessLoopClose, CorioRunKillsAndReapsAChildLeftRunningWithItsPipes) {
    Process kept;  // with pipes, destroyed after the loop is gone
    corio::run([&kept]() -> corio::Coro<> {
        // (It ends on its own after 30 s, should close() not kill it: then it is reported.)
        kept = co_await corio::create_subprocess_exec(
            {.in = corio::PIPE, .out = corio::PIPE, .err = corio::PIPE}, "sh", "-c",
            "read line; echo \"$line\"; exec sleep 30");
        kept.in().write("hello\n");
        EXPECT_EQ(co_await kept.out().readline(), "hello\n");
    }());
    EXPECT_EQ(kept.returncode(), -SIGKILL);
    EXPECT_FALSE(is_our_child(kept.pid()));
    kept = Process();
    expect_no_children("after corio::run returned");
}

TEST(SubprocessLoopClose, ClosingTheLoopReapsAChildWhoseProcessWasJustDestroyed) {
    // Killed by its Process's destructor, but the loop had no pass in which to reap it.
    pid_t pid = -1;
    {
        corio::EventLoop loop;
        auto start_and_drop = [&pid]() -> corio::Coro<> {
            Process sleeper = co_await corio::create_subprocess_exec("sleep", "30");
            pid = sleeper.pid();
        };
        loop.run_until_complete(start_and_drop());
        loop.close();
        EXPECT_FALSE(is_our_child(pid));
    }
    EXPECT_TRUE(::kill(pid, 0) != 0 && errno == ESRCH);
    expect_no_children("after the loop was closed");
}

TEST(SubprocessLoopClose, AChildThatExitsBetweenTwoRunsOfARunnerIsSeenByTheNext) {
    corio::Runner runner;
    Pipe gate = make_pipe();
    Process t;
    runner.run([&t, &gate]() -> corio::Coro<> {
        t = co_await corio::create_subprocess_exec({.in = corio::Stdio::fd(gate.read.get())}, "sh",
                                                   "-c", "read x; exit 5");
    }());
    gate.read.reset();
    gate.write.reset();  // it ends now, while no loop runs
    EXPECT_EQ(ended_how(t.pid()), "exited 5");
    EXPECT_FALSE(t.returncode());
    const int code = runner.run(t.wait());
    EXPECT_EQ(code, 5);
    runner.close();
    expect_no_children("after the runner was closed");
}

TEST(SubprocessLoopClose, ARunnerReapsWhatEachRunLeftWhenItCloses) {
    std::vector<Process> kept;
    corio::Runner runner;
    for (int i = 0; i < 3; ++i) {
        runner.run([&kept]() -> corio::Coro<> {
            kept.push_back(co_await corio::create_subprocess_exec("sleep", "30"));
        }());
    }
    for (const Process& p : kept) EXPECT_FALSE(p.returncode());
    runner.close();
    for (const Process& p : kept) EXPECT_EQ(p.returncode(), -SIGKILL);
    expect_no_children("after the runner was closed");
}
