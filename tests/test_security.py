"""Secrets stay secret: the key only reaches the API origin, nowhere else."""

from __future__ import annotations

import asyncio
import logging
import pickle
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mockapi import API_KEY, BASE_URL, FILES_URL, WORKSPACE, ScriptedAPI, completed_body, error_body

import webtask_frames
from webtask_frames import (
    APIError,
    AsyncClient,
    Client,
    ConfigurationError,
    LedgerLockedError,
    TransportError,
    WebTaskError,
)
from webtask_frames._wire.client import _tls_context
from webtask_frames._wire.config import Settings

MakeClient = Callable[..., AsyncClient]
SIGNATURE = "sig-9d8c7b6a5f4e"


def file_body() -> dict[str, object]:
    return completed_body(
        result={
            "type": "file",
            "file": {
                "url": f"{FILES_URL}/wt_1.json?signature={SIGNATURE}&expires=1",
                "contentType": "application/json",
                "sizeBytes": 2,
                "expiresAt": "2099-01-01T00:00:00Z",
            },
        }
    )


def test_canary_key_never_in_debug_logs_reprs_or_errors(
    api: ScriptedAPI, make_client: MakeClient, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    api.script("start", httpx.Response(503), httpx.Response(200, json={"webTaskId": "wt_1"}))
    api.script(
        "result",
        httpx.Response(500, json=error_body(500, "boom", f"echo {API_KEY}")),
        httpx.Response(200, json=file_body()),
        httpx.Response(401, json=error_body(401, "unauthorized", f"bad key {API_KEY}")),
    )
    api.script("file", httpx.Response(200, content=b"[]"))
    client = make_client()
    texts: list[str] = [repr(client), str(client.__dict__)]

    async def go() -> None:
        status = await client.run("t")
        texts.extend([repr(status), str(status), repr(status.result)])
        await client.download(status, tmp_path / "r.json")
        with pytest.raises(APIError) as info:
            await client.result("wt_1")
        texts.extend([str(info.value), repr(info.value), repr(info.value.__dict__)])

    asyncio.run(go())
    texts.extend(r.getMessage() for r in caplog.records)
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log
    blob = "\n".join(texts)
    assert API_KEY not in blob
    assert SIGNATURE not in blob


def test_sync_client_repr_masks_key() -> None:
    client = Client(api_key=API_KEY, workspace_id=WORKSPACE, base_url=BASE_URL)
    assert API_KEY not in repr(client)
    assert API_KEY[-4:] in repr(client)
    assert API_KEY not in repr(Settings.resolve(API_KEY, WORKSPACE, BASE_URL, env={}))


def test_key_goes_only_to_api_origin_and_redirects_are_not_followed(
    api: ScriptedAPI, make_client: MakeClient
) -> None:
    api.script(
        "result",
        httpx.Response(302, headers={"location": "https://evil.test/steal"}),
    )
    with pytest.raises(APIError, match="302"):
        asyncio.run(make_client().result("wt_1"))
    assert [r.url.host for r in api.requests] == ["api.test"]


def test_file_download_carries_no_credentials_even_on_api_origin(
    api: ScriptedAPI, make_client: MakeClient, tmp_path: Path
) -> None:
    body = file_body()
    body["result"]["file"]["url"] = f"{BASE_URL}/files/wt_1?signature=x"  # type: ignore[index]
    api.script("result", httpx.Response(200, json=body))
    api.script("/api/v1/workspace/files/wt_1", httpx.Response(200, content=b"[]"))
    client = make_client()

    async def go() -> None:
        await client.download(await client.result("wt_1"), tmp_path / "r.json")

    asyncio.run(go())
    download = api.requests[-1]
    assert download.url.path.endswith("/files/wt_1")
    assert "x-api-key" not in download.headers


@pytest.mark.parametrize(
    "url",
    ["http://api.example.com/v1", "ftp://x/y", "https://user:pw@api.test/v1", "https://x/?a=1"],
)
def test_unsafe_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        Settings.resolve("k", "ws", url, env={})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765/api/v1/workspace", "http://localhost:1", "http://[::1]:9/x"]
)
def test_plain_http_allowed_for_loopback(url: str) -> None:
    assert Settings.resolve("k", "ws", url, env={}).base_url == url.rstrip("/")


def test_client_does_not_read_netrc(api: ScriptedAPI, make_client: MakeClient) -> None:
    client = make_client()
    assert client._api().trust_env is False
    assert client._file_client().trust_env is False


def test_every_client_verifies_tls_with_one_context_built_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Building a context loads the CA bundle (~50 ms); each httpx client built its own,
    # two per read_webtask call. No request is sent: clients connect lazily. (Counted at
    # the bundle's loading: httpx 0.27 and 0.28 build their contexts differently.)
    loaded: list[ssl.SSLContext] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loaded.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    _tls_context.cache_clear()
    try:
        for _ in range(2):
            client = AsyncClient(
                api_key=API_KEY, workspace_id=WORKSPACE, base_url="https://api.example.invalid"
            )
            client._api(), client._file_client()
            asyncio.run(client.aclose())
        assert len(loaded) == 1
        assert loaded[0] is _tls_context()
        assert loaded[0].verify_mode == ssl.CERT_REQUIRED and loaded[0].check_hostname
        assert loaded[0].get_ca_certs()  # a CA bundle is loaded
    finally:
        _tls_context.cache_clear()


def test_exceptions_pickle_without_losing_fields() -> None:
    exc = TransportError("down", attempts=3, web_task_id="wt_9", correlation_id="c")
    clone = pickle.loads(pickle.dumps(exc))
    assert (type(clone), clone.attempts, clone.web_task_id, clone.code, str(clone)) == (
        TransportError,
        3,
        "wt_9",
        "transport",
        str(exc),
    )


EXPORTED_ERRORS = sorted(
    (
        obj
        for obj in (getattr(webtask_frames, name) for name in webtask_frames.__all__)
        if isinstance(obj, type) and issubclass(obj, BaseException)
    ),
    key=lambda cls: cls.__name__,
)


def test_every_exception_is_exported_under_the_base_class() -> None:
    assert WebTaskError in EXPORTED_ERRORS and LedgerLockedError in EXPORTED_ERRORS
    assert all(issubclass(cls, WebTaskError) for cls in EXPORTED_ERRORS)


@pytest.mark.parametrize("cls", EXPORTED_ERRORS, ids=lambda cls: cls.__name__)
def test_every_exported_exception_pickles_with_its_identifiers(cls: type[WebTaskError]) -> None:
    """Batch runs move errors across threads and processes: nothing may be lost."""
    extra: dict[str, object] = {"status_code": 503} if issubclass(cls, APIError) else {}
    exc = cls(
        "it broke; try again",
        code="some-code",
        web_task_id="wt_9",
        correlation_id="corr-9",
        **extra,  # type: ignore[arg-type]
    )
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is cls
    assert (clone.code, clone.web_task_id, clone.correlation_id) == (
        "some-code",
        "wt_9",
        "corr-9",
    )
    assert str(clone) == str(exc)
    assert clone.args == exc.args
    assert clone.retryable == exc.retryable
    assert vars(clone) == vars(exc)
