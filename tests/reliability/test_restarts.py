"""Things dying mid-run: the Clearout/CleverTap service restarted, the worker running the run killed.

The sandbox keeps its state folder across a restart (lists, credits, profiles), as the real services
keep theirs. Judged like every scenario (``judge``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from world import CEILING, Reference, World, judge, task_state


def running_list_processed(w: World) -> int:
    lists = w.clearout()["lists"].values()
    return max((entry["processed"] for entry in lists if entry["status"] == "running"), default=0)


def test_sandbox_killed_and_restarted_while_the_list_runs(
    world: Callable[..., World], reference: Reference
) -> None:
    w = world(bulk_rate=30.0)  # a ~12 s list
    w.during(lambda: running_list_processed(w) > 60, lambda: w.server.restart(kill=True), "restart mid-list")

    night = w.night()

    assert night.ok, night.states
    assert w.clearout()["bulk_uploads"] == 1  # the list outlived the restart and was waited for, not re-sent
    w.settle()
    judge(w, reference, "Clearout killed + restarted mid-list")


def test_sandbox_killed_and_restarted_while_the_load_writes(
    world: Callable[..., World], reference: Reference
) -> None:
    w = world()
    load = task_state("load_back")
    w.during(lambda: load() == "running", lambda: w.server.restart(kill=True), "restart mid-load")

    w.night()  # the load may fail this try or ride it out; either way the retry or the next night finishes

    w.settle()
    assert w.clearout()["bulk_uploads"] == 1
    judge(w, reference, "CleverTap killed + restarted mid-load")


def test_worker_killed_after_the_upload_then_the_run_cleared(
    world: Callable[..., World], reference: Reference
) -> None:
    w = world(stuck_lists=True)  # the list waits, so the kill lands after the upload and before a result
    logical_date = datetime.now(UTC).replace(microsecond=0)
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("night_process.py")), logical_date.isoformat()],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + CEILING
        while w.clearout()["bulk_uploads"] == 0:
            assert worker.poll() is None, "the run ended before it uploaded its list"
            assert time.monotonic() < deadline, "no list was uploaded"
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(60)
    w.faults(stuck_lists=False)

    night = w.night(logical_date=logical_date)  # the same run, cleared and run again

    assert night.ok, night.states
    assert w.clearout()["bulk_uploads"] == 1  # resumed the paid-for list, did not upload it again
    w.settle()
    judge(w, reference, "worker SIGKILLed after the upload, run cleared")
