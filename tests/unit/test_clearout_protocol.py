"""The one decision table (HTTP status + headers + body + endpoint → data or typed exception) and the retry
policy: malformed successes, per-endpoint codes (1008 on progress), bounded rate-limit waits."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tenacity import Retrying

from clearout_provider.clearout.protocol import (
    RATE_WINDOW_SECONDS,
    Endpoint,
    interpret_response,
    parse_body,
    retry_after_seconds,
    retry_arguments,
)
from clearout_provider.exceptions import (
    ClearoutAuthError,
    ClearoutBadInput,
    ClearoutBulkLimitReached,
    ClearoutConfigError,
    ClearoutCreditsError,
    ClearoutDailyLimitError,
    ClearoutDuplicateFile,
    ClearoutError,
    ClearoutListNotFound,
    ClearoutListUnavailable,
    ClearoutNotCancellable,
    ClearoutProtocolError,
    ClearoutRateLimited,
    ClearoutResultExpired,
    ClearoutServerError,
    ClearoutTimeout,
)
from clearout_provider.hooks import clearout_protocol as protocol
from clearout_provider.hooks.http_safety import MAX_MESSAGE_CHARS


def failed(code: int | None, message: str = "boom", **additional: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["code"] = code
    if additional:
        error["additional_info"] = additional
    return {"status": "failed", "error": error}


JOI = {
    "status": "failed",
    "error": {
        "message": "validation failed",
        "reasons": [
            {
                "field": ["list_id"],
                "location": "body",
                "messages": ['"list_id" is required'],
                "types": ["any.required"],
            }
        ],
    },
}


def success(data: Any) -> dict[str, Any]:
    return {"status": "success", "data": data}


VERIFIED = {"email_address": "a@b.com", "status": "valid", "sub_status": {"code": 200}}


def test_success_returns_data() -> None:
    data = {"list_id": "a" * 24}
    assert interpret_response(200, {}, success(data), protocol.BULK_UPLOAD) == data
    assert interpret_response(200, {}, success({})) == {}  # an endpoint that needs no field
    assert interpret_response(200, {}, success(VERIFIED | {"status": "Catch-All"}), protocol.INSTANT_VERIFY)


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (protocol.ANY, {"status": "success"}),
        (protocol.ANY, success(None)),
        (protocol.ANY, success(["a list"])),
        (protocol.ANY, success("text")),
        (protocol.INSTANT_VERIFY, success({"email_address": "a@b.com"})),
        (protocol.INSTANT_VERIFY, success({"status": "valid"})),
        (protocol.INSTANT_VERIFY, success(VERIFIED | {"status": "deliverable"})),
        (protocol.INSTANT_VERIFY, success(VERIFIED | {"status": 1})),
        (protocol.INSTANT_VERIFY, success(VERIFIED | {"email_address": "  "})),
        (protocol.FLAG_CHECKS["business"], success({"email_address": "a@b.com"})),
        (
            protocol.FLAG_CHECKS["business"],
            success({"email_address": "a@b.com", "business_account": "maybe"}),
        ),
        (protocol.BULK_UPLOAD, success({})),
        (protocol.BULK_UPLOAD, success({"list_id": 123})),
        (protocol.BULK_UPLOAD, success({"list_id": "../../etc/passwd"})),
        (protocol.BULK_PROGRESS, success({"percentile": 50})),
        (protocol.BULK_PROGRESS, success({"progress_status": None, "percentile": 50})),
        (protocol.RESULT_URL, success({})),
        (protocol.RESULT_URL, success({"url": "file:///etc/passwd"})),
        (protocol.RESULT_URL, success({"url": "not a url"})),
        (protocol.CREDITS, success({"credits": {}})),
        (protocol.CREDITS, success({"available_credits": "lots"})),
        (protocol.CREDITS, success({"available_credits": True})),
        (protocol.CREDITS, success({"available_credits": float("inf")})),
        (protocol.FINDER, success({"confidence_score": 10})),
        (protocol.FINDER, success({"emails": [{"role": "no"}]})),
        (protocol.FINDER_QUEUE, success({})),
        (protocol.FINDER_QUEUE, success({"query_status": "completed"})),
    ],
)
def test_every_malformed_success_is_a_protocol_error(endpoint: Endpoint, body: dict[str, Any]) -> None:
    with pytest.raises(ClearoutProtocolError) as info:
        interpret_response(200, {}, body, endpoint)
    assert endpoint.name in str(info.value) and "malformed" in str(info.value)
    assert not info.value.transient and info.value.http_status == 200


@pytest.mark.parametrize(
    ("endpoint", "data"),
    [
        (protocol.CREDITS, {"credits": {"available": 5}}),
        (protocol.CREDITS, {"available_credits": "95"}),
        (protocol.FLAG_CHECKS["catchall"], {"email_address": "a@b.com", "catchall": "yes"}),
        (protocol.FLAG_CHECKS["role"], {"email_address": "a@b.com", "role_account": False}),
        (protocol.BULK_PROGRESS, {"progress_status": "running"}),
        (protocol.RESULT_URL, {"url": "https://s3.example.com/r.csv?sig=1"}),
        (protocol.LIST_CHANGE, {}),
        (protocol.FINDER, {"emails": []}),
        (protocol.FINDER_QUEUE, {"query_status": "running"}),
    ],
)
def test_readable_successes_of_each_endpoint(endpoint: Endpoint, data: dict[str, Any]) -> None:
    assert interpret_response(200, {}, success(data), endpoint) == data


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (protocol.BULK_PROGRESS, ClearoutListNotFound),
        (protocol.ANY, ClearoutAuthError),
        (protocol.CREDITS, ClearoutAuthError),
        (protocol.BULK_UPLOAD, ClearoutAuthError),
        (protocol.RESULT_URL, ClearoutAuthError),
        (protocol.LIST_CHANGE, ClearoutAuthError),
        (protocol.INSTANT_VERIFY, ClearoutAuthError),
        (protocol.FINDER_QUEUE, ClearoutAuthError),
    ],
)
def test_1008_means_list_gone_on_progress_and_no_access_elsewhere(
    endpoint: Endpoint, expected: type[ClearoutError]
) -> None:
    with pytest.raises(ClearoutError) as info:
        interpret_response(200, {}, failed(1008, "You are not authorized to access this resource"), endpoint)
    assert type(info.value) is expected and info.value.code == 1008
    # What a resumed task catches to upload again: the progress answer is an unavailable list.
    assert isinstance(info.value, ClearoutListUnavailable) == (endpoint is protocol.BULK_PROGRESS)


def test_1029_on_progress_is_still_plain_unavailable() -> None:
    with pytest.raises(ClearoutListUnavailable) as info:
        interpret_response(200, {}, failed(1029), protocol.BULK_PROGRESS)
    assert type(info.value) is ClearoutListUnavailable


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, failed(1000, "Invalid API Token, please generate new token"), ClearoutAuthError),
        (200, failed(1008, "You are not authorized to access this resource"), ClearoutAuthError),
        (402, failed(1002), ClearoutCreditsError),
        (402, failed(1099), ClearoutCreditsError),
        (200, failed(1017), ClearoutDailyLimitError),
        (200, failed(1001), ClearoutBulkLimitReached),
        (200, failed(1083), ClearoutBulkLimitReached),
        (200, failed(1029, "List is not available"), ClearoutListUnavailable),
        (200, failed(1007), ClearoutResultExpired),
        (200, failed(1116), ClearoutNotCancellable),
        (200, failed(1004), ClearoutBadInput),
        (200, failed(1088), ClearoutBadInput),
        (200, failed(1100), ClearoutBadInput),
        (200, failed(1104, "Invalid queue ID"), ClearoutBadInput),
        (415, failed(None, "Invalid Content Type. Must be application/json"), ClearoutBadInput),
        (402, failed(None, "Payment required"), ClearoutCreditsError),
        (403, None, ClearoutAuthError),
        (503, None, ClearoutServerError),
        (500, b"<html>oops</html>", ClearoutServerError),
        (502, failed(1000), ClearoutServerError),  # a 5xx is the transport's failure whatever the body says
        (200, failed(9999, "something new"), ClearoutError),
        (404, None, ClearoutError),
    ],
)
def test_failures_map_to_their_meaning(status: int, body: Any, expected: type[ClearoutError]) -> None:
    parsed = parse_body(body) if isinstance(body, bytes) else body
    with pytest.raises(ClearoutError) as info:
        interpret_response(status, {}, parsed)
    assert type(info.value) is expected
    assert info.value.http_status == status
    if isinstance(body, dict) and "code" in body["error"]:
        assert info.value.code == body["error"]["code"]


def test_http_200_with_failed_status_is_never_success() -> None:
    with pytest.raises(ClearoutListUnavailable):
        interpret_response(200, {}, failed(1029, "List is not available") | {"data": {"list_id": "x"}})


def test_2xx_without_envelope_is_a_protocol_error_not_empty_data() -> None:
    with pytest.raises(ClearoutProtocolError, match=r"non-JSON body \(text/html\)"):
        interpret_response(200, {"Content-Type": "text/html"}, None)
    with pytest.raises(ClearoutProtocolError, match="not an object"):
        interpret_response(200, {}, ["not", "a", "mapping"])
    with pytest.raises(ClearoutProtocolError):
        interpret_response(204, {}, {"status": "failed", "error": "not an object"})


def test_redirects_are_configuration_errors_naming_only_the_origin() -> None:
    with pytest.raises(ClearoutConfigError) as info:
        interpret_response(301, {"Location": "https://user:pw@api.example.com/v2/x?sig=1"}, None)
    assert "https://api.example.com" in str(info.value) and "pw" not in str(info.value)


def test_vendor_text_is_bounded_and_never_echoes_the_token() -> None:
    token = "0123456789abcdef0123456789abcdef:" + "ab" * 32
    body = failed(None, f"bad header Authorization: {token} " + "x" * 5000)
    with pytest.raises(ClearoutBadInput) as info:
        interpret_response(400, {}, body, secrets=(token,))
    assert token not in str(info.value) and "***" in str(info.value)
    assert len(info.value.message) <= MAX_MESSAGE_CHARS + 1


def test_ids_in_error_details_must_look_like_ids() -> None:
    with pytest.raises(ClearoutProtocolError, match="2043"):
        interpret_response(200, {}, failed(2043, "Duplicate file", list_id="../../x"))
    with pytest.raises(ClearoutTimeout) as info:
        interpret_response(524, {}, failed(None, "Timeout", queue_id={"$ne": 1}))
    assert info.value.queue_id is None
    with pytest.raises(ClearoutError) as huge:
        interpret_response(200, {}, failed(float("inf"), "odd code"))  # type: ignore[arg-type]
    assert huge.value.code is None


def test_parse_body_survives_hostile_nesting() -> None:
    assert parse_body(b"[" * 100_000 + b"]" * 100_000) is None


def test_validation_failure_names_field_and_messages() -> None:
    with pytest.raises(ClearoutBadInput) as info:
        interpret_response(400, {}, JOI)
    exc = info.value
    assert exc.code is None
    assert exc.field == "list_id"
    assert exc.messages == ('"list_id" is required',)
    assert exc.reasons[0].location == "body"
    assert '"list_id" is required' in str(exc)


def test_credits_error_carries_required_credits() -> None:
    body = failed(1028, "Your available credits 2799 is not enough", required_credits=37201)
    with pytest.raises(ClearoutCreditsError) as info:
        interpret_response(402, {}, body)
    assert info.value.required_credits == 37201
    assert "37201" in str(info.value)


def test_duplicate_file_carries_earlier_list_id() -> None:
    with pytest.raises(ClearoutDuplicateFile) as info:
        interpret_response(
            200, {}, failed(2043, "Duplicate file not allowed", list_id="610097bf5c6d3469958acd29")
        )
    assert info.value.list_id == "610097bf5c6d3469958acd29"
    assert "610097bf5c6d3469958acd29" in str(info.value)


def test_timeout_carries_queue_id_when_present() -> None:
    body = failed(None, "Timeout occurred", resource_name="email_finder", queue_id="61008c4597947d45700f4bb2")
    with pytest.raises(ClearoutTimeout) as info:
        interpret_response(524, {}, body)
    assert info.value.queue_id == "61008c4597947d45700f4bb2"
    with pytest.raises(ClearoutTimeout) as info:
        interpret_response(524, {}, failed(None, "Timeout Occurred", resource_name="email"))
    assert info.value.queue_id is None
    assert not info.value.transient


def test_rate_limit_wait_comes_from_reset_header() -> None:
    headers = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1.234"}
    with pytest.raises(ClearoutRateLimited) as info:
        interpret_response(429, headers, failed(1030, "You have reached API rate limit"))
    assert info.value.retry_after == pytest.approx(1.234)
    assert info.value.transient
    # 429 without a code (the finder's documented answer) is a rate limit too; integer resets are accepted.
    with pytest.raises(ClearoutRateLimited) as info:
        interpret_response(
            429, {"x-ratelimit-reset": "7"}, {"status": "failed", "error": {"message": "slow down"}}
        )
    assert info.value.retry_after == 7.0


def test_rate_limit_wait_parsed_from_message_date() -> None:
    now = datetime(2021, 7, 27, 5, 28, 49, tzinfo=UTC).timestamp()
    message = (
        "You have reached API rate limit, try calling after Fri Jul 27 2021 10:59:19 GMT+0530 (IST) "
        "or to increase limit, upgrade plan"
    )
    assert retry_after_seconds({}, message, now=now) == pytest.approx(30.0)
    iso = (datetime.fromtimestamp(now, UTC) + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    assert retry_after_seconds(None, f"try calling after {iso} or upgrade", now=now) == pytest.approx(12.0)


def test_rate_limit_wait_from_an_epoch_reset_is_a_point_in_time_and_bounded() -> None:
    import time

    soon = {"x-ratelimit-reset": str(int(time.time()) + 20)}
    assert 18.0 <= retry_after_seconds(soon, "") <= 20.0
    assert (
        retry_after_seconds({"x-ratelimit-reset": str(int(time.time()) + 86_400)}, "") == RATE_WINDOW_SECONDS
    )
    assert retry_after_seconds({"x-ratelimit-reset": "1000000"}, "") == RATE_WINDOW_SECONDS  # ~11 days
    assert retry_after_seconds({"x-ratelimit-reset": "1000000001"}, "") == 0.0  # a time long past


def test_rate_limit_wait_is_clamped_and_defaulted() -> None:
    far = datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2))).strftime("%a %b %d %Y %H:%M:%S GMT+0200")
    assert retry_after_seconds({}, f"try calling after {far}", now=0.0) == RATE_WINDOW_SECONDS
    past = "try calling after Fri Jul 27 2021 10:59:19 GMT+0000 (UTC)"
    assert retry_after_seconds({}, past, now=datetime(2022, 1, 1, tzinfo=UTC).timestamp()) == 0.0
    assert retry_after_seconds({}, "You have reached API rate limit") == RATE_WINDOW_SECONDS


def test_parse_body_tolerates_missing_and_non_json() -> None:
    assert parse_body(b"") is None
    assert parse_body(b"<Error><Code>AccessDenied</Code></Error>") is None
    assert parse_body(b'{"status":"success"}') == {"status": "success"}


def test_messages_tell_what_to_do() -> None:
    auth = ClearoutAuthError("Invalid API Token", code=1000, http_status=401)
    assert "password of the Clearout connection" in str(auth)
    assert "code 1000" in str(auth) and "HTTP 401" in str(auth)
    assert "cancel one" in str(ClearoutBulkLimitReached("max reached", code=1001))
    assert "queue_id abc" in str(ClearoutTimeout("Timeout", queue_id="abc"))


@pytest.mark.parametrize(
    "exc",
    [
        ClearoutCreditsError("short", code=1028, http_status=402, required_credits=5),
        ClearoutRateLimited("slow", code=1030, http_status=429, retry_after=1.5),
        ClearoutDuplicateFile("dup", code=2043, http_status=200, list_id="l1"),
        ClearoutServerError("down", http_status=503, maybe_processed=False),
        ClearoutResultExpired("gone", code=1007, http_status=200),
        ClearoutListNotFound("not yours", code=1008, http_status=200),
        ClearoutProtocolError("no data", http_status=200),
    ],
)
def test_exceptions_survive_pickling(exc: ClearoutError) -> None:
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert copy.__dict__ == exc.__dict__
    assert str(copy) == str(exc)


# ---------------------------------------------------------------------------------- retry policy


class Script:
    """A callable that raises the given exceptions in turn, then returns "ok"; counts its calls."""

    def __init__(self, *failures: ClearoutError) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def run(script: Script, sleeps: list[float], **policy: Any) -> str:
    kwargs = {"max_retries": 3, "backoff": 0.5, "max_backoff": 4.0} | policy
    return Retrying(sleep=sleeps.append, **retry_arguments(**kwargs))(script)


def test_transient_failures_are_retried_with_growing_backoff() -> None:
    script, sleeps = (
        Script(ClearoutServerError("503"), ClearoutServerError("503"), ClearoutServerError("503")),
        [],
    )
    assert run(script, sleeps) == "ok"
    assert script.calls == 4
    assert sleeps[0] < sleeps[2]
    assert all(0.5 <= s <= 4.0 + 0.5 for s in sleeps)


def test_retries_are_bounded_and_reraise_the_last_error() -> None:
    last = ClearoutServerError("still down")
    script = Script(ClearoutServerError("503"), ClearoutServerError("503"), ClearoutServerError("503"), last)
    with pytest.raises(ClearoutServerError) as info:
        run(script, [])
    assert info.value is last
    assert script.calls == 4


def test_rate_limited_waits_what_the_server_said() -> None:
    script, sleeps = Script(ClearoutRateLimited("429", retry_after=2.0)), []
    assert run(script, sleeps) == "ok"
    assert 2.0 <= sleeps[0] <= 2.5


@pytest.mark.parametrize(
    "failure",
    [
        ClearoutProtocolError("malformed success"),
        ClearoutConfigError("http to another machine"),
        ClearoutAuthError("bad token", code=1000),
        ClearoutCreditsError("no credits", code=1002),
        ClearoutBadInput("validation failed"),
        ClearoutTimeout("524"),
        ClearoutDuplicateFile("dup", list_id="x"),
        ClearoutError("unknown"),
    ],
)
def test_permanent_failures_fail_at_once(failure: ClearoutError) -> None:
    script = Script(failure)
    with pytest.raises(type(failure)):
        run(script, [])
    assert script.calls == 1


def test_non_repeatable_requests_retry_only_what_provably_did_not_arrive() -> None:
    ambiguous = Script(ClearoutServerError("503", http_status=503))
    with pytest.raises(ClearoutServerError):
        run(ambiguous, [], resend_safe=False)
    assert ambiguous.calls == 1
    refused = Script(
        ClearoutServerError("refused", maybe_processed=False), ClearoutRateLimited("429", retry_after=0)
    )
    assert run(refused, [], resend_safe=False) == "ok"
    assert refused.calls == 3
