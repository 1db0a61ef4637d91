"""The neutral verdict from each vendor's table, and what the mapping, the policy and the watermark do
with it: pure functions, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from clearout_provider.clevertap.mapping import PropertyMapping, resolve_column, verification_properties
from clearout_provider.mailso.statuses import SYNTAX_VERDICT, verdict_row
from clearout_provider.results import upgrade_columns
from clearout_provider.verification.model import RESULT_COLUMNS, DecidedBy
from clearout_provider.verification.policy import UnsubscribePolicy
from clearout_provider.verification.verifier import local_syntax_verdict, spec
from clearout_provider.watermark import Watermark

ANSWER = {
    "email": "ann@northwind.io",
    "result": "risky",
    "reason": "catch_all",
    "score": 54,
    "isv_format": True,
    "isv_domain": True,
    "isv_mx": None,
    "isv_noblock": True,
    "isv_nocatchall": False,
    "isv_nogeneric": False,
    "is_disposable": False,
    "is_free": True,
    "provider": "google",
    "mx_record": None,
    "did_you_mean": "ann@northwind.com",
}


def test_a_mailso_answer_becomes_the_neutral_verdict_with_its_detail() -> None:
    row = verdict_row(ANSWER, decided_by=DecidedBy.MAILSO_BATCH)
    assert list(row) == list(RESULT_COLUMNS)
    assert (row["verdict"], row["verdict_reason"], row["verdict_score"]) == ("risky", "catch_all", 54)
    assert row["safe_to_send"] is False and row["bounce"] == ""
    # isv_* are positive checks: false means the problem is there (catch-all, role address)
    assert row["is_catch_all"] is True and row["is_role"] is True and row["is_free"] is True
    assert row["mailso_isv_mx"] is None and row["mailso_isv_nocatchall"] is False
    assert row["suggested_email"] == "ann@northwind.com" and row["clearout_status"] is None


@pytest.mark.parametrize(
    ("result", "reason", "verdict", "bounce", "safe"),
    [
        ("deliverable", "accepted_email", "deliverable", "", True),
        ("undeliverable", "invalid_domain", "undeliverable", "hard", False),
        ("undeliverable", "rejected_email", "undeliverable", "hard", False),
        ("risky", "low_deliverability", "risky", "soft", False),
        ("unknown", None, "unknown", "", None),
        ("Something New", "whatever", "unknown", "", None),  # an unknown word is no verdict we trust
    ],
)
def test_results_and_reasons(
    result: str, reason: str | None, verdict: str, bounce: str, safe: bool | None
) -> None:
    row = verdict_row(
        {"email": "x@y.io", "result": result, "reason": reason}, decided_by=DecidedBy.MAILSO_INSTANT
    )
    assert (row["verdict"], row["bounce"], row["safe_to_send"]) == (verdict, bounce, safe)


def test_each_verifier_writes_the_local_syntax_verdict_in_its_own_words() -> None:
    assert local_syntax_verdict("mailso") == SYNTAX_VERDICT
    assert local_syntax_verdict("mailso")["verdict_reason"] == "invalid_format"
    clearout = local_syntax_verdict("clearout")
    assert (clearout["clearout_status"], clearout["clearout_sub_status_code"]) == ("invalid", 400)
    assert spec("mailso").charges_unknown and not spec("clearout").charges_unknown
    with pytest.raises(ValueError, match="choose one of"):
        spec("zerobounce")


def test_property_names_per_verifier_and_names_that_mean_the_same_column() -> None:
    assert verification_properties("clearout")[0] == "Clearout Verification Status"
    assert all("." not in name for name in verification_properties("mailso"))  # CleverTap refuses "."
    # A Clearout headline in a Mail.so mapping means Mail.so's headline; 0.1 column names still work.
    assert resolve_column("Clearout Verification Status", "mailso") == "verdict"
    assert resolve_column("clearout_safe_to_send", "clearout") == "safe_to_send"
    assert resolve_column("Mailso Reason", "mailso") == "verdict_reason"
    with pytest.raises(ValueError, match="for verifier 'mailso'"):
        resolve_column("Clearout Sub Status Code", "mailso")
    with pytest.raises(ValueError, match="forbidden"):
        PropertyMapping.from_params(renames={"verdict": "Mail.so Result"}, verifier="mailso")


def test_the_prompt_follows_seed_004_anything_but_deliverable_asks_for_a_fix() -> None:
    mapping = PropertyMapping.from_params(["Mailso Result", "Mailso Prompt Email Fix"], verifier="mailso")
    row = verdict_row(ANSWER, decided_by=DecidedBy.MAILSO_INSTANT)
    assert mapping.properties(row)["Mailso Prompt Email Fix"] is True
    good = verdict_row({**ANSWER, "result": "deliverable"}, decided_by=DecidedBy.MAILSO_INSTANT)
    props = mapping.properties(good)
    assert props["Mailso Result"] == "deliverable" and props["Mailso Prompt Email Fix"] is False


def test_the_policy_reads_neutral_fields_for_every_verifier() -> None:
    policy = UnsubscribePolicy()
    bad = verdict_row(
        {"email": "x@y.io", "result": "undeliverable", "reason": "invalid_domain"},
        decided_by=DecidedBy.MAILSO_BATCH,
    )
    assert policy.reason(bad) == "hard_bounce:invalid_domain"
    throwaway = verdict_row(
        {**ANSWER, "result": "deliverable", "is_disposable": True}, decided_by=DecidedBy.MAILSO_BATCH
    )
    assert policy.reason(throwaway) == "disposable" and not policy.lifts(throwaway)
    assert policy.lifts(verdict_row({**ANSWER, "result": "deliverable"}, decided_by=DecidedBy.MAILSO_BATCH))


def test_a_01_verdict_table_reads_under_todays_names_with_the_verdict_derived() -> None:
    old = pa.table(
        {
            "normalised_email": ["trap@x.io"],
            "clearout_status": ["invalid"],
            "clearout_sub_status_code": pa.array([401], pa.int32()),
            "clearout_sub_status": ["Spam Trap / Honeypot"],
            "clearout_bounce_type": ["soft"],
            "decided_by": ["clearout_bulk"],
        }
    )
    [row] = upgrade_columns(old).to_pylist()
    assert (row["verdict"], row["verifier"], row["verdict_reason"]) == (
        "undeliverable",
        "clearout",
        "Spam Trap / Honeypot",
    )
    assert row["is_spam_trap"] is True and row["bounce"] == "soft"
    assert UnsubscribePolicy().reason(row) == "spam_trap:401"


def test_the_watermark_only_moves_forward(tmp_path: Path) -> None:
    mark = Watermark("dag", workdir=str(tmp_path))
    assert mark.read() is None
    now = datetime(2026, 12, 3, 10, tzinfo=UTC)
    mark.advance(now)
    mark.advance(now - timedelta(hours=1))  # a slower, older run finishing late
    assert Watermark("dag", workdir=str(tmp_path)).read() == now
    with pytest.raises(ValueError, match="timezone-aware"):
        mark.advance(datetime(2026, 12, 3))
    mark.path.write_text("not json")
    with pytest.raises(ValueError, match="delete it to start over"):
        mark.read()
