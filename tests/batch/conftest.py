"""Fixtures for batch tests: a scripted fake API and clients on it, on a manual clock.

The fake's tasks, the client's polls and retries and the engine's sleeps all run on one
``AutoJumpClock``: virtual time that jumps ahead whenever everything waits, so the tests
are fast and their timings do not depend on the machine's load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from batch.clock import AutoJumpClock
from batch.fakeapi import API_KEY, BASE_URL, WORKSPACE, FakeAPI

from webtask_frames import AsyncClient, BatchResult, RetryPolicy, run_batch_async
from webtask_frames._wire.polling import SystemClock


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> AutoJumpClock | SystemClock:
    """The manual clock; ``parametrize("clock", ["real"], indirect=True)`` gives the real
    one to a test that interrupts a run from outside (a real-time ``wait_for``)."""
    if getattr(request, "param", None) == "real":
        return SystemClock()
    return AutoJumpClock()


@pytest.fixture
def fake(clock: AutoJumpClock | SystemClock) -> FakeAPI:
    return FakeAPI(clock=clock.now)


@pytest.fixture
def make_client(fake: FakeAPI, clock: AutoJumpClock | SystemClock) -> Callable[..., AsyncClient]:
    """AsyncClients on the fake, with fast polling and fast HTTP retries."""

    def factory(**kwargs: Any) -> AsyncClient:
        kwargs.setdefault("poll_min_s", 0.005)
        kwargs.setdefault("poll_max_s", 0.05)
        kwargs.setdefault(
            "retry", RetryPolicy(backoff_base_s=0.001, backoff_cap_s=0.01, retry_after_min_s=0.001)
        )
        client = AsyncClient(
            api_key=API_KEY,
            workspace_id=WORKSPACE,
            base_url=BASE_URL,
            transport=fake.transport(),
            **kwargs,
        )
        client.clock = clock  # polls, retries and the batch engine all sleep on it
        return client

    return factory


@pytest.fixture
def run(make_client: Callable[..., AsyncClient]) -> Callable[..., BatchResult]:
    """``run(task, grid, **kwargs)``: run_batch_async on a fresh fake client, progress off."""

    def runner(
        task: str, grid: Any, *, client_kwargs: dict[str, Any] | None = None, **kw: Any
    ) -> BatchResult:
        kw.setdefault("progress", False)
        client = kw.pop("client", None) or make_client(**(client_kwargs or {}))

        async def go() -> BatchResult:
            async with client:
                return await run_batch_async(task, grid, client=client, **kw)

        return asyncio.run(go())

    return runner
