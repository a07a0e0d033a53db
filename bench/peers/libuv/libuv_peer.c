/* libuv-peer: the libuv peer of corio's benchmark suite (the peer contract of issue 7; the
 * micro benchmarks are defined in bench/README.md, "What is measured").
 *
 *     libuv-peer echo PORT        TCP echo server on 127.0.0.1:PORT (0: the kernel picks a port)
 *     libuv-peer http PORT        HTTP/1.1 "hello" server
 *     libuv-peer micro [--quick]  micro benchmarks, one JSON object per line on stdout
 *
 * Everything runs on one uv loop in one thread. The servers print the port they listen on as
 * one line on stdout and exit with status 0 on SIGTERM or SIGINT (uv_signal_t).
 *
 * libuv has callbacks, not tasks: there is nothing to spawn, join, suspend or hand control to,
 * so `micro` prints only timers_1m and timers_1m_total (N one-shot uv_timer_t), and none of
 * spawn_join, ping_pong or suspended_task_bytes.
 *
 * Reading and writing. Every connection reads into one 64 KiB buffer owned by the loop (the
 * alloc callback hands it out; libuv calls the read callback before it allocates for the next
 * read, so the buffer is free again by then). The read callback first tries to write the answer
 * at once with uv_try_write, as Node.js's streams do; when the socket takes all of it, nothing
 * more is needed and the connection keeps reading. Otherwise the rest is handed to uv_write and
 * the connection stops reading (uv_read_stop) until the write callback, which starts it again:
 * nothing is read before what was read has been written, and a client that does not read its
 * answers is slowed down by TCP. Echoed bytes that the socket did not take are copied out of
 * the shared buffer first; the HTTP responses live in a constant buffer and need no copy. An
 * idle connection thus costs its handle and a few words, not a buffer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#define PEER_NAME "libuv"

/* The most one read takes, on echo and HTTP connections alike. */
#define READ_SIZE (64 * 1024)

/* The listen backlog; the kernel caps it at net.core.somaxconn. */
#define BACKLOG 4096

/* The longest request (up to and including "\r\n\r\n") the HTTP server accepts; a longer one
 * closes the connection. */
#define MAX_HEADER_SECTION (8 * 1024)

static const char hello_response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";
#define HELLO_LENGTH (sizeof hello_response - 1)

/* response_batch holds hello_response RESPONSE_BATCH times: the answer to that many requests
 * of one read, written without building anything per connection. A read of READ_SIZE bytes
 * holds at most READ_SIZE / 4 requests (each at least "\r\n\r\n"), hence the most buffers one
 * answer needs. */
#define RESPONSE_BATCH 128
#define MAX_RESPONSE_BUFS (READ_SIZE / 4 / RESPONSE_BATCH + 1)
static char response_batch[RESPONSE_BATCH * HELLO_LENGTH];

/* --- errors ---------------------------------------------------------------------------------- */

_Noreturn static void die(const char* what, int uv_error) {
    fprintf(stderr, "libuv-peer: %s: %s\n", what, uv_strerror(uv_error));
    exit(1);
}

_Noreturn static void die_errno(const char* what) {
    fprintf(stderr, "libuv-peer: %s: %s\n", what, strerror(errno));
    exit(1);
}

_Noreturn static void usage(void) {
    fputs("usage: libuv-peer echo PORT | http PORT | micro [--quick]\n", stderr);
    exit(2);
}

/* --- connections ----------------------------------------------------------------------------- */

typedef struct {
    uv_tcp_t tcp;
    uv_write_t write; /* the write in flight while the connection does not read */
    char* pending;    /* echo: the bytes that write sends, copied out of the shared buffer */
    int matched;      /* http: how many bytes of "\r\n\r\n" end what was read (0 to 3) */
    size_t length;    /* http: bytes of the request in progress read so far */
} Connection;

static uv_loop_t* loop;
static uv_read_cb on_read; /* the protocol's read callback: echo_on_read or http_on_read */
static char read_buffer[READ_SIZE];

static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(read_buffer, sizeof read_buffer);
}

static void on_closed(uv_handle_t* handle) {
    Connection* c = handle->data;
    free(c->pending);
    free(c);
}

/* Closes a connection; error (a libuv error code, or 0) says why. End of stream, a reset or a
 * broken pipe are the peer's doing and not worth a message. Only this connection is affected. */
static void close_connection(Connection* c, int error) {
    if (error != 0 && error != UV_EOF && error != UV_ECONNRESET && error != UV_EPIPE) {
        fprintf(stderr, "libuv-peer: connection: %s\n", uv_strerror(error));
    }
    if (!uv_is_closing((uv_handle_t*)&c->tcp)) uv_close((uv_handle_t*)&c->tcp, on_closed);
}

static void on_written(uv_write_t* req, int status) {
    Connection* c = req->data;
    free(c->pending);
    c->pending = NULL;
    if (status == UV_ECANCELED || uv_is_closing((uv_handle_t*)&c->tcp)) return;
    if (status < 0) {
        close_connection(c, status);
        return;
    }
    int err = uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read);
    if (err < 0) close_connection(c, err);
}

/* Sends bufs[0, nbufs): at once if the socket takes it all, else what remains through uv_write
 * with reading stopped until it is done. copy says the data lives in the shared read buffer
 * (then in one buffer), so what remains must be copied out before the next read reuses it. */
static void send_answer(Connection* c, uv_buf_t* bufs, unsigned nbufs, bool copy) {
    uv_stream_t* stream = (uv_stream_t*)&c->tcp;
    int sent = uv_try_write(stream, bufs, nbufs);
    if (sent == UV_EAGAIN) {
        sent = 0;
    } else if (sent < 0) {
        close_connection(c, sent);
        return;
    }
    /* Skip what the socket took. */
    size_t skip = (size_t)sent;
    while (nbufs > 0 && skip >= bufs->len) {
        skip -= bufs->len;
        ++bufs;
        --nbufs;
    }
    if (nbufs == 0) return;
    bufs->base += skip;
    bufs->len -= skip;

    if (copy) {
        c->pending = malloc(bufs->len);
        if (c->pending == NULL) {
            fputs("libuv-peer: out of memory for a connection's pending bytes\n", stderr);
            close_connection(c, 0);
            return;
        }
        memcpy(c->pending, bufs->base, bufs->len);
        bufs->base = c->pending;
    }
    int err = uv_read_stop(stream);
    if (err == 0) err = uv_write(&c->write, stream, bufs, nbufs, on_written);
    if (err < 0) close_connection(c, err);
}

/* --- echo ------------------------------------------------------------------------------------ */

static void echo_on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    Connection* c = stream->data;
    if (nread < 0) {
        close_connection(c, (int)nread);
        return;
    }
    if (nread == 0) return; /* nothing to read after all (EAGAIN) */
    uv_buf_t echo = uv_buf_init(buf->base, (unsigned)nread);
    send_answer(c, &echo, 1, true);
}

/* --- http ------------------------------------------------------------------------------------ */

/* Counts the requests completed by data[0, size): a request is everything up to and including
 * the first "\r\n\r\n". Nothing of a request is kept (the answer does not depend on it), so one
 * split over several reads costs no copy. Returns false once a request is longer than
 * MAX_HEADER_SECTION, after which the connection must be closed. */
static bool scan_requests(Connection* c, const char* data, size_t size, size_t* requests) {
    static const char terminator[] = "\r\n\r\n";
    const char* end = data + size;
    *requests = 0;
    while (data < end) {
        if (c->matched == 0) {
            /* Most bytes are not '\r': skip to the next one with memchr. */
            const char* cr = memchr(data, '\r', (size_t)(end - data));
            if (cr == NULL) {
                c->length += (size_t)(end - data);
                break;
            }
            c->length += (size_t)(cr + 1 - data);
            data = cr + 1;
            c->matched = 1;
            continue;
        }
        char byte = *data++;
        ++c->length;
        if (byte == terminator[c->matched]) {
            if (++c->matched == 4) {
                if (c->length > MAX_HEADER_SECTION) return false;
                ++*requests;
                c->matched = 0;
                c->length = 0;
            }
        } else {
            /* "\r\r" or "\r\n\r\r": this '\r' may start the terminator. */
            c->matched = byte == '\r' ? 1 : 0;
        }
    }
    return c->length <= MAX_HEADER_SECTION;
}

static void http_on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    Connection* c = stream->data;
    if (nread < 0) {
        close_connection(c, (int)nread);
        return;
    }
    if (nread == 0) return; /* nothing to read after all (EAGAIN) */
    size_t requests;
    bool ok = scan_requests(c, buf->base, (size_t)nread, &requests);
    if (requests > 0) {
        /* All the responses of this read in one write (writev) of repeated batches. */
        uv_buf_t bufs[MAX_RESPONSE_BUFS];
        unsigned nbufs = 0;
        for (; requests > 0; ++nbufs) {
            size_t batch = requests < RESPONSE_BATCH ? requests : RESPONSE_BATCH;
            bufs[nbufs] = uv_buf_init(response_batch, (unsigned)(batch * HELLO_LENGTH));
            requests -= batch;
        }
        send_answer(c, bufs, nbufs, false);
    }
    if (!ok) close_connection(c, 0); /* a request header section over 8 KiB */
}

/* --- server ---------------------------------------------------------------------------------- */

static void on_connection(uv_stream_t* server, int status) {
    if (status < 0) {
        /* Out of descriptors (libuv then drops the waiting connection) or the like: report it,
         * at most once a second, and keep serving the other clients. */
        static uint64_t last_report_ms;
        static bool reported;
        uint64_t now = uv_now(loop);
        if (!reported || now - last_report_ms >= 1000) {
            fprintf(stderr, "libuv-peer: accept: %s\n", uv_strerror(status));
            last_report_ms = now;
            reported = true;
        }
        return;
    }
    Connection* c = calloc(1, sizeof *c);
    if (c == NULL) die_errno("allocating a connection");
    int err = uv_tcp_init(loop, &c->tcp);
    if (err < 0) die("uv_tcp_init", err);
    c->tcp.data = c;
    c->write.data = c;
    err = uv_accept(server, (uv_stream_t*)&c->tcp);
    if (err == 0) err = uv_tcp_nodelay(&c->tcp, 1);
    if (err == 0) err = uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read);
    if (err < 0) close_connection(c, err);
}

static void on_signal(uv_signal_t* handle, int signum) {
    (void)signum;
    uv_stop(handle->loop); /* main then exits with status 0; open connections are dropped */
}

static void raise_file_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) die_errno("getrlimit(RLIMIT_NOFILE)");
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) < 0) die_errno("setrlimit(RLIMIT_NOFILE)");
    }
}

static int parse_port(const char* text) {
    char* end;
    errno = 0;
    long port = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "libuv-peer: invalid port '%s': expected a number from 0 to 65535\n", text);
        exit(2);
    }
    return (int)port;
}

static int run_server(const char* port_text, uv_read_cb read_cb) {
    int port = parse_port(port_text);
    raise_file_limit();
    /* A write to a connection the client has closed must fail with EPIPE, not kill us. */
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &ignore, NULL) < 0) die_errno("sigaction(SIGPIPE)");

    for (size_t i = 0; i < RESPONSE_BATCH; ++i) {
        memcpy(response_batch + i * HELLO_LENGTH, hello_response, HELLO_LENGTH);
    }
    loop = uv_default_loop();
    if (loop == NULL) {
        fputs("libuv-peer: uv_default_loop failed\n", stderr);
        return 1;
    }
    on_read = read_cb;

    static uv_signal_t sigterm, sigint;
    int err = uv_signal_init(loop, &sigterm);
    if (err == 0) err = uv_signal_start(&sigterm, on_signal, SIGTERM);
    if (err == 0) err = uv_signal_init(loop, &sigint);
    if (err == 0) err = uv_signal_start(&sigint, on_signal, SIGINT);
    if (err < 0) die("installing the SIGTERM and SIGINT handlers", err);

    static uv_tcp_t server;
    struct sockaddr_in address;
    err = uv_ip4_addr("127.0.0.1", port, &address);
    if (err < 0) die("uv_ip4_addr", err);
    err = uv_tcp_init(loop, &server);
    if (err < 0) die("uv_tcp_init", err);
    err = uv_tcp_bind(&server, (const struct sockaddr*)&address, 0);
    if (err < 0) die("bind", err); /* libuv reports a busy port at listen, checked below */
    err = uv_listen((uv_stream_t*)&server, BACKLOG, on_connection);
    if (err < 0) die("listen", err);

    struct sockaddr_in bound;
    int length = sizeof bound;
    err = uv_tcp_getsockname(&server, (struct sockaddr*)&bound, &length);
    if (err < 0) die("getsockname", err);
    if (printf("%d\n", ntohs(bound.sin_port)) < 0 || fflush(stdout) != 0) {
        die_errno("writing the port to stdout");
    }

    uv_run(loop, UV_RUN_DEFAULT);
    /* Stopped by a signal. The loop still holds the server and the connections: exit without
     * closing it, the kernel closes the sockets. */
    return 0;
}

/* --- micro: timers --------------------------------------------------------------------------- */

typedef struct {
    long n;          /* timers armed */
    long fired;      /* callbacks run so far */
    uint64_t end_ns; /* uv_hrtime() in the last callback */
} TimerRun;

static void on_timer(uv_timer_t* timer) {
    TimerRun* run = timer->data;
    if (++run->fired == run->n) {
        run->end_ns = uv_hrtime();
        uv_stop(timer->loop);
    }
}

/* Arms n one-shot timers with delays (i % 1000) ms on a fresh loop and returns the wall time in
 * seconds (uv_hrtime, a monotonic clock) from before the first uv_timer_init until the last
 * callback has run. */
static double run_timers(long n) {
    uv_loop_t timer_loop;
    int err = uv_loop_init(&timer_loop);
    if (err < 0) die("uv_loop_init", err);
    uv_timer_t* timers = malloc((size_t)n * sizeof *timers);
    if (timers == NULL) die_errno("allocating the timers");
    TimerRun run = {.n = n, .fired = 0, .end_ns = 0};

    uint64_t start_ns = uv_hrtime();
    for (long i = 0; i < n; ++i) {
        uv_timer_t* timer = &timers[i];
        err = uv_timer_init(&timer_loop, timer);
        if (err < 0) die("uv_timer_init", err);
        timer->data = &run;
        /* libuv counts a delay from the loop's cached "now", which is not updated while the
         * timers are being armed (a long time for a million of them): refresh it, so that
         * each delay starts when its timer is armed, as in the other runtimes. */
        uv_update_time(&timer_loop);
        err = uv_timer_start(timer, on_timer, (uint64_t)(i % 1000), 0);
        if (err < 0) die("uv_timer_start", err);
    }
    uv_run(&timer_loop, UV_RUN_DEFAULT);
    if (run.fired != n) {
        fprintf(stderr, "libuv-peer: timers_1m: %ld of %ld callbacks ran\n", run.fired, n);
        exit(1);
    }
    double total = (double)(run.end_ns - start_ns) / 1e9;

    for (long i = 0; i < n; ++i) uv_close((uv_handle_t*)&timers[i], NULL);
    uv_run(&timer_loop, UV_RUN_DEFAULT); /* completes the closes */
    err = uv_loop_close(&timer_loop);
    if (err < 0) die("uv_loop_close", err);
    free(timers);
    return total;
}

static void report(const char* bench, double value, const char* unit) {
    if (printf("{\"peer\": \"%s\", \"bench\": \"%s\", \"value\": %.9g, \"unit\": \"%s\"}\n",
               PEER_NAME, bench, value, unit) < 0 ||
        fflush(stdout) != 0) {
        die_errno("writing to stdout");
    }
}

static int run_micro(bool quick) {
    double total = run_timers(quick ? 100000 : 1000000);
    report("timers_1m", total - 0.999, "s");
    report("timers_1m_total", total, "s");
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 2) usage();
    const char* command = argv[1];
    if (strcmp(command, "echo") == 0 || strcmp(command, "http") == 0) {
        if (argc != 3) usage();
        return run_server(argv[2], command[0] == 'e' ? echo_on_read : http_on_read);
    }
    if (strcmp(command, "micro") == 0) {
        bool quick = false;
        for (int i = 2; i < argc; ++i) {
            if (strcmp(argv[i], "--quick") != 0) usage();
            quick = true;
        }
        return run_micro(quick);
    }
    usage();
}
