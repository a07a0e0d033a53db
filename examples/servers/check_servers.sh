#!/usr/bin/env bash
# Usage: check_servers.sh <dir with echo_server, chat_server, http_hello, echo_client>
#
# Starts each server example on a free port, drives it with clients corio did not write
# (Python's asyncio for echo and chat, curl for HTTP), then stops it with SIGTERM or SIGINT and
# checks it shut down cleanly (exit status 0, "stopped" printed). Then runs corio's echo_client
# against an echo server written with Python's asyncio.
set -uo pipefail

dir=${1:?usage: check_servers.sh <dir>}
python=/usr/bin/python3
failures=0
fail() {
    echo "check_servers: $*" >&2
    failures=$((failures + 1))
}

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
    stop chat_server INT
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
