"""ClearoutBulkVerifyOperator and ClearoutBulkVerifySensor in ``dag.test()`` runs against live sandboxes.

``dag.test()`` runs tasks in-process and the deferred trigger inline, with the connection taken from
``AIRFLOW_CONN_CLEAROUT_DEFAULT``. The sandbox's ``/_sandbox/stats`` is the witness for uploads, list
states and credits; failure messages are the ones the task's ``on_failure_callback`` received.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest
import requests
from conftest import load_dag
from dag_runs import xcom

from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

pytestmark = pytest.mark.usefixtures("airflow_db")

Factory = Callable[[SandboxSettings], SandboxProcess]

#: Input rows: (id, Email) → the status the result file must show for that row.
CONTACTS: list[tuple[str, str, str, str]] = [
    # id, Email, expected clearout_status, expected decided_by
    ("1", "valid@example.com", "valid", "clearout_bulk"),
    ("2", "invalid@example.com", "invalid", "clearout_bulk"),
    ("3", "catch_all@example.com", "catch_all", "clearout_bulk"),
    ("4", "unknown@example.com", "unknown", "clearout_bulk"),
    ("5", "  Valid@Example.COM ", "valid", "local_duplicate"),
    ("6", "not-an-email", "invalid", "local_syntax"),
    ("7", "role@example.com", "valid", "clearout_bulk"),
    ("8", "", "invalid", "local_syntax"),
    ("9", "mailbox_not_found@example.com", "invalid", "clearout_bulk"),
    ("10", "invalid@example.com", "invalid", "local_duplicate"),
]
SUB_STATUS = {
    "valid@example.com": 200,
    "invalid@example.com": 406,
    "catch_all@example.com": 411,
    "mailbox_not_found@example.com": 406,
    "not-an-email": 400,
}


def write_contacts(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "Email", "phone"])
        writer.writerows((i, email, f"0{i}") for i, email in rows)
    return path


def many(n: int, prefix: str = "user") -> list[tuple[str, str]]:
    """``n`` distinct addresses that are not test addresses (the sandbox verifies them at ``bulk_rate``)."""
    return [(str(i), f"{prefix}{i}@company{i % 7}.org") for i in range(n)]


def run(dag_id: str, source: Path, **run_kwargs: Any) -> Any:
    return load_dag("dag_bulk_verify", dag_id).test(run_conf={"source": str(source)}, **run_kwargs)


def task(dr: Any, task_id: str = "verify") -> Any:
    return dr.get_task_instance(task_id)


def failures(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read_result(path: str) -> pd.DataFrame:
    local = path.removeprefix("file://")
    return (
        pd.read_parquet(local)
        if local.endswith(".parquet")
        else pd.read_csv(local, dtype=str, keep_default_na=False)
    )


@pytest.fixture
def in_background() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Run a function in a thread during the DAG run (a user acting in the Clearout app).

    Its error is re-raised.
    """
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(fn: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the test below
                errors.append(exc)

        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]


def when_list_appears(server: SandboxProcess, action: Callable[[str], None]) -> Callable[[], None]:
    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lists = server.clearout_stats()["lists"]
            if lists:
                time.sleep(0.3)  # let the trigger see it running first
                action(next(iter(lists)))
                return
            time.sleep(0.05)
        raise TimeoutError("no list was uploaded")

    return watch


# ---------------------------------------------------------------------------------------------- success


def test_deferred_bulk_verify_writes_every_input_row_with_its_verdict(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=500))
    clearout_connection(server)
    extra = many(5)
    source = write_contacts(
        tmp_path / "contacts.csv", [(i, e) for i, e, *_ in CONTACTS] + [(f"x{i}", e) for i, e in extra]
    )
    before = server.clearout_stats()["credits_available"]

    dr = run("clearout_bulk_verify", source)

    assert task(dr).state == "success", failures(data_dir)
    result = xcom(dr, "verify")
    after = server.clearout_stats()
    assert after["bulk_uploads"] == 1
    list_id = result["list_id"]
    assert xcom(dr, "verify", key="list_id") == list_id and after["lists"][list_id]["status"] == "completed"
    # The list is in the sandbox, not in a Clearout account: no app link; the run's report tab instead.
    assert xcom(dr, "verify", key="_link_ClearoutListLink") == ""
    assert xcom(dr, "verify", key="_link_RunReportLink").endswith(
        f"/dags/{dr.dag_id}/runs/{quote(dr.run_id, safe='')}/plugin/clearout-report"
    )
    assert (
        result["credits_spent"] == before - after["credits_available"] == after["lists"][list_id]["charged"]
    )

    frame = read_result(result["result_path"])
    assert len(frame) == result["rows"] == len(CONTACTS) + len(extra)
    assert (
        list(frame.columns[:3]) == ["id", "Email", "phone"] and frame["phone"].iloc[0] == "01"
    )  # input kept as text
    by_id = frame.set_index("id")
    for row_id, email, status, decided_by in CONTACTS:
        row = by_id.loc[row_id]
        assert (row["Email"], row["clearout_status"], row["decided_by"]) == (email, status, decided_by), (
            row_id
        )
        if email.strip().lower() in SUB_STATUS:
            assert row["clearout_sub_status_code"] == SUB_STATUS[email.strip().lower()], row_id
    assert bool(by_id.loc["7", "is_role"]) is True
    assert sum(result["counts"].values()) == len(frame)
    assert result["prepared"] == {
        "total_rows": 15,
        "empty": 1,
        "syntax_invalid": 1,
        "duplicates": 2,
        "to_verify": 11,
    }
    assert (Path(result["result_path"].removeprefix("file://")).parent / "clearout_list.json").exists()


def test_non_deferrable_mode_polls_on_the_worker_and_writes_csv(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=10))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(15))  # 1.5 s of work: several sync polls

    dr = run("clearout_bulk_verify_sync", source)

    assert task(dr).state == "success", failures(data_dir)
    result = xcom(dr, "verify")
    assert result["result_path"].endswith(".csv") and server.clearout_stats()["bulk_uploads"] == 1
    frame = read_result(result["result_path"])
    assert len(frame) == 15 and set(frame["decided_by"]) == {"clearout_bulk"}


def test_nothing_to_verify_finishes_without_calling_clearout(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings())
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", [("1", "not an email"), ("2", ""), ("3", "a@@b")])

    dr = run("clearout_bulk_verify", source)

    assert task(dr).state == "success", failures(data_dir)
    result = xcom(dr, "verify")
    assert result["list_id"] is None and result["credits_spent"] == 0 and result["rows"] == 3
    assert result["counts"] == {"invalid": 3}
    assert server.clearout_stats()["bulk_uploads"] == 0 and server.clearout_stats()["credits_used"] == 0


# ---------------------------------------------------------------------------------------------- failures


def test_deadline_fails_the_task_and_cancels_the_list(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=5))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(50))  # 10 s of work, 1.5 s allowed

    dr = run("clearout_bulk_verify_deadline", source)

    assert task(dr).state == "failed"
    [failure] = failures(data_dir)
    list_id = next(iter(server.clearout_stats()["lists"]))
    assert failure["type"] == "ClearoutBulkJobTimedOut"
    assert f"list {list_id} did not finish before its deadline" in failure["message"]
    assert "it was cancelled, so unprocessed addresses cost nothing" in failure["message"]
    assert server.clearout_stats()["lists"][list_id]["status"] == "cancelled"


def test_list_cancelled_in_the_app_fails_the_task(
    sandbox_factory: Factory,
    clearout_connection: Callable[..., str],
    data_dir: Path,
    tmp_path: Path,
    in_background: Callable[[Callable[[], None]], None],
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=5))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(50))
    in_background(when_list_appears(server, lambda list_id: ClearoutHook().cancel_list(list_id)))

    dr = run("clearout_bulk_verify", source)

    assert task(dr).state == "failed"
    [failure] = failures(data_dir)
    list_id = next(iter(server.clearout_stats()["lists"]))
    assert failure["type"] == "ClearoutBulkJobCancelled"
    assert (
        f"list {list_id} was cancelled at" in failure["message"]
        and "uploads only the rest" in failure["message"]
    )


def test_list_removed_while_waiting_fails_the_task(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=5))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(50))

    dr = run("clearout_bulk_verify_vanishing", source)

    assert task(dr).state == "failed"
    [failure] = failures(data_dir)
    assert failure["type"] == "ClearoutBulkJobFailed"
    assert "Could not follow Clearout verify list" in failure["message"]
    assert "(Clearout code 1008" in failure["message"]  # the spec's answer for a list that is gone
    assert server.clearout_stats()["lists"] == {}


def test_too_few_credits_fail_before_anything_is_uploaded(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(credits=3))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(5))

    dr = run("clearout_bulk_verify", source)

    assert task(dr).state == "failed"
    [failure] = failures(data_dir)
    assert failure["type"] == "ClearoutCreditsError"
    assert "has 3 credits but this list has 5 addresses" in failure["message"]
    assert "nothing was uploaded" in failure["message"]
    assert server.clearout_stats()["bulk_uploads"] == 0


def test_input_above_the_chunk_size_is_refused_before_clearout_is_called(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings())
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(5))

    dr = run("clearout_bulk_verify_small_chunks", source)

    assert task(dr).state == "failed"
    [failure] = failures(data_dir)
    assert failure["type"] == "TooManyContacts"
    assert "has 5 rows, more than the 3 one bulk list may carry; split it into chunks" in failure["message"]
    assert server.clearout_stats()["bulk_uploads"] == 0 and server.clearout_stats()["credits_used"] == 0


def test_full_bulk_queue_waits_for_a_free_slot(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=10, max_bulk_lists=1))
    clearout_connection(server)
    blocker = write_contacts(
        tmp_path / "blocker.csv", many(20, prefix="other")
    )  # holds the only slot for 2 s
    blocker_id = ClearoutHook().upload_bulk_verify(blocker).list_id
    source = write_contacts(tmp_path / "contacts.csv", many(5))
    started = time.monotonic()

    dr = run("clearout_bulk_verify", source)

    assert task(dr).state == "success", failures(data_dir)
    assert time.monotonic() - started > 1.5  # it waited for the blocker, deferred to a timer meanwhile
    after = server.clearout_stats()
    assert after["bulk_uploads"] == 2 and after["lists"][blocker_id]["status"] == "completed"
    assert xcom(dr, "verify")["rows"] == 5


def test_bulk_queue_full_until_the_deadline_fails_without_uploading(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=10, max_bulk_lists=1))
    clearout_connection(server)
    ClearoutHook().upload_bulk_verify(
        write_contacts(tmp_path / "blocker.csv", many(100, prefix="other"))
    )  # 10 s
    source = write_contacts(tmp_path / "contacts.csv", many(5))

    dr = run("clearout_bulk_verify_deadline", source)  # 1.5 s allowed

    assert task(dr).state == "failed"
    [failure] = failures(data_dir)
    assert failure["type"] == "ClearoutBulkSlotTimeout"
    assert "maximum number of bulk lists is running (1001) until this task's deadline" in failure["message"]
    assert server.clearout_stats()["bulk_uploads"] == 1  # the blocker only


# ---------------------------------------------------------------------------------------- never spend twice


def billing(server: SandboxProcess) -> tuple[int, int, int]:
    """(uploads, credits used, credits charged by all lists).

    One upload and used == charged means one charge.
    """
    now = server.clearout_stats()
    return now["bulk_uploads"], now["credits_used"], sum(int(v["charged"]) for v in now["lists"].values())


def test_retry_after_upload_resumes_the_list_instead_of_paying_again(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=10))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(45))  # 4.5 s of work; each try allows 3 s
    credits = server.clearout_stats()["credits_available"]

    dr = run("clearout_bulk_verify_retry", source)

    assert task(dr).state == "success" and task(dr).try_number == 2, failures(data_dir)
    [first_try] = failures(data_dir)
    assert (
        first_try["type"] == "ClearoutBulkJobTimedOut"
        and "resumes it without paying again" in first_try["message"]
    )
    uploads, used, charged = billing(server)
    assert uploads == 1 and used == charged > 0
    result = xcom(dr, "verify")
    assert result["credits_spent"] == used == credits - server.clearout_stats()["credits_available"]
    assert result["rows"] == 45


def test_retry_without_the_state_file_resumes_through_the_duplicate_answer(
    sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=10))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(45))  # 4.5 s of work; each try allows 3 s

    dr = run("clearout_bulk_verify_retry_amnesia", source)

    assert task(dr).state == "success" and task(dr).try_number == 2, failures(data_dir)
    uploads, used, charged = billing(server)
    assert uploads == 1 and used == charged
    # The balance before the upload was forgotten with the file.
    assert xcom(dr, "verify")["credits_spent"] is None


def test_retry_after_a_cancelled_list_keeps_what_it_processed_and_uploads_only_the_rest(
    sandbox_factory: Factory,
    clearout_connection: Callable[..., str],
    data_dir: Path,
    tmp_path: Path,
    in_background: Callable[[Callable[[], None]], None],
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=15))
    clearout_connection(server)
    source = write_contacts(
        tmp_path / "contacts.csv", many(30)
    )  # 2 s of work, cancelled at once; 3 s per try
    in_background(when_list_appears(server, lambda list_id: ClearoutHook().cancel_list(list_id)))

    dr = run("clearout_bulk_verify_retry", source)

    assert task(dr).state == "success" and task(dr).try_number == 2, failures(data_dir)
    assert [f["type"] for f in failures(data_dir)] == ["ClearoutBulkJobCancelled"]
    lists = server.clearout_stats()["lists"]
    result = xcom(dr, "verify")
    # What the cancelled list processed came from the ledger; only the rest was uploaded again.
    assert result["reused"] + result["sent"] == 30 and result["reused"] > 0
    uploads, used, charged = billing(server)
    assert uploads == 1 + (result["sent"] > 0) and used == charged  # each address paid for at most once
    billable = sum(n for status, n in result["counts"].items() if status in ("valid", "invalid", "catch_all"))
    assert used == billable
    if result["sent"]:
        assert sorted(v["status"] for v in lists.values()) == ["cancelled", "completed"]
        assert lists[result["list_id"]]["status"] == "completed"


@pytest.mark.parametrize("expired", [False, True])
def test_cleared_and_rerun_task_pays_nothing_again(
    expired: bool,
    sandbox_factory: Factory,
    clearout_connection: Callable[..., str],
    data_dir: Path,
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    server = sandbox_factory(SandboxSettings(bulk_rate=500))
    clearout_connection(server)
    source = write_contacts(tmp_path / "contacts.csv", many(10))
    logical_date = datetime(2026, 3, 1, tzinfo=UTC)  # same date → same run id → same task folder

    first = run("clearout_bulk_verify", source, logical_date=logical_date, run_after=logical_date)
    first_result, used = xcom(first, "verify"), server.clearout_stats()["credits_used"]
    if expired:  # Clearout dropped the result (30 days later): only then is a second list paid for
        auth = {"Authorization": server.settings.clearout_token}
        body = {"list_id": first_result["list_id"]}
        requests.post(
            f"{server.clearout_url}/_sandbox/expire", json=body, headers=auth, timeout=5
        ).raise_for_status()
    second = run("clearout_bulk_verify", source, logical_date=logical_date, run_after=logical_date)

    assert task(second).state == "success", failures(data_dir)
    second_result = xcom(second, "verify")
    assert second.run_id == first.run_id and second_result["counts"] == first_result["counts"]
    # The verdicts are in the ledger since the first download: nothing is sent or downloaded again, even
    # when Clearout has dropped the result meanwhile.
    assert second_result["list_id"] is None and second_result["reused"] == 10
    assert server.clearout_stats()["bulk_uploads"] == 1 and server.clearout_stats()["credits_used"] == used


# ---------------------------------------------------------------------------------------------- sensor


@pytest.mark.parametrize("mode", ["deferred", "poking"])
def test_sensor_waits_for_a_list_started_by_the_hook(
    mode: str, sandbox_factory: Factory, clearout_connection: Callable[..., str], tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=20))
    clearout_connection(server)
    list_id = ClearoutHook().upload_bulk_verify(write_contacts(tmp_path / "l.csv", many(20))).list_id  # 1 s

    dr = load_dag("dag_bulk_verify", f"clearout_bulk_verify_sensor_{mode}").test(
        run_conf={"list_id": list_id}
    )

    assert task(dr, "wait").state == "success"
    assert xcom(dr, "wait") == {
        "list_id": list_id,
        "kind": "verify",
        "progress_status": "completed",
        "percent": 100.0,
    }
    assert server.clearout_stats()["lists"][list_id]["status"] == "completed"


@pytest.mark.parametrize("mode", ["deferred", "poking"])
def test_sensor_fails_clearly_on_an_unavailable_list(
    mode: str, sandbox_factory: Factory, clearout_connection: Callable[..., str], data_dir: Path
) -> None:
    server = sandbox_factory(SandboxSettings())
    clearout_connection(server)
    started = time.monotonic()

    dr = load_dag("dag_bulk_verify", f"clearout_bulk_verify_sensor_{mode}").test(
        run_conf={"list_id": "0" * 24}
    )

    assert task(dr, "wait").state == "failed"
    assert time.monotonic() - started < 15  # at once, not after the sensor's 30 s timeout
    [failure] = failures(data_dir)
    assert failure["type"] == "ClearoutBulkJobFailed"
    assert f"Could not follow Clearout verify list {'0' * 24}: You are not authorized" in failure["message"]
