"""Outcome rules: resubmits, the auth/credits stop, budget, ambiguous submissions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from batch.clock import AutoJumpClock
from batch.fakeapi import AcceptedThenDropped, Behaviour, FakeAPI

from webtask_frames import BatchResult, RetryPolicy

Run = Callable[..., BatchResult]


def by_item(
    rules: dict[int, Callable[[int], Behaviour]],
) -> Callable[[dict[str, Any], int], Behaviour]:
    """A script: item ``i``'s behaviour from ``rules[i](occurrence)``, else success."""

    def script(body: dict[str, Any], occ: int) -> Behaviour:
        rule = rules.get(body["parameters"]["i"])
        return rule(occ) if rule else Behaviour()

    return script


def failed(code: str, **kw: Any) -> Behaviour:
    return Behaviour(outcome="failed", code=code, **kw)


def test_rate_limited_outcomes_are_resubmitted_and_not_failures(
    fake: FakeAPI, run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script = by_item(
        {
            i: (lambda occ: failed("workspace-rate-limited", cost=0.0) if occ < 2 else Behaviour())
            for i in (0, 3)
        }
    )
    with caplog.at_level(logging.INFO, logger="webtask_frames"):
        result = run("T", {"i": list(range(6))})
    assert result.ok
    assert list(result.tasks["attempts"]) == [3, 1, 1, 3, 1, 1]
    assert any("concurrency now" in r.getMessage() for r in caplog.records)
    assert fake.accepted == 10


def test_internal_error_is_resubmitted_once_by_default(fake: FakeAPI, run: Run) -> None:
    fake.script = by_item(
        {
            0: lambda occ: failed("internal-error") if occ == 0 else Behaviour(),
            1: lambda occ: failed("internal-error"),
        }
    )
    result = run("T", {"i": [0, 1, 2]})
    tasks = result.tasks
    assert list(tasks["status"]) == ["succeeded", "failed", "succeeded"]
    assert list(tasks["attempts"]) == [2, 2, 1]
    assert tasks["error_code"][1] == "internal-error"
    assert result.cost_usd == pytest.approx(0.05)  # failed attempts cost money too
    assert list(result.failed["_item"]) == [1]


def test_internal_error_resubmits_can_be_turned_off(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: failed("internal-error")
    result = run("T", {"i": [0]}, retry=RetryPolicy(max_failed_resubmits=0))
    assert result.tasks["attempts"][0] == 1 and result.tasks["status"][0] == "failed"


@pytest.mark.parametrize("code", ["timeout", "rejected"])
def test_timeout_and_rejected_are_final(fake: FakeAPI, run: Run, code: str) -> None:
    fake.script = by_item({1: lambda occ: failed(code)})
    result = run("T", {"i": [0, 1, 2]})
    assert list(result.tasks["status"]) == ["succeeded", "failed", "succeeded"]
    assert result.tasks["attempts"][1] == 1 and result.tasks["error_code"][1] == code
    assert result.tasks["error_message"][1] == f"{code} happened"
    assert fake.accepted == 3


def test_canceled_tasks_are_final(fake: FakeAPI, run: Run) -> None:
    fake.script = by_item({0: lambda occ: Behaviour(outcome="canceled")})
    result = run("T", {"i": [0, 1]})
    assert list(result.tasks["status"]) == ["failed", "succeeded"]
    assert result.tasks["error_code"][0] == "canceled"


@pytest.mark.parametrize("code", ["unauthenticated", "no-ai-credits-left"])
def test_fatal_outcomes_stop_submissions_and_finish_in_flight(
    fake: FakeAPI, run: Run, caplog: pytest.LogCaptureFixture, code: str
) -> None:
    fake.script = by_item(
        {
            0: lambda occ: failed(code, duration=0.01),
            1: lambda occ: Behaviour(duration=0.15),
            2: lambda occ: Behaviour(duration=0.15),
        }
    )
    with caplog.at_level(logging.ERROR, logger="webtask_frames"):
        result = run("T", {"i": list(range(10))}, max_concurrency=3)
    tasks = result.tasks
    assert result.stopped_reason == code
    assert code in (result.stopped_message or "")
    assert list(tasks["status"][:3]) == ["failed", "succeeded", "succeeded"]
    assert set(tasks["status"][3:]) == {"skipped"}
    assert set(tasks["skipped_reason"][3:]) == {code}
    assert fake.accepted == 3
    assert any("stopped submitting" in r.getMessage() for r in caplog.records)
    assert "STOPPED" in result.summary()


def test_http_401_on_start_stops_at_once(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: Behaviour(duration=0.1)
    fake.start_fault = lambda body, n: (
        httpx.Response(401, json={"code": "unauthorized", "message": "key revoked"})
        if n > 2
        else None
    )
    result = run("T", {"i": list(range(8))}, max_concurrency=3)
    tasks = result.tasks
    assert result.stopped_reason == "unauthenticated"
    assert list(tasks["status"][:2]) == ["succeeded", "succeeded"]  # in flight: finished
    assert set(tasks["status"][2:]) == {"skipped"}
    assert set(tasks["skipped_reason"][2:]) == {"unauthenticated"}
    assert fake.start_calls == 3  # not one more after the 401


def test_a_bad_request_fails_only_that_item(fake: FakeAPI, run: Run) -> None:
    fake.start_fault = lambda body, n: (
        httpx.Response(400, json={"code": "bad-request", "message": "no"})
        if body["parameters"]["i"] == 1
        else None
    )
    result = run("T", {"i": [0, 1, 2]})
    assert list(result.tasks["status"]) == ["succeeded", "failed", "succeeded"]
    assert result.tasks["error_code"][1] == "bad-request"


def test_budget_stops_new_submissions(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: Behaviour(cost=0.10, duration=0.03)
    result = run("T", {"i": list(range(10))}, max_cost_usd=0.35, max_concurrency=5)
    tasks = result.tasks
    assert result.stopped_reason == "budget"
    assert result.cost_usd <= 0.35 + 1e-9
    assert (tasks["status"] == "succeeded").sum() == 3
    assert set(tasks.loc[tasks["status"] != "succeeded", "skipped_reason"]) == {"budget"}
    assert fake.accepted == 3


def test_budget_probes_one_task_while_the_cost_is_unknown(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: Behaviour(cost=0.10, duration=0.03)
    run("T", {"i": list(range(6))}, max_cost_usd=10.0, max_concurrency=5)
    first = min(fake.tasks.values(), key=lambda t: t.created)
    second_created = sorted(t.created for t in fake.tasks.values())[1]
    assert second_created >= first.finish  # nothing else went out before a cost was seen


def test_zero_budget_sends_nothing(fake: FakeAPI, run: Run) -> None:
    result = run("T", {"i": [1, 2]}, max_cost_usd=0)
    assert result.stopped_reason == "budget" and fake.start_calls == 0
    assert set(result.tasks["skipped_reason"]) == {"budget"}


def test_an_ambiguous_submission_is_reported_not_resent(
    fake: FakeAPI, run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    fake.start_fault = lambda body, n: (
        AcceptedThenDropped("Server disconnected without sending a response.")
        if body["parameters"]["i"] == 1
        else None
    )
    with caplog.at_level(logging.WARNING, logger="webtask_frames"):
        result = run("T", {"i": [0, 1, 2]})
    tasks = result.tasks
    assert list(tasks["status"]) == ["succeeded", "ambiguous", "succeeded"]
    assert tasks["ambiguous_attempts"][1] == 1
    assert list(result.ambiguous["_item"]) == [1]
    assert fake.accepted == 3 and fake.start_calls == 3  # the server has it; no resend
    assert any("ambiguous submission" in r.getMessage() for r in caplog.records)


def test_a_500_on_start_is_ambiguous(fake: FakeAPI, run: Run) -> None:
    fake.start_fault = lambda body, n: httpx.Response(500) if n == 1 else None
    result = run("T", {"i": [0]})
    assert result.tasks["status"][0] == "ambiguous" and fake.start_calls == 1


def test_429_and_503_on_start_are_retried_safely(fake: FakeAPI, run: Run) -> None:
    fake.start_fault = lambda body, n: (
        httpx.Response(429, headers={"retry-after": "0"}) if n % 2 else None
    )
    result = run("T", {"i": [0, 1, 2]})
    assert result.ok and fake.accepted == 3


def test_start_that_never_connects_is_requeued_then_failed(fake: FakeAPI, run: Run) -> None:
    fake.start_fault = lambda body, n: httpx.ConnectError("refused")
    result = run(
        "T",
        {"i": [0]},
        client_kwargs={
            "retry": RetryPolicy(max_attempts=2, backoff_base_s=0.001, backoff_cap_s=0.001)
        },
    )
    assert result.tasks["status"][0] == "failed"
    assert result.tasks["error_code"][0] == "transport"
    assert fake.accepted == 0 and fake.start_calls == 8  # (1 + 3 requeues) x 2 attempts


def test_an_ambiguous_submission_keeps_its_key_for_a_while(
    fake: FakeAPI, run: Run, clock: AutoJumpClock
) -> None:
    sent: dict[int, float] = {}

    def fault(body: dict[str, Any], n: int) -> Exception | None:
        sent[n] = clock.now()  # virtual seconds: exact, whatever the machine's load
        return AcceptedThenDropped("dropped") if n == 1 else None

    fake.start_fault = fault
    result = run("T", {"i": [0, 1]}, reuse_key="same", client_kwargs={"poll_max_s": 0.2})
    assert list(result.tasks["status"]) == ["ambiguous", "succeeded"]
    assert sent[2] - sent[1] >= 0.15  # the possibly-running task may hold the key


def test_no_rows_still_gives_typed_columns(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: failed("rejected")
    schema = {
        "type": "array",
        "items": {"type": "object", "properties": {"n": {"type": "integer"}}},
    }
    result = run("T", {"batch": ["S24", "W24"]}, output_schema=schema)
    table = result.to_arrow()
    assert table.num_rows == 0
    assert table.schema.names == ["n", "batch", "_item", "_item_key", "_webtask_id"]
    assert str(table.schema.field("n").type) == "int64"
    assert len(result.failed) == 2 and not result.ok


def test_http_401_while_polling_stops_and_leaves_the_task_in_flight(
    fake: FakeAPI, run: Run, tmp_path: Path
) -> None:
    fake.script = lambda body, occ: Behaviour(duration=0.05)
    fake.result_fault = lambda task_id, n: (
        httpx.Response(401, json={"code": "unauthorized", "message": "revoked"})
        if task_id == "wt_1"
        else None
    )
    result = run("T", {"i": list(range(6))}, max_concurrency=2, ledger=tmp_path / "l.db")
    tasks = result.tasks
    assert result.stopped_reason == "unauthenticated"
    assert tasks["status"][0] == "in-flight" and tasks["webtask_id"][0] == "wt_1"
    assert tasks["status"][1] == "succeeded"
    assert set(tasks["status"][2:]) == {"skipped"}
    fake.result_fault = None  # the key is fixed: a re-run re-attaches, never resubmits wt_1
    again = run("T", {"i": list(range(6))}, ledger=tmp_path / "l.db")
    assert again.ok and again.tasks["webtask_id"][0] == "wt_1" and fake.accepted == 6


@pytest.mark.parametrize("status", [501, 507, 524])
def test_any_5xx_but_503_on_start_is_ambiguous(fake: FakeAPI, run: Run, status: int) -> None:
    """A CDN's 524 ("timeout occurred") may come after the origin accepted the task."""
    fake.start_fault = lambda body, n: (
        httpx.Response(status, json={"retirable": True}) if n == 1 else None
    )
    result = run("T", {"i": [0]})
    assert result.tasks["status"][0] == "ambiguous"
    assert fake.start_calls == 1


def test_a_task_given_up_on_keeps_its_key_and_slot(fake: FakeAPI, run: Run, tmp_path: Path) -> None:
    """Polling wt_1 keeps failing: the task may still run, so its key stays reserved."""
    fake.result_fault = lambda task_id, n: httpx.Response(500) if task_id == "wt_1" else None
    result = run(
        "T",
        {"i": [0, 1, 2]},
        reuse_key=lambda p: "same" if p["i"] < 2 else "other",
        ledger=tmp_path / "l.db",
        client_kwargs={"retry": RetryPolicy(max_attempts=1)},
    )
    tasks = result.tasks
    assert list(tasks["status"]) == ["in-flight", "skipped", "succeeded"]
    assert tasks["skipped_reason"][1] == "reuse-key-busy"
    assert fake.start_calls == 2  # item 1 never ran beside the possibly-live wt_1
    assert not fake.violations
    fake.result_fault = None  # the service answers again: re-attach, then run item 1
    again = run(
        "T",
        {"i": [0, 1, 2]},
        reuse_key=lambda p: "same" if p["i"] < 2 else "other",
        ledger=tmp_path / "l.db",
    )
    assert again.ok
    assert again.tasks["webtask_id"][0] == "wt_1"
    assert fake.accepted == 3


def test_an_ambiguous_submission_is_charged_to_the_budget(fake: FakeAPI, run: Run) -> None:
    """It may run and bill, so its estimated cost counts against max_cost_usd."""
    fake.script = lambda body, occ: Behaviour(cost=0.01)
    fake.start_fault = lambda body, n: httpx.Response(500) if n == 2 else None
    result = run("T", {"i": [0, 1, 2]}, max_cost_usd=0.025, max_concurrency=1)
    assert list(result.tasks["status"]) == ["succeeded", "ambiguous", "skipped"]
    assert result.tasks["skipped_reason"][2] == "budget"


def test_unknown_costs_are_charged_at_the_prior_and_the_budget_still_stops(
    fake: FakeAPI, run: Run
) -> None:
    """No aiUsd ever: each task counts at the model's prior, so max_cost_usd still ends it."""
    fake.script = lambda body, occ: Behaviour(ai_usd=None)
    result = run("T", {"i": list(range(20))}, reuse_key="k", max_cost_usd=0.2)
    # haiku's prior: $0.08 for the key's first run, $0.04 a reuse run: 0.08 + 3 x 0.04
    assert result.stopped_reason == "budget"
    assert fake.accepted == 4
    assert set(result.tasks["skipped_reason"].dropna()) == {"budget"}
    assert fake.violations == []


def test_a_compute_unit_not_understood_is_kept_raw_in_the_tasks_table(
    fake: FakeAPI, run: Run
) -> None:
    fake.script = lambda body, occ: Behaviour(compute={"unit": "fortnights", "amount": 3})
    with pytest.warns(RuntimeWarning, match="fortnights"):
        result = run("T", {"i": [0, 1]})
    assert result.ok
    assert list(result.tasks["cost_compute_amount"]) == [3.0, 3.0]
    assert list(result.tasks["cost_compute_unit"]) == ["fortnights", "fortnights"]
