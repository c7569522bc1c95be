"""Landing Arrow tables in Parquet: one file, or a hive-partitioned dataset, atomically.

``write_parquet`` writes under a temporary name and renames into place, so a crash leaves
the previous file or dataset intact. Partitions are written from an encoded copy of each
partition column (``partitions``), so no value can escape the target directory, every
distinct value gets its own directory, and the files keep the original column: hive
readers give back the exact values. Partition column *names* are checked here.
Provenance (task, reuse key, schema hash, library version) rides in the file metadata
under ``METADATA_KEY`` (``b"webtask"``, the key ``read_webtask_arrow`` uses too; files
with the older ``b"webtask_frames"`` still read); the API key and signed URLs never reach
it, because they are never in the tables.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .._exceptions import InvalidInputError
from .._tables.metadata import METADATA_KEY, read_metadata
from .._tables.unify import plain_strings
from .atomic import write_atomically
from .evolve import TypeConflict, conform, merged_schema
from .fileset import incoming_schema
from .landing import check_keys, last_per_task
from .partitions import check_partition_name, with_partition_keys
from .scrub import scrub_table

__all__ = [
    "METADATA_KEY",
    "merge_parquet_file",
    "read_provenance",
    "with_metadata",
    "write_parquet",
]


def with_metadata(table: pa.Table, provenance: Mapping[str, Any] | None) -> pa.Table:
    """``table`` with ``provenance`` (JSON) in its schema metadata under ``METADATA_KEY``."""
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
        check_partition_name(name)
        kind = table.schema.field(name).type
        if pa.types.is_nested(kind):
            raise InvalidInputError(
                f"partition_by: column {name!r} is nested ({kind}); partition by a scalar column",
                field="partition_by",
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
        >>> # out/batch_dir=S24/part-0.parquet, whose rows keep the batch column
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    table = with_metadata(scrub_table(plain_strings(table)), provenance)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if not partition_by:
            if target.is_dir():
                raise InvalidInputError(
                    f"path: {str(target)!r} is a directory; pass a file name ending in .parquet, "
                    "or partition_by=[...] to write a dataset there",
                    field="path",
                )
            return write_atomically(table, target)
        columns = _check_partition_columns(table, partition_by)
        if target.exists() and not target.is_dir():
            raise InvalidInputError(
                f"path: {str(target)!r} is a file; a partitioned dataset needs a directory",
                field="path",
            )
        table, keys = with_partition_keys(table, columns)
        ds.write_dataset(
            table,
            tmp,
            format="parquet",
            partitioning=ds.partitioning(table.select(keys).schema, flavor="hive"),
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
    """The provenance dict stored by ``write_parquet`` in a file's (or dataset's) metadata.

    Files written before the metadata key was unified (``b"webtask_frames"``) still read.

    Example:
        >>> read_provenance("companies.parquet")["task"]  # doctest: +SKIP
        'List companies'
    """
    target = Path(path)
    files = sorted(target.rglob("*.parquet")) if target.is_dir() else [target]
    if not files:
        return {}
    return read_metadata(pq.read_schema(files[0]).metadata)


def _old_release(path: Path, table: pa.Table, key: str) -> InvalidInputError | None:
    if key not in table.column_names:
        return InvalidInputError(
            f"path: {str(path)!r} has no {key} column: it was not written by a merge of this "
            "release (an earlier release's file?); write to a new path",
            field="path",
        )
    if key == "_item_key" and table.num_rows:
        # The earlier release keyed items by grid position ("<index>:<hash>"); those keys
        # never match an item's identity now, so merging would keep every old row.
        positional = pc.any(pc.match_substring(table.column(key), ":")).as_py()
        if positional:
            return InvalidInputError(
                f"path: {str(path)!r} was written by an earlier release (items keyed by grid "
                "position); write to a new path",
                field="path",
            )
    return None


def _merged_file(path: Path, new: pa.Table, key: str, drop: Sequence[str]) -> pa.Table:
    """The rows of ``path`` without those whose ``key`` is in ``drop``, then ``new``."""
    if not path.exists():
        return new
    if path.is_dir():
        raise InvalidInputError(
            f"path: {str(path)!r} is a directory; pass a file name ending in .parquet",
            field="path",
        )
    old = pq.read_table(path)
    refusal = _old_release(path, old, key)
    if refusal is not None:
        raise refusal
    if drop:
        keep = pc.invert(pc.is_in(old.column(key), value_set=pa.array(list(drop), pa.string())))
        old = old.filter(pc.fill_null(keep, True))
    existing = old.schema.remove_metadata()
    try:
        schema = merged_schema(existing, incoming_schema(new, existing))
    except TypeConflict as conflict:
        raise InvalidInputError(
            f"path: {conflict.message(f'file {str(path)!r}', 'path')}", field="path"
        ) from None
    return pa.concat_tables([conform(old, schema), conform(new.replace_schema_metadata(), schema)])


def merge_parquet_file(
    path: str | os.PathLike[str],
    rows: pa.Table,
    tasks: pa.Table,
    *,
    replace_items: Sequence[str],
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Merge ``rows`` into the Parquet file ``path`` by item identity, ``tasks`` into its
    sibling ``<stem>_tasks.parquet`` by ``_webtask_id``; each file replaced atomically.

    The file keeps its rows except those of ``replace_items``, then gets ``rows``; the
    tasks file keeps its tasks except those given again, then gets ``tasks``. Both are
    computed before either is written (a type conflict writes nothing), the rows first.

    Example:
        >>> merge_parquet_file("companies.parquet", rows, tasks, replace_items=["3f2a..."])
        ... # doctest: +SKIP
        PosixPath('companies.parquet')
    """
    target = Path(path)
    drop = list(dict.fromkeys(check_keys(replace_items, "replace_items")))
    rows = scrub_table(plain_strings(rows))
    tasks = last_per_task(scrub_table(plain_strings(tasks)))
    if "_webtask_id" not in tasks.column_names:
        raise InvalidInputError("tasks: the tasks have no _webtask_id column", field="tasks")
    tasks_path = target.with_name(f"{target.stem}_tasks{target.suffix}")
    ids = [t for t in pc.unique(tasks.column("_webtask_id")).to_pylist() if t is not None]
    merged_rows = _merged_file(target, rows, "_item_key", drop)
    merged_tasks = _merged_file(tasks_path, tasks, "_webtask_id", ids)
    write_atomically(with_metadata(merged_rows, provenance), target)
    write_atomically(with_metadata(merged_tasks, provenance), tasks_path)
    return target
