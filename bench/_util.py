"""Shared by the benchmarks: a realistic contacts generator and peak-memory readings."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

# Make `clearout_provider` importable when the scripts run from a checkout without an install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
# Airflow (imported through ObjectStoragePath) reads its config on import: keep it away from ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "clearout-bench-airflow"))

_PROVIDERS = [
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
    "gmx.de",
    "web.de",
    "yahoo.co.in",
    "protonmail.com",
]
_FIRST = [
    "anna",
    "ben",
    "chloe",
    "david",
    "emma",
    "felix",
    "grace",
    "harry",
    "isla",
    "jack",
    "karen",
    "liam",
    "maria",
    "noah",
    "olivia",
    "peter",
    "quinn",
    "rosa",
    "sam",
    "tara",
    "umar",
    "vera",
]
_LAST = [
    "smith",
    "jones",
    "garcia",
    "muller",
    "kumar",
    "chen",
    "silva",
    "novak",
    "kowalski",
    "tanaka",
    "brown",
    "oneil",
    "dupont",
    "rossi",
    "jansen",
    "larsen",
    "ivanova",
    "nguyen",
    "kim",
    "ali",
]
_IDN = ["müller@bücher.de", "jose@café.fr", "info@münchen.de", "yuki@例え.jp", "anna@straße.de"]
_MALFORMED = [
    "anna..smith@gmail.com",
    "ben.gmail.com",
    "chloe@",
    "@yahoo.com",
    "david smith@outlook.com",
    "emma@gmail.com.",
    "felix@@web.de",
    ".grace@aol.com",
    "harry@[127.0.0.1]",
    "isla@localhost",
    '"quoted name"@gmail.com',
    "jack@exa_mple.com",
    "karen@-bad.com",
    "liam@x.123",
]


def generate_contacts(path: Path, rows: int, *, seed: int = 7) -> None:
    """Write a CleverTap-like export: ids with leading zeros, phones, extra columns, messy emails.

    About 5 % of rows repeat an earlier address (in another letter case, sometimes padded with spaces),
    about 1 % are malformed, 0.5 % use IDN domains, 0.2 % are blank, 60 % of addresses sit at big mailbox
    providers and the rest at ~20,000 company domains.
    """
    rng = np.random.default_rng(seed)
    first = np.array(_FIRST)[rng.integers(0, len(_FIRST), rows)]
    last = np.array(_LAST)[rng.integers(0, len(_LAST), rows)]
    companies = np.array(
        [
            f"company{i}.{tld}"
            for i, tld in zip(range(20_000), ["com", "io", "co.uk", "de"] * 5000, strict=True)
        ]
    )
    domains = np.where(
        rng.random(rows) < 0.6,
        np.array(_PROVIDERS)[rng.integers(0, len(_PROVIDERS), rows)],
        companies[rng.integers(0, len(companies), rows)],
    )
    numbers = rng.integers(0, 1_000_000, rows)
    emails = [f"{f}.{s}{n}@{d}" for f, s, n, d in zip(first, last, numbers, domains, strict=True)]
    kind = rng.random(rows)
    earlier = rng.integers(0, np.maximum(np.arange(rows), 1))
    for i in np.flatnonzero(kind < 0.05)[1:]:  # duplicates of an earlier row, case and spacing varied
        emails[i] = f" {emails[earlier[i]].upper()}" if i % 2 else emails[earlier[i]].title()
    for i in np.flatnonzero((kind >= 0.05) & (kind < 0.06)):
        emails[i] = _MALFORMED[i % len(_MALFORMED)]
    for i in np.flatnonzero((kind >= 0.06) & (kind < 0.065)):
        emails[i] = _IDN[i % len(_IDN)].replace("@", f"{i}@")
    for i in np.flatnonzero((kind >= 0.065) & (kind < 0.067)):
        emails[i] = " " * (i % 2)  # profiles without an address
    table = pa.table(
        {
            "customer_id": [f"{i:09d}" for i in range(rows)],
            "first_name": first.tolist(),
            "last_name": last.tolist(),
            "Email": emails,
            "phone": [f"+44 07{n:09d}" for n in rng.integers(0, 10**9, rows)],
            "country": np.array(["GB", "DE", "IN", "US", "FR", "JP"])[rng.integers(0, 6, rows)].tolist(),
            "signup_date": [
                f"2024-{m:02d}-{d:02d}"
                for m, d in zip(rng.integers(1, 13, rows), rng.integers(1, 29, rows), strict=True)
            ],
            "plan": np.array(["free", "pro", "team"])[rng.integers(0, 3, rows)].tolist(),
        }
    )
    pacsv.write_csv(table, path)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: File each benchmark appends its judged figures to (JSON lines); `make bench` sets it and turns the
#: lines into bench/results.md. Unset when a benchmark runs on its own: the figures are only printed.
RESULTS_ENV = "CLEAROUT_BENCH_RESULTS"


def judge(figure: str, target: str, measured: str, ratio: float, ok: bool) -> bool:
    """Print one judged figure and record it for bench/results.md; returns ``ok``.

    ``ratio`` is what passes or fails (measured against a baseline taken in the same run, or against a
    bound that does not depend on the machine's speed: a count, a memory ceiling); ``measured`` shows the
    absolute figures behind it, for information only.
    """
    import json

    print(f"[{'PASS' if ok else 'FAIL'}] {figure}: {measured}; ratio {ratio:.3g} (target {target})")
    path = os.environ.get(RESULTS_ENV)
    if path:
        row = {"bench": Path(sys.argv[0]).stem, "figure": figure, "target": target, "measured": measured}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({**row, "ratio": ratio, "ok": ok}) + "\n")
    return ok
