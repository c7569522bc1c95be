"""Record shaping rules, record_path and the tolerant converter."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from webtask_frames import InvalidInputError
from webtask_frames._tables.records import put_rows, records_to_table, shape
from webtask_frames._tables.schema import layout_for


def test_list_is_one_row_per_element() -> None:
    assert shape([{"a": 1}, {"a": 2}]).records == [{"a": 1}, {"a": 2}]


def test_object_with_one_list_of_objects_unwraps_and_broadcasts() -> None:
    s = shape({"batch": "S24", "total": 2, "companies": [{"n": "A"}, {"n": "B"}], "tags": [1]})
    assert s.records == [{"n": "A"}, {"n": "B"}]
    assert s.broadcast == {"batch": "S24", "total": 2, "tags": [1]}


def test_object_with_two_lists_of_objects_is_one_row() -> None:
    data = {"a": [{"x": 1}], "b": [{"y": 2}]}
    assert shape(data).records == [data]


def test_single_object_and_scalars() -> None:
    assert shape({"name": "A", "tags": []}).records == [{"name": "A", "tags": []}]
    table = records_to_table(shape(True).records, None)
    assert table.column_names == ["value"]
    assert table.column("value").to_pylist() == [True]
    assert shape(None).records == []
    mixed = records_to_table(shape([{"a": 1}, 5]).records, None)
    assert mixed.column_names == ["a", "value"]


def test_schema_decides_the_wrapper() -> None:
    schema = {
        "type": "object",
        "properties": {
            "companies": {
                "type": "array",
                "items": {"type": "object", "properties": {"n": {"type": "string"}}},
            },
            "pages": {"type": "array", "items": {"type": "integer"}},
        },
    }
    layout = layout_for(schema)
    s = shape({"companies": [], "pages": [1, 2]}, layout=layout)
    assert s.records == []
    plain = layout_for(
        {
            "type": "object",
            "properties": {
                "xs": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"a": {"type": "integer"}}},
                },
                "ys": {"type": "array", "items": {"type": "object"}},
            },
        }
    )
    data = {"xs": [{"a": 1}], "ys": [{}]}
    assert shape(data, layout=plain).records == [data]  # two arrays: the object is the record


def test_record_path() -> None:
    data = {"meta": {"page": 3, "items": [{"a": 1}, {"a": 2}]}, "x": [{"b": 1}]}
    s = shape(data, record_path="meta.items")
    assert s.records == [{"a": 1}, {"a": 2}]
    assert s.broadcast == {"page": 3}
    assert shape({"r": [[{"a": 1}], [{"a": 2}]]}, record_path="r.1").records == [{"a": 2}]
    assert shape({"r": {"a": 1}}, record_path="r").records == [{"a": 1}]
    with pytest.raises(InvalidInputError) as info:
        shape(data, record_path="meta.nope")
    assert info.value.field == "record_path"


def test_tolerant_conversion_along_the_schema() -> None:
    layout = layout_for(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "i": {"type": "integer"},
                    "f": {"type": "number"},
                    "s": {"type": "string"},
                    "b": {"type": "boolean"},
                    "t": {"type": "string", "format": "date-time"},
                    "d": {"type": "string", "format": "date"},
                    "l": {"type": "array", "items": {"type": "integer"}},
                    "j": {},
                },
            },
        }
    )
    records = [
        {
            "i": 5.0,
            "f": 3,
            "s": 7,
            "b": True,
            "t": "2024-01-02T03:04:05+02:00",
            "d": "2024-02-03",
            "l": [1, "x"],
            "j": {"k": [1, None]},
        },
        {
            "i": "x",
            "f": "y",
            "s": {"a": 1},
            "b": 1,
            "t": "2024-01-02",
            "d": "nope",
            "l": 3,
            "j": "text",
        },
        {"i": True, "f": None, "t": "2024-01-02T00:00:00", "i_extra": 1},
    ]
    t = records_to_table(records, layout).to_pydict()
    assert t["i"] == [5, None, None]
    assert t["f"] == [3.0, None, None]
    assert t["s"] == ["7", '{"a": 1}', None]
    assert t["b"] == [True, None, None]
    assert t["t"] == [
        datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC),
        datetime(2024, 1, 2, tzinfo=UTC),
        datetime(2024, 1, 2, tzinfo=UTC),
    ]
    assert t["d"] == [date(2024, 2, 3), None, None]
    assert t["l"] == [[1, None], None, None]
    assert t["j"] == ['{"k": [1, null]}', '"text"', None]
    assert "i_extra" not in t  # undeclared fields are not columns with a schema


def test_prefetch_stops_and_closes_its_producer_when_the_consumer_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer that gives up early (a parse error, a guess that proved wrong) leaves
    no thread behind, closes the producer, and releases a producer waiting to hand over
    its next item at once, not at its next poll (so an abandoned read restarts at once)."""
    import threading

    from webtask_frames._tables import prefetch

    monkeypatch.setattr(prefetch, "_POLL_SECONDS", 60.0)
    closed: list[bool] = []
    produced: list[int] = []

    def producer():  # type: ignore[no-untyped-def]
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.append(True)

    items = prefetch.prefetch(producer())
    assert [next(items), next(items)] == [0, 1]
    while len(produced) < 4:  # item 2 waits in the slot, the producer holds item 3
        threading.Event().wait(0.01)
    closer = threading.Thread(target=items.close)  # the consumer gives up early
    closer.start()
    closer.join(timeout=20)
    assert not closer.is_alive(), "close waited for the producer's poll"
    assert not any(t.name == "webtask-frames-reader" for t in threading.enumerate())
    assert closed == [True]
    assert len(produced) == 4  # it made nothing after the item it held


def test_mapped_ahead_runs_the_next_item_while_the_consumer_holds_this_one() -> None:
    """The next block's parse overlaps the checks of this one: ``fn`` already runs on
    item k+1 while the consumer still holds result k. ``fn`` runs on one item at a time,
    in order (a patcher's state goes from block to block as in a plain loop)."""
    import threading

    from webtask_frames._tables.prefetch import mapped_ahead

    before = set(threading.enumerate())
    started = {i: threading.Event() for i in range(6)}
    calls: list[int] = []
    running: list[int] = []
    overlapped: list[bool] = []

    def fn(i: int) -> int:
        running.append(i)
        assert len(running) == 1, "two calls at once"
        calls.append(i)
        started[i].set()
        threading.Event().wait(0.01)
        running.remove(i)
        return i * 10

    results = []
    for result in mapped_ahead(fn, iter(range(6))):
        k = result // 10
        if k + 1 < 6:  # while result k is held, item k+1 is being (or has been) mapped
            overlapped.append(started[k + 1].wait(timeout=5))
        results.append(result)
    assert results == [0, 10, 20, 30, 40, 50]
    assert calls == list(range(6))
    assert overlapped == [True] * 5
    assert set(threading.enumerate()) <= before  # the worker is gone


def test_mapped_ahead_stops_cleanly_on_an_error_or_an_early_stop() -> None:
    """An error of ``fn`` comes out at its item, after the results before it; a consumer
    that stops early waits for the call under way (no parse outlives the read) and
    starts no other. Either way the items are closed and no worker is left."""
    import threading

    from webtask_frames._tables.prefetch import mapped_ahead

    before = set(threading.enumerate())
    closed: list[bool] = []
    calls: list[int] = []

    def items():  # type: ignore[no-untyped-def]
        try:
            yield from range(100)
        finally:
            closed.append(True)

    def fn(i: int) -> int:
        calls.append(i)
        if i == 3:
            raise ValueError("bad block 3")
        return i

    seen: list[int] = []
    with pytest.raises(ValueError, match="bad block 3"):
        seen.extend(mapped_ahead(fn, items()))
    assert seen == [0, 1, 2]
    assert closed == [True] and max(calls) <= 4  # at most the item after the error
    assert set(threading.enumerate()) <= before

    closed.clear()
    finished: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def slow(i: int) -> int:
        if i == 1:
            entered.set()
            release.wait(timeout=20)
        finished.append(i)
        return i

    ahead = mapped_ahead(slow, items())
    assert next(ahead) == 0
    # item 1 is being mapped, and waits (until then it is only queued, and a close
    # would cancel it: the call under way is what close must wait for)
    assert entered.wait(timeout=20)
    timer = threading.Timer(0.2, release.set)
    timer.start()
    ahead.close()
    timer.join()
    assert finished == [0, 1]  # close waited for the call under way, started no other
    assert closed == [True]
    assert set(threading.enumerate()) <= before


def test_mapped_ahead_hands_over_the_held_result_before_the_next_items_error() -> None:
    """Errors in the items' order, as a plain loop has them: when making item k+1 fails,
    result k reaches the consumer first, whose check of it may be what explains the
    failure (a block proving a guess wrong restarts the read with the scan)."""
    from webtask_frames._tables.prefetch import mapped_ahead

    def items():  # type: ignore[no-untyped-def]
        yield from range(3)
        raise ValueError("cutting block 3 failed")

    seen: list[int] = []
    with pytest.raises(ValueError, match="block 3"):
        seen.extend(mapped_ahead(lambda i: i * 10, items()))
    assert seen == [0, 10, 20]


@pytest.mark.parametrize(
    "item",
    [
        {"type": "object", "properties": {"id": {"type": "integer"}}},  # strict
        {"type": "object", "properties": {"id": {}}},  # records in Python
        None,  # inferred
    ],
)
def test_a_failed_read_leaves_no_thread_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, item: dict[str, Any] | None
) -> None:
    """A kept traceback (a notebook's last error) holds the failed read's frames: the
    reader and parse threads, and the blocks they read ahead, go when the read fails."""
    import gc
    import json
    import threading

    from webtask_frames import ProtocolError
    from webtask_frames._tables import blocks
    from webtask_frames._tables.readers import read_file
    from webtask_frames._tables.validate import Collector

    monkeypatch.setattr(blocks, "FIRST_BLOCK_BYTES", 4 << 10)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 4 << 10)
    lines = [json.dumps({"id": i}) for i in range(5000)]
    lines[1000] = '{"id": 1'  # not JSON: the read fails there, with blocks after it
    path = tmp_path / "r.ndjson"
    path.write_text("\n".join(lines) + "\n")
    layout = layout_for({"type": "array", "items": item}) if item is not None else None
    before = set(threading.enumerate())
    gc.disable()  # nothing collected behind the test's back
    try:
        with pytest.raises(ProtocolError) as caught:
            read_file(path, "application/x-ndjson", layout=layout, collector=Collector(None))
        assert caught.traceback  # the frames are still held
        assert set(threading.enumerate()) <= before
    finally:
        gc.enable()


@settings(max_examples=60, deadline=None)
@example(n=300, picks=list(range(0, 300, 2)), chunked=True)  # 150 runs: the take
@example(n=300, picks=[*range(10, 40), 299], chunked=False)  # 2 runs: the slices
@given(
    n=st.integers(min_value=1, max_value=300),
    picks=st.lists(st.integers(min_value=0, max_value=299), max_size=200),
    chunked=st.booleans(),
)
def test_put_rows_replaces_exactly_those_rows(n: int, picks: list[int], chunked: bool) -> None:
    """Both ways of putting rows back (slices for a few runs, a take for many) give the
    table with just those rows replaced, in one chunk, nested and dictionary columns too."""
    rows = sorted({p for p in picks if p < n})
    values = [
        {"i": k, "tag": f"t{k % 3}", "people": [{"name": f"p{k}", "n": j} for j in range(k % 3)]}
        for k in range(n)
    ]
    person = pa.struct([("name", pa.string()), ("n", pa.int64())])
    schema = pa.schema(
        [
            ("i", pa.int64()),
            ("tag", pa.dictionary(pa.int32(), pa.string())),
            ("people", pa.list_(person)),
        ]
    )
    table = pa.Table.from_pylist(values, schema=schema)
    if chunked and n > 1:  # a table of two chunks, as concatenated parts are
        table = pa.concat_tables([table.slice(0, n // 2), table.slice(n // 2)])
    fresh = [{"i": -k, "tag": "new", "people": [{"name": "x", "n": k}]} for k in rows]
    fixed = pa.Table.from_pylist(fresh, schema=schema)
    out = put_rows(table, rows, fixed)
    expected = list(values)
    for k, record in zip(rows, fresh, strict=True):
        expected[k] = record
    assert out.schema == schema
    assert out.to_pylist() == expected
    assert all(column.num_chunks == 1 for column in out.columns)


@pytest.mark.parametrize("runs", [1, 80])  # the slices, the take
def test_put_rows_keeps_one_dictionary_in_file_order(runs: int) -> None:
    """Chunks encoded apart (their own dictionaries) come back with one dictionary:
    the table's values first, then the fixed rows', however the rows were joined."""
    n = 2 * runs + 2
    first = pa.table({"tag": pa.array(["x"] * (n // 2)).dictionary_encode()})
    second = pa.table({"tag": pa.array(["y", "z"] * (n // 4) + ["y"] * (n % 4 // 2))})
    table = pa.concat_tables(
        [first, second.set_column(0, "tag", second["tag"].dictionary_encode())]
    )
    rows = list(range(0, 2 * runs, 2))
    fixed = pa.table({"tag": pa.array(["c"] * len(rows)).dictionary_encode()})
    out = put_rows(table, rows, fixed)
    assert out.column("tag").num_chunks == 1
    assert out.column("tag").chunk(0).dictionary.to_pylist() == ["x", "y", "z", "c"]
    assert [out.column("tag")[r].as_py() for r in rows] == ["c"] * len(rows)
