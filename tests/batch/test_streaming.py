"""Rows landed as items finish: callable sinks, iter_batch, and a sink that fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from batch.fakeapi import Behaviour, FakeAPI

from webtask_frames import AsyncClient, BatchResult, InvalidInputError
from webtask_frames._batch.iterate import iter_batch_async

Run = Callable[..., BatchResult]


class Recorder:
    """A callable sink that keeps what it was given, and when."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, list[str]]] = []

    def __call__(self, report: Any, rows: pa.Table) -> None:
        self.calls.append(
            (report.item_key, report.status, rows.num_rows, sorted(rows.column_names))
        )


def test_a_callable_sink_gets_each_finished_item_once(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: (
        Behaviour(outcome="failed", code="rejected")
        if body["parameters"]["i"] == 2
        else Behaviour()
    )
    sink = Recorder()
    result = run("T", {"i": [0, 1, 2, 3]}, sink=sink)
    assert sorted(status for _, status, _, _ in sink.calls) == ["failed"] + ["succeeded"] * 3
    assert {key for key, *_ in sink.calls} == set(result.tasks["_item_key"])
    for _key, status, n, columns in sink.calls:
        assert n == (2 if status == "succeeded" else 0)
        # Identity and row position, never the grid position.
        assert {"_item_key", "_row", "_webtask_id", "i"} <= set(columns)
        assert "_item" not in columns and "_valid" not in columns
    with pytest.raises(RuntimeError, match="sink callable"):
        _ = result.records  # the callable owns the rows: none kept, said clearly
    assert result.n_records == 6  # figures come from the tasks table
    assert "records: 6" in result.summary()


def test_a_failed_item_lands_its_billed_tasks(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: Behaviour(outcome="failed", code="timeout", cost=0.5)
    got: list[pa.Table] = []
    run("T", {"i": [0]}, sink=lambda report, rows: got.append(report.tasks_arrow()))
    (tasks,) = got
    assert tasks.num_rows == 1 and tasks["cost_ai_usd"].to_pylist() == [0.5]
    assert tasks["status"].to_pylist() == ["failed"] and tasks["error_code"].to_pylist() == [
        "timeout"
    ]


def test_a_failing_sink_stops_the_sweep_and_a_rerun_lands_without_paying(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    landed: list[str] = []

    def flaky(report: Any, rows: pa.Table) -> None:
        if len(landed) == 2:
            raise OSError("disk full")
        landed.append(report.item_key)

    first = run("T", {"i": list(range(12))}, ledger=ledger, sink=flaky, max_concurrency=2)
    assert first.stopped_reason == "sink-error" and "disk full" in (first.stopped_message or "")
    assert "sink-error" in set(first.tasks["error_code"].dropna())
    assert fake.start_calls < 12  # stopped paying for rows nobody keeps
    paid = fake.start_calls
    keep: list[str] = []
    second = run(
        "T", {"i": list(range(12))}, ledger=ledger, sink=lambda r, rows: keep.append(r.item_key)
    )
    assert second.ok and len(set(keep)) == 12
    assert fake.start_calls == paid + (12 - paid)  # only never-started items are started


def test_sink_and_in_memory_results_agree(fake: FakeAPI, run: Run) -> None:
    plain = run("T", {"i": [0, 1]})
    with_sink = run("T", {"i": [0, 1]}, sink=lambda r, rows: None)
    assert list(with_sink.tasks["status"]) == list(plain.tasks["status"])
    assert with_sink.attempts_arrow().num_rows == plain.attempts_arrow().num_rows == 2


@pytest.mark.parametrize("bad", [42, "sink.duckdb", lambda: None, []])
def test_a_sink_of_the_wrong_type_is_refused_before_any_request(
    fake: FakeAPI, run: Run, bad: Any
) -> None:
    with pytest.raises(InvalidInputError) as info:
        run("T", {"i": [0]}, sink=bad)
    assert info.value.field == "sink"
    assert fake.start_calls == 0


def test_iter_batch_yields_items_as_they_finish(
    fake: FakeAPI, make_client: Callable[..., AsyncClient], tmp_path: Path
) -> None:
    # 60 ms between finishes: under a loaded CI machine 10 ms let two items swap
    fake.script = lambda body, occ: Behaviour(duration=0.06 * (5 - body["parameters"]["i"]))
    ledger = tmp_path / "sweep.db"

    async def collect(**kw: Any) -> list[tuple[Any, pa.Table]]:
        async with make_client() as client:
            return [
                item
                async for item in iter_batch_async(
                    "T", {"i": [0, 1, 2, 3]}, client=client, progress=False, ledger=ledger, **kw
                )
            ]

    items = asyncio.run(collect())
    params = [report.parameters["i"] for report, _ in items]
    assert sorted(params) == [0, 1, 2, 3] and params[0] == 3  # the fastest first
    assert all(rows.num_rows == 2 for _, rows in items)
    assert {r.source for r, _ in items} == {"started"}
    again = asyncio.run(collect())  # a rerun yields the whole grid, from the ledger
    assert sorted(r.parameters["i"] for r, _ in again) == [0, 1, 2, 3]
    assert {r.source for r, _ in again} == {"reused"} and fake.start_calls == 4


def test_leaving_iter_batch_early_cancels_the_sweep(
    fake: FakeAPI, make_client: Callable[..., AsyncClient], tmp_path: Path
) -> None:
    async def first_only() -> Any:
        async with make_client() as client:
            async for report, _rows in iter_batch_async(
                "T",
                {"i": list(range(30))},
                client=client,
                progress=False,
                max_concurrency=2,
                ledger=tmp_path / "l.db",
            ):
                return report
        return None

    report = asyncio.run(first_only())
    assert report is not None and report.status == "succeeded"
    assert fake.start_calls < 30


def test_iter_batch_refuses_dry_run_and_unknown_arguments(fake: FakeAPI) -> None:
    from webtask_frames._batch.iterate import iter_batch

    with pytest.raises(InvalidInputError, match="dry_run=True") as info:
        next(iter_batch("T", {"i": [0]}, dry_run=True))
    assert info.value.field == "dry_run"
    with pytest.raises(TypeError, match="ledgr"):
        next(iter_batch("T", {"i": [0]}, ledgr="x.db"))


def test_the_sync_iter_batch_yields_every_item_from_a_live_sandbox(tmp_path: Path) -> None:
    import webtask_frames as wf
    from webtask_frames.sandbox import Sandbox

    with (
        Sandbox(time_scale=0.01, rows=3, seed=2) as sb,
        wf.Client(
            api_key=sb.api_key,
            workspace_id=sb.workspace_id,
            base_url=sb.base_url,
            poll_min_s=0.01,
            poll_max_s=0.1,
        ) as client,
    ):
        items = list(
            wf.iter_batch(
                "List {x}",
                {"x": ["a", "b", "c"]},
                client=client,
                progress=False,
                ledger=tmp_path / "l.db",
            )
        )
        assert sorted(r.parameters["x"] for r, _ in items) == ["a", "b", "c"]
        assert all(r.status == "succeeded" and rows.num_rows == 3 for r, rows in items)
        first = next(
            iter(
                wf.iter_batch(  # leave at once: the sweep unwinds, lock released
                    "List {x}",
                    {"x": ["a", "d"]},
                    client=client,
                    progress=False,
                    ledger=tmp_path / "l.db",
                )
            )
        )
        assert first[0].status == "succeeded"
        again = wf.run_batch(
            "List {x}",
            {"x": ["a", "b", "c", "d"]},
            client=client,
            progress=False,
            ledger=tmp_path / "l.db",
        )
        assert again.ok and len(again.ambiguous) == 0
        assert sb.stats()["accepted_tasks"] == 4  # every item paid for exactly once
