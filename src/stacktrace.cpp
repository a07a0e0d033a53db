// Native stack traces: glibc's backtrace() to capture, GCC's libbacktrace (or dladdr) to name.
#include "stacktrace.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <semaphore.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include "signal_safe.hpp"

#if CORIO_HAVE_LIBBACKTRACE
// GCC's libbacktrace (libbacktrace.a beside libgcc). Its header lives in GCC's private include
// directory, which must not be put on clang's path, so the few functions used are declared here.
extern "C" {
struct backtrace_state;
using backtrace_error_callback = void (*)(void* data, const char* msg, int errnum);
using backtrace_full_callback = int (*)(void* data, std::uintptr_t pc, const char* filename,
                                        int lineno, const char* function);
using backtrace_syminfo_callback = void (*)(void* data, std::uintptr_t pc, const char* symname,
                                            std::uintptr_t symval, std::uintptr_t symsize);
backtrace_state* backtrace_create_state(const char* filename, int threaded,
                                        backtrace_error_callback error_callback, void* data);
int backtrace_pcinfo(backtrace_state* state, std::uintptr_t pc, backtrace_full_callback callback,
                     backtrace_error_callback error_callback, void* data);
int backtrace_syminfo(backtrace_state* state, std::uintptr_t addr,
                      backtrace_syminfo_callback callback, backtrace_error_callback error_callback,
                      void* data);
}
#endif

namespace corio::detail {
namespace {

std::string demangle(const char* name) {
    if (name == nullptr) return {};
    int status = 0;
    char* plain = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string out = status == 0 && plain != nullptr ? plain : name;
    std::free(plain);
    return out;
}

#if CORIO_HAVE_LIBBACKTRACE
// libbacktrace's state cannot be freed, and reads the executable's DWARF lazily: one for the
// process, created on first use.
backtrace_state* state() {
    static backtrace_state* s = backtrace_create_state(
        nullptr, /*threaded=*/1, [](void*, const char*, int) {}, nullptr);
    return s;
}

struct Where {
    std::string function;
    std::string file;
    int line = 0;
};
#endif

}  // namespace

void prepare_stack_traces() noexcept {
    static std::once_flag once;
    std::call_once(once, [] {
        void* frames[2];
        ::backtrace(frames, 2);  // loads libgcc_s's unwinder now, not in a signal handler
#if CORIO_HAVE_LIBBACKTRACE
        state();
#endif
    });
}

void warm_up_symbolizer() noexcept {
    try {
        void* here[1] = {reinterpret_cast<void*>(&warm_up_symbolizer)};
        (void)symbolize_stack(here, 1, "");
    } catch (...) {
        // Only a warm-up: the real use reports its own failure.
    }
}

int capture_stack(void** frames, int max_frames) noexcept {
    return ::backtrace(frames, max_frames);
}

std::string symbolize_stack(void* const* frames, int count, const char* indent) {
    std::string out;
    for (int i = 0; i < count; ++i) {
        const auto pc = reinterpret_cast<std::uintptr_t>(frames[i]);
        // A return address points after the call: look up the call itself.
        const std::uintptr_t lookup = i == 0 ? pc : pc - 1;
        std::string function;
        std::string location;
#if CORIO_HAVE_LIBBACKTRACE
        Where where;
        backtrace_pcinfo(
            state(), lookup,
            [](void* data, std::uintptr_t, const char* file, int line, const char* fn) {
                auto* w = static_cast<Where*>(data);
                // Inlined calls come first; the last report is the function itself. Keep the
                // innermost, which is where the code was.
                if (w->function.empty() && fn != nullptr) {
                    w->function = demangle(fn);
                    if (file != nullptr) w->file = file;
                    w->line = line;
                }
                return 0;
            },
            [](void*, const char*, int) {}, &where);
        if (where.function.empty()) {
            backtrace_syminfo(
                state(), lookup,
                [](void* data, std::uintptr_t, const char* symbol, std::uintptr_t, std::uintptr_t) {
                    if (symbol != nullptr) static_cast<Where*>(data)->function = demangle(symbol);
                },
                [](void*, const char*, int) {}, &where);
        }
        function = where.function;
        if (!where.file.empty()) location = where.file + ":" + std::to_string(where.line);
#endif
        Dl_info info{};
        if (function.empty() && ::dladdr(frames[i], &info) != 0 && info.dli_sname != nullptr)
            function = demangle(info.dli_sname);
        if (location.empty() && ::dladdr(frames[i], &info) != 0 && info.dli_fname != nullptr)
            location = info.dli_fname;
        char head[64];
        std::snprintf(head, sizeof head, "#%-2d 0x%016llx", i, static_cast<unsigned long long>(pc));
        out += indent;
        out += head;
        out += " in " + (function.empty() ? std::string("??") : function);
        if (!location.empty()) out += " at " + location;
        out += '\n';
    }
    return out;
}

namespace {

// A line of the signal-safe stack, in a stack buffer.
struct Line {
    char buf[512];
    std::size_t len = 0;
    void put(std::string_view s) noexcept {
        for (char c : s)
            if (len < sizeof buf - 1) buf[len++] = c;
    }
    void put(const char* s) noexcept { put(std::string_view(s != nullptr ? s : "")); }
    void hex(std::uintptr_t v) noexcept {
        NumberBuffer digits;
        put(hexadecimal(v, digits));
    }
    void number(unsigned long v) noexcept {
        NumberBuffer digits;
        put(decimal(v, digits));
    }
};

}  // namespace

void write_stack_signal_safe(void* const* frames, int count, int fd) noexcept {
#if CORIO_HAVE_LIBBACKTRACE
    for (int i = 0; i < count; ++i) {
        const auto pc = reinterpret_cast<std::uintptr_t>(frames[i]);
        struct Found {
            const char* function = nullptr;
            const char* file = nullptr;
            int line = 0;
        } found;
        backtrace_pcinfo(
            state(), i == 0 ? pc : pc - 1,
            [](void* data, std::uintptr_t, const char* file, int line, const char* fn) {
                auto* f = static_cast<Found*>(data);
                if (f->function == nullptr && fn != nullptr) {
                    f->function = fn;
                    f->file = file;
                    f->line = line;
                }
                return 0;
            },
            [](void*, const char*, int) {}, &found);
        if (found.function == nullptr) {
            backtrace_syminfo(
                state(), i == 0 ? pc : pc - 1,
                [](void* data, std::uintptr_t, const char* symbol, std::uintptr_t, std::uintptr_t) {
                    static_cast<Found*>(data)->function = symbol;
                },
                [](void*, const char*, int) {}, &found);
        }
        Line l;
        l.put("    #");
        l.number(static_cast<unsigned long>(i));
        l.put(" ");
        l.hex(pc);
        l.put(" in ");
        l.put(found.function != nullptr ? found.function : "??");
        if (found.file != nullptr) {
            l.put(" at ");
            l.put(found.file);
            l.put(":");
            l.number(static_cast<unsigned long>(found.line));
        }
        l.put("\n");
        [[maybe_unused]] ssize_t n = ::write(fd, l.buf, l.len);
    }
#else
    ::backtrace_symbols_fd(frames, count, fd);
#endif
}

namespace {

// SIGURG: ignored by default and rarely used (Go's runtime picked it for the same reason).
constexpr int kInterruptSignal = SIGURG;

struct Request {
    pthread_t thread;
    void (*fn)(void*, void*);
    void* arg;
    std::atomic<bool> taken{false};
};

std::atomic<Request*> g_request{nullptr};
sem_t g_answered;
struct sigaction g_previous {};
std::mutex g_request_mutex;

extern "C" void on_interrupt_signal(int sig, siginfo_t* info, void* context) {
    const int saved_errno = errno;
    Request* r = g_request.load();
    if (r != nullptr && pthread_equal(pthread_self(), r->thread) != 0 && !r->taken.exchange(true)) {
        r->fn(r->arg, context);
        sem_post(&g_answered);
    } else if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
        g_previous.sa_sigaction(sig, info, context);
    } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
        g_previous.sa_handler(sig);
    }
    errno = saved_errno;
}

void install_interrupt_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        prepare_stack_traces();
        sem_init(&g_answered, 0, 0);
        struct sigaction action {};
        action.sa_sigaction = &on_interrupt_signal;
        sigemptyset(&action.sa_mask);
        // SA_RESTART: the interrupted system call goes on as if nothing happened.
        action.sa_flags = SA_SIGINFO | SA_RESTART;
        ::sigaction(kInterruptSignal, &action, &g_previous);
    });
}

}  // namespace

bool run_in_signal_handler(pthread_t thread, void (*fn)(void*, void*), void* arg, long limit_ms) {
    install_interrupt_handler();
    std::lock_guard lock(g_request_mutex);
    Request r{thread, fn, arg};
    g_request.store(&r);
    bool answered = false;
    if (pthread_kill(thread, kInterruptSignal) == 0) {
        timespec deadline{};
        clock_gettime(CLOCK_REALTIME, &deadline);
        const long long ns = deadline.tv_nsec + limit_ms * 1000000LL;
        deadline.tv_sec += static_cast<time_t>(ns / 1000000000);
        deadline.tv_nsec = static_cast<long>(ns % 1000000000);
        while (sem_timedwait(&g_answered, &deadline) != 0 && errno == EINTR) {
        }
        answered = r.taken.load();
    }
    // From here the handler can no longer take the request; an answer that came after the
    // wait gave up is consumed, so that it is not counted by the next request.
    g_request.store(nullptr);
    if (r.taken.load() && !answered) {
        while (sem_wait(&g_answered) != 0 && errno == EINTR) {
        }
    }
    return answered;
}

void* interrupted_pc(void* ucontext) noexcept {
    const auto* uc = static_cast<const ucontext_t*>(ucontext);
#if defined(__x86_64__)
    return reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
    return reinterpret_cast<void*>(uc->uc_mcontext.pc);
#else
    (void)uc;
    return nullptr;
#endif
}

}  // namespace corio::detail
