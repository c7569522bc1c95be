"""Fixtures for the sandbox tests: in-process clients, a manual clock, the reference schemas.

Everything is offline: in-process transports, or the threaded server on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from webtask_frames.sandbox import ManualClock, Sandbox

# The response schemas are part of the contract, so they live in the repository
# (tests/contract/README.md says where they come from): these tests never skip.
RESPONSES_FILE = Path(__file__).resolve().parents[1] / "contract" / "web-task-result.responses.json"


ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def strict_format_checker() -> FormatChecker:
    """jsonschema's checker plus date-time and uri (normally optional extras)."""
    checker = Draft202012Validator.FORMAT_CHECKER
    extra = FormatChecker(list(checker.checkers))
    for name, (func, raises) in checker.checkers.items():
        extra.checkers[name] = (func, raises)

    @extra.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.match(
            r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", value
        ):
            raise ValueError(value)
        dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return True

    @extra.checks("uri", raises=ValueError)
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        if not parts.scheme or " " in value:
            raise ValueError(value)
        return True

    return extra


class Api:
    """A thin client for the sandbox routes (sync, in-process)."""

    def __init__(self, sb: Sandbox, clock: ManualClock | None) -> None:
        self.sb = sb
        self.clock = clock
        self.client = httpx.Client(
            transport=sb.sync_transport(),
            base_url=sb.asgi_base_url,
            headers={"x-api-key": sb.api_key},
        )
        self.ws = sb.workspace_id
        self.origin = sb.asgi_base_url[: -len(sb.config.prefix)]

    def control(self, method: str, path: str) -> httpx.Response:
        """Call a ``/_sandbox/...`` endpoint (outside the API prefix)."""
        return self.client.request(method, self.origin + path)

    def start(self, body: Any = None, **fields: Any) -> httpx.Response:
        payload = body if body is not None else fields
        return self.client.post(f"/{self.ws}/web-tasks/start", json=payload)

    def start_id(self, **fields: Any) -> str:
        response = self.start(**fields)
        assert response.status_code == 200, response.text
        return str(response.json()["webTaskId"])

    def result_response(self, task_id: str) -> httpx.Response:
        return self.client.get(f"/{self.ws}/web-tasks/{task_id}/result")

    def result(self, task_id: str) -> dict[str, Any]:
        response = self.result_response(task_id)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, task_id: str, step: float = 1.0, limit: int = 100_000) -> dict[str, Any]:
        """Advance the manual clock until the task is terminal."""
        assert self.clock is not None
        for _ in range(limit):
            body = self.result(task_id)
            if body["status"] in ("completed", "canceled"):
                return body
            self.clock.advance(step)
        raise AssertionError(f"{task_id} did not finish")

    def download(self, url: str, **kwargs: Any) -> httpx.Response:
        # A file host is a different origin: never send the API key there.
        with httpx.Client(transport=self.sb.sync_transport()) as plain:
            return plain.get(url, **kwargs)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def make_api() -> Iterator[Callable[..., Api]]:
    """``make_api(**sandbox_options)`` -> Api with a ManualClock (``api.clock``)."""
    made: list[Api] = []

    def factory(**options: Any) -> Api:
        clock = options.pop("clock", None)
        if clock is None and "time_scale" not in options:
            clock = ManualClock()
        sb = Sandbox(clock=clock, **options)
        api = Api(sb, clock)
        made.append(api)
        return api

    yield factory
    for api in made:
        api.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """A default sandbox on a manual clock."""
    return make_api(seed=1)


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    """The reference response schemas, kept in tests/contract/."""
    return dict(json.loads(RESPONSES_FILE.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def format_checker() -> FormatChecker:
    """A format checker that also checks date-time and uri."""
    return strict_format_checker()


@pytest.fixture(scope="session")
def check_response(reference: dict[str, Any]) -> Callable[[int, Any], None]:
    """``check_response(status, body)`` validates against the reference schema."""
    validators = {
        status: Draft202012Validator(schema, format_checker=strict_format_checker())
        for status, schema in reference["responses"].items()
    }

    def check(status: int, body: Any) -> None:
        validator = validators[str(status)]
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{status} body does not match the reference: {errors[0].message}"

    return check
