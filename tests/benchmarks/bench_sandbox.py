"""Benchmark the Web Tasks sandbox (a script, not a pytest test).

1. Result-poll throughput: the threaded ``Sandbox`` serves on loopback; a
   realistic client (``httpx.AsyncClient``, keep-alive, several concurrent
   workers) polls ``GET .../result`` for a mix of pending, started and
   completed tasks. By default the client runs in a separate process so the
   server thread does not share the GIL with it (as in real use); pass
   ``--client-procs 0`` to run it in-process.
2. Memory and time for 10,000 tasks held in the simulation state.

Run: ``python tests/benchmarks/bench_sandbox.py [--seconds 5] [--workers 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import statistics
import time
import tracemalloc
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _poll_workers(
    base_url: str, api_key: str, workspace: str, ids: list[str], workers: int, seconds: float
) -> tuple[int, int, list[float]]:
    import httpx

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    latencies: list[float] = []
    errors = 0
    count = 0
    async with httpx.AsyncClient(
        base_url=base_url, headers={"x-api-key": api_key}, limits=limits, timeout=10
    ) as client:
        # Warm up the connections before timing.
        await asyncio.gather(
            *(client.get(f"/{workspace}/web-tasks/{ids[0]}/result") for _ in range(workers))
        )
        deadline = time.perf_counter() + seconds

        async def worker(n: int) -> None:
            nonlocal count, errors
            rng = random.Random(n)
            while time.perf_counter() < deadline:
                task_id = rng.choice(ids)
                t0 = time.perf_counter()
                response = await client.get(f"/{workspace}/web-tasks/{task_id}/result")
                latencies.append(time.perf_counter() - t0)
                if response.status_code == 200:
                    count += 1
                else:
                    errors += 1

        await asyncio.gather(*(worker(n) for n in range(workers)))
    return count, errors, latencies


def _client_process(args: tuple[str, str, str, list[str], int, float], out: Any) -> None:
    out.put(asyncio.run(_poll_workers(*args)))


def bench_polls(seconds: float, workers: int, client_procs: int, tasks: int) -> dict[str, Any]:
    import httpx

    from webtask_frames.sandbox import Sandbox

    # 25 rows inline, tasks spread over pending/started/completed for the run.
    with Sandbox(
        seed=1, cap=10, time_scale=0.1, duration_range_s=(1.0, 30.0), start_latency_s=0.2
    ) as sb:
        with httpx.Client(base_url=sb.base_url, headers={"x-api-key": sb.api_key}) as c:
            ids = [
                c.post(
                    f"/{sb.workspace_id}/web-tasks/start",
                    json={
                        "task": "List YC companies",
                        "parameters": {"batch": f"S{i % 40}"},
                        "reuseKey": f"k{i % 25}",
                    },
                ).json()["webTaskId"]
                for i in range(tasks)
            ]
        time.sleep(1.5)  # let a few complete so the mix includes full results
        mix = sb.stats()["status_counts"]
        args = (sb.base_url, sb.api_key, sb.workspace_id, ids, workers, seconds)
        t0 = time.perf_counter()
        cpu0 = time.process_time()  # this process = the server thread (+ idle main)
        if client_procs <= 0:
            results = [asyncio.run(_poll_workers(*args))]
        else:
            ctx = mp.get_context("spawn")
            queue: Any = ctx.Queue()
            per_proc = (*args[:4], workers, seconds)
            procs = [
                ctx.Process(target=_client_process, args=(per_proc, queue))
                for _ in range(client_procs)
            ]
            for p in procs:
                p.start()
            results = [queue.get() for _ in procs]
            for p in procs:
                p.join()
        wall = time.perf_counter() - t0
        server_cpu = time.process_time() - cpu0
        polls = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        lat = sorted(x for r in results for x in r[2])
        stats = sb.stats()
    return {
        "polls": polls,
        "errors": errors,
        "polls_per_s": polls / seconds,
        "wall_s": wall,
        "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan"),
        "status_mix_at_start": mix,
        "status_mix_at_end": stats["status_counts"],
        "server_result_calls": stats["result_calls"],
        # Only meaningful with the client out of process.
        "server_cpu_us_per_poll": server_cpu / max(1, polls) * 1e6 if client_procs > 0 else None,
    }


def bench_memory(n: int) -> dict[str, Any]:
    from webtask_frames.sandbox import ManualClock, SandboxConfig
    from webtask_frames.sandbox._state import SandboxState
    from webtask_frames.sandbox._validation import parse_start_body

    schema = (
        b'{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"},'
        b'"batch":{"type":"string"},"url":{"type":"string","format":"uri"}},"required":["name"]}}'
    )
    bodies = [
        b'{"task":"List YC companies","parameters":{"batch":"S%d","page":%d},'
        b'"reuseKey":"k%d","outputSchema":%s}' % (i % 40, i, i % 100, schema)
        for i in range(n)
    ]
    clock = ManualClock()
    state = SandboxState(SandboxConfig(clock=clock, seed=1))
    rss0 = _rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    for body in bodies:
        state.submit(parse_start_body(body))
    submit_s = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_mb()
    t1 = time.perf_counter()
    clock.advance(10_000_000)  # far enough for every queued task to finish
    stats = state.stats()
    drain_s = time.perf_counter() - t1
    return {
        "tasks": n,
        "traced_mb": current / 2**20,
        "traced_peak_mb": peak / 2**20,
        "bytes_per_task": current / n,
        "rss_delta_mb": rss1 - rss0,
        "submit_s": submit_s,
        "advance_all_s": drain_s,
        "completed": stats["status_counts"]["completed"],
        "max_running": stats["max_running"],
        "max_running_per_key": stats["max_running_per_key"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="concurrent async workers (connections) per client process; httpx's pool "
        "gets slower, not faster, beyond a few connections per process",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="client processes (0: poll from this process, sharing the GIL with the server)",
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--memory-tasks", type=int, default=10_000)
    args = parser.parse_args()

    polls = bench_polls(args.seconds, args.workers, args.client_procs, args.tasks)
    print(
        f"result polls: {polls['polls_per_s']:.0f}/s over {args.seconds:.0f}s "
        f"({polls['polls']} ok, {polls['errors']} errors, {args.workers} workers x "
        f"{max(1, args.client_procs)} client procs); p50 {polls['p50_ms']:.2f} ms, "
        f"p99 {polls['p99_ms']:.2f} ms; status mix at start {polls['status_mix_at_start']}, "
        f"at end {polls['status_mix_at_end']}"
    )
    if polls["server_cpu_us_per_poll"] is not None:
        per = polls["server_cpu_us_per_poll"]
        print(
            f"server CPU: {per:.0f} us/poll -> about {1e6 / per:.0f} polls/s per core "
            "(the httpx client, not the server, is the limit on 2 cores)"
        )
    mem = bench_memory(args.memory_tasks)
    print(
        f"{mem['tasks']} tasks in state: {mem['traced_mb']:.1f} MiB traced "
        f"({mem['bytes_per_task']:.0f} B/task, peak {mem['traced_peak_mb']:.1f} MiB), "
        f"RSS +{mem['rss_delta_mb']:.1f} MiB; submit {mem['submit_s']:.2f}s, "
        f"advance-all {mem['advance_all_s']:.2f}s; completed {mem['completed']}, "
        f"max running {mem['max_running']}, per key {mem['max_running_per_key']}"
    )


if __name__ == "__main__":
    main()
