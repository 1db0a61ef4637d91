"""The shipped sign-up validation DAG (dags/mailso_signup_validation.py) under ``dag.test()``.

One sandbox serves CleverTap and Mail.so; new sign-ups are created in CleverTap as an app would (an
upload with the email and the "Signup Date" property). Witnesses are the sandbox's own: Mail.so's credit
counter and the profiles as ``GET /1/profile.json`` returns them afterwards. ``overlap_minutes`` is 0 so
that the watermark alone decides what a run asks for: a run that wrongly advanced it would skip sign-ups.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dag_runs import asset_events, shipped_dag, states, xcom

from clearout_provider.clevertap_rules import date_value
from clearout_provider.demo import sandbox_connections
from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.watermark import Watermark

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "mailso_signup_validation"
CONF = {"overlap_minutes": 0}
Factory = Callable[[SandboxSettings], SandboxProcess]


@pytest.fixture
def server(sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxProcess]:
    """A sandbox with a few seeded profiles (none carries a "Signup Date"); connections point at it."""
    sandbox = sandbox_factory(SandboxSettings(seed_contacts=40))
    for name, value in sandbox_connections(sandbox).items():
        monkeypatch.setenv(name, value)
    yield sandbox


def sign_up(**emails: str) -> None:
    """New profiles ``identity -> email``, signed up now (what the app writes when a user submits it).

    CleverTap dates have whole seconds and the DAG asks again for the second its watermark falls in
    (a sign-up in it is never skipped, and costs nothing the second time). Returning only once that
    second is over keeps a run started right after from sharing it, so "the next run exports nothing"
    holds whatever the machine's speed.
    """
    signed = int(time.time())
    report = CleverTapHook().upload_profiles(
        [
            {"identity": identity, "profileData": {"Email": email, "Signup Date": date_value(signed)}}
            for identity, email in emails.items()
        ]
    )
    assert report.ok, report
    while time.time() < signed + 1:  # the clock moving on, not a wait for something to be ready
        time.sleep(0.05)


def profile_data(identity: str) -> dict[str, Any]:
    record = CleverTapHook().get_profile(identity=identity)
    assert record is not None, identity
    return record["profileData"]


def credits_used(server: SandboxProcess) -> int:
    return int(server.mailso_stats()["mailso_credits_used"])


def test_new_sign_ups_get_their_verdict_the_invalid_one_the_prompt_and_a_rerun_costs_nothing(
    server: SandboxProcess, data_dir: Path
) -> None:
    dag = shipped_dag(DAG_ID)
    sign_up(
        u1="valid@example.com",
        u2="mailbox_not_found@example.com",
        u3="catch_all@example.com",
        u4="valid@example.com",  # a second profile with the same address: one validation
    )

    first = dag.test(run_conf=CONF)

    assert set(states(first).values()) == {"success"}, states(first)
    extract = xcom(first, "extract_signups")
    assert extract["exported"] == extract["to_verify"] == 4  # only the sign-ups, not the seeded base
    validated = xcom(first, "validate")
    assert validated["verifier"] == "mailso" and validated["sent"] == 3 and validated["verified"] == 3
    assert credits_used(server) == 3
    valid, invalid, risky, twin = (profile_data(i) for i in ("u1", "u2", "u3", "u4"))
    assert valid["Mailso Result"] == twin["Mailso Result"] == "deliverable"
    assert valid["Mailso Prompt Email Fix"] is False and valid["Mailso Safe To Send"] is True
    assert valid["Mailso Verified Email"] == "valid@example.com" and "Mailso Verified At" in valid
    assert invalid["Mailso Result"] == "undeliverable" and invalid["Mailso Prompt Email Fix"] is True
    assert invalid["Mailso Reason"] == "rejected_email"
    assert risky["Mailso Result"] == "risky" and risky["Mailso Prompt Email Fix"] is True
    assert "MSG-email" not in invalid  # sign-ups are asked to fix their address, not unsubscribed
    assert xcom(first, "advance") is not None and Watermark(DAG_ID).read() is not None
    assert "Accounting: ✓ all" in xcom(first, "report")["summary"]
    [event] = asset_events(first)["clevertap://clevertap_default/validated_signups"]
    assert event["changed"] == event["updated"] == 4  # the four sign-ups got their result

    second = dag.test(run_conf=CONF)

    # Nobody signed up since: nothing written, so no asset event (the asset's DAGs are not woken).
    assert states(second).pop("announce_changes") == "skipped" and asset_events(second) == {}
    assert {v for k, v in states(second).items() if k != "announce_changes"} == {"success"}
    assert xcom(second, "extract_signups")["exported"] == 0  # nobody signed up since the first run
    assert xcom(second, "validate")["sent"] == 0 and credits_used(server) == 3


def test_a_failed_run_does_not_move_the_watermark_so_the_next_run_skips_no_one(
    server: SandboxProcess, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = shipped_dag(DAG_ID)
    dag.test(run_conf=CONF)  # a first, empty run sets the watermark
    mark = Watermark(DAG_ID).read()
    sign_up(early="valid@example.com", bad="mailbox_not_found@example.com")

    good_key = json.loads(sandbox_connections(server)["AIRFLOW_CONN_MAILSO_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_MAILSO_DEFAULT", json.dumps({**good_key, "password": "wrong-key"}))
    failed = dag.test(run_conf=CONF)

    assert states(failed)["validate"] == "failed" and states(failed)["advance"] != "success"
    assert Watermark(DAG_ID).read() == mark
    assert "Mailso Result" not in profile_data("early")  # no answer, nothing written

    monkeypatch.setenv("AIRFLOW_CONN_MAILSO_DEFAULT", json.dumps(good_key))
    sign_up(late="someone.new@example.org")
    recovered = dag.test(run_conf=CONF)

    assert set(states(recovered).values()) == {"success"}, states(recovered)
    assert xcom(recovered, "extract_signups")["to_verify"] == 3  # the failed run's two and the new one
    for identity in ("early", "bad", "late"):
        assert "Mailso Result" in profile_data(identity), identity
    assert profile_data("bad")["Mailso Prompt Email Fix"] is True
    assert credits_used(server) == 3
    assert Watermark(DAG_ID).read() > mark
