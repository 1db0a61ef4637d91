"""The main job, as ``make demo`` runs it: ``python -m clearout_provider.demo`` in a fresh process.

The demo starts its own sandbox, migrates its own SQLite Airflow home under ``--root`` and runs the
nightly DAG with the real ``airflow dags test`` CLI. The suite's AIRFLOW_* settings (tests/conftest.py)
are in this process's environment on purpose: the demo must ignore them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Ceiling of the whole demo (db migrate + `airflow dags test`, ~20 s idle): a hang guard, not a speed
#: test, so it holds on a busy 2-core machine where each Airflow command starts several times slower.
DEMO_TIMEOUT = 900


@pytest.mark.timeout(DEMO_TIMEOUT + 60)  # pytest's guard stays behind the subprocess's own
def test_demo_prints_a_report_whose_accounting_adds_up(tmp_path: Path) -> None:
    root = tmp_path / "demo"

    done = subprocess.run(
        [sys.executable, "-m", "clearout_provider.demo", "--contacts", "2000", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )

    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "# Clearout verification report: clevertap_nightly_list_cleaning" in out
    accounting = re.search(r"^Accounting: (.*)$", out, re.MULTILINE)
    assert accounting and re.fullmatch(r"✓ all \d+ checks add up", accounting.group(1)), out[-2000:]
    assert "| ✗ |" not in out  # no failing equation in the printed table either
    exported = int(re.search(r"\| exported \| ([\d,]+) \|", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 1800 <= exported <= 2000  # the seeded profiles that have an email
    [report] = (root / "data" / "clevertap_nightly_list_cleaning").glob("*/report/report.html")
    assert "<svg" in report.read_text()
    assert (root / "airflow" / "airflow.db").exists()  # its own Airflow home, not the suite's
