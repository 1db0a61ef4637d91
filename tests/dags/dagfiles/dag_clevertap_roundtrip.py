"""CleverTap → Clearout → CleverTap round trips for tests/dags/test_clevertap_roundtrip_dag.py.

``clevertap_roundtrip``: extract the profiles to verify, verify them with a Clearout bulk list, load the
verdicts back. ``clevertap_roundtrip_dry_run``: the same with a dry-run load. ``clevertap_load_only``:
load a result file given as ``params.result_path``. Failures are appended to
``$CLEAROUT_PROVIDER_DATA_DIR/failures.jsonl`` so a test can show the message a user would see.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator
from clearout_provider.operators.clevertap import (
    CleverTapExtractProfilesOperator,
    CleverTapLoadVerificationOperator,
)

#: Every profile that has an email (the export covers profiles without one too when the query is empty).
SEGMENT: dict[str, Any] = {}


def record_failure(context: Any) -> None:
    error = context.get("exception")
    entry = {"task_id": context["ti"].task_id, "type": type(error).__name__, "message": str(error)}
    with (Path(os.environ["CLEAROUT_PROVIDER_DATA_DIR"]) / "failures.jsonl").open("a") as out:
        out.write(json.dumps(entry) + "\n")


def roundtrip_dag(dag_id: str, *, dry_run: bool) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        extract = CleverTapExtractProfilesOperator(
            task_id="extract", query=SEGMENT, batch_size=97, on_failure_callback=record_failure
        )
        verify = ClearoutBulkVerifyOperator(
            task_id="verify",
            source="{{ ti.xcom_pull(task_ids='extract')['path'] }}",
            deferrable=False,
            poll_interval=0.2,
            max_poll_interval=0.5,
            on_failure_callback=record_failure,
        )
        load = CleverTapLoadVerificationOperator(
            task_id="load",
            result_path="{{ ti.xcom_pull(task_ids='verify')['result_path'] }}",
            dry_run=dry_run,
            max_concurrency=4,
            on_failure_callback=record_failure,
        )
        extract >> verify >> load
    return dag


roundtrip = roundtrip_dag("clevertap_roundtrip", dry_run=False)
roundtrip_dry_run = roundtrip_dag("clevertap_roundtrip_dry_run", dry_run=True)

with DAG(
    "clevertap_load_only",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"result_path": ""},
) as load_only:
    CleverTapLoadVerificationOperator(
        task_id="load", result_path="{{ params.result_path }}", on_failure_callback=record_failure
    )
