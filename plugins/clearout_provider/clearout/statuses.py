"""Clearout's verdict taxonomy: statuses, sub-status codes, the bulk file's columns, and the neutral verdict.

This module is the ONE place that knows what a Clearout status or sub-status means: the sandbox draws
its answers from it, the result readers turn the bulk file's reason text back into codes with it, and
:data:`VERDICT_OF_STATUS` / :data:`SPAM_TRAP_CODE` map Clearout's answer into the vendor-neutral model
(:mod:`clearout_provider.verification.model`). Pure data and pure functions; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clearout_provider.verification.model import Bounce, JobState, Verdict


class Status(StrEnum):
    """Primary verification status as the instant API spells it."""

    VALID = "valid"
    INVALID = "invalid"
    CATCH_ALL = "catch_all"
    UNKNOWN = "unknown"


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


#: Clearout's status → the neutral verdict (catch-all is "risky": Clearout itself says do not send).
VERDICT_OF_STATUS: dict[Status, Verdict] = {
    Status.VALID: Verdict.DELIVERABLE,
    Status.INVALID: Verdict.UNDELIVERABLE,
    Status.CATCH_ALL: Verdict.RISKY,
    Status.UNKNOWN: Verdict.UNKNOWN,
}

#: The sub-status of a spam trap / honeypot (the neutral ``spam_trap`` flag).
SPAM_TRAP_CODE = 401
#: The sub-status Clearout gives the addresses of a cancelled list (no verdict: they stay due).
CANCELLED_CODE = 605
#: The sub-status of a syntax error: what the local syntax pre-check decides without sending.
SYNTAX_ERROR_CODE = 400

#: What the local syntax pre-check writes for Clearout runs: Clearout's own answer to a syntax error.
SYNTAX_VERDICT: dict[str, object] = {
    "verdict": Verdict.UNDELIVERABLE.value,
    "verdict_reason": SUB_STATUSES[SYNTAX_ERROR_CODE].desc,
    "safe_to_send": False,
    "bounce": SUB_STATUSES[SYNTAX_ERROR_CODE].bounce.value,
    "clearout_status": SUB_STATUSES[SYNTAX_ERROR_CODE].status.value,
    "clearout_sub_status_code": SYNTAX_ERROR_CODE,
}


# Clearout documents "running" and "completed"; a cancelled list reports "cancelled". Other spellings are
# not documented: the obvious failure words are failures, the obvious working words keep polling, and any
# other word is UNRECOGNISED (polled a bounded number of times, see the trigger).
_PROGRESS_WORDS: dict[JobState, tuple[str, ...]] = {
    JobState.COMPLETED: ("completed", "complete"),
    JobState.CANCELLED: ("cancelled", "canceled"),
    JobState.FAILED: ("failed", "failure", "error", "aborted"),
    JobState.RUNNING: ("running", "queued", "pending", "processing", "in_progress", "in progress",
                       "verifying", "uploaded", "new", "cancelling", "canceling"),
}  # fmt: skip
#: A bulk list's ``progress_status`` (lower case) → the neutral job state.
PROGRESS_STATES: dict[str, JobState] = {
    word: state for state, words in _PROGRESS_WORDS.items() for word in words
}


def job_state(progress_status: str) -> JobState:
    """The neutral state of a bulk list's ``progress_status`` (UNRECOGNISED for an undocumented word)."""
    return PROGRESS_STATES.get(progress_status.strip().lower(), JobState.UNRECOGNISED)
