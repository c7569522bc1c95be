"""Benchmark: peak memory of a sweep with a sink when the sweep grows 10x.

Each item's result is a file of ``--rows`` nested records (thousands of rows, the size
scraped directories come in). A sweep of ``--items`` items and one of 10x as many run in
fresh processes against one sandbox served on loopback; each process reports its peak
RSS (``ru_maxrss``). With ``sink=DuckDBSink(...)`` rows land as items finish and are not
kept, so the peak should barely move (target: large / small < 1.5); the in-memory
``run_batch`` (no sink) is printed beside it for contrast (its rows are all held).

Usage: python tests/benchmarks/bench_sink_memory.py [--items 20] [--rows 2000]
           [--sink duckdb|parquet] [--skip-baseline]
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

TASK = "List the companies of directory page {page}"


def child(args: argparse.Namespace) -> None:
    import webtask_frames as wf

    sink = None
    if args.sink == "duckdb":
        sink = wf.DuckDBSink(args.out, "companies")
    elif args.sink == "parquet":
        sink = wf.ParquetSink(args.out)
    began = time.perf_counter()
    result = wf.run_batch(
        TASK,
        {"page": list(range(args.items))},
        reuse_key="directory",
        max_concurrency=10,
        progress=False,
        sink=sink,
        ledger=args.out + ".ledger",
    )
    elapsed = time.perf_counter() - began
    assert result.ok, result.summary()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": peak_kb / 1024, "rows": result.n_records, "s": elapsed}))


def run_child(args: argparse.Namespace, env: dict[str, str], n: int, sink: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="wf-mem-") as out:
        target = Path(out) / ("db.duckdb" if sink == "duckdb" else "dataset")
        return _run_child(env, n, sink, str(target))


def _run_child(env: dict[str, str], n: int, sink: str, target: str) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--items",
        str(n),
        "--sink",
        sink,
        "--out",
        target,
    ]
    proc = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--sink", choices=("duckdb", "parquet", "none"), default="duckdb")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from webtask_frames.sandbox import Sandbox

    with Sandbox(
        seed=7,
        time_scale=0.002,
        rows=args.rows,
        duration_range_s=(2.0, 4.0),
        start_latency_s=0.0,
        inline_max_bytes=1024,  # every result is a file download
        cap=10,
    ) as sb:
        env = sb.env()
        small, large = args.items, args.items * 10
        sinks = [args.sink] + ([] if args.skip_baseline or args.sink == "none" else ["none"])
        for sink in sinks:
            a = run_child(args, env, small, sink)
            b = run_child(args, env, large, sink)
            label = "no sink (rows in memory)" if sink == "none" else f"sink={sink}"
            print(
                f"{label:28s} {small:5d} items: {a['peak_mb']:7.1f} MB ({int(a['rows'])} rows)"
                f" | {large:5d} items: {b['peak_mb']:7.1f} MB ({int(b['rows'])} rows)"
                f" | peak ratio {b['peak_mb'] / a['peak_mb']:.2f}x (target < 1.5 with a sink)"
                f" | time ratio {b['s'] / a['s']:.1f}x"
            )


if __name__ == "__main__":
    main()
