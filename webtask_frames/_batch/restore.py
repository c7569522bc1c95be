"""Per-item run state, and how a run rebuilds it from the ledger's attempts.

A run on a ledger never pays twice. Each grid item is looked up by identity
(``item_key``); items the ledger never saw are started. For the others, ``restore_item``
decides from the item's attempts (oldest first)::

    last attempt submitted ............ re-attach (poll it, never resubmit)
    a success, not older than max_age . reuse it: rows from the local cache, no request
    last start's fate unknown ......... ambiguous; resubmitted only with resubmit_ambiguous
    a success older than max_age ...... refresh: start it again (a refresh that failed
                                        for good within max_age waits for retry_failed)
    last attempt failed, retryable .... resubmit (the same ``next_action`` policy as live)
    last attempt failed, final ........ failed; started again only with retry_failed

A reuse wins over later failed or ambiguous refreshes (a paid result is never dropped,
nor paid again), and the
policy's counters count only the attempts since the item's last success (or since the
``retry_failed`` that started this round), so a refresh or a retry gets a full budget.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from .._options import BatchOptions
from .._wire.models import Canceled, Completed, Started, TaskStatus
from .._wire.policies import RetryPolicy
from .budget import usable_cost
from .estimate import Estimator
from .ledger import AttemptRow
from .policy import NOT_SENT, Action, Counters, next_action
from .priors import prior_estimate
from .report import BilledTask, ItemReport
from .status import ItemStatus

__all__ = [
    "ItemState",
    "RerunRules",
    "absent_waits",
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


def _billed_status(status: TaskStatus | None) -> str:
    if isinstance(status, Completed):
        return "succeeded" if status.succeeded else "failed"
    if isinstance(status, Canceled):
        return "canceled"
    return "running"


def _fill_billed_from(billed: BilledTask, status: TaskStatus) -> None:
    billed.status = _billed_status(status)
    billed.created_at = status.created_at
    if isinstance(status, Started | Completed | Canceled):
        billed.started_at = status.started_at
    if isinstance(status, Completed | Canceled):
        billed.completed_at = status.completed_at
    if isinstance(status, Completed):
        billed.outcome = status.outcome
        billed.error_code = status.error.code if status.error else None
        billed.error_message = status.error.message if status.error else None
        billed.cost_ai_usd = usable_cost(status.cost.ai_usd)
        billed.cost_compute_hours = usable_cost(status.cost.compute_hours)
        billed.duration_s = status.duration_s
        if status.reuse is not None:
            billed.reuse_used = status.reuse.used
            billed.reuse_key = billed.reuse_key or status.reuse.key
    elif isinstance(status, Canceled):
        billed.outcome = billed.error_code = "canceled"


def billed_from_row(row: AttemptRow) -> BilledTask:
    """A ledger attempt that created a task, as a ``BilledTask`` of an earlier run."""
    assert row.web_task_id is not None
    billed = BilledTask(row.web_task_id, row.attempt, row.model, row.reuse_key, new=False)
    status = row.terminal_status()
    if status is not None:
        _fill_billed_from(billed, status)
    # The ledger's figures are the ones the budget used (unusable costs already None).
    billed.cost_ai_usd, billed.cost_compute_hours = row.cost_ai_usd, row.cost_compute_hours
    billed.n_records, billed.n_invalid = row.n_records, row.n_invalid
    return billed


def fill_billed(report: ItemReport, status: TaskStatus) -> None:
    """Record a terminal ``status`` on the report's billed task of that id (this run's)."""
    for billed in report.billed:
        if billed.webtask_id == status.web_task_id:
            _fill_billed_from(billed, status)
            billed.new = True


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


@dataclass(frozen=True)
class RerunRules:
    """How a run treats what the ledger already holds (see the module docstring).

    ``max_age_s``: a success older than this many seconds is run again (None: never).
    ``now``: the time ages are measured from (the run's start).

    Example:
        >>> from webtask_frames import RetryPolicy
        >>> RerunRules(RetryPolicy(), retry_failed=True).retry_failed
        True
    """

    retry: RetryPolicy
    resubmit_ambiguous: bool = False
    retry_failed: bool = False
    max_age_s: float | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(cls, options: BatchOptions, retry: RetryPolicy) -> RerunRules:
        """The rules a run's options ask for (``retry``: the policy in force)."""
        return cls(
            retry,
            resubmit_ambiguous=options.resubmit_ambiguous,
            retry_failed=options.retry_failed,
            max_age_s=options.max_age_s,
        )

    def stale(self, row: AttemptRow) -> bool:
        """Whether a success recorded in ``row`` is older than ``max_age_s``."""
        if self.max_age_s is None:
            return False
        try:
            finished = datetime.fromisoformat(row.finished_at or row.intent_at)
        except ValueError:  # an unreadable time: treat the result as old
            return True
        return self.now - finished >= timedelta(seconds=self.max_age_s)


def _count(st: ItemState, attempts: list[AttemptRow]) -> None:
    """The report's totals over every attempt (cost is what the item cost, all runs)."""
    report = st.report
    report.attempts = len(attempts)
    for row in attempts:
        report.add_cost(row.cost_ai_usd, row.cost_compute_hours)
        if row.state in ("intent", "ambiguous"):
            report.ambiguous_attempts += 1
        if row.web_task_id is not None:
            report.billed.append(billed_from_row(row))


def _counters(st: ItemState, attempts: list[AttemptRow]) -> None:
    """The policy's counters: failures since the item's last success."""
    st.counters = Counters()
    for row in attempts:
        if row.succeeded:
            st.counters = Counters()
        elif row.state == "not-sent":
            st.counters.count(NOT_SENT)
        elif row.state == "terminal":
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


def _show(st: ItemState, row: AttemptRow) -> None:
    status = row.terminal_status()
    if status is not None:
        fill_from_status(st.report, status)
    st.report.webtask_id = row.web_task_id


def restore_item(st: ItemState, attempts: list[AttemptRow], rules: RerunRules) -> bool:
    """Fill ``st`` from its attempts (oldest first); True when it must be (re)submitted."""
    _count(st, attempts)
    _counters(st, attempts)
    last = attempts[-1]
    if last.state == "submitted":
        _show(st, last)
        st.reattach = last
        return False
    success = next((row for row in reversed(attempts) if row.succeeded), None)
    if success is not None and not rules.stale(success):
        _show(st, success)  # a paid result wins over a later refresh whose fate is unknown
        st.done_attempt = success
        return False
    if last.state in ("intent", "ambiguous"):
        _show(st, last)
        return _ambiguous(st, last, rules.resubmit_ambiguous)
    _show(st, last)
    # The success is older than max_age (else it was reused above): refresh it, unless
    # a refresh was tried within max_age and failed for good (then retry_failed decides).
    if success is not None and (last is success or rules.stale(last)):
        st.counters = Counters()  # a refresh: a fresh round of attempts
        st.report.rerun_reason = "refresh"
        return True
    if last.state == "not-sent":
        return True  # no task exists
    # A stop in an earlier run is not one now: its cause (key, credits) may be fixed.
    if next_action(last.error_code, st.counters, rules.retry) is not Action.FAIL:
        return True
    if rules.retry_failed:
        st.counters = Counters()
        st.report.rerun_reason = "retry"
        return True
    st.report.status = ItemStatus.FAILED
    st.final = True
    return False


def restore_all(
    items: list[ItemState], rows: list[AttemptRow], rules: RerunRules, keys: list[str]
) -> list[int]:
    """Fill every item's state from the ledger's attempts (``keys``: each item's
    identity); returns the items still to submit, in grid order."""
    by_item: dict[str, list[AttemptRow]] = {}
    for row in rows:
        by_item.setdefault(row.item_key, []).append(row)
    to_run = []
    for st, key in zip(items, keys, strict=True):
        attempts = by_item.get(key, [])
        if not attempts or restore_item(st, attempts, rules):
            to_run.append(st.report.index)
    return to_run


def absent_waits(
    rows: list[AttemptRow],
    keys: list[str],
    durations: Estimator,
    warm: set[str],
    model: str | None,
) -> dict[str, float]:
    """Seconds each reuseKey stays busy with a task of an item *absent* from this grid
    (``keys``): one an earlier run submitted (or may have: an unknown-fate start) that may
    still run. A run never touches such an item, but never starts a second task beside
    it on its key either: the key waits until the task's predicted duration (history,
    else the model's prior) has passed since it was sent.

    Example:
        >>> absent_waits([], [], Estimator(), set(), None)
        {}
    """
    grid, last = set(keys), {}
    for row in rows:
        if row.item_key not in grid:
            last[row.item_key] = row
    now = datetime.now(UTC)
    waits: dict[str, float] = {}
    for row in last.values():
        if row.state not in ("submitted", "intent", "ambiguous") or row.reuse_key is None:
            continue
        sent = row.submitted_at or row.intent_at
        wait = _time_left(row.reuse_key, sent, durations, warm, model, now)
        if wait > 0:
            waits[row.reuse_key] = max(wait, waits.get(row.reuse_key, 0.0))
    return waits


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
        wait = _time_left(key, st.orphan_sent, durations, warm, model, now)
        if wait > 0:
            waits[st.report.index] = wait
    return waits


def _time_left(
    key: str, sent: str, durations: Estimator, warm: set[str], model: str | None, now: datetime
) -> float:
    """Seconds until a task of ``key`` sent at ``sent`` (ISO time) is predicted to be done:
    its key's duration (the ledger's history, else the model's prior) minus its age."""
    cold = key not in warm
    est = durations.estimate(key, cold=cold)
    predicted = est.mean if est is not None else prior_estimate(model, cold=cold)[1]
    try:
        age = (now - datetime.fromisoformat(sent)).total_seconds()
    except ValueError:  # an unreadable time: assume it was sent just now
        age = 0.0
    return predicted - age
