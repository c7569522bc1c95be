"""A file read while it downloads (``_tables.growing``): reads wait for the bytes they ask
for, the file ends only when the download ended well, and a failed download is never
mistaken for a short file."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from webtask_frames._tables import wrapper as wrapper_module
from webtask_frames._tables.growing import (
    Abandoned,
    Growing,
    complete,
    file_size,
    open_bytes,
    watching,
)
from webtask_frames._tables.readers import read_file
from webtask_frames._tables.schema import layout_for
from webtask_frames._tables.validate import Collector

pytestmark = pytest.mark.skipif(not hasattr(os, "pread"), reason="reads follow with pread")


class Writer:
    """A download's side: the temporary file, written chunk by chunk."""

    def __init__(self, growing: Growing, tmp: Path | None = None) -> None:
        self.tmp = tmp or growing.target.with_name(f".{growing.target.name}.part")
        self.target = growing.target
        self.growing = growing
        self.out = self.tmp.open("wb")
        growing.begin(self.tmp)

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()
        self.growing.wrote(len(data))

    def finish(self) -> None:
        self.out.close()
        os.replace(self.tmp, self.target)
        self.growing.end(True)


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``fn`` in a thread; its result (or exception) lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def settle() -> None:
    time.sleep(0.05)  # long enough for a thread that is not blocked to finish


def test_a_read_waits_for_its_bytes_and_the_end_for_the_download(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        f = open_bytes(growing.path)
        thread, out = in_thread(lambda: f.read(10))
        settle()
        assert thread.is_alive() and not out  # nothing written yet: the read waits
        writer = Writer(growing)
        writer.write(b"0123")
        settle()
        assert thread.is_alive()  # 4 of its 10 bytes: a short read would be an end of file
        writer.write(b"456789abcdef")
        thread.join(5)
        assert out == [b"0123456789"]
        rest, rest_out = in_thread(f.read)
        settle()
        assert rest.is_alive()  # the rest of the file waits for the end of the download
        writer.finish()
        rest.join(5)
        assert rest_out == [b"abcdef"]
        assert f.read(5) == b""  # now the file ends
        f.close()
        assert growing.delivered


def test_a_failed_download_raises_in_blocked_and_later_reads(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        writer = Writer(growing)
        writer.write(b"[1, 2")
        f = open_bytes(growing.path)
        assert f.read(3) == b"[1,"
        thread, out = in_thread(lambda: f.read(100))
        settle()
        growing.end(False)  # the connection dropped: these bytes are not the result
        thread.join(5)
        assert len(out) == 1 and isinstance(out[0], Abandoned)
        with pytest.raises(Abandoned):
            f.read(1)
        with pytest.raises(Abandoned):
            file_size(growing.path)
        assert not growing.delivered
        f.close()
        writer.out.close()


@pytest.mark.parametrize("opened", [False, True], ids=["no-file", "empty-file"])
def test_an_attempt_that_failed_before_its_first_byte_leaves_the_read_waiting(
    tmp_path: Path, opened: bool
) -> None:
    # a 503 before any byte (no file), or a body that broke before its first byte
    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        f = open_bytes(growing.path)
        thread, out = in_thread(f.read)
        first = Writer(growing, tmp_path / "one.part") if opened else None
        growing.end(False)
        if first is not None:
            first.out.close()
        settle()
        assert thread.is_alive() and growing._fd is None  # its descriptor went at once
        second = Writer(growing)  # the next attempt may still begin
        second.write(b'{"a": 1}\n')
        second.finish()
        thread.join(5)
        assert out == [b'{"a": 1}\n']
        f.close()


def test_a_whole_read_takes_as_many_preads_as_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as Linux caps one read at about 2 GiB
    real_pread, real_preadv = os.pread, os.preadv

    def pread(fd: int, size: int, offset: int) -> bytes:
        return real_pread(fd, min(size, 5), offset)

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        return real_preadv(fd, [memoryview(buffers[0])[:5]], offset)

    monkeypatch.setattr(os, "pread", pread)
    monkeypatch.setattr(os, "preadv", preadv)
    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        writer = Writer(growing)
        writer.write(b'{"a": [1, 2, 3], "b": "xyz"}')
        writer.finish()
        with open_bytes(growing.path) as f:
            assert f.read(2) == b'{"'
            assert f.read() == b'a": [1, 2, 3], "b": "xyz"}'
        with open_bytes(growing.path) as f:
            assert f.read() == b'{"a": [1, 2, 3], "b": "xyz"}'


def test_a_large_read_waits_once_for_all_its_bytes_and_takes_one_pread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A block reader asks for 16 MiB while the download writes 64 KiB at a time: one
    # wake-up per chunk would take the GIL from the loop that downloads, 256 times a block.
    real_preadv = os.preadv
    preads: list[int] = []

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        preads.append(len(buffers[0]))
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        waits = 0
        real_wait = growing._cond.wait

        def wait(timeout: float | None = None) -> bool:
            nonlocal waits
            waits += 1
            return real_wait(timeout)

        monkeypatch.setattr(growing._cond, "wait", wait)
        writer = Writer(growing)
        f = open_bytes(growing.path)
        buffer = bytearray(32 << 16)
        thread, out = in_thread(lambda: f.readinto(buffer))
        settle()
        for i in range(32):
            writer.write(bytes([i]) * (1 << 16))
            time.sleep(0.002)  # the reader could wake between two chunks
        thread.join(5)
        assert out == [len(buffer)]
        assert buffer == b"".join(bytes([i]) * (1 << 16) for i in range(32))
        assert preads == [len(buffer)]
        assert waits <= 2  # woken when its bytes were all there (once more, spuriously)
        small, small_out = in_thread(lambda: f.read(3))  # a small read takes what is there
        writer.write(b"abc")
        small.join(5)
        assert small_out == [b"abc"]
        f.close()
        writer.out.close()


def test_a_second_attempt_after_written_bytes_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        first = Writer(growing)
        first.write(b"[1,")
        growing.end(False)
        first.out.close()
        second = Writer(growing, target.with_name("s.json"))  # ignored: the read restarts
        second.write(b"[1, 2]")
        with open_bytes(growing.path) as f, pytest.raises(Abandoned):
            f.read(1)
        second.out.close()


@pytest.mark.parametrize("how", ["attempt-failed", "caller-left"])
def test_a_descriptor_goes_once_the_download_ended_badly_and_its_readers_stopped(
    tmp_path: Path, how: str
) -> None:
    # A failed attempt's file was deleted: the descriptor is all that holds its disk
    # space for the retry. A caller that left closes the watch under a running reader.
    target = tmp_path / "r.json"
    growing = Growing(target)
    with watching(growing):
        writer = Writer(growing)
        writer.write(b"[1,")
        f = open_bytes(growing.path)
        fd = growing._fd
        assert fd is not None
        if how == "attempt-failed":
            growing.end(False)
            _let_go_after_its_reader(f, fd)  # within the watch: while the retry runs
    if how == "caller-left":
        _let_go_after_its_reader(f, fd)
    writer.out.close()


def _let_go_after_its_reader(f: BinaryIO, fd: int) -> None:
    os.fstat(fd)  # a reader still holds it: closing it could let its number name another
    with pytest.raises(Abandoned):
        f.read(10)
    f.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # the last reader closed it


def test_seek_size_and_complete_wait_for_the_end(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        writer = Writer(growing)
        writer.write(b"0123456789")
        f = open_bytes(growing.path)
        f.seek(6)
        assert f.read(2) == b"67" and f.tell() == 8
        sized, size_out = in_thread(lambda: file_size(growing.path))
        completed, complete_out = in_thread(lambda: complete(growing.path))
        settle()
        assert sized.is_alive() and completed.is_alive()
        writer.write(b"ab")
        writer.finish()
        sized.join(5)
        completed.join(5)
        assert size_out == [12] and complete_out == [target]  # the name to open
        assert target.read_bytes() == b"0123456789ab"
        assert f.seek(-2, os.SEEK_END) == 10 and f.read() == b"ab"
        f.close()


def test_two_reads_of_one_target_each_follow_their_own_download(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with watching(Growing(target)) as first, watching(Growing(target)) as second:
        assert first.path != second.path and not first.path.exists()
        one = Writer(first, tmp_path / "one.part")
        two = Writer(second, tmp_path / "two.part")
        one.write(b"[1]")
        two.write(b"[2]")
        with open_bytes(first.path) as a, open_bytes(second.path) as b:
            assert a.read(3) == b"[1]" and b.read(3) == b"[2]"
        one.out.close()
        two.out.close()


def test_an_unwatched_path_is_the_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"[1]")
    with open_bytes(path) as f:
        assert f.read() == b"[1]"
    assert file_size(path) == 3
    assert complete(path) == path  # at once


@pytest.mark.parametrize("layout", ["ndjson", "array", "wrapper", "csv"])
def test_a_read_following_a_download_gives_the_rows_of_a_read_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    # small blocks: the read parses many of them while the file is still arriving
    monkeypatch.setattr("webtask_frames._tables.blocks.BLOCK_BYTES", 4096)
    records = [{"id": i, "name": f"n{i}", "tags": ["a", "b"][: i % 3]} for i in range(3000)]
    if layout == "ndjson":
        body = "".join(f'{{"id": {r["id"]}, "name": "{r["name"]}"}}\n' for r in records)
    elif layout == "csv":
        body = "id,name\n" + "".join(f"{r['id']},{r['name']}\n" for r in records)
    else:
        import json

        body = json.dumps(records, indent=2)
        if layout == "wrapper":
            body = json.dumps({"source": "x", "companies": records}, indent=1)
    data = body.encode()
    ctype = {"ndjson": "application/x-ndjson", "csv": "text/csv"}.get(layout, "application/json")
    schema = {
        "type": "array",
        "items": {"type": "object", "properties": {"id": {"type": "integer"}}},
    }
    plan = layout_for(schema)
    reference = tmp_path / "whole"
    reference.write_bytes(data)
    expected = read_file(reference, ctype, layout=plan, collector=Collector(None)).table

    target = tmp_path / "r"
    with watching(Growing(target)) as growing:
        reader, out = in_thread(
            lambda: read_file(growing.path, ctype, layout=plan, collector=Collector(None))
        )
        writer = Writer(growing)
        for i in range(0, len(data), 7001):
            writer.write(data[i : i + 7001])
            time.sleep(0.001)
        seen = growing.bytes_read
        writer.finish()
        reader.join(30)
    assert len(out) == 1 and not isinstance(out[0], BaseException), out
    assert out[0].table.equals(expected)  # type: ignore[attr-defined]
    if layout in ("ndjson", "array"):
        assert seen > 4096  # blocks were read before the download ended


def _companies(n: int) -> list[dict[str, object]]:
    return [{"id": i, "name": f"n{i}", "tags": ["a", "b"][: i % 3]} for i in range(n)]


COMPANY = {"type": "object", "properties": {"id": {"type": "integer"}}}
# (document, schema's wrapper or None, record_path, whether the read that followed the
# download is the result; False: the finished file is read again)
WRAPPERS = {
    "typed": ({"source": "x", "companies": "ROWS"}, "companies", None, True),
    "untyped": ({"source": "x", "companies": "ROWS"}, None, None, True),
    # 20 KB after the array, within the last glance: reads stop short of it until the end
    "siblings-after": (
        {"companies": "ROWS", "count": 7, "src": {"a": "y" * 20_000}},
        "companies",
        None,
        True,
    ),
    "record-path": ({"meta": 1, "data": {"page": 2, "items": "ROWS"}}, None, "data.items", True),
    # the array's end is not in the last glance: the finished file is outlined
    "big-member-after": ({"companies": "ROWS", "note": "x" * 300_000}, "companies", None, False),
    # the head promised the only array of objects; the tail shows another
    "two-arrays-of-objects": ({"companies": "ROWS", "more": [{"a": 1}]}, None, None, False),
    # an element that is no object: the object itself is the row
    "not-objects": ({"source": "x", "companies": "ROWS", "extra": 1}, None, None, False),
}


@pytest.mark.parametrize("shape", list(WRAPPERS))
def test_a_wrapper_read_following_its_download_gives_the_rows_of_a_read_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    import json

    # small blocks, and a glance of 64 KiB: the read runs well ahead of the file's end
    monkeypatch.setattr("webtask_frames._tables.blocks.BLOCK_BYTES", 4096)
    monkeypatch.setattr("webtask_frames._tables.wrapper._GLANCE_BYTES", 64 << 10)
    monkeypatch.setattr("webtask_frames._tables.wrapper.MIN_BYTES", 64 << 10)
    monkeypatch.setattr("webtask_frames._tables.blocks._HEAD_BYTES", 16 << 10)
    document, wrapper, record_path, follows = WRAPPERS[shape]
    outcomes: list[object] = []
    real = wrapper_module._read_following

    def spied(*args: Any, **kwargs: Any) -> Any:
        outcomes.append(real(*args, **kwargs))
        return outcomes[-1]

    monkeypatch.setattr(wrapper_module, "_read_following", spied)
    rows: list[object] = list(_companies(6000))
    if shape == "not-objects":
        rows[4000] = 5
    text = json.dumps(document, indent=1).replace('"ROWS"', json.dumps(rows, indent=1))
    data = text.encode()
    layout = None
    if wrapper is not None:
        schema = {"type": "object", "properties": {wrapper: {"type": "array", "items": COMPANY}}}
        layout = layout_for(schema)
    reference = tmp_path / "whole.json"
    reference.write_bytes(data)
    expected = read_file(
        reference,
        "application/json",
        layout=layout,
        collector=Collector(None),
        record_path=record_path,
    )

    target = tmp_path / "r.json"
    with watching(Growing(target)) as growing:
        reader, out = in_thread(
            lambda: read_file(
                growing.path,
                "application/json",
                layout=layout,
                collector=Collector(None),
                record_path=record_path,
            )
        )
        writer = Writer(growing)
        for i in range(0, len(data), 8192):
            writer.write(data[i : i + 8192])
            time.sleep(0.0005)
        time.sleep(0.2)  # every byte written, the end not yet told: reads must stop short
        seen = growing.bytes_read
        writer.finish()
        reader.join(30)
    assert len(out) == 1 and not isinstance(out[0], BaseException), out
    result = out[0]
    assert result.table.equals(expected.table)  # type: ignore[attr-defined]
    assert result.n_records == expected.n_records  # type: ignore[attr-defined]
    assert len(outcomes) == 1 and (outcomes[0] is not wrapper_module._AGAIN) == follows
    if follows:
        assert seen > len(data) // 2  # most of the array was read before the end
