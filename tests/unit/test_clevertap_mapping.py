"""The CleverTap mapping (verdicts.py), the unsubscribe policy, the load's per-row plan, the freshness filter.

Expected values are written out here, not derived from the tables under test, so a change to a table
shows up as a failing test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from clearout_provider.clearout.results import normalise_instant_result
from clearout_provider.clevertap.mapping import DUE_COLUMN
from clearout_provider.clevertap_rules import date_value
from clearout_provider.contacts import FRESHNESS_COLUMNS, Freshness, freshness_reasons
from clearout_provider.hooks import clevertap_models
from clearout_provider.hooks.clevertap_export import as_text
from clearout_provider.operators.clevertap import CleverTapLoadError, iter_result_batches, plan_row
from clearout_provider.operators.settings import (
    resolve_flag,
    resolve_freshness,
    resolve_mapping,
    resolve_unsubscribe,
)
from clearout_provider.sandbox.clearout_verdicts import TEST_ADDRESSES, TEST_DOMAIN, verdict_for
from clearout_provider.verdicts import (
    CLEVERTAP_PROPERTIES,
    MANAGED_PROPERTIES,
    RESULT_COLUMNS,
    SUB_STATUSES,
    UNSUBSCRIBE_PROPERTY,
    UNSUBSCRIBED_AT_PROPERTY,
    UNSUBSCRIBED_REASON_PROPERTY,
    VERIFICATION_PROPERTIES,
    PropertyMapping,
    UnsubscribeMethod,
    UnsubscribePolicy,
)
from clearout_provider.verification.model import DETAIL_COLUMNS

VERIFIED_ON = datetime(2026, 2, 3, 4, 5, 6, 789_000, tzinfo=UTC)
DAY = 86_400

#: Sub-status code → (status, bounce, reason under the default policy). Written out from the fact sheet.
SUB_STATUS_EXPECTED: dict[int, tuple[str, str | None, str | None]] = {
    200: ("valid", None, None),
    400: ("invalid", "hard", "hard_bounce:400"),
    401: ("invalid", "soft", "spam_trap:401"),
    402: ("unknown", None, None),
    403: ("invalid", "hard", "hard_bounce:403"),
    404: ("invalid", "hard", "hard_bounce:404"),
    405: ("unknown", None, None),
    406: ("invalid", "hard", "hard_bounce:406"),
    407: ("unknown", None, None),
    411: ("catch_all", None, None),
    412: ("unknown", None, None),
    413: ("invalid", "soft", None),
    414: ("unknown", None, None),
    415: ("unknown", None, None),
    416: ("invalid", "hard", "hard_bounce:416"),
    417: ("unknown", None, None),
    418: ("unknown", None, None),
    419: ("invalid", "soft", None),
    420: ("unknown", None, None),
    421: ("invalid", "soft", None),
    428: ("invalid", "soft", None),
    500: ("unknown", None, None),
    601: ("valid", None, None),
    602: ("invalid", None, None),
    603: ("valid", None, None),
    604: ("invalid", None, None),
    605: ("unknown", None, None),
    606: ("invalid", "hard", "hard_bounce:606"),
    701: ("invalid", "hard", "hard_bounce:701"),
}

#: Clearout test address (local part) → (status, code, safe to send, reason under the default policy).
TEST_ADDRESS_EXPECTED: dict[str, tuple[str, int, bool | None, str | None]] = {
    "valid": ("valid", 200, True, None),
    "invalid": ("invalid", 406, False, "hard_bounce:406"),
    "catch_all": ("catch_all", 411, False, None),
    "unknown": ("unknown", 412, None, None),
    "safe_to_send_yes": ("valid", 200, True, None),
    "safe_to_send_no": ("invalid", 406, False, "hard_bounce:406"),
    "safe_to_send_risky": ("catch_all", 411, False, None),
    "disposable": ("valid", 200, False, "disposable"),
    "role": ("valid", 200, False, None),
    "free": ("valid", 200, True, None),
    "gibberish": ("valid", 200, False, None),
    "hard_bounce": ("invalid", 406, False, "hard_bounce:406"),
    "soft_bounce": ("invalid", 413, False, None),
    "suggested_email_address": ("invalid", 406, False, "hard_bounce:406"),
    "syntax_error": ("invalid", 400, False, "hard_bounce:400"),
    "greylisted": ("unknown", 407, None, None),
    "spamtrap": ("invalid", 401, False, "spam_trap:401"),
    "blocklist_email_address": ("invalid", 602, False, None),
    "allowlist_email_address": ("valid", 601, True, None),
    "blocklist_domain": ("invalid", 604, False, None),
    "allowlist_domain": ("valid", 603, True, None),
    "blacklisted_email_address": ("invalid", 602, False, None),
    "whitelisted_email_address": ("valid", 601, True, None),
    "blacklisted_domain": ("invalid", 604, False, None),
    "whitelisted_domain": ("valid", 603, True, None),
    "domain_not_found": ("invalid", 403, False, "hard_bounce:403"),
    "not_a_mailserver": ("invalid", 404, False, "hard_bounce:404"),
    "mailbox_not_found": ("invalid", 406, False, "hard_bounce:406"),
    "mailbox_quota_exceeded": ("invalid", 413, False, None),
    "dns_query_timeout": ("unknown", 417, None, None),
    "unroutable_mailserver": ("unknown", 402, None, None),
    "overquota_and_inactive": ("invalid", 428, False, None),
    "receiving_limit_reached": ("invalid", 421, False, None),
}


def result_row(address: str) -> dict[str, Any]:
    """The result row the pipeline writes for ``address`` verified by the Clearout sandbox (instant path)."""
    return normalise_instant_result(verdict_for(address).as_instant(VERIFIED_ON))


def test_every_sub_status_code_and_test_address_is_covered() -> None:
    assert set(SUB_STATUS_EXPECTED) == set(SUB_STATUSES)
    assert set(TEST_ADDRESS_EXPECTED) == set(TEST_ADDRESSES)


@pytest.mark.parametrize("code", sorted(SUB_STATUS_EXPECTED))
def test_each_sub_status_maps_to_properties_and_an_unsubscribe_decision(code: int) -> None:
    status, bounce, reason = SUB_STATUS_EXPECTED[code]
    sub = SUB_STATUSES[code]
    row = normalise_instant_result(
        {
            "email_address": "someone@example.org",
            "status": sub.status.value,
            "sub_status": {"code": code, "desc": sub.desc},
            "bounce_type": sub.bounce.value,
            "disposable": "no",
            "verified_on": VERIFIED_ON.isoformat(),
        }
    )
    props = PropertyMapping().properties(row)
    assert props["Clearout Verification Status"] == status
    assert props["Clearout Sub Status Code"] == code and type(props["Clearout Sub Status Code"]) is int
    assert props["Clearout Sub Status"] == sub.desc
    assert props["Clearout Bounce Type"] == bounce  # "" (no bounce) is left absent, not written as ""
    assert UnsubscribePolicy().reason(row) == reason


@pytest.mark.parametrize("local", sorted(TEST_ADDRESS_EXPECTED))
def test_each_clearout_test_address_maps_to_properties_and_an_unsubscribe_decision(local: str) -> None:
    status, code, safe, reason = TEST_ADDRESS_EXPECTED[local]
    address = f"{local}@{TEST_DOMAIN}"
    row = result_row(address)
    props = PropertyMapping().properties(row)
    outcome = TEST_ADDRESSES[local]
    lifetime_days = 1 if status in ("unknown", "catch_all") else 30
    assert props == {
        "Clearout Verification Status": status,
        "Clearout Safe To Send": safe,
        "Clearout Sub Status Code": code,
        "Clearout Sub Status": SUB_STATUSES[code].desc,
        "Clearout Bounce Type": SUB_STATUSES[code].bounce.value or None,
        "Clearout Disposable": outcome.disposable,
        "Clearout Role Account": outcome.role,
        "Clearout Free Account": outcome.free,
        "Clearout Gibberish": outcome.gibberish,
        "Clearout Suggested Email": outcome.suggested or None,
        "Clearout Verified At": f"$D_{int(VERIFIED_ON.timestamp())}",
        "Clearout Verified Email": address,
        # Due after the default TTLs: 1 day for the uncertain statuses, 30 for the rest.
        "Clearout Reverify After": f"$D_{int(VERIFIED_ON.timestamp()) + DAY * lifetime_days}",
    }
    assert UnsubscribePolicy().reason(row) == reason


def test_the_due_date_is_the_verification_time_plus_the_verdicts_lifetime() -> None:
    at = int(VERIFIED_ON.timestamp())
    freshness = Freshness(ttl_days=10, uncertain_ttl_days=0.5)
    for local, lifetime in (
        ("valid", 10 * DAY),
        ("catch_all", DAY // 2),
        ("unknown", DAY // 2),
        ("invalid", 10 * DAY),
    ):
        props = PropertyMapping().properties(result_row(f"{local}@{TEST_DOMAIN}"), freshness=freshness)
        assert props["Clearout Reverify After"] == f"$D_{at + lifetime}", local
    # A locally decided verdict is due from when it was decided; without any date there is no due date.
    row = {"verified_email": "not-an-email", "clearout_status": "invalid", "verdict": "undeliverable"}
    decided = datetime(2026, 1, 1, tzinfo=UTC)
    dated = PropertyMapping().properties(row, verified_at_default=decided, freshness=freshness)
    assert dated["Clearout Reverify After"] == f"$D_{int(decided.timestamp()) + 10 * DAY}"
    assert PropertyMapping().properties(row)["Clearout Reverify After"] is None
    # Renamed like any property; Mail.so's verdicts have their own.
    renamed = PropertyMapping.from_params(None, {"reverify_after": "Verify Again After"})
    assert "Verify Again After" in renamed.properties(result_row(f"valid@{TEST_DOMAIN}"))
    assert "Mailso Reverify After" in PropertyMapping.from_params(verifier="mailso").property_names().values()


def test_property_values_round_trip_through_the_export_text_form() -> None:
    """What the load writes, read back by the export, compares equal (the "unchanged" check relies on it)."""
    props = PropertyMapping().properties(result_row("disposable@example.com"))
    as_exported = {k: as_text(v) for k, v in props.items() if v is not None}
    assert as_exported["Clearout Safe To Send"] == "False" and as_exported["Clearout Disposable"] == "True"
    assert as_exported["Clearout Sub Status Code"] == "200"
    assert as_exported["Clearout Verified At"] == "2026-02-03T04:05:06Z"


def test_verification_properties_moved_to_verdicts_and_still_importable_from_the_models() -> None:
    assert clevertap_models.VERIFICATION_PROPERTIES is VERIFICATION_PROPERTIES
    assert tuple(CLEVERTAP_PROPERTIES.values()) == VERIFICATION_PROPERTIES
    # Every Clearout column is written (plus the due date the load computes) except the ones no Clearout
    # answer fills or that only say who decided.
    assert set(CLEVERTAP_PROPERTIES) - {DUE_COLUMN} == set(RESULT_COLUMNS) - {
        "decided_by",
        "verifier",
        "verdict",
        "verdict_score",
        "is_catch_all",
        "is_spam_trap",
        *DETAIL_COLUMNS["mailso"],
    }


# --------------------------------------------------------------------------------- column choice, renames


def test_chosen_columns_by_either_name_plus_the_always_written_ones() -> None:
    mapping = PropertyMapping.from_params(["Clearout Safe To Send", "clearout_status"])
    props = mapping.properties(result_row("valid@example.com"))
    assert list(props) == [
        "Clearout Verification Status",
        "Clearout Safe To Send",
        "Clearout Verified At",
        "Clearout Verified Email",
        "Clearout Reverify After",
    ]


def test_renames_accept_either_name_and_are_checked_against_clevertap_key_rules() -> None:
    mapping = PropertyMapping.from_params(
        ["clearout_status"],
        {"Clearout Verification Status": "Email Status", "verified_email": "Checked Email"},
    )
    props = mapping.properties(result_row("invalid@example.com"))
    assert props["Email Status"] == "invalid" and props["Checked Email"] == "invalid@example.com"
    assert "Clearout Verification Status" not in props
    with pytest.raises(ValueError, match="forbidden character"):
        PropertyMapping.from_params(None, {"clearout_status": "Status: Clearout"})
    with pytest.raises(ValueError, match="same CleverTap property"):
        PropertyMapping.from_params(None, {"clearout_status": "Clearout Sub Status"})
    with pytest.raises(ValueError, match="MSG-email"):
        PropertyMapping.from_params(None, {"clearout_status": "MSG-email"})


def test_unknown_column_names_are_refused_with_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown CleverTap mapping column 'Clearout Score'.*clearout_status"
    ):
        PropertyMapping.from_params(["Clearout Score"])
    with pytest.raises(ValueError, match="Unknown CleverTap mapping column"):
        PropertyMapping.from_params(None, {"score": "Score"})


def test_locally_decided_verdicts_are_dated_by_the_given_default() -> None:
    row = {"verified_email": "not-an-email", "clearout_status": "invalid", "clearout_sub_status_code": 400}
    decided = datetime(2026, 1, 1, tzinfo=UTC)
    props = PropertyMapping().properties(row, verified_at_default=decided)
    assert props["Clearout Verified At"] == date_value(decided)
    assert PropertyMapping().properties(row)["Clearout Verified At"] is None


def test_values_from_pandas_rows_map_like_python_ones() -> None:
    pd = pytest.importorskip("pandas")
    row = pd.Series(
        {
            "clearout_sub_status_code": float("nan"),
            "safe_to_send": pd.NA,
            "verified_at": pd.NaT,
        }
    )
    props = PropertyMapping().properties(row)
    assert props["Clearout Sub Status Code"] is None and props["Clearout Safe To Send"] is None
    assert props["Clearout Verified At"] is None


# ----------------------------------------------------------------------------------------- policy


def test_policy_variants() -> None:
    blocklisted = result_row("blocklist_email_address@example.com")
    assert UnsubscribePolicy().reason(blocklisted) is None
    assert UnsubscribePolicy(sub_status_codes=frozenset({602})).reason(blocklisted) == "sub_status:602"
    assert UnsubscribePolicy(disposable=False).reason(result_row("disposable@example.com")) is None
    assert UnsubscribePolicy(spam_trap=False).reason(result_row("spamtrap@example.com")) is None
    assert UnsubscribePolicy(hard_bounce=False).reason(result_row("invalid@example.com")) is None
    assert UnsubscribePolicy(enabled=False).reason(result_row("spamtrap@example.com")) is None


def test_policy_from_params_and_its_errors() -> None:
    policy = UnsubscribePolicy.from_params({"method": "profile", "sub_status_codes": [602, "604"]})
    assert policy.method is UnsubscribeMethod.PROFILE and policy.sub_status_codes == {602, 604}
    assert (policy.via_profile, policy.via_subscribe_api) == (True, False)
    assert UnsubscribePolicy.from_params(None) == UnsubscribePolicy()
    with pytest.raises(ValueError, match=r"Unknown unsubscribe method 'email'.*subscribe_api"):
        UnsubscribePolicy.from_params({"method": "email"})
    with pytest.raises(ValueError, match=r"Unknown unsubscribe policy settings \['hard'\]"):
        UnsubscribePolicy.from_params({"hard": True})
    with pytest.raises(ValueError, match=r"Unknown sub-status codes \[999\]"):
        UnsubscribePolicy.from_params({"sub_status_codes": [999]})


def test_operator_settings_accept_rendered_text() -> None:
    """DAGs without render_template_as_native_obj hand the operators text; it must mean the same."""
    assert resolve_unsubscribe('{"method": "subscribe_api", "disposable": "False"}') == UnsubscribePolicy(
        method=UnsubscribeMethod.SUBSCRIBE_API, disposable=False
    )
    assert resolve_mapping("{'columns': ['clearout_status']}").columns == ("clearout_status",)
    assert resolve_freshness({"ttl_days": "7", "uncertain_ttl_days": 0.5}) == Freshness(7, 0.5)
    assert (resolve_flag("True", "dry_run"), resolve_flag("false", "dry_run")) == (True, False)
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        resolve_flag("maybe", "dry_run")
    with pytest.raises(ValueError, match="Unknown freshness settings"):
        resolve_freshness({"ttl": 3})


@pytest.mark.parametrize("rendered", ['"clearout_status"', "[1, 2]", "7"])
def test_settings_that_are_not_objects_are_refused_by_name(rendered: str) -> None:
    for resolve, name in ((resolve_mapping, "mapping"), (resolve_unsubscribe, "unsubscribe"),
                          (resolve_freshness, "freshness")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^{name} must be an object of named settings"):
            resolve(rendered)


# ------------------------------------------------------------------------------------- the load's plan

EXPORTED = frozenset((*VERIFICATION_PROPERTIES, *MANAGED_PROPERTIES))
DECIDED = datetime(2026, 2, 4, tzinfo=UTC)


def exported_row(address: str, **current: Any) -> dict[str, Any]:
    """A result row whose exported properties hold ``current`` (text, as the export writes them)."""
    return {"identity": "10000001", "objectId": "__x", "email": address, **current, **result_row(address)}


def as_written(address: str) -> dict[str, str]:
    """The export's view of a profile after the load wrote ``address``'s verdict (and unsubscribed it)."""
    props = PropertyMapping().properties(result_row(address), verified_at_default=DECIDED)
    return {k: as_text(v) for k, v in props.items() if v is not None} | {UNSUBSCRIBE_PROPERTY: "False"}


def test_plan_sends_only_what_differs_and_deletes_what_cleared() -> None:
    row = exported_row(
        "valid@example.com",
        **{"Clearout Verification Status": "invalid", "Clearout Suggested Email": "old@example.com"},
    )
    plan = plan_row(row, PropertyMapping(), UnsubscribePolicy(), exported=EXPORTED, decided_at=DECIDED)
    assert plan.update["Clearout Verification Status"] == "valid"
    assert plan.update["Clearout Suggested Email"] == {"$delete": 1}
    assert "Clearout Bounce Type" not in plan.update  # absent before, absent now
    assert plan.changes["Clearout Verification Status"] == {"from": "invalid", "to": "valid"}
    assert (
        plan.unsubscribe_reason is None and plan.address is None and UNSUBSCRIBE_PROPERTY not in plan.update
    )
    json.dumps(plan.changes)  # the outcome file stores it as JSON


def test_plan_after_a_round_trip_is_empty_or_only_the_address_unsubscribe() -> None:
    kept = exported_row("valid@example.com", **as_written("valid@example.com"))
    plan = plan_row(kept, PropertyMapping(), UnsubscribePolicy(), exported=EXPORTED, decided_at=DECIDED)
    assert plan.update == {} and plan.changes == {} and plan.address is None

    gone = exported_row("invalid@example.com", **as_written("invalid@example.com"))
    both = plan_row(gone, PropertyMapping(), UnsubscribePolicy(), exported=EXPORTED, decided_at=DECIDED)
    assert both.update == {} and both.address == "invalid@example.com"  # the Subscribe API is re-sent
    profile_only = UnsubscribePolicy(method=UnsubscribeMethod.PROFILE)
    assert (
        plan_row(gone, PropertyMapping(), profile_only, exported=EXPORTED, decided_at=DECIDED).address is None
    )


@pytest.mark.parametrize(
    ("method", "msg_email", "address"),
    [
        ("both", True, "spamtrap@example.com"),
        ("profile", True, None),
        ("subscribe_api", False, "spamtrap@example.com"),
    ],
)
def test_plan_unsubscribes_as_the_method_says(method: str, msg_email: bool, address: str | None) -> None:
    row = exported_row("SpamTrap@Example.com")
    policy = UnsubscribePolicy(method=UnsubscribeMethod(method))
    plan = plan_row(row, PropertyMapping(), policy, exported=EXPORTED, decided_at=DECIDED)
    assert plan.unsubscribe_reason == "spam_trap:401"
    assert (UNSUBSCRIBE_PROPERTY in plan.update) is msg_email
    assert plan.address == address


@pytest.mark.parametrize("method", ["both", "profile", "subscribe_api"])
def test_plan_unsubscribes_a_locally_malformed_address_on_its_profile_only(method: str) -> None:
    """The Subscribe API refuses malformed addresses (515) every time: such a row is unsubscribed through
    MSG-email, whatever the method, and its address is never sent."""
    row = {
        "identity": "10000002",
        "objectId": "__y",
        "email": "two words@example.com",
        "verified_email": "two words@example.com",
        "clearout_status": "invalid",
        "clearout_sub_status_code": 400,
        "bounce": "hard",
        "decided_by": "local_syntax",
    }
    policy = UnsubscribePolicy(method=UnsubscribeMethod(method))
    plan = plan_row(row, PropertyMapping(), policy, exported=EXPORTED, decided_at=DECIDED)
    assert plan.unsubscribe_reason == "hard_bounce:400"
    assert plan.update[UNSUBSCRIBE_PROPERTY] is False and plan.address is None
    # The same verdict from Clearout (a real, well-formed address) still goes to the Subscribe API.
    verified = plan_row(
        {**row, "email": "a@example.com", "verified_email": "a@example.com", "decided_by": "clearout_bulk"},
        PropertyMapping(),
        policy,
        exported=EXPORTED,
        decided_at=DECIDED,
    )
    assert verified.address == (None if method == "profile" else "a@example.com")


def test_an_unsubscribe_of_ours_is_marked_with_its_reason_and_date() -> None:
    plan = plan_row(exported_row("mailbox_not_found@example.com"), PropertyMapping(), UnsubscribePolicy(),
                    exported=EXPORTED, decided_at=DECIDED)  # fmt: skip
    assert plan.update[UNSUBSCRIBE_PROPERTY] is False
    assert plan.update[UNSUBSCRIBED_REASON_PROPERTY] == "hard_bounce:406"
    assert plan.update[UNSUBSCRIBED_AT_PROPERTY] == date_value(DECIDED)


def test_a_person_who_opted_out_never_gets_our_marker_nor_a_resubscribe() -> None:
    """MSG-email already false without the marker: someone else switched it off. Leave it alone for good."""
    opted_out = {UNSUBSCRIBE_PROPERTY: "False"}
    bounce = plan_row(exported_row("mailbox_not_found@example.com", **opted_out), PropertyMapping(),
                      UnsubscribePolicy(), exported=EXPORTED, decided_at=DECIDED)  # fmt: skip
    assert UNSUBSCRIBED_REASON_PROPERTY not in bounce.update and UNSUBSCRIBE_PROPERTY not in bounce.update
    valid = plan_row(exported_row("valid@example.com", **opted_out), PropertyMapping(), UnsubscribePolicy(),
                     exported=EXPORTED, decided_at=DECIDED)  # fmt: skip
    assert not valid.resubscribe and UNSUBSCRIBE_PROPERTY not in valid.update and valid.address is None


@pytest.mark.parametrize(("method", "address"), [("both", "valid@example.com"), ("profile", None)])
def test_a_fixed_address_verified_valid_lifts_our_unsubscribe(method: str, address: str | None) -> None:
    ours = {UNSUBSCRIBE_PROPERTY: "False", UNSUBSCRIBED_REASON_PROPERTY: "hard_bounce:406",
            UNSUBSCRIBED_AT_PROPERTY: "2026-01-01T00:00:00Z"}  # fmt: skip
    policy = UnsubscribePolicy(method=UnsubscribeMethod(method))
    plan = plan_row(exported_row("valid@example.com", **ours), PropertyMapping(), policy, exported=EXPORTED,
                    decided_at=DECIDED)  # fmt: skip
    assert plan.resubscribe and plan.update[UNSUBSCRIBE_PROPERTY] is True
    assert (
        plan.update[UNSUBSCRIBED_REASON_PROPERTY] == plan.update[UNSUBSCRIBED_AT_PROPERTY] == {"$delete": 1}
    )
    assert plan.address == address and plan.subscription == ("Resubscribe" if address else None)
    # Not lifted by an uncertain verdict, nor when the policy says not to.
    not_lifting = UnsubscribePolicy(resubscribe=False)
    for row, lifting in ((exported_row("catch_all@example.com", **ours), policy),
                         (exported_row("valid@example.com", **ours), not_lifting)):  # fmt: skip
        kept = plan_row(row, PropertyMapping(), lifting, exported=EXPORTED, decided_at=DECIDED)
        assert not kept.resubscribe and UNSUBSCRIBE_PROPERTY not in kept.update


def test_mappings_may_not_write_the_properties_the_load_manages() -> None:
    with pytest.raises(ValueError, match="managed by the load"):
        PropertyMapping.from_params(None, {"clearout_status": UNSUBSCRIBED_REASON_PROPERTY})


def test_result_files_are_read_in_batches_typed_as_results(tmp_path: Path) -> None:
    """The load streams a result file: Parquet by rows, CSV by blocks; both typed like RESULT_SCHEMA."""
    import pyarrow.parquet as pq

    from clearout_provider.results import RESULT_SCHEMA

    row = {"identity": "1", "email": "valid@example.com", **result_row("valid@example.com")}
    schema = pa.schema([("identity", pa.string()), ("email", pa.string()), *RESULT_SCHEMA])
    table = pa.Table.from_pylist([row] * 2500, schema=schema)
    pq.write_table(table, tmp_path / "result.parquet", row_group_size=1000)
    batches = list(iter_result_batches(tmp_path / "result.parquet", rows=1000))
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert batches[0].schema.field("verified_at").type == RESULT_SCHEMA.field("verified_at").type
    assert batches[0].slice(0, 1).to_pylist()[0]["verified_at"] == VERIFIED_ON

    table.to_pandas().to_csv(tmp_path / "result.csv", index=False)
    from_csv = pa.concat_tables(iter_result_batches(tmp_path / "result.csv"))
    assert from_csv.num_rows == 2500 and from_csv.schema.field("identity").type == pa.string()
    assert from_csv.schema.field("clearout_sub_status_code").type == pa.int32()

    pq.write_table(pa.table({"email": ["a@b.com"]}), tmp_path / "contacts.parquet")
    with pytest.raises(CleverTapLoadError, match="not a verification result file"):
        next(iter_result_batches(tmp_path / "contacts.parquet"))
    with pytest.raises(CleverTapLoadError, match="expected .parquet or .csv"):
        next(iter_result_batches(tmp_path / "result.json"))


def test_operators_default_to_the_hooks_connection() -> None:
    from clearout_provider.hooks.clevertap import CleverTapHook
    from clearout_provider.operators.clevertap import DEFAULT_CONN_ID

    assert CleverTapHook.default_conn_name == DEFAULT_CONN_ID


# ---------------------------------------------------------------------------------------------- freshness

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def profiles(*rows: tuple[str | None, str | None, str | None, str | None]) -> pa.Table:
    """An export as the freshness filter reads it (FRESHNESS_COLUMNS: the properties under their roles)."""
    columns = zip(*rows, strict=True)
    return pa.table(
        {name: list(values) for name, values in zip(FRESHNESS_COLUMNS, columns, strict=True)},
        schema=pa.schema([(n, pa.string()) for n in FRESHNESS_COLUMNS]),
    )


def test_freshness_reasons() -> None:
    day = timedelta(days=1)
    table = profiles(
        ("a@x.com", "a@x.com", iso(NOW - 29 * day), "valid"),  # fresh
        ("b@x.com", "b@x.com", iso(NOW - 31 * day), "valid"),  # stale
        ("c@x.com", None, None, None),  # never verified
        ("d@x.com", "old@x.com", iso(NOW - day / 2), "valid"),  # email changed
        ("E@X.com ", "e@x.com", iso(NOW - 2 * day), "invalid"),  # same address, other spelling: fresh
        ("f@x.com", "f@x.com", iso(NOW - 2 * day), "catch_all"),  # uncertain verdict, older than 1 day
        ("g@x.com", "g@x.com", iso(NOW - 2 * day), "Catch All"),  # ... any spelling
        ("h@x.com", "h@x.com", iso(NOW - day / 2), "unknown"),  # uncertain but recent: fresh
        ("i@x.com", "i@x.com", iso(NOW - 3 * day), "unknown"),  # unknown, older than 1 day
        ("j@x.com", None, iso(NOW - 2 * day), "valid"),  # verified without a recorded address: trusted
        ("k@x.com", "k@x.com", "not a date", "valid"),  # unreadable date: never verified
        ("l@x.com", "old@x.com", iso(NOW - 90 * day), "valid"),  # changed beats stale
    )
    assert freshness_reasons(table, Freshness(), NOW).to_pylist() == [
        None,
        "stale",
        "never_verified",
        "email_changed",
        None,
        "stale",
        "stale",
        None,
        "stale",
        None,
        "never_verified",
        "email_changed",
    ]


def test_freshness_ttls_are_configurable_and_missing_columns_mean_never_verified() -> None:
    table = profiles(("a@x.com", "a@x.com", iso(NOW - timedelta(days=5)), "unknown"))
    assert freshness_reasons(table, Freshness(ttl_days=30, uncertain_ttl_days=7), NOW).to_pylist() == [None]
    assert freshness_reasons(table, Freshness(uncertain_ttl_days=1), NOW).to_pylist() == ["stale"]
    assert freshness_reasons(pa.table({"email": ["a@x.com"]}), Freshness(), NOW).to_pylist() == [
        "never_verified"
    ]
    assert freshness_reasons(table.slice(0, 0), Freshness(), NOW).to_pylist() == []
    with pytest.raises(ValueError, match=">= 0"):
        Freshness(ttl_days=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        freshness_reasons(table, Freshness(), NOW.replace(tzinfo=None))
