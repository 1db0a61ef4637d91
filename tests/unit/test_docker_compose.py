"""The docker-compose stack cannot run here (no Docker engine), so its wiring is checked statically.

The same topology runs for real, without Docker, in tests/deployment/.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from clearout_provider.sandbox.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def _expand(value: str) -> str:
    """Apply compose's ${VAR:-default} substitution with the defaults (what `docker compose up` sees)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_official_celery_layout_plus_sandbox(compose: dict) -> None:
    assert set(compose["services"]) == AIRFLOW_SERVICES | {"postgres", "redis", "sandbox"}
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["image"] == "airflow-provider-clearout:local", name
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        for dependency in service.get("depends_on", {}):
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"


def test_commands_match_components(compose: dict) -> None:
    services = compose["services"]
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"] == "celery worker"
    assert "airflow db migrate" in services["airflow-init"]["command"][-1]


def test_database_and_broker_point_at_their_services(compose: dict) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    db = urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres = compose["services"]["postgres"]["environment"]
    assert db.hostname == "postgres"
    assert (db.username, db.password, db.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    api = urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver"
    assert f"{api.port}:{api.port}" in compose["services"]["airflow-apiserver"]["ports"]


def test_connections_reach_the_sandbox_with_its_credentials(compose: dict) -> None:
    env = compose["services"]["airflow-worker"]["environment"]
    sandbox = compose["services"]["sandbox"]
    args = build_parser().parse_args(sandbox["command"])
    clearout = json.loads(_expand(env["AIRFLOW_CONN_CLEAROUT_DEFAULT"]))
    clevertap = json.loads(_expand(env["AIRFLOW_CONN_CLEVERTAP_DEFAULT"]))
    for conn, prefix in ((clearout, "/clearout/v2"), (clevertap, "/clevertap")):
        url = urlparse(conn["host"])
        assert (url.hostname, url.port, url.path) == ("sandbox", args.port, prefix)
    assert clearout["password"] == args.clearout_token
    assert (clevertap["login"], clevertap["password"]) == (args.clevertap_account_id, args.clevertap_passcode)
    assert args.host == "0.0.0.0", "the sandbox must listen beyond its container's loopback"


def test_shared_data_volume_for_files_between_tasks(compose: dict) -> None:
    for name in ("airflow-worker", "airflow-triggerer", "airflow-scheduler"):
        service = compose["services"][name]
        data_dir = service["environment"]["CLEAROUT_PROVIDER_DATA_DIR"]
        assert f"clearout-data:{data_dir}" in service["volumes"], name
    assert "clearout-data" in compose["volumes"]
    dags = [v for v in compose["services"]["airflow-dag-processor"]["volumes"] if v.startswith("./dags:")]
    assert dags == ["./dags:/opt/airflow/dags"]
    assert (ROOT / "dags").is_dir()


def test_bulk_list_pool_counts_deferred_tasks(compose: dict) -> None:
    init = compose["services"]["airflow-init"]["command"][-1]
    assert re.search(r"airflow pools set clearout_bulk_lists 3 .*--include-deferred", init)


def test_image_pins_the_same_airflow_as_the_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"FROM apache/airflow:(\d+\.\d+\.\d+)", dockerfile).group(1)
    pinned = re.search(r'"apache-airflow==(\d+\.\d+\.\d+)"', dockerfile).group(1)
    assert base == pinned
    requirement = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("apache-airflow>")
    )
    low, high = re.match(r"apache-airflow>=([\d.]+),<([\d.]+)", requirement).groups()

    def as_tuple(version: str) -> tuple[int, ...]:
        return tuple(int(x) for x in version.split("."))

    assert as_tuple(low) <= as_tuple(base) < as_tuple(high)
