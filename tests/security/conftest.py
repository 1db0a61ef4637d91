"""Fixtures for the secrets tests: the throwaway Airflow metadata DB the ``dag.test()`` runs write to.

The same session fixture as tests/dags/conftest.py (conftest files only apply to their own folder):
``airflow db migrate`` on the SQLite home tests/conftest.py points AIRFLOW_HOME at. Migrating twice
when both folders run in one session is harmless: the second run finds nothing to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run(
        [airflow, "db", "migrate"], check=False, capture_output=True, text=True, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
