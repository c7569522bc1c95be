"""The batch engine: one event loop driving every item of a sweep through its attempts.

It is an event loop around I/O-free parts: ``plan`` (validated items, known by what
they ask), ``Scheduler`` (what to submit next), ``TaskSchedule`` (when to poll),
``next_action`` (what follows a failed attempt), ``Budget`` (what may still be spent)
and ``restore_item`` (what a run does with what the ledger holds); the ``Ledger`` makes
every submission durable, ``Submitting`` sends the starts, ``Collector`` reads results,
``Lander`` hands finished items to the sinks on one worker thread, and a ``Clock`` (the
client's by default) drives every sleep. One coroutine drives one attempt of one item::

    intent (ledger) -> POST start -> submitted (ledger) -> polls -> terminal (ledger)
        -> success: read rows (download cached beside the ledger) -> land in the sinks
        -> workspace-rate-limited: requeue after backoff, halve the concurrency
        -> internal-error: requeue, up to retry.max_failed_resubmits
        -> unauthenticated / no-ai-credits-left: stop submitting, finish what is in flight
        -> timeout / rejected / canceled: final failure

The main loop admits items while the scheduler, the budget and the stop flag allow, and
sleeps until an attempt finishes or a backoff expires. Runs on a ledger restore each
item from its attempts first: successes are reused (rows from the local cache, or not
read at all when every sink holds them), submitted tasks are re-attached, intent-only
ones are ambiguous, failures follow ``retry_failed`` and stale successes ``max_age``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from .._exceptions import (
    AuthenticationError,
    NotFoundError,
    WebTaskError,
)
from .._options import BatchOptions
from .._wire.client import NOT_FOUND_GRACE_S, AsyncClient
from .._wire.deadline import Deadline
from .._wire.models import Canceled, Completed
from .._wire.polling import Clock, Expired, GaveUp, poll_until_terminal, wait_event
from .budget import Budget, usable_cost
from .collect import Collector
from .estimate import Estimate
from .landing import Consumer, Lander
from .ledger import AttemptRow, Ledger, spent_on
from .plan import BatchPlan
from .policy import RATE_LIMITED, Action, next_action
from .priors import prior_estimate
from .progress import progress_bar
from .records import empty_records, invalid_rows
from .report import ItemReport
from .restore import (
    ItemState,
    RerunRules,
    absent_waits,
    fill_billed,
    fill_from_status,
    history,
    orphan_waits,
    restore_all,
)
from .scheduler import PollPlan, Scheduler, TaskSchedule
from .status import ItemStatus
from .submit import Submitting

__all__ = ["Runner"]

logger = logging.getLogger("webtask_frames")

# Consecutive poll errors (after the client's retries) before a task is left in flight.
MAX_POLL_ERRORS = 5


class Runner(Submitting):
    """One run of a sweep: restore from the ledger, then admit, poll and collect.

    ``run()`` returns when every item is final (or the batch stopped and nothing is in
    flight); ``items`` then hold the per-item reports and tables (``records_of`` joins them).
    ``clock`` drives every sleep and timestamp (default: the client's ``clock``).

    Example:
        >>> runner = Runner(plan, client, options, ledger=None)  # doctest: +SKIP
        >>> await runner.run()                                    # doctest: +SKIP
    """

    def __init__(
        self,
        plan: BatchPlan,
        client: AsyncClient,
        options: BatchOptions,
        ledger: Ledger | None,
        *,
        clock: Clock | None = None,
        consumers: list[Consumer] | None = None,
    ) -> None:
        self.plan = plan
        self.client = client
        self.opt = options
        # The client's defaults fill what the call left open.
        self.max_concurrency = options.max_concurrency or client.max_concurrency
        self.retry = options.retry or client.retry
        self.ledger = ledger
        self.clock: Clock = clock if clock is not None else client.clock
        self.items = [
            ItemState(ItemReport(i.index, i.parameters, i.reuse_key, item_key=i.item_key))
            for i in plan.items
        ]
        rows = ledger.attempts() if ledger is not None else []
        self.durations, self.costs, warm = history(rows)
        # What this grid's items already cost counts against max_cost_usd (all runs).
        self.budget = Budget(options.max_cost_usd, spent_on(rows, plan.item_keys))
        self.stopped_reason: str | None = None  # a short code: budget, unauthenticated, ...
        self.stop_message: str | None = None
        self._rng = random.Random()
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.collector = Collector(client, plan, options.read, ledger, self.max_concurrency)
        self.validation_errors = self.collector.validation_errors
        rules = RerunRules.of(options, self.retry)
        to_run = restore_all(self.items, rows, rules, plan.item_keys)
        self.lander = Lander(
            consumers or [],
            empty=empty_records(plan),
            limit=max(4, self.max_concurrency),
            params=plan.parameter_names,
        )
        self.lander.on_error, self.lander.on_landed = self._on_sink_error, self._on_landed
        self.keep_rows = not self.lander.active  # with a sink, rows live there, not here
        reattach = [s.report.index for s in self.items if s.reattach is not None]
        self.sched = Scheduler(
            plan.keys,
            max_concurrency=self.max_concurrency,
            durations=self.durations,
            warm_keys=warm,
            items=sorted(to_run + reattach),
        )
        waits = orphan_waits(self.items, self.durations, warm, plan.model)
        busy = absent_waits(rows, plan.item_keys, self.durations, warm, plan.model)
        for index in to_run:  # the first item of a key busy with an absent item's task
            key = plan.items[index].reuse_key
            if key in busy and index not in waits:
                waits[index] = busy.pop(key)
        for index, wait in waits.items():
            self.sched.requeue(index, not_before=self._now() + wait)  # closes the whole key
        self._bar: Any = None
        self._landed: set[str] = set()
        self._closing = False  # set when run() ends: in-flight items then release freely
        self._warned_no_cost = False
        # Items final without success, counted as they finish (the bar shows it per event).
        self._n_unsuccessful = sum(1 for s in self.items if s.final)

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> float:
        return self.clock.now()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wakeup.set()

    def _release(self, st: ItemState, **kwargs: Any) -> None:
        if st.holds_slot:
            st.holds_slot = False
            self.budget.release(st.report.index)
            self.sched.on_finished(st.report.index, self._now(), **kwargs)
        self._wakeup.set()

    def _hold(self, st: ItemState, estimate: float, *, reattach: bool = False) -> None:
        """``st`` takes a slot, its key and a budget reservation, and starts running."""
        self.sched.on_started(st.report.index, self._now(), reattach=reattach)
        self.budget.reserve(st.report.index, estimate)
        st.holds_slot = True
        st.report.status = ItemStatus.RUNNING

    def _finish(
        self, st: ItemState, status: ItemStatus, *, land: bool = True, slot: bool = False
    ) -> None:
        """``st`` is final with ``status``; its rows (or its billed tasks) go to the sinks.
        ``slot``: it holds a ``Lander.reserve`` slot, given back once landed."""
        st.report.status = status
        if not st.final:
            self._n_unsuccessful += status != ItemStatus.SUCCEEDED
            if self._bar is not None:
                self._bar.update(1)
            if land and status in (ItemStatus.SUCCEEDED, ItemStatus.FAILED):
                ok = status == ItemStatus.SUCCEEDED
                self.lander.put(st.report, st.table if ok else None, slot=slot)
                slot = False
            elif land and st.report.billed and self.lander.keeps_tasks:
                self.lander.put(st.report, None, tasks_only=True)  # billed: in _tasks too
        if slot:
            self.lander.release()
        st.final = True
        self._postfix()

    def _on_landed(self, report: ItemReport) -> None:
        st = self.items[report.index]
        if not self.keep_rows and st.table is not None:
            st.table = invalid_rows(st.table)  # the valid ones now live in the sink

    def _on_sink_error(self, report: ItemReport, exc: BaseException, table: Any) -> None:
        """A sink failed: the item's rows stay in memory (``unlanded``) and in the ledger's
        cache, so a rerun lands them without a new task; stop paying for rows."""
        st, why = self.items[report.index], f"{type(exc).__name__}: {exc}"
        st.table = table if table is not None else st.table
        if report.status == ItemStatus.SUCCEEDED:  # a failed item keeps its own error
            self._n_unsuccessful += 1
            report.status, report.error_code = ItemStatus.FAILED, "sink-error"
            report.error_message = f"rows not landed: {why}"
        self._stop("sink-error", f"the sink failed ({why}); fix it and re-run with the same ledger")

    def _postfix(self) -> None:
        if self._bar is None:
            return
        self._bar.set_postfix(
            running=self.sched.n_running,
            failed=self._n_unsuccessful,
            spent=f"${self.budget.spent:.2f}",
            refresh=False,
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
            self._finish(st, ItemStatus.SKIPPED)

    # -- budget ----------------------------------------------------------------------------

    def _cost_estimate(self, index: int) -> Estimate | None:
        return self.costs.estimate(self.plan.items[index].reuse_key, cold=self.sched.is_cold(index))

    def _prior(self, index: int) -> tuple[float, float]:  # (cost, duration) with no history
        return prior_estimate(self.plan.model, cold=self.sched.is_cold(index))

    def _affordable(self, index: int) -> float | None:
        """The cost to reserve for submitting ``index`` now, or None to hold it back (the
        batch stops when nothing in flight can free budget)."""
        if self.budget.limit is None:
            return 0.0
        est, prior = self._cost_estimate(index), self._prior(index)[0]
        reserve, stop = self.budget.decide(est.mean if est else None, self.sched.n_running, prior)
        if stop is not None:
            self._stop("budget", stop)
        return reserve

    # -- the main loop ---------------------------------------------------------------------

    def _admit(self) -> None:
        while self.stopped_reason is None:
            index = self.sched.next_ready(self._now())
            if index is None:
                return
            reserve = self._affordable(index)
            if reserve is None:
                return
            st = self.items[index]
            self._hold(st, reserve)
            self._spawn(self._attempt(st))
        self._postfix()

    def _resume_restored(self) -> None:
        """Re-materialize the ledger's successes and re-attach its submitted tasks."""
        for st in self.items:
            if st.done_attempt is not None:
                self._spawn(self._rematerialize(st))
            elif st.reattach is not None:
                st.report.source = "reattached"
                est = self._cost_estimate(st.report.index)
                self._hold(st, est.mean if est is not None else 0.0, reattach=True)
                self._spawn(self._attempt(st, reattach=st.reattach))

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            self._admit()
            wake = self.sched.next_wakeup(self._now())
            if not self._tasks and (wake is None or self.stopped_reason is not None):
                return  # nothing in flight, and nothing will become ready
            timeout = None if wake is None else max(0.0, wake - self._now())
            await wait_event(self._wakeup, self.clock, timeout)

    def _skip_leftovers(self) -> None:
        """Mark items the run never got to as skipped, saying why."""
        held = {
            self.plan.items[s.report.index].reuse_key
            for s in self.items
            if s.holds_slot and s.report.status == ItemStatus.IN_FLIGHT
        }
        for st in self.items:
            if st.final or st.report.status not in (ItemStatus.PLANNED, ItemStatus.RUNNING):
                continue
            self._finish(st, ItemStatus.SKIPPED)
            busy = self.plan.items[st.report.index].reuse_key in held
            st.report.skipped_reason = (
                st.report.skipped_reason
                or self.stopped_reason
                or ("reuse-key-busy" if busy else "not-run")
            )

    async def run(self) -> None:
        n_done = sum(1 for s in self.items if s.final)
        self._bar = progress_bar(total=len(self.items), initial=n_done, enabled=self.opt.progress)
        try:
            self.lander.start()
            self._landed = await self.lander.landed()
            for st in self.items:  # earlier runs' billed tasks of items final already
                if st.final and st.report.billed and self.lander.keeps_tasks:
                    self.lander.put(st.report, None, tasks_only=True)
            self._resume_restored()
            await self._loop()
            self._skip_leftovers()
        finally:
            self._closing = True
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                await self.lander.drain()  # every finished item lands, even on Ctrl-C
            finally:
                self._bar.close()

    # -- one attempt -----------------------------------------------------------------------

    async def _attempt(self, st: ItemState, reattach: AttemptRow | None = None) -> None:
        report = st.report
        try:
            await self._drive(st, reattach)
        except asyncio.CancelledError:
            if not st.final:
                report.status = ItemStatus.IN_FLIGHT if report.webtask_id else ItemStatus.SKIPPED
                report.skipped_reason = None if report.webtask_id else "canceled"
            raise
        except Exception as exc:  # a bug or an unexpected error: report it, keep the batch
            logger.exception("item %d: unexpected error", report.index)
            report.error_code = getattr(exc, "code", type(exc).__name__)
            report.error_message = str(exc)
            lost = report.webtask_id and not report.outcome
            self._finish(st, ItemStatus.IN_FLIGHT if lost else ItemStatus.FAILED)
        finally:
            if report.status == ItemStatus.IN_FLIGHT and report.webtask_id and not self._closing:
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

    async def _drive(self, st: ItemState, reattach: AttemptRow | None) -> None:
        """Submit (or re-attach), poll to a terminal status, and act on it."""
        report = st.report
        estimate = self.sched.predict(report.index)
        if reattach is None:
            submitted = await self._submit(st)
            if submitted is None:
                if report.status == ItemStatus.AMBIGUOUS:  # it may run: hold its slot and key
                    hold = estimate.mean if estimate else self._prior(report.index)[1]
                    until = self.clock.now() + min(hold, self.client.poll.timeout_s)
                    # ... while another item could take them; with none left, end at once.
                    while self.sched.n_pending and (left := until - self.clock.now()) > 0:
                        await self.clock.sleep(min(left, 0.5))
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

    async def _poll(
        self,
        st: ItemState,
        web_task_id: str,
        estimate: Estimate | None,
        sent: float | None,
    ) -> Completed | Canceled | None:
        """Poll to a terminal status; None when the task is left in flight (or not found).

        ``sent`` is the local time the task was created (None when re-attaching); the
        ``TaskSchedule`` aims the first poll at the predicted finish.
        """
        report = st.report
        schedule = TaskSchedule(PollPlan(self.client.poll, estimate, self._rng), sent)
        deadline = (sent if sent is not None else self._now()) + self.client.poll.timeout_s
        limit, grace = Deadline(self.clock, deadline), (sent or 0.0) + NOT_FOUND_GRACE_S
        outcome: object
        try:
            outcome = await poll_until_terminal(
                lambda: self.client.poll_once(web_task_id, limit, grace),
                schedule,
                self.clock,
                deadline=deadline,
                max_errors=MAX_POLL_ERRORS,
                raise_on=(AuthenticationError, NotFoundError),
                on_status=lambda status: fill_from_status(report, status),
            )
        except (AuthenticationError, NotFoundError) as exc:
            outcome = exc
        if isinstance(outcome, Completed | Canceled):
            return outcome
        self._unfinished(st, web_task_id, outcome)
        return None

    def _unfinished(self, st: ItemState, web_task_id: str, outcome: object) -> None:
        """Polling ended without a terminal status: say why. Only an unknown task is a
        failure; otherwise the task may still run (and bill): it is left in flight."""
        report, status = st.report, ItemStatus.IN_FLIGHT
        if isinstance(outcome, Expired):
            last = outcome.last.status if outcome.last is not None else "unknown"
            report.error_code = "wait-timeout"
            report.error_message = (
                f"still {last} after {self.client.poll.timeout_s:g}s; the task "
                "keeps running: re-run with the same ledger to re-attach"
            )
        else:
            error = outcome.error if isinstance(outcome, GaveUp) else outcome
            assert isinstance(error, WebTaskError)
            report.error_code, report.error_message = error.code, str(error)
            if isinstance(error, NotFoundError):
                status = ItemStatus.FAILED
            elif isinstance(error, AuthenticationError):
                self._stop("unauthenticated", f"the API rejected the key while polling: {error}")
        logger.error("item %d: task %s: %s", report.index, web_task_id, report.error_message)
        self._finish(st, status)

    async def _on_terminal(self, st: ItemState, status: Completed | Canceled) -> bool:
        """Record a terminal status and decide what follows; True to materialize."""
        report = st.report
        index = report.index
        cold = (not status.reuse.used) if isinstance(status, Completed) and status.reuse else None
        if self.ledger is not None and st.attempt_id is not None:
            self.ledger.record_terminal(st.attempt_id, status, cold=cold)
        fill_billed(report, status)
        held = self.budget.held(index)
        self.budget.release(index)  # the reported cost replaces the reservation
        cost = usable_cost(status.cost.ai_usd) if isinstance(status, Completed) else None
        if isinstance(status, Completed):
            c = status.cost  # raw compute figures too, when their unit is not understood
            hours, amount, unit = usable_cost(c.compute_hours), c.compute_amount, c.compute_unit
            report.add_cost(cost, hours, compute_amount=amount, compute_unit=unit)
            if cost is None:  # unknown (absent, NaN, negative): count the estimate instead
                est = self._cost_estimate(index)
                self.budget.charge(max(held, est.mean if est else self._prior(index)[0]))
                self._warn_if_no_cost(status)
            else:
                self.budget.charge(cost)
        if isinstance(status, Completed) and status.succeeded:
            is_cold = cold if cold is not None else self.sched.is_cold(index)
            key = self.plan.items[index].reuse_key
            self.costs.observe(key, cost, cold=is_cold)
            self._release(st, duration=status.duration_s, cold=is_cold, succeeded=True)
            return True
        self._release(st)
        self._after_failure(st, report.error_code or "unknown", status.web_task_id)
        return False

    def _warn_if_no_cost(self, status: Completed) -> None:
        if self.opt.max_cost_usd is not None and not self._warned_no_cost:
            logger.warning(
                "no usable cost.aiUsd for %s (%r): max_cost_usd counts it at its estimate",
                status.web_task_id,
                status.cost.ai_usd,
            )
        self._warned_no_cost = True

    def _after_failure(self, st: ItemState, code: str, web_task_id: str) -> None:
        """Apply the outcome policy to a failed task of ``st``."""
        index = st.report.index
        stopping = self.stopped_reason is not None
        if not stopping:
            st.counters.count(code)
            if code == RATE_LIMITED:
                self.sched.on_rate_limited(index)
        action = next_action(code, st.counters, self.retry, stopping=stopping)
        if action is Action.RESUBMIT_AFTER_BACKOFF:
            delay = self._backoff(st.counters.rate_limited)
            logger.info(
                "item %d: %s; resubmitting in %.2fs (concurrency now %d)",
                index,
                code,
                delay,
                self.sched.effective_concurrency,
            )
            self._requeue(st, delay)
        elif action is Action.RESUBMIT_NOW:
            logger.warning("item %d: %s; resubmitting", index, code)
            self._requeue(st, 0.0)
        elif action is Action.STOP_BATCH:
            self._finish(st, ItemStatus.FAILED)
            self._stop(code, f"a task failed with {code}: {st.report.error_message}")
        else:
            logger.warning("item %d: task %s failed: %s", index, web_task_id, code)
            self._finish(st, ItemStatus.FAILED)

    async def _collect(self, st: ItemState, read: Callable[[], Awaitable[ItemStatus]]) -> None:
        """Read a success's rows once the sinks have room, then finish the item."""
        await self.lander.reserve()  # a slow sink holds back reading, never polling
        try:
            outcome = await read()
        except BaseException:
            self.lander.release()
            raise
        self._finish(st, outcome, slot=True)

    async def _materialize(self, st: ItemState, status: Completed) -> None:
        await self._collect(st, lambda: self.collector.rows(st, status))

    async def _rematerialize(self, st: ItemState) -> None:
        """A success recorded by an earlier run: no new task. Rows come from the local
        cache (or a fresh URL), unless every sink already holds them."""
        row = st.done_attempt
        assert row is not None
        st.attempt_id = row.attempt_id
        st.report.source = "reused"
        if row.web_task_id in self._landed:  # every sink holds these rows: nothing to do
            st.report.n_records, st.report.n_invalid = row.n_records, row.n_invalid
            return self._finish(st, ItemStatus.SUCCEEDED, land=False)
        await self._collect(st, lambda: self.collector.reuse(st, row))
