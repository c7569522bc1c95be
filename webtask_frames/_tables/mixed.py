"""Untyped reads where some records defeat ``pyarrow.json``'s inference.

Without a schema a block whose values change JSON kind (``"revenue": "n/a"`` among
numbers) cannot be inferred by pyarrow. The table such a file gets is the reference
path's: ``records_to_table`` over every record, its column plan inferred over them all.
Rather than parsing the whole file in Python for it, only the pieces of blocks that fail
are parsed in Python (``json.loads``); the clean blocks stay Arrow tables. ``mixed_table``
then builds the reference's table from the parts:

* the plan: the Arrow parts' types (``node_from_arrow``) and the Python parts' inferred
  nodes, promoted in file order by ``unify_nodes`` (the same lattice as the reference's
  inference over all records: field order is first seen, int+float is float, mixed
  scalars are text, mixed with nested is JSON text);
* each Arrow column kept when its type and node are the plan's, else converted value
  by value with the reference's own converter: exact for scalars (the parsed values
  are the ones ``json.loads`` gives) and for structs and lists whose plan stays a
  struct or a list. Two things a double does not tell: whether ``5.0`` was written
  ``5`` (the text differs once the column is text), so the rows holding whole numbers
  of a top-level double column that became text are parsed again from the file
  (``Reload``, a second pass over those rows only); and whether a whole number beyond
  int64 was an integer (the reference's text): then None. A nested value whose plan
  became text would need its original JSON text (key order, absent keys): None too,
  and the caller parses the file whole, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .records import converter, put_rows, records_to_table, row_of, to_array
from .schema import NULL, Node, arrow_type, infer_node, node_from_arrow, unify_nodes

__all__ = ["Overlaid", "Part", "Reload", "exact_as_parsed", "mixed_table", "whole_rows"]


@dataclass
class Overlaid:
    """A block parsed by pyarrow but for a few rows (null in ``table``), parsed in Python
    instead: ``records`` by row."""

    table: pa.Table
    records: dict[int, Any]


# A part of the file, in order: a block inferred by pyarrow, records parsed in Python,
# or a block of both.
Part: TypeAlias = pa.Table | list[Any] | Overlaid
# The records at the given rows of the given (Arrow) parts, parsed by ``json.loads``.
Reload: TypeAlias = Callable[[dict[int, list[int]]], dict[int, list[Any]]]

_SCALAR_TYPES = (pa.types.is_integer, pa.types.is_boolean, pa.types.is_string, pa.types.is_null)
_TEXT = frozenset({"string", "json"})


def _exact(dtype: pa.DataType, node: Node) -> bool:
    """Whether the reference converter for ``node`` on this type's Python values gives
    what it gives on the ``json.loads`` values they were parsed from (a double ``5.0``
    may have been written ``5``: the same float, not the same text)."""
    if any(test(dtype) for test in _SCALAR_TYPES):
        return True
    if pa.types.is_floating(dtype):
        return node.kind not in _TEXT
    if pa.types.is_struct(dtype):
        fields = dict(node.fields) if node.kind == "struct" else None
        return fields is not None and all(
            _exact(f.type, fields[f.name]) for f in dtype if f.name in fields
        )
    if pa.types.is_list(dtype):
        return node.kind == "list" and node.item is not None and _exact(dtype.value_type, node.item)
    return False


def _node_of(part: Part) -> Node | None:
    if isinstance(part, Overlaid):
        # In file order (a field's place is where it is first seen): the records before
        # the first row pyarrow parsed, that row's table, the records after it.
        keys = sorted(part.records)
        first = next((i for i, r in enumerate(keys) if r != i), len(keys))
        found = [
            _node_of([part.records[r] for r in keys[:first]]),
            _node_of(part.table) if first < part.table.num_rows else None,
            _node_of([part.records[r] for r in keys[first:]]),
        ]
        nodes = [n for n in found if n is not None]
        return functools.reduce(unify_nodes, nodes) if nodes else None
    if isinstance(part, pa.Table):
        return Node("struct", fields=tuple((f.name, node_from_arrow(f.type)) for f in part.schema))
    rows = [row_of(r, None) for r in part]
    return infer_node(rows) if rows else None


def _plan(parts: Sequence[Part]) -> list[tuple[str, Node]]:
    plan: Node | None = None
    # A patched block gives many Arrow parts of one schema: each schema is read once.
    done: set[pa.Schema] = set()
    for part in parts:
        if isinstance(part, pa.Table):
            if part.schema in done:
                continue  # unifying a node already in the plan changes nothing
            done.add(part.schema)
        node = _node_of(part)
        if node is not None:
            plan = node if plan is None else unify_nodes(plan, node)
    return list(plan.fields) if plan is not None and plan.kind == "struct" else []


def whole_rows(column: pa.ChunkedArray | pa.Array) -> list[int]:
    """Rows whose double is a whole number (written ``5`` or ``5.0``: text differs)."""
    values = column.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(values) & (np.floor(values) == values)
    return np.flatnonzero(whole & ~np.asarray(pc.is_null(column))).tolist()


_INT64 = 2.0**63


def _beyond_int64(array: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a double anywhere in ``array`` is a whole number outside int64: written
    as an integer, the reference infers text (pyarrow infers a double)."""
    if isinstance(array, pa.ChunkedArray):
        return any(_beyond_int64(chunk) for chunk in array.chunks)
    if pa.types.is_floating(array.type):
        values = array.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            return bool(np.any((np.abs(values) >= _INT64) & (np.floor(values) == values)))
    if pa.types.is_struct(array.type):
        return any(_beyond_int64(array.field(i)) for i in range(array.type.num_fields))
    if pa.types.is_list(array.type):
        return _beyond_int64(array.flatten())
    return False


def _requests(parts: Sequence[Part], plan: list[tuple[str, Node]]) -> dict[int, list[int]] | None:
    """The rows of each Arrow part whose original values a text column needs; None
    when a part cannot be converted exactly at all."""
    nodes = dict(plan)
    wanted: dict[int, list[int]] = {}
    for k, whole in enumerate(parts):
        part = whole.table if isinstance(whole, Overlaid) else whole
        if not isinstance(part, pa.Table):
            continue
        if any(_beyond_int64(column) for column in part.columns):
            return None
        for field in part.schema:
            node = nodes[field.name]
            if _exact(field.type, node):
                continue
            if not pa.types.is_floating(field.type):
                return None  # nested values become text: their original text is needed
            rows = whole_rows(part.column(field.name))
            if rows:
                wanted[k] = sorted(set(wanted.get(k, [])) | set(rows))
    return wanted


def _column(
    table: pa.Table, name: str, node: Node, originals: dict[int, Any]
) -> pa.Array | pa.ChunkedArray:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, type=arrow_type(node) if node is not NULL else pa.null())
    column = table.column(name)
    if node.kind == "null":
        return pa.nulls(table.num_rows)
    if node_from_arrow(column.type) == node and column.type == arrow_type(node):
        return column  # not a string column of JSON text: that needs quotes
    if pa.types.is_float64(column.type) and node.kind == "string":
        return _float_text(column, name, originals)
    values = column.to_pylist()
    if pa.types.is_floating(column.type) and node.kind in _TEXT:
        for row, record in originals.items():
            values[row] = record.get(name)
    return to_array(values, node)


def exact_as_parsed(parts: Sequence[Part]) -> bool:
    """Whether Arrow parts, concatenated with promotion (``unify_tables``), are the
    reference's table: no whole number beyond int64 (the reference's text) and no
    double that becomes text (its original spelling is needed) in them."""
    tables = [p for p in parts if isinstance(p, pa.Table)]
    if len(tables) < len(parts):
        return False
    if len(tables) < 2 or all(t.schema == tables[0].schema for t in tables):
        return not any(_beyond_int64(c) for t in tables for c in t.columns)
    return _requests(parts, _plan(parts)) == {}


# Where Arrow's shortest formatting of a double is Python's ``repr`` character for
# character: both print the shortest digits that read back to the same double, in
# fixed notation from 1e-4 (below it Python writes exponents, Arrow from 1e-7) up to
# 1e10 (from there Arrow writes exponents, Python from 1e16). Whole numbers differ
# ("5" against "5.0"). A differential test holds this against ``repr``.
_FIXED_LOW, _FIXED_HIGH = 1e-4, 1e10


def _float_text(column: pa.ChunkedArray, name: str, originals: dict[int, Any]) -> pa.Array:
    """A double column as the reference's text (``_to_str``: ``repr``, or the original
    value of a whole number read again from the file), formatted by Arrow wherever it
    is ``repr``'s text and in Python elsewhere."""
    values = column.to_numpy(zero_copy_only=False)
    size = np.abs(values)
    with np.errstate(invalid="ignore"):
        same = (size >= _FIXED_LOW) & (size < _FIXED_HIGH) & (np.floor(values) != values)
    text = pc.cast(column, pa.string()).combine_chunks()
    valid = np.asarray(pc.is_valid(column))
    rows = np.flatnonzero(valid & ~same)
    if not len(rows):
        return text
    convert = converter(Node("string"))
    fixed = [
        convert(originals[row].get(name) if row in originals else float(values[row]))
        for row in rows.tolist()
    ]
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(text, pa.array(mask), pa.array(fixed, type=pa.string()))


def mixed_table(parts: Sequence[Part], reload: Reload) -> pa.Table | None:
    """The reference path's table of the records ``parts`` hold, in order; None when
    it cannot be built exactly from them (see the module docstring)."""
    plan = _plan(parts)
    wanted = _requests(parts, plan)
    if wanted is None or not plan:
        return None
    loaded = reload(wanted) if wanted else {}
    names = [name for name, _ in plan]
    tables: list[pa.Table] = []
    for k, part in enumerate(parts):
        if isinstance(part, list):
            tables.append(records_to_table(part, None, plan=plan))
            continue
        arrow = part.table if isinstance(part, Overlaid) else part
        originals = dict(zip(wanted.get(k, []), loaded.get(k, []), strict=True))
        columns = [_column(arrow, name, node, originals) for name, node in plan]
        table = pa.Table.from_arrays(columns, names=names)
        if isinstance(part, Overlaid):
            table = _overlay(table, part.records, plan)
        tables.append(table)
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _overlay(table: pa.Table, records: dict[int, Any], plan: list[tuple[str, Node]]) -> pa.Table:
    """``table`` with the rows in ``records`` replaced by theirs, converted by the plan."""
    rows = sorted(records)
    return put_rows(table, rows, records_to_table([records[r] for r in rows], None, plan=plan))
