"""webtask-frames: Intuned Web Tasks as typed data frames.

Example:
    >>> import webtask_frames as wf
    >>> df = wf.read_webtask("List YC companies", parameters={"batch": "S24"})  # doctest: +SKIP
    >>> result = wf.run_batch("List companies", {"industry": ["ai", "bio"]})  # doctest: +SKIP
"""

from ._batch.api import run_batch, run_batch_async
from ._batch.iterate import iter_batch, iter_batch_async
from ._batch.report import BilledTask, ItemReport
from ._batch.result import BatchResult
from ._exceptions import (
    AmbiguousSubmissionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    InvalidInputError,
    LedgerLockedError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ResultExpiredError,
    ResultReadError,
    SchemaValidationError,
    ServerError,
    TaskCanceledError,
    TaskError,
    TaskFailedError,
    TransportError,
    WaitTimeoutError,
    WebTaskError,
)
from ._read import (
    read_webtask,
    read_webtask_arrow,
    read_webtask_arrow_async,
    read_webtask_async,
    read_webtask_result,
    read_webtask_result_async,
)
from ._sinks.dataset import ParquetSink
from ._sinks.duckdb_sink import DuckDBSink
from ._version import __version__
from ._wire.client import AsyncClient, RequestCounts
from ._wire.models import (
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
    UnknownStatus,
)
from ._wire.policies import PollPolicy, RetryPolicy
from ._wire.sync import Client

__all__ = [
    "APIError",
    "AmbiguousSubmissionError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchResult",
    "BilledTask",
    "Canceled",
    "Client",
    "Completed",
    "ConfigurationError",
    "Cost",
    "DownloadError",
    "DuckDBSink",
    "FileResult",
    "InlineResult",
    "InvalidInputError",
    "ItemReport",
    "LedgerLockedError",
    "NotFoundError",
    "ParquetSink",
    "Pending",
    "PollPolicy",
    "ProtocolError",
    "RateLimitError",
    "RequestCounts",
    "ResultExpiredError",
    "ResultReadError",
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
    "UnknownStatus",
    "WaitTimeoutError",
    "WebTaskError",
    "__version__",
    "iter_batch",
    "iter_batch_async",
    "read_webtask",
    "read_webtask_arrow",
    "read_webtask_arrow_async",
    "read_webtask_async",
    "read_webtask_result",
    "read_webtask_result_async",
    "run_batch",
    "run_batch_async",
]
