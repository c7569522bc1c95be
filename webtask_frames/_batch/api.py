"""``run_batch``: a parameter sweep of Web Tasks, concurrent, crash-safe and budget-aware.

This module holds the public entry points and the dry run; the engine is ``_runner``,
its decisions ``_scheduler``, its durability ``_ledger``, its inputs ``_plan`` and its
result ``_batch_result``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from .._exceptions import InvalidInputError
from .._tables.validate import check_mode
from .._wire.client import AsyncClient, Client
from .._wire.policies import RetryPolicy
from .._wire.portal import run_sync
from .engine import Options, Runner, history
from .ledger import Ledger
from .plan import BatchPlan, Template, build_plan
from .result import IN_FLIGHT, SUCCEEDED, BatchResult, ItemReport, build_tasks_table
from .scheduler import Scheduler

__all__ = ["BatchPlan", "BatchResult", "run_batch", "run_batch_async"]

logger = logging.getLogger("webtask_frames")


def _check_options(max_concurrency: Any, max_cost_usd: Any, validate: Any, retry: Any) -> None:
    if max_concurrency is not None and (
        not isinstance(max_concurrency, int)
        or isinstance(max_concurrency, bool)
        or max_concurrency < 1
    ):
        raise InvalidInputError(
            f"max_concurrency: expected an int >= 1, got {max_concurrency!r}",
            field="max_concurrency",
        )
    if max_cost_usd is not None and (
        isinstance(max_cost_usd, bool)
        or not isinstance(max_cost_usd, int | float)
        or not max_cost_usd >= 0
    ):
        raise InvalidInputError(
            f"max_cost_usd: expected a number of dollars >= 0, got {max_cost_usd!r}",
            field="max_cost_usd",
        )
    check_mode(validate)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidInputError(
            f"retry: expected a RetryPolicy, got {type(retry).__name__}", field="retry"
        )


def _resolve_client(client: Any, retry: RetryPolicy | None) -> tuple[AsyncClient, bool]:
    if client is None:
        return (AsyncClient(retry=retry) if retry is not None else AsyncClient()), True
    if isinstance(client, Client):
        return client.async_client, False
    if isinstance(client, AsyncClient):
        return client, False
    raise InvalidInputError(
        f"client: expected a Client or AsyncClient, got {type(client).__name__}", field="client"
    )


def _dry_run(plan: BatchPlan, ledger_path: Path | None, max_concurrency: int) -> BatchResult:
    ledger = Ledger.open_readonly(ledger_path, plan) if ledger_path is not None else None
    try:
        rows = ledger.attempts() if ledger is not None else []
    finally:
        if ledger is not None:
            ledger.close()
    durations, costs, warm = history(rows)
    latest = {row.item: row for row in rows}
    reports, to_run = [], []
    for item in plan.items:
        report = ItemReport(item.index, item.parameters, item.reuse_key)
        row = latest.get(item.index)
        if row is not None and row.state == "terminal" and row.outcome == "success":
            report.status, report.webtask_id = SUCCEEDED, row.web_task_id
        else:
            to_run.append(item.index)
        reports.append(report)
    sched = Scheduler(
        plan.keys,
        max_concurrency=max_concurrency,
        durations=durations,
        warm_keys=warm,
        items=to_run,
    )
    order, makespan = sched.simulate()
    known = not costs.empty
    total = 0.0
    for index in to_run:
        est = costs.estimate(plan.items[index].reuse_key, cold=sched.is_cold(index))
        total += est.mean if est is not None else 0.0
    plan = BatchPlan(
        task=plan.task,
        model=plan.model,
        output_schema=plan.output_schema,
        items=plan.items,
        order=order,
        estimated_cost_usd=total if known else None,
        estimated_duration_s=makespan if not durations.empty else None,
    )
    return BatchResult(
        plan=plan,
        records_table=pa.table({}),
        tasks_table=build_tasks_table(reports, plan.parameter_names),
        dry_run=True,
        ledger=ledger_path,
    )


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
) -> BatchResult:
    """Async twin of ``run_batch`` (same arguments and result).

    Example:
        >>> result = await run_batch_async("Scrape", {"batch": ["S24"]})  # doctest: +SKIP
    """
    began = time.monotonic()
    _check_options(max_concurrency, max_cost_usd, validate, retry)
    plan = build_plan(
        task,
        grid,
        start_url=start_url,
        output_schema=output_schema,
        reuse_key=reuse_key,
        model=model,
    )
    ledger_path = Path(ledger) if ledger is not None else None
    if dry_run:
        cap = max_concurrency or getattr(client, "max_concurrency", None) or 10
        return _dry_run(plan, ledger_path, cap)
    if cache_dir is None and ledger_path is not None:
        cache_dir = ledger_path.with_name(ledger_path.name + ".cache")
    book = Ledger.open(ledger_path, plan) if ledger_path is not None else None
    try:
        http, owned = _resolve_client(client, retry)
    except BaseException:
        if book is not None:
            book.close()
        raise
    before = (http.counts.start, http.counts.result, http.counts.download)
    try:
        options = Options(
            max_concurrency=max_concurrency or http.max_concurrency,
            max_cost_usd=float(max_cost_usd) if max_cost_usd is not None else None,
            retry=retry or http.retry,
            validate=validate,
            record_path=record_path,
            progress=progress,
            resubmit_ambiguous=resubmit_ambiguous,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            ledger_path=ledger_path,
        )
        runner = Runner(plan, http, options, book)
        try:
            await runner.run()
        except asyncio.CancelledError:
            left = [s.report.webtask_id for s in runner.items if s.report.status == IN_FLIGHT]
            logger.warning(
                "batch canceled; %d task(s) keep running server-side%s",
                len(left),
                ": re-run with the same ledger to re-attach" if book else f": {left[:20]}",
            )
            raise
    finally:
        if book is not None:
            book.close()
        if owned:
            await http.aclose()
    if runner.stopped_reason:
        logger.error("batch stopped early (%s): %s", runner.stopped_reason, runner.stop_message)
    result = BatchResult(
        plan=plan,
        records_table=runner.records(),
        tasks_table=build_tasks_table([s.report for s in runner.items], plan.parameter_names),
        stopped_reason=runner.stopped_reason,
        stopped_message=runner.stop_message,
        validation_errors=sorted(runner.validation_errors),
        requests={
            "start": http.counts.start - before[0],
            "result": http.counts.result - before[1],
            "download": http.counts.download - before[2],
        },
        elapsed_s=time.monotonic() - began,
        ledger=ledger_path,
        cache_dir=options.cache_dir,
    )
    logger.info("%r", result)
    return result


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
) -> BatchResult:
    """Run one web task per grid item, concurrently, and collect the rows.

    ``grid`` is a dict of lists (cartesian product), a list of parameter dicts, or a
    DataFrame (one item per row). ``reuse_key`` and ``start_url`` may be fixed strings,
    format strings over the parameters (``"yc_{batch}"``) or callables of the parameters.
    Items sharing a reuseKey run one at a time (the service serialises them); at most
    ``max_concurrency`` (default: the client's, 10) run at once.

    Outcomes: ``workspace-rate-limited`` is resubmitted after a backoff (and lowers the
    concurrency for a while); ``internal-error`` is resubmitted up to
    ``retry.max_failed_resubmits`` times; ``timeout``, ``rejected`` and ``canceled`` are
    final; ``unauthenticated``, ``no-ai-credits-left`` or HTTP 401 stop all submissions
    (``result.stopped_reason``). ``max_cost_usd`` stops submitting before spent plus the
    estimated cost of in-flight tasks would pass it. With ``ledger="sweep.db"`` every
    submission is recorded durably; re-running the same call re-attaches and never pays
    twice for a finished item. A submission whose fate is unknown (a crash or a dropped
    connection between POST and response) is reported as ambiguous and resubmitted only
    with ``resubmit_ambiguous=True``. ``dry_run=True`` returns the plan and a cost
    estimate without sending anything.

    Raises ``InvalidInputError`` (naming the field) before any request for bad input.

    Example:
        >>> result = run_batch(                                       # doctest: +SKIP
        ...     "Scrape the companies of this YC batch",
        ...     {"batch": ["S24", "W24", "S23"]},
        ...     reuse_key="yc_companies",
        ...     ledger="yc.db",
        ... )
        >>> result.records.groupby("batch").size()                  # doctest: +SKIP
    """
    return run_sync(
        run_batch_async(
            task,
            grid,
            start_url=start_url,
            output_schema=output_schema,
            reuse_key=reuse_key,
            model=model,
            client=client,
            max_concurrency=max_concurrency,
            ledger=ledger,
            max_cost_usd=max_cost_usd,
            retry=retry,
            validate=validate,
            record_path=record_path,
            progress=progress,
            dry_run=dry_run,
            resubmit_ambiguous=resubmit_ambiguous,
            cache_dir=cache_dir,
        )
    )
