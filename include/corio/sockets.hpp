// Sockets and the loop's low-level socket operations (Python's socket module and asyncio's
// loop.sock_* methods), for IPv4, IPv6 and Unix-domain sockets.
//
//     corio::Socket sock(AF_INET, SOCK_STREAM);
//     co_await corio::sock_connect(sock, corio::SocketAddress::ip("127.0.0.1", 8080));
//     co_await corio::sock_sendall(sock, "ping\n");
//     std::string reply = co_await corio::sock_recv(sock, 4096);   // "" when the peer closed
//
// A corio::Socket owns its descriptor and closes it when destroyed; it is always non-blocking
// and close-on-exec. The operations are free functions that use the running loop (asyncio's
// `await loop.sock_recv(sock, n)` is `co_await corio::sock_recv(sock, n)`). Each tries the
// system call first and waits for the descriptor only when it would block. Failures raise the
// OSError subclass Python would: ConnectionRefusedError, ConnectionResetError, BrokenPipeError,
// TimeoutError, ... with the errno in code(). Writing to a socket whose peer is gone raises
// BrokenPipeError; no SIGPIPE is ever raised.
//
// Cancellation: an operation still waiting is withdrawn and raises CancelledError. Data that was
// already received is never dropped: a receive that completed returns its bytes, and a
// cancellation that arrived meanwhile is raised at the task's next suspension. A socket must not
// be closed while another task awaits an operation on it; if it is (on the loop's thread), that
// operation fails with OSError(EBADF) rather than waiting forever.
//
// Above the operations, create_connection() connects to a host (resolving it, trying its
// addresses in turn or staggered, RFC 8305's Happy Eyeballs) and create_server() binds and
// listens on every address of a host: the socket halves of asyncio's loop.create_connection and
// loop.create_server, which corio's streams are built on.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/awaitable.hpp"
#include "corio/detail/io.hpp"
#include "corio/detail/source_location.hpp"
#include "corio/errors.hpp"

namespace corio {

// A socket address: IPv4, IPv6, or a Unix-domain path.
class SocketAddress {
  public:
    // An empty address (family AF_UNSPEC).
    SocketAddress() noexcept;
    // A numeric IPv4 or IPv6 host ("127.0.0.1", "::1", "fe80::1%eth0") and a port. ValueError
    // for anything else: resolve host names with corio::getaddrinfo.
    static SocketAddress ip(std::string_view host, std::uint16_t port);
    // A Unix-domain socket path; a leading '\0' names the abstract namespace (Linux).
    // ValueError if it does not fit in sockaddr_un.
    static SocketAddress unix_path(std::string_view path);
    static SocketAddress from_native(const sockaddr* address, socklen_t size);

    int family() const noexcept;
    const sockaddr* native() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
    socklen_t size() const noexcept { return size_; }

    // The numeric host of an IP address, or the path of a Unix one.
    std::string host() const;
    // The port of an IP address; 0 otherwise.
    std::uint16_t port() const noexcept;
    // "127.0.0.1:8080", "[::1]:8080", "/run/app.sock", "@abstract", or "" when empty.
    std::string to_string() const;

    bool operator==(const SocketAddress& other) const noexcept;

  private:
    sockaddr_storage storage_;
    socklen_t size_;
};

// An owned socket descriptor, non-blocking and close-on-exec.
//
// Destroying a Socket closes it. In debug mode, a Socket created while the loop runs and still
// open when that loop closes (leaked, or kept past its loop) is reported as unclosed, naming
// the task that created it and where.
class Socket {
  public:
    Socket() noexcept = default;
    // socket(family, type, protocol); OSError on failure. `where` is for debug mode's report.
    Socket(int family, int type, int protocol = 0,
           SourceLocation where = SourceLocation::current());
    // Takes ownership of `fd` and makes it non-blocking and close-on-exec.
    static Socket adopt(int fd);

    Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Socket& operator=(Socket&& other) noexcept;
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    ~Socket() { close(); }

    int fileno() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int family() const;
    int type() const;

    void bind(const SocketAddress& address);
    void listen(int backlog = SOMAXCONN);
    SocketAddress getsockname() const;
    SocketAddress getpeername() const;
    void setsockopt(int level, int name, int value);
    int getsockopt(int level, int name) const;
    // TCP_NODELAY: send small writes at once instead of batching them (Nagle).
    void set_nodelay(bool on = true);
    // shutdown(SHUT_RD | SHUT_WR | SHUT_RDWR): half-closes the connection.
    void shutdown(int how);
    // Closes the descriptor (no-op when closed). Operations pending on it on the running loop
    // fail with OSError(EBADF).
    void close() noexcept;
    // Gives up ownership of the descriptor and returns it.
    int detach() noexcept;

  private:
    int checked() const;
    int fd_ = -1;
};

// A result of getaddrinfo.
struct AddrInfo {
    int family = 0;
    int type = 0;
    int protocol = 0;
    std::string canonical_name;  // with AI_CANONNAME, on the first result
    SocketAddress address;
};

// getaddrinfo() and getnameinfo() failed (Python's socket.gaierror): code() is the EAI_* value.
class GaiError : public OSError {
  public:
    GaiError(int code, const std::string& what);
};

namespace detail {

// How to wait for what the kernel sends no wake-up for: a Unix listener's full backlog (connect
// says EAGAIN) and a Unix datagram receiver's full queue (sendto says EAGAIN while the socket is
// reported writable, since Linux wakes writers only for a connected peer). Pauses of 1 ms,
// doubling up to 50 ms: quick when room comes soon, cheap when it does not.
class RetryPause {
  public:
    std::chrono::nanoseconds next() noexcept {
        const std::chrono::nanoseconds p = pause_;
        pause_ = std::min<std::chrono::nanoseconds>(pause_ * 2, std::chrono::milliseconds(50));
        return p;
    }

  private:
    std::chrono::nanoseconds pause_ = std::chrono::milliseconds(1);
};

// The awaiter of sock_recv_into: the number of bytes received, 0 at end of stream.
struct RecvInto : IoAwaiter {
    RecvInto(int fd, void* buffer, std::size_t size) noexcept
        : IoAwaiter(Kind::Read, fd, buffer, size) {}
    std::size_t await_resume();
};

}  // namespace detail

// Connects `sock` to `address` (asyncio's loop.sock_connect).
Coro<void> sock_connect(Socket& sock, SocketAddress address);
// Accepts a connection on a listening socket: the new socket and the peer's address.
Coro<std::pair<Socket, SocketAddress>> sock_accept(Socket& listener);
// Receives up to `max_bytes`; "" when the peer has closed its side.
Coro<std::string> sock_recv(Socket& sock, std::size_t max_bytes);
// Receives into `buffer` without allocating; returns the byte count, 0 at end of stream.
inline auto sock_recv_into(Socket& sock, std::span<std::byte> buffer) {
    return detail::AwaitOp<detail::RecvInto, int, void*, std::size_t>(sock.fileno(), buffer.data(),
                                                                      buffer.size());
}
inline auto sock_recv_into(Socket& sock, std::span<char> buffer) {
    return sock_recv_into(sock, std::as_writable_bytes(buffer));
}
// Sends all of `data`, waiting for room as needed. `data` must stay valid until it returns.
Coro<void> sock_sendall(Socket& sock, std::string_view data);
// Receives one datagram (up to `max_bytes`) and the sender's address.
Coro<std::pair<std::string, SocketAddress>> sock_recvfrom(Socket& sock, std::size_t max_bytes);
// Sends one datagram to `address`; returns the bytes sent.
Coro<std::size_t> sock_sendto(Socket& sock, std::string_view data, SocketAddress address);

// Resolves a host and a service (a port number or a name such as "http") on the loop's default
// executor, so the loop never blocks on DNS (asyncio's loop.getaddrinfo). GaiError on failure.
Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string service,
                                        int family = AF_UNSPEC, int type = 0, int protocol = 0,
                                        int flags = 0);
// The host and service names of an address (asyncio's loop.getnameinfo).
Coro<std::pair<std::string, std::string>> getnameinfo(SocketAddress address, int flags = 0);

// --- connecting and listening -------------------------------------------------------------------

// How create_connection() connects (asyncio's loop.create_connection arguments).
struct ConnectOptions {
    // Happy Eyeballs (RFC 8305): when an attempt has not connected after this long, the next
    // address is tried alongside it; the first to connect wins and the others are cancelled.
    // RFC 8305 recommends 250 ms. Unset: the addresses are tried one after another, each once
    // the previous one has failed (asyncio's default).
    std::optional<std::chrono::duration<double>> happy_eyeballs_delay{};
    // Reorders the addresses by family (RFC 8305 section 4), see interleave_addresses(): n > 0
    // puts n addresses of the first family first, then alternates families; 0 keeps the
    // resolver's order. Unset: 1 with happy_eyeballs_delay, else 0 (as asyncio).
    std::optional<int> interleave{};
    // AF_INET or AF_INET6 to use only addresses of that family; AF_UNSPEC for any.
    int family = AF_UNSPEC;
    // Binds the socket to this address before connecting (port 0: any free port). An address
    // of another family fails its attempt (EAFNOSUPPORT) and the next one is tried.
    std::optional<SocketAddress> local_addr{};
};

// Every connection attempt failed, not all alike: what() lists each attempt's error ("Multiple
// exceptions: [Errno 111] Connection refused: connect to 127.0.0.1:80, ..."), as asyncio's
// create_connection does, and exceptions() holds them. code() is 0: there is no single errno.
class MultipleConnectErrors : public OSError {
  public:
    explicit MultipleConnectErrors(std::vector<std::exception_ptr> exceptions);
    const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

  private:
    std::vector<std::exception_ptr> exceptions_;
};

// Opens a TCP connection to host:port (asyncio's loop.create_connection, returning the socket
// rather than a transport). A numeric host is used as it is; a name is resolved with
// getaddrinfo. The addresses are tried as `options` says: in turn, or staggered (Happy
// Eyeballs). The socket returned is connected, with TCP_NODELAY set. If every attempt fails,
// raises their error when they all failed alike (same type and errno: ConnectionRefusedError
// when every address refused), else MultipleConnectErrors. The socket of every failed, losing
// or cancelled attempt is closed.
Coro<Socket> create_connection(std::string host, std::uint16_t port, ConnectOptions options = {});
// The same over addresses already resolved (tried in this order, after `interleave`).
// ValueError if there is none.
Coro<Socket> create_connection(std::vector<SocketAddress> addresses, ConnectOptions options = {});

// The order in which Happy Eyeballs tries addresses (RFC 8305 section 4, asyncio's
// _interleave_addrinfos): the families in order of first appearance, `first_family_count`
// addresses of the first family, then one address of each family in turn; [v6a, v6b, v4a, v4b]
// with 1 gives [v6a, v4a, v6b, v4b]. ValueError if first_family_count < 1.
std::vector<SocketAddress> interleave_addresses(std::vector<SocketAddress> addresses,
                                                int first_family_count = 1);

// How create_server() listens (asyncio's loop.create_server arguments).
struct ServerOptions {
    int backlog = 100;
    // SO_REUSEADDR: a restarted server can bind its port at once, despite connections of its
    // previous run in TIME_WAIT (asyncio's default on POSIX).
    bool reuse_address = true;
    // SO_REUSEPORT: several sockets, in this process or others, listen on the same port and the
    // kernel spreads the connections among them. Each must set it.
    bool reuse_port = false;
    // AF_INET or AF_INET6 to listen only on addresses of that family; AF_UNSPEC for all.
    int family = AF_UNSPEC;
};

// Listening TCP sockets on host:port, one per address of `host` ("" for every interface:
// 0.0.0.0 and ::), like Python's socket.create_server and the binding half of asyncio's
// loop.create_server. An IPv6 socket is IPV6_V6ONLY, so that it does not claim the IPv4 port
// too. With port 0 every socket gets the same free port (asyncio gives each its own). A family
// the system does not support (socket() fails with EAFNOSUPPORT) is skipped; any other failure
// closes what was opened and raises.
Coro<std::vector<Socket>> create_server(std::string host, std::uint16_t port,
                                        ServerOptions options = {});
// A listening Unix stream socket at `path` (a leading '\0': the abstract namespace). A socket
// file left at the path by a server that is gone (connecting to it is refused) is removed
// first, as asyncio's create_unix_server does; unlike asyncio, the file of a server that still
// listens is left alone, and binding then fails with EADDRINUSE.
Socket create_unix_server(const std::string& path, int backlog = 100);

}  // namespace corio
