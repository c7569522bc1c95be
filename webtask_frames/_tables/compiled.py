"""An outputSchema as given by the user (dict, JSON file, pydantic model) made a checked
JSON Schema, and what it implies for the record columns.

``SchemaPlan`` is that work done once per call: the metaschema check, the record layout,
the record Arrow schema and (lazily) the compiled record validator. Entry points build
one and hand it down, so a 1,000-item sweep checks and compiles its schema once, not per
item or per result.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa

from .._exceptions import InvalidInputError
from .schema import Layout, arrow_type, layout_for
from .validate import RecordValidator

__all__ = [
    "SchemaPlan",
    "check_jsonable",
    "coerce_output_schema",
    "record_arrow_schema",
    "schema_plan",
]


def check_jsonable(field_name: str, value: Any) -> None:
    """``InvalidInputError`` naming ``field_name`` unless ``value`` is strict JSON."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{field_name}: not JSON-serialisable ({exc}); convert values to str, int, float, "
            "bool, None, lists or dicts (no NaN/inf) before submitting",
            field=field_name,
        ) from None


# Deeper than any real outputSchema (each field level is two: properties, then the field),
# and shallow enough that checking and compiling it never reach Python's recursion limit.
MAX_SCHEMA_DEPTH = 200


def _too_deep(value: Any, limit: int = MAX_SCHEMA_DEPTH) -> bool:
    """Whether dicts and lists nest more than ``limit`` deep in ``value`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Mapping | list | tuple):
            continue
        if depth > limit:
            return True
        children = node.values() if isinstance(node, Mapping) else node
        stack.extend((child, depth + 1) for child in children)
    return False


def _deep_schema_error() -> InvalidInputError:
    return InvalidInputError(
        f"output_schema: nested more than {MAX_SCHEMA_DEPTH} levels deep; flatten it "
        "(free-form parts can be {} or a string holding JSON)",
        field="output_schema",
    )


def _schema_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(
            f"output_schema: cannot read {str(path)!r} ({exc.strerror}); pass a dict, a "
            "pydantic model or the path of a JSON file",
            field="output_schema",
        ) from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"output_schema: {str(path)!r} is not JSON (line {exc.lineno}: {exc.msg})",
            field="output_schema",
        ) from exc


def _is_type_expression(value: Any) -> bool:
    """``list[Company]``, ``Optional[Company]``, ``Company | None``, ``Annotated[...]``..."""
    return isinstance(value, types.UnionType) or typing.get_origin(value) is not None


def _from_type_expression(alias: Any) -> Any:
    """The JSON Schema pydantic generates for a type expression such as ``list[Company]``."""
    try:
        # pydantic is optional: only a type expression needs it, so it is imported here.
        import pydantic
    except ImportError:
        raise InvalidInputError(
            f"output_schema: {alias!r} is a type expression; turning it into JSON Schema "
            "needs pydantic (pip install pydantic), or pass a JSON Schema dict",
            field="output_schema",
        ) from None
    return _call_schema_maker(lambda: pydantic.TypeAdapter(alias).json_schema(), alias)


def _call_schema_maker(maker: Any, source: Any) -> Any:
    try:
        return maker()
    except Exception as exc:  # pydantic's schema-generation errors have no common base
        raise InvalidInputError(
            f"output_schema: cannot generate a JSON Schema from {source!r} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            field="output_schema",
        ) from None


def _to_schema(output_schema: Any) -> Any:
    """The schema object behind any accepted form of ``output_schema`` (unchecked)."""
    if isinstance(output_schema, str | Path):
        return _schema_file(Path(output_schema))
    if isinstance(output_schema, Mapping):
        return output_schema
    # Duck-typed pydantic support, without importing pydantic: a model class or instance
    # (``model_json_schema``), or a ``TypeAdapter`` (``json_schema``).
    maker = getattr(output_schema, "model_json_schema", None)
    if maker is None and not isinstance(output_schema, type):
        maker = getattr(output_schema, "json_schema", None)
    if callable(maker):
        return _call_schema_maker(maker, output_schema)
    if _is_type_expression(output_schema):
        return _from_type_expression(output_schema)
    return None


def coerce_output_schema(output_schema: Any) -> dict[str, Any] | None:
    """A JSON Schema dict from a dict, a JSON file path, a pydantic model (class or
    instance), a pydantic ``TypeAdapter``, or a type expression such as ``list[Company]``
    (through ``pydantic.TypeAdapter``, so pydantic must be installed for those).

    A list type describes what a task returns as a JSON array: one row per element.
    ``$defs`` and ``$ref`` are kept as generated. The schema is checked against the
    draft 2020-12 metaschema; a bad schema raises ``InvalidInputError`` with the JSON path
    of the problem, before any request.

    Example:
        >>> coerce_output_schema({"type": "object"})
        {'type': 'object'}
        >>> coerce_output_schema(list[int])
        {'items': {'type': 'integer'}, 'type': 'array'}
    """
    if output_schema is None:
        return None
    schema = _to_schema(output_schema)
    if not isinstance(schema, Mapping):
        raise InvalidInputError(
            f"output_schema: expected a JSON Schema object (dict), a pydantic model, a "
            f"TypeAdapter, a type such as list[Model], or a JSON file path, got "
            f"{type(output_schema).__name__}",
            field="output_schema",
        )
    if _too_deep(schema):
        raise _deep_schema_error()
    checked: dict[str, Any] = dict(schema)
    try:
        jsonschema.Draft202012Validator.check_schema(checked)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidInputError(
            f"output_schema is not valid JSON Schema draft 2020-12 at {where}: {exc.message}",
            field="output_schema",
        ) from None
    return checked


@dataclass(frozen=True, eq=False)
class SchemaPlan:
    """One outputSchema, checked once, with everything derived from it.

    ``schema`` is the checked JSON Schema dict (draft 2020-12 metaschema and strict JSON),
    ``layout`` which part of it is one record, ``arrow_schema`` the record columns'
    Arrow types; ``validator`` is compiled on first use and then reused by every result
    read with this plan. Build it with ``SchemaPlan.build`` (or ``schema_plan``).

    Example:
        >>> plan = SchemaPlan.build({"type": "array", "items": {"type": "object",
        ...     "properties": {"n": {"type": "integer"}}}})
        >>> plan.arrow_schema.names, plan.validator.verdicts([{"n": 1}, {"n": "x"}])
        (['n'], [True, False])
    """

    schema: dict[str, Any]
    layout: Layout = field(repr=False)
    arrow_schema: pa.Schema = field(repr=False)

    @classmethod
    def build(cls, output_schema: Any) -> SchemaPlan:
        """Coerce and check ``output_schema`` (dict, JSON file path, pydantic model, or an
        existing plan, returned as is); ``InvalidInputError`` naming ``output_schema``."""
        if isinstance(output_schema, SchemaPlan):
            return output_schema
        try:
            schema = coerce_output_schema(output_schema)
            if schema is None:
                raise InvalidInputError(
                    "output_schema: expected a JSON Schema, got None", field="output_schema"
                )
            check_jsonable("output_schema", schema)
            layout = layout_for(schema)
            assert layout is not None  # a schema always has a layout
            arrow = pa.schema([pa.field(name, arrow_type(node)) for name, node in layout.columns])
        except RecursionError:  # e.g. $refs that expand without end: still one clear line
            raise _deep_schema_error() from None
        return cls(schema=schema, layout=layout, arrow_schema=arrow)

    @cached_property
    def validator(self) -> RecordValidator:
        """The record validator, compiled once (jsonschema_rs + reference) on first use."""
        return RecordValidator(self.layout.record_schema)


def schema_plan(output_schema: Any) -> SchemaPlan | None:
    """``SchemaPlan.build(output_schema)``, or None without a schema.

    Example:
        >>> schema_plan(None) is None, schema_plan({"type": "object"}).schema
        (True, {'type': 'object'})
    """
    return None if output_schema is None else SchemaPlan.build(output_schema)


def record_arrow_schema(output_schema: Any) -> pa.Schema | None:
    """The Arrow schema of the record columns an outputSchema (or ``SchemaPlan``) yields
    (broadcast columns of a wrapper included), or None without a schema.

    Example:
        >>> record_arrow_schema({"type": "array", "items": {"type": "object", "properties": {
        ...     "n": {"type": "integer"}, "at": {"type": "string", "format": "date"}}}})
        n: int64
        at: date32[day]
    """
    plan = schema_plan(output_schema)
    return plan.arrow_schema if plan is not None else None
