"""Reliability against the sandbox: faults, the server's view of concurrency, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from webtask_frames import AsyncClient, BatchResult, RetryPolicy, run_batch, run_batch_async
from webtask_frames.sandbox import Sandbox

RUNNER = Path(__file__).with_name("sweep_runner.py")
TASK = "List the companies of this source"


def server_discipline(sb: Sandbox, cap: int = 10) -> tuple[int, int]:
    """(most unfinished tasks at once, most unfinished tasks of one key at once), from the
    server's own record of every task's creation and completion (virtual time)."""
    events: list[tuple[float, int, str]] = []
    for task_id in sb.state.task_ids():
        task = sb.state.get_task(task_id)
        assert task is not None and task.finished is not None
        events.append((task.created, 1, task.key))
        events.append((task.finished, -1, task.key))
    events.sort(key=lambda e: (e[0], e[1]))  # a finish frees its slot before a start
    total, per_key, worst, worst_key = 0, dict[str, int](), 0, 0
    for _, delta, key in events:
        total += delta
        per_key[key] = per_key.get(key, 0) + delta
        worst, worst_key = max(worst, total), max(worst_key, per_key[key])
    return worst, worst_key


def sweep(n_items: int, n_keys: int) -> list[dict[str, Any]]:
    return [{"company": f"c{i:04d}", "source": f"s{i % n_keys:02d}"} for i in range(n_items)]


def fault_run(n_items: int, n_keys: int, seed: int) -> tuple[BatchResult, dict[str, Any], Sandbox]:
    faults = {
        "start": {"429": 0.05, "503": 0.05},  # provably not accepted: retried safely
        "result": {"429": 0.03, "503": 0.04, "drop": 0.03},
        "download": {"503": 0.05, "drop": 0.05},
    }
    sb = Sandbox(
        seed=seed,
        time_scale=0.02,
        cap=50,  # the server would allow more: the batch must keep itself to 10
        faults=faults,
        rate_limited_outcome_rate=0.10,
        retry_after_s=0,
        rows=5,
    )
    client = AsyncClient(
        api_key=sb.api_key,
        workspace_id=sb.workspace_id,
        base_url=sb.asgi_base_url,
        transport=sb.transport(),
        poll_min_s=0.02,
        poll_max_s=0.2,
        retry=RetryPolicy(
            max_attempts=8, backoff_base_s=0.01, backoff_cap_s=0.1, retry_after_min_s=0.01
        ),
    )

    async def go() -> BatchResult:
        async with client:
            return await run_batch_async(
                TASK,
                sweep(n_items, n_keys),
                reuse_key="src_{source}",
                client=client,
                progress=False,
            )

    result = asyncio.run(go())
    return result, sb.stats(), sb


@pytest.mark.parametrize("seed", [1, 2])
def test_every_item_succeeds_through_faults_and_rate_limits(seed: int) -> None:
    result, stats, sb = fault_run(60, 12, seed)
    assert result.ok, result.failed[["_item", "status", "error_code", "error_message"]]
    assert result.n_records == 60 * 5
    assert stats["faults_total"] > 0 and stats["error_codes"].get("workspace-rate-limited", 0) > 0
    assert stats["max_running"] <= 10 and stats["max_running_per_key"] <= 1
    assert server_discipline(sb) <= (10, 1)
    assert stats["accepted_tasks"] == 60 + stats["error_codes"]["workspace-rate-limited"]


@pytest.mark.soak
def test_every_item_succeeds_through_faults_soak() -> None:
    result, stats, sb = fault_run(200, 20, 7)
    assert result.ok and result.n_records == 200 * 5
    assert stats["max_running"] <= 10 and server_discipline(sb) <= (10, 1)


def test_client_from_the_environment_is_used_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox(seed=3, time_scale=0.01, rows=2) as sb:
        for name, value in sb.env().items():
            monkeypatch.setenv(name, value)
        result = run_batch(TASK, {"source": ["a", "b"]}, reuse_key="k_{source}", progress=False)
        assert result.ok and result.n_records == 4
        assert result.requests["start"] == 2


# -- kill -9 -------------------------------------------------------------------------


def start_runner(
    sb: Sandbox, ledger: Path, n: int, keys: int, *, resubmit: bool
) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        str(RUNNER),
        sb.base_url,
        sb.api_key,
        sb.workspace_id,
        str(ledger),
        str(n),
        str(keys),
    ]
    if resubmit:
        args.append("--resubmit")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTUNED_")}
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def kill_somewhere(
    proc: subprocess.Popen[str], sb: Sandbox, rng: random.Random, window: float
) -> bool:
    """SIGKILL the runner at a random moment after its first submission; False if it
    finished first."""
    accepted = sb.stats()["accepted_tasks"]
    deadline = time.monotonic() + 60
    while sb.stats()["accepted_tasks"] == accepted and proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError("the runner never submitted")
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, window))
    if proc.poll() is not None:
        proc.communicate()
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    return True


def finish(sb: Sandbox, ledger: Path, n: int, keys: int) -> dict[str, Any]:
    proc = start_runner(sb, ledger, n, keys, resubmit=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return dict(json.loads(out.strip().splitlines()[-1]))


def crash_trial(tmp_path: Path, seed: int, n: int, keys: int, kills: int, window: float) -> None:
    rng = random.Random(seed)
    ledger = tmp_path / f"sweep-{seed}.db"
    with Sandbox(seed=seed, time_scale=0.05, rows=3) as sb:
        killed = 0
        for attempt in range(kills):
            proc = start_runner(sb, ledger, n, keys, resubmit=attempt > 0)
            if not kill_somewhere(proc, sb, rng, window):
                break  # it finished before the kill
            killed += 1
        summary = finish(sb, ledger, n, keys)
        stats = sb.stats()
    extra = stats["accepted_tasks"] - n
    print(f"seed={seed} kills={killed} extra={extra} ambiguous={summary['ambiguous_attempts']}")
    assert killed >= 1
    assert summary["ok"], summary["counts"]
    assert summary["records"] == n * 3
    assert len(set(summary["webtask_ids"])) == n
    # Every submission beyond one per item is a POST a kill cut between send and ledger
    # write, and each of those is reported (ambiguous_attempts, from the ledger).
    assert 0 <= extra <= summary["ambiguous_attempts"], (extra, summary)
    assert stats["duplicate_submissions"] == extra
    assert stats["max_running_per_key"] <= 1 and stats["max_running"] <= 10


@pytest.mark.parametrize("seed", [11, 12])
def test_kill_9_and_resume_pays_at_most_the_reported_ambiguous(tmp_path: Path, seed: int) -> None:
    crash_trial(tmp_path, seed, n=40, keys=8, kills=2, window=0.5)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(100, 110))
def test_kill_9_and_resume_soak(tmp_path: Path, seed: int) -> None:
    crash_trial(tmp_path, seed, n=200, keys=20, kills=3, window=2.0)
