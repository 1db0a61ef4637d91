"""Contact preparation: reading, column detection, normalisation, syntax check, dedupe, files, errors."""

from __future__ import annotations

import gzip
import logging
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from clearout_provider import contacts
from clearout_provider.contacts import (
    ColumnNameConflict,
    ContactCounts,
    ContactsAccountingError,
    ContactsEncodingError,
    ContactsError,
    EmailColumnNotFound,
    EmptyContactsFile,
    MalformedContactsFile,
    TooManyContacts,
    find_email_column,
    input_columns,
    normalise_emails,
    prepare_contacts,
)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def rows_of(prepared: contacts.PreparedContacts) -> list[dict]:
    return pq.read_table(prepared.rows_path).to_pylist()


def upload_lines(prepared: contacts.PreparedContacts) -> list[str]:
    return Path(prepared.upload_path).read_text().splitlines()


def permissive(address: str) -> str | None:
    """email-validator's verdict with quoted local parts, IP literals and SMTPUTF8 allowed, no DNS, on the
    trimmed, lower-cased address: whatever it accepts must be sent, in exactly this form."""
    try:
        checked = validate_email(
            address.strip().lower(),
            check_deliverability=False,
            allow_quoted_local=True,
            allow_domain_literal=True,
            allow_smtputf8=True,
        )
    except EmailNotValidError:
        return None
    return f"{checked.local_part}@{checked.ascii_domain}"


# ------------------------------------------------------------------------------------ normalisation

TRICKY = [
    "plain@example.com",
    "  Padded@Example.COM \t",
    "first.last+tag@sub.example.co.uk",
    "o'neil@example.ie",
    "!#$%&'*+/=?^_`{|}~-@example.org",
    '"quoted local"@example.com',
    '"a"@example.com',
    ".leading@example.com",
    "trailing.@example.com",
    "double..dot@example.com",
    "user@example.com.",
    "user@.example.com",
    "user@example..com",
    "user@-example.com",
    "user@example-.com",
    "user@exa_mple.com",
    "user@localhost",
    "user@example.local",
    "user@example.test",
    "user@example.invalid",
    "user@example.123",
    "user@123.123.123.123",
    "user@[127.0.0.1]",
    "user@[IPv6:::1]",
    "Display Name <user@example.com>",
    "user@@example.com",
    "us er@example.com",
    "user@exam ple.com",
    "@example.com",
    "user@",
    "user",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a" * 240 + "@example.com",
    "a" * 241 + "@example.com",
    "user@" + "l" * 63 + ".com",
    "user@" + "l" * 64 + ".com",
    "user@" + ".".join(["abcdefghi"] * 24) + ".com",
    "user@" + ".".join(["abcdefghi"] * 26) + ".com",
    "user@ab--cd.com",
    "user@xn--mnchen-3ya.de",
    "user@xn--zz.com",
    "user@münchen.de",
    "user@MÜNCHEN.DE",
    "jörg@münchen.de",
    "用户@例子.广告",
    "δοκιμή@παράδειγμα.δοκιμή",
    "user@例え.jp",
    "user@straße.de",
    "user@ｅｘａｍｐｌｅ.com",
    "user@example。com",
    "user\u200b@example.com",
    "user@exam\u200bple.com",
    "user@example.com\u00a0",
    "e\u0301@example.com",
    "user＠example.com",
    "user@xn--" + "a" * 59 + ".com",
    "x@" + "ü" * 60 + ".de",
]


def test_everything_email_validator_accepts_is_sent_in_its_normal_form() -> None:
    result = normalise_emails(TRICKY)
    rows = zip(
        TRICKY,
        result.normalised.to_pylist(),
        result.valid.to_pylist(),
        result.reason.to_pylist(),
        strict=True,
    )
    for address, normalised, sent, reason in rows:
        expected = permissive(address)
        if expected is not None:
            assert (sent, normalised, reason) == (True, expected, None), address
        assert sent == (reason is None), address  # a row is sent, or decided locally with a reason


# What the local check used to decide (email-validator's defaults) but now sends: RFC-valid or merely
# unusual forms the verifier must judge. The rest of the corpus that it rejected stays decided locally.
NOW_SENT = {
    '"quoted local"@example.com': '"quoted local"@example.com',
    '"a"@example.com': "a@example.com",
    "user@[127.0.0.1]": "user@[127.0.0.1]",
    "user@[IPv6:::1]": "user@[IPv6:::1]",
    "Display Name <user@example.com>": "user@example.com",
    "user@example.com.": "user@example.com",
    "user@ab--cd.com": "user@ab--cd.com",
    "user@xn--zz.com": "user@xn--zz.com",
    "user\u200b@example.com": "user@example.com",
    "user@exam\u200bple.com": "user@example.com",
    "user@example.com\u00a0": "user@example.com",
}
STILL_LOCAL = {
    ".leading@example.com": "the part before the @ starts or ends with a dot",
    "trailing.@example.com": "the part before the @ starts or ends with a dot",
    "double..dot@example.com": "two dots in a row before the @",
    "user@.example.com": "an empty label in the domain (dots at the start or two in a row)",
    "user@example..com": "an empty label in the domain (dots at the start or two in a row)",
    "user@-example.com": "a domain label starts or ends with a hyphen",
    "user@example-.com": "a domain label starts or ends with a hyphen",
    "user@exa_mple.com": "character '_' in the domain",
    "user@localhost": "no dot in the domain",
    "user@example.local": "a special-use domain (such as .local, .test, .invalid) that cannot receive mail",
    "user@example.123": "the top-level domain is all digits",
    "user@123.123.123.123": "the top-level domain is all digits",
    "user@@example.com": "more than one @ outside quotes",
    "us er@example.com": "whitespace in the address",
    "user@exam ple.com": "whitespace in the address",
    "@example.com": "nothing before the @",
    "user@": "nothing after the @",
    "user": "no @",
    "user＠example.com": "no @",
    "a" * 243 + "@example.com": "longer than 254 bytes",
    "user@" + "l" * 64 + ".com": "a domain label longer than 63 bytes",
    "x@" + "ü" * 60 + ".de": "a domain label longer than 63 bytes",
}


@pytest.mark.parametrize(("address", "expected"), NOW_SENT.items())
def test_borderline_forms_are_sent_to_the_verifier(address: str, expected: str) -> None:
    result = normalise_emails([address])
    assert (result.valid.to_pylist(), result.normalised.to_pylist()) == ([True], [expected])


@pytest.mark.parametrize(("address", "reason"), STILL_LOCAL.items())
def test_certainly_undeliverable_forms_are_decided_locally_with_a_reason(address: str, reason: str) -> None:
    result = normalise_emails([address])
    assert (result.valid.to_pylist(), result.reason.to_pylist()) == ([False], [reason])
    assert permissive(address) is None  # never stricter than email-validator


def test_fast_path_agrees_with_the_whole_address_judgement() -> None:
    # The fast path alone (no slow path, no sample check), on the tricky corpus plus random strings
    # built from the characters that matter to email syntax.
    rng = random.Random(20240501)

    def piece(alphabet: str, longest: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))

    locals_ = [piece("abz09.-_+'!~" + '"( ü', 12) for _ in range(3000)]
    labels = [piece("abz09-ü例_", 9) for _ in range(3000)]
    domains = [
        ".".join(rng.sample(labels, rng.randint(1, 3)) + [rng.choice(["com", "de", "1", "local", "x"])])
        for _ in range(3000)
    ]
    long_domains = ["l" * rng.randint(55, 70) + "." + "m" * rng.randint(60, 64) + ".com" for _ in range(200)]
    fuzz = [f"{a}@{b}" for a, b in zip(locals_, domains + long_domains, strict=False)]
    fuzz += [f"{'a' * rng.randint(1, 130)}@{d}" for d in long_domains]
    corpus = pa.array([a.strip().lower() for a in TRICKY + fuzz])
    shaped, normalised, reason, _ = contacts._judge_by_domain(corpus, {})
    sent = 0
    for address, is_shaped, fast, why in zip(
        corpus.to_pylist(), shaped.to_pylist(), normalised.to_pylist(), reason.to_pylist(), strict=True
    ):
        if is_shaped:
            whole, whole_reason = contacts._judge(address, {})
            assert (fast if why is None else None) == (whole if whole_reason is None else None), address
            sent += why is None
    # The corpus exercises both answers of the fast path, not only one.
    assert sent > 150 and sum(shaped.to_pylist()) - sent > 150


def test_a_disagreeing_fast_path_is_caught_by_the_sample_and_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    judge_by_domain = contacts._judge_by_domain

    def accepts_all(lowered: pa.Array, domains: dict) -> tuple:
        shaped, normalised, _, residue = judge_by_domain(lowered, domains)
        return shaped, normalised, pa.nulls(len(lowered), pa.string()), residue

    monkeypatch.setattr(contacts, "_judge_by_domain", accepts_all)
    with caplog.at_level(logging.WARNING, logger="clearout_provider.contacts"):
        result = normalise_emails(["good@example.com", "bad@localhost", "bad@example..com"])
    assert result.valid.to_pylist() == [True, False, False]
    assert "disagreed with the whole-address check" in caplog.text


def test_empty_and_null_addresses_are_empty_not_invalid() -> None:
    result = normalise_emails(["", "   ", None, "x", "<>", "\u200b"])
    assert result.empty.to_pylist() == [True, True, True, False, True, True]
    assert result.normalised.to_pylist() == [None, None, None, "x", None, None]
    assert result.valid.to_pylist() == [False] * 6
    assert result.reason.to_pylist() == [None, None, None, "no @", None, None]


def test_wrappers_are_removed_and_the_extracted_address_recorded() -> None:
    result = normalise_emails(["John Doe <John@Example.com>", "mailto:ann@x.org?subject=hi", "plain@x.org"])
    assert result.normalised.to_pylist() == ["john@example.com", "ann@x.org", "plain@x.org"]
    assert result.cleaned.to_pylist() == ["John@Example.com", "ann@x.org", None]
    assert result.valid.to_pylist() == [True, True, True]


# ------------------------------------------------------------------------------------ column detection


@pytest.mark.parametrize("header", ["Email", "EMAIL", "emails", "Email Address", "e-mail", "email_address"])
def test_email_column_is_detected_in_any_spelling(header: str) -> None:
    assert find_email_column(["id", header, "phone"]) == header


def test_named_email_column_wins_and_may_differ_in_case() -> None:
    assert find_email_column(["Email", "work_mail"], "work_mail") == "work_mail"
    assert find_email_column(["Email", "Work_Mail"], "work_mail") == "Work_Mail"


def test_missing_email_column_lists_the_columns_present(tmp_path: Path) -> None:
    source = write(tmp_path / "c.csv", "id,name,phone\n1,Ann,0123\n")
    with pytest.raises(
        EmailColumnNotFound, match=r"no email column found.*columns present: \['id', 'name', 'phone'\]"
    ):
        prepare_contacts(source, workdir=tmp_path / "w")
    with pytest.raises(EmailColumnNotFound, match="'contact' is not in the file") as caught:
        prepare_contacts(source, email_column="contact", workdir=tmp_path / "w")
    assert caught.value.columns == ["id", "name", "phone"]


def test_two_email_like_columns_must_be_told_apart() -> None:
    with pytest.raises(EmailColumnNotFound, match="several columns look like email columns"):
        find_email_column(["Email", "email_address"])


# ------------------------------------------------------------------------------------ file errors


def test_zero_byte_and_blank_files_are_empty(tmp_path: Path) -> None:
    for name, content in (("zero.csv", b""), ("blank.csv", b"\n  \n\n")):
        with pytest.raises(EmptyContactsFile, match="is empty"):
            prepare_contacts(write(tmp_path / name, content), workdir=tmp_path / "w")


def test_header_only_file_is_an_empty_list_not_an_error(tmp_path: Path) -> None:
    prepared = prepare_contacts(write(tmp_path / "c.csv", "id,Email\n"), workdir=tmp_path / "w")
    assert prepared.counts == ContactCounts(
        total_rows=0, empty=0, syntax_invalid=0, duplicates=0, to_verify=0
    )
    assert upload_lines(prepared) == ["Email"]
    assert rows_of(prepared) == []
    assert list(prepared.emails_to_verify()) == []


def test_header_only_file_without_email_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmailColumnNotFound):
        prepare_contacts(write(tmp_path / "c.csv", "id,name\n"), workdir=tmp_path / "w")


def test_latin1_bytes_are_reported_with_offset_and_line(tmp_path: Path) -> None:
    body = b"id,Email\n1,ann@example.com\n2," + "rené@example.com\n".encode("latin-1")
    with pytest.raises(
        ContactsEncodingError, match=r"not UTF-8: byte 0xE9 at offset 32 \(line 3\)"
    ) as caught:
        prepare_contacts(write(tmp_path / "c.csv", body), workdir=tmp_path / "w")
    assert (caught.value.offset, caught.value.line) == (32, 3)
    assert isinstance(caught.value, ContactsError)


def test_latin1_in_the_header_is_reported_too(tmp_path: Path) -> None:
    with pytest.raises(ContactsEncodingError, match=r"byte 0xE9 at offset 3 \(line 1\)"):
        prepare_contacts(
            write(tmp_path / "c.csv", b"id," + "émail\nx@y.com\n".encode("latin-1")), workdir=tmp_path
        )


def test_ragged_csv_is_malformed_without_echoing_the_row(tmp_path: Path) -> None:
    source = write(tmp_path / "c.csv", "id,Email\n1,ann@example.com\n2,secret.person@example.com,extra\n")
    with pytest.raises(MalformedContactsFile, match="has 3 fields where the header has 2") as caught:
        prepare_contacts(source, workdir=tmp_path / "w")
    assert "secret" not in str(caught.value)


def test_too_many_rows_points_to_chunking(tmp_path: Path) -> None:
    source = write(tmp_path / "c.csv", "Email\n" + "".join(f"u{i}@example.com\n" for i in range(11)))
    with pytest.raises(TooManyContacts, match="has 11 rows, more than the 10 .*split it into chunks"):
        prepare_contacts(source, workdir=tmp_path / "w", max_rows=10)
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"Email": [f"u{i}@example.com" for i in range(11)]}), parquet)
    with pytest.raises(TooManyContacts):
        prepare_contacts(parquet, workdir=tmp_path / "w", max_rows=10)


def test_reserved_and_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    earlier_result = write(tmp_path / "r.csv", "Email,clearout_status\nann@example.com,valid\n")
    with pytest.raises(ColumnNameConflict, match=r"\['clearout_status'\].*earlier result file"):
        prepare_contacts(earlier_result, workdir=tmp_path / "w")
    with pytest.raises(ColumnNameConflict, match=r"several columns named \['name'\]"):
        prepare_contacts(write(tmp_path / "d.csv", "name,Email,name\na,b@example.com,c\n"), workdir=tmp_path)


def test_compressed_files_are_named_as_such(tmp_path: Path) -> None:

    with pytest.raises(MalformedContactsFile, match="is compressed"):
        prepare_contacts(write(tmp_path / "c.csv.gz", gzip.compress(b"Email\na@b.com\n")), workdir=tmp_path)


def test_corrupt_parquet_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedContactsFile, match="not a readable Parquet file"):
        prepare_contacts(write(tmp_path / "c.parquet", b"PAR1 this is not parquet"), workdir=tmp_path)


# ------------------------------------------------------------------------------------ preparation

MESSY = """customer_id,Email,phone,note
007, Ann@Example.COM ,0123456,"line one
line two"
008,ann@example.com,0044,
009,ANN@EXAMPLE.COM,,
010,bad..dots@example.com,,
011,,,no email
012,jörg@MÜNCHEN.de,,
013,user@xn--mnchen-3ya.de,,

014,user@münchen.de,,
015,bob@example.org,,
"""


@pytest.fixture
def messy(tmp_path: Path) -> contacts.PreparedContacts:
    return prepare_contacts(write(tmp_path / "messy.csv", "\ufeff" + MESSY), workdir=tmp_path / "work")


def test_counts_add_up_and_name_every_local_decision(messy: contacts.PreparedContacts) -> None:
    assert messy.email_column == "Email"
    assert messy.counts == ContactCounts(total_rows=9, empty=1, syntax_invalid=1, duplicates=3, to_verify=4)
    messy.counts.check()
    with pytest.raises(ContactsAccountingError):
        ContactCounts(total_rows=9, empty=1, syntax_invalid=1, duplicates=3, to_verify=3).check()


def test_upload_is_unique_normalised_addresses_in_first_occurrence_order(
    messy: contacts.PreparedContacts,
) -> None:
    assert upload_lines(messy) == [
        "Email",
        "ann@example.com",
        "jörg@xn--mnchen-3ya.de",
        "user@xn--mnchen-3ya.de",
        "bob@example.org",
    ]
    assert list(messy.emails_to_verify()) == upload_lines(messy)[1:]


def test_rows_file_keeps_every_row_with_its_input_columns_untouched(messy: contacts.PreparedContacts) -> None:
    rows = rows_of(messy)
    assert [r["row_key"] for r in rows] == list(range(9))
    assert [r["customer_id"] for r in rows][:3] == ["007", "008", "009"]  # leading zeros survive
    assert rows[0]["Email"] == " Ann@Example.COM "  # the input column is never normalised
    assert rows[0]["note"] == "line one\nline two"
    assert [(r["normalised_email"], r["local_decision"]) for r in rows] == [
        ("ann@example.com", None),
        ("ann@example.com", "duplicate"),
        ("ann@example.com", "duplicate"),
        ("bad..dots@example.com", "syntax"),
        (None, "empty"),
        ("jörg@xn--mnchen-3ya.de", None),
        ("user@xn--mnchen-3ya.de", None),
        ("user@xn--mnchen-3ya.de", "duplicate"),
        ("bob@example.org", None),
    ]
    assert input_columns(pq.read_schema(messy.rows_path)) == ["customer_id", "Email", "phone", "note"]


def test_same_input_gives_a_byte_identical_upload_named_by_its_content(tmp_path: Path) -> None:
    source = write(tmp_path / "c.csv", MESSY)
    first = prepare_contacts(source, workdir=tmp_path / "one")
    second = prepare_contacts(source, workdir=tmp_path / "two")
    assert Path(first.upload_path).read_bytes() == Path(second.upload_path).read_bytes()
    assert first.upload_path.name == second.upload_path.name
    other = prepare_contacts(
        write(tmp_path / "d.csv", "Email\nsomeone@example.com\n"), workdir=tmp_path / "one"
    )
    assert other.upload_path.name != first.upload_path.name


def test_parquet_input_keeps_its_column_types(tmp_path: Path) -> None:
    source = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "E-Mail": ["A@Example.com", "a@example.com", None]}), source)
    prepared = prepare_contacts(source, workdir=tmp_path / "w")
    assert prepared.email_column == "E-Mail"
    assert prepared.counts == ContactCounts(
        total_rows=3, empty=1, syntax_invalid=0, duplicates=1, to_verify=1
    )
    assert pq.read_schema(prepared.rows_path).field("id").type == pa.int64()


def test_object_storage_urls_work_for_source_and_workdir(tmp_path: Path) -> None:
    write(tmp_path / "c.csv", "Email\nann@example.com\n")
    prepared = prepare_contacts(f"file://{tmp_path}/c.csv", workdir=ObjectStoragePath(f"file://{tmp_path}/w"))
    assert list(prepared.emails_to_verify()) == ["ann@example.com"]
    assert (tmp_path / "w" / "clearout-rows.parquet").exists()


def test_upload_file_is_a_plain_csv_clearout_can_read(messy: contacts.PreparedContacts) -> None:
    table = pacsv.read_csv(messy.upload_path)
    assert table.column_names == ["Email"]
    assert b'"' not in Path(messy.upload_path).read_bytes()


@settings(max_examples=3000, deadline=None)
@given(
    st.from_regex(
        r"[a-z0-9\-]{1,70}(\.[a-z0-9\-]{1,70}){0,3}\.(com|io|de|x|a1|1a|test|localhost|xn--p1ai)",
        fullmatch=True,
    )
)
def test_the_plain_domain_shortcut_answers_as_email_validator_does(domain: str) -> None:
    """A domain the shortcut takes as it is, email-validator takes unchanged too (it would be sent as is)."""
    if contacts._plain_domain(domain):
        checked = validate_email(f"a@{domain}", check_deliverability=False)
        assert checked.ascii_domain == domain
