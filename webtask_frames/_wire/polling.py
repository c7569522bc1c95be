"""The one polling loop: fetch a task's status until it is terminal, on an injected clock.

``AsyncClient.wait`` and the batch engine both poll through ``poll_until_terminal``; they
differ only in *when* they poll (a ``PollSchedule``) and in how many failed polls they
tolerate. The loop sleeps on a ``Clock`` so tests drive it with a manual clock instead of
the wall clock.

Example:
    >>> import asyncio
    >>> from webtask_frames._wire.models import parse_status
    >>> async def fetch():
    ...     return parse_status({"webTaskId": "wt_1", "status": "canceled"})
    >>> asyncio.run(
    ...     poll_until_terminal(fetch, BackoffSchedule(PollPolicy()), SystemClock(), deadline=1e12)
    ... ).status
    'canceled'
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .._exceptions import WebTaskError
from .models import TaskStatus
from .policies import PollPolicy

__all__ = [
    "BackoffSchedule",
    "Clock",
    "Expired",
    "GaveUp",
    "PollSchedule",
    "SystemClock",
    "poll_until_terminal",
    "wait_event",
]


class Clock(Protocol):
    """A monotonic time source that can also sleep: real by default, manual in tests.

    Example:
        >>> SystemClock().now() > 0
        True
    """

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``.

    Example:
        >>> clock = SystemClock()
        >>> clock.now() <= clock.now()
        True
    """

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class PollSchedule(Protocol):
    """When to poll: the delay before the first poll and after each non-terminal one."""

    def first(self) -> float:
        """Seconds before the first poll (0: poll at once)."""
        ...

    def after(self, status: TaskStatus | None, now: float) -> float:
        """Seconds before the next poll, after ``status`` (None: the poll failed)."""
        ...


class BackoffSchedule:
    """``wait``'s schedule: ``first_poll_s`` (default 0), then ``min_s`` growing to ``max_s``.

    Example:
        >>> s = BackoffSchedule(PollPolicy(min_s=1.0, max_s=2.0, jitter=0.0))
        >>> [s.first(), s.after(None, 0.0), s.after(None, 0.0), s.after(None, 0.0)]
        [0.0, 1.0, 1.5, 2.0]
    """

    def __init__(
        self,
        policy: PollPolicy,
        rng: random.Random | None = None,
        *,
        first_poll_s: float | None = None,
    ) -> None:
        self.policy = policy
        self.rng = rng
        self._first = 0.0 if first_poll_s is None else max(0.0, first_poll_s)
        self._interval = policy.first_interval(rng)

    def first(self) -> float:
        return self._first

    def after(self, status: TaskStatus | None, now: float) -> float:
        delay = self._interval
        self._interval = self.policy.next_interval(self._interval, self.rng)
        return delay


@dataclass(frozen=True)
class Expired:
    """The deadline passed while the task was not terminal; ``last`` is its last status."""

    last: TaskStatus | None


@dataclass(frozen=True)
class GaveUp:
    """Polls kept failing (the error budget or the deadline ran out); ``error`` is the last."""

    error: WebTaskError


async def poll_until_terminal(
    fetch: Callable[[], Awaitable[TaskStatus]],
    schedule: PollSchedule,
    clock: Clock,
    *,
    deadline: float,
    max_errors: int | None = None,
    raise_on: tuple[type[WebTaskError], ...] = (),
    on_status: Callable[[TaskStatus], None] | None = None,
) -> TaskStatus | Expired | GaveUp:
    """Poll ``fetch`` until it returns a terminal status, or the deadline passes.

    A failed poll (``WebTaskError``) propagates when ``max_errors`` is None; otherwise it
    counts against that many consecutive failures before ``GaveUp``; errors of the types
    in ``raise_on`` always propagate (e.g. a rejected key is no transient fault). Sleeps never pass
    the deadline, and the poll at the deadline is still made, so a task finishing just
    in time is seen. ``on_status`` sees every status fetched, terminal or not.
    """
    delay = schedule.first()
    last: TaskStatus | None = None
    errors = 0
    while True:
        if delay > 0:
            await clock.sleep(min(delay, max(0.0, deadline - clock.now())))
        try:
            status = await fetch()
        except WebTaskError as exc:
            if max_errors is None or isinstance(exc, raise_on):
                raise
            errors += 1
            if errors >= max_errors or clock.now() >= deadline:
                return GaveUp(exc)
            delay = schedule.after(None, clock.now())
            continue
        errors = 0
        last = status
        if on_status is not None:
            on_status(status)
        if status.terminal:
            return status
        now = clock.now()
        if now >= deadline:
            return Expired(last)
        delay = schedule.after(status, now)


async def wait_event(event: asyncio.Event, clock: Clock, timeout: float | None) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds of ``clock`` pass (None: no limit).

    Example:
        >>> event = asyncio.Event()
        >>> asyncio.run(wait_event(event, SystemClock(), 0.0))
    """
    if timeout is None:
        await event.wait()
        return
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, sleeper):
            task.cancel()
        await asyncio.gather(waiter, sleeper, return_exceptions=True)
