"""The UI's facts reader against reports written by report.write_report: what a report says comes back.

Every report here is written by the real writer from RunFacts, then read back through ObjectStoragePath,
so the test fails the moment the writer's format and the reader drift apart.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from clearout_provider.contacts import ContactCounts
from clearout_provider.report import RunFacts, write_report
from clearout_provider.ui.facts import (
    ReportFormatError,
    find_report,
    read_report,
    read_reports,
    report_html,
    report_markdown,
)

NIGHTLY = "clevertap_nightly_list_cleaning"


def run_facts(**changes: Any) -> RunFacts:
    """A plausible Clearout bulk run: 10 rows, 4 invalid, 1 unknown, 3 unsubscribed, 7 credits."""
    base = RunFacts(
        dag_id=NIGHTLY,
        run_id="scheduled__2026-03-01T00:00:00+00:00",
        mode="bulk",
        exported=12,
        no_email=1,
        fresh=1,
        to_verify=10,
        by_reason={"never_verified": 10},
        rows=10,
        by_status={"valid": 4, "invalid": 4, "catch_all": 1, "unknown": 1},
        by_sub_status_code={"200": 4, "406": 4, "none": 2},
        by_decided_by={"clearout_bulk": 8, "local_syntax": 1, "local_duplicate": 1},
        by_bounce_type={"none": 6, "hard": 4},
        prepared=ContactCounts(total_rows=10, empty=0, syntax_invalid=1, duplicates=1, to_verify=8),
        credits_spent=7,
        credits_unmeasured=0,
        list_ids=("list-1",),
        verify_chunks=1,
        reused=0,
        sent=8,
        credits_needed=8,
        load_input=10,
        updated=6,
        unsubscribed_only=1,
        unchanged=3,
        not_verified=0,
        rejected=0,
        unsubscribed=3,
        resubscribed=0,
        by_rejection_code={},
        by_unsubscribe_reason={"hard_bounce:406": 3},
        by_no_verdict={},
        dry_run=False,
    )
    return replace(base, **changes)


def write(base: ObjectStoragePath, facts: RunFacts, task: str = "report") -> ObjectStoragePath:
    """The report where a run's report task writes it: <base>/<dag>/<run folder>/<task>/."""
    folder = base / facts.dag_id / facts.run_id.replace(":", "_").replace("+", "_") / task
    write_report(facts, folder)
    return folder


@pytest.fixture
def base(tmp_path: Path) -> ObjectStoragePath:
    return ObjectStoragePath(f"file://{tmp_path}/clearout_data")


def test_a_clearout_bulk_report_reads_back(base: ObjectStoragePath) -> None:
    facts = run_facts()
    got = read_report(write(base, facts))
    assert (got.dag_id, got.run_id, got.mode, got.verifier) == (
        facts.dag_id,
        facts.run_id,
        "bulk",
        "clearout",
    )
    assert (got.verified, got.credits_spent, got.unsubscribed) == (10, 7, 3)
    assert got.statuses == facts.by_status
    assert got.invalid_share == pytest.approx(0.4) and got.unknown_share == pytest.approx(0.1)
    assert got.adds_up and not got.dry_run
    assert got.written_at is not None and abs((datetime.now(UTC) - got.written_at).total_seconds()) < 600


def test_a_mailso_run_in_neutral_verdicts(base: ObjectStoragePath) -> None:
    facts = run_facts(
        mode="instant",
        by_status={"deliverable": 5, "undeliverable": 3, "risky": 1, "unknown": 1},
        by_decided_by={"mailso_instant": 9, "mailso_instant_failed": 1},
        list_ids=(),
    )
    got = read_report(write(base, facts))
    assert (got.verifier, got.mode) == ("mailso", "instant")
    assert got.statuses == facts.by_status
    assert got.invalid_share == pytest.approx(0.3) and got.unknown_share == pytest.approx(0.1)


def test_unmeasured_credits_dry_run_and_a_failing_count(base: ObjectStoragePath) -> None:
    unmeasured = read_report(
        write(base, run_facts(run_id="manual__a", credits_spent=None, credits_unmeasured=1))
    )
    assert unmeasured.credits_spent is None
    partly = read_report(write(base, run_facts(run_id="manual__b", credits_spent=1234, credits_unmeasured=1)))
    assert partly.credits_spent == 1234  # "≥ 1,234 (1 chunk(s) not measured)": the lower bound
    dry = read_report(write(base, run_facts(run_id="manual__c", dry_run=True)))
    assert dry.dry_run
    broken = read_report(write(base, run_facts(run_id="manual__d", load_input=11)))
    assert not broken.adds_up


def test_a_run_answered_by_the_ledger_alone_names_no_verifier(base: ObjectStoragePath) -> None:
    got = read_report(write(base, run_facts(by_decided_by={"ledger": 9, "local_syntax": 1})))
    assert got.verifier == ""


def test_odd_run_ids_survive_the_markdown_escaping(base: ObjectStoragePath) -> None:
    run_id = "manual__a|b<c>\\d"
    got = read_report(write(base, run_facts(run_id=run_id)))
    assert got.run_id == run_id


def test_reads_only_the_dags_asked_for_and_skips_what_is_not_a_report(base: ObjectStoragePath) -> None:
    write(base, run_facts(run_id="manual__1"))
    write(base, run_facts(run_id="manual__2"))
    write(base, run_facts(dag_id="other_dag", run_id="manual__3"))
    junk = base / NIGHTLY / "manual__junk" / "report"
    junk.mkdir(parents=True)
    (junk / "report.md").write_text("# notes\n\nnot a report\n")
    moved = base / NIGHTLY / "manual__moved" / "report"  # a report of another DAG, copied here
    write_report(run_facts(dag_id="other_dag", run_id="manual__moved"), moved)

    runs = {r.run_id for r in read_reports(base, [NIGHTLY])}
    assert runs == {"manual__1", "manual__2"}
    assert {r.dag_id for r in read_reports(base, [NIGHTLY, "other_dag", "no_such_dag"])} == {
        NIGHTLY,
        "other_dag",
    }
    assert read_reports(base, []) == []


def test_find_report_opens_one_run_and_its_files(base: ObjectStoragePath) -> None:
    facts = run_facts(run_id="scheduled__2026-03-02T00:00:00+00:00")
    folder = write(base, facts)
    found = find_report(base, NIGHTLY, facts.run_id)
    assert found is not None and found.folder == folder
    html = report_html(found)
    assert html is not None and "<svg" in html and facts.run_id in html
    assert report_markdown(found).startswith("# Clearout verification report")
    assert find_report(base, NIGHTLY, "scheduled__2026-03-03T00:00:00+00:00") is None
    assert find_report(base, "other_dag", facts.run_id) is None
    (folder / "report.html").unlink()
    assert report_html(found) is None


def test_something_else_is_refused_by_name(base: ObjectStoragePath) -> None:
    folder = base / "x" / "y" / "z"
    folder.mkdir(parents=True)
    (folder / "report.md").write_text("# A title\n\n**DAG** x · **run** y\n")
    with pytest.raises(ReportFormatError, match="mode"):
        read_report(folder)
