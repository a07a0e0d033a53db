#include "corio/sockets.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <typeinfo>
#include <unordered_map>

#include "corio/executors.hpp"
#include "corio/graph.hpp"
#include "corio/staggered.hpp"
#include "corio/tasks.hpp"

namespace corio {

// --- SocketAddress ------------------------------------------------------------------------------

SocketAddress::SocketAddress() noexcept : storage_{}, size_(0) {
    storage_.ss_family = AF_UNSPEC;
}

SocketAddress SocketAddress::ip(std::string_view host, std::uint16_t port) {
    SocketAddress a;
    std::string h(host);
    // "fe80::1%eth0": the zone names the interface of a link-local IPv6 address.
    std::string zone;
    if (auto pct = h.find('%'); pct != std::string::npos) {
        zone = h.substr(pct + 1);
        h.resize(pct);
    }
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
    if (zone.empty() && ::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        a.size_ = sizeof(sockaddr_in);
        return a;
    }
    if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        if (!zone.empty()) {
            v6->sin6_scope_id = ::if_nametoindex(zone.c_str());
            if (v6->sin6_scope_id == 0) {
                char* end = nullptr;
                errno = 0;
                unsigned long id = std::strtoul(zone.c_str(), &end, 10);
                if (end == zone.c_str() || *end != '\0' || errno == ERANGE || id > UINT32_MAX ||
                    zone[0] == '-' || zone[0] == '+')
                    throw ValueError("unknown IPv6 zone '" + zone + "'");
                v6->sin6_scope_id = static_cast<std::uint32_t>(id);
            }
        }
        a.size_ = sizeof(sockaddr_in6);
        return a;
    }
    throw ValueError("'" + std::string(host) +
                     "' is not a numeric IP address (resolve names with corio::getaddrinfo)");
}

SocketAddress SocketAddress::unix_path(std::string_view path) {
    SocketAddress a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
    if (path.empty()) throw ValueError("empty Unix socket path");
    // A path needs room for its terminating NUL; an abstract name ('\0' first) does not.
    const std::size_t room = sizeof un->sun_path - (path[0] == '\0' ? 0 : 1);
    if (path.size() > room)
        throw ValueError("Unix socket path too long (" + std::to_string(path.size()) + " bytes)");
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    // A path is NUL-terminated; an abstract name's length is part of the address.
    a.size_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                     (path[0] == '\0' ? 0 : 1));
    return a;
}

SocketAddress SocketAddress::from_native(const sockaddr* address, socklen_t size) {
    SocketAddress a;
    if (size > sizeof a.storage_) throw ValueError("socket address too large");
    std::memcpy(&a.storage_, address, size);
    a.size_ = size;
    return a;
}

int SocketAddress::family() const noexcept {
    return storage_.ss_family;
}

std::string SocketAddress::host() const {
    char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
    switch (family()) {
        case AF_INET:
            ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
                        sizeof text);
            return text;
        case AF_INET6: {
            const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
            ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
            std::string h = text;
            if (v6->sin6_scope_id != 0) {
                char name[IF_NAMESIZE] = {};
                h += '%';
                h += ::if_indextoname(v6->sin6_scope_id, name) != nullptr
                         ? std::string(name)
                         : std::to_string(v6->sin6_scope_id);
            }
            return h;
        }
        case AF_UNIX: {
            const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
            const std::size_t offset = offsetof(sockaddr_un, sun_path);
            if (size_ <= offset) return "";  // unnamed (e.g. the client end of a socketpair)
            std::size_t n = size_ - offset;
            if (un->sun_path[0] != '\0') n = ::strnlen(un->sun_path, n);
            return std::string(un->sun_path, n);
        }
        default:
            return "";
    }
}

std::uint16_t SocketAddress::port() const noexcept {
    switch (family()) {
        case AF_INET:
            return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
        case AF_INET6:
            return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
        default:
            return 0;
    }
}

std::string SocketAddress::to_string() const {
    switch (family()) {
        case AF_INET: {
            std::string s = host();
            s += ':';
            s += std::to_string(port());
            return s;
        }
        case AF_INET6: {
            // (Appended piecewise: g++ 12 at -O3 warns falsely about "[" + host() + ...)
            std::string s = "[";
            s += host();
            s += "]:";
            s += std::to_string(port());
            return s;
        }
        case AF_UNIX: {
            std::string h = host();
            if (!h.empty() && h[0] == '\0') h[0] = '@';
            return h;
        }
        default:
            return "";
    }
}

bool SocketAddress::operator==(const SocketAddress& other) const noexcept {
    return size_ == other.size_ && std::memcmp(&storage_, &other.storage_, size_) == 0;
}

// --- Socket -------------------------------------------------------------------------------------

// --- debug mode: sockets still open when their loop closes ---------------------------------------
//
// A Socket closes itself when destroyed, which is how C++ code normally closes one, so unlike a
// StreamWriter it is not reported when dropped. What debug mode reports is a Socket that never
// gets destroyed: leaked, or kept by something that outlives the loop it was created under.
// Sockets created while a debug-mode loop runs are recorded by descriptor until they are closed
// or detached; those still recorded when that loop closes are reported then.

namespace {

struct OpenSocket {
    EventLoop* loop = nullptr;
    std::string task{};
    SourceLocation coroutine{};
    SourceLocation location{};
};

struct OpenSockets {
    std::mutex mutex;
    std::unordered_map<int, OpenSocket> by_fd;
};

// Never destroyed: sockets may be closed by static destructors, after this would be gone.
OpenSockets& open_sockets() {
    static auto* sockets = new OpenSockets;
    return *sockets;
}

// How many are recorded: with debug mode off it stays 0, and closing a socket reads only this.
std::atomic<std::size_t> g_open_sockets{0};

void record_open_socket(int fd, SourceLocation where) noexcept {
    EventLoop* loop = detail::t_state.running_loop;
    if (loop == nullptr || !loop->get_debug()) return;
    try {
        // A standard-library header (optional::emplace, make_unique) is no useful answer to
        // "where was it made": then, as for sockets the library makes (accept), the task says.
        const bool useful = where.line != 0 && std::strstr(where.file, "/c++/") == nullptr;
        OpenSocket record{.loop = loop, .location = useful ? where : SourceLocation{}};
        if (detail::TaskCore* t = detail::t_state.current_task) {
            record.task = t->name();
            record.coroutine = t->coroutine();
            if (!useful) record.location = detail::user_location(*t);
        }
        OpenSockets& sockets = open_sockets();
        std::lock_guard lock(sockets.mutex);
        if (sockets.by_fd.insert_or_assign(fd, std::move(record)).second) ++g_open_sockets;
    } catch (...) {
        // Debug bookkeeping must never make creating a socket fail.
    }
}

void forget_open_socket(int fd) noexcept {
    if (g_open_sockets.load(std::memory_order_relaxed) == 0) return;
    OpenSockets& sockets = open_sockets();
    std::lock_guard lock(sockets.mutex);
    if (sockets.by_fd.erase(fd) != 0) --g_open_sockets;
}

std::string describe_open_socket(int fd) {
    std::string kind;
    int family = 0, type = 0;
    socklen_t size = sizeof(int);
    ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &size);
    size = sizeof(int);
    ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size);
    switch (family) {
        case AF_INET:
            kind = "AF_INET";
            break;
        case AF_INET6:
            kind = "AF_INET6";
            break;
        case AF_UNIX:
            kind = "AF_UNIX";
            break;
        default:
            kind = "family " + std::to_string(family);
    }
    switch (type) {
        case SOCK_STREAM:
            kind += " SOCK_STREAM";
            break;
        case SOCK_DGRAM:
            kind += " SOCK_DGRAM";
            break;
        case SOCK_SEQPACKET:
            kind += " SOCK_SEQPACKET";
            break;
        default:
            kind += " type " + std::to_string(type);
    }
    std::string text = "fd=" + std::to_string(fd) + " " + kind;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
        const std::string local =
            SocketAddress::from_native(reinterpret_cast<sockaddr*>(&address), length).to_string();
        if (!local.empty()) text += " laddr=" + local;
    }
    length = sizeof address;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
        const std::string peer =
            SocketAddress::from_native(reinterpret_cast<sockaddr*>(&address), length).to_string();
        if (!peer.empty()) text += " raddr=" + peer;
    }
    return text;
}

}  // namespace

namespace detail {

void report_sockets_open_at_close(EventLoop& loop) noexcept {
    if (g_open_sockets.load(std::memory_order_relaxed) == 0) return;
    std::vector<std::pair<int, OpenSocket>> found;
    try {
        OpenSockets& sockets = open_sockets();
        std::lock_guard lock(sockets.mutex);
        for (auto it = sockets.by_fd.begin(); it != sockets.by_fd.end();) {
            if (it->second.loop == &loop) {
                found.emplace_back(it->first, std::move(it->second));
                it = sockets.by_fd.erase(it);
                --g_open_sockets;
            } else {
                ++it;
            }
        }
    } catch (...) {
        return;
    }
    std::sort(found.begin(), found.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [fd, record] : found) {
        try {
            ExceptionContext ctx;
            ctx.message = "unclosed Socket " + describe_open_socket(fd) +
                          ": still open when its event loop closed";
            ctx.task = std::move(record.task);
            ctx.coroutine = record.coroutine;
            ctx.location = record.location;
            loop.call_exception_handler(ctx);
        } catch (...) {
        }
    }
}

}  // namespace detail

Socket::Socket(int family, int type, int protocol, SourceLocation where) {
    fd_ = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd_ < 0) throw_os_error(errno, "socket");
    record_open_socket(fd_, where);
}

Socket Socket::adopt(int fd) {
    if (fd < 0) throw ValueError("Socket::adopt of an invalid descriptor");
    Socket s;
    s.fd_ = fd;
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        const int err = errno;
        s.detach();
        throw_os_error(err, "fcntl");
    }
    record_open_socket(fd, SourceLocation{});
    return s;
}

int Socket::detach() noexcept {
    if (fd_ >= 0) forget_open_socket(fd_);
    return std::exchange(fd_, -1);
}

Socket& Socket::operator=(Socket&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

int Socket::checked() const {
    if (fd_ < 0) throw_os_error(EBADF, "the socket is closed");
    return fd_;
}

int Socket::family() const {
    return getsockopt(SOL_SOCKET, SO_DOMAIN);
}
int Socket::type() const {
    return getsockopt(SOL_SOCKET, SO_TYPE);
}

void Socket::bind(const SocketAddress& address) {
    if (::bind(checked(), address.native(), address.size()) < 0)
        throw_os_error(errno, "bind to " + address.to_string());
}

void Socket::listen(int backlog) {
    if (::listen(checked(), backlog) < 0) throw_os_error(errno, "listen");
}

namespace {

// getsockname() or getpeername() of fd, as a SocketAddress.
SocketAddress address_of(int fd, int (*query)(int, sockaddr*, socklen_t*), const char* what) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (query(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) throw_os_error(errno, what);
    return SocketAddress::from_native(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace

SocketAddress Socket::getsockname() const {
    return address_of(checked(), ::getsockname, "getsockname");
}

SocketAddress Socket::getpeername() const {
    return address_of(checked(), ::getpeername, "getpeername");
}

void Socket::setsockopt(int level, int name, int value) {
    if (::setsockopt(checked(), level, name, &value, sizeof value) < 0)
        throw_os_error(errno, "setsockopt");
}

int Socket::getsockopt(int level, int name) const {
    int value = 0;
    socklen_t len = sizeof value;
    if (::getsockopt(checked(), level, name, &value, &len) < 0) throw_os_error(errno, "getsockopt");
    return value;
}

void Socket::set_nodelay(bool on) {
    setsockopt(IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

void Socket::shutdown(int how) {
    if (::shutdown(checked(), how) < 0) throw_os_error(errno, "shutdown");
}

void Socket::close() noexcept {
    if (fd_ < 0) return;
    if (EventLoop* loop = detail::t_state.running_loop)
        detail::LoopAccess::forget(*loop, fd_, EBADF);
    // Before ::close: once closed, the number may be reused by a socket that gets recorded.
    forget_open_socket(fd_);
    ::close(fd_);  // the descriptor is gone whatever close() returns (Linux)
    fd_ = -1;
}

// --- operations
// -----------------------------------------------------------------------------------

namespace {

// Waits until `fd` is readable (or writable); the raw readiness wait under several operations.
detail::IoAwaiter ready(int fd, bool readable) noexcept {
    return detail::IoAwaiter(readable ? detail::IoOp::Kind::Readable : detail::IoOp::Kind::Writable,
                             fd, nullptr, 0);
}

[[noreturn]] void fail(ssize_t result, const char* what) {
    throw_os_error(static_cast<int>(-result), what);
}

}  // namespace

namespace {

// The received bytes, without keeping the whole receive buffer: a 4-byte message must not hold
// on to 64 KiB for as long as the caller keeps it.
std::string fit(std::string data, std::size_t size) {
    data.resize(size);
    if (data.capacity() > 2 * size + 64) data.shrink_to_fit();
    return data;
}

}  // namespace

std::size_t detail::RecvInto::await_resume() {
    const ssize_t r = IoAwaiter::await_resume();
    if (r < 0) fail(r, "recv");
    return static_cast<std::size_t>(r);
}

Coro<void> sock_connect(Socket& sock, SocketAddress address) {
    const int fd = sock.fileno();
    if (fd < 0) throw_os_error(EBADF, "connect on a closed socket");
    detail::RetryPause pause;
    for (;;) {
        int r;
        do {
            r = ::connect(fd, address.native(), address.size());
        } while (r < 0 && errno == EINTR);
        if (r == 0 || errno == EISCONN) co_return;
        const int err = errno;
        if (err == EAGAIN && address.family() == AF_UNIX) {
            // The listener's backlog is full and the connection has not started; nothing
            // signals when there is room (asyncio would wrongly report success here).
            co_await sleep(pause.next());
            continue;
        }
        if (err != EINPROGRESS) throw_os_error(err, "connect to " + address.to_string());
        break;
    }
    co_await ready(fd, false);
    const int err = sock.getsockopt(SOL_SOCKET, SO_ERROR);
    if (err != 0) throw_os_error(err, "connect to " + address.to_string());
}

Coro<std::pair<Socket, SocketAddress>> sock_accept(Socket& listener) {
    const int fd = listener.fileno();
    if (fd < 0) throw_os_error(EBADF, "accept on a closed socket");
    sockaddr_storage peer{};
    const ssize_t r =
        co_await detail::IoAwaiter(detail::IoOp::Kind::Accept, fd, &peer, sizeof peer);
    if (r < 0) fail(r, "accept");
    Socket conn;
    conn = Socket::adopt(static_cast<int>(r));  // already non-blocking and close-on-exec
    SocketAddress address;
    try {
        address = conn.getpeername();
    } catch (const OSError&) {
        // An unnamed Unix-domain peer, or one already gone: an empty address.
    }
    co_return std::pair<Socket, SocketAddress>(std::move(conn), std::move(address));
}

Coro<std::string> sock_recv(Socket& sock, std::size_t max_bytes) {
    if (sock.fileno() < 0) throw_os_error(EBADF, "recv on a closed socket");
    std::string data(max_bytes, '\0');
    const ssize_t r =
        co_await detail::IoAwaiter(detail::IoOp::Kind::Read, sock.fileno(), data.data(), max_bytes);
    if (r < 0) fail(r, "recv");
    co_return fit(std::move(data), static_cast<std::size_t>(r));
}

Coro<void> sock_sendall(Socket& sock, std::string_view data) {
    if (sock.fileno() < 0) throw_os_error(EBADF, "send on a closed socket");
    while (!data.empty()) {
        const ssize_t r = co_await detail::IoAwaiter(detail::IoOp::Kind::Send, sock.fileno(),
                                                     const_cast<char*>(data.data()), data.size());
        if (r < 0) fail(r, "send");
        data.remove_prefix(static_cast<std::size_t>(r));
    }
}

Coro<std::pair<std::string, SocketAddress>> sock_recvfrom(Socket& sock, std::size_t max_bytes) {
    const int fd = sock.fileno();
    if (fd < 0) throw_os_error(EBADF, "recvfrom on a closed socket");
    std::string data(max_bytes, '\0');
    for (;;) {
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        const ssize_t n =
            ::recvfrom(fd, data.data(), max_bytes, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n >= 0) {
            co_return std::pair<std::string, SocketAddress>(
                fit(std::move(data), static_cast<std::size_t>(n)),
                SocketAddress::from_native(reinterpret_cast<sockaddr*>(&from), len));
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) throw_os_error(errno, "recvfrom");
        const ssize_t r = co_await ready(fd, true);
        if (r < 0) fail(r, "recvfrom");
    }
}

Coro<std::size_t> sock_sendto(Socket& sock, std::string_view data, SocketAddress address) {
    const int fd = sock.fileno();
    if (fd < 0) throw_os_error(EBADF, "sendto on a closed socket");
    detail::RetryPause pause;
    bool woke_writable = false;
    for (;;) {
        const ssize_t n =
            ::sendto(fd, data.data(), data.size(), MSG_NOSIGNAL, address.native(), address.size());
        if (n >= 0) co_return static_cast<std::size_t>(n);
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            throw_os_error(errno, "sendto " + address.to_string());
        if (woke_writable && address.family() == AF_UNIX) {
            co_await sleep(pause.next());  // a full Unix receiver: see RetryPause
            woke_writable = false;
            continue;
        }
        const ssize_t r = co_await ready(fd, false);
        if (r < 0) fail(r, "sendto");
        woke_writable = true;
    }
}

// --- names
// ----------------------------------------------------------------------------------------

GaiError::GaiError(int code, const std::string& what)
    : OSError(code,
              std::string("[Errno ") + std::to_string(code) + "] " + ::gai_strerror(code) +
                  (what.empty() ? "" : ": " + what),
              true) {}

namespace {

std::vector<AddrInfo> resolve(const std::string& host, const std::string& service, int family,
                              int type, int protocol, int flags) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = type;
    hints.ai_protocol = protocol;
    hints.ai_flags = flags;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                                 service.empty() ? nullptr : service.c_str(), &hints, &list);
    if (rc == EAI_SYSTEM) throw_os_error(errno, "getaddrinfo " + host);
    if (rc != 0) throw GaiError(rc, "getaddrinfo " + host + (service.empty() ? "" : ":" + service));
    std::vector<AddrInfo> out;
    for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
        AddrInfo info;
        info.family = a->ai_family;
        info.type = a->ai_socktype;
        info.protocol = a->ai_protocol;
        if (a->ai_canonname != nullptr) info.canonical_name = a->ai_canonname;
        info.address = SocketAddress::from_native(a->ai_addr, a->ai_addrlen);
        out.push_back(std::move(info));
    }
    ::freeaddrinfo(list);
    return out;
}

std::pair<std::string, std::string> name_of(const SocketAddress& address, int flags) {
    char host[NI_MAXHOST] = {};
    char service[NI_MAXSERV] = {};
    const int rc = ::getnameinfo(address.native(), address.size(), host, sizeof host, service,
                                 sizeof service, flags);
    if (rc == EAI_SYSTEM) throw_os_error(errno, "getnameinfo " + address.to_string());
    if (rc != 0) throw GaiError(rc, "getnameinfo " + address.to_string());
    return {host, service};
}

}  // namespace

Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string service, int family, int type,
                                        int protocol, int flags) {
    auto call = [=] { return resolve(host, service, family, type, protocol, flags); };
    co_return co_await to_thread(std::move(call));
}

Coro<std::pair<std::string, std::string>> getnameinfo(SocketAddress address, int flags) {
    auto call = [=] { return name_of(address, flags); };
    co_return co_await to_thread(std::move(call));
}

// --- connecting and listening -------------------------------------------------------------------

namespace {

// The stream addresses of host:port, without duplicates, in the resolver's order. A numeric
// host is taken as it is, without a resolver call.
Coro<std::vector<SocketAddress>> stream_addresses(std::string host, std::uint16_t port, int family,
                                                  int flags) {
    std::vector<SocketAddress> out;
    std::optional<SocketAddress> numeric;
    if (!host.empty()) {
        try {
            numeric = SocketAddress::ip(host, port);
        } catch (const ValueError&) {
            // a name, for the resolver
        }
    }
    if (numeric) {
        // What getaddrinfo says of a numeric host of another family.
        if (family != AF_UNSPEC && numeric->family() != family)
            throw GaiError(EAI_ADDRFAMILY, "getaddrinfo " + host);
        out.push_back(*numeric);
        co_return out;
    }
    for (const AddrInfo& a :
         co_await getaddrinfo(host, std::to_string(port), family, SOCK_STREAM, 0, flags)) {
        if (std::find(out.begin(), out.end(), a.address) == out.end()) out.push_back(a.address);
    }
    co_return out;
}

// One connection attempt. The socket is a local of the coroutine, so a failed or cancelled
// attempt closes it on the way out.
Coro<Socket> connect_one(SocketAddress address, std::optional<SocketAddress> local) {
    if (local && local->family() != address.family())
        throw_os_error(EAFNOSUPPORT,
                       "connect to " + address.to_string() + " from " + local->to_string());
    Socket sock(address.family(), SOCK_STREAM);
    if (local) sock.bind(*local);
    co_await sock_connect(sock, address);
    if (address.family() == AF_INET || address.family() == AF_INET6) sock.set_nodelay(true);
    co_return sock;
}

// An attempt of the race, as a named type: every factory of staggered_race has the same type.
struct ConnectAttempt {
    SocketAddress address;
    std::optional<SocketAddress> local;
    Coro<Socket> operator()() const { return connect_one(address, local); }
};

// The dynamic type and errno of an OSError: failures alike have the same.
std::pair<const std::type_info*, int> kind_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const OSError& x) {
        return {&typeid(x), x.code()};
    } catch (...) {
        return {nullptr, 0};
    }
}

[[noreturn]] void raise_connect_errors(std::vector<std::exception_ptr> errors) {
    std::erase(errors, nullptr);
    if (errors.empty()) throw OSError(EHOSTUNREACH, "create_connection(): no attempt was made");
    // Anything but an OSError is not about the network (or the address): it goes on as it is.
    for (const std::exception_ptr& e : errors) {
        if (!holds<OSError>(e)) std::rethrow_exception(e);
    }
    const auto first = kind_of(errors.front());
    const bool alike = std::all_of(errors.begin(), errors.end(), [&](const std::exception_ptr& e) {
        const auto k = kind_of(e);
        return *k.first == *first.first && k.second == first.second;
    });
    if (alike) std::rethrow_exception(errors.front());
    throw MultipleConnectErrors(std::move(errors));
}

std::string multiple_message(const std::vector<std::exception_ptr>& errors) {
    std::string m = "Multiple exceptions: ";
    for (std::size_t i = 0; i < errors.size(); ++i) {
        if (i > 0) m += ", ";
        try {
            std::rethrow_exception(errors[i]);
        } catch (const std::exception& x) {
            m += x.what();
        } catch (...) {
            m += describe(errors[i]);
        }
    }
    return m;
}

SocketAddress with_port(const SocketAddress& address, std::uint16_t port) {
    sockaddr_storage ss{};
    std::memcpy(&ss, address.native(), address.size());
    if (address.family() == AF_INET) reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
    if (address.family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
    return SocketAddress::from_native(reinterpret_cast<const sockaddr*>(&ss), address.size());
}

// Removes the socket file at `address` if no server listens on it any more.
void remove_stale_socket(const SocketAddress& address) {
    const std::string path = address.host();
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
    // Non-blocking, so a live server with a full backlog answers EAGAIN instead of making us
    // wait. A live server sees this probe as a connection that closes at once.
    Socket probe(AF_UNIX, SOCK_STREAM);
    int r;
    do {
        r = ::connect(probe.fileno(), address.native(), address.size());
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == ECONNREFUSED) ::unlink(path.c_str());
}

}  // namespace

MultipleConnectErrors::MultipleConnectErrors(std::vector<std::exception_ptr> exceptions)
    : OSError(0, multiple_message(exceptions), true), exceptions_(std::move(exceptions)) {}

std::vector<SocketAddress> interleave_addresses(std::vector<SocketAddress> addresses,
                                                int first_family_count) {
    if (first_family_count < 1) throw ValueError("interleave_addresses: first_family_count < 1");
    const std::size_t total = addresses.size();
    std::vector<std::vector<SocketAddress>> families;  // in order of first appearance
    for (SocketAddress& a : addresses) {
        auto same = std::find_if(families.begin(), families.end(),
                                 [&](const auto& f) { return f.front().family() == a.family(); });
        if (same == families.end()) {
            families.emplace_back().push_back(std::move(a));
        } else {
            same->push_back(std::move(a));
        }
    }
    std::vector<SocketAddress> out;
    out.reserve(total);
    std::vector<std::size_t> next(families.size(), 0);
    if (!families.empty()) {
        const std::size_t lead =
            std::min(static_cast<std::size_t>(first_family_count - 1), families[0].size());
        for (; next[0] < lead; ++next[0]) out.push_back(std::move(families[0][next[0]]));
    }
    while (out.size() < total) {
        for (std::size_t f = 0; f < families.size(); ++f) {
            if (next[f] < families[f].size()) out.push_back(std::move(families[f][next[f]++]));
        }
    }
    return out;
}

Coro<Socket> create_connection(std::string host, std::uint16_t port, ConnectOptions options) {
    std::vector<SocketAddress> addresses =
        co_await stream_addresses(std::move(host), port, options.family, 0);
    co_return co_await create_connection(std::move(addresses), std::move(options));
}

Coro<Socket> create_connection(std::vector<SocketAddress> addresses, ConnectOptions options) {
    if (addresses.empty()) throw ValueError("create_connection() needs at least one address");
    std::optional<Duration> delay;
    if (options.happy_eyeballs_delay) {
        // Converting a NaN or a huge double to nanoseconds is undefined; a year is forever.
        const std::chrono::duration<double> given = *options.happy_eyeballs_delay;
        if (!(given.count() >= 0)) throw ValueError("happy_eyeballs_delay must be >= 0");
        delay = std::chrono::ceil<Duration>(
            std::min(given, std::chrono::duration<double>(std::chrono::hours(24 * 365))));
    }
    const int interleave = options.interleave.value_or(delay ? 1 : 0);
    if (interleave < 0) throw ValueError("create_connection(): interleave must be >= 0");
    if (options.family != AF_UNSPEC) {
        std::erase_if(addresses,
                      [&](const SocketAddress& a) { return a.family() != options.family; });
        if (addresses.empty())
            throw_os_error(EAFNOSUPPORT, "create_connection(): no address of family " +
                                             std::to_string(options.family));
    }
    if (interleave > 0) addresses = interleave_addresses(std::move(addresses), interleave);

    if (!delay || addresses.size() == 1) {
        std::vector<std::exception_ptr> errors;
        for (const SocketAddress& address : addresses) {
            try {
                co_return co_await connect_one(address, options.local_addr);
            } catch (const OSError&) {
                errors.push_back(std::current_exception());
            }
        }
        raise_connect_errors(std::move(errors));
    }
    std::vector<ConnectAttempt> attempts;
    for (const SocketAddress& address : addresses)
        attempts.push_back(ConnectAttempt{address, options.local_addr});
    StaggeredResult<Socket> race = co_await staggered_race(std::move(attempts), delay);
    if (race.winner_result) co_return std::move(*race.winner_result);
    raise_connect_errors(std::move(race.exceptions));
}

Coro<std::vector<Socket>> create_server(std::string host, std::uint16_t port,
                                        ServerOptions options) {
    const std::vector<SocketAddress> addresses =
        co_await stream_addresses(host, port, options.family, AI_PASSIVE);
    // With port 0 the kernel picks the first socket's port and the others take the same. If
    // another program holds that port in another family, everything starts over with a new one.
    constexpr int kTries = 8;
    for (int tries = 1;; ++tries) {
        std::vector<Socket> sockets;
        std::exception_ptr unsupported;
        std::uint16_t chosen = port;
        bool clash = false;
        for (const SocketAddress& address : addresses) {
            Socket s;
            try {
                s = Socket(address.family(), SOCK_STREAM);
            } catch (const OSError& e) {
                if (e.code() != EAFNOSUPPORT) throw;
                unsupported = std::current_exception();  // e.g. IPv6 disabled in the kernel
                continue;
            }
            if (options.reuse_address) s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
            if (options.reuse_port) s.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
            // Linux's IPv6 sockets take IPv4 connections too by default, which would clash with
            // the IPv4 socket on the same port.
            if (address.family() == AF_INET6) s.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1);
            try {
                s.bind(with_port(address, chosen));
            } catch (const OSError& e) {
                if (port != 0 || chosen == 0 || e.code() != EADDRINUSE || tries == kTries) throw;
                clash = true;
            }
            if (clash) break;
            s.listen(options.backlog);
            if (chosen == 0) chosen = s.getsockname().port();
            sockets.push_back(std::move(s));
        }
        if (clash) continue;
        if (sockets.empty()) {
            if (unsupported) std::rethrow_exception(unsupported);
            throw_os_error(EADDRNOTAVAIL, "create_server(): no address to listen on for " + host);
        }
        co_return sockets;
    }
}

Socket create_unix_server(const std::string& path, int backlog) {
    const SocketAddress address = SocketAddress::unix_path(path);
    if (path[0] != '\0') remove_stale_socket(address);
    Socket s(AF_UNIX, SOCK_STREAM);
    s.bind(address);
    s.listen(backlog);
    return s;
}

}  // namespace corio
