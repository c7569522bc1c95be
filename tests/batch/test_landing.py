"""What a sweep lands in Parquet and DuckDB: never a secret the server echoed in data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from batch.fakeapi import API_KEY, Behaviour, FakeAPI

from webtask_frames import BatchResult

Run = Callable[..., BatchResult]


def echo(body: dict[str, Any], occ: int) -> Behaviour:
    if body["parameters"]["i"] == 2:
        return Behaviour(outcome="failed", code="rejected", message=f"echo {API_KEY}")
    row = {
        "name": f"key {API_KEY}",
        "hq": {"city": f"city-{API_KEY}", "n": 1},
        "tags": ["plain", API_KEY, None],
    }
    return Behaviour(data=[row, {"name": "clean", "hq": None, "tags": None}])


def test_an_echoed_key_in_result_data_is_masked_in_parquet_and_duckdb(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    fake.script = echo
    result = run("T", {"i": [0, 1, 2]}, validate="off")
    assert len(result.records) == 4
    out = result.to_parquet(tmp_path / "rows.parquet")
    assert API_KEY.encode() not in Path(out).read_bytes()
    rows = pq.read_table(out).to_pylist()
    assert {r["name"] for r in rows} == {"key ****", "clean"}
    assert [r["hq"]["city"] for r in rows if r["hq"]] == ["city-****"] * 2
    assert [r["tags"] for r in rows if r["tags"]] == [["plain", "****", None]] * 2
    dataset = result.to_parquet(tmp_path / "ds", partition_by=["i"])
    for part in Path(dataset).rglob("*.parquet"):
        assert API_KEY.encode() not in part.read_bytes()
    db = tmp_path / "sweep.duckdb"
    result.to_duckdb(db, "rows")
    with duckdb.connect(str(db)) as con:
        for table in ("rows", "rows_tasks"):
            dump = str(con.execute(f"SELECT * FROM {table}").fetchall())
            assert API_KEY not in dump and dump
        (message,) = con.execute("SELECT error_message FROM rows_tasks WHERE i = 2").fetchone()
        assert message == "echo ****"
        assert con.execute("SELECT count(*) FROM rows WHERE name = 'key ****'").fetchall() == [(2,)]


def test_an_echoed_key_is_masked_in_the_cli_out_formats(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    # csv / ndjson / json are written by the CLI itself, not by the sinks: same rule.
    from webtask_frames.cli._out import write_out

    fake.script = echo
    result = run("T", {"i": [0, 1]}, validate="off")
    for name in ("rows.csv", "rows.ndjson", "rows.json"):
        text = write_out(result, str(tmp_path / name), []).read_text()
        assert API_KEY not in text
        assert "key ****" in text and "city-****" in text
