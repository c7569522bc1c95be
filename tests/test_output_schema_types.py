"""``output_schema`` given as pydantic types: models, ``list[Model]``, ``TypeAdapter``."""

from __future__ import annotations

from datetime import date
from typing import Any, Optional

import pytest
from pydantic import BaseModel, TypeAdapter
from sandboxservice import MakeService

from webtask_frames import InvalidInputError, read_webtask
from webtask_frames._tables.compiled import SchemaPlan, coerce_output_schema


class Company(BaseModel):
    name: str
    founded: date | None = None
    tags: list[str] = []


class Node(BaseModel):
    label: str
    children: list[Node] = []


def test_a_model_describes_one_object() -> None:
    schema = coerce_output_schema(Company)
    assert schema is not None and schema["type"] == "object"


@pytest.mark.parametrize("given", [list[Company], TypeAdapter(list[Company])])
def test_a_list_type_or_adapter_describes_an_array_with_defs_intact(given: Any) -> None:
    schema = coerce_output_schema(given)
    assert schema is not None
    assert schema["type"] == "array"
    assert schema["items"] == {"$ref": "#/$defs/Company"}
    assert set(schema["$defs"]) == {"Company"}
    assert SchemaPlan.build(given).arrow_schema.names == ["name", "founded", "tags"]


def test_recursive_defs_are_kept() -> None:
    schema = coerce_output_schema(list[Node])
    assert schema is not None and "Node" in schema["$defs"]
    assert schema["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}


@pytest.mark.parametrize("given", [Optional[Company], Company | None, dict[str, Company]])  # noqa: UP045
def test_other_type_expressions_are_accepted(given: Any) -> None:
    schema = coerce_output_schema(given)
    assert schema is not None and "$defs" in schema


def test_a_type_pydantic_cannot_describe_is_a_clear_error() -> None:
    class Opaque:
        pass

    with pytest.raises(InvalidInputError, match="cannot generate a JSON Schema") as info:
        coerce_output_schema(list[Opaque])
    assert info.value.field == "output_schema"


def test_type_expressions_without_pydantic_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pydantic(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pydantic":
            raise ImportError("no pydantic")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydantic)
    with pytest.raises(InvalidInputError, match="needs pydantic"):
        coerce_output_schema(list[int])


def test_other_objects_are_still_refused() -> None:
    with pytest.raises(InvalidInputError, match="got int"):
        coerce_output_schema(3)


def test_read_webtask_with_a_list_type_returns_every_row(make_service: MakeService) -> None:
    """The README's first pydantic example: ``list[Company]`` gives one row per company."""
    service = make_service(rows=7)
    df = read_webtask(
        "List YC companies",
        parameters={"batch": "S24"},
        output_schema=list[Company],
        reuse_key="yc",
        validate="flag",
        client=service.client(),
    )
    assert len(df) == 7
    assert list(df.columns[:3]) == ["name", "founded", "tags"]
    assert (df["batch"] == "S24").all()
    one = read_webtask(
        "List YC companies",
        parameters={"batch": "S24"},
        output_schema=Company,
        reuse_key="yc",
        validate="flag",
        client=service.client(),
    )
    assert len(one) == 1
