"""mailso.protocol: every documented answer shape and every failure, decided without a server."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from tenacity import Retrying

from clearout_provider.exceptions import (
    MailsoAuthError,
    MailsoBadRequest,
    MailsoBatchTimeout,
    MailsoConfigError,
    MailsoError,
    MailsoNotFound,
    MailsoPlanRequired,
    MailsoProtocolError,
    MailsoQuotaExceeded,
    MailsoRateLimited,
    MailsoUnavailable,
    ServiceError,
)
from clearout_provider.mailso import protocol
from clearout_provider.mailso.models import MailsoBatch

KEY = "5a4db0c5-a4db-4c5a-8db0-c5a4db0c5a4d"


def validation(**overrides: Any) -> dict[str, Any]:
    """A documented ``/validate`` data object (deliverable), with overrides."""
    return {
        "id": "0f6a2f3e-7c1b-4a57-9b5e-1d2c3b4a5f60",
        "email": "ann@example.org",
        "username": "ann",
        "domain": "example.org",
        "mx_record": "mx1.example.org",
        "provider": "google",
        "score": 97,
        "isv_format": True,
        "isv_domain": True,
        "isv_mx": True,
        "isv_noblock": True,
        "isv_nocatchall": True,
        "isv_nogeneric": True,
        "is_disposable": False,
        "is_free": False,
        "result": "deliverable",
        "reason": "accepted_email",
    } | overrides


def batch(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "b1f0c1de-0000-4000-8000-000000000001",
        "name": "batch-b1f0c1de",
        "created_at": "2026-12-01T10:00:00.000Z",
        "updated_at": "2026-12-01T10:00:00.000Z",
        "deleted_at": None,
        "finished_at": None,
        "user_id": "u-1",
        "size": 2,
    } | overrides


def failure(message: str) -> dict[str, Any]:
    return {"data": None, "error": message}


# ----------------------------------------------------------------------------------- requests


def test_request_builders_are_method_path_constants() -> None:
    assert protocol.VALIDATE == ("GET", "/validate")
    assert protocol.BATCH_CREATE == ("POST", "/batch")
    assert protocol.BATCH_GET == ("GET", "/batch/{batch_id}")
    req = protocol.validate_request("a+b@example.org")
    assert (req.method, req.path, req.params, req.resend_safe) == (
        "GET",
        "/validate",
        {"email": "a+b@example.org"},
        True,
    )
    created = protocol.create_batch_request(("a@x.org", "b@x.org"))
    assert (created.method, created.json, created.resend_safe) == (
        "POST",
        {"emails": ["a@x.org", "b@x.org"]},
        False,
    )
    assert protocol.get_batch_request("abc-123").path == "/batch/abc-123"


@pytest.mark.parametrize("bad", ["", "../validate", "a/b", "x" * 65, "id?x=1"])
def test_a_batch_id_that_is_not_an_id_never_reaches_a_path(bad: str) -> None:
    with pytest.raises(MailsoBadRequest, match="nothing was sent"):
        protocol.get_batch_request(bad)


# ----------------------------------------------------------------------------------- validations


def test_documented_validation_shape() -> None:
    result = protocol.read_validation(200, {}, {"data": validation(), "error": None})
    assert result.email == "ann@example.org" and result.result == "deliverable"
    assert result.reason == "accepted_email" and result.score == 97
    assert (result.role, result.catch_all, result.blocklisted) == (False, False, False)
    assert result.did_you_mean is None


def test_documented_nulls_and_did_you_mean() -> None:
    data = validation(
        username=None,
        domain=None,
        mx_record=None,
        provider=None,
        score=None,
        isv_format=False,
        isv_domain=False,
        isv_mx=None,
        result="undeliverable",
        reason="invalid_format",
        did_you_mean="ann@gmail.com",
    )
    result = protocol.read_validation(200, {}, {"data": data, "error": None})
    assert (result.username, result.domain, result.mx_record, result.provider) == (None, None, None, None)
    assert result.isv_mx is None and result.score is None
    assert result.did_you_mean == "ann@gmail.com"


@pytest.mark.parametrize(
    ("flag", "prop"),
    [("isv_nogeneric", "role"), ("isv_nocatchall", "catch_all"), ("isv_noblock", "blocklisted")],
)
def test_isv_flags_are_positive_checks(flag: str, prop: str) -> None:
    result = protocol.read_validation(200, {}, {"data": validation(**{flag: False}), "error": None})
    assert getattr(result, prop) is True


def test_reason_is_open_text() -> None:
    data = validation(result="risky", reason="something_new")
    assert protocol.read_validation(200, {}, {"data": data, "error": None}).reason == "something_new"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (validation(result="maybe"), "'result' is not one of"),
        (validation(result=None), "'result'"),
        (validation(email=""), "'email'"),
        (validation(id=None), "'id'"),
        (validation(isv_format="yes"), "'isv_format' is not true or false"),
        (validation(isv_mx="no"), "'isv_mx' is not true, false or null"),
        (validation(score=101), "'score'"),
        (validation(score=True), "'score'"),
        (validation(domain=5), "'domain' is not a string"),
    ],
)
def test_malformed_validation_is_a_protocol_error(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(MailsoProtocolError, match=problem):
        protocol.read_validation(200, {}, {"data": data, "error": None})


@pytest.mark.parametrize("body", [None, [], "ok", {"data": None, "error": None}, {"data": [1]}])
def test_unreadable_validate_success(body: Any) -> None:
    with pytest.raises(MailsoProtocolError):
        protocol.read_validation(200, {}, body)


# ----------------------------------------------------------------------------------- batches


def test_created_batch_is_top_level_and_unfinished() -> None:
    created = protocol.read_batch(200, {}, batch())
    assert isinstance(created, MailsoBatch)
    assert created.size == 2 and created.emails == () and not created.finished
    assert created.created_at == datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_finished_batch_with_emails() -> None:
    body = batch(
        finished_at="2026-12-01T10:00:01.000Z",
        emails=[
            validation(),
            validation(id="2", email="bob@example.org", result="risky", reason="catch_all"),
        ],
    )
    done = protocol.read_batch(200, {}, body)
    assert done.finished and [v.email for v in done.emails] == ["ann@example.org", "bob@example.org"]


def test_wrapped_batch_is_tolerated() -> None:
    assert protocol.read_batch(200, {}, {"data": batch(), "error": None}).id == batch()["id"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (batch(size=None), "'size'"),
        (batch(size=-1), "'size'"),
        (batch(id=""), "'id'"),
        (batch(finished_at="yesterday"), "'finished_at'"),
        (batch(emails={"a": 1}), "'emails' is not a list"),
        (batch(emails=[1]), r"emails\[0\] is not an object"),
        (batch(emails=[validation(result="?")]), r"emails\[0\]"),
    ],
)
def test_malformed_batch_is_a_protocol_error(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(MailsoProtocolError, match=problem):
        protocol.read_batch(200, {}, body)


# ----------------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (401, "Unauthorized", MailsoAuthError),
        (403, "Forbidden", MailsoAuthError),
        (400, "The body provided has an invalid format.", MailsoBadRequest),
        (422, "The body provided has an invalid format.", MailsoBadRequest),
        (404, "Batch not found", MailsoNotFound),
        (403, "Paid subscription required to use list validations", MailsoPlanRequired),
        (402, "Paid subscription required to use list validations", MailsoPlanRequired),
        (200, "Paid subscription required to use list validations", MailsoPlanRequired),
        (429, "Too many requests", MailsoRateLimited),
        (429, "Quota exceeded", MailsoQuotaExceeded),
        (429, "Not enough credits", MailsoQuotaExceeded),
        (500, "Internal Server Error", MailsoUnavailable),
        (503, "", MailsoUnavailable),
        (418, "teapot", MailsoError),
    ],
)
def test_error_envelope(status: int, message: str, cls: type[MailsoError]) -> None:
    for read in (protocol.read_validation, protocol.read_batch):
        with pytest.raises(MailsoError) as info:
            read(status, {}, failure(message))
        assert type(info.value) is cls
        assert info.value.http_status == status
        assert isinstance(info.value, ServiceError) and info.value.service == "Mail.so"


@pytest.mark.parametrize(
    ("status", "cls"), [(503, MailsoUnavailable), (502, MailsoUnavailable), (401, MailsoAuthError)]
)
def test_failures_without_a_body(status: int, cls: type[MailsoError]) -> None:
    with pytest.raises(cls):
        protocol.read_validation(status, {}, None)


def test_redirect_is_refused_as_config() -> None:
    with pytest.raises(MailsoConfigError, match="redirect to https://evil.example"):
        protocol.read_batch(302, {"Location": "https://evil.example/steal?x=1"}, None)


def test_transient_kinds() -> None:
    transient = {c for c in (MailsoRateLimited, MailsoUnavailable) if c.transient}
    assert transient == {MailsoRateLimited, MailsoUnavailable}
    for cls in (MailsoAuthError, MailsoBadRequest, MailsoPlanRequired, MailsoQuotaExceeded, MailsoNotFound,
                MailsoProtocolError, MailsoConfigError, MailsoBatchTimeout):  # fmt: skip
        assert not cls.transient


def test_the_key_never_reaches_a_message() -> None:
    echoed = failure(f"bad header x-mails-api-key: {KEY}")
    with pytest.raises(MailsoError) as info:
        protocol.read_validation(400, {}, echoed, (KEY,))
    assert KEY not in str(info.value) and "***" in str(info.value)


def test_exceptions_pickle() -> None:
    for exc in (
        MailsoRateLimited("x", retry_after=3.0, http_status=429),
        MailsoUnavailable("y", maybe_processed=False),
        MailsoBatchTimeout("z", batch_id="b-1"),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and back.__dict__ == exc.__dict__


# ----------------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "99999"}, protocol.MAX_RETRY_AFTER),
        ({"Retry-After": "soon"}, protocol.DEFAULT_RETRY_AFTER),
        ({"Retry-After": "nan"}, protocol.DEFAULT_RETRY_AFTER),
        ({}, protocol.DEFAULT_RETRY_AFTER),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], seconds: float) -> None:
    assert protocol.retry_after_seconds(headers) == seconds


def test_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= protocol.retry_after_seconds({"Retry-After": when}) <= 30
    with pytest.raises(MailsoRateLimited) as info:
        protocol.read_validation(429, {"Retry-After": "4"}, failure("Too many requests"))
    assert info.value.retry_after == 4.0


# ----------------------------------------------------------------------------------- retry policy


def _attempts(exc: Exception, *, resend_safe: bool) -> int:
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise exc

    kwargs = protocol.retry_arguments(
        max_retries=3, backoff=0.0, max_backoff=0.0, resend_safe=resend_safe, describe="test"
    )
    kwargs["sleep"] = lambda _: None
    with pytest.raises(type(exc)):
        Retrying(**kwargs)(attempt)
    return calls


@pytest.mark.parametrize(
    ("exc", "resend_safe", "attempts"),
    [
        (MailsoRateLimited("slow down", retry_after=0.0), True, 4),
        (MailsoRateLimited("slow down", retry_after=0.0), False, 4),  # a 429 was not acted on
        (MailsoUnavailable("down"), True, 4),
        (MailsoUnavailable("down"), False, 1),  # POST /batch: it may have been created
        (MailsoUnavailable("refused", maybe_processed=False), False, 4),  # never arrived
        (MailsoQuotaExceeded("Quota exceeded", retry_after=0.0), True, 1),
        (MailsoAuthError("Unauthorized"), True, 1),
        (MailsoProtocolError("?"), True, 1),
    ],
)
def test_retry_policy(exc: Exception, resend_safe: bool, attempts: int) -> None:
    assert _attempts(exc, resend_safe=resend_safe) == attempts


def test_rate_limited_wait_honours_retry_after() -> None:
    waits: list[float] = []
    calls = 0

    def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MailsoRateLimited("slow down", retry_after=2.5)
        return "ok"

    kwargs = protocol.retry_arguments(
        max_retries=2, backoff=0.1, max_backoff=1.0, resend_safe=True, describe="t"
    )
    kwargs["sleep"] = waits.append
    assert Retrying(**kwargs)(attempt) == "ok"
    assert len(waits) == 1 and 2.5 <= waits[0] <= 2.6
