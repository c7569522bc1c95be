"""A tiny fake Web Tasks service (API routes + signed file URLs) on httpx.MockTransport."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from webtask_frames import AsyncClient

BASE = "https://api.test/api/v1/workspace"
FILES = "https://files.test"
SIGNATURE = "sig=SECRETSIGNATURE123"


@dataclass
class FakeService:
    """One task per start call; the result is scripted by the attributes below."""

    data: Any = None
    file_bytes: bytes | None = None
    content_type: str = "application/json"
    size_bytes: int | None = None  # advertised size; default the real one
    outcome: str = "success"
    error: dict[str, Any] | None = None
    expired_downloads: int = 0  # this many downloads answer 403 first
    cost: float = 0.25
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    n_started: int = 0
    url_version: int = 0
    state: str = "completed"  # or "canceled" / "started" (never finishes)

    def count(self, kind: str) -> int:
        def kind_of(r: httpx.Request) -> str:
            if r.url.host == "files.test":
                return "download"
            return "start" if r.url.path.endswith("/start") else "result"

        return sum(1 for r in self.requests if kind_of(r) == kind)

    def _completed(self, web_task_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "webTaskId": web_task_id,
            "status": "completed",
            "outcome": self.outcome,
            "createdAt": "2026-05-19T12:00:00.000Z",
            "startedAt": "2026-05-19T12:00:05.000Z",
            "completedAt": "2026-05-19T12:01:00.000Z",
            "cost": {"aiUsd": self.cost, "compute": {"unit": "hours", "amount": 0.01}},
            "reuse": {
                "key": "yc",
                "used": True,
                "created": False,
                "updated": False,
                "revision_id": "rev_1",
                "revision_timestamp": "2026-05-18T00:00:00Z",
            },
        }
        if self.outcome != "success":
            body["error"] = self.error or {"code": "timeout", "message": "ran out of time"}
        elif self.file_bytes is not None:
            self.url_version += 1
            size = len(self.file_bytes) if self.size_bytes is None else self.size_bytes
            body["result"] = {
                "type": "file",
                "file": {
                    "url": f"{FILES}/{web_task_id}?v={self.url_version}&{SIGNATURE}",
                    "contentType": self.content_type,
                    "sizeBytes": size,
                    "expiresAt": "2099-01-01T00:00:00Z",
                },
            }
        else:
            body["result"] = {"type": "inline", "data": self.data}
        return body

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "files.test":
            if self.expired_downloads:
                self.expired_downloads -= 1
                return httpx.Response(403, text="expired")
            return httpx.Response(200, content=self.file_bytes or b"")
        assert request.headers.get("x-api-key") == "k" * 20
        path = request.url.path
        if path.endswith("/web-tasks/start") and request.method == "POST":
            self.n_started += 1
            self.bodies.append(json.loads(request.content))
            return httpx.Response(
                200, json={"webTaskId": f"wt_{self.n_started}", "status": "pending"}
            )
        if path.endswith("/result") and request.method == "GET":
            web_task_id = path.split("/")[-2]
            if self.state != "completed":
                return httpx.Response(
                    200,
                    json={
                        "webTaskId": web_task_id,
                        "status": self.state,
                        "createdAt": "2026-05-19T12:00:00.000Z",
                        "startedAt": "2026-05-19T12:00:05.000Z",
                        "completedAt": "2026-05-19T12:00:30.000Z",
                    },
                )
            return httpx.Response(200, json=self._completed(web_task_id))
        return httpx.Response(404, json={"code": "not-found", "message": "no route"})


def client_for(service: FakeService) -> AsyncClient:
    return AsyncClient(
        api_key="k" * 20,
        workspace_id="ws",
        base_url=BASE,
        transport=httpx.MockTransport(service),
        poll_min_s=0.01,
        poll_max_s=0.02,
    )
