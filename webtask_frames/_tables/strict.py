"""The strict fast path: blocks of records parsed by ``pyarrow.json`` with the schema's
explicit types, validated by the vectorised ``Certifier``.

A block a value of the wrong JSON kind fails is patched (``patch``): the rows at fault,
and only they, take the reference path (``json.loads``, the reference converter) and
are put back at their positions by one ``take``; their verdicts come from their original
text, so they are the reference's. A block that cannot be patched is split into pieces,
recursively, and only the pieces a strict parse refuses take the reference path.

Blocks are parsed one ahead, on a thread of their own (``mapped_ahead``): while one
block's rows are certified and its columns finished, the next is parsed, so neither
core waits between two parses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .blocks import _Block, blocks, split_block
from .certify import Certifier, rows_with_null
from .patch import Patched, Patcher, Refused
from .prefetch import mapped_ahead
from .records import put_rows, records_to_table, to_array
from .schema import Layout, Node, arrow_type, parse_type
from .spans import Span
from .validate import Collector

__all__ = ["read_strict"]

_SPLIT_PARTS = 32
_MIN_SPLIT_BYTES = 32 << 10

# Kinds pyarrow.json cannot parse into directly: read as strings, converted after.
_FINISHED_KINDS = frozenset({"timestamp", "date", "dict"})


def _finish(column: pa.ChunkedArray | pa.Array, node: Node) -> pa.Array | pa.ChunkedArray:
    """Strings parsed for timestamp/date/enum columns to their final type, with the
    same result as the reference converter (Arrow's cast when it accepts every value,
    else the Python converter)."""
    if not node.contains(_FINISHED_KINDS):
        return column
    if node.kind == "dict":
        return column.dictionary_encode()
    if node.kind in ("timestamp", "date"):
        try:
            return pc.cast(column, arrow_type(node))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return to_array(column.to_pylist(), node)


def _parts(patcher: Patcher, block: _Block) -> Iterator[tuple[_Block, pa.Table | Patched | None]]:
    """The block parsed strictly, else patched; failing both, its pieces, recursively,
    so only the pieces a strict parse refuses (None) take the reference path."""
    found = patcher.patch(block)
    if found is not None:
        yield block, found
        return
    yield from _pieces(patcher, block)


def _parsed(patcher: Patcher, block: _Block) -> list[tuple[_Block, pa.Table | Patched | None]]:
    """``_parts``, all of them: what the parse thread hands over for one block."""
    return list(_parts(patcher, block))


def _pieces(patcher: Patcher, block: _Block) -> Iterator[tuple[_Block, pa.Table | None]]:
    if len(block.data) < _MIN_SPLIT_BYTES:
        yield block, None
        return
    pieces = split_block(block, _SPLIT_PARTS)
    if len(pieces) == 1:
        yield block, None
        return
    for piece in pieces:
        try:
            yield piece, patcher.parse(piece, piece.data)
        except Refused:
            yield from _pieces(patcher, piece)


def _final_schema(node: Node) -> pa.Schema:
    return pa.schema([pa.field(name, arrow_type(child)) for name, child in node.fields])


def _reference_part(block: _Block, layout: Layout, collector: Collector) -> pa.Table:
    """A block that no strict parse takes: every record in Python."""
    texts: Sequence[str | bytes] = block.texts()
    loaded = [block.load(t) for t in texts]
    collector.add(len(loaded), loaded.__getitem__)
    return records_to_table([r for r, _ in loaded], layout)


def _strict_part(
    block: _Block,
    parsed: pa.Table | Patched,
    layout: Layout,
    collector: Collector,
    certifier: Certifier | None,
) -> pa.Table:
    """The final columns of a parsed block (its patched rows from the reference path),
    its verdicts into ``collector``."""
    node = layout.node
    texts: dict[int, bytes] = {}
    if isinstance(parsed, Patched):
        parsed, texts = parsed.table, parsed.texts
    # The original text, not the patched copy: verdicts and patched rows are the file's.
    bad = sorted(texts)
    loaded = {i: block.load(texts[i]) for i in bad}
    if collector.validator is not None:
        certified = None
        if certifier is not None:
            certified = certifier.certify(
                parsed, partial(rows_with_null, block.data, parsed.num_rows)
            )
            certified[bad] = False

        def record(i: int) -> tuple[Any, bool]:
            found = loaded.get(i)
            return found if found is not None else block.load(block.text_at(i))

        collector.add(parsed.num_rows, record, certified)
    columns = [_finish(parsed.column(name), child) for name, child in node.fields]
    table = pa.Table.from_arrays(columns, schema=_final_schema(node))
    if not bad:
        return table
    return put_rows(table, bad, records_to_table([loaded[i][0] for i in bad], layout))


def read_strict(
    path: Path, fmt: str, layout: Layout, collector: Collector, span: Span | None = None
) -> tuple[pa.Table, int]:
    """``(table, records)`` of an NDJSON or JSON-array file (or the array in ``span``)
    read by the strict fast path, verdicts into ``collector``."""
    node = layout.node
    parse = parse_type(node)
    assert parse is not None
    schema = pa.schema(list(parse))
    certifier = Certifier.build(layout) if collector.validator is not None else None
    closed = certifier is not None and certifier.closed
    parts: list[pa.Table] = []
    patcher = Patcher(schema, closed)
    # The next block is parsed while this one is certified and finished (a core each).
    # Closed on the way out, whatever holds this frame: a traceback kept (a notebook's
    # last error) must not keep the parse and reader threads, or the blocks they hold.
    parse = partial(_parsed, patcher)
    with contextlib.closing(mapped_ahead(parse, blocks(path, fmt, span))) as parsed_blocks:
        for parsed_parts in parsed_blocks:
            for block, parsed in parsed_parts:
                if parsed is None:
                    parts.append(_reference_part(block, layout, collector))
                else:
                    parts.append(_strict_part(block, parsed, layout, collector, certifier))
    if not parts:
        return records_to_table([], layout), 0
    table = pa.concat_tables(parts).unify_dictionaries() if len(parts) > 1 else parts[0]
    return table, table.num_rows
