"""What follows a failed attempt: the resubmission policy, pure and in one place.

Both the live path (an attempt just ended) and the restore path (a re-run reads the
ledger) ask ``next_action`` with the item's counters *including* the outcome at hand:

* ``workspace-rate-limited``: resubmit after a backoff, up to ``MAX_RATE_LIMITED_RESUBMITS``
  (a workspace saturated by someone else for that long is a failure);
* ``internal-error``: resubmit at once, up to ``retry.max_failed_resubmits``;
* ``not-sent`` (a start request that provably created nothing): resubmit after a backoff,
  up to ``MAX_NOT_SENT_RESUBMITS``;
* ``unauthenticated`` / ``no-ai-credits-left``: stop the batch (on restore: try again,
  the cause may be fixed);
* anything else (``timeout``, ``rejected``, ``canceled``...): a final failure.

Once the batch is stopping nothing is resubmitted.

Example:
    >>> from webtask_frames import RetryPolicy
    >>> next_action("internal-error", Counters(internal_errors=1), RetryPolicy())
    <Action.RESUBMIT_NOW: 'resubmit-now'>
    >>> next_action("internal-error", Counters(internal_errors=2), RetryPolicy())
    <Action.FAIL: 'fail'>
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .._exceptions import FATAL_TASK_CODES
from .._wire.policies import RetryPolicy

__all__ = [
    "INTERNAL_ERROR",
    "MAX_NOT_SENT_RESUBMITS",
    "MAX_RATE_LIMITED_RESUBMITS",
    "NOT_SENT",
    "RATE_LIMITED",
    "Action",
    "Counters",
    "next_action",
]

# A rate-limited outcome is not a failure, but a workspace saturated by someone else
# for this long is: give the item up after this many rate-limited resubmissions.
MAX_RATE_LIMITED_RESUBMITS = 20
# Start requests that provably created nothing (429/503/connection refused after the
# client's own retries) are requeued this many times before the item fails.
MAX_NOT_SENT_RESUBMITS = 3

RATE_LIMITED = "workspace-rate-limited"
INTERNAL_ERROR = "internal-error"
NOT_SENT = "not-sent"  # not a service code: the start request provably created nothing


class Action(StrEnum):
    """What to do with an item after a failed attempt."""

    RESUBMIT_AFTER_BACKOFF = "resubmit-after-backoff"
    RESUBMIT_NOW = "resubmit-now"
    FAIL = "fail"
    STOP_BATCH = "stop-batch"


@dataclass
class Counters:
    """How often an item met each resubmittable outcome (over all its attempts)."""

    rate_limited: int = 0
    internal_errors: int = 0
    not_sent: int = 0

    def count(self, code: str | None) -> None:
        """Count one outcome ``code`` (others are ignored).

        Example:
            >>> c = Counters()
            >>> c.count("workspace-rate-limited")
            >>> c.rate_limited
            1
        """
        if code == RATE_LIMITED:
            self.rate_limited += 1
        elif code == INTERNAL_ERROR:
            self.internal_errors += 1
        elif code == NOT_SENT:
            self.not_sent += 1


def next_action(
    code: str | None, counters: Counters, retry: RetryPolicy, *, stopping: bool = False
) -> Action:
    """The action after an attempt that ended with ``code`` (see the module docstring).

    Example:
        >>> next_action("no-ai-credits-left", Counters(), RetryPolicy())
        <Action.STOP_BATCH: 'stop-batch'>
        >>> next_action("workspace-rate-limited", Counters(rate_limited=1), RetryPolicy(),
        ...             stopping=True)
        <Action.FAIL: 'fail'>
    """
    if code in FATAL_TASK_CODES:
        return Action.STOP_BATCH
    if stopping:
        return Action.FAIL
    if code == RATE_LIMITED and counters.rate_limited <= MAX_RATE_LIMITED_RESUBMITS:
        return Action.RESUBMIT_AFTER_BACKOFF
    if code == INTERNAL_ERROR and counters.internal_errors <= retry.max_failed_resubmits:
        return Action.RESUBMIT_NOW
    if code == NOT_SENT and counters.not_sent <= MAX_NOT_SENT_RESUBMITS:
        return Action.RESUBMIT_AFTER_BACKOFF
    return Action.FAIL
