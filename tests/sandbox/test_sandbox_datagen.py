"""Generated results conform to their schema, are deterministic, and carry parameter values."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from webtask_frames.sandbox import GenerationError, generate
from webtask_frames.sandbox._datagen import find_main_list

FORMATS = ["date-time", "date", "time", "uri", "email", "uuid", "hostname", "ipv4", "ipv6"]
PATTERNS = [r"^[A-Z]{3}-\d{4}$", r"^(S|W)\d{2}$", r"^[a-z]+(-[a-z]+)*$", r"\d{5}", r"^\w+@\w+$"]
NAMES = ["name", "url", "batch", "email", "price", "founded", "tags", "status", "id", "x", "y"]


def _valid(schema: Any, data: Any, checker: FormatChecker) -> None:
    validator = Draft202012Validator(schema, format_checker=checker)
    errors = list(validator.iter_errors(data))
    assert not errors, f"{errors[0].message} at {list(errors[0].path)}"


# -- a strategy for (satisfiable) schemas -------------------------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-50, 50),
    st.text("abcxyz", min_size=0, max_size=5),
)


@st.composite
def string_schemas(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["plain", "format", "pattern", "length"]))
    if kind == "format":
        return {"type": "string", "format": draw(st.sampled_from(FORMATS))}
    if kind == "pattern":
        return {"type": "string", "pattern": draw(st.sampled_from(PATTERNS))}
    if kind == "length":
        lo = draw(st.integers(0, 30))
        return {"type": "string", "minLength": lo, "maxLength": lo + draw(st.integers(0, 20))}
    return {"type": "string"}


@st.composite
def integer_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    if draw(st.booleans()):
        m = draw(st.integers(1, 7))
        a = draw(st.integers(-20, 20))
        schema.update(multipleOf=m, minimum=m * a, maximum=m * (a + draw(st.integers(0, 5))))
    elif draw(st.booleans()):
        lo = draw(st.integers(-1000, 1000))
        schema.update(exclusiveMinimum=lo, maximum=lo + draw(st.integers(1, 100)))
    elif draw(st.booleans()):
        schema["minimum"] = draw(st.integers(-10, 10))
    return schema


@st.composite
def number_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    if draw(st.booleans()):
        lo = draw(st.floats(-1e4, 1e4, allow_nan=False))
        schema.update(minimum=lo, exclusiveMaximum=lo + draw(st.floats(0.01, 100)))
    if draw(st.booleans()):
        schema["multipleOf"] = draw(st.sampled_from([0.5, 0.25, 0.1, 2, 0.01]))
        schema.pop("exclusiveMaximum", None)
        schema.pop("minimum", None)
    return schema


leaf_schemas = st.one_of(
    string_schemas(),
    integer_schemas(),
    number_schemas(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({}),
    json_scalars.map(lambda v: {"const": v}),
    st.lists(json_scalars, min_size=1, max_size=4, unique_by=repr).map(lambda v: {"enum": v}),
    st.sampled_from(["string", "integer", "number", "boolean"]).map(
        lambda t: {"type": [t, "null"]}
    ),
)


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def objects(draw: st.DrawFn) -> dict[str, Any]:
        props = draw(st.dictionaries(st.sampled_from(NAMES), children, max_size=5))
        required = draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
        schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        if draw(st.booleans()):
            schema["additionalProperties"] = False
        return schema

    @st.composite
    def arrays(draw: st.DrawFn) -> dict[str, Any]:
        lo = draw(st.integers(0, 3))
        schema: dict[str, Any] = {"type": "array", "items": draw(children), "minItems": lo}
        if draw(st.booleans()):
            schema["maxItems"] = lo + draw(st.integers(0, 4))
        return schema

    @st.composite
    def combinators(draw: st.DrawFn) -> dict[str, Any]:
        kind = draw(st.sampled_from(["anyOf", "oneOf", "allOf"]))
        if kind == "anyOf":
            return {"anyOf": draw(st.lists(children, min_size=1, max_size=3))}
        if kind == "oneOf":  # distinct types keep exclusivity satisfiable
            return {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
        if kind == "allOf":
            name = draw(st.sampled_from(NAMES))
            return {
                "allOf": [
                    {"type": "object", "properties": {name: draw(children)}},
                    {"required": [name]},
                ]
            }
        return {"$ref": "#/$defs/Thing"}  # resolved against the root's $defs

    return st.one_of(objects(), arrays(), combinators())


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, Any]:
    """A root schema; ``$defs`` live at the root, as pydantic emits them."""
    thing = draw(leaf_schemas)
    body = draw(st.recursive(leaf_schemas, _extend, max_leaves=12))
    if draw(st.booleans()):
        body = {"$ref": "#/$defs/Root", "$defs": {"Root": body}}
    root = dict(body)
    root["$defs"] = {**root.get("$defs", {}), "Thing": thing}
    return root


# SANDBOX_HYPOTHESIS_EXAMPLES=5000 for a soak run.
@settings(
    max_examples=int(os.environ.get("SANDBOX_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(schema=schemas(), rows=st.integers(0, 6), seed=st.text(max_size=4))
def test_generated_data_validates(
    schema: dict[str, Any], rows: int, seed: str, format_checker: FormatChecker
) -> None:
    Draft202012Validator.check_schema(schema)
    data = generate(schema, parameters={"batch": "S24", "price": 3}, seed=seed, rows=rows)
    _valid(schema, data, format_checker)
    assert generate(schema, parameters={"batch": "S24", "price": 3}, seed=seed, rows=rows) == data


# -- hand-written schemas -------------------------------------------------------------
PYDANTIC_STYLE = {
    "$defs": {
        "Founder": {
            "properties": {
                "name": {"title": "Name", "type": "string"},
                "linkedin": {
                    "anyOf": [{"format": "uri", "type": "string"}, {"type": "null"}],
                    "default": None,
                },
            },
            "required": ["name"],
            "title": "Founder",
            "type": "object",
        },
        "Status": {"enum": ["Active", "Inactive", "Acquired"], "title": "Status", "type": "string"},
        "Company": {
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 60},
                "batch": {"type": "string"},
                "url": {"type": "string", "format": "uri"},
                "status": {"$ref": "#/$defs/Status"},
                "founders": {
                    "type": "array",
                    "items": {"$ref": "#/$defs/Founder"},
                    "minItems": 1,
                    "maxItems": 4,
                },
                "founded": {"type": "integer", "minimum": 1990, "maximum": 2025},
                "valuation": {
                    "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]
                },
                "launched_at": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "kind": {"const": "company"},
            },
            "required": ["name", "batch", "url", "founders", "kind"],
            "type": "object",
        },
    },
    "properties": {
        "source": {"type": "string", "format": "uri"},
        "companies": {"items": {"$ref": "#/$defs/Company"}, "type": "array"},
        "scraped_on": {"type": "string", "format": "date"},
    },
    "required": ["companies"],
    "title": "Page",
    "type": "object",
}

RECURSIVE = {
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
            "required": ["label", "children"],
        }
    },
    "type": "array",
    "items": {"$ref": "#/$defs/Node"},
}

MIXED = {
    "type": "array",
    "minItems": 2,
    "maxItems": 10,
    "items": {
        "type": "object",
        "properties": {
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
            "either": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "boolean"}]},
            "email": {"type": "string", "format": "email", "minLength": 40},
            "zip": {"type": "string", "pattern": r"^\d{5}(-\d{4})?$"},
            "score": {"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.05},
            "maybe": {"type": ["integer", "null"]},
            "meta": {
                "type": "object",
                "minProperties": 2,
                "additionalProperties": {"type": "integer"},
            },
        },
        "required": ["pair", "either", "email", "zip", "score", "maybe", "meta"],
        "dependentRequired": {"zip": ["score"]},
    },
}


@pytest.mark.parametrize(
    "schema", [PYDANTIC_STYLE, RECURSIVE, MIXED], ids=["pydantic", "recursive", "mixed"]
)
def test_hand_written_schemas(schema: dict[str, Any], format_checker: FormatChecker) -> None:
    for seed in ("a", "b", "c"):
        data = generate(schema, parameters={"batch": "W21"}, seed=seed, rows=12)
        _valid(schema, data, format_checker)


def test_rows_go_to_main_list() -> None:
    page = generate(PYDANTIC_STYLE, parameters={"batch": "W21"}, rows=30)
    assert len(page["companies"]) == 30
    assert {c["batch"] for c in page["companies"]} == {"W21"}
    assert find_main_list(PYDANTIC_STYLE) == ("property", "companies")
    assert len(generate(MIXED, rows=50)) == 10  # clamped to maxItems
    assert len(generate(MIXED, rows=0)) == 2  # clamped to minItems
    assert len(generate(RECURSIVE, rows=7)) == 7


def test_rows_prefix_stable_and_seed_sensitive() -> None:
    small = generate(RECURSIVE, seed="s", rows=5)
    assert generate(RECURSIVE, seed="s", rows=9)[:5] == small
    assert generate(RECURSIVE, seed="t", rows=5) != small


def test_parameter_value_injected_only_when_it_fits() -> None:
    schema = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "batch": {"type": "string"},
                "page": {"type": "integer", "maximum": 3},
                "Region": {"enum": ["EU", "US"]},
            },
            "required": ["batch", "page", "Region"],
        },
    }
    rows = generate(schema, parameters={"batch": "S24", "page": 9, "region": "EU"}, rows=20)
    assert {r["batch"] for r in rows} == {"S24"}
    assert all(r["page"] <= 3 for r in rows)  # 9 would violate maximum: generated instead
    assert {r["Region"] for r in rows} == {"EU"}  # name matching ignores case


def test_default_shape_without_schema() -> None:
    rows = generate(None, parameters={"batch": "S24", "page": 2}, rows=25)
    assert len(rows) == 25
    assert {"name", "url", "batch", "description"} <= set(rows[0])
    assert {(r["batch"], r["page"]) for r in rows} == {("S24", 2)}
    assert len({r["name"] for r in rows}) > 5


def test_scalar_and_object_top_levels() -> None:
    assert isinstance(generate({"type": "boolean"}), bool)
    obj = generate(
        {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}
    )
    assert isinstance(obj["total"], int)


def test_unsatisfiable_schema_raises() -> None:
    with pytest.raises(GenerationError):
        generate({"type": "object", "properties": {"x": False}, "required": ["x"]})
    with pytest.raises(GenerationError):
        generate({"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"})


def test_unsatisfiable_schema_fails_the_task(api: Any) -> None:
    schema = {"type": "object", "properties": {"x": False}, "required": ["x"]}
    task_id = api.start_id(task="T", outputSchema=schema)
    body = api.wait(task_id)
    assert body["outcome"] == "failed"
    assert body["error"]["code"] == "internal-error"
    assert "outputSchema" in body["error"]["message"]


def test_result_data_conforms_end_to_end(api: Any, format_checker: FormatChecker) -> None:
    task_id = api.start_id(task="YC", parameters={"batch": "W21"}, outputSchema=PYDANTIC_STYLE)
    data = api.wait(task_id)["result"]["data"]
    _valid(PYDANTIC_STYLE, data, format_checker)
    assert len(data["companies"]) == api.sb.config.rows


def test_invalid_row_rate_breaks_a_deterministic_share_of_records() -> None:
    import asyncio

    import jsonschema

    from webtask_frames import AsyncClient
    from webtask_frames.sandbox import Sandbox

    item = {
        "type": "object",
        "required": ["name", "size"],
        "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
    }
    schema = {"type": "array", "items": item}
    validator = jsonschema.Draft202012Validator(item)

    def invalid_count(sb: Sandbox, parameters: dict[str, object]) -> int:
        async def go() -> int:
            async with AsyncClient(
                sb.api_key,
                sb.workspace_id,
                sb.asgi_base_url,
                transport=sb.transport(),
                poll_min_s=0.01,
                poll_max_s=0.02,
            ) as client:
                status = await client.run("List", output_schema=schema, parameters=parameters)
                records = status.result.data  # type: ignore[union-attr]
                assert len(records) == 40
                return sum(not validator.is_valid(r) for r in records)

        return asyncio.run(go())

    sb = Sandbox(time_scale=0.0005, rows=40, seed=2)
    assert invalid_count(sb, {"p": 1}) == 0
    broken = invalid_count(sb, {"p": 1, "_sandbox": {"invalid_rows": 0.5}})
    assert 10 <= broken <= 30
    assert invalid_count(sb, {"p": 1, "_sandbox": {"invalid_rows": 0.5}}) == broken
    assert 0 < invalid_count(Sandbox(time_scale=0.0005, rows=40, invalid_row_rate=0.2), {}) < 20
