"""Seeded transport faults, injected by an outermost ASGI middleware.

Decisions are a pure function of ``(seed, endpoint, n)`` where ``n`` counts
requests to that endpoint, so a given request sequence meets the same faults
on every run and each endpoint's faults are independent of the others.

Dropped connections must look like a real network failure to a client:

* under uvicorn the middleware finds the connection's asyncio transport
  (the ``send`` callable uvicorn passes is a bound method of its per-request
  cycle object, which holds ``.transport``) and calls ``abort()`` before any
  byte of the response is written. The client sees the socket close with no
  response: httpx raises ``RemoteProtocolError("Server disconnected without
  sending a response.")``. Raising from the app instead would make uvicorn
  answer 500, which is a different fault.
* under ``httpx.ASGITransport`` (and the sandbox's sync transport) there is no
  socket, so the middleware raises that same ``httpx.RemoteProtocolError``;
  the transport re-raises app exceptions to the caller, who sees the same
  exception type as over the wire.

The middleware sits outside Starlette so Starlette's error middleware never
turns these into 500 responses, and so that ``send`` is still uvicorn's own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from ._config import FaultRates, SandboxConfig
from ._state import SandboxState, _unit

__all__ = ["FaultDecision", "FaultMiddleware", "FaultPlan", "classify"]

SCOPE_FAULT_KEY = "webtask_frames.sandbox.fault"
_AMBIGUOUS_ON_START = frozenset({"http_500", "http_502", "http_504", "drop"})
_STATUS = {"http_429": 429, "http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504}


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The fault (if any) for one request."""

    kind: str | None = None
    slow: bool = False
    after_accept: bool = False


_NO_FAULT = FaultDecision()


class FaultPlan:
    """Deterministic per-endpoint fault draws.

    Example:
        >>> from webtask_frames.sandbox import SandboxConfig
        >>> plan = FaultPlan(SandboxConfig(seed=7, faults={"result": {"503": 0.5}}))
        >>> kinds = [plan.draw("result").kind for _ in range(1000)]
        >>> 400 < kinds.count("http_503") < 600
        True
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def draw(self, endpoint: str) -> FaultDecision:
        rates: FaultRates = self.config.faults[endpoint]
        if not rates.any:
            return _NO_FAULT
        with self._lock:
            n = self._counts.get(endpoint, 0)
            self._counts[endpoint] = n + 1
        seed = self.config.seed
        u = _unit(seed, "fault", endpoint, n)
        kind: str | None = None
        acc = 0.0
        for name in FaultRates.EXCLUSIVE:
            acc += getattr(rates, name)
            if u < acc:
                kind = name
                break
        if kind in ("expired", "truncated") and endpoint != "download":
            kind = None  # only meaningful for file downloads
        slow = rates.slow > 0 and _unit(seed, "slow", endpoint, n) < rates.slow
        after = (
            endpoint == "start"
            and kind in _AMBIGUOUS_ON_START
            and _unit(seed, "after-accept", n) < self.config.fault_start_after_accept
        )
        return FaultDecision(kind=kind, slow=slow, after_accept=after)


def classify(method: str, path: str, prefix: str) -> str | None:
    """Which faultable endpoint a request targets (``None``: not faultable)."""
    if path.startswith("/_sandbox/files/"):
        return "download" if method in ("GET", "HEAD") else None
    # The API answers under the configured prefix and at the root (the overview's curl).
    parts = path[len(prefix) + 1 :].split("/") if path.startswith(prefix + "/") else []
    if len(parts) not in (3, 4):
        parts = path[1:].split("/")
    if method == "POST" and len(parts) == 3 and parts[1:] == ["web-tasks", "start"]:
        return "start"
    if method == "GET" and len(parts) == 4 and parts[1] == "web-tasks" and parts[3] == "result":
        return "result"
    return None


_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>{cid}</RequestId></Error>"
)
_API_ERRORS = {
    429: ("rate-limited", "Too many requests. Retry after the time in the Retry-After header."),
    500: ("internal-server-error", "An unexpected error occurred. Please retry."),
    503: ("service-unavailable", "The service is temporarily unavailable. Please retry."),
}
_STORE_ERRORS = {
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("ServiceUnavailable", "Please reduce your request rate."),
}
_REASONS = {502: "Bad Gateway", 504: "Gateway Time-out"}


def fault_response(
    status: int, endpoint: str, retry_after: int
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of an injected error response.

    API endpoints answer 429/500/503 with the reference error shape (category
    ``system``, ``retirable: true``); 502/504 come from the "gateway" as HTML,
    as real load balancers do, so clients must cope with non-JSON bodies;
    downloads answer like an object store (XML).
    """
    cid = str(uuid.uuid4())
    headers = [(b"x-correlation-id", cid.encode())]
    if status in _REASONS:
        body = _HTML.format(status=status, reason=_REASONS[status]).encode()
        headers.append((b"content-type", b"text/html"))
    elif endpoint == "download":
        code, message = _STORE_ERRORS[status]
        body = _XML.format(code=code, message=message, cid=cid).encode()
        headers.append((b"content-type", b"application/xml"))
    else:
        code, message = _API_ERRORS[status]
        body = json.dumps(
            {
                "code": code,
                "category": "system",
                "message": message,
                "retirable": True,
                "correlationId": cid,
            }
        ).encode()
        headers.append((b"content-type", b"application/json"))
    if status in (429, 503):
        headers.append((b"retry-after", str(retry_after).encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    return headers, body


def _find_transport(send: Any) -> Any:
    """The asyncio transport behind uvicorn's ``send`` (``None`` in-process)."""
    owner = getattr(send, "__self__", None)
    transport = getattr(owner, "transport", None)
    if transport is not None and callable(getattr(transport, "abort", None)):
        return transport
    return None


def dropped_connection_error() -> Exception:
    """What an in-process client sees for a dropped connection."""
    import httpx

    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


async def _discard(message: Any) -> None:
    return None


class FaultMiddleware:
    """Counts calls per endpoint and injects the planned faults."""

    def __init__(self, app: Any, state: SandboxState, plan: FaultPlan) -> None:
        self.app = app
        self.state = state
        self.plan = plan
        self.config = state.config

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = classify(scope["method"], scope["path"], self.config.prefix)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        self.state.record_call(endpoint)
        decision = self.plan.draw(endpoint)
        if decision.slow:
            self.state.record_fault(endpoint, "slow")
            await asyncio.sleep(self.config.slow_delay_s)
        kind = decision.kind
        if kind is None:
            await self.app(scope, receive, send)
            return
        self.state.record_fault(
            endpoint, kind if not decision.after_accept else kind + "_after_accept"
        )
        if kind in ("expired", "truncated"):
            # Handled by the download route, which knows the file.
            await self.app({**scope, SCOPE_FAULT_KEY: kind}, receive, send)
            return
        if decision.after_accept:
            # The task is created, then the response is lost: a client that
            # blindly resends a POST now pays twice.
            await self.app(scope, receive, _discard)
        if kind == "drop":
            await self._drop(send)
            return
        headers, body = fault_response(_STATUS[kind], endpoint, self.config.retry_after_s)
        await send({"type": "http.response.start", "status": _STATUS[kind], "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _drop(self, send: Any) -> None:
        transport = _find_transport(send)
        if transport is None:
            raise dropped_connection_error()
        transport.abort()
        # Let the server notice the closed connection before we return, so it
        # does not try to write a 500 for a response we never started.
        for _ in range(3):
            await asyncio.sleep(0)
