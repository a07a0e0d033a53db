// corio::create_datagram_endpoint and corio::DatagramEndpoint (asyncio's
// loop.create_datagram_endpoint): UDP over IPv4 and IPv6, Unix-domain datagrams on paths and
// abstract names.
//
// Every test runs under corio::testing, which fails it when a descriptor, a task or an
// unretrieved exception is left behind, and cancels a body that runs past kBodyTimeout. Endpoints
// bind to 127.0.0.1 / ::1 on ephemeral ports, to Unix paths in a fresh temporary directory, or to
// unique abstract names. Nothing waits for time to pass: a datagram on the loopback or a
// Unix-domain socket is queued at the receiver before sendto() returns, so a test that sent one
// can count on it being there, and an ICMP error is awaited with poll(). (The one measurement,
// the CPU use in SendtoAFullUnixReceiverWaitsWithoutSpinning, can only err towards passing on a
// loaded machine.)
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "corio/datagrams.hpp"
#include "corio/testing.hpp"
#include "support.hpp"

using corio_test::os_code;

using namespace std::chrono_literals;
using corio::DatagramEndpoint;
using corio::DatagramOptions;
using corio::Socket;
using corio::SocketAddress;

namespace corio {
// Lets GoogleTest print addresses in failure messages.
void PrintTo(const SocketAddress& a, std::ostream* os) {
    *os << "SocketAddress(family " << a.family() << ", \"" << a.to_string() << "\")";
}
}  // namespace corio

namespace {

const corio::Duration kBodyTimeout = std::chrono::seconds(10);

#define DGRAM_TEST(suite, name) CORIO_TEST_WITH(suite, name, {.timeout = kBodyTimeout})

corio::testing::Options options() {
    return corio::testing::Options{.timeout = kBodyTimeout};
}

// --- environment ------------------------------------------------------------------------------

bool fd_is_open(int fd) {
    return ::fcntl(fd, F_GETFD) != -1;
}

// A fresh directory for Unix socket paths, removed with everything in it.
class TempDir {
  public:
    TempDir() {
        char name[] = "/tmp/corio-datagrams-XXXXXX";
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
    return std::string(1, '\0') + "corio-dgram-test-" + std::to_string(::getpid()) + "-" + tag +
           "-" + std::to_string(++counter);
}

bool ipv6_available() {
    const int fd = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
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

bool is_socket_file(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

double thread_cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_THREAD, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Lets the loop run other tasks (and poll) a few times.
corio::Coro<> let_loop_run(int passes = 4) {
    for (int i = 0; i < passes; ++i) co_await corio::sleep(1ms);
}

// --- exceptions -------------------------------------------------------------------------------

// What awaiting `aw` raised, or null. A CancelledError counts, unless the awaiting task is itself
// being cancelled (by the test's deadline): that one goes on.
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

// --- endpoints --------------------------------------------------------------------------------

DatagramOptions local(const std::string& host, std::uint16_t port = 0) {
    DatagramOptions o;
    o.local_addr = std::pair<std::string, std::uint16_t>(host, port);
    return o;
}

DatagramOptions remote(const SocketAddress& to) {
    DatagramOptions o;
    o.remote_addr = std::pair<std::string, std::uint16_t>(to.host(), to.port());
    return o;
}

DatagramOptions unix_local(const std::string& path) {
    DatagramOptions o;
    o.local_path = path;
    return o;
}

corio::Coro<DatagramEndpoint> make_endpoint(DatagramOptions o) {
    co_return co_await corio::create_datagram_endpoint(std::move(o));
}

SocketAddress sockname(const DatagramEndpoint& e) {
    return e.get_extra_info("sockname").value_or(SocketAddress());
}

std::string payload(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + seed * 7) % 251);
    return s;
}

// A UDP socket on 127.0.0.1 that takes datagrams from nobody: it is connected elsewhere, and the
// kernel answers whatever else comes to its port with ICMP port unreachable, exactly as for a
// closed port. Unlike a closed port, the port stays ours, so no other process can start
// receiving on it while a test counts on the refusal; connect_to(peer) then brings it to life.
struct DeafPeer {
    Socket sock{AF_INET, SOCK_DGRAM};

    DeafPeer() {
        sock.bind(SocketAddress::ip("127.0.0.1", 0));
        connect_raw(SocketAddress::ip("127.0.0.1", 9));  // no datagram is sent
    }
    SocketAddress address() const { return sock.getsockname(); }
    void connect_to(const SocketAddress& peer) { connect_raw(peer); }

  private:
    void connect_raw(const SocketAddress& to) {
        if (::connect(sock.fileno(), to.native(), to.size()) != 0)
            throw std::runtime_error("connect of a UDP socket failed");
    }
};

// Blocks until `fd` has an error pending (the ICMP error of a connected UDP socket), up to 5 s.
// (Blocking the loop is harmless here: the test has nothing else running.)
bool error_pending(int fd) {
    pollfd p{fd, 0, 0};
    return ::poll(&p, 1, 5000) == 1 && (p.revents & POLLERR) != 0;
}

// A client sends to a server, which sees the client's address and replies to it.
corio::Coro<> round_trip(DatagramOptions server_options, DatagramOptions client_options) {
    DatagramEndpoint server = co_await make_endpoint(std::move(server_options));
    DatagramEndpoint client = co_await make_endpoint(std::move(client_options));
    const SocketAddress server_address = sockname(server);
    co_await client.sendto("ping", server_address);
    auto [request, sender] = co_await server.recvfrom();
    EXPECT_EQ(request, "ping");
    EXPECT_EQ(sender, sockname(client));
    co_await server.sendto("pong", sender);
    auto [reply, replier] = co_await client.recvfrom();
    EXPECT_EQ(reply, "pong");
    EXPECT_EQ(replier, server_address);
}

}  // namespace

// === round trips =============================================================================

TEST(DatagramRoundTrip, UdpIpv4ReportsTheSenderAndTheReplyReachesIt) {
    corio::testing::run(round_trip(local("127.0.0.1"), local("127.0.0.1")), options());
}

TEST(DatagramRoundTrip, UdpIpv6ReportsTheSenderAndTheReplyReachesIt) {
    SKIP_WITHOUT_IPV6();
    corio::testing::run(round_trip(local("::1"), local("::1")), options());
}

TEST(DatagramRoundTrip, UnixPathsReportTheSenderAndTheReplyReachesIt) {
    TempDir dir;
    corio::testing::run(round_trip(unix_local(dir.file("server")), unix_local(dir.file("client"))),
                        options());
}

TEST(DatagramRoundTrip, AbstractUnixNamesReportTheSenderAndTheReplyReachesIt) {
    corio::testing::run(
        round_trip(unix_local(abstract_name("server")), unix_local(abstract_name("client"))),
        options());
}

DGRAM_TEST(DatagramRoundTrip, TheEchoOfTheHeaderCommentWorksWithDesignatedInitializers) {
    corio::DatagramOptions options{.local_addr = {{"127.0.0.1", 0}}};
    corio::DatagramEndpoint server = co_await corio::create_datagram_endpoint(options);
    auto echo_once = [&]() -> corio::Coro<> {
        auto [data, sender] = co_await server.recvfrom();
        co_await server.sendto(data, sender);
    };
    auto echo = corio::create_task(echo_once());
    corio::DatagramOptions to_server{.remote_addr = {{"127.0.0.1", sockname(server).port()}}};
    corio::DatagramEndpoint client = co_await corio::create_datagram_endpoint(to_server);
    co_await client.send("ping");
    EXPECT_EQ(co_await client.recv(), "ping");
    co_await echo;
}

DGRAM_TEST(DatagramRoundTrip, AConnectedUdpClientUsesSendAndRecv) {
    DatagramEndpoint server = co_await make_endpoint(local("127.0.0.1"));
    DatagramEndpoint client = co_await make_endpoint(remote(sockname(server)));
    EXPECT_EQ(client.get_extra_info("peername"), sockname(server));
    co_await client.send("ping");
    auto [request, sender] = co_await server.recvfrom();
    EXPECT_EQ(request, "ping");
    EXPECT_EQ(sender, sockname(client));
    co_await server.sendto("pong", sender);
    EXPECT_EQ(co_await client.recv(), "pong");
}

TEST(DatagramRoundTrip, AConnectedUdpIpv6ClientUsesSendAndRecv) {
    SKIP_WITHOUT_IPV6();
    corio::testing::run(
        []() -> corio::Coro<> {
            DatagramEndpoint server = co_await make_endpoint(local("::1"));
            DatagramEndpoint client = co_await make_endpoint(remote(sockname(server)));
            EXPECT_EQ(sockname(client).family(), AF_INET6);
            co_await client.send("ping6");
            auto [request, sender] = co_await server.recvfrom();
            EXPECT_EQ(request, "ping6");
            co_await server.sendto("pong6", sender);
            EXPECT_EQ(co_await client.recv(), "pong6");
        }(),
        options());
}

DGRAM_TEST(DatagramRoundTrip, AConnectedUnixClientUsesSendAndRecv) {
    TempDir dir;
    DatagramEndpoint server = co_await make_endpoint(unix_local(dir.file("server")));
    DatagramOptions o;
    o.local_path = dir.file("client");
    o.remote_path = dir.file("server");
    DatagramEndpoint client = co_await make_endpoint(o);
    EXPECT_EQ(client.get_extra_info("peername"), sockname(server));
    co_await client.send("ping");
    auto [request, sender] = co_await server.recvfrom();
    EXPECT_EQ(request, "ping");
    EXPECT_EQ(sender.host(), dir.file("client"));
    co_await server.sendto("pong", sender);
    EXPECT_EQ(co_await client.recv(), "pong");
}

DGRAM_TEST(DatagramRoundTrip, AnUnboundUnixSenderIsReportedAsAnEmptyAddress) {
    TempDir dir;
    DatagramEndpoint server = co_await make_endpoint(unix_local(dir.file("server")));
    DatagramOptions o;
    o.family = AF_UNIX;
    DatagramEndpoint client = co_await make_endpoint(o);
    co_await client.sendto("anonymous", sockname(server));
    auto [data, sender] = co_await server.recvfrom();
    EXPECT_EQ(data, "anonymous");
    EXPECT_EQ(sender.to_string(), "");
}

DGRAM_TEST(DatagramRoundTrip, AnEndpointOfAFamilyOnlyGetsAPortOnItsFirstSendto) {
    DatagramEndpoint server = co_await make_endpoint(local("127.0.0.1"));
    DatagramOptions o;
    o.family = AF_INET;
    DatagramEndpoint client = co_await make_endpoint(o);
    EXPECT_EQ(sockname(client).port(), 0);
    co_await client.sendto("hello", sockname(server));
    auto [data, sender] = co_await server.recvfrom();
    EXPECT_EQ(data, "hello");
    EXPECT_NE(sockname(client).port(), 0);
    EXPECT_EQ(sockname(client).port(), sender.port());
    co_await server.sendto("back", sender);
    EXPECT_EQ((co_await client.recvfrom()).first, "back");
}

DGRAM_TEST(DatagramRoundTrip, AWrappedSocketKeepsItsBindingAndOptions) {
    Socket sock(AF_INET, SOCK_DGRAM);
    sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 65536);
    const int rcvbuf = sock.getsockopt(SOL_SOCKET, SO_RCVBUF);
    sock.bind(SocketAddress::ip("127.0.0.1", 0));
    const SocketAddress bound = sock.getsockname();
    const int fd = sock.fileno();
    DatagramEndpoint server = corio::datagram_endpoint(std::move(sock));
    EXPECT_EQ(server.socket().fileno(), fd);
    EXPECT_EQ(server.socket().getsockopt(SOL_SOCKET, SO_RCVBUF), rcvbuf);
    EXPECT_EQ(sockname(server), bound);
    EXPECT_FALSE(server.get_extra_info("peername").has_value());
    DatagramEndpoint client = co_await make_endpoint(remote(bound));
    co_await client.send("wrapped");
    EXPECT_EQ((co_await server.recvfrom()).first, "wrapped");
}

// === datagram boundaries =====================================================================

namespace {

// A bound receiver and a sender connected to it, of one family.
struct Pair {
    DatagramEndpoint receiver;
    DatagramEndpoint sender;
};

corio::Coro<Pair> udp_pair() {
    Pair p;
    p.receiver = co_await make_endpoint(local("127.0.0.1"));
    p.sender = co_await make_endpoint(remote(sockname(p.receiver)));
    co_return p;
}

corio::Coro<Pair> unix_pair() {
    Pair p;
    p.receiver = co_await make_endpoint(unix_local(abstract_name("receiver")));
    DatagramOptions o;
    o.remote_path = sockname(p.receiver).host();
    p.sender = co_await make_endpoint(o);
    co_return p;
}

corio::Coro<> empty_datagram_is_empty_string(Pair p) {
    co_await p.sender.send("");
    co_await p.sender.send("after");
    EXPECT_EQ((co_await p.receiver.recvfrom()).first, "");
    // An empty datagram is not an end of stream: the next one follows.
    EXPECT_EQ((co_await p.receiver.recvfrom()).first, "after");
    co_await p.sender.send("");
    EXPECT_EQ(co_await p.receiver.recv(), "");
}

corio::Coro<> long_datagram_is_truncated(Pair p) {
    const std::string big = payload(100, 1);
    co_await p.sender.send(big);
    co_await p.sender.send("next");
    co_await p.sender.send(big);
    co_await p.sender.send("last");
    EXPECT_EQ((co_await p.receiver.recvfrom(10)).first, big.substr(0, 10));
    // The rest of the truncated datagram is gone: the next receive gets the next datagram.
    EXPECT_EQ((co_await p.receiver.recvfrom(10)).first, "next");
    EXPECT_EQ(co_await p.receiver.recv(10), big.substr(0, 10));
    EXPECT_EQ(co_await p.receiver.recv(10), "last");
}

}  // namespace

DGRAM_TEST(DatagramBoundaries, AnEmptyUdpDatagramArrivesAsAnEmptyString) {
    co_await empty_datagram_is_empty_string(co_await udp_pair());
}

DGRAM_TEST(DatagramBoundaries, AnEmptyUnixDatagramArrivesAsAnEmptyString) {
    co_await empty_datagram_is_empty_string(co_await unix_pair());
}

DGRAM_TEST(DatagramBoundaries, ALongUdpDatagramIsTruncatedAndTheNextReceiveGetsTheNextOne) {
    co_await long_datagram_is_truncated(co_await udp_pair());
}

DGRAM_TEST(DatagramBoundaries, ALongUnixDatagramIsTruncatedAndTheNextReceiveGetsTheNextOne) {
    co_await long_datagram_is_truncated(co_await unix_pair());
}

DGRAM_TEST(DatagramBoundaries, AReceivedStringIsTheSizeOfItsDatagramNotOfMaxBytes) {
    Pair p = co_await udp_pair();
    co_await p.sender.send("tiny");
    co_await p.sender.send("small");
    const auto [first, sender] = co_await p.receiver.recvfrom();  // max_bytes 65536
    const std::string second = co_await p.receiver.recv();
    EXPECT_EQ(first, "tiny");
    EXPECT_EQ(second, "small");
    // Received datagrams are often kept (queued, batched): each must not hold 64 KiB.
    EXPECT_LT(first.capacity(), 1024u);
    EXPECT_LT(second.capacity(), 1024u);
}

DGRAM_TEST(DatagramBoundaries, ADatagramOfSixtyKilobytesArrivesWhole) {
    Pair p = co_await udp_pair();
    const std::string big = payload(60000, 2);
    co_await p.sender.send(big);
    const std::string got = co_await p.receiver.recv();
    EXPECT_EQ(got.size(), big.size());
    EXPECT_TRUE(got == big);
}

DGRAM_TEST(DatagramBoundaries, AMaxBytesAboveTheSharedBufferStillGivesExactStrings) {
    Pair p = co_await unix_pair();
    const std::string big = payload(100000, 3);
    co_await p.sender.send(big);
    co_await p.sender.send("small");
    const std::string got = co_await p.receiver.recv(std::size_t{1} << 20);
    EXPECT_TRUE(got == big);
    const auto [small, sender] = co_await p.receiver.recvfrom(std::size_t{1} << 20);
    EXPECT_EQ(small, "small");
    EXPECT_LT(small.capacity(), 1024u);
}

DGRAM_TEST(DatagramBoundaries, AUdpDatagramOverSixtyFourKilobytesIsEMSGSIZE) {
    Pair p = co_await udp_pair();
    const std::string too_big(70000, 'x');
    const auto error = co_await raised_by(p.sender.send(too_big));
    EXPECT_EQ(os_code(error), EMSGSIZE) << message_of(error);
    co_await p.sender.send("fits");
    EXPECT_EQ(co_await p.receiver.recv(), "fits");
}

// === connected endpoints =====================================================================

DGRAM_TEST(DatagramConnected, DatagramsFromOtherSendersAreNotReceived) {
    DatagramEndpoint intruder = co_await make_endpoint(local("127.0.0.1"));
    DatagramEndpoint server = co_await make_endpoint(local("127.0.0.1"));
    DatagramEndpoint client = co_await make_endpoint(remote(sockname(server)));
    co_await intruder.sendto("intruder", sockname(client));
    co_await server.sendto("from the server", sockname(client));
    EXPECT_EQ(co_await client.recv(), "from the server");
}

DGRAM_TEST(DatagramConnected, SendingToAPortNobodyReceivesOnMakesRecvRaiseConnectionRefused) {
    DeafPeer peer;
    DatagramEndpoint client = co_await make_endpoint(remote(peer.address()));
    co_await client.send("anyone?");
    // The ICMP port unreachable comes back as an error on the socket; the waiting recv sees it.
    const auto error = co_await raised_by(client.recv());
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), ECONNREFUSED);
    EXPECT_NE(message_of(error).find(peer.address().to_string()), std::string::npos)
        << message_of(error);

    // The endpoint stays usable: once the peer listens, datagrams flow both ways.
    EXPECT_FALSE(client.is_closing());
    peer.connect_to(sockname(client));
    co_await client.send("now?");
    EXPECT_EQ(co_await corio::sock_recv(peer.sock, 100), "now?");
    co_await corio::sock_sendall(peer.sock, "yes");
    EXPECT_EQ(co_await client.recv(), "yes");
}

DGRAM_TEST(DatagramConnected, SendingToAPortNobodyReceivesOnMakesALaterSendRaiseIt) {
    DeafPeer peer;
    DatagramEndpoint client = co_await make_endpoint(remote(peer.address()));
    co_await client.send("anyone?");
    CORIO_ASSERT(error_pending(client.socket().fileno()));
    const auto error = co_await raised_by(client.send("still nobody?"));
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(error)) << message_of(error);
    // The error is reported once; the endpoint goes on.
    peer.connect_to(sockname(client));
    co_await client.send("hello");
    EXPECT_EQ(co_await corio::sock_recv(peer.sock, 100), "hello");
}

DGRAM_TEST(DatagramConnected, RecvfromRaisesTheConnectionRefusedToo) {
    DeafPeer peer;
    DatagramEndpoint client = co_await make_endpoint(remote(peer.address()));
    co_await client.send("anyone?");
    const auto error = co_await raised_by(client.recvfrom());
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(error)) << message_of(error);
}

DGRAM_TEST(DatagramConnected, SendingToAUnixPeerThatClosedIsConnectionRefused) {
    Pair p = co_await unix_pair();
    p.receiver.close();
    const auto error = co_await raised_by(p.sender.send("gone?"));
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(error)) << message_of(error);
}

DGRAM_TEST(DatagramConnected, SendtoTheRemoteAddressWorksAndAnyOtherIsAValueError) {
    DatagramEndpoint server = co_await make_endpoint(local("127.0.0.1"));
    DatagramEndpoint other = co_await make_endpoint(local("127.0.0.1"));
    DatagramEndpoint client = co_await make_endpoint(remote(sockname(server)));
    co_await client.sendto("explicit", sockname(server));
    EXPECT_EQ((co_await server.recvfrom()).first, "explicit");
    const auto error = co_await raised_by(client.sendto("astray", sockname(other)));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
    EXPECT_NE(message_of(error).find(sockname(server).to_string()), std::string::npos)
        << message_of(error);
}

DGRAM_TEST(DatagramConnected, SendWithoutARemoteAddressIsEDESTADDRREQForUdpAndUnix) {
    DatagramEndpoint udp = co_await make_endpoint(local("127.0.0.1"));
    const auto udp_error = co_await raised_by(udp.send("where to?"));
    EXPECT_EQ(os_code(udp_error), EDESTADDRREQ) << message_of(udp_error);
    EXPECT_NE(message_of(udp_error).find("sendto"), std::string::npos) << message_of(udp_error);
    DatagramEndpoint unix_dgram = co_await make_endpoint(unix_local(abstract_name("unconnected")));
    const auto unix_error = co_await raised_by(unix_dgram.send("where to?"));
    EXPECT_EQ(os_code(unix_error), EDESTADDRREQ) << message_of(unix_error);
}

// === options =================================================================================

DGRAM_TEST(DatagramOptions, PortZeroPicksAFreePortShownInSockname) {
    DatagramEndpoint e = co_await make_endpoint(local("127.0.0.1", 0));
    const auto name = e.get_extra_info("sockname");
    CORIO_ASSERT(name.has_value());
    EXPECT_EQ(name->host(), "127.0.0.1");
    EXPECT_NE(name->port(), 0);
    EXPECT_EQ(*name, e.socket().getsockname());
    EXPECT_FALSE(e.get_extra_info("peername").has_value());
    EXPECT_FALSE(e.get_extra_info("no such thing").has_value());
}

DGRAM_TEST(DatagramOptions, AnEmptyHostBindsEveryInterface) {
    DatagramOptions o = local("", 0);
    o.family = AF_INET;
    DatagramEndpoint e = co_await make_endpoint(o);
    EXPECT_EQ(sockname(e).host(), "0.0.0.0");
    DatagramEndpoint client =
        co_await make_endpoint(remote(SocketAddress::ip("127.0.0.1", sockname(e).port())));
    co_await client.send("to any");
    EXPECT_EQ((co_await e.recvfrom()).first, "to any");
}

DGRAM_TEST(DatagramOptions, AHostNameIsResolved) {
    DatagramOptions o = local("localhost", 0);
    o.family = AF_INET;  // /etc/hosts may name ::1 localhost too; this test wants one answer
    DatagramEndpoint server = co_await make_endpoint(o);
    EXPECT_EQ(sockname(server).host(), "127.0.0.1");
    DatagramOptions c;
    c.remote_addr = std::pair<std::string, std::uint16_t>("localhost", sockname(server).port());
    c.family = AF_INET;
    DatagramEndpoint client = co_await make_endpoint(c);
    EXPECT_EQ(client.get_extra_info("peername"), sockname(server));
}

DGRAM_TEST(DatagramOptions, ReusePortLetsTwoEndpointsBindOnePort) {
    DatagramOptions o = local("127.0.0.1", 0);
    o.reuse_port = true;
    DatagramEndpoint first = co_await make_endpoint(o);
    EXPECT_EQ(first.socket().getsockopt(SOL_SOCKET, SO_REUSEPORT), 1);
    o.local_addr->second = sockname(first).port();
    DatagramEndpoint second = co_await make_endpoint(o);
    EXPECT_EQ(sockname(second), sockname(first));
    // The kernel hands each datagram to one of them.
    DatagramEndpoint client = co_await make_endpoint(remote(sockname(first)));
    co_await client.send("shared");
    auto a = corio::create_task(first.recvfrom());
    auto b = corio::create_task(second.recvfrom());
    const std::vector<decltype(a)> both = {a, b};
    co_await corio::wait(both, corio::FIRST_COMPLETED);
    EXPECT_NE(a.done(), b.done());
    EXPECT_EQ((co_await (a.done() ? a : b)).first, "shared");
    a.cancel();
    b.cancel();
    (void)co_await raised_by(a);
    (void)co_await raised_by(b);
}

DGRAM_TEST(DatagramOptions, WithoutReusePortASecondBindIsEADDRINUSE) {
    DatagramEndpoint first = co_await make_endpoint(local("127.0.0.1", 0));
    EXPECT_EQ(first.socket().getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
    const auto error =
        co_await raised_by(make_endpoint(local("127.0.0.1", sockname(first).port())));
    EXPECT_EQ(os_code(error), EADDRINUSE) << message_of(error);
}

DGRAM_TEST(DatagramOptions, AllowBroadcastSetsSoBroadcastAndLetsSendtoBroadcast) {
    // 127.255.255.255 is the broadcast address of the loopback network.
    DatagramOptions everywhere = local("", 0);
    everywhere.family = AF_INET;
    DatagramEndpoint listener = co_await make_endpoint(everywhere);
    const auto broadcast = SocketAddress::ip("127.255.255.255", sockname(listener).port());

    DatagramOptions o = local("127.0.0.1", 0);
    DatagramEndpoint plain = co_await make_endpoint(o);
    EXPECT_EQ(plain.socket().getsockopt(SOL_SOCKET, SO_BROADCAST), 0);
    const auto error = co_await raised_by(plain.sendto("refused", broadcast));
    EXPECT_EQ(os_code(error), EACCES) << message_of(error);

    o.allow_broadcast = true;
    DatagramEndpoint broadcaster = co_await make_endpoint(o);
    EXPECT_NE(broadcaster.socket().getsockopt(SOL_SOCKET, SO_BROADCAST), 0);
    co_await broadcaster.sendto("to all", broadcast);
    auto [data, sender] = co_await listener.recvfrom();
    EXPECT_EQ(data, "to all");
    EXPECT_EQ(sender, sockname(broadcaster));
}

// === bad input ===============================================================================

DGRAM_TEST(DatagramErrors, NoAddressAndNoFamilyIsAValueErrorNamingWhatIsMissing) {
    const auto error = co_await raised_by(make_endpoint(DatagramOptions{}));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
    const std::string what = message_of(error);
    EXPECT_NE(what.find("local_addr"), std::string::npos) << what;
    EXPECT_NE(what.find("remote_addr"), std::string::npos) << what;
    EXPECT_NE(what.find("family"), std::string::npos) << what;
}

DGRAM_TEST(DatagramErrors, AnIpAddressForAUnixEndpointIsAValueError) {
    DatagramOptions o = local("127.0.0.1", 0);
    o.family = AF_UNIX;
    const auto error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
    EXPECT_NE(message_of(error).find("local_path"), std::string::npos) << message_of(error);
    // And a path with an IP family.
    DatagramOptions p = unix_local(abstract_name("x"));
    p.family = AF_INET;
    const auto path_error = co_await raised_by(make_endpoint(p));
    EXPECT_TRUE(corio::holds<corio::ValueError>(path_error)) << message_of(path_error);
}

DGRAM_TEST(DatagramErrors, ReusePortOrBroadcastOnAUnixEndpointIsAValueError) {
    DatagramOptions o = unix_local(abstract_name("reuse"));
    o.reuse_port = true;
    const auto error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
    o.reuse_port = false;
    o.allow_broadcast = true;
    const auto broadcast_error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ValueError>(broadcast_error)) << message_of(broadcast_error);
}

DGRAM_TEST(DatagramErrors, ATooLongUnixPathIsAValueErrorNamingTheOption) {
    const std::string too_long = "/tmp/" + std::string(sizeof(sockaddr_un::sun_path), 'x');
    const auto error = co_await raised_by(make_endpoint(unix_local(too_long)));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
    EXPECT_NE(message_of(error).find("local_path"), std::string::npos) << message_of(error);
    DatagramOptions o;
    o.remote_path = too_long;
    const auto remote_error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ValueError>(remote_error)) << message_of(remote_error);
    EXPECT_NE(message_of(remote_error).find("remote_path"), std::string::npos)
        << message_of(remote_error);
}

DGRAM_TEST(DatagramErrors, ANameRefusedByTheResolverIsAGaiError) {
    // AI_NUMERICHOST makes the resolver refuse a name without asking DNS: always EAI_NONAME.
    DatagramOptions o = local("localhost", 0);
    o.flags = AI_NUMERICHOST;
    const auto error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::GaiError>(error)) << message_of(error);
    EXPECT_EQ(os_code(error), EAI_NONAME);
}

CORIO_TEST_WITH(DatagramErrors, AnUnresolvableHostIsAGaiError, {.timeout = 60s}) {
    // .invalid never resolves (RFC 6761). Without a reachable DNS server the answer is
    // EAI_AGAIN after the resolver's own timeout, still a GaiError: hence the long deadline.
    DatagramOptions o;
    o.remote_addr = std::pair<std::string, std::uint16_t>("no-such-host.invalid", 9);
    const auto error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::GaiError>(error)) << message_of(error);
}

DGRAM_TEST(DatagramErrors, ANumericAddressOfAnotherFamilyIsAValueError) {
    DatagramOptions o = local("127.0.0.1", 0);
    o.family = AF_INET6;
    const auto error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
}

DGRAM_TEST(DatagramErrors, LocalAndRemoteOfDifferentFamiliesIsAValueError) {
    DatagramOptions o = local("127.0.0.1", 0);
    o.remote_addr = std::pair<std::string, std::uint16_t>("::1", 9);
    const auto error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
}

DGRAM_TEST(DatagramErrors, AnUnknownFamilyIsAValueError) {
    DatagramOptions o = local("127.0.0.1", 0);
    o.family = AF_PACKET;
    const auto error = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ValueError>(error)) << message_of(error);
}

DGRAM_TEST(DatagramErrors, WrappingAStreamOrClosedSocketIsAValueError) {
    EXPECT_THROW((void)corio::datagram_endpoint(Socket(AF_INET, SOCK_STREAM)), corio::ValueError);
    Socket closed(AF_INET, SOCK_DGRAM);
    closed.close();
    EXPECT_THROW((void)corio::datagram_endpoint(std::move(closed)), corio::ValueError);
    co_return;
}

DGRAM_TEST(DatagramErrors, ConnectingToAMissingUnixPathIsENOENTAndToAStaleOneIsRefused) {
    TempDir dir;
    DatagramOptions o;
    o.remote_path = dir.file("nobody");
    const auto missing = co_await raised_by(make_endpoint(o));
    EXPECT_EQ(os_code(missing), ENOENT) << message_of(missing);
    {
        // Bound, then closed: the file stays, with no socket behind it.
        DatagramEndpoint gone = co_await make_endpoint(unix_local(dir.file("gone")));
    }
    o.remote_path = dir.file("gone");
    const auto stale = co_await raised_by(make_endpoint(o));
    EXPECT_TRUE(corio::holds<corio::ConnectionRefusedError>(stale)) << message_of(stale);
}

// === closing =================================================================================

DGRAM_TEST(DatagramClose, EveryOperationAfterCloseIsOSErrorEBADF) {
    Pair p = co_await udp_pair();
    const int fd = p.sender.socket().fileno();
    const SocketAddress name = sockname(p.sender);
    EXPECT_FALSE(p.sender.is_closing());
    p.sender.close();
    EXPECT_TRUE(p.sender.is_closing());
    EXPECT_FALSE(fd_is_open(fd));
    p.sender.close();  // a second close is a no-op
    std::vector<std::exception_ptr> errors;
    errors.push_back(co_await raised_by(p.sender.recvfrom()));
    errors.push_back(co_await raised_by(p.sender.recv()));
    errors.push_back(co_await raised_by(p.sender.send("x")));
    errors.push_back(co_await raised_by(p.sender.sendto("x", sockname(p.receiver))));
    for (const auto& error : errors) {
        EXPECT_EQ(os_code(error), EBADF) << message_of(error);
        EXPECT_NE(message_of(error).find("closed"), std::string::npos) << message_of(error);
    }
    // What the endpoint was is still known, as asyncio's get_extra_info.
    EXPECT_EQ(p.sender.get_extra_info("sockname"), name);
    EXPECT_EQ(p.sender.get_extra_info("peername"), sockname(p.receiver));
}

DGRAM_TEST(DatagramClose, ClosingWhileATaskWaitsInARecvFailsItWithEBADF) {
    DatagramEndpoint e = co_await make_endpoint(local("127.0.0.1"));
    auto receiver = corio::create_task(e.recvfrom());
    co_await let_loop_run();
    CORIO_ASSERT(!receiver.done());
    e.close();
    const auto error = co_await raised_by(receiver);
    EXPECT_EQ(os_code(error), EBADF) << message_of(error);
}

DGRAM_TEST(DatagramClose, DestroyingTheHandleClosesTheSocket) {
    int fd = -1;
    {
        DatagramEndpoint e = co_await make_endpoint(local("127.0.0.1"));
        fd = e.socket().fileno();
        EXPECT_TRUE(fd_is_open(fd));
    }
    EXPECT_FALSE(fd_is_open(fd));
}

DGRAM_TEST(DatagramClose, MovingTheHandleWhileATaskWaitsKeepsTheWaitWorking) {
    DatagramEndpoint first = co_await make_endpoint(local("127.0.0.1"));
    const SocketAddress address = sockname(first);
    auto receiver = corio::create_task(first.recvfrom());
    co_await let_loop_run();
    DatagramEndpoint moved = std::move(first);
    EXPECT_FALSE(static_cast<bool>(first));  // NOLINT(bugprone-use-after-move)
    EXPECT_TRUE(first.is_closing());         // NOLINT(bugprone-use-after-move)
    EXPECT_FALSE(moved.is_closing());
    DatagramEndpoint client = co_await make_endpoint(remote(address));
    co_await client.send("still here");
    EXPECT_EQ((co_await receiver).first, "still here");
    // Assigning over an endpoint closes the one it held.
    const int fd = moved.socket().fileno();
    moved = co_await make_endpoint(local("127.0.0.1"));
    EXPECT_FALSE(fd_is_open(fd));
}

// === Unix paths ==============================================================================

DGRAM_TEST(DatagramUnixPath, CloseLeavesTheFileAndANewEndpointReplacesIt) {
    TempDir dir;
    const std::string path = dir.file("server");
    DatagramEndpoint first = co_await make_endpoint(unix_local(path));
    first.close();
    // As asyncio, close() does not remove the path...
    EXPECT_TRUE(is_socket_file(path));
    // ...and binding it again replaces the stale file.
    DatagramEndpoint second = co_await make_endpoint(unix_local(path));
    DatagramOptions o;
    o.remote_path = path;
    DatagramEndpoint client = co_await make_endpoint(o);
    co_await client.send("to the new one");
    EXPECT_EQ(co_await second.recv(), "to the new one");
}

DGRAM_TEST(DatagramUnixPath, APathInUseIsEADDRINUSEAndKeepsItsOwner) {
    TempDir dir;
    const std::string path = dir.file("server");
    DatagramEndpoint owner = co_await make_endpoint(unix_local(path));
    const auto error = co_await raised_by(make_endpoint(unix_local(path)));
    EXPECT_EQ(os_code(error), EADDRINUSE) << message_of(error);
    DatagramOptions o;
    o.remote_path = path;
    DatagramEndpoint client = co_await make_endpoint(o);
    co_await client.send("for the owner");
    EXPECT_EQ(co_await owner.recv(), "for the owner");
}

DGRAM_TEST(DatagramUnixPath, APathHeldByAStreamListenerIsNotReplaced) {
    TempDir dir;
    const std::string path = dir.file("stream");
    Socket listener(AF_UNIX, SOCK_STREAM);
    listener.bind(SocketAddress::unix_path(path));
    listener.listen();
    const auto error = co_await raised_by(make_endpoint(unix_local(path)));
    EXPECT_EQ(os_code(error), EADDRINUSE) << message_of(error);
    Socket client(AF_UNIX, SOCK_STREAM);
    co_await corio::sock_connect(client, SocketAddress::unix_path(path));  // still listening
}

DGRAM_TEST(DatagramUnixPath, ARegularFileAtThePathIsNotRemoved) {
    TempDir dir;
    const std::string path = dir.file("data");
    std::ofstream(path) << "precious";
    const auto error = co_await raised_by(make_endpoint(unix_local(path)));
    EXPECT_EQ(os_code(error), EADDRINUSE) << message_of(error);
    std::ifstream in(path);
    std::string content;
    in >> content;
    EXPECT_EQ(content, "precious");
}

// === cancellation ============================================================================

DGRAM_TEST(DatagramCancel, ACancelledRecvfromLeavesTheDatagramForTheNextOne) {
    Pair p = co_await udp_pair();
    auto receiver = corio::create_task(p.receiver.recvfrom());
    co_await let_loop_run();
    CORIO_ASSERT(!receiver.done());
    // The datagram is in the receiver's queue before the loop sees it; the cancel comes first.
    co_await p.sender.send("kept");
    receiver.cancel();
    const auto error = co_await raised_by(receiver);
    EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
    EXPECT_EQ((co_await p.receiver.recvfrom()).first, "kept");
}

DGRAM_TEST(DatagramCancel, CancellingAReceiveAtAnyPointLosesNoDatagram) {
    // The cancel lands at every point from "still waiting" to "already received": each datagram
    // must come out exactly once, from the cancelled receive or from the next one.
    Pair p = co_await unix_pair();
    for (int yields = 0; yields < 40; ++yields) {
        const std::string message = "datagram " + std::to_string(yields);
        auto receiver = corio::create_task(p.receiver.recv());
        co_await corio::sleep(0s);
        co_await p.sender.send(message);
        for (int i = 0; i < yields % 8; ++i) co_await corio::sleep(0s);
        if (yields >= 32) co_await let_loop_run(1);
        receiver.cancel();
        std::optional<std::string> from_cancelled;
        bool cancelled = false;
        try {
            from_cancelled = co_await receiver;
        } catch (const corio::CancelledError&) {
            cancelled = true;
        }
        // (The test's own deadline would cancel this task too: that one must go on.)
        if (cancelled && corio::current_task().cancelling() > 0) throw corio::CancelledError();
        if (from_cancelled) {
            EXPECT_EQ(*from_cancelled, message);
        } else {
            EXPECT_EQ(co_await p.receiver.recv(), message);
        }
    }
    // Nothing is left over.
    co_await p.sender.send("end");
    EXPECT_EQ(co_await p.receiver.recv(), "end");
}

DGRAM_TEST(DatagramCancel, ACancelledSendSendsNothingAndTheEndpointGoesOn) {
    // A Unix receiver with a full queue makes a connected sender wait.
    Pair p = co_await unix_pair();
    int queued = 0;
    for (;;) {
        const std::string message = "fill " + std::to_string(queued);  // outlives the send
        auto send = corio::create_task(p.sender.send(message));
        co_await corio::sleep(0s);
        if (!send.done()) {
            send.cancel();
            const auto error = co_await raised_by(send);
            EXPECT_TRUE(corio::is_cancellation(error)) << message_of(error);
            break;
        }
        co_await send;
        ++queued;
        CORIO_ASSERT(queued < 100000);
    }
    for (int i = 0; i < queued; ++i)
        EXPECT_EQ(co_await p.receiver.recv(), "fill " + std::to_string(i));
    co_await p.sender.send("after");
    EXPECT_EQ(co_await p.receiver.recv(), "after");  // not the cancelled one
}

// === many datagrams ==========================================================================

namespace {

corio::Coro<std::vector<std::string>> receive_n(DatagramEndpoint& e, int n) {
    std::vector<std::string> got;
    for (int i = 0; i < n; ++i) got.push_back(co_await e.recv());
    co_return got;
}

std::string numbered(int i) {
    return "datagram #" + std::to_string(i);
}

}  // namespace

DGRAM_TEST(DatagramBurst, AThousandUnixDatagramsSentOnAConnectedEndpointArriveInOrder) {
    Pair p = co_await unix_pair();
    constexpr int n = 1000;
    auto receiver = corio::create_task(receive_n(p.receiver, n));
    auto send_all = [&]() -> corio::Coro<> {
        for (int i = 0; i < n; ++i) co_await p.sender.send(numbered(i));
    };
    co_await send_all();
    const std::vector<std::string> got = co_await receiver;
    CORIO_ASSERT(got.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) EXPECT_EQ(got[i], numbered(i));
}

DGRAM_TEST(DatagramBurst, AThousandUnixDatagramsSentWithSendtoArriveInOrder) {
    TempDir dir;
    DatagramEndpoint receiver_end = co_await make_endpoint(unix_local(dir.file("receiver")));
    DatagramEndpoint sender = co_await make_endpoint(unix_local(dir.file("sender")));
    const SocketAddress to = sockname(receiver_end);
    constexpr int n = 1000;
    auto receiver = corio::create_task(receive_n(receiver_end, n));
    auto send_all = [&]() -> corio::Coro<> {
        for (int i = 0; i < n; ++i) co_await sender.sendto(numbered(i), to);
    };
    co_await send_all();
    const std::vector<std::string> got = co_await receiver;
    CORIO_ASSERT(got.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) EXPECT_EQ(got[i], numbered(i));
}

DGRAM_TEST(DatagramBurst, SendtoAFullUnixReceiverWaitsWithoutSpinning) {
    DatagramEndpoint receiver_end = co_await make_endpoint(unix_local(abstract_name("slow")));
    DatagramOptions o;
    o.family = AF_UNIX;
    DatagramEndpoint sender = co_await make_endpoint(o);
    const SocketAddress to = sockname(receiver_end);
    // More than any receive queue holds (net.unix.max_dgram_qlen is 10 by default, and 512 is
    // a lot): the sender ends up waiting for the receiver.
    constexpr int n = 2000;
    auto send_all = [&]() -> corio::Coro<> {
        for (int i = 0; i < n; ++i) co_await sender.sendto(numbered(i), to);
    };
    auto sending = corio::create_task(send_all());
    co_await let_loop_run();
    CORIO_ASSERT(!sending.done());
    const auto wall_start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    co_await corio::sleep(200ms);
    const double cpu = thread_cpu_seconds() - cpu_start;
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    EXPECT_LT(cpu, 0.25 * wall) << "the loop used " << cpu << " s of CPU in " << wall
                                << " s while a sendto waited";
    EXPECT_FALSE(sending.done());
    const std::vector<std::string> got = co_await receive_n(receiver_end, n);
    co_await sending;
    for (int i = 0; i < n; ++i) EXPECT_EQ(got[i], numbered(i));
}
