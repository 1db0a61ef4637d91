"""Benchmark: the nightly list-cleaning DAG over 1,000,000 CleverTap contacts, end to end.

Targets (issue 5): the whole run in ≤ 10 minutes on this machine, every task's peak RSS ≤ 1 GB; then
"a nightly run where 1% of 1,000,000 profiles changed verifies only those 10,000 and sends ≤ 10 upload
batches": after the first run, 1% of the exported profiles get a new email (over HTTP, with
``CleverTapHook.upload_profiles``) and the DAG runs again; the second run must verify exactly those
profiles (``to_verify``, Clearout credits spent ≤ their number) and its load must send at most
ceil(changed / 1000) upload requests (the sandbox's ``saving_upload_calls`` counter).

The sandbox holds N seeded profiles (fast bulk lists, no latency) and the DAG runs exactly as the demo
runs it: ``airflow dags test clevertap_nightly_list_cleaning`` in a child process, on a fresh SQLite
Airflow home. ``dags test`` runs every task in that one process, one after the other, so:

* **time per task** is read from the metadata DB afterwards (the task instances' start and end; a
  deferred task's trigger runs inline and counts), next to the wall-clock window between the
  "[DAG TEST] starting task_id=..." lines the run prints;
* **peak RSS per task** is the process's high-water mark (VmHWM) over the task's window: it is reset
  to the current RSS (``/proc/<pid>/clear_refs``, "5") when a task starts and read when the next
  starts. Memory an earlier task left allocated counts in a later task's peak too, so the figures are
  upper bounds; the RSS at the task's start is printed beside them. Child processes, if any, are
  polled with psutil and added.

Prints the figures and the ratios to the targets; exits non-zero when a target is missed.

    .venv/bin/python bench/bench_nightly.py [--contacts 1000000] [--bulk-rate 500000] [--root DIR]
                                            [--changed-share 0.01]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import _util  # noqa: F401  (sys.path and AIRFLOW_HOME for a checkout)
import psutil
import pyarrow.parquet as pq

from clearout_provider.demo import DAG_ID, airflow_environment, repo_dags, run_airflow, sandbox_connections
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

TARGET_SECONDS = 600
TARGET_PEAK_BYTES = 1 << 30
MB = 1 << 20
STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")


@dataclass
class Window:
    """One task's stretch of the ``dags test`` process: wall time and memory."""

    task: str
    started: float
    rss_at_start: int
    ended: float = 0.0
    peak: int = 0


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class Meter:
    """Follows a ``dags test`` process: task windows from its output, VmHWM reset per window."""

    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        self.proc = proc
        self.log = log
        self.windows: list[Window] = []
        self.children_peak = 0
        self._lock = threading.Lock()

    def _close_window(self, now: float) -> None:
        if self.windows and not self.windows[-1].ended:
            window = self.windows[-1]
            window.ended = now
            window.peak = max(window.peak, _status_bytes(self.proc.pid, "VmHWM"))

    def read_output(self) -> None:
        """Runs in a thread: copy the output to the log, open a window at each task start."""
        assert self.proc.stdout is not None
        with self.log.open("w") as out:
            for line in self.proc.stdout:
                out.write(line)
                match = STARTING.search(line)
                if not match:
                    continue
                task, index = match.group(1), int(match.group(2))
                now = time.monotonic()
                with self._lock:
                    self._close_window(now)
                    Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
                    rss = _status_bytes(self.proc.pid, "VmRSS")
                    name = task if index < 0 else f"{task}[{index}]"
                    self.windows.append(Window(name, now, rss, peak=rss))

    def poll_children(self) -> None:
        """Runs in a thread: the RSS of any child process (none is expected), summed, at its peak."""
        parent = psutil.Process(self.proc.pid)
        while self.proc.poll() is None:
            try:
                total = sum(c.memory_info().rss for c in parent.children(recursive=True))
                self.children_peak = max(self.children_peak, total)
                with self._lock:  # VmHWM is lost when the process exits: keep the open window's figure
                    if self.windows and not self.windows[-1].ended:
                        self.windows[-1].peak = max(
                            self.windows[-1].peak, _status_bytes(self.proc.pid, "VmHWM")
                        )
            except (psutil.Error, OSError, KeyError):  # exiting: /proc/<pid>/status has no VmHWM left
                pass
            time.sleep(0.05)

    def finish(self) -> None:
        with self._lock:
            if self.windows and not self.windows[-1].ended:
                self.windows[-1].ended = time.monotonic()


def task_durations(db: Path) -> dict[str, tuple[float, str]]:
    """Task → (seconds from first start to end, state) from the metadata DB, for the latest run."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT task_id, map_index, start_date, end_date, state FROM task_instance WHERE dag_id = ? "
            "AND run_id = (SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (DAG_ID, DAG_ID),
        ).fetchall()
    out = {}
    for task_id, index, start, end, state in rows:
        name = task_id if index < 0 else f"{task_id}[{index}]"
        seconds = (
            (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            if start and end
            else 0.0
        )
        out[name] = (seconds, state)
    return out


@dataclass
class Run:
    """One ``airflow dags test`` of the nightly DAG, measured."""

    code: int
    wall: float
    meter: Meter
    durations: dict[str, tuple[float, str]]

    @property
    def ok(self) -> bool:
        return self.code == 0 and all(s in ("success", "skipped") for _, s in self.durations.values())

    @property
    def worst_peak(self) -> int:
        return max((w.peak for w in self.meter.windows), default=0) + self.meter.children_peak


def run_nightly(env: dict[str, str], root: Path, name: str) -> Run:
    """Run the DAG once in a child ``airflow dags test``, following its tasks' time and memory."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    started = time.monotonic()
    proc = subprocess.Popen(
        [airflow, "dags", "test", DAG_ID],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    meter = Meter(proc, root / f"dags-test-{name}.log")
    threads = [threading.Thread(target=f, daemon=True) for f in (meter.read_output, meter.poll_children)]
    for thread in threads:
        thread.start()
    code = proc.wait()
    wall = time.monotonic() - started
    for thread in threads:
        thread.join(10)
    meter.finish()
    return Run(code, wall, meter, task_durations(root / "airflow" / "airflow.db"))


def print_tasks(run: Run) -> None:
    print(
        f"{'task':<18} {'state':>8} {'DB s':>7} {'window s':>9} {'RSS start':>10} {'peak RSS':>9} "
        f"{'growth':>8} {'of 1 GB':>8}"
    )
    for w in run.meter.windows:
        seconds, state = run.durations.get(w.task, (0.0, "?"))
        print(
            f"{w.task:<18} {state:>8} {seconds:>7.1f} {w.ended - w.started:>9.1f} "
            f"{w.rss_at_start / MB:>8.0f}MB {w.peak / MB:>7.0f}MB {(w.peak - w.rss_at_start) / MB:>6.0f}MB "
            f"{w.peak / TARGET_PEAK_BYTES:>8.0%}"
        )
    skipped = sorted(t for t, (_, s) in run.durations.items() if s == "skipped")
    print(
        f"skipped: {', '.join(skipped) or 'none'}; "
        f"child processes' peak RSS: {run.meter.children_peak / MB:.0f} MB"
    )


def xcom_of(db: Path, task_id: str) -> dict[str, object]:
    """A task's return value in the latest run (``dags test`` keeps XComs in the metadata DB as JSON)."""
    with sqlite3.connect(db) as conn:
        (value,) = conn.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'return_value' AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (DAG_ID, task_id, DAG_ID),
        ).fetchone()
    while isinstance(value, str | bytes):  # a JSON column holding the serialised value
        value = json.loads(value)
    return value


def change_emails(server: SandboxProcess, extracted: Path, count: int) -> int:
    """Give ``count`` of the exported profiles (evenly spread) a new, unique email, over CleverTap's API."""
    os.environ.update(sandbox_connections(server))
    from clearout_provider.hooks.clevertap import CleverTapHook

    object_ids = pq.read_table(extracted, columns=["objectId"]).column("objectId").to_pylist()
    chosen = object_ids[:: max(1, len(object_ids) // max(1, count))][:count]
    report = CleverTapHook().upload_profiles(
        {"objectId": object_id, "profileData": {"Email": f"moved.{n}@newco{n % 97}.com"}}
        for n, object_id in enumerate(chosen)
    )
    if not report.ok:
        sys.exit(f"changing emails failed: {report.rejections[:3]}")
    return len(chosen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--bulk-rate", type=float, default=500_000, help="addresses per second per bulk list")
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument(
        "--changed-share", type=float, default=0.01, help="share of --contacts whose email changes"
    )
    args = parser.parse_args()

    root = (args.root or Path(tempfile.mkdtemp(prefix="clearout-bench-nightly-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    settings = SandboxSettings(
        seed_contacts=args.contacts, bulk_rate=args.bulk_rate, credits=2 * args.contacts, latency_ms=0
    )
    db = root / "airflow" / "airflow.db"
    with SandboxProcess(settings, log_path=root / "sandbox.log") as server:
        env = airflow_environment(root, repo_dags(), server)
        run_airflow("db", "migrate", env=env, log=root / "migrate.log")
        first = run_nightly(env, root, "first")
        extracted = Path(str(xcom_of(db, "extract_delta")["path"]).removeprefix("file://"))
        to_change = round(args.contacts * args.changed_share)
        changed = change_emails(server, extracted, to_change) if first.ok else 0
        credits_before, uploads_before = (
            int(server.clearout_stats()["credits_available"]),
            server.clevertap_stats(),
        )
        second = run_nightly(env, root, "changed")
        credits_spent = credits_before - int(server.clearout_stats()["credits_available"])
        uploads_after = server.clevertap_stats()
        to_verify = int(xcom_of(db, "extract_delta")["to_verify"]) if second.ok else -1
        sandbox_peak = _status_bytes(server.pid, "VmHWM") if server.pid else 0

    print(
        f"nightly DAG over {args.contacts:,} CleverTap contacts, bulk rate {args.bulk_rate:,.0f}/s, latency 0"
    )
    print_tasks(first)
    print(f"sandbox process peak RSS (not a task): {sandbox_peak / MB:.0f} MB")
    ok_time, ok_memory = first.wall <= TARGET_SECONDS, first.worst_peak <= TARGET_PEAK_BYTES
    print(
        f"end to end: {first.wall:,.0f} s = {first.wall / TARGET_SECONDS:.0%} of the 10-minute target -> "
        f"{'met' if ok_time else 'MISSED'}"
    )
    print(
        f"largest task peak RSS: {first.worst_peak / MB:,.0f} MB = "
        f"{first.worst_peak / TARGET_PEAK_BYTES:.0%} "
        f"of 1 GB -> {'met' if ok_memory else 'MISSED'}"
    )
    print(
        f"run {'succeeded' if first.ok else 'FAILED'} (exit {first.code}); "
        f"output in {root / 'dags-test-first.log'}"
    )

    upload_calls = uploads_after.get("saving_upload_calls", 0) - uploads_before.get("saving_upload_calls", 0)
    subscribe_calls = uploads_after.get("subscribe_calls", 0) - uploads_before.get("subscribe_calls", 0)
    max_uploads = math.ceil(changed / 1000)
    print()
    print(
        f"second run after {changed:,} profiles ({args.changed_share:.0%}) changed their email: "
        f"{second.wall:,.0f} s"
    )
    print_tasks(second)
    ok_delta = to_verify == changed and 0 < credits_spent <= changed
    ok_uploads = 0 < upload_calls <= max_uploads
    ok_changed = second.ok and second.worst_peak <= TARGET_PEAK_BYTES
    print(
        f"to_verify: {to_verify:,} of {changed:,} changed; Clearout credits spent: {credits_spent:,} -> "
        f"{'met' if ok_delta else 'MISSED'}"
    )
    print(
        f"CleverTap upload requests sent by the load: {upload_calls} (target <= {max_uploads}); "
        f"subscribe requests: {subscribe_calls} -> {'met' if ok_uploads else 'MISSED'}"
    )
    print(
        f"largest task peak RSS: {second.worst_peak / MB:,.0f} MB; run "
        f"{'succeeded' if second.ok else 'FAILED'} (exit {second.code}); "
        f"output in {root / 'dags-test-changed.log'}"
    )
    ok = ok_time and ok_memory and first.ok and ok_delta and ok_uploads and ok_changed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
