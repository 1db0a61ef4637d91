"""ClearoutInstantVerifyOperator under ``dag.test()`` against live sandboxes, and its verification path.

Witnesses are the result file (one row per input row, in input order) and the sandbox's own counters
(``/_sandbox/stats``: ``instant_calls`` = instant requests it accepted, ``credits_used``), never the
operator's word for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from airflow.sdk import ObjectStoragePath
from conftest import load_dag

from clearout_provider.clearout.verifier import ClearoutVerifier
from clearout_provider.contacts import Freshness
from clearout_provider.exceptions import ClearoutCreditsError
from clearout_provider.operators.instant_verify import (
    ClearoutInstantVerifyOperator,
    TooManyForInstant,
    verify_addresses,
)
from clearout_provider.results import DecidedBy
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.verification.ledger import VerdictLedger


def ledger_addresses() -> list[str]:
    """Every address the verdict ledger holds a paid-for verdict of."""
    return sorted(VerdictLedger().entries()["address"].to_pylist())


Factory = Callable[[SandboxSettings], SandboxProcess]

# Clearout's documented test addresses (fact sheet) → (status, sub-status code or None when the docs name
# no code, and other documented fields).
DOCUMENTED: dict[str, tuple[str, int | None, dict[str, Any]]] = {
    "valid": ("valid", None, {}),
    "invalid": ("invalid", None, {}),
    "catch_all": ("catch_all", None, {}),
    "unknown": ("unknown", None, {}),
    "safe_to_send_yes": ("valid", None, {"safe_to_send": True}),
    "safe_to_send_no": ("invalid", None, {"safe_to_send": False}),
    "disposable": ("valid", None, {"is_disposable": True}),
    "role": ("valid", None, {"is_role": True}),
    "free": ("valid", None, {"is_free": True}),
    "gibberish": ("valid", None, {"is_gibberish": True}),
    "hard_bounce": ("invalid", None, {"bounce": "hard"}),
    "soft_bounce": ("invalid", None, {"bounce": "soft"}),
    "greylisted": ("unknown", 407, {}),
    "spamtrap": ("invalid", 401, {}),
    "blocklist_email_address": ("invalid", 602, {}),
    "allowlist_email_address": ("valid", 601, {}),
    "blocklist_domain": ("invalid", 604, {}),
    "allowlist_domain": ("valid", 603, {}),
    "domain_not_found": ("invalid", 403, {}),
    "not_a_mailserver": ("invalid", 404, {}),
    "mailbox_not_found": ("invalid", 406, {}),
    "mailbox_quota_exceeded": ("invalid", 413, {}),
    "dns_query_timeout": ("unknown", 417, {}),
    "overquota_and_inactive": ("invalid", 428, {}),
    "receiving_limit_reached": ("invalid", 421, {}),
}


def run_dag(tmp_path: Path, source: Path) -> tuple[Any, Path]:
    """Run dag_instant_verify on ``source``; return the dag run and the task's folder."""
    workdir = tmp_path / "work"
    run = load_dag("dag_instant_verify").test(run_conf={"source": str(source), "workdir": str(workdir)})
    (folder,) = workdir.glob("test_instant_verify/*/verify")
    return run, folder


def task_instance(run: Any) -> Any:
    (ti,) = run.get_task_instances()
    return ti


def write_contacts(path: Path, emails: list[str]) -> Path:
    pd.DataFrame({"customer_id": [f"{i:05d}" for i in range(len(emails))], "Email": emails}).to_csv(
        path, index=False
    )
    return path


@pytest.mark.usefixtures("airflow_db")
def test_documented_test_addresses_get_their_statuses_and_every_row_is_kept(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    server = sandbox_factory(SandboxSettings())
    clearout_connection(server)
    emails = [f"{local}@example.com" for local in DOCUMENTED]
    extras = [
        "  VALID@Example.com ",
        "not-an-address",
        "",
        "role@example.com",
    ]  # duplicate, syntax, empty, duplicate
    source = write_contacts(tmp_path / "contacts.csv", emails + extras)

    run, folder = run_dag(tmp_path, source)

    assert task_instance(run).state == "success"
    result = pd.read_csv(folder / "clearout-result.csv", dtype={"customer_id": str}, keep_default_na=False)
    assert len(result) == len(emails) + len(extras)
    assert result["customer_id"].tolist() == [
        f"{i:05d}" for i in range(len(result))
    ]  # input order, ids intact
    by_email = result.iloc[: len(emails)].set_index("Email")
    for local, (status, code, fields) in DOCUMENTED.items():
        row = by_email.loc[f"{local}@example.com"]
        assert row["clearout_status"] == status, local
        assert row["decided_by"] == "clearout_instant", local
        if code is not None:
            assert int(row["clearout_sub_status_code"]) == code, local
        for column, value in fields.items():
            expected = str(value).lower() if isinstance(value, bool) else value
            assert str(row[column]).lower() == expected, (local, column)
    tail = result.iloc[len(emails) :]
    assert tail["decided_by"].tolist() == [
        "local_duplicate",
        "local_syntax",
        "local_syntax",
        "local_duplicate",
    ]
    assert tail["clearout_status"].tolist() == ["valid", "invalid", "invalid", "valid"]
    account = server.clearout_stats()
    assert account["instant_calls"] == len(emails)  # each unique address once, nothing for local decisions
    assert account["credits_used"] == 0  # test addresses are free


@pytest.mark.usefixtures("airflow_db")
def test_retry_after_a_killed_try_does_not_verify_recorded_addresses_again(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    # 26 addresses at 0.3 s each with one call in flight take at least 7.8 s, so the DAG's execution_timeout
    # (6 s) always kills the first try part-way; the retry (about 6 left, ~2 s) has 4 s to spare.
    server = sandbox_factory(SandboxSettings(instant_verify_ms=300))
    clearout_connection(server)
    emails = [f"person{i}@company{i % 7}.com" for i in range(26)]
    source = write_contacts(tmp_path / "contacts.csv", emails)

    run, folder = run_dag(tmp_path, source)

    ti = task_instance(run)
    assert ti.state == "success"
    assert ti.try_number == 2  # the first try was killed by its timeout
    account = server.clearout_stats()
    assert account["instant_calls"] == len(emails)  # nobody was verified twice
    assert ledger_addresses() == sorted(emails)  # each answer recorded once, the moment it arrived
    result = pd.read_csv(folder / "clearout-result.csv", keep_default_na=False)
    assert result["Email"].tolist() == emails
    # The retry took the first try's answers from the ledger and asked Clearout only for the rest.
    assert set(result["decided_by"]) == {"clearout_instant", "ledger"}
    billable = int(result["clearout_status"].ne("unknown").sum())
    assert account["credits_used"] == billable  # paid once per billable verdict


@pytest.mark.usefixtures("airflow_db")
def test_timed_out_addresses_get_no_verdict_with_a_reason_and_the_task_succeeds(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    server = sandbox_factory(SandboxSettings(fault_rate_524=0.5, fault_seed=3))
    clearout_connection(server)
    emails = [
        f"{local}@example.com"
        for local in ("valid", "invalid", "catch_all", "greylisted", "spamtrap", "free")
    ]
    emails += [f"user{i}@example.org" for i in range(10)]
    source = write_contacts(tmp_path / "contacts.csv", emails)

    run, folder = run_dag(tmp_path, source)

    assert task_instance(run).state == "success"
    result = pd.read_csv(folder / "clearout-result.csv", keep_default_na=False)
    assert len(result) == len(emails)
    failed = result[result["decided_by"] == DecidedBy.CLEAROUT_INSTANT_FAILED]
    assert 0 < len(failed) < len(emails)  # seed 3 at 50 %: some, not all
    assert set(failed["clearout_status"]) == {""}  # no verdict: not "unknown", nothing to write
    assert failed["verdict_reason"].str.contains("Timeout Occurred").all()
    assert failed["clearout_sub_status_code"].eq("").all()  # no code was invented
    # Failed addresses are not recorded: they cost nothing, so the next run asks again.
    assert ledger_addresses() == sorted(
        result.loc[result["decided_by"] != DecidedBy.CLEAROUT_INSTANT_FAILED, "Email"]
    )


def test_running_out_of_credits_stops_with_the_progress_and_a_rerun_pays_only_the_rest(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    emails = [f"buyer{i}@shop{i}.com" for i in range(12)]
    poor = sandbox_factory(SandboxSettings(credits=4))
    clearout_connection(poor)
    ledger = VerdictLedger(ObjectStoragePath(f"file://{tmp_path}/ledger"))
    with (
        ledger.journal(source="instant", recorded_by="d/r/t/") as journal,
        pytest.raises(ClearoutCreditsError) as raised,
    ):
        verify_addresses(ClearoutVerifier(), emails, journal, max_concurrency=3)
    answered = ledger.entries().num_rows
    assert 4 <= answered < len(emails)  # 4 credits: at least 4 answers (unknowns are free), not all
    assert any(f"{answered} of {len(emails)} were answered" in note for note in raised.value.__notes__)

    rich = sandbox_factory(SandboxSettings())
    clearout_connection(rich)
    known = set(ledger.lookup(emails, Freshness())["normalised_email"].to_pylist())
    assert len(known) == answered
    with ledger.journal(source="instant", recorded_by="d/r2/t/") as journal:
        outcome = verify_addresses(
            ClearoutVerifier(), [e for e in emails if e not in known], journal, max_concurrency=3
        )
    assert sorted([*outcome.verdicts, *known]) == sorted(emails)
    assert rich.clearout_stats()["instant_calls"] == len(emails) - answered


def test_inputs_above_max_addresses_are_refused_before_any_call(tmp_path: Path) -> None:
    source = write_contacts(tmp_path / "contacts.csv", [f"a{i}@example.org" for i in range(5)])
    operator = ClearoutInstantVerifyOperator(
        task_id="verify", source=str(source), workdir=str(tmp_path / "work"), max_addresses=4,
        clearout_conn_id="no_such_connection",
    )  # fmt: skip
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="verify", map_index=-1)
    with pytest.raises(TooManyForInstant, match="5 addresses to verify.*ClearoutBulkVerifyOperator"):
        operator.execute({"ti": ti})  # type: ignore[arg-type]
