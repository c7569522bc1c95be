"""Fixtures for the frames tests (the fake service lives in fakeservice.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from frames.fakeservice import FakeService, client_for

from webtask_frames import AsyncClient


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def client(service: FakeService) -> Callable[[], AsyncClient]:
    return lambda: client_for(service)
