#include "corio/streams.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "corio/detail/io.hpp"

namespace corio {

namespace detail {

// Room per receive (not zero-filled).
inline constexpr std::size_t kReceiveChunk = 64 * 1024;

// The thread's receive buffer (StreamConnection::fill), shared by the connections of the loop
// running on the thread.
inline char* receive_buffer() {
    thread_local const std::unique_ptr<char[]> buffer =
        std::make_unique_for_overwrite<char[]>(kReceiveChunk);
    return buffer.get();
}

// One connection, shared by its reader, its writer and the task that sends what is queued.
struct StreamConnection : std::enable_shared_from_this<StreamConnection> {
    Socket sock;
    std::size_t limit = kDefaultStreamLimit;

    // Reading: base()[in_begin, in_end) has been received and not yet read. It is in `in`, the
    // connection's own buffer (a plain array: growing a std::string would zero-fill every
    // receive's room), or, while `borrowed`, in the thread's receive buffer (receive_buffer()):
    // a connection with nothing buffered waits for data without holding any buffer, and a
    // receive that the read consumes whole is never copied twice. Borrowed bytes are moved to
    // `in` before the reading task can be suspended (settle()).
    std::unique_ptr<char[]> in;
    std::size_t in_cap = 0;
    std::size_t in_begin = 0;
    std::size_t in_end = 0;
    bool borrowed = false;
    bool drained = false;  // the last receive came back short: wait before the next one
    bool eof = false;
    bool reading = false;

    // Writing: what is queued is inflight[inflight_pos, ...) (being sent: the pending Send
    // points into it, so nothing else may touch it) followed by out (appended by write()).
    std::string inflight;
    std::size_t inflight_pos = 0;
    std::string out;
    std::size_t high = 64 * 1024;
    std::size_t low = 16 * 1024;
    bool sending = false;     // the sender task runs
    bool eof_wanted = false;  // write_eof() was called
    bool eof_sent = false;
    bool closing = false;  // close() was called
    bool closed = false;
    std::uint32_t writers = 0;  // StreamWriter handles (debug mode reports the last one dropped)
    std::exception_ptr write_error;
    Event below_low;  // set while at most `low` bytes are queued (or the writing failed)
    Event done;       // set once the socket is closed
    std::function<void()> on_close;  // the server's bookkeeping, if any

    StreamConnection() { below_low.set(); }
    ~StreamConnection() { finish_close(); }

    std::size_t available() const noexcept { return in_end - in_begin; }
    char* base() const noexcept { return borrowed ? receive_buffer() : in.get(); }
    std::string_view unread() const noexcept { return {base() + in_begin, available()}; }
    std::size_t queued() const noexcept { return inflight.size() - inflight_pos + out.size(); }
    // Also for the peer's name and ours, which stay known after the socket is closed.
    std::optional<SocketAddress> peername;
    std::optional<SocketAddress> sockname;

    std::string take(std::size_t n) {
        std::string s(base() + in_begin, n);
        consume(n);
        return s;
    }
    void consume(std::size_t n) noexcept {
        in_begin += n;
        if (in_begin == in_end) in_begin = in_end = 0;
    }

    static constexpr std::size_t kChunk = kReceiveChunk;

    // Makes room in `in` for at least `want` bytes after the unread data; returns the room there
    // is. Not while borrowed.
    std::size_t reserve(std::size_t want) {
        if (in_cap - in_end >= want) return in_cap - in_end;
        const std::size_t have = available();
        if (in_begin > 0 && in_cap - have >= want) {  // slide the unread data to the front
            std::memmove(in.get(), in.get() + in_begin, have);
        } else {
            const std::size_t cap = std::max(in_cap * 2, have + want);
            auto bigger = std::make_unique_for_overwrite<char[]>(cap);
            if (have > 0) std::memcpy(bigger.get(), in.get() + in_begin, have);
            in = std::move(bigger);
            in_cap = cap;
        }
        in_begin = 0;
        in_end = have;
        return in_cap - in_end;
    }

    // Moves unread borrowed bytes into `in`: the thread's receive buffer is another
    // connection's as soon as this task is suspended or its read returns.
    void settle() {
        if (!borrowed) return;
        const std::size_t have = available();
        const std::size_t from = in_begin;
        borrowed = false;
        in_begin = in_end = 0;
        if (have == 0) return;
        reserve(have);
        std::memcpy(in.get(), receive_buffer() + from, have);
        in_end = have;
    }

    // Receives more; false at the end of the stream.
    Coro<bool> fill() {
        if (closed) eof = true;  // closed here: the reads end as at the end of the stream
        if (eof) co_return false;
        settle();
        ssize_t n;
        std::size_t room;
        if (available() == 0) {
            // Nothing buffered: no buffer is held while waiting (an idle connection costs only
            // its state), and the receive lands in the thread's buffer.
            if (drained) {  // about to wait: a buffer kept from earlier reads is not needed
                in.reset();
                in_cap = 0;
            }
            room = kChunk;
            do {
                n = co_await receive(receive_buffer(), room);
            } while (n == -EAGAIN);
            if (n > 0) {
                borrowed = true;
                in_begin = 0;
                in_end = static_cast<std::size_t>(n);
            }
        } else {
            room = reserve(kChunk);
            n = co_await IoAwaiter(IoOp::Kind::Read, sock.fileno(), in.get() + in_end, room,
                                   !drained);
            if (n > 0) in_end += static_cast<std::size_t>(n);
        }
        drained = n >= 0 && static_cast<std::size_t>(n) < room;
        if (n < 0 && closed) n = 0;  // closed while the read waited (as asyncio: end of stream)
        if (n < 0) throw_os_error(static_cast<int>(-n), "recv");
        if (n == 0) eof = true;
        co_return n > 0;
    }

    // Receives into `buffer` from the reading task's own step (after waiting for readability
    // if the last receive came back short): unlike an IoOp Read, the backend never holds the
    // buffer, so one buffer can serve every connection of the thread. co_await gives bytes,
    // or -errno; -EAGAIN when woken for nothing, to be awaited again.
    struct Receive {
        // Suspends through `readable`, which handles cancellation: no wrapper needed.
        static constexpr bool corio_cancel_aware = true;
        StreamConnection& c;
        char* buffer;
        std::size_t size;
        IoAwaiter readable{IoOp::Kind::Readable, -1, nullptr, 0};
        ssize_t result = -EAGAIN;

        bool attempt() noexcept {
            do {
                result = ::recv(c.sock.fileno(), buffer, size, 0);
            } while (result < 0 && errno == EINTR);
            if (result < 0) result = -errno;
            if (result == -EWOULDBLOCK) result = -EAGAIN;
            if (result == -EAGAIN) c.drained = true;
            return result != -EAGAIN;
        }
        bool await_ready() noexcept { return !c.drained && attempt(); }
        bool await_suspend(std::coroutine_handle<> h) {
            readable.fd = c.sock.fileno();
            return readable.await_suspend(h);
        }
        ssize_t await_resume() {
            if (result != -EAGAIN) return result;  // received without waiting
            const ssize_t r = readable.await_resume();
            if (r < 0) return r;
            c.drained = false;
            attempt();
            return result;
        }
    };
    Receive receive(char* buffer, std::size_t size) noexcept {
        return Receive{*this, buffer, size};
    }

    // One reader at a time, as asyncio requires.
    struct ReadScope {
        StreamConnection& c;
        ReadScope(StreamConnection& conn, const char* what) : c(conn) {
            if (c.reading)
                throw RuntimeError(std::string(what) +
                                   "() called while another task is already waiting for data");
            c.reading = true;
        }
        ~ReadScope() {
            c.reading = false;
            c.settle();  // a read that returns may leave bytes behind: into the connection's own
        }
    };

    void update_marks() {
        if (queued() <= low || write_error) {
            below_low.set();
        } else if (queued() > high) {
            below_low.clear();
        }
    }

    // `owned`, when given, holds `data`: what the socket does not take at once is then queued
    // by moving the string rather than copying the rest of it.
    void write(std::string_view data, std::string* owned = nullptr) {
        if (closing || closed) throw RuntimeError("write() after close()");
        if (eof_wanted) throw RuntimeError("write() after write_eof()");
        if (write_error || data.empty()) return;  // drain() reports the error
        if (queued() == 0) {
            // Try at once: most writes go out without queueing anything.
            ssize_t n;
            do {
                n = ::send(sock.fileno(), data.data(), data.size(), MSG_NOSIGNAL);
            } while (n < 0 && errno == EINTR);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                record_error(errno);
                return;
            }
            const std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
            if (sent == data.size()) return;
            if (owned != nullptr) {
                // Nothing is queued, so no send is pending on `inflight`: it can be replaced.
                inflight = std::move(*owned);
                inflight_pos = sent;
            } else {
                out.assign(data.substr(sent));
            }
        } else if (owned != nullptr && out.empty()) {
            out = std::move(*owned);
        } else {
            out.append(data);
        }
        update_marks();
        start_sending();
    }

    void record_error(int err) {
        try {
            throw_os_error(err, "send");
        } catch (...) {
            write_error = std::current_exception();
        }
        clear_queue();
        update_marks();  // drain() wakes to raise the error
    }

    void start_sending();

    void clear_queue() noexcept {
        inflight.clear();
        inflight_pos = 0;
        out.clear();
    }

    // What write_eof() and close() do once the queue is empty.
    void after_flush() {
        if (eof_wanted && !eof_sent && !closed) {
            ::shutdown(sock.fileno(), SHUT_WR);
            eof_sent = true;
        }
        if (closing) finish_close();
    }

    void finish_close() noexcept {
        if (closed) return;
        closed = true;
        sock.close();  // fails a pending Send first, so its buffer can go
        clear_queue();
        below_low.set();
        done.set();
        if (on_close) std::exchange(on_close, nullptr)();
    }
};

// The private constructors and members of the handles, for this file.
struct StreamAccess {
    static StreamReader reader(std::shared_ptr<StreamConnection> c) {
        return StreamReader(std::move(c));
    }
    static StreamWriter writer(std::shared_ptr<StreamConnection> c) {
        return StreamWriter(std::move(c));
    }
    static const std::shared_ptr<StreamConnection>& of(const StreamWriter& w) { return w.c_; }
    static Server server(std::shared_ptr<ServerState> s) { return Server(std::move(s)); }
};

namespace {

Coro<void> send_queued(std::shared_ptr<StreamConnection> c) {
    while (c->queued() > 0 && !c->closed) {
        if (c->inflight_pos == c->inflight.size()) {
            // Take what write() queued as the next chunk to send; write() goes on appending to
            // a fresh `out` (the old inflight buffer, whose capacity is kept).
            c->inflight.clear();
            c->inflight_pos = 0;
            std::swap(c->inflight, c->out);
        }
        const ssize_t n = co_await IoAwaiter(IoOp::Kind::Send, c->sock.fileno(),
                                             c->inflight.data() + c->inflight_pos,
                                             c->inflight.size() - c->inflight_pos);
        if (c->closed) break;
        if (n < 0) {
            c->record_error(static_cast<int>(-n));
            break;
        }
        c->inflight_pos += static_cast<std::size_t>(n);
        c->update_marks();
    }
    c->sending = false;
    if (c->queued() == 0 && !c->closed) {
        c->clear_queue();
        c->after_flush();
    }
}

}  // namespace

void StreamConnection::start_sending() {
    if (sending) return;
    sending = true;
    // The task holds the connection until the queue is sent, even if the writer is dropped.
    create_task(send_queued(shared_from_this()), "stream writer");
}

}  // namespace detail

// --- StreamReader
// ---------------------------------------------------------------------------------

namespace {

detail::StreamConnection& conn(const std::shared_ptr<detail::StreamConnection>& c) {
    if (!c) throw RuntimeError("empty corio stream handle");
    return *c;
}

}  // namespace

Coro<std::string> StreamReader::read(std::ptrdiff_t n) {
    detail::StreamConnection& c = conn(c_);
    auto keep = c_;
    detail::StreamConnection::ReadScope scope(c, "read");
    if (n == 0) co_return std::string();
    if (n < 0) {
        while (co_await c.fill()) {
        }
        co_return c.take(c.available());
    }
    if (c.available() == 0) co_await c.fill();
    co_return c.take(std::min(c.available(), static_cast<std::size_t>(n)));
}

Coro<std::string> StreamReader::readexactly(std::size_t n) {
    detail::StreamConnection& c = conn(c_);
    auto keep = c_;
    detail::StreamConnection::ReadScope scope(c, "readexactly");
    while (c.available() < n) {
        if (!co_await c.fill()) break;
    }
    if (c.available() < n) throw IncompleteReadError(c.take(c.available()), n);
    co_return c.take(n);
}

namespace {

// readuntil() with `many` separators, or with `one` if `single`: one coroutine frame and no
// allocation for the common single separator.
Coro<std::string> read_until(std::shared_ptr<detail::StreamConnection> keep,
                             std::vector<std::string> many, std::string_view one, bool single) {
    detail::StreamConnection& c = conn(keep);
    if (!single && many.empty()) throw ValueError("readuntil() needs at least one separator");
    auto each = [&](auto&& visit) {
        if (single) {
            visit(one);
        } else {
            for (const std::string& s : many) visit(std::string_view(s));
        }
    };
    std::size_t longest = 0;
    each([&](std::string_view s) {
        if (s.empty()) throw ValueError("Separator should contain at least one byte");
        longest = std::max(longest, s.size());
    });
    detail::StreamConnection::ReadScope scope(c, "readuntil");
    std::size_t searched = 0;  // bytes of the buffer known to start no separator
    for (;;) {
        const std::string_view data = c.unread();
        // The shortest chunk wins: the separator that ends first, the shorter one on a tie
        // (Python 3.13).
        std::size_t best = std::string_view::npos;
        std::size_t best_end = 0;
        each([&](std::string_view s) {
            const std::size_t at = data.find(s, searched);
            if (at == std::string_view::npos) return;
            const std::size_t end = at + s.size();
            if (best == std::string_view::npos || end < best_end ||
                (end == best_end && at > best)) {
                best = at;
                best_end = end;
            }
        });
        if (best != std::string_view::npos) {
            // The limit bounds where the separator starts, not the separator itself.
            if (best > c.limit)
                throw LimitOverrunError("Separator is found, but chunk is longer than limit", best);
            co_return c.take(best_end);
        }
        searched = data.size() + 1 > longest ? data.size() + 1 - longest : 0;
        if (searched > c.limit)
            throw LimitOverrunError("Separator is not found, and chunk exceed the limit", searched);
        if (c.eof) throw IncompleteReadError(c.take(c.available()), 0);
        co_await c.fill();
    }
}

}  // namespace

Coro<std::string> StreamReader::readuntil(std::string_view separator) {
    return read_until(c_, {}, separator, true);
}

Coro<std::string> StreamReader::readuntil(std::vector<std::string> separators) {
    return read_until(c_, std::move(separators), {}, false);
}

Coro<std::string> StreamReader::readline() {
    detail::StreamConnection& c = conn(c_);
    auto keep = c_;
    std::string line;
    bool overrun = false;
    std::size_t consumed = 0;
    std::string message;
    try {
        line = co_await readuntil("\n");
    } catch (const IncompleteReadError& e) {
        line = e.partial();
    } catch (const LimitOverrunError& e) {
        overrun = true;
        consumed = e.consumed();
        message = e.what();
    }
    if (overrun) {
        // Drop the over-long line (up to its newline if it is there), as asyncio does.
        const std::string_view data = c.unread();
        if (data.size() > consumed && data[consumed] == '\n') {
            c.consume(consumed + 1);
        } else {
            c.consume(c.available());
        }
        throw LimitOverrunError(message, consumed);
    }
    co_return line;
}

Coro<std::size_t> StreamReader::read_into(std::span<char> buffer) {
    detail::StreamConnection& c = conn(c_);
    auto keep = c_;
    detail::StreamConnection::ReadScope scope(c, "read_into");
    if (buffer.empty()) co_return 0;
    if (c.available() > 0) {
        const std::size_t n = std::min(buffer.size(), c.available());
        std::copy_n(c.base() + c.in_begin, n, buffer.data());
        c.consume(n);
        co_return n;
    }
    if (c.closed) c.eof = true;
    if (c.eof) co_return 0;
    // Straight from the socket into the caller's buffer.
    ssize_t n;
    do {
        n = co_await c.receive(buffer.data(), buffer.size());
    } while (n == -EAGAIN);
    c.drained = n >= 0 && static_cast<std::size_t>(n) < buffer.size();
    if (n < 0 && c.closed) n = 0;
    if (n < 0) throw_os_error(static_cast<int>(-n), "recv");
    if (n == 0) c.eof = true;
    co_return static_cast<std::size_t>(n);
}

bool StreamReader::at_eof() const noexcept {
    return c_ && c_->eof && c_->available() == 0;
}

std::size_t StreamReader::limit() const noexcept {
    return c_ ? c_->limit : kDefaultStreamLimit;
}

// --- StreamWriter
// -----------------------------------------------------------------------------------

void StreamWriter::write(std::string_view data) {
    conn(c_).write(data);
}

void StreamWriter::write(std::string&& data) {
    conn(c_).write(data, &data);
}

void StreamWriter::write(const char* data) {
    conn(c_).write(data);
}

void StreamWriter::writelines(const std::vector<std::string>& lines) {
    for (const std::string& l : lines) write(l);
}

Coro<void> StreamWriter::drain() {
    detail::StreamConnection& c = conn(c_);
    auto keep = c_;
    if (c.write_error) std::rethrow_exception(c.write_error);
    if (!c.below_low.is_set()) co_await c.below_low.wait();
    if (c.write_error) std::rethrow_exception(c.write_error);
}

void StreamWriter::write_eof() {
    detail::StreamConnection& c = conn(c_);
    if (c.closing || c.closed || c.eof_wanted) return;
    c.eof_wanted = true;
    if (c.queued() == 0) c.after_flush();
}

void StreamWriter::close() {
    detail::StreamConnection& c = conn(c_);
    if (c.closing || c.closed) return;
    c.closing = true;
    if (c.queued() == 0 || c.write_error) c.finish_close();
}

bool StreamWriter::is_closing() const noexcept {
    return c_ && (c_->closing || c_->closed);
}

Coro<void> StreamWriter::wait_closed() {
    auto keep = c_;
    co_await conn(keep).done.wait();
}

void StreamWriter::abort() {
    detail::StreamConnection& c = conn(c_);
    if (c.closed) return;
    c.closing = true;
    // A reset rather than an orderly close: the peer sees ECONNRESET, as with asyncio's abort.
    linger hard{1, 0};
    ::setsockopt(c.sock.fileno(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    c.finish_close();
}

std::size_t StreamWriter::buffered() const noexcept {
    return c_ ? c_->queued() : 0;
}

void StreamWriter::set_write_buffer_limits(std::size_t high, std::optional<std::size_t> low) {
    detail::StreamConnection& c = conn(c_);
    const std::size_t l = low.value_or(high / 4);
    if (l > high) throw ValueError("high must be >= low");
    c.high = high;
    c.low = l;
    c.update_marks();
}

std::optional<SocketAddress> StreamWriter::get_extra_info(std::string_view name) const {
    const detail::StreamConnection& c = conn(c_);
    if (name == "peername") return c.peername;
    if (name == "sockname") return c.sockname;
    return std::nullopt;
}

const Socket& StreamWriter::socket() const {
    return conn(c_).sock;
}

// --- connecting
// -------------------------------------------------------------------------------------

namespace {

std::shared_ptr<detail::StreamConnection> connection_over(Socket sock, std::size_t limit) {
    if (!sock) throw ValueError("open_stream() of a closed socket");
    if (limit == 0) throw ValueError("limit must be > 0");
    auto c = std::make_shared<detail::StreamConnection>();
    const int family = sock.family();
    if ((family == AF_INET || family == AF_INET6) && sock.type() == SOCK_STREAM) {
        sock.set_nodelay(true);  // as asyncio: small writes go out at once
    }
    try {
        c->peername = sock.getpeername();
    } catch (const OSError&) {
        // not connected, or an unnamed Unix-domain peer
    }
    try {
        c->sockname = sock.getsockname();
    } catch (const OSError&) {
    }
    c->sock = std::move(sock);
    c->limit = limit;
    return c;
}

}  // namespace

std::pair<StreamReader, StreamWriter> open_stream(Socket sock, std::size_t limit) {
    auto c = connection_over(std::move(sock), limit);
    return {detail::StreamAccess::reader(c), detail::StreamAccess::writer(c)};
}

StreamReader detail::open_read_stream(Socket sock, std::size_t limit) {
    return StreamAccess::reader(connection_over(std::move(sock), limit));
}

StreamWriter::StreamWriter(std::shared_ptr<detail::StreamConnection> c) : c_(std::move(c)) {
    if (c_) ++c_->writers;
}

StreamWriter::StreamWriter(const StreamWriter& other) : c_(other.c_) {
    if (c_) ++c_->writers;
}

StreamWriter& StreamWriter::operator=(const StreamWriter& other) {
    if (this != &other) {
        drop();
        c_ = other.c_;
        if (c_) ++c_->writers;
    }
    return *this;
}

StreamWriter& StreamWriter::operator=(StreamWriter&& other) noexcept {
    if (this != &other) {
        drop();
        c_ = std::move(other.c_);
    }
    return *this;
}

StreamWriter::~StreamWriter() {
    drop();
}

void StreamWriter::drop() noexcept {
    if (!c_) return;
    if (--c_->writers == 0 && !c_->closing && !c_->closed && detail::running_in_debug_mode()) {
        try {
            detail::report_unclosed("StreamWriter",
                                    c_->peername ? "to " + c_->peername->to_string() : "");
        } catch (...) {
        }
    }
    c_.reset();
}

Coro<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, std::uint16_t port,
                                                            ConnectOptions options,
                                                            std::size_t limit) {
    if (limit == 0) throw ValueError("limit must be > 0");
    Socket sock = co_await create_connection(std::move(host), port, std::move(options));
    co_return open_stream(std::move(sock), limit);
}

Coro<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, std::uint16_t port,
                                                            std::size_t limit) {
    return open_connection(std::move(host), port, ConnectOptions{}, limit);
}

Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(std::string path,
                                                                 std::size_t limit) {
    const SocketAddress address = SocketAddress::unix_path(path);
    Socket sock(AF_UNIX, SOCK_STREAM);
    co_await sock_connect(sock, address);
    co_return open_stream(std::move(sock), limit);
}

// --- servers
// ----------------------------------------------------------------------------------------

namespace detail {

struct ServerState : std::enable_shared_from_this<ServerState> {
    std::vector<Socket> listeners;
    std::vector<SocketAddress> addresses;
    ClientConnected on_client;
    std::size_t limit = kDefaultStreamLimit;
    std::vector<Task<void>> acceptors;  // kept after close(), for wait_closed()
    bool serving = false;
    // Connections accepted and not yet closed.
    std::vector<std::weak_ptr<StreamConnection>> clients;
    std::size_t open = 0;
    Event idle;  // set when closed and no connection is open

    void update_idle() {
        if (!serving && open == 0) {
            idle.set();
        } else {
            idle.clear();
        }
    }

    void close() {
        if (!serving) return;
        serving = false;
        for (Task<void>& t : acceptors) t.cancel();
        for (Socket& s : listeners) s.close();
        update_idle();
    }

    template <class F>
    void for_each_client(F&& f) {
        std::vector<std::shared_ptr<StreamConnection>> live;
        for (auto& w : clients) {
            if (auto c = w.lock()) live.push_back(std::move(c));
        }
        for (auto& c : live) f(*c);
    }
};

namespace {

Coro<void> run_client(std::shared_ptr<ServerState> server, StreamReader reader,
                      StreamWriter writer) {
    try {
        co_await server->on_client(std::move(reader), writer);
    } catch (const CancelledError&) {
        throw;
    } catch (...) {
        // asyncio logs an exception from a client callback and closes the connection.
        get_running_loop().call_exception_handler(ExceptionContext{
            "Unhandled exception in client_connected_cb", std::current_exception(), {}, {}});
        writer.close();  // as asyncio: what it had queued is still sent
    }
}

// Takes the server weakly: the server keeps its accept tasks' handles (for wait_closed), so a
// strong parameter would keep the finished task's frame and the server alive in a cycle. The
// local below holds the server while the task runs, and goes when it ends.
Coro<void> accept_loop(std::weak_ptr<ServerState> weak, std::size_t index) {
    std::shared_ptr<ServerState> server = weak.lock();
    if (!server) co_return;
    Socket& listener = server->listeners[index];
    for (;;) {
        std::pair<Socket, SocketAddress> accepted;
        try {
            accepted = co_await sock_accept(listener);
        } catch (const OSError& e) {
            if (e.code() == EBADF) co_return;  // the server was closed
            if (e.code() == EMFILE || e.code() == ENFILE || e.code() == ENOBUFS ||
                e.code() == ENOMEM) {
                // Out of descriptors: report, and pause accepting for a while rather than spin
                // (asyncio waits 1 s).
                get_running_loop().call_exception_handler(ExceptionContext{
                    "socket.accept() out of system resource", std::current_exception(), {}, {}});
                accepted.first = Socket();
            } else {
                throw;
            }
        }
        if (!accepted.first) {
            co_await sleep(std::chrono::seconds(1));
            continue;
        }
        auto [reader, writer] = open_stream(std::move(accepted.first), server->limit);
        auto c = StreamAccess::of(writer);
        ++server->open;
        server->update_idle();
        std::weak_ptr<ServerState> weak = server;
        c->on_close = [weak] {
            if (auto s = weak.lock()) {
                --s->open;
                s->update_idle();
            }
        };
        // Forget the closed ones once they could be half the list: amortised O(1) per accept
        // (erasing on every accept made accepting N connections cost N^2 / 2 checks).
        if (server->clients.size() >= 2 * server->open) {
            std::erase_if(server->clients, [](const auto& w) { return w.expired(); });
        }
        server->clients.push_back(c);
        create_task(run_client(server, std::move(reader), std::move(writer)), "client");
    }
}

Server start_listening(std::vector<Socket> listeners, ClientConnected on_client,
                       std::size_t limit) {
    auto state = std::make_shared<ServerState>();
    state->on_client = std::move(on_client);
    state->limit = limit;
    for (Socket& s : listeners) state->addresses.push_back(s.getsockname());
    state->listeners = std::move(listeners);
    state->serving = true;
    state->update_idle();
    for (std::size_t i = 0; i < state->listeners.size(); ++i)
        state->acceptors.emplace_back(create_task(accept_loop(state, i), "server accept"));
    return StreamAccess::server(state);
}

}  // namespace
}  // namespace detail

Coro<Server> start_server(ClientConnected on_client, std::string host, std::uint16_t port,
                          ServerOptions options, std::size_t limit) {
    if (!on_client) throw ValueError("start_server() needs a client_connected callback");
    if (limit == 0) throw ValueError("limit must be > 0");
    std::vector<Socket> listeners = co_await create_server(std::move(host), port, options);
    co_return detail::start_listening(std::move(listeners), std::move(on_client), limit);
}

Coro<Server> start_server(ClientConnected on_client, std::string host, std::uint16_t port,
                          std::size_t limit, int backlog) {
    ServerOptions options;
    options.backlog = backlog;
    return start_server(std::move(on_client), std::move(host), port, options, limit);
}

Coro<Server> start_unix_server(ClientConnected on_client, std::string path, std::size_t limit,
                               int backlog) {
    if (!on_client) throw ValueError("start_unix_server() needs a client_connected callback");
    if (limit == 0) throw ValueError("limit must be > 0");
    std::vector<Socket> listeners;
    listeners.push_back(create_unix_server(path, backlog));
    co_return detail::start_listening(std::move(listeners), std::move(on_client), limit);
}

Server::~Server() {
    // The handle is the server's only owner: dropping it closes the listening sockets (the
    // connections already accepted go on). Debug mode says so, since it was never close()d.
    if (!s_ || !s_->serving || !detail::running_in_debug_mode()) return;
    try {
        std::string on;
        for (const SocketAddress& a : s_->addresses)
            on += (on.empty() ? "on " : ", ") + a.to_string();
        detail::report_unclosed("Server", on);
    } catch (...) {
    }
}

std::vector<SocketAddress> Server::addresses() const {
    return s_ ? s_->addresses : std::vector<SocketAddress>{};
}

const std::vector<Socket>& Server::sockets() const {
    static const std::vector<Socket> none;
    return s_ ? s_->listeners : none;
}

bool Server::is_serving() const noexcept {
    return s_ && s_->serving;
}

void Server::close() {
    if (s_) s_->close();
}

Coro<void> Server::wait_closed() {
    auto s = s_;
    if (!s) co_return;
    co_await s->idle.wait();
    // The accept tasks end soon after close() cancels them; wait for that too.
    std::vector<Task<void>> acceptors = s->acceptors;
    if (!acceptors.empty()) co_await corio::wait(std::move(acceptors));
}

Coro<void> Server::serve_forever() {
    auto s = s_;
    if (!s || !s->serving) throw RuntimeError("the server is closed");
    std::exception_ptr cancelled;
    try {
        co_await s->idle.wait();  // set once the server is closed and its clients are gone
    } catch (const CancelledError&) {
        s->close();
        cancelled = std::current_exception();
    }
    if (cancelled) std::rethrow_exception(cancelled);
    co_await Server(s).wait_closed();
}

void Server::close_clients() {
    if (s_)
        s_->for_each_client([](detail::StreamConnection& c) {
            detail::StreamAccess::writer(c.shared_from_this()).close();
        });
}

void Server::abort_clients() {
    if (s_)
        s_->for_each_client([](detail::StreamConnection& c) {
            detail::StreamAccess::writer(c.shared_from_this()).abort();
        });
}

}  // namespace corio
