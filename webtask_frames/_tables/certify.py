"""Proving rows of a strictly parsed Arrow batch valid, vectorised, without Python objects.

The file readers (``_readers``) parse NDJSON/JSON-array blocks with ``pyarrow.json``
and an explicit schema that rejects any value of the wrong JSON kind, so a parsed block
already tells, for every declared property, that its non-null values have the right
type. ``Certifier`` compiles the record schema's common subset (types, nullability,
``required``, ``properties``, ``items``, string enums and lengths, numeric bounds, item
counts, closed objects) into Arrow/NumPy checks over such a block. A row it cannot prove
valid is *uncertain*, never invalid: ``_validate`` then judges it record by record. A
schema with any other keyword is not certified at all.

An Arrow null stands for an absent property or a JSON ``null``; ``rows_with_null``
(computed only when a check needs it) tells rows whose text holds no ``null`` token,
where a null can only be an absent property.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import ANNOTATIONS, Layout, Node, resolve_pointer

__all__ = ["Certifier", "rows_with_null"]


class _Unsupported(Exception):
    pass


_STRINGY = frozenset({"string", "timestamp", "date", "dict"})
_EXACT_FLOAT = 2.0**53


@dataclass
class _Check:
    kind: str
    null_ok: bool
    enum: list[str] | None = None
    pattern: str | None = None
    min_len: int | None = None
    max_len: int | None = None
    bounds: list[tuple[str, float | int]] = field(default_factory=list)
    fields: list[tuple[str, _Check, bool]] = field(default_factory=list)
    item: _Check | None = None
    min_items: int | None = None
    max_items: int | None = None
    closed: bool = False


_NOT_PRINTABLE_ASCII = "[^\\x20-\\x7e]"
# Pattern syntax read the same way by Python's re and RE2 (escaped punctuation, the
# classes \d \w \s \b and their negations); anything else (lookaround, back
# references, "{,n}", possessive quantifiers, other escapes) is not certified.
_RE2_SAFE = re.compile(r"\\[\\^$.|?*+()\[\]{}/\-dDwWsSbB]")


def _re2_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern.isascii():
        raise _Unsupported
    rest = _RE2_SAFE.sub("", pattern)
    if any(s in rest for s in ("\\", "(?", "{,", "[:")) or re.search(r"[*+?}]\+", rest):
        raise _Unsupported
    try:
        pc.match_substring_regex(pa.array(["", "a"]), pattern)
        re.compile(pattern)
    except (pa.ArrowInvalid, re.error):
        raise _Unsupported from None
    return pattern


def _nonneg_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unsupported
    if isinstance(value, float) and not value.is_integer():
        raise _Unsupported
    return int(value)


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.closed = False

    def compile(self, schema: Any, node: Node, stack: tuple[str, ...] = ()) -> _Check:
        if not isinstance(schema, Mapping):
            raise _Unsupported
        keys = set(schema) - ANNOTATIONS
        if "$ref" in keys:
            ref = schema["$ref"]
            if keys != {"$ref"} or not isinstance(ref, str) or ref in stack:
                raise _Unsupported
            try:
                target = resolve_pointer(self.root, ref)
            except KeyError:
                raise _Unsupported from None
            return self.compile(target, node, (*stack, ref))
        for key in ("anyOf", "oneOf"):
            if key in keys:
                branches = schema[key]
                if keys != {key} or not isinstance(branches, list) or len(branches) != 2:
                    raise _Unsupported
                nulls = [b for b in branches if _is_plain_null(b)]
                others = [b for b in branches if not _is_plain_null(b)]
                if len(nulls) != 1 or len(others) != 1:
                    raise _Unsupported
                check = self.compile(others[0], node, stack)
                if key == "oneOf" and check.null_ok:
                    raise _Unsupported  # null would match both branches
                check.null_ok = True
                return check
        if "allOf" in keys:
            branches = schema["allOf"]
            if keys != {"allOf"} or not isinstance(branches, list) or len(branches) != 1:
                raise _Unsupported
            return self.compile(branches[0], node, stack)
        return self._simple(schema, keys, node, stack)

    def _simple(
        self, schema: Mapping[str, Any], keys: set[str], node: Node, stack: tuple[str, ...]
    ) -> _Check:
        raw = schema.get("type")
        types: set[str] | None
        if raw is None:
            types = None
        elif isinstance(raw, str):
            types = {raw}
        elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
            types = set(raw)
        else:
            raise _Unsupported
        null_ok = types is None or "null" in types
        value_types = None if types is None else types - {"null"}
        kind = node.kind
        check = _Check(kind=kind, null_ok=null_ok)
        allowed = {"type"}
        if kind in _STRINGY:
            if not (value_types == {"string"} or (value_types is None and "enum" in keys)):
                raise _Unsupported
            allowed |= {"enum", "const", "minLength", "maxLength", "format"}
            if "pattern" in keys:
                check.pattern = _re2_pattern(schema["pattern"])
                allowed.add("pattern")
            if "enum" in keys or "const" in keys:
                values = schema["enum"] if "enum" in keys else [schema["const"]]
                if "enum" in keys and "const" in keys:
                    raise _Unsupported
                if not isinstance(values, list) or not all(
                    isinstance(v, str) or v is None for v in values
                ):
                    raise _Unsupported
                check.null_ok = null_ok and None in values
                check.enum = [v for v in values if isinstance(v, str)]
            if "minLength" in keys:
                check.min_len = _nonneg_int(schema["minLength"])
            if "maxLength" in keys:
                check.max_len = _nonneg_int(schema["maxLength"])
        elif kind in ("int", "float"):
            if kind == "int" and value_types != {"integer"}:
                raise _Unsupported
            if kind == "float" and not (
                value_types is not None
                and "number" in value_types
                and value_types <= {"number", "integer"}
            ):
                raise _Unsupported
            allowed |= {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if key in keys:
                    bound = schema[key]
                    if isinstance(bound, bool) or not isinstance(bound, int | float):
                        raise _Unsupported
                    if not abs(bound) <= _EXACT_FLOAT:
                        raise _Unsupported
                    check.bounds.append((key, bound))
        elif kind == "bool":
            if value_types != {"boolean"}:
                raise _Unsupported
        elif kind == "struct":
            if value_types not in ({"object"}, None):
                raise _Unsupported
            allowed |= {"properties", "required", "additionalProperties"}
            props = schema.get("properties")
            if not isinstance(props, Mapping) or list(props) != node.field_names():
                raise _Unsupported
            required = schema.get("required", [])
            if not isinstance(required, list) or not set(required) <= set(props):
                raise _Unsupported
            extra = schema.get("additionalProperties", True)
            if extra is False:
                check.closed = self.closed = True
            elif extra not in (True, {}):
                raise _Unsupported
            for (name, child), sub in zip(node.fields, props.values(), strict=True):
                check.fields.append((name, self.compile(sub, child, stack), name in required))
        elif kind == "list":
            if value_types not in ({"array"}, None):
                raise _Unsupported
            allowed |= {"items", "minItems", "maxItems", "uniqueItems"}
            if schema.get("uniqueItems", False) is not False:
                raise _Unsupported
            assert node.item is not None
            if "items" not in schema:
                raise _Unsupported
            check.item = self.compile(schema["items"], node.item, stack)
            if "minItems" in keys:
                check.min_items = _nonneg_int(schema["minItems"])
            if "maxItems" in keys:
                check.max_items = _nonneg_int(schema["maxItems"])
        else:
            raise _Unsupported
        if keys - allowed:
            raise _Unsupported
        return check


def _is_plain_null(schema: Any) -> bool:
    return (
        isinstance(schema, Mapping)
        and schema.get("type") == "null"
        and set(schema) - ANNOTATIONS == {"type"}
    )


def _np(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


class _MaybeNull:
    """Per-row "the text may hold a null" flags, computed only when a check needs them."""

    def __init__(
        self,
        compute: Callable[[], np.ndarray | None],
        parents: np.ndarray | None = None,
        outer: _MaybeNull | None = None,
    ) -> None:
        self._compute = compute
        self._parents = parents
        self._outer = outer
        self._done = False
        self._value: np.ndarray | None = None

    def get(self) -> np.ndarray | None:
        if not self._done:
            if self._outer is not None and self._parents is not None:
                base = self._outer.get()
                self._value = None if base is None else base[self._parents]
            else:
                self._value = self._compute()
            self._done = True
        return self._value

    def child(self, parents: np.ndarray) -> _MaybeNull:
        return _MaybeNull(self._compute, parents, self)


def _unknown() -> None:
    return None


def _null_verdict(
    check: _Check, nulls: np.ndarray, required: bool | None, maybe_null: _MaybeNull
) -> bool | np.ndarray:
    """The verdict for rows whose value is an Arrow null (see ``_evaluate``)."""
    if required is None:
        return check.null_ok
    if required:
        return False
    if check.null_ok or not nulls.any():
        return check.null_ok
    flags = maybe_null.get()
    # certainly absent (valid) unless the row's text has a null
    return False if flags is None else ~flags


def _within(lengths: np.ndarray, low: int | None, high: int | None) -> np.ndarray:
    ok = np.ones(len(lengths), dtype=bool)
    if low is not None:
        ok &= lengths >= low
    if high is not None:
        ok &= lengths <= high
    return ok


def _strings_ok(check: _Check, arr: pa.Array, _maybe_null: _MaybeNull) -> np.ndarray:
    ok = np.ones(len(arr), dtype=bool)
    if check.pattern is not None:
        # Proven only on printable-ASCII strings, where RE2 and Python's re agree on
        # classes and "." (and RE2's "$", end of text only, matching implies Python's).
        found = _np(pc.fill_null(pc.match_substring_regex(arr, check.pattern), True))
        ok &= found & _printable_ascii(arr)
    if check.enum is not None:
        ok &= _np(pc.fill_null(pc.is_in(arr, value_set=pa.array(check.enum, pa.string())), True))
    if check.min_len is not None or check.max_len is not None:
        lengths = pc.fill_null(pc.utf8_length(arr), 0).to_numpy(zero_copy_only=False)
        ok &= _within(lengths, check.min_len, check.max_len)
    return ok


def _printable_ascii(arr: pa.Array) -> np.ndarray:
    """Per string: every character printable ASCII. One pass over the array's bytes,
    not a regular expression per string. Nulls are not judged here (the caller gives
    them their own verdict): a null's slot says whatever bytes its range holds."""
    if arr.type != pa.string():
        found = pc.invert(pc.match_substring_regex(arr, _NOT_PRINTABLE_ASCII))
        return _np(pc.fill_null(found, True))
    ok = np.ones(len(arr), dtype=bool)
    offsets_buffer, data = arr.buffers()[1], arr.buffers()[2]
    if not len(arr) or offsets_buffer is None or data is None:
        return ok
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    values = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    outside = np.flatnonzero((values < 0x20) | (values > 0x7E)) + offsets[0]
    if len(outside):  # the string each such byte is in (a null's range is empty)
        ok[np.searchsorted(offsets, outside, side="right") - 1] = False
    return ok


_COMPARE: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "minimum": np.greater_equal,
    "maximum": np.less_equal,
    "exclusiveMinimum": np.greater,
    "exclusiveMaximum": np.less,
}


def _numbers_ok(check: _Check, arr: pa.Array, _maybe_null: _MaybeNull) -> np.ndarray:
    ok = np.ones(len(arr), dtype=bool)
    if check.kind == "float":
        values = pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False)
        ok &= np.isfinite(values)
    else:
        values = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)
    if check.bounds:
        ok &= np.abs(values.astype(np.float64)) <= _EXACT_FLOAT
        for key, bound in check.bounds:
            ok &= _COMPARE[key](values, bound)
    return ok


def _struct_ok(check: _Check, arr: pa.Array, maybe_null: _MaybeNull) -> np.ndarray:
    ok = np.ones(len(arr), dtype=bool)
    for name, child, req in check.fields:
        ok &= _evaluate(child, _struct_field(arr, name), req, maybe_null)
    return ok


def _list_ok(check: _Check, arr: pa.Array, maybe_null: _MaybeNull) -> np.ndarray:
    assert check.item is not None
    ok = np.ones(len(arr), dtype=bool)
    if check.min_items is not None or check.max_items is not None:
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        ok &= _within(lengths, check.min_items, check.max_items)
    flat = arr.flatten()
    if len(flat):
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        item_ok = _evaluate(check.item, flat, None, maybe_null.child(parents))
        if not item_ok.all():
            ok[parents[~item_ok]] = False
    return ok


_KIND_CHECKS: dict[str, Callable[[_Check, pa.Array, _MaybeNull], np.ndarray]] = {
    **dict.fromkeys(_STRINGY, _strings_ok),
    "int": _numbers_ok,
    "float": _numbers_ok,
    "struct": _struct_ok,
    "list": _list_ok,
}


def _evaluate(
    check: _Check, arr: pa.Array, required: bool | None, maybe_null: _MaybeNull
) -> np.ndarray:
    """True where the value is certainly valid. ``required`` is None for list items
    (where an Arrow null is a JSON null) and else whether the property is required: an
    Arrow null is then an absent key, or a JSON null where ``maybe_null`` (per row: its
    text holds a ``null`` token; None: unknown) allows it."""
    n = len(arr)
    nulls = _np(arr.is_null()) if arr.null_count else np.zeros(n, dtype=bool)
    null_verdict = _null_verdict(check, nulls, required, maybe_null)
    kind_check = _KIND_CHECKS.get(check.kind)
    ok = kind_check(check, arr, maybe_null) if kind_check else np.ones(n, dtype=bool)
    return np.where(nulls, null_verdict, ok)


def _struct_field(arr: pa.Array, name: str) -> pa.Array:
    index = arr.type.get_field_index(name)
    return arr.field(index)


class Certifier:
    """Proves rows of a strictly parsed Arrow batch valid, vectorised (see module doc).

    ``Certifier.build(layout)`` is None when the record schema uses anything outside the
    supported subset. ``closed`` says the strict parse must reject unknown properties.
    """

    def __init__(self, check: _Check, closed: bool) -> None:
        self._check = check
        self.closed = closed

    @classmethod
    def build(cls, layout: Layout) -> Certifier | None:
        if not layout.is_object:
            return None
        compiler = _Compiler(layout.root)
        try:
            check = compiler.compile(layout.record_sub, layout.node)
        except (_Unsupported, RecursionError):
            return None
        if check.kind != "struct":
            return None
        return cls(check, compiler.closed)

    def certify(
        self,
        batch: pa.RecordBatch | pa.Table,
        maybe_null: Callable[[], np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """A boolean per row: True where the row is certainly valid. ``maybe_null``
        computes, when a check needs it, which rows' text may hold a JSON ``null`` (see
        ``rows_with_null``); without it an Arrow null may always be a JSON null."""
        whole = _MaybeNull(maybe_null or _unknown)
        # Chunk by chunk (pyarrow.json parses a block in several): combining them first
        # would copy the whole block.
        parts = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
        verdicts, start = [np.ones(0, dtype=bool)], 0
        for part in parts:
            lazy = whole if len(parts) == 1 else _MaybeNull(partial(_rows, whole, start, len(part)))
            verdicts.append(_evaluate(self._check, part.to_struct_array(), None, lazy))
            start += len(part)
        return np.concatenate(verdicts)


def _rows(whole: _MaybeNull, start: int, n: int) -> np.ndarray | None:
    flags = whole.get()
    return None if flags is None else flags[start : start + n]


def rows_with_null(data: Any, n_rows: int) -> np.ndarray | None:
    """Per line of ``data`` (bytes or a buffer; one record per line, each ending in a line
    break): whether the text holds ``null`` anywhere (inside a string too, which only
    makes the check conservative). None when the lines are not the rows one to one."""
    view = memoryview(data)
    if _NULL.search(view) is None:
        return np.zeros(n_rows, dtype=bool)
    breaks = np.flatnonzero(np.frombuffer(view, dtype=np.uint8) == 10)
    if len(breaks) != n_rows:
        return None
    hits = np.fromiter((m.start() for m in _NULL.finditer(view)), dtype=np.int64)
    out = np.zeros(n_rows, dtype=bool)
    out[np.searchsorted(breaks, hits)] = True
    return out


_NULL = re.compile(b"null")
