"""One table of bad options through every entry point: ``read_webtask``, ``run_batch`` and
the CLI refuse the same values, naming the same field with the same message, and send
nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from webtask_frames import AsyncClient, Client, InvalidInputError, cli, read_webtask, run_batch
from webtask_frames._options import (
    DTYPE_BACKENDS,
    MODELS,
    VALIDATE_MODES,
    BatchOptions,
    ReadOptions,
    resolve_client,
)

BASE = "https://api.test/api/v1/workspace"


@dataclass
class Bad:
    """One bad option: the keyword arguments, its CLI spelling (None: no such flag) and
    whether ``read_webtask`` / ``run_batch`` take it."""

    field: str
    kwargs: dict[str, Any]
    argv: list[str] | None = None
    read: bool = True
    batch: bool = True


BAD = [
    Bad("validate", {"validate": "strict"}, ["--validate", "strict"]),
    Bad("record_path", {"record_path": "a..b"}, ["--record-path", "a..b"]),
    Bad("record_path", {"record_path": ""}, ["--record-path", ""]),
    Bad("record_path", {"record_path": 5}),
    Bad("cache_dir", {"cache_dir": 5}),
    Bad("client", {"client": object()}),
    Bad("output_schema", {"output_schema": {"type": "nope"}}, ["--schema", "bad.json"]),
    Bad("output_schema", {"output_schema": "missing.json"}, ["--schema", "missing.json"]),
    Bad("output_schema", {"output_schema": 5}),
    Bad("model", {"model": "gpt"}, ["--model", "gpt"]),
    Bad("start_url", {"start_url": "ftp://x"}, ["--start-url", "ftp://x"]),
    Bad("task", {"task": ""}),
    Bad("timeout", {"timeout": -1}, batch=False),
    Bad("dtype_backend", {"dtype_backend": "numpy"}, batch=False),
    Bad("max_concurrency", {"max_concurrency": 0}, ["--max-concurrency", "0"], read=False),
    Bad("max_concurrency", {"max_concurrency": True}, read=False),
    Bad("max_cost_usd", {"max_cost_usd": -1.0}, ["--max-cost-usd", "-1"], read=False),
    Bad("retry", {"retry": "twice"}, read=False),
    Bad("ledger", {"ledger": 5}, read=False),
    Bad(
        "max_age",
        {"max_age": -1, "ledger": "l.db"},
        ["--max-age", "-1", "--ledger", "l.db"],
        read=False,
    ),
    Bad(
        "max_age",
        {"max_age": "soon", "ledger": "l.db"},
        ["--max-age", "soon", "--ledger", "l.db"],
        read=False,
    ),
    Bad("max_age", {"max_age": "12h"}, ["--max-age", "12h"], read=False),
    Bad("retry_failed", {"retry_failed": True}, ["--retry-failed"], read=False),
    Bad("retry_failed", {"retry_failed": "yes", "ledger": "l.db"}, read=False),
    Bad("sink", {"sink": "out.duckdb"}, read=False),
    Bad("sink", {"sink": []}, read=False),
]


class Counter:
    """A MockTransport handler that counts requests (and answers none usefully)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(500)


def _client_kwargs(counter: Counter) -> dict[str, Any]:
    return {
        "api_key": "k" * 20,
        "workspace_id": "ws",
        "base_url": BASE,
        "transport": httpx.MockTransport(counter),
    }


def _refusal(call: Any) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        call()
    return info.value


def _per_item(message: str) -> tuple[str, str]:
    # A per-item field (start_url, ...) is reported on the grid item it broke.
    return message, f"grid item 0: {message}"


@pytest.mark.parametrize("bad", BAD, ids=lambda b: f"{b.field}={b.kwargs[b.field]!r}")
def test_every_entry_point_refuses_the_same_bad_option_before_any_request(
    bad: Bad,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"type": "nope"}))
    counter = Counter()
    kwargs = dict(bad.kwargs)
    task = kwargs.pop("task", "List companies")
    kwargs.setdefault("client", AsyncClient(**_client_kwargs(counter)))
    messages = []
    if bad.read:
        err = _refusal(lambda: read_webtask(task, **kwargs))
        assert err.field == bad.field
        messages.append(err.message)
    if bad.batch:
        err = _refusal(lambda: run_batch(task, {"q": ["a", "b"]}, progress=False, **kwargs))
        assert err.field == bad.field
        if messages:
            assert err.message in _per_item(messages[0])
        messages.append(err.message)
    assert messages[0].startswith(f"{bad.field}") or bad.field == "output_schema"
    assert "\n" not in messages[0]
    if bad.argv is not None:
        monkeypatch.setattr(cli, "Client", lambda **_: Client(**_client_kwargs(counter)))
        try:
            code = cli.main(["run", task, "--quiet", *bad.argv])
        except SystemExit as exc:  # argparse's own refusals (choices=)
            code = exc.code
        assert code == cli.EXIT_USAGE
        err_line = capsys.readouterr().err.strip()
        assert "\n" not in err_line
        if bad.argv[0] in ("--validate", "--model"):
            assert bad.argv[0] in err_line and repr(bad.argv[1]) in err_line
        else:
            assert err_line.removeprefix("webtask-frames: error: ") in _per_item(messages[-1])
    assert counter.requests == []


def test_cli_choices_are_the_checked_constants() -> None:
    parser = cli.build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    choices = {a.dest: a.choices for a in run._actions if a.choices}
    assert tuple(choices["validate"]) == VALIDATE_MODES
    assert tuple(choices["model"]) == MODELS
    assert DTYPE_BACKENDS == ("pyarrow", "numpy_nullable")


def test_options_are_built_once_and_frozen(tmp_path: Path) -> None:
    opts = BatchOptions.build(
        output_schema={"type": "object"}, ledger=tmp_path / "s.db", max_cost_usd=3
    )
    assert opts.read.cache_dir == tmp_path / "s.db.cache"
    assert opts.max_cost_usd == 3.0 and isinstance(opts.max_cost_usd, float)
    assert opts.read.schema is not None and opts.read.schema.schema == {"type": "object"}
    again = ReadOptions.build(output_schema=opts.read.schema)
    assert again.schema is opts.read.schema  # a plan is passed through, not re-checked
    with pytest.raises(AttributeError):
        opts.read.validate = "off"  # type: ignore[misc]


def test_resolve_client_owns_only_what_it_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter()
    mine = AsyncClient(**_client_kwargs(counter))
    assert resolve_client(mine) == (mine, False)
    sync = Client(**_client_kwargs(counter))
    assert resolve_client(sync) == (sync.async_client, False)
    sync.close()
    monkeypatch.setenv("INTUNED_API_KEY", "k" * 20)
    monkeypatch.setenv("INTUNED_WORKSPACE_ID", "ws")
    made, owned = resolve_client(None)
    assert owned and isinstance(made, AsyncClient)
    with pytest.raises(InvalidInputError, match="client: expected a webtask_frames Client"):
        resolve_client("nope")
