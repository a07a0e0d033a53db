// idle_conns: how much memory an echo server spends per idle connection.
//
//     idle_conns --port P --connections N --server-pid PID [--batch 512]
//
// Reads the server's resident set (VmRSS of /proc/PID/status), then opens N TCP connections to
// 127.0.0.1:P and makes each of them idle in the server's steady state: every connection sends
// one byte and waits for its echo, so the server has accepted it, served one request and is
// waiting to read again. Half a second later it reads the server's VmRSS (and VmHWM) again:
// (after - before) / N is the memory of one idle connection, in user space (socket buffers
// belong to the kernel and do not show in VmRSS).
//
// Two phases, each with at most --batch operations in flight (one thread, one level-triggered
// epoll loop, non-blocking sockets):
//   1. connect: all N connections, spread over the source addresses 127.0.0.1, 127.0.0.2, ...
//      (10 000 per address). Each socket is bound to its address with port 0 and
//      IP_BIND_ADDRESS_NO_PORT, so that the kernel picks the port at connect() time, per
//      destination, and more than one address's worth of ephemeral ports can be used.
//   2. echo: on each connection, send one byte and wait until it comes back (checked).
// The server's CPU time (utime + stime of /proc/PID/stat) is taken over the two phases.
//
// Prints one JSON object on stdout, then closes every connection and exits 0. Exits 1 with a
// message on stderr if a connection fails, an echoed byte is wrong, the server closes a
// connection, or the whole run takes more than 120 s.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// connect() picks even ports of ip_local_port_range first (about 14 000 of the default range)
// and scans all of them before trying an odd one: past that many connections per source address
// every connect() scans the whole even half, and 19 000 connections from one address took 15 s
// instead of 1.3 s. 10 000 per address stays within the even ports.
constexpr std::size_t kPerSourceAddress = 10000;
constexpr std::size_t kMaxSourceAddresses = 254;  // 127.0.0.1 ... 127.0.0.254
constexpr std::size_t kSpareDescriptors = 64;     // stdio, epoll, /proc files
constexpr std::uint64_t kTimeoutNs = 120ull * 1000000000u;
constexpr std::uint64_t kSettleNs = 500000000u;  // wait before the second reading
constexpr int kMaxEvents = 1024;

struct Options {
    int port = -1;
    std::size_t connections = 0;
    long server_pid = 0;
    std::size_t batch = 512;
};

enum class State : std::uint8_t {
    New,         // no socket yet
    Connecting,  // connect() in progress: waits for EPOLLOUT
    Connected,   // dormant until the echo phase
    Sending,     // the socket did not take the byte at once: waits for EPOLLOUT
    Echoing,     // the byte was sent: waits for EPOLLIN
    Done,        // the byte came back: idle
};

struct Conn {
    int fd = -1;
    State state = State::New;
};

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "idle_conns: %s\n", what.c_str());
    std::exit(1);
}

[[noreturn]] void fail_errno(const std::string& what) {
    fail(what + ": " + std::strerror(errno));
}

std::uint64_t now_ns() {
    timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) fail_errno("clock_gettime");
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

void sleep_ns(std::uint64_t ns) {
    timespec left;
    left.tv_sec = static_cast<time_t>(ns / 1000000000u);
    left.tv_nsec = static_cast<long>(ns % 1000000000u);
    while (nanosleep(&left, &left) != 0) {
        if (errno != EINTR) fail_errno("nanosleep");
    }
}

// The text of a /proc file (small: status or stat).
std::string read_proc(long pid, const char* name) {
    const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) fail_errno("cannot open " + path + " (is the server running?)");
    std::string text;
    char chunk[4096];
    std::size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) text.append(chunk, n);
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) fail("cannot read " + path);
    return text;
}

// A "Name:   1234 kB" line of /proc/PID/status, in KiB.
long status_kib(const std::string& status, long pid, const char* field) {
    const std::string key = std::string("\n") + field + ":";
    const std::size_t at = status.find(key);
    if (at == std::string::npos)
        fail(std::string("no ") + field + " in /proc/" + std::to_string(pid) + "/status");
    char* end = nullptr;
    const long kib = std::strtol(status.c_str() + at + key.size(), &end, 10);
    if (end == status.c_str() + at + key.size() || kib < 0)
        fail(std::string("cannot parse ") + field + " in /proc/" + std::to_string(pid) + "/status");
    return kib;
}

// utime + stime of a process, in seconds (resolution: one clock tick, usually 10 ms).
double process_cpu_s(long pid) {
    const std::string text = read_proc(pid, "stat");
    // The command name (field 2) may hold spaces: count the fields after its closing ')'.
    const std::size_t paren = text.rfind(')');
    if (paren == std::string::npos) fail("cannot parse /proc/" + std::to_string(pid) + "/stat");
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    // Fields 3 ... 13, then utime (14) and stime (15).
    if (std::sscanf(text.c_str() + paren + 1,
                    " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        fail("cannot parse /proc/" + std::to_string(pid) + "/stat");
    const long ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0) fail_errno("sysconf(_SC_CLK_TCK)");
    return static_cast<double>(utime + stime) / static_cast<double>(ticks);
}

double parse_number(const std::string& name, const char* text) {
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (*text == '\0' || *end != '\0' || !(v >= 0)) fail("bad value for " + name + ": " + text);
    return v;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) fail("missing value after " + a);
        const char* v = argv[++i];
        if (a == "--port") {
            o.port = static_cast<int>(parse_number(a, v));
        } else if (a == "--connections") {
            o.connections = static_cast<std::size_t>(parse_number(a, v));
        } else if (a == "--server-pid") {
            o.server_pid = static_cast<long>(parse_number(a, v));
        } else if (a == "--batch") {
            o.batch = static_cast<std::size_t>(parse_number(a, v));
        } else {
            fail("unknown option " + a);
        }
    }
    if (o.port <= 0 || o.port > 65535 || o.connections == 0 || o.server_pid <= 0 || o.batch == 0)
        fail("usage: idle_conns --port P --connections N --server-pid PID [--batch 512]");
    if ((o.connections + kPerSourceAddress - 1) / kPerSourceAddress > kMaxSourceAddresses)
        fail("at most " + std::to_string(kPerSourceAddress * kMaxSourceAddresses) +
             " connections (" + std::to_string(kPerSourceAddress) + " per source address)");
    return o;
}

// Raises the soft limit of open files to the hard limit: N connections need N descriptors.
void raise_fd_limit(std::size_t connections) {
    rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) fail_errno("getrlimit(RLIMIT_NOFILE)");
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < connections + kSpareDescriptors)
        fail("the hard limit of open files (RLIMIT_NOFILE) is " + std::to_string(limit.rlim_max) +
             ", below the " + std::to_string(connections + kSpareDescriptors) +
             " needed; raise it, e.g. prlimit --nofile=N:N -- idle_conns ...");
    if (limit.rlim_cur != limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) fail_errno("setrlimit(RLIMIT_NOFILE)");
    }
}

class IdleConnections {
  public:
    explicit IdleConnections(const Options& o) : o_(o), conns_(o.connections) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) fail_errno("epoll_create1");
        std::memset(&server_, 0, sizeof server_);
        server_.sin_family = AF_INET;
        server_.sin_port = htons(static_cast<std::uint16_t>(o.port));
        server_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }

    ~IdleConnections() {
        for (Conn& c : conns_)
            if (c.fd >= 0) close(c.fd);
        if (ep_ >= 0) close(ep_);
    }

    IdleConnections(const IdleConnections&) = delete;
    IdleConnections& operator=(const IdleConnections&) = delete;

    // Phase 1: every connection established (in the kernel: the server may not have accepted
    // it yet; phase 2 makes sure it has).
    void connect_all(std::uint64_t deadline) {
        std::size_t next = 0;
        in_flight_ = 0;
        finished_ = 0;
        while (finished_ < conns_.size()) {
            while (in_flight_ < o_.batch && next < conns_.size()) start_connect(next++);
            wait_events(deadline, "connecting");
        }
    }

    // Phase 2: one byte there and back on every connection.
    void echo_all(std::uint64_t deadline) {
        std::size_t next = 0;
        in_flight_ = 0;
        finished_ = 0;
        while (finished_ < conns_.size()) {
            while (in_flight_ < o_.batch && next < conns_.size()) start_echo(next++);
            wait_events(deadline, "waiting for echoes");
        }
    }

    // After the measurement: fails if the server has closed or reset any connection (every
    // connection is dormant, so any event is one of those).
    void check_still_open() { poll_once(0); }

  private:
    // The byte connection i sends: varies from one connection to the next, so that an echo on
    // the wrong connection is caught.
    static char byte_of(std::size_t i) { return static_cast<char>((i * 131 + 7) & 0xff); }

    std::string name_of(std::size_t i) const {
        return "connection " + std::to_string(i) + " (from 127.0.0." +
               std::to_string(1 + i / kPerSourceAddress) + ")";
    }

    void set_interest(std::size_t i, std::uint32_t events) {
        epoll_event ev;
        std::memset(&ev, 0, sizeof ev);
        ev.events = events;
        ev.data.u64 = i;
        if (epoll_ctl(ep_, EPOLL_CTL_MOD, conns_[i].fd, &ev) < 0) fail_errno("epoll_ctl(MOD)");
    }

    void finish(std::size_t i, State state) {
        conns_[i].state = state;
        // Dormant from now on: only the server closing or resetting it is reported.
        set_interest(i, EPOLLRDHUP);
        --in_flight_;
        ++finished_;
    }

    void start_connect(std::size_t i) {
        Conn& c = conns_[i];
        c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) fail_errno("socket for " + name_of(i));
        // Without this, bind() would pick a port unique across all destinations, and the
        // ephemeral range would be shared by all source addresses.
        int one = 1;
        if (setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0)
            fail_errno("setsockopt(IP_BIND_ADDRESS_NO_PORT)");
        sockaddr_in source;
        std::memset(&source, 0, sizeof source);
        source.sin_family = AF_INET;
        source.sin_port = 0;
        source.sin_addr.s_addr =
            htonl(INADDR_LOOPBACK + static_cast<std::uint32_t>(i / kPerSourceAddress));
        if (bind(c.fd, reinterpret_cast<sockaddr*>(&source), sizeof source) < 0)
            fail_errno("bind of " + name_of(i));
        epoll_event ev;
        std::memset(&ev, 0, sizeof ev);
        ev.events = EPOLLOUT;
        ev.data.u64 = i;
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) < 0) fail_errno("epoll_ctl(ADD)");
        ++in_flight_;
        c.state = State::Connecting;
        if (connect(c.fd, reinterpret_cast<sockaddr*>(&server_), sizeof server_) == 0) {
            finish(i, State::Connected);
        } else if (errno != EINPROGRESS) {
            fail_errno("connect of " + name_of(i) + " to 127.0.0.1:" + std::to_string(o_.port));
        }
    }

    void on_connect_ready(std::size_t i) {
        int error = 0;
        socklen_t len = sizeof error;
        if (getsockopt(conns_[i].fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
            fail_errno("getsockopt(SO_ERROR)");
        if (error != 0) {
            errno = error;
            fail_errno("connect of " + name_of(i) + " to 127.0.0.1:" + std::to_string(o_.port));
        }
        finish(i, State::Connected);
    }

    void start_echo(std::size_t i) {
        ++in_flight_;
        send_byte(i);
    }

    void send_byte(std::size_t i) {
        const char b = byte_of(i);
        for (;;) {
            const ssize_t n = send(conns_[i].fd, &b, 1, MSG_NOSIGNAL);
            if (n == 1) break;
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                // Unlikely with an empty send buffer, but allowed: wait until it takes it.
                if (conns_[i].state != State::Sending) {
                    conns_[i].state = State::Sending;
                    set_interest(i, EPOLLOUT);
                }
                return;
            }
            fail_errno("send on " + name_of(i));
        }
        conns_[i].state = State::Echoing;
        set_interest(i, EPOLLIN);
    }

    void on_echo_ready(std::size_t i) {
        char b = 0;
        for (;;) {
            const ssize_t n = recv(conns_[i].fd, &b, 1, 0);
            if (n == 1) break;
            if (n == 0) fail("the server closed " + name_of(i) + " instead of echoing");
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            fail_errno("recv on " + name_of(i));
        }
        if (b != byte_of(i))
            fail(name_of(i) + ": echoed byte " + std::to_string(static_cast<unsigned char>(b)) +
                 ", sent " + std::to_string(static_cast<unsigned char>(byte_of(i))));
        finish(i, State::Done);
    }

    void wait_events(std::uint64_t deadline, const char* doing) {
        const std::uint64_t now = now_ns();
        if (now >= deadline)
            fail("timed out after " + std::to_string(kTimeoutNs / 1000000000u) + " s while " +
                 std::string(doing) + ": " + std::to_string(finished_) + " of " +
                 std::to_string(conns_.size()) + " connections done, " +
                 std::to_string(in_flight_) + " in flight");
        poll_once(
            static_cast<int>(std::min<std::uint64_t>((deadline - now + 999999) / 1000000, 1000)));
    }

    // Waits up to timeout_ms for events and handles them.
    void poll_once(int timeout_ms) {
        const int n = epoll_wait(ep_, events_, kMaxEvents, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) return;
            fail_errno("epoll_wait");
        }
        for (int k = 0; k < n; ++k) {
            const auto i = static_cast<std::size_t>(events_[k].data.u64);
            const std::uint32_t what = events_[k].events;
            switch (conns_[i].state) {
                case State::Connecting:
                    on_connect_ready(i);
                    break;
                case State::Sending:
                    send_byte(i);
                    break;
                case State::Echoing:
                    on_echo_ready(i);
                    break;
                case State::Connected:
                case State::Done:
                    // A dormant connection only reports the server closing or resetting it.
                    fail("the server closed or reset " + name_of(i) + " while it was idle (" +
                         (what & EPOLLERR ? "error" : "end of stream") + ")");
                case State::New:
                    fail("an event for " + name_of(i) + ", which has no socket");
            }
        }
    }

    Options o_;
    std::vector<Conn> conns_;
    sockaddr_in server_;
    int ep_ = -1;
    std::size_t in_flight_ = 0;
    std::size_t finished_ = 0;
    epoll_event events_[kMaxEvents];
};

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    raise_fd_limit(o.connections);

    const long rss_before = status_kib(read_proc(o.server_pid, "status"), o.server_pid, "VmRSS");
    const std::uint64_t t0 = now_ns();
    const std::uint64_t deadline = t0 + kTimeoutNs;
    const double cpu_before = process_cpu_s(o.server_pid);

    IdleConnections conns(o);
    conns.connect_all(deadline);
    const std::uint64_t t1 = now_ns();
    conns.echo_all(deadline);
    const std::uint64_t t2 = now_ns();
    const double server_cpu = process_cpu_s(o.server_pid) - cpu_before;

    // Let the server finish whatever follows the echo (its reads park again right away, but a
    // slow server may still be writing).
    sleep_ns(kSettleNs);
    const std::string status = read_proc(o.server_pid, "status");
    const long rss_after = status_kib(status, o.server_pid, "VmRSS");
    const long hwm_after = status_kib(status, o.server_pid, "VmHWM");
    conns.check_still_open();

    std::printf(
        "{\"connections\": %zu, \"rss_before_kib\": %ld, \"rss_after_kib\": %ld, "
        "\"hwm_after_kib\": %ld, \"bytes_per_conn\": %.1f, \"connect_seconds\": %.3f, "
        "\"echo_seconds\": %.3f, \"server_cpu_s\": %.2f}\n",
        o.connections, rss_before, rss_after, hwm_after,
        static_cast<double>(rss_after - rss_before) * 1024.0 / static_cast<double>(o.connections),
        static_cast<double>(t1 - t0) / 1e9, static_cast<double>(t2 - t1) / 1e9, server_cpu);
    if (std::fflush(stdout) != 0) fail_errno("writing the result");
    return 0;  // ~IdleConnections closes every connection
}
