"""ClearoutInstantVerifyOperator with ClearoutHook mocked: what is sent, what is paid, what is written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pyarrow.parquet as pq
import pytest
from operator_fakes import calls_of, contacts_csv, credits, instant_answer, task_context

from clearout_provider.exceptions import ClearoutAuthError, ClearoutTimeout
from clearout_provider.operators.instant_verify import ClearoutInstantVerifyOperator, TooManyForInstant
from clearout_provider.results import DecidedBy

#: Two distinct deliverable addresses, one repeated (other case, padded), one malformed, one blank.
EMAILS = ["valid@example.com", "role@example.com", " VALID@example.com ", "not-an-address", ""]
SENT = {"valid@example.com", "role@example.com"}


@pytest.fixture
def hook() -> Iterator[mock.MagicMock]:
    """The ClearoutHook the operator builds: instant answers from the sandbox's verdict table."""
    with mock.patch("clearout_provider.clearout.verifier.ClearoutHook", autospec=True) as cls:
        instance = cls.return_value
        instance.verify_email.side_effect = lambda email, timeout_ms=None: instant_answer(email)
        instance.get_credits.side_effect = credits(100, 98)
        yield instance


def operator(tmp_path: Path, **kwargs: object) -> ClearoutInstantVerifyOperator:
    source = contacts_csv(tmp_path / "contacts.csv", EMAILS)
    return ClearoutInstantVerifyOperator(
        task_id="verify", source=source, workdir=str(tmp_path / "w"), **kwargs
    )


def result_rows(summary: dict) -> list[dict]:
    return pq.read_table(summary["result_path"].removeprefix("file://")).to_pylist()


def test_each_distinct_valid_address_is_sent_once_and_every_row_gets_a_result(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    summary = operator(tmp_path, timeout_ms=5_000).execute(task_context("verify"))

    assert {c.args[0] for c in hook.verify_email.call_args_list} == SENT
    assert hook.verify_email.call_count == len(SENT)
    assert all(c.kwargs == {"timeout_ms": 5_000} for c in hook.verify_email.call_args_list)
    hook.close.assert_called_once()
    assert (summary["sent"], summary["verified"], summary["failed"], summary["reused"]) == (2, 2, 0, 0)
    assert summary["credits_spent"] == 2  # the balance before minus after
    assert summary["mode"] == "instant" and summary["dry_run"] is False
    rows = result_rows(summary)
    assert [r["identity"] for r in rows] == ["1000", "1001", "1002", "1003", "1004"]  # input order, all rows
    assert [r["decided_by"] for r in rows] == [
        DecidedBy.CLEAROUT_INSTANT,
        DecidedBy.CLEAROUT_INSTANT,
        DecidedBy.LOCAL_DUPLICATE,  # the answer of its first occurrence, not sent again
        DecidedBy.LOCAL_SYNTAX,
        DecidedBy.LOCAL_SYNTAX,
    ]
    assert rows[0]["clearout_status"] == rows[2]["clearout_status"] == "valid"


def test_a_second_run_takes_every_verdict_from_the_ledger_and_sends_nothing(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    operator(tmp_path).execute(task_context("verify", run_id="manual__1"))
    hook.reset_mock()
    hook.get_credits.side_effect = credits(98, 98)

    again = operator(tmp_path).execute(task_context("verify", run_id="manual__2"))

    hook.verify_email.assert_not_called()
    assert (again["sent"], again["reused"], again["credits_spent"]) == (0, 2, 0)
    assert [r["decided_by"] for r in result_rows(again)][:2] == [DecidedBy.LEDGER, DecidedBy.LEDGER]


def test_dry_run_sends_nothing_and_says_what_would_be_sent(hook: mock.MagicMock, tmp_path: Path) -> None:
    summary = operator(tmp_path, dry_run="True").execute(task_context("verify"))

    hook.verify_email.assert_not_called()
    hook.get_credits.assert_not_called()
    assert (summary["dry_run"], summary["sent"], summary["credits_needed"]) == (True, 0, 2)
    rows = result_rows(summary)
    assert [r["decided_by"] for r in rows][:2] == [DecidedBy.DRY_RUN, DecidedBy.DRY_RUN]
    assert rows[0]["clearout_status"] is None  # no verdict: nothing downstream writes it


def test_an_address_clearout_gives_up_on_has_no_verdict_is_not_recorded_and_is_asked_again(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    def answer(email: str, timeout_ms: int | None = None) -> object:
        if email == "role@example.com":
            raise ClearoutTimeout("Timeout Occurred", http_status=524)
        return instant_answer(email)

    hook.verify_email.side_effect = answer
    summary = operator(tmp_path).execute(task_context("verify"))

    assert (summary["verified"], summary["failed"]) == (1, 1)
    by_identity = {r["identity"]: r for r in result_rows(summary)}
    assert by_identity["1001"]["decided_by"] == DecidedBy.CLEAROUT_INSTANT_FAILED
    assert by_identity["1001"]["clearout_status"] is None
    assert "ClearoutTimeout" in by_identity["1001"]["verdict_reason"]

    hook.verify_email.reset_mock(side_effect=True)
    hook.verify_email.side_effect = lambda email, timeout_ms=None: instant_answer(email)
    hook.get_credits.side_effect = credits(98, 97)
    operator(tmp_path).execute(task_context("verify", run_id="manual__2"))
    assert calls_of(hook.verify_email) == ["role@example.com"]  # a failure is never a verdict


def test_an_account_error_fails_the_task(hook: mock.MagicMock, tmp_path: Path) -> None:
    hook.verify_email.side_effect = ClearoutAuthError("Invalid API token", code=1000, http_status=401)
    with pytest.raises(ClearoutAuthError):
        operator(tmp_path).execute(task_context("verify"))
    hook.close.assert_called_once()


def test_more_addresses_than_max_addresses_are_refused_before_any_call(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    with pytest.raises(TooManyForInstant, match="max_addresses=1"):
        operator(tmp_path, max_addresses=1).execute(task_context("verify"))
    hook.verify_email.assert_not_called()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_ms": 180_001}, "timeout_ms"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"result_format": "xlsx"}, "result_format"),
    ],
)
def test_bad_settings_fail_when_the_dag_is_parsed(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        operator(tmp_path, **kwargs)
