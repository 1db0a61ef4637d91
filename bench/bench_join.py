"""Benchmark: reading a Clearout bulk result and joining it back onto 1,000,000 input rows.

Target (issue 3): peak RSS under 1 GB (10^9 bytes). The step runs in a child process (as in
``execute_complete``: ``normalise_bulk_result`` then ``join_results``), once writing Parquet and once
CSV; the figures are the child's own VmHWM (reset by exec, unlike ``getrusage(RUSAGE_CHILDREN)``,
which keeps the size of the forked parent) and its baseline after imports, measured in this run. Exits
non-zero when the target is missed.

    .venv/bin/python bench/bench_join.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from _util import generate_contacts, judge, peak_rss_bytes

TARGET_PEAK_BYTES = 1_000_000_000  # 1 GB, decimal: the stricter reading
MISSING_SHARE = 0.005  # answers dropped from the result, as when a cancelled list comes back short


def write_clearout_result(upload: Path, result: Path, *, seed: int = 11) -> int:
    """A bulk result in Clearout's layout for the uploaded addresses (a few left out); returns rows."""
    from clearout_provider.clearout.statuses import BULK_RESULT_COLUMNS, STATUS_LABELS, SUB_STATUSES

    emails = pacsv.read_csv(upload).column("Email").combine_chunks()
    rng = np.random.default_rng(seed)
    emails = emails.filter(pa.array(rng.random(len(emails)) >= MISSING_SHARE))
    rows = len(emails)
    subs = list(SUB_STATUSES.values())
    pick = rng.integers(0, len(subs), rows)
    reasons = np.array([s.desc for s in subs] + ["A Reason Clearout Added Later"])
    pick[rng.random(rows) < 0.001] = len(subs)  # some reasons the sub-status table does not know
    yes_no = np.array(["Yes", "No"])
    columns = {
        "Email": emails,
        "Clearout Safe to Send": np.array(["Yes", "No", "Risky", "Unknown"])[rng.integers(0, 4, rows)],
        "Clearout Verification Status": np.array([STATUS_LABELS[s.status] for s in subs] + ["Unknown"])[pick],
        "Clearout Reason": reasons[pick],
        "Clearout Suggested Email": np.where(rng.random(rows) < 0.01, "someone@gmail.com", ""),
        "Clearout Bounce Type": np.array([s.bounce.value.capitalize() for s in subs] + [""])[pick],
        **{c: yes_no[rng.integers(0, 2, rows)] for c in BULK_RESULT_COLUMNS[5:9]},
        "Clearout Account": np.full(rows, "account"),
        "Clearout Domain": np.full(rows, "example.com"),
        "Clearout MX Record": np.full(rows, "mx.example.com"),
        "Clearout SMTP Provider": np.full(rows, "google"),
        "Clearout Verified At (UTC)": np.datetime_as_string(
            np.datetime64("2026-01-01T00:00:00.000")
            + rng.integers(0, 86_400_000, rows).astype("timedelta64[ms]"),
            unit="ms",
        ),
        "Clearout Time Taken (ms)": rng.integers(50, 5000, rows).astype(str),
        "Clearout AI Verdict": np.full(rows, "Valid address; safe to send."),
    }
    columns["Clearout Verified At (UTC)"] = np.char.add(columns["Clearout Verified At (UTC)"], "Z")
    pacsv.write_csv(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), result)
    return rows


def child(rows_path: str, result_csv: str, out_path: str) -> None:
    from clearout_provider.clearout.results import normalise_bulk_result
    from clearout_provider.results import join_results

    baseline = peak_rss_bytes()
    started = time.perf_counter()
    verdicts = normalise_bulk_result(result_csv)
    normalised = time.perf_counter()
    summary = join_results(rows_path, verdicts, out_path)
    finished = time.perf_counter()
    figures = {
        "baseline_rss": baseline,
        "peak_rss": peak_rss_bytes(),
        "normalise_s": normalised - started,
        "join_s": finished - normalised,
        "rows": summary.rows,
        "by_decided_by": summary.by_decided_by,
        "unrecognised_reasons": summary.unrecognised_reasons,
    }
    print(json.dumps(figures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("ROWS", "RESULT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    from clearout_provider.contacts import prepare_contacts

    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-join-") as tmp:
        source, result = Path(tmp) / "contacts.csv", Path(tmp) / "clearout-result.csv"
        generate_contacts(source, args.rows)
        prepared = prepare_contacts(source, workdir=Path(tmp) / "work", max_rows=args.rows)
        answered = write_clearout_result(prepared.upload_path, result)
        print(f"input: {args.rows:,} rows; {prepared.counts.to_verify:,} uploaded; {answered:,} answered")
        for suffix in (".parquet", ".csv"):
            out = Path(tmp) / f"result{suffix}"
            command = [sys.executable, __file__, "--child", str(prepared.rows_path), str(result), str(out)]
            completed = subprocess.run(command, capture_output=True, text=True, check=True)
            figures = json.loads(completed.stdout.strip().splitlines()[-1])
            peak = figures["peak_rss"]
            within = peak < TARGET_PEAK_BYTES and figures["rows"] == args.rows
            ok &= judge(
                f"result join peak RSS, {args.rows:,} rows ({suffix[1:]})",
                "<= 1 (of 1 GB)",
                f"{peak / 1e6:,.0f} MB, normalise {figures['normalise_s']:.1f} s "
                f"+ join {figures['join_s']:.1f} s",
                peak / TARGET_PEAK_BYTES,
                within,
            )
            print(
                f"{suffix[1:]:>7}: normalise {figures['normalise_s']:.2f} s + "
                f"join {figures['join_s']:.2f} s; "
                f"peak RSS {peak / 1e6:,.0f} MB (baseline after imports {figures['baseline_rss'] / 1e6:,.0f} "
                f"MB); {peak / TARGET_PEAK_BYTES:.0%} of the 1 GB target; rows out {figures['rows']:,}; "
                f"{out.stat().st_size / 1e6:.0f} MB"
            )
            print(
                f"         decided_by {figures['by_decided_by']}; "
                f"unrecognised {figures['unrecognised_reasons']}"
            )
    print(f"target peak RSS < 1 GB: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
