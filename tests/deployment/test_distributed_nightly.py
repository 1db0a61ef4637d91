"""The nightly list-cleaning DAG on a real distributed Airflow: CeleryExecutor, PostgreSQL, Redis.

The docker-compose topology without Docker: api-server, dag-processor, scheduler, triggerer and one
celery worker, each a separate process sharing one environment (tests/deployment/airflow_stack.py).
The test creates its own PostgreSQL database on 127.0.0.1:5432 and claims an empty Redis database
number on 127.0.0.1:6379; both are dropped afterwards. Both connections exist only as ``AIRFLOW_CONN_*``
variables, as in the compose file. The sandbox HOLDS bulk lists (``stuck_lists``) until the test has
seen the bulk step ``deferred`` and its trigger polling in the triggerer, then lets the list finish: no
race between a list's fixed duration and how fast a (possibly busy) machine gets the task there.

Without PostgreSQL or Redis the test skips, saying which is missing, except under ``CI=true``, where a
missing service is a failure: the CI machine is meant to prove this topology.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow_stack import RUN_TIMEOUT, AirflowStack, Snapshot

from clearout_provider.demo import sandbox_connections
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "clevertap_nightly_list_cleaning"
RUN_ID = "distributed-nightly"
PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DBS = range(15, 0, -1)  # claimed from the top: db 0 is everybody's default
CONTACTS = 600  # ~520 addresses to verify: above the instant threshold (200), so the bulk path
BULK_RATE = 200.0  # addresses per second once the held list is let go: ~3 s
#: Connecting to a local PostgreSQL / Redis: refused at once when down, but a busy machine may take seconds
#: to fork a backend and authenticate, and a too-short limit would SKIP the test as if it were down.
PROBE_TIMEOUT = 30
#: pytest-timeout's hang guard, above the stack's own ceilings (it also covers starting the stack).
TEST_TIMEOUT = 1800


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, where the services are part of the machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@dataclass
class Postgres:
    user: str
    database: str

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@{PG_HOST}:{PG_PORT}/{self.database}"


def _admin(user: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=PROBE_TIMEOUT
    )
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway database (trust auth as ``postgres`` or ``root``), dropped afterwards."""
    import psycopg2

    errors = []
    for user in ("postgres", "root"):
        try:
            admin = _admin(user)
            break
        except psycopg2.OperationalError as exc:
            errors.append(f"{user}: {str(exc).strip()}")
    else:
        unavailable(
            f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} with trust auth ({'; '.join(errors)})"
        )
    database = f"airflow_nightly_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    admin.close()
    try:
        yield Postgres(user, database)
    finally:
        admin = _admin(user)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """An empty Redis database number of this test's own (claimed with a marker key), flushed afterwards."""
    import redis

    marker = f"clearout-provider-test:{secrets.token_hex(4)}"
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=PROBE_TIMEOUT).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable on {REDIS_HOST}:{REDIS_PORT} ({exc})")
    for number in REDIS_DBS:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=PROBE_TIMEOUT)
        if client.dbsize() == 0 and client.set(marker, "1", nx=True):
            break
    else:
        unavailable(f"no empty Redis database number on {REDIS_HOST}:{REDIS_PORT}")
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{number}"
    finally:
        client.flushdb()


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
