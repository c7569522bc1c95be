"""Benchmark: validating 100,000 records against the outputSchema.

``RecordValidator.verdicts`` (jsonschema_rs in chunks, jsonschema for rejected records)
against per-record ``jsonschema.Draft202012Validator(schema).is_valid`` on the same
records (about 0.1% invalid); the verdict lists must be identical. Target: >= 40x.

    python tests/benchmarks/bench_validate.py [--n 100000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import jsonschema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_read import SCHEMA, make_record

from webtask_frames._tables.validate import RecordValidator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(11)
    records = [make_record(i, rng) for i in range(args.n)]
    schema = SCHEMA["items"]

    t0 = time.perf_counter()
    reference = jsonschema.Draft202012Validator(schema)
    expected = [reference.is_valid(r) for r in records]
    base = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = RecordValidator(schema).verdicts(records)
    fast = time.perf_counter() - t0

    assert ours == expected, "verdicts differ from jsonschema"
    n_invalid = expected.count(False)
    print(f"{args.n} records, {n_invalid} invalid; verdicts identical")
    print(f"jsonschema per record: {base:.2f}s ({args.n / base:,.0f} records/s)")
    print(f"RecordValidator:       {fast:.3f}s ({args.n / fast:,.0f} records/s)")
    ratio = base / fast
    print(f"-> {ratio:.0f}x faster [{'ok' if ratio >= 40 else 'BELOW TARGET (40x)'}]")


if __name__ == "__main__":
    main()
