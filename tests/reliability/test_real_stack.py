"""The nightly DAG under a real scheduler and triggerer (separate processes, LocalExecutor on SQLite):
the triggerer killed while the bulk task waits in it, and a user clearing the deferred bulk task.

Each test gets a fresh account: a new sandbox on the port the stack's connections name, an empty
verdict ledger and no selection history. Judged like every scenario (``judge_end_state``): credits =
the clean night's, every profile = its verdict.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow_stack import HTTP_TIMEOUT, RUN_TIMEOUT, AirflowStack
from dag_runs import SHIPPED_DAGS
from world import DAG_ID, Reference, account_settings, end_state_of, judge_end_state

from clearout_provider.demo import sandbox_connections
from clearout_provider.sandbox import SandboxProcess
from clearout_provider.sandbox.process import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
PORT = free_port()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("stack")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(SHIPPED_DAGS / f"{DAG_ID}.py", dags)
    airflow = AirflowStack(
        home=root / "airflow",
        dags_folder=dags,
        extra_env={
            **sandbox_connections(SandboxProcess(account_settings(), port=PORT)),
            "CLEAROUT_PROVIDER_DATA_DIR": str(root / "clearout_data"),
            "CLEAROUT_PROVIDER_LEDGER_DIR": str(root / "verdict-ledger"),
            "AIRFLOW__CLEAROUT__TASK_RETRIES": "2",
            "AIRFLOW__CLEAROUT__TASK_RETRY_DELAY": "2",
            "AIRFLOW__CLEAROUT__BULK_POLL_INTERVAL": "0.5",
            # Only the runs the tests start: no run for the cron schedule when the DAG is unpaused.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        },
    )
    try:
        yield airflow.start(expect_dags=(DAG_ID,))
    finally:
        airflow.stop()


def fresh_account(stack: AirflowStack, tmp_path: Path, **settings: Any) -> SandboxProcess:
    """A new sandbox account, an empty verdict ledger and no selection history: the first night on a
    fresh account is a full sweep (another test's night must not make this one a delta)."""
    shutil.rmtree(stack.home.parent / "verdict-ledger", ignore_errors=True)
    shutil.rmtree(stack.home.parent / "clearout_data" / "watermarks", ignore_errors=True)
    settings = {**settings, "state_dir": str(tmp_path / "sandbox-state")}
    return SandboxProcess(account_settings(**settings), port=PORT, log_path=tmp_path / "sandbox.log").start()


def bulk_state(stack: AirflowStack, run_id: str) -> str | None:
    return stack.task_states(DAG_ID, run_id).get("verify_bulk[0]")


def test_triggerer_killed_while_the_bulk_task_waits_in_it(
    stack: AirflowStack, reference: Reference, tmp_path: Path
) -> None:
    server = fresh_account(stack, tmp_path, stuck_lists=True)
    try:
        stack.trigger(DAG_ID, "triggerer-killed")
        stack.wait_until(
            "verify_bulk deferred", lambda: bulk_state(stack, "triggerer-killed") == "deferred", RUN_TIMEOUT
        )
        stack.kill("triggerer")
        stack.start_triggerer()
        server.set_faults(stuck_lists=False)
        state = stack.wait_for_run(DAG_ID, "triggerer-killed")

        assert state == "success", (
            stack.task_states(DAG_ID, "triggerer-killed"),
            stack.log("triggerer")[-3000:],
        )
        assert server.clearout_stats()["bulk_uploads"] == 1  # the new triggerer waited for the same list
        judge_end_state(
            end_state_of(server),
            "ok (new triggerer took the trigger over)",
            reference,
            "triggerer SIGKILLed while deferred (real stack)",
        )
    finally:
        server.stop()


def test_the_deferred_bulk_task_cleared_midway(
    stack: AirflowStack, reference: Reference, tmp_path: Path
) -> None:
    server = fresh_account(stack, tmp_path, bulk_rate=15.0)  # a ~25 s list

    def list_midway() -> bool:
        lists = server.clearout_stats()["lists"].values()
        return bulk_state(stack, "cleared") == "deferred" and any(
            60 < e["processed"] < e["total"] for e in lists
        )

    try:
        stack.trigger(DAG_ID, "cleared")
        stack.wait_until("the list part-processed while verify_bulk is deferred", list_midway, RUN_TIMEOUT)
        requests.post(
            f"{stack.api_url}/api/v2/dags/{DAG_ID}/clearTaskInstances",
            json={
                "dry_run": False,
                "dag_run_id": "cleared",
                "task_ids": ["verify_bulk"],
                "include_downstream": True,
                "only_failed": False,
                "reset_dag_runs": True,
            },
            timeout=HTTP_TIMEOUT,
        ).raise_for_status()
        state = stack.wait_for_run(DAG_ID, "cleared")

        assert state == "success", (stack.task_states(DAG_ID, "cleared"), stack.log("scheduler")[-3000:])
        uploads = server.clearout_stats()["bulk_uploads"]
        judge_end_state(
            end_state_of(server),
            f"ok ({uploads} list(s): what the first processed was kept)",
            reference,
            "deferred bulk task cleared at ~30% (real stack)",
        )
    finally:
        server.stop()
