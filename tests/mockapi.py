"""A scripted mock of the Web Tasks API for protocol unit tests (httpx.MockTransport handler).

It stays a hand-written mock on purpose: protocol tests need exact byte-level sequences
(this 503 then that dropped connection then a 200 with a malformed body) that a realistic
service, the sandbox included, does not script. Tests of behaviour above the protocol run
against the sandbox instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

API_KEY = "canary-key-7f3a9c2e5b1d4f60"  # a canary: must never show up in logs or errors
WORKSPACE = "123e4567-e89b-12d3-a456-426614174000"
BASE_URL = "https://api.test/api/v1/workspace"
FILES_URL = "https://files.test/results"

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def completed_body(web_task_id: str = "wt_1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "webTaskId": web_task_id,
        "status": "completed",
        "outcome": "success",
        "createdAt": "2026-05-19T12:00:00.000Z",
        "startedAt": "2026-05-19T12:00:05.000Z",
        "completedAt": "2026-05-19T12:01:00.000Z",
        "reuse": {
            "key": "yc",
            "used": False,
            "created": True,
            "updated": True,
            "revision_id": "rev_1",
            "revision_timestamp": "2026-05-19T12:01:00.000Z",
        },
        "cost": {"aiUsd": 0.42, "compute": {"unit": "hours", "amount": 0.023}},
        "result": {"type": "inline", "data": [{"name": "Acme"}]},
    }
    body.update(overrides)
    return body


def error_body(status: int, code: str, message: str = "nope") -> dict[str, Any]:
    return {
        "code": code,
        "category": "user" if status < 500 else "system",
        "message": message,
        "retirable": status >= 500 or status == 429,
        "correlationId": f"corr-{status}",
    }


@dataclass
class ScriptedAPI:
    """A MockTransport handler: per-route queues of responses or exceptions to raise.

    The last step of a queue repeats. Every request is recorded (method, url, headers).
    """

    routes: dict[str, list[Step]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def script(self, route: str, *steps: Step) -> None:
        self.routes[route] = list(steps)

    def count(self, route: str) -> int:
        return sum(1 for r in self.requests if self._route(r) == route)

    @staticmethod
    def _route(request: httpx.Request) -> str:
        path = request.url.path
        if request.url.host == "files.test":
            return "file"
        if path.endswith("/web-tasks/start"):
            return "start"
        if path.endswith("/result"):
            return "result"
        return path

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self._route(request)
        queue = self.routes.get(route)
        if not queue:
            return httpx.Response(404, json=error_body(404, "not-found", f"no route {route}"))
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(step, Exception):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step
