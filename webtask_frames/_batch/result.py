"""``BatchResult``: what ``run_batch`` returns, with Arrow tables inside and pandas views.

Three tables: ``records`` (every valid row of every successful item, with the item's
parameter columns, ``_webtask_id``, ``_item_key`` and ``_item``), ``tasks`` (one row per
grid item, in grid order: identity, parameters, where its result came from, task id,
status, outcome, error, attempts, cost, timings, reuse flags, result type, row counts,
skip reason) and ``attempts`` (one row per billed task of the grid's items, every attempt
of every run: what ``<table>_tasks`` holds in DuckDB). All are kept as ``pyarrow.Table``;
the pandas properties are views with pyarrow dtypes. With a sink, records are not kept in
memory: ``records`` reads them back from the sink when asked.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import InvalidInputError
from .._sinks.dataset import ParquetSink
from .._sinks.duckdb import write_duckdb
from .._sinks.duckdb_sink import DuckDBSink
from .._sinks.parquet import merge_parquet_file, write_parquet
from .._tables.unify import table_to_pandas
from .._version import __version__
from .plan import BatchPlan
from .plots import COST_COLUMNS, cost_chart, cost_rows, timeline
from .priors import prior_for
from .records import empty_records, invalid_only, sink_rows, valid_only
from .report import (
    TASK_COLUMNS,
    StatusCounts,
    build_attempts_table,
)
from .status import ItemStatus

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes

__all__ = ["BatchResult", "plan_lines"]


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
        sink: where rows were landed as items finished (``sink=``), or None.

    Example:
        >>> result = run_batch("Scrape", {"batch": ["S24", "W24"]})  # doctest: +SKIP
        >>> result.records.head()                                  # doctest: +SKIP
        >>> result.failed[["batch", "status", "error_code"]]       # doctest: +SKIP
    """

    plan: BatchPlan
    records_table: pa.Table | None = field(repr=False)
    tasks_table: pa.Table = field(repr=False)
    attempts_table: pa.Table | None = field(default=None, repr=False)
    # With a sink, records are read back from it on first use (None: kept in memory),
    # and only the invalid rows (validate="flag") are kept here.
    records_loader: Callable[[], pa.Table] | None = field(default=None, repr=False)
    invalid_table: pa.Table | None = field(default=None, repr=False)
    # Rows of succeeded tasks that a failing sink did not take (see ``unlanded``).
    unlanded_table: pa.Table | None = field(default=None, repr=False)
    sink: Any = field(default=None, repr=False)
    stopped_reason: str | None = None
    stopped_message: str | None = None
    dry_run: bool = False
    validation_errors: list[tuple[int, int, str, str]] = field(default_factory=list, repr=False)
    requests: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    # AI cost of the tasks this run started or re-attached (reused results cost 0 now).
    new_cost_usd: float = 0.0
    ledger: Path | None = None
    cache_dir: Path | None = None

    # -- tables -----------------------------------------------------------------------

    @property
    def unlanded(self) -> pd.DataFrame:
        """Valid rows of paid tasks that the sink failed to land (``stopped_reason ==
        "sink-error"``): kept here so they are not lost; a rerun on the same ledger lands
        them without a new task. Empty when every row landed.

        Example:
            >>> if len(result.unlanded):                       # doctest: +SKIP
            ...     result.unlanded.to_parquet("rescue.parquet")
        """
        if self.unlanded_table is None:
            return table_to_pandas(empty_records(self.plan))
        return table_to_pandas(valid_only(self.unlanded_table))

    def _records(self) -> pa.Table:
        if self.records_table is None:
            if self.records_loader is None:
                raise RuntimeError(
                    "this result's rows went to the sink callable and were not kept; collect "
                    "them in the callable, or pass sink=DuckDBSink(...) / ParquetSink(...), "
                    "which read them back"
                )
            self.records_table = self.records_loader()
        return self.records_table

    def _split(self, *, valid: bool) -> pa.Table:
        # With validate="flag" the runner keeps invalid rows marked by ``_valid``; the
        # public tables separate them: valid rows in ``records``, the rest in ``invalid``.
        # With a sink the valid rows are read back from it, the invalid ones kept here.
        if valid:
            return valid_only(self._records())
        if self.records_table is None and self.invalid_table is not None:
            return invalid_only(self.invalid_table)
        return invalid_only(self._records())

    def to_arrow(self) -> pa.Table:
        """All valid records as a ``pyarrow.Table``."""
        return self._split(valid=True)

    def tasks_arrow(self) -> pa.Table:
        """The per-item status table as a ``pyarrow.Table``."""
        return self.tasks_table

    def attempts_arrow(self) -> pa.Table:
        """One row per billed task of the grid's items (``attempts``), as Arrow."""
        if self.attempts_table is None:
            return build_attempts_table([], self.plan.parameter_names)
        return self.attempts_table

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
    def attempts(self) -> pd.DataFrame:
        """One row per task billed for the grid's items, every attempt of every run on the
        ledger (``_webtask_id``, ``_item_key``, the parameters, attempt number, status,
        outcome, error, model, cost, timings): what ``to_duckdb`` lands in
        ``<table>_tasks``, so its ``cost_ai_usd`` sums to what the results cost.

        Example:
            >>> result.attempts.groupby("model")["cost_ai_usd"].sum()  # doctest: +SKIP
        """
        return table_to_pandas(self.attempts_arrow())

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per grid item, in grid order (pyarrow dtypes): ``_item`` (its position
        in this call's grid), ``_item_key`` (its identity in every run), the parameters,
        ``source`` (``reused``: a result the ledger already had, no request; ``started``:
        submitted by this run; ``reattached``: a task an earlier run started), then the
        task id, status, outcome, error, attempts, cost (every attempt, all runs),
        timings, reuse flags and row counts.

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
                and not (c in ("webtask_id", "source") and table[c].null_count == table.num_rows)
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

    def _landed_items(self) -> list[str]:
        """Identities of the items whose rows this result holds (succeeded)."""
        return [k for k in self._succeeded()["_item_key"].to_pylist() if k is not None]

    def _succeeded(self) -> pa.Table:
        """The tasks-table rows of the items that succeeded."""
        return self.tasks_table.filter(pc.equal(self.tasks_table["status"], ItemStatus.SUCCEEDED))

    def _sink_rows(self) -> pa.Table:
        """The valid records as sinks store them: identity ``_item_key`` and ``_row``
        (position within the item), without ``_item`` (a position in this call's grid,
        meaningless in a table that outlives it)."""
        return sink_rows(self.to_arrow())

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
        self,
        path: str | os.PathLike[str],
        *,
        partition_by: Sequence[str] | str | None = None,
        mode: Literal["merge", "replace"] = "merge",
    ) -> Path:
        """Write the records to Parquet, merged by identity, atomically; billed tasks go
        beside them (``x_tasks.parquet`` / ``<dir>_tasks/``).

        A path ending in ``.parquet`` is one file; anything else is a dataset directory
        with one file per item (``ParquetSink``'s layout), hive-partitioned by
        ``partition_by`` (parameter columns). ``mode="merge"`` (the default) keeps every
        other item already there and replaces these items' rows, so rerunning or growing a
        sweep never duplicates a row; ``mode="replace"`` writes this result alone (any
        column may then partition). Partition values are encoded path-safely (``a/b``
        becomes ``a%2Fb``); provenance (task, reuse keys, schema hash, library version)
        goes in the metadata.

        Example:
            >>> result.to_parquet("companies", partition_by=["batch"])  # doctest: +SKIP
        """
        rows, attempts = self._sink_rows(), self.attempts_arrow()
        if mode == "replace":
            return write_parquet(
                rows, path, partition_by=partition_by, provenance=self.provenance()
            )
        if mode != "merge":
            raise InvalidInputError(f"mode: {mode!r} is not one of merge, replace", field="mode")
        target = Path(path)
        if target.suffix == ".parquet" and not partition_by:
            return merge_parquet_file(
                target,
                rows,
                attempts,
                replace_items=self._landed_items(),
                provenance=self.provenance(),
            )
        sink = ParquetSink(target, partition_by=partition_by)
        sink.check_columns(self.plan.parameter_names)
        sink.land(rows, attempts, replace_items=self._landed_items(), provenance=self.provenance())
        return target

    def to_duckdb(
        self,
        database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
        table: str,
        *,
        mode: Literal["append", "replace", "merge"] = "merge",
        key: Sequence[str] | None = None,
    ) -> None:
        """Write records to ``table`` and one row per billed task to ``<table>_tasks``, in
        one transaction.

        ``database`` is a path or an open DuckDB connection (never closed here). ``mode``:
        ``merge`` (the default) keeps each item's rows from its latest successful task,
        exactly once: these items' earlier rows are replaced, every other item's are
        kept, so rerunning or growing a sweep never duplicates a row; ``append`` adds the
        rows; ``replace`` recreates both tables. ``<table>_tasks`` is merged on
        ``_webtask_id`` in every mode (a billed task is one row, however often it lands),
        so ``SUM(cost_ai_usd)`` over it is what the table cost. ``key`` merges on other
        columns instead of the item's identity (``_item_key``). New columns are added, a
        lossless widening (BIGINT to DOUBLE) is applied; any other type change is a clear
        error. Nested data stays STRUCT/LIST (query it with ``unnest``).

        Example:
            >>> result.to_duckdb("sweep.duckdb", "companies")  # doctest: +SKIP
        """
        if key is not None:
            write_duckdb(
                database,
                table,
                self._sink_rows(),
                self.attempts_arrow(),
                mode=mode,
                key=tuple(key),
                tasks_key=("_webtask_id",),
            )
            return
        with DuckDBSink(database, table, mode=mode) as sink:
            sink.land(self._sink_rows(), self.attempts_arrow(), replace_items=self._landed_items())

    # -- figures ----------------------------------------------------------------------

    @property
    def cost_usd(self) -> float:
        """AI cost of every attempt of every item (failed and retried attempts included),
        in every run on the ledger: what these results cost."""
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

    def _row_counts(self) -> tuple[int, int]:
        """(valid, invalid) rows, from the tasks table when the rows are in a sink (so a
        repr never reads a sweep's rows back)."""
        if self.records_table is None:
            ok = self._succeeded()
            total = int(pc.sum(ok["n_records"]).as_py() or 0)
            invalid = int(pc.sum(ok["n_invalid"]).as_py() or 0)
            return total - invalid, invalid
        valid = int(self.to_arrow().num_rows)
        return valid, self.records_table.num_rows - valid

    @property
    def n_records(self) -> int:
        """Number of valid records."""
        return self._row_counts()[0]

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
            n_valid, n_invalid = self._row_counts()
            lines.append(("records", str(n_valid)))
            if n_invalid:
                lines.append(("invalid rows", f"{n_invalid}: see result.invalid"))
            lines.append(("cost", f"${self.cost_usd:.2f} (${self.new_cost_usd:.2f} in this run)"))
            sources = self._sources()
            if sources:
                lines.append(("results", sources))
            lines.append(("elapsed", f"{self.elapsed_s:.1f}s"))
        if self.stopped_reason:
            lines.append(("STOPPED", f"{self.stopped_reason}: {self.stopped_message}"))
        n_amb = int(sum(1 for v in self.tasks_table["ambiguous_attempts"].to_pylist() if v))
        if n_amb:
            lines.append(("ambiguous", f"{n_amb} item(s): see result.ambiguous"))
        if self.ledger is not None:
            lines.append(("ledger", str(self.ledger)))
        return lines

    def _sources(self) -> str:
        """``"3 reused, 2 started"``: where the items' results came from in this run."""
        counts: dict[str, int] = {}
        for source in self.tasks_table["source"].to_pylist():
            if source is not None:
                counts[source] = counts.get(source, 0) + 1
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

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
    name for name, _ in TASK_COLUMNS if name not in ("webtask_id", "status", "source", "reuse_key")
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
