#!/usr/bin/env bash
# Usage: check_servers.sh <dir with echo_server, chat_server, http_hello, echo_client>
#
# Starts each server example on a free port, drives it with clients corio did not write
# (Python's asyncio, OpenBSD nc and socat for echo and chat; curl, nc and socat for HTTP), then
# stops it with SIGTERM or SIGINT and checks it shut down cleanly (exit status 0, "stopped"
# printed). Then runs corio's echo_client against an echo server written with Python's asyncio.
# Every client runs under `timeout`; nothing waits by sleeping a guessed time, only by polling
# for the expected output a bounded number of times.
set -uo pipefail

dir=${1:?usage: check_servers.sh <dir>}
python=/usr/bin/python3
failures=0
fail() {
    echo "check_servers: $*" >&2
    failures=$((failures + 1))
}
for tool in nc socat curl; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/deps.sh installs it)"
done

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# start <name>: runs the server on port 0 and sets $pid and $port from its first line.
start() {
    local name=$1
    "$dir/$name" 0 >"$work/$name.out" 2>"$work/$name.err" &
    pid=$!
    port=""
    for _ in $(seq 1 100); do
        port=$(sed -nE "s/^$name: listening on 127\.0\.0\.1:([0-9]+)$/\1/p" "$work/$name.out")
        [[ -n $port ]] && return 0
        sleep 0.05
    done
    fail "$name did not print 'listening on 127.0.0.1:<port>'"
    return 1
}

# stop <name> <signal>: sends the signal and checks a clean exit.
stop() {
    local name=$1 signal=$2 status
    kill -s "$signal" "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$name did not exit after SIG$signal"
        kill -9 "$pid"
    fi
    wait "$pid"
    status=$?
    ((status == 0)) || fail "$name exited with status $status after SIG$signal"
    grep -qx "$name: stopped" "$work/$name.out" || fail "$name did not print '$name: stopped'"
    if [[ -s $work/$name.err ]]; then
        fail "$name wrote to stderr:"
        cat "$work/$name.err" >&2
    fi
}

# shown <text>: the text quoted on one line ($'...' with \n, \r visible if it has control
# characters), cut to 300 characters.
shown() {
    local q="'$1'"
    [[ $1 == *[[:cntrl:]]* ]] && q=$(printf '%q' "$1")
    ((${#q} > 300)) && q="${q:0:300}...(${#1} bytes in all)"
    printf '%s' "$q"
}

# expect <what> <expected> <got>: fails, showing both, unless they are equal.
expect() {
    [[ $3 == "$2" ]] || fail "$1: expected $(shown "$2"), got $(shown "$3")"
}

# client_ok <what> <status>: fails unless a client exited 0 (124: `timeout` had to stop it).
client_ok() {
    local what=$1 status=$2
    if ((status == 124)); then
        fail "$what: still running at its time limit (the server never closed the connection?)"
        return 1
    fi
    ((status == 0)) || { fail "$what: exited with status $status"; return 1; }
}

# wait_for_line <file> <extended regex>: polls (for at most 10 s) until a line of the file
# matches; false if none does.
wait_for_line() {
    local _
    for _ in $(seq 1 200); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# status_line <file>: the first line of an HTTP response, without its \r.
status_line() {
    head -n 1 "$1" | tr -d '\r'
}

# http_body <file>: what follows the head (the first empty line) of an HTTP response.
http_body() {
    sed '1,/^\r$/d' "$1"
}

# --- echo_server: 50 concurrent asyncio clients, each sending 20 lines ----------------------------
if start echo_server; then
    if ! "$python" - "$port" <<'PY'; then
import asyncio, sys
port = int(sys.argv[1])
async def client(i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for j in range(20):
        line = f"client {i} line {j}\n".encode()
        w.write(line)
        await w.drain()
        got = await asyncio.wait_for(r.readline(), 10)
        assert got == line, (got, line)
    w.close()
    await w.wait_closed()
async def main():
    await asyncio.gather(*(client(i) for i in range(50)))
asyncio.run(main())
PY
        fail "echo_server: the asyncio clients did not get their lines back"
    fi

    # nc: -N shuts the connection down for writing at the end of stdin; the server echoes the
    # line, sees the end of the stream and closes, which ends nc.
    got=$(printf 'hello from nc\n' | timeout 10 nc -N 127.0.0.1 "$port")
    client_ok "echo_server: nc" $? && expect "echo_server: nc" "hello from nc" "$got"

    # socat half-closes after the end of stdin: everything sent comes back, an unterminated last
    # line included, then the server closes. (-t 30 outlasts `timeout 15`: socat ends early only
    # because the server closed.)
    printf 'first\nsecond\nno newline at the end' >"$work/halfclose.in"
    timeout 15 socat -t 30 - "TCP:127.0.0.1:$port" <"$work/halfclose.in" >"$work/halfclose.out"
    client_ok "echo_server: socat after its EOF" $? &&
        expect "echo_server: socat after its EOF" "$(cat "$work/halfclose.in")" \
            "$(cat "$work/halfclose.out")"

    # socat with 1 MiB of lines (base64's 77-byte lines): all of it back, byte for byte.
    head -c 786432 /dev/urandom | base64 >"$work/bulk.in"
    timeout 20 socat -t 60 - "TCP:127.0.0.1:$port" <"$work/bulk.in" >"$work/bulk.out"
    if client_ok "echo_server: socat with 1 MiB" $? &&
        ! cmp -s "$work/bulk.in" "$work/bulk.out"; then
        fail "echo_server: socat sent $(wc -c <"$work/bulk.in") bytes (cksum" \
            "$(cksum <"$work/bulk.in" | cut -d' ' -f1)) and got $(wc -c <"$work/bulk.out")" \
            "bytes back (cksum $(cksum <"$work/bulk.out" | cut -d' ' -f1)):" \
            "$(cmp "$work/bulk.in" "$work/bulk.out" 2>&1)"
    fi
    stop echo_server TERM
fi

# --- chat_server: a line from one client reaches the other ---------------------------------------
if start chat_server; then
    if ! "$python" - "$port" <<'PY'; then
import asyncio, sys
port = int(sys.argv[1])
async def main():
    ra, wa = await asyncio.open_connection("127.0.0.1", port)
    rb, wb = await asyncio.open_connection("127.0.0.1", port)
    assert (await asyncio.wait_for(ra.readline(), 10)).startswith(b"welcome")
    assert (await asyncio.wait_for(rb.readline(), 10)).startswith(b"welcome")
    wa.write(b"hi there\n")
    await wa.drain()
    got = await asyncio.wait_for(rb.readline(), 10)
    assert got.endswith(b": hi there\n"), got
    for w in (wa, wb):
        w.close()
        await w.wait_closed()
asyncio.run(main())
PY
        fail "chat_server: a message did not reach the other client"
    fi

    # Two listeners stay connected: socat reading only (-u) and nc not reading stdin (-d). Each
    # is in the room once its welcome has come.
    timeout 20 socat -u "TCP:127.0.0.1:$port" STDOUT >"$work/chat_socat.out" &
    socat_listener=$!
    timeout 20 nc -d 127.0.0.1 "$port" >"$work/chat_nc.out" &
    nc_listener=$!
    wait_for_line "$work/chat_socat.out" '^welcome, ' ||
        fail "chat_server: the listening socat got no welcome line; it got" \
            "$(shown "$(cat "$work/chat_socat.out")")"
    wait_for_line "$work/chat_nc.out" '^welcome, ' ||
        fail "chat_server: the listening nc got no welcome line; it got" \
            "$(shown "$(cat "$work/chat_nc.out")")"

    # nc says a line and ends its side; socat hears it, under nc's name (from nc's welcome).
    said=$(printf 'hi from nc\n' | timeout 10 nc -N 127.0.0.1 "$port")
    if client_ok "chat_server: the speaking nc" $?; then
        name=${said#welcome, }
        expect "chat_server: what the speaking nc received" "welcome, $name" "$said"
        wait_for_line "$work/chat_socat.out" "^${name//./\\.}: hi from nc\$" ||
            fail "chat_server: socat did not receive '$name: hi from nc'; it got" \
                "$(shown "$(cat "$work/chat_socat.out")")"
    fi

    # socat says a line and ends its side; nc hears it.
    said=$(printf 'hi from socat\n' | timeout 10 socat -t 30 - "TCP:127.0.0.1:$port")
    if client_ok "chat_server: the speaking socat" $?; then
        name=${said#welcome, }
        expect "chat_server: what the speaking socat received" "welcome, $name" "$said"
        wait_for_line "$work/chat_nc.out" "^${name//./\\.}: hi from socat\$" ||
            fail "chat_server: nc did not receive '$name: hi from socat'; it got" \
                "$(shown "$(cat "$work/chat_nc.out")")"
    fi
    stop chat_server INT
    # The server's shutdown closed the listeners' connections, which ended them.
    wait "$socat_listener"
    client_ok "chat_server: the listening socat, at the server's shutdown" $?
    wait "$nc_listener"
    client_ok "chat_server: the listening nc, at the server's shutdown" $?
fi

# --- http_hello: curl, one request and several over one keep-alive connection -------------------
if start http_hello; then
    body=$(curl -s --max-time 10 "http://127.0.0.1:$port/")
    [[ $body == "Hello, world!" ]] || fail "http_hello: curl got '$body'"
    count=$(curl -s --max-time 10 "http://127.0.0.1:$port/a" "http://127.0.0.1:$port/b" \
        "http://127.0.0.1:$port/c" | grep -c "Hello, world!")
    [[ $count == 3 ]] || fail "http_hello: three requests on one connection gave $count replies"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST "http://127.0.0.1:$port/")
    [[ $code == 405 ]] || fail "http_hello: POST gave HTTP $code (expected 405)"

    # nc: an HTTP/1.1 request asking to close; the server answers and closes.
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
        timeout 10 nc -N 127.0.0.1 "$port" >"$work/http_nc.out"
    if client_ok "http_hello: nc GET" $?; then
        expect "http_hello: nc GET, status line" "HTTP/1.1 200 OK" \
            "$(status_line "$work/http_nc.out")"
        expect "http_hello: nc GET, body" "Hello, world!" "$(http_body "$work/http_nc.out")"
        grep -q $'^Content-Length: 14\r$' "$work/http_nc.out" ||
            fail "http_hello: nc GET: no 'Content-Length: 14' in" \
                "$(shown "$(cat "$work/http_nc.out")")"
    fi

    # nc: a POST is refused with 405.
    printf 'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
        timeout 10 nc -N 127.0.0.1 "$port" >"$work/http_post.out"
    client_ok "http_hello: nc POST" $? &&
        expect "http_hello: nc POST, status line" "HTTP/1.1 405 Method Not Allowed" \
            "$(status_line "$work/http_post.out")"

    # socat: an HTTP/1.0 request (the server closes after the reply).
    printf 'GET /x HTTP/1.0\r\n\r\n' |
        timeout 10 socat -t 30 - "TCP:127.0.0.1:$port" >"$work/http_socat.out"
    if client_ok "http_hello: socat HTTP/1.0 GET" $?; then
        expect "http_hello: socat HTTP/1.0 GET, status line" "HTTP/1.1 200 OK" \
            "$(status_line "$work/http_socat.out")"
        expect "http_hello: socat HTTP/1.0 GET, body" "Hello, world!" \
            "$(http_body "$work/http_socat.out")"
    fi

    # socat: a GET and a HEAD pipelined in one write on a keep-alive connection: two answers,
    # one body; then socat's end of stream ends the connection.
    printf 'GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\n' |
        timeout 10 socat -t 30 - "TCP:127.0.0.1:$port" >"$work/http_pipelined.out"
    if client_ok "http_hello: socat pipelined GET and HEAD" $?; then
        statuses=$(grep -c $'^HTTP/1.1 200 OK\r$' "$work/http_pipelined.out")
        bodies=$(grep -c '^Hello, world!$' "$work/http_pipelined.out")
        [[ $statuses == 2 && $bodies == 1 ]] ||
            fail "http_hello: socat pipelined GET and HEAD: expected 2 '200 OK' and 1 body," \
                "got $statuses and $bodies: $(shown "$(cat "$work/http_pipelined.out")")"
    fi
    stop http_hello TERM
fi

# --- echo_client against a Python asyncio echo server -------------------------------------------
"$python" - >"$work/pyserver.out" 2>"$work/pyserver.err" <<'PY' &
import asyncio, signal, sys
async def echo(reader, writer):
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
asyncio.run(main())
PY
pypid=$!
pyport=""
for _ in $(seq 1 100); do
    pyport=$(head -n 1 "$work/pyserver.out")
    [[ -n $pyport ]] && break
    sleep 0.05
done
if [[ -z $pyport ]]; then
    fail "the Python asyncio echo server did not start"
else
    replies=$("$dir/echo_client" "$pyport" 127.0.0.1 "first line" "second line")
    status=$?
    ((status == 0)) || fail "echo_client exited with status $status against the asyncio server"
    [[ $replies == $'first line\nsecond line' ]] || fail "echo_client printed '$replies'"
fi
kill -TERM "$pypid" 2>/dev/null
wait "$pypid" 2>/dev/null

if ((failures > 0)); then
    echo "check_servers: $failures check(s) failed" >&2
    exit 1
fi
echo "check_servers: all checks passed"
