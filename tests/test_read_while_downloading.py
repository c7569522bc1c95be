"""A file result is read while it downloads (``_materialize`` over ``_tables.growing``):
the rows are those of a read after the download, whatever the transfer does: drops,
retries, an expired URL, a failure for good, a caller that leaves."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from mockapi import FILES_URL, ScriptedAPI, completed_body

from webtask_frames import (
    AsyncClient,
    DownloadError,
    ProtocolError,
    ResultReadError,
    RetryPolicy,
)
from webtask_frames import _materialize as materialize_module
from webtask_frames._materialize import materialize
from webtask_frames._tables import growing as growing_module
from webtask_frames._wire.models import Completed, parse_status

pytestmark = pytest.mark.skipif(not growing_module.OVERLAP, reason="reads follow with pread")

MakeClient = Callable[..., AsyncClient]

SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string", "minLength": 2}},
        "required": ["id"],
    },
}
RECORDS = [{"id": i, "name": "x" if i % 1000 == 0 else f"name {i}"} for i in range(20_000)]
BODY = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
INVALID = sum(1 for r in RECORDS if len(r["name"]) < 2)  # "x" is too short


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # blocks of 16 KiB: the read parses while the file is still arriving
    monkeypatch.setattr("webtask_frames._tables.blocks.BLOCK_BYTES", 16 << 10)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


class Spy(growing_module.Growing):
    made: ClassVar[list[Spy]] = []

    def __init__(self, target: Path) -> None:
        super().__init__(target)
        Spy.made.append(self)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[Spy]:
    Spy.made = []
    monkeypatch.setattr("webtask_frames._materialize.Growing", Spy)
    return Spy


def status(size: int = len(BODY), ctype: str = "application/x-ndjson", n: int = 1) -> Completed:
    body = completed_body(
        result={
            "type": "file",
            "file": {
                "url": f"{FILES_URL}/wt_1.ndjson?signature=s3cr3t&n={n}",
                "contentType": ctype,
                "sizeBytes": size,
                "expiresAt": "2099-01-01T00:00:00Z",
            },
        }
    )
    parsed = parse_status(body)
    assert isinstance(parsed, Completed)
    return parsed


async def dripped(data: bytes, *, until: Callable[[], bool] | None = None) -> AsyncIterator[bytes]:
    """``data`` in 8 KiB chunks; before the last one, wait (at most 10 s) for ``until``."""
    step = 8 << 10
    for i in range(0, len(data), step):
        if until is not None and i + step >= len(data):
            for _ in range(1000):
                if until():
                    break
                await asyncio.sleep(0.01)
        yield data[i : i + step]
        await asyncio.sleep(0)


async def dropped(data: bytes, at: int, *, until: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The first ``at`` bytes, then (once ``until``) a dropped connection."""
    async for chunk in dripped(data[:at]):
        yield chunk
    for _ in range(1000):
        if until():
            break
        await asyncio.sleep(0.01)
    raise httpx.ReadError("connection reset by peer")


def read_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "webtask-frames-read"]


def no_read_thread_left() -> bool:
    for _ in range(500):
        if not read_threads():
            return True
        threading.Event().wait(0.01)
    return False


def no_download_left() -> bool:
    """The temporary downloads deleted, once their deleting threads ended."""
    for thread in threading.enumerate():
        if thread.name == "webtask-frames-discard":
            thread.join(5)
    return os.listdir(tempfile.tempdir or "") == []


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def read(client: AsyncClient, st: Completed, **kwargs: Any) -> Any:
    kwargs.setdefault("validate", "flag")
    return run(materialize(client, st, output_schema=SCHEMA, **kwargs))


def test_the_read_starts_before_the_last_byte_and_gives_every_row(
    api: ScriptedAPI, make_client: MakeClient, spy: type[Spy]
) -> None:
    api.script(
        "file",
        lambda _: httpx.Response(
            200, content=dripped(BODY, until=lambda: Spy.made[0].bytes_read > 64 << 10)
        ),
    )
    m = read(make_client(), status())
    assert Spy.made[0].bytes_read > 64 << 10  # parsed blocks before the download ended
    assert m.table.num_rows == len(RECORDS)
    assert m.table.column("id").to_pylist() == [r["id"] for r in RECORDS]
    assert m.n_invalid == INVALID
    assert no_read_thread_left()
    assert no_download_left()  # the temporary download is gone


def test_the_rows_do_not_wait_for_the_temporary_download_to_be_deleted(
    api: ScriptedAPI, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Freeing a large file's blocks takes tens of milliseconds: on the loop it would
    # stall every other download of a batch, and the caller has its rows already.
    go_on = threading.Event()
    deleted: list[str] = []
    real_cleanup = tempfile.TemporaryDirectory.cleanup

    def slow_cleanup(self: tempfile.TemporaryDirectory[str]) -> None:
        go_on.wait(5)
        real_cleanup(self)
        deleted.append(self.name)

    monkeypatch.setattr(tempfile.TemporaryDirectory, "cleanup", slow_cleanup)
    api.script("file", httpx.Response(200, content=BODY))
    m = read(make_client(), status())
    assert m.table.num_rows == len(RECORDS)
    assert deleted == [] and os.listdir(tempfile.tempdir or "") != []  # not yet
    go_on.set()
    assert no_download_left()
    assert len(deleted) == 1


def test_a_connection_dropped_mid_file_is_read_again_from_the_next_attempt(
    api: ScriptedAPI, make_client: MakeClient, spy: type[Spy]
) -> None:
    half = len(BODY) // 2
    api.script(
        "file",
        lambda _: httpx.Response(
            200, content=dropped(BODY, half, until=lambda: Spy.made[0].bytes_read > 64 << 10)
        ),
        httpx.Response(200, content=BODY),
    )
    m = read(make_client(), status())
    assert api.count("file") == 2
    assert Spy.made[0].bytes_read > 64 << 10  # the first attempt's bytes were being read
    assert m.table.num_rows == len(RECORDS)
    assert m.n_invalid == INVALID  # not twice: the abandoned verdicts went
    assert m.table.column("_valid").to_pylist().count(False) == INVALID


def test_an_error_read_in_an_attempt_that_then_failed_is_not_the_outcome(
    api: ScriptedAPI, make_client: MakeClient, spy: type[Spy]
) -> None:
    garbage = b'{"id": 1}\n{"id": ]]]]\n' + b" " * (200 << 10)

    def reader_gone() -> bool:  # the read stopped on the garbage (or gave up)
        return bool(Spy.made) and not read_threads()

    api.script(
        "file",
        lambda _: httpx.Response(200, content=dropped(garbage, len(garbage), until=reader_gone)),
        httpx.Response(200, content=BODY),
    )
    m = read(make_client(), status())
    assert m.table.num_rows == len(RECORDS)
    assert api.count("file") == 2


def test_an_expired_url_before_the_first_byte_is_followed_on_the_fresh_one(
    api: ScriptedAPI, make_client: MakeClient, spy: type[Spy]
) -> None:
    fresh = completed_body(
        result={
            "type": "file",
            "file": {
                "url": f"{FILES_URL}/wt_1.ndjson?signature=fresh",
                "contentType": "application/x-ndjson",
                "sizeBytes": len(BODY),
                "expiresAt": "2099-01-01T00:00:00Z",
            },
        }
    )
    api.script("result", httpx.Response(200, json=fresh))
    api.script(
        "file",
        httpx.Response(403, text="expired"),
        lambda _: httpx.Response(
            200, content=dripped(BODY, until=lambda: Spy.made[0].bytes_read > 64 << 10)
        ),
    )
    m = read(make_client(), status())
    assert api.count("file") == 2 and api.count("result") == 1
    assert Spy.made[0].delivered  # the read followed the fresh URL's transfer
    assert m.table.num_rows == len(RECORDS) and m.n_invalid == INVALID


def test_a_download_that_fails_for_good_raises_its_error_and_stops_the_read(
    api: ScriptedAPI, make_client: MakeClient, spy: type[Spy]
) -> None:
    api.script(
        "file",
        lambda _: httpx.Response(
            200,
            content=dropped(BODY, len(BODY) // 2, until=lambda: Spy.made[-1].bytes_read > 0),
        ),
    )
    client = make_client(retry=RetryPolicy(max_attempts=2))
    with pytest.raises(Exception) as info:
        read(client, status())
    assert not isinstance(info.value, ResultReadError)  # the download's error, not a read's
    assert info.value.web_task_id == "wt_1"  # type: ignore[attr-defined]
    assert api.count("file") == 2
    assert no_read_thread_left()
    assert no_download_left()


def test_a_size_overflow_is_the_error_even_when_the_bytes_parse(
    api: ScriptedAPI, make_client: MakeClient, spy: type[Spy]
) -> None:
    api.script("file", httpx.Response(200, content=BODY + BODY))
    with pytest.raises(DownloadError) as info:
        read(make_client(), status())
    assert info.value.code == "size-overflow"
    assert no_read_thread_left()


def test_a_caller_that_leaves_mid_download_stops_the_read(
    api: ScriptedAPI, make_client: MakeClient, spy: type[Spy]
) -> None:
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield BODY[: 100 << 10]
        await never.wait()
        yield b""

    api.script("file", lambda _: httpx.Response(200, content=stalled()))

    async def go() -> None:
        task = asyncio.ensure_future(
            materialize(make_client(), status(), output_schema=SCHEMA, validate="flag")
        )
        for _ in range(1000):
            if Spy.made and Spy.made[0].bytes_read > 0:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go())
    assert Spy.made[0].bytes_read > 0
    assert no_read_thread_left()
    assert no_download_left()


def test_reads_waiting_for_bytes_do_not_starve_the_loops_executor(
    api: ScriptedAPI, make_client: MakeClient
) -> None:
    # Each transfer needs the loop's executor between chunks (as a host name lookup
    # does); with one executor thread, a read blocked in it would stall every download
    # until the minimum rate cut it off.
    async def needs_executor(data: bytes) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async for chunk in dripped(data):
            await loop.run_in_executor(None, lambda: None)
            yield chunk

    api.script("file", lambda _: httpx.Response(200, content=needs_executor(BODY)))

    async def go() -> list[int]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
        client = make_client()
        reads = [
            materialize(client, status(n=i), output_schema=SCHEMA, validate="off") for i in range(3)
        ]
        done = await asyncio.wait_for(asyncio.gather(*reads), 60)
        return [m.table.num_rows for m in done]

    assert run(go()) == [len(RECORDS)] * 3
    assert api.count("file") == 3  # no transfer stalled (cut off by the minimum rate)


def test_reads_parse_a_few_at_a_time_and_the_others_wait_their_turn(
    api: ScriptedAPI, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("webtask_frames._materialize._READS", threading.BoundedSemaphore(2))
    running, most = [0], [0]
    lock = threading.Lock()
    real = materialize_module.read_file

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr("webtask_frames._materialize.read_file", counted)
    api.script("file", lambda _: httpx.Response(200, content=dripped(BODY)))

    async def go() -> list[int]:
        client = make_client()
        reads = [
            materialize(client, status(n=i), output_schema=SCHEMA, validate="off") for i in range(5)
        ]
        return [m.table.num_rows for m in await asyncio.gather(*reads)]

    assert run(go()) == [len(RECORDS)] * 5
    assert most[0] == 2


def test_a_cached_result_is_complete_on_disk_and_read_from_there_next_time(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    api.script("file", lambda _: httpx.Response(200, content=dripped(BODY)))
    cache = tmp_path / "cache"
    first = read(make_client(), status(), cache_dir=cache)
    assert first.raw_path is not None and first.raw_path.read_bytes() == BODY
    assert [p.name for p in cache.iterdir()] == [first.raw_path.name]  # no .part left
    again = read(make_client(), status(), cache_dir=cache)
    assert api.count("file") == 1
    assert again.table.equals(first.table)


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("text/csv", b"id,name\n" + b"".join(b"%d,name %d\n" % (i, i) for i in range(20_000))),
        ("application/json", json.dumps(RECORDS, indent=2).encode()),
        (
            "application/json",
            json.dumps({"source": "s", "items": RECORDS}, separators=(",", ":")).encode(),
        ),
        ("application/octet-stream", BODY),
    ],
    ids=["csv", "array", "wrapper", "octet-stream"],
)
def test_every_format_reads_as_after_the_download(
    api: ScriptedAPI, make_client: MakeClient, ctype: str, body: bytes
) -> None:
    api.script("file", lambda _: httpx.Response(200, content=dripped(body)))
    m = read(make_client(), status(len(body), ctype))
    assert m.table.num_rows == len(RECORDS)
    assert m.table.column("id").to_pylist() == list(range(len(RECORDS)))


def test_an_invalid_file_is_a_read_error_carrying_the_task(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    bad = BODY[: len(BODY) // 2] + b'{"id": ]\n' + BODY[len(BODY) // 2 :]
    api.script("file", lambda _: httpx.Response(200, content=dripped(bad)))
    with pytest.raises(ProtocolError, match="not valid JSON") as info:
        read(make_client(), status(len(bad)), cache_dir=tmp_path / "c")
    assert info.value.web_task_id == "wt_1"
    assert "read_webtask_result('wt_1'" in str(info.value)
    assert (tmp_path / "c" / "wt_1.ndjson").read_bytes() == bad  # downloaded whole, cached
