"""Shared fixtures: a scripted mock API and a fast, sleep-free client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mockapi import API_KEY, BASE_URL, WORKSPACE, ScriptedAPI

from webtask_frames import AsyncClient, RetryPolicy


class RecordingClock:
    """A virtual ``Clock``: ``sleep`` records the delay and advances time at once.

    Example:
        >>> clock = RecordingClock([])
        >>> asyncio.run(clock.sleep(2.5))
        >>> clock.now(), clock.sleeps
        (1002.5, [2.5])
    """

    def __init__(self, sleeps: list[float], start: float = 1000.0) -> None:
        self.sleeps = sleeps
        self._now = start

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += seconds


@pytest.fixture
def api() -> ScriptedAPI:
    return ScriptedAPI()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(api: ScriptedAPI, sleeps: list[float]) -> Callable[..., AsyncClient]:
    """Build AsyncClients on the scripted transport whose sleeps are recorded, not slept."""

    def factory(**kwargs: Any) -> AsyncClient:
        kwargs.setdefault("retry", RetryPolicy())
        client = AsyncClient(
            api_key=API_KEY,
            workspace_id=WORKSPACE,
            base_url=BASE_URL,
            transport=httpx.MockTransport(api),
            **kwargs,
        )

        client.clock = RecordingClock(sleeps)
        return client

    return factory
