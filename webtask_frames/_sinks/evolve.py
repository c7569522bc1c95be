"""One type per column while items land one by one: the widenings both sinks apply.

Without an output schema each item's types are inferred from its own rows, so the items
of one sweep disagree: ``revenue`` is all null (Arrow ``null``) in one item, ``int64`` in
the next and ``double`` in a third; an empty ``tags`` list is ``list<null>``. A table
that receives them one at a time needs one rule for when a column's type may change,
shared by DuckDB and Parquet so both sinks accept and refuse the same sweeps:

* null (anywhere, also inside lists and structs) fits every type;
* integers widen to the wider integer, integers and floats to ``double``, a date to a
  timestamp, a struct to the union of its fields, a list to a list of the widened item;
* a string *placeholder* (what DuckDB makes of an all-null column, which needs some type)
  becomes the first concrete type, but only when it holds no value yet: the caller is
  told where, and checks the data;
* everything else is a conflict (``TypeConflict``), never a silent cast: an integer
  column does not quietly turn into text.

``conform`` then casts a table to the widened schema (missing columns become nulls), so
every Parquet file of a dataset can share one schema, which hive readers need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

__all__ = [
    "Position",
    "TypeConflict",
    "conform",
    "conform_array",
    "merged_schema",
    "merged_type",
    "value_type",
]

# A position inside a column: a struct field name, or None for "the items of a list".
Position = tuple[str | None, ...]

_FIX = "pass an output_schema so every item's column has one type, or land into a new {target}"


class TypeConflict(Exception):
    """``incoming`` cannot join a column of type ``existing`` without loss.

    Example:
        >>> try:
        ...     merged_type(pa.int64(), pa.string(), column="n")
        ... except TypeConflict as conflict:
        ...     print(conflict.message("table 't'", "table"))
        column 'n' is int64 in table 't' but string in the new rows; pass an output_schema ...
    """

    def __init__(self, column: str, existing: Any, incoming: Any) -> None:
        super().__init__(column, existing, incoming)
        self.column, self.existing, self.incoming = column, existing, incoming

    def message(self, where: str, target: str) -> str:
        """One line naming the column, both types, where it lives and the fix."""
        fix = _FIX.format(target=target)
        return (
            f"column {self.column!r} is {self.existing} in {where} but {self.incoming} in the "
            f"new rows; {fix}"
        )


def value_type(column: pa.ChunkedArray | pa.Array) -> pa.DataType:
    """The type ``column`` asks for: ``null`` when it holds no value at all (zero rows
    included), whatever it is declared as, since nothing of it needs to fit."""
    if len(column) == column.null_count:
        return pa.null()
    kind: pa.DataType = column.type
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _is_string(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _merge_ints(existing: pa.DataType, incoming: pa.DataType) -> pa.DataType | None:
    if pa.types.is_signed_integer(existing) == pa.types.is_signed_integer(incoming):
        return existing if existing.bit_width >= incoming.bit_width else incoming
    signed, unsigned = (
        (existing, incoming) if pa.types.is_signed_integer(existing) else (incoming, existing)
    )
    # int64 holds every uint32, int32 every uint16...; uint64 fits no signed type.
    return signed if signed.bit_width > unsigned.bit_width else None


def _merge_scalars(existing: pa.DataType, incoming: pa.DataType) -> pa.DataType | None:
    if pa.types.is_integer(existing) and pa.types.is_integer(incoming):
        return _merge_ints(existing, incoming)
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(existing) for f in numeric) and any(f(incoming) for f in numeric):
        return existing if existing == pa.float64() else pa.float64()
    if pa.types.is_date(existing) and pa.types.is_timestamp(incoming):
        return incoming
    if pa.types.is_timestamp(existing) and pa.types.is_date(incoming):
        return existing
    if pa.types.is_timestamp(existing) and pa.types.is_timestamp(incoming):
        # Only the zone's spelling may differ (DuckDB reports its session zone).
        same_kind = (existing.tz is None) == (incoming.tz is None)
        return existing if same_kind and existing.unit == incoming.unit else None
    return None


def merged_type(
    existing: pa.DataType,
    incoming: pa.DataType,
    *,
    placeholders: list[Position] | None = None,
    column: str = "",
    path: Position = (),
) -> pa.DataType:
    """The type a column of type ``existing`` must take to also hold ``incoming``.

    ``existing`` itself (the same object) when nothing changes. With ``placeholders``
    (a list), a string in ``existing`` may become ``incoming``'s type; its position is
    appended and the caller must check that the data holds no string there.

    Example:
        >>> merged_type(pa.int64(), pa.float64())
        DataType(double)
        >>> merged_type(pa.list_(pa.string()), pa.list_(pa.null())) == pa.list_(pa.string())
        True
    """
    if existing == incoming or pa.types.is_null(incoming):
        return existing
    if pa.types.is_null(existing):
        return incoming
    if _is_string(existing) and _is_string(incoming):
        return existing
    if _is_list(existing) and _is_list(incoming):
        item = merged_type(
            existing.value_type,
            incoming.value_type,
            placeholders=placeholders,
            column=column,
            path=(*path, None),
        )
        return existing if item is existing.value_type else pa.list_(item)
    if pa.types.is_struct(existing) and pa.types.is_struct(incoming):
        return _merge_structs(existing, incoming, placeholders, column, path)
    widened = _merge_scalars(existing, incoming)
    if widened is not None:
        return widened
    if placeholders is not None and _is_string(existing):
        placeholders.append(path)
        return incoming
    raise TypeConflict(column, existing, incoming)


def _merge_structs(
    existing: pa.StructType,
    incoming: pa.StructType,
    placeholders: list[Position] | None,
    column: str,
    path: Position,
) -> pa.DataType:
    theirs = {f.name: f.type for f in incoming}
    fields, changed = [], False
    for field in existing:
        kind = field.type
        if field.name in theirs:
            kind = merged_type(
                field.type,
                theirs.pop(field.name),
                placeholders=placeholders,
                column=column,
                path=(*path, field.name),
            )
        changed = changed or kind is not field.type
        fields.append(pa.field(field.name, kind))
    fields += [pa.field(name, kind) for name, kind in theirs.items()]
    return pa.struct(fields) if changed or theirs else existing


def merged_schema(existing: pa.Schema, incoming: pa.Schema) -> pa.Schema:
    """``existing`` widened to hold ``incoming``: its columns in order, then the new ones.

    Raises ``TypeConflict`` naming the first column that cannot be widened.

    Example:
        >>> merged_schema(pa.schema({"a": pa.int64()}), pa.schema({"b": pa.string()})).names
        ['a', 'b']
    """
    fields = []
    theirs = {f.name: f.type for f in incoming}
    for field in existing:
        kind = field.type
        if field.name in theirs:
            kind = merged_type(field.type, theirs.pop(field.name), column=field.name)
        fields.append(pa.field(field.name, kind))
    fields += [pa.field(name, kind) for name, kind in theirs.items()]
    return pa.schema(fields, metadata=existing.metadata)


def _compact(array: pa.Array) -> pa.Array:
    # The children of a sliced nested array are not sliced: compact before rebuilding.
    return pa.concat_arrays([array]) if array.offset else array


def _conform_list(array: pa.Array, target: pa.DataType) -> pa.Array:
    array = _compact(array)
    large = pa.types.is_large_list(target)
    offsets = array.offsets.cast(pa.int64() if large else pa.int32())
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    values = conform_array(array.values.slice(start, end - start), target.value_type)
    if start:
        offsets = pa.array([o - start for o in offsets.to_pylist()], offsets.type)
    build: Callable[..., pa.Array] = (pa.LargeListArray if large else pa.ListArray).from_arrays
    mask = array.is_null() if array.null_count else None
    return build(offsets, values, type=target, mask=mask)


def _conform_struct(array: pa.Array, target: pa.DataType) -> pa.Array:
    array = _compact(array)
    names = [array.type.field(i).name for i in range(array.type.num_fields)]
    children = [
        conform_array(array.field(names.index(f.name)), f.type)
        if f.name in names
        else pa.nulls(len(array), f.type)
        for f in target
    ]
    mask = array.is_null() if array.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)


def conform_array(array: pa.Array, target: pa.DataType) -> pa.Array:
    """``array`` cast to ``target``, a type ``merged_type`` allowed it to join.

    Example:
        >>> wider = pa.struct({"a": pa.float64(), "b": pa.string()})
        >>> conform_array(pa.array([{"a": 1}]), wider).to_pylist()
        [{'a': 1.0, 'b': None}]
    """
    if array.type == target:
        return array
    if pa.types.is_null(array.type) or array.null_count == len(array):
        return pa.nulls(len(array), target)
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if _is_list(array.type) and _is_list(target):
        return _conform_list(array, target)
    if pa.types.is_struct(array.type) and pa.types.is_struct(target):
        return _conform_struct(array, target)
    return array.cast(target)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (missing ones null); the
    table's own metadata (provenance) is kept.

    Example:
        >>> schema = pa.schema({"a": pa.float64(), "b": pa.string()})
        >>> conform(pa.table({"a": [1]}), schema).to_pylist()
        [{'a': 1.0, 'b': None}]
    """
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)]))
            continue
        column = table.column(field.name)
        chunks = [conform_array(chunk, field.type) for chunk in column.chunks]
        columns.append(pa.chunked_array(chunks, type=field.type))
    plain = pa.schema(list(schema), metadata=table.schema.metadata)
    return pa.Table.from_arrays(columns, schema=plain)
