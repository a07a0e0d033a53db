// corio streams (asyncio.streams): StreamReader, StreamWriter, open_stream, open_connection,
// open_unix_connection, start_server, start_unix_server and Server.
//
// Every test runs under corio::testing, which fails it when it leaves a descriptor open, a task
// running, an exception unretrieved or work on the loop, and cancels a body that runs past
// kBodyTimeout (so a library that hangs fails instead). Servers bind 127.0.0.1 (or "") on port
// 0, Unix servers a path in a fresh temporary directory or a unique abstract name. Nothing
// synchronises by sleeping: a task is known to wait once the loop has had passes to run it, and
// data is known to be there once a read returned it.
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "corio/testing.hpp"
#include "support.hpp"

using corio_test::is_a;
using corio_test::raised_by;

using namespace std::chrono_literals;
using corio::Server;
using corio::Socket;
using corio::SocketAddress;
using corio::StreamReader;
using corio::StreamWriter;

namespace corio {
// Lets GoogleTest print addresses in failure messages.
void PrintTo(const SocketAddress& a, std::ostream* os) {
    *os << "SocketAddress(\"" << a.to_string() << "\")";
}
}  // namespace corio

namespace {

// A body that hangs is cancelled (and its test failed) after this long.
const corio::Duration kBodyTimeout = std::chrono::seconds(5);

#define STREAM_TEST(suite, name) CORIO_TEST_WITH(suite, name, {.timeout = kBodyTimeout})

// --- connections as streams -------------------------------------------------------------

// One end of a connection.
struct End {
    StreamReader r;
    StreamWriter w;
};

// Both ends of a connection.
struct Link {
    End a;
    End b;
};

End streams_of(Socket s, std::size_t limit = corio::kDefaultStreamLimit) {
    auto [r, w] = corio::open_stream(std::move(s), limit);
    End e;
    e.r = std::move(r);
    e.w = std::move(w);
    return e;
}

std::pair<Socket, Socket> raw_pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::runtime_error("socketpair failed");
    return {Socket::adopt(fds[0]), Socket::adopt(fds[1])};
}

// Keeps the kernel from taking much of what is written: the stream's own queue holds the rest.
void shrink_buffers(Socket& s) {
    s.setsockopt(SOL_SOCKET, SO_SNDBUF, 4096);
    s.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096);
}

// Streams over both ends of a socketpair; b's reader has limit `b_limit`.
Link unix_link(std::size_t b_limit = corio::kDefaultStreamLimit) {
    auto [x, y] = raw_pair();
    Link l;
    l.a = streams_of(std::move(x));
    l.b = streams_of(std::move(y), b_limit);
    return l;
}

// The same with small kernel buffers, so that a large write stays mostly queued in the stream.
Link small_unix_link() {
    auto [x, y] = raw_pair();
    shrink_buffers(x);
    shrink_buffers(y);
    Link l;
    l.a = streams_of(std::move(x));
    l.b = streams_of(std::move(y));
    return l;
}

struct TcpSockets {
    Socket client;
    Socket server;
};

// A TCP connection over 127.0.0.1, as two plain sockets (small kernel buffers if `small`).
corio::Coro<TcpSockets> tcp_sockets(bool small = false) {
    Socket listener(AF_INET, SOCK_STREAM);
    if (small) shrink_buffers(listener);  // inherited by the accepted socket
    listener.bind(SocketAddress::ip("127.0.0.1", 0));
    listener.listen(4);
    TcpSockets t;
    t.client = Socket(AF_INET, SOCK_STREAM);
    if (small) shrink_buffers(t.client);
    co_await corio::sock_connect(t.client, listener.getsockname());
    auto accepted = co_await corio::sock_accept(listener);
    t.server = std::move(accepted.first);
    co_return t;
}

// A TCP connection as streams: a is the connecting end, b the accepted one.
corio::Coro<Link> tcp_link(bool small = false) {
    TcpSockets t = co_await tcp_sockets(small);
    Link l;
    l.a = streams_of(std::move(t.client));
    l.b = streams_of(std::move(t.server));
    co_return l;
}

// Makes the next close() of `fd` reset the connection (RST) instead of closing it in order.
void arm_reset(int fd) {
    linger l{};
    l.l_onoff = 1;
    l.l_linger = 0;
    if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0)
        throw std::runtime_error("SO_LINGER failed");
}

std::string payload(std::size_t size, unsigned seed = 1) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 11)) % 251);
    return s;
}

// got == want, or where they first differ (printing megabytes helps nobody).
::testing::AssertionResult same_bytes(const std::string& got, const std::string& want) {
    if (got == want) return ::testing::AssertionSuccess();
    const auto at = std::mismatch(got.begin(), got.end(), want.begin(), want.end());
    return ::testing::AssertionFailure()
           << "got " << got.size() << " bytes, want " << want.size() << "; they differ from offset "
           << (at.first - got.begin());
}

// --- waiting without sleeping -----------------------------------------------------------

// Lets the loop make `n` passes (each polls for I/O), so that what was woken runs.
corio::Coro<> passes(int n = 8) {
    for (int i = 0; i < n; ++i) co_await corio::sleep(0s);
}

// Pass after pass until `done()` holds; false if it never does (a bound, not a timing guess).
template <class F>
corio::Coro<bool> eventually(F done) {
    for (int i = 0; i < 3000; ++i) {
        if (done()) co_return true;
        co_await corio::sleep(i < 100 ? 0ms : 1ms);
    }
    co_return done();
}

// --- outcomes -----------------------------------------------------------------------------

std::string text(const std::exception_ptr& e) {
    return e ? corio::describe(e) : std::string("nothing");
}

// A copy of the exception `e` holds, if it is an E.
template <class E>
std::optional<E> caught(const std::exception_ptr& e) {
    if (!e) return std::nullopt;
    try {
        std::rethrow_exception(e);
    } catch (const E& x) {
        return x;
    } catch (...) {
    }
    return std::nullopt;
}

// Everything a reader gives until the end of the stream or an error.
struct Drained {
    std::string data;
    std::exception_ptr error;
};

corio::Coro<Drained> drain_reader(StreamReader r, std::size_t chunk = 65536) {
    Drained d;
    for (;;) {
        std::string got;
        try {
            got = co_await r.read(static_cast<std::ptrdiff_t>(chunk));
        } catch (...) {
            d.error = std::current_exception();
        }
        if (d.error || got.empty()) break;
        d.data += got;
    }
    co_return d;
}

// Reads `total` bytes in small pieces, letting the loop run between them (a slow consumer).
corio::Coro<std::string> read_slowly(StreamReader r, std::size_t total) {
    std::string out;
    while (out.size() < total) {
        std::string got = co_await r.read(4096);
        if (got.empty()) break;
        out += got;
        co_await passes(2);
    }
    co_return out;
}

// Drains and records how much was still queued when drain() returned.
corio::Coro<std::size_t> drain_and_measure(StreamWriter w) {
    co_await w.drain();
    co_return w.buffered();
}

// --- servers ------------------------------------------------------------------------------

// Echoes lines until the client ends its side, then closes.
corio::Coro<> echo_lines(StreamReader r, StreamWriter w) {
    for (;;) {
        std::string line = co_await r.readline();
        if (line.empty()) break;
        w.write(line);
        co_await w.drain();
    }
    w.close();
    co_await w.wait_closed();
}

// Connects to 127.0.0.1:port, sends `line`, returns the line that comes back, and closes.
corio::Coro<std::string> echo_once(std::uint16_t port, std::string line) {
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    w.write(line);
    co_await w.drain();
    std::string reply = co_await r.readline();
    w.close();
    co_await w.wait_closed();
    co_return reply;
}

std::uint16_t port_of(const Server& s) {
    const auto addresses = s.addresses();
    return addresses.empty() ? 0 : addresses.front().port();
}

// Shuts a server down completely: closes it, its clients, and waits until all is closed.
corio::Coro<> shut(Server& s) {
    s.close();
    co_await s.wait_closed();
}

// Replaces the loop's exception handler for a scope, collecting what it is given.
class CapturedReports {
  public:
    CapturedReports() : loop_(corio::get_running_loop()), previous_(loop_.get_exception_handler()) {
        loop_.set_exception_handler(
            [this](corio::EventLoop&, const corio::ExceptionContext& c) { contexts.push_back(c); });
    }
    CapturedReports(const CapturedReports&) = delete;
    CapturedReports& operator=(const CapturedReports&) = delete;
    ~CapturedReports() { loop_.set_exception_handler(previous_); }

    std::vector<corio::ExceptionContext> contexts;

  private:
    corio::EventLoop& loop_;
    corio::EventLoop::ExceptionHandler previous_;
};

// A fresh directory for Unix socket paths, removed with everything in it.
class TempDir {
  public:
    TempDir() {
        char name[] = "/tmp/corio-streams-XXXXXX";
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

std::string abstract_name(const std::string& tag) {
    static int counter = 0;
    return std::string(1, '\0') + "corio-streams-" + std::to_string(::getpid()) + "-" + tag + "-" +
           std::to_string(++counter);
}

// A 127.0.0.1 port with nothing listening on it, kept so while `holder` lives.
std::uint16_t refusing_port(Socket& holder) {
    holder = Socket(AF_INET, SOCK_STREAM);
    holder.bind(SocketAddress::ip("127.0.0.1", 0));  // bound, never listening: connects refused
    return holder.getsockname().port();
}

}  // namespace

// === StreamReader: read, readexactly =========================================================

STREAM_TEST(StreamReader, ReadReturnsAtMostNBytesOfWhatIsThere) {
    Link l = unix_link();
    l.a.w.write("hello world");
    EXPECT_EQ(co_await l.b.r.read(5), "hello");
    EXPECT_EQ(co_await l.b.r.read(100), " world");
}

STREAM_TEST(StreamReader, ReadWaitsForAtLeastOneByte) {
    Link l = unix_link();
    auto reading = corio::create_task(l.b.r.read(10), "read");
    co_await passes();
    EXPECT_FALSE(reading.done());
    l.a.w.write("x");
    EXPECT_EQ(co_await reading, "x");
}

STREAM_TEST(StreamReader, ReadGivesEmptyAtTheEndOfTheStreamEachTime) {
    Link l = unix_link();
    l.a.w.write("ab");
    l.a.w.write_eof();
    EXPECT_EQ(co_await l.b.r.read(10), "ab");
    EXPECT_EQ(co_await l.b.r.read(10), "");
    EXPECT_EQ(co_await l.b.r.read(10), "");
    EXPECT_EQ(co_await l.b.r.read(), "");
}

STREAM_TEST(StreamReader, ReadWithoutASizeReadsEverythingUntilTheEnd) {
    Link l = unix_link();
    const std::string data = payload(300 * 1024);  // several times the limit
    l.a.w.write(data);
    l.a.w.close();
    const std::string got = co_await l.b.r.read();
    EXPECT_EQ(got.size(), data.size());
    EXPECT_TRUE(same_bytes(got, data));
    EXPECT_TRUE(l.b.r.at_eof());
    co_await l.a.w.wait_closed();
}

STREAM_TEST(StreamReader, ReadOfZeroReturnsEmptyWithoutWaiting) {
    Link l = unix_link();
    auto reading = corio::create_task(l.b.r.read(0), "read(0)");
    co_await passes(1);
    EXPECT_TRUE(reading.done());
    EXPECT_EQ(co_await reading, "");
    // And it takes nothing that is there.
    l.a.w.write("kept");
    EXPECT_EQ(co_await l.b.r.read(0), "");
    EXPECT_EQ(co_await l.b.r.read(4), "kept");
}

STREAM_TEST(StreamReader, ReadexactlyGathersExactlyNBytesAcrossSends) {
    Link l = unix_link();
    auto reading = corio::create_task(l.b.r.readexactly(6), "readexactly");
    l.a.w.write("abc");
    co_await passes();
    EXPECT_FALSE(reading.done());
    l.a.w.write("defgh");
    EXPECT_EQ(co_await reading, "abcdef");
    EXPECT_EQ(co_await l.b.r.read(10), "gh");
    EXPECT_EQ(co_await l.b.r.readexactly(0), "");
}

STREAM_TEST(StreamReader, ReadexactlyRaisesIncompleteReadErrorWithThePartialBytesAtTheEnd) {
    Link l = unix_link();
    l.a.w.write("abcd");
    l.a.w.write_eof();
    const auto e = caught<corio::IncompleteReadError>(co_await raised_by(l.b.r.readexactly(10)));
    CORIO_ASSERT(e.has_value());
    EXPECT_EQ(e->partial(), "abcd");
    EXPECT_EQ(e->expected(), 10u);
    EXPECT_TRUE(l.b.r.at_eof());
    EXPECT_EQ(co_await l.b.r.read(10), "");
}

// === StreamReader: readline, readuntil =======================================================

STREAM_TEST(StreamReader, ReadlineReturnsEachLineWithItsNewline) {
    Link l = unix_link();
    l.a.w.write("one\ntwo\n\nthree\n");
    EXPECT_EQ(co_await l.b.r.readline(), "one\n");
    EXPECT_EQ(co_await l.b.r.readline(), "two\n");
    EXPECT_EQ(co_await l.b.r.readline(), "\n");
    EXPECT_EQ(co_await l.b.r.readline(), "three\n");
}

STREAM_TEST(StreamReader, ReadlineGivesTheUnterminatedLastLineThenEmpty) {
    Link l = unix_link();
    l.a.w.write("first\ntail");
    l.a.w.write_eof();
    EXPECT_EQ(co_await l.b.r.readline(), "first\n");
    EXPECT_EQ(co_await l.b.r.readline(), "tail");
    EXPECT_TRUE(l.b.r.at_eof());
    EXPECT_EQ(co_await l.b.r.readline(), "");
    EXPECT_EQ(co_await l.b.r.readline(), "");
}

STREAM_TEST(StreamReader, ReadlineWaitsForTheRestOfALineSentInPieces) {
    Link l = unix_link();
    auto reading = corio::create_task(l.b.r.readline(), "readline");
    const std::array<const char*, 4> pieces = {"he", "l", "lo wor", "ld"};
    for (const char* piece : pieces) {
        l.a.w.write(piece);
        co_await passes();
        EXPECT_FALSE(reading.done()) << "after '" << piece << "'";
    }
    l.a.w.write("\nnext");
    EXPECT_EQ(co_await reading, "hello world\n");
}

STREAM_TEST(StreamReader, ReaduntilStopsAfterTheSeparator) {
    Link l = unix_link();
    l.a.w.write("a||b||c");
    l.a.w.write_eof();
    EXPECT_EQ(co_await l.b.r.readuntil("||"), "a||");
    EXPECT_EQ(co_await l.b.r.readuntil("||"), "b||");
    const auto e = caught<corio::IncompleteReadError>(co_await raised_by(l.b.r.readuntil("||")));
    CORIO_ASSERT(e.has_value());
    EXPECT_EQ(e->partial(), "c");
    EXPECT_TRUE(l.b.r.at_eof());
}

STREAM_TEST(StreamReader, ReaduntilFindsASeparatorSplitAcrossSends) {
    Link l = unix_link();
    auto reading = corio::create_task(l.b.r.readuntil("\r\n\r\n"), "readuntil");
    const std::array<const char*, 4> pieces = {"GET / HTTP/1.0\r", "\n", "Host: x\r", "\n\r"};
    for (const char* piece : pieces) {
        l.a.w.write(piece);
        co_await passes();
        EXPECT_FALSE(reading.done()) << "after a piece of " << std::string_view(piece).size();
    }
    l.a.w.write("\nbody");
    EXPECT_EQ(co_await reading, "GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    EXPECT_EQ(co_await l.b.r.read(10), "body");
}

STREAM_TEST(StreamReader, ReaduntilWithSeveralSeparatorsStopsAtTheFirstInTheData) {
    Link l = unix_link();
    l.a.w.write("key=value;next,last;");
    std::vector<std::string> separators;
    separators.emplace_back(",");
    separators.emplace_back(";");
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "key=value;");
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "next,");
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "last;");
}

// asyncio (3.13): "the return value will be the shortest possible that has any separator as the
// suffix", so the separator that ends first wins, not the one that starts first.
STREAM_TEST(StreamReader, ReaduntilWithSeveralSeparatorsReturnsTheShortestChunk) {
    Link l = unix_link();
    l.a.w.write("abcde|abcde|");
    std::vector<std::string> long_first;
    long_first.emplace_back("bcd");
    long_first.emplace_back("c");
    EXPECT_EQ(co_await l.b.r.readuntil(long_first), "abc");  // "c" ends before "bcd" does
    EXPECT_EQ(co_await l.b.r.readuntil("|"), "de|");
    std::vector<std::string> short_first;
    short_first.emplace_back("c");
    short_first.emplace_back("bcd");
    EXPECT_EQ(co_await l.b.r.readuntil(short_first), "abc");
    EXPECT_EQ(co_await l.b.r.readuntil("|"), "de|");
}

STREAM_TEST(StreamReader, ReaduntilWithSeparatorsStartingAtTheSamePlaceTakesTheShorter) {
    Link l = unix_link();
    l.a.w.write("xaby|xaby|");
    std::vector<std::string> longer_listed_first;
    longer_listed_first.emplace_back("ab");
    longer_listed_first.emplace_back("a");
    EXPECT_EQ(co_await l.b.r.readuntil(longer_listed_first), "xa");
    EXPECT_EQ(co_await l.b.r.readuntil("|"), "by|");
    std::vector<std::string> shorter_listed_first;
    shorter_listed_first.emplace_back("a");
    shorter_listed_first.emplace_back("ab");
    EXPECT_EQ(co_await l.b.r.readuntil(shorter_listed_first), "xa");
    EXPECT_EQ(co_await l.b.r.readuntil("|"), "by|");
}

STREAM_TEST(StreamReader, ReaduntilWithSeparatorsEndingAtTheSamePlaceReturnsTheSameChunk) {
    Link l = unix_link();
    l.a.w.write("dos\r\nunix\nmore\r\n");
    std::vector<std::string> separators;
    separators.emplace_back("\n");
    separators.emplace_back("\r\n");
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "dos\r\n");
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "unix\n");
    std::reverse(separators.begin(), separators.end());
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "more\r\n");
}

STREAM_TEST(StreamReader, ReaduntilWithSeveralSeparatorsFindsOneSplitAcrossSends) {
    Link l = unix_link();
    std::vector<std::string> separators;
    separators.emplace_back("END");
    separators.emplace_back("STOP");
    auto reading = corio::create_task(l.b.r.readuntil(separators), "readuntil");
    const std::array<const char*, 3> pieces = {"data S", "T", "O"};
    for (const char* piece : pieces) {
        l.a.w.write(piece);
        co_await passes();
        EXPECT_FALSE(reading.done()) << "after '" << piece << "'";
    }
    l.a.w.write("PEND");
    EXPECT_EQ(co_await reading, "data STOP");
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "END");
}

STREAM_TEST(StreamReader, ReaduntilWithSeveralSeparatorsRaisesIncompleteReadErrorAtTheEnd) {
    Link l = unix_link();
    l.a.w.write("no separator here");
    l.a.w.write_eof();
    std::vector<std::string> separators;
    separators.emplace_back("\r\n");
    separators.emplace_back("|");
    const auto e =
        caught<corio::IncompleteReadError>(co_await raised_by(l.b.r.readuntil(separators)));
    CORIO_ASSERT(e.has_value());
    EXPECT_EQ(e->partial(), "no separator here");
    EXPECT_TRUE(l.b.r.at_eof());
}

STREAM_TEST(StreamReader, ReaduntilRejectsEmptySeparatorsWithValueError) {
    Link l = unix_link();
    l.a.w.write("data\n");
    EXPECT_TRUE(is_a<corio::ValueError>(co_await raised_by(l.b.r.readuntil(""))));
    std::vector<std::string> none;
    EXPECT_TRUE(is_a<corio::ValueError>(co_await raised_by(l.b.r.readuntil(none))));
    std::vector<std::string> one_empty;
    one_empty.emplace_back("\n");
    one_empty.emplace_back("");
    EXPECT_TRUE(is_a<corio::ValueError>(co_await raised_by(l.b.r.readuntil(one_empty))));
    // Nothing was consumed.
    EXPECT_EQ(co_await l.b.r.readline(), "data\n");
}

// === StreamReader: limit =====================================================================

STREAM_TEST(StreamReaderLimit, TheDefaultLimitIs64KiBAndOpenStreamTakesAnother) {
    EXPECT_EQ(corio::kDefaultStreamLimit, 64u * 1024u);
    Link l = unix_link(100);
    EXPECT_EQ(l.a.r.limit(), 64u * 1024u);
    EXPECT_EQ(l.b.r.limit(), 100u);
    auto [x, y] = raw_pair();
    EXPECT_THROW(corio::open_stream(std::move(x), 0), corio::ValueError);
    EXPECT_THROW(corio::open_stream(Socket(), 16), corio::ValueError);
    co_return;
}

STREAM_TEST(StreamReaderLimit, TheDefaultLimitBoundsReadline) {
    Link l = unix_link();
    const std::string fits = std::string(65535, 'a') + "\n";
    l.a.w.write(fits);
    const std::string line = co_await l.b.r.readline();
    EXPECT_EQ(line.size(), fits.size());
    EXPECT_TRUE(same_bytes(line, fits));
    l.a.w.write(std::string(70000, 'b'));  // no newline
    EXPECT_TRUE(is_a<corio::LimitOverrunError>(co_await raised_by(l.b.r.readline())));
    l.a.w.close();
    const std::string rest = co_await l.b.r.read();  // what was not dropped with the buffer
    EXPECT_LT(rest.size(), 70000u - 65536u);
    co_await l.a.w.wait_closed();
}

STREAM_TEST(StreamReaderLimit, ReaduntilBeyondTheLimitRaisesAndLeavesTheDataInTheBuffer) {
    Link l = unix_link(8);
    l.a.w.write("0123456789\nrest");
    const auto e = caught<corio::LimitOverrunError>(co_await raised_by(l.b.r.readuntil("\n")));
    CORIO_ASSERT(e.has_value());
    EXPECT_EQ(e->consumed(), 10u);  // where the separator starts
    EXPECT_EQ(co_await l.b.r.readexactly(11), "0123456789\n");
    EXPECT_EQ(co_await l.b.r.read(10), "rest");
}

STREAM_TEST(StreamReaderLimit, ReaduntilWithoutTheSeparatorInTheLimitRaisesAndKeepsTheData) {
    Link l = unix_link(8);
    l.a.w.write("0123456789abcdef");  // one send: one receive takes it all
    const auto e = caught<corio::LimitOverrunError>(co_await raised_by(l.b.r.readuntil("\n")));
    CORIO_ASSERT(e.has_value());
    EXPECT_EQ(e->consumed(), 16u);  // none of the 16 bytes starts the separator
    EXPECT_EQ(co_await l.b.r.read(100), "0123456789abcdef");
}

// asyncio: "Limit sets the maximal length of data that can be returned, not counting the
// separator" (it raises only when the separator starts beyond the limit).
STREAM_TEST(StreamReaderLimit, TheLimitDoesNotCountTheSeparator) {
    Link l = unix_link(8);
    l.a.w.write("01234567\n");
    EXPECT_EQ(co_await l.b.r.readline(), "01234567\n");
    auto reading = corio::create_task(l.b.r.readuntil("\r\n"), "readuntil");
    l.a.w.write("abcdefgh\r");  // 9 bytes, but the separator may still start at the 9th
    co_await passes();
    EXPECT_FALSE(reading.done());
    l.a.w.write("\n");
    const std::exception_ptr e = co_await raised_by(reading);
    EXPECT_FALSE(e) << text(e);
    if (!e) {
        EXPECT_EQ(reading.result(), "abcdefgh\r\n");
    }
}

STREAM_TEST(StreamReaderLimit, ALineOneByteOverTheLimitIsAnOverrun) {
    Link l = unix_link(8);
    l.a.w.write("012345678\nok\n");
    const auto e = caught<corio::LimitOverrunError>(co_await raised_by(l.b.r.readline()));
    CORIO_ASSERT(e.has_value());
    EXPECT_EQ(e->consumed(), 9u);
    EXPECT_EQ(co_await l.b.r.readline(), "ok\n");
}

STREAM_TEST(StreamReaderLimit, ReadlineDropsAnOverlongLineAndTheNextLineIsReadable) {
    Link l = unix_link(8);
    l.a.w.write("this line is too long\nnext\n");
    EXPECT_TRUE(is_a<corio::LimitOverrunError>(co_await raised_by(l.b.r.readline())));
    EXPECT_EQ(co_await l.b.r.readline(), "next\n");
}

STREAM_TEST(StreamReaderLimit, ReadlineDropsWhatIsBufferedOfAnOverlongUnterminatedLine) {
    Link l = unix_link(8);
    l.a.w.write("0123456789abc");
    EXPECT_TRUE(is_a<corio::LimitOverrunError>(co_await raised_by(l.b.r.readline())));
    l.a.w.write("tail\nnext\n");
    EXPECT_EQ(co_await l.b.r.readline(), "tail\n");
    EXPECT_EQ(co_await l.b.r.readline(), "next\n");
}

STREAM_TEST(StreamReaderLimit, ReadAndReadexactlyAreNotBoundByTheLimit) {
    Link l = unix_link(8);
    l.a.w.write("0123456789abcdefghij");
    EXPECT_EQ(co_await l.b.r.readexactly(12), "0123456789ab");
    EXPECT_EQ(co_await l.b.r.read(100), "cdefghij");
}

// === StreamReader: at_eof, read_into, one reader at a time ===================================

STREAM_TEST(StreamReader, AtEofOnlyOnceTheEndWasReachedAndTheBufferIsEmpty) {
    Link l = unix_link();
    EXPECT_FALSE(l.b.r.at_eof());
    l.a.w.write("a\nb");
    l.a.w.write_eof();
    EXPECT_EQ(co_await l.b.r.readline(), "a\n");
    EXPECT_FALSE(l.b.r.at_eof());  // "b" is still to be read
    EXPECT_EQ(co_await l.b.r.read(), "b");
    EXPECT_TRUE(l.b.r.at_eof());
    EXPECT_FALSE(StreamReader().at_eof());
}

STREAM_TEST(StreamReader, ReadIntoTakesTheBufferFirstThenReadsTheSocket) {
    Link l = unix_link();
    l.a.w.write("hello\nworld");
    EXPECT_EQ(co_await l.b.r.readline(), "hello\n");  // "world" stays buffered
    std::array<char, 3> small{};
    EXPECT_EQ(co_await l.b.r.read_into(small), 3u);
    EXPECT_EQ(std::string_view(small.data(), 3), "wor");
    std::array<char, 64> big{};
    EXPECT_EQ(co_await l.b.r.read_into(big), 2u);  // only what was buffered, no wait for more
    EXPECT_EQ(std::string_view(big.data(), 2), "ld");
    auto waiting = corio::create_task(l.b.r.read_into(big), "read_into");
    co_await passes();
    EXPECT_FALSE(waiting.done());
    l.a.w.write("direct");
    EXPECT_EQ(co_await waiting, 6u);
    EXPECT_EQ(std::string_view(big.data(), 6), "direct");
    EXPECT_EQ(co_await l.b.r.read_into(std::span<char>()), 0u);
    l.a.w.write("after");
    l.a.w.write_eof();
    EXPECT_EQ(co_await l.b.r.readexactly(5), "after");  // the streams' reads still agree
    EXPECT_EQ(co_await l.b.r.read_into(big), 0u);
    EXPECT_TRUE(l.b.r.at_eof());
}

// A connection with nothing buffered receives into a buffer its thread shares with the other
// connections; what a read leaves over must be its own before anyone else receives.
STREAM_TEST(StreamReader, BytesLeftOverByAReadSurviveOtherConnectionsReadingInBetween) {
    Link one = unix_link();
    Link two = unix_link();
    one.a.w.write("first\nleft over by one");
    two.a.w.write(payload(60000, 3));
    co_await passes();
    EXPECT_EQ(co_await one.b.r.readline(), "first\n");
    // Another connection's receive, into the same thread buffer, in the same task.
    EXPECT_TRUE(same_bytes(co_await two.b.r.readexactly(60000), payload(60000, 3)));
    EXPECT_EQ(co_await one.b.r.read(100), "left over by one");
    // The same with a task per connection, both woken in one pass of the loop.
    auto reader = [](StreamReader r) -> corio::Coro<std::string> {
        std::string line = co_await r.readuntil("|");
        co_await corio::sleep(0s);  // the other task receives meanwhile
        co_return line + co_await r.read(100);
    };
    auto a = corio::create_task(reader(one.b.r), "one");
    auto b = corio::create_task(reader(two.b.r), "two");
    co_await passes();
    one.a.w.write("1111|aaaa");
    two.a.w.write("2222|bbbb");
    EXPECT_EQ(co_await a, "1111|aaaa");
    EXPECT_EQ(co_await b, "2222|bbbb");
}

STREAM_TEST(StreamReader, ReadIntoOneBufferSharedByConnectionsGivesEachItsOwnBytes) {
    // read_into() receives from the reading task's own step, never leaving the buffer with the
    // loop while it waits: one buffer can serve every connection of a loop, as long as each
    // task uses the bytes before its next co_await (as an echo server does).
    std::vector<Link> links;
    for (int i = 0; i < 4; ++i) links.push_back(unix_link());
    std::array<char, 64> shared{};
    std::vector<std::string> got(links.size());
    std::vector<corio::Task<>> readers;
    for (std::size_t i = 0; i < links.size(); ++i) {
        auto read_one = [](StreamReader r, std::span<char> buffer,
                           std::string& out) -> corio::Coro<> {
            const std::size_t n = co_await r.read_into(buffer);
            out.assign(buffer.data(), n);
        };
        readers.push_back(corio::create_task(read_one(links[i].b.r, shared, got[i]), "reader"));
    }
    co_await passes();  // all four wait
    for (std::size_t i = 0; i < links.size(); ++i)
        links[i].a.w.write("connection " + std::to_string(i));
    for (auto& t : readers) co_await t;
    for (std::size_t i = 0; i < links.size(); ++i)
        EXPECT_EQ(got[i], "connection " + std::to_string(i));
}

STREAM_TEST(StreamReader, ASecondReadWhileOneWaitsRaisesRuntimeError) {
    Link l = unix_link();
    auto first = corio::create_task(l.b.r.read(10), "first read");
    co_await passes();
    CORIO_ASSERT(!first.done());
    std::array<char, 8> buf{};
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(l.b.r.read(10))));
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(l.b.r.read())));
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(l.b.r.readexactly(1))));
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(l.b.r.readline())));
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(l.b.r.readuntil("x"))));
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(l.b.r.read_into(buf))));
    // The waiting read was not disturbed, and a read is allowed again once it is done.
    l.a.w.write("data\n");
    EXPECT_EQ(co_await first, "data\n");
    l.a.w.write("more\n");
    EXPECT_EQ(co_await l.b.r.readline(), "more\n");
}

STREAM_TEST(StreamReader, EmptyHandlesAreFalseAndRaiseRuntimeError) {
    StreamReader r;
    StreamWriter w;
    EXPECT_FALSE(r);
    EXPECT_FALSE(w);
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(r.read(1))));
    EXPECT_THROW(w.write("x"), corio::RuntimeError);
    Link l = unix_link();
    EXPECT_TRUE(l.a.r);
    EXPECT_TRUE(l.a.w);
}

// === Cancellation loses no data ==============================================================

STREAM_TEST(StreamCancellation, ACancelledReadexactlyLeavesTheBytesItGotForTheNextRead) {
    Link l = unix_link();
    auto reading = corio::create_task(l.b.r.readexactly(10), "readexactly");
    co_await passes();
    l.a.w.write("012345");
    co_await passes();  // the six bytes are taken in; the read waits for four more
    CORIO_ASSERT(!reading.done());
    reading.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(reading)));
    l.a.w.write("6789");
    EXPECT_EQ(co_await l.b.r.readexactly(10), "0123456789");
}

STREAM_TEST(StreamCancellation, AReadlineCancelledMidLineLeavesTheLineWhole) {
    Link l = unix_link();
    auto reading = corio::create_task(l.b.r.readline(), "readline");
    l.a.w.write("partial");
    co_await passes();
    CORIO_ASSERT(!reading.done());
    reading.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(reading)));
    l.a.w.write(" line\nnext\n");
    EXPECT_EQ(co_await l.b.r.readline(), "partial line\n");
    EXPECT_EQ(co_await l.b.r.readline(), "next\n");
}

STREAM_TEST(StreamCancellation, AReadlineThatTimesOutLosesNothing) {
    Link l = unix_link();
    l.a.w.write("abc");
    EXPECT_TRUE(
        is_a<corio::TimeoutError>(co_await raised_by(corio::wait_for(l.b.r.readline(), 20ms))));
    l.a.w.write("def\nghi\n");
    EXPECT_EQ(co_await l.b.r.readline(), "abcdef\n");
    EXPECT_EQ(co_await l.b.r.readline(), "ghi\n");
}

STREAM_TEST(StreamCancellation, AReaduntilOfSeveralSeparatorsCancelledKeepsItsData) {
    Link l = unix_link();
    std::vector<std::string> separators;
    separators.emplace_back("\r\n");
    separators.emplace_back("||");
    auto reading = corio::create_task(l.b.r.readuntil(separators), "readuntil");
    l.a.w.write("header|");
    co_await passes();
    CORIO_ASSERT(!reading.done());
    reading.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(reading)));
    l.a.w.write("|rest");
    EXPECT_EQ(co_await l.b.r.readuntil(separators), "header||");
    EXPECT_EQ(co_await l.b.r.read(4), "rest");
}

STREAM_TEST(StreamCancellation, CancelledWaitingReadsLeaveTheStreamUsable) {
    Link l = unix_link();
    std::array<char, 16> buf{};
    auto into = corio::create_task(l.b.r.read_into(buf), "read_into");
    co_await passes();
    into.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(into)));
    auto plain = corio::create_task(l.b.r.read(16), "read");
    co_await passes();
    plain.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(plain)));
    l.a.w.write("all of it");
    EXPECT_EQ(co_await l.b.r.readexactly(9), "all of it");
}

// === StreamWriter: write, drain, back-pressure ===============================================

STREAM_TEST(StreamWriter, WriteThenDrainDeliversTheData) {
    Link l = unix_link();
    l.a.w.write("ping\n");
    co_await l.a.w.drain();
    EXPECT_EQ(l.a.w.buffered(), 0u);
    EXPECT_EQ(co_await l.b.r.readline(), "ping\n");
    l.a.w.write("");  // nothing to send is fine
    co_await l.a.w.drain();
}

STREAM_TEST(StreamWriter, DrainWaitsWhileThePeerDoesNotReadThenReturnsAtTheLowMark) {
    Link l = small_unix_link();
    l.a.w.set_write_buffer_limits(64 * 1024, 16 * 1024);
    const std::string data = payload(512 * 1024);
    l.a.w.write(data);
    EXPECT_GT(l.a.w.buffered(), 64u * 1024u);
    auto draining = corio::create_task(drain_and_measure(l.a.w), "drain");
    co_await passes(20);
    EXPECT_FALSE(draining.done());
    EXPECT_GT(l.a.w.buffered(), 64u * 1024u);  // nothing moves while the peer does not read
    const std::string got = co_await read_slowly(l.b.r, data.size());
    CORIO_ASSERT(draining.done());
    EXPECT_LE(draining.result(), 16u * 1024u);
    EXPECT_TRUE(same_bytes(got, data));
}

STREAM_TEST(StreamWriter, DrainReturnsAtOnceUnderTheHighMark) {
    Link l = small_unix_link();
    l.a.w.set_write_buffer_limits(1024 * 1024);
    l.a.w.write(payload(256 * 1024));
    EXPECT_GT(l.a.w.buffered(), 0u);
    auto draining = corio::create_task(l.a.w.drain(), "drain");
    co_await passes(1);
    EXPECT_TRUE(draining.done());
    co_await draining;
    const std::string got = co_await read_slowly(l.b.r, 256 * 1024);
    EXPECT_EQ(got.size(), 256u * 1024u);
}

STREAM_TEST(StreamWriter, TheLowMarkDefaultsToAQuarterOfTheHighMark) {
    Link l = small_unix_link();
    l.a.w.set_write_buffer_limits(32 * 1024);
    const std::string data = payload(256 * 1024);
    l.a.w.write(data);
    auto draining = corio::create_task(drain_and_measure(l.a.w), "drain");
    co_await passes();
    EXPECT_FALSE(draining.done());
    const std::string got = co_await read_slowly(l.b.r, data.size());
    CORIO_ASSERT(draining.done());
    EXPECT_LE(draining.result(), 8u * 1024u);
    EXPECT_TRUE(same_bytes(got, data));
}

STREAM_TEST(StreamWriter, WithAHighMarkOfZeroDrainWaitsUntilEverythingIsSent) {
    Link l = small_unix_link();
    l.a.w.set_write_buffer_limits(0);
    const std::string data = payload(128 * 1024);
    l.a.w.write(data);
    auto draining = corio::create_task(drain_and_measure(l.a.w), "drain");
    const std::string got = co_await read_slowly(l.b.r, data.size());
    co_await draining;
    EXPECT_EQ(draining.result(), 0u);
    EXPECT_TRUE(same_bytes(got, data));
}

STREAM_TEST(StreamWriter, SetWriteBufferLimitsRejectsALowMarkAboveTheHighMark) {
    Link l = unix_link();
    EXPECT_THROW(l.a.w.set_write_buffer_limits(100, 200), corio::ValueError);
    EXPECT_NO_THROW(l.a.w.set_write_buffer_limits(100, 100));
    EXPECT_NO_THROW(l.a.w.set_write_buffer_limits(0, 0));
    co_return;
}

STREAM_TEST(StreamWriter, AProducerThatDrainsKeepsTheQueueWithinTheMarks) {
    Link l = small_unix_link();
    const std::size_t high = 32 * 1024;
    const std::size_t chunk = 8 * 1024;
    l.a.w.set_write_buffer_limits(high, 8 * 1024);
    const std::string data = payload(1024 * 1024);
    auto consumer = corio::create_task(read_slowly(l.b.r, data.size()), "consumer");
    std::size_t most_after_write = 0;
    std::size_t most_after_drain = 0;
    for (std::size_t at = 0; at < data.size(); at += chunk) {
        l.a.w.write(std::string_view(data).substr(at, chunk));
        most_after_write = std::max(most_after_write, l.a.w.buffered());
        co_await l.a.w.drain();
        most_after_drain = std::max(most_after_drain, l.a.w.buffered());
    }
    EXPECT_LE(most_after_write, high + chunk);
    EXPECT_LE(most_after_drain, high);
    EXPECT_GT(most_after_write, high);  // the producer did outrun the consumer
    EXPECT_TRUE(same_bytes(co_await consumer, data));
}

STREAM_TEST(StreamWriter, SeveralTasksDrainingAtOnceAllWake) {
    Link l = small_unix_link();
    const std::string data = payload(256 * 1024);
    l.a.w.write(data);
    std::vector<corio::Task<>> drainers;
    for (int i = 0; i < 3; ++i) drainers.push_back(corio::create_task(l.a.w.drain(), "drain"));
    co_await passes();
    for (auto& d : drainers) EXPECT_FALSE(d.done());
    const std::string got = co_await read_slowly(l.b.r, data.size());
    EXPECT_TRUE(co_await eventually([&] {
        return std::all_of(drainers.begin(), drainers.end(), [](auto& d) { return d.done(); });
    }));
    for (auto& d : drainers) EXPECT_FALSE(co_await raised_by(d));
    EXPECT_TRUE(same_bytes(got, data));
}

STREAM_TEST(StreamWriter, WritelinesWritesEachPieceInOrder) {
    Link l = unix_link();
    std::vector<std::string> lines;
    lines.emplace_back("a\n");
    lines.emplace_back("");
    lines.emplace_back("bb\n");
    lines.emplace_back("ccc");
    l.a.w.writelines(lines);
    l.a.w.close();
    EXPECT_EQ(co_await l.b.r.read(), "a\nbb\nccc");
}

// === StreamWriter: write_eof, close, abort ===================================================

STREAM_TEST(StreamWriter, WriteEofEndsTheStreamForThePeerAndLeavesReadingOpen) {
    Link l = unix_link();
    EXPECT_TRUE(l.a.w.can_write_eof());
    l.a.w.write("request");
    l.a.w.write_eof();
    EXPECT_FALSE(l.a.w.is_closing());
    EXPECT_EQ(co_await l.b.r.read(), "request");
    EXPECT_TRUE(l.b.r.at_eof());
    l.b.w.write("response");
    l.b.w.close();
    EXPECT_EQ(co_await l.a.r.read(), "response");
}

STREAM_TEST(StreamWriter, WriteEofSendsWhatIsQueuedFirst) {
    Link l = small_unix_link();
    const std::string data = payload(300 * 1024);
    l.a.w.write(data);
    EXPECT_GT(l.a.w.buffered(), 0u);
    l.a.w.write_eof();
    const std::string got = co_await l.b.r.read();
    EXPECT_EQ(got.size(), data.size());
    EXPECT_TRUE(same_bytes(got, data));
    l.b.w.write("still open");
    l.b.w.write_eof();
    EXPECT_EQ(co_await l.a.r.read(), "still open");
}

STREAM_TEST(StreamWriter, WriteAfterCloseOrWriteEofRaisesRuntimeError) {
    Link l = unix_link();
    l.a.w.write_eof();
    EXPECT_THROW(l.a.w.write("x"), corio::RuntimeError);
    EXPECT_EQ(co_await l.b.r.read(), "");  // the write_eof arrived; nothing else did
    l.b.w.close();
    EXPECT_THROW(l.b.w.write("x"), corio::RuntimeError);
    std::vector<std::string> lines;
    lines.emplace_back("y");
    EXPECT_THROW(l.b.w.writelines(lines), corio::RuntimeError);
    EXPECT_THROW(l.b.w.write(""), corio::RuntimeError);
    co_await l.b.w.wait_closed();
}

STREAM_TEST(StreamWriter, CloseSendsWhatIsQueuedThenEndsTheStream) {
    Link l = small_unix_link();
    const std::string data = payload(512 * 1024);
    l.a.w.write(data);
    EXPECT_GT(l.a.w.buffered(), 0u);
    EXPECT_FALSE(l.a.w.is_closing());
    l.a.w.close();
    EXPECT_TRUE(l.a.w.is_closing());
    const Drained got = co_await drain_reader(l.b.r);
    EXPECT_FALSE(got.error) << text(got.error);
    EXPECT_EQ(got.data.size(), data.size());
    EXPECT_TRUE(same_bytes(got.data, data));
    co_await l.a.w.wait_closed();
    EXPECT_EQ(l.a.w.buffered(), 0u);
}

STREAM_TEST(StreamWriter, WaitClosedWaitsUntilTheQueueIsSentAndTheSocketClosed) {
    Link l = small_unix_link();
    const std::string data = payload(256 * 1024);
    l.a.w.write(data);
    l.a.w.close();
    auto closing = corio::create_task(l.a.w.wait_closed(), "wait_closed");
    co_await passes();
    EXPECT_FALSE(closing.done());
    EXPECT_TRUE(l.a.w.socket());  // still open: there is data to send
    const std::string got = co_await l.b.r.read();
    EXPECT_TRUE(same_bytes(got, data));
    co_await closing;
    EXPECT_FALSE(l.a.w.socket());
    co_await l.a.w.wait_closed();  // again: at once
}

STREAM_TEST(StreamWriter, ClosingEndsAReadWaitingOnTheSameConnectionWithTheEndOfTheStream) {
    // asyncio: closing the transport feeds EOF to its reader, so a pending read returns.
    Link l = unix_link();
    auto reading = corio::create_task(l.a.r.readline(), "readline");
    co_await passes();
    CORIO_ASSERT(!reading.done());
    l.a.w.close();
    const std::exception_ptr e = co_await raised_by(reading);
    EXPECT_FALSE(e) << text(e);
    if (!e) {
        EXPECT_EQ(reading.result(), "");
    }
    co_await l.a.w.wait_closed();
    // And a read after the close gives the end of the stream too.
    const std::exception_ptr later = co_await raised_by(l.a.r.read(10));
    EXPECT_FALSE(later) << text(later);
}

STREAM_TEST(StreamWriter, DroppingBothHandlesClosesTheConnection) {
    auto [x, y] = raw_pair();
    End b = streams_of(std::move(y));
    {
        End a = streams_of(std::move(x));
        a.w.write("last words");
    }
    EXPECT_EQ(co_await b.r.read(), "last words");
}

STREAM_TEST(StreamWriter, WhatIsQueuedIsStillSentAfterTheHandlesAreDropped) {
    auto [x, y] = raw_pair();
    shrink_buffers(x);
    shrink_buffers(y);
    End b = streams_of(std::move(y));
    const std::string data = payload(256 * 1024);
    {
        End a = streams_of(std::move(x));
        a.w.write(data);
        EXPECT_GT(a.w.buffered(), 0u);
    }
    const Drained got = co_await drain_reader(b.r);
    EXPECT_FALSE(got.error) << text(got.error);
    EXPECT_TRUE(same_bytes(got.data, data));
}

STREAM_TEST(StreamWriter, AbortDropsWhatIsQueuedAndThePeerSeesAReset) {
    Link l = co_await tcp_link(/*small=*/true);
    const std::string data = payload(1024 * 1024);
    l.a.w.write(data);
    EXPECT_GT(l.a.w.buffered(), 0u);
    l.a.w.abort();
    EXPECT_EQ(l.a.w.buffered(), 0u);
    EXPECT_TRUE(l.a.w.is_closing());
    const Drained got = co_await drain_reader(l.b.r);
    EXPECT_TRUE(is_a<corio::ConnectionResetError>(got.error));
    EXPECT_LT(got.data.size(), data.size());
    EXPECT_TRUE(same_bytes(got.data, data.substr(0, got.data.size())));
    co_await l.a.w.wait_closed();
}

STREAM_TEST(StreamWriter, DrainRaisesAConnectionErrorOnceThePeerHasGone) {
    auto [x, y] = raw_pair();
    End a = streams_of(std::move(x));
    y.close();
    a.w.write("into the void");  // no SIGPIPE: the test process would die
    const std::exception_ptr e = co_await raised_by(a.w.drain());
    EXPECT_TRUE(is_a<corio::ConnectionError>(e));
    EXPECT_TRUE(is_a<corio::ConnectionError>(co_await raised_by(a.w.drain())));  // sticks
    a.w.write("more");                                                           // no throw
    a.w.close();
    co_await a.w.wait_closed();
}

STREAM_TEST(StreamWriter, DrainAfterThePeerResetRaisesResetOrBrokenPipe) {
    TcpSockets t = co_await tcp_sockets();
    End a = streams_of(std::move(t.client));
    arm_reset(t.server.fileno());
    t.server.close();
    std::exception_ptr e;
    for (int i = 0; i < 200 && !e; ++i) {  // the reset arrives: a write then fails
        a.w.write("x");
        e = co_await raised_by(a.w.drain());
        if (!e) co_await corio::sleep(1ms);
    }
    EXPECT_TRUE(corio::holds<corio::ConnectionResetError>(e) ||
                corio::holds<corio::BrokenPipeError>(e))
        << text(e);
}

STREAM_TEST(StreamWriter, ExtraInfoGivesTheAddressesOfTheSocket) {
    TcpSockets t = co_await tcp_sockets();
    const SocketAddress client_name = t.client.getsockname();
    const SocketAddress server_name = t.server.getsockname();
    End c = streams_of(std::move(t.client));
    End s = streams_of(std::move(t.server));
    EXPECT_EQ(c.w.get_extra_info("sockname"), client_name);
    EXPECT_EQ(c.w.get_extra_info("peername"), server_name);
    EXPECT_EQ(s.w.get_extra_info("sockname"), server_name);
    EXPECT_EQ(s.w.get_extra_info("peername"), client_name);
    EXPECT_EQ(c.w.get_extra_info("peername"), c.w.socket().getpeername());
    EXPECT_EQ(c.w.get_extra_info("sockname"), c.w.socket().getsockname());
    EXPECT_FALSE(c.w.get_extra_info("cipher").has_value());
    co_return;
}

STREAM_TEST(StreamWriter, ExtraInfoStillAnswersAfterClose) {
    // asyncio records the addresses when the connection is made.
    TcpSockets t = co_await tcp_sockets();
    const SocketAddress client_name = t.client.getsockname();
    const SocketAddress server_name = t.server.getsockname();
    End c = streams_of(std::move(t.client));
    c.w.close();
    co_await c.w.wait_closed();
    EXPECT_EQ(c.w.get_extra_info("peername"), server_name);
    EXPECT_EQ(c.w.get_extra_info("sockname"), client_name);
}

STREAM_TEST(StreamWriter, TcpStreamsHaveNoDelaySet) {
    Link l = co_await tcp_link();
    EXPECT_NE(l.a.w.socket().getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
    EXPECT_NE(l.b.w.socket().getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
    Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(SocketAddress::ip("127.0.0.1", 0));
    listener.listen(4);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", listener.getsockname().port());
    EXPECT_NE(w.socket().getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
    w.close();
    co_await w.wait_closed();
}

// === Connecting ===============================================================================

STREAM_TEST(OpenConnection, ConnectsToANumericAddress) {
    Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(SocketAddress::ip("127.0.0.1", 0));
    listener.listen(4);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", listener.getsockname().port());
    auto accepted = co_await corio::sock_accept(listener);
    End server = streams_of(std::move(accepted.first));
    EXPECT_EQ(w.get_extra_info("sockname"), accepted.second);
    w.write("hello\n");
    EXPECT_EQ(co_await server.r.readline(), "hello\n");
    server.w.write("hi\n");
    EXPECT_EQ(co_await r.readline(), "hi\n");
    w.close();
    co_await w.wait_closed();
}

STREAM_TEST(OpenConnection, ResolvesAHostNameAndTriesEachAddress) {
    // Only 127.0.0.1 listens: if "localhost" also gives ::1, that attempt is refused first.
    Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(SocketAddress::ip("127.0.0.1", 0));
    listener.listen(4);
    auto [r, w] = co_await corio::open_connection("localhost", listener.getsockname().port());
    auto accepted = co_await corio::sock_accept(listener);
    End server = streams_of(std::move(accepted.first));
    EXPECT_EQ(w.get_extra_info("peername"), listener.getsockname());
    w.write("resolved\n");
    EXPECT_EQ(co_await server.r.readline(), "resolved\n");
    w.close();
    co_await w.wait_closed();
}

STREAM_TEST(OpenConnection, AClosedPortRaisesConnectionRefusedError) {
    Socket holder;
    const std::uint16_t port = refusing_port(holder);
    EXPECT_TRUE(is_a<corio::ConnectionRefusedError>(
        co_await raised_by(corio::open_connection("127.0.0.1", port))));
}

STREAM_TEST(OpenConnection, AnUnresolvableHostRaisesAnOSError) {
    EXPECT_TRUE(is_a<corio::OSError>(
        co_await raised_by(corio::open_connection("no-such-host.invalid", 80))));
}

STREAM_TEST(OpenConnection, OpenUnixConnectionConnectsToAPathAndAnAbstractName) {
    TempDir dir;
    std::vector<std::string> paths;
    paths.push_back(dir.file("s.sock"));
    paths.push_back(abstract_name("open"));
    for (const std::string& path : paths) {
        Socket listener(AF_UNIX, SOCK_STREAM);
        listener.bind(SocketAddress::unix_path(path));
        listener.listen(4);
        auto [r, w] = co_await corio::open_unix_connection(path);
        auto accepted = co_await corio::sock_accept(listener);
        End server = streams_of(std::move(accepted.first));
        w.write("over unix\n");
        EXPECT_EQ(co_await server.r.readline(), "over unix\n");
        server.w.write("back\n");
        EXPECT_EQ(co_await r.readline(), "back\n");
        EXPECT_EQ(w.get_extra_info("peername"), SocketAddress::unix_path(path));
        w.close();
        co_await w.wait_closed();
    }
}

STREAM_TEST(OpenConnection, OpenUnixConnectionToAMissingPathRaisesAnOSError) {
    TempDir dir;
    const auto e = caught<corio::OSError>(
        co_await raised_by(corio::open_unix_connection(dir.file("missing.sock"))));
    CORIO_ASSERT(e.has_value());
    EXPECT_EQ(e->code(), ENOENT);
}

STREAM_TEST(PeerBehaviour, APeerThatResetsMidStreamMakesTheReaderRaiseConnectionResetError) {
    TcpSockets t = co_await tcp_sockets();
    End a = streams_of(std::move(t.client));
    co_await corio::sock_sendall(t.server, "hello\n");
    EXPECT_EQ(co_await a.r.readline(), "hello\n");
    co_await corio::sock_sendall(t.server, "half a li");
    arm_reset(t.server.fileno());
    t.server.close();
    std::exception_ptr e;
    std::string got;
    for (int i = 0; i < 3 && !e; ++i) {  // the bytes before the reset may come first
        try {
            got += co_await a.r.readline();
        } catch (...) {
            e = std::current_exception();
        }
    }
    EXPECT_TRUE(is_a<corio::ConnectionResetError>(e)) << "read '" << got << "'";
}

STREAM_TEST(PeerBehaviour, AResetWhileReadexactlyWaitsRaisesConnectionResetError) {
    TcpSockets t = co_await tcp_sockets();
    End a = streams_of(std::move(t.client));
    auto reading = corio::create_task(a.r.readexactly(100), "readexactly");
    co_await passes();
    arm_reset(t.server.fileno());
    t.server.close();
    EXPECT_TRUE(is_a<corio::ConnectionResetError>(co_await raised_by(reading)));
}

STREAM_TEST(PeerBehaviour, APeerThatHalfClosesStillReceivesTheReply) {
    TcpSockets t = co_await tcp_sockets();
    End a = streams_of(std::move(t.client));
    co_await corio::sock_sendall(t.server, "question");
    t.server.shutdown(SHUT_WR);
    EXPECT_EQ(co_await a.r.read(), "question");
    EXPECT_TRUE(a.r.at_eof());
    a.w.write("answer");
    a.w.close();
    co_await a.w.wait_closed();
    std::string got;
    for (;;) {
        std::string chunk = co_await corio::sock_recv(t.server, 64);
        if (chunk.empty()) break;
        got += chunk;
    }
    EXPECT_EQ(got, "answer");
}

// === start_server =============================================================================

STREAM_TEST(Server, EchoesForAHundredConcurrentClients) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    const std::uint16_t port = port_of(s);
    std::vector<corio::Task<std::string>> clients;
    for (int i = 0; i < 100; ++i)
        clients.push_back(
            corio::create_task(echo_once(port, "client " + std::to_string(i) + "\n"), "client"));
    const std::vector<std::string> replies = co_await corio::gather(clients);
    CORIO_ASSERT(replies.size() == 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(replies[i], "client " + std::to_string(i) + "\n");
    co_await shut(s);
}

namespace {

struct Seen {
    std::optional<SocketAddress> peer;
    int nodelay = 0;
    std::size_t limit = 0;
    corio::Event connected;
};

corio::Coro<> note_and_echo(std::shared_ptr<Seen> seen, StreamReader r, StreamWriter w) {
    seen->peer = w.get_extra_info("peername");
    seen->nodelay = w.socket().getsockopt(IPPROTO_TCP, TCP_NODELAY);
    seen->limit = r.limit();
    seen->connected.set();
    co_await echo_lines(std::move(r), std::move(w));
}

}  // namespace

STREAM_TEST(Server, AddressesSocketsAndTheConnectionsItHandsOver) {
    auto seen = std::make_shared<Seen>();
    corio::ClientConnected cb = [seen](StreamReader r, StreamWriter w) {
        return note_and_echo(seen, std::move(r), std::move(w));
    };
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0, /*limit=*/1000);
    EXPECT_TRUE(s.is_serving());
    const auto addresses = s.addresses();
    CORIO_ASSERT(addresses.size() == 1u);
    EXPECT_EQ(addresses[0].host(), "127.0.0.1");
    EXPECT_NE(addresses[0].port(), 0);
    CORIO_ASSERT(s.sockets().size() == 1u);
    EXPECT_EQ(s.sockets()[0].getsockname(), addresses[0]);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", addresses[0].port());
    co_await seen->connected.wait();
    EXPECT_EQ(seen->peer, w.get_extra_info("sockname"));
    EXPECT_NE(seen->nodelay, 0);
    EXPECT_EQ(seen->limit, 1000u);
    w.write("x\n");
    EXPECT_EQ(co_await r.readline(), "x\n");
    w.close();
    co_await w.wait_closed();
    co_await shut(s);
    EXPECT_FALSE(s.is_serving());
}

STREAM_TEST(Server, AnEmptyHostListensOnAllInterfaces) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "", 0);
    const auto addresses = s.addresses();
    CORIO_ASSERT(!addresses.empty());
    EXPECT_EQ(s.sockets().size(), addresses.size());
    std::optional<SocketAddress> any4;
    for (const SocketAddress& a : addresses) {
        if (a.family() == AF_INET) any4 = a;
    }
    CORIO_ASSERT(any4.has_value());
    EXPECT_EQ(any4->host(), "0.0.0.0");
    EXPECT_EQ(co_await echo_once(any4->port(), "everywhere\n"), "everywhere\n");
    co_await shut(s);
}

STREAM_TEST(Server, ASilentClientDoesNotHoldUpOthers) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [silent_r, silent_w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    co_await passes();
    EXPECT_EQ(co_await echo_once(port_of(s), "one\n"), "one\n");
    EXPECT_EQ(co_await echo_once(port_of(s), "two\n"), "two\n");
    silent_w.close();
    co_await silent_w.wait_closed();
    co_await shut(s);
}

namespace {

corio::Coro<> fail_on_request(StreamReader r, StreamWriter w) {
    std::string line = co_await r.readline();
    if (line == "fail\n") {
        w.write("bye\n");
        throw std::runtime_error("the callback failed");
    }
    w.write(line);
    co_await w.drain();
    co_await echo_lines(std::move(r), std::move(w));
}

}  // namespace

STREAM_TEST(Server, AnExceptionInTheCallbackIsReportedAndClosesOnlyThatConnection) {
    CapturedReports reports;
    corio::ClientConnected cb = fail_on_request;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    w.write("fail\n");
    EXPECT_EQ(co_await r.readline(), "bye\n");
    const Drained rest = co_await drain_reader(r);  // the connection ends (EOF or a reset)
    EXPECT_EQ(rest.data, "");
    EXPECT_TRUE(!rest.error || corio::holds<corio::ConnectionResetError>(rest.error))
        << text(rest.error);
    CORIO_ASSERT(reports.contexts.size() == 1u);
    EXPECT_EQ(reports.contexts[0].message, "Unhandled exception in client_connected_cb");
    EXPECT_TRUE(is_a<std::runtime_error>(reports.contexts[0].exception));
    // The server goes on serving.
    EXPECT_TRUE(s.is_serving());
    EXPECT_EQ(co_await echo_once(port_of(s), "still here\n"), "still here\n");
    w.close();
    co_await w.wait_closed();
    co_await shut(s);
    EXPECT_EQ(reports.contexts.size(), 1u);
}

STREAM_TEST(Server, CloseStopsAcceptingWhileAcceptedConnectionsGoOn) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    const std::uint16_t port = port_of(s);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port);
    w.write("one\n");
    EXPECT_EQ(co_await r.readline(), "one\n");
    s.close();
    EXPECT_FALSE(s.is_serving());
    EXPECT_TRUE(is_a<corio::ConnectionRefusedError>(
        co_await raised_by(corio::open_connection("127.0.0.1", port))));
    w.write("two\n");
    EXPECT_EQ(co_await r.readline(), "two\n");
    s.close();  // again: nothing more happens
    w.close();
    co_await w.wait_closed();
    co_await s.wait_closed();
}

STREAM_TEST(Server, WaitClosedWaitsForTheOpenConnectionsToClose) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    w.write("hi\n");
    EXPECT_EQ(co_await r.readline(), "hi\n");
    s.close();
    auto waiting = corio::create_task(s.wait_closed(), "wait_closed");
    co_await passes();
    EXPECT_FALSE(waiting.done());
    w.close();  // the server's side sees the end and closes too
    co_await w.wait_closed();
    co_await waiting;
}

namespace {

struct Bulk {
    std::string data;
    std::size_t queued = 0;
    corio::Event written;
};

// Writes a large payload (small kernel buffers: most of it stays queued) and waits until closed.
corio::Coro<> send_bulk(std::shared_ptr<Bulk> bulk, StreamReader, StreamWriter w) {
    const int small = 32 * 1024;
    ::setsockopt(w.socket().fileno(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    w.write(bulk->data);
    bulk->queued = w.buffered();
    bulk->written.set();
    co_await w.wait_closed();
}

}  // namespace

STREAM_TEST(Server, CloseClientsClosesEachConnectionAfterItsQueuedData) {
    auto bulk = std::make_shared<Bulk>();
    bulk->data = payload(1024 * 1024);
    corio::ClientConnected cb = [bulk](StreamReader r, StreamWriter w) {
        return send_bulk(bulk, std::move(r), std::move(w));
    };
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    co_await bulk->written.wait();
    EXPECT_GT(bulk->queued, 0u);
    s.close();
    s.close_clients();
    const Drained got = co_await drain_reader(r);
    EXPECT_FALSE(got.error) << text(got.error);
    EXPECT_EQ(got.data.size(), bulk->data.size());
    EXPECT_TRUE(same_bytes(got.data, bulk->data));
    co_await s.wait_closed();
    w.close();
    co_await w.wait_closed();
}

STREAM_TEST(Server, CloseClientsEndsTheReadsOfIdleHandlersWithTheEndOfTheStream) {
    // The echo handlers wait in readline(); asyncio's close_clients() makes it return "", so
    // the handlers end without an error (an error would be reported by the loop).
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    w.write("hi\n");
    EXPECT_EQ(co_await r.readline(), "hi\n");
    co_await passes();  // the handler waits for the next line
    s.close();
    s.close_clients();
    const Drained got = co_await drain_reader(r);
    EXPECT_EQ(got.data, "");
    EXPECT_FALSE(got.error) << text(got.error);
    co_await s.wait_closed();
    w.close();
    co_await w.wait_closed();
}

STREAM_TEST(Server, AbortClientsResetsEachConnectionDroppingItsQueue) {
    auto bulk = std::make_shared<Bulk>();
    bulk->data = payload(1024 * 1024);
    corio::ClientConnected cb = [bulk](StreamReader r, StreamWriter w) {
        return send_bulk(bulk, std::move(r), std::move(w));
    };
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    co_await bulk->written.wait();
    EXPECT_GT(bulk->queued, 0u);
    s.close();
    s.abort_clients();
    co_await s.wait_closed();
    const Drained got = co_await drain_reader(r);
    EXPECT_TRUE(is_a<corio::ConnectionResetError>(got.error));
    EXPECT_LT(got.data.size(), bulk->data.size());
    w.close();
    co_await w.wait_closed();
}

namespace {

// A handler that notes it started, waits for a line (a silent client never sends one) and
// records how the wait ended.
struct SilentClient {
    corio::Event waiting;
    corio::Event ended;
    std::string line = "(not returned)";
    std::exception_ptr error;
};

corio::Coro<> await_a_line(std::shared_ptr<SilentClient> seen, StreamReader r, StreamWriter w) {
    seen->waiting.set();
    try {
        seen->line = co_await r.readline();
    } catch (...) {
        seen->error = std::current_exception();
    }
    seen->ended.set();
    w.close();
    co_await w.wait_closed();
}

}  // namespace

STREAM_TEST(Server, CloseClientsEndsTheHandlerOfAClientThatNeverSentAnything) {
    CapturedReports reports;
    auto seen = std::make_shared<SilentClient>();
    corio::ClientConnected cb = [seen](StreamReader r, StreamWriter w) {
        return await_a_line(seen, std::move(r), std::move(w));
    };
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    co_await seen->waiting.wait();  // the handler went on into readline() and waits there
    co_await passes();
    EXPECT_FALSE(seen->ended.is_set());
    s.close();
    s.close_clients();
    co_await seen->ended.wait();
    EXPECT_EQ(seen->line, "");  // the end of the stream, not an error
    EXPECT_FALSE(seen->error) << text(seen->error);
    const Drained got = co_await drain_reader(r);
    EXPECT_EQ(got.data, "");
    EXPECT_FALSE(got.error) << text(got.error);
    co_await s.wait_closed();
    w.close();
    co_await w.wait_closed();
    EXPECT_TRUE(reports.contexts.empty());
}

STREAM_TEST(Server, AbortClientsEndsTheHandlerOfAClientThatNeverSentAnything) {
    CapturedReports reports;
    auto seen = std::make_shared<SilentClient>();
    corio::ClientConnected cb = [seen](StreamReader r, StreamWriter w) {
        return await_a_line(seen, std::move(r), std::move(w));
    };
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    co_await seen->waiting.wait();
    co_await passes();
    EXPECT_FALSE(seen->ended.is_set());
    s.close();
    s.abort_clients();
    co_await seen->ended.wait();
    EXPECT_EQ(seen->line, "");  // closed under the read: the end of the stream, as asyncio
    EXPECT_FALSE(seen->error) << text(seen->error);
    co_await s.wait_closed();
    const Drained got = co_await drain_reader(r);
    EXPECT_EQ(got.data, "");
    EXPECT_TRUE(is_a<corio::ConnectionResetError>(got.error));
    w.close();
    co_await w.wait_closed();
    EXPECT_TRUE(reports.contexts.empty());
}

// --- out of descriptors ------------------------------------------------------------------------

namespace {

// Tests that wait out the server's 1 s accept pause get more room than kBodyTimeout.
const corio::Duration kSlowBodyTimeout = std::chrono::seconds(30);

// The CPU time this thread (the loop's) has used, in seconds.
double thread_cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_THREAD, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// How many descriptors this process has open.
rlim_t open_descriptor_count() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) throw std::runtime_error("cannot list /proc/self/fd");
    const int own = ::dirfd(dir);
    rlim_t n = 0;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != ".." && name != std::to_string(own)) ++n;
    }
    ::closedir(dir);
    return n;
}

// Lowers the soft RLIMIT_NOFILE for its lifetime; restores it however the scope ends.
class SoftDescriptorLimit {
  public:
    explicit SoftDescriptorLimit(rlim_t soft) {
        if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0)
            throw std::runtime_error("getrlimit(RLIMIT_NOFILE) failed");
        rlimit lowered = saved_;
        lowered.rlim_cur = soft;
        if (::setrlimit(RLIMIT_NOFILE, &lowered) != 0)
            throw std::runtime_error("setrlimit(RLIMIT_NOFILE) failed");
    }
    SoftDescriptorLimit(const SoftDescriptorLimit&) = delete;
    SoftDescriptorLimit& operator=(const SoftDescriptorLimit&) = delete;
    ~SoftDescriptorLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

  private:
    rlimit saved_{};
};

// Takes every free descriptor under the soft limit (opening /dev/null until EMFILE), so that
// the next descriptor anybody asks for fails with EMFILE; gives them back on release() or at
// the end of its scope.
class DescriptorTable {
  public:
    DescriptorTable() = default;
    DescriptorTable(const DescriptorTable&) = delete;
    DescriptorTable& operator=(const DescriptorTable&) = delete;
    ~DescriptorTable() { release(); }

    // True once open() said EMFILE (false for any other failure, or after `bound` opens).
    bool fill(std::size_t bound) {
        while (held_.size() < bound) {
            const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd < 0) return errno == EMFILE;
            held_.push_back(fd);
        }
        return false;
    }
    void release() noexcept {
        for (const int fd : held_) ::close(fd);
        held_.clear();
    }
    std::size_t held() const noexcept { return held_.size(); }

  private:
    std::vector<int> held_;
};

bool is_out_of_descriptors_report(const corio::ExceptionContext& c) {
    const auto error = caught<corio::OSError>(c.exception);
    return c.message == "socket.accept() out of system resource" && error &&
           error->code() == EMFILE;
}

}  // namespace

CORIO_TEST_WITH(Server, OutOfDescriptorsItPausesAcceptingWithoutSpinningThenServesAgain,
                {.timeout = kSlowBodyTimeout}) {
    // ENFILE (the system-wide table) is not tested: filling it would hurt the whole machine.
    CapturedReports reports;
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    const std::uint16_t port = port_of(s);
    // The client's socket exists before the table is full: connecting needs no descriptor, and
    // the connection completes in the listener's backlog although the server cannot accept it.
    Socket client(AF_INET, SOCK_STREAM);
    constexpr std::size_t kRoom = 16;
    SoftDescriptorLimit limit(open_descriptor_count() + kRoom);
    DescriptorTable table;
    CORIO_ASSERT(table.fill(/*bound=*/100000));  // the next open()/accept() fails with EMFILE
    EXPECT_GE(table.held(), kRoom);
    const auto full_since = std::chrono::steady_clock::now();
    co_await corio::sock_connect(client, SocketAddress::ip("127.0.0.1", port));
    auto [r, w] = corio::open_stream(std::move(client));
    w.write("sent while the table was full\n");

    // The server tried, failed with EMFILE and reported it.
    auto reported = [&reports] { return !reports.contexts.empty(); };
    CORIO_ASSERT(co_await eventually(reported));
    EXPECT_TRUE(is_out_of_descriptors_report(reports.contexts[0]))
        << reports.contexts[0].message << ": " << text(reports.contexts[0].exception);

    // While the table stays full the loop sleeps: a server retrying accept() at once would use
    // all of the time on the CPU, an idle loop next to nothing.
    auto reply = corio::create_task(r.readline(), "reply");
    const auto wall_start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    co_await corio::sleep(300ms);
    const double cpu = thread_cpu_seconds() - cpu_start;
    const double wall = seconds_since(wall_start);
    EXPECT_LT(cpu, 0.25 * wall) << "the loop used " << cpu << " s of CPU in " << wall
                                << " s while accept() failed with EMFILE";
    EXPECT_TRUE(s.is_serving());
    EXPECT_FALSE(reply.done());
    // One attempt on arrival, then one a second (the pause), whatever the machine's speed.
    const std::size_t attempts = reports.contexts.size();
    EXPECT_LE(static_cast<double>(attempts), 2.0 + seconds_since(full_since))
        << attempts << " failed accept() attempts in " << seconds_since(full_since) << " s";
    for (const corio::ExceptionContext& c : reports.contexts)
        EXPECT_TRUE(is_out_of_descriptors_report(c)) << c.message << ": " << text(c.exception);

    // Descriptors free up: the waiting connection is accepted after the pause, and served.
    table.release();
    const auto freed_at = std::chrono::steady_clock::now();
    std::vector<corio::Task<std::string>> replies{reply};
    co_await corio::wait(std::move(replies), corio::ALL_COMPLETED, 5s);  // a timeout: below
    const double took = seconds_since(freed_at);
    if (!reply.done()) {
        ADD_FAILURE() << "the connection made while the table was full was not served within "
                      << took << " s of descriptors freeing up";
        reply.cancel();
    }
    const std::exception_ptr failed = co_await raised_by(reply);
    if (!failed) {
        EXPECT_EQ(reply.result(), "sent while the table was full\n");
    } else {
        EXPECT_TRUE(reply.cancelled()) << text(failed);
    }
    // And new connections are accepted at once.
    std::string second = "(no reply within 5 s)";
    auto second_client = echo_once(port, "a new client\n");
    try {
        second = co_await corio::wait_for(std::move(second_client), 5s);
    } catch (const corio::TimeoutError&) {
    }
    EXPECT_EQ(second, "a new client\n");
    EXPECT_TRUE(s.is_serving());
    EXPECT_EQ(reports.contexts.size(), attempts);  // no failure once there was room
    w.close();
    co_await w.wait_closed();
    co_await shut(s);
}

STREAM_TEST(Server, ServeForeverReturnsOnceClosedAndItsConnectionsAreGone) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    auto serving = corio::create_task(s.serve_forever(), "serve_forever");
    auto [r, w] = co_await corio::open_connection("127.0.0.1", port_of(s));
    w.write("hi\n");
    EXPECT_EQ(co_await r.readline(), "hi\n");
    co_await passes();
    EXPECT_FALSE(serving.done());
    s.close();
    co_await passes();
    EXPECT_FALSE(serving.done());  // a connection is still open
    w.close();
    co_await w.wait_closed();
    EXPECT_FALSE(co_await raised_by(serving));
    co_await s.wait_closed();
}

STREAM_TEST(Server, CancellingServeForeverClosesTheServer) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    const std::uint16_t port = port_of(s);
    auto serving = corio::create_task(s.serve_forever(), "serve_forever");
    co_await passes();
    CORIO_ASSERT(!serving.done());
    serving.cancel();
    EXPECT_TRUE(is_a<corio::CancelledError>(co_await raised_by(serving)));
    EXPECT_FALSE(s.is_serving());
    EXPECT_TRUE(is_a<corio::ConnectionRefusedError>(
        co_await raised_by(corio::open_connection("127.0.0.1", port))));
    co_await s.wait_closed();
}

STREAM_TEST(Server, ServeForeverOnAClosedServerRaisesRuntimeError) {
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_server(cb, "127.0.0.1", 0);
    co_await shut(s);
    EXPECT_TRUE(is_a<corio::RuntimeError>(co_await raised_by(s.serve_forever())));
}

STREAM_TEST(Server, StartServerWithoutACallbackRaisesValueError) {
    corio::ClientConnected none;
    EXPECT_TRUE(
        is_a<corio::ValueError>(co_await raised_by(corio::start_server(none, "127.0.0.1", 0))));
    TempDir dir;
    EXPECT_TRUE(is_a<corio::ValueError>(
        co_await raised_by(corio::start_unix_server(none, dir.file("s.sock")))));
}

STREAM_TEST(Server, AnEmptyServerHandleIsHarmless) {
    Server s;
    EXPECT_FALSE(s.is_serving());
    EXPECT_TRUE(s.addresses().empty());
    EXPECT_TRUE(s.sockets().empty());
    s.close();
    s.close_clients();
    s.abort_clients();
    co_await s.wait_closed();
}

STREAM_TEST(UnixServer, EchoesOverAPath) {
    TempDir dir;
    const std::string path = dir.file("echo.sock");
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_unix_server(cb, path);
    EXPECT_TRUE(s.is_serving());
    CORIO_ASSERT(s.addresses().size() == 1u);
    EXPECT_EQ(s.addresses()[0], SocketAddress::unix_path(path));
    EXPECT_TRUE(std::filesystem::exists(path));
    auto [r1, w1] = co_await corio::open_unix_connection(path);
    auto [r2, w2] = co_await corio::open_unix_connection(path);
    w2.write("second\n");
    w1.write("first\n");
    EXPECT_EQ(co_await r1.readline(), "first\n");
    EXPECT_EQ(co_await r2.readline(), "second\n");
    w1.close();
    w2.close();
    co_await w1.wait_closed();
    co_await w2.wait_closed();
    co_await shut(s);
    EXPECT_FALSE(s.is_serving());
}

STREAM_TEST(UnixServer, EchoesOverAnAbstractName) {
    const std::string name = abstract_name("server");
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_unix_server(cb, name);
    auto [r, w] = co_await corio::open_unix_connection(name);
    w.write("abstract\n");
    EXPECT_EQ(co_await r.readline(), "abstract\n");
    w.close();
    co_await w.wait_closed();
    co_await shut(s);
}

STREAM_TEST(UnixServer, ClosingStopsAcceptingOnThePath) {
    TempDir dir;
    const std::string path = dir.file("closing.sock");
    corio::ClientConnected cb = echo_lines;
    Server s = co_await corio::start_unix_server(cb, path);
    co_await shut(s);
    EXPECT_TRUE(is_a<corio::OSError>(co_await raised_by(corio::open_unix_connection(path))));
}
