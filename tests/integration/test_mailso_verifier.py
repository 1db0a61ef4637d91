"""MailsoVerifier against the sandbox: one address, checkpointed batches, and what a retry pays.

Witness: the sandbox's Mail.so counters (batches created, credits used) and the rows the verifier
returned, compared with what the Mail.so emulator answers for the same address.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clearout_provider.exceptions import MailsoBatchInDoubt
from clearout_provider.instant_calls import Checkpoint
from clearout_provider.mailso.verifier import MailsoVerifier
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.verification.model import RESULT_COLUMNS, DecidedBy

EMAILS = [
    "valid@example.com",
    "mailbox_not_found@example.com",
    "catch_all@example.com",
    "disposable@example.com",
    "role@example.com",
    "ann.lee@northwind.io",
    "bob@contoso.org",
]


@pytest.fixture
def server(sandbox_factory: Callable[[SandboxSettings], SandboxProcess]) -> SandboxProcess:
    return sandbox_factory(SandboxSettings(mailso_batch_rate=10_000))


def verifier(server: SandboxProcess, mailso_connect: Callable[..., Any], **extra: Any) -> MailsoVerifier:
    mailso_connect(server, extra=extra)
    return MailsoVerifier(poll_interval=0.2, batch_timeout=120)


def test_one_address_is_a_neutral_verdict_row(
    server: SandboxProcess, mailso_connect: Callable[..., Any]
) -> None:
    row = verifier(server, mailso_connect).verify_one("mailbox_not_found@example.com")

    assert set(row) == set(RESULT_COLUMNS)
    assert (row["verifier"], row["verdict"], row["verdict_reason"]) == (
        "mailso",
        "undeliverable",
        "rejected_email",
    )
    assert row["bounce"] == "hard" and row["safe_to_send"] is False
    assert row["decided_by"] == DecidedBy.MAILSO_INSTANT and row["verified_at"] is not None
    assert row["clearout_status"] is None  # another verifier's detail stays empty
    assert server.mailso_stats()["mailso_credits_used"] == 1


def test_batches_answer_every_address_once_and_a_retry_collects_them_without_paying_again(
    server: SandboxProcess, mailso_connect: Callable[..., Any], tmp_path: Path
) -> None:
    answered: dict[str, dict[str, Any]] = {}
    mailso = verifier(server, mailso_connect, batch_size=3)
    with Checkpoint(tmp_path, "mailso-batches") as checkpoint:
        rows = mailso.verify_in_batches(EMAILS, checkpoint, answered.__setitem__)

    assert sorted(rows) == sorted(answered) == sorted(EMAILS)
    stats = server.mailso_stats()
    assert stats["batches_created"] == 3 and stats["mailso_credits_used"] == len(EMAILS)
    by_address = {e: mailso.verify_one(e) for e in EMAILS}  # what Mail.so says one at a time
    for email, row in rows.items():
        assert row["decided_by"] == DecidedBy.MAILSO_BATCH
        assert (row["verdict"], row["verdict_reason"]) == (
            by_address[email]["verdict"],
            by_address[email]["verdict_reason"],
        ), email
    assert rows["catch_all@example.com"]["is_catch_all"] is True
    paid = server.mailso_stats()["mailso_credits_used"]

    # The same task retried (its checkpoint in the task folder): every batch is collected, none posted.
    with Checkpoint(tmp_path, "mailso-batches") as checkpoint:
        again = mailso.verify_in_batches(EMAILS, checkpoint, lambda e, r: None)

    assert sorted(again) == sorted(EMAILS)
    after = server.mailso_stats()
    assert after["batches_created"] == 3 and after["mailso_credits_used"] == paid


def test_a_lost_creation_answer_fails_the_task_and_is_never_reposted(
    server: SandboxProcess, mailso_connect: Callable[..., Any], tmp_path: Path
) -> None:
    mailso = verifier(server, mailso_connect, batch_size=10)
    server.set_faults(mailso_lost_batch_answers=1)

    with Checkpoint(tmp_path, "mailso-batches") as checkpoint, pytest.raises(MailsoBatchInDoubt):
        mailso.verify_in_batches(EMAILS, checkpoint, lambda e, r: None)
    # A retry of the task (same checkpoint) does not post it either: it may exist and be charged.
    with (
        Checkpoint(tmp_path, "mailso-batches") as checkpoint,
        pytest.raises(MailsoBatchInDoubt, match="dashboard"),
    ):
        mailso.verify_in_batches(EMAILS, checkpoint, lambda e, r: None)

    # Mail.so created (and charged) the batch once; nobody posted it a second time.
    assert server.mailso_stats()["batches_created"] == 1
