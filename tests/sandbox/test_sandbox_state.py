"""Service semantics: scheduling, cap, per-key serialisation, reuse, cost, durations, overrides."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from webtask_frames.sandbox import (
    ConfigError,
    ManualClock,
    Sandbox,
    SandboxConfig,
    StartRequest,
    TaskOverride,
)
from webtask_frames.sandbox._state import SandboxState


def _state(**options: Any) -> tuple[SandboxState, ManualClock]:
    clock = ManualClock()
    return SandboxState(SandboxConfig(clock=clock, **options)), clock


def _drain(state: SandboxState, clock: ManualClock, step: float = 1.0, limit: int = 10_000) -> None:
    for _ in range(limit):
        counts = state.stats()["status_counts"]
        if counts["pending"] == 0 and counts["started"] == 0:
            return
        clock.advance(step)
    raise AssertionError("tasks did not finish")


def _intervals(state: SandboxState) -> list[tuple[float, float, str]]:
    out = []
    for task_id in state.task_ids():
        task = state.get_task(task_id)
        assert task is not None
        if task.granted is not None:
            assert task.finished is not None
            out.append((task.granted, task.finished, task.key))
    return out


def _max_overlap(intervals: list[tuple[float, float, str]]) -> int:
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals])
    best = cur = 0
    for _, delta in events:  # ends sort before starts at the same instant (-1 < 1)
        cur += delta
        best = max(best, cur)
    return best


def test_exact_timeline_with_manual_clock() -> None:
    state, clock = _state(duration_s=10, start_latency_s=0)
    task_id = state.submit(StartRequest(task="x"))
    assert state.poll(task_id)[0]["status"] == "started"  # type: ignore[index]
    clock.advance(9.999)
    assert state.poll(task_id)[0]["status"] == "started"  # type: ignore[index]
    clock.advance(0.001)
    envelope = state.poll(task_id)[0]  # type: ignore[index]
    assert envelope["status"] == "completed"
    assert envelope["cost"]["compute"]["amount"] == round(10 / 3600, 6)


def test_queue_mode_starts_waiting_tasks_when_slots_free() -> None:
    state, clock = _state(cap=2, duration_s=10, start_latency_s=0)
    ids = [state.submit(StartRequest(task=f"t{i}")) for i in range(5)]
    statuses = [state.poll(i)[0]["status"] for i in ids]  # type: ignore[index]
    assert statuses == ["started", "started", "pending", "pending", "pending"]
    clock.advance(25)  # the 3rd and 4th started at exactly t=10, the 5th at t=20
    tasks = [state.get_task(i) for i in ids]
    assert [t.granted for t in tasks if t] == [0.0, 0.0, 10.0, 10.0, 20.0]
    assert state.stats()["max_running"] == 2


def test_same_key_runs_are_serialised_fifo() -> None:
    state, clock = _state(cap=10, duration_s=5, start_latency_s=0)
    ids = [state.submit(StartRequest(task="x", reuse_key="k")) for _ in range(4)]
    other = state.submit(StartRequest(task="y", reuse_key="other"))
    _drain(state, clock)
    starts = [state.get_task(i).granted for i in ids]  # type: ignore[union-attr]
    assert starts == [0.0, 5.0, 10.0, 15.0]
    assert state.get_task(other).granted == 0.0  # type: ignore[union-attr]
    assert state.stats()["max_running_per_key"] == 1


def test_cap_and_serialisation_under_100_concurrent_submissions() -> None:
    """100 concurrent HTTP starts against the threaded server: stats prove the limits held."""
    # Runs of 0.2 s real time: long enough that the cap saturates even on a loaded machine.
    with Sandbox(time_scale=0.002, seed=4, cap=10, start_latency_s=0.1, duration_s=100) as sb:

        async def main() -> list[str]:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(
                base_url=sb.base_url, headers={"x-api-key": sb.api_key}, limits=limits
            ) as client:

                async def one(i: int) -> str:
                    body = {"task": "List", "parameters": {"i": i}, "reuseKey": f"key{i % 30}"}
                    response = await client.post(f"/{sb.workspace_id}/web-tasks/start", json=body)
                    return str(response.json()["webTaskId"])

                ids = await asyncio.gather(*(one(i) for i in range(100)))
                # Poll everything until terminal.
                pending = set(ids)
                deadline = time.monotonic() + 30
                while pending and time.monotonic() < deadline:
                    results = await asyncio.gather(
                        *(client.get(f"/{sb.workspace_id}/web-tasks/{i}/result") for i in pending)
                    )
                    pending = {
                        r.json()["webTaskId"]
                        for r in results
                        if r.json()["status"] not in ("completed", "canceled")
                    }
                    await asyncio.sleep(0.02)
                return list(ids)

        ids = asyncio.run(main())
        stats = sb.stats()
        intervals = _intervals(sb.state)
    assert len(set(ids)) == 100
    assert stats["accepted_tasks"] == 100
    assert stats["status_counts"]["completed"] == 100
    assert stats["max_running"] == 10  # saturated, never above the cap
    assert stats["max_running_per_key"] == 1
    assert _max_overlap(intervals) <= 10
    for key in {k for _, _, k in intervals}:
        assert _max_overlap([iv for iv in intervals if iv[2] == key]) == 1


def test_cap_mode_fail_rejects_with_workspace_rate_limited() -> None:
    state, clock = _state(cap=3, cap_mode="fail", duration_s=10)
    ids = [state.submit(StartRequest(task=f"t{i}")) for i in range(8)]
    _drain(state, clock)
    codes = Counter(state.get_task(i).error_code for i in ids)  # type: ignore[union-attr]
    assert codes == {None: 3, "workspace-rate-limited": 5}
    stats = state.stats()
    assert stats["max_running"] == 3
    assert stats["error_codes"] == {"workspace-rate-limited": 5}


def test_reuse_block_semantics() -> None:
    state, clock = _state(duration_s=1, start_latency_s=0)
    schema_a = {"type": "array", "items": {"type": "object"}}
    schema_b = {"type": "array", "items": {"type": "object", "properties": {"x": {}}}}

    def run(**kw: Any) -> dict[str, Any]:
        task_id = state.submit(StartRequest(reuse_key="yc", **kw))
        clock.advance(1)
        envelope = state.poll(task_id)[0]  # type: ignore[index]
        assert envelope["status"] == "completed"
        return dict(envelope)

    from webtask_frames.sandbox._validation import fingerprint

    fp_a, fp_b = fingerprint("a"), fingerprint("b")
    failed_first = run(task="T", output_schema=schema_a, schema_fp=fp_a, magic=_fail())
    assert failed_first["reuse"]["created"] is False
    assert failed_first["reuse"]["used"] is False
    assert failed_first["reuse"]["updated"] is False

    first = run(task="T", output_schema=schema_a, schema_fp=fp_a)
    assert (first["reuse"]["created"], first["reuse"]["used"]) == (True, False)
    assert first["reuse"]["updated"] is True
    assert first["reuse"]["revision_id"] == first["webTaskId"]

    second = run(task="T", output_schema=schema_a, schema_fp=fp_a, parameters={"batch": "W21"})
    assert second["reuse"] == {**first["reuse"], "used": True, "created": False, "updated": False}

    failed = run(task="T", output_schema=schema_b, schema_fp=fp_b, magic=_fail())
    assert failed["reuse"]["updated"] is False
    assert failed["reuse"]["revision_id"] == first["webTaskId"]  # failures never update

    changed = run(task="T", output_schema=schema_b, schema_fp=fp_b)
    assert changed["reuse"]["updated"] is True
    assert changed["reuse"]["used"] is True
    assert changed["reuse"]["created"] is False
    assert changed["reuse"]["revision_id"] == changed["webTaskId"]

    after = run(task="T", output_schema=schema_b, schema_fp=fp_b)
    assert after["reuse"]["revision_id"] == changed["webTaskId"]
    assert after["reuse"]["updated"] is False

    # The key names the automation: another wording of the task reuses it unchanged.
    new_text = run(task="T but different", output_schema=schema_b, schema_fp=fp_b)
    assert new_text["reuse"]["used"] is True
    assert new_text["reuse"]["updated"] is False
    assert new_text["reuse"]["revision_id"] == changed["webTaskId"]


def _fail(code: str = "internal-error") -> Any:
    from webtask_frames.sandbox import Behaviour

    return Behaviour(outcome="failed", error_code=code)


def test_first_run_slower_and_dearer_than_reuse_runs() -> None:
    state, clock = _state(seed=3, start_latency_s=0)
    durations, costs = [], []
    for i in range(6):
        task_id = state.submit(StartRequest(task="T", reuse_key="k", parameters={"page": i}))
        clock.advance(100)
        task = state.get_task(task_id)
        assert task is not None
        assert task.started is not None
        assert task.finished is not None
        durations.append(task.finished - task.started)
        costs.append(task.ai_usd)
    lo, hi = SandboxConfig().duration_range_s
    assert lo <= durations[0] / 1.1 and durations[0] / 0.9 <= hi * 1.0001
    for d in durations[1:]:
        ratio = durations[0] / d
        assert 2 * 0.9 / 1.1 <= ratio <= 2 * 1.1 / 0.9  # about 2x, within the +-10% jitter
        assert costs[0] > 3 * max(costs[1:])
    reuse = durations[1:]
    assert max(reuse) / min(reuse) <= 1.1 / 0.9
    assert len(set(reuse)) > 1  # runs of one key vary


def test_durations_deterministic_by_seed() -> None:
    def durations(seed: int) -> list[float]:
        state, clock = _state(seed=seed)
        ids = [state.submit(StartRequest(task="T", reuse_key=f"k{i}")) for i in range(5)]
        clock.advance(100)
        tasks = [state.get_task(i) for i in ids]
        return [t.finished - t.started for t in tasks if t and t.finished and t.started]

    assert durations(1) == durations(1)
    assert durations(1) != durations(2)


def test_cost_ordering_by_model() -> None:
    state, clock = _state(seed=5, start_latency_s=0)
    costs = {}
    for model in ("haiku", "sonnet", "opus"):
        task_id = state.submit(StartRequest(task="T", reuse_key=f"k-{model}", model=model))
        clock.advance(100)
        costs[model] = state.get_task(task_id).ai_usd  # type: ignore[union-attr]
    assert 0 < costs["haiku"] < costs["sonnet"] < costs["opus"]


def test_cost_grows_with_result_size() -> None:
    state, clock = _state(seed=5, start_latency_s=0)
    small = state.submit(StartRequest(task="T", reuse_key="a", magic=_rows(10)))
    big = state.submit(StartRequest(task="T", reuse_key="b", magic=_rows(5000)))
    clock.advance(100)
    assert state.get_task(big).ai_usd > 10 * state.get_task(small).ai_usd  # type: ignore[union-attr]


def _rows(n: int) -> Any:
    from webtask_frames.sandbox import Behaviour

    return Behaviour(rows=n)


def test_stats_totals_cost_over_completed_tasks() -> None:
    state, clock = _state(duration_s=1, start_latency_s=0)
    ids = [state.submit(StartRequest(task=f"t{i}")) for i in range(5)]
    state.cancel(ids[0])
    clock.advance(2)
    stats = state.stats()
    completed = [state.get_task(i) for i in ids[1:]]
    assert stats["cost"]["ai_usd"] == pytest.approx(sum(t.ai_usd for t in completed if t))
    assert stats["cost"]["compute_hours"] == pytest.approx(4 / 3600, rel=1e-3)
    assert stats["status_counts"] == {"pending": 0, "started": 0, "completed": 4, "canceled": 1}


def test_outcome_failure_rates() -> None:
    state, clock = _state(
        seed=9,
        duration_s=1,
        cap=1000,
        outcome_failure_rate=0.3,
        failure_codes=("timeout", "rejected"),
        rate_limited_outcome_rate=0.1,
    )
    for i in range(1000):
        state.submit(StartRequest(task="T", parameters={"i": i}))
    clock.advance(10)
    codes = state.stats()["error_codes"]
    assert 60 <= codes["workspace-rate-limited"] <= 140
    others = codes.get("timeout", 0) + codes.get("rejected", 0)
    assert 0.3 * 900 * 0.75 <= others <= 0.3 * 900 * 1.25
    assert set(codes) == {"workspace-rate-limited", "timeout", "rejected"}


def test_outcomes_deterministic_regardless_of_order() -> None:
    def failed(order: list[int]) -> set[int]:
        state, clock = _state(seed=2, duration_s=1, cap=100, outcome_failure_rate=0.5)
        ids = {i: state.submit(StartRequest(task="T", parameters={"i": i})) for i in order}
        clock.advance(5)
        return {i for i, t in ids.items() if state.get_task(t).outcome == "failed"}  # type: ignore[union-attr]

    forward = failed(list(range(40)))
    assert forward == failed(list(reversed(range(40))))
    assert 5 < len(forward) < 35


def test_overrides_by_parameter_predicate_and_magic() -> None:
    overrides = (
        TaskOverride(parameters={"batch": "W21"}, outcome="failed", error_code="timeout"),
        TaskOverride(predicate=lambda r: r.model == "opus", duration_s=42),
        {"task_contains": "slow", "duration_s": 99},
    )
    state, clock = _state(overrides=overrides, start_latency_s=0)
    w21 = state.submit(StartRequest(task="T", parameters={"batch": "W21"}))
    s24 = state.submit(StartRequest(task="T", parameters={"batch": "S24"}))
    opus = state.submit(StartRequest(task="T", model="opus"))
    slow = state.submit(StartRequest(task="very slow"))
    magic = state.submit(
        StartRequest(
            task="T", parameters={"batch": "W21"}, magic=_behaviour(outcome="success", rows=3)
        )
    )
    clock.advance(1000)
    get = state.get_task
    assert get(w21).error_code == "timeout"  # type: ignore[union-attr]
    assert get(s24).outcome == "success"  # type: ignore[union-attr]
    assert get(opus).finished - get(opus).started == 42  # type: ignore[union-attr,operator]
    assert get(slow).finished - get(slow).started == 99  # type: ignore[union-attr,operator]
    assert get(magic).outcome == "success"  # magic wins over the matching override
    assert get(magic).rows == 3  # type: ignore[union-attr]


def _behaviour(**kw: Any) -> Any:
    from webtask_frames.sandbox import Behaviour

    return Behaviour(**kw)


def test_magic_parameter_is_stripped_from_data(api: Any) -> None:
    task_id = api.start_id(
        task="T", parameters={"batch": "S24", "_sandbox": {"rows": 4, "duration_s": 0.1}}
    )
    body = api.wait(task_id, step=0.5)
    rows = body["result"]["data"]
    assert len(rows) == 4
    assert all("_sandbox" not in row and row["batch"] == "S24" for row in rows)


def test_cancel_running_task_frees_its_slot() -> None:
    state, clock = _state(cap=1, duration_s=10, start_latency_s=0)
    first = state.submit(StartRequest(task="a"))
    second = state.submit(StartRequest(task="b"))
    clock.advance(3)
    assert state.cancel(first) is True
    assert state.poll(second)[0]["status"] == "started"  # type: ignore[index]
    assert state.get_task(second).granted == 3.0  # type: ignore[union-attr]
    assert state.cancel(first) is False
    assert state.cancel("wt_missing") is None


def test_reset_clears_everything(api: Any) -> None:
    api.start_id(task="x")
    assert api.control("POST", "/_sandbox/reset").json() == {"reset": True}
    stats = api.control("GET", "/_sandbox/stats").json()
    assert stats["tasks"] == 0
    assert stats["accepted_tasks"] == 0


def test_ten_thousand_tasks_scale() -> None:
    state, clock = _state(seed=1, cap=10)
    # Its speed is measured by tests/benchmarks/bench_sandbox.py, not asserted here.
    for i in range(10_000):
        state.submit(StartRequest(task="T", reuse_key=f"k{i % 50}", parameters={"i": i}))
    clock.advance(10_000_000)
    stats = state.stats()
    assert stats["status_counts"]["completed"] == 10_000
    assert stats["max_running"] == 10
    assert stats["max_running_per_key"] == 1


def test_time_scale_makes_time_pass_faster() -> None:
    clock = ManualClock()
    state = SandboxState(SandboxConfig(clock=clock, time_scale=0.01, duration_s=100))
    task_id = state.submit(StartRequest(task="T"))
    clock.advance(1.01)  # 101 virtual seconds
    envelope = state.poll(task_id)[0]  # type: ignore[index]
    assert envelope["status"] == "completed"


@pytest.mark.parametrize(
    "options",
    [
        {"cap": 0},
        {"cap_mode": "drop"},
        {"time_scale": 0},
        {"outcome_failure_rate": 1.5},
        {"failure_codes": ("nope",)},
        {"faults": {"result": {"503": 0.7, "500": 0.5}}},
        {"faults": {"poll": {"503": 0.1}}},
        {"overrides": [{"outcome": "exploded"}]},
        {"file_format": "csv"},
    ],
)
def test_invalid_config_raises(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SandboxConfig(**options)
