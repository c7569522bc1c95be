"""Benchmark: a 200-item sweep on the sandbox, run_batch vs the official SDK's run().

Durations behave like the service's: each reuseKey has its own duration, runs of one key
are within +-10% of each other, and a key's first run (which builds the automation) takes
about twice as long. Everything (durations, poll intervals) is scaled by ``--scale`` so
the whole comparison finishes in well under a minute.

Printed per runner:

* makespan / lower bound. The bound is ``max(sum of durations / 10, longest chain)``
  computed from the durations the server actually ran (``startedAt``..``completedAt``
  of every task), so it is what any client could at best have achieved with those runs;
  the makespan runs from the first ``createdAt`` to the last ``completedAt``. Target
  <= 1.10.
* result calls per task (target <= 6).

The baseline is ``intuned_client``'s ``web_tasks.run`` (submit, then poll every 5 s) in a
10-thread pool, at its default interval scaled by the same factor.

Usage: python tests/benchmarks/bench_sweep.py [--scale 0.02] [--order interleaved|grouped|both]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from webtask_frames import AsyncClient, run_batch_async
from webtask_frames._wire.models import parse_status
from webtask_frames.sandbox import Sandbox

TASK = "List the companies of this source"
CAP = 10


def grid(n_items: int, n_keys: int, order: str) -> list[dict[str, Any]]:
    """``interleaved``: consecutive items have different keys. ``grouped``: a key's items
    are consecutive, as in the cartesian product of ``{"source": [...], "page": [...]}``."""
    items = [{"company": f"c{i:04d}", "source": f"s{i % n_keys:02d}"} for i in range(n_items)]
    if order == "grouped":
        items.sort(key=lambda p: (p["source"], p["company"]))
    return items


def sandbox(args: argparse.Namespace) -> Sandbox:
    return Sandbox(
        seed=args.seed,
        time_scale=args.scale,
        duration_range_s=(args.min_duration, args.max_duration),
        duration_jitter=0.1,
        reuse_speedup=2.0,
        rows=5,
    )


def figures(sb: Sandbox, n_items: int, wall_s: float) -> dict[str, float]:
    """Makespan, lower bound and calls from the server's own record (virtual seconds)."""
    created: list[datetime] = []
    completed: list[datetime] = []
    durations: list[float] = []
    chains: dict[str, float] = {}
    for task_id in sb.state.task_ids():
        found = sb.state.poll(task_id)
        assert found is not None
        status = parse_status(found[0])
        assert status.created_at is not None
        created.append(status.created_at)
        started = getattr(status, "started_at", None)
        done = getattr(status, "completed_at", None)
        if started is None or done is None:
            raise SystemExit(f"task {task_id} did not finish: {status.status}")
        completed.append(done)
        run = (done - started).total_seconds()
        durations.append(run)
        key = found[1].key
        chains[key] = chains.get(key, 0.0) + run
    makespan = (max(completed) - min(created)).total_seconds()
    bound = max(sum(durations) / CAP, max(chains.values()))
    stats = sb.stats()
    return {
        "makespan_s": makespan,
        "bound_s": bound,
        "ratio": makespan / bound,
        "result_calls_per_task": stats["result_calls"] / n_items,
        "start_calls": stats["start_calls"],
        "wall_s": wall_s,
        "tasks": len(durations),
        "mean_duration_s": statistics.fmean(durations),
    }


def run_ours(args: argparse.Namespace) -> dict[str, float]:
    with sandbox(args) as sb:
        client = AsyncClient(
            api_key=sb.api_key,
            workspace_id=sb.workspace_id,
            base_url=sb.base_url,
            poll_min_s=1.0 * args.scale,  # the client's defaults (1 s, 15 s), scaled
            poll_max_s=15.0 * args.scale,
        )

        async def go() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                ledger = Path(tmp) / "bench.db" if args.ledger else None
                async with client:
                    result = await run_batch_async(
                        TASK,
                        grid(args.items, args.keys, args.order),
                        reuse_key="src_{source}",
                        client=client,
                        ledger=ledger,
                        progress=False,
                    )
            if not result.ok:
                raise SystemExit(f"run_batch did not succeed: {result!r}")

        began = time.monotonic()
        asyncio.run(go())
        return figures(sb, args.items, time.monotonic() - began)


def run_sdk(args: argparse.Namespace) -> dict[str, float]:
    from intuned_client import IntunedClient
    from intuned_client.models import WebTasksStartRequestBody

    with sandbox(args) as sb:
        sdk = IntunedClient(workspace_id=sb.workspace_id, api_key=sb.api_key, base_url=sb.base_url)

        def one(params: dict[str, Any]) -> str:
            body = WebTasksStartRequestBody(
                task=TASK, parameters=params, reuse_key=f"src_{params['source']}"
            )
            res = sdk.web_tasks.run(body=body, poll_interval_seconds=5.0 * args.scale)
            return str(res.outcome)

        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=CAP) as pool:
            outcomes = list(pool.map(one, grid(args.items, args.keys, args.order)))
        wall = time.monotonic() - began
        if set(outcomes) != {"success"}:
            raise SystemExit(f"SDK runs did not all succeed: {set(outcomes)}")
        return figures(sb, args.items, wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.02, help="real s per service s")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--min-duration", type=float, default=30.0, help="first-run s, lowest key")
    parser.add_argument(
        "--max-duration", type=float, default=150.0, help="first-run s, slowest key"
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--order",
        choices=("interleaved", "grouped", "both"),
        default="interleaved",
        help="grid order: keys interleaved (default), each key's items together, or both; "
        "grouped is where a client-side scheduler matters most for the SDK baseline",
    )
    parser.add_argument("--ledger", action="store_true", help="run_batch with a SQLite ledger")
    parser.add_argument("--skip-sdk", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"{args.items} items over {args.keys} reuse keys, concurrency {CAP}, first runs "
        f"{args.min_duration:g}-{args.max_duration:g} s (later runs half, +-10%), "
        f"time scale {args.scale:g}{', with ledger' if args.ledger else ''}"
    )
    runners: list[tuple[str, Callable[[argparse.Namespace], dict[str, float]]]] = [
        ("run_batch", run_ours)
    ]
    if not args.skip_sdk:
        runners.append(("SDK run() x10 threads", run_sdk))
    orders = ("interleaved", "grouped") if args.order == "both" else (args.order,)
    header = (
        f"{'grid order':<12} {'runner':<22} {'makespan':>9} {'bound':>8} {'ratio':>6} "
        f"{'calls/task':>10} {'starts':>6} {'wall':>6}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for order in orders:
        args.order = order
        for name, fn in runners:
            f = fn(args)
            print(
                f"{order:<12} {name:<22} {f['makespan_s']:>8.0f}s {f['bound_s']:>7.0f}s "
                f"{f['ratio']:>6.3f} {f['result_calls_per_task']:>10.2f} "
                f"{f['start_calls']:>6.0f} {f['wall_s']:>5.1f}s",
                flush=True,
            )
            if fn is run_ours:
                ok = ok and f["ratio"] <= 1.10 and f["result_calls_per_task"] <= 6
    print(
        "(makespan and bound in service seconds; targets for run_batch: ratio <= 1.10, "
        "calls/task <= 6)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
