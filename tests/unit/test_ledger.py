"""The verdict ledger (clearout_provider.verification.ledger): what is recorded, reused and erased.

Real files on local disk (and one in-memory fsspec store, which cannot append), no mocks: the ledger is
only ever files, so these tests read back exactly what a later run would read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from fsspec.implementations.memory import MemoryFileSystem

from clearout_provider.clearout.statuses import VERDICT_OF_STATUS, Status
from clearout_provider.contacts import Freshness
from clearout_provider.results import VERDICT_SCHEMA, DecidedBy
from clearout_provider.verification.ledger import VerdictLedger, ledger_schema
from clearout_provider.verification.plan import not_sent

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DEFAULT = Freshness()  # 30 days, 1 day for uncertain verdicts


def verdict(
    address: str, status: str = "valid", *, days_ago: float = 0, decided_by: str = "clearout_bulk"
) -> dict:
    return {
        "normalised_email": address,
        "verified_email": address,
        "verifier": "clearout",
        "verdict": VERDICT_OF_STATUS[Status(status)].value,
        "clearout_status": status,
        "clearout_sub_status_code": {"valid": 200, "invalid": 406, "catch_all": 411, "unknown": 407}[status],
        "bounce": "hard" if status == "invalid" else "",
        "verified_at": NOW - timedelta(days=days_ago),
        "decided_by": decided_by,
    }


def table(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=VERDICT_SCHEMA)


@pytest.fixture
def ledger(tmp_path: Path) -> VerdictLedger:
    return VerdictLedger(tmp_path / "ledger")


def looked_up(ledger: VerdictLedger, *addresses: str, **kw) -> dict[str, str]:
    found = ledger.lookup(list(addresses), kw.pop("freshness", DEFAULT), now=NOW, **kw)
    assert set(found["decided_by"].to_pylist()) <= {DecidedBy.LEDGER.value}
    return dict(zip(found["normalised_email"].to_pylist(), found["clearout_status"].to_pylist(), strict=True))


def test_a_recorded_verdict_is_reused_within_its_ttl_and_not_after(ledger: VerdictLedger) -> None:
    ledger.record(
        table(
            verdict("new@x.io", days_ago=2),
            verdict("old@x.io", days_ago=45),
            verdict("bad@x.io", "invalid", days_ago=29),
        ),
        source="list-1",
        recorded_by="dag/run/task/",
    )
    assert looked_up(ledger, "new@x.io", "old@x.io", "bad@x.io", "never@x.io") == {
        "new@x.io": "valid",
        "bad@x.io": "invalid",
    }


def test_uncertain_verdicts_are_reused_for_the_short_ttl_only(ledger: VerdictLedger) -> None:
    ledger.record(
        table(verdict("grey@x.io", "unknown", days_ago=0.5), verdict("catch@x.io", "catch_all", days_ago=3)),
        source="instant",
        recorded_by="d/r/t/",
    )
    assert looked_up(ledger, "grey@x.io", "catch@x.io") == {"grey@x.io": "unknown"}


def test_the_latest_verdict_of_an_address_wins(ledger: VerdictLedger) -> None:
    ledger.record(table(verdict("a@x.io", "valid", days_ago=3)), source="l1", recorded_by="d/r1/t/")
    ledger.record(table(verdict("a@x.io", "invalid", days_ago=1)), source="l2", recorded_by="d/r2/t/")
    assert looked_up(ledger, "a@x.io") == {"a@x.io": "invalid"}
    assert len(ledger.entries(["a@x.io"])) == 2  # both are kept: the ledger is append-only


def test_a_task_instance_reuses_its_own_verdicts_whatever_their_age(ledger: VerdictLedger) -> None:
    """A retry never pays again for what its earlier try bought, even with ttl 0 (re-verify everything)."""
    ledger.record(table(verdict("a@x.io", days_ago=2)), source="l1", recorded_by="d/run1/verify/0/")
    zero = Freshness(ttl_days=0, uncertain_ttl_days=0)
    assert looked_up(ledger, "a@x.io", freshness=zero) == {}
    assert looked_up(ledger, "a@x.io", freshness=zero, always_from="d/run1/verify/0/") == {"a@x.io": "valid"}
    assert looked_up(ledger, "a@x.io", freshness=zero, always_from="d/run1/verify/1/") == {}


def test_no_verdict_rows_and_reused_rows_are_never_recorded(ledger: VerdictLedger) -> None:
    """A failure is never a verdict: it must stay due, so the ledger must not answer for it."""
    failed = not_sent(["timeout@x.io"], DecidedBy.CLEAROUT_INSTANT_FAILED, "not verified: ClearoutTimeout")
    dry = not_sent(["dry@x.io"], DecidedBy.DRY_RUN, "dry run")
    reused = table(verdict("old@x.io", decided_by=DecidedBy.LEDGER.value))
    assert ledger.record(pa.concat_tables([failed, dry, reused]), source="x", recorded_by="d/r/t/") == 0
    assert ledger.entries().num_rows == 0


def test_billable_follows_clearouts_credit_rule(ledger: VerdictLedger) -> None:
    ledger.record(
        table(
            verdict("v@x.io"),
            verdict("i@x.io", "invalid"),
            verdict("c@x.io", "catch_all"),
            verdict("u@x.io", "unknown"),
        ),
        source="l",
        recorded_by="d/r/t/",
    )
    billable = dict(zip(*(ledger.entries()[c].to_pylist() for c in ("address", "billable")), strict=True))
    assert billable == {"v@x.io": True, "i@x.io": True, "c@x.io": True, "u@x.io": False}


def test_journal_answers_are_durable_before_close_and_compacted_after(ledger: VerdictLedger) -> None:
    """An instant batch killed mid-way keeps every answer it paid for (a torn last line is skipped)."""
    journal = ledger.journal(source="instant", recorded_by="d/r/t/")
    journal.add(verdict("one@x.io"))
    journal.add(verdict("two@x.io", "invalid"))
    assert looked_up(ledger, "one@x.io", "two@x.io") == {"one@x.io": "valid", "two@x.io": "invalid"}
    (journal_file,) = ledger.folder.glob("journal-*.jsonl")
    with journal_file.open("a") as handle:
        handle.write('{"address": "torn@x.io", "clearout_st')  # a crash mid-line
    assert looked_up(ledger, "one@x.io", "torn@x.io") == {"one@x.io": "valid"}
    journal.close()
    assert not list(ledger.folder.glob("journal-*")) and len(list(ledger.folder.glob("segment-*"))) == 1
    assert looked_up(ledger, "one@x.io", "two@x.io") == {"one@x.io": "valid", "two@x.io": "invalid"}


def test_parallel_writers_never_lose_a_verdict(ledger: VerdictLedger) -> None:
    """Mapped tasks record at the same time: each writes files of its own, nothing is read-modify-written."""

    def write(n: int) -> None:
        ledger.record(
            table(*(verdict(f"{n}-{i}@x.io") for i in range(50))), source=f"l{n}", recorded_by=f"d/r/t/{n}/"
        )
        with ledger.journal(source="instant", recorded_by=f"d/r/i/{n}/") as journal:
            for i in range(20):
                journal.add(verdict(f"{n}-instant-{i}@x.io"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(16)))
    assert ledger.entries().num_rows == 16 * 70
    assert len(looked_up(ledger, *(f"{n}-{i}@x.io" for n in range(16) for i in range(50)))) == 800


def test_a_second_verifier_lives_beside_the_first(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    VerdictLedger(root).record(table(verdict("a@x.io")), source="l", recorded_by="d/r/t/")
    assert looked_up(VerdictLedger(root, verifier="mailso"), "a@x.io") == {}
    assert (root / "verifier=clearout").is_dir()


def test_erase_removes_an_address_everywhere_and_keeps_the_rest(ledger: VerdictLedger) -> None:
    ledger.record(table(verdict("gone@x.io"), verdict("kept@x.io")), source="l", recorded_by="d/r/t/")
    journal = ledger.journal(source="instant", recorded_by="d/r/i/")
    journal.add(verdict("gone@x.io", "invalid"))  # an open journal holds it too
    assert ledger.erase(["  Gone@X.io "]) == 2  # normalised like every address the ledger keys
    assert looked_up(ledger, "gone@x.io", "kept@x.io") == {"kept@x.io": "valid"}
    raw = b"".join(p.read_bytes() for p in ledger.folder.iterdir())
    assert b"gone@x.io" not in raw


@pytest.mark.slow  # two Python processes that import pyarrow and Airflow: ~6 s on a 2-core machine
def test_the_command_line_shows_and_erases(ledger: VerdictLedger) -> None:
    ledger.record(table(verdict("cli@x.io")), source="l", recorded_by="d/r/t/")
    run = [sys.executable, "-m", "clearout_provider.verification.ledger"]
    root = ["--root", str(ledger.folder.parent)]
    shown = subprocess.run([*run, "show", "cli@x.io", *root], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout)["clearout_status"] == "valid"
    erased = subprocess.run([*run, "erase", "cli@x.io", *root], capture_output=True, text=True, check=False)
    assert erased.returncode == 0, erased.stderr[-2000:]
    assert "erased 1 records" in erased.stdout
    assert ledger.entries().num_rows == 0


def test_an_object_store_ledger_works_without_append() -> None:
    """Object stores cannot append: the journal writes one small object per answer instead."""
    attach("memory", fs=MemoryFileSystem())
    root = ObjectStoragePath(f"memory://ledger-test-{uuid.uuid4().hex}/ledger")
    ledger = VerdictLedger(root)
    with ledger.journal(source="instant", recorded_by="d/r/t/") as journal:
        journal.add(verdict("a@x.io"))
        journal.add(verdict("b@x.io", "invalid"))
        assert looked_up(ledger, "a@x.io", "b@x.io") == {"a@x.io": "valid", "b@x.io": "invalid"}
    ledger.record(table(verdict("c@x.io")), source="l", recorded_by="d/r/t/")
    assert looked_up(ledger, "a@x.io", "b@x.io", "c@x.io") == {
        "a@x.io": "valid",
        "b@x.io": "invalid",
        "c@x.io": "valid",
    }
    assert all(p.name.startswith("segment-") for p in ledger.folder.iterdir())


def test_schema_keeps_the_vendor_detail_and_provenance() -> None:
    names = ledger_schema().names
    assert names[0] == "address"
    assert {"clearout_sub_status_code", "source", "billable", "recorded_by"} <= set(names)
