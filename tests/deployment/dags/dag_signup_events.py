"""Sign-up DAGs for tests/deployment/test_signup_events_stack.py: each scheduled on its own sign-up asset.

The test names its channels in ``SIGNUP_TEST_CHANNELS`` (a JSON object ``{dag_id: channel}``, unique
per test run so that parallel runs on one Redis never see each other's messages) and a folder in
``SIGNUP_TEST_OUTPUT``. Each run's task writes what :func:`extract_signups` found, and when it finished,
to ``<output>/<dag_id>/<run id>.json`` (written to a temporary name, then renamed: a reader never sees
half a file).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from clearout_provider.signup_events import extract_signups, signup_asset

CHANNELS: dict[str, str] = json.loads(os.environ.get("SIGNUP_TEST_CHANNELS", "{}"))
OUTPUT = Path(os.environ.get("SIGNUP_TEST_OUTPUT", "/nonexistent"))


def signup_dag(dag_id: str, channel: str) -> DAG:
    asset = signup_asset(channel=channel)
    with DAG(dag_id, schedule=[asset], start_date=datetime(2026, 1, 1), catchup=False) as dag:

        @task
        def record(triggering_asset_events: Any = None, run_id: str | None = None) -> int:
            batch = extract_signups(triggering_asset_events, asset)
            events = sum(len(group) for group in triggering_asset_events.values())
            folder = OUTPUT / dag_id
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{run_id}.json.partial"
            partial.write_text(
                json.dumps(
                    {
                        "events": events,
                        "signups": [signup.as_dict() for signup in batch.signups],
                        "rejected": [list(rejection) for rejection in batch.rejected],
                        "duplicates": batch.duplicates,
                        "done_at": time.time(),
                    }
                )
            )
            partial.rename(folder / f"{run_id}.json")
            return len(batch.signups)

        record()
    return dag


for _dag_id, _channel in CHANNELS.items():
    globals()[_dag_id] = signup_dag(_dag_id, _channel)
