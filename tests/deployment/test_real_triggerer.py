"""The bulk operator under a REAL scheduler and triggerer: deferred while the list runs, no worker slot held.

An Airflow stack (api-server, dag-processor, scheduler, triggerer; LocalExecutor on SQLite) runs as
separate processes with ``AIRFLOW__CORE__PARALLELISM=1``. The Clearout connection exists ONLY as
``AIRFLOW_CONN_CLEAROUT_DEFAULT`` in the components' environment, so the triggerer must resolve it from
there. The tests watch task states through the REST API.

Timing: the sandbox HOLDS its lists (``stuck_lists``) while a test waits for the state it wants to see
(a task deferred, another one finished meanwhile, a poll loop entered), then lets them go. A list that
simply runs for N seconds would race the stack, which on a busy machine may need longer than N seconds
just to start the next task. Every wait is a poll for a condition under a generous ceiling.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from airflow_stack import RUN_TIMEOUT, AirflowStack, Snapshot

from clearout_provider.sandbox import SandboxProcess, SandboxSettings

DEFERRED_DAG = "clearout_bulk_verify_deferred"
KILLED_DAG = "clearout_bulk_verify_killed"
BULK_RATE = 2.0  # rows per second, once a held list is let go
ROWS = 6  # the deferral test's list: ROWS / BULK_RATE = 3 s after it is let go
#: pytest-timeout's hang guard, above the stack's own ceilings: it also covers the first test's share of
#: the module fixtures (starting the stack), and the stack's ceilings should speak first.
TEST_TIMEOUT = 1800


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


@pytest.fixture
def held_lists(sandbox_server: SandboxProcess) -> Iterator[SandboxProcess]:
    """Bulk lists stand still until the test lets them go (``set_faults(stuck_lists=False)``)."""
    sandbox_server.set_faults(stuck_lists=True)
    try:
        yield sandbox_server
    finally:
        sandbox_server.reset_faults()


def trigger_log(stack: AirflowStack, dag_id: str) -> str:
    """The trigger's log lines of ``dag_id``'s runs: written by the triggerer, next to the task logs."""
    files = sorted((stack.home / "logs" / f"dag_id={dag_id}").rglob("*.log.trigger.*"))
    return "".join(path.read_text(errors="replace") for path in files)


@pytest.mark.timeout(TEST_TIMEOUT)
def test_bulk_verify_waits_in_the_triggerer_without_a_worker_slot(
    stack: AirflowStack, held_lists: SandboxProcess, tmp_path: Path
) -> None:
    sandbox_server = held_lists
    source = contacts(tmp_path / "contacts.csv", ROWS, "person")
    snapshots: list[Snapshot] = []

    def freed_slot_used() -> bool:
        """bulk_verify deferred (its list held) while independent, needing the only slot, finished."""
        snapshot = Snapshot(time.monotonic(), stack.task_states(DEFERRED_DAG, "real-triggerer"))
        snapshots.append(snapshot)
        assert "failed" not in snapshot.states.values(), (snapshot, stack.log("scheduler")[-3000:])
        return snapshot.states == {"bulk_verify": "deferred", "independent": "success"}

    stack.trigger(DEFERRED_DAG, "real-triggerer", conf={"source": str(source)})
    stack.wait_until("independent to run while bulk_verify is deferred", freed_slot_used, RUN_TIMEOUT)
    # ... and the trigger, in the triggerer, is polling the held list (its progress lines are logged).
    stack.wait_until("the trigger's progress lines", lambda: "% done" in trigger_log(stack, DEFERRED_DAG))
    sandbox_server.set_faults(stuck_lists=False)
    state = stack.wait_for_run(DEFERRED_DAG, "real-triggerer", on_poll=snapshots.append)

    assert state == "success", (
        snapshots[-1:],
        stack.log("scheduler")[-3000:],
        stack.log("triggerer")[-3000:],
    )

    lists = {k: v for k, v in sandbox_server.clearout_stats()["lists"].items() if v["total"] == ROWS}
    [(list_id, clearout_list)] = lists.items()
    assert clearout_list["status"] == "completed"
    task_folder = stack.home.parent / "clearout_data" / DEFERRED_DAG / "real-triggerer" / "bulk_verify"
    assert len(pd.read_parquet(task_folder / "clearout-result.parquet")) == ROWS
    # The trigger ran in the triggerer: its lines, progress percentages included, are in the trigger log.
    [trigger_file] = (stack.home / "logs" / f"dag_id={DEFERRED_DAG}").rglob("*.log.trigger.*")
    text = trigger_file.read_text(errors="replace")
    assert f"Waiting for Clearout verify list {list_id}" in text and "% done" in text


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_marking_running_tasks_failed_cancels_their_lists(
    stack: AirflowStack, held_lists: SandboxProcess, tmp_path: Path
) -> None:
    """The trigger's on_kill (deferred task) and the operator's on_kill (task polling on the worker).

    The lists are held, so they are still running however long the stack takes to get both tasks there.
    """
    sandbox_server = held_lists
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
    def both_waiting() -> bool:
        states = stack.task_states(KILLED_DAG, "killed")
        assert "failed" not in states.values(), states
        return states == {"deferred": "deferred", "on_worker": "running"} and len(lists_by_size()) == 2

    stack.wait_until(
        "deferred deferred and on_worker running, both lists uploaded", both_waiting, RUN_TIMEOUT
    )
    # on_worker's poll loop has started once it logs the wait: from then on its on_kill knows the list.
    stack.wait_until(
        "on_worker's poll loop",
        lambda: "(non-deferrable)" in stack.task_log(KILLED_DAG, "killed", "on_worker"),
        RUN_TIMEOUT,
    )
    assert set(lists_by_size().values()) == {"running"}

    for task_id in ("deferred", "on_worker"):
        stack.set_task_state(KILLED_DAG, "killed", task_id, "failed")

    stack.wait_until(
        "both lists cancelled", lambda: set(lists_by_size().values()) == {"cancelled"}, RUN_TIMEOUT
    )
    assert set(lists_by_size().values()) == {"cancelled"}, (lists_by_size(), stack.log("triggerer")[-3000:])
