"""MailsoHook against the live sandbox over loopback HTTP: sync and async, every typed failure, the
retry policy, and the rule that a batch is never created (and paid for) twice."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Callable

import pytest

from clearout_provider.exceptions import (
    MailsoAuthError,
    MailsoBadRequest,
    MailsoBatchTimeout,
    MailsoConfigError,
    MailsoError,
    MailsoNotFound,
    MailsoPlanRequired,
    MailsoQuotaExceeded,
    MailsoUnavailable,
)
from clearout_provider.hooks.mailso import DEFAULT_BASE_URL, MailsoHook, normalise_base_url
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

Connect = Callable[..., MailsoHook]
StartSandbox = Callable[..., SandboxProcess]
UNKNOWN_BATCH = "11111111-2222-4333-8444-555555555555"


# ----------------------------------------------------------------------------------- single validation


def test_validate(mailso_hook: MailsoHook) -> None:
    result = mailso_hook.validate("valid@example.com")
    assert (result.email, result.result, result.reason) == (
        "valid@example.com",
        "deliverable",
        "accepted_email",
    )
    role = mailso_hook.validate("role@example.com")
    assert role.role and not role.catch_all
    typo = mailso_hook.validate("john@gmial.com")
    assert typo.result == "undeliverable" and typo.did_you_mean == "john@gmail.com"


async def test_avalidate(mailso_hook: MailsoHook) -> None:
    result = await mailso_hook.avalidate("catch_all@example.com")
    assert result.result == "risky" and result.catch_all


def test_test_connection(mailso_hook: MailsoHook, sandbox: SandboxProcess, mailso_connect: Connect) -> None:
    before = sandbox.mailso_stats()["mailso_credits_used"]
    assert mailso_hook.test_connection() == (True, "Connected: Mail.so accepted the API key")
    assert sandbox.mailso_stats()["mailso_credits_used"] == before  # the probe is free
    ok, message = mailso_connect(sandbox, api_key="wrong-key").test_connection()
    assert not ok and "Unauthorized" in message


# ----------------------------------------------------------------------------------- batches


def test_batch_create_and_wait(mailso_hook: MailsoHook) -> None:
    emails = ["valid@example.com", "invalid@example.com", "catch_all@example.com"]
    created = mailso_hook.create_batch(emails)
    assert created.size == 3 and not created.finished and created.emails == ()
    done = mailso_hook.wait_for_batch(created.id, poll_interval=0.05, timeout=60)
    assert done.finished and done.id == created.id
    assert [(v.email, v.result) for v in done.emails] == [
        ("valid@example.com", "deliverable"),
        ("invalid@example.com", "undeliverable"),
        ("catch_all@example.com", "risky"),
    ]


async def test_async_batch(mailso_hook: MailsoHook) -> None:
    created = await mailso_hook.acreate_batch(["valid@example.com"])
    deadline = time.monotonic() + 60
    while not (batch := await mailso_hook.aget_batch(created.id)).finished:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert [v.result for v in batch.emails] == ["deliverable"]


def test_wait_for_batch_times_out(sandbox_factory: StartSandbox, mailso_connect: Connect) -> None:
    server = sandbox_factory(SandboxSettings(mailso_batch_rate=0.001))
    hook = mailso_connect(server)
    created = hook.create_batch(["valid@example.com"])
    with pytest.raises(MailsoBatchTimeout) as info:
        hook.wait_for_batch(created.id, poll_interval=0.05, timeout=0.3)
    assert info.value.batch_id == created.id


def test_batch_size_is_enforced_before_sending(sandbox: SandboxProcess, mailso_connect: Connect) -> None:
    hook = mailso_connect(sandbox, extra={"batch_size": 2})
    assert hook.batch_size == 2
    before = sandbox.mailso_stats()["batches_created"]
    with pytest.raises(MailsoConfigError, match="batch_size of 2"):
        hook.create_batch(["a@b.com", "c@d.com", "e@f.com"])
    with pytest.raises(MailsoBadRequest, match="at least one"):
        hook.create_batch([])
    assert sandbox.mailso_stats()["batches_created"] == before


@pytest.mark.parametrize("size", [0, 1001, "many", True])
def test_batch_size_extra_is_validated(
    sandbox: SandboxProcess, mailso_connect: Connect, size: object
) -> None:
    with pytest.raises(MailsoConfigError, match="batch_size"):
        _ = mailso_connect(sandbox, extra={"batch_size": size}).batch_size


# ----------------------------------------------------------------------------------- typed failures


def test_wrong_key_is_an_auth_error_not_retried(
    sandbox_factory: StartSandbox, mailso_connect: Connect
) -> None:
    server = sandbox_factory(SandboxSettings())
    with pytest.raises(MailsoAuthError) as info:
        mailso_connect(server, api_key="wrong-key").validate("valid@example.com")
    assert info.value.http_status == 401
    assert server.mailso_stats()["unauthorized"] == 1


def test_missing_key(sandbox: SandboxProcess, mailso_connect: Connect) -> None:
    with pytest.raises(MailsoAuthError, match="no API key"):
        mailso_connect(sandbox, api_key="").validate("valid@example.com")


def test_bad_request_plan_and_not_found(
    sandbox_factory: StartSandbox, mailso_connect: Connect, mailso_hook: MailsoHook
) -> None:
    with pytest.raises(MailsoBadRequest) as bad:
        mailso_hook.validate("   ")
    assert bad.value.http_status == 400
    with pytest.raises(MailsoNotFound):
        mailso_hook.get_batch(UNKNOWN_BATCH)
    free_plan = mailso_connect(sandbox_factory(SandboxSettings(mailso_paid_plan=False)))
    with pytest.raises(MailsoPlanRequired, match="Paid subscription"):
        free_plan.create_batch(["valid@example.com"])


async def test_async_typed_failures(mailso_hook: MailsoHook) -> None:
    with pytest.raises(MailsoNotFound):
        await mailso_hook.aget_batch(UNKNOWN_BATCH)
    with pytest.raises(MailsoBadRequest):
        await mailso_hook.avalidate("")


def test_quota_exceeded_is_not_retried(sandbox_factory: StartSandbox, mailso_connect: Connect) -> None:
    server = sandbox_factory(SandboxSettings(mailso_credits=1))
    hook = mailso_connect(server)
    hook.validate("valid@example.com")
    with pytest.raises(MailsoQuotaExceeded):
        hook.validate("valid@example.com")
    assert server.mailso_stats()["quota_exceeded"] == 1


# ----------------------------------------------------------------------------------- retries


def test_429_is_retried_after_retry_after(sandbox_factory: StartSandbox, mailso_connect: Connect) -> None:
    server = sandbox_factory(SandboxSettings(mailso_rpm=1, rate_window=1.0))
    hook = mailso_connect(server)
    hook.validate("valid@example.com")
    started = time.monotonic()
    assert hook.validate("catch_all@example.com").result == "risky"
    assert time.monotonic() - started >= 0.9  # it waited for the window, as Retry-After said
    stats = server.mailso_stats()
    assert stats["rate_limited"] >= 1 and stats["validations"] == 2


async def test_async_429_is_retried(sandbox_factory: StartSandbox, mailso_connect: Connect) -> None:
    server = sandbox_factory(SandboxSettings(mailso_rpm=1, rate_window=1.0))
    hook = mailso_connect(server)
    await hook.avalidate("valid@example.com")
    assert (await hook.avalidate("invalid@example.com")).result == "undeliverable"
    assert server.mailso_stats()["rate_limited"] >= 1


def test_503_on_a_read_is_retried(sandbox_factory: StartSandbox, mailso_connect: Connect) -> None:
    server = sandbox_factory(SandboxSettings(mailso_fault_rate_503=0.5, fault_seed=3))
    hook = mailso_connect(server, max_retries=10)
    assert [hook.validate(f"user{i}@example.org").email for i in range(6)] == [
        f"user{i}@example.org" for i in range(6)
    ]
    stats = server.mailso_stats()
    assert stats["faults_503"] >= 1 and stats["validations"] == 6


@pytest.mark.parametrize("use_async", [False, True])
async def test_lost_batch_answer_is_not_reposted(
    sandbox_factory: StartSandbox, mailso_connect: Connect, use_async: bool
) -> None:
    server = sandbox_factory(SandboxSettings(mailso_lost_batch_answers=1))
    hook = mailso_connect(server)
    with pytest.raises(MailsoUnavailable) as info:
        if use_async:
            await hook.acreate_batch(["valid@example.com", "x@y.org"])
        else:
            hook.create_batch(["valid@example.com", "x@y.org"])
    assert info.value.http_status == 503
    stats = server.mailso_stats()
    assert stats["batches_created"] == 1 and stats["mailso_credits_used"] == 2  # created and paid once
    assert stats["lost_batch_answers"] == 1


def test_connection_refused_is_unavailable(sandbox_factory: StartSandbox, mailso_connect: Connect) -> None:
    server = sandbox_factory(SandboxSettings())
    url = server.mailso_url
    server.stop()
    hook = mailso_connect(server, host=url, max_retries=1)
    with pytest.raises(MailsoUnavailable) as info:
        hook.get_batch(UNKNOWN_BATCH)
    assert info.value.maybe_processed is False


# ----------------------------------------------------------------------------------- secrets and transport


def test_key_and_addresses_stay_out_of_logs_and_errors(
    sandbox_factory: StartSandbox, mailso_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    server = sandbox_factory(SandboxSettings(mailso_rpm=1, rate_window=1.0, mailso_lost_batch_answers=1))
    key = server.settings.mailso_api_key
    caplog.set_level(logging.DEBUG, logger="clearout_provider")
    hook = mailso_connect(server)
    hook.validate("secret.person@example.org")
    hook.validate("secret.person@example.org")  # a 429 first: the retry warning is logged
    errors: list[str] = []
    for call in (
        lambda: hook.create_batch(["secret.person@example.org"]),
        lambda: hook.get_batch(UNKNOWN_BATCH),
    ):
        with pytest.raises(MailsoError) as info:
            call()
        errors.append(str(info.value) + repr(info.value))
    bad = mailso_connect(server, api_key=key + "x")
    with pytest.raises(MailsoAuthError) as auth:
        bad.validate("secret.person@example.org")
    errors.append(str(auth.value))
    logged = caplog.text
    assert "retry" in logged and "Validating s***@example.org" in logged
    for text in (logged, *errors, repr(hook), repr(hook._settings()), str(pickle.dumps(hook))):
        assert key not in text
        assert "secret.person" not in text


def test_plain_http_off_loopback_is_refused(sandbox: SandboxProcess, mailso_connect: Connect) -> None:
    hook = mailso_connect(sandbox, host="http://mailso.internal.example:8080/v1")
    with pytest.raises(MailsoConfigError, match="plain http"):
        hook.validate("valid@example.com")
    allowed = mailso_connect(
        sandbox, host="http://mailso.internal.example:8080/v1", extra={"allow_insecure_http": True}
    )
    assert allowed._settings().base_url == "http://mailso.internal.example:8080/v1"


@pytest.mark.parametrize(
    ("host", "schema", "port", "url"),
    [
        (None, None, None, DEFAULT_BASE_URL),
        ("api.mails.so", None, None, "https://api.mails.so/v1"),
        ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765/v1"),
        ("127.0.0.1/mailso/v1", "http", 8765, "http://127.0.0.1:8765/mailso/v1"),
        ("https://api.mails.so/v1/", None, 443, "https://api.mails.so/v1"),
    ],
)
def test_base_url_from_host_schema_port(
    host: str | None, schema: str | None, port: int | None, url: str
) -> None:
    assert normalise_base_url(host, schema, port) == url


def test_pickled_hook_works_again(mailso_hook: MailsoHook) -> None:
    mailso_hook.validate("valid@example.com")
    clone = pickle.loads(pickle.dumps(mailso_hook))
    assert clone.validate("valid@example.com").result == "deliverable"
