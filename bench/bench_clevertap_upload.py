"""Benchmark: uploading verification properties to the CleverTap sandbox with 15 concurrent requests.

Target (issue 4): with the sandbox at 200 ms latency per call, at least 80 % of the ceiling
15 x 1000 records / 0.2 s = 75,000 records/s — or of the local CPU floor when that is lower. The floor
is measured in the same run: the same upload against a sandbox with no latency, where only CPU
(hook + sandbox, on this machine) limits the rate. The two kinds of run alternate (``--rounds``) and
the best of each counts, so that background load on a shared machine does not favour either. Both
figures and the ratio are printed; the sandbox's own counters witness that every record arrived and
that no request went over the limit. Exits non-zero when the target is missed.

    .venv/bin/python bench/bench_clevertap_upload.py [--records N] [--latency-ms 200] [--concurrency 15]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _util import judge  # (and sys.path and AIRFLOW_HOME for a checkout)

SEEDED = 100_000


def records(count: int) -> list[dict[str, Any]]:
    """A realistic "Append" load: five Clearout properties on existing profiles."""
    verified = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = ("valid", "invalid", "catch_all", "unknown")
    return [
        {
            "identity": str(10_000_000 + n % SEEDED),
            "profileData": {
                "Clearout Verification Status": statuses[n % 4],
                "Clearout Safe To Send": "yes" if n % 4 == 0 else "no",
                "Clearout Sub Status Code": 200 if n % 4 == 0 else 406,
                "Clearout Disposable": n % 50 == 0,
                "Clearout Verified At": verified + timedelta(seconds=n),
            },
        }
        for n in range(count)
    ]


def run(latency_ms: int, rows: list[dict[str, Any]], concurrency: int) -> tuple[float, dict[str, int], Any]:
    """Upload ``rows`` to a fresh sandbox with ``latency_ms``; returns (records/s, sandbox stats, report)."""
    from clearout_provider.hooks.clevertap import CleverTapHook
    from clearout_provider.sandbox import SandboxProcess, SandboxSettings

    settings = SandboxSettings(
        seed_contacts=SEEDED, latency_ms=latency_ms, clevertap_max_concurrency=concurrency
    )
    with SandboxProcess(settings) as server:
        conn = {
            "conn_type": "clevertap",
            "login": settings.clevertap_account_id,
            "password": settings.clevertap_passcode,
            "host": f"{server.url}/clevertap",
        }
        os.environ["AIRFLOW_CONN_CLEVERTAP_DEFAULT"] = json.dumps(conn)
        hook = CleverTapHook(max_concurrency=concurrency)
        started = time.perf_counter()
        report = hook.upload_profiles(rows)
        seconds = time.perf_counter() - started
        stats = server.clevertap_stats()
    return len(rows) / seconds, stats, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=450_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rows = records(args.records)
    ceiling = args.concurrency * 1000 / (args.latency_ms / 1000)
    floors: list[float] = []
    rates: list[float] = []
    complete = True
    for _ in range(args.rounds):  # alternate, so background load on a shared machine hits both alike
        for latency, figures in ((0, floors), (args.latency_ms, rates)):
            rate, stats, report = run(latency, rows, args.concurrency)
            figures.append(rate)
            complete &= report.ok and report.processed == stats["records_processed"] == args.records
            complete &= stats.get("too_many_requests", 0) == 0 and stats["max_concurrent"] <= args.concurrency
    floor, rate = max(floors), max(rates)
    reference = min(ceiling, floor)
    ratio = rate / reference
    print(
        f"{args.records:,} records in batches of 1000, {args.concurrency} concurrent requests, "
        f"best of {args.rounds}"
    )
    runs = ", ".join(f"{f:,.0f}" for f in floors)
    print(f"CPU floor (latency 0):          {floor:>9,.0f} records/s  (runs: {runs})")
    print(f"ceiling ({args.concurrency} x 1000 / {args.latency_ms} ms):    {ceiling:>9,.0f} records/s")
    print(
        f"measured at {args.latency_ms} ms latency:     {rate:>9,.0f} records/s  (runs: "
        f"{', '.join(f'{r:,.0f}' for r in rates)})"
    )
    print(
        f"ratio: {ratio:.0%} of min(ceiling, floor) = {reference:,.0f} records/s (target 80 %) -> "
        f"{'met' if ratio >= 0.8 else 'MISSED'}; {rate / ceiling:.0%} of the ceiling"
    )
    print(
        f"sandbox witness: every run processed all {args.records:,} records, never more than "
        f"{args.concurrency} requests in flight, no 429: {complete}"
    )
    ok = judge(
        f"upload rate at {args.latency_ms} ms latency vs min(ceiling, CPU floor)",
        ">= 0.8",
        f"{rate:,.0f} records/s; floor {floor:,.0f}, ceiling {ceiling:,.0f}; "
        f"sandbox witness complete: {complete}",
        ratio,
        ratio >= 0.8 and complete,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
