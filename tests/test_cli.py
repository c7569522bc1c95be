"""The CLI against a live sandbox: exact exit codes, outputs, and nothing sent on bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from webtask_frames.cli import main
from webtask_frames.sandbox import Sandbox

SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
    },
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(time_scale=0.005, seed=11, rows=5) as sb:
        yield sb


@pytest.fixture
def env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Sandbox:
    sandbox.reset()
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.csv").write_text("batch,industry\nS24,ai\nW24,ai\nS24,bio\n../x,a/b\n")
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    return sandbox


SWEEP = [
    "run",
    "List companies",
    "--grid",
    "grid.csv",
    "--schema",
    "schema.json",
    "--reuse-key",
    "k_{industry}",
    "--out",
    "out",
    "--partition-by",
    "batch",
    "--duckdb",
    "w.duckdb",
    "--table",
    "companies",
    "--quiet",
]


def test_sweep_lands_in_parquet_and_duckdb_and_reruns_merge(
    env: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(SWEEP) == 0
    assert capsys.readouterr() == ("", "")  # --quiet: nothing on success
    con = duckdb.connect("w.duckdb")
    rows = con.execute("select count(*) from companies").fetchone()
    assert rows == (20,)
    billed = env.stats()["cost"]["ai_usd"]
    ours = con.execute("select sum(cost_ai_usd) from companies_tasks").fetchone()
    assert ours is not None
    assert ours[0] == pytest.approx(billed)
    con.close()
    dataset = ds.dataset("out", format="parquet", partitioning="hive").to_table()
    assert dataset.num_rows == 20
    assert sorted(set(dataset.column("batch").to_pylist())) == ["../x", "S24", "W24"]
    assert all(
        p.resolve().is_relative_to((tmp_path / "out").resolve()) for p in Path("out").rglob("*")
    )
    assert main(SWEEP) == 0  # rerun: merge replaces, never duplicates
    con = duckdb.connect("w.duckdb")
    assert con.execute("select count(*) from companies").fetchone() == (20,)
    assert con.execute("select count(*) from companies_tasks").fetchone() == (4,)
    con.close()


def test_summary_is_printed_without_quiet(env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "List companies", "--param", "batch=S24", "--param", "n=3"]) == 0
    out = capsys.readouterr().out
    assert "status: 1 succeeded" in out
    assert "records: 5" in out
    task = env.state.get_task(env.state.task_ids()[0])
    assert task.request.parameters == {"batch": "S24", "n": 3}  # JSON-typed values


def test_failed_item_exits_1(env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    scripted = json.dumps({"outcome": "failed", "error_code": "timeout", "duration_s": 0.1})
    assert main(["run", "List", "--param", f"_sandbox={scripted}", "--quiet"]) == 1


def test_wrong_key_exits_3(
    env: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTUNED_API_KEY", "wrong-key")
    assert main(["run", "List", "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("webtask-frames: error:")
    assert "INTUNED_API_KEY" in err[0]
    assert "wrong-key" not in err[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "List", "--grid", "missing.csv"], "--grid"),
        (["run", "List", "--grid", "schema.json", "--schema", "nope.json"], "output_schema"),
        (["run", "List", "--param", "no-equals"], "--param"),
        (["run", "List", "--grid", "grid.csv", "--reuse-key", "k_{nope}"], "reuse_key"),
        (["run", "List", "--duckdb", "x.duckdb"], "--table"),
        (["run", "List", "--partition-by", "batch"], "--out"),
    ],
)
def test_bad_input_exits_2_and_sends_nothing(
    env: Sandbox, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert needle in err[0]
    assert env.stats()["start_calls"] == 0


def test_invalid_schema_exits_2(env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    Path("bad.json").write_text('{"type": "banana"}')
    assert main(["run", "List", "--schema", "bad.json"]) == 2
    assert "output_schema" in capsys.readouterr().err
    assert env.stats()["start_calls"] == 0


def test_missing_key_exits_2(
    env: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INTUNED_API_KEY")
    assert main(["run", "List"]) == 2
    assert "INTUNED_API_KEY" in capsys.readouterr().err
    assert env.stats()["start_calls"] == 0


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "List", "--model", "gpt"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_dry_run_sends_nothing(env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["run", "List", "--grid", "grid.csv", "--reuse-key", "k_{industry}", "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    assert "items: 4 in 3 reuse-key chains" in out
    assert env.stats()["start_calls"] == 0


@pytest.mark.parametrize("command", ["run", "sandbox", "demo"])
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "example" in capsys.readouterr().out.lower()


def test_demo_writes_duckdb_and_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "12 items over 3 reuse keys" in out
    con = duckdb.connect(str(tmp_path / "demo" / "demo.duckdb"))
    assert con.execute("select count(*) from companies_tasks").fetchone() == (12,)
    (rows,) = con.execute("select count(*) from companies").fetchone() or (0,)
    assert rows > 0
    con.close()
    assert len(list((tmp_path / "demo" / "companies").glob("batch=*/*.parquet"))) == 4


def test_unusable_out_is_refused_before_paying(
    env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("adir").mkdir()
    assert main(["run", "List", "--out", "adir", "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err
    assert env.stats()["start_calls"] == 0


def test_a_failed_write_rescues_the_paid_rows(
    env: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from webtask_frames import BatchResult

    def broken(self: BatchResult, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(BatchResult, "to_duckdb", broken)
    code = main(["run", "List", "--duckdb", "w.duckdb", "--table", "t", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "disk full" in err
    (rescue,) = Path().glob("webtask-frames-rescue-*.parquet")
    assert str(rescue) in err
    import pyarrow.parquet as pq

    assert pq.read_table(rescue).num_rows == 5
    assert env.stats()["start_calls"] == 1
