"""outputSchema -> Arrow schema, record layouts, inference and promotion."""

from __future__ import annotations

import enum
from datetime import date, datetime

import pyarrow as pa
import pytest
from pydantic import BaseModel

from webtask_frames._tables.compiled import coerce_output_schema, record_arrow_schema
from webtask_frames._tables.records import records_to_table, shape
from webtask_frames._tables.schema import DICT_TYPE, TIMESTAMP_TYPE, layout_for
from webtask_frames._tables.unify import unify_tables

DICT = DICT_TYPE


def obj(**props: object) -> dict[str, object]:
    return {"type": "object", "properties": props}


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"type": "string"}, pa.string()),
        ({"type": "integer"}, pa.int64()),
        ({"type": "number"}, pa.float64()),
        ({"type": "boolean"}, pa.bool_()),
        ({"type": ["integer", "null"]}, pa.int64()),
        ({"type": ["integer", "number"]}, pa.float64()),
        ({"enum": ["a", "b"]}, DICT),
        ({"type": "string", "enum": ["a", "b", None]}, DICT),
        ({"enum": [1, 2]}, pa.int64()),
        ({"enum": [1, "a"]}, pa.string()),  # ambiguous -> JSON text
        ({"const": "x"}, DICT),
        ({"type": "string", "format": "date-time"}, TIMESTAMP_TYPE),
        ({"type": "string", "format": "date"}, pa.date32()),
        ({"type": "string", "format": "email"}, pa.string()),
        ({"type": "array", "items": {"type": "integer"}}, pa.list_(pa.int64())),
        (
            obj(a={"type": "integer"}, b={"type": "string"}),
            pa.struct([("a", pa.int64()), ("b", pa.string())]),
        ),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, pa.int64()),
        (
            {"oneOf": [{"type": "null"}, obj(x={"type": "number"})]},
            pa.struct([("x", pa.float64())]),
        ),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, pa.string()),
        ({"type": "object"}, pa.string()),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, pa.string()),
        ({}, pa.string()),
        ({"type": ["string", "integer"]}, pa.string()),
    ],
)
def test_property_types(prop: dict[str, object], expected: pa.DataType) -> None:
    schema = record_arrow_schema({"type": "array", "items": obj(x=prop)})
    assert schema is not None
    assert schema.field("x").type == expected


def test_refs_defs_and_recursion() -> None:
    schema = {
        "$defs": {
            "Geo": obj(lat={"type": "number"}),
            "Node": obj(
                name={"type": "string"},
                children={"type": "array", "items": {"$ref": "#/$defs/Node"}},
            ),
        },
        "type": "array",
        "items": obj(geo={"$ref": "#/$defs/Geo"}, tree={"$ref": "#/$defs/Node"}),
    }
    arrow = record_arrow_schema(schema)
    assert arrow is not None
    assert arrow.field("geo").type == pa.struct([("lat", pa.float64())])
    # recursion: the second visit of Node becomes JSON text
    assert arrow.field("tree").type == pa.struct(
        [("name", pa.string()), ("children", pa.list_(pa.string()))]
    )


class Stage(enum.Enum):
    seed = "seed"
    series_a = "series_a"


class Address(BaseModel):
    city: str
    zip: str | None = None


class Company(BaseModel):
    name: str
    employees: int | None = None
    founded: date
    updated_at: datetime
    stage: Stage
    tags: list[str]
    address: Address
    score: float = 0.0


def test_pydantic_model_class() -> None:
    arrow = record_arrow_schema(coerce_output_schema(Company))
    assert arrow is not None
    assert dict(zip(arrow.names, arrow.types, strict=True)) == {
        "name": pa.string(),
        "employees": pa.int64(),
        "founded": pa.date32(),
        "updated_at": TIMESTAMP_TYPE,
        "stage": DICT,
        "tags": pa.list_(pa.string()),
        "address": pa.struct([("city", pa.string()), ("zip", pa.string())]),
        "score": pa.float64(),
    }


def test_pydantic_list_wrapper_model() -> None:
    class Page(BaseModel):
        source: str
        companies: list[Company]

    layout = layout_for(coerce_output_schema(Page))
    assert layout is not None
    assert layout.wrapper == "companies"
    assert [n for n, _ in layout.columns][-1] == "source"


def test_layouts() -> None:
    item = obj(name={"type": "string"})
    assert layout_for({"type": "array", "items": item}).root_is_array  # type: ignore[union-attr]
    wrapped = layout_for(obj(batch={"type": "string"}, companies={"type": "array", "items": item}))
    assert wrapped is not None
    assert wrapped.wrapper == "companies"
    assert [n for n, _ in wrapped.columns] == ["name", "batch"]
    plain = layout_for(
        obj(name={"type": "string"}, tags={"type": "array", "items": {"type": "string"}})
    )
    assert plain is not None
    assert plain.wrapper is None
    assert [n for n, _ in plain.columns] == ["name", "tags"]
    scalars = record_arrow_schema({"type": "array", "items": {"type": "string"}})
    assert scalars is not None
    assert scalars.names == ["value"]
    assert layout_for(None) is None


def test_declared_columns_absent_from_data_keep_their_type() -> None:
    schema = {
        "type": "array",
        "items": obj(
            a={"type": "integer"},
            when={"type": "string", "format": "date-time"},
            nested=obj(x={"type": "boolean"}),
        ),
    }
    layout = layout_for(schema)
    table = records_to_table(shape([{}, {"other": 1}], layout=layout).records, layout)
    assert table.schema == record_arrow_schema(schema)
    assert table.num_rows == 2
    assert table.column("a").null_count == 2
    empty = records_to_table([], layout)
    assert empty.schema == record_arrow_schema(schema)


def test_inference_and_promotion_without_schema() -> None:
    records = [
        {"i": 1, "f": 1, "mixed": 1, "nested_mixed": {"a": 1}, "s": {"a": 1}, "nul": None},
        {"i": 2, "f": 2.5, "mixed": "x", "nested_mixed": 3, "s": {"b": "y"}, "nul": None},
    ]
    table = records_to_table(records, None)
    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["i"] == pa.int64()
    assert types["f"] == pa.float64()
    assert types["mixed"] == pa.string()
    assert table.column("mixed").to_pylist() == ["1", "x"]
    assert table.column("nested_mixed").to_pylist() == ['{"a": 1}', "3"]
    assert types["s"] == pa.struct([("a", pa.int64()), ("b", pa.string())])
    assert types["nul"] == pa.null()


def test_unify_tables_promotes_consistently() -> None:
    a = pa.table({"x": pa.array([1], pa.int64()), "e": pa.array(["p"]).dictionary_encode()})
    b = pa.table({"x": pa.array([2.5]), "e": pa.array(["q"]).dictionary_encode(), "extra": ["z"]})
    c = pa.table({"x": pa.array(["s"]), "n": pa.nulls(1)})
    out = unify_tables([a, b])
    assert out.schema.field("x").type == pa.float64()
    assert out.schema.field("e").type == DICT  # declared type preserved
    assert out.column("extra").to_pylist() == [None, "z"]
    mixed = unify_tables([a, b, c])
    assert mixed.column("x").to_pylist() == ["1", "2.5", "s"]
    assert mixed.schema.field("e").type == DICT
    assert unify_tables([]).num_rows == 0
    structs = unify_tables([pa.table({"s": [{"a": 1}]}), pa.table({"s": [{"b": "x"}]})])
    assert structs.column("s").to_pylist() == [{"a": 1, "b": None}, {"a": None, "b": "x"}]
