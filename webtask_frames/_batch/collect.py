"""Turning an item's successful task into rows: read (or re-read) its result, record it.

``Collector`` does the engine's local work after a success: download (at most a few at
a time, so memory holds a bounded number of results), read and validate the result into
an Arrow table with the item's columns (parameters, ``_item``, ``_item_key``,
``_webtask_id``), and record the row counts in the ledger and on the item's billed task.
For a success an earlier run paid for, it reads the cached file or, when the cache is
gone, asks the API for a fresh URL: never a new task.
"""

from __future__ import annotations

import asyncio
import logging

from .._exceptions import WebTaskError
from .._materialize import materialize
from .._options import ReadOptions
from .._wire.client import AsyncClient
from .._wire.models import Completed, FileResult
from .ledger import AttemptRow, Ledger
from .plan import BatchPlan
from .restore import ItemState, is_cached
from .status import ItemStatus

__all__ = ["Collector"]

logger = logging.getLogger("webtask_frames")


class Collector:
    """Rows of succeeded items, for one run; ``validation_errors`` collects
    ``(item, row, json_path, message)`` of invalid records.

    Example:
        >>> collector = Collector(client, plan, read, ledger, 10)  # doctest: +SKIP
        >>> status = await collector.rows(st, done)                # doctest: +SKIP
    """

    def __init__(
        self,
        client: AsyncClient,
        plan: BatchPlan,
        read: ReadOptions,
        ledger: Ledger | None,
        max_concurrency: int,
    ) -> None:
        self.client, self.plan, self.read, self.ledger = client, plan, read, ledger
        self.validation_errors: list[tuple[int, int, str, str]] = []
        self._slots = asyncio.Semaphore(max(4, max_concurrency))

    async def rows(self, st: ItemState, status: Completed) -> ItemStatus:
        """Read ``status``'s result into ``st.table``; the item's final status."""
        report = st.report
        async with self._slots:
            try:
                out = await materialize(
                    self.client,
                    status,
                    output_schema=self.plan.schema,
                    parameters=report.parameters,
                    record_path=self.read.record_path,
                    validate=self.read.validate,
                    cache_dir=self.read.cache_dir,
                    extra_columns={"_item": report.index, "_item_key": report.item_key},
                )
            except Exception as exc:  # local work: report it on the item, keep the batch
                report.error_code = getattr(exc, "code", type(exc).__name__)
                report.error_message = str(exc)
                logger.error("item %d: result not usable: %s", report.index, exc)
                return ItemStatus.FAILED
        st.table = out.table
        report.n_records, report.n_invalid = out.n_records, out.n_invalid
        for billed in report.billed:
            if billed.webtask_id == status.web_task_id:
                billed.n_records, billed.n_invalid = out.n_records, out.n_invalid
        self.validation_errors.extend((report.index, *e) for e in out.errors)
        if self.ledger is not None and st.attempt_id is not None:
            self.ledger.record_materialized(
                st.attempt_id,
                raw_path=str(out.raw_path) if out.raw_path is not None else None,
                n_records=out.n_records,
                n_invalid=out.n_invalid,
            )
        return ItemStatus.SUCCEEDED

    async def reuse(self, st: ItemState, row: AttemptRow) -> ItemStatus:
        """Rows of a success an earlier run recorded (``row``): from the local cache, or
        from a fresh URL for the same task when the cache is gone."""
        status = row.terminal_status()
        try:
            if not isinstance(status, Completed):  # pragma: no cover - guarded by outcome
                raise WebTaskError("ledger terminal record is not a completed status")
            if isinstance(status.result, FileResult) and not is_cached(row.raw_path):
                logger.info("item %d: raw result not cached; fetching a fresh URL", st.report.index)
                fresh = await self.client.result(status.web_task_id)
                if isinstance(fresh, Completed):
                    status = fresh
        except WebTaskError as exc:
            st.report.error_code, st.report.error_message = exc.code, str(exc)
            return ItemStatus.FAILED
        return await self.rows(st, status)
