"""The Email Finder operators under ``dag.test()`` against live sandboxes.

The sandbox's finder is deterministic (``sandbox/clearout_finder.py``): a role word alone finds the role
address, a free-mail domain finds nothing, a name with digits is refused (1088), other names are found
or not by a hash. ``time_scale=0.01`` turns Clearout's 10 s minimum wait into 0.1 s, so a search longer
than that takes the 524 → queue_id → queue_status path. ``/_sandbox/stats`` (credits, calls, uploads) is
the witness for what was paid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import load_dag

from clearout_provider.sandbox import SandboxProcess, SandboxSettings

pytestmark = pytest.mark.usefixtures("airflow_db")

Factory = Callable[[SandboxSettings], SandboxProcess]

PEOPLE = pd.DataFrame(
    [
        # id, Full Name, Domain, Company
        ("01", "Tony Stark", "stark.com", ""),
        ("02", "Sales", "acme.com", ""),  # a role: sales@acme.com, 2 credits
        ("03", "Jane Roe", "gmail.com", ""),  # free mail: never a person's address, free
        ("04", "  tony   STARK ", "Stark.com", ""),  # the same query as row 01: sent once
        ("05", "Tim Cook", "", "Apple Inc."),  # a company instead of a domain
        ("06", "", "stark.com", ""),  # no name: decided locally
        ("07", "Bruce Wayne", "", ""),  # no domain nor company: decided locally
        ("08", "R2D2 Unit", "droids.com", ""),  # digits: Clearout refuses the name (1088)
        ("09", "Pepper Potts", "stark.com", ""),
        ("10", "Happy Hogan", "stark.com", ""),
        ("11", "Natasha Romanoff", "shield.org", ""),
        ("12", "Clint Barton", "shield.org", ""),
    ],
    columns=["id", "Full Name", "Domain", "Company"],
)
SENT = 9  # distinct queries with a name and a domain or company (rows 01/04 are one)


def run_dag(dag_id: str, tmp_path: Path, **test_kwargs: Any) -> tuple[Any, pd.DataFrame]:
    source = tmp_path / "people.csv"
    if not source.exists():
        PEOPLE.to_csv(source, index=False)
    workdir = tmp_path / "work"
    run = load_dag("dag_finder", dag_id).test(
        run_conf={"source": str(source), "workdir": str(workdir)}, **test_kwargs
    )
    (result,) = workdir.glob(f"{dag_id}/*/find/clearout-finder-result.csv")
    return run, pd.read_csv(result, dtype=str, keep_default_na=False).set_index("id")


def check_result(result: pd.DataFrame, found_by: str) -> None:
    """What every finder result must show for PEOPLE, whichever path answered."""
    assert result.index.tolist() == PEOPLE["id"].tolist()  # every row, in input order
    assert result["Full Name"].tolist() == PEOPLE["Full Name"].tolist()  # input columns untouched
    assert result.loc["02", ["finder_email", "finder_status"]].tolist() == ["sales@acme.com", "found"]
    assert result.loc["03", ["finder_email", "finder_status"]].tolist() == ["", "not_found"]
    assert result.loc["04", "decided_by"] == "local_duplicate"
    assert (
        result.loc["04", ["finder_email", "finder_status"]].tolist()
        == result.loc["01", ["finder_email", "finder_status"]].tolist()
    )
    assert result.loc["06", ["finder_status", "finder_reason", "decided_by"]].tolist() == [
        "not_found",
        "Name missing",
        "local_missing_input",
    ]
    assert result.loc["07", "finder_reason"] == "Domain and company missing"
    assert result.loc["08", "finder_status"] == "not_found"
    assert "nsupported characters" in result.loc["08", "finder_reason"]
    found = result[result["finder_status"] == "found"]
    assert len(found) >= 2
    domains = {"01": "stark.com", "02": "acme.com", "04": "stark.com", "05": "apple.com", "09": "stark.com",
               "10": "stark.com", "11": "shield.org", "12": "shield.org"}  # fmt: skip
    for row_id, row in found.iterrows():
        assert row["finder_email"].endswith("@" + domains[str(row_id)])
        assert 0 < int(row["finder_confidence_score"]) <= 100
        assert row["finder_business"] == "true"
    answered = result[~result.index.isin(["04", "06", "07", "08"])]
    assert set(answered["decided_by"]) == {found_by}


def expected_credits(result: pd.DataFrame) -> int:
    """Clearout's price: 4 per person found, 2 per role address, nothing when not found (duplicates once)."""
    found = result[(result["finder_status"] == "found") & (result["decided_by"] != "local_duplicate")]
    return sum(2 if email.startswith("sales@") else 4 for email in found["finder_email"])


def test_instant_finder_answers_every_row(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    server = sandbox_factory(SandboxSettings(time_scale=0.01))
    clearout_connection(server)

    run, result = run_dag("test_finder_instant", tmp_path)

    assert run.get_task_instance("find").state == "success"
    check_result(result, "clearout_instant_finder")
    assert result.loc["08", "decided_by"] == "clearout_failed"  # refused per query; the task went on
    assert result.loc["02", "finder_role"] == "true"
    assert set(
        result.loc[result["finder_status"] == "found"].drop(index="02", errors="ignore")["finder_role"]
    ) <= {"false"}
    account = server.clearout_stats()
    assert account["instant_calls"] == SENT  # one call per distinct query, no queue polls
    assert account["credits_used"] == expected_credits(result)


def test_instant_finder_follows_a_timed_out_search_through_the_queue(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    # Searches take 0.2 s, the request waits 0.1 s: every search answers 524 with a queue id first.
    server = sandbox_factory(SandboxSettings(time_scale=0.01, finder_search_ms=20_000))
    clearout_connection(server)

    run, result = run_dag("test_finder_instant", tmp_path)

    assert run.get_task_instance("find").state == "success"
    check_result(result, "clearout_instant_finder")
    account = server.clearout_stats()
    assert account["instant_calls"] > SENT  # queue_status polls on top of the searches
    assert account["credits_used"] == expected_credits(result)


def test_a_search_still_queued_when_the_task_ends_is_collected_by_the_rerun_not_repeated(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    # Searches take 1.5 s; the operator stops waiting for a queued one after 0.3 s.
    server = sandbox_factory(SandboxSettings(time_scale=0.01, finder_search_ms=150_000))
    clearout_connection(server)
    when = datetime(2026, 3, 1, tzinfo=UTC)  # the same logical date and run_after: the same run, cleared

    first_run, first = run_dag("test_finder_impatient", tmp_path, logical_date=when, run_after=when)

    assert first_run.get_task_instance("find").state == "success"
    failed = first[first["decided_by"] == "clearout_failed"]
    still_searching = failed[failed["finder_reason"].str.contains("still searching")]
    assert sorted(still_searching.index) == sorted(set(failed.index) - {"08"})  # all but the refused name
    assert len(still_searching) == SENT - 1
    charged = server.clearout_stats()["credits_used"]  # Clearout charges a queued search when it completes
    time.sleep(1.6)

    rerun, second = run_dag("test_finder_impatient", tmp_path, logical_date=when, run_after=when)

    assert rerun.run_id == first_run.run_id
    check_result(second, "clearout_instant_finder")
    assert (
        server.clearout_stats()["credits_used"] == charged == expected_credits(second)
    )  # collected, not searched again


def test_bulk_finder_writes_the_same_result_and_a_rerun_does_not_upload_again(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    server = sandbox_factory(SandboxSettings(time_scale=0.01, bulk_rate=20))
    clearout_connection(server)
    when = datetime(2026, 3, 2, tzinfo=UTC)

    run, result = run_dag("test_finder_bulk", tmp_path, logical_date=when, run_after=when)

    assert run.get_task_instance("find").state == "success"
    check_result(result, "clearout_bulk_finder")
    assert result.loc["08", "decided_by"] == "clearout_bulk_finder"  # in a list, Clearout answers per row
    assert set(result["finder_role"]) == {""}  # the bulk file carries no role flag
    account = server.clearout_stats()
    assert account["finder_uploads"] == 1
    (only,) = account["lists"].values()
    assert (only["kind"], only["status"], only["total"]) == ("finder", "completed", SENT)
    assert account["credits_used"] == expected_credits(result)

    rerun, again = run_dag("test_finder_bulk", tmp_path, logical_date=when, run_after=when)

    assert rerun.get_task_instance("find").state == "success"
    assert (
        server.clearout_stats()["finder_uploads"] == 1
    )  # the completed list was resumed, not uploaded again
    assert server.clearout_stats()["credits_used"] == account["credits_used"]
    pd.testing.assert_frame_equal(again, result)

    # A worker that cannot see the state file uploads the same file again: Clearout's 2043 names the list.
    (state,) = (tmp_path / "work").glob("test_finder_bulk/*/find/clearout_list.json")
    state.unlink()
    third, once_more = run_dag("test_finder_bulk", tmp_path, logical_date=when, run_after=when)

    assert third.get_task_instance("find").state == "success"
    assert server.clearout_stats()["finder_uploads"] == 1
    assert server.clearout_stats()["credits_used"] == account["credits_used"]
    pd.testing.assert_frame_equal(once_more, result)


def test_bulk_finder_waits_on_the_worker_when_not_deferrable(
    tmp_path: Path, sandbox_factory: Factory, clearout_connection: Callable[..., str]
) -> None:
    server = sandbox_factory(SandboxSettings(time_scale=0.01, bulk_rate=20))
    clearout_connection(server)

    run, result = run_dag("test_finder_bulk_sync", tmp_path)

    assert run.get_task_instance("find").state == "success"
    check_result(result, "clearout_bulk_finder")
    assert server.clearout_stats()["finder_uploads"] == 1
