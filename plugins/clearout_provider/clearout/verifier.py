"""ClearoutVerifier: Clearout's instant API behind the neutral :class:`~clearout_provider.verification.
verifier.InstantVerifier` interface (one address in, one verdict row out)."""

from __future__ import annotations

from typing import Any

from clearout_provider.clearout.models import VerifyResult
from clearout_provider.exceptions import CLEAROUT_ITEM_FAILURES
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.verification.verifier import SPECS


def verdict_data(result: VerifyResult) -> dict[str, Any]:
    """A typed instant answer back in the API's ``data`` shape, which ``normalise_instant_result`` reads."""
    yes_no = {True: "yes", False: "no"}
    return {
        "email_address": result.email_address,
        "status": result.status.value,
        "sub_status": {"code": result.sub_status_code, "desc": result.sub_status_desc},
        "safe_to_send": result.safe_to_send,
        "bounce_type": result.bounce_type.value,
        "disposable": yes_no[result.disposable],
        "free": yes_no[result.free],
        "role": yes_no[result.role],
        "gibberish": yes_no[result.gibberish],
        "suggested_email_address": result.suggested_email or "",
        "verified_on": result.verified_on.isoformat() if result.verified_on else None,
    }


class ClearoutVerifier:
    """Instant verification through one :class:`ClearoutHook` (its rate limiter paces every thread).

    :param conn_id: a ``clearout`` connection (``clearout_default`` when None).
    :param timeout_ms: how long Clearout may work on one address (Clearout's default when None).
    """

    spec = SPECS["clearout"]
    item_failures = CLEAROUT_ITEM_FAILURES

    def __init__(self, conn_id: str | None = None, *, timeout_ms: int | None = None) -> None:
        self.hook = ClearoutHook(conn_id or ClearoutHook.default_conn_name)
        self.timeout_ms = timeout_ms

    def verify_one(self, email: str) -> dict[str, Any]:
        from clearout_provider.results import normalise_instant_result  # pyarrow: only when a task runs

        row = normalise_instant_result(
            verdict_data(self.hook.verify_email(email, timeout_ms=self.timeout_ms))
        )
        row.pop("normalised_email", None)
        return row

    def balance(self) -> int | None:
        return self.hook.get_credits().available

    def close(self) -> None:
        self.hook.close()
