"""Where a task keeps its files: one folder per task instance, on local disk or any fsspec store.

Contacts and results move between tasks as files (XCom carries only paths and counts). The base folder
is, in order: the operator's ``workdir`` argument, the ``CLEAROUT_PROVIDER_DATA_DIR`` environment
variable (the docker-compose stack points it at a volume shared by workers and the triggerer), or
``$AIRFLOW_HOME/clearout_data``. Below it, ``<dag_id>/<run_id>/<task_id>[__<map_index>]`` keeps runs
and mapped chunks apart, and is stable across retries of the same task instance — which is what lets a
retried task find the bulk list its earlier try uploaded (Airflow 3 clears a task's XComs when it
retries, so XCom alone cannot carry that memory).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from airflow.sdk import ObjectStoragePath

DATA_DIR_ENV = "CLEAROUT_PROVIDER_DATA_DIR"


def base_folder(workdir: str | None = None) -> ObjectStoragePath:
    """The root under which every task folder lives (see module docstring for the order)."""
    if workdir:
        root = workdir
    elif os.environ.get(DATA_DIR_ENV):
        root = os.environ[DATA_DIR_ENV]
    else:
        from airflow.configuration import AIRFLOW_HOME

        root = os.path.join(AIRFLOW_HOME, "clearout_data")
    if "://" not in root:
        root = "file://" + os.path.abspath(root)
    return ObjectStoragePath(root)


def _safe(part: str) -> str:
    """Run ids contain ':' and '+'; keep folder names portable across filesystems and object stores."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", part)


def task_folder(context: Mapping[str, Any], workdir: str | None = None) -> ObjectStoragePath:
    """The folder of the running task instance, created if missing."""
    ti = context["ti"]
    name = ti.task_id if getattr(ti, "map_index", -1) in (-1, None) else f"{ti.task_id}__{ti.map_index}"
    folder = base_folder(workdir) / _safe(ti.dag_id) / _safe(ti.run_id) / _safe(name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_json(path: ObjectStoragePath) -> dict[str, Any] | None:
    """A small JSON state file, or None when it does not exist yet."""
    if not path.exists():
        return None
    with path.open("r") as handle:
        return json.load(handle)


def write_json(path: ObjectStoragePath, payload: Mapping[str, Any]) -> None:
    """Write a small JSON state file (whole-file replace; these files are tiny)."""
    with path.open("w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
