"""One download attempt of a signed file URL, bounded in time, rate and size.

The body is streamed to a temporary sibling of the target and renamed into place only
when the transfer is complete and its size checks out. Reading stops the moment the body
passes the advertised ``sizeBytes`` (or ``RetryPolicy.max_download_bytes`` when the
result advertises no size): the partial file is deleted and the overflow is not retried,
since a server that sends more than it announced will do it again. Free disk space is
checked before the request is sent.

A ``DownloadTap`` sees the transfer as it happens (``Growing``: the reader parses the file
while it downloads): the temporary file when it is opened, every chunk once it is
flushed, and the end, well (complete, checked and renamed into place) or not.

The file client's hooks (``FILE_HOOKS``) hold every request it sends, redirected ones
too, to the rule for the first: https, or plain http to a loopback host only; and a
loopback host only when the first URL was one (a remote store sending the client to
this machine's own services is refused). A redirect's body, which httpx reads whole
before following it, is counted up to 64 KiB and thrown away, not decoded (a gzip of
64 KiB can make 64 MiB).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from .._exceptions import DownloadError
from .._redact import redact_url
from .attempts import Outcome
from .config import is_loopback_host, origin_of
from .deadline import BodyTooLarge, Deadline, TransferLimits, read_body
from .models import FileResult
from .policies import RetryPolicy
from .protocol import (
    Done,
    Fail,
    decide_download_exception,
    decide_download_response,
    decide_download_size,
    stays_private,
)

__all__ = ["FILE_HOOKS", "DownloadTap", "check_disk", "download_attempt"]

# Room kept free beside a download (metadata, the temporary name, other writers).
_DISK_MARGIN = 16 << 20

# httpx reads a redirect's body whole, and throws it away, before it follows the
# redirect: a server sending more than this with one is stopped, not read to the end.
_REDIRECT_BODY = 64 << 10
# A request extension (httpx copies a request's extensions to its redirects): whether
# the download's own URL is on a loopback host, so its redirects may be.
_FROM_LOOPBACK = "webtask_frames.from_loopback"


class RedirectRefused(Exception):
    """A request the file client will not send, or a redirect it will not read to the
    end; ``code`` is the ``DownloadError``'s."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


async def _guard_request(request: httpx.Request) -> None:
    # the first request passed ``check_signed_url``; this holds its redirects to it
    url = str(request.url)
    scheme, host, _ = origin_of(url)
    if not stays_private(url):
        raise RedirectRefused(
            f"was redirected to {redact_url(url)} over {scheme or 'no scheme'}; refused, "
            "since only https (or loopback http) may carry a signed URL and its data. "
            "Not retried: ask the service's support why its file store redirects there",
            "insecure-url",
        )
    if is_loopback_host(host) and not request.extensions.get(_FROM_LOOPBACK, False):
        raise RedirectRefused(
            f"was redirected to {redact_url(url)}, this machine, by a remote file store; "
            "refused, since what a local service answers is no result data. Not retried: "
            "ask the service's support why its file store redirects there",
            "bad-redirect",
        )


async def _cap_redirect(response: httpx.Response) -> None:
    if response.has_redirect_location and isinstance(response.stream, httpx.AsyncByteStream):
        response.stream = _Capped(response.stream, _REDIRECT_BODY)


class _Capped(httpx.AsyncByteStream):
    """A redirect's body, which may not pass ``limit`` bytes, thrown away as it comes:
    httpx would decode it (``Content-Encoding``), and nothing reads it."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise RedirectRefused(
                    f"was redirected with a body of more than {self._limit} bytes, which "
                    "no file store sends; stopped reading it. Not retried: ask the "
                    "service's support, or fetch the result again later for a fresh URL",
                    "bad-redirect",
                )
        yield b""  # the body as httpx decodes it and keeps it (in the history): none

    async def aclose(self) -> None:
        await self._inner.aclose()


# The file client's ``event_hooks``: see the module docstring.
FILE_HOOKS: dict[str, list[Callable[[Any], Awaitable[None]]]] = {
    "request": [_guard_request],
    "response": [_cap_redirect],
}


class DownloadTap(Protocol):
    """Follows a download as it lands (see the module docstring)."""

    def begin(self, path: Path) -> None:
        """The attempt opened its temporary file ``path`` and writes it from byte 0."""

    def wrote(self, n: int) -> None:
        """``n`` more bytes are flushed to the file."""

    def end(self, ok: bool) -> None:
        """The attempt is over: the file complete and in place (``ok``), or not."""


def check_disk(file: FileResult, directory: Path) -> None:
    """Refuse a download that cannot fit: ``DownloadError(code="disk-full")``, before any
    byte is requested. A result without an advertised size is not checked."""
    if file.size_bytes < 0:
        return
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if file.size_bytes + _DISK_MARGIN > free:
        raise DownloadError(
            f"not enough disk space for {redact_url(file.url)}: it is {file.size_bytes} "
            f"bytes and {directory} has {free} free; free space (or pass another "
            "cache_dir), then read the result again with read_webtask_result(web_task_id)",
            code="disk-full",
            web_task_id=file.web_task_id,
            retryable=False,
        )


def _limit(file: FileResult, policy: RetryPolicy) -> int:
    return file.size_bytes if file.size_bytes >= 0 else policy.max_download_bytes


def _overflow(file: FileResult, exc: BodyTooLarge) -> Fail:
    advertised = (
        f"advertised {file.size_bytes} bytes"
        if file.size_bytes >= 0
        else f"advertised no size and passed the {exc.limit}-byte ceiling "
        "(RetryPolicy.max_download_bytes)"
    )
    text = (
        f"{advertised} but kept sending; stopped after {exc.limit} bytes and deleted the "
        "partial file. Not retried: the server announced the wrong size"
    )
    return _refused(file, text, "size-overflow")


async def download_attempt(
    files: httpx.AsyncClient,
    file: FileResult,
    target: Path,
    *,
    chunk_size: int | None,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    deadline: Deadline,
    rng: random.Random | None = None,
    on_bytes: Callable[[int], None] | None = None,
    durable: bool = True,
    tap: DownloadTap | None = None,
) -> Outcome[Path]:
    """One GET of ``file``'s signed URL with ``files`` (a client that carries no
    credential), streamed to a temporary sibling of ``target``, under ``deadline`` and
    the policy's minimum rate. ``on_bytes`` sees the size of every chunk written.
    ``durable``: the file is flushed to disk (``fsync``) before its rename. ``tap``
    follows the transfer (``DownloadTap``); it is told the end, whatever the outcome.

    Example:
        >>> outcome = await download_attempt(files, file, Path("r.json"), chunk_size=None,
        ...                                  attempt=0, elapsed=0.0, policy=RetryPolicy(),
        ...                                  deadline=Deadline.never(clock))  # doctest: +SKIP
    """
    retry: dict[str, Any] = {"attempt": attempt, "elapsed": elapsed, "policy": policy, "rng": rng}
    limits = TransferLimits(policy.min_bytes_per_s, policy.slow_grace_s, _limit(file, policy))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    ok = False
    try:
        try:
            loopback = is_loopback_host(origin_of(file.url)[1])
            request = files.build_request("GET", file.url, extensions={_FROM_LOOPBACK: loopback})
            async with asyncio.timeout(deadline.remaining()):
                response = await files.send(request, stream=True)
        except TimeoutError:
            raise httpx.ReadTimeout("no response before the deadline") from None
        try:
            note = str(response.status_code)
            decision = decide_download_response(response, file, **retry)
            if not isinstance(decision, Done):
                return Outcome(decision, note)
            written = await _write(
                response, tmp, limits, deadline, chunk_size, on_bytes, durable, tap
            )
        finally:
            await response.aclose()
        note = f"{note}, {written} bytes"
        decision = decide_download_size(written, file, **retry)
        if not isinstance(decision, Done):
            return Outcome(decision, note)
        os.replace(tmp, target)
        ok = True
        return Outcome(decision, note, target)
    except httpx.TransportError as exc:
        return Outcome(decide_download_exception(exc, file, **retry), type(exc).__name__)
    except BodyTooLarge as exc:
        return Outcome(_overflow(file, exc), "size overflow")
    except RedirectRefused as exc:
        return Outcome(_refused(file, str(exc), exc.code), "redirect refused")
    except httpx.TooManyRedirects:
        text = (
            f"was redirected more than {files.max_redirects} times; stopped. Not retried: "
            "ask the service's support, or fetch the result again later for a fresh URL"
        )
        return Outcome(_refused(file, text, "bad-redirect"), "too many redirects")
    except httpx.DecodingError as exc:
        text = (
            f"came with a body its Content-Encoding does not decode ({exc}). Not retried: "
            "fetch the result again later for a fresh URL"
        )
        return Outcome(_refused(file, text, "bad-encoding"), "undecodable body")
    finally:
        try:
            tmp.unlink(missing_ok=True)
        finally:
            if tap is not None:  # whatever happens here: a reader waits for the end
                tap.end(ok)


def _refused(file: FileResult, text: str, code: str) -> Fail:
    """A download that trying the same URL again cannot mend, told with ``text``."""
    error = DownloadError(
        f"file result {redact_url(file.url)} {text}",
        code=code,
        web_task_id=file.web_task_id,
        retryable=False,
    )
    return Fail(error)


async def _write(
    response: httpx.Response,
    tmp: Path,
    limits: TransferLimits,
    deadline: Deadline,
    chunk_size: int | None,
    on_bytes: Callable[[int], None] | None,
    durable: bool,
    tap: DownloadTap | None,
) -> int:
    """Stream the body into ``tmp`` (and fsync it, when ``durable``); the number of bytes
    written. ``tap`` is told each chunk once it is flushed: what it reads is on file."""
    with tmp.open("wb") as out:
        if tap is not None:
            tap.begin(tmp)

        def write(chunk: bytes) -> None:
            out.write(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
            if tap is not None:
                out.flush()
                tap.wrote(len(chunk))

        written = await read_body(
            response, write, deadline=deadline, limits=limits, chunk_size=chunk_size
        )
        out.flush()
        if durable:
            os.fsync(out.fileno())
    return written
