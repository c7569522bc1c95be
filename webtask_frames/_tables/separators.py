r"""A JSON array writer's separator between elements (``}, {"id":``, say): what it is,
whether the structural scan's commas confirm it, and its commas marked as line breaks in
place, which makes a block of the array one element per line (``blocks``).

    >>> separator = _Separator(b'}, {"id":', 1)
    >>> text = bytearray(b'{"id": 1}, {"id": 2}, {"id": 3}')
    >>> _mark(text, separator).tolist(), bytes(text)
    ([9, 20], b'{"id": 1}\n {"id": 2}\n {"id": 3}')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__: list[str] = []  # internal to the block readers

# After an element's closing brace: the comma, the next element's brace and, when it
# has one, its first key. The key keeps arrays of other objects nested in the elements
# from looking alike; and its opening quote, unescaped and followed by what cannot
# follow a closing one, puts the whole separator outside any string.
_AFTER_BRACE = re.compile(rb'[ \t]*,[ \t]*\{([ \t]*"[^"\\\s:,\]}][^"\\]{0,63}"[ \t]*:)?')


@dataclass(frozen=True)
class _Separator:
    """What a writer puts between two elements, line breaks read as tabs (e.g.
    ``}, {"id":``), and its comma's offset: replaced by a line break, same length.
    ``anchor``: where the pair of its bytes that is rarest in the text starts (``"i``
    of ``"id"``, once per element, where ``}`` ends every nested object too)."""

    pattern: bytes
    comma: int
    anchor: int = 0

    def anchored(self, text: bytes) -> _Separator:
        """The separator anchored at its pair of bytes rarest in ``text``: every pair
        of ``text`` counted at once (16-bit words at even places, then at odd ones)."""
        if len(self.pattern) < 2 or len(text) < 3:
            return self
        arr = np.frombuffer(text, dtype=np.uint8)
        even, odd = _words(arr)
        counts = np.bincount(even, minlength=1 << 16) + np.bincount(odd, minlength=1 << 16)
        # each of the pattern's pairs as the 16-bit word the views read it as
        pattern = self.pattern
        pairs = b"".join(pattern[k : k + 2] for k in range(len(pattern) - 1))
        found = counts[np.frombuffer(pairs, dtype=np.uint16)]
        return _Separator(pattern, self.comma, int(np.argmin(found)))

    @property
    def marked(self) -> bytes:
        return self.pattern[: self.comma] + b"\n" + self.pattern[self.comma + 1 :]


def _confirmed(head: bytes, commas: np.ndarray, separator: _Separator) -> bool:
    """Whether the separator occurs in ``head`` exactly at the scan's ``commas``."""
    whole = commas[commas - separator.comma + len(separator.pattern) <= len(head)]
    return bool(np.array_equal(_mark(bytearray(head), separator), whole))


def _mark(text: bytearray, separator: _Separator) -> np.ndarray:
    """Every separator in ``text`` rewritten in place (its comma to a line break), as
    ``bytes.replace`` would: left to right, never overlapping; where the line breaks
    made are (sorted).

    The candidates are the positions of the separator's rarest pair of bytes, kept
    while its other bytes match: a few vectorised passes instead of a search and a
    copy, and the block's line ends come with them."""
    pattern = separator.pattern
    arr = np.frombuffer(text, dtype=np.uint8)
    if len(arr) < len(pattern):
        return np.zeros(0, dtype=np.intp)
    found = _starts(arr, pattern, separator.anchor)
    if len(found) > 1 and int(np.diff(found).min()) < len(pattern):
        # overlapping matches: which of them count is bytes.replace's to decide
        before = _line_ends(text)
        marked = bytes(text).replace(pattern, separator.marked)
        text[:] = marked  # the same length: no resize, so the view may stay
        return np.setdiff1d(_line_ends(marked), before, assume_unique=True)
    marks = found + separator.comma
    arr[marks] = 10
    return marks


def _starts(arr: np.ndarray, pattern: bytes, anchor: int = 0) -> np.ndarray:
    """Where ``pattern`` occurs in ``arr`` (sorted, overlapping ones too): the places of
    its two bytes at ``anchor`` (``_pairs``), kept while the other bytes match. A pattern
    of 8 bytes or more is compared 8 at a time, as one unaligned 64-bit word read at
    each candidate (a stride 1 view): a separator with a key (``}, {"id":``) takes two
    gathers, not nine."""
    last = len(arr) - len(pattern)  # the last place it can start
    if last < 0:
        return np.zeros(0, dtype=np.intp)
    if len(pattern) < 2:
        return np.flatnonzero(arr[: last + 1] == pattern[0])
    found = _pairs(arr, pattern[anchor : anchor + 2]) - anchor
    found = found[(found >= 0) & (found <= last)]
    if len(pattern) < 8:
        for k in range(len(pattern)):
            if k not in (anchor, anchor + 1):
                found = found[arr[found + k] == pattern[k]]
        return found
    words = np.ndarray((len(arr) - 7,), dtype=np.uint64, buffer=arr, strides=(1,))
    # the pattern in whole words, the last one overlapping the one before it
    for at in [*range(0, len(pattern) - 7, 8), len(pattern) - 8]:
        word = np.frombuffer(pattern[at : at + 8], dtype=np.uint64)[0]
        found = found[words[found + at] == word]
    return found


def _pairs(arr: np.ndarray, pair: bytes) -> np.ndarray:
    """Where the two bytes ``pair`` occur in ``arr`` (sorted): compared as 16-bit words,
    at even places and at odd ones, two passes over half as many items as a byte's."""
    value = np.frombuffer(pair, dtype=np.uint16)[0]
    even, odd = _words(arr)
    found = np.concatenate(
        (np.flatnonzero(even == value) * 2, np.flatnonzero(odd == value) * 2 + 1)
    )
    found.sort()
    return found


def _words(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``arr``'s bytes as 16-bit words (native order) starting at even places, and at
    odd ones: between them, every pair of adjacent bytes once."""
    return (
        arr[: len(arr) // 2 * 2].view(np.uint16),
        arr[1 : 1 + (len(arr) - 1) // 2 * 2].view(np.uint16),
    )


def _line_ends(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Where ``data``'s line breaks are (sorted)."""
    return np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
