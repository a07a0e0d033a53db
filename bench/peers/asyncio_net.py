#!/usr/bin/env python3
"""asyncio / uvloop network peers of corio's benchmarks: a TCP echo and an HTTP "hello" server.

Usage: /usr/bin/python3 bench/peers/asyncio_net.py --loop asyncio|uvloop --api streams|protocol
       echo|http PORT

Listens on 127.0.0.1:PORT (0 picks a free port), prints the bound port as one line on stdout,
and serves until SIGTERM or SIGINT, then exits 0 (open connections are aborted).

--loop:  asyncio = CPython's default (selector) event loop; uvloop = the libuv-based loop
         (Debian's python3-uvloop; exit status 3 if it cannot be imported).
--api:   streams  = asyncio.start_server, StreamReader.read(65536), writer.write,
                    await writer.drain();
         protocol = loop.create_server with an asyncio.Protocol that answers from
                    data_received with transport.write, and stops reading while the
                    transport's write buffer is not empty (pause_writing / resume_writing).

echo: sends every byte back. http: answers each request (everything up to and including the
first "\\r\\n\\r\\n"; pipelined requests are answered in order, one write per read) with a fixed
"Hello, World!" response; keep-alive; a request head over 8 KiB closes the connection.

Back-pressure: the peer contract says not to read again before what was read has been written.
Every transport gets a write buffer high-water mark of 0 bytes, so anything the socket did not
take at once pauses the protocol: the protocol API then pauses reading until the buffer is empty,
and the streams API's drain() waits until then (with the default mark of 64 KiB, up to 64 KiB
could stay queued per connection while reading goes on).

TCP_NODELAY: both loops set it on every TCP transport already (asyncio's selector transport in
its constructor, uvloop when it creates the TCP handle). It was checked with getsockopt on both
loops; the check runs on every accepted connection (one cheap system call), and sets the option
if a loop ever does not.

The loop runs on the main thread only (one thread does all the work).
"""
import argparse
import asyncio
import resource
import signal
import socket
import sys

HOST = "127.0.0.1"
READ_SIZE = 64 * 1024  # the contract's "read up to 64 KiB"
MAX_HEAD = 8 * 1024  # a request head longer than this without its terminator closes
BACKLOG = 4096  # the contract asks for >= 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n"
    b"Hello, World!\n"
)
HEAD_END = b"\r\n\r\n"

# Open transports, aborted at shutdown.
connections = set()


def fail(message, status=1):
    print(f"asyncio_net: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def raise_nofile_limit():
    """Raises the soft RLIMIT_NOFILE to the hard limit (100,000 idle connections must fit)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        fail(f"cannot raise RLIMIT_NOFILE to the hard limit: {e}")


def setup_transport(transport):
    """Per accepted connection: TCP_NODELAY check, back-pressure mark, shutdown bookkeeping."""
    sock = transport.get_extra_info("socket")
    if sock is not None and not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport.set_write_buffer_limits(high=0)  # see "Back-pressure" in the module docstring
    connections.add(transport)


def parse_requests(data, scan_from):
    """Counts the complete requests in data (searching from scan_from, where the previous
    search stopped). Returns (count, consumed): consumed is the length of those requests."""
    count = consumed = 0
    while (end := data.find(HEAD_END, scan_from)) >= 0:
        count += 1
        consumed = scan_from = end + len(HEAD_END)
    return count, consumed


class HttpParser:
    """Splits a byte stream into requests; keeps the start of an incomplete one."""

    def __init__(self):
        self.pending = b""

    def feed(self, data):
        """Returns (responses, too_long): the responses to the requests that data completes
        (b"" if none), and whether the incomplete request that follows them exceeds MAX_HEAD,
        in which case the connection must close once the responses are sent."""
        scan_from = 0
        if self.pending:
            # The terminator may straddle the two reads: rescan the last 3 bytes kept.
            scan_from = max(0, len(self.pending) - (len(HEAD_END) - 1))
            data = self.pending + data
        count, consumed = parse_requests(data, scan_from)
        rest = len(data) - consumed
        self.pending = data[consumed:] if 0 < rest <= MAX_HEAD else b""
        return RESPONSE * count, rest > MAX_HEAD


# --- streams API -------------------------------------------------------------------------------


async def echo_streams(reader, writer):
    setup_transport(writer.transport)
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # reset by the peer, broken pipe, ...: this connection only
    finally:
        connections.discard(writer.transport)
        writer.close()


async def http_streams(reader, writer):
    setup_transport(writer.transport)
    parser = HttpParser()
    try:
        while data := await reader.read(READ_SIZE):
            responses, too_long = parser.feed(data)
            if responses:
                writer.write(responses)
                await writer.drain()
            if too_long:
                break
    except OSError:
        pass
    finally:
        connections.discard(writer.transport)
        writer.close()


# --- protocol API ------------------------------------------------------------------------------


class FlowControlledProtocol(asyncio.Protocol):
    """Stops reading while the transport holds bytes it could not send yet."""

    transport = None

    def connection_made(self, transport):
        self.transport = transport
        setup_transport(transport)

    def connection_lost(self, exc):
        connections.discard(self.transport)

    def pause_writing(self):
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self):
        if not self.transport.is_closing():
            self.transport.resume_reading()


class EchoProtocol(FlowControlledProtocol):
    def data_received(self, data):
        self.transport.write(data)


class HttpProtocol(FlowControlledProtocol):
    def __init__(self):
        self.parser = HttpParser()

    def data_received(self, data):
        responses, too_long = self.parser.feed(data)
        if responses:
            self.transport.write(responses)
        if too_long:
            self.transport.close()  # close() still sends what is queued


# --- main --------------------------------------------------------------------------------------

HANDLERS = {
    ("streams", "echo"): echo_streams,
    ("streams", "http"): http_streams,
    ("protocol", "echo"): EchoProtocol,
    ("protocol", "http"): HttpProtocol,
}


async def serve(api, mode, port):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signo in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signo, stop.set)

    handler = HANDLERS[(api, mode)]
    try:
        if api == "streams":
            server = await asyncio.start_server(handler, HOST, port, backlog=BACKLOG)
        else:
            server = await loop.create_server(handler, HOST, port, backlog=BACKLOG)
    except OSError as e:
        fail(f"cannot listen on {HOST}:{port}: {e}")
    print(server.sockets[0].getsockname()[1], flush=True)

    await stop.wait()
    server.close()
    for transport in list(connections):
        transport.abort()  # the contract allows an abrupt close of open connections
    await server.wait_closed()


def port_number(text):
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (expected 0..65535)")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], required=True)
    parser.add_argument("--api", choices=["streams", "protocol"], required=True)
    parser.add_argument("mode", choices=["echo", "http"])
    parser.add_argument("port", type=port_number, metavar="PORT")
    args = parser.parse_args()

    loop_factory = asyncio.new_event_loop
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            fail("uvloop is not installed (python3-uvloop)", status=3)
        loop_factory = uvloop.new_event_loop

    raise_nofile_limit()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(args.api, args.mode, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
