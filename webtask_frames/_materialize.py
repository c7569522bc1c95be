"""``materialize``: one completed task's result to one Arrow table.

Download (or reuse the cached) file result, read it (``_readers``), validate per mode,
add the parameter / extra / ``_webtask_id`` columns. ``read_webtask`` and the batch
runner both build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import pyarrow as pa

from ._exceptions import InvalidInputError, ResultReadError, SchemaValidationError, WebTaskError
from ._redact import scrub_text
from ._tables.compiled import SchemaPlan, schema_plan
from ._tables.growing import OVERLAP, Growing, watching
from ._tables.readers import ReadResult, extension_for, read_data, read_file
from ._tables.records import add_constant_columns
from ._tables.schema import Layout
from ._tables.validate import Collector, check_mode
from ._wire.client import AsyncClient
from ._wire.models import Canceled, Completed, FileResult, InlineResult, TaskStatus, status_summary

__all__ = ["WEBTASK_ID_COLUMN", "Materialized", "materialize"]

WEBTASK_ID_COLUMN = "_webtask_id"


@dataclass
class Materialized:
    """One completed task's result as an Arrow table (see the module docstring).

    ``n_records`` counts rows before ``drop``; ``errors`` holds the first
    ``(row, json_path, message)`` validation errors; ``raw_path`` is the cached raw file
    (``cache_dir``), None for inline results or without a cache.
    """

    table: pa.Table
    n_records: int
    n_invalid: int
    errors: list[tuple[int, str, str]]
    raw_path: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    warning: str | None = field(default=None, repr=False)


def _jsonish(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _jsonish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonish(v) for v in value]
    return value


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


Reader = Callable[[Path], ReadResult]


async def _read_file_result(
    client: AsyncClient,
    file: FileResult,
    web_task_id: str,
    read: Reader,
    collector: Collector,
    cache_dir: Path | None,
    timeout: float | None = None,
) -> tuple[ReadResult, Path | None]:
    """``read`` of the file result, downloaded into ``cache_dir`` (or taken from it) or
    into a temporary folder deleted after the read; and the cached file, if any."""
    name = _SAFE_NAME.sub("_", web_task_id) + extension_for(file.content_type)
    if cache_dir is not None:
        target = Path(cache_dir) / name
        if target.is_file() and (file.size_bytes < 0 or target.stat().st_size == file.size_bytes):
            return await asyncio.to_thread(read, target), target
        read_ = await _download_and_read(client, file, target, read, collector, timeout, True)
        return read_, target
    # ``TemporaryDirectory``: its own hook deletes the folder at exit should this read
    # never reach ``finally`` (a loop stopped under it at interpreter exit)
    tmp = tempfile.TemporaryDirectory(prefix="webtask-frames-", ignore_cleanup_errors=True)
    try:
        # read once, then deleted: an fsync would hold the end of the read until the
        # whole file reached the disk, and buys nothing here
        target = Path(tmp.name) / name
        read_ = await _download_and_read(client, file, target, read, collector, timeout, False)
        return read_, None
    finally:
        _discard(tmp)


def _discard(folder: tempfile.TemporaryDirectory[str]) -> None:
    """Delete ``folder`` (a read's temporary download) on a thread of its own. Freeing a
    large file's blocks takes a while (40-50 ms for 150 MB on an ext4 disk here), which
    neither the loop (other downloads go on there) nor the caller (its rows are ready)
    should wait for. Not a daemon: the interpreter waits for it at exit. Once the program
    is exiting (the loop stopped under a read), no thread would be waited for, or could
    start: it is deleted here."""
    if not threading.main_thread().is_alive():
        folder.cleanup()
        return
    try:
        threading.Thread(target=folder.cleanup, name="webtask-frames-discard").start()
    except RuntimeError:  # "can't create new thread at interpreter shutdown"
        folder.cleanup()


async def _download_and_read(
    client: AsyncClient,
    file: FileResult,
    target: Path,
    read: Reader,
    collector: Collector,
    timeout: float | None,
    durable: bool,
) -> ReadResult:
    """Download ``file`` to ``target`` and ``read`` it, the read following the download
    as its bytes land (``growing``). The read is the result only if it followed the
    attempt that delivered the file; one that followed an abandoned attempt starts over
    on the finished file. A failed download is the error, whatever the read did."""
    if not OVERLAP:
        await client._download_file(file, target, timeout=timeout, durable=durable)
        return await asyncio.to_thread(read, target)
    with watching(Growing(target)) as growing:
        reading = _in_thread(read, growing.path)
        try:
            await client._download_file(file, target, timeout=timeout, durable=durable, tap=growing)
        except BaseException:
            growing.abandon()  # the read stops at its next wait: it is not the result
            await _settled(reading)
            raise
        await _settled(reading)
        if growing.delivered:  # it read the file as delivered: its rows, or its error
            return reading.result()
    # It followed an attempt that failed (its rows, its error or Abandoned are those
    # bytes'): the verdicts go, and the finished file is read from scratch.
    collector.reset()
    return await asyncio.to_thread(read, target)


# Reads parsing at once, as many as the loop's default executor would run: a batch
# downloading many files does not parse them all together (memory, and cores).
_READS = threading.BoundedSemaphore(min(32, (os.cpu_count() or 1) + 4))


def _in_thread(read: Reader, path: Path) -> asyncio.Future[ReadResult]:
    """``read(path)`` on a thread of its own. Not the loop's executor: a read waiting
    for its bytes would hold one of its few threads, and with as many reads as threads
    no download could resolve a host name (``getaddrinfo`` runs there) to send them.
    At most ``_READS`` run; the others wait for a turn, their downloads going on."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ReadResult] = loop.create_future()

    def settle(value: ReadResult | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(ReadResult, value))

    def run() -> None:
        value, error = None, None
        try:
            with _READS:
                value = read(path)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name="webtask-frames-read", daemon=True).start()
    return future


async def _settled(task: asyncio.Future[ReadResult]) -> None:
    """Wait for ``task`` to end, its error retrieved (the caller decides what counts)."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


def unreadable(exc: Exception, status: Completed) -> WebTaskError:
    """``exc``, raised while reading the result of the billed task ``status``, as a
    ``WebTaskError`` that carries the id, the cost and how to read the result again."""
    web_task_id = status.web_task_id
    again = (
        f"; the task ran (and was billed): read its result again without paying with "
        f"read_webtask_result({web_task_id!r}, ...)"
    )
    if isinstance(exc, SchemaValidationError):
        again = (
            f". The task itself succeeded (and was billed): read its rows again for free "
            f"with read_webtask_result({web_task_id!r}, validate='flag')"
        )
    if isinstance(exc, WebTaskError) and not isinstance(exc, InvalidInputError):
        if exc.web_task_id is None:
            exc.web_task_id = web_task_id
        if "read_webtask_result" not in exc.message:
            exc.message += again
            exc.args = (exc.message,)
        return exc
    if isinstance(exc, RecursionError):
        why = "the result is nested too deeply to read"
    elif isinstance(exc, InvalidInputError):
        why = exc.message
    else:
        why = f"{type(exc).__name__}: {scrub_text(str(exc))[:500]}"
    return ResultReadError(
        f"the result of web task {web_task_id} could not be read ({why}){again}",
        web_task_id=web_task_id,
        cost_usd=status.cost.ai_usd,
        cause=type(exc).__name__,
    )


def _validation_message(
    web_task_id: str, n_invalid: int, n_records: int, errors: list[tuple[int, str, str]]
) -> str:
    shown = "; ".join(f"row {r} at {p}: {m}" for r, p, m in errors[:5])
    return (
        f"{n_invalid} of {n_records} records of web task {web_task_id} do not match the "
        f"outputSchema; first errors: {shown}. Pass validate='flag' to inspect them, "
        "'drop' to skip them or 'off' to keep them unchecked"
    )


def _check_completed(status: TaskStatus) -> Completed:
    if isinstance(status, Canceled):
        status.raise_for_outcome()
    if not isinstance(status, Completed):
        raise InvalidInputError(
            f"status: web task {status.web_task_id} is still {status.status}; wait for it "
            "to complete first (client.wait)",
            field="status",
            web_task_id=status.web_task_id,
        )
    status.raise_for_outcome()
    return status


async def _read_result(
    client: AsyncClient,
    status: Completed,
    *,
    layout: Layout | None,
    collector: Collector,
    record_path: str | None,
    cache_dir: Path | None,
    timeout: float | None = None,
) -> tuple[ReadResult, Path | None]:
    """The result's records as a table (file results downloaded or taken from the cache),
    and the cached raw file if any."""
    result = status.result
    if result is None:  # a success without a result: no rows, but the schema's columns
        read = read_data([], layout=layout, collector=collector)
        return read, None
    if not isinstance(result, FileResult):
        data = result.data if isinstance(result, InlineResult) else None
        read = read_data(data, layout=layout, collector=collector, record_path=record_path)
        return read, None
    reader = partial(
        read_file,
        content_type=result.content_type,
        layout=layout,
        collector=collector,
        record_path=record_path,
    )
    return await _read_file_result(
        client, result, status.web_task_id, reader, collector, cache_dir, timeout
    )


def _with_columns(
    table: pa.Table,
    web_task_id: str,
    parameters: Mapping[str, Any] | None,
    extra_columns: Mapping[str, Any] | None,
) -> pa.Table:
    if parameters:
        table = add_constant_columns(
            table, {k: v for k, v in parameters.items() if k != "_sandbox"}
        )
    if extra_columns:
        table = add_constant_columns(table, dict(extra_columns), override=True)
    return add_constant_columns(table, {WEBTASK_ID_COLUMN: web_task_id}, override=True)


def _apply_mode(
    table: pa.Table, mode: str, collector: Collector, web_task_id: str, n_records: int
) -> tuple[pa.Table, str | None]:
    """Act on the invalid rows per ``mode``: raise, warn (the message), flag or drop."""
    n_invalid = collector.n_invalid
    if n_invalid and mode in ("raise", "warn"):
        message = _validation_message(web_task_id, n_invalid, n_records, collector.errors)
        if mode == "warn":
            return table, message
        raise SchemaValidationError(
            message,
            errors=list(collector.errors),
            n_invalid=n_invalid,
            web_task_id=web_task_id,
        )
    mask = collector.mask()
    if mode == "flag":
        messages = [collector.messages.get(i) for i in range(table.num_rows)]
        valid = mask if len(mask) == table.num_rows else [True] * table.num_rows
        table = table.append_column("_valid", pa.array(valid, pa.bool_()))
        table = table.append_column("_errors", pa.array(messages, pa.string()))
    elif mode == "drop" and n_invalid:
        table = table.filter(pa.array(mask, pa.bool_()))
    return table, None


async def _materialize(
    client: AsyncClient,
    status: TaskStatus,
    *,
    schema: SchemaPlan | None,
    parameters: Mapping[str, Any] | None,
    record_path: str | None,
    validate: str,
    cache_dir: Path | None,
    extra_columns: Mapping[str, Any] | None,
    timeout: float | None = None,
) -> Materialized:
    """``materialize`` with a checked ``SchemaPlan``: its layout and its validator (compiled
    once per plan) serve every result read with it. ``timeout`` bounds a file download.

    The task ran and was billed: anything that goes wrong reading its result is a
    ``WebTaskError`` carrying the id (``ResultReadError`` for what is not one already)."""
    mode = check_mode(validate)
    completed = _check_completed(status)
    layout = schema.layout if schema is not None else None
    validator = schema.validator if schema is not None and mode != "off" else None
    collector = Collector(validator, keep_messages=mode == "flag")
    try:
        read, raw_path = await _read_result(
            client,
            completed,
            layout=layout,
            collector=collector,
            record_path=record_path,
            cache_dir=cache_dir,
            timeout=timeout,
        )
        table = _with_columns(read.table, completed.web_task_id, parameters, extra_columns)
    except Exception as exc:
        error = unreadable(exc, completed)
        if isinstance(exc, RecursionError):  # its traceback is as deep as the data
            raise error from None
        raise error from exc
    table, warning = _apply_mode(table, mode, collector, completed.web_task_id, read.n_records)
    if completed.result is None:
        warning = (
            f"web task {completed.web_task_id} completed as a success but sent no result; "
            "the table is empty"
        )
    summary = {k: v for k, v in _jsonish(status_summary(completed)).items() if k != "raw"}
    summary.update(
        n_records=read.n_records,
        n_invalid=collector.n_invalid,
        n_rows=table.num_rows,
        validate=mode,
        result_format=read.format,
        errors=[list(e) for e in collector.errors],
    )
    return Materialized(
        table=table,
        n_records=read.n_records,
        n_invalid=collector.n_invalid,
        errors=list(collector.errors),
        raw_path=raw_path,
        summary=summary,
        warning=warning,
    )


async def materialize(
    client: AsyncClient,
    status: Completed,
    *,
    output_schema: dict[str, Any] | SchemaPlan | None,
    parameters: Mapping[str, Any] | None = None,
    record_path: str | None = None,
    validate: str = "raise",
    cache_dir: Path | None = None,
    extra_columns: Mapping[str, Any] | None = None,
) -> Materialized:
    """Turn one completed status into an Arrow table: download (or reuse the cached)
    file result, read, validate per ``validate``, add parameter/extra/id columns.

    A failed or canceled task raises ``TaskFailedError`` / ``TaskCanceledError``;
    ``validate="raise"`` raises ``SchemaValidationError``; ``"warn"`` emits a
    ``UserWarning``. Pass a ``SchemaPlan`` as ``output_schema`` when materializing many
    results with one schema: it is then checked and compiled once.

    Example:
        >>> m = await materialize(client, status, output_schema=schema)  # doctest: +SKIP
        >>> m.table.num_rows, m.n_invalid                                # doctest: +SKIP
    """
    out = await _materialize(
        client,
        status,
        schema=schema_plan(output_schema),
        parameters=parameters,
        record_path=record_path,
        validate=validate,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        extra_columns=extra_columns,
    )
    if out.warning:
        warnings.warn(out.warning, UserWarning, stacklevel=2)
    return out
