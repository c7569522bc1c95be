"""A wrapper object's records array, found and streamed without loading the file.

A result such as ``{"source": ..., "companies": [...records...]}`` used to be parsed
whole in Python. Here the structural scan of ``blocks`` outlines the object first
(the commas at its depth 1 cut it into members; each member's key and value bounds are
read off a few bytes around them), ``records.shape``'s rules pick the array:

* ``record_path`` (``"data.items"``): the value of each key in turn, outlined again
  when the path goes on; the siblings in the last object are broadcast;
* a schema's wrapper property, when its value is an array;
* else the largest array: it must turn out to be the only non-empty array of objects,
  every element an object (``Span.objects``), the other values (parsed, they are the
  broadcast columns) holding no such array.

The array's bytes are then read by the block readers like a top-level array file
(separator fast path or scan, bounded memory). Whatever this does not handle (a path
through a list, a schema taking the object itself as the record, many members,
duplicate keys, an array of something else, invalid JSON) returns None: the caller
parses the file whole, as before, so rows, columns and errors stay the reference's.

A file still downloading (``growing``) is read as it lands when its head shows the
array: the glance's start and choice are taken from the head, and its end, which the
glance always finds within the file's last ``_GLANCE_BYTES``, from the finished file
(``_Following``). Reads stay that far behind the bytes written, so they never pass the
end; a finished file that does not confirm the head's guess is read again, as above.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import ProtocolError
from .blocks import loads
from .growing import Growing, file_size, following
from .records import _list_of_objects, add_constant_columns
from .scan import _scan_chunk, _ScanState
from .schema import Layout, Node
from .spans import NotObjects, Span, Window
from .validate import Collector

__all__ = ["MIN_BYTES", "read_wrapped"]

# Smaller files are parsed whole (that is fast enough, and the reference).
MIN_BYTES = 1 << 20
_OUTLINE_BYTES = 16 << 20
_MAX_MEMBERS = 1000  # an object with more keys is a record, not a wrapper: parsed whole
_KEY_BYTES = 1 << 16
_EDGE_BYTES = 1 << 16
_WHITESPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()
_KEY = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\.)*"', re.DOTALL)


@dataclass(frozen=True)
class _Member:
    """A member of an object: its key and its value's bytes ``[start, end)``."""

    key: str
    start: int
    end: int


def _read_at(path: Path, start: int, end: int) -> bytes:
    with Window(path, Span(start, end)) as f:
        return f.read()


def _structure(path: Path, span: Span) -> tuple[list[int], list[int]] | None:
    """The positions of the commas at depth 1 and of the outer brackets of the text in
    ``span`` (one pass of the vectorised scan); None when it does not balance."""
    state = _ScanState()
    commas: list[int] = []
    outer: list[int] = []
    pos = span.start
    with Window(path, span) as f:
        while chunk := f.read(_OUTLINE_BYTES):
            found, brackets = _scan_chunk(chunk, state)
            if len(commas) + len(found) > _MAX_MEMBERS:
                return None
            commas.extend((found + pos).tolist())
            outer.extend((brackets + pos).tolist())
            pos += len(chunk)
    if state.depth or state.prefix or len(outer) != 2:
        return None
    return commas, outer


def _edges_blank(path: Path, span: Span, outer: list[int]) -> bool:
    """Whether only whitespace (or a BOM, at the file's start) lies around the object."""
    first, last = outer
    if first - span.start > _EDGE_BYTES or span.end - last > _EDGE_BYTES:
        return False
    head = _read_at(path, span.start, first).removeprefix(b"\xef\xbb\xbf")
    return not head.strip(_WHITESPACE) and not _read_at(path, last + 1, span.end).strip(_WHITESPACE)


def _member(path: Path, start: int, end: int) -> _Member | None:
    """The member whose text is ``[start, end)`` (between a brace or comma and the
    next), or None when it is not ``"key": value``."""
    head = _read_at(path, start, min(end, start + _KEY_BYTES))
    text = head.lstrip(_WHITESPACE)
    quoted = _KEY.match(text)
    if quoted is None:
        return None  # not a key, or one longer than the head
    try:
        key = json.loads(quoted.group(0))
    except ValueError:
        return None
    colon = text[quoted.end() :].lstrip(_WHITESPACE)
    if not colon.startswith(b":"):
        return None
    value = start + (len(head) - len(colon)) + 1
    value += len(colon) - 1 - len(colon[1:].lstrip(_WHITESPACE))
    tail = _read_at(path, max(value, end - _EDGE_BYTES), end)
    stop = end - (len(tail) - len(tail.rstrip(_WHITESPACE)))
    if stop <= value:
        return None
    return _Member(key, value, stop)


def _outline(path: Path, span: Span) -> list[_Member] | None:
    """The members of the object that ``span`` holds, in order; None when it holds
    something else, too many members or one key twice."""
    found = _structure(path, span)
    if found is None:
        return None
    commas, outer = found
    if _read_at(path, outer[0], outer[0] + 1) != b"{" or not _edges_blank(path, span, outer):
        return None
    bounds = [outer[0], *commas, outer[1]]
    if not commas and not _read_at(path, outer[0] + 1, outer[1]).strip(_WHITESPACE):
        return []  # {}
    members = []
    for start, end in itertools.pairwise(bounds):
        member = _member(path, start + 1, end)
        if member is None:
            return None
        members.append(member)
    if len({m.key for m in members}) != len(members):
        return None
    return members


def _first_byte(path: Path, member: _Member) -> bytes:
    return _read_at(path, member.start, member.start + 1)


@dataclass
class _Found:
    """An array member, by key and bytes, and its siblings' values (in order)."""

    key: str
    span: Span
    siblings: dict[str, Any]


@dataclass
class _Target:
    """The records array and the values broadcast beside its rows."""

    span: Span
    broadcast: dict[str, Any]


# -- a glance at the file's first and last MiB ---------------------------------------------

_GLANCE_BYTES = 1 << 20
_END_TRIES = 64
_WS = re.compile(r"[ \t\r\n]*")
_REST = re.compile(rb"[ \t\r\n]*[,}]")


def _skip(text: str, i: int) -> int:
    """The index of the first character at or after ``i`` that is not whitespace."""
    found = _WS.match(text, i)
    return found.end() if found is not None else i


def _head_text(path: Path, size: int) -> str | None:
    """The first MiB as text (a character cut at its end left out)."""
    head = _read_at(path, 0, min(size, _GLANCE_BYTES))
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return None
        return head[: exc.start].decode("utf-8")


@dataclass
class _Head:
    """The open member the head ends in: its key, where its value starts (a character
    index), and the keys and values of the members before it, per level."""

    keys: list[str]  # the open member's key at each level
    at: int
    before: list[dict[str, Any]]

    @property
    def key(self) -> str:
        return self.keys[-1]


def _open_member(text: str, parts: list[str] | None) -> _Head | None:
    """Members are parsed from the text's start (complete values by ``raw_decode``)
    down ``parts`` until one whose value runs past the head: an array at the last
    level. None when the head shows anything else."""
    i = _skip(text, 1 if text.startswith("\ufeff") else 0)
    if text[i : i + 1] != "{":
        return None
    before: list[dict[str, Any]] = [{}]
    keys: list[str] = []
    i += 1
    while True:
        i = _skip(text, i)
        if text[i : i + 1] != '"':
            return None  # the object closes within the head, or is not JSON
        try:
            key, i = _DECODER.raw_decode(text, i)  # a string: text[i] is a quote
        except ValueError:
            return None
        i = _skip(text, i)
        if text[i : i + 1] != ":" or key in before[-1]:
            return None
        i = _skip(text, i + 1)
        try:
            value, end = _DECODER.raw_decode(text, i)
        except ValueError:
            pass  # runs past the head (or is invalid: the array reader finds out)
        else:
            i = _skip(text, end)
            if end >= len(text) or text[i : i + 1] != ",":
                return None  # maybe cut (a number), or the object ends in the head
            before[-1][key] = value
            i += 1
            continue
        level = len(before) - 1
        if parts is not None and (level >= len(parts) or key != parts[level]):
            return None
        if parts is not None and level + 1 < len(parts):
            if text[i : i + 1] != "{":
                return None
            before.append({})
            keys.append(key)
            i += 1
            continue
        return _Head([*keys, key], i, before) if text[i : i + 1] == "[" else None


def _closing(tail: bytes, c: int, levels: int) -> list[dict[str, Any]] | None:
    """The members after the array, per level (innermost first), when the text after
    ``tail[c]`` (a ``]``) closes its object and every enclosing one; else None."""
    if not _REST.match(tail, c + 1):
        return None
    mark = json.dumps("\x00" + uuid.uuid4().hex)
    try:
        value = json.loads(f"{{{mark}:" * (levels - 1) + f"{{{mark}:0" + tail[c + 1 :].decode())
    except ValueError:
        return None
    key = json.loads(mark)
    after = []
    for _ in range(levels):
        if not isinstance(value, dict) or key not in value:
            return None
        after.append({k: v for k, v in value.items() if k != key})
        value = value[key]
    return after[::-1]


def _opened(path: Path, size: int, parts: list[str] | None) -> tuple[_Head, int] | None:
    """The member the head (the first ``_GLANCE_BYTES`` of ``size``) ends in, and the
    byte where its array starts."""
    text = _head_text(path, size)
    head = _open_member(text, parts) if text is not None else None
    if text is None or head is None:
        return None
    return head, len(text[: head.at].encode())


def _glance(path: Path, size: int, parts: list[str] | None) -> _Found | None:
    """The array's bounds and its siblings from the file's first and last MiB: the
    head parsed down to the member it ends in, the array's end the last ``]`` after
    which the rest of the file parses as the end of its object(s). Nothing else is
    read: the array's reader then proves the guess (the text between is one valid array
    only if its end is the array's own, a JSON parse of a prefix being unique)."""
    opened = _opened(path, size, parts)
    if opened is None:
        return None
    head, start = opened
    low = max(start + 1, size - _GLANCE_BYTES)
    tail = _read_at(path, low, size)
    c = len(tail)
    for _ in range(_END_TRIES):
        c = tail.rfind(b"]", 0, c)
        if c < 0:
            return None
        after = _closing(tail, c, len(head.before))
        if after is None:
            continue
        keys = [{key, *before} for key, before in zip(head.keys, head.before, strict=True)]
        if any(set(a) & b for a, b in zip(reversed(after), keys, strict=True)):
            return None  # a key twice: the reference path decides
        return _Found(head.key, Span(start, low + c + 1), head.before[-1] | after[0])
    return None


# -- the whole object outlined ---------------------------------------------------------------


def _siblings(path: Path, members: list[_Member], target: _Member) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    for m in members:
        if m is not target:
            try:
                values[m.key] = loads(_read_at(path, m.start, m.end))[0]
            except ValueError:
                return None
    return values


def _by_path(path: Path, size: int, record_path: str) -> _Found | None:
    span = Span(0, size)
    members: list[_Member] = []
    found: _Member | None = None
    for part in record_path.split("."):
        if found is not None and _first_byte(path, found) != b"{":
            return None  # into a list (or nowhere): the reference path decides
        outlined = _outline(path, span)
        if outlined is None:
            return None
        members = outlined
        found = next((m for m in members if m.key == part), None)
        if found is None:
            return None  # the reference path names what is missing
        span = Span(found.start, found.end)
    if found is None or _first_byte(path, found) != b"[":
        return None
    siblings = _siblings(path, members, found)
    return None if siblings is None else _Found(found.key, span, siblings)


def _detected(path: Path, size: int, layout: Layout | None) -> _Found | None:
    members = _outline(path, Span(0, size))
    if members is None:
        return None
    arrays = [m for m in members if _first_byte(path, m) == b"["]
    named = layout.wrapper if layout is not None else None
    explicit = next((m for m in arrays if m.key == named), None) if named else None
    target = explicit or max(arrays, key=lambda m: m.end - m.start, default=None)
    if target is None:
        return None
    siblings = _siblings(path, members, target)
    if siblings is None:
        return None
    return _Found(target.key, Span(target.start, target.end), siblings)


def _choose(found: _Found, layout: Layout | None, record_path: str | None) -> _Target | None:
    """``records.shape``'s rules on an object whose only unparsed member is ``found``."""
    if record_path:
        return _Target(found.span, found.siblings)
    named = layout.wrapper if layout is not None else None
    if named is not None and named == found.key:
        return _Target(found.span, found.siblings)
    if named is not None and isinstance(found.siblings.get(named), list):
        return None  # the schema's wrapper array is another one
    if layout is not None and named is None and not layout.root_is_array:
        return None  # the schema says the object itself is the record
    if any(_list_of_objects(v) for v in found.siblings.values()):
        return None  # another array of objects: is ``found`` one, there are two
    # the only array of objects, if it is one: every element an object, not empty
    return _Target(Span(found.span.start, found.span.end, objects=True), found.siblings)


def _target(
    path: Path, size: int, layout: Layout | None, record_path: str | None
) -> _Target | None:
    found = _glance(path, size, record_path.split(".") if record_path else None)
    if found is None:
        found = _by_path(path, size, record_path) if record_path else _detected(path, size, layout)
    return None if found is None else _choose(found, layout, record_path)


ArrayReader = Callable[[Path, Layout | None, Collector, Span], Any]


# -- while the file downloads ----------------------------------------------------------


class _Mispredicted(Exception):
    """The finished file's glance does not find the array the head promised."""


class _Following:
    """The ``Limit`` of a wrapper's array read while its file downloads (see
    ``read_wrapped``). The glance puts the array's end within the file's last MiB, so
    every byte more than a MiB before the bytes written lies in the array: reads go
    there freely. Past that, they wait for the end of the download; the whole glance
    then gives the end, and must find the array the head promised."""

    def __init__(
        self,
        growing: Growing,
        guess: _Target,
        *,
        path: Path,
        parts: list[str] | None,
        layout: Layout | None,
        record_path: str | None,
    ) -> None:
        self._growing = growing
        self._guess = guess
        self._glance = (path, parts, layout, record_path)
        self._lock = threading.Lock()
        self.target: _Target | None = None

    def room(self, pos: int, want: int | None) -> int:
        if self.target is None:
            if want is not None and not self._growing.wait_written(pos + want + _GLANCE_BYTES):
                return pos + want
            self._resolve()
        assert self.target is not None
        end = self.target.span.end
        return max(pos, end if want is None else min(end, pos + want))

    def _resolve(self) -> None:
        with self._lock:  # the first reader to reach the end resolves it for all
            if self.target is not None:
                return
            path, parts, layout, record_path = self._glance
            size = self._growing.wait_done()
            found = _glance(path, size, parts) if size >= MIN_BYTES else None
            target = None if found is None else _choose(found, layout, record_path)
            if target is None or (target.span.start, target.span.objects) != (
                self._guess.span.start,
                self._guess.span.objects,
            ):
                raise _Mispredicted
            self.target = target


def _read_following(
    path: Path,
    growing: Growing,
    *,
    layout: Layout | None,
    collector: Collector,
    record_path: str | None,
    read_array: ArrayReader,
) -> Any:
    """``read_wrapped`` of a file still downloading: the array's start and the choice of
    it from the head (the first MiB, as the glance reads it), its end once the download
    ended (``_Following``). ``_AGAIN`` when the read must be made on the finished file
    (the collector then left empty): a head the glance would not take, a guess the
    finished file does not confirm, a read that failed (its error is the other path's
    to find)."""
    parts = record_path.split(".") if record_path else None
    opened = _opened(path, _GLANCE_BYTES, parts)  # what the glance will read first
    if opened is None:
        return _AGAIN
    head, start = opened
    guess = _choose(_Found(head.key, Span(start, start), head.before[-1]), layout, record_path)
    if guess is None:
        return _AGAIN
    limit = _Following(
        growing, guess, path=path, parts=parts, layout=layout, record_path=record_path
    )
    try:
        result = read_array(path, layout, collector, Span(start, -1, guess.span.objects, limit))
    except (NotObjects, ProtocolError, _Mispredicted):
        collector.reset()
        return _AGAIN
    if limit.target is None:  # the read stopped short of the end: not this path's
        collector.reset()
        return _AGAIN
    return _finish(result, limit.target, layout, collector)


_AGAIN = object()


def _finish(result: Any, target: _Target, layout: Layout | None, collector: Collector) -> Any:
    if target.span.objects and not result.n_records:
        collector.reset()  # an empty array is no wrapper's: the object is the row
        return None
    if target.broadcast:
        nodes: dict[str, Node] = dict(layout.broadcast) if layout is not None else {}
        result.table = add_constant_columns(result.table, target.broadcast, nodes)
    return result


def read_wrapped(
    path: Path,
    *,
    layout: Layout | None,
    collector: Collector,
    record_path: str | None,
    read_array: ArrayReader,
) -> Any:
    """The ``ReadResult`` of a wrapper object's records array read by ``read_array``
    (the block readers), with its broadcast columns; None when the file is to be parsed
    whole (see the module docstring), the collector then left empty. A file still
    downloading is read as it lands when its head shows the array (``_read_following``),
    else once it is complete."""
    if not (record_path or layout is None or layout.wrapper or layout.root_is_array):
        return None  # the schema says the object itself is the record
    growing = following(path)
    if growing is not None:
        found = _read_following(
            path,
            growing,
            layout=layout,
            collector=collector,
            record_path=record_path,
            read_array=read_array,
        )
        if found is not _AGAIN:
            return found
    size = file_size(path)
    if size < MIN_BYTES:
        return None
    target = _target(path, size, layout, record_path)
    if target is None:
        return None
    try:
        result = read_array(path, layout, collector, target.span)
    except (NotObjects, ProtocolError):
        collector.reset()  # the reference path gives the rows (or the error)
        return None
    return _finish(result, target, layout, collector)
