"""Parquet and DuckDB writers: atomic, path-safe, idempotent merges."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from webtask_frames import InvalidInputError
from webtask_frames._sinks import parquet as _sinks
from webtask_frames._sinks.duckdb import write_duckdb
from webtask_frames._sinks.parquet import read_provenance, write_parquet
from webtask_frames._tables.metadata import METADATA_KEY

HOSTILE = ["../x", "a/b", "", "ünï cødé", "..", "/etc/passwd", "a\\b", None]


def rows(values: list[str | None] | None = None) -> pa.Table:
    values = values if values is not None else ["S24", "S24", "W24"]
    n = len(values)
    return pa.table(
        {
            "_item_key": [f"k{i // 2}" for i in range(n)],
            "_row": [i % 2 for i in range(n)],
            "batch": values,
            "company": pa.array([{"name": f"c{i}", "size": i} for i in range(n)]),
            "tags": [["x"] * (i % 3) for i in range(n)],
            "kind": pa.array(["a", "b"] * (n // 2) + ["a"] * (n % 2)).dictionary_encode(),
        }
    )


def tasks() -> pa.Table:
    return pa.table({"_item_key": ["k0", "k1"], "cost_ai_usd": [0.1, 0.2]})


def all_files(root: Path) -> list[Path]:
    return [Path(dirpath) / f for dirpath, _, files in os.walk(root) for f in files]


def test_hostile_partition_values_stay_inside(tmp_path: Path) -> None:
    target = tmp_path / "out" / "dataset"
    write_parquet(rows(HOSTILE), target, partition_by=["batch"])
    files = all_files(tmp_path)
    assert files, "nothing written"
    for f in files:
        assert f.resolve().is_relative_to(target.resolve()), f
    back = ds.dataset(target, format="parquet", partitioning="hive").to_table()
    assert sorted(back.column("batch").to_pylist(), key=str) == sorted(HOSTILE, key=str)
    assert back.num_rows == len(HOSTILE)


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "x=y"])
def test_hostile_partition_column_names_are_refused(tmp_path: Path, name: str) -> None:
    table = rows().rename_columns([name if c == "batch" else c for c in rows().column_names])
    with pytest.raises(InvalidInputError, match="partition_by"):
        write_parquet(table, tmp_path / "d", partition_by=[name])
    assert list(tmp_path.iterdir()) == []


def test_unknown_partition_column(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no column 'nope'"):
        write_parquet(rows(), tmp_path / "d", partition_by=["nope"])


def test_single_file_round_trip_with_provenance(tmp_path: Path) -> None:
    path = write_parquet(rows(), tmp_path / "r.parquet", provenance={"task": "t", "v": 1})
    table = pq.read_table(path)
    assert table.num_rows == 3
    assert pa.types.is_struct(table.schema.field("company").type)
    assert pa.types.is_string(table.schema.field("kind").type)  # dictionary made plain
    assert read_provenance(path) == {"task": "t", "v": 1}


def test_provenance_uses_the_one_metadata_key(tmp_path: Path) -> None:
    path = write_parquet(rows(), tmp_path / "r.parquet", provenance={"task": "t"})
    metadata = pq.read_schema(path).metadata
    assert METADATA_KEY == b"webtask"  # the key read_webtask_arrow's tables carry too
    assert json.loads(metadata[METADATA_KEY]) == {"task": "t"}
    assert b"webtask_frames" not in metadata


def test_provenance_of_files_written_with_the_old_key_still_reads(tmp_path: Path) -> None:
    old = rows().replace_schema_metadata({b"webtask_frames": b'{"task": "old"}'})
    pq.write_table(old, tmp_path / "old.parquet")
    assert read_provenance(tmp_path / "old.parquet") == {"task": "old"}
    pq.write_table(rows(), tmp_path / "none.parquet")
    assert read_provenance(tmp_path / "none.parquet") == {}


def test_crash_during_parquet_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_parquet(rows(), tmp_path / "r.parquet")
    before = path.read_bytes()

    def crash(table: pa.Table, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(_sinks.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(rows(["Z"] * 9), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]  # no temp file left


def test_crash_during_dataset_write_keeps_the_previous_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_parquet(rows(), tmp_path / "d", partition_by=["batch"])
    before = sorted(str(p.relative_to(target)) for p in all_files(target))

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("killed mid-write")

    monkeypatch.setattr(_sinks.ds, "write_dataset", crash)
    with pytest.raises(OSError, match="killed"):
        write_parquet(rows(["X", "Y"]), target, partition_by=["batch"])
    assert sorted(str(p.relative_to(target)) for p in all_files(target)) == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_rewriting_a_dataset_replaces_it_whole(tmp_path: Path) -> None:
    target = write_parquet(rows(), tmp_path / "d", partition_by=["batch"])
    write_parquet(rows(["Q", "Q"]), target, partition_by=["batch"])
    assert sorted(p.name for p in target.iterdir()) == ["batch_dir=Q"]


def test_duckdb_merge_rerun_keeps_row_counts(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    for _ in range(3):
        write_duckdb(db, "companies", rows(), tasks(), mode="merge")
    con = duckdb.connect(str(db))
    assert con.execute('select count(*) from "companies"').fetchone() == (3,)
    assert con.execute('select count(*) from "companies_tasks"').fetchone() == (2,)
    assert con.execute("select sum(cost_ai_usd) from companies_tasks").fetchone() == (
        pytest.approx(0.3),
    )
    # nested data stays STRUCT/LIST and is queryable
    assert con.execute("select max(company.size) from companies").fetchone() == (2,)
    assert con.execute("select count(*) from (select unnest(tags) from companies)").fetchone() == (
        1 + 2,
    )
    con.close()


def test_duckdb_append_and_replace(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    write_duckdb(db, "t", rows(), mode="append")
    write_duckdb(db, "t", rows().append_column("extra", pa.array([1, 2, 3])), mode="append")
    con = duckdb.connect(str(db))
    assert con.execute("select count(*), count(extra) from t").fetchone() == (6, 3)
    con.close()
    write_duckdb(db, "t", rows(["A"]), mode="replace")
    con = duckdb.connect(str(db))
    assert con.execute("select count(*) from t").fetchone() == (1,)
    con.close()


def test_duckdb_append_widens_a_column_and_types_all_null_columns_varchar(
    tmp_path: Path,
) -> None:
    con = duckdb.connect()
    write_duckdb(con, "t", pa.table({"n": [1], "empty": pa.nulls(1)}))
    assert con.execute("SELECT data_type FROM information_schema.columns").fetchall() == [
        ("BIGINT",),
        ("VARCHAR",),
    ]
    write_duckdb(con, "t", pa.table({"n": [2.5], "empty": ["now text"]}), mode="append")
    assert con.execute("SELECT n, empty FROM t ORDER BY n").fetchall() == [
        (1.0, None),
        (2.5, "now text"),
    ]
    with pytest.raises(InvalidInputError, match=r"'n' is DOUBLE .* but VARCHAR"):
        write_duckdb(con, "t", pa.table({"n": ["x"]}), mode="append")


def test_duckdb_type_conflict_rolls_back_both_tables(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_duckdb(con, "t", rows(), tasks())
    bad_tasks = pa.table({"_item_key": ["k9"], "cost_ai_usd": ["free"]})
    with pytest.raises(InvalidInputError, match="cost_ai_usd"):
        write_duckdb(con, "t", rows(["NEW"]), bad_tasks, mode="append")
    # the rows insert of the same call was rolled back; the connection is still open
    assert con.execute("select count(*) from t where batch = 'NEW'").fetchone() == (0,)
    assert con.execute("select count(*) from t_tasks").fetchone() == (2,)
    con.close()


def test_duckdb_identifiers_are_quoted(tmp_path: Path) -> None:
    con = duckdb.connect()
    name = 'odd "name"; drop table x; --'
    write_duckdb(con, name, rows())
    assert con.execute(
        f'select count(*) from "{name.replace(chr(34), chr(34) * 2)}"'
    ).fetchone() == (3,)


def test_duckdb_bad_mode_and_missing_key() -> None:
    con = duckdb.connect()
    with pytest.raises(InvalidInputError, match="mode"):
        write_duckdb(con, "t", rows(), mode="upsert")  # type: ignore[arg-type]
    write_duckdb(con, "t", rows())
    with pytest.raises(InvalidInputError, match="key"):
        write_duckdb(con, "t", rows(), mode="merge", key=["nope"])


PARTITION_CASES = {
    "nul": ["acme\0EU", "acme\0US", "acme"],
    "hive-null-marker": ["__HIVE_DEFAULT_PARTITION__", None, ""],
    "slash-and-dots": ["a/b", "a~2Fb", "..", ".", "../x", "a%2Fb"],
    "long-non-ascii": ["é" * 130, "é" * 129 + "e", "ü" * 300],
}


def read_back_both(target: Path) -> tuple[list[Any], list[Any]]:
    """The ``batch`` values of a dataset as pyarrow's and DuckDB's hive readers see them."""
    by_arrow = ds.dataset(target, format="parquet", partitioning="hive").to_table()
    arrow = [r["batch"] for r in sorted(by_arrow.to_pylist(), key=lambda r: r["n"])]
    pattern = str(target / "**" / "*.parquet")
    with duckdb.connect() as con:
        rows_ = con.execute(
            f"SELECT batch FROM read_parquet('{pattern}', hive_partitioning=true) ORDER BY n"
        ).fetchall()
    return arrow, [r[0] for r in rows_]


@pytest.mark.parametrize("case", list(PARTITION_CASES))
def test_every_partition_value_gets_its_own_directory_and_reads_back_exactly(
    tmp_path: Path, case: str
) -> None:
    values = PARTITION_CASES[case]
    table = pa.table({"batch": values, "n": list(range(len(values)))})
    target = write_parquet(table, tmp_path / "d", partition_by=["batch"])
    directories = [p for p in target.iterdir() if p.is_dir()]
    assert len(directories) == len(values)  # no two values share a partition
    for f in all_files(tmp_path):
        assert f.resolve().is_relative_to(target.resolve())
        assert all(len(part.encode()) <= 255 for part in f.parts)
    arrow, duck = read_back_both(target)
    assert arrow == values
    assert duck == values


def test_a_long_value_directory_is_hashed_and_the_value_kept_in_the_file(tmp_path: Path) -> None:
    long = "é" * 130
    target = write_parquet(
        pa.table({"batch": [long], "n": [0]}), tmp_path / "d", partition_by=["batch"]
    )
    (directory,) = target.iterdir()
    assert len(directory.name.encode()) < 200 and "~h" in directory.name
    (part,) = directory.glob("*.parquet")
    assert pq.read_table(part).column("batch").to_pylist() == [long]


def test_a_column_named_like_a_partition_key_is_refused(tmp_path: Path) -> None:
    table = pa.table({"batch": ["a"], "batch_dir": ["b"], "n": [1]})
    with pytest.raises(InvalidInputError, match="batch_dir"):
        write_parquet(table, tmp_path / "d", partition_by=["batch"])
