"""Run coroutines from synchronous code, even inside a running event loop.

Jupyter cells execute inside a running asyncio loop, where ``asyncio.run`` refuses to
start. The sync facade therefore runs every coroutine on one dedicated daemon thread with
its own long-lived loop (the design anyio's ``BlockingPortal`` uses). One shared loop also
keeps an ``httpx.AsyncClient`` bound to a single loop for its whole life.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync", "submit"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="webtask-frames-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt in a notebook: cancel the work instead of leaving it running.
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "a synchronous webtask-frames call was made from inside its own event loop "
                "thread; use the async API (AsyncClient, read_webtask_async) there"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None and thread.is_alive():
            # Work still running (the program is exiting mid-read) is cancelled and given
            # a moment to clean up, as ``asyncio.run`` does: a temporary download is
            # deleted, a read thread stopped. Stopped as it stood, a download could even
            # make its folder again after the interpreter's own hooks deleted it.
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(_EXIT_GRACE_S)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()


_EXIT_GRACE_S = 5.0  # the most an exit waits for cancelled work to clean up


async def _cancel_all() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_PORTAL = _LoopThread()
# Exit hooks run last registered first. ``weakref.finalize``'s (it deletes the folders of
# TemporaryDirectory objects still alive) is made sure to be registered before ours, so
# work still running is cancelled, and cleans up, before its folder is deleted under it.
weakref.finalize(_PORTAL, lambda: None)
atexit.register(_PORTAL.stop)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the shared loop thread and return its result.

    Example:
        >>> async def two() -> int:
        ...     return 2
        >>> run_sync(two())
        2
    """
    return _PORTAL.run(coro)


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coro`` on the shared loop thread without waiting: its future (cancel it to
    cancel the coroutine).

    Example:
        >>> async def two() -> int:
        ...     return 2
        >>> submit(two()).result()
        2
    """
    return _PORTAL.submit(coro)
