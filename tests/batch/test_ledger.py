"""The SQLite ledger: durable states, items by identity across grids, v1 migration,
locking, redaction."""

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
K0, K1, K2 = PLAN.item_keys

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
        a0 = ledger.record_intent(K0, attempt=1, model="haiku")
        ledger.record_submitted(a0, "wt_9")
        status = parse_status(FILE_BODY)
        ledger.record_terminal(a0, status, cold=True)  # type: ignore[arg-type]
        ledger.record_materialized(a0, raw_path="/c/wt_9.json", n_records=3, n_invalid=1)
        a1 = ledger.record_intent(K1, attempt=1)
        a2 = ledger.record_intent(K2, attempt=1)
        ledger.record_ambiguous(a2, "read timeout")
        a3 = ledger.record_intent(K2, attempt=2)
        ledger.record_not_sent(a3, "bad-request", "nope")
    with Ledger.open(path, PLAN) as ledger:
        rows = ledger.attempts()
        got = sorted((PLAN.item_keys.index(r.item_key), r.attempt, r.state) for r in rows)
        assert got == [
            (0, 1, "terminal"),
            (1, 1, "intent"),
            (2, 1, "ambiguous"),
            (2, 2, "not-sent"),
        ]
        rows = sorted(rows, key=lambda r: PLAN.item_keys.index(r.item_key))
        done = rows[0]
        assert done.web_task_id == "wt_9" and done.outcome == "success" and done.cold is True
        assert done.cost_ai_usd == 0.25 and done.duration_s == 60.0
        assert done.raw_path == "/c/wt_9.json" and (done.n_records, done.n_invalid) == (3, 1)
        assert done.reuse_key == "yc_S24" and done.model == "haiku" and done.run_id == 1
        assert ledger.spent_usd() == 0.25
        assert ledger.spent_usd([K1, K2]) == 0.0
        assert [r.state for r in ledger.attempts([K2])] == ["ambiguous", "not-sent"]
        assert a1 != a0
        assert [r["run_id"] for r in ledger.runs()] == [1, 2]


def test_the_terminal_json_never_holds_a_signed_url_query(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger.open(path, PLAN) as ledger:
        a = ledger.record_intent(K0, attempt=1)
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


def test_one_ledger_holds_any_number_of_grids_by_identity(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger.open(path, PLAN) as ledger:
        ledger.record_submitted(ledger.record_intent(K1, attempt=1), "wt_w24")
    grown = build_plan("Scrape", {"batch": ["F24", "W24", "S24", "X"]}, reuse_key="yc_{batch}")
    assert grown.items[1].item_key == K1 and grown.items[2].item_key == K0  # not positions
    with Ledger.open(path, grown) as ledger:  # a different grid: opens, nothing refused
        rows = ledger.attempts(grown.item_keys)
        assert [(r.item_key, r.web_task_id) for r in rows] == [(K1, "wt_w24")]
        (n_items,) = ledger._conn.execute("SELECT count(*) FROM items").fetchone()
        assert n_items == 5  # S24 W24 S23 from the first grid, F24 and X from the second
    other_model = build_plan("Scrape", {"batch": ["W24"]}, reuse_key="yc_{batch}", model="opus")
    assert other_model.items[0].item_key == K1  # the model is not part of what it asks


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (item INTEGER PRIMARY KEY, item_id TEXT NOT NULL, parameters TEXT NOT NULL,
    reuse_key TEXT, body_hash TEXT NOT NULL);
CREATE TABLE attempts (attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    item INTEGER NOT NULL REFERENCES items(item), attempt INTEGER NOT NULL,
    state TEXT NOT NULL, web_task_id TEXT, intent_at TEXT NOT NULL, submitted_at TEXT,
    finished_at TEXT, status TEXT, outcome TEXT, error_code TEXT, error_message TEXT,
    cost_ai_usd REAL, cost_compute_hours REAL, duration_s REAL, cold INTEGER,
    terminal_json TEXT, raw_path TEXT, n_records INTEGER, n_invalid INTEGER,
    UNIQUE (item, attempt));
"""


def write_v1_ledger(path: Path, plan: object) -> None:
    """A ledger as the first release wrote it: one fixed grid, items by position."""
    from webtask_frames._batch.plan import canonical_json

    assert hasattr(plan, "items")
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    meta = {
        "schema_version": "1",
        "fingerprint": plan.fingerprint,  # type: ignore[attr-defined]
        "fingerprint_parts": canonical_json(plan.fingerprint_parts()),  # type: ignore[attr-defined]
        "task": "Scrape",
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
    for item in plan.items:
        con.execute(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
            (
                item.index,
                f"{item.index}:x",
                canonical_json(item.parameters),
                item.reuse_key,
                item.body_hash,
            ),
        )
    con.execute(
        "INSERT INTO attempts (item, attempt, state, web_task_id, intent_at, outcome, "
        "cost_ai_usd) VALUES (2, 1, 'terminal', 'wt_s23', '2026-01-01T00:00:00+00:00', "
        "'success', 0.5)"
    )
    con.commit()
    con.close()


def test_a_v1_ledger_is_migrated_by_its_own_sweep(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    write_v1_ledger(path, PLAN)
    ro = Ledger.open_readonly(path, PLAN)  # a dry run migrates in memory only
    assert ro is not None
    assert [(r.item_key, r.web_task_id) for r in ro.attempts()] == [(K2, "wt_s23")]
    ro.close()
    assert sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key='schema_version'"
    ).fetchone() == ("1",)
    with Ledger.open(path, PLAN) as ledger:
        rows = ledger.attempts()
        assert [(r.item_key, r.web_task_id, r.cost_ai_usd) for r in rows] == [(K2, "wt_s23", 0.5)]
        assert ledger.meta()["schema_version"] == "2"
    grown = build_plan("Scrape", {"batch": ["S23", "NEW"]}, reuse_key="yc_{batch}")
    with Ledger.open(path, grown) as ledger:  # migrated: any grid now
        assert [r.web_task_id for r in ledger.attempts(grown.item_keys)] == ["wt_s23"]


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (build_plan("Scrape v2", {"batch": ["S24", "W24", "S23"]}), "task text was 'Scrape'"),
        (build_plan("Scrape", {"batch": ["S24", "W24"]}, reuse_key="yc_{batch}"), "had 3 items"),
        (
            build_plan("Scrape", {"batch": ["S24", "W25", "S23"]}, reuse_key="yc_{batch}"),
            r"grid item 1 had parameters .*W24",
        ),
    ],
)
def test_a_v1_ledger_of_another_sweep_is_refused_naming_the_fix(
    tmp_path: Path, other: object, match: str
) -> None:
    path = tmp_path / "old.db"
    write_v1_ledger(path, PLAN)
    with pytest.raises(InvalidInputError, match=match) as info:
        Ledger.open(path, other)  # type: ignore[arg-type]
    assert info.value.field == "ledger" and "\n" not in str(info.value)
    assert "original arguments to migrate it" in str(info.value)
    with Ledger.open(path, PLAN) as ledger:  # the original sweep still migrates it
        assert len(ledger.attempts()) == 1


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
        ledger.record_intent(plan.items[0].item_key, attempt=1)
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
        ro.record_intent(K0, attempt=1)
    ro.close()


def test_not_a_ledger_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InvalidInputError, match="not a webtask-frames ledger"):
        Ledger.open(path, PLAN)
    with pytest.raises(InvalidInputError, match="is a directory"):
        Ledger.open(tmp_path, PLAN)
