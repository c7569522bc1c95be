"""JSON arrays read by their writer's separator, and by the structural scan.

The fast path rewrites a separator read off the first MiB (``}, {"id":``, say) to line
breaks without knowing where strings and nested arrays are. Its safety rests on one
claim: where a look-alike of the separator lies inside an element (or two elements meet
otherwise) further on, the block's strict parse fails and its reference path finds a
line that is not JSON, so the read starts over with the scan. These tests pin the
claim's premises (what pyarrow and ``json.loads`` refuse), put look-alikes past the
first "MiB" (made small) at every block size, and check that no row is lost, wrong or
counted twice. The scan itself must read each byte once, however long an element is.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import webtask_frames._tables.blocks as blocks
import webtask_frames._tables.readers as readers
import webtask_frames._tables.scan as scan
import webtask_frames._tables.strict as strict
from webtask_frames._exceptions import ProtocolError
from webtask_frames._tables.readers import read_file
from webtask_frames._tables.records import records_to_table
from webtask_frames._tables.schema import layout_for
from webtask_frames._tables.validate import Collector, RecordValidator

ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "name": {"type": "string"},
        "kids": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
                "required": ["id"],
            },
        },
    },
    "required": ["id"],
}

WRITERS: dict[str, Callable[[list[Any]], str]] = {
    "default": lambda rs: json.dumps(rs),
    "compact": lambda rs: json.dumps(rs, separators=(",", ":")),
    "indent": lambda rs: json.dumps(rs, indent=2),
    "lines": lambda rs: "[\n" + ",\n".join(json.dumps(r) for r in rs) + "\n]\n",
    "tabs-crlf": lambda rs: json.dumps(rs, indent="\t").replace("\n", "\r\n"),
}


def _plain(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"n{i}", "kids": []}


def _read(
    path: Path, schema: dict[str, Any] | None, validate: bool = True
) -> tuple[readers.ReadResult, Collector]:
    layout = layout_for({"type": "array", "items": schema}) if schema else None
    validator = RecordValidator(schema) if schema and validate else None
    collector = Collector(validator)
    return read_file(path, "application/json", layout=layout, collector=collector), collector


def _check(path: Path, records: list[Any]) -> None:
    """Typed with and without validation, and untyped: the reference rows, once each."""
    layout = layout_for({"type": "array", "items": ITEM})
    ref = jsonschema.Draft202012Validator(ITEM)
    for validate in (True, False):
        result, collector = _read(path, ITEM, validate)
        assert result.n_records == len(records)
        assert result.table.equals(records_to_table(records, layout))
        if validate:  # no verdict kept from an abandoned read
            assert collector.n_rows == len(records)
            assert collector.mask().tolist() == [ref.is_valid(r) for r in records]
    untyped, collector = _read(path, None)
    assert untyped.n_records == collector.n_rows == len(records)
    assert untyped.table.to_pylist() == records_to_table(records, None).to_pylist()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The formats each read took (``json-array-scan`` after a restart)."""
    taken: list[str] = []
    real = readers._read_blocks_as

    def spy(path: Path, fmt: str, *args: Any) -> readers.ReadResult:
        taken.append(fmt)
        # the abandoned read's reader thread is gone before the scan starts its own
        alive = [t for t in threading.enumerate() if t.name == "webtask-frames-reader"]
        assert not alive
        return real(path, fmt, *args)

    monkeypatch.setattr(readers, "_read_blocks_as", spy)
    return taken


# -- the premises ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        b'{"id":1},{"id":2}\n',  # two elements met otherwise: a comma is left between
        b'{"id":1}\n,{"id":2}\n',
        b'{"id":1,"name":"x}\n {y"}\n',  # a string cut: a raw line break inside it
        b'{"id":1,"kids":[{"id":2}\n {"id":3}]}\n',  # a nested array cut: a comma missing
        b'{"id":1}\n{"id":2,"kids":[{"id":3}\n',  # a block cut inside an element
    ],
)
def test_a_wrong_cut_never_parses(lines: bytes) -> None:
    """Whatever a wrong cut leaves, pyarrow refuses the block (inferred, or strict with
    unknown fields ignored or refused) and some line is not JSON on its own."""
    schema = pa.schema([("id", pa.int64())])
    options = [
        pa_json.ParseOptions(),
        pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    ]
    for parse_options in options:
        with pytest.raises(pa.ArrowInvalid):
            pa_json.read_json(pa.BufferReader(lines), parse_options=parse_options)
    bad = 0
    for line in lines.split(b"\n")[:-1]:
        try:
            json.loads(line)
        except ValueError:
            bad += 1
    assert bad


def test_two_records_on_a_line_are_caught_by_the_count() -> None:
    # pyarrow reads whitespace-separated values: a block's line count is checked too.
    table = pa_json.read_json(pa.BufferReader(b'{"id":1} {"id":2}\n'))
    assert table.num_rows == 2


# -- the separator ------------------------------------------------------------------------


def test_separator_read_off_the_head(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    rows = [_plain(i) for i in range(50)]
    expected = {
        "default": b'}, {"id":',
        "compact": b'},{"id":',
        "indent": b'},\t  {\t    "id":',  # line breaks read as tabs
        "lines": b'},\t{"id":',
        "tabs-crlf": b'},\t\t\t{\t\t\t\t"id":',
    }
    for name, write in WRITERS.items():
        path.write_bytes(write(rows).encode())
        separator = blocks._array_separator(path)
        assert separator is not None and separator.pattern == expected[name], name
    # its candidates are found by its rarest pair of bytes: the key's, once per element,
    # where the braces and commas of nested objects are many
    offices = [{"city": "a"}, {"city": "b"}, {"city": "c"}]
    nested = [{"id": i, "offices": offices} for i in range(50)]
    path.write_text(json.dumps(nested))
    separator = blocks._array_separator(path)
    assert separator is not None and separator.pattern[separator.anchor :].startswith(b'"i')
    # first keys vary: the separator without them
    path.write_text(json.dumps([{"id": 1}, {"name": "a"}, {"id": 2}]))
    separator = blocks._array_separator(path)
    assert separator is not None and separator.pattern == b"}, {"
    # no candidate matches the scan's commas exactly: no guess
    for rows_ in (
        [{"id": 1, "kids": [{"id": 2}, {"id": 3}]}, {"id": 4}],
        [{"id": 1}, {"name": "}, {"}, {"kids": [{"id": 1}, {"id": 2}]}],
        [{"id": 1}, 2, {"id": 3}],
        [{"id": 1}],
        [],
    ):
        path.write_text(json.dumps(rows_))
        assert blocks._array_separator(path) is None, rows_
    # as many look-alikes as separators, but not where they are
    path.write_text('[{"id": 0}, {"id": 1, "kids": [{"id": 2}, {"id": 3}]},{"id": 4}]')
    assert blocks._array_separator(path) is None


@pytest.mark.parametrize("fmt", ["ndjson", "json-array", "json-array-scan"])
def test_the_first_block_is_small_and_each_next_twice_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """The first parse starts once ``FIRST_BLOCK_BYTES`` are read (or downloaded), not a
    whole ``BLOCK_BYTES``: blocks double from there, and no record is lost or doubled."""
    monkeypatch.setattr(blocks, "FIRST_BLOCK_BYTES", 1 << 10)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 8 << 10)
    rows = [_plain(i) for i in range(1500)]
    path = tmp_path / "r.json"
    if fmt == "ndjson":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows))
    found = list(blocks.blocks(path, fmt))
    assert [b.load(t)[0] for b in found for t in b.texts()] == rows
    longest = max(len(json.dumps(r)) for r in rows) + 2  # what one block leaves the next
    sizes = [len(b.data) for b in found]
    limits = [min((1 << 10) << k, 8 << 10) for k in range(len(sizes))]
    assert all(size <= limit + longest for size, limit in zip(sizes, limits, strict=True))
    assert sizes[0] <= (1 << 10) + longest  # not 8 KiB
    assert max(sizes) > (4 << 10)  # the later ones do grow to the full size
    assert sizes[3] > (4 << 10) - 2 * longest


def _late(kind: str) -> tuple[list[Any], str]:
    """Records whose first "MiB" (4 KiB here) confirms a separator that something
    further on breaks, and the file."""
    n = 200  # about 8 KB of plain records
    head = [_plain(i) for i in range(n)]
    if kind == "nested-same-key":  # a nested array of objects written like the elements
        rows = [*head, {"id": n, "kids": [{"id": 1}, {"id": 2, "name": "}, {"}]}, _plain(n + 1)]
        return rows, json.dumps(rows)
    if kind == "other-first-key":  # the same separator up to the key
        rows = [*head, {"name": "x", "id": n}, _plain(n + 1)]
        return rows, json.dumps(rows)
    if kind == "writer-changes":  # a missed separator: a comma left between two records
        rows = [*head, _plain(n), _plain(n + 1)]
        return rows, json.dumps(rows).replace(f', {{"id": {n},', f',{{"id": {n},')
    # first keys vary, so the separator is "}, {"
    rows = [{"name": "a"} if i % 7 == 0 else _plain(i) for i in range(n)]
    if kind == "string-look-alike":
        rows += [{"id": n, "name": "a}, {b"}, {"id": n + 1, "name": "}, {"}]
    else:
        assert kind == "spaced-nested"  # "}, {" in nested arrays of other objects
        rows += [{"id": n, "kids": [{"id": 1}, {"id": 2}]}, _plain(n + 1)]
    return rows, json.dumps(rows)


@pytest.mark.parametrize(
    "kind",
    ["nested-same-key", "other-first-key", "writer-changes", "string-look-alike", "spaced-nested"],
)
@pytest.mark.parametrize("block_bytes", [256, 4096, 1 << 20])
def test_a_late_look_alike_restarts_the_read_with_the_scan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reads: list[str],
    kind: str,
    block_bytes: int,
) -> None:
    monkeypatch.setattr(blocks, "_HEAD_BYTES", 4096)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(strict, "_MIN_SPLIT_BYTES", 256)  # pieces of failing blocks too
    records, text = _late(kind)
    assert json.loads(text) == records
    path = tmp_path / "r.json"
    path.write_text(text)
    assert blocks._array_separator(path) is not None  # the head did confirm a guess
    _check(path, records)
    # each of the 3 reads (the untyped one may read twice) guessed, then scanned
    assert reads.count("json-array-scan") == 3
    assert reads[0] == "json-array"


@pytest.mark.parametrize("typed", [True, False])
def test_a_look_alike_before_an_element_larger_than_a_block_restarts_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: list[str], typed: bool
) -> None:
    """A block that ends at a look-alike (inside a nested array) proves the guess wrong;
    the next block, holding no separator (one element larger than a block), goes on
    with a scan started from the guess's wrong state and fails. The first failure
    decides, as in a plain loop, even with the next block cut and parsed ahead: the read
    restarts with the scan and every record comes back."""
    monkeypatch.setattr(blocks, "_HEAD_BYTES", 16 << 10)
    monkeypatch.setattr(blocks, "FIRST_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 64 << 10)
    small = [{"id": i, "kids": []} for i in range(1500)]  # ~32 KiB
    big = {"id": -1, "kids": [{"id": 1}, {"id": 2}], "s": "a" * (200 << 10)}
    records = [*small, big, *({"id": 10000 + j, "kids": []} for j in range(100))]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records))
    assert blocks._array_separator(path) is not None  # the head did confirm a guess
    item = {"type": "object", "properties": {"id": {"type": "integer"}}}
    layout = layout_for({"type": "array", "items": item}) if typed else None
    got = read_file(path, "application/json", layout=layout, collector=Collector(None))
    assert got.table.column("id").to_pylist() == [r["id"] for r in records]
    assert reads[0] == "json-array" and "json-array-scan" in reads


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_clean_array_is_read_by_its_separator_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: list[str], writer: str
) -> None:
    monkeypatch.setattr(blocks, "_HEAD_BYTES", 4096)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1000)
    records = [
        {"id": i, "name": "}, {", "kids": [{"name": "k", "id": i}] * (i % 3)} for i in range(300)
    ]
    records[7]["id"] = -1  # invalid
    path = tmp_path / "r.json"
    path.write_text(WRITERS[writer](records))
    _check(path, records)
    assert set(reads) == {"json-array"}


@pytest.mark.parametrize(
    "tail",
    [
        ', {"id": 80, "name": tru}]',  # invalid JSON past the head
        ', {"id": 80}, ]',  # a trailing comma
        ', {"id": 80}',  # no closing bracket
        ', {"id": 80}] x',  # text after it
    ],
)
@pytest.mark.parametrize("block_bytes", [64, 4096])
def test_an_invalid_array_is_a_protocol_error_on_the_fast_path_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: str, block_bytes: int
) -> None:
    monkeypatch.setattr(blocks, "_HEAD_BYTES", 2048)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)
    path = tmp_path / "r.json"
    path.write_text(json.dumps([_plain(i) for i in range(80)])[:-1] + tail)
    assert blocks._array_separator(path) is not None
    for schema in (ITEM, None):
        with pytest.raises(ProtocolError):
            _read(path, schema)


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("where", [3, 150])  # in the head, and past it
@pytest.mark.parametrize("brk", ["\n", "\r", "\r\n"])
def test_a_raw_line_break_inside_a_string_is_refused_in_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, where: int, brk: str
) -> None:
    """Raw line breaks are whitespace between tokens and invalid inside a string; the
    cutters turn them into something else, which must not make such a string valid
    (``"x\ny"`` read as ``"x y"``): the file is refused, as ``json.load`` refuses it."""
    monkeypatch.setattr(blocks, "_HEAD_BYTES", 4096)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1000)
    records = [_plain(i) for i in range(200)]
    records[where]["name"] = "x@y"
    path = tmp_path / "r.json"
    path.write_bytes(WRITERS[writer](records).replace("@", brk).encode())
    with pytest.raises(ValueError, match="control character"):
        json.loads(path.read_bytes())
    for schema in (ITEM, None):
        for validate in (True, False):
            with pytest.raises(ProtocolError):
                _read(path, schema, validate)
    if brk == "\n":  # the same file without it is read, line breaks and all
        records[where]["name"] = "x y"
        clean = tmp_path / "clean.json"
        clean.write_text(WRITERS[writer](records))
        _check(clean, records)


# -- random look-alikes, layouts and block sizes --------------------------------------------

KID = st.fixed_dictionaries(
    {"id": st.integers(0, 9)}, optional={"name": st.sampled_from(["}, {", '}, {"id": 1', "a"])}
)
RECORD = st.one_of(
    st.fixed_dictionaries(
        {"id": st.integers(-1, 99)},
        optional={
            "name": st.sampled_from(["}, {", '"}, {"id": ', "}\n,{", "x", "]}, {"]),
            "kids": st.lists(KID, max_size=3),
        },
    ),
    st.fixed_dictionaries({"name": st.just("first"), "id": st.integers(0, 9)}),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_look_alikes_anywhere_give_the_reference_rows(data: st.DataObject) -> None:
    import tempfile

    head = [_plain(i) for i in range(data.draw(st.integers(0, 30)))]
    records = head + data.draw(st.lists(RECORD, min_size=1, max_size=12))
    writer = data.draw(st.sampled_from(list(WRITERS)))
    # Draw first, change the module only inside try (a draw hypothesis aborts must not
    # leave tiny sizes behind).
    sizes = data.draw(st.integers(16, 2048)), data.draw(st.integers(1, 600))
    saved = blocks._HEAD_BYTES, blocks.BLOCK_BYTES
    try:
        blocks._HEAD_BYTES, blocks.BLOCK_BYTES = sizes
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "r.json"
            path.write_text(WRITERS[writer](records))
            _check(path, records)
            _assert_line_ends_known(list(blocks.blocks(path, "json-array-scan")))
            guessed: list[blocks._Block] = []
            # cut on, past a wrong cut that a read would have stopped at (its parse fails)
            with contextlib.suppress(blocks._NotLineDelimited, ProtocolError):
                guessed.extend(blocks.blocks(path, "json-array"))
            _assert_line_ends_known(guessed)
    finally:
        blocks._HEAD_BYTES, blocks.BLOCK_BYTES = saved


# -- the scan --------------------------------------------------------------------------------

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
    real = scan._scan

    def counting(arr: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
        scanned.append(len(arr))
        return real(arr, depth)

    monkeypatch.setattr(scan, "_scan", counting)
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


@pytest.mark.parametrize("writer", ["compact", "indent", "tabs-crlf"])
@pytest.mark.parametrize("empty", ["trailing", "middle", "with-missing-comma"])
def test_an_empty_element_in_a_large_array_is_refused(
    tmp_path: Path, writer: str, empty: str
) -> None:
    """Past the size where a failing block is split into pieces (default sizes), an empty
    element still makes the array invalid: a piece holding only it parses to no row,
    which must not pass for a valid read of the others."""
    records = [_plain(i) for i in range(3000)]
    text = WRITERS[writer](records)

    def brace(i: int) -> int:  # where element i opens
        found = re.search(rf'"id":\s*{i},', text)
        assert found is not None
        return text.rindex("{", 0, found.start())

    if empty == "trailing":
        text = text[: text.rindex("]")] + ",]"
    elif empty == "middle":
        text = text[: brace(1500)] + ", " + text[brace(1500) :]
    else:  # a comma missing, another doubled: the count of elements holds
        text = text[: brace(20)] + ", " + text[brace(20) :]
        comma = text.rindex(",", 0, brace(10))
        text = text[:comma] + " " + text[comma + 1 :]
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        json.loads(text)
    for schema in (ITEM, None):
        with pytest.raises(ProtocolError):
            _read(path, schema)


@pytest.mark.parametrize("block_bytes", [1, 7, 1 << 20])
def test_ndjson_lines_longer_than_a_block(tmp_path: Path, block_bytes: int) -> None:
    rows = [{"id": 1, "s": "x" * 300}, {"id": 2}, {"id": 3, "s": "y" * 50}]
    path = tmp_path / "r.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": 4}')
    found = [json.loads(t) for b in blocks._ndjson_blocks(path, block_bytes) for t in b.texts()]
    assert found == [*rows, {"id": 4}]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    end=st.sampled_from([b"", b"\n", b" ", b"{}"]),
    bom=st.booleans(),
    block_bytes=st.integers(min_value=1, max_value=64),
)
def test_ndjson_blocks_are_the_file_cut_at_line_ends(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    end: bytes,
    bom: bool,
    block_bytes: int,
) -> None:
    """Blocks end at line breaks and hold every line of the file that is not blank, in
    order (a byte-order mark dropped, a last line without its break given one), each
    with its count of line breaks, at any block size."""
    body = b"\n".join(lines) + end
    path = tmp_path_factory.mktemp("nd") / "r.ndjson"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body)
    found = list(blocks._ndjson_blocks(path, block_bytes))
    assert all(bytes(b.data).endswith(b"\n") for b in found)
    read = b"".join(bytes(b.data) for b in found).split(b"\n")
    body = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # one mark, however it came
    assert [x for x in read if x.strip()] == [x for x in body.split(b"\n") if x.strip()]
    assert [b.breaks for b in found] == [bytes(b.data).count(b"\n") for b in found]
    _assert_line_ends_known(found)


def _assert_line_ends_known(found: list[blocks._Block]) -> None:
    """The line ends a cutter hands over with a block (so nobody searches them again)
    are the block's line breaks, and so are its pieces'."""
    for block in found:
        assert block._breaks is not None
        data = np.frombuffer(block.data, dtype=np.uint8)
        assert block._breaks.tolist() == np.flatnonzero(data == 10).tolist()
        for piece in blocks.split_block(block, 3):
            ends = np.flatnonzero(np.frombuffer(piece.data, dtype=np.uint8) == 10)
            assert piece.line_ends().tolist() == ends.tolist()
            assert piece.breaks == len(ends)


@settings(max_examples=300, deadline=None)
@given(
    text=st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")),
    pattern=st.sampled_from(
        # short ones byte by byte; 8 bytes and more a word at a time (8, 9, 16, 19:
        # whole words, and a last word overlapping the one before it)
        [
            *(b'}, {"id":', b"},{", b"aa", b"aba", b"}}", b"} ,\t{"),
            *(b"abababab", b"aaaaaaaaa", b'},{"id":', b'},\t  {\t    "name":', b"}, {" * 4),
        ]
    ),
    data=st.data(),
)
def test_marking_separators_in_place_is_bytes_replace(
    text: bytes, pattern: bytes, data: st.DataObject
) -> None:
    """The in-place marking rewrites exactly what ``bytes.replace`` does (left to right,
    never overlapping: ``aa`` in ``aaa`` once) and says where the line breaks it made
    are, whatever line breaks the text held already, from whichever pair of the
    separator's bytes its candidates are found by."""
    comma = data.draw(st.integers(min_value=0, max_value=len(pattern) - 1))
    anchor = data.draw(st.integers(min_value=0, max_value=len(pattern) - 2))
    separator = blocks._Separator(pattern, comma, anchor)
    # salt the text with whole and overlapping separators
    for at in data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=6)):
        text = text[:at] + pattern + pattern[: data.draw(st.integers(0, len(pattern)))] + text[at:]
    if data.draw(st.booleans()):  # a line break the text held (the last block's end)
        text += b"\n"
    buffer = bytearray(text)
    marks = blocks._mark(buffer, separator)
    replaced = text.replace(pattern, separator.marked)
    assert bytes(buffer) == replaced
    assert len(marks) == text.count(pattern)
    made = [i for i in range(len(text)) if replaced[i] == 10 and text[i] != 10]
    assert marks.tolist() == made
