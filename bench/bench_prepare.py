"""Benchmark: contact preparation (normalise + dedupe + syntax check + upload/ROWS files).

Target (issue 3): >= 250,000 rows/s on the 2-core reference machine for 1,000,000 rows. Also prints the
ratio to a plain ``pandas.read_csv`` of the same file, measured in the same run, so the figure can be
judged on other hardware. Exits non-zero when the target is missed.

    .venv/bin/python bench/bench_prepare.py [--rows N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _util import generate_contacts

TARGET_ROWS_PER_S = 250_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import pandas as pd

    from clearout_provider.contacts import prepare_contacts

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        source = Path(tmp) / "contacts.csv"
        generate_contacts(source, args.rows)
        size_mb = source.stat().st_size / 1e6

        started = time.perf_counter()
        pd.read_csv(source, dtype=str, keep_default_na=False)
        read_csv_s = time.perf_counter() - started

        started = time.perf_counter()
        prepared = prepare_contacts(source, workdir=Path(tmp) / "work", max_rows=args.rows)
        prepare_s = time.perf_counter() - started

    counts = prepared.counts
    rate = args.rows / prepare_s
    print(f"input: {args.rows:,} rows, {size_mb:.1f} MB CSV")
    print(f"counts: {counts}")
    print(f"pandas.read_csv(dtype=str): {read_csv_s:.2f} s ({args.rows / read_csv_s:,.0f} rows/s)")
    print(f"prepare_contacts:           {prepare_s:.2f} s ({rate:,.0f} rows/s)")
    print(f"prepare / read_csv time ratio: {prepare_s / read_csv_s:.2f}")
    ok = rate >= TARGET_ROWS_PER_S
    print(f"target >= {TARGET_ROWS_PER_S:,} rows/s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
