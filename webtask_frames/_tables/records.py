"""Result data to rows, and rows to Arrow: the reference (pure Python) conversion.

``shape`` picks the records out of a result's ``data``:

* an explicit dotted ``record_path`` (``"results.items"``; digits index lists) wins;
* a list: one row per element;
* an object whose schema (or, without a schema, whose content) has exactly one array of
  objects (``{"companies": [...], "batch": "S24"}``): that array, its sibling
  properties broadcast as columns;
* any other object: one row; a scalar: one row with a ``value`` column; ``null``: none.

``records_to_table`` converts rows to Arrow tolerantly along a ``Node`` plan: a value that
does not fit its column (``"abc"`` in an integer column) becomes null, except in string
columns where non-strings keep their JSON text. Validation reports such rows; this
module never raises on data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from .._exceptions import InvalidInputError
from .schema import (
    NULL,
    Layout,
    Node,
    arrow_type,
    infer_node,
)

__all__ = [
    "Shaped",
    "add_constant_columns",
    "column_plan",
    "converter",
    "jsonable",
    "put_rows",
    "records_to_table",
    "shape",
    "to_array",
    "to_json_text",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass
class Shaped:
    """The records of a result and the sibling values broadcast to every row."""

    records: list[Any]
    broadcast: dict[str, Any] = field(default_factory=dict)


def _list_of_objects(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _follow(data: Any, record_path: str) -> tuple[Any, dict[str, Any]]:
    node, parent, last = data, None, ""
    for part in record_path.split("."):
        if isinstance(node, Mapping) and part in node:
            parent, last, node = node, part, node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            parent, node = None, node[int(part)]
        else:
            raise InvalidInputError(
                f"record_path: {record_path!r} does not match the result: no {part!r} at that "
                "level; look at the raw result (status.result.data) for the right path",
                field="record_path",
            )
    siblings = (
        {str(k): v for k, v in parent.items() if k != last} if isinstance(parent, Mapping) else {}
    )
    return node, siblings


def shape(data: Any, *, record_path: str | None = None, layout: Layout | None = None) -> Shaped:
    """The records of ``data`` (see the module docstring for the rules).

    Example:
        >>> s = shape({"batch": "S24", "companies": [{"name": "A"}, {"name": "B"}]})
        >>> (s.records, s.broadcast)
        ([{'name': 'A'}, {'name': 'B'}], {'batch': 'S24'})
    """
    broadcast: dict[str, Any] = {}
    if record_path:
        data, broadcast = _follow(data, record_path)
        if isinstance(data, list):
            return Shaped(list(data), broadcast)
        return Shaped([] if data is None else [data], broadcast)
    if data is None:
        return Shaped([])
    if isinstance(data, list):
        return Shaped(data)
    if isinstance(data, Mapping):
        if layout is not None and layout.wrapper is not None:
            inner = data.get(layout.wrapper)
            if isinstance(inner, list):
                rest = {str(k): v for k, v in data.items() if k != layout.wrapper}
                return Shaped(inner, rest)
        elif layout is not None and not layout.root_is_array:
            return Shaped([data])  # the schema says the object itself is the record
        candidates = [k for k, v in data.items() if _list_of_objects(v)]
        if len(candidates) == 1:
            key = candidates[0]
            return Shaped(list(data[key]), {str(k): v for k, v in data.items() if k != key})
    return Shaped([data])


# -- value conversion -----------------------------------------------------------------


def to_json_text(value: Any) -> str | None:
    """The JSON-text form used for ambiguous columns: ``json.dumps`` (non-ASCII kept)."""
    if value is None:
        return None
    return json.dumps(jsonable(value), ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """Python values from Arrow/Parquet back to JSON types (datetimes to ISO text)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _to_str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if type(v) is float and math.isfinite(v):
        return repr(v)  # what json.dumps writes, without its overhead
    v = jsonable(v)
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _to_int(v: Any) -> int | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return v if _INT64_MIN <= v <= _INT64_MAX else None
    if isinstance(v, float) and v.is_integer() and _INT64_MIN <= v <= _INT64_MAX:
        return int(v)
    return None


def _to_float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        try:
            return float(v)
        except OverflowError:
            return None
    return None


def _to_bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def timestamp_or_none(v: Any) -> datetime | None:
    """ISO-8601 text to an aware UTC datetime (naive text is taken as UTC), else None.

    Tolerant data conversion: a value that is not a timestamp becomes null in its column
    (validation reports the row); it never raises. (Wire timestamps are parsed strictly
    by ``_wire.models.parse_timestamp_strict``.)

    Example:
        >>> (timestamp_or_none("2026-05-19T12:00:00+02:00").hour, timestamp_or_none("soon"))
        (10, None)
    """
    if isinstance(v, datetime):
        parsed = v
    elif isinstance(v, str):
        try:
            parsed = datetime.fromisoformat(v)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def date_or_none(v: Any) -> date | None:
    """ISO-8601 date text to a date, else None (tolerant, like ``timestamp_or_none``)."""
    if isinstance(v, datetime):
        return None
    if isinstance(v, date):
        return v
    if not isinstance(v, str):
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        return None


def _none(v: Any) -> None:
    return None


def converter(node: Node) -> Callable[[Any], Any]:
    """A function turning one JSON value into the Python value Arrow stores for ``node``."""
    kind = node.kind
    if kind in ("string", "dict"):
        return _to_str
    if kind == "int":
        return _to_int
    if kind == "float":
        return _to_float
    if kind == "bool":
        return _to_bool
    if kind == "timestamp":
        return timestamp_or_none
    if kind == "date":
        return date_or_none
    if kind == "json":
        return to_json_text
    if kind == "struct":
        subs = [(name, converter(child)) for name, child in node.fields]

        def struct(v: Any) -> dict[str, Any] | None:
            if not isinstance(v, Mapping):
                return None
            return {name: conv(v.get(name)) for name, conv in subs}

        return struct
    if kind == "list":
        assert node.item is not None
        inner = converter(node.item)

        def lst(v: Any) -> list[Any] | None:
            if not isinstance(v, list | tuple):
                return None
            return [inner(x) for x in v]

        return lst
    return _none


_DICT = frozenset({"dict"})


def _without_dict(node: Node) -> Node:
    if node.kind == "dict":
        return Node("string")
    if node.kind == "struct":
        return Node("struct", fields=tuple((n, _without_dict(c)) for n, c in node.fields))
    if node.kind == "list":
        assert node.item is not None
        return Node("list", item=_without_dict(node.item))
    return node


def to_array(values: Sequence[Any], node: Node, *, converted: bool = False) -> pa.Array:
    """An Arrow array of ``values`` typed by ``node`` (tolerant conversion first)."""
    if node.kind == "null":
        return pa.nulls(len(values))
    if not converted:
        conv = converter(node)
        values = [conv(v) for v in values]
    if node.contains(_DICT):
        arr = pa.array(values, type=arrow_type(_without_dict(node)))
        return arr.cast(arrow_type(node))
    return pa.array(values, type=arrow_type(node))


def row_of(record: Any, layout: Layout | None) -> Mapping[str, Any]:
    """The mapping a record contributes to the table (scalars fill ``value``)."""
    if layout is not None and not layout.is_object:
        return {"value": record}
    if isinstance(record, Mapping):
        return record
    return {} if layout is not None else {"value": record}


def column_plan(rows: Sequence[Mapping[str, Any]], layout: Layout | None) -> list[tuple[str, Node]]:
    """Record columns: the schema's (declared ones even when absent), else inferred."""
    if layout is not None:
        return list(layout.node.fields) if layout.is_object else [("value", layout.node)]
    inferred = infer_node(rows)
    return list(inferred.fields) if inferred.kind == "struct" else []


def records_to_table(
    records: Sequence[Any], layout: Layout | None, *, plan: list[tuple[str, Node]] | None = None
) -> pa.Table:
    """The record columns of ``records`` as an Arrow table (no broadcast columns yet).

    Example:
        >>> records_to_table([{"a": 1}, {"a": 2.5}], None).schema.field("a").type
        DataType(double)
    """
    rows = [row_of(r, layout) for r in records]
    if plan is None:
        plan = column_plan(rows, layout)
    arrays = [to_array([row.get(name) for row in rows], node) for name, node in plan]
    if not plan:  # rows without any column still count
        return pa.table({"__rows__": pa.nulls(len(rows))}).drop_columns(["__rows__"])
    return pa.Table.from_arrays(arrays, names=[name for name, _ in plan])


def constant_array(value: Any, n: int, node: Node | None = None) -> pa.Array:
    """``value`` repeated ``n`` times, typed by ``node`` or by inference."""
    if node is None:
        node = infer_node([value])
    if node.kind == "null" or value is None:
        return pa.nulls(n, type=arrow_type(node) if node is not NULL else pa.null())
    one = to_array([value], node)  # converted once, then repeated in Arrow
    return one.take(pa.array(np.zeros(n, dtype=np.int32))) if n != 1 else one


def add_constant_columns(
    table: pa.Table,
    values: Mapping[str, Any],
    nodes: Mapping[str, Node] | None = None,
    *,
    override: bool = False,
) -> pa.Table:
    """Append one broadcast column per item of ``values``.

    A column the table already has is kept as is (the record's value wins) unless
    ``override``, in which case it is replaced in place.
    """
    nodes = nodes or {}
    n = table.num_rows
    for name, value in values.items():
        array = constant_array(value, n, nodes.get(name))
        if name in table.column_names:
            if override:
                table = table.set_column(table.column_names.index(name), name, array)
            continue
        table = table.append_column(name, array)
    return table


# Up to this many runs of rows, slices of the two tables are joined (zero-copy, then one
# copy of their buffers): ~3x faster than a ``take`` for a few rows; ``take`` (a gather
# per value, nested lists too) wins from a few hundred slices on.
_MAX_RUNS_SLICED = 64


def put_rows(table: pa.Table, rows: Sequence[int], fixed: pa.Table) -> pa.Table:
    """``table`` with its ``rows`` (sorted) replaced by ``fixed``'s, in order (rows a
    strict or known-schema parse left null, read in Python instead), as one chunk.

    Example:
        >>> put_rows(pa.table({"a": [1, None, 3]}), [1], pa.table({"a": [2]})).to_pylist()
        [{'a': 1}, {'a': 2}, {'a': 3}]
    """
    at = np.asarray(rows, dtype=np.int64)
    n = table.num_rows
    # one dictionary per column, in the same order whichever way the rows are joined
    both = pa.concat_tables([table, fixed]).unify_dictionaries()
    # where a run of consecutive rows starts: each run is one slice of ``fixed``
    starts = np.flatnonzero(np.diff(at, prepend=-2) != 1)
    if len(starts) > _MAX_RUNS_SLICED:
        order = np.arange(n)
        order[at] = n + np.arange(len(at))
        return both.take(pa.array(order)).combine_chunks()
    table, fixed = both.slice(0, n), both.slice(n)
    parts: list[pa.Table] = []
    kept = 0  # the next row of ``table`` not yet taken
    ends = np.append(starts[1:], len(at)) if len(at) else starts
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        first = int(at[start])
        parts += [table.slice(kept, first - kept), fixed.slice(start, end - start)]
        kept = first + end - start
    parts.append(table.slice(kept))
    return pa.concat_tables(parts).combine_chunks()
