"""An offline stand-in for the Intuned Web Tasks API (like moto for AWS).

Same wire contract as ``https://app.intuned.io/api/v1/workspace``: no API key,
no credits, realistic timing and reuse behaviour, deterministic data that
conforms to your ``outputSchema``, and seeded, scriptable faults.

Example:
    >>> from webtask_frames.sandbox import Sandbox
    >>> with Sandbox(time_scale=0.01, seed=1) as sb:  # doctest: +SKIP
    ...     print(sb.base_url, sb.api_key, sb.workspace_id)

In-process (no sockets): ``httpx.AsyncClient(transport=sb.transport(),
base_url=sb.asgi_base_url)``. Command line: ``webtask-frames sandbox --help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._clock import ManualClock, VirtualTime, iso_ms
from ._config import (
    DEFAULT_API_KEY,
    DEFAULT_WORKSPACE_ID,
    Behaviour,
    ConfigError,
    FaultRates,
    SandboxConfig,
    TaskOverride,
)
from ._datagen import GenerationError, generate
from ._server import Sandbox, create_app
from ._validation import MAGIC_PARAMETER, StartRequest

if TYPE_CHECKING:
    import httpx


def asgi_transport(app: Any) -> httpx.ASGITransport:
    """``httpx.ASGITransport(app=app)`` for ``httpx.AsyncClient`` (httpx imported lazily).

    Example:
        >>> import httpx
        >>> from webtask_frames.sandbox import Sandbox, asgi_transport
        >>> sb = Sandbox()
        >>> client = httpx.AsyncClient(transport=asgi_transport(sb.app), base_url=sb.asgi_base_url)
    """
    from ._transport import asgi_transport as _make

    return _make(app)


__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_WORKSPACE_ID",
    "MAGIC_PARAMETER",
    "Behaviour",
    "ConfigError",
    "FaultRates",
    "GenerationError",
    "ManualClock",
    "Sandbox",
    "SandboxConfig",
    "StartRequest",
    "TaskOverride",
    "VirtualTime",
    "asgi_transport",
    "create_app",
    "generate",
    "iso_ms",
]
