"""The I/O half of retrying: one loop for every request, and one download attempt.

``protocol`` decides what an attempt's outcome means (``Done``, ``Retry(delay)``,
``Fail(error)``) and this module acts on it: ``run_with_retries`` is the single retry loop
the client drives API requests and signed-URL downloads through; ``api_attempt`` sends one
API request and ``download_attempt`` performs one GET of a signed URL into a temporary
file. Attempt counting, backoff and the
``RetryPolicy`` deadline all come from the decisions, so both kinds of request follow the
same rules.
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from .._exceptions import ProtocolError
from .models import FileResult
from .policies import RetryPolicy
from .protocol import (
    Decision,
    Done,
    Fail,
    RequestKind,
    decide_download_exception,
    decide_download_response,
    decide_download_size,
    decide_exception,
    decide_response,
)

__all__ = ["Outcome", "api_attempt", "download_attempt", "run_with_retries"]

logger = logging.getLogger("webtask_frames")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """One attempt: the protocol's decision, a short note for logs (a status code or an
    exception name, never a URL) and, when the decision is ``Done``, the value."""

    decision: Decision
    note: str
    value: T | None = None


async def run_with_retries(
    what: str,
    attempt_once: Callable[[int, float], Awaitable[Outcome[T]]],
    *,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
) -> T:
    """Run ``attempt_once(attempt, elapsed)`` until its decision is final; its value.

    ``attempt`` is 0-based and ``elapsed`` the seconds since the first attempt, measured
    on ``clock``: what ``protocol``'s decisions need to apply a ``RetryPolicy``. This loop
    only logs, sleeps and raises. ``what`` names the request in logs and must hold no
    secret (signed URLs go through ``redact_url`` first).

    Example:
        >>> value = await run_with_retries("GET result", once, sleep=asyncio.sleep,
        ...                                clock=time.monotonic)  # doctest: +SKIP
    """
    started = clock()
    attempt = 0
    while True:
        outcome = await attempt_once(attempt, clock() - started)
        decision = outcome.decision
        logger.debug("%s -> %s (attempt %d)", what, outcome.note, attempt + 1)
        if isinstance(decision, Done):
            if outcome.value is None:  # pragma: no cover - a Done always carries a value
                raise ProtocolError(f"{what}: no value after a successful attempt")
            return outcome.value
        if isinstance(decision, Fail):
            raise decision.error
        logger.info("%s failed (%s); retrying in %.2fs", what, outcome.note, decision.delay)
        await sleep(decision.delay)
        attempt += 1


async def api_attempt(
    api: httpx.AsyncClient,
    kind: RequestKind,
    method: str,
    url: str,
    *,
    api_key: str,
    body: dict[str, Any] | None,
    web_task_id: str | None,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Outcome[httpx.Response]:
    """One API request with ``api`` (the client that may carry the key), classified.

    The send time goes into the decision so an ambiguous start can say when it was sent;
    the key is passed to the decision only to scrub it from echoed server messages.

    Example:
        >>> outcome = await api_attempt(api, "result", "GET", url, api_key=key, body=None,
        ...                             web_task_id="wt_1", attempt=0, elapsed=0.0,
        ...                             policy=RetryPolicy())  # doctest: +SKIP
    """
    common: dict[str, Any] = {
        "attempt": attempt,
        "elapsed": elapsed,
        "policy": policy,
        "rng": rng,
        "request_body": body,
        "web_task_id": web_task_id,
        "sent_at": datetime.now(UTC),
    }
    try:
        response = await api.request(method, url, json=body, headers={"x-api-key": api_key})
    except httpx.TransportError as exc:
        return Outcome(decide_exception(kind, exc, **common), type(exc).__name__)
    decision = decide_response(kind, response, secrets=(api_key,), **common)
    return Outcome(decision, str(response.status_code), response)


async def download_attempt(
    files: httpx.AsyncClient,
    file: FileResult,
    target: Path,
    *,
    chunk_size: int,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Outcome[Path]:
    """One GET of ``file``'s signed URL with ``files`` (a client that carries no
    credential), streamed to a temporary sibling of ``target`` and renamed into place
    only when the transfer is complete and its size checks out.

    Example:
        >>> outcome = await download_attempt(files, file, Path("r.json"), chunk_size=1 << 20,
        ...                                  attempt=0, elapsed=0.0, policy=RetryPolicy())
        ... # doctest: +SKIP
    """
    retry: dict[str, Any] = {"attempt": attempt, "elapsed": elapsed, "policy": policy, "rng": rng}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        try:
            async with files.stream("GET", file.url) as response:
                note = str(response.status_code)
                decision = decide_download_response(response, file, **retry)
                if not isinstance(decision, Done):
                    return Outcome(decision, note)
                written = await _write_body(response, tmp, chunk_size)
        except httpx.TransportError as exc:
            decision = decide_download_exception(exc, file, **retry)
            return Outcome(decision, type(exc).__name__)
        note = f"{note}, {written} bytes"
        decision = decide_download_size(written, file, **retry)
        if not isinstance(decision, Done):
            return Outcome(decision, note)
        os.replace(tmp, target)
        return Outcome(decision, note, target)
    finally:
        tmp.unlink(missing_ok=True)


async def _write_body(response: httpx.Response, tmp: Path, chunk_size: int) -> int:
    """Stream a response body to ``tmp`` and fsync it; the number of bytes written."""
    written = 0
    with tmp.open("wb") as out:
        async for chunk in response.aiter_bytes(chunk_size):
            out.write(chunk)
            written += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return written
