"""The shipped historical backfill DAG (dags/clevertap_backfill_historical_contacts.py) under ``dag.test()``.

One sandbox process serves both services (connections through ``AIRFLOW_CONN_*``), seeded with a few
thousand CleverTap profiles; a small ``chunk_rows`` makes several chunks, i.e. several mapped verify +
load task pairs. The witnesses are the sandbox's own: Clearout's credits, uploads and lists
(``/_sandbox/stats``) and the profiles as ``GET /1/profile.json`` returns them afterwards.

The interrupted run is the realistic one: the Clearout account runs out of credits part-way through
the backfill. Buying more is modelled by restarting the sandbox with a fresh Clearout account on the
same CleverTap state (``state_dir``): whatever the resumed run spends shows up on the new account, so
a re-verified chunk could not hide.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dag_runs import asset_events, shipped_dag, states, xcom

from clearout_provider.clevertap_rules import parse_date_value
from clearout_provider.contacts import prepare_contacts
from clearout_provider.demo import sandbox_connections
from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clearout_verdicts import verdict_for
from clearout_provider.sandbox.clevertap_seed import SeedProfiles

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "clevertap_backfill_historical_contacts"
SEED = 3000
CHUNK = 600
FULL = {"full_history": True, "chunk_rows": CHUNK}
VERIFY, LOAD = "verify_chunk.verify", "verify_chunk.load"
Factory = Callable[[SandboxSettings], SandboxProcess]


@pytest.fixture
def start(
    sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., SandboxProcess]:
    """Start a sandbox with SEED profiles and point both connections at it (fast polls, own data dir)."""
    monkeypatch.setenv("CLEAROUT_PROVIDER_DATA_DIR", str(tmp_path / "clearout_data"))
    monkeypatch.setenv("AIRFLOW__CLEAROUT__BULK_POLL_INTERVAL", "0.2")

    def start_one(**settings: Any) -> SandboxProcess:
        server = sandbox_factory(SandboxSettings(seed_contacts=SEED, bulk_rate=20_000, **settings))
        for name, value in sandbox_connections(server).items():
            monkeypatch.setenv(name, value)
        return server

    return start_one


# ------------------------------------------------------------------------------------------- witnesses


def mapped_states(dr: Any, task_id: str) -> list[str | None]:
    tis = sorted((ti for ti in dr.get_task_instances() if ti.task_id == task_id), key=lambda ti: ti.map_index)
    return [ti.state for ti in tis]


def finished(dr: Any) -> list[dict[str, Any]]:
    """The verify results of the chunks that were verified AND loaded back in run ``dr``."""
    verified, loaded = mapped_states(dr, VERIFY), mapped_states(dr, LOAD)
    return [
        xcom(dr, VERIFY, i)
        for i, (v, lo) in enumerate(zip(verified, loaded, strict=False))
        if v == lo == "success"
    ]


def table(path: str) -> Any:
    return pq.read_table(path.removeprefix("file://"))


def sent_to_clearout(results: list[dict[str, Any]]) -> set[str]:
    """The addresses Clearout verified in these chunks (one credit each at most)."""
    sent: set[str] = set()
    for result in results:
        rows = table(result["result_path"])
        sent |= set(
            pc.filter(
                rows.column("verified_email"), pc.equal(rows.column("decided_by"), "clearout_bulk")
            ).to_pylist()
        )
    return sent


def identities(paths: list[str]) -> set[str]:
    return {i for p in paths for i in table(p).column("objectId").to_pylist()}


def with_email(seed: SeedProfiles) -> int:
    """Seeded profiles the default segment ("Email exists") selects."""
    return sum(1 for p in map(seed.profile, range(seed.count)) if p.email or p.email_in_profile_data)


def base_cost(extract_path: str, workdir: Path) -> int:
    """What verifying the whole extract once costs: the sandbox's price of each distinct address."""
    upload = prepare_contacts(extract_path, workdir=workdir).upload_path
    addresses = Path(upload).read_text().splitlines()[1:]
    return sum(int(verdict_for(a).billable) for a in addresses)


# ---------------------------------------------------------------------------------------------- tests


def test_full_history_run_verifies_the_base_in_chunks_each_address_once(
    start: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    server = start()
    dag = shipped_dag(DAG_ID)
    verify_task = dag.get_task(VERIFY)
    # No [clearout] bulk_list_pool configured: no pool to wait on; the run caps itself at 3 lists.
    assert (verify_task.pool, verify_task.max_active_tis_per_dagrun, verify_task.deferrable) == (
        "default_pool",
        3,
        True,
    )

    dr = dag.test(run_conf=FULL)

    extract, chunks = xcom(dr, "extract"), xcom(dr, "split")
    assert len(chunks) >= 4
    assert mapped_states(dr, VERIFY) == mapped_states(dr, LOAD) == ["success"] * len(chunks)
    assert {k: v for k, v in states(dr).items() if "[" not in k} == dict.fromkeys(
        ("segment_query", "extract", "split", "report", "announce_changes"), "success"
    )
    assert extract["exported"] == with_email(SeedProfiles(SEED)) and extract["no_email"] == 0
    assert extract["to_verify"] > 0.9 * extract["exported"]  # about 20 % were verified, long ago: stale
    rows = [table(c).num_rows for c in chunks]
    assert max(rows) <= CHUNK and sum(rows) == extract["to_verify"]

    verified = [xcom(dr, VERIFY, i) for i in range(len(chunks))]
    loaded = [xcom(dr, LOAD, i) for i in range(len(chunks))]
    assert [v["rows"] for v in verified] == rows == [lo["input"] for lo in loaded]
    stats = server.clearout_stats()
    assert stats["bulk_uploads"] == len({v["list_id"] for v in verified}) == len(chunks)
    assert all(stats["lists"][v["list_id"]]["status"] == "completed" for v in verified)
    # Chunking cost nothing extra: every address went to Clearout once, exactly what one list would cost.
    assert stats["credits_used"] == sum(v["credits_spent"] for v in verified)
    assert stats["credits_used"] == base_cost(extract["path"], tmp_path / "whole")
    assert xcom(dr, "report")["chunks"] == len(chunks)
    assert Path(xcom(dr, "report")["report_markdown"].removeprefix("file://")).stat().st_size > 0

    # The verdicts are on the profiles (the seed's index 0 is valid@example.com).
    valid = CleverTapHook().get_profile(identity="10000000")
    assert valid is not None and valid["profileData"]["Clearout Verification Status"] == "valid"
    assert "Clearout Disposable" not in valid["profileData"]  # only the nightly's columns (append_columns)
    assert sum(lo["updated"] for lo in loaded) > 0.9 * extract["to_verify"]
    # One event on the nightly's asset for the whole run (not one per chunk), with the chunks' counts.
    [event] = asset_events(dr)["clevertap://clevertap_default/verified"]
    assert event["updated"] == sum(lo["updated"] for lo in loaded) and event["input"] == sum(rows)

    # Everything is fresh now: a second full run has nothing to verify and spends nothing.
    again = dag.test(run_conf=FULL)

    assert xcom(again, "extract")["to_verify"] == 0 and xcom(again, "split") == []
    assert states(again)["report"] == "success" and xcom(again, "report")["chunks"] == 0
    assert states(again)["announce_changes"] == "skipped" and asset_events(again) == {}  # nothing written
    assert server.clearout_stats()["bulk_uploads"] == len(chunks)
    assert server.clearout_stats()["credits_used"] == stats["credits_used"]


def test_full_history_with_mailso_verifies_each_chunk_as_mailso_batches(
    start: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    """verifier=mailso: every chunk goes to Mail.so as batches (deferred), "Mailso ..." properties land
    on the profiles, each address is paid once, and Clearout is never called."""
    server = start(mailso_batch_rate=20_000)

    dr = shipped_dag(DAG_ID).test(run_conf={**FULL, "verifier": "mailso"})

    chunks = xcom(dr, "split")
    assert mapped_states(dr, VERIFY) == mapped_states(dr, LOAD) == ["success"] * len(chunks)
    assert states(dr)["report"] == "success"
    verified = [xcom(dr, VERIFY, i) for i in range(len(chunks))]
    mailso = server.mailso_stats()
    sent = {
        email
        for v in verified
        for email in pc.filter(
            table(v["result_path"]).column("verified_email"),
            pc.equal(table(v["result_path"]).column("decided_by"), "mailso_batch"),
        ).to_pylist()
    }
    assert mailso["mailso_credits_used"] == len(sent) > 0.5 * xcom(dr, "extract")["to_verify"]
    assert server.clearout_stats()["bulk_uploads"] == 0 and server.clearout_stats()["instant_calls"] == 0
    valid = CleverTapHook().get_profile(identity="10000000")
    assert valid is not None and valid["profileData"]["Mailso Result"] == "deliverable"


def test_interrupted_backfill_resumes_without_reverifying_finished_chunks(
    start: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    state = tmp_path / "clevertap_state"
    dag = shipped_dag(DAG_ID)

    # ---- 1. the account runs out of credits after about two chunks
    first_account = start(credits=2 * CHUNK, state_dir=str(state))
    first = dag.test(run_conf=FULL)

    assert first.state == "failed" and states(first)["report"] == "upstream_failed"
    chunks = xcom(first, "split")
    done = finished(first)
    verify_states = mapped_states(first, VERIFY)
    assert len(chunks) >= 4 and 2 <= len(done) < len(chunks)
    assert "failed" in verify_states and set(verify_states) <= {"success", "failed"}
    first_bill = first_account.clearout_stats()
    # A chunk that did not fit the balance was refused before uploading: nothing paid for, no list.
    assert first_bill["bulk_uploads"] == len(done)
    assert first_bill["credits_used"] == sum(v["credits_spent"] for v in done) > 0
    full_base = xcom(first, "extract")
    cost_of_everything = base_cost(full_base["path"], tmp_path / "whole")
    first_account.stop()

    # ---- 2. more credits (a fresh Clearout account, the same CleverTap), a new run
    second_account = start(state_dir=str(state))
    second = dag.test(run_conf=FULL, logical_date=datetime.now(UTC) + timedelta(minutes=1))

    assert second.state == "success", states(second)
    rest = xcom(second, "extract")
    # Only what the finished chunks did not verify is extracted, chunked and verified again.
    assert rest["to_verify"] == full_base["to_verify"] - sum(v["rows"] for v in done)
    assert identities(xcom(second, "split")).isdisjoint(
        identities([chunks[i] for i, s in enumerate(verify_states) if s == "success"])
    )
    resumed = [xcom(second, VERIFY, i) for i in range(len(xcom(second, "split")))]
    assert sent_to_clearout(resumed).isdisjoint(sent_to_clearout(done))
    second_bill = second_account.clearout_stats()
    # The sandbox keeps the Clearout account's counters in state_dir too: the second account's counts
    # start where the first one's ended.
    assert second_bill["bulk_uploads"] - first_bill["bulk_uploads"] == len(resumed)
    assert second_bill["credits_used"] - first_bill["credits_used"] == sum(
        v["credits_spent"] for v in resumed
    )
    # Interrupted + resumed cost exactly what one uninterrupted run costs: no chunk was paid twice.
    assert second_bill["credits_used"] == cost_of_everything  # over both runs: each address paid once

    # ---- 3. everything is accounted for: every profile with an email now carries a verdict
    seed = SeedProfiles(SEED)
    hook = CleverTapHook()
    for i in range(0, SEED, 97):
        p = seed.profile(i)
        record = hook.get_profile(object_id=p.object_id)
        assert record is not None
        has_email = bool(record.get("email") or record["profileData"].get("Email"))
        assert ("Clearout Verified At" in record["profileData"]) == has_email, i
    third = dag.test(run_conf=FULL, logical_date=datetime.now(UTC) + timedelta(minutes=2))
    assert third.state == "success" and xcom(third, "extract")["to_verify"] == 0
    assert second_account.clearout_stats()["credits_used"] == second_bill["credits_used"]


def test_a_backfill_run_verifies_the_profiles_created_in_its_data_interval(
    start: Callable[..., SandboxProcess],
) -> None:
    server = start()
    dag = shipped_dag(DAG_ID)
    seed = SeedProfiles(SEED)
    # A month of sign-ups in the seed's range (400 to 1900 days ago), as `airflow backfill create` makes.
    month_start = (datetime.now(UTC) - timedelta(days=900)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    in_month = [
        p
        for p in (seed.profile(i) for i in range(SEED))
        if (p.email or p.email_in_profile_data)
        and month_start.timestamp() <= parse_date_value(p.profile_data["Signup Date"]) < month_end.timestamp()
    ]
    assert 0 < len(in_month) < with_email(seed) / 10  # the month holds some sign-ups, not all

    dr = dag.test(logical_date=month_end, run_after=month_end)

    assert dr.state == "success", states(dr)
    assert (dr.data_interval_start, dr.data_interval_end) == (month_start, month_end)
    extract = xcom(dr, "extract")
    assert extract["exported"] == len(in_month)
    assert len(xcom(dr, "split")) == 1  # the default chunk size holds a month easily
    assert server.clearout_stats()["bulk_uploads"] == 1
    # `airflow backfill create` plans one such run per month (the DAG is in the DB since dag.test()).
    airflow = str(Path(sys.executable).with_name("airflow"))
    after = (month_end + timedelta(days=32)).replace(day=1)  # months without a run yet
    first, last = after.date().isoformat(), (after + timedelta(days=70)).date().isoformat()
    plan = subprocess.run(
        [
            airflow,
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            first,
            "--to-date",
            last,
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    planned = re.findall(r"\| (\d{4}-\d\d-\d\d) 00:00:00\+00:00", plan.stdout)
    assert len(planned) == 3 and planned[0] == first and all(d.endswith("-01") for d in planned)
    signup_filters = [
        f
        for f in xcom(dr, "segment_query")["common_profile_properties"]["profile_fields"]
        if f["name"] == "Signup Date"
    ]
    assert [(f["operator"], f["value"]) for f in signup_filters] == [
        ("greater_than_equals", f"$D_{int(month_start.timestamp())}"),
        ("less_than", f"$D_{int(month_end.timestamp())}"),
    ]
