"""Cutting a result file into blocks of records, one JSON record per line.

``pyarrow.json`` reads newline-delimited records, in parallel, at hundreds of MB/s. Each
source below yields ``_Block``s: bytes holding one record per line (for the strict
parse) plus access to each record's own text (for the reference path).

* NDJSON: byte blocks cut at line ends.
* A JSON array whose writer is recognised: the separator between its elements (say
  ``}, {"id":`` or, indented, ``},\t  {\t    "id":``, line breaks read as tabs) is read
  off its first MiB and confirmed there by the structural scan below; each block's
  separators then become line breaks in place, their commas overwritten (``_mark``,
  what a same-length ``bytes.replace`` would do, without its copy). Should the
  separator also occur inside an element further on (a nested array of objects, a
  string), or an element be written differently, a record line no longer parses as
  JSON on its own: such a block's failure makes the reader start over with the scan
  (``_NotLineDelimited``).
* Any JSON array, whatever its whitespace and separators (compact, tight, indented,
  tabs, CRLF, arrays of objects inside records): a vectorised structural scan finds
  the commas between its elements (outside strings, at depth 1) and rewrites them to
  line breaks, one block ahead in a thread. Its state (depth, inside a string) carries
  from block to block, so each byte is scanned once however long an element is.
* DuckDB's ``read_json_objects`` (the elements' original text) remains for callers
  that ask for it (``fmt="json-array-duckdb"``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from io import BufferedReader
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import ProtocolError
from .growing import complete, open_bytes
from .prefetch import prefetch as _prefetch
from .scan import _deep_lines, _scan, _scan_chunk, _ScanState, check_utf8
from .separators import _AFTER_BRACE, _confirmed, _line_ends, _mark, _Separator
from .spans import Span, Window, objects_only

__all__ = ["BLOCK_BYTES", "blocks", "loads", "rows_match", "split_block"]

BLOCK_BYTES = 16 << 20
# The first block is this small, each next one twice the last up to BLOCK_BYTES: the
# first parse starts once 4 MiB are read and cut (or downloaded), not 16.
FIRST_BLOCK_BYTES = 4 << 20
ARRAY_BATCH_ROWS = 50000
DUCKDB_THREADS = 1
# DuckDB sizes its read buffers from this (a larger element fails with ProtocolError).
MAX_ELEMENT_BYTES = 64 << 20
_LINE_BREAK = re.compile(b"[\r\n]")


# A line that is blank, or starts with ``null`` (pyarrow crashes on a chunk starting
# with that token, whatever follows it): after a line break, and the first one.
_ODD_LINE = re.compile(rb"\n[ \t\r]*(?:null|(?=\n))")
_FIRST_ODD = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r]*(?:null|(?=\n))")


def loads(text: str | bytes) -> tuple[Any, bool]:
    """Parse one record; the flag says it held NaN/Infinity (judged by jsonschema)."""
    flagged: list[str] = []

    def constant(name: str) -> float:
        flagged.append(name)
        return float(name)

    return json.loads(text, parse_constant=constant), bool(flagged)


class _NotLineDelimited(Exception):
    """A block cut at a guessed separator is not one element per line after all: the
    read starts over with the structural scan (nothing read so far is kept)."""


@dataclass
class _Block:
    """A block of records: ``data`` holds one JSON record per line; ``texts()`` the
    records one by one (for the reference path); ``n`` their count when known (else
    ``breaks`` bounds it). ``guessed``: its lines come from a guessed separator, so a
    line that is not JSON means the guess was wrong, not that the file is."""

    data: memoryview | pa.Buffer
    texts: Callable[[], Sequence[str | bytes]]
    n: int | None = None
    breaks: int | None = None  # line breaks in ``data``, when the source counted them
    column: pa.Array | None = None
    one_per_line: bool = False
    guessed: bool = False
    ndjson: bool = False  # its lines are the file's: pyarrow could read a value over several
    _breaks: np.ndarray | None = None
    _texts: Sequence[str | bytes] | None = None
    _blank: bool | None = None
    _nulls: list[int] | None = None
    _deep: list[int] | None = None

    def has_blank_line(self) -> bool:
        """Whether a line is empty or whitespace: then rows and lines are not one to
        one, and pyarrow's row numbers are not line numbers."""
        if self._blank is None:
            self._check_lines()
        return bool(self._blank)

    def null_lines(self) -> list[int]:
        """Where the lines that pyarrow must never see start; they go to ``json.loads``.

        * Lines that start with ``null``: pyarrow's JSON reader crashes the process on a
          chunk that starts with one (and reads the others as rows of nulls, not as the
          reference's ``null`` records); ``null`` is the reference's null record, the
          rest invalid.
        * Records nested deeper than ``_MAX_DEPTH`` levels: pyarrow's parser recurses
          per level on its threads' stacks and crashes the process on deep enough ones
          (``_deep_lines``); Python reads them, or refuses them past its own limit. In
          NDJSON, lines not shaped like a record too, which could carry a value over
          lines (``_open_lines``): Python refuses them, as it does lines of the kind."""
        if self._nulls is None:
            self._check_lines()
        if self._deep is None:
            self._deep = _deep_lines(self.data, self.line_ends(), self.ndjson)
        if self._deep:
            return sorted({*(self._nulls or []), *self._deep})
        return self._nulls or []

    def inherit(self, block: _Block) -> None:
        """Take what is known of ``block``, whose whole lines this block's are: how they
        were cut, and that none is blank or starts with ``null`` (when so)."""
        self.guessed = block.guessed
        self.ndjson = block.ndjson
        if block._blank is False:
            self._blank = False
        if block._nulls == []:
            self._nulls = []
        if block._deep == []:
            self._deep = []

    def _check_lines(self) -> None:
        """Blank lines and ``null`` lines, in one pass."""
        data = self.data
        nulls: list[int] = []
        blank = False
        first = _FIRST_ODD.match(data)
        found = ([first] if first is not None else []) + list(_ODD_LINE.finditer(data))
        for match in found:
            if match.group(0).endswith(b"null"):
                nulls.append(match.start() + (match.group(0)[:1] == b"\n"))
            else:
                blank = True
        self._nulls, self._blank = nulls, blank

    def load(self, text: str | bytes) -> tuple[Any, bool]:
        """``_loads`` one record of this block; invalid JSON is a ProtocolError (or, in a
        guessed block, ``_NotLineDelimited``: the scan then judges the file)."""
        try:
            return loads(text)
        except ValueError as exc:
            if self.guessed:
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
        ends = self.line_ends()
        start = 0 if i == 0 else int(ends[i - 1]) + 1
        return bytes(memoryview(self.data)[start : int(ends[i])])

    def line_ends(self) -> np.ndarray:
        """The positions of the block's line breaks (found once, then kept)."""
        if self._breaks is None:
            self._breaks = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10)
        return self._breaks


def rows_match(block: _Block, table: pa.Table) -> bool:
    """Whether the parsed rows are the block's records one to one."""
    if block.n is not None:
        return bool(table.num_rows == block.n)
    # For valid input rows <= non-blank lines <= line breaks: equality means one record
    # per line (objects side by side on a line, invalid anyway, could only offset a
    # multi-line one).
    breaks = block.breaks if block.breaks is not None else len(block.line_ends())
    # Without blank lines, each line gives at least one row: as many rows as lines
    # means one each. With them, two objects side by side could make up the count.
    block.one_per_line = table.num_rows == breaks and not block.has_blank_line()
    return bool(block.one_per_line or table.num_rows == len(block.texts()))


def _sizes(block_bytes: int) -> Iterator[int]:
    """How much each block reads: ``FIRST_BLOCK_BYTES`` doubling up to ``block_bytes``."""
    size = min(FIRST_BLOCK_BYTES, block_bytes)
    while True:
        yield size
        size = min(2 * size, block_bytes)


def _read_behind(f: BufferedReader | Window, carry: bytes, size: int) -> tuple[bytearray, int]:
    """``carry`` (what the last block left), then up to ``size`` bytes of ``f``, in one new
    buffer that blocks are views of (no joined copy); and how many bytes were read."""
    data = bytearray(len(carry) + size)
    data[: len(carry)] = carry
    got = f.readinto(memoryview(data)[len(carry) :])
    del data[len(carry) + got :]
    return data, got


def _ndjson_blocks(path: Path, block_bytes: int) -> Generator[_Block, None, None]:
    with open_bytes(path) as f:
        lead = f.read(len(_BOM))
        carry = b"" if lead == _BOM else lead  # a byte-order mark is no record's
        pieces: list[bytes | bytearray] = []  # a line running over whole blocks
        for size in _sizes(block_bytes):
            data, got = _read_behind(f, carry, size)
            if not got:
                break
            cut = data.rfind(b"\n", len(carry))  # in what was read (a BOM-less lead too)
            if cut < 0:
                pieces.append(data)
                carry = b""
                continue
            block = memoryview(data)[: cut + 1]
            if pieces:  # joined once, however many blocks the line ran over
                block, pieces = memoryview(b"".join([*pieces, block])), []
            carry = bytes(data[cut + 1 :])
            ends = _line_ends(block)
            yield _block_of_lines(block, len(ends), ends, ndjson=True)
        tail = b"".join([*pieces, carry])
        if tail.strip():
            last = memoryview(tail + b"\n")
            ends = _line_ends(last)
            yield _block_of_lines(last, len(ends), ends, ndjson=True)


def split_block(block: _Block, parts: int) -> list[_Block]:
    """The block's lines in about ``parts`` smaller blocks (the block itself when it
    holds one line), so a record the strict parse refuses costs only its piece."""
    data = memoryview(block.data)
    ends = block.line_ends()
    if len(ends) < 2:
        return [block]
    step = -(-len(ends) // parts)
    cuts = ends[step - 1 :: step].tolist()
    if cuts[-1] != ends[-1]:
        cuts.append(int(ends[-1]))
    pieces, start = [], 0
    for cut in cuts:
        inside = ends[(ends >= start) & (ends <= cut)] - start
        piece = _block_of_lines(data[start : cut + 1], len(inside), inside)
        piece.inherit(block)
        pieces.append(piece)
        start = cut + 1
    return pieces


def _block_of_lines(
    data: memoryview, breaks: int, ends: np.ndarray | None = None, ndjson: bool = False
) -> _Block:
    def texts() -> list[bytes]:
        return [line for line in bytes(data).split(b"\n") if line.strip()]

    return _Block(data=data, texts=texts, breaks=breaks, ndjson=ndjson, _breaks=ends)


# A raw line break is whitespace in valid JSON, and invalid inside a string. It becomes a
# tab, not a space: a tab is whitespace too, and invalid inside a string as well, so a
# string holding a raw line break is still refused (as ``json.loads`` refuses it), not
# read with a space in its place.
_LINE_BREAKS_TO_TABS = bytes.maketrans(b"\r\n", b"\t\t")
_Bytes = TypeVar("_Bytes", bytes, bytearray)
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"


def _strip_newlines(data: _Bytes) -> _Bytes:
    return data.translate(_LINE_BREAKS_TO_TABS) if b"\n" in data or b"\r" in data else data


def _lines(block: bytes | bytearray | memoryview) -> list[bytes]:
    return [line.strip() for line in bytes(block).split(b"\n")[:-1]]


# -- any JSON array: a structural scan ---------------------------------------------------


def _invalid_array() -> ProtocolError:
    return ProtocolError("the JSON result file is not a valid JSON array")


class _Pending:
    """Text scanned since the last cut (one element may run over many chunks), kept in
    pieces and joined once, when a separator ends it."""

    def __init__(self) -> None:
        self.pieces: list[bytes | memoryview] = []
        self.outer: list[np.ndarray] = []  # outer bracket positions in the pending text
        self.size = 0

    def add(self, chunk: bytes, outer: np.ndarray) -> None:
        self.pieces.append(chunk)
        self.outer.append(outer + self.size)
        self.size += len(chunk)

    def cut(
        self, chunk: bytes, cut: int, commas: np.ndarray, outer: np.ndarray
    ) -> tuple[bytearray, np.ndarray, np.ndarray]:
        """The pending text plus ``chunk[:cut]`` followed by a line break, with the
        positions in it of ``commas`` and of every outer bracket; ``chunk[cut + 1:]``
        is pending next."""
        head = outer[outer < cut]
        text = bytearray().join([*self.pieces, memoryview(chunk)[:cut], b"\n"])
        brackets = np.concatenate([*self.outer, head + self.size])
        commas = commas + self.size
        rest = chunk[cut + 1 :]
        self.pieces, self.size = [rest], len(rest)
        self.outer = [outer[outer > cut] - (cut + 1)]
        return text, commas, brackets


def _scanned_block(text: bytearray, commas: np.ndarray, outer: np.ndarray) -> _Block | None:
    """One element per line: raw line breaks become tabs, the outer brackets spaces,
    separators line breaks. None when only whitespace is left; an empty element (a blank
    line: ``[,``, ``,,`` or a trailing comma) is an invalid array."""
    if b"\r" in text or text.find(b"\n", 0, len(text) - 1) >= 0:
        text = text.translate(_LINE_BREAKS_TO_TABS)
    view = np.frombuffer(text, dtype=np.uint8)
    view[outer] = 32
    view[commas] = 10
    view[-1] = 10
    del view  # releases the buffer
    if text.isspace():
        return None
    block = _Block(
        data=memoryview(text),
        texts=partial(_lines, text),
        n=len(commas) + 1,
        breaks=len(commas) + 1,
        one_per_line=True,
        _breaks=np.append(commas, len(text) - 1),
    )
    if block.has_blank_line():  # else a failing block's pieces could parse it to no row
        raise _invalid_array()
    return block


def _scanned(
    f: BinaryIO | Window, block_bytes: int, state: _ScanState, text: bytes = b""
) -> Generator[_Block, None, None]:
    """The array's blocks, from ``text`` (read, not scanned yet) then the rest of ``f``,
    cut at its separators by the scan; ``state`` says where ``text`` starts. Each byte
    is scanned once: an element spanning many chunks waits, scanned, in ``_Pending``."""
    pending = _Pending()
    for size in _sizes(block_bytes):
        chunk = f.read(size)
        more = len(chunk) == size  # a short read is the end of the file
        chunk, text = (text + chunk, b"") if text else (chunk, text)
        commas, outer = _scan_chunk(chunk, state)
        if more and not len(commas):
            pending.add(chunk, outer)  # one element runs on: read more
            continue
        cut = int(commas[-1]) if more else len(chunk)
        data, commas, outer = pending.cut(chunk, cut, commas[:-1] if more else commas, outer)
        state.brackets.extend(data[i] for i in outer.tolist())
        if not more and (state.depth or state.prefix or state.brackets != [91, 93]):
            raise _invalid_array()
        block = _scanned_block(data, commas, outer)
        if block is None:
            if more or state.separated or len(commas):  # "[,", ",," or a trailing comma
                raise _invalid_array()
        else:
            yield block
        if not more:
            return
        state.separated = True


def _scan_blocks(
    path: Path, block_bytes: int, span: Span | None = None
) -> Generator[_Block, None, None]:
    """Any JSON array, whatever its whitespace and separators: a vectorised scan finds
    the commas between the array's elements (outside strings, at depth 1), which become
    line breaks (raw line breaks become tabs), so each block holds one element per
    line and its count is known."""
    with Window(path, span) as f:
        lead = f.read(len(_BOM))
        yield from _scanned(f, block_bytes, _ScanState(), b"" if lead == _BOM else lead)


# -- a recognised writer: its separator, marked ----------------------------------------

_HEAD_BYTES = 1 << 20


def _array_separator(path: Path, span: Span | None = None) -> _Separator | None:
    """The separator between the array's elements, when its first MiB shows one that
    occurs exactly where the scan finds the elements' commas (at depth 1, outside
    strings): first with the elements' first key, then without it. None otherwise."""
    with Window(path, span) as f:
        head = _strip_newlines(f.read(_HEAD_BYTES).removeprefix(_BOM))
    commas = _scan(np.frombuffer(head, dtype=np.uint8), 0)[0]
    if not len(commas):
        return None
    first = int(commas[0])
    brace = head.rfind(b"}", 0, first)
    after = _AFTER_BRACE.match(head, brace + 1) if brace >= 0 else None
    if after is None or head[brace + 1 : first].strip(_WHITESPACE):
        return None
    ends = [after.end()] + ([after.start(1)] if after.group(1) else [])
    for end in ends:
        separator = _Separator(head[brace:end], first - brace)
        if _confirmed(head, commas, separator):
            return separator.anchored(head)  # the head's pairs counted once
    return None


def _opened(data: _Bytes) -> _Bytes:
    """The text after the array's opening bracket."""
    data = data.lstrip(_WHITESPACE)
    if not data.startswith(b"["):
        raise _NotLineDelimited
    return data[1:]


def _guessed_block(marked: memoryview, ends: np.ndarray) -> _Block:
    n = len(ends)
    block = _Block(
        data=marked,
        texts=partial(_lines, marked),
        n=n,
        breaks=n,
        one_per_line=True,
        guessed=True,
        _breaks=ends,
    )
    # Every line but the first starts with the rest of the separator (`` {"id":``):
    # only the first can start with ``null``, or be blank.
    first = _FIRST_ODD.match(marked)
    block._nulls = [0] if first is not None and first.group(0).endswith(b"null") else []
    block._blank = first is not None and not first.group(0).endswith(b"null")
    return block


def _guessed_tail(data: bytearray, separator: _Separator, separated: bool) -> Iterator[_Block]:
    """The last block: every element up to the array's closing bracket."""
    body = data.rstrip(_WHITESPACE)
    if not body.endswith(b"]"):
        raise _NotLineDelimited  # the scan reports what is wrong
    body[-1:] = b"\n"  # the bracket's place ends the last line
    if not body[:-1].strip(_WHITESPACE):
        if separated:
            raise _NotLineDelimited  # a trailing comma
        return
    ends = np.append(_mark(body, separator), len(body) - 1)  # the last line's end too
    yield _guessed_block(memoryview(body), ends)


def _guessed_blocks(
    path: Path, block_bytes: int, separator: _Separator, span: Span | None = None
) -> Generator[_Block, None, None]:
    """The array cut at its writer's separator, each comma of one overwritten by a line
    break in the buffer the block was read into (``_mark``: same length, so positions
    hold), blocks cut at the last one.

    Nothing here proves the separators are the elements' (that would be the scan): the
    blocks are ``guessed``. Where a separator look-alike lies inside an element, or two
    elements meet otherwise, the strict parse of the block fails: a string or a nested
    array is cut, or a comma is left between two records. Its reference path then finds
    a line that is not JSON and raises ``_NotLineDelimited``: the reader starts over.
    A whole block without the separator (a large element) goes on with the scan.
    """
    with Window(path, span) as f:
        lead = f.read(len(_BOM))
        carry = b"" if lead == _BOM else lead
        started = separated = False
        for size in _sizes(block_bytes):
            data, got = _read_behind(f, carry, size)  # the separators marked in it
            more = got == size
            data = _strip_newlines(data)
            text = data if started else _opened(data)
            if not more:
                yield from _guessed_tail(text, separator, separated)
                return
            cut = text.rfind(separator.pattern)
            if cut < 0:
                state = _ScanState(1, b"", [91], separated) if started else _ScanState()
                yield from _scanned(f, block_bytes, state, bytes(data))
                return
            end = cut + separator.comma + 1
            marks = _mark(text, separator)
            yield _guessed_block(memoryview(text)[:end], marks[marks < end])
            carry, started, separated = bytes(text[end:]), True, True


def _values_of(column: pa.Array) -> pa.Buffer:
    """The bytes of a string array's values, zero-copy (offsets are contiguous)."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)
    first, last = offsets[column.offset], offsets[column.offset + len(column)]
    data: pa.Buffer = column.buffers()[2]
    return data[int(first) : int(last)]


def _duckdb_batches(path: Path, batch_rows: int) -> Iterator[pa.Array]:
    path = complete(path)  # DuckDB opens it by name
    con = duckdb.connect(":memory:", config={"threads": DUCKDB_THREADS})
    try:
        con.execute("SET enable_progress_bar = false")  # nothing printed to the user
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


def _array_blocks(path: Path, batch_rows: int) -> Generator[_Block, None, None]:
    """The generic JSON-array reader: DuckDB's ``read_json_objects`` streams the
    elements' original text; each batch becomes a block of one element per line."""
    for column in _prefetch(_duckdb_batches(path, batch_rows)):
        if _LINE_BREAK.search(memoryview(_values_of(column))) is not None:
            # Raw line breaks can only be insignificant whitespace in valid JSON.
            column = pc.replace_substring(column, "\n", "\t")  # tabs: see _LINE_BREAKS_TO_TABS
            column = pc.replace_substring(column, "\r", "\t")
        lines = pc.binary_join_element_wise(column, "", "\n")
        yield _Block(data=_values_of(lines), texts=column.to_pylist, n=len(column), column=column)


def _checked(source: Iterator[_Block]) -> Generator[_Block, None, None]:
    """The blocks with their text checked (UTF-8) and their lines (lines pyarrow must
    not see; blank lines when the count of records is not known), in the producer's
    thread, ahead of their parse."""
    try:
        for block in source:
            check_utf8(block.data)
            block.null_lines()
            if block.n is None:
                block.has_blank_line()
            yield block
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def blocks(path: Path, fmt: str, span: Span | None = None) -> Generator[_Block, None, None]:
    """The blocks of an ``ndjson`` or ``json-array`` file (``json-array-scan``: never
    by a guessed separator; ``json-array-duckdb``: by DuckDB); of the array in ``span``
    of the file, when given (see ``spans``).

    A ``json-array`` read may raise ``_NotLineDelimited``: the caller then forgets what
    it read and reads ``json-array-scan``."""
    if fmt == "ndjson":
        return _prefetch(_checked(_ndjson_blocks(path, BLOCK_BYTES)))
    if fmt == "json-array-duckdb":
        return _array_blocks(path, ARRAY_BATCH_ROWS)
    separator = _array_separator(path, span) if fmt == "json-array" else None
    if separator is not None:
        found = _prefetch(_checked(_guessed_blocks(path, BLOCK_BYTES, separator, span)))
    else:
        found = _prefetch(_checked(_scan_blocks(path, BLOCK_BYTES, span)))
    return objects_only(found) if span is not None and span.objects else found
