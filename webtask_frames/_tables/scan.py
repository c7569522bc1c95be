"""Scans of JSON text without parsing it, vectorised with numpy (or Arrow's own
checks): where its structure is, how deep it nests, whether it is UTF-8.

* ``_scan``: the commas between a JSON array's elements (at depth 1, outside strings)
  and the array's own brackets, in chunks whose state (``_ScanState``: depth, inside a
  string, an escape cut by the chunk) carries from one to the next (``blocks`` cuts
  arrays with it).
* ``_deep_lines``: the records nested deeper than ``_MAX_DEPTH``, and the NDJSON lines
  over which pyarrow could carry a value (``_open_lines``), which pyarrow must never
  parse (``_Block.null_lines``).
* ``check_utf8``: bytes that are not UTF-8 (``json.loads`` refuses them; it takes
  UTF-8-encoded lone surrogates, which Arrow does not, but the reference's tables
  cannot hold them either).

    >>> _deepest(np.frombuffer(b'{"a": [[1]], "b": "[[[["}', dtype=np.uint8))
    3
"""

from __future__ import annotations

import platform
import sys
import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .._exceptions import ProtocolError

__all__ = ["check_utf8"]

_DEPTH = np.zeros(256, dtype=np.int8)
_DEPTH[[ord("["), ord("{")]] = 1
_DEPTH[[ord("]"), ord("}")]] = -1


def _real_quotes(arr: np.ndarray) -> np.ndarray:
    """Positions of the quotes that open or close strings (not escaped ones)."""
    quotes = np.flatnonzero(arr == 34)
    maybe = quotes[(arr[quotes - 1] == 92) & (quotes > 0)]  # after a backslash
    if not len(maybe):
        return quotes
    # Escaped when an odd run of backslashes precedes it: vectorised, since escaped
    # quotes are common in some text (HTML attributes, JSON held in strings).
    slashes = np.flatnonzero(arr == 92)
    starts = slashes[np.diff(slashes, prepend=-2) != 1]  # each run's first backslash
    runs = maybe - starts[np.searchsorted(starts, maybe - 1, side="right") - 1]
    return np.setdiff1d(quotes, maybe[runs % 2 == 1], assume_unique=True)


def _scan(arr: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """``(separators, brackets, depth after, inside a string after)`` of a run of JSON
    text starting outside any string at ``depth``: the positions of commas at depth 1
    (between the array's elements) and of the outer array's own brackets."""
    quotes = _real_quotes(arr)
    folded = arr | 0x20  # "[" -> "{", "]" -> "}"; nothing else folds onto them
    found = np.flatnonzero((folded == 0x7B) | (folded == 0x7D) | (arr == 0x2C))
    if len(quotes):
        found = found[np.searchsorted(quotes, found) % 2 == 0]  # outside strings
    steps = _DEPTH[arr[found]].astype(np.int64)
    after = depth + np.cumsum(steps)
    before = after - steps
    commas = found[(steps == 0) & (before == 1)]
    outer = found[((steps == 1) & (before == 0)) | ((steps == -1) & (after == 0))]
    end = int(after[-1]) if len(after) else depth
    return commas, outer, end, len(quotes) % 2 == 1


@dataclass
class _ScanState:
    """Where the scan of an array stands at the end of the text scanned so far."""

    depth: int = 0
    # How the next chunk's scan starts: b'"' inside a string, b'"\\' when, moreover, a
    # backslash escapes the chunk's first byte (a string or an escape cut by the chunk).
    prefix: bytes = b""
    brackets: list[int] = field(default_factory=list)  # the outer array's own, so far
    separated: bool = False  # a separator was passed (so an empty element is an error)


def _scan_chunk(chunk: bytes, state: _ScanState) -> tuple[np.ndarray, np.ndarray]:
    """The separators and outer brackets of ``chunk`` (positions in it), scanned from
    where ``state`` stands; ``state`` moves to the chunk's end."""
    shift = len(state.prefix)
    arr = np.frombuffer(state.prefix + chunk, dtype=np.uint8)
    commas, outer, state.depth, in_string = _scan(arr, state.depth)
    state.prefix = b""
    if in_string:  # an odd run of backslashes at the end escapes the next chunk's first byte
        run = len(arr)
        while run and arr[run - 1] == 92:
            run -= 1
        state.prefix = b'"\\' if (len(arr) - run) % 2 else b'"'
    return commas - shift, outer - shift


def _max_depth() -> int:
    """How deep a record pyarrow may be handed. Its JSON parser recurses once per level
    of nesting, on its threads' stacks (or the calling thread's): a record 20,000 deep
    crashed the process with 8 MiB stacks, 1,500 with 512 KiB (macOS gives threads
    that), 300 with 128 KiB (musl's). Allowed: 1 KiB of stack per level (a level takes
    about 0.5 with the caller's frames), at most 1,000 levels, about Python's own limit:
    deeper records go to Python, which refuses them. Read once, at import."""
    stack = 512 << 10
    if sys.platform == "linux":
        stack = 128 << 10  # musl's thread stacks, whatever the limit says
        if platform.libc_ver()[0] == "glibc":
            import resource  # POSIX only

            soft, _ = resource.getrlimit(resource.RLIMIT_STACK)  # glibc's thread default
            stack = soft if soft != resource.RLIM_INFINITY else 2 << 20
    if threading.stack_size():  # our reader thread's, when the caller set one
        stack = min(stack, threading.stack_size())
    return max(100, min(1000, stack // 1024))


_MAX_DEPTH = _max_depth()
# Up to this many long lines in a block are counted one by one, more in one pass.
_FEW_LINES = 256


def _deep_lines(data: memoryview | pa.Buffer, ends: np.ndarray, ndjson: bool = False) -> list[int]:
    """Where the lines pyarrow could nest deeper than ``_MAX_DEPTH`` in start (``ends``:
    the line breaks).

    A value pyarrow parses whole (the crash comes with building it, not with a parse
    that fails) holds at least as many opening brackets as levels, and as many closing
    ones: only lines of twice that many bytes are counted, and only those with that many
    opening brackets are scanned (outside strings) for their depth. That bounds a value
    within its line; in an array block every line break stands for a comma between
    elements, so no value goes on past one. NDJSON lines are not so held: pyarrow reads
    a line break as whitespace and would go on parsing a value over many short lines
    (``_open_lines``)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    if not len(ends) or ends[-1] != len(arr) - 1:
        ends = np.append(ends, len(arr))  # an unterminated last line
    starts = np.concatenate(([0], ends[:-1] + 1))
    found = _open_lines(arr, starts, ends) if ndjson else []
    long = np.flatnonzero(ends - starts > 2 * _MAX_DEPTH)
    if not len(long):
        return found
    if len(long) <= _FEW_LINES:  # a few long lines among short ones: only theirs counted
        counts = np.array([_openers(arr[starts[i] : ends[i]]) for i in long.tolist()])
    else:
        openers = np.flatnonzero((arr | 0x20) == 0x7B)  # "[" and "{" (see ``_scan``)
        counts = np.searchsorted(openers, ends[long]) - np.searchsorted(openers, starts[long])
    many = long[counts > _MAX_DEPTH]
    if len(many) > _FEW_LINES:  # bracket-heavy records: their depths in one pass
        deep = np.intersect1d(many, _lines_deeper(arr, starts, ends)).tolist()
    else:
        deep = [i for i in many.tolist() if _deepest(arr[starts[i] : ends[i]]) > _MAX_DEPTH]
    return sorted({*found, *(int(starts[i]) for i in deep)})


def _open_lines(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[int]:
    """Where the NDJSON lines that could be part of a value running over lines start:
    those that do not start with ``{`` or ``[`` and end with ``}`` or ``]`` (blank ones
    aside). A value that went on past a line ending with a closing bracket would need a
    comma or a closing bracket next, not an opening one; a raw line break inside a string
    fails the parse. So when every line is shaped so, pyarrow parses no value over two
    lines, and each line's depth bounds all. The shape is read off two bytes per line
    (valid records rarely need more), the rest stripped one by one."""
    filled = starts < ends
    first = arr[np.minimum(starts, len(arr) - 1)] | 0x20
    before = np.maximum(ends - 1, starts)
    last = arr[np.minimum(before, len(arr) - 1)]
    last = np.where(last == 13, arr[np.maximum(before - 1, 0)], last) | 0x20  # CRLF
    shaped = (first == 0x7B) & (last == 0x7D)
    found = []
    for i in np.flatnonzero(filled & ~shaped).tolist():
        line = arr[starts[i] : ends[i]].tobytes().strip(b" \t\r")
        if line and not (line[:1] in b"{[" and line[-1:] in b"}]"):
            found.append(int(starts[i]))
    return found


def _lines_deeper(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The lines nested deeper than ``_MAX_DEPTH`` (strings skipped, each line from
    depth 0 and with its own quotes: one line's odd quote does not shift the next's)."""
    folded = arr | 0x20  # "[" -> "{", "]" -> "}" (see ``_scan``)
    brackets = np.flatnonzero((folded == 0x7B) | (folded == 0x7D))
    line = np.searchsorted(ends, brackets)
    quotes = _real_quotes(arr)
    before = np.searchsorted(quotes, brackets) - np.searchsorted(quotes, starts)[line]
    outside = before % 2 == 0
    brackets, line = brackets[outside], line[outside]
    steps = np.where(folded[brackets] == 0x7B, 1, -1)
    total = np.cumsum(steps)
    # each line counts from its own start: the total before its first bracket comes off
    firsts = np.flatnonzero(np.diff(line, prepend=-1))
    base = np.repeat(total[firsts] - steps[firsts], np.diff(firsts, append=len(line)))
    return np.unique(line[total - base > _MAX_DEPTH])


def _openers(arr: np.ndarray) -> int:
    return int(np.count_nonzero((arr | 0x20) == 0x7B))


def _deepest(arr: np.ndarray) -> int:
    """The deepest nesting of the JSON text ``arr`` (brackets in strings not counted)."""
    quotes = _real_quotes(arr)
    found = np.flatnonzero(_DEPTH[arr] != 0)
    if len(quotes):
        found = found[np.searchsorted(quotes, found) % 2 == 0]
    return int(np.cumsum(_DEPTH[arr[found]], dtype=np.int64).max()) if len(found) else 0


def check_utf8(data: memoryview | pa.Buffer) -> None:
    """Refuse bytes that are not UTF-8, as ``json.loads`` does: pyarrow's JSON reader
    copies its strings' bytes unchecked, which would make a table Arrow itself calls
    invalid (and Python, DuckDB or Parquet readers fail on later). Arrow's check runs
    at gigabytes per second."""
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    offsets = pa.py_buffer(np.array([0, buffer.size], dtype=np.int64))
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, buffer]).validate(full=True)
    except pa.ArrowInvalid:
        raise ProtocolError(
            "the result file is not valid UTF-8 text (JSON must be): it is corrupt"
        ) from None
