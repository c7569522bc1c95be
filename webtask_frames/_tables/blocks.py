"""Cutting a result file into blocks of records, one JSON record per line.

``pyarrow.json`` reads newline-delimited records, in parallel, at hundreds of MB/s. Each
source below yields ``_Block``s: bytes holding one record per line (for the strict
parse) plus access to each record's own text (for the reference path).

* NDJSON: byte blocks cut at line ends.
* A JSON array whose writer is recognised (one element per line; ``json.dumps``'
  compact ``}, {`` or tight ``},{``; ``indent=N``): its top-level separators are
  rewritten to line breaks with same-length ``bytes.replace``/``translate`` passes.
  Any doubt (a separator look-alike inside an element) makes a line fail to parse on
  its own, and the reader starts over on the generic path (``_NotLineDelimited``).
* Any other JSON array: DuckDB's ``read_json_objects`` streams the elements' original
  text, one batch ahead in a thread.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import ProtocolError

__all__ = ["BLOCK_BYTES", "blocks", "loads"]

BLOCK_BYTES = 16 << 20
ARRAY_BATCH_ROWS = 50000
DUCKDB_THREADS = 1
# DuckDB sizes its read buffers from this (a larger element fails with ProtocolError).
MAX_ELEMENT_BYTES = 64 << 20
_LINE_BREAK = re.compile(b"[\r\n]")


def loads(text: str | bytes) -> tuple[Any, bool]:
    """Parse one record; the flag says it held NaN/Infinity (judged by jsonschema)."""
    flagged: list[str] = []

    def constant(name: str) -> float:
        flagged.append(name)
        return float(name)

    return json.loads(text, parse_constant=constant), bool(flagged)


@dataclass
class _Block:
    """A block of records: ``data`` holds one JSON record per line; ``texts()`` the
    records one by one (for the reference path); ``n`` their count when known (else
    ``breaks`` bounds it)."""

    data: memoryview | pa.Buffer
    texts: Callable[[], Sequence[str | bytes]]
    n: int | None = None
    breaks: int | None = None  # line breaks in ``data``, when the source counted them
    column: pa.Array | None = None
    line_array: bool = False
    one_per_line: bool = False
    _breaks: np.ndarray | None = None
    _texts: Sequence[str | bytes] | None = None

    def load(self, text: str | bytes) -> tuple[Any, bool]:
        """``_loads`` one record of this block; invalid JSON is a ProtocolError (or, for
        a guessed one-element-per-line array, a signal to re-read it generically)."""
        try:
            return loads(text)
        except ValueError as exc:
            if self.line_array:
                raise _NotLineDelimited from None
            raise ProtocolError(f"a record of the result file is not valid JSON: {exc}") from None

    def text_at(self, i: int) -> str | bytes:
        """Record ``i`` alone, without splitting the whole block when rows are lines."""
        if self.column is not None:
            text: str = self.column[i].as_py()
            return text
        if not self.one_per_line:
            if self._texts is None:
                self._texts = self.texts()
            return self._texts[i]
        if self._breaks is None:
            self._breaks = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10)
        start = 0 if i == 0 else int(self._breaks[i - 1]) + 1
        return bytes(memoryview(self.data)[start : int(self._breaks[i])])


def _ndjson_blocks(path: Path, block_bytes: int) -> Iterator[_Block]:
    with path.open("rb") as f:
        carry = b""
        while chunk := f.read(block_bytes):
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1 :]
            yield _block_of_lines(memoryview(data)[: cut + 1], data.count(b"\n", 0, cut + 1))
        if carry.strip():
            yield _block_of_lines(memoryview(carry + b"\n"), carry.count(b"\n") + 1)


def _block_of_lines(data: memoryview, breaks: int) -> _Block:
    def texts() -> list[bytes]:
        return [line for line in bytes(data).split(b"\n") if line.strip()]

    return _Block(data=data, texts=texts, breaks=breaks)


class _NotLineDelimited(Exception):
    """A JSON array guessed to hold one element per line does not."""


def _split_block(data: memoryview, breaks: int) -> _Block:
    def texts() -> list[bytes]:
        lines = (line.rstrip() for line in bytes(data).split(b"\n"))
        return [line.removesuffix(b",") for line in lines if line]

    return _Block(data=data, texts=texts, breaks=breaks, line_array=True)


_NEWLINES_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")


@dataclass(frozen=True)
class _Style:
    """How a JSON array writer separates top-level elements, and how to rewrite a run of
    elements to one per line with same-length passes (``bytes.replace``/``translate``,
    the fastest there are; positions do not move). In a rewritten ``sep`` the line
    break ends at ``end`` and the next element starts at ``start``."""

    sep: bytes
    end: int
    start: int
    rewrite: Callable[[bytes], bytes]


def _strip_newlines(data: bytes) -> bytes:
    # Valid JSON holds raw line breaks only as insignificant whitespace.
    return data.translate(_NEWLINES_TO_SPACES) if b"\n" in data or b"\r" in data else data


def _style(name: str) -> _Style:
    if name == "lines":  # [\n{...},\n{...}\n]
        return _Style(b",\n", 2, 2, lambda b: b.replace(b",\n", b" \n"))
    if name == "compact":  # json.dumps: [{...}, {...}]
        return _Style(b"}, {", 2, 3, lambda b: _strip_newlines(b).replace(b"}, {", b"}\n {"))
    if name == "tight":  # separators=(",", ":"): [{...},{...}]
        return _Style(b"},{", 2, 2, lambda b: _strip_newlines(b).replace(b"},{", b"}\n{"))
    indent = name.removeprefix("indent:").encode()  # json.dumps(indent=N)
    flat = b" " + indent + b"}, " + indent + b"{"  # a separator once line breaks are spaces
    marked = b" " + indent + b"}\n " + indent + b"{"
    return _Style(
        b"\n" + indent + b"},\n" + indent + b"{",
        len(indent) + 3,
        len(indent) * 2 + 4,
        lambda b: _strip_newlines(b).replace(flat, marked),
    )


def _split_array_blocks(path: Path, block_bytes: int, style_name: str) -> Iterator[_Block]:
    """A JSON array read like NDJSON by rewriting the separators between its elements.

    Blocks are cut at the last separator. A separator's bytes can also occur inside an
    element (in a string, or between nested objects written alike); the rewrite then
    breaks that element across lines, which no longer parse one by one: the strict
    parse fails or counts rows differently, and the reference path raises
    ``_NotLineDelimited`` so the file is re-read generically. When every line parses as
    exactly one value, the lines are exactly the array's elements.
    """
    style = _style(style_name)
    carry = b""
    first = True
    with path.open("rb") as f:
        while chunk := f.read(block_bytes):
            data = carry + chunk
            if first:
                data = data.lstrip(b"\xef\xbb\xbf \t\r\n")
                if not data.startswith(b"["):
                    raise _NotLineDelimited
                data, first = data[1:].lstrip(b" \t\r\n"), False
            cut = data.rfind(style.sep)
            if cut < 0:
                carry = data
                continue
            rewritten = style.rewrite(data)
            end = cut + style.end
            carry = data[cut + style.start :]
            yield _split_block(memoryview(rewritten)[:end], rewritten.count(b"\n", 0, end))
    last = carry.rstrip()
    if not last.endswith(b"]"):
        raise _NotLineDelimited
    last = last[:-1].rstrip()
    if last:
        tail = style.rewrite(last) + b"\n"
        yield _split_block(memoryview(tail), tail.count(b"\n"))


_INDENTED = re.compile(rb"\[(?:\r?\n)([ \t]+)\{")


def _array_style(path: Path) -> str | None:
    """How a JSON array file separates its elements, when it can be read like NDJSON."""
    with path.open("rb") as f:
        head = f.read(1 << 20).lstrip(b"\xef\xbb\xbf \t\r\n")
    indented = _INDENTED.match(head)
    if indented:
        indent = indented.group(1)
        if not indent.strip(b" "):
            return f"indent:{indent.decode()}"
    body = head[1:].lstrip(b" \t\r\n")
    line, newline, _ = body.partition(b"\n")
    if newline:
        try:
            json.loads(line.rstrip().removesuffix(b","))
            return "lines"
        except ValueError:
            return None
    if body.startswith(b"{"):
        if b"}, {" in body:
            return "compact"
        if b"},{" in body:
            return "tight"
    return None


def _values_of(column: pa.Array) -> pa.Buffer:
    """The bytes of a string array's values, zero-copy (offsets are contiguous)."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)
    first, last = offsets[column.offset], offsets[column.offset + len(column)]
    data: pa.Buffer = column.buffers()[2]
    return data[int(first) : int(last)]


def _duckdb_batches(path: Path, batch_rows: int) -> Iterator[pa.Array]:
    con = duckdb.connect(":memory:", config={"threads": DUCKDB_THREADS})
    try:
        quoted = str(path).replace("'", "''")
        reader = con.sql(
            f"SELECT json FROM read_json_objects('{quoted}', format='array', "
            f"maximum_object_size={MAX_ELEMENT_BYTES})"
        ).to_arrow_reader(batch_rows)
        for batch in reader:
            column = batch.column(0)
            yield column if column.type == pa.string() else column.cast(pa.string())
    except duckdb.Error as exc:
        raise ProtocolError(f"the JSON result file is not a valid JSON array: {exc}") from None
    finally:
        con.close()


def _prefetch(items: Iterator[Any]) -> Iterator[Any]:
    """Run a producer one item ahead in a thread (DuckDB and pyarrow both release the
    GIL, so splitting the next batch overlaps parsing this one).

    When the consumer stops early (an error, or it simply stops iterating), the producer
    is told to stop and its iterator is closed, so no thread or DuckDB connection leaks.
    """
    done = object()
    stop = threading.Event()
    slots: queue.Queue[Any] = queue.Queue(maxsize=1)

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    break
        except BaseException as exc:  # handed to the consumer
            offer(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # runs the producer generator's finally (closes DuckDB)
        offer(done)

    thread = threading.Thread(target=produce, name="webtask-frames-reader", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _array_blocks(path: Path, batch_rows: int) -> Iterator[_Block]:
    """The generic JSON-array reader: DuckDB's ``read_json_objects`` streams the
    elements' original text; each batch becomes a block of one element per line."""
    for column in _prefetch(_duckdb_batches(path, batch_rows)):
        if _LINE_BREAK.search(memoryview(_values_of(column))) is not None:
            # Raw line breaks can only be insignificant whitespace in valid JSON.
            column = pc.replace_substring(column, "\n", " ")
            column = pc.replace_substring(column, "\r", " ")
        lines = pc.binary_join_element_wise(column, "", "\n")
        yield _Block(data=_values_of(lines), texts=column.to_pylist, n=len(column), column=column)


def blocks(path: Path, fmt: str) -> Iterator[_Block]:
    if fmt == "ndjson":
        return _ndjson_blocks(path, BLOCK_BYTES)
    if fmt.startswith("json-array-"):
        return _split_array_blocks(path, BLOCK_BYTES, fmt.removeprefix("json-array-"))
    return _array_blocks(path, ARRAY_BATCH_ROWS)
