"""Clearout answers → this provider's result columns, and the join back onto every input row."""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from clearout_provider.contacts import prepare_contacts
from clearout_provider.results import (
    RESULT_SCHEMA,
    VERDICT_SCHEMA,
    MalformedResultFile,
    ResultAccountingError,
    ResultsError,
    ResultSummary,
    join_results,
    normalise_bulk_result,
    normalise_instant_result,
    verdict_table,
)
from clearout_provider.sandbox.clearout_verdicts import TEST_ADDRESSES, TEST_DOMAIN, verdict_for
from clearout_provider.verdicts import BULK_RESULT_COLUMNS, RESULT_COLUMNS
from clearout_provider.verification.model import DETAIL_COLUMNS

VERIFIED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def bulk_csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header or ["Email", *BULK_RESULT_COLUMNS])
    writer.writerows(rows)
    path.write_text(out.getvalue())
    return path


def clearout_row(email: str, status: str, reason: str, **overrides: str) -> list[str]:
    """A bulk result row in Clearout's spelling; columns by their verdicts.BULK_RESULT_COLUMNS name."""
    values = dict.fromkeys(BULK_RESULT_COLUMNS, "")
    values.update(
        {
            "Clearout Safe to Send": "Yes",
            "Clearout Verification Status": status,
            "Clearout Reason": reason,
            "Clearout Disposable Status": "No",
            "Clearout Free Account Status": "No",
            "Clearout Role Account Status": "No",
            "Clearout Gibberish Status": "No",
            "Clearout Verified At (UTC)": "2026-01-02T03:04:05.678Z",
        }
    )
    for key, value in overrides.items():
        name = f"Clearout {key.replace('_', ' ')}"
        assert name in values, name
        values[name] = value
    return [email, *values.values()]


# ------------------------------------------------------------------------------------ bulk result


def test_bulk_result_written_by_the_sandbox_reads_back_exactly(tmp_path: Path) -> None:
    addresses = [f"{local}@{TEST_DOMAIN}" for local in TEST_ADDRESSES] + ["someone@gmail.com", "x@gmial.com"]
    rendered = [verdict_for(a) for a in addresses]
    path = bulk_csv(tmp_path / "r.csv", [[v.email, *v.as_bulk_row(VERIFIED)] for v in rendered])
    table = normalise_bulk_result(path)
    assert table.schema == VERDICT_SCHEMA
    for row, verdict in zip(table.to_pylist(), rendered, strict=True):
        assert row["normalised_email"] == verdict.email.lower()
        assert row["clearout_sub_status_code"] == verdict.sub.code
        assert row["verdict_reason"] == verdict.sub.desc
        assert row["clearout_status"] == verdict.status.value
        assert row["bounce"] == verdict.sub.bounce.value
        assert (
            row["safe_to_send"]
            == {"yes": True, "no": False, "risky": False, "unknown": None}[verdict.safe_to_send]
        )
        assert (
            row["is_disposable"],
            row["is_free"],
            row["is_role"],
            row["is_gibberish"],
        ) == (
            verdict.disposable,
            verdict.free,
            verdict.role,
            verdict.gibberish,
        )
        assert row["suggested_email"] == (verdict.suggested or None)
        assert row["verified_at"] == VERIFIED
        assert row["decided_by"] == "clearout_bulk"


def test_bulk_labels_flags_and_times_in_every_spelling(tmp_path: Path) -> None:
    path = bulk_csv(
        tmp_path / "r.csv",
        [
            clearout_row("A@Example.com", "Catch All", "Catch-All Server", Safe_to_Send="Risky"),
            clearout_row("b@example.com", "catch-all", "catch-all server "),
            clearout_row(
                "c@example.com",
                "Invalid",
                "Mailbox Not Found",
                Bounce_Type="Hard",
                Safe_to_Send="No",
                **{"Verified At (UTC)": "2026-01-02 03:04:05"},
            ),
            clearout_row(
                "d@example.com",
                "Unknown",
                "Greylisted",
                Safe_to_Send="Unknown",
                **{"Verified At (UTC)": "not a time", "Role Account Status": "Yes"},
            ),
        ],
    )
    rows = normalise_bulk_result(path).to_pylist()
    assert [r["clearout_status"] for r in rows] == ["catch_all", "catch_all", "invalid", "unknown"]
    assert [r["clearout_sub_status_code"] for r in rows] == [411, 411, 406, 407]
    assert [r["safe_to_send"] for r in rows] == [False, True, False, None]
    assert [r["verified_at"] for r in rows] == [
        VERIFIED,
        VERIFIED,
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        None,
    ]
    assert rows[2]["bounce"] == "hard"
    assert rows[3]["is_role"] is True
    assert rows[0]["normalised_email"] == "a@example.com" and rows[0]["verified_email"] == "A@Example.com"


def test_unrecognised_reason_keeps_its_text_and_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = bulk_csv(
        tmp_path / "r.csv",
        [
            clearout_row("a@example.com", "Invalid", "Brand New Reason"),
            clearout_row("b@example.com", "Strange Label", "Mailbox Not Found"),
            clearout_row("c@example.com", "Strange Label", "Another New Reason"),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="clearout_provider.results"):
        rows = normalise_bulk_result(path).to_pylist()
    assert (rows[0]["clearout_sub_status_code"], rows[0]["verdict_reason"]) == (None, "Brand New Reason")
    assert rows[0]["clearout_status"] == "invalid"
    assert rows[1]["clearout_status"] == "invalid"  # unreadable label: the sub-status decides
    assert rows[2]["clearout_status"] == "unknown"  # neither readable: unknown
    assert "Brand New Reason" in caplog.text and "Strange Label" in caplog.text
    assert "a@example.com" not in caplog.text


def test_bulk_result_without_clearout_columns_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedResultFile, match=r"columns \['Clearout Safe to Send'"):
        normalise_bulk_result(bulk_csv(tmp_path / "a.csv", [["a@example.com"]], header=["Email"]))
    with pytest.raises(MalformedResultFile, match="no email column"):
        normalise_bulk_result(bulk_csv(tmp_path / "b.csv", [], header=["Address", *BULK_RESULT_COLUMNS]))


def test_empty_bulk_result_is_an_empty_table(tmp_path: Path) -> None:
    table = normalise_bulk_result(bulk_csv(tmp_path / "r.csv", []))
    assert table.num_rows == 0 and table.schema == VERDICT_SCHEMA


# ------------------------------------------------------------------------------------ instant result


def test_instant_result_from_the_sandbox_shape() -> None:
    verdict = verdict_for(f"catch_all@{TEST_DOMAIN}")
    row = normalise_instant_result(verdict.as_instant(VERIFIED))
    assert row == {
        "normalised_email": "catch_all@example.com",
        "verified_email": "catch_all@example.com",
        "verifier": "clearout",
        "verdict": "risky",
        "verdict_reason": "Catch-All Server",
        "safe_to_send": False,
        "bounce": "",
        "is_disposable": False,
        "is_free": False,
        "is_role": False,
        "is_catch_all": True,
        "is_gibberish": False,
        "is_spam_trap": False,
        "verdict_score": None,
        "suggested_email": None,
        "verified_at": VERIFIED,
        "clearout_status": "catch_all",
        "clearout_sub_status_code": 411,
        **dict.fromkeys(DETAIL_COLUMNS["mailso"]),
        "decided_by": "clearout_instant",
    }
    assert list(row) == ["normalised_email", *RESULT_COLUMNS]


def test_instant_result_with_a_code_the_table_does_not_know_keeps_it() -> None:
    row = normalise_instant_result(
        {
            "email_address": "X@Example.com",
            "status": "catch-all",
            "sub_status": {"code": 999, "desc": "New Thing"},
        }
    )
    assert (row["clearout_sub_status_code"], row["verdict_reason"]) == (999, "New Thing")
    assert row["clearout_status"] == "catch_all"
    assert row["verified_at"] is None and row["safe_to_send"] is None


# ------------------------------------------------------------------------------------------- join

CONTACTS = """id,Email,phone
1,Ann@Example.com,007
2,bob@example.com,008
3,ANN@example.com,009
4,not-an-address,010
5,,011
6,carol@example.com,012
7,CAROL@example.com,013
"""


@pytest.fixture
def prepared(tmp_path: Path):
    source = tmp_path / "contacts.csv"
    source.write_text(CONTACTS)
    return prepare_contacts(source, workdir=tmp_path / "work")


@pytest.fixture
def answers(tmp_path: Path) -> Path:
    # carol@example.com is missing: a cancelled list came back short.
    return bulk_csv(
        tmp_path / "clearout.csv",
        [
            clearout_row("ann@example.com", "Valid", "Success", Free_Account_Status="Yes"),
            clearout_row(
                "bob@example.com", "Invalid", "Mailbox Not Found", Safe_to_Send="No", Bounce_Type="Hard"
            ),
        ],
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_join_keeps_every_row_in_order_with_its_input_columns(
    prepared, answers: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"result{suffix}"
    summary = join_results(prepared.rows_path, normalise_bulk_result(answers), out)
    if suffix == ".parquet":
        table = pq.read_table(out)
    else:
        table = pacsv.read_csv(
            out,
            convert_options=pacsv.ConvertOptions(
                column_types={"id": pa.string(), "phone": pa.string()}, strings_can_be_null=True
            ),
        )
    assert table.column_names == ["id", "Email", "phone", *RESULT_COLUMNS]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5", "6", "7"]
    assert [r["phone"] for r in rows] == ["007", "008", "009", "010", "011", "012", "013"]
    assert [(r["clearout_status"], r["clearout_sub_status_code"], r["decided_by"]) for r in rows] == [
        ("valid", 200, "clearout_bulk"),
        ("invalid", 406, "clearout_bulk"),
        ("valid", 200, "local_duplicate"),
        ("invalid", 400, "local_syntax"),
        ("invalid", 400, "local_syntax"),
        ("unknown", None, "missing_from_result"),
        ("unknown", None, "missing_from_result"),
    ]
    assert rows[2]["is_free"] is True  # the duplicate carries its first occurrence's whole verdict
    assert rows[3]["verdict_reason"] == "Syntax Error" and rows[3]["bounce"] == "hard"
    assert [r["verified_email"] for r in rows] == [
        "ann@example.com",
        "bob@example.com",
        "ann@example.com",
        "not-an-address",
        None,
        "carol@example.com",
        "carol@example.com",
    ]
    assert summary == ResultSummary(
        out_path=str(out),
        rows=7,
        by_status={"valid": 2, "invalid": 3, "unknown": 2},
        by_sub_status_code={"200": 2, "406": 1, "400": 2, "none": 2},
        by_decided_by={"clearout_bulk": 2, "local_duplicate": 1, "local_syntax": 2, "missing_from_result": 2},
        by_verdict={"deliverable": 2, "undeliverable": 3, "unknown": 2},
        unrecognised_reasons={},
    )


def test_parquet_result_has_typed_columns(prepared, answers: Path, tmp_path: Path) -> None:
    join_results(prepared.rows_path, normalise_bulk_result(answers), tmp_path / "r.parquet")
    schema = pq.read_schema(tmp_path / "r.parquet")
    assert [schema.field(n).type for n in RESULT_COLUMNS] == list(RESULT_SCHEMA.types)


def test_join_reads_a_saved_verdict_table_and_instant_rows(prepared, tmp_path: Path) -> None:
    rows = [
        normalise_instant_result(verdict_for(e).as_instant(VERIFIED)) for e in prepared.emails_to_verify()
    ]
    pq.write_table(verdict_table(rows), tmp_path / "verdicts.parquet")
    summary = join_results(prepared.rows_path, tmp_path / "verdicts.parquet", tmp_path / "r.parquet")
    assert summary.by_decided_by == {"clearout_instant": 3, "local_duplicate": 2, "local_syntax": 2}


def test_join_with_no_answers_keeps_every_row_as_missing(prepared, tmp_path: Path) -> None:
    summary = join_results(f"file://{prepared.rows_path}", verdict_table([]), f"file://{tmp_path}/r.csv")
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 7
    assert summary.by_decided_by == {"missing_from_result": 5, "local_syntax": 2}
    assert summary.rows == 7


def test_unrecognised_reasons_are_counted_per_row(prepared, tmp_path: Path) -> None:
    answers = bulk_csv(tmp_path / "a.csv", [clearout_row("ann@example.com", "Invalid", "Brand New Reason")])
    summary = join_results(prepared.rows_path, normalise_bulk_result(answers), tmp_path / "r.parquet")
    assert summary.unrecognised_reasons == {"Brand New Reason": 2}  # ann and her duplicate


def test_join_refuses_unknown_suffixes_and_non_verdict_tables(prepared, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must end in one of"):
        join_results(prepared.rows_path, verdict_table([]), tmp_path / "result.xlsx")
    with pytest.raises(ResultsError, match="not a verdict table"):
        join_results(prepared.rows_path, pa.table({"email": ["a"]}), tmp_path / "r.csv")


def test_summary_check_catches_counts_that_do_not_add_up() -> None:
    with pytest.raises(ResultAccountingError, match="by_status"):
        ResultSummary(
            "x", rows=3, by_status={"valid": 2}, by_sub_status_code={"200": 3}, by_decided_by={"a": 3}
        ).check()


def test_duplicates_of_an_address_without_a_verdict_carry_no_verdict_either(prepared, tmp_path: Path) -> None:
    # carol@example.com was sent but the instant API gave no verdict (timed out): no status.
    failed = {
        "normalised_email": "carol@example.com",
        "verified_email": "carol@example.com",
        "verdict_reason": "Not verified: timed out",
        "decided_by": "clearout_instant_failed",
    }
    answered = normalise_instant_result(verdict_for("ann@example.com").as_instant(VERIFIED))
    summary = join_results(prepared.rows_path, verdict_table([answered, failed]), tmp_path / "r.parquet")
    rows = pq.read_table(tmp_path / "r.parquet").to_pylist()
    carol = [(r["decided_by"], r["clearout_status"], r["verdict_reason"]) for r in rows[5:]]
    assert carol == [("clearout_instant_failed", None, "Not verified: timed out")] * 2
    assert rows[2]["decided_by"] == "local_duplicate"  # ann's duplicate still copies her verdict
    assert (
        summary.by_decided_by["clearout_instant_failed"] == 2
        and summary.by_decided_by["local_duplicate"] == 1
    )


def test_an_address_taken_out_of_a_wrapper_is_the_suggested_email(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text(
        'id,Email\n1,"Ann Example <Ann@Example.com>"\n2,ann@example.com\n3,mailto:bob@example.com\n'
    )
    prepared = prepare_contacts(source, workdir=tmp_path / "w")
    assert pq.read_table(prepared.rows_path).column("cleaned_email").to_pylist() == [
        "Ann@Example.com",
        None,
        "bob@example.com",
    ]
    answers = bulk_csv(
        tmp_path / "a.csv",
        [
            clearout_row("ann@example.com", "Valid", "Success"),
            clearout_row(
                "bob@example.com", "Invalid", "Mailbox Not Found", Suggested_Email="bob@example.org"
            ),
        ],
    )
    join_results(prepared.rows_path, normalise_bulk_result(answers), tmp_path / "r.parquet")
    rows = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [r["suggested_email"] for r in rows] == ["Ann@Example.com", None, "bob@example.org"]
    assert rows[0]["Email"] == "Ann Example <Ann@Example.com>"  # the input column is untouched


def test_csv_result_neutralises_formulas_and_writes_nested_columns_as_json(tmp_path: Path) -> None:
    source = tmp_path / "c.parquet"
    pq.write_table(
        pa.table(
            {
                "Email": ["ann@example.com", "bob@example.com"],
                "note": ['=HYPERLINK("http://x")', "-2+3"],
                "tags": [["a", "b"], None],
                "address": [{"city": "Köln"}, {"city": "@home"}],
                "score": [-5, 7],
            }
        ),
        source,
    )
    prepared = prepare_contacts(source, workdir=tmp_path / "w")
    join_results(prepared.rows_path, verdict_table([]), tmp_path / "r.csv")
    join_results(prepared.rows_path, verdict_table([]), tmp_path / "r.parquet")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert [r["note"] for r in rows] == ['\'=HYPERLINK("http://x")', "'-2+3"]
    assert [r["tags"] for r in rows] == ['["a", "b"]', ""]
    assert [r["address"] for r in rows] == ['{"city": "Köln"}', '{"city": "@home"}']
    assert [r["score"] for r in rows] == ["-5", "7"]  # numbers cannot hold a formula: kept
    parquet = pq.read_table(tmp_path / "r.parquet")  # Parquet round-trips unchanged
    assert parquet.column("note").to_pylist() == ['=HYPERLINK("http://x")', "-2+3"]
    assert parquet.column("tags").to_pylist() == [["a", "b"], None]
