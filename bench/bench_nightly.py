"""Benchmark: the nightly list-cleaning DAG over 1,000,000 CleverTap contacts, end to end, two nights.

Night 1 verifies the whole segment (no full sweep has run yet: ``selection`` auto exports it whole).
Then 1 % of the exported profiles get a new email over CleverTap's API, the app's way: the profile
upload that also deletes "Clearout Verified At" (``--signal reset``, the default: those profiles are
never verified again, found by the delta's first part), or the upload plus an "Email Changed" event
(``--signal event``: night 2 runs with ``email_change_event`` set, one more export part). Night 2 is a
delta night, which asks CleverTap only for what can be due. Judged (issue 10), each against the same
run's own first night or a machine-independent bound:

* night 2's export requests <= 3 % of night 1's (the extract's count, witnessed by the sandbox's);
* night 2 end to end <= 25 % of night 1's;
* night 2 verifies exactly the changed profiles and pays at most one credit each, and its load sends at
  most ceil(changed / 1000) upload requests;
* every task of both nights peaks at <= 1 GB RSS.

The sandbox holds N seeded profiles (fast bulk lists, no latency) and the DAG runs exactly as the demo
runs it: ``airflow dags test clevertap_nightly_list_cleaning`` in a child process, on a fresh SQLite
Airflow home. ``dags test`` runs every task in that one process, one after the other, so:

* **time per task** is read from the metadata DB afterwards (the task instances' start and end; a
  deferred task's trigger runs inline and counts), next to the wall-clock window between the
  "[DAG TEST] starting task_id=..." lines the run prints;
* **peak RSS per task** is the process's high-water mark (VmHWM) over the task's window: it is reset
  to the current RSS (``/proc/<pid>/clear_refs``, "5") when a task starts and read when the next
  starts. After each task a benchmark-only listener (``task_processes/release_between_tasks.py``)
  hands the memory it freed back to the OS, as the task's own process would by exiting; memory an
  earlier task still references counts in a later task's peak, so the figures are upper bounds. The
  RSS at the task's start is printed beside them. Child processes, if any, are
  polled with psutil and added.

    .venv/bin/python bench/bench_nightly.py [--contacts 1000000] [--bulk-rate 500000] [--root DIR]
                                            [--changed-share 0.01] [--signal reset|event]
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

import psutil
import pyarrow.parquet as pq
from _util import judge  # (and sys.path and AIRFLOW_HOME for a checkout)

from clearout_provider.demo import DAG_ID, airflow_environment, repo_dags, run_airflow, sandbox_connections
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

TARGET_PEAK_BYTES = 1 << 30
TARGET_REQUEST_SHARE = 0.03
TARGET_TIME_SHARE = 0.25
EMAIL_CHANGED = "Email Changed"
MB = 1 << 20
#: The plugin that makes the one ``dags test`` process hand memory back between tasks, as separate task
#: processes would (see release_between_tasks.py).
TASK_PROCESSES = Path(__file__).resolve().parent / "task_processes"
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


def run_nightly(env: dict[str, str], root: Path, name: str, conf: dict[str, object] | None = None) -> Run:
    """Run the DAG once in a child ``airflow dags test``, following its tasks' time and memory."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    started = time.monotonic()
    proc = subprocess.Popen(
        [airflow, "dags", "test", DAG_ID, *(["--conf", json.dumps(conf)] if conf else [])],
        env={**env, "AIRFLOW__CORE__PLUGINS_FOLDER": str(TASK_PROCESSES)},
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


def change_emails(server: SandboxProcess, extracted: Path, count: int, signal: str) -> int:
    """Give ``count`` of the exported profiles (evenly spread) a new, unique email, over CleverTap's API,
    the app's way: with ``signal`` "reset" the same upload deletes "Clearout Verified At"; with "event"
    the app raises the "Email Changed" event afterwards."""
    os.environ.update(sandbox_connections(server))
    from clearout_provider.hooks.clevertap import CleverTapHook

    object_ids = pq.read_table(extracted, columns=["objectId"]).column("objectId").to_pylist()
    chosen = object_ids[:: max(1, len(object_ids) // max(1, count))][:count]
    reset = {"Clearout Verified At": {"$delete": 1}} if signal == "reset" else {}
    report = CleverTapHook().upload_profiles(
        {"objectId": object_id, "profileData": {"Email": f"moved.{n}@newco{n % 97}.com", **reset}}
        for n, object_id in enumerate(chosen)
    )
    if not report.ok:
        sys.exit(f"changing emails failed: {report.rejections[:3]}")
    if signal == "event":
        server.raise_clevertap_events(EMAIL_CHANGED, [{"objectId": o} for o in chosen])
    return len(chosen)


def export_requests(stats: dict[str, int]) -> int:
    """Export requests the sandbox served: cursor starts and pages."""
    return int(stats.get("export_cursors", 0)) + int(stats.get("export_pages", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--bulk-rate", type=float, default=500_000, help="addresses per second per bulk list")
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument(
        "--changed-share", type=float, default=0.01, help="share of --contacts whose email changes"
    )
    parser.add_argument(
        "--signal",
        choices=("reset", "event"),
        default="reset",
        help="how the app signals a changed email: reset the verification in the same upload (no extra "
        "export part) or raise an event (one more part)",
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
        first_extract = xcom_of(db, "extract_delta") if first.ok else {}
        first_requests = export_requests(server.clevertap_stats())
        extracted = Path(str(first_extract.get("path", "")).removeprefix("file://"))
        to_change = round(args.contacts * args.changed_share)
        changed = change_emails(server, extracted, to_change, args.signal) if first.ok else 0
        credits_before, ct_before = (
            int(server.clearout_stats()["credits_available"]),
            server.clevertap_stats(),
        )
        conf = {"email_change_event": EMAIL_CHANGED} if args.signal == "event" else {}
        second = run_nightly(env, root, "changed", conf)
        credits_spent = credits_before - int(server.clearout_stats()["credits_available"])
        ct_after = server.clevertap_stats()
        second_extract = xcom_of(db, "extract_delta") if second.ok else {}
        sandbox_peak = _status_bytes(server.pid, "VmHWM") if server.pid else 0

    print(
        f"nightly DAG over {args.contacts:,} CleverTap contacts, bulk rate {args.bulk_rate:,.0f}/s, latency 0"
    )
    print_tasks(first)
    print(f"sandbox process peak RSS (not a task): {sandbox_peak / MB:.0f} MB")
    print(
        f"night 1 ({first_extract.get('selection')} selection): {first.wall:,.0f} s, "
        f"{first_extract.get('exported', 0):,} exported in {first_requests:,} export requests; "
        f"run {'succeeded' if first.ok else 'FAILED'} (exit {first.code}), "
        f"output in {root / 'dags-test-first.log'}"
    )
    print()
    print_tasks(second)
    second_requests = export_requests(ct_after) - export_requests(ct_before)
    print(
        f"night 2 ({second_extract.get('selection')} selection) after {changed:,} profiles "
        f"({args.changed_share:.0%}) changed their email (signal: {args.signal}): {second.wall:,.0f} s, "
        f"{second_extract.get('exported', 0):,} exported in {second_requests} export requests "
        f"(parts {second_extract.get('by_part')}); run {'succeeded' if second.ok else 'FAILED'} "
        f"(exit {second.code}), output in {root / 'dags-test-changed.log'}"
    )
    to_verify = int(second_extract.get("to_verify", -1))
    upload_calls = ct_after.get("saving_upload_calls", 0) - ct_before.get("saving_upload_calls", 0)
    max_uploads = math.ceil(changed / 1000)
    worst = max(first.worst_peak, second.worst_peak)
    ok = first.ok and second.ok and second_extract.get("selection") == "delta"
    ok &= judge(
        f"largest task peak RSS, nightly over {args.contacts:,}",
        "<= 1 (of 1 GiB)",
        f"{worst / MB:,.0f} MB (night 1 {first.worst_peak / MB:,.0f}, night 2 {second.worst_peak / MB:,.0f})",
        worst / TARGET_PEAK_BYTES,
        worst <= TARGET_PEAK_BYTES,
    )
    request_share = second_requests / max(1, first_requests)
    ok &= judge(
        f"{args.changed_share:.0%}-changed night: export requests vs a full night's",
        f"<= {TARGET_REQUEST_SHARE}",
        f"{second_requests} vs {first_requests:,} (client counted {second_extract.get('export_requests')})",
        request_share,
        request_share <= TARGET_REQUEST_SHARE,
    )
    time_share = second.wall / max(1e-9, first.wall)
    ok &= judge(
        f"{args.changed_share:.0%}-changed night: end to end vs a full night's",
        f"<= {TARGET_TIME_SHARE}",
        f"{second.wall:,.0f} s vs {first.wall:,.0f} s",
        time_share,
        time_share <= TARGET_TIME_SHARE,
    )
    ok &= judge(
        f"{args.changed_share:.0%}-changed night: verified and paid vs changed",
        "= 1 verified, <= 1 paid",
        f"{to_verify:,} to verify, {credits_spent:,} credits, {changed:,} changed",
        to_verify / max(1, changed),
        to_verify == changed and 0 < credits_spent <= changed,
    )
    ok &= judge(
        f"{args.changed_share:.0%}-changed night: CleverTap upload requests vs ceil(changed / 1000)",
        "<= 1",
        f"{upload_calls} vs {max_uploads}",
        upload_calls / max(1, max_uploads),
        0 < upload_calls <= max_uploads,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
