"""A crash-safe record of a sweep's submissions: SQLite (WAL, ``synchronous=FULL``).

Tasks cost money, so the one thing a batch must never do is lose a task it paid for or
pay twice without saying so. Every submission goes through durable states, each its own
committed transaction::

    intent ──POST──> submitted(webTaskId) ──poll──> terminal(outcome, cost, JSON)
       │                                               └─> materialized(raw file)
       ├─> ambiguous   (the POST may or may not have created a task)
       └─> not-sent    (provably not accepted: 400, 401, no connection)

``intent`` is committed *before* the POST and ``submitted`` right after the response.
A crash between the two leaves an intent-only attempt: the task may exist, so a re-run
reports the item as ambiguous and resubmits it only when asked to.

Tables:

* ``meta``: schema version, the plan's fingerprint and its parts (to explain a mismatch).
* ``items``: one row per grid item: index, ``item_id`` (index + parameter hash), the
  parameters as JSON, the reuseKey and a hash of the exact start body.
* ``attempts``: one row per submission attempt of an item (1-based ``attempt``), with its
  state, ``web_task_id``, timestamps, outcome, error, cost, server-measured duration,
  whether it was a cold (automation-building) run, the redacted terminal response
  (``status.to_wire()``: signed URLs lose their query string, the API key is never in
  it) and where the raw result was cached.

A lock file (``<ledger>.lock``, ``flock``) keeps two processes from driving one ledger;
the operating system releases it when a process dies, even by ``kill -9``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .._exceptions import InvalidInputError, LedgerLockedError
from .._redact import scrub_text
from .._wire.models import Canceled, Completed, TaskStatus, parse_status
from .budget import usable_cost
from .plan import BatchPlan, canonical_json

__all__ = ["AttemptRow", "Ledger", "LedgerLockedError"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL,
    parameters TEXT NOT NULL,
    reuse_key TEXT,
    body_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    item INTEGER NOT NULL REFERENCES items(item),
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    web_task_id TEXT,
    intent_at TEXT NOT NULL,
    submitted_at TEXT,
    finished_at TEXT,
    status TEXT,
    outcome TEXT,
    error_code TEXT,
    error_message TEXT,
    cost_ai_usd REAL,
    cost_compute_hours REAL,
    duration_s REAL,
    cold INTEGER,
    terminal_json TEXT,
    raw_path TEXT,
    n_records INTEGER,
    n_invalid INTEGER,
    UNIQUE (item, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_by_item ON attempts (item, attempt);
"""

STATES = ("intent", "submitted", "terminal", "ambiguous", "not-sent")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AttemptRow:
    """One submission attempt as stored (see the module docstring for the states)."""

    attempt_id: int
    item: int
    attempt: int
    state: str
    web_task_id: str | None
    intent_at: str
    submitted_at: str | None
    finished_at: str | None
    status: str | None
    outcome: str | None
    error_code: str | None
    error_message: str | None
    cost_ai_usd: float | None
    cost_compute_hours: float | None
    duration_s: float | None
    cold: bool | None
    terminal_json: str | None
    raw_path: str | None
    n_records: int | None
    n_invalid: int | None
    reuse_key: str | None = None

    def terminal_status(self) -> TaskStatus | None:
        """The stored terminal response, parsed back (its file URL is redacted)."""
        if self.terminal_json is None:
            return None
        return parse_status(json.loads(self.terminal_json))


def _lock(path: Path) -> IO[bytes] | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return None
    handle = path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise LedgerLockedError(
            f"ledger {str(path)[:-5]!r} is in use by another running batch; wait for it to "
            "finish (or stop it) before re-running, or pass a different ledger path",
            field="ledger",
        ) from None
    return handle


class Ledger:
    """The SQLite ledger of one sweep. Open with ``Ledger.open(path, plan)``.

    Example:
        >>> from webtask_frames._plan import build_plan
        >>> plan = build_plan("Scrape", {"batch": ["S24"]}, reuse_key="yc")
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sweep.db"
        >>> with Ledger.open(path, plan) as ledger:
        ...     attempt_id = ledger.record_intent(0, attempt=1)
        ...     ledger.record_submitted(attempt_id, "wt_1")
        ...     [(a.item, a.state, a.web_task_id) for a in ledger.attempts()]
        [(0, 'submitted', 'wt_1')]
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: IO[bytes] | None) -> None:
        self.path = path
        self._conn = conn
        self._lock = lock

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], plan: BatchPlan, *, lock: bool = True) -> Ledger:
        """Open (creating if needed) the ledger for ``plan``.

        Raises ``InvalidInputError`` (field ``ledger``) when the file holds a different
        sweep, explaining what differs, and ``LedgerLockedError`` when another process
        holds it.
        """
        target = Path(path)
        if target.is_dir():
            raise InvalidInputError(
                f"ledger: {str(target)!r} is a directory; pass a file path like 'sweep.db'",
                field="ledger",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = _lock(target.with_name(target.name + ".lock")) if lock else None
        try:
            conn = sqlite3.connect(target, isolation_level=None, timeout=30.0)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                ledger = cls(target, conn, handle)
                ledger._init(plan)
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            if handle is not None:
                handle.close()
            raise InvalidInputError(
                f"ledger: {str(target)!r} is not a webtask-frames ledger ({exc}); pass a new "
                "file path",
                field="ledger",
            ) from None
        except BaseException:
            if handle is not None:
                handle.close()
            raise
        return ledger

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str], plan: BatchPlan) -> Ledger | None:
        """Open an existing ledger without writing (for dry runs); None if absent."""
        target = Path(path)
        if not target.exists():
            return None
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
        ledger = cls(target, conn, None)
        try:
            if ledger._meta().get("fingerprint") is not None:
                ledger._check_fingerprint(plan)
        except BaseException:
            conn.close()
            raise
        return ledger

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _meta(self) -> dict[str, str]:
        try:
            rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {k: v for k, v in rows}

    def _init(self, plan: BatchPlan) -> None:
        with self._tx() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            meta = self._meta()
            if "fingerprint" in meta:
                version = int(meta.get("schema_version", "0"))
                if version != SCHEMA_VERSION:
                    raise InvalidInputError(
                        f"ledger {str(self.path)!r} has schema version {version}; this "
                        f"webtask-frames writes version {SCHEMA_VERSION}; use a new ledger file",
                        field="ledger",
                    )
                self._check_fingerprint(plan)
                return
            values = {
                "schema_version": str(SCHEMA_VERSION),
                "fingerprint": plan.fingerprint,
                "fingerprint_parts": canonical_json(plan.fingerprint_parts()),
                "task": plan.task,
                "created_at": _now(),
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)", list(values.items()))
            conn.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        item.index,
                        item.item_id,
                        canonical_json(item.parameters),
                        item.reuse_key,
                        item.body_hash,
                    )
                    for item in plan.items
                ],
            )

    def _check_fingerprint(self, plan: BatchPlan) -> None:
        meta = self._meta()
        if meta.get("fingerprint") == plan.fingerprint:
            return
        stored: dict[str, Any] = json.loads(meta.get("fingerprint_parts", "{}"))
        new = plan.fingerprint_parts()
        reasons = []
        if stored.get("task") != new["task"]:
            reasons.append(f"the task text differs (ledger: {meta.get('task', '?')[:60]!r})")
        if stored.get("output_schema") != new["output_schema"]:
            reasons.append("the output_schema differs")
        if stored.get("model") != new["model"]:
            reasons.append(f"the model differs (ledger: {stored.get('model')!r})")
        if stored.get("n_items") != new["n_items"]:
            reasons.append(
                f"the grid has {new['n_items']} items, the ledger {stored.get('n_items')}"
            )
        elif stored.get("items") != new["items"]:
            hashes = dict(self._conn.execute("SELECT item, body_hash FROM items").fetchall())
            for item in plan.items:
                if hashes.get(item.index) != item.body_hash:
                    row = self._conn.execute(
                        "SELECT parameters, reuse_key FROM items WHERE item = ?", (item.index,)
                    ).fetchone()
                    old_params, old_key = row if row else ("?", "?")
                    reasons.append(
                        f"grid item {item.index} differs (ledger: parameters {old_params}, "
                        f"reuse_key {old_key!r}; now: parameters "
                        f"{canonical_json(item.parameters)}, reuse_key {item.reuse_key!r})"
                    )
                    break
        raise InvalidInputError(
            f"ledger {str(self.path)!r} records a different sweep: "
            f"{'; '.join(reasons) or 'its fingerprint differs'}. A ledger belongs to one "
            "sweep (task, schema, model, reuse keys and grid) so results are never mixed: "
            "re-run with the original arguments to resume it, or pass a new ledger path",
            field="ledger",
        )

    # -- writing (each call is one durable transaction) -------------------------------

    def record_intent(self, item: int, *, attempt: int) -> int:
        """Durably note that ``item`` is about to be POSTed; returns the attempt id."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO attempts (item, attempt, state, intent_at) VALUES (?, ?, ?, ?)",
                (item, attempt, "intent", _now()),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _update(self, attempt_id: int, **values: Any) -> None:
        # Server text (error messages, the terminal JSON) may echo a secret: scrubbed here.
        values = {k: scrub_text(v) if isinstance(v, str) else v for k, v in values.items()}
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._tx() as conn:
            conn.execute(
                f"UPDATE attempts SET {columns} WHERE attempt_id = ?",
                (*values.values(), attempt_id),
            )

    def record_submitted(self, attempt_id: int, web_task_id: str) -> None:
        """Durably note the ``webTaskId`` the service returned."""
        self._update(attempt_id, state="submitted", web_task_id=web_task_id, submitted_at=_now())

    def record_not_sent(self, attempt_id: int, code: str, message: str) -> None:
        """The POST provably created no task (rejected, or never reached the server)."""
        self._update(
            attempt_id,
            state="not-sent",
            error_code=code,
            error_message=message,
            finished_at=_now(),
        )

    def record_ambiguous(self, attempt_id: int, message: str) -> None:
        """The POST may or may not have created a task."""
        self._update(
            attempt_id,
            state="ambiguous",
            error_code="ambiguous-submission",
            error_message=message,
            finished_at=_now(),
        )

    def record_terminal(
        self, attempt_id: int, status: Completed | Canceled, *, cold: bool | None
    ) -> None:
        """The task reached a terminal status; store outcome, cost and redacted JSON."""
        values: dict[str, Any] = {
            "state": "terminal",
            "status": status.status,
            "finished_at": _now(),
            "terminal_json": canonical_json(status.to_wire(redact=True)),
            "cold": None if cold is None else int(cold),
        }
        if isinstance(status, Completed):
            values.update(
                outcome=status.outcome,
                error_code=status.error.code if status.error else None,
                error_message=status.error.message if status.error else None,
                cost_ai_usd=usable_cost(status.cost.ai_usd),
                cost_compute_hours=usable_cost(status.cost.compute_hours),
                duration_s=status.duration_s,
            )
        else:
            values.update(outcome="canceled", error_code="canceled")
        self._update(attempt_id, **values)

    def record_materialized(
        self, attempt_id: int, *, raw_path: str | None, n_records: int, n_invalid: int
    ) -> None:
        """Where the raw result is cached, and how many rows it gave."""
        self._update(attempt_id, raw_path=raw_path, n_records=n_records, n_invalid=n_invalid)

    # -- reading ----------------------------------------------------------------------

    def pragma(self, name: str) -> Any:
        """The value of SQLite's ``PRAGMA name`` on this ledger's connection (diagnostics).

        Example:
            >>> ledger.pragma("journal_mode")  # doctest: +SKIP
            'wal'
        """
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        row = self._conn.execute(f"PRAGMA {name}").fetchone()
        return row[0] if row else None

    def attempts(self) -> list[AttemptRow]:
        """Every attempt, by item then attempt number, with the item's reuseKey."""
        rows = self._conn.execute(
            "SELECT a.attempt_id, a.item, a.attempt, a.state, a.web_task_id, a.intent_at, "
            "a.submitted_at, a.finished_at, a.status, a.outcome, a.error_code, "
            "a.error_message, a.cost_ai_usd, a.cost_compute_hours, a.duration_s, a.cold, "
            "a.terminal_json, a.raw_path, a.n_records, a.n_invalid, i.reuse_key "
            "FROM attempts a JOIN items i ON i.item = a.item ORDER BY a.item, a.attempt"
        ).fetchall()
        out = []
        for row in rows:
            values = list(row)
            values[15] = None if values[15] is None else bool(values[15])
            out.append(AttemptRow(*values))
        return out

    def latest(self) -> dict[int, AttemptRow]:
        """Each item's most recent attempt."""
        return {row.item: row for row in self.attempts()}

    def spent_usd(self) -> float:
        """AI cost of every terminal attempt recorded."""
        (total,) = self._conn.execute(
            "SELECT COALESCE(SUM(cost_ai_usd), 0) FROM attempts WHERE state = 'terminal'"
        ).fetchone()
        return float(total)

    def meta(self) -> Mapping[str, str]:
        return self._meta()

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"
