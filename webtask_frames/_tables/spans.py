"""A byte range of a result file read as if it were the whole file.

A wrapper object's records array (``{"source": ..., "companies": [...]}``) is read by
the same block readers as a file holding only the array: ``Window`` opens the file and
ends its reads at the span's end. ``Span.objects`` asks, moreover, that every element
be an object: ``objects_only`` raises ``NotObjects`` on the first block holding another
value (the wrapper detection only takes an array of objects; the caller then reads the
file whole).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from .growing import open_bytes

__all__ = ["Limit", "NotObjects", "Span", "Window", "objects_only"]


class Limit(Protocol):
    """Where a span whose end is not known yet may be read to (a wrapper's array in a
    file still downloading)."""

    def room(self, pos: int, want: int | None) -> int:
        """The position reads from ``pos`` may go to, blocking as needed: ``pos + want``
        (all of it: None), or less only at the span's end."""


@dataclass(frozen=True)
class Span:
    """Bytes ``[start, end)`` of a file; ``objects``: every element must be an object.
    With a ``limit``, ``end`` is not known yet: the limit says where reads may go."""

    start: int
    end: int
    objects: bool = False
    limit: Limit | None = field(default=None, compare=False)


class NotObjects(Exception):
    """An element of a span read with ``Span.objects`` is not a JSON object."""


class Window:
    """The file's bytes from ``span.start`` to ``span.end`` (the whole file when None)."""

    def __init__(self, path: Path, span: Span | None = None) -> None:
        self._file = open_bytes(path)
        self._left: int | None = None
        self._limit: Limit | None = None
        self._pos = 0
        if span is not None:
            self._file.seek(span.start)
            self._pos = span.start
            self._limit = span.limit
            if self._limit is None:
                self._left = span.end - span.start

    def _room(self, size: int) -> int:
        """How many of ``size`` bytes (all that are left: -1) the next read may take."""
        if self._limit is not None:
            stop = self._limit.room(self._pos, None if size < 0 else size)
            return stop - self._pos
        if self._left is None:
            return size
        return self._left if size < 0 or size > self._left else size

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(self._room(size))
        self._moved(len(data))
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` from the window (fewer bytes only at its end)."""
        room = self._room(len(buffer))
        got = self._file.readinto(buffer[:room] if room < len(buffer) else buffer)
        self._moved(got)
        return got

    def _moved(self, n: int) -> None:
        self._pos += n
        if self._left is not None:
            self._left -= n

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Window:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 13, 32]] = True


def _lines_are_objects(data: Any) -> bool:
    """Whether every non-blank line of a block starts (after whitespace) with ``{``."""
    arr = np.frombuffer(data, dtype=np.uint8)
    if not len(arr):
        return True
    pos = np.concatenate([[0], np.flatnonzero(arr == 10) + 1])
    pos = pos[pos < len(arr)]
    while len(pos):  # step over each line's leading whitespace, all lines at once
        found = arr[pos]
        space = _SPACE[found]
        if np.any(found[~space] != 0x7B):
            return False
        pos = pos[space] + 1
        pos = pos[pos < len(arr)]
    return True


def objects_only(items: Iterator[Any]) -> Generator[Any, None, None]:
    """The blocks of ``items``, raising ``NotObjects`` at one holding a non-object."""
    try:
        for block in items:
            if not _lines_are_objects(block.data):
                raise NotObjects
            yield block
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a prefetching reader's thread stops now, not when collected
