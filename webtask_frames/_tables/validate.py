"""Validating result records against the outputSchema, fast and with jsonschema's verdicts.

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
3. ``jsonschema.Draft202012Validator``: the reference. It decides every record that
   jsonschema_rs rejects (and gives the messages), and every record when the schema
   uses keywords where the two engines disagree (``multipleOf`` with a fraction, regex
   features outside a safe subset) or a record holds NaN/Infinity (non-standard JSON).
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
# \s \b (Unicode vs ASCII), "$" (Python matches before a final newline), "." (line
# terminators), inline flags and lookaround, and non-ASCII text.
_ESCAPED_PUNCT = re.compile(r"\\[\\^$.|?*+()\[\]{}/\-]")
_RISKY_REGEX = re.compile(r"\\|\$|\.|\(\?|[^\x00-\x7f]")


def _risky_pattern(pattern: str) -> bool:
    return bool(_RISKY_REGEX.search(_ESCAPED_PUNCT.sub("", pattern)))


def _rs_disagrees(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key in ("enum", "const", "default", "examples"):
                continue
            if key == "multipleOf" and not (isinstance(value, int) and not isinstance(value, bool)):
                return True
            if key == "pattern" and isinstance(value, str) and _risky_pattern(value):
                return True
            if (
                key == "patternProperties"
                and isinstance(value, Mapping)
                and any(_risky_pattern(str(p)) for p in value)
            ):
                return True
            if _rs_disagrees(value):
                return True
    elif isinstance(schema, list):
        return any(_rs_disagrees(v) for v in schema)
    return False


def _chunk_schema(schema: Mapping[str, Any] | bool) -> dict[str, Any] | None:
    """``{"type": "array", "items": schema}`` with the record's ``$defs`` hoisted to the
    root so its ``#/$defs/...`` references still resolve; None when that cannot hold."""
    if isinstance(schema, bool):
        return {"type": "array", "items": schema}
    items = {k: v for k, v in schema.items() if k not in (*DEFS_KEYWORDS, "$schema")}
    return hoist_defs({"type": "array", "items": items}, schema)


class RecordValidator:
    """Validates records (JSON values) with jsonschema's verdicts, fast.

    Records must be what ``json.loads`` yields for standard JSON; a record holding
    NaN/Infinity is detected by the callers that parse (see ``contains_nonfinite``) and
    passed with ``reference=True``.

    Example:
        >>> v = RecordValidator({"type": "object", "required": ["a"]})
        >>> v.verdicts([{"a": 1}, {}])
        [True, False]
        >>> v.explain({})
        [('$', "'a' is a required property")]
    """

    def __init__(self, schema: Mapping[str, Any] | bool) -> None:
        self.schema = schema
        self._py = jsonschema.Draft202012Validator(
            schema if isinstance(schema, bool) else dict(schema)
        )
        self._rs: Any = None
        self._rs_chunk: Any = None
        if not _rs_disagrees(schema):
            plain: Any = schema if isinstance(schema, bool) else dict(schema)
            try:
                self._rs = jsonschema_rs.Draft202012Validator(plain, validate_formats=False)
            except Exception:  # an engine limitation: the reference validator decides
                self._rs = None
            chunk = _chunk_schema(schema)
            if self._rs is not None and chunk is not None:
                try:
                    self._rs_chunk = jsonschema_rs.Draft202012Validator(
                        chunk, validate_formats=False
                    )
                except Exception:
                    self._rs_chunk = None

    @property
    def compiled(self) -> bool:
        """Whether the compiled engine is used (else every record goes to jsonschema)."""
        return self._rs is not None

    def is_valid(self, record: Any, *, reference: bool = False) -> bool:
        if self._rs is not None and not reference:
            try:
                if self._rs.is_valid(record):
                    return True
            except (ValueError, TypeError, OverflowError):
                pass
        return bool(self._py.is_valid(record))

    def verdicts(self, records: Sequence[Any], *, reference: bool = False) -> list[bool]:
        """One verdict per record, identical to ``Draft202012Validator(schema).is_valid``."""
        if self._rs is None or reference:
            return [bool(self._py.is_valid(r)) for r in records]
        out: list[bool] = []
        for start in range(0, len(records), _CHUNK):
            chunk = records[start : start + _CHUNK]
            if self._rs_chunk is not None:
                try:
                    if self._rs_chunk.is_valid(list(chunk)):
                        out.extend([True] * len(chunk))
                        continue
                except (ValueError, TypeError, OverflowError):
                    pass
            out.extend(self.is_valid(r) for r in chunk)
        return out

    def explain(self, record: Any, limit: int = 5) -> list[tuple[str, str]]:
        """``(json_path, message)`` of the most relevant errors of one record."""
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
            for k, ok in zip(
                plain, self.validator.verdicts([fetched[k][0] for k in plain]), strict=True
            ):
                results[k] = ok
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
                    found = self.validator.explain(fetched[k][0])
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
