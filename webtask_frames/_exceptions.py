"""Every error webtask-frames raises, in one tree.

Each exception carries what a program needs to decide what to do next: a machine-readable
``code``, the ``web_task_id`` when a task is involved, the server's ``correlation_id`` when
the server answered, and a ``retryable`` property that says whether trying the same thing
again can succeed. Messages end with what to do next. All of them pickle (they cross
process and thread boundaries in batch runs), and none of them ever contains the API key
or a signed URL's query string.

    WebTaskError
    ├── ConfigurationError ........ missing or unsafe settings (key, workspace, base URL)
    ├── InvalidInputError ......... a bad argument, caught before any request is sent
    │   └── LedgerLockedError ..... another running batch holds this ledger
    ├── ProtocolError ............. the server answered something outside the contract
    ├── TransportError ............ the network failed and retries were exhausted
    ├── APIError .................. the API answered with an HTTP error status
    │   ├── BadRequestError ....... 400: the request is invalid; fix it, do not retry
    │   ├── AuthenticationError ... 401/403: the API key is missing, wrong or revoked
    │   ├── NotFoundError ......... 404: unknown workspace or web task
    │   ├── RateLimitError ........ 429: too many requests; retried with Retry-After
    │   └── ServerError ........... 5xx: the service failed; retried where it is safe
    ├── AmbiguousSubmissionError .. a start request may or may not have created a task
    ├── WaitTimeoutError .......... wait() gave up; the task is still running server-side
    ├── TaskError ................. the task reached a terminal state other than success
    │   ├── TaskFailedError ....... completed with outcome "failed" (carries error code)
    │   └── TaskCanceledError ..... canceled
    ├── DownloadError ............. a file result could not be fetched intact
    │   └── ResultExpiredError .... the signed URL expired or was refused; re-fetch it
    ├── ResultReadError ........... a billed task's result could not be read into a table
    └── SchemaValidationError ..... result records do not match the outputSchema

Example:
    >>> from webtask_frames import Client, TaskFailedError
    >>> try:
    ...     Client().run("Scrape companies")           # doctest: +SKIP
    ... except TaskFailedError as exc:
    ...     print(exc.code, exc.web_task_id, exc.retryable)
"""

from __future__ import annotations

from typing import Any

from ._redact import scrub

__all__ = [
    "APIError",
    "AmbiguousSubmissionError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DownloadError",
    "InvalidInputError",
    "LedgerLockedError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "ResultExpiredError",
    "ResultReadError",
    "SchemaValidationError",
    "ServerError",
    "TaskCanceledError",
    "TaskError",
    "TaskFailedError",
    "TransportError",
    "WaitTimeoutError",
    "WebTaskError",
]

# Outcome error codes the service documents as transient: a fresh submission can succeed.
RETRYABLE_TASK_CODES = frozenset({"workspace-rate-limited", "internal-error"})
# Outcome error codes after which no further submission can succeed until a human acts.
FATAL_TASK_CODES = frozenset({"unauthenticated", "no-ai-credits-left"})


def _rebuild(cls: type[WebTaskError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls, *args)
    exc.args = args
    for name, value in state.items():
        setattr(exc, name, value)
    return exc


class WebTaskError(Exception):
    """Base class of every webtask-frames error.

    Attributes:
        code: machine-readable error code (the service's where it sent one).
        web_task_id: the ``wt_...`` id the error concerns, if any.
        correlation_id: the server's correlation id, to quote to support.

    Example:
        >>> try:
        ...     raise WebTaskError("boom", code="x")
        ... except WebTaskError as exc:
        ...     exc.code
        'x'
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        web_task_id: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(scrub(message))
        self.message = message
        self.code = code or self.default_code
        self.web_task_id = web_task_id
        self.correlation_id = correlation_id

    @property
    def retryable(self) -> bool:
        """Whether trying the same operation again can succeed."""
        return False

    def __setattr__(self, name: str, value: Any) -> None:
        # Every field may echo what a server sent (code, correlation id, details...):
        # each is scrubbed as it is set, so str(), repr(), logs and pickles are clean.
        super().__setattr__(name, scrub(value))

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive Exception's default pickling, which
        # calls cls(*args); restore the instance dict instead.
        return (_rebuild, (type(self), scrub(self.args), dict(self.__dict__)))

    def __str__(self) -> str:
        extras = []
        if self.web_task_id:
            extras.append(f"webTaskId={self.web_task_id}")
        if self.correlation_id:
            extras.append(f"correlationId={self.correlation_id}")
        suffix = f" ({', '.join(extras)})" if extras else ""
        return str(scrub(f"{self.message}{suffix}"))

    def __repr__(self) -> str:
        return str(scrub(super().__repr__()))


class ConfigurationError(WebTaskError):
    """Settings are missing or unsafe; raised before any request is sent.

    Example:
        >>> Client(api_key=None)  # doctest: +SKIP
        ConfigurationError: no API key: pass api_key=... or set INTUNED_API_KEY
    """

    default_code = "configuration"


class InvalidInputError(WebTaskError, ValueError):
    """An argument is invalid; raised before any request is sent, so nothing is billed.

    ``field`` names the offending argument.

    Example:
        >>> client.start("task", model="gpt")  # doctest: +SKIP
        InvalidInputError: model: 'gpt' is not one of haiku, sonnet, opus
    """

    default_code = "invalid-input"

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class LedgerLockedError(InvalidInputError):
    """Another process is running a batch on this ledger (it holds the ledger's lock).

    Wait for that batch to finish (or stop it), or pass a different ledger path. The
    lock is released by the operating system when its process dies, even by ``kill -9``.

    Example:
        >>> run_batch("List companies", grid, ledger="sweep.db")  # doctest: +SKIP
        LedgerLockedError: ledger 'sweep.db' is in use by another running batch; ...
    """

    default_code = "ledger-locked"


class ProtocolError(WebTaskError):
    """The server's answer does not follow the Web Tasks contract.

    Example:
        >>> raise ProtocolError("result: unknown status 'paused'")  # doctest: +SKIP
    """

    default_code = "protocol"


class TransportError(WebTaskError):
    """The network failed (connect error, timeout, dropped connection) on every attempt.

    Example:
        >>> exc = TransportError("connection refused", attempts=5)
        >>> exc.retryable
        True
    """

    default_code = "transport"

    def __init__(self, message: str, *, attempts: int = 1, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        return True


class APIError(WebTaskError):
    """The API answered with an HTTP error status.

    Attributes mirror the service's error body: ``status_code``, ``code``, ``category``,
    ``message``, ``retirable`` (sic, the wire name), ``details`` and ``correlation_id``.

    Example:
        >>> exc = APIError("bad", status_code=400, code="bad-request", retirable=False)
        >>> (exc.status_code, exc.retryable)
        (400, False)
    """

    default_code = "api-error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        category: str | None = None,
        retirable: bool | None = None,
        details: Any = None,
        attempts: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code
        self.category = category
        self.retirable = retirable
        self.details = details
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        if self.retirable is not None:
            return self.retirable
        return self.status_code in (429, 500, 502, 503, 504)

    def __str__(self) -> str:
        return f"HTTP {self.status_code} {self.code}: {super().__str__()}"


class BadRequestError(APIError):
    """400: the service rejected the request as invalid. Fix the request; do not retry."""

    default_code = "bad-request"


class AuthenticationError(APIError):
    """401/403: the API key is missing, wrong or revoked. Set ``INTUNED_API_KEY``."""

    default_code = "unauthorized"

    @property
    def retryable(self) -> bool:
        return False


class NotFoundError(APIError):
    """404: the workspace or web task does not exist (check ``INTUNED_WORKSPACE_ID``)."""

    default_code = "not-found"


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` holds the server's hint in seconds."""

    default_code = "rate-limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return True


class ServerError(APIError):
    """5xx: the service failed to answer. Retried automatically where that is safe."""

    default_code = "server-error"


class AmbiguousSubmissionError(WebTaskError):
    """A start request was sent but its fate is unknown: the task may exist and be billed.

    Raised after a read timeout, a connection dropped after the body was sent, or a 500,
    502 or 504 on ``POST /web-tasks/start``. The request is never resent silently, since
    a resend can run (and bill) the task twice. ``request_body`` is the exact JSON that was
    sent and ``sent_at`` when; look for a task with the same ``reuseKey`` created around
    that time, or resubmit deliberately if paying twice is acceptable.

    Example:
        >>> exc = AmbiguousSubmissionError("timed out", request_body={"task": "t"})
        >>> exc.retryable
        False
    """

    default_code = "ambiguous-submission"

    def __init__(
        self,
        message: str,
        *,
        request_body: dict[str, Any] | None = None,
        sent_at: Any = None,
        cause: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.request_body = request_body or {}
        self.sent_at = sent_at
        self.cause = cause

    @property
    def reuse_key(self) -> str | None:
        """The reuseKey that was sent, if any: the handle to reconcile by."""
        key = self.request_body.get("reuseKey")
        return key if isinstance(key, str) else None


class WaitTimeoutError(WebTaskError, TimeoutError):
    """``wait()`` reached its deadline; the task keeps running server-side.

    Re-attach with ``client.wait(exc.web_task_id)``: no new task is needed.

    Example:
        >>> exc = WaitTimeoutError("still running", web_task_id="wt_1", last_status="started")
        >>> exc.retryable
        True
    """

    default_code = "wait-timeout"

    def __init__(self, message: str, *, last_status: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.last_status = last_status

    @property
    def retryable(self) -> bool:
        return True


class TaskError(WebTaskError):
    """The task ended without a successful result. ``status`` holds the final status."""

    default_code = "task-error"

    def __init__(self, message: str, *, status: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status


class TaskFailedError(TaskError):
    """The task completed with outcome ``failed``; ``code`` is the service's error code.

    ``retryable`` is True for ``workspace-rate-limited`` and ``internal-error``, where a
    fresh submission can succeed; ``cost_usd`` is what the failed run still cost.

    Example:
        >>> exc = TaskFailedError("rate limited", code="workspace-rate-limited")
        >>> exc.retryable
        True
    """

    default_code = "failed"

    def __init__(
        self,
        message: str,
        *,
        cost_usd: float | None = None,
        details: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.cost_usd = cost_usd
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_TASK_CODES

    @property
    def fatal(self) -> bool:
        """True when no further submission can succeed (credentials or credits)."""
        return self.code in FATAL_TASK_CODES


class TaskCanceledError(TaskError):
    """The task was canceled before it completed."""

    default_code = "canceled"


class DownloadError(WebTaskError):
    """A file result could not be downloaded intact (HTTP error or size mismatch).

    Example:
        >>> DownloadError("got 10 of 20 bytes", code="size-mismatch").retryable
        True
    """

    default_code = "download"

    def __init__(self, message: str, *, retryable: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        return self._retryable


class ResultExpiredError(DownloadError):
    """The signed file URL expired or was refused (403/410).

    Call ``client.result(web_task_id)`` for a fresh URL; never start a new task for it.
    Downloading the same URL again cannot succeed, so it is not ``retryable``.
    """

    default_code = "url-expired"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs["retryable"] = False
        super().__init__(message, **kwargs)


class ResultReadError(WebTaskError):
    """A task ran (and was billed) but its result could not be read into a table.

    Raised instead of a bare Python error for anything that goes wrong after a start: a
    result file with invalid JSON, a body that is not UTF-8, nesting too deep to parse, a
    ``record_path`` that matches nothing, a full disk. ``web_task_id`` and ``cost_usd``
    (when known) are set; ``read_webtask_result(web_task_id, ...)`` reads the result again
    without starting (or paying for) a new task.

    Example:
        >>> ResultReadError("bad JSON", web_task_id="wt_1", cost_usd=0.2).cost_usd
        0.2
    """

    default_code = "result-unreadable"

    def __init__(
        self, message: str, *, cost_usd: float | None = None, cause: str | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.cost_usd = cost_usd
        self.cause = cause


class SchemaValidationError(WebTaskError, ValueError):
    """Result records do not conform to the outputSchema.

    ``errors`` lists ``(row, json_path, message)`` for the first failures and
    ``n_invalid`` counts every invalid row.
    """

    default_code = "schema-validation"

    def __init__(
        self,
        message: str,
        *,
        errors: list[tuple[int, str, str]] | None = None,
        n_invalid: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors or []
        self.n_invalid = n_invalid
