"""read_webtask end to end on a MockTransport: inline and file results, cache, failures."""

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
from frames.fakeservice import SIGNATURE, FakeService, client_for

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


def test_inline_typed_frame_params_and_attrs(service: FakeService) -> None:
    service.data = ROWS
    df = read_webtask(
        "List companies",
        parameters={"batch": "S24", "name": "ignored"},
        output_schema=SCHEMA,
        client=client_for(service),
    )
    assert list(df.columns) == ["name", "employees", "stage", "founded", "batch", "_webtask_id"]
    assert all(isinstance(t, pd.ArrowDtype) for t in df.dtypes)
    assert df["employees"].dtype == pd.ArrowDtype(pa.int64())
    assert df["name"].tolist() == ["Acme", "Beta"]  # the record's field wins over the param
    assert df["batch"].tolist() == ["S24", "S24"]
    assert df["_webtask_id"].tolist() == ["wt_1", "wt_1"]
    meta = df.attrs["webtask"]
    assert meta["webtask_id"] == "wt_1"
    assert meta["outcome"] == "success"
    assert meta["cost"] == {"ai_usd": 0.25, "compute_hours": 0.01}
    assert meta["reuse"]["key"] == "yc"
    assert meta["n_records"] == 2
    assert meta["n_invalid"] == 0
    assert meta["duration_s"] == 55.0
    json.dumps(meta)  # JSON-friendly
    assert service.bodies[0]["outputSchema"] == SCHEMA
    assert service.bodies[0]["parameters"] == {"batch": "S24", "name": "ignored"}


def test_numpy_nullable_backend(service: FakeService) -> None:
    service.data = ROWS
    df = read_webtask(
        "t", output_schema=SCHEMA, client=client_for(service), dtype_backend="numpy_nullable"
    )
    assert str(df["employees"].dtype) == "Int64"
    assert df["stage"].dtype == "category"
    assert df["employees"].isna().tolist() == [False, True]


def test_sync_client_async_and_arrow_variants(service: FakeService) -> None:
    service.data = {"total": 2, "companies": ROWS}
    with Client(
        api_key="k" * 20,
        workspace_id="ws",
        base_url="https://api.test/api/v1/workspace",
        transport=client_for(service)._transport,
        poll_min_s=0.01,
        poll_max_s=0.02,
    ) as sync_client:
        table = read_webtask_arrow("t", client=sync_client)
    assert table.column("total").to_pylist() == [2, 2]
    assert json.loads(table.schema.metadata[b"webtask"])["n_records"] == 2

    async def both() -> tuple[pd.DataFrame, pa.Table]:
        async with client_for(service) as c:
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
    service: FakeService, kwargs: dict[str, Any], field: str
) -> None:
    kwargs.setdefault("client", client_for(service))
    with pytest.raises(InvalidInputError) as info:
        read_webtask("t", **kwargs)
    assert info.value.field == field
    assert service.requests == []


def test_failed_outcome_raises_with_code_cost_and_id(service: FakeService) -> None:
    service.outcome = "failed"
    service.error = {"code": "rejected", "message": "site down"}
    with pytest.raises(TaskFailedError) as info:
        read_webtask("t", client=client_for(service))
    assert (info.value.code, info.value.cost_usd, info.value.web_task_id) == (
        "rejected",
        0.25,
        "wt_1",
    )


def test_canceled_and_wait_timeout(service: FakeService) -> None:
    service.state = "canceled"
    with pytest.raises(TaskCanceledError) as canceled:
        read_webtask("t", client=client_for(service))
    assert canceled.value.web_task_id == "wt_1"
    service.state = "started"
    with pytest.raises(WaitTimeoutError) as waited:
        read_webtask("t", client=client_for(service), timeout=0.05)
    assert waited.value.web_task_id == "wt_2"  # to re-attach with client.wait()
    assert service.n_started == 2


def test_validation_modes(service: FakeService) -> None:
    service.data = BAD
    with pytest.raises(SchemaValidationError) as info:
        read_webtask("t", output_schema=SCHEMA, client=client_for(service))
    assert info.value.n_invalid == 1
    assert {(r, p) for r, p, _ in info.value.errors} == {
        (2, "$"),
        (2, "$.employees"),
        (2, "$.stage"),
    }
    with pytest.warns(UserWarning, match="1 of 3 records"):
        warned = read_webtask(
            "t", output_schema=SCHEMA, client=client_for(service), validate="warn"
        )
    assert len(warned) == 3
    flagged = read_webtask("t", output_schema=SCHEMA, client=client_for(service), validate="flag")
    assert flagged["_valid"].tolist() == [True, True, False]
    assert flagged["_errors"].isna().tolist() == [True, True, False]
    assert "'name' is a required property" in flagged["_errors"].iloc[2]
    assert flagged["employees"].isna().tolist() == [False, True, True]  # "many" -> null
    dropped = read_webtask("t", output_schema=SCHEMA, client=client_for(service), validate="drop")
    assert dropped["name"].tolist() == ["Acme", "Beta"]
    assert (dropped.attrs["webtask"]["n_records"], dropped.attrs["webtask"]["n_invalid"]) == (3, 1)
    off = read_webtask("t", output_schema=SCHEMA, client=client_for(service), validate="off")
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
def test_file_formats(service: FakeService, kind: str) -> None:
    service.file_bytes, service.content_type = FILES[kind]
    df = read_webtask("t", output_schema=SCHEMA, client=client_for(service))
    assert df["name"].tolist() == ["Acme", "Beta"]
    assert df["employees"].tolist()[0] == 10
    assert pd.isna(df["employees"].tolist()[1])
    assert str(df["founded"].iloc[0]) == "2020-01-02"
    assert df.dtypes["stage"] == pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))
    assert service.count("download") == 1
    text = repr(df) + json.dumps(df.attrs, default=str)
    assert "SECRETSIGNATURE" not in text
    assert "files.test" not in text


def test_file_without_schema_is_inferred(service: FakeService) -> None:
    service.file_bytes = b'[{"a": 1, "t": "2024-01-01T00:00:00Z"}, {"a": 2.5, "b": [1]}]'
    df = read_webtask("t", client=client_for(service))
    assert df["a"].dtype == pd.ArrowDtype(pa.float64())
    assert df["t"].dtype == pd.ArrowDtype(pa.string())  # no schema: strings stay strings
    assert df["b"].dtype == pd.ArrowDtype(pa.list_(pa.int64()))


def test_cache_dir_reuses_the_raw_file(service: FakeService, tmp_path: Path) -> None:
    service.file_bytes, service.content_type = FILES["ndjson"]
    first = read_webtask("t", output_schema=SCHEMA, client=client_for(service), cache_dir=tmp_path)
    cached = tmp_path / "wt_1.ndjson"
    assert cached.read_bytes() == service.file_bytes
    assert service.count("download") == 1

    async def again() -> Any:
        async with client_for(service) as c:
            status = await c.result("wt_1")
            return await materialize(c, status, output_schema=SCHEMA, cache_dir=tmp_path)  # type: ignore[arg-type]

    m = asyncio.run(again())
    assert service.count("download") == 1  # no new download
    assert m.raw_path == cached
    assert m.table.column("name").to_pylist() == first["name"].tolist()


def test_expired_url_costs_exactly_one_result_call(service: FakeService) -> None:
    service.file_bytes, service.content_type = FILES["json-array"]
    service.expired_downloads = 1
    df = read_webtask("t", output_schema=SCHEMA, client=client_for(service))
    assert len(df) == 2
    assert service.n_started == 1  # never a new task
    assert service.count("download") == 2
    results = [r for r in service.requests if r.url.path.endswith("/result")]
    # the poll that completed, then exactly one refresh of the URL
    assert len(results) == 2


def test_size_mismatch_is_an_error(service: FakeService) -> None:
    service.file_bytes, service.content_type = FILES["json-array"]
    service.size_bytes = 10
    with pytest.raises(DownloadError) as info:
        read_webtask("t", client=client_for(service))
    assert info.value.code == "size-mismatch"
    assert SIGNATURE not in str(info.value)


def test_materialize_extra_columns_and_params(service: FakeService) -> None:
    service.data = ROWS

    async def go() -> Any:
        async with client_for(service) as c:
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


def test_a_validation_failure_says_how_to_reread_without_paying(service: FakeService) -> None:
    service.data = BAD
    with pytest.raises(SchemaValidationError) as info:
        read_webtask("t", output_schema=SCHEMA, client=client_for(service))
    assert info.value.web_task_id == "wt_1"
    assert "read_webtask_result('wt_1'" in str(info.value)
    flagged = read_webtask_result(
        "wt_1", output_schema=SCHEMA, client=client_for(service), validate="flag"
    )
    assert flagged["_valid"].tolist() == [True, True, False]
    assert service.n_started == 1  # the second read started nothing
    assert flagged.attrs["webtask"]["webtask_id"] == "wt_1"


def test_a_wait_timeout_can_be_read_later(service: FakeService) -> None:
    service.state = "started"
    with pytest.raises(WaitTimeoutError) as info:
        read_webtask("t", client=client_for(service), timeout=0.05)
    assert "read_webtask_result('wt_1')" in str(info.value)
    service.state = "completed"
    service.data = [{"name": "Acme"}, {"name": "Beta"}]
    df = read_webtask_result("wt_1", client=client_for(service), parameters={"batch": "S24"})
    assert df["name"].tolist() == ["Acme", "Beta"]
    assert set(df["batch"]) == {"S24"}
    assert service.n_started == 1


def test_read_webtask_result_validates_before_any_request(service: FakeService) -> None:
    with pytest.raises(InvalidInputError, match="output_schema"):
        read_webtask_result("wt_1", output_schema={"type": 3}, client=client_for(service))
    with pytest.raises(InvalidInputError, match="web_task_id"):
        read_webtask_result("../x", client=client_for(service))
    assert service.requests == []
