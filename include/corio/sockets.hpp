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
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/detail/awaitable.hpp"
#include "corio/detail/io.hpp"
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
class Socket {
  public:
    Socket() noexcept = default;
    // socket(family, type, protocol); OSError on failure.
    Socket(int family, int type, int protocol = 0);
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
    int detach() noexcept { return std::exchange(fd_, -1); }

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

}  // namespace corio
