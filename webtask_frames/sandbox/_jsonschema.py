"""JSON Schema plumbing for the generator: pointers, type inference, merging, checks.

Only what generation needs (local ``$ref`` resolution, inferring a type from
keywords, a best-effort ``allOf`` conjunction, and value checks that mirror
jsonschema's), kept apart from the generator so each stays readable.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

__all__ = [
    "ANNOTATIONS",
    "GenerationError",
    "as_types",
    "format_checker",
    "is_multiple",
    "merge",
    "resolve_pointer",
    "unique_key",
]


ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly"}
)
_OBJECT_KEYS = ("properties", "required", "additionalProperties", "patternProperties")
_ARRAY_KEYS = ("items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains")
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


class GenerationError(ValueError):
    """The schema cannot be satisfied (e.g. ``false``) or recurses without end."""


def resolve_pointer(root: Any, ref: str) -> Any:
    """Resolve a local JSON pointer ``#/...`` against ``root``.

    Example:
        >>> resolve_pointer({"$defs": {"A": {"type": "string"}}}, "#/$defs/A")
        {'type': 'string'}
    """
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise LookupError(ref)
    node = root
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise LookupError(ref)
    return node


# ---------------------------------------------------------------------------
# Schema helpers
# ---------------------------------------------------------------------------
def as_types(schema: Mapping[str, Any]) -> list[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list) and t:
        return [str(x) for x in t]
    if any(k in schema for k in _OBJECT_KEYS) or "minProperties" in schema:
        return ["object"]
    if any(k in schema for k in _ARRAY_KEYS):
        return ["array"]
    if any(k in schema for k in _STRING_KEYS):
        return ["string"]
    if any(k in schema for k in _NUMBER_KEYS):
        return ["number"]
    return ["string"]


def _intersect_types(a: Any, b: Any) -> list[str] | str:
    la = [a] if isinstance(a, str) else list(a)
    lb = [b] if isinstance(b, str) else list(b)
    out = [t for t in la if t in lb]
    if "integer" in la and "number" in lb and "integer" not in out:
        out.append("integer")
    if "number" in la and "integer" in lb and "integer" not in out:
        out.append("integer")
    if not out:
        raise GenerationError(f"allOf combines incompatible types {la} and {lb}")
    return out[0] if len(out) == 1 else out


_TIGHTEN_MAX = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_TIGHTEN_MIN = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Best-effort conjunction of two (already flattened) schemas."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif key == "properties":
            props = dict(out[key])
            for name, sub in value.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key == "required":
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key == "type":
            out[key] = _intersect_types(out[key], value)
        elif key in _TIGHTEN_MAX:
            out[key] = max(out[key], value)
        elif key in _TIGHTEN_MIN:
            out[key] = min(out[key], value)
        elif key == "enum":
            out[key] = [v for v in out[key] if v in value]
        elif key in ("anyOf", "oneOf", "allOf"):
            out["allOf"] = [*out.get("allOf", []), {key: value}]
        else:
            out[key] = value
    return out


@functools.lru_cache(maxsize=1)
def format_checker() -> Any:
    """jsonschema's checker plus date-time and uri, which it only checks when
    optional packages are installed (a parameter like "S24" must never be
    injected into a date-time field)."""
    import datetime as dt
    from urllib.parse import urlsplit

    from jsonschema import Draft202012Validator, FormatChecker

    checker = FormatChecker()
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not stamp.match(value):
            return False
        dt.datetime.fromisoformat(value[:19])
        return True

    @checker.checks("uri", raises=ValueError)
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return bool(urlsplit(value).scheme) and " " not in value

    return checker


def unique_key(value: Any) -> str:
    # JSON Schema equality treats 1 and 1.0 as equal; normalise before comparing.
    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, int | float):
            return float(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return json.dumps(norm(value), sort_keys=True)


def is_multiple(value: float, mult: float) -> bool:
    # Mirrors jsonschema's multipleOf check so generated values always pass it.
    if isinstance(mult, float):
        quotient = value / mult
        try:
            return int(quotient) == quotient
        except OverflowError:
            return False
    return bool(value % mult == 0)
