"""Shared fixtures: a scripted mock API and a fast, sleep-free client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mockapi import API_KEY, BASE_URL, WORKSPACE, ScriptedAPI

from webtask_frames import AsyncClient, RetryPolicy


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

        now = [1000.0]

        async def fake_sleep(seconds: float) -> None:
            # Virtual time: sleeping advances the client's clock instantly.
            sleeps.append(seconds)
            now[0] += seconds

        client._sleep = fake_sleep
        client._clock = lambda: now[0]
        return client

    return factory
