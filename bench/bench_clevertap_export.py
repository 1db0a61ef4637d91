"""Benchmark: exporting 1,000,000 CleverTap profiles from the sandbox to a file with CleverTapHook.

Targets (issue 4): requests == ceil(N / batch_size) + 1 (the cursor request) and peak RSS of the
exporting process under 500 MB. The export runs in a child process so its peak RSS (VmHWM) is its
own; the sandbox is a separate process with N seeded profiles. Exits non-zero when a target is missed.

    .venv/bin/python bench/bench_clevertap_export.py [--profiles N] [--batch-size B] [--format parquet|csv]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import judge, peak_rss_bytes

TARGET_PEAK_BYTES = 500 * 10**6


def child(dest: str, batch_size: int) -> None:
    """Runs in the measured process: import the hook, export, print the figures as JSON."""
    from clearout_provider.hooks.clevertap import CleverTapHook

    baseline = peak_rss_bytes()
    started = time.perf_counter()
    result = CleverTapHook().export_profiles({}, dest, batch_size=batch_size)
    figures = {
        "baseline_rss": baseline,
        "peak_rss": peak_rss_bytes(),
        "seconds": time.perf_counter() - started,
        "count": result.count,
        "pages": result.pages,
        "requests": result.requests,
    }
    print(json.dumps(figures))


def sandbox_peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--child", nargs=2, metavar=("DEST", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0

    from clearout_provider.sandbox import SandboxProcess, SandboxSettings

    settings = SandboxSettings(seed_contacts=args.profiles)
    with tempfile.TemporaryDirectory(prefix="bench-ct-export-") as tmp, SandboxProcess(settings) as server:
        dest = Path(tmp) / f"profiles.{args.format}"
        conn = {
            "conn_type": "clevertap",
            "login": settings.clevertap_account_id,
            "password": settings.clevertap_passcode,
            "host": f"{server.url}/clevertap",
        }
        env = {**os.environ, "AIRFLOW_CONN_CLEVERTAP_DEFAULT": json.dumps(conn)}
        command = [sys.executable, __file__, "--child", str(dest), str(args.batch_size)]
        completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if completed.returncode:
            print(completed.stderr[-3000:])
            return 1
        figures = json.loads(completed.stdout.strip().splitlines()[-1])
        stats = server.clevertap_stats()
        server_peak = sandbox_peak_rss(server._proc.pid) if server._proc else 0
        rows = _rows_in(dest)
        size = dest.stat().st_size

    expected_requests = math.ceil(args.profiles / args.batch_size) + 1
    requests_ok = figures["requests"] == expected_requests == stats["export_pages"] + stats["export_cursors"]
    peak_ok = figures["peak_rss"] < TARGET_PEAK_BYTES
    rows_ok = rows == figures["count"] == args.profiles
    rate = figures["count"] / figures["seconds"]
    print(
        f"exported {figures['count']:,} profiles in {figures['pages']:,} pages, {figures['seconds']:.1f} s "
        f"({rate:,.0f} profiles/s); {args.format} file {size / 1e6:.0f} MB with {rows:,} rows"
    )
    print(
        f"requests: {figures['requests']:,} (expected ceil({args.profiles:,}/{args.batch_size}) + 1 = "
        f"{expected_requests:,}; the sandbox counted {stats['export_cursors']} cursor + "
        f"{stats['export_pages']} pages)"
        f" -> {'met' if requests_ok else 'MISSED'}"
    )
    print(
        f"exporting process peak RSS {figures['peak_rss'] / 1e6:,.0f} MB (after imports "
        f"{figures['baseline_rss'] / 1e6:,.0f} MB); "
        f"{figures['peak_rss'] / TARGET_PEAK_BYTES:.0%} of the 500 MB "
        f"target -> {'met' if peak_ok else 'MISSED'}; sandbox peak RSS {server_peak / 1e6:,.0f} MB"
    )
    ok = judge(
        f"export requests, {args.profiles:,} profiles in pages of {args.batch_size}",
        "= 1 (of ceil(N / batch) + 1)",
        f"{figures['requests']:,} requests, sandbox counted "
        f"{stats['export_cursors'] + stats['export_pages']:,}, expected {expected_requests:,}",
        figures["requests"] / expected_requests,
        requests_ok and rows_ok,
    )
    ok &= judge(
        f"export peak RSS, {args.profiles:,} profiles ({args.format})",
        "<= 1 (of 500 MB)",
        f"{figures['peak_rss'] / 1e6:,.0f} MB ({rate:,.0f} profiles/s)",
        figures["peak_rss"] / TARGET_PEAK_BYTES,
        peak_ok,
    )
    return 0 if ok else 1


def _rows_in(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as handle:
        return sum(1 for _ in handle) - 1


if __name__ == "__main__":
    sys.exit(main())
