"""In-process httpx transports for the sandbox app (no sockets at all).

``asgi_transport(app)`` is plain ``httpx.ASGITransport`` for ``AsyncClient``.
:class:`SyncASGITransport` lets a *synchronous* ``httpx.Client`` (the official
SDK's default) talk to the app: requests run on a private event loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

__all__ = ["ASGI_ORIGIN", "SyncASGITransport", "asgi_transport"]

# Any host works in-process; ".test" is reserved, so it can never leak to DNS
# as a real name even if misused with a network transport.
# https, so clients that refuse plain http to non-loopback hosts (ours does) accept it.
ASGI_ORIGIN = "https://sandbox.test"


def asgi_transport(app: Any) -> httpx.ASGITransport:
    """An ``httpx.AsyncClient`` transport that calls ``app`` in-process.

    Example:
        >>> from webtask_frames.sandbox import Sandbox
        >>> transport = asgi_transport(Sandbox().app)
        >>> client = httpx.AsyncClient(transport=transport, base_url=ASGI_ORIGIN)
    """
    return httpx.ASGITransport(app=app)


class SyncASGITransport(httpx.BaseTransport):
    """A sync ``httpx`` transport running an ASGI app on a background loop.

    App exceptions (including the sandbox's simulated dropped connections,
    raised as ``httpx.RemoteProtocolError``) propagate to the caller.

    Example:
        >>> from webtask_frames.sandbox import Sandbox
        >>> sb = Sandbox()
        >>> with httpx.Client(transport=SyncASGITransport(sb.app)) as client:
        ...     client.get(ASGI_ORIGIN + "/_sandbox/stats").status_code
        200
    """

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="webtask-sandbox-asgi", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _call(self, request: httpx.Request) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        return response.status_code, list(response.headers.raw), content

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        async_request = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._call(async_request), loop)
        status, headers, content = future.result()
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
