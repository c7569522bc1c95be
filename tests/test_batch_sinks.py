"""BatchResult.to_duckdb / to_parquet on a real sweep against the in-process sandbox."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from webtask_frames import AsyncClient, BatchResult, run_batch
from webtask_frames._sinks.parquet import read_provenance
from webtask_frames.sandbox import Sandbox

SCHEMA = {
    "type": "object",
    "properties": {
        "companies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "hq": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}


@pytest.fixture(scope="module")
def sweep() -> tuple[Sandbox, BatchResult]:
    sandbox = Sandbox(time_scale=0.001, seed=5, rows=6, inline_max_bytes=64)
    client = AsyncClient(
        sandbox.api_key,
        sandbox.workspace_id,
        sandbox.asgi_base_url,
        transport=sandbox.transport(),
        poll_min_s=0.01,
        poll_max_s=0.05,
    )
    result = run_batch(
        "List companies",
        {"industry": ["ai", "bio"], "batch": ["S24", "W24", "a/../b"]},
        output_schema=SCHEMA,
        reuse_key="k_{industry}",
        client=client,
        progress=False,
    )
    assert result.ok
    assert set(result.tasks["result_type"]) == {"file"}  # signed URLs were involved
    return sandbox, result


def test_merge_rerun_keeps_counts_and_costs_match_billing(
    sweep: tuple[Sandbox, BatchResult], tmp_path: Path
) -> None:
    sandbox, result = sweep
    db = tmp_path / "w.duckdb"
    for _ in range(2):
        result.to_duckdb(db, "companies", mode="merge")
    con = duckdb.connect(str(db))
    assert con.execute("select count(*) from companies").fetchall() == [(36,)]
    assert con.execute("select count(*) from companies_tasks").fetchall() == [(6,)]
    ((usd, hours),) = con.execute(
        "select sum(cost_ai_usd), sum(cost_compute_hours) from companies_tasks"
    ).fetchall()
    billed = sandbox.stats()["cost"]
    assert usd == pytest.approx(billed["ai_usd"])
    assert hours == pytest.approx(billed["compute_hours"])
    # nested data stays queryable
    assert (
        con.execute("select count(*) from companies where hq.city is not null").fetchall()[0][0] > 0
    )
    con.close()


def test_merge_removes_stale_rows_of_a_shorter_rerun(
    sweep: tuple[Sandbox, BatchResult], tmp_path: Path
) -> None:
    _, result = sweep
    db = tmp_path / "w.duckdb"
    result.to_duckdb(db, "companies", mode="merge")
    table = result.records_table
    assert table is not None
    first = result.tasks["_item_key"][0]
    is_first = pc.equal(table["_item_key"], first)
    # Item 0 reran and gave 4 rows instead of 6; every other item is unchanged.
    keep = pc.or_(pc.invert(is_first), pc.less(pc.cumulative_sum(pc.cast(is_first, "int64")), 5))
    shorter = dataclasses.replace(result, records_table=table.filter(keep))
    shorter.to_duckdb(db, "companies", mode="merge")
    con = duckdb.connect(str(db))
    rows = dict(
        con.execute("select _item_key, count(*) from companies group by _item_key").fetchall()
    )
    con.close()
    assert rows[first] == 4  # item 0 now has 4 rows, not 4 new + 2 stale
    assert "_item" not in con_columns(db)  # a grid position means nothing in a table
    assert sum(rows.values()) == 36 - 2


def con_columns(db: Path) -> list[str]:
    with duckdb.connect(str(db)) as con:
        return [r[0] for r in con.execute("DESCRIBE companies").fetchall()]


def test_append_duplicates_and_replace_does_not(
    sweep: tuple[Sandbox, BatchResult], tmp_path: Path
) -> None:
    _, result = sweep
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    result.to_duckdb(con, "t", mode="append")
    result.to_duckdb(con, "t", mode="append")
    assert con.execute("select count(*) from t").fetchall() == [(72,)]
    result.to_duckdb(con, "t", mode="replace")
    assert con.execute("select count(*) from t").fetchall() == [(36,)]
    con.close()


def test_parquet_has_provenance_and_no_secrets(
    sweep: tuple[Sandbox, BatchResult], tmp_path: Path
) -> None:
    sandbox, result = sweep
    path = result.to_parquet(tmp_path / "out", partition_by=["batch"])
    files = sorted(path.rglob("*.parquet"))
    assert len(files) == 6  # one file per item, in its batch's directory
    assert len({f.parent for f in files}) == 3
    assert all(f.resolve().is_relative_to(path.resolve()) for f in files)
    provenance = read_provenance(path)
    assert provenance["task"] == "List companies"
    assert provenance["reuse_keys"] == ["k_ai", "k_bio"]
    assert provenance["library"].startswith("webtask-frames ")
    for f in files:
        blob = f.read_bytes()
        assert sandbox.api_key.encode() not in blob
        assert b"signature=" not in blob
    single = result.to_parquet(tmp_path / "all.parquet")
    assert pq.read_table(single).num_rows == 36
