"""The end-of-run report: facts from the operators' XCom, the accounting check, Markdown + HTML files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath

from clearout_provider.contacts import prepare_contacts
from clearout_provider.report import RunAccountingError, RunFacts, check_accounting, write_report
from clearout_provider.results import (
    RESULT_SCHEMA,
    join_results,
    normalise_instant_result,
    upgrade_columns,
    verdict_table,
)
from clearout_provider.sandbox.clearout_verdicts import TEST_DOMAIN, verdict_for

DAG_ID, RUN_ID = "clevertap_nightly_list_cleaning", "scheduled__2026-03-01T00:00:00+00:00"
SVG = "{http://www.w3.org/2000/svg}svg"
VERIFIED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# (status, sub-status code, bounce type, decided_by) of each result row of the main example:
# 12 rows for 9 addresses sent (1 duplicate, 2 syntax-invalid decided locally).
ROWS = [
    *[("valid", 200, "", "clearout_bulk")] * 5,
    ("valid", 200, "", "local_duplicate"),
    *[("invalid", 406, "hard", "clearout_bulk")] * 2,
    ("invalid", 413, "soft", "clearout_bulk"),
    *[("invalid", 400, "hard", "local_syntax")] * 2,
    ("catch_all", 411, "", "clearout_bulk"),
]
PREPARED = {"total_rows": 12, "empty": 0, "syntax_invalid": 2, "duplicates": 1, "to_verify": 9}
EXTRACT = {
    "path": "/data/extract/profiles.parquet",
    "exported": 20,
    "no_email": 2,
    "fresh": 6,
    "to_verify": 12,
    "by_reason": {"never_verified": 8, "stale": 3, "email_changed": 1},
}
LOAD = {
    "outcome_path": "/data/load/outcome.parquet",
    "input": 12,
    "updated": 8,
    "unsubscribed_only": 1,
    "unchanged": 2,
    "not_verified": 0,
    "rejected": 1,
    "unsubscribed": 5,
    "resubscribed": 0,
    "by_rejection_code": {"515": 1},
    "by_unsubscribe_reason": {"hard_bounce:406": 2, "hard_bounce:400": 2, "spam_trap:401": 1},
    "by_no_verdict": {},
    "dry_run": False,
}


def email_of(chunk: str, i: int) -> str:
    return f"person.{chunk}{i}@example-shop.com"


def result_file(path: Path, rows: list[tuple[str, int | None, str | None, str]], chunk: str = "a") -> Path:
    """A result file as the verify operators write it: input columns, then RESULT_COLUMNS."""
    n = len(rows)
    emails = [email_of(chunk, i) for i in range(n)]
    columns: dict[str, pa.Array] = {
        "identity": pa.array([f"id-{chunk}{i}" for i in range(n)]),
        "email": pa.array(emails),
        "verified_email": pa.array(emails),
        "clearout_status": pa.array([r[0] for r in rows]),
        "clearout_sub_status_code": pa.array([r[1] for r in rows], pa.int32()),
        "verdict_reason": pa.array([f"code {r[1]}" for r in rows]),
        "safe_to_send": pa.array([r[0] == "valid" for r in rows]),
        "bounce": pa.array([r[2] for r in rows]),
        "is_disposable": pa.array([False] * n),
        "is_free": pa.array([False] * n),
        "is_role": pa.array([False] * n),
        "is_gibberish": pa.array([False] * n),
        "suggested_email": pa.array([f"suggest.{chunk}{i}@example-shop.com" for i in range(n)]),
        "verified_at": pa.array([VERIFIED_AT] * n, RESULT_SCHEMA.field("verified_at").type),
        "decided_by": pa.array([r[3] for r in rows]),
    }
    schema = pa.schema([pa.field("identity", pa.string()), pa.field("email", pa.string()), *RESULT_SCHEMA])
    table = upgrade_columns(pa.table(columns)).select(schema.names).cast(schema)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def verify_xcom(
    path: Path,
    rows: list[tuple[str, int | None, str | None, str]],
    prepared: dict[str, int],
    *,
    credits_spent: int | None,
    list_id: str | None,
) -> dict[str, Any]:
    """The verify operators' return value for ``rows``, counted as join_results counts."""
    return {
        "result_path": str(path),
        "list_id": list_id,
        "rows": len(rows),
        "counts": dict(Counter(r[0] for r in rows)),
        "by_sub_status_code": dict(Counter("none" if r[1] is None else str(r[1]) for r in rows)),
        "by_decided_by": dict(Counter(r[3] for r in rows)),
        "prepared": prepared,
        "credits_spent": credits_spent,
        "sent": prepared["to_verify"],
        "reused": 0,
        "credits_needed": prepared["to_verify"],
        "dry_run": False,
    }


def facts_for(tmp_path: Path, **changes: Any) -> RunFacts:
    verify = verify_xcom(
        result_file(tmp_path / "clearout-result.parquet", ROWS),
        ROWS,
        PREPARED,
        credits_spent=9,
        list_id="list-123",
    )
    parts = {"extract": EXTRACT, "verify": verify, "load": LOAD, **changes}
    return RunFacts.from_xcom(
        parts["extract"], parts["verify"], parts["load"], dag_id=DAG_ID, run_id=RUN_ID, mode="bulk"
    )


def read(files_path: str) -> str:
    return Path(files_path).read_text(encoding="utf-8")


def parse_html(text: str) -> ET.Element:
    """Strict XML parse: the report is polyglot XHTML, so any unbalanced or unescaped markup fails here."""
    return ET.fromstring(text)


def test_report_shows_counts_credits_and_outcomes(tmp_path: Path) -> None:
    facts = facts_for(tmp_path)
    files = write_report(facts, tmp_path / "report")
    md = read(files.markdown)

    assert files.markdown == str(tmp_path / "report" / "report.md")
    for line in (
        "| Valid | 6 | 50.0% |",
        "| Invalid | 5 | 41.7% |",
        "| Catch All | 1 | 8.3% |",
        "| 406 | Mailbox Not Found | 2 | 16.7% |",
        "| 413 | Mailbox Quota Exceeded | 1 | 8.3% |",
        "| 400 | Syntax Error | 2 | 16.7% |",
        "| hard bounce | 4 | 33.3% |",
        "| soft bounce | 1 | 8.3% |",
        "| no bounce | 7 | 58.3% |",
        "| spent (Clearout balance before − after) | 9 |",
        "| addresses sent to Clearout | 9 |",
        "| saved: duplicates (same address twice) | 1 |",
        "| saved: syntax invalid (decided locally) | 2 |",
        "| saved: fresh (verified recently; skipped) | 6 |",
        "| saved in total | 9 |",
        "| updated | 8 |",
        "| rejected | 1 |",
        "| 515 | email invalid | 1 |",
        "| hard_bounce:406 | 2 |",
        "| spam_trap:401 | 1 |",
        "|   of which never verified | 8 |",
        "| extract | exported = no email + fresh + to verify | 20 = 2 + 6 + 12 | ✓ |",
        "| load | load input = updated + unsubscribed only + unchanged + not verified + rejected "
        "| 12 = 8 + 1 + 2 + 0 + 1 | ✓ |",
        "| ledger | unique to verify = from the verdict ledger + sent to Clearout + held back (dry run) "
        "| 9 = 0 + 9 + 0 | ✓ |",
    ):
        assert line in md, line
    assert "**mode** bulk" in md and "list-123" in md
    assert "✗" not in md
    check_accounting(facts)  # adds up: no exception


def test_html_is_well_formed_self_contained_with_svg_charts(tmp_path: Path) -> None:
    files = write_report(facts_for(tmp_path), tmp_path)
    text = read(files.html)
    root = parse_html(text)

    charts = root.findall(f".//{SVG}")
    assert len(charts) >= 5  # status, sub-status, bounce, credits, extract, write-back
    assert all(c.find("{http://www.w3.org/2000/svg}rect") is not None for c in charts)
    words = " ".join(root.itertext())
    assert "Mailbox Not Found" in words and "hard bounce" in words and "✓ adds up" in words
    # Self-contained: no script, stylesheet link, image or any fetched URL.
    assert root.find(".//script") is None and root.find(".//link") is None and root.find(".//img") is None
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text


def test_values_are_escaped_in_html_and_markdown(tmp_path: Path) -> None:
    verify = verify_xcom(
        result_file(tmp_path / "r.parquet", ROWS), ROWS, PREPARED, credits_spent=9, list_id="<b>list</b>"
    )
    facts = RunFacts.from_xcom(
        EXTRACT, verify, LOAD, dag_id="nightly", run_id='manual__<script>alert("x")</script>&|', mode="bulk"
    )
    files = write_report(facts, tmp_path)
    html_text = read(files.html)
    parse_html(html_text)  # an unescaped < or & would break the parse
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text
    assert "<b>list</b>" not in html_text
    assert "<script>" not in read(files.markdown) and "\\|" in read(files.markdown)


def test_no_email_address_reaches_either_file_or_the_summary(tmp_path: Path) -> None:
    files = write_report(facts_for(tmp_path), tmp_path)
    for text in (read(files.markdown), read(files.html), files.summary):
        assert "@" not in text
        assert email_of("a", 0) not in text and "example-shop.com" not in text


def test_summary_is_a_few_lines_for_the_log(tmp_path: Path) -> None:
    files = write_report(facts_for(tmp_path), tmp_path)
    lines = files.summary.splitlines()

    assert 4 <= len(lines) <= 7
    assert "20 exported, 12 to verify, 6 fresh, 2 without email" in lines[0]
    assert "Valid 6 · Invalid 5 · Catch All 1" in files.summary
    assert "9 spent, 9 saved (duplicates 1, syntax/empty 2, fresh 6, ledger 0)" in files.summary
    assert "8 updated, 5 unsubscribed, 0 resubscribed, 0 not verified, 1 rejected" in files.summary
    assert "✓ all 10 checks add up" in files.summary
    assert files.html in files.summary


def test_mismatch_raises_naming_the_equation_after_the_report_is_written(tmp_path: Path) -> None:
    facts = facts_for(tmp_path, load={**LOAD, "updated": 7})
    files = write_report(facts, tmp_path)

    with pytest.raises(RunAccountingError) as raised:
        check_accounting(facts)
    message = str(raised.value)
    assert (
        "load: load input = updated + unsubscribed only + unchanged + not verified + rejected: "
        "12 ≠ 7 + 1 + 2 + 0 + 1 (= 11)" in message
    )
    assert "1 of 10 checks fail" in message
    assert "extract" not in message  # only the failing equation is listed
    md = read(files.markdown)
    assert "✗ The counts do not add up" in md
    assert (
        "| load | load input = updated + unsubscribed only + unchanged + not verified + rejected "
        "| 12 ≠ 7 + 1 + 2 + 0 + 1 (= 11) | ✗ |" in md
    )
    assert "✗ 1 check(s) fail" in files.summary
    assert 'class="bad"' in read(files.html)


def test_hand_over_mismatch_between_extract_and_verify_is_caught(tmp_path: Path) -> None:
    facts = facts_for(tmp_path, extract={**EXTRACT, "exported": 21, "to_verify": 13})
    with pytest.raises(RunAccountingError, match=r"extract → verify: to verify = verify rows: 13 ≠ 12"):
        check_accounting(facts)


def test_result_file_rows_must_match_the_verify_counts(tmp_path: Path) -> None:
    """The bounce counts come from the file: a file that is not the one the counts describe is caught."""
    short = result_file(tmp_path / "short.parquet", ROWS[:-1])
    verify = {**verify_xcom(short, ROWS, PREPARED, credits_spent=9, list_id="l"), "result_path": str(short)}
    facts = facts_for(tmp_path, verify=verify)
    with pytest.raises(
        RunAccountingError, match=r"result files: verify rows = rows read from the result files"
    ):
        check_accounting(facts)


def test_mapped_chunks_are_summed(tmp_path: Path) -> None:
    chunk_b = [
        ("valid", 200, "", "clearout_bulk"),
        ("invalid", 406, "hard", "clearout_bulk"),
        ("unknown", None, None, "missing_from_result"),
    ]
    prepared_b = {"total_rows": 3, "empty": 0, "syntax_invalid": 0, "duplicates": 0, "to_verify": 3}
    verify = [
        verify_xcom(
            result_file(tmp_path / "a.parquet", ROWS), ROWS, PREPARED, credits_spent=9, list_id="list-a"
        ),
        verify_xcom(
            result_file(tmp_path / "b.csv", chunk_b, chunk="b"),
            chunk_b,
            prepared_b,
            credits_spent=3,
            list_id="list-b",
        ),
    ]
    load_b = {
        "input": 3,
        "updated": 2,
        "unsubscribed_only": 0,
        "unchanged": 0,
        "rejected": 1,
        "unsubscribed": 1,
    }
    load = [LOAD, {**LOAD, **load_b, "by_rejection_code": {"515": 0, "no_verdict": 1}}]
    extract = [
        EXTRACT,
        {**EXTRACT, "exported": 5, "no_email": 1, "fresh": 1, "to_verify": 3, "by_reason": {"stale": 3}},
    ]
    facts = RunFacts.from_xcom(extract, verify, load, dag_id="backfill", run_id="r1", mode="bulk")

    assert facts.rows == 15 and facts.to_verify == 15 and facts.exported == 25
    assert facts.by_status == {"valid": 7, "invalid": 6, "catch_all": 1, "unknown": 1}
    assert facts.by_sub_status_code["406"] == 3 and facts.by_sub_status_code["none"] == 1
    assert facts.by_bounce_type == {"none": 9, "hard": 5, "soft": 1}  # CSV chunk counted too
    assert facts.by_reason == {"never_verified": 8, "stale": 6, "email_changed": 1}
    assert facts.prepared.to_verify == 12 and facts.credits_spent == 12 and facts.credits_saved == 1 + 2 + 7
    assert facts.by_rejection_code == {"515": 1, "no_verdict": 1} and facts.load_input == 15
    assert facts.list_ids == ("list-a", "list-b") and facts.verify_chunks == 2
    check_accounting(facts)
    md = read(write_report(facts, tmp_path).markdown)
    assert "list-a, list-b" in md and "**chunks** 2" in md
    assert "| no_verdict | no verdict | 1 |" in md
    assert "| none | no sub-status (no Clearout answer) | 1 |" in md


def test_a_lazy_xcom_sequence_counts_like_a_list(tmp_path: Path) -> None:
    """Airflow hands a mapped task's XCom over as a read-only sequence, not a list."""
    verify = verify_xcom(
        result_file(tmp_path / "a.parquet", ROWS), ROWS, PREPARED, credits_spent=9, list_id="x"
    )
    facts = RunFacts.from_xcom((EXTRACT,), (verify,), (LOAD,), dag_id="d", run_id="r", mode="bulk")
    assert facts.rows == 12 and facts.updated == 8


def test_nothing_to_verify_is_a_valid_empty_run(tmp_path: Path) -> None:
    """A second nightly run right after the first: everything fresh, no chunk verified, nothing spent."""
    extract = {**EXTRACT, "exported": 20, "no_email": 2, "fresh": 18, "to_verify": 0, "by_reason": {}}
    facts = RunFacts.from_xcom(extract, [], [], dag_id="d", run_id="r2", mode="instant")
    check_accounting(facts)
    files = write_report(facts, tmp_path)
    parse_html(read(files.html))
    md = read(files.markdown)
    assert "| saved: fresh (verified recently; skipped) | 18 |" in md
    assert "| spent (Clearout balance before − after) | 0 |" in md and facts.credits_spent == 0
    assert "nothing verified" in files.summary


def test_instant_run_with_unmeasured_credits(tmp_path: Path) -> None:
    rows = ROWS[:3]
    prepared = {"total_rows": 3, "empty": 0, "syntax_invalid": 0, "duplicates": 0, "to_verify": 3}
    measured = verify_xcom(
        result_file(tmp_path / "i.parquet", rows), rows, prepared, credits_spent=3, list_id=None
    )
    unmeasured = verify_xcom(
        result_file(tmp_path / "j.parquet", rows, "j"), rows, prepared, credits_spent=None, list_id=None
    )
    chunks = [{**measured, "mode": "instant"}, unmeasured]
    extract = {**EXTRACT, "exported": 6, "no_email": 0, "fresh": 0, "to_verify": 6}
    load = {
        **LOAD,
        "input": 6,
        "updated": 6,
        "unsubscribed_only": 0,
        "unchanged": 0,
        "rejected": 0,
        "by_rejection_code": {},
    }
    facts = RunFacts.from_xcom(extract, chunks, load, dag_id="d", run_id="r", mode="instant")

    assert facts.credits_spent == 3 and facts.credits_unmeasured == 1 and facts.list_ids == ()
    md = read(write_report(facts, tmp_path).markdown)
    assert "| spent (Clearout balance before − after) | ≥ 3 (1 chunk(s) not measured) |" in md
    assert "**Clearout list(s)** none" in md and "CleverTap rejections" not in md

    none_measured = RunFacts.from_xcom(extract, [unmeasured] * 2, load, dag_id="d", run_id="r", mode="bulk")
    assert none_measured.credits_spent is None
    assert "| spent (Clearout balance before − after) | not measured |" in read(
        write_report(none_measured, tmp_path / "unmeasured").markdown
    )


def test_writes_to_an_object_storage_path_and_shows_timings(tmp_path: Path) -> None:
    verify = verify_xcom(
        result_file(tmp_path / "r.parquet", ROWS), ROWS, PREPARED, credits_spent=9, list_id="l"
    )
    facts = RunFacts.from_xcom(
        EXTRACT, verify, LOAD, dag_id="d", run_id="r", mode="bulk", timings={"extract": 2.5, "verify": 95.25}
    )
    folder = ObjectStoragePath(f"file://{tmp_path}/store/run")
    files = write_report(facts, folder)

    assert (folder / "report.md").exists() and (folder / "report.html").exists()
    with (folder / "report.md").open("r") as stream:
        md = stream.read()
    assert "| verify | 1 min 35.2 s |" in md and "| extract | 2.5 s |" in md
    with (folder / "report.html").open("r") as stream:
        assert len(parse_html(stream.read()).findall(f".//{SVG}")) >= 6
    assert files.html.endswith("report.html")


def test_dry_run_is_said_out_loud(tmp_path: Path) -> None:
    files = write_report(facts_for(tmp_path, load={**LOAD, "dry_run": True}), tmp_path)
    assert "dry run: nothing was written" in read(files.markdown)
    assert "(dry run: nothing written)" in files.summary


def test_bad_input_gets_a_named_error(tmp_path: Path) -> None:
    verify = verify_xcom(
        result_file(tmp_path / "r.parquet", ROWS), ROWS, PREPARED, credits_spent=9, list_id="l"
    )
    with pytest.raises(ValueError, match=r"the load XCom has no 'updated'"):
        RunFacts.from_xcom(
            EXTRACT,
            verify,
            {k: v for k, v in LOAD.items() if k != "updated"},
            dag_id="d",
            run_id="r",
            mode="bulk",
        )
    with pytest.raises(ValueError, match="mode must be one of"):
        RunFacts.from_xcom(EXTRACT, verify, LOAD, dag_id="d", run_id="r", mode="turbo")
    with pytest.raises(FileNotFoundError, match="gone.*bounce types"):
        RunFacts.from_xcom(
            EXTRACT,
            {**verify, "result_path": str(tmp_path / "missing.parquet")},
            LOAD,
            dag_id="d",
            run_id="r",
            mode="bulk",
        )
    with pytest.raises(TypeError, match="return dict"):
        not_dicts: list[Any] = ["x"]
        RunFacts.from_xcom(EXTRACT, not_dicts, LOAD, dag_id="d", run_id="r", mode="bulk")


def test_facts_from_a_real_prepare_and_join(tmp_path: Path) -> None:
    """The counts join_results really produces, and the file it really writes, add up in the report."""
    locals_ = ["valid", "hard_bounce", "soft_bounce", "spamtrap", "catch_all"]
    emails = [f"{local}@{TEST_DOMAIN}" for local in locals_] + [f"VALID@{TEST_DOMAIN}", "not-an-address"]
    source = tmp_path / "profiles.csv"
    source.write_text("identity,email\n" + "".join(f"id{i},{e}\n" for i, e in enumerate(emails)))
    prepared = prepare_contacts(source, workdir=tmp_path / "work")
    answers = [
        normalise_instant_result(verdict_for(e).as_instant(VERIFIED_AT)) for e in prepared.emails_to_verify()
    ]
    summary = join_results(prepared.rows_path, verdict_table(answers), tmp_path / "clearout-result.parquet")
    verify = {
        "result_path": summary.out_path,
        "list_id": None,
        "rows": summary.rows,
        "counts": summary.by_status,
        "by_sub_status_code": summary.by_sub_status_code,
        "by_decided_by": summary.by_decided_by,
        "prepared": asdict(prepared.counts),
        "credits_spent": prepared.counts.to_verify,
        "mode": "instant",
        "sent": prepared.counts.to_verify,
        "reused": 0,
        "credits_needed": prepared.counts.to_verify,
    }
    extract = {**EXTRACT, "exported": 9, "no_email": 2, "fresh": 0, "to_verify": 7, "by_reason": {}}
    load = {**LOAD, "input": 7, "updated": 6, "unsubscribed_only": 0, "unchanged": 0, "rejected": 1}
    facts = RunFacts.from_xcom(extract, verify, load, dag_id="d", run_id="r", mode="instant")

    check_accounting(facts)
    # 406 hard; 413 and 401 soft; the malformed address is a local syntax error (400, hard).
    assert facts.by_bounce_type == {"none": 3, "hard": 2, "soft": 2}
    assert facts.credits_spent == 5 and facts.credits_saved_by == {
        "duplicates": 1,
        "syntax_invalid": 1,
        "empty": 0,
        "fresh": 0,
        "ledger": 0,
    }
    files = write_report(facts, tmp_path / "report")
    md = read(files.markdown)
    assert "| 401 | Spam Trap / Honeypot | 1 | 14.3% |" in md and "| Valid | 2 | 28.6% |" in md
    for text in (md, read(files.html), files.summary):
        assert TEST_DOMAIN not in text and "not-an-address" not in text
