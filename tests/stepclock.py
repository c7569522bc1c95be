"""A virtual clock for tests: ``sleep`` records the delay and moves time at once.

It is the library's ``Clock`` (``client.clock = StepClock()``) and, called, the sandbox's
time source (``Sandbox(clock=clock)``), so a client and an in-process sandbox share one
virtual time: a task of an hour finishes after the client's polls have slept an hour,
in microseconds of real time.
"""

from __future__ import annotations


class StepClock:
    """Virtual monotonic seconds that advance only by ``sleep`` or ``advance``.

    Example:
        >>> import asyncio
        >>> clock = StepClock()
        >>> asyncio.run(clock.sleep(2.5))
        >>> clock.now(), clock(), clock.sleeps
        (1002.5, 1002.5, [2.5])
    """

    def __init__(self, sleeps: list[float] | None = None, start: float = 1000.0) -> None:
        self.sleeps: list[float] = sleeps if sleeps is not None else []
        self._now = start

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward without a sleeper (e.g. a task finishing while no one waits)."""
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += max(0.0, seconds)
