"""Fixtures for running DAGs in-process with ``dag.test()`` against live sandboxes.

``airflow_db`` (tests/conftest.py) migrates the throwaway SQLite metadata DB once per session. DAGs
under test live in ``dagfiles/`` (a bundle of their own, see tests/conftest.py): ``dag.test()`` only
runs DAGs it can find in a bundle. ``clearout_connection(server)``, ``mailso_connection(server)`` and
``clevertap_connection(server)`` point ``clearout_default`` / ``mailso_default`` / ``clevertap_default`` at
a sandbox through
the ``AIRFLOW_CONN_*`` variable, the way users configure it and the way the triggerer resolves it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clearout_provider.sandbox import SandboxProcess

DAG_FILES = Path(__file__).parent / "dagfiles"


def load_dag(file_stem: str, dag_id: str | None = None) -> Any:
    """Import ``tests/dags/dagfiles/<file_stem>.py`` and return its DAG (the only one, or ``dag_id``)."""
    from airflow.sdk import DAG

    spec = importlib.util.spec_from_file_location(f"dagfiles_{file_stem}", DAG_FILES / f"{file_stem}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dags = {d.dag_id: d for d in vars(module).values() if isinstance(d, DAG)}
    return dags[dag_id] if dag_id else next(iter(dags.values()))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``CLEAROUT_PROVIDER_DATA_DIR`` (task folders, ledger, the dagfiles' failures.jsonl)."""
    folder = tmp_path / "clearout_data"
    folder.mkdir()
    monkeypatch.setenv("CLEAROUT_PROVIDER_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def clearout_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[[SandboxProcess], str]:
    """Point ``clearout_default`` at ``server``; returns the conn id."""

    def point(server: SandboxProcess, conn_id: str = "clearout_default") -> str:
        conn = {
            "conn_type": "clearout",
            "host": server.clearout_url,
            "password": server.settings.clearout_token,
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return point


@pytest.fixture
def mailso_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Point ``mailso_default`` at ``server``'s Mail.so emulator (``extra`` added); returns the conn id."""

    def point(server: SandboxProcess, conn_id: str = "mailso_default", **extra: Any) -> str:
        conn = {
            "conn_type": "mailso",
            "host": server.mailso_url,
            "password": server.settings.mailso_api_key,
            "extra": {"rpm": 6000, **extra},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return point


@pytest.fixture
def clevertap_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[[SandboxProcess], str]:
    """Point ``clevertap_default`` at ``server``'s CleverTap emulator; returns the conn id."""

    def point(server: SandboxProcess, conn_id: str = "clevertap_default") -> str:
        conn = {
            "conn_type": "clevertap",
            "host": f"{server.url}/clevertap",
            "login": server.settings.clevertap_account_id,
            "password": server.settings.clevertap_passcode,
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return point
