"""The simulated Web Tasks service: a lazily advanced discrete-event model.

No I/O and no background tasks. Every call reads the (virtual) clock and
replays all events up to "now" in time order: completions free workspace
slots and reuse-key locks, and freed slots are granted to waiting tasks at the
instant they were freed. Status is therefore exact no matter how often (or
rarely) clients poll, it works under ``httpx.ASGITransport`` and with a
:class:`~webtask_frames.sandbox.ManualClock`, and each event costs O(log n)
so 10,000 queued tasks are cheap.

Rules modelled (see web-tasks-overview.md):

* at most ``cap`` tasks hold a slot; ``cap_mode="queue"`` makes the rest wait
  ``pending`` in FIFO order, ``"fail"`` fails them with
  ``workspace-rate-limited`` (they never run: ``startedAt`` is null, no cost);
* runs sharing a ``reuseKey`` execute one at a time, FIFO per key;
* the first successful run of a key creates the saved automation; later runs
  use it, whatever their task text, start URL or parameters (the service ties
  an automation to its ``reuseKey``); a run whose output schema differs updates
  it (the code must produce another shape); failed runs never update it.
  Exploring runs (no usable automation) take about ``reuse_speedup`` times
  longer and cost more AI spend than reuse runs.
"""

from __future__ import annotations

import hashlib
import heapq
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from ._clock import VirtualTime
from ._config import ENDPOINTS, Behaviour, SandboxConfig
from ._validation import StartRequest

__all__ = ["SandboxState", "Task", "new_id"]

_NANOID_ALPHABET = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"

# AI spend model (USD). Relative model prices follow the public list-price
# ratios; exploring runs generate code and so burn several times more tokens.
_BASE_USD = 0.004
_MODEL_MULTIPLIER = {"haiku": 1.0, "sonnet": 3.0, "opus": 15.0}
_EXPLORE_MULTIPLIER = 6.0

ERROR_MESSAGES = {
    "workspace-rate-limited": "Workspace has reached its limit of {cap} concurrent web tasks.",
    "unauthenticated": "The website requires signing in; web tasks only support public sites.",
    "no-ai-credits-left": "No AI credits left in this workspace.",
    "internal-error": "Agent crashed before producing a result.",
    "timeout": "The web task did not finish within the time limit.",
    "rejected": "Could not open the page at {url}. The website may be down.",
}


def new_id(prefix: str, size: int = 21) -> str:
    """A nanoid-style random id: ``prefix`` + ``size`` URL-safe characters.

    Example:
        >>> len(new_id("wt_"))
        24
    """
    raw = secrets.token_bytes(size)
    return prefix + "".join(_NANOID_ALPHABET[b & 63] for b in raw)


def _unit(*parts: object) -> float:
    """A deterministic uniform number in [0, 1) derived from ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:7], "big") / float(1 << 56)


@dataclass(slots=True)
class _Revision:
    task_id: str
    at: float  # virtual instant the revision was saved
    code_fp: str


@dataclass(slots=True, eq=False)
class Task:
    """One web task. Plan fields are fixed at submit/grant; times are virtual."""

    id: str
    seq: int
    request: StartRequest
    behaviour: Behaviour
    key: str
    occurrence: int
    created: float
    rows: int
    outcome: str  # planned: success | failed | canceled
    error_code: str | None = None
    error_message: str | None = None
    runs: bool = True  # False: rejected without running (rate limited)
    granted: float | None = None
    started: float | None = None
    finished: float | None = None
    final: str | None = None  # "completed" | "canceled" once processed
    explore: bool = False
    reuse: dict[str, Any] | None = None
    ai_usd: float = 0.0
    compute_hours: float = 0.0
    # Filled lazily by the result renderer (the data is regenerated on demand).
    result_info: Any = None

    def status_at(self, now: float) -> str:
        if self.final is not None:
            return self.final
        if self.started is not None and now >= self.started:
            return "started"
        return "pending"


@dataclass(slots=True)
class _Counters:
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDPOINTS, 0))
    faults: dict[str, dict[str, int]] = field(default_factory=lambda: {e: {} for e in ENDPOINTS})
    rejected: dict[str, int] = field(default_factory=dict)
    downloads_with_credentials: int = 0
    accepted: int = 0
    duplicates: int = 0
    max_running: int = 0
    max_running_per_key: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {"success": 0, "failed": 0})
    error_codes: dict[str, int] = field(default_factory=dict)
    ai_usd: float = 0.0
    compute_hours: float = 0.0


class SandboxState:
    """Thread-safe simulation of one workspace's web tasks.

    Example:
        >>> from webtask_frames.sandbox import ManualClock, SandboxConfig
        >>> from webtask_frames.sandbox._validation import StartRequest
        >>> clock = ManualClock()
        >>> state = SandboxState(SandboxConfig(clock=clock, duration_s=5, start_latency_s=0))
        >>> task_id = state.submit(StartRequest(task="List YC companies"))
        >>> state.poll(task_id)[0]["status"]
        'started'
        >>> clock.advance(5)
        >>> state.poll(task_id)[0]["outcome"]
        'success'
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.time = VirtualTime(config.clock, time_scale=config.time_scale, epoch=config.epoch)
        self._lock = threading.RLock()
        self._init_state()

    def _init_state(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._pending: dict[str, deque[Task]] = {}
        self._ready: list[tuple[int, str]] = []  # heads of idle keys, by seq
        self._events: list[tuple[float, int, str]] = []  # (finish, seq, id)
        self._running: dict[str, int] = {}
        self._running_total = 0
        self._registry: dict[str, _Revision] = {}
        self._occurrences: dict[str, int] = {}
        self._schemas: dict[str, Any] = {}
        self._seq = 0
        self._counters = _Counters()

    # ------------------------------------------------------------------ API
    def now(self) -> float:
        """Current virtual time (seconds since the sandbox started)."""
        return self.time.now()

    def submit(self, request: StartRequest, *, task_id: str | None = None) -> str:
        """Accept a start request; returns the new ``webTaskId``."""
        with self._lock:
            now = self.time.now()
            self._advance(now)
            task = self._create(request, now, task_id or new_id("wt_"))
            self._tasks[task.id] = task
            self._counters.accepted += 1
            if task.runs:
                self._enqueue(task)
                self._schedule(now)
            else:
                latency = self.config.start_latency_s * (
                    0.5 + _unit(self.config.seed, "lat", task.id)
                )
                task.finished = now + latency
                task.reuse = self._reuse_block(task, None, task.finished)
                heapq.heappush(self._events, (task.finished, task.seq, task.id))
            self._advance(now)
            return task.id

    def poll(self, task_id: str) -> tuple[dict[str, Any], Task] | None:
        """The result envelope (without ``result``) and the task, or ``None``."""
        with self._lock:
            now = self.time.now()
            self._advance(now)
            task = self._tasks.get(task_id)
            if task is None:
                return None
            return self._envelope(task, now), task

    def cancel(self, task_id: str) -> bool | None:
        """Cancel a task now. ``None``: unknown id; ``False``: already terminal."""
        with self._lock:
            now = self.time.now()
            self._advance(now)
            task = self._tasks.get(task_id)
            if task is None:
                return None
            if task.final is not None:
                return False
            if task.runs and task.granted is None:
                self._dequeue(task)
            task.outcome = "canceled"
            task.finished = now
            heapq.heappush(self._events, (now, task.seq, task.id))
            self._advance(now)
            return True

    def get_task(self, task_id: str) -> Task | None:
        """The task as of now, for direct inspection in tests (do not mutate)."""
        with self._lock:
            self._advance(self.time.now())
            return self._tasks.get(task_id)

    def task_ids(self) -> list[str]:
        """All task ids in submission order."""
        with self._lock:
            return list(self._tasks)

    def reset(self) -> None:
        """Forget all tasks, saved automations and counters (time keeps running)."""
        with self._lock:
            self._init_state()

    def record_call(self, endpoint: str) -> None:
        with self._lock:
            self._counters.calls[endpoint] = self._counters.calls.get(endpoint, 0) + 1

    def record_fault(self, endpoint: str, kind: str) -> None:
        with self._lock:
            per = self._counters.faults.setdefault(endpoint, {})
            per[kind] = per.get(kind, 0) + 1

    def record_rejection(self, status: int) -> None:
        with self._lock:
            key = str(status)
            self._counters.rejected[key] = self._counters.rejected.get(key, 0) + 1

    def record_credentialed_download(self) -> None:
        with self._lock:
            self._counters.downloads_with_credentials += 1

    def stats(self) -> dict[str, Any]:
        """Counters and gauges as a JSON-able dict (see the README)."""
        with self._lock:
            now = self.time.now()
            self._advance(now)
            c = self._counters
            status_counts = {"pending": 0, "started": 0, "completed": 0, "canceled": 0}
            for task in self._tasks.values():
                status_counts[task.status_at(now)] += 1
            faults = {ep: dict(kinds) for ep, kinds in c.faults.items()}
            return {
                "start_calls": c.calls.get("start", 0),
                "result_calls": c.calls.get("result", 0),
                "download_calls": c.calls.get("download", 0),
                "downloads_with_credentials": c.downloads_with_credentials,
                "accepted_tasks": c.accepted,
                "duplicate_submissions": c.duplicates,
                "tasks": len(self._tasks),
                "running": self._running_total,
                "max_running": c.max_running,
                "max_running_per_key": c.max_running_per_key,
                "cap": self.config.cap,
                "status_counts": status_counts,
                "outcome_counts": dict(c.outcomes),
                "error_codes": dict(c.error_codes),
                "cost": {
                    "ai_usd": round(c.ai_usd, 6),
                    "compute_hours": round(c.compute_hours, 6),
                },
                "faults": faults,
                "faults_total": sum(sum(k.values()) for k in faults.values()),
                "rejected_requests": dict(c.rejected),
                "virtual_time_s": round(now, 3),
            }

    # ------------------------------------------------------------ internals
    def _create(self, request: StartRequest, now: float, task_id: str) -> Task:
        cfg = self.config
        if request.schema_fp is not None:
            # One copy of each schema, however many tasks of a sweep share it.
            shared = self._schemas.setdefault(request.schema_fp, request.output_schema)
            if shared is not request.output_schema:
                request = replace(request, output_schema=shared)
        behaviour = cfg.behaviour_for(request).merged(request.magic)
        fp = request.request_fp
        occurrence = self._occurrences.get(fp, 0)
        self._occurrences[fp] = occurrence + 1
        if occurrence:
            self._counters.duplicates += 1
        key = request.reuse_key or new_id("wtr_")
        self._seq += 1
        task = Task(
            id=task_id,
            seq=self._seq,
            request=request,
            behaviour=behaviour,
            key=key,
            occurrence=occurrence,
            created=now,
            rows=behaviour.rows if behaviour.rows is not None else cfg.rows,
            outcome="success",
        )
        self._plan_outcome(task, fp)
        if (
            task.runs
            and cfg.cap_mode == "fail"
            and self._running_total >= cfg.cap
            and key not in self._running
            and key not in self._pending
        ):
            self._fail(task, "workspace-rate-limited", runs=False)
        return task

    def _plan_outcome(self, task: Task, fp: str) -> None:
        cfg, b, occ = self.config, task.behaviour, task.occurrence
        if b.outcome == "canceled":
            task.outcome = "canceled"
            return
        if b.outcome == "failed" or (b.outcome is None and b.error_code is not None):
            code = (
                b.error_code
                or cfg.failure_codes[int(_unit(cfg.seed, "code", fp, occ) * len(cfg.failure_codes))]
            )
            self._fail(task, code, runs=code != "workspace-rate-limited")
            return
        if b.outcome == "success":
            return
        if _unit(cfg.seed, "rate-limited", fp, occ) < cfg.rate_limited_outcome_rate:
            self._fail(task, "workspace-rate-limited", runs=False)
        elif _unit(cfg.seed, "failure", fp, occ) < cfg.outcome_failure_rate:
            code = cfg.failure_codes[int(_unit(cfg.seed, "code", fp, occ) * len(cfg.failure_codes))]
            self._fail(task, code, runs=code != "workspace-rate-limited")

    def _fail(self, task: Task, code: str, *, runs: bool) -> None:
        task.outcome = "failed"
        task.error_code = code
        task.runs = runs
        message = task.behaviour.error_message
        if message is None:
            message = ERROR_MESSAGES[code].format(
                cap=self.config.cap, url=task.request.start_url or "the start URL"
            )
        task.error_message = message

    def _enqueue(self, task: Task) -> None:
        queue = self._pending.get(task.key)
        if queue is None:
            queue = self._pending[task.key] = deque()
            if task.key not in self._running:
                heapq.heappush(self._ready, (task.seq, task.key))
        queue.append(task)

    def _dequeue(self, task: Task) -> None:
        queue = self._pending.get(task.key)
        if queue is None:
            return
        was_head = bool(queue) and queue[0] is task
        queue.remove(task)
        if not queue:
            del self._pending[task.key]
        elif was_head and task.key not in self._running:
            heapq.heappush(self._ready, (queue[0].seq, task.key))

    def _schedule(self, t: float) -> None:
        """Grant free slots at instant ``t`` to idle keys' heads, oldest first."""
        cap = self.config.cap
        while self._ready and self._running_total < cap:
            seq, key = heapq.heappop(self._ready)
            queue = self._pending.get(key)
            if not queue or queue[0].seq != seq or key in self._running:
                continue  # stale entry (canceled head or key already busy)
            task = queue.popleft()
            if not queue:
                del self._pending[key]
            self._grant(task, t)

    def _grant(self, task: Task, t: float) -> None:
        cfg = self.config
        task.granted = t
        self._running_total += 1
        self._running[task.key] = self._running.get(task.key, 0) + 1
        c = self._counters
        c.max_running = max(c.max_running, self._running_total)
        c.max_running_per_key = max(c.max_running_per_key, self._running[task.key])
        revision = self._registry.get(task.key)
        task.explore = revision is None or revision.code_fp != task.request.code_fp
        latency = cfg.start_latency_s * (
            0.5 + _unit(cfg.seed, "lat", task.request.request_fp, task.occurrence)
        )
        task.started = t + latency
        task.finished = task.started + self._duration(task)
        self._price(task)
        if task.outcome != "canceled":
            task.reuse = self._reuse_block(task, revision, task.finished)
        heapq.heappush(self._events, (task.finished, task.seq, task.id))

    def _duration(self, task: Task) -> float:
        cfg, b = self.config, task.behaviour
        if b.duration_s is not None:
            return float(b.duration_s)
        if cfg.duration_s is not None:
            return float(cfg.duration_s)
        lo, hi = cfg.duration_range_s
        base = lo + (hi - lo) * _unit(cfg.seed, "duration", task.key)
        if not task.explore:
            base /= cfg.reuse_speedup
        jitter = 2.0 * _unit(cfg.seed, "jitter", task.request.request_fp, task.occurrence) - 1.0
        base *= 1.0 + cfg.duration_jitter * jitter
        if task.outcome == "failed":
            # Timeouts run to the limit; other failures end part-way through.
            share = _unit(cfg.seed, "fail-share", task.id)
            base *= 1.5 if task.error_code == "timeout" else 0.3 + 0.4 * share
        return base

    def _price(self, task: Task) -> None:
        cfg = self.config
        assert task.started is not None
        assert task.finished is not None
        task.compute_hours = round(max(0.0, task.finished - task.started) / 3600.0, 6)
        usd = _BASE_USD * _MODEL_MULTIPLIER.get(task.request.model, 1.0)
        usd *= _EXPLORE_MULTIPLIER if task.explore else 1.0
        usd *= 1.0 + task.rows / 100.0  # bigger results, more tokens
        usd *= 0.9 + 0.2 * _unit(cfg.seed, "usd", task.request.request_fp, task.occurrence)
        if task.outcome == "failed":
            usd *= 0.2 + 0.5 * _unit(cfg.seed, "fail-usd", task.id)
        task.ai_usd = round(usd, 6)

    def _reuse_block(self, task: Task, revision: _Revision | None, finish: float) -> dict[str, Any]:
        iso = self.time.iso
        if task.outcome == "success" and task.explore:
            return {
                "key": task.key,
                "used": revision is not None,
                "created": revision is None,
                "updated": True,
                "revision_id": task.id,
                "revision_timestamp": iso(finish),
            }
        if revision is None:
            # Nothing saved under the key: the run observed no revision, so it
            # reports itself (the SDK requires both fields).
            rev_id, rev_at = task.id, task.created
        else:
            rev_id, rev_at = revision.task_id, revision.at
        return {
            "key": task.key,
            "used": revision is not None and task.runs,
            "created": False,
            "updated": False,
            "revision_id": rev_id,
            "revision_timestamp": iso(rev_at),
        }

    def _advance(self, now: float) -> None:
        """Process every completion due at or before ``now``, in time order."""
        events = self._events
        while events and events[0][0] <= now:
            t, _, task_id = heapq.heappop(events)
            task = self._tasks.get(task_id)
            if task is None or task.final is not None or task.finished != t:
                continue  # superseded by a cancel
            self._finalize(task, t)
            self._schedule(t)

    def _finalize(self, task: Task, t: float) -> None:
        c = self._counters
        task.final = "canceled" if task.outcome == "canceled" else "completed"
        if task.granted is not None:
            self._running_total -= 1
            left = self._running[task.key] - 1
            if left:
                self._running[task.key] = left
            else:
                del self._running[task.key]
                queue = self._pending.get(task.key)
                if queue:
                    heapq.heappush(self._ready, (queue[0].seq, task.key))
        if task.final == "canceled":
            return
        c.outcomes[task.outcome] = c.outcomes.get(task.outcome, 0) + 1
        if task.error_code is not None:
            c.error_codes[task.error_code] = c.error_codes.get(task.error_code, 0) + 1
        c.ai_usd += task.ai_usd
        c.compute_hours += task.compute_hours
        if task.outcome == "success" and task.explore:
            self._registry[task.key] = _Revision(task.id, t, task.request.code_fp)

    def _envelope(self, task: Task, now: float) -> dict[str, Any]:
        iso = self.time.iso
        status = task.status_at(now)
        out: dict[str, Any] = {
            "webTaskId": task.id,
            "status": status,
            "createdAt": iso(task.created),
        }
        if status == "pending":
            return out
        assert task.finished is not None or status == "started"
        started = task.started
        if status == "started":
            assert started is not None
            out["startedAt"] = iso(started)
            return out
        assert task.finished is not None
        ran = started is not None and started <= task.finished
        if status == "canceled":
            out["startedAt"] = iso(started) if ran and started is not None else None
            out["completedAt"] = iso(task.finished)
            return out
        out["outcome"] = task.outcome
        out["startedAt"] = iso(started) if ran and started is not None else None
        out["completedAt"] = iso(task.finished)
        if task.reuse is not None:
            out["reuse"] = dict(task.reuse)
        out["cost"] = {
            "aiUsd": task.ai_usd,
            "compute": {"unit": "hours", "amount": task.compute_hours},
        }
        if task.outcome == "failed":
            out["error"] = {"code": task.error_code, "message": task.error_message}
        return out

    # Exposed for the stats endpoint and tests that want a quick look.
    def running(self) -> int:
        """Tasks holding a workspace slot right now."""
        with self._lock:
            self._advance(self.time.now())
            return self._running_total
