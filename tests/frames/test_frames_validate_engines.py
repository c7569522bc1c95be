"""Differential tests: the compiled engine plus its per-record disagreement test gives
exactly jsonschema's verdicts, including where the two engines really disagree."""

from __future__ import annotations

import random
from typing import Any

import jsonschema
import pytest

from webtask_frames._tables.validate import Collector, RecordValidator

NAN, INF = float("nan"), float("inf")

CASES: list[tuple[dict[str, Any], list[Any]]] = [
    (  # "$" also matches before a final newline in Python
        {"type": "string", "pattern": "^[A-Z]{2}$"},
        ["AB", "AB\n", "AB\n\n", "ABC", "ab", "\nAB", "É\n"],
    ),
    ({"type": "string", "pattern": "^(ab$|c)|x[$]$"}, ["ab", "ab\n", "c\n", "x$\n", "x$$"]),
    (  # Unicode \w and \d in Python
        {"type": "string", "pattern": "^\\w+$"},
        ["abc", "é", "naïve", "a b", "日本", "a\n", "_"],
    ),
    ({"type": "string", "pattern": "^\\d+$"}, ["123", "١٢٣", "12a", "１２", "3\n"]),
    ({"type": "string", "pattern": "^.+$"}, ["a", "a\rb", "a\u2028b", "a\nb", "é"]),
    ({"type": "string", "pattern": "\\s"}, ["a b", "a\x1cb", "a\u00a0b", "ab", "a\ufeffb"]),
    (  # a fractional multipleOf: float rounding
        {"type": "number", "multipleOf": 0.1},
        [3, 0.3, 1.1, 0.7, 10, 1e308, 0.30000000000000004, 7.5, "x"],
    ),
    ({"type": "number", "maximum": 0}, [NAN, INF, -INF, -1, 1]),
    ({"minimum": 0}, [NAN, INF, -INF, 1, -1]),
    ({"not": {"type": "number"}}, [NAN, INF, 1, "a", [NAN]]),
    ({"type": "array", "items": {"type": "number"}}, [[NAN], [1, INF], [1, 2], []]),
    (
        {"type": "object", "patternProperties": {"^[a-z]+$": {"type": "integer"}}},
        [{"ab": 1}, {"ab\n": "x"}, {"é": "x"}, {"AB": "x"}, {"ab": NAN}],
    ),
    (  # integer-valued floats, bool vs number, enum/const/uniqueItems equality
        {
            "type": "object",
            "properties": {
                "i": {"type": "integer"},
                "e": {"enum": [1, "a", None, [1, 2], {"k": 1}]},
                "c": {"const": 0},
                "u": {"type": "array", "uniqueItems": True},
            },
        },
        [
            {"i": 1.0},
            {"i": 1.5},
            {"i": True},
            {"e": 1.0},
            {"e": True},
            {"e": [1.0, 2]},
            {"e": {"k": True}},
            {"c": False},
            {"c": 0.0},
            {"u": [1, True]},
            {"u": [1, 1.0]},
            {"u": [0, False]},
            {"u": [{"a": 1}, {"a": 1.0}]},
            {"i": 2**70},
        ],
    ),
]


@pytest.mark.parametrize(("schema", "values"), CASES)
def test_verdicts_match_jsonschema_where_the_engines_disagree(
    schema: dict[str, Any], values: list[Any]
) -> None:
    expected = [jsonschema.Draft202012Validator(schema).is_valid(v) for v in values]
    v = RecordValidator(schema)
    assert v.verdicts(values) == expected
    assert [v.is_valid(x) for x in values] == expected
    # the same records inside objects, in chunks larger than one
    wrapped = {"type": "object", "properties": {"v": schema}, "required": ["v"]}
    records = [{"v": x} for x in values] * 300
    want = [jsonschema.Draft202012Validator(wrapped).is_valid(r) for r in records]
    assert RecordValidator(wrapped).verdicts(records) == want


def test_the_disagreement_test_is_per_record_not_per_schema() -> None:
    v = RecordValidator({"type": "string", "pattern": "^[A-Z]{2}$"})
    assert v.compiled
    assert not v.needs_reference("AB") and not v.needs_reference("é")
    assert v.needs_reference(NAN)
    # a "$" anchor is given to the compiled engine as "\n?$": the engines agree
    assert not v.needs_reference("AB\n") and v.verdicts(["AB\n", "AB\n\n"]) == [True, False]
    assert v.explain("abc") == [("$", "'abc' does not match '^[A-Z]{2}$'")]
    w = RecordValidator({"type": "string", "pattern": "^\\w+$"})
    assert not w.needs_reference("abc") and w.needs_reference("é") and w.needs_reference("a\n")
    m = RecordValidator({"properties": {"p": {"multipleOf": 0.5}, "s": {"type": "string"}}})
    assert not m.needs_reference({"s": "x"}) and m.needs_reference({"p": 1})
    plain = RecordValidator({"type": "object", "properties": {"n": {"type": "integer"}}})
    assert not plain.needs_reference({"n": 1, "s": "é\n"})
    assert plain.needs_reference({"n": 1, "x": [{"y": INF}]})
    # inline flags are not analysed, nor an anchor followed by more pattern: the whole
    # schema goes to the reference
    assert not RecordValidator({"pattern": "(?i)^ab$"}).compiled
    assert not RecordValidator({"pattern": "^a$\\n"}).compiled
    assert RecordValidator({"pattern": "^(a$|b[$]$)"}).compiled


SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "email": {"type": "string", "format": "email"},
        "kind": {"enum": ["a", "b", "c"]},
        "name": {"type": "string", "minLength": 2, "maxLength": 8},
        "price": {"type": "number", "minimum": 0, "exclusiveMaximum": 100},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "seller": {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "required": ["id"],
        },
    },
    "required": ["code", "name"],
    "additionalProperties": {"type": "string"},
}


def _value(rng: random.Random) -> Any:
    return rng.choice(
        [
            "AB",
            "AB\n",
            "ab",
            "é",
            "x",
            "not-an-email",
            "a@b.co",
            "abcdefghij",
            "",
            1,
            -1,
            0.5,
            150,
            1e308,
            NAN,
            INF,
            True,
            None,
            [],
            ["a"],
            ["a", "b", "c", "d"],
            [1],
            {},
            {"id": 1},
            {"id": "1"},
            {"id": 1.0},
            2**70,
        ]
    )


GOOD: dict[str, list[Any]] = {
    "code": ["AB", "XY"],
    "email": ["a@b.co", "nope"],
    "kind": ["a", "c"],
    "name": ["ab", "abcdefgh", "é!"],
    "price": [0, 99.5, 1],
    "tags": [[], ["a", "b"]],
    "seller": [{"id": 1}, {"id": 2, "x": None}],
    "extra": ["x", "é"],
}


def _record(rng: random.Random) -> dict[str, Any]:
    keys = [*GOOD, "x\n"]
    out = {k: rng.choice(GOOD.get(k, ["s"])) for k in ("code", "name")}
    for k in rng.sample(keys, rng.randint(0, len(keys))):
        out[k] = _value(rng) if rng.random() < 0.04 else rng.choice(GOOD.get(k, ["s"]))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_random_records_get_jsonschemas_verdicts(seed: int) -> None:
    rng = random.Random(seed)
    records = [_record(rng) for _ in range(3000)]
    ref = jsonschema.Draft202012Validator(SCHEMA)
    expected = [ref.is_valid(r) for r in records]
    assert 0.05 < expected.count(True) / len(expected) < 0.95
    assert RecordValidator(SCHEMA).verdicts(records) == expected


def test_collector_messages_use_jsonschemas_wording() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "n": {"type": "integer", "minimum": 0, "maximum": 9},
            "k": {"enum": ["a", "b"]},
            "s": {"type": "string", "minLength": 2, "maxLength": 3},
            "l": {"type": "array", "minItems": 1},
        },
        "required": ["code"],
    }
    records: list[Any] = [
        {},
        {"code": "abc"},
        {"code": "AB", "n": "1"},
        {"code": "AB", "n": -1},
        {"code": "AB", "n": 10},
        {"code": "AB", "k": "z"},
        {"code": "AB", "s": "x"},
        {"code": "AB", "s": "xxxx"},
        {"code": "AB", "l": []},
        {"code": "AB\n", "n": 1.5},  # judged by the reference
    ]
    ref = jsonschema.Draft202012Validator(schema)
    collector = Collector(RecordValidator(schema), keep_messages=True)
    verdict = collector.add(len(records), lambda i: (records[i], False))
    assert verdict.tolist() == [ref.is_valid(r) for r in records]
    for row, record in enumerate(records):
        errors = list(ref.iter_errors(record))
        if len(errors) == 1:
            assert errors[0].message in collector.messages[row]
