"""The I/O half of retrying: one loop for every request, and one API attempt.

``protocol`` decides what an attempt's outcome means (``Done``, ``Retry(delay)``,
``Fail(error)``) and this module acts on it: ``run_with_retries`` is the single retry loop
the client drives API requests and signed-URL downloads (``download``) through;
``api_attempt`` sends one API request. Attempt counting and backoff come from the
decisions; the loop enforces the call's total ``Deadline``: every attempt runs under what
is left of it, and no sleep outlasts it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import httpx

from .._exceptions import ProtocolError
from .deadline import BodyTooLarge, Deadline, TransferLimits, TransferTooSlow, read_body
from .policies import RetryPolicy
from .protocol import (
    Decision,
    Done,
    Fail,
    RequestKind,
    decide_exception,
    decide_response,
)

__all__ = ["API_MAX_BYTES", "Outcome", "api_attempt", "run_with_retries"]

# An API answer (a status with inline data) larger than this is refused.
API_MAX_BYTES = 512 << 20
# Headers that described the body on the wire, not the decoded bytes we keep.
_WIRE_HEADERS = ("content-encoding", "content-length", "transfer-encoding")

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
    deadline: Deadline | None = None,
) -> T:
    """Run ``attempt_once(attempt, elapsed)`` until its decision is final; its value.

    ``attempt`` is 0-based and ``elapsed`` the seconds since the first attempt, measured
    on ``clock``: what ``protocol``'s decisions need to apply a ``RetryPolicy``. This loop
    only logs, sleeps and raises. With a ``deadline``, a retry whose backoff would end
    past it is not made (the last error is raised). ``what`` names the request in logs
    and must hold no secret (signed URLs go through ``redact_url`` first).

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
        if deadline is not None and deadline.cap(decision.delay) < decision.delay:
            logger.info("%s failed (%s); no time left before the deadline", what, outcome.note)
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
    deadline: Deadline,
    rng: random.Random | None = None,
) -> Outcome[httpx.Response]:
    """One API request with ``api`` (the client that may carry the key), classified.

    The whole attempt (connect, headers, body) runs under ``deadline``, and the body must
    keep ``policy``'s minimum rate: a stall or a drip ends as an ``httpx.ReadTimeout``,
    classified like any other (a start then is ambiguous). The send time goes into the
    decision so an ambiguous start can say when it was sent; the key is passed to the
    decision only to scrub it from echoed server messages.

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
        response = await _send(api, method, url, body, api_key, deadline, policy)
    except httpx.TransportError as exc:
        return Outcome(decide_exception(kind, exc, **common), type(exc).__name__)
    decision = decide_response(kind, response, secrets=(api_key,), **common)
    return Outcome(decision, str(response.status_code), response)


async def _send(
    api: httpx.AsyncClient,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    api_key: str,
    deadline: Deadline,
    policy: RetryPolicy,
) -> httpx.Response:
    """Send one request and read its body under ``deadline`` and the minimum rate; the
    response, rebuilt around the decoded body. Every failure is an ``httpx`` error."""
    limits = TransferLimits(policy.min_bytes_per_s, policy.slow_grace_s, API_MAX_BYTES)
    left = deadline.remaining()
    try:
        async with asyncio.timeout(left):
            request = api.build_request(method, url, json=body, headers={"x-api-key": api_key})
            response = await api.send(request, stream=True)
    except TimeoutError:
        raise TransferTooSlow("no response before the deadline") from None
    try:
        parts: list[bytes] = []
        await read_body(response, parts.append, deadline=deadline, limits=limits)
    except BodyTooLarge as exc:
        raise httpx.RemoteProtocolError(f"response body too large: {exc}") from None
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _WIRE_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=b"".join(parts),
        request=response.request,
        extensions={"reason_phrase": response.reason_phrase.encode("latin-1", "replace")},
    )
