"""Submitting an item: intent, the start request, and the three fates of a start.

``Submitting`` is the part of the batch engine (``engine.Runner``) that sends a start:
the intent is committed to the ledger first, then the POST goes out, and the answer is
one of three fates, each recorded: *submitted* (the service returned a ``webTaskId``),
*not sent* (provably no task: a 400, a refused connection) or *ambiguous* (the task may
exist: a dropped connection or a server failure after the request went out). A start
canceled while its request is out (Ctrl-C, leaving ``iter_batch`` early) is given a
moment to answer, so its fate is recorded rather than guessed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from .._exceptions import (
    AmbiguousSubmissionError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    ProtocolError,
    WebTaskError,
)
from .._options import BatchOptions
from .._wire.client import AsyncClient
from .._wire.policies import RetryPolicy
from .budget import Budget
from .ledger import Ledger
from .plan import BatchPlan
from .policy import NOT_SENT, Action, next_action
from .report import BilledTask
from .restore import ItemState
from .scheduler import Scheduler
from .status import ItemStatus

__all__ = ["START_GRACE_S", "Submitting"]

logger = logging.getLogger("webtask_frames")

# How long a canceled start may still take to answer before its fate is left unknown.
START_GRACE_S = 10.0


class Submitting:
    """The start of one attempt (mixed into ``engine.Runner``, which provides the
    attributes and the methods declared below).

    Example:
        >>> submitted = await runner._submit(state)  # doctest: +SKIP
    """

    plan: BatchPlan
    client: AsyncClient
    opt: BatchOptions
    retry: RetryPolicy
    ledger: Ledger | None
    budget: Budget
    sched: Scheduler
    stopped_reason: str | None
    _rng: random.Random

    if TYPE_CHECKING:

        def _now(self) -> float: ...
        def _finish(self, st: ItemState, status: ItemStatus) -> None: ...
        def _release(self, st: ItemState) -> None: ...
        def _stop(self, code: str, message: str) -> None: ...

    async def _submit(self, st: ItemState) -> tuple[str, float] | None:
        """POST the item: its id and local creation time, or None (its state says why)."""
        report = st.report
        item = self.plan.items[report.index]
        report.attempts += 1
        report.outcome = None
        if self.ledger is not None:
            st.attempt_id = self.ledger.record_intent(
                item.item_key, attempt=report.attempts, model=self.plan.model
            )
        sent = self._now()
        start = asyncio.ensure_future(self.client.start_body(item.body))
        try:
            web_task_id = await asyncio.shield(start)
        except asyncio.CancelledError:
            await self._settle_start(st, start)
            raise
        except (AmbiguousSubmissionError, ProtocolError) as exc:
            self._on_ambiguous(st, exc)
            return None
        except WebTaskError as exc:
            self._on_not_sent(st, exc)
            return None
        self._on_submitted(st, web_task_id)
        return web_task_id, (sent + self._now()) / 2

    async def _settle_start(self, st: ItemState, start: asyncio.Future[str]) -> None:
        """Canceled (Ctrl-C, a loop left early) while a start request was out: give it a
        moment to answer, so its outcome is recorded instead of left as an intent-only,
        ambiguous attempt that a rerun could not resend without the opt-in."""
        try:
            web_task_id = await asyncio.wait_for(asyncio.shield(start), START_GRACE_S)
        except (TimeoutError, asyncio.CancelledError):
            start.cancel()  # its fate stays unknown: the ledger's intent says so
            return
        except WebTaskError as exc:
            if not isinstance(exc, AmbiguousSubmissionError | ProtocolError):
                self._on_not_sent(st, exc)
            return
        except Exception:  # its fate stays unknown (the intent says so); the cancel goes on
            return
        self._on_submitted(st, web_task_id)

    def _on_submitted(self, st: ItemState, web_task_id: str) -> None:
        """The service created ``web_task_id``: remember it, then record it durably."""
        report = st.report
        item = self.plan.items[report.index]
        # The id first, the ledger second: a failing ledger write must not orphan a task.
        report.webtask_id = web_task_id
        report.source = "started"
        report.billed.append(
            BilledTask(web_task_id, report.attempts, self.plan.model, item.reuse_key)
        )
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

    def _on_ambiguous(self, st: ItemState, exc: WebTaskError) -> None:
        """A start whose fate is unknown: never resent; its estimate counts as spent."""
        report = st.report
        report.ambiguous_attempts += 1
        # The task may run and bill: charge its estimate to the budget, to be safe.
        self.budget.charge(self.budget.held(report.index))
        message = str(exc)
        if self.ledger is not None and st.attempt_id is not None:
            self.ledger.record_ambiguous(st.attempt_id, message)
        logger.warning("item %d: ambiguous submission, not resent: %s", report.index, message)
        report.error_code, report.error_message = "ambiguous-submission", message
        self._finish(st, ItemStatus.AMBIGUOUS)

    def _on_not_sent(self, st: ItemState, exc: WebTaskError) -> None:
        """A start that provably created nothing: stop, fail, or requeue per the policy."""
        report = st.report
        if self.ledger is not None and st.attempt_id is not None:
            self.ledger.record_not_sent(st.attempt_id, exc.code, str(exc))
        report.error_code, report.error_message = exc.code, str(exc)
        if isinstance(exc, AuthenticationError | NotFoundError):
            reason = "unauthenticated" if isinstance(exc, AuthenticationError) else "not-found"
            report.skipped_reason = reason
            self._finish(st, ItemStatus.SKIPPED)
            self._stop(reason, f"the API refused the start request: {exc}")
            return
        if isinstance(exc, BadRequestError) or not exc.retryable:
            logger.error("item %d: start rejected: %s", report.index, exc)
            self._finish(st, ItemStatus.FAILED)
            return
        st.counters.count(NOT_SENT)
        action = next_action(
            NOT_SENT, st.counters, self.retry, stopping=self.stopped_reason is not None
        )
        if action is Action.RESUBMIT_AFTER_BACKOFF:
            logger.warning("item %d: start failed (%s); requeued", report.index, exc.code)
            self._requeue(st, self._backoff(st.counters.not_sent))
        else:
            self._finish(st, ItemStatus.FAILED)

    def _backoff(self, attempt: int) -> float:
        return max(self.client.poll.min_s, self.retry.backoff(attempt, self._rng))

    def _requeue(self, st: ItemState, delay: float) -> None:
        self._release(st)
        st.report.status = ItemStatus.PLANNED
        self.sched.requeue(st.report.index, not_before=self._now() + delay)
