// echo_load: the load generator of the echo benchmark (bench/echo/run_echo.py).
//
//     echo_load --port P --connections C --size S [--duration D] [--warmup W]
//               [--host 127.0.0.1] [--server-pid PID]
//
// Opens C connections to an echo server and runs a closed loop on each: send a message of S
// bytes, wait until all S bytes have come back (checking every byte), send the next one. One
// thread, one level-triggered epoll loop, non-blocking sockets with TCP_NODELAY. The first W
// seconds (default 0.5) warm up; the next D seconds (default 3) are measured: requests completed,
// bytes each way, and the latency of each request (from its first send to its last echoed byte).
//
// With --server-pid, the server's CPU time (utime + stime of /proc/PID/stat) is read at the two
// ends of the measured window, so that it covers exactly the requests counted.
//
// Prints one JSON object on stdout; exits 1 (with a message on stderr) if a connection fails or
// an echoed byte differs from what was sent.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

// Messages differ from one request to the next (and from one connection to the next): request k
// of connection i is pattern[o, o + S) with o = (37 i + k) mod kShifts, so an echo of stale or
// misplaced bytes fails the check.
constexpr std::size_t kShifts = 251;
constexpr std::size_t kScratch = 256 * 1024;

struct Options {
    std::string host = "127.0.0.1";
    int port = -1;
    std::size_t connections = 0;
    std::size_t size = 0;
    double duration = 3.0;
    double warmup = 0.5;
    long server_pid = 0;
};

struct Conn {
    int fd = -1;
    std::size_t index = 0;
    std::uint64_t seq = 0;
    std::size_t offset = 0;  // of the current message in the pattern
    std::size_t sent = 0;
    std::size_t received = 0;
    std::uint64_t started_ns = 0;
    bool want_out = false;
};

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "echo_load: %s\n", what.c_str());
    std::exit(1);
}

[[noreturn]] void fail_errno(const std::string& what) {
    fail(what + ": " + std::strerror(errno));
}

std::uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

double own_cpu_s() {
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// utime + stime of a process, in seconds (resolution: one clock tick, usually 10 ms).
double process_cpu_s(long pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE* f = std::fopen(path, "r");
    if (f == nullptr) fail_errno(std::string("cannot open ") + path);
    char text[2048];
    const std::size_t n = std::fread(text, 1, sizeof text - 1, f);
    std::fclose(f);
    text[n] = '\0';
    // The command name (field 2) may hold spaces: count the fields after its closing ')'.
    const char* p = std::strrchr(text, ')');
    if (p == nullptr) fail(std::string("cannot parse ") + path);
    unsigned long long utime = 0;
    unsigned long long stime = 0;
    // Fields 3 ... 13, then utime (14) and stime (15).
    if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                    &stime) != 2)
        fail(std::string("cannot parse ") + path);
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double parse_number(const char* name, const char* text) {
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (*text == '\0' || *end != '\0' || !(v >= 0)) fail(std::string("bad value for ") + name);
    return v;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) fail("missing value after " + a);
        const char* v = argv[++i];
        if (a == "--host") {
            o.host = v;
        } else if (a == "--port") {
            o.port = static_cast<int>(parse_number("--port", v));
        } else if (a == "--connections") {
            o.connections = static_cast<std::size_t>(parse_number("--connections", v));
        } else if (a == "--size") {
            o.size = static_cast<std::size_t>(parse_number("--size", v));
        } else if (a == "--duration") {
            o.duration = parse_number("--duration", v);
        } else if (a == "--warmup") {
            o.warmup = parse_number("--warmup", v);
        } else if (a == "--server-pid") {
            o.server_pid = static_cast<long>(parse_number("--server-pid", v));
        } else {
            fail("unknown option " + a);
        }
    }
    if (o.port <= 0 || o.port > 65535 || o.connections == 0 || o.size == 0 || o.duration <= 0)
        fail(
            "usage: echo_load --port P --connections C --size S [--duration D] [--warmup W] "
            "[--host H] [--server-pid PID]");
    return o;
}

class Load {
  public:
    explicit Load(const Options& o) : o_(o), pattern_(o.size + kShifts), scratch_(kScratch) {
        std::uint64_t x = 0x9E3779B97F4A7C15u;  // xorshift64: bytes that do not repeat soon
        for (char& c : pattern_) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c = static_cast<char>(x >> 56);
        }
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) fail_errno("epoll_create1");
        conns_.resize(o.connections);
        latencies_.reserve(1 << 20);
    }

    void connect_all() {
        sockaddr_in address;
        std::memset(&address, 0, sizeof address);
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(o_.port));
        if (inet_pton(AF_INET, o_.host.c_str(), &address.sin_addr) != 1)
            fail("--host must be a numeric IPv4 address");
        for (std::size_t i = 0; i < conns_.size(); ++i) {
            Conn& c = conns_[i];
            c.index = i;
            c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (c.fd < 0) fail_errno("socket");
            if (connect(c.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0)
                fail_errno("connect to " + o_.host + ":" + std::to_string(o_.port));
            int one = 1;
            setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK) < 0)
                fail_errno("fcntl(O_NONBLOCK)");
            epoll_event ev;
            std::memset(&ev, 0, sizeof ev);
            ev.events = EPOLLIN;
            ev.data.u64 = i;
            if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) < 0) fail_errno("epoll_ctl(ADD)");
        }
    }

    void run() {
        const std::uint64_t t0 = now_ns();
        const std::uint64_t warm_end = t0 + static_cast<std::uint64_t>(o_.warmup * 1e9);
        const std::uint64_t end = warm_end + static_cast<std::uint64_t>(o_.duration * 1e9);
        for (Conn& c : conns_) begin_request(c, t0);
        std::vector<epoll_event> events(std::max<std::size_t>(conns_.size(), 16));
        for (;;) {
            std::uint64_t now = now_ns();
            if (!measuring_ && now >= warm_end) start_window(now);
            if (now >= end) break;
            const std::uint64_t next = measuring_ ? end : warm_end;
            const int timeout_ms = static_cast<int>((next - now + 999999) / 1000000);
            const int n =
                epoll_wait(ep_, events.data(), static_cast<int>(events.size()), timeout_ms);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail_errno("epoll_wait");
            }
            for (int i = 0; i < n; ++i) {
                Conn& c = conns_[events[i].data.u64];
                const std::uint32_t what = events[i].events;
                if (what & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
                if (what & EPOLLOUT) send_more(c);
            }
        }
        stop_window(now_ns());
        for (Conn& c : conns_) close(c.fd);
    }

    void report() {
        const double seconds = static_cast<double>(window_end_ - window_start_) / 1e9;
        double p50 = 0;
        double p99 = 0;
        double mean = 0;
        if (!latencies_.empty()) {
            auto at = [this](double q) {
                const auto k =
                    static_cast<std::size_t>(q * static_cast<double>(latencies_.size() - 1));
                std::nth_element(latencies_.begin(), latencies_.begin() + static_cast<long>(k),
                                 latencies_.end());
                return static_cast<double>(latencies_[k]) / 1e3;
            };
            double sum = 0;
            for (std::uint32_t l : latencies_) sum += l;
            mean = sum / static_cast<double>(latencies_.size()) / 1e3;
            p50 = at(0.50);
            p99 = at(0.99);
        }
        const double mib = 1024.0 * 1024.0;
        std::printf(
            "{\"connections\": %zu, \"size\": %zu, \"seconds\": %.6f, \"requests\": %llu, "
            "\"req_per_s\": %.1f, \"tx_mib_per_s\": %.3f, \"rx_mib_per_s\": %.3f, "
            "\"p50_us\": %.2f, \"p99_us\": %.2f, \"mean_us\": %.2f, \"client_cpu_s\": %.4f",
            conns_.size(), o_.size, seconds, static_cast<unsigned long long>(requests_),
            static_cast<double>(requests_) / seconds,
            static_cast<double>(tx_bytes_) / mib / seconds,
            static_cast<double>(rx_bytes_) / mib / seconds, p50, p99, mean, client_cpu_);
        if (o_.server_pid > 0) std::printf(", \"server_cpu_s\": %.4f", server_cpu_);
        std::printf("}\n");
    }

  private:
    void start_window(std::uint64_t now) {
        measuring_ = true;
        window_start_ = now;
        requests_ = tx_bytes_ = rx_bytes_ = 0;
        latencies_.clear();
        client_cpu_ = -own_cpu_s();
        if (o_.server_pid > 0) server_cpu_ = -process_cpu_s(o_.server_pid);
    }

    void stop_window(std::uint64_t now) {
        window_end_ = now;
        client_cpu_ += own_cpu_s();
        if (o_.server_pid > 0) server_cpu_ += process_cpu_s(o_.server_pid);
    }

    void set_want_out(Conn& c, bool want) {
        if (c.want_out == want) return;
        c.want_out = want;
        epoll_event ev;
        std::memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
        ev.data.u64 = c.index;
        if (epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) < 0) fail_errno("epoll_ctl(MOD)");
    }

    void begin_request(Conn& c, std::uint64_t now) {
        ++c.seq;
        c.offset = (37 * c.index + c.seq) % kShifts;
        c.sent = 0;
        c.received = 0;
        c.started_ns = now;
        send_more(c);
    }

    void send_more(Conn& c) {
        const char* message = pattern_.data() + c.offset;
        while (c.sent < o_.size) {
            const ssize_t n = send(c.fd, message + c.sent, o_.size - c.sent, MSG_NOSIGNAL);
            if (n > 0) {
                c.sent += static_cast<std::size_t>(n);
                if (measuring_) tx_bytes_ += static_cast<std::uint64_t>(n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else {
                fail_errno("send on connection " + std::to_string(c.index));
            }
        }
        set_want_out(c, c.sent < o_.size);
    }

    void on_readable(Conn& c) {
        for (;;) {
            const std::size_t want = std::min(o_.size - c.received, scratch_.size());
            const ssize_t n = recv(c.fd, scratch_.data(), want, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                fail_errno("recv on connection " + std::to_string(c.index));
            }
            if (n == 0) fail("the server closed connection " + std::to_string(c.index));
            const auto got = static_cast<std::size_t>(n);
            if (c.received + got > c.sent)
                fail("connection " + std::to_string(c.index) + " received more than it sent");
            if (std::memcmp(scratch_.data(), pattern_.data() + c.offset + c.received, got) != 0)
                fail("connection " + std::to_string(c.index) + ": echoed bytes differ (request " +
                     std::to_string(c.seq) + ", bytes " + std::to_string(c.received) + "+" +
                     std::to_string(got) + ")");
            c.received += got;
            if (measuring_) rx_bytes_ += got;
            if (c.received < o_.size) continue;
            const std::uint64_t now = now_ns();
            if (measuring_) {
                ++requests_;
                const std::uint64_t ns = now - c.started_ns;
                latencies_.push_back(static_cast<std::uint32_t>(std::min<std::uint64_t>(ns, ~0u)));
            }
            begin_request(c, now);
            return;  // the echo of the new request cannot be here yet
        }
    }

    Options o_;
    std::vector<char> pattern_;
    std::vector<char> scratch_;
    std::vector<Conn> conns_;
    std::vector<std::uint32_t> latencies_;  // ns, of the requests completed in the window
    int ep_ = -1;
    bool measuring_ = false;
    std::uint64_t window_start_ = 0;
    std::uint64_t window_end_ = 0;
    std::uint64_t requests_ = 0;
    std::uint64_t tx_bytes_ = 0;
    std::uint64_t rx_bytes_ = 0;
    double client_cpu_ = 0;
    double server_cpu_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    Load load(o);
    load.connect_all();
    load.run();
    load.report();
    return 0;
}
