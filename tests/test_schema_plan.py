"""An outputSchema is checked and compiled once per call, not once per item or result."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import httpx
import jsonschema
import pytest
from sandboxservice import MakeService

from webtask_frames import Client, InvalidInputError, read_webtask, run_batch_async
from webtask_frames._batch.plan import build_plan
from webtask_frames._tables import schema as schema_module
from webtask_frames._tables import validate as validate_module
from webtask_frames._tables.compiled import SchemaPlan, record_arrow_schema, schema_plan
from webtask_frames._wire.protocol import build_start_body

SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "n": {"type": "integer", "minimum": 2}},
    },
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts metaschema checks, layouts built and record validators compiled."""
    seen: Counter[str] = Counter()
    check = jsonschema.Draft202012Validator.check_schema

    def counted_check(schema: Any, *args: Any, **kwargs: Any) -> None:
        # The in-process sandbox checks the schemas it receives, as the service does;
        # only the library's own checks count here.
        if not sys._getframe(1).f_globals["__name__"].startswith("webtask_frames.sandbox"):
            seen["check_schema"] += 1
        check(schema, *args, **kwargs)

    monkeypatch.setattr(
        jsonschema.Draft202012Validator, "check_schema", staticmethod(counted_check)
    )
    for name, cls in (
        ("layout", schema_module.Layout),
        ("validator", validate_module.RecordValidator),
    ):
        init = cls.__init__

        def counted_init(self: Any, *a: Any, _init: Any = init, _n: str = name, **k: Any) -> None:
            seen[_n] += 1
            _init(self, *a, **k)

        monkeypatch.setattr(cls, "__init__", counted_init)
    return seen


def test_a_1000_item_plan_checks_and_compiles_its_schema_once(calls: Counter[str]) -> None:
    plan = build_plan(
        "Scrape", {"page": list(range(1000))}, output_schema=SCHEMA, reuse_key="k_{page}"
    )
    assert len(plan.items) == 1000
    assert all(item.body["outputSchema"] == SCHEMA for item in plan.items)
    assert plan.schema is not None and plan.output_schema == SCHEMA
    assert calls == Counter(check_schema=1, layout=1)  # the validator: only when a result comes
    plan.schema.validator.verdicts([{"name": "a"}])
    plan.schema.validator.verdicts([{"name": "b"}])
    assert calls == Counter(check_schema=1, layout=1, validator=1)


def test_a_20_item_batch_compiles_its_schema_once(
    calls: Counter[str], make_service: MakeService
) -> None:
    # Each item's first row has n=1 < minimum 2.
    service = make_service(data=[{"name": "a", "n": 1}, {"name": "b", "n": 2}])

    async def go() -> Any:
        async with service.client() as client:
            return await run_batch_async(
                "Scrape",
                {"page": list(range(20))},
                output_schema=SCHEMA,
                client=client,
                progress=False,
            )

    result = asyncio.run(go())
    assert service.sb.stats()["accepted_tasks"] == 20
    # The one compiled validator judged them all.
    assert len(result.records) == 20
    assert len(result.invalid) == 20
    assert calls == Counter(check_schema=1, layout=1, validator=1)


def test_read_webtask_checks_its_schema_once(
    calls: Counter[str], make_service: MakeService
) -> None:
    service = make_service(data=[{"name": "Acme", "n": 3}])
    df = read_webtask("t", output_schema=SCHEMA, client=service.client())
    assert df["name"].tolist() == ["Acme"]
    assert service.calls("start") == 1
    assert calls == Counter(check_schema=1, layout=1, validator=1)


def test_build_start_body_checks_raw_schemas_but_trusts_a_plan(calls: Counter[str]) -> None:
    plan = SchemaPlan.build(SCHEMA)
    assert calls["check_schema"] == 1
    assert build_start_body("t", output_schema=plan)["outputSchema"] == SCHEMA
    assert calls["check_schema"] == 1
    assert build_start_body("t", output_schema=SCHEMA)["outputSchema"] == SCHEMA
    assert calls["check_schema"] == 2
    with pytest.raises(InvalidInputError, match="output_schema is not valid"):
        build_start_body("t", output_schema={"type": "nope"})


def test_plan_helpers() -> None:
    plan = SchemaPlan.build(SCHEMA)
    assert SchemaPlan.build(plan) is plan and schema_plan(plan) is plan
    assert schema_plan(None) is None and record_arrow_schema(None) is None
    assert record_arrow_schema(plan) == plan.arrow_schema
    assert plan.arrow_schema.names == ["name", "n"]
    assert plan.validator is plan.validator
    with pytest.raises(InvalidInputError, match="not JSON-serialisable"):
        SchemaPlan.build({"type": "object", "default": float("nan")})


def _nested(depth: int, *, via: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        if via == "items":
            schema = {"type": "array", "items": schema}
        else:
            schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize("via", ["properties", "items"])
def test_a_schema_nested_500_deep_is_a_one_line_input_error(via: str) -> None:
    deep = _nested(500, via=via)
    for build in (SchemaPlan.build, schema_plan):
        with pytest.raises(InvalidInputError) as info:
            build(deep)
        assert info.value.field == "output_schema"
        assert "nested more than" in str(info.value) and "\n" not in str(info.value)


def test_a_deep_schema_is_refused_before_any_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    client = Client(
        api_key="k",
        workspace_id="w",
        base_url="https://api.test",
        transport=httpx.MockTransport(refuse),
    )
    with client, pytest.raises(InvalidInputError, match="output_schema"):
        read_webtask("T", output_schema=_nested(500, via="properties"), client=client)


def test_a_reasonably_deep_schema_still_builds() -> None:
    plan = SchemaPlan.build(_nested(40, via="properties"))
    assert plan.arrow_schema.names == ["a"]
