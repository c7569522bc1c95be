"""A directory of Parquet files, one per key, that all share one schema.

``ParquetSink`` keeps an item's rows in one file (``item-<key>.parquet``) and a billed
task in one file (``task-<id>.parquet``), each replaced atomically. Hive readers infer a
dataset's schema from one file and cast the others to it (pyarrow drops columns that
file lacks; DuckDB refuses a file missing a column), so files with different schemas
would read wrongly or not at all. Items inferred one by one do differ (a column all null
in one item, ``int64`` in the next), so the set keeps one schema for all its files:
a new file is cast to it, and when a file needs a wider schema (a new column, a lossless
widening by ``evolve``'s rules) every other file is rewritten to that schema first.
Rewrites cost a pass over the data, once per change of schema; an ``output_schema``
gives every item the same types from the start and so avoids them.

A crash during such a pass leaves files of both schemas, each whole; the next use of the
set (a rerun) unifies the schemas of all files and rewrites the ones that differ.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .._exceptions import InvalidInputError
from .atomic import is_temporary, write_atomically
from .evolve import TypeConflict, conform, merged_schema, value_type

__all__ = ["FileSet", "incoming_schema"]

_SUFFIX = ".parquet"


def incoming_schema(table: pa.Table, existing: pa.Schema | None) -> pa.Schema:
    """What ``table`` asks of a schema: a column the schema has is asked only for the
    type of its values (all null asks nothing), a new column for its declared type."""
    fields = []
    for field in table.schema:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if existing is not None and field.name in existing.names:
            kind = value_type(table.column(field.name))
        fields.append(pa.field(field.name, kind))
    return pa.schema(fields)


class FileSet:
    """Files ``<prefix><key>.parquet`` anywhere below ``root``, sharing one schema.

    ``what`` names the set in messages (``"dataset 'out/companies'"``). Nothing is read
    until first used; then the files are listed once, and the set keeps its index.

    Example:
        >>> files = FileSet(Path("out/companies"), "item-", "dataset 'out/companies'")
        >>> files.write("ab12", pa.table({"_item_key": ["ab12"]}), Path("out/companies"))
        ... # doctest: +SKIP
    """

    def __init__(self, root: Path, prefix: str, what: str) -> None:
        self.root, self.prefix, self.what = root, prefix, what
        self._files: dict[str, Path] | None = None
        self._schema: pa.Schema | None = None

    # -- the index ------------------------------------------------------------------

    def _refuse(self, reason: str) -> InvalidInputError:
        return InvalidInputError(f"path: {self.what} {reason}; land into a new path", field="path")

    def _list(self) -> dict[str, Path]:
        if self.root.exists() and not self.root.is_dir():
            raise self._refuse("is a file, not a directory")
        files: dict[str, Path] = {}
        for directory, dirs, names in os.walk(self.root):
            # Hidden directories are not the dataset's (nor its readers'): skipped alike.
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            for name in sorted(names):
                path = Path(directory) / name
                if is_temporary(name):  # left by a killed writer: never read, removed
                    path.unlink(missing_ok=True)
                    continue
                if not name.endswith(_SUFFIX) or name.startswith((".", "_")):
                    continue
                if not name.startswith(self.prefix):
                    raise self._refuse(
                        f"holds {name!r}, a file this sink did not write (a dataset of an "
                        "earlier release?)"
                    )
                key = name[len(self.prefix) : -len(_SUFFIX)]
                other = files.get(key)
                if other is not None:
                    # A key whose directory changed, interrupted before the old file
                    # went: the newer file is the key's.
                    older, path = sorted((other, path), key=lambda p: p.stat().st_mtime_ns)
                    older.unlink(missing_ok=True)
                files[key] = path
        return files

    def _load(self) -> dict[str, Path]:
        if self._files is None:
            files = self._list()
            schemas = {key: pq.read_schema(path).remove_metadata() for key, path in files.items()}
            schema = None
            for key, found in schemas.items():
                schema = found if schema is None else self._merged(schema, found, key)
            self._files, self._schema = files, schema
            if schema is not None:
                stale = (files[key] for key, found in schemas.items() if not found.equals(schema))
                self._rewrite(stale, schema)
        return self._files

    def _merged(self, schema: pa.Schema, incoming: pa.Schema, key: str) -> pa.Schema:
        try:
            return merged_schema(schema, incoming).remove_metadata()
        except TypeConflict as conflict:
            raise InvalidInputError(
                f"path: {conflict.message(self.what, 'path')} (key {key})", field="path"
            ) from None

    @staticmethod
    def _rewrite(paths: Iterable[Path], schema: pa.Schema) -> None:
        for path in list(paths):
            write_atomically(conform(pq.read_table(path), schema), path)

    @property
    def schema(self) -> pa.Schema | None:
        """The files' one schema; None while there is no file."""
        self._load()
        return self._schema

    def path_of(self, key: str) -> Path | None:
        """The file of ``key``, if there is one."""
        return self._load().get(key)

    def paths(self, keys: Iterable[str] | None = None) -> list[Path]:
        """The files of ``keys`` (those that exist, each once), or all files."""
        files = self._load()
        if keys is None:
            return list(files.values())
        return [files[key] for key in dict.fromkeys(keys) if key in files]

    # -- reading and writing --------------------------------------------------------

    def read(
        self,
        keys: Iterable[str] | None = None,
        *,
        columns: Sequence[str] | None = None,
        filter: ds.Expression | None = None,
    ) -> pa.Table:
        """The rows of ``keys``' files (or all), one scan over the files; an empty table
        with the set's schema when none exists."""
        paths = self.paths(keys)
        schema = self._schema
        if schema is None:
            return pa.table({})
        if not paths:
            empty = schema.empty_table()
            return empty.select(list(columns)) if columns is not None else empty
        # Every file has the set's schema: one multi-threaded scan reads thousands of
        # small files several times faster than a read per file.
        dataset = ds.dataset([str(p) for p in paths], format="parquet", schema=schema)
        return dataset.to_table(columns=columns, filter=filter)

    def write(self, key: str, table: pa.Table, directory: Path) -> Path:
        """Replace ``key``'s file with ``table`` (its metadata kept), in ``directory``.

        The schema widens first if ``table`` needs it (every other file rewritten); a
        type that cannot widen is an ``InvalidInputError`` naming column and fix.
        """
        files = self._load()
        wanted = incoming_schema(table, self._schema)
        if self._schema is None:
            schema = wanted.remove_metadata()
        else:
            schema = self._merged(self._schema, wanted, key)
        target = directory / f"{self.prefix}{key}{_SUFFIX}"
        try:
            if self._schema is not None and not schema.equals(self._schema):
                self._rewrite((path for other, path in files.items() if other != key), schema)
            self._schema = schema
            write_atomically(conform(table, schema), target)
        except BaseException:
            # Files may now differ in schema: the next use lists and heals them again.
            self._files = self._schema = None
            raise
        old = files.get(key)
        if old is not None and old != target:
            old.unlink(missing_ok=True)
        files[key] = target
        return target
