"""A wrapper object's records array, streamed: the same rows as parsing the file whole.

``wrapper.read_wrapped`` finds the array inside ``{"source": ..., "companies": [...]}``
(by a glance at the file's first and last "MiB", else by outlining the whole object)
and reads it with the block readers. Every test compares it with the reference: the
same file parsed whole (``read_data``), which is what the reader did before and still
does for small files. Sizes are made tiny so the fast path runs on small files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samevalues import same_values

import webtask_frames._tables.blocks as blocks
import webtask_frames._tables.readers as readers
import webtask_frames._tables.wrapper as wrapper
from webtask_frames._exceptions import InvalidInputError, ProtocolError
from webtask_frames._tables.readers import ReadResult, read_file
from webtask_frames._tables.schema import layout_for
from webtask_frames._tables.validate import Collector, RecordValidator

ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "name": {"type": "string"},
        "kids": {
            "type": "array",
            "items": {"type": "object", "properties": {"id": {"type": "integer"}}},
        },
    },
    "required": ["id"],
}
WRAPPED: dict[str, Any] = {
    "type": "object",
    "properties": {"source": {"type": "string"}, "companies": {"type": "array", "items": ITEM}},
}
LOOK_ALIKES = ['"companies": [', "], ", '"}, {"id": 1', "]}", "\\", '\\"', "é ✓", "}"]

Reading = tuple[ReadResult | str, list[bool] | None, list[Any] | None]


def _read(path: Path, schema: dict[str, Any] | None, **kw: Any) -> Reading:
    layout = layout_for(schema) if schema else None
    validator = RecordValidator(layout.record_schema) if layout is not None else None
    collector = Collector(validator)
    try:
        result = read_file(path, "application/json", layout=layout, collector=collector, **kw)
    except (ProtocolError, InvalidInputError) as exc:
        return f"{type(exc).__name__}: {exc}", None, None
    return result, collector.mask().tolist(), [e for e in collector.errors]


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], list[str]]:
    """Make the fast path run on small files; the returned list names what ran."""
    ran: list[str] = []
    glance, outline = wrapper._glance, wrapper._outline

    def spy_glance(*a: Any) -> Any:
        found = glance(*a)
        ran.append("glance" if found is not None else "no-glance")
        return found

    def spy_outline(*a: Any) -> Any:
        ran.append("outline")
        return outline(*a)

    monkeypatch.setattr(wrapper, "_glance", spy_glance)
    monkeypatch.setattr(wrapper, "_outline", spy_outline)

    def set_sizes(glance_bytes: int) -> list[str]:
        monkeypatch.setattr(wrapper, "MIN_BYTES", 0)
        monkeypatch.setattr(wrapper, "_GLANCE_BYTES", glance_bytes)
        monkeypatch.setattr(wrapper, "_OUTLINE_BYTES", 97)
        monkeypatch.setattr(blocks, "BLOCK_BYTES", 211)
        ran.clear()
        return ran

    return set_sizes


def _reference(path: Path, schema: dict[str, Any] | None, **kw: Any) -> Reading:
    saved = wrapper.MIN_BYTES
    wrapper.MIN_BYTES = 1 << 62
    try:
        return _read(path, schema, **kw)
    finally:
        wrapper.MIN_BYTES = saved


def _assertsame_values(got: Reading, ref: Reading) -> None:
    if isinstance(ref[0], str) or isinstance(got[0], str):
        assert got[0] == ref[0]
        return
    result, expected = got[0], ref[0]
    assert result.table.schema == expected.table.schema
    assert same_values(result.table.to_pylist(), expected.table.to_pylist())
    assert (result.n_records, result.format) == (expected.n_records, expected.format)
    assert got[1:] == ref[1:]


def _records(n: int, text: str = "x") -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"{text}{i}", "kids": [{"id": j} for j in range(i % 3)]} for i in range(n)
    ]


def _write(path: Path, data: Any, indent: int | str | None = None, seps: Any = None) -> Path:
    path.write_text(json.dumps(data, indent=indent, separators=seps, ensure_ascii=False))
    return path


@pytest.mark.parametrize("glance_bytes", [64, 1 << 20])
@pytest.mark.parametrize("schema", [None, WRAPPED])
@pytest.mark.parametrize(
    "layout",
    [
        "last",
        "first",
        "middle",
        "alone",
        "empty",
        "two-arrays",
        "scalars",
        "small-list-of-objects",
        "metadata-lists",
    ],
)
def test_wrapper_layouts_give_the_reference_rows(
    tmp_path: Path,
    fast: Callable[[int], list[str]],
    layout: str,
    schema: dict[str, Any] | None,
    glance_bytes: int,
) -> None:
    rs = _records(40, 'a "companies": [{"id": 9}], ')
    data = {
        "last": {"source": "s", "n": 3.5, "companies": rs},
        "first": {"companies": rs, "source": "s", "tags": ["a", "b]"]},
        "middle": {"source": "s", "companies": rs, "meta": {"x": [1, {"y": "]"}]}},
        "alone": {"companies": rs},
        "empty": {"source": "s", "companies": []},
        "two-arrays": {"companies": rs, "other": rs[:2]},
        "scalars": {"source": "s", "companies": list(range(200))},
        "small-list-of-objects": {"companies": rs, "hint": [{"a": 1}]},
        "metadata-lists": {"source": ["x"], "companies": rs, "empty": [], "n": None},
    }[layout]
    for indent, seps in [(None, None), (2, None), ("\t", None), (None, (",", ":"))]:
        path = _write(tmp_path / "w.json", data, indent, seps)
        for kw in ({}, {"record_path": "companies"}):
            ref = _reference(path, schema, **kw)
            fast(glance_bytes)
            _assertsame_values(_read(path, schema, **kw), ref)


def test_a_wrapper_file_is_streamed_not_parsed_whole(
    tmp_path: Path, fast: Callable[[int], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"source": "s", "companies": _records(300)}
    path = _write(tmp_path / "w.json", data, 2)
    refs = {id(schema): _reference(path, schema) for schema in (WRAPPED, None)}
    ref_outlined = _reference(
        _write(tmp_path / "o.json", {"companies": _records(300), "source": "s" * 500}), None
    )
    ran = fast(128)

    def no_whole_parse(*a: Any, **kw: Any) -> Any:
        raise AssertionError("parsed whole")

    monkeypatch.setattr(readers, "read_data", no_whole_parse)
    for schema in (WRAPPED, None):
        ran.clear()
        _assertsame_values(_read(path, schema), refs[id(schema)])
        assert ran == ["glance"]
    # the array not last, the rest longer than the glance: the whole object outlined
    ran.clear()
    _assertsame_values(_read(tmp_path / "o.json", None), ref_outlined)
    assert ran == ["no-glance", "outline"]


@pytest.mark.parametrize("glance_bytes", [64, 1 << 20])
def test_nested_record_path(
    tmp_path: Path, fast: Callable[[int], list[str]], glance_bytes: int
) -> None:
    rs = _records(50)
    cases: list[tuple[Any, str]] = [
        ({"meta": {"x": 1}, "data": {"v": [1, 2], "items": rs, "w": "]"}, "z": 0}, "data.items"),
        ({"data": {"items": rs}}, "data.items"),
        ({"data": {"items": rs}}, "data"),  # an object: one row
        ({"data": {"items": rs}}, "data.nope"),  # an error naming the path
        ({"data": [{"items": rs}]}, "data.0.items"),  # through a list
        ({"data": {"items": {"a": 1}}}, "data.items"),
        ({"data": {"items": None}, "x": "y" * 300}, "data.items"),
        ({"a": {"b": {"c": rs, "d": 1}, "e": 2}, "f": 3}, "a.b.c"),
    ]
    for data, record_path in cases:
        for indent in (None, 2):
            path = _write(tmp_path / "w.json", data, indent)
            ref = _reference(path, None, record_path=record_path)
            fast(glance_bytes)
            _assertsame_values(_read(path, None, record_path=record_path), ref)


@pytest.mark.parametrize(
    "text",
    [
        '{"source": "s", "companies": [{"id": 1}, {"id": 2}] , "x": }',
        '{"source": "s", "companies": [{"id": 1}, {"id": 2},], "x": 1}',
        '{"source": "s", "companies": [{"id": 1}, {"id": 2}]',
        '{"source": "s", "companies": [{"id": 1}, {"id": 2}]}}',
        '{"source": "s", "companies": [{"id": 1}, {"id": 2}]} x',
        '{"source": "s", "companies": [{"id": 1}, {"id" 2}]}',
        '{"source": "s" "companies": [{"id": 1}, {"id": 2}]}',
        '{"companies": [{"id": 1}], "companies": [{"id": 2}, {"id": 3}]}',
        '{"companies": [{"id": 1}, {"id": 2}], "companies": 3}',
        '{"source": 1, "source": 2, "companies": [{"id": 1}, {"id": 2}]}',
        '{"companies": [{"id": 1}, {"id": 2}], "x": 1, "x": 2}',
        '{"companies": [{"id": NaN}, {"id": 2}], "x": Infinity}',
    ],
)
@pytest.mark.parametrize("glance_bytes", [8, 1 << 20])
def test_invalid_or_odd_wrappers_as_the_reference(
    tmp_path: Path, fast: Callable[[int], list[str]], text: str, glance_bytes: int
) -> None:
    path = tmp_path / "w.json"
    path.write_text(text)
    for schema in (None, WRAPPED):
        for kw in ({}, {"record_path": "companies"}):
            ref = _reference(path, schema, **kw)
            fast(glance_bytes)
            _assertsame_values(_read(path, schema, **kw), ref)


STYLES: list[tuple[Any, Any]] = [
    (None, None),
    (None, (",", ":")),
    (1, None),
    ("\t", None),
    (None, (",\r\n", ": ")),
    (None, (" ,  ", " :\t")),
]
_text = st.lists(st.sampled_from(list('ab "\\{}[],:\n\té✓') + LOOK_ALIKES), max_size=6).map("".join)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), _text)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=6,
)
_record = st.fixed_dictionaries(
    {"id": st.integers(0, 1000)},
    optional={
        "name": _text,
        "kids": st.lists(st.fixed_dictionaries({"id": st.integers(0, 9)}), max_size=3),
        "extra": _value,
    },
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_wrapper_layout_gives_the_reference_rows(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    records = data.draw(st.lists(_record, max_size=30), label="records")
    siblings = data.draw(
        st.dictionaries(st.sampled_from(["source", "n", "meta", "x y", "é"]), _value, max_size=3),
        label="siblings",
    )
    position = data.draw(st.integers(0, len(siblings)), label="position")
    items = list(siblings.items())
    items.insert(position, ("companies", records))
    nested = data.draw(st.booleans(), label="nested")
    document: Any = dict(items)
    record_path = data.draw(st.sampled_from([None, "companies"]), label="record_path")
    if nested:
        document = {"head": "h", "data": document, "tail": [1]}
        record_path = "data.companies"
    style = data.draw(st.sampled_from(STYLES), label="style")
    text = json.dumps(document, indent=style[0], separators=style[1])
    schema = data.draw(st.sampled_from([None, WRAPPED]), label="schema")
    glance_bytes = data.draw(st.sampled_from([16, 100, 1 << 20]), label="glance")
    block_bytes = data.draw(st.sampled_from([7, 64, 1 << 20]), label="block")
    path = tmp_path_factory.mktemp("w") / "w.json"
    path.write_text(text, encoding="utf-8")
    kw = {"record_path": record_path} if record_path else {}
    ref = _reference(path, schema, **kw)
    saved = (wrapper.MIN_BYTES, wrapper._GLANCE_BYTES, wrapper._OUTLINE_BYTES, blocks.BLOCK_BYTES)
    try:
        wrapper.MIN_BYTES, wrapper._GLANCE_BYTES = 0, glance_bytes
        wrapper._OUTLINE_BYTES, blocks.BLOCK_BYTES = 33, block_bytes
        got = _read(path, schema, **kw)
    finally:
        (wrapper.MIN_BYTES, wrapper._GLANCE_BYTES, wrapper._OUTLINE_BYTES, blocks.BLOCK_BYTES) = (
            saved
        )
    _assertsame_values(got, ref)


def test_a_large_wrapper_takes_the_fast_path_at_default_sizes(tmp_path: Path) -> None:
    rows = [{"id": i, "name": "n" * 40, "kids": [{"id": 1}]} for i in range(30000)]
    path = _write(tmp_path / "w.json", {"source": "s", "companies": rows, "n": 1})
    assert path.stat().st_size > wrapper.MIN_BYTES
    found = wrapper._glance(path, path.stat().st_size, None)
    assert found is not None and found.key == "companies"
    assert found.siblings == {"source": "s", "n": 1}
    result, mask, _ = _read(path, WRAPPED)
    assert isinstance(result, ReadResult) and result.n_records == 30000 and mask is not None
    assert result.table.column_names == ["id", "name", "kids", "source", "n"]
    assert result.table.column("n").type == pa.int64()
