#!/usr/bin/env python3
"""Run corio's bench_core and its asyncio/uvloop peers; print a Markdown comparison.

Usage: /usr/bin/python3 bench/run_micro.py [--quick] [--runs 3] [--corio PATH] [--out FILE.md]
See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MICRO_BENCHES, MICRO_UNITS, BenchError, corio_micro_values  # noqa: E402
from report import cell, cpu_model, ratio  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "bench" / "peers" / "asyncio_micro.py"
PEERS = ["corio", "asyncio", "uvloop"]

BENCHES, UNITS = MICRO_BENCHES, MICRO_UNITS


def fail(msg):
    sys.exit(f"run_micro: {msg}")


def run_corio(args):
    """One run of bench_core; returns {bench: [values]}."""
    if args.corio_json:
        text = Path(args.corio_json).read_text()
    else:
        env = {k: v for k, v in os.environ.items() if k != "CORIO_BENCH_QUICK"}
        if args.quick:
            env["CORIO_BENCH_QUICK"] = "1"
        proc = subprocess.run([args.corio, "--benchmark_format=json"],
                              capture_output=True, text=True, env=env)
        if proc.returncode:
            fail(f"{args.corio} exited with status {proc.returncode}:\n{proc.stderr}")
        text = proc.stdout
    try:
        return corio_micro_values(text)
    except BenchError as e:
        fail(str(e))


def run_peer(loop, args):
    """One run of asyncio_micro.py on `loop`; returns {bench: [values]}."""
    cmd = [sys.executable, str(PEER), "--loop", loop] + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        fail(f"{shlex.join(cmd)} exited with status {proc.returncode}:\n{proc.stderr}")
    out = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        if UNITS.get(r["bench"]) != r["unit"]:
            fail(f"unexpected bench/unit from {loop}: {line}")
        out.setdefault(r["bench"], []).append(r["value"])
    return out


def report(args, samples, uvloop_version):
    if args.corio_json:
        corio = f"`{args.corio_json}` (pre-recorded Google Benchmark JSON)"
    else:
        mtime = datetime.datetime.fromtimestamp(os.path.getmtime(args.corio))
        built = mtime.isoformat(" ", "seconds")
        corio = f"`{args.corio}` (built {built})"
    lines = [
        "# corio micro benchmarks",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(' ', 'seconds')}",
        f"- command: `{shlex.join([sys.executable] + sys.argv)}`",
        f"- machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model()}, "
        f"{platform.system()} {platform.release()}",
        f"- corio: {corio}",
        f"- Python: {platform.python_version()} (`{sys.executable}`); "
        f"uvloop: {uvloop_version or 'not available'}",
        f"- {args.runs} run(s) per peer, interleaved{', quick mode' if args.quick else ''}; "
        "cells are median (min–max) over runs",
        "",
        "| bench | unit | corio median (min–max) | asyncio median (min–max) "
        "| uvloop median (min–max) | asyncio/corio | uvloop/corio |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench, unit, _, _, higher in BENCHES:
        c, a, u = (samples[p].get(bench, []) for p in PEERS)
        ucell, uratio = (cell(u), ratio(c, u, higher)) if uvloop_version else ("not available",) * 2
        lines.append(f"| {bench} | {unit} | {cell(c)} | {cell(a)} | {ucell} "
                     f"| {ratio(c, a, higher)} | {uratio} |")
    lines += ["", "Ratios compare medians and are oriented so that > 1 means corio is better: "
              "peer/corio for times and bytes, corio/peer for rates (callbacks/s, items/s)."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small N (sets CORIO_BENCH_QUICK=1 for corio, --quick for the peers)")
    parser.add_argument("--runs", type=int, default=3, help="runs per peer (default 3)")
    parser.add_argument("--corio", default=str(ROOT / "build/release/bench/bench_core"),
                        help="corio benchmark binary (default build/release/bench/bench_core)")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    parser.add_argument("--corio-json", help=argparse.SUPPRESS)  # testing: read instead of running
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not args.corio_json and not os.access(args.corio, os.X_OK):
        fail(f"corio binary {args.corio} not found; build it with "
             "`cmake --preset release && cmake --build --preset release`")

    try:
        import uvloop
        uvloop_version = uvloop.__version__
    except ImportError:
        uvloop_version = None
        print(f"run_micro: uvloop not available for {sys.executable}; "
              "install it with ./scripts/deps.sh --bench and run with /usr/bin/python3",
              file=sys.stderr)

    runners = {"corio": lambda: run_corio(args),
               "asyncio": lambda: run_peer("asyncio", args),
               "uvloop": lambda: run_peer("uvloop", args)}
    samples = {p: {} for p in PEERS}
    for run in range(args.runs):
        for peer in PEERS[run % 3:] + PEERS[:run % 3]:  # rotate the order too
            if peer == "uvloop" and not uvloop_version:
                continue
            t0 = time.monotonic()
            for bench, values in runners[peer]().items():
                samples[peer].setdefault(bench, []).extend(values)
            print(f"run {run + 1}/{args.runs}: {peer} done in {time.monotonic() - t0:.1f} s",
                  file=sys.stderr)

    md = report(args, samples, uvloop_version)
    print(md, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(md)


if __name__ == "__main__":
    main()
