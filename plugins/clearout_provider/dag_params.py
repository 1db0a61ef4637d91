"""Params the shipped list-cleaning DAGs share, so the write-back choices read and behave the same in each.

A profile should carry the same set of "Clearout ..." properties whichever DAG verified it last (the
nightly run reads back what the backfill wrote): one definition keeps the defaults from drifting apart.
"""

from __future__ import annotations

from airflow.sdk import Param

from clearout_provider.verdicts import RECOMMENDED_APPEND

#: CQL selecting every profile with an email (CleverTap answers for those active in the last 365 days).
EVERY_PROFILE_WITH_AN_EMAIL = {
    "common_profile_properties": {"profile_fields": [{"name": "Email", "operator": "exists"}]}
}


def write_back_params() -> dict[str, Param]:
    """``append_columns``, ``renames`` and ``unsubscribe``: how verdicts land on CleverTap profiles."""
    return {
        "append_columns": Param(
            list(RECOMMENDED_APPEND),
            type="array",
            description="Clearout properties to append to each profile (Clearout's recommendation: Safe To "
            "Send + Verification Status); keep the same set in every DAG that writes them. The verified "
            "address and date are always written.",
        ),
        "renames": Param({}, type="object", description="Optional new names for appended properties."),
        "unsubscribe": Param(
            {"hard_bounce": True, "disposable": True, "spam_trap": True, "method": "both"},
            type="object",
            description="Which outcomes unsubscribe, and how: `profile` (MSG-email false), "
            "`subscribe_api`, or `both`. Set `enabled` to false to never unsubscribe.",
        ),
    }
