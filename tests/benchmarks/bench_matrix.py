"""Benchmark: the whole read matrix, file layouts x typed/untyped x validation on/off.

Data comes from this script's own generator (nested company records: a struct, lists of
strings, lists of objects, unicode text), not the tests' generator. Each layout is
written once, served over a local HTTP server, and every measurement runs in a fresh
subprocess that downloads the file and reads it into a pandas DataFrame (download
included on every side), so its peak RSS (``ru_maxrss`` from ``wait4``) is clean:

* ours: the path ``read_webtask`` takes for a file result (``AsyncClient``'s download,
  the read following it as its bytes land, ``read_file``) then ``table_to_pandas``;
  typed (the outputSchema) with validation on (flag mode) and off, and untyped (no
  schema: validation needs one, so there is no untyped+validation cell);
* pandas: ``pd.json_normalize(json.load(f))`` (NDJSON: ``json.loads`` per line);
* DuckDB: ``read_json`` -> Arrow -> pandas (the stretch goal: within 1.5x of it).

Layouts: json.dump defaults, compact separators, indent=2, tabs and CRLF, a wrapper
object ``{"source": ..., "companies": [...]}``, NDJSON, NDJSON with 0.1% wrong-typed
values (``"revenue": "n/a"``), and millions of tiny records (scaled to the size).

    python tests/benchmarks/bench_matrix.py                 # ~8 MB per layout (quick)
    python tests/benchmarks/bench_matrix.py --size-mb 200 --repeat 5   # the README's figures

Targets per cell: >= 8x faster than pandas at <= 0.5x its peak RSS. Each side's
CPU-seconds (every thread's, timed as its seconds are) are printed too: pandas' side
runs on one core, ours on all of them, so load from other jobs weighs on us more.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

COMPANY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "name": {"type": "string", "minLength": 1},
        "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "founded": {"type": "integer"},
        "revenue": {"type": "number", "minimum": 0},
        "public": {"type": "boolean"},
        "status": {"enum": ["active", "acquired", "closed"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "hq": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "geo": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                },
            },
        },
        "offices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "staff": {"type": "integer"}},
            },
        },
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
                "required": ["name"],
            },
        },
    },
    "required": ["id", "name"],
}
TINY: dict[str, Any] = {
    "type": "object",
    "properties": {"i": {"type": "integer"}, "ok": {"type": "boolean"}},
}
CITIES = ["Paris", "Zürich", "São Paulo", "Tokyo", "Austin", "Kraków", "Lagos"]
WORDS = ["ai", "fintech", "b2b", "saas", "climate", "health", "robotics", "devtools"]
LAYOUTS = ["default", "compact", "indent2", "tabs-crlf", "wrapper", "ndjson", "wrong", "tiny"]


def company(i: int, rng: random.Random, wrong: bool) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"Company {i} {rng.choice(WORDS).title()}",
        "country": rng.choice(["US", "FR", "DE", "JP", "BR"]),
        "founded": 1950 + rng.randrange(75),
        "revenue": "n/a" if wrong else round(rng.random() * 1e6, 2),
        "public": rng.random() < 0.3,
        "status": rng.choice(["active", "acquired", "closed"]),
        "tags": rng.sample(WORDS, rng.randint(0, 4)),
        "hq": {"city": rng.choice(CITIES), "geo": {"lat": rng.uniform(-60, 60), "lon": 1.5}},
        "offices": [
            {"city": rng.choice(CITIES), "staff": rng.randrange(500)}
            for _ in range(rng.randint(0, 3))
        ],
        "people": [
            {"name": f"Person {i}-{k}", "role": rng.choice(["ceo", "cto", "eng"])}
            for k in range(rng.randint(1, 3))
        ],
    }


def records(layout: str, size: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(2024)
    if layout == "tiny":
        for i in range(size // 20):  # ~20 bytes a record
            yield {"i": i, "ok": i % 3 == 0}
        return
    for i in range(size // 560):  # ~560 bytes a record
        yield company(i, rng, layout == "wrong" and rng.random() < 0.001)


def write(layout: str, path: Path, size: int) -> None:
    """Write the layout streaming (the whole data set never sits in memory)."""
    items = records(layout, size)
    with path.open("w", encoding="utf-8", newline="") as f:
        if layout in ("ndjson", "wrong"):
            for r in items:
                f.write(json.dumps(r) + "\n")
            return
        dump: Any = {
            "default": json.dumps,
            "tiny": json.dumps,
            "wrapper": json.dumps,
            "compact": functools.partial(json.dumps, separators=(",", ":")),
            "indent2": lambda r: "  " + json.dumps(r, indent=2).replace("\n", "\n  "),
            "tabs-crlf": lambda r: "\t" + json.dumps(r, indent="\t").replace("\n", "\r\n\t"),
        }[layout]
        sep = {"indent2": ",\n", "tabs-crlf": ",\r\n", "compact": ","}.get(layout, ", ")
        head = {"indent2": "[\n", "tabs-crlf": "[\r\n"}.get(layout, "[")
        tail = {"indent2": "\n]", "tabs-crlf": "\r\n]"}.get(layout, "]")
        if layout == "wrapper":
            f.write('{"source": "bench", "fetched": "2025-01-01", "companies": ')
        f.write(head)
        for n, r in enumerate(items):
            f.write((sep if n else "") + dump(r))
        f.write(tail + ("}" if layout == "wrapper" else ""))


# -- one measurement (child process) --------------------------------------------------


def download(url: str, dest: Path) -> None:
    with httpx.stream("GET", url) as r, dest.open("wb") as f:
        for part in r.iter_bytes(1 << 20):
            f.write(part)


_HTTP_STACK = (
    "httpcore",
    "h11",
    "anyio._backends._asyncio",
    "certifi",
    "encodings.idna",
    "webtask_frames._wire.files",  # aiohttp, imported by the first download in a process
)


def child(side: str, layout: str, url: str, typed: bool, validate: bool) -> None:
    """One measurement; imports happen before the clock starts, on every side (httpx's
    too: it imports httpcore when a client is made, and anyio its asyncio backend on the
    first request)."""
    for module in ("duckdb", "pandas", "webtask_frames._materialize", *_HTTP_STACK):
        importlib.import_module(module)
    with tempfile.TemporaryDirectory(prefix="wf-matrix-") as tmp:
        # the download is deleted after each measurement: a full run makes ~70 files
        path = Path(tmp) / ("r.ndjson" if layout in ("ndjson", "wrong") else "r.json")
        cpu = time.process_time()  # every thread's, so the parse's pool too
        seconds, rows = _measured(side, layout, url, path, typed, validate)
        cpu = time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "rows": rows, "cpu": cpu}))


def _measured(
    side: str, layout: str, url: str, path: Path, typed: bool, validate: bool
) -> tuple[float, int]:
    import duckdb
    import pandas as pd

    from webtask_frames._tables.readers import read_file
    from webtask_frames._tables.schema import layout_for
    from webtask_frames._tables.unify import table_to_pandas
    from webtask_frames._tables.validate import Collector, RecordValidator
    from webtask_frames._wire.models import FileResult

    t0 = time.perf_counter()
    if side != "ours":
        download(url, path)
    if side == "pandas":
        with path.open("rb") as f:
            if layout in ("ndjson", "wrong"):
                data: Any = [json.loads(line) for line in f]
            else:
                data = json.load(f)
        if layout == "wrapper":
            data = data["companies"]
        df = pd.json_normalize(data)
    elif side == "duckdb":
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        q = str(path).replace("'", "''")
        if layout == "wrapper":
            sql = (
                f"SELECT unnest(companies, recursive := false) FROM read_json('{q}', "
                f"maximum_object_size={path.stat().st_size + 1024})"
            )
            df = con.sql(sql).to_arrow_table().to_pandas()
        else:
            df = con.sql(f"SELECT * FROM read_json('{q}')").to_arrow_table().to_pandas()
    else:
        item = TINY if layout == "tiny" else COMPANY
        schema: Any = {"type": "array", "items": item}
        if layout == "wrapper":
            schema = {
                "type": "object",
                "properties": {"source": {"type": "string"}, "companies": schema},
            }
        plan = layout_for(schema) if typed else None
        validator = RecordValidator(plan.record_schema) if plan and validate else None
        ctype = "application/x-ndjson" if layout in ("ndjson", "wrong") else "application/json"
        collector = Collector(validator, keep_messages=validator is not None)
        read = functools.partial(
            read_file,
            content_type=ctype,
            layout=plan,
            collector=collector,
            record_path="companies" if layout == "wrapper" and not typed else None,
        )
        file = FileResult(url=url, content_type=ctype, size_bytes=-1, expires_at=None)
        result = asyncio.run(_ours(file, read, collector))
        df = table_to_pandas(result.table)
    return time.perf_counter() - t0, len(df)


async def _ours(file: Any, read: Any, collector: Any) -> Any:
    from webtask_frames import AsyncClient
    from webtask_frames._materialize import _read_file_result

    # the API origin is never contacted: the file's URL is its own origin
    async with AsyncClient(api_key="unused", workspace_id="bench", base_url=_NOWHERE) as client:
        result, _ = await _read_file_result(client, file, "bench", read, collector, None)
    return result


_NOWHERE = "http://127.0.0.1:9"


# -- the driver ---------------------------------------------------------------------------


def measure(args: list[str]) -> tuple[float, float, int, float]:
    """(seconds, peak RSS in MB, rows, CPU-seconds) of one fresh child, timed as its
    seconds are (imports excluded)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{args}: exit {proc.returncode}")
    found = json.loads(out.strip().splitlines()[-1])
    return found["seconds"], usage.ru_maxrss / 1024, found["rows"], found["cpu"]


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=8)
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument(
        "--repeat", type=int, default=1, help="rounds per layout; medians and ranges are printed"
    )
    ap.add_argument("--child", nargs=5, metavar=("SIDE", "LAYOUT", "URL", "TYPED", "VAL"))
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat: give 1 or more rounds")
    if args.child:
        side, layout, url, typed, val = args.child
        child(side, layout, url, typed == "1", val == "1")
        return
    with tempfile.TemporaryDirectory(prefix="wf-matrix-") as tmp:
        drive(args, Path(tmp))


CELLS = (("typed+validate", 1, 1), ("typed", 1, 0), ("untyped", 0, 0))


def drive(args: argparse.Namespace, root: Path) -> None:
    server, base = serve(root)
    size = int(args.size_mb * (1 << 20))
    print(
        f"~{args.size_mb:g} MB per layout, {args.repeat} round(s) per layout; x pandas = "
        "pandas time / ours, per round, then the median [range]; RSS/pd = our peak RSS / "
        "pandas' (the largest); vs DuckDB = our time / DuckDB's (median); CPU s = our "
        "CPU-seconds, every thread's (median): pandas' side uses one core, ours all of them"
    )
    print(
        f"{'layout':<10} {'cell':<16} {'ours s':>7} {'x pandas [range]':>21} {'RSS/pd':>7} "
        f"{'vs DuckDB':>10} {'CPU s':>6}"
    )
    worst: tuple[float, str] | None = None
    reached = total = 0
    try:
        for layout in args.layouts.split(","):
            path = root / f"{layout}.json"
            write(layout, path, size)
            rounds = [_round(layout, f"{base}/{path.name}") for _ in range(args.repeat)]
            pandas = [r["pandas"] for r in rounds]
            print(
                f"{layout:<10} ({path.stat().st_size / (1 << 20):.0f} MB, {pandas[0][2]:,} rows) "
                f"pandas {_median([p[0] for p in pandas]):.2f}s "
                f"({_median([p[3] for p in pandas]):.2f} CPU-s) "
                f"{max(p[1] for p in pandas):.0f} MB; "
                f"DuckDB {_median([r['duckdb'][0] for r in rounds]):.2f}s"
            )
            for cell, _, _ in CELLS:
                ratios = sorted(r["pandas"][0] / r[cell][0] for r in rounds)
                ratio = _median(ratios)
                total += 1
                reached += ratio >= 8
                if worst is None or ratio < worst[0]:
                    worst = (ratio, f"{layout} {cell}")
                spread = f"[{ratios[0]:.1f}-{ratios[-1]:.1f}]" if len(ratios) > 1 else ""
                rss = max(r[cell][1] / r["pandas"][1] for r in rounds)
                duck = _median([r[cell][0] / r["duckdb"][0] for r in rounds])
                seconds = _median([r[cell][0] for r in rounds])
                cpu = _median([r[cell][3] for r in rounds])
                print(
                    f"{'':<10} {cell:<16} {seconds:7.2f} {ratio:8.1f}x {spread:>11} "
                    f"{rss:6.2f}x {duck:9.2f}x {cpu:6.2f}"
                )
            path.unlink()
    finally:
        server.shutdown()
    if worst:
        print(f"worst cell: {worst[1]}: {worst[0]:.1f}x pandas; {reached} of {total} cells >= 8x")


def _round(layout: str, url: str) -> dict[str, tuple[float, float, int, float]]:
    """One measurement of each side, one after the other: a ratio is taken within a
    round, so a slow minute of the machine weighs on both of its sides."""
    found = {
        "pandas": measure(["pandas", layout, url, "0", "0"]),
        "duckdb": measure(["duckdb", layout, url, "0", "0"]),
    }
    for cell, typed, val in CELLS:
        found[cell] = measure(["ours", layout, url, str(typed), str(val)])
        assert found[cell][2] == found["pandas"][2], (layout, cell, found)
    return found


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


if __name__ == "__main__":
    main()
