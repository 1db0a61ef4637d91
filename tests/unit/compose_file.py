"""The repository's docker-compose.yaml and Dockerfile as Docker reads them, for the tests that check them.

Docker does not run here, so the tests read the files the way ``docker compose`` does: YAML (with its
``<<`` merge keys), then ``${VAR}`` / ``${VAR:-default}`` / ``${VAR-default}`` substitution in every
string value from the caller's environment (``$$`` is a literal ``$``, left for the container's shell).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
#: Where the official image keeps AIRFLOW_HOME and every folder the stack mounts.
AIRFLOW_HOME = "/opt/airflow"
#: The uid the official image runs as (its ``airflow`` user, primary group 0).
IMAGE_UID = 50000

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\})")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's substitution: ``:-`` falls back when unset or empty, ``-`` only when unset."""

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name", "op", "default")
        current = env.get(name)
        if op == ":-":
            return current or default
        if op == "-":
            return default if current is None else current
        return current or ""

    return _VARIABLE.sub(value, text)


def _substitute(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_substitute(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(item, env) for key, item in node.items()}
    return node


def load(env: Mapping[str, str] | None = None, path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as ``docker compose config`` would resolve it with ``env`` (default: nothing set)."""
    return _substitute(yaml.safe_load(path.read_text()), env or {})


@dataclass(frozen=True)
class Mount:
    """One entry of a service's ``volumes``: a named volume or a host folder (bind mount)."""

    source: str
    target: str
    mode: str = "rw"

    @property
    def is_named_volume(self) -> bool:
        return not self.source.startswith((".", "/", "~"))

    @property
    def read_only(self) -> bool:
        return "ro" in self.mode.split(",")


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    return [Mount(*entry.split(":")[:3]) for entry in service.get("volumes", [])]


def mount_holding(service: Mapping[str, Any], path: str) -> Mount | None:
    """The mount ``path`` lives on in ``service``'s container, None if only in the container's own layer."""
    holding = [m for m in mounts(service) if path == m.target or path.startswith(m.target.rstrip("/") + "/")]
    return max(holding, key=lambda m: len(m.target), default=None)


def run_as(service: Mapping[str, Any]) -> tuple[int, int]:
    """The ``user: uid:gid`` a service runs as (the image's own user when it sets none)."""
    uid, _, gid = str(service.get("user", f"{IMAGE_UID}:0")).partition(":")
    return int(uid), int(gid or 0)


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Dependency -> condition (a bare list means ``service_started``)."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def dockerfile_runs(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """Each ``RUN`` instruction's shell command with the ``USER`` it runs as (the base image's: airflow)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    user, runs = "airflow", []
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "USER":
            user = rest.strip()
        elif instruction.upper() == "RUN":
            runs.append((user, rest.strip()))
    return runs


def sandbox_state_dir(service: Mapping[str, Any]) -> str:
    """The sandbox's ``--state-dir`` as its compose command gives it."""
    from clearout_provider.sandbox.cli import build_parser

    state_dir = build_parser().parse_args(service["command"]).state_dir
    assert state_dir, "the sandbox keeps its state (credits, lists, profiles) across restarts"
    return str(state_dir)


def service_writes(name: str, service: Mapping[str, Any]) -> list[str]:
    """The files a service writes in its container, where Airflow 3.3 and this provider put them.

    Logs go under ``[logging] base_log_folder`` (default ``$AIRFLOW_HOME/logs``): the task's log by the
    worker, the trigger's next to it by the triggerer, and the scheduler's and dag-processor's own. The
    worker keeps task files and the verdict ledger under ``CLEAROUT_PROVIDER_DATA_DIR``; the api-server
    (re)writes the simple auth manager's passwords file; the sandbox its state folder.
    """
    env = service.get("environment", {})
    logs = f"{AIRFLOW_HOME}/logs"
    task_logs = f"{logs}/dag_id=clevertap_nightly_list_cleaning/run_id=manual/task_id=verify_bulk"
    data = env.get("CLEAROUT_PROVIDER_DATA_DIR", f"{AIRFLOW_HOME}/clearout_data")
    passwords = env.get(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        f"{AIRFLOW_HOME}/simple_auth_manager_passwords.json.generated",
    )
    writes = {
        "airflow-apiserver": [passwords],
        "airflow-scheduler": [f"{logs}/scheduler/latest.log"],
        "airflow-dag-processor": [f"{logs}/dag_processor/latest.log"],
        "airflow-worker": [
            f"{task_logs}/attempt=1.log",
            f"{data}/clevertap_nightly_list_cleaning/manual/verify_bulk/clearout_list.json",
            f"{data}/ledger/verifier=clearout/segment-1-a.parquet",
        ],
        "airflow-triggerer": [f"{task_logs}/attempt=1.log.trigger.1.log"],
    }
    if name == "sandbox":
        return [f"{sandbox_state_dir(service)}/clevertap.sqlite3"]
    return writes.get(name, [])
