"""Secrets never leave the connection: the shipped nightly DAG end to end with RECOGNISABLE credentials.

The product promise: the Clearout API token and the CleverTap passcode appear in no log line, XCom,
trigger kwargs, rendered template field, serialized DAG, run file or exception message, and email
addresses in log lines are masked (:func:`clearout_provider.masking.mask_email`: ``j***@example.com``).

Unit tests check single functions; this test checks the OUTCOME of whole runs, wherever a secret could
land. The sandbox accepts only a distinctive token and passcode (nothing like the defaults any other
test uses), so a hit below can only come from a run of this module. The runs:

* the instant path (150 seeded contacts: the delta is below the DAG's instant threshold of 200);
* the bulk path (600 contacts, ``instant_threshold`` 100): a deferrable bulk list, its trigger run
  inline by ``dag.test()`` (the trigger table stays empty, so the kwargs are captured where the task
  hands them over: the ``DeferTask`` message, exactly what a triggerer would store);
* failures: hooks called directly with a WRONG token / passcode (``str``, ``repr``, ``args`` and the
  formatted traceback of each exception, and the error event a trigger yields), and two DAG runs that
  fail on them (so Airflow's own failure logging of our exceptions is scanned too). A wrong token is
  as secret as a right one: it is usually a real token of another account, or a typo of one.

Where ``dag.test()`` logs: no task log files (Airflow writes none in-process); the task runner's
structlog output goes to stdout, captured at file-descriptor level (``capfd``). A handler on the root
logger also records every ``logging`` record at DEBUG, BEFORE Airflow's secrets masker sees it: a hit
there is a leak the masker happens to hide, which it cannot for secrets it never learnt (e.g. a
triggerer on another host). The metadata DB is scanned table by table and as raw SQLite bytes.

Each test prints a table of what it scanned and fails with every hit listed: a leak is reported, not
hidden (never fix product code from here, never xfail it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dag_runs import shipped_dag

from clearout_provider.masking import mask_email
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clevertap_seed import email_of

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "clevertap_nightly_list_cleaning"
Factory = Callable[[SandboxSettings], SandboxProcess]

#: The sandbox accepts only these. Random-looking hex, so no 12-character window occurs by chance.
TOKEN = "662b36adbb735f3865c42855993d14c0:39ddc250a802f8986274c3fdf54de700b3cb8c5f44721531ecdd3d7e17c466f7"
PASSCODE = "LeakCheck-FtSIlqYcX6L2S8bj"
#: What a user might have typed instead: the hooks must keep these out of messages just the same.
WRONG_TOKEN = (
    "1718d0fe29fa124fd6776f8c29f45984:4532e3691933d29ea4cf1a1706324e034d44c5b60d9f26be1352654647628df5"
)
WRONG_PASSCODE = "WrongPass-Qm8xZr2Tk5Vw9Yd3"
MAILSO_KEY = "5d1c7e9a-LeakCheck-4b2f-9e61-c0ffee5a1d02"
#: A leak of part of a secret is still a leak: every substring this long is searched for.
MIN_FRAGMENT = 12

INSTANT_SEED = 150  # the delta (~143) stays below the DAG's default instant_threshold (200)
BULK_SEED = 600  # ~520 to verify, above the instant_threshold 100 the bulk run is given

#: An address as it would appear unmasked; a masked one (``j***@x.com``) has no word character before '@'.
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
#: Table rows of the two views of the log (counted in lines and in records).
LOG_LINES = "task log lines (dag.test stdout+stderr)"
LOG_RECORDS = "log records (DEBUG, before Airflow's masker)"
#: Loggers recorded at DEBUG: ours, and the HTTP clients whose debug lines carry request URLs.
DEBUG_LOGGERS = ("clearout_provider", "urllib3", "aiohttp", "requests", "tenacity")
#: Addresses that are no contact's: Airflow's own defaults in its log lines.
NOT_PERSONAL: frozenset[str] = frozenset()


# ------------------------------------------------------------------------------------------- needles


def fragments(secret: str, size: int = MIN_FRAGMENT) -> list[str]:
    """The secret and every ``size``-character window of it: any longer leaked substring contains one."""
    return [secret] + [secret[i : i + size] for i in range(len(secret) - size + 1)]


@dataclass(frozen=True)
class Needle:
    """One secret and the fragments that betray it."""

    name: str
    secret: str

    def find(self, text: str) -> str | None:
        """The first fragment of the secret in ``text`` (None when there is none)."""
        return next((f for f in fragments(self.secret) if f in text), None)

    def find_bytes(self, data: bytes) -> str | None:
        return next((f for f in fragments(self.secret) if f.encode() in data), None)


NEEDLES = (
    Needle("clearout token", TOKEN),
    Needle("wrong clearout token", WRONG_TOKEN),
    Needle("clevertap passcode", PASSCODE),
    Needle("wrong clevertap passcode", WRONG_PASSCODE),
    Needle("mailso api key", MAILSO_KEY),
)


def seeded_addresses(count: int) -> set[str]:
    """Every seeded contact's email, lower-cased (the unmasked form a log line must never carry)."""
    addresses = set()
    for i in range(count):
        email, _where = email_of(i)
        if email and "@" in email:
            addresses.add(email.strip().lower())
    return addresses


# -------------------------------------------------------------------------------------------- ledger


@dataclass
class Place:
    """One place a secret could land: how many items were scanned there and what was found."""

    name: str
    emails: bool = False
    """Whether unmasked email addresses count as hits here (log output only)."""
    items: int = 0
    hits: list[str] = field(default_factory=list)
    email_hits: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """Every place scanned by one test, in the order first seen; rendered as the printed table."""

    contacts: set[str] = field(default_factory=set)
    places: dict[str, Place] = field(default_factory=dict)

    def place(self, name: str, *, emails: bool = False) -> Place:
        return self.places.setdefault(name, Place(name, emails=emails))

    def text(self, place: str, label: str, text: str, *, emails: bool = False, items: int = 1) -> None:
        """Scan one text (a log, an XCom, a message) for every secret and, if asked, addresses.

        ``items``: how many the table counts it as (a log's lines or records, rather than 1 per log).
        """
        where = self.place(place, emails=emails)
        where.items += items
        for needle in NEEDLES:
            if (hit := needle.find(text)) is not None:
                where.hits.append(f"{label}: {needle.name} ({hit!r}) in …{_around(text, hit)}…")
        if emails:
            for match in EMAIL_RE.finditer(text):
                address = match.group(0).lower().rstrip(".")
                if address not in NOT_PERSONAL:
                    seeded = "seeded contact" if address in self.contacts else "address"
                    where.email_hits.append(f"{label}: unmasked {seeded} {match.group(0)!r}")

    def data(self, place: str, label: str, data: bytes) -> None:
        """Scan raw bytes (a Parquet file, the SQLite database) for every secret."""
        where = self.place(place)
        where.items += 1
        for needle in NEEDLES:
            if (hit := needle.find_bytes(data)) is not None:
                where.hits.append(f"{label}: {needle.name} ({hit!r}) in the raw bytes")

    def empty(self, place: str) -> None:
        """A place scanned and found holding nothing (shown as 0 items, not left out)."""
        self.place(place)

    def table(self, title: str) -> str:
        rows = [
            (
                p.name,
                str(p.items),
                str(len(p.hits)),
                str(len(p.email_hits)) if p.emails else "-",
            )
            for p in self.places.values()
        ]
        head = ("place", "items scanned", "secret hits", "unmasked emails")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        line = "  ".join("-" * w for w in widths)
        fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        return "\n".join([f"\n{title}", fmt.format(*head), line, *(fmt.format(*r) for r in rows), line])

    def problems(self) -> list[str]:
        return [f"[{p.name}] {hit}" for p in self.places.values() for hit in (*p.hits, *p.email_hits)]


def _around(text: str, hit: str, width: int = 60) -> str:
    at = text.find(hit)
    return text[max(0, at - width) : at + len(hit) + width].replace("\n", "⏎")


def report(ledger: Ledger, title: str, capfd: pytest.CaptureFixture[str]) -> None:
    """Print the table straight to the terminal and fail with every hit, the table included."""
    table = ledger.table(title)
    with capfd.disabled():
        print(table, flush=True)
    problems = ledger.problems()
    assert not problems, table + "\n\n" + "\n".join(problems[:200])


# ------------------------------------------------------------------------------------ running the DAG


def connections(server: SandboxProcess, *, token: str = TOKEN, passcode: str = PASSCODE) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` for both services at ``server``, like clearout_provider.demo.sandbox_connections,
    but with the credentials given (the right ones, or a wrong one to provoke a failure)."""
    clearout = {"conn_type": "clearout", "host": server.clearout_url, "password": token}
    clevertap = {
        "conn_type": "clevertap",
        "login": server.settings.clevertap_account_id,
        "password": passcode,
        "host": f"{server.url}/clevertap",
    }
    mailso = {"conn_type": "mailso", "host": server.mailso_url, "password": server.settings.mailso_api_key}
    return {
        "AIRFLOW_CONN_CLEAROUT_DEFAULT": json.dumps(clearout),
        "AIRFLOW_CONN_CLEVERTAP_DEFAULT": json.dumps(clevertap),
        "AIRFLOW_CONN_MAILSO_DEFAULT": json.dumps(mailso),
    }


class RecordAll(logging.Handler):
    """Every ``logging`` record, formatted with its traceback, before any Airflow filter or masker."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._last: logging.LogRecord | None = None
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record is self._last:  # attached to our logger and to root: one record propagates to both
            return
        self._last = record
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # noqa: BLE001 - a record that cannot be formatted is noted, not lost
            self.lines.append(f"UNFORMATTABLE {record.name} {record.msg!r} {record.args!r}: {exc}")


class CurrentStdout:
    """A stream that writes to the ``sys.stdout`` of the moment (pytest replaces it between phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@dataclass
class Capture:
    """What a ``dag.test()`` run handed over besides its DB rows: deferrals and trigger events."""

    deferrals: list[tuple[str, Any]] = field(default_factory=list)
    """(classpath, trigger_kwargs) of every DeferTask: what the triggerer would store in ``trigger``."""
    events: list[Any] = field(default_factory=list)
    """The payload of every trigger event (it becomes the task's ``next_kwargs``)."""


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Capture:
    """Spy on dag.test()'s hand-over points: run_task_in_process (its DeferTask) and the inline trigger.

    Both are looked up on their module at call time by ``airflow.sdk.definitions.dag._run_task``.
    """
    import airflow.sdk.definitions.dag as dag_module
    from airflow.sdk.execution_time import supervisor
    from airflow.sdk.execution_time.comms import DeferTask

    seen = Capture()
    run_task, run_trigger = supervisor.run_task_in_process, dag_module._run_inline_trigger

    def spy_task(*args: Any, **kwargs: Any) -> Any:
        result = run_task(*args, **kwargs)
        if isinstance(result.msg, DeferTask):
            seen.deferrals.append((result.msg.classpath, result.msg.trigger_kwargs))
        return result

    def spy_trigger(trigger: Any, task_sdk_ti: Any) -> Any:
        event = run_trigger(trigger, task_sdk_ti)
        seen.events.append(None if event is None else event.payload)
        return event

    monkeypatch.setattr(supervisor, "run_task_in_process", spy_task)
    monkeypatch.setattr(dag_module, "_run_inline_trigger", spy_trigger)
    return seen


@pytest.fixture
def raw_log(capfd: pytest.CaptureFixture[str]) -> Iterator[RecordAll]:
    """Record every log record for the whole test, our own loggers' DEBUG ones included.

    Airflow configures logging (replacing the root logger's handlers) when it is first set up: that has
    happened once ``airflow.settings`` is imported. The handler also sits on ``clearout_provider`` in
    case a task runner reconfigures the root logger mid-run.

    Airflow's root StreamHandler keeps the ``sys.stdout`` of the moment it was configured: in a pytest
    session that is some earlier capture's file, closed since, and every stdlib record written there is
    lost ("I/O operation on closed file"). For this test it writes to whatever ``sys.stdout`` is at the
    time of each record (pytest swaps it per phase), so the captured output is the whole log.
    """
    import airflow.settings  # noqa: F401 - logging is configured by now, so the handler stays attached

    handler = RecordAll()
    root = logging.getLogger()
    streams = {h: h.stream for h in root.handlers if type(h) is logging.StreamHandler}
    for stream_handler in streams:
        stream_handler.stream = CurrentStdout()  # plain assignment: setStream would flush the closed one
    root.addHandler(handler)
    logging.getLogger("clearout_provider").addHandler(handler)
    # DEBUG where a request (URL, headers, body) could be logged; the rest at its configured level.
    debug = [logging.getLogger(name) for name in DEBUG_LOGGERS]
    levels = [logger.level for logger in debug]
    for logger in debug:
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        logging.getLogger("clearout_provider").removeHandler(handler)
        for logger, level in zip(debug, levels, strict=True):
            logger.setLevel(level)
        for stream_handler, stream in streams.items():
            stream_handler.stream = stream


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "clearout_data"
    monkeypatch.setenv("CLEAROUT_PROVIDER_DATA_DIR", str(folder))
    return folder


def run_dag(
    server: SandboxProcess,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    ledger: Ledger,
    label: str,
    *,
    run_conf: dict[str, Any] | None = None,
    token: str = TOKEN,
    passcode: str = PASSCODE,
) -> tuple[Any, str]:
    """One ``dag.test()`` of the shipped DAG against ``server``: the run and its log (also in the ledger)."""
    for name, value in connections(server, token=token, passcode=passcode).items():
        monkeypatch.setenv(name, value)
    capfd.readouterr()  # what came before is not this run's
    try:
        dr = shipped_dag(DAG_ID).test(run_conf=run_conf)
    finally:
        out, err = capfd.readouterr()
        for stream, text in (("stdout", out), ("stderr", err)):
            ledger.text(LOG_LINES, f"{label} {stream}", text, emails=True, items=text.count("\n"))
    return dr, out + err


# ------------------------------------------------------------------------------------------- scanning


def as_text(value: Any) -> str:
    """A DB value (JSON column, serde-encoded dict, plain string) as searchable text."""
    if isinstance(value, str | bytes):
        return value.decode(errors="replace") if isinstance(value, bytes) else value
    return json.dumps(value, default=repr, sort_keys=True)


def scan_run_rows(ledger: Ledger, runs: Iterable[Any]) -> None:
    """XComs, rendered fields, task instances' next_kwargs and the trigger table, for ``runs``."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    run_ids = [dr.run_id for dr in runs]
    with create_session() as session:
        xcoms = session.scalars(
            select(XComModel).where(XComModel.dag_id == DAG_ID, XComModel.run_id.in_(run_ids))
        ).all()
        for row in xcoms:
            ledger.text(
                "XCom values", f"{row.run_id} {row.task_id}[{row.map_index}] {row.key}", as_text(row.value)
            )
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(
                RenderedTaskInstanceFields.dag_id == DAG_ID, RenderedTaskInstanceFields.run_id.in_(run_ids)
            )
        ).all()
        for rtif in rendered:
            ledger.text(
                "rendered template fields", f"{rtif.run_id} {rtif.task_id}", as_text(rtif.rendered_fields)
            )
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id.in_(run_ids))
        ).all()
        for ti in tis:
            ledger.text("trigger kwargs and events", f"next_kwargs of {ti.task_id}", as_text(ti.next_kwargs))
        ledger.empty("trigger table rows")
        for trigger in session.scalars(select(Trigger)).all():
            ledger.text(
                "trigger table rows", f"trigger {trigger.id} {trigger.classpath}", as_text(trigger.kwargs)
            )
    assert xcoms and rendered, "the runs left no XComs or rendered fields: the scan would prove nothing"


def scan_serialized_dag(ledger: Ledger, dag: Any) -> None:
    """The DAG as the scheduler and the UI read it: the DB row dag.test() synced, and a fresh to_dict."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session

    with create_session() as session:
        row = SerializedDagModel.get(DAG_ID, session=session)
        assert row is not None
        ledger.text("serialized DAG", "serialized_dag row", as_text(row.data))
    ledger.text("serialized DAG", "DagSerialization.to_dict", as_text(DagSerialization.to_dict(dag)))


def scan_deferrals(ledger: Ledger, seen: Capture) -> None:
    """Every trigger the tasks deferred with, its events, and a freshly serialized bulk-list trigger."""
    from clearout_provider.triggers.bulk_job import ClearoutBulkJobTrigger

    place = "trigger kwargs and events"
    for classpath, kwargs in seen.deferrals:
        ledger.text(place, f"DeferTask {classpath}", as_text(kwargs))
    for payload in seen.events:
        ledger.text(place, "trigger event payload", as_text(payload))
    fresh = ClearoutBulkJobTrigger(job_id="any-list", conn_id="clearout_default", deadline=1e10)
    ledger.text(place, "ClearoutBulkJobTrigger(...).serialize()", as_text(fresh.serialize()))


def run_folders(data_dir: Path) -> list[Path]:
    """Where runs write files: the data dir, and the verdict ledger, which outlives runs by design
    (``CLEAROUT_PROVIDER_LEDGER_DIR``, a folder of each test's own: see tests/conftest.py)."""
    from clearout_provider.verification.ledger import LEDGER_DIR_ENV

    ledger_dir = os.environ.get(LEDGER_DIR_ENV)
    return [data_dir, *([Path(ledger_dir)] if ledger_dir and "://" not in ledger_dir else [])]


def scan_files(ledger: Ledger, *folders: Path) -> None:
    """Every file the runs wrote: text as text, Parquet as raw bytes AND as decoded values + metadata."""
    files = [
        (folder, p) for folder in folders if folder.exists() for p in sorted(folder.rglob("*")) if p.is_file()
    ]
    assert files, f"no run files under {folders}"
    for folder, path in files:
        label = f"{folder.name}/{path.relative_to(folder)}"
        data = path.read_bytes()
        ledger.data("run files (raw bytes)", label, data)
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            metadata = {k.decode(errors="replace"): v.decode(errors="replace")
                        for k, v in (table.schema.metadata or {}).items()}  # fmt: skip
            decoded = json.dumps([table.to_pylist(), metadata], default=str)
            ledger.text("run files (decoded Parquet)", label, decoded)
        else:
            ledger.text("run files (text)", label, data.decode(errors="replace"))


def scan_database(ledger: Ledger) -> None:
    """The whole SQLite metadata DB, bytes of the file and its write-ahead log: whatever table it is in."""
    home = Path(os.environ["AIRFLOW_HOME"])
    for path in sorted(home.glob("airflow.db*")):
        ledger.data("metadata DB (raw SQLite bytes)", path.name, path.read_bytes())


def scan_log_folder(ledger: Ledger) -> None:
    """Task log files, if this Airflow wrote any (dag.test() in-process writes none: stdout is the log)."""
    from airflow.configuration import conf

    folder = Path(conf.get("logging", "base_log_folder"))
    ledger.empty("log files under base_log_folder")
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        if path.is_file():
            ledger.text(
                "log files under base_log_folder", str(path), path.read_text(errors="replace"), emails=True
            )


def scan_raw_log(ledger: Ledger, raw: RecordAll) -> None:
    """Each record was formatted with its traceback; the table counts records."""
    ledger.text(LOG_RECORDS, "all records", "\n".join(raw.lines), emails=True, items=len(raw.lines))


def scan_everything(
    ledger: Ledger, runs: list[Any], dag: Any, seen: Capture, data_dir: Path, raw: RecordAll
) -> None:
    scan_raw_log(ledger, raw)
    scan_log_folder(ledger)
    scan_run_rows(ledger, runs)
    scan_serialized_dag(ledger, dag)
    scan_deferrals(ledger, seen)
    scan_files(ledger, *run_folders(data_dir))
    scan_database(ledger)


def states(dr: Any) -> dict[str, str | None]:
    return {
        ti.task_id + ("" if ti.map_index < 0 else f"[{ti.map_index}]"): ti.state
        for ti in dr.get_task_instances()
    }


# ---------------------------------------------------------------------------------------------- tests


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The control: planted leaks are found, masked addresses are not, so a clean table means clean."""
    ledger = Ledger(contacts={"valid@example.com"})
    half = TOKEN.partition(":")[2][10:22]  # 12 characters from the middle of the token's second half
    ledger.text("logs", "partial token", f"Authorization: …{half}…", emails=True)
    ledger.text("logs", "wrong passcode", f"X-CleverTap-Passcode={WRONG_PASSCODE}", emails=True)
    ledger.text("logs", "emails", "Verifying Valid@Example.COM; v***@example.com is fine", emails=True)
    ledger.text("logs", "clean", f"Verifying {mask_email('valid@example.com')} with ***", emails=True)
    folder = tmp_path / "files"
    folder.mkdir()
    pq.write_table(pa.table({"note": [f"{PASSCODE}"] * 50}), folder / "compressed.parquet")  # snappy
    (folder / "state.json").write_text(json.dumps({"token": WRONG_TOKEN}))
    scan_files(ledger, folder)

    logs = ledger.places["logs"]
    assert [h.split(":")[0] for h in logs.hits] == ["partial token", "wrong passcode"]
    assert logs.email_hits == ["emails: unmasked seeded contact 'Valid@Example.COM'"]
    # Parquet is decoded too: its pages may be compressed, where the raw bytes hide a value.
    assert [h.split(":")[0] for h in ledger.places["run files (decoded Parquet)"].hits] == [
        "files/compressed.parquet"
    ]
    assert [h.split(":")[0] for h in ledger.places["run files (text)"].hits] == ["files/state.json"]
    assert ledger.places["run files (raw bytes)"].hits


def settings(seed: int, **overrides: Any) -> SandboxSettings:
    return SandboxSettings(
        clearout_token=TOKEN,
        clevertap_passcode=PASSCODE,
        mailso_api_key=MAILSO_KEY,
        seed_contacts=seed,
        **overrides,
    )


@pytest.mark.timeout(600)
def test_instant_path_leaks_no_secret_and_masks_emails(
    sandbox_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    capture: Capture,
    raw_log: RecordAll,
    data_dir: Path,
) -> None:
    server = sandbox_factory(settings(INSTANT_SEED))
    ledger = Ledger(contacts=seeded_addresses(INSTANT_SEED))

    dr, _log = run_dag(server, monkeypatch, capfd, ledger, "instant run")

    assert dr.state == "success", states(dr)
    assert states(dr)["verify_instant"] == "success" and states(dr)["split_for_bulk"] == "skipped"
    assert server.clearout_stats()["instant_calls"] > 100  # the token really was sent, many times
    scan_everything(ledger, [dr], shipped_dag(DAG_ID), capture, data_dir, raw_log)
    report(ledger, "Secrets scan: instant path (150 contacts)", capfd)


@pytest.mark.timeout(600)
def test_bulk_path_leaks_no_secret_and_masks_emails(
    sandbox_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    capture: Capture,
    raw_log: RecordAll,
    data_dir: Path,
) -> None:
    # 300 rows/s: the ~520-row list runs ~2 s, so the trigger polls it (and logs progress) a few times.
    server = sandbox_factory(settings(BULK_SEED, bulk_rate=300))
    ledger = Ledger(contacts=seeded_addresses(BULK_SEED))

    dr, log = run_dag(server, monkeypatch, capfd, ledger, "bulk run", run_conf={"instant_threshold": 100})

    assert dr.state == "success", states(dr)
    assert states(dr)["verify_bulk[0]"] == "success" and states(dr)["verify_instant"] == "skipped"
    assert server.clearout_stats()["bulk_uploads"] == 1
    bulk = [kwargs for classpath, kwargs in capture.deferrals if classpath.endswith("ClearoutBulkJobTrigger")]
    assert bulk, f"verify_bulk never deferred to the bulk-list trigger: {capture.deferrals}"
    assert "Waiting for Clearout verify list" in log  # the trigger's own lines are in the scanned log
    scan_everything(ledger, [dr], shipped_dag(DAG_ID), capture, data_dir, raw_log)
    report(ledger, "Secrets scan: bulk path (600 contacts, deferred list)", capfd)


@pytest.mark.timeout(600)
def test_mailso_path_leaks_no_secret_and_masks_emails(
    sandbox_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    capture: Capture,
    raw_log: RecordAll,
    data_dir: Path,
) -> None:
    """verifier=mailso: validate calls and batches both carry the key; none of it may surface."""
    server = sandbox_factory(settings(BULK_SEED, mailso_batch_rate=5_000))
    ledger = Ledger(contacts=seeded_addresses(BULK_SEED))

    dr, _log = run_dag(server, monkeypatch, capfd, ledger, "mailso run", run_conf={"verifier": "mailso"})

    assert dr.state == "success", states(dr)
    assert server.mailso_stats()["batches_created"] >= 1  # the key really was sent
    scan_everything(ledger, [dr], shipped_dag(DAG_ID), capture, data_dir, raw_log)
    report(ledger, "Secrets scan: Mail.so path (600 contacts, batches)", capfd)


# --- failures ---------------------------------------------------------------------------------------


#: A contact's address the failing calls are given (a variable, so no traceback shows it as source code).
PRIVATE = "someone.private@secret-domain.com"


def exception_texts(exc: BaseException) -> dict[str, str]:
    """Every way an exception is shown: str, repr, its args, and the formatted traceback (chain + notes)."""
    return {
        "str": str(exc),
        "repr": repr(exc),
        "args": repr(exc.args),
        "vars": repr(vars(exc)) if hasattr(exc, "__dict__") else "",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def provoke(ledger: Ledger, label: str, call: Callable[[], Any]) -> BaseException:
    """Run a call that must fail; scan every text of its exception."""
    with pytest.raises(Exception) as info:
        call()
    for kind, text in exception_texts(info.value).items():
        ledger.text("exception messages", f"{label} {kind}", text, emails=True)
    return info.value


def set_wrong_connections(server: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """``clearout_wrong`` (valid URL, wrong token) and ``clevertap_wrong`` (wrong passcode)."""
    wrong = connections(server, token=WRONG_TOKEN, passcode=WRONG_PASSCODE)
    monkeypatch.setenv("AIRFLOW_CONN_CLEAROUT_WRONG", wrong["AIRFLOW_CONN_CLEAROUT_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_CLEVERTAP_WRONG", wrong["AIRFLOW_CONN_CLEVERTAP_DEFAULT"])


@pytest.mark.timeout(600)
def test_failures_with_wrong_credentials_leak_neither_secret(
    sandbox_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    capture: Capture,
    raw_log: RecordAll,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    from clearout_provider.clevertap_errors import CleverTapAuthError
    from clearout_provider.exceptions import ClearoutAuthError
    from clearout_provider.hooks.clearout import ClearoutHook
    from clearout_provider.hooks.clevertap import CleverTapHook
    from clearout_provider.triggers.bulk_job import ClearoutBulkJobTrigger

    server = sandbox_factory(settings(INSTANT_SEED))
    ledger = Ledger(contacts=seeded_addresses(INSTANT_SEED))
    set_wrong_connections(server, monkeypatch)
    for name, value in connections(server).items():
        monkeypatch.setenv(name, value)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(f"Email\n{PRIVATE}\nvalid@example.com\n")
    ledger.contacts.add(PRIVATE)

    # --- the hooks, called directly with the wrong credentials
    clearout = ClearoutHook("clearout_wrong", max_retries=1, retry_backoff=0.01)
    clearout_calls: dict[str, Callable[[], Any]] = {
        "ClearoutHook.get_credits": clearout.get_credits,
        "ClearoutHook.verify_email": lambda: clearout.verify_email(PRIVATE),
        "ClearoutHook.upload_bulk_verify": lambda: clearout.upload_bulk_verify(contacts),
        "ClearoutHook.get_bulk_progress": lambda: clearout.get_bulk_progress("any-list"),
        "ClearoutHook.aget_credits": lambda: asyncio.run(clearout.aget_credits()),
        "ClearoutHook.averify_email": lambda: asyncio.run(clearout.averify_email(PRIVATE)),
    }
    for label, call in clearout_calls.items():
        assert isinstance(provoke(ledger, label, call), ClearoutAuthError), label
    clevertap = CleverTapHook("clevertap_wrong", max_retries=1, retry_wait=0.01)
    clevertap_calls: dict[str, Callable[[], Any]] = {
        "CleverTapHook.get_profile": lambda: clevertap.get_profile(email=PRIVATE),
        "CleverTapHook.export_profiles": lambda: clevertap.export_profiles({}, tmp_path / "export.parquet"),
        "CleverTapHook.upload_profiles": lambda: clevertap.upload_profiles(
            [{"identity": PRIVATE, "profileData": {"City": "x"}}]
        ),
    }
    for label, call in clevertap_calls.items():
        assert isinstance(provoke(ledger, label, call), CleverTapAuthError), label
    for label, hook in (("ClearoutHook", clearout), ("CleverTapHook", clevertap)):
        ok, message = hook.test_connection()
        assert not ok
        ledger.text("exception messages", f"{label}.test_connection message", message)
        ledger.text("exception messages", f"{label} repr", repr(hook))
    # A trigger never raises: its error event carries the message the operator turns into the failure.
    trigger = ClearoutBulkJobTrigger(job_id="any-list", conn_id="clearout_wrong", poll_interval=0.1)
    events = asyncio.run(_first_event(trigger))
    assert events["status"] == "error" and events["error_type"] == "ClearoutAuthError", events
    ledger.text("exception messages", "ClearoutBulkJobTrigger error event", as_text(events))

    # --- the DAG failing on them: Airflow logs our exceptions its own way (traceback, error detail)
    wrong_clearout, log = run_dag(server, monkeypatch, capfd, ledger, "wrong-token run", token=WRONG_TOKEN)
    assert states(wrong_clearout)["verify_instant"] == "failed", states(wrong_clearout)
    assert "ClearoutAuthError: Invalid API Token" in log  # the failure, as Airflow logged it, was scanned
    wrong_clevertap, log = run_dag(
        server, monkeypatch, capfd, ledger, "wrong-passcode run", passcode=WRONG_PASSCODE
    )
    assert states(wrong_clevertap)["extract_delta"] == "failed", states(wrong_clevertap)
    assert "CleverTapAuthError: Passcode is not valid" in log

    runs = [wrong_clearout, wrong_clevertap]
    scan_everything(ledger, runs, shipped_dag(DAG_ID), capture, data_dir, raw_log)
    report(ledger, "Secrets scan: failures with a wrong token / passcode", capfd)


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")
