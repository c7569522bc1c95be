"""``iter_batch``: a sweep's items as they finish, for partial results or a sink of your own.

Both twins run ``run_batch``'s engine with one more consumer: a bounded queue between the
landing thread and the caller. A slow caller therefore slows the landing of rows, never
the polling; leaving the loop early (``break``) cancels the sweep the way Ctrl-C does
(tasks in flight keep running server-side, the ledger re-attaches them on a rerun).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa

from .._exceptions import InvalidInputError
from .._options import BatchOptions
from .._wire.portal import submit
from .api import UNWIND_TIMEOUT_S, _run, run_batch
from .report import ItemReport

__all__ = ["iter_batch", "iter_batch_async"]

# Finished items waiting for the caller; more holds back the landing thread.
QUEUE_ITEMS = 8
_POLL_S = 0.1
_SWEEP_ARGS = {
    name: p.default
    for name, p in inspect.signature(run_batch).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


def _prepare(options: dict[str, Any]) -> tuple[BatchOptions, dict[str, Any]]:
    """``run_batch``'s keyword arguments, checked: the options and ``_run``'s extras."""
    unknown = sorted(set(options) - set(_SWEEP_ARGS))
    if unknown:
        raise TypeError(f"iter_batch() got an unexpected keyword argument {unknown[0]!r}")
    merged = {**_SWEEP_ARGS, **options}
    if merged["dry_run"]:
        raise InvalidInputError(
            "dry_run: iter_batch yields items as they finish; use run_batch(..., "
            "dry_run=True) to see the plan",
            field="dry_run",
        )
    extras = {name: merged.pop(name) for name in ("start_url", "reuse_key", "model")}
    extras["client"] = merged["client"]
    return BatchOptions.build(**merged), extras


async def iter_batch_async(
    task: str, grid: Any, **options: Any
) -> AsyncIterator[tuple[ItemReport, pa.Table]]:
    """Async twin of ``iter_batch`` (same arguments, same items).

    Example:
        >>> async for report, rows in iter_batch_async("Scrape", {"b": ["S24"]}):  # doctest: +SKIP
        ...     print(report.status, rows.num_rows)
    """
    opts, extras = _prepare(options)
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[ItemReport, pa.Table]] = asyncio.Queue(QUEUE_ITEMS)
    closed = threading.Event()

    def consume(report: ItemReport, rows: pa.Table) -> None:  # on the landing thread
        put = asyncio.run_coroutine_threadsafe(items.put((report, rows)), loop)
        while not closed.is_set():
            try:
                put.result(timeout=_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                continue
        put.cancel()

    client = extras.pop("client")
    sweep = asyncio.ensure_future(_run(task, grid, opts, client, **extras, consumers=[consume]))
    try:
        while True:
            getter = asyncio.ensure_future(items.get())
            await asyncio.wait({getter, sweep}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
                continue
            getter.cancel()
            while not items.empty():  # landed before the sweep returned
                yield items.get_nowait()
            sweep.result()  # raises what the sweep raised
            return
    finally:
        closed.set()
        if not sweep.done():
            sweep.cancel()
        await asyncio.gather(sweep, return_exceptions=True)


def iter_batch(task: str, grid: Any, **options: Any) -> Iterator[tuple[ItemReport, pa.Table]]:
    """Run a sweep like ``run_batch`` (same arguments) and yield ``(report, rows)`` for
    each item as it finishes, succeeded (its valid rows) or failed (no rows).

    ``report`` is the item's ``ItemReport`` (``item_key``, ``status``, ``source``,
    ``webtask_id``, ``cost_ai_usd``, ``billed``, ...); ``rows`` a ``pyarrow.Table`` with
    the item's parameters, ``_item_key``, ``_webtask_id`` and ``_row``. Items the
    ledger already holds are yielded too (``source == "reused"``), so a rerun gives the
    whole grid. With ``sink=`` the rows land there as well. Breaking out of the loop
    cancels the sweep (tasks in flight keep running; rerun with the same ledger to
    re-attach them).

    Example:
        >>> for report, rows in iter_batch(                   # doctest: +SKIP
        ...     "Scrape {batch}", {"batch": ["S24", "W24"]}, ledger="yc.db"
        ... ):
        ...     print(report.parameters["batch"], report.status, rows.num_rows)
    """
    opts, extras = _prepare(options)
    items: queue.Queue[tuple[ItemReport, pa.Table]] = queue.Queue(QUEUE_ITEMS)
    closed = threading.Event()

    def consume(report: ItemReport, rows: pa.Table) -> None:  # on the landing thread
        while not closed.is_set():
            try:
                items.put((report, rows), timeout=_POLL_S)
                return
            except queue.Full:
                continue

    client = extras.pop("client")
    sweep = submit(_run(task, grid, opts, client, **extras, consumers=[consume]))
    try:
        while True:
            try:
                yield items.get(timeout=_POLL_S)
            except queue.Empty:
                if sweep.done() and items.empty():
                    sweep.result()  # raises what the sweep raised
                    return
    finally:
        closed.set()
        if not sweep.done():
            sweep.cancel()
            # Return only once the sweep has unwound (ledger closed, lock released).
            concurrent.futures.wait([sweep], timeout=UNWIND_TIMEOUT_S)
