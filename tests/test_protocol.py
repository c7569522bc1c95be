"""Pure protocol decisions: request building and retry classification."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import httpx
import pytest

from webtask_frames import (
    AmbiguousSubmissionError,
    AuthenticationError,
    BadRequestError,
    DownloadError,
    FileResult,
    InvalidInputError,
    NotFoundError,
    RateLimitError,
    ResultExpiredError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from webtask_frames._tables.compiled import coerce_output_schema
from webtask_frames._wire.protocol import (
    Done,
    Fail,
    Retry,
    build_start_body,
    check_signed_url,
    decide_download_exception,
    decide_download_response,
    decide_download_size,
    decide_exception,
    decide_response,
    parse_retry_after,
)

POLICY = RetryPolicy()


def test_start_body_uses_camel_case_wire_names() -> None:
    body = build_start_body(
        "Scrape companies",
        start_url="https://example.com/companies",
        parameters={"batch": "S24"},
        output_schema={"type": "array"},
        reuse_key="yc",
        model="sonnet",
    )
    assert body == {
        "task": "Scrape companies",
        "startUrl": "https://example.com/companies",
        "parameters": {"batch": "S24"},
        "outputSchema": {"type": "array"},
        "reuseKey": "yc",
        "model": "sonnet",
    }


def test_start_body_omits_unset_fields() -> None:
    assert build_start_body("t") == {"task": "t"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task": ""}, "task"),
        ({"task": 3}, "task"),
        ({"task": "t", "model": "gpt-4"}, "model"),
        ({"task": "t", "parameters": {"when": datetime.now(UTC)}}, "parameters"),
        ({"task": "t", "parameters": {"x": math.nan}}, "parameters"),
        ({"task": "t", "parameters": {1: "a"}}, "parameters"),
        ({"task": "t", "parameters": ["a"]}, "parameters"),
        ({"task": "t", "start_url": "ftp://x"}, "start_url"),
        ({"task": "t", "reuse_key": ""}, "reuse_key"),
        ({"task": "t", "output_schema": {"type": "banana"}}, "output_schema"),
        ({"task": "t", "output_schema": 42}, "output_schema"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    task = kwargs.pop("task")
    with pytest.raises(InvalidInputError) as info:
        build_start_body(task, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(field)
    assert "\n" not in str(info.value)


def test_output_schema_from_pydantic_model_and_file(tmp_path: object) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Company(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        name: str
        founded: int | None = None

    schema = coerce_output_schema(Company)
    assert schema is not None
    assert schema["properties"]["name"]["type"] == "string"

    from pathlib import Path

    path = Path(str(tmp_path)) / "schema.json"
    path.write_text('{"type": "object", "properties": {"a": {"type": "integer"}}}')
    assert coerce_output_schema(path) == {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
    }
    assert coerce_output_schema(str(path))["type"] == "object"  # type: ignore[index]
    with pytest.raises(InvalidInputError, match="cannot read"):
        coerce_output_schema(Path(str(tmp_path)) / "missing.json")


def test_bad_schema_error_points_at_the_problem() -> None:
    with pytest.raises(InvalidInputError, match=r"properties/a"):
        coerce_output_schema({"type": "object", "properties": {"a": {"type": 5}}})


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("2", 2.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None), (None, None)],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0


def test_retry_after_zero_is_clamped_not_spun() -> None:
    response = httpx.Response(429, headers={"retry-after": "0"})
    decision = decide_response("result", response, attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(decision, Retry)
    assert decision.delay == pytest.approx(0.1)


def test_retry_after_huge_is_clamped() -> None:
    response = httpx.Response(429, headers={"retry-after": "86400"})
    decision = decide_response("result", response, attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(decision, Retry)
    assert decision.delay == 60.0


def test_backoff_is_full_jitter_within_cap() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        delay = POLICY.backoff(attempt, rng)
        assert 0.0 <= delay <= min(20.0, 0.5 * 2**attempt)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_result_retries_transient_statuses(status: int) -> None:
    decision = decide_response(
        "result", httpx.Response(status), attempt=0, elapsed=0, policy=POLICY
    )
    assert isinstance(decision, Retry)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
    ],
)
def test_client_errors_are_final(status: int, error: type[Exception]) -> None:
    decision = decide_response(
        "result", httpx.Response(status), attempt=0, elapsed=0, policy=POLICY
    )
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, error)
    assert not decision.error.retryable


@pytest.mark.parametrize("status", [429, 503])
def test_start_resends_only_provably_unaccepted(status: int) -> None:
    decision = decide_response("start", httpx.Response(status), attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(decision, Retry)


@pytest.mark.parametrize("status", [500, 501, 502, 504, 507, 524])
def test_start_5xx_is_ambiguous(status: int) -> None:
    body = {"task": "t", "reuseKey": "k"}
    decision = decide_response(
        "start", httpx.Response(status), attempt=0, elapsed=0, policy=POLICY, request_body=body
    )
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, AmbiguousSubmissionError)
    assert decision.error.request_body == body
    assert decision.error.reuse_key == "k"


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("pool")],
)
def test_start_resends_when_nothing_was_sent(exc: httpx.TransportError) -> None:
    decision = decide_exception("start", exc, attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(decision, Retry)
    assert isinstance(decision.error, TransportError)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("reset"),
        httpx.WriteError("broken pipe"),
    ],
)
def test_start_after_send_is_ambiguous(exc: httpx.TransportError) -> None:
    decision = decide_exception("start", exc, attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, AmbiguousSubmissionError)


def test_attempts_and_deadline_bound_retries() -> None:
    policy = RetryPolicy(max_attempts=3, deadline_s=10)
    response = httpx.Response(503)
    assert isinstance(
        decide_response("result", response, attempt=1, elapsed=0, policy=policy), Retry
    )
    last = decide_response("result", response, attempt=2, elapsed=0, policy=policy)
    assert isinstance(last, Fail)
    assert isinstance(last.error, ServerError)
    late = decide_response(
        "result",
        httpx.Response(429, headers={"retry-after": "5"}),
        attempt=0,
        elapsed=6,
        policy=policy,
    )
    assert isinstance(late, Fail)
    assert isinstance(late.error, RateLimitError)


def test_success_is_done() -> None:
    assert isinstance(
        decide_response("start", httpx.Response(200), attempt=0, elapsed=0, policy=POLICY), Done
    )


def test_error_body_fields_are_carried() -> None:
    response = httpx.Response(
        400,
        json={
            "code": "bad-request",
            "category": "user",
            "message": "task is required",
            "retirable": False,
            "details": {"field": "task"},
            "correlationId": "c-1",
        },
    )
    decision = decide_response("start", response, attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(decision, Fail)
    err = decision.error
    assert isinstance(err, BadRequestError)
    assert (err.status_code, err.code, err.category, err.retirable, err.correlation_id) == (
        400,
        "bad-request",
        "user",
        False,
        "c-1",
    )
    assert err.details == {"field": "task"}
    assert "task is required" in str(err)


def test_server_message_never_echoes_the_key() -> None:
    response = httpx.Response(401, json={"message": "bad key secret-123", "code": "unauthorized"})
    decision = decide_response(
        "result", response, attempt=0, elapsed=0, policy=POLICY, secrets=("secret-123",)
    )
    assert isinstance(decision, Fail)
    assert "secret-123" not in str(decision.error)
    assert "INTUNED_API_KEY" in str(decision.error)


# -- downloads of signed file URLs ------------------------------------------------------

SIGNED = "https://files.test/r/wt_1.json?signature=s3cr3t&expires=9"


def signed_file(
    url: str = SIGNED, *, size: int = 11, expires_at: datetime | None = None
) -> FileResult:
    return FileResult(
        url=url,
        content_type="application/json",
        size_bytes=size,
        expires_at=expires_at,
        web_task_id="wt_1",
    )


@pytest.mark.parametrize("status", [200, 204, 304])
def test_download_below_400_is_done(status: int) -> None:
    decision = decide_download_response(
        httpx.Response(status), signed_file(), attempt=0, elapsed=0, policy=POLICY
    )
    assert isinstance(decision, Done)


@pytest.mark.parametrize("status", [401, 403, 410])
def test_download_refused_url_is_expired_and_final(status: int) -> None:
    decision = decide_download_response(
        httpx.Response(status), signed_file(), attempt=0, elapsed=0, policy=POLICY
    )
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, ResultExpiredError)
    assert not decision.error.retryable
    assert decision.error.web_task_id == "wt_1"
    assert "s3cr3t" not in str(decision.error)


def test_download_400_is_expired_only_after_the_advertised_expiry() -> None:
    past = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    expired = decide_download_response(
        httpx.Response(400),
        signed_file(expires_at=past),
        attempt=0,
        elapsed=0,
        policy=POLICY,
        now=now,
    )
    assert isinstance(expired, Fail)
    assert isinstance(expired.error, ResultExpiredError)
    fresh = decide_download_response(
        httpx.Response(400),
        signed_file(expires_at=datetime(2099, 1, 1, tzinfo=UTC)),
        attempt=0,
        elapsed=0,
        policy=POLICY,
        now=now,
    )
    assert isinstance(fresh, Fail)
    assert type(fresh.error) is DownloadError
    assert (fresh.error.code, fresh.error.retryable) == ("http-400", False)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_download_transient_statuses_retry(status: int) -> None:
    decision = decide_download_response(
        httpx.Response(status), signed_file(), attempt=0, elapsed=0, policy=POLICY
    )
    assert isinstance(decision, Retry)
    assert isinstance(decision.error, DownloadError)
    assert decision.error.code == f"http-{status}"
    assert decision.error.retryable
    assert "s3cr3t" not in str(decision.error)
    assert 0 <= decision.delay <= POLICY.backoff_base_s


@pytest.mark.parametrize("status", [404, 409, 416])
def test_download_other_client_errors_are_final(status: int) -> None:
    decision = decide_download_response(
        httpx.Response(status), signed_file(), attempt=0, elapsed=0, policy=POLICY
    )
    assert isinstance(decision, Fail)
    assert not isinstance(decision.error, ResultExpiredError)
    assert not decision.error.retryable


def test_download_size_check() -> None:
    ok = decide_download_size(11, signed_file(), attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(ok, Done)
    unknown = decide_download_size(3, signed_file(size=-1), attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(unknown, Done)  # no advertised size: nothing to compare
    short = decide_download_size(2, signed_file(), attempt=0, elapsed=0, policy=POLICY)
    assert isinstance(short, Retry)
    assert short.error.code == "size-mismatch"
    assert "advertised 11" in str(short.error)
    assert "s3cr3t" not in str(short.error)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError(f"cannot reach {SIGNED}"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection without sending complete body"),
    ],
)
def test_download_transport_errors_retry_without_quoting_the_url(
    exc: httpx.TransportError,
) -> None:
    decision = decide_download_exception(exc, signed_file(), attempt=1, elapsed=0, policy=POLICY)
    assert isinstance(decision, Retry)
    assert isinstance(decision.error, TransportError)
    assert decision.error.attempts == 2
    assert decision.error.web_task_id == "wt_1"
    assert "s3cr3t" not in str(decision.error)
    assert "files.test/r/wt_1.json" in str(decision.error)


def test_download_retries_share_the_policy_bounds() -> None:
    policy = RetryPolicy(max_attempts=3, deadline_s=10)
    file = signed_file()
    common = {"policy": policy, "elapsed": 0.0}
    assert isinstance(
        decide_download_response(httpx.Response(503), file, attempt=1, **common), Retry
    )
    assert isinstance(decide_download_size(0, file, attempt=1, **common), Retry)
    last_status = decide_download_response(httpx.Response(503), file, attempt=2, **common)
    last_size = decide_download_size(0, file, attempt=2, **common)
    last_net = decide_download_exception(httpx.ReadError("x"), file, attempt=2, **common)
    for decision in (last_status, last_size, last_net):
        assert isinstance(decision, Fail)
        assert decision.error.retryable  # the fault was transient; the budget ran out
    late = decide_download_size(0, file, attempt=0, policy=policy, elapsed=10.5)
    assert isinstance(late, Fail)  # past the deadline: no time left for another attempt


@pytest.mark.parametrize(
    "url", ["http://files.test/r?sig=1", "ftp://files.test/r?sig=1", "files.test/r?sig=1"]
)
def test_signed_url_must_not_travel_in_clear(url: str) -> None:
    with pytest.raises(DownloadError) as info:
        check_signed_url(signed_file(url))
    assert info.value.code == "insecure-url"
    assert "sig=1" not in str(info.value)


@pytest.mark.parametrize(
    "url", [SIGNED, "http://127.0.0.1:8000/r?sig=1", "http://localhost/r?sig=1"]
)
def test_signed_url_https_or_loopback_is_allowed(url: str) -> None:
    check_signed_url(signed_file(url))
