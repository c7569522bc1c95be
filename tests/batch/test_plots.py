"""BatchResult's charts (Agg backend), its cost table and its HTML summary."""

from __future__ import annotations

import builtins
from typing import Any

import matplotlib
import pytest
from sandboxservice import service_factory

from webtask_frames import BatchResult, run_batch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCHEMA = {
    "type": "array",
    "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
}


@pytest.fixture(scope="module")
def result() -> BatchResult:
    """One sweep shared by the tests, which only read it."""
    service = service_factory()(options={"duration_s": 4.0, "invalid_row_rate": 0.3, "rows": 10})
    grid = {"industry": ["ai", "bio"], "page": [1, 2, 3]}  # 6 items, 2 keys
    return run_batch(
        "List the {industry} companies, page {page}",
        grid,
        output_schema=SCHEMA,
        reuse_key="yc_{industry}",
        client=service.sync_client(),
        progress=False,
        max_concurrency=2,
    )


def test_timeline_has_one_bar_per_task_and_one_row_per_key(result: BatchResult) -> None:
    assert result.ok
    ax = result.plot()
    try:
        assert len(ax.patches) == len(result.tasks) == 6
        assert [t.get_text() for t in ax.get_yticklabels()] == ["yc_ai", "yc_bio"]
        widths = sorted(p.get_width() for p in ax.patches)
        assert widths[0] > 0  # real seconds from the service's timestamps
        assert ax.get_xlabel().startswith("seconds")
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["first run (builds the automation)", "reuse run"]
    finally:
        plt.close(ax.figure)


def test_cost_chart_compares_first_runs_and_reuse_per_key(result: BatchResult) -> None:
    costs = result.cost_by_key()
    assert list(costs["reuse_key"]) == ["yc_ai", "yc_bio"]
    assert list(costs["first_runs"]) == [1, 1] and list(costs["reuse_runs"]) == [2, 2]
    assert costs["total_usd"].sum() == pytest.approx(result.cost_usd)
    fig, ax = plt.subplots()
    try:
        assert result.plot_costs(ax=ax) is ax
        assert len(ax.patches) == 2 * len(costs)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["yc_ai", "yc_bio"]
        heights = [p.get_height() for p in ax.patches]
        # Mean cost of one run of each kind, so reuse's saving shows whatever the counts.
        first = costs["first_run_usd"] / costs["first_runs"]
        reuse = costs["reuse_usd"] / costs["reuse_runs"]
        assert heights == pytest.approx([*first, *reuse])
    finally:
        plt.close(fig)


def test_html_summary_shows_invalid_rows_and_cost_per_key(result: BatchResult) -> None:
    page = result._repr_html_()
    n_invalid = len(result.invalid)
    assert n_invalid > 0
    assert f"invalid rows</th><td style='text-align:left'>{n_invalid}" in page
    assert "Cost per reuse key" in page and "yc_bio" in page
    assert f"invalid rows: {n_invalid}" in result.summary()


def test_charts_without_matplotlib_name_the_extra(
    result: BatchResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for chart in (result.plot, result.plot_costs):
        with pytest.raises(ImportError, match=r'pip install "webtask-frames\[plot\]"'):
            chart()


def test_a_dry_run_has_nothing_to_draw() -> None:
    planned = run_batch("T", {"i": [0, 1]}, reuse_key="k", dry_run=True)
    ax = planned.plot()
    try:
        assert len(ax.patches) == 0 and "No finished runs" in ax.get_title()
    finally:
        plt.close(ax.figure)
