"""Untyped reads of files where some values change JSON kind (``"price": "n/a"``).

A block pyarrow cannot infer used to send the whole file to Python; now only its
failing pieces go there and ``mixed.mixed_table`` builds the same table from the parts.
The reference here is the previous reader, restated: every block inferred by pyarrow
and promoted (``unify_tables``) when all succeed, else every record through
``records_to_table``. Blocks are made tiny so files have many of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samevalues import same_values

import webtask_frames._tables.blocks as blocks
import webtask_frames._tables.inference as inference
import webtask_frames._tables.mixed as mixed
import webtask_frames._tables.readers as readers
import webtask_frames._tables.strict as strict
from webtask_frames._tables.readers import read_file
from webtask_frames._tables.unify import unify_tables
from webtask_frames._tables.validate import Collector


def _previous(path: Path, fmt: str) -> pa.Table:
    """The untyped reader before pieces: all blocks by pyarrow, or all in Python."""
    tables = []
    for block in blocks.blocks(path, fmt):
        table = inference.inferred_table(block)
        if table is None:
            return readers._read_records_by_block(path, fmt, None, Collector(None)).table
        tables.append(table)
    return unify_tables(tables) if tables else readers.records_to_table([], None)


def _reference(path: Path, fmt: str) -> pa.Table:
    """Every record through ``json.loads`` and the reference converter."""
    return readers._read_records_by_block(path, fmt, None, Collector(None)).table


class _Calls:
    """Counts the calls of ``owner.name`` from now on (``n``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.n = 0
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.n += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


def _check(path: Path, fmt: str) -> pa.Table:
    expected = _reference(path, fmt if fmt == "ndjson" else "json-array")
    ctype = "application/x-ndjson" if fmt == "ndjson" else "application/json"
    got = read_file(path, ctype, layout=None, collector=Collector(None)).table
    assert got.schema == expected.schema
    assert same_values(got.to_pylist(), expected.to_pylist())
    return got


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(strict, "_MIN_SPLIT_BYTES", 256)
    monkeypatch.setattr(inference, "_MIN_SPLIT_BYTES", 256)


def _write(path: Path, rows: list[Any], fmt: str) -> Path:
    with path.open("w") as f:
        if fmt == "ndjson":
            f.writelines(json.dumps(r) + "\n" for r in rows)
        else:
            f.write(json.dumps(rows, indent=2 if fmt == "indent" else None))
    return path


def _rows(n: int, bad: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "id": i,
            "price": [12.5, 3.0, 7.25][i % 3],
            "hq": {"city": "c", "lat": [1.5, 2.0][i % 2]},
            "tags": ["a"] * (i % 3),
        }
        row.update(bad.get(i, {}))
        rows.append(row)
    return rows


@pytest.mark.parametrize("fmt", ["ndjson", "array", "indent"])
@pytest.mark.parametrize(
    "bad",
    [
        {150: {"price": "n/a"}},  # a number column becomes text: 3.0 stays "3.0"
        {150: {"price": "n/a"}, 400: {"price": 5}},  # an int written as such: "5"
        {10: {"price": "n/a"}, 11: {"price": 4}, 600: {"price": None}},
        {150: {"hq": "none"}},  # a struct column becomes JSON text: whole file in Python
        {150: {"hq": {"city": 1}}},  # a nested child becomes text
        {150: {"big": 2**70}, 151: {"price": "x"}},  # beyond int64
        {150: {"tags": [1, "a"]}},
        {150: {"price": True}},
        {150: {"new": "x"}, 300: {"price": "n/a"}},  # a column first seen late
        {0: {"price": "n/a"}, 699: {"price": {"a": 1}}},
    ],
)
def test_wrong_typed_values_give_the_previous_table(
    tmp_path: Path, fmt: str, bad: dict[int, dict[str, Any]]
) -> None:
    path = _write(tmp_path / "m.json", _rows(700, bad), fmt)
    _check(path, fmt)


def test_only_the_failing_pieces_are_parsed_in_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "m.ndjson", _rows(3000, {1500: {"price": "n/a"}}), "ndjson")
    whole: list[int] = []
    original = readers._read_records_by_block

    def spy(*a: Any, **kw: Any) -> Any:
        whole.append(1)
        return original(*a, **kw)

    expected = _previous(path, "ndjson")
    monkeypatch.setattr(readers, "_read_records_by_block", spy)
    got = read_file(path, "application/x-ndjson", layout=None, collector=Collector(None))
    assert not whole
    assert got.table.schema == expected.schema
    assert got.table.column("price").type == pa.string()
    assert got.table.column("price")[1].as_py() == "3.0"
    assert same_values(got.table.to_pylist(), expected.to_pylist())


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([2**63, -(2**63) - 1, 2**70]),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, 1e20, 1e-7, 100.0]),
    st.text(alphabet='ab"\\é', max_size=3),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from("xyz"), inner, max_size=2)
    ),
    max_leaves=4,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mix_of_kinds_gives_the_previous_table(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    base = data.draw(st.fixed_dictionaries({"a": _value, "b": _value, "c": _value}), label="base")
    n = data.draw(st.integers(1, 400), label="n")
    changes = data.draw(
        st.dictionaries(
            st.integers(0, n - 1),
            st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _value, max_size=2),
            max_size=6,
        ),
        label="changes",
    )
    rows = [{**base, "i": i, **changes.get(i, {})} for i in range(n)]
    fmt = data.draw(st.sampled_from(["ndjson", "array"]), label="fmt")
    path = _write(tmp_path_factory.mktemp("m") / "m.json", rows, fmt)
    _check(path, fmt)


@pytest.mark.parametrize("blank", ["\n", "  \n", "\n\n \t\n"])
def test_blank_lines_shift_no_row(tmp_path: Path, blank: str) -> None:
    """pyarrow's row numbers skip blank lines: a cut then lands elsewhere, still exact."""
    rows = _rows(600, {100: {"price": "n/a"}, 101: {"price": 7}, 450: {"price": "x"}})
    lines = [json.dumps(r) + "\n" + (blank if i % 7 == 3 else "") for i, r in enumerate(rows)]
    path = tmp_path / "m.ndjson"
    path.write_text(blank + "".join(lines))
    _check(path, "ndjson")


def test_a_failing_block_is_cut_at_the_rows_pyarrow_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1 << 20)
    path = _write(tmp_path / "m.ndjson", _rows(3000, {1000: {"price": "n/a"}}), "ndjson")
    calls: list[int] = []
    original = inference.inferred_table

    def spy(block: Any, hint: Any = None) -> Any:
        calls.append(len(block.data))
        return original(block, hint)

    monkeypatch.setattr(inference, "inferred_table", spy)
    got = _check(path, "ndjson")
    # the block, the rest (fails at row 1000), the 1000 rows before, the rest after it
    assert len(calls) <= 6
    assert got.column("price")[1000].as_py() == "n/a"


@pytest.mark.parametrize(
    "later",
    [
        {},  # same shape: parsed once with the first block's schema
        {"new": "x"},  # a field the first blocks lack
        {"price": 2.5},  # an int column promoted to float
        {"hq": {"city": "a", "zip": 1}},  # a nested field the first blocks lack
        {"tags": []},  # empty lists
        {"when": "2024-01-01T00:00:00"},  # a timestamp-like string
        {"price": None, "hq": None},  # nulls
    ],
)
def test_later_blocks_reuse_an_earlier_schema_and_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later: dict[str, Any]
) -> None:
    rows = [{"id": i, "price": i, "hq": {"city": "c"}, "tags": ["t"]} for i in range(400)]
    for i in range(300, 400):
        rows[i].update(later)
    path = _write(tmp_path / "m.ndjson", rows, "ndjson")
    expected = _reference(path, "ndjson")
    parses = _Calls(monkeypatch, inference.pa_json, "read_json")
    got = read_file(path, "application/x-ndjson", layout=None, collector=Collector(None)).table
    assert got.schema == expected.schema
    assert same_values(got.to_pylist(), expected.to_pylist())
    n_blocks = sum(1 for _ in blocks.blocks(path, "ndjson"))
    if not later:
        assert parses.n == n_blocks + 1  # inference's two parses for the first block only


@pytest.mark.parametrize(
    "later",
    [
        {},  # same shape: the block parsed once with its head's schema
        {"new": "x"},  # a field the head lacks
        {"price": 2.5},  # an int column promoted to float
        {"hq": {"city": "a", "zip": 1}},  # a nested field the head lacks
        {"tags": []},  # empty lists
        {"tags": [None]},  # a list of nulls
        {"hq": {}},  # an empty struct
        {"when": "2024-01-01T00:00:00"},  # a timestamp-like string
        {"price": None, "hq": None},  # nulls
        {"price": "n/a"},  # values of another kind: patched out
        {"price": 2**70},  # beyond int64
        {"note": "x"},  # a field the head holds only as null
    ],
)
def test_a_large_first_block_is_parsed_with_its_heads_schema_and_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later: dict[str, Any]
) -> None:
    """Inference parses a block twice; a large first block is parsed once with its
    head's schema when its values fit it, else inferred whole: the same table."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1 << 20)  # one block
    monkeypatch.setattr(inference, "_HEAD_BYTES", 2 << 10)
    monkeypatch.setattr(inference, "_HEAD_FIRST_BYTES", 8 << 10)
    rows = [
        {"id": i, "price": i, "hq": {"city": "c"}, "tags": ["t"], "note": None} for i in range(1000)
    ]
    for i in range(600, 1000, 7):
        rows[i].update(later)
    path = _write(tmp_path / "m.ndjson", rows, "ndjson")
    assert sum(1 for _ in blocks.blocks(path, "ndjson")) == 1
    expected = _reference(path, "ndjson")
    loads = _Calls(monkeypatch, blocks._Block, "load")
    parsed: list[int] = []
    original = inference.pa_json.read_json

    def counted(source: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(source.size())
        return original(source, *args, **kwargs)

    monkeypatch.setattr(inference.pa_json, "read_json", counted)
    got = read_file(path, "application/x-ndjson", layout=None, collector=Collector(None)).table
    assert got.schema == expected.schema
    assert same_values(got.to_pylist(), expected.to_pylist())
    size = path.stat().st_size
    if not later:
        # the head twice (inference, then explicit), the whole block once
        assert parsed.count(size) == 1
        assert sum(parsed) < 1.1 * size
    if "new" in later or "note" in later or later.get("price") == 2.5:
        # the head's schema does not fit: the block is inferred whole, no row in Python
        assert parsed.count(size) == 3
        assert loads.n == 0


def test_columns_keep_the_order_they_are_first_seen_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block inferred in many chunks: the columns (and a struct's fields) in the order
    the records first show them, whatever order later chunks write them in."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4 << 20)  # one block
    monkeypatch.setattr(inference, "_HEAD_FIRST_BYTES", 1 << 40)  # inferred whole
    monkeypatch.setattr(inference, "_INFER_CHUNK_BYTES", 16 << 10)
    # a first chunk slower to parse than the others: with threads, a later chunk's
    # order wins in some reads (about one in ten, on two cores)
    first = [{"a": i, "b": "s", "h": {"x": 1, "y": "q"}, "l": list(range(400))} for i in range(8)]
    later = [{"b": "s", "h": {"y": "q", "x": 1}, "a": i, "l": [1]} for i in range(30000)]
    path = _write(tmp_path / "m.ndjson", first + later, "ndjson")
    assert 1 << 20 < path.stat().st_size < 4 << 20
    expected = _reference(path, "ndjson").schema
    assert expected.names == ["a", "b", "h", "l"]
    # the race shows only sometimes: the inference itself must be on one thread
    inferring: list[bool] = []
    original = inference.pa_json.read_json

    def spied(source: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("parse_options") is None:
            inferring.append(kwargs["read_options"].use_threads)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(inference.pa_json, "read_json", spied)
    for _ in range(8):
        got = read_file(path, "application/x-ndjson", layout=None, collector=Collector(None))
        assert got.table.schema == expected
    assert inferring == [False] * 8


@pytest.mark.parametrize(
    ("block_bytes", "first_bad", "most_parses"),
    [
        # the first block clean, each later one with rows at fault: about one parse a
        # block (two where a guess is learnt), not three per bad row
        (8 << 10, 700, lambda n_blocks: 2 * n_blocks + 4),
        # one block (a small file) with rows at fault from its start: its head's schema
        # is tried on the whole of it, not one cut (and one parse) per bad row (~90)
        (16 << 20, 20, lambda n_blocks: 12),
    ],
    ids=["later-blocks", "first-block"],
)
def test_values_of_another_kind_are_patched_out(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    block_bytes: int,
    first_bad: int,
    most_parses: Any,
) -> None:
    """Blocks with ``"price": "n/a"`` are parsed with an earlier schema (or their head's)
    and only their rows at fault are read in Python."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(inference, "_HEAD_BYTES", 4 << 10)
    rows: list[Any] = [{"id": i, "price": i + 0.5, "hq": {"city": "c"}} for i in range(3000)]
    bad = set(range(first_bad, 3000, 97))
    for i in bad:
        rows[i]["price"] = "n/a"
    path = _write(tmp_path / "m.ndjson", rows, "ndjson")
    expected = _reference(path, "ndjson")
    n_blocks = sum(1 for _ in blocks.blocks(path, "ndjson"))
    loads = _Calls(monkeypatch, blocks._Block, "load")
    parses = _Calls(monkeypatch, inference.pa_json, "read_json")
    got = read_file(path, "application/x-ndjson", layout=None, collector=Collector(None)).table
    assert got.schema == expected.schema
    assert same_values(got.to_pylist(), expected.to_pylist())
    assert got.column("price")[first_bad].as_py() == "n/a"
    assert loads.n == len(bad)
    assert parses.n <= most_parses(n_blocks)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1))
def test_doubles_become_the_reference_text(values: list[float]) -> None:
    """A double column that becomes text: Arrow's formatting where it is ``repr``'s,
    Python's elsewhere, and a whole number's original value (``5`` or ``5.0``)."""
    column = pa.chunked_array([pa.array([*values, None], type=pa.float64())])
    originals = {i: {"x": int(v)} for i, v in enumerate(values) if v.is_integer()}
    got = mixed._float_text(column, "x", originals).to_pylist()
    want = [str(int(v)) if v.is_integer() else repr(v) for v in values] + [None]
    assert got == want


def test_doubles_at_the_edges_of_fixed_notation() -> None:
    edges = [
        1e-4,
        9.999e-5,
        1.5e-7,
        1e10 + 0.25,
        1e10 - 0.5,
        1e16 + 2.5,
        0.1,
        1 / 3,
        -2.5e-4,
        5e-324,
    ]
    column = pa.chunked_array([pa.array(edges, type=pa.float64())])
    assert mixed._float_text(column, "x", {}).to_pylist() == [repr(v) for v in edges]


def test_a_column_first_null_then_filled_stays_on_arrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A field the first block never fills has no type yet: a later block that fills
    it is inferred (its values give the type), not patched row by row."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4 << 10)
    rows: list[Any] = [{"id": i, "a": None if i < 300 else i * 2} for i in range(1200)]
    path = _write(tmp_path / "m.ndjson", rows, "ndjson")
    expected = _reference(path, "ndjson")
    loads = _Calls(monkeypatch, blocks._Block, "load")
    got = read_file(path, "application/x-ndjson", layout=None, collector=Collector(None)).table
    assert got.schema == expected.schema
    assert same_values(got.to_pylist(), expected.to_pylist())
    assert got.schema.field("a").type == pa.int64()
    assert loads.n == 0


@pytest.mark.parametrize("later", [{"tags": []}, {"hq": {}}, {"tags": [None]}])
def test_blocks_inference_would_read_in_python_agree_with_the_reference(
    tmp_path: Path, later: dict[str, Any]
) -> None:
    rows: list[Any] = [
        {"id": i, "a": 2**64 if i == 3 else i, "tags": ["t"], "hq": {"c": 1}} for i in range(400)
    ]
    for i in range(200, 400):
        rows[i].update(later)
    _check(_write(tmp_path / "m.ndjson", rows, "ndjson"), "ndjson")


def test_integers_beyond_2_53_meet_doubles(tmp_path: Path) -> None:
    """int64 promoted to double rounds to the nearest double, as Python's float() does
    (Arrow's safe cast refused it)."""
    rows: list[Any] = [{"a": 2**53 + 1} for _ in range(20)] + [{"a": 0.5} for _ in range(20)]
    got = _check(_write(tmp_path / "m.ndjson", rows, "ndjson"), "ndjson")
    assert got.column("a")[0].as_py() == float(2**53 + 1)


@pytest.mark.parametrize("first_bad", [3, 700])
def test_whole_numbers_are_kept_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_bad: int
) -> None:
    """A number column that becomes text needs the spelling of its whole numbers (``5``
    or ``5.0``): kept from the first pass once the read is mixed, so the file is read
    again only up to the blocks before that (none when the first block is mixed)."""
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 8 << 10)
    rows: list[Any] = [
        {"id": i, "price": float(i) if i % 7 == 0 else (i if i % 11 == 0 else i + 0.5)}
        for i in range(3000)
    ]
    for i in range(first_bad, 3000, 97):
        rows[i]["price"] = "n/a"
    path = _write(tmp_path / "m.ndjson", rows, "ndjson")
    expected = _reference(path, "ndjson")
    passes = _Calls(monkeypatch, readers, "blocks")
    got = read_file(path, "application/x-ndjson", layout=None, collector=Collector(None)).table
    assert got.schema == expected.schema
    assert same_values(got.to_pylist(), expected.to_pylist())
    assert got.column("price")[7].as_py() == "7.0"
    assert got.column("price")[11].as_py() == "11"
    assert passes.n == (1 if first_bad < 100 else 2)


_ODD_ROWS = st.sampled_from(
    [
        {"price": "n/a"},
        {"zz": 1, "price": "x"},  # a field first seen in a row read in Python
        {"price": [1], "id": -1},
        {"hq": "Paris", "price": True},
        {"new": {"a": 1}, "price": "5"},
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    odd=st.dictionaries(st.integers(0, 599), _ODD_ROWS, min_size=1, max_size=12),
    leading=st.integers(0, 3),
    block_bytes=st.sampled_from([1 << 10, 4 << 10, 1 << 20]),
    head_bytes=st.sampled_from([256, 4 << 10]),
)
def test_rows_read_in_python_keep_the_reference_field_order(
    tmp_path_factory: pytest.TempPathFactory,
    odd: dict[int, dict[str, Any]],
    leading: int,
    block_bytes: int,
    head_bytes: int,
) -> None:
    """Fields first seen in a row at fault take their place where the file shows them,
    wherever that row lies in its block (first, last, several in a row): ``leading``
    ``null`` records open the file (the reference's ``value`` column comes first)."""
    rows: list[Any] = [
        {"id": i, "price": float(i) if i % 5 == 0 else i + 0.25, "hq": {"c": "x"}}
        for i in range(600)
    ]
    for i, change in odd.items():
        rows[i] = {**change, **{k: v for k, v in rows[i].items() if k not in change}}
    rows[:leading] = [None] * leading
    path = _write(tmp_path_factory.mktemp("o") / "m.ndjson", rows, "ndjson")
    sizes = (blocks.BLOCK_BYTES, inference._HEAD_BYTES)
    try:
        blocks.BLOCK_BYTES, inference._HEAD_BYTES = block_bytes, head_bytes
        _check(path, "ndjson")
    finally:
        blocks.BLOCK_BYTES, inference._HEAD_BYTES = sizes
