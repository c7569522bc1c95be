"""Total deadlines and the minimum transfer rate: no call can hang on a slow server.

A ``Deadline`` is one point in time (on the client's ``Clock``) by which a whole call
must end: connecting, waiting for headers, reading the body, every retry and every sleep
between polls. ``read_body`` reads a streamed response under that deadline and a
``TransferLimits`` (a minimum rate after a grace period, a byte ceiling), so a server that
drips a body a byte at a time, never sends headers, or never stops sending is cut off.

Example:
    >>> from webtask_frames._wire.polling import SystemClock
    >>> d = Deadline.after(SystemClock(), 5.0)
    >>> 0 < d.remaining() <= 5.0
    True
    >>> Deadline.never(SystemClock()).remaining() is None
    True
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from .polling import Clock

__all__ = ["BodyTooLarge", "Deadline", "TransferLimits", "TransferTooSlow", "read_body"]


class Deadline:
    """A moment on ``clock`` by which a call must end; ``at=None`` means no limit."""

    def __init__(self, clock: Clock, at: float | None) -> None:
        self.clock = clock
        self.at = at

    @classmethod
    def after(cls, clock: Clock, seconds: float | None) -> Deadline:
        """The deadline ``seconds`` from now (None: no limit)."""
        return cls(clock, None if seconds is None else clock.now() + max(0.0, seconds))

    @classmethod
    def never(cls, clock: Clock) -> Deadline:
        return cls(clock, None)

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a limit."""
        return None if self.at is None else max(0.0, self.at - self.clock.now())

    def expired(self) -> bool:
        return self.at is not None and self.clock.now() >= self.at

    def within(self, seconds: float | None) -> Deadline:
        """The earlier of this deadline and ``seconds`` from now."""
        other = Deadline.after(self.clock, seconds)
        if other.at is None:
            return self
        if self.at is None:
            return other
        return self if self.at <= other.at else other

    def cap(self, seconds: float) -> float:
        """``seconds``, shortened so it ends by the deadline."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """How slow and how large a response body may be.

    After ``grace_s`` seconds of body, at least ``min_bytes_per_s`` must have arrived on
    average (a server dripping a byte a second is cut off); more than ``max_bytes`` is
    refused the moment it arrives (None: no ceiling).
    """

    min_bytes_per_s: float = 1024.0
    grace_s: float = 10.0
    max_bytes: int | None = None


class TransferTooSlow(httpx.ReadTimeout):
    """The body arrived slower than the minimum rate, or the total deadline passed."""


class BodyTooLarge(Exception):
    """The body passed ``max_bytes``; ``received`` counts what was read."""

    def __init__(self, received: int, limit: int) -> None:
        super().__init__(f"{received} bytes received, more than the {limit} allowed")
        self.received = received
        self.limit = limit


async def read_body(
    response: httpx.Response,
    write: Callable[[bytes], object],
    *,
    deadline: Deadline,
    limits: TransferLimits,
    chunk_size: int | None = None,
) -> int:
    """Stream ``response``'s body into ``write``; the number of bytes read.

    Raises ``TransferTooSlow`` (an ``httpx.ReadTimeout``, so retry decisions treat it as
    one) when the deadline passes or the rate falls below the minimum, and ``BodyTooLarge``
    before writing a chunk that would pass ``limits.max_bytes``.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = 0
    chunks: AsyncIterator[bytes] = response.aiter_bytes(chunk_size)
    while True:
        # The latest moment the next chunk may arrive: the rate floor (after the grace
        # period, ``received`` bytes buy ``received / rate`` more seconds) or the deadline.
        by = started + limits.grace_s + received / limits.min_bytes_per_s
        left = deadline.remaining()
        if left is not None:
            by = min(by, loop.time() + left)
        try:
            async with asyncio.timeout_at(by):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return received
        except TimeoutError:
            why = "the deadline passed" if deadline.expired() else "below the minimum rate"
            raise TransferTooSlow(
                f"body too slow: {received} bytes in {loop.time() - started:.1f}s ({why})"
            ) from None
        if limits.max_bytes is not None and received + len(chunk) > limits.max_bytes:
            raise BodyTooLarge(received + len(chunk), limits.max_bytes)
        received += len(chunk)
        write(chunk)
