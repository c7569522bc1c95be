"""Patching a block that a value of the wrong JSON kind fails to parse.

A value of the wrong kind (``"price": "n/a"`` in a number column, as scraped data has)
fails a parse with explicit types. Sending the whole block, or even the piece around
it, to Python costs far more than the value is worth, so a failing block is *patched*:

* what the failure names (``Column(/price) changed from number to string``) says what
  to look for: the field's key followed by a value of that kind (``"price": "``). The
  lines where it matches are overwritten, in a copy of the block, by ``{}`` and spaces
  (same length, so every offset holds), and the copy is parsed again. The guess is
  kept for the file's later blocks, whose suspect lines are overwritten before their
  first parse: a file with a wrong-typed value in every block is parsed about once;
* what the guess misses is found by parsing the copy as a stream of small chunks, in
  order (``pyarrow.json.open_json``, on one thread, so nothing is parsed ahead of a
  failure): the chunks before a failure are kept, the error names the row at fault in
  its chunk, that line is overwritten, the lines from the failing chunk's start to it
  are parsed on their own and the stream resumes after it (each byte is parsed at most
  twice; past one row at fault in 50, the caller's own way is cheaper);
* the overwritten rows (``Patched.texts``: their original text) then take the
  reference path, and only they. A line the guess picks wrongly costs speed, never
  exactness: it is simply read by the reference path too.

The patch needs one record per line: a block with a blank line is never patched (its
row numbers are not line numbers), and the rows parsed must be its lines one to one. When
it is not so, or a failure names no row (an unknown field of a closed schema, a fraction in
an integer column), ``Patcher.patch`` gives None and the caller decides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from .blocks import _Block, rows_match

__all__ = ["Patched", "Patcher", "Refused"]

# Chunks of the patching stream: a failure costs the part of its chunk before it.
_PATCH_CHUNK_BYTES = 64 << 10
_ROW_HINT = re.compile(r"in row (\d+)")
_PLACEHOLDER = b"{}"
_MAX_RESTARTS = 16
# A guess that matches in more than this share of a block's lines is no guide.
_MAX_SUSPECT_SHARE = 0.25


def _options(schema: pa.Schema, closed: bool) -> pa_json.ParseOptions:
    return pa_json.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="error" if closed else "ignore"
    )


@dataclass
class Patched:
    """A block parsed strictly with the rows in ``texts`` overwritten by ``{}`` (all
    null in ``table``); those rows take the reference path."""

    table: pa.Table
    texts: dict[int, bytes]  # the overwritten rows' original text


_KIND_CHANGE = re.compile(r"Column\((/[^)]*)\) changed from \w+ to (\w+)")
# The first byte of a value of each JSON kind, as pyarrow's errors name them.
_KIND_START = {
    "string": b'"',
    "number": rb"[-0-9]",
    "boolean": rb"[tf]",
    "null": b"n",
    "object": rb"\{",
    "array": rb"\[",
}


def _suspects(message: str) -> re.Pattern[bytes] | None:
    """What a kind-change error says to look for in other lines: its field's key
    followed by a value of the offending kind (``"price": "``). Only a guess: a line it
    wrongly picks takes the reference path (exact, slower); one it misses fails the
    strict parse like the first."""
    found = _KIND_CHANGE.search(message)
    if found is None:
        return None
    key = found.group(1).rsplit("/", 1)[-1]
    start = _KIND_START.get(found.group(2))
    if not key or key == "[]" or start is None:
        return None
    quoted = json.dumps(key, ensure_ascii=False)[1:-1].encode()
    return re.compile(b'"' + re.escape(quoted) + rb'"[ \t\r\n]*:[ \t\r\n]*' + start)


@dataclass
class _Patch:
    """A copy of a block in which the rows at fault are overwritten by ``{}`` and spaces
    (same length: offsets hold); ``texts`` keeps their original text."""

    data: bytearray
    lines: int
    block: _Block  # the original: its line breaks are the copy's (``{}`` holds none)
    texts: dict[int, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, block: _Block) -> _Patch | None:
        """A patch of the block; None when its lines cannot be its rows."""
        lines = block.breaks if block.breaks is not None else block.n
        if lines is None:
            lines = len(block.line_ends())
        if not lines or (block.n is not None and block.n != lines) or block.has_blank_line():
            return None  # rows could not be told from lines by their count
        return cls(bytearray(block.data), lines, block)

    def ends(self) -> np.ndarray:
        """The line breaks' positions."""
        return self.block.line_ends()

    def line_start(self, row: int) -> int:
        return int(self.ends()[row - 1]) + 1 if row else 0

    def _overwrite(self, row: int, start: int, end: int) -> bool:
        if end - start < len(_PLACEHOLDER):
            return False
        self.texts[row] = bytes(self.data[start:end])
        self.data[start:end] = _PLACEHOLDER.ljust(end - start)
        return True

    def can_hide(self, starts: list[int]) -> bool:
        """Whether the lines at ``starts`` can all be overwritten (pyarrow must not see
        them; a line of one byte, ``[`` say, cannot hold ``{}``)."""
        if not starts:
            return True
        ends = np.append(self.ends(), len(self.data))  # an unterminated last line too
        found = np.asarray(starts)
        return bool(np.all(ends[np.searchsorted(ends, found)] - found >= len(_PLACEHOLDER)))

    def overwrite_row(self, row: int) -> bool:
        """Overwrite line ``row`` (False when there is none, or it cannot hold ``{}``)."""
        ends = self.ends()
        if row >= len(ends) or row in self.texts:
            return False
        return self._overwrite(row, self.line_start(row), int(ends[row]))

    def overwrite_hits(self, hits: list[int], row: int = 0, offset: int = 0) -> None:
        """Overwrite the lines holding ``hits`` (sorted positions from ``offset``, the
        start of line ``row``), counting line breaks from hit to hit."""
        for hit in hits:
            row += self.data.count(b"\n", offset, hit)
            offset = hit
            end = self.data.find(b"\n", hit)
            if end < 0:
                return
            if row not in self.texts:
                self._overwrite(row, self.data.rfind(b"\n", 0, hit) + 1, end)


@dataclass
class Patcher:
    """The strict parse of one file's blocks, patching those a wrong-kind value fails.

    What each failure says to look for (``_suspects``) is kept for the file's later
    blocks, whose suspect lines are overwritten before their first parse: a file with a
    wrong-typed value in every block is parsed about once, not twice."""

    schema: pa.Schema
    closed: bool  # a field the schema lacks fails the parse (else it is ignored)
    # Whether a value where the schema has a null-typed field is a row at fault (typed
    # reads); untyped, such a block is inferred instead (its values give its type).
    null_fields_fault: bool = True
    suspects: dict[bytes, re.Pattern[bytes]] = field(default_factory=dict)

    def patch(self, block: _Block) -> pa.Table | Patched | None:
        """The block parsed strictly (a table), else patched (``Patched``); None when a
        failure names no row or the block's lines are not its rows. Lines that hold
        only ``null`` are rows at fault too (pyarrow must never see them)."""
        lines = block.n or block.breaks or 1
        hits = self._hits(block.data, 0, lines)
        if not hits and not block.null_lines():
            try:
                return self.parse(block, block.data)
            except Refused as exc:
                if not self._may_patch(exc.message):
                    return None
                self._learn(exc.message)
            hits = self._hits(block.data, 0, lines)
        patch = _Patch.of(block)
        if patch is None or not patch.can_hide(block.null_lines()):
            return None
        patch.overwrite_hits(sorted(hits + block.null_lines()))
        return self._patched(block, patch)

    def _may_patch(self, message: str) -> bool:
        """Whether a failure can be patched. One that names no row (a fraction in an
        integer column, a field a closed schema lacks) cannot: the patched copy, parsed
        as a stream, would fail the same way, after parsing all that precedes it."""
        if message and _ROW_HINT.search(message) is None:
            return False
        return self.null_fields_fault or "changed from null" not in message

    def parse(self, block: _Block, data: Any) -> pa.Table:
        """The block (``data``: its text, or a patched copy) parsed strictly."""
        if data is block.data and block.null_lines():
            raise Refused("a line holds only null")
        try:
            table = pa_json.read_json(
                pa.BufferReader(data),
                # a small piece (a block split around a wrong-typed value) parses
                # faster without the thread pool's start-up
                read_options=pa_json.ReadOptions(
                    block_size=4 << 20, use_threads=len(data) >= (1 << 20)
                ),
                parse_options=_options(self.schema, self.closed),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise Refused(str(exc)) from None
        if not rows_match(block, table):
            raise Refused("")
        return table

    def _learn(self, message: str) -> re.Pattern[bytes] | None:
        """Keep what a failure says to look for; the pattern when it is new."""
        pattern = _suspects(message)
        if pattern is None or pattern.pattern in self.suspects:
            return None
        self.suspects[pattern.pattern] = pattern
        return pattern

    def _hits(
        self, data: Any, offset: int, lines: int, patterns: list[re.Pattern[bytes]] | None = None
    ) -> list[int]:
        """Where the suspects match from ``offset`` (sorted); a suspect matching in more
        than a quarter of the ``lines`` is no guide (its key holds such values
        legitimately somewhere) and is left out."""
        found: list[int] = []
        for pattern in self.suspects.values() if patterns is None else patterns:
            hits = [m.start() for m in pattern.finditer(data, offset)]
            if len(hits) <= _MAX_SUSPECT_SHARE * lines + 16:
                found.extend(hits)
        return sorted(found)

    def _patched(self, block: _Block, patch: _Patch) -> Patched | None:
        """The patched block parsed whole; failing that, as a stream of small chunks,
        resumed after each failure with the row it names overwritten (see the module
        docstring). None when a failure names no row, or rows are not lines."""
        table: pa.Table | None = None
        if patch.texts:
            try:
                table = self.parse(block, patch.data)
            except Refused as exc:
                if not self._may_patch(exc.message):
                    return None
                self._learn(exc.message)
        if table is None:
            batches = self._stream(patch)
            if batches is None:
                return None
            table = pa.Table.from_batches(batches, schema=self.schema)
        if table.num_rows != patch.lines:
            return None  # blank lines: rows and lines are not one to one
        block.one_per_line = True
        return Patched(table, patch.texts)

    def _stream(self, patch: _Patch) -> list[pa.RecordBatch] | None:
        # One thread: nothing is parsed ahead of a failure. The lines before the row at
        # fault (parsed once already, in the failing chunk) are parsed again on their
        # own, so each byte is parsed at most twice, however close the failures.
        read_options = pa_json.ReadOptions(block_size=_PATCH_CHUNK_BYTES, use_threads=False)
        options = _options(self.schema, self.closed)
        batches: list[pa.RecordBatch] = []
        first = 0  # the first line no batch holds yet
        faults = 0
        while first < patch.lines:
            try:
                reader = pa_json.open_json(
                    pa.BufferReader(memoryview(patch.data)[patch.line_start(first) :]),
                    read_options=read_options,
                    parse_options=options,
                )
                for batch in reader:
                    batches.append(batch)
                    first += batch.num_rows
                return batches
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                found = _ROW_HINT.search(str(exc))
                row = first + int(found.group(1)) if found is not None else patch.lines
                faults += 1
                # More than one row at fault in 50 so far: the caller's own way (pieces)
                # is cheaper than a restart for each.
                dense = faults > _MAX_RESTARTS and faults * 50 > row
                if dense or not self._may_patch(str(exc)) or not patch.overwrite_row(row):
                    return None  # no row named, or not this block's line: no progress
                pattern = self._learn(str(exc))
                if pattern is not None and row + 1 < patch.lines:
                    offset = patch.line_start(row + 1)
                    hits = self._hits(patch.data, offset, patch.lines - row, [pattern])
                    patch.overwrite_hits(hits, row + 1, offset)
                head = self._lines(patch, first, row + 1)
                if head is None:
                    return None
                batches.extend(head.to_batches())
                first = row + 1
        return batches

    def _lines(self, patch: _Patch, first: int, stop: int) -> pa.Table | None:
        """Lines ``[first, stop)`` of the patched copy parsed on their own (None when
        they do not parse, or not into as many rows)."""
        data = memoryview(patch.data)[patch.line_start(first) : patch.line_start(stop)]
        try:
            table = pa_json.read_json(
                pa.BufferReader(data),
                read_options=pa_json.ReadOptions(block_size=len(data) + 1, use_threads=False),
                parse_options=_options(self.schema, self.closed),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return table if table.num_rows == stop - first else None


class Refused(Exception):
    """A strict parse failed (``message``: pyarrow's words, empty when rows and records
    did not match)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
