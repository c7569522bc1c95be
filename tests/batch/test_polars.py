"""BatchResult as polars frames: records and tasks, from Arrow."""

from __future__ import annotations

import builtins
from typing import Any

import polars as pl
import pytest
from sandboxservice import MakeService

from webtask_frames import BatchResult, run_batch

SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name"],
    },
}


@pytest.fixture
def result(make_service: MakeService) -> BatchResult:
    service = make_service(options={"rows": 4})
    return run_batch(
        "List companies of {batch}",
        {"batch": ["S24", "W24"]},
        output_schema=SCHEMA,
        reuse_key="yc",
        client=service.sync_client(),
        progress=False,
    )


def test_records_as_polars_match_the_arrow_table(result: BatchResult) -> None:
    frame = result.to_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame.height == result.n_records == 8
    assert frame.columns == result.to_arrow().column_names
    assert frame.schema["tags"] == pl.List(pl.String)
    assert frame.group_by("batch").len().sort("batch")["len"].to_list() == [4, 4]
    assert frame.to_arrow().equals(result.to_arrow().cast(frame.to_arrow().schema))


def test_tasks_as_polars(result: BatchResult) -> None:
    tasks = result.tasks_polars()
    assert tasks.height == 2
    assert tasks["status"].to_list() == ["succeeded", "succeeded"]
    assert tasks.columns == result.tasks_arrow().column_names


def test_without_polars_the_error_names_the_extra(
    result: BatchResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_polars(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "polars":
            raise ImportError("no polars")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_polars)
    with pytest.raises(ImportError, match=r'pip install "webtask-frames\[polars\]"'):
        result.to_polars()
