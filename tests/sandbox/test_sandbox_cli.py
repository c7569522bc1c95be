"""The sandbox CLI: option mapping, config files, error exits and a real served process."""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from webtask_frames.sandbox import ConfigError
from webtask_frames.sandbox._cli import build_config, configure_parser, run


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webtask-frames sandbox")
    configure_parser(parser)
    return parser.parse_args(list(argv))


def test_flags_map_to_config() -> None:
    config = build_config(
        _parse(
            "--api-key", "k", "--workspace-id", "ws", "--duration-s", "0.5", "--rows", "7",
            "--inline-max-bytes", "100", "--cap", "3", "--cap-mode", "fail", "--seed", "9",
            "--time-scale", "0.1", "--file-format", "ndjson", "--failure-codes", "timeout,rejected",
            "--outcome-failure-rate", "0.2", "--fault-503", "0.1", "--fault-drop", "0.05",
            "--fault-endpoints", "result,download",
        )
    )  # fmt: skip
    assert (config.api_key, config.workspace_id, config.rows, config.cap) == ("k", "ws", 7, 3)
    assert (config.cap_mode, config.seed, config.time_scale) == ("fail", 9, 0.1)
    assert config.duration_s == 0.5
    assert config.inline_max_bytes == 100
    assert config.file_format == "ndjson"
    assert config.failure_codes == ("timeout", "rejected")
    assert config.faults["result"].http_503 == 0.1
    assert config.faults["download"].drop == 0.05
    assert not config.faults["start"].any


def test_config_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(
        json.dumps(
            {
                "cap": 4,
                "seed": 1,
                "faults": {"*": {"429": 0.1}},
                "overrides": [
                    {"parameters": {"batch": "W21"}, "outcome": "failed", "error_code": "timeout"}
                ],
            }
        )
    )
    config = build_config(_parse("--config", str(path), "--seed", "2"))
    assert config.cap == 4
    assert config.seed == 2  # the flag wins over the file
    assert config.faults["start"].http_429 == 0.1
    assert config.overrides[0].behaviour.error_code == "timeout"


@pytest.mark.parametrize(
    ("argv", "content"),
    [
        (["--cap", "0"], None),
        (["--fault-429", "1.5"], None),
        (["--fault-endpoints", "nope", "--fault-500", "0.1"], None),
        (["--fault-endpoints", "result"], None),
        (["--config", "{file}"], "{not json"),
        (["--config", "{file}"], '{"unknown_option": 1}'),
        (["--config", "/nonexistent/sandbox.json"], None),
    ],
)
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], content: str | None
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    args = _parse(*(a.replace("{file}", str(path)) for a in argv))
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("webtask-frames sandbox: error: ")
    assert err.count("\n") == 1


def test_build_config_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        build_config(_parse("--cap-mode", "fail", "--cap", "-1"))


def test_port_in_use_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert run(_parse("--port", str(port))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"webtask-frames sandbox: error: cannot listen on 127.0.0.1:{port}")
    assert "--port" in err
    assert err.count("\n") == 1


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("--help")
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "--fault-drop" in out
    assert "_sandbox" in out


def test_module_entry_point_serves(tmp_path: Path) -> None:
    """``python -m webtask_frames.sandbox`` prints the export line and serves the API.

    No wall-clock bound: how fast a subprocess starts depends on the machine's load.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "webtask_frames.sandbox", "--port", "0", "--time-scale", "0.001"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(
            r"INTUNED_BASE_URL=(\S+) INTUNED_API_KEY=(\S+) INTUNED_WORKSPACE_ID=(\S+)", line
        )
        assert match, line
        base_url, key, workspace = match.groups()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1/workspace", base_url)
        with httpx.Client(base_url=base_url, headers={"x-api-key": key}) as client:
            task_id = client.post(f"/{workspace}/web-tasks/start", json={"task": "x"}).json()[
                "webTaskId"
            ]
            body: dict[str, Any] = {}
            for _ in range(200):
                body = client.get(f"/{workspace}/web-tasks/{task_id}/result").json()
                if body["status"] == "completed":
                    break
                time.sleep(0.02)
        assert body["outcome"] == "success"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
