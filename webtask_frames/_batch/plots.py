"""``BatchResult``'s pictures: a timeline of the runs per reuse key, and cost per key.

matplotlib is an optional dependency (the ``plot`` extra), imported only when a chart is
drawn; without it the charts raise ``ImportError`` naming the extra. Both charts read the
tasks table alone, so this module needs nothing of ``BatchResult`` itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["COST_COLUMNS", "cost_chart", "cost_rows", "timeline"]

COST_COLUMNS = ("reuse_key", "first_runs", "first_run_usd", "reuse_runs", "reuse_usd", "total_usd")
FIRST_RUN_COLOR = "tab:orange"
REUSE_COLOR = "tab:blue"
NO_KEY = "(no key)"


def _pyplot() -> Any:
    try:
        # Optional dependency: imported here, when a chart is actually drawn.
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            'BatchResult charts need matplotlib: pip install "webtask-frames[plot]"'
        ) from None
    return plt


def _axes(ax: Axes | None, n_rows: int, *, horizontal: bool) -> Axes:
    if ax is not None:
        return ax
    size = (9.0, 1.5 + 0.45 * n_rows) if horizontal else (max(5.0, 1.2 * n_rows + 2), 4.0)
    _, new = _pyplot().subplots(figsize=size)
    return new  # type: ignore[no-any-return]


def cost_rows(tasks: pa.Table) -> list[tuple[Any, ...]]:
    """Per reuse key, in first-seen order: first runs (no saved automation used) and
    reuse runs, with their AI cost; ``COST_COLUMNS`` in order. Items never submitted
    are left out.

    Example:
        >>> cost_rows(pa.table({"reuse_key": ["a", "a", "b"], "webtask_id": ["1", "2", None],
        ...     "reuse_used": [False, True, None], "cost_ai_usd": [0.3, 0.1, None]}))
        [('a', 1, 0.3, 1, 0.1, 0.4)]
    """
    by_key: dict[Any, list[Any]] = {}
    columns = ("reuse_key", "webtask_id", "reuse_used", "cost_ai_usd")
    for key, web_task_id, used, cost in zip(*(tasks[c].to_pylist() for c in columns), strict=True):
        if web_task_id is None:
            continue
        row = by_key.setdefault(key, [key, 0, 0.0, 0, 0.0])
        slot = 3 if used else 1
        row[slot] += 1
        row[slot + 1] += cost or 0.0
    return [(*row, row[2] + row[4]) for row in by_key.values()]


def _runs(tasks: pa.Table) -> list[tuple[str, datetime, datetime, bool]]:
    """``(key, start, end, reused)`` of every item with a known start and end."""
    columns = ("reuse_key", "started_at", "created_at", "completed_at", "reuse_used")
    out = []
    for key, started, created, completed, used in zip(
        *(tasks[c].to_pylist() for c in columns), strict=True
    ):
        start = started or created
        if start is not None and completed is not None:
            out.append((key if key is not None else NO_KEY, start, completed, bool(used)))
    return out


def timeline(tasks: pa.Table, ax: Axes | None = None) -> Axes:
    """One horizontal bar per run, on one row per reuse key, from its start to its
    completion in real seconds since the sweep's first start (the service's own
    timestamps); first runs and reuse runs in two colours. Returns the Axes."""
    runs = _runs(tasks)
    keys = list(dict.fromkeys(key for key, *_ in runs))
    ax = _axes(ax, len(keys), horizontal=True)
    if not runs:
        ax.set_title("No finished runs to show")
        return ax
    origin = min(start for _, start, _, _ in runs)
    for reused, color, label in (
        (False, FIRST_RUN_COLOR, "first run (builds the automation)"),
        (True, REUSE_COLOR, "reuse run"),
    ):
        group = [r for r in runs if r[3] is reused]
        if group:
            ax.barh(
                [keys.index(key) for key, *_ in group],
                [(end - start).total_seconds() for _, start, end, _ in group],
                left=[(start - origin).total_seconds() for _, start, _, _ in group],
                color=color,
                edgecolor="white",
                label=label,
            )
    ax.set_yticks(range(len(keys)), labels=keys)
    ax.invert_yaxis()  # the first key on top
    ax.set_xlabel("seconds since the first run started")
    ax.set_ylabel("reuse key")
    ax.set_title(f"{len(runs)} runs over {len(keys)} reuse keys")
    # Beside the plot, not on it: no bar is ever hidden behind the legend.
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def _mean(total: float, runs: int) -> float:
    return total / runs if runs else 0.0


def cost_chart(tasks: pa.Table, ax: Axes | None = None) -> Axes:
    """Per reuse key, two bars: the mean AI cost (USD) of one first run and of one reuse
    run, so the saving reuse brings is read off directly (totals depend on how many runs
    a key had; ``cost_rows`` has them). Returns the Axes."""
    rows = cost_rows(tasks)
    keys = [str(row[0]) if row[0] is not None else NO_KEY for row in rows]
    ax = _axes(ax, len(keys), horizontal=False)
    if not rows:
        ax.set_title("No runs with a cost to show")
        return ax
    positions = range(len(keys))
    width = 0.4
    ax.bar(
        [p - width / 2 for p in positions],
        [_mean(row[2], row[1]) for row in rows],
        width,
        color=FIRST_RUN_COLOR,
        label="first run",
    )
    ax.bar(
        [p + width / 2 for p in positions],
        [_mean(row[4], row[3]) for row in rows],
        width,
        color=REUSE_COLOR,
        label="reuse run",
    )
    ax.set_xticks(positions, labels=keys, rotation=30 if len(keys) > 6 else 0)
    ax.set_ylabel("AI cost per run (USD)")
    ax.set_title("Cost per run and reuse key: first run vs reuse")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
