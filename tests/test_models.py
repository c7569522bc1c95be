"""Parsing the reference examples and the wire timestamps."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from webtask_frames import (
    Canceled,
    Completed,
    FileResult,
    InlineResult,
    Pending,
    ProtocolError,
    Started,
)
from webtask_frames._tables.records import date_or_none, timestamp_or_none
from webtask_frames._wire.models import parse_status, parse_timestamp_strict

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def reference_examples() -> dict[str, dict[str, object]]:
    """The JSON examples embedded in the service overview, by their labels."""
    path = REFERENCE / "web-tasks-overview.md"
    if not path.exists():
        pytest.skip(f"reference docs not found at {REFERENCE}")
    text = path.read_text()
    blocks = re.findall(r"```json ([^\n]*?) theme=\{null\}\n(.*?)```", text, re.S)
    return {label.strip(): json.loads(body) for label, body in blocks}


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
    path = REFERENCE / "web-task-result-openapi.md"
    if not path.exists():
        pytest.skip("reference docs not found")
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
    "body", [[], {"status": "completed"}, {"webTaskId": "wt_1", "status": "paused"}]
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
