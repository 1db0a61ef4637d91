"""Email Finder files: name + domain rows in, found addresses out, every input row accounted for.

The instant and the bulk finder operators share this module, so their result files are identical in
shape whichever path answered:

* :func:`prepare_finder_queries` reads a CSV or Parquet file (with :func:`contacts.read_contacts`: the
  same encoding, emptiness and size checks as a contacts file), finds the name column (or first + last
  name) and the domain and/or company column, and writes two files: a ROWS file (every input row, a
  ``row_key``, its query key, and why it is not sent, if it is not) and an upload CSV with one row per
  distinct query (``Name``, ``Domain`` and/or ``Company``: the headers Clearout's bulk finder reads).
  Rows without a name, or without both domain and company, are decided locally and never sent; repeated
  queries (case-insensitively) are sent once, because each found address costs up to 4 credits.
* Answers — an instant :class:`~clearout_provider.clearout.models.FinderResult`, a per-query
  failure, or a bulk result file — become rows of :data:`ANSWER_SCHEMA`, keyed by the query key.
* :func:`write_finder_result` joins the answers onto every ROWS row and writes ONE result file (CSV or
  Parquet by suffix, :mod:`clearout_provider.tables`): the input columns, in input order, then
  :data:`FINDER_COLUMNS`.

Everything here is vectorised with pyarrow; nothing calls Clearout.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath

from clearout_provider.clearout.models import FinderResult
from clearout_provider.clearout.statuses import FINDER_RESULT_COLUMNS
from clearout_provider.contacts import (
    DEFAULT_MAX_ROWS,
    ROW_KEY,
    ContactsError,
    EmptyContactsFile,
    StoragePath,
    read_contacts,
    resolve_path,
)
from clearout_provider.tables import table_format, write_table

log = logging.getLogger(__name__)


class FinderStatus(StrEnum):
    """``finder_status`` of a result row."""

    FOUND = "found"
    NOT_FOUND = "not_found"


class FinderDecidedBy(StrEnum):
    """Who decided a result row (``decided_by``)."""

    CLEAROUT_INSTANT = "clearout_instant_finder"
    CLEAROUT_BULK = "clearout_bulk_finder"
    #: Clearout was asked but gave no answer for this query (timed out, refused the input).
    CLEAROUT_FAILED = "clearout_failed"
    LOCAL_MISSING_INPUT = "local_missing_input"
    LOCAL_DUPLICATE = "local_duplicate"
    MISSING_FROM_RESULT = "missing_from_result"


#: Deciders of rows that are not answers: a lead left as it was, to be looked up again next run.
NO_ANSWER: frozenset[str] = frozenset({FinderDecidedBy.CLEAROUT_FAILED, FinderDecidedBy.MISSING_FROM_RESULT})


class LocalFinderDecision(StrEnum):
    """Why a row is not sent to Clearout (null in the ROWS file: it is sent)."""

    MISSING_NAME = "missing_name"
    MISSING_DOMAIN = "missing_domain"
    DUPLICATE = "duplicate"


#: Columns every finder result file carries after the input columns, with their types.
FINDER_SCHEMA = pa.schema(
    [
        ("finder_email", pa.string()),
        ("finder_status", pa.string()),
        ("finder_reason", pa.string()),
        ("finder_confidence_score", pa.int32()),
        ("finder_role", pa.bool_()),
        ("finder_business", pa.bool_()),
        ("finder_full_name", pa.string()),
        ("finder_domain", pa.string()),
        ("finder_company", pa.string()),
        ("finder_found_at", pa.timestamp("ms", tz="UTC")),
        ("decided_by", pa.string()),
    ]
)
FINDER_COLUMNS: tuple[str, ...] = tuple(FINDER_SCHEMA.names)

QUERY_KEY = "finder_query_key"
LOCAL_DECISION = "finder_local_decision"
#: Answers keyed by query: what the operators collect and :func:`write_finder_result` joins.
ANSWER_SCHEMA = pa.schema([pa.field(QUERY_KEY, pa.string()), *FINDER_SCHEMA])

#: Headers of the upload file (names Clearout's bulk finder recognises).
UPLOAD_NAME, UPLOAD_DOMAIN, UPLOAD_COMPANY = "Name", "Domain", "Company"

# Header names recognised for each role, compared without case, spaces or punctuation.
_NAME_NAMES = ("name", "full name", "person name", "contact name")
_FIRST_NAMES = ("first name", "given name", "first")
_LAST_NAMES = ("last name", "surname", "family name", "last")
_DOMAIN_NAMES = ("domain", "domain name", "website", "company domain", "url")
_COMPANY_NAMES = ("company", "company name", "organization", "organisation", "account name")

_META_INPUT_COLUMNS = b"clearout_provider.finder_input_columns"
_RESERVED = frozenset((ROW_KEY, QUERY_KEY, LOCAL_DECISION, *FINDER_COLUMNS))
_KEY_SEPARATOR = "\x1f"  # cannot occur in a cleaned cell (control characters count as whitespace)


class FinderInputError(ContactsError):
    """A finder input file this module cannot prepare; the message says what to fix."""


class FinderColumnsNotFound(FinderInputError):
    """No name column (nor first name), no domain/company column, or an ambiguous or absent named one."""

    def __init__(self, message: str, columns: Sequence[str]) -> None:
        super().__init__(f"{message}; columns present: {list(columns)}")
        self.columns = list(columns)


class FinderResultError(FinderInputError):
    """A bulk finder result file without the columns this module reads."""


# ------------------------------------------------------------------------------------------ columns


@dataclass(frozen=True)
class FinderColumns:
    """Which input columns hold the query. ``name`` or ``first`` is set; ``domain`` or ``company`` is."""

    name: str | None
    first: str | None
    last: str | None
    domain: str | None
    company: str | None


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def _named(columns: Sequence[str], wanted: str, role: str) -> str:
    if wanted in columns:
        return wanted
    folded = [c for c in columns if c.strip().casefold() == wanted.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise FinderColumnsNotFound(f"the {role} column {wanted!r} is not in the file", columns)


def _detect(columns: Sequence[str], names: tuple[str, ...], role: str, argument: str) -> str | None:
    wanted = {_key(n) for n in names}
    matches = [c for c in columns if _key(c) in wanted]
    if len(matches) > 1:
        raise FinderColumnsNotFound(
            f"several columns look like the {role} column {matches}; name one with {argument}=", columns
        )
    return matches[0] if matches else None


def find_finder_columns(
    columns: Sequence[str],
    *,
    name_column: str | Sequence[str] | None = None,
    domain_column: str | None = None,
    company_column: str | None = None,
) -> FinderColumns:
    """The query columns: the ones named, else detected by header (any case, spacing or punctuation).

    ``name_column`` is one column with the full name, or a (first name, last name) pair. Detection looks
    for a full-name column first, then first name (+ last name). When neither ``domain_column`` nor
    ``company_column`` is named both are detected; at least one must exist. When a row has both, the
    domain is what the instant finder searches (Clearout takes a domain or a company name there).
    """
    first = last = name = None
    if isinstance(name_column, str):
        name = _named(columns, name_column, "name")
    elif name_column is not None:
        pair = list(name_column)
        if len(pair) != 2:
            raise FinderInputError(
                f"name_column must be one column or a (first, last) pair, not {name_column!r}"
            )
        first, last = _named(columns, pair[0], "first name"), _named(columns, pair[1], "last name")
    else:
        name = _detect(columns, _NAME_NAMES, "name", "name_column")
        if name is None:
            first = _detect(columns, _FIRST_NAMES, "first name", "name_column")
            last = _detect(columns, _LAST_NAMES, "last name", "name_column") if first else None
    if name is None and first is None:
        raise FinderColumnsNotFound(
            f"no name column found (looked for {list(_NAME_NAMES)} or {list(_FIRST_NAMES)}, any case); "
            "name it with name_column= (one column, or a (first, last) pair)",
            columns,
        )
    if domain_column is None and company_column is None:
        domain = _detect(columns, _DOMAIN_NAMES, "domain", "domain_column")
        company = _detect(columns, _COMPANY_NAMES, "company", "company_column")
    else:
        domain = _named(columns, domain_column, "domain") if domain_column else None
        company = _named(columns, company_column, "company") if company_column else None
    if domain is None and company is None:
        raise FinderColumnsNotFound(
            "no domain or company column found "
            f"(looked for {list(_DOMAIN_NAMES)} and {list(_COMPANY_NAMES)}, any case); "
            "name it with domain_column= or company_column=",
            columns,
        )
    return FinderColumns(name=name, first=first, last=last, domain=domain, company=company)


# ------------------------------------------------------------------------------------- preparation


def _clean(values: pa.Array | pa.ChunkedArray | None, rows: int) -> pa.Array:
    """Text cells trimmed, inner whitespace collapsed to one space, nulls as ""."""
    if values is None:
        return pa.array([""] * rows, pa.string())
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_string(array.type):
        array = array.cast(pa.string())
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.fill_null(array, ""), r"\s+", " "))


def _query_text(table: pa.Table, column: str | None, label: str) -> pa.Array | None:
    """A query column as text (numbers are spelled out), or a named error for lists, structs or bytes
    that are not UTF-8: refused before anything is sent, never a raw pyarrow error."""
    if column is None:
        return None
    values = table.column(column).combine_chunks()
    if not pa.types.is_nested(values.type):
        try:
            return values.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raise FinderInputError(
        f"the column {column!r} of {label} holds {values.type} values, not text: name a text column"
    )


def query_keys(name: pa.Array, domain: pa.Array, company: pa.Array) -> pa.Array:
    """One key per query: cleaned, case-folded name, domain and company (the dedupe and join key)."""
    return pc.binary_join_element_wise(
        pc.utf8_lower(name), pc.utf8_lower(domain), pc.utf8_lower(company), _KEY_SEPARATOR
    )


@dataclass(frozen=True)
class FinderCounts:
    """Where every input row went: ``total_rows == missing_input + duplicates + to_find``."""

    total_rows: int
    missing_input: int
    duplicates: int
    to_find: int

    def check(self) -> None:
        if self.missing_input + self.duplicates + self.to_find != self.total_rows:
            raise FinderInputError(f"finder counts do not add up (a bug): {self}")


@dataclass(frozen=True)
class FinderQuery:
    """One distinct query: what the instant finder is asked (``target`` = domain, else company)."""

    key: str
    name: str
    domain: str
    company: str

    @property
    def target(self) -> str:
        return self.domain or self.company


@dataclass(frozen=True)
class PreparedQueries:
    """What :func:`prepare_finder_queries` wrote (see the module docstring)."""

    upload_path: Path | ObjectStoragePath
    rows_path: Path | ObjectStoragePath
    columns: FinderColumns
    counts: FinderCounts

    def queries(self) -> Iterator[FinderQuery]:
        """The distinct queries of the upload file, in file order."""
        with self.upload_path.open("rb") as stream:
            table = pacsv.read_csv(stream, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
        table = table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names]))
        rows = table.num_rows
        name = _clean(table.column(UPLOAD_NAME), rows)
        domain = _clean(table.column(UPLOAD_DOMAIN) if UPLOAD_DOMAIN in table.column_names else None, rows)
        company = _clean(table.column(UPLOAD_COMPANY) if UPLOAD_COMPANY in table.column_names else None, rows)
        keys = query_keys(name, domain, company)
        for k, n, d, c in zip(
            keys.to_pylist(), name.to_pylist(), domain.to_pylist(), company.to_pylist(), strict=True
        ):
            yield FinderQuery(key=k, name=n, domain=d, company=c)


def prepare_finder_queries(
    source: StoragePath,
    *,
    workdir: StoragePath,
    name_column: str | Sequence[str] | None = None,
    domain_column: str | None = None,
    company_column: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> PreparedQueries:
    """Read a name + domain/company file and write the ROWS and upload files (module docstring).

    Raises a :class:`~clearout_provider.contacts.ContactsError` subclass for any input it cannot use
    (missing or ambiguous columns, empty file, non-UTF-8 bytes, ragged CSV, reserved column names, more
    than ``max_rows`` rows). A header-only file is an empty list, not an error.
    """
    label = str(source)
    try:
        table = read_contacts(source, max_rows=max_rows)
    except EmptyContactsFile:
        raise EmptyContactsFile(
            f"{label} is empty: expected a CSV header with name and domain columns"
        ) from None
    names = table.column_names
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise FinderInputError(f"{label} has several columns named {duplicated}; column names must be unique")
    clashing = sorted(set(names) & _RESERVED)
    if clashing:
        raise FinderInputError(
            f"{label} has columns {clashing} that finder results add (an earlier result file?)"
        )
    cols = find_finder_columns(
        names, name_column=name_column, domain_column=domain_column, company_column=company_column
    )

    rows = table.num_rows
    name = _clean(_query_text(table, cols.name, label), rows)
    if cols.first:
        first = _clean(_query_text(table, cols.first, label), rows)
        last = _clean(_query_text(table, cols.last, label), rows)
        full = _clean(pc.binary_join_element_wise(first, last, " "), rows)
        name = pc.if_else(pc.equal(name, ""), full, name)
    domain = _clean(_query_text(table, cols.domain, label), rows)
    company = _clean(_query_text(table, cols.company, label), rows)

    missing_name = pc.equal(name, "").to_numpy(zero_copy_only=False)
    missing_target = pc.and_(pc.equal(domain, ""), pc.equal(company, "")).to_numpy(zero_copy_only=False)
    sendable = ~missing_name & ~missing_target
    keys = query_keys(name, domain, company)
    codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    codes = np.where(sendable, codes, -1)
    distinct, first_rows = np.unique(codes[sendable], return_index=True)
    first_rows = np.sort(np.flatnonzero(sendable)[first_rows])  # row numbers of first occurrences, in order
    is_first = np.zeros(rows, dtype=bool)
    is_first[first_rows] = True
    duplicate = sendable & ~is_first

    decision = np.full(rows, None, dtype=object)
    decision[duplicate] = LocalFinderDecision.DUPLICATE.value
    decision[missing_target] = LocalFinderDecision.MISSING_DOMAIN.value
    decision[missing_name] = LocalFinderDecision.MISSING_NAME.value
    counts = FinderCounts(
        total_rows=rows,
        missing_input=int((~sendable).sum()),
        duplicates=int(duplicate.sum()),
        to_find=len(distinct),
    )
    counts.check()

    picks = pa.array(first_rows, pa.int64())
    upload_columns = {UPLOAD_NAME: name.take(picks)}
    if cols.domain:
        upload_columns[UPLOAD_DOMAIN] = domain.take(picks)
    if cols.company:
        upload_columns[UPLOAD_COMPANY] = company.take(picks)
    buffer = io.BytesIO()
    pacsv.write_csv(pa.table(upload_columns), buffer)
    folder = resolve_path(workdir)
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)
    # The name carries a hash of the content: Clearout's duplicate-file answer (2043, keyed on name and
    # size) then only ever points at a list of the very same queries.
    upload_path = folder / f"clearout-finder-upload-{hashlib.sha256(buffer.getvalue()).hexdigest()[:16]}.csv"
    with upload_path.open("wb") as stream:
        stream.write(buffer.getvalue())

    sent_key = pc.if_else(pa.array(sendable), keys, pa.scalar(None, pa.string()))
    rows_table = (
        table.add_column(0, ROW_KEY, pa.array(np.arange(rows, dtype=np.int64)))
        .append_column(QUERY_KEY, sent_key)
        .append_column(LOCAL_DECISION, pa.array(decision, pa.string()))
        .replace_schema_metadata({_META_INPUT_COLUMNS: json.dumps(names).encode()})
    )
    rows_path = folder / "clearout-finder-rows.parquet"
    with rows_path.open("wb") as stream:
        pq.write_table(rows_table, stream)
    log.info(
        "Prepared %d finder rows from %s: %d queries to send, %d duplicates, %d without name or domain",
        rows, label, counts.to_find, counts.duplicates, counts.missing_input,
    )  # fmt: skip
    return PreparedQueries(upload_path=upload_path, rows_path=rows_path, columns=cols, counts=counts)


# ------------------------------------------------------------------------------------------ answers


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def instant_answer(result: FinderResult) -> dict[str, Any]:
    """One instant finder answer as a JSON-safe :data:`ANSWER_SCHEMA` row (without the key)."""
    best = result.emails[0] if result.emails else None
    return {
        "finder_email": best.email_address if best else None,
        "finder_status": (FinderStatus.FOUND if best else FinderStatus.NOT_FOUND).value,
        "finder_reason": None if best else "Email Not Found",
        "finder_confidence_score": result.confidence_score if best else None,
        "finder_role": best.role if best else None,
        "finder_business": best.business if best else None,
        "finder_full_name": result.full_name,
        "finder_domain": result.domain,
        "finder_company": result.company,
        "finder_found_at": _iso(result.found_on),
        "decided_by": FinderDecidedBy.CLEAROUT_INSTANT.value,
    }


def failed_answer(reason: str) -> dict[str, Any]:
    """The row of a query Clearout gave no answer for (timed out, refused the input)."""
    return {
        "finder_status": FinderStatus.NOT_FOUND.value,
        "finder_reason": reason,
        "decided_by": FinderDecidedBy.CLEAROUT_FAILED.value,
    }


def answers_table(answers: Mapping[str, Mapping[str, Any]]) -> pa.Table:
    """JSON-safe answer rows (from :func:`instant_answer`, :func:`failed_answer`, a checkpoint) by key."""
    records = [{**{c: row.get(c) for c in FINDER_COLUMNS}, QUERY_KEY: key} for key, row in answers.items()]
    for record in records:
        record["finder_found_at"] = (
            pd.Timestamp(record["finder_found_at"]) if record["finder_found_at"] else None
        )
    return pa.Table.from_pylist(records, schema=ANSWER_SCHEMA)


def _yes_no(values: pa.Array) -> pa.Array:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    return pc.if_else(
        pc.equal(lowered, "yes"),
        True,
        pc.if_else(pc.equal(lowered, "no"), False, pa.scalar(None, pa.bool_())),
    )


def _blank_to_null(values: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def read_bulk_finder_result(result_csv: StoragePath) -> pa.Table:
    """A Clearout bulk finder result CSV as an :data:`ANSWER_SCHEMA` table (decided_by clearout_bulk_finder).

    The query key is computed from the uploaded ``Name``/``Domain``/``Company`` cells, which Clearout keeps
    in the result, exactly as :func:`prepare_finder_queries` computed it. The bulk file has no role flag:
    ``finder_role`` stays empty.
    """
    path = resolve_path(result_csv)
    with path.open("rb") as stream:
        table = pacsv.read_csv(stream, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    names = table.column_names
    missing = [
        c for c in (UPLOAD_NAME, *FINDER_RESULT_COLUMNS) if c not in names and c != "Clearout Finder Company"
    ]
    if missing or not ({UPLOAD_DOMAIN, UPLOAD_COMPANY} & set(names)):
        raise FinderResultError(
            f"{result_csv} is not a Clearout finder result of an upload from prepare_finder_queries: columns "
            f"{missing or [UPLOAD_DOMAIN + ' or ' + UPLOAD_COMPANY]} are missing"
        )
    table = table.cast(pa.schema([pa.field(n, pa.string()) for n in names]))
    rows = table.num_rows

    def col(name: str) -> pa.Array:
        return _clean(table.column(name) if name in names else None, rows)

    status = pc.utf8_lower(col("Clearout Finder Status"))
    found = pc.and_(pc.equal(status, "found"), pc.not_equal(col("Clearout Finder Email Address"), ""))
    confidence = pd.to_numeric(col("Clearout Finder Confidence Score").to_pandas(), errors="coerce")
    processed = pd.to_datetime(
        col("Clearout Finder Processed At (UTC)").to_pandas(), utc=True, format="ISO8601", errors="coerce"
    )
    columns = {
        QUERY_KEY: query_keys(col(UPLOAD_NAME), col(UPLOAD_DOMAIN), col(UPLOAD_COMPANY)),
        "finder_email": pc.if_else(found, col("Clearout Finder Email Address"), pa.scalar(None, pa.string())),
        "finder_status": pc.if_else(found, FinderStatus.FOUND.value, FinderStatus.NOT_FOUND.value),
        "finder_reason": _blank_to_null(col("Clearout Finder Reason")),
        "finder_confidence_score": pa.array(confidence, pa.float64()).cast(pa.int32(), safe=False),
        "finder_role": pa.nulls(rows, pa.bool_()),
        "finder_business": _yes_no(col("Clearout Finder Business Account")),
        "finder_full_name": _blank_to_null(col("Clearout Finder Full Name")),
        "finder_domain": _blank_to_null(col("Clearout Finder Domain")),
        "finder_company": _blank_to_null(col("Clearout Finder Company")),
        "finder_found_at": pa.array(processed, ANSWER_SCHEMA.field("finder_found_at").type),
        "decided_by": pa.array([FinderDecidedBy.CLEAROUT_BULK.value] * rows, pa.string()),
    }
    return pa.table(columns, schema=ANSWER_SCHEMA)


# --------------------------------------------------------------------------------------------- join


@dataclass(frozen=True)
class FinderSummary:
    """What :func:`write_finder_result` wrote; each breakdown sums to ``rows`` (JSON-safe for XCom)."""

    out_path: str
    rows: int
    by_status: dict[str, int]
    by_decided_by: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"out_path": self.out_path, "rows": self.rows, "by_status": self.by_status,
                "by_decided_by": self.by_decided_by}  # fmt: skip


def _local_answers() -> pa.Table:
    """The rows no Clearout answer carries: missing name, missing domain, and not in the answers."""
    missing = {
        "finder_status": FinderStatus.NOT_FOUND.value,
        "decided_by": FinderDecidedBy.LOCAL_MISSING_INPUT.value,
    }
    return pa.Table.from_pylist(
        [
            {**missing, "finder_reason": "Name missing"},
            {**missing, "finder_reason": "Domain and company missing"},
            {
                "finder_status": FinderStatus.NOT_FOUND.value,
                "finder_reason": "No answer from Clearout for this query",
                "decided_by": FinderDecidedBy.MISSING_FROM_RESULT.value,
            },
        ],
        schema=ANSWER_SCHEMA,
    )


def _counts(values: pa.Array) -> dict[str, int]:
    return {item["values"]: item["counts"] for item in pc.value_counts(values).to_pylist()}


def write_finder_result(rows_path: StoragePath, answers: pa.Table, out_path: StoragePath) -> FinderSummary:
    """Write every ROWS row with its answer: input columns (original names and order), then FINDER_COLUMNS.

    Duplicates get their first occurrence's answer (``decided_by`` local_duplicate); rows without name or
    domain/company are not_found with the reason; queries without an answer are not_found,
    missing_from_result. Rows out always equal rows in.

    Parquet is for machines (every value typed, byte for byte); CSV is for people: formula-leading text
    cells get a leading quote, list/struct input columns become JSON (:mod:`clearout_provider.safe_csv`).
    """
    table_format(out_path, "finder result file")  # a wrong suffix fails before anything is read
    with resolve_path(rows_path).open("rb") as stream:
        rows = pq.read_table(stream)
    columns = json.loads((rows.schema.metadata or {})[_META_INPUT_COLUMNS])
    answers = answers.select(ANSWER_SCHEMA.names).cast(ANSWER_SCHEMA)
    n = len(answers)
    table = pa.concat_tables([answers, _local_answers()])

    decision = rows.column(LOCAL_DECISION).combine_chunks()
    found = pc.index_in(rows.column(QUERY_KEY), value_set=answers.column(QUERY_KEY), skip_nulls=True).cast(
        pa.int64()
    )
    take = pc.coalesce(found, pa.scalar(n + 2, pa.int64()))
    take = pc.if_else(
        pc.fill_null(pc.equal(decision, LocalFinderDecision.MISSING_DOMAIN.value), False), n + 1, take
    )
    take = pc.if_else(
        pc.fill_null(pc.equal(decision, LocalFinderDecision.MISSING_NAME.value), False), n, take
    )
    picked = table.take(take)
    duplicate = pc.and_(
        pc.fill_null(pc.equal(decision, LocalFinderDecision.DUPLICATE.value), False), pc.is_valid(found)
    )
    decided = pc.if_else(duplicate, FinderDecidedBy.LOCAL_DUPLICATE.value, picked.column("decided_by"))

    result = rows.select(columns)
    for name in FINDER_COLUMNS:
        result = result.append_column(
            FINDER_SCHEMA.field(name), decided if name == "decided_by" else picked.column(name)
        )
    if result.num_rows != rows.num_rows:
        raise FinderInputError(f"wrote {result.num_rows} result rows for {rows.num_rows} input rows (a bug)")
    write_table(out_path, result, what="finder result file")
    summary = FinderSummary(
        out_path=str(out_path),
        rows=result.num_rows,
        by_status=_counts(result.column("finder_status")),
        by_decided_by=_counts(result.column("decided_by")),
    )
    log.info("Wrote %d finder result rows to %s: %s", summary.rows, out_path, summary.by_status)
    return summary
