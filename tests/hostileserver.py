"""A hostile HTTP/1.1 server on 127.0.0.1 for adversarial tests, on raw asyncio sockets.

Unlike the sandbox it misbehaves on purpose, at the byte level: it drips bodies, never
sends headers, streams past the size it advertised, answers non-JSON or echoes secrets in
every field. Each test gives it a ``handler(request) -> Reply`` (or a coroutine that
writes to the socket itself). It runs on its own thread and loop, so sync and async
client code can both talk to it; it binds loopback only.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HostileServer", "Reply", "Request"]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    """What to send: status, headers, body; ``drip`` sends the body ``drip[0]`` bytes at a
    time every ``drip[1]`` seconds; ``forever`` repeats ``body`` without end;
    ``no_headers`` sends nothing at all and holds the connection open."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip: tuple[int, float] | None = None
    forever: bool = False
    no_headers: bool = False
    length: int | None = None  # Content-Length to announce (None: the body's, or chunked)
    # sent as the whole response instead, piece by piece 0.1 s apart; then the connection closes
    raw: tuple[bytes, ...] | None = None

    @classmethod
    def json(cls, status: int, payload: Any, **kwargs: Any) -> Reply:
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        return cls(status, json.dumps(payload).encode(), headers, **kwargs)


Handler = Callable[[Request], Reply | Awaitable[Reply]]


class HostileServer:
    """``with HostileServer(handler) as srv: srv.url`` -> ``http://127.0.0.1:PORT``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.sent_bytes = 0
        self.connections = 0  # connections accepted
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = fut.result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._conns):
                writer.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._server.wait_closed()
            await asyncio.sleep(0.01)  # let the transports finish closing

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def count(self, fragment: str) -> int:
        return sum(1 for r in self.requests if fragment in r.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        self.connections += 1
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.handler(request)
                if not isinstance(reply, Reply):
                    reply = await reply
                if not await self._send(writer, reply):
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._conns.discard(writer)
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply) -> bool:
        """Write ``reply``; False when the connection must close afterwards."""
        if reply.no_headers:
            await asyncio.sleep(3600)
            return False
        if reply.raw is not None:
            for k, piece in enumerate(reply.raw):
                if k:
                    await asyncio.sleep(0.1)
                writer.write(piece)
                await writer.drain()
            return False
        headers = dict(reply.headers)
        chunked = reply.forever or (reply.length is None and reply.drip is not None)
        if reply.length is not None:
            headers["content-length"] = str(reply.length)
        elif chunked:
            headers["transfer-encoding"] = "chunked"
        else:
            headers["content-length"] = str(len(reply.body))
        head = f"HTTP/1.1 {reply.status} X\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write((head + "\r\n").encode("latin-1"))
        await writer.drain()
        step, pause = reply.drip or (max(1, len(reply.body)), 0.0)
        while True:
            for i in range(0, len(reply.body), step):
                piece = reply.body[i : i + step]
                if chunked:
                    piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                writer.write(piece)
                self.sent_bytes += len(piece)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
            if not reply.forever:
                break
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return reply.length is None or reply.length == len(reply.body)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)
