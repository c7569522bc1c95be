"""Seeded fault injection: determinism, rates, per-endpoint selection, wire behaviour."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from webtask_frames.sandbox import FaultRates, Sandbox, SandboxConfig
from webtask_frames.sandbox import _faults as sandbox_faults
from webtask_frames.sandbox._faults import FaultPlan


def _sequence(seed: int, endpoint: str = "result", n: int = 300) -> list[str | None]:
    plan = FaultPlan(
        SandboxConfig(seed=seed, faults=FaultRates(http_429=0.1, http_503=0.1, drop=0.1))
    )
    return [plan.draw(endpoint).kind for _ in range(n)]


def test_faults_deterministic_by_seed() -> None:
    assert _sequence(1) == _sequence(1)
    assert _sequence(1) != _sequence(2)
    assert _sequence(1, "start") != _sequence(1, "result")  # endpoints draw independently


def test_fault_rates_are_hit_roughly() -> None:
    rates = FaultRates(http_429=0.05, http_500=0.1, http_502=0.05, http_503=0.1, drop=0.2)
    plan = FaultPlan(SandboxConfig(seed=3, faults={"start": rates}))
    n = 4000
    kinds = [plan.draw("start").kind for _ in range(n)]
    for kind, rate in [
        ("http_429", 0.05),
        ("http_500", 0.1),
        ("http_502", 0.05),
        ("http_503", 0.1),
        ("drop", 0.2),
    ]:
        assert abs(kinds.count(kind) / n - rate) < 0.025, kind
    assert abs(kinds.count(None) / n - 0.5) < 0.03


def test_faults_only_on_selected_endpoint(make_api: Any) -> None:
    api = make_api(faults={"result": {"503": 1.0}})
    task_id = api.start_id(task="x")  # start is unaffected
    response = api.result_response(task_id)
    assert response.status_code == 503
    stats = api.sb.stats()
    assert stats["faults"] == {"start": {}, "result": {"http_503": 1}, "download": {}}
    assert stats["faults_total"] == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_api_fault_bodies(make_api: Any, status: int) -> None:
    api = make_api(faults={"result": {str(status): 1.0}}, retry_after_s=0)
    response = api.result_response("wt_any")
    assert response.status_code == status
    body = response.json()
    assert body["category"] == "system"
    assert body["retirable"] is True
    assert body["correlationId"] == response.headers["x-correlation-id"]
    assert body["code"] in {"rate-limited", "internal-server-error", "service-unavailable"}
    if status in (429, 503):
        assert response.headers["retry-after"] == "0"


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_faults_are_html(make_api: Any, status: int) -> None:
    api = make_api(faults={"result": {str(status): 1.0}})
    response = api.result_response("wt_any")
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html"
    with pytest.raises(ValueError, match="Expecting value"):
        response.json()


def test_drop_in_process_raises_remote_protocol_error(make_api: Any) -> None:
    api = make_api(faults={"result": {"drop": 1.0}})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        api.result_response("wt_any")


def test_start_faults_before_and_after_accept(make_api: Any) -> None:
    before = make_api(faults={"start": {"500": 1.0}}, fault_start_after_accept=0.0)
    assert before.start(task="x").status_code == 500
    assert before.sb.stats()["accepted_tasks"] == 0

    after = make_api(faults={"start": {"502": 1.0}}, fault_start_after_accept=1.0)
    assert after.start(task="x").status_code == 502
    stats = after.sb.stats()
    assert stats["accepted_tasks"] == 1  # created, but the client never saw the id
    assert stats["faults"]["start"] == {"http_502_after_accept": 1}


def test_blind_resend_after_lost_response_double_bills(make_api: Any) -> None:
    api = make_api(
        seed=1, faults={"start": {"drop": 0.5}}, fault_start_after_accept=1.0, duration_s=1
    )
    body = {"task": "List", "parameters": {"batch": "S24"}, "reuseKey": "yc"}
    for _ in range(20):  # a naive client: resend until it gets an answer
        try:
            response = api.start(body)
        except httpx.RemoteProtocolError:
            continue
        assert response.status_code == 200
        break
    api.clock.advance(60)
    stats = api.sb.stats()
    assert stats["faults"]["start"].get("drop_after_accept", 0) >= 1
    assert stats["accepted_tasks"] == 1 + stats["faults"]["start"]["drop_after_accept"]
    assert stats["duplicate_submissions"] == stats["accepted_tasks"] - 1
    assert stats["outcome_counts"]["success"] == stats["accepted_tasks"]  # each one billed


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_on_start_are_never_accepted(make_api: Any, status: int) -> None:
    api = make_api(faults={"start": {str(status): 1.0}}, fault_start_after_accept=1.0)
    for _ in range(5):
        assert api.start(task="x").status_code == status
    assert api.sb.stats()["accepted_tasks"] == 0


def test_slow_fault_delays_response(make_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The delay the middleware asks for, not a stopwatch: tests never time the wall clock.
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(sandbox_faults.asyncio, "sleep", recording_sleep)
    api = make_api(faults={"result": {"slow": 1.0}}, slow_delay_s=0.2)
    api.result_response("wt_any")
    assert 0.2 in slept
    assert api.sb.stats()["faults"]["result"] == {"slow": 1}


def test_faults_over_real_sockets() -> None:
    """Under uvicorn a drop is a real closed connection; the server keeps serving."""
    faults = {"result": {"drop": 0.4, "502": 0.2}, "start": {"drop": 1.0}}
    with Sandbox(seed=5, faults=faults, fault_start_after_accept=1.0, time_scale=0.01) as sb:
        with httpx.Client(base_url=sb.base_url, headers={"x-api-key": sb.api_key}) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(f"/{sb.workspace_id}/web-tasks/start", json={"task": "t"})
            assert sb.stats()["accepted_tasks"] == 1
            task_id = sb.state.task_ids()[0]
            seen: list[Any] = []
            for _ in range(40):
                try:
                    seen.append(
                        client.get(f"/{sb.workspace_id}/web-tasks/{task_id}/result").status_code
                    )
                except httpx.RemoteProtocolError:
                    seen.append("drop")
        stats = sb.stats()
    assert {"drop", 502, 200} <= set(seen)
    assert seen.count("drop") == stats["faults"]["result"]["drop"]
    assert seen.count(502) == stats["faults"]["result"]["http_502"]
    assert stats["result_calls"] == 40


def test_same_seed_same_faults_over_http(make_api: Any) -> None:
    def run() -> list[int]:
        api = make_api(seed=8, faults={"result": {"503": 0.3, "429": 0.2}})
        return [api.result_response("wt_x").status_code for _ in range(50)]

    first = run()
    assert first == run()
    assert {404, 429, 503} <= set(first)
