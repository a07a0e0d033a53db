// raw_epoll_echo_server: the reference of the echo benchmark (bench/echo/run_echo.py). A minimal
// single-threaded, non-blocking, level-triggered epoll echo server in plain C style: no library,
// no allocation on the data path while the socket keeps up.
//
//     raw_epoll_echo_server PORT        (0 picks a free port)
//
// Listens on 127.0.0.1:PORT, prints the port it got on stdout (one line), and sends back every
// byte it receives. Exits 0 on SIGTERM or SIGINT.
//
// Per readable connection: one recv of up to 64 KiB into a buffer shared by all connections,
// then send it straight back. Whatever the socket does not take is copied to the connection's
// own pending buffer; the connection then stops reading (interest EPOLLOUT only) until that is
// sent, which is the back-pressure corio's drain() gives (TCP slows the client down).
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr int kMaxEvents = 256;

// A connection's bytes received but not yet sent back; empty (data == nullptr) most of the time.
struct Pending {
    char* data;
    size_t off;
    size_t len;
};

volatile sig_atomic_t g_stop = 0;

extern "C" void on_stop(int) {
    g_stop = 1;
}

[[noreturn]] void die(const char* what) {
    fprintf(stderr, "raw_epoll_echo_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

int g_epoll = -1;
Pending* g_pending = nullptr;  // indexed by descriptor
size_t g_pending_size = 0;

void set_interest(int fd, unsigned events) {
    epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(g_epoll, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl(MOD)");
}

void close_connection(int fd) {
    free(g_pending[fd].data);
    g_pending[fd].data = nullptr;
    g_pending[fd].off = g_pending[fd].len = 0;
    close(fd);  // also drops it from the epoll set
}

// Sends as much of data[0, len) as the socket takes: the count sent, or -1 if the connection
// failed (reset, ...).
ssize_t send_some(int fd, const char* data, size_t len) {
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    return static_cast<ssize_t>(sent);
}

void on_readable(int fd, char* buffer) {
    ssize_t n;
    do {
        n = recv(fd, buffer, kChunk, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {  // end of stream or error
        close_connection(fd);
        return;
    }
    const size_t got = static_cast<size_t>(n);
    const ssize_t sent = send_some(fd, buffer, got);
    if (sent < 0) {
        close_connection(fd);
        return;
    }
    if (static_cast<size_t>(sent) == got) return;
    Pending& p = g_pending[fd];
    p.len = got - static_cast<size_t>(sent);
    p.off = 0;
    p.data = static_cast<char*>(malloc(p.len));
    if (p.data == nullptr) die("malloc");
    memcpy(p.data, buffer + sent, p.len);
    set_interest(fd, EPOLLOUT);
}

void on_writable(int fd) {
    Pending& p = g_pending[fd];
    const ssize_t sent = send_some(fd, p.data + p.off, p.len - p.off);
    if (sent < 0) {
        close_connection(fd);
        return;
    }
    p.off += static_cast<size_t>(sent);
    if (p.off < p.len) return;
    free(p.data);
    p.data = nullptr;
    p.off = p.len = 0;
    set_interest(fd, EPOLLIN);
}

void on_acceptable(int listener) {
    for (;;) {
        int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EMFILE || errno == ENFILE) {
                perror("raw_epoll_echo_server: accept4");
                return;
            }
            die("accept4");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as corio's streams
        if (static_cast<size_t>(fd) >= g_pending_size) {
            size_t size = g_pending_size ? g_pending_size : 64;
            while (size <= static_cast<size_t>(fd)) size *= 2;
            auto* grown = static_cast<Pending*>(realloc(g_pending, size * sizeof(Pending)));
            if (grown == nullptr) die("realloc");
            memset(grown + g_pending_size, 0, (size - g_pending_size) * sizeof(Pending));
            g_pending = grown;
            g_pending_size = size;
        }
        epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl(ADD)");
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT   (0 picks a free port)\n", argv[0]);
        return 2;
    }
    char* end = nullptr;
    const long port = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "raw_epoll_echo_server: bad port '%s'\n", argv[1]);
        return 2;
    }

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop;  // no SA_RESTART: epoll_wait returns EINTR
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGTERM, &action, nullptr) < 0 || sigaction(SIGINT, &action, nullptr) < 0)
        die("sigaction");

    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) die("socket");
    int one = 1;
    if (setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("setsockopt");
    sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) die("bind");
    if (listen(listener, 1024) < 0) die("listen");
    socklen_t length = sizeof address;
    if (getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) < 0)
        die("getsockname");

    g_epoll = epoll_create1(EPOLL_CLOEXEC);
    if (g_epoll < 0) die("epoll_create1");
    epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = listener;
    if (epoll_ctl(g_epoll, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl(ADD)");

    printf("%u\n", static_cast<unsigned>(ntohs(address.sin_port)));
    fflush(stdout);

    char* buffer = static_cast<char*>(malloc(kChunk));
    if (buffer == nullptr) die("malloc");
    epoll_event events[kMaxEvents];
    while (!g_stop) {
        const int n = epoll_wait(g_epoll, events, kMaxEvents, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            const unsigned what = events[i].events;
            if (fd == listener) {
                on_acceptable(listener);
            } else if (g_pending[fd].data != nullptr) {
                // Waiting to send the rest: an error or hang-up shows on the send itself.
                if (what & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(fd);
            } else if (what & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(fd, buffer);
            }
        }
    }

    for (size_t fd = 0; fd < g_pending_size; ++fd) free(g_pending[fd].data);
    free(g_pending);
    free(buffer);
    close(listener);
    close(g_epoll);
    return 0;
}
