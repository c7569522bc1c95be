"""``BatchResult``: what ``run_batch`` returns, with Arrow tables inside and pandas views.

Two tables: ``records`` (every valid row of every successful item, with the item's
parameter columns, ``_webtask_id`` and ``_item``) and ``tasks`` (one row per grid item, in
grid order: parameters, task id, status, outcome, error, attempts, cost, timings, reuse
flags, result type, row counts, skip reason). Both are kept as ``pyarrow.Table``; the
pandas properties are views with pyarrow dtypes.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._sinks.duckdb import write_duckdb
from .._sinks.parquet import write_parquet
from .._tables.compiled import record_arrow_schema
from .._tables.unify import table_to_pandas, unify_tables
from .._version import __version__
from .plan import BatchPlan
from .plots import COST_COLUMNS, cost_chart, cost_rows, timeline
from .priors import prior_for
from .status import ItemStatus

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes

__all__ = [
    "TASK_COLUMNS",
    "BatchResult",
    "ItemReport",
    "StatusCounts",
    "build_tasks_table",
    "plan_lines",
    "records_of",
]

_TS = pa.timestamp("ms", tz="UTC")
TASK_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("webtask_id", pa.string()),
    ("status", pa.string()),
    ("outcome", pa.string()),
    ("error_code", pa.string()),
    ("error_message", pa.string()),
    ("attempts", pa.int64()),
    ("ambiguous_attempts", pa.int64()),
    ("cost_ai_usd", pa.float64()),
    ("cost_compute_hours", pa.float64()),
    ("created_at", _TS),
    ("started_at", _TS),
    ("completed_at", _TS),
    ("duration_s", pa.float64()),
    ("reuse_key", pa.string()),
    ("reuse_used", pa.bool_()),
    ("reuse_created", pa.bool_()),
    ("reuse_updated", pa.bool_()),
    ("revision_id", pa.string()),
    ("result_type", pa.string()),
    ("n_records", pa.int64()),
    ("n_invalid", pa.int64()),
    ("skipped_reason", pa.string()),
)
_FIXED = {"_item", *(name for name, _ in TASK_COLUMNS)}


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
class ItemReport:
    """One row of the tasks table (the runner fills these in)."""

    index: int
    parameters: dict[str, Any]
    reuse_key: str | None
    status: ItemStatus = ItemStatus.PLANNED
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


def build_tasks_table(reports: list[ItemReport], parameter_names: list[str]) -> pa.Table:
    """One row per item: ``_item``, the parameters, then ``TASK_COLUMNS``."""
    columns: dict[str, pa.Array] = {"_item": pa.array([r.index for r in reports], pa.int64())}
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


def _polars() -> Any:
    try:
        # Optional dependency: imported only when a polars frame is asked for.
        import polars
    except ImportError:
        raise ImportError(
            'BatchResult.to_polars() needs polars: pip install "webtask-frames[polars]"'
        ) from None
    return polars


@dataclass
class BatchResult:
    """The outcome of ``run_batch``: rows, one status row per item, cost and the plan.

    Attributes:
        plan: the validated sweep (items, chains, predicted order, cost estimate).
        stopped_reason: why submissions stopped early, as a code: ``unauthenticated``
            (HTTP 401/403 or the outcome), ``no-ai-credits-left``, ``budget``,
            ``not-found`` (unknown workspace); None when the batch ran to the end.
        stopped_message: the same in a sentence, with what to do.
        dry_run: True when nothing was sent (the tasks table then shows the plan).
        validation_errors: ``(item, row, json_path, message)`` of invalid records.
        requests: HTTP requests sent during this run, by endpoint.
        elapsed_s: wall time of the run.
        ledger: the ledger file, when one was used.

    Example:
        >>> result = run_batch("Scrape", {"batch": ["S24", "W24"]})  # doctest: +SKIP
        >>> result.records.head()                                  # doctest: +SKIP
        >>> result.failed[["batch", "status", "error_code"]]       # doctest: +SKIP
    """

    plan: BatchPlan
    records_table: pa.Table = field(repr=False)
    tasks_table: pa.Table = field(repr=False)
    stopped_reason: str | None = None
    stopped_message: str | None = None
    dry_run: bool = False
    validation_errors: list[tuple[int, int, str, str]] = field(default_factory=list, repr=False)
    requests: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    ledger: Path | None = None
    cache_dir: Path | None = None

    # -- tables -----------------------------------------------------------------------

    def _split(self, *, valid: bool) -> pa.Table:
        # With validate="flag" the runner keeps invalid rows marked by ``_valid``; the
        # public tables separate them: valid rows in ``records``, the rest in ``invalid``.
        table = self.records_table
        if "_valid" not in table.column_names:
            return table if valid else table.slice(0, 0)
        flags = pc.fill_null(table["_valid"], True)
        if valid:
            return table.filter(flags).drop_columns(["_valid", "_errors"])
        return table.filter(pc.invert(flags)).drop_columns(["_valid"])

    def to_arrow(self) -> pa.Table:
        """All valid records as a ``pyarrow.Table``."""
        return self._split(valid=True)

    def tasks_arrow(self) -> pa.Table:
        """The per-item status table as a ``pyarrow.Table``."""
        return self.tasks_table

    def to_polars(self) -> pl.DataFrame:
        """All valid records as a ``polars.DataFrame``, built from the Arrow table without
        copying where the types allow. Needs polars (``pip install
        "webtask-frames[polars]"``).

        Example:
            >>> result.to_polars().group_by("batch").len()  # doctest: +SKIP
        """
        return _polars().from_arrow(self.to_arrow())  # type: ignore[no-any-return]

    def tasks_polars(self) -> pl.DataFrame:
        """The per-item status table (``tasks_arrow()``) as a ``polars.DataFrame``."""
        return _polars().from_arrow(self.tasks_table)  # type: ignore[no-any-return]

    @property
    def records(self) -> pd.DataFrame:
        """All valid records (pyarrow dtypes), with parameters, ``_webtask_id``, ``_item``."""
        return table_to_pandas(self._split(valid=True))

    @property
    def invalid(self) -> pd.DataFrame:
        """Rows that failed validation (kept with ``validate="flag"``), with ``_errors``."""
        return table_to_pandas(self._split(valid=False))

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per grid item, in grid order (pyarrow dtypes).

        For a dry run, the plan: ``_item``, the parameters, ``webtask_id`` (only when the
        ledger shows items already done), ``status``, ``reuse_key`` (the item's chain),
        ``order`` (predicted start position, 0 first; null when already done), ``cold``
        (the key's first run, which builds its automation) and ``estimated_cost_usd`` /
        ``estimated_duration_s``.
        """
        table = self.tasks_table
        if self.dry_run and "order" in table.column_names:
            shown = [
                c
                for c in table.column_names
                if c not in _RUN_ONLY
                and not (c == "webtask_id" and table[c].null_count == table.num_rows)
            ]
            table = table.select(shown)
        return table_to_pandas(table)

    def plot(self, ax: Axes | None = None) -> Axes:
        """A timeline of the runs: one bar per task from start to completion (real
        seconds, the service's timestamps), one row per reuse key, first runs and reuse
        runs in two colours. Needs matplotlib (``pip install "webtask-frames[plot]"``).
        Draws on ``ax`` when given; returns the matplotlib Axes.

        Example:
            >>> result.plot()  # doctest: +SKIP
        """
        return timeline(self.tasks_table, ax)

    def plot_costs(self, ax: Axes | None = None) -> Axes:
        """A bar chart of AI cost per run, for each reuse key: one first run beside one
        reuse run (means; the totals are in ``cost_by_key()``). Needs matplotlib; returns
        the Axes.

        Example:
            >>> result.plot_costs()  # doctest: +SKIP
        """
        return cost_chart(self.tasks_table, ax)

    def cost_by_key(self) -> pd.DataFrame:
        """AI cost per reuse key, first runs (which build the automation) against reuse
        runs (which replay it): ``reuse_key``, ``first_runs``, ``first_run_usd``,
        ``reuse_runs``, ``reuse_usd``, ``total_usd``; one row per key, in first-seen
        order. Items never run are left out.

        Example:
            >>> result.cost_by_key()  # doctest: +SKIP
              reuse_key  first_runs  first_run_usd  reuse_runs  reuse_usd  total_usd
            0   yc_ai           1           0.31           3       0.24       0.55
        """
        return pd.DataFrame(cost_rows(self.tasks_table), columns=list(COST_COLUMNS))

    @property
    def failed(self) -> pd.DataFrame:
        """Rows of ``tasks`` that did not succeed: failed, skipped, ambiguous, in flight."""
        mask = pc.invert(pc.equal(self.tasks_table["status"], ItemStatus.SUCCEEDED))
        return table_to_pandas(self.tasks_table.filter(mask))

    @property
    def ambiguous(self) -> pd.DataFrame:
        """Items with a submission whose fate is unknown (possibly billed twice)."""
        return table_to_pandas(
            self.tasks_table.filter(pc.greater(self.tasks_table["ambiguous_attempts"], 0))
        )

    # -- sinks ------------------------------------------------------------------------

    def _keyed(self, table: pa.Table, *, rows: bool) -> pa.Table:
        """``table`` plus ``_item_key`` (the item's stable identity) and, for records,
        ``_row`` (position within the item): the default merge key of reruns."""
        ids = {item.index: item.item_id for item in self.plan.items}
        items = table["_item"].to_pylist()
        keyed = table.append_column("_item_key", pa.array([ids.get(i) for i in items], pa.string()))
        if rows:
            positions: dict[int, int] = {}
            row_numbers = []
            for i in items:
                row_numbers.append(positions.get(i, 0))
                positions[i] = row_numbers[-1] + 1
            keyed = keyed.append_column("_row", pa.array(row_numbers, pa.int64()))
        return keyed

    def provenance(self) -> dict[str, Any]:
        """Where the rows came from: task, model, reuse keys, schema hash, library version.

        Stored in Parquet metadata by ``to_parquet``. Never holds a key or a signed URL.
        """
        schema = self.plan.output_schema
        schema_hash = (
            hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:16]
            if schema is not None
            else None
        )
        keys = sorted({item.reuse_key for item in self.plan.items if item.reuse_key})
        return {
            "task": self.plan.task,
            "model": self.plan.model,
            "reuse_keys": keys,
            "schema_sha256_16": schema_hash,
            "items": len(self.plan.items),
            "library": f"webtask-frames {__version__}",
        }

    def to_parquet(
        self, path: str | os.PathLike[str], *, partition_by: Sequence[str] | str | None = None
    ) -> Path:
        """Write the records to one Parquet file, or a hive-partitioned dataset directory.

        Written atomically (temporary name, then rename); partition values are encoded
        path-safely (``a/b`` becomes ``a%2Fb``), so no parameter value can escape ``path``.
        Provenance (task, reuse keys, schema hash, library version) goes in the metadata.

        Example:
            >>> result.to_parquet("companies", partition_by=["batch"])  # doctest: +SKIP
        """
        return write_parquet(
            self._keyed(self.to_arrow(), rows=True),
            path,
            partition_by=partition_by,
            provenance=self.provenance(),
        )

    def to_duckdb(
        self,
        database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
        table: str,
        *,
        mode: Literal["append", "replace", "merge"] = "append",
        key: Sequence[str] | None = None,
    ) -> None:
        """Write records to ``table`` and one row per task to ``<table>_tasks``, atomically.

        ``database`` is a path or an open DuckDB connection (never closed here). ``mode``:
        ``append``, ``replace``, or ``merge``, which upserts on ``key`` so rerunning a sweep
        never duplicates rows. Rows carry the item's identity ``_item_key`` and their
        position ``_row``; by default a merged item's new rows replace all its old ones.
        New columns are added; a changed column type is a clear error.
        Nested data stays STRUCT/LIST (query it with ``unnest``).

        Example:
            >>> result.to_duckdb("sweep.duckdb", "companies", mode="merge")  # doctest: +SKIP
        """
        write_duckdb(
            database,
            table,
            self._keyed(self.to_arrow(), rows=True),
            self._keyed(self.tasks_table, rows=False),
            mode=mode,
            # By default a rerun item's rows replace all of that item's earlier rows (rows
            # are identified by ``_item_key`` + ``_row``), so a shorter rerun leaves no stale
            # rows behind.
            key=tuple(key) if key is not None else ("_item_key",),
            tasks_key=("_item_key",),
        )

    # -- figures ----------------------------------------------------------------------

    @property
    def cost_usd(self) -> float:
        """AI cost of every attempt of every item (failed and retried attempts included)."""
        total = pc.sum(self.tasks_table["cost_ai_usd"]).as_py()
        return float(total or 0.0)

    @property
    def counts(self) -> StatusCounts:
        """Items by status, e.g. ``{"succeeded": 11, "failed": 1}``: a property like every
        other figure (``cost_usd``, ``n_records``). Calling it, ``counts()``, the spelling
        of earlier versions, still works and gives the same dict."""
        out = StatusCounts()
        for status in self.tasks_table["status"].to_pylist():
            out[status] = out.get(status, 0) + 1
        return out

    @property
    def n_records(self) -> int:
        """Number of valid records."""
        return int(self.to_arrow().num_rows)

    @property
    def ok(self) -> bool:
        """True when every item succeeded."""
        return (
            not self.dry_run
            and self.counts.get(ItemStatus.SUCCEEDED, 0) == self.tasks_table.num_rows
        )

    # -- display ----------------------------------------------------------------------

    def _summary(self) -> list[tuple[str, str]]:
        counts = self.counts
        lines = [
            ("task", self.plan.task if len(self.plan.task) <= 80 else self.plan.task[:77] + "..."),
            ("items", f"{self.tasks_table.num_rows} in {len(self.plan.chains)} reuse-key chains"),
            ("status", ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))),
        ]
        if self.dry_run:
            lines += plan_lines(self.plan)
        else:
            lines.append(("records", str(self.n_records)))
            n_invalid = self.records_table.num_rows - self.n_records
            if n_invalid:
                lines.append(("invalid rows", f"{n_invalid}: see result.invalid"))
            lines.append(("cost", f"${self.cost_usd:.2f}"))
            lines.append(("elapsed", f"{self.elapsed_s:.1f}s"))
        if self.stopped_reason:
            lines.append(("STOPPED", f"{self.stopped_reason}: {self.stopped_message}"))
        n_amb = int(sum(1 for v in self.tasks_table["ambiguous_attempts"].to_pylist() if v))
        if n_amb:
            lines.append(("ambiguous", f"{n_amb} item(s): see result.ambiguous"))
        if self.ledger is not None:
            lines.append(("ledger", str(self.ledger)))
        return lines

    def summary(self) -> str:
        """A few lines for a terminal: items by status, records, cost, stop reason."""
        lines = self._summary()
        width = max(len(k) for k, _ in lines)
        return "\n".join(f"{k.rjust(width)}: {v}" for k, v in lines)

    def __repr__(self) -> str:
        counts = self.counts
        parts = ", ".join(f"{s}={n}" for s, n in sorted(counts.items()))
        if self.dry_run:
            est = self.plan.estimated_cost_usd
            return (
                f"BatchResult(dry_run, items={self.tasks_table.num_rows}, {parts}, "
                f"estimated_cost_usd={'unknown' if est is None else f'{est:.2f}'})"
            )
        extra = f", stopped={self.stopped_reason!r}" if self.stopped_reason else ""
        return (
            f"BatchResult(items={self.tasks_table.num_rows}, {parts}, "
            f"records={self.n_records}, cost_usd={self.cost_usd:.2f}{extra})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._summary()
        )
        parts = [f"<div><b>BatchResult</b><table>{rows}</table>"]
        if self.dry_run:
            plan = self.tasks.sort_values("order", na_position="last")
            cols = ["order", "_item", "reuse_key", "cold", "estimated_cost_usd"]
            parts.append("<p>Plan, in predicted order (first 20):</p>")
            parts.append(plan[cols].head(20).to_html(index=False))
        else:
            costs = self.cost_by_key()
            if len(costs):
                parts.append("<p>Cost per reuse key (first run vs reuse):</p>")
                parts.append(costs.head(20).to_html(index=False, float_format="{:.4f}".format))
            bad = self.failed
            if len(bad):
                cols = [c for c in ("_item", "status", "error_code", "skipped_reason") if c in bad]
                parts.append("<p>Not succeeded (first 10):</p>")
                parts.append(bad[cols].head(10).to_html(index=False))
        return "".join(parts) + "</div>"


# Columns a dry run has nothing to say about: hidden from its ``tasks`` view.
_RUN_ONLY = frozenset(
    name for name, _ in TASK_COLUMNS if name not in ("webtask_id", "status", "reuse_key")
)


def plan_lines(plan: BatchPlan) -> list[tuple[str, str]]:
    """A dry run's summary lines: chains, predicted order, estimates and their basis."""
    chains = list(plan.chains.items())
    shown = ", ".join(f"{k if k is not None else '(no key)'}: {len(v)}" for k, v in chains[:6])
    lines = [("chains", shown + (f", ... ({len(chains)} in all)" if len(chains) > 6 else ""))]
    if plan.order:
        first = ", ".join(str(i) for i in plan.order[:12])
        more = f", ... ({len(plan.order)} to run)" if len(plan.order) > 12 else ""
        lines.append(("order", f"items {first}{more}; see result.tasks['order']"))
    else:
        lines.append(("order", "nothing left to run"))
    basis = (
        prior_for(plan.model).describe()
        if plan.estimate_basis == "prior"
        else "from the ledger's history"
    )
    est = plan.estimated_cost_usd
    lines.append(("estimated cost", "unknown" if est is None else f"${est:.2f} ({basis})"))
    span = plan.estimated_duration_s
    if span is not None:
        note = " (prior)" if plan.estimate_basis == "prior" else ""
        lines.append(("estimated time", f"{span:.0f}s at full concurrency{note}"))
    return lines


def empty_records(plan: BatchPlan) -> pa.Table:
    """The records table of a sweep with no rows: still has its columns (the schema's
    fields, the parameters, ``_item``, ``_webtask_id``), so queries and sinks work."""
    fields = list(record_arrow_schema(plan.schema) or [])
    names = {f.name for f in fields}
    for name in plan.parameter_names:
        if name not in names:
            values = [item.parameters.get(name) for item in plan.items]
            try:
                dtype = pa.array(values).type
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                dtype = pa.string()
            fields.append(pa.field(name, dtype))
    fields += [pa.field("_item", pa.int64()), pa.field("_webtask_id", pa.string())]
    return pa.schema(fields).empty_table()


def records_of(tables: Sequence[pa.Table | None], plan: BatchPlan) -> pa.Table:
    """The items' rows in grid order (``None``: an item without rows); with no rows at
    all, ``empty_records(plan)``, so the table still has its columns."""
    present = [t for t in tables if t is not None]
    return unify_tables(present) if present else empty_records(plan)
