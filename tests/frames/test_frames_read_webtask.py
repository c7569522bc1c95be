"""read_webtask end to end on the in-process sandbox: inline and file results, cache, failures."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sandboxservice import MakeService

from webtask_frames import (
    Client,
    DownloadError,
    InvalidInputError,
    SchemaValidationError,
    TaskCanceledError,
    TaskFailedError,
    WaitTimeoutError,
    read_webtask,
    read_webtask_arrow,
    read_webtask_arrow_async,
    read_webtask_async,
    read_webtask_result,
)
from webtask_frames._materialize import materialize

SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "employees": {"type": ["integer", "null"]},
            "stage": {"enum": ["seed", "series_a"]},
            "founded": {"type": "string", "format": "date"},
        },
        "required": ["name"],
    },
}
ROWS = [
    {"name": "Acme", "employees": 10, "stage": "seed", "founded": "2020-01-02"},
    {"name": "Beta", "employees": None, "stage": "series_a", "founded": "2021-03-04"},
]
BAD = [*ROWS, {"employees": "many", "stage": "ipo"}]


def test_inline_typed_frame_params_and_attrs(make_service: MakeService) -> None:
    service = make_service(data=ROWS, options={"duration_s": 55.0})
    df = read_webtask(
        "List companies",
        parameters={"batch": "S24", "name": "ignored"},
        output_schema=SCHEMA,
        reuse_key="yc",
        client=service.client(),
    )
    task = service.task()
    assert list(df.columns) == ["name", "employees", "stage", "founded", "batch", "_webtask_id"]
    assert all(isinstance(t, pd.ArrowDtype) for t in df.dtypes)
    assert df["employees"].dtype == pd.ArrowDtype(pa.int64())
    assert df["name"].tolist() == ["Acme", "Beta"]  # the record's field wins over the param
    assert df["batch"].tolist() == ["S24", "S24"]
    assert df["_webtask_id"].tolist() == [task.id, task.id]
    meta = df.attrs["webtask"]
    assert meta["webtask_id"] == task.id
    assert meta["outcome"] == "success"
    assert task.ai_usd > 0 and task.compute_hours > 0
    assert meta["cost"] == {"ai_usd": task.ai_usd, "compute_hours": task.compute_hours}
    assert meta["reuse"]["key"] == "yc"
    assert meta["n_records"] == 2
    assert meta["n_invalid"] == 0
    assert task.started is not None and task.finished is not None
    assert meta["duration_s"] == task.finished - task.started >= 55.0
    json.dumps(meta)  # JSON-friendly
    assert task.request.output_schema == SCHEMA
    assert task.request.parameters == {"batch": "S24", "name": "ignored"}


def test_numpy_nullable_backend(make_service: MakeService) -> None:
    service = make_service(data=ROWS)
    df = read_webtask(
        "t", output_schema=SCHEMA, client=service.client(), dtype_backend="numpy_nullable"
    )
    assert str(df["employees"].dtype) == "Int64"
    assert df["stage"].dtype == "category"
    assert df["employees"].isna().tolist() == [False, True]


def test_sync_client_async_and_arrow_variants(make_service: MakeService) -> None:
    service = make_service(data={"total": 2, "companies": ROWS})
    with service.sync_client() as sync_client:
        table = read_webtask_arrow("t", client=sync_client)
    assert table.column("total").to_pylist() == [2, 2]
    assert json.loads(table.schema.metadata[b"webtask"])["n_records"] == 2

    async def both() -> tuple[pd.DataFrame, pa.Table]:
        async with service.client() as c:
            df = await read_webtask_async("t", client=c, output_schema=SCHEMA)
            tb = await read_webtask_arrow_async("t", client=c, output_schema=SCHEMA)
            return df, tb

    df, tb = asyncio.run(both())
    assert len(df) == 2
    assert tb.schema.field("stage").type == pa.dictionary(pa.int32(), pa.string())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"output_schema": {"type": "nope"}}, "output_schema"),
        ({"output_schema": "/does/not/exist.json"}, "output_schema"),
        ({"validate": "strict"}, "validate"),
        ({"dtype_backend": "numpy"}, "dtype_backend"),
        ({"record_path": ""}, "record_path"),
        ({"timeout": -1}, "timeout"),
        ({"model": "gpt"}, "model"),
        ({"client": object()}, "client"),
    ],
)
def test_bad_arguments_send_nothing(
    make_service: MakeService, kwargs: dict[str, Any], field: str
) -> None:
    service = make_service()
    kwargs.setdefault("client", service.client())
    with pytest.raises(InvalidInputError) as info:
        read_webtask("t", **kwargs)
    assert info.value.field == field
    assert [service.calls(e) for e in ("start", "result", "download")] == [0, 0, 0]


def test_failed_outcome_raises_with_code_cost_and_id(make_service: MakeService) -> None:
    service = make_service(outcome="failed", error_code="rejected", error_message="site down")
    with pytest.raises(TaskFailedError) as info:
        read_webtask("t", client=service.client())
    task = service.task()
    assert task.ai_usd > 0
    assert (info.value.code, info.value.cost_usd, info.value.web_task_id) == (
        "rejected",
        task.ai_usd,
        task.id,
    )


def test_canceled_and_wait_timeout(make_service: MakeService) -> None:
    service = make_service(
        {"task_contains": "cancel", "outcome": "canceled"},
        {"task_contains": "slow", "duration_s": 3600.0},
    )
    with pytest.raises(TaskCanceledError) as canceled:
        read_webtask("cancel me", client=service.client())
    assert canceled.value.web_task_id == service.ids[0]
    with pytest.raises(WaitTimeoutError) as waited:
        read_webtask("slow task", client=service.client(), timeout=0.05)
    assert waited.value.web_task_id == service.ids[1]  # to re-attach with client.wait()
    assert service.calls("start") == 2


def test_validation_modes(make_service: MakeService) -> None:
    service = make_service(data=BAD)
    with pytest.raises(SchemaValidationError) as info:
        read_webtask("t", output_schema=SCHEMA, client=service.client())
    assert info.value.n_invalid == 1
    assert {(r, p) for r, p, _ in info.value.errors} == {
        (2, "$"),
        (2, "$.employees"),
        (2, "$.stage"),
    }
    with pytest.warns(UserWarning, match="1 of 3 records"):
        warned = read_webtask("t", output_schema=SCHEMA, client=service.client(), validate="warn")
    assert len(warned) == 3
    flagged = read_webtask("t", output_schema=SCHEMA, client=service.client(), validate="flag")
    assert flagged["_valid"].tolist() == [True, True, False]
    assert flagged["_errors"].isna().tolist() == [True, True, False]
    assert "'name' is a required property" in flagged["_errors"].iloc[2]
    assert flagged["employees"].isna().tolist() == [False, True, True]  # "many" -> null
    dropped = read_webtask("t", output_schema=SCHEMA, client=service.client(), validate="drop")
    assert dropped["name"].tolist() == ["Acme", "Beta"]
    assert (dropped.attrs["webtask"]["n_records"], dropped.attrs["webtask"]["n_invalid"]) == (3, 1)
    off = read_webtask("t", output_schema=SCHEMA, client=service.client(), validate="off")
    assert len(off) == 3
    assert off.attrs["webtask"]["n_invalid"] == 0


# -- file results ------------------------------------------------------------------------


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


FILES = {
    "json-array": (json.dumps(ROWS).encode(), "application/json"),
    "json-object": (json.dumps({"source": "x", "companies": ROWS}).encode(), "application/json"),
    "ndjson": ("".join(json.dumps(r) + "\n" for r in ROWS).encode(), "application/x-ndjson"),
    "csv": (
        b"name,employees,stage,founded\nAcme,10,seed,2020-01-02\nBeta,,series_a,2021-03-04\n",
        "text/csv",
    ),
    "parquet": (_parquet(ROWS), "application/vnd.apache.parquet"),
    "sniff-array": (json.dumps(ROWS, indent=2).encode(), "application/octet-stream"),
    "sniff-ndjson": (
        "".join(json.dumps(r) + "\n" for r in ROWS).encode(),
        "application/octet-stream",
    ),
    "sniff-parquet": (_parquet(ROWS), "application/octet-stream"),
}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_file_formats(make_service: MakeService, kind: str) -> None:
    body, content_type = FILES[kind]
    service = make_service(file_body=body, content_type=content_type)
    df = read_webtask("t", output_schema=SCHEMA, client=service.client())
    assert df["name"].tolist() == ["Acme", "Beta"]
    assert df["employees"].tolist()[0] == 10
    assert pd.isna(df["employees"].tolist()[1])
    assert str(df["founded"].iloc[0]) == "2020-01-02"
    assert df.dtypes["stage"] == pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))
    assert service.calls("download") == 1
    text = repr(df) + json.dumps(df.attrs, default=str)
    assert "signature=" not in text
    assert "/_sandbox/files/" not in text


def test_file_without_schema_is_inferred(make_service: MakeService) -> None:
    service = make_service(
        file_body=b'[{"a": 1, "t": "2024-01-01T00:00:00Z"}, {"a": 2.5, "b": [1]}]'
    )
    df = read_webtask("t", client=service.client())
    assert df["a"].dtype == pd.ArrowDtype(pa.float64())
    assert df["t"].dtype == pd.ArrowDtype(pa.string())  # no schema: strings stay strings
    assert df["b"].dtype == pd.ArrowDtype(pa.list_(pa.int64()))


def test_cache_dir_reuses_the_raw_file(make_service: MakeService, tmp_path: Path) -> None:
    body, content_type = FILES["ndjson"]
    service = make_service(file_body=body, content_type=content_type)
    first = read_webtask("t", output_schema=SCHEMA, client=service.client(), cache_dir=tmp_path)
    web_task_id = service.ids[0]
    cached = tmp_path / f"{web_task_id}.ndjson"
    assert cached.read_bytes() == body
    assert service.calls("download") == 1

    async def again() -> Any:
        async with service.client() as c:
            status = await c.result(web_task_id)
            return await materialize(c, status, output_schema=SCHEMA, cache_dir=tmp_path)  # type: ignore[arg-type]

    m = asyncio.run(again())
    assert service.calls("download") == 1  # no new download
    assert m.raw_path == cached
    assert m.table.column("name").to_pylist() == first["name"].tolist()


def test_only_files_that_are_kept_are_flushed_to_disk(
    make_service: MakeService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result read once from a temporary file is not fsynced; a cached one is, and so is
    what a user downloads (``durable=True`` by default)."""
    import webtask_frames._wire.download as download

    flushed: list[int] = []
    fsync = download.os.fsync

    def counted(fd: int) -> None:
        flushed.append(fd)
        fsync(fd)

    monkeypatch.setattr(download.os, "fsync", counted)
    body, content_type = FILES["ndjson"]
    service = make_service(file_body=body, content_type=content_type)
    df = read_webtask("t", output_schema=SCHEMA, client=service.client())
    assert len(df) == len(ROWS) and service.calls("download") == 1
    assert flushed == []
    read_webtask("t", output_schema=SCHEMA, client=service.client(), cache_dir=tmp_path / "c")
    assert service.calls("download") == 2
    assert len(flushed) == 1  # the cache_dir copy

    async def mine() -> Path:
        async with service.client() as c:
            return await c.download(await c.result(service.ids[0]), tmp_path / "mine.ndjson")

    assert asyncio.run(mine()).read_bytes() == body
    assert len(flushed) == 2 and service.calls("download") == 3


def test_expired_url_costs_exactly_one_result_call(make_service: MakeService) -> None:
    body, content_type = FILES["json-array"]
    # Seed 5 draws "expired" for the first download and nothing for the second.
    service = make_service(
        file_body=body,
        content_type=content_type,
        options={"seed": 5, "faults": {"download": {"expired": 0.5}}},
    )
    df = read_webtask("t", output_schema=SCHEMA, client=service.client())
    assert len(df) == 2
    assert service.sb.stats()["faults"]["download"] == {"expired": 1}
    assert service.calls("start") == 1  # never a new task
    assert service.calls("download") == 2
    # the poll that completed, then exactly one refresh of the URL
    assert service.calls("result") == 2


def test_size_mismatch_is_an_error(make_service: MakeService) -> None:
    body, content_type = FILES["json-array"]
    # Every download is cut short while the advertised sizeBytes stays the full size.
    service = make_service(
        file_body=body,
        content_type=content_type,
        options={"faults": {"download": {"truncated": 1.0}}},
    )
    with pytest.raises(DownloadError) as info:
        read_webtask("t", client=service.client())
    assert info.value.code == "size-mismatch"
    assert "signature=" not in str(info.value)


def test_materialize_extra_columns_and_params(make_service: MakeService) -> None:
    service = make_service(data=ROWS)

    async def go() -> Any:
        async with service.client() as c:
            status = await c.run("t")
            return await materialize(
                c,
                status,
                output_schema=SCHEMA,  # type: ignore[arg-type]
                parameters={"p": 1.5, "stage": "x"},
                extra_columns={"_item": 7},
                validate="flag",
            )

    m = asyncio.run(go())
    assert m.table.column_names == [
        "name",
        "employees",
        "stage",
        "founded",
        "p",
        "_item",
        "_webtask_id",
        "_valid",
        "_errors",
    ]
    assert m.table.column("_item").to_pylist() == [7, 7]
    assert (m.n_records, m.n_invalid, m.raw_path) == (2, 0, None)


def test_sandbox_end_to_end() -> None:
    sandbox = pytest.importorskip("webtask_frames.sandbox")
    if not hasattr(sandbox, "Sandbox"):
        pytest.skip("sandbox not ready")
    try:
        sb = sandbox.Sandbox(time_scale=0.001, seed=3)
    except Exception as exc:  # pragma: no cover - depends on the other engineer's module
        pytest.skip(f"sandbox unavailable: {exc}")
    with (
        sb,
        Client(
            api_key=sb.api_key,
            workspace_id=sb.workspace_id,
            base_url=sb.base_url,
            poll_min_s=0.01,
            poll_max_s=0.05,
        ) as client,
    ):
        df = read_webtask(
            "List companies",
            output_schema=SCHEMA,
            client=client,
            parameters={"batch": "S24"},
            timeout=60,
        )
    assert list(df.columns)[:4] == ["name", "employees", "stage", "founded"]
    assert df.attrs["webtask"]["n_invalid"] == 0
    assert len(df) >= 1


@pytest.mark.parametrize("file_format", ["json", "ndjson"])
def test_sandbox_file_results(file_format: str, tmp_path: Path) -> None:
    sandbox = pytest.importorskip("webtask_frames.sandbox")
    if not hasattr(sandbox, "Sandbox"):
        pytest.skip("sandbox not ready")
    try:
        sb = sandbox.Sandbox(
            time_scale=0.001, seed=3, rows=3000, file_format=file_format, invalid_row_rate=0.02
        )
    except Exception as exc:  # pragma: no cover - depends on the other engineer's module
        pytest.skip(f"sandbox unavailable: {exc}")
    with (
        sb,
        Client(
            api_key=sb.api_key,
            workspace_id=sb.workspace_id,
            base_url=sb.base_url,
            poll_min_s=0.01,
            poll_max_s=0.05,
        ) as client,
    ):
        df = read_webtask(
            "List companies",
            output_schema=SCHEMA,
            client=client,
            validate="flag",
            cache_dir=tmp_path,
            timeout=60,
        )
    meta = df.attrs["webtask"]
    assert meta["result_type"] == "file"
    assert len(df) == 3000
    assert 0 < meta["n_invalid"] == (~df["_valid"]).sum()
    assert list(tmp_path.iterdir())  # the raw result is kept
    assert df.dtypes["stage"] == pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))


# -- reading a paid-for result again -------------------------------------------------------


def test_a_validation_failure_says_how_to_reread_without_paying(
    make_service: MakeService,
) -> None:
    service = make_service(data=BAD)
    with pytest.raises(SchemaValidationError) as info:
        read_webtask("t", output_schema=SCHEMA, client=service.client())
    web_task_id = service.ids[0]
    assert info.value.web_task_id == web_task_id
    assert f"read_webtask_result({web_task_id!r}" in str(info.value)
    flagged = read_webtask_result(
        web_task_id, output_schema=SCHEMA, client=service.client(), validate="flag"
    )
    assert flagged["_valid"].tolist() == [True, True, False]
    assert service.calls("start") == 1  # the second read started nothing
    assert flagged.attrs["webtask"]["webtask_id"] == web_task_id


def test_a_wait_timeout_can_be_read_later(make_service: MakeService) -> None:
    service = make_service(data=[{"name": "Acme"}, {"name": "Beta"}], duration_s=3600.0)
    with pytest.raises(WaitTimeoutError) as info:
        read_webtask("t", client=service.client(), timeout=0.05)
    web_task_id = service.ids[0]
    assert f"read_webtask_result({web_task_id!r})" in str(info.value)
    service.clock.advance(3600.0)  # the task finishes while no one waits
    df = read_webtask_result(web_task_id, client=service.client(), parameters={"batch": "S24"})
    assert df["name"].tolist() == ["Acme", "Beta"]
    assert set(df["batch"]) == {"S24"}
    assert service.calls("start") == 1


def test_read_webtask_result_validates_before_any_request(make_service: MakeService) -> None:
    service = make_service()
    with pytest.raises(InvalidInputError, match="output_schema"):
        read_webtask_result("wt_1", output_schema={"type": 3}, client=service.client())
    with pytest.raises(InvalidInputError, match="web_task_id"):
        read_webtask_result("../x", client=service.client())
    assert [service.calls(e) for e in ("start", "result", "download")] == [0, 0, 0]
