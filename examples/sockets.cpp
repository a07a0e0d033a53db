// sockets: a TCP echo server and two clients on one thread, with corio's low-level socket
// operations (asyncio's loop.sock_* methods).
//
//     conn, addr = await loop.sock_accept(listener)     auto [conn, peer] = co_await
//     corio::sock_accept(listener); data = await loop.sock_recv(conn, 4096)           std::string
//     data = co_await corio::sock_recv(conn, 4096); await loop.sock_sendall(conn, data) co_await
//     corio::sock_sendall(conn, data);
//
// The example checks what it shows and exits non-zero if corio got anything wrong.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "corio/corio.hpp"

namespace {

int failures = 0;
void check(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok:  " : "FAIL:", what.c_str());
    if (!ok) ++failures;
}

// Echoes what one client sends until it closes its side.
corio::Coro<> echo(corio::Socket conn) {
    for (;;) {
        std::string data = co_await corio::sock_recv(conn, 4096);
        if (data.empty()) co_return;  // the client shut down its side
        co_await corio::sock_sendall(conn, data);
    }
}

// Accepts `clients` connections and serves each in a task of its own.
corio::Coro<> serve(corio::Socket& listener, int clients) {
    std::vector<corio::Task<>> sessions;
    for (int i = 0; i < clients; ++i) {
        auto [conn, peer] = co_await corio::sock_accept(listener);
        std::printf("       accepted a connection from %s\n", peer.to_string().c_str());
        sessions.push_back(corio::create_task(echo(std::move(conn))));
    }
    co_await corio::gather(sessions);
}

corio::Coro<std::string> client(corio::SocketAddress server, std::string message) {
    corio::Socket sock(server.family(), SOCK_STREAM);
    co_await corio::sock_connect(sock, server);
    co_await corio::sock_sendall(sock, message);
    sock.shutdown(SHUT_WR);  // half-close: "that was all"; the reply can still come back
    std::string reply;
    for (;;) {
        std::string part = co_await corio::sock_recv(sock, 4096);
        if (part.empty()) break;
        reply += part;
    }
    co_return reply;
}

corio::Coro<int> amain() {
    corio::Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(corio::SocketAddress::ip("127.0.0.1", 0));  // port 0: any free port
    listener.listen();
    const corio::SocketAddress address = listener.getsockname();
    std::printf("       listening on %s\n", address.to_string().c_str());

    auto server = corio::create_task(serve(listener, 2));
    auto a = corio::create_task(client(address, "hello"));
    auto b = corio::create_task(client(address, std::string(100000, 'x')));
    auto [reply_a, reply_b] = co_await corio::gather(a, b);
    co_await server;
    check(reply_a == "hello", "the first client got its message back");
    check(reply_b == std::string(100000, 'x'), "the second client got its 100000 bytes back");

    // Errors are Python's OSError family, with errno in code().
    listener.close();
    try {
        co_await client(address, "anyone?");
        check(false, "connecting to a closed port fails");
    } catch (const corio::ConnectionRefusedError& e) {
        check(e.code() == ECONNREFUSED, std::string("ConnectionRefusedError: ") + e.what());
    }

    // Names are resolved on the default executor, so the loop never blocks on DNS.
    std::vector<corio::AddrInfo> found =
        co_await corio::getaddrinfo("localhost", "80", AF_INET, SOCK_STREAM);
    check(!found.empty() && found[0].address.to_string() == "127.0.0.1:80",
          "getaddrinfo(\"localhost\", \"80\") gives 127.0.0.1:80");

    std::printf("%s\n", failures == 0 ? "all checks passed" : "SOME CHECKS FAILED");
    co_return failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
    return corio::run(amain());
}
