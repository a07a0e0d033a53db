// create_subprocess_exec/shell and the loop's child watcher (asyncio.subprocess, and the child
// watchers of asyncio.unix_events).
//
// Spawning uses posix_spawn: glibc implements it with clone(CLONE_VM | CLONE_VFORK), so a large
// parent is not copied, and an exec failure comes back as an error code instead of a child that
// exits 127. The program is looked up in PATH here rather than by posix_spawnp, so that the PATH
// of a replacement environment is the one searched (as Python does) and a missing program is
// named in the error.
#include "corio/subprocess.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "corio/errors.hpp"
#include "corio/events.hpp"
#include "corio/locks.hpp"
#include "corio/tasks.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere

namespace corio {
namespace detail {

// What a Process and the loop's watcher share about one child.
struct ChildState {
    pid_t pid = -1;
    int pidfd = -1;  // -1 when the watcher relies on SIGCHLD
    std::optional<int> returncode;
    Event exited;

    // Python's convention: the exit code, or -N for death by signal N.
    void record(int status) noexcept {
        returncode = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
        exited.set();
    }
    void signal(int sig) const {
        if (returncode) return;  // reaped: the pid may already belong to another process
        // Not reaped yet, so the pid is still ours even if the child has exited (a zombie).
        const int rc =
            pidfd >= 0 ? static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0))
                       : ::kill(pid, sig);
        if (rc != 0)
            throw_os_error(errno, "sending signal " + std::to_string(sig) + " to process " +
                                      std::to_string(pid));
    }
};

// Learns when the loop's children exit and reaps them (waitpid on their own pids only, so it
// leaves alone the children that other code manages). With a pidfd per child, the loop simply
// watches the pidfd, which becomes readable when the child exits. Without (kernels before 5.3,
// or CORIO_CHILD_WATCHER=sigchld), a SIGCHLD handler on the loop polls each child with WNOHANG:
// SIGCHLD carries no reliable pid, since deliveries merge.
class ChildWatcher {
  public:
    explicit ChildWatcher(EventLoop& loop) : loop_(loop) {
        const char* choice = std::getenv("CORIO_CHILD_WATCHER");
        use_pidfd_ = choice == nullptr || std::string_view(choice) != "sigchld";
    }

    // Before a child is started: what can fail without it (SIGCHLD belongs to one loop at a
    // time, so a second loop cannot watch children that way) fails here, before there is a
    // child to leave behind.
    void prepare() {
        if (!use_pidfd_) install_sigchld();
    }

    void watch(const std::shared_ptr<ChildState>& child) {
        children_.push_back(child);
        try {
            if (use_pidfd_) {
                const int fd = static_cast<int>(::syscall(SYS_pidfd_open, child->pid, 0));
                if (fd >= 0) {
                    child->pidfd = fd;
                    loop_.add_reader(fd, [this, child] {
                        if (reap(*child, WNOHANG)) forget(*child);
                    });
                    return;
                }
                if (errno != ENOSYS)
                    throw_os_error(errno, "pidfd_open(" + std::to_string(child->pid) + ")");
                use_pidfd_ = false;  // the kernel has no pidfds: SIGCHLD from now on
            }
            install_sigchld();
        } catch (...) {
            // Without a way to see it exit, the child cannot be left running.
            try {
                child->signal(SIGKILL);
            } catch (...) {
            }
            reap(*child, 0);
            forget(*child);
            throw;
        }
        // It may have exited before the handler was there to hear it.
        if (reap(*child, WNOHANG)) forget(*child);
    }

    // For the loop's close(): the children still running are killed, and every child reaped.
    void close() noexcept {
        for (const auto& child : children_) {
            if (child->returncode) continue;
            try {
                child->signal(SIGKILL);
            } catch (...) {
                // Nothing better to do: the waitpid below then waits for it to end on its own.
            }
            reap(*child, 0);
            if (child->pidfd >= 0) close_pidfd(*child);
        }
        children_.clear();
    }

  private:
    // waitpid(pid, options); true once the child is reaped.
    static bool reap(ChildState& child, int options) noexcept {
        if (child.returncode) return true;
        int status = 0;
        pid_t r;
        do {
            r = ::waitpid(child.pid, &status, options);
        } while (r < 0 && errno == EINTR);
        if (r == child.pid) {
            child.record(status);
            return true;
        }
        if (r < 0 && errno == ECHILD) {
            // Someone else reaped it (a SIGCHLD handler calling waitpid(-1), or SIGCHLD set to
            // SIG_IGN): its status is lost. Python reports 255 in that case.
            child.returncode = 255;
            child.exited.set();
            return true;
        }
        return false;
    }

    void forget(ChildState& child) noexcept {
        if (child.pidfd >= 0) {
            loop_.remove_reader(child.pidfd);
            close_pidfd(child);
        }
        std::erase_if(children_, [&](const auto& c) { return c.get() == &child; });
    }

    // remove_reader (forget) or the loop's close came first: the backend no longer watches it.
    static void close_pidfd(ChildState& child) noexcept { ::close(std::exchange(child.pidfd, -1)); }

    void install_sigchld() {
        if (sigchld_installed_) return;
        loop_.add_signal_handler(SIGCHLD, [this] { reap_exited(); });
        sigchld_installed_ = true;
    }

    void reap_exited() noexcept {
        std::vector<std::shared_ptr<ChildState>> reaped;
        for (const auto& child : children_)
            if (reap(*child, WNOHANG)) reaped.push_back(child);
        for (const auto& child : reaped) forget(*child);
    }

    EventLoop& loop_;
    bool use_pidfd_ = true;
    bool sigchld_installed_ = false;
    std::vector<std::shared_ptr<ChildState>> children_;
};

void close_child_watcher(ChildWatcher& watcher) noexcept {
    watcher.close();
}

}  // namespace detail

struct ProcessAccess {
    static Process make(std::shared_ptr<detail::ChildState> state) {
        Process p;
        p.state_ = std::move(state);
        return p;
    }
    static void connect(Process& p, StreamWriter in, StreamReader out, StreamReader err) {
        p.in_ = std::move(in);
        p.out_ = std::move(out);
        p.err_ = std::move(err);
    }
};

namespace {

// A descriptor closed when it goes out of scope (the child's ends of the pipes, once spawned).
class Fd {
  public:
    Fd() noexcept = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept {
        if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    }

  private:
    int fd_ = -1;
};

// A close-on-exec duplicate of `fd` numbered 3 or more, so that installing the child's stdin,
// stdout and stderr (dup2 onto 0, 1, 2, in that order) never overwrites a descriptor that a
// later step still has to read from.
Fd above_stdio(int fd, const char* what) {
    const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0) throw_os_error(errno, what);
    return Fd(dup);
}

std::string quoted(std::string_view s) {
    // Appended piece by piece: "'" + std::string(s) + "'" trips a false -Wrestrict in g++ 12 -O3.
    std::string out;
    out.reserve(s.size() + 2);
    out += '\'';
    out += s;
    out += '\'';
    return out;
}

// Python's os.get_exec_path(env): the PATH that will be searched.
std::string exec_path(const ProcessOptions& options) {
    if (options.env) {
        auto it = options.env->find("PATH");
        if (it != options.env->end()) return it->second;
    } else if (const char* path = std::getenv("PATH")) {
        return path;
    }
    return "/bin:/usr/bin";  // glibc's confstr(_CS_PATH)
}

// Where `program` is, as execvp would find it. FileNotFoundError or PermissionError naming it.
std::string find_program(const std::string& program, const ProcessOptions& options) {
    if (program.find('/') != std::string::npos) return program;
    const std::string path = exec_path(options);
    int denied = 0;
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(start, end - start);
        start = end + 1;
        // An empty entry means the current directory (the child's, if cwd is given).
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + program;
        if (options.cwd && candidate.front() != '/') candidate = *options.cwd + "/" + candidate;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        denied = EACCES;
    }
    throw_os_error(denied != 0 ? denied : ENOENT, quoted(program));
}

// The child's end and the parent's end of one standard stream.
struct StdioPlan {
    Fd child;   // dup2'ed onto the stream in the child; -1: nothing to install
    Fd parent;  // PIPE: the parent's end
    bool devnull = false;
    bool to_stdout = false;
};

StdioPlan plan_stdio(Stdio s, int stream) {
    static constexpr std::array<const char*, 3> names{"in", "out", "err"};
    StdioPlan plan;
    switch (s.kind()) {
        case Stdio::Kind::Inherit:
            break;
        case Stdio::Kind::DevNull:
            plan.devnull = true;
            break;
        case Stdio::Kind::Stdout:
            if (stream != 2)
                throw ValueError(std::string("STDOUT can only be used for `err`, not `") +
                                 names[static_cast<std::size_t>(stream)] + "`");
            plan.to_stdout = true;
            break;
        case Stdio::Kind::Fd:
            if (s.descriptor() < 0)
                throw ValueError("Stdio::fd(" + std::to_string(s.descriptor()) +
                                 "): not a descriptor");
            plan.child = above_stdio(s.descriptor(), "Stdio::fd: duplicating the descriptor");
            break;
        case Stdio::Kind::Pipe: {
            // Blocking at both ends: the parent's end becomes non-blocking when its stream
            // adopts it, the child's end must stay as programs expect their stdio to be.
            std::array<int, 2> fds{};
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0)
                throw_os_error(errno, "socketpair() for a pipe to the child");
            Fd a(fds[0]);
            plan.parent = Fd(fds[1]);
            plan.child = a.get() < 3 ? above_stdio(a.get(), "socketpair") : std::move(a);
            break;
        }
    }
    return plan;
}

// posix_spawn's file actions and attributes, freed on every path.
struct SpawnSetup {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    SpawnSetup() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnSetup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnSetup(const SpawnSetup&) = delete;
    SpawnSetup& operator=(const SpawnSetup&) = delete;
};

void check(int rc, const char* what) {
    if (rc != 0) throw_os_error(rc, what);
}

Coro<Process> spawn(std::vector<std::string> argv, const ProcessOptions& options,
                    const std::string& program) {
    EventLoop& loop = get_running_loop();
    if (program.empty()) throw ValueError("create_subprocess_exec: the program is empty");
    // A C string ends at a NUL: the child would run with something else than what was asked
    // (Python: "embedded null byte").
    auto check_nul = [](std::string_view s, const char* what) {
        const std::size_t nul = s.find('\0');
        if (nul != std::string_view::npos)
            throw ValueError(std::string("embedded null byte in ") + what + ": " +
                             quoted(s.substr(0, nul)) + "...");
    };
    for (const std::string& a : argv) check_nul(a, "an argument");
    if (options.cwd) check_nul(*options.cwd, "cwd");
    if (options.env) {
        for (const auto& [name, value] : *options.env) {
            check_nul(name, "an environment variable's name");
            check_nul(value, "an environment variable's value");
        }
    }
    const std::string path = find_program(program, options);

    std::array<StdioPlan, 3> plans{plan_stdio(options.in, 0), plan_stdio(options.out, 1),
                                   plan_stdio(options.err, 2)};
    SpawnSetup setup;
    for (int stream = 0; stream < 3; ++stream) {
        StdioPlan& plan = plans[static_cast<std::size_t>(stream)];
        if (plan.child.get() >= 0) {
            check(posix_spawn_file_actions_adddup2(&setup.actions, plan.child.get(), stream),
                  "posix_spawn_file_actions_adddup2");
        } else if (plan.devnull) {
            check(posix_spawn_file_actions_addopen(&setup.actions, stream, "/dev/null", O_RDWR, 0),
                  "posix_spawn_file_actions_addopen");
        } else if (plan.to_stdout) {
            check(posix_spawn_file_actions_adddup2(&setup.actions, 1, 2),
                  "posix_spawn_file_actions_adddup2");
        }
    }
    if (options.cwd) {
        check(posix_spawn_file_actions_addchdir_np(&setup.actions, options.cwd->c_str()),
              "posix_spawn_file_actions_addchdir_np");
    }

    // The child starts with no signal blocked (a pool thread may have spawned it with some
    // blocked), and, as Python's restore_signals, with SIGPIPE and SIGXFSZ back to their
    // defaults in case this process ignores them.
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    sigset_t none;
    sigemptyset(&none);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGXFSZ);
    check(posix_spawnattr_setsigmask(&setup.attr, &none), "posix_spawnattr_setsigmask");
    check(posix_spawnattr_setsigdefault(&setup.attr, &defaults), "posix_spawnattr_setsigdefault");
    if (options.start_new_session) flags |= POSIX_SPAWN_SETSID;
    if (options.process_group) {
        if (*options.process_group < 0) throw ValueError("process_group must not be negative");
        flags |= POSIX_SPAWN_SETPGROUP;
        check(posix_spawnattr_setpgroup(&setup.attr, *options.process_group),
              "posix_spawnattr_setpgroup");
    }
    check(posix_spawnattr_setflags(&setup.attr, flags), "posix_spawnattr_setflags");

    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    std::vector<char*> env;
    char** envp = environ;
    if (options.env) {
        for (const auto& [name, value] : *options.env) {
            if (name.empty() || name.find('=') != std::string::npos)
                throw ValueError("invalid environment variable name " + quoted(name));
            env_strings.push_back(name + "=" + value);
        }
        for (std::string& s : env_strings) env.push_back(s.data());
        env.push_back(nullptr);
        envp = env.data();
    }

    auto& watcher = detail::LoopAccess::child_watcher(loop);
    if (!watcher) watcher = std::make_shared<detail::ChildWatcher>(loop);
    watcher->prepare();

    pid_t pid = -1;
    const int rc =
        ::posix_spawn(&pid, path.c_str(), &setup.actions, &setup.attr, args.data(), envp);
    if (rc != 0) {
        // glibc reports the child's chdir failure the same way as the exec's: say which.
        struct stat st {};
        if (options.cwd && ::stat(options.cwd->c_str(), &st) != 0)
            throw_os_error(errno, "the working directory " + quoted(*options.cwd));
        if (options.cwd && !S_ISDIR(st.st_mode))
            throw_os_error(ENOTDIR, "the working directory " + quoted(*options.cwd));
        if (options.cwd && rc == EACCES && ::access(options.cwd->c_str(), X_OK) != 0)
            throw_os_error(EACCES, "the working directory " + quoted(*options.cwd));
        throw_os_error(rc, quoted(program));
    }

    auto state = std::make_shared<detail::ChildState>();
    state->pid = pid;
    watcher->watch(state);
    for (StdioPlan& plan : plans) plan.child.reset();

    // From here on the child runs: nothing may throw without the Process that kills it.
    Process process = ProcessAccess::make(std::move(state));
    auto reader = [&](StdioPlan& plan) {
        if (plan.parent.get() < 0) return StreamReader();
        return detail::open_read_stream(Socket::adopt(plan.parent.release()), options.limit);
    };
    StreamWriter in;
    if (plans[0].parent.get() >= 0)
        in = open_stream(Socket::adopt(plans[0].parent.release()), options.limit).second;
    StreamReader out = reader(plans[1]);
    StreamReader err = reader(plans[2]);
    ProcessAccess::connect(process, std::move(in), std::move(out), std::move(err));
    co_return process;
}

Coro<void> feed_stdin(StreamWriter writer, std::string input) {
    if (!writer) co_return;
    // A child that exits, or closes its stdin, without reading everything is not an error here
    // (asyncio ignores it too): its exit status says how it went.
    bool gone = false;
    try {
        if (!input.empty()) {
            writer.write(input);
            co_await writer.drain();
        }
    } catch (const BrokenPipeError&) {
        gone = true;
    } catch (const ConnectionResetError&) {
        gone = true;
    }
    if (gone) {
        writer.abort();
        co_return;
    }
    writer.close();
    try {
        co_await writer.wait_closed();
    } catch (const BrokenPipeError&) {
    } catch (const ConnectionResetError&) {
    }
}

Coro<std::string> read_to_end(StreamReader reader) {
    if (!reader) co_return std::string();
    co_return co_await reader.read(-1);
}

}  // namespace

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        Process old(std::move(*this));  // its child, if still running, is killed
        state_ = std::move(other.state_);
        in_ = std::move(other.in_);
        out_ = std::move(other.out_);
        err_ = std::move(other.err_);
    }
    return *this;
}

Process::~Process() {
    if (!state_ || state_->returncode) return;
    if (detail::running_in_debug_mode()) {
        try {
            detail::report_unclosed("Process", "(pid " + std::to_string(state_->pid) +
                                                   ", still running: it is killed)");
        } catch (...) {
        }
    }
    try {
        state_->signal(SIGKILL);  // the watcher reaps it when it is gone
    } catch (...) {
        // It cannot be signalled (it is gone already): the watcher reaps it all the same.
    }
}

pid_t Process::pid() const noexcept {
    return state_ ? state_->pid : -1;
}

std::optional<int> Process::returncode() const noexcept {
    return state_ ? state_->returncode : std::nullopt;
}

Coro<int> Process::wait() {
    if (!state_) throw RuntimeError("wait() on an empty Process");
    co_await state_->exited.wait();
    co_return *state_->returncode;
}

Coro<std::pair<std::string, std::string>> Process::communicate(std::string input) {
    if (!state_) throw RuntimeError("communicate() on an empty Process");
    if (!input.empty() && !in_)
        throw ValueError("communicate(input): the child's stdin is not a PIPE");
    // All three at once: a child that fills its stdout pipe before it has read all of its
    // input would otherwise wait for us while we wait for it.
    auto [ignored, out, err] =
        co_await gather(feed_stdin(in_, std::move(input)), read_to_end(out_), read_to_end(err_));
    (void)ignored;
    co_await wait();
    co_return std::pair(std::move(out), std::move(err));
}

void Process::send_signal(int sig) {
    if (!state_) throw RuntimeError("send_signal() on an empty Process");
    state_->signal(sig);
}

void Process::terminate() {
    send_signal(SIGTERM);
}

void Process::kill() {
    send_signal(SIGKILL);
}

Coro<Process> detail::spawn_exec(std::vector<std::string> argv, ProcessOptions options) {
    const std::string program = argv.front();
    co_return co_await spawn(std::move(argv), options, program);
}

Coro<Process> create_subprocess_shell(std::string command, ProcessOptions options) {
    std::vector<std::string> argv{"/bin/sh", "-c", std::move(command)};
    co_return co_await spawn(std::move(argv), options, "/bin/sh");
}

Coro<Process> create_subprocess_shell(ProcessOptions options, std::string command) {
    return create_subprocess_shell(std::move(command), std::move(options));
}

}  // namespace corio
