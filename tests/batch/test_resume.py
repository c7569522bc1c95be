"""Ledger re-runs: re-attach, never pay twice, ambiguous items, fingerprints, dry runs."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batch.fakeapi import AcceptedThenDropped, Behaviour, FakeAPI

from webtask_frames import AsyncClient, BatchResult, run_batch, run_batch_async
from webtask_frames._batch.ledger import Ledger
from webtask_frames._batch.plan import build_plan

Run = Callable[..., BatchResult]
GRID = {"i": [0, 1, 2, 3]}


def sorted_records(result: BatchResult) -> list[dict[str, Any]]:
    return sorted(result.to_arrow().to_pylist(), key=lambda r: (r["_item"], r["name"]))


def test_a_finished_sweep_is_not_paid_twice(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    ledger = tmp_path / "sweep.db"
    first = run("T", GRID, reuse_key="k", ledger=ledger)
    assert first.ok and fake.start_calls == 4
    calls = fake.result_calls
    second = run("T", GRID, reuse_key="k", ledger=ledger)
    assert second.ok
    assert fake.start_calls == 4 and fake.result_calls == calls  # inline: from the ledger
    assert sorted_records(second) == sorted_records(first)
    assert list(second.tasks["webtask_id"]) == list(first.tasks["webtask_id"])
    assert second.cost_usd == pytest.approx(first.cost_usd)
    assert second.requests == {"start": 0, "result": 0, "download": 0}


def test_file_results_are_cached_beside_the_ledger(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    fake.script = lambda body, occ: Behaviour(file=True)
    ledger = tmp_path / "sweep.db"
    first = run("T", GRID, ledger=ledger)
    assert first.ok and fake.download_calls == 4
    cache = tmp_path / "sweep.db.cache"
    assert len(list(cache.iterdir())) == 4
    with Ledger.open(ledger, build_plan("T", GRID)) as book:
        rows = book.attempts()
    assert all(r.raw_path and Path(r.raw_path).parent == cache for r in rows)
    assert all("sig=ok" not in (r.terminal_json or "") for r in rows)  # never the signature
    results, downloads = fake.result_calls, fake.download_calls
    second = run("T", GRID, ledger=ledger)
    assert second.ok and sorted_records(second) == sorted_records(first)
    assert (fake.start_calls, fake.result_calls, fake.download_calls) == (4, results, downloads)
    shutil.rmtree(cache)  # the cache is gone: one fresh URL per item, never a new task
    third = run("T", GRID, ledger=ledger)
    assert third.ok and sorted_records(third) == sorted_records(first)
    assert fake.start_calls == 4 and fake.result_calls == results + 4


def seed_ledger(path: Path, grid: Any, steps: Callable[[Ledger, Any], None]) -> None:
    plan = build_plan("T", grid)
    with Ledger.open(path, plan) as ledger:
        steps(ledger, plan)


def test_a_submitted_item_is_re_attached_not_resubmitted(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    plan = build_plan("T", GRID)
    task = fake.accept(plan.items[2].body, "fp", 0)  # created by a run that then crashed

    def steps(book: Ledger, plan: Any) -> None:
        book.record_submitted(book.record_intent(plan.items[2].item_key, attempt=1), task.id)

    seed_ledger(ledger, GRID, steps)
    result = run("T", GRID, ledger=ledger)
    assert result.ok and fake.start_calls == 3
    assert result.tasks["webtask_id"][2] == task.id and result.tasks["attempts"][2] == 1


def test_intent_only_items_are_ambiguous_until_opted_in(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    seed_ledger(
        ledger, GRID, lambda book, plan: book.record_intent(plan.items[1].item_key, attempt=1)
    )
    result = run("T", GRID, ledger=ledger)
    tasks = result.tasks
    assert list(tasks["status"]) == ["succeeded", "ambiguous", "succeeded", "succeeded"]
    assert "resubmit_ambiguous=True" in tasks["error_message"][1]
    assert fake.start_calls == 3 and list(result.ambiguous["_item"]) == [1]
    again = run("T", GRID, ledger=ledger)  # still not resent without the opt-in
    assert fake.start_calls == 3 and again.tasks["status"][1] == "ambiguous"
    opted = run("T", GRID, ledger=ledger, resubmit_ambiguous=True)
    assert opted.ok and fake.start_calls == 4
    assert opted.tasks["attempts"][1] == 2 and opted.tasks["ambiguous_attempts"][1] == 1
    assert list(opted.ambiguous["_item"]) == [1]  # still reported: it may have run twice


def test_a_dropped_start_is_resubmitted_only_on_request(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    fake.start_fault = lambda body, n: (
        AcceptedThenDropped("dropped") if body["parameters"]["i"] == 0 and n == 1 else None
    )
    first = run("T", GRID, ledger=ledger)
    assert first.tasks["status"][0] == "ambiguous" and fake.accepted == 4
    second = run("T", GRID, ledger=ledger, resubmit_ambiguous=True)
    assert second.ok and fake.accepted == 5  # the duplicate is the reported ambiguous one
    assert int(second.tasks["ambiguous_attempts"].sum()) == fake.accepted - 4


def test_a_grown_and_reordered_grid_reuses_what_was_paid_for(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    first = run("T", GRID, ledger=ledger)
    assert fake.start_calls == 4
    grown = run("T", {"i": [5, 3, 2, 9, 1]}, ledger=ledger)  # 3 known, 2 new, reordered
    assert grown.ok and fake.start_calls == 6
    tasks = grown.tasks
    assert list(tasks["source"]) == ["started", "reused", "reused", "started", "reused"]
    known = dict(zip(first.tasks["_item_key"], first.tasks["webtask_id"], strict=True))
    for key, wid, source in zip(
        tasks["_item_key"], tasks["webtask_id"], tasks["source"], strict=True
    ):
        if source == "reused":
            assert known[key] == wid  # the very task paid for in the first run
    assert sorted(grown.records["i"].unique()) == [1, 2, 3, 5, 9]
    other = run("Other task", GRID, ledger=ledger)  # other text: other items, same ledger
    assert other.ok and fake.start_calls == 10


def test_final_failures_stay_final_but_stopped_items_run_on_rerun(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    credits = {"left": False}

    def script(body: dict[str, Any], occ: int) -> Behaviour:
        i = body["parameters"]["i"]
        if i == 0:
            return Behaviour(outcome="failed", code="timeout")
        if i == 1 and not credits["left"]:
            return Behaviour(outcome="failed", code="no-ai-credits-left")
        return Behaviour()

    fake.script = script
    first = run("T", GRID, ledger=ledger, max_concurrency=1)
    assert first.stopped_reason == "no-ai-credits-left"
    assert list(first.tasks["status"]) == ["failed", "failed", "skipped", "skipped"]
    credits["left"] = True  # the user topped up
    second = run("T", GRID, ledger=ledger, max_concurrency=1)
    assert second.stopped_reason is None
    assert list(second.tasks["status"]) == ["failed", "succeeded", "succeeded", "succeeded"]
    assert list(second.tasks["attempts"]) == [1, 2, 1, 1]
    assert fake.start_calls == 5


def test_the_budget_covers_the_whole_sweep_across_reruns(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    fake.script = lambda body, occ: Behaviour(cost=0.10)
    first = run("T", {"i": list(range(6))}, ledger=ledger, max_cost_usd=0.25, max_concurrency=1)
    assert first.stopped_reason == "budget" and fake.accepted == 2
    second = run("T", {"i": list(range(6))}, ledger=ledger, max_cost_usd=0.25, max_concurrency=1)
    assert second.stopped_reason == "budget" and fake.accepted == 2
    third = run("T", {"i": list(range(6))}, ledger=ledger, max_cost_usd=0.65, max_concurrency=1)
    assert third.ok and fake.accepted == 6


def test_dry_run_needs_no_client_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INTUNED_API_KEY", "INTUNED_WORKSPACE_ID", "INTUNED_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    ledger = tmp_path / "sweep.db"
    grid = {"i": list(range(6)), "k": ["a", "b"]}
    plan = run_batch("T", grid, reuse_key="{k}", dry_run=True, ledger=ledger)
    assert plan.dry_run and not ledger.exists()
    assert plan.plan.estimate_basis == "prior"  # no history: the per-model prior
    assert sorted(plan.plan.order) == list(range(12))
    assert plan.plan.chains == {"a": list(range(0, 12, 2)), "b": list(range(1, 12, 2))}
    assert set(plan.tasks["status"]) == {"planned"}
    assert "estimated cost" in plan.summary() and "dry_run" in repr(plan)


def test_dry_run_estimate_for_the_remaining_items(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    ledger = tmp_path / "sweep.db"
    fake.script = lambda body, occ: Behaviour(cost=0.05)
    grid = {"i": list(range(8))}
    run("T", grid, reuse_key="k", ledger=ledger, max_cost_usd=0.12, max_concurrency=1)
    calls = (fake.start_calls, fake.result_calls, fake.download_calls)
    plan = run("T", grid, reuse_key="k", ledger=ledger, dry_run=True)  # a client is given
    assert (fake.start_calls, fake.result_calls, fake.download_calls) == calls  # zero requests
    assert list(plan.tasks["status"]).count("succeeded") == 2
    assert plan.plan.estimated_cost_usd == pytest.approx(6 * 0.05)
    assert len(plan.plan.order) == 6
    assert plan.plan.estimated_duration_s is not None  # six warm runs of one key, in a row
    assert "estimated time" in plan.summary()
    run("T", grid, reuse_key="k", ledger=ledger)
    done = run("T", grid, reuse_key="k", ledger=ledger, dry_run=True)
    assert done.plan.estimated_cost_usd == 0.0 and done.plan.order == []


@pytest.mark.parametrize("clock", ["real"], indirect=True)
def test_a_run_cut_short_resumes_to_completion(
    fake: FakeAPI, make_client: Callable[..., AsyncClient], run: Run, tmp_path: Path
) -> None:
    ledger = tmp_path / "sweep.db"
    fake.script = lambda body, occ: Behaviour(duration=0.05)
    grid = {"i": list(range(30)), "k": ["a", "b", "c"]}
    client = make_client()

    async def interrupted() -> None:
        async with client:
            await asyncio.wait_for(
                run_batch_async(
                    "T", grid, reuse_key="{k}", client=client, ledger=ledger, progress=False
                ),
                0.3,
            )

    with pytest.raises(TimeoutError):
        asyncio.run(interrupted())
    assert 0 < fake.accepted < 90
    result = run("T", grid, reuse_key="{k}", ledger=ledger, resubmit_ambiguous=True)
    assert result.ok and len(result.records) == 180
    extra = fake.accepted - 90
    assert extra <= int(result.tasks["ambiguous_attempts"].sum())
    assert fake.violations == []


def test_a_resubmitted_ambiguous_item_waits_until_its_key_is_free(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    """The orphan (accepted, but its id lost) still runs: the resubmission waits out its
    predicted duration (no history: the model's prior) instead of sharing the key."""
    ledger = tmp_path / "sweep.db"
    # haiku's prior for a key's first run is 120 s and the orphan takes 100 s of it; the
    # ledger says the orphan was sent a moment ago (wall time). The first run itself ends
    # at once: nothing else of its was waiting for the key.
    fake.script = lambda body, occ: Behaviour(duration=100.0 if occ == 0 else 0.02)
    fake.start_fault = lambda body, n: AcceptedThenDropped("dropped") if n == 1 else None
    first = run("T", {"i": [0]}, reuse_key="k", ledger=ledger)
    assert first.tasks["status"][0] == "ambiguous"
    orphan = fake.tasks["wt_1"]
    second = run("T", {"i": [0]}, reuse_key="k", ledger=ledger, resubmit_ambiguous=True)
    assert second.ok
    assert fake.violations == []  # never two unfinished tasks on "k"
    resubmitted = [t for t in fake.tasks.values() if t.body == orphan.body and t is not orphan]
    assert len(resubmitted) == 1 and resubmitted[0].created >= orphan.finish
