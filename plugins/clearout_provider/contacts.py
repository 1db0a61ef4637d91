"""Contact preparation: read a contacts file, normalise and syntax-check its addresses, drop duplicates.

Everything here happens BEFORE a credit is spent, so it is strict about two things: every input row
stays accounted for (the ROWS file keeps a ``row_key`` per input row so verdicts can be joined back onto
duplicates and locally rejected rows too), and nothing that Clearout would charge for twice, or that is
certainly undeliverable, is uploaded.

Decisions, and why:

* **Whole address lower-cased.** RFC 5321 lets a local part be case-sensitive, but no mailbox provider
  acts on it and Clearout treats addresses case-insensitively, so ``John@x.com`` and ``john@x.com`` are
  one address: sending both would spend two credits for one answer. The input column itself is never
  touched; only ``normalised_email`` is lower-cased.
* **IDN domains to punycode** (IDNA 2008 / UTS 46, as email-validator's ``ascii_domain``): what an SMTP
  server and Clearout's upload parser both accept, and one spelling per domain for the dedupe.
* **Never stricter than the verifier.** A row decided locally is written back as a hard-bounce syntax
  error and unsubscribed without Clearout seeing it, so only what is certainly undeliverable is decided
  here (no "@", an empty part, whitespace or a second "@" outside quotes, bad dots, a dotless or
  malformed domain, over 254 bytes...; each row gets its reason in ``local_reason``). Addresses
  email-validator accepts with quoted local parts, IP literals and SMTPUTF8 allowed (no DNS) are sent in
  its normal form; borderline forms it rejects for other reasons (IDNA 2003-only domains, obsolete
  quoting) are sent too. A vectorised fast path judges each distinct domain once (see the comment above
  ``_DOT_ATOM_AT_REST``); a sample of its answers is re-checked whole on every run.
* **Wrappers are taken off first.** ``mailto:``, ``<a@b.com>``, ``John Doe <a@b.com>``, surrounding
  quotes, zero-width and other invisible characters, trailing ``;,.:``: the address inside is verified
  and deduplicated, and recorded in ``cleaned_email`` (the result reports it as the suggested email).
* **All CSV columns are read as strings**: phone numbers and ids with leading zeros must survive the
  round trip into the result file unchanged. Parquet columns keep their declared types.
* **A header-only file is an empty list, not an error**: a nightly delta with no new contacts is normal
  and must finish without calling Clearout. A zero-byte file has no header and is refused.
"""

from __future__ import annotations

import codecs
import csv
import encodings.idna
import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, ValidatedEmail, validate_email

from clearout_provider.clearout.statuses import EMAIL_COLUMN_NAMES, VERDICT_OF_STATUS
from clearout_provider.exceptions import AccountingError, ContactsError
from clearout_provider.grouping import first_rows
from clearout_provider.verification.model import RESULT_COLUMNS, UNCERTAIN_VERDICTS

log = logging.getLogger(__name__)

#: Where a file can live: a local path, or any fsspec URL (``s3://``, ``gs://``, ``file://``...).
StoragePath = str | os.PathLike[str] | ObjectStoragePath

#: Clearout's recommended maximum list size; bigger inputs must be chunked (the backfill DAG does).
DEFAULT_MAX_ROWS = 500_000

# Columns of the ROWS file besides the input's own.
ROW_KEY = "row_key"
NORMALISED_EMAIL = "normalised_email"
LOCAL_DECISION = "local_decision"
#: Why a row was decided locally (``local_decision`` "syntax"), in words; null otherwise.
LOCAL_REASON = "local_reason"
#: The address extracted from a wrapper (``John <a@b.com>``, ``mailto:``, invisible characters...) as
#: written; null when the input was a bare address. The result reports it as the suggested email.
CLEANED_EMAIL = "cleaned_email"
#: Header of the upload file: one of the names Clearout's bulk upload recognises (error 1004 otherwise).
UPLOAD_EMAIL_HEADER = "Email"
# The ROWS file's schema metadata remembers the input's column names and order for the result file.
_META_INPUT_COLUMNS = b"clearout_provider.input_columns"

#: Row groups of the ROWS file: the join streams it a row group at a time, so this bounds its memory.
_ROW_GROUP_ROWS = 1 << 16

_RESERVED_COLUMNS = frozenset(
    (ROW_KEY, NORMALISED_EMAIL, LOCAL_DECISION, LOCAL_REASON, CLEANED_EMAIL, *RESULT_COLUMNS)
)


class LocalDecision(StrEnum):
    """Why a row is not sent to Clearout (``None`` in the ROWS file: it is sent)."""

    EMPTY = "empty"
    SYNTAX = "syntax"
    DUPLICATE = "duplicate"


# --------------------------------------------------------------------------------------------- errors


class EmailColumnNotFound(ContactsError):
    """No column (or more than one) looks like the email column, or the named one is absent."""

    def __init__(self, message: str, columns: Sequence[str]) -> None:
        super().__init__(f"{message}; columns present: {list(columns)}")
        self.columns = list(columns)


class EmptyContactsFile(ContactsError):
    """The file has no header at all (zero bytes or only blank lines)."""


class ContactsEncodingError(ContactsError):
    """The CSV is not UTF-8; ``offset``/``line`` locate the first offending byte (1-based line)."""

    def __init__(self, source: str, offset: int, line: int, byte: int) -> None:
        super().__init__(
            f"{source} is not UTF-8: byte 0x{byte:02X} at offset {offset} (line {line}) is invalid; "
            "re-export the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)"
        )
        self.offset, self.line = offset, line


class MalformedContactsFile(ContactsError):
    """The file is not a CSV/Parquet file this module can parse (ragged rows, corrupt Parquet...)."""


class ColumnNameConflict(ContactsError):
    """Input column names are duplicated or collide with the columns this provider adds."""


class TooManyContacts(ContactsError):
    """More rows than one Clearout list should carry."""

    def __init__(self, source: str, rows: int, max_rows: int) -> None:
        super().__init__(
            f"{source} has {rows:,} rows, more than the {max_rows:,} one bulk list may carry; split it into "
            "chunks of at most that size (the backfill DAG maps chunks) or raise max_rows"
        )
        self.rows, self.max_rows = rows, max_rows


class ColumnNotText(ContactsError):
    """The email column holds numbers, lists, structs or bytes that are not UTF-8, not text."""


class ContactsAccountingError(ContactsError, AccountingError):
    """Counts do not add up to the rows read: a bug, never a property of the input."""


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ContactCounts:
    """Where every input row went. ``total_rows == empty + syntax_invalid + duplicates + to_verify``."""

    total_rows: int
    empty: int
    syntax_invalid: int
    duplicates: int
    to_verify: int

    def check(self) -> None:
        """Raise :class:`ContactsAccountingError` unless the parts add up to the total."""
        parts = self.empty + self.syntax_invalid + self.duplicates + self.to_verify
        if parts != self.total_rows:
            raise ContactsAccountingError(f"contact counts do not add up: {self}")


@dataclass(frozen=True)
class PreparedContacts:
    """The two files :func:`prepare_contacts` wrote, and the counts.

    ``upload_path``: CSV with header ``Email``, one row per unique valid normalised address in order of
    first occurrence: the file for Clearout's bulk upload. Its name carries a hash of its content, so
    Clearout's duplicate-file answer (2043, keyed on name and size) only ever matches the same list.
    ``rows_path``: Parquet, one row per input row: ``row_key``, the input columns, ``normalised_email``,
    ``local_decision``, ``local_reason`` (why it was decided locally) and ``cleaned_email`` (the address
    taken out of a wrapper); :func:`clearout_provider.results.join_results` reads it.
    """

    upload_path: Path | ObjectStoragePath
    rows_path: Path | ObjectStoragePath
    email_column: str
    counts: ContactCounts

    def emails_to_verify(self) -> Iterator[str]:
        """The addresses of the upload file, in file order (for the instant path on small deltas)."""
        yield from read_upload(self.upload_path).to_pylist()


def read_upload(path: StoragePath) -> pa.Array:
    """The addresses of an upload file written with :func:`upload_csv`, in file order."""
    with resolve_path(path).open("rb") as stream:
        table = pacsv.read_csv(
            stream, convert_options=pacsv.ConvertOptions(column_types={UPLOAD_EMAIL_HEADER: pa.string()})
        )
    return table.column(UPLOAD_EMAIL_HEADER).combine_chunks()


@dataclass(frozen=True)
class NormalisedEmails:
    """Output of :func:`normalise_emails`, aligned with its input.

    ``normalised``: the address to verify when ``valid``; for a locally decided row the cleaned,
    lower-cased text (so a report can show what was rejected); null for empty input. ``valid``: sent to
    the verifier (not certainly undeliverable). ``empty``: nothing but whitespace, wrappers or invisible
    characters (or null). ``reason``: why a row is decided locally (null when it is sent or empty).
    ``cleaned``: the address extracted from a wrapper (``John <a@b.com>``, ``mailto:``, invisible
    characters...), as written; null when the input needed no cleaning beyond trimming.
    """

    normalised: pa.StringArray
    valid: pa.BooleanArray
    empty: pa.BooleanArray
    reason: pa.StringArray
    cleaned: pa.StringArray


# ----------------------------------------------------------------------------------- normalisation

# What is decided locally. A row decided here is written back as a hard-bounce syntax error and then
# UNSUBSCRIBED without Clearout ever seeing it, so this check must never be stricter than the verifier:
#
# * email-validator, with quoted local parts, IP-literal domains and SMTPUTF8 allowed and no DNS
#   (:data:`_PERMISSIVE`), says what is certainly fine: those addresses are sent in its normal form.
# * What it rejects is decided locally only when a rule of :func:`_rejected` says the address is
#   certainly undeliverable (no "@", an empty part, an unquoted second "@", whitespace or a control
#   character, bad dots in an unquoted local part, a domain without a dot, an invalid domain character or
#   label, over 254 bytes...). Everything else it rejects (IDNA 2008 disallowed but IDNA 2003 valid
#   domains such as emoji ones, obsolete quoting, "--" labels...) is borderline and sent as well:
#   the verifier decides, for at most one credit.
#
# The fast path. email-validator checks an address in independent parts: the local part (an ASCII one is
# valid exactly when it is an RFC 5322 dot-atom: its DOT_ATOM_TEXT over ATEXT, mirrored below), the
# domain (on its own), and the total length, 254 UTF-8 bytes, of three spellings: as given, with the
# domain normalised to Unicode, and with the domain in IDNA ASCII. A dot-atom holds no "@", "<" or quote,
# so such an address splits at its first "@" exactly as email-validator splits it. Hence for
# "<dot-atom>@<domain>" the verdict is that of "a@<domain>" (:func:`_judge_domain`, the same function
# the slow path uses for the domain) plus a length check. So each DISTINCT domain is judged once, the
# local parts and lengths are checked vectorised, and only addresses with another shape (no "@", quoted
# or non-ASCII local parts, ...) are judged whole. A deterministic sample of fast-path answers is
# re-checked whole on every run; tests/unit/test_contacts.py checks the equivalence on a corpus.
_ATEXT = r"a-z0-9_!#$%&'*+\-/=?^`{|}~"
_DOT_ATOM_AT_REST = rf"^(?P<local>[{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@(?P<domain>.+)$"
_MAX_EMAIL_BYTES = 254
_MAX_LABEL_BYTES = 63
#: How many fast-path answers are re-checked with the whole-address judgement on each run.
FAST_PATH_SAMPLE = 1000


class _ValidatorOptions(TypedDict):
    check_deliverability: bool
    allow_quoted_local: bool
    allow_domain_literal: bool
    allow_smtputf8: bool


_PERMISSIVE: _ValidatorOptions = {
    "check_deliverability": False,
    "allow_quoted_local": True,
    "allow_domain_literal": True,
    "allow_smtputf8": True,
}
_TOO_LONG = "longer than 254 bytes"

#: Addresses are normalised in slices of this many rows: the intermediates of a million-row column
#: would otherwise cost several hundred MB at once.
_SLICE_ROWS = 1 << 18
_NO_TEXT = pa.scalar(None, pa.string())

#: One domain's judgement: (form to send, UTF-8 length of its longest spelling, reason when certainly
#: undeliverable, whether it carries a wrapper's residue). Cached per distinct domain for a whole column.
_DomainVerdict = tuple[str, int, str | None, bool]


# ------------------------------------------------------------------------------------------ cleaning

# Wrappers people and exports put around an address; the address inside is what is verified. A wrapped
# address is never dot-atom shaped ("<", ":", quotes and invisible characters are not ATEXT), unless
# the residue sits in the domain ("'a@b.com'", "a@b.com;"), which the per-domain verdict flags. So only
# the rows the fast path cannot judge anyway (about 1% of a real list) and the flagged ones are cleaned,
# in Python, and judged whole. Each rule only ever fires on text email-validator rejects (a valid
# address neither starts with "mailto:" nor ends in ">", a quote or punctuation, nor holds format
# characters), so cleaning never turns an acceptable address into another one.
#
# Zero-width characters, the BOM, the word joiner and the soft hyphen go; a no-break space is a space
# (removed at the ends, whitespace inside: "a@b.com\u00a0x" must not become "a@b.comx").
_INVISIBLE = {**dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff\u2060\u00ad")), 0xA0: " "}
_QUOTE_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019"}
_TRAILING_PUNCTUATION = ";,.:"
_WRAPPED_DOMAIN = re.compile("[\u200b-\u200d\ufeff\u00a0\u2060\u00ad<>]|[;,.:\"'\u201d\u2019]$")


def _unwrap_once(text: str) -> str:
    """``text`` with its outermost wrapper removed (unchanged when it has none)."""
    text = text.translate(_INVISIBLE).strip()
    if text[:7].lower() == "mailto:":
        return text[7:].split("?", 1)[0]
    if text.endswith(">") and "<" in text:  # "<a@b.com>", "John Doe <a@b.com>", '"Doe, John" <a@b.com>'
        return text[text.rindex("<") + 1 : -1]
    if len(text) > 1 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        return text[1:-1]
    return text.rstrip(_TRAILING_PUNCTUATION)


def extract_address(text: str) -> str:
    """The address inside any nesting of the usual wrappers: ``mailto:``, angle brackets with or without
    a display name, surrounding quotes, invisible characters, trailing ``;``/``,``/``.``/``:``.

    Every step shortens the text, turns a no-break space into a space, or stops, so this ends, and its
    result has no wrapper left (idempotent).
    """
    while (inner := _unwrap_once(text)) != text:
        text = inner
    return text


def _cleaned(trimmed: pa.StringArray) -> tuple[pa.StringArray, pa.StringArray]:
    """(lower-cased text with wrappers removed, the extracted address as written where that changed the
    text, else null)."""
    before = trimmed.to_pylist()
    after = [extract_address(text) for text in before]
    changed = pa.array([a if a != b and a else None for a, b in zip(after, before, strict=True)], pa.string())
    return pc.utf8_lower(pa.array(after, pa.string())), changed


# ---------------------------------------------------------------------------------------- judgement


def _split_unquoted_at(address: str) -> tuple[str, str] | str:
    """(local part, domain) split at the one "@" outside quotes, or why that is impossible.

    Also refuses whitespace outside quotes and unbalanced quotes: both are certain, whatever the parts.
    """
    inside = escaped = False
    at = []
    for position, char in enumerate(address):
        if inside:
            escaped, inside = (not escaped and char == "\\"), (escaped or char != '"')
        elif char == '"':
            inside = True
        elif char == "@":
            at.append(position)
        elif char.isspace():
            return "whitespace in the address"
    if inside:
        return "unbalanced quotes"
    if not at:
        return "no @"
    if len(at) > 1:
        return "more than one @ outside quotes"
    return address[: at[0]], address[at[0] + 1 :]


_LOCAL_SPECIALS = frozenset('\\,:;<>[]"')


def _local_reason(local: str) -> str | None:
    """Why an unquoted local part is certainly invalid, or None (quoted or obsolete forms: the verifier's)."""
    if not local:
        return "nothing before the @"
    if '"' in local:
        return None
    if local.startswith(".") or local.endswith("."):
        return "the part before the @ starts or ends with a dot"
    if ".." in local:
        return "two dots in a row before the @"
    bad = sorted(_LOCAL_SPECIALS.intersection(local))
    return f"character {bad[0]!r} before the @ outside quotes" if bad else None


def _label_bytes(label: str) -> int | None:
    """Length of a domain label as sent (IDNA ASCII), or None when that cannot be told for certain."""
    try:
        prepared = label if label.isascii() else encodings.idna.nameprep(label)
    except UnicodeError:
        return None
    return len(prepared) if prepared.isascii() else len(b"xn--" + prepared.encode("punycode"))


_LABEL_SEPARATORS = re.compile("[.\u3002\uff0e\uff61]")
_NOT_LDH = re.compile(r"[^a-zA-Z0-9\-\u0080-\U0010ffff]")


def _label_reason(label: str) -> str | None:
    if not label:
        return "an empty label in the domain (dots at the start or two in a row)"
    if bad := _NOT_LDH.search(label):
        return f"character {bad.group()!r} in the domain"
    if label.startswith("-") or label.endswith("-"):
        return "a domain label starts or ends with a hyphen"
    length = _label_bytes(label)
    return "a domain label longer than 63 bytes" if length is not None and length > _MAX_LABEL_BYTES else None


def _domain_reason(domain: str) -> str | None:
    """Why a domain email-validator rejected is certainly undeliverable, or None when only unusual."""
    if not domain:
        return "nothing after the @"
    if "@" in domain:
        return "more than one @ outside quotes"
    if any(char.isspace() for char in domain):
        return "whitespace in the address"
    if domain.startswith("["):
        return "not a valid IP address in brackets"  # email-validator parses every valid literal
    labels = _LABEL_SEPARATORS.split(domain)
    if len(labels) < 2:
        return "no dot in the domain"
    for label in labels:
        if reason := _label_reason(label):
            return reason
    if labels[-1].isascii() and labels[-1].isdigit():
        return "the top-level domain is all digits"
    if any(domain == name or domain.endswith(f".{name}") for name in SPECIAL_USE_DOMAIN_NAMES):
        return "a special-use domain (such as .local, .test, .invalid) that cannot receive mail"
    return None


def _accepted(address: str) -> ValidatedEmail | None:
    """email-validator's permissive verdict; None when it rejects (its idna may raise UnicodeError)."""
    try:
        return validate_email(address, **_PERMISSIVE)
    except (EmailNotValidError, UnicodeError):
        return None


#: Lower-case ASCII host names email-validator accepts as they are: letters, digits and single inner
#: hyphens per label (no "--", so no A-label to decode), 1-63 per label, an alphabetic TLD. Checked
#: here in a microsecond instead of email-validator's ~100 µs of IDNA rules; tests/unit/test_contacts.py
#: holds the two to the same answer, and every run re-checks a sample whole (_fast_path_agrees).
_PLAIN_DOMAIN = re.compile(r"(?:[a-z0-9]{1,63}(?:-[a-z0-9]+)*\.)+[a-z]{2,63}")
_SPECIAL_USE_SUFFIXES = tuple(f".{name}" for name in SPECIAL_USE_DOMAIN_NAMES)


def _plain_domain(domain: str) -> bool:
    """Whether ``domain`` is a plain host name (:data:`_PLAIN_DOMAIN`) email-validator takes unchanged."""
    return (
        len(domain) <= 253
        and _PLAIN_DOMAIN.fullmatch(domain) is not None
        and all(len(label) <= _MAX_LABEL_BYTES for label in domain.split("."))
        and not domain.endswith(_SPECIAL_USE_SUFFIXES)
    )


def _judge_domain(domain: str) -> _DomainVerdict:
    """A domain's verdict (see :data:`_DomainVerdict`); borderline domains are sent in IDNA 2003 form."""
    if _plain_domain(domain):
        return domain, len(domain), None, False
    wrapped = _WRAPPED_DOMAIN.search(domain) is not None
    checked = _accepted(f"a@{domain}")
    if checked is not None:
        spellings = (domain, checked.domain, checked.ascii_domain)
        return checked.ascii_domain, max(len(s.encode()) for s in spellings), None, wrapped
    try:
        form = domain.encode("idna").decode("ascii")
    except UnicodeError:
        form = domain
    return form, max(len(domain.encode()), len(form.encode())), _domain_reason(domain), wrapped


def _judge(address: str, domains: dict[str, _DomainVerdict]) -> tuple[str, str | None]:
    """One cleaned, lower-cased address: (the form to send, None) or (the text, why it is decided here)."""
    checked = _accepted(address)
    if checked is not None:
        return f"{checked.local_part}@{checked.ascii_domain}", None
    if len(address.encode()) > _MAX_EMAIL_BYTES:
        return address, _TOO_LONG
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in address):
        return address, "a control character"  # not even allowed inside quotes (RFC 5321 qtextSMTP)
    parts = _split_unquoted_at(address)
    if isinstance(parts, str):
        return address, parts
    local, domain = parts
    if reason := _local_reason(local):
        return address, reason
    if domain not in domains:
        domains[domain] = _judge_domain(domain)
    form, longest, reason, _ = domains[domain]
    if reason is None and len(local.encode()) + 1 + longest > _MAX_EMAIL_BYTES:
        reason = _TOO_LONG
    if reason is not None:
        return address, reason
    local_form = _accepted(f"{local}@a.com")
    return f"{local_form.local_part if local_form else local}@{form}", None


def _judge_whole(
    values: pa.StringArray, domains: dict[str, _DomainVerdict]
) -> tuple[pa.StringArray, pa.StringArray]:
    """The slow path: :func:`_judge` on each distinct whole address; (normalised, reason) per row."""
    distinct = pc.unique(values)
    answers = [_judge(v, domains) for v in distinct.to_pylist()]
    positions = pc.index_in(values, value_set=distinct)
    normalised = pa.array([a for a, _ in answers], pa.string())
    reasons = pa.array([r for _, r in answers], pa.string())
    return normalised.take(positions), reasons.take(positions)


def _judge_by_domain(
    lowered: pa.StringArray, domains: dict[str, _DomainVerdict]
) -> tuple[pa.BooleanArray, pa.StringArray, pa.StringArray, pa.BooleanArray]:
    """The fast path (see above): (dot-atom shaped?, address to send, reason decided locally, domain
    carries a wrapper's residue) per row.

    Rows that are not dot-atom shaped get nulls. ``domains`` caches each domain's verdict across slices.
    """
    parts = pc.extract_regex(lowered, _DOT_ATOM_AT_REST)
    local, domain = pc.struct_field(parts, "local"), pc.struct_field(parts, "domain")
    for name in pc.drop_null(pc.unique(domain)).to_pylist():
        if name not in domains:
            domains[name] = _judge_domain(name)
    known = pa.array(list(domains), pa.string())
    forms, lengths, reasons, wrapped = zip(*domains.values(), strict=True) if domains else ((), (), (), ())
    positions = pc.index_in(domain, value_set=known)
    total = pc.add(pc.binary_length(local), pc.add(pa.array(lengths, pa.int32()).take(positions), 1))
    # In the slow path's order: the length as given, then the domain, then the longest spelling.
    reason = pc.if_else(
        pc.greater(pc.binary_length(lowered), _MAX_EMAIL_BYTES),
        _TOO_LONG,
        pc.coalesce(
            pa.array(reasons, pa.string()).take(positions),
            pc.if_else(pc.greater(total, _MAX_EMAIL_BYTES), _TOO_LONG, _NO_TEXT),
        ),
    )
    form = pa.array(forms, pa.string()).take(positions)
    residue = pc.fill_null(pa.array(wrapped, pa.bool_()).take(positions), False)
    return pc.is_valid(parts), pc.binary_join_element_wise(local, form, "@"), reason, residue


def _fast_path_agrees(
    lowered: pa.StringArray,
    shaped: pa.BooleanArray,
    normalised: pa.StringArray,
    reason: pa.StringArray,
    sample_size: int,
) -> bool:
    """Re-check an evenly spread, deterministic sample of fast-path answers with the whole judgement."""
    rows = pc.indices_nonzero(shaped)
    if len(rows) == 0 or sample_size == 0:
        return True
    sample = rows.take(pa.array(np.linspace(0, len(rows) - 1, min(sample_size, len(rows)), dtype=np.int64)))
    fast = zip(normalised.take(sample).to_pylist(), reason.take(sample).to_pylist(), strict=True)
    expected = [n if r is None else None for n, r in fast]
    whole = (_judge(a, {}) for a in lowered.take(sample).to_pylist())  # its own cache: independent
    disagreements = sum((n if r is None else None) != e for (n, r), e in zip(whole, expected, strict=True))
    if disagreements:
        log.warning(
            "Syntax fast path disagreed with the whole-address check on %d of %d sampled addresses; "
            "checking these addresses whole",
            disagreements,
            len(sample),
        )
    return disagreements == 0


def _normalise_slice(
    array: pa.StringArray, domains: dict[str, _DomainVerdict], sample_size: int
) -> NormalisedEmails:
    trimmed = pc.utf8_trim_whitespace(pc.fill_null(array, ""))
    lowered = pc.utf8_lower(trimmed)
    shaped, normalised, reason, residue = _judge_by_domain(lowered, domains)
    if not _fast_path_agrees(lowered, shaped, normalised, reason, sample_size):
        shaped = residue = pa.array(np.zeros(len(lowered), dtype=bool))
    # Locally decided rows keep their text; the slow path overwrites the rows the fast path could not
    # judge and those with a wrapper's residue, after cleaning them.
    normalised = pc.if_else(pc.is_null(reason), normalised, lowered)
    empty = pc.equal(pc.binary_length(lowered), 0)
    cleaned = pa.nulls(len(lowered), pa.string())
    slow = pc.and_(pc.or_(pc.invert(shaped), residue), pc.invert(empty))
    del lowered
    if pc.any(slow).as_py():
        text, found = _cleaned(trimmed.filter(slow))
        slow_normalised, slow_reason = _judge_whole(text, domains)
        normalised = pc.replace_with_mask(normalised, slow, slow_normalised)
        reason = pc.replace_with_mask(reason, slow, slow_reason)
        cleaned = pc.replace_with_mask(cleaned, slow, found)
        empty = pc.replace_with_mask(empty, slow, pc.equal(pc.binary_length(text), 0))
    return NormalisedEmails(
        normalised=pc.if_else(empty, _NO_TEXT, normalised),
        valid=pc.and_(pc.invert(empty), pc.is_null(reason)),
        empty=empty,
        reason=pc.if_else(empty, _NO_TEXT, reason),
        cleaned=pc.if_else(empty, _NO_TEXT, cleaned),
    )


def normalise_emails(values: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> NormalisedEmails:
    """Clean, trim, lower-case, IDN-to-punycode and syntax-check addresses, vectorised; never raises.

    The one normalisation of this provider: preparation keys the upload on it, and the result readers
    key Clearout's answers on it, so a verdict always finds its rows. It is idempotent: normalising a
    normalised address gives it back unchanged.
    """
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_string(array.type):
        array = array.cast(pa.string())
    domains: dict[str, _DomainVerdict] = {}
    slices = [
        _normalise_slice(
            array.slice(start, _SLICE_ROWS),
            domains,
            min(FAST_PATH_SAMPLE, -(-FAST_PATH_SAMPLE * _SLICE_ROWS // len(array))),
        )
        for start in range(0, len(array), _SLICE_ROWS)
    ] or [_normalise_slice(array, domains, 0)]
    return NormalisedEmails(
        **{
            name: pa.concat_arrays([getattr(s, name) for s in slices])
            for name in ("normalised", "valid", "empty", "reason", "cleaned")
        }
    )


# ------------------------------------------------------------------------------------------ reading


def find_email_column(columns: Sequence[str], email_column: str | None = None) -> str:
    """The email column: ``email_column`` if given (exact, else case-insensitive), else detected.

    Detection accepts the header names Clearout's own upload accepts (verdicts.EMAIL_COLUMN_NAMES) in any
    case, spacing or punctuation ("E-Mail", "email_address", "EMAIL ADDRESS"); exactly one column must
    match.
    """
    if email_column is not None:
        if email_column in columns:
            return email_column
        folded = [c for c in columns if c.strip().casefold() == email_column.strip().casefold()]
        if len(folded) == 1:
            return folded[0]
        raise EmailColumnNotFound(f"the email column {email_column!r} is not in the file", columns)
    wanted = {_column_key(name) for name in EMAIL_COLUMN_NAMES}
    matches = [c for c in columns if _column_key(c) in wanted]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        separated = len(columns) == 1 and any(sep in columns[0] for sep in ";\t|")
        hint = " (the header looks separated by something other than commas: save it as comma-separated)"
        raise EmailColumnNotFound(
            f"no email column found (looked for {list(EMAIL_COLUMN_NAMES)}, any case); name it with "
            f"email_column={hint if separated else ''}",
            columns,
        )
    raise EmailColumnNotFound(
        f"several columns look like email columns {matches}; name one with email_column=", columns
    )


def _column_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def resolve_path(path: StoragePath) -> Path | ObjectStoragePath:
    """A local :class:`Path` when the file is local (fastest I/O), else the ObjectStoragePath."""
    if not isinstance(path, ObjectStoragePath):
        text = os.fspath(path)
        if "://" not in text:
            return Path(text)
        path = ObjectStoragePath(text)
    return Path(path.path) if path.protocol in ("", "file", "local") else path


def _first_invalid_utf8(stream: IO[bytes]) -> tuple[int, int, int] | None:
    """(byte offset, 1-based line, byte value) of the first byte that is not UTF-8, or None."""
    offset, line, carry = 0, 1, b""
    while True:
        chunk = stream.read(1 << 20)
        data = carry + chunk
        try:
            data.decode("utf-8")
            carry = b""
            good = len(data)
        except UnicodeDecodeError as error:
            if chunk and error.reason == "unexpected end of data":  # a character split across chunks
                good, carry = error.start, data[error.start :]
            else:
                return offset + error.start, line + data[: error.start].count(b"\n"), data[error.start]
        offset += good
        line += data[:good].count(b"\n")
        if not chunk:
            return None


def read_csv_header(stream: IO[bytes], source: str) -> list[str]:
    """A CSV's column names as pyarrow will see them: the first non-blank line (both skip blank lines).

    Raises :class:`EmptyContactsFile` for a file of only whitespace (or a byte order mark),
    :class:`MalformedContactsFile` for a header the csv module cannot split, UnicodeDecodeError for
    non-UTF-8. Any line ending (LF, CRLF, a lone CR) is accepted, as pyarrow accepts them.
    """
    head = stream.read(1 << 20)
    text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    try:
        header = next((row for row in csv.reader(io.StringIO(text, newline="")) if row), None)
    except csv.Error as error:  # a header cell over the csv module's field limit
        raise MalformedContactsFile(f"{source} has an unreadable CSV header line ({error})") from None
    if not text.strip() or header is None:
        raise EmptyContactsFile(f"{source} is empty: expected a CSV header line with an email column")
    return header


#: Pyarrow's CSV block; a value or line longer than it is read again with blocks this many times larger.
_CSV_BLOCK_BYTES = 1 << 20
_CSV_BLOCK_GROWTH = 16
_MAX_CSV_BLOCK_BYTES = 1 << 30


class _NotUTF8(Exception):
    """Pyarrow met bytes that are not UTF-8; :func:`_read_csv` locates them for the error message."""


def _parse_csv(path: Path | ObjectStoragePath, source: str, names: Sequence[str]) -> pa.Table:
    """Every column as text; a line longer than the block is retried with bigger blocks."""
    invalid_rows: list[tuple[int | None, int, int]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        invalid_rows.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    block = _CSV_BLOCK_BYTES
    while True:
        invalid_rows.clear()
        with path.open("rb") as stream:
            try:
                return pacsv.read_csv(
                    stream if isinstance(path, ObjectStoragePath) else str(path),
                    read_options=pacsv.ReadOptions(block_size=block),
                    parse_options=pacsv.ParseOptions(
                        newlines_in_values=True, invalid_row_handler=on_invalid_row
                    ),
                    convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
                )
            except pa.ArrowInvalid as error:
                if "UTF8" in str(error):
                    raise _NotUTF8 from None
                if "straddl" not in str(error) or block >= _MAX_CSV_BLOCK_BYTES:
                    raise _malformed(source, error, invalid_rows) from None
        block = min(block * _CSV_BLOCK_GROWTH, _MAX_CSV_BLOCK_BYTES)


def _read_csv(path: Path | ObjectStoragePath, source: str) -> pa.Table:
    with path.open("rb") as stream:
        try:
            names: list[str] | None = read_csv_header(stream, source)
        except UnicodeDecodeError:
            names = None  # reported below with the offending byte's position
    if names is not None:
        if any("\x00" in name for name in names):
            raise MalformedContactsFile(
                f"{source} has NUL bytes in its header line: it is UTF-16 or a binary file, not a UTF-8 CSV; "
                "re-export it as UTF-8 CSV"
            )
        try:
            return _parse_csv(path, source, names)
        except _NotUTF8:
            pass
    with path.open("rb") as stream:
        position = _first_invalid_utf8(stream)
    if position is None:  # pyarrow's complaint but no invalid byte: report it as a parse failure
        raise MalformedContactsFile(f"{source} could not be read as CSV")
    raise ContactsEncodingError(source, *position)


def _malformed(
    source: str, error: pa.ArrowInvalid, invalid_rows: list[tuple[int | None, int, int]]
) -> ContactsError:
    """A parse error without the offending row's text (it would put contact data into logs)."""
    if invalid_rows:
        number, expected, actual = invalid_rows[0]
        where = f"row {number}" if number is not None else "a row"
        return MalformedContactsFile(
            f"{source} is not a well-formed CSV: {where} has {actual} fields where the header has {expected}"
        )
    if "straddl" in str(error):
        return MalformedContactsFile(
            f"{source} is not a usable CSV: one line or value is longer than "
            f"{_MAX_CSV_BLOCK_BYTES >> 20} MiB (an unclosed quote makes the rest of the file one value)"
        )
    return MalformedContactsFile(f"{source} is not a well-formed CSV: {str(error).split(':')[0]}")


@contextmanager
def _parquet_errors(source: str) -> Iterator[None]:
    """Pyarrow's failures on an unreadable Parquet file as :class:`MalformedContactsFile`, whether they
    come when it is opened or at a corrupt page further in (a plain OSError)."""
    try:
        yield
    except (pa.ArrowException, OSError) as error:
        raise MalformedContactsFile(f"{source} is not a readable Parquet file: {error}") from None


def _read_parquet(path: Path | ObjectStoragePath, source: str, max_rows: int) -> pa.Table:
    with path.open("rb") as stream, _parquet_errors(source):
        parquet = pq.ParquetFile(stream)
        if parquet.metadata.num_rows > max_rows:  # fail before reading the data
            raise TooManyContacts(source, parquet.metadata.num_rows, max_rows)
        return parquet.read()


#: First bytes of files that are not CSV or Parquet, and what to say about them.
_FOREIGN_SIGNATURES = (
    (b"\x1f\x8b", "compressed (gzip or zip/xlsx): give a plain CSV or Parquet file"),
    (b"PK\x03\x04", "compressed (gzip or zip/xlsx): give a plain CSV or Parquet file"),
    (b"\xd0\xcf\x11\xe0", "a legacy Excel (.xls) or other Office file: save it as CSV (UTF-8) or Parquet"),
    (b"\xff\xfe", "UTF-16 text: re-export it as UTF-8 CSV"),
    (b"\xfe\xff", "UTF-16 text: re-export it as UTF-8 CSV"),
)


def _is_parquet(path: Path | ObjectStoragePath, source: str) -> bool:
    """Whether a contacts file is Parquet (else it is read as CSV), told by its first bytes, never by its
    name; a file of another known kind (gzip, xlsx, UTF-16) is refused with what to give instead."""
    with path.open("rb") as stream:
        magic = stream.read(4)
    for signature, what in _FOREIGN_SIGNATURES:
        if magic.startswith(signature):
            raise MalformedContactsFile(f"{source} is {what}")
    return magic == b"PAR1"


def read_contacts(source: StoragePath, *, max_rows: int = DEFAULT_MAX_ROWS) -> pa.Table:
    """Read a CSV (every column as text) or Parquet file; the format is told by its first bytes, never by
    the file name (a Parquet file named .csv is read as Parquet)."""
    path = resolve_path(source)
    name = str(source)
    table = _read_parquet(path, name, max_rows) if _is_parquet(path, name) else _read_csv(path, name)
    if table.num_rows > max_rows:
        raise TooManyContacts(name, table.num_rows, max_rows)
    return table


def _check_column_names(columns: Sequence[str], source: str) -> None:
    duplicated = sorted(name for name, count in Counter(columns).items() if count > 1)
    if duplicated:
        raise ColumnNameConflict(
            f"{source} has several columns named {duplicated}; column names must be unique"
        )
    clashing = sorted(set(columns) & _RESERVED_COLUMNS)
    if clashing:
        raise ColumnNameConflict(
            f"{source} has columns {clashing} that this provider adds to every result "
            "(is it an earlier result file?); drop or rename them"
        )


# -------------------------------------------------------------------------------------- preparation


def email_text(table: pa.Table, column: str, source: str) -> pa.Array:
    """The email column as text, or :class:`ColumnNotText`: a column of numbers, lists or structs is the
    wrong column (every row would be decided locally, then unsubscribed), so it is refused up front."""
    values = table.column(column).combine_chunks()
    type_ = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    kinds = (pa.types.is_nested, pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    if any(kind(type_) for kind in (*kinds, pa.types.is_temporal, pa.types.is_decimal)):
        raise ColumnNotText(
            f"the email column {column!r} of {source} holds {type_} values, not text; name the column that "
            "holds the addresses with email_column="
        )
    try:
        return values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ColumnNotText(
            f"the email column {column!r} of {source} holds bytes that are not UTF-8 text"
        ) from None


def upload_csv(addresses: pa.Array) -> bytes:
    """The bulk upload file of ``addresses``: header ``Email``, one address a line, no line breaks in them
    (control characters are decided locally).

    Unquoted, like a hand-made list, except the few addresses that need it: a quoted local part may hold
    a comma or a quote (``"doe, john"@x.com``), and pyarrow's "needed" quoting would quote every string.
    Built with pyarrow compute, so a million addresses take a fraction of a second.
    """
    lines = addresses
    needs = pc.match_substring_regex(lines, '[",]')
    if pc.any(needs).as_py():
        escaped = pc.replace_substring(pc.filter(lines, needs), '"', '""')
        lines = pc.replace_with_mask(lines, needs, pc.binary_join_element_wise('"', escaped, '"', ""))
    rows = pa.LargeListArray.from_arrays(pa.array([0, len(lines)], pa.int64()), lines.cast(pa.large_string()))
    body = pc.binary_join(rows, pa.scalar("\n", pa.large_string()))
    text = body[0].as_buffer().to_pybytes()
    return f"{UPLOAD_EMAIL_HEADER}\n".encode() + (text + b"\n" if len(lines) else b"")


def _first_occurrences(codes: np.ndarray) -> np.ndarray:
    """True where a dictionary code appears for the first time (codes are numbered by first appearance)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=bool)
    seen_max = np.maximum.accumulate(codes)
    first = np.empty(len(codes), dtype=bool)
    first[0] = codes[0] >= 0
    first[1:] = codes[1:] > seen_max[:-1]
    return first


def prepare_contacts(
    source: StoragePath,
    *,
    email_column: str | None = None,
    workdir: StoragePath,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> PreparedContacts:
    """Prepare a contacts file for Clearout: the upload file, the ROWS file and the counts.

    Raises a :class:`ContactsError` subclass for any input it cannot prepare (no/ambiguous email column,
    empty file, non-UTF-8 bytes, ragged CSV, reserved or duplicate column names, more than ``max_rows``).
    The same input always gives a byte-identical upload file.
    """
    name = str(source)
    table = read_contacts(source, max_rows=max_rows)
    _check_column_names(table.column_names, name)
    column = find_email_column(table.column_names, email_column)

    emails = normalise_emails(email_text(table, column, name))
    encoded = pc.dictionary_encode(pc.if_else(emails.valid, emails.normalised, pa.scalar(None, pa.string())))
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    first = _first_occurrences(codes)
    valid = emails.valid.to_numpy(zero_copy_only=False)
    empty = emails.empty.to_numpy(zero_copy_only=False)
    syntax = ~valid & ~empty
    duplicate = valid & ~first

    no_decision = pa.scalar(None, pa.string())
    decision = pc.if_else(
        pa.array(empty),
        LocalDecision.EMPTY.value,
        pc.if_else(
            pa.array(syntax),
            LocalDecision.SYNTAX.value,
            pc.if_else(pa.array(duplicate), LocalDecision.DUPLICATE.value, no_decision),
        ),
    )
    counts = ContactCounts(
        total_rows=table.num_rows,
        empty=int(empty.sum()),
        syntax_invalid=int(syntax.sum()),
        duplicates=int(duplicate.sum()),
        to_verify=len(encoded.dictionary),
    )
    counts.check()

    upload = upload_csv(encoded.dictionary)
    workdir_path = resolve_path(workdir)
    if isinstance(workdir_path, Path):
        workdir_path.mkdir(parents=True, exist_ok=True)
    upload_path = workdir_path / f"clearout-upload-{hashlib.sha256(upload).hexdigest()[:16]}.csv"
    with upload_path.open("wb") as stream:
        stream.write(upload)

    rows = (
        table.add_column(0, ROW_KEY, pa.array(np.arange(table.num_rows, dtype=np.int64)))
        .append_column(NORMALISED_EMAIL, emails.normalised)
        .append_column(LOCAL_DECISION, decision)
        .append_column(LOCAL_REASON, emails.reason)
        .append_column(CLEANED_EMAIL, emails.cleaned)
        .replace_schema_metadata({_META_INPUT_COLUMNS: json.dumps(table.column_names).encode()})
    )
    rows_path = workdir_path / "clearout-rows.parquet"
    # Read once by the join: on local disk plain encoding writes twice as fast; over a network the
    # bytes cost more than the CPU, so remote folders get Parquet's default dictionary + snappy.
    local = isinstance(workdir_path, Path)
    with rows_path.open("wb") as stream:
        pq.write_table(
            rows,
            stream,
            row_group_size=_ROW_GROUP_ROWS,
            use_dictionary=not local,
            compression="none" if local else "snappy",
        )
    log.info(
        "Prepared %d rows from %s: %d to verify, %d duplicates, %d syntax-invalid, %d empty",
        counts.total_rows,
        name,
        counts.to_verify,
        counts.duplicates,
        counts.syntax_invalid,
        counts.empty,
    )
    return PreparedContacts(upload_path=upload_path, rows_path=rows_path, email_column=column, counts=counts)


def input_columns(rows_schema: pa.Schema) -> list[str]:
    """The input's column names, in input order, as recorded in a ROWS file's schema."""
    raw = (rows_schema.metadata or {}).get(_META_INPUT_COLUMNS)
    if raw is None:
        raise ContactsError(
            "not a ROWS file written by prepare_contacts (no input column list in its metadata)"
        )
    return json.loads(raw)


# ------------------------------------------------------------------------------------------ freshness

#: Columns the freshness filter reads: the profile's address, then what an earlier Append wrote, under
#: its result-column role (the extract renames the verifier's properties to these): the address and
#: time verified, and the verifier's own status words (``status``).
FRESHNESS_COLUMNS = ("email", "verified_email", "verified_at", "status")


#: Headline status words (lower case, "_" for spaces and dashes) whose verdict is uncertain: the neutral
#: words themselves (Mail.so's results are neutral) and Clearout's statuses that map to them, plus
#: "catchall" as some exports spell it.
UNCERTAIN_STATUS_WORDS: frozenset[str] = frozenset(
    {
        *(str(v) for v in UNCERTAIN_VERDICTS),
        *(s.value for s, v in VERDICT_OF_STATUS.items() if v in UNCERTAIN_VERDICTS),
        "catchall",
    }
)


class FreshnessReason(StrEnum):
    """Why a profile is (re-)verified; a null reason means its verification is fresh."""

    NEVER_VERIFIED = "never_verified"
    STALE = "stale"
    EMAIL_CHANGED = "email_changed"


@dataclass(frozen=True)
class Freshness:
    """How long a verification stays good, in days.

    Catch-all and unknown verdicts are provisional (a greylisting or timeout clears up; a catch-all
    domain may change), so they expire after ``uncertain_ttl_days`` instead of ``ttl_days``.
    """

    ttl_days: float = 30
    uncertain_ttl_days: float = 1

    def __post_init__(self) -> None:
        if self.ttl_days < 0 or self.uncertain_ttl_days < 0:
            raise ValueError(f"Freshness TTLs must be >= 0 days, got {self}")

    def lifetime(self, verdict: str | None) -> timedelta:
        """How long a neutral ``verdict`` stays good: an uncertain one (:data:`UNCERTAIN_VERDICTS`) for
        ``uncertain_ttl_days``. The load writes verification time + this as the profile's due date, which
        the delta selection asks CleverTap for (:mod:`clearout_provider.clevertap.selection`)."""
        return self._lifetime(verdict in UNCERTAIN_VERDICTS)

    def oldest_fresh(self, uncertain: pa.Array | pa.ChunkedArray, now: datetime) -> pa.Array:
        """Per row, the oldest verification time still fresh at ``now``, the row's verdict being
        ``uncertain`` (null counts as certain): :meth:`lifetime`'s rule for a column, shared by the
        extract's check (:func:`freshness_reasons`) and the ledger's reuse."""
        return pc.if_else(
            pc.fill_null(uncertain, False),
            pa.scalar(now - self._lifetime(True), _UTC),
            pa.scalar(now - self._lifetime(False), _UTC),
        )

    def _lifetime(self, uncertain: bool) -> timedelta:
        return timedelta(days=self.uncertain_ttl_days if uncertain else self.ttl_days)


def _column_or_nulls(table: pa.Table, name: str, type_: pa.DataType) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, type_)
    return table.column(name).combine_chunks()


_UTC = pa.timestamp("us", tz="UTC")
#: Spellings of "Clearout Verified At" besides ISO 8601 with "Z" (what the export writes).
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


def _verified_at(values: pa.Array) -> pa.Array:
    """Verification times as UTC timestamps; text that is not a time becomes null (= never verified)."""
    if pa.types.is_timestamp(values.type):
        return values if values.type.tz else values.cast(pa.timestamp(values.type.unit, tz="UTC"))
    texts = pc.utf8_trim_whitespace(values.cast(pa.string()))
    texts = pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts)
    try:
        return pc.cast(texts, _UTC)
    except pa.ArrowInvalid:
        pass
    # Naive spellings are taken as UTC (casting a naive timestamp to a zoned one keeps its wall time).
    parsed = pc.coalesce(*(pc.strptime(texts, f, "us", error_is_null=True).cast(_UTC) for f in _TIME_FORMATS))
    unparsed = pc.sum(pc.and_(pc.is_valid(texts), pc.is_null(parsed))).as_py() or 0
    if unparsed:
        log.warning(
            "%d 'Clearout Verified At' values are not dates; treating them as never verified", unparsed
        )
    return parsed


def freshness_reasons(table: pa.Table, freshness: Freshness, now: datetime) -> pa.Array:
    """Per profile: "never_verified", "stale", "email_changed", or null when its verification is fresh.

    Reads :data:`FRESHNESS_COLUMNS` (a missing column counts as empty). Precedence: no verification
    date → never_verified; else the address changed → email_changed; else too old → stale. The
    profile's address and the verified one are compared after :func:`normalise_emails`, so
    ``John@X.com`` verified as ``john@x.com`` is unchanged. A verification that recorded no address (the
    Clearout app's own Append writes none) is trusted for the current address: re-verifying every such
    profile would spend credits on nothing. Vectorised: a million profiles take about a second.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    email_column, verified_column, at_column, status_column = FRESHNESS_COLUMNS
    email = normalise_emails(_column_or_nulls(table, email_column, pa.string())).normalised
    verified = normalise_emails(_column_or_nulls(table, verified_column, pa.string())).normalised
    at = _verified_at(_column_or_nulls(table, at_column, pa.string()))
    status = _column_or_nulls(table, status_column, pa.string()).cast(pa.string())
    status = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_trim_whitespace(status)), r"[\s-]+", "_")
    uncertain = pc.is_in(status, value_set=pa.array(sorted(UNCERTAIN_STATUS_WORDS)))
    stale = pc.less(at, freshness.oldest_fresh(uncertain, now))
    changed = pc.fill_null(pc.not_equal(email, verified), False)
    fresh = pa.scalar(None, pa.string())
    return pc.if_else(
        pc.is_null(at),
        FreshnessReason.NEVER_VERIFIED.value,
        pc.if_else(
            changed,
            FreshnessReason.EMAIL_CHANGED.value,
            pc.if_else(pc.fill_null(stale, False), FreshnessReason.STALE.value, fresh),
        ),
    )


# ------------------------------------------------------------------------------------------- chunking

#: File name of a chunk: its position, then a hash of its bytes (see :func:`split_into_chunks`).
CHUNK_FILE = "chunk-{index:05d}-{digest}.parquet"


#: Rows normalised at a time while :func:`split_into_chunks` reads the addresses: big enough that the
#: fast path's sampled re-check (:data:`FAST_PATH_SAMPLE` per call) stays a small cost, small enough
#: that the normalisation's temporaries stay a small part of a task's memory.
_GROUPING_ROWS = 1 << 18


def _group_keys(emails: Iterable[pa.Array]) -> np.ndarray:
    """Per row of the concatenated ``emails``: the first row of its address, keyed exactly as
    :func:`prepare_contacts` dedupes (the normalised address of a valid row), or the row itself for a
    row without a valid address (:func:`~clearout_provider.grouping.first_rows`).

    Only the normalised valid addresses are kept between slices.
    """
    keys = []
    pool = pa.default_memory_pool()
    for slice_ in emails:
        normalised = normalise_emails(slice_)
        keys.append(pc.if_else(normalised.valid, normalised.normalised, _NO_TEXT))
        del normalised
        pool.release_unused()  # the slice's temporaries: the allocator would keep them otherwise
    if not keys:
        return np.zeros(0, dtype=np.int64)
    # One array: sorting a chunked one costs two more index arrays, more than the copy (measured at 5M).
    addresses = pa.concat_arrays(keys)
    del keys
    pool.release_unused()
    first = first_rows(addresses)
    del addresses
    pool.release_unused()  # the strings are gone: give their memory back now
    return first


def _grouped_order(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row order with each address's rows together, True where a group starts in that order).

    ``key`` is :func:`_group_keys`: groups are ordered by their first row, and a row without a valid
    address keeps its place. The sort is stable, so the order is a pure function of the input.
    """
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.ones(len(key), dtype=bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    return order, starts


def _chunk_bounds(starts: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """[start, end) of each chunk: at most ``chunk_rows`` rows, cut only where a group starts.

    A group longer than ``chunk_rows`` (one address on that many profiles) is the only thing cut
    inside: its address is then verified once per chunk it spans.
    """
    group_starts = np.flatnonzero(starts)
    bounds, start, n = [], 0, len(starts)
    while start < n:
        end = min(start + chunk_rows, n)
        if end < n and not starts[end]:
            cut = int(group_starts[np.searchsorted(group_starts, end, side="right") - 1])
            end = cut if cut > start else end
        bounds.append((start, end))
        start = end
    return bounds


class _Rows:
    """A contacts file as :func:`split_into_chunks` reads it: one column at a time, then the rows in
    batches, so a Parquet input (what the extract writes) is never held whole. A CSV is parsed whole
    once (:func:`read_contacts`), as before."""

    def __init__(self, source: StoragePath) -> None:
        path = resolve_path(source)
        self._parquet: pq.ParquetFile | None = None
        self._table: pa.Table | None = None
        self._source = str(source)
        if _is_parquet(path, self._source):
            self._stream = path.open("rb")
            try:
                with _parquet_errors(self._source):
                    self._parquet = pq.ParquetFile(self._stream)
            except MalformedContactsFile:
                self._stream.close()
                raise
            self.schema = self._parquet.schema_arrow
            self.num_rows = self._parquet.metadata.num_rows
        else:
            self._table = read_contacts(source, max_rows=np.iinfo(np.int64).max)
            self.schema = self._table.schema
            self.num_rows = self._table.num_rows

    def column(self, name: str, rows: int) -> Iterator[pa.Table]:
        """Just column ``name``, ``rows`` rows at a time, as one-column tables."""
        if self._parquet is not None:
            with _parquet_errors(self._source):
                for batch in self._parquet.iter_batches(batch_size=rows, columns=[name]):
                    yield pa.Table.from_batches([batch])
        else:
            assert self._table is not None
            for start in range(0, self.num_rows, rows):
                yield self._table.select([name]).slice(start, rows)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every row, in order, a batch of at most :data:`_ROW_GROUP_ROWS` rows at a time."""
        if self._parquet is not None:
            with _parquet_errors(self._source):
                yield from self._parquet.iter_batches(batch_size=_ROW_GROUP_ROWS)
        else:
            assert self._table is not None
            yield from self._table.to_batches(max_chunksize=_ROW_GROUP_ROWS)

    def close(self) -> None:
        if self._parquet is not None:
            self._stream.close()


def _chunk_table(rows: _Rows, chunk_of_row: np.ndarray, index: int, wanted: np.ndarray) -> pa.Table:
    """The rows of chunk ``index`` (``chunk_of_row`` == index), in the order ``wanted`` gives their ids.

    One pass over the file per chunk keeps only that chunk's rows in memory: at most ``chunk_rows``
    rows, however large the file.
    """
    pieces, ids, offset = [], [], 0
    for batch in rows.batches():
        mine = np.flatnonzero(chunk_of_row[offset : offset + batch.num_rows] == index)
        if len(mine):
            pieces.append(batch.take(pa.array(mine)))
            ids.append(mine + offset)
        offset += batch.num_rows
    table = pa.Table.from_batches(pieces, schema=rows.schema)
    # The pieces are in file order (ascending ids); put them in ``wanted``'s order.
    return table.take(pa.array(np.searchsorted(np.concatenate(ids), wanted)))


def split_into_chunks(
    source: StoragePath,
    workdir: StoragePath,
    chunk_rows: int = DEFAULT_MAX_ROWS,
    *,
    email_column: str | None = None,
) -> list[str]:
    """Split a contacts file into Parquet chunk files of at most ``chunk_rows`` rows; their paths, in order.

    What makes a chunked verification cheap and resumable:

    * **Duplicates stay together.** Every row of an address (as :func:`prepare_contacts` normalises it)
      lands in the chunk of its first row, so each chunk's own dedupe catches it and Clearout is paid
      once per address, never once per chunk it appears in.
    * **Deterministic.** The same input gives byte-identical chunk files with the same names
      (``chunk-<index>-<hash of the bytes>.parquet``): a re-run stages the same uploads, so the bulk
      operator's state file and Clearout's duplicate-file answer (2043) resume instead of paying again.

    Columns and their types are kept; rows of one address keep their relative order. An input without
    rows gives no chunks. Raises :class:`ContactsError` subclasses as :func:`prepare_contacts` does
    (unreadable file, duplicate or reserved column names, no email column or one that is not text).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    rows = _Rows(source)
    try:
        _check_column_names(rows.schema.names, str(source))
        column = find_email_column(rows.schema.names, email_column)
        emails = (email_text(part, column, str(source)) for part in rows.column(column, _GROUPING_ROWS))
        order, starts = _grouped_order(_group_keys(emails))
        bounds = _chunk_bounds(starts, chunk_rows)
        chunk_of_row = np.empty(rows.num_rows, dtype=np.int32)
        for index, (start, end) in enumerate(bounds):
            chunk_of_row[order[start:end]] = index
        folder = resolve_path(workdir)
        if isinstance(folder, Path):
            folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, (start, end) in enumerate(bounds):
            buffer = io.BytesIO()
            chunk = _chunk_table(rows, chunk_of_row, index, order[start:end])
            pq.write_table(chunk, buffer, row_group_size=_ROW_GROUP_ROWS)
            del chunk
            digest = hashlib.sha256(buffer.getbuffer()).hexdigest()[:16]
            path = folder / CHUNK_FILE.format(index=index, digest=digest)
            with path.open("wb") as stream:
                stream.write(buffer.getbuffer())
            paths.append(str(path))
    finally:
        rows.close()
    log.info(
        "Split %d rows of %s into %d chunks of at most %d rows", rows.num_rows, source, len(paths), chunk_rows
    )
    return paths
