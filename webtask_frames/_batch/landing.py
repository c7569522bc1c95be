"""Rows land as items finish: each finished item goes to the sweep's consumers in order.

A *consumer* is a sink (``DuckDBSink``, ``ParquetSink``, or any callable
``(item_report, pyarrow.Table) -> None``) or ``iter_batch``'s queue. ``Lander`` hands
every item that ended succeeded or failed in this run to each consumer, one item at a
time, on one worker thread: sink I/O (a DuckDB commit, an fsync) never blocks the event
loop, a sink sees one call at a time from one thread (what a DuckDB connection needs),
and a slow consumer holds back the next landing rather than the polling.

A successful item lands with its valid rows (``sink_rows``: identity ``_item_key`` and
``_row``, no grid position); a failed one with no rows, so its billed tasks still reach
``<table>_tasks``. After landing, a sweep with a sink drops the item's valid rows from
memory: memory is bounded by the items in flight, not by the sweep.

When every consumer already holds a result (``landed_tasks()`` of the built-in sinks
lists the tasks whose rows they committed), a rerun does not read it again at all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .records import sink_rows
from .report import ItemReport

__all__ = ["Consumer", "Lander", "valid_rows"]

logger = logging.getLogger("webtask_frames")

Consumer = Callable[[ItemReport, pa.Table], None]


def valid_rows(table: pa.Table) -> pa.Table:
    """The rows of ``table`` that passed validation (all of them without ``_valid``)."""
    if "_valid" not in table.column_names:
        return table
    return table.filter(pc.fill_null(table["_valid"], True))


def invalid_rows(table: pa.Table) -> pa.Table | None:
    """The rows that failed validation (``validate="flag"``), or None when there are none."""
    if "_valid" not in table.column_names:
        return None
    bad = table.filter(pc.invert(pc.fill_null(table["_valid"], True)))
    return bad if bad.num_rows else None


class Lander:
    """Lands finished items in the consumers, in completion order, on one thread.

    ``empty`` is the zero-row table a failed item lands with. ``failed`` (set by the
    worker) holds the first landing error; the engine then stops submitting.

    Example:
        >>> lander = Lander([print_sink], empty=pa.table({}))  # doctest: +SKIP
        >>> lander.start(); lander.put(report, table); await lander.drain()  # doctest: +SKIP
    """

    def __init__(self, consumers: Sequence[Consumer], *, empty: pa.Table) -> None:
        self.consumers = list(consumers)
        self.empty = sink_rows(empty)
        self.error: BaseException | None = None
        # Told of each item that did not land, with its table (to keep it in memory).
        self.on_error: Callable[[ItemReport, BaseException, pa.Table | None], None] | None = None
        self._queue: asyncio.Queue[tuple[ItemReport, pa.Table | None] | None] = asyncio.Queue()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.consumers)

    def landed_tasks(self) -> set[str]:
        """Tasks whose rows every consumer already holds (empty when one cannot say)."""
        sets = []
        for consumer in self.consumers:
            landed = getattr(consumer, "landed_tasks", None)
            if not callable(landed):
                return set()
            sets.append(set(landed()))
        return set.intersection(*sets) if sets else set()

    async def landed(self) -> set[str]:
        """``landed_tasks()``, asked on the landing thread (after ``start``)."""
        if not self.consumers:
            return set()
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.landed_tasks)

    def start(self) -> None:
        if not self.consumers or self._worker is not None:
            return
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wtf-sink")
        self._worker = asyncio.ensure_future(self._run())

    def put(self, report: ItemReport, table: pa.Table | None) -> None:
        """Queue a finished item (``table``: its rows, None for a failed item)."""
        if self._worker is not None and self.error is None:
            self._queue.put_nowait((report, table))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while (entry := await self._queue.get()) is not None:
            report, table = entry
            if self.error is not None:  # nothing more lands after a failure: say so
                if self.on_error is not None:
                    self.on_error(report, self.error, table)
                continue
            rows = self.empty if table is None else sink_rows(valid_rows(table))
            try:
                for consumer in self.consumers:
                    await loop.run_in_executor(self._pool, consumer, report, rows)
            except Exception as exc:  # the sink's problem: stop paying for rows it drops
                logger.error("item %d: rows not landed: %s", report.index, exc)
                self.error = exc
                if self.on_error is not None:
                    self.on_error(report, exc, table)

    async def drain(self) -> None:
        """Wait until every queued item has landed, close the sinks (on their thread: a
        DuckDB file is released), then stop the worker."""
        if self._worker is None:
            return
        self._queue.put_nowait(None)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.shield(self._worker)
        finally:
            self._worker = None
            for consumer in self.consumers:
                close: Any = getattr(consumer, "close", None)
                if callable(close):
                    await asyncio.shield(loop.run_in_executor(self._pool, close))
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
