"""What ``sink=`` accepts, checked once before a sweep sends anything.

A sink lands each completed item as it completes: a ``DuckDBSink``, a ``ParquetSink``,
or any callable taking ``(report, rows)``, where ``report`` is an ``ItemLanding`` (the
item's key, whether it succeeded, its billed tasks) and ``rows`` its rows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeAlias

import pyarrow as pa

from .._exceptions import InvalidInputError
from .dataset import ParquetSink
from .duckdb_sink import DuckDBSink
from .landing import ItemLanding

__all__ = ["ItemLanding", "Sink", "check_sink"]

Sink: TypeAlias = DuckDBSink | ParquetSink | Callable[[ItemLanding, pa.Table], Any]

_EXPECTED = "a DuckDBSink, a ParquetSink, or a callable taking (report, rows)"


def _takes_two_positional(value: Callable[..., Any]) -> bool | None:
    """Whether ``value`` can be called with two positional arguments; None when its
    signature cannot be inspected (some builtins), which is then given the benefit."""
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    return True


def check_sink(value: object) -> Sink:
    """``value`` if it can be a sweep's sink, else an ``InvalidInputError`` (field
    ``"sink"``) saying what is expected.

    Example:
        >>> check_sink(DuckDBSink("sweep.duckdb", "companies"))
        DuckDBSink(database='sweep.duckdb', table='companies', mode='merge')
        >>> check_sink("sweep.duckdb")
        Traceback (most recent call last):
        ...
        webtask_frames._exceptions.InvalidInputError: sink: expected a DuckDBSink, ...
    """
    if isinstance(value, DuckDBSink | ParquetSink):
        return value
    if isinstance(value, type):
        raise InvalidInputError(
            f"sink: {value.__name__} is a class; pass an instance ({_EXPECTED})", field="sink"
        )
    if not callable(value):
        raise InvalidInputError(
            f"sink: expected {_EXPECTED}, got {type(value).__name__}", field="sink"
        )
    if _takes_two_positional(value) is False:
        raise InvalidInputError(
            f"sink: {getattr(value, '__name__', type(value).__name__)} cannot be called "
            "with two positional arguments (report, rows); "
            f"pass {_EXPECTED}",
            field="sink",
        )
    return value
