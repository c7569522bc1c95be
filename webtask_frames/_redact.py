"""Keeping secrets out of reprs, logs and exception messages.

Two kinds of secret pass through this library: the API key, and the query string of a
signed file URL (whoever holds it can download the result for seven days). Both are masked
wherever text leaves our hands. httpx logs every request URL at INFO level, so a logging
filter on the ``httpx`` logger strips query strings from the URLs it logs.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["install_log_filter", "mask_key", "redact_url"]


def mask_key(key: str | None) -> str:
    """Show only enough of a key to tell two apart: ``'****abcd'``; short keys fully masked.

    Example:
        >>> mask_key("sk_live_0123456789abcdef")
        '****cdef'
    """
    if not key:
        return "<unset>"
    return f"****{key[-4:]}" if len(key) >= 16 else "****"


def redact_url(url: Any) -> str:
    """A URL with its query string and any userinfo replaced, safe to print.

    Example:
        >>> redact_url("https://files.example/r/wt_1.json?signature=abc&expires=1")
        'https://files.example/r/wt_1.json?<redacted>'
    """
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class _RedactingFilter(logging.Filter):
    """Rewrite URL arguments of httpx's log records to their redacted form."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(a) if type(a).__name__ == "URL" or _looks_signed(a) else a
                for a in record.args
            )
        return True


def _looks_signed(value: Any) -> bool:
    return isinstance(value, str) and "://" in value and "?" in value


_FILTER = _RedactingFilter()


def install_log_filter() -> None:
    """Attach the redacting filter to the loggers that print request URLs (idempotent)."""
    for name in ("httpx", "webtask_frames"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
