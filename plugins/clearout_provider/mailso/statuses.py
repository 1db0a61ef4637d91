"""Mail.so's answer in the neutral verdict model: the ONE table of what Mail.so's words mean here.

Mail.so answers with a ``result`` that already is a neutral verdict (deliverable / undeliverable / risky
/ unknown), an open-ended ``reason`` and positive checks (``isv_*``: ``false`` means the problem is
present). :func:`verdict_row` turns one answer (the API's ``data`` object, or a batch's email object)
into result columns; the bounce class comes from the reason, since Mail.so has no bounce field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clearout_provider.verification.model import RESULT_COLUMNS, SAFE_TO_SEND, Bounce, DecidedBy, Verdict

#: Mail.so's reason → bounce class (reasons not listed are not bounces; the text is kept as
#: ``verdict_reason``).
BOUNCE_OF_REASON: dict[str, Bounce] = {
    "invalid_format": Bounce.HARD,
    "invalid_domain": Bounce.HARD,
    "invalid_smtp": Bounce.HARD,
    "rejected_email": Bounce.HARD,
    "low_deliverability": Bounce.SOFT,
}

#: The ``isv_*`` checks kept as Mail.so's own detail columns (``mailso_isv_*``).
CHECKS: tuple[str, ...] = (
    "isv_format",
    "isv_domain",
    "isv_mx",
    "isv_noblock",
    "isv_nocatchall",
    "isv_nogeneric",
)

#: What the local syntax pre-check writes for Mail.so runs: Mail.so's own answer to a malformed address.
SYNTAX_VERDICT: dict[str, Any] = {
    "verdict": Verdict.UNDELIVERABLE.value,
    "verdict_reason": "invalid_format",
    "safe_to_send": False,
    "bounce": Bounce.HARD.value,
    "mailso_isv_format": False,
}


def _verdict(result: Any) -> Verdict:
    try:
        return Verdict(str(result or "").strip().lower())
    except ValueError:
        return Verdict.UNKNOWN


def _negated(check: Any) -> bool | None:
    """A positive check as the problem flag it stands for (``isv_nogeneric: false`` = role address)."""
    return None if check is None else not bool(check)


def _text(value: Any) -> str | None:
    return (str(value).strip() or None) if value is not None else None


def verdict_row(
    data: Mapping[str, Any], *, decided_by: DecidedBy, verified_at: datetime | None = None
) -> dict[str, Any]:
    """One Mail.so answer as a row of every result column (without ``normalised_email``).

    Mail.so sends no verification time: ``verified_at`` (default now) is when the answer arrived.
    """
    verdict = _verdict(data.get("result"))
    reason = _text(data.get("reason"))
    score = data.get("score")
    row = {
        "verified_email": _text(data.get("email")),
        "verifier": "mailso",
        "verdict": verdict.value,
        "verdict_reason": reason,
        "safe_to_send": SAFE_TO_SEND[verdict],
        "bounce": BOUNCE_OF_REASON.get(reason or "", Bounce.NONE).value,
        "is_disposable": data.get("is_disposable"),
        "is_free": data.get("is_free"),
        "is_role": _negated(data.get("isv_nogeneric")),
        "is_catch_all": _negated(data.get("isv_nocatchall")),
        "verdict_score": None if score is None else int(score),
        "suggested_email": _text(data.get("did_you_mean")),
        "verified_at": verified_at or datetime.now(UTC),
        **{f"mailso_{check}": data.get(check) for check in CHECKS},
        "mailso_provider": _text(data.get("provider")),
        "mailso_mx_record": _text(data.get("mx_record")),
        "decided_by": decided_by.value,
    }
    return {name: row.get(name) for name in RESULT_COLUMNS}  # every column, the others' detail empty
