"""JSON arrays cut into blocks by the structural scan: its state (depth, inside a
string, a pending escape) carries from block to block, so each byte is scanned once
however long an element is, and an empty element is an error at every block size.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import webtask_frames._tables.blocks as blocks
from webtask_frames._exceptions import ProtocolError

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.text(alphabet='ab\\"{}[],: \n\t\u00e9\u2028', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text('k\\"{', max_size=2), inner)
    ),
    max_leaves=10,
)


def _scanned_elements(path: Path, block_bytes: int) -> list[Any]:
    found = blocks._scan_blocks(path, block_bytes)
    return [b.load(line)[0] for b in found for line in b.texts()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    elements=st.lists(JSON, max_size=6),
    indent=st.sampled_from([None, 1, "\t"]),
    crlf=st.booleans(),
    bom=st.booleans(),
    block_bytes=st.integers(1, 40),
)
def test_scan_state_carries_across_blocks(
    elements: list[Any], indent: int | str | None, crlf: bool, bom: bool, block_bytes: int
) -> None:
    """Strings, escapes (even a backslash run) and nesting cut anywhere by a block."""
    import tempfile

    text = json.dumps(elements, indent=indent, ensure_ascii=False)
    if crlf:
        text = text.replace("\n", "\r\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
        assert _scanned_elements(path, block_bytes) == elements


def test_scan_reads_each_byte_once_however_long_an_element(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One element over thousands of tiny blocks: scanned once, not once per block."""
    rng = random.Random(3)
    big = {
        "id": 1,
        "kids": [
            {"id": i, "name": "".join(rng.choice('ab\\"}, {[]') for _ in range(12))}
            for i in range(4000)
        ],
    }
    elements = [{"id": 0}, big, {"id": 2}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(elements))
    scanned: list[int] = []
    real = blocks._scan

    def counting(arr: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
        scanned.append(len(arr))
        return real(arr, depth)

    monkeypatch.setattr(blocks, "_scan", counting)
    block_bytes = 64
    assert _scanned_elements(path, block_bytes) == elements
    size = path.stat().st_size
    assert size > 150_000
    # every byte once, plus at most 2 bytes of carried string state per block
    assert sum(scanned) <= size + 2 * (size // block_bytes + 2)


@pytest.mark.parametrize("text", ["[{}, ]", "[,{}]", "[{},,{}]", "[ , ]", "[{}]]", "[{}] x"])
@pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 1 << 20])
def test_empty_elements_are_errors_at_every_block_size(
    tmp_path: Path, text: str, block_bytes: int
) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ProtocolError):
        _scanned_elements(path, block_bytes)


@pytest.mark.parametrize("block_bytes", [1, 7, 1 << 20])
def test_ndjson_lines_longer_than_a_block(tmp_path: Path, block_bytes: int) -> None:
    rows = [{"id": 1, "s": "x" * 300}, {"id": 2}, {"id": 3, "s": "y" * 50}]
    path = tmp_path / "r.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": 4}')
    found = [json.loads(t) for b in blocks._ndjson_blocks(path, block_bytes) for t in b.texts()]
    assert found == [*rows, {"id": 4}]
