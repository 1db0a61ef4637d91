"""Run a real Airflow deployment as separate processes on 127.0.0.1 for deployment tests.

Each component (api-server, dag-processor, scheduler, triggerer and, with CeleryExecutor, celery workers)
is its own process sharing one environment, exactly as in the docker-compose stack, but without Docker.
The stack talks to its REST API (``SIMPLE_AUTH_MANAGER_ALL_ADMINS`` lets tests call it without a token).

Celery workers (:class:`CeleryWorker`) can each get a scratch folder of their own as HOME, TMPDIR, cwd and
AIRFLOW_HOME, as separate machines would have: a file one task leaves on local disk is then invisible to
a task on another worker. Each records its own name as its task instances' hostname.

Waiting: every wait is for a condition (a health answer, a parsed DAG, a state), polled every
:data:`POLL_INTERVAL` seconds up to a generous ceiling, never a fixed sleep. On a busy 2-core machine an
Airflow component takes several times longer to import and answer than on an idle one; the ceilings
are there to turn a hang into a clear error, not to measure speed, so they are far above normal times.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from clearout_provider.operators.bulk_list import BULK_LIST_POOL, MAX_CONCURRENT_BULK_LISTS
from clearout_provider.sandbox.process import free_port

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
#: This folder: workers import worker_hostname.py from it.
DEPLOYMENT_TESTS = Path(__file__).resolve().parent
#: The queue every task of the shipped DAGs goes to (``[operators] default_queue``).
DEFAULT_QUEUE = "default"
TERMINAL_RUN_STATES = {"success", "failed"}

#: Ceiling of each start-up step (api-server healthy, DAG parsed, worker ready, heartbeats). Idle: 5-30 s.
STARTUP_TIMEOUT = 600.0
#: Ceiling of one ``airflow`` CLI command (each imports all of Airflow first; ``db migrate`` takes longest).
CLI_TIMEOUT = 600.0
#: Ceiling of one HTTP call to the api-server: a loaded server answers late, not never.
HTTP_TIMEOUT = 60.0
#: Pause between two readiness checks: short, so a ready condition is noticed promptly.
POLL_INTERVAL = 0.5
#: Ceiling of one DAG run under test (runs take 10-60 s idle).
RUN_TIMEOUT = 600.0
#: Grace for all components together to exit after SIGTERM before they are killed.
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Snapshot:
    """The task states of a run as one poll saw them, and when (``time.monotonic()``)."""

    at: float
    states: dict[str, str | None]


def seen_in_state(snapshots: list[Snapshot], task: str, state: str) -> tuple[int, float]:
    """How many polls saw ``task`` in ``state``, and the seconds between the first and the last of them.

    Tests assert on the time span rather than a poll count alone: on a busy machine each poll takes
    longer, so the same 12 s of deferral yields fewer polls, but never a shorter span (minus one poll).
    """
    times = [s.at for s in snapshots if s.states.get(task) == state]
    return len(times), (times[-1] - times[0]) if times else 0.0


@dataclass(frozen=True)
class CeleryWorker:
    """One celery worker of a stack.

    ``name`` is its celery node name (``<name>@localhost``), its log file (``<home>/<name>.log``) and the
    hostname its task instances record (tests/deployment/worker_hostname.py). With ``scratch``, a folder
    of its own, the worker runs there: it is its HOME, TMPDIR, cwd and AIRFLOW_HOME.
    ``env`` overrides the stack's shared environment for this worker only (its own credentials, say).
    """

    name: str = "celery-worker"
    scratch: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 2

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"


@dataclass
class AirflowStack:
    """A throwaway Airflow home plus the processes that serve it."""

    home: Path
    dags_folder: Path
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    celery_broker_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    workers: tuple[CeleryWorker, ...] = (CeleryWorker(),)
    api_port: int = field(default_factory=free_port)
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list, init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        """The environment every component shares (one JWT secret, one fernet key, one DB)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR=self.executor,
            AIRFLOW__CORE__FERNET_KEY=self._fernet_key,
            AIRFLOW__API__SECRET_KEY=self._secret,
            AIRFLOW__API_AUTH__JWT_SECRET=self._secret,
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.api_port),
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__CORE__HOSTNAME_CALLABLE="airflow.utils.net.get_host_ip_address",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.home / "logs"),
        )
        if self.sql_alchemy_conn:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.sql_alchemy_conn
        if self.celery_broker_url:
            env["AIRFLOW__CELERY__BROKER_URL"] = self.celery_broker_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + (self.sql_alchemy_conn or "")
        env.update(self.extra_env)
        return env

    def worker_env(self, worker: CeleryWorker) -> dict[str, str]:
        """The shared environment, with this worker's name as its hostname, its scratch folder as HOME,
        TMPDIR and AIRFLOW_HOME (logs stay in the shared folder), and its own overrides."""
        from worker_hostname import WORKER_NAME_ENV

        env = self.env()
        path = [str(DEPLOYMENT_TESTS), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            PYTHONPATH=os.pathsep.join(path),
            AIRFLOW__CORE__HOSTNAME_CALLABLE="worker_hostname.hostname",
            **{WORKER_NAME_ENV: worker.name},
        )
        if worker.scratch is not None:
            home = str(worker.scratch)
            env.update(HOME=home, TMPDIR=home, AIRFLOW_HOME=str(worker.scratch / "airflow"))
        env.update(worker.env)
        return env

    def __post_init__(self) -> None:
        from cryptography.fernet import Fernet

        self._fernet_key = Fernet.generate_key().decode()
        self._secret = secrets.token_urlsafe(48)
        self.home.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ processes
    def airflow(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command in the stack's environment and fail loudly on error."""
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def _spawn(
        self, name: str, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
        proc = subprocess.Popen(
            [AIRFLOW, *args],
            env=self.env() if env is None else env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs.append((name, proc))
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL one component (and its children): a crash, with no chance to clean up."""
        for entry in [e for e in self._procs if e[0] == name]:
            os.killpg(entry[1].pid, signal.SIGKILL)
            entry[1].wait()
            self._procs.remove(entry)

    def start_triggerer(self) -> None:
        self._spawn("triggerer", "triggerer", "--skip-serve-logs")

    def start_worker(self, worker: CeleryWorker) -> None:
        if worker.scratch is not None:
            (worker.scratch / "airflow").mkdir(parents=True, exist_ok=True)
        args = [
            "--celery-hostname",
            worker.node,
            "--concurrency",
            str(worker.concurrency),
            "--skip-serve-logs",
        ]
        self._spawn(worker.name, "celery", "worker", *args, env=self.worker_env(worker), cwd=worker.scratch)

    def stop_taking_tasks(self, worker_name: str, queue: str = DEFAULT_QUEUE) -> None:
        """Make one worker stop consuming ``queue`` (celery's ``cancel_consumer`` remote control): the
        tasks queued from now on go to the other workers. It finishes what it already runs."""
        from celery import Celery

        [worker] = [w for w in self.workers if w.name == worker_name]
        app = Celery(broker=self.celery_broker_url)
        try:
            replies = app.control.cancel_consumer(
                queue, destination=[worker.node], reply=True, timeout=HTTP_TIMEOUT
            )
        finally:
            app.close()
        if not any(worker.node in reply for reply in replies):
            raise RuntimeError(f"{worker.node} did not confirm it stopped consuming {queue}: {replies}")

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker_logs(self) -> str:
        """Every celery worker's log, one after the other."""
        return "".join(self.log(worker.name) for worker in self.workers)

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Every log file of one task (all attempts, the trigger's too), concatenated.

        "" before any exists.
        """
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        files = sorted(folder.rglob("*.log*")) if folder.exists() else []
        return "".join(path.read_text(errors="replace") for path in files)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll ``ready`` until true; fail at once if a component died, or after ``timeout`` seconds.

        A check that raises a request or lookup error (the server is still starting) counts as not ready.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({proc.returncode}) while waiting for {what}:\n"
                        f"{self.log(name)[-4000:]}"
                    )
            try:
                if ready():
                    return
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")

    def start(self, *, expect_dags: tuple[str, ...] = ()) -> AirflowStack:
        """Migrate the DB and start every component, each after the previous one is ready."""
        self.airflow("db", "migrate")
        # As the docker-compose init step does: the bulk operators' pool, counting deferred tasks.
        self.airflow("pools", "set", BULK_LIST_POOL, str(MAX_CONCURRENT_BULK_LISTS), "Clearout bulk lists",
                     "--include-deferred")  # fmt: skip
        self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.wait_until(
            "api-server health",
            lambda: requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=HTTP_TIMEOUT).ok,
        )
        self._spawn("dag-processor", "dag-processor")
        for dag_id in expect_dags:
            self.wait_until(
                f"DAG {dag_id} parsed", lambda d=dag_id: self.get(f"/dags/{d}").get("dag_id") == d
            )
        self._spawn("scheduler", "scheduler", "--skip-serve-logs")
        self.start_triggerer()
        if self.executor == "CeleryExecutor":
            for worker in self.workers:
                self.start_worker(worker)
            for worker in self.workers:
                self.wait_until(
                    f"celery worker {worker.name} ready", lambda w=worker: "ready" in self.log(w.name)
                )
        self.wait_until("scheduler and triggerer heartbeats", self._components_healthy)
        return self

    def _components_healthy(self) -> bool:
        health = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=HTTP_TIMEOUT).json()
        return all(health.get(c, {}).get("status") == "healthy" for c in ("scheduler", "triggerer"))

    def stop(self) -> None:
        """SIGTERM every component in reverse start order, then SIGKILL what is left after one shared grace.

        One deadline for all (not one per process): components shut down in parallel, and a slow one
        on a busy machine must not multiply the wait by the number of components.
        """
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for _name, proc in reversed(self._procs):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()

    # ------------------------------------------------------------------ REST API
    def get(self, path: str, **params: Any) -> dict[str, Any]:
        resp = requests.get(f"{self.api_url}/api/v2{path}", params=params, timeout=HTTP_TIMEOUT)
        resp.raise_for_status()
        return resp.json()

    def unpause(self, dag_id: str) -> None:
        """What the UI's toggle does (REST: far quicker than the CLI on a busy machine)."""
        requests.patch(
            f"{self.api_url}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=HTTP_TIMEOUT
        ).raise_for_status()

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> None:
        """Unpause the DAG and start a manual run."""
        self.unpause(dag_id)
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        requests.post(
            f"{self.api_url}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=HTTP_TIMEOUT
        ).raise_for_status()

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """What a user does in the UI: mark a task instance ``failed`` / ``success``."""
        url = f"{self.api_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        requests.patch(url, json={"new_state": state}, timeout=HTTP_TIMEOUT).raise_for_status()

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {
            ti["task_id"] + ("" if ti["map_index"] < 0 else f"[{ti['map_index']}]"): ti["state"] for ti in tis
        }

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = RUN_TIMEOUT,
        on_poll: Callable[[Snapshot], None] | None = None,
    ) -> str:
        """Poll until the run finishes; ``on_poll`` sees every timed snapshot of task states (to catch
        'deferred'). ``timeout`` is a ceiling against hangs, far above how long a run takes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if on_poll:
                on_poll(Snapshot(time.monotonic(), self.task_states(dag_id, run_id)))
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_RUN_STATES:
                return state
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(
            f"{dag_id}/{run_id} still running after {timeout}s: {self.task_states(dag_id, run_id)}"
        )
