"""Partition directories that every value survives: an encoded copy of each column.

A hive directory name cannot hold every string: NUL ends it, ``/`` and ``..`` would move
it, ``__HIVE_DEFAULT_PARTITION__`` reads back as null and a long value passes the
filesystem's 255-byte limit. So the dataset is partitioned on a *copy* of each partition
column, ``<name>_dir``, whose values are safe names (``encode_partition_value``), while
the files keep the original column: DuckDB's ``read_parquet(..., hive_partitioning=true)``
and ``pyarrow.dataset`` read ``<name>`` back exactly, beside the ``<name>_dir`` key.

The encoding is injective: ASCII letters, digits, ``-`` and ``.`` stay; every other UTF-8
byte becomes ``~HH``; the empty string is ``~``; a name longer than ``MAX_VALUE_BYTES``
keeps a readable prefix and ends ``~h`` + a SHA-256 of the value (the value itself is in
the files).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .._exceptions import InvalidInputError

__all__ = [
    "KEY_SUFFIX",
    "MAX_NAME_BYTES",
    "MAX_VALUE_BYTES",
    "check_partition_name",
    "encode_partition_value",
    "partition_directory",
    "with_partition_keys",
]

KEY_SUFFIX = "_dir"
# ``<name>_dir=<value>`` stays well under the usual 255-byte limit of a path component.
MAX_NAME_BYTES = 100
MAX_VALUE_BYTES = 120
_SAFE = re.compile(rb"[A-Za-z0-9.\-]")
_UNSAFE_NAME = re.compile(r"[/\\=\x00]|^\.|^$")


def check_partition_name(name: object) -> str:
    """``name`` if a column of that name can name partition directories, else an error.

    Example:
        >>> check_partition_name("../evil")
        Traceback (most recent call last):
        ...
        webtask_frames._exceptions.InvalidInputError: partition_by: column name '../evil' ...
    """
    if not isinstance(name, str):
        raise InvalidInputError(
            f"partition_by: expected column names (strings), got {type(name).__name__}",
            field="partition_by",
        )
    if _UNSAFE_NAME.search(name) or len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidInputError(
            f"partition_by: column name {name!r} cannot be a directory name; rename it",
            field="partition_by",
        )
    return name


def encode_partition_value(value: str) -> str:
    """A directory-safe, injective name for ``value``.

    Example:
        >>> [encode_partition_value(v) for v in ["S24", "acme\\0EU", "../x", ""]]
        ['S24', 'acme~00EU', '..~2Fx', '~']
    """
    if value == "":
        return "~"
    out = "".join(
        chr(b) if _SAFE.fullmatch(bytes([b])) else f"~{b:02X}" for b in value.encode("utf-8")
    )
    if len(out) <= MAX_VALUE_BYTES:
        return out
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
    head = out[: MAX_VALUE_BYTES - 40].rstrip("~0123456789ABCDEF") or "v"
    return f"{head}~h{digest}"


def _key_column(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    kind = column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return column  # numbers, dates, booleans: pyarrow names them safely
    uniques = pc.unique(column)
    names = pa.array(
        [None if v is None else encode_partition_value(v) for v in uniques.to_pylist()],
        pa.string(),
    )
    return names.take(pc.index_in(column, value_set=uniques))


def with_partition_keys(table: pa.Table, columns: Sequence[str]) -> tuple[pa.Table, list[str]]:
    """``table`` plus one ``<name>_dir`` key column per partition column, and their names.

    Example:
        >>> t, keys = with_partition_keys(pa.table({"b": ["a/b"], "n": [1]}), ["b"])
        >>> keys, t.column("b_dir").to_pylist()
        (['b_dir'], ['a~2Fb'])
    """
    keys = []
    for name in columns:
        key = f"{name}{KEY_SUFFIX}"
        if key in table.column_names:
            raise InvalidInputError(
                f"partition_by: column {key!r} exists; it names the partition directories "
                f"of {name!r}: rename it",
                field="partition_by",
            )
        table = table.append_column(key, _key_column(table.column(name)))
        keys.append(key)
    return table, keys


def partition_directory(values: pa.Table, columns: Sequence[str]) -> str:
    """The hive directory (``a_dir=x/b_dir=y``) of rows sharing one value per column of
    ``columns``, named as ``write_parquet``'s datasets name it: strings encoded by
    ``encode_partition_value``, other values formatted by pyarrow, null as hive's marker.

    ``values`` holds the rows (any number, at least one); a column whose value differs
    between them cannot place them in one directory and is an ``InvalidInputError``.

    Example:
        >>> partition_directory(pa.table({"batch": ["a/b"], "n": [3]}), ["batch", "n"])
        'batch_dir=a~2Fb/n_dir=3'
    """
    fields, expression = [], None
    for name in columns:
        column = values.column(name)
        if len(pc.unique(column)) > 1:
            raise InvalidInputError(
                f"partition_by: column {name!r} differs between the rows of one item; "
                "partition by a parameter column",
                field="partition_by",
            )
        value = column[0]
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            kind = pa.string()
            if value.is_valid:
                value = pa.scalar(encode_partition_value(value.as_py()), pa.string())
        key = f"{name}{KEY_SUFFIX}"
        fields.append(pa.field(key, kind))
        term = ds.field(key).is_null() if not value.is_valid else ds.field(key) == value
        expression = term if expression is None else expression & term
    directory, _ = ds.partitioning(pa.schema(fields), flavor="hive").format(expression)
    return str(directory)
