"""One Parquet file replaced atomically: readers see the old file or the new one.

The new file is written under a temporary name in the same directory, flushed to disk
and renamed over the target (``os.replace`` is atomic on one filesystem). The temporary
name starts with a dot and ends in ``.tmp``: pyarrow's dataset discovery (and so
``pandas.read_parquet``) skips names starting with ``.`` or ``_``, and a ``*.parquet``
glob (DuckDB's ``read_parquet``) does not match it, so a file left half-written by a
killed process is never read; ``is_temporary`` lets the next writer remove it.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "fsync_directory",
    "fsync_file",
    "is_temporary",
    "temporary_name",
    "write_atomically",
]

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: Path) -> None:
    """Flush ``path``'s entries (a rename in it) to disk, where the platform allows it."""
    with contextlib.suppress(OSError):  # Windows cannot open a directory
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def temporary_name(target: Path) -> Path:
    """The temporary sibling ``target`` is written to before its rename."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of ``temporary_name``'s (left behind by a crash).

    Example:
        >>> is_temporary(temporary_name(Path("d/item-ab.parquet")).name)
        True
    """
    return _TEMPORARY.match(name) is not None


def write_atomically(table: pa.Table, target: Path) -> Path:
    """Write ``table`` to ``target`` (a Parquet file) atomically and durably.

    Example:
        >>> write_atomically(pa.table({"a": [1]}), Path("out/a.parquet"))  # doctest: +SKIP
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    try:
        pq.write_table(table, tmp)
        fsync_file(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_directory(target.parent)
    return target
