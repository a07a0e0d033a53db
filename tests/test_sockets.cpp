// corio::Socket, corio::SocketAddress, the loop's socket operations (sock_connect, sock_accept,
// sock_recv, sock_recv_into, sock_sendall, sock_recvfrom, sock_sendto), getaddrinfo/getnameinfo
// and the OSError family (Python's socket module and asyncio's loop.sock_* methods); then
// create_connection (Happy Eyeballs), create_server and create_unix_server (the socket halves of
// asyncio's loop.create_connection and loop.create_server).
//
// Every test that opens a descriptor runs under corio::testing, which fails it when a descriptor,
// a task or an unretrieved exception is left behind, and cancels a body that runs past
// kBodyTimeout (so a library that hangs fails instead). Everything binds to 127.0.0.1 / ::1 on
// ephemeral ports, to Unix paths in a fresh temporary directory, or to unique abstract names.
// Nothing depends on timing: let_loop_run() only gives the loop a few idle passes (so that a new
// task reaches its co_await and the loop polls), and what must have happened is then checked.
// (The measurements, the CPU use in UnixConnectToAFullBacklogDoesNotBusyWait and
// SendtoAFullUnixReceiverDoesNotBusyWait, can only err towards passing on a loaded machine.)
// The Happy Eyeballs tests run on the virtual clock, so the moment each attempt starts is exact;
// their connect that hangs is one to a listener whose accept queue is full (HangingListener).
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "corio/testing.hpp"
#include "support.hpp"

using corio_test::os_code;

using namespace std::chrono_literals;
using corio::Socket;
using corio::SocketAddress;

namespace corio {
// Lets GoogleTest print addresses in failure messages.
void PrintTo(const SocketAddress& a, std::ostream* os) {
    *os << "SocketAddress(family " << a.family() << ", \"" << a.to_string() << "\")";
}
}  // namespace corio

namespace {

// A body that hangs is cancelled (and the test failed) after this long.
const corio::Duration kBodyTimeout = std::chrono::seconds(5);

corio::testing::Options options() {
    return corio::testing::Options{.timeout = kBodyTimeout};
}

#define SOCK_TEST(suite, name) CORIO_TEST_WITH(suite, name, {.timeout = kBodyTimeout})

// --- descriptors ----------------------------------------------------------------------------

bool fd_is_open(int fd) {
    return ::fcntl(fd, F_GETFD) != -1;
}

bool is_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    return flags != -1 && (flags & O_NONBLOCK) != 0;
}

bool is_cloexec(int fd) {
    const int flags = ::fcntl(fd, F_GETFD);
    return flags != -1 && (flags & FD_CLOEXEC) != 0;
}

int open_fd_count() {
    int n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

// A fresh directory for Unix socket paths, removed with everything in it.
class TempDir {
  public:
    TempDir() {
        char name[] = "/tmp/corio-sockets-XXXXXX";
        if (::mkdtemp(name) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = name;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

// A name in the abstract namespace that no other test (or process) uses.
std::string abstract_name(const std::string& tag) {
    static int counter = 0;
    return std::string(1, '\0') + "corio-test-" + std::to_string(::getpid()) + "-" + tag + "-" +
           std::to_string(++counter);
}

bool ipv6_available() {
    const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

#define SKIP_WITHOUT_IPV6() \
    if (!ipv6_available()) GTEST_SKIP() << "::1 cannot be bound (no IPv6 loopback)"

SocketAddress loopback(int family) {
    return family == AF_INET6 ? SocketAddress::ip("::1", 0) : SocketAddress::ip("127.0.0.1", 0);
}

// --- connections ----------------------------------------------------------------------------

Socket listening(const SocketAddress& where, int backlog = SOMAXCONN) {
    Socket s(where.family(), SOCK_STREAM);
    s.bind(where);
    s.listen(backlog);
    return s;
}

struct Connection {
    Socket client;
    Socket server;
    SocketAddress peer;  // what sock_accept reported for the client
};

// Connects a new client to `listener` and accepts it.
corio::Coro<Connection> connect_to(Socket& listener) {
    Connection c;
    c.client = Socket(listener.family(), SOCK_STREAM);
    co_await corio::sock_connect(c.client, listener.getsockname());
    auto accepted = co_await corio::sock_accept(listener);
    c.server = std::move(accepted.first);
    c.peer = accepted.second;
    co_return c;
}

// A connected TCP pair over the loopback of `family`.
corio::Coro<Connection> tcp_connection(int family = AF_INET) {
    Socket listener = listening(loopback(family));
    co_return co_await connect_to(listener);
}

// A connected pair from socketpair(AF_UNIX, type).
Connection socket_pair(int type = SOCK_STREAM) {
    int fds[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::runtime_error("socketpair failed");
    Connection c;
    c.client = Socket::adopt(fds[0]);
    c.server = Socket::adopt(fds[1]);
    return c;
}

// Makes the next close() of `s` reset the connection (RST) instead of closing it in order.
void arm_reset(Socket& s) {
    linger l{};
    l.l_onoff = 1;
    l.l_linger = 0;
    if (::setsockopt(s.fileno(), SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0)
        throw std::runtime_error("SO_LINGER failed");
}

// Receives exactly `n` bytes, or fewer if the stream ends first.
corio::Coro<std::string> recv_exactly(Socket& sock, std::size_t n) {
    std::string out;
    while (out.size() < n) {
        std::string chunk =
            co_await corio::sock_recv(sock, std::min<std::size_t>(n - out.size(), 65536));
        if (chunk.empty()) break;
        out += chunk;
    }
    co_return out;
}

// Receives until the peer ends the stream.
corio::Coro<std::string> recv_until_eof(Socket& sock) {
    std::string out;
    for (;;) {
        std::string chunk = co_await corio::sock_recv(sock, 65536);
        if (chunk.empty()) break;
        out += chunk;
    }
    co_return out;
}

std::string payload(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 13)) % 251);
    return s;
}

// Lets the loop run other tasks (and poll) a few times.
corio::Coro<> let_loop_run(int passes = 4) {
    for (int i = 0; i < passes; ++i) co_await corio::sleep(1ms);
}

// --- exceptions -----------------------------------------------------------------------------

// What awaiting `aw` raised, or null. A CancelledError counts, unless the awaiting task is itself
// being cancelled (e.g. by the test's deadline): that one goes on.
template <class A>
corio::Coro<std::exception_ptr> raised_by(A aw) {
    std::exception_ptr error;
    try {
        co_await std::move(aw);
    } catch (...) {
        error = std::current_exception();
    }
    if (corio::is_cancellation(error) && corio::current_task().cancelling() > 0)
        std::rethrow_exception(error);
    co_return error;
}

std::string message_of(const std::exception_ptr& e) {
    return e ? corio::describe(e) : std::string("no exception");
}

template <class F>
void expect_ebadf(const char* what, F f) {
    try {
        f();
        ADD_FAILURE() << what << " on a closed socket did not throw";
    } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), EBADF) << what << ": " << e.what();
    } catch (...) {
        ADD_FAILURE() << what << " threw " << corio::describe(std::current_exception());
    }
}

}  // namespace

// === SocketAddress ===========================================================================

TEST(SocketAddress, Ipv4HasHostPortFamilyAndString) {
    const auto a = SocketAddress::ip("127.0.0.1", 80);
    EXPECT_EQ(a.family(), AF_INET);
    EXPECT_EQ(a.host(), "127.0.0.1");
    EXPECT_EQ(a.port(), 80);
    EXPECT_EQ(a.to_string(), "127.0.0.1:80");
    EXPECT_EQ(a.size(), sizeof(sockaddr_in));
    const auto* native = reinterpret_cast<const sockaddr_in*>(a.native());
    EXPECT_EQ(ntohs(native->sin_port), 80);
    EXPECT_EQ(ntohl(native->sin_addr.s_addr), INADDR_LOOPBACK);
    EXPECT_EQ(SocketAddress::ip("10.1.2.3", 65535).to_string(), "10.1.2.3:65535");
}

TEST(SocketAddress, Ipv6HasHostPortFamilyAndBracketedString) {
    const auto a = SocketAddress::ip("::1", 80);
    EXPECT_EQ(a.family(), AF_INET6);
    EXPECT_EQ(a.host(), "::1");
    EXPECT_EQ(a.port(), 80);
    EXPECT_EQ(a.to_string(), "[::1]:80");
    EXPECT_EQ(a.size(), sizeof(sockaddr_in6));
    // The host is shown in canonical form.
    EXPECT_EQ(SocketAddress::ip("0:0:0:0:0:0:0:1", 443).to_string(), "[::1]:443");
    EXPECT_EQ(SocketAddress::ip("::ffff:127.0.0.1", 1).to_string(), "[::ffff:127.0.0.1]:1");
}

TEST(SocketAddress, Ipv6ZoneByInterfaceNameSetsTheScopeId) {
    const unsigned lo = ::if_nametoindex("lo");
    if (lo == 0) GTEST_SKIP() << "no interface named lo";
    const auto a = SocketAddress::ip("fe80::1%lo", 80);
    EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(a.native())->sin6_scope_id, lo);
    EXPECT_EQ(a.host(), "fe80::1%lo");
    EXPECT_EQ(a.to_string(), "[fe80::1%lo]:80");
    // A numeric zone naming the same interface is the same address.
    EXPECT_EQ(SocketAddress::ip("fe80::1%" + std::to_string(lo), 80), a);
}

TEST(SocketAddress, Ipv6NumericZoneWithoutInterfaceIsKeptAsANumber) {
    const auto a = SocketAddress::ip("fe80::1%4000000000", 7);
    EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(a.native())->sin6_scope_id, 4000000000u);
    EXPECT_EQ(a.host(), "fe80::1%4000000000");
    EXPECT_EQ(SocketAddress::ip(a.host(), a.port()), a);
}

TEST(SocketAddress, BadZonesAreValueErrors) {
    EXPECT_THROW(SocketAddress::ip("fe80::1%no-such-interface0", 1), corio::ValueError);
    EXPECT_THROW(SocketAddress::ip("127.0.0.1%lo", 1), corio::ValueError);  // IPv4 has no zones
    // A zone number that does not fit in sin6_scope_id must not wrap to another interface.
    EXPECT_THROW(SocketAddress::ip("fe80::1%4294967297", 1), corio::ValueError);
}

TEST(SocketAddress, NonNumericHostsAreValueErrors) {
    for (const char* host : {"localhost", "", "1.2.3", "256.0.0.1", " 127.0.0.1", "::g", "[::1]"}) {
        EXPECT_THROW(SocketAddress::ip(host, 80), corio::ValueError) << "host '" << host << "'";
    }
    // A ValueError, not an OSError: nothing was asked of the system.
    try {
        SocketAddress::ip("example.com", 80);
        ADD_FAILURE() << "no exception";
    } catch (const corio::OSError&) {
        ADD_FAILURE() << "an OSError";
    } catch (const corio::ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("example.com"), std::string::npos) << e.what();
    }
}

TEST(SocketAddress, DefaultIsEmpty) {
    const SocketAddress a;
    EXPECT_EQ(a.family(), AF_UNSPEC);
    EXPECT_EQ(a.size(), 0u);
    EXPECT_EQ(a.host(), "");
    EXPECT_EQ(a.port(), 0);
    EXPECT_EQ(a.to_string(), "");
    EXPECT_EQ(a, SocketAddress());
}

TEST(SocketAddress, UnixPathHasPathAsHostAndString) {
    const auto a = SocketAddress::unix_path("/run/app.sock");
    EXPECT_EQ(a.family(), AF_UNIX);
    EXPECT_EQ(a.host(), "/run/app.sock");
    EXPECT_EQ(a.to_string(), "/run/app.sock");
    EXPECT_EQ(a.port(), 0);
    // The terminating NUL is part of a path address.
    EXPECT_EQ(a.size(), offsetof(sockaddr_un, sun_path) + std::strlen("/run/app.sock") + 1);
    EXPECT_STREQ(reinterpret_cast<const sockaddr_un*>(a.native())->sun_path, "/run/app.sock");
}

TEST(SocketAddress, AbstractUnixNameIsShownWithAnAt) {
    const std::string name("\0corio-name", 11);
    const auto a = SocketAddress::unix_path(name);
    EXPECT_EQ(a.family(), AF_UNIX);
    EXPECT_EQ(a.host(), name);
    EXPECT_EQ(a.to_string(), "@corio-name");
    // An abstract name has no terminator: its length is part of the address.
    EXPECT_EQ(a.size(), offsetof(sockaddr_un, sun_path) + name.size());
    EXPECT_NE(a, SocketAddress::unix_path("corio-name"));
    EXPECT_NE(a, SocketAddress::unix_path(std::string("\0corio-nam", 10)));
}

TEST(SocketAddress, UnixPathLengthLimits) {
    constexpr std::size_t capacity = sizeof(sockaddr_un{}.sun_path);  // 108 on Linux
    // A path needs room for its NUL.
    EXPECT_EQ(SocketAddress::unix_path(std::string(capacity - 1, 'p')).host(),
              std::string(capacity - 1, 'p'));
    EXPECT_THROW(SocketAddress::unix_path(std::string(capacity, 'p')), corio::ValueError);
    EXPECT_THROW(SocketAddress::unix_path(std::string(4096, 'p')), corio::ValueError);
    EXPECT_THROW(SocketAddress::unix_path(""), corio::ValueError);
    // An abstract name has no NUL to make room for: it may fill sun_path (as in Python).
    const std::string longest_abstract = std::string(1, '\0') + std::string(capacity - 1, 'a');
    try {
        const auto a = SocketAddress::unix_path(longest_abstract);
        EXPECT_EQ(a.host(), longest_abstract);
        EXPECT_EQ(a.size(), sizeof(sockaddr_un));
    } catch (const corio::ValueError& e) {
        ADD_FAILURE() << "a " << capacity << "-byte abstract name was refused: " << e.what();
    }
    EXPECT_THROW(SocketAddress::unix_path(longest_abstract + "a"), corio::ValueError);
}

TEST(SocketAddress, FromNativeRoundTrips) {
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(8443);
    v6.sin6_addr = in6addr_loopback;
    const auto a = SocketAddress::from_native(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
    EXPECT_EQ(a, SocketAddress::ip("::1", 8443));
    EXPECT_EQ(a.to_string(), "[::1]:8443");

    for (const auto& original :
         {SocketAddress::ip("192.168.1.20", 5353), SocketAddress::ip("fe80::2%7", 1),
          SocketAddress::unix_path("/tmp/x.sock"), SocketAddress::unix_path(abstract_name("n"))}) {
        const auto copy = SocketAddress::from_native(original.native(), original.size());
        EXPECT_EQ(copy, original);
        EXPECT_EQ(copy.size(), original.size());
        EXPECT_EQ(std::memcmp(copy.native(), original.native(), original.size()), 0);
        EXPECT_EQ(copy.to_string(), original.to_string());
    }

    std::array<char, sizeof(sockaddr_storage) + 8> big{};
    EXPECT_THROW(SocketAddress::from_native(reinterpret_cast<const sockaddr*>(big.data()),
                                            static_cast<socklen_t>(big.size())),
                 corio::ValueError);
}

TEST(SocketAddress, EqualityComparesFamilyHostAndPort) {
    EXPECT_EQ(SocketAddress::ip("127.0.0.1", 80), SocketAddress::ip("127.0.0.1", 80));
    EXPECT_NE(SocketAddress::ip("127.0.0.1", 80), SocketAddress::ip("127.0.0.1", 81));
    EXPECT_NE(SocketAddress::ip("127.0.0.1", 80), SocketAddress::ip("127.0.0.2", 80));
    EXPECT_NE(SocketAddress::ip("127.0.0.1", 80), SocketAddress::ip("::ffff:127.0.0.1", 80));
    EXPECT_NE(SocketAddress::ip("::1", 80), SocketAddress::ip("::1%1", 80));
    EXPECT_EQ(SocketAddress::unix_path("/a"), SocketAddress::unix_path("/a"));
    EXPECT_NE(SocketAddress::unix_path("/a"), SocketAddress::unix_path("/b"));
    EXPECT_NE(SocketAddress::unix_path("/a"), SocketAddress());
    EXPECT_FALSE(SocketAddress::ip("::1", 80) != SocketAddress::ip("::1", 80));
}

SOCK_TEST(SocketAddress, GetsocknameOfBoundUnixSocketsEqualsTheirAddress) {
    TempDir dir;
    const auto path = SocketAddress::unix_path(dir.file("bound.sock"));
    Socket s(AF_UNIX, SOCK_STREAM);
    s.bind(path);
    EXPECT_EQ(s.getsockname(), path);
    EXPECT_EQ(s.getsockname().to_string(), dir.file("bound.sock"));

    const auto abstract = SocketAddress::unix_path(abstract_name("bound"));
    Socket t(AF_UNIX, SOCK_DGRAM);
    t.bind(abstract);
    EXPECT_EQ(t.getsockname(), abstract);
    EXPECT_EQ(t.getsockname().to_string()[0], '@');
    co_return;
}

// === Socket ==================================================================================

SOCK_TEST(Socket, NewSocketsAreNonBlockingAndCloseOnExec) {
    const std::pair<int, int> kinds[] = {{AF_INET, SOCK_STREAM},
                                         {AF_INET, SOCK_DGRAM},
                                         {AF_UNIX, SOCK_STREAM},
                                         {AF_UNIX, SOCK_DGRAM}};
    for (auto [family, type] : kinds) {
        Socket s(family, type);
        EXPECT_TRUE(s);
        EXPECT_GE(s.fileno(), 0);
        EXPECT_TRUE(is_nonblocking(s.fileno())) << family << "/" << type;
        EXPECT_TRUE(is_cloexec(s.fileno())) << family << "/" << type;
    }
    co_return;
}

SOCK_TEST(Socket, AcceptedSocketsAreNonBlockingAndCloseOnExec) {
    Connection c = co_await tcp_connection();
    EXPECT_TRUE(is_nonblocking(c.server.fileno()));
    EXPECT_TRUE(is_cloexec(c.server.fileno()));
}

SOCK_TEST(Socket, DefaultConstructedIsEmpty) {
    Socket s;
    EXPECT_FALSE(s);
    EXPECT_EQ(s.fileno(), -1);
    s.close();  // a no-op
    EXPECT_EQ(s.detach(), -1);
    co_return;
}

SOCK_TEST(Socket, InvalidFamilyIsAnOSError) {
    try {
        Socket s(9999, SOCK_STREAM);
        ADD_FAILURE() << "socket(9999, ...) succeeded";
    } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), EAFNOSUPPORT) << e.what();
    }
    co_return;
}

SOCK_TEST(Socket, MoveConstructionTransfersTheDescriptorAndClosesItOnce) {
    const int before = open_fd_count();
    int fd = -1;
    {
        Socket a(AF_INET, SOCK_STREAM);
        fd = a.fileno();
        EXPECT_EQ(open_fd_count(), before + 1);
        {
            Socket b(std::move(a));
            EXPECT_EQ(b.fileno(), fd);
            EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
            EXPECT_EQ(a.fileno(), -1);
            EXPECT_EQ(open_fd_count(), before + 1);
        }
        // b closed it; the moved-from a closes nothing when it goes.
        EXPECT_FALSE(fd_is_open(fd));
        EXPECT_EQ(open_fd_count(), before);
        // The number is free again: a new descriptor may take it, and a's destructor must not
        // close that one.
        Socket reuse(AF_INET, SOCK_STREAM);
        fd = reuse.fileno();
        a = Socket();
        EXPECT_TRUE(fd_is_open(fd));
    }
    EXPECT_EQ(open_fd_count(), before);
    co_return;
}

SOCK_TEST(Socket, MoveAssignmentClosesTheTargetsDescriptor) {
    const int before = open_fd_count();
    Socket a(AF_INET, SOCK_STREAM);
    Socket b(AF_UNIX, SOCK_STREAM);
    const int fa = a.fileno();
    const int fb = b.fileno();
    b = std::move(a);
    EXPECT_EQ(b.fileno(), fa);
    EXPECT_EQ(a.fileno(), -1);  // NOLINT(bugprone-use-after-move)
    EXPECT_FALSE(fd_is_open(fb));
    EXPECT_TRUE(fd_is_open(fa));
    EXPECT_EQ(b.family(), AF_INET);
    EXPECT_EQ(open_fd_count(), before + 1);

    Socket& alias = b;
    b = std::move(alias);  // self-move keeps the descriptor
    EXPECT_EQ(b.fileno(), fa);
    EXPECT_TRUE(fd_is_open(fa));

    b = Socket();
    EXPECT_FALSE(fd_is_open(fa));
    EXPECT_EQ(open_fd_count(), before);
    co_return;
}

SOCK_TEST(Socket, AdoptMakesTheDescriptorNonBlockingAndCloseOnExec) {
    const int raw = ::socket(AF_INET, SOCK_STREAM, 0);
    CORIO_ASSERT(raw >= 0);
    EXPECT_FALSE(is_nonblocking(raw));
    EXPECT_FALSE(is_cloexec(raw));
    {
        Socket s = Socket::adopt(raw);
        EXPECT_EQ(s.fileno(), raw);
        EXPECT_TRUE(is_nonblocking(raw));
        EXPECT_TRUE(is_cloexec(raw));
        EXPECT_EQ(s.type(), SOCK_STREAM);
    }
    EXPECT_FALSE(fd_is_open(raw));  // adopted: closed by the Socket

    EXPECT_THROW(Socket::adopt(-1), corio::ValueError);
    try {
        Socket::adopt(raw);  // closed just above
        ADD_FAILURE() << "adopting a closed descriptor succeeded";
    } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), EBADF);
    }
    co_return;
}

SOCK_TEST(Socket, DetachGivesUpOwnership) {
    int fd = -1;
    {
        Socket s(AF_INET, SOCK_STREAM);
        const int expected = s.fileno();
        fd = s.detach();
        EXPECT_EQ(fd, expected);
        EXPECT_FALSE(s);
        EXPECT_EQ(s.fileno(), -1);
    }
    EXPECT_TRUE(fd_is_open(fd));  // the destructor left it alone
    ::close(fd);
    co_return;
}

SOCK_TEST(Socket, FamilyAndTypeAreReadFromTheDescriptor) {
    Socket tcp(AF_INET, SOCK_STREAM);
    EXPECT_EQ(tcp.family(), AF_INET);
    EXPECT_EQ(tcp.type(), SOCK_STREAM);  // without SOCK_NONBLOCK / SOCK_CLOEXEC
    Socket udp(AF_INET, SOCK_DGRAM);
    EXPECT_EQ(udp.family(), AF_INET);
    EXPECT_EQ(udp.type(), SOCK_DGRAM);
    Socket local(AF_UNIX, SOCK_SEQPACKET);
    EXPECT_EQ(local.family(), AF_UNIX);
    EXPECT_EQ(local.type(), SOCK_SEQPACKET);
    co_return;
}

SOCK_TEST(Socket, BindListenAndGetsockname) {
    Socket s(AF_INET, SOCK_STREAM);
    EXPECT_EQ(s.getsockopt(SOL_SOCKET, SO_ACCEPTCONN), 0);
    s.bind(SocketAddress::ip("127.0.0.1", 0));
    const auto bound = s.getsockname();
    EXPECT_EQ(bound.family(), AF_INET);
    EXPECT_EQ(bound.host(), "127.0.0.1");
    EXPECT_NE(bound.port(), 0);  // an ephemeral port was chosen
    s.listen(8);
    EXPECT_EQ(s.getsockopt(SOL_SOCKET, SO_ACCEPTCONN), 1);
    EXPECT_EQ(s.getsockname(), bound);
    try {
        (void)s.getpeername();
        ADD_FAILURE() << "a listener has a peer";
    } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), ENOTCONN);
    }
    co_return;
}

SOCK_TEST(Socket, BindToAnAddressInUseIsAPlainOSError) {
    Socket first = listening(SocketAddress::ip("127.0.0.1", 0));
    const auto taken = first.getsockname();
    Socket second(AF_INET, SOCK_STREAM);
    try {
        second.bind(taken);
        ADD_FAILURE() << "bound twice to " << taken.to_string();
    } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), EADDRINUSE);
        EXPECT_EQ(typeid(e), typeid(corio::OSError));
        EXPECT_NE(std::string(e.what()).find(taken.to_string()), std::string::npos) << e.what();
    }
    co_return;
}

SOCK_TEST(Socket, SetNodelayIsReadBackBySockopt) {
    Socket s(AF_INET, SOCK_STREAM);
    EXPECT_EQ(s.getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
    s.set_nodelay();
    EXPECT_NE(s.getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
    s.set_nodelay(false);
    EXPECT_EQ(s.getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
    s.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
    EXPECT_NE(s.getsockopt(SOL_SOCKET, SO_KEEPALIVE), 0);
    co_return;
}

SOCK_TEST(Socket, MethodsOfAClosedSocketRaiseEBADF) {
    Socket s(AF_INET, SOCK_STREAM);
    s.close();
    EXPECT_FALSE(s);
    s.close();  // closing twice is a no-op
    expect_ebadf("family", [&] { (void)s.family(); });
    expect_ebadf("type", [&] { (void)s.type(); });
    expect_ebadf("bind", [&] { s.bind(SocketAddress::ip("127.0.0.1", 0)); });
    expect_ebadf("listen", [&] { s.listen(); });
    expect_ebadf("getsockname", [&] { (void)s.getsockname(); });
    expect_ebadf("getpeername", [&] { (void)s.getpeername(); });
    expect_ebadf("setsockopt", [&] { s.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1); });
    expect_ebadf("getsockopt", [&] { (void)s.getsockopt(SOL_SOCKET, SO_TYPE); });
    expect_ebadf("set_nodelay", [&] { s.set_nodelay(); });
    expect_ebadf("shutdown", [&] { s.shutdown(SHUT_RDWR); });
    co_return;
}

SOCK_TEST(Socket, OperationsOnAClosedSocketRaiseEBADF) {
    Socket s(AF_INET, SOCK_STREAM);
    s.close();
    const auto somewhere = SocketAddress::ip("127.0.0.1", 9);
    std::array<char, 8> buffer{};
    const std::span<char> span(buffer);
    EXPECT_EQ(os_code(co_await raised_by(corio::sock_connect(s, somewhere))), EBADF);
    EXPECT_EQ(os_code(co_await raised_by(corio::sock_accept(s))), EBADF);
    EXPECT_EQ(os_code(co_await raised_by(corio::sock_recv(s, 8))), EBADF);
    EXPECT_EQ(os_code(co_await raised_by(corio::sock_sendall(s, "data"))), EBADF);
    EXPECT_EQ(os_code(co_await raised_by(corio::sock_recvfrom(s, 8))), EBADF);
    EXPECT_EQ(os_code(co_await raised_by(corio::sock_sendto(s, "data", somewhere))), EBADF);
    const auto recv_into = co_await raised_by(corio::sock_recv_into(s, span));
    EXPECT_EQ(os_code(recv_into), EBADF) << message_of(recv_into);
}

// === streams: TCP IPv4, TCP IPv6, Unix ========================================================

namespace {

// Connects to a listener bound to `where`, checks the peer address, and echoes both ways.
corio::Coro<> echo_over(SocketAddress where) {
    Socket listener = listening(where);
    Connection c = co_await connect_to(listener);
    if (where.family() == AF_UNIX) {
        // An unbound Unix client has no name.
        EXPECT_EQ(c.peer.to_string(), "");
        EXPECT_EQ(c.client.getpeername(), listener.getsockname());
    } else {
        EXPECT_EQ(c.peer, c.client.getsockname());
        EXPECT_EQ(c.server.getpeername(), c.client.getsockname());
        EXPECT_EQ(c.client.getpeername(), listener.getsockname());
        EXPECT_EQ(c.peer.host(), where.host());
    }
    const std::string request = "hello, " + where.to_string();
    co_await corio::sock_sendall(c.client, request);
    std::string got = co_await recv_exactly(c.server, request.size());
    EXPECT_EQ(got, request);
    co_await corio::sock_sendall(c.server, got);
    EXPECT_EQ(co_await recv_exactly(c.client, request.size()), request);
}

// Sends 4 MiB each way at once: neither side can finish sending before the other reads.
corio::Coro<> exchange_4mib(Connection c) {
    const std::size_t size = std::size_t{4} << 20;
    const std::string up = payload(size, 1);
    const std::string down = payload(size, 2);
    auto send_up = corio::create_task(corio::sock_sendall(c.client, up));
    auto send_down = corio::create_task(corio::sock_sendall(c.server, down));
    auto recv_up = corio::create_task(recv_exactly(c.server, size));
    auto recv_down = corio::create_task(recv_exactly(c.client, size));
    co_await send_up;
    co_await send_down;
    const std::string got_up = co_await recv_up;
    const std::string got_down = co_await recv_down;
    EXPECT_EQ(got_up.size(), size);
    EXPECT_TRUE(got_up == up) << "the client->server bytes differ";
    EXPECT_EQ(got_down.size(), size);
    EXPECT_TRUE(got_down == down) << "the server->client bytes differ";
}

}  // namespace

TEST(SockStream, EchoOverTcpIpv4) {
    corio::testing::run(echo_over(SocketAddress::ip("127.0.0.1", 0)), options());
}

TEST(SockStream, EchoOverTcpIpv6) {
    SKIP_WITHOUT_IPV6();
    corio::testing::run(echo_over(SocketAddress::ip("::1", 0)), options());
}

TEST(SockStream, EchoOverUnixPath) {
    TempDir dir;
    corio::testing::run(echo_over(SocketAddress::unix_path(dir.file("echo.sock"))), options());
}

TEST(SockStream, EchoOverAbstractUnixName) {
    corio::testing::run(echo_over(SocketAddress::unix_path(abstract_name("echo"))), options());
}

namespace {

// A Unix stream listener (backlog 0) whose backlog is full, and a socket whose connect to it
// would block. Linux refuses such a connect with EAGAIN at once (it does not wait, as TCP does).
struct FullUnixListener {
    Socket listener;
    std::vector<Socket> queued;
    SocketAddress address;
    bool full = false;

    FullUnixListener() {
        address = SocketAddress::unix_path(abstract_name("full"));
        listener = listening(address, 0);
        for (int i = 0; i < 8 && !full; ++i) {
            Socket s(AF_UNIX, SOCK_STREAM);
            if (::connect(s.fileno(), address.native(), address.size()) == 0) {
                queued.push_back(std::move(s));
            } else {
                full = errno == EAGAIN;
            }
        }
    }
};

double thread_cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_THREAD, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

SOCK_TEST(SockStream, UnixConnectToAFullBacklogCompletesOnceAConnectionIsAccepted) {
    FullUnixListener full;
    CORIO_ASSERT(full.full && !full.queued.empty());
    Socket client(AF_UNIX, SOCK_STREAM);
    auto connector = corio::create_task(corio::sock_connect(client, full.address));
    co_await let_loop_run();
    EXPECT_FALSE(connector.done());  // it waits for room, neither failing nor "succeeding"
    auto first = co_await corio::sock_accept(full.listener);
    co_await connector;
    auto second = co_await corio::sock_accept(full.listener);
    (void)first;
    co_await corio::sock_sendall(client, "through");
    EXPECT_EQ(co_await corio::sock_recv(second.first, 100), "through");
}

SOCK_TEST(SockStream, UnixConnectToAFullBacklogDoesNotBusyWait) {
    FullUnixListener full;
    CORIO_ASSERT(full.full && !full.queued.empty());
    Socket client(AF_UNIX, SOCK_STREAM);
    auto connector = corio::create_task(corio::sock_connect(client, full.address));
    // While the connect waits, the loop has nothing to do: it should sleep, not spin. (Generous:
    // a spinning loop uses all of the 200 ms it is given, an idle one next to nothing.)
    const auto wall_start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    co_await corio::sleep(200ms);
    const double cpu = thread_cpu_seconds() - cpu_start;
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    EXPECT_LT(cpu, 0.25 * wall) << "the loop used " << cpu << " s of CPU in " << wall
                                << " s while a connect waited";
    EXPECT_FALSE(connector.done());
    auto first = co_await corio::sock_accept(full.listener);
    co_await connector;
    (void)first;
}

SOCK_TEST(SockDgram, SendtoAFullUnixReceiverDoesNotBusyWait) {
    // Linux reports the sender writable while the receiver's queue is full: waiting for
    // writability alone would spin until the receiver reads.
    Socket receiver(AF_UNIX, SOCK_DGRAM);
    receiver.bind(SocketAddress::unix_path(abstract_name("full-dgram")));
    const SocketAddress to = receiver.getsockname();
    Socket sender(AF_UNIX, SOCK_DGRAM);
    auto fill = [&]() -> corio::Coro<int> {
        int sent = 0;
        for (;;) {
            co_await corio::sock_sendto(sender, "x", to);
            ++sent;
        }
    };
    auto filler = corio::create_task(fill());
    co_await corio::sleep(50ms);  // long enough to fill the queue (a few hundred datagrams)
    const auto wall_start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    co_await corio::sleep(200ms);
    const double cpu = thread_cpu_seconds() - cpu_start;
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    EXPECT_LT(cpu, 0.25 * wall) << "the loop used " << cpu << " s of CPU in " << wall
                                << " s while a sendto waited";
    CORIO_ASSERT(!filler.done());
    // Room again: the waiting sendto goes through.
    char buf[16];
    while (::recv(receiver.fileno(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    co_await corio::sleep(100ms);
    filler.cancel();
    try {
        co_await filler;
    } catch (const corio::CancelledError&) {
    }
    EXPECT_GT(::recv(receiver.fileno(), buf, sizeof buf, MSG_DONTWAIT), 0)
        << "nothing was sent once the receiver had room";
}

SOCK_TEST(SockStream, AcceptReportsABoundUnixClientsPath) {
    TempDir dir;
    Socket listener = listening(SocketAddress::unix_path(dir.file("server.sock")));
    Socket client(AF_UNIX, SOCK_STREAM);
    const auto client_address = SocketAddress::unix_path(dir.file("client.sock"));
    client.bind(client_address);
    co_await corio::sock_connect(client, listener.getsockname());
    auto [conn, peer] = co_await corio::sock_accept(listener);
    EXPECT_EQ(peer, client_address);
    EXPECT_EQ(peer.to_string(), dir.file("client.sock"));
    EXPECT_TRUE(conn);
}

SOCK_TEST(SockStream, Exchanges4MiBBothWaysAtOnceOverTcp) {
    co_await exchange_4mib(co_await tcp_connection());
}

SOCK_TEST(SockStream, Exchanges4MiBBothWaysAtOnceOverUnix) {
    TempDir dir;
    Socket listener = listening(SocketAddress::unix_path(dir.file("big.sock")));
    co_await exchange_4mib(co_await connect_to(listener));
}

TEST(SockStream, Exchanges4MiBBothWaysAtOnceOverTcpIpv6) {
    SKIP_WITHOUT_IPV6();
    auto body = []() -> corio::Coro<> {
        co_await exchange_4mib(co_await tcp_connection(AF_INET6));
    };
    corio::testing::run(body(), options());
}

SOCK_TEST(SockStream, RecvReturnsEmptyAfterHalfCloseWhileTheOtherDirectionWorks) {
    Connection c = co_await tcp_connection();
    const std::string request = "request body";
    co_await corio::sock_sendall(c.client, request);
    c.client.shutdown(SHUT_WR);
    EXPECT_EQ(co_await recv_until_eof(c.server), request);
    // End of stream stays: every later recv returns "" at once.
    EXPECT_EQ(co_await corio::sock_recv(c.server, 100), "");
    EXPECT_EQ(co_await corio::sock_recv(c.server, 100), "");
    // The server can still answer on the half-closed connection.
    const std::string response = "response body";
    co_await corio::sock_sendall(c.server, response);
    EXPECT_EQ(co_await recv_exactly(c.client, response.size()), response);
    c.server.shutdown(SHUT_WR);
    EXPECT_EQ(co_await corio::sock_recv(c.client, 100), "");
}

SOCK_TEST(SockStream, RecvWaitsForDataThenReturnsAtMostMaxBytes) {
    Connection c = socket_pair();
    auto reader = corio::create_task(corio::sock_recv(c.client, 4));
    co_await let_loop_run();
    EXPECT_FALSE(reader.done());  // nothing sent yet: it waits
    const std::string data = "abcdefgh";
    co_await corio::sock_sendall(c.server, data);
    EXPECT_EQ(co_await reader, "abcd");
    EXPECT_EQ(co_await corio::sock_recv(c.client, 100), "efgh");
}

SOCK_TEST(SockStream, RecvIntoFillsACharSpan) {
    Connection c = co_await tcp_connection();
    std::array<char, 16> buffer{};
    const std::span<char> into(buffer);
    const std::string data = "twelve bytes";
    co_await corio::sock_sendall(c.server, data);
    const std::size_t n = co_await corio::sock_recv_into(c.client, into);
    EXPECT_EQ(n, data.size());
    EXPECT_EQ(std::string(buffer.data(), n), data);
    c.server.shutdown(SHUT_WR);
    EXPECT_EQ(co_await corio::sock_recv_into(c.client, into), 0u);  // end of stream
}

SOCK_TEST(SockStream, RecvIntoFillsAByteSpanAndWaitsForData) {
    Connection c = socket_pair();
    std::vector<std::byte> buffer(4);
    const std::span<std::byte> into(buffer);
    auto reader_fn = [&]() -> corio::Coro<std::size_t> {
        co_return co_await corio::sock_recv_into(c.client, into);
    };
    auto reader = corio::create_task(reader_fn());
    co_await let_loop_run();
    EXPECT_FALSE(reader.done());
    const std::string data = "\x01\x02\x03\x04\x05\x06";
    co_await corio::sock_sendall(c.server, data);
    EXPECT_EQ(co_await reader, 4u);  // no more than the span holds
    EXPECT_EQ(buffer[0], std::byte{1});
    EXPECT_EQ(buffer[3], std::byte{4});
    EXPECT_EQ(co_await corio::sock_recv(c.client, 10), "\x05\x06");
}

SOCK_TEST(SockStream, SendallOfNothingReturnsAtOnce) {
    Connection c = socket_pair();
    co_await corio::sock_sendall(c.client, "");
    co_await corio::sock_sendall(c.client, "x");
    EXPECT_EQ(co_await corio::sock_recv(c.server, 10), "x");
}

// === errors ==================================================================================

namespace {

// A TCP address on which nothing listens: bound (so the port is not handed out) but not listening.
struct ClosedPort {
    Socket holder{AF_INET, SOCK_STREAM};
    SocketAddress address;
    ClosedPort() {
        holder.bind(SocketAddress::ip("127.0.0.1", 0));
        address = holder.getsockname();
    }
};

corio::Coro<> connect_refused(const SocketAddress& address) {
    Socket s(AF_INET, SOCK_STREAM);
    co_await corio::sock_connect(s, address);
}

}  // namespace

SOCK_TEST(SockErrors, ConnectToAClosedPortIsConnectionRefusedError) {
    ClosedPort closed;
    const auto error = co_await raised_by(connect_refused(closed.address));
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), ECONNREFUSED);
    EXPECT_TRUE(corio::holds<corio::ConnectionError>(error));
    EXPECT_TRUE(corio::holds<corio::OSError>(error));
    EXPECT_TRUE(corio::holds<corio::Error>(error));
    EXPECT_FALSE(corio::holds<corio::ConnectionResetError>(error));
    const std::string what = message_of(error);
    EXPECT_NE(
        what.find("[Errno " + std::to_string(ECONNREFUSED) + "] " + std::strerror(ECONNREFUSED)),
        std::string::npos)
        << what;
    EXPECT_NE(what.find(closed.address.to_string()), std::string::npos) << what;
    // Caught by the base classes, as Python code catches them.
    bool caught = false;
    try {
        co_await connect_refused(closed.address);
    } catch (const corio::ConnectionError& e) {
        caught = e.code() == ECONNREFUSED;
    }
    EXPECT_TRUE(caught);
}

SOCK_TEST(SockErrors, ConnectToAUnixPathWithoutListenerIsRefused) {
    TempDir dir;
    const auto path = SocketAddress::unix_path(dir.file("stale.sock"));
    {
        Socket bound(AF_UNIX, SOCK_STREAM);
        bound.bind(path);  // leaves the file behind with nobody listening
    }
    Socket client(AF_UNIX, SOCK_STREAM);
    const auto error = co_await raised_by(corio::sock_connect(client, path));
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(error)) << message_of(error);

    Socket other(AF_UNIX, SOCK_STREAM);
    const auto missing = co_await raised_by(
        corio::sock_connect(other, SocketAddress::unix_path(dir.file("missing.sock"))));
    EXPECT_EQ(os_code(missing), ENOENT) << message_of(missing);
}

namespace {

// Sends until the connection fails (the peer is gone); the error, or null after `limit` bytes.
corio::Coro<std::exception_ptr> send_until_failure(Socket& sock, std::size_t limit) {
    const std::string chunk = payload(256 * 1024, 3);
    for (std::size_t sent = 0; sent < limit; sent += chunk.size()) {
        auto error = co_await raised_by(corio::sock_sendall(sock, chunk));
        if (error) co_return error;
        co_await corio::sleep(0s);
    }
    co_return nullptr;
}

bool is_broken_pipe_or_reset(const std::exception_ptr& e) {
    return corio::holds<corio::BrokenPipeError>(e) || corio::holds<corio::ConnectionResetError>(e);
}

// The SIGPIPE disposition is the default (terminate), nothing blocks it, and none is pending.
void expect_sigpipe_untouched(const char* when) {
    struct sigaction now {};
    ::sigaction(SIGPIPE, nullptr, &now);
    EXPECT_EQ(now.sa_handler, SIG_DFL) << "SIGPIPE disposition changed " << when;
    sigset_t blocked;
    sigemptyset(&blocked);
    ::pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
    EXPECT_FALSE(sigismember(&blocked, SIGPIPE)) << "SIGPIPE blocked " << when;
    sigset_t pending;
    sigemptyset(&pending);
    ::sigpending(&pending);
    EXPECT_FALSE(sigismember(&pending, SIGPIPE)) << "SIGPIPE pending " << when;
}

// Runs `body` with SIGPIPE at its default disposition (a SIGPIPE would kill the test binary).
template <class Body>
void run_with_default_sigpipe(Body body) {
    struct sigaction saved {};
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGPIPE, &dfl, &saved);
    corio::testing::run(std::move(body), options());
    expect_sigpipe_untouched("after the loop closed");
    ::sigaction(SIGPIPE, &saved, nullptr);
}

corio::Coro<> sendall_to_closed_unix_peer() {
    expect_sigpipe_untouched("when the loop started");
    Connection c = socket_pair();
    c.server.close();
    const auto error = co_await raised_by(corio::sock_sendall(c.client, "anyone there?"));
    EXPECT_TRUE(corio::holds<corio::BrokenPipeError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), EPIPE);
    expect_sigpipe_untouched("after the broken pipe");
}

corio::Coro<> sendall_after_own_shutdown() {
    Connection c = co_await tcp_connection();
    c.client.shutdown(SHUT_WR);
    const auto error = co_await raised_by(corio::sock_sendall(c.client, "too late"));
    EXPECT_TRUE(corio::holds<corio::BrokenPipeError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), EPIPE);
    expect_sigpipe_untouched("after sending on a shut-down socket");
}

corio::Coro<> sendall_to_closed_tcp_peer() {
    Connection c = co_await tcp_connection();
    c.server.close();  // an orderly close: the next segments we send are answered with RST
    const auto error = co_await send_until_failure(c.client, std::size_t{64} << 20);
    EXPECT_TRUE(is_broken_pipe_or_reset(error)) << message_of(error);
    expect_sigpipe_untouched("after sending to a closed TCP peer");
}

corio::Coro<> sendall_to_reset_tcp_peer() {
    Connection c = co_await tcp_connection();
    arm_reset(c.server);
    c.server.close();
    const auto error = co_await send_until_failure(c.client, std::size_t{64} << 20);
    EXPECT_TRUE(is_broken_pipe_or_reset(error)) << message_of(error);
    EXPECT_TRUE(os_code(error) == EPIPE || os_code(error) == ECONNRESET) << message_of(error);
    expect_sigpipe_untouched("after sending to a reset TCP peer");
}

}  // namespace

TEST(SockErrors, SendallToAClosedUnixPeerIsBrokenPipeErrorWithoutSigpipe) {
    run_with_default_sigpipe(sendall_to_closed_unix_peer());
}

TEST(SockErrors, SendallAfterShutdownWrIsBrokenPipeErrorWithoutSigpipe) {
    run_with_default_sigpipe(sendall_after_own_shutdown());
}

TEST(SockErrors, SendallToAClosedTcpPeerFailsWithoutSigpipe) {
    run_with_default_sigpipe(sendall_to_closed_tcp_peer());
}

TEST(SockErrors, SendallToAResetTcpPeerFailsWithoutSigpipe) {
    run_with_default_sigpipe(sendall_to_reset_tcp_peer());
}

SOCK_TEST(SockErrors, RecvAfterThePeerResetIsConnectionResetError) {
    Connection c = co_await tcp_connection();
    arm_reset(c.server);
    c.server.close();
    const auto error = co_await raised_by(corio::sock_recv(c.client, 100));
    EXPECT_TRUE(corio::holds<corio::ConnectionResetError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), ECONNRESET);
}

SOCK_TEST(SockErrors, RecvWaitingWhenThePeerResetsIsConnectionResetError) {
    Connection c = co_await tcp_connection();
    auto reader = corio::create_task(corio::sock_recv(c.client, 100));
    co_await let_loop_run();
    EXPECT_FALSE(reader.done());
    arm_reset(c.server);
    c.server.close();
    const auto error = co_await raised_by(reader);
    EXPECT_TRUE(corio::holds<corio::ConnectionResetError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), ECONNRESET);
}

SOCK_TEST(SockErrors, RecvIntoAfterThePeerResetIsConnectionResetError) {
    Connection c = co_await tcp_connection();
    arm_reset(c.server);
    c.server.close();
    std::array<char, 8> buffer{};
    const std::span<char> into(buffer);
    const auto error = co_await raised_by(corio::sock_recv_into(c.client, into));
    EXPECT_TRUE(corio::holds<corio::ConnectionResetError>(error)) << message_of(error);
}

namespace {

template <class E>
void expect_maps_to(int code) {
    const std::string expected_what =
        "[Errno " + std::to_string(code) + "] " + std::strerror(code) + ": doing something";
    try {
        corio::throw_os_error(code, "doing something");
    } catch (const corio::OSError& e) {
        EXPECT_EQ(typeid(e), typeid(E)) << "errno " << code << " raised " << typeid(e).name();
        EXPECT_EQ(e.code(), code);
        EXPECT_EQ(std::string(e.what()), expected_what);
        return;
    } catch (...) {
    }
    ADD_FAILURE() << "errno " << code << " raised no OSError";
}

}  // namespace

TEST(SockErrors, ThrowOsErrorRaisesThePythonSubclassForEachErrno) {
    expect_maps_to<corio::BrokenPipeError>(EPIPE);
    expect_maps_to<corio::BrokenPipeError>(ESHUTDOWN);
    expect_maps_to<corio::ConnectionAbortedError>(ECONNABORTED);
    expect_maps_to<corio::ConnectionRefusedError>(ECONNREFUSED);
    expect_maps_to<corio::ConnectionResetError>(ECONNRESET);
    expect_maps_to<corio::TimeoutError>(ETIMEDOUT);
    expect_maps_to<corio::FileNotFoundError>(ENOENT);
    expect_maps_to<corio::PermissionError>(EACCES);
    expect_maps_to<corio::PermissionError>(EPERM);
    expect_maps_to<corio::ProcessLookupError>(ESRCH);
    expect_maps_to<corio::OSError>(EADDRINUSE);
    expect_maps_to<corio::OSError>(EBADF);
    expect_maps_to<corio::OSError>(EHOSTUNREACH);
}

TEST(SockErrors, ConnectionErrorsAndTimeoutAreOSErrors) {
    auto caught_as_connection_error = [](int code) {
        try {
            corio::throw_os_error(code, "x");
        } catch (const corio::ConnectionError& e) {
            return e.code() == code;
        } catch (...) {
        }
        return false;
    };
    EXPECT_TRUE(caught_as_connection_error(EPIPE));
    EXPECT_TRUE(caught_as_connection_error(ECONNABORTED));
    EXPECT_TRUE(caught_as_connection_error(ECONNREFUSED));
    EXPECT_TRUE(caught_as_connection_error(ECONNRESET));
    EXPECT_FALSE(caught_as_connection_error(ETIMEDOUT));
    EXPECT_FALSE(caught_as_connection_error(ENOENT));

    try {
        corio::throw_os_error(ETIMEDOUT, "connect");
    } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), ETIMEDOUT);
    }
    // The TimeoutError of a deadline is an OSError with ETIMEDOUT too.
    const corio::TimeoutError deadline;
    EXPECT_EQ(deadline.code(), ETIMEDOUT);
    // Without a description the message is just "[Errno N] text".
    const corio::OSError bare(ENOENT, "");
    EXPECT_EQ(std::string(bare.what()),
              "[Errno " + std::to_string(ENOENT) + "] " + std::strerror(ENOENT));
}

// === datagrams ===============================================================================

namespace {

corio::Coro<> datagram_exchange(SocketAddress a_where, SocketAddress b_where) {
    Socket a(a_where.family(), SOCK_DGRAM);
    Socket b(b_where.family(), SOCK_DGRAM);
    a.bind(a_where);
    b.bind(b_where);
    const std::string ping = "ping";
    EXPECT_EQ(co_await corio::sock_sendto(a, ping, b.getsockname()), ping.size());
    auto [data, from] = co_await corio::sock_recvfrom(b, 100);
    EXPECT_EQ(data, "ping");
    EXPECT_EQ(from, a.getsockname());
    const std::string pong = "pong!";
    EXPECT_EQ(co_await corio::sock_sendto(b, pong, from), pong.size());
    auto reply = co_await corio::sock_recvfrom(a, 100);
    EXPECT_EQ(reply.first, "pong!");
    EXPECT_EQ(reply.second, b.getsockname());
}

}  // namespace

TEST(SockDatagram, UdpIpv4SendtoAndRecvfromWithTheSendersAddress) {
    corio::testing::run(
        datagram_exchange(SocketAddress::ip("127.0.0.1", 0), SocketAddress::ip("127.0.0.1", 0)),
        options());
}

TEST(SockDatagram, UdpIpv6SendtoAndRecvfromWithTheSendersAddress) {
    SKIP_WITHOUT_IPV6();
    corio::testing::run(datagram_exchange(SocketAddress::ip("::1", 0), SocketAddress::ip("::1", 0)),
                        options());
}

TEST(SockDatagram, UnixDatagramsCarryTheSendersPath) {
    TempDir dir;
    corio::testing::run(datagram_exchange(SocketAddress::unix_path(dir.file("a.sock")),
                                          SocketAddress::unix_path(dir.file("b.sock"))),
                        options());
}

TEST(SockDatagram, AbstractUnixDatagramsCarryTheSendersName) {
    corio::testing::run(datagram_exchange(SocketAddress::unix_path(abstract_name("dga")),
                                          SocketAddress::unix_path(abstract_name("dgb"))),
                        options());
}

SOCK_TEST(SockDatagram, RecvfromWaitsForADatagram) {
    Socket a(AF_INET, SOCK_DGRAM);
    Socket b(AF_INET, SOCK_DGRAM);
    a.bind(SocketAddress::ip("127.0.0.1", 0));
    b.bind(SocketAddress::ip("127.0.0.1", 0));
    auto receiver = corio::create_task(corio::sock_recvfrom(b, 100));
    co_await let_loop_run();
    EXPECT_FALSE(receiver.done());
    co_await corio::sock_sendto(a, "late", b.getsockname());
    auto [data, from] = co_await receiver;
    EXPECT_EQ(data, "late");
    EXPECT_EQ(from, a.getsockname());
}

SOCK_TEST(SockDatagram, RecvfromTruncatesADatagramLongerThanMaxBytes) {
    Socket a(AF_INET, SOCK_DGRAM);
    Socket b(AF_INET, SOCK_DGRAM);
    a.bind(SocketAddress::ip("127.0.0.1", 0));
    b.bind(SocketAddress::ip("127.0.0.1", 0));
    const std::string big = payload(100, 9);
    EXPECT_EQ(co_await corio::sock_sendto(a, big, b.getsockname()), 100u);
    co_await corio::sock_sendto(a, "next", b.getsockname());
    auto first = co_await corio::sock_recvfrom(b, 10);
    EXPECT_EQ(first.first, big.substr(0, 10));  // the rest of that datagram is discarded
    auto second = co_await corio::sock_recvfrom(b, 10);
    EXPECT_EQ(second.first, "next");
}

SOCK_TEST(SockDatagram, AnEmptyDatagramIsReceivedAsEmpty) {
    Socket a(AF_INET, SOCK_DGRAM);
    Socket b(AF_INET, SOCK_DGRAM);
    a.bind(SocketAddress::ip("127.0.0.1", 0));
    b.bind(SocketAddress::ip("127.0.0.1", 0));
    EXPECT_EQ(co_await corio::sock_sendto(a, "", b.getsockname()), 0u);
    auto [data, from] = co_await corio::sock_recvfrom(b, 10);
    EXPECT_EQ(data, "");
    EXPECT_EQ(from, a.getsockname());
}

SOCK_TEST(SockDatagram, SendtoAnUnboundUnixPathIsAnOSError) {
    TempDir dir;
    Socket a(AF_UNIX, SOCK_DGRAM);
    const auto error = co_await raised_by(
        corio::sock_sendto(a, "x", SocketAddress::unix_path(dir.file("nobody.sock"))));
    EXPECT_EQ(os_code(error), ENOENT) << message_of(error);
}

// === cancellation ============================================================================

SOCK_TEST(SockCancel, CancelledRecvRaisesCancelledErrorAndTheSocketStaysUsable) {
    Connection c = co_await tcp_connection();
    auto reader = corio::create_task(corio::sock_recv(c.client, 100));
    co_await let_loop_run();
    CORIO_ASSERT(!reader.done());
    reader.cancel();
    const auto error = co_await raised_by(reader);
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
    EXPECT_TRUE(reader.cancelled());
    // The withdrawn recv took nothing: what is sent now goes to the next recv.
    const std::string data = "after the cancellation";
    co_await corio::sock_sendall(c.server, data);
    EXPECT_EQ(co_await recv_exactly(c.client, data.size()), data);
}

SOCK_TEST(SockCancel, WaitForOnRecvTimesOutAndDataIsStillReadableAfter) {
    Connection c = socket_pair();
    const auto error = co_await raised_by(corio::wait_for(corio::sock_recv(c.client, 100), 20ms));
    EXPECT_TRUE(corio::holds<corio::TimeoutError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), ETIMEDOUT);
    const std::string data = "late data";
    co_await corio::sock_sendall(c.server, data);
    EXPECT_EQ(co_await corio::sock_recv(c.client, 100), data);
}

SOCK_TEST(SockCancel, CancellingARecvWhileDataIsInFlightLeavesItForTheNextRecv) {
    Connection c = socket_pair();
    auto reader = corio::create_task(corio::sock_recv(c.client, 100));
    co_await let_loop_run();
    CORIO_ASSERT(!reader.done());
    // The data is in the socket, but the loop has not polled since: the recv is still pending
    // when it is cancelled, so it is withdrawn and the bytes stay in the socket.
    const std::string data = "in flight";
    CORIO_ASSERT(::send(c.server.fileno(), data.data(), data.size(), MSG_NOSIGNAL) ==
                 static_cast<ssize_t>(data.size()));
    reader.cancel();
    const auto error = co_await raised_by(reader);
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
    EXPECT_EQ(co_await corio::sock_recv(c.client, 100), data);
}

namespace {

// A task that receives, then suspends once more: where a late cancellation must surface.
struct LateCancelProbe {
    bool returned = false;
    bool cancelled_at_next_suspension = false;
    std::string got;
};

corio::Coro<> recv_then_yield(Socket& sock, LateCancelProbe& probe) {
    probe.got = co_await corio::sock_recv(sock, 100);
    probe.returned = true;
    try {
        co_await corio::sleep(0s);
    } catch (const corio::CancelledError&) {
        probe.cancelled_at_next_suspension = true;
        throw;
    }
}

corio::Coro<> recv_into_then_yield(Socket& sock, std::span<char> into, LateCancelProbe& probe) {
    const std::size_t n = co_await corio::sock_recv_into(sock, into);
    probe.got.assign(into.data(), n);
    probe.returned = true;
    try {
        co_await corio::sleep(0s);
    } catch (const corio::CancelledError&) {
        probe.cancelled_at_next_suspension = true;
        throw;
    }
}

// Cancels `task` in the same loop pass in which its receive on `sock` completes, before the task
// runs: a reader watch on the same descriptor, registered before the receive, is run first. The
// watch checks that the receive had completed (the socket is empty again) and the task had not
// run yet; then the data must reach the task and the cancellation come at its next suspension.
corio::Coro<> cancel_after_completion(Connection& c, corio::Task<> task, LateCancelProbe& probe) {
    corio::EventLoop& loop = corio::get_running_loop();
    const int fd = c.client.fileno();
    co_await let_loop_run();
    CORIO_ASSERT(!task.done());
    const std::string data = "must not be lost";
    co_await corio::sock_sendall(c.server, data);
    const auto error = co_await raised_by(task);
    loop.remove_reader(fd);  // if the watch never ran
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
    EXPECT_TRUE(probe.returned);
    EXPECT_EQ(probe.got, data);
    EXPECT_TRUE(probe.cancelled_at_next_suspension);
    // Nothing was left behind in the socket either.
    c.server.shutdown(SHUT_WR);
    EXPECT_EQ(co_await corio::sock_recv(c.client, 100), "");
}

struct WatchReport {
    bool ran = false;
    bool task_had_run = false;
    bool socket_still_had_data = false;
};

template <class Task>
void arm_cancel_watch(Socket& sock, Task& task, LateCancelProbe& probe, WatchReport& report) {
    corio::EventLoop& loop = corio::get_running_loop();
    const int fd = sock.fileno();
    loop.add_reader(fd, [&loop, fd, &task, &probe, &report] {
        report.ran = true;
        report.task_had_run = probe.returned;
        char byte = 0;
        report.socket_still_had_data = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
        task.cancel();
        loop.remove_reader(fd);
    });
}

}  // namespace

SOCK_TEST(SockCancel, RecvThatCompletedBeforeTheCancellationReturnsItsData) {
    Connection c = socket_pair();
    LateCancelProbe probe;
    WatchReport report;
    corio::Task<> task;
    arm_cancel_watch(c.client, task, probe, report);  // before the recv: it runs first
    task = corio::create_task(recv_then_yield(c.client, probe));
    co_await cancel_after_completion(c, task, probe);
    EXPECT_TRUE(report.ran);
    EXPECT_FALSE(report.task_had_run) << "setup: the task ran before the cancellation";
    EXPECT_FALSE(report.socket_still_had_data) << "setup: the recv had not completed";
}

SOCK_TEST(SockCancel, RecvIntoThatCompletedBeforeTheCancellationReturnsItsData) {
    Connection c = socket_pair();
    LateCancelProbe probe;
    WatchReport report;
    std::array<char, 100> buffer{};
    const std::span<char> into(buffer);
    corio::Task<> task;
    arm_cancel_watch(c.client, task, probe, report);
    task = corio::create_task(recv_into_then_yield(c.client, into, probe));
    co_await cancel_after_completion(c, task, probe);
    EXPECT_TRUE(report.ran);
    EXPECT_FALSE(report.task_had_run) << "setup: the task ran before the cancellation";
    EXPECT_FALSE(report.socket_still_had_data) << "setup: the recv had not completed";
}

SOCK_TEST(SockCancel, CancelledAcceptLeavesTheListenerUsable) {
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    auto acceptor = corio::create_task(corio::sock_accept(listener));
    co_await let_loop_run();
    CORIO_ASSERT(!acceptor.done());
    acceptor.cancel();
    const auto error = co_await raised_by(acceptor);
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
    Connection c = co_await connect_to(listener);
    EXPECT_EQ(c.peer, c.client.getsockname());
    const std::string data = "still listening";
    co_await corio::sock_sendall(c.client, data);
    EXPECT_EQ(co_await recv_exactly(c.server, data.size()), data);
}

namespace {

// Fills a TCP listener's accept queue (backlog 0) until a connect stays pending, then cancels a
// pending connect. Linux drops the SYNs of a full accept queue, so the handshake cannot finish.
corio::Coro<> cancel_pending_connect(bool& skipped) {
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0), 0);
    const auto address = listener.getsockname();
    std::vector<Socket> queued;
    bool full = false;
    for (int i = 0; i < 8 && !full; ++i) {
        Socket s(AF_INET, SOCK_STREAM);
        const auto error =
            co_await raised_by(corio::wait_for(corio::sock_connect(s, address), 100ms));
        if (corio::holds<corio::TimeoutError>(error)) {
            full = true;  // wait_for cancelled that connect: the queue is full
        } else {
            EXPECT_FALSE(error) << message_of(error);
            queued.push_back(std::move(s));
        }
    }
    if (!full || queued.empty()) {
        skipped = true;
        co_return;
    }
    Socket pending(AF_INET, SOCK_STREAM);
    auto connector = corio::create_task(corio::sock_connect(pending, address));
    co_await let_loop_run();
    EXPECT_FALSE(connector.done());
    connector.cancel();
    const auto error = co_await raised_by(connector);
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
    try {
        (void)pending.getpeername();
        ADD_FAILURE() << "the cancelled connect got through";
    } catch (const corio::OSError& e) {
        EXPECT_EQ(e.code(), ENOTCONN);
    }
    // The listener is fine: the connections that got in are accepted, in order.
    auto accepted = co_await corio::sock_accept(listener);
    EXPECT_EQ(accepted.second, queued.front().getsockname());
}

}  // namespace

TEST(SockCancel, CancelledConnectRaisesCancelledError) {
    bool skipped = false;
    corio::testing::run(cancel_pending_connect(skipped), options());
    if (skipped) GTEST_SKIP() << "the kernel completed every connect to a full accept queue";
}

SOCK_TEST(SockCancel, CancelledSendallRaisesCancelledError) {
    Connection c = socket_pair();
    const std::string big = payload(std::size_t{16} << 20, 4);  // more than the socket buffers
    auto sender = corio::create_task(corio::sock_sendall(c.client, big));
    co_await let_loop_run();
    CORIO_ASSERT(!sender.done());  // blocked: nobody reads
    sender.cancel();
    const auto error = co_await raised_by(sender);
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
}

// === closing a socket under a waiting task ====================================================

SOCK_TEST(SockClose, ClosingASocketFailsAWaitingRecvWithEBADF) {
    Connection c = socket_pair();
    auto reader = corio::create_task(corio::sock_recv(c.client, 100));
    co_await let_loop_run();
    CORIO_ASSERT(!reader.done());
    c.client.close();
    const auto error = co_await raised_by(reader);
    EXPECT_EQ(os_code(error), EBADF) << message_of(error);
}

SOCK_TEST(SockClose, ClosingASocketFailsAWaitingRecvIntoWithEBADF) {
    Connection c = socket_pair();
    std::array<char, 8> buffer{};
    const std::span<char> into(buffer);
    auto reader_fn = [&]() -> corio::Coro<std::size_t> {
        co_return co_await corio::sock_recv_into(c.client, into);
    };
    auto reader = corio::create_task(reader_fn());
    co_await let_loop_run();
    CORIO_ASSERT(!reader.done());
    c.client.close();
    const auto error = co_await raised_by(reader);
    EXPECT_EQ(os_code(error), EBADF) << message_of(error);
}

SOCK_TEST(SockClose, ClosingAListenerFailsAWaitingAcceptWithEBADF) {
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    auto acceptor = corio::create_task(corio::sock_accept(listener));
    co_await let_loop_run();
    CORIO_ASSERT(!acceptor.done());
    listener.close();
    const auto error = co_await raised_by(acceptor);
    EXPECT_EQ(os_code(error), EBADF) << message_of(error);
}

SOCK_TEST(SockClose, ClosingASocketFailsAWaitingRecvfromAndSendallWithEBADF) {
    Socket udp(AF_INET, SOCK_DGRAM);
    udp.bind(SocketAddress::ip("127.0.0.1", 0));
    auto receiver = corio::create_task(corio::sock_recvfrom(udp, 100));

    Connection c = socket_pair();
    const std::string big = payload(std::size_t{16} << 20, 5);
    auto sender = corio::create_task(corio::sock_sendall(c.client, big));
    co_await let_loop_run();
    CORIO_ASSERT(!receiver.done());
    CORIO_ASSERT(!sender.done());
    udp.close();
    c.client.close();
    const auto recv_error = co_await raised_by(receiver);
    EXPECT_EQ(os_code(recv_error), EBADF) << message_of(recv_error);
    const auto send_error = co_await raised_by(sender);
    EXPECT_EQ(os_code(send_error), EBADF) << message_of(send_error);
}

SOCK_TEST(SockClose, AReaderOfAnotherSocketIsNotDisturbedByAClose) {
    Connection first = socket_pair();
    Connection second = socket_pair();
    auto reader = corio::create_task(corio::sock_recv(second.client, 100));
    co_await let_loop_run();
    first.client.close();
    co_await let_loop_run();
    EXPECT_FALSE(reader.done());
    co_await corio::sock_sendall(second.server, "fine");
    EXPECT_EQ(co_await reader, "fine");
}

// === names ===================================================================================

SOCK_TEST(SockNames, GetaddrinfoLocalhostYieldsLoopbackWithThePort) {
    const auto results = co_await corio::getaddrinfo("localhost", "80", AF_UNSPEC, SOCK_STREAM);
    CORIO_ASSERT(!results.empty());
    for (const auto& r : results) {
        EXPECT_TRUE(r.address.host() == "127.0.0.1" || r.address.host() == "::1")
            << r.address.to_string();
        EXPECT_EQ(r.address.port(), 80);
        EXPECT_EQ(r.family, r.address.family());
        EXPECT_EQ(r.type, SOCK_STREAM);
        EXPECT_EQ(r.protocol, IPPROTO_TCP);
    }
    const auto v4 = co_await corio::getaddrinfo("localhost", "80", AF_INET, SOCK_STREAM);
    CORIO_ASSERT(!v4.empty());
    for (const auto& r : v4) EXPECT_EQ(r.address, SocketAddress::ip("127.0.0.1", 80));
}

SOCK_TEST(SockNames, GetaddrinfoResolvesServiceNamesAndNumbers) {
    const auto http = co_await corio::getaddrinfo("127.0.0.1", "http", AF_INET, SOCK_STREAM);
    CORIO_ASSERT(!http.empty());
    EXPECT_EQ(http[0].address.port(), 80);
    const auto https = co_await corio::getaddrinfo("127.0.0.1", "https", AF_INET, SOCK_STREAM);
    CORIO_ASSERT(!https.empty());
    EXPECT_EQ(https[0].address.port(), 443);
    const auto numeric = co_await corio::getaddrinfo("127.0.0.1", "8080", AF_INET, SOCK_STREAM);
    CORIO_ASSERT(numeric.size() == 1);
    EXPECT_EQ(numeric[0].address, SocketAddress::ip("127.0.0.1", 8080));
    // No service: port 0.
    const auto none = co_await corio::getaddrinfo("::1", "", AF_INET6, SOCK_DGRAM);
    CORIO_ASSERT(!none.empty());
    EXPECT_EQ(none[0].address, SocketAddress::ip("::1", 0));
    EXPECT_EQ(none[0].protocol, IPPROTO_UDP);
}

SOCK_TEST(SockNames, GetaddrinfoNumericHostAndCanonicalName) {
    const auto r = co_await corio::getaddrinfo("127.0.0.1", "22", AF_UNSPEC, SOCK_STREAM, 0,
                                               AI_NUMERICHOST | AI_CANONNAME);
    CORIO_ASSERT(r.size() == 1);
    EXPECT_EQ(r[0].address, SocketAddress::ip("127.0.0.1", 22));
    EXPECT_EQ(r[0].canonical_name, "127.0.0.1");
    // A name is refused with AI_NUMERICHOST, without asking any resolver.
    const auto error = co_await raised_by(
        corio::getaddrinfo("localhost", "22", AF_UNSPEC, SOCK_STREAM, 0, AI_NUMERICHOST));
    EXPECT_TRUE(corio::holds<corio::GaiError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), EAI_NONAME);
}

SOCK_TEST(SockNames, GetaddrinfoFailuresAreGaiErrorsAndOSErrors) {
    const auto no_name = co_await raised_by(
        corio::getaddrinfo("not a host name", "80", AF_UNSPEC, 0, 0, AI_NUMERICHOST));
    EXPECT_TRUE(corio::holds<corio::GaiError>(no_name)) << message_of(no_name);
    EXPECT_TRUE(corio::holds<corio::OSError>(no_name));
    EXPECT_EQ(os_code(no_name), EAI_NONAME);
    const std::string what = message_of(no_name);
    EXPECT_NE(what.find("[Errno " + std::to_string(EAI_NONAME) + "] " + ::gai_strerror(EAI_NONAME)),
              std::string::npos)
        << what;
    // Neither host nor service.
    EXPECT_EQ(os_code(co_await raised_by(corio::getaddrinfo("", ""))), EAI_NONAME);
    // An unknown service name.
    const auto no_service = co_await raised_by(
        corio::getaddrinfo("127.0.0.1", "no-such-service-corio", AF_INET, SOCK_STREAM));
    EXPECT_TRUE(corio::holds<corio::GaiError>(no_service)) << message_of(no_service);
    EXPECT_EQ(os_code(no_service), EAI_SERVICE);
    // Caught as an OSError in a try block.
    bool caught = false;
    try {
        (void)co_await corio::getaddrinfo("127.0.0.1", "x", 12345);
    } catch (const corio::OSError& e) {
        caught = e.code() == EAI_FAMILY;
    }
    EXPECT_TRUE(caught);
}

SOCK_TEST(SockNames, GetaddrinfoResultConnects) {
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    const auto port = std::to_string(listener.getsockname().port());
    const auto results = co_await corio::getaddrinfo("127.0.0.1", port, AF_INET, SOCK_STREAM);
    CORIO_ASSERT(!results.empty());
    Socket client(results[0].family, results[0].type, results[0].protocol);
    co_await corio::sock_connect(client, results[0].address);
    auto [conn, peer] = co_await corio::sock_accept(listener);
    EXPECT_EQ(peer, client.getsockname());
}

SOCK_TEST(SockNames, GetnameinfoNumeric) {
    const auto v4 = co_await corio::getnameinfo(SocketAddress::ip("127.0.0.1", 80),
                                                NI_NUMERICHOST | NI_NUMERICSERV);
    EXPECT_EQ(v4.first, "127.0.0.1");
    EXPECT_EQ(v4.second, "80");
    const auto named_service =
        co_await corio::getnameinfo(SocketAddress::ip("127.0.0.1", 80), NI_NUMERICHOST);
    EXPECT_EQ(named_service.second, "http");
    const auto v6 =
        co_await corio::getnameinfo(SocketAddress::ip("::1", 443), NI_NUMERICHOST | NI_NUMERICSERV);
    EXPECT_EQ(v6.first, "::1");
    EXPECT_EQ(v6.second, "443");
    const auto error = co_await raised_by(corio::getnameinfo(SocketAddress(), NI_NUMERICHOST));
    EXPECT_TRUE(corio::holds<corio::GaiError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), EAI_FAMILY);
}

// === many connections ========================================================================

namespace {

struct ServerStats {
    int expected = 0;
    int active = 0;
    int max_active = 0;
    corio::Event all_active;  // every connection has its handler running
    std::set<std::thread::id> threads;
};

corio::Coro<> echo_handler(Socket conn, ServerStats& stats) {
    stats.threads.insert(std::this_thread::get_id());
    ++stats.active;
    stats.max_active = std::max(stats.max_active, stats.active);
    if (stats.active == stats.expected) stats.all_active.set();
    const std::string message = co_await recv_until_eof(conn);
    co_await corio::sock_sendall(conn, message);
    --stats.active;
}

corio::Coro<> serve(Socket& listener, ServerStats& stats) {
    std::vector<corio::Task<>> handlers;
    for (int i = 0; i < stats.expected; ++i) {
        auto accepted = co_await corio::sock_accept(listener);
        handlers.push_back(corio::create_task(echo_handler(std::move(accepted.first), stats)));
    }
    for (auto& h : handlers) co_await h;
}

corio::Coro<bool> echo_client(SocketAddress server, int id, ServerStats& stats,
                              std::set<std::thread::id>& threads) {
    threads.insert(std::this_thread::get_id());
    Socket s(AF_INET, SOCK_STREAM);
    co_await corio::sock_connect(s, server);
    co_await stats.all_active.wait();  // all the connections are open and served at once
    const std::string message = "client " + std::to_string(id) + " says " + payload(64, id);
    co_await corio::sock_sendall(s, message);
    s.shutdown(SHUT_WR);
    co_return co_await recv_until_eof(s) == message;
}

}  // namespace

SOCK_TEST(SockMany, ServesTwoHundredConcurrentClientsOnOneThread) {
    constexpr int kClients = 200;
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    const auto address = listener.getsockname();
    ServerStats stats;
    stats.expected = kClients;
    std::set<std::thread::id> client_threads;
    auto server = corio::create_task(serve(listener, stats));
    std::vector<corio::Task<bool>> clients;
    for (int i = 0; i < kClients; ++i)
        clients.push_back(corio::create_task(echo_client(address, i, stats, client_threads)));
    int echoed = 0;
    for (auto& client : clients) echoed += (co_await client) ? 1 : 0;
    co_await server;
    EXPECT_EQ(echoed, kClients);
    EXPECT_EQ(stats.max_active, kClients);
    EXPECT_EQ(stats.active, 0);
    EXPECT_EQ(stats.threads, std::set<std::thread::id>{std::this_thread::get_id()});
    EXPECT_EQ(client_threads, std::set<std::thread::id>{std::this_thread::get_id()});
}

// === create_connection =======================================================================

namespace {

// Real I/O on the virtual clock: before it jumps to the next timer, the loop waits this long (in
// real time) for I/O. Loopback I/O arrives within microseconds, so this is generous; it is also
// what each jump over a connect that hangs costs in real time.
#define HE_TEST(suite, name)                                                            \
    CORIO_TEST_WITH(suite, name,                                                        \
                    {.virtual_clock = corio::VirtualClock{.autojump_threshold = 500ms}, \
                     .timeout = kBodyTimeout})

corio::testing::Options he_options() {
    return corio::testing::Options{
        .virtual_clock = corio::VirtualClock{.autojump_threshold = 500ms}, .timeout = kBodyTimeout};
}

corio::TimePoint now() {
    return corio::get_running_loop().time();
}

// The accept queue of a listening TCP socket: the connections waiting in it and its limit (for a
// listener, TCP_INFO's tcpi_unacked and tcpi_sacked).
std::pair<unsigned, unsigned> accept_queue(const Socket& listener) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(listener.fileno(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        throw std::runtime_error("TCP_INFO failed");
    return {info.tcpi_unacked, info.tcpi_sacked};
}

// A loopback TCP listener (backlog 0) whose accept queue is full: one connection waits in it and
// is never accepted. Linux drops the SYN of any further connect while the queue is full, so a
// connect to it neither completes nor fails: it hangs (the SYN is retried for minutes).
struct HangingListener {
    Socket listener;
    Socket queued;
    SocketAddress address;
    bool full = false;

    explicit HangingListener(int family = AF_INET) {
        listener = listening(loopback(family), 0);
        address = listener.getsockname();
        queued = Socket(family, SOCK_STREAM);
        (void)::connect(queued.fileno(), address.native(), address.size());  // EINPROGRESS
        // Blocks (there is nothing else to run yet) until the connection sits in the queue.
        for (int i = 0; i < 5000 && accept_queue(listener).first < 1; ++i)
            std::this_thread::sleep_for(1ms);
        full = accept_queue(listener).first == 1;
    }
};

bool has_nodelay(const Socket& s) {
    return s.getsockopt(IPPROTO_TCP, TCP_NODELAY) != 0;
}

template <class E>
std::optional<E> caught(const std::exception_ptr& e) {
    try {
        if (e) std::rethrow_exception(e);
    } catch (const E& x) {
        return x;
    } catch (...) {
    }
    return std::nullopt;
}

corio::ConnectOptions happy_eyeballs(std::chrono::duration<double> delay = 250ms) {
    corio::ConnectOptions o;
    o.happy_eyeballs_delay = delay;
    return o;
}

}  // namespace

HE_TEST(CreateConnection, HappyEyeballsConnectsToTheSecondAddressOneDelayAfterAFirstThatHangs) {
    HangingListener hanging;
    CORIO_ASSERT(hanging.full);
    Socket good = listening(SocketAddress::ip("127.0.0.1", 0));
    const int fds_before = open_fd_count();
    const corio::TimePoint t0 = now();
    const std::vector<SocketAddress> addresses = {hanging.address, good.getsockname()};
    Socket sock = co_await corio::create_connection(addresses, happy_eyeballs(250ms));
    // The second attempt started 250 ms in (not before: the first did not fail) and connected
    // at once; the first was cancelled and its socket closed: only `sock` is new.
    EXPECT_EQ(now() - t0, corio::Duration(250ms));
    EXPECT_EQ(open_fd_count(), fds_before + 1);
    EXPECT_EQ(sock.getpeername(), good.getsockname());
    EXPECT_TRUE(has_nodelay(sock));
    auto [conn, peer] = co_await corio::sock_accept(good);
    EXPECT_EQ(peer, sock.getsockname());
    EXPECT_EQ(accept_queue(hanging.listener).first, 1u);  // still just the one that filled it
    co_await corio::sock_sendall(sock, "through");
    EXPECT_EQ(co_await corio::sock_recv(conn, 100), "through");
}

HE_TEST(CreateConnection, WithoutHappyEyeballsAFirstAddressThatHangsHoldsUpTheNext) {
    HangingListener hanging;
    CORIO_ASSERT(hanging.full);
    Socket good = listening(SocketAddress::ip("127.0.0.1", 0));
    const int fds_before = open_fd_count();
    const corio::TimePoint t0 = now();
    const std::vector<SocketAddress> addresses = {hanging.address, good.getsockname()};
    const auto error = co_await raised_by(corio::wait_for(corio::create_connection(addresses), 2s));
    EXPECT_TRUE(corio::holds<corio::TimeoutError>(error)) << message_of(error);
    EXPECT_EQ(now() - t0, corio::Duration(2s));
    EXPECT_EQ(accept_queue(good).first, 0u);  // the second address was never tried
    EXPECT_EQ(open_fd_count(), fds_before);
}

HE_TEST(CreateConnection, ARefusedFirstAddressFallsThroughToTheNextAtOnce) {
    ClosedPort refused;
    Socket good = listening(SocketAddress::ip("127.0.0.1", 0));
    const std::vector<SocketAddress> addresses = {refused.address, good.getsockname()};
    std::vector<corio::ConnectOptions> ways(2);
    ways[1] = happy_eyeballs(250ms);  // a failure starts the next attempt without the delay
    for (const corio::ConnectOptions& options : ways) {
        const corio::TimePoint t0 = now();
        Socket sock = co_await corio::create_connection(addresses, options);
        EXPECT_EQ(now() - t0, corio::Duration(0ms));
        EXPECT_EQ(sock.getpeername(), good.getsockname());
        auto accepted = co_await corio::sock_accept(good);
        EXPECT_EQ(accepted.second, sock.getsockname());
    }
}

namespace {

corio::Coro<> interleaving_changes_the_order() {
    HangingListener hanging6(AF_INET6);
    CORIO_ASSERT(hanging6.full);
    Socket good = listening(SocketAddress::ip("127.0.0.1", 0));
    const std::vector<SocketAddress> addresses = {hanging6.address, hanging6.address,
                                                  good.getsockname()};
    // Interleaved (the default with a delay), the IPv4 address comes second: 250 ms.
    corio::TimePoint t0 = now();
    Socket first = co_await corio::create_connection(addresses, happy_eyeballs(250ms));
    EXPECT_EQ(now() - t0, corio::Duration(250ms));
    // In the order given, it comes third: 500 ms.
    corio::ConnectOptions in_order = happy_eyeballs(250ms);
    in_order.interleave = 0;
    t0 = now();
    Socket second = co_await corio::create_connection(addresses, in_order);
    EXPECT_EQ(now() - t0, corio::Duration(500ms));
    EXPECT_EQ(second.getpeername(), good.getsockname());
}

}  // namespace

TEST(CreateConnection, HappyEyeballsInterleavesFamiliesUnlessToldNotTo) {
    SKIP_WITHOUT_IPV6();
    corio::testing::run(interleaving_changes_the_order(), he_options());
}

SOCK_TEST(CreateConnection, EveryAddressRefusedRaisesOneConnectionRefusedError) {
    ClosedPort a;
    ClosedPort b;
    const std::vector<SocketAddress> addresses = {a.address, b.address};
    const int fds_before = open_fd_count();
    std::vector<corio::ConnectOptions> ways(2);
    ways[1] = happy_eyeballs(250ms);
    for (const corio::ConnectOptions& options : ways) {
        const auto error = co_await raised_by(corio::create_connection(addresses, options));
        // Failures alike collapse into the first one rather than a list (asyncio compares their
        // text, which names the address, so it would list them).
        EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(error)) << message_of(error);
        EXPECT_FALSE(corio::holds<corio::MultipleConnectErrors>(error));
        EXPECT_EQ(os_code(error), ECONNREFUSED);
        EXPECT_NE(message_of(error).find(a.address.to_string()), std::string::npos)
            << message_of(error);
        EXPECT_EQ(open_fd_count(), fds_before);
    }
}

SOCK_TEST(CreateConnection, DifferentFailuresRaiseAnOSErrorListingEveryAttempt) {
    ClosedPort refused;
    TempDir dir;
    const SocketAddress missing = SocketAddress::unix_path(dir.file("missing.sock"));
    const std::vector<SocketAddress> addresses = {refused.address, missing};
    const auto error = co_await raised_by(corio::create_connection(addresses));
    const auto multiple = caught<corio::MultipleConnectErrors>(error);
    CORIO_ASSERT(multiple.has_value());
    EXPECT_TRUE(corio::holds<corio::OSError>(error));
    EXPECT_FALSE(corio::holds<corio::ConnectionError>(error));
    EXPECT_EQ(multiple->code(), 0);
    const std::string what = multiple->what();
    const std::string expected = "Multiple exceptions: [Errno " + std::to_string(ECONNREFUSED) +
                                 "] " + std::strerror(ECONNREFUSED) + ": connect to " +
                                 refused.address.to_string() + ", [Errno " +
                                 std::to_string(ENOENT) + "] " + std::strerror(ENOENT) +
                                 ": connect to " + missing.to_string();
    EXPECT_EQ(what, expected);
    CORIO_ASSERT(multiple->exceptions().size() == 2u);
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(multiple->exceptions()[0]));
    EXPECT_EQ(os_code(multiple->exceptions()[1]), ENOENT);
}

HE_TEST(CreateConnection, CancellingTheCallerMidRaceLeavesNoSocketOpen) {
    HangingListener hanging;
    CORIO_ASSERT(hanging.full);
    const int fds_before = open_fd_count();
    const std::vector<SocketAddress> addresses = {hanging.address, hanging.address,
                                                  hanging.address};
    auto connector =
        corio::create_task(corio::create_connection(addresses, happy_eyeballs(250ms)), "connector");
    co_await corio::sleep(300ms);
    EXPECT_EQ(open_fd_count(), fds_before + 2);  // two attempts under way
    connector.cancel();
    const auto error = co_await raised_by(connector);
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
    EXPECT_EQ(open_fd_count(), fds_before);
}

SOCK_TEST(CreateConnection, ANumericHostConnectsWithTcpNodelay) {
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    Socket sock = co_await corio::create_connection("127.0.0.1", listener.getsockname().port());
    EXPECT_EQ(sock.getpeername(), listener.getsockname());
    EXPECT_TRUE(has_nodelay(sock));
    EXPECT_TRUE(is_nonblocking(sock.fileno()));
    EXPECT_TRUE(is_cloexec(sock.fileno()));
}

SOCK_TEST(CreateConnection, AHostNameIsResolvedAndFamilyFiltersItsAddresses) {
    // Only 127.0.0.1 listens: if "localhost" also gives ::1, that attempt is refused.
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    const std::uint16_t port = listener.getsockname().port();
    Socket any = co_await corio::create_connection("localhost", port);
    EXPECT_EQ(any.getpeername(), listener.getsockname());
    corio::ConnectOptions v4;
    v4.family = AF_INET;
    Socket only4 = co_await corio::create_connection("localhost", port, v4);
    EXPECT_EQ(only4.getpeername(), listener.getsockname());
    // A numeric host of another family fails as getaddrinfo would, without asking it.
    corio::ConnectOptions v6;
    v6.family = AF_INET6;
    const auto error = co_await raised_by(corio::create_connection("127.0.0.1", port, v6));
    EXPECT_TRUE(corio::holds<corio::GaiError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), EAI_ADDRFAMILY);
}

SOCK_TEST(CreateConnection, LocalAddrBindsTheSocketAndSkipsAddressesOfAnotherFamily) {
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    corio::ConnectOptions from;
    from.local_addr = SocketAddress::ip("127.0.0.2", 0);  // the whole of 127/8 is local
    // The IPv6 address cannot be reached from an IPv4 address: its attempt fails at once.
    const std::vector<SocketAddress> addresses = {SocketAddress::ip("::1", 1),
                                                  listener.getsockname()};
    Socket sock = co_await corio::create_connection(addresses, from);
    auto [conn, peer] = co_await corio::sock_accept(listener);
    EXPECT_EQ(peer.host(), "127.0.0.2");
    EXPECT_EQ(peer, sock.getsockname());

    const std::vector<SocketAddress> only6 = {SocketAddress::ip("::1", 1)};
    const auto error = co_await raised_by(corio::create_connection(only6, from));
    EXPECT_EQ(os_code(error), EAFNOSUPPORT) << message_of(error);
}

SOCK_TEST(CreateConnection, BadArgumentsAreValueErrors) {
    const auto none = co_await raised_by(corio::create_connection(std::vector<SocketAddress>()));
    EXPECT_TRUE(corio::holds<corio::ValueError>(none)) << message_of(none);
    corio::ConnectOptions negative;
    negative.interleave = -1;
    const std::vector<SocketAddress> one = {SocketAddress::ip("127.0.0.1", 1)};
    const auto bad = co_await raised_by(corio::create_connection(one, negative));
    EXPECT_TRUE(corio::holds<corio::ValueError>(bad)) << message_of(bad);
    corio::ConnectOptions backwards;
    backwards.happy_eyeballs_delay = -1s;
    const auto bad_delay = co_await raised_by(corio::create_connection(one, backwards));
    EXPECT_TRUE(corio::holds<corio::ValueError>(bad_delay)) << message_of(bad_delay);
    // A family that leaves no address: nothing to try.
    corio::ConnectOptions v6;
    v6.family = AF_INET6;
    const auto no_family = co_await raised_by(corio::create_connection(one, v6));
    EXPECT_EQ(os_code(no_family), EAFNOSUPPORT) << message_of(no_family);
}

SOCK_TEST(CreateConnection, OpenConnectionTakesConnectOptions) {
    Socket listener = listening(SocketAddress::ip("127.0.0.1", 0));
    const corio::ConnectOptions from{.happy_eyeballs_delay = 250ms,
                                     .local_addr = SocketAddress::ip("127.0.0.3", 0)};
    auto [r, w] = co_await corio::open_connection("127.0.0.1", listener.getsockname().port(), from);
    auto [conn, peer] = co_await corio::sock_accept(listener);
    EXPECT_EQ(peer.host(), "127.0.0.3");
    EXPECT_TRUE(has_nodelay(w.socket()));
    w.write("over a stream\n");
    EXPECT_EQ(co_await recv_exactly(conn, 14), "over a stream\n");
    w.close();
    co_await w.wait_closed();
}

TEST(InterleaveAddresses, AlternatesFamiliesStartingWithTheFirstFamilysCount) {
    const auto v6a = SocketAddress::ip("2001:db8::a", 80);
    const auto v6b = SocketAddress::ip("2001:db8::b", 80);
    const auto v6c = SocketAddress::ip("2001:db8::c", 80);
    const auto v4a = SocketAddress::ip("192.0.2.1", 80);
    const auto v4b = SocketAddress::ip("192.0.2.2", 80);
    using List = std::vector<SocketAddress>;
    EXPECT_EQ(corio::interleave_addresses({v6a, v6b, v4a, v4b}), (List{v6a, v4a, v6b, v4b}));
    EXPECT_EQ(corio::interleave_addresses({v6a, v6b, v4a, v4b}, 2), (List{v6a, v6b, v4a, v4b}));
    EXPECT_EQ(corio::interleave_addresses({v6a, v6b, v6c, v4a, v4b}, 2),
              (List{v6a, v6b, v4a, v6c, v4b}));
    // The first family is the first address's, wherever the others come in the list.
    EXPECT_EQ(corio::interleave_addresses({v4a, v6a, v6b, v6c, v4b}),
              (List{v4a, v6a, v4b, v6b, v6c}));
    // A count beyond the first family's addresses takes them all first.
    EXPECT_EQ(corio::interleave_addresses({v6a, v4a, v6b}, 5), (List{v6a, v6b, v4a}));
    EXPECT_EQ(corio::interleave_addresses({v4b, v4a}), (List{v4b, v4a}));
    EXPECT_TRUE(corio::interleave_addresses({}).empty());
    EXPECT_THROW(corio::interleave_addresses({v4a}, 0), corio::ValueError);
}

// === create_server ===========================================================================

SOCK_TEST(CreateServer, PortZeroListensOnAFreePortWithReuseAddress) {
    std::vector<Socket> sockets = co_await corio::create_server("127.0.0.1", 0);
    CORIO_ASSERT(sockets.size() == 1u);
    const SocketAddress where = sockets[0].getsockname();
    EXPECT_EQ(where.host(), "127.0.0.1");
    EXPECT_NE(where.port(), 0);
    EXPECT_NE(sockets[0].getsockopt(SOL_SOCKET, SO_ACCEPTCONN), 0);
    EXPECT_NE(sockets[0].getsockopt(SOL_SOCKET, SO_REUSEADDR), 0);
    EXPECT_EQ(sockets[0].getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
    EXPECT_EQ(accept_queue(sockets[0]).second, 100u);  // asyncio's default backlog
    co_await connect_to(sockets[0]);
}

SOCK_TEST(CreateServer, AnEmptyHostListensOnEveryFamilyOnOnePort) {
    std::vector<Socket> sockets = co_await corio::create_server("", 0);
    std::optional<std::size_t> v4;
    std::optional<std::size_t> v6;
    for (std::size_t i = 0; i < sockets.size(); ++i) {
        const SocketAddress a = sockets[i].getsockname();
        EXPECT_EQ(a.port(), sockets[0].getsockname().port()) << a.to_string();
        if (a.family() == AF_INET) {
            EXPECT_EQ(a.host(), "0.0.0.0");
            v4 = i;
        } else if (a.family() == AF_INET6) {
            EXPECT_EQ(a.host(), "::");
            // As asyncio: the IPv6 socket leaves IPv4 to the IPv4 one.
            EXPECT_NE(sockets[i].getsockopt(IPPROTO_IPV6, IPV6_V6ONLY), 0);
            v6 = i;
        }
    }
    CORIO_ASSERT(v4.has_value());
    const std::uint16_t port = sockets[*v4].getsockname().port();
    const std::vector<SocketAddress> to4 = {SocketAddress::ip("127.0.0.1", port)};
    Socket c4 = co_await corio::create_connection(to4);
    auto a4 = co_await corio::sock_accept(sockets[*v4]);
    EXPECT_EQ(a4.second, c4.getsockname());
    if (ipv6_available()) {
        CORIO_ASSERT(v6.has_value());
        const std::vector<SocketAddress> to6 = {SocketAddress::ip("::1", port)};
        Socket c6 = co_await corio::create_connection(to6);
        auto a6 = co_await corio::sock_accept(sockets[*v6]);
        EXPECT_EQ(a6.second, c6.getsockname());
    }
}

SOCK_TEST(CreateServer, FamilyKeepsOnlyThatFamilysAddresses) {
    corio::ServerOptions v4;
    v4.family = AF_INET;
    std::vector<Socket> sockets = co_await corio::create_server("", 0, v4);
    CORIO_ASSERT(sockets.size() == 1u);
    EXPECT_EQ(sockets[0].getsockname().family(), AF_INET);
}

namespace {

corio::Coro<> listen_on_localhost() {
    std::vector<Socket> sockets = co_await corio::create_server("localhost", 0);
    CORIO_ASSERT(!sockets.empty());
    bool v4 = false;
    for (const Socket& s : sockets) {
        const SocketAddress a = s.getsockname();
        EXPECT_TRUE(a.host() == "127.0.0.1" || a.host() == "::1") << a.to_string();
        EXPECT_EQ(a.port(), sockets[0].getsockname().port());
        v4 = v4 || a.host() == "127.0.0.1";
    }
    EXPECT_TRUE(v4);
}

}  // namespace

// (Skipped without ::1: "localhost" may still resolve to it, which then cannot be bound.)
TEST(CreateServer, AHostNameListensOnEachOfItsAddresses) {
    SKIP_WITHOUT_IPV6();
    corio::testing::run(listen_on_localhost(), options());
}

SOCK_TEST(CreateServer, ReusePortLetsTwoServersShareAPort) {
    corio::ServerOptions shared;
    shared.reuse_port = true;
    std::vector<Socket> a = co_await corio::create_server("127.0.0.1", 0, shared);
    CORIO_ASSERT(a.size() == 1u);
    EXPECT_NE(a[0].getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
    const std::uint16_t port = a[0].getsockname().port();
    std::vector<Socket> b = co_await corio::create_server("127.0.0.1", port, shared);
    CORIO_ASSERT(b.size() == 1u);
    EXPECT_EQ(b[0].getsockname(), a[0].getsockname());
    // Without it, the port is taken (by a listener, which SO_REUSEADDR does not get past).
    const int fds_before = open_fd_count();
    const auto error = co_await raised_by(corio::create_server("127.0.0.1", port));
    EXPECT_EQ(os_code(error), EADDRINUSE) << message_of(error);
    EXPECT_EQ(open_fd_count(), fds_before);
}

SOCK_TEST(CreateServer, OptionsSetBacklogAndReuseAddress) {
    corio::ServerOptions options;
    options.backlog = 7;
    options.reuse_address = false;
    std::vector<Socket> sockets = co_await corio::create_server("127.0.0.1", 0, options);
    CORIO_ASSERT(sockets.size() == 1u);
    EXPECT_EQ(accept_queue(sockets[0]).second, 7u);
    EXPECT_EQ(sockets[0].getsockopt(SOL_SOCKET, SO_REUSEADDR), 0);
}

SOCK_TEST(CreateServer, AFailedBindClosesEverySocketItOpened) {
    Socket taken = listening(SocketAddress::ip("127.0.0.1", 0));
    const std::uint16_t port = taken.getsockname().port();
    const int fds_before = open_fd_count();
    // 0.0.0.0 clashes with the listener on 127.0.0.1; :: (IPV6_V6ONLY) may be bound first.
    const auto error = co_await raised_by(corio::create_server("", port));
    EXPECT_EQ(os_code(error), EADDRINUSE) << message_of(error);
    EXPECT_EQ(open_fd_count(), fds_before);
}

SOCK_TEST(CreateServer, StartServerTakesServerOptions) {
    const corio::ServerOptions shared{.reuse_port = true};
    corio::ClientConnected cb = [](corio::StreamReader, corio::StreamWriter w) -> corio::Coro<> {
        w.write("hello\n");
        w.close();
        co_await w.wait_closed();
    };
    corio::Server server = co_await corio::start_server(cb, "127.0.0.1", 0, shared);
    CORIO_ASSERT(server.sockets().size() == 1u);
    EXPECT_NE(server.sockets()[0].getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", server.addresses()[0].port());
    EXPECT_EQ(co_await r.readline(), "hello\n");
    w.close();
    co_await w.wait_closed();
    server.close();
    co_await server.wait_closed();
}

// === create_unix_server ======================================================================

SOCK_TEST(CreateUnixServer, ReplacesAStaleSocketFile) {
    TempDir dir;
    const std::string path = dir.file("stale.sock");
    {
        Socket gone(AF_UNIX, SOCK_STREAM);
        gone.bind(SocketAddress::unix_path(path));
        gone.listen();
    }  // closed: the file stays, and nobody listens on it
    EXPECT_TRUE(std::filesystem::exists(path));
    Socket server = corio::create_unix_server(path);
    EXPECT_NE(server.getsockopt(SOL_SOCKET, SO_ACCEPTCONN), 0);
    co_await connect_to(server);
}

SOCK_TEST(CreateUnixServer, LeavesALiveServersPathAlone) {
    TempDir dir;
    const std::string path = dir.file("live.sock");
    Socket live = listening(SocketAddress::unix_path(path));
    int code = 0;
    try {
        (void)corio::create_unix_server(path);
    } catch (const corio::OSError& e) {
        code = e.code();
    }
    EXPECT_EQ(code, EADDRINUSE);
    // The live server still gets connections at its path (after the probe's, which closed).
    (void)co_await corio::sock_accept(live);
    co_await connect_to(live);
}

SOCK_TEST(CreateUnixServer, DoesNotRemoveAFileThatIsNotASocket) {
    TempDir dir;
    const std::string path = dir.file("data");
    {
        std::FILE* f = std::fopen(path.c_str(), "w");
        CORIO_ASSERT(f != nullptr);
        std::fputs("keep me", f);
        std::fclose(f);
    }
    bool raised = false;
    try {
        (void)corio::create_unix_server(path);
    } catch (const corio::OSError& e) {
        raised = e.code() == EADDRINUSE;
    }
    EXPECT_TRUE(raised);
    EXPECT_EQ(std::filesystem::file_size(path), 7u);
    co_return;
}

SOCK_TEST(CreateUnixServer, ListensOnAnAbstractName) {
    const std::string name = abstract_name("create");
    Socket server = corio::create_unix_server(name, 4);
    EXPECT_EQ(server.getsockname(), SocketAddress::unix_path(name));
    co_await connect_to(server);
}

SOCK_TEST(CreateUnixServer, StartUnixServerReplacesAStaleSocketFileToo) {
    TempDir dir;
    const std::string path = dir.file("stale.sock");
    {
        Socket gone(AF_UNIX, SOCK_STREAM);
        gone.bind(SocketAddress::unix_path(path));
    }
    corio::ClientConnected cb = [](corio::StreamReader, corio::StreamWriter w) -> corio::Coro<> {
        w.write("fresh\n");
        w.close();
        co_await w.wait_closed();
    };
    corio::Server server = co_await corio::start_unix_server(cb, path);
    auto [r, w] = co_await corio::open_unix_connection(path);
    EXPECT_EQ(co_await r.readline(), "fresh\n");
    w.close();
    co_await w.wait_closed();
    server.close();
    co_await server.wait_closed();
}
