"""The shipped nightly list-cleaning DAG (dags/clevertap_nightly_list_cleaning.py) under ``dag.test()``.

One sandbox process serves both services; ``clearout_default`` and ``clevertap_default`` point at it
through ``AIRFLOW_CONN_*``, the way users configure them. The DAG runs with its DEFAULT params (the
default segment must select the seeded contacts). Witnesses are the sandbox's own: Clearout's credit
balance, uploads and instant calls (``/_sandbox/stats``), CleverTap's upload/subscribe counters and the
profiles as ``GET /1/profile.json`` returns them afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dag_runs import asset_events, shipped_dag, states, xcom

from clearout_provider.demo import sandbox_connections
from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clevertap_seed import object_id_of

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "clevertap_nightly_list_cleaning"
VERIFIED = "clevertap://clevertap_default/verified"  # the DAG's outlet asset
SEED = 3000
INSTANT_THRESHOLD = 200  # the DAG's default
Factory = Callable[[SandboxSettings], SandboxProcess]


@pytest.fixture
def server(sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxProcess]:
    """A sandbox with SEED CleverTap profiles; both connections point at it."""
    sandbox = sandbox_factory(SandboxSettings(seed_contacts=SEED, bulk_rate=20_000))
    for name, value in sandbox_connections(sandbox).items():
        monkeypatch.setenv(name, value)
    yield sandbox


# ------------------------------------------------------------------------------------------- witnesses


def report_folder(data_dir: Path, dr: Any) -> Path:
    return data_dir / DAG_ID / re.sub(r"[^A-Za-z0-9._=-]+", "_", dr.run_id) / "report"


def check_report(data_dir: Path, dr: Any) -> str:
    """The report files exist and the run's counts add up (recomputed here from the XComs)."""
    from clearout_provider.report import RunFacts, check_accounting

    folder = report_folder(data_dir, dr)
    assert (folder / "report.md").stat().st_size > 0 and (folder / "report.html").stat().st_size > 0
    summary = (folder / "summary.txt").read_text()
    assert "Accounting: ✓ all" in summary and "checks add up" in summary, summary
    extract, verified = xcom(dr, "extract_delta"), xcom(dr, "verified")
    loaded = [xcom(dr, "load_back", i) for i in range(len(verified))]
    facts = RunFacts.from_xcom(
        extract, verified, loaded, dag_id=dr.dag_id, run_id=dr.run_id, mode=verified[0]["mode"]
    )
    check_accounting(facts)
    assert extract["to_verify"] == sum(v["rows"] for v in verified) == sum(lo["input"] for lo in loaded)
    return summary


def profile(object_id: str) -> dict[str, Any]:
    """A profile as CleverTap returns it now (by objectId: anonymous profiles have no identity)."""
    record = CleverTapHook().get_profile(object_id=object_id)
    assert record is not None
    return record


def read_result(path: str) -> pd.DataFrame:
    return pd.read_parquet(path.removeprefix("file://"))


# ---------------------------------------------------------------------------------------------- tests


def test_full_night_then_delta_nights_then_a_sweep_verify_only_what_changed(
    server: SandboxProcess, data_dir: Path
) -> None:
    dag = shipped_dag(DAG_ID)
    credits = server.clearout_stats()["credits_available"]

    # ---- 1. first night: the whole segment is new → bulk path
    first = dag.test()

    assert states(first) == {
        "extract_delta": "success",
        "choose_mode": "success",
        "split_for_bulk": "success",
        "verify_instant": "skipped",
        "verify_bulk[0]": "success",
        "verified": "success",
        "load_back[0]": "success",
        "report": "success",
        "announce_changes": "success",
    }
    extract = xcom(first, "extract_delta")
    assert extract["exported"] > 0.9 * SEED  # the default segment selects the seeded profiles with an email
    assert extract["to_verify"] >= INSTANT_THRESHOLD and extract["by_reason"]["never_verified"] > 0
    assert extract["by_reason"]["stale"] > 0  # the seed's old verifications are long past the 30-day TTL
    check_report(data_dir, first)
    [verify] = xcom(first, "verified")
    after_first = server.clearout_stats()
    assert after_first["bulk_uploads"] == 1
    assert 0 < verify["credits_spent"] == credits - after_first["credits_available"]
    load = xcom(first, "load_back", 0)
    assert load["updated"] > 0.9 * extract["to_verify"] and load["unsubscribed"] > 0 and not load["dry_run"]
    ct = server.clevertap_stats()
    assert ct["saving_upload_calls"] > 0 and ct["subscriptions_processed"] > 0
    # The night changed profiles: one event on the asset, carrying the load's counts and the report.
    [event] = asset_events(first)[VERIFIED]
    assert (event["updated"], event["unsubscribed"]) == (load["updated"], load["unsubscribed"])
    assert event["changed"] == load["updated"] + load["unsubscribed_only"]
    assert event["report"] == xcom(first, "report")["report_markdown"]

    # Profiles carry the properties now: the test addresses head the seed (index 0 = valid@example.com).
    result = read_result(verify["result_path"]).set_index("objectId")
    valid = profile(object_id_of(0))["profileData"]
    assert valid["Clearout Verification Status"] == "valid" and valid["Clearout Safe To Send"] is True
    assert valid["Clearout Verified Email"] == "valid@example.com" and "Clearout Verified At" in valid
    # Due again after the 30-day TTL (the DAG's default), counted from the verification.
    due_in = int(valid["Clearout Reverify After"][3:]) - int(valid["Clearout Verified At"][3:])
    assert due_in == 30 * 86_400
    for object_id, row in result[result["decided_by"] == "clearout_bulk"].head(50).iterrows():
        data = profile(object_id)["profileData"]
        assert data["Clearout Verification Status"] == row["clearout_status"], object_id
    hard = result[result["bounce"] == "hard"].head(10)
    assert len(hard)
    for object_id in hard.index:  # the default policy unsubscribes hard bounces on the profile
        assert profile(object_id)["profileData"]["MSG-email"] is False, object_id

    # ---- 2. right after: a delta night asks CleverTap only for what can be due → nothing verified
    second = dag.test()

    assert {k: v for k, v in states(second).items() if k.startswith(("split", "verify", "report"))} == {
        "split_for_bulk": "skipped",
        "verify_bulk": "skipped",
        "verify_instant": "success",
        "report": "success",
    }
    # Nothing was written: no asset event, so DAGs scheduled on the asset do not run for nothing.
    assert states(second)["announce_changes"] == "skipped" and asset_events(second) == {}
    extract2 = xcom(second, "extract_delta")
    assert extract["selection"] == "full" and extract2["selection"] == "delta"
    assert extract2["to_verify"] == 0 and extract2["exported"] == extract2["no_email"] + extract2["fresh"]
    # Everything the first night verified carries its verification now: CleverTap selects none of it.
    assert extract2["exported"] < 0.05 * extract["exported"], extract2
    assert "delta selection" in check_report(data_dir, second)
    after_second = server.clearout_stats()
    assert after_second["credits_available"] == after_first["credits_available"]
    assert (
        after_second["bulk_uploads"] == 1
        and after_second["instant_calls"] == after_first["instant_calls"] == 0
    )
    assert server.clevertap_stats()["saving_upload_calls"] == ct["saving_upload_calls"]

    # ---- 3. six users change their email: two through the app's "Email Changed" event, two with the
    # app resetting the verification in the same upload; the delta night verifies those four; the two
    # without any signal wait for the full sweep.
    movers = list(result[result["decided_by"] == "clearout_bulk"].index[:6])
    changed = {object_id: f"new.address{n}@acme-rockets.com" for n, object_id in enumerate(movers)}
    reset = {"Clearout Verified At": {"$delete": 1}}
    moved = CleverTapHook().upload_profiles(
        [
            {"objectId": object_id, "profileData": {"Email": email, **(reset if n in (2, 3) else {})}}
            for n, (object_id, email) in enumerate(changed.items())
        ]
    )
    assert moved.ok
    server.raise_clevertap_events("Email Changed", [{"objectId": o} for o in movers[:2]])

    third = dag.test(run_conf={"email_change_event": "Email Changed"})

    assert states(third)["verify_instant"] == "success" and states(third)["report"] == "success"
    extract3 = xcom(third, "extract_delta")
    assert extract3["selection"] == "delta" and extract3["by_part"]["email_change_event"] == 2
    assert extract3["by_part"]["never_verified"] == 2 and extract3["to_verify"] == 4
    assert extract3["by_reason"] == {"email_changed": 2, "never_verified": 2, "stale": 0}
    check_report(data_dir, third)
    after_third = server.clearout_stats()
    assert after_third["bulk_uploads"] == 1 and after_third["instant_calls"] == 4
    for object_id in movers[:4]:
        assert profile(object_id)["profileData"]["Clearout Verified Email"] == changed[object_id]

    # ---- 4. the full sweep (weekly under "auto"; asked for here) finds the other two
    fourth = dag.test(run_conf={"selection": "full"})

    extract4 = xcom(fourth, "extract_delta")
    assert extract4["selection"] == "full" and extract4["exported"] == extract["exported"]
    assert extract4["to_verify"] == 2 and extract4["by_reason"]["email_changed"] == 2
    assert "full selection" in check_report(data_dir, fourth)
    after_fourth = server.clearout_stats()
    assert after_fourth["instant_calls"] == 6
    assert 0 < after_first["credits_available"] - after_fourth["credits_available"] <= 6
    for object_id, email in changed.items():
        assert profile(object_id)["profileData"]["Clearout Verified Email"] == email


def test_dry_run_writes_nothing_to_clevertap(server: SandboxProcess, data_dir: Path) -> None:
    dag = shipped_dag(DAG_ID)
    before = [profile(object_id_of(i)) for i in range(0, SEED, 97)]

    dr = dag.test(run_conf={"dry_run": True})

    assert states(dr)["report"] == "success", states(dr)
    summary = check_report(data_dir, dr)
    assert "dry run" in summary
    load = xcom(dr, "load_back", 0)
    assert load["dry_run"] is True and load["updated"] > 0  # what WOULD change
    ct = server.clevertap_stats()
    assert ct["dry_run_calls"] > 0
    assert ct.get("saving_upload_calls", 0) == 0 and ct.get("subscribe_calls", 0) == 0
    assert [profile(object_id_of(i)) for i in range(0, SEED, 97)] == before
    assert states(dr)["announce_changes"] == "skipped" and asset_events(dr) == {}  # nothing written


def test_mailso_night_writes_mailso_properties_and_a_second_night_costs_nothing(
    sandbox_factory: Factory, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verifier=mailso end to end: Mail.so batches, "Mailso ..." properties, the same report and
    accounting; Clearout is never called; the night after pays nothing."""
    sandbox = sandbox_factory(SandboxSettings(seed_contacts=SEED, mailso_batch_rate=20_000))
    for name, value in sandbox_connections(sandbox).items():
        monkeypatch.setenv(name, value)
    dag = shipped_dag(DAG_ID)

    first = dag.test(run_conf={"verifier": "mailso"})

    assert states(first) == {
        "extract_delta": "success",
        "choose_mode": "success",
        "split_for_bulk": "skipped",
        "verify_instant": "success",
        "verify_bulk": "skipped",
        "verified": "success",
        "load_back[0]": "success",
        "report": "success",
        "announce_changes": "success",
    }
    extract = xcom(first, "extract_delta")
    assert (
        extract["by_reason"]["never_verified"] == extract["to_verify"] > 0.9 * SEED
    )  # no Mail.so verdict yet
    check_report(data_dir, first)
    [verify] = xcom(first, "verified")
    mailso = sandbox.mailso_stats()
    assert verify["verifier"] == "mailso" and verify["sent"] == verify["verified"] > 0
    assert mailso["mailso_credits_used"] == verify["credits_spent"] == verify["sent"]  # each address once
    assert mailso["batches_created"] == -(-verify["sent"] // 500) and mailso["validations"] == 0
    clearout = sandbox.clearout_stats()
    assert clearout["instant_calls"] == 0 and clearout["bulk_uploads"] == 0

    valid = profile(object_id_of(0))["profileData"]
    assert valid["Mailso Result"] == "deliverable" and valid["Mailso Safe To Send"] is True
    assert valid["Mailso Verified Email"] == "valid@example.com" and "Mailso Verified At" in valid
    result = read_result(verify["result_path"]).set_index("objectId")
    assert set(result["verifier"].dropna()) == {"mailso"}
    for object_id, row in result[result["decided_by"] == "mailso_batch"].head(30).iterrows():
        assert profile(object_id)["profileData"]["Mailso Result"] == row["verdict"], object_id
    hard = result[(result["bounce"] == "hard") & (result["decided_by"] == "mailso_batch")].head(5)
    assert len(hard)
    for object_id in hard.index:  # the same unsubscribe policy, on Mail.so's verdicts
        assert profile(object_id)["profileData"]["MSG-email"] is False, object_id

    second = dag.test(run_conf={"verifier": "mailso"})

    assert states(second)["report"] == "success"
    assert xcom(second, "extract_delta")["to_verify"] == 0
    check_report(data_dir, second)
    assert sandbox.mailso_stats()["mailso_credits_used"] == mailso["mailso_credits_used"]
