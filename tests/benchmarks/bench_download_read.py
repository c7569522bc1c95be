"""Benchmark: a file result read while it downloads, against a read after the download.

Both sides take the product's path for a file result: ``AsyncClient``'s download (no
credential, size-checked, atomic) and ``read_file``, typed by the outputSchema, then
``table_to_pandas``:

* after: ``AsyncClient.download`` to a temporary file, then ``read_file`` on it (how
  ``read_webtask`` read a file result before it followed the download);
* following: ``_read_file_result``, where the read parses the blocks as their bytes land.

The file (nested company records from ``bench_matrix``'s generator, a ``json.dump``
array and NDJSON) is served by a local HTTP server at a set rate per connection:
unlimited (loopback, where the transfer and the parse share this machine's cores) and
links of a few hundred Mbit/s, where a read after the download waits for all of it.
Each measurement is a fresh process; the two sides alternate, pair by pair, and the
ratio following / after is taken within each pair (median and range printed).

    python tests/benchmarks/bench_download_read.py                  # ~40 MB, 3 pairs
    python tests/benchmarks/bench_download_read.py --size-mb 150 --pairs 5

Target: following costs no more than after on loopback (ratio <= 1), and hides the parse
behind the transfer on a slower link (the ratio falls toward download / (download + read)).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def _matrix() -> Any:
    spec = importlib.util.spec_from_file_location("bench_matrix", _HERE / "bench_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- a server that sends at a set rate -------------------------------------------------


class _Throttled(http.server.SimpleHTTPRequestHandler):
    rate = 0.0  # bytes per second per connection; 0: as fast as it can

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if not self.rate:
            super().copyfile(source, outputfile)
            return
        started, sent, step = time.perf_counter(), 0, 64 << 10
        while chunk := source.read(step):
            outputfile.write(chunk)
            sent += len(chunk)
            ahead = sent / self.rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(root: Path, rate: float) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("Handler", (_Throttled,), {"rate": rate})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- one measurement (child process) -----------------------------------------------------


def child(side: str, url: str, ctype: str) -> None:
    """One read; imports happen before the clock starts."""
    from webtask_frames import AsyncClient
    from webtask_frames._materialize import _discard, _read_file_result
    from webtask_frames._tables.readers import read_file
    from webtask_frames._tables.schema import layout_for
    from webtask_frames._tables.unify import table_to_pandas
    from webtask_frames._tables.validate import Collector
    from webtask_frames._wire.models import FileResult

    for module in _matrix()._HTTP_STACK:  # what httpx imports on first use
        importlib.import_module(module)
    company = _matrix().COMPANY
    plan = layout_for({"type": "array", "items": company})
    if "wrapper" in url:
        companies = {"type": "array", "items": company}
        plan = layout_for({"type": "object", "properties": {"companies": companies}})
    collector = Collector(None)
    read = functools.partial(read_file, content_type=ctype, layout=plan, collector=collector)
    file = FileResult(url=url, content_type=ctype, size_bytes=-1, expires_at=None)

    async def go() -> Any:
        # the API origin is never contacted: the file's URL is its own origin
        async with AsyncClient(
            api_key="unused", workspace_id="bench", base_url="http://127.0.0.1:9"
        ) as client:
            if side == "following":
                return (await _read_file_result(client, file, "bench", read, collector, None))[0]
            tmp = tempfile.TemporaryDirectory(prefix="wf-bench-")
            try:
                path = await client.download(file, Path(tmp.name) / "r", durable=False)
                return await asyncio.to_thread(read, path)
            finally:
                _discard(tmp)  # deleted as the product does: the overlap alone differs

    t0 = time.perf_counter()
    rows = len(table_to_pandas(asyncio.run(go()).table))
    print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows}))


def measure(side: str, url: str, ctype: str) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", side, url, ctype],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    return found["seconds"], found["rows"]


# -- the driver ------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=40)
    ap.add_argument("--pairs", type=int, default=3, help="pairs of measurements per cell")
    ap.add_argument(
        "--mbit", default="0,800,400", help="link rates in Mbit/s, comma-separated; 0: unlimited"
    )
    ap.add_argument(
        "--layouts", default="default,ndjson", help=f"of {', '.join(_CTYPES)}, comma-separated"
    )
    ap.add_argument("--child", nargs=3, metavar=("SIDE", "URL", "CTYPE"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.pairs < 1:
        ap.error("--pairs: give 1 or more")
    bm = _matrix()
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as tmp:
        root = Path(tmp)
        size = int(args.size_mb * (1 << 20))
        layouts = {name: _CTYPES[name] for name in args.layouts.split(",")}
        for layout in layouts:
            bm.write(layout, root / f"{layout}.json", size)
        print(
            f"~{args.size_mb:g} MB per file, {args.pairs} pair(s) per cell; ratio = "
            "following / after (< 1: faster), median [range]"
        )
        print(f"{'link':>10} {'layout':<8} {'after s':>8} {'following s':>12} {'ratio':>18}")
        for mbit in (float(m) for m in args.mbit.split(",")):
            server, base = serve(root, mbit * 1e6 / 8)
            try:
                for layout, ctype in layouts.items():
                    _cell(f"{base}/{layout}.json", ctype, layout, mbit, args.pairs)
            finally:
                server.shutdown()


_CTYPES = {
    layout: "application/x-ndjson" if layout in ("ndjson", "wrong") else "application/json"
    for layout in ("default", "compact", "indent2", "tabs-crlf", "wrapper", "ndjson", "wrong")
}


def _cell(url: str, ctype: str, layout: str, mbit: float, pairs: int) -> None:
    after, following, ratios = [], [], []
    for _ in range(pairs):
        a, rows_a = measure("after", url, ctype)
        f, rows_f = measure("following", url, ctype)
        assert rows_a == rows_f, (rows_a, rows_f)
        after.append(a)
        following.append(f)
        ratios.append(f / a)
    ratios.sort()
    median = _matrix()._median
    link = f"{mbit:g} Mbit/s" if mbit else "unlimited"
    print(
        f"{link:>10} {layout:<8} {median(after):8.2f} {median(following):12.2f} "
        f"{median(ratios):8.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}]"
    )


if __name__ == "__main__":
    main()
