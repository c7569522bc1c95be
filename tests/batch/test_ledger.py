"""The SQLite ledger: durable states, fingerprints, locking, redaction."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from webtask_frames import InvalidInputError, LedgerLockedError
from webtask_frames._batch.ledger import Ledger
from webtask_frames._batch.plan import build_plan
from webtask_frames._wire.models import parse_status

PLAN = build_plan("Scrape", {"batch": ["S24", "W24", "S23"]}, reuse_key="yc_{batch}")

FILE_BODY = {
    "webTaskId": "wt_9",
    "status": "completed",
    "outcome": "success",
    "createdAt": "2026-05-19T12:00:00.000Z",
    "startedAt": "2026-05-19T12:00:01.000Z",
    "completedAt": "2026-05-19T12:01:01.000Z",
    "reuse": {"key": "yc_S24", "used": False, "created": True, "updated": True},
    "cost": {"aiUsd": 0.25, "compute": {"unit": "hours", "amount": 0.01}},
    "result": {
        "type": "file",
        "file": {
            "url": "https://files.example/r/wt_9.json?signature=SECRET-SIG&expires=1",
            "contentType": "application/json",
            "sizeBytes": 10,
            "expiresAt": "2026-06-01T00:00:00Z",
        },
    },
}


def test_states_are_durable_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger.open(path, PLAN) as ledger:
        a0 = ledger.record_intent(0, attempt=1)
        ledger.record_submitted(a0, "wt_9")
        status = parse_status(FILE_BODY)
        ledger.record_terminal(a0, status, cold=True)  # type: ignore[arg-type]
        ledger.record_materialized(a0, raw_path="/c/wt_9.json", n_records=3, n_invalid=1)
        a1 = ledger.record_intent(1, attempt=1)
        a2 = ledger.record_intent(2, attempt=1)
        ledger.record_ambiguous(a2, "read timeout")
        a3 = ledger.record_intent(2, attempt=2)
        ledger.record_not_sent(a3, "bad-request", "nope")
    with Ledger.open(path, PLAN) as ledger:
        rows = ledger.attempts()
        assert [(r.item, r.attempt, r.state) for r in rows] == [
            (0, 1, "terminal"),
            (1, 1, "intent"),
            (2, 1, "ambiguous"),
            (2, 2, "not-sent"),
        ]
        done = rows[0]
        assert done.web_task_id == "wt_9" and done.outcome == "success" and done.cold is True
        assert done.cost_ai_usd == 0.25 and done.duration_s == 60.0
        assert done.raw_path == "/c/wt_9.json" and (done.n_records, done.n_invalid) == (3, 1)
        assert done.reuse_key == "yc_S24"
        assert ledger.spent_usd() == 0.25
        assert ledger.latest()[2].attempt == 2
        assert a1 != a0


def test_the_terminal_json_never_holds_a_signed_url_query(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger.open(path, PLAN) as ledger:
        a = ledger.record_intent(0, attempt=1)
        ledger.record_submitted(a, "wt_9")
        ledger.record_terminal(a, parse_status(FILE_BODY), cold=True)  # type: ignore[arg-type]
        status = ledger.attempts()[0].terminal_status()
    assert status is not None and status.web_task_id == "wt_9"
    for file in tmp_path.iterdir():  # the database, its WAL and the lock file
        assert b"SECRET-SIG" not in file.read_bytes(), file.name


def test_wal_and_full_sync_are_on(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", PLAN) as ledger:
        assert ledger.pragma("journal_mode") == "wal"
        assert ledger.pragma("synchronous") == 2  # FULL


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (
            build_plan("Scrape v2", {"batch": ["S24", "W24", "S23"]}, reuse_key="yc_{batch}"),
            "task text differs",
        ),
        (
            build_plan("Scrape", {"batch": ["S24", "W24"]}, reuse_key="yc_{batch}"),
            "grid has 2 items, the ledger 3",
        ),
        (
            build_plan("Scrape", {"batch": ["S24", "W25", "S23"]}, reuse_key="yc_{batch}"),
            r"grid item 1 differs.*W24.*W25",
        ),
        (
            build_plan("Scrape", {"batch": ["S24", "W24", "S23"]}, reuse_key="yc"),
            "grid item 0 differs",
        ),
        (
            build_plan(
                "Scrape", {"batch": ["S24", "W24", "S23"]}, reuse_key="yc_{batch}", model="opus"
            ),
            "model differs",
        ),
        (
            build_plan(
                "Scrape",
                {"batch": ["S24", "W24", "S23"]},
                reuse_key="yc_{batch}",
                output_schema={"type": "array"},
            ),
            "output_schema differs",
        ),
    ],
)
def test_a_different_sweep_is_explained_not_mixed(
    tmp_path: Path, other: object, match: str
) -> None:
    path = tmp_path / "l.db"
    Ledger.open(path, PLAN).close()
    with pytest.raises(InvalidInputError, match=match) as info:
        Ledger.open(path, other)  # type: ignore[arg-type]
    assert info.value.field == "ledger"
    assert "new ledger path" in str(info.value)
    Ledger.open(path, PLAN).close()  # the original still opens


def test_a_second_process_cannot_drive_the_same_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger.open(path, PLAN), pytest.raises(LedgerLockedError, match="in use"):
        Ledger.open(path, PLAN)
    Ledger.open(path, PLAN).close()  # released on close


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    code = textwrap.dedent(
        f"""
        import os
        from webtask_frames._batch.ledger import Ledger
        from webtask_frames._batch.plan import build_plan
        plan = build_plan("Scrape", {{"batch": ["S24", "W24", "S23"]}}, reuse_key="yc_{{batch}}")
        ledger = Ledger.open({str(path)!r}, plan)
        ledger.record_intent(0, attempt=1)
        os._exit(0)  # no close: the OS must release the lock and keep the commit
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with Ledger.open(path, PLAN) as ledger:
        assert [r.state for r in ledger.attempts()] == ["intent"]


def test_readonly_open_does_not_create_or_write(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    assert Ledger.open_readonly(path, PLAN) is None
    assert not path.exists()
    Ledger.open(path, PLAN).close()
    ro = Ledger.open_readonly(path, PLAN)
    assert ro is not None
    with pytest.raises(sqlite3.OperationalError):
        ro.record_intent(0, attempt=1)
    ro.close()


def test_not_a_ledger_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InvalidInputError, match="not a webtask-frames ledger"):
        Ledger.open(path, PLAN)
    with pytest.raises(InvalidInputError, match="is a directory"):
        Ledger.open(tmp_path, PLAN)
