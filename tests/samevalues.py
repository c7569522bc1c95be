"""Comparing rows (``Table.to_pylist()``) exactly: NaN equals NaN, key order counts, and
``1`` is not ``1.0`` nor ``True``."""

from __future__ import annotations

import math
from typing import Any


def same_values(a: Any, b: Any) -> bool:
    """Whether two values read from JSON are the same, type and key order included."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)
