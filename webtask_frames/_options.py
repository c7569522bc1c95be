"""The options of every entry point, checked once, in one place.

``read_webtask*``, ``run_batch*`` and the CLI all build their options here, so they
refuse the same bad values with the same one-line ``InvalidInputError`` (naming the field
and the fix) before any request, and the CLI's ``choices=`` are the very tuples checked.
``resolve_client`` is the one way an entry point gets its ``AsyncClient``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._exceptions import InvalidInputError
from ._sinks.base import check_sink
from ._tables.compiled import SchemaPlan, schema_plan
from ._tables.validate import MODES, check_mode
from ._wire.client import AsyncClient
from ._wire.policies import RetryPolicy
from ._wire.protocol import MODELS
from ._wire.sync import Client

__all__ = [
    "DTYPE_BACKENDS",
    "MODELS",
    "VALIDATE_MODES",
    "BatchOptions",
    "ReadOptions",
    "check_client",
    "parse_max_age",
    "resolve_client",
    "sink_list",
]

VALIDATE_MODES: tuple[str, ...] = MODES
DTYPE_BACKENDS: tuple[str, ...] = ("pyarrow", "numpy_nullable")


def _check_dtype_backend(dtype_backend: Any) -> str:
    if dtype_backend not in DTYPE_BACKENDS:
        raise InvalidInputError(
            f"dtype_backend: expected 'pyarrow' or 'numpy_nullable', got {dtype_backend!r}",
            field="dtype_backend",
        )
    return str(dtype_backend)


def _check_record_path(record_path: Any) -> str | None:
    if record_path is not None and (
        not isinstance(record_path, str) or not record_path.strip() or ".." in record_path
    ):
        raise InvalidInputError(
            f"record_path: expected a dotted path like 'data.items', got {record_path!r}",
            field="record_path",
        )
    return record_path


def _check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidInputError(
            f"timeout: expected a number of seconds > 0, got {timeout!r}", field="timeout"
        )
    return float(timeout)


def _check_path(value: Any, field_name: str, what: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise InvalidInputError(
            f"{field_name}: expected {what}, got {type(value).__name__}", field=field_name
        )
    return Path(value)


def check_client(client: Any) -> None:
    """``InvalidInputError`` naming ``client`` unless it is None, a Client or an AsyncClient."""
    if client is not None and not isinstance(client, AsyncClient | Client):
        raise InvalidInputError(
            f"client: expected a webtask_frames Client or AsyncClient, got {type(client).__name__}",
            field="client",
        )


def resolve_client(client: Any, retry: RetryPolicy | None = None) -> tuple[AsyncClient, bool]:
    """The ``AsyncClient`` to use and whether the caller owns it (and must close it).

    None makes one from the environment (with ``retry`` if given); a ``Client`` lends its
    async client; an ``AsyncClient`` is used as is. Neither of those is closed by us.

    Example:
        >>> http, owned = resolve_client(my_client)  # doctest: +SKIP
    """
    check_client(client)
    if client is None:
        return (AsyncClient(retry=retry) if retry is not None else AsyncClient()), True
    if isinstance(client, Client):
        return client.async_client, False
    assert isinstance(client, AsyncClient)
    return client, False


@dataclass(frozen=True)
class ReadOptions:
    """How one task's result becomes rows: shared by ``read_webtask*`` and ``run_batch``.

    Example:
        >>> opts = ReadOptions.build(record_path="data.items", validate="flag")
        >>> opts.record_path, opts.schema is None
        ('data.items', True)
    """

    schema: SchemaPlan | None
    record_path: str | None
    validate: str
    dtype_backend: str
    timeout: float | None
    cache_dir: Path | None

    @classmethod
    def build(
        cls,
        *,
        client: Any = None,
        output_schema: Any = None,
        record_path: Any = None,
        validate: Any = "raise",
        dtype_backend: Any = "pyarrow",
        timeout: Any = None,
        cache_dir: Any = None,
    ) -> ReadOptions:
        """Check every option (``InvalidInputError`` naming the first bad one) and compile
        the outputSchema once."""
        validate = check_mode(validate)
        dtype_backend = _check_dtype_backend(dtype_backend)
        record_path = _check_record_path(record_path)
        timeout = _check_timeout(timeout)
        cache_path = _check_path(cache_dir, "cache_dir", "a directory path")
        check_client(client)
        return cls(
            schema=schema_plan(output_schema),
            record_path=record_path,
            validate=validate,
            dtype_backend=dtype_backend,
            timeout=timeout,
            cache_dir=cache_path,
        )


def _check_max_concurrency(value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InvalidInputError(
            f"max_concurrency: expected an int >= 1, got {value!r}", field="max_concurrency"
        )
    return value


def _check_max_cost(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidInputError(
            f"max_cost_usd: expected a number of dollars >= 0, got {value!r}",
            field="max_cost_usd",
        )
    return float(value)


_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_max_age(value: Any) -> float | None:
    """``max_age`` in seconds: a number of seconds, a ``timedelta``, or a string such as
    ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` (a bare number is seconds).

    Example:
        >>> parse_max_age("12h"), parse_max_age(60), parse_max_age(None)
        (43200.0, 60.0, None)
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (match := _AGE.match(value)):
        seconds = float(match.group(1)) * _AGE_UNITS[match.group(2) or "s"]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidInputError(
            f"max_age: expected seconds, a timedelta or a duration like '12h' or '7d', got "
            f"{value!r}",
            field="max_age",
        )
    if not seconds >= 0 or math.isinf(seconds):
        raise InvalidInputError(
            f"max_age: expected a finite age >= 0 (0 refreshes every result), got {value}",
            field="max_age",
        )
    return seconds


def _check_flag(value: Any, field_name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(
            f"{field_name}: expected True or False, got {value!r}", field=field_name
        )
    return value


def sink_list(sink: Any) -> list[Any]:
    """``sink=`` as a list: None, one sink, or a list or tuple of them."""
    if sink is None:
        return []
    if isinstance(sink, list | tuple):
        if not sink:
            raise InvalidInputError(
                "sink: an empty list lands nothing; pass a sink, a list of sinks, or None",
                field="sink",
            )
        return list(sink)
    return [sink]


def _check_retry(retry: Any) -> RetryPolicy | None:
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidInputError(
            f"retry: expected a RetryPolicy, got {type(retry).__name__}", field="retry"
        )
    return retry


@dataclass(frozen=True)
class BatchOptions:
    """The options of one ``run_batch`` call: per-item reading (``read``) plus the sweep's.

    ``cache_dir`` (in ``read``) defaults to ``<ledger>.cache`` beside a ledger, so a
    resumed sweep re-reads finished results without downloading them again.

    Example:
        >>> opts = BatchOptions.build(max_concurrency=4, ledger="sweep.db")
        >>> opts.max_concurrency, str(opts.read.cache_dir)
        (4, 'sweep.db.cache')
    """

    read: ReadOptions
    max_concurrency: int | None
    max_cost_usd: float | None
    retry: RetryPolicy | None
    progress: bool
    resubmit_ambiguous: bool
    dry_run: bool
    ledger: Path | None
    retry_failed: bool = False
    max_age_s: float | None = None
    sink: tuple[Any, ...] | None = None

    @classmethod
    def build(
        cls,
        *,
        client: Any = None,
        output_schema: Any = None,
        record_path: Any = None,
        validate: Any = "flag",
        cache_dir: Any = None,
        max_concurrency: Any = None,
        max_cost_usd: Any = None,
        retry: Any = None,
        progress: Any = True,
        resubmit_ambiguous: Any = False,
        dry_run: Any = False,
        ledger: Any = None,
        retry_failed: Any = False,
        max_age: Any = None,
        sink: Any = None,
    ) -> BatchOptions:
        """Check every option the way ``ReadOptions.build`` does, then the sweep's own."""
        read = ReadOptions.build(
            client=client,
            output_schema=output_schema,
            record_path=record_path,
            validate=validate,
            cache_dir=cache_dir,
        )
        max_concurrency = _check_max_concurrency(max_concurrency)
        max_cost_usd = _check_max_cost(max_cost_usd)
        retry = _check_retry(retry)
        ledger_path = _check_path(ledger, "ledger", "a file path")
        retry_failed = _check_flag(retry_failed, "retry_failed")
        max_age_s = parse_max_age(max_age)
        sinks = sink_list(sink)
        for one in sinks:
            check_sink(one)
        if (retry_failed or max_age_s is not None) and ledger_path is None:
            field_name = "retry_failed" if retry_failed else "max_age"
            raise InvalidInputError(
                f"{field_name}: acts on the results a ledger holds; pass ledger='sweep.db' "
                "(the same file on every run)",
                field=field_name,
            )
        if read.cache_dir is None and ledger_path is not None:
            read = replace(read, cache_dir=ledger_path.with_name(ledger_path.name + ".cache"))
        return cls(
            read=read,
            max_concurrency=max_concurrency,
            max_cost_usd=max_cost_usd,
            retry=retry,
            progress=bool(progress),
            resubmit_ambiguous=bool(resubmit_ambiguous),
            dry_run=bool(dry_run),
            ledger=ledger_path,
            retry_failed=retry_failed,
            max_age_s=max_age_s,
            sink=tuple(sinks) if sinks else None,
        )
