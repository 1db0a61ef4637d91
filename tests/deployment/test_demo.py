"""The main job, as ``make demo`` runs it: ``python -m clearout_provider.demo`` in a fresh process.

The demo starts its own sandbox, migrates its own SQLite Airflow home under ``--root`` and runs the
nightly DAG with the real ``airflow dags test`` CLI. The suite's AIRFLOW_* settings (tests/conftest.py)
are in this process's environment on purpose: the demo must ignore them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Ceiling of the whole demo (db migrate + `airflow dags test`, ~20 s idle): a hang guard, not a speed
#: test, so it holds on a busy 2-core machine where each Airflow command starts several times slower.
DEMO_TIMEOUT = 900


@pytest.mark.timeout(DEMO_TIMEOUT + 60)  # pytest's guard stays behind the subprocess's own
def test_demo_prints_a_report_whose_accounting_adds_up(tmp_path: Path) -> None:
    root = tmp_path / "demo"

    done = subprocess.run(
        [sys.executable, "-m", "clearout_provider.demo", "--contacts", "2000", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )

    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "# Clearout verification report: clevertap_nightly_list_cleaning" in out
    accounting = re.search(r"^Accounting: (.*)$", out, re.MULTILINE)
    assert accounting and re.fullmatch(r"✓ all \d+ checks add up", accounting.group(1)), out[-2000:]
    assert "| ✗ |" not in out  # no failing equation in the printed table either
    exported = int(re.search(r"\| exported \| ([\d,]+) \|", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 1800 <= exported <= 2000  # the seeded profiles that have an email
    [report] = (root / "data" / "clevertap_nightly_list_cleaning").glob("*/report/report.html")
    assert "<svg" in report.read_text()
    assert (root / "airflow" / "airflow.db").exists()  # its own Airflow home, not the suite's


@pytest.mark.timeout(DEMO_TIMEOUT + 60)
def test_finder_demo_writes_the_found_addresses_onto_the_seeded_leads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make demo-finder``: the seed's leads are looked up and the answers land in the sandbox's profile
    store (kept in ``--root``), as the sandbox's finder decides them: found for some, not for others."""
    from clearout_provider.demo import sandbox_connections
    from clearout_provider.hooks.clevertap import CleverTapHook
    from clearout_provider.sandbox import SandboxProcess, SandboxSettings
    from clearout_provider.sandbox.clearout_finder import find_email
    from clearout_provider.sandbox.clevertap_seed import SeedProfiles

    root, contacts = tmp_path / "demo", 3000
    done = subprocess.run(
        [sys.executable, "-m", "clearout_provider.demo", "--dag", "finder", "--contacts", str(contacts)]
        + ["--root", str(root)],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )

    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    summary = re.search(r"(\d+) leads looked up, (\d+) found, (\d+) not found", out)
    assert summary, out[-2000:]
    looked_up, found, not_found = map(int, summary.groups())
    assert found > 0 and not_found > 0 and looked_up == found + not_found
    assert "@" not in out.split("leads looked up")[1].replace("***@", "")  # addresses printed masked

    seed = SeedProfiles(contacts)
    leads = [
        p
        for p in map(seed.profile, range(contacts))
        if p.name and "Company Domain" in p.profile_data and p.email is None and not p.email_in_profile_data
    ]
    assert len(leads) == looked_up
    # The profile store the demo left behind, served again by a sandbox on the same state folder.
    settings = SandboxSettings(seed_contacts=contacts, state_dir=str(root / "sandbox"))
    with SandboxProcess(settings, log_path=tmp_path / "sandbox.log") as server:
        for name, value in sandbox_connections(server).items():
            monkeypatch.setenv(name, value)
        hook = CleverTapHook()
        answers = []
        for lead in leads:
            record = (
                hook.get_profile(identity=lead.identity)
                if lead.identity
                else hook.get_profile(object_id=lead.object_id)
            )
            assert record is not None, lead.index
            answers.append((find_email(lead.name or "", lead.profile_data["Company Domain"]), record))
    for expected, record in answers:
        data = record["profileData"]
        if expected.found:
            assert data["Clearout Finder Status"] == "found"
            assert data["Clearout Finder Email Address"] == expected.email
            assert data["Clearout Verified Email"] == expected.email.lower()  # verified, by default
        else:
            assert (
                data["Clearout Finder Status"] == "not_found" and "Clearout Finder Email Address" not in data
            )
    assert sum(1 for expected, _ in answers if expected.found) == found
