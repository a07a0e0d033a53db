// http_hello: the smallest useful HTTP/1.1 server: "Hello, world!" to every GET, with
// keep-alive, so one connection can carry many requests (what `wrk` and browsers do).
//
//     http_hello [port] [host]         (defaults: 8080, 127.0.0.1; port 0 picks a free port)
//
// Serves until SIGINT or SIGTERM, then exits 0. Try it with `curl http://127.0.0.1:8080/`.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>

#include "corio/corio.hpp"
#include "serve.hpp"

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

}  // namespace

int main(int argc, char** argv) {
    return serve_main("http_hello", 8080, http, argc, argv);
}
