"""``Client``: the synchronous facade of ``AsyncClient``.

Each method runs the async core's coroutine on the dedicated loop thread of ``portal``, so
it also works inside a Jupyter cell (where an event loop is already running). The
signatures and docstrings mirror ``AsyncClient``'s, so editors show them (the way httpx
writes both its clients).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .client import DEFAULT_TIMEOUT, AsyncClient, RequestCounts
from .models import Completed, FileResult, TaskStatus
from .policies import RetryPolicy
from .portal import run_sync

__all__ = ["Client"]


class Client:
    """Synchronous Web Tasks client; works in scripts and inside Jupyter cells.

    Same arguments and methods as ``AsyncClient``; each call runs the async core on a
    dedicated event-loop thread.

    Example:
        >>> from webtask_frames import Client
        >>> with Client() as client:                                    # doctest: +SKIP
        ...     status = client.run("Scrape companies", parameters={"batch": "S24"})
        ...     print(status.cost.ai_usd)
    """

    def __init__(
        self,
        api_key: str | None = None,
        workspace_id: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_concurrency: int = 10,
        poll_min_s: float = 1.0,
        poll_max_s: float = 15.0,
        wait_timeout_s: float = 3600.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # The transport is async on purpose: the requests run on the facade's loop thread.
        self._async = AsyncClient(
            api_key,
            workspace_id,
            base_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
            poll_min_s=poll_min_s,
            poll_max_s=poll_max_s,
            wait_timeout_s=wait_timeout_s,
            retry=retry,
            transport=transport,
        )

    @property
    def async_client(self) -> AsyncClient:
        """The ``AsyncClient`` this facade drives (shares connections and counters)."""
        return self._async

    @property
    def counts(self) -> RequestCounts:
        """HTTP requests sent so far, by endpoint (retries included)."""
        return self._async.counts

    @property
    def base_url(self) -> str:
        """The API base URL in use."""
        return self._async.base_url

    @property
    def workspace_id(self) -> str:
        """The workspace the client talks to."""
        return self._async.workspace_id

    @property
    def max_concurrency(self) -> int:
        """Tasks a batch keeps in flight with this client."""
        return self._async.max_concurrency

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncClient(", "Client(", 1)

    def start(
        self,
        task: str,
        *,
        start_url: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        output_schema: Any = None,
        reuse_key: str | None = None,
        model: str | None = None,
    ) -> str:
        """Submit a web task and return its ``webTaskId``.

        Arguments are validated before anything is sent. ``output_schema`` may be a JSON
        Schema dict, a pydantic model class, or a path to a JSON file. Raises
        ``AmbiguousSubmissionError`` when the request may have created a task whose id we
        never received; such a request is never resent automatically.

        Example:
            >>> wt_id = client.start("Scrape companies", reuse_key="yc")  # doctest: +SKIP
        """
        return run_sync(
            self._async.start(
                task,
                start_url=start_url,
                parameters=parameters,
                output_schema=output_schema,
                reuse_key=reuse_key,
                model=model,
            )
        )

    def result(self, web_task_id: str, *, timeout: float | None = None) -> TaskStatus:
        """Fetch a task's current status (``Pending``, ``Started``, ``Completed``, ``Canceled``).

        Example:
            >>> status = client.result("wt_123")  # doctest: +SKIP
        """
        return run_sync(self._async.result(web_task_id, timeout=timeout))

    def wait(
        self,
        web_task_id: str,
        *,
        timeout: float | None = None,
        first_poll_s: float | None = None,
        not_found_grace_s: float = 0.0,
    ) -> TaskStatus:
        """Poll until the task is terminal and return that status (success or not).

        Polls back off from ``poll_min_s`` by x1.5 with jitter up to ``poll_max_s``.
        ``timeout`` (default ``wait_timeout_s``) is a total deadline covering every poll
        request; then ``WaitTimeoutError`` carries the id: the task keeps running and
        ``wait`` can be called again to re-attach. ``first_poll_s`` delays the first poll
        (0 polls at once); a 404 within ``not_found_grace_s`` seconds reads as pending.

        Example:
            >>> status = client.wait("wt_123", timeout=600)  # doctest: +SKIP
        """
        return run_sync(
            self._async.wait(
                web_task_id,
                timeout=timeout,
                first_poll_s=first_poll_s,
                not_found_grace_s=not_found_grace_s,
            )
        )

    def run(
        self,
        task: str,
        *,
        start_url: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        output_schema: Any = None,
        reuse_key: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> TaskStatus:
        """Start a task and wait for it. With ``check`` (default) a failed or canceled task
        raises ``TaskFailedError`` / ``TaskCanceledError``; otherwise the status is returned.

        Example:
            >>> status = client.run("Scrape companies", reuse_key="yc")  # doctest: +SKIP
            >>> status.result.data                                      # doctest: +SKIP
        """
        return run_sync(
            self._async.run(
                task,
                start_url=start_url,
                parameters=parameters,
                output_schema=output_schema,
                reuse_key=reuse_key,
                model=model,
                timeout=timeout,
                check=check,
            )
        )

    def download(
        self,
        file: FileResult | Completed,
        dest: str | os.PathLike[str],
        *,
        refresh: bool = True,
        chunk_size: int | None = None,
        timeout: float | None = None,
        durable: bool = True,
    ) -> Path:
        """Stream a file result to ``dest`` (atomically) and verify its ``sizeBytes``.

        No credential is ever sent with the signed URL. When the URL has expired or is
        refused (403/410) and the task id is known, one fresh ``result()`` call fetches a
        new URL (``refresh``); a new task is never started. Transient faults are retried by
        the client's ``RetryPolicy``. ``durable=False`` skips the ``fsync`` before the
        rename, for a file read once and deleted. ``chunk_size`` cuts the body into
        writes of that many bytes (default: as it arrives, with no copy).

        Example:
            >>> status = client.run("Export all products")        # doctest: +SKIP
            >>> client.download(status, "products.json")          # doctest: +SKIP
        """
        return run_sync(
            self._async.download(
                file,
                dest,
                refresh=refresh,
                chunk_size=chunk_size,
                timeout=timeout,
                durable=durable,
            )
        )

    def close(self) -> None:
        """Close connection pools."""
        run_sync(self._async.aclose())

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
