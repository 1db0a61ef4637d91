"""Clearout's answers as verdict tables: the bulk result file and the instant ``data`` object.

Clearout answers in two shapes: the bulk result CSV (display labels, "Yes"/"No" flags and only the
sub-status *description*) and the instant API's JSON ``data`` object (codes and lower-case flags). Both
become rows of the result columns of :mod:`clearout_provider.verification.model`, through the one table
of :mod:`clearout_provider.clearout.statuses` (status → verdict, reason text → code, spam trap code).
``safe_to_send`` is a boolean: Clearout's "yes" is True, "no" and "risky" are False (risky is Clearout's
advice *not* to send), "unknown" is null.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clearout_provider.clearout.statuses import (
    SPAM_TRAP_CODE,
    SUB_STATUSES,
    VERDICT_OF_STATUS,
    Status,
    normalise_status,
    sub_status_from_reason,
)
from clearout_provider.contacts import (
    NORMALISED_EMAIL,
    ContactsError,
    StoragePath,
    find_email_column,
    normalise_emails,
    read_csv_header,
    resolve_path,
)
from clearout_provider.results import RESULT_SCHEMA, VERDICT_SCHEMA, MalformedResultFile
from clearout_provider.verification.model import RESULT_COLUMNS, DecidedBy

log = logging.getLogger(__name__)
_TIMESTAMP = RESULT_SCHEMA.field("verified_at").type


# ------------------------------------------------------------------------------------ one value each


def _flag(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((value or "").strip().lower())


def _safe_to_send(value: str | None) -> bool | None:
    return {"yes": True, "no": False, "risky": False}.get((value or "").strip().lower())


def _status(label: str | None) -> str | None:
    try:
        return normalise_status(label or "").value
    except ValueError:
        return None


def _status_of_code(code: int | None) -> str | None:
    return SUB_STATUSES[code].status.value if code in SUB_STATUSES else None


def _verdict_of_status(status: str | None) -> str | None:
    return VERDICT_OF_STATUS[Status(status)].value if status else None


def _bounce(value: str | None) -> str:
    return (value or "").strip().lower()


def _text(value: str | None) -> str | None:
    return (value or "").strip() or None


def _code_of_reason(reason: str | None) -> int | None:
    known = sub_status_from_reason(reason or "")
    return known.code if known else None


def _desc_of_reason(reason: str | None) -> str | None:
    known = sub_status_from_reason(reason or "")
    return known.desc if known else _text(reason)


def _map_distinct(values: pa.Array, fn: Callable[[Any], Hashable | None], type_: pa.DataType) -> pa.Array:
    """``fn`` applied to each distinct value once (the label columns hold a handful of values)."""
    distinct = pc.unique(values)
    mapped = pa.array([fn(v) for v in distinct.to_pylist()], type_)
    return mapped.take(pc.index_in(values, value_set=distinct))


def _texts(values: pa.Array) -> pa.Array:
    """Trimmed text, blank as null (vectorised: for columns with a value per address)."""
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _utc_timestamps(values: pa.Array) -> pa.Array:
    """Parse timestamps as UTC (naive ones are UTC: the column says so); unparseable ones become null.

    Clearout's own spelling (ISO 8601 with "Z", milliseconds) takes a vectorised cast; anything else
    goes through pandas' ISO 8601 parser and then its "mixed" one.
    """
    texts = _texts(values)
    try:
        return pc.cast(texts, _TIMESTAMP)
    except pa.ArrowInvalid:
        pass
    series = pd.Series(texts.to_pylist(), dtype="object")
    parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    leftover = parsed.isna() & series.notna()
    if leftover.any():
        parsed[leftover] = pd.to_datetime(series[leftover], utc=True, format="mixed", errors="coerce")
        unparsed = int((parsed.isna() & leftover).sum())
        if unparsed:
            log.warning("%d Clearout verification times could not be parsed; left empty", unparsed)
    return pa.array(parsed, _TIMESTAMP)


def _verdict_columns(
    raw: Mapping[str, pa.Array], code: pa.Array, desc: pa.Array, decided_by: DecidedBy, unread: Counter[str]
) -> pa.Table:
    """:data:`RESULT_SCHEMA` columns from Clearout's raw text columns and the resolved sub-statuses.

    The status comes from Clearout's label; an unreadable label (counted in ``unread``) falls back to
    the sub-status's status, then to unknown, so every row has one of the four statuses.
    """
    label_status = _map_distinct(raw["status"], _status, pa.string())
    unread.update(pc.filter(raw["status"], pc.is_null(label_status)).to_pylist())
    status = pc.coalesce(
        label_status, _map_distinct(code, _status_of_code, pa.string()), pa.scalar(Status.UNKNOWN.value)
    )
    n = len(code)
    columns = {
        "verified_email": _texts(raw["email"]),
        "verifier": pa.array(["clearout"] * n, pa.string()),
        "verdict": _map_distinct(status, _verdict_of_status, pa.string()),
        "verdict_reason": desc,
        "safe_to_send": _map_distinct(raw["safe_to_send"], _safe_to_send, pa.bool_()),
        "bounce": _map_distinct(raw["bounce"], _bounce, pa.string()),
        "is_disposable": _map_distinct(raw["disposable"], _flag, pa.bool_()),
        "is_free": _map_distinct(raw["free"], _flag, pa.bool_()),
        "is_role": _map_distinct(raw["role"], _flag, pa.bool_()),
        "is_catch_all": pc.equal(status, Status.CATCH_ALL.value),
        "is_gibberish": _map_distinct(raw["gibberish"], _flag, pa.bool_()),
        "is_spam_trap": pc.fill_null(pc.equal(code, SPAM_TRAP_CODE), False),
        "suggested_email": _texts(raw["suggested"]),
        "verified_at": _utc_timestamps(raw["verified_at"]),
        "clearout_status": status,
        "clearout_sub_status_code": code,
        "decided_by": pa.array([decided_by.value] * n, pa.string()),
    }
    columns = {
        name: columns.get(name, pa.nulls(n, RESULT_SCHEMA.field(name).type)) for name in RESULT_COLUMNS
    }
    return pa.table(columns, schema=RESULT_SCHEMA)


def _keyed(results: pa.Table, unread: Counter[str]) -> pa.Table:
    """Add the join key (the address normalised exactly as for the upload) in front of the results."""
    if unread:
        log.warning(
            "Unrecognised Clearout status labels (status taken from the sub-status): %s", dict(unread)
        )
    key = normalise_emails(results.column("verified_email")).normalised
    return results.add_column(0, VERDICT_SCHEMA.field(NORMALISED_EMAIL), key)


# ----------------------------------------------------------------------------------- bulk and instant

# The bulk result columns this module reads, by role.
_BULK_COLUMNS = {
    "safe_to_send": "Clearout Safe to Send",
    "status": "Clearout Verification Status",
    "reason": "Clearout Reason",
    "suggested": "Clearout Suggested Email",
    "bounce": "Clearout Bounce Type",
    "disposable": "Clearout Disposable Status",
    "free": "Clearout Free Account Status",
    "role": "Clearout Role Account Status",
    "gibberish": "Clearout Gibberish Status",
    "verified_at": "Clearout Verified At (UTC)",
}


def normalise_bulk_result(result_csv: StoragePath, *, block_size: int = 1 << 20) -> pa.Table:
    """Read a Clearout bulk verify result CSV into a :data:`VERDICT_SCHEMA` table (decided_by clearout_bulk).

    The file carries only the reason TEXT; it is mapped to the code with
    :func:`verdicts.sub_status_from_reason`. An unrecognised reason keeps its text with a null code and
    is logged with its count (it never fails the run). The file streams through in blocks of
    ``block_size`` bytes and only the columns used are kept, so a million-row result stays small.
    """
    path = resolve_path(result_csv)
    try:
        with path.open("rb") as stream:
            names = read_csv_header(stream, str(result_csv))
        email = find_email_column(names)
    except (ContactsError, UnicodeDecodeError) as error:
        raise MalformedResultFile(f"{result_csv} is not a Clearout bulk result: {error}") from None
    missing = [c for c in _BULK_COLUMNS.values() if c not in names]
    if missing:
        raise MalformedResultFile(
            f"{result_csv} is not a Clearout bulk result: columns {missing} are missing"
        )

    parts, unread, unknown_reasons = [], Counter[str](), Counter[str]()
    with path.open("rb") as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, include_columns=[email, *_BULK_COLUMNS.values()]
            ),
        )
        for batch in reader:
            raw = {role: batch.column(name) for role, name in _BULK_COLUMNS.items()}
            raw["email"] = batch.column(email)
            code = _map_distinct(raw["reason"], _code_of_reason, pa.int32())
            desc = _map_distinct(raw["reason"], _desc_of_reason, pa.string())
            unknown_reasons.update(pc.filter(desc, pc.and_(pc.is_null(code), pc.is_valid(desc))).to_pylist())
            parts.append(_verdict_columns(raw, code, desc, DecidedBy.CLEAROUT_BULK, unread))
    if unknown_reasons:
        log.warning(
            "Clearout reasons not in the sub-status table (kept as text, code empty): %s",
            dict(unknown_reasons),
        )
    results = pa.concat_tables(parts) if parts else RESULT_SCHEMA.empty_table()
    return _keyed(results, unread)


def normalise_instant_result(data: Mapping[str, Any]) -> dict[str, Any]:
    """One instant-verify ``data`` object as a :data:`VERDICT_SCHEMA` row (decided_by clearout_instant).

    The sub-status code is Clearout's own; its description comes from the sub-status table when the code
    is known there, else Clearout's text is kept.
    """
    sub = data.get("sub_status") or {}
    code = sub.get("code")
    code = int(code) if code not in (None, "") else None
    desc = SUB_STATUSES[code].desc if code in SUB_STATUSES else _text(sub.get("desc"))
    raw = {
        "email": data.get("email_address"),
        "status": data.get("status"),
        "safe_to_send": data.get("safe_to_send"),
        "bounce": data.get("bounce_type"),
        "disposable": data.get("disposable"),
        "free": data.get("free"),
        "role": data.get("role"),
        "gibberish": data.get("gibberish"),
        "suggested": data.get("suggested_email_address"),
        "verified_at": data.get("verified_on"),
    }
    unread = Counter[str]()
    results = _verdict_columns(
        {k: pa.array([None if v is None else str(v)], pa.string()) for k, v in raw.items()},
        pa.array([code], pa.int32()),
        pa.array([desc], pa.string()),
        DecidedBy.CLEAROUT_INSTANT,
        unread,
    )
    return _keyed(results, unread).to_pylist()[0]


def neutral_from_01(table: pa.Table) -> pa.Table:
    """A verdict table written by 0.1 (Clearout's status and code, no neutral verdict) with the verdict,
    verifier and flags derived from them, through the same table as a fresh answer."""
    status = table.column("clearout_status").combine_chunks().cast(pa.string())
    code = table.column("clearout_sub_status_code").combine_chunks().cast(pa.int32())
    derived = {
        "verifier": pc.if_else(pc.is_valid(status), "clearout", pa.scalar(None, pa.string())),
        "verdict": _map_distinct(status, _verdict_of_status, pa.string()),
        "is_catch_all": pc.equal(status, Status.CATCH_ALL.value),
        "is_spam_trap": pc.equal(code, SPAM_TRAP_CODE),
    }
    for name, values in derived.items():
        table = table.append_column(name, values)
    return table
