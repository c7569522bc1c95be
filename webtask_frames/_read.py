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

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ._exceptions import InvalidInputError, SchemaValidationError, WaitTimeoutError
from ._materialize import Materialized, _materialize
from ._tables.compiled import coerce_output_schema
from ._tables.metadata import METADATA_KEY
from ._tables.unify import table_to_pandas
from ._tables.validate import check_mode
from ._wire.client import AsyncClient, Client
from ._wire.models import Canceled, Completed
from ._wire.portal import run_sync
from ._wire.protocol import build_start_body

__all__ = [
    "read_webtask",
    "read_webtask_arrow",
    "read_webtask_arrow_async",
    "read_webtask_async",
    "read_webtask_result",
    "read_webtask_result_async",
]


DTYPE_BACKENDS = ("pyarrow", "numpy_nullable")


def _check_args(
    *,
    client: Any,
    record_path: Any,
    validate: Any,
    dtype_backend: Any,
    timeout: Any,
    cache_dir: Any,
) -> None:
    check_mode(validate)
    if dtype_backend not in DTYPE_BACKENDS:
        raise InvalidInputError(
            f"dtype_backend: expected 'pyarrow' or 'numpy_nullable', got {dtype_backend!r}",
            field="dtype_backend",
        )
    if record_path is not None and (
        not isinstance(record_path, str) or not record_path.strip() or ".." in record_path
    ):
        raise InvalidInputError(
            f"record_path: expected a dotted path like 'data.items', got {record_path!r}",
            field="record_path",
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise InvalidInputError(
            f"timeout: expected a number of seconds > 0, got {timeout!r}", field="timeout"
        )
    if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
        raise InvalidInputError(
            f"cache_dir: expected a directory path, got {type(cache_dir).__name__}",
            field="cache_dir",
        )
    if client is not None and not isinstance(client, AsyncClient | Client):
        raise InvalidInputError(
            f"client: expected a webtask_frames Client or AsyncClient, got {type(client).__name__}",
            field="client",
        )


async def _read_arrow(
    task: Any,
    *,
    web_task_id: str | None = None,
    start_url: Any = None,
    parameters: Any = None,
    output_schema: Any = None,
    reuse_key: Any = None,
    model: Any = None,
    client: AsyncClient | Client | None,
    record_path: str | None,
    validate: str,
    timeout: float | None,
    cache_dir: Any,
) -> Materialized:
    """Start ``task`` (or, with ``web_task_id``, attach to an existing task), wait, and
    materialize its result. Everything is validated before any request."""
    if web_task_id is None:
        body = build_start_body(
            task,
            start_url=start_url,
            parameters=parameters,
            output_schema=output_schema,
            reuse_key=reuse_key,
            model=model,
        )
        schema, params = body.get("outputSchema"), body.get("parameters")
    else:
        schema = coerce_output_schema(output_schema)
        params = dict(parameters) if parameters is not None else None
    owned = client is None
    async_client = (
        AsyncClient()
        if client is None
        else (client.async_client if isinstance(client, Client) else client)
    )
    try:
        if web_task_id is None:
            web_task_id = await async_client.start_body(body)
            first_poll = async_client.poll.first_interval()  # a fresh task is never done yet
        else:
            first_poll = 0.0
        try:
            status = await async_client.wait(web_task_id, timeout=timeout, first_poll_s=first_poll)
        except WaitTimeoutError as exc:
            raise WaitTimeoutError(
                f"{exc.message}; or read it later with read_webtask_result({web_task_id!r})",
                web_task_id=web_task_id,
                last_status=exc.last_status,
            ) from None
        assert isinstance(status, Completed | Canceled)
        completed = status.raise_for_outcome()
        assert isinstance(completed, Completed)
        try:
            return await _materialize(
                async_client,
                completed,
                output_schema=schema,
                parameters=params,
                record_path=record_path,
                validate=validate,
                cache_dir=Path(cache_dir) if cache_dir is not None else None,
                extra_columns=None,
            )
        except SchemaValidationError as exc:
            # The task succeeded and was billed: say how to get the rows without paying again.
            exc.web_task_id = completed.web_task_id
            exc.message += (
                f". The task itself succeeded (and was billed): read its rows again for free "
                f"with read_webtask_result({completed.web_task_id!r}, validate='flag')"
            )
            exc.args = (exc.message,)
            raise
    finally:
        if owned:
            await async_client.aclose()


def _deliver(m: Materialized, dtype_backend: str | None) -> Any:
    """The public result: an Arrow table (``dtype_backend`` None) or a DataFrame."""
    if m.warning:
        warnings.warn(m.warning, UserWarning, stacklevel=3)
    return _with_metadata(m) if dtype_backend is None else _frame(m, dtype_backend)


def _with_metadata(m: Materialized) -> pa.Table:
    meta = dict(m.table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(m.summary, default=str).encode()
    return m.table.replace_schema_metadata(meta)


def _frame(m: Materialized, dtype_backend: str) -> pd.DataFrame:
    df = table_to_pandas(m.table, dtype_backend)
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
        timeout: seconds to wait for the task (WaitTimeoutError carries its id).
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
    _check_args(
        client=client,
        record_path=record_path,
        validate=validate,
        dtype_backend="pyarrow",
        timeout=timeout,
        cache_dir=cache_dir,
    )
    m = await _read_arrow(
        task,
        start_url=start_url,
        parameters=parameters,
        output_schema=output_schema,
        reuse_key=reuse_key,
        model=model,
        client=client,
        record_path=record_path,
        validate=validate,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    table: pa.Table = _deliver(m, None)
    return table


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
    _check_args(
        client=client,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    m = await _read_arrow(
        task,
        start_url=start_url,
        parameters=parameters,
        output_schema=output_schema,
        reuse_key=reuse_key,
        model=model,
        client=client,
        record_path=record_path,
        validate=validate,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    df: pd.DataFrame = _deliver(m, dtype_backend)
    return df


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
    _check_args(
        client=client,
        record_path=record_path,
        validate=validate,
        dtype_backend="pyarrow",
        timeout=timeout,
        cache_dir=cache_dir,
    )
    m = run_sync(
        _read_arrow(
            task,
            start_url=start_url,
            parameters=parameters,
            output_schema=output_schema,
            reuse_key=reuse_key,
            model=model,
            client=client,
            record_path=record_path,
            validate=validate,
            timeout=timeout,
            cache_dir=cache_dir,
        )
    )
    table: pa.Table = _deliver(m, None)
    return table


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
    _check_args(
        client=client,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    m = run_sync(
        _read_arrow(
            task,
            start_url=start_url,
            parameters=parameters,
            output_schema=output_schema,
            reuse_key=reuse_key,
            model=model,
            client=client,
            record_path=record_path,
            validate=validate,
            timeout=timeout,
            cache_dir=cache_dir,
        )
    )
    df: pd.DataFrame = _deliver(m, dtype_backend)
    return df


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
    _check_args(
        client=client,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    m = await _read_arrow(
        None,
        web_task_id=web_task_id,
        parameters=parameters,
        output_schema=output_schema,
        client=client,
        record_path=record_path,
        validate=validate,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    df: pd.DataFrame = _deliver(m, dtype_backend)
    return df


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
    _check_args(
        client=client,
        record_path=record_path,
        validate=validate,
        dtype_backend=dtype_backend,
        timeout=timeout,
        cache_dir=cache_dir,
    )
    m = run_sync(
        _read_arrow(
            None,
            web_task_id=web_task_id,
            parameters=parameters,
            output_schema=output_schema,
            client=client,
            record_path=record_path,
            validate=validate,
            timeout=timeout,
            cache_dir=cache_dir,
        )
    )
    df: pd.DataFrame = _deliver(m, dtype_backend)
    return df


for _fn in (
    read_webtask,
    read_webtask_async,
    read_webtask_arrow,
    read_webtask_arrow_async,
    read_webtask_result,
    read_webtask_result_async,
):
    _fn.__doc__ = (_fn.__doc__ or "") + _DOC_ARGS
