"""Who gets unsubscribed: the ONE policy, on the neutral verdict (any verifier's answer).

The Clearout x CleverTap integration's "Unsubscribe" export, as a policy object the DAGs configure:
hard bounces, disposable addresses and spam traps by default; soft bounces and unknowns stay subscribed
(they may recover). Clearout users may add sub-status codes (e.g. 602 blocklisted): those read
Clearout's own code column and match nothing on another verifier's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from clearout_provider.clearout.statuses import SUB_STATUSES
from clearout_provider.clevertap.mapping import clevertap_value, is_missing
from clearout_provider.verification.model import Bounce, Verdict


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
    Clearout codes (e.g. 602 blocklisted). Soft bounces and unknowns stay subscribed: they may recover.
    ``resubscribe``: lift an unsubscribe this provider made (the profile carries
    :data:`~clearout_provider.clevertap.mapping.UNSUBSCRIBED_REASON_PROPERTY`) once its current address
    is verified deliverable.
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
        "disposable"; a verifier without codes names its reason: "hard_bounce:invalid_domain"), or None
        to keep it subscribed."""
        if not self.enabled:
            return None
        raw_code = row.get("clearout_sub_status_code")
        code = None if raw_code is None or is_missing(raw_code) else int(raw_code)
        detail = code if code is not None else clevertap_value("verdict_reason", row.get("verdict_reason"))
        bounce = row.get("bounce")
        if self.hard_bounce and not is_missing(bounce) and str(bounce).strip().lower() == Bounce.HARD.value:
            return f"hard_bounce:{detail}" if detail is not None else "hard_bounce"
        if self.spam_trap and clevertap_value("is_spam_trap", row.get("is_spam_trap")):
            return f"spam_trap:{code}" if code is not None else "spam_trap"
        if code in self.sub_status_codes:
            return f"sub_status:{code}"
        if self.disposable and clevertap_value("is_disposable", row.get("is_disposable")):
            return "disposable"
        return None

    def lifts(self, row: Mapping[str, Any]) -> bool:
        """Whether this verdict lifts an earlier unsubscribe of ours: deliverable, nothing to unsubscribe."""
        return (
            self.enabled
            and self.resubscribe
            and row.get("verdict") == Verdict.DELIVERABLE.value
            and self.reason(row) is None
        )
