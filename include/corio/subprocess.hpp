// Child processes whose pipes are streams (asyncio.subprocess).
//
//     corio::Process sort = co_await corio::create_subprocess_exec(
//         {.in = corio::PIPE, .out = corio::PIPE}, "sort", "-n");
//     auto [out, err] = co_await sort.communicate("3\n1\n2\n");   // out == "1\n2\n3\n"
//     int status = co_await sort.wait();                           // 0
//
//     corio::Process sh = co_await corio::create_subprocess_shell(
//         "ls /nonexistent", {.out = corio::DEVNULL, .err = corio::PIPE});
//     std::string line = co_await sh.err().readline();
//
// Each standard stream of the child is inherited (the default), a pipe (PIPE: the parent gets a
// StreamWriter for the child's stdin, StreamReaders for its stdout and stderr), /dev/null
// (DEVNULL), merged into stdout (STDOUT, for stderr), or a descriptor of the caller
// (Stdio::fd(n)). As asyncio's names `stdin`, `stdout` and `stderr` are macros of <cstdio>, the
// options and accessors are called `in`, `out` and `err`.
//
// The loop learns that a child exited without blocking and without polling: through a pidfd
// (Linux 5.3+), or, where the kernel has none, a SIGCHLD handler. It reaps only its own children
// (waitpid on their pids, never waitpid(-1)), so it coexists with code that manages other
// children. No zombie is left behind: a Process destroyed while its child still runs kills it
// (SIGKILL, as asyncio's transport does when closed) and the loop reaps it; a loop that closes
// kills and reaps the children it still watches.
//
// Pipes are Unix stream socketpairs, as libuv's are: the parent's end is a socket, so writing to
// a child that has exited raises BrokenPipeError and never SIGPIPE.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/streams.hpp"

namespace corio {

// What one of the child's standard streams is connected to.
class Stdio {
  public:
    enum class Kind { Inherit, Pipe, DevNull, Stdout, Fd };

    constexpr Stdio() noexcept = default;
    constexpr Stdio(Kind kind) noexcept : kind_(kind) {}  // NOLINT: PIPE etc. convert implicitly
    // The caller's descriptor `fd` (not owned: it is duplicated into the child and stays open
    // here).
    static constexpr Stdio fd(int fd) noexcept { return Stdio(Kind::Fd, fd); }

    constexpr Kind kind() const noexcept { return kind_; }
    constexpr int descriptor() const noexcept { return fd_; }

  private:
    constexpr Stdio(Kind kind, int fd) noexcept : kind_(kind), fd_(fd) {}
    Kind kind_ = Kind::Inherit;
    int fd_ = -1;
};

inline constexpr Stdio INHERIT{Stdio::Kind::Inherit};
inline constexpr Stdio PIPE{Stdio::Kind::Pipe};
inline constexpr Stdio DEVNULL{Stdio::Kind::DevNull};
// For `err` only: the child's stderr goes wherever its stdout goes.
inline constexpr Stdio STDOUT{Stdio::Kind::Stdout};

struct ProcessOptions {
    Stdio in{};   // the child's stdin
    Stdio out{};  // the child's stdout
    Stdio err{};  // the child's stderr
    // The child's working directory; unset: this process's.
    std::optional<std::string> cwd{};
    // The child's whole environment; unset: this process's. The program is looked up in the
    // PATH of this environment, as Python's subprocess does.
    std::optional<std::map<std::string, std::string>> env{};
    // setsid() in the child: it gets a session and process group of its own, so a signal sent
    // to this process's group (Ctrl-C in a terminal) does not reach it.
    bool start_new_session = false;
    // setpgid(0, process_group) in the child (0: a new group whose id is the child's pid).
    std::optional<pid_t> process_group{};
    // The limit of the stdout/stderr readers' readline/readuntil.
    std::size_t limit = kDefaultStreamLimit;
};

namespace detail {
struct ChildState;
}  // namespace detail

// A child process (asyncio.subprocess.Process). A movable handle; destroying it while the child
// runs kills the child (the loop then reaps it).
class Process {
  public:
    Process() = default;
    Process(Process&&) noexcept = default;
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process();

    pid_t pid() const noexcept;
    // The exit status once the child has exited and been reaped: its exit code, or -N if it
    // was killed by signal N (as Python). Empty while it runs.
    std::optional<int> returncode() const noexcept;

    // The parent's ends of the pipes; an empty (false) reader or writer for a stream that is
    // not a PIPE.
    StreamWriter& in() noexcept { return in_; }
    StreamReader& out() noexcept { return out_; }
    StreamReader& err() noexcept { return err_; }

    // Waits for the child to exit; returns returncode(). With out/err pipes, a child that writes
    // more than a pipe holds blocks until someone reads: read them, or use communicate().
    Coro<int> wait();
    // Sends `input` to stdin and closes it, reads stdout and stderr to their end, all at once,
    // then waits for the child to exit: no deadlock however much flows each way. Returns what
    // the child wrote to stdout and stderr ("" for a stream that is not a PIPE). ValueError for
    // non-empty input when stdin is not a PIPE. A child that exits without reading its input is
    // not an error.
    Coro<std::pair<std::string, std::string>> communicate(std::string input = {});

    // Sends `sig` to the child; does nothing once it has exited (its pid may be reused).
    void send_signal(int sig);
    void terminate();  // SIGTERM
    void kill();       // SIGKILL

  private:
    friend struct ProcessAccess;
    std::shared_ptr<detail::ChildState> state_;
    StreamWriter in_;
    StreamReader out_;
    StreamReader err_;
};

namespace detail {

// A command-line argument, or a range of them (std::vector<std::string>, ...).
template <class A>
concept ProcessArg = std::is_convertible_v<A, std::string_view> ||
    (std::ranges::input_range<A>&&
         std::is_convertible_v<std::ranges::range_reference_t<A>, std::string_view>);

template <ProcessArg A>
void append_arg(std::vector<std::string>& argv, A&& arg) {
    if constexpr (std::is_convertible_v<A, std::string_view>) {
        argv.emplace_back(std::string_view(arg));
    } else {
        for (auto&& a : arg) argv.emplace_back(std::string_view(a));
    }
}

Coro<Process> spawn_exec(std::vector<std::string> argv, ProcessOptions options);

}  // namespace detail

// Runs `program` with the arguments that follow (argv[0] is `program`), like Python's
// create_subprocess_exec(program, *args). An argument is a string or a range of strings:
//
//     co_await corio::create_subprocess_exec("ls", "-l", "/tmp");
//     co_await corio::create_subprocess_exec({.out = corio::PIPE}, "git", "log", extra_args);
//
// A program without '/' is looked up in PATH. FileNotFoundError (or PermissionError, ...)
// naming the program if it cannot be executed; ValueError for a misused option (STDOUT for `in`
// or `out`, an empty program). (g++ 12 cannot compile a braced list of strings, such as
// {"-l", "/tmp"}, inside a co_await expression: pass the arguments one by one, or a named
// vector. It also destroys a braced ProcessOptions that sets `cwd` or `env` twice when it is
// written inside the co_await expression: give such options a name first.)
template <detail::ProcessArg... Args>
Coro<Process> create_subprocess_exec(ProcessOptions options, std::string program, Args&&... args) {
    std::vector<std::string> argv;
    argv.push_back(std::move(program));
    (detail::append_arg(argv, std::forward<Args>(args)), ...);
    return detail::spawn_exec(std::move(argv), std::move(options));
}
template <detail::ProcessArg... Args>
Coro<Process> create_subprocess_exec(std::string program, Args&&... args) {
    return create_subprocess_exec(ProcessOptions{}, std::move(program),
                                  std::forward<Args>(args)...);
}
// Runs `command` with /bin/sh -c. The shell's syntax applies: quote what comes from outside.
Coro<Process> create_subprocess_shell(std::string command, ProcessOptions options = {});
Coro<Process> create_subprocess_shell(ProcessOptions options, std::string command);

}  // namespace corio
