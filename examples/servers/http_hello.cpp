// http_hello: the smallest useful HTTP/1.1 server: "Hello, world!" to every GET, with
// keep-alive, so one connection can carry many requests (what `wrk` and browsers do).
//
//     http_hello [port] [host]         (defaults: 8080, 127.0.0.1; port 0 picks a free port)
//
// Serves until SIGINT or SIGTERM, then exits 0. Try it with `curl http://127.0.0.1:8080/`.
#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "corio/corio.hpp"

namespace {

constexpr std::string_view kBody = "Hello, world!\n";

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

corio::Coro<> http(corio::StreamReader reader, corio::StreamWriter writer) {
    try {
        for (;;) {
            // The request line and headers end with an empty line. A request (body included)
            // must fit in the reader's limit (64 KiB): a longer one is a LimitOverrunError.
            std::string head = co_await reader.readuntil("\r\n\r\n");
            const std::string request_line = head.substr(0, head.find("\r\n"));
            const std::string headers = lower(head);
            const bool close = headers.find("\r\nconnection: close") != std::string::npos ||
                               request_line.ends_with("HTTP/1.0");
            const bool get = request_line.starts_with("GET ") || request_line.starts_with("HEAD ");
            std::string response;
            if (get) {
                response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(kBody.size()) + "\r\n";
            } else {
                response =
                    "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"
                    "Content-Length: 0\r\n";
            }
            response += close ? "Connection: close\r\n\r\n" : "\r\n";
            if (get && !request_line.starts_with("HEAD ")) response += kBody;
            writer.write(response);
            co_await writer.drain();
            if (close) break;
        }
    } catch (const corio::IncompleteReadError&) {
        // The client closed the connection between requests (or in the middle of one).
    } catch (const corio::LimitOverrunError&) {
        writer.write("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n");
    } catch (const corio::ConnectionError&) {
    }
    writer.close();
    co_await writer.wait_closed();
}

corio::Coro<int> serve(std::string host, std::uint16_t port) {
    corio::EventLoop& loop = corio::get_running_loop();
    corio::Event stop;
    loop.add_signal_handler(SIGINT, [&] { stop.set(); });
    loop.add_signal_handler(SIGTERM, [&] { stop.set(); });
    corio::ClientConnected handler = http;
    corio::Server server = co_await corio::start_server(handler, host, port);
    for (const corio::SocketAddress& a : server.addresses())
        std::printf("http_hello: listening on %s\n", a.to_string().c_str());
    co_await stop.wait();
    server.close();
    server.close_clients();
    co_await server.wait_closed();
    loop.remove_signal_handler(SIGINT);
    loop.remove_signal_handler(SIGTERM);
    std::printf("http_hello: stopped\n");
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 8080);
    const std::string host = argc > 2 ? argv[2] : "127.0.0.1";
    try {
        return corio::run(serve(host, port));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_hello: %s\n", e.what());
        return 1;
    }
}
