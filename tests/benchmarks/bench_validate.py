"""Benchmark: validating 100,000 records against an outputSchema with common keywords.

The schema uses ``pattern`` with anchors (``^[A-Z]{2}$``), ``format``, ``enum``,
``minLength``, ``minimum`` and ``required``; records are made with 0.1%, 10% and 50%
invalid, and 0.1% of records hold a value the two engines judge differently (a string
ending in a newline under the ``$`` anchor, a NaN price). Printed per share (each timing
the best of 3, on every side):

* ``RecordValidator.verdicts`` against per-record
  ``jsonschema.Draft202012Validator(schema).is_valid`` (the verdict lists must be
  identical). Target: >= 40x.
* flag mode (``Collector`` with per-row messages), the same ratio.
* a plain jsonschema_rs loop over the records, for scale (not exact: it misjudges the
  newline and NaN records).

    python tests/benchmarks/bench_validate.py [--n 100000]
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import jsonschema
import jsonschema_rs

from webtask_frames._tables.validate import Collector, RecordValidator

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "email": {"type": "string", "format": "email"},
        "status": {"enum": ["active", "acquired", "inactive"]},
        "name": {"type": "string", "minLength": 2},
        "price": {"type": "number", "minimum": 0},
        "founded": {"type": "integer", "minimum": 1800},
    },
    "required": ["country", "name", "status"],
}

BAD = [
    ("country", "usa"),
    ("status", "closed"),
    ("name", "x"),
    ("price", -1.5),
    ("founded", "1999"),
    (None, None),  # a required property missing
]
DISAGREE = [("country", "US\n"), ("price", float("nan")), ("price", float("inf"))]


def make(i: int, rng: random.Random, bad_share: float) -> dict[str, Any]:
    record: dict[str, Any] = {
        "country": rng.choice(["US", "FR", "DE", "JP"]),
        "email": f"user{i}@example.com",
        "status": rng.choice(["active", "acquired", "inactive"]),
        "name": f"Company {i}",
        "price": round(rng.random() * 100, 2),
        "founded": 1900 + i % 120,
    }
    roll = rng.random()
    if roll < bad_share or roll > 0.999:
        key, value = rng.choice(BAD if roll < bad_share else DISAGREE)
        if key is None:
            del record["name"]
        else:
            record[key] = value
    return record


def timed(fn: Any, repeat: int = 3) -> tuple[Any, float]:
    """The result and the best of ``repeat`` timings (every side gets the same)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    ref = jsonschema.Draft202012Validator(SCHEMA)
    raw = jsonschema_rs.Draft202012Validator(SCHEMA, validate_formats=False)
    print(f"{args.n:,} records; ratios are per-record jsonschema is_valid / ours")
    for share in (0.001, 0.1, 0.5):
        rng = random.Random(11)
        records = [make(i, rng, share) for i in range(args.n)]
        expected, base = timed(lambda records=records: [ref.is_valid(r) for r in records])
        _, rs_loop = timed(lambda records=records: [raw.is_valid(r) for r in records])
        validator = RecordValidator(SCHEMA)
        ours, fast = timed(lambda records=records, v=validator: v.verdicts(records))
        assert ours == expected, "verdicts differ from jsonschema"

        def flag(records: list[dict[str, Any]] = records, v: Any = validator) -> Any:
            c = Collector(v, keep_messages=True)
            return c.add(len(records), lambda i: (records[i], False))  # noqa: B023

        mask, flagged = timed(flag)
        assert mask.tolist() == expected
        n_bad = expected.count(False)
        print(
            f"  {share:>5.1%} invalid ({n_bad:,}): verdicts {base / fast:5.0f}x "
            f"[{'ok' if base / fast >= 40 else 'below 40x'}], flag mode with messages "
            f"{base / flagged:5.0f}x; ours = {fast / rs_loop:.2f}x a plain jsonschema_rs loop "
            f"(jsonschema {base:.2f}s, verdicts {fast * 1000:.0f} ms, flag {flagged * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
