"""Local JSON Schema references: moving a subschema without breaking its ``$ref``s.

A record's schema is validated on its own (``schema.Layout.record_schema``) and chunks of
records through an ``{"type": "array", "items": ...}`` wrapper (``validate``); both cut a
subschema out of its document, and ``hoist_defs`` is the one place that carries the
document's definitions along.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFS_KEYWORDS", "hoist_defs", "schema_refs"]

DEFS_KEYWORDS = ("$defs", "definitions")
_DEFS_REF_PREFIXES = tuple(f"#/{key}/" for key in DEFS_KEYWORDS)


def hoist_defs(body: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any] | None:
    """``body``, a schema cut out of ``source``, with ``source``'s ``$defs`` and
    ``definitions`` at its root (``body``'s own entries win), so the ``#/$defs/...``
    references it took along still resolve where it now stands.

    None when that cannot hold: ``source`` has an ``$id`` or a reference of another form
    (``#/properties/...``, remote, dynamic).

    Example:
        >>> root = {"$defs": {"Id": {"type": "integer"}}, "items": {"$ref": "#/$defs/Id"}}
        >>> hoist_defs(root["items"], root)
        {'$ref': '#/$defs/Id', '$defs': {'Id': {'type': 'integer'}}}
        >>> hoist_defs({"$ref": "#/items"}, {"$ref": "#/items"}) is None
        True
    """
    if "$id" in source or not all(r.startswith(_DEFS_REF_PREFIXES) for r in schema_refs(source)):
        return None
    out = dict(body)
    for key in DEFS_KEYWORDS:
        if isinstance(source.get(key), Mapping):
            merged = dict(source[key])
            merged.update(out.get(key) or {})
            out[key] = merged
    return out


def schema_refs(schema: Any) -> Iterable[str]:
    """Every ``$ref`` and ``$dynamicRef`` in ``schema``; ``enum``/``const`` hold data."""
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield value
            elif key not in ("enum", "const"):
                yield from schema_refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from schema_refs(value)
