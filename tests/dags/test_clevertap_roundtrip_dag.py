"""CleverTap → Clearout → CleverTap in ``dag.test()`` runs against one live sandbox serving both APIs.

The witnesses are the CleverTap sandbox's own profiles (``CleverTapHook.get_profile``: properties,
``MSG-email``, the address-level subscription) and its request counters, not the operators' word.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import load_dag
from dag_runs import xcom

from clearout_provider.clearout.statuses import SPAM_TRAP_CODE
from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.results import RESULT_SCHEMA
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clearout_verdicts import TEST_ADDRESSES, TEST_DOMAIN
from clearout_provider.verdicts import (
    UNSUBSCRIBE_PROPERTY,
    VERIFICATION_PROPERTIES,
    UnsubscribePolicy,
    sub_status,
)

pytestmark = pytest.mark.usefixtures("airflow_db")

SEED = 300
#: Seeded malformed addresses (clevertap_seed.EDGE_CASES): Clearout is never asked, and neither is the
#: Subscribe API (it refuses malformed addresses, 515): the profile gets its verdict and ``MSG-email: false``.
MALFORMED = ("not-an-email", "john@@example.com", "jane.doe@example", "two words@example.com")


@pytest.fixture
def server(
    sandbox_factory: Callable[[SandboxSettings], SandboxProcess],
    clearout_connection: Callable[[SandboxProcess], str],
    clevertap_connection: Callable[[SandboxProcess], str],
) -> SandboxProcess:
    started = sandbox_factory(SandboxSettings(seed_contacts=SEED))
    clearout_connection(started)
    clevertap_connection(started)
    return started


def run(dag_id: str, **conf: Any) -> Any:
    return load_dag("dag_clevertap_roundtrip", dag_id).test(run_conf=conf or None)


def assert_succeeded(dr: Any, data_dir: Path) -> None:
    failures = data_dir / "failures.jsonl"
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert set(states.values()) == {"success"}, (states, failures.exists() and failures.read_text())


def clevertap_stats(server: SandboxProcess) -> Counter[str]:
    return Counter(server.clevertap_stats())


def read(path: str) -> pd.DataFrame:
    return pd.read_parquet(path.removeprefix("file://"))


def assert_counts_add_up(extract: dict[str, Any], verify: dict[str, Any], load: dict[str, Any]) -> None:
    assert extract["exported"] == extract["no_email"] + extract["fresh"] + extract["to_verify"]
    assert verify["rows"] == extract["to_verify"] == load["input"]
    parts = ("updated", "unsubscribed_only", "unchanged", "rejected")
    assert load["input"] == sum(load[p] for p in parts)
    assert sum(load["by_rejection_code"].values()) == load["rejected"]


# ---------------------------------------------------------------------------------------------- tests


def test_dry_run_shows_what_would_change_and_changes_nothing(server: SandboxProcess, data_dir: Path) -> None:
    hook = CleverTapHook()
    before = {e: hook.get_profile(email=e) for e in ("valid@example.com", "invalid@example.com")}

    dr = run("clevertap_roundtrip_dry_run")

    assert_succeeded(dr, data_dir)
    extract, verify, load = xcom(dr, "extract"), xcom(dr, "verify"), xcom(dr, "load")
    assert_counts_add_up(extract, verify, load)
    assert load["dry_run"] is True and load["updated"] > 0 and load["unsubscribed"] > 0
    assert load["rejected"] == 0  # the Subscribe API is not called, so nothing refuses an address
    stats = clevertap_stats(server)
    assert stats["dry_run_calls"] > 0
    assert stats["saving_upload_calls"] == 0 and stats["subscribe_calls"] == 0
    assert {e: hook.get_profile(email=e) for e in before} == before

    outcome = read(load["outcome_path"])
    invalid = outcome[outcome["email"] == "invalid@example.com"].iloc[0]
    assert (invalid["outcome"], invalid["unsubscribe_reason"]) == ("updated", "hard_bounce:406")
    assert (invalid["profile_update"], invalid["subscribe"]) == ("validated", "not_sent_dry_run")
    changes = json.loads(invalid["changes"])
    assert changes["Clearout Verification Status"]["to"] == "invalid"
    assert changes[UNSUBSCRIBE_PROPERTY] == {"from": None, "to": "False"}
    assert outcome["dry_run"].all()


def test_roundtrip_writes_verdicts_unsubscribes_and_leaves_nothing_to_verify(
    server: SandboxProcess, data_dir: Path, tmp_path: Path
) -> None:
    dr = run("clevertap_roundtrip")

    assert_succeeded(dr, data_dir)
    extract, verify, load = xcom(dr, "extract"), xcom(dr, "verify"), xcom(dr, "load")
    assert_counts_add_up(extract, verify, load)
    assert extract["exported"] == SEED and extract["fresh"] == 0
    assert extract["no_email"] >= 2  # the seed's empty and missing emails
    assert (
        extract["by_reason"]["never_verified"] > 0 and extract["by_reason"]["stale"] > 0
    )  # old verifications
    assert load["dry_run"] is False and load["unchanged"] == 0

    # Every Clearout test address: the profile carries the verdict, and is unsubscribed iff the policy
    # says so.
    hook, policy = CleverTapHook(), UnsubscribePolicy()
    for local, expected in TEST_ADDRESSES.items():
        address = f"{local}@{TEST_DOMAIN}"
        record = hook.get_profile(email=address)
        assert record is not None, address
        data = record["profileData"]
        sub = sub_status(expected.code)
        assert data["Clearout Verification Status"] == sub.status.value, address
        assert data["Clearout Sub Status Code"] == expected.code, address
        assert data["Clearout Sub Status"] == sub.desc, address
        assert data["Clearout Verified Email"] == address, address
        assert data["Clearout Verified At"].startswith("$D_"), address
        flags = (
            "Clearout Disposable",
            "Clearout Role Account",
            "Clearout Free Account",
            "Clearout Gibberish",
        )
        assert [data[f] for f in flags] == [
            expected.disposable,
            expected.role,
            expected.free,
            expected.gibberish,
        ]
        safe = {"yes": True, "no": False, "risky": False, "unknown": None}[expected.safe_to_send]
        assert data.get("Clearout Safe To Send") is safe, address
        assert data.get("Clearout Suggested Email") == (expected.suggested or None), address
        should_leave = policy.reason(
            {
                "clearout_sub_status_code": expected.code,
                "bounce": sub.bounce.value,
                "is_disposable": expected.disposable,
                "is_spam_trap": expected.code == SPAM_TRAP_CODE,
            }
        )
        if should_leave:
            assert data.get(UNSUBSCRIBE_PROPERTY) is False, address
            assert record.get("subscription") == {"email": "Unsubscribed"}, address
        else:
            assert UNSUBSCRIBE_PROPERTY not in data and "subscription" not in record, address

    # Malformed addresses: the verdict and MSG-email: false land on the profile; the Subscribe API, which
    # refuses malformed addresses (515), is not asked. A clean run rejects nothing.
    outcome = read(load["outcome_path"])
    assert load["rejected"] == 0 and load["by_rejection_code"] == {}
    malformed = outcome[outcome["email"].isin(MALFORMED)]
    assert set(malformed["email"]) == set(MALFORMED)
    for _, row in malformed.iterrows():
        assert (row["outcome"], row["unsubscribe_reason"]) == ("updated", "hard_bounce:400"), row["email"]
        assert (row["profile_update"], row["subscribe"]) == ("applied", "not_needed"), row["email"]
        assert row["unsubscribed"] and pd.isna(row["rejection_code"]), row["email"]
        record = hook.get_profile(identity=row["identity"])
        profile = record["profileData"]
        assert profile["Clearout Sub Status Code"] == 400 and profile[UNSUBSCRIBE_PROPERTY] is False
        assert "subscription" not in record, row["email"]
    assert load["unsubscribed"] == outcome["unsubscribed"].sum() > 0
    stats = clevertap_stats(server)
    assert stats["subscribe_calls"] == 1  # every address once, in one batch
    assert stats["subscriptions_rejected"] == 0
    assert 0 < stats["subscriptions_processed"] <= (outcome["subscribe"] == "applied").sum()

    # Right after, nothing is due: the written properties read back as fresh.
    again = run("clevertap_roundtrip")
    assert_succeeded(again, data_dir)
    extract2, load2 = xcom(again, "extract"), xcom(again, "load")
    assert extract2["to_verify"] == 0 and extract2["fresh"] == SEED - extract2["no_email"]
    assert load2["input"] == 0

    # A profile whose email changed since its verification is due again, and only that one.
    moved = hook.get_profile(email="valid@example.com")
    hook.upload_profiles([{"identity": moved["identity"], "profileData": {"Email": "moved@company9.org"}}])
    third = run("clevertap_roundtrip")
    assert_succeeded(third, data_dir)
    extract3 = xcom(third, "extract")
    assert extract3["to_verify"] == 1 and extract3["by_reason"]["email_changed"] == 1
    moved_now = hook.get_profile(identity=moved["identity"])["profileData"]
    assert moved_now["Clearout Verified Email"] == "moved@company9.org"

    # Loading the same verdicts onto the profiles as they are now: nothing left to write.
    current = tmp_path / "current.parquet"
    hook.export_profiles({}, current, properties=(*VERIFICATION_PROPERTIES, UNSUBSCRIBE_PROPERTY))
    now = read(str(current)).set_index("objectId")
    result = read(verify["result_path"])
    for prop in (*VERIFICATION_PROPERTIES, UNSUBSCRIBE_PROPERTY):
        result[prop] = result["objectId"].map(now[prop])
    reload_path = tmp_path / "reload.parquet"
    result.to_parquet(reload_path)
    # Locally decided verdicts (syntax errors) are dated by their result file: keep the original's date.
    original = Path(verify["result_path"].removeprefix("file://")).stat()
    os.utime(reload_path, (original.st_atime, original.st_mtime))
    reload = run("clevertap_load_only", result_path=str(reload_path))
    assert_succeeded(reload, data_dir)
    again_load = xcom(reload, "load")
    assert again_load["input"] == load["input"]
    # Only the moved profile differs from its old verdict; the undeliverable addresses are re-sent to the
    # Subscribe API (their profiles unchanged), the rest (malformed ones included) is unchanged.
    via_api = (outcome["subscribe"] == "applied").sum()
    assert again_load["updated"] == 1 and again_load["rejected"] == 0
    assert again_load["unsubscribed_only"] == via_api
    assert again_load["unchanged"] == load["input"] - via_api - 1


def test_rows_clevertap_refuses_are_reported_per_row_with_code_and_message(
    server: SandboxProcess, data_dir: Path, tmp_path: Path
) -> None:
    """A result file (e.g. written by another tool) with an address the Subscribe API refuses (515) and a
    value over CleverTap's 512-byte limit: each such row is rejected with its code and message, the
    others are applied, and the counts still add up."""
    hook = CleverTapHook()
    ids = [
        hook.get_profile(email=f"{local}@{TEST_DOMAIN}")["identity"] for local in ("valid", "invalid", "role")
    ]
    verdict = {
        "clearout_status": "invalid",
        "clearout_sub_status_code": 406,
        "verdict_reason": sub_status(406).desc,
        "bounce": "hard",
        "decided_by": "clearout_bulk",  # Clearout's verdict, not the local syntax check's
    }
    rows = [
        # Clearout judged it; the Subscribe API refuses the address itself.
        {"identity": ids[0], "email": "john@@example.com", "verified_email": "john@@example.com", **verdict},
        # A suggested address longer than a property value may be (512 bytes): refused before sending.
        {
            "identity": ids[1],
            "email": "invalid@example.com",
            "verified_email": "invalid@example.com",
            **verdict,
            "suggested_email": "x" * 600 + "@example.com",
        },
        {"identity": ids[2], "email": "role@example.com", "verified_email": "role@example.com", **verdict},
    ]
    schema = pa.schema([("identity", pa.string()), ("email", pa.string()), *RESULT_SCHEMA])
    path = tmp_path / "refused.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)

    dr = run("clevertap_load_only", result_path=str(path))

    assert_succeeded(dr, data_dir)
    load = xcom(dr, "load")
    assert (load["input"], load["updated"], load["rejected"]) == (3, 1, 2)
    assert load["by_rejection_code"] == {"515": 1, "522": 1}
    outcome = read(load["outcome_path"]).set_index("identity")
    bad_address = outcome.loc[ids[0]]
    assert (bad_address["rejection_code"], bad_address["rejection_stage"]) == (515, "subscribe")
    assert "Email is not valid" in bad_address["rejection_message"]
    assert (bad_address["profile_update"], bad_address["subscribe"]) == ("applied", "rejected")
    too_long = outcome.loc[ids[1]]
    assert (too_long["rejection_code"], too_long["rejection_stage"]) == (522, "profile_update")
    assert "512" in too_long["rejection_message"] and too_long["profile_update"] == "rejected"
    assert hook.get_profile(identity=ids[1])["profileData"].get("Clearout Sub Status Code") != 406
    applied = outcome.loc[ids[2]]
    assert (applied["outcome"], applied["subscribe"]) == ("updated", "applied")
    assert hook.get_profile(identity=ids[2])["profileData"]["Clearout Sub Status Code"] == 406
