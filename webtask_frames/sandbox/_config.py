"""Sandbox configuration: one frozen dataclass plus the pieces it is made of.

Everything that shapes the simulated service lives here so that a scenario can
be written down once (Python, a JSON file, or CLI flags) and replayed exactly:
with the same config and seed the sandbox produces the same data, durations,
outcomes and injected faults.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, cast


class StartRequestLike(Protocol):
    """What an override matches on (``_validation.StartRequest`` has it); a protocol here
    keeps configuration independent of request parsing, which builds on it."""

    @property
    def task(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, Any]: ...

    @property
    def reuse_key(self) -> str | None: ...


__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_WORKSPACE_ID",
    "ENDPOINTS",
    "ERROR_CODES",
    "MODELS",
    "Behaviour",
    "ConfigError",
    "FaultRates",
    "SandboxConfig",
    "TaskOverride",
]

DEFAULT_API_KEY = "sandbox-key"
DEFAULT_WORKSPACE_ID = "5a3d1f0e-9b7c-4e2a-8d6f-0c1b2a3e4f5d"
MODELS = ("haiku", "sonnet", "opus")
ERROR_CODES = (
    "workspace-rate-limited",
    "unauthenticated",
    "no-ai-credits-left",
    "internal-error",
    "timeout",
    "rejected",
)
ENDPOINTS = ("start", "result", "download")
OUTCOMES = ("success", "failed", "canceled")
RESULT_MODES = ("auto", "inline", "file")
FILE_FORMATS = ("json", "ndjson")
CAP_MODES = ("queue", "fail")

Outcome = Literal["success", "failed", "canceled"]
ResultMode = Literal["auto", "inline", "file"]
FileFormat = Literal["json", "ndjson"]
CapMode = Literal["queue", "fail"]


class ConfigError(ValueError):
    """An invalid sandbox option; the message names the option."""


def _check_rate(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_non_negative(name: str, value: float | None) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


# Aliases accepted for fault kinds in dicts, JSON files and CLI flags.
_FAULT_ALIASES = {
    "429": "http_429",
    "500": "http_500",
    "502": "http_502",
    "503": "http_503",
    "504": "http_504",
}


@dataclass(frozen=True)
class FaultRates:
    """Per-request fault probabilities for one endpoint.

    The HTTP faults and ``drop``, ``expired`` and ``truncated`` are mutually
    exclusive (one draw picks at most one; their sum must be <= 1). ``slow`` is
    drawn independently and delays an otherwise normal (or faulty) response.
    ``expired`` and ``truncated`` only apply to file downloads.

    Example:
        >>> FaultRates(http_503=0.1, drop=0.05).total
        0.15000000000000002
        >>> FaultRates.from_mapping({"429": 0.2}).http_429
        0.2
    """

    http_429: float = 0.0
    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    http_504: float = 0.0
    drop: float = 0.0
    expired: float = 0.0
    truncated: float = 0.0
    slow: float = 0.0

    # Order of the exclusive kinds on the [0, 1) line; part of the determinism
    # contract, so only ever append.
    EXCLUSIVE: ClassVar[tuple[str, ...]] = (
        "http_429",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "drop",
        "expired",
        "truncated",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_rate(f"fault rate {f.name}", getattr(self, f.name))
        if self.total > 1.0 + 1e-9:
            raise ConfigError(f"exclusive fault rates sum to {self.total:.3f} > 1")

    @property
    def total(self) -> float:
        """Sum of the mutually exclusive fault probabilities."""
        return float(sum(getattr(self, k) for k in self.EXCLUSIVE))

    @property
    def any(self) -> bool:
        """True when at least one fault can fire."""
        return self.total > 0 or self.slow > 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultRates:
        """Build from ``{"429": 0.1, "drop": 0.05, ...}`` (aliases allowed)."""
        kwargs: dict[str, float] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for raw_key, value in data.items():
            key = _FAULT_ALIASES.get(str(raw_key), str(raw_key))
            if key not in names:
                raise ConfigError(f"unknown fault kind {raw_key!r}; known: {sorted(names)}")
            kwargs[key] = value
        return cls(**kwargs)

    def merged(self, other: FaultRates) -> FaultRates:
        """Field-wise: a non-zero value in ``other`` wins."""
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name)
        }
        return dataclasses.replace(self, **changes)


_BEHAVIOUR_KEYS = (
    "outcome",
    "error_code",
    "error_message",
    "duration_s",
    "rows",
    "result",
    "file_format",
    "invalid_rows",
    "data",
    "file_body",
    "content_type",
)


def _check_exact_result(behaviour: Any) -> None:
    """Validate the exact-result fields (``data``, ``file_body``, ``content_type``)."""
    if behaviour.data is not None:
        try:
            json.dumps(behaviour.data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data must be a JSON value: {exc}") from None
    body = behaviour.file_body
    if body is not None:
        if not isinstance(body, bytes | str):
            raise ConfigError(f"file_body must be bytes or a string, got {type(body).__name__}")
        if behaviour.data is not None:
            raise ConfigError("give data or file_body, not both")
        if behaviour.result == "inline":
            raise ConfigError("file_body is a file result; it cannot be delivered inline")
    content_type = behaviour.content_type
    if content_type is not None and (not isinstance(content_type, str) or not content_type):
        raise ConfigError(f"content_type must be a non-empty string, got {content_type!r}")


@dataclass(frozen=True)
class Behaviour:
    """What a single task should do; ``None`` fields mean "use the default".

    The same fields are accepted by :class:`TaskOverride` and by the magic
    ``"_sandbox"`` request parameter.

    Exact results, for tests of how a client reads a given payload: ``data`` (any JSON
    value) is served as the result instead of generated records, inline or as a file
    (``result``, ``file_format`` apply); ``file_body`` (bytes, or a string sent as UTF-8)
    is served byte for byte as a file result, e.g. CSV or Parquet. ``content_type``
    replaces the file's advertised ``contentType``. Exact results are served as given:
    they are not checked against the ``outputSchema`` and ``invalid_rows`` does not
    touch them, so a test can send records that break the schema on purpose.

    Example:
        >>> Behaviour.from_mapping({"outcome": "failed", "error_code": "timeout"}).error_code
        'timeout'
        >>> Behaviour(file_body="a,b\\n1,2\\n", content_type="text/csv").file_body
        b'a,b\\n1,2\\n'
    """

    outcome: Outcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    duration_s: float | None = None
    rows: int | None = None
    result: ResultMode | None = None
    file_format: FileFormat | None = None
    invalid_rows: float | None = None
    data: Any = field(default=None, hash=False)
    file_body: bytes | None = None
    content_type: str | None = None

    def __post_init__(self) -> None:
        _check_exact_result(self)
        if isinstance(self.file_body, str):  # JSON configs can only give text
            object.__setattr__(self, "file_body", self.file_body.encode())
        if self.invalid_rows is not None:
            _check_rate("invalid_rows", self.invalid_rows)
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ConfigError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.error_code is not None and self.error_code not in ERROR_CODES:
            raise ConfigError(f"error_code must be one of {ERROR_CODES}, got {self.error_code!r}")
        if self.error_message is not None and not isinstance(self.error_message, str):
            raise ConfigError("error_message must be a string")
        _check_non_negative("duration_s", self.duration_s)
        if self.rows is not None and (
            not isinstance(self.rows, int) or isinstance(self.rows, bool) or self.rows < 0
        ):
            raise ConfigError(f"rows must be an integer >= 0, got {self.rows!r}")
        if self.result is not None and self.result not in RESULT_MODES:
            raise ConfigError(f"result must be one of {RESULT_MODES}, got {self.result!r}")
        if self.file_format is not None and self.file_format not in FILE_FORMATS:
            raise ConfigError(
                f"file_format must be one of {FILE_FORMATS}, got {self.file_format!r}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Behaviour:
        """Parse a dict, rejecting unknown keys (typos should fail loudly)."""
        unknown = sorted(set(data) - set(_BEHAVIOUR_KEYS))
        if unknown:
            raise ConfigError(f"unknown keys {unknown}; known: {list(_BEHAVIOUR_KEYS)}")
        return cls(**{k: data[k] for k in _BEHAVIOUR_KEYS if k in data})

    def merged(self, other: Behaviour | None) -> Behaviour:
        """Field-wise overlay: non-``None`` fields of ``other`` win."""
        if other is None:
            return self
        changes = {k: getattr(other, k) for k in _BEHAVIOUR_KEYS if getattr(other, k) is not None}
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def is_default(self) -> bool:
        """True when no field is set."""
        return all(getattr(self, k) is None for k in _BEHAVIOUR_KEYS)


@dataclass(frozen=True)
class TaskOverride:
    """Scripted behaviour for the tasks it matches (first match wins).

    A task matches when every given matcher holds: ``parameters`` is a subset
    of the request parameters, ``reuse_key`` equals the request's key,
    ``task_contains`` is a substring of the task text and ``predicate`` (a
    callable taking the validated :class:`StartRequest`) returns true. The
    behaviour fields are :class:`Behaviour`'s, exact results included.

    Example:
        >>> o = TaskOverride(parameters={"batch": "W21"}, outcome="failed", error_code="timeout")
        >>> o.behaviour.outcome
        'failed'
    """

    parameters: Mapping[str, Any] | None = None
    reuse_key: str | None = None
    task_contains: str | None = None
    predicate: Callable[[Any], bool] | None = field(default=None, compare=False)
    outcome: Outcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    duration_s: float | None = None
    rows: int | None = None
    result: ResultMode | None = None
    file_format: FileFormat | None = None
    invalid_rows: float | None = None
    data: Any = field(default=None, hash=False)
    file_body: bytes | str | None = None
    content_type: str | None = None

    def __post_init__(self) -> None:
        self.behaviour  # noqa: B018 - validates the behaviour fields eagerly

    @property
    def behaviour(self) -> Behaviour:
        """The behaviour fields as a :class:`Behaviour`."""
        return Behaviour(**{k: getattr(self, k) for k in _BEHAVIOUR_KEYS})

    def matches(self, request: StartRequestLike) -> bool:
        """Whether ``request`` is selected by this override."""
        if self.parameters is not None:
            for k, v in self.parameters.items():
                if k not in request.parameters or request.parameters[k] != v:
                    return False
        if self.reuse_key is not None and request.reuse_key != self.reuse_key:
            return False
        if self.task_contains is not None and self.task_contains not in request.task:
            return False
        return self.predicate is None or bool(self.predicate(request))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TaskOverride:
        """Parse a JSON-style dict (no predicate possible)."""
        match_keys = ("parameters", "reuse_key", "task_contains")
        unknown = sorted(set(data) - set(match_keys) - set(_BEHAVIOUR_KEYS))
        if unknown:
            raise ConfigError(f"unknown override keys {unknown}")
        params = data.get("parameters")
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError("override 'parameters' must be an object")
        return cls(**dict(data))


def _coerce_faults(value: Any) -> dict[str, FaultRates]:
    """Normalise the ``faults`` option to ``{endpoint: FaultRates}``.

    Accepts a single :class:`FaultRates` (all endpoints), or a mapping whose
    keys are endpoints or ``"*"`` and whose values are :class:`FaultRates` or
    plain dicts. Endpoint entries are layered over ``"*"``.
    """
    if value is None:
        value = {}
    if isinstance(value, FaultRates):
        return dict.fromkeys(ENDPOINTS, value)
    if not isinstance(value, Mapping):
        raise ConfigError("faults must be a FaultRates or a mapping of endpoint -> rates")
    parsed: dict[str, FaultRates] = {}
    for key, rates in value.items():
        if key != "*" and key not in ENDPOINTS:
            raise ConfigError(f"unknown fault endpoint {key!r}; known: {['*', *ENDPOINTS]}")
        if isinstance(rates, FaultRates):
            parsed[key] = rates
        elif isinstance(rates, Mapping):
            parsed[key] = FaultRates.from_mapping(rates)
        else:
            raise ConfigError(f"faults[{key!r}] must be a mapping of fault kind -> rate")
    base = parsed.get("*", FaultRates())
    return {ep: base.merged(parsed[ep]) if ep in parsed else base for ep in ENDPOINTS}


@dataclass(frozen=True)
class SandboxConfig:
    """All sandbox options, with defaults that make a realistic small demo.

    Build it directly, with :meth:`from_mapping` (JSON config files use the
    same keys), or implicitly through ``Sandbox(**options)``.

    Example:
        >>> cfg = SandboxConfig(cap=2, time_scale=0.01, faults={"result": {"503": 0.1}})
        >>> cfg.faults["result"].http_503, cfg.faults["start"].http_503
        (0.1, 0.0)
        >>> cfg.replace(rows=5).rows
        5
    """

    # Identity and auth: auth is always enforced so auth tests mean something.
    api_key: str = DEFAULT_API_KEY
    workspace_id: str = DEFAULT_WORKSPACE_ID
    prefix: str = "/api/v1/workspace"
    # Determinism and time.
    seed: int = 0
    time_scale: float = 1.0
    clock: Callable[[], float] | None = field(default=None, compare=False, repr=False)
    epoch: float | None = None
    # Durations (virtual seconds).
    duration_s: float | None = None
    duration_range_s: tuple[float, float] = (2.0, 8.0)
    reuse_speedup: float = 2.0
    duration_jitter: float = 0.1
    start_latency_s: float = 0.5
    # Capacity.
    cap: int = 10
    cap_mode: CapMode = "queue"
    # Results.
    rows: int = 25
    inline_max_bytes: int = 64 * 1024
    file_format: FileFormat = "json"
    file_ttl_s: float = 7 * 24 * 3600.0
    public_origin: str | None = None
    signing_secret: str | None = field(default=None, repr=False)
    # Outcomes.
    outcome_failure_rate: float = 0.0
    failure_codes: tuple[str, ...] = ("internal-error", "timeout", "rejected")
    rate_limited_outcome_rate: float = 0.0
    # Share of result records that break the outputSchema, as real AI output sometimes does.
    invalid_row_rate: float = 0.0
    overrides: tuple[TaskOverride, ...] = ()
    # Transport faults.
    faults: Mapping[str, FaultRates] = field(default_factory=dict)
    fault_start_after_accept: float = 0.5
    slow_delay_s: float = 1.0
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        # Coerce friendly inputs (dicts, lists) into canonical frozen forms.
        set_ = object.__setattr__
        set_(self, "faults", _coerce_faults(self.faults))
        set_(self, "overrides", tuple(self._coerce_override(o) for o in self.overrides or ()))
        set_(self, "failure_codes", tuple(self.failure_codes))
        set_(self, "duration_range_s", tuple(float(x) for x in self.duration_range_s))
        self._validate()

    @staticmethod
    def _coerce_override(value: Any) -> TaskOverride:
        if isinstance(value, TaskOverride):
            return value
        if isinstance(value, Mapping):
            return TaskOverride.from_mapping(value)
        raise ConfigError(f"overrides entries must be TaskOverride or mappings, got {value!r}")

    def _validate(self) -> None:
        self._validate_identity()
        self._validate_timing()
        self._validate_shape()
        self._validate_outcomes()

    def _validate_identity(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ConfigError("api_key must be a non-empty string")
        if not isinstance(self.workspace_id, str) or not self.workspace_id:
            raise ConfigError("workspace_id must be a non-empty string")
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ConfigError("prefix must start with '/' and not end with '/'")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError("seed must be an integer")
        if self.public_origin is not None and not self.public_origin.startswith(
            ("http://", "https://")
        ):
            raise ConfigError("public_origin must start with http:// or https://")

    def _validate_timing(self) -> None:
        if not isinstance(self.time_scale, int | float) or not self.time_scale > 0:
            raise ConfigError("time_scale must be > 0")
        for name in ("duration_s", "start_latency_s", "file_ttl_s", "slow_delay_s"):
            _check_non_negative(name, getattr(self, name))
        lo, hi = self.duration_range_s if len(self.duration_range_s) == 2 else (-1.0, -1.0)
        if not 0 <= lo <= hi:
            raise ConfigError("duration_range_s must be (min, max) with 0 <= min <= max")
        if not self.reuse_speedup >= 1.0:
            raise ConfigError("reuse_speedup must be >= 1")
        if not 0 <= self.duration_jitter < 1:
            raise ConfigError("duration_jitter must be in [0, 1)")
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise ConfigError("retry_after_s must be an integer >= 0")

    def _validate_shape(self) -> None:
        if not isinstance(self.cap, int) or self.cap < 1:
            raise ConfigError("cap must be an integer >= 1")
        if self.cap_mode not in CAP_MODES:
            raise ConfigError(f"cap_mode must be one of {CAP_MODES}")
        if not isinstance(self.rows, int) or self.rows < 0:
            raise ConfigError("rows must be an integer >= 0")
        if not isinstance(self.inline_max_bytes, int) or self.inline_max_bytes < 0:
            raise ConfigError("inline_max_bytes must be an integer >= 0")
        if self.file_format not in FILE_FORMATS:
            raise ConfigError(f"file_format must be one of {FILE_FORMATS}")

    def _validate_outcomes(self) -> None:
        _check_rate("outcome_failure_rate", self.outcome_failure_rate)
        _check_rate("rate_limited_outcome_rate", self.rate_limited_outcome_rate)
        _check_rate("invalid_row_rate", self.invalid_row_rate)
        _check_rate("fault_start_after_accept", self.fault_start_after_accept)
        if not self.failure_codes:
            raise ConfigError("failure_codes must not be empty")
        for code in self.failure_codes:
            if code not in ERROR_CODES:
                raise ConfigError(f"failure code {code!r} is not one of {ERROR_CODES}")

    def replace(self, **changes: Any) -> SandboxConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def behaviour_for(self, request: StartRequestLike) -> Behaviour:
        """The first matching override's behaviour (or an empty one)."""
        for override in self.overrides:
            if override.matches(request):
                return override.behaviour
        return Behaviour()

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], base: SandboxConfig | None = None
    ) -> SandboxConfig:
        """Build from JSON-style data; unknown keys are an error.

        ``base`` supplies values for keys that ``data`` does not set.

        Example:
            >>> SandboxConfig.from_mapping({"cap": 3, "faults": {"*": {"503": 0.1}}}).cap
            3
        """
        names = {f.name for f in dataclasses.fields(cls)} - {"clock"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        kwargs = dict(data)
        for key in ("duration_range_s", "failure_codes", "overrides"):
            if key in kwargs and isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        try:
            if base is None:
                return cls(**kwargs)
            return base.replace(**kwargs)
        except TypeError as exc:  # wrong value types surface as TypeError
            raise ConfigError(str(exc)) from exc

    @classmethod
    def from_file(cls, path: str | Path, base: SandboxConfig | None = None) -> SandboxConfig:
        """Load a JSON config file (same keys as :meth:`from_mapping`)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must contain a JSON object")
        return cls.from_mapping(cast(dict[str, Any], data), base=base)


def coerce_config(
    config: SandboxConfig | Mapping[str, Any] | None, **overrides: Any
) -> SandboxConfig:
    """``config`` (or defaults) with keyword ``overrides`` applied."""
    if config is None:
        base = SandboxConfig()
    elif isinstance(config, SandboxConfig):
        base = config
    elif isinstance(config, Mapping):
        base = SandboxConfig.from_mapping(config)
    else:
        raise ConfigError(
            f"config must be a SandboxConfig or a mapping, got {type(config).__name__}"
        )
    if not overrides:
        return base
    names = {f.name for f in dataclasses.fields(SandboxConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown sandbox options {unknown}")
    return base.replace(**overrides)


def as_sequence(value: Sequence[str] | str) -> tuple[str, ...]:
    """Split a comma list or pass a sequence through."""
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return tuple(value)
