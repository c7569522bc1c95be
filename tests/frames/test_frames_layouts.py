"""Every file layout gives the reference path's rows and verdicts: any whitespace and
separators, arrays of objects inside records, wrong-typed values, tiny records."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pytest

import webtask_frames._tables.strict as strict
from webtask_frames._exceptions import ProtocolError
from webtask_frames._tables.readers import read_file
from webtask_frames._tables.records import constant_array, records_to_table
from webtask_frames._tables.schema import layout_for
from webtask_frames._tables.validate import Collector, RecordValidator

ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "price": {"type": "number", "minimum": 0},
        "name": {"type": "string", "pattern": "^[A-Za-z]\\w*$"},
        "offices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "staff": {"type": "integer"}},
            },
        },
    },
    "required": ["id"],
}

DUMPS: dict[str, tuple[str, Callable[[list[Any]], str]]] = {
    "default": ("application/json", json.dumps),
    "compact": ("application/json", lambda r: json.dumps(r, separators=(",", ":"))),
    "indent": ("application/json", lambda r: json.dumps(r, indent=2)),
    "tabs-crlf": (
        "application/json",
        lambda r: json.dumps(r, indent="\t").replace("\n", "\r\n"),
    ),
    "odd-spacing": (
        "application/json",
        lambda r: (
            " \n[ " + " ,\n\t ".join(json.dumps(x, separators=(" , ", " : ")) for x in r) + " ]\n"
        ),
    ),
    "ndjson": ("application/x-ndjson", lambda r: "".join(json.dumps(x) + "\n" for x in r)),
}


def _records(n: int, seed: int, bad: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rec: dict[str, Any] = {
            "id": i,
            "price": round(rng.random() * 50, 2),
            "name": rng.choice(["Acme", "Büro", "x_1", "}, {", "a\n", 'q"],[{']),
            "offices": [{"city": "}, {", "staff": j} for j in range(rng.randint(0, 3))],
        }
        if rng.random() < bad:
            rec["price"] = rng.choice(["n/a", None, -1, True])
        out.append(rec)
    return out


def _read(tmp: Path, records: list[Any], layout_name: str, schema: Any) -> tuple[Any, Any]:
    ctype, dump = DUMPS[layout_name]
    path = tmp / "r.bin"
    path.write_text(dump(records), encoding="utf-8")
    layout = layout_for({"type": "array", "items": schema}) if schema else None
    validator = RecordValidator(schema) if schema else None
    collector = Collector(validator)
    return read_file(path, ctype, layout=layout, collector=collector), collector


@pytest.mark.parametrize("layout_name", list(DUMPS))
@pytest.mark.parametrize("bad", [0.0, 0.01])
def test_layouts_give_the_reference_rows_and_verdicts(
    tmp_path: Path, layout_name: str, bad: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webtask_frames._tables.blocks as blocks

    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4096)  # many blocks, carries, pieces
    monkeypatch.setattr(strict, "_MIN_SPLIT_BYTES", 256)
    records = _records(400, seed=len(layout_name), bad=bad)
    result, collector = _read(tmp_path, records, layout_name, ITEM)
    layout = layout_for({"type": "array", "items": ITEM})
    assert result.table.equals(records_to_table(records, layout))
    ref = jsonschema.Draft202012Validator(ITEM)
    assert collector.mask().tolist() == [ref.is_valid(r) for r in records]
    untyped, _ = _read(tmp_path, records if not bad else records[:1], layout_name, None)
    expected = records_to_table(records if not bad else records[:1], None)
    assert untyped.table.to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("text", ["[", "[1,", "[{]", "[1}", '["a]'])
def test_broken_arrays_are_protocol_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    layout = layout_for({"type": "array", "items": ITEM})
    with pytest.raises(ProtocolError):
        read_file(path, "application/json", layout=layout, collector=Collector(None))


def test_empty_arrays(tmp_path: Path) -> None:
    for text in ("[]", " [ \n ] "):
        path = tmp_path / "r.json"
        path.write_text(text)
        result = read_file(path, "application/json", layout=None, collector=Collector(None))
        assert result.n_records == 0


def test_constant_columns_are_repeated_not_rebuilt() -> None:
    node = layout_for({"type": "object", "properties": {"s": {"type": "object"}}})
    assert node is not None
    assert constant_array("x", 3).to_pylist() == ["x", "x", "x"]
    assert constant_array({"a": [1, 2]}, 2).to_pylist() == [{"a": [1, 2]}] * 2
    assert constant_array(5, 1).to_pylist() == [5]
    assert constant_array(None, 2).null_count == 2
    assert constant_array("x", 0).type == pa.string()


@pytest.mark.parametrize("pattern", ["^[A-Z]{2}$", "^\\d+$", "\\bab\\b", "^a{,2}$", "^.\\S$"])
def test_certified_patterns_agree_with_python(tmp_path: Path, pattern: str) -> None:
    item = {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}
    values = ["AB", "AB\n", "ab", "12", "١٢", "ab cd", "x ab", "a{,2}", "aa", "é1", "[:a", "\t1"]
    records = [{"s": v} for v in values] + [{}]
    path = tmp_path / "r.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    layout = layout_for({"type": "array", "items": item})
    collector = Collector(RecordValidator(item))
    read_file(path, "application/x-ndjson", layout=layout, collector=collector)
    ref = jsonschema.Draft202012Validator(item)
    assert collector.mask().tolist() == [ref.is_valid(r) for r in records]
