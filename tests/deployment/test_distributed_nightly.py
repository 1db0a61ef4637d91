"""The nightly list-cleaning DAG on a real distributed Airflow: CeleryExecutor, PostgreSQL, Redis.

The docker-compose topology without Docker: api-server, dag-processor, scheduler, triggerer and one
celery worker, each a separate process sharing one environment (tests/deployment/airflow_stack.py).
The test creates its own PostgreSQL database on 127.0.0.1:5432 and claims an empty Redis database
number on 127.0.0.1:6379; both are dropped afterwards. Both connections exist only as ``AIRFLOW_CONN_*``
variables, as in the compose file. The sandbox HOLDS bulk lists (``stuck_lists``) until the test has
seen the bulk step ``deferred`` and its trigger polling in the triggerer, then lets the list finish: no
race between a list's fixed duration and how fast a (possibly busy) machine gets the task there.

Without PostgreSQL or Redis the test skips, saying which is missing, except under ``CI=true``, where a
missing service is a failure: the CI machine is meant to prove this topology (tests/deployment/
local_services.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_stack import RUN_TIMEOUT, AirflowStack, Snapshot
from local_services import Postgres, postgres_database, redis_database

from clearout_provider.demo import sandbox_connections
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "clevertap_nightly_list_cleaning"
RUN_ID = "distributed-nightly"
CONTACTS = 600  # ~520 addresses to verify: above the instant threshold (200), so the bulk path
BULK_RATE = 200.0  # addresses per second once the held list is let go: ~3 s
#: pytest-timeout's hang guard, above the stack's own ceilings (it also covers starting the stack).
TEST_TIMEOUT = 1800


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway database (trust auth as ``postgres`` or ``root``), dropped afterwards."""
    with postgres_database("airflow_nightly") as database:
        yield database


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """An empty Redis database number of this test's own, flushed afterwards."""
    with redis_database() as url:
        yield url


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with SandboxProcess(SandboxSettings(seed_contacts=CONTACTS, bulk_rate=BULK_RATE), log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    postgres: Postgres,
    redis_url: str,
    sandbox_server: SandboxProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("celery-stack")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / f"{DAG_ID}.py", dags)
    airflow = AirflowStack(
        home=root / "airflow",
        dags_folder=dags,
        executor="CeleryExecutor",
        sql_alchemy_conn=postgres.url,
        celery_broker_url=redis_url,
        extra_env={
            # Only the run the test triggers: unpausing must not start tonight's scheduled run too.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CLEAROUT__BULK_POLL_INTERVAL": "2",
            **sandbox_connections(sandbox_server),
            "CLEAROUT_PROVIDER_DATA_DIR": str(root / "clearout_data"),
        },
    )
    try:
        yield airflow.start(expect_dags=(DAG_ID,))
    finally:
        airflow.stop()


def trigger_log(stack: AirflowStack) -> str:
    """The trigger's log lines of the DAG's runs (written by the triggerer, next to the task logs)."""
    files = sorted((stack.home / "logs" / f"dag_id={DAG_ID}").rglob("*.log.trigger.*"))
    return "".join(path.read_text(errors="replace") for path in files)


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_nightly_dag_runs_on_celery_with_the_bulk_step_deferred_in_the_triggerer(
    stack: AirflowStack, sandbox_server: SandboxProcess
) -> None:
    snapshots: list[Snapshot] = []

    def bulk_step_deferred() -> bool:
        snapshot = Snapshot(time.monotonic(), stack.task_states(DAG_ID, RUN_ID))
        snapshots.append(snapshot)
        assert "failed" not in snapshot.states.values(), (snapshot, stack.log("celery-worker")[-3000:])
        return snapshot.states.get("verify_bulk[0]") == "deferred"

    sandbox_server.set_faults(stuck_lists=True)
    try:
        stack.trigger(DAG_ID, RUN_ID)
        # The bulk step waits in the triggerer: deferred, and its trigger polls the held list there.
        stack.wait_until("verify_bulk[0] deferred", bulk_step_deferred, RUN_TIMEOUT)
        stack.wait_until("the trigger's progress lines", lambda: "% done" in trigger_log(stack))
    finally:
        sandbox_server.reset_faults()  # the list goes on
    state = stack.wait_for_run(DAG_ID, RUN_ID, on_poll=snapshots.append)

    final = stack.task_states(DAG_ID, RUN_ID)
    assert state == "success", (final, stack.log("scheduler")[-3000:], stack.log("celery-worker")[-3000:])
    extract = stack.get(
        f"/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances/extract_delta/xcomEntries/return_value"
    )
    assert final == {
        "extract_delta": "success",
        "choose_mode": "success",
        "split_for_bulk": "success",
        "verify_instant": "skipped",
        "verify_bulk[0]": "success",
        "verified": "success",
        "load_back[0]": "success",
        "report": "success",
        "announce_changes": "success",
    }, extract["value"]
    # The trigger ran in the triggerer: its log is the triggerer's, with Clearout's progress in it.
    [list_id] = sandbox_server.clearout_stats()["lists"]
    [trigger_file] = (stack.home / "logs" / f"dag_id={DAG_ID}").rglob("*.log.trigger.*")
    assert f"Waiting for Clearout verify list {list_id}" in trigger_file.read_text(errors="replace")
    assert sandbox_server.clearout_stats()["lists"][list_id]["status"] == "completed"

    # Every task ran on the celery worker: it received each workload, and the task instances say so.
    worker_log = stack.log("celery-worker")
    tis = stack.get(f"/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances")["task_instances"]
    ran = [ti for ti in tis if ti["state"] == "success"]
    for ti in ran:
        assert f"task_id='{ti['task_id']}'" in worker_log, (ti["task_id"], worker_log[-3000:])
        assert ti["queue"] == "default" and ti["hostname"], ti
        assert ti["executor"] in (None, "CeleryExecutor"), ti
    assert worker_log.count("Executing workload in Celery") >= len(ran) + 1  # + the resume after deferral

    report = stack.home.parent / "clearout_data" / DAG_ID / RUN_ID / "report"
    assert (report / "report.md").exists() and (report / "report.html").exists()
    assert "checks add up" in (report / "summary.txt").read_text()
