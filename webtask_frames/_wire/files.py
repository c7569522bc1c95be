"""The file client's network: an httpx transport over aiohttp, for result downloads.

A result file is one long body. Through httpx's own stack every read of the socket is
an event that passes anyio, httpcore and h11 in Python: 64 KiB over http, and one TLS
record (16 KiB) over https, where every signed URL is served. aiohttp parses HTTP in C
and hands over whatever has arrived, up to ``_READ_BUFFER`` (TLS records decrypted
together). On a 228 MB file over loopback, the whole download path (this transport,
``read_body``, the file written) took 0.2-0.5 CPU-s instead of 0.55-1.2 over http, and
0.46-0.61 instead of 1.5-1.9 over https; a read following the download has that CPU.

Only the file client goes through it: the API's requests are small and keep httpx's
transport, and a ``transport=`` given to the client still replaces both. Everything
above a single request stays httpx's: redirects, cookies, content decoding, the client's
timeouts, and the exceptions the retry decisions read. aiohttp's errors are raised as
httpx's (``_mapped``), their text scrubbed, never chained: an aiohttp error may quote
the signed URL. The URL goes out exactly as httpx encoded it (a signature covers the
query's bytes); aiohttp keeps no cookies and reads no proxy from the environment.

Each request has a connection of its own, closed with its response (``force_close``):
aiohttp keeps idle connections in a pool that only an awaited close empties, and warns
on stderr, at exit, about a pool left so by a client never closed (httpx's is silent).
A handshake per file costs milliseconds against a download of many MB.

    >>> transport = AiohttpTransport(ssl_context=ssl.create_default_context())
    >>> files = httpx.AsyncClient(transport=transport)            # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncIterator

import aiohttp
import httpx
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from .._redact import scrub_text

__all__ = ["AiohttpTransport"]

# aiohttp's read buffer: a chunk is whatever has arrived, up to about this much (the
# socket is read 256 KiB at a time), so memory stays bounded per download.
_READ_BUFFER = 1 << 20
# Connections at once, as httpx's default (``httpx.Limits``).
_MAX_CONNECTIONS = 100
# A header's ceiling (and the status line's): aiohttp's default (8190 bytes) would
# refuse a long signed ``Location`` (a session token in its query) that httpx's own
# parser reads (100 KiB of headers in all). With aiohttp's 128 headers at most, a
# response's headers stay under 13 MiB.
_HEADER_LINE = 100 << 10

# aiohttp's errors as httpx's, the first match wins (the more specific first). The
# retry decisions only need a ``httpx.TransportError``; the kind keeps the messages
# and the logs telling (a refused connection is not a body cut short).
_MAPPING: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS verification
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # a body cut short
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a malformed response
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.ReadError),  # reset
    (aiohttp.ClientError, httpx.NetworkError),
    # aiohttp's pure-Python parser puts its own error on a body it fails mid-way, and a
    # body read after its connection was dropped raises RuntimeError("Connection closed")
    (HttpProcessingError, httpx.RemoteProtocolError),
    (RuntimeError, httpx.RemoteProtocolError),
    (TimeoutError, httpx.ReadTimeout),
    (Exception, httpx.NetworkError),  # anything else: still an error the retries know
)


def _sum(*seconds: float | None) -> float | None:
    """A wait made of these (a pool slot, then the connection): None when unbounded."""
    return None if None in seconds else sum(s for s in seconds if s is not None)


def _mapped(exc: BaseException) -> httpx.TransportError:
    """``exc`` as the httpx error of its kind, its message scrubbed (a signed URL's
    query may be in it)."""
    kind = next(kind for base, kind in _MAPPING if isinstance(exc, base))
    return kind(scrub_text(f"{type(exc).__name__}: {exc}"))


class _Body(httpx.AsyncByteStream):
    """A response's body, chunk by chunk as it arrives; closing it releases (closes)
    its connection.

    Each chunk must come within ``read_s`` (the client's read timeout): aiohttp's own
    socket timeout is dropped when its parser fails mid-body (a broken chunked
    encoding), and the body would then wait for ever."""

    def __init__(self, response: aiohttp.ClientResponse, read_s: float | None) -> None:
        self._response = response
        self._read_s = read_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._response.content.iter_any().__aiter__()
        while True:
            try:
                async with asyncio.timeout(self._read_s):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise httpx.ReadTimeout(f"no body data for {self._read_s} s") from None
            except Exception as exc:
                raise _mapped(exc) from None
            yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that sends each request with aiohttp.

    The session is made on first use, in the running loop, and closed by ``aclose``
    (the client's). ``ssl_context`` verifies every https server. A transport never
    closed, or left by its loop, has its session detached (``ClientSession.detach``),
    not reported: with no pooled connection there is nothing left open.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext) -> None:
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Detaches the session at the transport's collection or at exit (no "Unclosed
        # client session"), or at once when a new loop needs a new session.
        self._forget: weakref.finalize[[], AiohttpTransport] | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            if self._forget is not None:
                self._forget()  # its loop is not this one: it cannot be awaited
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=_MAX_CONNECTIONS,
                force_close=True,
                resolver=aiohttp.ThreadedResolver(),  # nothing left open (aiodns's would be)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps the cookies
                auto_decompress=False,  # httpx decodes the content encoding
                trust_env=False,  # no proxy or .netrc from the environment
                read_bufsize=_READ_BUFFER,
                requote_redirect_url=False,
                max_line_size=_HEADER_LINE,
                max_field_size=_HEADER_LINE,
            )
            self._forget = weakref.finalize(self, self._session.detach)
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        url = URL(str(request.url), encoded=True)  # its bytes as httpx encoded them
        if request.url.userinfo:
            # httpx sent the first URL's as an authorization header (a redirect's is
            # dropped, as httpx's own transport does); aiohttp refuses both at once
            url = url.with_user(None)
        try:
            response = await self._client().request(
                request.method,
                url,
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,  # httpx follows them, one request at a time
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=_sum(timeouts.get("pool"), timeouts.get("connect")),  # DNS too
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
            )
        except Exception as exc:
            raise _mapped(exc) from None
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, timeouts.get("read")),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if self._forget is not None:
            self._forget.detach()  # closed below: nothing left to detach
            self._forget = None
        if session is not None:
            await session.close()
