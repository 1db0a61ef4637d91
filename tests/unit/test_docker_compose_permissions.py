"""What ``docker compose up`` does to the shared folders, replayed for real in a temporary root, as root.

Docker does not run here, but whether the stack starts is decided by plain POSIX ownership, and that
replays exactly, in three steps:

1. The folders as Docker hands them to the containers. A bind mount's source (``./logs``, ``./config``,
   ...) root-owned 0755: Docker creates a missing one so, and an existing one belongs to whoever checked
   the repository out, not to ``AIRFLOW_UID``. A fresh named volume is a copy of the image's mount point:
   the Dockerfile's ``RUN`` lines that touch it, run as their ``USER`` (the base image's ``airflow``, uid
   50000 gid 0) in a copy of the image's ``/opt/airflow`` (50000:0, 0775); root-owned 0755 if the image
   has no such folder.
2. airflow-init's own script, run by bash as its compose user with ``/opt/airflow`` mapped into the
   temporary root. Only ``airflow`` is a stand-in (there is no database here): it does to the disk what
   the real CLI does before any command, with Airflow's own function (write the default airflow.cfg to
   ``AIRFLOW_CONFIG`` when there is none), and records its arguments.
3. Each service's writes (``compose_file.service_writes``) as the ``uid:gid`` compose runs it with, no
   other group, umask 022; the sandbox's for real: its app built from its compose command, which creates
   its state folder and files.

Needs root, to chown and to switch uid: without it the test skips, under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from compose_file import (
    AIRFLOW_HOME,
    IMAGE_UID,
    dockerfile_runs,
    load,
    mount_holding,
    mounts,
    run_as,
    service_writes,
)
from local_services import unavailable

from clearout_provider.operators.bulk_list import BULK_LIST_POOL, MAX_CONCURRENT_BULK_LISTS

#: Ceiling of one replayed step: init imports Airflow twice (the stand-in), ~5 s idle, far more when busy.
STEP_TIMEOUT = 300
DOCKER_CREATED = (0, 0, 0o755)
#: What a process of the stack does with each of its paths: create (parents too) or append, as the
#: api-server opens its passwords file; read what it only reads.
SERVICE_IO = """
import json, sys
from pathlib import Path
for action, name in json.loads(sys.argv[1]):
    path = Path(name)
    if action == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    else:
        path.read_bytes()
"""
SANDBOX_START = """
import site, sys
site.addsitedir(sys.argv.pop(1))  # this checkout's packages (the venv's own interpreter may be out of reach)
from clearout_provider.sandbox.app import create_app
from clearout_provider.sandbox.cli import build_parser, settings_from_args
create_app(settings_from_args(build_parser().parse_args(sys.argv[1:])))
"""
AIRFLOW_STAND_IN = """#!{python}
\"\"\"`airflow` for the replay: the CLI's first effect on the disk (airflow.__main__), then record argv.\"\"\"
import json, os, sys
from airflow.configuration import write_default_airflow_configuration_if_needed
write_default_airflow_configuration_if_needed()
with open(os.environ["AIRFLOW_STAND_IN_CALLS"], "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def _may_run(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid:gid`` (no other group) may execute ``path``: x on it and on every folder above it."""
    for part in (path, *path.parents):
        stat = part.stat()
        shift = 6 if stat.st_uid == uid else 3 if stat.st_gid == gid else 0
        if not stat.st_mode >> shift & 0o1:
            return False
    return True


def python_for(uid: int, gid: int) -> str:
    """A Python of this test's version that ``uid:gid`` may run (a venv's base may sit under /root)."""
    version = "python{}.{}".format(*sys.version_info[:2])
    candidates = [Path(sys.executable).resolve(), Path("/usr/local/bin", version), Path("/usr/bin", version)]
    for candidate in candidates:
        if candidate.exists() and _may_run(candidate, uid, gid):
            return str(candidate)
    unavailable(f"no {version} that uid {uid} may run (tried {', '.join(map(str, candidates))})")


class Replay:
    """A temporary root standing for ``/`` of every container (the mounts are what they share)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "container"
        self.image = base / "image"
        self.calls = base / "airflow-calls.jsonl"
        self.stand_in = base / "bin"
        self.stand_in.mkdir()
        (self.stand_in / "airflow").write_text(AIRFLOW_STAND_IN.format(python=sys.executable))
        (self.stand_in / "airflow").chmod(0o755)
        for top in (self.root, self.image):
            home = top / AIRFLOW_HOME.lstrip("/")
            home.mkdir(parents=True)
            os.chown(home, IMAGE_UID, 0)  # the official image's /opt/airflow: airflow:root, 0775
            home.chmod(0o775)

    def path(self, container_path: str, top: Path | None = None) -> Path:
        return (top or self.root) / container_path.lstrip("/")

    def rewrite(self, text: str, top: Path | None = None) -> str:
        return text.replace(AIRFLOW_HOME, str(self.path(AIRFLOW_HOME, top)))

    def run(self, argv: list[str], uid: int, gid: int, env: Mapping[str, str] | None = None) -> str:
        """Run as ``uid:gid`` (no other group, Docker's umask); fail with its output when it fails."""
        done = subprocess.run(
            argv,
            user=uid,
            group=gid,
            extra_groups=[],
            umask=0o022,
            cwd=self.base,
            env={
                "PATH": f"{self.stand_in}:{Path(sys.executable).parent}:/usr/bin:/bin",
                "HOME": str(self.base),
                "PYTHONDONTWRITEBYTECODE": "1",
                **(env or {}),
            },
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{argv[:2]} as {uid}:{gid} failed:\n{output[-3000:]}"
        return output

    # --------------------------------------------------------------------------------- 1. Docker
    def image_mount_point(self, target: str) -> tuple[int, int, int]:
        """Owner, group and mode of ``target`` in the built image, by replaying the RUN lines touching it."""
        for user, command in dockerfile_runs():
            if target in command:
                uid = {"airflow": IMAGE_UID, "root": 0}[user] if user in ("airflow", "root") else int(user)
                self.run(["/bin/bash", "-c", self.rewrite(command, self.image)], uid, 0)
        built = self.path(target, self.image)
        if not built.exists():
            return DOCKER_CREATED
        stat = built.stat()
        return stat.st_uid, stat.st_gid, stat.st_mode & 0o7777

    def mount(self, services: Mapping[str, Any]) -> None:
        """Every mount point as Docker leaves it before any container runs."""
        seen = {
            m for service in services.values() for m in mounts(service) if m.target.startswith(AIRFLOW_HOME)
        }
        for mount in seen:
            uid, gid, mode = self.image_mount_point(mount.target) if mount.is_named_volume else DOCKER_CREATED
            folder = self.path(mount.target)
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, uid, gid)
            folder.chmod(mode)

    # --------------------------------------------------------------------------------- 2. init
    def run_init(self, init: Mapping[str, Any]) -> str:
        assert init["entrypoint"] == "/bin/bash", "replayed as a bash script"
        env = {key: self.rewrite(str(value)) for key, value in init["environment"].items()}
        env.update(AIRFLOW_HOME=self.rewrite(AIRFLOW_HOME), AIRFLOW_STAND_IN_CALLS=str(self.calls))
        self.calls.touch()
        self.calls.chmod(0o666)
        return self.run(
            ["/bin/bash", *[self.rewrite(arg) for arg in init["command"]]], *run_as(init), env=env
        )

    def airflow_calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    # --------------------------------------------------------------------------------- 3. services
    def run_service(self, name: str, service: Mapping[str, Any]) -> None:
        uid, gid = run_as(service)
        python = python_for(uid, gid)
        if name == "sandbox":
            packages = sysconfig.get_paths()["purelib"]
            self.run(
                [python, "-c", SANDBOX_START, packages, *map(self.rewrite, service["command"])], uid, gid
            )
            return
        io = [("write", str(self.path(p))) for p in service_writes(name, service)]
        config = service.get("environment", {}).get("AIRFLOW_CONFIG")
        if config and mount_holding(service, config):  # a config file in the container's layer is its own
            io.append(("read", str(self.path(config))))
        self.run([python, "-c", SERVICE_IO, json.dumps(io)], uid, gid)


@pytest.fixture
def replay() -> Iterator[Replay]:
    if os.geteuid() != 0:
        unavailable("replaying the stack's file ownership needs root (chown, and running as uid 50000)")
    # Not tmp_path: pytest keeps it under a 0700 folder that the stack's uid could not enter.
    base = Path(tempfile.mkdtemp(prefix="compose-replay-"))
    base.chmod(0o755)
    try:
        yield Replay(base)
    finally:
        shutil.rmtree(base)


# Starts a dozen processes as other users, two of them importing Airflow: ~10 s.
@pytest.mark.slow
@pytest.mark.parametrize(
    "host_env",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"AIRFLOW_UID": "1000", "_AIRFLOW_WWW_USER_PASSWORD": "replay-only-pw"}, id="linux-uid"),
    ],
)
def test_every_service_can_write_what_it_writes_after_init(replay: Replay, host_env: dict[str, str]) -> None:
    compose = load(host_env)
    services = {name: s for name, s in compose["services"].items() if name not in ("postgres", "redis")}
    init = services.pop("airflow-init")
    uid = int(host_env.get("AIRFLOW_UID", IMAGE_UID))

    replay.mount(compose["services"])
    output = replay.run_init(init)

    config = init["environment"]["AIRFLOW_CONFIG"]
    assert mount_holding(init, config) and replay.path(config).is_file(), "init writes the shared airflow.cfg"
    calls = replay.airflow_calls()
    assert ["db", "migrate"] in calls
    pools = [c for c in calls if c[:2] == ["pools", "set"]]
    assert [c[2:4] + c[-1:] for c in pools] == [
        [BULK_LIST_POOL, str(MAX_CONCURRENT_BULK_LISTS), "--include-deferred"]
    ]

    for name, service in services.items():
        replay.run_service(name, service)

    for mount in mounts(init):  # and to the uid it asked for, even what nobody has written to yet
        stat = replay.path(mount.target).stat()
        if mount.read_only:  # what the DAGs only read (include/): readable by everyone, never chowned
            assert stat.st_mode & 0o005 == 0o005, f"{mount.target} is not readable by the services"
            continue
        assert (stat.st_uid, stat.st_gid) == (uid, 0), (
            f"init leaves {mount.target} to {stat.st_uid}:{stat.st_gid}"
        )

    state = replay.path(service_writes("sandbox", services["sandbox"])[0]).parent
    assert {p.name for p in state.iterdir()} >= {"clearout", "mailso", "clevertap.sqlite3"}
    assert state.stat().st_uid == uid
    password = host_env.get("_AIRFLOW_WWW_USER_PASSWORD")
    passwords = replay.path(init["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    if password:
        assert json.loads(passwords.read_text()) == {"admin": password}
        assert passwords.stat().st_mode & 0o077 == 0, "only its owner reads the passwords file"
        assert password not in output, "init never prints the password"
        assert password not in " ".join(init["command"]), "nor in its command line (docker inspect, ps)"


# Runs the Dockerfile's RUN lines as uid 50000 in a subprocess.
@pytest.mark.slow
def test_a_fresh_data_volume_starts_writable_for_any_uid_of_group_0(replay: Replay) -> None:
    """Before init runs (or without it: ``docker compose run``), a new named volume is the image's folder."""
    compose = load()
    volumes = {m.target for s in compose["services"].values() for m in mounts(s) if m.is_named_volume}
    for target in volumes & {m.target for m in mounts(compose["services"]["sandbox"])}:
        uid, gid, mode = replay.image_mount_point(target)
        assert (uid, gid) == (IMAGE_UID, 0), target
        assert mode & 0o070 == 0o070, (
            f"{target} is {oct(mode)}: a uid other than 50000 in group 0 cannot write"
        )
