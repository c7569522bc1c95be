"""Typed, lenient views of the Web Tasks wire objects.

``GET /web-tasks/{id}/result`` answers a union discriminated by ``status``::

    TaskStatus
    ├── Pending     status="pending"
    ├── Started     status="started"
    ├── Completed   status="completed", outcome="success" | "failed"
    │               result: InlineResult | FileResult | None, error: TaskFailure | None
    └── Canceled    status="canceled"

Parsing is lenient the way a long-lived client must be: unknown fields are kept in
``extra``, optional blocks may be missing, ``cost.aiUsd`` and ``cost.compute`` are both
read (compute in any common time unit, converted to hours), and timestamps become
timezone-aware datetimes. Informational values that do not parse (a timestamp, a
non-numeric or negative ``aiUsd``, a compute unit we do not know) become None with their
raw value kept in ``extra``: a billed, completed task never fails on them. A ``status``
this version does not know is parsed as ``UnknownStatus`` (not terminal, with a
``RuntimeWarning``), so polling goes on under the usual deadline. Only a body that is not
an object, or lacks ``status`` or ``webTaskId``, is a ``ProtocolError``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .._exceptions import ProtocolError, TaskCanceledError, TaskFailedError
from .._redact import redact_url

__all__ = [
    "Canceled",
    "Completed",
    "Cost",
    "FileResult",
    "InlineResult",
    "Pending",
    "Reuse",
    "Started",
    "TaskFailure",
    "TaskStatus",
    "UnknownStatus",
    "parse_status",
]

_HOURS_PER = {
    ("hours", "hour", "hrs", "hr", "h"): 1.0,
    ("minutes", "minute", "mins", "min"): 1 / 60,
    ("seconds", "second", "secs", "sec", "s"): 1 / 3600,
    ("milliseconds", "millisecond", "millis", "msec", "ms"): 1 / 3_600_000,
    ("days", "day", "d"): 24.0,
}
# A compute unit (lower case) -> hours per unit.
COMPUTE_UNIT_TO_HOURS = {unit: factor for units, factor in _HOURS_PER.items() for unit in units}


def parse_timestamp_strict(value: Any) -> datetime | None:
    """ISO-8601 text to an aware datetime (naive input is taken as UTC); None stays None.

    Strict: anything else raises ``ProtocolError``, because a required wire timestamp
    that does not parse means the server broke the contract. (Result *data* is converted
    tolerantly instead, by ``_tables.records.timestamp_or_none``.)

    Example:
        >>> parse_timestamp_strict("2026-05-19T12:00:00Z").isoformat()
        '2026-05-19T12:00:00+00:00'
    """
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ProtocolError(f"expected an ISO-8601 timestamp, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ProtocolError(f"unparseable timestamp {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lenient_timestamp(value: Any) -> datetime | None:
    """For informational timestamps: unparseable becomes None instead of failing the
    whole (billed, completed) status."""
    try:
        return parse_timestamp_strict(value)
    except ProtocolError:
        return None


def _timestamps(
    raw: Mapping[str, Any], names: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(parsed, unparsed)``: each named timestamp of ``raw`` parsed leniently; the raw
    value of every one that did not parse, under its wire name (for ``extra``)."""
    parsed: dict[str, Any] = {}
    bad: dict[str, Any] = {}
    for name in names:
        value = raw.get(name)
        parsed[name] = _lenient_timestamp(value)
        if parsed[name] is None and value is not None:
            bad[name] = value
    return parsed, bad


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _ai_usd(raw: Mapping[str, Any]) -> float | None:
    """``cost.aiUsd`` when it is a finite, non-negative number; otherwise None (unknown),
    with a warning when a value was there but unusable."""
    value = raw.get("aiUsd")
    amount = _float_or_none(value)
    if amount is not None and math.isfinite(amount) and amount >= 0:
        return amount
    if value is not None:
        _warn(f"cost.aiUsd {value!r} is not a finite non-negative number; the cost is unknown")
    return None


def _compute(compute: Any) -> tuple[float | None, float | None, str | None, bool]:
    """``(hours, raw amount, raw unit, understood)`` of a ``cost.compute`` value."""
    if isinstance(compute, Mapping):
        amount = _float_or_none(compute.get("amount"))
        unit = compute.get("unit", "hours")
        unit_text = unit if isinstance(unit, str) else None
        factor = COMPUTE_UNIT_TO_HOURS.get(unit_text.strip().lower()) if unit_text else None
        if factor is None:
            _warn(
                f"cost.compute has unit {unit!r}, which this version does not know; "
                "compute_hours is None and the raw amount and unit are kept"
            )
            return None, amount, str(unit), False
        hours = amount * factor if amount is not None else None
        return hours, amount, unit_text, True
    if (as_number := _float_or_none(compute)) is not None:
        return as_number, as_number, "hours", True
    return None, None, None, compute is None


@dataclass(frozen=True, slots=True)
class Cost:
    """What a completed task cost: AI spend in USD and compute in hours.

    ``compute`` in minutes, seconds, milliseconds or days is converted to hours;
    ``compute_amount`` / ``compute_unit`` keep the value as sent. A unit this version
    does not know leaves ``compute_hours`` None (with a ``RuntimeWarning``), never
    dropping the raw figures. An ``aiUsd`` that is not a finite non-negative number is
    None (unknown) and its raw value stays in ``extra["aiUsd"]``.

    Example:
        >>> Cost.from_wire({"aiUsd": 0.42, "compute": {"unit": "hours", "amount": 0.02}})
        Cost(ai_usd=0.42, compute_hours=0.02)
        >>> Cost.from_wire({"compute": {"unit": "minutes", "amount": 3}}).compute_hours
        0.05
    """

    ai_usd: float | None = None
    compute_hours: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    compute_amount: float | None = field(default=None, repr=False)
    compute_unit: str | None = field(default=None, repr=False)

    @classmethod
    def from_wire(cls, raw: Any) -> Cost:
        if not isinstance(raw, Mapping):
            return cls()
        compute = raw.get("compute")
        hours, amount, unit, understood = _compute(compute)
        ai_usd = _ai_usd(raw)
        extra = {k: v for k, v in raw.items() if k not in ("aiUsd", "compute")}
        if ai_usd is None and raw.get("aiUsd") is not None:
            extra["aiUsd"] = raw["aiUsd"]
        if not understood:
            extra["compute"] = compute
        return cls(
            ai_usd=ai_usd,
            compute_hours=hours,
            extra=extra,
            compute_amount=amount,
            compute_unit=unit,
        )


@dataclass(frozen=True, slots=True)
class Reuse:
    """The run's reuse-key snapshot: which saved automation ran and what changed.

    Example:
        >>> Reuse.from_wire({"key": "yc", "used": True, "updated": False}).used
        True
    """

    key: str
    used: bool = False
    created: bool | None = None
    updated: bool = False
    revision_id: str | None = None
    revision_timestamp: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, raw: Any) -> Reuse | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("key"), str):
            return None
        known = ("key", "used", "created", "updated", "revision_id", "revision_timestamp")
        created = raw.get("created")
        stamps, unparsed = _timestamps(raw, ("revision_timestamp",))
        return cls(
            key=raw["key"],
            used=bool(raw.get("used", False)),
            created=bool(created) if created is not None else None,
            updated=bool(raw.get("updated", False)),
            revision_id=raw.get("revision_id"),
            revision_timestamp=stamps["revision_timestamp"],
            extra={k: v for k, v in raw.items() if k not in known} | unparsed,
        )


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """The error block of a failed task: ``code`` (e.g. ``timeout``) and ``message``."""

    code: str
    message: str
    details: Any = None


@dataclass(frozen=True, slots=True)
class InlineResult:
    """A small result delivered in the response body under ``result.data``."""

    data: Any
    type: Literal["inline"] = "inline"


@dataclass(frozen=True, slots=True)
class FileResult:
    """A large result delivered as a signed, expiring URL.

    The URL's query string is a bearer secret: ``repr()`` hides it. Download with
    ``client.download(file_result, path)``.

    Example:
        >>> f = FileResult(url="https://f.example/r.json?sig=s", content_type="application/json",
        ...                size_bytes=10, expires_at=None)
        >>> "sig=s" in repr(f)
        False
    """

    url: str = field(repr=False)
    content_type: str
    size_bytes: int
    expires_at: datetime | None
    preview: Any = None
    web_task_id: str | None = None
    type: Literal["file"] = "file"
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"FileResult(url={redact_url(self.url)!r}, content_type={self.content_type!r}, "
            f"size_bytes={self.size_bytes}, expires_at={self.expires_at!r})"
        )

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the signed URL's advertised expiry has passed."""
        if self.expires_at is None:
            return False
        return (now or datetime.now(UTC)) >= self.expires_at


def _parse_result(
    raw: Any, web_task_id: str, result_url: Any = None
) -> InlineResult | FileResult | None:
    if raw is None and isinstance(result_url, str) and result_url:
        # ``resultUrl`` (named by the OpenAPI description) without a ``result`` block: a
        # file result whose type and size were not advertised (the reader sniffs it).
        return FileResult(
            url=result_url,
            content_type="application/octet-stream",
            size_bytes=-1,
            expires_at=None,
            web_task_id=web_task_id,
        )
    if not isinstance(raw, Mapping):
        return None
    kind = raw.get("type")
    if kind == "file" or (kind is None and isinstance(raw.get("file"), Mapping)):
        f = raw.get("file")
        if not isinstance(f, Mapping) or not isinstance(f.get("url"), str):
            raise ProtocolError("file result without a file.url")
        size = f.get("sizeBytes")
        known = ("url", "contentType", "sizeBytes", "expiresAt", "preview")
        stamps, unparsed = _timestamps(f, ("expiresAt",))
        return FileResult(
            url=f["url"],
            content_type=str(f.get("contentType") or "application/octet-stream"),
            size_bytes=int(size) if isinstance(size, int) and not isinstance(size, bool) else -1,
            expires_at=stamps["expiresAt"],
            preview=f.get("preview", raw.get("preview")),
            web_task_id=web_task_id,
            extra={k: v for k, v in f.items() if k not in known} | unparsed,
        )
    return InlineResult(data=raw.get("data"))


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """Common fields of every status. Use ``isinstance`` or ``status`` to branch.

    Example:
        >>> s = parse_status({"webTaskId": "wt_1", "status": "pending",
        ...                   "createdAt": "2026-05-19T12:00:00Z"})
        >>> (type(s).__name__, s.terminal)
        ('Pending', False)
    """

    web_task_id: str
    status: str
    created_at: datetime | None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        """True once the task can no longer change (completed or canceled)."""
        return self.status in ("completed", "canceled")

    def to_wire(self, *, redact: bool = True) -> dict[str, Any]:
        """The response body this status was parsed from.

        With ``redact`` (the default) a file result's signed URL loses its query string,
        so the copy is safe to store in ledgers and logs; ``parse_status`` reads it back.
        """
        body = copy.deepcopy(dict(self.raw))
        if redact:
            file = (
                (body.get("result") or {}).get("file")
                if isinstance(body.get("result"), dict)
                else None
            )
            if isinstance(file, dict) and isinstance(file.get("url"), str):
                file["url"] = redact_url(file["url"])
            if isinstance(body.get("resultUrl"), str):
                body["resultUrl"] = redact_url(body["resultUrl"])
        return body


@dataclass(frozen=True, slots=True)
class Pending(TaskStatus):
    """Created, not yet executing (queued behind the workspace cap or its reuseKey)."""


@dataclass(frozen=True, slots=True)
class Started(TaskStatus):
    """Executing since ``started_at``."""

    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Completed(TaskStatus):
    """Finished: ``outcome`` is ``success`` (with ``result``) or ``failed`` (with ``error``)."""

    outcome: str = "success"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    reuse: Reuse | None = None
    cost: Cost = field(default_factory=Cost)
    result: InlineResult | FileResult | None = None
    error: TaskFailure | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    @property
    def duration_s(self) -> float | None:
        """Seconds between start and completion, when both are known."""
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    def raise_for_outcome(self) -> Completed:
        """Return self on success; raise ``TaskFailedError`` with the error code otherwise.

        Example:
            >>> status = client.wait("wt_123").raise_for_outcome()  # doctest: +SKIP
        """
        if self.succeeded:
            return self
        code = self.error.code if self.error else "unknown"
        message = self.error.message if self.error else "no error message"
        hint = {
            "workspace-rate-limited": "the workspace was at its concurrency cap; resubmit later",
            "internal-error": "a service-side crash; a resubmission usually succeeds",
            "unauthenticated": "check INTUNED_API_KEY",
            "no-ai-credits-left": "add AI credits (or BYOK) before submitting more tasks",
            "timeout": "the task ran out of time; simplify it or split the work",
            "rejected": "the service refused the task; check the task text and start URL",
        }.get(code, "see the error message")
        raise TaskFailedError(
            f"web task failed with {code}: {message} ({hint})",
            code=code,
            web_task_id=self.web_task_id,
            status=self,
            cost_usd=self.cost.ai_usd,
            details=self.error.details if self.error else None,
        )


@dataclass(frozen=True, slots=True)
class Canceled(TaskStatus):
    """Canceled before completing."""

    def raise_for_outcome(self) -> Canceled:
        """Always raises ``TaskCanceledError``: a canceled task has no result."""
        raise TaskCanceledError(
            "web task was canceled before completing; submit it again if still needed",
            web_task_id=self.web_task_id,
            status=self,
        )

    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UnknownStatus(TaskStatus):
    """A ``status`` value this version does not know (the API grew a state).

    Never terminal, so ``wait`` and the batch runner keep polling under their usual
    deadline; the raw body is in ``raw``. Parsing one emits a ``RuntimeWarning``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     s = parse_status({"webTaskId": "wt_1", "status": "paused"})
        >>> (type(s).__name__, s.status, s.terminal)
        ('UnknownStatus', 'paused', False)
    """


_COMMON = ("webTaskId", "status", "createdAt")
_KNOWN = {
    "pending": _COMMON,
    "started": (*_COMMON, "startedAt"),
    "completed": (
        *_COMMON,
        *("outcome", "startedAt", "completedAt", "reuse", "cost", "result", "error"),
        "resultUrl",
    ),
    "canceled": (*_COMMON, "startedAt", "completedAt"),
}


def _failure(error: Any) -> TaskFailure | None:
    if not isinstance(error, Mapping):
        return None
    return TaskFailure(
        code=str(error.get("code", "unknown")),
        message=str(error.get("message", "")),
        details=error.get("details"),
    )


def parse_status(payload: Any) -> TaskStatus:
    """Parse a result-endpoint body into a ``TaskStatus`` subclass.

    Raises ``ProtocolError`` when the body is not an object or lacks a string ``status``
    or ``webTaskId``. A status value this version does not know gives ``UnknownStatus``
    (not terminal) and a ``RuntimeWarning``; timestamps that do not parse become None,
    their raw text kept in ``extra``.
    """
    if not isinstance(payload, Mapping):
        raise ProtocolError(f"result body is not a JSON object: {type(payload).__name__}")
    status = payload.get("status")
    web_task_id = payload.get("webTaskId")
    if not isinstance(status, str) or not status or not isinstance(web_task_id, str):
        raise ProtocolError(
            f"result body has status {status!r} and webTaskId {web_task_id!r}; expected a "
            "status (pending, started, completed, canceled) and a webTaskId",
            web_task_id=web_task_id if isinstance(web_task_id, str) else None,
        )
    known = _KNOWN.get(status, _COMMON)
    stamps, unparsed = _timestamps(payload, ("createdAt", "startedAt", "completedAt"))
    common: dict[str, Any] = {
        "web_task_id": web_task_id,
        "status": status,
        "created_at": stamps["createdAt"],
        "extra": {k: v for k, v in payload.items() if k not in known} | unparsed,
        "raw": payload,
    }
    if status not in _KNOWN:
        _warn(
            f"web task {web_task_id} has status {status!r}, which this version does not "
            "know; treating it as still running (upgrade webtask-frames if the API grew)"
        )
        return UnknownStatus(**common)
    if status == "pending":
        return Pending(**common)
    if status == "started":
        return Started(**common, started_at=stamps["startedAt"])
    if status == "canceled":
        return Canceled(
            **common, started_at=stamps["startedAt"], completed_at=stamps["completedAt"]
        )
    failure = _failure(payload.get("error"))
    outcome = payload.get("outcome")
    if outcome not in ("success", "failed"):
        outcome = "failed" if failure is not None else "success"
    return Completed(
        **common,
        outcome=outcome,
        started_at=stamps["startedAt"],
        completed_at=stamps["completedAt"],
        reuse=Reuse.from_wire(payload.get("reuse")),
        cost=Cost.from_wire(payload.get("cost")),
        result=_parse_result(payload.get("result"), web_task_id, payload.get("resultUrl")),
        error=failure,
    )


def status_summary(status: TaskStatus) -> dict[str, Any]:
    """A JSON-friendly summary of a status (no signed URLs), for ``DataFrame.attrs``."""
    out: dict[str, Any] = {"webtask_id": status.web_task_id, "status": status.status}
    for f in dataclasses.fields(status):
        if f.name in ("web_task_id", "status", "extra", "raw", "result", "error", "reuse", "cost"):
            continue
        out[f.name] = getattr(status, f.name)
    if isinstance(status, Completed):
        cost = status.cost
        out["cost"] = {"ai_usd": cost.ai_usd, "compute_hours": cost.compute_hours}
        if cost.compute_hours is None and cost.compute_amount is not None:
            # A unit we could not convert: keep the figures as sent, never drop them.
            out["cost"].update(compute_amount=cost.compute_amount, compute_unit=cost.compute_unit)
        out["reuse"] = (
            {
                "key": status.reuse.key,
                "used": status.reuse.used,
                "created": status.reuse.created,
                "updated": status.reuse.updated,
                "revision_id": status.reuse.revision_id,
                "revision_timestamp": status.reuse.revision_timestamp,
            }
            if status.reuse
            else None
        )
        out["result_type"] = status.result.type if status.result else None
        out["duration_s"] = status.duration_s
        if status.error:
            out["error"] = {"code": status.error.code, "message": status.error.message}
    return out
