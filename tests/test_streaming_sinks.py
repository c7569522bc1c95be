"""Sinks that land a sweep item by item: DuckDBSink, ParquetSink, merge_parquet_file.

Each item lands in its own transaction (DuckDB) or its own atomically replaced file
(Parquet), merged by identity (``_item_key``); billed tasks are upserted by
``_webtask_id``. The kill -9 test at the end runs a lander in a subprocess and kills it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from webtask_frames import InvalidInputError
from webtask_frames._redact import register_secret
from webtask_frames._sinks import atomic
from webtask_frames._sinks import duckdb as duck_sql
from webtask_frames._sinks.base import ItemLanding, check_sink
from webtask_frames._sinks.dataset import ParquetSink
from webtask_frames._sinks.duckdb_sink import DuckDBSink
from webtask_frames._sinks.parquet import merge_parquet_file, read_provenance, write_parquet

CANARY = "sk_sinkcanary_5f1e9a7c0d"


def key(i: int) -> str:
    return f"{i:032x}"


def rows_of(
    k: str,
    n: int,
    values: Any = None,
    batch: str = "S24",
    task: str | None = None,
    **extra: Any,
) -> pa.Table:
    """``n`` rows of item ``k`` from ``task`` (default ``wt-<last 4 of k>``, as
    ``task_of``): ``v`` holds ``values`` (all null when None)."""
    columns: dict[str, Any] = {
        "_item_key": pa.array([k] * n, pa.string()),
        "_webtask_id": pa.array([task or f"wt-{k[-4:]}"] * n, pa.string()),
        "_row": pa.array(range(n), pa.int64()),
        "batch": pa.array([batch] * n, pa.string()),
        "v": pa.nulls(n) if values is None else pa.array(values),
    }
    columns.update(extra)
    return pa.table(columns)


def task_of(
    k: str,
    task: str | None = None,
    *,
    outcome: str = "success",
    cost: float = 0.01,
    batch: str = "S24",
    error: str | None = None,
) -> pa.Table:
    return pa.table(
        {
            "_webtask_id": [task or f"wt-{k[-4:]}"],
            "_item_key": [k],
            "batch": [batch],
            "outcome": [outcome],
            "cost_ai_usd": [cost],
            "error_message": pa.array([error], pa.string()) if error else pa.nulls(1),
        }
    )


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db)) as con:
        return con.execute(sql).fetchall()


def column_types(db: Path, table: str) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in query(db, f"DESCRIBE {table}")}


@dataclass
class Report:
    """A completed item as the batch engine reports it (implements ItemLanding)."""

    item_key: str
    succeeded: bool
    tasks: pa.Table

    def tasks_arrow(self) -> pa.Table:
        return self.tasks


# -- DuckDBSink: merge by identity -----------------------------------------------------


def test_merge_replaces_exactly_the_landed_items_rows(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "w.duckdb"  # the parent directory is created
    with DuckDBSink(db, "companies") as sink:
        sink.land(rows_of(key(1), 3, [1, 2, 3]), task_of(key(1)), replace_items=[key(1)])
        sink.land(rows_of(key(2), 2, [7, 8]), task_of(key(2)), replace_items=[key(2)])
        # item 1 again, from a later task: 1 row now, the 3 old ones gone
        sink.land(
            rows_of(key(1), 1, [9], task="wt-new"),
            task_of(key(1), "wt-new"),
            replace_items=[key(1)],
        )
    got = query(db, "SELECT _item_key, _row, v FROM companies ORDER BY _item_key, _row")
    assert got == [(key(1), 0, 9), (key(2), 0, 7), (key(2), 1, 8)]
    # both billed tasks of item 1 stay: the table cost both
    assert query(db, "SELECT count(*), round(sum(cost_ai_usd), 6) FROM companies_tasks") == [
        (3, 0.03)
    ]


def test_a_zero_row_item_deletes_its_old_rows_and_zero_rows_create_a_table(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t")
    sink.land(rows_of(key(1), 0), task_of(key(1)), replace_items=[key(1)])
    sink.close()
    assert query(db, "SELECT count(*) FROM t") == [(0,)]
    assert {"_item_key", "_row", "v"} <= set(column_types(db, "t"))
    assert column_types(db, "t")["v"] == "VARCHAR"  # all null: the loosest type, not INTEGER
    sink.land(rows_of(key(2), 2, [1, 2]), task_of(key(2)), replace_items=[key(2)])
    sink.land(rows_of(key(3), 1, [5]), task_of(key(3)), replace_items=[key(3)])
    sink.land(rows_of(key(2), 0), task_of(key(2), "wt-again"), replace_items=[key(2)])
    sink.close()
    assert query(db, "SELECT _item_key, v FROM t") == [(key(3), 5)]
    assert column_types(db, "t")["v"] == "BIGINT"  # the placeholder took the first real type


def test_a_billed_task_is_one_row_however_often_it_lands(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t")
    failed = task_of(key(1), "wt-a", outcome="failed", cost=0.5, error="timeout")
    sink.land(rows_of(key(1), 0), failed, replace_items=[])
    ok = task_of(key(1), "wt-b", cost=0.25)
    two = rows_of(key(1), 2, [1, 2], task="wt-b")
    sink.land(two, pa.concat_tables([ok, ok]), replace_items=[key(1)])
    sink.land(two, ok, replace_items=[key(1)])  # the same task again
    # A success whose result could not be read: its task row lands, its rows never did.
    sink.land(rows_of(key(3), 0), task_of(key(3), "wt-c", cost=0.0), replace_items=[])
    sink.close()
    assert query(db, "SELECT _webtask_id, outcome FROM t_tasks ORDER BY 1") == [
        ("wt-a", "failed"),
        ("wt-b", "success"),
        ("wt-c", "success"),
    ]
    assert query(db, "SELECT sum(cost_ai_usd) FROM t_tasks") == [(0.75,)]
    assert query(db, "SELECT count(*) FROM t") == [(2,)]
    # Landed means its rows are in the table: wt-c must be read and landed again.
    assert DuckDBSink(db, "t").landed_tasks() == {"wt-b"}


def test_append_mode_adds_rows_and_still_upserts_tasks(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t", mode="append")
    for _ in range(2):
        sink.land(rows_of(key(1), 2, [1, 2]), task_of(key(1)), replace_items=[key(1)])
    sink.close()
    assert query(db, "SELECT count(*) FROM t") == [(4,)]
    assert query(db, "SELECT count(*) FROM t_tasks") == [(1,)]


def test_replace_mode_recreates_the_tables_once_then_merges(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with DuckDBSink(db, "t") as old:
        old.land(rows_of(key(8), 3, [1, 2, 3]), task_of(key(8)), replace_items=[key(8)])
        old.land(rows_of(key(9), 1, [1]), task_of(key(9)), replace_items=[key(9)])
    sink = DuckDBSink(db, "t", mode="replace")
    assert sink.landed_tasks() == set()  # a replace sweep lands everything again
    sink.land(rows_of(key(1), 2, [1.5, 2.5]), task_of(key(1)), replace_items=[key(1)])
    assert sink.landed_tasks() == {f"wt-{key(1)[-4:]}"}
    sink.land(rows_of(key(2), 1, [3]), task_of(key(2)), replace_items=[key(2)])
    sink.land(rows_of(key(1), 1, [4.5]), task_of(key(1), "wt-x"), replace_items=[key(1)])
    sink.close()
    assert query(db, "SELECT _item_key, v FROM t ORDER BY 1") == [(key(1), 4.5), (key(2), 3.0)]
    assert query(db, "SELECT count(*) FROM t_tasks") == [(3,)]
    assert column_types(db, "t")["v"] == "DOUBLE"  # recreated from the new rows' type


# -- DuckDBSink: schema evolution -------------------------------------------------------


def test_types_widen_across_items(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t")
    items: list[dict[str, Any]] = [
        {"v": pa.array([1], pa.int32()), "tags": pa.array([[]], pa.list_(pa.null()))},
        {"v": pa.array([2**40], pa.int64()), "co": pa.array([{"name": "a"}])},
        {"v": pa.array([2.5]), "tags": pa.array([[7]]), "co": pa.array([{"size": 3}])},
        {"v": pa.array([None], pa.string()), "new": pa.array([True])},
    ]
    for i, extra in enumerate(items):
        values = extra.pop("v")
        table = rows_of(key(i), 1, values, **extra)
        sink.land(table, task_of(key(i)), replace_items=[key(i)])
    sink.close()
    types = column_types(db, "t")
    assert types["v"] == "DOUBLE"  # INTEGER -> BIGINT -> DOUBLE
    assert types["tags"] == "BIGINT[]"  # the empty list's VARCHAR[] placeholder took BIGINT
    assert types["co"] == 'STRUCT("name" VARCHAR, size BIGINT)' or types["co"] == (
        "STRUCT(name VARCHAR, size BIGINT)"
    )
    assert types["new"] == "BOOLEAN"
    got = query(db, "SELECT v, tags, co, new FROM t ORDER BY _item_key")
    assert got == [
        (1.0, [], None, None),
        (float(2**40), None, {"name": "a", "size": None}, None),
        (2.5, [7], {"name": None, "size": 3}, None),
        (None, None, None, True),
    ]


@pytest.mark.parametrize(
    ("first", "then", "existing", "incoming"),
    [
        (pa.array([1]), pa.array(["x"]), "BIGINT", "VARCHAR"),
        (pa.array(["x"]), pa.array([1]), "VARCHAR", "BIGINT"),  # a string with values stays
        (pa.array([[1]]), pa.array([{"a": 1}]), "BIGINT[]", "STRUCT(a BIGINT)"),
    ],
)
def test_an_incompatible_type_is_refused_naming_column_types_table_and_fix(
    tmp_path: Path, first: pa.Array, then: pa.Array, existing: str, incoming: str
) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t")
    sink.land(rows_of(key(1), 1, first), task_of(key(1)), replace_items=[key(1)])
    with pytest.raises(InvalidInputError) as info:
        sink.land(rows_of(key(2), 1, then), task_of(key(2)), replace_items=[key(2)])
    message = str(info.value)
    assert "\n" not in message
    for part in ("'v'", existing, incoming, "'t'", "output_schema", "mode='replace'"):
        assert part in message, (part, message)
    assert info.value.field == "table"
    # refused again: a rolled-back land teaches the sink nothing about the table
    with pytest.raises(InvalidInputError, match=re.escape(existing)):
        sink.land(rows_of(key(2), 1, then), task_of(key(2)), replace_items=[key(2)])
    sink.close()
    # nothing of the refused item landed, its task neither
    assert query(db, "SELECT count(*) FROM t") == [(1,)]
    assert query(db, "SELECT count(*) FROM t_tasks") == [(1,)]
    assert column_types(db, "t")["v"] == existing


def test_a_placeholder_column_takes_one_type_then_keeps_it(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t")
    declared_null = pa.array([None], pa.string())  # declared string, holding nothing
    for i, values in enumerate([None, declared_null, pa.array([5]), declared_null]):
        sink.land(rows_of(key(i), 1, values), task_of(key(i)), replace_items=[key(i)])
    with pytest.raises(InvalidInputError, match="BIGINT"):
        sink.land(rows_of(key(9), 1, ["text"]), task_of(key(9)), replace_items=[key(9)])
    sink.close()
    assert column_types(db, "t")["v"] == "BIGINT"
    assert query(db, "SELECT v FROM t ORDER BY _item_key") == [(None,), (None,), (5,), (None,)]


def test_tasks_written_by_the_earlier_release_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    query(db, "CREATE TABLE t_tasks AS SELECT '0:abc' AS _item_key, 0.1 AS cost_ai_usd")
    sink = DuckDBSink(db, "t")
    for call in (
        sink.landed_tasks,
        lambda: sink.land(rows_of(key(1), 1, [1]), task_of(key(1)), replace_items=[key(1)]),
    ):
        with pytest.raises(InvalidInputError, match="earlier release") as info:
            call()
        assert "\n" not in str(info.value)
        assert "new table name" in str(info.value) and "mode='replace'" in str(info.value)
    sink.close()
    assert query(db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'") == [
        (0,)
    ]
    # mode='replace' is the way out
    with DuckDBSink(db, "t", mode="replace") as fresh:
        fresh.land(rows_of(key(1), 1, [1]), task_of(key(1)), replace_items=[key(1)])
    assert "_webtask_id" in column_types(db, "t_tasks")


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"table": "my table"}, "table", "plain SQL name"),
        ({"table": "1st"}, "table", "letters, digits and underscores"),
        ({"table": 'x"; DROP TABLE y; --'}, "table", "plain SQL name"),
        ({"table": ""}, "table", "plain SQL name"),
        ({"table": 3}, "table", "plain SQL name"),
        ({"mode": "upsert"}, "mode", "merge, append, replace"),
        ({"database": 3}, "database", "file path or an open duckdb connection"),
        ({"database": b"x.duckdb"}, "database", "file path"),
        ({"database": ""}, "database", "file path"),
    ],
)
def test_bad_duckdb_sink_arguments_are_refused_before_anything_opens(
    tmp_path: Path, kwargs: dict[str, Any], field: str, words: str
) -> None:
    args: dict[str, Any] = {"database": tmp_path / "w.duckdb", "table": "t", **kwargs}
    with pytest.raises(InvalidInputError, match=words) as info:
        DuckDBSink(args.pop("database"), args.pop("table"), **args)
    assert info.value.field == field
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_open_close_repr_and_a_given_connection_stays_open(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "w.duckdb", "t")
    assert (
        repr(sink)
        == f"DuckDBSink(database={str(tmp_path / 'w.duckdb')!r}, table='t', mode='merge')"
    )
    assert not (tmp_path / "w.duckdb").exists()  # nothing opened yet
    assert sink.open() is sink.open()
    sink.close()
    sink.close()
    con = duckdb.connect()
    given = DuckDBSink(con, "t")
    assert "connection" in repr(given)
    with given:
        given.land(rows_of(key(1), 2, [1, 2]), task_of(key(1)), replace_items=[key(1)])
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(2,)]  # still open
    con.close()


# -- DuckDBSink: atomicity --------------------------------------------------------------


def test_a_failure_after_the_first_statement_leaves_nothing_of_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Checked on the sink's own connection: an open transaction would show its changes.
    con = duckdb.connect()
    sink = DuckDBSink(con, "t")
    sink.land(rows_of(key(1), 2, [1, 2]), task_of(key(1)), replace_items=[key(1)])
    real = duck_sql.evolve_table
    calls: list[str] = []

    def fail_on_tasks(con: Any, table: str, *args: Any, **kwargs: Any) -> None:
        calls.append(table)
        if table.endswith("_tasks"):
            raise OSError("disk full")
        real(con, table, *args, **kwargs)

    monkeypatch.setattr("webtask_frames._sinks.duckdb_sink.evolve_table", fail_on_tasks)
    new_rows = rows_of(key(1), 3, [7, 8, 9], extra=pa.array(["a", "b", "c"]))
    with pytest.raises(OSError, match="disk full"):
        sink.land(new_rows, task_of(key(1), "wt-2", error="x"), replace_items=[key(1)])
    assert calls == ["t", "t_tasks"]  # the rows had been deleted, evolved and inserted
    assert con.execute("SELECT v FROM t ORDER BY _row").fetchall() == [(1,), (2,)]
    columns = [r[0] for r in con.execute("DESCRIBE t").fetchall()]
    assert "extra" not in columns  # the added column was rolled back too
    assert con.execute("SELECT _webtask_id FROM t_tasks").fetchall() == [(f"wt-{key(1)[-4:]}",)]
    # and the connection lands the next item
    monkeypatch.undo()
    sink.land(rows_of(key(2), 1, [5]), task_of(key(2)), replace_items=[key(2)])
    assert con.execute("SELECT _item_key, v FROM t ORDER BY 1, _row").fetchall() == [
        (key(1), 1),
        (key(1), 2),
        (key(2), 5),
    ]
    con.close()


def test_a_type_conflict_in_the_tasks_rolls_back_the_rows(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t")
    sink.land(rows_of(key(1), 1, [1]), task_of(key(1)), replace_items=[key(1)])
    bad = task_of(key(2)).set_column(4, "cost_ai_usd", pa.array(["free"]))
    with pytest.raises(InvalidInputError, match="cost_ai_usd"):
        sink.land(rows_of(key(2), 1, [2]), bad, replace_items=[key(2)])
    sink.close()
    assert query(db, "SELECT _item_key FROM t") == [(key(1),)]


# -- DuckDBSink: reading back -----------------------------------------------------------


def test_read_gives_back_the_items_rows_in_order(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "w.duckdb", "t")
    assert sink.read([key(1)]) == pa.table({})  # no table yet
    keys = [key(i) for i in range(20_000)]
    big = pa.table(
        {
            "_item_key": keys * 2,
            "_webtask_id": [f"wt{i}" for i in range(20_000)] * 2,
            "_row": [0] * 20_000 + [1] * 20_000,
            "v": list(range(40_000)),
        }
    )
    tasks = pa.table(
        {"_webtask_id": [f"wt{i}" for i in range(20_000)], "outcome": ["success"] * 20_000}
    )
    sink.land(big, tasks, replace_items=keys)
    back = sink.read(list(reversed(keys)))
    assert back.num_rows == 40_000
    assert back.column("_item_key").to_pylist()[:4] == [keys[-1], keys[-1], keys[-2], keys[-2]]
    assert back.column("v").to_pylist()[:4] == [19_999, 39_999, 19_998, 39_998]
    assert sink.read([key(5), "absent"]).column("v").to_pylist() == [5, 20_005]
    none = sink.read(["absent"])
    assert none.num_rows == 0 and none.column_names == ["_item_key", "_webtask_id", "_row", "v"]
    assert len(sink.landed_tasks()) == 20_000
    sink.close()


def test_the_callable_protocol_lands_an_item_and_its_tasks(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    sink = DuckDBSink(db, "t")
    report: ItemLanding = Report(key(1), True, task_of(key(1)))
    sink(report, rows_of(key(1), 2, [1, 2]))
    sink(Report(key(1), True, task_of(key(1), "wt-2")), rows_of(key(1), 1, [3]))
    # a failed item's report replaces nothing: its earlier rows stay
    sink(Report(key(1), False, task_of(key(1), "wt-3", outcome="failed")), rows_of(key(1), 0))
    sink.close()
    assert query(db, "SELECT v FROM t") == [(3,)]
    assert query(db, "SELECT count(*) FROM t_tasks") == [(3,)]


def test_registered_secrets_never_land_in_duckdb(tmp_path: Path) -> None:
    register_secret(CANARY)
    db = tmp_path / "w.duckdb"
    rows = rows_of(key(1), 1, [f"echo {CANARY}"], deep=pa.array([[{"k": CANARY}]]))
    tasks = task_of(key(1), error=f"said {CANARY}")
    with DuckDBSink(db, "t") as sink:
        sink.land(rows, tasks, replace_items=[key(1)])
    dump = str(query(db, "SELECT * FROM t")) + str(query(db, "SELECT * FROM t_tasks"))
    assert CANARY not in dump and "echo ****" in dump and "said ****" in dump


# -- what sink= accepts ---------------------------------------------------------------


class CallableSink:
    def __call__(self, report: ItemLanding, rows: pa.Table) -> None:
        pass


def two(report: ItemLanding, rows: pa.Table) -> None:
    pass


def one(report: ItemLanding) -> None:
    pass


def test_check_sink_accepts_sinks_and_two_argument_callables(tmp_path: Path) -> None:
    for sink in (
        DuckDBSink(tmp_path / "w.duckdb", "t"),
        ParquetSink(tmp_path / "d"),
        CallableSink(),
        two,
        lambda *args: None,
        print,
    ):
        assert check_sink(sink) is sink


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("sweep.duckdb", "expected a DuckDBSink, a ParquetSink, or a callable"),
        (3, "got int"),
        (None, "got NoneType"),
        (one, "cannot be called with two positional arguments"),
        (lambda report, rows, extra: None, "two positional arguments"),
        (CallableSink, "is a class; pass an instance"),
    ],
)
def test_check_sink_refuses_anything_else(value: object, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words) as info:
        check_sink(value)
    assert info.value.field == "sink"
    assert "\n" not in str(info.value)


# -- ParquetSink ------------------------------------------------------------------------


def item_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def test_parquet_merge_by_identity_one_file_per_item(tmp_path: Path) -> None:
    root = tmp_path / "out" / "companies"
    sink = ParquetSink(root, partition_by=["batch"])
    sink.land(rows_of(key(1), 3, [1, 2, 3]), task_of(key(1)), replace_items=[key(1)])
    sink.land(
        rows_of(key(2), 2, [4, 5], batch="a/b"),
        task_of(key(2), batch="a/b"),
        replace_items=[key(2)],
        provenance={"task": "List"},
    )
    sink.land(
        rows_of(key(1), 1, [9], task="wt-new"), task_of(key(1), "wt-new"), replace_items=[key(1)]
    )
    assert [p.relative_to(root).as_posix() for p in item_files(root)] == [
        f"batch_dir=S24/item-{key(1)}.parquet",
        f"batch_dir=a~2Fb/item-{key(2)}.parquet",
    ]
    assert pq.read_table(item_files(root)[0]).column("v").to_pylist() == [9]
    assert read_provenance(item_files(root)[1]) == {"task": "List"}
    tasks = tmp_path / "out" / "companies_tasks"
    assert sorted(p.name for p in tasks.iterdir()) == sorted(
        ["task-wt-new.parquet", f"task-wt-{key(1)[-4:]}.parquet", f"task-wt-{key(2)[-4:]}.parquet"]
    )
    # By the rows on disk: key(1)'s first task no longer has any.
    assert sink.landed_tasks() == {"wt-new", f"wt-{key(2)[-4:]}"}
    assert sink.read([key(2), key(1)]).column("v").to_pylist() == [4, 5, 9]
    # a fresh sink object finds the same (the index is rebuilt from the files)
    again = ParquetSink(root, partition_by=["batch"])
    assert again.read([key(1), key(2)]).column("v").to_pylist() == [9, 4, 5]
    assert again.read(["nope"]).num_rows == 0
    assert again.read(["nope"]).column_names == ["_item_key", "_webtask_id", "_row", "batch", "v"]


def test_parquet_zero_row_item_and_task_upsert(tmp_path: Path) -> None:
    root = tmp_path / "d"
    sink = ParquetSink(root, partition_by="batch")
    sink.land(rows_of(key(1), 2, [1, 2]), task_of(key(1)), replace_items=[key(1)])
    # the item again, now without rows: placed by its task's parameter value
    sink.land(rows_of(key(1), 0), task_of(key(1), "wt-2"), replace_items=[key(1)])
    (only,) = item_files(root)
    assert pq.read_table(only).num_rows == 0
    # the same task landed twice stays one file, its latest version
    sink.land(rows_of(key(1), 0), task_of(key(1), "wt-2", cost=0.5), replace_items=[key(1)])
    tasks = pd.read_parquet(tmp_path / "d_tasks")
    assert sorted(tasks["_webtask_id"]) == sorted(["wt-2", f"wt-{key(1)[-4:]}"])
    assert tasks["cost_ai_usd"].sum() == pytest.approx(0.51)
    # an item that failed without rows writes no rows file
    sink.land(rows_of(key(2), 0), task_of(key(2), outcome="failed"), replace_items=[])
    assert len(item_files(root)) == 1
    assert f"wt-{key(2)[-4:]}" not in sink.landed_tasks()


def test_parquet_dataset_reads_in_pandas_and_duckdb_after_types_widened(tmp_path: Path) -> None:
    root = tmp_path / "d"
    sink = ParquetSink(root, partition_by=["batch"])
    items = [
        rows_of(key(0), 2, None, batch="x", tags=pa.array([[], None], pa.list_(pa.null()))),
        rows_of(key(1), 1, [3], batch="y"),
        rows_of(key(2), 1, [2.5], batch="x", tags=pa.array([["t"]]), new=pa.array([{"a": 1}])),
        rows_of(key(3), 1, pa.array([None], pa.string()), batch="y"),
    ]
    for i, table in enumerate(items):
        sink.land(table, task_of(key(i), batch=table["batch"][0].as_py()), replace_items=[key(i)])
    schemas = {pq.read_schema(p).remove_metadata() for p in item_files(root)}
    assert len(schemas) == 1  # every file was rewritten to the one widened schema
    (schema,) = schemas
    assert schema.field("v").type == pa.float64()
    assert schema.field("tags").type == pa.list_(pa.string())
    frame = pd.read_parquet(root).sort_values(["_item_key", "_row"])
    assert frame["v"].tolist()[2:4] == [3.0, 2.5]
    assert frame["v"].isna().tolist() == [True, True, False, False, True]
    assert [list(t) if t is not None else None for t in frame["tags"]] == [
        [],
        None,
        None,
        ["t"],
        None,
    ]
    pattern = f"{root}/**/*.parquet"
    with duckdb.connect() as con:
        got = con.execute(
            f"SELECT _item_key, v, new, batch_dir FROM read_parquet('{pattern}', "
            "hive_partitioning=true) ORDER BY _item_key, _row"
        ).fetchall()
    assert [(r[1], r[2], r[3]) for r in got] == [
        (None, None, "x"),
        (None, None, "x"),
        (3.0, None, "y"),
        (2.5, {"a": 1}, "x"),
        (None, None, "y"),
    ]
    assert pd.read_parquet(tmp_path / "d_tasks")["cost_ai_usd"].sum() == pytest.approx(0.04)


@pytest.mark.parametrize(
    "values",
    [["acme\0EU", "acme\0US"], ["__HIVE_DEFAULT_PARTITION__", None, ""], ["..", "a/b", "é" * 130]],
)
def test_parquet_partition_values_read_back_exactly(tmp_path: Path, values: list[Any]) -> None:
    root = tmp_path / "d"
    sink = ParquetSink(root, partition_by=["batch"])
    for i, value in enumerate(values):
        table = rows_of(key(i), 1, [i]).set_column(3, "batch", pa.array([value], pa.string()))
        sink.land(table, task_of(key(i)), replace_items=[key(i)])
    assert len({p.parent for p in item_files(root)}) == len(values)
    for f in item_files(tmp_path):
        inside = (root.resolve(), (tmp_path / "d_tasks").resolve())
        assert f.resolve().parent.is_relative_to(inside[0]) or f.resolve().parent == inside[1]
    by_arrow = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert by_arrow.sort_by("v").column("batch").to_pylist() == values
    if None not in values:  # pandas cannot yet unify a null partition key (write_parquet's too)
        assert pd.read_parquet(root).sort_values("v")["batch"].tolist() == values
    with duckdb.connect() as con:
        got = con.execute(
            f"SELECT batch FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true) "
            "ORDER BY v"
        ).fetchall()
    assert [r[0] for r in got] == values


def test_parquet_type_conflict_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "d"
    sink = ParquetSink(root)
    sink.land(rows_of(key(1), 1, [1]), task_of(key(1)), replace_items=[key(1)])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.parquet")}
    with pytest.raises(InvalidInputError) as info:
        sink.land(rows_of(key(2), 1, ["x"]), task_of(key(2)), replace_items=[key(2)])
    for part in ("'v'", "int64", "string", "output_schema", "new path"):
        assert part in str(info.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.parquet")} == before


def test_parquet_partition_columns_are_checked(tmp_path: Path) -> None:
    for bad in (["../x"], ["a/b"], [".hidden"], ["x=y"], [3]):
        with pytest.raises(InvalidInputError, match="partition_by") as info:
            ParquetSink(tmp_path / "d", partition_by=bad)  # type: ignore[arg-type]
        assert info.value.field == "partition_by"
    sink = ParquetSink(tmp_path / "d", partition_by=["batch", "v"])
    sink.check_columns(["batch", "v", "other"])
    with pytest.raises(InvalidInputError, match="'v' is not a parameter") as info:
        sink.check_columns(["batch"])
    assert info.value.field == "partition_by"
    nested = ParquetSink(tmp_path / "d", partition_by=["co"])
    table = rows_of(key(1), 1, [1], co=pa.array([{"a": 1}]))
    with pytest.raises(InvalidInputError, match="nested"):
        nested.land(table, task_of(key(1)), replace_items=[key(1)])
    clash = ParquetSink(tmp_path / "d", partition_by=["batch"])
    table = rows_of(key(1), 1, [1], batch_dir=pa.array(["z"]))
    with pytest.raises(InvalidInputError, match="batch_dir"):
        clash.land(table, task_of(key(1)), replace_items=[key(1)])
    assert not (tmp_path / "d").exists()
    for bad_path in ("", 3, "."):
        with pytest.raises(InvalidInputError, match="path"):
            ParquetSink(bad_path)  # type: ignore[arg-type]


def test_parquet_refuses_a_dataset_it_did_not_write(tmp_path: Path) -> None:
    old = write_parquet(rows_of(key(1), 2, [1, 2]), tmp_path / "d", partition_by=["batch"])
    sink = ParquetSink(old, partition_by=["batch"])
    with pytest.raises(InvalidInputError, match=r"did not write.*new path"):
        sink.land(rows_of(key(2), 1, [1]), task_of(key(2)), replace_items=[key(2)])
    with pytest.raises(InvalidInputError, match="did not write"):
        sink.read([key(1)])


def test_parquet_hidden_directories_are_not_the_datasets(tmp_path: Path) -> None:
    root = tmp_path / "d"
    hidden = root / ".ipynb_checkpoints"
    hidden.mkdir(parents=True)
    pq.write_table(pa.table({"other": ["x"]}), hidden / "notes.parquet")
    sink = ParquetSink(root)
    sink.land(rows_of(key(1), 2, [1, 2]), task_of(key(1)), replace_items=[key(1)])
    assert sink.read([key(1)]).num_rows == 2
    assert len(pd.read_parquet(root)) == 2  # pandas skips it alike


def test_parquet_temporary_files_are_invisible_and_cleaned(tmp_path: Path) -> None:
    root = tmp_path / "d"
    sink = ParquetSink(root)
    sink.land(rows_of(key(1), 2, [1, 2]), task_of(key(1)), replace_items=[key(1)])
    stale = atomic.temporary_name(root / f"item-{key(2)}.parquet")
    stale.write_bytes(b"PAR1 half a file")
    assert len(pd.read_parquet(root)) == 2
    with duckdb.connect() as con:
        assert con.execute(
            f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet')"
        ).fetchall() == [(2,)]
    ParquetSink(root).land(rows_of(key(3), 1, [3]), task_of(key(3)), replace_items=[key(3)])
    assert not stale.exists()
    assert len(pd.read_parquet(root)) == 3


def test_parquet_crash_mid_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "d"
    sink = ParquetSink(root)
    sink.land(rows_of(key(1), 2, [1, 2]), task_of(key(1)), replace_items=[key(1)])
    (path,) = item_files(root)
    before = path.read_bytes()

    real = pq.write_table

    def crash(table: pa.Table, where: object, **kwargs: object) -> None:
        if ".item-" not in str(where):  # only the rows file: the task would follow it
            real(table, where, **kwargs)
            return
        Path(str(where)).write_bytes(b"PAR1 half a file")
        raise OSError("killed")

    monkeypatch.setattr(atomic.pq, "write_table", crash)
    with pytest.raises(OSError, match="killed"):
        sink.land(
            rows_of(key(1), 5, [1, 2, 3, 4, 5]), task_of(key(1), "wt-2"), replace_items=[key(1)]
        )
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in root.iterdir()] == [path.name]  # no temporary file left
    assert sink.landed_tasks() == {f"wt-{key(1)[-4:]}"}  # the task after the rows: not landed


def test_parquet_heals_files_of_two_schemas(tmp_path: Path) -> None:
    """A crash while files were being rewritten to a wider schema leaves both schemas;
    the next run's sink rewrites the stragglers before anything else."""
    root = tmp_path / "d"
    root.mkdir()
    pq.write_table(rows_of(key(1), 1, [1]), root / f"item-{key(1)}.parquet")
    pq.write_table(rows_of(key(2), 1, [2.5], x=pa.array(["new"])), root / f"item-{key(2)}.parquet")
    sink = ParquetSink(root)
    assert sink.read([key(1), key(2)]).column("v").to_pylist() == [1.0, 2.5]
    schemas = {pq.read_schema(p).remove_metadata() for p in item_files(root)}
    assert len(schemas) == 1
    assert pd.read_parquet(root)["x"].isna().tolist() == [True, False]


def test_parquet_callable_protocol_and_secrets(tmp_path: Path) -> None:
    register_secret(CANARY)
    root = tmp_path / "d"
    sink = ParquetSink(root)
    rows = rows_of(key(1), 1, [f"echo {CANARY}"], deep=pa.array([[{"k": CANARY}]]))
    sink(Report(key(1), True, task_of(key(1), error=f"said {CANARY}")), rows)
    sink(Report(key(1), False, task_of(key(1), "wt-f", outcome="failed")), rows_of(key(1), 0))
    for path in tmp_path.rglob("*.parquet"):
        assert CANARY.encode() not in path.read_bytes()
    assert sink.read([key(1)]).column("v").to_pylist() == ["echo ****"]
    assert sink.landed_tasks() == {f"wt-{key(1)[-4:]}"}
    assert repr(sink) == f"ParquetSink({str(root)!r})"
    with sink as same:
        assert same is sink


# -- merge_parquet_file -----------------------------------------------------------------


def test_merge_parquet_file_replaces_items_and_upserts_tasks(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    first = pa.concat_tables([rows_of(key(1), 2, [1, 2]), rows_of(key(2), 1, [3])])
    tasks = pa.concat_tables([task_of(key(1)), task_of(key(2))])
    assert merge_parquet_file(path, first, tasks, replace_items=[key(1), key(2)]) == path
    again = rows_of(key(1), 1, [2.5])
    merge_parquet_file(
        path, again, task_of(key(1), "wt-n"), replace_items=[key(1)], provenance={"task": "t"}
    )
    table = pq.read_table(path)
    assert sorted(zip(table["_item_key"].to_pylist(), table["v"].to_pylist(), strict=True)) == [
        (key(1), 2.5),
        (key(2), 3.0),
    ]
    assert read_provenance(path) == {"task": "t"}
    merge_parquet_file(path, rows_of(key(3), 0), task_of(key(1), "wt-n"), replace_items=[])
    done = pq.read_table(tmp_path / "x_tasks.parquet")
    assert sorted(done["_webtask_id"].to_pylist()) == sorted(
        ["wt-n", f"wt-{key(1)[-4:]}", f"wt-{key(2)[-4:]}"]
    )
    assert pq.read_table(path).num_rows == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet", "x_tasks.parquet"]


def test_merge_parquet_file_refuses_files_of_the_earlier_release(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"v": [1]}), path)
    with pytest.raises(InvalidInputError, match=r"no _item_key.*new path"):
        merge_parquet_file(path, rows_of(key(1), 1, [1]), task_of(key(1)), replace_items=[])
    pq.write_table(rows_of("0:abcdef", 1, [1]), path)  # keyed by grid position
    with pytest.raises(InvalidInputError, match=r"earlier release.*new path"):
        merge_parquet_file(path, rows_of(key(1), 1, [1]), task_of(key(1)), replace_items=[])
    assert not (tmp_path / "x_tasks.parquet").exists()


def test_merge_parquet_file_type_conflict_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    merge_parquet_file(path, rows_of(key(1), 1, [1]), task_of(key(1)), replace_items=[key(1)])
    before = path.read_bytes(), (tmp_path / "x_tasks.parquet").read_bytes()
    bad_tasks = task_of(key(2)).set_column(4, "cost_ai_usd", pa.array(["free"]))
    with pytest.raises(InvalidInputError, match="cost_ai_usd"):
        merge_parquet_file(path, rows_of(key(2), 1, [2]), bad_tasks, replace_items=[key(2)])
    assert (path.read_bytes(), (tmp_path / "x_tasks.parquet").read_bytes()) == before


# -- kill -9 ------------------------------------------------------------------------------

LANDER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from webtask_frames._sinks.dataset import ParquetSink
    from webtask_frames._sinks.duckdb_sink import DuckDBSink

    db, directory, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def item(i):
        key = f"{i:032x}"
        n = 3000 + 17 * i  # each item its own, known, row count
        rows = pa.table({
            "_item_key": [key] * n,
            "_webtask_id": [f"wt{i}"] * n,
            "_row": list(range(n)),
            "group": [f"g{i % 3}"] * n,
            "payload": [{"i": i, "text": "x" * 40, "tags": ["a", "b"]}] * n,
        })
        tasks = pa.table({
            "_webtask_id": [f"wt{i}"], "_item_key": [key], "group": [f"g{i % 3}"],
            "outcome": ["success"], "cost_ai_usd": [0.01],
        })
        return key, rows, tasks

    duck = DuckDBSink(db, "items")
    parquet = ParquetSink(directory, partition_by=["group"])
    done = duck.landed_tasks() & parquet.landed_tasks()
    for i in range(count):
        key, rows, tasks = item(i)
        if f"wt{i}" in done:
            continue
        duck.land(rows, tasks, replace_items=[key])
        parquet.land(rows, tasks, replace_items=[key])
        print(i, flush=True)
    duck.close()
    """
)
COUNT = 40


def expected_rows(i: int) -> int:
    return 3000 + 17 * i


def check_whole_items(db: Path, directory: Path) -> tuple[set[int], set[int]]:
    """Every item present in DuckDB and in the dataset has all its rows; the items."""
    got = query(db, "SELECT _item_key, count(*), count(DISTINCT _row) FROM items GROUP BY 1")
    in_duck = set()
    for item_key, n, distinct in got:
        i = int(item_key, 16)
        assert n == distinct == expected_rows(i), (i, n)
        in_duck.add(i)
    tasks = query(db, "SELECT _webtask_id, count(*) FROM items_tasks GROUP BY 1")
    assert {t for t, _ in tasks} == {f"wt{i}" for i in in_duck}
    assert all(n == 1 for _, n in tasks)
    in_parquet = set()
    for path in directory.rglob("*"):
        if path.is_dir():
            continue
        # a temporary file may be left by the kill, but readers never match it
        if path.name.startswith("."):
            assert not path.name.endswith(".parquet")
            continue
        table = pq.read_table(path)  # a whole file: its footer reads
        (item_key,) = set(table.column("_item_key").to_pylist())
        i = int(item_key, 16)
        assert table.num_rows == expected_rows(i)
        assert path.name == f"item-{item_key}.parquet"
        in_parquet.add(i)
    frame = pd.read_parquet(directory, columns=["_item_key"])
    assert len(frame) == sum(expected_rows(i) for i in in_parquet)
    # a task on disk is whole, and its item's rows are there (they are written first)
    for path in directory.with_name(f"{directory.name}_tasks").glob("*.parquet"):
        (task,) = pq.read_table(path).column("_webtask_id").to_pylist()
        assert int(task.removeprefix("wt")) in in_parquet
    return in_duck, in_parquet


def test_kill_9_mid_sweep_leaves_every_landed_item_whole(tmp_path: Path) -> None:
    db, directory = tmp_path / "sweep.duckdb", tmp_path / "out" / "items"
    args = [sys.executable, "-c", LANDER, str(db), str(directory), str(COUNT)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    stamps = []
    for _ in range(4):
        line = proc.stdout.readline()
        assert line.strip(), proc.stderr.read() if proc.stderr else ""
        stamps.append(time.monotonic())
    # Somewhere within the next item's landing: inside its DuckDB transaction, writing
    # its Parquet file, or its task's file (each has been seen to happen).
    time.sleep(random.uniform(0, (stamps[3] - stamps[1]) / 2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    in_duck, in_parquet = check_whole_items(db, directory)
    assert {0, 1, 2, 3} <= in_duck and {0, 1, 2, 3} <= in_parquet
    assert len(in_duck) < COUNT

    # The rerun skips what landed and lands the rest: every item exactly once.
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    redone = {int(line) for line in rerun.stdout.split()}
    assert redone.isdisjoint(in_duck & in_parquet)
    in_duck, in_parquet = check_whole_items(db, directory)
    assert in_duck == in_parquet == set(range(COUNT))
    assert query(db, "SELECT count(*) FROM items") == [
        (sum(expected_rows(i) for i in range(COUNT)),)
    ]
    assert query(db, "SELECT round(sum(cost_ai_usd), 6) FROM items_tasks") == [(0.4,)]
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # temporaries removed


def test_widening_to_double_never_rounds_a_stored_integer(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    big = 2**53 + 1  # no DOUBLE holds it exactly
    with DuckDBSink(db, "t") as sink:
        sink.land(rows_of(key(1), 1, [big]), task_of(key(1)), replace_items=[key(1)])
        with pytest.raises(InvalidInputError, match="'v'"):
            sink.land(rows_of(key(2), 1, [1.5]), task_of(key(2)), replace_items=[key(2)])
    assert query(db, "SELECT v FROM t") == [(big,)]  # untouched, not rounded
