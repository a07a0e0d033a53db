// Crash reports: when the process dies of SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT, or reaches
// std::terminate, stderr says which task was running, its await chain and the native stack; then
// the process dies of the same signal as it would have (handlers installed before are chained
// to, and the signal is raised again with its default action, so the exit status and the core
// dump are the usual ones).
//
// A signal handler may only do async-signal-safe work: everything here is write(2) of text
// formatted into a stack buffer, reads of the task's own fields, glibc's backtrace() (its
// unwinder is loaded beforehand) and libbacktrace's lookups, which allocate with mmap. Function
// names in the native stack are printed as the debug information spells them (demangling
// allocates).
#include "crash.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string_view>

#include "corio/coro.hpp"
#include "corio/graph.hpp"
#include "signal_safe.hpp"
#include "stacktrace.hpp"

namespace corio::detail {
namespace {

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr int kFatalCount = sizeof kFatalSignals / sizeof kFatalSignals[0];

struct sigaction g_previous[kFatalCount];
std::terminate_handler g_previous_terminate = nullptr;
std::atomic<bool> g_reported{false};  // one report per process, even if dying takes two steps

// Text built in a fixed buffer and written with write(2).
class Out {
  public:
    Out& operator<<(std::string_view s) noexcept {
        for (char c : s) {
            if (len_ == sizeof buf_) flush();
            buf_[len_++] = c;
        }
        return *this;
    }
    Out& operator<<(const char* s) noexcept { return *this << std::string_view(s ? s : "?"); }
    Out& number(std::uint64_t v) noexcept {
        NumberBuffer buf;
        return *this << decimal(v, buf);
    }
    void flush() noexcept {
        std::size_t done = 0;
        while (done < len_) {
            const ssize_t n = ::write(STDERR_FILENO, buf_ + done, len_ - done);
            if (n <= 0) break;
            done += static_cast<std::size_t>(n);
        }
        len_ = 0;
    }
    ~Out() { flush(); }

  private:
    char buf_[1024];
    std::size_t len_ = 0;
};

const char* signal_name(int sig) noexcept {
    switch (sig) {
        case SIGSEGV:
            return "SIGSEGV (invalid memory access)";
        case SIGBUS:
            return "SIGBUS (bus error)";
        case SIGFPE:
            return "SIGFPE (arithmetic error)";
        case SIGILL:
            return "SIGILL (illegal instruction)";
        case SIGABRT:
            return "SIGABRT (abort)";
        default:
            return "a fatal signal";
    }
}

// The running task and its await chain, innermost first.
void write_task(Out& out) noexcept {
    const TaskCore* task = t_state.current_task;
    if (task == nullptr) {
        out << "  no task was running (a callback, or code outside the event loop)\n";
        return;
    }
    out << "  running task: ";
    if (task->extra != nullptr && !task->extra->name.empty()) {
        out << std::string_view(task->extra->name);
    } else {
        out << "Task-";
        out.number(task->id);
    }
    out << "\n  await chain (innermost first; each coroutine runs past the co_await shown):\n";
    int depth = 0;
    walk_await_chain(*task, [&](const PromiseBase& p) {
        const FrameCallGraphEntry e = frame_entry(p);
        out << "    " << e.function << " at " << e.file << ":";
        out.number(e.line);
        out << "\n";
        return ++depth < 64;
    });
}

// `skip`: frames of our own to leave out when there is no signal context to start from.
void write_native_stack(Out& out, void* context, int skip) noexcept {
    void* frames[64];
    const int count = capture_stack(frames, 64);
    // Start where the thread was stopped, not in this handler.
    const void* pc = context != nullptr ? interrupted_pc(context) : nullptr;
    int first = pc != nullptr ? 0 : std::min(skip, count);
    for (int i = 0; i < count && pc != nullptr; ++i) {
        if (frames[i] == pc) {
            first = i;
            break;
        }
    }
    out << "  native stack:\n";
    out.flush();
    write_stack_signal_safe(frames + first, count - first, STDERR_FILENO);
}

void report(const char* what, void* context, int skip) noexcept {
    if (g_reported.exchange(true)) return;
    Out out;
    out << "corio: the process is dying of " << what << "\n";
    write_task(out);
    out.flush();
    write_native_stack(out, context, skip);
}

// Dies of `sig` as the process would have without us: the previous handler first (it may have
// its own report, or even recover), then the default action.
void chain_and_die(int index, int sig, siginfo_t* info, void* context) {
    const struct sigaction& previous = g_previous[index];
    if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
        ::sigaction(sig, &previous, nullptr);
        previous.sa_sigaction(sig, info, context);
        return;  // a fault repeats with that handler in place; a raise() was handled by it
    }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN &&
        previous.sa_handler != nullptr) {
        ::sigaction(sig, &previous, nullptr);
        previous.sa_handler(sig);
        return;
    }
    // The default action, on return from this handler: a fault repeats the instruction and a
    // signal raised now is delivered as soon as the handler returns (it is blocked meanwhile).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    if (info == nullptr || info->si_code <= 0 || sig == SIGABRT) ::raise(sig);
}

extern "C" void on_fatal_signal(int sig, siginfo_t* info, void* context) {
    int index = 0;
    while (index < kFatalCount && kFatalSignals[index] != sig) ++index;
    if (index == kFatalCount) return;
    report(signal_name(sig), context, 0);
    chain_and_die(index, sig, info, context);
}

[[noreturn]] void on_terminate() {
    {
        Out out;
        out << "corio: std::terminate was called";
        if (std::exception_ptr e = std::current_exception()) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                out << " with an exception: " << x.what();
            } catch (...) {
                out << " with an exception that is not a std::exception";
            }
        }
        out << "\n";
    }
    // Leave out capture_stack, write_native_stack, report and this function.
    report("std::terminate", nullptr, 4);
    if (g_previous_terminate != nullptr) g_previous_terminate();
    std::abort();
}

}  // namespace

bool crash_handler_wanted(const bool* option) noexcept {
    if (option != nullptr) return *option;
    const char* env = std::getenv("CORIO_CRASH_HANDLER");
    return env == nullptr || std::strcmp(env, "0") != 0;
}

void install_crash_handler() noexcept {
    static std::once_flag once;
    std::call_once(once, [] {
        prepare_stack_traces();
        for (int i = 0; i < kFatalCount; ++i) {
            struct sigaction action {};
            action.sa_sigaction = &on_fatal_signal;
            sigemptyset(&action.sa_mask);
            // On the alternate stack where there is one: a stack overflow leaves none to run on.
            action.sa_flags = SA_SIGINFO | SA_ONSTACK;
            ::sigaction(kFatalSignals[i], &action, &g_previous[i]);
        }
        g_previous_terminate = std::set_terminate(&on_terminate);
    });
    // A stack of its own for the handler, on this (the loop's) thread, for stack overflows.
    // Allocated per thread (not a thread_local array, which every thread would pay for).
    struct AltStack {
        void* memory = nullptr;
        std::size_t size = 0;
        ~AltStack() {
            if (memory == nullptr) return;
            stack_t off{};
            off.ss_flags = SS_DISABLE;
            ::sigaltstack(&off, nullptr);
            ::munmap(memory, size);
        }
    };
    thread_local AltStack alt;
    thread_local bool checked = false;
    if (checked) return;
    checked = true;
    stack_t current{};
    if (::sigaltstack(nullptr, &current) != 0 || (current.ss_flags & SS_DISABLE) == 0)
        return;  // the thread has one already (the sanitizers install theirs)
    const std::size_t size = 64 * 1024;
    void* memory =
        ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return;
    stack_t ss{};
    ss.ss_sp = memory;
    ss.ss_size = size;
    if (::sigaltstack(&ss, nullptr) != 0) {
        ::munmap(memory, size);
        return;
    }
    alt.memory = memory;
    alt.size = size;
}

}  // namespace corio::detail
