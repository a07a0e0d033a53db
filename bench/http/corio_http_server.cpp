// corio_http_server: the corio side of the HTTP "hello" benchmark (the `http` subcommand of the
// peer contract, driven by `wrk -t1 -c100`). Plain use of corio's streams, as an application
// would write it.
//
//     corio_http_server PORT        (0 picks a free port)
//
// Listens on 127.0.0.1:PORT, prints the port it got on stdout (one line), and answers every
// HTTP/1.1 request with a fixed 200 "Hello, World!\n". Exits 0 on SIGTERM or SIGINT.
//
// Per connection: readuntil("\r\n\r\n") takes one request (a GET without a body: everything up
// to the blank line), write() queues the response, and the loop goes on until the client closes
// (keep-alive). Pipelined requests already in the reader's buffer are found there without
// another recv. A header section longer than 8 KiB without its blank line closes the
// connection. The request is not parsed further: the benchmark measures the loop and the
// streams, not an HTTP parser.
#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>

#include "corio/corio.hpp"

namespace {

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";

// readuntil's limit: a header section whose blank line does not start within 8 KiB is refused.
constexpr std::size_t kHeaderLimit = 8 * 1024;

// The writer's high-water mark, set explicitly so that the loop below knows it.
constexpr std::size_t kHighWater = 64 * 1024;

corio::Coro<> hello(corio::StreamReader reader, corio::StreamWriter writer) {
    writer.set_write_buffer_limits(kHighWater);
    try {
        for (;;) {
            co_await reader.readuntil("\r\n\r\n");
            writer.write(kResponse);
            // write() sends at once when nothing is queued, which is the common case. drain()
            // would only wait above the high-water mark, so skip the call (a coroutine frame)
            // below it: a client that pipelines without reading still gets back-pressure.
            if (writer.buffered() > kHighWater) co_await writer.drain();
        }
    } catch (const corio::IncompleteReadError&) {
        // The client closed its side (between requests, or in the middle of one).
    } catch (const corio::LimitOverrunError&) {
        // A header section over kHeaderLimit: not worth answering.
    } catch (const corio::ConnectionError&) {
        // The client went away abruptly.
    }
    writer.close();
    co_await writer.wait_closed();
}

corio::Coro<int> serve(std::uint16_t port) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Event stop;
    auto on_signal = [&stop] { stop.set(); };
    loop.add_signal_handler(SIGINT, on_signal);
    loop.add_signal_handler(SIGTERM, on_signal);

    corio::ClientConnected handler = hello;
    corio::Server server = co_await corio::start_server(handler, "127.0.0.1", port, kHeaderLimit,
                                                        /*backlog=*/1024);
    std::printf("%u\n", static_cast<unsigned>(server.addresses().at(0).port()));
    std::fflush(stdout);

    co_await stop.wait();
    server.close();
    server.abort_clients();  // the load generator has gone by then; nothing is worth sending
    co_await server.wait_closed();
    loop.remove_signal_handler(SIGINT);
    loop.remove_signal_handler(SIGTERM);
    co_return 0;
}

// Many idle keep-alive connections need many descriptors: take all the hard limit allows.
bool raise_fd_limit() {
    rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        std::fprintf(stderr, "corio_http_server: getrlimit(RLIMIT_NOFILE): %s\n",
                     std::strerror(errno));
        return false;
    }
    if (limit.rlim_cur == limit.rlim_max) return true;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        std::fprintf(stderr, "corio_http_server: setrlimit(RLIMIT_NOFILE): %s\n",
                     std::strerror(errno));
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s PORT   (0 picks a free port)\n", argv[0]);
        return 2;
    }
    char* end = nullptr;
    const long port = std::strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
        std::fprintf(stderr, "corio_http_server: bad port '%s'\n", argv[1]);
        return 2;
    }
    if (!raise_fd_limit()) return 1;
    try {
        return corio::run(serve(static_cast<std::uint16_t>(port)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "corio_http_server: %s\n", e.what());
        return 1;
    }
}
