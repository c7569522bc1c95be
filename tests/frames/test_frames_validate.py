"""Verdicts identical to jsonschema.Draft202012Validator, on every path (differential)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webtask_frames._tables.certify import Certifier, _printable_ascii
from webtask_frames._tables.readers import read_data, read_file
from webtask_frames._tables.records import records_to_table
from webtask_frames._tables.schema import layout_for, parse_type
from webtask_frames._tables.validate import Collector, RecordValidator, json_path

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)

ITEM = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "name": {"type": "string", "minLength": 1, "maxLength": 5},
        "price": {"type": "number", "exclusiveMaximum": 100},
        "flag": {"type": "boolean"},
        "stage": {"enum": ["a", "b"]},
        "opt": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "geo": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": ["number", "null"]}},
            "required": ["lat"],
        },
        "when": {"type": "string", "format": "date-time"},
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"k": {"type": "integer"}},
                "required": ["k"],
            },
        },
    },
    "required": ["id", "name"],
}
CLOSED = {**ITEM, "additionalProperties": False}
RISKY = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^\\d+$"},
        "step": {"type": "number", "multipleOf": 0.1},
        "any": {},
    },
}


def _valid_values() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "id": st.integers(min_value=-2, max_value=10**6),
        "name": st.text(max_size=6),
        "price": st.floats(min_value=-10, max_value=120, allow_nan=False),
        "flag": st.booleans(),
        "stage": st.sampled_from(["a", "b", "c"]),
        "opt": st.none() | st.text(max_size=3),
        "tags": st.lists(st.text(max_size=3), max_size=4),
        "geo": st.fixed_dictionaries(
            {},
            optional={
                "lat": st.floats(-90, 90),
                "lon": st.none() | st.floats(-1, 1),
                "alt": st.integers(),
            },
        ),
        "when": st.sampled_from(
            [
                "2024-01-02T03:04:05Z",
                "2024-01-02",
                "nope",
                "2024-01-02 03:04:05+02:00",
                "2024-01-02T03:04:05.123456789Z",
            ]
        ),
        "rows": st.lists(st.fixed_dictionaries({}, optional={"k": st.integers(-5, 5)}), max_size=3),
        "code": st.sampled_from(["123", "١٢٣", "12\n", "x"]),
        "step": st.sampled_from([0.3, 0.5, 1, 0.7, 2.0]),
        "any": JSON,
    }


def records_for(schema: dict[str, Any]) -> st.SearchStrategy[list[Any]]:
    values = _valid_values()
    props = schema["properties"]
    field = {
        name: st.one_of(values[name], values[name], values[name], JSON, st.none()) for name in props
    }
    record = st.fixed_dictionaries({}, optional={**field, "extra": JSON})
    return st.lists(st.one_of(record, record, record, record, JSON), min_size=1, max_size=12)


def reference(schema: dict[str, Any], records: list[Any]) -> list[bool]:
    validator = jsonschema.Draft202012Validator(schema)
    return [validator.is_valid(r) for r in records]


@pytest.mark.parametrize("schema", [ITEM, CLOSED, RISKY], ids=["item", "closed", "risky"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_record_validator_matches_jsonschema(schema: dict[str, Any], data: st.DataObject) -> None:
    records = data.draw(records_for(schema))
    assert RecordValidator(schema).verdicts(records) == reference(schema, records)


@settings(max_examples=150, deadline=None)
@given(instance=JSON)
def test_arbitrary_values_match_jsonschema(instance: Any) -> None:
    for schema in (ITEM, CLOSED, RISKY, {"type": "array", "items": {"type": "integer"}}):
        assert RecordValidator(schema).verdicts([instance]) == reference(schema, [instance])


def _read(records: list[Any], fmt: str, schema: dict[str, Any]) -> tuple[Collector, pa.Table]:
    layout = layout_for({"type": "array", "items": schema})
    assert layout is not None
    collector = Collector(RecordValidator(layout.record_schema), keep_messages=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r"
        if fmt == "ndjson":
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
            ct = "application/x-ndjson"
        elif fmt == "ndjson-blank":
            path.write_text("\n\n".join(json.dumps(r) for r in records) + "\n \n")
            ct = "application/x-ndjson"
        elif fmt == "lines":  # one element per line: read like NDJSON
            path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
            ct = "application/json"
        else:
            path.write_text(json.dumps(records, indent=1 if fmt == "pretty" else None))
            ct = "application/json"
        table = read_file(path, ct, layout=layout, collector=collector).table
    return collector, table


@pytest.mark.parametrize("fmt", ["ndjson", "ndjson-blank", "lines", "array", "pretty"])
@pytest.mark.parametrize("schema", [ITEM, CLOSED], ids=["item", "closed"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_file_paths_match_jsonschema_and_inline(
    fmt: str, schema: dict[str, Any], data: st.DataObject
) -> None:
    # Mostly-object records so the strict Arrow path and the certifier are exercised.
    records = [r for r in data.draw(records_for(schema)) if isinstance(r, dict)] or [{}]
    collector, table = _read(records, fmt, schema)
    assert collector.mask().tolist() == reference(schema, records)
    layout = layout_for({"type": "array", "items": schema})
    expected = records_to_table(records, layout)
    # Values: children under a null struct are no data (pyarrow and the reference fill
    # them differently, and a patched block holds rows of both).
    assert table.schema == expected.schema
    assert table.to_pylist() == expected.to_pylist()


def test_certifier_proves_plain_rows_without_python() -> None:
    layout = layout_for({"type": "array", "items": ITEM})
    assert layout is not None
    assert Certifier.build(layout) is not None
    assert Certifier.build(layout_for({"type": "array", "items": RISKY})) is None  # type: ignore[arg-type]
    rows = [{"id": i, "name": "ab", "price": 1.5, "geo": {"lat": 1.0}} for i in range(50)]
    seen: list[int] = []
    collector = Collector(RecordValidator(layout.record_schema))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.ndjson"
        path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"id": -1, "name": ""}]))
        original = collector.add

        def spy(n: int, get: Any, certified: Any = None) -> Any:
            seen.extend(i for i in range(n) if certified is None or not certified[i])
            return original(n, get, certified)

        collector.add = spy  # type: ignore[method-assign]
        read_file(path, "application/x-ndjson", layout=layout, collector=collector)
    assert seen == [50]  # only the invalid row went to the record-by-record validators
    assert collector.n_invalid == 1
    assert collector.errors[0][0] == 50


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=30),
    cut=st.integers(min_value=0, max_value=30),
)
def test_printable_ascii_is_the_regular_expressions_verdict(
    values: list[str | None], cut: int
) -> None:
    """One pass over a string array's bytes says what ``[^\\x20-\\x7e]`` says per
    string (nulls count as printable), on slices of an array too."""
    array = pa.array(values, pa.string()).slice(min(cut, len(values)) // 2)
    expected = [v is None or all(" " <= c <= "~" for c in v) for v in array.to_pylist()]
    assert _printable_ascii(array).tolist() == expected


def test_a_block_parsed_in_chunks_is_certified_as_a_whole() -> None:
    layout = layout_for({"type": "array", "items": ITEM})
    certifier = Certifier.build(layout)
    assert certifier is not None and layout is not None
    rows = [
        {"id": i, "name": "ab" if i % 3 else "", "price": 1.5, "geo": {"lat": 1.0, "lon": None}}
        for i in range(60)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    parsed = pa_json.read_json(  # as a block is parsed: in chunks of block_size
        pa.BufferReader(text),
        read_options=pa_json.ReadOptions(block_size=1 << 10, use_threads=False),
        parse_options=pa_json.ParseOptions(
            explicit_schema=pa.schema(list(parse_type(layout.node)))
        ),
    )
    assert parsed.column(0).num_chunks > 2
    combined = parsed.combine_chunks()
    # which rows' text holds a null is known for the whole block: each chunk must see
    # its own rows' flags
    flags = np.array([i % 4 == 0 for i in range(60)])
    got = certifier.certify(parsed, lambda: flags)
    assert got.tolist() == certifier.certify(combined, lambda: flags).tolist()
    assert got.tolist() == [i % 3 != 0 and i % 4 != 0 for i in range(60)]
    assert certifier.certify(parsed.slice(0, 0)).tolist() == []


def test_explain_paths_and_messages() -> None:
    v = RecordValidator(ITEM)
    errors = dict(v.explain({"id": 1, "name": "x", "rows": [{"k": "a"}]}))
    assert errors == {"$.rows[0].k": "'a' is not of type 'integer'"}
    assert json_path(["a b", 0, "c"]) == '$["a b"][0].c'


def test_nonfinite_values_are_judged_by_jsonschema() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": ["string", "null"]}, "m": {"maximum": 5}},
    }
    layout = layout_for(schema)
    collector = Collector(RecordValidator(schema))
    read_data(
        [{"x": float("nan")}, {"m": float("inf")}, {"x": None}], layout=layout, collector=collector
    )
    assert collector.mask().tolist() == [False, False, True]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.ndjson"
        path.write_text('{"x": NaN}\n{"m": Infinity}\n{"x": null}\n')
        collector = Collector(RecordValidator(schema))
        read_file(
            path,
            "application/x-ndjson",
            layout=layout_for({"type": "array", "items": schema}),
            collector=collector,
        )
    assert collector.mask().tolist() == [False, False, True]


def test_line_array_guess_falls_back_to_the_generic_reader() -> None:
    schema = {"type": "array", "items": ITEM}
    layout = layout_for(schema)
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b", "tags": ["x"]}, {"id": -3, "name": "c"}]
    # first element on one line, the rest pretty-printed: the guess fails mid-file
    text = (
        "[\n"
        + json.dumps(rows[0])
        + ",\n"
        + ",\n".join(json.dumps(r, indent=2) for r in rows[1:])
        + "\n]"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_text(text)
        collector = Collector(RecordValidator(layout.record_schema))  # type: ignore[union-attr]
        result = read_file(path, "application/json", layout=layout, collector=collector)
    assert result.table.column("id").to_pylist() == [1, 2, -3]
    assert collector.mask().tolist() == [True, True, False]
    assert collector.n_rows == 3


@pytest.mark.parametrize(
    "dump",
    [
        lambda rs: json.dumps(rs),
        lambda rs: json.dumps(rs, separators=(",", ":")),
        lambda rs: "[\n" + ",\n".join(json.dumps(r) for r in rs) + "\n]\n",
        lambda rs: json.dumps(rs, indent=2),
    ],
    ids=["compact", "tight", "lines", "indented"],
)
def test_array_separator_lookalikes_inside_elements(dump: Any) -> None:
    """'}, {' inside strings or between nested objects must not split an element."""
    schema = {"type": "array", "items": ITEM}
    layout = layout_for(schema)
    assert layout is not None
    rows = [
        {"id": 1, "name": "}, {", "rows": [{"k": 1}, {"k": 2}]},
        {"id": 2, "name": "},{", "opt": "a,\nb"},
        {"id": 3, "name": "x", "geo": {"lat": 1.0}, "tags": ["}, {", "},{"]},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_text(dump(rows))
        collector = Collector(RecordValidator(layout.record_schema))
        table = read_file(path, "application/json", layout=layout, collector=collector).table
    assert table.equals(records_to_table(rows, layout))
    assert collector.mask().tolist() == reference(ITEM, rows)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["a", "2024-01-02", "2024-01-02T03:04:05Z", "null", ""])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.recursive(
                SCALARS,
                lambda inner: (
                    st.lists(inner, max_size=2)
                    | st.dictionaries(st.sampled_from(["x", "y"]), inner, max_size=2)
                ),
                max_leaves=4,
            ),
            max_size=3,
        ),
        min_size=1,
        max_size=8,
    ),
    fmt=st.sampled_from(["ndjson", "compact"]),
)
def test_inferred_file_tables_match_inline_inference(records: list[Any], fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r"
        if fmt == "ndjson":
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        else:
            path.write_text(json.dumps(records))
        ct = "application/x-ndjson" if fmt == "ndjson" else "application/json"
        table = read_file(path, ct, layout=None, collector=Collector(None)).table
    expected = records_to_table(records, None)
    assert table.schema == expected.schema
    assert table.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02T03:04Z",
        "2024-01-02T03:04:05+0530",
        "2024-13-01T00:00:00Z",
        "20240102T030405Z",
        "2024-01-02t03:04:05z",
        "2024-01-02T03:04:05.5-01:00",
        "2024-01-02T24:00:00Z",
        " 2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05,5Z",
    ],
)
def test_timestamp_parsing_is_the_same_on_every_path(text: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
        },
    }
    layout = layout_for({"type": "array", "items": schema})
    rows = [{"when": text, "day": text[:10]}, {"when": "2024-01-02T03:04:05Z", "day": "2024-01-02"}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.ndjson"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        table = read_file(path, "application/x-ndjson", layout=layout, collector=Collector(None))
    assert table.table.to_pylist() == records_to_table(rows, layout).to_pylist()


@pytest.mark.parametrize("fmt", ["ndjson", "ndjson-blank", "lines", "array", "pretty"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tiny_blocks_give_the_same_result(fmt: str, data: st.DataObject) -> None:
    """Block cutting (carries, separators across block ends) changes nothing."""
    import webtask_frames._tables.blocks as readers

    records = [r for r in data.draw(records_for(ITEM)) if isinstance(r, dict)] or [{}]
    # Draw first, change the module only inside try: a draw that hypothesis aborts must
    # not leave tiny blocks behind for every later test.
    block_bytes = data.draw(st.integers(1, 200))
    batch_rows = data.draw(st.integers(1, 3))
    sizes = (readers.BLOCK_BYTES, readers.ARRAY_BATCH_ROWS)
    try:
        readers.BLOCK_BYTES, readers.ARRAY_BATCH_ROWS = block_bytes, batch_rows
        collector, table = _read(records, fmt, ITEM)
    finally:
        readers.BLOCK_BYTES, readers.ARRAY_BATCH_ROWS = sizes
    assert collector.mask().tolist() == reference(ITEM, records)
    layout = layout_for({"type": "array", "items": ITEM})
    assert table.to_pylist() == records_to_table(records, layout).to_pylist()
