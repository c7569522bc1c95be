"""Settings resolution: explicit arguments win over the environment, errors name the fix."""

from __future__ import annotations

import pytest

from webtask_frames import AsyncClient, Client, ConfigurationError, InvalidInputError, PollPolicy
from webtask_frames._wire.config import DEFAULT_BASE_URL, Settings

ENV = {
    "INTUNED_API_KEY": "env-key-0123456789",
    "INTUNED_WORKSPACE_ID": "env-ws",
    "INTUNED_BASE_URL": "https://env.test/api",
}


def test_environment_fills_missing_arguments() -> None:
    s = Settings.resolve(env=ENV)
    assert (s.api_key, s.workspace_id, s.base_url) == (
        "env-key-0123456789",
        "env-ws",
        "https://env.test/api",
    )


def test_explicit_arguments_win() -> None:
    s = Settings.resolve("arg-key", "arg-ws", "https://arg.test/x/", env=ENV)
    assert (s.api_key, s.workspace_id, s.base_url) == ("arg-key", "arg-ws", "https://arg.test/x")


def test_default_base_url_is_the_sdks() -> None:
    assert Settings.resolve("k", "ws", env={}).base_url == DEFAULT_BASE_URL
    assert DEFAULT_BASE_URL == "https://app.intuned.io/api/v1/workspace"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"INTUNED_WORKSPACE_ID": "ws"}, "INTUNED_API_KEY"),
        ({"INTUNED_API_KEY": "k"}, "INTUNED_WORKSPACE_ID"),
        ({"INTUNED_API_KEY": "", "INTUNED_WORKSPACE_ID": "ws"}, "INTUNED_API_KEY"),
    ],
)
def test_missing_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Settings.resolve(env=env)


def test_client_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert AsyncClient().base_url == "https://env.test/api"
    monkeypatch.delenv("INTUNED_API_KEY")
    with pytest.raises(ConfigurationError, match="INTUNED_API_KEY"):
        Client()


def test_policy_and_concurrency_validation() -> None:
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        AsyncClient("k", "ws", max_concurrency=0)
    with pytest.raises(InvalidInputError, match="poll_max_s"):
        AsyncClient("k", "ws", poll_min_s=5, poll_max_s=1)
    p = PollPolicy(min_s=1, max_s=15, jitter=0)
    intervals = [1.0]
    for _ in range(10):
        intervals.append(p.next_interval(intervals[-1]))
    assert intervals[:4] == [1.0, 1.5, 2.25, 3.375]
    assert intervals[-1] == 15.0
