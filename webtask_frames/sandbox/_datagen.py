"""Deterministic, schema-conforming fake results.

:func:`generate` turns ``(outputSchema, parameters, seed material, rows)`` into
JSON data that validates against the schema. Each record of the main list gets
its own RNG seeded from its index, so a result can be regenerated on demand
(file downloads are never stored) and ``rows=N`` is a prefix of ``rows=N+k``.

Supported keywords: ``type`` (incl. lists with ``"null"``), ``enum``, ``const``,
``properties``/``required``/``additionalProperties``/``min``/``maxProperties``/
``dependentRequired``, ``items``/``prefixItems``/``min``/``maxItems``/
``uniqueItems``/``contains``, ``minLength``/``maxLength``/``pattern`` (via the
stdlib regex parser), ``format`` (date-time, date, time, uri, email, uuid,
hostname, ipv4, ipv6, ...), numeric bounds incl. exclusive ones and
``multipleOf``, ``$ref``/``$defs``/``definitions`` (local), ``allOf`` (merged),
``anyOf``/``oneOf`` (one branch; ``oneOf`` is checked for exclusivity).
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

from ._fakes import (
    FORMATS,
    WORDS,
    category,
    default_record,
    from_pattern,
    hinted_string,
    number_range,
)
from ._jsonschema import (
    ANNOTATIONS,
    GenerationError,
    as_types,
    format_checker,
    is_multiple,
    merge,
    resolve_pointer,
    unique_key,
)

__all__ = [
    "GenerationError",
    "default_record",
    "find_main_list",
    "generate",
    "main_records",
    "resolve_pointer",
]

MAX_DEPTH = 40  # hard stop for runaway recursive schemas
SOFT_DEPTH = 5  # below this, only required fields and minimal arrays
NULL_PROBABILITY = 0.1
OPTIONAL_PROBABILITY = 0.85


# Keywords that carry no constraint; a $ref with only these beside it is a plain alias.
def _singular(name: str) -> str:
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss") and len(name) > 3:
        return name[:-1]
    return name


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_MISSING = object()


class _Generator:
    def __init__(self, root: Any, parameters: Mapping[str, Any]) -> None:
        self.root = root
        self.params = dict(parameters)
        self.norm_params = {_norm(k): v for k, v in parameters.items()}
        self._flat: dict[int, dict[str, Any]] = {}
        self._validators: dict[int, Any] = {}
        self._param_ok: dict[tuple[int, str], bool] = {}
        # Caches are keyed by id(); holding every keyed object alive guarantees
        # an id is never reused by a different (temporary) schema.
        self._alive: list[Any] = []
        self._resolving: set[int] = set()  # $ref targets being flattened (cycle guard)

    # -- schema plumbing ---------------------------------------------------
    def flatten(self, schema: Any) -> dict[str, Any]:
        """Resolve ``$ref`` and ``allOf`` into a single dict schema."""
        if schema is True or schema is None:
            return {}
        if schema is False:
            raise GenerationError("the schema 'false' admits no value")
        key = id(schema)
        hit = self._flat.get(key)
        if hit is not None:
            return hit
        cur: dict[str, Any] = dict(schema)
        for _ in range(64):
            ref = cur.get("$ref")
            if not isinstance(ref, str):
                break
            try:
                target = resolve_pointer(self.root, ref)
            except LookupError as exc:
                raise GenerationError(f"unresolvable $ref {ref!r}") from exc
            rest = {k: v for k, v in cur.items() if k != "$ref" and k not in ANNOTATIONS}
            rest.pop("$defs", None)
            rest.pop("definitions", None)
            if id(target) in self._resolving:
                raise GenerationError(f"$ref {ref!r} refers to itself without progress")
            self._resolving.add(id(target))
            try:
                base = self.flatten(target)
            finally:
                self._resolving.discard(id(target))
            cur = merge(base, rest) if rest else dict(base)
        else:
            raise GenerationError("$ref chain does not terminate")
        if "allOf" in cur:
            parts = cur.pop("allOf")
            for part in parts:
                cur = merge(cur, self.flatten(part))
            cur = self.flatten(cur) if "allOf" in cur or "$ref" in cur else cur
        self._flat[key] = cur
        self._alive.append(schema)
        return cur

    def validator(self, schema: Any) -> Any:
        """A (cached) validator for ``schema`` that can see the root's ``$defs``."""
        key = id(schema)
        v = self._validators.get(key)
        if v is None:
            from jsonschema import Draft202012Validator

            wrapper: dict[str, Any] = {"allOf": [schema]}
            if isinstance(self.root, dict):
                for defs in ("$defs", "definitions"):
                    if defs in self.root:
                        wrapper[defs] = self.root[defs]
            v = Draft202012Validator(wrapper, format_checker=format_checker())
            self._validators[key] = v
            self._alive.append(schema)
        return v

    def is_valid(self, value: Any, schema: Any) -> bool:
        try:
            return bool(self.validator(schema).is_valid(value))
        except Exception:  # unresolvable refs and the like: treat as "no"
            return False

    def param_for(self, name: str, schema: Any) -> Any:
        """The parameter value for property ``name`` if it fits ``schema``."""
        if name in self.params:
            value = self.params[name]
        else:
            value = self.norm_params.get(_norm(name), _MISSING)
        if value is _MISSING:
            return _MISSING
        key = (id(schema), name)
        ok = self._param_ok.get(key)
        if ok is None:
            ok = self.is_valid(value, schema) and self._formats_checkable(schema)
            self._param_ok[key] = ok
            self._alive.append(schema)
        return value if ok else _MISSING

    def _formats_checkable(self, schema: Any) -> bool:
        """Only inject into fields whose ``format`` we can actually verify."""
        try:
            flat = self.flatten(schema)
        except GenerationError:
            return False
        fmt = flat.get("format")
        return fmt is None or fmt in format_checker().checkers

    # -- values ------------------------------------------------------------
    def value(self, schema: Any, rng: random.Random, depth: int, hint: str) -> Any:
        if depth > MAX_DEPTH:
            raise GenerationError("schema recursion is too deep to satisfy")
        s = self.flatten(schema)
        if "const" in s:
            return copy.deepcopy(s["const"])
        if "enum" in s:
            if not s["enum"]:
                raise GenerationError("empty enum")
            return copy.deepcopy(rng.choice(s["enum"]))
        for combinator in ("oneOf", "anyOf"):
            if combinator in s:
                return self.branch(s, combinator, rng, depth, hint)
        types = as_types(s)
        non_null = [t for t in types if t != "null"]
        if "null" in types and (not non_null or rng.random() < NULL_PROBABILITY):
            return None
        if "null" in types and depth > SOFT_DEPTH:
            return None
        t = rng.choice(non_null)
        if t == "object":
            return self.obj(s, rng, depth, hint)
        if t == "array":
            return self.array(s, rng, depth, hint, None)
        if t == "string":
            return self.string(s, rng, hint)
        if t == "integer":
            return self.number(s, rng, hint, integer=True)
        if t == "number":
            return self.number(s, rng, hint, integer=False)
        if t == "boolean":
            return rng.random() < 0.5
        raise GenerationError(f"unknown type {t!r}")

    def branch(
        self, s: dict[str, Any], combinator: str, rng: random.Random, depth: int, hint: str
    ) -> Any:
        branches = list(s[combinator])
        rest = {k: v for k, v in s.items() if k != combinator}
        order = list(range(len(branches)))
        rng.shuffle(order)
        # Prefer non-null branches (Optional[X] should usually be X), and null
        # ones deep down so recursive models terminate.
        nullish = [i for i in order if self._is_null_schema(branches[i])]
        others = [i for i in order if i not in nullish]
        if depth > SOFT_DEPTH or rng.random() < NULL_PROBABILITY:
            order = nullish + others
        else:
            order = others + nullish
        last_error: Exception | None = None
        for i in order:
            try:
                merged = merge(rest, self.flatten(branches[i])) if rest else branches[i]
                value = self.value(merged, rng, depth + 1, hint)
            except GenerationError as exc:
                last_error = exc
                continue
            if combinator == "oneOf" and not self.is_valid(value, s):
                continue
            return value
        raise GenerationError(f"no {combinator} branch could be satisfied: {last_error}")

    def _is_null_schema(self, schema: Any) -> bool:
        try:
            flat = self.flatten(schema)
        except GenerationError:
            return False
        return flat.get("type") == "null" or flat.get("const", 0) is None

    def string(self, s: Mapping[str, Any], rng: random.Random, hint: str) -> str:
        fmt = s.get("format")
        pattern = s.get("pattern")
        if fmt in FORMATS:
            text = str(FORMATS[fmt](rng))
        elif isinstance(pattern, str):
            text = hinted_string(rng, hint)
            if not re.search(pattern, text):
                for _ in range(8):
                    candidate = from_pattern(pattern, rng)
                    if candidate is not None and re.search(pattern, candidate):
                        text = candidate
                        break
        else:
            text = hinted_string(rng, hint)
        min_len = int(s.get("minLength", 0))
        max_len = s.get("maxLength")
        if len(text) < min_len:
            if fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
                text = text + "/" + "x" * (min_len - len(text) - 1)
            elif fmt in ("email", "idn-email") and "@" in text:
                local, domain = text.split("@", 1)
                text = local + "x" * (min_len - len(text)) + "@" + domain
            else:
                while len(text) < min_len:
                    text += " " + rng.choice(WORDS)
        if max_len is not None and len(text) > int(max_len):
            text = text[: int(max_len)]
            if text.endswith(" ") and text:
                text = text[:-1] + "x"
        return text[: int(max_len)] if max_len is not None else text

    def number(self, s: Mapping[str, Any], rng: random.Random, hint: str, *, integer: bool) -> Any:
        lo: float | None = s.get("minimum")
        hi: float | None = s.get("maximum")
        xlo = s.get("exclusiveMinimum")
        xhi = s.get("exclusiveMaximum")
        if xlo is not None and (lo is None or xlo >= lo):
            lo = xlo
        if xhi is not None and (hi is None or xhi <= hi):
            hi = xhi
        dlo, dhi = number_range(hint)
        if lo is None and hi is None:
            lo, hi = dlo, dhi
        elif lo is None:
            lo = min(dlo, float(cast(float, hi)) - (dhi - dlo))
        elif hi is None:
            hi = max(dhi, lo + (dhi - dlo))
        assert lo is not None
        assert hi is not None
        mult = s.get("multipleOf")

        def ok(v: float) -> bool:
            if v < lo or v > hi:
                return False
            if xlo is not None and v <= xlo:
                return False
            if xhi is not None and v >= xhi:
                return False
            return mult is None or is_multiple(v, mult)

        if integer or (mult is not None and float(mult).is_integer()):
            ilo, ihi = math.ceil(lo), math.floor(hi)
            if xlo is not None and ilo <= xlo:
                ilo = math.floor(xlo) + 1
            if xhi is not None and ihi >= xhi:
                ihi = math.ceil(xhi) - 1
            if mult is not None:
                m = Decimal(str(mult))
                klo = math.ceil(Decimal(ilo) / m)
                khi = math.floor(Decimal(ihi) / m)
                for _ in range(64):
                    if klo > khi:
                        break
                    k = rng.randint(klo, khi)
                    v_dec = Decimal(k) * m
                    if v_dec == v_dec.to_integral_value() and ok(int(v_dec)):
                        return int(v_dec)
                for k in range(klo, min(khi, klo + 10_000) + 1):
                    v_dec = Decimal(k) * m
                    if v_dec == v_dec.to_integral_value() and ok(int(v_dec)):
                        return int(v_dec)
                raise GenerationError("no integer satisfies the numeric constraints")
            for _ in range(16):
                if ilo > ihi:
                    break
                v_int = rng.randint(ilo, ihi)
                if ok(v_int):
                    return v_int
            raise GenerationError("no integer satisfies the numeric constraints")
        if mult is not None:
            m = Decimal(str(mult))
            klo = math.ceil(Decimal(str(lo)) / m)
            khi = math.floor(Decimal(str(hi)) / m)
            candidates = [rng.randint(klo, khi) for _ in range(32)] if klo <= khi else []
            candidates += list(range(klo, min(khi, klo + 2000) + 1))
            for k in candidates:
                v = float(Decimal(k) * m)
                if ok(v):
                    return int(v) if v.is_integer() else v
            raise GenerationError("no number satisfies multipleOf and bounds")
        for _ in range(16):
            v = round(rng.uniform(lo, hi), 2)
            if ok(v):
                return int(v) if v.is_integer() and abs(v) < 2**53 else v
        mid = (lo + hi) / 2
        if ok(mid):
            return mid
        raise GenerationError("no number satisfies the numeric constraints")

    def array(
        self,
        s: Mapping[str, Any],
        rng: random.Random,
        depth: int,
        hint: str,
        count: int | None,
        per_item_rng: str | None = None,
    ) -> list[Any]:
        prefix = list(s.get("prefixItems", []))
        items = s.get("items", True)
        lo = int(s.get("minItems", 0))
        hi = s.get("maxItems")
        if count is None:
            if depth > SOFT_DEPTH:
                count = lo
            else:
                want_lo = max(lo, 1)
                want_hi = want_lo + 2
                if hi is not None:
                    want_lo, want_hi = min(want_lo, int(hi)), min(want_hi, int(hi))
                count = rng.randint(want_lo, max(want_lo, want_hi))
        count = max(count, lo)
        if hi is not None:
            count = min(count, int(hi))
        if items is False:
            count = min(count, len(prefix))
        contains = s.get("contains")
        min_contains = int(s.get("minContains", 1)) if contains is not None else 0
        unique = bool(s.get("uniqueItems"))
        item_hint = _singular(hint)
        out: list[Any] = []
        seen: set[str] = set()
        i = 0
        attempts = 0
        while len(out) < count and attempts < count * 10 + 10:
            attempts += 1
            if per_item_rng is not None:
                r = random.Random(f"{per_item_rng}:{i}:{attempts - len(out) - 1}")
            else:
                r = rng
            pos = len(out)
            sub = prefix[pos] if pos < len(prefix) else items
            if contains is not None and pos < min_contains:
                sub = {"allOf": [sub, contains]} if sub is not True else contains
            value = self.value(sub, r, depth + 1, item_hint)
            if unique:
                key = unique_key(value)
                if key in seen:
                    continue
                seen.add(key)
            out.append(value)
            i += 1
        if len(out) < lo:
            raise GenerationError("could not generate enough distinct items")
        return out

    def obj(self, s: Mapping[str, Any], rng: random.Random, depth: int, hint: str) -> Any:
        props: Mapping[str, Any] = s.get("properties", {})
        required = list(s.get("required", []))
        deep = depth > SOFT_DEPTH
        out: dict[str, Any] = {}
        person = bool(hint) and category(hint) == "person"
        for name, sub in props.items():
            param = self.param_for(name, sub)
            if name in required or (
                not deep and (param is not _MISSING or rng.random() < OPTIONAL_PROBABILITY)
            ):
                # "name" inside a founders/authors item is a person, not a company.
                child_hint = "fullname" if person and name == "name" else name
                out[name] = (
                    copy.deepcopy(param)
                    if param is not _MISSING
                    else self.value(sub, rng, depth + 1, child_hint)
                )
        extra_schema = s.get("additionalProperties", True)
        for name in required:
            if name not in out:
                out[name] = self.value(self._extra_schema(s, name), rng, depth + 1, name)
        dependent = s.get("dependentRequired", {})
        for trigger, names in dependent.items():
            if trigger in out:
                for name in names:
                    if name not in out:
                        sub = props.get(name, self._extra_schema(s, name))
                        out[name] = self.value(sub, rng, depth + 1, name)
        min_props = int(s.get("minProperties", 0))
        for name, sub in props.items():
            if len(out) >= min_props:
                break
            if name not in out:
                out[name] = self.value(sub, rng, depth + 1, name)
        n = 0
        while len(out) < min_props and extra_schema is not False and n < 100:
            name = f"extra_{n}"
            n += 1
            if name not in out and not s.get("patternProperties"):
                out[name] = self.value(self._extra_schema(s, name), rng, depth + 1, name)
        max_props = s.get("maxProperties")
        if max_props is not None:
            for name in [k for k in out if k not in required]:
                if len(out) <= int(max_props):
                    break
                del out[name]
        return out

    def _extra_schema(self, s: Mapping[str, Any], name: str) -> Any:
        for pattern, sub in s.get("patternProperties", {}).items():
            if re.search(pattern, name):
                return sub
        extra = s.get("additionalProperties", True)
        return extra if isinstance(extra, dict) else True


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------
def find_main_list(schema: Any, root: Any | None = None) -> tuple[str, str | None] | None:
    """Where the N rows go: ``("root", None)``, ``("property", name)`` or ``None``.

    Example:
        >>> find_main_list({"type": "array", "items": {"type": "object"}})
        ('root', None)
        >>> find_main_list({"type": "object", "properties": {"rows": {"type": "array",
        ...     "items": {"type": "object"}}}})
        ('property', 'rows')
    """
    if schema is None:
        return ("root", None)
    gen = _Generator(schema if root is None else root, {})
    try:
        flat = gen.flatten(schema)
    except GenerationError:
        return None
    types = as_types(flat)
    if "array" in types and not any(k in flat for k in ("anyOf", "oneOf", "enum", "const")):
        return ("root", None)
    if types == ["object"] or "object" in types:
        props: Mapping[str, Any] = flat.get("properties", {})
        required = set(flat.get("required", []))
        ranked = sorted(props, key=lambda n: (n not in required, list(props).index(n)))
        for name in ranked:
            try:
                sub = gen.flatten(props[name])
            except GenerationError:
                continue
            if "array" in as_types(sub) and "items" in sub:
                try:
                    item = gen.flatten(sub["items"])
                except GenerationError:
                    continue
                if "object" in as_types(item):
                    return ("property", name)
    return None


def generate(
    schema: Any,
    *,
    parameters: Mapping[str, Any] | None = None,
    seed: str = "0",
    rows: int = 25,
) -> Any:
    """Generate result data for ``schema`` (``None``: company-like records).

    Deterministic in all arguments. ``rows`` is the length of the main list:
    the top-level array, or the first array-of-objects property of a top-level
    object (clamped to its minItems/maxItems).

    Example:
        >>> data = generate(None, parameters={"batch": "S24"}, rows=2)
        >>> [r["batch"] for r in data]
        ['S24', 'S24']
        >>> generate({"type": "array", "items": {"type": "integer", "minimum": 5,
        ...     "maximum": 5}}, rows=3)
        [5, 5, 5]
    """
    params = dict(parameters or {})
    if schema is None:
        return [default_record(random.Random(f"{seed}:row:{i}"), params) for i in range(rows)]
    try:
        return _generate(schema, params, seed, rows)
    except RecursionError as exc:  # belt and braces: never crash the server
        raise GenerationError("schema recursion is too deep to satisfy") from exc


def _generate(schema: Any, params: dict[str, Any], seed: str, rows: int) -> Any:
    gen = _Generator(schema, params)
    main = find_main_list(schema)
    rng = random.Random(f"{seed}:root")
    if main is None:
        return gen.value(schema, rng, 0, "")
    flat = gen.flatten(schema)
    if main[0] == "root":
        return gen.array(flat, rng, 0, "records", rows, per_item_rng=f"{seed}:row")
    name = cast(str, main[1])
    # Generate the wrapper object, then put the N-row list in its place. The
    # property is forced in even if optional: that is where the data lives.
    wrapper = gen.value(schema, rng, 0, "")
    if not isinstance(wrapper, dict):  # a nullable root picked null; keep the rows
        wrapper = gen.obj(flat, rng, 0, "")
    list_schema = gen.flatten(flat["properties"][name])
    wrapper[name] = gen.array(list_schema, rng, 1, name, rows, per_item_rng=f"{seed}:row")
    return wrapper


def main_records(data: Any, schema: Any) -> list[Any] | None:
    """The main list inside generated ``data`` (for previews and ndjson)."""
    if isinstance(data, list):
        return data
    main = find_main_list(schema) if schema is not None else None
    if main is not None and main[0] == "property" and isinstance(data, dict):
        value = data.get(cast(str, main[1]))
        if isinstance(value, list):
            return value
    return None
