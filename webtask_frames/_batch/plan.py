"""Turning ``run_batch`` arguments into a validated list of items, before any request.

A *grid* becomes one parameter dict per item: a dict of lists is expanded as a cartesian
product (in key order, last key fastest, like ``itertools.product``), a list of dicts is
taken as is, and a DataFrame gives one item per row. The task text is a format string
over the parameters (``"List the {industry} companies"``; ``{{``/``}}`` for literal
braces); ``reuse_key`` and ``start_url`` are fixed strings, format strings over the
parameters (``"yc_{batch}"``) or callables of the parameter dict. Every item's start
body is built here with ``build_start_body``, so a bad value fails with
``InvalidInputError`` naming the field before anything is sent.

An item is known by what it asks, never by its grid position: its ``item_key`` is a
stable hash of its task text, ``start_url``, parameters, ``reuse_key`` and outputSchema
(canonical JSON; the model is how an attempt ran, not what the item asks). A ledger, the
records, the tasks and every sink use that key, so a grid that grows, shrinks or is
reordered never pays twice for an item or lands its rows twice. Two grid items asking
exactly the same thing are refused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import InvalidInputError
from .._tables.compiled import SchemaPlan, schema_plan
from .._wire.protocol import build_start_body

__all__ = [
    "BatchPlan",
    "Item",
    "build_plan",
    "canonical_json",
    "expand_grid",
    "item_key_of",
    "stable_hash",
]

Template = str | Callable[[dict[str, Any]], Any] | None
RESERVED_PARAMETERS = frozenset({"_item", "_webtask_id"})
# The sandbox's scripting hook: sent with the item, never a column of any table.
SANDBOX_PARAMETER = "_sandbox"


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def stable_hash(value: Any, length: int = 16) -> str:
    """A short sha256 hex digest of ``value``'s canonical JSON.

    Example:
        >>> stable_hash({"b": 1, "a": 2}) == stable_hash({"a": 2, "b": 1})
        True
    """
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def item_key_of(body: dict[str, Any], schema_hash: str | None) -> str:
    """The identity of an item whose start body is ``body``: a 32-hex-digit hash of what
    it asks (task text, startUrl, parameters, reuseKey, outputSchema), not of its model.
    ``schema_hash`` is the outputSchema's hash, computed once per sweep (hashing a large
    schema per item would make planning quadratic in practice).

    Example:
        >>> a = item_key_of({"task": "T", "parameters": {"x": 1}, "model": "sonnet"}, None)
        >>> a == item_key_of({"task": "T", "parameters": {"x": 1}}, None), len(a)
        (True, 32)
    """
    asked = {
        "task": body.get("task"),
        "start_url": body.get("startUrl"),
        "parameters": body.get("parameters"),
        "reuse_key": body.get("reuseKey"),
        "output_schema": schema_hash,
    }
    return stable_hash(asked, 32)


@dataclass(frozen=True)
class Item:
    """One unit of a sweep: its grid position (in this call only), its identity
    ``item_key`` (what it asks, the same in every run and grid), its parameters and its
    exact start body."""

    index: int
    parameters: dict[str, Any]
    reuse_key: str | None
    start_url: str | None
    body: dict[str, Any] = field(repr=False)
    item_key: str = ""

    def __post_init__(self) -> None:
        if not self.item_key:  # built by hand: derive it (build_plan passes it in)
            schema = self.body.get("outputSchema")
            key = item_key_of(self.body, stable_hash(schema, 32) if schema else None)
            object.__setattr__(self, "item_key", key)

    @property
    def body_hash(self) -> str:
        """A hash of the exact start body, model included (the v1 ledger's item check)."""
        return stable_hash(self.body, 32)


@dataclass(frozen=True)
class BatchPlan:
    """The validated sweep: items, their chains (items sharing a reuseKey) and identity.

    ``schema`` is the outputSchema compiled once for the whole sweep (``output_schema``
    is its dict); every item's body and every result read uses it.

    A dry run fills in ``order`` (the predicted submission order of the items still to
    run), ``estimated_cost_usd`` (AI cost of those items), ``estimated_duration_s`` (the
    predicted makespan in seconds) and ``estimate_basis``: ``"history"`` (the ledger's
    recorded runs) or ``"prior"`` (no history: the per-model priors of ``priors``).
    """

    task: str
    model: str | None
    output_schema: dict[str, Any] | None
    items: list[Item]
    order: list[int] = field(default_factory=list)
    estimated_cost_usd: float | None = None
    estimated_duration_s: float | None = None
    estimate_basis: str | None = None
    schema: SchemaPlan | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.schema is None and self.output_schema is not None:
            # Built by hand from a dict: compile it once here, not per item or result.
            object.__setattr__(self, "schema", schema_plan(self.output_schema))

    @property
    def keys(self) -> list[str | None]:
        return [item.reuse_key for item in self.items]

    @property
    def chains(self) -> dict[str | None, list[int]]:
        """reuseKey -> item indices, in grid order (``None`` collects keyless items)."""
        out: dict[str | None, list[int]] = {}
        for item in self.items:
            out.setdefault(item.reuse_key, []).append(item.index)
        return out

    @property
    def parameter_names(self) -> list[str]:
        """The grid's parameter names, in first-seen order: the parameter columns of the
        records and tasks tables. ``_sandbox`` (the sandbox's per-task script, removed by
        the sandbox before the task runs) is sent but never a column."""
        seen: dict[str, None] = {}
        for item in self.items:
            seen.update(dict.fromkeys(item.parameters))
        seen.pop(SANDBOX_PARAMETER, None)
        return list(seen)

    @property
    def item_keys(self) -> list[str]:
        """Each item's identity, in grid order."""
        return [item.item_key for item in self.items]

    def fingerprint_parts(self) -> dict[str, Any]:
        """What a version-1 ledger's fingerprint covered (one fixed grid, by position):
        kept only to recognise and migrate such a ledger."""
        return {
            "task": stable_hash(self.task, 32),
            "output_schema": stable_hash(self.output_schema, 32),
            "model": self.model,
            "n_items": len(self.items),
            "items": stable_hash([item.body_hash for item in self.items], 32),
        }

    @property
    def fingerprint(self) -> str:
        return stable_hash(self.fingerprint_parts(), 32)

    def __repr__(self) -> str:
        return (
            f"BatchPlan(task={self.task[:40]!r}, items={len(self.items)}, "
            f"chains={len(self.chains)}, estimated_cost_usd={self.estimated_cost_usd})"
        )


# -- grids ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy / pandas scalars to Python values; ``pd.NA`` (null in pandas' nullable
    dtypes, which ``DataFrame.to_dict`` already turns into None) to None. NaN stays NaN,
    for ``_refuse_missing`` to name."""
    if value is None or type(value).__name__ == "NAType":
        return None
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__.startswith("numpy"):
        try:
            value = item()
        except (TypeError, ValueError):
            return value
    return value


def _is_nan(value: Any) -> bool:
    """NaN or ``NaT``: a float (or time) that is not a number, which JSON cannot carry."""
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ == "NaTType"


def _refuse_missing(rows: list[dict[str, Any]]) -> None:
    """Every grid form treats NaN alike: refused, never sent as null behind your back."""
    for n, row in enumerate(rows):
        for name, value in row.items():
            if _is_nan(value):
                raise InvalidInputError(
                    f"grid item {n}: parameters[{name!r}] is {value!r} (a missing value), "
                    "which JSON cannot carry; fill it (e.g. df.fillna(...)) or use None to "
                    "send null",
                    field="parameters",
                )


def _from_dataframe(grid: Any) -> list[dict[str, Any]]:
    columns = list(grid.columns)
    bad = [c for c in columns if not isinstance(c, str)]
    if bad:
        raise InvalidInputError(
            f"grid: DataFrame column names must be strings (parameter names), got {bad[:3]!r}; "
            "rename them, e.g. df.columns = df.columns.astype(str)",
            field="grid",
        )
    rows = grid.to_dict(orient="records")
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _from_dict_of_lists(grid: Mapping[Any, Any]) -> list[dict[str, Any]]:
    names = list(grid)
    axes: list[list[Any]] = []
    for name in names:
        values = grid[name]
        if isinstance(values, list | tuple | range):
            values = [_plain(v) for v in values]
        elif hasattr(values, "tolist") and not isinstance(values, str | bytes):
            values = [_plain(v) for v in values.tolist()]
        else:
            raise InvalidInputError(
                f"grid[{name!r}]: a dict grid maps each parameter to a list of values, got "
                f"{type(values).__name__}; wrap a fixed value in a list: {{{name!r}: [value]}}",
                field="grid",
            )
        if not values:
            raise InvalidInputError(
                f"grid[{name!r}] is an empty list, so the cartesian product has no items; "
                "give it at least one value or drop the parameter",
                field="grid",
            )
        axes.append(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def expand_grid(grid: Any) -> list[dict[str, Any]]:
    """One parameter dict per item, from a dict of lists, a list of dicts or a DataFrame.

    Example:
        >>> expand_grid({"batch": ["S24", "W24"], "page": [1, 2]})[:2]
        [{'batch': 'S24', 'page': 1}, {'batch': 'S24', 'page': 2}]
        >>> expand_grid([{"q": "a"}, {"q": "b"}])
        [{'q': 'a'}, {'q': 'b'}]
    """
    if hasattr(grid, "to_dict") and hasattr(grid, "columns"):
        rows = _from_dataframe(grid)
    elif isinstance(grid, Mapping):
        if not grid:
            raise InvalidInputError(
                "grid: an empty dict has no items; pass e.g. {'batch': ['S24', 'W24']}",
                field="grid",
            )
        rows = _from_dict_of_lists(grid)
    elif isinstance(grid, Sequence) and not isinstance(grid, str | bytes):
        rows = []
        for n, row in enumerate(grid):
            if not isinstance(row, Mapping):
                raise InvalidInputError(
                    f"grid[{n}]: a list grid holds one parameter dict per item, got "
                    f"{type(row).__name__}",
                    field="grid",
                )
            rows.append({k: _plain(v) for k, v in row.items()})
    else:
        raise InvalidInputError(
            f"grid: expected a dict of lists, a list of dicts or a DataFrame, got "
            f"{type(grid).__name__}",
            field="grid",
        )
    if not rows:
        raise InvalidInputError(
            "grid is empty: nothing to run; pass at least one item", field="grid"
        )
    _refuse_missing(rows)
    for n, row in enumerate(rows):
        for name in row:
            if not isinstance(name, str) or not name:
                raise InvalidInputError(
                    f"grid item {n}: parameter names must be non-empty strings, got {name!r}",
                    field="grid",
                )
            if name in RESERVED_PARAMETERS:
                raise InvalidInputError(
                    f"grid: parameter name {name!r} is reserved for result columns; rename it",
                    field="grid",
                )
    return rows


# -- templates -----------------------------------------------------------------------


def _template_fields(template: str, field_name: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInputError(
            f"{field_name}: {template!r} is not a valid format string ({exc}); double a "
            "literal brace as '{{' or '}}'",
            field=field_name,
        ) from None
    names = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        root = name.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise InvalidInputError(
                f"{field_name}: {template!r} has a positional field '{{{name}}}'; name a "
                "parameter instead, e.g. 'yc_{batch}'",
                field=field_name,
            )
        names.append(root)
    return names


def check_template(template: Any, field_name: str, parameter_names: Sequence[str]) -> None:
    """Validate a template against the grid's parameter names (before any item is built)."""
    if template is None or callable(template):
        return
    if not isinstance(template, str):
        raise InvalidInputError(
            f"{field_name}: expected a string, a format string over the parameters "
            f"(e.g. 'yc_{{batch}}') or a callable of the parameters, got "
            f"{type(template).__name__}",
            field=field_name,
        )
    missing = [n for n in _template_fields(template, field_name) if n not in parameter_names]
    if missing:
        raise InvalidInputError(
            f"{field_name}: {template!r} names parameter {missing[0]!r}, which the grid does "
            f"not have (grid parameters: {', '.join(parameter_names) or 'none'}); fix the "
            "name or add it to the grid",
            field=field_name,
        )


def render(template: Template, params: dict[str, Any], field_name: str, index: int) -> Any:
    """The template's value for one item's parameters."""
    if template is None:
        return None
    if callable(template):
        try:
            return template(dict(params))
        except Exception as exc:
            raise InvalidInputError(
                f"{field_name}: the callable raised {type(exc).__name__}: {exc} for grid item "
                f"{index} ({params!r}); make it handle every item",
                field=field_name,
            ) from exc
    if not _template_fields(template, field_name):
        return template.replace("{{", "{").replace("}}", "}")
    try:
        return template.format_map(params)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise InvalidInputError(
            f"{field_name}: cannot format {template!r} for grid item {index} ({params!r}): "
            f"{type(exc).__name__} {exc}",
            field=field_name,
        ) from None


def build_plan(
    task: Any,
    grid: Any,
    *,
    start_url: Template = None,
    output_schema: Any = None,
    reuse_key: Template = None,
    model: Any = None,
) -> BatchPlan:
    """Validate everything and build each item's start body; raises ``InvalidInputError``.

    The outputSchema (dict, JSON file path, pydantic model or ``SchemaPlan``) is checked
    and compiled once for all items. The task text, ``reuse_key`` and ``start_url`` are
    format strings over each item's parameters (``{{`` and ``}}`` for literal braces); a
    name the grid does not have is refused, naming the field, before anything is built.

    Example:
        >>> plan = build_plan("Scrape {batch}", {"batch": ["S24", "W24"]}, reuse_key="yc_{batch}")
        >>> [(item.body["task"], item.reuse_key) for item in plan.items]
        [('Scrape S24', 'yc_S24'), ('Scrape W24', 'yc_W24')]
    """
    schema = schema_plan(output_schema)
    schema_hash = stable_hash(schema.schema, 32) if schema is not None else None
    rows = expand_grid(grid)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    # The task text is a template too (a string only): "List the {industry} companies".
    text: Template = task if isinstance(task, str) else None
    check_template(text, "task", list(names))
    check_template(reuse_key, "reuse_key", list(names))
    check_template(start_url, "start_url", list(names))
    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, params in enumerate(rows):
        key = render(reuse_key, params, "reuse_key", index)
        url = render(start_url, params, "start_url", index)
        try:
            body = build_start_body(
                render(text, params, "task", index) if text is not None else task,
                start_url=url,
                parameters=params,
                output_schema=schema,
                reuse_key=key,
                model=model,
            )
        except InvalidInputError as exc:
            if exc.field in ("task", "output_schema", "model"):
                raise  # the same for every item
            raise InvalidInputError(f"grid item {index}: {exc.message}", field=exc.field) from None
        item_key = item_key_of(body, schema_hash)
        if item_key in seen:
            raise InvalidInputError(
                f"grid items {seen[item_key]} and {index} ask exactly the same thing "
                f"(parameters {canonical_json(params)[:80]}); an item is known by what it asks, "
                "so drop the duplicate (e.g. df.drop_duplicates()) or add a parameter that "
                "tells them apart (e.g. 'run': [1, 2])",
                field="grid",
            )
        seen[item_key] = index
        items.append(Item(index, params, key, url, body, item_key))
    return BatchPlan(
        task=task,
        model=model,
        output_schema=schema.schema if schema is not None else None,
        items=items,
        schema=schema,
    )
