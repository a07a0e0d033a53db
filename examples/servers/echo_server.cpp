// echo_server: sends back every line it receives, to any number of clients at once.
//
//     echo_server [port] [host]        (defaults: 8888, 127.0.0.1; port 0 picks a free port)
//
// Serves until SIGINT or SIGTERM, then stops accepting, lets the connections finish what they
// were sending, and exits 0. Try it with `nc 127.0.0.1 8888`.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "corio/corio.hpp"

namespace {

corio::Coro<> echo(corio::StreamReader reader, corio::StreamWriter writer) {
    try {
        for (;;) {
            std::string line = co_await reader.readline();
            if (line.empty()) break;  // the client closed its side
            writer.write(line);
            co_await writer.drain();  // a client that does not read slows only itself
        }
    } catch (const corio::ConnectionError&) {
        // The client went away abruptly: nothing more to do for it.
    }
    writer.close();
    co_await writer.wait_closed();
}

corio::Coro<int> serve(std::string host, std::uint16_t port) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Event stop;
    loop.add_signal_handler(SIGINT, [&] { stop.set(); });
    loop.add_signal_handler(SIGTERM, [&] { stop.set(); });

    corio::ClientConnected handler = echo;
    corio::Server server = co_await corio::start_server(handler, host, port);
    for (const corio::SocketAddress& a : server.addresses())
        std::printf("echo_server: listening on %s\n", a.to_string().c_str());

    co_await stop.wait();
    server.close();          // no new connections
    server.close_clients();  // the open ones end once what they were sending is sent
    co_await server.wait_closed();
    loop.remove_signal_handler(SIGINT);
    loop.remove_signal_handler(SIGTERM);
    std::printf("echo_server: stopped\n");
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 8888);
    const std::string host = argc > 2 ? argv[2] : "127.0.0.1";
    try {
        return corio::run(serve(host, port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server: %s\n", e.what());
        return 1;
    }
}
