"""``ParquetSink``: a Parquet dataset that grows item by item, merged by identity.

Each item's rows are one file, ``path/[<col>_dir=<value>/...]item-<item_key>.parquet``,
replaced atomically when the item lands again (merge by identity: an item's rows are its
rows from its latest successful task). Each billed task is one file in the sibling
directory ``<path>_tasks/``, ``task-<encoded _webtask_id>.parquet``, written after its
item's rows, so a task recorded as a success has its rows on disk; a crash between the
two is healed by the rerun, which lands that item again. A ``kill -9`` therefore leaves
whole files only: a file is its old version or its new one (``atomic``), temporary files
are invisible to readers and removed by the next run.

The files of each directory share one schema (``fileset``), so ``pandas.read_parquet``
and DuckDB's ``read_parquet('path/**/*.parquet', hive_partitioning=true)`` read the
dataset; partition directories are named as ``write_parquet``'s (``partitions``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import InvalidInputError
from .._tables.unify import plain_strings, unify_tables
from .fileset import FileSet
from .landing import ItemLanding, check_keys, keys_in, last_per_task, replaced_by
from .parquet import with_metadata
from .partitions import KEY_SUFFIX, check_partition_name, encode_partition_value
from .partitions import partition_directory as _directory
from .scrub import scrub_table

__all__ = ["ParquetSink"]


def _check_path(path: object) -> Path:
    if isinstance(path, str | os.PathLike):
        where = os.fspath(path)
        # A dataset needs a name: its tasks live in the sibling directory <name>_tasks.
        if isinstance(where, str) and Path(where).name not in ("", ".", ".."):
            return Path(where)
    raise InvalidInputError(
        f"path: expected a directory path for the dataset, got {path!r}", field="path"
    )


def _check_partition_by(partition_by: object) -> tuple[str, ...]:
    if partition_by is None:
        return ()
    names = [partition_by] if isinstance(partition_by, str) else partition_by
    if not isinstance(names, Iterable):
        raise InvalidInputError(
            "partition_by: expected a column name or a list of them", field="partition_by"
        )
    columns = tuple(check_partition_name(name) for name in names)
    if len(set(columns)) != len(columns):
        raise InvalidInputError(
            f"partition_by: {list(columns)} names a column twice", field="partition_by"
        )
    return columns


class ParquetSink:
    """Land each completed item in a Parquet dataset directory as it completes.

    ``path`` is a directory: one file per item (its rows), under hive partition
    directories when ``partition_by`` names parameter columns, and one file per billed
    task in ``<path>_tasks/``. Rerunning replaces each item's file, so the dataset never
    holds an item twice.

    Example:
        >>> sink = ParquetSink("out/companies", partition_by=["batch"])
        >>> result = run_batch("List {batch} companies", grid, sink=sink)  # doctest: +SKIP
        >>> pd.read_parquet("out/companies")  # every landed item's rows  # doctest: +SKIP
        >>> pd.read_parquet("out/companies_tasks").cost_ai_usd.sum()  # doctest: +SKIP
    """

    def __init__(
        self, path: str | os.PathLike[str], *, partition_by: Sequence[str] | str | None = None
    ) -> None:
        self._path = _check_path(path)
        self._partition_by = _check_partition_by(partition_by)
        self._tasks_path = self._path.with_name(f"{self._path.name}_tasks")
        self._items = FileSet(self._path, "item-", f"dataset {str(self._path)!r}")
        self._tasks = FileSet(self._tasks_path, "task-", f"tasks {str(self._tasks_path)!r}")

    @property
    def path(self) -> Path:
        """The dataset directory (the items' rows)."""
        return self._path

    @property
    def tasks_path(self) -> Path:
        """The billed tasks' directory, ``<path>_tasks``."""
        return self._tasks_path

    @property
    def partition_by(self) -> tuple[str, ...]:
        """The partition columns, outermost first."""
        return self._partition_by

    def __repr__(self) -> str:
        partitions = f", partition_by={list(self._partition_by)!r}" if self._partition_by else ""
        return f"ParquetSink({str(self._path)!r}{partitions})"

    # Nothing to open: files are written whole, one at a time. The methods exist so
    # either sink can be used alike.
    def open(self) -> ParquetSink:
        """Nothing to do (for symmetry with ``DuckDBSink``); returns the sink."""
        return self

    def close(self) -> None:
        """Nothing to do (for symmetry with ``DuckDBSink``)."""

    def __enter__(self) -> ParquetSink:
        return self.open()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def check_columns(self, parameter_names: Iterable[str]) -> None:
        """Refuse a partition column that is not a parameter of the sweep: only a
        parameter is constant within an item, so only it can place an item's file."""
        parameters = [str(name) for name in parameter_names]
        for name in self._partition_by:
            if name not in parameters:
                raise InvalidInputError(
                    f"partition_by: {name!r} is not a parameter of the sweep; partition by "
                    f"parameter columns ({', '.join(parameters) or 'there are none'})",
                    field="partition_by",
                )

    # -- landing --------------------------------------------------------------------

    def _check_partition_columns(self, table: pa.Table) -> None:
        for name in self._partition_by:
            if name not in table.column_names:
                raise InvalidInputError(
                    f"partition_by: the rows have no column {name!r}; partition by parameter "
                    "columns",
                    field="partition_by",
                )
            if f"{name}{KEY_SUFFIX}" in table.column_names:
                raise InvalidInputError(
                    f"partition_by: column {name + KEY_SUFFIX!r} exists; it names the "
                    f"partition directories of {name!r}: rename it",
                    field="partition_by",
                )
            kind = table.schema.field(name).type
            if pa.types.is_nested(kind):
                raise InvalidInputError(
                    f"partition_by: column {name!r} is nested ({kind}); partition by a scalar "
                    "column",
                    field="partition_by",
                )

    def _directory(self, key: str, rows: pa.Table, tasks: pa.Table) -> Path | None:
        if not self._partition_by:
            return self._path
        # A zero-row item is placed by its tasks' parameter values, or where it was.
        source = rows if rows.num_rows else _of_item(tasks, key)
        if source.num_rows and all(c in source.column_names for c in self._partition_by):
            return self._path / _directory(source, self._partition_by)
        old = self._items.path_of(key)
        return old.parent if old is not None else None

    def _land_item(self, key: str, rows: pa.Table, tasks: pa.Table, replace: bool) -> None:
        mine = _of_item(rows, key)
        old = self._items.path_of(key)
        if not replace and old is not None:
            # Rows of an item that did not succeed are added to its rows, not swapped in.
            mine = unify_tables([self._items.read([key]), mine])
        directory = self._directory(key, mine, tasks)
        if directory is not None:
            self._items.write(key, mine, directory)

    def land(
        self,
        rows: pa.Table,
        tasks: pa.Table,
        *,
        replace_items: Sequence[str],
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        """Land ``rows`` (one file per item) and ``tasks`` (one file per billed task).

        The items of ``replace_items`` get exactly their rows in ``rows`` (none: a
        zero-row file); rows of other items are added to theirs. ``provenance`` goes in
        each file's metadata, as ``write_parquet`` stores it.
        """
        replace = check_keys(replace_items, "replace_items")
        rows = with_metadata(scrub_table(plain_strings(rows)), provenance)
        tasks = with_metadata(last_per_task(scrub_table(plain_strings(tasks))), provenance)
        if self._partition_by:
            self._check_partition_columns(rows)
        if tasks.num_rows and "_webtask_id" not in tasks.column_names:
            raise InvalidInputError("tasks: the tasks have no _webtask_id column", field="tasks")
        for key in dict.fromkeys([*replace, *keys_in(rows)]):
            self._land_item(key, rows, tasks, key in replace)
        # After the rows: a task on disk as a success means its rows are there.
        ids = tasks.column("_webtask_id").to_pylist() if tasks.num_rows else []
        for index, task in enumerate(ids):
            if task is not None:
                name = encode_partition_value(str(task))
                self._tasks.write(name, tasks.slice(index, 1), self._tasks_path)

    def __call__(self, report: ItemLanding, rows: pa.Table) -> None:
        """The callable-sink protocol: land one completed item and its billed tasks."""
        self.land(rows, report.tasks_arrow(), replace_items=replaced_by(report))

    # -- reading back ---------------------------------------------------------------

    def landed_tasks(self) -> set[str]:
        """The ``_webtask_id`` of every task whose rows are in the dataset (counted by the
        rows, not by the task files: a success whose result could not be read has a task
        file but no rows). Lists the dataset, so a directory this sink cannot write into
        is refused before a sweep pays for anything."""
        self._tasks.schema  # noqa: B018 - lists and checks the tasks directory too
        schema = self._items.schema
        if schema is None or "_webtask_id" not in schema.names:
            return set()
        found = self._items.read(columns=["_webtask_id"]).column("_webtask_id")
        return {str(task) for task in pc.unique(found).to_pylist() if task is not None}

    def read(self, item_keys: Sequence[str]) -> pa.Table:
        """The rows of ``item_keys`` (their files only), in that order, each item's rows
        by ``_row``; an empty table with the dataset's columns when none has rows."""
        keys = list(dict.fromkeys(check_keys(item_keys, "item_keys")))
        table = self._items.read(keys)
        if not table.num_rows or "_item_key" not in table.column_names:
            return table
        position = pc.index_in(table.column("_item_key"), value_set=pa.array(keys, pa.string()))
        order = pa.table({"p": position})
        sort = [("p", "ascending")]
        if "_row" in table.column_names:
            order = order.append_column("r", table.column("_row"))
            sort.append(("r", "ascending"))
        return table.take(pc.sort_indices(order, sort_keys=sort))


def _of_item(table: pa.Table, key: str) -> pa.Table:
    if not table.num_rows or "_item_key" not in table.column_names:
        return table.slice(0, 0)
    return table.filter(pc.equal(table.column("_item_key"), key))
