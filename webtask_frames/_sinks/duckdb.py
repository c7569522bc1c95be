"""Landing Arrow tables in DuckDB: rows and their ``<table>_tasks`` companion, atomically.

``write_duckdb`` writes both tables in one transaction through DuckDB's zero-copy Arrow
scan: both land, or neither does. ``merge`` upserts on a key so rerunning a sweep never
duplicates rows; new columns are added, and a column whose type changed is a clear error
rather than a silent cast.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from .._exceptions import InvalidInputError
from .._tables.unify import plain_strings
from .scrub import scrub_table

__all__ = ["quote_identifier", "write_duckdb"]

WriteMode = Literal["append", "replace", "merge"]
_MODES = ("append", "replace", "merge")
# Widening casts DuckDB performs without loss when appending to an existing column.
_WIDENING = {
    ("INTEGER", "BIGINT"),
    ("BIGINT", "DOUBLE"),
    ("INTEGER", "DOUBLE"),
    ("FLOAT", "DOUBLE"),
    ("DATE", "TIMESTAMP WITH TIME ZONE"),
}


def quote_identifier(name: str) -> str:
    """Quote a DuckDB identifier, doubling embedded double quotes.

    Example:
        >>> quote_identifier('a"b')
        '"a""b"'
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidInputError(f"table: invalid identifier {name!r}", field="table")
    return '"' + name.replace('"', '""') + '"'


def _describe(con: duckdb.DuckDBPyConnection, relation_sql: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE {relation_sql}").fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open on the connection.
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
        "AND table_schema = current_schema()",
        [table],
    ).fetchall()
    return bool(rows and rows[0][0])


def _compatible(incoming: str, existing: str) -> bool:
    """Whether values of DuckDB type ``incoming`` append to a column of type ``existing``.

    All-null data arrives typed ``"NULL"`` (also inside lists and structs, e.g. an empty
    tag list is ``"NULL"[]``); it fits any type, so it acts as a wildcard here.
    """
    if incoming == existing or (incoming, existing) in _WIDENING:
        return True
    pattern = ".+?".join(re.escape(part) for part in incoming.split('"NULL"'))
    return '"NULL"' in incoming and re.fullmatch(pattern, existing) is not None


def _evolve(con: duckdb.DuckDBPyConnection, table: str, view: str) -> None:
    """Add the new data's extra columns to ``table``; refuse incompatible type changes."""
    existing = _describe(con, quote_identifier(table))
    incoming = _describe(con, f"SELECT * FROM {view}")
    for name, kind in incoming.items():
        if name not in existing:
            # An all-null new column has no type yet; VARCHAR is the loosest concrete one.
            concrete = kind.replace('"NULL"', "VARCHAR")
            con.execute(
                f"ALTER TABLE {quote_identifier(table)} "
                f"ADD COLUMN {quote_identifier(name)} {concrete}"
            )
        elif not _compatible(kind, existing[name]):
            raise InvalidInputError(
                f"to_duckdb: column {name!r} is {existing[name]} in table {table!r} but {kind} "
                "in the new rows; use mode='replace', or cast the column in the outputSchema",
                field="table",
            )


def _write_one(
    con: duckdb.DuckDBPyConnection,
    data: pa.Table,
    table: str,
    mode: WriteMode,
    key: Sequence[str],
) -> None:
    view = f"__webtask_frames_{uuid.uuid4().hex[:12]}"
    con.register(view, scrub_table(plain_strings(data)))
    try:
        name = quote_identifier(table)
        if mode == "replace" or not _table_exists(con, table):
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {view}")
            return
        _evolve(con, table, view)
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
    finally:
        con.unregister(view)


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
    con: duckdb.DuckDBPyConnection
    if isinstance(database, duckdb.DuckDBPyConnection):
        con, owns = database, False
    else:
        Path(os.fspath(database)).parent.mkdir(parents=True, exist_ok=True)
        con, owns = duckdb.connect(os.fspath(database)), True
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            _write_one(con, records, table, mode, key)
            if tasks is not None:
                _write_one(con, tasks, f"{table}_tasks", mode, tasks_key)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        if owns:
            con.close()
