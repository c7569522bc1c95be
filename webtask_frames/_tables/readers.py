"""Reading result payloads (inline data or a downloaded file) into typed Arrow tables.

Every reader returns the record columns (plus broadcast columns) and feeds a validation
``Collector``. Two kinds of path exist and always agree:

* the reference path, in Python: ``json.loads`` each record, ``_records.records_to_table``;
* the fast path for NDJSON and JSON-array files with an object record schema: the file is
  cut into blocks of records, one per line (``blocks``: NDJSON at line ends; a JSON
  array at its writer's separators, else at the commas a structural scan finds; a
  guessed separator that proves wrong restarts the read with the scan) and each block
  is parsed by ``pyarrow.json`` with an explicit, *strict* schema (``strict``): a value
  of the wrong JSON kind fails the block, which is then patched, so that only the rows
  at fault take the reference path. Parsed blocks are validated by the vectorised
  ``Certifier``; only rows it cannot prove valid are ``json.loads``-ed and judged record
  by record. Memory stays bounded by a block plus the resulting table.

Without a schema the fast path lets ``pyarrow.json`` infer the first block (temporal types
are read back as strings, since inference never turns strings into timestamps), parses
the next ones with the types found so far (``known_parts``: one parse instead of two,
wrong-kind values patched out; a block they do not fit is inferred) and ``unify_tables``
promotes across blocks. The result is always the reference's table: when Python had to
read some records, or a whole number beyond int64 or a double that becomes text is in
the Arrow parts, ``mixed_table`` builds it. CSV cells are typed by the schema; Parquet is
typed already. A wrapper object's records array (``{"source": ..., "companies": [...]}``)
is found in the file and read like an array file (``wrapper``); any other JSON object
file (and a small one) is parsed whole.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .._exceptions import ProtocolError
from .blocks import _Block, _NotLineDelimited, blocks, loads
from .growing import complete, open_bytes
from .inference import InferredPart, first_parts, inferred_parts, known_parts, learn
from .mixed import Overlaid, Part, exact_as_parsed, mixed_table, whole_rows
from .patch import Patcher
from .records import (
    add_constant_columns,
    jsonable,
    records_to_table,
    shape,
)
from .schema import Layout, Node, parse_type
from .spans import Span
from .strict import read_strict
from .unify import unify_tables
from .validate import Collector
from .wrapper import read_wrapped

__all__ = [
    "FORMATS",
    "ReadResult",
    "extension_for",
    "read_data",
    "read_file",
    "sniff_format",
]

FORMATS = ("json-array", "json-value", "ndjson", "csv", "parquet")
_NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
    "application/json-seq",
    "text/jsonl",
)


@dataclass
class ReadResult:
    """Record (and broadcast) columns of a result; verdicts are in the collector."""

    table: pa.Table
    n_records: int
    format: str = "inline"


def extension_for(content_type: str) -> str:
    """A file extension for a result's content type (``.bin`` when generic)."""
    ct = content_type.split(";")[0].strip().lower()
    if ct in _NDJSON_TYPES or ct.endswith(("+ndjson", "jsonl", "jsonlines")):
        return ".ndjson"
    if ct.endswith("json"):
        return ".json"
    if "csv" in ct:
        return ".csv"
    if "parquet" in ct:
        return ".parquet"
    return ".bin"


def sniff_format(path: Path, content_type: str = "application/octet-stream") -> str:
    """One of ``FORMATS``, from the content type, else from the first bytes."""
    ct = content_type.split(";")[0].strip().lower()
    ext = extension_for(ct)
    with open_bytes(path) as f:
        head = f.read(1 << 16)
    if head.startswith(b"PAR1") or ext == ".parquet":
        return "parquet"
    if ext == ".csv":
        return "csv"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if ext == ".ndjson" and text and text[:1] in b'{["-0123456789tfn':
        return "ndjson"  # declared, and starts like a JSON value (``null`` too)
    first = text[:1]
    if first == b"[":
        return "json-array"
    if first == b"{":
        line, _, rest = text.partition(b"\n")
        try:
            json.loads(line)
        except ValueError:
            return "json-value"
        return "ndjson" if rest.lstrip()[:1] == b"{" else "json-value"
    if not text:
        return "ndjson" if ext == ".ndjson" else "json-value"
    if first in b'"-0123456789tfn':
        try:
            json.loads(text) if len(head) < (1 << 16) else None
            return "json-value"
        except ValueError:
            pass
    return "csv"


# -- inline data and whole documents ---------------------------------------------------


def read_data(
    data: Any,
    *,
    layout: Layout | None,
    collector: Collector,
    record_path: str | None = None,
    reference: bool | None = None,
    fmt: str = "inline",
) -> ReadResult:
    """The reference path: records of ``data`` (a parsed JSON value) to a table."""
    shaped = shape(data, record_path=record_path, layout=layout)
    records = shaped.records
    # NaN/Infinity need no walk here: the validator's own test finds them, per record.
    collector.add(len(records), lambda i: (records[i], bool(reference)))
    table = records_to_table(records, layout)
    if shaped.broadcast:
        nodes: dict[str, Node] = dict(layout.broadcast) if layout is not None else {}
        table = add_constant_columns(table, shaped.broadcast, nodes)
    return ReadResult(table, len(records), fmt)


# -- no schema: inference ------------------------------------------------------------------


def _read_inferred(
    path: Path, fmt: str, collector: Collector, span: Span | None = None
) -> ReadResult:
    parts: list[Part] = []
    where: dict[int, tuple[int, int, int]] = {}  # Arrow part -> block, offset, length
    originals = _Originals()
    mixed = False
    # An earlier block's schema, tried first on the next ones (``known_parts``).
    patcher: Patcher | None = None
    with contextlib.closing(blocks(path, fmt, span)) as source:
        for index, block in enumerate(source):
            block_parts, patcher = _block_parts(block, patcher)
            # Records in Python (mixed types, or a pyarrow limitation), or a block
            # that failed in pieces: the table is then the one inferred over all records.
            mixed = mixed or any(
                t is None or isinstance(t, Overlaid) or p is not block for _, p, t in block_parts
            )
            for offset, piece, part in block_parts:
                if part is None:
                    parts.append([piece.load(t)[0] for t in piece.texts()])
                    continue
                where[len(parts)] = (index, offset, len(piece.data))
                if mixed:
                    originals.keep(len(parts), piece, getattr(part, "table", part))
                parts.append(part)
    # Tables pyarrow inferred block by block, concatenated, are the reference's table
    # unless a whole number beyond int64 or a double becoming text is in them.
    if mixed or not exact_as_parsed(parts):
        table = mixed_table(parts, partial(_reload, path, fmt, span, where, originals))
        if table is None:
            # The reference's table cannot be built from the parts: every record in
            # Python (the first pass is closed, its reader thread stopped, first).
            parts.clear()
            return _read_records_by_block(path, fmt, None, collector, span)
        collector.add(table.num_rows, lambda i: (None, False))
        return ReadResult(table, table.num_rows, fmt)
    tables = [p for p in parts if isinstance(p, pa.Table)]
    n_records = sum(t.num_rows for t in tables)
    collector.add(n_records, lambda i: (None, False))
    if not tables:
        return ReadResult(records_to_table([], None), 0, fmt)
    return ReadResult(unify_tables(tables), n_records, fmt)


def _block_parts(
    block: _Block, patcher: Patcher | None
) -> tuple[list[InferredPart], Patcher | None]:
    """The block's parts, parsed with the types found so far when they fit (else
    inferred, and what it shows learnt), and the patcher for the next blocks."""
    if patcher is None:
        return first_parts(block)
    found = known_parts(block, patcher)
    if found is not None:
        return found, patcher
    parts = list(inferred_parts(block))
    whole = parts[0][2] if parts[0][1] is block else None
    if isinstance(whole, pa.Table):
        learn(patcher, whole)
    return parts, patcher


class _Originals:
    """The text of the records a column turned to text may need again (whole-number
    doubles: written ``5`` or ``5.0``?), kept from the first pass once the read is known
    to be mixed, so that ``_reload`` reads the file again for the parts before that
    only. Bounded: past ``limit`` bytes, later parts are read again instead."""

    def __init__(self, limit: int = 64 << 20) -> None:
        self.texts: dict[int, dict[int, bytes]] = {}
        self.room = limit

    def keep(self, k: int, piece: _Block, table: pa.Table) -> None:
        """Keep part ``k``'s (``table``, parsed from ``piece``) whole-number rows."""
        if self.room <= 0 or piece.has_blank_line():
            return
        rows = sorted(
            {
                row
                for field in table.schema
                if pa.types.is_floating(field.type)
                for row in whole_rows(table.column(field.name))
            }
        )
        ends = piece.line_ends()
        if len(ends) != table.num_rows:
            return
        view = memoryview(piece.data)
        texts = {r: bytes(view[int(ends[r - 1]) + 1 if r else 0 : int(ends[r])]) for r in rows}
        self.room -= sum(map(len, texts.values()))
        self.texts[k] = texts

    def get(self, k: int, rows: list[int]) -> list[Any] | None:
        texts = self.texts.get(k)
        if texts is None or any(r not in texts for r in rows):
            return None
        return [loads(texts[r])[0] for r in rows]


def _reload(
    path: Path,
    fmt: str,
    span: Span | None,
    where: dict[int, tuple[int, int, int]],
    originals: _Originals,
    wanted: dict[int, list[int]],
) -> dict[int, list[Any]]:
    """The records at ``wanted`` rows of Arrow parts: kept from the first pass, else
    parsed again from the file (a second pass, up to the last block it needs: the
    blocks, and their pieces, come out the same)."""
    found: dict[int, list[Any]] = {}
    by_block: dict[int, list[int]] = {}
    for k, rows in wanted.items():
        kept = originals.get(k, rows)
        if kept is not None:
            found[k] = kept
        else:
            by_block.setdefault(where[k][0], []).append(k)
    if not by_block:
        return found
    with contextlib.closing(blocks(path, fmt, span)) as source:
        for index, block in enumerate(source):
            for k in by_block.get(index, []):
                _, offset, length = where[k]
                data = bytes(memoryview(block.data)[offset : offset + length])
                lines = [line for line in data.split(b"\n") if line.strip()]
                found[k] = [block.load(lines[i])[0] for i in wanted[k]]
            if len(found) == len(wanted):
                break
    return found


def _read_records_by_block(
    path: Path, fmt: str, layout: Layout | None, collector: Collector, span: Span | None = None
) -> ReadResult:
    records: list[Any] = []
    flags: list[bool] = []
    for block in blocks(path, fmt, span):
        for text in block.texts():
            value, flagged = block.load(text)
            records.append(value)
            flags.append(flagged)
    collector.add(len(records), lambda i: (records[i], flags[i]))
    return ReadResult(records_to_table(records, layout), len(records), fmt)


# -- CSV and Parquet -------------------------------------------------------------------------


def _cell(value: str | None, node: Node) -> Any:
    """A CSV cell to the JSON value the schema expects, when it parses as one."""
    if value is None:
        return None
    kind = node.kind
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            try:
                return int(value)
            except ValueError:
                return float(value)
        if kind == "bool":
            low = value.strip().lower()
            if low in ("true", "false"):
                return low == "true"
            return value
        if kind in ("struct", "list", "json"):
            return json.loads(value)
    except ValueError:
        return value
    return value


def _read_csv(path: Path, layout: Layout | None, collector: Collector) -> ReadResult:
    path = complete(path)  # pyarrow opens it by name
    if layout is None:
        table = pa_csv.read_csv(path)
        collector.add(table.num_rows, lambda i: (None, False))
        return ReadResult(table, table.num_rows, "csv")
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    options = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        null_values=[""],
    )
    raw = pa_csv.read_csv(path, convert_options=options)
    plan: Mapping[str, Node] = dict(layout.columns)
    records: list[dict[str, Any]] = []
    for row in raw.to_pylist():
        record = {}
        for key, value in row.items():
            if value is None:
                continue  # an empty cell is an absent property
            record[key] = _cell(value, plan[key]) if key in plan else value
        records.append(record)
    collector.add(len(records), lambda i: (records[i], False))
    return ReadResult(records_to_table(records, layout), len(records), "csv")


def _read_parquet(path: Path, layout: Layout | None, collector: Collector) -> ReadResult:
    path = complete(path)  # pyarrow opens it by name
    table = pq.read_table(path)
    if layout is None:
        collector.add(table.num_rows, lambda i: (None, False))
        return ReadResult(table, table.num_rows, "parquet")
    records: list[Any] = []
    for batch in table.to_batches(65536):
        records.extend(
            {k: jsonable(v) for k, v in row.items() if v is not None} for row in batch.to_pylist()
        )
    del table
    collector.add(len(records), lambda i: (records[i], False))
    return ReadResult(records_to_table(records, layout), len(records), "parquet")


# -- entry point ------------------------------------------------------------------------------


def read_file(
    path: Path,
    content_type: str = "application/octet-stream",
    *,
    layout: Layout | None,
    collector: Collector,
    record_path: str | None = None,
) -> ReadResult:
    """Read a downloaded result file into record columns, validating into ``collector``.

    This is the path ``materialize`` uses for file results (and the benchmark measures).
    """
    path = Path(path)
    fmt = sniff_format(path, content_type)
    if fmt == "parquet":
        return _read_parquet(path, layout, collector)
    if fmt == "csv":
        return _read_csv(path, layout, collector)
    if fmt == "json-value":
        # A wrapper object's records array, streamed (None: the file is parsed whole).
        wrapped = read_wrapped(
            path, layout=layout, collector=collector, record_path=record_path, read_array=_read_span
        )
        if wrapped is not None:
            wrapped.format = fmt
            return cast(ReadResult, wrapped)
    if fmt == "json-value" or record_path:
        if fmt == "ndjson":
            data: Any = [b.load(t)[0] for b in blocks(path, fmt) for t in b.texts()]
            reference: bool | None = None
        else:
            with open_bytes(path) as f:
                try:
                    raw = f.read()
                    data, reference = loads(raw) if raw.strip() else (None, False)
                except ValueError as exc:
                    raise ProtocolError(f"the result file is not valid JSON: {exc}") from None
        return read_data(
            data,
            layout=layout,
            collector=collector,
            record_path=record_path,
            reference=reference,
            fmt=fmt,
        )
    return _read_blocks(path, fmt, layout, collector)


def _read_span(path: Path, layout: Layout | None, collector: Collector, span: Span) -> ReadResult:
    return _read_blocks(path, "json-array", layout, collector, span)


def _read_blocks(
    path: Path, fmt: str, layout: Layout | None, collector: Collector, span: Span | None = None
) -> ReadResult:
    try:
        return _read_blocks_as(path, fmt, layout, collector, span)
    except _NotLineDelimited:
        pass  # leaving the handler first frees the first read (and its reader thread)
    # A JSON array's guessed separator also occurs inside an element (or an element is
    # written otherwise) past the first MiB: forget every row and verdict, scan it all.
    collector.reset()
    return _read_blocks_as(path, "json-array-scan", layout, collector, span)


def _read_blocks_as(
    path: Path, fmt: str, layout: Layout | None, collector: Collector, span: Span | None = None
) -> ReadResult:
    if layout is None:
        result = _read_inferred(path, fmt, collector, span)
    elif layout.is_object and parse_type(layout.node) is not None:
        table, n_records = read_strict(path, fmt, layout, collector, span)
        result = ReadResult(table, n_records, fmt)
    else:
        result = _read_records_by_block(path, fmt, layout, collector, span)
    result.format = "json-array" if fmt.startswith("json-array") else fmt
    return result
