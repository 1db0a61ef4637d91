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
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

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


def folder_name(part: str) -> str:
    """A dag id, run id or task name as a folder name: run ids contain ":" and "+", and folder names must
    stay portable across filesystems and object stores (the UI finds a run's folder with it too)."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", part)


def task_folder(context: Mapping[str, Any], workdir: str | None = None) -> ObjectStoragePath:
    """The folder of the running task instance, created if missing."""
    ti = context["ti"]
    name = ti.task_id if getattr(ti, "map_index", -1) in (-1, None) else f"{ti.task_id}__{ti.map_index}"
    folder = base_folder(workdir) / folder_name(ti.dag_id) / folder_name(ti.run_id) / folder_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _local_path(path: ObjectStoragePath | Path) -> Path | None:
    """The local file behind ``path``, or None on an object store."""
    if isinstance(path, Path):
        return path
    return Path(path.path) if path.protocol in ("", "file", "local") else None


@contextmanager
def scratch_dir(folder: ObjectStoragePath | Path) -> Iterator[Path]:
    """A local folder for the files a hook streams to or from while one try works on them (an upload's
    local copy, a downloaded result): ``folder`` itself on local disk, where they stay next to the task's
    other files; on an object store a fresh temporary folder, removed when the block ends.

    Removed because nothing there may outlive the block: another task or try runs on another worker, so
    what it needs goes to ``folder`` (the store), and a worker's disk must not collect the addresses of
    every night's lists.
    """
    local = _local_path(folder)
    if local is not None:
        yield local
        return
    scratch = Path(tempfile.mkdtemp(prefix="clearout-provider-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def staged_file(target: ObjectStoragePath | Path) -> Iterator[Path]:
    """A local path to write ``target`` through: ``target`` itself on local disk; on an object store a
    scratch file, copied up when the block ends without error (and removed either way).

    For writers that need a real local file — the hooks stream exports and downloads into one, pyarrow
    reads it back by seeking — while task folders may live on any fsspec store. A failed block uploads
    nothing, so the store never holds half a file.
    """
    local = _local_path(target)
    if local is not None:
        yield local
        return
    with scratch_dir(target) as scratch:  # a temporary folder, since ``target`` is not local
        staged = scratch / target.name
        yield staged
        with staged.open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def read_json(path: ObjectStoragePath | Path) -> dict[str, Any] | None:
    """A small JSON state file, or None when it does not exist yet.

    A torn or empty file (a crash mid-write by an older version, a full disk, a hand edit) is treated as
    absent, with a WARNING naming it: the state only saves work (it remembers an upload), so starting
    over is safe, whereas failing every retry on a JSONDecodeError is not.
    """
    if not path.exists():
        return None
    with path.open("rb") as handle:
        data = handle.read()
    try:
        payload = json.loads(data)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        reason = "empty" if not data.strip() else f"not valid JSON ({error})"
        log.warning("State file %s is %s; treating it as absent", path, reason)
        return None
    if not isinstance(payload, dict):
        kind = type(payload).__name__
        log.warning("State file %s holds a JSON %s, not an object; treating it as absent", path, kind)
        return None
    return payload


def write_json(path: ObjectStoragePath | Path, payload: Mapping[str, Any]) -> None:
    """Write a small JSON state file atomically: readers see the old file or the new one, never a torn one.

    On local disk the bytes go to a temporary file in the same folder, which is then renamed over the
    target (atomic on POSIX and Windows); on an object store a single put is atomic already.
    """
    data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
    local = _local_path(path)
    if local is None:
        with path.open("wb") as handle:
            handle.write(data)
        return
    temporary = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, local)
    finally:
        temporary.unlink(missing_ok=True)
