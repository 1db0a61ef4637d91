"""Small DAGs around the Email Finder operators for tests/dags/test_email_finder_dags.py.

The people file and the work folder come in as run conf. Times are compressed by the sandbox
(``time_scale``); the operators' own waits are set small here to match.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from clearout_provider.operators.email_finder import (
    ClearoutBulkEmailFinderOperator,
    ClearoutEmailFinderOperator,
)

PARAMS = {"source": "", "workdir": ""}


def finder_dag(dag_id: str, operator: type, **operator_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params=PARAMS) as dag:
        operator(
            task_id="find",
            source="{{ params.source }}",
            workdir="{{ params.workdir }}",
            result_format="csv",
            **operator_kwargs,
        )
    return dag


# Clearout's shortest search wait (10 s) is 0.1 s at the tests' time_scale of 0.01.
instant = finder_dag(
    "test_finder_instant", ClearoutEmailFinderOperator, timeout_ms=10_000, max_concurrency=4,
    queue_poll_interval=0.05, queue_max_wait=5,
)  # fmt: skip
# Gives up on a queued search after 0.3 s: the search outlives the task, its queue id is checkpointed.
impatient = finder_dag(
    "test_finder_impatient", ClearoutEmailFinderOperator, timeout_ms=10_000, max_concurrency=4,
    queue_poll_interval=0.05, queue_max_wait=0.3,
)  # fmt: skip
bulk = finder_dag(
    "test_finder_bulk", ClearoutBulkEmailFinderOperator, deferrable=True, poll_interval=0.2,
    max_poll_interval=0.5,
)  # fmt: skip
bulk_on_worker = finder_dag(
    "test_finder_bulk_sync", ClearoutBulkEmailFinderOperator, deferrable=False, poll_interval=0.2,
    max_poll_interval=0.5,
)  # fmt: skip
