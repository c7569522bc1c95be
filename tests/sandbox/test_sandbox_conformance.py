"""Wire-contract conformance: every response shape against the reference, plus the official SDK."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from webtask_frames.sandbox import Sandbox

NANOID = re.compile(r"^wt_[A-Za-z0-9_-]{21}$")
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
Check = Callable[[int, Any], None]
# intuned-client 1.1.1 reads ``model_fields`` on an instance, which pydantic >= 2.11
# deprecates; that is the SDK's warning, not ours, so it is ignored for SDK tests only.
SDK_WARNING = pytest.mark.filterwarnings(
    "ignore:Accessing the 'model_fields' attribute on the instance:DeprecationWarning"
)


def _assert_times(body: dict[str, Any]) -> None:
    stamps = [body[k] for k in ("createdAt", "startedAt", "completedAt") if body.get(k)]
    for stamp in stamps:
        assert ISO_MS.match(stamp), stamp
    assert stamps == sorted(stamps)


def test_start_response_shape(api: Any) -> None:
    response = api.start(task="List YC companies")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"webTaskId", "status"}
    assert body["status"] == "pending"
    assert NANOID.match(body["webTaskId"])
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-correlation-id"]


def test_lifecycle_pending_started_completed(api: Any, check_response: Check) -> None:
    # Defaults: start latency 0.5 s (+-50%), first-run durations 2-8 s.
    task_id = api.start_id(task="List YC companies", reuseKey="yc")
    pending = api.result(task_id)
    check_response(200, pending)
    assert pending["status"] == "pending"
    assert set(pending) == {"webTaskId", "status", "createdAt"}

    api.clock.advance(0.8)
    started = api.result(task_id)
    check_response(200, started)
    assert started["status"] == "started"
    assert set(started) == {"webTaskId", "status", "createdAt", "startedAt"}

    done = api.wait(task_id, step=0.5)
    check_response(200, done)
    assert done["status"] == "completed"
    assert done["outcome"] == "success"
    assert done["result"]["type"] == "inline"
    assert isinstance(done["result"]["data"], list)
    assert done["cost"]["aiUsd"] > 0
    assert done["cost"]["compute"]["unit"] == "hours"
    assert done["cost"]["compute"]["amount"] > 0
    assert set(done["reuse"]) == {
        "key",
        "used",
        "created",
        "updated",
        "revision_id",
        "revision_timestamp",
    }
    _assert_times(done)
    # A terminal response is stable.
    api.clock.advance(100)
    assert api.result(task_id) == done


def test_completed_file_result(api: Any, check_response: Check) -> None:
    task_id = api.start_id(task="Big crawl", parameters={"_sandbox": {"rows": 2000}})
    done = api.wait(task_id)
    check_response(200, done)
    file = done["result"]["file"]
    assert done["result"]["type"] == "file"
    assert file["contentType"] == "application/json"
    assert file["url"].startswith(api.sb.asgi_base_url.split("/api")[0] + "/_sandbox/files/")
    assert ISO_MS.match(file["expiresAt"])
    assert done["result"]["preview"]["rows"] == 2000
    assert len(done["result"]["preview"]["sample"]) == 3


def test_failed_outcome(api: Any, check_response: Check) -> None:
    task_id = api.start_id(
        task="x",
        startUrl="https://www.ycombinator.com/companies",
        parameters={"_sandbox": {"outcome": "failed", "error_code": "rejected"}},
    )
    done = api.wait(task_id)
    check_response(200, done)
    assert done["outcome"] == "failed"
    assert "result" not in done
    assert done["error"]["code"] == "rejected"
    assert "ycombinator.com" in done["error"]["message"]
    assert done["cost"]["aiUsd"] > 0  # failed runs still cost money


def test_canceled_by_override_and_by_endpoint(api: Any, check_response: Check) -> None:
    scripted = api.start_id(task="x", parameters={"_sandbox": {"outcome": "canceled"}})
    body = api.wait(scripted)
    check_response(200, body)
    assert body["status"] == "canceled"
    assert set(body) == {"webTaskId", "status", "createdAt", "startedAt", "completedAt"}
    assert body["startedAt"] is not None

    pending = api.start_id(task="y")
    response = api.control("POST", f"/_sandbox/cancel/{pending}")
    assert response.status_code == 200
    body = api.result(pending)
    check_response(200, body)
    assert body["status"] == "canceled"
    assert body["startedAt"] is None
    assert api.control("POST", f"/_sandbox/cancel/{pending}").status_code == 409
    assert api.control("POST", "/_sandbox/cancel/wt_nope").status_code == 404


def test_rate_limited_failure_has_null_started_at(make_api: Any, check_response: Check) -> None:
    api = make_api(cap=1, cap_mode="fail", duration_s=10)
    api.start_id(task="a")
    rejected = api.start_id(task="b")
    body = api.wait(rejected)
    check_response(200, body)
    assert body["error"]["code"] == "workspace-rate-limited"
    assert body["startedAt"] is None
    assert body["cost"] == {"aiUsd": 0.0, "compute": {"unit": "hours", "amount": 0.0}}


BAD_BODIES: list[tuple[str, Any]] = [
    ("missing task", {"model": "haiku"}),
    ("empty task", {"task": "   "}),
    ("non-string task", {"task": 42}),
    ("unknown model", {"task": "x", "model": "gpt"}),
    ("non-object parameters", {"task": "x", "parameters": [1, 2]}),
    ("invalid schema", {"task": "x", "outputSchema": {"type": "objekt"}}),
    ("schema not an object", {"task": "x", "outputSchema": "string"}),
    ("unresolvable ref", {"task": "x", "outputSchema": {"$ref": "#/$defs/Missing"}}),
    ("unknown field", {"task": "x", "reuse_key": "snake"}),
    ("non-string startUrl", {"task": "x", "startUrl": 5}),
    ("empty reuseKey", {"task": "x", "reuseKey": ""}),
    ("bad magic", {"task": "x", "parameters": {"_sandbox": {"outcome": "maybe"}}}),
    ("unknown magic key", {"task": "x", "parameters": {"_sandbox": {"rowz": 5}}}),
    ("array body", [{"task": "x"}]),
]


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
def test_400_bodies(api: Any, check_response: Check, case: str, body: Any) -> None:
    response = api.start(body)
    assert response.status_code == 400, case
    payload = response.json()
    check_response(400, payload)
    assert payload["correlationId"] == response.headers["x-correlation-id"]
    assert api.sb.stats()["accepted_tasks"] == 0


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"task": NaN}'])
def test_malformed_json_is_400(api: Any, check_response: Check, raw: bytes) -> None:
    response = api.client.post(
        f"/{api.ws}/web-tasks/start", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    check_response(400, response.json())


def test_401_and_404(api: Any, check_response: Check) -> None:
    task_id = api.start_id(task="x")
    url = f"/{api.ws}/web-tasks/{task_id}/result"
    for headers in ({"x-api-key": ""}, {"x-api-key": "wrong"}):
        response = api.client.get(url, headers=headers)
        assert response.status_code == 401
        check_response(401, response.json())
    no_key = httpx.Client(transport=api.sb.sync_transport(), base_url=api.sb.asgi_base_url)
    with no_key:
        response = no_key.post(f"/{api.ws}/web-tasks/start", json={"task": "x"})
    assert response.status_code == 401
    check_response(401, response.json())

    other_ws = "00000000-0000-4000-8000-000000000000"
    for response in (
        api.client.get(f"/{other_ws}/web-tasks/{task_id}/result"),
        api.client.post(f"/{other_ws}/web-tasks/start", json={"task": "x"}),
        api.client.get(f"/{api.ws}/web-tasks/wt_unknown/result"),
    ):
        assert response.status_code == 404
        body = response.json()
        check_response(404, body)
        assert body["correlationId"] == response.headers["x-correlation-id"]
    stats = api.sb.stats()
    assert stats["rejected_requests"] == {"401": 3, "404": 3}


def test_unknown_route_and_method_use_error_shape(api: Any) -> None:
    response = api.client.get("/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "not-found"
    response = api.client.delete(f"/{api.ws}/web-tasks/start")
    assert response.status_code == 405
    assert response.json()["category"] == "user"


def test_root_path_serves_the_same_tasks_as_the_prefix(api: Any, check_response: Check) -> None:
    """The overview's curl calls ``/{workspaceId}/web-tasks/...`` at the root: both work."""
    root = f"{api.origin}/{api.ws}/web-tasks"
    started = api.client.post(f"{root}/start", json={"task": "x", "reuseKey": "k"})
    assert started.status_code == 200
    task_id = started.json()["webTaskId"]
    done = api.wait(task_id)  # polled under the prefix
    check_response(200, done)
    at_root = api.client.get(f"{root}/{task_id}/result")
    assert at_root.status_code == 200
    assert at_root.json() == done
    other = api.start_id(task="y")  # started under the prefix, read at the root
    assert api.client.get(f"{root}/{other}/result").json()["webTaskId"] == other
    wrong_key = api.client.get(f"{root}/{task_id}/result", headers={"x-api-key": "wrong"})
    assert wrong_key.status_code == 401
    check_response(401, wrong_key.json())
    stats = api.sb.stats()
    assert (stats["start_calls"], stats["tasks"]) == (2, 2)
    assert stats["result_calls"] >= 3


def test_root_path_meets_the_same_faults(make_api: Any) -> None:
    api = make_api(seed=1, faults={"start": {"503": 1.0}})
    response = api.client.post(f"{api.origin}/{api.ws}/web-tasks/start", json={"task": "x"})
    assert response.status_code == 503
    assert api.sb.stats()["tasks"] == 0


def test_generated_keys_and_ids(api: Any) -> None:
    ids = {api.start_id(task="x") for _ in range(20)}
    assert len(ids) == 20
    assert all(NANOID.match(i) for i in ids)
    body = api.wait(next(iter(ids)))
    assert re.match(r"^wtr_[A-Za-z0-9_-]{21}$", body["reuse"]["key"])


def test_async_asgi_transport() -> None:
    import asyncio

    sb = Sandbox(duration_s=0, start_latency_s=0)

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(
            transport=sb.transport(),
            base_url=sb.asgi_base_url,
            headers={"x-api-key": sb.api_key},
        ) as client:
            start = await client.post(f"/{sb.workspace_id}/web-tasks/start", json={"task": "x"})
            task_id = start.json()["webTaskId"]
            result = await client.get(f"/{sb.workspace_id}/web-tasks/{task_id}/result")
            return dict(result.json())

    body = asyncio.run(main())
    assert body["status"] == "completed"
    assert body["outcome"] == "success"


# -- the official SDK against the threaded server ---------------------------------


@pytest.fixture(scope="module")
def served() -> Any:
    with Sandbox(time_scale=0.002, seed=11, start_latency_s=0.2) as sb:
        yield sb


def _sdk(sb: Sandbox) -> Any:
    from intuned_client import IntunedClient

    return IntunedClient(workspace_id=sb.workspace_id, api_key=sb.api_key, base_url=sb.base_url)


@SDK_WARNING
def test_sdk_inline_success(served: Sandbox) -> None:
    from intuned_client.models import WebTasksStartRequestBody

    with _sdk(served) as client:
        result = client.web_tasks.run(
            body=WebTasksStartRequestBody(
                task="Scrape companies from the YC directory",
                start_url="https://www.ycombinator.com/companies",
                parameters={"batch": "S24"},
                reuse_key="yc_companies_sdk",
            ),
            poll_interval_seconds=0.01,
            timeout_seconds=30,
        )
    assert type(result).__name__ == "WebTasksResultResponseValueOption3"
    assert result.outcome == "success"
    assert result.result.type == "inline"
    assert {row["batch"] for row in result.result.data} == {"S24"}
    assert result.reuse.created is True
    assert result.reuse.revision_id == result.web_task_id
    assert result.cost.ai_usd > 0


@SDK_WARNING
def test_sdk_file_success_and_download(served: Sandbox) -> None:
    with _sdk(served) as client:
        result = client.web_tasks.run(
            body={"task": "Crawl everything", "parameters": {"_sandbox": {"result": "file"}}},
            poll_interval_seconds=0.01,
            timeout_seconds=30,
        )
    assert result.result.type == "file"
    file = result.result.file
    assert file.url.startswith(served.origin + "/_sandbox/files/")
    downloaded = httpx.get(file.url)
    assert downloaded.status_code == 200
    assert len(downloaded.content) == file.size_bytes
    assert len(downloaded.json()) == served.config.rows


@SDK_WARNING
def test_sdk_failed_outcome_and_errors(served: Sandbox) -> None:
    from intuned_client.exceptions import AuthenticationError, NotFoundError, ValidationError

    with _sdk(served) as client:
        result = client.web_tasks.run(
            body={"task": "x", "parameters": {"_sandbox": {"outcome": "failed"}}},
            poll_interval_seconds=0.01,
            timeout_seconds=30,
        )
        assert result.outcome == "failed"
        assert result.error.code in served.config.failure_codes
        with pytest.raises(NotFoundError):
            client.web_tasks.result(web_task_id="wt_missing")
        with pytest.raises(ValidationError):
            client.web_tasks.start(body={"task": "x", "output_schema": {"type": "nope"}})
    from intuned_client import IntunedClient

    bad = IntunedClient(workspace_id=served.workspace_id, api_key="bad", base_url=served.base_url)
    with bad, pytest.raises(AuthenticationError):
        bad.web_tasks.start(body={"task": "x"})


@SDK_WARNING
def test_sdk_with_pydantic_output_schema_in_process() -> None:
    """The SDK sends ``model_json_schema()`` ($defs, anyOf-null); data must parse back."""
    from intuned_client import IntunedClient
    from pydantic import BaseModel, TypeAdapter

    class Founder(BaseModel):
        name: str
        linkedin: str | None = None

    class Company(BaseModel):
        name: str
        batch: str
        founders: list[Founder]
        team_size: int | None = None

    class Page(BaseModel):
        companies: list[Company]

    sb = Sandbox(duration_s=0, start_latency_s=0, rows=7)
    with httpx.Client(transport=sb.sync_transport()) as http:
        client = IntunedClient(
            workspace_id=sb.workspace_id,
            api_key=sb.api_key,
            base_url=sb.asgi_base_url,
            client=http,
        )
        result = client.web_tasks.run(
            body={"task": "YC", "parameters": {"batch": "W21"}, "output_schema": Page},
            poll_interval_seconds=0,
        )
    page = TypeAdapter(Page).validate_python(result.result.data)
    assert len(page.companies) == 7
    assert {c.batch for c in page.companies} == {"W21"}
