"""The sandbox's ``_sandbox`` scripting parameter is sent, but never becomes a column."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from sandboxservice import MakeService

from webtask_frames import read_webtask, run_batch

SCHEMA = {
    "type": "array",
    "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
}


def test_read_webtask_frame_has_no_sandbox_column(make_service: MakeService) -> None:
    service = make_service()
    df = read_webtask(
        "List companies",
        parameters={"batch": "S24", "_sandbox": {"rows": 3}},
        output_schema=SCHEMA,
        client=service.client(),
    )
    assert len(df) == 3  # the script was sent and obeyed
    assert "_sandbox" not in df.columns
    assert list(df.columns) == ["name", "batch", "_webtask_id"]


def test_run_batch_tables_and_sinks_have_no_sandbox_column(
    make_service: MakeService, tmp_path: Path
) -> None:
    service = make_service()
    grid = [
        {"batch": "S24", "_sandbox": {"rows": 2}},
        {"batch": "W24", "_sandbox": {"outcome": "failed", "error_code": "timeout"}},
        {"batch": "F24"},
    ]
    result = run_batch(
        "List companies",
        grid,
        output_schema=SCHEMA,
        client=service.sync_client(),
        progress=False,
    )
    assert result.counts["succeeded"] == 2 and result.counts["failed"] == 1
    assert "_sandbox" not in result.records.columns
    assert "_sandbox" not in result.tasks.columns
    assert "_sandbox" not in result.invalid.columns
    assert (result.records["batch"] == "S24").sum() == 2
    path = result.to_parquet(tmp_path / "rows.parquet")
    assert "_sandbox" not in pq.read_schema(path).names
    db = tmp_path / "rows.duckdb"
    result.to_duckdb(db, "companies")
    with duckdb.connect(str(db)) as con:
        for table in ("companies", "companies_tasks"):
            names = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
            assert "_sandbox" not in names and "batch" in names
    assert "_sandbox" not in result.plan.parameter_names
    assert result.plan.items[0].body["parameters"]["_sandbox"] == {"rows": 2}  # still sent
