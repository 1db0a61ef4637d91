"""What the Mail.so sandbox answers for an address: the Clearout sandbox's verdict, in Mail.so's words.

Both emulators must agree about an address (a pipeline that switches verifier, or compares them, must
not see an address flip from valid to invalid because the emulators disagree), so nothing is decided
here that :func:`clearout_provider.sandbox.clearout_verdicts.verdict_for` already decides: its sub-status
code picks one row of :data:`OUTCOMES` (``result``, ``reason`` and the ``isv_*`` checks that failed), and
its flags give ``is_disposable``, ``is_free``, ``isv_nogeneric`` (role) and ``did_you_mean`` (typo). Codes
without a row are ``unknown``. ``score`` follows the result, spread by the address's stable hash.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from clearout_provider.sandbox.clearout_verdicts import address_hash, verdict_for


@dataclass(frozen=True)
class Outcome:
    """Mail.so's ``result`` and ``reason`` for a Clearout sub-status, and the checks it fails."""

    result: str
    reason: str
    failed: Mapping[str, bool | None] = field(default_factory=lambda: MappingProxyType({}))
    """``isv_*`` checks that are not true for this outcome (False = failed, None = not made)."""


def _o(result: str, reason: str, **failed: bool | None) -> Outcome:
    return Outcome(result, reason, MappingProxyType(failed))


_DELIVERABLE = _o("deliverable", "accepted_email")
_BAD_FORMAT = _o("undeliverable", "invalid_format", isv_format=False, isv_domain=False, isv_mx=None)
_BAD_DOMAIN = _o("undeliverable", "invalid_domain", isv_domain=False, isv_mx=False)
_REJECTED = _o("undeliverable", "rejected_email")
_BLOCKED = _o("undeliverable", "rejected_email", isv_noblock=False)
_LOW = _o("risky", "low_deliverability")

#: THE table: Clearout sandbox sub-status code → Mail.so outcome (anything else: :data:`UNKNOWN`).
OUTCOMES: Mapping[int, Outcome] = MappingProxyType(
    {
        200: _DELIVERABLE, 601: _DELIVERABLE, 603: _DELIVERABLE,
        411: _o("risky", "catch_all", isv_nocatchall=False),
        400: _BAD_FORMAT, 606: _BAD_FORMAT,
        403: _BAD_DOMAIN, 404: _BAD_DOMAIN,
        406: _REJECTED, 416: _REJECTED, 701: _REJECTED, 401: _REJECTED,
        602: _BLOCKED, 604: _BLOCKED,
        413: _LOW, 419: _LOW, 421: _LOW, 428: _LOW,
    }
)  # fmt: skip
UNKNOWN = _o("unknown", "unknown")
#: (lowest, highest) score of each result.
_SCORES = {"deliverable": (90, 100), "risky": (40, 70), "unknown": (30, 50), "undeliverable": (0, 20)}


def outcome_for(code: int) -> Outcome:
    return OUTCOMES.get(code, UNKNOWN)


def validation_for(email: str, validation_id: str | None = None) -> dict[str, Any]:
    """The ``data`` object of ``GET /validate`` (and of each entry of a batch) for ``email``.

    ``validation_id`` names the validation (batches give stable ids per entry); a fresh UUID otherwise.
    """
    verdict = verdict_for(email)
    outcome = outcome_for(verdict.sub.code)
    low, high = _SCORES[outcome.result]
    checks: dict[str, bool | None] = {
        "isv_format": True,
        "isv_domain": True,
        "isv_mx": True,
        "isv_noblock": True,
        "isv_nocatchall": True,
        "isv_nogeneric": not verdict.role,
        **outcome.failed,
    }
    formatted = checks["isv_format"] is not False
    return {
        "id": validation_id or str(uuid.uuid4()),
        "email": email,
        "username": verdict.account or None if formatted else None,
        "domain": verdict.domain or None if formatted else None,
        "mx_record": verdict.mx_record or None,
        "provider": verdict.smtp_provider or None,
        "score": low + address_hash(email) % (high - low + 1),
        **checks,
        "is_disposable": verdict.disposable,
        "is_free": verdict.free,
        "result": outcome.result,
        "reason": outcome.reason,
        "did_you_mean": verdict.suggested or None,
    }
