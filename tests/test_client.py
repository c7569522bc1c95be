"""AsyncClient and Client against a scripted transport: retries, waiting, downloads."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from mockapi import API_KEY, BASE_URL, FILES_URL, WORKSPACE, ScriptedAPI, completed_body, error_body

from webtask_frames import (
    AmbiguousSubmissionError,
    AsyncClient,
    AuthenticationError,
    Client,
    Completed,
    DownloadError,
    InvalidInputError,
    NotFoundError,
    Pending,
    ResultExpiredError,
    RetryPolicy,
    ServerError,
    Started,
    TaskCanceledError,
    TaskFailedError,
    TransportError,
    WaitTimeoutError,
)

MakeClient = Callable[..., AsyncClient]
PENDING = {"webTaskId": "wt_1", "status": "pending", "createdAt": "2026-05-19T12:00:00Z"}
STARTED = {**PENDING, "status": "started", "startedAt": "2026-05-19T12:00:05Z"}
STARTED_OK = httpx.Response(200, json={"webTaskId": "wt_1", "status": "pending"})


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


# -- start ------------------------------------------------------------------------------


def test_start_sends_key_and_camel_case_body(api: ScriptedAPI, make_client: MakeClient) -> None:
    api.script("start", STARTED_OK)
    client = make_client()
    assert run(client.start("Scrape", parameters={"batch": "S24"}, reuse_key="yc")) == "wt_1"
    (request,) = api.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/{WORKSPACE}/web-tasks/start"
    assert request.headers["x-api-key"] == API_KEY
    assert request.read() == b'{"task":"Scrape","parameters":{"batch":"S24"},"reuseKey":"yc"}'


def test_invalid_input_sends_nothing(api: ScriptedAPI, make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(InvalidInputError, match="model"):
        run(client.start("t", model="gpt"))
    with pytest.raises(InvalidInputError, match="parameters"):
        run(client.start("t", parameters={"s": {1, 2}}))
    assert api.requests == []


@pytest.mark.parametrize("status", [429, 503])
def test_start_resends_after_unaccepted_status(
    api: ScriptedAPI, make_client: MakeClient, sleeps: list[float], status: int
) -> None:
    api.script(
        "start",
        httpx.Response(status, headers={"retry-after": "0"}, json=error_body(status, "busy")),
        STARTED_OK,
    )
    assert run(make_client().start("t")) == "wt_1"
    assert api.count("start") == 2
    assert sleeps == [pytest.approx(0.1)]  # Retry-After: 0 clamped, not a busy loop


def test_start_resends_after_connect_error(api: ScriptedAPI, make_client: MakeClient) -> None:
    api.script("start", httpx.ConnectError("refused"), httpx.ConnectTimeout("t/o"), STARTED_OK)
    assert run(make_client().start("t")) == "wt_1"
    assert api.count("start") == 3


@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(500, json=error_body(500, "internal")),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(504, text="gateway timeout"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
    ],
    ids=["500", "502", "504", "read-timeout", "dropped", "reset"],
)
def test_ambiguous_start_is_never_resent(
    api: ScriptedAPI, make_client: MakeClient, fault: httpx.Response | Exception
) -> None:
    api.script("start", fault, STARTED_OK)
    with pytest.raises(AmbiguousSubmissionError) as info:
        run(make_client().start("Scrape", reuse_key="yc_S24", parameters={"b": 1}))
    assert api.count("start") == 1
    exc = info.value
    assert exc.request_body == {"task": "Scrape", "parameters": {"b": 1}, "reuseKey": "yc_S24"}
    assert exc.reuse_key == "yc_S24"
    assert exc.sent_at is not None
    assert not exc.retryable


def test_start_gives_up_after_max_attempts(api: ScriptedAPI, make_client: MakeClient) -> None:
    api.script("start", httpx.Response(503, json=error_body(503, "unavailable")))
    with pytest.raises(ServerError) as info:
        run(make_client(retry=RetryPolicy(max_attempts=4)).start("t"))
    assert api.count("start") == 4
    assert info.value.attempts == 4


def test_start_401_stops_immediately(api: ScriptedAPI, make_client: MakeClient) -> None:
    api.script("start", httpx.Response(401, json=error_body(401, "unauthorized")))
    with pytest.raises(AuthenticationError, match="INTUNED_API_KEY") as info:
        run(make_client().start("t"))
    assert api.count("start") == 1
    assert info.value.correlation_id == "corr-401"


# -- result -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(429, headers={"retry-after": "1"}),
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(504),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["429", "500", "502", "503", "504", "connect", "read-timeout", "dropped"],
)
def test_result_retries_transient_faults(
    api: ScriptedAPI, make_client: MakeClient, fault: httpx.Response | Exception
) -> None:
    api.script("result", fault, fault, httpx.Response(200, json=completed_body()))
    status = run(make_client().result("wt_1"))
    assert isinstance(status, Completed)
    assert api.count("result") == 3


def test_result_attempts_match_policy_exactly(
    api: ScriptedAPI, make_client: MakeClient, sleeps: list[float]
) -> None:
    api.script("result", httpx.ReadTimeout("slow"))
    with pytest.raises(TransportError) as info:
        run(make_client(retry=RetryPolicy(max_attempts=5)).result("wt_1"))
    assert api.count("result") == 5
    assert len(sleeps) == 4
    assert info.value.attempts == 5
    assert all(0 <= s <= min(20.0, 0.5 * 2**i) for i, s in enumerate(sleeps))


def test_result_retry_deadline(api: ScriptedAPI, make_client: MakeClient) -> None:
    api.script("result", httpx.Response(429, headers={"retry-after": "30"}))
    policy = RetryPolicy(max_attempts=100, deadline_s=100)
    with pytest.raises(Exception, match="Rate limited"):
        run(make_client(retry=policy).result("wt_1"))
    assert api.count("result") == 4  # waits of 30 s: the 4th would pass the 100 s deadline


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (404, NotFoundError)])
def test_result_final_errors(
    api: ScriptedAPI, make_client: MakeClient, status: int, error: type[Exception]
) -> None:
    api.script("result", httpx.Response(status, json=error_body(status, "x")))
    with pytest.raises(error):
        run(make_client().result("wt_1"))
    assert api.count("result") == 1


def test_result_rejects_bad_ids_before_sending(api: ScriptedAPI, make_client: MakeClient) -> None:
    with pytest.raises(InvalidInputError, match="web_task_id"):
        run(make_client().result("../other"))
    assert api.requests == []


# -- wait and run -----------------------------------------------------------------------


def test_wait_backs_off_to_a_terminal_state(
    api: ScriptedAPI, make_client: MakeClient, sleeps: list[float]
) -> None:
    steps = [httpx.Response(200, json=PENDING)] + [httpx.Response(200, json=STARTED)] * 8
    api.script("result", *steps, httpx.Response(200, json=completed_body()))
    client = make_client(poll_min_s=1.0, poll_max_s=5.0)
    status = run(client.wait("wt_1"))
    assert isinstance(status, Completed)
    assert api.count("result") == 10
    assert sleeps[0] == pytest.approx(1.0, rel=0.11)
    assert all(b >= a * 0.9 for a, b in itertools.pairwise(sleeps))
    assert max(sleeps) <= 5.0
    assert sleeps[-1] == pytest.approx(5.0, rel=0.11)


def test_wait_deadline_carries_the_id(api: ScriptedAPI, make_client: MakeClient) -> None:
    api.script("result", httpx.Response(200, json=STARTED))
    with pytest.raises(WaitTimeoutError) as info:
        run(make_client(poll_min_s=1, poll_max_s=2).wait("wt_1", timeout=10))
    assert info.value.web_task_id == "wt_1"
    assert info.value.last_status == "started"
    assert "wait('wt_1')" in str(info.value)
    assert 5 <= api.count("result") <= 12


def test_wait_has_a_finite_default_deadline(make_client: MakeClient) -> None:
    assert make_client().poll.timeout_s < float("inf")


def test_run_returns_completed_and_parses_everything(
    api: ScriptedAPI, make_client: MakeClient, sleeps: list[float]
) -> None:
    api.script("start", STARTED_OK)
    api.script("result", httpx.Response(200, json={**completed_body(), "newField": 1}))
    status = run(make_client().run("t"))
    assert isinstance(status, Completed)
    assert status.cost.ai_usd == 0.42
    assert status.cost.compute_hours == 0.023
    assert status.reuse is not None and status.reuse.created
    assert status.completed_at is not None and status.completed_at.tzinfo is not None
    assert status.duration_s == 55.0
    assert status.extra == {"newField": 1}
    assert len(sleeps) == 1  # the first poll waits: a fresh task is never already done


def test_run_raises_on_failed_and_canceled(api: ScriptedAPI, make_client: MakeClient) -> None:
    failed = completed_body(
        outcome="failed",
        result=None,
        error={"code": "timeout", "message": "too slow"},
        cost={"aiUsd": 0.1},
    )
    api.script("start", STARTED_OK)
    api.script("result", httpx.Response(200, json=failed))
    with pytest.raises(TaskFailedError) as info:
        run(make_client().run("t"))
    assert (info.value.code, info.value.web_task_id, info.value.cost_usd) == (
        "timeout",
        "wt_1",
        0.1,
    )
    assert not info.value.retryable
    canceled = {
        **PENDING,
        "status": "canceled",
        "startedAt": None,
        "completedAt": PENDING["createdAt"],
    }
    api.script("result", httpx.Response(200, json=canceled))
    with pytest.raises(TaskCanceledError):
        run(make_client().run("t"))
    status = run(make_client().run("t", check=False))
    assert status.status == "canceled"


def test_unknown_fields_and_partial_blocks_parse(api: ScriptedAPI, make_client: MakeClient) -> None:
    body = completed_body(reuse={"key": "k", "used": True, "updated": False}, cost={})
    api.script("result", httpx.Response(200, json=body))
    status = run(make_client().result("wt_1"))
    assert isinstance(status, Completed)
    assert status.reuse is not None and status.reuse.created is None
    assert status.cost.ai_usd is None


def test_pending_and_started_statuses(api: ScriptedAPI, make_client: MakeClient) -> None:
    api.script("result", httpx.Response(200, json=PENDING), httpx.Response(200, json=STARTED))
    client = make_client()
    assert isinstance(run(client.result("wt_1")), Pending)
    started = run(client.result("wt_1"))
    assert isinstance(started, Started) and started.started_at is not None


# -- download ---------------------------------------------------------------------------


def file_status(url: str = f"{FILES_URL}/wt_1.json?signature=s3cr3t&expires=9", size: int = 11):
    return completed_body(
        result={
            "type": "file",
            "file": {
                "url": url,
                "contentType": "application/json",
                "sizeBytes": size,
                "expiresAt": "2099-01-01T00:00:00Z",
            },
        }
    )


def test_download_streams_without_credentials(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    api.script("result", httpx.Response(200, json=file_status()))
    api.script("file", httpx.Response(200, content=b'[{"a": 1}]\n'))
    client = make_client()

    async def go() -> Path:
        status = await client.result("wt_1")
        return await client.download(status, tmp_path / "out" / "r.json")

    path = run(go())
    assert path.read_bytes() == b'[{"a": 1}]\n'
    file_request = api.requests[-1]
    assert file_request.url.host == "files.test"
    assert "x-api-key" not in file_request.headers
    assert "authorization" not in file_request.headers
    assert list((tmp_path / "out").iterdir()) == [path]  # no temporary file left behind


def test_download_size_mismatch_retries_then_fails(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    api.script("result", httpx.Response(200, json=file_status()))
    api.script("file", httpx.Response(200, content=b"[{"))
    client = make_client(retry=RetryPolicy(max_attempts=3))

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    with pytest.raises(DownloadError, match="advertised 11") as info:
        run(go())
    assert info.value.code == "size-mismatch"
    assert api.count("file") == 3
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_download_retries_transient_faults_through_the_policy(
    api: ScriptedAPI,
    make_client: MakeClient,
    sleeps: list[float],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="webtask_frames")
    api.script("result", httpx.Response(200, json=file_status()))
    api.script(
        "file",
        httpx.Response(503, text="slow down"),
        httpx.ReadError("connection reset"),
        httpx.Response(200, content=b'[{"a": 1}]\n'),
    )
    client = make_client()

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    assert run(go()).read_bytes() == b'[{"a": 1}]\n'
    assert api.count("file") == 3
    assert client.counts.download == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= min(20.0, 0.5 * 2**i) for i, s in enumerate(sleeps))
    messages = [r.getMessage() for r in caplog.records]
    assert any("retrying" in m and "files.test/results/wt_1.json?<redacted>" in m for m in messages)
    assert not any("s3cr3t" in m for m in messages)
    assert list(tmp_path.iterdir()) == [tmp_path / "r.json"]


def test_download_transport_errors_exhaust_the_attempts(
    api: ScriptedAPI, make_client: MakeClient, sleeps: list[float], tmp_path: Path
) -> None:
    api.script("result", httpx.Response(200, json=file_status()))
    api.script("file", httpx.ReadTimeout("slow"))
    client = make_client(retry=RetryPolicy(max_attempts=4))

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    with pytest.raises(TransportError) as info:
        run(go())
    assert api.count("file") == 4
    assert len(sleeps) == 3
    assert info.value.attempts == 4
    assert "s3cr3t" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_deadline_bounds_retries(
    api: ScriptedAPI, make_client: MakeClient, sleeps: list[float], tmp_path: Path
) -> None:
    api.script("result", httpx.Response(200, json=file_status()))
    api.script("file", httpx.Response(502))
    policy = RetryPolicy(max_attempts=1000, backoff_base_s=10, backoff_cap_s=10, deadline_s=60)
    client = make_client(retry=policy)

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    with pytest.raises(DownloadError) as info:
        run(go())
    assert info.value.code == "http-502"
    assert sum(sleeps) <= 60
    assert api.count("file") == len(sleeps) + 1 < 1000


def test_download_404_is_not_retried(
    api: ScriptedAPI, make_client: MakeClient, sleeps: list[float], tmp_path: Path
) -> None:
    api.script("result", httpx.Response(200, json=file_status()))
    api.script("file", httpx.Response(404))
    client = make_client()

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    with pytest.raises(DownloadError) as info:
        run(go())
    assert (info.value.code, info.value.retryable) == ("http-404", False)
    assert api.count("file") == 1
    assert api.count("result") == 1  # not an expiry: no refresh either
    assert sleeps == []


def test_expired_url_refreshes_once_never_starts_a_task(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    fresh = f"{FILES_URL}/wt_1.json?signature=fresh"
    api.script(
        "result",
        httpx.Response(200, json=file_status()),
        httpx.Response(200, json=file_status(fresh)),
    )
    api.script(
        "file",
        httpx.Response(403, text="<Error>Request has expired</Error>"),
        httpx.Response(200, content=b'[{"a": 1}]\n'),
    )
    client = make_client()

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    assert run(go()).read_bytes() == b'[{"a": 1}]\n'
    assert api.count("result") == 2
    assert api.count("start") == 0
    assert api.requests[-1].url.params["signature"] == "fresh"


def test_expired_twice_raises(api: ScriptedAPI, make_client: MakeClient, tmp_path: Path) -> None:
    api.script("result", httpx.Response(200, json=file_status()))
    api.script("file", httpx.Response(403))
    client = make_client()

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    with pytest.raises(ResultExpiredError):
        run(go())
    assert api.count("result") == 2
    assert api.count("file") == 2


def test_download_refuses_plain_http_signed_urls(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    api.script("result", httpx.Response(200, json=file_status("http://files.test/x?sig=1")))
    client = make_client()

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    with pytest.raises(DownloadError, match="https") as info:
        run(go())
    assert "sig=1" not in str(info.value)
    assert api.count("file") == 0


def test_download_inline_result_is_an_input_error(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    api.script("result", httpx.Response(200, json=completed_body()))
    client = make_client()

    async def go() -> Path:
        return await client.download(await client.result("wt_1"), tmp_path / "r.json")

    with pytest.raises(InvalidInputError, match="inline"):
        run(go())


# -- sync facade ------------------------------------------------------------------------


def sync_client(api: ScriptedAPI) -> Client:
    return Client(
        api_key=API_KEY,
        workspace_id=WORKSPACE,
        base_url=BASE_URL,
        transport=httpx.MockTransport(api),
        poll_min_s=0.001,
        poll_max_s=0.002,
    )


def test_sync_client_runs(api: ScriptedAPI) -> None:
    api.script("start", STARTED_OK)
    api.script(
        "result", httpx.Response(200, json=STARTED), httpx.Response(200, json=completed_body())
    )
    with sync_client(api) as client:
        status = client.run("t")
    assert isinstance(status, Completed)
    assert client.counts.start == 1 and client.counts.result == 2


def test_sync_client_works_inside_a_running_event_loop(api: ScriptedAPI) -> None:
    """A Jupyter cell runs inside an event loop: the facade must still work there."""
    api.script("start", STARTED_OK)
    api.script("result", httpx.Response(200, json=completed_body()))

    async def notebook_cell() -> Completed:
        assert asyncio.get_running_loop() is not None
        with sync_client(api) as client:
            status = client.run("t")
        assert isinstance(status, Completed)
        return status

    assert asyncio.run(notebook_cell()).web_task_id == "wt_1"


@pytest.mark.parametrize("name", ["__init__", "start", "result", "wait", "run", "download"])
def test_sync_methods_mirror_the_async_signatures(name: str) -> None:
    """Editors and help() show the same explicit keywords on both clients."""
    sync_sig = inspect.signature(getattr(Client, name))
    async_sig = inspect.signature(getattr(AsyncClient, name))
    assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values())
    assert not any(p.kind is p.VAR_KEYWORD for p in sync_sig.parameters.values())
    if name != "__init__":
        assert sync_sig.return_annotation == async_sig.return_annotation
        assert "Example:" in (getattr(Client, name).__doc__ or "")


def test_sync_client_passes_every_keyword_through(
    api: ScriptedAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webtask_frames._wire.download as download

    fsyncs: list[int] = []
    monkeypatch.setattr(download.os, "fsync", fsyncs.append)
    api.script("start", STARTED_OK)
    api.script("result", httpx.Response(200, json=file_status()))
    api.script("file", httpx.Response(200, content=b'[{"a": 1}]\n'))
    with sync_client(api) as client:
        wt_id = client.start("t", start_url="https://example.com", reuse_key="k", model="haiku")
        status = client.wait(wt_id, timeout=5, first_poll_s=0)
        path = client.download(
            status, tmp_path / "r.json", refresh=False, chunk_size=4, durable=False
        )
    assert fsyncs == []  # durable=False reached the download
    assert api.requests[0].read() == (
        b'{"task":"t","startUrl":"https://example.com","reuseKey":"k","model":"haiku"}'
    )
    assert path.read_bytes() == b'[{"a": 1}]\n'
    assert client.async_client.poll.min_s == 0.001
