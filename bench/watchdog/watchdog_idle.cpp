// How often the watchdog's thread wakes while the loop is idle (issue: it must not wake
// periodically). Runs a loop with the watchdog on (threshold 100 ms, the most eager setting
// anyone would use) that sleeps for the given seconds (default 10) in a single co_await, then
// prints the context switches of every thread of the process but the loop's, read from
// /proc/self/task/<tid>/status before and after.
//
//     build/release/bench/watchdog_idle [seconds]
#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "corio/corio.hpp"

namespace {

// Voluntary + involuntary context switches of each thread but `skip`.
std::map<long, long> switches(long skip) {
    std::map<long, long> out;
    DIR* dir = ::opendir("/proc/self/task");
    if (dir == nullptr) return out;
    while (dirent* e = ::readdir(dir)) {
        const long tid = std::strtol(e->d_name, nullptr, 10);
        if (tid <= 0 || tid == skip) continue;
        std::ifstream status("/proc/self/task/" + std::string(e->d_name) + "/status");
        std::string line;
        long total = 0;
        while (std::getline(status, line)) {
            if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
                line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
                total += std::strtol(line.c_str() + line.find(':') + 1, nullptr, 10);
        }
        out[tid] = total;
    }
    ::closedir(dir);
    return out;
}

corio::Coro<int> idle(double seconds) {
    const long self = ::syscall(SYS_gettid);
    co_await corio::sleep(std::chrono::milliseconds(50));  // the watchdog thread is running now
    const auto before = switches(self);
    co_await corio::sleep(std::chrono::duration<double>(seconds));
    const auto after = switches(self);
    long woke = 0;
    for (const auto& [tid, n] : after) woke += n - (before.count(tid) ? before.at(tid) : 0);
    std::printf(
        "idle loop for %.1f s with the watchdog on (threshold 100 ms): %ld context "
        "switch(es) of the other %zu thread(s)\n",
        seconds, woke, after.size());
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
    corio::RunOptions options;
    options.watchdog = corio::WatchdogOptions{.threshold = std::chrono::milliseconds(100)};
    options.monitor = false;
    return corio::run(idle(seconds), options);
}
