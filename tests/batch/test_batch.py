"""run_batch against the scripted fake: results, tables, discipline, inputs, polling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from batch.clock import AutoJumpClock
from batch.fakeapi import API_KEY, BASE_URL, WORKSPACE, Behaviour, FakeAPI

from webtask_frames import (
    AsyncClient,
    BatchResult,
    Client,
    InvalidInputError,
    RetryPolicy,
    run_batch,
    run_batch_async,
)

Run = Callable[..., BatchResult]

SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["name", "n"],
    },
}


def test_a_sweep_returns_records_and_one_task_row_per_item(fake: FakeAPI, run: Run) -> None:
    result = run("Scrape", {"batch": ["S24", "W24", "S23"], "page": [1, 2]}, reuse_key="yc_{batch}")
    assert result.ok and result.stopped_reason is None
    tasks = result.tasks
    assert list(tasks["_item"]) == list(range(6))
    assert list(tasks["batch"]) == ["S24", "S24", "W24", "W24", "S23", "S23"]
    assert list(tasks["page"]) == [1, 2, 1, 2, 1, 2]
    assert set(tasks["status"]) == {"succeeded"}
    assert list(tasks["reuse_key"]) == ["yc_S24"] * 2 + ["yc_W24"] * 2 + ["yc_S23"] * 2
    assert (tasks["attempts"] == 1).all() and (tasks["n_records"] == 2).all()
    assert tasks["webtask_id"].notna().all() and tasks["duration_s"].notna().all()
    assert list(tasks["reuse_used"]) == [False, True] * 3  # first run of a key builds it
    assert result.cost_usd == pytest.approx(0.06)
    assert tasks["cost_compute_hours"].sum() == pytest.approx(0.006)
    for column in ("created_at", "started_at", "completed_at", "result_type", "revision_id"):
        assert tasks[column].notna().all(), column
    records = result.records
    assert len(records) == 12 and result.n_records == 12
    assert {"name", "n", "batch", "page", "_webtask_id", "_item"} <= set(records.columns)
    assert all(isinstance(dtype, pd.ArrowDtype) for dtype in records.dtypes)
    assert isinstance(result.to_arrow(), pa.Table) and isinstance(result.tasks_arrow(), pa.Table)
    assert sorted(set(records["_item"])) == list(range(6))
    first = records[records["_item"] == 3]
    assert set(first["batch"]) == {"W24"} and set(first["page"]) == {2}
    assert result.failed.empty and result.ambiguous.empty
    assert result.requests["start"] == 6
    assert fake.violations == []


def test_repr_summary_and_html(run: Run) -> None:
    result = run("Scrape", {"batch": ["S24", "W24"]}, reuse_key="yc")
    text = repr(result)
    assert text.startswith("BatchResult(items=2, succeeded=2") and "cost_usd=0.02" in text
    assert "2 succeeded" in result.summary()
    html = result._repr_html_()
    assert "<table>" in html and "reuse-key chains" in html


def test_concurrency_cap_and_one_running_task_per_key(fake: FakeAPI, run: Run) -> None:
    fake.cap = 4
    fake.script = lambda body, occ: Behaviour(duration=0.03)
    grid = [{"i": i, "src": f"s{i % 5}"} for i in range(25)] + [{"i": 100 + i} for i in range(8)]
    result = run("T", grid, reuse_key=lambda p: p.get("src"), max_concurrency=4)
    assert result.ok
    assert fake.violations == []
    assert fake.max_running == 4


def test_default_concurrency_is_the_clients(fake: FakeAPI, run: Run) -> None:
    fake.cap = 3
    fake.script = lambda body, occ: Behaviour(duration=0.02)
    result = run("T", {"i": list(range(12))}, client_kwargs={"max_concurrency": 3})
    assert result.ok and fake.violations == [] and fake.max_running == 3


def test_sync_run_batch_works_inside_a_running_event_loop(
    fake: FakeAPI, clock: AutoJumpClock
) -> None:
    client = Client(
        api_key=API_KEY,
        workspace_id=WORKSPACE,
        base_url=BASE_URL,
        transport=fake.transport(),
        poll_min_s=0.005,
        poll_max_s=0.05,
    )
    client.async_client.clock = clock  # the fake's tasks run on this clock

    async def notebook_cell() -> BatchResult:  # Jupyter runs cells inside a loop
        return run_batch("T", {"i": [1, 2, 3]}, client=client, progress=False)

    with client:
        result = asyncio.run(notebook_cell())
    assert result.ok and len(result.records) == 6


def test_async_client_given_is_not_closed(make_client: Callable[..., AsyncClient]) -> None:
    client = make_client()

    async def go() -> None:
        await run_batch_async("T", {"i": [1]}, client=client, progress=False)
        status = await client.result("wt_1")  # still usable
        assert status.terminal
        await client.aclose()

    asyncio.run(go())


def test_dataframe_grid_and_list_grid(run: Run) -> None:
    df = pd.DataFrame({"batch": ["S24", "W24"], "n": [1, 2]})
    result = run("T", df, reuse_key="k_{batch}")
    assert result.ok and list(result.tasks["n"]) == [1, 2]
    result = run("T", [{"q": "a"}, {"q": "b", "extra": True}])
    assert result.ok and result.tasks_arrow()["extra"].to_pylist() == [None, True]


def test_a_parameter_named_like_a_status_column_keeps_both(run: Run) -> None:
    result = run("T", {"status": ["x", "y"]})
    assert list(result.tasks["param_status"]) == ["x", "y"]
    assert list(result.tasks["status"]) == ["succeeded", "succeeded"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"grid": {}}, "grid"),
        ({"reuse_key": "yc_{missing}"}, "reuse_key"),
        ({"grid": [{"x": float("nan")}]}, "parameters"),
        ({"output_schema": {"type": 7}}, "output_schema"),
        ({"model": "gpt"}, "model"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_cost_usd": -1}, "max_cost_usd"),
        ({"max_cost_usd": True}, "max_cost_usd"),
        ({"validate": "maybe"}, "validate"),
        ({"retry": {"max_attempts": 2}}, "retry"),
        ({"client": "http://x"}, "client"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    fake: FakeAPI, make_client: Callable[..., AsyncClient], kwargs: dict[str, Any], field: str
) -> None:
    grid = kwargs.pop("grid", {"batch": ["S24"]})
    client = kwargs.pop("client", make_client())
    with pytest.raises(InvalidInputError) as info:
        run_batch("T", grid, client=client, progress=False, **kwargs)
    assert info.value.field == field
    assert fake.start_calls == 0 and fake.result_calls == 0


def test_validate_flag_keeps_invalid_rows_marked(fake: FakeAPI, run: Run) -> None:
    def script(body: dict[str, Any], occ: int) -> Behaviour:
        bad = body["parameters"]["i"] == 1
        return Behaviour(data=[{"name": "a", "n": 1}, {"name": "b", "n": "x" if bad else 2}])

    fake.script = script
    result = run("T", {"i": [0, 1]}, output_schema=SCHEMA)
    assert result.ok
    assert list(result.tasks["n_invalid"]) == [0, 1]
    assert len(result.records) == 3
    assert "_valid" not in result.records.columns
    assert result.invalid["_item"].tolist() == [1]
    assert "'x' is not of type 'integer'" in result.invalid["_errors"].iloc[0]
    assert [e[0] for e in result.validation_errors] == [1]


def test_validate_raise_fails_only_that_item(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: Behaviour(
        data=[{"name": "b", "n": "x" if body["parameters"]["i"] == 1 else 2}]
    )
    result = run("T", {"i": [0, 1, 2]}, output_schema=SCHEMA, validate="raise")
    assert list(result.tasks["status"]) == ["succeeded", "failed", "succeeded"]
    assert result.tasks["error_code"][1] == "schema-validation"
    assert len(result.records) == 2


@pytest.mark.parametrize("clock", ["real"], indirect=True)
def test_polling_is_adaptive(fake: FakeAPI, run: Run) -> None:
    # 4 keys, runs of 0.12 s (first 0.24 s). Polling every min..max (5..50 ms) from the
    # start would cost ~7 calls per warm run; aiming at the predicted finish costs ~2-3.
    def script(body: dict[str, Any], occ: int) -> Behaviour:
        key = body["reuseKey"]
        first = all(t.key != key for t in fake.tasks.values())
        return Behaviour(duration=0.24 if first else 0.12)

    fake.script = script
    grid = [{"i": i, "k": f"k{i % 4}"} for i in range(40)]
    result = run("T", grid, reuse_key="{k}", max_concurrency=4)
    assert result.ok
    print("result calls per task:", fake.result_calls / 40)
    assert fake.result_calls / 40 <= 4.0, fake.result_calls


def test_transient_poll_errors_are_ridden_out(fake: FakeAPI, run: Run) -> None:
    fake.result_fault = lambda task_id, n: httpx.Response(503) if n % 3 == 0 else None
    result = run("T", {"i": list(range(6))})
    assert result.ok


def test_progress_bar_reports_done_and_spend(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    run("T", {"i": [1, 2]}, progress=True)
    err = capsys.readouterr().err
    assert "web tasks" in err and "2/2" in err and "spent=$0.02" in err


def test_logs_go_to_the_package_logger(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="webtask_frames"):
        run("T", {"i": [1]})
    assert any("BatchResult(" in r.getMessage() for r in caplog.records)
    assert all(r.name.startswith("webtask_frames") or r.name == "httpx" for r in caplog.records)


@pytest.mark.parametrize("clock", ["real"], indirect=True)
def test_user_cancel_leaves_tasks_in_flight_and_logs(
    fake: FakeAPI, make_client: Callable[..., AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    fake.script = lambda body, occ: Behaviour(duration=5.0)
    client = make_client()

    async def go() -> None:
        async with client:
            await asyncio.wait_for(
                run_batch_async("T", {"i": [1, 2]}, client=client, progress=False), 0.2
            )

    with caplog.at_level(logging.WARNING, logger="webtask_frames"), pytest.raises(TimeoutError):
        asyncio.run(go())
    assert fake.accepted == 2
    assert any("keep running server-side" in r.getMessage() for r in caplog.records)


def test_retry_policy_given_to_run_batch_applies(fake: FakeAPI, run: Run) -> None:
    fake.script = lambda body, occ: Behaviour(outcome="failed", code="internal-error")
    result = run("T", {"i": [1]}, retry=RetryPolicy(max_failed_resubmits=3))
    assert result.tasks["attempts"][0] == 4


def test_items_without_a_key_show_the_key_the_server_generated(run: Run) -> None:
    result = run("T", {"i": [1, 2]})
    assert all(key.startswith("wtr_") for key in result.tasks["reuse_key"])
    assert result.plan.chains == {None: [0, 1]}
