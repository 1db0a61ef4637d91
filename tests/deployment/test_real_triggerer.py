"""The bulk operator under a REAL scheduler and triggerer: deferred while the list runs, no worker slot held.

An Airflow stack (api-server, dag-processor, scheduler, triggerer; LocalExecutor on SQLite) runs as
separate processes with ``AIRFLOW__CORE__PARALLELISM=1``. The Clearout connection exists ONLY as
``AIRFLOW_CONN_CLEAROUT_DEFAULT`` in the components' environment, so the triggerer must resolve it from
there. Lists on the sandbox run at 2 rows/s; the tests watch task states through the REST API.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from airflow_stack import AirflowStack

from clearout_provider.sandbox import SandboxProcess, SandboxSettings

DEFERRED_DAG = "clearout_bulk_verify_deferred"
KILLED_DAG = "clearout_bulk_verify_killed"
BULK_RATE = 2.0  # rows per second
ROWS = 24  # the list of the deferral test runs ROWS / BULK_RATE = 12 s


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with SandboxProcess(SandboxSettings(bulk_rate=BULK_RATE), log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def stack(sandbox_server: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("stack")
    dags = root / "dags"
    dags.mkdir()
    for dag_id in (DEFERRED_DAG, KILLED_DAG):
        shutil.copy(Path(__file__).parent / "dags" / f"dag_{dag_id.removeprefix('clearout_')}.py", dags)
    token = sandbox_server.settings.clearout_token
    connection = {"conn_type": "clearout", "host": sandbox_server.clearout_url, "password": token}
    airflow = AirflowStack(
        home=root / "airflow",
        dags_folder=dags,
        extra_env={
            "AIRFLOW__CORE__PARALLELISM": "1",
            "AIRFLOW_CONN_CLEAROUT_DEFAULT": json.dumps(connection),
            "CLEAROUT_PROVIDER_DATA_DIR": str(root / "clearout_data"),
        },
    )
    try:
        yield airflow.start(expect_dags=(DEFERRED_DAG, KILLED_DAG))
    finally:
        airflow.stop()


def contacts(path: Path, rows: int, prefix: str) -> Path:
    path.write_text("Email,id\n" + "".join(f"{prefix}{i}@firm{i % 5}.org,{i}\n" for i in range(rows)))
    return path


@pytest.mark.timeout(120)
def test_bulk_verify_waits_in_the_triggerer_without_a_worker_slot(
    stack: AirflowStack, sandbox_server: SandboxProcess, tmp_path: Path
) -> None:
    source = contacts(tmp_path / "contacts.csv", ROWS, "person")
    snapshots: list[dict[str, str | None]] = []

    stack.trigger(DEFERRED_DAG, "real-triggerer", conf={"source": str(source)})
    state = stack.wait_for_run(DEFERRED_DAG, "real-triggerer", timeout=75, on_poll=snapshots.append)

    assert state == "success", (
        snapshots[-1:],
        stack.log("scheduler")[-3000:],
        stack.log("triggerer")[-3000:],
    )
    deferred = [s for s in snapshots if s.get("bulk_verify") == "deferred"]
    assert len(deferred) >= 5, snapshots  # seen deferred over several seconds of polling (0.5 s apart)
    assert any(s.get("independent") == "success" for s in deferred), snapshots  # ran in the freed slot

    lists = {k: v for k, v in sandbox_server.clearout_stats()["lists"].items() if v["total"] == ROWS}
    [(list_id, clearout_list)] = lists.items()
    assert clearout_list["status"] == "completed"
    task_folder = stack.home.parent / "clearout_data" / DEFERRED_DAG / "real-triggerer" / "bulk_verify"
    assert len(pd.read_parquet(task_folder / "clearout-result.parquet")) == ROWS
    # The trigger ran in the triggerer: its lines, progress percentages included, are in the trigger log.
    [trigger_log] = (stack.home / "logs" / f"dag_id={DEFERRED_DAG}").rglob("*.log.trigger.*")
    text = trigger_log.read_text(errors="replace")
    assert f"Waiting for Clearout verify list {list_id}" in text and "% done" in text


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_marking_running_tasks_failed_cancels_their_lists(
    stack: AirflowStack, sandbox_server: SandboxProcess, tmp_path: Path
) -> None:
    """The trigger's on_kill (deferred task) and the operator's on_kill (task polling on the worker)."""
    sources = {
        "deferred_source": str(contacts(tmp_path / "deferred.csv", 400, "deferred")),
        "worker_source": str(contacts(tmp_path / "worker.csv", 400, "worker")),
    }
    stack.trigger(KILLED_DAG, "killed", conf=sources)

    def lists_by_size() -> dict[str, str]:
        return {
            k: v["status"] for k, v in sandbox_server.clearout_stats()["lists"].items() if v["total"] == 400
        }

    # parallelism=1: "deferred" uploads and defers, then "on_worker" takes the slot and polls on it.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = stack.task_states(KILLED_DAG, "killed")
        if states == {"deferred": "deferred", "on_worker": "running"} and len(lists_by_size()) == 2:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(
            f"tasks never reached deferred + running: {stack.task_states(KILLED_DAG, 'killed')}"
        )
    time.sleep(2)  # let on_worker enter its poll loop
    assert set(lists_by_size().values()) == {"running"}

    for task_id in ("deferred", "on_worker"):
        url = f"{stack.api_url}/api/v2/dags/{KILLED_DAG}/dagRuns/killed/taskInstances/{task_id}"
        requests.patch(url, json={"new_state": "failed"}, timeout=10).raise_for_status()

    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and set(lists_by_size().values()) != {"cancelled"}:
        time.sleep(0.5)
    assert set(lists_by_size().values()) == {"cancelled"}, (lists_by_size(), stack.log("triggerer")[-3000:])
