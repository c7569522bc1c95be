"""From a JSON Schema (or from data) to the Arrow type of every column.

A ``Node`` is the column plan for one value: which Arrow type it becomes and how. It is
built once per outputSchema (``node_from_schema``) or inferred from Python records
(``infer_node``) and then drives both the tolerant Python converter (``_records``) and
the fast Arrow readers (``_readers``), so every path yields the same table schema.

JSON Schema                               Arrow
----------------------------------------  ---------------------------------------------
string                                    string
string, format date-time                  timestamp("us", tz="UTC")
string, format date                       date32
enum of strings                           dictionary<int32, string>
integer / number / boolean                int64 / float64 / bool
["T", "null"], anyOf/oneOf [T, null]      T (every column is nullable)
object with properties                    struct (declared properties, in order)
array with items                          list<items>
$ref / $defs                              resolved; recursion becomes JSON text
anything ambiguous                        JSON text (a string holding ``json.dumps``)

``layout_for`` decides which part of the outputSchema describes one record: the
``items`` of a top-level array; the items of the single array-of-objects property of a
top-level object (its other properties become broadcast columns); else the object itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from .refs import hoist_defs

__all__ = [
    "JSON_TEXT",
    "Layout",
    "Node",
    "arrow_type",
    "infer_node",
    "layout_for",
    "node_from_arrow",
    "node_from_schema",
    "parse_type",
    "unify_nodes",
]

# Kinds: string int float bool timestamp date dict struct list json null
JSON_TEXT = "json"
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
DICT_TYPE = pa.dictionary(pa.int32(), pa.string())
_SCALARS = frozenset({"string", "int", "float", "bool", "timestamp", "date", "dict"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Node:
    """How one value maps to Arrow: ``kind`` plus children for ``struct`` and ``list``."""

    kind: str
    fields: tuple[tuple[str, Node], ...] = ()
    item: Node | None = None

    def field_names(self) -> list[str]:
        return [name for name, _ in self.fields]

    def contains(self, kinds: frozenset[str]) -> bool:
        """Whether this node or any node below it (struct fields, list items) has one of
        ``kinds``.

        Example:
            >>> Node("list", item=Node("date")).contains(frozenset({"date"}))
            True
        """
        if self.kind in kinds:
            return True
        if self.kind == "struct":
            return any(child.contains(kinds) for _, child in self.fields)
        return self.kind == "list" and self.item is not None and self.item.contains(kinds)


STRING = Node("string")
JSON = Node(JSON_TEXT)
NULL = Node("null")


def arrow_type(node: Node) -> pa.DataType:
    """The Arrow type of a node, as it appears in the final table."""
    kind = node.kind
    if kind == "struct":
        return pa.struct([pa.field(n, arrow_type(c)) for n, c in node.fields])
    if kind == "list":
        assert node.item is not None
        return pa.list_(arrow_type(node.item))
    return _SIMPLE_TYPES[kind]


def parse_type(node: Node) -> pa.DataType | None:
    """The Arrow type a strict JSON parser reads this node as (strings for timestamps,
    dates and enums; the conversion follows), or None when a node cannot be read
    strictly by ``pyarrow.json`` (JSON text, null-only)."""
    kind = node.kind
    if kind in ("string", "timestamp", "date", "dict"):
        return pa.string()
    if kind == "struct":
        children = [(n, parse_type(c)) for n, c in node.fields]
        if any(t is None for _, t in children):
            return None
        return pa.struct([pa.field(n, t) for n, t in children])
    if kind == "list":
        assert node.item is not None
        inner = parse_type(node.item)
        return None if inner is None else pa.list_(inner)
    if kind in ("int", "float", "bool"):
        return _SIMPLE_TYPES[kind]
    return None


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP_TYPE,
    "date": pa.date32(),
    "dict": DICT_TYPE,
    JSON_TEXT: pa.string(),
    "null": pa.null(),
}


# -- JSON Schema -> Node -------------------------------------------------------------


def _is_null_schema(schema: Any) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == "null"


def resolve_pointer(root: Mapping[str, Any], ref: str) -> Any:
    """Resolve a local ``#/...`` JSON pointer against ``root``; KeyError when absent."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise KeyError(ref)
    target: Any = root
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(target, Mapping) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise KeyError(ref)
    return target


class _Resolver:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def node(self, schema: Any, stack: tuple[str, ...] = ()) -> Node:
        """The column plan of ``schema``; ``stack`` holds the ``$ref``s being expanded."""
        if schema is True or schema == {}:
            return JSON
        if schema is False or not isinstance(schema, Mapping):
            return NULL if schema is False else JSON
        if isinstance(schema.get("$ref"), str):
            return self._ref_node(schema, stack)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self._union_node(branches, stack)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            return self.node(all_of[0], stack) if len(all_of) == 1 else JSON
        if "enum" in schema:
            return _enum_node(schema["enum"])
        if "const" in schema:
            return _enum_node([schema["const"]])
        kinds = _declared_kinds(schema)
        if kinds is None:
            return JSON
        if not kinds:
            return NULL
        if set(kinds) == {"integer", "number"}:
            return Node("float")
        if len(kinds) != 1:
            return JSON
        return self._typed_node(kinds[0], schema, stack)

    def _ref_node(self, schema: Mapping[str, Any], stack: tuple[str, ...]) -> Node:
        ref = schema["$ref"]
        if ref in stack:
            return JSON  # recursive model: keep the value as JSON text
        try:
            target = resolve_pointer(self.root, ref)
        except KeyError:
            return JSON
        siblings = {k: v for k, v in schema.items() if k not in ANNOTATIONS and k != "$ref"}
        if siblings:
            return JSON
        return self.node(target, (*stack, ref))

    def _union_node(self, branches: list[Any], stack: tuple[str, ...]) -> Node:
        nodes = [self.node(b, stack) for b in branches if not _is_null_schema(b)]
        if not nodes:
            return NULL
        merged = nodes[0]
        for other in nodes[1:]:
            merged = _merge_alternatives(merged, other)
        return merged

    def _typed_node(self, kind: str, schema: Mapping[str, Any], stack: tuple[str, ...]) -> Node:
        if kind == "string":
            fmt = schema.get("format")
            return _STRING_FORMATS.get(fmt, STRING) if isinstance(fmt, str) else STRING
        if kind in _SCALAR_KINDS:
            return _SCALAR_KINDS[kind]
        if kind == "object":
            props = schema.get("properties")
            if not isinstance(props, Mapping) or not props:
                return JSON  # free-form object or additionalProperties-only map
            return Node(
                "struct", fields=tuple((str(n), self.node(s, stack)) for n, s in props.items())
            )
        if kind == "array":
            items = schema.get("items")
            if items is None or "prefixItems" in schema:
                return Node("list", item=JSON) if items is None else JSON
            return Node("list", item=self.node(items, stack))
        return JSON


def _declared_kinds(schema: Mapping[str, Any]) -> list[Any] | None:
    """The non-null JSON types ``schema`` declares (implied by ``properties``/``items``
    when ``type`` is absent); None when nothing can be said."""
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if types is None:
        if "properties" in schema:
            types = ["object"]
        elif "items" in schema:
            types = ["array"]
        else:
            return None
    if not isinstance(types, list):
        return None
    return [t for t in types if t != "null"]


_STRING_FORMATS: dict[str, Node] = {"date-time": Node("timestamp"), "date": Node("date")}
_SCALAR_KINDS = {"integer": Node("int"), "number": Node("float"), "boolean": Node("bool")}


# Keywords that describe but never constrain an instance (draft 2020-12 annotations).
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "$schema",
        "$defs",
        "definitions",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    }
)


def _enum_node(values: Any) -> Node:
    if not isinstance(values, list):
        return JSON
    present = [v for v in values if v is not None]
    if not present:
        return NULL
    if all(isinstance(v, str) for v in present):
        return Node("dict")
    if all(isinstance(v, bool) for v in present):
        return Node("bool")
    if any(isinstance(v, bool) for v in present):
        return JSON
    if all(isinstance(v, int) and _INT64_MIN <= v <= _INT64_MAX for v in present):
        return Node("int")
    if all(isinstance(v, int | float) for v in present):
        return Node("float")
    return JSON


def _merge_alternatives(a: Node, b: Node) -> Node:
    """Alternatives of a union: identical or int/float numbers merge, else JSON text."""
    if a == b:
        return a
    if {a.kind, b.kind} == {"int", "float"}:
        return Node("float")
    if {a.kind, b.kind} == {"string", "dict"}:
        return STRING
    return JSON


@dataclass(frozen=True)
class Layout:
    """Which part of an outputSchema describes one record.

    ``record_schema`` is what each record is validated against (local ``$defs`` kept so
    ``$ref`` resolves); ``node`` its column plan (a struct, or a scalar read into a
    ``value`` column); ``wrapper`` names the array property of a wrapper object and
    ``broadcast`` the plans of its sibling properties.
    """

    root: dict[str, Any]
    record_schema: dict[str, Any] | bool
    node: Node
    wrapper: str | None = None
    broadcast: tuple[tuple[str, Node], ...] = ()
    root_is_array: bool = False
    columns: tuple[tuple[str, Node], ...] = field(default=(), compare=False)
    record_sub: Any = field(default=None, compare=False)

    @property
    def is_object(self) -> bool:
        return self.node.kind == "struct"


def _record_schema(root: dict[str, Any], sub: Any, pointer: str) -> dict[str, Any] | bool:
    """A standalone schema for the subschema at ``pointer`` that still resolves the root's
    ``$ref``s: the root's definitions hoisted into it when that suffices, else the root
    embedded under ``$defs`` with its own ``$id``."""
    if pointer == "#":
        return root
    if isinstance(sub, bool):
        return sub
    hoisted = hoist_defs(sub, root)
    if hoisted is not None:
        return hoisted
    base = root.get("$id") if isinstance(root.get("$id"), str) else "urn:webtask-frames:output"
    embedded = copy.deepcopy(root)
    embedded["$id"] = base
    embedded.pop("$schema", None)
    return {"$defs": {"__output_schema__": embedded}, "$ref": f"{base}{pointer}"}


def _deref(root: Mapping[str, Any], schema: Any, pointer: str) -> tuple[Any, str]:
    seen: set[str] = set()
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if ref in seen:
            break
        seen.add(ref)
        try:
            schema, pointer = resolve_pointer(root, ref), ref
        except KeyError:
            break
    return schema, pointer


def _types_of(schema: Any) -> set[str]:
    if not isinstance(schema, Mapping):
        return set()
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    if "properties" in schema:
        return {"object"}
    if "items" in schema:
        return {"array"}
    return set()


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def layout_for(output_schema: Mapping[str, Any] | None) -> Layout | None:
    """The record layout of an outputSchema, or None without a schema.

    Example:
        >>> lay = layout_for({"type": "object", "properties": {
        ...     "batch": {"type": "string"},
        ...     "companies": {"type": "array", "items": {"type": "object",
        ...                   "properties": {"name": {"type": "string"}}}}}})
        >>> lay.wrapper, [n for n, _ in lay.columns]
        ('companies', ['name', 'batch'])
    """
    if output_schema is None:
        return None
    root = dict(output_schema)
    resolver = _Resolver(root)
    top, top_ptr = _deref(root, root, "#")
    top_types = _types_of(top)
    wrapper: str | None = None
    broadcast: tuple[tuple[str, Node], ...] = ()
    root_is_array = False
    if "array" in top_types and isinstance(top, Mapping) and "items" in top:
        sub, ptr = top["items"], f"{top_ptr.rstrip('/')}/items"
        root_is_array = True
    else:
        sub, ptr = top, top_ptr
        props = top.get("properties") if isinstance(top, Mapping) else None
        if "object" in top_types and isinstance(props, Mapping):
            wrapper = _wrapper_property(root, props)
            if wrapper is not None:
                prop_ptr = f"{top_ptr.rstrip('/')}/properties/{_escape(wrapper)}"
                target, prop_ptr = _deref(root, props[wrapper], prop_ptr)
                sub, ptr = target["items"], f"{prop_ptr.rstrip('/')}/items"
                broadcast = tuple(
                    (str(n), resolver.node(s)) for n, s in props.items() if n != wrapper
                )
    if ptr.startswith("#") and ptr != "#" and not ptr.startswith("#/"):
        ptr = "#/" + ptr[1:]
    node = resolver.node(sub)
    record_schema = _record_schema(root, sub, ptr.replace("//", "/"))
    columns = node.fields if node.kind == "struct" else (("value", node),)
    names = {n for n, _ in columns}
    columns = columns + tuple((n, c) for n, c in broadcast if n not in names)
    return Layout(
        root=root,
        record_schema=record_schema,
        node=node,
        wrapper=wrapper,
        broadcast=broadcast,
        root_is_array=root_is_array,
        columns=columns,
        record_sub=sub,
    )


def _wrapper_property(root: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
    """The one property holding an array of objects, when exactly one does."""
    candidates = []
    for name, prop in props.items():
        target, _ = _deref(root, prop, "")
        if "array" in _types_of(target) and isinstance(target, Mapping):
            items, _ = _deref(root, target.get("items"), "")
            if "object" in _types_of(items):
                candidates.append(name)
    return candidates[0] if len(candidates) == 1 else None


def node_from_schema(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Node:
    """The column plan of one (sub)schema; ``$ref`` resolves against ``root``."""
    return _Resolver(root if root is not None else schema).node(schema)


# -- inference from Python values -----------------------------------------------------


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64_MIN <= value <= _INT64_MAX else "bigint"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "struct"
    if isinstance(value, list | tuple):
        return "list"
    return "other"


class _Infer:
    """Accumulates the type of a stream of values with the promotion rules."""

    __slots__ = ("children", "item", "kinds")

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.children: dict[str, _Infer] = {}
        self.item: _Infer | None = None

    def add(self, value: Any) -> None:
        kind = _kind_of(value)
        self.kinds.add(kind)
        if kind == "struct":
            for key, child in value.items():
                acc = self.children.get(key)
                if acc is None:
                    acc = self.children[str(key)] = _Infer()
                acc.add(child)
        elif kind == "list":
            if self.item is None:
                self.item = _Infer()
            for child in value:
                self.item.add(child)

    def node(self) -> Node:
        kinds = self.kinds - {"null"}
        if not kinds:
            return NULL
        if kinds <= {"int", "float"}:
            return Node("float") if "float" in kinds else Node("int")
        if len(kinds) == 1:
            (kind,) = kinds
            if kind == "struct":
                return Node("struct", fields=tuple((k, v.node()) for k, v in self.children.items()))
            if kind == "list":
                return Node("list", item=self.item.node() if self.item else NULL)
            if kind in ("string", "bool"):
                return Node(kind)
        if kinds & {"struct", "list", "other"}:
            return JSON
        return STRING  # mixed scalars: text (non-strings as their JSON text)


def infer_node(values: Iterable[Any]) -> Node:
    """The column plan inferred from values (int+float -> float, mixed scalars -> string,
    mixed with nested -> JSON text, only nulls -> null).

    Example:
        >>> [(n, c.kind) for n, c in infer_node([{"a": 1}, {"a": 2.5, "b": "x"}]).fields]
        [('a', 'float'), ('b', 'string')]
    """
    acc = _Infer()
    for value in values:
        acc.add(value)
    return acc.node()


def node_from_arrow(dtype: pa.DataType) -> Node:
    """The node an Arrow type stands for (strings stay strings: no JSON-text marker)."""
    if pa.types.is_struct(dtype):
        return Node(
            "struct",
            fields=tuple(
                (dtype.field(i).name, node_from_arrow(dtype.field(i).type))
                for i in range(dtype.num_fields)
            ),
        )
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return Node("list", item=node_from_arrow(dtype.value_type))
    if pa.types.is_dictionary(dtype):
        return Node("dict")
    if pa.types.is_integer(dtype):
        return Node("int")
    if pa.types.is_floating(dtype):
        return Node("float")
    if pa.types.is_boolean(dtype):
        return Node("bool")
    if pa.types.is_timestamp(dtype):
        return Node("timestamp")
    if pa.types.is_date(dtype):
        return Node("date")
    if pa.types.is_null(dtype):
        return NULL
    return STRING


def unify_nodes(a: Node, b: Node) -> Node:
    """The promotion of two column plans: null+X -> X, int+float -> float, structs merge
    field by field, lists by item, dictionary+string -> string; mixed scalars -> string;
    mixed with nested -> JSON text."""
    if a == b:
        return a
    if a.kind == "null":
        return b
    if b.kind == "null":
        return a
    if a.kind == "struct" and b.kind == "struct":
        merged: dict[str, Node] = dict(a.fields)
        for name, child in b.fields:
            merged[name] = unify_nodes(merged[name], child) if name in merged else child
        return Node("struct", fields=tuple(merged.items()))
    if a.kind == "list" and b.kind == "list":
        assert a.item is not None
        assert b.item is not None
        return Node("list", item=unify_nodes(a.item, b.item))
    kinds = {a.kind, b.kind}
    if kinds == {"int", "float"}:
        return Node("float")
    if kinds <= _SCALARS | {"string"}:
        return STRING
    return JSON
