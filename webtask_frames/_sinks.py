"""Landing Arrow tables in Parquet files and DuckDB tables, atomically.

Arrow is the internal format; these writers are thin, careful views of it:

* ``write_parquet`` writes one file, or a hive-partitioned dataset, under a temporary name
  and renames it into place, so a crash leaves the previous file or dataset intact.
  Partition values are percent-encoded by pyarrow (``a/b`` -> ``a%2Fb``), so no value can
  escape the target directory; partition column *names* are checked here.
* ``write_duckdb`` writes the rows table and its ``<table>_tasks`` companion in one
  transaction through DuckDB's zero-copy Arrow scan: both land, or neither does. ``merge``
  upserts on a key so rerunning a sweep never duplicates rows; new columns are added, and
  a column whose type changed is a clear error rather than a silent cast.

Provenance (task, reuse key, schema hash, library version) rides in Parquet metadata; the
API key and signed URLs never reach either sink, because they are never in the tables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ._exceptions import InvalidInputError

__all__ = [
    "METADATA_KEY",
    "quote_identifier",
    "read_provenance",
    "write_duckdb",
    "write_parquet",
]

METADATA_KEY = b"webtask_frames"
WriteMode = Literal["append", "replace", "merge"]
_MODES = ("append", "replace", "merge")
_UNSAFE_NAME = re.compile(r"[/\\=\x00]|^\.|^$")
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


def _plain_strings(table: pa.Table) -> pa.Table:
    """Dictionary columns become plain strings: DuckDB would otherwise make ENUMs whose
    value sets differ between runs and refuse to append."""
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _with_metadata(table: pa.Table, provenance: Mapping[str, Any] | None) -> pa.Table:
    if not provenance:
        return table
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(dict(provenance), default=str, sort_keys=True).encode()
    return table.replace_schema_metadata(metadata)


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())


def _check_partition_columns(table: pa.Table, partition_by: Sequence[str]) -> list[str]:
    columns = [partition_by] if isinstance(partition_by, str) else list(partition_by)
    for name in columns:
        if name not in table.column_names:
            raise InvalidInputError(
                f"partition_by: no column {name!r}; choose from the parameter columns "
                f"({', '.join(c for c in table.column_names if not c.startswith('_'))})",
                field="partition_by",
            )
        if _UNSAFE_NAME.search(name):
            raise InvalidInputError(
                f"partition_by: column name {name!r} cannot be a directory name; rename it",
                field="partition_by",
            )
        kind = table.schema.field(name).type
        if pa.types.is_nested(kind):
            raise InvalidInputError(
                f"partition_by: column {name!r} is nested ({kind}); partition by a scalar column",
                field="partition_by",
            )
    if len(columns) == len(table.column_names):
        raise InvalidInputError(
            "partition_by: at least one column must stay in the files", field="partition_by"
        )
    return columns


def write_parquet(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    partition_by: Sequence[str] | str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``table`` to one Parquet file, or a hive-partitioned dataset directory.

    The write goes to a temporary sibling and is renamed into place: readers see the old
    file or the new one, never a half-written one. An existing dataset directory is
    replaced as a whole (old one moved aside, new one renamed in), so reruns do not mix
    files of two runs.

    Example:
        >>> write_parquet(pa.table({"batch": ["S24"], "n": [1]}), "out", partition_by=["batch"])
        ... # doctest: +SKIP
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    table = _with_metadata(_plain_strings(table), provenance)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if not partition_by:
            if target.is_dir():
                raise InvalidInputError(
                    f"path: {str(target)!r} is a directory; pass a file name ending in .parquet, "
                    "or partition_by=[...] to write a dataset there",
                    field="path",
                )
            pq.write_table(table, tmp)
            _fsync_file(tmp)
            os.replace(tmp, target)
            return target
        columns = _check_partition_columns(table, partition_by)
        if target.exists() and not target.is_dir():
            raise InvalidInputError(
                f"path: {str(target)!r} is a file; a partitioned dataset needs a directory",
                field="path",
            )
        ds.write_dataset(
            table,
            tmp,
            format="parquet",
            partitioning=ds.partitioning(table.select(columns).schema, flavor="hive"),
            basename_template="part-{i}.parquet",
            existing_data_behavior="error",
        )
        _fsync_tree(tmp)
        _swap_directory(tmp, target)
        return target
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _swap_directory(new: Path, target: Path) -> None:
    # Directories cannot be replaced by one rename: move the old one aside first. A crash
    # between the two renames leaves the old dataset complete under the backup name
    # (.NAME.xxxx.old) and the path empty for that instant, never a partial dataset.
    backup = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        os.replace(target, backup)
    os.replace(new, target)
    if backup.exists():
        shutil.rmtree(backup, ignore_errors=True)


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance dict stored by ``write_parquet`` in a file's (or dataset's) metadata."""
    target = Path(path)
    files = sorted(target.rglob("*.parquet")) if target.is_dir() else [target]
    if not files:
        return {}
    metadata = pq.read_schema(files[0]).metadata or {}
    raw = metadata.get(METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}


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
    con.register(view, _plain_strings(data))
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
