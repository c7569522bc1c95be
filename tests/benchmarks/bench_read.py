"""Benchmark: reading a large file result into a typed DataFrame.

Compares the library's file reader (``webtask_frames._readers.read_file``, the path
``materialize`` uses, then ``table_to_pandas`` with ArrowDtype columns) against the
pandas baseline ``pd.json_normalize(json.load(f))`` on the same data, as a JSON array
written one element per line, the same array on a single line (``json.dumps``),
pretty-printed with ``indent=2`` (all three read by their writer's separator, rewritten
to line breaks), and as NDJSON, each with validation on and off (the reader's median of
``--repeat`` runs). Every measurement runs in a fresh subprocess so its peak RSS
(``ru_maxrss``) is clean. Generation time is not counted.

``--element-mb N`` adds one line: cutting an array holding one N MB element into
blocks (the structural scan alone; an element spanning many blocks must cost its size,
not its size times the number of blocks it spans).

    python tests/benchmarks/bench_read.py            # ~200 MB files
    python tests/benchmarks/bench_read.py --mb 20    # quick run
    python tests/benchmarks/bench_read.py --mb 20 --element-mb 128

Targets: >= 8x faster than the baseline, with peak RSS <= 0.5x the baseline's.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string", "minLength": 1},
            "price": {"type": "number", "minimum": 0},
            "active": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "zip": {"type": "string"},
                    "geo": {
                        "type": "object",
                        "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                        "required": ["lat", "lon"],
                    },
                },
                "required": ["city"],
            },
            "stage": {"enum": ["seed", "series_a", "series_b"]},
            "rating": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "description": {"type": "string"},
        },
        "required": ["id", "name", "price"],
    },
}

_CITIES = ["Paris", "Berlin", "San Francisco", "New York", "Lagos", "Tokyo"]
_TAGS = ["ai", "saas", "fintech", "b2b", "health", "devtools"]
_WORDS = [
    *("lorem", "ipsum", "dolor", "sit", "amet", "consectetur"),
    *("adipiscing", "elit", "sed", "do", "eiusmod"),
]


def make_record(i: int, rng: random.Random, *, invalid_every: int = 997) -> dict[str, Any]:
    """One nested record; every ``invalid_every``-th one breaks the schema."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    record: dict[str, Any] = {
        "id": i,
        "name": f"Company {i} {rng.choice(_WORDS)}",
        "price": round(rng.random() * 1000, 2),
        "active": rng.random() < 0.5,
        "created_at": (start + timedelta(seconds=rng.randrange(10**8)))
        .isoformat()
        .replace("+00:00", "Z"),
        "day": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "tags": rng.sample(_TAGS, rng.randrange(0, 4)),
        "address": {
            "city": rng.choice(_CITIES),
            "zip": str(rng.randrange(10000, 99999)),
            "geo": {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)},
        },
        "stage": rng.choice(["seed", "series_a", "series_b"]),
        "rating": None if rng.random() < 0.2 else round(rng.uniform(0, 5), 1),
        "description": " ".join(rng.choices(_WORDS, k=rng.randrange(4, 24))),
    }
    if invalid_every and i % invalid_every == invalid_every - 1:
        kind = (i // invalid_every) % 3
        if kind == 0:
            del record["name"]
        elif kind == 1:
            record["stage"] = "series_z"
        else:
            record["price"] = -1.0
    return record


def generate(directory: Path, mb: float, seed: int = 7) -> tuple[Path, Path, Path]:
    """A JSON array file of about ``mb`` MB, the same records as NDJSON, and the schema."""
    directory.mkdir(parents=True, exist_ok=True)
    array, ndjson, schema = (directory / n for n in ("data.json", "data.ndjson", "schema.json"))
    marker = directory / f"done-{mb:g}"
    if marker.exists():
        return array, ndjson, schema
    rng = random.Random(seed)
    target = mb * 1e6
    size = 0
    with array.open("w") as fa, ndjson.open("w") as fn:
        fa.write("[")
        i = 0
        while size < target:
            text = json.dumps(make_record(i, rng))
            fa.write(",\n" if i else "\n")
            fa.write(text)
            fn.write(text + "\n")
            size += len(text) + 2
            i += 1
        fa.write("\n]\n")
    schema.write_text(json.dumps(SCHEMA))
    with ndjson.open() as fn, (directory / "data-compact.json").open("w") as fc:
        fc.write("[")  # the same array on one line, as json.dumps writes it
        for i, line in enumerate(fn):
            fc.write((", " if i else "") + line.rstrip("\n"))
        fc.write("]")
    with ndjson.open() as fn, (directory / "data-indented.json").open("w") as fi:
        fi.write("[")  # pretty-printed (indent=2)
        for i, line in enumerate(fn):
            body = json.dumps(json.loads(line), indent=2).replace("\n", "\n  ")
            fi.write(("," if i else "") + "\n  " + body)
        fi.write("\n]\n")
    marker.touch()
    return array, ndjson, schema


# -- child processes -----------------------------------------------------------------------


def _child(case: str, path: str, schema_path: str) -> None:
    if case == "scan":
        from webtask_frames._tables import blocks

        t0 = time.perf_counter()
        rows = sum(
            b.n or 0 for b in blocks._prefetch(blocks._scan_blocks(Path(path), blocks.BLOCK_BYTES))
        )
        seconds = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "rows": rows, "invalid": -1}))
        return
    if case.startswith("baseline"):
        import pandas as pd

        t0 = time.perf_counter()
        with open(path, encoding="utf-8") as f:
            data = json.load(f) if case == "baseline-array" else [json.loads(x) for x in f]
        df = pd.json_normalize(data)
        del data
        seconds = time.perf_counter() - t0
        n_invalid = -1
    else:
        from webtask_frames._tables.readers import read_file
        from webtask_frames._tables.schema import layout_for
        from webtask_frames._tables.unify import table_to_pandas
        from webtask_frames._tables.validate import Collector, RecordValidator

        t0 = time.perf_counter()
        layout = layout_for(json.loads(Path(schema_path).read_text()))
        assert layout is not None
        validator = RecordValidator(layout.record_schema) if case.endswith("-valid") else None
        collector = Collector(validator)
        result = read_file(Path(path), "application/json", layout=layout, collector=collector)
        df = table_to_pandas(result.table)
        seconds = time.perf_counter() - t0
        n_invalid = collector.n_invalid
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "rows": len(df), "invalid": n_invalid}))


def _run(case: str, path: Path, schema: Path, repeat: int = 1) -> dict[str, Any]:
    """Median (by time) of ``repeat`` fresh-process runs."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--child", case, str(path), str(schema)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["seconds"])
    result: dict[str, Any] = runs[len(runs) // 2]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200.0, help="file size in MB (200)")
    parser.add_argument("--dir", type=Path, default=None, help="where to keep generated files")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each reader (median)")
    parser.add_argument("--element-mb", type=float, default=0, help="one N MB element too")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "PATH", "SCHEMA"), help="internal")
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    directory = args.dir or Path(tempfile.gettempdir()) / f"webtask-bench-{args.mb:g}mb"
    t0 = time.perf_counter()
    array, ndjson, schema = generate(directory, args.mb)
    size_mb = array.stat().st_size / 1e6
    print(
        f"data: {size_mb:.0f} MB JSON array, {ndjson.stat().st_size / 1e6:.0f} MB NDJSON "
        f"(generated/reused in {time.perf_counter() - t0:.1f}s) in {directory}"
    )
    ok = True
    for label, path, base_case in (
        ("JSON array, one element per line", array, "baseline-array"),
        ("JSON array, one line (json.dumps)", directory / "data-compact.json", "baseline-array"),
        ("NDJSON", ndjson, "baseline-ndjson"),
        ("JSON array, indent=2", directory / "data-indented.json", "baseline-array"),
    ):
        base = _run(base_case, path, schema)
        file_mb = path.stat().st_size / 1e6
        print(
            f"\n{label} ({file_mb:.0f} MB): baseline json.load + json_normalize: "
            f"{base['seconds']:.2f}s ({file_mb / base['seconds']:.0f} MB/s), "
            f"peak RSS {base['rss_mb']:.0f} MB, {base['rows']} rows"
        )
        for case, what in (("ours-novalid", "validation off"), ("ours-valid", "validation on")):
            ours = _run(case, path, schema, args.repeat)
            speed = base["seconds"] / ours["seconds"]
            rss = ours["rss_mb"] / base["rss_mb"]
            passed = speed >= 8 and rss <= 0.5
            ok &= passed
            invalid = f", {ours['invalid']} invalid" if case == "ours-valid" else ""
            print(
                f"  read_file ({what}): {ours['seconds']:.2f}s "
                f"({file_mb / ours['seconds']:.0f} MB/s), peak RSS {ours['rss_mb']:.0f} MB"
                f"{invalid} -> {speed:.1f}x faster, RSS ratio {rss:.2f} "
                f"[{'ok' if passed else 'BELOW TARGET'}]"
            )
    if args.element_mb:
        _one_element(directory, args.element_mb, schema)
    print("\nall targets met" if ok else "\nsome targets not met (>= 8x, RSS <= 0.5x)")


def _one_element(directory: Path, mb: float, schema: Path) -> None:
    """An array of one large element (a long list of short strings) between two small
    ones, cut into blocks by the scan."""
    path = directory / f"one-element-{mb:g}.json"
    if not path.exists():
        with path.open("w") as f:
            f.write('[{"id": 0}, {"id": 1, "tags": [')
            piece = ", ".join(json.dumps(f'tag "{i}" \\ [x, y]') for i in range(10000))
            for n in range(max(1, int(mb * 1e6 / len(piece)))):
                f.write((", " if n else "") + piece)
            f.write(']}, {"id": 2}]')
    size_mb = path.stat().st_size / 1e6
    run = _run("scan", path, schema, 3)
    print(
        f"\nJSON array, one {size_mb:.0f} MB element: cut into blocks by the scan in "
        f"{run['seconds']:.2f}s ({size_mb / run['seconds']:.0f} MB/s), {run['rows']} elements"
    )


if __name__ == "__main__":
    main()
