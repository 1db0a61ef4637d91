"""Run every benchmark and write one table of judged figures to bench/results.md (``make bench``).

Each ``bench_*.py`` runs in its own process (its memory figures are its own) and appends what it judged
to a JSON-lines file (:func:`_util.judge`); the table lists figure, target, measured and ratio, with
the machine's load beside the date, since absolute times on a shared 2-core machine move with it.
Exits non-zero when any figure misses its target or a benchmark fails to run.

    .venv/bin/python bench/run_all.py [bench_prepare bench_join ...]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _util import RESULTS_ENV

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = [HERE / f"{n}.py" for n in names] or sorted(HERE.glob("bench_*.py"))
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    broken: list[str] = []
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", prefix="bench-results-") as results:
        env = {**os.environ, RESULTS_ENV: results.name}
        for script in scripts:
            print(f"\n=== {script.name}", flush=True)
            begun = time.perf_counter()
            done = subprocess.run([sys.executable, str(script)], env=env, check=False)
            print(f"=== {script.name}: exit {done.returncode} after {time.perf_counter() - begun:.0f} s")
            if done.returncode:
                broken.append(script.stem)
        rows = [json.loads(line) for line in results.read().splitlines() if line.strip()]
    failed = [r for r in rows if not r["ok"]]
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` on {started:%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} cores, "
        f"load average {load:.2f} at the start). Each figure passes or fails on its ratio to a baseline "
        "measured in the same run (or to a bound that does not depend on the machine's speed); the "
        "absolute figures are for information.",
        "",
        "| Benchmark | Figure | Target | Measured | Ratio | |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['bench']} | {r['figure']} | {r['target']} | {r['measured']} | {r['ratio']:.3g} | "
            f"{'✓' if r['ok'] else '✗'} |"
            for r in rows
        ),
        "",
        f"{len(rows) - len(failed)} of {len(rows)} figures met their target."
        + (f" Benchmarks that did not finish: {', '.join(broken)}." if broken else ""),
        "",
    ]
    (HERE / "results.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
