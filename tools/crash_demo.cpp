// A program for tools/check_crash.sh: dies in a known way inside three nested coroutines.
//   crash_demo segv | abort | terminate | chained
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

namespace {

const char* g_how = "segv";

// An address no program maps (the first page), not null: UBSan stops at a null pointer itself.
std::uintptr_t volatile g_nowhere = 16;

[[gnu::noinline]] void throw_boom() {
    throw std::runtime_error("boom");
}

[[gnu::noinline]] void crash_here() {
    if (std::strcmp(g_how, "abort") == 0) std::abort();
    if (std::strcmp(g_how, "terminate") == 0) {
        auto no_escape = []() noexcept { throw_boom(); };
        no_escape();
    }
    *reinterpret_cast<int*>(g_nowhere) = 42;  // segv, chained: a write to an unmapped address
}

corio::Coro<> innermost() {
    co_await corio::sleep(1ms);
    crash_here();
}

corio::Coro<> middle() {
    co_await innermost();
}

corio::Coro<> outermost() {
    co_await middle();
}

corio::Coro<> amain() {
    co_await corio::create_task(outermost(), "doomed");
}

extern "C" void previous_handler(int) {
    const char text[] = "crash_demo: the handler installed before corio ran\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, text, sizeof text - 1);
    ::signal(SIGSEGV, SIG_DFL);  // and dies of it, as the program meant to
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1) g_how = argv[1];
    if (std::strcmp(g_how, "chained") == 0) ::signal(SIGSEGV, previous_handler);
    corio::run(amain());
    return 0;
}
