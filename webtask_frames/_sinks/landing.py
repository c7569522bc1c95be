"""What a sink is told when an item completes: the ``ItemLanding`` protocol.

The batch engine hands each completed item to the sink as a report implementing this
protocol, with the item's rows: ``sink(report, rows)``. A sink lands the rows and the
item's billed tasks together; ``succeeded`` says whether the rows replace the item's
earlier rows (merge by identity) or there are none to replace them with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import InvalidInputError

__all__ = ["ItemLanding", "check_keys", "keys_in", "last_per_task", "replaced_by"]


@runtime_checkable
class ItemLanding(Protocol):
    """One completed item, as a sink sees it.

    Example:
        >>> def my_sink(report: ItemLanding, rows: pa.Table) -> None:
        ...     print(report.item_key, report.succeeded, rows.num_rows)
        ...     print(report.tasks_arrow().column("_webtask_id").to_pylist())
    """

    @property
    def item_key(self) -> str:
        """The item's identity: a hash of what it asks, stable across runs and grids."""
        ...

    @property
    def succeeded(self) -> bool:
        """Whether the item's latest task succeeded (its rows are the item's rows now)."""
        ...

    def tasks_arrow(self) -> pa.Table:
        """The item's billed tasks, one row per attempt, keyed by ``_webtask_id``."""
        ...


def replaced_by(report: ItemLanding) -> list[str]:
    """The items whose earlier rows the report's rows replace: its own when it succeeded."""
    return [report.item_key] if report.succeeded else []


def last_per_task(tasks: pa.Table) -> pa.Table:
    """``tasks`` with one row per ``_webtask_id``, the last one given: a billed task is
    one fact, however often it is reported."""
    if tasks.num_rows < 2 or "_webtask_id" not in tasks.column_names:
        return tasks
    ids = tasks.column("_webtask_id").to_pylist()
    last = {task: index for index, task in enumerate(ids)}
    if len(last) == len(ids):
        return tasks
    return tasks.take(sorted(last.values()))


def keys_in(table: pa.Table, column: str = "_item_key") -> list[str]:
    """The distinct non-null values of ``column``, in order of first appearance."""
    if column not in table.column_names or not table.num_rows:
        return []
    return [k for k in pc.unique(table.column(column)).to_pylist() if k is not None]


def check_keys(keys: Sequence[str], field: str) -> list[str]:
    """``keys`` as a list of strings, or an error naming ``field``."""
    out = list(keys) if not isinstance(keys, str) else None
    if out is None or not all(isinstance(k, str) for k in out):
        raise InvalidInputError(f"{field}: expected a sequence of item keys (strings)", field=field)
    return out
