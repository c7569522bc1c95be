"""``run_batch``: a parameter sweep of Web Tasks, concurrent, crash-safe and budget-aware.

This module holds the public entry points and the dry run; the engine is ``engine``, its
decisions ``scheduler``, ``policy`` and ``budget``, its durability ``ledger``, its inputs
``plan`` and its result ``result``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._options import BatchOptions, resolve_client
from .._wire.client import AsyncClient
from .._wire.policies import RetryPolicy
from .._wire.portal import run_sync
from .._wire.sync import Client
from .engine import Runner
from .estimate import Estimator
from .landing import Consumer
from .ledger import Ledger
from .plan import BatchPlan, Template, build_plan
from .priors import prior_for
from .records import records_from_sink, records_of
from .report import ItemReport, build_attempts_table, build_tasks_table
from .restore import ItemState, RerunRules, history, restore_all
from .result import BatchResult
from .scheduler import Scheduler
from .status import ItemStatus

__all__ = ["BatchPlan", "BatchResult", "run_batch", "run_batch_async"]

logger = logging.getLogger("webtask_frames")

# What ``sink=`` takes: DuckDBSink, ParquetSink (both callables) or any callable.
Sink = Callable[[ItemReport, pa.Table], None]

# How long an interrupted sync run_batch waits for its sweep to close the ledger.
UNWIND_TIMEOUT_S = 30.0


def _cold_items(plan: BatchPlan, to_run: list[int], warm: set[str]) -> set[int]:
    """Items predicted to build their key's automation: each chain's first item still
    to run (unless the ledger shows the key already has saved code); keyless items."""
    seen: set[str] = set(warm)
    cold: set[int] = set()
    for index in to_run:
        key = plan.items[index].reuse_key
        if key is None or key not in seen:
            cold.add(index)
        if key is not None:
            seen.add(key)
    return cold


def _plan_columns(
    plan: BatchPlan, order: list[int], cold: set[int], costs: Estimator, durations: Estimator
) -> dict[str, pa.Array]:
    """The dry run's per-item columns: predicted start position, first run of its key,
    and its estimated cost and duration (null for items already done)."""
    position = {index: n for n, index in enumerate(order)}
    rows: list[tuple[int | None, bool | None, float | None, float | None]] = []
    for item in plan.items:
        if item.index not in position:
            rows.append((None, None, None, None))
            continue
        is_cold = item.index in cold
        cost = costs.estimate(item.reuse_key, cold=is_cold)
        span = durations.estimate(item.reuse_key, cold=is_cold)
        rows.append(
            (
                position[item.index],
                is_cold,
                cost.mean if cost is not None else None,
                span.mean if span is not None else None,
            )
        )
    order_col, cold_col, cost_col, span_col = zip(*rows, strict=True)
    return {
        "order": pa.array(order_col, pa.int64()),
        "cold": pa.array(cold_col, pa.bool_()),
        "estimated_cost_usd": pa.array(cost_col, pa.float64()),
        "estimated_duration_s": pa.array(span_col, pa.float64()),
    }


def _dry_run(plan: BatchPlan, opts: BatchOptions, max_concurrency: int) -> BatchResult:
    """The plan without sending anything: chains, predicted order, estimates, and what a
    run would do with each item the ledger already knows (the run's own rules decide).

    Estimates come from the ledger's history when it has any; otherwise from the
    per-model priors (``priors``), and the summary says so.
    """
    ledger = Ledger.open_readonly(opts.ledger, plan) if opts.ledger is not None else None
    try:
        rows = ledger.attempts() if ledger is not None else []
    finally:
        if ledger is not None:
            ledger.close()
    durations, costs, warm = history(rows)
    basis = "prior" if costs.empty and durations.empty else "history"
    prior = prior_for(plan.model)
    costs.prior, durations.prior = prior.cost_usd, prior.duration_s
    states = [
        ItemState(ItemReport(i.index, i.parameters, i.reuse_key, item_key=i.item_key))
        for i in plan.items
    ]
    to_run = restore_all(states, rows, _rules(opts), plan.item_keys)
    for st in states:
        if st.done_attempt is not None:
            st.report.status, st.report.source = ItemStatus.SUCCEEDED, "reused"
        elif st.reattach is not None:
            st.report.status, st.report.source = ItemStatus.IN_FLIGHT, "reattached"
        elif not st.final:
            st.report.status = ItemStatus.PLANNED
    reports = [st.report for st in states]
    sched = Scheduler(
        plan.keys,
        max_concurrency=max_concurrency,
        durations=durations,
        warm_keys=warm,
        items=to_run,
    )
    order, makespan = sched.simulate()
    cold = _cold_items(plan, to_run, warm)
    columns = _plan_columns(plan, order, cold, costs, durations)
    total = pc.sum(columns["estimated_cost_usd"]).as_py() or 0.0
    plan = replace(
        plan,
        order=order,
        estimated_cost_usd=float(total),
        estimated_duration_s=makespan,
        estimate_basis=basis,
    )
    tasks = build_tasks_table(reports, plan.parameter_names)
    for name, column in columns.items():
        tasks = tasks.append_column(name, column)
    return BatchResult(
        plan=plan,
        records_table=pa.table({}),
        tasks_table=tasks,
        attempts_table=build_attempts_table(reports, plan.parameter_names),
        dry_run=True,
        ledger=opts.ledger,
    )


def _rules(opts: BatchOptions) -> RerunRules:
    return RerunRules.of(opts, opts.retry or RetryPolicy())


async def _execute(runner: Runner, durable: bool) -> None:
    try:
        await runner.run()
    except asyncio.CancelledError:
        left = [
            s.report.webtask_id for s in runner.items if s.report.status == ItemStatus.IN_FLIGHT
        ]
        logger.warning(
            "batch canceled; %d task(s) keep running server-side%s",
            len(left),
            ": re-run with the same ledger to re-attach" if durable else f": {left[:20]}",
        )
        raise
    if runner.stopped_reason:
        logger.error("batch stopped early (%s): %s", runner.stopped_reason, runner.stop_message)


def _reader(sink: Any, plan: BatchPlan, keys: list[str]) -> Callable[[], pa.Table] | None:
    """How ``BatchResult.records`` reads a sink's rows back (None: a plain callable,
    which keeps nothing we can read)."""
    read = getattr(sink, "read", None)
    if not callable(read):
        return None
    index = {item.item_key: item.index for item in plan.items}

    def load() -> pa.Table:
        opener, closer = getattr(sink, "open", None), getattr(sink, "close", None)
        if callable(opener):
            opener()
        try:
            table = read(keys)
        finally:
            if callable(closer):
                closer()
        return records_from_sink(table, index, plan)

    return load


def _kept_rows(runner: Runner) -> tuple[pa.Table, pa.Table | None]:
    """The rows still in memory: every item's (no sink) or only the invalid ones (a
    sink holds the rest); and the rows a failing sink did not take (None: all landed)."""
    unlanded = [s.table for s in runner.items if s.report.error_code == "sink-error"]
    landed = [s.table for s in runner.items if s.report.error_code != "sink-error"]
    missed = records_of(unlanded, runner.plan) if any(t is not None for t in unlanded) else None
    return records_of(landed, runner.plan), missed


def _result(
    runner: Runner,
    opts: BatchOptions,
    sinks: list[Any],
    requests: dict[str, int],
    elapsed_s: float,
) -> BatchResult:
    """The ``BatchResult`` of a finished run. With a sink the items' tables hold only
    their invalid rows by now; ``records`` reads the valid ones back from the sink."""
    plan, reports = runner.plan, [s.report for s in runner.items]
    kept, unlanded = _kept_rows(runner)
    readable = [s for s in sinks if callable(getattr(s, "read", None))]
    keys = [r.item_key for r in reports if r.succeeded]
    return BatchResult(
        plan=plan,
        records_table=None if runner.lander.active else kept,
        records_loader=_reader(readable[0], plan, keys) if readable else None,
        invalid_table=kept if runner.lander.active else None,
        unlanded_table=unlanded,
        tasks_table=build_tasks_table(reports, plan.parameter_names),
        attempts_table=build_attempts_table(reports, plan.parameter_names),
        sink=sinks[0] if len(sinks) == 1 else (sinks or None),
        stopped_reason=runner.stopped_reason,
        stopped_message=runner.stop_message,
        validation_errors=sorted(runner.validation_errors),
        requests=requests,
        elapsed_s=elapsed_s,
        new_cost_usd=sum(b.cost_ai_usd or 0.0 for r in reports for b in r.billed if b.new),
        ledger=opts.ledger,
        cache_dir=opts.read.cache_dir,
    )


def _check_sinks(sinks: list[Any], plan: BatchPlan) -> None:
    for sink in sinks:
        check = getattr(sink, "check_columns", None)
        if callable(check):  # e.g. ParquetSink's partition columns must be parameters
            check(plan.parameter_names)


async def _run(
    task: Any,
    grid: Any,
    opts: BatchOptions,
    client: Any,
    *,
    start_url: Template,
    reuse_key: Template,
    model: Any,
    consumers: list[Consumer] | None = None,
) -> BatchResult:
    """The one body of ``run_batch``, ``run_batch_async`` and ``iter_batch*``, with
    checked options."""
    began = time.monotonic()
    plan = build_plan(
        task,
        grid,
        start_url=start_url,
        output_schema=opts.read.schema,
        reuse_key=reuse_key,
        model=model,
    )
    sinks = list(opts.sink or ())
    _check_sinks(sinks, plan)
    if opts.dry_run:
        cap = opts.max_concurrency or getattr(client, "max_concurrency", None) or 10
        return _dry_run(plan, opts, cap)
    run_options = {"retry_failed": opts.retry_failed, "max_age_s": opts.max_age_s}
    book = (
        Ledger.open(opts.ledger, plan, run_options=run_options) if opts.ledger is not None else None
    )
    try:
        http, owned = resolve_client(client, opts.retry)
    except BaseException:
        if book is not None:
            book.close()
        raise
    before = (http.counts.start, http.counts.result, http.counts.download)
    try:
        runner = Runner(plan, http, opts, book, consumers=sinks + list(consumers or []))
        await _execute(runner, book is not None)
    finally:
        if book is not None:
            book.close()
        if owned:
            await http.aclose()
    requests = {
        "start": http.counts.start - before[0],
        "result": http.counts.result - before[1],
        "download": http.counts.download - before[2],
    }
    result = _result(runner, opts, sinks, requests, time.monotonic() - began)
    logger.info("%r", result)
    return result


async def run_batch_async(
    task: str,
    grid: Any,
    *,
    start_url: Template = None,
    output_schema: Any = None,
    reuse_key: Template = None,
    model: str | None = None,
    client: AsyncClient | Client | None = None,
    max_concurrency: int | None = None,
    ledger: str | os.PathLike[str] | None = None,
    max_cost_usd: float | None = None,
    retry: RetryPolicy | None = None,
    validate: str = "flag",
    record_path: Any = None,
    progress: bool = True,
    dry_run: bool = False,
    resubmit_ambiguous: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
    max_age: float | timedelta | str | None = None,
    sink: Sink | Sequence[Sink] | None = None,
) -> BatchResult:
    """Async twin of ``run_batch`` (same arguments and result).

    Example:
        >>> result = await run_batch_async("Scrape", {"batch": ["S24"]})  # doctest: +SKIP
    """
    opts = BatchOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        cache_dir=cache_dir,
        max_concurrency=max_concurrency,
        max_cost_usd=max_cost_usd,
        retry=retry,
        progress=progress,
        resubmit_ambiguous=resubmit_ambiguous,
        dry_run=dry_run,
        ledger=ledger,
        retry_failed=retry_failed,
        max_age=max_age,
        sink=sink,
    )
    return await _run(
        task, grid, opts, client, start_url=start_url, reuse_key=reuse_key, model=model
    )


def run_batch(
    task: str,
    grid: Any,
    *,
    start_url: Template = None,
    output_schema: Any = None,
    reuse_key: Template = None,
    model: str | None = None,
    client: AsyncClient | Client | None = None,
    max_concurrency: int | None = None,
    ledger: str | os.PathLike[str] | None = None,
    max_cost_usd: float | None = None,
    retry: RetryPolicy | None = None,
    validate: str = "flag",
    record_path: Any = None,
    progress: bool = True,
    dry_run: bool = False,
    resubmit_ambiguous: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
    max_age: float | timedelta | str | None = None,
    sink: Sink | Sequence[Sink] | None = None,
) -> BatchResult:
    """Run one web task per grid item, concurrently, and collect the rows.

    ``grid`` is a dict of lists (cartesian product), a list of parameter dicts, or a
    DataFrame (one item per row). NaN in any grid form is refused (``InvalidInputError``
    naming the item): fill it, or use None (or ``pd.NA``) to send null. ``task`` is a
    format string over the parameters (``"List the {industry} companies"``; write
    ``{{`` / ``}}`` for literal braces), so each item may send its own text; the service
    keys saved automations by reuseKey, so a text that varies within one key is fine.
    ``reuse_key`` and ``start_url`` may be fixed strings, format strings over the
    parameters (``"yc_{batch}"``) or callables of the parameters. A template naming a
    parameter the grid lacks is refused before any request, naming ``task``,
    ``reuse_key`` or ``start_url``. The ``_sandbox`` parameter (the sandbox's per-task
    script) is sent but never becomes a column. Items sharing a reuseKey run one at a
    time (the service serialises them); at most ``max_concurrency`` (default: the
    client's, 10) run at once.

    An item is known by what it asks (``_item_key``: a hash of its task text, start
    URL, parameters, reuse key and output schema; not its position, not the model), so
    two grid items asking the same thing are refused. With ``ledger="sweep.db"`` every
    submission is recorded durably and the ledger spans runs and grids: a run reuses
    every result already paid for (no request), starts what is new, re-attaches what
    still runs and never touches items absent from its grid; ``result.tasks['source']``
    says which (``reused``, ``started``, ``reattached``). ``retry_failed=True`` runs
    again the items whose last attempt failed for good (with ``model=`` a stronger
    model, if you like); ``max_age`` (seconds, a ``timedelta``, or ``"12h"``, ``"7d"``)
    runs again the successes older than that. A submission whose fate is unknown (a
    crash or a dropped connection between POST and response) is reported as ambiguous
    and resubmitted only with ``resubmit_ambiguous=True``.

    Outcomes: ``workspace-rate-limited`` is resubmitted after a backoff (and lowers the
    concurrency for a while); ``internal-error`` is resubmitted up to
    ``retry.max_failed_resubmits`` times; ``timeout``, ``rejected`` and ``canceled`` are
    final; ``unauthenticated``, ``no-ai-credits-left`` or HTTP 401 stop all submissions
    (``result.stopped_reason``). ``max_cost_usd`` stops submitting before the grid's
    spend (all runs) plus the estimated cost of in-flight tasks would pass it.

    ``sink`` lands rows as items finish: ``DuckDBSink(database, table)``,
    ``ParquetSink(path)`` or any callable ``(item_report, pyarrow.Table) -> None``. Each
    item's rows and its billed tasks are committed together, so a killed sweep leaves
    every landed item whole and a rerun completes the table with no duplicate; memory
    stays bounded by the items in flight, and ``result.records`` reads back from the
    sink when asked.

    ``dry_run=True`` sends nothing and returns the plan: what a run would reuse and
    start, each item's chain (reuse key) and predicted start position in
    ``result.tasks`` (``order``), and a cost and time estimate from the ledger's
    history, or from the per-model priors when there is none. ``progress`` shows a bar:
    a widget in notebooks with ipywidgets, nothing in other notebooks, text on stderr in
    a terminal. ``validate`` defaults to ``"flag"`` here (invalid rows go to
    ``result.invalid``), unlike ``read_webtask``'s ``"raise"``: one bad row should not
    throw away a paid sweep.

    Raises ``InvalidInputError`` (naming the field) before any request for bad input:
    every option ``read_webtask`` refuses is refused here too, with the same message.

    Example:
        >>> result = run_batch(                                       # doctest: +SKIP
        ...     "Scrape the companies of this YC batch",
        ...     {"batch": ["S24", "W24", "S23"]},
        ...     reuse_key="yc_companies",
        ...     ledger="yc.db",
        ...     sink=DuckDBSink("yc.duckdb", "companies"),
        ... )
        >>> result.records.groupby("batch").size()                  # doctest: +SKIP
    """
    opts = BatchOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        cache_dir=cache_dir,
        max_concurrency=max_concurrency,
        max_cost_usd=max_cost_usd,
        retry=retry,
        progress=progress,
        resubmit_ambiguous=resubmit_ambiguous,
        dry_run=dry_run,
        ledger=ledger,
        retry_failed=retry_failed,
        max_age=max_age,
        sink=sink,
    )
    run = _run(task, grid, opts, client, start_url=start_url, reuse_key=reuse_key, model=model)
    guard = _Interruptible()
    try:
        return run_sync(guard.wrap(run))
    except BaseException:
        guard.settle(run)
        raise


class _Interruptible:
    """Lets a sync ``run_batch`` interrupted by Ctrl-C return only once the canceled sweep
    on the loop thread has unwound: its ledger closed (its lock released) and its client
    closed, so an immediate re-run on the same ledger is not refused as locked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self._abandoned = False
        self._done = threading.Event()

    async def wrap(self, coro: Coroutine[Any, Any, BatchResult]) -> BatchResult:
        with self._lock:
            if self._abandoned:  # interrupted before it began: nothing to unwind
                coro.close()
                raise asyncio.CancelledError
            self._started = True
        try:
            return await coro
        finally:
            self._done.set()

    def settle(self, coro: Coroutine[Any, Any, BatchResult]) -> None:
        """After the call failed or was interrupted: wait until the sweep has unwound."""
        with self._lock:
            self._abandoned = True
            started = self._started
        if started:
            # Bounded: a second Ctrl-C (or a cleanup that hangs) still gets the user out.
            self._done.wait(timeout=UNWIND_TIMEOUT_S)
        else:
            coro.close()  # never began (its task was canceled first): nothing was opened
