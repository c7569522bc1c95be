"""Inline vs file delivery, signed URLs, exact sizes, formats and download failure modes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest


def _file_result(api: Any, **magic: Any) -> dict[str, Any]:
    task_id = api.start_id(task="Crawl", parameters={"batch": "S24", "_sandbox": magic})
    body = api.wait(task_id)
    assert body["result"]["type"] == "file", body["result"]["type"]
    return dict(body["result"])


def test_inline_vs_file_threshold(make_api: Any) -> None:
    api = make_api(inline_max_bytes=4096)
    small = api.wait(api.start_id(task="T", parameters={"_sandbox": {"rows": 3}}))
    assert small["result"]["type"] == "inline"
    assert len(json.dumps(small["result"]["data"], separators=(",", ":"))) <= 4096
    big = api.wait(api.start_id(task="T", parameters={"_sandbox": {"rows": 100}}))
    assert big["result"]["type"] == "file"
    forced_inline = api.wait(
        api.start_id(task="T", parameters={"_sandbox": {"rows": 100, "result": "inline"}})
    )
    assert forced_inline["result"]["type"] == "inline"
    assert len(forced_inline["result"]["data"]) == 100


def test_json_file_exact_size_and_content(api: Any) -> None:
    result = _file_result(api, rows=500)
    file = result["file"]
    response = api.download(file["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert len(response.content) == file["sizeBytes"]
    assert int(response.headers["content-length"]) == file["sizeBytes"]
    rows = response.json()
    assert len(rows) == 500 == result["preview"]["rows"]
    assert rows[:3] == result["preview"]["sample"]
    assert {r["batch"] for r in rows} == {"S24"}
    # Regenerated on demand, byte for byte.
    api.sb.app.renderer.clear()
    assert api.download(file["url"]).content == response.content


def test_ndjson_file(make_api: Any) -> None:
    api = make_api(file_format="ndjson")
    file = _file_result(api, rows=300)["file"]
    assert file["contentType"] == "application/x-ndjson"
    assert urlsplit(file["url"]).path.endswith(".ndjson")
    body = api.download(file["url"]).content
    assert len(body) == file["sizeBytes"]
    lines = body.decode().splitlines()
    assert len(lines) == 300
    assert all(json.loads(line)["batch"] == "S24" for line in lines)


def test_per_task_file_format_override(api: Any) -> None:
    file = _file_result(api, rows=10, result="file", file_format="ndjson")["file"]
    assert file["contentType"] == "application/x-ndjson"


def test_object_result_with_ndjson_falls_back_to_json(api: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
        "required": ["rows"],
    }
    task_id = api.start_id(
        task="T",
        outputSchema=schema,
        parameters={"_sandbox": {"result": "file", "file_format": "ndjson", "rows": 4}},
    )
    result = api.wait(task_id)["result"]
    assert result["file"]["contentType"] == "application/json"
    assert result["preview"]["rows"] == 4
    assert len(api.download(result["file"]["url"]).json()["rows"]) == 4


def test_url_expiry_defaults_to_seven_days(api: Any) -> None:
    task_id = api.start_id(task="T", parameters={"_sandbox": {"result": "file"}})
    body = api.wait(task_id)
    expires = int(parse_qs(urlsplit(body["result"]["file"]["url"]).query)["expires"][0])
    task = api.sb.state.get_task(task_id)
    completed_epoch = api.sb.state.time.epoch(task.finished)
    assert expires == int(completed_epoch + 7 * 24 * 3600)
    assert body["result"]["file"]["expiresAt"].endswith(".000Z")


def test_expired_url_is_403(make_api: Any) -> None:
    api = make_api(file_ttl_s=60)
    url = _file_result(api, result="file")["file"]["url"]
    assert api.download(url).status_code == 200
    api.clock.advance(61)
    response = api.download(url)
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert "expired" in response.text


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    new_query = "&".join(f"{k}={v}" for k, v in query.items())
    return urlunsplit(parts._replace(query=new_query))


def test_bad_or_tampered_signature_is_403(api: Any) -> None:
    url = _file_result(api, result="file")["file"]["url"]
    for bad in (
        _with_query(url, signature="0" * 64),
        _with_query(url, expires="9999999999"),
        url.split("?")[0],
        url.replace(".json?", ".ndjson?"),
    ):
        response = api.download(bad)
        assert response.status_code == 403, bad
        assert response.headers["content-type"] == "application/xml"


def test_download_with_api_key_is_rejected_and_counted(api: Any) -> None:
    url = _file_result(api, result="file")["file"]["url"]
    response = api.client.get(url)  # this client sends x-api-key on every request
    assert response.status_code == 400
    assert "InvalidArgument" in response.text
    stats = api.sb.stats()
    assert stats["downloads_with_credentials"] == 1
    assert stats["download_calls"] == 1


def test_unknown_file_is_404(api: Any) -> None:
    url = _file_result(api, result="file")["file"]["url"]
    task_id = urlsplit(url).path.rsplit("/", 1)[1].split(".")[0]
    other = api.sb.app.renderer.signed_path("wt_missing", "json", 9_999_999_999)
    assert api.download(api.origin + other).status_code == 404
    inline = api.wait(api.start_id(task="small"))["webTaskId"]
    inline_path = api.sb.app.renderer.signed_path(inline, "json", 9_999_999_999)
    assert api.download(api.origin + inline_path).status_code == 404
    assert task_id.startswith("wt_")


@pytest.mark.parametrize("fault", ["truncated", "expired"])
def test_download_faults(make_api: Any, fault: str) -> None:
    api = make_api(faults={"download": {fault: 1.0}})
    file = _file_result(api, rows=200, result="file")["file"]
    response = api.download(file["url"])
    if fault == "truncated":
        assert response.status_code == 200
        assert 0 < len(response.content) < file["sizeBytes"]
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)
    else:
        assert response.status_code == 403
        assert "expired" in response.text
    assert api.sb.stats()["faults"]["download"] == {fault: 1}


def test_public_origin_in_file_urls(make_api: Any) -> None:
    api = make_api(public_origin="https://files.example.test")
    url = _file_result(api, result="file")["file"]["url"]
    assert url.startswith("https://files.example.test/_sandbox/files/wt_")
