"""One small CleverTap account, the shipped nightly DAG, and the witnesses a bad night is judged by.

A :class:`World` is a fresh sandbox (with a state folder, so it can be restarted or killed and keep its
Clearout account and CleverTap profiles) holding :data:`SEED` seeded profiles, a data dir and a verdict
ledger of its own, and the nightly DAG loaded with retries on (``[clearout] task_retries``), as a
deployment runs it. ``world.night()`` is one ``dag.test()`` run; ``world.during(...)`` changes the
sandbox (a fault switched off, a restart) from a background thread when a condition is seen, the way an
outage ends while Airflow waits to retry.

The judges are the sandbox's own records, read over HTTP after the runs:

* **credits** — Clearout's ledger (``credits_used`` of ``/_sandbox/stats``), over all runs;
* **profiles** — every seeded profile as ``GET /1/profile.json`` returns it: the verdict properties, the
  address they were written for, ``MSG-email``, the unsubscribe marker and the Subscribe API state.

Each scenario's end state is compared with the end state of a fault-free night on an identical account
(:func:`clean_night`), which is itself checked against the sandbox's verdict rules (tests/reliability/
test_baseline.py): so "equal to the clean night" means "the verdict of the current address, or untouched".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from dag_runs import shipped_dag, states, xcom

from clearout_provider.demo import sandbox_connections
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clevertap_seed import object_id_of

DAG_ID = "clevertap_nightly_list_cleaning"
#: Profiles in the account: ~330 addresses to verify, above the DAG's instant threshold (bulk path).
SEED = 400
#: Forces the instant path for the same account (the DAG's maximum threshold).
INSTANT = {"instant_threshold": 1000}
#: What a profile's end state is judged on: the verdict properties the DAG writes by default, the address
#: they were written for, the unsubscribe switch and its marker.
PROPERTIES = (
    "Email",
    "Clearout Verification Status",
    "Clearout Safe To Send",
    "Clearout Verified Email",
    "MSG-email",
    "Clearout Unsubscribed Reason",
)
#: CleverTap paths (under /clevertap) that an outage can take down, by what they do.
CLEVERTAP_CALLS = {"write": ("/1/upload", "/1/subscribe")}
#: Ceiling of any wait on the sandbox or a run (generous: the machine may be busy; a wait ends as soon
#: as its condition holds).
CEILING = 600.0
#: Retries of the nightly DAG's tasks in these scenarios, and the first retry delay (doubles each try).
RETRIES, RETRY_DELAY = 4, 2


@dataclass(frozen=True)
class EndState:
    """What the sandbox holds after the runs: each seeded profile's judged properties, and credits used."""

    profiles: dict[str, tuple[Any, ...]]
    credits_used: int

    def differences(self, expected: EndState, limit: int = 5) -> list[str]:
        """Profiles whose state differs from ``expected`` (first ``limit``), as readable lines."""
        lines = []
        for object_id, want in expected.profiles.items():
            got = self.profiles.get(object_id)
            if got != want:
                names = (*PROPERTIES, "subscription")
                lines.append(
                    f"{object_id}: {dict(zip(names, got or (), strict=False))} "
                    f"!= {dict(zip(names, want, strict=True))}"
                )
        return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])

    def matching(self, expected: EndState) -> int:
        return sum(self.profiles.get(k) == v for k, v in expected.profiles.items())


@dataclass
class Night:
    """One ``dag.test()`` run as the metadata DB and the run's files recorded it."""

    dr: Any
    states: dict[str, str | None]
    state: str
    data_dir: Path

    @property
    def ok(self) -> bool:
        return self.state == "success"

    def xcom(self, task_id: str, map_index: int = -1) -> Any:
        return xcom(self.dr, task_id, map_index)

    @property
    def to_verify(self) -> int | None:
        extract = self.xcom("extract_delta")
        return None if extract is None else extract["to_verify"]

    @property
    def exported(self) -> int | None:
        extract = self.xcom("extract_delta")
        return None if extract is None else extract["exported"]

    def loads(self) -> list[dict[str, Any]]:
        verified = self.xcom("verified") or []
        return [self.xcom("load_back", i) for i in range(len(verified))]

    def summary(self) -> str:
        """The report's short summary ("" when the run never got to the report)."""
        import re

        run = re.sub(r"[^A-Za-z0-9._=-]+", "_", self.dr.run_id)
        path = self.data_dir / DAG_ID / run / "report" / "summary.txt"
        return path.read_text() if path.exists() else ""

    def failed_tasks(self) -> list[str]:
        return sorted(task for task, state in self.states.items() if state in ("failed", "upstream_failed"))

    def describe(self) -> str:
        return (
            "ok"
            if self.ok
            else "failed at " + ",".join(t for t in self.failed_tasks() if "upstream" not in t)
        )


@dataclass
class World:
    """A sandbox account and its data dir (and ledger), which the nightly DAG's runs are pointed at."""

    server: SandboxProcess
    data_dir: Path
    nights: list[Night] = field(default_factory=list)
    _watchers: list[_Watcher] = field(default_factory=list)

    # ------------------------------------------------------------------------------------ runs
    def night(self, conf: Mapping[str, Any] | None = None, logical_date: datetime | None = None) -> Night:
        """One run of the nightly DAG (``logical_date`` again = clearing that run and running it anew)."""
        kwargs: dict[str, Any] = {"run_conf": dict(conf or {})}
        if logical_date is not None:  # the run id is made of run_after: the same for the same run
            kwargs["logical_date"] = kwargs["run_after"] = logical_date
        # A DAG object per run: an in-process dag.test() leaves one run's conf in the DAG's params.
        dr = shipped_dag(DAG_ID).test(**kwargs)
        self.join_watchers()
        night = Night(dr, states(dr), str(dr.state), self.data_dir)
        self.nights.append(night)
        return night

    def settle(self, conf: Mapping[str, Any] | None = None) -> Night:
        """With every fault off, the next night: it must succeed and leave nothing due.

        Whatever the bad night left unverified or unwritten is still due and is done now; the judge then
        finds every profile with its verdict (so nothing is left due) and the credits paid once.
        """
        self.server.reset_faults()
        night = self.night(conf)
        assert night.ok, f"a clean night failed: {night.states}"
        return night

    # ------------------------------------------------------------------------------------ faults
    def faults(self, **switches: Any) -> None:
        self.server.set_faults(**switches)

    def during(self, when: Callable[[], bool], then: Callable[[], Any], what: str) -> None:
        """From a background thread: once ``when()`` holds, do ``then()`` (e.g. end an outage).

        The thread polls every 0.1 s up to :data:`CEILING`; the next :meth:`night` waits for it and
        fails the test if the condition never came or ``then`` raised.
        """
        watcher = _Watcher(when, then, what)
        watcher.start()
        self._watchers.append(watcher)

    def join_watchers(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.join(CEILING)
            assert watcher.done, f"never happened during the run: {watcher.what} ({watcher.error!r})"

    # ------------------------------------------------------------------------------------ witnesses
    def clearout(self) -> dict[str, Any]:
        return self.server.clearout_stats()

    def clevertap(self) -> dict[str, int]:
        return self.server.clevertap_stats()

    def end_state(self) -> EndState:
        return end_state_of(self.server)


class _Watcher(threading.Thread):
    def __init__(self, when: Callable[[], bool], then: Callable[[], Any], what: str) -> None:
        super().__init__(daemon=True, name=f"watcher: {what}")
        self.when, self.then, self.what = when, then, what
        self.done, self.error = False, None

    def run(self) -> None:
        deadline = time.monotonic() + CEILING
        try:
            while time.monotonic() < deadline:
                try:
                    if self.when():
                        self.done = True
                        return
                except requests.RequestException:
                    pass  # the sandbox is restarting: look again
                time.sleep(0.1)
        except Exception as exc:  # noqa: BLE001 - reported by join_watchers
            self.error = exc
        finally:
            # Done or not, end the fault: a run waiting on it must not hang (the test fails at join).
            self.then()


def end_state_of(server: SandboxProcess) -> EndState:
    """What ``server`` holds now: every seeded profile's judged properties, and the credits used."""
    return EndState(read_profiles(server), int(server.clearout_stats()["credits_used"]))


def read_profiles(server: SandboxProcess) -> dict[str, tuple[Any, ...]]:
    """Every seeded profile's judged properties as CleverTap's ``GET /1/profile.json`` returns them."""
    headers = {
        "X-CleverTap-Account-Id": server.settings.clevertap_account_id,
        "X-CleverTap-Passcode": server.settings.clevertap_passcode,
    }
    profiles = {}
    with requests.Session() as http:
        for i in range(server.settings.seed_contacts):
            object_id = object_id_of(i)
            resp = http.get(
                f"{server.url}/clevertap/1/profile.json",
                params={"objectId": object_id},
                headers=headers,
                timeout=60,
            )
            resp.raise_for_status()
            record = resp.json()["record"]
            data = {
                **record.get("profileData", {}),
                "Email": record.get("email") or record.get("profileData", {}).get("Email"),
            }
            subscription = (record.get("subscription") or {}).get("email")
            profiles[object_id] = (*(data.get(p) for p in PROPERTIES), subscription)
    return profiles


def task_state(task_id: str) -> Callable[[], str | None]:
    """The state of ``task_id`` (map index 0 when mapped) in the nightly DAG's newest run, from the DB."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    def read() -> str | None:
        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).first()
            if run is None:
                return None
            ti = (
                session.query(TaskInstance)
                .filter(
                    TaskInstance.dag_id == DAG_ID,
                    TaskInstance.run_id == run.run_id,
                    TaskInstance.task_id == task_id,
                )
                .order_by(TaskInstance.map_index)
                .first()
            )
            return None if ti is None else ti.state

    return read


def account_settings(**settings: Any) -> SandboxSettings:
    """The account every scenario starts from (:data:`SEED` profiles), plus ``settings``; ``state_dir``
    is set by :func:`make_world`."""
    defaults: dict[str, Any] = {"seed_contacts": SEED, "rpm": 100_000, "bulk_rate": 2_000.0}
    return SandboxSettings(**{**defaults, **settings})


def make_world(server: SandboxProcess, monkeypatch: Any, folder: Path, retries: int = RETRIES) -> World:
    """Both connections, the data dir, the ledger and the DAG's retries pointed at ``server``/``folder``."""
    for name, value in sandbox_connections(server).items():
        monkeypatch.setenv(name, value)
    data_dir = folder / "clearout_data"
    monkeypatch.setenv("CLEAROUT_PROVIDER_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CLEAROUT_PROVIDER_LEDGER_DIR", str(folder / "verdict-ledger"))
    monkeypatch.setenv("AIRFLOW__CLEAROUT__TASK_RETRIES", str(retries))
    monkeypatch.setenv("AIRFLOW__CLEAROUT__TASK_RETRY_DELAY", str(RETRY_DELAY))
    return World(server, data_dir)


def clean_night(world: World, conf: Mapping[str, Any] | None = None) -> Night:
    """A fault-free night: the reference every scenario's end state must reach."""
    night = world.night(conf)
    assert night.ok, night.states
    return night


# ---------------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Reference:
    """The fault-free night on an identical account: its end state and what it verified."""

    end: EndState
    exported: int
    to_verify: int
    result_paths: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """One line of the printed fault matrix."""

    scenario: str
    outcome: str
    contacts_in: int
    contacts_out: int
    credits_expected: int
    credits_charged: int


#: The fault matrix as the scenarios recorded it; tests/reliability/conftest.py prints it at the end.
TABLE: list[Row] = []


def judge(
    world: World,
    reference: Reference,
    scenario: str,
    *,
    extra_credits: int = 0,
    changed: Mapping[str, tuple[Any, ...]] | None = None,
) -> EndState:
    """:func:`judge_end_state` of ``world`` after its nights (their outcomes joined by arrows)."""
    outcome = " → ".join(night.describe() for night in world.nights)
    return judge_end_state(
        world.end_state(), outcome, reference, scenario, extra_credits=extra_credits, changed=changed
    )


def judge_end_state(
    end: EndState,
    outcome: str,
    reference: Reference,
    scenario: str,
    *,
    extra_credits: int = 0,
    changed: Mapping[str, tuple[Any, ...]] | None = None,
) -> EndState:
    """Record the scenario's line of the table, then hold its end state to the invariants.

    * credits charged over all its runs = what the clean night paid (+ ``extra_credits`` for addresses
      the scenario itself added): every billable address paid for once;
    * every profile = the clean night's end state (or ``changed`` for the profiles the scenario itself
      changed): the verdict of its current address, or untouched without one; no wrong and no missed
      unsubscribe.
    """
    expected = EndState(
        {**reference.end.profiles, **(changed or {})}, reference.end.credits_used + extra_credits
    )
    TABLE.append(
        Row(
            scenario,
            outcome,
            len(expected.profiles),
            end.matching(expected),
            expected.credits_used,
            end.credits_used,
        )
    )
    assert end.credits_used == expected.credits_used, (
        f"{scenario}: charged {end.credits_used} credits, expected {expected.credits_used}"
    )
    wrong = end.differences(expected)
    assert not wrong, f"{scenario}: profiles differ from their verdicts:\n" + "\n".join(wrong)
    return end
