"""finder_files: reading name + domain files, dedupe, bulk result parsing, and the joined result file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clearout_provider.clearout.models import FinderEmail, FinderResult
from clearout_provider.contacts import ContactsEncodingError, EmptyContactsFile, TooManyContacts
from clearout_provider.finder_files import (
    FINDER_COLUMNS,
    QUERY_KEY,
    FinderColumnsNotFound,
    FinderInputError,
    FinderResultError,
    answers_table,
    failed_answer,
    find_finder_columns,
    instant_answer,
    prepare_finder_queries,
    read_bulk_finder_result,
    write_finder_result,
)
from clearout_provider.verdicts import FINDER_RESULT_COLUMNS


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ columns


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["id", "Name", "Domain"], ("Name", None, None, "Domain", None)),
        (["full_name", "website", "company_name"], ("full_name", None, None, "website", "company_name")),
        (["First Name", "LAST-NAME", "Company"], (None, "First Name", "LAST-NAME", None, "Company")),
        (["first_name", "domain"], (None, "first_name", None, "domain", None)),
    ],
)
def test_columns_are_detected_by_header_in_any_spelling(columns: list[str], expected: tuple) -> None:
    found = find_finder_columns(columns)
    assert (found.name, found.first, found.last, found.domain, found.company) == expected


def test_named_columns_win_and_a_first_last_pair_is_accepted() -> None:
    found = find_finder_columns(
        ["given", "family", "site", "name"], name_column=("given", "family"), domain_column="SITE"
    )
    assert (found.name, found.first, found.last, found.domain, found.company) == (
        None,
        "given",
        "family",
        "site",
        None,
    )


@pytest.mark.parametrize(
    ("columns", "kwargs", "message"),
    [
        (["email", "domain"], {}, "no name column found.*name_column="),
        (["name", "email"], {}, "no domain or company column found.*domain_column="),
        (["name", "full name", "domain"], {}, "several columns look like the name column"),
        (["name", "domain"], {"domain_column": "website"}, "the domain column 'website' is not in the file"),
        (["name", "domain"], {"name_column": ("name",)}, "one column or a \\(first, last\\) pair"),
    ],
)
def test_unusable_columns_get_a_clear_error(columns: list[str], kwargs: dict, message: str) -> None:
    with pytest.raises(FinderInputError, match=message) as raised:
        find_finder_columns(columns, **kwargs)
    if isinstance(raised.value, FinderColumnsNotFound):
        assert str(columns) in str(raised.value)  # the user sees what the file has


# -------------------------------------------------------------------------------------- preparation


def test_preparation_sends_each_query_once_and_decides_incomplete_rows_locally(tmp_path: Path) -> None:
    source = write(
        tmp_path / "people.csv",
        "id,Name,Domain,Company\n"
        "007,Tony Stark,stark.com,\n"
        "008,  tony   STARK ,Stark.com ,\n"  # the same query
        "009,,stark.com,\n"  # no name
        "010,Tim Cook,,Apple Inc.\n"
        "011,Jane Doe,,\n"  # neither domain nor company
        '012,"Stark, Tony",stark.com,\n',  # a comma inside a quoted name
    )
    prepared = prepare_finder_queries(source, workdir=tmp_path / "work")

    assert (prepared.counts.total_rows, prepared.counts.missing_input, prepared.counts.duplicates,
            prepared.counts.to_find) == (6, 2, 1, 3)  # fmt: skip
    queries = list(prepared.queries())
    assert [(q.name, q.target) for q in queries] == [
        ("Tony Stark", "stark.com"), ("Tim Cook", "Apple Inc."), ("Stark, Tony", "stark.com")
    ]  # fmt: skip
    upload = pd.read_csv(prepared.upload_path, dtype=str, keep_default_na=False)
    assert upload.columns.tolist() == ["Name", "Domain", "Company"]
    assert upload["Name"].tolist() == ["Tony Stark", "Tim Cook", "Stark, Tony"]
    rows = pq.read_table(prepared.rows_path).to_pydict()
    assert rows["id"] == ["007", "008", "009", "010", "011", "012"]  # text ids keep their zeros
    assert rows["finder_local_decision"] == [None, "duplicate", "missing_name", None, "missing_domain", None]


def test_first_and_last_name_columns_make_the_name(tmp_path: Path) -> None:
    source = write(
        tmp_path / "p.csv", "first_name,last_name,website\nPepper,Potts,stark.com\nHappy,,stark.com\n"
    )
    prepared = prepare_finder_queries(source, workdir=tmp_path / "w")
    assert [q.name for q in prepared.queries()] == ["Pepper Potts", "Happy"]


def test_parquet_input_with_typed_columns(tmp_path: Path) -> None:
    source = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": [1, 2], "name": ["Ann Lee", "Bo Kim"], "domain": ["a.io", None]}), source)
    prepared = prepare_finder_queries(source, workdir=tmp_path / "w")
    assert prepared.counts.to_find == 1 and prepared.counts.missing_input == 1


def test_empty_header_only_non_utf8_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(EmptyContactsFile, match="name and domain"):
        prepare_finder_queries(write(tmp_path / "empty.csv", ""), workdir=tmp_path / "w")
    header_only = prepare_finder_queries(write(tmp_path / "h.csv", "name,domain\n"), workdir=tmp_path / "w2")
    assert header_only.counts.total_rows == 0 and list(header_only.queries()) == []
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("name,domain\nJos\xe9 Ruiz,x.es\n".encode("latin-1"))
    with pytest.raises(ContactsEncodingError, match="line 2"):
        prepare_finder_queries(latin1, workdir=tmp_path / "w3")
    with pytest.raises(TooManyContacts):
        big = write(tmp_path / "big.csv", "name,domain\na b,x.io\nc d,y.io\n")
        prepare_finder_queries(big, workdir=tmp_path / "w4", max_rows=1)


def test_result_columns_in_the_input_are_refused(tmp_path: Path) -> None:
    source = write(tmp_path / "again.csv", "name,domain,finder_email\nAnn Lee,a.io,\n")
    with pytest.raises(FinderInputError, match="finder_email"):
        prepare_finder_queries(source, workdir=tmp_path / "w")


# ----------------------------------------------------------------------------------- answers and join


def test_instant_answers_and_failures_are_joined_onto_every_row(tmp_path: Path) -> None:
    source = write(
        tmp_path / "p.csv",
        "id,name,domain\n1,Ann Lee,a.io\n2,ANN LEE,A.io\n3,Bo Kim,b.io\n4,Cy Day,c.io\n5,,d.io\n",
    )
    prepared = prepare_finder_queries(source, workdir=tmp_path / "w")
    ann, bo, _cy = list(prepared.queries())
    found = FinderResult(
        emails=(FinderEmail("ann.lee@a.io", role=False, business=True),), first_name="ann", last_name="lee",
        full_name="ann lee", domain="a.io", confidence_score=91, company="a",
        found_on=datetime(2026, 1, 2, tzinfo=UTC),
    )  # fmt: skip
    nothing = FinderResult(emails=(), first_name="bo", last_name="kim", full_name="bo kim", domain="b.io",
                           confidence_score=0, company="b", found_on=None)  # fmt: skip
    answers = {ann.key: instant_answer(found), bo.key: instant_answer(nothing)}
    answers_csv = answers_table(answers)  # Cy Day has no answer at all

    for out in (tmp_path / "r.csv", tmp_path / "r.parquet"):
        summary = write_finder_result(prepared.rows_path, answers_csv, out)
        assert summary.rows == 5
        assert summary.by_status == {"found": 2, "not_found": 3}
        assert sum(summary.by_decided_by.values()) == 5
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == ["id", "name", "domain", *FINDER_COLUMNS]
    result = table.to_pydict()
    assert result["finder_email"] == ["ann.lee@a.io", "ann.lee@a.io", None, None, None]
    assert result["decided_by"] == [
        "clearout_instant_finder", "local_duplicate", "clearout_instant_finder", "missing_from_result",
        "local_missing_input",
    ]  # fmt: skip
    assert result["finder_confidence_score"][:2] == [91, 91]
    assert result["finder_found_at"][0] == datetime(2026, 1, 2, tzinfo=UTC)
    assert result["finder_reason"][2] == "Email Not Found"
    csv = pd.read_csv(tmp_path / "r.csv", dtype=str, keep_default_na=False)
    assert csv["finder_found_at"][0].startswith("2026-01-02T00:00:00")
    with pytest.raises(ValueError, match="must end in"):
        write_finder_result(prepared.rows_path, answers_csv, tmp_path / "r.json")


def test_a_failed_query_keeps_its_reason(tmp_path: Path) -> None:
    source = write(tmp_path / "p.csv", "name,domain\nR2D2 Unit,droids.com\n")
    prepared = prepare_finder_queries(source, workdir=tmp_path / "w")
    (query,) = prepared.queries()
    write_finder_result(
        prepared.rows_path,
        answers_table({query.key: failed_answer("refused: digits")}),
        tmp_path / "r.parquet",
    )
    row = pd.read_parquet(tmp_path / "r.parquet").iloc[0]
    assert (row["finder_status"], row["finder_reason"], row["decided_by"]) == (
        "not_found",
        "refused: digits",
        "clearout_failed",
    )


def test_a_bulk_result_file_is_read_back_to_the_queries_it_answers(tmp_path: Path) -> None:
    source = write(tmp_path / "p.csv", "name,domain,company\nAnn Lee,a.io,\nBo Kim,,Bee Inc\n")
    prepared = prepare_finder_queries(source, workdir=tmp_path / "w")
    upload = pd.read_csv(prepared.upload_path, dtype=str, keep_default_na=False)
    cells = {
        "Clearout Finder Full Name": ["ann lee", "bo kim"],
        "Clearout Finder First Name": ["ann", "bo"],
        "Clearout Finder Last Name": ["lee", "kim"],
        "Clearout Finder Domain": ["a.io", "bee.com"],
        "Clearout Finder Company": ["a", "bee"],
        "Clearout Finder Email Address": ["ann@a.io", ""],
        "Clearout Finder Confidence Score": ["77", ""],
        "Clearout Finder Business Account": ["Yes", ""],
        "Clearout Finder Status": ["Found", "Not Found"],
        "Clearout Finder Reason": ["", "Email Not Found"],
        "Clearout Finder Processed At (UTC)": ["2026-01-02T03:04:05.000Z", "2026-01-02T03:04:06.000Z"],
    }
    assert list(cells) == list(FINDER_RESULT_COLUMNS)
    bulk = tmp_path / "bulk.csv"
    upload.assign(**cells).to_csv(bulk, index=False)

    answers = read_bulk_finder_result(bulk)
    summary = write_finder_result(prepared.rows_path, answers, tmp_path / "r.parquet")
    result = pq.read_table(tmp_path / "r.parquet").to_pydict()
    assert summary.by_decided_by == {"clearout_bulk_finder": 2}
    assert result["finder_email"] == ["ann@a.io", None]
    assert result["finder_confidence_score"] == [77, None]
    assert result["finder_business"] == [True, None]
    assert result["finder_reason"] == [None, "Email Not Found"]
    assert result["finder_found_at"][0] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert answers.column(QUERY_KEY).to_pylist() == [q.key for q in prepared.queries()]

    upload.to_csv(tmp_path / "not-a-result.csv", index=False)
    with pytest.raises(FinderResultError, match="Clearout Finder Status"):
        read_bulk_finder_result(tmp_path / "not-a-result.csv")
