#include "corio/datagrams.hpp"

#include <netdb.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <exception>
#include <span>
#include <vector>

#include "corio/detail/io.hpp"
#include "corio/errors.hpp"
#include "corio/tasks.hpp"

namespace corio {

namespace detail {

struct DatagramState {
    Socket sock;
    // The address connected to at creation: what send() needs and what sendto() must be given.
    std::optional<SocketAddress> remote;
    // The last names seen, so that get_extra_info() still answers after close().
    std::optional<SocketAddress> sockname;
    std::optional<SocketAddress> peername;

    // Reads the names again: an unbound socket gets a port on its first send, and a Unix-domain
    // socket whose peer went away is no longer connected.
    void refresh_names() noexcept {
        if (!sock) return;
        try {
            sockname = sock.getsockname();
        } catch (const OSError&) {
            sockname.reset();
        }
        try {
            peername = sock.getpeername();
        } catch (const OSError&) {
            peername.reset();
        }
    }
};

}  // namespace detail

namespace {

using State = std::shared_ptr<detail::DatagramState>;

// The endpoint's descriptor; OSError(EBADF) when it is closed (or the handle empty). Read again
// after every wait: a descriptor number is reused as soon as it is closed.
int open_fd(const State& s, const char* what) {
    if (!s || !s->sock) throw_os_error(EBADF, std::string(what) + " on a closed datagram endpoint");
    return s->sock.fileno();
}

// Raises the OSError for `err`, naming the peer of a connected endpoint (for ECONNREFUSED, the
// peer is what refused).
[[noreturn]] void fail(int err, const std::string& what, const detail::DatagramState& s) {
    if (!s.remote) throw_os_error(err, what);
    const std::string peer = s.remote->to_string();
    throw_os_error(err, what + (peer.empty() ? " (connected to an unnamed socket)"
                                             : " (connected to " + peer + ")"));
}

// Waits until the endpoint's socket is readable or writable, or in error (a connected socket
// that got an ICMP error is readable: the next call raises it).
Coro<void> wait_ready(const State& s, int fd, bool readable, const char* what) {
    const ssize_t r = co_await detail::IoAwaiter(
        readable ? detail::IoOp::Kind::Readable : detail::IoOp::Kind::Writable, fd, nullptr, 0);
    if (r >= 0) co_return;
    if (!s->sock) throw_os_error(EBADF, std::string(what) + ": the datagram endpoint was closed");
    fail(static_cast<int>(-r), what, *s);
}

// Datagrams are received into a buffer and copied into a string of their own size, so that a
// 5-byte datagram does not hold on to a 64 KiB string. Nothing suspends between a receive and
// its copy, so one buffer serves every endpoint of the thread. It is kept up to 256 KiB (more
// than any UDP datagram or default Unix-domain one); a larger max_bytes uses `oversized`, which
// lives only as long as the call.
std::span<char> receive_buffer(std::size_t size, std::vector<char>& oversized) {
    constexpr std::size_t kKept = 256 * 1024;
    thread_local std::vector<char> shared;
    std::vector<char>& buffer = size <= kKept ? shared : oversized;
    if (buffer.size() < size) buffer.resize(size);
    return {buffer.data(), size};
}

// The receives try the system call first and wait only for readiness, never with a buffer
// posted: a datagram leaves the socket only when it is about to be returned, so a cancelled
// wait loses nothing.
Coro<std::pair<std::string, SocketAddress>> recvfrom_on(State s, std::size_t max_bytes) {
    std::vector<char> oversized;
    for (;;) {
        const int fd = open_fd(s, "recvfrom");
        const std::span<char> buffer = receive_buffer(max_bytes, oversized);
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        ssize_t n;
        do {
            n = ::recvfrom(fd, buffer.data(), buffer.size(), 0, reinterpret_cast<sockaddr*>(&from),
                           &len);
        } while (n < 0 && errno == EINTR);
        if (n >= 0) {
            std::string data(buffer.data(), static_cast<std::size_t>(n));
            co_return std::pair<std::string, SocketAddress>(
                std::move(data),
                SocketAddress::from_native(reinterpret_cast<const sockaddr*>(&from), len));
        }
        if (const int err = errno; err != EAGAIN && err != EWOULDBLOCK) fail(err, "recvfrom", *s);
        co_await wait_ready(s, fd, true, "recvfrom");
    }
}

Coro<std::string> recv_on(State s, std::size_t max_bytes) {
    std::vector<char> oversized;
    for (;;) {
        const int fd = open_fd(s, "recv");
        const std::span<char> buffer = receive_buffer(max_bytes, oversized);
        ssize_t n;
        do {
            n = ::recv(fd, buffer.data(), buffer.size(), 0);
        } while (n < 0 && errno == EINTR);
        if (n >= 0) co_return std::string(buffer.data(), static_cast<std::size_t>(n));
        if (const int err = errno; err != EAGAIN && err != EWOULDBLOCK) fail(err, "recv", *s);
        co_await wait_ready(s, fd, true, "recv");
    }
}

Coro<void> send_on(State s, std::string_view data) {
    for (;;) {
        const int fd = open_fd(s, "send");
        ssize_t n;
        do {
            n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n >= 0) co_return;
        const int err = errno;
        // UDP says EDESTADDRREQ and a Unix-domain socket ENOTCONN; one error for both.
        if ((err == EDESTADDRREQ || err == ENOTCONN) && !s->remote)
            throw_os_error(EDESTADDRREQ,
                           "send on a datagram endpoint with no remote address (create it with "
                           "remote_addr or remote_path, or use sendto)");
        if (err != EAGAIN && err != EWOULDBLOCK) fail(err, "send", *s);
        co_await wait_ready(s, fd, false, "send");
    }
}

Coro<void> sendto_on(State s, std::string_view data, SocketAddress address) {
    open_fd(s, "sendto");
    if (s->remote && !(address == *s->remote))
        throw ValueError("invalid address " + address.to_string() +
                         ": this datagram endpoint is connected to " + s->remote->to_string() +
                         " and sends there only");
    const std::string what = "sendto " + address.to_string();
    // A full Unix-domain receiver would make a writability wait spin (see RetryPause): after
    // one wake-up that did not help, pause instead.
    detail::RetryPause pause;
    bool woke_writable = false;
    for (;;) {
        const int fd = open_fd(s, "sendto");
        ssize_t n;
        do {
            n = ::sendto(fd, data.data(), data.size(), MSG_NOSIGNAL, address.native(),
                         address.size());
        } while (n < 0 && errno == EINTR);
        if (n >= 0) co_return;
        if (const int err = errno; err != EAGAIN && err != EWOULDBLOCK) fail(err, what, *s);
        if (woke_writable && address.family() == AF_UNIX) {
            co_await sleep(pause.next());
            woke_writable = false;
        } else {
            co_await wait_ready(s, fd, false, what.c_str());
            woke_writable = true;
        }
    }
}

// --- creating -----------------------------------------------------------------------------------

// A socket file at `path` that no socket is bound to any more: what an endpoint that was not
// closed cleanly (or a crashed process) leaves behind.
bool is_stale_socket(const std::string& path, const SocketAddress& address) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
    const int probe = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0) return false;
    int r;
    do {
        r = ::connect(probe, address.native(), address.size());
    } while (r < 0 && errno == EINTR);
    // A live datagram socket accepts the connection, a live stream socket says EPROTOTYPE.
    const bool stale = r < 0 && errno == ECONNREFUSED;
    ::close(probe);
    return stale;
}

// Binds to a Unix-domain path, replacing a stale socket file there (as asyncio does, except
// that asyncio removes the file even when a socket is still bound to it).
void bind_unix(Socket& sock, const std::string& path, const SocketAddress& address) {
    if (::bind(sock.fileno(), address.native(), address.size()) == 0) return;
    int err = errno;
    if (err == EADDRINUSE && path[0] != '\0' && is_stale_socket(path, address)) {
        ::unlink(path.c_str());
        if (::bind(sock.fileno(), address.native(), address.size()) == 0) return;
        err = errno;
    }
    throw_os_error(err, "bind to " + address.to_string());
}

SocketAddress unix_address(const std::string& path, const char* which) {
    try {
        return SocketAddress::unix_path(path);
    } catch (const ValueError& e) {
        throw ValueError(std::string(which) + ": " + e.what());
    }
}

Coro<DatagramEndpoint> create_unix(DatagramOptions o) {
    if (o.family != AF_UNIX && o.family != AF_UNSPEC)
        throw ValueError("local_path and remote_path are for AF_UNIX endpoints, not family " +
                         std::to_string(o.family));
    if (o.local_addr || o.remote_addr)
        throw ValueError(
            "an AF_UNIX datagram endpoint takes local_path and remote_path, not local_addr or "
            "remote_addr (a host and a port)");
    if (o.reuse_port || o.allow_broadcast)
        throw ValueError("reuse_port and allow_broadcast are for IP endpoints, not AF_UNIX");
    std::optional<SocketAddress> local;
    std::optional<SocketAddress> remote;
    if (o.local_path) local = unix_address(*o.local_path, "local_path");
    if (o.remote_path) remote = unix_address(*o.remote_path, "remote_path");
    Socket sock(AF_UNIX, SOCK_DGRAM, o.proto);
    if (local) bind_unix(sock, *o.local_path, *local);
    if (remote) co_await sock_connect(sock, *remote);
    co_return datagram_endpoint(std::move(sock));
}

const char* family_name(int family) {
    switch (family) {
        case AF_INET:
            return "AF_INET";
        case AF_INET6:
            return "AF_INET6";
        default:
            return "AF_UNSPEC";
    }
}

// The addresses (host, port) stands for: itself when the host is numeric (no resolver call),
// else what getaddrinfo gives.
Coro<std::vector<SocketAddress>> addresses_of(std::pair<std::string, std::uint16_t> where,
                                              const char* which, int family, int proto, int flags) {
    std::optional<SocketAddress> numeric;
    try {
        numeric = SocketAddress::ip(where.first, where.second);
    } catch (const ValueError&) {
    }
    std::vector<SocketAddress> out;
    if (numeric) {
        if (family != AF_UNSPEC && numeric->family() != family)
            throw ValueError(std::string(which) + " " + where.first + " is not an " +
                             family_name(family) + " address");
        out.push_back(*numeric);
        co_return out;
    }
    for (const AddrInfo& a : co_await getaddrinfo(where.first, std::to_string(where.second), family,
                                                  SOCK_DGRAM, proto, flags)) {
        if (std::find(out.begin(), out.end(), a.address) == out.end()) out.push_back(a.address);
    }
    co_return out;
}

Socket ip_socket(int family, const DatagramOptions& o) {
    Socket sock(family, SOCK_DGRAM, o.proto);
    if (o.reuse_port) sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
    if (o.allow_broadcast) sock.setsockopt(SOL_SOCKET, SO_BROADCAST, 1);
    return sock;
}

struct Attempt {
    std::optional<SocketAddress> local;
    std::optional<SocketAddress> remote;
};

Coro<DatagramEndpoint> create_ip(DatagramOptions o) {
    if (o.family != AF_UNSPEC && o.family != AF_INET && o.family != AF_INET6)
        throw ValueError("family must be AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC, not " +
                         std::to_string(o.family));
    if (!o.local_addr && !o.remote_addr) {
        if (o.family == AF_UNSPEC)
            throw ValueError(
                "create_datagram_endpoint() needs a local_addr, a remote_addr, a local_path, a "
                "remote_path or a family");
        // An unbound socket: sendto() gives it a port.
        co_return datagram_endpoint(ip_socket(o.family, o));
    }
    std::vector<SocketAddress> locals;
    std::vector<SocketAddress> remotes;
    // getaddrinfo's AI_PASSIVE: a local host "" is every interface rather than the loopback.
    if (o.local_addr)
        locals = co_await addresses_of(*o.local_addr, "local_addr", o.family, o.proto,
                                       o.flags | AI_PASSIVE);
    if (o.remote_addr)
        remotes = co_await addresses_of(*o.remote_addr, "remote_addr", o.family, o.proto, o.flags);

    std::vector<Attempt> attempts;
    if (!o.remote_addr) {
        for (const SocketAddress& l : locals) attempts.push_back(Attempt{l, std::nullopt});
    } else if (!o.local_addr) {
        for (const SocketAddress& r : remotes) attempts.push_back(Attempt{std::nullopt, r});
    } else {
        for (const SocketAddress& r : remotes) {
            for (const SocketAddress& l : locals) {
                if (l.family() == r.family()) attempts.push_back(Attempt{l, r});
            }
        }
        if (attempts.empty() && !locals.empty() && !remotes.empty())
            throw ValueError("local_addr " + o.local_addr->first + " and remote_addr " +
                             o.remote_addr->first + " have no address family in common");
    }
    if (attempts.empty()) throw OSError(EADDRNOTAVAIL, "no address to create a datagram endpoint");

    // As asyncio: every pair is tried, and the first failure is the one raised.
    std::exception_ptr first_error;
    for (const Attempt& attempt : attempts) {
        try {
            Socket sock = ip_socket((attempt.local ? attempt.local : attempt.remote)->family(), o);
            if (attempt.local) sock.bind(*attempt.local);
            if (attempt.remote) co_await sock_connect(sock, *attempt.remote);
            co_return datagram_endpoint(std::move(sock));
        } catch (const OSError&) {
            if (!first_error) first_error = std::current_exception();
        }
    }
    std::rethrow_exception(first_error);
}

}  // namespace

// --- DatagramEndpoint ---------------------------------------------------------------------------

DatagramEndpoint& DatagramEndpoint::operator=(DatagramEndpoint&& other) noexcept {
    if (this != &other) {
        close();
        s_ = std::move(other.s_);
    }
    return *this;
}

DatagramEndpoint::~DatagramEndpoint() {
    if (!s_ || !s_->sock) return;
    if (detail::running_in_debug_mode()) {
        try {
            const auto name = get_extra_info("sockname");
            detail::report_unclosed("DatagramEndpoint", name ? "on " + name->to_string() : "");
        } catch (...) {
        }
    }
    s_->sock.close();
}

Coro<std::pair<std::string, SocketAddress>> DatagramEndpoint::recvfrom(std::size_t max_bytes) {
    return recvfrom_on(s_, max_bytes);
}

Coro<std::string> DatagramEndpoint::recv(std::size_t max_bytes) {
    return recv_on(s_, max_bytes);
}

Coro<void> DatagramEndpoint::sendto(std::string_view data, const SocketAddress& address) {
    return sendto_on(s_, data, address);
}

Coro<void> DatagramEndpoint::send(std::string_view data) {
    return send_on(s_, data);
}

std::optional<SocketAddress> DatagramEndpoint::get_extra_info(std::string_view name) const {
    if (!s_) return std::nullopt;
    s_->refresh_names();
    if (name == "sockname") return s_->sockname;
    if (name == "peername") return s_->peername;
    return std::nullopt;
}

const Socket& DatagramEndpoint::socket() const {
    static const Socket none;
    return s_ ? s_->sock : none;
}

void DatagramEndpoint::close() noexcept {
    if (!s_) return;
    s_->refresh_names();
    s_->sock.close();
}

bool DatagramEndpoint::is_closing() const noexcept {
    return !s_ || !s_->sock;
}

// --- creating -----------------------------------------------------------------------------------

DatagramEndpoint datagram_endpoint(Socket sock) {
    if (!sock) throw ValueError("datagram_endpoint() of a closed socket");
    const int type = sock.type();
    if (type != SOCK_DGRAM)
        throw ValueError("datagram_endpoint() needs a SOCK_DGRAM socket, not one of type " +
                         std::to_string(type));
    auto s = std::make_shared<detail::DatagramState>();
    s->sock = std::move(sock);
    s->refresh_names();
    s->remote = s->peername;
    return DatagramEndpoint(std::move(s));
}

Coro<DatagramEndpoint> create_datagram_endpoint(DatagramOptions options) {
    if (options.family == AF_UNIX || options.local_path || options.remote_path)
        co_return co_await create_unix(std::move(options));
    co_return co_await create_ip(std::move(options));
}

}  // namespace corio
