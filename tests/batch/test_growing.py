"""Sweeps that grow: one ledger across runs and grids, retry_failed, max_age, merge by
identity, and what each run had to send."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from batch.fakeapi import Behaviour, FakeAPI

from webtask_frames import BatchResult, DuckDBSink, InvalidInputError

Run = Callable[..., BatchResult]


def failed(code: str) -> Behaviour:
    return Behaviour(outcome="failed", code=code)


def rows_of(body: dict[str, Any], occ: int) -> Behaviour:
    """Three rows per task that say which task made them (item, occurrence)."""
    i = body["parameters"]["i"]
    data = [{"i_seen": i, "occ": occ, "n": n} for n in range(3)]
    return Behaviour(data=data, cost=0.01 * (1 + i) + 0.001 * occ)


def values(column: Any) -> list[Any]:
    """A pandas column as plain values (missing: None)."""
    return [None if pd.isna(v) else v for v in column]


def billed(fake: FakeAPI) -> float:
    return sum(t.behaviour.cost for t in fake.tasks.values())


@pytest.mark.parametrize("landing", ["sink", "to_duckdb"])
def test_five_runs_on_one_ledger_send_exactly_the_starts_that_had_to_happen(
    fake: FakeAPI, run: Run, tmp_path: Path, landing: str
) -> None:
    ledger, db = tmp_path / "sweep.db", tmp_path / "out.duckdb"

    def script(body: dict[str, Any], occ: int) -> Behaviour:
        if body["parameters"]["i"] == 1 and occ == 0:
            return failed("timeout")  # final: only retry_failed runs it again
        return rows_of(body, occ)

    fake.script = script
    starts = []

    def sweep(grid: dict[str, Any], **kw: Any) -> BatchResult:
        if landing == "sink":  # each item lands as it finishes
            kw["sink"] = DuckDBSink(db, "t")
        result = run("T {i}", grid, ledger=ledger, reuse_key="k{i}", **kw)
        if landing == "to_duckdb":
            result.to_duckdb(db, "t")  # the default: merge by identity
        starts.append(fake.start_calls)
        return result

    first = sweep({"i": [0, 1, 2]})
    assert list(first.tasks["status"]) == ["succeeded", "failed", "succeeded"]
    second = sweep({"i": [0, 1, 2]})  # nothing new: a final failure stays failed
    assert values(second.tasks["source"]) == ["reused", None, "reused"]
    third = sweep({"i": [0, 1, 2]}, retry_failed=True)
    assert third.ok and values(third.tasks["source"]) == ["reused", "started", "reused"]
    assert third.tasks["attempts"][1] == 2
    fourth = sweep({"i": [2, 1, 3]})  # grown by one, reordered, item 0 left out
    assert values(fourth.tasks["source"]) == ["reused", "reused", "started"]
    fifth = sweep({"i": [3, 2]}, max_age=0)  # refresh part of the grid
    assert values(fifth.tasks["source"]) == ["started", "started"]
    assert starts == [3, 3, 4, 5, 7]

    con = duckdb.connect(str(db))
    per_item = con.execute(
        "SELECT i, count(*), count(DISTINCT _webtask_id), max(occ) FROM t GROUP BY i ORDER BY i"
    ).fetchall()
    # Each item's rows once, from its latest task: 2 and 3 from the refresh (occurrence 1).
    assert per_item == [(0, 3, 1, 0), (1, 3, 1, 1), (2, 3, 1, 1), (3, 3, 1, 1)]
    latest = {
        k: w for k, w in zip(fifth.tasks["_item_key"], fifth.tasks["webtask_id"], strict=True)
    }
    for key, wid in latest.items():
        (got,) = con.execute(
            "SELECT DISTINCT _webtask_id FROM t WHERE _item_key = ?", [key]
        ).fetchone()
        assert got == wid
    n_tasks, total = con.execute("SELECT count(*), sum(cost_ai_usd) FROM t_tasks").fetchone()
    assert n_tasks == fake.accepted == 7  # one row per billed task, the failed one too
    assert total == pytest.approx(billed(fake))
    assert con.execute("SELECT count(DISTINCT _webtask_id) FROM t_tasks").fetchone() == (7,)
    # What the fifth run says of its records agrees with the table, in both ways of landing.
    assert sorted(fifth.records["occ"]) == [1] * 6 and len(fifth.records) == 6


def test_retry_failed_runs_on_the_stronger_model(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    ledger = tmp_path / "sweep.db"
    fake.script = lambda body, occ: (
        failed("rejected")
        if body.get("model") == "haiku" and body["parameters"]["i"]
        else Behaviour()
    )
    first = run("T", {"i": [0, 1]}, ledger=ledger, model="haiku")
    assert list(first.tasks["status"]) == ["succeeded", "failed"]
    again = run("T", {"i": [0, 1]}, ledger=ledger, model="sonnet", retry_failed=True)
    assert again.ok and fake.start_calls == 3
    bodies = [t.body for t in fake.tasks.values()]
    assert [b.get("model") for b in bodies] == ["haiku", "haiku", "sonnet"]
    attempts = again.attempts.sort_values(["_item_key", "attempt"])
    assert sorted(zip(attempts["model"], attempts["status"], strict=True)) == [
        ("haiku", "failed"),
        ("haiku", "succeeded"),
        ("sonnet", "succeeded"),
    ]
    assert again.new_cost_usd == pytest.approx(0.01) and again.cost_usd == pytest.approx(0.03)


def test_max_age_refreshes_only_results_older_than_it(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    run("T", {"i": [0, 1]}, ledger=ledger)
    fresh = run("T", {"i": [0, 1]}, ledger=ledger, max_age=timedelta(hours=12))
    assert fake.start_calls == 2 and values(fresh.tasks["source"]) == ["reused", "reused"]
    fresh = run("T", {"i": [0, 1]}, ledger=ledger, max_age="7d")
    assert fake.start_calls == 2
    stale = run("T", {"i": [0, 1]}, ledger=ledger, max_age=0)
    assert fake.start_calls == 4 and values(stale.tasks["source"]) == ["started", "started"]
    assert list(stale.tasks["attempts"]) == [2, 2]


def test_a_failed_refresh_keeps_the_paid_result(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    ledger = tmp_path / "sweep.db"
    fake.script = lambda body, occ: failed("timeout") if occ == 1 else rows_of(body, occ)
    first = run("T", {"i": [0]}, ledger=ledger)
    refresh = run("T", {"i": [0]}, ledger=ledger, max_age=0)
    assert refresh.tasks["status"][0] == "failed" and fake.start_calls == 2
    later = run("T", {"i": [0]}, ledger=ledger)  # no max_age: the earlier success is reused
    assert later.ok and fake.start_calls == 2
    assert later.tasks["webtask_id"][0] == first.tasks["webtask_id"][0]
    assert later.tasks["attempts"][0] == 2 and len(later.records) == 3


def test_a_refresh_that_failed_within_max_age_waits_for_retry_failed(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    fake.script = lambda body, occ: failed("timeout") if occ == 1 else rows_of(body, occ)
    run("T", {"i": [0]}, ledger=ledger)
    with sqlite3.connect(ledger) as con:  # that success is two days old now
        con.execute("UPDATE attempts SET finished_at = '2026-01-01T00:00:00.000+00:00'")
    run("T", {"i": [0]}, ledger=ledger, max_age="1d")  # the refresh fails for good
    assert fake.start_calls == 2
    again = run("T", {"i": [0]}, ledger=ledger, max_age="1d")  # tried just now: not again
    assert fake.start_calls == 2 and again.tasks["status"][0] == "failed"
    retried = run("T", {"i": [0]}, ledger=ledger, max_age="1d", retry_failed=True)
    assert fake.start_calls == 3 and retried.ok and retried.tasks["attempts"][0] == 3
    assert run("T", {"i": [0]}, ledger=ledger, max_age=0).tasks["source"][0] == "started"


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"max_age": -1}, "max_age", ">= 0"),
        ({"max_age": "soon"}, "max_age", "'12h'"),
        ({"max_age": float("inf")}, "max_age", "finite"),
        ({"retry_failed": "yes"}, "retry_failed", "True or False"),
        ({"retry_failed": True, "ledger": None}, "retry_failed", "ledger="),
        ({"max_age": 5, "ledger": None}, "max_age", "ledger="),
        ({"sink": 42}, "sink", "sink"),
    ],
)
def test_bad_rerun_options_are_refused_before_any_request(
    fake: FakeAPI, run: Run, tmp_path: Path, kwargs: dict[str, Any], field: str, match: str
) -> None:
    kwargs.setdefault("ledger", tmp_path / "sweep.db")
    with pytest.raises(InvalidInputError, match=match) as info:
        run("T", {"i": [0]}, **kwargs)
    assert info.value.field == field and "\n" not in str(info.value)
    assert (fake.start_calls, fake.result_calls) == (0, 0)


def test_dry_run_says_what_a_run_would_reuse_and_start(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    run("T", {"i": [0, 1]}, ledger=ledger)
    plan = run("T", {"i": [1, 2]}, ledger=ledger, dry_run=True)
    assert list(plan.tasks["status"]) == ["succeeded", "planned"]
    assert values(plan.tasks["source"]) == ["reused", None]
    refresh = run("T", {"i": [1, 2]}, ledger=ledger, dry_run=True, max_age=0)
    assert list(refresh.tasks["status"]) == ["planned", "planned"]
    assert fake.start_calls == 2
