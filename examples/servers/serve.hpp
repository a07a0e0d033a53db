// What the server examples share: listen, serve until SIGINT or SIGTERM, then shut down cleanly.
//
//     int main(int argc, char** argv) { return serve_main("echo_server", 8888, echo, argc, argv); }
//
// Command line: [port] [host] (port 0 picks a free port; host defaults to 127.0.0.1). Prints
// "<name>: listening on <address>" for each address, and "<name>: stopped" after a clean
// shutdown: no new connections, the open ones end once what they were sending is sent.
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "corio/corio.hpp"

inline corio::Coro<int> serve_until_signalled(const char* name, corio::ClientConnected handler,
                                              std::string host, std::uint16_t port) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Event stop;
    loop.add_signal_handler(SIGINT, [&] { stop.set(); });
    loop.add_signal_handler(SIGTERM, [&] { stop.set(); });

    corio::Server server = co_await corio::start_server(std::move(handler), host, port);
    for (const corio::SocketAddress& a : server.addresses())
        std::printf("%s: listening on %s\n", name, a.to_string().c_str());

    co_await stop.wait();
    server.close();          // no new connections
    server.close_clients();  // the open ones end once what they were sending is sent
    co_await server.wait_closed();
    loop.remove_signal_handler(SIGINT);
    loop.remove_signal_handler(SIGTERM);
    std::printf("%s: stopped\n", name);
    co_return 0;
}

inline int serve_main(const char* name, std::uint16_t default_port, corio::ClientConnected handler,
                      int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : default_port);
    const std::string host = argc > 2 ? argv[2] : "127.0.0.1";
    try {
        return corio::run(serve_until_signalled(name, std::move(handler), host, port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    }
}
