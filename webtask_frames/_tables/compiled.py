"""An outputSchema as given by the user (dict, JSON file, pydantic model) made a checked
JSON Schema, and what it implies for the record columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa

from .._exceptions import InvalidInputError
from .schema import arrow_type, layout_for

__all__ = ["coerce_output_schema", "record_arrow_schema"]


def coerce_output_schema(output_schema: Any) -> dict[str, Any] | None:
    """A JSON Schema dict from a dict, a JSON file path, or a pydantic model (class or instance).

    The schema is checked against the draft 2020-12 metaschema; a bad schema raises
    ``InvalidInputError`` with the JSON path of the problem, before any request.

    Example:
        >>> coerce_output_schema({"type": "object"})
        {'type': 'object'}
    """
    if output_schema is None:
        return None
    schema: Any = output_schema
    if isinstance(output_schema, str | Path):
        path = Path(output_schema)
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
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
    elif hasattr(output_schema, "model_json_schema"):
        # Duck-typed pydantic support: a model class or instance, without importing pydantic.
        maker = output_schema.model_json_schema
        schema = maker() if callable(maker) else None
    if not isinstance(schema, Mapping):
        raise InvalidInputError(
            f"output_schema: expected a JSON Schema object (dict), a pydantic model or a JSON "
            f"file path, got {type(output_schema).__name__}",
            field="output_schema",
        )
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


def record_arrow_schema(output_schema: Mapping[str, Any] | None) -> pa.Schema | None:
    """The Arrow schema of the record columns an outputSchema yields (broadcast
    columns of a wrapper included), or None without a schema.

    Example:
        >>> record_arrow_schema({"type": "array", "items": {"type": "object", "properties": {
        ...     "n": {"type": "integer"}, "at": {"type": "string", "format": "date"}}}})
        n: int64
        at: date32[day]
    """
    if output_schema is None:
        return None
    layout = layout_for(coerce_output_schema(output_schema))
    assert layout is not None
    return pa.schema([pa.field(name, arrow_type(node)) for name, node in layout.columns])
