"""``AsyncClient``: the async core of the Web Tasks client (its sync facade is ``sync``).

The async client moves bytes and sleeps; every decision (what to send, whether an answer
is final, retryable or ambiguous) comes from ``protocol``, and every request, API call or
signed-URL download, goes through the one retry loop in ``attempts``. The sync ``Client``
runs the same coroutines on a dedicated loop thread, so it also works inside a Jupyter
cell.

Two httpx clients are kept apart on purpose: the API client sends ``x-api-key`` and follows
no redirects; the file client, used for signed result URLs, never carries a credential.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .._exceptions import (
    ConfigurationError,
    InvalidInputError,
    NotFoundError,
    ProtocolError,
    ResultExpiredError,
    WaitTimeoutError,
    WebTaskError,
)
from .._redact import install_log_filter, mask_key, redact_url, register_secret
from .._version import __version__
from .attempts import Outcome, api_attempt, run_with_retries
from .config import Settings, origin_of
from .deadline import Deadline
from .download import FILE_HOOKS, DownloadTap, check_disk, download_attempt
from .models import Canceled, Completed, FileResult, Pending, TaskStatus, parse_status
from .policies import PollPolicy, RetryPolicy
from .polling import (
    BackoffSchedule,
    Clock,
    Expired,
    GaveUp,
    SystemClock,
    poll_until_terminal,
)
from .protocol import RequestKind, build_start_body, check_signed_url

__all__ = ["NOT_FOUND_GRACE_S", "AsyncClient", "RequestCounts"]

logger = logging.getLogger("webtask_frames")
install_log_filter()

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_USER_AGENT = f"webtask-frames/{__version__}"


@cache
def _tls_context() -> ssl.SSLContext:
    """The verifying TLS context of every client in the process: httpx's own default
    without ``trust_env`` (certifi's CA bundle), built once. Building one loads the
    bundle (about 50 ms), and each client would build its own: two per ``read_webtask``
    call (the API's and the files')."""
    return httpx.create_ssl_context(trust_env=False)


# Right after a start, the result endpoint may not know the new id yet: a 404 within this
# many seconds of the start is the service catching up, not a missing task.
NOT_FOUND_GRACE_S = 30.0


@dataclass
class RequestCounts:
    """How many HTTP requests a client has sent, by endpoint (retries included)."""

    start: int = 0
    result: int = 0
    download: int = 0
    download_bytes: int = 0


class AsyncClient:
    """Async client for the Web Tasks API: start, poll, wait, download.

    Arguments not given come from ``INTUNED_API_KEY``, ``INTUNED_WORKSPACE_ID`` and
    ``INTUNED_BASE_URL``; explicit arguments win. ``max_concurrency`` is the number of
    tasks a batch keeps in flight (the service runs at most 10 per workspace).
    ``transport`` replaces the network, e.g. ``httpx.MockTransport`` or the sandbox's ASGI
    transport, for both API and file requests.

    Example:
        >>> async with AsyncClient() as client:                       # doctest: +SKIP
        ...     status = await client.run("Scrape companies", parameters={"batch": "S24"})
        ...     print(status.outcome, status.cost.ai_usd)
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
        self._settings = Settings.resolve(api_key, workspace_id, base_url)
        register_secret(self._settings.api_key)
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise InvalidInputError(
                f"max_concurrency: expected an int >= 1, got {max_concurrency!r}",
                field="max_concurrency",
            )
        self.max_concurrency = max_concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.poll = PollPolicy(min_s=poll_min_s, max_s=poll_max_s, timeout_s=wait_timeout_s)
        self.timeout = timeout
        self.counts = RequestCounts()
        self._transport = transport
        self._api_origin = origin_of(self._settings.base_url)
        self._http: httpx.AsyncClient | None = None
        self._files: httpx.AsyncClient | None = None
        self._rng = random.Random()
        # The time source of waits, polls and retry sleeps: tests inject a manual clock
        # here instead of patching the asyncio module.
        self.clock: Clock = SystemClock()

    # -- properties -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API base URL in use (no trailing slash)."""
        return self._settings.base_url

    @property
    def workspace_id(self) -> str:
        """The workspace the client talks to."""
        return self._settings.workspace_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, workspace_id="
            f"{self.workspace_id!r}, api_key={mask_key(self._settings.api_key)!r})"
        )

    # -- lifecycle --------------------------------------------------------------------

    def _api(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,  # a redirect must never carry the key elsewhere
                trust_env=False,  # no .netrc, no proxy variables picking up the key
                verify=_tls_context(),
                transport=self._transport,
                headers={"user-agent": _USER_AGENT},
                event_hooks={"request": [self._guard_origin]},
            )
        return self._http

    def _file_client(self) -> httpx.AsyncClient:
        if self._files is None:
            transport = self._transport
            if transport is None:
                # imported here: aiohttp takes a while to import, and only downloads use it
                from .files import AiohttpTransport

                transport = AiohttpTransport(ssl_context=_tls_context())
            self._files = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=True,  # object stores redirect; no credential to leak here
                trust_env=False,
                transport=transport,  # aiohttp's, unless the caller gave one (see ``files``)
                headers={"user-agent": _USER_AGENT},
                event_hooks=FILE_HOOKS,  # redirects held to the first URL's rules
            )
        return self._files

    async def _guard_origin(self, request: httpx.Request) -> None:
        # Defence in depth: the key is only ever attached to URLs built from base_url.
        if "x-api-key" in request.headers and origin_of(str(request.url)) != self._api_origin:
            del request.headers["x-api-key"]
            raise ConfigurationError("refusing to send the API key outside the API origin")

    async def aclose(self) -> None:
        """Close the underlying connection pools."""
        clients, self._http, self._files = (self._http, self._files), None, None
        try:
            if clients[0] is not None:
                await clients[0].aclose()
        finally:
            if clients[1] is not None:
                await clients[1].aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- HTTP with retries ------------------------------------------------------------

    def _url(self, *parts: str) -> str:
        return "/".join((self.base_url, self.workspace_id, *parts))

    async def _request(
        self,
        kind: RequestKind,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        web_task_id: str | None = None,
        deadline: Deadline | None = None,
    ) -> httpx.Response:
        # The request's own bound (RetryPolicy.deadline_s), or the caller's if sooner.
        limit = (deadline or Deadline.never(self.clock)).within(self.retry.deadline_s)
        api, key = self._api(), self._settings.api_key

        async def attempt_once(attempt: int, elapsed: float) -> Outcome[httpx.Response]:
            if kind == "start":
                self.counts.start += 1
            else:
                self.counts.result += 1
            return await api_attempt(
                api,
                kind,
                method,
                url,
                api_key=key,
                body=body,
                web_task_id=web_task_id,
                attempt=attempt,
                elapsed=elapsed,
                policy=self.retry,
                deadline=limit,
                rng=self._rng,
            )

        return await run_with_retries(
            f"{method} {kind}",
            attempt_once,
            sleep=self.clock.sleep,
            clock=self.clock.now,
            deadline=limit,
        )

    # -- the API ----------------------------------------------------------------------

    async def start(
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
            >>> wt_id = await client.start("Scrape companies", reuse_key="yc")  # doctest: +SKIP
        """
        body = build_start_body(
            task,
            start_url=start_url,
            parameters=parameters,
            output_schema=output_schema,
            reuse_key=reuse_key,
            model=model,
        )
        return await self.start_body(body)

    async def start_body(self, body: dict[str, Any], *, timeout: float | None = None) -> str:
        """Submit an already-built start body (see ``build_start_body``); ``timeout`` bounds
        the whole request (default ``RetryPolicy.deadline_s``)."""
        deadline = Deadline.after(self.clock, timeout)
        url = self._url("web-tasks", "start")
        response = await self._request("start", "POST", url, body=body, deadline=deadline)
        try:
            payload = response.json()
            web_task_id = payload["webTaskId"]
        except (ValueError, KeyError, TypeError):
            raise ProtocolError(
                "start answered 200 without a webTaskId; the task may exist. Check the "
                "service's task list before resubmitting"
            ) from None
        if not isinstance(web_task_id, str) or not web_task_id:
            raise ProtocolError(f"start answered an invalid webTaskId {web_task_id!r}")
        logger.info("started web task %s", web_task_id)
        return web_task_id

    async def result(self, web_task_id: str, *, timeout: float | None = None) -> TaskStatus:
        """Fetch a task's current status (``Pending``, ``Started``, ``Completed``, ``Canceled``).

        ``timeout`` bounds the whole request, retries included (default and maximum:
        ``RetryPolicy.deadline_s``).

        Example:
            >>> status = await client.result("wt_123")  # doctest: +SKIP
        """
        return await self._result(web_task_id, Deadline.after(self.clock, timeout))

    async def _result(self, web_task_id: str, deadline: Deadline) -> TaskStatus:
        if not isinstance(web_task_id, str) or not web_task_id or "/" in web_task_id:
            raise InvalidInputError(
                f"web_task_id: expected an id like 'wt_...', got {web_task_id!r}",
                field="web_task_id",
            )
        url = self._url("web-tasks", web_task_id, "result")
        response = await self._request(
            "result", "GET", url, web_task_id=web_task_id, deadline=deadline
        )
        try:
            payload = response.json()
        except ValueError:
            raise ProtocolError(
                "result answered 200 with a body that is not JSON", web_task_id=web_task_id
            ) from None
        return parse_status(payload)

    async def wait(
        self,
        web_task_id: str,
        *,
        timeout: float | None = None,
        first_poll_s: float | None = None,
        not_found_grace_s: float = 0.0,
    ) -> TaskStatus:
        """Poll until the task is terminal and return that status (success or not).

        Polls back off from ``poll_min_s`` by x1.5 with jitter up to ``poll_max_s``.
        ``timeout`` (default ``wait_timeout_s``) is a total deadline: the sleeps and every
        poll request (connect, headers, body, retries) end by it; then
        ``WaitTimeoutError`` carries the id: the task keeps running and ``wait`` can be
        called again to re-attach. ``first_poll_s`` delays the first poll (0 polls at
        once), e.g. to a predicted finish time. For a task started moments ago, a 404
        within ``not_found_grace_s`` seconds is read as "not visible yet" and polled again.

        Example:
            >>> status = await client.wait("wt_123", timeout=600)  # doctest: +SKIP
        """
        limit = self.poll.timeout_s if timeout is None else timeout
        clock = self.clock
        deadline = Deadline.after(clock, limit)
        grace_until = clock.now() + not_found_grace_s
        assert deadline.at is not None
        try:
            outcome = await poll_until_terminal(
                lambda: self.poll_once(web_task_id, deadline, grace_until),
                BackoffSchedule(self.poll, self._rng, first_poll_s=first_poll_s),
                clock,
                deadline=deadline.at,
            )
        except WebTaskError as exc:
            if not deadline.expired():
                raise
            outcome = GaveUp(exc)
        if isinstance(outcome, Expired | GaveUp):
            last = outcome.last if isinstance(outcome, Expired) else None
            raise WaitTimeoutError(
                f"web task still {last.status if last else 'unknown'} after {limit:g}s; "
                f"it keeps running: call wait({web_task_id!r}) again to re-attach",
                web_task_id=web_task_id,
                last_status=last.status if last else None,
            )
        return outcome

    async def poll_once(
        self, web_task_id: str, deadline: Deadline, grace_until: float = 0.0
    ) -> TaskStatus:
        """One poll under ``deadline``. Until ``grace_until`` (on the client's clock) a 404
        is the service not having caught up with a fresh start: the task reads as pending.
        """
        try:
            return await self._result(web_task_id, deadline)
        except NotFoundError:
            if self.clock.now() >= grace_until:
                raise
            logger.info("web task %s not visible yet (404 right after its start)", web_task_id)
            return Pending(web_task_id=web_task_id, status="pending", created_at=None)

    async def run(
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
        ``timeout`` (default ``wait_timeout_s``) is the total deadline of start and wait.

        Example:
            >>> status = await client.run("Scrape companies", reuse_key="yc")  # doctest: +SKIP
            >>> status.result.data                                            # doctest: +SKIP
        """
        body = build_start_body(
            task,
            start_url=start_url,
            parameters=parameters,
            output_schema=output_schema,
            reuse_key=reuse_key,
            model=model,
        )
        deadline = Deadline.after(self.clock, self.poll.timeout_s if timeout is None else timeout)
        web_task_id = await self.start_body(body, timeout=deadline.remaining())
        # A task just submitted is certainly not done: the first poll waits.
        status = await self.wait(
            web_task_id,
            timeout=deadline.remaining(),
            first_poll_s=self.poll.first_interval(self._rng),
            not_found_grace_s=NOT_FOUND_GRACE_S,
        )
        if check and isinstance(status, Completed | Canceled):
            status.raise_for_outcome()
        return status

    async def download(
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

        No credential is ever sent with the signed URL. Free disk space is checked first;
        reading stops the moment the body passes the advertised size (or
        ``RetryPolicy.max_download_bytes`` when none is advertised) and the partial file
        is deleted. When the URL has expired or is refused (403/410) and the task id is
        known, one fresh ``result()`` call fetches a new URL (``refresh``); a new task is
        never started. Transient faults are retried by the client's ``RetryPolicy``; a body
        slower than its ``min_bytes_per_s`` is cut off. ``timeout`` is a total deadline
        for all of it (default: none besides the minimum rate). ``durable`` flushes the
        file to disk (``fsync``) before it is renamed into place; ``False`` skips that, for
        a file read once and deleted (``read_webtask`` without a ``cache_dir`` does).
        ``chunk_size`` cuts the body into writes of that many bytes; the default writes
        it as it arrives (cutting it again costs a copy of every byte).

        Example:
            >>> status = await client.run("Export all products")        # doctest: +SKIP
            >>> await client.download(status, "products.json")          # doctest: +SKIP
        """
        if isinstance(file, Completed):
            if not isinstance(file.result, FileResult):
                raise InvalidInputError(
                    "download: this task's result is inline, not a file; use status.result.data",
                    field="file",
                    web_task_id=file.web_task_id,
                )
            file = file.result
        return await self._download_file(
            file,
            Path(dest),
            refresh=refresh,
            chunk_size=chunk_size,
            timeout=timeout,
            durable=durable,
        )

    async def _download_file(
        self,
        file: FileResult,
        target: Path,
        *,
        refresh: bool = True,
        chunk_size: int | None = None,
        timeout: float | None = None,
        durable: bool = True,
        tap: DownloadTap | None = None,
    ) -> Path:
        """``download`` of a ``FileResult``, with ``tap`` following the transfer as it lands
        (``DownloadTap``: ``read_webtask`` parses the file while it downloads)."""
        deadline = Deadline.after(self.clock, timeout)
        once = partial(
            self._download_once, chunk_size=chunk_size, deadline=deadline, durable=durable, tap=tap
        )
        try:
            return await once(file, target)
        except ResultExpiredError:
            if not refresh or not file.web_task_id:
                raise
            logger.info("signed URL of %s expired; fetching a fresh one", file.web_task_id)
            fresh = await self._result(file.web_task_id, deadline)
            if not isinstance(fresh, Completed) or not isinstance(fresh.result, FileResult):
                raise
            return await once(fresh.result, target)

    async def _download_once(
        self,
        file: FileResult,
        target: Path,
        *,
        chunk_size: int | None,
        deadline: Deadline,
        durable: bool,
        tap: DownloadTap | None,
    ) -> Path:
        check_signed_url(file)
        check_disk(file, target.parent)
        files = self._file_client()

        def count(n: int) -> None:
            self.counts.download_bytes += n

        async def attempt_once(attempt: int, elapsed: float) -> Outcome[Path]:
            self.counts.download += 1
            return await download_attempt(
                files,
                file,
                target,
                chunk_size=chunk_size,
                attempt=attempt,
                elapsed=elapsed,
                policy=self.retry,
                deadline=deadline,
                rng=self._rng,
                on_bytes=count,
                durable=durable,
                tap=tap,
            )

        what = f"GET {redact_url(file.url)}"
        return await run_with_retries(
            what, attempt_once, sleep=self.clock.sleep, clock=self.clock.now, deadline=deadline
        )
