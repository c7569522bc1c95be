"""Sandbox time: a scalable virtual clock and a manual clock for tests.

The sandbox never sleeps to make a task progress. Every request reads the clock
and the state machine is advanced lazily to "now", so the same code works under
an in-process ASGI transport, under uvicorn, and under a fully manual clock.

Virtual seconds are what the simulated service experiences (nominal durations,
latencies, costs, compute hours); real seconds are what the process waits.
``time_scale`` converts between them: with ``time_scale=0.01`` one real second is
100 virtual seconds.

Timestamps are in real seconds. ``createdAt``/``startedAt``/``completedAt`` (and URL
expiries) are the epoch plus *real* elapsed time, so the durations a client reads from
them match what it measures on its own clock, at any ``time_scale``: a nominal
60-second run at ``time_scale=0.01`` reports ``completedAt - startedAt`` of 0.6 s (its
compute hours stay nominal). Clients therefore never learn the sandbox's speed-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["ManualClock", "VirtualTime", "iso_ms"]


class ManualClock:
    """A monotonic clock that only moves when told to; pass it as ``clock=``.

    It is thread-safe, so a test thread may advance it while the sandbox serves
    requests from another thread.

    Example:
        >>> clock = ManualClock()
        >>> clock()
        0.0
        >>> clock.advance(2.5)
        >>> clock()
        2.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        with self._lock:
            self._now += seconds

    def __repr__(self) -> str:
        return f"ManualClock(now={self():.3f})"


def iso_ms(epoch_s: float) -> str:
    """Format unix seconds as ISO-8601 UTC with milliseconds and ``Z``.

    Truncates (never rounds) to the millisecond so that ordered instants stay
    ordered once formatted (createdAt <= startedAt <= completedAt).

    Example:
        >>> iso_ms(0.0)
        '1970-01-01T00:00:00.000Z'
    """
    ms_total = int(epoch_s * 1000) if epoch_s >= 0 else -int(-epoch_s * 1000 + 0.999999)
    secs, ms = divmod(ms_total, 1000)
    t = time.gmtime(secs)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms:03d}Z"
    )


class VirtualTime:
    """Maps a monotonic source clock onto virtual sandbox time.

    ``now()`` is virtual seconds since the sandbox was created; ``epoch(t)``
    turns a virtual instant into unix seconds for timestamps and URL expiry: the
    epoch plus the *real* seconds elapsed by then (``t * time_scale``).

    Example:
        >>> clock = ManualClock()
        >>> vt = VirtualTime(clock, time_scale=0.5, epoch=1_700_000_000.0)
        >>> clock.advance(1.0)
        >>> vt.now()
        2.0
        >>> vt.iso(vt.now())   # one real second after the epoch
        '2023-11-14T22:13:21.000Z'
    """

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        *,
        time_scale: float = 1.0,
        epoch: float | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._scale = time_scale
        self._origin = self._clock()
        self._epoch = time.time() if epoch is None else float(epoch)

    @property
    def time_scale(self) -> float:
        """Real seconds per virtual second."""
        return self._scale

    def now(self) -> float:
        """Virtual seconds elapsed since this object was created."""
        return (self._clock() - self._origin) / self._scale

    def epoch(self, t: float) -> float:
        """Unix seconds of virtual instant ``t`` (real seconds since the epoch)."""
        return self._epoch + self.real_seconds(t)

    def iso(self, t: float) -> str:
        """ISO-8601 (ms, Z) of virtual instant ``t``, in real seconds (see ``epoch``)."""
        return iso_ms(self.epoch(t))

    def real_seconds(self, virtual_s: float) -> float:
        """How long a virtual span lasts in real (clock) seconds."""
        return virtual_s * self._scale
