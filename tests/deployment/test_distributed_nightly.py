"""The nightly list-cleaning DAG on a real distributed Airflow: CeleryExecutor, PostgreSQL, Redis, S3.

The docker-compose topology without Docker: api-server, dag-processor, scheduler, triggerer and two
celery workers, each a separate process sharing one environment (tests/deployment/airflow_stack.py).
The test creates its own PostgreSQL database on 127.0.0.1:5432 and claims an empty Redis database
number on 127.0.0.1:6379; both are dropped afterwards. Both connections exist only as ``AIRFLOW_CONN_*``
variables, as in the compose file. The sandbox HOLDS bulk lists (``stuck_lists``) until the test has
seen the bulk step ``deferred`` and its trigger polling in the triggerer, then lets the list finish: no
race between a list's fixed duration and how fast a (possibly busy) machine gets the task there.

**Files only through the object store.** The data dir (``CLEAROUT_PROVIDER_DATA_DIR``) is
``s3://clearout_store@<bucket>/clearout_data`` on moto's S3 server (local_services.s3_server), reached
through the ``clearout_store`` aws connection, the way ObjectStoragePath authenticates in production.
Each worker runs in a scratch folder of its own (HOME, TMPDIR, cwd, AIRFLOW_HOME) and signs its S3
requests with an access key of its own, so the server's request recording says which worker wrote and
which read every object. While the bulk step waits in the triggerer, the worker that deferred it stops
taking tasks: its resume and everything after run on the other worker, which can only succeed if the
task files crossed through the store. A file a task kept on local disk would be missing there.

Without PostgreSQL or Redis the test skips, saying which is missing, except under ``CI=true``, where a
missing service is a failure: the CI machine is meant to prove this topology (tests/deployment/
local_services.py).
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from airflow_stack import RUN_TIMEOUT, AirflowStack, CeleryWorker, Snapshot
from local_services import Postgres, S3Request, S3Server, postgres_database, redis_database, s3_server

from clearout_provider.demo import sandbox_connections
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "clevertap_nightly_list_cleaning"
RUN_ID = "distributed-nightly"
CONTACTS = 600  # ~520 addresses to verify: above the instant threshold (200), so the bulk path
BULK_RATE = 200.0  # addresses per second once the held list is let go: ~3 s
#: pytest-timeout's hang guard, above the stack's own ceilings (it also covers starting the stack).
TEST_TIMEOUT = 1800
BUCKET = "clearout-nightly"
STORE_CONN_ID = "clearout_store"
DATA_PREFIX = "clearout_data"
WORKERS = ("worker-a", "worker-b")


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
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(BUCKET, tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    postgres: Postgres,
    redis_url: str,
    sandbox_server: SandboxProcess,
    s3: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("celery-stack")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / f"{DAG_ID}.py", dags)
    store_env = f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}"
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
            "CLEAROUT_PROVIDER_DATA_DIR": f"s3://{STORE_CONN_ID}@{BUCKET}/{DATA_PREFIX}",
            store_env: s3.connection("airflow-stack"),  # any component other than a worker
        },
        # One slot each: a busy worker takes no second task, and the scratch folders share nothing.
        workers=tuple(
            CeleryWorker(name, scratch=root / name, env={store_env: s3.connection(name)}, concurrency=1)
            for name in WORKERS
        ),
    )
    try:
        yield airflow.start(expect_dags=(DAG_ID,))
    finally:
        airflow.stop()


def trigger_log(stack: AirflowStack) -> str:
    """The trigger's log lines of the DAG's runs (written by the triggerer, next to the task logs)."""
    files = sorted((stack.home / "logs" / f"dag_id={DAG_ID}").rglob("*.log.trigger.*"))
    return "".join(path.read_text(errors="replace") for path in files)


@dataclass(frozen=True)
class HandOff:
    """One read of an object of the store by a worker other than the one that last wrote it."""

    key: str
    writer: str
    reader: str


def hand_offs(requests: list[S3Request], workers: tuple[str, ...]) -> list[HandOff]:
    """Every GET, in the server's recording, of an object whose latest write (a PUT, or a multipart
    upload's POSTs) came from another worker; one per key, writer and reader."""
    last_writer: dict[str, str] = {}
    found: list[HandOff] = []
    for request in requests:
        if not request.key or request.principal not in workers:
            continue
        if request.method in ("PUT", "POST"):
            last_writer[request.key] = request.principal
        elif request.method == "GET" and last_writer.get(request.key, request.principal) != request.principal:
            handoff = HandOff(request.key, last_writer[request.key], request.principal)
            if handoff not in found:
                found.append(handoff)
    return found


def ran_on(stack: AirflowStack) -> dict[str, str]:
    """Which worker ran each task instance (its hostname in the metadata DB: the worker's name)."""
    tis = stack.get(f"/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances")["task_instances"]
    return {
        ti["task_id"] + ("" if ti["map_index"] < 0 else f"[{ti['map_index']}]"): ti["hostname"]
        for ti in tis
        if ti["hostname"]
    }


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_nightly_dag_runs_on_celery_with_the_bulk_step_deferred_in_the_triggerer(
    stack: AirflowStack, sandbox_server: SandboxProcess, s3: S3Server
) -> None:
    snapshots: list[Snapshot] = []

    def bulk_step_deferred() -> bool:
        snapshot = Snapshot(time.monotonic(), stack.task_states(DAG_ID, RUN_ID))
        snapshots.append(snapshot)
        assert "failed" not in snapshot.states.values(), (snapshot, stack.worker_logs()[-3000:])
        return snapshot.states.get("verify_bulk[0]") == "deferred"

    sandbox_server.set_faults(stuck_lists=True)
    try:
        stack.trigger(DAG_ID, RUN_ID)
        # The bulk step waits in the triggerer: deferred, and its trigger polls the held list there.
        stack.wait_until("verify_bulk[0] deferred", bulk_step_deferred, RUN_TIMEOUT)
        stack.wait_until("the trigger's progress lines", lambda: "% done" in trigger_log(stack))
        # The worker that deferred the bulk step takes no more tasks: its resume goes to the other one.
        deferred_by = ran_on(stack)["verify_bulk[0]"]
        stack.stop_taking_tasks(deferred_by)
    finally:
        sandbox_server.reset_faults()  # the list goes on
    state = stack.wait_for_run(DAG_ID, RUN_ID, on_poll=snapshots.append)

    final = stack.task_states(DAG_ID, RUN_ID)
    worker_logs = stack.worker_logs()
    assert state == "success", (final, stack.log("scheduler")[-3000:], worker_logs[-3000:])
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

    # Every task ran on a celery worker: one received each workload, and the task instances say so.
    tis = stack.get(f"/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances")["task_instances"]
    ran = [ti for ti in tis if ti["state"] == "success"]
    for ti in ran:
        assert f"task_id='{ti['task_id']}'" in worker_logs, (ti["task_id"], worker_logs[-3000:])
        assert ti["queue"] == "default" and ti["hostname"] in WORKERS, ti
        assert ti["executor"] in (None, "CeleryExecutor"), ti
    assert worker_logs.count("Executing workload in Celery") >= len(ran) + 1  # + the resume after deferral
    workers_of = ran_on(stack)
    assert workers_of["verify_bulk[0]"] != deferred_by, workers_of  # resumed by the other worker

    # The run's files are in the bucket, under the data dir: contacts, results, the ledger, the report.
    run_prefix = f"{DATA_PREFIX}/{DAG_ID}/{RUN_ID}/"
    keys = s3.keys(DATA_PREFIX + "/")
    listing = "\n  ".join(keys)
    print(f"\nObjects in s3://{BUCKET}:\n  {listing}")
    for folder in ("extract_delta/", "split_for_bulk/", "verify_bulk__0/", "load_back__0/"):
        assert any(k.startswith(run_prefix + folder) for k in keys), (folder, keys)
    assert any(k.startswith(f"{DATA_PREFIX}/ledger/verifier=clearout/segment-") for k in keys), keys
    report = run_prefix + "report/"
    assert {report + "report.md", report + "report.html", report + "summary.txt"} <= set(keys), keys
    assert "checks add up" in s3.read(report + "summary.txt").decode()

    # The verdict ledger in the store holds every address the list verified (pyarrow reads it from S3).
    import pyarrow.parquet as pq

    ledger_rows = sum(
        pq.read_table(io.BytesIO(s3.read(k))).num_rows
        for k in keys
        if k.startswith(f"{DATA_PREFIX}/ledger/verifier=clearout/segment-")
    )
    assert ledger_rows == sandbox_server.clearout_stats()["lists"][list_id]["total"], ledger_rows

    # Files crossed workers through the store: written by one worker's tasks, read by the other's.
    crossed = hand_offs(s3.requests(), WORKERS)
    print(f"Tasks by worker (last run): {workers_of}; verify_bulk[0] deferred on {deferred_by}")
    print("Files that crossed workers (the task folder names the writing task):")
    for handoff in crossed:
        print(f"  {handoff.key}: written by {handoff.writer}, read by {handoff.reader}")
    assert crossed, (workers_of, s3.requests()[-50:])
    # The bulk step's memory of its list, written before it deferred, read by the worker that resumed it.
    assert any(h.key.startswith(run_prefix + "verify_bulk__0/") and h.writer == deferred_by for h in crossed)
    # Nothing stayed on a worker's disk but its Airflow config: no task file bypassed the store.
    for worker in stack.workers:
        assert worker.scratch is not None
        left = sorted(str(p.relative_to(worker.scratch)) for p in worker.scratch.rglob("*") if p.is_file())
        assert left == ["airflow/airflow.cfg"], (worker.name, left)

    # The store's secret key stayed in the connection: in no log of any component or task.
    logs = [path for path in stack.home.rglob("*.log*") if path.is_file()]
    assert logs and not [p for p in logs if s3.secret_key in p.read_text(errors="replace")]
