"""webtask-frames: Intuned Web Tasks as typed data frames.

Example:
    >>> import webtask_frames as wf
    >>> with wf.Client() as client:                                   # doctest: +SKIP
    ...     status = client.run("Scrape companies", parameters={"batch": "S24"})
"""

from ._client import AsyncClient, Client, RequestCounts
from ._exceptions import (
    AmbiguousSubmissionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    InvalidInputError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ResultExpiredError,
    SchemaValidationError,
    ServerError,
    TaskCanceledError,
    TaskError,
    TaskFailedError,
    TransportError,
    WaitTimeoutError,
    WebTaskError,
)
from ._models import (
    Canceled,
    Completed,
    Cost,
    FileResult,
    InlineResult,
    Pending,
    Reuse,
    Started,
    TaskFailure,
    TaskStatus,
)
from ._policies import PollPolicy, RetryPolicy
from ._version import __version__

__all__ = [
    "APIError",
    "AmbiguousSubmissionError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Canceled",
    "Client",
    "Completed",
    "ConfigurationError",
    "Cost",
    "DownloadError",
    "FileResult",
    "InlineResult",
    "InvalidInputError",
    "NotFoundError",
    "Pending",
    "PollPolicy",
    "ProtocolError",
    "RateLimitError",
    "RequestCounts",
    "ResultExpiredError",
    "RetryPolicy",
    "Reuse",
    "SchemaValidationError",
    "ServerError",
    "Started",
    "TaskCanceledError",
    "TaskError",
    "TaskFailedError",
    "TaskFailure",
    "TaskStatus",
    "TransportError",
    "WaitTimeoutError",
    "WebTaskError",
    "__version__",
]
