"""Result files a hostile or broken server could send, which pyarrow must never be handed
as they are: records nested deep enough to overflow its parser's stack (a crash of the
user's process, not an exception), and bytes that are not UTF-8 (pyarrow copies them
into a table Arrow itself calls invalid). Each is judged as ``json.loads`` judges it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import webtask_frames._tables.blocks as blocks
import webtask_frames._tables.readers as readers
import webtask_frames._tables.scan as scan
from webtask_frames._exceptions import ProtocolError
from webtask_frames._tables.readers import read_file
from webtask_frames._tables.records import records_to_table
from webtask_frames._tables.scan import _deep_lines, _deepest
from webtask_frames._tables.schema import layout_for
from webtask_frames._tables.validate import Collector, RecordValidator

ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
}
PLAN = layout_for({"type": "array", "items": ITEM})


# The smallest limit (macOS's): on Linux it follows the stack size, up to 4,096.
_MAX_DEPTH = 512


@pytest.fixture(autouse=True)
def _limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "_MAX_DEPTH", _MAX_DEPTH)


def test_the_limit_follows_the_threads_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform
    import resource
    import threading

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(threading, "stack_size", lambda: 0)
    for soft, limit in [(8 << 20, 1000), (512 << 10, 512), (256 << 10, 256), (64 << 10, 100)]:
        monkeypatch.setattr(resource, "getrlimit", lambda _, s=soft: (s, s))
        assert scan._max_depth() == limit
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert scan._max_depth() == 1000  # glibc's 2 MiB then, and Python's own limit
    monkeypatch.setattr(threading, "stack_size", lambda: 200 << 10)  # set by the caller
    assert scan._max_depth() == 200
    monkeypatch.setattr(threading, "stack_size", lambda: 0)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))  # musl: 128 KiB threads
    assert scan._max_depth() == 128
    monkeypatch.setattr(sys, "platform", "darwin")  # 512 KiB thread stacks
    assert scan._max_depth() == 512


def _write(path: Path, records_text: list[str], fmt: str) -> str:
    if fmt == "ndjson":
        path.write_text("\n".join(records_text) + "\n")
        return "application/x-ndjson"
    path.write_text("[" + ", ".join(records_text) + "]")
    return "application/json"


def _nested(depth: int) -> str:
    return '{"id": 1, "deep": ' + "[" * depth + "]" * depth + "}"


# -- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("few", [0, 256])  # long lines counted in one pass, or each
def test_deep_lines_are_found_exactly(monkeypatch: pytest.MonkeyPatch, few: int) -> None:
    """Lines deeper than the limit, and only they: brackets inside strings do not count,
    and a long line with many shallow objects is left to pyarrow."""
    monkeypatch.setattr(scan, "_FEW_LINES", few)
    lines = [
        _nested(_MAX_DEPTH + 1).encode(),  # too deep
        _nested(_MAX_DEPTH - 1).encode(),  # at the limit (the record is a level)
        json.dumps({"s": "[" * 3000}).encode(),  # brackets in a string
        json.dumps({"kids": [{"id": i} for i in range(2000)]}).encode(),  # many, shallow
        b'{"q": "\\"' + b"[" * 2000 + b'"}',  # after an escaped quote, still a string
        b'{"a": "x}',  # an odd quote: the next line's strings are its own
        _nested(_MAX_DEPTH + 1).encode(),
        b"[" * 600 + b"]" * 600,  # unterminated last line, too deep
    ]
    data = b"\n".join(lines)
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    starts = [0, *(int(e) + 1 for e in ends)]
    assert _deep_lines(memoryview(data), ends) == [starts[0], starts[6], starts[7]]
    assert [_deepest(np.frombuffer(line, dtype=np.uint8)) for line in lines] == [
        _MAX_DEPTH + 2,
        _MAX_DEPTH,
        1,
        3,
        1,
        1,
        _MAX_DEPTH + 2,
        600,
    ]


@pytest.mark.parametrize("fmt", ["array", "ndjson", "ndjson-over-lines"])
@pytest.mark.parametrize("typed", [True, False])
def test_a_record_nested_past_pythons_limit_is_refused_without_a_crash(
    tmp_path: Path, fmt: str, typed: bool
) -> None:
    """20,000 levels crash pyarrow's parser (the whole process, SIGSEGV): the read runs in
    a child process so that a regression fails this test instead of killing the suite.
    Over lines: pyarrow reads an NDJSON line break as whitespace, so 25,000 levels in
    lines of 500 brackets, each short, would reach it as one value."""
    path = tmp_path / "r.json"
    rows = [json.dumps({"id": i, "name": "x"}) for i in range(3000)]
    deep = _nested(20_000)
    if fmt == "ndjson-over-lines":
        fmt = "ndjson"
        deep = '{"d":' + "\n".join(["[" * 500] * 50 + ["]" * 500] * 50) + "}"
    ctype = _write(path, [*rows, deep, *rows], fmt)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from webtask_frames._exceptions import ProtocolError
        from webtask_frames._tables.readers import read_file
        from webtask_frames._tables.schema import layout_for
        from webtask_frames._tables.validate import Collector
        item = {ITEM!r}
        plan = layout_for({{"type": "array", "items": item}}) if {typed} else None
        try:
            read_file(Path({str(path)!r}), {ctype!r}, layout=plan, collector=Collector(None))
        except (RecursionError, ProtocolError):
            print("refused")
        else:
            print("read")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # json.loads refuses it (RecursionError; per line, not JSON); so does the reference
    assert done.stdout.strip() == "refused"


@pytest.mark.parametrize("fmt", ["array", "ndjson"])
@pytest.mark.parametrize("block_bytes", [4096, 1 << 20])
def test_a_record_past_the_limit_but_within_pythons_is_the_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, block_bytes: int
) -> None:
    """Typed, the deep value sits under a key the schema does not list: the reference
    reads the record (``json.loads`` nests that deep) and keeps its listed fields."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)
    path = tmp_path / "r.json"
    records = [{"id": i, "name": f"n{i}"} for i in range(2000)]
    texts = [json.dumps(r) for r in records]
    texts[1500] = _nested(_MAX_DEPTH + 100).replace('"id": 1', '"id": 1500')
    ctype = _write(path, texts, fmt)
    expected = records_to_table([json.loads(t) for t in texts], PLAN)
    for validate in (False, True):
        validator = RecordValidator(ITEM) if validate else None
        collector = Collector(validator)
        result = read_file(path, ctype, layout=PLAN, collector=collector)
        assert result.table.equals(expected)
        assert result.n_records == len(texts)
        if validator is not None:
            assert collector.mask().tolist() == [True] * len(texts)


# -- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["array", "ndjson"])
@pytest.mark.parametrize("where", ["value", "key", "late"])
@pytest.mark.parametrize("typed", [True, False])
def test_bytes_that_are_not_utf8_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, where: str, typed: bool
) -> None:
    """``json.loads`` refuses the file; pyarrow would have copied the bytes into a table
    that fails Arrow's own validation (and Python's decoding, later)."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4096)
    path = tmp_path / "r.json"
    texts = [
        json.dumps({"id": i, "name": "caf\u00e9 \u6f22"}, ensure_ascii=False) for i in range(400)
    ]
    at = 390 if where == "late" else 3
    texts[at] = '{"id": 1, "name": "a@b"}' if where != "key" else '{"id": 1, "na@me": "ab"}'
    ctype = _write(path, texts, fmt)
    path.write_bytes(path.read_bytes().replace(b"@", b"\xff"))
    with pytest.raises(UnicodeDecodeError):
        json.loads(path.read_bytes())
    plan = PLAN if typed else None
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        read_file(path, ctype, layout=plan, collector=Collector(None))
    # the same file with valid text (non-ASCII included) reads, and its table is valid
    path.write_bytes(path.read_bytes().replace(b"\xff", "\u00e9".encode()))
    result = read_file(path, ctype, layout=plan, collector=Collector(None))
    result.table.validate(full=True)
    assert result.n_records == 400


@pytest.mark.parametrize("typed", [True, False])
def test_ndjson_lines_that_are_not_records_are_judged_by_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, typed: bool
) -> None:
    """A line that does not start and end like a record could carry a value over lines
    (pyarrow would read ``{"id": 1}{`` then ``"id": 2}`` as two rows): Python judges it
    and refuses the file, as ``json.loads`` per line does. Records with spaces, tabs or
    CRLF around them stay pyarrow's."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4096)
    plan = PLAN if typed else None
    path = tmp_path / "r.ndjson"
    records = [{"id": i, "name": f"n{i}"} for i in range(400)]
    lines = [json.dumps(r) for r in records]
    for i in range(0, 400, 7):
        lines[i] = " \t" + lines[i] + " \r"
    path.write_text("\n".join(lines) + "\n")
    parsed: list[int] = []
    real = blocks.loads

    def spy(text: str | bytes) -> tuple[Any, bool]:
        parsed.append(1)
        return real(text)

    monkeypatch.setattr(blocks, "loads", spy)
    monkeypatch.setattr(readers, "loads", spy)
    result = read_file(path, "application/x-ndjson", layout=plan, collector=Collector(None))
    assert result.table.equals(records_to_table(records, plan))
    assert not parsed  # no line went to Python
    for broken in ('{"id": 1}{\n"id": 2}\n', '{"id": 1, "kids": [\n{"id": 2}]}\n'):
        path.write_text("\n".join(lines[:200]) + "\n" + broken + "\n".join(lines[200:]) + "\n")
        with pytest.raises(ValueError):
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        with pytest.raises(ProtocolError):
            read_file(path, "application/x-ndjson", layout=plan, collector=Collector(None))


def test_pyarrow_is_never_handed_a_value_deeper_than_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines pyarrow must not see are overwritten before a patched parse; one too short to
    hold ``{}`` (``[``) makes the block go to pieces, then Python, instead of being left
    in the copy, where pyarrow read a value over those lines. Every buffer handed to
    ``pyarrow.json`` is measured."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    seen: list[int] = []

    def measured(real: Any) -> Any:
        def call(source: Any, *args: Any, **kwargs: Any) -> Any:
            data = source.read()
            seen.append(_deepest(np.frombuffer(data, dtype=np.uint8)) if data else 0)
            return real(pa.BufferReader(data), *args, **kwargs)

        return call

    monkeypatch.setattr(pa_json, "read_json", measured(pa_json.read_json))
    monkeypatch.setattr(pa_json, "open_json", measured(pa_json.open_json))
    monkeypatch.setattr(scan, "_MAX_DEPTH", 64)
    rows = "".join(json.dumps({"id": i}) + "\n" for i in range(20_000))
    deep = '{"id": 1, "d": [[]\n,\n' + "[\n" * 100 + "]\n" * 100 + "]\n}\n123\n"
    path = tmp_path / "r.ndjson"
    path.write_text(rows + deep + rows)
    for plan in (PLAN, None):
        seen.clear()
        with pytest.raises(ProtocolError):
            read_file(path, "application/x-ndjson", layout=plan, collector=Collector(None))
        assert seen and max(seen) <= 64
