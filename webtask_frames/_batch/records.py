"""The records table of a sweep: items' rows joined, shaped for sinks, read back.

In memory, ``records`` holds every item's rows in grid order with ``_item`` (the
position in this call's grid), ``_item_key`` (the item's identity) and ``_webtask_id``.
A sink stores them without ``_item`` (a grid position means nothing in a table that
outlives the call) and with ``_row``, the row's position within its item; reading them
back restores the in-memory shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .._tables.compiled import record_arrow_schema
from .._tables.unify import unify_tables
from .plan import BatchPlan

__all__ = [
    "empty_records",
    "invalid_only",
    "invalid_rows",
    "records_from_sink",
    "records_of",
    "sink_rows",
    "valid_only",
]


def empty_records(plan: BatchPlan) -> pa.Table:
    """The records table of a sweep with no rows: still has its columns (the schema's
    fields, the parameters, ``_item``, ``_webtask_id``), so queries and sinks work."""
    fields = list(record_arrow_schema(plan.schema) or [])
    names = {f.name for f in fields}
    for name in plan.parameter_names:
        if name not in names:
            values = [item.parameters.get(name) for item in plan.items]
            try:
                dtype = pa.array(values).type
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                dtype = pa.string()
            fields.append(pa.field(name, dtype))
    fields += [
        pa.field("_item", pa.int64()),
        pa.field("_item_key", pa.string()),
        pa.field("_webtask_id", pa.string()),
    ]
    return pa.schema(fields).empty_table()


def valid_only(table: pa.Table) -> pa.Table:
    """The rows that passed validation, without the validation columns."""
    if "_valid" not in table.column_names:
        return table
    flags = pc.fill_null(table["_valid"], True)
    return table.filter(flags).drop_columns(["_valid", "_errors"])


def invalid_only(table: pa.Table) -> pa.Table:
    """The rows that failed validation, with their ``_errors`` (none without ``_valid``)."""
    if "_valid" not in table.column_names:
        return table.slice(0, 0)
    flags = pc.fill_null(table["_valid"], True)
    return table.filter(pc.invert(flags)).drop_columns(["_valid"])


def invalid_rows(table: pa.Table) -> pa.Table | None:
    """What a sweep with a sink keeps of an item's landed table: the rows that failed
    validation (``validate="flag"``, marked by ``_valid``), or None when there are none."""
    if "_valid" not in table.column_names:
        return None
    bad = table.filter(pc.invert(pc.fill_null(table["_valid"], True)))
    return bad if bad.num_rows else None


def sink_rows(valid: pa.Table) -> pa.Table:
    """Valid records as sinks store them: without ``_item`` (a position in one call's
    grid) or the validation columns, with ``_row``, the row's position within its item
    (items' rows are contiguous)."""
    drop = [c for c in ("_item", "_valid", "_errors") if c in valid.column_names]
    table = valid.drop_columns(drop)
    if "_row" in table.column_names:
        return table
    keys = table["_item_key"].to_pylist() if "_item_key" in table.column_names else []
    positions: list[int] = []
    previous, n = None, 0
    for key in keys:
        n = n + 1 if key == previous else 0
        positions.append(n)
        previous = key
    return table.append_column("_row", pa.array(positions, pa.int64()))


def records_from_sink(table: pa.Table, index: dict[str, int], plan: BatchPlan) -> pa.Table:
    """Rows read back from a sink, shaped like an in-memory sweep's ``records``: ``_item``
    (this call's grid position) from ``_item_key``, in grid then row order, no ``_row``."""
    if "_item_key" not in table.column_names:
        return empty_records(plan)
    items = pa.array([index.get(k) for k in table["_item_key"].to_pylist()], pa.int64())
    table = table.append_column("_item", items)
    order = [("_item", "ascending")]
    if "_row" in table.column_names:
        order.append(("_row", "ascending"))
    table = table.sort_by(order)
    return table.drop_columns([c for c in ("_row",) if c in table.column_names])


def records_of(tables: Sequence[pa.Table | None], plan: BatchPlan) -> pa.Table:
    """The items' rows in grid order (``None``: an item without rows); with no rows at
    all, ``empty_records(plan)``, so the table still has its columns."""
    present = [t for t in tables if t is not None]
    return unify_tables(present) if present else empty_records(plan)
