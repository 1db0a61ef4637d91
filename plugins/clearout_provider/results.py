"""Verdicts (any verifier's) in this provider's result columns, joined back onto every input row.

Each verifier's answers become one verdict table keyed by ``normalised_email`` with the result columns of
:mod:`clearout_provider.verification.model` (see :data:`VERDICT_SCHEMA`): Clearout's bulk file and
instant answers in :mod:`clearout_provider.clearout.results`, Mail.so's in
:func:`clearout_provider.mailso.statuses.verdict_row`. :func:`join_results` writes that onto every row of
the ROWS file from
:func:`clearout_provider.contacts.prepare_contacts`: duplicates get their first occurrence's verdict,
locally rejected rows the local syntax verdict (in the verifier's words), and rows the verifier did not
answer for keep their no-verdict decider (:data:`NO_VERDICT`), duplicates included. A row whose address
was taken out of a wrapper (``cleaned_email`` in the ROWS file) gets that address as ``suggested_email``
when the verifier suggests none. Rows in always equal rows out, or the join raises.

The result is Parquet (for machines: the default) or CSV (for people), written by
:class:`clearout_provider.tables.TableWriter`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clearout_provider.contacts import (
    CLEANED_EMAIL,
    LOCAL_DECISION,
    NORMALISED_EMAIL,
    LocalDecision,
    StoragePath,
    input_columns,
    resolve_path,
)
from clearout_provider.exceptions import AccountingError, InputError
from clearout_provider.tables import TableWriter, table_format
from clearout_provider.verification.model import (
    LEGACY_COLUMNS,
    NO_VERDICT,
    RESULT_COLUMNS,
    RESULT_KINDS,
    DecidedBy,
    Kind,
    Verdict,
)
from clearout_provider.verification.verifier import local_syntax_verdict, spec

log = logging.getLogger(__name__)


_ARROW: dict[Kind, pa.DataType] = {
    Kind.TEXT: pa.string(),
    Kind.FLAG: pa.bool_(),
    Kind.INT: pa.int32(),
    Kind.TIME: pa.timestamp("ms", tz="UTC"),
}
#: Types of :data:`RESULT_COLUMNS` (in that order) in every result file.
RESULT_SCHEMA = pa.schema([(name, _ARROW[kind]) for name, kind in RESULT_KINDS.items()])

#: A verdict table: one row per verified address, keyed by ``normalised_email``.
VERDICT_SCHEMA = pa.schema([pa.field(NORMALISED_EMAIL, pa.string()), *RESULT_SCHEMA])
_TIMESTAMP = _ARROW[Kind.TIME]

_NO_CODE = "none"  # key of rows without a sub-status code in ResultSummary.by_sub_status_code


class ResultsError(Exception):
    """A Clearout result or a join this module cannot process; the message says why."""


class MalformedResultFile(ResultsError, InputError):
    """The bulk result file lacks the email column or a Clearout column this module reads."""


class ResultAccountingError(ResultsError, AccountingError):
    """Rows out differ from rows in, or the counts do not add up: a bug, never a property of the input."""


@dataclass(frozen=True)
class ResultSummary:
    """What :func:`join_results` wrote: the file and counts per status, sub-status code and decider.

    Every mapping sums to ``rows``. ``by_sub_status_code`` is keyed by the code as text ("none" when there
    is none) so the summary survives JSON (XCom). ``unrecognised_reasons`` counts rows whose Clearout
    reason text is not in the sub-status table (their code is "none", their text is kept).
    """

    out_path: str
    rows: int
    by_status: dict[str, int]
    by_sub_status_code: dict[str, int]
    by_decided_by: dict[str, int]
    by_verdict: dict[str, int] = field(default_factory=dict)
    unrecognised_reasons: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`ResultAccountingError` unless every breakdown adds up to ``rows``."""
        for name in ("by_status", "by_sub_status_code", "by_decided_by", "by_verdict"):
            if name == "by_verdict" and not self.by_verdict:
                continue  # a summary of a file written before the neutral verdict
            if sum(getattr(self, name).values()) != self.rows:
                raise ResultAccountingError(
                    f"{name} does not add up to {self.rows} rows: {getattr(self, name)}"
                )


def verdict_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows from :func:`normalise_instant_result` as a verdict table for :func:`join_results`."""
    return pa.Table.from_pylist(list(rows), schema=VERDICT_SCHEMA)


# ------------------------------------------------------------------------------------------------ join


def _local_rows(verifier: str) -> pa.Table:
    """The two verdicts no verifier's answer carries: local syntax rejection (as ``verifier`` would have
    answered a syntax error), and missing from the result (unknown, no verdict)."""
    return pa.Table.from_pylist(
        [
            {
                **local_syntax_verdict(verifier),
                "verifier": verifier,
                "decided_by": DecidedBy.LOCAL_SYNTAX.value,
            },
            {
                "verdict": Verdict.UNKNOWN.value,
                spec(verifier).headline_column: Verdict.UNKNOWN.value,
                "decided_by": DecidedBy.MISSING_FROM_RESULT.value,
            },
        ],
        schema=VERDICT_SCHEMA,
    )


_LOCALLY_INVALID = pa.array([LocalDecision.EMPTY.value, LocalDecision.SYNTAX.value])


@dataclass(frozen=True)
class _Lookup:
    """Per ROWS row: the row of ``verdicts + _local_rows()`` to take, a decided_by override (duplicates),
    whether the row's own address is the verified_email (no Clearout answer for it), and the address
    taken out of the row's wrapper, the suggestion when Clearout has none (null for local rejections)."""

    take: pa.Int32Array
    decided_by: pa.StringArray
    own_email: pa.BooleanArray
    suggested: pa.StringArray


def upgrade_columns(table: pa.Table) -> pa.Table:
    """A verdict or result table with today's result columns, whatever version wrote it.

    0.1 wrote Clearout's verdicts under ``clearout_*`` names (:data:`LEGACY_COLUMNS`) and had no neutral
    verdict: those tables get today's names, the verdict and flags derived from Clearout's status and
    code (the same table as for a fresh answer), and null for the columns they never had.
    """
    names = [LEGACY_COLUMNS.get(n, n) for n in table.column_names]
    table = table.rename_columns(names)
    n = table.num_rows
    if "verdict" not in names and "clearout_status" in names:
        from clearout_provider.clearout.results import neutral_from_01  # the Clearout table decides

        table = neutral_from_01(table)
    for name in RESULT_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(
                RESULT_SCHEMA.field(name), pa.nulls(n, RESULT_SCHEMA.field(name).type)
            )
    return table


def _read_verdicts(verdicts: pa.Table | StoragePath) -> pa.Table:
    if not isinstance(verdicts, pa.Table):
        with resolve_path(verdicts).open("rb") as stream:
            verdicts = pq.read_table(stream)
    names = set(verdicts.column_names)
    missing = [n for n in (NORMALISED_EMAIL, "decided_by") if n not in names]
    if missing or not names & {"verdict", "clearout_status"}:
        raise ResultsError(f"not a verdict table: columns {missing or ['verdict']} are missing")
    verdicts = upgrade_columns(verdicts)
    return verdicts.select(VERDICT_SCHEMA.names).cast(VERDICT_SCHEMA)


def _lookup(
    emails: pa.StringArray, decision: pa.StringArray, cleaned: pa.StringArray, verdicts: pa.Table
) -> _Lookup:
    """Where each ROWS row finds its verdict: one hash lookup for all rows (the verdict set is built once).

    A duplicate is "local_duplicate" only when its first occurrence got a verdict: the duplicates of an
    address Clearout gave no verdict for keep that no-verdict decider (and no status), so the load
    writes nothing over their earlier, good verdicts either.
    """
    keys = verdicts.column(NORMALISED_EMAIL).combine_chunks()
    found = pc.index_in(emails, value_set=keys, skip_nulls=True)
    local = pc.fill_null(pc.is_in(decision, value_set=_LOCALLY_INVALID), False)
    syntax_row, missing_row = pa.scalar(len(keys), pa.int32()), pa.scalar(len(keys) + 1, pa.int32())
    no_verdict = pa.array(sorted(str(d) for d in NO_VERDICT), pa.string())
    deciders = verdicts.column("decided_by").take(found)
    answered = pc.and_(pc.is_valid(found), pc.invert(pc.is_in(deciders, value_set=no_verdict)))
    duplicate = pc.and_(pc.fill_null(pc.equal(decision, LocalDecision.DUPLICATE.value), False), answered)
    return _Lookup(
        take=pc.if_else(local, syntax_row, pc.coalesce(found.cast(pa.int32()), missing_row)),
        decided_by=pc.if_else(duplicate, DecidedBy.LOCAL_DUPLICATE.value, pa.scalar(None, pa.string())),
        own_email=pc.or_(local, pc.is_null(found)),
        suggested=pc.if_else(local, pa.scalar(None, pa.string()), cleaned),
    )


def _cleaned_emails(parquet: pq.ParquetFile) -> pa.StringArray:
    """The ROWS file's cleaned_email column (all null in ROWS files written before it existed)."""
    if CLEANED_EMAIL not in parquet.schema_arrow.names:
        return pa.nulls(parquet.metadata.num_rows, pa.string())
    return parquet.read(columns=[CLEANED_EMAIL]).column(CLEANED_EMAIL).combine_chunks()


def _value_counts(values: pa.Array) -> Counter[Any]:
    return Counter({item["values"]: item["counts"] for item in pc.value_counts(values).to_pylist()})


def join_results(
    rows_path: StoragePath,
    verdicts: pa.Table | StoragePath,
    out_path: StoragePath,
    *,
    verifier: str = "clearout",
    batch_size: int = 65_536,
) -> ResultSummary:
    """Write ONE result file: every ROWS row, input columns first (original names and order), then
    :data:`verdicts.RESULT_COLUMNS`; Parquet or CSV by ``out_path``'s suffix. ``verdicts`` is a
    :data:`VERDICT_SCHEMA` table or a Parquet file of one.

    Parquet is for machines (the load, a later run): every value as typed, byte for byte. CSV is for
    people: text cells a spreadsheet would run as a formula get a leading quote and list/struct/map
    input columns are written as JSON (:mod:`clearout_provider.safe_csv`), so read a CSV result back
    only for display.

    Rows are matched on ``normalised_email``; when the verdict table holds one address twice, its first
    row wins. Memory stays bounded for a million rows: only the verdict table (one row per unique
    address) and the key columns are held whole; the input columns stream through in batches.
    """
    table_format(out_path, "result file")  # a wrong suffix fails before anything is read
    answers = _read_verdicts(verdicts)
    table = pa.concat_tables([answers, _local_rows(verifier)])
    headline = spec(verifier).headline_column
    counts: dict[str, Counter[Any]] = {
        k: Counter() for k in ("status", "verdict", "code", "decided", "unrecognised")
    }
    with resolve_path(rows_path).open("rb") as stream:
        parquet = pq.ParquetFile(stream)
        columns = input_columns(parquet.schema_arrow)
        keys = parquet.read(columns=[NORMALISED_EMAIL, LOCAL_DECISION])
        row_email = keys.column(NORMALISED_EMAIL).combine_chunks()
        decision = keys.column(LOCAL_DECISION).combine_chunks()
        del keys
        lookup = _lookup(row_email, decision, _cleaned_emails(parquet), answers)
        del decision, answers
        # The lookup's hash table is gone: hand its memory back before the batches need theirs.
        pa.default_memory_pool().release_unused()
        rows_in = parquet.metadata.num_rows

        input_fields = [parquet.schema_arrow.field(c) for c in columns]
        out_schema = pa.schema([*input_fields, *RESULT_SCHEMA])
        offset = 0
        with TableWriter(out_path, out_schema, what="result file") as writer:
            for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                part = slice(offset, offset + batch.num_rows)
                verdict = table.take(lookup.take[part])
                decided = pc.coalesce(lookup.decided_by[part], verdict.column("decided_by"))
                own = lookup.own_email[part]
                replaced = {
                    "verified_email": pc.if_else(own, row_email[part], verdict.column("verified_email")),
                    "suggested_email": pc.coalesce(verdict.column("suggested_email"), lookup.suggested[part]),
                    "decided_by": decided,
                }
                columns = [*batch.columns, *(replaced.get(n, verdict.column(n)) for n in RESULT_COLUMNS)]
                writer.write(pa.Table.from_arrays(columns, schema=out_schema))
                code, desc = verdict.column("clearout_sub_status_code"), verdict.column("verdict_reason")
                counts["status"] += _value_counts(verdict.column(headline))
                counts["verdict"] += _value_counts(verdict.column("verdict"))
                counts["code"] += _value_counts(code)
                counts["decided"] += _value_counts(decided)
                counts["unrecognised"] += _value_counts(
                    pc.filter(desc, pc.and_(pc.is_null(code), pc.is_valid(desc)))
                )
                offset += batch.num_rows
    if offset != rows_in:
        raise ResultAccountingError(f"wrote {offset} result rows for {rows_in} input rows")
    summary = ResultSummary(
        out_path=str(out_path),
        rows=offset,
        by_status=dict(counts["status"]),
        by_sub_status_code={(_NO_CODE if k is None else str(k)): v for k, v in counts["code"].items()},
        by_decided_by=dict(counts["decided"]),
        by_verdict=dict(counts["verdict"]),
        unrecognised_reasons=dict(counts["unrecognised"]),
    )
    summary.check()
    log.info("Wrote %d result rows to %s: %s", summary.rows, out_path, summary.by_status)
    return summary


def __getattr__(name: str) -> Any:
    """The 0.1 home of the Clearout readers (``from clearout_provider.results import normalise_...``)."""
    if name in ("normalise_bulk_result", "normalise_instant_result"):
        from clearout_provider.clearout import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
