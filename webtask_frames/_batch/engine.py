"""The batch engine: one event loop driving every item of a sweep through its attempts.

It is an event loop around three I/O-free parts: ``_plan`` (validated items),
``Scheduler`` (what to submit next) and ``PollPlan`` (when to poll); the ``Ledger``
makes every submission durable. One coroutine drives one attempt of one item::

    intent (ledger) -> POST start -> submitted (ledger) -> polls -> terminal (ledger)
        -> success: materialize rows (download cached beside the ledger)
        -> workspace-rate-limited: requeue after backoff, halve the concurrency
        -> internal-error: requeue, up to retry.max_failed_resubmits
        -> unauthenticated / no-ai-credits-left: stop submitting, finish what is in flight
        -> timeout / rejected / canceled: final failure

The main loop admits items while the scheduler, the budget and the stop flag allow, and
sleeps until an attempt finishes or a backoff expires. Re-runs on a ledger restore each
item from its attempts first: successes are re-materialized from the local cache,
submitted tasks are re-attached, intent-only ones are ambiguous.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from .._exceptions import (
    FATAL_TASK_CODES,
    AmbiguousSubmissionError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    ProtocolError,
    WebTaskError,
)
from .._materialize import materialize
from .._tables.compiled import record_arrow_schema
from .._tables.unify import unify_tables
from .._wire.client import AsyncClient
from .._wire.models import Canceled, Completed, FileResult, Pending, Started, TaskStatus
from .._wire.policies import RetryPolicy
from .ledger import AttemptRow, Ledger
from .plan import BatchPlan
from .result import (
    AMBIGUOUS,
    FAILED,
    IN_FLIGHT,
    PLANNED,
    SKIPPED,
    SUCCEEDED,
    ItemReport,
)
from .scheduler import ClockRate, Estimate, Estimator, PollPlan, Scheduler

__all__ = ["Options", "Runner", "history"]

logger = logging.getLogger("webtask_frames")

# A rate-limited outcome is not a failure, but a workspace saturated by someone else
# for this long is: give the item up after this many rate-limited resubmissions.
MAX_RATE_LIMITED_RESUBMITS = 20
# Start requests that provably created nothing (429/503/connection refused after the
# client's own retries) are requeued this many times before the item fails.
MAX_NOT_SENT_RESUBMITS = 3
# Consecutive poll errors (after the client's retries) before a task is left in flight.
MAX_POLL_ERRORS = 5


@dataclass
class _Item:
    """Run-time state of one item."""

    report: ItemReport
    attempt_id: int | None = None
    rate_limited: int = 0
    internal_errors: int = 0
    not_sent: int = 0
    holds_slot: bool = False
    final: bool = False
    table: pa.Table | None = None
    cost_estimate: float = 0.0
    done_attempt: AttemptRow | None = None
    reattach: AttemptRow | None = None


@dataclass
class Options:
    max_concurrency: int
    max_cost_usd: float | None
    retry: RetryPolicy
    validate: str
    record_path: Any
    progress: bool
    resubmit_ambiguous: bool
    cache_dir: Path | None
    ledger_path: Path | None


def history(rows: list[AttemptRow]) -> tuple[Estimator, Estimator, set[str]]:
    """Duration and cost estimators, and warm keys, from a ledger's terminal attempts."""
    durations, costs = Estimator(), Estimator()
    warm: set[str] = set()
    for row in rows:
        if row.state != "terminal" or row.outcome != "success":
            continue
        cold = bool(row.cold) if row.cold is not None else True
        durations.observe(row.reuse_key, row.duration_s, cold=cold)
        costs.observe(row.reuse_key, row.cost_ai_usd, cold=cold)
        if row.reuse_key is not None:
            warm.add(row.reuse_key)
    return durations, costs, warm


def fill_from_status(report: ItemReport, status: TaskStatus) -> None:
    report.webtask_id = status.web_task_id
    report.created_at = status.created_at
    if isinstance(status, Started | Completed | Canceled):
        report.started_at = status.started_at
    if isinstance(status, Completed | Canceled):
        report.completed_at = status.completed_at
        if report.started_at and report.completed_at:
            report.duration_s = (report.completed_at - report.started_at).total_seconds()
    if isinstance(status, Completed):
        report.outcome = status.outcome
        report.error_code = status.error.code if status.error else None
        report.error_message = status.error.message if status.error else None
        report.result_type = status.result.type if status.result else None
        if status.reuse is not None:
            if report.reuse_key is None:  # the server generated one (wtr_...): show it
                report.reuse_key = status.reuse.key
            report.reuse_used = status.reuse.used
            report.reuse_created = status.reuse.created
            report.reuse_updated = status.reuse.updated
            report.revision_id = status.reuse.revision_id
    elif isinstance(status, Canceled):
        report.outcome = "canceled"
        report.error_code = "canceled"
        report.error_message = "the task was canceled before completing"


class Runner:
    """One run of a sweep: restore from the ledger, then admit, poll and collect.

    ``run()`` returns when every item is final (or the batch stopped and nothing is in
    flight); ``items`` then hold the per-item reports and tables, ``records()`` the rows.
    """

    def __init__(
        self,
        plan: BatchPlan,
        client: AsyncClient,
        options: Options,
        ledger: Ledger | None,
    ) -> None:
        self.plan = plan
        self.client = client
        self.opt = options
        self.ledger = ledger
        self.items = [_Item(ItemReport(i.index, i.parameters, i.reuse_key)) for i in plan.items]
        rows = ledger.attempts() if ledger is not None else []
        self.durations, self.costs, warm = history(rows)
        self.spent = ledger.spent_usd() if ledger is not None else 0.0
        self.stopped_reason: str | None = None  # a short code: budget, unauthenticated, ...
        self.stop_message: str | None = None
        self.validation_errors: list[tuple[int, int, str, str]] = []
        self._rng = random.Random()
        self.rate = ClockRate(min_span_s=max(2.0, 20 * client.poll.min_s))
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._download_slots = asyncio.Semaphore(max(4, options.max_concurrency))
        to_run = self._restore(rows)
        reattach = [s.report.index for s in self.items if s.reattach is not None]
        self.sched = Scheduler(
            plan.keys,
            max_concurrency=options.max_concurrency,
            durations=self.durations,
            warm_keys=warm,
            items=sorted(to_run + reattach),
        )
        self._bar: Any = None
        self._closing = False  # set when run() ends: in-flight items then release freely
        self._warned_no_cost = False

    # -- restoring from the ledger -----------------------------------------------------

    def _restore(self, rows: list[AttemptRow]) -> list[int]:
        """Item states from the ledger; returns the items still to submit, in grid order."""
        by_item: dict[int, list[AttemptRow]] = {}
        for row in rows:
            by_item.setdefault(row.item, []).append(row)
        to_run = []
        for st in self.items:
            attempts = by_item.get(st.report.index, [])
            if not attempts or self._restore_item(st, attempts):
                to_run.append(st.report.index)
        return to_run

    def _restore_item(self, st: _Item, attempts: list[AttemptRow]) -> bool:
        """Fill ``st`` from its attempts; True when it must be (re)submitted."""
        report = st.report
        report.attempts = len(attempts)
        for row in attempts:
            report.add_cost(row.cost_ai_usd, row.cost_compute_hours)
            if row.state in ("intent", "ambiguous"):
                report.ambiguous_attempts += 1
            elif row.state == "not-sent":
                st.not_sent += 1
            elif row.error_code == "workspace-rate-limited":
                st.rate_limited += 1
            elif row.error_code == "internal-error":
                st.internal_errors += 1
        last = attempts[-1]
        status = last.terminal_status()
        if status is not None:
            fill_from_status(report, status)
        report.webtask_id = last.web_task_id
        if last.state == "terminal":
            if last.outcome == "success":
                st.done_attempt = last
                return False
            code = last.error_code
            resubmit = (
                (code == "workspace-rate-limited" and st.rate_limited <= MAX_RATE_LIMITED_RESUBMITS)
                or (
                    code == "internal-error"
                    and st.internal_errors <= self.opt.retry.max_failed_resubmits
                )
                or code in FATAL_TASK_CODES
            )
            if not resubmit:
                report.status = FAILED
                st.final = True
            return resubmit
        if last.state == "submitted":
            st.reattach = last
            return False
        if last.state in ("intent", "ambiguous"):
            if self.opt.resubmit_ambiguous:
                logger.warning(
                    "item %d: its last submission's fate is unknown (%s); resubmitting as "
                    "asked (resubmit_ambiguous=True): it may run and bill twice",
                    report.index,
                    "the process stopped between POST and ledger write"
                    if last.state == "intent"
                    else last.error_message,
                )
                return True
            report.status = AMBIGUOUS
            report.error_code = "ambiguous-submission"
            report.error_message = (
                "a start request may have created a task whose id was never recorded; "
                "re-run with resubmit_ambiguous=True to submit it again"
            )
            st.final = True
            return False
        return True  # not-sent: no task exists

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wakeup.set()

    def _release(self, st: _Item, **kwargs: Any) -> None:
        if st.holds_slot:
            st.holds_slot = False
            self.sched.on_finished(st.report.index, self._now(), **kwargs)
        self._wakeup.set()

    def _finish(self, st: _Item, status: str) -> None:
        st.report.status = status
        if not st.final and self._bar is not None:
            self._bar.update(1)
        st.final = True
        self._postfix()

    def _postfix(self) -> None:
        if self._bar is None:
            return
        failed = sum(1 for s in self.items if s.final and s.report.status != SUCCEEDED)
        self._bar.set_postfix(
            running=self.sched.n_running, failed=failed, spent=f"${self.spent:.2f}", refresh=False
        )

    def _stop(self, code: str, message: str) -> None:
        """Stop submitting: mark everything not started as skipped with ``code``."""
        if self.stopped_reason is None:
            self.stopped_reason = code
            self.stop_message = message
            logger.error(
                "batch stopped submitting: %s. %d task(s) in flight are still polled; "
                "items not submitted are marked skipped (reason %r)",
                message,
                sum(1 for s in self.items if s.holds_slot and not s.final),
                code,
            )
        for index in self.sched.drain():
            st = self.items[index]
            st.report.skipped_reason = code
            self._finish(st, SKIPPED)

    # -- budget ----------------------------------------------------------------------------

    def _cost_estimate(self, index: int) -> Estimate | None:
        return self.costs.estimate(self.plan.items[index].reuse_key, cold=self.sched.is_cold(index))

    def _budget_allows(self, index: int) -> bool:
        """True to submit ``index`` now; may stop the batch when the budget is exhausted."""
        limit = self.opt.max_cost_usd
        if limit is None:
            return True
        est = self._cost_estimate(index)
        in_flight = sum(s.cost_estimate for s in self.items if s.holds_slot)
        if est is None:
            if self.sched.n_running:
                return False  # no cost seen yet: probe with one task at a time
            if self.spent >= limit:
                self._stop("budget", f"the budget of ${limit:.2f} is spent (${self.spent:.2f})")
                return False
            self.items[index].cost_estimate = 0.0
            return True
        if self.spent + in_flight + est.mean <= limit:
            self.items[index].cost_estimate = est.mean
            return True
        if not self.sched.n_running:
            self._stop(
                "budget",
                f"max_cost_usd=${limit:.2f} reached: spent ${self.spent:.2f}, the next task "
                f"is estimated at ${est.mean:.2f}",
            )
        return False

    # -- the main loop ---------------------------------------------------------------------

    def _admit(self) -> None:
        while self.stopped_reason is None:
            now = self._now()
            index = self.sched.next_ready(now)
            if index is None or not self._budget_allows(index):
                return
            st = self.items[index]
            self.sched.on_started(index, now)
            st.holds_slot = True
            st.report.status = "running"
            self._spawn(self._attempt(st))
        self._postfix()

    async def run(self) -> None:
        n_done = sum(1 for s in self.items if s.final)
        self._bar = tqdm(
            total=len(self.items),
            initial=n_done,
            disable=not self.opt.progress,
            desc="web tasks",
            unit="task",
            leave=True,
        )
        try:
            for st in self.items:
                if st.done_attempt is not None:
                    self._spawn(self._rematerialize(st))
                elif st.reattach is not None:
                    self.sched.on_started(st.report.index, self._now(), reattach=True)
                    st.holds_slot = True
                    st.report.status = "running"
                    est = self._cost_estimate(st.report.index)
                    st.cost_estimate = est.mean if est is not None else 0.0
                    self._spawn(self._attempt(st, reattach=st.reattach))
            while True:
                self._wakeup.clear()
                self._admit()
                wake = self.sched.next_wakeup(self._now())
                if not self._tasks and (wake is None or self.stopped_reason is not None):
                    break  # nothing in flight, and nothing will become ready
                timeout = None if wake is None else max(0.0, wake - self._now())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
            held = {
                self.plan.items[s.report.index].reuse_key
                for s in self.items
                if s.holds_slot and s.report.status == IN_FLIGHT
            }
            for st in self.items:  # anything left without a final state
                if not st.final and st.report.status in (PLANNED, "running"):
                    self._finish(st, SKIPPED)
                    busy = self.plan.items[st.report.index].reuse_key in held
                    reason = (
                        st.report.skipped_reason
                        or self.stopped_reason
                        or ("reuse-key-busy" if busy else "not-run")
                    )
                    st.report.skipped_reason = reason
        finally:
            self._closing = True
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._bar.close()

    # -- one attempt -----------------------------------------------------------------------

    async def _attempt(self, st: _Item, reattach: AttemptRow | None = None) -> None:
        report = st.report
        try:
            estimate = self.sched.predict(report.index)
            if reattach is None:
                submitted = await self._submit(st)
                if submitted is None:
                    if report.status == AMBIGUOUS:
                        await self._hold_ambiguous(estimate)
                    return
                web_task_id, sent = submitted
            else:
                st.attempt_id = reattach.attempt_id
                web_task_id, sent = reattach.web_task_id or "", None
                logger.info("item %d: re-attaching to %s", report.index, web_task_id)
            report.webtask_id = web_task_id
            status = await self._poll(st, web_task_id, estimate, sent)
            if status is None:
                return
            if await self._on_terminal(st, status) and isinstance(status, Completed):
                await self._materialize(st, status)
        except asyncio.CancelledError:
            if not st.final:
                report.status = IN_FLIGHT if report.webtask_id else SKIPPED
                report.skipped_reason = None if report.webtask_id else "canceled"
            raise
        except Exception as exc:  # a bug or an unexpected error: report it, keep the batch
            logger.exception("item %d: unexpected error", report.index)
            report.error_code = getattr(exc, "code", type(exc).__name__)
            report.error_message = str(exc)
            self._finish(st, IN_FLIGHT if report.webtask_id and not report.outcome else FAILED)
        finally:
            if report.status == IN_FLIGHT and report.webtask_id and not self._closing:
                # Given up on, but maybe still running (and billing) server-side: keep its
                # slot, its reuseKey and its cost estimate for the rest of the batch, so no
                # second run of the key starts beside it and the budget still counts it.
                logger.warning(
                    "item %d: task %s is left in flight; its reuse key stays reserved for the "
                    "rest of this run (re-run with the same ledger to re-attach)",
                    report.index,
                    report.webtask_id,
                )
            else:
                self._release(st)

    async def _hold_ambiguous(self, estimate: Estimate | None) -> None:
        """Keep the slot and the key of an ambiguous submission for about as long as the
        task would run: it may exist server-side, and must not share its key."""
        hold = self.rate.to_local(estimate.mean) if estimate else self.client.poll.max_s
        await asyncio.sleep(min(hold, self.client.poll.timeout_s))

    async def _submit(self, st: _Item) -> tuple[str, float] | None:
        """POST the item: its id and the local time it was created (mid-request), or
        None (the item's state then says why)."""
        report = st.report
        item = self.plan.items[report.index]
        report.attempts += 1
        report.outcome = None
        if self.ledger is not None:
            st.attempt_id = self.ledger.record_intent(report.index, attempt=report.attempts)
        sent = self._now()
        try:
            web_task_id = await self.client.start_body(item.body)
        except (AmbiguousSubmissionError, ProtocolError) as exc:
            report.ambiguous_attempts += 1
            # The task may run and bill: charge its estimate to the budget, to be safe.
            self.spent += st.cost_estimate
            message = str(exc)
            if self.ledger is not None and st.attempt_id is not None:
                self.ledger.record_ambiguous(st.attempt_id, message)
            logger.warning("item %d: ambiguous submission, not resent: %s", report.index, message)
            report.error_code, report.error_message = "ambiguous-submission", message
            self._finish(st, AMBIGUOUS)
            return None
        except WebTaskError as exc:
            if self.ledger is not None and st.attempt_id is not None:
                self.ledger.record_not_sent(st.attempt_id, exc.code, str(exc))
            report.error_code, report.error_message = exc.code, str(exc)
            if isinstance(exc, AuthenticationError | NotFoundError):
                reason = "unauthenticated" if isinstance(exc, AuthenticationError) else "not-found"
                report.skipped_reason = reason
                self._finish(st, SKIPPED)
                self._stop(reason, f"the API refused the start request: {exc}")
            elif isinstance(exc, BadRequestError) or not exc.retryable:
                logger.error("item %d: start rejected: %s", report.index, exc)
                self._finish(st, FAILED)
            elif st.not_sent < MAX_NOT_SENT_RESUBMITS and self.stopped_reason is None:
                st.not_sent += 1
                delay = max(self.client.poll.min_s, self.opt.retry.backoff(st.not_sent, self._rng))
                logger.warning("item %d: start failed (%s); requeued", report.index, exc.code)
                self._requeue(st, delay)
            else:
                self._finish(st, FAILED)
            return None
        # The id first, the ledger second: a failing ledger write must not orphan a task.
        report.webtask_id = web_task_id
        if self.ledger is not None and st.attempt_id is not None:
            try:
                self.ledger.record_submitted(st.attempt_id, web_task_id)
            except Exception:
                logger.exception(
                    "item %d: task %s was created but the ledger could not record it; it is "
                    "still polled in this run, but a re-run will report it as ambiguous",
                    report.index,
                    web_task_id,
                )
        return web_task_id, (sent + self._now()) / 2

    def _requeue(self, st: _Item, delay: float) -> None:
        self._release(st)
        st.report.status = PLANNED
        self.sched.requeue(st.report.index, not_before=self._now() + delay)

    async def _poll(
        self,
        st: _Item,
        web_task_id: str,
        estimate: Estimate | None,
        sent: float | None,
    ) -> Completed | Canceled | None:
        """Poll to a terminal status; None when the task is left in flight.

        ``sent`` is the local time the task was created (None when re-attaching). The
        first poll is aimed at the predicted finish; the plan is re-anchored at the
        task's start once a response says it started (so queueing server-side is
        accounted for), with server durations converted by the learned clock rate.
        """
        plan = PollPlan(self.client.poll, estimate, self._rng)
        report = st.report
        start = sent  # local time the task started running (assumed: when created)
        anchored = False
        created_seen = False
        deadline = (sent if sent is not None else self._now()) + self.client.poll.timeout_s
        delay = 0.0 if sent is None else plan.delay(0.0, self.rate.rate)
        errors = 0
        while True:
            if delay > 0:
                await asyncio.sleep(min(delay, max(0.0, deadline - self._now())))
            try:
                status = await self.client.result(web_task_id)
            except AuthenticationError as exc:
                report.error_code, report.error_message = exc.code, str(exc)
                self._stop("unauthenticated", f"the API rejected the key while polling: {exc}")
                self._finish(st, IN_FLIGHT)
                return None
            except NotFoundError as exc:
                report.error_code, report.error_message = exc.code, str(exc)
                logger.error("item %d: task %s not found: %s", report.index, web_task_id, exc)
                self._finish(st, FAILED)
                return None
            except WebTaskError as exc:
                errors += 1
                if errors >= MAX_POLL_ERRORS or self._now() >= deadline:
                    report.error_code, report.error_message = exc.code, str(exc)
                    logger.error(
                        "item %d: giving up polling %s: %s", report.index, web_task_id, exc
                    )
                    self._finish(st, IN_FLIGHT)
                    return None
                delay = plan.delay(None)
                continue
            errors = 0
            now = self._now()
            fill_from_status(report, status)
            if sent is not None and status.created_at is not None and not created_seen:
                created_seen = True
                self.rate.on_submitted(local=sent, server=status.created_at.timestamp())
            if isinstance(status, Completed | Canceled):
                if sent is not None and status.created_at and status.completed_at:
                    self.rate.on_completed(
                        local_elapsed=now - sent,
                        server_elapsed=(status.completed_at - status.created_at).total_seconds(),
                    )
                return status
            if isinstance(status, Pending):
                start, anchored = None, False
                since: float | None = None
            else:
                if not anchored or start is None:
                    start = self._anchor(status, sent, now)
                    anchored = True
                    plan.reset()
                since = now - start
            if now >= deadline:
                report.error_code = "wait-timeout"
                report.error_message = (
                    f"still {status.status} after {self.client.poll.timeout_s:g}s; the task "
                    "keeps running: re-run with the same ledger to re-attach"
                )
                logger.error("item %d: %s %s", report.index, web_task_id, report.error_message)
                self._finish(st, IN_FLIGHT)
                return None
            delay = plan.delay(since, self.rate.rate)

    def _anchor(self, status: TaskStatus, sent: float | None, now: float) -> float:
        """Local time the task started: creation plus the server's queue wait."""
        started_at: datetime | None = getattr(status, "started_at", None)
        if sent is not None and started_at is not None and status.created_at is not None:
            queued = (started_at - status.created_at).total_seconds()
            return sent + max(0.0, queued) / self.rate.rate
        if started_at is not None:  # re-attached: trust the wall clock roughly
            running = (datetime.now(UTC) - started_at).total_seconds() / self.rate.rate
            return now - max(0.0, running)
        return sent if sent is not None else now

    async def _on_terminal(self, st: _Item, status: Completed | Canceled) -> bool:
        """Record a terminal status and decide what follows; True to materialize."""
        report = st.report
        index = report.index
        key = self.plan.items[index].reuse_key
        cold = (not status.reuse.used) if isinstance(status, Completed) and status.reuse else None
        if self.ledger is not None and st.attempt_id is not None:
            self.ledger.record_terminal(st.attempt_id, status, cold=cold)
        if isinstance(status, Completed):
            report.add_cost(status.cost.ai_usd, status.cost.compute_hours)
            self.spent += status.cost.ai_usd or 0.0
            if status.cost.ai_usd is None and self.opt.max_cost_usd is not None:
                if not self._warned_no_cost:
                    logger.warning(
                        "the service reported no cost.aiUsd for %s: max_cost_usd counts only "
                        "the costs it reports",
                        status.web_task_id,
                    )
                self._warned_no_cost = True
        st.cost_estimate = 0.0
        if isinstance(status, Completed) and status.succeeded:
            is_cold = cold if cold is not None else self.sched.is_cold(index)
            self.costs.observe(key, status.cost.ai_usd, cold=is_cold)
            self._release(st, duration=status.duration_s, cold=is_cold, succeeded=True)
            return True
        code = report.error_code or "unknown"
        self._release(st)
        stopping = self.stopped_reason is not None
        if code == "workspace-rate-limited" and not stopping:
            st.rate_limited += 1
            self.sched.on_rate_limited(index)
            if st.rate_limited <= MAX_RATE_LIMITED_RESUBMITS:
                delay = max(
                    self.client.poll.min_s, self.opt.retry.backoff(st.rate_limited, self._rng)
                )
                logger.info(
                    "item %d: workspace-rate-limited; resubmitting in %.2fs (concurrency now %d)",
                    index,
                    delay,
                    self.sched.effective_concurrency,
                )
                self._requeue(st, delay)
                return False
        elif code == "internal-error" and not stopping:
            st.internal_errors += 1
            if st.internal_errors <= self.opt.retry.max_failed_resubmits:
                logger.warning("item %d: internal-error; resubmitting", index)
                self._requeue(st, 0.0)
                return False
        elif code in FATAL_TASK_CODES:
            self._finish(st, FAILED)
            self._stop(code, f"a task failed with {code}: {report.error_message}")
            return False
        logger.warning("item %d: task %s failed: %s", index, status.web_task_id, code)
        self._finish(st, FAILED)
        return False

    async def _materialize(self, st: _Item, status: Completed) -> None:
        report = st.report
        async with self._download_slots:
            try:
                out = await materialize(
                    self.client,
                    status,
                    output_schema=self.plan.schema,
                    parameters=report.parameters,
                    record_path=self.opt.record_path,
                    validate=self.opt.validate,
                    cache_dir=self.opt.cache_dir,
                    extra_columns={"_item": report.index},
                )
            except Exception as exc:  # local work: report it on the item, keep the batch
                report.error_code = getattr(exc, "code", type(exc).__name__)
                report.error_message = str(exc)
                logger.error("item %d: result not usable: %s", report.index, exc)
                self._finish(st, FAILED)
                return
        st.table = out.table
        report.n_records, report.n_invalid = out.n_records, out.n_invalid
        self.validation_errors.extend((report.index, *e) for e in out.errors)
        if self.ledger is not None and st.attempt_id is not None:
            self.ledger.record_materialized(
                st.attempt_id,
                raw_path=str(out.raw_path) if out.raw_path is not None else None,
                n_records=out.n_records,
                n_invalid=out.n_invalid,
            )
        self._finish(st, SUCCEEDED)

    async def _rematerialize(self, st: _Item) -> None:
        """A success recorded by an earlier run: rows from the local cache, no new task."""
        row = st.done_attempt
        assert row is not None
        st.attempt_id = row.attempt_id
        status = row.terminal_status()
        try:
            if not isinstance(status, Completed):  # pragma: no cover - guarded by outcome
                raise WebTaskError("ledger terminal record is not a completed status")
            cached = _is_file(row.raw_path)
            if isinstance(status.result, FileResult) and not cached:
                logger.info("item %d: raw result not cached; fetching a fresh URL", st.report.index)
                fresh = await self.client.result(status.web_task_id)
                if isinstance(fresh, Completed):
                    status = fresh
        except WebTaskError as exc:
            st.report.error_code, st.report.error_message = exc.code, str(exc)
            self._finish(st, FAILED)
            return
        await self._materialize(st, status)

    # -- results ---------------------------------------------------------------------------

    def records(self) -> pa.Table:
        """Every item's rows in grid order; with no rows, an empty table that still has
        the columns (schema fields, parameters, ``_item``, ``_webtask_id``)."""
        tables = [st.table for st in self.items if st.table is not None]
        if tables:
            return unify_tables(tables)
        fields = list(record_arrow_schema(self.plan.schema) or [])
        names = {f.name for f in fields}
        for name in self.plan.parameter_names:
            if name not in names:
                values = [item.parameters.get(name) for item in self.plan.items]
                try:
                    dtype = pa.array(values).type
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    dtype = pa.string()
                fields.append(pa.field(name, dtype))
        fields += [pa.field("_item", pa.int64()), pa.field("_webtask_id", pa.string())]
        return pa.schema(fields).empty_table()


def _is_file(path: str | None) -> bool:
    return path is not None and os.path.isfile(path)
