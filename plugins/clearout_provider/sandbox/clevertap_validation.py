"""Per-record validation of ``/1/upload`` and ``/1/subscribe``, as CleverTap answers it.

Each function returns the first :class:`~clearout_provider.clevertap_rules.Violation` of one record (or
None); the router turns violations into ``unprocessed[]`` entries with CleverTap's message shape
``"<message>Skipped record number : <k>"``. Property keys and values follow the shared rules of
:mod:`clearout_provider.clevertap_rules`; the system properties (Email, Phone, Gender, ...) get the
codes of CleverTap's error table. Whether an ``objectId`` exists is the store's question (526).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from email_validator import EmailNotValidError, validate_email

from clearout_provider.clevertap_rules import (
    RecordCode,
    Violation,
    check_profile_data,
    identifier_of,
)

_PHONE_RE = re.compile(r"^\+\d{7,15}$")


def email_problem(value: object) -> str | None:
    """Why ``value`` is not an acceptable email address (None when it is)."""
    if not isinstance(value, str):
        return "Email is not valid."
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return "Email is not valid."
    return None


def _choice(*allowed: str) -> Callable[[object], bool]:
    return lambda v: isinstance(v, str) and v in allowed


#: System properties with a fixed format: (code, message, test).
_SYSTEM_CHECKS: dict[str, tuple[RecordCode, str, Callable[[object], bool]]] = {
    "Phone": (
        RecordCode.PHONE_INVALID,
        "Phone number is not valid.",
        lambda v: bool(_PHONE_RE.match(str(v))),
    ),
    "Gender": (RecordCode.GENDER_INVALID, "Gender is not valid.", _choice("M", "F", "O", "Male", "Female")),
    "Employed": (RecordCode.EMPLOYED_INVALID, "Employed should be Y or N.", _choice("Y", "N")),
    "Married": (RecordCode.MARRIED_INVALID, "Married should be Y or N.", _choice("Y", "N")),
    "Education": (
        RecordCode.EDUCATION_INVALID,
        "Education should be School, College or Graduate.",
        _choice("School", "College", "Graduate"),
    ),
    "Age": (
        RecordCode.AGE_INVALID,
        "Age is not valid.",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 150,
    ),
}


def check_upload_record(record: object, now: int) -> Violation | None:
    """The first problem of one ``d[]`` entry of ``/1/upload`` (``now`` = epoch seconds)."""
    if not isinstance(record, Mapping) or record.get("type") not in ("profile", "event"):
        return Violation(RecordCode.NOT_EVENT_OR_PROFILE, "Data is neither event nor profile.")
    if identifier_of(record) is None:
        return Violation(RecordCode.MISSING_IDENTITY, "Missing identity.")
    if "ts" in record:
        ts = record["ts"]
        if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts <= now + 86_400:
            return Violation(RecordCode.TIMESTAMP_INVALID, "Timestamp is not in UNIX epoch (seconds) format.")
    if record["type"] == "event":
        if not record.get("evtName"):
            return Violation(509, "Event name is mandatory.")
        return None
    data: Any = record.get("profileData")
    found = check_profile_data(data)
    if found:
        return found
    if "Email" in data:
        problem = email_problem(data["Email"])
        if problem:
            return Violation(RecordCode.EMAIL_INVALID, f"Profile data is incorrect. {problem}")
    for prop, (code, message, ok) in _SYSTEM_CHECKS.items():
        if prop in data and not ok(data[prop]):
            return Violation(code, f"Profile data is incorrect. {message}")
    return None


def check_subscription(record: object) -> Violation | None:
    """The first problem of one ``d[]`` entry of ``/1/subscribe``."""
    if not isinstance(record, Mapping) or record.get("type") != "email":
        return Violation(RecordCode.NOT_EVENT_OR_PROFILE, "type must be 'email' (phone is not emulated).")
    if record.get("status") not in ("Unsubscribe", "Resubscribe"):
        return Violation(RecordCode.NOT_EVENT_OR_PROFILE, "status must be Unsubscribe or Resubscribe.")
    problem = email_problem(record.get("value"))
    if problem:
        return Violation(RecordCode.EMAIL_INVALID, problem)
    return None
