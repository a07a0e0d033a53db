// ProcessPoolExecutor: worker processes started by a zygote, driven by a ThreadPoolExecutor.
//
// The processes. When the pool is created, this process forks one helper, the zygote, which
// closes every descriptor but the standard streams and its control socket, resets the signal
// handlers, and then only ever forks workers, on request, with CLONE_PARENT: each worker is a
// child of this process (which alone can wait for it, and so learn how it died), yet a copy of
// a process that has a single thread and holds no lock. Forking this process for each worker
// instead would copy whatever locks its other threads hold at that moment, which stay locked
// forever in the copy; with the zygote that can happen only once, when the pool is created,
// and every worker, the replacements too, sees the program as it was then.
//
// A worker is asked for by sending the zygote one end of a fresh socketpair (SCM_RIGHTS); the
// worker keeps it as its channel and the zygote answers with its pid. Jobs and their answers
// are length-prefixed messages on the channel. Workers and the zygote leave with _exit(): they
// must not run this program's atexit handlers and static destructors a second time.
//
// The threads. One pool thread per worker takes a queued job, hands it to a free worker and
// blocks until the answer comes; end of file on the channel instead means the worker died.
#include "corio/process_pool.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

namespace corio {

namespace detail {

void WireReader::cut_short() {
    throw RuntimeError(
        "a ProcessPoolExecutor message was cut short (the processes disagree about its layout)");
}

namespace {

// --- descriptors -------------------------------------------------------------------------------

enum class Io { Ok, Eof, Error };

// Reads exactly n bytes; Eof if the peer closed first.
Io read_exact(int fd, void* data, std::size_t n) {
    auto* p = static_cast<char*>(data);
    while (n > 0) {
        const ssize_t r = ::recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= static_cast<std::size_t>(r);
        } else if (r == 0) {
            return Io::Eof;
        } else if (errno != EINTR) {
            return errno == ECONNRESET ? Io::Eof : Io::Error;
        }
    }
    return Io::Ok;
}

// MSG_NOSIGNAL: a peer that is gone is an error to report, not a SIGPIPE.
bool write_all(int fd, const void* data, std::size_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
        if (r >= 0) {
            p += r;
            n -= static_cast<std::size_t>(r);
        } else if (errno != EINTR) {
            return false;
        }
    }
    return true;
}

// A one-byte message with room for one descriptor beside it: what send_descriptor and
// receive_descriptor exchange.
struct DescriptorMessage {
    char byte = 'w';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};

    DescriptorMessage() noexcept {
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
    }
    DescriptorMessage(const DescriptorMessage&) = delete;
    DescriptorMessage& operator=(const DescriptorMessage&) = delete;
};

bool send_descriptor(int socket, int fd) {
    DescriptorMessage m;
    cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t r = 0;
    do {
        r = ::sendmsg(socket, &m.msg, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    return r == 1;
}

// The descriptor sent with the next message; -1 at end of file or on an error, -2 when a
// message came without one.
int receive_descriptor(int socket) noexcept {
    DescriptorMessage m;
    ssize_t r = 0;
    do {
        // Close-on-exec, so that a program a job runs does not hold the worker's channel open.
        r = ::recvmsg(socket, &m.msg, MSG_CMSG_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) return -1;
    const cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
    if (c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -2;
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

// --- how a process ended -----------------------------------------------------------------------

std::string signal_name(int sig) {
    std::string name = "signal " + std::to_string(sig);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    // (sigabbrev_np and sigdescr_np, unlike strsignal, are thread-safe and ignore the locale.)
    const char* abbrev = ::sigabbrev_np(sig);
    const char* description = ::sigdescr_np(sig);
    if (abbrev != nullptr && description != nullptr)
        return name + " (SIG" + abbrev + ": " + description + ")";
#else
    if (const char* description = ::strsignal(sig)) return name + " (" + description + ")";
#endif
    return name;
}

struct Ending {
    int signal = 0;   // the signal that killed the process, or 0
    int status = -1;  // its exit status, or -1
    bool known = false;
};

std::string describe(const Ending& e) {
    if (!e.known)
        return "ended, but its exit status is unknown (SIGCHLD is ignored, or something else "
               "reaped it)";
    if (e.signal != 0) return "died of " + signal_name(e.signal);
    return "exited with status " + std::to_string(e.status);
}

// Waits for our child `pid` to end and reaps it. With `kill_first`, a child still running is
// killed: it is no use any more, and waiting for it might never end. (A child that is not
// reaped keeps its pid, so the kill cannot reach another process; one reaped behind our back,
// when SIGCHLD is ignored, is not signalled: waitid then fails.)
Ending reap(pid_t pid, bool kill_first) noexcept {
    if (kill_first) {
        siginfo_t info{};
        int r = 0;
        do {
            r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
        } while (r < 0 && errno == EINTR);
        if (r == 0 && info.si_pid == 0) ::kill(pid, SIGKILL);
    }
    int status = 0;
    pid_t r = 0;
    do {
        r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    Ending e;
    if (r != pid) return e;
    e.known = true;
    if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
    if (WIFEXITED(status)) e.status = WEXITSTATUS(status);
    return e;
}

// Ends our end of a channel even if other processes hold copies of it (a child this program
// forked and that has not yet called exec, say): the peer sees end of file at once.
void hang_up(int fd) noexcept {
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
}

// --- the worker --------------------------------------------------------------------------------

constexpr char kDone = 0;           // the result follows
constexpr char kRaised = 1;         // an exception: its type name and what()
constexpr char kRaisedOsError = 2;  // a corio::OSError: its errno, type name and what()
constexpr char kRaisedUnknown = 3;  // something that is not an exception class we can name

constexpr std::size_t kLength = sizeof(std::uint64_t);

// Runs one request; leaves in `reply`, after its first kLength + 1 bytes, the outcome.
void run_request(const std::string& request, std::string& reply) {
    const std::size_t head = reply.size();
    try {
        WireReader in(request.data(), request.size());
        JobEntry entry = nullptr;
        in.take(&entry, sizeof entry);
        entry(in, reply);
        reply[head - 1] = kDone;
        return;
    } catch (const OSError& e) {
        reply.resize(head);
        reply[head - 1] = kRaisedOsError;
        const std::int32_t code = e.code();
        reply.append(reinterpret_cast<const char*>(&code), sizeof code);
        put_string(reply, typeid(e).name());
        put_string(reply, e.what());
    } catch (const std::exception& e) {
        reply.resize(head);
        reply[head - 1] = kRaised;
        put_string(reply, typeid(e).name());
        put_string(reply, e.what());
    } catch (const BaseException& e) {
        reply.resize(head);
        reply[head - 1] = kRaised;
        put_string(reply, typeid(e).name());
        put_string(reply, e.what());
    } catch (...) {
        reply.resize(head);
        reply[head - 1] = kRaisedUnknown;
    }
}

[[noreturn]] void worker_main(int channel) {
    std::string request;
    std::string reply;
    for (;;) {
        std::uint64_t length = 0;
        // End of file: the pool is shutting down (or this program has ended).
        if (read_exact(channel, &length, sizeof length) != Io::Ok) ::_exit(0);
        request.resize(length);
        if (read_exact(channel, request.data(), length) != Io::Ok) ::_exit(0);
        reply.assign(kLength + 1, '\0');
        run_request(request, reply);
        // What the job printed would be lost at _exit() while it sits in a stdio buffer.
        std::fflush(nullptr);
        const std::uint64_t n = reply.size() - kLength;
        std::memcpy(reply.data(), &n, sizeof n);
        if (!write_all(channel, reply.data(), reply.size())) ::_exit(0);
    }
}

// --- the zygote --------------------------------------------------------------------------------
// It is forked by a process that may have other threads, so until it forks a worker it calls
// only what is async-signal-safe.

constexpr int kControlFd = 3;

void close_from(int first) noexcept {
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U) == 0) return;
#endif
    // Before Linux 5.9: the directory of open descriptors, read with the raw system call
    // (opendir allocates). Closing while reading may skip entries, so again until none is left.
    const int dir = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        rlimit limit{};
        rlim_t end = 1 << 16;
        if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
            end = limit.rlim_cur;
        for (rlim_t fd = static_cast<rlim_t>(first); fd < end; ++fd) ::close(static_cast<int>(fd));
        return;
    }
    alignas(8) char buffer[4096];
    for (bool closed_any = true; closed_any;) {
        closed_any = false;
        ::lseek(dir, 0, SEEK_SET);
        for (;;) {
            const long n = ::syscall(SYS_getdents64, dir, buffer, sizeof buffer);
            if (n <= 0) break;
            // struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, name.
            for (long at = 0; at < n;) {
                unsigned short reclen = 0;
                std::memcpy(&reclen, buffer + at + 16, sizeof reclen);
                if (reclen == 0) break;
                const char* name = buffer + at + 19;
                int fd = 0;
                bool number = *name != '\0';
                for (const char* c = name; *c != '\0'; ++c) {
                    if (*c < '0' || *c > '9') number = false;
                    fd = fd * 10 + (*c - '0');
                }
                if (number && fd >= first && fd != dir) {
                    ::close(fd);
                    closed_any = true;
                }
                at += reclen;
            }
        }
    }
    ::close(dir);
}

// The standard streams open (on /dev/null if need be, so that a descriptor received later can
// never take their numbers and a job's printf never writes into a channel), the control socket
// at kControlFd, nothing else: a copy of a pipe's or a socket's descriptor in the pool's
// processes would keep its peer from ever seeing end of file.
int settle_descriptors(int control) noexcept {
    if (control <= 2) {
        const int moved = ::fcntl(control, F_DUPFD, kControlFd);
        if (moved < 0) ::_exit(127);
        ::close(control);
        control = moved;
    }
    for (int fd = 0; fd <= 2; ++fd) {
        if (::fcntl(fd, F_GETFD) != -1) continue;
        const int null = ::open("/dev/null", O_RDWR);
        if (null >= 0 && null != fd) {
            ::dup2(null, fd);
            ::close(null);
        }
    }
    if (control != kControlFd) {
        if (::dup2(control, kControlFd) < 0) ::_exit(127);
        ::close(control);
    }
    close_from(kControlFd + 1);
    return kControlFd;
}

// As exec() would leave them: caught signals back to their default action (their handlers
// belong to the parent: corio's, for one, writes to a descriptor the zygote has closed, whose
// number may be a worker's channel), ignored ones still ignored, and nothing blocked.
void reset_signals() noexcept {
    for (int sig = 1; sig < NSIG; ++sig) {
        struct sigaction old {};
        if (::sigaction(sig, nullptr, &old) != 0) continue;
        if (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN) continue;
        struct sigaction action {};
        action.sa_handler = SIG_DFL;
        sigemptyset(&action.sa_mask);
        ::sigaction(sig, &action, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// What glibc's fork() does for the new process beyond the system call, and a raw clone must
// do itself: glibc keeps each thread's kernel id in its thread descriptor (pthread_self()),
// and pthread_setaffinity_np(pthread_self(), ...), pthread_setschedparam and the like act on
// the thread with that id. Left alone, a worker's descriptor would hold the zygote's id, and
// such a call in a job would act on the zygote, and so on every worker forked after. fork()
// has the kernel write the child's id there (CLONE_CHILD_SETTID); so does the zygote, once it
// has checked that the place glibc's debugger interface names holds its own id. The kernel
// also forgets the robust mutex list at a fork, which glibc registers again.
struct ThreadSetup {
    pid_t* tid = nullptr;  // where glibc keeps the thread's id, if known
    void* robust_list = nullptr;
    std::size_t robust_list_size = 0;
};

// The offset of the thread id in glibc's thread descriptor, from the descriptor of the field
// glibc exports for libthread_db ({size in bits, count, offset}); -1 if unknown (another C
// library, a static build). Looked up before the zygote is forked: dlsym is no call for it.
long tid_offset() noexcept {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    static const long offset = [] {
        const void* symbol = ::dlsym(RTLD_DEFAULT, "_thread_db_pthread_tid");
        if (symbol == nullptr) return -1L;
        std::uint32_t field[3];
        std::memcpy(field, symbol, sizeof field);
        if (field[0] != 8 * sizeof(pid_t) || field[1] != 1) return -1L;
        return static_cast<long>(field[2]);
    }();
    return offset;
#else
    return -1;
#endif
}

ThreadSetup thread_setup(long offset) noexcept {
    ThreadSetup setup;
#if defined(__GLIBC__)
    if (offset >= 0) {
        char* field = reinterpret_cast<char*>(::pthread_self()) + offset;
        pid_t value = 0;
        std::memcpy(&value, field, sizeof value);
        if (value == static_cast<pid_t>(::syscall(SYS_gettid)))
            setup.tid = reinterpret_cast<pid_t*>(field);
    }
#else
    (void)offset;
#endif
    if (::syscall(SYS_get_robust_list, 0, &setup.robust_list, &setup.robust_list_size) != 0)
        setup.robust_list = nullptr;
    return setup;
}

// clone3, whose arguments are the same everywhere. -1 with ENOSYS before Linux 5.3, or under a
// seccomp filter that refuses clone3 (Docker's does).
long clone3_sibling(unsigned long flags, pid_t* tid) noexcept {
#ifdef SYS_clone3
    // The kernel's struct clone_args, version 0. exit_signal must be 0 with CLONE_PARENT: the
    // child takes the zygote's, SIGCHLD.
    struct {
        std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args{};
    args.flags = flags;
    args.child_tid = reinterpret_cast<std::uintptr_t>(tid);
    return ::syscall(SYS_clone3, &args, sizeof args);
#else
    (void)flags;
    (void)tid;
    errno = ENOSYS;
    return -1;
#endif
}

// clone, whose arguments come in an order of each architecture's own: the thread id is set
// only where that order is known here.
long clone_sibling(unsigned long flags, pid_t* tid) noexcept {
#if defined(__x86_64__)
    return ::syscall(SYS_clone, flags | SIGCHLD, 0UL, 0UL, tid, 0UL);
#else
    (void)tid;
    flags &= ~static_cast<unsigned long>(CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID);
#if defined(__s390__) || defined(__CRIS__)
    return ::syscall(SYS_clone, 0UL, flags | SIGCHLD, 0UL, 0UL, 0UL);
#else
    return ::syscall(SYS_clone, flags | SIGCHLD, 0UL, 0UL, 0UL, 0UL);
#endif
#endif
}

// fork(), but the child's parent is the zygote's parent. (glibc's fork() has no such flag; its
// bookkeeping for other threads concerns none here: the zygote has a single thread.)
pid_t fork_sibling(const ThreadSetup& setup) noexcept {
    unsigned long flags = CLONE_PARENT;
    if (setup.tid != nullptr) flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    long pid = clone3_sibling(flags, setup.tid);
    if (pid == -1 && errno == ENOSYS) pid = clone_sibling(flags, setup.tid);
    if (pid == 0 && setup.robust_list != nullptr)
        ::syscall(SYS_set_robust_list, setup.robust_list, setup.robust_list_size);
    return static_cast<pid_t>(pid);
}

// Forks a worker for each descriptor received, and answers with its pid (or -errno), until
// the pool closes the control socket.
[[noreturn]] void zygote_main(int control, long tid_offset) noexcept {
    control = settle_descriptors(control);
    reset_signals();
    const ThreadSetup setup = thread_setup(tid_offset);
    for (;;) {
        const int channel = receive_descriptor(control);
        if (channel == -1) ::_exit(0);
        std::int32_t answer = -EINVAL;
        if (channel >= 0) {
            const pid_t pid = fork_sibling(setup);
            if (pid == 0) {
                ::close(control);
                worker_main(channel);
            }
            answer = pid > 0 ? pid : -errno;
            ::close(channel);
        }
        if (!write_all(control, &answer, sizeof answer)) ::_exit(0);
    }
}

// --- exceptions that come back ------------------------------------------------------------------

std::string demangle(const std::string& mangled) {
    int status = 0;
    char* name = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
    std::string result = status == 0 && name != nullptr ? std::string(name) : mangled;
    std::free(name);
    return result;
}

template <class E>
[[noreturn]] void raise_with_message(const std::string& what) {
    throw E(what);
}

template <class E>
[[noreturn]] void raise_without_message(const std::string&) {
    throw E();
}

struct Reconstructible {
    const std::type_info& type;
    void (*raise)(const std::string& what);
};

// The exception types that are rebuilt as what they were: the standard ones and corio's that
// have nothing but a message.
const Reconstructible kReconstructible[] = {
    {typeid(std::runtime_error), &raise_with_message<std::runtime_error>},
    {typeid(std::logic_error), &raise_with_message<std::logic_error>},
    {typeid(std::invalid_argument), &raise_with_message<std::invalid_argument>},
    {typeid(std::out_of_range), &raise_with_message<std::out_of_range>},
    {typeid(std::domain_error), &raise_with_message<std::domain_error>},
    {typeid(std::length_error), &raise_with_message<std::length_error>},
    {typeid(std::range_error), &raise_with_message<std::range_error>},
    {typeid(std::overflow_error), &raise_with_message<std::overflow_error>},
    {typeid(std::underflow_error), &raise_with_message<std::underflow_error>},
    {typeid(std::bad_alloc), &raise_without_message<std::bad_alloc>},
    {typeid(Error), &raise_with_message<Error>},
    {typeid(RuntimeError), &raise_with_message<RuntimeError>},
    {typeid(ValueError), &raise_with_message<ValueError>},
    {typeid(InvalidStateError), &raise_with_message<InvalidStateError>},
    {typeid(BrokenBarrierError), &raise_with_message<BrokenBarrierError>},
    {typeid(BrokenExecutor), &raise_with_message<BrokenExecutor>},
    {typeid(QueueEmpty), &raise_without_message<QueueEmpty>},
    {typeid(QueueFull), &raise_without_message<QueueFull>},
    {typeid(QueueShutDown), &raise_without_message<QueueShutDown>},
};

[[noreturn]] void raise_named(const std::string& type, const std::string& what) {
    for (const Reconstructible& r : kReconstructible) {
        if (type == r.type.name()) r.raise(what);
    }
    throw RuntimeError(demangle(type) + ": " + what);
}

// The OSError family by errno, with the message it had: throw_os_error() picks the class
// Python would (FileNotFoundError for ENOENT, ...), and adds the "[Errno N] ..." prefix that
// `what` already carries.
[[noreturn]] void raise_os_error(int code, const std::string& type, const std::string& what) {
    const std::string prefix = "[Errno " + std::to_string(code) + "] " + std::strerror(code);
    if (what.compare(0, prefix.size(), prefix) == 0) {
        std::string rest = what.substr(prefix.size());
        if (rest.empty()) throw_os_error(code, rest);
        if (rest.compare(0, 2, ": ") == 0) throw_os_error(code, rest.substr(2));
    }
    if (type == typeid(TimeoutError).name()) throw TimeoutError(what);
    throw_os_error(code, what);
}

[[noreturn]] void raise_job_error(const std::string& reply) {
    WireReader in(reply.data() + 1, reply.size() - 1);
    switch (reply[0]) {
        case kRaised: {
            std::string type = in.take_string();
            std::string what = in.take_string();
            raise_named(type, what);
        }
        case kRaisedOsError: {
            std::int32_t code = 0;
            in.take(&code, sizeof code);
            std::string type = in.take_string();
            std::string what = in.take_string();
            raise_os_error(code, type, what);
        }
        case kRaisedUnknown:
            throw RuntimeError(
                "a ProcessPoolExecutor job threw an unknown exception (not a std::exception)");
        default:
            throw RuntimeError("a ProcessPoolExecutor worker answered with an unknown status");
    }
}

}  // namespace

// --- the processes, seen from the pool ---------------------------------------------------------

class ProcessPoolCore {
  public:
    explicit ProcessPoolCore(std::size_t max_workers) : slots_(max_workers) {
        start_zygote();
        try {
            for (Worker& w : slots_) start_worker(w);
        } catch (...) {
            close();
            throw;
        }
        for (std::size_t i = slots_.size(); i > 0; --i) free_.push_back(i - 1);
    }
    ProcessPoolCore(const ProcessPoolCore&) = delete;
    ProcessPoolCore& operator=(const ProcessPoolCore&) = delete;
    ~ProcessPoolCore() { close(); }

    std::string call(const std::string& request);

    std::vector<pid_t> worker_pids() const {
        std::lock_guard lock(mutex_);
        std::vector<pid_t> pids;
        for (const Worker& w : slots_) {
            if (w.pid > 0) pids.push_back(w.pid);
        }
        return pids;
    }

    // Ends and reaps every process. Only once no call is running (the pool's threads are
    // joined); later calls do nothing.
    void close() noexcept;

  private:
    // pid is guarded by mutex_ (worker_pids() reads it); fd belongs to whoever leased the slot.
    struct Worker {
        pid_t pid = -1;
        int fd = -1;
    };

    // A worker taken from the free list for one call, and given back after it.
    class Lease {
      public:
        explicit Lease(ProcessPoolCore& core) : core_(core) {
            std::unique_lock lock(core_.mutex_);
            // As many pool threads as workers: one is always free; waiting is only a safeguard.
            core_.freed_.wait(lock, [this] { return !core_.free_.empty() || core_.closed_; });
            if (core_.closed_) throw RuntimeError("cannot schedule new futures after shutdown");
            index_ = core_.free_.back();
            core_.free_.pop_back();
        }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        ~Lease() {
            {
                std::lock_guard lock(core_.mutex_);
                core_.free_.push_back(index_);
            }
            core_.freed_.notify_one();
        }
        Worker& worker() { return core_.slots_[index_]; }

      private:
        ProcessPoolCore& core_;
        std::size_t index_ = 0;
    };

    void start_zygote();
    void start_worker(Worker& w);
    Ending end_worker(Worker& w) noexcept;
    void ensure_ready(Worker& w);
    std::string replace_worker(Worker& w) noexcept;
    [[noreturn]] void worker_failed(Worker& w);
    [[noreturn]] void zygote_failed(const std::string& doing);

    std::mutex zygote_mutex_;  // one request to the zygote at a time
    pid_t zygote_ = -1;        // guarded by zygote_mutex_
    int control_ = -1;         // guarded by zygote_mutex_
    std::string zygote_gone_;  // guarded by zygote_mutex_: why no worker can be started

    mutable std::mutex mutex_;
    std::condition_variable freed_;
    std::vector<Worker> slots_;
    std::vector<std::size_t> free_;  // guarded by mutex_
    bool closed_ = false;            // guarded by mutex_
};

void ProcessPoolCore::start_zygote() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        throw_os_error(errno, "socketpair() for a ProcessPoolExecutor");
    // Output still buffered would be written a second time by a worker's fflush.
    std::fflush(nullptr);
    const long offset = tid_offset();
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int err = errno;
        ::close(sv[0]);
        ::close(sv[1]);
        throw_os_error(err, "fork() of a ProcessPoolExecutor's zygote");
    }
    if (pid == 0) zygote_main(sv[1], offset);
    ::close(sv[1]);
    zygote_ = pid;
    control_ = sv[0];
}

void ProcessPoolCore::zygote_failed(const std::string& doing) {
    const pid_t pid = std::exchange(zygote_, -1);
    hang_up(std::exchange(control_, -1));
    zygote_gone_ = "the pool's zygote process " + std::to_string(pid) + " " +
                   describe(reap(pid, true)) + " (while " + doing + ")";
    throw BrokenProcessPool(zygote_gone_);
}

void ProcessPoolCore::start_worker(Worker& w) {
    std::lock_guard zygote_lock(zygote_mutex_);
    if (zygote_ < 0) throw BrokenProcessPool(zygote_gone_);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        throw_os_error(errno, "socketpair() for a worker process");
    if (!send_descriptor(control_, sv[1])) {
        ::close(sv[0]);
        ::close(sv[1]);
        zygote_failed("asking it for a worker");
    }
    ::close(sv[1]);  // the worker's end: the zygote has its own copy now
    std::int32_t answer = 0;
    if (read_exact(control_, &answer, sizeof answer) != Io::Ok) {
        ::close(sv[0]);
        zygote_failed("waiting for it to start a worker");
    }
    if (answer <= 0) {
        ::close(sv[0]);
        throw_os_error(-answer, "clone() of a worker process");
    }
    {
        std::lock_guard lock(mutex_);
        w.pid = answer;
    }
    w.fd = sv[0];
}

Ending ProcessPoolCore::end_worker(Worker& w) noexcept {
    hang_up(std::exchange(w.fd, -1));
    const Ending ending = reap(w.pid, true);
    std::lock_guard lock(mutex_);
    w.pid = -1;
    return ending;
}

// A worker that died while idle (killed from outside, say) is replaced before it gets a job,
// which would otherwise fail for nothing it did. An idle worker never writes, so anything to
// read means it is gone.
void ProcessPoolCore::ensure_ready(Worker& w) {
    if (w.fd >= 0) {
        pollfd p{w.fd, POLLIN, 0};
        int r = 0;
        do {
            r = ::poll(&p, 1, 0);
        } while (r < 0 && errno == EINTR);
        if (r > 0) end_worker(w);
    }
    if (w.fd >= 0) return;
    try {
        start_worker(w);
    } catch (const std::exception& e) {
        throw BrokenProcessPool(std::string("no worker process can be started: ") + e.what());
    }
}

std::string ProcessPoolCore::replace_worker(Worker& w) noexcept {
    try {
        start_worker(w);
        return {};
    } catch (const std::exception& e) {
        return std::string("; no replacement could be started: ") + e.what();
    } catch (...) {
        return "; no replacement could be started";
    }
}

void ProcessPoolCore::worker_failed(Worker& w) {
    const pid_t pid = w.pid;
    const Ending ending = end_worker(w);
    const std::string message = "worker " + std::to_string(pid) + " " + describe(ending) +
                                " while running a job" + replace_worker(w);
    throw BrokenProcessPool(message, pid, ending.signal, ending.status);
}

std::string ProcessPoolCore::call(const std::string& request) {
    Lease lease(*this);
    Worker& w = lease.worker();
    ensure_ready(w);
    if (!write_all(w.fd, request.data(), request.size())) worker_failed(w);
    std::uint64_t length = 0;
    if (read_exact(w.fd, &length, sizeof length) != Io::Ok || length == 0) worker_failed(w);
    std::string reply;
    try {
        reply.resize(length);
    } catch (...) {
        // The rest of the answer stays unread, so the worker cannot serve another job.
        end_worker(w);
        replace_worker(w);
        throw;
    }
    if (read_exact(w.fd, reply.data(), reply.size()) != Io::Ok) worker_failed(w);
    if (reply[0] != kDone) raise_job_error(reply);
    return reply;
}

void ProcessPoolCore::close() noexcept {
    std::vector<Worker> workers;
    {
        std::lock_guard lock(mutex_);
        if (closed_) return;
        closed_ = true;
        workers.swap(slots_);
        free_.clear();
    }
    freed_.notify_all();
    // All hung up first, so that the workers end together; each ends at the end of file.
    for (Worker& w : workers) {
        if (w.fd >= 0) hang_up(w.fd);
    }
    for (Worker& w : workers) {
        if (w.pid > 0) reap(w.pid, false);
    }
    std::lock_guard zygote_lock(zygote_mutex_);
    if (control_ >= 0) hang_up(std::exchange(control_, -1));
    if (zygote_ > 0) reap(std::exchange(zygote_, -1), false);
}

std::string process_pool_call(ProcessPoolCore& core, const std::string& request) {
    return core.call(request);
}

}  // namespace detail

// --- ProcessPoolExecutor -----------------------------------------------------------------------

namespace {

std::unique_ptr<detail::ProcessPoolCore> make_core(std::size_t max_workers) {
    if (max_workers == 0) throw ValueError("max_workers must be greater than 0");
    return std::make_unique<detail::ProcessPoolCore>(max_workers);
}

}  // namespace

std::size_t ProcessPoolExecutor::default_max_workers() noexcept {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    if (::sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
        const int n = CPU_COUNT(&cpus);
        if (n > 0) return static_cast<std::size_t>(n);
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

ProcessPoolExecutor::ProcessPoolExecutor(std::size_t max_workers)
    : core_(make_core(max_workers)), threads_(max_workers) {}

ProcessPoolExecutor::~ProcessPoolExecutor() {
    shutdown(true);
}

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_pending) {
    if (!wait) {
        threads_.shutdown(false, cancel_pending);
        return;
    }
    // One waiting shutdown at a time: a second must not close the workers while the first
    // still waits for jobs to finish on them.
    std::lock_guard lock(shutdown_mutex_);
    threads_.shutdown(true, cancel_pending);
    core_->close();
}

std::vector<pid_t> ProcessPoolExecutor::worker_pids() const {
    return core_->worker_pids();
}

}  // namespace corio
