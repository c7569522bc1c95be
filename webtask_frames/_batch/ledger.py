"""A crash-safe record of every task a sweep paid for: SQLite (WAL, ``synchronous=FULL``).

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

A ledger is not tied to one grid: items are stored by identity (``item_key``, a hash of
what the item asks, see ``plan``), for any number of runs and grids. A run reuses what
is already paid for, starts what is new, re-attaches what still runs, and never touches
items absent from its grid.

Tables (schema version 2):

* ``meta``: schema version, creation time.
* ``items``: one row per item ever planned: ``item_key``, task text, parameters (JSON),
  reuseKey, startUrl, the outputSchema's hash and the run that first planned it.
* ``runs``: one row per run that opened the ledger: when, how many items, the model
  and the run's options (``retry_failed``, ``max_age``).
* ``attempts``: one row per submission attempt of an item (1-based ``attempt``, counted
  across runs), with the run and the model it ran with, its state, ``web_task_id``,
  timestamps, outcome, error, cost, server-measured duration, whether it was a cold
  (automation-building) run, the redacted terminal response (``status.to_wire()``:
  signed URLs lose their query string, the API key is never in it) and where the raw
  result was cached.

Ledgers of schema version 1 (one fixed grid, items by position) are migrated in place
when opened with the sweep they recorded, and refused otherwise, saying how to migrate.

A lock file (``<ledger>.lock``, ``flock``) keeps two processes from driving one ledger;
the operating system releases it when a process dies, even by ``kill -9``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .._exceptions import InvalidInputError, LedgerLockedError
from .._redact import mask_secrets, scrub, scrub_text
from .._wire.models import Canceled, Completed, TaskStatus, parse_status
from .budget import usable_cost
from .plan import BatchPlan, canonical_json, stable_hash

__all__ = ["AttemptRow", "Ledger", "LedgerLockedError", "spent_on"]

logger = logging.getLogger("webtask_frames")

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    parameters TEXT NOT NULL,
    reuse_key TEXT,
    start_url TEXT,
    schema_hash TEXT,
    first_run INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    n_items INTEGER NOT NULL,
    model TEXT,
    options TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_key TEXT NOT NULL REFERENCES items(item_key),
    attempt INTEGER NOT NULL,
    run_id INTEGER,
    model TEXT,
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
    UNIQUE (item_key, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_by_item ON attempts (item_key, attempt);
"""

STATES = ("intent", "submitted", "terminal", "ambiguous", "not-sent")
_ATTEMPT_COLUMNS = (
    "attempt_id, item_key, attempt, run_id, model, state, web_task_id, intent_at, "
    "submitted_at, finished_at, status, outcome, error_code, error_message, cost_ai_usd, "
    "cost_compute_hours, duration_s, cold, terminal_json, raw_path, n_records, n_invalid"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AttemptRow:
    """One submission attempt as stored (see the module docstring for the states)."""

    attempt_id: int
    item_key: str
    attempt: int
    run_id: int | None
    model: str | None
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

    @property
    def succeeded(self) -> bool:
        """Whether this attempt's task completed with outcome ``success``."""
        return self.state == "terminal" and self.outcome == "success"


def spent_on(rows: Iterable[AttemptRow], item_keys: Collection[str] | None = None) -> float:
    """AI cost of the terminal attempts among ``rows`` (of ``item_keys`` only, when
    given): what those items cost, every run.

    Example:
        >>> spent_on([])
        0.0
    """
    wanted = None if item_keys is None else set(item_keys)
    return float(
        sum(
            row.cost_ai_usd or 0.0
            for row in rows
            if row.state == "terminal" and (wanted is None or row.item_key in wanted)
        )
    )


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


def _stored_wire(status: Completed | Canceled) -> dict[str, Any]:
    """The terminal response as the ledger keeps it: the signed file URL redacted, every
    server text scrubbed (it may echo a secret or a signed URL), but inline result data
    kept as the user's data (its own links, ``?id=7``, survive), since a rerun rebuilds
    the item's rows from it. Registered secrets are masked in the whole JSON text when it
    is stored (``_update``)."""
    wire = status.to_wire(redact=True)
    result = wire.get("result")
    had_data = isinstance(result, dict) and "data" in result
    data = result.pop("data") if had_data else None  # type: ignore[union-attr]
    clean: dict[str, Any] = scrub(wire)
    if had_data:
        clean["result"]["data"] = data
    return clean


def _item_rows(plan: BatchPlan, run_id: int | None) -> list[tuple[Any, ...]]:
    schema_hash = stable_hash(plan.output_schema, 32) if plan.output_schema else None
    return [
        (
            item.item_key,
            str(item.body.get("task", "")),
            canonical_json(item.parameters),
            item.reuse_key,
            item.start_url,
            schema_hash,
            run_id,
        )
        for item in plan.items
    ]


class Ledger:
    """The SQLite ledger of a sweep's items, across runs. Open with ``Ledger.open(path,
    plan)``: it registers the plan's items and starts a run (``run_id``).

    Example:
        >>> from webtask_frames._batch.plan import build_plan
        >>> plan = build_plan("Scrape", {"batch": ["S24"]}, reuse_key="yc")
        >>> with Ledger.open(Path("sweep.db"), plan) as ledger:
        ...     key = plan.items[0].item_key
        ...     attempt_id = ledger.record_intent(key, attempt=1)
        ...     ledger.record_submitted(attempt_id, "wt_1")
        ...     [(a.item_key == key, a.state, a.web_task_id) for a in ledger.attempts()]
        [(True, 'submitted', 'wt_1')]
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, lock: IO[bytes] | None) -> None:
        self.path = path
        self._conn = conn
        self._lock = lock
        self.run_id: int | None = None

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        plan: BatchPlan,
        *,
        lock: bool = True,
        run_options: Mapping[str, Any] | None = None,
    ) -> Ledger:
        """Open (creating if needed) the ledger, register ``plan``'s items and start a run.

        Raises ``InvalidInputError`` (field ``ledger``) when the file is not a ledger or is
        a version-1 ledger of a different sweep, and ``LedgerLockedError`` when another
        process holds it.
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
                ledger._init(plan, dict(run_options or {}))
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
        """Open an existing ledger without writing (for dry runs); None if absent.

        A version-1 ledger is migrated into memory (the file is left as it is)."""
        target = Path(path)
        if not target.exists():
            return None
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
        ledger = cls(target, conn, None)
        try:
            if ledger._version() == 1:
                memory = sqlite3.connect(":memory:", isolation_level=None)
                conn.backup(memory)
                conn.close()
                ledger._conn = conn = memory
                with ledger._tx():
                    ledger._migrate_v1(plan)
            else:
                ledger._check_version()
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

    def _version(self) -> int | None:
        """The file's schema version; None for a new (empty) ledger."""
        meta = self._meta()
        if "schema_version" in meta:
            return int(meta["schema_version"])
        return 1 if "fingerprint" in meta else None

    def _check_version(self) -> None:
        version = self._version()
        if version is not None and version != SCHEMA_VERSION:
            raise InvalidInputError(
                f"ledger {str(self.path)!r} has schema version {version}, newer than this "
                f"webtask-frames writes ({SCHEMA_VERSION}); upgrade webtask-frames or pass a "
                "new ledger path",
                field="ledger",
            )

    def _init(self, plan: BatchPlan, run_options: dict[str, Any]) -> None:
        with self._tx() as conn:
            version = self._version()
            if version == 1:
                self._migrate_v1(plan)
            else:
                self._check_version()
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany(
                    "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("created_at", _now())],
                )
            cur = conn.execute(
                "INSERT INTO runs (started_at, n_items, model, options) VALUES (?, ?, ?, ?)",
                (_now(), len(plan.items), plan.model, canonical_json(run_options)),
            )
            self.run_id = cur.lastrowid
            conn.executemany(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                _item_rows(plan, self.run_id),
            )

    def _migrate_v1(self, plan: BatchPlan) -> None:
        """Rewrite a version-1 ledger (one fixed grid, items by position) as version 2,
        inside the caller's transaction. Only the sweep it recorded can say which item
        each position was, so any other sweep is refused, naming the difference."""
        meta = self._meta()
        if meta.get("fingerprint") != plan.fingerprint:
            raise InvalidInputError(
                f"ledger {str(self.path)!r} was written by an earlier webtask-frames for one "
                f"fixed grid and this sweep differs ({self._v1_difference(plan, meta)}); run "
                "once with that sweep's original arguments to migrate it (then grow the grid "
                "freely), or pass a new ledger path",
                field="ledger",
            )
        conn = self._conn
        model = json.loads(meta.get("fingerprint_parts", "{}")).get("model")
        keys = {item.index: item.item_key for item in plan.items}
        old = conn.execute(
            "SELECT item, attempt, state, web_task_id, intent_at, submitted_at, finished_at, "
            "status, outcome, error_code, error_message, cost_ai_usd, cost_compute_hours, "
            "duration_s, cold, terminal_json, raw_path, n_records, n_invalid FROM attempts "
            "ORDER BY attempt_id"
        ).fetchall()
        conn.execute("DROP TABLE attempts")
        conn.execute("DROP TABLE items")
        conn.execute("DELETE FROM meta")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("schema_version", str(SCHEMA_VERSION)),
                ("created_at", meta.get("created_at", _now())),
                ("migrated_from", "1"),
            ],
        )
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", _item_rows(plan, None))
        conn.executemany(
            f"INSERT INTO attempts ({_ATTEMPT_COLUMNS.split(', ', 1)[1]}) VALUES "
            f"({', '.join('?' * 21)})",
            [(keys[row[0]], row[1], None, model, *row[2:]) for row in old],
        )
        logger.info("ledger %s migrated from schema version 1 to %d", self.path, SCHEMA_VERSION)

    def _v1_difference(self, plan: BatchPlan, meta: Mapping[str, str]) -> str:
        stored: dict[str, Any] = json.loads(meta.get("fingerprint_parts", "{}"))
        new = plan.fingerprint_parts()
        if stored.get("task") != new["task"]:
            return f"its task text was {meta.get('task', '?')[:60]!r}"
        if stored.get("output_schema") != new["output_schema"]:
            return "its output_schema differs"
        if stored.get("model") != new["model"]:
            return f"its model was {stored.get('model')!r}"
        if stored.get("n_items") != new["n_items"]:
            return f"its grid had {stored.get('n_items')} items, this one {new['n_items']}"
        hashes = dict(self._conn.execute("SELECT item, body_hash FROM items").fetchall())
        for item in plan.items:
            if hashes.get(item.index) != item.body_hash:
                (old_params,) = self._conn.execute(
                    "SELECT parameters FROM items WHERE item = ?", (item.index,)
                ).fetchone() or ("?",)
                return f"its grid item {item.index} had parameters {old_params}"
        return "its fingerprint differs"

    # -- writing (each call is one durable transaction) -------------------------------

    def record_intent(self, item_key: str, *, attempt: int, model: str | None = None) -> int:
        """Durably note that the item is about to be POSTed (its ``attempt``-th
        submission, with ``model``); returns the attempt id."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO attempts (item_key, attempt, run_id, model, state, intent_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (item_key, attempt, self.run_id, model, "intent", _now()),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _update(self, attempt_id: int, **values: Any) -> None:
        # Server text (error messages, the terminal JSON) may echo a secret: scrubbed here.
        # The terminal JSON's file URL is redacted by ``to_wire``; its inline data is the
        # user's and keeps its own links (``?id=7``): only registered secrets are masked.
        values = {
            k: (mask_secrets(v) if k == "terminal_json" else scrub_text(v))
            if isinstance(v, str)
            else v
            for k, v in values.items()
        }
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
            "terminal_json": canonical_json(_stored_wire(status)),
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

    def attempts(self, item_keys: Collection[str] | None = None) -> list[AttemptRow]:
        """Every attempt (of ``item_keys`` only, when given), by item then attempt number,
        with the item's reuseKey."""
        columns = ", ".join(f"a.{c}" for c in _ATTEMPT_COLUMNS.split(", "))
        rows = self._conn.execute(
            f"SELECT {columns}, i.reuse_key FROM attempts a JOIN items i "
            "ON i.item_key = a.item_key ORDER BY a.item_key, a.attempt"
        ).fetchall()
        wanted = None if item_keys is None else set(item_keys)
        out = []
        for row in rows:
            if wanted is not None and row[1] not in wanted:
                continue
            values = list(row)
            values[17] = None if values[17] is None else bool(values[17])
            out.append(AttemptRow(*values))
        return out

    def spent_usd(self, item_keys: Collection[str] | None = None) -> float:
        """AI cost of every terminal attempt recorded (of ``item_keys`` only, when given)."""
        return spent_on(self.attempts(item_keys))

    def runs(self) -> list[dict[str, Any]]:
        """Every run that opened the ledger, oldest first (diagnostics)."""
        rows = self._conn.execute(
            "SELECT run_id, started_at, n_items, model, options FROM runs ORDER BY run_id"
        ).fetchall()
        keys = ("run_id", "started_at", "n_items", "model", "options")
        return [dict(zip(keys, row, strict=True)) for row in rows]

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
