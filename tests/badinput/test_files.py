"""Bad and hostile input files and values, each with its expected outcome.

Every malformed file gets a NAMED error (a ContactsError subclass) whose message is one sentence for a
person, never a pyarrow/pandas/json traceback; every hostile value gets a per-row outcome: sent to the
verifier (with the address that is sent), decided locally with a reason, or empty.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath

from clearout_provider.contacts import (
    ColumnNameConflict,
    ColumnNotText,
    ContactsEncodingError,
    ContactsError,
    EmailColumnNotFound,
    EmptyContactsFile,
    MalformedContactsFile,
    TooManyContacts,
    prepare_contacts,
    split_into_chunks,
)
from clearout_provider.finder_files import FinderInputError, prepare_finder_queries, write_finder_result
from clearout_provider.hooks.clevertap_export import ProfileFileWriter
from clearout_provider.masking import mask_email
from clearout_provider.results import join_results, verdict_table
from clearout_provider.run_files import read_json, write_json
from clearout_provider.safe_csv import restore

# ------------------------------------------------------------------------------------ per-row outcomes

SENT = "sent"
LOCAL = "syntax"
EMPTY = "empty"

# (input value, outcome, the address sent (SENT) or the reason (LOCAL), the cleaned address or None)
VALUES = [
    # RFC-valid or borderline forms: sent, never unsubscribed locally.
    ("plain@example.com", SENT, "plain@example.com", None),
    ("  Padded@Example.COM \t", SENT, "padded@example.com", None),
    ('"john doe"@example.com', SENT, '"john doe"@example.com', None),
    ('"Doe, John"@example.com', SENT, '"doe, john"@example.com', None),
    ("user@[192.168.0.1]", SENT, "user@[192.168.0.1]", None),
    ("user@[IPv6:2001:db8::1]", SENT, "user@[IPv6:2001:db8::1]", None),
    ("jörg@münchen.de", SENT, "jörg@xn--mnchen-3ya.de", None),
    ("用户@例子.广告", SENT, "用户@xn--fsqu00a.xn--4rr70v", None),
    ("δοκιμή@παράδειγμα.δοκιμή", SENT, "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp", None),
    ("x@☃.net", SENT, "x@xn--n3h.net", None),  # IDNA 2003 only: the verifier decides
    ("user@ab--cd.com", SENT, "user@ab--cd.com", None),
    ("ann(comment)@example.com", SENT, "ann(comment)@example.com", None),
    ("a" * 70 + "@example.com", SENT, "a" * 70 + "@example.com", None),  # long local parts exist
    # Wrappers: the address inside is sent, and recorded as cleaned.
    ("mailto:Ann@Example.com", SENT, "ann@example.com", "Ann@Example.com"),
    ("MAILTO:ann@example.com?subject=Hi", SENT, "ann@example.com", "ann@example.com"),
    ("<ann@example.com>", SENT, "ann@example.com", "ann@example.com"),
    ("Ann Example <ann@example.com>", SENT, "ann@example.com", "ann@example.com"),
    ('"Doe, John" <john@example.com>', SENT, "john@example.com", "john@example.com"),
    ('"ann@example.com"', SENT, "ann@example.com", "ann@example.com"),
    ("'ann@example.com'", SENT, "ann@example.com", "ann@example.com"),
    ("\u201cann@example.com\u201d", SENT, "ann@example.com", "ann@example.com"),
    ("ann@example.com;", SENT, "ann@example.com", "ann@example.com"),
    ("ann@example.com,", SENT, "ann@example.com", "ann@example.com"),
    ("ann@example.com.", SENT, "ann@example.com", "ann@example.com"),
    ("Ann <ann@example.com>;", SENT, "ann@example.com", "ann@example.com"),
    ("\u200bann@example.com", SENT, "ann@example.com", "ann@example.com"),
    ("ann\u200c@example.com", SENT, "ann@example.com", "ann@example.com"),
    ("\ufeffann@example.com", SENT, "ann@example.com", "ann@example.com"),
    ("ann@exam\u00adple.com", SENT, "ann@example.com", "ann@example.com"),
    ("ann@example.com\u2060", SENT, "ann@example.com", "ann@example.com"),
    ("\u00a0ann@example.com\u00a0", SENT, "ann@example.com", None),  # plain trimming, not a wrapper
    # Certainly undeliverable: decided locally, with the reason.
    ("ann.example.com", LOCAL, "no @", None),
    ("ann＠example.com", LOCAL, "no @", None),
    ("ann@", LOCAL, "nothing after the @", None),
    ("@example.com", LOCAL, "nothing before the @", None),
    ("ann@@example.com", LOCAL, "more than one @ outside quotes", None),
    ("a@b.com, c@d.com", LOCAL, "more than one @ outside quotes", None),
    ("ann smith@example.com", LOCAL, "whitespace in the address", None),
    ("ann@exam ple.com", LOCAL, "whitespace in the address", None),
    ("ann\u00a0smith@example.com", LOCAL, "whitespace in the address", "ann smith@example.com"),
    ("ann..smith@example.com", LOCAL, "two dots in a row before the @", None),
    (".ann@example.com", LOCAL, "the part before the @ starts or ends with a dot", None),
    ("ann.@example.com", LOCAL, "the part before the @ starts or ends with a dot", None),
    ("ann@localhost", LOCAL, "no dot in the domain", None),
    ("ann@example.123", LOCAL, "the top-level domain is all digits", None),
    ("ann@123.123.123.123", LOCAL, "the top-level domain is all digits", None),
    ("ann@exa_mple.com", LOCAL, "character '_' in the domain", None),
    ("ann@-example.com", LOCAL, "a domain label starts or ends with a hyphen", None),
    ("ann@example..com", LOCAL, "an empty label in the domain (dots at the start or two in a row)", None),
    ("a" * 250 + "@example.com", LOCAL, "longer than 254 bytes", None),
    ("ann@" + "l" * 64 + ".com", LOCAL, "a domain label longer than 63 bytes", None),
    (
        "ann@example.local",
        LOCAL,
        "a special-use domain (such as .local, .test, .invalid) that cannot receive mail",
        None,
    ),
    ("ann@[300.1.1.1]", LOCAL, "not a valid IP address in brackets", None),
    ('"unbalanced@example.com', LOCAL, "unbalanced quotes", None),
    ("ann\x00@example.com", LOCAL, "a control character", None),
    ("ann@example.com\nbob@example.com", LOCAL, "a control character", None),
    ('=HYPERLINK("http://evil.example","x")', LOCAL, "no @", None),
    ("=cmd|' /C calc'!A0", LOCAL, "whitespace in the address", None),
    ("+1 555 0100", LOCAL, "whitespace in the address", None),
    # Nothing there.
    ("", EMPTY, None, None),
    ("   ", EMPTY, None, None),
    ("<>", EMPTY, None, None),
    ("\u200b", EMPTY, None, None),
    ("mailto:", EMPTY, None, None),
]


def _parquet(path: Path, columns: dict[str, pa.Array | list]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(("value", "outcome", "expected", "cleaned"), VALUES)
def test_each_hostile_value_gets_a_defined_outcome(
    tmp_path: Path, value: str, outcome: str, expected: str | None, cleaned: str | None
) -> None:
    source = _parquet(tmp_path / "c.parquet", {"id": ["1"], "Email": [value]})
    prepared = prepare_contacts(source, workdir=tmp_path / "w")
    row = pq.read_table(prepared.rows_path).to_pylist()[0]
    assert row["Email"] == value  # the input column is never touched
    assert row["cleaned_email"] == cleaned
    if outcome == SENT:
        assert (row["local_decision"], row["normalised_email"]) == (None, expected)
        assert list(prepared.emails_to_verify()) == [expected]
    elif outcome == LOCAL:
        assert (row["local_decision"], row["local_reason"]) == ("syntax", expected)
        assert list(prepared.emails_to_verify()) == []
    else:
        assert (row["local_decision"], row["normalised_email"], row["local_reason"]) == ("empty", None, None)


def test_a_wrapped_duplicate_is_verified_once_and_suggested_in_the_result(tmp_path: Path) -> None:
    source = _parquet(
        tmp_path / "c.parquet",
        {"Email": ["ann@example.com", "Ann <ANN@example.com>", "mailto:ann@example.com;"]},
    )
    prepared = prepare_contacts(source, workdir=tmp_path / "w")
    assert list(prepared.emails_to_verify()) == ["ann@example.com"]
    assert prepared.counts.duplicates == 2
    join_results(prepared.rows_path, verdict_table([]), tmp_path / "r.parquet")
    suggested = pq.read_table(tmp_path / "r.parquet").column("suggested_email").to_pylist()
    assert suggested == [None, "ANN@example.com", "ann@example.com"]


def test_quoted_local_parts_with_commas_survive_the_upload_file(tmp_path: Path) -> None:
    source = _parquet(tmp_path / "c.parquet", {"Email": ['"Doe, John"@example.com', "ann@example.com"]})
    prepared = prepare_contacts(source, workdir=tmp_path / "w")
    assert list(prepared.emails_to_verify()) == ['"doe, john"@example.com', "ann@example.com"]


# ---------------------------------------------------------------------------------------- bad files


def _csv(text: str | bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "contacts.csv"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    return write


def _parquet_file(name: str, columns: dict[str, pa.Array | list]) -> Callable[[Path], Path]:
    return lambda folder: _parquet(folder / name, columns)


def _raw(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return write


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"Email": [f"u{i}@example.com" for i in range(2000)]}), buffer)
    return buffer.getvalue()


def _corrupt_page() -> bytes:
    data = bytearray(_parquet_bytes())
    data[200:400] = b"\x00" * 200
    return bytes(data)


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def _duplicate_named_parquet(folder: Path) -> Path:
    table = pa.Table.from_arrays([pa.array(["a@b.com"]), pa.array(["x"])], names=["Email", "Email"])
    pq.write_table(table, folder / "dup.parquet")
    return folder / "dup.parquet"


BAD_FILES = {
    "zero bytes": (_csv(b""), EmptyContactsFile, "is empty"),
    "blank lines only": (_csv("\n  \r\n\n"), EmptyContactsFile, "is empty"),
    "byte order mark only": (_csv(b"\xef\xbb\xbf"), EmptyContactsFile, "is empty"),
    "no email column": (_csv("id,name\n1,Ann\n"), EmailColumnNotFound, "no email column found"),
    "header cell over the csv field limit": (
        _csv("Email," + "h" * 200_000 + "\na@b.com,1\n"),
        MalformedContactsFile,
        "unreadable CSV header line",
    ),
    "two email-like columns": (
        _csv("Email,email_address\na@b.com,c@d.com\n"),
        EmailColumnNotFound,
        "several columns look like email columns",
    ),
    "semicolon separated": (
        _csv("id;Email\n1;a@b.com\n"),
        EmailColumnNotFound,
        "separated by something other than commas",
    ),
    "json named csv": (_csv('[{"email": "a@b.com"}]\n'), EmailColumnNotFound, "no email column found"),
    "latin-1 bytes": (
        _csv("Email\nrené@example.com\n".encode("latin-1")),
        ContactsEncodingError,
        "not UTF-8",
    ),
    "utf-16 with bom": (_csv("Email\na@b.com\n".encode("utf-16")), MalformedContactsFile, "UTF-16"),
    "utf-16 without bom": (_csv("Email\na@b.com\n".encode("utf-16-be")), MalformedContactsFile, "NUL bytes"),
    "random binary": (_csv(bytes(range(128, 256)) * 4), ContactsEncodingError, "not UTF-8"),
    "duplicate column names": (_csv("Email,x,x\na@b.com,1,2\n"), ColumnNameConflict, "several columns named"),
    "an earlier result file": (
        _csv("Email,clearout_status\na@b.com,valid\n"),
        ColumnNameConflict,
        "earlier result file",
    ),
    "ragged rows": (_csv("id,Email\n1,a@b.com\n2,c@d.com,extra\n"), MalformedContactsFile, "has 3 fields"),
    "gzip named csv": (_csv(gzip.compress(b"Email\na@b.com\n")), MalformedContactsFile, "is compressed"),
    "xlsx named csv": (_raw("contacts.csv", _xlsx()), MalformedContactsFile, "is compressed"),
    "legacy xls": (
        _raw("contacts.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64),
        MalformedContactsFile,
        "legacy Excel",
    ),
    "parquet magic then garbage": (
        _raw("c.parquet", b"PAR1 not really"),
        MalformedContactsFile,
        "not a readable Parquet",
    ),
    "truncated parquet": (
        _raw("c.parquet", _parquet_bytes()[:300]),
        MalformedContactsFile,
        "not a readable Parquet",
    ),
    "corrupt parquet page": (
        _raw("c.parquet", _corrupt_page()),
        MalformedContactsFile,
        "not a readable Parquet",
    ),
    "parquet with duplicate names": (_duplicate_named_parquet, ColumnNameConflict, "several columns named"),
    "email column of lists": (
        _parquet_file("c.parquet", {"Email": [["a@b.com"], []]}),
        ColumnNotText,
        "holds list<.*> values, not text",
    ),
    "email column of structs": (
        _parquet_file("c.parquet", {"Email": [{"address": "a@b.com"}]}),
        ColumnNotText,
        "not text",
    ),
    "email column of numbers": (
        _parquet_file("c.parquet", {"Email": [1, 2]}),
        ColumnNotText,
        "holds int64 values",
    ),
    "email column of non-utf8 bytes": (
        _parquet_file("c.parquet", {"Email": pa.array([b"\xff\xfe@x.com"], pa.binary())}),
        ColumnNotText,
        "not UTF-8",
    ),
}


def assert_a_sentence(error: BaseException) -> None:
    """A message for a person: one line, no traceback, no pyarrow/pandas/json internals."""
    message = str(error)
    assert message and "\n" not in message
    for internal in (
        "Traceback",
        "ArrowInvalid",
        "ArrowNotImplemented",
        "pyarrow.lib",
        "JSONDecodeError",
        "pandas",
    ):
        assert internal not in message


@pytest.mark.parametrize(("make", "error", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_each_malformed_file_gets_a_named_error(
    tmp_path: Path, make: Callable[[Path], Path], error: type[ContactsError], message: str
) -> None:
    source = make(tmp_path)
    with pytest.raises(error, match=message) as caught:
        prepare_contacts(source, workdir=tmp_path / "w")
    assert isinstance(caught.value, ContactsError)
    assert_a_sentence(caught.value)
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").glob("clearout-upload-*"))


@pytest.mark.parametrize("make", [v[0] for v in BAD_FILES.values()], ids=BAD_FILES.keys())
def test_chunking_refuses_the_same_files_by_name(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    with pytest.raises(ContactsError) as caught:
        split_into_chunks(make(tmp_path), tmp_path / "chunks")
    assert_a_sentence(caught.value)


def test_too_many_rows_is_named(tmp_path: Path) -> None:
    source = _csv("Email\n" + "".join(f"u{i}@example.com\n" for i in range(5)))(tmp_path)
    with pytest.raises(TooManyContacts) as caught:
        prepare_contacts(source, workdir=tmp_path / "w", max_rows=4)
    assert_a_sentence(caught.value)


GOOD_FILES = {
    "header only": (_csv("id,Email\n"), 0, 0),
    "bom and crlf": (_csv(b"\xef\xbb\xbfid,Email\r\n1,a@b.com\r\n2,A@B.com\r\n"), 2, 1),
    "lone cr line ends": (_csv(b"Email\ra@b.com\rc@d.com\r"), 2, 2),
    "value of three megabytes": (_csv("Email,note\na@b.com," + "x" * 3_000_000 + "\n"), 1, 1),
    "address of three megabytes": (_csv("Email\n" + "a" * 3_000_000 + "@b.com\n"), 1, 0),
    "parquet named csv": (_raw("contacts.csv", _parquet_bytes()), 2000, 2000),
    "csv named parquet": (_raw("contacts.parquet", b"Email\na@b.com\n"), 1, 1),
    "nul inside a value": (_csv(b"Email,note\na@b.com,x\x00y\n"), 1, 1),
    "formulas in cells": (
        _csv('Email,note\na@b.com,"=HYPERLINK(""http://x"",""y"")"\n=1+2,@SUM(A1)\n'),
        2,
        1,
    ),
    "email column of valid bytes": (
        _parquet_file("c.parquet", {"Email": pa.array([b"a@b.com"], pa.binary())}),
        1,
        1,
    ),
    "dictionary email column": (
        _parquet_file("c.parquet", {"Email": pa.array(["a@b.com", "a@b.com"]).dictionary_encode()}),
        2,
        1,
    ),
}


@pytest.mark.parametrize(("make", "rows", "to_verify"), GOOD_FILES.values(), ids=GOOD_FILES.keys())
def test_awkward_but_readable_files_are_prepared(
    tmp_path: Path, make: Callable[[Path], Path], rows: int, to_verify: int
) -> None:
    prepared = prepare_contacts(make(tmp_path), workdir=tmp_path / "w", max_rows=10_000)
    assert (prepared.counts.total_rows, prepared.counts.to_verify) == (rows, to_verify)
    prepared.counts.check()


# ------------------------------------------------------------------------------- nested columns, CSV


NESTED = {
    "list": pa.array([["vip", "2024"], None]),
    "struct": pa.array([{"city": "=Köln", "zip": 50667}, None]),
    "map": pa.array([[("source", "+ads")], None], pa.map_(pa.string(), pa.string())),
    "bytes": pa.array([b"\xff\x00", None], pa.binary()),
}


@pytest.mark.parametrize("kind", NESTED)
def test_nested_input_columns_reach_a_csv_result_as_json_text(tmp_path: Path, kind: str) -> None:
    source = _parquet(tmp_path / "c.parquet", {"Email": ["a@b.com", "c@d.com"], "extra": NESTED[kind]})
    prepared = prepare_contacts(source, workdir=tmp_path / "w")
    summary = join_results(prepared.rows_path, verdict_table([]), tmp_path / "r.csv")
    assert summary.rows == 2
    cells = [row["extra"] for row in csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text()))]
    assert cells[1] == ""
    if kind != "bytes":
        assert json.loads(restore(cells[0]).lstrip("'")) is not None
    assert not cells[0].startswith(("=", "+", "-", "@"))


def test_the_finder_result_csv_neutralises_formulas(tmp_path: Path) -> None:
    source = _csv('name,domain,note\n=HYPERLINK("x"),example.com,@SUM(A1)\nAnn,-example.com,+1\n')(tmp_path)
    prepared = prepare_finder_queries(source, workdir=tmp_path / "w")
    from clearout_provider.finder_files import answers_table

    write_finder_result(prepared.rows_path, answers_table({}), tmp_path / "r.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert [r["name"] for r in rows] == ['\'=HYPERLINK("x")', "Ann"]
    assert [r["note"] for r in rows] == ["'@SUM(A1)", "'+1"]
    assert rows[1]["domain"] == "'-example.com"


def test_a_finder_query_column_of_lists_is_named(tmp_path: Path) -> None:
    source = _parquet(tmp_path / "c.parquet", {"name": [["Ann"]], "domain": ["example.com"]})
    with pytest.raises(FinderInputError, match="holds list<.*> values, not text") as caught:
        prepare_finder_queries(source, workdir=tmp_path / "w")
    assert_a_sentence(caught.value)


def test_the_clevertap_export_csv_neutralises_formulas(tmp_path: Path) -> None:
    with ProfileFileWriter(tmp_path / "export.csv", ["identity", "name", "email"]) as writer:
        writer.write([{"identity": "+4915112345678", "name": "=1+2", "email": "@x.com"}, {"identity": "7"}])
    rows = list(csv.reader(io.StringIO((tmp_path / "export.csv").read_text())))
    assert rows == [["identity", "name", "email"], ["'+4915112345678", "'=1+2", "'@x.com"], ["7", "", ""]]
    assert [restore(c) for c in rows[1]] == ["+4915112345678", "=1+2", "@x.com"]
    with ProfileFileWriter(tmp_path / "export.parquet", ["identity", "name"]) as writer:
        writer.write([{"identity": "+4915112345678", "name": "=1+2"}])
    assert pq.read_table(tmp_path / "export.parquet").to_pylist() == [
        {"identity": "+4915112345678", "name": "=1+2"}
    ]


# ------------------------------------------------------------------------------------- state files


@pytest.mark.parametrize(
    "content",
    [b"", b"   \n", b'{"list_id": "abc"', b"\xff\xfe\x00{", b"[1, 2]", b"null"],
    ids=["empty", "blank", "torn", "binary", "a list", "null"],
)
def test_a_torn_or_empty_state_file_is_absent_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.json").write_bytes(content)
    path = ObjectStoragePath(f"file://{tmp_path}/state.json")
    with caplog.at_level(logging.WARNING, logger="clearout_provider.run_files"):
        assert read_json(path) is None
    assert "state.json" in caplog.text and "treating it as absent" in caplog.text


def test_state_files_are_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ObjectStoragePath(f"file://{tmp_path}/state.json")
    write_json(path, {"list_id": "old"})

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("clearout_provider.run_files.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"list_id": "new"})
    assert read_json(path) == {"list_id": "old"}  # the old state survives a failed write whole
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------ logging


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("ann@example.com (Ann Smith)", "a***@example.com"),
        ("Ann Smith <ann@example.com>", "A***@example.com"),
        ("ann@example.com; bob@example.org", "a***@example.org"),
        ("\u200bann@example.com", "a***@example.com"),
        ("no address here", "***"),
    ],
)
def test_log_masking_never_leaks_what_follows_the_domain(value: str, masked: str) -> None:
    assert mask_email(value) == masked
