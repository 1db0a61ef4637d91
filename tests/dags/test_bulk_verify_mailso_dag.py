"""ClearoutBulkVerifyOperator with ``verifier="mailso"`` in ``dag.test()`` runs against a live sandbox.

The bulk job is the file's Mail.so batches (``batch_size`` from the connection), waited for by the same
deferred trigger as a Clearout list. The Mail.so emulator's ``/_sandbox/stats`` is the witness for the
batches created and the credits charged: a retried task must collect the batches its first try created
(no second batch, no second charge), and a creation whose answer was lost must never be posted again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import load_dag
from dag_runs import xcom

from clearout_provider.sandbox import SandboxProcess, SandboxSettings

pytestmark = pytest.mark.usefixtures("airflow_db")

Factory = Callable[[SandboxSettings], SandboxProcess]

#: Seven distinct addresses to send, a repeat and a malformed one: (id, Email).
CONTACTS = [(str(i), f"person{i}@company{i % 3}.org") for i in range(7)] + [
    ("7", " Person0@Company0.ORG "),
    ("8", "not-an-email"),
]
SENT = 7


def contacts(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "Email"])
        writer.writerows(CONTACTS)
    return path


def run(dag_id: str, source: Path) -> Any:
    return load_dag("dag_bulk_verify", dag_id).test(run_conf={"source": str(source)})


def failures(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_batches_of_the_connections_size_verify_every_row_deferred(
    sandbox_factory: Factory, mailso_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    server = sandbox_factory(SandboxSettings(mailso_batch_rate=20))
    mailso_connection(server, batch_size=3)

    dr = run("mailso_bulk_verify", contacts(tmp_path))

    assert dr.get_task_instance("verify").state == "success", failures(data_dir)
    result, stats = xcom(dr, "verify"), server.mailso_stats()
    assert stats["batches_created"] == 3 and stats["mailso_credits_used"] == SENT  # 3 + 3 + 1
    assert sorted(result["list_id"].split(",")) == stats["batches"]  # the job is its batches
    assert (result["sent"], result["credits_spent"]) == (SENT, None)  # Mail.so publishes no balance
    assert xcom(dr, "verify", key="list_id") is None  # no "Clearout list" link for Mail.so batches
    assert server.clearout_stats()["bulk_uploads"] == 0
    frame = pd.read_parquet(result["result_path"].removeprefix("file://")).set_index("id")
    assert len(frame) == result["rows"] == len(CONTACTS)
    assert set(frame.loc[[str(i) for i in range(7)], "decided_by"]) == {"mailso_batch"}
    assert set(frame.loc[[str(i) for i in range(7)], "verifier"]) == {"mailso"}
    assert frame.loc["7", "decided_by"] == "local_duplicate"
    assert frame.loc["7", "verdict"] == frame.loc["0", "verdict"]
    assert frame.loc["8", "decided_by"] == "local_syntax" and frame.loc["8", "verdict"] == "undeliverable"
    assert frame["verdict"].notna().all()


def test_a_retry_collects_the_batches_its_first_try_created(
    sandbox_factory: Factory, mailso_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    """The first try's worker dies after creating the batches, before recording the job: the retry finds
    them in the task folder's checkpoint and follows them (no second batch, no second charge)."""
    server = sandbox_factory(SandboxSettings(mailso_batch_rate=20))
    mailso_connection(server, batch_size=4)

    dr = run("mailso_bulk_verify_worker_lost", contacts(tmp_path))

    assert dr.get_task_instance("verify").state == "success", failures(data_dir)
    [first_try] = failures(data_dir)
    assert first_try["try_number"] == 1 and "worker died" in first_try["message"]
    stats = server.mailso_stats()
    assert stats["batches_created"] == 2 and stats["mailso_credits_used"] == SENT
    assert sorted(xcom(dr, "verify")["list_id"].split(",")) == stats["batches"]


def test_a_lost_creation_answer_fails_every_try_without_posting_again(
    sandbox_factory: Factory, mailso_connection: Callable[..., str], data_dir: Path, tmp_path: Path
) -> None:
    """Mail.so created (and charged) the batch but its answer was lost: nothing can tell whether it
    exists, so neither the try nor its retry posts it again; both fail saying why and what to do."""
    server = sandbox_factory(SandboxSettings(mailso_lost_batch_answers=1))
    mailso_connection(server, batch_size=10)

    dr = run("mailso_bulk_verify_retry", contacts(tmp_path))

    assert dr.get_task_instance("verify").state == "failed"
    tries = failures(data_dir)
    assert [f["try_number"] for f in tries] == [1, 2]
    assert {f["type"] for f in tries} == {"MailsoBatchInDoubt"}
    assert "answer was lost" in tries[0]["message"] and "never arrived" in tries[1]["message"]
    assert all("Not posting it again" in f["message"] and "Mail.so dashboard" in f["message"] for f in tries)
    stats = server.mailso_stats()
    assert (stats["batches_created"], stats["mailso_credits_used"], stats["lost_batch_answers"]) == (
        1,
        SENT,
        1,
    )
