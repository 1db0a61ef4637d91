"""CleverTap's rules for uploaded profile data, in one place for both sides of the wire.

The hook checks every record against these rules BEFORE sending, so a bad row gets a precise per-row
reason instead of a server-side rejection (or, worse, a silently truncated value); the sandbox checks
what it receives against the same rules, as CleverTap does. Limits and codes come from the CleverTap
fact sheet; codes 521 and 522 are the sandbox's choice (CleverTap documents no code for a bad
profile key or value) and are marked as such. Pure data and pure functions; no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Any

#: Records per ``POST /1/upload`` and per ``POST /1/subscribe``.
MAX_RECORDS_PER_CALL = 1000
#: Profiles per export page (``batch_size`` of ``/1/profiles.json``).
MAX_EXPORT_BATCH_SIZE = 5000
#: Bytes (UTF-8) of a profile property key.
MAX_KEY_BYTES = 120
#: Bytes (UTF-8) of a scalar property value, and of each item of a multi-value property.
MAX_VALUE_BYTES = 512
#: Characters CleverTap refuses in a property key (spaces are fine).
FORBIDDEN_KEY_CHARACTERS = frozenset("%><!|&.:;$'\"\\#")
#: Prefix of a date value: ``"$D_<epoch seconds>"``.
DATE_PREFIX = "$D_"
#: The identifiers a record may carry; one is required.
IDENTIFIER_KEYS = ("identity", "objectId", "FBID", "GPID")
#: Operators allowed as a profile value: ``{"$incr": 1}`` etc.
VALUE_OPERATORS = frozenset({"$add", "$remove", "$incr", "$decr", "$delete"})

_DATE_RE = re.compile(r"^\$D_-?\d{1,12}$")
_PLAIN_TYPES = frozenset({str, int, float, bool})
#: Strings up to this many characters cannot exceed MAX_VALUE_BYTES (UTF-8 takes at most 4 bytes each).
_SAFE_CHARS = MAX_VALUE_BYTES // 4
#: Keys already found valid (bounded), so the common case costs one set lookup.
_GOOD_KEYS: set[str] = set()


class RecordCode(IntEnum):
    """Per-record codes of ``POST /1/upload`` (inside ``unprocessed[]``)."""

    GENDER_INVALID = 514
    EMAIL_INVALID = 515
    PHONE_INVALID = 516
    EMPLOYED_INVALID = 517
    EDUCATION_INVALID = 518
    MARRIED_INVALID = 519
    AGE_INVALID = 520
    #: Sandbox choice: a key longer than 120 bytes or with a forbidden character.
    KEY_INVALID = 521
    #: Sandbox choice: a value longer than 512 bytes, null/NaN, or of an unsupported type.
    VALUE_INVALID = 522
    MISSING_IDENTITY = 523
    NOT_EVENT_OR_PROFILE = 524
    TIMESTAMP_INVALID = 525
    OBJECT_ID_INVALID = 526
    SERVER_ERROR = 555


@dataclass(frozen=True)
class Violation:
    """Why one record breaks a rule: CleverTap's code for it and a message naming the property."""

    code: int
    message: str


def date_value(moment: datetime | date | float) -> str:
    """``datetime``/``date``/epoch seconds → ``"$D_<epoch seconds>"`` (naive datetimes are taken as UTC)."""
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return f"{DATE_PREFIX}{int(aware.timestamp())}"
    if isinstance(moment, date):
        return f"{DATE_PREFIX}{int(datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp())}"
    return f"{DATE_PREFIX}{int(moment)}"


def parse_date_value(value: object) -> int | None:
    """Epoch seconds of a ``"$D_<epoch>"`` value, or None when ``value`` is not one."""
    if isinstance(value, str) and _DATE_RE.match(value):
        return int(value[len(DATE_PREFIX) :])
    return None


def encode_value(value: Any) -> Any:
    """A Python value as CleverTap wants it on the wire: dates become ``$D_``, numpy scalars (from a
    DataFrame) plain Python values; everything else as is."""
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, datetime | date):
        return date_value(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def check_key(key: object) -> Violation | None:
    """A property key's violation (type, length in bytes, forbidden characters), or None."""
    if not isinstance(key, str) or not key.strip():
        return Violation(RecordCode.KEY_INVALID, f"Property key {key!r} must be a non-empty string.")
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        return Violation(
            RecordCode.KEY_INVALID,
            f"Property key {key[:40]!r}... is {size} bytes; the limit is {MAX_KEY_BYTES}.",
        )
    bad = sorted(set(key) & FORBIDDEN_KEY_CHARACTERS)
    if bad:
        return Violation(
            RecordCode.KEY_INVALID,
            f"Property key {key!r} contains forbidden character(s) {' '.join(map(repr, bad))}.",
        )
    return None


def _check_scalar(key: str, value: object) -> Violation | None:
    if isinstance(value, str):
        size = (
            len(value) if len(value) * 4 <= MAX_VALUE_BYTES else len(value.encode())
        )  # UTF-8: ≤ 4 bytes/char
        if size > MAX_VALUE_BYTES:
            return Violation(
                RecordCode.VALUE_INVALID, f"Value of {key!r} is {size} bytes; the limit is {MAX_VALUE_BYTES}."
            )
        if value.startswith(DATE_PREFIX) and parse_date_value(value) is None:
            return Violation(
                RecordCode.VALUE_INVALID, f"Value of {key!r} is not a date of the form $D_<epoch>."
            )
        return None
    if isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return Violation(RecordCode.VALUE_INVALID, f"Value of {key!r} is {value}; send a finite number.")
    if value is None:
        return Violation(
            RecordCode.VALUE_INVALID,
            f"Value of {key!r} is null; leave the key out, or send {{'$delete': 1}}.",
        )
    return Violation(
        RecordCode.VALUE_INVALID, f"Value of {key!r} has unsupported type {type(value).__name__}."
    )


def check_value(key: str, value: object) -> Violation | None:
    """A property value's violation (size, type, operator shape), or None. Dates must already be ``$D_``."""
    if type(value) in _PLAIN_TYPES:
        return _check_scalar(key, value)
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                return Violation(RecordCode.VALUE_INVALID, f"Multi-value {key!r} may only hold strings.")
            found = _check_scalar(key, item)
            if found:
                return found
        return None
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in VALUE_OPERATORS:
            return Violation(
                RecordCode.VALUE_INVALID,
                f"Value of {key!r} must be one of the operators {', '.join(sorted(VALUE_OPERATORS))}.",
            )
        ((op, arg),) = value.items()
        if op in ("$add", "$remove"):
            return (
                check_value(key, arg)
                if isinstance(arg, list)
                else Violation(RecordCode.VALUE_INVALID, f"{op} of {key!r} takes a list of strings.")
            )
        if op in ("$incr", "$decr") and (isinstance(arg, bool) or not isinstance(arg, int | float)):
            return Violation(RecordCode.VALUE_INVALID, f"{op} of {key!r} takes a number.")
        return None
    return _check_scalar(key, value)


def check_profile_data(profile_data: object) -> Violation | None:
    """The first rule a record's ``profileData`` breaks, or None. Keys are checked before values."""
    if not isinstance(profile_data, Mapping):
        return Violation(RecordCode.NOT_EVENT_OR_PROFILE, "profileData must be an object of properties.")
    for key, value in profile_data.items():
        if key not in _GOOD_KEYS:
            found = check_key(key)
            if found:
                return found
            if len(_GOOD_KEYS) < 4096:  # a million records repeat the same handful of keys
                _GOOD_KEYS.add(key)
        kind = type(value)
        if (
            kind is int
            or kind is bool
            or (kind is str and len(value) <= _SAFE_CHARS and value[:3] != DATE_PREFIX)
        ):
            continue  # the common case, decided without the general checks (uploads run at 50k+ records/s)
        found = check_value(key, value)
        if found:
            return found
    return None


def identifier_of(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(key, value)`` of the record's identifier (identity first), or None when it carries none."""
    for key in IDENTIFIER_KEYS:
        value = record.get(key)
        if value not in (None, ""):
            return key, str(value)
    return None


def prepare_profile_record(record: Mapping[str, Any]) -> tuple[dict[str, Any], None] | tuple[None, Violation]:
    """An input record as a ``/1/upload`` entry (dates encoded), or the rule it breaks.

    ``record`` is ``{"identity" | "objectId" | ...: ..., "profileData": {...}, "ts": optional}``.
    """
    ident = identifier_of(record)
    if ident is None:
        return None, Violation(RecordCode.MISSING_IDENTITY, "Missing identity: give an identity or objectId.")
    data = record.get("profileData")
    if not isinstance(data, Mapping) or not data:
        return None, Violation(RecordCode.NOT_EVENT_OR_PROFILE, "profileData must be a non-empty object.")
    encoded = {key: encode_value(value) for key, value in data.items()}
    found = check_profile_data(encoded)
    if found:
        return None, found
    entry: dict[str, Any] = {ident[0]: ident[1], "type": "profile", "profileData": encoded}
    if record.get("ts") is not None:
        entry["ts"] = record["ts"]
    return entry, None
