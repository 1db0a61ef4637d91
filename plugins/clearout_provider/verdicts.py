"""Clearout's verdict taxonomy: statuses, sub-status codes and the bulk result file's columns.

This module is the ONE place that knows what a Clearout sub-status means. The sandbox draws its
answers from it, the result readers turn the bulk file's reason text back into codes with it, and the
CleverTap mapping (at the end: result columns → profile properties, and the unsubscribe policy) builds
on it. Pure data and pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from clearout_provider.clevertap_rules import check_key, date_value


class Status(StrEnum):
    """Primary verification status as the instant API spells it."""

    VALID = "valid"
    INVALID = "invalid"
    CATCH_ALL = "catch_all"
    UNKNOWN = "unknown"


class Bounce(StrEnum):
    """Bounce class of an invalid address ("" when not a bounce)."""

    NONE = ""
    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True)
class SubStatus:
    """One sub-status code: what Clearout calls it, and what it implies."""

    code: int
    desc: str
    status: Status
    bounce: Bounce = Bounce.NONE


_S, _I, _C, _U = Status.VALID, Status.INVALID, Status.CATCH_ALL, Status.UNKNOWN
_H, _F = Bounce.HARD, Bounce.SOFT

#: Every sub-status of the fact sheet (code → meaning, status, bounce class).
SUB_STATUSES: dict[int, SubStatus] = {
    s.code: s
    for s in (
        SubStatus(200, "Success", _S),
        SubStatus(400, "Syntax Error", _I, _H),
        SubStatus(401, "Spam Trap / Honeypot", _I, _F),
        SubStatus(402, "Mail Server Connection Timeout", _U),
        SubStatus(403, "Domain Has No or Incomplete DNS Records", _I, _H),
        SubStatus(404, "Domain Not Configured as Mail Server", _I, _H),
        SubStatus(405, "SMTP Server Unavailable", _U),
        SubStatus(406, "Mailbox Not Found", _I, _H),
        SubStatus(407, "Greylisted", _U),
        SubStatus(411, "Catch-All Server", _C),
        SubStatus(412, "Unable to Determine, Retry After an Hour", _U),
        SubStatus(413, "Mailbox Quota Exceeded", _I, _F),
        SubStatus(414, "rDNS Blacklisted", _U),
        SubStatus(415, "API Call Limit Exceeded for the Instance", _U),
        # Older docs say invalid/hard; newer ones unknown. We follow the older, stricter reading
        # because the sandbox and the real service both still emit it with a hard bounce.
        SubStatus(416, "No Answer from Authoritative Server", _I, _H),
        SubStatus(417, "DNS Timeout", _U),
        SubStatus(418, "DNS Error", _U),
        SubStatus(419, "Insufficient System Resource", _I, _F),
        SubStatus(420, "Mail Server Command Timeout", _U),
        SubStatus(421, "Receiving Limit Reached", _I, _F),
        SubStatus(428, "Account Inactive / Dormant", _I, _F),
        SubStatus(500, "Unexpected Error", _U),
        SubStatus(601, "Email in Allowlist", _S),
        SubStatus(602, "Email in Blocklist", _I),
        SubStatus(603, "Domain in Allowlist", _S),
        SubStatus(604, "Domain in Blocklist", _I),
        SubStatus(605, "Request Cancelled", _U),
        SubStatus(606, "Unsupported Character", _I, _H),
        SubStatus(701, "Account Disabled", _I, _H),
    )
}

_BY_DESC = {s.desc.casefold(): s for s in SUB_STATUSES.values()}


def sub_status(code: int) -> SubStatus:
    """The sub-status for ``code``; an unknown code is reported as Unexpected Error (500)."""
    return SUB_STATUSES.get(int(code), SUB_STATUSES[500])


def sub_status_from_reason(reason: str) -> SubStatus | None:
    """Map the bulk file's "Clearout Reason" text back to its sub-status (None when unrecognised)."""
    return _BY_DESC.get(reason.strip().casefold()) if reason else None


def normalise_status(value: str) -> Status:
    """Accept every spelling seen in the wild ("Catch All", "catch-all", "catchall", "Valid", ...)."""
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    if key == "catchall":
        key = "catch_all"
    return Status(key)


#: Display form of each status in the bulk result file.
STATUS_LABELS: dict[Status, str] = {
    Status.VALID: "Valid",
    Status.INVALID: "Invalid",
    Status.CATCH_ALL: "Catch All",
    Status.UNKNOWN: "Unknown",
}

#: Columns Clearout appends to a bulk verify result, in file order (original columns come first).
BULK_RESULT_COLUMNS: tuple[str, ...] = (
    "Clearout Safe to Send",
    "Clearout Verification Status",
    "Clearout Reason",
    "Clearout Suggested Email",
    "Clearout Bounce Type",
    "Clearout Disposable Status",
    "Clearout Free Account Status",
    "Clearout Role Account Status",
    "Clearout Gibberish Status",
    "Clearout Account",
    "Clearout Domain",
    "Clearout MX Record",
    "Clearout SMTP Provider",
    "Clearout Verified At (UTC)",
    "Clearout Time Taken (ms)",
    "Clearout AI Verdict",
)

#: Columns Clearout appends to a bulk finder result, in file order.
FINDER_RESULT_COLUMNS: tuple[str, ...] = (
    "Clearout Finder Full Name",
    "Clearout Finder First Name",
    "Clearout Finder Last Name",
    "Clearout Finder Domain",
    "Clearout Finder Company",
    "Clearout Finder Email Address",
    "Clearout Finder Confidence Score",
    "Clearout Finder Business Account",
    "Clearout Finder Status",
    "Clearout Finder Reason",
    "Clearout Finder Processed At (UTC)",
)

#: Header names Clearout accepts as the email column of an uploaded list (case-insensitive), error 1004.
EMAIL_COLUMN_NAMES: tuple[str, ...] = ("email", "emails", "email address", "emailaddress")

#: Normalised verification fields every result file of this provider carries after the input columns,
#: whoever decided the verdict (Clearout bulk, Clearout instant, or the local syntax pre-check).
#: Flags are booleans, codes integers, ``verified_at`` a UTC timestamp; ``decided_by`` is one of
#: "clearout_bulk", "clearout_instant", "local_syntax", "local_duplicate", "missing_from_result",
#: "clearout_instant_failed"
#: (clearout_provider.results.DecidedBy; column types in clearout_provider.results.RESULT_SCHEMA).
RESULT_COLUMNS: tuple[str, ...] = (
    "verified_email",
    "clearout_status",
    "clearout_sub_status_code",
    "clearout_sub_status",
    "clearout_safe_to_send",
    "clearout_bounce_type",
    "clearout_disposable",
    "clearout_free",
    "clearout_role",
    "clearout_gibberish",
    "clearout_suggested_email",
    "clearout_verified_at",
    "decided_by",
)


# ------------------------------------------------------------------------------ CleverTap mapping
#
# Clearout's answer → CleverTap profile properties, as the Clearout x CleverTap integration's "Append"
# export writes them, and the "Unsubscribe" decision. Keyed on RESULT_COLUMNS, not on Clearout's own
# field names, so any verifier that fills those columns (Mail.so too) maps through the same table.

#: Result column → default CleverTap property name (the Append export's column names).
CLEVERTAP_PROPERTIES: dict[str, str] = {
    "clearout_status": "Clearout Verification Status",
    "clearout_safe_to_send": "Clearout Safe To Send",
    "clearout_sub_status_code": "Clearout Sub Status Code",
    "clearout_sub_status": "Clearout Sub Status",
    "clearout_bounce_type": "Clearout Bounce Type",
    "clearout_disposable": "Clearout Disposable",
    "clearout_role": "Clearout Role Account",
    "clearout_free": "Clearout Free Account",
    "clearout_gibberish": "Clearout Gibberish",
    "clearout_suggested_email": "Clearout Suggested Email",
    "clearout_verified_at": "Clearout Verified At",
    "verified_email": "Clearout Verified Email",
}

#: Profile properties an export copies by default: what an earlier Append wrote, so a run can skip fresh
#: verifications and avoid re-sending unchanged values (the default property names, in table order).
VERIFICATION_PROPERTIES: tuple[str, ...] = tuple(CLEVERTAP_PROPERTIES.values())

#: Result columns always written, chosen or not: the freshness filter reads them back on the next run
#: (the verification date for "stale", the verified address for "email changed").
ALWAYS_WRITTEN: tuple[str, ...] = ("verified_email", "clearout_verified_at")

#: What the Clearout x CleverTap integration recommends appending (seed 001): the DAGs' default choice.
RECOMMENDED_APPEND: tuple[str, ...] = ("Clearout Safe To Send", "Clearout Verification Status")

#: The per-profile email preference; ``False`` stops email to that one profile.
UNSUBSCRIBE_PROPERTY = "MSG-email"

#: The marker of an unsubscribe THIS provider made: why (the policy reason, e.g. "hard_bounce:406") and
#: when. Only a profile carrying it is ever resubscribed (a later deliverable verdict for its current
#: address lifts it); a profile switched off without it (the person opted out) is never touched.
UNSUBSCRIBED_REASON_PROPERTY = "Clearout Unsubscribed Reason"
UNSUBSCRIBED_AT_PROPERTY = "Clearout Unsubscribed At"
#: Properties the load manages itself (never a mapping's target name), and the export reads back.
MANAGED_PROPERTIES: tuple[str, ...] = (
    UNSUBSCRIBE_PROPERTY,
    UNSUBSCRIBED_REASON_PROPERTY,
    UNSUBSCRIBED_AT_PROPERTY,
)

_BOOLEAN_COLUMNS = frozenset(
    {"clearout_safe_to_send", "clearout_disposable", "clearout_role", "clearout_free", "clearout_gibberish"}
)


def _is_missing(value: Any) -> bool:
    """None, NaN, NaT or pandas.NA (rows may come from pyarrow, pandas or plain dicts)."""
    if value is None:
        return True
    try:
        return bool(value != value)  # noqa: PLR0124  -- NaN and NaT are the values unequal to themselves
    except TypeError:  # pandas.NA refuses to be a bool
        return True


def _clevertap_value(column: str, value: Any) -> Any:
    """One result value as CleverTap stores it: booleans as booleans, the code as an int, the date as
    ``$D_<epoch>``, text trimmed; missing or blank as None (the property is then absent)."""
    if _is_missing(value):
        return None
    if column == "clearout_verified_at":
        return date_value(value)
    if column == "clearout_sub_status_code":
        return int(value)
    if column in _BOOLEAN_COLUMNS:
        if isinstance(value, str):
            return {"true": True, "yes": True, "false": False, "no": False}.get(value.strip().lower())
        return bool(value)
    text = str(value).strip()
    return text or None


def _resolve_column(name: str) -> str:
    """A result column named by its result-column name or by its default property name (any case)."""
    by_name = {k.casefold(): k for k in CLEVERTAP_PROPERTIES} | {
        v.casefold(): k for k, v in CLEVERTAP_PROPERTIES.items()
    }
    found = by_name.get(str(name).strip().casefold())
    if found is None:
        raise ValueError(
            f"Unknown CleverTap mapping column {name!r}: choose from the result columns "
            f"{list(CLEVERTAP_PROPERTIES)} or their property names {list(CLEVERTAP_PROPERTIES.values())}"
        )
    return found


@dataclass(frozen=True)
class PropertyMapping:
    """Which result columns become which CleverTap properties (the Append export, user-overridable).

    ``columns`` are result columns (see :data:`CLEVERTAP_PROPERTIES`); ``renames`` maps a result column
    to the property name to write instead of the default. :data:`ALWAYS_WRITTEN` columns are written
    even when not chosen.
    """

    columns: tuple[str, ...] = tuple(CLEVERTAP_PROPERTIES)
    renames: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for column in (*self.columns, *self.renames):
            if column not in CLEVERTAP_PROPERTIES:
                _resolve_column(column)  # raises with the choices
                raise ValueError(
                    "PropertyMapping takes result column names; "
                    f"use PropertyMapping.from_params for {column!r}"
                )
        names = list(self.property_names().values())
        for name in names:
            problem = check_key(name)
            if problem:
                raise ValueError(f"Cannot write CleverTap property: {problem.message}")
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"Several columns would write the same CleverTap property: {clashes}")
        for managed in MANAGED_PROPERTIES:
            if managed in names:
                raise ValueError(
                    f"{managed!r} is managed by the load (unsubscribes); rename to another property"
                )

    @classmethod
    def from_params(
        cls, columns: Sequence[str] | None = None, renames: Mapping[str, str] | None = None
    ) -> PropertyMapping:
        """From DAG params: names may be result columns or default property names; None = all columns."""
        chosen = (
            tuple(dict.fromkeys(_resolve_column(c) for c in columns))
            if columns
            else tuple(CLEVERTAP_PROPERTIES)
        )
        return cls(
            columns=chosen,
            renames={_resolve_column(k): str(v).strip() for k, v in (renames or {}).items()},
        )

    def property_names(self) -> dict[str, str]:
        """Result column → property name for every column written (chosen + always written)."""
        written = dict.fromkeys((*self.columns, *ALWAYS_WRITTEN))
        return {c: self.renames.get(c, CLEVERTAP_PROPERTIES[c]) for c in CLEVERTAP_PROPERTIES if c in written}

    def properties(self, row: Mapping[str, Any], *, verified_at_default: Any = None) -> dict[str, Any]:
        """The profile properties for one result row: property name → CleverTap value (None = absent).

        ``verified_at_default`` stands in for a missing verification time (a verdict decided locally,
        such as a syntax error, carries none), so freshness still sees when it was decided.
        """
        values = {}
        for column, name in self.property_names().items():
            raw = row.get(column)
            if column == "clearout_verified_at" and _is_missing(raw):
                raw = verified_at_default
            values[name] = _clevertap_value(column, raw)
        return values


class UnsubscribeMethod(StrEnum):
    """How an undeliverable address is unsubscribed in CleverTap."""

    PROFILE = "profile"
    """``MSG-email: false`` on the verified profile only."""
    SUBSCRIBE_API = "subscribe_api"
    """``POST /1/subscribe`` for the address: every profile sharing it stops getting email."""
    BOTH = "both"


@dataclass(frozen=True)
class UnsubscribePolicy:
    """Which verdicts unsubscribe an address, and how (the integration's "Unsubscribe" export).

    Defaults: hard bounces, disposable addresses and spam traps; ``sub_status_codes`` adds any other
    codes (e.g. 602 blocklisted). Soft bounces and unknowns stay subscribed: they may recover.
    ``resubscribe``: lift an unsubscribe this provider made (the profile carries
    :data:`UNSUBSCRIBED_REASON_PROPERTY`) once its current address is verified deliverable.
    """

    hard_bounce: bool = True
    disposable: bool = True
    spam_trap: bool = True
    sub_status_codes: frozenset[int] = frozenset()
    method: UnsubscribeMethod = UnsubscribeMethod.BOTH
    enabled: bool = True
    resubscribe: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sub_status_codes) - set(SUB_STATUSES))
        if unknown:
            raise ValueError(f"Unknown sub-status codes {unknown}: choose from {sorted(SUB_STATUSES)}")
        try:
            object.__setattr__(self, "method", UnsubscribeMethod(self.method))
        except ValueError:
            raise ValueError(
                f"Unknown unsubscribe method {self.method!r}: "
                f"choose one of {[m.value for m in UnsubscribeMethod]}"
            ) from None
        object.__setattr__(self, "sub_status_codes", frozenset(int(c) for c in self.sub_status_codes))

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> UnsubscribePolicy:
        """From a DAG param dict with any of the field names; unknown keys are refused with the choices."""
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"Unknown unsubscribe policy settings {unknown}: choose from {sorted(known)}")
        if "sub_status_codes" in params:
            params["sub_status_codes"] = frozenset(int(c) for c in params["sub_status_codes"] or ())
        return cls(**params)

    @property
    def via_profile(self) -> bool:
        """Whether unsubscribing sets ``MSG-email: false`` on the profile."""
        return self.method in (UnsubscribeMethod.PROFILE, UnsubscribeMethod.BOTH)

    @property
    def via_subscribe_api(self) -> bool:
        """Whether unsubscribing calls the Subscribe API for the address."""
        return self.method in (UnsubscribeMethod.SUBSCRIBE_API, UnsubscribeMethod.BOTH)

    def reason(self, row: Mapping[str, Any]) -> str | None:
        """Why this result row is unsubscribed ("hard_bounce:406", "spam_trap:401", "sub_status:602",
        "disposable"), or None to keep it subscribed."""
        if not self.enabled:
            return None
        raw_code = row.get("clearout_sub_status_code")
        code = None if raw_code is None or _is_missing(raw_code) else int(raw_code)
        bounce = row.get("clearout_bounce_type")
        if self.hard_bounce and not _is_missing(bounce) and str(bounce).strip().lower() == Bounce.HARD.value:
            return f"hard_bounce:{code}" if code is not None else "hard_bounce"
        if self.spam_trap and code == 401:
            return "spam_trap:401"
        if code in self.sub_status_codes:
            return f"sub_status:{code}"
        if self.disposable and _clevertap_value("clearout_disposable", row.get("clearout_disposable")):
            return "disposable"
        return None

    def lifts(self, row: Mapping[str, Any]) -> bool:
        """Whether this verdict lifts an earlier unsubscribe of ours: deliverable, nothing to unsubscribe."""
        return (
            self.enabled
            and self.resubscribe
            and row.get("clearout_status") == Status.VALID.value
            and self.reason(row) is None
        )
