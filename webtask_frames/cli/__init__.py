"""The ``webtask-frames`` command: a thin shell over the Python API.

Commands: ``run`` (one task or a parameter sweep into Parquet, CSV, NDJSON or DuckDB),
``sql`` (a query on a DuckDB database), ``sandbox`` (the local fake API) and ``demo`` (a
sweep against the sandbox, end to end).

Exit codes::

    0  every item succeeded
    1  some items failed or were skipped
    2  usage error or bad input (nothing was sent)
    3  authentication or AI credits: fix the account, then rerun
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from .._batch.api import run_batch
from .._batch.result import BatchResult
from .._exceptions import (
    AuthenticationError,
    ConfigurationError,
    InvalidInputError,
    WebTaskError,
)
from .._options import MODELS, VALIDATE_MODES
from .._sinks.dataset import ParquetSink
from .._sinks.duckdb_sink import DuckDBSink
from .._sinks.parquet import write_parquet
from .._wire.sync import Client
from ._out import SUPPORTED, check_out, out_format, write_out
from ._sql import EPILOG as SQL_EPILOG
from ._sql import FORMATS as SQL_FORMATS

__all__ = ["main"]

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
PROG = "webtask-frames"

RUN_EPILOG = """\
examples:
  # one task, rows to a Parquet file
  webtask-frames run "List the companies in the YC directory" \\
      --start-url https://www.ycombinator.com/companies --param batch=S24 \\
      --schema company.schema.json --out companies.parquet

  # the same rows as CSV (nested values as JSON text), NDJSON or a JSON array
  webtask-frames run "List the companies in the YC directory" --param batch=S24 --out yc.csv

  # a sweep: one task per row of grid.csv, each item's rows landed in DuckDB as it finishes
  webtask-frames run "List the companies of the given batch" --grid grid.csv \\
      --reuse-key 'yc_{batch}' --duckdb yc.duckdb --table companies --ledger yc.ledger

  # the next day: the same command with a grown grid.csv pays only for the new rows of it;
  # add --retry-failed to run failed items again, --max-age 7d to refresh week-old results
  webtask-frames run "List the companies of the given batch" --grid grid.csv \\
      --reuse-key 'yc_{batch}' --duckdb yc.duckdb --table companies --ledger yc.ledger \\
      --retry-failed --max-age 7d

  # see the plan and its estimated cost without sending anything
  webtask-frames run "..." --grid grid.csv --dry-run

--param values are parsed as JSON when they are valid JSON (n=3 is a number, on=true a
boolean), otherwise kept as text (batch=S24). They are added to every grid item; naming a
parameter twice is an error.

Items are known by what they ask (task text, start URL, parameters, reuse key, schema), not
by their row in the grid: with --ledger, a rerun reuses every result already paid for, starts
only what is new and re-attaches what still runs. --duckdb TABLE and an --out directory land
each item's rows as it finishes (one transaction per item: a killed run leaves every landed
item whole, and rerunning completes the table); merge (the default --mode) keeps each item's
rows from its latest task, exactly once. NAME_tasks gets one row per billed task, so
SUM(cost_ai_usd) over it is what the table cost.

--out picks the format by extension: .parquet, .csv, .ndjson/.jsonl, .json (one array), or a
directory (a Parquet dataset, one file per item; --partition-by parameter columns to
hive-partition it). Files are written when the run ends; a run in which no item succeeded
writes no file.

Credentials come from INTUNED_API_KEY and INTUNED_WORKSPACE_ID (or --api-key and
--workspace-id; the environment keeps the key out of your shell history).
"""

DEMO_EPILOG = """\
examples:
  webtask-frames demo                 # writes ./webtask-demo/demo.duckdb and a Parquet dataset
  webtask-frames demo --out /tmp/wf   # somewhere else
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line error (argparse prints usage first)."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parse_param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise InvalidInputError(
            f"--param {text!r}: expected NAME=VALUE, e.g. --param batch=S24", field="--param"
        )
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


def _read_grid(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype_backend="pyarrow")
        if suffix == ".parquet":
            return pd.read_parquet(path, dtype_backend="pyarrow")
        if suffix in (".jsonl", ".ndjson"):
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict | list):
                return data
            raise InvalidInputError(
                f"--grid {str(path)!r}: expected a JSON list of objects or an object of lists",
                field="--grid",
            )
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"--grid {str(path)!r}: cannot read it ({exc}); pass a readable .csv, .json, "
            ".jsonl or .parquet file",
            field="--grid",
        ) from None
    raise InvalidInputError(
        f"--grid {str(path)!r}: unknown file type {suffix or '(none)'}; use .csv, .json, "
        ".jsonl or .parquet",
        field="--grid",
    )


def _with_constants(grid: Any, constants: dict[str, Any]) -> Any:
    if not constants:
        return grid
    if isinstance(grid, dict):
        return {**grid, **{k: [v] for k, v in constants.items()}}
    if isinstance(grid, list):
        return [{**item, **constants} for item in grid]
    for name, value in constants.items():
        grid[name] = [value] * len(grid)
    return grid


def _constants(params: list[str]) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for text in params:
        name, value = _parse_param(text)
        if name in constants:
            raise InvalidInputError(
                f"--param {name} is given twice ({constants[name]!r} and {value!r}); "
                "pass each parameter once (use --grid FILE to sweep several values)",
                field="--param",
            )
        constants[name] = value
    return constants


def _grid(args: argparse.Namespace) -> Any:
    constants = _constants(args.param)
    return _with_constants(_read_grid(Path(args.grid)), constants) if args.grid else [constants]


def _check_flags(args: argparse.Namespace) -> None:
    if args.duckdb and not args.table:
        raise InvalidInputError("--duckdb needs --table NAME", field="--table")
    if args.table and not args.duckdb:
        raise InvalidInputError("--table needs --duckdb FILE", field="--duckdb")
    if args.partition_by and not args.out:
        raise InvalidInputError("--partition-by needs --out DIR", field="--partition-by")


# The settings' messages name Python arguments; on the command line they are flags.
_CLI_WORDS = (
    (re.compile(r"\bapi_key=\.\.\."), "--api-key KEY"),
    (re.compile(r"\bworkspace_id=\.\.\."), "--workspace-id ID"),
    (re.compile(r"\bbase_url=\.\.\."), "--base-url URL"),
    (re.compile(r"\bbase_url\b"), "--base-url"),
)


def cli_wording(message: str) -> str:
    """A settings error's text with Python argument names replaced by the CLI's flags."""
    for pattern, flag in _CLI_WORDS:
        message = pattern.sub(flag, message)
    return message


def _sweep(args: argparse.Namespace, grid: Any) -> BatchResult:
    client = None
    if not args.dry_run:  # a missing key raises ConfigurationError here, before any request
        client = Client(
            api_key=args.api_key, workspace_id=args.workspace_id, base_url=args.base_url
        )
    try:
        return run_batch(
            args.task,
            grid,
            start_url=args.start_url,
            output_schema=args.schema,
            reuse_key=args.reuse_key,
            model=args.model,
            client=client,
            max_concurrency=args.max_concurrency,
            ledger=args.ledger,
            max_cost_usd=args.max_cost_usd,
            validate=args.validate,
            record_path=args.record_path,
            progress=not args.quiet,
            dry_run=args.dry_run,
            resubmit_ambiguous=args.resubmit_ambiguous,
            retry_failed=args.retry_failed,
            max_age=args.max_age,
            sink=_sinks(args),
        )
    finally:
        if client is not None:
            client.close()


def _streamed(args: argparse.Namespace) -> bool:
    """Whether ``--out`` is a dataset directory, landed item by item as items finish."""
    return bool(args.out) and out_format(args.out, bool(args.partition_by)) == "dataset"


def _sinks(args: argparse.Namespace) -> Any:
    """The streaming sinks of --duckdb and an --out directory (None, one, or a list)."""
    sinks: list[Any] = []
    if args.duckdb and not args.dry_run:
        sinks.append(DuckDBSink(args.duckdb, args.table, mode=args.mode))
    if _streamed(args) and not args.dry_run:
        sinks.append(ParquetSink(args.out, partition_by=args.partition_by or None))
    return sinks[0] if len(sinks) == 1 else (sinks or None)


def _land(args: argparse.Namespace, result: BatchResult) -> int:
    """Write the rows to the file targets (the streaming ones are already landed); on
    failure keep them in a rescue file (exit 1)."""
    try:
        if args.out and not _streamed(args):
            path = write_out(result, args.out, args.partition_by)
            _say(args, f"wrote {result.n_records} rows to {path}")
        elif args.out:
            _say(args, f"{result.n_records} rows landed in {args.out}")
        if args.duckdb:
            _say(args, f"{result.n_records} rows landed in {args.duckdb}:{args.table}")
    except Exception as exc:
        # The tasks are paid for: never lose their rows to a failed write.
        rescue = Path(f"webtask-frames-rescue-{time.strftime('%Y%m%d-%H%M%S')}.parquet")
        result.to_parquet(rescue)
        print(
            f"{PROG}: error: writing the results failed ({exc}); all {result.n_records} rows "
            f"were saved to {rescue}",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return EXIT_OK


def _rescue_unlanded(result: BatchResult) -> int:
    """A streaming sink failed: keep the paid rows it did not take in a rescue file."""
    rows = result.unlanded
    message = f"{PROG}: error: landing the rows failed ({result.stopped_message})"
    if len(rows):
        rescue = Path(f"webtask-frames-rescue-{time.strftime('%Y%m%d-%H%M%S')}.parquet")
        write_parquet(pa.Table.from_pandas(rows, preserve_index=False), rescue)
        message += f"; {len(rows)} rows that did not land were saved to {rescue}"
    print(message, file=sys.stderr)
    return EXIT_PARTIAL


def _cmd_run(args: argparse.Namespace) -> int:
    grid = _grid(args)
    _check_flags(args)
    _check_targets(args)  # before any money is spent, not after
    result = _sweep(args, grid)
    if args.dry_run:
        print(result.summary())
        return EXIT_OK
    if result.stopped_reason == "sink-error":
        return _rescue_unlanded(result)
    auth_stop = result.stopped_reason in _AUTH_STOPS
    succeeded = result.counts().get("succeeded", 0)
    # A run in which nothing succeeded writes nothing: no empty file that looks like data.
    if succeeded and _land(args, result) != EXIT_OK:
        return EXIT_PARTIAL
    if not args.out and not args.duckdb and not args.quiet and result.n_records:
        print(result.records.to_string(max_rows=20, max_colwidth=40))
    if succeeded or not auth_stop:
        # An auth stop is said once, by the error line below, not in the summary too.
        lines = result.summary().splitlines()
        _say(args, "\n".join(x for x in lines if not (auth_stop and x.startswith("STOPPED"))))
    if auth_stop:
        print(f"{PROG}: error: {result.stopped_message or result.stopped_reason}", file=sys.stderr)
        return EXIT_AUTH
    return EXIT_OK if result.ok else EXIT_PARTIAL


_AUTH_STOPS = ("unauthenticated", "no-ai-credits-left")


def _check_targets(args: argparse.Namespace) -> None:
    """Fail on unusable output targets before submitting anything."""
    if args.out:
        check_out(args.out, bool(args.partition_by))
    if args.duckdb:
        import duckdb

        try:  # catches a locked or corrupt database file now, not after paying
            duckdb.connect(args.duckdb).close()
        except duckdb.Error as exc:
            raise InvalidInputError(
                f"--duckdb {args.duckdb!r}: cannot open it ({exc})", field="--duckdb"
            ) from None


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .._demo import run_demo

    run_demo(Path(args.out), progress=not args.quiet)
    return EXIT_OK


def _cmd_sql(args: argparse.Namespace) -> int:
    from ._sql import run_sql

    return run_sql(args)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from ..sandbox._cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all commands (exposed for documentation and tests)."""
    from .._version import __version__

    parser = _Parser(
        prog=PROG,
        description="Intuned Web Tasks as typed data frames, Parquet and DuckDB.",
        epilog="Run `webtask-frames COMMAND --help` for examples. Exit codes: 0 ok, "
        "1 some items failed or skipped, 2 bad input, 3 authentication or credits.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run a task, or a sweep over a parameter grid, and land the rows",
        description="Run a web task (or one per grid item) and write the rows.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "task", help="the task, in plain English; may name parameters as {name} (sent too)"
    )
    run.add_argument("--start-url", metavar="URL", help="where the agent starts")
    run.add_argument(
        "--param", metavar="NAME=VALUE", action="append", default=[], help="a parameter"
    )
    run.add_argument("--grid", metavar="FILE", help="items to sweep: .csv, .json, .jsonl, .parquet")
    run.add_argument("--schema", metavar="FILE", help="outputSchema: a JSON Schema file")
    run.add_argument("--reuse-key", metavar="KEY", help="reuseKey, may be a format string")
    run.add_argument("--model", choices=MODELS, help="default: haiku")
    run.add_argument(
        "--out",
        metavar="FILE|DIR",
        help=f"write the rows; the format follows the extension: {SUPPORTED}",
    )
    run.add_argument(
        "--partition-by", metavar="COL", action="append", default=[], help="hive partition"
    )
    run.add_argument("--duckdb", metavar="FILE", help="write rows to this DuckDB database")
    run.add_argument("--table", metavar="NAME", help="DuckDB table (tasks go to NAME_tasks)")
    run.add_argument(
        "--mode",
        choices=("append", "replace", "merge"),
        default="merge",
        help="DuckDB write mode (default: merge, so reruns never duplicate rows)",
    )
    run.add_argument(
        "--record-path", metavar="PATH", help="dotted path to the records, e.g. data.items"
    )
    run.add_argument(
        "--ledger",
        metavar="FILE",
        help="crash-safe ledger across runs: a rerun (even of a grown grid) pays for new items",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --ledger: run again the items whose last attempt failed for good",
    )
    run.add_argument(
        "--max-age",
        metavar="AGE",
        help="with --ledger: run again the results older than AGE (90s, 30m, 12h, 7d, 2w)",
    )
    run.add_argument("--max-cost-usd", type=float, metavar="USD", help="stop submitting past it")
    run.add_argument(
        "--max-concurrency",
        type=int,
        metavar="N",
        help="tasks in flight (default 10, the workspace limit)",
    )
    run.add_argument(
        "--validate",
        choices=VALIDATE_MODES,
        default="flag",
        help="what to do with rows that break the schema (default: flag)",
    )
    run.add_argument(
        "--resubmit-ambiguous",
        action="store_true",
        help="resubmit items whose earlier submission's fate is unknown (may bill twice)",
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan; send nothing")
    run.add_argument("--base-url", metavar="URL", help="API base URL (default: INTUNED_BASE_URL)")
    run.add_argument(
        "--api-key", metavar="KEY", help="API key (default: INTUNED_API_KEY, which is safer)"
    )
    run.add_argument("--workspace-id", metavar="ID", help="default: INTUNED_WORKSPACE_ID")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    run.set_defaults(handler=_cmd_run)

    sandbox = commands.add_parser(
        "sandbox",
        help="serve the local sandbox API (no key, no credits)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from ..sandbox._cli import configure_parser

    configure_parser(sandbox)
    sandbox.set_defaults(handler=_cmd_sandbox)

    sql = commands.add_parser(
        "sql",
        help="run SQL on a DuckDB database and print the result",
        description="Run one SQL query on a DuckDB database (read-only) and print the result.",
        epilog=SQL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sql.add_argument("database", metavar="DATABASE", help="a DuckDB file, or :memory:")
    sql.add_argument("query", metavar="QUERY", help="the SQL to run")
    sql.add_argument(
        "--format", choices=SQL_FORMATS, default="table", help="output format (default: table)"
    )
    sql.add_argument("--write", action="store_true", help="open the database read-write")
    sql.set_defaults(handler=_cmd_sql)

    demo = commands.add_parser(
        "demo",
        help="run a realistic sweep against the sandbox and write DuckDB + Parquet",
        description="Start the sandbox on a free loopback port, run a sweep, write results.",
        epilog=DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", metavar="DIR", default="webtask-demo", help="output directory")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _not_a_stop(record: logging.LogRecord) -> bool:
    """Drop the library's "batch stopped" records: the command reports a stop itself, once
    (the summary's STOPPED line, or the final error line for a key or credits problem)."""
    return not str(record.msg).startswith("batch stopped")


def _configure_logging(quiet: bool) -> None:
    # Library warnings (a failed item, a retry storm) go to stderr prefixed with the program
    # name; --quiet keeps only the final one-line error that main() prints.
    logger = logging.getLogger("webtask_frames")
    if not any(getattr(h, "_webtask_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        handler.addFilter(_not_a_stop)
        handler._webtask_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.CRITICAL if quiet else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``webtask-frames`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(bool(getattr(args, "quiet", False)))
    try:
        code: int = args.handler(args)
    except AuthenticationError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except ConfigurationError as exc:
        print(f"{PROG}: error: {cli_wording(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidInputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WebTaskError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun with the same --ledger to resume", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
