"""The per-run metric counts, the low-credit rule and the failure message: pure functions, no I/O.

What Airflow's StatsD client actually sends is tested over a real UDP socket in
tests/integration/test_metrics_statsd.py, and end to end in tests/dags/test_metrics_nightly.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import pytest

from clearout_provider.contacts import ContactCounts
from clearout_provider.credit_check import CreditCheck, check_credits, low_credit_action
from clearout_provider.exceptions import ClearoutAuthError, ClearoutCreditsError
from clearout_provider.metrics import run_counts, verifier_of
from clearout_provider.notifications.failure import failure_message
from clearout_provider.report import RunFacts

FACTS = RunFacts(
    dag_id="nightly",
    run_id="manual__1",
    mode="bulk",
    exported=30,
    no_email=2,
    fresh=6,
    to_verify=22,
    by_reason={"never_verified": 22},
    rows=22,
    by_status={"valid": 12, "invalid": 8, "unknown": 2},
    by_sub_status_code={},
    by_decided_by={
        "clearout_bulk": 11,
        "ledger": 3,
        "local_syntax": 4,
        "local_duplicate": 2,
        "missing_from_result": 2,
    },
    by_bounce_type={"none": 22},
    prepared=ContactCounts(total_rows=22, empty=0, syntax_invalid=4, duplicates=2, to_verify=16),
    credits_spent=9,
    credits_unmeasured=0,
    list_ids=("L1",),
    verify_chunks=1,
    reused=3,
    sent=13,
    credits_needed=13,
    load_input=22,
    updated=15,
    unsubscribed_only=1,
    unchanged=2,
    not_verified=2,
    rejected=2,
    unsubscribed=5,
    resubscribed=0,
    by_rejection_code={"515": 2},
    by_unsubscribe_reason={"hard_bounce:406": 5},
    by_no_verdict={"missing_from_result": 2},
    dry_run=False,
)


def test_run_counts_come_from_the_run_facts_by_who_decided() -> None:
    assert run_counts(FACTS) == {
        "verified": 11,
        "decided_locally": 4,
        "duplicates": 2,
        "reused": 3,
        "skipped_fresh": 6,
        "no_verdict": 2,
        "credits_spent": 9,
        "unsubscribed": 5,
        "rejected": 2,
    }


def test_instant_and_mailso_deciders_count_as_verified_and_their_failures_as_no_verdict() -> None:
    facts = replace(
        FACTS,
        by_decided_by={
            "mailso_instant": 4,
            "mailso_batch": 5,
            "mailso_instant_failed": 1,
            "clearout_instant": 2,
        },
    )
    counts = run_counts(facts)
    assert counts["verified"] == 11 and counts["no_verdict"] == 1


def test_a_dry_run_counts_no_write_back_and_no_failure() -> None:
    facts = replace(FACTS, dry_run=True, credits_spent=0, by_decided_by={"dry_run_not_sent": 13, "ledger": 3})
    counts = run_counts(facts)
    assert "unsubscribed" not in counts and "rejected" not in counts
    assert counts["no_verdict"] == 0 and counts["verified"] == 0 and counts["credits_spent"] == 0


def test_an_unmeasured_spend_is_not_sent_as_zero() -> None:
    assert "credits_spent" not in run_counts(replace(FACTS, credits_spent=None))


def test_verifier_of_reads_the_verify_xcom() -> None:
    assert verifier_of([{"verifier": "mailso"}, {"verifier": "mailso"}]) == "mailso"
    assert verifier_of({"rows": 3}) == "clearout"


# ------------------------------------------------------------------------------------ low credit


@pytest.mark.parametrize(
    ("available", "needed", "threshold", "short", "below"),
    [
        (100, 50, None, False, False),
        (100, 100, 0, False, False),  # exactly enough; 0 = no threshold
        (99, 100, None, True, False),
        (500, 10, 1000, False, True),
        (5, 10, 1000, True, True),
    ],
)
def test_low_means_short_of_what_the_task_may_spend_or_under_the_accounts_threshold(
    available: int, needed: int, threshold: int | None, short: bool, below: bool
) -> None:
    check = CreditCheck("clearout", available, needed, threshold)
    assert (check.short, check.below_threshold, check.low) == (short, below, short or below)


def test_the_action_is_the_operators_else_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__CLEAROUT__LOW_CREDIT_ACTION", raising=False)
    assert low_credit_action() == "warn"
    monkeypatch.setenv("AIRFLOW__CLEAROUT__LOW_CREDIT_ACTION", "FAIL")
    assert low_credit_action() == "fail"
    assert low_credit_action("warn") == "warn"
    with pytest.raises(ValueError, match=r"\['warn', 'fail'\]"):
        low_credit_action("stop")


@dataclass(frozen=True)
class _Funds:
    available: int
    low_balance_threshold: int | None
    daily_verify_limit_remaining: int | None = None


class _Account:
    """A verifier's funds as values (the live check against the sandbox is in tests/integration)."""

    def __init__(self, funds: _Funds | None) -> None:
        self._funds = funds

    def funds(self) -> _Funds | None:
        return self._funds


def test_fail_mode_raises_a_credits_error_saying_what_is_short() -> None:
    with pytest.raises(ClearoutCreditsError) as raised:
        check_credits(_Account(_Funds(40, 500)), 10, action="fail", verifier_name="clearout", dag_id="d")
    text = str(raised.value)
    assert "40 credits left" in text and "threshold is 500" in text and "before sending anything" in text
    assert raised.value.required_credits == 460


def test_warn_mode_returns_the_balance_and_a_vendor_without_one_is_not_checked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    funds = _Funds(40, 500)
    assert check_credits(_Account(funds), 10, action="warn", verifier_name="clearout", dag_id="d") is funds
    assert "Low clearout credit balance" in caplog.text
    assert check_credits(_Account(None), 10, action="fail", verifier_name="mailso", dag_id="d") is None


# -------------------------------------------------------------------------------------- notifier


def _context(error: BaseException) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="nightly", task_id="verify_bulk", run_id="manual__1", try_number=2)
    return {"ti": ti, "exception": error}


def test_the_failure_message_names_the_task_and_masks_addresses() -> None:
    text = failure_message(_context(ValueError("bad row for john.doe@example.com; see ann@shop.io")))
    assert text.startswith("Task failed (DAG nightly · task verify_bulk · run manual__1 · try 2): ValueError")
    assert "john.doe@" not in text and "j***@example.com" in text and "a***@shop.io" in text


def test_a_low_credit_stop_reads_as_such_and_other_service_errors_do_not() -> None:
    low = failure_message(_context(ClearoutCreditsError("Low clearout credit balance", required_credits=5)))
    assert low.startswith("Clearout credits are low: the task stopped before spending")
    assert failure_message(_context(ClearoutAuthError("Invalid API token", code=1000))).startswith(
        "Task failed"
    )


def test_a_run_sent_again_adds_only_what_its_counters_grew_by(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cleared run that verified more on its second try sends the difference; nothing shrinks."""
    from clearout_provider import metrics

    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(metrics, "_send", lambda method, metric, value, **tags: sent.append((metric, value)))
    first = metrics.record_run(FACTS, verifier="clearout")
    assert (
        dict(sent)
        == {k: v for k, v in run_counts(FACTS).items() if v > 0}
        == {k: v for k, v in first.items() if v > 0}
    )
    sent.clear()
    assert metrics.record_run(FACTS, verifier="clearout", already_sent=first) == first
    assert sent == []
    grown = replace(FACTS, fresh=FACTS.fresh + 4)
    total = metrics.record_run(grown, verifier="clearout", already_sent=first)
    assert sent == [("skipped_fresh", 4)] and total["skipped_fresh"] == FACTS.fresh + 4
    sent.clear()
    assert metrics.record_run(FACTS, verifier="clearout", already_sent=total) == total and sent == []
