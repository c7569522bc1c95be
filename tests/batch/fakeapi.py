"""A scripted, stateful fake of the Web Tasks API for batch unit tests.

It stays beside the sandbox because these tests script what the sandbox does not: a
fault on the n-th start call (a 500, a 401, a dropped connection after the task was
accepted, a refused connection), a task's outcome by how often its body was submitted
before, an exact per-task cost for the budget, and a discipline check at every accepted
start. Batch behaviour against realistic service behaviour is in ``test_sandbox.py``.

Tasks run on the fixture's clock (``clock``: the tests' manual clock, or the real
monotonic one) with tiny durations. Each task's behaviour comes
from ``script(body, occurrence)`` (occurrence: how often this exact body was accepted
before), so a test says e.g. "the first run of item 3 fails with internal-error". The
fake checks the batch's discipline at every accepted start: never more than ``cap``
unfinished tasks, never two unfinished tasks with one reuseKey.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

API_KEY = "batch-canary-key-0123456789"
WORKSPACE = "123e4567-e89b-12d3-a456-426614174000"
BASE_URL = "https://api.test/api/v1/workspace"
EPOCH = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)


@dataclass
class Behaviour:
    duration: float = 0.02
    outcome: str = "success"  # success | failed | canceled
    code: str | None = None
    cost: float = 0.01
    data: Any = None  # inline result data; default: two rows
    file: bool = False  # deliver the result as a signed file URL instead
    compute: dict[str, Any] = field(default_factory=lambda: {"unit": "hours", "amount": 0.001})
    message: str | None = None  # the error message (default: "<code> happened")
    ai_usd: Any = "cost"  # the aiUsd sent: "cost" (the default) sends ``cost``


Script = Callable[[dict[str, Any], int], Behaviour]
StartFault = Callable[[dict[str, Any], int], "httpx.Response | Exception | None"]


@dataclass
class FakeTask:
    id: str
    body: dict[str, Any]
    created: float
    finish: float
    behaviour: Behaviour
    key: str | None


def _iso(t: float, origin: float) -> str:
    return (EPOCH + timedelta(seconds=t - origin)).isoformat().replace("+00:00", "Z")


@dataclass
class FakeAPI:
    script: Script = field(default=lambda body, occ: Behaviour())
    start_fault: StartFault | None = None
    result_fault: Callable[[str, int], httpx.Response | Exception | None] | None = None
    cap: int = 10
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    start_calls: int = 0
    result_calls: int = 0
    download_calls: int = 0
    violations: list[str] = field(default_factory=list)
    max_running: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _occ: dict[str, int] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _origin: float | None = None

    def __post_init__(self) -> None:
        if self._origin is None:
            self._origin = self.clock()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def accepted(self) -> int:
        return len(self.tasks)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "files.test":
            return self._download(request)
        if request.headers.get("x-api-key") != API_KEY:
            return httpx.Response(401, json={"code": "unauthorized", "message": "bad key"})
        path = request.url.path
        with self._lock:
            if path.endswith("/web-tasks/start"):
                return self._start(json.loads(request.content))
            if path.endswith("/result"):
                return self._result(path.split("/")[-2])
        return httpx.Response(404, json={"code": "not-found", "message": path})

    def _start(self, body: dict[str, Any]) -> httpx.Response:
        self.start_calls += 1
        fingerprint = json.dumps(body, sort_keys=True)
        occurrence = self._occ.get(fingerprint, 0)
        if self.start_fault is not None:
            fault = self.start_fault(body, self.start_calls)
            if isinstance(fault, Exception):
                if getattr(fault, "accepted", False):
                    self.accept(body, fingerprint, occurrence)
                raise fault
            if fault is not None:
                return fault
        task = self.accept(body, fingerprint, occurrence)
        return httpx.Response(200, json={"webTaskId": task.id, "status": "pending"})

    def accept(self, body: dict[str, Any], fingerprint: str, occurrence: int) -> FakeTask:
        """Accept a task as a start would (a test may also create one out of band)."""
        now = self.clock()
        key = body.get("reuseKey")
        running = [t for t in self.tasks.values() if t.finish > now]
        if len(running) >= self.cap:
            self.violations.append(f"{len(running) + 1} unfinished tasks at once")
        if key is not None and any(t.key == key for t in running):
            self.violations.append(f"two unfinished tasks with reuseKey {key!r}")
        self.max_running = max(self.max_running, len(running) + 1)
        self._occ[fingerprint] = occurrence + 1
        behaviour = self.script(body, occurrence)
        task = FakeTask(
            id=f"wt_{next(self._ids)}",
            body=body,
            created=now,
            finish=now + behaviour.duration,
            behaviour=behaviour,
            key=key,
        )
        self.tasks[task.id] = task
        return task

    def _result(self, task_id: str) -> httpx.Response:
        self.result_calls += 1
        if self.result_fault is not None:
            fault = self.result_fault(task_id, self.result_calls)
            if isinstance(fault, Exception):
                raise fault
            if fault is not None:
                return fault
        task = self.tasks.get(task_id)
        if task is None:
            return httpx.Response(404, json={"code": "not-found", "message": task_id})
        return httpx.Response(200, json=self.envelope(task))

    def _data(self, task: FakeTask) -> Any:
        if task.behaviour.data is not None:
            return task.behaviour.data
        params = {f"p_{k}": v for k, v in task.body.get("parameters", {}).items()}
        return [
            {"name": f"{task.id}-a", "n": 1, **params},
            {"name": f"{task.id}-b", "n": 2, **params},
        ]

    def _download(self, request: httpx.Request) -> httpx.Response:
        self.download_calls += 1
        assert "x-api-key" not in request.headers
        task = self.tasks[request.url.path.rsplit("/", 1)[-1].removesuffix(".json")]
        if request.url.params.get("sig") != "ok":
            return httpx.Response(403)
        return httpx.Response(200, content=json.dumps(self._data(task)).encode())

    def envelope(self, task: FakeTask) -> dict[str, Any]:
        now = self.clock()
        o = self._origin
        assert o is not None
        out: dict[str, Any] = {
            "webTaskId": task.id,
            "status": "started",
            "createdAt": _iso(task.created, o),
            "startedAt": _iso(task.created, o),
        }
        if now < task.finish:
            return out
        b = task.behaviour
        if b.outcome == "canceled":
            out.update(status="canceled", completedAt=_iso(task.finish, o))
            return out
        key = task.key or f"wtr_{task.id}"
        earlier = [
            t
            for t in self.tasks.values()
            if t.key == key and t.finish < task.created and t.behaviour.outcome == "success"
        ]
        out.update(
            status="completed",
            outcome=b.outcome,
            completedAt=_iso(task.finish, o),
            reuse={
                "key": key,
                "used": bool(earlier),
                "created": not earlier and b.outcome == "success",
                "updated": not earlier and b.outcome == "success",
                "revision_id": "rev_1",
                "revision_timestamp": _iso(task.finish, o),
            },
            cost={"aiUsd": b.cost if b.ai_usd == "cost" else b.ai_usd, "compute": b.compute},
        )
        if b.outcome == "success" and b.file:
            size = len(json.dumps(self._data(task)).encode())
            out["result"] = {
                "type": "file",
                "file": {
                    "url": f"https://files.test/results/{task.id}.json?sig=ok",
                    "contentType": "application/json",
                    "sizeBytes": size,
                    "expiresAt": "2099-01-01T00:00:00Z",
                },
            }
        elif b.outcome == "success":
            out["result"] = {"type": "inline", "data": self._data(task)}
        else:
            message = b.message or f"{b.code} happened"
            out["error"] = {"code": b.code or "internal-error", "message": message}
        return out


class AcceptedThenDropped(httpx.RemoteProtocolError):
    """A dropped connection after the server accepted the task (ambiguous)."""

    accepted = True
