"""A result file read while it downloads.

A download and the read of what it fetches used to run one after the other. On a
loopback or LAN link the transfer is a third of a read's time, and on a slow link it is
most of it; yet the parse needs only the bytes it is at. ``Growing`` lets the readers
start on the file the moment its first bytes land:

* the download (the writer) calls ``begin(path)`` when it opens its temporary file,
  ``wrote(n)`` after each chunk is flushed, and ``end(ok)`` when the transfer is over:
  ``ok`` once the file is complete, checked and renamed into place;
* a reader opens ``growing.path`` with ``open_bytes`` while ``watching(growing)`` is in
  force: a name of its own that exists on no disk, so two reads of one target never
  follow each other's download. Its reads block until the bytes they ask for are
  written, and the file ends only once the writer ended well; when the transfer
  failed, a blocked or later read raises ``Abandoned`` (the caller reads the finished
  file of the next attempt from scratch). ``file_size`` and ``complete`` wait for the
  end, for the readers that need the whole file (a wrapper object's outline) or open
  it by name (CSV, Parquet, DuckDB: ``complete`` gives the downloaded file's name).

Readers never see a byte the writer has not flushed, nor an end of file before the
transfer ended well: a read that succeeds saw exactly the file a read after the
download would see. The bytes are read with ``pread`` on a descriptor opened at
``begin``, so the rename of the temporary file changes nothing for open readers; where
``pread`` is missing (Windows) ``OVERLAP`` is False and callers read after the download.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "OVERLAP",
    "Abandoned",
    "Growing",
    "complete",
    "file_size",
    "following",
    "open_bytes",
    "watching",
]

OVERLAP = hasattr(os, "pread")

# A buffered reader's own buffer: reads of a block's size go straight into the block.
_BUFFER = 1 << 16
_MOST = 1 << 30  # bytes asked of one pread (Linux returns at most 0x7ffff000)
_END = 1 << 62  # waiting for the end: more bytes than any download writes


class Abandoned(Exception):
    """The download a read was following failed or was given up: its bytes are not the
    result's. The caller reads the next attempt's finished file instead."""


class Growing:
    """The state a downloading file shares with its readers (see the module docstring).

    Example:
        >>> with watching(Growing(Path("r.json"))) as growing:  # doctest: +SKIP
        ...     ...  # the download calls growing.begin/wrote/end; readers open growing.path
    """

    def __init__(self, target: Path) -> None:
        self.target = target  # where the download puts the file
        self.path = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.reading")
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._written = 0
        self._state = "waiting"  # then "running", "done" or "abandoned"
        self._readers = 0
        self._wants: list[int] = []  # what each blocked reader waits for (bytes written)
        self._closed = False
        self.bytes_read = 0  # handed to readers before the end (tests see the overlap)

    # -- the writer's side ---------------------------------------------------------------

    def begin(self, path: Path) -> None:
        """The download opened ``path`` (its temporary file) and writes it from byte 0.
        Ignored once an attempt began: a retry after bytes were written abandoned them."""
        with self._cond:
            if self._state != "waiting" or self._closed:
                return
            self._fd = os.open(path, os.O_RDONLY)
            self._state = "running"
            self._cond.notify_all()

    def wrote(self, n: int) -> None:
        """``n`` more bytes are flushed to the file (ignored once it ended)."""
        with self._cond:
            if self._state == "running":
                self._written += n
                # Only a reader whose bytes are all there is woken: a 16 MiB block waits
                # for one wake-up, not one per 64 KiB chunk of the download (each would
                # take the GIL from the loop that downloads).
                if self._wants and self._written >= min(self._wants):
                    self._cond.notify_all()

    def end(self, ok: bool) -> None:
        """The attempt that began is over: the file complete and in place (``ok``), or
        not (its bytes are abandoned). An attempt that failed before its first byte (an
        error status, a refused connection, an empty body) changes nothing: readers saw
        no byte of it, and the next attempt may begin."""
        with self._cond:
            if self._state != "running":
                return
            if not ok and not self._written:
                self._state = "waiting"  # no reader is past _wait: none uses the descriptor
                self._close_fd()
                return
            self._state = "done" if ok else "abandoned"
            self._cond.notify_all()
            self._release()

    def abandon(self) -> None:
        """No attempt will end well (the download gave up, or its caller left): readers
        raise ``Abandoned``."""
        with self._cond:
            if self._state in ("waiting", "running"):
                self._state = "abandoned"
                self._cond.notify_all()
                self._release()

    def close(self) -> None:
        """Abandon what has not ended and close the descriptor once no reader uses it."""
        self.abandon()
        with self._cond:
            self._closed = True
            self._release()

    @property
    def delivered(self) -> bool:
        """Whether the attempt the readers followed ended well: what they read is the
        file, an end of file included."""
        with self._cond:
            return self._state == "done"

    # -- the readers' side ---------------------------------------------------------------

    def _until(self, n: int | None) -> int:
        """Block until ``n`` bytes are written (None: until the end) or the transfer
        ended: the bytes written. Raises ``Abandoned``."""
        want = _END if n is None else n
        with self._cond:
            self._wants.append(want)
            try:
                while self._state == "waiting" or (
                    self._state == "running" and self._written < want
                ):
                    self._cond.wait()
            finally:
                self._wants.remove(want)
            if self._state == "abandoned":
                raise Abandoned("the download this read followed did not finish")
            return self._written

    def _wait(self, offset: int, size: int) -> int:
        """Block until ``size`` bytes from ``offset`` are written or the file ended: the
        bytes readable from ``offset`` (0 at the end). Raises ``Abandoned``."""
        return max(0, self._until(offset + size) - offset)

    def wait_written(self, n: int) -> bool:
        """Block until ``n`` bytes are written or the transfer ended; whether it ended
        well (then ``wait_done`` gives the size). Raises ``Abandoned``."""
        self._until(n)
        return self.delivered

    def wait_done(self) -> int:
        """Block until the transfer ended well: the file's size. Raises ``Abandoned``."""
        return self._until(None)

    def _descriptor(self) -> int:
        if self._fd is None:  # a reader opened after its download's watch was closed
            raise Abandoned("the download this read followed is no longer watched")
        return self._fd

    def _pread(self, buffer: memoryview, offset: int) -> int:
        fd = self._descriptor()
        if hasattr(os, "preadv"):  # straight into the caller's buffer
            return os.preadv(fd, [buffer], offset)
        data = os.pread(fd, len(buffer), offset)
        buffer[: len(data)] = data
        return len(data)

    def _read_at(self, size: int, offset: int) -> bytes:
        return os.pread(self._descriptor(), size, offset)

    def _opened(self) -> None:
        with self._cond:
            self._readers += 1

    def _closed_reader(self) -> None:
        with self._cond:
            self._readers -= 1
            self._release()

    def _release(self) -> None:
        # A reader still open (a producer thread not yet stopped) keeps the descriptor:
        # closing it under that reader could let its number name another file. An
        # abandoned attempt's goes as soon as it can: it holds a deleted file's disk
        # space, which the retry may need.
        done_with = self._closed or self._state == "abandoned"
        if done_with and not self._readers:
            self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Reader(io.RawIOBase):
    """The growing file from byte 0, each read blocking until its bytes are written."""

    def __init__(self, growing: Growing) -> None:
        super().__init__()
        self._growing = growing
        self._pos = 0
        growing._opened()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._growing.wait_done()
        self._pos = max(0, offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        # A read larger than the buffer's own goes straight into the caller's buffer, and
        # ``BufferedReader`` would ask again until it is full: wait for all of it, one
        # wake-up and one pread. Smaller ones (filling the buffer) take what is there.
        size = len(view) if len(view) > _BUFFER else 1
        available = self._growing._wait(self._pos, size)
        if not available:
            return 0
        got = self._growing._pread(view[: min(len(view), available)], self._pos)
        self._pos += got
        self._growing.bytes_read += got
        return got

    def readall(self) -> bytes:
        size = self._growing.wait_done()
        pieces = []
        while self._pos < size:  # one read returns at most about 2 GiB (Linux)
            piece = self._growing._read_at(min(size - self._pos, _MOST), self._pos)
            if not piece:
                break
            pieces.append(piece)
            self._pos += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        if not self.closed:
            self._growing._closed_reader()
        super().close()


_watched: dict[str, Growing] = {}
_lock = threading.Lock()


@contextlib.contextmanager
def watching(growing: Growing) -> Iterator[Growing]:
    """Within the block, ``open_bytes(growing.path)`` follows ``growing``'s download; at
    its end ``growing`` is closed (abandoned, if the download had not ended)."""
    key = os.fspath(growing.path)
    with _lock:
        _watched[key] = growing
    try:
        yield growing
    finally:
        with _lock:
            _watched.pop(key, None)
        growing.close()


def _growing(path: Path) -> Growing | None:
    with _lock:
        return _watched.get(os.fspath(path))


def open_bytes(path: Path) -> io.BufferedReader:
    """``path`` opened for reading in binary: the downloading file when it is watched
    (reads block until their bytes land), else the file on disk."""
    growing = _growing(path)
    if growing is None:
        return path.open("rb")
    return io.BufferedReader(_Reader(growing), _BUFFER)


def following(path: Path) -> Growing | None:
    """The download a watched ``path`` still follows (None once it ended, or unwatched)."""
    growing = _growing(path)
    if growing is None:
        return None
    with growing._cond:
        return growing if growing._state in ("waiting", "running") else None


def complete(path: Path) -> Path:
    """The file to open by name (pyarrow's CSV and Parquet readers, DuckDB): ``path``
    itself, or for a watched one its download's target, once it is in place."""
    growing = _growing(path)
    if growing is None:
        return path
    growing.wait_done()
    return growing.target


def file_size(path: Path) -> int:
    """The size of ``path`` (of a watched one, once its download ended well)."""
    growing = _growing(path)
    return growing.wait_done() if growing is not None else path.stat().st_size
