"""The shipped Email Finder enrichment DAG (dags/clearout_email_finder_enrichment.py) under ``dag.test()``.

One sandbox serves both services (connections through ``AIRFLOW_CONN_*``). Its CleverTap seed holds B2B
leads (name + "Company" + "Company Domain", no email); the witnesses are the profiles as
``GET /1/profile.json`` returns them afterwards and Clearout's own counters (``/_sandbox/stats``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dag_runs import asset_events, shipped_dag, states, xcom

from clearout_provider.demo import sandbox_connections
from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clevertap_seed import SeedProfiles

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "clearout_email_finder_enrichment"
ENRICHED_LEADS = "clevertap://clevertap_default/enriched_leads"  # the DAG's outlet asset
SEED = 3000


@pytest.fixture
def server(sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SandboxProcess]:
    sandbox = sandbox_factory(SandboxSettings(seed_contacts=SEED, bulk_rate=20_000))
    for name, value in sandbox_connections(sandbox).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLEAROUT_PROVIDER_DATA_DIR", str(tmp_path / "clearout_data"))
    monkeypatch.setenv("AIRFLOW__CLEAROUT__BULK_POLL_INTERVAL", "0.2")
    yield sandbox


def seeded_leads() -> list[Any]:
    """The seed's leads as the DAG's default query selects them: a name, a company domain, no email."""
    seed = SeedProfiles(SEED)
    profiles = (seed.profile(i) for i in range(SEED))
    return [
        p
        for p in profiles
        if p.name and "Company Domain" in p.profile_data and p.email is None and not p.email_in_profile_data
    ]


def profile_data(lead: Any) -> dict[str, Any]:
    """The lead's properties now, with its Email (CleverTap returns it as the top-level ``email``)."""
    hook = CleverTapHook()
    record = (
        hook.get_profile(identity=lead.identity)
        if lead.identity
        else hook.get_profile(object_id=lead.object_id)
    )
    assert record is not None, lead.index
    return {**record["profileData"], **({"Email": record["email"]} if record.get("email") else {})}


def test_found_emails_land_on_the_leads_verified_and_a_second_run_pays_nothing(
    server: SandboxProcess,
) -> None:
    dag = shipped_dag(DAG_ID)
    leads = seeded_leads()
    assert len(leads) >= 15  # the seed really holds leads for this DAG

    first = dag.test()

    assert states(first) == {
        "export_leads": "success",
        "find_emails": "success",
        "found_addresses": "success",
        "choose_verification": "success",
        "verify_found": "success",
        "lead_properties": "success",
        "write_back": "success",
        "announce_changes": "success",
    }
    summary = xcom(first, "lead_properties")
    load = xcom(first, "write_back")
    assert summary["leads"] == load["input"] == len(leads)
    assert load["rejected"] == 0 and load["not_verified"] == 0  # every lead answered, none refused
    assert load["updated"] == len(leads) and summary["emails_set"] == 0
    assert 0 < summary["found"] < len(leads) and summary["verified"] == summary["found"]
    stats = server.clearout_stats()
    assert stats["finder_uploads"] == 1 and stats["bulk_uploads"] == 1

    found = 0
    for lead in leads:
        data = profile_data(lead)
        domain = lead.profile_data["Company Domain"]
        assert data["Clearout Finder Status"] in ("found", "not_found"), lead.index
        assert "Email" not in data  # set_email is off by default
        if data["Clearout Finder Status"] == "found":
            found += 1
            address = data["Clearout Finder Email Address"]
            assert address.endswith(f"@{domain}"), (address, domain)
            assert 0 < data["Clearout Finder Confidence Score"] <= 100
            assert "Clearout Finder Processed At (UTC)" in data
            assert data["Clearout Verified Email"] == address.lower()
            assert data["Clearout Verification Status"] in ("valid", "invalid", "catch_all", "unknown")
            assert "Clearout Disposable" not in data  # only the default append_columns
        else:
            assert "Clearout Finder Email Address" not in data and "Clearout Verification Status" not in data
    assert found == summary["found"]
    [event] = asset_events(first)[ENRICHED_LEADS]  # the leads changed: one event with the load's counts
    assert event["changed"] == event["updated"] == len(leads)

    # Every lead was looked up once: the next run finds no lead to ask about and spends nothing.
    credits = server.clearout_stats()["credits_available"]
    second = dag.test()

    assert xcom(second, "export_leads")["leads"] == 0
    assert states(second)["verify_found"] == "skipped" and states(second)["write_back"] == "success"
    assert states(second)["announce_changes"] == "skipped" and asset_events(second) == {}  # no lead changed
    after = server.clearout_stats()
    assert (after["finder_uploads"], after["bulk_uploads"], after["credits_available"]) == (1, 1, credits)


def test_set_email_without_verification_makes_confident_found_addresses_the_profile_email(
    server: SandboxProcess,
) -> None:
    dr = shipped_dag(DAG_ID).test(run_conf={"verify_found": False, "set_email": True, "min_confidence": 75})

    assert states(dr)["verify_found"] == "skipped" and states(dr)["write_back"] == "success"
    summary = xcom(dr, "lead_properties")
    assert summary["verified"] == 0 and 0 < summary["emails_set"] <= summary["found"]
    assert server.clearout_stats()["bulk_uploads"] == 0  # nothing was verified

    emails_set = 0
    for lead in seeded_leads():
        data = profile_data(lead)
        assert "Clearout Verification Status" not in data
        confident = (
            data["Clearout Finder Status"] == "found" and data["Clearout Finder Confidence Score"] >= 75
        )
        if confident:
            emails_set += 1
            assert data["Email"] == data["Clearout Finder Email Address"], lead.index
        else:
            assert "Email" not in data, lead.index
    assert emails_set == summary["emails_set"]
