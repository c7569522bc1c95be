"""Benchmark: client CPU per item of a live sweep, 20,000 items vs 2,000 (issue #10).

The sandbox serves on loopback from this process (tiny task durations, 200 reuse keys);
each sweep runs in a fresh child process that reports its own CPU time (user + system,
``getrusage``) and wall time. Linear bookkeeping keeps the CPU per item flat as the
sweep grows: target ratio (large / small, per item) <= 1.5.

Usage: python tests/benchmarks/bench_sweep_scale.py [--items 2000] [--factor 10]
           [--keys 200] [--ledger]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="wf-scale-") as tmp:
        _child(args, str(Path(tmp) / "sweep.db") if args.ledger else None)


def _child(args: argparse.Namespace, ledger: str | None) -> None:
    import webtask_frames as wf

    grid = [{"item": i, "source": f"s{i % args.keys:03d}"} for i in range(args.items)]
    client = wf.Client(poll_min_s=0.002, poll_max_s=0.05, max_concurrency=args.concurrency)
    began = time.perf_counter()
    result = wf.run_batch(
        "List the companies of {source}",
        grid,
        reuse_key="k_{source}",
        client=client,
        max_concurrency=args.concurrency,
        progress=False,
        ledger=ledger,
    )
    wall = time.perf_counter() - began
    client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    assert result.ok, result.summary()
    print(json.dumps({"cpu": usage.ru_utime + usage.ru_stime, "wall": wall, "n": args.items}))


def run_child(args: argparse.Namespace, env: dict[str, str], n: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", "--items", str(n), "--keys", str(args.keys)]
    cmd += ["--concurrency", str(args.concurrency)] + (["--ledger"] if args.ledger else [])
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--ledger", action="store_true", help="with a ledger (SQLite commits)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from webtask_frames.sandbox import Sandbox

    with Sandbox(
        seed=3,
        time_scale=0.0005,
        duration_range_s=(2.0, 8.0),
        start_latency_s=0.0,
        rows=2,
        cap=args.concurrency,
    ) as sb:
        small = run_child(args, sb.env(), args.items)
        sb.reset()  # a fresh simulation: the large sweep starts from the same state
        large = run_child(args, sb.env(), args.items * args.factor)
    per_small = small["cpu"] / small["n"] * 1000
    per_large = large["cpu"] / large["n"] * 1000
    print(
        f"{int(small['n'])} items: {small['cpu']:.1f} s CPU ({per_small:.2f} ms/item, "
        f"{small['wall']:.1f} s wall) | {int(large['n'])} items: {large['cpu']:.1f} s CPU "
        f"({per_large:.2f} ms/item, {large['wall']:.1f} s wall) | CPU per item ratio "
        f"{per_large / per_small:.2f}x (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
