"""The file client's transport (aiohttp behind httpx's interface), against real sockets
on 127.0.0.1: what the server receives, what the caller gets, and every failure raised
as the httpx error the retry decisions read, its text free of the signed query."""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.server
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import webtask_frames as wf
from webtask_frames import AsyncClient, RetryPolicy
from webtask_frames._wire.client import _tls_context
from webtask_frames._wire.download import FILE_HOOKS
from webtask_frames._wire.files import AiohttpTransport

from .hostileserver import HostileServer, Reply, Request

SECRET = "sig-files-7d41c0ffee"


def _files() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AiohttpTransport(ssl_context=_tls_context()),
        follow_redirects=True,
        timeout=httpx.Timeout(5.0, read=0.5),
    )


async def _get(url: str, *, wait_s: float = 0.0) -> tuple[httpx.Response, list[bytes]]:
    async with _files() as files:
        response = await files.send(files.build_request("GET", url), stream=True)
        try:
            await asyncio.sleep(wait_s)  # let the body arrive before it is read
            return response, [chunk async for chunk in response.aiter_raw()]
        finally:
            await response.aclose()


def _error(url: str) -> httpx.TransportError:
    with pytest.raises(httpx.TransportError) as info:
        asyncio.run(_get(url))
    return info.value


def _clean(exc: BaseException) -> None:
    """No trace of the signed query, and no aiohttp error chained to carry one."""
    assert SECRET not in str(exc) and SECRET not in repr(exc)
    assert exc.__cause__ is None and exc.__suppress_context__


def test_the_url_goes_out_byte_for_byte_and_the_body_comes_back_whole() -> None:
    # a signature covers the query's bytes: no re-quoting (%7E stays, + stays, %2F stays)
    query = f"sig={SECRET}%2F%2B%3D%7E+x&X-Amz-Credential=a%2F20261130%2Fus"
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    with HostileServer(lambda req: Reply(200, body, {"set-cookie": "k=v"})) as srv:
        response, chunks = asyncio.run(_get(f"{srv.url}/files/r.json?{query}"))
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    assert b"".join(chunks) == body
    (seen,) = srv.requests
    assert seen.method == "GET" and seen.path == f"/files/r.json?{query}"
    assert "cookie" not in seen.headers and "authorization" not in seen.headers


def test_a_download_sends_the_clients_headers_and_no_key_to_the_file_origin(
    tmp_path: Path,
) -> None:
    body = b'[{"a": 1}]'
    with HostileServer(lambda req: Reply(200, body)) as srv:
        file = wf.FileResult(
            url=f"{srv.url}/files/r.json?sig={SECRET}",
            content_type="application/json",
            size_bytes=len(body),
            expires_at=None,
        )

        async def go() -> Path:
            async with AsyncClient(api_key="k-files-1", workspace_id="w", base_url=srv.url) as c:
                return await c.download(file, tmp_path / "r.json")

        path = asyncio.run(go())
    assert path.read_bytes() == body
    (seen,) = srv.requests
    assert seen.headers["user-agent"].startswith("webtask-frames/")
    assert "x-api-key" not in seen.headers
    assert not any("k-files-1" in value for value in seen.headers.values())


def test_chunks_are_whatever_has_arrived_not_64_kib_pieces() -> None:
    body = b"x" * (4 << 20)
    with HostileServer(lambda req: Reply(200, body)) as srv:
        _, chunks = asyncio.run(_get(f"{srv.url}/big", wait_s=0.3))
    assert b"".join(chunks) == body
    # httpx's own stack hands over at most 64 KiB per read (16 KiB over TLS)
    assert max(map(len, chunks)) > 64 << 10
    assert len(chunks) < len(body) // (64 << 10)


def test_each_request_has_its_own_connection_whole_or_closed_early() -> None:
    body = b"y" * (2 << 20)
    with HostileServer(lambda req: Reply(200, body)) as srv:

        async def go() -> None:
            async with _files() as files:
                assert len((await files.get(f"{srv.url}/whole")).content) == len(body)
                response = await files.send(files.build_request("GET", f"{srv.url}/p"), stream=True)
                async for _ in response.aiter_raw():
                    break
                await response.aclose()  # mid-body
                assert len((await files.get(f"{srv.url}/whole")).content) == len(body)

        asyncio.run(go())
    assert len(srv.requests) == 3 and srv.connections == 3


_UNCLOSED = """
import asyncio, sys
import webtask_frames as wf
url, path, kind = sys.argv[1:]
file = wf.FileResult(url=url, content_type="application/json", size_bytes=-1, expires_at=None)
if kind == "sync":
    client = wf.Client(api_key="k", workspace_id="w", base_url="http://127.0.0.1:9")
    client.download(file, path)
else:
    async def main():
        client = wf.AsyncClient(api_key="k", workspace_id="w", base_url="http://127.0.0.1:9")
        await client.download(file, path)
    asyncio.run(main())
print("done")
"""


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_client_never_closed_prints_nothing_at_exit(kind: str, tmp_path: Path) -> None:
    with HostileServer(lambda req: Reply(200, b"[1]")) as srv:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _UNCLOSED,
                f"{srv.url}/r?sig={SECRET}",
                str(tmp_path / "r"),
                kind,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0 and done.stdout == "done\n"
    assert done.stderr == ""  # no "Unclosed client session" nor "Unclosed connector"
    assert (tmp_path / "r").read_bytes() == b"[1]"


def test_a_url_with_userinfo_sends_it_once_as_httpx_would() -> None:
    # httpx turns the userinfo into an authorization header; aiohttp would refuse a URL
    # that carries it too ("Cannot combine AUTHORIZATION header ...")
    with HostileServer(lambda req: Reply(200, b"[1]")) as srv:
        url = srv.url.replace("http://", "http://us%40er:p%2Fw@")
        response, chunks = asyncio.run(_get(f"{url}/r?sig={SECRET}"))
    assert response.status_code == 200 and b"".join(chunks) == b"[1]"
    (seen,) = srv.requests
    assert seen.path == f"/r?sig={SECRET}"
    assert seen.headers["authorization"] == "Basic " + base64.b64encode(b"us@er:p/w").decode()


def test_redirects_are_httpxs_one_request_at_a_time() -> None:
    def handler(req: Request) -> Reply:
        if req.path.startswith("/moved"):
            return Reply(302, b"", {"location": f"/files/r?sig={SECRET}2"})
        return Reply(200, b"[]")

    with HostileServer(handler) as srv:
        response, chunks = asyncio.run(_get(f"{srv.url}/moved?sig={SECRET}"))
    assert [r.path for r in srv.requests] == [f"/moved?sig={SECRET}", f"/files/r?sig={SECRET}2"]
    assert [r.status_code for r in response.history] == [302]
    assert b"".join(chunks) == b"[]"


def test_a_body_cut_short_is_a_remote_protocol_error() -> None:
    with HostileServer(lambda req: Reply(200, b"z" * 1000, length=5000)) as srv:
        exc = _error(f"{srv.url}/r?sig={SECRET}")
    assert type(exc) is httpx.RemoteProtocolError
    _clean(exc)


def test_a_malformed_response_is_a_remote_protocol_error() -> None:
    with HostileServer(lambda req: Reply(200, b"[]", {"bad header": "x"})) as srv:
        exc = _error(f"{srv.url}/r?sig={SECRET}")
    assert type(exc) is httpx.RemoteProtocolError
    _clean(exc)


def test_a_body_that_breaks_its_chunked_encoding_ends_within_the_read_timeout() -> None:
    # headers and a first chunk, then a chunk size that is no number: aiohttp's parser
    # fails mid-body and drops its socket timeout; the body's own read timeout ends it
    raw = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n", b"ZZ\r\n")
    with HostileServer(lambda req: Reply(raw=raw)) as srv:
        started = time.monotonic()
        exc = _error(f"{srv.url}/r?sig={SECRET}")
        elapsed = time.monotonic() - started
    assert type(exc) is httpx.ReadTimeout and elapsed < 5  # the client's read timeout: 0.5 s
    _clean(exc)


def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exc = _error(f"http://127.0.0.1:{port}/r?sig={SECRET}")
    assert type(exc) is httpx.ConnectError
    _clean(exc)


def test_a_stalled_body_is_a_read_timeout() -> None:
    with HostileServer(lambda req: Reply(200, b"a" * 10, drip=(1, 5.0))) as srv:
        exc = _error(f"{srv.url}/r?sig={SECRET}")
    assert type(exc) is httpx.ReadTimeout  # the client's read timeout (0.5 s here)
    _clean(exc)


def _download(
    url: str,
    tmp_path: Path,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    size: int = -1,
) -> BaseException | None:
    """``AsyncClient.download`` of ``url`` signed (three attempts, the task ``wt_dl``);
    what it raised."""
    file = wf.FileResult(
        url=f"{url}?sig={SECRET}",
        content_type="application/json",
        size_bytes=size,
        expires_at=None,
        web_task_id="wt_dl",
    )
    origin = "/".join(url.split("/")[:3])

    async def go() -> None:
        policy = RetryPolicy(max_attempts=3, backoff_base_s=0.01)
        async with AsyncClient(
            api_key="k", workspace_id="w", base_url=origin, retry=policy, transport=transport
        ) as c:
            await c.download(file, tmp_path / "r.json")

    try:
        asyncio.run(go())
    except Exception as exc:
        return exc
    return None


def test_a_download_of_a_cut_body_is_retried_then_fails_with_the_task_id(tmp_path: Path) -> None:
    with HostileServer(lambda req: Reply(200, b"[1]" * 100, length=5000)) as srv:
        exc = _download(f"{srv.url}/files/r.json", tmp_path, size=5000)
    assert isinstance(exc, wf.TransportError)
    assert srv.count("/files/r.json") == 3
    assert exc.web_task_id == "wt_dl" and "RemoteProtocolError" in str(exc)
    assert SECRET not in str(exc)
    assert list(tmp_path.iterdir()) == []  # no partial file left


# -- redirects: held to the first request's rules ---------------------------------------


def test_a_redirect_to_plain_http_off_loopback_is_refused_before_it_is_sent(
    tmp_path: Path,
) -> None:
    # 0.0.0.0 is no loopback address, yet a connection to it reaches this machine: were
    # the redirect followed, this server would see a second request (and nothing leaves)
    def handler(req: Request) -> Reply:
        if req.path.startswith("/moved"):
            port = req.headers["host"].rsplit(":", 1)[1]
            return Reply(302, b"", {"location": f"http://0.0.0.0:{port}/files/r?sig={SECRET}2"})
        return Reply(200, b"[]")

    with HostileServer(handler) as srv:
        exc = _download(f"{srv.url}/moved", tmp_path)
    assert isinstance(exc, wf.DownloadError) and exc.code == "insecure-url"
    assert exc.web_task_id == "wt_dl" and not exc.retryable  # a broken store: no retry
    assert "http://0.0.0.0" in str(exc) and SECRET not in str(exc)
    assert [r.path for r in srv.requests] == [f"/moved?sig={SECRET}"]
    assert list(tmp_path.iterdir()) == []


def test_a_redirect_with_a_huge_body_is_cut_off_and_not_followed(tmp_path: Path) -> None:
    # httpx reads a redirect's body whole before following it: without a cap, a server
    # could send gigabytes with a 302 and the download's size ceiling would not see them
    def handler(req: Request) -> Reply:
        if req.path.startswith("/moved"):
            return Reply(302, b"x" * (4 << 20), {"location": f"/files/r?sig={SECRET}2"})
        return Reply(200, b"[]")

    with HostileServer(handler) as srv:
        exc = _download(f"{srv.url}/moved", tmp_path)
    assert isinstance(exc, wf.DownloadError) and exc.code == "bad-redirect"
    assert exc.web_task_id == "wt_dl" and not exc.retryable
    assert SECRET not in str(exc)
    assert [r.path for r in srv.requests] == [f"/moved?sig={SECRET}"]
    assert list(tmp_path.iterdir()) == []


def test_a_redirect_with_a_small_body_and_a_long_signed_location_is_followed(
    tmp_path: Path,
) -> None:
    # a session token makes a signed URL long: past aiohttp's default 8190-byte line
    long_query = f"sig={SECRET}2&token=" + "t" * 20_000

    def handler(req: Request) -> Reply:
        if req.path.startswith("/moved"):
            return Reply(302, b"moved" * 2000, {"location": f"/files/r?{long_query}"})
        return Reply(200, b"[1, 2]")

    with HostileServer(handler) as srv:
        exc = _download(f"{srv.url}/moved", tmp_path)
    assert exc is None
    assert [r.path for r in srv.requests] == [f"/moved?sig={SECRET}", f"/files/r?{long_query}"]
    assert (tmp_path / "r.json").read_bytes() == b"[1, 2]"


def test_a_compressed_redirect_body_is_thrown_away_not_decoded() -> None:
    # 8 KiB of gzip makes 8 MiB: httpx decodes a redirect's body and keeps it in the
    # history, so a few KiB under the cap could still fill memory
    bomb = gzip.compress(bytes(8 << 20))
    assert len(bomb) < 64 << 10

    def handler(req: Request) -> Reply:
        if req.path.startswith("/moved"):
            headers = {"location": f"/files/r?sig={SECRET}2", "content-encoding": "gzip"}
            return Reply(302, bomb, headers)
        return Reply(200, b"[]")

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=AiohttpTransport(ssl_context=_tls_context()),
            follow_redirects=True,
            event_hooks=FILE_HOOKS,
        ) as files:
            url = f"{srv.url}/moved?sig={SECRET}"
            return await files.get(url, extensions={"webtask_frames.from_loopback": True})

    with HostileServer(handler) as srv:
        response = asyncio.run(go())
    assert response.content == b"[]" and [r.status_code for r in response.history] == [302]
    assert response.history[0].content == b""


def test_a_redirect_loop_fails_with_the_task_id_and_is_not_retried(tmp_path: Path) -> None:
    with HostileServer(lambda req: Reply(302, b"", {"location": req.path})) as srv:
        exc = _download(f"{srv.url}/loop", tmp_path)
    assert isinstance(exc, wf.DownloadError) and exc.code == "bad-redirect"
    assert exc.web_task_id == "wt_dl" and not exc.retryable
    assert "redirected more than 20 times" in str(exc) and SECRET not in str(exc)
    assert len(srv.requests) == 21  # one attempt: the first request and 20 redirects
    assert list(tmp_path.iterdir()) == []


def test_a_body_its_content_encoding_cannot_decode_fails_with_the_task_id(
    tmp_path: Path,
) -> None:
    garbage = b"this is not gzip" * 10
    with HostileServer(lambda req: Reply(200, garbage, {"content-encoding": "gzip"})) as srv:
        exc = _download(f"{srv.url}/r", tmp_path)
    assert isinstance(exc, wf.DownloadError) and exc.code == "bad-encoding"
    assert exc.web_task_id == "wt_dl" and not exc.retryable
    assert len(srv.requests) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["http://127.0.0.1:9/admin", "https://localhost/x"])
def test_a_remote_store_redirecting_to_this_machine_is_refused(target: str, tmp_path: Path) -> None:
    # a mock transport: nothing is sent anywhere; the guard must stop the redirect
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": target})

    exc = _download("https://files.example/r.json", tmp_path, httpx.MockTransport(handler))
    assert isinstance(exc, wf.DownloadError) and exc.code == "bad-redirect"
    assert exc.web_task_id == "wt_dl" and not exc.retryable
    assert seen == [f"https://files.example/r.json?sig={SECRET}"] and SECRET not in str(exc)


# -- https: the client's verifying context is the one used ------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    (folder / "r.json").write_bytes(b"[1, 2]" * 50_000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/r.json?sig={SECRET}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_unknown_certificate_is_refused(tls_server: tuple[str, Path]) -> None:
    url, _ = tls_server
    exc = _error(url)
    assert type(exc) is httpx.ConnectError and "CERTIFICATE_VERIFY_FAILED" in str(exc)
    _clean(exc)


def test_a_trusted_certificate_downloads_the_file(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))

    async def go() -> bytes:
        transport = AiohttpTransport(ssl_context=context)
        async with httpx.AsyncClient(transport=transport) as files:
            return (await files.get(url)).content

    assert asyncio.run(go()) == b"[1, 2]" * 50_000


def test_one_transport_serves_two_event_loops_one_after_the_other() -> None:
    transport = AiohttpTransport(ssl_context=_tls_context())

    async def get(url: str) -> bytes:
        # not closed here: the second loop's session replaces the first one's
        files = httpx.AsyncClient(transport=transport)
        return (await files.get(url)).content

    with HostileServer(lambda req: Reply(200, b"[7]")) as srv:
        assert asyncio.run(get(f"{srv.url}/a")) == b"[7]"
        first = transport._session
        assert first is not None and not first.closed
        assert asyncio.run(get(f"{srv.url}/b")) == b"[7]"
    assert srv.connections == 2
    assert first.closed and transport._session is not first  # detached: nothing to report
    asyncio.run(transport.aclose())
