"""Adversarial tests against hostile servers on 127.0.0.1 (see ``hostileserver``).

Every drip is scaled down so each test ends in about a second; timing assertions only
check that a stated deadline holds within 10%.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hostileserver import HostileServer, Reply, Request

import webtask_frames as wf
from webtask_frames import (
    AmbiguousSubmissionError,
    AsyncClient,
    DownloadError,
    ResultReadError,
    RetryPolicy,
    TaskError,
    TransportError,
    WaitTimeoutError,
    WebTaskError,
)
from webtask_frames._redact import register_secret
from webtask_frames._wire.models import parse_status

CANARY = "canary-hostile-5e1f0c9a7b3d"
SIGNED = "sig-hostile-0badc0ffee"
WS = "ws-hostile"


def completed(wt: str, result: dict[str, Any], cost: Any = 0.01) -> dict[str, Any]:
    return {
        "webTaskId": wt,
        "status": "completed",
        "outcome": "success",
        "createdAt": "2026-05-19T12:00:00Z",
        "cost": {"aiUsd": cost},
        "result": result,
    }


def file_result(url: str, size: int | None, content_type: str = "application/json") -> dict:
    file: dict[str, Any] = {"url": url, "contentType": content_type}
    if size is not None:
        file["sizeBytes"] = size
    return {"type": "file", "file": file}


def client_for(srv: HostileServer, **retry: Any) -> AsyncClient:
    retry.setdefault("max_attempts", 2)
    retry.setdefault("backoff_base_s", 0.01)
    return AsyncClient(
        api_key=CANARY,
        workspace_id=WS,
        base_url=f"{srv.url}/api",
        poll_min_s=0.05,
        poll_max_s=0.1,
        retry=RetryPolicy(**retry),
    )


def sync_client(srv: HostileServer, **retry: Any) -> wf.Client:
    retry.setdefault("max_attempts", 2)
    retry.setdefault("backoff_base_s", 0.01)
    return wf.Client(
        api_key=CANARY,
        workspace_id=WS,
        base_url=f"{srv.url}/api",
        poll_min_s=0.05,
        poll_max_s=0.1,
        retry=RetryPolicy(**retry),
    )


def timed(fn: Any) -> tuple[float, BaseException | None]:
    began = time.monotonic()
    try:
        fn()
    except BaseException as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


def run_timed(client: AsyncClient, call: Any) -> tuple[float, BaseException | None]:
    """Run ``call(client)`` on a fresh loop; the seconds the call itself took."""
    out: list[Any] = []

    async def go() -> None:
        async with client:
            out.extend(await _atimed(call(client)))

    asyncio.run(go())
    return out[0], out[1]


async def _atimed(awaitable: Any) -> tuple[float, BaseException | None]:
    began = time.monotonic()
    try:
        await awaitable
    except Exception as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


# -- total deadlines --------------------------------------------------------------------


def test_read_webtask_timeout_is_total_against_a_dripping_result_body() -> None:
    def handler(req: Request) -> Reply:
        if req.path.endswith("/start"):
            return Reply.json(200, {"webTaskId": "wt_drip"})
        return Reply(200, b'{"webTaskId": "wt_drip", "status": "' + b"x" * 10_000, drip=(1, 0.02))

    with HostileServer(handler) as srv, sync_client(srv, slow_grace_s=60) as client:
        elapsed, exc = timed(lambda: wf.read_webtask("t", client=client, timeout=1.0))
    assert isinstance(exc, WaitTimeoutError)
    assert exc.web_task_id == "wt_drip" and "read_webtask_result" in str(exc)
    assert elapsed <= 1.0 * 1.1


def test_a_server_that_never_sends_headers_is_cut_at_the_retry_deadline() -> None:
    with HostileServer(lambda req: Reply(no_headers=True)) as srv:
        client = client_for(srv, deadline_s=1.0, max_attempts=5)

        elapsed, exc = run_timed(client, lambda c: c.result("wt_1"))
    assert isinstance(exc, TransportError) and exc.web_task_id == "wt_1"
    assert elapsed <= 1.0 * 1.1


def test_a_start_body_dripped_slowly_ends_at_the_start_timeout_as_ambiguous() -> None:
    body = json.dumps({"webTaskId": "wt_slow"}).encode()
    with HostileServer(lambda req: Reply(200, body, drip=(1, 0.05))) as srv:
        client = client_for(srv, slow_grace_s=60)

        elapsed, exc = run_timed(client, lambda c: c.start_body({"task": "t"}, timeout=0.8))
    assert isinstance(exc, AmbiguousSubmissionError)
    assert srv.count("/start") == 1  # never resent
    assert elapsed <= 0.8 * 1.1


def test_a_dripped_file_is_cut_by_the_minimum_rate_within_the_download_timeout(
    tmp_path: Path,
) -> None:
    def handler(req: Request) -> Reply:
        return Reply(200, b"[" + b"1," * 25 + b"1]", drip=(1, 0.05))

    with HostileServer(handler) as srv:
        client = client_for(srv, min_bytes_per_s=100, slow_grace_s=0.2, max_attempts=1)
        file = wf.FileResult(
            url=f"{srv.url}/f.json?sig={SIGNED}",
            content_type="application/json",
            size_bytes=52,
            expires_at=None,
            web_task_id="wt_f",
        )

        elapsed, exc = run_timed(
            client, lambda c: c.download(file, tmp_path / "r.json", timeout=2.0)
        )
    assert isinstance(exc, TransportError) and exc.web_task_id == "wt_f"
    assert elapsed <= 2.0 * 1.1
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


def test_wait_timeout_covers_the_poll_requests_themselves() -> None:
    with HostileServer(lambda req: Reply(no_headers=True)) as srv:
        client = client_for(srv)

        elapsed, exc = run_timed(client, lambda c: c.wait("wt_1", timeout=0.7))
    assert isinstance(exc, WaitTimeoutError) and exc.web_task_id == "wt_1"
    assert elapsed <= 0.7 * 1.1


# -- downloads that do not stop ---------------------------------------------------------


@pytest.mark.parametrize("advertised", [1000, None])
def test_an_overflowing_file_stops_at_the_size_and_is_not_retried(
    tmp_path: Path, advertised: int | None
) -> None:
    with HostileServer(lambda req: Reply(200, b"x" * 65536, forever=True)) as srv:
        client = client_for(srv, max_attempts=5, max_download_bytes=4096)
        file = wf.FileResult(
            url=f"{srv.url}/f.json?sig={SIGNED}",
            content_type="application/json",
            size_bytes=advertised if advertised is not None else -1,
            expires_at=None,
            web_task_id="wt_big",
        )

        _, exc = run_timed(client, lambda c: c.download(file, tmp_path / "r.json"))
        assert srv.count("/f.json") == 1
    assert isinstance(exc, DownloadError) and exc.code == "size-overflow"
    limit = advertised if advertised is not None else 4096
    assert client.counts.download_bytes <= limit + 64 * 1024
    assert list(tmp_path.iterdir()) == []


_EXIT_MID_READ = """
import functools, os, sys, time
from webtask_frames import AsyncClient
from webtask_frames._materialize import _read_file_result
from webtask_frames._tables.readers import read_file
from webtask_frames._tables.validate import Collector
from webtask_frames._wire.models import FileResult
from webtask_frames._wire.portal import submit

file = FileResult(url=sys.argv[1], content_type="application/json", size_bytes=100_000,
                  expires_at=None, web_task_id="wt_exit")
collector = Collector(None)
read = functools.partial(read_file, content_type="application/json", layout=None,
                         collector=collector)

async def go():
    async with AsyncClient(api_key="k", workspace_id="w", base_url="http://127.0.0.1:9") as c:
        return await _read_file_result(c, file, "wt_exit", read, collector, None)

def downloading():  # a partial file in the read's temporary folder
    return any(os.listdir(e.path) for e in os.scandir(os.environ["TMPDIR"]) if e.is_dir())

submit(go())  # on the sync facade's loop thread, as read_webtask runs
for _ in range(1000):
    if downloading():
        break
    time.sleep(0.01)
print("downloading" if downloading() else "no download", flush=True)
"""  # and the program ends, the read still waiting for bytes


def test_a_program_that_ends_mid_read_leaves_no_download_behind(tmp_path: Path) -> None:
    # At exit the loop is stopped under the read, which never reaches its own cleanup:
    # the temporary folder's exit hook deletes it (a download can be gigabytes).
    stalled = Reply(200, b"[" + b" " * 99_999, drip=(100, 30.0), length=100_000)
    with HostileServer(lambda req: stalled) as srv:
        done = subprocess.run(
            [sys.executable, "-c", _EXIT_MID_READ, f"{srv.url}/r.json?sig={SIGNED}"],
            env={**os.environ, "TMPDIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.stdout.strip() == "downloading", done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_disk_check_happens_before_the_download(tmp_path: Path) -> None:
    with HostileServer(lambda req: Reply(200, b"[]")) as srv:
        client = client_for(srv)
        file = wf.FileResult(
            url=f"{srv.url}/f.json?sig={SIGNED}",
            content_type="application/json",
            size_bytes=1 << 60,
            expires_at=None,
            web_task_id="wt_huge",
        )

        _, exc = run_timed(client, lambda c: c.download(file, tmp_path / "r.json"))
        assert srv.requests == []
    assert isinstance(exc, DownloadError) and exc.code == "disk-full"
    assert exc.web_task_id == "wt_huge"


# -- a paid task never ends in a bare Python error ---------------------------------------


def serve_file(body: bytes, content_type: str = "application/json", cost: Any = 0.25) -> Any:
    def handler(req: Request) -> Reply:
        if req.path.endswith("/start"):
            return Reply.json(200, {"webTaskId": "wt_paid"})
        if "/result" in req.path:
            url = f"http://{req.headers['host']}/files/r?sig={SIGNED}"
            result = file_result(url, len(body), content_type)
            return Reply.json(200, completed("wt_paid", result, cost))
        return Reply(200, body, {"content-type": content_type})

    return handler


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


@pytest.mark.parametrize(
    ("body", "kwargs"),
    [
        (b'[{"a": 1}, {"a": 2', {}),  # invalid halfway
        (b'[{"a": 1}] trailing garbage', {}),
        (gzip.compress(b'[{"a": 1}]'), {}),  # gzip bytes sent as plain JSON
        (deep(100_000), {}),
        (b'{"items": [{"a": 1}]}', {"record_path": "nothing.here"}),
    ],
    ids=["invalid-json", "trailing-garbage", "gzip", "deep", "record-path"],
)
def test_every_failure_after_a_start_carries_the_task_id(body: bytes, kwargs: Any) -> None:
    with HostileServer(serve_file(body)) as srv, sync_client(srv) as client:
        _, exc = timed(lambda: wf.read_webtask("t", client=client, **kwargs))
    assert isinstance(exc, WebTaskError), repr(exc)
    assert exc.web_task_id == "wt_paid"
    assert "read_webtask_result('wt_paid'" in str(exc)
    if isinstance(exc, ResultReadError):
        assert exc.cost_usd == 0.25


def test_ctrl_c_during_read_webtask_prints_the_task_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    interrupted = threading.Event()

    def handler(req: Request) -> Reply:
        if req.path.endswith("/start"):
            return Reply.json(200, {"webTaskId": "wt_ctrl_c"})
        if not interrupted.is_set():
            interrupted.set()
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: wakes the blocked main thread
        return Reply.json(200, {"webTaskId": "wt_ctrl_c", "status": "started"})

    with (
        HostileServer(handler) as srv,
        sync_client(srv) as client,
        pytest.raises(KeyboardInterrupt) as info,
    ):
        wf.read_webtask("t", client=client, timeout=5)
    assert "wt_ctrl_c" in "".join(getattr(info.value, "__notes__", []))
    assert "read_webtask_result('wt_ctrl_c')" in capsys.readouterr().err


# -- the canary key echoed everywhere ----------------------------------------------------


def echo_everything(status: int) -> Reply:
    url = f"https://files.example/r?sig={SIGNED}"
    payload = {
        "code": f"code-{CANARY}",
        "category": f"cat-{CANARY}",
        "message": f"msg {CANARY} {url}",
        "retirable": False,
        "details": {"k": [CANARY, url]},
        "correlationId": f"corr-{CANARY}",
    }
    return Reply.json(status, payload, headers={"x-correlation-id": f"hdr-{CANARY}"})


def leaks(text: str) -> list[str]:
    return [s for s in (CANARY, SIGNED, CANARY[:12]) if s in text]


@pytest.mark.parametrize("status", [400, 401, 404, 500])
def test_a_canary_echoed_in_every_error_field_appears_nowhere(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with HostileServer(lambda req: echo_everything(status)) as srv:
        client = client_for(srv, max_attempts=1)

        _, exc = run_timed(client, lambda c: c.result("wt_1"))
    assert isinstance(exc, WebTaskError)
    texts = [str(exc), repr(exc), repr(vars(exc)), caplog.text]
    texts.append(pickle.dumps(exc).decode("latin-1"))
    texts.append(repr(pickle.loads(pickle.dumps(exc)).__dict__))
    assert leaks("\n".join(texts)) == []


def test_a_non_json_error_body_straddling_the_cut_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = ("x" * 190 + CANARY + " tail").encode()
    with HostileServer(lambda req: Reply(400, body, {"content-type": "text/plain"})) as srv:
        client = client_for(srv, max_attempts=1)

        _, exc = run_timed(client, lambda c: c.result("wt_1"))
    assert isinstance(exc, WebTaskError)
    blob = "\n".join([str(exc), pickle.dumps(exc).decode("latin-1"), caplog.text])
    assert leaks(blob) == [] and CANARY[:4] not in str(exc)


def test_the_debug_log_of_a_redirected_download_hides_the_signed_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def handler(req: Request) -> Reply:
        if req.path.startswith("/moved"):
            return Reply(302, b"", {"location": f"/files/r?sig={SIGNED}2"})
        return Reply(200, b"[]", {"content-type": "application/json"})

    with HostileServer(handler) as srv:
        client = client_for(srv)
        file = wf.FileResult(
            url=f"{srv.url}/moved?sig={SIGNED}",
            content_type="application/json",
            size_bytes=2,
            expires_at=None,
            web_task_id="wt_r",
        )

        _, exc = run_timed(client, lambda c: c.download(file, tmp_path / "r.json"))
    assert exc is None
    # both requests were logged (the second one's URL comes from the redirect's Location)
    assert "/moved?" in caplog.text and "/files/r?" in caplog.text
    assert leaks(caplog.text) == []


def test_a_canary_echoed_by_start_reaches_no_ledger_duckdb_parquet_or_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import duckdb
    import pyarrow.parquet as pq

    caplog.set_level(logging.DEBUG)
    with HostileServer(lambda req: echo_everything(400)) as srv:
        ledger = tmp_path / "sweep.db"
        with sync_client(srv, max_attempts=1) as client:
            result = wf.run_batch(
                "t", {"n": [1, 2]}, client=client, ledger=str(ledger), progress=False
            )
    result.to_duckdb(tmp_path / "out.duckdb", "rows")
    result.to_parquet(tmp_path / "rows.parquet")
    con = duckdb.connect(str(tmp_path / "out.duckdb"))
    dumped = repr(con.execute("SELECT * FROM rows_tasks").fetchall())
    con.close()
    blob = "\n".join(
        [
            caplog.text,
            dumped,
            repr(result.tasks.to_dict()),
            repr(pq.read_table(tmp_path / "rows.parquet").to_pylist()),
            ledger.read_bytes().decode("latin-1"),
            *(p.read_bytes().decode("latin-1") for p in tmp_path.glob("sweep.db*") if p.is_file()),
        ]
    )
    tasks = repr(result.tasks.to_dict())
    assert "msg" in tasks or "HTTP 400" in tasks  # the error is reported, scrubbed
    assert dumped == "[]"  # a refused start created no task: nothing billed to land
    assert leaks(blob) == []


# -- hostile costs -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1e308, float("nan"), float("inf"), "lots"])
def test_a_hostile_cost_does_not_defeat_the_budget(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    lock = threading.Lock()
    started: list[str] = []

    def handler(req: Request) -> Reply:
        if req.path.endswith("/start"):
            with lock:
                started.append(f"wt_{len(started)}")
                return Reply.json(200, {"webTaskId": started[-1]})
        wt = req.path.split("/")[-2]
        cost = 0.02 if wt == "wt_0" else bad
        body = completed(wt, {"type": "inline", "data": [{"a": 1}]}, cost)
        return Reply(200, json.dumps(body).encode(), {"content-type": "application/json"})

    with HostileServer(handler) as srv, sync_client(srv) as client:
        result = wf.run_batch(
            "t", {"n": list(range(20))}, client=client, max_cost_usd=0.05, progress=False
        )
    assert len(started) <= 3
    assert result.cost_usd == result.cost_usd  # never NaN
    assert "skipped" in set(result.tasks["status"].astype(str))


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
def test_a_task_error_pickles_and_prints_its_status_without_the_canary(outcome: str) -> None:
    """``TaskError.status`` keeps the server's body: an echoed key or signed URL in it must
    not ride along in the exception's pickle or repr; the id, outcome and code stay."""
    register_secret(CANARY)
    url = f"https://files.example/r?sig={SIGNED}"
    body: dict[str, Any] = {
        "webTaskId": "wt_echo",
        "status": "completed" if outcome == "failed" else "canceled",
        "outcome": "failed",
        "error": {"code": "timeout", "message": f"msg {CANARY} {url}"},
        "cost": {"aiUsd": 0.01, "note": CANARY},
        "echo": {"key": CANARY, "url": url, "deep": [[{"k": CANARY}]]},
    }
    if outcome == "canceled":
        del body["outcome"], body["error"]
    status = parse_status(body)
    with pytest.raises(TaskError) as info:
        status.raise_for_outcome()
    exc = info.value
    again = pickle.loads(pickle.dumps(exc))
    texts = [str(exc), repr(exc), repr(vars(exc)), pickle.dumps(exc).decode("latin-1")]
    texts += [repr(again.status), repr(again.status.raw), repr(vars(again))]
    assert leaks("\n".join(texts)) == []
    assert again.status.web_task_id == "wt_echo" and again.web_task_id == "wt_echo"
    if outcome == "failed":
        assert again.status.outcome == "failed" and again.code == "timeout"
        assert again.status.error.code == "timeout"


@pytest.mark.parametrize("status", [400, 401, 500])
def test_a_canary_echoed_in_every_error_field_never_reaches_the_cli_output(
    status: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from webtask_frames.cli import main

    caplog.set_level(logging.DEBUG)
    with HostileServer(lambda req: echo_everything(status)) as srv:
        monkeypatch.setenv("INTUNED_BASE_URL", f"{srv.url}/api")
        monkeypatch.setenv("INTUNED_API_KEY", CANARY)
        monkeypatch.setenv("INTUNED_WORKSPACE_ID", WS)
        code = main(["run", "List companies", "--out", str(tmp_path / "rows.parquet")])
    out = capsys.readouterr()
    assert code != 0
    assert out.err.strip()  # the failure is reported...
    assert leaks("\n".join([out.out, out.err, caplog.text])) == []  # ...without the secret
    assert not (tmp_path / "rows.parquet").exists()
