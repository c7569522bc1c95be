"""Landing Arrow tables in DuckDB: rows and their ``<table>_tasks`` companion, atomically.

``write_duckdb`` writes both tables in one transaction through DuckDB's zero-copy Arrow
scan: both land, or neither does. ``merge`` upserts on a key so rerunning a sweep never
duplicates rows. The schema evolves by the rules of ``evolve`` (shared with Parquet):
new columns are added, a lossless widening (``BIGINT`` to ``DOUBLE``, a struct gaining a
field, an all-null placeholder getting its first type) is applied to the table, and any
other type change is a clear error rather than a silent cast. The helpers here are the
SQL side of ``DuckDBSink`` too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from .._exceptions import InvalidInputError
from .._tables.unify import plain_strings
from .evolve import Position, TypeConflict, merged_type, value_type
from .scrub import scrub_table

__all__ = [
    "connect",
    "create_table",
    "evolve_table",
    "quote_identifier",
    "registered",
    "table_columns",
    "transaction",
    "write_duckdb",
]

WriteMode = Literal["append", "replace", "merge"]
_MODES = ("append", "replace", "merge")
_FIX_TARGET = "table, or use mode='replace'"


def quote_identifier(name: str) -> str:
    """Quote a DuckDB identifier, doubling embedded double quotes.

    Example:
        >>> quote_identifier('a"b')
        '"a""b"'
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidInputError(f"table: invalid identifier {name!r}", field="table")
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _describe(con: duckdb.DuckDBPyConnection, relation_sql: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE {relation_sql}").fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
    """``table``'s columns and their DuckDB types, or None when there is no such table."""
    # One query (a sink asks per item); fetchall, not fetchone: DuckDB 2 keeps a
    # half-read result open on the connection. data_type is spelled as DESCRIBE's.
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema() ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return {str(row[0]): str(row[1]) for row in rows} if rows else None


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, data: pa.Table) -> Iterator[str]:
    """``data`` as a uniquely named view on ``con`` (zero-copy) while the block runs."""
    view = f"__webtask_frames_{uuid.uuid4().hex[:12]}"
    con.register(view, data)
    try:
        yield view
    finally:
        con.unregister(view)


def _concrete(sql_type: str) -> str:
    # An all-null column arrives typed "NULL" (also inside lists and structs); a table
    # column needs a real type: VARCHAR, the loosest, which ``evolve_table`` later lets
    # become the first concrete type while it still holds no value.
    return sql_type.replace('"NULL"', "VARCHAR")


def _sql_type(con: duckdb.DuckDBPyConnection, kind: pa.DataType) -> str:
    with registered(con, pa.table({"c": pa.nulls(0, kind)})) as view:
        return _concrete(_describe(con, f"SELECT * FROM {view}")["c"])


def create_table(
    con: duckdb.DuckDBPyConnection, table: str, view: str, *, replace: bool = False
) -> None:
    """Create ``table`` from ``view``'s rows, all-null columns typed VARCHAR, not INTEGER."""
    columns = []
    for name, kind in _describe(con, f"SELECT * FROM {view}").items():
        quoted = quote_identifier(name)
        concrete = _concrete(kind)
        columns.append(quoted if concrete == kind else f"CAST({quoted} AS {concrete}) AS {quoted}")
    verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
    con.execute(f"{verb} {quote_identifier(table)} AS SELECT {', '.join(columns)} FROM {view}")


def _holds_values(
    con: duckdb.DuckDBPyConnection, table: str, column: str, positions: Sequence[Position]
) -> bool:
    """Whether any value of ``column`` has a non-null value at one of ``positions``."""
    for position in positions:
        source, expr = quote_identifier(table), quote_identifier(column)
        for level, step in enumerate(position):
            if step is None:  # into a list's items: one row per item (no lambda needed)
                source = f"(SELECT unnest({expr}) AS v{level} FROM {source})"
                expr = f"v{level}"
            else:
                expr = f"struct_extract({expr}, {_literal(step)})"
        found = con.execute(f"SELECT 1 FROM {source} WHERE {expr} IS NOT NULL LIMIT 1").fetchall()
        if found:
            return True
    return False


# Integers beyond 2**53 have no exact DOUBLE: widening a column holding one would round it.
_EXACT_IN_DOUBLE = 2**53


def _loses_precision(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    current: pa.DataType,
    target: pa.DataType,
) -> bool:
    """Whether widening ``column`` from an integer type to a float would round a value."""
    if not (pa.types.is_integer(current) and pa.types.is_floating(target)):
        return False
    rows = con.execute(
        f"SELECT count(*) FROM {quote_identifier(table)} "
        f"WHERE abs({quote_identifier(column)}::HUGEINT) > {_EXACT_IN_DOUBLE}"
    ).fetchall()
    return bool(rows and rows[0][0])


def evolve_table(
    con: duckdb.DuckDBPyConnection, table: str, view: str, data: pa.Table, *, caller: str
) -> None:
    """Make ``table`` able to take ``data`` (registered as ``view``) as it is: add its new
    columns, apply lossless widenings; refuse any other type change, naming the fix."""
    name = quote_identifier(table)
    existing_sql = _describe(con, name)
    by_folded = {column.lower(): column for column in existing_sql}  # names ignore case
    incoming_sql = _describe(con, f"SELECT * FROM {view}")
    existing = con.sql(f"SELECT * FROM {name} LIMIT 0").to_arrow_table().schema
    for column, kind in incoming_sql.items():
        have = by_folded.get(column.lower())
        if have is None:
            con.execute(
                f"ALTER TABLE {name} ADD COLUMN {quote_identifier(column)} {_concrete(kind)}"
            )
            continue
        if kind in (existing_sql[have], '"NULL"'):
            continue
        current = existing.field(have).type
        positions: list[Position] = []
        try:
            target = merged_type(
                current, value_type(data.column(column)), placeholders=positions, column=have
            )
            if target is not current and _holds_values(con, table, have, positions):
                raise TypeConflict(have, existing_sql[have], kind)
            if _loses_precision(con, table, have, current, target):
                raise TypeConflict(have, existing_sql[have], kind)
        except TypeConflict:
            conflict = TypeConflict(have, existing_sql[have], kind)
            raise InvalidInputError(
                f"{caller}: {conflict.message(f'table {table!r}', _FIX_TARGET)}", field="table"
            ) from None
        if target is not current:
            con.execute(
                f"ALTER TABLE {name} ALTER COLUMN {quote_identifier(have)} "
                f"TYPE {_sql_type(con, target)}"
            )


def _write_one(
    con: duckdb.DuckDBPyConnection,
    data: pa.Table,
    table: str,
    mode: WriteMode,
    key: Sequence[str],
) -> None:
    data = scrub_table(plain_strings(data))
    with registered(con, data) as view:
        name = quote_identifier(table)
        if mode == "replace" or table_columns(con, table) is None:
            create_table(con, table, view, replace=True)
            return
        evolve_table(con, table, view, data, caller="to_duckdb")
        if mode == "merge":
            missing = [k for k in key if k not in data.column_names]
            if missing:
                raise InvalidInputError(
                    f"key: the new rows have no column(s) {missing}; pass key=[...] naming "
                    "columns that identify a row",
                    field="key",
                )
            match = " AND ".join(
                f"{name}.{quote_identifier(k)} IS NOT DISTINCT FROM s.{quote_identifier(k)}"
                for k in key
            )
            con.execute(f"DELETE FROM {name} WHERE EXISTS (SELECT 1 FROM {view} s WHERE {match})")
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {view}")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One DuckDB transaction: committed when the block ends, rolled back on any error
    (an interrupt included), so nothing of a failed write stays."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def connect(
    database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """A connection to ``database`` and whether the caller opened it (and must close it)."""
    if isinstance(database, duckdb.DuckDBPyConnection):
        return database, False
    where = os.fspath(database)
    if where != ":memory:":
        Path(where).parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(where), True


def write_duckdb(
    database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
    table: str,
    records: pa.Table,
    tasks: pa.Table | None = None,
    *,
    mode: WriteMode = "append",
    key: Sequence[str] = ("_item_key", "_row"),
    tasks_key: Sequence[str] = ("_item_key",),
) -> None:
    """Write ``records`` to ``table`` and ``tasks`` to ``<table>_tasks`` in one transaction.

    ``database`` is a file path (opened and closed here) or an open connection (left
    open: we never close what we did not open). ``mode``: ``append`` adds rows,
    ``replace`` recreates the tables, ``merge`` deletes rows whose ``key`` matches a new row
    and inserts the new rows, so a rerun replaces instead of duplicating.

    Example:
        >>> write_duckdb("sweep.duckdb", "companies", records, tasks, mode="merge")
        ... # doctest: +SKIP
    """
    if mode not in _MODES:
        raise InvalidInputError(f"mode: {mode!r} is not one of {', '.join(_MODES)}", field="mode")
    quote_identifier(table)
    con, owns = connect(database)
    try:
        with transaction(con):
            _write_one(con, records, table, mode, key)
            if tasks is not None:
                _write_one(con, tasks, f"{table}_tasks", mode, tasks_key)
    finally:
        if owns:
            con.close()
