"""Parsing the reference examples and the wire timestamps."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from webtask_frames import (
    Canceled,
    Completed,
    Cost,
    FileResult,
    InlineResult,
    Pending,
    ProtocolError,
    Started,
    UnknownStatus,
)
from webtask_frames._tables.records import date_or_none, timestamp_or_none
from webtask_frames._wire.models import parse_status, parse_timestamp_strict, status_summary

# The response examples of the service overview, kept with the tests (see contract/README).
EXAMPLES = Path(__file__).resolve().parent / "contract" / "web-tasks-overview.examples.json"


def reference_examples() -> dict[str, dict[str, object]]:
    """The JSON examples embedded in the service overview, by their labels."""
    examples: dict[str, dict[str, object]] = json.loads(EXAMPLES.read_text())
    return examples


def test_overview_examples_parse() -> None:
    examples = reference_examples()
    inline = parse_status(examples["Successful inline response"] | {"createdAt": None})
    assert isinstance(inline, Completed)
    assert isinstance(inline.result, InlineResult)
    assert inline.cost.compute_hours == 0.023
    file = parse_status(examples["Successful file response"])
    assert isinstance(file, Completed)
    assert isinstance(file.result, FileResult)
    assert file.result.size_bytes == 204800
    assert file.result.web_task_id == "wt_123"
    assert "signature" not in repr(file)
    failed = parse_status(examples["Failed response"])
    assert isinstance(failed, Completed)
    assert not failed.succeeded
    assert failed.error is not None
    assert failed.error.code == "rejected"


def test_openapi_examples_parse() -> None:
    pending = parse_status(
        {"webTaskId": "wt_123", "status": "pending", "createdAt": "2026-05-19T12:00:00.000Z"}
    )
    assert isinstance(pending, Pending)
    started = parse_status(
        {
            "webTaskId": "wt_1",
            "status": "started",
            "createdAt": "2026-05-19T12:00:00.000Z",
            "startedAt": "2026-05-19T12:00:05.000Z",
        }
    )
    assert isinstance(started, Started)
    canceled = parse_status(
        {
            "webTaskId": "wt_1",
            "status": "canceled",
            "createdAt": "2026-05-19T12:00:00.000Z",
            "startedAt": None,
            "completedAt": "2026-05-19T12:00:30.000Z",
        }
    )
    assert isinstance(canceled, Canceled)
    assert canceled.terminal


@pytest.mark.parametrize(
    "body", [[], {"status": "completed"}, {"webTaskId": "wt_1"}, {"webTaskId": "wt_1", "status": 3}]
)
def test_unknown_shapes_are_protocol_errors(body: object) -> None:
    with pytest.raises(ProtocolError):
        parse_status(body)


def test_to_wire_redacts_signed_urls() -> None:
    status = parse_status(reference_examples()["Successful file response"])
    wire = status.to_wire()
    assert "signature" not in json.dumps(wire)
    assert parse_status(wire).web_task_id == "wt_123"
    assert "signature" in json.dumps(status.to_wire(redact=False))


def test_wire_timestamps_are_strict_data_timestamps_tolerant() -> None:
    """Two contracts, two names: the wire raises, the data conversion gives None."""
    assert parse_timestamp_strict(None) is None
    naive = parse_timestamp_strict("2026-05-19T12:00:00")
    assert naive is not None and naive.tzinfo is not None
    with pytest.raises(ProtocolError, match="unparseable"):
        parse_timestamp_strict("yesterday")
    with pytest.raises(ProtocolError):
        parse_timestamp_strict(1716120000)
    assert timestamp_or_none("yesterday") is None
    assert timestamp_or_none(1716120000) is None
    shifted = timestamp_or_none("2026-05-19T12:00:00+02:00")
    assert shifted is not None and (shifted.hour, shifted.utcoffset()) == (10, timedelta(0))
    assert date_or_none("2026-05-19") == date(2026, 5, 19)
    assert date_or_none("19/05/2026") is None


def _completed(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "webTaskId": "wt_1",
        "status": "completed",
        "outcome": "success",
        "createdAt": "2026-05-19T12:00:00Z",
        "startedAt": "2026-05-19T12:00:01Z",
        "completedAt": "2026-05-19T12:00:31Z",
        "cost": {"aiUsd": 0.1, "compute": {"unit": "hours", "amount": 0.01}},
        "result": {"type": "inline", "data": [{"n": 1}]},
    }
    body.update(fields)
    return body


@pytest.mark.parametrize(
    ("unit", "amount", "hours"),
    [
        ("hours", 0.5, 0.5),
        ("Hours", 2, 2.0),
        ("minutes", 30, 0.5),
        ("min", 6, 0.1),
        ("seconds", 36, 0.01),
        ("s", 7200, 2.0),
        ("ms", 3_600_000, 1.0),
        ("milliseconds", 1_800_000, 0.5),
        ("days", 1, 24.0),
    ],
)
def test_compute_units_are_converted_to_hours(unit: str, amount: float, hours: float) -> None:
    cost = Cost.from_wire({"aiUsd": 0.1, "compute": {"unit": unit, "amount": amount}})
    assert cost.compute_hours == pytest.approx(hours)
    assert (cost.compute_amount, cost.compute_unit) == (amount, unit)
    assert "compute" not in cost.extra


def test_unknown_compute_unit_is_kept_with_a_warning() -> None:
    raw = {"unit": "fortnights", "amount": 3}
    with pytest.warns(RuntimeWarning, match="fortnights"):
        status = parse_status(_completed(cost={"aiUsd": 0.2, "compute": raw}))
    assert isinstance(status, Completed)
    cost = status.cost
    assert cost.ai_usd == 0.2 and cost.compute_hours is None
    assert (cost.compute_amount, cost.compute_unit) == (3, "fortnights")
    assert cost.extra["compute"] == raw
    summary = status_summary(status)["cost"]
    assert summary == {
        "ai_usd": 0.2,
        "compute_hours": None,
        "compute_amount": 3,
        "compute_unit": "fortnights",
    }


@pytest.mark.parametrize("bad", [-1, "0.3", float("nan"), float("inf"), True, {"usd": 1}])
def test_unusable_ai_usd_is_unknown_with_raw_value_kept(bad: object) -> None:
    with pytest.warns(RuntimeWarning, match="aiUsd"):
        cost = Cost.from_wire({"aiUsd": bad, "compute": {"unit": "hours", "amount": 0.1}})
    assert cost.ai_usd is None
    assert cost.extra["aiUsd"] is bad
    assert cost.compute_hours == 0.1


def test_missing_ai_usd_is_unknown_silently() -> None:
    assert Cost.from_wire({"compute": {"unit": "hours", "amount": 0.1}}).ai_usd is None
    assert Cost.from_wire({"aiUsd": 0}).ai_usd == 0.0


@pytest.mark.parametrize("name", ["createdAt", "startedAt", "completedAt"])
def test_malformed_timestamps_never_fail_a_status(name: str) -> None:
    status = parse_status(_completed(**{name: "not a time"}))
    assert isinstance(status, Completed) and status.succeeded
    attr = {"createdAt": "created_at", "startedAt": "started_at", "completedAt": "completed_at"}
    assert getattr(status, attr[name]) is None
    assert status.extra[name] == "not a time"
    assert status.duration_s is None or name == "createdAt"
    canceled = parse_status(
        {"webTaskId": "wt_2", "status": "canceled", "createdAt": 12, "completedAt": "x"}
    )
    assert isinstance(canceled, Canceled) and canceled.created_at is None
    assert canceled.extra == {"createdAt": 12, "completedAt": "x"}


def test_malformed_reuse_and_file_timestamps_are_kept_raw() -> None:
    body = _completed(
        reuse={"key": "k", "used": True, "updated": False, "revision_timestamp": "soon"},
        result={
            "type": "file",
            "file": {
                "url": "https://f.example/r.json?sig=s",
                "contentType": "application/json",
                "sizeBytes": 10,
                "expiresAt": "in a week",
            },
        },
    )
    status = parse_status(body)
    assert isinstance(status, Completed)
    assert status.reuse is not None and status.reuse.revision_timestamp is None
    assert status.reuse.extra == {"revision_timestamp": "soon"}
    assert isinstance(status.result, FileResult)
    assert status.result.expires_at is None and not status.result.expired()
    assert status.result.extra == {"expiresAt": "in a week"}


def test_unknown_status_is_not_terminal_and_warns() -> None:
    with pytest.warns(RuntimeWarning, match="paused"):
        status = parse_status(
            {"webTaskId": "wt_1", "status": "paused", "createdAt": "2026-05-19T12:00:00Z", "x": 1}
        )
    assert isinstance(status, UnknownStatus)
    assert status.status == "paused" and not status.terminal
    assert status.created_at is not None and status.extra == {"x": 1}


def test_result_url_is_a_file_result_when_result_is_absent() -> None:
    body = _completed(resultUrl="https://f.example/r.json?sig=secret")
    del body["result"]
    status = parse_status(body)
    assert isinstance(status, Completed)
    assert isinstance(status.result, FileResult)
    assert status.result.url == "https://f.example/r.json?sig=secret"
    assert status.result.size_bytes == -1 and status.result.web_task_id == "wt_1"
    assert "resultUrl" not in status.extra
    assert "secret" not in json.dumps(status.to_wire())  # safe to store in a ledger
    both = parse_status(_completed(resultUrl="https://f.example/r.json"))
    assert isinstance(both, Completed) and isinstance(both.result, InlineResult)
