"""Settings: the one place environment variables are read.

Explicit arguments win over the environment; the environment wins over defaults::

    INTUNED_API_KEY        the API key (sent only to the API origin as ``x-api-key``)
    INTUNED_WORKSPACE_ID   the workspace id (a UUID)
    INTUNED_BASE_URL       the API base URL, default the official SDK's

A base URL must be https, except for loopback hosts (the local sandbox), so a key is never
sent in clear text across a network.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .._exceptions import ConfigurationError
from .._redact import mask_key

__all__ = ["DEFAULT_BASE_URL", "ENV_API_KEY", "ENV_BASE_URL", "ENV_WORKSPACE_ID", "Settings"]

DEFAULT_BASE_URL = "https://app.intuned.io/api/v1/workspace"
ENV_API_KEY = "INTUNED_API_KEY"
ENV_WORKSPACE_ID = "INTUNED_WORKSPACE_ID"
ENV_BASE_URL = "INTUNED_BASE_URL"


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with default ports filled in, for same-origin checks."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def check_base_url(url: str) -> str:
    """Validate and normalise a base URL (no trailing slash); raise ConfigurationError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {url!r} is not an http(s) URL; pass base_url=... or set {ENV_BASE_URL}"
        )
    if parts.username or parts.password:
        raise ConfigurationError("base_url must not embed credentials; use api_key=...")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"base_url {url!r} must not have a query string or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"base_url {url!r} uses plain http to a non-loopback host, which would send the "
            "API key in clear text; use https (http is allowed only for 127.0.0.1/localhost)"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Resolved connection settings. ``repr()`` masks the key.

    Example:
        >>> s = Settings.resolve(api_key="k" * 20, workspace_id="ws", env={})
        >>> s.base_url
        'https://app.intuned.io/api/v1/workspace'
    """

    api_key: str = field(repr=False)
    workspace_id: str
    base_url: str = DEFAULT_BASE_URL

    def __repr__(self) -> str:
        return (
            f"Settings(api_key={mask_key(self.api_key)!r}, workspace_id={self.workspace_id!r}, "
            f"base_url={self.base_url!r})"
        )

    @classmethod
    def resolve(
        cls,
        api_key: str | None = None,
        workspace_id: str | None = None,
        base_url: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Fill missing arguments from the environment and validate them all."""
        env = os.environ if env is None else env
        key = api_key if api_key is not None else env.get(ENV_API_KEY)
        workspace = workspace_id if workspace_id is not None else env.get(ENV_WORKSPACE_ID)
        url = base_url if base_url is not None else env.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        if not key:
            raise ConfigurationError(
                f"no API key: pass api_key=... or set {ENV_API_KEY} "
                "(for the local sandbox run `webtask-frames sandbox`, it prints the values)"
            )
        if any(c.isspace() for c in key):
            raise ConfigurationError(f"the API key contains whitespace; check {ENV_API_KEY}")
        if not workspace:
            raise ConfigurationError(
                f"no workspace id: pass workspace_id=... or set {ENV_WORKSPACE_ID}"
            )
        if "/" in workspace or any(c.isspace() for c in workspace):
            raise ConfigurationError(
                f"workspace id {workspace!r} is malformed; check {ENV_WORKSPACE_ID}"
            )
        return cls(api_key=key, workspace_id=workspace, base_url=check_base_url(url))
