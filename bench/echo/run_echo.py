#!/usr/bin/env python3
"""Run the echo benchmark: corio's echo server beside a raw-epoll one; print a Markdown table.

Usage: /usr/bin/python3 bench/echo/run_echo.py [--quick] [--runs 3] [--duration 3] [--out FILE.md]
See bench/README.md ("Echo benchmark").
"""
import argparse
import datetime
import json
import os
import platform
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from report import cell, cpu_model, ratio  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SERVERS = {"corio": "corio_echo_server", "raw epoll": "raw_epoll_echo_server"}
LOAD = "echo_load"
SIZES = [1024, 10 * 1024, 100 * 1024]
CONNECTIONS = [10, 100]
SERVER_CPU, LOAD_CPU = "0", "1"

# metric key, column title, higher is better
METRICS = [
    ("req_per_s", "req/s", True),
    ("mib_per_s", "MiB/s each way", True),
    ("p50_us", "p50 µs", False),
    ("p99_us", "p99 µs", False),
    ("cpu_us_per_req", "server CPU µs/req", False),
    ("server_cpu_pct", "server CPU %", False),
    ("load_cpu_pct", "load-gen CPU %", False),
    ("rss_mib", "server peak RSS MiB", False),
]


class BenchError(Exception):
    pass


def fail(msg):
    sys.exit(f"run_echo: {msg}")


class Server:
    """One echo server process, pinned to SERVER_CPU; a context manager that always stops it."""

    def __init__(self, name, path, pin):
        self.name = name
        cmd = ([("taskset"), "-c", SERVER_CPU] if pin else []) + [str(path), "0"]
        # taskset execs the server, so the pid is the server's.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit() or int(line) == 0:
            self.kill()
            err = self.proc.stderr.read().strip()
            raise BenchError(f"the {name} server ({shlex.join(cmd)}) did not start: "
                             f"{'printed ' + repr(line) if line else 'no port on stdout'}"
                             f"{', stderr: ' + err if err else ''}")
        self.port = int(line)

    @property
    def pid(self):
        return self.proc.pid

    def peak_rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise BenchError(f"no VmHWM in /proc/{self.pid}/status")

    def stop(self):
        """SIGTERM; the server must exit 0 within 10 s."""
        if self.proc.poll() is not None:
            raise BenchError(f"the {self.name} server died (status {self.proc.returncode}): "
                             f"{self.proc.stderr.read().strip()}")
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"the {self.name} server did not exit within 10 s of SIGTERM")
        if status != 0:
            raise BenchError(f"the {self.name} server exited with status {status} on SIGTERM: "
                             f"{self.proc.stderr.read().strip()}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        self.proc.stdout.close()
        self.proc.stderr.close()


def run_one(args, server_name, size, conns):
    """One measurement of one server; returns {metric: value}."""
    with Server(server_name, args.bin_dir / SERVERS[server_name], args.pin) as server:
        cmd = ((["taskset", "-c", LOAD_CPU] if args.pin else []) +
               [str(args.bin_dir / LOAD), "--port", str(server.port), "--connections", str(conns),
                "--size", str(size), "--duration", str(args.duration), "--warmup",
                str(args.warmup), "--server-pid", str(server.pid)])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=args.duration + args.warmup + 60)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{shlex.join(cmd)} did not finish in time")
        if proc.returncode:
            raise BenchError(f"against the {server_name} server, {shlex.join(cmd)} exited with "
                             f"status {proc.returncode}: {proc.stderr.strip()}")
        r = json.loads(proc.stdout)
        rss_kib = server.peak_rss_kib()
        server.stop()
    if r["requests"] == 0:
        raise BenchError(f"no request completed against the {server_name} server")
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


def size_name(size):
    return f"{size // 1024} KiB"


def report(args, samples):
    built = []
    for program in list(SERVERS.values()) + [LOAD]:
        path = args.bin_dir / program
        mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(" ", "seconds")
        built.append(f"`{program}` (built {mtime})")
    pinning = (f"server on CPU {SERVER_CPU}, load generator on CPU {LOAD_CPU} (taskset)"
               if args.pin else "not pinned (CPUs 0 and 1 not both available)")
    lines = [
        "# corio echo benchmark",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(' ', 'seconds')}",
        f"- command: `{shlex.join([sys.executable] + sys.argv)}`",
        f"- machine: {os.cpu_count()} CPUs, {cpu_model()}, "
        f"{platform.system()} {platform.release()}",
        f"- binaries in `{args.bin_dir}`: {', '.join(built)}",
        f"- {pinning}; TCP over 127.0.0.1",
        f"- closed loop: each connection sends a message and waits for its whole echo; "
        f"{args.warmup:g} s warm-up, then {args.duration:g} s measured",
        f"- {args.runs} run(s) per server and combination, servers interleaved, a fresh server "
        f"each time{', quick mode' if args.quick else ''}; cells are median (min–max) over runs",
        "",
        "| message | conns | server | " + " | ".join(t for _, t, _ in METRICS) +
        " | req/s raw/corio | CPU/req raw/corio |",
        "|---|---|---|" + "---|" * len(METRICS) + "---|---|",
    ]
    for size in SIZES:
        for conns in CONNECTIONS:
            for name in SERVERS:
                s = samples[(name, size, conns)]
                row = [size_name(size), str(conns), name] + [cell(s[k]) for k, _, _ in METRICS]
                if name == "corio":
                    raw = samples[("raw epoll", size, conns)]
                    row += [ratio(s["req_per_s"], raw["req_per_s"], True),
                            ratio(s["cpu_us_per_req"], raw["cpu_us_per_req"], False)]
                else:
                    row += ["", ""]
                lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Ratios compare medians and are oriented so that > 1 means corio is better: corio/raw "
        "for req/s, raw/corio for server CPU µs per request. Server CPU is utime + stime of "
        "the server process over the measured window (clock-tick resolution), divided by the "
        "requests completed in it. With one core each, the load generator is often the "
        "bottleneck (load-gen CPU % near 100): then req/s differ less than CPU per request.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 run, 1 s measured, 0.25 s warm-up (about 20 s)")
    parser.add_argument("--runs", type=int, help="runs per server and combination (default 3)")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per run (default 3, quick 1)")
    parser.add_argument("--warmup", type=float,
                        help="warm-up seconds per run (default 0.5, quick 0.25)")
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "build/release/bench",
                        help="where the three programs are (default build/release/bench)")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args()
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    args.duration = args.duration if args.duration is not None else (1.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.25 if args.quick else 0.5)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    args.bin_dir = args.bin_dir.resolve()
    for program in list(SERVERS.values()) + [LOAD]:
        if not os.access(args.bin_dir / program, os.X_OK):
            fail(f"{args.bin_dir / program} not found; build it with "
                 "`cmake --preset release && cmake --build --preset release`")
    args.pin = {0, 1} <= os.sched_getaffinity(0)
    if not args.pin:
        print("run_echo: CPUs 0 and 1 are not both available: running unpinned",
              file=sys.stderr)

    samples = {(name, size, conns): {k: [] for k, _, _ in METRICS}
               for name in SERVERS for size in SIZES for conns in CONNECTIONS}
    names = list(SERVERS)
    start = time.monotonic()
    try:
        for run in range(args.runs):
            for size in SIZES:
                for conns in CONNECTIONS:
                    # Interleave the servers, alternating which goes first.
                    order = names if run % 2 == 0 else names[::-1]
                    for name in order:
                        for k, v in run_one(args, name, size, conns).items():
                            samples[(name, size, conns)][k].append(v)
                    c, r = (samples[(n, size, conns)]["req_per_s"][-1] for n in names)
                    print(f"run {run + 1}/{args.runs} {size_name(size)} x {conns}: "
                          f"corio {c:,.0f} req/s, raw epoll {r:,.0f} req/s "
                          f"({time.monotonic() - start:.0f} s)", file=sys.stderr)
    except BenchError as e:
        fail(str(e))

    md = report(args, samples)
    print(md, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(md)


if __name__ == "__main__":
    main()
