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
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .records import sink_rows, valid_only
from .report import ItemReport, cast_columns

__all__ = ["Consumer", "Lander"]

logger = logging.getLogger("webtask_frames")

Consumer = Callable[[ItemReport, pa.Table], None]


@dataclass
class _Entry:
    report: ItemReport
    table: pa.Table | None  # the item's rows; None: no rows (failed, or tasks only)
    tasks_only: bool  # only its billed tasks, for the sinks that keep tasks
    slot: bool  # holds one of the ``reserve`` slots until landed


def _is_table_sink(consumer: Consumer) -> bool:
    """A sink that keeps billed tasks (DuckDBSink, ParquetSink): told of every task."""
    return callable(getattr(consumer, "landed_tasks", None))


class Lander:
    """Lands finished items in the consumers, in completion order, on one thread.

    ``empty`` is the zero-row records table of the sweep: a failed item lands with it, and
    its parameter column types are the ones every item's rows and tasks are cast to (one
    type per column across items, whatever each item's own values would infer).
    ``limit`` bounds the items read but not yet landed (``reserve``): memory holds that
    many results, however many the sweep has. ``error`` holds the first landing error;
    the engine then stops submitting, and every later item is reported, not dropped.

    Example:
        >>> lander = Lander([print_sink], empty=pa.table({}), limit=8)  # doctest: +SKIP
        >>> lander.start(); lander.put(report, table); await lander.drain()  # doctest: +SKIP
    """

    def __init__(
        self, consumers: Sequence[Consumer], *, empty: pa.Table, limit: int, params: Sequence[str]
    ) -> None:
        self.consumers = list(consumers)
        self.types = {n: empty.schema.field(n).type for n in params if n in empty.column_names}
        self.empty = sink_rows(empty)
        self.error: BaseException | None = None
        # Told of each item that did not land, with its table (to keep it in memory).
        self.on_error: Callable[[ItemReport, BaseException, pa.Table | None], None] | None = None
        self.on_landed: Callable[[ItemReport], None] | None = None
        self._queue: asyncio.Queue[_Entry | None] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max(1, limit))
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.consumers)

    @property
    def keeps_tasks(self) -> bool:
        """Whether a consumer keeps billed tasks (tasks-only landings are worth queueing)."""
        return any(_is_table_sink(c) for c in self.consumers)

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

    async def reserve(self) -> None:
        """Wait for room before reading a result: a slow sink holds back the reading of
        more results (never the polling), so memory stays bounded."""
        if self.consumers:
            await self._slots.acquire()

    def release(self) -> None:
        """Give back a ``reserve`` slot that will not be landed."""
        if self.consumers:
            self._slots.release()

    def put(
        self,
        report: ItemReport,
        table: pa.Table | None,
        *,
        tasks_only: bool = False,
        slot: bool = False,
    ) -> None:
        """Queue a finished item: its rows (``table``; None for a failed item), or only
        its billed tasks. Always queued: after a failure the worker reports it."""
        if self._worker is None:
            if slot:
                self.release()
            return
        self._queue.put_nowait(_Entry(report, table, tasks_only, slot))

    async def _land(self, entry: _Entry) -> None:
        loop = asyncio.get_running_loop()
        table = entry.table
        rows = (
            self.empty if table is None else cast_columns(sink_rows(valid_only(table)), self.types)
        )
        entry.report.column_types = self.types
        for consumer in self.consumers:
            if entry.tasks_only and not _is_table_sink(consumer):
                continue
            await loop.run_in_executor(self._pool, consumer, entry.report, rows)

    async def _run(self) -> None:
        while (entry := await self._queue.get()) is not None:
            try:
                if self.error is not None:  # nothing more lands after a failure: say so
                    raise self.error
                await self._land(entry)
            except Exception as exc:  # the sink's problem: stop paying for rows it drops
                if self.error is None:
                    logger.error("item %d: rows not landed: %s", entry.report.index, exc)
                    self.error = exc
                if self.on_error is not None and not entry.tasks_only:
                    self.on_error(entry.report, exc, entry.table)
            else:
                if self.on_landed is not None and entry.table is not None:
                    self.on_landed(entry.report)
            finally:
                if entry.slot:
                    self._slots.release()

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
