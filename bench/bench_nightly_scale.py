"""Benchmark: the nightly DAG's first night at 1,000,000 and at 5,000,000 contacts — memory flat, time linear.

Target (issue 10): every task of the 5M night peaks at <= 1 GB RSS (as at 1M: each task streams), and
time(5M) / time(1M) <= 5.5, both nights measured in this run on the same machine (a linear pipeline gives
5.0; the ceiling leaves room for a busy machine, not for a quadratic step). Each night runs as
:mod:`bench_nightly` runs it — ``airflow dags test`` in a child process against a sandbox seeded with that
many profiles, per-task VmHWM — on a fresh Airflow home of its own.

    .venv/bin/python bench/bench_nightly_scale.py [--small 1000000] [--large 5000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _util import judge
from bench_nightly import MB, TARGET_PEAK_BYTES, Run, print_tasks, run_nightly

from clearout_provider.demo import airflow_environment, repo_dags, run_airflow
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

TARGET_TIME_RATIO = 5.5


def first_night(contacts: int, bulk_rate: float, root: Path) -> Run:
    """Night 1 over ``contacts`` seeded profiles, in its own sandbox and Airflow home under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    settings = SandboxSettings(
        seed_contacts=contacts, bulk_rate=bulk_rate, credits=2 * contacts, latency_ms=0
    )
    with SandboxProcess(settings, log_path=root / "sandbox.log") as server:
        env = airflow_environment(root, repo_dags(), server)
        run_airflow("db", "migrate", env=env, log=root / "migrate.log")
        run = run_nightly(env, root, "first")
    print(f"\nnight 1 over {contacts:,} contacts: {run.wall:,.0f} s, {'succeeded' if run.ok else 'FAILED'}")
    print_tasks(run)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=5_000_000)
    parser.add_argument("--bulk-rate", type=float, default=500_000, help="addresses per second per bulk list")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="clearout-bench-scale-"))
    small = first_night(args.small, args.bulk_rate, root / "small")
    large = first_night(args.large, args.bulk_rate, root / "large")
    ok = small.ok and large.ok
    ok &= judge(
        f"largest task peak RSS, nightly over {args.large:,}",
        "<= 1 (of 1 GiB)",
        f"{large.worst_peak / MB:,.0f} MB ({args.small:,}: {small.worst_peak / MB:,.0f} MB)",
        large.worst_peak / TARGET_PEAK_BYTES,
        large.worst_peak <= TARGET_PEAK_BYTES,
    )
    ratio = large.wall / max(1e-9, small.wall)
    ok &= judge(
        f"nightly time, {args.large:,} vs {args.small:,} contacts",
        f"<= {TARGET_TIME_RATIO}",
        f"{large.wall:,.0f} s vs {small.wall:,.0f} s",
        ratio,
        ratio <= TARGET_TIME_RATIO,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
