// Streams: connections as a reader and a writer (asyncio.streams).
//
//     auto [reader, writer] = co_await corio::open_connection("example.com", 80);
//     writer.write("GET / HTTP/1.0\r\n\r\n");
//     co_await writer.drain();  // back-pressure: waits while too much is queued
//     std::string status = co_await reader.readline();
//     writer.close();
//     co_await writer.wait_closed();
//
//     corio::Server server = co_await corio::start_server(
//         [](corio::StreamReader reader, corio::StreamWriter writer) -> corio::Coro<> {...},
//         "127.0.0.1", 8080);
//     co_await server.serve_forever();
//
// Reading pulls from the socket when the buffer runs short, so a reader that does not read
// leaves the data in the kernel, and a fast sender is slowed down by TCP itself. Writing
// queues what the socket cannot take at once and sends it in the background; drain() waits
// while more than the high-water mark (64 KiB) is queued and returns once it is down to the
// low-water mark (16 KiB), so a writer's memory stays bounded by the marks it sets.
//
// Errors are the OSError family of corio/errors.hpp (ConnectionResetError, BrokenPipeError,
// ...). A read cancelled in the middle loses nothing: bytes received stay in the buffer for the
// next read. Reader and writer of one connection are handles to the same connection and belong
// to the loop's thread; the connection is closed by writer.close(), or when the last handle goes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/coro.hpp"
#include "corio/locks.hpp"
#include "corio/sockets.hpp"
#include "corio/tasks.hpp"

namespace corio {

inline constexpr std::size_t kDefaultStreamLimit = 64 * 1024;

namespace detail {
struct StreamConnection;
struct ServerState;
struct StreamAccess;
}  // namespace detail

class StreamReader {
  public:
    StreamReader() = default;

    // Up to n bytes (at least one, unless at end of stream, which gives ""); n < 0 reads until
    // the end of the stream.
    Coro<std::string> read(std::ptrdiff_t n = -1);
    // Exactly n bytes; IncompleteReadError (with the bytes that came) if the stream ends first.
    Coro<std::string> readexactly(std::size_t n);
    // Up to and including the next "\n"; at the end of the stream, what is left (maybe "").
    // LimitOverrunError for a line longer than the limit (the line is dropped).
    Coro<std::string> readline();
    // Up to and including `separator`. IncompleteReadError (with what is left, consumed) if the
    // stream ends first; LimitOverrunError if the separator is not within the limit (the data
    // stays in the buffer; consumed() says how much can be skipped).
    Coro<std::string> readuntil(std::string_view separator = "\n");
    // The same with several separators: up to the first one found (Python 3.13).
    Coro<std::string> readuntil(std::vector<std::string> separators);
    // Reads straight into `buffer` (no copy through the stream's buffer when it is empty):
    // the byte count, 0 at the end of the stream. The buffer is written only by the step that
    // returns (never while the read waits), so one buffer may serve every connection of a loop
    // if each task uses the bytes before its next co_await:
    //
    //     static char buffer[65536];  // shared by every connection's echo task
    //     while (std::size_t n = co_await reader.read_into(buffer)) {
    //         writer.write(std::string_view(buffer, n));  // sends, or copies what must wait
    //         co_await writer.drain();
    //     }
    Coro<std::size_t> read_into(std::span<char> buffer);
    // True when the buffer is empty and the peer has closed its side.
    bool at_eof() const noexcept;
    // The limit of readline/readuntil (default 64 KiB).
    std::size_t limit() const noexcept;

    explicit operator bool() const noexcept { return static_cast<bool>(c_); }

  private:
    friend struct detail::StreamAccess;
    explicit StreamReader(std::shared_ptr<detail::StreamConnection> c) : c_(std::move(c)) {}
    std::shared_ptr<detail::StreamConnection> c_;
};

class StreamWriter {
  public:
    StreamWriter() = default;
    StreamWriter(const StreamWriter& other);
    StreamWriter(StreamWriter&& other) noexcept = default;
    StreamWriter& operator=(const StreamWriter& other);
    StreamWriter& operator=(StreamWriter&& other) noexcept;
    // In debug mode, the last writer of a connection dropped without close() or abort() is
    // reported ("unclosed StreamWriter"); the connection is closed all the same.
    ~StreamWriter();

    // Queues `data` and starts sending at once; never waits. Call drain() to apply
    // back-pressure. RuntimeError after close() or write_eof().
    void write(std::string_view data);
    // The same, taking the string: what the socket does not take at once is queued without a
    // copy.
    void write(std::string&& data);
    void write(const char* data);
    void writelines(const std::vector<std::string>& lines);
    // Waits while more than the high-water mark is queued, until it is down to the low-water
    // mark. Raises the error that ended the connection (ConnectionResetError, ...).
    Coro<void> drain();
    // Half-closes: the peer reads end of stream once what is queued has been sent.
    void write_eof();
    bool can_write_eof() const noexcept { return true; }
    // Closes once what is queued has been sent (wait_closed() waits for that).
    void close();
    bool is_closing() const noexcept;
    Coro<void> wait_closed();
    // Closes at once, dropping what is queued (asyncio's transport.abort()).
    void abort();

    // The bytes queued and not yet sent.
    std::size_t buffered() const noexcept;
    // Back-pressure marks: drain() waits above `high` until at most `low` is queued. low
    // defaults to high / 4. ValueError if low > high.
    void set_write_buffer_limits(std::size_t high = 64 * 1024,
                                 std::optional<std::size_t> low = std::nullopt);

    // get_extra_info("peername"), get_extra_info("sockname"); empty for another name.
    std::optional<SocketAddress> get_extra_info(std::string_view name) const;
    // get_extra_info("socket"): the connection's socket.
    const Socket& socket() const;

    explicit operator bool() const noexcept { return static_cast<bool>(c_); }

  private:
    friend struct detail::StreamAccess;
    explicit StreamWriter(std::shared_ptr<detail::StreamConnection> c);
    void drop() noexcept;
    std::shared_ptr<detail::StreamConnection> c_;
};

// A connected reader and writer over `sock` (TCP_NODELAY is set on TCP sockets).
std::pair<StreamReader, StreamWriter> open_stream(Socket sock,
                                                  std::size_t limit = kDefaultStreamLimit);

namespace detail {
// A reader alone over `sock`, for a connection nobody writes to (a child's stdout).
StreamReader open_read_stream(Socket sock, std::size_t limit);
}  // namespace detail

// Connects to host:port with create_connection() (a numeric host is used as it is, without a
// resolver call) and returns the connection's streams. `options` turns on Happy Eyeballs,
// binds to a local address, ...:
//
//     corio::ConnectOptions options{.happy_eyeballs_delay = 250ms};
//     auto [r, w] = co_await corio::open_connection("example.com", 80, options);
Coro<std::pair<StreamReader, StreamWriter>> open_connection(
    std::string host, std::uint16_t port, ConnectOptions options,
    std::size_t limit = kDefaultStreamLimit);
Coro<std::pair<StreamReader, StreamWriter>> open_connection(
    std::string host, std::uint16_t port, std::size_t limit = kDefaultStreamLimit);
Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(
    std::string path, std::size_t limit = kDefaultStreamLimit);

// What start_server runs for each connection, in a task of its own.
using ClientConnected = std::function<Coro<void>(StreamReader, StreamWriter)>;

// A listening server (asyncio.Server). Movable handle; the server stops accepting on close().
class Server {
  public:
    Server() = default;
    Server(Server&&) noexcept = default;
    Server& operator=(Server&&) noexcept = default;
    ~Server();

    // The addresses listened on (asyncio's sockets, as addresses).
    std::vector<SocketAddress> addresses() const;
    const std::vector<Socket>& sockets() const;
    bool is_serving() const noexcept;
    // Stops accepting and closes the listening sockets; connections already accepted go on.
    void close();
    // Waits until the server is closed and every connection it accepted has been closed.
    Coro<void> wait_closed();
    // Serves until cancelled (then closes the server and raises CancelledError) or closed.
    Coro<void> serve_forever();
    // Closes every connection gracefully (queued data is sent first), or at once.
    void close_clients();
    void abort_clients();

  private:
    friend struct detail::StreamAccess;
    explicit Server(std::shared_ptr<detail::ServerState> s) : s_(std::move(s)) {}
    std::shared_ptr<detail::ServerState> s_;
};

// Listens on host:port with create_server() (every address of `host`; "" for all interfaces;
// port 0 picks a free port, see addresses()) and runs `on_client` for each connection.
Coro<Server> start_server(ClientConnected on_client, std::string host, std::uint16_t port,
                          ServerOptions options, std::size_t limit = kDefaultStreamLimit);
Coro<Server> start_server(ClientConnected on_client, std::string host, std::uint16_t port,
                          std::size_t limit = kDefaultStreamLimit, int backlog = 100);
// The same on a Unix-domain socket at `path` (a leading '\0': the abstract namespace), made by
// create_unix_server(), which removes a stale socket file left at the path.
Coro<Server> start_unix_server(ClientConnected on_client, std::string path,
                               std::size_t limit = kDefaultStreamLimit, int backlog = 100);

}  // namespace corio
