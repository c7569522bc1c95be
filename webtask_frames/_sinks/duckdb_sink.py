"""``DuckDBSink``: each completed item lands in a DuckDB table in its own transaction.

An item's rows go to ``table`` and its billed tasks to ``<table>_tasks`` in one
transaction, so a ``kill -9`` mid-sweep leaves every landed item whole and nothing of
the one being written; the rerun lands the rest and, merging by identity
(``_item_key``), never duplicates an item. ``<table>_tasks`` has one row per billed task
(``_webtask_id``), every attempt of every run, so ``SUM(cost_ai_usd)`` over it is what
the table cost. Items of a sweep without an output schema have types inferred one by
one; the table's schema evolves by ``evolve``'s rules (``duckdb.evolve_table``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

import duckdb
import pyarrow as pa

from .._exceptions import InvalidInputError
from .._tables.unify import plain_strings
from .duckdb import (
    connect,
    create_table,
    evolve_table,
    quote_identifier,
    registered,
    table_columns,
    transaction,
)
from .landing import ItemLanding, check_keys, last_per_task, replaced_by
from .scrub import scrub_table

__all__ = ["DuckDBSink", "SinkMode"]

SinkMode = Literal["merge", "append", "replace"]
_MODES: tuple[SinkMode, ...] = ("merge", "append", "replace")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALLER = "DuckDBSink"


Shape = tuple[tuple[str, pa.DataType, bool], ...]


def _shape(data: pa.Table) -> Shape:
    """What ``evolve_table`` looks at: each column's name, type and whether it is all null."""
    return tuple(
        (field.name, field.type, column.null_count == len(column))
        for field, column in zip(data.schema, data.columns, strict=True)
    )


def _check_database(
    database: object,
) -> str | os.PathLike[str] | duckdb.DuckDBPyConnection:
    if isinstance(database, duckdb.DuckDBPyConnection):
        return database
    if isinstance(database, str | os.PathLike):
        where = os.fspath(database)
        if isinstance(where, str) and where:
            return where
    raise InvalidInputError(
        f"database: expected a database file path or an open duckdb connection, got "
        f"{type(database).__name__}",
        field="database",
    )


def _check_table(table: object) -> str:
    if isinstance(table, str) and _IDENTIFIER.fullmatch(table):
        return table
    raise InvalidInputError(
        f"table: {table!r} is not a plain SQL name; use letters, digits and underscores, "
        "starting with a letter or underscore (e.g. 'companies')",
        field="table",
    )


def _check_mode(mode: object) -> SinkMode:
    for known in _MODES:
        if mode == known:
            return known
    raise InvalidInputError(f"mode: {mode!r} is not one of {', '.join(_MODES)}", field="mode")


class DuckDBSink:
    """Land each completed item in ``table`` of a DuckDB database as it completes.

    ``database`` is a file path (connected on ``open``, parent directories created,
    closed by ``close``) or an open connection (never closed here). ``mode``:

    * ``"merge"`` (default): an item's rows are exactly its rows from its latest
      successful task; rerunning a sweep completes the table without duplicates;
    * ``"append"``: rows are only added;
    * ``"replace"``: the first item landed by this sink recreates the tables, the next
      ones merge: the tables hold this sweep only.

    Every mode upserts ``<table>_tasks`` on ``_webtask_id``: a billed task is one row.

    Example:
        >>> sink = DuckDBSink("sweep.duckdb", "companies")
        >>> result = run_batch("List {batch} companies", grid, sink=sink)  # doctest: +SKIP
        >>> duckdb.connect("sweep.duckdb").sql(
        ...     "SELECT sum(cost_ai_usd) FROM companies_tasks")  # doctest: +SKIP
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
        table: str,
        *,
        mode: SinkMode = "merge",
    ) -> None:
        self._database = _check_database(database)
        self._table = _check_table(table)
        self._mode = _check_mode(mode)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._owns = False
        self._landed = False
        # Shapes of data each table took in a committed land, and those of the land under
        # way (accepted only once it commits).
        self._accepted: dict[str, set[Shape]] = {}
        self._pending: dict[str, set[Shape]] = {}

    @property
    def table(self) -> str:
        """The records table."""
        return self._table

    @property
    def tasks_table(self) -> str:
        """The billed tasks' table, ``<table>_tasks``."""
        return f"{self._table}_tasks"

    @property
    def mode(self) -> SinkMode:
        """``merge``, ``append`` or ``replace``."""
        return self._mode

    def __repr__(self) -> str:
        if isinstance(self._database, duckdb.DuckDBPyConnection):
            where = "<duckdb connection>"
        else:
            where = repr(os.fspath(self._database))
        return f"DuckDBSink(database={where}, table={self._table!r}, mode={self._mode!r})"

    # -- connection -----------------------------------------------------------------

    def open(self) -> DuckDBSink:
        """Connect (once; again after ``close``) and return the sink."""
        if self._con is None:
            self._con, self._owns = connect(self._database)
        return self

    def close(self) -> None:
        """Close the connection if this sink opened it; a given connection stays open."""
        con, self._con = self._con, None
        if con is not None and self._owns:
            con.close()

    def __enter__(self) -> DuckDBSink:
        return self.open()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        self.open()
        assert self._con is not None  # set by open()
        return self._con

    # -- landing --------------------------------------------------------------------

    def _refusal(self, table: str) -> InvalidInputError:
        if table == self.tasks_table:
            reason = "was written by an earlier release (one row per grid item, no _webtask_id)"
        else:
            reason = "has no _item_key column, so its rows cannot be merged by item"
        return InvalidInputError(
            f"table: {table!r} {reason}; land into a new table name, or use mode='replace'",
            field="table",
        )

    def _check_tasks_table(self, con: duckdb.DuckDBPyConnection) -> dict[str, str] | None:
        columns = table_columns(con, self.tasks_table)
        if columns is not None and "_webtask_id" not in columns:
            raise self._refusal(self.tasks_table)
        return columns

    def _prepare(
        self, con: duckdb.DuckDBPyConnection, table: str, view: str, data: pa.Table, key: str
    ) -> bool:
        """Ready ``table`` for ``data`` (``view``): create it from the data (False: nothing
        left to insert), or check its key column and evolve its schema (True)."""
        shape = _shape(data)
        # Data shaped like data this sink already landed (committed) needs no look at the
        # table: then an item costs its deletes and inserts only.
        if shape in self._accepted.get(table, ()):
            return True
        columns = table_columns(con, table)
        self._pending.setdefault(table, set()).add(shape)
        if columns is None:
            create_table(con, table, view)  # zero rows too: the table exists after
            return False
        if key and key not in columns:
            raise self._refusal(table)
        if data.num_rows:  # a zero-row item brings no column worth adding
            evolve_table(con, table, view, data, caller=_CALLER)
        return True

    def _land_rows(
        self, con: duckdb.DuckDBPyConnection, view: str, rows: pa.Table, replace: list[str]
    ) -> None:
        merging = self._mode != "append"
        if not self._prepare(con, self._table, view, rows, "_item_key" if merging else ""):
            return
        name = quote_identifier(self._table)
        if merging and replace:
            con.execute(
                f'DELETE FROM {name} WHERE "_item_key" IN (SELECT unnest(?::VARCHAR[]))',
                [replace],
            )
        if rows.num_rows:
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {view}")

    def _land_tasks(self, con: duckdb.DuckDBPyConnection, view: str, tasks: pa.Table) -> None:
        if not self._prepare(con, self.tasks_table, view, tasks, "_webtask_id"):
            return
        if tasks.num_rows:
            name = quote_identifier(self.tasks_table)
            con.execute(
                f'DELETE FROM {name} WHERE "_webtask_id" IN (SELECT "_webtask_id" FROM {view})'
            )
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {view}")

    def land(self, rows: pa.Table, tasks: pa.Table, *, replace_items: Sequence[str]) -> None:
        """Land ``rows`` in ``table`` and ``tasks`` in ``<table>_tasks``, one transaction.

        In ``merge`` mode the rows of ``replace_items`` are deleted first (an item that
        now has no rows keeps none); ``tasks`` replace the rows of the same
        ``_webtask_id``. On any error nothing of this call stays.
        """
        replace = list(dict.fromkeys(check_keys(replace_items, "replace_items")))
        rows = scrub_table(plain_strings(rows))
        tasks = last_per_task(scrub_table(plain_strings(tasks)))
        if "_webtask_id" not in tasks.column_names:
            raise InvalidInputError("tasks: the tasks have no _webtask_id column", field="tasks")
        if "_item_key" not in rows.column_names:
            raise InvalidInputError("rows: the rows have no _item_key column", field="rows")
        con = self._connection()
        fresh = self._mode == "replace" and not self._landed
        self._pending = {}
        try:
            with (
                transaction(con),
                registered(con, rows) as rows_view,
                registered(con, tasks) as tasks_view,
            ):
                if fresh:
                    self._accepted = {}
                    create_table(con, self._table, rows_view, replace=True)
                    create_table(con, self.tasks_table, tasks_view, replace=True)
                    self._pending = {self._table: {_shape(rows)}, self.tasks_table: {_shape(tasks)}}
                else:
                    self._land_rows(con, rows_view, rows, replace)
                    self._land_tasks(con, tasks_view, tasks)
        finally:
            pending, self._pending = self._pending, {}
        for table, shapes in pending.items():  # committed: these shapes fit the tables
            self._accepted.setdefault(table, set()).update(shapes)
        self._landed = True

    def __call__(self, report: ItemLanding, rows: pa.Table) -> None:
        """The callable-sink protocol: land one completed item and its billed tasks."""
        self.land(rows, report.tasks_arrow(), replace_items=replaced_by(report))

    # -- reading back ---------------------------------------------------------------

    def landed_tasks(self) -> set[str]:
        """The ``_webtask_id`` of every task whose rows are in ``table``: a rerun need not
        read or land those again. A task is counted by its rows, not by its row in
        ``<table>_tasks`` (a success whose result could not be read has a task row but no
        rows). An item with no rows at all is never counted (landing it again is cheap).
        Empty for ``mode='replace'`` until this sink has landed an item, since such a
        sweep lands everything again. Refuses, before a sweep pays for anything, a table
        or ``<table>_tasks`` this sink cannot merge into."""
        if self._mode == "replace" and not self._landed:
            return set()
        con = self._connection()
        self._check_tasks_table(con)
        columns = table_columns(con, self.table)
        if columns is None:
            return set()
        if self._mode == "merge" and "_item_key" not in columns:
            raise InvalidInputError(
                f"table: {self.table!r} has no _item_key column (written by an earlier "
                "release, or not by webtask-frames), so its rows cannot be merged by item; "
                "land into a new table, or use mode='replace'",
                field="table",
            )
        if "_webtask_id" not in columns:
            return set()
        found = con.execute(
            f'SELECT DISTINCT CAST("_webtask_id" AS VARCHAR) FROM '
            f'{quote_identifier(self.table)} WHERE "_webtask_id" IS NOT NULL'
        ).fetchall()
        return {str(row[0]) for row in found}

    def read(self, item_keys: Sequence[str]) -> pa.Table:
        """The rows of ``item_keys`` in ``table``, in that order, each item's by ``_row``;
        an empty table with the table's columns when none has rows (no columns when
        there is no table yet)."""
        keys = list(dict.fromkeys(check_keys(item_keys, "item_keys")))
        con = self._connection()
        columns = table_columns(con, self._table)
        if columns is None:
            return pa.table({})
        if "_item_key" not in columns:
            raise InvalidInputError(
                f"table: {self._table!r} has no _item_key column; it was not landed by a sink",
                field="table",
            )
        order = ', t."_row"' if "_row" in columns else ""
        # The keys travel as a registered Arrow table joined in SQL, not as SQL text:
        # 20,000 keys cost one hash join.
        wanted = pa.table(
            {"key": pa.array(keys, pa.string()), "pos": pa.array(range(len(keys)), pa.int64())}
        )
        with registered(con, wanted) as view:
            relation = con.sql(
                f"SELECT t.* FROM {quote_identifier(self._table)} AS t "
                f'JOIN {view} AS k ON t."_item_key" = k.key ORDER BY k.pos{order}'
            )
            return relation.to_arrow_table()
