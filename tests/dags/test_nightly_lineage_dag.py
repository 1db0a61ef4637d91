"""The nightly DAG under ``dag.test()`` with Airflow's OpenLineage listener on, as a user turns it on
(``AIRFLOW__OPENLINEAGE__TRANSPORT``, here the ``file`` transport): the COMPLETE events name the segment,
the Clearout list and the CleverTap profile properties, and carry no secret.

The run is a child process: the listener is registered when Airflow loads its plugins, once per process, so
only a process that starts with the transport configured has it (whatever other tests ran before).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from clearout_provider.dag_params import EVERY_PROFILE_WITH_AN_EMAIL
from clearout_provider.demo import sandbox_connections
from clearout_provider.lineage import PROFILES, file_location, segment_name
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clevertap_seed import email_of

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "clevertap_nightly_list_cleaning"
SEED = 300  # above the DAG's instant threshold (200): the bulk path, a Clearout list
NAMESPACE = "lineage-e2e"
RUN = f"""
import json, sys
from dag_runs import shipped_dag, states, xcom
dr = shipped_dag({DAG_ID!r}).test()
print("RESULT " + json.dumps({{"states": states(dr), "load": xcom(dr, "load_back", 0)}}))
"""


def run_with_lineage(server: SandboxProcess, events: Path) -> dict[str, Any]:
    """One nightly run in a child process whose OpenLineage transport appends every event to ``events``."""
    env = {
        **os.environ,
        **sandbox_connections(server),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    # A generous ceiling: a whole DAG run with Airflow's start-up on a busy 2-core machine.
    done = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def completed(events: Path) -> dict[str, dict[str, Any]]:
    """The COMPLETE event of each task, by task id (the job name is ``<dag_id>.<task_id>``)."""
    by_task = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["eventType"] == "COMPLETE" and event["job"]["name"].startswith(f"{DAG_ID}."):
            by_task[event["job"]["name"].removeprefix(f"{DAG_ID}.")] = event
    return by_task


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def test_the_nightly_run_shows_segment_to_clearout_list_to_clevertap_properties(
    sandbox_factory: Any, data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(seed_contacts=SEED, bulk_rate=20_000))
    events = tmp_path / "openlineage.jsonl"

    run = run_with_lineage(server, events)

    assert run["states"]["verify_bulk[0]"] == run["states"]["load_back[0]"] == "success", run["states"]
    tasks = completed(events)
    project = f"clevertap://eu1/{server.settings.clevertap_account_id}"
    assert all(e["job"]["namespace"] == NAMESPACE for e in tasks.values())

    # the segment the extract read: the DAG's default CQL, in the connection's project
    assert names(tasks["extract_delta"]["inputs"]) == [(project, segment_name(EVERY_PROFILE_WITH_AN_EMAIL))]
    assert (
        "CleverTap segment (CQL)"
        in tasks["extract_delta"]["inputs"][0]["facets"]["documentation"]["description"]
    )

    # the Clearout list the addresses went to: the one list the sandbox made, as the version of "lists"
    [list_id] = server.clearout_stats()["lists"]
    [clearout, verdicts] = tasks["verify_bulk"]["outputs"]
    assert (clearout["namespace"], clearout["name"]) == (f"clearout://127.0.0.1:{server.port}", "lists")
    assert clearout["facets"]["version"]["datasetVersion"] == list_id

    # the CleverTap properties the load wrote, read from the file the verify wrote
    assert names(tasks["load_back"]["inputs"]) == names([verdicts])
    [profiles] = tasks["load_back"]["outputs"]
    assert (profiles["namespace"], profiles["name"]) == (project, PROFILES)
    outcomes = pq.read_table(run["load"]["outcome_path"].removeprefix("file://")).to_pylist()
    applied = [o for o in outcomes if o["profile_update"] == "applied"]
    written = {p for o in applied for p in json.loads(o["changes"])}
    assert {f["name"] for f in profiles["facets"]["schema"]["fields"]} == written
    assert "Clearout Verification Status" in written
    assert profiles["outputFacets"]["outputStatistics"]["rowCount"] == len(applied) > 0
    assert file_location(run["load"]["outcome_path"])[1].startswith(str(data_dir))

    # no secret (and no contact's address) anywhere in any event
    text = events.read_text()
    settings = server.settings
    for secret in (settings.clevertap_passcode, settings.clearout_token, settings.mailso_api_key):
        assert secret not in text
    addresses = [email for email, _ in map(email_of, range(SEED)) if email and "@" in email]
    assert addresses and not [a for a in addresses if a.lower() in text.lower()]
