"""A manual clock for batch tests: virtual time that jumps while the event loop is idle.

It implements the library's ``Clock`` protocol. ``sleep`` parks the caller until virtual
time reaches its deadline; once every runnable coroutine has had its turn (the loop is
idle), the clock jumps to the earliest deadline and wakes those sleepers. A batch with
seconds of polls, backoffs and holds thus runs in milliseconds, and its timings are
exact and free of machine load.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

# Loop turns without progress that count as idle: every task waiting on a sleep (the
# fakes answer inline, so a request never waits on real I/O).
IDLE_TURNS = 20


class AutoJumpClock:
    """Virtual monotonic seconds; ``sleep`` returns when idle time jumps past its deadline.

    Example:
        >>> clock = AutoJumpClock()
        >>> asyncio.run(clock.sleep(3600.0))
        >>> clock.now()
        3600.0
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self.slept: list[float] = []  # every sleep asked for, in order

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        loop = asyncio.get_running_loop()
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        driver = self._driver
        if driver is None or driver.done() or driver.get_loop() is not loop:
            self._driver = loop.create_task(self._drive())
        await future

    async def _drive(self) -> None:
        while True:
            for _ in range(IDLE_TURNS):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():  # canceled sleeps
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                return
            self._now = max(self._now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
