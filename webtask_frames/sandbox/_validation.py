"""Validation of ``POST /{workspaceId}/web-tasks/start`` bodies.

Pure functions: bytes in, :class:`StartRequest` out, or :class:`ApiError`
carrying the status, code and message the real service would send. Keeping it
free of HTTP types makes the rules unit-testable and reusable.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ._config import MODELS, Behaviour, ConfigError

__all__ = [
    "MAGIC_PARAMETER",
    "ApiError",
    "StartRequest",
    "canonical_json",
    "fingerprint",
    "parse_start_body",
]

MAGIC_PARAMETER = "_sandbox"
ALLOWED_FIELDS = ("task", "startUrl", "parameters", "outputSchema", "reuseKey", "model")
DEFAULT_MODEL = "haiku"
MAX_REUSE_KEY_LEN = 256

_ERROR_CODES_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
}


class ApiError(Exception):
    """A user error answered with the reference error body.

    Example:
        >>> ApiError(400, "task is required").code
        'bad-request'
    """

    def __init__(self, status: int, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = _ERROR_CODES_BY_STATUS.get(status, "bad-request")
        self.message = message
        self.details = dict(details) if details is not None else None


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON; equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A validated start request (wire names translated to snake_case).

    ``parameters`` has the magic ``_sandbox`` entry removed; its content is in
    ``magic``. ``schema_fp`` identifies ``output_schema`` (``None`` if absent).
    """

    task: str
    start_url: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    output_schema: Any = None
    schema_fp: str | None = None
    reuse_key: str | None = None
    model: str = DEFAULT_MODEL
    magic: Behaviour | None = None

    @property
    def request_fp(self) -> str:
        """Identity of the request as the service sees it (for determinism)."""
        return fingerprint(
            self.task,
            self.start_url,
            canonical_json(self.parameters),
            self.schema_fp,
            self.reuse_key,
            self.model,
        )

    @property
    def code_fp(self) -> str:
        """What the saved automation depends on: the output schema (the shape its code
        produces). Not the task text: the service keys automations by ``reuseKey``, so a
        sweep may phrase each item's task differently and still reuse one automation."""
        return fingerprint(self.schema_fp)


class _SchemaCache:
    """Remembers verdicts for schemas already checked (sweeps repeat one schema)."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[str, str | ApiError] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, schema: Any) -> str:
        text = canonical_json(schema)
        with self._lock:
            hit = self._items.get(text)
            if hit is not None:
                self._items.move_to_end(text)
        if hit is None:
            hit = _check_schema(schema, text)
            with self._lock:
                self._items[text] = hit
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        if isinstance(hit, ApiError):
            raise hit
        return hit


def _check_schema(schema: Any, text: str) -> str | ApiError:
    # Imported lazily: jsonschema costs ~0.1 s to import and the CLI should start fast.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict | bool):
        return ApiError(
            400,
            "outputSchema must be a JSON Schema (an object or a boolean)",
            {"field": "outputSchema"},
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        return ApiError(
            400,
            f"outputSchema is not a valid JSON Schema (draft 2020-12): {exc.message}",
            {"field": "outputSchema", "schemaPath": path},
        )
    bad = _unresolvable_refs(schema, schema)
    if bad:
        return ApiError(
            400,
            f"outputSchema has unresolvable $ref {bad[0]!r} (only local '#/...' refs work)",
            {"field": "outputSchema", "refs": bad},
        )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# Keywords whose values are data, not subschemas: never look for $ref inside.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})


def _unresolvable_refs(node: Any, root: Any) -> list[str]:
    from ._jsonschema import resolve_pointer

    bad: list[str] = []
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            ref = cur.get("$ref")
            if isinstance(ref, str):
                try:
                    resolve_pointer(root, ref)
                except LookupError:
                    bad.append(ref)
            stack.extend(v for k, v in cur.items() if k not in _DATA_KEYWORDS)
        elif isinstance(cur, list):
            stack.extend(cur)
    return bad


_schema_cache = _SchemaCache()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parameters(raw_params: Any) -> tuple[dict[str, Any], Behaviour | None]:
    """The request's parameters without the magic entry, and the behaviour it scripts."""
    if raw_params is None:
        raw_params = {}
    if not isinstance(raw_params, dict):
        raise ApiError(400, "'parameters' must be an object", {"field": "parameters"})
    params = cast(dict[str, Any], raw_params)
    if MAGIC_PARAMETER not in params:
        return params, None
    params = dict(params)
    raw_magic = params.pop(MAGIC_PARAMETER)
    if not isinstance(raw_magic, dict):
        raise ApiError(
            400, f"'parameters.{MAGIC_PARAMETER}' must be an object", {"field": "parameters"}
        )
    try:
        return params, Behaviour.from_mapping(cast(dict[str, Any], raw_magic))
    except (ConfigError, TypeError) as exc:
        raise ApiError(
            400,
            f"invalid 'parameters.{MAGIC_PARAMETER}': {exc}",
            {"field": f"parameters.{MAGIC_PARAMETER}"},
        ) from exc


def _reuse_key(reuse_key: Any) -> str | None:
    if reuse_key is None:
        return None
    if not isinstance(reuse_key, str) or not reuse_key.strip():
        raise ApiError(400, "'reuseKey' must be a non-empty string", {"field": "reuseKey"})
    if len(reuse_key) > MAX_REUSE_KEY_LEN:
        raise ApiError(
            400,
            f"'reuseKey' must be at most {MAX_REUSE_KEY_LEN} characters",
            {"field": "reuseKey"},
        )
    return reuse_key


def parse_start_body(body: bytes) -> StartRequest:
    """Validate a start request body; raise :class:`ApiError` (400) if invalid.

    Example:
        >>> parse_start_body(b'{"task": "List YC companies", "model": "opus"}').model
        'opus'
    """
    try:
        data = json.loads(body, parse_constant=_reject_constant) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    unknown = sorted(set(data) - set(ALLOWED_FIELDS))
    if unknown:
        raise ApiError(
            400,
            f"Unknown field(s): {', '.join(unknown)}",
            {"unknownFields": unknown, "allowedFields": list(ALLOWED_FIELDS)},
        )

    task = data.get("task")
    if not isinstance(task, str):
        raise ApiError(400, "'task' is required and must be a string", {"field": "task"})
    if not task.strip():
        raise ApiError(400, "'task' must not be empty", {"field": "task"})

    start_url = data.get("startUrl")
    if start_url is not None and not isinstance(start_url, str):
        raise ApiError(400, "'startUrl' must be a string", {"field": "startUrl"})

    params, magic = _parameters(data.get("parameters"))

    schema = data.get("outputSchema")
    schema_fp = _schema_cache.check(schema) if schema is not None else None

    reuse_key = _reuse_key(data.get("reuseKey"))

    model = data.get("model")
    if model is None:
        model = DEFAULT_MODEL
    if model not in MODELS:
        raise ApiError(
            400,
            f"'model' must be one of {', '.join(MODELS)}",
            {"field": "model", "allowed": list(MODELS)},
        )

    return StartRequest(
        task=task,
        start_url=start_url,
        parameters=params,
        output_schema=schema,
        schema_fp=schema_fp,
        reuse_key=reuse_key,
        model=cast(str, model),
        magic=magic,
    )
