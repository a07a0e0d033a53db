// Datagram endpoints: UDP and Unix-domain datagram sockets (asyncio's
// loop.create_datagram_endpoint), as an object whose receives and sends are awaited instead of a
// protocol whose callbacks are called.
//
//     corio::DatagramOptions options{.local_addr = {{"127.0.0.1", 9999}}};
//     corio::DatagramEndpoint server = co_await corio::create_datagram_endpoint(options);
//     for (;;) {
//         auto [data, sender] = co_await server.recvfrom();
//         co_await server.sendto(data, sender);  // echo it back
//     }
//
//     corio::DatagramOptions to_server{.remote_addr = {{"127.0.0.1", 9999}}};
//     corio::DatagramEndpoint client = co_await corio::create_datagram_endpoint(to_server);
//     co_await client.send("ping");
//     std::string reply = co_await client.recv();
//
// (The options are a named variable: g++ 12 rejects a braced list inside a co_await.)
//
// Each datagram is one receive: a datagram longer than max_bytes is truncated and its rest is
// lost, and an empty datagram is received as "" (datagrams have no end of stream). A send waits
// while the socket has no room, where asyncio's transport would queue the datagram and ask the
// protocol to pause_writing().
//
// Errors are the OSError family. asyncio passes the errors a connected endpoint learns from the
// network (ICMP port unreachable: ConnectionRefusedError) to protocol.error_received(); here the
// next send or receive raises them, and the endpoint stays usable after.
//
// Cancelling a task that waits in a receive loses no datagram: a datagram is taken from the
// socket only once it can be returned, so the next receive gets it. Closing the endpoint while a
// task waits on it makes that wait raise OSError(EBADF). The endpoint belongs to the loop's thread.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "corio/coro.hpp"
#include "corio/sockets.hpp"

namespace corio {

namespace detail {
struct DatagramState;
}  // namespace detail

// What create_datagram_endpoint creates, binds and connects to (asyncio's keyword arguments).
struct DatagramOptions {
    // The (host, port) to bind: a numeric host is used as it is, a name is resolved with
    // corio::getaddrinfo, "" means every interface. Port 0 picks a free port (see
    // get_extra_info("sockname")).
    std::optional<std::pair<std::string, std::uint16_t>> local_addr{};
    // The (host, port) to connect to: send() and recv() then talk to this peer only, and the
    // kernel drops datagrams from anyone else.
    std::optional<std::pair<std::string, std::uint16_t>> remote_addr{};
    // AF_INET or AF_INET6 to restrict the addresses tried; AF_UNIX for a Unix-domain endpoint
    // (implied by local_path or remote_path). AF_UNSPEC: whatever the addresses are.
    int family = AF_UNSPEC;
    // The protocol passed to socket() and getaddrinfo, and getaddrinfo's AI_* flags (asyncio's
    // proto and flags; AI_NUMERICHOST refuses names instead of resolving them).
    int proto = 0;
    int flags = 0;
    // Unix-domain datagram paths to bind and to connect to; a leading '\0' names the abstract
    // namespace. close() does not remove the bound file (as asyncio); binding a path where a
    // socket file is left with no socket behind it replaces that file, and a path in use is
    // OSError(EADDRINUSE).
    std::optional<std::string> local_path{};
    std::optional<std::string> remote_path{};
    // SO_REUSEPORT: several endpoints may bind the same address and port, and the kernel
    // spreads the datagrams among them. IP endpoints only.
    bool reuse_port = false;
    // SO_BROADCAST: sendto() may send to a broadcast address. IP endpoints only.
    bool allow_broadcast = false;
};

// A datagram socket to receive from and send to (asyncio's DatagramTransport and
// DatagramProtocol in one). A move-only handle that owns the socket: destroying it, or close(),
// closes the socket. Several tasks may await on one endpoint at once (say one receiving while
// others reply). An operation started on an endpoint keeps what it needs alive, so moving the
// handle meanwhile is safe, and destroying it makes the operation raise OSError(EBADF).
class DatagramEndpoint {
  public:
    DatagramEndpoint() noexcept = default;
    DatagramEndpoint(DatagramEndpoint&&) noexcept = default;
    DatagramEndpoint& operator=(DatagramEndpoint&& other) noexcept;
    DatagramEndpoint(const DatagramEndpoint&) = delete;
    DatagramEndpoint& operator=(const DatagramEndpoint&) = delete;
    ~DatagramEndpoint();

    // The next datagram, truncated to max_bytes, and the address of its sender (empty for an
    // unbound Unix-domain sender, which cannot be replied to).
    Coro<std::pair<std::string, SocketAddress>> recvfrom(std::size_t max_bytes = 65536);
    // The next datagram, truncated to max_bytes, without its sender: what a connected endpoint
    // needs, since all its datagrams come from the remote address.
    Coro<std::string> recv(std::size_t max_bytes = 65536);
    // Sends one datagram to `address`, waiting while the socket has no room. On a connected
    // endpoint `address` must be the remote address (ValueError otherwise, as asyncio).
    // `data` must stay valid until it returns. (A Unix-domain receiver whose queue is full
    // wakes no sender, so the wait for it retries after pauses of up to 50 ms.)
    Coro<void> sendto(std::string_view data, const SocketAddress& address);
    // Sends one datagram to the remote address. OSError(EDESTADDRREQ) on an endpoint that has
    // none.
    Coro<void> send(std::string_view data);

    // get_extra_info("sockname") and get_extra_info("peername") (empty when not connected);
    // empty for another name. Still answered after close().
    std::optional<SocketAddress> get_extra_info(std::string_view name) const;
    // get_extra_info("socket"): the endpoint's socket (closed after close()).
    const Socket& socket() const;

    // Closes the socket at once (a datagram socket has nothing queued to flush). A task
    // waiting on the endpoint gets OSError(EBADF), and so does every later send or receive.
    void close() noexcept;
    // True once closed (and for an empty or moved-from handle).
    bool is_closing() const noexcept;

    // False for an empty or moved-from handle.
    explicit operator bool() const noexcept { return static_cast<bool>(s_); }

  private:
    friend DatagramEndpoint datagram_endpoint(Socket sock);
    explicit DatagramEndpoint(std::shared_ptr<detail::DatagramState> s) : s_(std::move(s)) {}
    std::shared_ptr<detail::DatagramState> s_;
};

// Creates a datagram socket, binds it to options.local_addr or local_path and connects it to
// options.remote_addr or remote_path. When a name resolves to several addresses, each pair of a
// local and a remote address of the same family is tried in turn, and the first failure is
// raised if none works. ValueError for options that do not fit together (no address and no
// family, an IP address with AF_UNIX, a path too long for sockaddr_un, ...), GaiError when a
// host cannot be resolved, OSError when bind or connect fails.
//
//     // Two endpoints sharing one port (SO_REUSEPORT), on every IPv4 interface:
//     corio::DatagramOptions o{.local_addr = {{"0.0.0.0", 5353}}, .reuse_port = true};
//     auto a = co_await corio::create_datagram_endpoint(o);
//     auto b = co_await corio::create_datagram_endpoint(o);
Coro<DatagramEndpoint> create_datagram_endpoint(DatagramOptions options);

// An endpoint over an existing datagram socket (asyncio's sock= argument), bound and connected
// or not. ValueError if `sock` is closed or not a SOCK_DGRAM socket.
DatagramEndpoint datagram_endpoint(Socket sock);

}  // namespace corio
