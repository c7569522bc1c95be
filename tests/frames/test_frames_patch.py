"""Typed reads of files where some values have the wrong JSON kind (``"price": "n/a"``).

The strict path patches a failing block: the rows at fault are overwritten by ``{}``
in a copy, the rest is parsed strictly, and only those rows take the reference path.
Every test compares the table and the verdicts with the reference (every record
through ``json.loads`` and ``records_to_table``), and counts what took which path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from samevalues import same_values

import webtask_frames._tables.blocks as blocks
import webtask_frames._tables.patch as patch
import webtask_frames._tables.readers as readers
import webtask_frames._tables.strict as strict
from webtask_frames._exceptions import ProtocolError
from webtask_frames._tables.readers import read_file
from webtask_frames._tables.records import records_to_table
from webtask_frames._tables.schema import layout_for
from webtask_frames._tables.validate import Collector, RecordValidator

ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "price": {"type": "number", "minimum": 0},
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "hq": {"type": "object", "properties": {"city": {"type": "string"}}},
        "offices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"price": {"type": "string"}, "staff": {"type": "integer"}},
            },
        },
    },
    "required": ["id"],
}

WRONG: list[dict[str, Any]] = [
    {"price": "n/a"},
    {"price": True},
    {"price": {"v": 1}},
    {"price": [1]},
    {"name": 7},
    {"tags": ["a", 3]},
    {"hq": {"city": 12}},
    {"hq": "Paris"},
    {"offices": [{"staff": "ten"}]},
]


def _record(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": i,
        "price": round(rng.random() * 90, 2),
        "name": rng.choice(["Acme", "Büro", '"q"', "}, {", "a\nb"]),
        "tags": rng.sample(["x", "y", "z"], rng.randint(0, 2)),
        "hq": {"city": rng.choice(["Kraków", "Lagos"])},
        # the same key as a top-level number column, holding strings: a suspect that
        # matches rows that are fine
        "offices": [{"price": "n/a", "staff": j} for j in range(rng.randint(0, 2))],
    }


def _records(n: int, bad_every: int, seed: int = 7) -> tuple[list[dict[str, Any]], set[int]]:
    rng = random.Random(seed)
    records, bad = [], set()
    for i in range(n):
        record = _record(i, rng)
        if i % bad_every == bad_every // 2:
            record.update(WRONG[(i // bad_every) % len(WRONG)])
            bad.add(i)
        records.append(record)
    return records, bad


def _write(path: Path, records: list[Any], layout: str) -> str:
    if layout == "ndjson":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return "application/x-ndjson"
    if layout == "ndjson-blank":
        path.write_text("\n\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
        return "application/x-ndjson"
    indent = {"indent": 2, "default": None}[layout]
    path.write_text(json.dumps(records, indent=indent), encoding="utf-8")
    return "application/json"


class _Spy:
    """Counts the records the reference path converts and the strict parses tried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.converted = 0
        self.parses = 0
        convert, parse = strict.records_to_table, patch.Patcher.parse

        def counted_convert(records: Any, layout: Any) -> Any:
            self.converted += len(records)
            return convert(records, layout)

        def counted_parse(patcher: Any, block: Any, data: Any) -> Any:
            self.parses += 1
            return parse(patcher, block, data)

        monkeypatch.setattr(strict, "records_to_table", counted_convert)
        monkeypatch.setattr(patch.Patcher, "parse", counted_parse)


def _read(path: Path, ctype: str, validate: bool) -> tuple[Any, Collector]:
    layout = layout_for({"type": "array", "items": ITEM})
    collector = Collector(RecordValidator(ITEM) if validate else None, keep_messages=validate)
    return read_file(path, ctype, layout=layout, collector=collector), collector


def _expected(records: list[Any]) -> Any:
    return records_to_table(records, layout_for({"type": "array", "items": ITEM}))


def _same(table: Any, expected: Any) -> None:
    assert table.schema == expected.schema
    assert table.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("layout", ["ndjson", "default", "indent"])
@pytest.mark.parametrize("validate", [True, False])
def test_only_the_rows_at_fault_take_the_reference_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, validate: bool
) -> None:
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 16 << 10)  # many blocks, each with bad rows
    records, bad = _records(1500, bad_every=37)
    path = tmp_path / "r.bin"
    ctype = _write(path, records, layout)
    spy = _Spy(monkeypatch)
    result, collector = _read(path, ctype, validate)
    _same(result.table, _expected(records))
    assert result.n_records == len(records)
    if validate:
        checker = jsonschema.Draft202012Validator(ITEM)
        assert collector.mask().tolist() == [checker.is_valid(r) for r in records]
        # messages of the patched rows come from their original text
        assert all(i in collector.messages for i in bad if not checker.is_valid(records[i]))
    # The rows at fault and the rows the "price" suspect picks in offices[] (strings
    # there are fine): nothing else went through Python.
    suspects = {i for i, r in enumerate(records) if r["offices"] and i not in bad}
    assert len(bad) <= spy.converted <= len(bad) + len(suspects)
    assert spy.converted < len(records) // 2


def test_later_blocks_are_patched_before_their_first_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the first failure taught is looked for in the next blocks: about one strict
    parse per block, not a failed one and a patched one."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4 << 10)  # ~146 records, 1-2 at fault
    rng = random.Random(3)
    records = [{"id": i, "price": round(rng.random(), 3)} for i in range(4000)]
    for i in range(50, 4000, 100):
        records[i]["price"] = "n/a"
    path = tmp_path / "r.ndjson"
    ctype = _write(path, records, "ndjson")
    spy = _Spy(monkeypatch)
    result, _ = _read(path, ctype, validate=False)
    _same(result.table, _expected(records))
    n_blocks = sum(1 for _ in blocks.blocks(path, "ndjson"))
    assert n_blocks > 10
    assert spy.parses <= n_blocks + 2
    assert spy.converted == 40


def test_blank_lines_fall_back_to_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines shift pyarrow's row numbers: the patch is refused, pieces decide."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 16 << 10)
    monkeypatch.setattr(strict, "_MIN_SPLIT_BYTES", 1 << 10)
    records, _ = _records(600, bad_every=50)
    path = tmp_path / "r.ndjson"
    ctype = _write(path, records, "ndjson-blank")
    result, collector = _read(path, ctype, validate=True)
    _same(result.table, _expected(records))
    checker = jsonschema.Draft202012Validator(ITEM)
    assert collector.mask().tolist() == [checker.is_valid(r) for r in records]


def test_a_wrong_value_in_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A suspect that matches everywhere is no guide; the stream still gets there."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 8 << 10)
    monkeypatch.setattr(patch, "_PATCH_CHUNK_BYTES", 1 << 10)
    records = [{"id": i, "price": "n/a" if i % 2 else 1.5} for i in range(400)]
    path = tmp_path / "r.ndjson"
    ctype = _write(path, records, "ndjson")
    result, collector = _read(path, ctype, validate=True)
    _same(result.table, _expected(records))
    assert collector.mask().tolist() == [i % 2 == 0 for i in range(400)]


def test_keys_that_need_escaping(tmp_path: Path) -> None:
    item = {
        "type": "object",
        "properties": {'a "b"/c': {"type": "number"}, "é": {"type": "integer"}},
    }
    records: list[Any] = [{'a "b"/c': 1.5, "é": 2} for _ in range(3000)]
    records[10] = {'a "b"/c': "x", "é": 2}
    records[2000] = {'a "b"/c': 2.5, "é": "y"}
    path = tmp_path / "r.ndjson"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    layout = layout_for({"type": "array", "items": item})
    got = read_file(path, "application/x-ndjson", layout=layout, collector=Collector(None))
    _same(got.table, records_to_table(records, layout))


def _lines_file(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


LIST_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "t": {"type": "array", "items": {"type": "integer"}}},
}


@pytest.mark.parametrize("typed", [True, False])
def test_a_blank_line_before_a_fault_the_guess_misses(tmp_path: Path, typed: bool) -> None:
    """Rows are not lines when a line is blank: never patched, never a row twice."""
    lines = [json.dumps({"id": i, "t": [i]}) for i in range(20000)]
    lines[100] = ""
    lines[15000] = json.dumps({"id": 15000, "t": [1, "x"]})  # a list item: no guess
    path = _lines_file(tmp_path / "r.ndjson", lines)
    records = [json.loads(line) for line in lines if line]
    layout = layout_for({"type": "array", "items": LIST_ITEM}) if typed else None
    got = read_file(path, "application/x-ndjson", layout=layout, collector=Collector(None))
    want = records_to_table(records, layout)
    assert got.table.num_rows == len(records)
    _same(got.table, want)


@pytest.mark.parametrize("typed", [True, False])
@pytest.mark.parametrize("where", ["first", "later", "array"])
def test_lines_of_null_never_reach_pyarrow(tmp_path: Path, typed: bool, where: str) -> None:
    """pyarrow's JSON reader crashes the process on a chunk that starts with ``null``:
    such lines are rows at fault, read by the reference path."""
    records: list[Any] = [{"id": i, "t": [i]} for i in range(3000)]
    records[0 if where == "first" else 1234] = None
    path = tmp_path / "r.bin"
    if where == "array":
        path.write_text(json.dumps(records), encoding="utf-8")
        ctype = "application/json"
    else:
        _lines_file(path, [json.dumps(r) for r in records])
        ctype = "application/x-ndjson"
    layout = layout_for({"type": "array", "items": LIST_ITEM}) if typed else None
    collector = Collector(RecordValidator(LIST_ITEM) if typed else None)
    got = read_file(path, ctype, layout=layout, collector=collector)
    _same(got.table, records_to_table(records, layout))
    if typed:
        checker = jsonschema.Draft202012Validator(LIST_ITEM)
        assert collector.mask().tolist() == [checker.is_valid(r) for r in records]


def test_close_faults_the_guess_misses_cost_their_rows_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong list items (no key to guess from) one row in 60: the stream resumes after
    each, so only those rows go to Python."""
    lines = [json.dumps({"id": i, "t": [i, "x"] if i % 60 == 7 else [i]}) for i in range(6000)]
    path = _lines_file(tmp_path / "r.ndjson", lines)
    spy = _Spy(monkeypatch)
    layout = layout_for({"type": "array", "items": LIST_ITEM})
    got = read_file(path, "application/x-ndjson", layout=layout, collector=Collector(None))
    _same(got.table, records_to_table([json.loads(x) for x in lines], layout))
    assert spy.converted == 100


@pytest.mark.parametrize(
    ("text", "nulls", "blank"),
    [
        (b'{"a":1}\n{"a":2}\n', [], False),
        (b"null\n{}\n", [0], False),
        (b" null \r\n{}\n", [0], False),
        (b"{}\n  null\t\n{}\nnull\n", [3, 14], False),
        (b"{}\n\n{}\n", [], True),
        (b"\n{}\n", [], True),
        (b"{}\n \r\n", [], True),
        (b'{}\n"null"\n[null]\n{"a": null}\n', [], False),
        (b"null\n\nnull\n", [0, 6], True),
        # any line starting with the token: pyarrow crashes on a chunk starting so
        (b"null x\n{}\nnullnull\n{}\n null {}\n", [0, 10, 22], False),
        (b"\xef\xbb\xbfnull\n{}\n", [0], False),
    ],
)
def test_lines_are_checked_in_one_pass(text: bytes, nulls: list[int], blank: bool) -> None:
    block = blocks._block_of_lines(memoryview(text), text.count(b"\n"))
    assert block.null_lines() == nulls
    assert block.has_blank_line() is blank


@pytest.mark.parametrize("typed", [True, False])
@pytest.mark.parametrize(
    ("text", "block_bytes"),
    [
        ("null x\n" + '{"id": 1}\n' * 50, 16 << 20),
        ('{"id": 1}\n' * 50 + "null null\n" + '{"id": 1}\n' * 50, 300),
        ('{"id": 1}\n' * 50 + "null {}\n" + '{"id": 1}\n' * 50, 16 << 20),
        ("[null x, " + ", ".join(['{"id": 1}'] * 50) + "]", 16 << 20),
    ],
)
def test_invalid_lines_starting_with_null_are_protocol_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, typed: bool, text: str, block_bytes: int
) -> None:
    """Not a crash of the process: such lines go to json.loads, which refuses them."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)
    path = tmp_path / "r.bin"
    path.write_text(text, encoding="utf-8")
    ctype = "application/json" if text.startswith("[") else "application/x-ndjson"
    layout = layout_for({"type": "array", "items": LIST_ITEM}) if typed else None
    with pytest.raises(ProtocolError):
        read_file(path, ctype, layout=layout, collector=Collector(None))


def test_a_byte_order_mark_before_a_null_record(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    path.write_bytes(b"\xef\xbb\xbfnull\n" + b'{"id": 1, "t": [2]}\n' * 40)
    records: list[Any] = [None] + [{"id": 1, "t": [2]}] * 40
    for layout in (layout_for({"type": "array", "items": LIST_ITEM}), None):
        got = read_file(path, "application/x-ndjson", layout=layout, collector=Collector(None))
        _same(got.table, records_to_table(records, layout))


DUPLICATES = [
    # json.loads keeps the last value of a key given twice; so must every path
    '{"id": 1, "price": 5, "price": 7}',
    '{"id": 2, "hq": {"city": "Lagos", "city": "Kraków"}}',
    '{"id": 3, "offices": [{"staff": 1, "staff": 2}, {"staff": 3}]}',
    '{"id": 4, "price": "n/a", "price": 2.5}',
]


@pytest.mark.parametrize("layout", ["ndjson", "array"])
def test_duplicate_keys_keep_the_last_value_like_json_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """pyarrow refuses a key given twice (top level, nested, in list items): the row
    takes the reference path, whose ``json.loads`` keeps the last value."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 8 << 10)
    rng = random.Random(11)
    lines = [json.dumps(_record(i, rng)) for i in range(10, 400)]
    for k, text in enumerate(DUPLICATES):
        lines.insert(37 * k + 5, text)
    path = tmp_path / "r.bin"
    if layout == "ndjson":
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        ctype, fmt = "application/x-ndjson", "ndjson"
    else:
        path.write_text("[" + ", ".join(lines) + "]", encoding="utf-8")
        ctype, fmt = "application/json", "json-array"
    records = [json.loads(line) for line in lines]
    assert records[5]["price"] == 7 and records[42]["hq"] == {"city": "Kraków"}

    result, collector = _read(path, ctype, validate=True)
    _same(result.table, _expected(records))
    checker = jsonschema.Draft202012Validator(ITEM)
    assert collector.mask().tolist() == [checker.is_valid(r) for r in records]

    untyped = read_file(path, ctype, layout=None, collector=Collector(None)).table
    reference = readers._read_records_by_block(path, fmt, None, Collector(None)).table
    assert untyped.schema == reference.schema
    assert same_values(untyped.to_pylist(), reference.to_pylist())
    assert untyped.column("price").to_pylist()[5] == 7


@pytest.mark.parametrize("typed", [True, False])
@pytest.mark.parametrize("kind_change", [False, True], ids=["fractions", "fractions+text"])
def test_a_failure_that_names_no_row_is_not_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, typed: bool, kind_change: bool
) -> None:
    """A fraction in an integer column names no row: the patched copy, streamed, would
    fail the same way after parsing all before it, so it is never streamed. With text
    in the same column too, the copy with the text patched out fails so: no stream
    either."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 64 << 10)
    # fractions from the second block on: its first parse has an integer column
    fraction = set(range(3000, 5000, 250))
    lines = [json.dumps({"id": i, "n": i + 0.5 if i in fraction else i}) for i in range(5000)]
    if kind_change:
        lines[3100] = json.dumps({"id": 3100, "n": "n/a"})
    assert sum(len(line) + 1 for line in lines[:3000]) > 64 << 10
    path = _lines_file(tmp_path / "r.ndjson", lines)
    streams = 0
    open_json = patch.pa_json.open_json

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal streams
        streams += 1
        return open_json(*args, **kwargs)

    monkeypatch.setattr(patch.pa_json, "open_json", counted)
    item = {"type": "object", "properties": {"id": {"type": "integer"}, "n": {"type": "integer"}}}
    layout = layout_for({"type": "array", "items": item}) if typed else None
    got = read_file(path, "application/x-ndjson", layout=layout, collector=Collector(None))
    if typed:
        _same(got.table, records_to_table([json.loads(x) for x in lines], layout))
    else:
        reference = readers._read_records_by_block(path, "ndjson", None, Collector(None)).table
        assert got.table.schema == reference.schema
        assert same_values(got.table.to_pylist(), reference.to_pylist())
    assert streams == 0
