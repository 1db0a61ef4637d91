"""Shared fixtures: live sandbox servers over real loopback HTTP.

``sandbox`` is one server for the whole session with default settings (tests that change its state,
e.g. spend credits, should use ``sandbox_factory``). ``sandbox_factory(SandboxSettings(...))`` starts a
dedicated server and stops it after the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Airflow reads its configuration when first imported: point it at a throwaway home before any test
# module imports airflow, so a developer's ~/airflow is never touched and every run starts clean.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="clearout-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# Sandbox lists finish in about a second: poll them every half second, not every 30 s.
os.environ.setdefault("AIRFLOW__CLEAROUT__BULK_POLL_INTERVAL", "0.5")
# The shipped DAGs retry failed tasks; a test that expects a failure sees it at once (tests of retries
# set these themselves before they load a DAG).
os.environ.setdefault("AIRFLOW__CLEAROUT__TASK_RETRIES", "0")
os.environ.setdefault("AIRFLOW__CLEAROUT__TASK_RETRY_DELAY", "1")
# dag.test() only runs DAGs it finds in a bundle: the shipped dags/ and the tests' own small DAG files.
os.environ.setdefault(
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
    json.dumps(
        [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path)},
            }
            for name, path in (("dags", REPO / "dags"), ("test-dags", REPO / "tests" / "dags" / "dagfiles"))
        ]
    ),
)

from collections.abc import Callable, Iterator

import pytest

from clearout_provider.sandbox import SandboxProcess, SandboxSettings


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The throwaway SQLite metadata DB (under AIRFLOW_HOME, set above), migrated once per session."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run(
        [airflow, "db", "migrate"], check=False, capture_output=True, text=True, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with SandboxProcess(SandboxSettings(), log_path=log) as server:
        yield server


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., SandboxProcess]]:
    started: list[SandboxProcess] = []

    def start(settings: SandboxSettings | None = None) -> SandboxProcess:
        server = SandboxProcess(
            settings or SandboxSettings(), log_path=tmp_path / f"sandbox{len(started)}.log"
        )
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def verdict_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test starts with an empty verdict ledger of its own (the ledger outlives runs by design, so a
    shared one would let one test's verdicts make another's verifications free)."""
    folder = tmp_path / "verdict-ledger"
    monkeypatch.setenv("CLEAROUT_PROVIDER_LEDGER_DIR", str(folder))
    return folder
