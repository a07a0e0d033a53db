// corio-ps PID and corio-pstree PID: the tasks of a running corio program, like Python's
// `python -m asyncio ps PID` and `pstree PID`. The program must have the monitor endpoint on
// (CORIO_MONITOR=1, debug mode, or the watchdog); see docs/debugging.md.
//
// Built twice from this file: CORIO_PSTREE selects the tree view.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "corio/graph.hpp"
#include "monitor.hpp"

namespace {

#ifdef CORIO_PSTREE
constexpr bool kTree = true;
#else
constexpr bool kTree = false;
#endif
constexpr const char* kProgram = kTree ? "corio-pstree" : "corio-ps";

struct Frame {
    unsigned line = 0;
    std::string function;
    std::string file;
};

struct Task {
    std::string address;
    std::string id;
    std::string state;
    std::string name;
    std::vector<Frame> frames;  // innermost first
    std::vector<std::string> awaited_by;
};

struct Loop {
    std::string header;  // "loop 0 epoll running 1234 answered"
    std::string backend, running, tid, how;
    int index = 0;
    std::vector<unsigned long long> stats;
    std::vector<unsigned long long> stalls;  // threshold, 4 on-CPU, 4 off-CPU, longest
    std::vector<Task> tasks;
};

[[noreturn]] void die(const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
    std::exit(1);
}

std::string request(long pid) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string name = corio::detail::monitor_socket_name(pid);
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), size) != 0) {
        die("cannot reach process " + std::to_string(pid) + " (" + std::strerror(errno) +
            "): is it a corio program with the monitor on (CORIO_MONITOR=1, debug mode or "
            "CORIO_WATCHDOG)?");
    }
    // The name is first come, first served: make sure it is that process that answers.
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || peer.pid != pid)
        die("the endpoint of process " + std::to_string(pid) + " is held by another process");
    const char ask[] = "snapshot\n";
    std::string answer;
    // A process that refuses (another user's) closes the connection at once: the send may fail.
    const bool sent = ::send(fd, ask, sizeof ask - 1, MSG_NOSIGNAL) >= 0;
    char buf[65536];
    while (sent) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        answer.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    if (answer.rfind("corio-monitor 1\n", 0) != 0) {
        die("process " + std::to_string(pid) +
            " did not answer (is it another user's? only the same user, or root, may look)");
    }
    return answer;
}

std::vector<Loop> parse(const std::string& answer) {
    std::vector<Loop> loops;
    std::istringstream in(answer);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string kind;
        fields >> kind;
        if (kind == "loop") {
            Loop l;
            fields >> l.index >> l.backend >> l.running >> l.tid >> l.how;
            loops.push_back(std::move(l));
        } else if (kind == "stats" && !loops.empty()) {
            unsigned long long v = 0;
            while (fields >> v) loops.back().stats.push_back(v);
        } else if (kind == "stalls" && !loops.empty()) {
            unsigned long long v = 0;
            while (fields >> v) loops.back().stalls.push_back(v);
        } else if (kind == "task" && !loops.empty()) {
            Task t;
            fields >> t.address >> t.id >> t.state;
            std::getline(fields >> std::ws, t.name);
            loops.back().tasks.push_back(std::move(t));
        } else if (kind == "frame" && !loops.empty() && !loops.back().tasks.empty()) {
            Frame f;
            unsigned def_line = 0;
            fields >> f.line >> def_line;
            std::string rest;
            std::getline(fields >> std::ws, rest);
            const std::size_t tab = rest.find('\t');
            f.function = rest.substr(0, tab);
            if (tab != std::string::npos) f.file = rest.substr(tab + 1);
            loops.back().tasks.back().frames.push_back(std::move(f));
        } else if (kind == "awaited_by" && !loops.empty() && !loops.back().tasks.empty()) {
            std::string a;
            fields >> a;
            loops.back().tasks.back().awaited_by.push_back(a);
        }
    }
    return loops;
}

std::string base_name(const std::string& path) {
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string where(const Frame& f) {
    return corio::detail::short_function_name(f.function) + " " + base_name(f.file) + ":" +
           std::to_string(f.line);
}

double seconds(unsigned long long ns) {
    return static_cast<double>(ns) / 1e9;
}

void print_loop_header(const Loop& l) {
    std::printf("loop %d (%s, thread %s): %s", l.index, l.backend.c_str(), l.tid.c_str(),
                l.running.c_str());
    if (l.how == "stuck") {
        std::printf(", STUCK: it did not answer within 1 s; tasks read from its stopped thread");
    } else if (l.how == "no-answer") {
        std::printf(", STUCK: it did not answer, nor did its thread");
    }
    std::printf("\n");
    if (l.stats.size() >= 7) {
        std::printf(
            "  %llu iterations, %llu polls, %llu task steps, %llu callbacks; %.3f s polling, "
            "%.3f s running; longest step %.3f s\n",
            l.stats[0], l.stats[1], l.stats[2], l.stats[3], seconds(l.stats[4]),
            seconds(l.stats[5]), seconds(l.stats[6]));
    }
    if (l.stalls.size() >= 10) {
        const auto& st = l.stalls;
        std::printf(
            "  stalls over %.3f s (watchdog): on-CPU %llu, off-CPU %llu; by length 1-2x %llu/%llu, "
            "2-4x %llu/%llu, 4-8x %llu/%llu, 8x+ %llu/%llu (on/off); longest %.3f s\n",
            seconds(st[0]), st[1] + st[2] + st[3] + st[4], st[5] + st[6] + st[7] + st[8], st[1],
            st[5], st[2], st[6], st[3], st[7], st[4], st[8], seconds(st[9]));
    }
}

std::string name_of(const Loop& l, const std::string& address) {
    for (const Task& t : l.tasks)
        if (t.address == address) return t.name;
    return address;
}

void print_ps(const std::vector<Loop>& loops) {
    for (const Loop& l : loops) {
        print_loop_header(l);
        struct Row {
            std::string cells[5];
        };
        std::vector<Row> rows;
        rows.push_back(
            {{"TASK", "NAME", "STATE", "COROUTINE STACK (innermost first)", "AWAITED BY"}});
        for (const Task& t : l.tasks) {
            Row r;
            r.cells[0] = t.address;
            r.cells[1] = t.name;
            r.cells[2] = t.state;
            for (std::size_t i = 0; i < t.frames.size(); ++i)
                r.cells[3] += (i == 0 ? "" : " <- ") + where(t.frames[i]);
            for (std::size_t i = 0; i < t.awaited_by.size(); ++i)
                r.cells[4] += (i == 0 ? "" : ", ") + name_of(l, t.awaited_by[i]);
            rows.push_back(std::move(r));
        }
        std::size_t width[4] = {0, 0, 0, 0};
        for (const Row& r : rows)
            for (int c = 0; c < 4; ++c) width[c] = std::max(width[c], r.cells[c].size());
        for (const Row& r : rows) {
            std::string line = "  ";
            for (int c = 0; c < 4; ++c) {
                line += r.cells[c];
                line += std::string(width[c] - r.cells[c].size() + 2, ' ');
            }
            line += r.cells[4];
            while (!line.empty() && line.back() == ' ') line.pop_back();
            std::printf("%s\n", line.c_str());
        }
    }
}

// A task, its coroutines (outermost first), and under the innermost the tasks it awaits.
void print_tree(const Loop& l, const Task& t, const std::string& prefix, bool last,
                std::set<std::string>& path) {
    std::printf("%s%s (T) %s%s\n", prefix.c_str(), last ? "└──" : "├──", t.name.c_str(),
                t.state == "running" ? "  [running]" : "");
    std::string inner = prefix + (last ? "    " : "│   ");
    if (path.count(t.address) != 0) {
        std::printf("%s└── (awaits a task above it: a cycle)\n", inner.c_str());
        return;
    }
    path.insert(t.address);
    for (auto f = t.frames.rbegin(); f != t.frames.rend(); ++f) {
        std::printf("%s└──  %s\n", inner.c_str(), where(*f).c_str());
        inner += "    ";
    }
    std::vector<const Task*> awaited;
    for (const Task& other : l.tasks) {
        for (const std::string& a : other.awaited_by)
            if (a == t.address) awaited.push_back(&other);
    }
    for (std::size_t i = 0; i < awaited.size(); ++i)
        print_tree(l, *awaited[i], inner, i + 1 == awaited.size(), path);
    path.erase(t.address);
}

void print_pstree(const std::vector<Loop>& loops) {
    for (const Loop& l : loops) {
        print_loop_header(l);
        std::vector<const Task*> roots;
        for (const Task& t : l.tasks)
            if (t.awaited_by.empty()) roots.push_back(&t);
        for (std::size_t i = 0; i < roots.size(); ++i) {
            std::set<std::string> path;
            print_tree(l, *roots[i], "", i + 1 == roots.size(), path);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2 || std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0) {
        std::fprintf(stderr,
                     "usage: %s PID\n"
                     "Lists the tasks of the corio program PID (started with CORIO_MONITOR=1,\n"
                     "in debug mode, or with the watchdog on).\n",
                     kProgram);
        return argc == 2 ? 0 : 2;
    }
    char* end = nullptr;
    const long pid = std::strtol(argv[1], &end, 10);
    if (*end != '\0' || pid <= 0) die(std::string("not a process id: '") + argv[1] + "'");
    const std::vector<Loop> loops = parse(request(pid));
    std::printf("%s %ld: %zu event loop(s)\n", kProgram, pid, loops.size());
    if (kTree) {
        print_pstree(loops);
    } else {
        print_ps(loops);
    }
    return 0;
}
