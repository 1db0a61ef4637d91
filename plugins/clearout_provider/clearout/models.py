"""Typed results of :class:`~clearout_provider.hooks.clearout.ClearoutHook` calls.

Clearout answers with loosely typed JSON ("yes"/"no" strings, status spellings that vary, nested
objects that may be missing). Each dataclass here has a ``from_api`` that reads the ``data`` object
of one answer once, so operators work with booleans, enums and datetimes instead of re-parsing strings
everywhere. The fields a result cannot do without were checked by
:mod:`~clearout_provider.clearout.protocol` before ``from_api`` runs (a malformed answer is a
``ClearoutProtocolError`` there); optional fields are read tolerantly here. Status knowledge comes from
:mod:`clearout_provider.verdicts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from clearout_provider.clearout.statuses import Status, job_state, normalise_status, sub_status
from clearout_provider.verification.model import Bounce, JobProgress, JobState

#: The six single-flag checks of ``/email/verify/{kind}``.
FlagKind = Literal["catchall", "disposable", "business", "free", "role", "gibberish"]

#: Answer field holding the flag of each check (three of them differ from the path).
FLAG_FIELDS: dict[str, str] = {
    "catchall": "catchall",
    "disposable": "disposable",
    "business": "business_account",
    "free": "free_account",
    "role": "role_account",
    "gibberish": "gibberish",
}


def _yes(value: Any) -> bool:
    """Clearout's "yes"/"no" (sometimes true/false) as a bool."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in {"yes", "true", "1"}


def _text(value: Any) -> str | None:
    """A non-empty string, or None for missing/empty values."""
    text = str(value).strip() if value is not None else ""
    return text or None


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _percent(value: Any) -> float:
    """A percentage within 0..100; 0 when absent or not a finite number (a progress bar, not a verdict)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return min(max(number, 0.0), 100.0) if math.isfinite(number) else 0.0


def _when(value: Any) -> datetime | None:
    """ISO 8601 timestamp (Clearout writes ``...Z``) as an aware datetime; None when absent or odd."""
    text = _text(value)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Credits:
    """The account's credit balance (``getcredits``)."""

    available: int
    total: int | None = None
    subscription: int | None = None
    daily_verify_limit_remaining: int | None = None
    daily_verify_limit_resets_on: datetime | None = None
    low_balance_threshold: int | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Credits:
        credits = _mapping(data.get("credits"))
        available = _int(data.get("available_credits"))
        return cls(
            available=available if available is not None else _int(credits.get("available")) or 0,
            total=_int(credits.get("total")),
            subscription=_int(credits.get("subs")),
            daily_verify_limit_remaining=_int(credits.get("available_daily_verify_limit")),
            daily_verify_limit_resets_on=_when(credits.get("reset_daily_verify_limit_date")),
            low_balance_threshold=_int(data.get("low_credit_balance_min_threshold")),
        )


@dataclass(frozen=True)
class DetailInfo:
    """Where the address lives: mailbox part, domain, MX record and the mail provider."""

    account: str | None = None
    domain: str | None = None
    mx_record: str | None = None
    smtp_provider: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DetailInfo:
        return cls(**{k: _text(data.get(k)) for k in ("account", "domain", "mx_record", "smtp_provider")})


@dataclass(frozen=True)
class VerifyResult:
    """One verified address (instant verify)."""

    email_address: str
    status: Status
    sub_status_code: int
    sub_status_desc: str
    safe_to_send: str
    """"yes", "no", "risky" or "unknown", as Clearout says it (lower-cased)."""
    disposable: bool
    free: bool
    role: bool
    gibberish: bool
    bounce_type: Bounce
    suggested_email: str | None
    ai_verdict: str | None
    detail_info: DetailInfo
    verified_on: datetime | None
    time_taken_ms: int | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> VerifyResult:
        sub = _mapping(data.get("sub_status"))
        code = _int(sub.get("code"))
        known = sub_status(code if code is not None else 500)
        status = normalise_status(str(data["status"]))  # a spelling the protocol check accepted
        try:
            bounce = Bounce(str(data.get("bounce_type") or "").strip().lower())
        except ValueError:
            bounce = known.bounce
        return cls(
            email_address=str(data["email_address"]),
            status=status,
            sub_status_code=known.code if code is None else code,
            sub_status_desc=_text(sub.get("desc")) or known.desc,
            safe_to_send=(_text(data.get("safe_to_send")) or "unknown").lower(),
            disposable=_yes(data.get("disposable")),
            free=_yes(data.get("free")),
            role=_yes(data.get("role")),
            gibberish=_yes(data.get("gibberish")),
            bounce_type=bounce,
            suggested_email=_text(data.get("suggested_email_address")),
            ai_verdict=_text(data.get("ai_verdict")),
            detail_info=DetailInfo.from_api(_mapping(data.get("detail_info"))),
            verified_on=_when(data.get("verified_on")),
            time_taken_ms=_int(data.get("time_taken")),
        )


@dataclass(frozen=True)
class FlagCheck:
    """The answer of one single-flag check (is it catch-all / disposable / business / ...)."""

    email_address: str
    kind: str
    value: bool
    verified_on: datetime | None
    time_taken_ms: int | None

    @classmethod
    def from_api(cls, kind: str, data: Mapping[str, Any]) -> FlagCheck:
        return cls(
            email_address=str(data.get("email_address") or ""),
            kind=kind,
            value=_yes(data.get(FLAG_FIELDS[kind])),
            verified_on=_when(data.get("verified_on")),
            time_taken_ms=_int(data.get("time_taken")),
        )


@dataclass(frozen=True)
class BulkUpload:
    """An accepted bulk upload: the ``list_id`` to poll, download, cancel or remove."""

    list_id: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BulkUpload:
        return cls(list_id=str(data["list_id"]))


@dataclass(frozen=True)
class BulkProgress(JobProgress):
    """How far a bulk verify or finder list has got (``finished``: the neutral rule of JobProgress)."""

    list_id: str
    status: str
    """Clearout's ``progress_status``: "running", "completed", "cancelled" (others possible)."""
    percent: float

    @property
    def job_id(self) -> str:
        return self.list_id

    @property
    def state(self) -> JobState:
        return job_state(self.status)

    @property
    def vendor_status(self) -> str:
        return self.status

    @classmethod
    def from_api(cls, list_id: str, data: Mapping[str, Any]) -> BulkProgress:
        # Verify says "percentile", the finder "percentage"; accept either for both.
        percent = _percent(data.get("percentile", data.get("percentage")))
        return cls(list_id=list_id, status=str(data["progress_status"]).strip().lower(), percent=percent)


@dataclass(frozen=True)
class ListInfo:
    """A list that was just cancelled or removed."""

    list_id: str
    name: str | None
    source: str | None
    created_on: datetime | None

    @classmethod
    def from_api(cls, list_id: str, data: Mapping[str, Any]) -> ListInfo:
        return cls(
            list_id=list_id,
            name=_text(data.get("name")),
            source=_text(data.get("source")),
            created_on=_when(data.get("created_on")),
        )


@dataclass(frozen=True)
class FinderEmail:
    """One address the Email Finder found."""

    email_address: str
    role: bool
    business: bool


@dataclass(frozen=True)
class FinderResult:
    """The Email Finder's answer for one name + domain (``emails`` is empty when nothing was found)."""

    emails: tuple[FinderEmail, ...]
    first_name: str | None
    last_name: str | None
    full_name: str | None
    domain: str | None
    confidence_score: int | None
    company: str | None
    found_on: datetime | None
    query_status: str | None = None
    """Set by the queue path ("completed"); None for a direct answer."""

    @property
    def email_address(self) -> str | None:
        """The first (best) address found, if any."""
        return self.emails[0].email_address if self.emails else None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> FinderResult:
        emails = tuple(
            FinderEmail(
                email_address=str(e.get("email_address") or ""),
                role=_yes(e.get("role")),
                business=_yes(e.get("business")),
            )
            for e in data.get("emails") or ()
            if isinstance(e, Mapping)
        )
        return cls(
            emails=emails,
            first_name=_text(data.get("first_name")),
            last_name=_text(data.get("last_name")),
            full_name=_text(data.get("full_name")),
            domain=_text(data.get("domain")),
            confidence_score=_int(data.get("confidence_score")),
            company=_text(_mapping(data.get("company")).get("name")),
            found_on=_when(data.get("found_on")),
            query_status=_text(data.get("query_status")),
        )


@dataclass(frozen=True)
class DownloadedFile:
    """A result file written to disk by a streamed download."""

    path: Path
    bytes: int
