"""``Sandbox``: the user-facing handle (in-process app or threaded server).

Heavy imports (starlette, uvicorn, httpx) happen on first use so that
``import webtask_frames.sandbox`` stays cheap and works without the
``sandbox`` extra for config-only use.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._config import SandboxConfig, coerce_config

if TYPE_CHECKING:
    import httpx

    from ._app import SandboxApp
    from ._state import SandboxState

__all__ = ["Sandbox", "create_app", "make_server"]

LOOPBACK = "127.0.0.1"


def create_app(
    config: SandboxConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> SandboxApp:
    """Build the sandbox ASGI app (``app.state`` is the simulation).

    Example:
        >>> app = create_app(cap=2, seed=1)
        >>> app.config.cap
        2
    """
    from ._app import SandboxApp

    return SandboxApp(coerce_config(config, **overrides))


def make_server(app: Any, *, log_level: str = "warning") -> Any:
    """A ``uvicorn.Server`` tuned for the sandbox (no access log, quick shutdown)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=4096,
    )
    return uvicorn.Server(config)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port=0``: a free port chosen by the OS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on
    # accepted sockets whose proto says TCP, and without it every keep-alive
    # response (headers and body are separate writes) stalls ~40 ms on
    # Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Sandbox:
    """An offline stand-in for the Intuned Web Tasks API.

    Use it in-process (``sb.transport()``/``sb.sync_transport()`` with
    ``sb.asgi_base_url``) or as a context manager that serves it on a free
    loopback port in a background thread (``sb.base_url``).

    Example:
        >>> with Sandbox(time_scale=0.01, seed=3) as sb:  # doctest: +SKIP
        ...     from intuned_client import IntunedClient
        ...     client = IntunedClient(
        ...         workspace_id=sb.workspace_id, api_key=sb.api_key, base_url=sb.base_url
        ...     )
        ...     res = client.web_tasks.run(body={"task": "List YC companies"},
        ...                                poll_interval_seconds=0.05)
        ...     res.outcome
        'success'
    """

    def __init__(
        self, config: SandboxConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        self.config: SandboxConfig = coerce_config(config, **overrides)
        self.app: SandboxApp = create_app(self.config)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._host = LOOPBACK
        self._port: int | None = None
        self._sock: socket.socket | None = None

    # ------------------------------------------------------------- identity
    @property
    def api_key(self) -> str:
        """The API key the sandbox accepts (``x-api-key``)."""
        return self.config.api_key

    @property
    def workspace_id(self) -> str:
        """The only workspace id the sandbox knows."""
        return self.config.workspace_id

    @property
    def state(self) -> SandboxState:
        """The simulation, for direct inspection in tests."""
        return self.app.state

    @property
    def asgi_base_url(self) -> str:
        """Base URL to use with :meth:`transport`/:meth:`sync_transport`."""
        from ._transport import ASGI_ORIGIN

        return ASGI_ORIGIN + self.config.prefix

    @property
    def running(self) -> bool:
        """Whether the threaded server is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        """The loopback port (only while serving)."""
        if self._port is None:
            raise RuntimeError("the sandbox is not serving; use `with Sandbox() as sb:` or start()")
        return self._port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (only while serving)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/v1/workspace`` (only while serving)."""
        return self.origin + self.config.prefix

    def env(self) -> dict[str, str]:
        """``INTUNED_*`` environment variables pointing at this sandbox."""
        return {
            "INTUNED_BASE_URL": self.base_url,
            "INTUNED_API_KEY": self.api_key,
            "INTUNED_WORKSPACE_ID": self.workspace_id,
        }

    # ----------------------------------------------------------- transports
    def transport(self) -> httpx.ASGITransport:
        """An in-process transport for ``httpx.AsyncClient``."""
        from ._transport import asgi_transport

        return asgi_transport(self.app)

    def sync_transport(self) -> httpx.BaseTransport:
        """An in-process transport for a sync ``httpx.Client`` (e.g. the SDK's)."""
        from ._transport import SyncASGITransport

        return SyncASGITransport(self.app)

    # -------------------------------------------------------------- control
    def stats(self) -> dict[str, Any]:
        """Same dict as ``GET /_sandbox/stats``."""
        return self.app.state.stats()

    def reset(self) -> None:
        """Forget tasks, automations, counters and the fault sequence."""
        self.app.reset()

    def cancel(self, task_id: str) -> bool | None:
        """Cancel a task (``None``: unknown, ``False``: already terminal)."""
        return self.app.state.cancel(task_id)

    # --------------------------------------------------------------- server
    def start(self, port: int = 0, host: str = LOOPBACK, timeout: float = 10.0) -> Sandbox:
        """Serve on ``host:port`` in a daemon thread; returns when accepting."""
        if self.running:
            return self
        sock = bind_socket(host, port)
        self._host, self._port = host, sock.getsockname()[1]
        server = make_server(self.app)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="webtask-sandbox", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("the sandbox server failed to start")
            time.sleep(0.005)
        self._sock = sock
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (idempotent)."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        sock = self._sock
        if sock is not None:
            sock.close()
            self._sock = None
        self._server = self._thread = None
        self._port = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.running else "not serving"
        return f"Sandbox({where}, seed={self.config.seed}, cap={self.config.cap})"
