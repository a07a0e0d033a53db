#!/usr/bin/env python3
"""asyncio / uvloop peers of corio's micro benchmarks (see bench/README.md).

Usage: /usr/bin/python3 bench/peers/asyncio_micro.py --loop asyncio|uvloop [--quick]

Prints one JSON object per line: {"peer": ..., "bench": ..., "value": ..., "unit": ...}.
Each benchmark runs in a fresh event loop.
"""
import argparse
import asyncio
import gc
import json
import os
import sys
import time


async def trivial():
    return 1


async def spawn_join(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await asyncio.create_task(trivial())
    return [("spawn_join", (time.perf_counter_ns() - t0) / n, "ns/op")]


async def ping_pong(n):
    loop = asyncio.get_running_loop()
    fut = [None, loop.create_future()]  # fut[0]: A waits on it; fut[1]: B waits on it

    async def a():
        for _ in range(n):
            fut[0] = mine = loop.create_future()
            fut[1].set_result(None)  # hand off to B
            await mine

    async def b():
        for _ in range(n):
            await fut[1]
            fut[1] = loop.create_future()
            fut[0].set_result(None)  # hand off to A

    t0 = time.perf_counter_ns()
    await asyncio.gather(b(), a())  # B's task starts first and waits for A
    return [("ping_pong", (time.perf_counter_ns() - t0) / (2 * n), "ns/op")]


async def ping_pong_event(n):
    a_wakes, b_wakes = asyncio.Event(), asyncio.Event()

    async def a():
        for _ in range(n):
            b_wakes.set()  # hand off to B
            await a_wakes.wait()
            a_wakes.clear()

    async def b():
        for _ in range(n):
            await b_wakes.wait()
            b_wakes.clear()
            a_wakes.set()  # hand off to A

    t0 = time.perf_counter_ns()
    await asyncio.gather(b(), a())  # B's task starts first and waits for A
    return [("ping_pong_event", (time.perf_counter_ns() - t0) / (2 * n), "ns/op")]


def counting_callback(n, done):
    """A callback that resolves `done` with perf_counter_ns() on its n-th call."""
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(time.perf_counter_ns())

    return cb


async def call_soon(n):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    cb, schedule = counting_callback(n, done), loop.call_soon
    t0 = time.perf_counter_ns()
    for _ in range(n):
        schedule(cb)
    secs = (await done - t0) / 1e9
    return [("call_soon", secs * 1e9 / n, "ns/op"), ("call_soon_rate", n / secs, "callbacks/s")]


async def timers_1m(n):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    cb, schedule = counting_callback(n, done), loop.call_later
    delays = [i / 1000 for i in range(1000)]
    t0 = time.perf_counter_ns()
    for i in range(n):
        schedule(delays[i % 1000], cb)
    total = (await done - t0) / 1e9
    return [("timers_1m", total - 0.999, "s"), ("timers_1m_total", total, "s")]


async def queue_1m(n):
    queue = asyncio.Queue(maxsize=100)

    async def producer():
        for i in range(n):
            await queue.put(i)

    async def consumer():
        total = 0
        for _ in range(n):
            total += await queue.get()
        return total

    t0 = time.perf_counter_ns()
    tasks = [asyncio.create_task(producer()), asyncio.create_task(consumer())]
    _, total = await asyncio.gather(*tasks)
    secs = (time.perf_counter_ns() - t0) / 1e9
    if total != n * (n - 1) // 2:
        raise RuntimeError(f"queue_1m: wrong sum of the items: {total}")
    return [("queue_1m", secs * 1e9 / n, "ns/item"), ("queue_1m_rate", n / secs, "items/s")]


async def lock_uncontended(n):
    lock = asyncio.Lock()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with lock:
            pass
    ns = (time.perf_counter_ns() - t0) / n
    if lock.locked():
        raise RuntimeError("lock_uncontended: the lock is still held")
    return [("lock_uncontended", ns, "ns/op")]


async def event_set_wait(n):
    event = asyncio.Event()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        event.set()
        await event.wait()
        event.clear()
    return [("event_set_wait", (time.perf_counter_ns() - t0) / n, "ns/op")]


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def suspended_task_bytes(n):
    event = asyncio.Event()

    async def waiter():
        await event.wait()

    gc.collect()
    before = rss_bytes()
    tasks = [asyncio.create_task(waiter()) for _ in range(n)]
    for _ in range(2):
        await asyncio.sleep(0)
    after = rss_bytes()
    event.set()
    await asyncio.gather(*tasks)
    return [("suspended_task_bytes", (after - before) / n, "bytes/task")]


# (benchmark, full N, quick N). The memory benchmark runs first, so that memory
# freed by the other benchmarks cannot be reused without growing the RSS.
BENCHES = [
    (suspended_task_bytes, 100_000, 20_000),
    (spawn_join, 200_000, 20_000),
    (ping_pong, 200_000, 20_000),
    (ping_pong_event, 200_000, 20_000),
    (call_soon, 1_000_000, 100_000),
    (timers_1m, 1_000_000, 100_000),
    (queue_1m, 1_000_000, 100_000),
    (lock_uncontended, 1_000_000, 100_000),
    (event_set_wait, 1_000_000, 100_000),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], required=True)
    parser.add_argument("--quick", action="store_true", help="smaller N, for smoke tests")
    args = parser.parse_args()

    loop_factory = asyncio.new_event_loop
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError as e:
            sys.exit(f"uvloop not available: {e}")
        loop_factory = uvloop.new_event_loop

    for bench, n_full, n_quick in BENCHES:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(bench(n_quick if args.quick else n_full))
        for name, value, unit in results:
            record = {"peer": args.loop, "bench": name, "value": value, "unit": unit}
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
