"""Process handling shared by the benchmark drivers: a server under test (started pinned, with a
raised descriptor limit, stopped with SIGTERM and checked to exit 0), its CPU time and peak
memory from /proc, and one measurement of the echo load generator.

bench/run_bench.py uses it, and bench/run_micro.py its reading of bench_core's output.
"""
import json
import os
import resource
import select
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Echo metrics: key, column title, higher is better (bench/README.md, "What is measured").
ECHO_METRICS = [
    ("req_per_s", "req/s", True),
    ("mib_per_s", "MiB/s each way", True),
    ("p50_us", "p50 µs", False),
    ("p99_us", "p99 µs", False),
    ("cpu_us_per_req", "server CPU µs/req", False),
    ("server_cpu_pct", "server CPU %", False),
    ("load_cpu_pct", "load-gen CPU %", False),
    ("rss_mib", "server peak RSS MiB", False),
]

# Micro benchmarks: bench, unit, corio's Google Benchmark entry, its user counter, higher is
# better (bench/README.md, "corio's side").
MICRO_BENCHES = [
    ("spawn_join", "ns/op", "spawn_join", "ns_per_op", False),
    ("ping_pong", "ns/op", "ping_pong", "ns_per_op", False),
    ("ping_pong_event", "ns/op", "ping_pong_event", "ns_per_op", False),
    ("call_soon", "ns/op", "call_soon", "ns_per_op", False),
    ("call_soon_rate", "callbacks/s", "call_soon", "callbacks_per_s", True),
    ("timers_1m", "s", "timers_1m", "overhead_s", False),
    ("timers_1m_total", "s", "timers_1m", "total_s", False),
    ("queue_1m", "ns/item", "queue_1m", "ns_per_op", False),
    ("queue_1m_rate", "items/s", "queue_1m", "items_per_s", True),
    ("lock_uncontended", "ns/op", "lock_uncontended", "ns_per_op", False),
    ("event_set_wait", "ns/op", "event_set_wait", "ns_per_op", False),
    ("suspended_task_bytes", "bytes/task", "suspended_task_bytes", "bytes_per_task", False),
]
MICRO_UNITS = {bench: unit for bench, unit, *_ in MICRO_BENCHES}

__all__ = ["ECHO_METRICS", "MICRO_BENCHES", "MICRO_UNITS", "BenchError", "Server", "corio_micro_values", "cpu_seconds",
           "echo_measure", "free_port", "max_nofile", "peak_rss_kib", "pinned", "run_tool"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """One measurement failed; the message says which program and why."""


def pinned(cmd, cpu):
    """cmd run on CPU `cpu` (taskset execs it, so the pid stays the program's), or as is."""
    return ["taskset", "-c", str(cpu)] + list(cmd) if cpu is not None else list(cmd)


def nofile_limit_setter(limit):
    """A preexec_fn that sets RLIMIT_NOFILE of the child to `limit` (soft and hard), or raises
    the soft limit to the hard one when `limit` is None. Raising the hard limit needs
    CAP_SYS_RESOURCE: callers keep `limit` within `max_nofile()`."""

    def setter():
        if limit is None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return setter


CAP_SYS_RESOURCE = 24  # linux/capability.h


def can_raise_hard_limits():
    """Whether we hold CAP_SYS_RESOURCE, which raising a hard rlimit needs (root usually does,
    but a container may drop it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError):
        pass
    return False


def max_nofile():
    """The largest RLIMIT_NOFILE a child of ours can get: up to fs.nr_open with
    CAP_SYS_RESOURCE, else the current hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if not can_raise_hard_limits():
        return hard
    try:
        return max(hard, int(Path("/proc/sys/fs/nr_open").read_text()))
    except (OSError, ValueError):
        return hard


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (clock-tick resolution)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/stat: {e}")
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    # utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_kib(pid):
    """VmHWM (peak resident set) of a live process, in KiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/status: {e}")
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def free_port():
    """A TCP port that was free a moment ago (bind to port 0, close), for servers such as nginx
    that cannot report the port the kernel picked."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout):
    """Wait until 127.0.0.1:port accepts a connection; False if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Server:
    """A server under test, as a context manager that always kills it on the way out.

    `cmd` is the whole command line. Without `port`, the server must print the port it listens
    on as its first line on stdout (it is given port 0); with `port`, it is expected to listen
    there and the start-up waits until the port accepts connections. `cpu` pins it with taskset;
    `nofile` sets its RLIMIT_NOFILE (None: soft raised to hard). Its stderr goes to a temporary
    file, so that a chatty server can never block on a full pipe; it is quoted in errors.
    """

    START_TIMEOUT = 15  # seconds; Python servers import their event loop first
    STOP_TIMEOUT = 10

    def __init__(self, name, cmd, *, cpu=None, port=None, nofile=None, env=None):
        self.name = name
        self.cmd = pinned(cmd, cpu)
        self._stderr = tempfile.TemporaryFile(mode="w+")
        try:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                         env=env, preexec_fn=nofile_limit_setter(nofile))
        except (OSError, subprocess.SubprocessError) as e:
            self._stderr.close()
            raise BenchError(f"cannot start the {name} server ({shlex.join(self.cmd)}): {e}")
        try:
            self.port = self._wait_until_listening(port)
        except BenchError:
            self.__exit__()
            raise

    def _wait_until_listening(self, port):
        """The port the server listens on, once it does; BenchError if it does not."""
        if port is not None:
            if not wait_for_port(port, self.proc, self.START_TIMEOUT):
                self.kill()
                raise BenchError(f"the {self.name} server ({shlex.join(self.cmd)}) did not accept "
                                 f"connections on port {port} (status {self.proc.returncode})"
                                 f"{self.stderr_tail(', stderr: ')}")
            return port
        ready, _, _ = select.select([self.proc.stdout], [], [], self.START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit() or int(line) == 0:
            self.kill()
            said = f"printed {line!r}" if line else "no port on stdout"
            raise BenchError(f"the {self.name} server ({shlex.join(self.cmd)}) did not start: "
                             f"{said}{self.stderr_tail(', stderr: ')}")
        return int(line)

    @property
    def pid(self):
        return self.proc.pid

    def stderr_tail(self, prefix="", limit=2000):
        """The end of what the server wrote on stderr, after `prefix`; "" if nothing."""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().strip()
        if not text:
            return ""
        return prefix + (text if len(text) <= limit else "…" + text[-limit:])

    def blame(self, error):
        """`error` (from a client of this server), completed with the server's exit status and
        stderr if the server is dead: often the cause of the client's failure."""
        if self.proc.poll() is None:
            return error
        return BenchError(f"{error}; the {self.name} server had exited with status "
                          f"{self.proc.returncode}{self.stderr_tail(': ')}")

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"the {self.name} server died (status {self.proc.returncode})"
                             f"{self.stderr_tail(': ')}")

    def cpu_seconds(self):
        self.check_alive()
        return cpu_seconds(self.pid)

    def peak_rss_kib(self):
        self.check_alive()
        return peak_rss_kib(self.pid)

    def stop(self, sig=signal.SIGTERM):
        """Send `sig`; the server must exit 0 within STOP_TIMEOUT seconds."""
        self.check_alive()
        self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"the {self.name} server did not exit within {self.STOP_TIMEOUT} s "
                             f"of {signal.Signals(sig).name}")
        if status != 0:
            raise BenchError(f"the {self.name} server exited with status {status} on "
                             f"{signal.Signals(sig).name}{self.stderr_tail(': ')}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        self.proc.stdout.close()
        self._stderr.close()


def run_tool(cmd, what, timeout, nofile=None, env=None):
    """Run a client program (or a benchmark) to completion; its stdout, or BenchError with its
    stderr. `nofile` as for Server."""
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env, preexec_fn=nofile_limit_setter(nofile))
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: {shlex.join(cmd)} did not finish within {timeout:g} s")
    except (OSError, subprocess.SubprocessError) as e:
        raise BenchError(f"{what}: cannot run {shlex.join(cmd)}: {e}")
    if proc.returncode:
        out = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise BenchError(f"{what}: {shlex.join(cmd)} exited with status {proc.returncode}: {out}")
    return proc.stdout


def echo_measure(server, load_cmd, size, conns, duration, warmup):
    """One closed-loop measurement of a started echo server with echo_load (`load_cmd`: the
    program, possibly behind taskset); returns {metric: value} for ECHO_METRICS."""
    cmd = load_cmd + ["--port", str(server.port), "--connections", str(conns), "--size",
                      str(size), "--duration", str(duration), "--warmup", str(warmup),
                      "--server-pid", str(server.pid)]
    try:
        out = run_tool(cmd, f"against the {server.name} server", timeout=duration + warmup + 60)
    except BenchError as e:
        raise server.blame(e) from None
    try:
        r = json.loads(out)
    except json.JSONDecodeError as e:
        raise BenchError(f"echo_load printed no JSON ({e}): {out[:200]!r}")
    rss_kib = server.peak_rss_kib()
    if r["requests"] == 0:
        raise BenchError(f"no request completed against the {server.name} server")
    return {
        "req_per_s": r["req_per_s"],
        "mib_per_s": r["rx_mib_per_s"],
        "p50_us": r["p50_us"],
        "p99_us": r["p99_us"],
        "cpu_us_per_req": r["server_cpu_s"] * 1e6 / r["requests"],
        "server_cpu_pct": 100 * r["server_cpu_s"] / r["seconds"],
        "load_cpu_pct": 100 * r["client_cpu_s"] / r["seconds"],
        "rss_mib": rss_kib / 1024,
    }


def corio_micro_values(text):
    """{bench: [values]} from bench_core's Google Benchmark JSON, mapped by MICRO_BENCHES
    (bench/README.md, "corio's side"): aggregates skipped, one value per repetition."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchError(f"bench_core's output is not Google Benchmark JSON ({e})")
    out = {}
    for entry in doc.get("benchmarks", []):
        if entry.get("run_type") == "aggregate":
            continue
        if entry.get("error_occurred"):
            raise BenchError(f"corio benchmark {entry['name']} failed: "
                             f"{entry.get('error_message')}")
        base = entry["name"].split("/")[0]
        for bench, _, name, counter, _ in MICRO_BENCHES:
            if base == name and counter in entry:
                out.setdefault(bench, []).append(float(entry[counter]))
    return out
