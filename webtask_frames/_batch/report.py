"""What the batch knows of each item: its report (a row of ``tasks``) and its billed tasks.

``ItemReport`` is filled in as an item runs and is what a sink receives beside the
item's rows; ``BilledTask`` is one task the service created for it (one attempt, a row of
``attempts`` and of DuckDB's ``<table>_tasks``). The table builders turn lists of them
into Arrow tables with fixed column types, so an empty sweep still has its columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from .status import ItemStatus

__all__ = [
    "BILLED_COLUMNS",
    "TASK_COLUMNS",
    "BilledTask",
    "ItemReport",
    "StatusCounts",
    "build_attempts_table",
    "build_tasks_table",
    "cast_columns",
    "parameter_column_name",
    "parameter_names",
]

_TS = pa.timestamp("ms", tz="UTC")
# Every column of the tasks and attempts tables, with its one Arrow type.
_TYPES: dict[str, pa.DataType] = {
    "webtask_id": pa.string(),
    "attempt": pa.int64(),
    "status": pa.string(),
    "source": pa.string(),
    "outcome": pa.string(),
    "error_code": pa.string(),
    "error_message": pa.string(),
    "model": pa.string(),
    "attempts": pa.int64(),
    "ambiguous_attempts": pa.int64(),
    "cost_ai_usd": pa.float64(),
    "cost_compute_hours": pa.float64(),
    "created_at": _TS,
    "started_at": _TS,
    "completed_at": _TS,
    "duration_s": pa.float64(),
    "reuse_key": pa.string(),
    "reuse_used": pa.bool_(),
    "reuse_created": pa.bool_(),
    "reuse_updated": pa.bool_(),
    "revision_id": pa.string(),
    "result_type": pa.string(),
    "n_records": pa.int64(),
    "n_invalid": pa.int64(),
    "skipped_reason": pa.string(),
}


def _columns(*names: str) -> tuple[tuple[str, pa.DataType], ...]:
    return tuple((name, _TYPES[name]) for name in names)


# One row per grid item (``result.tasks``), after ``_item``, ``_item_key``, parameters.
TASK_COLUMNS = _columns(
    *("webtask_id", "status", "source", "outcome", "error_code", "error_message"),
    *("attempts", "ambiguous_attempts", "cost_ai_usd", "cost_compute_hours"),
    *("created_at", "started_at", "completed_at", "duration_s"),
    *("reuse_key", "reuse_used", "reuse_created", "reuse_updated", "revision_id"),
    *("result_type", "n_records", "n_invalid", "skipped_reason"),
)
# One row per billed task (``<table>_tasks`` in DuckDB); parameters follow ``_item_key``.
BILLED_COLUMNS = _columns(
    *("attempt", "status", "outcome", "error_code", "error_message", "model"),
    *("reuse_key", "reuse_used", "cost_ai_usd", "cost_compute_hours"),
    *("created_at", "started_at", "completed_at", "duration_s", "n_records", "n_invalid"),
)
_FIXED = {"_item", "_item_key", *(name for name, _ in TASK_COLUMNS + BILLED_COLUMNS)}


class StatusCounts(dict[str, int]):
    """Items by status (a ``dict``). Also callable, returning an equal plain dict, so
    ``result.counts()`` from earlier versions keeps working beside ``result.counts``.

    Example:
        >>> counts = StatusCounts(succeeded=2)
        >>> counts["succeeded"], counts() == counts
        (2, True)
    """

    def __call__(self) -> dict[str, int]:
        return dict(self)


@dataclass
class BilledTask:
    """One task the service created for an item (one attempt): a row of ``attempts``.

    ``new`` says whether this run started or re-attached it (False: an earlier run's).

    Example:
        >>> task = BilledTask("wt_1", attempt=1, model="haiku", reuse_key="yc")
        >>> task.status, task.new
        ('submitted', True)
    """

    webtask_id: str
    attempt: int
    model: str | None
    reuse_key: str | None
    status: str | None = "submitted"
    outcome: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    reuse_used: bool | None = None
    cost_ai_usd: float | None = None
    cost_compute_hours: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_s: float | None = None
    n_records: int | None = None
    n_invalid: int | None = None
    new: bool = True


@dataclass
class ItemReport:
    """One item of a sweep: a row of the tasks table, filled in as the item runs.

    Sinks receive it with the item's rows (``sink(report, rows)``): ``item_key`` is the
    item's identity, ``succeeded`` whether it has rows, ``source`` where its result came
    from (``reused``, ``started``, ``reattached``), ``billed`` every task it paid for and
    ``tasks_arrow()`` those as one row each (what ``<table>_tasks`` holds).

    Example:
        >>> def sink(report, rows):                       # doctest: +SKIP
        ...     print(report.item_key[:8], report.status, rows.num_rows)
    """

    index: int
    parameters: dict[str, Any]
    reuse_key: str | None
    item_key: str = ""
    status: ItemStatus = ItemStatus.PLANNED
    source: str | None = None
    # Why a known item runs again: "refresh" (max_age) or "retry" (retry_failed).
    rerun_reason: str | None = None
    billed: list[BilledTask] = field(default_factory=list, repr=False)
    # The sweep's one Arrow type per parameter column (set before the item is landed).
    column_types: dict[str, pa.DataType] | None = field(default=None, repr=False)
    webtask_id: str | None = None
    outcome: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    ambiguous_attempts: int = 0
    cost_ai_usd: float | None = None
    cost_compute_hours: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_s: float | None = None
    reuse_used: bool | None = None
    reuse_created: bool | None = None
    reuse_updated: bool | None = None
    revision_id: str | None = None
    result_type: str | None = None
    n_records: int | None = None
    n_invalid: int | None = None
    skipped_reason: str | None = None
    # ``cost.compute`` as sent when its unit could not be converted to hours (else None).
    cost_compute_amount: float | None = None
    cost_compute_unit: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the item ended with a usable successful result (its rows landed)."""
        return self.status == ItemStatus.SUCCEEDED

    def tasks_arrow(self) -> pa.Table:
        """Every task billed for this item (all runs), one row each: ``_webtask_id``,
        ``_item_key``, the parameters, then ``BILLED_COLUMNS``."""
        table = build_attempts_table([self], parameter_names(self.parameters))
        types = {parameter_column_name(n): t for n, t in (self.column_types or {}).items()}
        return cast_columns(table, types)

    def add_cost(
        self,
        ai_usd: float | None,
        compute_hours: float | None,
        *,
        compute_amount: float | None = None,
        compute_unit: str | None = None,
    ) -> None:
        """Add one attempt's cost. ``compute_amount``/``compute_unit``: the raw compute
        figures of an attempt whose unit was not understood (kept, never dropped)."""
        if ai_usd is not None:
            self.cost_ai_usd = (self.cost_ai_usd or 0.0) + ai_usd
        if compute_hours is not None:
            self.cost_compute_hours = (self.cost_compute_hours or 0.0) + compute_hours
        elif compute_amount is not None:
            if self.cost_compute_unit in (None, compute_unit):
                self.cost_compute_amount = (self.cost_compute_amount or 0.0) + compute_amount
            self.cost_compute_unit = compute_unit


def _column(values: list[Any]) -> pa.Array:
    """An Arrow column from Python values; mixed or nested values fall back to JSON text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array(
            [None if v is None else json.dumps(v, sort_keys=True, default=str) for v in values],
            pa.string(),
        )


def parameter_column_name(name: str) -> str:
    """A parameter's tasks-table column: its name, or ``param_<name>`` on a clash."""
    return f"param_{name}" if name in _FIXED else name


def cast_columns(table: pa.Table, types: Mapping[str, pa.DataType]) -> pa.Table:
    """``table`` with each column named in ``types`` (when present) cast to its type,
    unsafely: an int parameter becomes text beside the text values of other items.

    Example:
        >>> cast_columns(pa.table({"x": [1]}), {"x": pa.string()})["x"].to_pylist()
        ['1']
    """
    for name, kind in types.items():
        if name in table.column_names and table.schema.field(name).type != kind:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).cast(kind, safe=False))
    return table


def parameter_names(parameters: dict[str, Any]) -> list[str]:
    """An item's parameter columns (``_sandbox``, the sandbox's script, is never one)."""
    return [name for name in parameters if name != "_sandbox"]


def build_attempts_table(reports: Sequence[ItemReport], names: list[str]) -> pa.Table:
    """One row per billed task of ``reports``: ``_webtask_id``, ``_item_key``, the
    parameters ``names``, then ``BILLED_COLUMNS``."""
    pairs = [(r, b) for r in reports for b in r.billed]
    columns: dict[str, pa.Array] = {
        "_webtask_id": pa.array([b.webtask_id for _, b in pairs], pa.string()),
        "_item_key": pa.array([r.item_key for r, _ in pairs], pa.string()),
    }
    for name in names:
        columns[parameter_column_name(name)] = _column([r.parameters.get(name) for r, _ in pairs])
    for name, dtype in BILLED_COLUMNS:
        columns[name] = pa.array([getattr(b, name) for _, b in pairs], dtype)
    return pa.table(columns)


def build_tasks_table(reports: list[ItemReport], parameter_names: list[str]) -> pa.Table:
    """One row per item: ``_item``, ``_item_key``, the parameters, then ``TASK_COLUMNS``."""
    columns: dict[str, pa.Array] = {
        "_item": pa.array([r.index for r in reports], pa.int64()),
        "_item_key": pa.array([r.item_key for r in reports], pa.string()),
    }
    for name in parameter_names:
        columns[parameter_column_name(name)] = _column([r.parameters.get(name) for r in reports])
    for name, dtype in TASK_COLUMNS:
        columns[name] = pa.array([getattr(r, name) for r in reports], dtype)
    if any(r.cost_compute_amount is not None for r in reports):
        # Only when some compute came in a unit we could not convert: the raw figures.
        columns["cost_compute_amount"] = pa.array(
            [r.cost_compute_amount for r in reports], pa.float64()
        )
        columns["cost_compute_unit"] = pa.array([r.cost_compute_unit for r in reports], pa.string())
    return pa.table(columns)
