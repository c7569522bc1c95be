"""``webtask-frames demo``: a realistic sweep against the local sandbox, end to end.

It starts the sandbox on a free loopback port, sweeps 12 items over 3 reuse keys with a
nested outputSchema (with a progress bar), writes ``DIR/demo.duckdb`` and a Parquet dataset
partitioned by batch, and prints a summary and commands to explore them (``webtask-frames
sql`` and a Python one-liner: nothing the install did not provide). No key, no credits.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from ._batch.api import run_batch
from ._batch.result import BatchResult
from ._wire.sync import Client

__all__ = ["DEMO_GRID", "DEMO_SCHEMA", "DEMO_TASK", "explore_hints", "run_demo"]

DEMO_TASK = (
    "List every company of the {industry} industry in Y Combinator batch {batch}, with its "
    "website, founding date, team size, stage, tags and headquarters"
)
DEMO_GRID: dict[str, list[Any]] = {
    "industry": ["fintech", "devtools", "healthcare"],
    "batch": ["W24", "S24", "F24", "W25"],
}
DEMO_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["companies"],
    "properties": {
        "source": {"type": "string", "format": "uri"},
        "companies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "website", "team_size", "stage"],
                "properties": {
                    "name": {"type": "string", "minLength": 2},
                    "website": {"type": "string", "format": "uri"},
                    "founded": {"type": "string", "format": "date"},
                    "team_size": {"type": "integer", "minimum": 1, "maximum": 500},
                    "stage": {"type": "string", "enum": ["pre-seed", "seed", "series-a"]},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
                    "hq": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "country": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}

# Each suggestion is one shell line that runs with what `pip install webtask-frames` gave
# (the `webtask-frames sql` command, or Python with pandas); the tests run every one.
EXPLORE_SQL = (
    "SELECT industry, batch, count(*) AS companies, round(avg(team_size), 1) AS avg_team "
    "FROM companies GROUP BY ALL ORDER BY ALL",
    "SELECT reuse_key, count(*) AS runs, round(sum(cost_ai_usd), 4) AS usd, "
    "round(avg(duration_s), 2) AS avg_s FROM companies_tasks GROUP BY ALL ORDER BY ALL",
    "SELECT name, unnest(tags) AS tag FROM companies LIMIT 10",
)


def explore_hints(database: Path, parquet: Path) -> list[str]:
    """The follow-up commands the demo prints, one shell line each."""
    lines = [
        f"webtask-frames sql {shlex.quote(str(database))} {shlex.quote(q)}" for q in EXPLORE_SQL
    ]
    code = f"import pandas as pd; print(pd.read_parquet({json.dumps(str(parquet))}).head())"
    lines.append(f"python -c {shlex.quote(code)}")
    return lines


def run_demo(out: Path, *, progress: bool = True, time_scale: float = 0.25) -> BatchResult:
    """Run the demo sweep against a fresh sandbox and write its outputs under ``out``.

    ``time_scale`` compresses the sandbox's realistic 2-8 s runs (0.25: four times faster).

    Example:
        >>> run_demo(Path("webtask-demo"))  # doctest: +SKIP
    """
    from .sandbox import Sandbox

    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    # Some invalid rows make the validation columns real.
    with Sandbox(seed=42, time_scale=time_scale, rows=8, invalid_row_rate=0.05) as sandbox:
        print(f"sandbox serving at {sandbox.base_url}")
        with Client(
            api_key=sandbox.api_key,
            workspace_id=sandbox.workspace_id,
            base_url=sandbox.base_url,
            poll_min_s=0.1,
            poll_max_s=1.0,
        ) as client:
            result = run_batch(
                DEMO_TASK,
                DEMO_GRID,
                start_url="https://www.ycombinator.com/companies?batch={batch}",
                output_schema=DEMO_SCHEMA,
                reuse_key="yc_{industry}",
                model="haiku",
                client=client,
                validate="flag",
                progress=progress,
            )
    database = out / "demo.duckdb"
    parquet = out / "companies"
    result.to_duckdb(database, "companies", mode="replace")
    result.to_parquet(parquet, partition_by=["batch"])
    elapsed = time.monotonic() - began
    counts = result.counts()
    print(
        f"\n{len(result.tasks)} items over {result.tasks['reuse_key'].nunique()} reuse keys: "
        f"{counts.get('succeeded', 0)} succeeded, {len(result.failed)} failed or skipped; "
        f"{len(result.records)} rows; cost ${result.cost_usd:.2f}; {elapsed:.1f} s"
    )
    print(f"wrote {database} (tables companies, companies_tasks) and {parquet}/batch_dir=*/")
    print("explore it:")
    for line in explore_hints(database, parquet):
        print(f"  {line}")
    return result
