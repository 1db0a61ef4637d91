"""Two long bulk verifications a user stops by marking them failed: one deferred, one on the worker.

Stopping a task must stop the Clearout list it pays for: the trigger's ``on_kill`` cancels the deferred
one (the operator's ``on_kill`` never runs while deferred), the operator's ``on_kill`` the other.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator

with DAG(
    "clearout_bulk_verify_killed",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"deferred_source": "", "worker_source": ""},
) as dag:
    ClearoutBulkVerifyOperator(
        task_id="deferred", source="{{ params.deferred_source }}", deferrable=True, poll_interval=1
    )
    ClearoutBulkVerifyOperator(
        task_id="on_worker", source="{{ params.worker_source }}", deferrable=False, poll_interval=1
    )
