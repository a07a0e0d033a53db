// Native stack traces, captured cheaply and symbolized in the process (function, file and line
// from the program's own debug information, through GCC's libbacktrace when corio was built
// with it; the dynamic symbol table otherwise). For the watchdog, and crash reports to come.
#pragma once

#include <pthread.h>

#include <cstdint>
#include <string>

namespace corio::detail {

// Loads what capturing needs (the unwinder is loaded lazily by glibc, with malloc), so that
// capture_stack() is then safe in a signal handler. Idempotent, thread-safe.
void prepare_stack_traces() noexcept;

// Reads the debug information that symbolize_stack() needs now rather than at its first use
// (which can take a good fraction of a second for a large program). For background threads.
void warm_up_symbolizer() noexcept;

// Async-signal-safe once prepare_stack_traces() has run: the return addresses of the calling
// thread, innermost first. Returns how many were stored.
int capture_stack(void** frames, int max_frames) noexcept;

// One line per frame: "#0 0x00005581c3a4e2d0 in function at file:line" (the parts that are
// known). Not async-signal-safe.
std::string symbolize_stack(void* const* frames, int count, const char* indent);

// Writes the frames to `fd` as symbolize_stack() does, but async-signal-safely (for crash
// reports): no allocation, so function names are as the debug information spells them.
void write_stack_signal_safe(void* const* frames, int count, int fd) noexcept;

// Runs fn(arg, ucontext) on `thread`, inside a signal handler that interrupts it wherever it is
// (SIGURG, chained to any handler installed before), and waits up to `limit_ms` for it to have
// run. fn must be async-signal-safe. One such call at a time in the process. False if the thread
// did not answer (it blocks the signal, or is gone).
bool run_in_signal_handler(pthread_t thread, void (*fn)(void* arg, void* ucontext), void* arg,
                           long limit_ms);

// The instruction a signal interrupted, from the handler's ucontext (null where unknown).
void* interrupted_pc(void* ucontext) noexcept;

}  // namespace corio::detail
