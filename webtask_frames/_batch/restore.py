"""Per-item run state, and how a re-run rebuilds it from the ledger's attempts.

A re-run on a ledger never pays twice: an item whose last attempt succeeded is
re-materialized from the local cache, a submitted task is re-attached (polled, not
resubmitted), a start whose fate is unknown is reported ambiguous (resubmitted only when
asked), and a failed one follows the same ``next_action`` policy as a live failure.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from .._wire.models import Canceled, Completed, Started, TaskStatus
from .._wire.policies import RetryPolicy
from .estimate import Estimator
from .ledger import AttemptRow
from .policy import NOT_SENT, Action, Counters, next_action
from .priors import prior_estimate
from .result import ItemReport
from .status import ItemStatus

__all__ = [
    "ItemState",
    "fill_from_status",
    "history",
    "is_cached",
    "orphan_waits",
    "restore_all",
    "restore_item",
]

logger = logging.getLogger("webtask_frames")


@dataclass
class ItemState:
    """Run-time state of one item (its report is the tasks-table row)."""

    report: ItemReport
    attempt_id: int | None = None
    counters: Counters = field(default_factory=Counters)
    holds_slot: bool = False
    final: bool = False
    table: pa.Table | None = None
    done_attempt: AttemptRow | None = None
    reattach: AttemptRow | None = None
    # When the unknown-fate start being resubmitted was sent (the ledger's intent time).
    orphan_sent: str | None = None


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
    """Copy what a status says (id, timestamps, outcome, error, reuse) onto the report."""
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


def _count(st: ItemState, attempts: list[AttemptRow]) -> None:
    report = st.report
    report.attempts = len(attempts)
    for row in attempts:
        report.add_cost(row.cost_ai_usd, row.cost_compute_hours)
        if row.state in ("intent", "ambiguous"):
            report.ambiguous_attempts += 1
        elif row.state == "not-sent":
            st.counters.count(NOT_SENT)
        else:
            st.counters.count(row.error_code)


def _ambiguous(st: ItemState, last: AttemptRow, resubmit_ambiguous: bool) -> bool:
    report = st.report
    if resubmit_ambiguous:
        logger.warning(
            "item %d: its last submission's fate is unknown (%s); resubmitting as "
            "asked (resubmit_ambiguous=True): it may run and bill twice",
            report.index,
            "the process stopped between POST and ledger write"
            if last.state == "intent"
            else last.error_message,
        )
        st.orphan_sent = last.intent_at
        return True
    report.status = ItemStatus.AMBIGUOUS
    report.error_code = "ambiguous-submission"
    report.error_message = (
        "a start request may have created a task whose id was never recorded; "
        "re-run with resubmit_ambiguous=True to submit it again"
    )
    st.final = True
    return False


def restore_item(
    st: ItemState, attempts: list[AttemptRow], retry: RetryPolicy, *, resubmit_ambiguous: bool
) -> bool:
    """Fill ``st`` from its attempts (oldest first); True when it must be (re)submitted."""
    _count(st, attempts)
    last = attempts[-1]
    status = last.terminal_status()
    if status is not None:
        fill_from_status(st.report, status)
    st.report.webtask_id = last.web_task_id
    if last.state == "terminal":
        if last.outcome == "success":
            st.done_attempt = last
            return False
        # A stop in an earlier run is not one now: its cause (key, credits) may be fixed.
        if next_action(last.error_code, st.counters, retry) is Action.FAIL:
            st.report.status = ItemStatus.FAILED
            st.final = True
            return False
        return True
    if last.state == "submitted":
        st.reattach = last
        return False
    if last.state in ("intent", "ambiguous"):
        return _ambiguous(st, last, resubmit_ambiguous)
    return True  # not-sent: no task exists


def restore_all(
    items: list[ItemState],
    rows: list[AttemptRow],
    retry: RetryPolicy,
    *,
    resubmit_ambiguous: bool,
) -> list[int]:
    """Fill every item's state from the ledger's attempts; returns the items still to
    submit, in grid order (``restore_item`` decides each)."""
    by_item: dict[int, list[AttemptRow]] = {}
    for row in rows:
        by_item.setdefault(row.item, []).append(row)
    to_run = []
    for st in items:
        attempts = by_item.get(st.report.index, [])
        if not attempts or restore_item(st, attempts, retry, resubmit_ambiguous=resubmit_ambiguous):
            to_run.append(st.report.index)
    return to_run


def is_cached(path: str | None) -> bool:
    """Whether a ledger's ``raw_path`` (a cached result file) is still on disk."""
    return path is not None and os.path.isfile(path)


def orphan_waits(
    items: list[ItemState], durations: Estimator, warm: set[str], model: str | None
) -> dict[int, float]:
    """Seconds each resubmitted ambiguous item must wait before its key is provably free.

    Its earlier start may have created a task (an orphan) that still runs on the item's
    reuseKey; two runs of one key must never overlap, so the key stays closed until the
    orphan's predicted duration (the ledger's history, else the model's prior) has passed
    since it was sent.

    Example:
        >>> orphan_waits([], Estimator(), set(), None)
        {}
    """
    now = datetime.now(UTC)
    waits: dict[int, float] = {}
    for st in items:
        key = st.report.reuse_key
        if st.orphan_sent is None or key is None:
            continue  # without a key the service names a fresh one: nothing to overlap
        cold = key not in warm
        est = durations.estimate(key, cold=cold)
        predicted = est.mean if est is not None else prior_estimate(model, cold=cold)[1]
        try:
            sent = datetime.fromisoformat(st.orphan_sent)
        except ValueError:  # an unreadable time: assume it was sent just now
            sent = now
        wait = predicted - (now - sent).total_seconds()
        if wait > 0:
            waits[st.report.index] = wait
    return waits
