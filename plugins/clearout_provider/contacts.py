"""Contact preparation: read a contacts file, normalise and syntax-check its addresses, drop duplicates.

Everything here happens BEFORE a credit is spent, so it is strict about two things: every input row
stays accounted for (the ROWS file keeps a ``row_key`` per input row so verdicts can be joined back onto
duplicates and locally rejected rows too), and nothing that Clearout would charge for twice, or reject
as a syntax error anyway, is uploaded.

Decisions, and why:

* **Whole address lower-cased.** RFC 5321 lets a local part be case-sensitive, but no mailbox provider
  acts on it and Clearout treats addresses case-insensitively, so ``John@x.com`` and ``john@x.com`` are
  one address: sending both would spend two credits for one answer. The input column itself is never
  touched; only ``normalised_email`` is lower-cased.
* **IDN domains to punycode** (IDNA 2008 / UTS 46, as email-validator's ``ascii_domain``): what an SMTP
  server and Clearout's upload parser both accept, and one spelling per domain for the dedupe.
* **email-validator is the syntax authority** (defaults, ``check_deliverability=False``: no DNS). A
  vectorised fast path only *accelerates* it (each distinct domain is validated once; see the comment
  above ``_DOT_ATOM_AT_REST`` for why its answers equal email-validator's). A sample of fast-path
  answers is re-checked with email-validator on every run; on any disagreement the fast path is dropped
  for that slice of rows. Unicode local parts are accepted as email-validator accepts them (SMTPUTF8).
* **All CSV columns are read as strings**: phone numbers and ids with leading zeros must survive the
  round trip into the result file unchanged. Parquet columns keep their declared types.
* **A header-only file is an empty list, not an error**: a nightly delta with no new contacts is normal
  and must finish without calling Clearout. A zero-byte file has no header and is refused.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath
from email_validator import EmailNotValidError, validate_email

from clearout_provider.exceptions import ContactsError
from clearout_provider.verdicts import EMAIL_COLUMN_NAMES, RESULT_COLUMNS

log = logging.getLogger(__name__)

#: Where a file can live: a local path, or any fsspec URL (``s3://``, ``gs://``, ``file://``...).
StoragePath = str | os.PathLike[str] | ObjectStoragePath

#: Clearout's recommended maximum list size; bigger inputs must be chunked (the backfill DAG does).
DEFAULT_MAX_ROWS = 500_000

# Columns of the ROWS file besides the input's own.
ROW_KEY = "row_key"
NORMALISED_EMAIL = "normalised_email"
LOCAL_DECISION = "local_decision"
#: Header of the upload file: one of the names Clearout's bulk upload recognises (error 1004 otherwise).
UPLOAD_EMAIL_HEADER = "Email"
# The ROWS file's schema metadata remembers the input's column names and order for the result file.
_META_INPUT_COLUMNS = b"clearout_provider.input_columns"

#: Row groups of the ROWS file: the join streams it a row group at a time, so this bounds its memory.
_ROW_GROUP_ROWS = 1 << 16

_RESERVED_COLUMNS = frozenset((ROW_KEY, NORMALISED_EMAIL, LOCAL_DECISION, *RESULT_COLUMNS))


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


class ContactsAccountingError(ContactsError):
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
    ``local_decision``; :func:`clearout_provider.results.join_results` reads it.
    """

    upload_path: Path | ObjectStoragePath
    rows_path: Path | ObjectStoragePath
    email_column: str
    counts: ContactCounts

    def emails_to_verify(self) -> Iterator[str]:
        """The addresses of the upload file, in file order (for the instant path on small deltas)."""
        with self.upload_path.open("rb") as stream:
            table = pacsv.read_csv(
                stream, convert_options=pacsv.ConvertOptions(column_types={UPLOAD_EMAIL_HEADER: pa.string()})
            )
        yield from table.column(UPLOAD_EMAIL_HEADER).to_pylist()


@dataclass(frozen=True)
class NormalisedEmails:
    """Output of :func:`normalise_emails`, aligned with its input.

    ``normalised``: the address to verify when ``valid``; for invalid input the trimmed, lower-cased
    text (so a report can show what was rejected); null for empty input. ``valid``: passed the syntax
    check. ``empty``: nothing but whitespace (or null).
    """

    normalised: pa.StringArray
    valid: pa.BooleanArray
    empty: pa.BooleanArray


# ----------------------------------------------------------------------------------- normalisation

# The fast path. email-validator (defaults, no DNS) checks an address in independent parts: the local
# part (an ASCII one is valid exactly when it is an RFC 5322 dot-atom: its DOT_ATOM_TEXT over ATEXT,
# mirrored below), the domain (on its own), and the total length, 254 UTF-8 bytes, of three spellings:
# as given, with the domain normalised to Unicode, and with the domain in IDNA ASCII. A dot-atom holds
# no "@", "<" or quote, so such an address splits at its first "@" exactly as email-validator splits it.
# Hence for "<dot-atom>@<domain>":
#     valid  <=>  "a@<domain>" is valid  and  len(local) + 1 + longest spelling of domain <= 254,
# and its normalised form is "<local>@<ascii domain>". So each DISTINCT domain goes through email-validator
# once, the local parts and lengths are checked vectorised, and only addresses with another shape (no
# "@", quoted or non-ASCII local parts, ...) go through email-validator whole. A deterministic sample of
# fast-path answers is re-checked whole on every run; tests/unit/test_contacts.py checks the equivalence
# on a corpus of tricky addresses.
_ATEXT = r"a-z0-9_!#$%&'*+\-/=?^`{|}~"
_DOT_ATOM_AT_REST = rf"^(?P<local>[{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@(?P<domain>.+)$"
_MAX_EMAIL_BYTES = 254
#: How many fast-path answers are re-checked with email-validator on each run.
FAST_PATH_SAMPLE = 1000


#: Addresses are normalised in slices of this many rows: the intermediates of a million-row column
#: would otherwise cost several hundred MB at once.
_SLICE_ROWS = 1 << 18
_NO_TEXT = pa.scalar(None, pa.string())


def _validate(address: str) -> str | None:
    """email-validator's verdict: the address to send (punycode domain), or None when invalid."""
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return None
    return f"{checked.local_part}@{checked.ascii_domain}"


def _validate_domain(domain: str) -> tuple[str | None, int]:
    """(IDNA ASCII form or None when invalid, UTF-8 length of its longest spelling) of a domain."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None, 0
    spellings = (domain, checked.domain, checked.ascii_domain)
    return checked.ascii_domain, max(len(s.encode()) for s in spellings)


def _validate_whole(values: pa.StringArray) -> tuple[pa.StringArray, pa.BooleanArray]:
    """The slow path: email-validator on each distinct whole address; (normalised or input, valid)."""
    distinct = pc.unique(values)
    answers = [(_validate(v), v) for v in distinct.to_pylist()]
    positions = pc.index_in(values, value_set=distinct)
    normalised = pa.array([a if a is not None else v for a, v in answers], pa.string())
    valid = pa.array([a is not None for a, _ in answers], pa.bool_())
    return normalised.take(positions), valid.take(positions)


def _validate_by_domain(
    trimmed: pa.StringArray, domains: dict[str, tuple[str | None, int]]
) -> tuple[pa.BooleanArray, pa.StringArray, pa.BooleanArray]:
    """The fast path (see above): (dot-atom shaped?, normalised address or null, valid?) per row.

    ``domains`` caches each domain's verdict across slices, so each distinct domain is checked once.
    """
    parts = pc.extract_regex(trimmed, _DOT_ATOM_AT_REST)
    local, domain = pc.struct_field(parts, "local"), pc.struct_field(parts, "domain")
    for name in pc.drop_null(pc.unique(domain)).to_pylist():
        if name not in domains:
            domains[name] = _validate_domain(name)
    known = pa.array(list(domains), pa.string())
    ascii_forms, lengths = zip(*domains.values()) if domains else ((), ())
    positions = pc.index_in(domain, value_set=known)
    ascii_domain = pa.array(ascii_forms, pa.string()).take(positions)
    total = pc.add(pc.binary_length(local), pc.add(pa.array(lengths, pa.int32()).take(positions), 1))
    valid = pc.fill_null(pc.and_(pc.is_valid(ascii_domain), pc.less_equal(total, _MAX_EMAIL_BYTES)), False)
    return pc.is_valid(parts), pc.binary_join_element_wise(local, ascii_domain, "@"), valid


def _fast_path_agrees(
    trimmed: pa.StringArray,
    shaped: pa.BooleanArray,
    normalised: pa.StringArray,
    valid: pa.BooleanArray,
    sample_size: int,
) -> bool:
    """Re-check an evenly spread, deterministic sample of fast-path answers with email-validator whole."""
    rows = pc.indices_nonzero(shaped)
    if len(rows) == 0 or sample_size == 0:
        return True
    sample = rows.take(pa.array(np.linspace(0, len(rows) - 1, min(sample_size, len(rows)), dtype=np.int64)))
    expected = [
        n if v else None for n, v in zip(normalised.take(sample).to_pylist(), valid.take(sample).to_pylist())
    ]
    disagreements = sum(_validate(a) != e for a, e in zip(trimmed.take(sample).to_pylist(), expected))
    if disagreements:
        log.warning(
            "Syntax fast path disagreed with email-validator on %d of %d sampled addresses; "
            "validating these addresses with email-validator alone",
            disagreements,
            len(sample),
        )
    return disagreements == 0


def _normalise_slice(
    array: pa.StringArray, domains: dict[str, tuple[str | None, int]], sample_size: int
) -> NormalisedEmails:
    trimmed = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(array, "")))
    empty = pc.equal(pc.binary_length(trimmed), 0)
    shaped, fast_normalised, valid = _validate_by_domain(trimmed, domains)
    if not _fast_path_agrees(trimmed, shaped, fast_normalised, valid, sample_size):
        shaped = valid = pa.array(np.zeros(len(trimmed), dtype=bool))
    # Invalid input keeps its trimmed text; the slow path overwrites the rows the fast path could not judge.
    normalised = pc.if_else(valid, fast_normalised, trimmed)
    del fast_normalised
    slow = pc.and_(pc.invert(shaped), pc.invert(empty))
    if pc.any(slow).as_py():
        slow_normalised, slow_valid = _validate_whole(trimmed.filter(slow))
        normalised = pc.replace_with_mask(normalised, slow, slow_normalised)
        valid = pc.replace_with_mask(valid, slow, slow_valid)
    return NormalisedEmails(normalised=pc.if_else(empty, _NO_TEXT, normalised), valid=valid, empty=empty)


def normalise_emails(values: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> NormalisedEmails:
    """Trim, lower-case, IDN-to-punycode and syntax-check addresses, vectorised.

    The one normalisation of this provider: preparation keys the upload on it, and the result readers
    key Clearout's answers on it, so a verdict always finds its rows.
    """
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_string(array.type):
        array = array.cast(pa.string())
    domains: dict[str, tuple[str | None, int]] = {}
    slices = [
        _normalise_slice(
            array.slice(start, _SLICE_ROWS),
            domains,
            min(FAST_PATH_SAMPLE, -(-FAST_PATH_SAMPLE * _SLICE_ROWS // len(array))),
        )
        for start in range(0, len(array), _SLICE_ROWS)
    ] or [_normalise_slice(array, domains, 0)]
    return NormalisedEmails(
        normalised=pa.concat_arrays([s.normalised for s in slices]),
        valid=pa.concat_arrays([s.valid for s in slices]),
        empty=pa.concat_arrays([s.empty for s in slices]),
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

    Raises :class:`EmptyContactsFile` for a file of only whitespace, UnicodeDecodeError for non-UTF-8.
    """
    head = stream.read(1 << 20)
    if not head.strip():
        raise EmptyContactsFile(f"{source} is empty: expected a CSV header line with an email column")
    text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    return next(row for row in csv.reader(io.StringIO(text)) if row)


def _read_csv(path: Path | ObjectStoragePath, source: str) -> pa.Table:
    invalid_rows: list[tuple[int | None, int, int]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        invalid_rows.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    with path.open("rb") as stream:
        try:
            names = read_csv_header(stream, source)
        except UnicodeDecodeError:
            names = []  # reported below with the offending byte's position
        if names:
            stream.seek(0)
            try:
                return pacsv.read_csv(
                    stream if isinstance(path, ObjectStoragePath) else str(path),
                    parse_options=pacsv.ParseOptions(
                        newlines_in_values=True, invalid_row_handler=on_invalid_row
                    ),
                    convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
                )
            except pa.ArrowInvalid as error:
                if "UTF8" not in str(error):
                    raise _malformed(source, error, invalid_rows) from None
        stream.seek(0)
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
    return MalformedContactsFile(f"{source} is not a well-formed CSV: {str(error).split(':')[0]}")


def _read_parquet(path: Path | ObjectStoragePath, source: str, max_rows: int) -> pa.Table:
    with path.open("rb") as stream:
        try:
            parquet = pq.ParquetFile(stream)
            if parquet.metadata.num_rows > max_rows:  # fail before reading the data
                raise TooManyContacts(source, parquet.metadata.num_rows, max_rows)
            return parquet.read()
        except pa.ArrowException as error:
            raise MalformedContactsFile(f"{source} is not a readable Parquet file: {error}") from None


def read_contacts(source: StoragePath, *, max_rows: int = DEFAULT_MAX_ROWS) -> pa.Table:
    """Read a CSV (every column as text) or Parquet file; the format is told by its first bytes."""
    path = resolve_path(source)
    name = str(source)
    with path.open("rb") as stream:
        magic = stream.read(4)
    if magic.startswith((b"\x1f\x8b", b"PK\x03\x04")):
        raise MalformedContactsFile(
            f"{name} is compressed (gzip or zip/xlsx): give a plain CSV or Parquet file"
        )
    table = _read_parquet(path, name, max_rows) if magic == b"PAR1" else _read_csv(path, name)
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
            f"{source} has columns {clashing} that this provider adds to every result (is it an earlier result "
            "file?); drop or rename them"
        )


# -------------------------------------------------------------------------------------- preparation


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

    emails = normalise_emails(table.column(column))
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

    # Unquoted, like a hand-made list: a valid address cannot hold a comma, quote or line break (pyarrow
    # would raise rather than write one), and "needed" quoting would quote every string anyway.
    upload = io.BytesIO()
    pacsv.write_csv(
        pa.table({UPLOAD_EMAIL_HEADER: encoded.dictionary}),
        upload,
        pacsv.WriteOptions(quoting_style="none", quoting_header="none"),
    )
    workdir_path = resolve_path(workdir)
    if isinstance(workdir_path, Path):
        workdir_path.mkdir(parents=True, exist_ok=True)
    upload_path = workdir_path / f"clearout-upload-{hashlib.sha256(upload.getvalue()).hexdigest()[:16]}.csv"
    with upload_path.open("wb") as stream:
        stream.write(upload.getvalue())

    rows = (
        table.add_column(0, ROW_KEY, pa.array(np.arange(table.num_rows, dtype=np.int64)))
        .append_column(NORMALISED_EMAIL, emails.normalised)
        .append_column(LOCAL_DECISION, decision)
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

#: Export columns the freshness filter reads (the last three are what an earlier Append wrote).
FRESHNESS_COLUMNS = (
    "email",
    "Clearout Verified Email",
    "Clearout Verified At",
    "Clearout Verification Status",
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
    uncertain = pc.is_in(status, value_set=pa.array(["catch_all", "catchall", "unknown"]))

    def older_than(days: float) -> pa.Array:
        return pc.less(at, pa.scalar(now - timedelta(days=days), _UTC))

    stale = pc.if_else(
        pc.fill_null(uncertain, False),
        older_than(freshness.uncertain_ttl_days),
        older_than(freshness.ttl_days),
    )
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


def _grouped_order(emails: NormalisedEmails) -> tuple[np.ndarray, np.ndarray]:
    """(row order with each address's rows together, True where a group starts in that order).

    Groups are keyed exactly as :func:`prepare_contacts` dedupes (the normalised address of a valid
    row), ordered by their first row; a row without a valid address is a group of its own and keeps
    its place. The sort is stable, so the order is a pure function of the input.
    """
    n = len(emails.valid)
    rows = np.arange(n, dtype=np.int64)
    encoded = pc.dictionary_encode(pc.if_else(emails.valid, emails.normalised, _NO_TEXT))
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    grouped = codes >= 0
    first_row = np.full(len(encoded.dictionary), n, dtype=np.int64)
    np.minimum.at(first_row, codes[grouped], rows[grouped])
    key = np.where(grouped, first_row[np.where(grouped, codes, 0)], rows)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.ones(n, dtype=bool)
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
    rows gives no chunks. Raises :class:`ContactsError` subclasses as :func:`read_contacts` does.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    table = read_contacts(source, max_rows=np.iinfo(np.int64).max)
    column = find_email_column(table.column_names, email_column)
    order, starts = _grouped_order(normalise_emails(table.column(column)))
    folder = resolve_path(workdir)
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (start, end) in enumerate(_chunk_bounds(starts, chunk_rows)):
        buffer = io.BytesIO()
        pq.write_table(table.take(pa.array(order[start:end])), buffer, row_group_size=_ROW_GROUP_ROWS)
        digest = hashlib.sha256(buffer.getbuffer()).hexdigest()[:16]
        path = folder / CHUNK_FILE.format(index=index, digest=digest)
        with path.open("wb") as stream:
            stream.write(buffer.getbuffer())
        paths.append(str(path))
    rows = table.num_rows
    log.info("Split %d rows of %s into %d chunks of at most %d rows", rows, source, len(paths), chunk_rows)
    return paths
