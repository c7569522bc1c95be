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
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .._exceptions import InvalidInputError
from .._tables.metadata import METADATA_KEY, read_metadata
from .._tables.unify import plain_strings
from .partitions import MAX_NAME_BYTES, with_partition_keys
from .scrub import scrub_table

__all__ = ["METADATA_KEY", "read_provenance", "write_parquet"]

_UNSAFE_NAME = re.compile(r"[/\\=\x00]|^\.|^$")


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
        if _UNSAFE_NAME.search(name) or len(name.encode()) > MAX_NAME_BYTES:
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
    table = _with_metadata(scrub_table(plain_strings(table)), provenance)
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
