// asio-peer: the standalone Asio (C++20 coroutines) peer of corio's benchmarks (bench/README.md,
// "The peer contract" of the benchmark suite).
//
//     asio-peer echo PORT          TCP echo server on 127.0.0.1:PORT (0 picks a free port)
//     asio-peer http PORT          HTTP/1.1 "hello" server on 127.0.0.1:PORT
//     asio-peer micro [--quick]    micro benchmarks, one JSON object per line
//
// Everything runs on one asio::io_context (concurrency hint 1) driven by the main thread.
// Coroutines are asio::awaitable<> started with asio::co_spawn; asynchronous operations are
// awaited with asio::use_awaitable, wrapped in asio::redirect_error where an error is an expected
// outcome (end of stream, reset connection), so that closing a connection throws no exception.
//
// The servers print the bound port as one line on stdout once listening, and exit 0 on SIGTERM
// or SIGINT (asio::signal_set); connections still open are then closed abruptly.
//
// Micro benchmarks (N full / --quick), printed in this order:
//   suspended_task_bytes  100,000 / 20,000 coroutines co_spawned with asio::detached that each
//                         wait on one shared steady_timer; RSS growth / N. Runs first, so that
//                         memory freed by the other benchmarks cannot hide growth.
//   spawn_join            1,000,000 / 100,000 times co_await co_spawn(ex, trivial(),
//                         use_awaitable) inside one coroutine; total / N.
//   ping_pong             1,000,000 / 100,000 round trips between two coroutines through
//                         capacity-0 asio::experimental::channels (see WakeChannel): try_send()
//                         wakes the other side, co_await async_receive() waits. Total / 2N.
//   timers_1m(_total)     1,000,000 / 100,000 steady_timer async_waits with delays (i % 1000) ms.
// Every benchmark runs on a fresh io_context. Asio has all four notions, so nothing is omitted.
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <asio.hpp>
#include <asio/experimental/channel.hpp>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t kReadSize = 64 * 1024;   // the contract's "read up to 64 KiB"
constexpr std::size_t kMaxHeaderBytes = 8192;  // a longer request head closes the connection
constexpr int kListenBacklog = 4096;           // the contract asks for >= 1024
constexpr std::string_view kHttpResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";

[[noreturn]] void die(const std::string& message) {
    std::fprintf(stderr, "asio-peer: %s\n", message.c_str());
    std::exit(1);
}

// A completion handler for co_spawn that lets an unexpected exception (bad_alloc, a failed
// check in a benchmark) escape io_context::run() to main(), instead of being swallowed the way
// asio::detached swallows it.
void rethrow_if_failed(std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
}

// The contract: serve as many connections as the hard limit allows (100,000 idle ones).
void raise_nofile_limit() {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) die(std::string("getrlimit: ") + strerror(errno));
    if (lim.rlim_cur == lim.rlim_max) return;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
        die("cannot raise RLIMIT_NOFILE to the hard limit " + std::to_string(lim.rlim_max) + ": " +
            strerror(errno));
    }
}

// --- servers ------------------------------------------------------------------------------------

// Echo: read up to 64 KiB, write all of it back, repeat until end of stream. async_write
// completes only once every byte is in the socket, so nothing is read before what was read has
// been written: a slow reader slows its writer down through TCP (back-pressure).
awaitable<void> echo_session(tcp::socket sock) {
    // Uninitialised: an idle connection never touches (makes resident) most of its buffer.
    auto buf = std::make_unique_for_overwrite<char[]>(kReadSize);
    asio::error_code ec;
    for (;;) {
        std::size_t n = co_await sock.async_read_some(asio::buffer(buf.get(), kReadSize),
                                                      asio::redirect_error(use_awaitable, ec));
        if (ec) co_return;  // end of stream, or the connection failed: close it (the destructor)
        co_await asio::async_write(sock, asio::buffer(buf.get(), n),
                                   asio::redirect_error(use_awaitable, ec));
        if (ec) co_return;
    }
}

// HTTP: a request is everything up to and including the first "\r\n\r\n"; one read may bring
// several (pipelining) or part of one. The responses to the requests completed by one read go out
// in one write, in order, before the next read.
awaitable<void> http_session(tcp::socket sock) {
    // buf[0, used) holds the start of an incomplete request (at most kMaxHeaderBytes), so every
    // read has at least kReadSize - kMaxHeaderBytes bytes of room.
    auto buf = std::make_unique_for_overwrite<char[]>(kReadSize);
    std::size_t used = 0;
    std::string responses;  // reused, so pipelined batches allocate only when they grow
    asio::error_code ec;
    for (;;) {
        std::size_t n =
            co_await sock.async_read_some(asio::buffer(buf.get() + used, kReadSize - used),
                                          asio::redirect_error(use_awaitable, ec));
        if (ec) co_return;
        // The terminator may straddle the previous read: rescan its last 3 bytes only.
        std::size_t scan_from = used >= 3 ? used - 3 : 0;
        used += n;
        const std::string_view data(buf.get(), used);
        std::size_t consumed = 0;
        std::size_t count = 0;
        for (std::size_t end; (end = data.find("\r\n\r\n", scan_from)) != std::string_view::npos;) {
            ++count;
            consumed = scan_from = end + 4;
        }
        if (count > 0) {
            asio::const_buffer out = asio::buffer(kHttpResponse);  // one request: no copy
            if (count > 1) {
                responses.clear();
                for (std::size_t i = 0; i < count; ++i) responses.append(kHttpResponse);
                out = asio::buffer(responses);
            }
            co_await asio::async_write(sock, out, asio::redirect_error(use_awaitable, ec));
            if (ec) co_return;
        }
        used -= consumed;
        if (used > kMaxHeaderBytes) co_return;  // a request head too long: close
        if (consumed > 0 && used > 0) std::memmove(buf.get(), buf.get() + consumed, used);
    }
}

bool is_resource_exhaustion(const asio::error_code& ec) {
    return ec == asio::error::no_descriptors ||               // EMFILE
           ec == std::errc::too_many_files_open_in_system ||  // ENFILE
           ec == asio::error::no_buffer_space ||              // ENOBUFS
           ec == asio::error::no_memory;                      // ENOMEM
}

using Session = awaitable<void> (*)(tcp::socket);

awaitable<void> accept_loop(tcp::acceptor& acceptor, Session session) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer pause(ex);
    for (;;) {
        asio::error_code ec;
        tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
        if (ec) {
            if (ec == asio::error::operation_aborted) co_return;  // the acceptor was closed
            if (ec == asio::error::connection_aborted) continue;  // the client gave up: next
            // Out of descriptors or memory, or something unforeseen: retrying at once would spin
            // (the pending connection stays in the backlog), so pause and let connections close.
            std::fprintf(stderr, "asio-peer: accept: %s%s; retrying in 100 ms\n",
                         ec.message().c_str(),
                         is_resource_exhaustion(ec) ? " (resource limit)" : "");
            pause.expires_after(100ms);
            co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
            continue;
        }
        // Echo and HTTP answers are small writes that must not wait for Nagle's algorithm.
        sock.set_option(tcp::no_delay(true), ec);
        if (ec) continue;  // the connection is already unusable (reset): drop it
        asio::co_spawn(ex, session(std::move(sock)), rethrow_if_failed);
    }
}

std::uint16_t parse_port(const char* text) {
    unsigned value = 0;
    const char* end = text + std::strlen(text);
    auto [ptr, err] = std::from_chars(text, end, value);
    if (err != std::errc() || ptr != end || ptr == text || value > 65535) {
        die(std::string("invalid port \"") + text + "\" (expected 0..65535)");
    }
    return static_cast<std::uint16_t>(value);
}

int run_server(Session session, std::uint16_t port) {
    raise_nofile_limit();
    // Writes to a connection the client has closed must fail with EPIPE, not kill the process
    // (Asio passes MSG_NOSIGNAL already; this covers any other path).
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        die(std::string("signal(SIGPIPE): ") + strerror(errno));

    // Hint 1: one thread runs it, so handlers posted from that thread go to a thread-private queue
    // (no mutex, no wake-up of other threads).
    asio::io_context ctx{1};
    tcp::acceptor acceptor(ctx);
    const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
    asio::error_code ec;
    auto check = [&](const char* what) {
        if (ec) {
            die(std::string("cannot listen on 127.0.0.1:") + std::to_string(port) + ": " + what +
                ": " + ec.message());
        }
    };
    acceptor.open(endpoint.protocol(), ec);
    check("socket");
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    check("SO_REUSEADDR");
    acceptor.bind(endpoint, ec);
    check("bind");
    acceptor.listen(kListenBacklog, ec);
    check("listen");
    const tcp::endpoint bound = acceptor.local_endpoint(ec);
    check("getsockname");

    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&](const asio::error_code& error, int) {
        if (error) return;  // operation_aborted: the set is being destroyed
        // Stop at once; the io_context's destructor then destroys the suspended sessions, which
        // closes their sockets.
        ctx.stop();
    });

    asio::co_spawn(ctx, accept_loop(acceptor, session), rethrow_if_failed);

    if (std::printf("%u\n", static_cast<unsigned>(bound.port())) < 0 || std::fflush(stdout) != 0) {
        die("cannot write the port to stdout");
    }
    ctx.run();
    return 0;
}

// --- micro benchmarks ---------------------------------------------------------------------------

double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

void emit(const char* bench, double value, const char* unit) {
    if (std::printf("{\"peer\": \"asio\", \"bench\": \"%s\", \"value\": %.10g, \"unit\": \"%s\"}\n",
                    bench, value, unit) < 0 ||
        std::fflush(stdout) != 0) {
        die("cannot write the results to stdout");
    }
}

long rss_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) die(std::string("cannot open /proc/self/statm: ") + strerror(errno));
    long size_pages = 0;
    long resident_pages = 0;
    const int fields = std::fscanf(f, "%ld %ld", &size_pages, &resident_pages);
    std::fclose(f);
    if (fields != 2) die("cannot parse /proc/self/statm");
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) die(std::string("sysconf(_SC_PAGESIZE): ") + strerror(errno));
    return resident_pages * page;
}

struct SuspendCounts {
    long suspended = 0;
    long finished = 0;
};

// A waiter counts itself instead of throwing on a wrong wake-up: asio::detached drops exceptions.
awaitable<void> suspended_waiter(asio::steady_timer& gate, SuspendCounts& counts) {
    ++counts.suspended;  // the async_wait below registers in the same resumption
    asio::error_code ec;
    co_await gate.async_wait(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted) ++counts.finished;  // woken by the cancel
}

// N coroutines, each suspended on one shared timer that never expires; nothing is kept per task.
// The timer is then cancelled to wake them all, and they finish.
void bench_suspended_task_bytes(long n) {
    asio::io_context ctx{1};
    asio::steady_timer gate(ctx, asio::steady_timer::time_point::max());
    SuspendCounts counts;
    malloc_trim(0);  // hand memory freed at start-up back, so that reusing it shows as growth
    const long before = rss_bytes();
    for (long i = 0; i < n; ++i)
        asio::co_spawn(ctx, suspended_waiter(gate, counts), asio::detached);
    // co_spawn posts each coroutine's start; run them until every one waits on the timer.
    while (counts.suspended < n) {
        if (ctx.poll() == 0) die("suspended_task_bytes: the tasks did not all start");
    }
    const long after = rss_bytes();
    gate.cancel();
    ctx.run();
    if (counts.finished != n) die("suspended_task_bytes: not every task woke from the cancel");
    emit("suspended_task_bytes", static_cast<double>(after - before) / static_cast<double>(n),
         "bytes/task");
}

awaitable<int> trivial() {
    co_return 1;
}

awaitable<void> spawn_join_main(long n, double& seconds) {
    auto ex = co_await asio::this_coro::executor;
    long sum = 0;
    const auto t0 = Clock::now();
    for (long i = 0; i < n; ++i) sum += co_await asio::co_spawn(ex, trivial(), use_awaitable);
    seconds = seconds_between(t0, Clock::now());
    if (sum != n) throw std::runtime_error("spawn_join: wrong sum of the results");
}

void bench_spawn_join(long n) {
    asio::io_context ctx{1};
    double seconds = 0;
    asio::co_spawn(ctx, spawn_join_main(n, seconds), rethrow_if_failed);
    ctx.run();
    emit("spawn_join", seconds * 1e9 / static_cast<double>(n), "ns/op");
}

// The cheapest one-shot wake-up Asio has between two coroutines: an
// asio::experimental::channel of capacity 0, where try_send() hands a value to the receiver
// already waiting (its completion is posted) and co_await async_receive() waits. Measured here
// (N = 300,000, 2 shared cores): about 150-180 ns per hand-off, against about 1,400-1,500 ns for a
// steady_timer (expiry max) woken by cancel(), because every timer wait and cancel reprograms the
// reactor's timerfd (one timerfd_settime and one more epoll_wait per hand-off, per strace).
// Capacity 1 measured the same as capacity 0; 0 also checks the protocol: try_send() succeeds
// only if the other side is waiting already, so a lost wake-up fails the run.
//
// The signature carries a dummy int: Asio 1.22 (Debian's libasio-dev) cannot instantiate
// channel<void(error_code)> (two channel_traits specialisations match it ambiguously), and
// channel<void()> cannot be awaited with use_awaitable (two completion signatures).
using WakeChannel = asio::experimental::channel<void(asio::error_code, int)>;

awaitable<void> ping(WakeChannel& mine, WakeChannel& theirs, long n) {
    for (long i = 0; i < n; ++i) {
        if (!theirs.try_send(asio::error_code(), 0)) {
            throw std::runtime_error("ping_pong: B is not waiting");
        }
        co_await mine.async_receive(use_awaitable);
    }
}

awaitable<void> pong(WakeChannel& mine, WakeChannel& theirs, long n) {
    for (long i = 0; i < n; ++i) {
        co_await mine.async_receive(use_awaitable);
        if (!theirs.try_send(asio::error_code(), 0)) {
            throw std::runtime_error("ping_pong: A is not waiting");
        }
    }
}

void bench_ping_pong(long n) {
    asio::io_context ctx{1};
    WakeChannel a_wakes(ctx, 0);
    WakeChannel b_wakes(ctx, 0);
    const auto t0 = Clock::now();
    // B starts first (co_spawn posts in order) and waits; then A hands off to it.
    asio::co_spawn(ctx, pong(b_wakes, a_wakes, n), rethrow_if_failed);
    asio::co_spawn(ctx, ping(a_wakes, b_wakes, n), rethrow_if_failed);
    ctx.run();
    const double seconds = seconds_between(t0, Clock::now());
    emit("ping_pong", seconds * 1e9 / (2.0 * static_cast<double>(n)), "ns/op");
}

// N timers with delays (i % 1000) ms; wall time from before the first timer is created until the
// last callback has run. The vector's storage is reserved beforehand (one allocation); creating
// each timer object and its wait is timed, as creating a handle with call_later is in the other
// peers.
void bench_timers_1m(long n) {
    asio::io_context ctx{1};
    std::vector<asio::steady_timer> timers;
    timers.reserve(static_cast<std::size_t>(n));
    std::vector<Clock::duration> delays;
    for (int i = 0; i < 1000; ++i) delays.push_back(std::chrono::milliseconds(i));

    long fired = 0;
    bool failed = false;
    Clock::time_point last;
    const auto t0 = Clock::now();
    for (long i = 0; i < n; ++i) {
        timers.emplace_back(ctx, delays[static_cast<std::size_t>(i % 1000)]);
        timers.back().async_wait([&](const asio::error_code& ec) {
            if (ec) failed = true;
            if (++fired == n) last = Clock::now();
        });
    }
    ctx.run();
    if (failed || fired != n) die("timers_1m: not every timer expired normally");
    const double total = seconds_between(t0, last);
    emit("timers_1m", total - 0.999, "s");
    emit("timers_1m_total", total, "s");
}

int run_micro(bool quick) {
    bench_suspended_task_bytes(quick ? 20'000 : 100'000);  // first: see the comment at the top
    bench_spawn_join(quick ? 100'000 : 1'000'000);
    bench_ping_pong(quick ? 100'000 : 1'000'000);
    bench_timers_1m(quick ? 100'000 : 1'000'000);
    return 0;
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: asio-peer echo PORT | asio-peer http PORT | asio-peer micro [--quick]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc < 2) usage();
        const std::string_view command = argv[1];
        if (command == "echo" && argc == 3) return run_server(echo_session, parse_port(argv[2]));
        if (command == "http" && argc == 3) return run_server(http_session, parse_port(argv[2]));
        if (command == "micro" && argc == 2) return run_micro(false);
        if (command == "micro" && argc == 3 && std::string_view(argv[2]) == "--quick") {
            return run_micro(true);
        }
        usage();
    } catch (const std::exception& e) {
        die(e.what());
    }
}
