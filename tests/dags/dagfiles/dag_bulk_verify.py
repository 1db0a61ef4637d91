"""Small DAGs around ClearoutBulkVerifyOperator and ClearoutBulkVerifySensor.

They serve tests/dags/test_bulk_verify_dag.py.

Each DAG is one operator configuration; the contacts file comes in as ``params.source`` (the sensor's
list as ``params.list_id``). Every failure
and retry of a task is appended to ``$CLEAROUT_PROVIDER_DATA_DIR/failures.jsonl`` (exception type, message,
try number), which is how the tests read the message a user would see.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException

from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.operators.bulk_verify import STATE_FILE, ClearoutBulkVerifyOperator
from clearout_provider.run_files import task_folder
from clearout_provider.sensors.bulk_verify import ClearoutBulkVerifySensor
from clearout_provider.triggers.bulk_job import ClearoutBulkJobTrigger


def record_failure(context: Any) -> None:
    error = context.get("exception")
    entry = {
        "dag_id": context["ti"].dag_id,
        "task_id": context["ti"].task_id,
        "try_number": context["ti"].try_number,
        "type": type(error).__name__,
        "message": str(error),
    }
    with (Path(os.environ["CLEAROUT_PROVIDER_DATA_DIR"]) / "failures.jsonl").open("a") as out:
        out.write(json.dumps(entry) + "\n")


def forget_the_list(context: Any) -> None:
    """A retry on a worker that cannot see the earlier try's files: only Clearout's 2043 is left."""
    record_failure(context)
    (task_folder(context) / STATE_FILE).unlink()


class ListVanishesOperator(ClearoutBulkVerifyOperator):
    """Someone removes the list in the Clearout app right after the upload, before the wait starts."""

    def defer(self, *, trigger: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if isinstance(trigger, ClearoutBulkJobTrigger):
            app = ClearoutHook(self.clearout_conn_id)  # the person in the Clearout app, not the operator
            app.cancel_list(trigger.job_id)
            app.remove_list(trigger.job_id, ignore_result=True)
        super().defer(trigger=trigger, **kwargs)


class LosesItsWorkerOnce(ClearoutBulkVerifyOperator):
    """The first try's worker dies right after the job was submitted, before the task recorded it."""

    def _send_upload(self, upload: Path, *, ignore_duplicate_file: bool) -> str:
        job_id = super()._send_upload(upload, ignore_duplicate_file=ignore_duplicate_file)
        marker = Path(os.environ["CLEAROUT_PROVIDER_DATA_DIR"]) / "worker-lost-once"
        if not marker.exists():
            marker.touch()
            raise AirflowException("the worker died right after submitting")
        return job_id


def bulk_verify_dag(
    dag_id: str,
    operator: type[ClearoutBulkVerifyOperator] = ClearoutBulkVerifyOperator,
    **operator_kwargs: Any,
) -> DAG:
    operator_kwargs.setdefault("on_retry_callback", record_failure)
    with DAG(
        dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params={"source": ""}
    ) as dag:
        operator(
            task_id="verify",
            source="{{ params.source }}",
            poll_interval=0.2,
            max_poll_interval=0.5,
            bulk_slot_wait=0.5,
            on_failure_callback=record_failure,
            **operator_kwargs,
        )
    return dag


deferred = bulk_verify_dag("clearout_bulk_verify", deferrable=True)
on_worker = bulk_verify_dag("clearout_bulk_verify_sync", deferrable=False, result_format="csv")
deadline = bulk_verify_dag("clearout_bulk_verify_deadline", deferrable=True, timeout=1.5)
# The first try outlives its deadline but leaves the list running; the retry must resume it.
retried = bulk_verify_dag(
    "clearout_bulk_verify_retry",
    deferrable=True,
    timeout=3,
    cancel_on_timeout=False,
    retries=1,
    retry_delay=timedelta(0),
)
amnesia = bulk_verify_dag(
    "clearout_bulk_verify_retry_amnesia",
    deferrable=True,
    timeout=3,
    cancel_on_timeout=False,
    retries=1,
    retry_delay=timedelta(0),
    on_retry_callback=forget_the_list,
)
vanishing = bulk_verify_dag("clearout_bulk_verify_vanishing", ListVanishesOperator, deferrable=True)
small_chunks = bulk_verify_dag("clearout_bulk_verify_small_chunks", deferrable=True, max_rows=3)
# Mail.so batches through the same operator and trigger.
mailso = bulk_verify_dag("mailso_bulk_verify", deferrable=True, verifier="mailso")
mailso_retried = bulk_verify_dag(
    "mailso_bulk_verify_retry",
    deferrable=True,
    verifier="mailso",
    retries=1,
    retry_delay=timedelta(0),
)
mailso_worker_lost = bulk_verify_dag(
    "mailso_bulk_verify_worker_lost",
    LosesItsWorkerOnce,
    deferrable=True,
    verifier="mailso",
    retries=1,
    retry_delay=timedelta(0),
)


def sensor_dag(dag_id: str, *, deferrable: bool) -> DAG:
    with DAG(
        dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params={"list_id": ""}
    ) as dag:
        ClearoutBulkVerifySensor(
            task_id="wait",
            list_id="{{ params.list_id }}",
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=30,
            on_failure_callback=record_failure,
        )
    return dag


sensor_deferred = sensor_dag("clearout_bulk_verify_sensor_deferred", deferrable=True)
sensor_poking = sensor_dag("clearout_bulk_verify_sensor_poking", deferrable=False)
