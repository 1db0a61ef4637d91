"""The docker-compose stack cannot run here (no Docker engine), so its wiring is checked statically.

The same topology runs for real, without Docker, in tests/deployment/test_distributed_nightly.py; what
the stack's containers do to the shared folders is replayed for real in test_docker_compose_permissions.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
from airflow_stack import AirflowStack
from compose_file import (
    AIRFLOW_HOME,
    DOCKERFILE,
    ROOT,
    depends_on,
    load,
    mount_holding,
    mounts,
    run_as,
    service_writes,
)

from clearout_provider.operators.bulk_list import BULK_LIST_POOL, MAX_CONCURRENT_BULK_LISTS
from clearout_provider.sandbox.cli import build_parser

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
    "airflow-cli",
    "flower",
}
#: Services started only with `--profile <name>`, as in the official file.
PROFILES = {"airflow-cli": ["debug"], "flower": ["flower"]}
#: Variables every process of the distributed topology must share (tests/deployment/airflow_stack.py
#: sets them for each component); the compose file must give each service the same set.
SHARED_BY_EVERY_COMPONENT = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)
#: What the distributed test adds on top: the data folder and the connections (clearout_provider.demo).
SHARED_FOR_THE_DAGS = (
    "CLEAROUT_PROVIDER_DATA_DIR",
    "AIRFLOW_CONN_CLEAROUT_DEFAULT",
    "AIRFLOW_CONN_CLEVERTAP_DEFAULT",
    "AIRFLOW_CONN_MAILSO_DEFAULT",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


def init_script(compose: dict) -> str:
    init = compose["services"]["airflow-init"]
    assert init["command"][0] == "-c", "init runs one bash script"
    return init["command"][-1]


def test_official_celery_layout_plus_sandbox(compose: dict) -> None:
    assert set(compose["services"]) == AIRFLOW_SERVICES | {"postgres", "redis", "sandbox"}
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["image"] == "airflow-provider-clearout:local", name
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert service.get("profiles") == PROFILES.get(name), name
    assert compose["services"]["sandbox"]["image"] == "airflow-provider-clearout:local"


def test_image_project_dir_and_uid_come_from_the_environment() -> None:
    compose = load(
        {"AIRFLOW_IMAGE_NAME": "registry/clearout:1", "AIRFLOW_PROJ_DIR": "/srv/af", "AIRFLOW_UID": "1000"}
    )
    for name, service in compose["services"].items():
        if name in AIRFLOW_SERVICES | {"sandbox"}:
            assert service["image"] == "registry/clearout:1", name
            expected_user = (0, 0) if name == "airflow-init" else (1000, 0)
            assert run_as(service) == expected_user, name
            for mount in mounts(service):
                assert mount.is_named_volume or mount.source.startswith("/srv/af/"), (name, mount)
    assert '"1000:0"' in init_script(compose), "init hands the folders to the uid the services run as"


def test_commands_match_components(compose: dict) -> None:
    services = compose["services"]
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["flower"]["command"] == "celery flower"
    assert re.search(r"^airflow db migrate$", init_script(compose), re.MULTILINE)


def test_no_entrypoint_variable_where_the_entrypoint_is_bypassed(compose: dict) -> None:
    """The image's /entrypoint acts on _AIRFLOW_DB_MIGRATE, _AIRFLOW_WWW_USER_CREATE and
    _PIP_ADDITIONAL_REQUIREMENTS; a service with its own entrypoint never sees them acted on."""
    for name, service in compose["services"].items():
        if "entrypoint" not in service:
            continue
        env = service.get("environment", {})
        for variable in ("_AIRFLOW_DB_MIGRATE", "_AIRFLOW_DB_UPGRADE", "_AIRFLOW_WWW_USER_CREATE"):
            assert variable not in env, f"{name} bypasses the entrypoint: {variable} would do nothing"
        assert not env.get("_PIP_ADDITIONAL_REQUIREMENTS"), name
    passthrough = load({"_PIP_ADDITIONAL_REQUIREMENTS": "rich"})["services"]
    assert passthrough["airflow-worker"]["environment"]["_PIP_ADDITIONAL_REQUIREMENTS"] == "rich"


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


def test_every_component_shares_what_the_distributed_test_proves_it_needs(
    compose: dict, tmp_path: Path
) -> None:
    stack = AirflowStack(
        home=tmp_path,
        dags_folder=tmp_path,
        executor="CeleryExecutor",
        sql_alchemy_conn="postgresql+psycopg2://u@h/db",
        celery_broker_url="redis://h/1",
    )
    assert set(SHARED_BY_EVERY_COMPONENT) <= set(stack.env()), "the distributed stack no longer sets these"
    common = {name: s["environment"] for name, s in compose["services"].items() if name in AIRFLOW_SERVICES}
    for name, env in common.items():
        for variable in SHARED_BY_EVERY_COMPONENT + SHARED_FOR_THE_DAGS:
            assert variable in env, (name, variable)
            assert env[variable] == common["airflow-worker"][variable], (name, variable)
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API__SECRET_KEY"]


def test_connections_reach_the_sandbox_with_its_credentials(compose: dict) -> None:
    env = compose["services"]["airflow-worker"]["environment"]
    sandbox = compose["services"]["sandbox"]
    args = build_parser().parse_args(sandbox["command"])
    clearout = json.loads(env["AIRFLOW_CONN_CLEAROUT_DEFAULT"])
    clevertap = json.loads(env["AIRFLOW_CONN_CLEVERTAP_DEFAULT"])
    mailso = json.loads(env["AIRFLOW_CONN_MAILSO_DEFAULT"])
    for conn, prefix in ((clearout, "/clearout/v2"), (clevertap, "/clevertap"), (mailso, "/mailso/v1")):
        url = urlparse(conn["host"])
        assert (url.hostname, url.port, url.path) == ("sandbox", args.port, prefix)
    assert clearout["password"] == args.clearout_token
    assert (clevertap["login"], clevertap["password"]) == (args.clevertap_account_id, args.clevertap_passcode)
    assert mailso["password"] == args.mailso_api_key
    assert args.host == "0.0.0.0", "the sandbox must listen beyond its container's loopback"


def test_shared_data_volume_for_files_between_tasks(compose: dict) -> None:
    for name in ("airflow-worker", "airflow-triggerer", "airflow-scheduler"):
        service = compose["services"][name]
        data_dir = service["environment"]["CLEAROUT_PROVIDER_DATA_DIR"]
        mount = mount_holding(service, data_dir)
        assert mount is not None and mount.source == "clearout-data", name
    assert "clearout-data" in compose["volumes"]
    dags = [m for m in mounts(compose["services"]["airflow-dag-processor"]) if m.target.endswith("/dags")]
    assert [(m.source, m.target) for m in dags] == [("./dags", f"{AIRFLOW_HOME}/dags")]
    assert (ROOT / "dags").is_dir()


def test_every_write_lands_on_a_mount(compose: dict) -> None:
    """What a service writes must be on a volume: shared with the services that read it, kept when the
    container is recreated, and prepared by init (nothing in the container's own layer)."""
    for name, service in compose["services"].items():
        for path in service_writes(name, service):
            assert mount_holding(service, path) is not None, f"{name} writes {path} outside its mounts"


def test_init_prepares_every_shared_folder(compose: dict) -> None:
    """init can only hand over what it mounts: every folder any service mounts under /opt/airflow."""
    init = set(mounts(compose["services"]["airflow-init"]))
    for name, service in compose["services"].items():
        for mount in mounts(service):
            if mount.target.startswith(AIRFLOW_HOME + "/"):
                assert mount in init, f"{name} mounts {mount}, which init never prepares"
    script = init_script(compose)
    mkdir, chown = (re.search(rf"^{verb} .*$", script, re.MULTILINE) for verb in ("mkdir", "chown"))
    assert mkdir and chown and mkdir.start() < chown.start(), "init creates the folders, then chowns them"


def test_nothing_touches_the_shared_folders_before_init_has_finished(compose: dict) -> None:
    services = compose["services"]
    prepared = set(mounts(services["airflow-init"]))
    for name, service in services.items():
        if name != "airflow-init" and prepared & set(mounts(service)):
            assert depends_on(service).get("airflow-init") == "service_completed_successfully", name

    def waits_for(name: str, seen: tuple[str, ...] = ()) -> set[str]:
        assert name not in seen, f"dependency cycle: {' -> '.join((*seen, name))}"
        found = set(depends_on(services[name]))
        for dependency in list(found):
            found |= waits_for(dependency, (*seen, name))
        return found

    for name in services:
        waits_for(name)
    assert waits_for("airflow-init") == {"postgres", "redis"}, "init waits for nothing that waits for it"


def test_bulk_list_pool_is_created_as_configured(compose: dict) -> None:
    created = re.search(
        r"^airflow pools set (\S+) (\d+) .*--include-deferred$", init_script(compose), re.MULTILINE
    )
    assert created, "init creates the pool, counting deferred tasks (a waiting list holds a Clearout slot)"
    name, slots = created.group(1), int(created.group(2))
    assert (name, slots) == (BULK_LIST_POOL, MAX_CONCURRENT_BULK_LISTS)
    for service_name, service in compose["services"].items():
        if service_name in AIRFLOW_SERVICES:
            assert service["environment"]["AIRFLOW__CLEAROUT__BULK_LIST_POOL"] == name, service_name


def test_login_is_documented_as_airflow_does_it(compose: dict) -> None:
    """Simple auth manager: [core] simple_auth_manager_users is user:role; the password lives in the
    passwords file (generated by the api-server unless init was given one)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManagerRole

    api = compose["services"]["airflow-apiserver"]
    env = api["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".SimpleAuthManager")
    roles = {role.name.lower() for role in SimpleAuthManagerRole}
    users = [entry.split(":") for entry in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]
    assert users == [["admin", "admin"]], "one user, admin, with the admin role"
    assert all(role in roles for _, role in users)
    passwords = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    mount = mount_holding(api, passwords)
    assert mount is not None and not mount.is_named_volume, "the password file is readable on the host"
    on_host = Path(mount.source) / Path(passwords).relative_to(mount.target)
    readme = (ROOT / "README.md").read_text()
    header = (ROOT / "docker-compose.yaml").read_text().split("\nx-airflow-common")[0]
    for doc in (readme, header):
        assert str(on_host).removeprefix("./") in doc
        assert "admin / admin" not in doc and "admin/admin" not in doc
    assert "_AIRFLOW_WWW_USER_PASSWORD" in readme
    init_env = compose["services"]["airflow-init"]["environment"]
    assert "_AIRFLOW_WWW_USER_PASSWORD" in init_env
    for name, service in compose["services"].items():
        if name != "airflow-init":
            assert "_AIRFLOW_WWW_USER_PASSWORD" not in service.get("environment", {}), name


def test_image_pins_the_same_airflow_as_the_package() -> None:
    dockerfile = DOCKERFILE.read_text()
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


def test_build_context_keeps_local_secrets_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for local in (".env", "config", "logs", ".venv", ".git"):
        assert local in ignored, local
