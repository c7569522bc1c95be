"""Shared fixtures: a scripted mock API and a fast, sleep-free client for protocol tests,
and an in-process sandbox (``make_service``) for tests above the protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mockapi import API_KEY, BASE_URL, WORKSPACE, ScriptedAPI
from sandboxservice import MakeService, service_factory
from stepclock import StepClock

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

        client.clock = StepClock(sleeps)
        return client

    return factory


@pytest.fixture
def make_service() -> MakeService:
    """``make_service(*overrides, options=None, **behaviour)``: see ``sandboxservice``."""
    return service_factory()
