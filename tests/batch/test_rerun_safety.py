"""Reruns with sinks never lose a paid result, never pay twice, and keep the bill whole:
results that could not be read, sinks that fail midway, inline links, failures from
earlier runs, refreshes cut off, items absent from the grid but still running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from batch.fakeapi import Behaviour, FakeAPI

from webtask_frames import AsyncClient, BatchResult, DuckDBSink, InvalidInputError
from webtask_frames._batch.iterate import iter_batch_async
from webtask_frames._batch.ledger import Ledger
from webtask_frames._batch.plan import build_plan

Run = Callable[..., BatchResult]
SCHEMA = {
    "type": "array",
    "items": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
}


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db)) as con:
        return con.execute(sql).fetchall()


def billed(fake: FakeAPI) -> float:
    return sum(t.behaviour.cost for t in fake.tasks.values())


def test_a_success_whose_rows_were_not_read_lands_on_the_rerun(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger, db = tmp_path / "l.db", tmp_path / "o.duckdb"
    fake.script = lambda body, occ: Behaviour(data=[{"n": 1}, {"n": "two"}])
    first = run(
        "T",
        {"i": [0]},
        ledger=ledger,
        output_schema=SCHEMA,
        validate="raise",
        sink=DuckDBSink(db, "t"),
    )
    assert first.tasks["status"][0] == "failed"  # paid, but the result broke the schema
    assert query(db, "SELECT count(*) FROM t_tasks WHERE outcome = 'success'") == [(1,)]
    again = run("T", {"i": [0]}, ledger=ledger, output_schema=SCHEMA, sink=DuckDBSink(db, "t"))
    assert again.ok and fake.start_calls == 1  # reused, not paid again
    assert query(db, "SELECT n FROM t") == [(1,)]  # and this time its valid row landed


def test_after_a_sink_error_every_later_item_is_reported_and_kept(fake: FakeAPI, run: Run) -> None:
    taken: list[str] = []

    def flaky(report: Any, rows: pa.Table) -> None:
        if len(taken) == 1:
            raise OSError("disk full")
        taken.append(report.item_key)

    result = run("T", {"i": list(range(6))}, sink=flaky, max_concurrency=6)
    tasks = result.tasks
    ok = set(tasks.loc[tasks["status"] == "succeeded", "_item_key"])
    assert ok == set(taken)  # succeeded means landed: nothing silently dropped
    not_landed = tasks.loc[tasks["error_code"] == "sink-error", "_item_key"]
    assert len(not_landed) >= 1
    assert set(result.unlanded["_item_key"]) == set(not_landed)  # their rows are kept
    assert len(result.unlanded) == 2 * len(not_landed)


def test_inline_links_in_results_survive_a_rerun(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    ledger = tmp_path / "l.db"
    fake.script = lambda body, occ: Behaviour(
        data=[{"url": f"https://shop.example/p?id={body['parameters']['i']}&ref=x"}]
    )
    first = run("T", {"i": [0, 1]}, ledger=ledger)
    again = run("T", {"i": [0, 1]}, ledger=ledger)  # rebuilt from the ledger's copy
    assert fake.start_calls == 2
    urls = sorted(again.records["url"])
    assert (
        urls
        == sorted(first.records["url"])
        == [
            "https://shop.example/p?id=0&ref=x",
            "https://shop.example/p?id=1&ref=x",
        ]
    )


def test_a_sink_added_later_gets_every_billed_task(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    ledger, db = tmp_path / "l.db", tmp_path / "o.duckdb"
    fake.script = lambda body, occ: (
        Behaviour(outcome="failed", code="timeout", cost=0.5)
        if body["parameters"]["i"] == 1
        else Behaviour(cost=0.02)
    )
    run("T", {"i": [0, 1]}, ledger=ledger)  # no sink yet: item 1 failed for good
    run("T", {"i": [0, 1]}, ledger=ledger, sink=DuckDBSink(db, "t"))
    assert fake.start_calls == 2
    ((n, usd),) = query(db, "SELECT count(*), sum(cost_ai_usd) FROM t_tasks")
    assert n == 2 and usd == pytest.approx(billed(fake))


def test_billed_tasks_of_items_stopped_midway_reach_the_tasks_table(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    db = tmp_path / "o.duckdb"
    fake.script = lambda body, occ: (
        Behaviour(outcome="failed", code="no-ai-credits-left", cost=0.3)
        if body["parameters"]["i"] == 0
        else Behaviour(cost=0.1, duration=5.0)
    )
    result = run("T", {"i": [0, 1, 2]}, sink=DuckDBSink(db, "t"), max_concurrency=3)
    assert result.stopped_reason == "no-ai-credits-left"
    ((usd,),) = query(db, "SELECT sum(cost_ai_usd) FROM t_tasks")
    finished = sum(t.behaviour.cost for t in fake.tasks.values() if t.finish <= fake.clock())
    assert usd == pytest.approx(finished)
    assert query(db, "SELECT count(*) FROM t_tasks")[0][0] == fake.accepted


def test_a_refresh_cut_off_keeps_the_paid_result(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    ledger = tmp_path / "l.db"
    first = run("T", {"i": [0]}, ledger=ledger)
    plan = build_plan("T", {"i": [0]})
    with Ledger.open(ledger, plan) as book:  # a max_age refresh killed after its intent
        book.record_intent(plan.items[0].item_key, attempt=2)
    plain = run("T", {"i": [0]}, ledger=ledger)
    assert plain.ok and plain.tasks["source"][0] == "reused" and len(plain.records) == 2
    assert plain.tasks["ambiguous_attempts"][0] == 1  # still reported
    opted = run("T", {"i": [0]}, ledger=ledger, resubmit_ambiguous=True)
    assert opted.ok and fake.start_calls == 1  # the fresh success is not paid again
    assert opted.tasks["webtask_id"][0] == first.tasks["webtask_id"][0]


def test_an_absent_item_still_running_keeps_its_reuse_key(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "l.db"
    plan = build_plan("T", {"i": [0]}, reuse_key="k")
    fake.script = lambda body, occ: Behaviour(
        duration=30.0 if body["parameters"]["i"] == 0 else 0.1
    )
    task = fake.accept(plan.items[0].body, "fp", 0)  # started by a run that then crashed
    with Ledger.open(ledger, plan) as book:
        book.record_submitted(book.record_intent(plan.items[0].item_key, attempt=1), task.id)
    result = run("T", {"i": [1]}, ledger=ledger, reuse_key="k")  # item 0 is not in this grid
    assert result.ok and fake.violations == []  # never two unfinished tasks on key "k"
    assert fake.start_calls == 1


def test_bad_sink_targets_are_refused_before_any_start(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    db = tmp_path / "o.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")  # not a table of ours
    with pytest.raises(InvalidInputError, match="_item_key") as info:
        run("T", {"i": [0, 1]}, sink=DuckDBSink(db, "t"))
    assert info.value.field == "table" and fake.start_calls == 0
    foreign = tmp_path / "ds"
    foreign.mkdir()
    pa.parquet.write_table(pa.table({"x": [1]}), foreign / "part-0.parquet")  # type: ignore[attr-defined]
    from webtask_frames import ParquetSink

    with pytest.raises(InvalidInputError, match="did not write"):
        run("T", {"i": [0, 1]}, sink=ParquetSink(foreign))
    assert fake.start_calls == 0


def test_a_parameter_of_mixed_types_lands_with_one_type(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    db = tmp_path / "o.duckdb"
    fake.script = lambda body, occ: Behaviour(data=[{"n": 1}])
    result = run("T", [{"x": 1}, {"x": "b"}, {"x": 3}], sink=DuckDBSink(db, "t"))
    assert result.ok
    assert sorted(query(db, "SELECT DISTINCT x FROM t")) == [("1",), ("3",), ("b",)]
    assert sorted(query(db, "SELECT DISTINCT x FROM t_tasks")) == [("1",), ("3",), ("b",)]


def test_leaving_iter_batch_early_leaves_no_false_ambiguous_item(
    fake: FakeAPI, make_client: Callable[..., AsyncClient], run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "l.db"

    async def first_only() -> None:
        async with make_client() as client:
            async for _report, _rows in iter_batch_async(
                "T",
                {"i": list(range(20))},
                client=client,
                progress=False,
                ledger=ledger,
                max_concurrency=4,
            ):
                return

    asyncio.run(first_only())
    sent = fake.start_calls
    again = run("T", {"i": list(range(20))}, ledger=ledger)
    assert len(again.ambiguous) == 0 and again.ok
    assert fake.start_calls == 20 and sent < 20  # every item paid for exactly once
