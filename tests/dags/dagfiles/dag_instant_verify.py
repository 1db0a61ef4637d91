"""Instant verification of a small contacts file (driven by tests/dags/test_instant_verify_dag.py).

The test passes the file, the work folder and the knobs as run conf; ``retries`` is 1 so a try stopped
by ``execution_timeout`` is retried at once, the way a killed worker's task is.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from clearout_provider.operators.instant_verify import ClearoutInstantVerifyOperator

with DAG(
    dag_id="test_instant_verify",
    schedule=None,
    catchup=False,
    params={"source": "", "workdir": ""},
) as dag:
    ClearoutInstantVerifyOperator(
        task_id="verify",
        source="{{ params.source }}",
        workdir="{{ params.workdir }}",
        max_concurrency=1,
        max_addresses=100,
        result_format="csv",
        retries=1,
        retry_delay=timedelta(seconds=0),
        execution_timeout=timedelta(seconds=6),
    )
