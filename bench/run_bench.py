#!/usr/bin/env python3
"""Run corio's benchmark suite side by side with its peers; write a report, plots and raw data.

Usage: /usr/bin/python3 bench/run_bench.py [--quick] [--runs N] [--only echo,http,micro,idle]
           [--servers NAME,...] [--out-dir bench/results] [--date YYYY-MM-DD]
Normally run through ./scripts/bench.sh, which builds everything first.

Workloads (the sections of the report):
  echo   every echo server x message size {1, 10, 100} KiB x connections {10, 100, 1000},
         closed loop with build/release/bench/echo_load
  http   `wrk -t1 -c100 --latency` against corio's HTTP "hello" server, nginx and the peers'
  micro  spawn_join, ping_pong, timers_1m(_total), suspended_task_bytes of every runtime
  idle   memory per idle connection of every echo server (build/release/bench/idle_conns)
The server (and every micro benchmark) runs on CPU 0, the load generator on CPU 1. Every figure
is the median of --runs runs with min-max, servers interleaved, a fresh server per measurement.

Writes OUT_DIR/DATE.md (OUT_DIR/DATE-quick.md with --quick, so that a smoke test never
overwrites a full report), OUT_DIR/DATE.json (every sample) and the plots in OUT_DIR/DATE/.
Exits 1 if any measurement failed (the report shows which and why), 2 on a usage error.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ECHO_METRICS, MICRO_UNITS, BenchError, Server, corio_micro_values,  # noqa: E402
                     echo_measure, free_port, max_nofile, pinned, run_tool)
from report import cell, cpu_model, fmt, memory_total, ratio, ratio_value  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU, LOAD_CPU = 0, 1
WORKLOADS = ["echo", "http", "micro", "idle"]

ECHO_SIZES = [1024, 10 * 1024, 100 * 1024]
ECHO_CONNECTIONS = [10, 100, 1000]
QUICK_ECHO_POINTS = [(1024, 100), (100 * 1024, 10)]
NATIVE_PEERS = ["libuv", "asio", "tokio", "go"]  # built by bench/peers/build_all.sh
PY_LOOPS = ["uvloop", "asyncio"]
PY_APIS = ["protocol", "streams"]

HELLO_BODY = b"Hello, World!\n"
WRK_CONNECTIONS = 100

# The micro benchmarks shown (bench/README.md, "What is measured"), with whether higher is better.
MICRO_SHOWN = ["spawn_join", "ping_pong", "timers_1m", "timers_1m_total", "suspended_task_bytes"]
MICRO_HIGHER_IS_BETTER = False  # all five are times or bytes
# bench_core's entries behind them (suspended_task_bytes is registered first in bench_core).
CORIO_MICRO_FILTER = "^(spawn_join|ping_pong|timers_1m|suspended_task_bytes)/"

# HTTP metrics: key, column title, higher is better.
HTTP_METRICS = [
    ("req_per_s", "req/s", True),
    ("p50_us", "p50 µs", False),
    ("p99_us", "p99 µs", False),
    ("cpu_us_per_req", "server CPU µs/req", False),
    ("server_cpu_pct", "server CPU %", False),
    ("rss_mib", "server peak RSS MiB", False),
]
IDLE_METRICS = [
    ("bytes_per_conn", "bytes/conn", False),
    ("connect_s", "connect s", False),
    ("echo_s", "first echo s", False),
    ("rss_mib", "server RSS after MiB", False),
    ("cpu_us_per_conn", "server CPU µs/conn", False),
]

START = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - START:7.1f} s] {msg}", file=sys.stderr, flush=True)


def size_name(size):
    return f"{size // 1024} KiB"


@dataclass
class Target:
    """One server (or micro-benchmark program) of one workload."""
    name: str  # as shown in the report, e.g. "uvloop protocol"
    peer: str  # the peer it belongs to, e.g. "uvloop" (for --servers and the Peers section)
    cmd: list = field(default_factory=list)  # with port 0 at the end; [] for nginx
    missing: str = None  # why it cannot run, or None


class Peers:
    """What is built and installed: the targets of each workload, each available or not."""

    def __init__(self, args):
        self.args = args
        self.bin = args.bin_dir
        self.status = {}
        self.status_note = None
        status_file = args.peers_dir / "status.json"
        try:
            self.status = json.loads(status_file.read_text())
        except FileNotFoundError:
            self.status_note = (f"{status_file} not found: the peers were not built with "
                                f"bench/peers/build_all.sh {args.peers_dir}")
        except (OSError, json.JSONDecodeError) as e:
            self.status_note = f"{status_file} unreadable: {e}"
        try:
            import uvloop
            self.uvloop_version, self.uvloop_missing = uvloop.__version__, None
        except ImportError as e:
            self.uvloop_version = None
            self.uvloop_missing = (f"uvloop cannot be imported by {sys.executable} ({e}): "
                                   "./scripts/deps.sh --bench installs python3-uvloop")
        self.nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access(
            "/usr/sbin/nginx", os.X_OK) else None)
        self.wrk = shutil.which("wrk")

    def corio_program(self, program):
        path = self.bin / program
        if os.access(path, os.X_OK):
            return [str(path)], None
        return [], (f"{path} not found: build it with `cmake --preset release && "
                    "cmake --build --preset release`")

    def native(self, name):
        """The command prefix of a compiled peer, or the reason it is not there."""
        path = self.args.peers_dir / f"{name}-peer"
        entry = self.status.get(name)
        if isinstance(entry, dict) and not entry.get("built", False):
            return [], f"not built: {entry.get('reason', 'no reason given')}"
        if os.access(path, os.X_OK):
            return [str(path)], None
        if self.status_note:
            return [], f"{path} not found ({self.status_note})"
        if entry is None:
            return [], f"{path} not found (and not in {self.args.peers_dir / 'status.json'})"
        return [], f"build_all.sh reported it built, but {path} is missing"

    def python(self, script, loop):
        path = ROOT / "bench" / "peers" / script
        if not path.is_file():
            return [], f"{path} not found"
        if loop == "uvloop" and self.uvloop_missing:
            return [], self.uvloop_missing
        return [sys.executable, str(path), "--loop", loop], None

    def echo(self):
        targets = []
        for name, program in [("corio", "corio_echo_server"),
                              ("raw epoll", "raw_epoll_echo_server")]:
            cmd, why = self.corio_program(program)
            targets.append(Target(name, name, cmd + ["0"], why))
        for name in NATIVE_PEERS:
            cmd, why = self.native(name)
            targets.append(Target(name, name, cmd + ["echo", "0"], why))
        for loop in PY_LOOPS:
            for api in PY_APIS:
                cmd, why = self.python("asyncio_net.py", loop)
                targets.append(Target(f"{loop} {api}", loop, cmd + ["--api", api, "echo", "0"],
                                      why))
        return targets

    def http(self):
        cmd, why = self.corio_program("corio_http_server")
        targets = [Target("corio", "corio", cmd + ["0"], why),
                   Target("nginx", "nginx", [], None if self.nginx else
                          "nginx not installed (./scripts/deps.sh --bench installs nginx-light)")]
        for name in NATIVE_PEERS:
            cmd, why = self.native(name)
            targets.append(Target(name, name, cmd + ["http", "0"], why))
            if name == "go":
                targets.append(Target("go net/http", name, cmd + ["nethttp", "0"], why))
        for loop in PY_LOOPS:
            for api in PY_APIS:
                cmd, why = self.python("asyncio_net.py", loop)
                targets.append(Target(f"{loop} {api}", loop, cmd + ["--api", api, "http", "0"],
                                      why))
        return targets

    def micro(self):
        quick = ["--quick"] if self.args.quick else []
        cmd, why = self.corio_program("bench_core")
        targets = [Target("corio", "corio", cmd + ["--benchmark_format=json",
                                                   f"--benchmark_filter={CORIO_MICRO_FILTER}"],
                          why)]
        for name in ["tokio", "go", "asio", "libuv"]:
            cmd, why = self.native(name)
            targets.append(Target(name, name, cmd + ["micro"] + quick, why))
        for loop in PY_LOOPS[::-1]:
            cmd, why = self.python("asyncio_micro.py", loop)
            targets.append(Target(loop, loop, cmd + quick, why))
        return targets

    def tool(self, workload):
        """The load generator of a workload: (command, None) or ([], why it is missing)."""
        if workload == "http":
            return ([self.wrk], None) if self.wrk else (
                [], "wrk not installed (./scripts/deps.sh --bench installs it)")
        if workload in ("echo", "idle"):
            return self.corio_program("echo_load" if workload == "echo" else "idle_conns")
        return [], None  # micro: the programs measure themselves


class Results:
    """Every sample and failure, by (workload, server, point); point is a tuple: (size, conns)
    for echo, () for http, (bench,) for micro, (connections,) for idle."""

    def __init__(self):
        self.records = []  # in the order taken, for the JSON file
        self.values = {}  # (workload, server, point) -> {metric: [values]}
        self.errors = {}  # (workload, server, point) -> [messages]

    def add(self, workload, server, point, run, metrics=None, error=None, **extra):
        record = {"workload": workload, "server": server, "point": list(point), "run": run,
                  **extra}
        key = (workload, server, point)
        if error is None:
            record["metrics"] = metrics
            cell_values = self.values.setdefault(key, {})
            for k, v in metrics.items():
                cell_values.setdefault(k, []).append(v)
        else:
            record["error"] = error
            self.errors.setdefault(key, []).append(error)
        self.records.append(record)

    def get(self, workload, server, point, metric):
        """The samples of a cell, or [] if it failed or has none."""
        key = (workload, server, point)
        if self.errors.get(key):
            return []
        return self.values.get(key, {}).get(metric, [])

    def median(self, workload, server, point, metric):
        values = self.get(workload, server, point, metric)
        return statistics.median(values) if values else None

    def failed(self):
        return any(self.errors.values())


class Notes:
    """The failure messages shown under a table, numbered; a cell refers to them as [n]."""

    def __init__(self):
        self.messages = []  # [(message, [where...])]

    def ref(self, where, messages):
        refs = []
        for msg in messages:
            for i, (m, places) in enumerate(self.messages):
                if m == msg:
                    if where not in places:
                        places.append(where)
                    break
            else:
                self.messages.append((msg, [where]))
                i = len(self.messages) - 1
            if f"[{i + 1}]" not in refs:
                refs.append(f"[{i + 1}]")
        return "FAILED " + "".join(refs)

    def lines(self):
        if not self.messages:
            return []
        out = ["", "Failures:", ""]
        for i, (msg, places) in enumerate(self.messages):
            out.append(f"{i + 1}. {', '.join(places)}:")
            out += ["", "   ```text"] + ["   " + line for line in msg.splitlines()] + ["   ```"]
        return out


# ---------------------------------------------------------------------------------------------
# The workloads


def ordered(targets, run):
    """Servers interleaved within a run, the order alternating from one run to the next."""
    return targets if run % 2 == 0 else targets[::-1]


def run_echo(args, targets, load, results):
    load_cmd = pinned(load, LOAD_CPU if args.pin else None)
    cpu = SERVER_CPU if args.pin else None
    for run in range(args.runs):
        for size, conns in args.echo_points:
            for t in ordered(targets, run):
                point = (size, conns)
                try:
                    with Server(t.name, t.cmd, cpu=cpu) as server:
                        metrics = echo_measure(server, load_cmd, size, conns,
                                               args.echo_duration, args.echo_warmup)
                        server.stop()
                    results.add("echo", t.name, point, run + 1, metrics, size=size,
                                connections=conns)
                except BenchError as e:
                    results.add("echo", t.name, point, run + 1, error=str(e), size=size,
                                connections=conns)
                    log(f"echo {t.name} {size_name(size)} x {conns}: FAILED: {e}")
            summary = ", ".join(
                f"{t.name} {fmt(v[-1])}" for t in targets
                if (v := results.values.get(("echo", t.name, (size, conns)), {})
                    .get("req_per_s")))
            log(f"echo run {run + 1}/{args.runs} {size_name(size)} x {conns}: req/s {summary}")


WRK_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                               r"timeout (\d+)")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(out):
    """requests, req/s, p50 and p99 in µs from wrk --latency's report; BenchError on errors."""
    errors = WRK_SOCKET_ERRORS.search(out)
    if errors and any(int(n) for n in errors.groups()):
        raise BenchError(f"wrk reported socket errors:\n{out.strip()}")
    if (non2xx := WRK_NON_2XX.search(out)) and int(non2xx.group(1)):
        raise BenchError(f"wrk reported non-2xx responses:\n{out.strip()}")
    requests, rate = WRK_REQUESTS.search(out), WRK_RATE.search(out)
    latency = {p: float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
               for p, v, unit in WRK_LATENCY.findall(out)}
    if not requests or not rate or set(latency) != {"50", "99"}:
        raise BenchError(f"cannot read wrk's report:\n{out.strip()}")
    if int(requests.group(1)) == 0:
        raise BenchError(f"wrk completed no request:\n{out.strip()}")
    return int(requests.group(1)), float(rate.group(1)), latency["50"], latency["99"]


def check_hello(name, port):
    """One request: the server must answer 200 with exactly the body "Hello, World!\\n"."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"the {name} server did not answer a GET /: {e!r}")
    finally:
        conn.close()
    if response.status != 200 or body != HELLO_BODY:
        raise BenchError(f"the {name} server answered GET / with status {response.status} and "
                         f"body {body[:100]!r}, not 200 and {HELLO_BODY!r}")


def start_nginx(nginx, tmp, cpu):
    """nginx, single process, from bench/http/nginx.conf.in rendered into `tmp`."""
    port = free_port()
    template = (ROOT / "bench" / "http" / "nginx.conf.in").read_text()
    conf = template.replace("@DIR@", str(tmp)).replace("@PORT@", str(port))
    if "@" in conf.replace("@@", ""):
        raise BenchError("bench/http/nginx.conf.in has a placeholder other than @DIR@, @PORT@")
    (tmp / "nginx.conf").write_text(conf)
    cmd = [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")]
    try:
        return Server("nginx", cmd, cpu=cpu, port=port)
    except BenchError as e:
        log_file = tmp / "error.log"
        log_text = log_file.read_text().strip() if log_file.exists() else ""
        raise BenchError(f"{e}{'; error.log: ' + log_text if log_text else ''}")


def http_once(args, t, wrk, peers):
    cpu = SERVER_CPU if args.pin else None
    with tempfile.TemporaryDirectory(prefix="corio-bench-nginx-") as tmp:
        server = (start_nginx(peers.nginx, Path(tmp), cpu) if t.name == "nginx" else
                  Server(t.name, t.cmd, cpu=cpu))
        with server:
            check_hello(t.name, server.port)
            cmd = pinned(wrk + ["-t1", f"-c{WRK_CONNECTIONS}", f"-d{args.http_duration}s",
                                "--latency", f"http://127.0.0.1:{server.port}/"],
                         LOAD_CPU if args.pin else None)
            cpu_before = server.cpu_seconds()
            try:
                out = run_tool(cmd, f"against the {t.name} server",
                               timeout=args.http_duration + 60)
            except BenchError as e:
                raise server.blame(e) from None
            cpu_used = server.cpu_seconds() - cpu_before
            rss_kib = server.peak_rss_kib()
            server.stop()
    requests, rate, p50, p99 = parse_wrk(out)
    return {
        "req_per_s": rate,
        "p50_us": p50,
        "p99_us": p99,
        "cpu_us_per_req": cpu_used * 1e6 / requests,
        # wrk's window is its -d duration (its own report says how long it really ran)
        "server_cpu_pct": 100 * cpu_used / args.http_duration,
        "rss_mib": rss_kib / 1024,
        "requests": requests,
    }


def run_http(args, targets, wrk, results, peers):
    for run in range(args.runs):
        for t in ordered(targets, run):
            try:
                metrics = http_once(args, t, wrk, peers)
                results.add("http", t.name, (), run + 1, metrics)
                log(f"http run {run + 1}/{args.runs} {t.name}: {fmt(metrics['req_per_s'])} req/s")
            except BenchError as e:
                results.add("http", t.name, (), run + 1, error=str(e))
                log(f"http run {run + 1}/{args.runs} {t.name}: FAILED: {e}")


def micro_once(args, t):
    """One run of one runtime's micro benchmarks: {bench: value} for every bench it printed."""
    cmd = pinned(t.cmd, SERVER_CPU if args.pin else None)
    env = {k: v for k, v in os.environ.items() if k != "CORIO_BENCH_QUICK"}
    if t.name == "corio" and args.quick:
        env["CORIO_BENCH_QUICK"] = "1"
    out = run_tool(cmd, f"the {t.name} micro benchmarks", timeout=1800, env=env)
    if t.name == "corio":
        return {bench: values[0] for bench, values in corio_micro_values(out).items()}
    values = {}
    for line in out.splitlines():
        try:
            r = json.loads(line)
            bench, value, unit = r["bench"], float(r["value"]), r["unit"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise BenchError(f"{shlex.join(cmd)} printed a line that is not "
                             f'{{"peer", "bench", "value", "unit"}} JSON ({e}): {line!r}')
        if bench in MICRO_UNITS and MICRO_UNITS[bench] != unit:
            raise BenchError(f"{shlex.join(cmd)} printed {bench} in {unit!r}, "
                             f"not {MICRO_UNITS[bench]!r}: {line!r}")
        values[bench] = value
    return values


def run_micro(args, targets, results):
    for run in range(args.runs):
        rotation = run % len(targets)
        for t in targets[rotation:] + targets[:rotation]:  # rotate the order
            t0 = time.monotonic()
            try:
                values = micro_once(args, t)
            except BenchError as e:
                for bench in MICRO_SHOWN:
                    results.add("micro", t.name, (bench,), run + 1, error=str(e), bench=bench)
                log(f"micro run {run + 1}/{args.runs} {t.name}: FAILED: {e}")
                continue
            for bench, value in values.items():
                results.add("micro", t.name, (bench,), run + 1, {"value": value}, bench=bench)
            shown = ", ".join(f"{b} {fmt(values[b])}" for b in MICRO_SHOWN if b in values)
            log(f"micro run {run + 1}/{args.runs} {t.name} ({time.monotonic() - t0:.1f} s): "
                f"{shown}")


def run_idle(args, targets, idle_conns, results):
    n, limit = args.idle_conns, args.idle_conns + 1000
    load_cmd = pinned(idle_conns, LOAD_CPU if args.pin else None)
    for run in range(args.runs):
        for t in ordered(targets, run):
            try:
                with Server(t.name, t.cmd, cpu=SERVER_CPU if args.pin else None,
                            nofile=limit) as server:
                    cmd = load_cmd + ["--port", str(server.port), "--connections", str(n),
                                      "--server-pid", str(server.pid)]
                    try:
                        out = run_tool(cmd, f"against the {t.name} server", timeout=240,
                                       nofile=limit)
                    except BenchError as e:
                        raise server.blame(e) from None
                    server.stop()
                try:
                    r = json.loads(out)
                    metrics = {"bytes_per_conn": r["bytes_per_conn"],
                               "connect_s": r["connect_seconds"],
                               "echo_s": r["echo_seconds"],
                               "rss_mib": r["rss_after_kib"] / 1024,
                               "cpu_us_per_conn": r["server_cpu_s"] * 1e6 / n}
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise BenchError(f"idle_conns printed unexpected output ({e!r}): {out[:300]!r}")
                results.add("idle", t.name, (n,), run + 1, metrics, connections=n)
                log(f"idle run {run + 1}/{args.runs} {t.name}: "
                    f"{fmt(metrics['bytes_per_conn'])} bytes/conn, "
                    f"{metrics['connect_s']:.2f} s to connect {n:,}")
            except BenchError as e:
                results.add("idle", t.name, (n,), run + 1, error=str(e), connections=n)
                log(f"idle run {run + 1}/{args.runs} {t.name}: FAILED: {e}")


# ---------------------------------------------------------------------------------------------
# The report


def command_output(cmd, stderr=False, any_status=False):
    """First line a command prints (on stderr with stderr=True), or None if it cannot run or
    fails (unless any_status: wrk -v prints its version and exits 1)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stderr if stderr else proc.stdout).strip()
    return text.splitlines()[0] if (proc.returncode == 0 or any_status) and text else None


def corio_commit():
    commit = command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if commit is None:
        return "unknown (not a git checkout)"
    try:
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        dirty = ""
    return commit + ("+dirty" if dirty else "")


def versions(peers):
    """{what: version} of corio, the compilers and runtimes, and the load generators."""

    def search(text, pattern):
        m = re.search(pattern, text or "")
        return m.group(1) if m else "not found"

    def deb(package):
        v = command_output(["dpkg-query", "-W", "-f=${Version}", package])
        return f"{package} {v}" if v else f"{package} not installed"

    rustc = search(command_output(["/usr/bin/rustc", "--version"]), r"rustc (\S+)")
    return {
        "corio": corio_commit(),
        "g++": command_output(["g++", "-dumpfullversion"]) or "not found",
        "Python": platform.python_version(),
        "uvloop": peers.uvloop_version or "not available",
        "libuv": deb("libuv1-dev"),
        "Asio": deb("libasio-dev"),
        "Rust": f"rustc {rustc}, {deb('librust-tokio-dev')}",
        "Go": search(command_output(["/usr/bin/go", "version"]), r"go version go(\S+)"),
        "nginx": search(command_output([peers.nginx, "-v"], stderr=True) if peers.nginx
                        else None, r"nginx/(\S+)"),
        "wrk": search(command_output([peers.wrk, "-v"], any_status=True) if peers.wrk
                      else None, r"wrk (\S+)"),
    }


def one_cell(values):
    """median (min–max), or the value alone when there was one run."""
    return fmt(values[0]) if len(values) == 1 else cell(values)


def rendered(results, notes, workload, server, point, metric):
    key = (workload, server, point)
    if results.errors.get(key):
        # A micro run fails as a whole: its benches share one note.
        where = f"{workload} / {server}" + (
            f" / {point_name(workload, point)}" if point and workload != "micro" else "")
        return notes.ref(where, results.errors[key])
    return one_cell(results.values[key].get(metric, [])) if key in results.values else "n/a"


def point_name(workload, point):
    if workload == "echo":
        return f"{size_name(point[0])} × {point[1]}"
    if workload == "idle":
        return f"{point[0]:,} connections"
    return " ".join(map(str, point))


def ratio_cell(results, workload, server, point, metric, higher, corio="corio"):
    if server == corio:
        return ""
    return ratio(results.get(workload, corio, point, metric),
                 results.get(workload, server, point, metric), higher)


def echo_medians_table(args, results, names, metric, title, higher):
    """One metric of every echo server at every point, medians with the ratio to corio."""
    lines = [f"### {title} (medians)", "",
             "| server | " + " | ".join(point_name("echo", p) for p in args.echo_points) + " |",
             "|---|" + "---|" * len(args.echo_points)]
    for name in names:
        row = []
        for p in args.echo_points:
            m = results.median("echo", name, p, metric)
            r = ratio_value(results.get("echo", "corio", p, metric),
                            results.get("echo", name, p, metric), higher)
            text = fmt(m) if m is not None else (
                "FAILED" if results.errors.get(("echo", name, p)) else "n/a")
            row.append(text + (f" ({r:.2f}x)" if r is not None and name != "corio" else ""))
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines + [""]


def echo_section(args, targets, results, plots):
    names = [t.name for t in targets]
    notes = Notes()
    lines = [
        "## Echo",
        "",
        f"Closed loop with `echo_load`: each connection sends a message and waits for its whole "
        f"echo, then sends the next one; {args.echo_warmup:g} s warm-up, then "
        f"{args.echo_duration:g} s measured; a fresh server per measurement. Server CPU is "
        "utime + stime of the server over the measured window (clock-tick resolution) divided by "
        "the requests completed in it. With one core each side, the load generator is often the "
        "bottleneck (load-gen CPU % near 100): then req/s differ less than CPU per request, "
        "which is the figure to compare (bench/README.md, \"Reading CPU per request\").",
        "",
    ]
    lines += echo_medians_table(args, results, names, "req_per_s", "req/s", True)
    lines += ["In parentheses: corio / server (> 1 means corio is better).", ""]
    lines += echo_medians_table(args, results, names, "cpu_us_per_req",
                                "server CPU µs per request", False)
    lines += ["In parentheses: server / corio (> 1 means corio is better).", ""]
    lines += plot_links(plots, "echo")
    lines += [
        "### All figures",
        "",
        "| message | conns | server | " + " | ".join(t for _, t, _ in ECHO_METRICS) +
        " | req/s corio/X | CPU/req X/corio |",
        "|---|---|---|" + "---|" * len(ECHO_METRICS) + "---|---|",
    ]
    for p in args.echo_points:
        for name in names:
            row = [size_name(p[0]), str(p[1]), name]
            row += [rendered(results, notes, "echo", name, p, k) for k, _, _ in ECHO_METRICS]
            row += [ratio_cell(results, "echo", name, p, "req_per_s", True),
                    ratio_cell(results, "echo", name, p, "cpu_us_per_req", False)]
            lines.append("| " + " | ".join(row) + " |")
    return lines + notes.lines()


def http_section(args, targets, results, plots):
    notes = Notes()
    lines = [
        "## HTTP",
        "",
        f"`wrk -t1 -c{WRK_CONNECTIONS} -d{args.http_duration}s --latency` (keep-alive) against "
        "each server's HTTP \"hello\" (a fixed 200 response of 14 bytes; each server is first "
        "checked to answer exactly `Hello, World!\\n`). Server CPU is utime + stime of the server "
        "over wrk's run, per request; p50/p99 from wrk's latency distribution. nginx runs as "
        "one process (no master, one worker), from `bench/http/nginx.conf.in`.",
        "",
        "| server | " + " | ".join(t for _, t, _ in HTTP_METRICS) +
        " | req/s corio/X | CPU/req X/corio |",
        "|---|" + "---|" * len(HTTP_METRICS) + "---|---|",
    ]
    for t in targets:
        row = [t.name] + [rendered(results, notes, "http", t.name, (), k)
                          for k, _, _ in HTTP_METRICS]
        row += [ratio_cell(results, "http", t.name, (), "req_per_s", True),
                ratio_cell(results, "http", t.name, (), "cpu_us_per_req", False)]
        lines.append("| " + " | ".join(row) + " |")
    return lines + notes.lines() + [""] + plot_links(plots, "http")


def micro_section(args, targets, results, plots):
    notes = Notes()
    lines = [
        "## Micro benchmarks",
        "",
        "As defined in bench/README.md (\"What is measured\"); each runtime's own program, pinned "
        "to CPU " + (f"{SERVER_CPU}" if args.pin else "(not pinned)") +
        f"{', quick N' if args.quick else ''}. `ping_pong` uses each runtime's cheapest one-shot "
        "wake-up (corio and Python: futures; the peers say which in their source). "
        "\"n/a\": the runtime has no such notion (e.g. tasks in libuv). X/corio > 1 means corio "
        "is better (lower time or memory).",
        "",
        "| bench | unit | runtime | median (min–max) | X/corio |",
        "|---|---|---|---|---|",
    ]
    for bench in MICRO_SHOWN:
        for t in targets:
            value = rendered(results, notes, "micro", t.name, (bench,), "value")
            lines.append(f"| {bench} | {MICRO_UNITS[bench]} | {t.name} | {value} | "
                         f"{ratio_cell(results, 'micro', t.name, (bench,), 'value', False)} |")
    return lines + notes.lines() + [""] + plot_links(plots, "micro")


def idle_section(args, targets, results, plots):
    notes = Notes()
    n = args.idle_conns
    lines = [
        "## Idle connections",
        "",
        f"`idle_conns` opens {n:,} connections to a fresh echo server (with RLIMIT_NOFILE "
        f"{n + 1000:,}), echoes one byte on each, waits 0.5 s, and reads the growth of the "
        "server's resident set (VmRSS): user-space memory per idle connection (socket buffers "
        "are the kernel's and do not show). Connect time is for all the connections, from one "
        "client thread.",
    ]
    if args.idle_note:
        lines += ["", f"**Note**: {args.idle_note}"]
    lines += [
        "",
        "| server | " + " | ".join(t for _, t, _ in IDLE_METRICS) + " | bytes/conn X/corio |",
        "|---|" + "---|" * len(IDLE_METRICS) + "---|",
    ]
    for t in targets:
        row = [t.name] + [rendered(results, notes, "idle", t.name, (n,), k)
                          for k, _, _ in IDLE_METRICS]
        row.append(ratio_cell(results, "idle", t.name, (n,), "bytes_per_conn", False))
        lines.append("| " + " | ".join(row) + " |")
    return lines + notes.lines() + [""] + plot_links(plots, "idle")


def plot_links(plots, workload):
    links = [f"![{title}]({path})" for w, title, path in plots if w == workload]
    return links + [""] if links else []


def targets_section(args, results):
    """The goals of issue 7, each evaluated on the medians: met / NOT met / not evaluated."""
    rows = []

    def med(workload, server, point, metric):
        return results.median(workload, server, point, metric)

    def no_figure(workload, point, servers):
        """Why the figures of `servers` are missing: failed, or not run at all."""
        why = [f"{n} ({'FAILED' if results.errors.get((workload, n, point)) else 'not run'})"
               for n in servers]
        return "no figure for " + " and ".join(why)

    def compare(goal, workload, point, metric, other, factor, higher, unit):
        c, o = med(workload, "corio", point, metric), med(workload, other, point, metric)
        if c is None or o is None:
            missing = [n for n, v in (("corio", c), (other, o)) if v is None]
            rows.append((goal, no_figure(workload, point, missing), "not evaluated"))
            return
        ok = c >= factor * o if higher else c <= factor * o
        rel = c / o if o else float("inf")
        rows.append((goal, f"corio {fmt(c)} {unit}, {other} {fmt(o)} {unit}: "
                           f"corio/{other} = {rel:.2f}", "met" if ok else "NOT met"))

    def strictly(goal, workload, point, metric, other, higher, unit):
        c, o = med(workload, "corio", point, metric), med(workload, other, point, metric)
        if c is None or o is None:
            missing = [n for n, v in (("corio", c), (other, o)) if v is None]
            rows.append((goal, no_figure(workload, point, missing), "not evaluated"))
            return
        ok = c > o if higher else c < o
        rows.append((goal, f"corio {fmt(c)} {unit}, {other} {fmt(o)} {unit}: "
                           f"corio/{other} = {c / o:.2f}", "met" if ok else "NOT met"))

    p = (1024, 100)
    compare("echo 1 KiB × 100: corio req/s ≥ 0.95 × raw epoll", "echo", p, "req_per_s",
            "raw epoll", 0.95, True, "req/s")
    strictly("echo 1 KiB × 100: corio req/s ahead of libuv", "echo", p, "req_per_s", "libuv",
             True, "req/s")
    compare("echo 1 KiB × 100: corio req/s ≥ 1.2 × uvloop protocol", "echo", p, "req_per_s",
            "uvloop protocol", 1.2, True, "req/s")
    compare("echo 1 KiB × 100: corio req/s ≥ 6 × asyncio streams", "echo", p, "req_per_s",
            "asyncio streams", 6, True, "req/s")
    compare("echo 1 KiB × 100: corio server CPU/req ≤ 1.05 × raw epoll's", "echo", p,
            "cpu_us_per_req", "raw epoll", 1.05, False, "µs/req")
    for conns in (10, 100):
        compare(f"echo 100 KiB × {conns}: corio req/s ≥ 1.0 × raw epoll", "echo",
                (100 * 1024, conns), "req_per_s", "raw epoll", 1.0, True, "req/s")
    for bench in ["spawn_join", "ping_pong", "suspended_task_bytes"]:
        goal = f"{bench}: corio better (lower) than every peer that reports it"
        unit = MICRO_UNITS[bench]
        c = med("micro", "corio", (bench,), "value")
        peers = {t: v for t in args.micro_names if t != "corio"
                 if (v := med("micro", t, (bench,), "value")) is not None}
        if c is None or not peers:
            rows.append((goal, no_figure("micro", (bench,), ["corio"]) if c is None else
                         "no peer reports it", "not evaluated"))
            continue
        best = min(peers, key=peers.get)
        worse = [t for t, v in peers.items() if v <= c]
        figures = (f"corio {fmt(c)} {unit}; best peer {best} {fmt(peers[best])} {unit} "
                   f"({peers[best] / c:.2f}x corio)" if c > 0 else f"corio {fmt(c)} {unit}")
        if worse:
            figures += f"; not beaten by corio: {', '.join(worse)}"
        rows.append((goal, figures, "NOT met" if worse else "met"))
    compare("http: corio req/s ≥ 1.0 × nginx", "http", (), "req_per_s", "nginx", 1.0, True,
            "req/s")

    lines = ["## Targets", "",
             "Evaluated on the medians above. \"not evaluated\": a figure is missing (workload "
             "or server not run, failed, or not in --quick's subset).", "",
             "| target | figures | result |", "|---|---|---|"]
    lines += [f"| {goal} | {figures} | **{result}** |" for goal, figures, result in rows]
    return lines + [""], rows


def peers_section(peers, all_targets, skipped_workloads, vers):
    """Which peers ran, which did not and why, with their versions."""
    version = {
        "corio": f"commit {vers['corio']}, g++ {vers['g++']}",
        "raw epoll": f"g++ {vers['g++']}",
        "libuv": vers["libuv"],
        "asio": vers["Asio"],
        "tokio": vers["Rust"],
        "go": f"go {vers['Go']}",
        "uvloop": f"uvloop {vers['uvloop']}, Python {vers['Python']}",
        "asyncio": f"Python {vers['Python']}",
        "nginx": f"nginx {vers['nginx']}",
    }
    lines = ["## Peers", "", "| peer | status | version |", "|---|---|---|"]
    for peer in version:
        entries = [(w, t) for w, ts in all_targets.items() for t in ts if t.peer == peer]
        if not entries:
            continue
        missing = [(w, t) for w, t in entries if t.missing]
        if not missing:
            status = "available"
        else:
            reasons = {}
            for w, t in missing:
                reasons.setdefault(t.missing, []).append(f"{w} {t.name}")
            status = ("NOT available: " if len(missing) == len(entries) else "partly: ") + \
                "; ".join(f"{', '.join(where)}: {why}" for why, where in reasons.items())
        lines.append(f"| {peer} | {status.replace('|', '/')} | {version[peer]} |")
    lines.append("")
    if peers.status_note:
        lines += [f"Peers' build status: {peers.status_note}.", ""]
    for w, why in skipped_workloads.items():
        lines += [f"Workload {w} not run: {why}.", ""]
    return lines


def write_report(args, peers, all_targets, results, skipped, vers, plots, elapsed):
    pinning = (f"servers and micro benchmarks on CPU {SERVER_CPU}, load generators on CPU "
               f"{LOAD_CPU} (taskset)" if args.pin else
               "NOT pinned: CPUs 0 and 1 are not both available (or taskset is missing)")
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    took = f"{elapsed / 60:.1f} min" if elapsed >= 120 else f"{elapsed:.0f} s"
    lines = [
        f"# corio benchmark suite: {args.date}{' (quick)' if args.quick else ''}",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(' ', 'seconds')}; the suite "
        f"took {took}",
        f"- command: `{shlex.join([sys.executable] + sys.argv)}`",
        f"- machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
        f"{cpu_model()}, {platform.system()} {platform.release()}, {memory_total()} memory; "
        f"load average at the start {args.loadavg_start}, at the end {' '.join(loadavg)}",
        "- versions: " + "; ".join(f"{k}: {v}" for k, v in vers.items()),
        f"- pinning: {pinning}; TCP over 127.0.0.1",
        f"- durations: echo {args.echo_warmup:g} s warm-up + {args.echo_duration:g} s measured "
        f"per point; wrk {args.http_duration} s; micro {'quick' if args.quick else 'full'} N; "
        f"idle {args.idle_conns:,} connections",
        (f"- {args.runs} runs per figure, servers interleaved (the order alternating from run "
         "to run), a fresh server per measurement; cells are median (min–max) over the runs. "
         if args.runs > 1 else
         "- 1 run per figure (cells are single values), a fresh server per measurement. ") +
        "Ratio columns compare medians, oriented so that > 1 means corio is better.",
        f"- raw samples: `{args.date + ('-quick' if args.quick else '')}.json`" +
        (f"; **plots not drawn**: {args.plot_error}" if args.plot_error else ""),
        "",
    ]
    target_rows = []
    body = []
    if "echo" in all_targets and "echo" not in skipped:
        body += echo_section(args, runnable(all_targets["echo"]), results, plots) + [""]
    if "http" in all_targets and "http" not in skipped:
        body += http_section(args, runnable(all_targets["http"]), results, plots) + [""]
    if "micro" in all_targets and "micro" not in skipped:
        body += micro_section(args, runnable(all_targets["micro"]), results, plots) + [""]
    if "idle" in all_targets and "idle" not in skipped:
        body += idle_section(args, runnable(all_targets["idle"]), results, plots) + [""]
    targets_lines, target_rows = targets_section(args, results)
    lines += targets_lines
    lines += peers_section(peers, all_targets, skipped, vers)
    lines += body
    text = "\n".join(lines).rstrip() + "\n"
    return text, target_rows


def runnable(targets):
    return [t for t in targets if not t.missing]


def make_plots(args, all_targets, results, plot_dir, rel_dir):
    """Draws the PNGs; returns them as [(workload, title, path relative to the report)]."""
    import plots  # matplotlib: imported only here, so that a missing one fails only the plots

    plot_dir.mkdir(parents=True, exist_ok=True)
    out = []

    def png(workload, title, filename):
        out.append((workload, title, f"{rel_dir}/{filename}"))
        return plot_dir / filename

    def bars(workload, names, point, metric):
        """[(name, (median, min, max) or None)] of one point."""
        return [(name, (statistics.median(v), min(v), max(v)) if v else None)
                for name in names for v in [results.get(workload, name, point, metric)]]

    def series(workload, names, points, metric):
        """[(name, [(median, min, max) or None per point])]."""
        return [(name, [value for _, value in
                        (bars(workload, [name], p, metric)[0] for p in points)])
                for name in names]

    names = {w: [t.name for t in runnable(ts)] for w, ts in all_targets.items()}
    if "echo" in names:
        sizes = list(dict.fromkeys(s for s, _ in args.echo_points))
        points = {size: [(s, c) for s, c in args.echo_points if s == size] for size in sizes}
        for size in sizes:
            plots.grouped_bars(
                png("echo", f"echo req/s, {size_name(size)} messages",
                    f"echo_req_s_{size // 1024}k.png"),
                f"Echo, {size_name(size)} messages: requests/s (higher is better)",
                "requests / s", [f"{c} connections" for _, c in points[size]],
                series("echo", names["echo"], points[size], "req_per_s"))
        plots.grouped_bar_panels(
            png("echo", "echo server CPU µs per request", "echo_cpu_us_per_req.png"),
            "Echo: server CPU µs per request (lower is better)", "CPU µs / request",
            [(f"{size_name(size)} messages", [f"{c} conns" for _, c in points[size]],
              series("echo", names["echo"], points[size], "cpu_us_per_req")) for size in sizes])
    if "http" in names:
        plots.bar_panels(
            png("http", "http req/s and server CPU µs per request", "http.png"),
            f"HTTP hello, wrk -t1 -c{WRK_CONNECTIONS}",
            [("requests / s (higher is better)", bars("http", names["http"], (), "req_per_s"),
              False),
             ("server CPU µs / request (lower is better)",
              bars("http", names["http"], (), "cpu_us_per_req"), False)])
    if "micro" in names:
        plots.bar_panels(
            png("micro", "micro benchmarks", "micro.png"),
            "Micro benchmarks (lower is better; log scale where values span more than 3x)",
            [(f"{b} ({MICRO_UNITS[b]})", bars("micro", names["micro"], (b,), "value"), True)
             for b in MICRO_SHOWN], columns=3)
    if "idle" in names:
        plots.bar_panels(
            png("idle", "idle connections: bytes per connection", "idle_bytes_per_conn.png"),
            f"Idle connections ({args.idle_conns:,}): server memory per connection",
            [("bytes / connection (lower is better)",
              bars("idle", names["idle"], (args.idle_conns,), "bytes_per_conn"), False)])
    return out


# ---------------------------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Servers for --servers: " + ", ".join(
            ["corio", "raw epoll", "nginx"] + NATIVE_PEERS + ["go net/http"] +
            [f"{loop} {api}" for loop in PY_LOOPS for api in PY_APIS] + PY_LOOPS) +
        " (a peer's name selects all its variants, e.g. uvloop).")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test, about 2 min: 1 run, echo 1 KiB x 100 and 100 KiB x 10 "
                        "only, wrk 1 s, micro --quick, idle 10,000 connections")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, quick 1)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="comma list of workloads to run (default all: echo,http,micro,idle)")
    parser.add_argument("--servers", help="comma list of servers/peers to run (default all)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results",
                        help="where to write the report (default bench/results)")
    parser.add_argument("--date", default=datetime.date.today().isoformat(),
                        help="names the outputs: OUT_DIR/DATE.md, DATE.json and DATE/ (with "
                        "--quick DATE-quick.md and so on; default today)")
    parser.add_argument("--echo-duration", type=float,
                        help="echo: measured seconds per point (default 1.5, quick 1)")
    parser.add_argument("--echo-warmup", type=float,
                        help="echo: warm-up seconds per point (default 0.25)")
    parser.add_argument("--http-duration", type=int,
                        help="http: wrk's -d in whole seconds (default 3, quick 1)")
    parser.add_argument("--idle-conns", type=int,
                        help="idle: connections (default 100000, quick 10000)")
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "build" / "release" / "bench",
                        help="corio's bench programs (default build/release/bench)")
    parser.add_argument("--peers-dir", type=Path, default=ROOT / "build" / "peers",
                        help="the peers built by bench/peers/build_all.sh (default build/peers)")
    args = parser.parse_args()

    def default(value, full, quick):
        return value if value is not None else (quick if args.quick else full)

    args.runs = default(args.runs, 3, 1)
    # Defaults sized for a full run of about 15 minutes on a 2-core machine (--quick: 1 to 2
    # minutes); the echo grid (270 measurements with 10 servers and 3 runs) is most of it.
    args.echo_duration = default(args.echo_duration, 1.5, 1.0)
    args.echo_warmup = default(args.echo_warmup, 0.25, 0.25)
    args.http_duration = default(args.http_duration, 3, 1)
    args.idle_conns = default(args.idle_conns, 100_000, 10_000)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.echo_duration <= 0 or args.echo_warmup < 0 or args.http_duration < 1:
        parser.error("durations must be positive (--http-duration at least 1)")
    if args.idle_conns < 1:
        parser.error("--idle-conns must be at least 1")
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    if unknown := [w for w in args.only if w not in WORKLOADS]:
        parser.error(f"unknown workload(s) in --only: {', '.join(unknown)} "
                     f"(known: {', '.join(WORKLOADS)})")
    if not re.fullmatch(r"[\w.-]+", args.date):
        parser.error("--date must be a plain name such as 2026-11-29")
    args.servers = ([s.strip() for s in args.servers.split(",") if s.strip()]
                    if args.servers else None)
    args.echo_points = (QUICK_ECHO_POINTS if args.quick else
                        [(s, c) for s in ECHO_SIZES for c in ECHO_CONNECTIONS])
    args.bin_dir, args.peers_dir = args.bin_dir.resolve(), args.peers_dir.resolve()
    args.out_dir = args.out_dir.resolve()
    args.pin = {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0) and bool(shutil.which("taskset"))
    args.loadavg_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return parser, args


def main():
    parser, args = parse_args()
    peers = Peers(args)
    all_targets = {"echo": peers.echo(), "http": peers.http(), "micro": peers.micro(),
                   "idle": peers.echo()}
    if args.servers:
        known = {t.name for ts in all_targets.values() for t in ts} | \
            {t.peer for ts in all_targets.values() for t in ts}
        if unknown := [s for s in args.servers if s not in known]:
            parser.error(f"unknown server(s) in --servers: {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
        all_targets = {w: [t for t in ts if t.name in args.servers or t.peer in args.servers]
                       for w, ts in all_targets.items()}
    all_targets = {w: ts for w, ts in all_targets.items() if w in args.only}
    args.micro_names = [t.name for t in runnable(all_targets.get("micro", []))]
    if not args.pin:
        log("CPUs 0 and 1 are not both available (or taskset is missing): running unpinned")

    skipped = {}  # workload -> why it did not run at all
    tools = {}
    for w in all_targets:
        tools[w], why = peers.tool(w)
        if not all_targets[w]:
            skipped[w] = "none of the servers chosen with --servers runs it"
        elif why:
            skipped[w] = why
        elif not runnable(all_targets[w]):
            skipped[w] = "none of its servers is available (see the table above)"
    args.idle_note = None
    if "idle" in all_targets and "idle" not in skipped:
        limit = max_nofile()
        if args.idle_conns + 1000 > limit:
            wanted = args.idle_conns
            args.idle_conns = max(1, limit - 1000)
            args.idle_note = (f"{args.idle_conns:,} connections instead of {wanted:,}: the "
                              f"descriptor limit (RLIMIT_NOFILE) cannot go above {limit:,} here "
                              "(raising the hard limit needs root with CAP_SYS_RESOURCE).")
            log(f"idle: {args.idle_note}")
    for w, ts in all_targets.items():
        for t in ts:
            if t.missing:
                log(f"{w}: {t.name} skipped: {t.missing}")
        if w in skipped:
            log(f"{w}: not run: {skipped[w]}")

    results = Results()
    runners = {
        "echo": lambda ts: run_echo(args, ts, tools["echo"], results),
        "http": lambda ts: run_http(args, ts, tools["http"], results, peers),
        "micro": lambda ts: run_micro(args, ts, results),
        "idle": lambda ts: run_idle(args, ts, tools["idle"], results),
    }
    for w in WORKLOADS:
        if w in all_targets and w not in skipped:
            log(f"{w}: {', '.join(t.name for t in runnable(all_targets[w]))}")
            runners[w](runnable(all_targets[w]))
    elapsed = time.monotonic() - START

    stem = args.date + ("-quick" if args.quick else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = args.out_dir / f"{stem}.md", args.out_dir / f"{stem}.json"
    vers = versions(peers)
    _, target_rows = targets_section(args, results)
    # The raw samples first: whatever happens to the plots, the measurements are kept.
    json_path.write_text(json.dumps({
        "date": args.date,
        "quick": args.quick,
        "command": [sys.executable] + sys.argv,
        "machine": {"cpus": os.cpu_count(), "model": cpu_model(), "kernel": platform.release(),
                    "memory": memory_total()},
        "versions": vers,
        "settings": {"runs": args.runs, "pinned": args.pin, "echo_duration": args.echo_duration,
                     "echo_warmup": args.echo_warmup, "http_duration": args.http_duration,
                     "idle_connections": args.idle_conns, "echo_points": args.echo_points},
        "not_available": {w: [{"server": t.name, "reason": t.missing} for t in ts if t.missing]
                          for w, ts in all_targets.items()},
        "workloads_not_run": skipped,
        "targets": [{"target": g, "figures": f, "result": r} for g, f, r in target_rows],
        "samples": results.records,
        "elapsed_s": elapsed,
    }, indent=1) + "\n")
    try:
        plots = make_plots(args, {w: ts for w, ts in all_targets.items() if w not in skipped},
                           results, args.out_dir / stem, stem)
        args.plot_error = None
    except Exception as e:  # noqa: BLE001 - a plotting problem must not lose the report
        plots, args.plot_error = [], f"{type(e).__name__}: {e}"
        log(f"the plots could not be drawn: {args.plot_error}")
    md, _ = write_report(args, peers, all_targets, results, skipped, vers, plots, elapsed)
    md_path.write_text(md)
    for goal, figures, result in target_rows:
        log(f"target {result}: {goal} ({figures})")
    log(f"wrote {md_path}, {json_path}" + (f" and the plots in {args.out_dir / stem}/"
                                           if plots else ""))
    if results.failed():
        log("some measurements FAILED: see the report")
        sys.exit(1)


if __name__ == "__main__":
    main()
