"""Inference of blocks without a schema, and its failures cut down to the rows at fault.

``pyarrow.json`` infers each block's types (temporal types read back as strings). A
block it cannot infer (a value of another JSON kind, ``"price": "n/a"`` among numbers)
is cut at the row its error names: the lines before it are inferred, the row goes to
the Python path, the rest is tried again. Without such a hint the block is split into
pieces, recursively, like the strict path's. Each part carries its offset in its block,
so a later pass can find its rows again (``mixed``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from .blocks import _Block, _block_of_lines, rows_match, split_block
from .mixed import Overlaid
from .patch import Patcher

__all__ = [
    "InferredPart",
    "first_parts",
    "inferred_parts",
    "inferred_table",
    "known_parts",
    "learn",
    "patcher_from",
]

# A part of a block: its offset in the block's data, its lines, its table (None: Python;
# ``Overlaid``: a table but for rows read in Python).
InferredPart: TypeAlias = tuple[int, _Block, pa.Table | Overlaid | None]

_SPLIT_PARTS = 32
_MIN_SPLIT_BYTES = 32 << 10


def _temporal_as_string(dtype: pa.DataType) -> pa.DataType:
    if pa.types.is_temporal(dtype):
        return pa.string()
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _temporal_as_string(f.type)) for f in dtype])
    if pa.types.is_list(dtype):
        return pa.list_(_temporal_as_string(dtype.value_type))
    return dtype


def _nested_null(dtype: pa.DataType) -> bool:
    """Null-typed children and empty structs: shapes pyarrow's JSON reader mis-builds."""
    if pa.types.is_struct(dtype):
        if dtype.num_fields == 0:
            return True
        return any(pa.types.is_null(f.type) or _nested_null(f.type) for f in dtype)
    if pa.types.is_list(dtype):
        return pa.types.is_null(dtype.value_type) or _nested_null(dtype.value_type)
    return False


_ROW_HINT = re.compile(r"in row (\d+)")
# The chunks pyarrow infers (and parses) a block in.
_INFER_CHUNK_BYTES = 4 << 20


def inferred_table(block: _Block, hint: list[int] | None = None) -> pa.Table | None:
    """The block inferred by pyarrow, or None; with ``hint``, parsed as one chunk so a
    failure's message names its row in the block (appended to ``hint``)."""
    if block.null_lines():
        return None  # pyarrow must never see them (see ``_Block.null_lines``)
    chunk = max(_INFER_CHUNK_BYTES, len(block.data) + 1) if hint is not None else _INFER_CHUNK_BYTES
    # a small piece (a block split around a value of another kind) parses faster
    # without the thread pool's start-up
    read_options = pa_json.ReadOptions(
        block_size=chunk, use_threads=hint is None and len(block.data) >= (1 << 20)
    )
    try:
        # Inferred on one thread: on several, the chunks' schemas are merged in the
        # order they finish, and a column (or a struct's field) can take the place it
        # has in a later chunk's records, not the place it was first seen at (the
        # reference's order). The explicit parse below uses the threads.
        inferring = pa_json.ReadOptions(block_size=chunk, use_threads=False)
        table = pa_json.read_json(pa.BufferReader(block.data), read_options=inferring)
        plain = pa.schema([pa.field(f.name, _temporal_as_string(f.type)) for f in table.schema])
        if not plain.types or any(_nested_null(t) for t in plain.types):
            return None  # pyarrow mis-builds null-typed children: the reference path decides
        # Always parse again with the inferred schema made explicit: values converted
        # while inference promotes a type (null -> list<bool>, say) can come out wrong.
        if plain.types:
            table = pa_json.read_json(
                pa.BufferReader(block.data),
                read_options=read_options,
                parse_options=pa_json.ParseOptions(explicit_schema=plain),
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        found = _ROW_HINT.search(str(exc)) if hint is not None else None
        if found is not None and hint is not None:
            hint.append(int(found.group(1)))
        return None
    return table if rows_match(block, table) else None


def _lines_of(block: _Block, ends: np.ndarray, first: int, stop: int) -> tuple[int, _Block]:
    """Lines ``[first, stop)`` of the block (``ends``: its line breaks), and their offset."""
    start = int(ends[first - 1]) + 1 if first else 0
    piece = _block_of_lines(memoryview(block.data)[start : int(ends[stop - 1]) + 1], stop - first)
    piece.inherit(block)
    return start, piece


def _cut_at_failures(block: _Block, offset: int) -> Iterator[InferredPart]:
    """A block that failed inference, cut at the rows pyarrow names: the lines before
    each (inferred, else split further), the row itself (None: Python), then the rest.
    A hint that is off only costs speed: every line ends in a parsed part either way."""
    ends = block.line_ends()
    first = 0
    while first < len(ends):
        at, rest = _lines_of(block, ends, first, len(ends))
        hint: list[int] = []
        table = inferred_table(rest, hint)
        if table is not None or not hint or hint[0] >= len(ends) - first:
            if table is not None:
                yield offset + at, rest, table
            else:
                yield from _bisected(rest, offset + at)
            return
        row = first + hint[0]
        if row > first:
            at, head = _lines_of(block, ends, first, row)
            yield from inferred_parts(head, offset + at)
        at, bad = _lines_of(block, ends, row, row + 1)
        yield offset + at, bad, None
        first = row + 1


def inferred_parts(block: _Block, offset: int = 0) -> Iterator[InferredPart]:
    """The block inferred; when that fails, its parts (each with its offset in the
    block's data): cut at the rows pyarrow names, else split into pieces, recursively."""
    table = inferred_table(block)
    if table is not None or len(block.data) < _MIN_SPLIT_BYTES:
        yield offset, block, table
        return
    yield from _cut_at_failures(block, offset)


def _bisected(block: _Block, offset: int) -> Iterator[InferredPart]:
    if len(block.data) < _MIN_SPLIT_BYTES:
        yield offset, block, None
        return
    pieces = split_block(block, _SPLIT_PARTS)
    if len(pieces) == 1:
        yield offset, block, None
        return
    for piece in pieces:
        yield from inferred_parts(piece, offset)
        offset += len(piece.data)


def known_parts(block: _Block, patcher: Patcher) -> list[InferredPart] | None:
    """The block parsed with an earlier block's schema (``patcher.schema``), when every
    value fits it as it is (no field it lacks, no promotion): one parse instead of
    inference's two. Its types are ones the file's own values gave, so promotion
    across blocks ends where inferring this block would have led. Values of another
    kind (``"price": "n/a"`` in a number column) are patched out (``patch``): the part
    is then the table overlaid with those rows, read in Python. None when the schema
    does not fit otherwise."""
    found = patcher.patch(block)
    if found is None:
        return None
    if isinstance(found, pa.Table):
        # Inferred alone, a block whose lists are all empty (or whose nested fields
        # are all null) gets null-typed children, which pyarrow mis-builds: the old
        # reader read it in Python, and so must this one (the block is inferred).
        if any(_nullish(column.chunks, nested=False) for column in found.columns):
            return None
        return [(0, block, found)]
    records = {row: block.load(text)[0] for row, text in found.texts.items()}
    return [(0, block, Overlaid(found.table, records))]


def _nullish(arrays: list[pa.Array], *, nested: bool) -> bool:
    """Whether inferring these values alone could give a null-typed child (a list with
    no item, a struct field never set, an empty struct): ``_nested_null``. Absent and
    null look alike here, so this errs towards yes (which only costs speed)."""
    if not any(len(a) - a.null_count for a in arrays):
        return nested
    dtype = arrays[0].type
    if pa.types.is_list(dtype):
        return _nullish([a.flatten() for a in arrays], nested=True)
    if pa.types.is_struct(dtype):
        if dtype.num_fields == 0:
            return True
        return any(
            _nullish([a.field(i) for a in arrays], nested=True) for i in range(dtype.num_fields)
        )
    return False


def patcher_from(parts: list[InferredPart]) -> Patcher | None:
    """A patcher with the schema of these parts' tables, when they agree up to absent
    fields and nulls (a schema that does not fit a later block only costs speed: that
    block is inferred)."""
    schemas = [t.schema for _, _, t in parts if isinstance(t, pa.Table)]
    schemas += [t.table.schema for _, _, t in parts if isinstance(t, Overlaid)]
    if not schemas:
        return None
    try:
        return Patcher(pa.unify_schemas(schemas), closed=True, null_fields_fault=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def learn(patcher: Patcher, table: pa.Table) -> None:
    """Widen ``patcher``'s schema by a block inferred whole (a field first seen there,
    a type its values gave), when the two agree up to absent fields and nulls."""
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        patcher.schema = pa.unify_schemas([patcher.schema, table.schema])


_HEAD_BYTES = 1 << 20
# From this size on, the first block is tried with its head's schema before it is
# inferred whole (inference parses a block twice; see ``first_parts``): the first
# block of a large file (``FIRST_BLOCK_BYTES``, cut at its last whole record) is.
_HEAD_FIRST_BYTES = 3 * _HEAD_BYTES


def _head_schema_parts(block: _Block) -> tuple[list[InferredPart] | None, Patcher | None]:
    """The block parsed with its head's schema (first MiB, itself cut at its failures),
    patched (``known_parts``), and that schema's patcher; parts None when it does not fit."""
    ends = block.line_ends()
    lines = max(1, int(np.searchsorted(ends, _HEAD_BYTES)))
    if lines >= len(ends):
        return None, None
    patcher = patcher_from(list(inferred_parts(_lines_of(block, ends, 0, lines)[1])))
    return (known_parts(block, patcher) if patcher is not None else None), patcher


def first_parts(block: _Block) -> tuple[list[InferredPart], Patcher | None]:
    """The first block's parts, and a patcher for the next blocks.

    A large block is parsed once with its head's schema when its values fit it
    (``known_parts``, as every later block is; values of another kind patched out):
    inferring it whole takes two parses, one to infer and one with the schema made
    explicit. A head that does not speak for the block (a field first seen further on,
    an integer column with a fraction later) fails that parse with no row to patch, and
    the block is inferred whole, as a small one is (a strict parse lost, on the first
    block only). Failing that too, the block is cut at its failures (each costs a
    parse of what precedes it, on one core).
    """
    head: tuple[list[InferredPart] | None, Patcher | None] | None = None
    if len(block.data) >= _HEAD_FIRST_BYTES:
        head = _head_schema_parts(block)
        if head[0] is not None:
            return head[0], head[1]
    table = inferred_table(block)
    if table is not None or len(block.data) < _MIN_SPLIT_BYTES:
        parts: list[InferredPart] = [(0, block, table)]
        return parts, patcher_from(parts)
    found, patcher = head if head is not None else _head_schema_parts(block)
    if found is not None:
        return found, patcher
    parts = list(_cut_at_failures(block, 0))
    return parts, patcher_from(parts) or patcher
