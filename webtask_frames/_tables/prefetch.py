"""Running work one item ahead, in a thread: a producer of blocks (``prefetch``), and
the parse of the blocks (``mapped_ahead``).

Cutting the next block (reading, scanning, replacing separators) overlaps the parse of
this one, and that parse the checks of the block before: DuckDB and pyarrow release the
GIL while they work. Memory stays bounded by the one item waiting at each stage.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

__all__ = ["mapped_ahead", "prefetch"]

T = TypeVar("T")
R = TypeVar("R")

# How often a waiting producer or consumer looks whether the other side is gone.
_POLL_SECONDS = 0.1


def prefetch(items: Iterator[Any]) -> Generator[Any, None, None]:
    """``items``, produced one item ahead in a thread.

    When the consumer stops early (an error, or it simply stops iterating), the producer
    is told to stop and its iterator is closed, so no thread or DuckDB connection leaks.
    """
    done = object()
    stop = threading.Event()
    slots: queue.Queue[Any] = queue.Queue(maxsize=1)

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            # the slot may have been freed by a consumer on its way out (see below)
            return not stop.is_set()
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    break
        except BaseException as exc:  # handed to the consumer
            offer(exc)
        finally:
            try:
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # runs the producer generator's finally (closes DuckDB)
            finally:
                offer(done)  # whatever happened above, the consumer is released

    def take() -> Any:
        # Never wait on a producer that is gone: a thread that died without its end
        # marker (it cannot, but a read of a paid result must not hang on a bug) fails.
        while True:
            try:
                return slots.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not thread.is_alive() and slots.empty():
                    raise RuntimeError("the file reader stopped without a result") from None

    thread = threading.Thread(target=produce, name="webtask-frames-reader", daemon=True)
    thread.start()
    try:
        while (item := take()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # A producer waiting to hand over its next block is released at once, not at
        # its next poll: an abandoned read (a guess that proved wrong) restarts sooner.
        with contextlib.suppress(queue.Empty):
            slots.get_nowait()
        thread.join()


def mapped_ahead(fn: Callable[[T], R], items: Iterator[T]) -> Generator[R, None, None]:
    """``fn(item)`` for each of ``items``, in order, one item ahead on a worker thread.

    While the consumer handles one result, ``fn`` already runs on the next item: the
    parse of one block (pyarrow works on both cores, its Python thread mostly waiting)
    overlaps the checks of the one before it, which hold a core between two parses.
    ``fn`` runs on one item at a time, in their order, so state it keeps from item to
    item (what a patcher learnt) is as a plain loop would leave it. ``items`` is
    iterated and closed in the consumer's thread; a consumer that stops early waits
    for the ``fn`` call under way, so no work outlives the read. Errors come in the
    items' order, as in a plain loop: when making the next item fails, the result held
    is handed over first (its check may be what explains the failure).

        >>> list(mapped_ahead(str.upper, iter(["a", "b"])))
        ['A', 'B']
    """
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="webtask-frames-parse")
    pending: concurrent.futures.Future[R] | None = None
    source = iter(items)
    try:
        while True:
            try:
                item = next(source)
            except StopIteration:
                break
            except Exception:
                # The item held is the consumer's before the failure to make the next:
                # its result (or error) may decide what the failure means (a block
                # that proves a guess wrong restarts the read, whatever comes next).
                # An interrupt is no such failure: it goes at once.
                if pending is not None:
                    held, pending = pending, None
                    yield held.result()
                raise
            following = pool.submit(fn, item)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()
