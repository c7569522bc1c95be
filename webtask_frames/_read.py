"""``read_webtask``: one call from a task to a typed, validated DataFrame.

Built on ``materialize`` (one completed status -> one Arrow table), which the batch
runner also uses per item.

Columns, in order: the record's fields (those the outputSchema declares, typed, even
when absent from the data; else inferred), broadcast siblings of a wrapper array, one
column per parameter, ``extra_columns``, ``_webtask_id``, and for ``validate="flag"``
``_valid`` / ``_errors``. A parameter whose name is already a record column is not
added: the record's value is kept and never duplicated. ``extra_columns`` and
``_webtask_id`` replace a record field of the same name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from ._exceptions import WaitTimeoutError, WebTaskError
from ._materialize import Materialized, _materialize, unreadable
from ._options import ReadOptions, resolve_client
from ._tables.metadata import METADATA_KEY
from ._tables.unify import table_to_pandas
from ._wire.client import NOT_FOUND_GRACE_S, AsyncClient
from ._wire.deadline import Deadline
from ._wire.models import Canceled, Completed
from ._wire.portal import run_sync
from ._wire.protocol import build_start_body
from ._wire.sync import Client

__all__ = [
    "read_webtask",
    "read_webtask_arrow",
    "read_webtask_arrow_async",
    "read_webtask_async",
    "read_webtask_result",
    "read_webtask_result_async",
]


logger = logging.getLogger("webtask_frames")


async def _read(
    opts: ReadOptions,
    client: Any,
    task: Any,
    *,
    web_task_id: str | None = None,
    parameters: Any = None,
    start_url: Any = None,
    reuse_key: Any = None,
    model: Any = None,
    started: list[str] | None = None,
) -> Materialized:
    """Start ``task`` (or, with ``web_task_id``, attach to an existing task), wait, and
    materialize its result. Everything is validated before any request.

    ``opts.timeout`` is a total deadline: start, every poll and the download end by it.
    Once a task exists every failure is a ``WebTaskError`` carrying its id (and the cost
    when known) that says how to read the result again without paying; its id is also
    appended to ``started`` so a sync caller interrupted by Ctrl-C can print it."""
    if web_task_id is None:
        body: dict[str, Any] | None = build_start_body(
            task,
            start_url=start_url,
            parameters=parameters,
            output_schema=opts.schema,
            reuse_key=reuse_key,
            model=model,
        )
        params = body.get("parameters") if body is not None else None
    else:
        body, params = None, dict(parameters) if parameters is not None else None
    async_client, owned = resolve_client(client)
    started = started if started is not None else []
    try:
        deadline = Deadline.after(async_client.clock, opts.timeout)
        if web_task_id is None:
            assert body is not None
            web_task_id = await async_client.start_body(body, timeout=deadline.remaining())
        started.append(web_task_id)
        return await _after_start(opts, async_client, web_task_id, params, deadline, body)
    except asyncio.CancelledError:
        if started:
            logger.warning(_interrupted(started[-1]))
        raise
    finally:
        if owned:
            await async_client.aclose()


def _interrupted(web_task_id: str) -> str:
    return (
        f"interrupted: web task {web_task_id} keeps running (and is billed); read its "
        f"result later without paying again with read_webtask_result({web_task_id!r})"
    )


async def _after_start(
    opts: ReadOptions,
    client: AsyncClient,
    web_task_id: str,
    params: Any,
    deadline: Deadline,
    body: dict[str, Any] | None,
) -> Materialized:
    """Wait for ``web_task_id`` and read its result, all by ``deadline``."""
    completed = await _wait(client, web_task_id, deadline, fresh=body is not None)
    try:
        return await _materialize(
            client,
            completed,
            schema=opts.schema,
            parameters=params,
            record_path=opts.record_path,
            validate=opts.validate,
            cache_dir=opts.cache_dir,
            extra_columns=None,
            timeout=deadline.remaining(),
        )
    except Exception as exc:
        # The task succeeded and was billed: say how to get the rows without paying again.
        error = unreadable(exc, completed)
        if error is exc:
            raise
        raise error from exc


async def _wait(
    client: AsyncClient, web_task_id: str, deadline: Deadline, *, fresh: bool
) -> Completed:
    """Wait for a successful completion of ``web_task_id`` by ``deadline``; a fresh task
    is never done yet (the first poll waits) and may not be visible for a moment."""
    hint = f"; read its result later with read_webtask_result({web_task_id!r})"
    try:
        status = await client.wait(
            web_task_id,
            timeout=deadline.remaining(),
            first_poll_s=client.poll.first_interval() if fresh else 0.0,
            not_found_grace_s=NOT_FOUND_GRACE_S if fresh else 0.0,
        )
    except WaitTimeoutError as exc:
        raise WaitTimeoutError(
            f"{exc.message}{hint}", web_task_id=web_task_id, last_status=exc.last_status
        ) from None
    except WebTaskError as exc:
        if exc.web_task_id is None:
            exc.web_task_id = web_task_id
        exc.message += hint
        exc.args = (exc.message,)
        raise
    assert isinstance(status, Completed | Canceled)
    completed = status.raise_for_outcome()
    assert isinstance(completed, Completed)
    return completed


def _run(coro: Any, started: list[str]) -> Materialized:
    """Run a ``_read`` coroutine from sync code; on Ctrl-C, say which task keeps running."""
    try:
        result: Materialized = run_sync(coro)
    except KeyboardInterrupt as exc:
        if started:
            note = _interrupted(started[-1])
            exc.add_note(note)
            print(note, file=sys.stderr)
        raise
    return result


def _warn(m: Materialized) -> None:
    if m.warning:
        # stacklevel 4: warnings.warn <- _warn <- _table/_frame <- the public function's caller
        warnings.warn(m.warning, UserWarning, stacklevel=4)


def _table(m: Materialized) -> pa.Table:
    """The public Arrow result: the summary goes in the schema metadata."""
    _warn(m)
    meta = dict(m.table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(m.summary, default=str).encode()
    return m.table.replace_schema_metadata(meta)


def _frame(m: Materialized, opts: ReadOptions) -> pd.DataFrame:
    """The public DataFrame result: the summary goes in ``df.attrs["webtask"]``."""
    _warn(m)
    df = table_to_pandas(m.table, opts.dtype_backend)
    df.attrs["webtask"] = m.summary
    return df


_DOC_ARGS = """
    Arguments:
        task, start_url, parameters, reuse_key, model: as ``AsyncClient.start``.
        output_schema: JSON Schema dict, path of a JSON file, or pydantic model class.
        client: a ``Client`` or ``AsyncClient`` to use (not closed); None makes one from
            the environment and closes it afterwards.
        record_path: dotted path to the records inside the result (``"data.items"``).
        validate: ``"raise"`` | ``"warn"`` | ``"flag"`` | ``"drop"`` | ``"off"``.
        dtype_backend: ``"pyarrow"`` (ArrowDtype columns) or ``"numpy_nullable"``.
        timeout: total deadline in seconds for the whole call: the start, every poll and
            the file download, each request's connect, headers and body included
            (default: the client's ``wait_timeout_s`` for the wait). WaitTimeoutError
            carries the task's id.
        cache_dir: keep raw file results as ``{cache_dir}/{webTaskId}{ext}`` and reuse them.
"""


async def read_webtask_arrow_async(
    task: str,
    *,
    start_url: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    output_schema: Any = None,
    reuse_key: str | None = None,
    model: str | None = None,
    client: AsyncClient | Client | None = None,
    record_path: str | None = None,
    validate: str = "raise",
    timeout: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pa.Table:
    """Async ``read_webtask_arrow``."""
    opts = ReadOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    return _table(
        await _read(
            opts,
            client,
            task,
            parameters=parameters,
            start_url=start_url,
            reuse_key=reuse_key,
            model=model,
        )
    )


async def read_webtask_async(
    task: str,
    *,
    start_url: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    output_schema: Any = None,
    reuse_key: str | None = None,
    model: str | None = None,
    client: AsyncClient | Client | None = None,
    record_path: str | None = None,
    validate: str = "raise",
    dtype_backend: str = "pyarrow",
    timeout: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Async ``read_webtask``."""
    opts = ReadOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    return _frame(
        await _read(
            opts,
            client,
            task,
            parameters=parameters,
            start_url=start_url,
            reuse_key=reuse_key,
            model=model,
        ),
        opts,
    )


def read_webtask_arrow(
    task: str,
    *,
    start_url: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    output_schema: Any = None,
    reuse_key: str | None = None,
    model: str | None = None,
    client: AsyncClient | Client | None = None,
    record_path: str | None = None,
    validate: str = "raise",
    timeout: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pa.Table:
    """Run a web task and return its result as a ``pyarrow.Table``; the summary (id,
    cost, reuse, timings, counts) is in the schema metadata under ``b"webtask"`` (the one
    key webtask-frames uses for its metadata, also in Parquet files it writes).

    Example:
        >>> table = read_webtask_arrow("List YC companies", output_schema=schema)
        ... # doctest: +SKIP
    """
    opts = ReadOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    started: list[str] = []
    return _table(
        _run(
            _read(
                opts,
                client,
                task,
                parameters=parameters,
                start_url=start_url,
                reuse_key=reuse_key,
                model=model,
                started=started,
            ),
            started,
        )
    )


def read_webtask(
    task: str,
    *,
    start_url: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    output_schema: Any = None,
    reuse_key: str | None = None,
    model: str | None = None,
    client: AsyncClient | Client | None = None,
    record_path: str | None = None,
    validate: str = "raise",
    dtype_backend: str = "pyarrow",
    timeout: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Run a web task and return its result as a typed, validated DataFrame.

    ``df.attrs["webtask"]`` holds the id, status, outcome, cost, reuse block, timings,
    ``n_records``/``n_invalid`` and the first validation errors (never a signed URL).

    Example:
        >>> df = read_webtask("List YC companies", parameters={"batch": "S24"},
        ...                   output_schema=Company, reuse_key="yc")  # doctest: +SKIP
    """
    opts = ReadOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    started: list[str] = []
    return _frame(
        _run(
            _read(
                opts,
                client,
                task,
                parameters=parameters,
                start_url=start_url,
                reuse_key=reuse_key,
                model=model,
                started=started,
            ),
            started,
        ),
        opts,
    )


async def read_webtask_result_async(
    web_task_id: str,
    *,
    output_schema: Any = None,
    parameters: Mapping[str, Any] | None = None,
    client: AsyncClient | Client | None = None,
    record_path: str | None = None,
    validate: str = "raise",
    dtype_backend: str = "pyarrow",
    timeout: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Async ``read_webtask_result``."""
    opts = ReadOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    return _frame(
        await _read(opts, client, None, web_task_id=web_task_id, parameters=parameters), opts
    )


def read_webtask_result(
    web_task_id: str,
    *,
    output_schema: Any = None,
    parameters: Mapping[str, Any] | None = None,
    client: AsyncClient | Client | None = None,
    record_path: str | None = None,
    validate: str = "raise",
    dtype_backend: str = "pyarrow",
    timeout: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """The DataFrame of an existing task, by id: waits if it still runs; starts nothing.

    For a task whose ``read_webtask`` call timed out, was interrupted or raised on
    validation: its result is read again without paying for a new run. ``parameters``
    (optional) become columns as in ``read_webtask``.

    Example:
        >>> df = read_webtask_result("wt_123", output_schema=schema, validate="flag")
        ... # doctest: +SKIP
    """
    opts = ReadOptions.build(
        client=client,
        output_schema=output_schema,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    started: list[str] = []
    coro = _read(
        opts, client, None, web_task_id=web_task_id, parameters=parameters, started=started
    )
    return _frame(_run(coro, started), opts)


for _fn in (
    read_webtask,
    read_webtask_async,
    read_webtask_arrow,
    read_webtask_arrow_async,
    read_webtask_result,
    read_webtask_result_async,
):
    _fn.__doc__ = (_fn.__doc__ or "") + _DOC_ARGS
