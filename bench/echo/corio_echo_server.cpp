// corio_echo_server: the corio side of the echo benchmark (bench/echo/run_echo.py). Plain use of
// corio's streams, as an application would write it.
//
//     corio_echo_server PORT        (0 picks a free port)
//
// Listens on 127.0.0.1:PORT, prints the port it got on stdout (one line), and sends back every
// byte it receives: per connection, read_into() up to 64 KiB, write() it, drain(). Exits 0 on
// SIGTERM or SIGINT.
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "corio/corio.hpp"

namespace {

constexpr std::size_t kChunk = 64 * 1024;

// One receive buffer for every connection, as the raw-epoll server has: read_into() fills it
// from the reading task's own step, and write() sends from it at once (copying only what the
// socket does not take), so no connection needs it across a co_await. The bytes are copied only
// by the kernel, and an idle connection holds no buffer.
char g_buffer[kChunk];

corio::Coro<> echo(corio::StreamReader reader, corio::StreamWriter writer) {
    try {
        for (;;) {
            const std::size_t n = co_await reader.read_into(g_buffer);
            if (n == 0) break;  // the client closed its side
            writer.write(std::string_view(g_buffer, n));
            co_await writer.drain();
        }
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

    corio::ClientConnected handler = echo;
    corio::Server server =
        co_await corio::start_server(handler, "127.0.0.1", port, corio::kDefaultStreamLimit, 1024);
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

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s PORT   (0 picks a free port)\n", argv[0]);
        return 2;
    }
    char* end = nullptr;
    const long port = std::strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
        std::fprintf(stderr, "corio_echo_server: bad port '%s'\n", argv[1]);
        return 2;
    }
    try {
        return corio::run(serve(static_cast<std::uint16_t>(port)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "corio_echo_server: %s\n", e.what());
        return 1;
    }
}
