"""Realistic fake values: company names, people, URLs, formats, regex-driven strings.

Pure functions of a ``random.Random``; :mod:`._datagen` decides *where* values
go (the schema walk), this module decides *what they look like* (from the
property name and ``format``/``pattern``), so generated rows read like a real
scrape rather than random noise.
"""

from __future__ import annotations

import copy
import functools
import importlib
import random
import re
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FORMATS",
    "WORDS",
    "category",
    "default_record",
    "from_pattern",
    "hinted_string",
    "number_range",
]


# ---------------------------------------------------------------------------
# Vocabulary for realistic values
# ---------------------------------------------------------------------------
def _split(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_PREFIXES = _split(
    "Acme Nimbus Vertex Orbit Quanta Lumen Cobalt Helix Juniper Atlas Beacon Cinder "
    "Delta Ember Fable Granite Harbor Ion Kite Lattice Meridian Nova Onyx Pioneer "
    "Quill Ridge Summit"
)
_SUFFIXES = _split(
    "Labs AI Systems Health Pay Robotics Bio Cloud Works Analytics Security Energy "
    "Logistics Foods Data Learning"
)
_FIRST = _split(
    "Ava Ben Chloe Diego Emma Farah Hugo Iris Jonas Kai Lena Mateo Nora Omar Priya "
    "Ravi Sofia Tariq Uma Yuki"
)
_LAST = _split(
    "Adams Baker Chen Diaz Evans Fischer Garcia Haddad Ito Jensen Kim Lopez Moreau "
    "Novak Okafor Patel Rossi Singh"
)
_CITIES = _split(
    "San Francisco, CA|New York, NY|London, UK|Berlin, DE|Toronto, CA|Austin, TX|"
    "Paris, FR|Bangalore, IN|Singapore, SG|Boston, MA",
    "|",
)
_COUNTRIES = _split(
    "United States|United Kingdom|Germany|Canada|France|India|Singapore|Brazil|Japan|Nigeria",
    "|",
)
_INDUSTRIES = _split(
    "B2B Software|Fintech|Healthcare|Developer Tools|Consumer|Climate|Education|"
    "Industrials|Real Estate|Security",
    "|",
)
_STATUSES = ("Active", "Active", "Active", "Acquired", "Public", "Inactive")
WORDS = _split(
    "platform automates workflows for modern teams that builds tools helping "
    "companies scale data pipelines with AI secure payments infrastructure and "
    "analytics faster"
)
_TLDS = ("example.com", "example.org", "example.net")


def _company_name(rng: random.Random) -> str:
    return f"{rng.choice(_PREFIXES)} {rng.choice(_SUFFIXES)}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item"


def _sentence(rng: random.Random, words: int = 8) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _batch(rng: random.Random) -> str:
    return f"{rng.choice('SWXF')}{rng.randint(12, 25):02d}"


def _iso_datetime(rng: random.Random) -> str:
    return (
        f"{rng.randint(2015, 2025):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    )


def _iso_date(rng: random.Random) -> str:
    return f"{rng.randint(2015, 2025):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _url(rng: random.Random) -> str:
    return f"https://www.{rng.choice(_TLDS)}/companies/{_slug(_company_name(rng))}"


def _email(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST).lower()}@{_slug(_company_name(rng))}.{rng.choice(_TLDS)}"


FORMATS: dict[str, Any] = {
    "date-time": _iso_datetime,
    "date": _iso_date,
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
    "duration": lambda r: f"P{r.randint(1, 30)}D",
    "uri": _url,
    "url": _url,
    "iri": _url,
    "uri-reference": _url,
    "iri-reference": _url,
    "uri-template": lambda r: "https://www.example.com/companies/{id}",
    "email": _email,
    "idn-email": _email,
    "uuid": lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    "hostname": lambda r: f"{_slug(_company_name(r))}.{r.choice(_TLDS)}",
    "idn-hostname": lambda r: f"{_slug(_company_name(r))}.{r.choice(_TLDS)}",
    "ipv4": lambda r: f"192.0.2.{r.randint(1, 254)}",
    "ipv6": lambda r: f"2001:db8::{r.randint(1, 0xFFFF):x}",
    "json-pointer": lambda r: f"/{r.choice(WORDS)}/{r.randint(0, 9)}",
    "relative-json-pointer": lambda r: f"{r.randint(0, 3)}/{r.choice(WORDS)}",
    "regex": lambda r: "^[a-z]+$",
}


@functools.lru_cache(maxsize=2048)
def category(name: str) -> str:
    """Map a property name to a kind of realistic value."""
    n = re.sub(r"[^a-z0-9]", "", name.lower())
    rules = (
        ("email", ("email", "mail")),
        ("url", ("url", "website", "link", "href", "homepage", "site", "uri")),
        ("person", ("founder", "author", "ceo", "person", "fullname", "contact", "owner")),
        ("first", ("firstname", "givenname")),
        ("last", ("lastname", "surname", "familyname")),
        ("company", ("company", "name", "organization", "org", "brand", "employer")),
        ("text", ("description", "summary", "about", "bio", "text", "content", "body", "note")),
        ("title", ("title", "headline", "subject", "label")),
        ("city", ("city", "location", "address", "hq", "headquarter", "region")),
        ("country", ("country", "nation")),
        ("phone", ("phone", "tel", "mobile")),
        ("industry", ("industry", "sector", "category", "vertical", "tag", "market")),
        ("batch", ("batch", "cohort")),
        ("status", ("status", "stage")),
        ("date", ("date", "founded", "createdat", "updatedat", "publishedat", "timestamp")),
        ("id", ("id", "uuid", "slug", "sku", "code", "key", "ref")),
        ("currency", ("currency",)),
    )
    for category, needles in rules:
        if any(n == w or n.endswith(w) or n.startswith(w) for w in needles):
            return category
    return "words"


def hinted_string(rng: random.Random, hint: str) -> str:
    cat = category(hint) if hint else "words"
    if cat == "email":
        return _email(rng)
    if cat == "url":
        return _url(rng)
    if cat == "person":
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    if cat == "first":
        return rng.choice(_FIRST)
    if cat == "last":
        return rng.choice(_LAST)
    if cat == "company":
        return _company_name(rng)
    if cat == "text":
        return _sentence(rng, rng.randint(6, 14))
    if cat == "title":
        return " ".join(rng.choice(WORDS) for _ in range(3)).title()
    if cat == "city":
        return rng.choice(_CITIES)
    if cat == "country":
        return rng.choice(_COUNTRIES)
    if cat == "phone":
        return f"+1-555-01{rng.randint(0, 99):02d}"
    if cat == "industry":
        return rng.choice(_INDUSTRIES)
    if cat == "batch":
        return _batch(rng)
    if cat == "status":
        return rng.choice(_STATUSES)
    if cat == "date":
        return _iso_date(rng)
    if cat == "id":
        return f"{_slug(_company_name(rng))}-{rng.randint(100, 999)}"
    if cat == "currency":
        return rng.choice(("USD", "EUR", "GBP"))
    return f"{rng.choice(WORDS)} {rng.choice(WORDS)}"


def number_range(hint: str) -> tuple[float, float]:
    n = hint.lower()
    table = (
        (("year", "founded"), (1990, 2025)),
        (("rating", "score", "stars"), (1, 5)),
        (("price", "amount", "cost", "revenue", "funding", "salary", "usd"), (1, 5000)),
        (("employee", "team", "size", "headcount", "count", "total"), (1, 5000)),
        (("percent", "pct", "ratio"), (0, 100)),
        (("lat",), (-90, 90)),
        (("lng", "lon"), (-180, 180)),
        (("age",), (18, 80)),
        (("page", "rank", "position", "index"), (1, 50)),
    )
    for needles, rng_ in table:
        if any(w in n for w in needles):
            return float(rng_[0]), float(rng_[1])
    return 0.0, 1000.0


# ---------------------------------------------------------------------------
# Regex-driven strings (``pattern``)
# ---------------------------------------------------------------------------
_sre: Any = importlib.import_module("re._parser")
_sre_c: Any = importlib.import_module("re._constants")
_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": "0123456789",
    "CATEGORY_NOT_DIGIT": "abcxyzABC_-",
    "CATEGORY_WORD": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
    "CATEGORY_NOT_WORD": " -.,",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "abcdefXYZ019",
}


def from_pattern(pattern: str, rng: random.Random) -> str | None:
    try:
        parsed = _sre.parse(pattern)
    except Exception:
        return None
    out: list[str] = []
    try:
        _emit(parsed, rng, out)
    except (ValueError, IndexError):
        return None
    return "".join(out)


def _emit(tokens: Any, rng: random.Random, out: list[str]) -> None:
    for op, arg in tokens:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if chr(arg) != "a" else "b")
        elif name == "ANY":
            out.append(rng.choice("abcxyz"))
        elif name == "IN":
            out.append(_pick_in(arg, rng))
        elif name == "BRANCH":
            _emit(rng.choice(arg[1]), rng, out)
        elif name == "SUBPATTERN":
            _emit(arg[-1], rng, out)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            lo, hi, sub = arg
            hi = lo + 3 if hi == _sre_c.MAXREPEAT else hi
            for _ in range(rng.randint(lo, max(lo, min(hi, lo + 3)))):
                _emit(sub, rng, out)
        elif name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue  # anchors and lookarounds: ignored, the result is re-checked
        elif name == "CATEGORY":
            out.append(rng.choice(_CATEGORY_CHARS.get(str(arg), "a")))
        elif name == "ATOMIC_GROUP":
            _emit(arg, rng, out)
        else:
            raise ValueError(name)


def _pick_in(items: Any, rng: random.Random) -> str:
    choices: list[str] = []
    negate = False
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            choices.append(chr(arg))
        elif name == "RANGE":
            lo, hi = arg
            choices.extend(chr(c) for c in range(lo, min(hi, lo + 60) + 1))
        elif name == "CATEGORY":
            choices.extend(_CATEGORY_CHARS.get(str(arg), "a"))
    if negate:
        pool = [c for c in "abcdefghijklmnopqrstuvwxyz0123456789" if c not in choices]
        return rng.choice(pool)
    return rng.choice(choices)


def default_record(rng: random.Random, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A company-like record; parameter values become fields (they win)."""
    name = _company_name(rng)
    slug = _slug(name)
    record: dict[str, Any] = {
        "name": name,
        "url": f"https://www.example.com/companies/{slug}",
        "website": f"https://{slug}.{rng.choice(_TLDS)}",
        "batch": _batch(rng),
        "description": _sentence(rng, rng.randint(6, 12)),
        "industry": rng.choice(_INDUSTRIES),
        "location": rng.choice(_CITIES),
        "teamSize": rng.randint(1, 500),
        "founded": rng.randint(2010, 2025),
        "status": rng.choice(_STATUSES),
    }
    for key, value in parameters.items():
        record[key] = copy.deepcopy(value)
    return record
