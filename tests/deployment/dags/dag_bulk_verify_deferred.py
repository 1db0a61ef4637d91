"""A bulk verification that must wait in the triggerer, next to a task that needs the only worker slot.

With ``AIRFLOW__CORE__PARALLELISM=1`` the scheduler runs one task at a time; ``bulk_verify`` goes first
(higher priority). ``independent`` can only run while ``bulk_verify`` is deferred, i.e. when waiting for
Clearout holds no slot.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator

with DAG(
    "clearout_bulk_verify_deferred",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"source": ""},
) as dag:
    ClearoutBulkVerifyOperator(
        task_id="bulk_verify",
        source="{{ params.source }}",
        deferrable=True,
        poll_interval=1,
        max_poll_interval=2,
        priority_weight=10,
    )

    @task(priority_weight=1)
    def independent() -> str:
        return "ran while bulk_verify was deferred"

    independent()
