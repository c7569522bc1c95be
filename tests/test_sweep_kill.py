"""A sweep killed with SIGKILL while landing into DuckDB: every landed item is whole, and
the same call run again completes the table with no duplicate and no second payment.

The sandbox is served on loopback by the test process, so its tasks outlive the killed
sweep (a rerun re-attaches the ones still running and reuses the finished ones).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import webtask_frames as wf
from webtask_frames.sandbox import Sandbox

ITEMS = 30
# The child's grid is filled in by the test (%s).
CHILD = textwrap.dedent(
    """
    import sys
    import webtask_frames as wf

    def tell(report, rows):  # runs after the DuckDB sink committed the item
        print("landed", report.item_key, rows.num_rows, flush=True)

    wf.run_batch(
        "List the companies of page {page}",
        %s,
        reuse_key="directory_{shard}",
        ledger=sys.argv[1],
        sink=[wf.DuckDBSink(sys.argv[2], "companies"), tell],
        max_concurrency=4,
        progress=False,
    )
    """
)


def whole_items(db: Path) -> dict[str, int]:
    """Each landed item's row count, checked whole: all its rows, from one task, the one
    its success row in ``companies_tasks`` names."""
    con = duckdb.connect(str(db))
    try:
        rows = con.execute(
            "SELECT c._item_key, count(*), count(DISTINCT c._webtask_id), any_value(t.n_records),"
            " bool_and(c._webtask_id = t._webtask_id) FROM companies c JOIN companies_tasks t"
            " ON t._item_key = c._item_key AND t.outcome = 'success'"
            " GROUP BY c._item_key"
        ).fetchall()
        (n_landed,) = con.execute(
            "SELECT count(DISTINCT _item_key) FROM companies_tasks WHERE outcome = 'success'"
        ).fetchone() or (0,)
    finally:
        con.close()
    for key, n, tasks, n_records, same in rows:
        assert tasks == 1 and same, key
        assert n == n_records, f"item {key} landed {n} of {n_records} rows"
    assert len(rows) == n_landed  # no task row without its rows, no rows without their task
    return {key: n for key, n, *_ in rows}


@pytest.mark.timeout(180)
def test_a_killed_sweep_leaves_whole_items_and_a_rerun_completes_it(tmp_path: Path) -> None:
    ledger, db = tmp_path / "sweep.db", tmp_path / "out.duckdb"
    grid = [{"page": p, "shard": p % 3} for p in range(ITEMS)]
    script = CHILD % repr(grid)
    with Sandbox(
        seed=11, time_scale=0.01, rows=40, duration_range_s=(2.0, 6.0), inline_max_bytes=512
    ) as sb:
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(ledger), str(db)],
            env={**os.environ, **sb.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout is not None
        landed = 0
        for line in child.stdout:
            landed += line.startswith("landed ")
            if landed == 6:
                os.kill(child.pid, signal.SIGKILL)  # mid-sweep, with items in flight
                break
        child.wait(timeout=60)
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL, "the sweep ended before it was killed"
        before = whole_items(db)
        assert 6 <= len(before) < ITEMS
        paid = sb.stats()["accepted_tasks"]

        with wf.Client(
            api_key=sb.api_key,
            workspace_id=sb.workspace_id,
            base_url=sb.base_url,
            poll_min_s=0.01,
            poll_max_s=0.1,
        ) as client:
            kw = dict(
                reuse_key="directory_{shard}",
                ledger=ledger,
                client=client,
                progress=False,
                max_concurrency=4,
            )
            again = wf.run_batch(
                "List the companies of page {page}", grid, sink=wf.DuckDBSink(db, "companies"), **kw
            )
            started = int(again.tasks["source"].eq("started").fillna(False).sum())
            if not again.ok:  # a start cut off by the kill: reported, resent only on request
                assert set(again.failed["status"]) == {"ambiguous"}
                again = wf.run_batch(
                    "List the companies of page {page}",
                    grid,
                    sink=wf.DuckDBSink(db, "companies"),
                    resubmit_ambiguous=True,
                    **kw,
                )
                started += int(again.tasks["source"].eq("started").fillna(False).sum())
        assert again.ok
        after = whole_items(db)
        assert len(after) == ITEMS  # complete, each item once (whole_items checks)
        for key, n in before.items():
            assert after[key] == n  # landed items untouched
        sources = dict(zip(again.tasks["_item_key"], again.tasks["source"], strict=True))
        assert all(sources[key] == "reused" for key in before)  # never paid twice
        stats = sb.stats()
        new = stats["accepted_tasks"] - paid
        assert new == started  # only what had never been started (or was cut off)
        con = duckdb.connect(str(db))
        (n_tasks, usd) = con.execute(
            "SELECT count(DISTINCT _webtask_id), sum(cost_ai_usd) FROM companies_tasks"
        ).fetchone() or (0, 0)
        con.close()
        # Every billed task exactly once; a start cut off by the kill may have created a
        # task whose id nobody learnt: it is reported (ambiguous_attempts), not hidden.
        unknown = int(again.tasks["ambiguous_attempts"].sum())
        assert stats["accepted_tasks"] - unknown <= n_tasks <= stats["accepted_tasks"]
        if unknown == 0:
            assert usd == pytest.approx(stats["cost"]["ai_usd"])
