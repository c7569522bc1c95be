r"""Validating result records against the outputSchema, fast and with jsonschema's verdicts.

Three tiers, each one exact:

1. ``Certifier``: for file results read by the strict Arrow parser (``_readers``), a
   vectorised check proves rows valid without building Python objects. It covers the
   common subset (types, nullability, ``required``, ``properties``, ``items``, string
   enums and lengths, numeric bounds, item counts, closed objects); a row it cannot
   prove valid is *uncertain*, never invalid, and goes to tier 2. A schema with any
   other keyword is not certified at all.
2. ``jsonschema_rs`` (compiled, ``validate_formats=False`` since jsonschema does not
   assert ``format`` by default) for records as Python values, in chunks: one call
   validates a whole chunk through an ``{"type": "array", "items": ...}`` wrapper and
   only a failing chunk is re-checked record by record.
   Its verdicts are final both ways, and its errors give the messages (in jsonschema's
   wording for the common keywords).
3. ``jsonschema.Draft202012Validator``: the reference, only for records where the two
   engines can really disagree, found by a cheap compiled test per chunk: NaN/Infinity
   (non-standard JSON), a string holding other than printable ASCII under a regex using
   ``\d \w \s \b . lookaround`` or non-ASCII (only a string ending in a newline under
   a ``$`` anchor), any number under a fractional ``multipleOf``. A schema with regex
   features not analysed (inline flags, other escapes) is judged by the reference whole.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema_rs
import numpy as np
from jsonschema.exceptions import relevance

from .._exceptions import InvalidInputError
from .refs import DEFS_KEYWORDS, hoist_defs

__all__ = [
    "MODES",
    "Collector",
    "RecordValidator",
    "check_mode",
    "contains_nonfinite",
    "json_path",
]

MODES = ("raise", "warn", "flag", "drop", "off")
MAX_ERRORS = 20
_CHUNK = 512


def check_mode(validate: Any) -> str:
    """The validation mode, or ``InvalidInputError`` naming ``validate``."""
    if validate not in MODES:
        raise InvalidInputError(
            f"validate: expected one of {', '.join(repr(m) for m in MODES)}, got {validate!r}",
            field="validate",
        )
    return str(validate)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def json_path(parts: Iterable[Any]) -> str:
    """``["a", 0, "b c"]`` -> ``$.a[0]['b c']``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def contains_nonfinite(value: Any) -> bool:
    """True when a value holds NaN or +-Infinity (JSON has neither; Python's json accepts
    them, and the two validators judge them differently)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(contains_nonfinite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_nonfinite(v) for v in value)
    return False


# -- where jsonschema_rs and jsonschema disagree ---------------------------------------

# Regex features whose meaning differs between Python's re and the Rust engine: \d \w
# \s \b (Unicode vs ASCII), "$" (Python also matches before a final newline), "."
# (line terminators), lookaround and non-ASCII text. They differ only on strings holding
# something other than printable ASCII ("$": only on strings ending in a newline), so
# only records holding such a string go to the reference. Inline flags, named groups and
# other escapes are not analysed: a schema using them is judged by the reference whole.
_ESCAPED_PUNCT = re.compile(r"\\[\\^$.|?*+()\[\]{}/\-]")
_KNOWN_ESCAPE = re.compile(r"\\(?:[dDwWsSbBntrfv]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")
_KNOWN_GROUP = re.compile(r"\(\?(?::|=|!|<=|<!)")
_TEXT_RISK = re.compile(r"\.|[^\x00-\x7f]")
_ALL_TYPES = ["null", "boolean", "number", "string", "array", "object"]
# Strings the two engines may judge differently, as patterns in the Rust engine's syntax.
_NOT_PRINTABLE_ASCII = "[^\\x20-\\x7e]"
_FINAL_NEWLINE = "\\n$"


def _python_dollar(pattern: str) -> str | None:
    """``pattern`` with each ``$`` anchor made to match as Python's does (also before a
    final newline): ``\n?$`` in the Rust engine, which is equivalent wherever the anchor
    ends an alternative. None when some ``$`` is followed by more pattern."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]" or pattern[i + 1 : i + 3] == "^]":
                out.append(pattern[i : i + 2 if pattern[i + 1] == "]" else i + 3])
                i += len(out[-1])
                continue
        elif c == "$":
            if pattern[i + 1 : i + 2] not in ("", "|", ")"):
                return None
            out.append("\\n?$")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class _Risk:
    """Which records the two engines may judge differently under one schema, and the
    schema made to agree where a rewrite can (``$`` anchors, see ``_python_dollar``)."""

    whole: bool = False  # every record (a feature not analysed)
    strings: str | None = None  # records holding a string matching this (Rust syntax)
    numbers: bool = False  # records holding any number (a fractional multipleOf)
    rewritten: dict[str, str] = field(default_factory=dict)  # Rust pattern -> original

    def pattern(self, pattern: str) -> str:
        """Note the pattern's risk; the pattern to give the Rust engine."""
        plain = _ESCAPED_PUNCT.sub("", pattern)
        known = _KNOWN_GROUP.sub("", _KNOWN_ESCAPE.sub("", plain))
        if any(part in known for part in ("\\", "(?", "[:", "{,")):
            self.whole = True  # POSIX classes and "{,n}" are read differently too
        elif known != plain or _TEXT_RISK.search(known):
            self.strings = _NOT_PRINTABLE_ASCII
        if "$" not in plain:
            return pattern
        fixed = _python_dollar(pattern)
        if fixed is None:
            self.whole = True
            return pattern
        self.rewritten[fixed] = pattern
        return fixed

    def scan(self, schema: Any) -> Any:
        """Note the schema's risks; the schema to give the Rust engine."""
        if isinstance(schema, Mapping):
            out: dict[str, Any] = {}
            for key, value in schema.items():
                if key in ("enum", "const", "default", "examples"):
                    out[key] = value
                    continue
                if key == "multipleOf" and not (
                    isinstance(value, int) and not isinstance(value, bool)
                ):
                    self.numbers = True
                if key == "pattern" and isinstance(value, str):
                    out[key] = self.pattern(value)
                elif key == "patternProperties" and isinstance(value, Mapping):
                    out[key] = {self.pattern(str(p)): self.scan(v) for p, v in value.items()}
                else:
                    out[key] = self.scan(value)
            return out
        if isinstance(schema, list):
            return [self.scan(v) for v in schema]
        return schema

    def detector(self, *, chunk: bool) -> dict[str, Any]:
        """A schema (for the Rust engine) that a record fails when it holds a value the
        engines may judge differently: NaN/Infinity (no JSON type for the Rust engine)
        always, plus this schema's risky strings or numbers. With ``chunk``: an array
        schema whose errors are at the positions of such records."""
        types = [t for t in _ALL_TYPES if not (self.numbers and t == "number")]
        safe: dict[str, Any] = {
            "type": types,
            "items": {"$ref": "#/$defs/safe"},
            "additionalProperties": {"$ref": "#/$defs/safe"},
        }
        if self.strings is not None:
            safe["propertyNames"] = {"not": {"pattern": self.strings}}
            safe["not"] = {"type": "string", "pattern": self.strings}
        root: dict[str, Any] = {"$defs": {"safe": safe}}
        if chunk:
            root.update(type="array", items={"$ref": "#/$defs/safe"})
        else:
            root["$ref"] = "#/$defs/safe"
        return root


def _rs_disagrees(schema: Any) -> bool:
    """Whether the two engines may disagree on some record (see ``_Risk``)."""
    risk = _Risk()
    risk.scan(schema)
    return risk.whole or risk.strings is not None or risk.numbers


def _chunk_schema(schema: Mapping[str, Any] | bool) -> dict[str, Any] | None:
    """``{"type": "array", "items": schema}`` with the record's ``$defs`` hoisted to the
    root so its ``#/$defs/...`` references still resolve; None when that cannot hold."""
    if isinstance(schema, bool):
        return {"type": "array", "items": schema}
    items = {k: v for k, v in schema.items() if k not in (*DEFS_KEYWORDS, "$schema")}
    return hoist_defs({"type": "array", "items": items}, schema)


def _compile(schema: Any) -> Any:
    try:
        return jsonschema_rs.Draft202012Validator(schema, validate_formats=False)
    except Exception:  # an engine limitation: the reference validator decides
        return None


_RS_FAILURES = (ValueError, TypeError, OverflowError)


def _rs_message(error: Any, patterns: Mapping[str, str]) -> str:
    """A Rust engine error in jsonschema's own wording (its message when not a common
    keyword), so messages read the same whichever engine judged the record."""
    kind, inst = error.kind, error.instance
    k = jsonschema_rs.ValidationErrorKind
    if isinstance(kind, k.Required):
        return f"{kind.property!r} is a required property"
    if isinstance(kind, k.Type):
        types = kind.types if isinstance(kind.types, list) else [kind.types]
        return f"{inst!r} is not of type {', '.join(repr(str(t)) for t in types)}"
    if isinstance(kind, k.Pattern):
        return f"{inst!r} does not match {patterns.get(kind.pattern, kind.pattern)!r}"
    if isinstance(kind, k.Enum):
        return f"{inst!r} is not one of {kind.options!r}"
    if isinstance(kind, k.Minimum):
        return f"{inst!r} is less than the minimum of {kind.limit!r}"
    if isinstance(kind, k.Maximum):
        return f"{inst!r} is greater than the maximum of {kind.limit!r}"
    if isinstance(kind, k.MinLength | k.MinItems):
        return f"{inst!r} {'should be non-empty' if kind.limit == 1 else 'is too short'}"
    if isinstance(kind, k.MaxLength | k.MaxItems):
        return f"{inst!r} {'is expected to be empty' if kind.limit == 0 else 'is too long'}"
    return str(error.message)


class RecordValidator:
    """Validates records (JSON values) with jsonschema's verdicts, fast.

    The compiled engine (jsonschema_rs) judges every record, both ways, except those a
    cheap test (itself a compiled schema, run on whole chunks) finds holding a value the
    two engines may judge differently: NaN/Infinity, and, under this schema only, a
    string or number its risky keywords treat differently (``_Risk``). Those, records the
    compiled engine cannot take (huge integers, non-JSON types) and every record under a
    schema it cannot compile go to ``jsonschema`` (the reference). So the cost does not
    depend on how many records are invalid.

    Example:
        >>> v = RecordValidator({"type": "object", "required": ["a"]})
        >>> v.verdicts([{"a": 1}, {}])
        [True, False]
        >>> v.explain({})
        [('$', "'a' is a required property")]
    """

    def __init__(self, schema: Mapping[str, Any] | bool) -> None:
        self.schema = schema
        plain: Any = schema if isinstance(schema, bool) else dict(schema)
        self._py = jsonschema.Draft202012Validator(plain)
        risk = self._risk = _Risk()
        agreeing = risk.scan(plain)  # "$" anchors rewritten to match as Python's do
        self._rs: Any = None if risk.whole else _compile(agreeing)
        chunk = _chunk_schema(agreeing) if self._rs is not None else None
        self._rs_chunk: Any = None if chunk is None else _compile(chunk)
        self._risky: Any = _compile(risk.detector(chunk=False))
        self._risky_items: Any = _compile(risk.detector(chunk=True))
        if self._risky is None or self._risky_items is None:
            self._rs = self._rs_chunk = None

    @property
    def compiled(self) -> bool:
        """Whether the compiled engine is used (else every record goes to jsonschema)."""
        return self._rs is not None

    def needs_reference(self, record: Any) -> bool:
        """Whether only the reference may judge ``record`` (see the class docstring)."""
        if self._rs is None:
            return True
        try:
            return not self._risky.is_valid(record)
        except _RS_FAILURES:
            return True

    def is_valid(self, record: Any, *, reference: bool = False) -> bool:
        if reference or self.needs_reference(record):
            return bool(self._py.is_valid(record))
        try:
            return bool(self._rs.is_valid(record))
        except _RS_FAILURES:
            return bool(self._py.is_valid(record))

    def _risky_rows(self, chunk: list[Any]) -> set[int] | None:
        """Positions of the chunk's records only the reference may judge (None: the
        test itself failed, so every record)."""
        try:
            if self._risky_items.is_valid(chunk):
                return set()
            return {int(e.instance_path[0]) for e in self._risky_items.iter_errors(chunk)}
        except _RS_FAILURES:
            return None

    def judge(self, records: Sequence[Any]) -> tuple[list[bool], list[bool]]:
        """``(verdicts, judged by the reference)`` per record; verdicts are identical to
        ``Draft202012Validator(schema).is_valid``."""
        if self._rs is None:
            return [bool(self._py.is_valid(r)) for r in records], [True] * len(records)
        out: list[bool] = []
        ref: list[bool] = []
        py, rs = self._py.is_valid, self._rs.is_valid
        for start in range(0, len(records), _CHUNK):
            chunk = list(records[start : start + _CHUNK])
            risky = self._risky_rows(chunk)
            if risky is None:
                risky = set(range(len(chunk)))
            if not risky and self._rs_chunk is not None:
                try:
                    if self._rs_chunk.is_valid(chunk):
                        out.extend([True] * len(chunk))
                        ref.extend([False] * len(chunk))
                        continue
                except _RS_FAILURES:
                    pass
            for k, r in enumerate(chunk):
                reference = k in risky
                if not reference:
                    try:
                        out.append(bool(rs(r)))
                        ref.append(False)
                        continue
                    except _RS_FAILURES:
                        reference = True
                out.append(bool(py(r)))
                ref.append(True)
        return out, ref

    def verdicts(self, records: Sequence[Any], *, reference: bool = False) -> list[bool]:
        """One verdict per record, identical to ``Draft202012Validator(schema).is_valid``."""
        if reference:
            return [bool(self._py.is_valid(r)) for r in records]
        return self.judge(records)[0]

    def explain(
        self, record: Any, limit: int = 5, *, reference: bool | None = None
    ) -> list[tuple[str, str]]:
        """``(json_path, message)`` of the most relevant errors of one record (from the
        compiled engine, in jsonschema's wording, unless only the reference may judge it;
        ``reference``: whether it may, when the caller knows already)."""
        if reference is None:
            reference = self.needs_reference(record)
        if not reference and self._rs is not None:
            try:
                found = list(self._rs.iter_errors(record))
            except _RS_FAILURES:
                found = None
            if found:
                found.sort(key=lambda e: -len(e.instance_path))
                return [
                    (json_path(e.instance_path), _rs_message(e, self._risk.rewritten))
                    for e in found[:limit]
                ]
        errors = sorted(self._py.iter_errors(record), key=relevance)
        return [(json_path(e.absolute_path), e.message) for e in errors[:limit]]


@dataclass
class Collector:
    """Accumulates verdicts over batches: validity per row, first errors, messages."""

    validator: RecordValidator | None
    keep_messages: bool = False
    max_errors: int = MAX_ERRORS
    valid: list[np.ndarray] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    messages: dict[int, str] = field(default_factory=dict)
    n_rows: int = 0
    n_invalid: int = 0

    def add(
        self,
        n: int,
        get_record: Callable[[int], tuple[Any, bool]],
        certified: np.ndarray | None = None,
    ) -> np.ndarray:
        """Validate ``n`` rows; ``get_record(i)`` gives (record, needs_reference).

        ``certified`` marks rows already proven valid. Returns the verdicts.
        """
        offset = self.n_rows
        self.n_rows += n
        verdict = np.ones(n, dtype=bool)
        if self.validator is None:
            self.valid.append(verdict)
            return verdict
        todo = np.arange(n) if certified is None else np.flatnonzero(~certified)
        if len(todo):
            fetched = [get_record(int(i)) for i in todo]
            plain = [k for k, (_, ref) in enumerate(fetched) if not ref]
            results = [False] * len(fetched)
            by_reference = [True] * len(fetched)
            judged, referenced = self.validator.judge([fetched[k][0] for k in plain])
            for k, ok, was_ref in zip(plain, judged, referenced, strict=True):
                results[k], by_reference[k] = ok, was_ref
            for k, (record, ref) in enumerate(fetched):
                if ref:
                    results[k] = self.validator.is_valid(record, reference=True)
            for k, i in enumerate(todo):
                if results[k]:
                    continue
                verdict[i] = False
                self.n_invalid += 1
                row = offset + int(i)
                want_errors = len(self.errors) < self.max_errors
                if want_errors or self.keep_messages:
                    found = self.validator.explain(fetched[k][0], reference=by_reference[k])
                    if want_errors:
                        room = self.max_errors - len(self.errors)
                        self.errors.extend((row, p, m) for p, m in found[:room])
                    if self.keep_messages:
                        self.messages[row] = "; ".join(f"{p}: {m}" for p, m in found)
        self.valid.append(verdict)
        return verdict

    def reset(self) -> None:
        """Forget every verdict (a reader starting over)."""
        self.valid.clear()
        self.errors.clear()
        self.messages.clear()
        self.n_rows = self.n_invalid = 0

    def mask(self) -> np.ndarray:
        if not self.valid:
            return np.ones(0, dtype=bool)
        return np.concatenate(self.valid)
