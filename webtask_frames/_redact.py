"""One scrubber for everything that leaves the process.

Two kinds of secret pass through this library: the API key, and the query string of a
signed file URL (whoever holds it can download the result for seven days). ``scrub``
removes both from any text (or nested dict / list / tuple / dataclass of texts), and every exit goes
through it: exception fields (``WebTaskError`` scrubs each attribute as it is set, so
``str``, ``repr`` and pickles are clean), log records of ``webtask_frames``, ``httpx`` and
``httpcore`` (whose DEBUG log prints response headers, e.g. a redirect's ``Location``),
ledger columns and the values written to Parquet and DuckDB. Scrubbing always happens
before any truncation, so a key cut in half by a length limit cannot leak its first
characters.

The key is known once a client is built (``register_secret``); signed-URL queries are
recognised by shape (any ``http(s)://...?query``), so a URL never seen before is masked too.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "install_log_filter",
    "mask_key",
    "mask_secrets",
    "redact_url",
    "register_secret",
    "scrub",
    "scrub_text",
    "secrets",
]

REDACTED = "****"
# Shorter strings are not treated as secrets: masking every "abc" would garble any text.
_MIN_SECRET = 6
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_PATTERN: re.Pattern[str] | None = None
# A URL with a query string: the query (up to whitespace, a quote or a bracket) is masked.
# (A query must be non-empty: an already masked ``?<redacted>`` is left as it is.)
_SIGNED = re.compile(r"""(?i)\b(https?://[^\s'"<>?#\\]*)\?[^\s'"<>\\)\]]+""")
# A quoted relative URL with a query (a redirect's Location header in httpcore's log).
_RELATIVE = re.compile(r"""(['"])(/[^\s'"?#]*)\?[^\s'"]*""")
_UNSAFE_URL_QUERY = "?<redacted>"


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` (an API key) so ``scrub`` masks it from now on (idempotent).

    Example:
        >>> register_secret("sk_canary_0123456789")
        >>> scrub_text("key sk_canary_0123456789 echoed")
        'key **** echoed'
    """
    global _PATTERN
    if not isinstance(secret, str) or len(secret) < _MIN_SECRET:
        return
    with _SECRETS_LOCK:
        if secret in _SECRETS:
            return
        _SECRETS.add(secret)
        ordered = sorted(_SECRETS, key=len, reverse=True)
        _PATTERN = re.compile("|".join(re.escape(s) for s in ordered))


def secrets() -> tuple[str, ...]:
    """The registered secrets (for scrubbing columns with vectorised kernels)."""
    with _SECRETS_LOCK:
        return tuple(sorted(_SECRETS, key=len, reverse=True))


def mask_secrets(text: str) -> str:
    """``text`` without registered secrets, leaving URL query strings alone: for data
    (a result's own links, ``?id=...``) that must survive as it was, once signed file
    URLs have been redacted structurally (``TaskStatus.to_wire(redact=True)``).

    Example:
        >>> register_secret("sk_canary_0123456789")
        >>> mask_secrets("https://shop.example/p?id=7 sk_canary_0123456789")
        'https://shop.example/p?id=7 ****'
    """
    pattern = _PATTERN
    return pattern.sub(REDACTED, text) if pattern is not None else text


def scrub_text(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without registered secrets, ``extra`` ones or signed-URL query strings.

    Example:
        >>> scrub_text("see https://f.example/r.json?sig=abc&x=1 now")
        'see https://f.example/r.json?<redacted> now'
    """
    pattern = _PATTERN
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for secret in extra:
        if isinstance(secret, str) and len(secret) >= _MIN_SECRET:
            text = text.replace(secret, REDACTED)
    if "?" in text:
        if "://" in text:
            text = _SIGNED.sub(lambda m: m.group(1) + _UNSAFE_URL_QUERY, text)
        text = _RELATIVE.sub(lambda m: m.group(1) + m.group(2) + _UNSAFE_URL_QUERY, text)
    return text


def scrub(value: Any, extra: Iterable[str] = ()) -> Any:
    """``value`` with every string in it scrubbed (``scrub_text``); dicts, lists and
    tuples are rebuilt, bytes decoded leniently, other values returned as they are.

    Example:
        >>> scrub({"u": ["https://f.example/a?sig=1"]})
        {'u': ['https://f.example/a?<redacted>']}
    """
    extra = tuple(extra)
    return _scrub(value, extra, 0)


def _scrub(value: Any, extra: tuple[str, ...], depth: int) -> Any:
    if isinstance(value, str):
        return scrub_text(value, extra)
    if depth > 50:  # hostile nesting: keep a marker rather than recurse without bound
        return "<nested too deep>"
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"), extra)
    if isinstance(value, Mapping):
        return {_scrub(k, extra, depth + 1): _scrub(v, extra, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_scrub(v, extra, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A parsed wire object (a task status on a TaskError) keeps the server's raw body:
        # a copy with every field scrubbed, so the exception's pickle and repr are clean.
        changes = {
            f.name: _scrub(getattr(value, f.name), extra, depth + 1)
            for f in dataclasses.fields(value)
            if f.init
        }
        try:
            return dataclasses.replace(value, **changes)
        except Exception:  # a dataclass that cannot be rebuilt: better nothing than a leak
            return f"<{type(value).__name__} withheld>"
    return value


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
    return scrub_text(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


class _ScrubbingFilter(logging.Filter):
    """Render each record's message, scrub it, and keep only the scrubbed text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the template alone
            message = str(record.msg)
        record.msg = scrub_text(message)
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = _ScrubbingFilter()
# Filters run only for records logged on the logger itself, not on its children, so every
# logger that emits is named: httpcore logs headers (a redirect's Location) at DEBUG.
_LOGGERS = (
    "webtask_frames",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "aiohttp.client",  # the file client's transport
    "aiohttp.internal",
)


def install_log_filter() -> None:
    """Attach the scrubbing filter to every logger that may print a secret (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
