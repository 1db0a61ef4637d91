"""The Mail.so emulator over real HTTP: documented shapes, agreement with the Clearout sandbox, the
credit ledger, the rate limit, the faults and persistence across a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.verdicts import Status

StartSandbox = Callable[..., SandboxProcess]

VALIDATION_KEYS = {
    "id", "email", "username", "domain", "mx_record", "provider", "score", "isv_format", "isv_domain",
    "isv_mx", "isv_noblock", "isv_nocatchall", "isv_nogeneric", "is_disposable", "is_free", "result",
    "reason", "did_you_mean",
}  # fmt: skip
BATCH_KEYS = {"id", "name", "created_at", "updated_at", "deleted_at", "finished_at", "user_id", "size"}
#: Addresses covering every outcome row: test addresses of the Clearout sandbox and ordinary ones.
SAMPLE = [
    "valid@example.com", "invalid@example.com", "catch_all@example.com", "unknown@example.com",
    "disposable@example.com", "role@example.com", "free@example.com", "syntax_error@example.com",
    "spamtrap@example.com", "blocklist_email_address@example.com", "allowlist_domain@example.com",
    "domain_not_found@example.com", "not_a_mailserver@example.com", "soft_bounce@example.com",
    "greylisted@example.com", "receiving_limit_reached@example.com", "overquota_and_inactive@example.com",
    "not an address", "jürgen@example.de", "john@gmial.com", "info@acme-corp.io", "someone@mailinator.com",
    *(f"user{i}@company{i % 7}.com" for i in range(40)),
]  # fmt: skip


def key(server: SandboxProcess) -> dict[str, str]:
    return {"x-mails-api-key": server.settings.mailso_api_key}


def validate(server: SandboxProcess, email: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(
        f"{server.mailso_url}/validate",
        params={"email": email},
        headers=key(server) if headers is None else headers,
        timeout=30,
    )


def post_batch(server: SandboxProcess, body: Any) -> requests.Response:
    return requests.post(f"{server.mailso_url}/batch", json=body, headers=key(server), timeout=30)


def get_batch(server: SandboxProcess, batch_id: str) -> requests.Response:
    return requests.get(f"{server.mailso_url}/batch/{batch_id}", headers=key(server), timeout=30)


def wait_finished(server: SandboxProcess, batch_id: str, ceiling: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + ceiling
    while (body := get_batch(server, batch_id).json())["finished_at"] is None:
        assert time.monotonic() < deadline, f"batch {batch_id} not finished within {ceiling} s"
        time.sleep(0.05)
    return body


# ----------------------------------------------------------------------------------- shapes


def test_validate_shape(sandbox: SandboxProcess) -> None:
    resp = validate(sandbox, "valid@example.com")
    assert resp.status_code == 200
    body = resp.json()
    assert body["error"] is None and set(body["data"]) == VALIDATION_KEYS
    data = body["data"]
    assert (data["result"], data["reason"], data["email"]) == (
        "deliverable",
        "accepted_email",
        "valid@example.com",
    )
    assert 0 <= data["score"] <= 100


def test_invalid_format_has_documented_nulls(sandbox: SandboxProcess) -> None:
    data = validate(sandbox, "not an address").json()["data"]
    assert (data["result"], data["reason"], data["isv_format"]) == ("undeliverable", "invalid_format", False)
    assert data["username"] is None and data["domain"] is None and data["mx_record"] is None
    assert data["isv_mx"] is None


def test_typo_gets_did_you_mean(sandbox: SandboxProcess) -> None:
    data = validate(sandbox, "john@gmial.com").json()["data"]
    assert data["did_you_mean"] == "john@gmail.com" and data["reason"] == "invalid_domain"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, None, "Unauthorized"),
        (400, "", "The body provided has an invalid format."),
    ],
)
def test_validate_errors(sandbox: SandboxProcess, status: int, body: str | None, error: str) -> None:
    headers = {"x-mails-api-key": "wrong"} if body is None else None
    resp = validate(sandbox, "" if body == "" else "valid@example.com", headers)
    assert resp.status_code == status and resp.json() == {"data": None, "error": error}


def test_batch_create_then_finish(sandbox: SandboxProcess) -> None:
    resp = post_batch(sandbox, {"emails": ["valid@example.com", "catch_all@example.com", "x@y.org"]})
    assert resp.status_code == 200
    created = resp.json()
    assert "data" not in created and set(created) == BATCH_KEYS
    assert created["finished_at"] is None and created["size"] == 3
    done = wait_finished(sandbox, created["id"])
    assert set(done) == BATCH_KEYS | {"emails"} and done["size"] == 3
    assert [e["email"] for e in done["emails"]] == ["valid@example.com", "catch_all@example.com", "x@y.org"]
    assert all(set(e) == VALIDATION_KEYS for e in done["emails"])
    assert done["emails"][1]["isv_nocatchall"] is False
    assert get_batch(sandbox, created["id"]).json()["emails"] == done["emails"]  # stable ids and verdicts


@pytest.mark.parametrize(
    "body", [{}, {"emails": []}, {"emails": "a@b.com"}, {"emails": ["", "a@b.com"]}, [1]]
)
def test_bad_batch_body(sandbox: SandboxProcess, body: Any) -> None:
    resp = post_batch(sandbox, body)
    assert resp.status_code == 400
    assert resp.json() == {"data": None, "error": "The body provided has an invalid format."}


def test_unknown_batch_is_404(sandbox: SandboxProcess) -> None:
    resp = get_batch(sandbox, "00000000-0000-0000-0000-000000000000")
    assert resp.status_code == 404 and resp.json()["data"] is None and resp.json()["error"]


def test_plan_error_without_paid_plan(sandbox_factory: StartSandbox) -> None:
    server = sandbox_factory(SandboxSettings(mailso_paid_plan=False))
    resp = post_batch(server, {"emails": ["valid@example.com"]})
    assert resp.json() == {"data": None, "error": "Paid subscription required to use list validations"}
    assert validate(server, "valid@example.com").status_code == 200  # single validations still work
    assert server.mailso_stats()["batches_created"] == 0


# ----------------------------------------------------------------------------------- consistency


def test_verdicts_agree_with_the_clearout_sandbox(sandbox: SandboxProcess) -> None:
    """The same address means the same thing in both emulators, in either API's words."""
    auth = {"Authorization": sandbox.settings.clearout_token}
    for email in SAMPLE:
        clearout = requests.post(
            f"{sandbox.clearout_url}/email_verify/instant", json={"email": email}, headers=auth, timeout=30
        ).json()["data"]
        mailso = validate(sandbox, email).json()["data"]
        status, code = Status(clearout["status"]), clearout["sub_status"]["code"]
        expected = {
            Status.VALID: {"deliverable"},
            Status.CATCH_ALL: {"risky"},
            Status.UNKNOWN: {"unknown"},
            # soft bounces are risky (low deliverability), every other invalid address undeliverable
            Status.INVALID: {"risky"} if code in (413, 419, 421, 428) else {"undeliverable"},
        }[status]
        assert mailso["result"] in expected, (email, clearout["status"], code, mailso["result"])
        assert mailso["is_disposable"] is (clearout["disposable"] == "yes"), email
        assert mailso["is_free"] is (clearout["free"] == "yes"), email
        assert mailso["isv_nogeneric"] is (clearout["role"] == "no"), email
        assert mailso["isv_nocatchall"] is (status is not Status.CATCH_ALL), email
        assert mailso["did_you_mean"] == (clearout["suggested_email_address"] or None), email


# ----------------------------------------------------------------------------------- ledger, limits, faults


def test_credit_ledger_and_quota(sandbox_factory: StartSandbox) -> None:
    server = sandbox_factory(SandboxSettings(mailso_credits=5))
    assert validate(server, "valid@example.com").status_code == 200
    assert post_batch(server, {"emails": ["a@b.com", "c@d.com", "e@f.com"]}).status_code == 200
    stats = server.mailso_stats()
    assert (stats["mailso_credits_used"], stats["mailso_credits_available"]) == (4, 1)
    too_big = post_batch(server, {"emails": ["a@b.com", "c@d.com"]})
    assert too_big.status_code == 429 and too_big.json() == {"data": None, "error": "Quota exceeded"}
    assert validate(server, "last@example.org").status_code == 200
    exhausted = validate(server, "one.more@example.org")
    assert exhausted.status_code == 429 and exhausted.json()["error"] == "Quota exceeded"
    stats = server.mailso_stats()
    assert stats["mailso_credits_used"] == 5 and stats["validations"] == 2 and stats["batch_emails"] == 3
    assert stats["quota_exceeded"] == 2


def test_rate_limit_answers_429_with_retry_after(sandbox_factory: StartSandbox) -> None:
    server = sandbox_factory(SandboxSettings(mailso_rpm=2, rate_window=30.0))
    assert [validate(server, f"u{i}@example.org").status_code for i in range(2)] == [200, 200]
    limited = validate(server, "u3@example.org")
    assert limited.status_code == 429 and limited.json() == {"data": None, "error": "Too many requests"}
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    stats = server.mailso_stats()
    assert stats["rate_limited"] == 1 and stats["validations"] == 2  # the refused call cost nothing


def test_fault_switches(sandbox_factory: StartSandbox) -> None:
    server = sandbox_factory(SandboxSettings())
    server.set_faults(mailso_fault_rate_503=1.0)
    resp = validate(server, "valid@example.com")
    assert resp.status_code == 503 and resp.content == b""
    server.set_faults(mailso_fault_rate_503=0.0, mailso_lost_batch_answers=1)
    lost = post_batch(server, {"emails": ["a@b.com"]})
    assert lost.status_code == 503 and lost.content == b""
    assert post_batch(server, {"emails": ["c@d.com"]}).status_code == 200  # the switch counted down
    stats = server.mailso_stats()
    assert stats["batches_created"] == 2 and stats["mailso_credits_used"] == 2  # the lost one was charged
    assert stats["lost_batch_answers"] == 1 and stats["faults_503"] == 1 and stats["validations"] == 0
    assert server.faults()["mailso_lost_batch_answers"] == 0


def test_state_survives_a_kill(sandbox_factory: StartSandbox, tmp_path: Path) -> None:
    server = sandbox_factory(SandboxSettings(state_dir=str(tmp_path / "state"), mailso_batch_rate=1.0))
    assert validate(server, "valid@example.com").status_code == 200
    created = post_batch(server, {"emails": ["valid@example.com", "catch_all@example.com"]}).json()
    server.restart(kill=True)
    stats = server.mailso_stats()
    assert stats["mailso_credits_used"] == 3 and stats["batches"] == [created["id"]]
    done = wait_finished(server, created["id"])
    assert [e["result"] for e in done["emails"]] == ["deliverable", "risky"]
