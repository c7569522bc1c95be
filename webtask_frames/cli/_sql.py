"""``webtask-frames sql DATABASE QUERY``: run SQL on a DuckDB database, print the result.

A thin shell over duckdb's Python API, so the demo's "explore it" queries run with nothing
more than this package installed. The database opens read-only unless ``--write`` is given;
``:memory:`` queries files directly (``SELECT * FROM 'rows/*/*.parquet'``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from .._exceptions import InvalidInputError

__all__ = ["EPILOG", "FORMATS", "run_sql"]

FORMATS = ("table", "csv", "json", "ndjson")
EPILOG = """\
examples:
  webtask-frames sql webtask-demo/demo.duckdb "SELECT * FROM companies LIMIT 5"
  webtask-frames sql webtask-demo/demo.duckdb \\
      "SELECT reuse_key, count(*) AS runs, sum(cost_ai_usd) AS usd FROM companies_tasks
       GROUP BY ALL"
  webtask-frames sql yc.duckdb "SELECT * FROM companies" --format csv > companies.csv
  webtask-frames sql :memory: "SELECT batch, count(*) FROM 'out/*/*.parquet' GROUP BY ALL"

The database is opened read-only; pass --write to change it. Nested values print as
DuckDB shows them in a table, and as JSON in csv, json and ndjson output.
"""
_BATCH = 1000


def run_sql(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run ``args.query`` on ``args.database`` and print the result in ``args.format``."""
    import duckdb

    out = out if out is not None else sys.stdout
    database = str(args.database)
    in_memory = database == ":memory:"
    if not in_memory and not Path(database).is_file():
        raise InvalidInputError(
            f"sql: no database file {database!r}; pass an existing DuckDB file "
            "(or :memory: to query Parquet/CSV files by path)",
            field="DATABASE",
        )
    try:
        con = duckdb.connect(database, read_only=not (args.write or in_memory))
    except duckdb.Error as exc:
        raise InvalidInputError(f"sql: cannot open {database!r}: {_one_line(exc)}") from None
    try:
        if args.format == "table":
            relation = con.sql(args.query)
            if relation is not None:  # None: a statement without a result
                out.write(str(relation))
        else:
            cursor = con.execute(args.query)
            columns = [d[0] for d in cursor.description or ()]
            _write_rows(columns, _rows(cursor), args.format, out)
    except duckdb.Error as exc:
        hint = "; pass --write to change the database" if "read-only" in str(exc) else ""
        raise InvalidInputError(f"sql: {_one_line(exc)}{hint}", field="QUERY") from None
    finally:
        con.close()
    return 0


def _write_rows(columns: list[str], rows: Iterator[Sequence[Any]], fmt: str, out: IO[str]) -> None:
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(v) for v in row])
    elif fmt == "ndjson":
        for row in rows:
            out.write(_json(dict(zip(columns, row, strict=True))) + "\n")
    else:
        out.write("[")
        for n, row in enumerate(rows):
            out.write(("," if n else "") + "\n  " + _json(dict(zip(columns, row, strict=True))))
        out.write("\n]\n")


def _rows(cursor: Any) -> Iterator[Sequence[Any]]:
    while batch := cursor.fetchmany(_BATCH):
        yield from batch


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _json(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | dict | tuple):
        return _json(value)
    if value is None or isinstance(value, str | int | float | bool):
        return "" if value is None else value
    try:
        return _default(value)
    except TypeError:
        return str(value)


def _one_line(exc: BaseException) -> str:
    """DuckDB's message without its multi-line caret display."""
    lines = []
    for line in str(exc).splitlines():
        if not line.strip() or line.startswith("LINE "):
            break
        lines.append(line.strip())
    return " ".join(lines) or type(exc).__name__
