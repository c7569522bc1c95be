"""The transport of file downloads: httpx's own, its connections reading up to a MiB per
socket read instead of 64 KiB.

httpcore reads a response body 64 KiB at a time (``READ_NUM_BYTES``, a class attribute of
its HTTP/1.1 connection: setting it would change every httpx user in the process). Each
read is a pass through anyio (a cancel scope for its timeout), h11 (its buffer, an event)
and httpx, and anyio cuts the socket's larger pieces into 64 KiB copies. For a large file
result that cost more client CPU than the bytes themselves, and on two cores the read
that parses the file as it lands waits for that CPU.

httpcore's extension point for the socket layer is its network backend: ``WideReads``
wraps anyio's, and each of its streams asks the socket for at least ``READ_BYTES``. h11
takes whatever it is given, so nothing above notices but the count of reads (a 155 MB
file on loopback: 0.47-0.55 CPU-s of client time before, 0.25 after). The API client
keeps httpx's default transport: its responses are small.

    >>> transport = FileTransport(verify=ssl.create_default_context())
    >>> client = httpx.AsyncClient(transport=transport)  # doctest: +SKIP
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["READ_BYTES", "FileTransport", "WideReads"]

READ_BYTES = 1 << 20  # asked of the socket per read (it returns what it has, up to that)

# httpx's own defaults, given to both the transport and the pool built again below.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class _WideStream(httpcore.AsyncNetworkStream):
    """A network stream whose reads ask for at least ``READ_BYTES``."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _WideStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class WideReads(httpcore.AsyncNetworkBackend):
    """A network backend (anyio's, by default) whose streams read up to ``READ_BYTES``
    at a time (see the module docstring).

    Example:
        >>> pool = httpcore.AsyncConnectionPool(network_backend=WideReads())
    """

    def __init__(self, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._backend = backend if backend is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _WideStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - downloads are over TCP
        return _WideStream(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class FileTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (HTTP/1.1, its default limits, no proxy, ``verify``), its
    connections reading through ``WideReads``.

    Example:
        >>> FileTransport(verify=ssl.create_default_context())  # doctest: +ELLIPSIS
        <...FileTransport object at ...>
    """

    def __init__(self, *, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify, trust_env=False, limits=_LIMITS)
        # httpx has no say over its pool's network backend: the pool it just made is
        # made again with one (a test checks the reads are wide, should httpx change)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            network_backend=WideReads(),
        )
