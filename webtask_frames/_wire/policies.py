"""Small value objects for retry and polling behaviour.

Policies hold numbers and compute delays; they do no I/O, so the decisions they drive are
tested without a network or a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .._exceptions import InvalidInputError

__all__ = ["PollPolicy", "RetryPolicy"]


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How HTTP requests and failed task outcomes are retried.

    Attempts back off exponentially with full jitter: attempt ``n`` (0-based) waits a random
    time in ``[0, min(backoff_cap_s, backoff_base_s * 2**n)]``. A server's ``Retry-After``
    replaces that, clamped to ``[retry_after_min_s, retry_after_max_s]`` so ``Retry-After: 0``
    cannot spin and a huge value cannot stall a sweep. ``deadline_s`` bounds the total time
    spent on one request including waits: a hard limit covering connect, headers, body and
    every retry. A body that arrives slower than ``min_bytes_per_s`` on average once
    ``slow_grace_s`` seconds have passed is cut off (and retried where that is safe). A
    file result that does not advertise its size may be at most ``max_download_bytes``.
    ``max_failed_resubmits`` applies to batch runs: how often a task that failed with
    ``internal-error`` is submitted again.

    Example:
        >>> RetryPolicy(max_attempts=3).backoff(0, random.Random(1)) <= 0.5
        True
    """

    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 20.0
    deadline_s: float = 120.0
    retry_after_min_s: float = 0.1
    retry_after_max_s: float = 60.0
    max_failed_resubmits: int = 1
    min_bytes_per_s: float = 1024.0
    slow_grace_s: float = 10.0
    max_download_bytes: int = 8 << 30

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInputError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_failed_resubmits < 0:
            raise InvalidInputError("max_failed_resubmits must be >= 0")
        _positive("backoff_base_s", self.backoff_base_s, allow_zero=True)
        _positive("backoff_cap_s", self.backoff_cap_s, allow_zero=True)
        _positive("deadline_s", self.deadline_s)
        _positive("retry_after_min_s", self.retry_after_min_s)
        _positive("min_bytes_per_s", self.min_bytes_per_s)
        _positive("slow_grace_s", self.slow_grace_s, allow_zero=True)
        if self.max_download_bytes < 1:
            raise InvalidInputError("max_download_bytes must be >= 1")
        if self.retry_after_max_s < self.retry_after_min_s:
            raise InvalidInputError("retry_after_max_s must be >= retry_after_min_s")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the 0-based ``attempt`` failed (full jitter)."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2.0 ** min(attempt, 30)))
        return (rng or random).uniform(0.0, ceiling)

    def clamp_retry_after(self, seconds: float) -> float:
        """A server's Retry-After, bounded to this policy's range."""
        return min(self.retry_after_max_s, max(self.retry_after_min_s, seconds))


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How ``wait()`` polls a task's result endpoint.

    The first poll comes after ``min_s`` (or ``first_poll_s`` when a caller predicts the
    finish time); each later interval grows by ``factor`` up to ``max_s``, with +-``jitter``
    relative noise so many waiters do not poll in lockstep. ``timeout_s`` is the default
    deadline of one ``wait()``: finite, so a stuck task cannot hang a notebook forever.

    Example:
        >>> p = PollPolicy(min_s=1.0, max_s=15.0, jitter=0.0)
        >>> [round(p.next_interval(i), 2) for i in (1.0, 1.5, 12.0)]
        [1.5, 2.25, 15.0]
    """

    min_s: float = 1.0
    max_s: float = 15.0
    factor: float = 1.5
    jitter: float = 0.1
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        _positive("poll_min_s", self.min_s)
        _positive("timeout_s", self.timeout_s)
        if self.max_s < self.min_s:
            raise InvalidInputError(
                f"poll_max_s ({self.max_s}) must be >= poll_min_s ({self.min_s})"
            )
        if self.factor < 1.0:
            raise InvalidInputError(f"poll factor must be >= 1, got {self.factor}")
        if not 0.0 <= self.jitter < 1.0:
            raise InvalidInputError(f"poll jitter must be in [0, 1), got {self.jitter}")

    def next_interval(self, previous: float, rng: random.Random | None = None) -> float:
        """The interval after ``previous``: grown by ``factor``, capped, jittered."""
        base = min(self.max_s, max(self.min_s, previous * self.factor))
        if self.jitter:
            base *= 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return min(self.max_s, max(self.min_s, base))

    def first_interval(self, rng: random.Random | None = None) -> float:
        """The delay before the first poll when nothing predicts the finish time."""
        if not self.jitter:
            return self.min_s
        return self.min_s * (1.0 + (rng or random).uniform(0.0, self.jitter))
