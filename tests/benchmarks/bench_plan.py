"""Benchmark: planning and scheduling cost as the sweep grows (should be linear).

Printed:

* dry run (``run_batch(..., dry_run=True)``, planning plus the simulated schedule) for
  ``--small`` and ``--large`` items, without and with an ``output_schema``, and the
  large/small ratio (linear growth: ``large / small``; target <= 7x for 5,000 vs 1,000)
  and the with/without-schema ratio (target <= 2x);
* the cost of one scheduling decision (``Scheduler.next_ready`` plus ``on_started`` and
  ``on_finished`` with an observed duration) at growing sweep sizes, with a learned
  history so the estimator is not empty: the per-decision cost should stay flat.

Every figure is the best of ``--repeat`` runs (CPU time of this process), printed as
ratios beside the absolute times so they read the same on any machine.

Usage: python tests/benchmarks/bench_plan.py [--small 1000] [--large 5000] [--keys 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from webtask_frames._batch.api import run_batch
from webtask_frames._batch.scheduler import Estimator, Scheduler

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "companies": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "employees": {"type": "integer"}},
                "required": ["name"],
            },
        }
    },
}


def grid(n_items: int, n_keys: int) -> list[dict[str, Any]]:
    return [{"company": f"c{i:06d}", "source": f"s{i % n_keys:04d}"} for i in range(n_items)]


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def dry_run(n_items: int, n_keys: int, schema: dict[str, Any] | None) -> None:
    result = run_batch(
        "List the companies of {company}",
        grid(n_items, n_keys),
        reuse_key="{source}",
        output_schema=schema,
        dry_run=True,
        progress=False,
    )
    assert len(result.plan.order) == n_items


def decisions(n_items: int, n_keys: int, n_decisions: int) -> float:
    """Seconds per scheduling decision, mid-sweep, with a learned history
    (``n_keys=0``: no reuseKey, every item a chain of its own)."""
    keys: list[str | None] = [f"s{i % n_keys:04d}" if n_keys else None for i in range(n_items)]
    est = Estimator()
    for k in range(n_keys):
        est.observe(f"s{k:04d}", 2.0 + k % 7, cold=True)
        est.observe(f"s{k:04d}", 1.0 + k % 7, cold=False)
    sched = Scheduler(keys, max_concurrency=10, durations=est)
    now = 0.0
    running: list[int] = []
    t0 = time.process_time()
    for n in range(n_decisions):
        now += 0.01
        item = sched.next_ready(now)
        if item is None:
            done = running.pop(0)
            sched.on_finished(done, now, duration=1.0 + n % 5, succeeded=True)
            continue
        sched.on_started(item, now)
        running.append(item)
    return (time.process_time() - t0) / n_decisions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=5000)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    print(f"dry run, {args.keys} keys (best of {args.repeat}, CPU seconds)")
    figures: dict[tuple[int, bool], float] = {}
    for schema in (False, True):
        for n in (args.small, args.large):
            s = SCHEMA if schema else None
            figures[n, schema] = best(lambda n=n, s=s: dry_run(n, args.keys, s), args.repeat)
            label = "with schema" if schema else "no schema  "
            print(f"  {n:>7,} items {label}: {figures[n, schema]:.3f} s")
    for schema in (False, True):
        ratio = figures[args.large, schema] / figures[args.small, schema]
        label = "with schema" if schema else "no schema"
        print(
            f"  {args.large:,}/{args.small:,} items ({label}): {ratio:.2f}x "
            f"(linear: {args.large / args.small:.1f}x, target <= 7x)"
        )
    for n in (args.small, args.large):
        ratio = figures[n, True] / figures[n, False]
        print(f"  with/without schema at {n:,} items: {ratio:.2f}x (target <= 2x)")

    print("one scheduling decision (next_ready + start/finish), learned history")
    for n_keys in (args.keys, 0):
        base = None
        for n in (2_000, 10_000, 50_000):
            per = min(decisions(n, n_keys, 4_000) for _ in range(args.repeat))
            base = base or per
            label = f"{n_keys} keys" if n_keys else "no keys"
            print(
                f"  {n:>7,} items, {label}: {per * 1e6:8.1f} us per decision "
                f"({per / base:.2f}x of 2,000)"
            )


if __name__ == "__main__":
    main()
