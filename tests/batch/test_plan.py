"""Grids, templates and validation: every bad input fails before any request."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from webtask_frames import InvalidInputError
from webtask_frames._batch.plan import build_plan, expand_grid, stable_hash


def test_dict_of_lists_is_a_cartesian_product_in_key_order() -> None:
    rows = expand_grid({"batch": ["S24", "W24"], "page": [1, 2, 3]})
    assert len(rows) == 6
    assert rows[:3] == [
        {"batch": "S24", "page": 1},
        {"batch": "S24", "page": 2},
        {"batch": "S24", "page": 3},
    ]


def test_list_of_dicts_is_taken_as_is() -> None:
    assert expand_grid([{"q": "a"}, {"q": "b", "n": 2}]) == [{"q": "a"}, {"q": "b", "n": 2}]


def test_dataframe_gives_one_item_per_row_with_python_values() -> None:
    df = pd.DataFrame({"batch": ["S24", "W24"], "n": [1, 2], "x": [0.5, None]}, dtype=object)
    rows = expand_grid(df)
    assert rows == [{"batch": "S24", "n": 1, "x": 0.5}, {"batch": "W24", "n": 2, "x": None}]
    assert type(rows[0]["n"]) is int


@pytest.mark.parametrize(
    "grid",
    [
        pd.DataFrame({"batch": ["S24", "W24"], "x": [0.5, np.nan]}),
        pd.DataFrame({"batch": ["S24", "W24"], "x": [pd.Timestamp(0), pd.NaT]}),
        {"x": [0.5, np.nan]},
        {"x": np.array([0.5, np.nan])},
        {"x": pd.Series([0.5, np.nan])},
        [{"x": 0.5}, {"x": math.nan}],
    ],
)
def test_nan_is_refused_in_every_grid_form(grid: object) -> None:
    """A DataFrame, a dict and a list grid treat NaN alike: refused before any request,
    never turned into null silently. None (or pandas' ``pd.NA``) is how to send null."""
    with pytest.raises(InvalidInputError, match=r"grid item 1: parameters\['x'\] is") as info:
        build_plan("T", grid)
    assert info.value.field == "parameters"
    assert "df.fillna" in info.value.message and "\n" not in info.value.message


def test_none_is_sent_as_null_in_every_grid_form() -> None:
    for grid in (
        pd.DataFrame({"x": [0.5, None]}, dtype=object),
        pd.DataFrame({"x": pd.array([0.5, None], dtype="Float64")}),  # pd.NA is null
        {"x": [0.5, None]},
        {"x": [0.5, pd.NA]},
        [{"x": 0.5}, {"x": None}],
        [{"x": 0.5}, {"x": pd.NA}],
    ):
        plan = build_plan("T", grid)
        assert plan.items[1].body["parameters"] == {"x": None}


def test_numpy_arrays_and_ranges_are_accepted_as_axes() -> None:
    rows = expand_grid({"page": range(2), "k": np.array([7, 8])})
    assert rows == [
        {"page": 0, "k": 7},
        {"page": 0, "k": 8},
        {"page": 1, "k": 7},
        {"page": 1, "k": 8},
    ]
    assert type(rows[0]["k"]) is int


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({}, "empty dict"),
        ([], "grid is empty"),
        ({"batch": []}, "empty list"),
        ({"batch": "S24"}, r"wrap a fixed value in a list"),
        ([{"a": 1}, "nope"], r"grid\[1\]"),
        (42, "expected a dict of lists"),
        ([{"_item": 1}], "reserved"),
        ([{1: "x"}], "non-empty strings"),
        (pd.DataFrame(columns=["a"]), "grid is empty"),
    ],
)
def test_bad_grids_name_the_field_and_the_fix(grid: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        expand_grid(grid)
    assert info.value.field == "grid"


def test_format_string_templates_render_per_item() -> None:
    plan = build_plan(
        "Scrape",
        {"batch": ["S24", "W24"]},
        reuse_key="yc_{batch}",
        start_url="https://example.com/{batch}",
    )
    assert [i.reuse_key for i in plan.items] == ["yc_S24", "yc_W24"]
    assert plan.items[1].body == {
        "task": "Scrape",
        "startUrl": "https://example.com/W24",
        "parameters": {"batch": "W24"},
        "reuseKey": "yc_W24",
    }
    assert plan.chains == {"yc_S24": [0], "yc_W24": [1]}


def test_fixed_and_callable_templates() -> None:
    plan = build_plan("T", {"n": [1, 2, 3]}, reuse_key=lambda p: f"k{p['n'] % 2}")
    assert plan.keys == ["k1", "k0", "k1"]
    fixed = build_plan("T", {"n": [1, 2]}, reuse_key="same")
    assert fixed.chains == {"same": [0, 1]}
    braces = build_plan("T", {"n": [1]}, reuse_key="lit{{x}}")
    assert braces.keys == ["lit{x}"]
    none = build_plan("T", {"n": [1, 2]})
    assert none.chains == {None: [0, 1]}


def test_a_template_naming_a_missing_parameter_fails_early() -> None:
    with pytest.raises(InvalidInputError, match=r"names parameter 'btch'.*grid parameters: batch"):
        build_plan("T", {"batch": ["S24"]}, reuse_key="yc_{btch}")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reuse_key": "yc_{}"}, "reuse_key"),
        ({"reuse_key": "yc_{0}"}, "reuse_key"),
        ({"reuse_key": "yc_{batch"}, "reuse_key"),
        ({"reuse_key": 12}, "reuse_key"),
        ({"start_url": "ftp://x/{batch}"}, "start_url"),
        ({"start_url": lambda p: 1 / 0}, "start_url"),
        ({"reuse_key": lambda p: ""}, "reuse_key"),
        ({"model": "gpt-9"}, "model"),
        ({"output_schema": {"type": "nonsense"}}, "output_schema"),
        ({"output_schema": 42}, "output_schema"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        build_plan("T", {"batch": ["S24"]}, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("value", [math.inf, object(), {1, 2}])
def test_non_json_parameter_values_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match="grid item 1: parameters") as info:
        build_plan("T", [{"x": 1}, {"x": value}])
    assert info.value.field == "parameters"


def test_empty_task_is_refused() -> None:
    with pytest.raises(InvalidInputError) as info:
        build_plan("  ", {"a": [1]})
    assert info.value.field == "task"


def test_schema_file_and_model_are_carried(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "array", "items": {"type": "object"}}')
    plan = build_plan("T", {"a": [1]}, output_schema=schema, model="sonnet")
    assert plan.output_schema == {"type": "array", "items": {"type": "object"}}
    assert plan.items[0].body["model"] == "sonnet"


def test_identity_is_what_an_item_asks_not_where_it_sits() -> None:
    a = build_plan("T", {"x": [1, 2]}, reuse_key="k_{x}")
    b = build_plan("T", [{"x": 1}, {"x": 2}], reuse_key=lambda p: f"k_{p['x']}")
    assert a.item_keys == b.item_keys  # same asks, whatever the template form
    swapped = build_plan("T", [{"x": 2}, {"x": 1}], reuse_key="k_{x}")
    assert swapped.item_keys == a.item_keys[::-1]  # position is not identity
    assert build_plan("T", {"x": [1, 2]}, reuse_key="k_{x}", model="opus").item_keys == a.item_keys
    assert all(len(k) == 32 for k in a.item_keys) and len(set(a.item_keys)) == 2
    # Every part of what it asks is part of its identity.
    variants = [
        build_plan("T2", {"x": [1]}, reuse_key="k_{x}"),
        build_plan("T", {"x": [1]}, reuse_key="other"),
        build_plan("T", {"x": [1]}, reuse_key="k_{x}", start_url="https://example.com"),
        build_plan("T", {"x": [1], "y": [0]}, reuse_key="k_{x}"),
        build_plan("T", {"x": [1]}, reuse_key="k_{x}", output_schema={"type": "array"}),
    ]
    for variant in variants:
        assert variant.items[0].item_key != a.items[0].item_key
    assert stable_hash({"b": 1, "a": [1, 2]}) == stable_hash({"a": [1, 2], "b": 1})


def test_two_items_asking_the_same_thing_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"grid items 0 and 2 ask exactly the same") as info:
        build_plan("T", [{"x": 1}, {"x": 2}, {"x": 1}])
    assert info.value.field == "grid" and "drop_duplicates" in str(info.value)
    build_plan("T", [{"x": 1, "run": 1}, {"x": 1, "run": 2}])  # told apart: fine


def test_task_text_is_a_template_over_the_parameters() -> None:
    plan = build_plan(
        "List the {industry} companies of batch {batch}; answer as {{'name': ...}}",
        {"industry": ["fintech", "ai"], "batch": ["S24"]},
        reuse_key="yc_{industry}",
    )
    assert [item.body["task"] for item in plan.items] == [
        "List the fintech companies of batch S24; answer as {'name': ...}",
        "List the ai companies of batch S24; answer as {'name': ...}",
    ]
    assert plan.task.startswith("List the {industry}")  # the template, as given
    literal = build_plan("Return {{}} when empty", {"a": [1]})
    assert literal.items[0].body["task"] == "Return {} when empty"


@pytest.mark.parametrize(
    ("task", "match"),
    [
        ("List the {industy} companies", "names parameter 'industy'"),
        ("Return {} when empty", "positional field"),
        ("Return {x when empty", "not a valid format string"),
    ],
)
def test_a_task_template_naming_an_unknown_parameter_fails_early(task: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        build_plan(task, {"industry": ["ai"]})
    assert info.value.field == "task"
