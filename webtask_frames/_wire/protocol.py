"""The Web Tasks protocol as plain decisions, without I/O.

Everything that decides *what* to send and *what an answer means* lives here, so the async
client only moves bytes and sleeps (the way httpx keeps ``auth_flow`` free of I/O):

* ``build_start_body`` validates user input and produces the exact JSON to POST, or raises
  ``InvalidInputError`` naming the field before anything is sent.
* ``decide_response`` / ``decide_exception`` classify one API attempt's outcome into
  ``Done``, ``Retry(delay)`` or ``Fail(error)``; ``decide_download_response``,
  ``decide_download_size`` and ``decide_download_exception`` do the same for one download
  of a signed file URL, and ``check_signed_url`` refuses a URL before anything is sent.
  The client runs every request, downloads included, through one retry loop driven by
  these decisions.

The asymmetry that matters: ``GET result`` is idempotent and retried on any transient
fault, but ``POST start`` creates (and bills) a task, so it is resent only when the server
provably did not accept it: no connection was made, 429, or 503. After a read timeout, a
connection dropped once the body was on the wire, or 500/502/504, the submission is
ambiguous and surfaces as ``AmbiguousSubmissionError``.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from .._exceptions import (
    AmbiguousSubmissionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    DownloadError,
    InvalidInputError,
    NotFoundError,
    RateLimitError,
    ResultExpiredError,
    ServerError,
    TransportError,
    WebTaskError,
)
from .._redact import redact_url, scrub, scrub_text
from .._tables.compiled import SchemaPlan, check_jsonable, coerce_output_schema
from .config import is_loopback_host, origin_of
from .models import FileResult
from .policies import RetryPolicy

__all__ = [
    "MODELS",
    "Done",
    "Fail",
    "Retry",
    "build_start_body",
    "check_signed_url",
    "decide_download_exception",
    "decide_download_response",
    "decide_download_size",
    "decide_exception",
    "decide_response",
    "error_from_response",
    "parse_retry_after",
    "stays_private",
]

MODELS = ("haiku", "sonnet", "opus")
RequestKind = Literal["start", "result"]

_RETRY_STATUSES = {"result": frozenset({429, 500, 502, 503, 504}), "start": frozenset({429, 503})}


def _ambiguous_start_status(status: int) -> bool:
    """Whether a start answered with ``status`` may still have created the task.

    Every 5xx but 503 may come after the server (or a proxy in front of it, e.g. a CDN's
    524 "timeout occurred") accepted the request; 503 says it was not processed.
    """
    return status >= 500 and status != 503


# No connection was established, so no byte of the request reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True, slots=True)
class Done:
    """The attempt produced a usable response."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``delay`` seconds. ``error`` is what to raise if no attempt is left."""

    delay: float
    error: WebTaskError


@dataclass(frozen=True, slots=True)
class Fail:
    """Stop and raise ``error``."""

    error: WebTaskError


Decision = Done | Retry | Fail


def _checked_schema(output_schema: Any) -> dict[str, Any] | None:
    """The outputSchema to send. A ``SchemaPlan`` was checked when it was built (once per
    call, not once per item of a sweep); anything else is coerced and checked here."""
    if isinstance(output_schema, SchemaPlan):
        return output_schema.schema
    schema = coerce_output_schema(output_schema)
    if schema is not None:
        check_jsonable("output_schema", schema)
    return schema


def _check_start_url(start_url: Any) -> None:
    if not isinstance(start_url, str) or not start_url.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"start_url: expected an http(s) URL string, got {start_url!r}", field="start_url"
        )


def _checked_parameters(parameters: Any) -> dict[str, Any]:
    if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
        raise InvalidInputError(
            "parameters: expected a dict with string keys, e.g. {'batch': 'S24'}",
            field="parameters",
        )
    params = dict(parameters)
    check_jsonable("parameters", params)
    return params


def build_start_body(
    task: Any,
    *,
    start_url: Any = None,
    parameters: Any = None,
    output_schema: Any = None,
    reuse_key: Any = None,
    model: Any = None,
) -> dict[str, Any]:
    """Validate arguments and return the camelCase JSON body of ``POST /web-tasks/start``.

    ``output_schema`` is a dict, a JSON file path, a pydantic model (each checked against
    the draft 2020-12 metaschema here) or an already checked ``SchemaPlan``.

    Example:
        >>> build_start_body("Scrape", parameters={"batch": "S24"}, reuse_key="yc")
        {'task': 'Scrape', 'parameters': {'batch': 'S24'}, 'reuseKey': 'yc'}
    """
    if not isinstance(task, str) or not task.strip():
        raise InvalidInputError(
            "task: a non-empty natural-language instruction (str) is required", field="task"
        )
    body: dict[str, Any] = {"task": task}
    if start_url is not None:
        _check_start_url(start_url)
        body["startUrl"] = start_url
    if parameters is not None:
        body["parameters"] = _checked_parameters(parameters)
    schema = _checked_schema(output_schema)
    if schema is not None:
        body["outputSchema"] = schema
    if reuse_key is not None:
        if not isinstance(reuse_key, str) or not reuse_key.strip():
            raise InvalidInputError(
                f"reuse_key: expected a non-empty string, got {reuse_key!r}", field="reuse_key"
            )
        body["reuseKey"] = reuse_key
    if model is not None:
        if model not in MODELS:
            raise InvalidInputError(
                f"model: {model!r} is not one of {', '.join(MODELS)}", field="model"
            )
        body["model"] = model
    return body


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad.

    Example:
        >>> parse_retry_after("3")
        3.0
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    return scrub_text(text, secrets)


def error_from_response(
    response: httpx.Response,
    *,
    web_task_id: str | None = None,
    secrets: tuple[str, ...] = (),
    attempts: int = 1,
) -> APIError:
    """Build the right ``APIError`` subclass from an error response and its JSON body."""
    status = response.status_code
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, Mapping):
        # Scrubbed before the cut: a key straddling it must not leak its first characters.
        text = _scrub(response.text, secrets) if response.text else response.reason_phrase
        body = {"message": text[:200]}
    body = scrub(dict(body), secrets)
    correlation_id = body.get("correlationId") or scrub_text(
        response.headers.get("x-correlation-id") or "", secrets
    )
    server_message = _scrub(str(body.get("message") or response.reason_phrase), secrets)
    server_message = server_message.rstrip(". ") or f"HTTP {status}"
    retirable = body.get("retirable")
    common: dict[str, Any] = {
        "status_code": status,
        "category": body.get("category"),
        "retirable": retirable if isinstance(retirable, bool) else None,
        "details": body.get("details"),
        "correlation_id": str(correlation_id) if correlation_id else None,
        "web_task_id": web_task_id,
        "attempts": attempts,
    }
    code = body.get("code")
    if isinstance(code, str):
        common["code"] = code
    if status in (401, 403):
        return AuthenticationError(
            f"{server_message}. The API rejected the key; check INTUNED_API_KEY "
            "(and that it belongs to INTUNED_WORKSPACE_ID)",
            **common,
        )
    if status == 404:
        what = f"web task {web_task_id}" if web_task_id else "the workspace"
        return NotFoundError(
            f"{server_message}. Not found: {what}; check INTUNED_WORKSPACE_ID and the id",
            **common,
        )
    if status == 429:
        return RateLimitError(
            f"{server_message}. Rate limited; retried with backoff, slow down if it persists",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            **common,
        )
    if 400 <= status < 500:
        return BadRequestError(
            f"{server_message}. Fix the request; it will not succeed as is", **common
        )
    if status >= 500:
        return ServerError(f"{server_message}. The service failed; try again later", **common)
    return APIError(f"unexpected HTTP status {status}: {server_message}", **common)


def _retry_or_fail(
    error: WebTaskError,
    *,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None,
    retry_after: float | None = None,
) -> Decision:
    if attempt + 1 >= policy.max_attempts:
        return Fail(error)
    delay = (
        policy.clamp_retry_after(retry_after)
        if retry_after is not None
        else policy.backoff(attempt, rng)
    )
    if elapsed + delay > policy.deadline_s:
        return Fail(error)
    return Retry(delay=delay, error=error)


def decide_response(
    kind: RequestKind,
    response: httpx.Response,
    *,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
    request_body: dict[str, Any] | None = None,
    web_task_id: str | None = None,
    secrets: tuple[str, ...] = (),
    sent_at: datetime | None = None,
) -> Decision:
    """Classify one attempt that got an HTTP response. ``attempt`` is 0-based."""
    if 200 <= response.status_code < 300:
        return Done()
    error = error_from_response(
        response, web_task_id=web_task_id, secrets=secrets, attempts=attempt + 1
    )
    if kind == "start" and _ambiguous_start_status(response.status_code):
        return Fail(
            AmbiguousSubmissionError(
                f"POST start answered HTTP {response.status_code}: the task may or may not have "
                "been created (and billed). Not resent automatically; look for it by its "
                "reuseKey, or resubmit deliberately",
                request_body=request_body,
                sent_at=sent_at,
                cause=f"HTTP {response.status_code}",
                correlation_id=error.correlation_id,
            )
        )
    if response.status_code in _RETRY_STATUSES[kind]:
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        if retry_after is None and response.status_code == 503:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        return _retry_or_fail(
            error, attempt=attempt, elapsed=elapsed, policy=policy, rng=rng, retry_after=retry_after
        )
    return Fail(error)


def decide_exception(
    kind: RequestKind,
    exc: httpx.TransportError,
    *,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
    request_body: dict[str, Any] | None = None,
    web_task_id: str | None = None,
    sent_at: datetime | None = None,
) -> Decision:
    """Classify one attempt that failed in the network layer."""
    what = type(exc).__name__
    error = TransportError(
        f"{what} talking to the Web Tasks API after {attempt + 1} attempt(s): "
        f"{exc or 'no detail'}; check the network and INTUNED_BASE_URL",
        attempts=attempt + 1,
        web_task_id=web_task_id,
    )
    if kind == "start" and not isinstance(exc, _NOT_SENT):
        return Fail(
            AmbiguousSubmissionError(
                f"POST start failed with {what} after the request was sent: the task may or "
                "may not have been created (and billed). Not resent automatically; look for it "
                "by its reuseKey, or resubmit deliberately",
                request_body=request_body,
                sent_at=sent_at,
                cause=what,
            )
        )
    return _retry_or_fail(error, attempt=attempt, elapsed=elapsed, policy=policy, rng=rng)


# -- downloads of signed file URLs ------------------------------------------------------

# A signed URL that the object store refuses with one of these has expired or been
# revoked: the same URL cannot succeed again, only a fresh one from ``result()`` can.
_EXPIRED_STATUSES = frozenset({401, 403, 410})


def stays_private(url: str) -> bool:
    """Whether a request to ``url`` keeps its query off the wire: https, or plain http
    to a loopback host (the local sandbox).

    Example:
        >>> stays_private("http://127.0.0.1:8000/r?sig=s"), stays_private("http://files.example/r")
        (True, False)
    """
    scheme, host, _ = origin_of(url)
    return scheme == "https" or (scheme == "http" and is_loopback_host(host))


def check_signed_url(file: FileResult) -> None:
    """Refuse a signed URL that would travel in clear text; raise ``DownloadError``.

    The query string of a signed URL is a bearer credential, so only https (or http to a
    loopback host, i.e. the local sandbox) is allowed.

    Example:
        >>> plain = FileResult(url="http://files.example/r?sig=s",
        ...                    content_type="application/json", size_bytes=1, expires_at=None)
        >>> try:
        ...     check_signed_url(plain)
        ... except DownloadError as exc:
        ...     exc.code
        'insecure-url'
    """
    if not stays_private(file.url):
        scheme = origin_of(file.url)[0]
        raise DownloadError(
            f"refusing to fetch signed URL {redact_url(file.url)} over {scheme or 'no scheme'}"
            ": its query string is a credential; only https (or loopback http) is allowed",
            code="insecure-url",
            web_task_id=file.web_task_id,
        )


def decide_download_response(
    response: httpx.Response,
    file: FileResult,
    *,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> Decision:
    """Classify the status line of one download of ``file``'s signed URL.

    Below 400 the body may be read (``Done``). 401/403/410, or 400 once the URL's
    advertised expiry (judged at ``now``) has passed, mean the URL is dead:
    ``Fail(ResultExpiredError)``, never retried. 5xx and 429 are retried; any other 4xx
    fails.

    Example:
        >>> f = FileResult(url="https://f.example/r?sig=s", content_type="application/json",
        ...                size_bytes=2, expires_at=None)
        >>> decide_download_response(httpx.Response(410), f, attempt=0, elapsed=0,
        ...                          policy=RetryPolicy()).error.code
        'url-expired'
    """
    status = response.status_code
    if status < 400:
        return Done()
    where = redact_url(file.url)
    if status in _EXPIRED_STATUSES or (status == 400 and file.expired(now)):
        return Fail(
            ResultExpiredError(
                f"signed URL {where} refused with HTTP {status} (expired or revoked); fetch "
                "a fresh one with client.result(web_task_id)",
                web_task_id=file.web_task_id,
            )
        )
    transient = status >= 500 or status == 429
    error = DownloadError(
        f"file download of {where} answered HTTP {status}"
        + ("" if transient else "; downloading it again cannot succeed"),
        code=f"http-{status}",
        web_task_id=file.web_task_id,
        retryable=transient,
    )
    if not transient:
        return Fail(error)
    return _retry_or_fail(error, attempt=attempt, elapsed=elapsed, policy=policy, rng=rng)


def decide_download_size(
    written: int,
    file: FileResult,
    *,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """Classify a finished transfer of ``written`` bytes against the advertised size.

    A size the result did not advertise (``size_bytes`` < 0) is not checked. A mismatch
    means truncation or corruption, which a fresh transfer can fix: retried.

    Example:
        >>> f = FileResult(url="https://f.example/r?sig=s", content_type="application/json",
        ...                size_bytes=20, expires_at=None)
        >>> decide_download_size(10, f, attempt=0, elapsed=0, policy=RetryPolicy()).error.code
        'size-mismatch'
    """
    if file.size_bytes < 0 or written == file.size_bytes:
        return Done()
    error = DownloadError(
        f"downloaded {written} bytes of {redact_url(file.url)} but the result advertised "
        f"{file.size_bytes}; the transfer was truncated or corrupted",
        code="size-mismatch",
        web_task_id=file.web_task_id,
    )
    return _retry_or_fail(error, attempt=attempt, elapsed=elapsed, policy=policy, rng=rng)


def decide_download_exception(
    exc: httpx.TransportError,
    file: FileResult,
    *,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """Classify a download that failed in the network layer: always worth retrying, since
    a GET of a signed URL is idempotent and costs nothing.

    The exception's own text is left out of the error: it may quote the full URL.

    Example:
        >>> f = FileResult(url="https://f.example/r?sig=s", content_type="application/json",
        ...                size_bytes=2, expires_at=None)
        >>> d = decide_download_exception(httpx.ReadError("reset"), f, attempt=0, elapsed=0,
        ...                               policy=RetryPolicy())
        >>> type(d).__name__, type(d.error).__name__
        ('Retry', 'TransportError')
    """
    error = TransportError(
        f"{type(exc).__name__} downloading {redact_url(file.url)} after {attempt + 1} "
        "attempt(s); check the network",
        web_task_id=file.web_task_id,
        attempts=attempt + 1,
    )
    return _retry_or_fail(error, attempt=attempt, elapsed=elapsed, policy=policy, rng=rng)
