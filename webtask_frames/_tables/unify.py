"""Arrow tables from many sources made one, and Arrow tables as pandas DataFrames.

``unify_tables`` concatenates tables whose schemas differ (blocks of one file, items of
one sweep) with one set of promotion rules; ``table_to_pandas`` is the single place a
table becomes a DataFrame (``ArrowDtype`` or pandas' nullable NumPy dtypes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .records import to_array
from .schema import Node, arrow_type, node_from_arrow, unify_nodes

__all__ = ["plain_strings", "table_to_pandas", "unify_tables"]


_CASTABLE = (
    (pa.types.is_integer, pa.types.is_floating),
    (pa.types.is_dictionary, pa.types.is_string),
)


def _conform(column: pa.ChunkedArray, target: pa.DataType, node: Node) -> Any:
    if column.type == target and node.kind != "json":
        return column
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), target)
    for source_ok, target_ok in _CASTABLE:
        if source_ok(column.type) and target_ok(target):
            # An integer beyond 2**53 becomes its nearest double, as Python's float()
            # makes it (Arrow's safe cast refuses it instead).
            return pc.cast(column, target, safe=not pa.types.is_integer(column.type))
    return to_array(column.to_pylist(), node)


def unify_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables whose schemas may differ, with consistent promotion.

    Columns are ordered by first appearance; a column missing from a table is null
    there; identical types are kept as they are (so schema-declared types survive);
    otherwise int+float -> float, dictionary+string -> string, structs merge by field,
    lists by item, mixed scalars -> string and mixed with nested -> JSON text.

    Example:
        >>> t = unify_tables([pa.table({"a": [1]}), pa.table({"a": [2.5], "b": ["x"]})])
        >>> t.schema.types, t.column("b").to_pylist()
        ([DataType(double), DataType(string)], [None, 'x'])
    """
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({})
    first = tables[0].schema
    if all(t.schema.equals(first) for t in tables[1:]):
        return pa.concat_tables(tables).unify_dictionaries() if len(tables) > 1 else tables[0]
    types = _types_by_name(tables)
    plans = {name: _target(seen) for name, seen in types.items()}
    schema = pa.schema([pa.field(n, target) for n, (target, _) in plans.items()])
    out = []
    for t in tables:
        arrays = [
            _conform(t.column(name), target, node)
            if name in t.column_names
            else pa.nulls(t.num_rows, target)
            for name, (target, node) in plans.items()
        ]
        out.append(pa.Table.from_arrays(arrays, schema=schema))
    return pa.concat_tables(out).unify_dictionaries()


def _types_by_name(tables: Sequence[pa.Table]) -> dict[str, list[pa.DataType]]:
    """Each column's types across the tables, columns in order of first appearance."""
    types: dict[str, list[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, []).append(f.type)
    return types


def _target(types: list[pa.DataType]) -> tuple[pa.DataType, Node]:
    """One column's unified type and plan: identical types are kept as they are (so
    schema-declared types survive); otherwise the promotion of their nodes."""
    seen = [t for t in types if not pa.types.is_null(t)]
    node = node_from_arrow(seen[0]) if seen else node_from_arrow(pa.null())
    for other in seen[1:]:
        node = unify_nodes(node, node_from_arrow(other))
    if not seen:
        return pa.null(), node
    if all(t == seen[0] for t in seen):
        return seen[0], node
    return arrow_type(node), node


_NULLABLE_NUMPY: dict[pa.DataType, Any] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.float32(): pd.Float32Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}


def table_to_pandas(table: pa.Table, dtype_backend: str = "pyarrow") -> pd.DataFrame:
    """An Arrow table as a DataFrame: ``ArrowDtype`` columns (``"pyarrow"``) or pandas'
    nullable NumPy dtypes (``"numpy_nullable"``; enums become ``category``)."""
    table = table.replace_schema_metadata(None)
    mapper = pd.ArrowDtype if dtype_backend == "pyarrow" else _NULLABLE_NUMPY.get
    df: pd.DataFrame = table.to_pandas(types_mapper=mapper)
    return df


def plain_strings(table: pa.Table) -> pa.Table:
    """Dictionary columns become plain strings: DuckDB would otherwise make ENUMs whose
    value sets differ between runs and refuse to append."""
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)
