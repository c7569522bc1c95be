"""Exact results: a test scripts the inline ``data`` or the file bytes a task returns."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sandbox.conftest import Api

from webtask_frames.sandbox import Behaviour, ConfigError, TaskOverride

ROWS = [{"name": "Acme", "n": 1}, {"name": "Beta", "n": "not a number"}]
SCHEMA = {
    "type": "array",
    "items": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
}


def test_magic_data_is_served_inline_as_given(api: Api) -> None:
    task_id = api.start_id(
        task="List companies",
        outputSchema=SCHEMA,  # the second row breaks it: served anyway
        parameters={"batch": "S24", "_sandbox": {"data": {"total": 2, "rows": ROWS}}},
    )
    body = api.wait(task_id)
    assert body["outcome"] == "success"
    assert body["result"] == {"type": "inline", "data": {"total": 2, "rows": ROWS}}


def test_data_as_a_file_in_ndjson(make_api: Callable[..., Api]) -> None:
    api = make_api(overrides=[TaskOverride(data=ROWS, result="file", file_format="ndjson")])
    body = api.wait(api.start_id(task="t"))
    file = body["result"]["file"]
    assert file["contentType"] == "application/x-ndjson"
    response = api.download(file["url"])
    assert response.status_code == 200
    assert [json.loads(line) for line in response.text.splitlines()] == ROWS
    assert file["sizeBytes"] == len(response.content)


def test_file_body_is_served_byte_for_byte(make_api: Callable[..., Api]) -> None:
    csv = b"name,n\nAcme,1\n"
    override = TaskOverride(task_contains="csv", file_body=csv, content_type="text/csv")
    api = make_api(overrides=[override])
    body = api.wait(api.start_id(task="export csv", outputSchema={"type": "array"}))
    file = body["result"]["file"]
    assert (file["contentType"], file["sizeBytes"]) == ("text/csv", len(csv))
    assert "preview" not in body["result"]  # the sandbox does not parse exact bytes
    response = api.download(file["url"])
    assert response.content == csv
    assert response.headers["content-type"].startswith("text/csv")
    # Other tasks are untouched: generated data, inline.
    other = api.wait(api.start_id(task="list"))
    assert other["result"]["type"] == "inline" and len(other["result"]["data"]) == 25


def test_file_body_from_json_is_text() -> None:
    assert Behaviour.from_mapping({"file_body": "a\n"}).file_body == b"a\n"


def test_exact_results_skip_the_schema_probe(api: Api) -> None:
    unsatisfiable = {"type": "array", "items": {"type": "string", "minLength": 5, "maxLength": 1}}
    task_id = api.start_id(
        task="t", outputSchema=unsatisfiable, parameters={"_sandbox": {"data": []}}
    )
    body = api.wait(task_id)
    assert (body["outcome"], body["result"]) == ("success", {"type": "inline", "data": []})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"data": {"x": float("nan")}}, "data must be a JSON value"),
        ({"data": {1, 2}}, "data must be a JSON value"),
        ({"data": [1], "file_body": b"[1]"}, "not both"),
        ({"file_body": b"x", "result": "inline"}, "cannot be delivered inline"),
        ({"file_body": 3}, "file_body must be bytes or a string"),
        ({"content_type": ""}, "content_type must be a non-empty string"),
    ],
)
def test_exact_results_are_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Behaviour(**fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        TaskOverride(**fields)  # type: ignore[arg-type]


def test_a_bad_magic_payload_is_a_400(api: Api) -> None:
    response = api.start(task="t", parameters={"_sandbox": {"data": [1], "file_body": "x"}})
    assert response.status_code == 400
    assert "not both" in response.json()["message"]
