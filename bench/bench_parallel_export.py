"""Benchmark: one CleverTap segment exported as several cursors at once vs one cursor, at page latency.

Target (issue 10): at 300 ms per export page (the sandbox's ``clevertap_export_page_ms``: CleverTap builds
each page server-side), 4 partitions (date ranges of "Signup Date", ``clevertap.selection.by_date_ranges``)
export at least 3x the single cursor's rate, measured in the same run against the same sandbox, with
0 profiles twice and 0 missing (checked against the single cursor's export of the whole store, which
the sandbox's own profile count witnesses), and never more cursors in flight than the sandbox's export
limit (set to the partitions here; CleverTap's own, per the fact sheet, is about 3). The ceiling — the
page size over the page latency, per cursor — is printed beside each rate.

Pages hold 1000 profiles: the sandbox builds each page on one event loop, and at 5000 its own CPU (not
the latency being measured) would bound four concurrent cursors on a 2-core machine.

    .venv/bin/python bench/bench_parallel_export.py [--profiles N] [--page-ms 300] [--partitions 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _util import judge

TARGET_SPEEDUP = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--page-ms", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from clearout_provider.clevertap.selection import Part, by_date_ranges
    from clearout_provider.hooks.clevertap import CleverTapHook
    from clearout_provider.sandbox import SandboxProcess, SandboxSettings

    settings = SandboxSettings(
        seed_contacts=args.profiles,
        clevertap_export_page_ms=args.page_ms,
        clevertap_export_max_concurrency=args.partitions,
    )
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp, SandboxProcess(settings) as server:
        os.environ["AIRFLOW_CONN_CLEVERTAP_DEFAULT"] = json.dumps(
            {
                "conn_type": "clevertap",
                "login": settings.clevertap_account_id,
                "password": settings.clevertap_passcode,
                "host": f"{server.url}/clevertap",
            }
        )
        hook = CleverTapHook(export_concurrency=args.partitions)
        started = time.perf_counter()
        single = hook.export_profiles({}, Path(tmp) / "single.parquet", batch_size=args.batch_size)
        single_s = time.perf_counter() - started

        # Seeded sign-up dates lie 400 to 1900 days back: equal ranges hold about equal shares.
        now = datetime.now(UTC)
        parts = by_date_ranges(
            [Part("segment", {})],
            "Signup Date",
            start=now - timedelta(days=1900),
            end=now - timedelta(days=400),
            count=args.partitions,
        )
        before = server.clevertap_stats()
        started = time.perf_counter()
        merged = hook.export_partitions(
            [p.query for p in parts], Path(tmp) / "merged.parquet", batch_size=args.batch_size
        )
        parallel_s = time.perf_counter() - started
        stats = server.clevertap_stats()
        everyone = set(
            pq.read_table(Path(tmp) / "single.parquet", columns=["objectId"])["objectId"].to_pylist()
        )
        exported = pq.read_table(Path(tmp) / "merged.parquet", columns=["objectId"])["objectId"].to_pylist()

    ceiling = args.batch_size / (args.page_ms / 1000)
    single_rate, parallel_rate = single.count / single_s, merged.count / parallel_s
    print(f"{args.profiles:,} profiles, pages of {args.batch_size} at {args.page_ms} ms")
    print(
        f"single cursor: {single_s:.1f} s, {single_rate:,.0f} profiles/s "
        f"({single_rate / ceiling:.0%} of {ceiling:,.0f})"
    )
    print(
        f"{len(parts)} parts ({args.partitions} at a time): {parallel_s:.1f} s, "
        f"{parallel_rate:,.0f} profiles/s "
        f"({parallel_rate / (ceiling * args.partitions):.0%} of {ceiling * args.partitions:,.0f}); "
        f"rows per part {merged.part_counts}"
    )
    duplicates = len(exported) - len(set(exported)) + merged.duplicates
    missing = len(everyone - set(exported))
    in_flight = stats["export_max_concurrent"]
    refused = stats.get("export_too_many_requests", 0) - before.get("export_too_many_requests", 0)
    speedup = parallel_rate / single_rate
    ok = judge(
        f"parallel export speed-up, {args.partitions} partitions at {args.page_ms} ms/page",
        f">= {TARGET_SPEEDUP}",
        f"single {single_s:.1f} s, parallel {parallel_s:.1f} s for {merged.count:,} profiles",
        speedup,
        speedup >= TARGET_SPEEDUP,
    )
    ok &= judge(
        "parallel export: profiles twice + missing vs the sandbox's store",
        "0",
        f"{duplicates} twice, {missing} missing of {len(everyone):,}; {in_flight} cursors in flight at most "
        f"(limit {args.partitions}), {refused} refused",
        float(duplicates + missing + refused),
        duplicates == missing == refused == 0
        and single.count == args.profiles
        and in_flight <= args.partitions,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
