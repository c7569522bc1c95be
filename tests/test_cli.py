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
    # No ledger: the rerun paid again, and every billed task is one row.
    assert con.execute("select count(*) from companies_tasks").fetchone() == (8,)
    total = con.execute("select sum(cost_ai_usd) from companies_tasks").fetchone()
    assert total is not None and total[0] == pytest.approx(env.stats()["cost"]["ai_usd"])
    con.close()
    assert ds.dataset("out", format="parquet", partitioning="hive").to_table().num_rows == 20


def test_a_grown_grid_with_a_ledger_pays_only_for_new_items(
    env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = [*SWEEP, "--ledger", "l.db"]
    assert main(sweep) == 0
    assert env.stats()["start_calls"] == 4
    with Path("grid.csv").open("a") as f:  # next month: one more row in the grid
        f.write("F24,ai\n")
    assert main(sweep) == 0
    assert env.stats()["start_calls"] == 5  # only the new item was started
    con = duckdb.connect("w.duckdb")
    per_item = con.execute(
        "SELECT count(DISTINCT _item_key), count(DISTINCT _webtask_id) FROM companies"
    ).fetchone()
    assert per_item == (5, 5)
    assert con.execute("SELECT count(*) FROM companies_tasks").fetchone() == (5,)
    total = con.execute("SELECT sum(cost_ai_usd) FROM companies_tasks").fetchone()
    assert total is not None and total[0] == pytest.approx(env.stats()["cost"]["ai_usd"])
    con.close()
    assert ds.dataset("out", format="parquet", partitioning="hive").to_table().num_rows == 25
    assert main([*sweep, "--max-age", "0s"]) == 0  # refresh everything: 5 more starts
    assert env.stats()["start_calls"] == 10
    con = duckdb.connect("w.duckdb")
    assert con.execute("SELECT count(*) FROM companies").fetchone() == (25,)  # replaced
    con.close()


def test_rerun_flags_need_a_ledger(env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "List", "--retry-failed", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "retry_failed" in err and "ledger" in err
    assert main(["run", "List", "--max-age", "soon", "--ledger", "l.db", "--quiet"]) == 2
    assert "'12h'" in capsys.readouterr().err
    assert env.stats()["start_calls"] == 0


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


@pytest.mark.parametrize("out", ["rows.parquet", "rows.csv"])
def test_wrong_key_says_it_once_and_writes_no_file(
    env: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    monkeypatch.setenv("INTUNED_API_KEY", "wrong-key")
    assert main(["run", "List", "--grid", "grid.csv", "--out", out]) == 3  # not --quiet
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("Invalid API key") == 1
    assert captured.err.strip().splitlines()[-1].startswith("webtask-frames: error:")
    assert not Path(out).exists()
    assert sorted(p.name for p in Path().iterdir()) == ["grid.csv", "schema.json"]


@pytest.mark.parametrize("suffix", [".csv", ".ndjson", ".jsonl", ".json", ".parquet"])
def test_out_format_follows_the_extension(
    env: Sandbox, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    import pandas as pd

    out = f"rows{suffix}"
    argv = ["run", "List", "--grid", "grid.csv", "--schema", "schema.json", "--out", out]
    assert main([*argv, "--quiet"]) == 0
    data = Path(out).read_bytes()
    assert not data.startswith(b"PAR1") or suffix == ".parquet"
    if suffix == ".csv":
        frame = pd.read_csv(out)
    elif suffix == ".json":
        frame = pd.DataFrame(json.loads(data))
    elif suffix == ".parquet":
        frame = pd.read_parquet(out)
    else:
        frame = pd.DataFrame([json.loads(line) for line in data.splitlines()])
    assert len(frame) == 20
    assert {"name", "size", "batch", "industry", "_webtask_id"} <= set(frame.columns)
    assert sorted(set(frame["batch"])) == ["../x", "S24", "W24"]
    assert [p.name for p in Path().glob(".rows*")] == []  # no temporary file left behind


def test_csv_out_writes_nested_values_as_json(env: Sandbox) -> None:
    nested = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string"}},
                "hq": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
    }
    Path("nested.json").write_text(json.dumps(nested))
    assert main(["run", "List", "--schema", "nested.json", "--out", "n.csv", "--quiet"]) == 0
    import csv

    with Path("n.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    assert all(isinstance(json.loads(r["tags"]), list) for r in rows if r["tags"])
    assert all(isinstance(json.loads(r["hq"]), dict) for r in rows if r["hq"])


@pytest.mark.parametrize("out", ["rows.txt", "rows.xlsx", "rows.duckdb"])
def test_unknown_out_extension_is_refused_before_any_request(
    env: Sandbox, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    assert main(["run", "List", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("webtask-frames: error: --out")
    assert ".csv" in err[0] or "--duckdb" in err[0]
    assert env.stats()["start_calls"] == 0
    assert not Path(out).exists()


def test_repeated_param_is_an_error(env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "List", "--param", "a=1", "--param", "a=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--param a" in err[0]
    assert env.stats()["start_calls"] == 0


def test_missing_key_error_names_the_cli_flag_and_variable(
    env: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INTUNED_API_KEY")
    assert main(["run", "List"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--api-key" in err[0]
    assert "INTUNED_API_KEY" in err[0]
    assert "api_key" not in err[0]
    assert "=..." not in err[0]


def test_missing_workspace_error_names_the_cli_flag(
    env: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INTUNED_WORKSPACE_ID")
    assert main(["run", "List"]) == 2
    err = capsys.readouterr().err
    assert "--workspace-id" in err
    assert "workspace_id=" not in err
    assert env.stats()["start_calls"] == 0


def test_api_key_and_workspace_flags(
    env: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INTUNED_API_KEY")
    monkeypatch.delenv("INTUNED_WORKSPACE_ID")
    argv = ["run", "List", "--api-key", env.api_key, "--workspace-id", env.workspace_id]
    assert main([*argv, "--quiet"]) == 0
    assert env.stats()["start_calls"] == 1


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


@pytest.mark.parametrize("command", ["run", "sql", "sandbox", "demo"])
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "example" in capsys.readouterr().out.lower()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo, run once: its output directory and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo") / "demo out"  # a space: suggestions must quote it
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out, printed.getvalue()


def test_demo_writes_duckdb_and_parquet(demo: tuple[Path, str]) -> None:
    out, printed = demo
    assert "12 items over 3 reuse keys" in printed
    con = duckdb.connect(str(out / "demo.duckdb"))
    assert con.execute("select count(*) from companies_tasks").fetchone() == (12,)
    (rows,) = con.execute("select count(*) from companies").fetchone() or (0,)
    assert rows > 0
    con.close()
    files = list((out / "companies").glob("batch_dir=*/*.parquet"))
    assert len(files) == 12 and len({f.parent for f in files}) == 4  # a file per item


def test_every_suggestion_the_demo_prints_runs(
    demo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each "explore it" line runs with what the install gave: `webtask-frames` or Python."""
    import shlex
    import subprocess
    import sys

    _, printed = demo
    lines = printed.split("explore it:\n", 1)[1].splitlines()
    suggestions = [shlex.split(line) for line in lines if line.startswith("  ")]
    assert len(suggestions) >= 4
    assert {argv[0] for argv in suggestions} <= {"webtask-frames", "python"}
    for argv in suggestions:
        if argv[0] == "webtask-frames":
            assert main(argv[1:]) == 0, argv
            shown = capsys.readouterr()
            assert shown.err == ""
            assert "│" in shown.out  # a table with the result
        else:
            done = subprocess.run(
                [sys.executable, *argv[1:]], capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, done.stderr
            assert "name" in done.stdout


def _demo_db(demo: tuple[Path, str]) -> str:
    return str(demo[0] / "demo.duckdb")


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "table"])
def test_sql_formats(demo: tuple[Path, str], capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    query = "SELECT name, tags, hq FROM companies ORDER BY name LIMIT 3"
    assert main(["sql", _demo_db(demo), query, "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "csv":
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == 3
        assert isinstance(json.loads(rows[0]["tags"]), list)
    elif fmt == "json":
        rows = json.loads(out)
        assert [set(r) for r in rows] == [{"name", "tags", "hq"}] * 3
    elif fmt == "ndjson":
        assert len([json.loads(line) for line in out.splitlines()]) == 3
    else:
        assert "name" in out
        assert len([line for line in out.splitlines() if line.startswith("│")]) == 2 + 3


def test_sql_is_read_only_by_default(
    demo: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    database = str(tmp_path / "w.duckdb")
    duckdb.connect(database).close()
    assert main(["sql", database, "CREATE TABLE t AS SELECT 1 AS a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--write" in err[0]
    assert main(["sql", database, "CREATE TABLE t AS SELECT 1 AS a", "--write"]) == 0
    assert main(["sql", database, "SELECT a FROM t", "--format", "ndjson"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == '{"a": 1}'


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sql", "missing.duckdb", "SELECT 1"], "missing.duckdb"),
        (["sql", "{db}", "SELECT * FROM nope"], "nope"),
        (["sql", "{db}", "SELEC oops"], "syntax"),
    ],
)
def test_sql_errors_are_one_line_and_exit_2(
    demo: tuple[Path, str], capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    argv = [a.replace("{db}", _demo_db(demo)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("webtask-frames: error: sql:")
    assert needle in err[0]


def test_sql_in_memory_reads_files(
    demo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    pattern = str(demo[0] / "companies" / "*" / "*.parquet").replace("'", "''")
    query = (
        f"SELECT count(DISTINCT batch) AS n FROM read_parquet('{pattern}', hive_partitioning=true)"
    )
    assert main(["sql", ":memory:", query, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 4}]


def test_unusable_out_is_refused_before_paying(
    env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("afile").write_text("not a directory")
    assert main(["run", "List", "--out", "afile", "--partition-by", "batch", "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err
    assert env.stats()["start_calls"] == 0


def test_a_failed_write_rescues_the_paid_rows(
    env: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:

    from webtask_frames import DuckDBSink

    def broken(self: DuckDBSink, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(DuckDBSink, "land", broken)
    code = main(["run", "List", "--duckdb", "w.duckdb", "--table", "t", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "disk full" in err
    (rescue,) = Path().glob("webtask-frames-rescue-*.parquet")
    assert str(rescue) in err
    import pyarrow.parquet as pq

    assert pq.read_table(rescue).num_rows == 5
    assert env.stats()["start_calls"] == 1
