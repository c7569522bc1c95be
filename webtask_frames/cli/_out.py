"""``run --out FILE``: the file format follows the extension, checked before any request.

``.parquet`` goes through :meth:`BatchResult.to_parquet` (provenance in the metadata); ``.csv``,
``.ndjson``/``.jsonl`` and ``.json`` (one array) are written by DuckDB's ``COPY`` from a
zero-copy scan of the Arrow rows. Every write goes to a temporary name in the target's
directory and is renamed into place, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import InvalidInputError
from .._sinks.scrub import scrub_table

if TYPE_CHECKING:
    import pyarrow as pa

    from .._batch.result import BatchResult

__all__ = ["OUT_FORMATS", "check_out", "out_format", "write_out"]

# extension -> format; a directory (with --partition-by) is a hive-partitioned Parquet dataset.
OUT_FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
}
_NOT_A_DATASET = (".csv", ".ndjson", ".jsonl", ".json", ".duckdb", ".db")
SUPPORTED = (
    ".parquet, .csv, .ndjson, .jsonl, .json (a JSON array), or a directory (a Parquet dataset)"
)


def out_format(out: str, partitioned: bool) -> str:
    """The format ``--out`` asks for, or :class:`InvalidInputError` naming the fix."""
    path = Path(out)
    suffix = path.suffix.lower()
    if partitioned:
        if path.exists() and not path.is_dir():
            raise InvalidInputError(
                f"--out {out!r} is a file; a partitioned dataset needs a directory",
                field="--out",
            )
        if suffix in _NOT_A_DATASET:
            raise InvalidInputError(
                f"--out {out!r}: a partitioned dataset is Parquet; pass a directory name",
                field="--out",
            )
        return "dataset"
    if path.is_dir() or not suffix:  # a directory: a Parquet dataset, one file per item
        return "dataset"
    if suffix in (".duckdb", ".db"):
        raise InvalidInputError(
            f"--out {out!r}: for DuckDB use --duckdb {out} --table NAME", field="--out"
        )
    if suffix not in OUT_FORMATS:
        raise InvalidInputError(
            f"--out {out!r}: unknown file type {suffix or '(none)'}; use {SUPPORTED}",
            field="--out",
        )
    return OUT_FORMATS[suffix]


def check_out(out: str, partitioned: bool) -> None:
    """Refuse an unusable ``--out`` before anything is sent (nothing is paid for)."""
    out_format(out, partitioned)
    parent = Path(out).parent
    if not parent.is_dir():
        raise InvalidInputError(
            f"--out {out!r}: the directory {str(parent)!r} does not exist", field="--out"
        )


def write_out(result: BatchResult, out: str, partition_by: list[str]) -> Path:
    """Write the valid rows to ``out`` in the format its extension names."""
    fmt = out_format(out, bool(partition_by))
    if fmt in ("parquet", "dataset"):
        return result.to_parquet(out, partition_by=partition_by or None)
    target = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        # Same rule as the Parquet and DuckDB sinks: no registered secret leaves in a value.
        _copy(scrub_table(result.to_arrow()), Path(tmp), fmt)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _copy(table: pa.Table, path: Path, fmt: str) -> None:
    import duckdb
    import pyarrow as pa

    def nested(t: pa.DataType) -> bool:
        return bool(pa.types.is_nested(t))

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # nothing of DuckDB's on the terminal
        con.register("rows_", table)
        if fmt == "csv":  # nested values as JSON text, which every CSV reader can parse
            columns = ", ".join(
                f"to_json({_ident(f.name)}) AS {_ident(f.name)}"
                if nested(f.type)
                else _ident(f.name)
                for f in table.schema
            )
            options = "FORMAT csv, HEADER true"
        else:
            columns = "*"
            options = "FORMAT json" + (", ARRAY true" if fmt == "json" else "")
        target = str(path).replace("'", "''")
        con.execute(f"COPY (SELECT {columns} FROM rows_) TO '{target}' ({options})")
    finally:
        con.close()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
