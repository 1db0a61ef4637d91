"""What the shipped list-cleaning DAGs share, so they read and behave the same: params and task defaults.

A profile should carry the same set of "Clearout ..." properties whichever DAG verified it last (the
nightly run reads back what the backfill wrote): one definition keeps the defaults from drifting apart.
Every param carries a JSON schema, so a typo in the unsubscribe policy, an unknown column or an instant
threshold above Clearout's instant limit is refused when the run is triggered, before any credit is
spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Param
from airflow.sdk.configuration import conf

from clearout_provider.clearout.statuses import SUB_STATUSES
from clearout_provider.clevertap.mapping import COLUMN_NAMES, RECOMMENDED_APPEND
from clearout_provider.notifications.failure import ClearoutFailureNotifier
from clearout_provider.verification.policy import UnsubscribeMethod
from clearout_provider.verification.verifier import VERIFIERS

#: CQL selecting every profile with an email (CleverTap answers for those active in the last 365 days).
EVERY_PROFILE_WITH_AN_EMAIL = {
    "common_profile_properties": {"profile_fields": [{"name": "Email", "operator": "exists"}]}
}

#: A column may be named by its result column or its default property name (PropertyMapping.from_params).
_COLUMN_NAMES = list(COLUMN_NAMES)


def task_defaults() -> dict[str, Any]:
    """``default_args`` of the shipped DAGs: retries with exponential backoff, and a failure notifier.

    A transport failure (Clearout or CleverTap down after the hooks' own retries) fails the task; a retry
    costs nothing, because every verdict already paid for is in the verdict ledger and a bulk list is
    resumed. ``[clearout] task_retries`` (default 2) and ``[clearout] task_retry_delay`` (seconds, default
    60) tune it per deployment. A task that fails for good is logged by
    :class:`~clearout_provider.notifications.failure.ClearoutFailureNotifier`, and posted to the
    ``clearout_alerts`` webhook connection when one exists.
    """
    return {
        "on_failure_callback": ClearoutFailureNotifier(),
        "retries": conf.getint("clearout", "task_retries", fallback=2),
        "retry_delay": timedelta(seconds=conf.getfloat("clearout", "task_retry_delay", fallback=60.0)),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    }


def verifier_param() -> Param:
    """``verifier``: who verifies (Clearout by default; Mail.so writes "Mailso ..." properties)."""
    return Param(
        "clearout",
        type="string",
        enum=list(VERIFIERS),
        title="Verifier",
        description="Who verifies the addresses: `clearout` (bulk lists or instant calls; writes the "
        "'Clearout ...' properties) or `mailso` (Mail.so validate calls, or batches for larger inputs; "
        "writes 'Mailso ...' properties such as 'Mailso Result'). Keep one verifier per DAG: each "
        "verifier's properties and verdict ledger are its own.",
    )


def write_back_params(
    *, append: Sequence[str] = RECOMMENDED_APPEND, unsubscribe: bool = True
) -> dict[str, Param]:
    """``append_columns``, ``renames`` and ``unsubscribe``: how verdicts land on CleverTap profiles.

    ``append`` and ``unsubscribe`` are the defaults (Clearout's recommendation; unsubscribing on).
    """
    return {
        "append_columns": Param(
            list(append),
            type="array",
            items={"type": "string", "enum": _COLUMN_NAMES},
            uniqueItems=True,
            title="Properties to append",
            description="Properties to append to each profile (Clearout's recommendation: Safe To "
            "Send + Verification Status; under `mailso` the same columns write 'Mailso Safe To Send' and "
            "'Mailso Result'); keep the same set in every DAG that writes them. The verified address and "
            "date are always written.",
        ),
        "renames": Param(
            {},
            type="object",
            propertyNames={"enum": _COLUMN_NAMES},
            additionalProperties={"type": "string", "minLength": 1},
            title="Property renames",
            description="Optional new names for appended properties: {column or default name: new name}.",
        ),
        "unsubscribe": Param(
            {
                "hard_bounce": True,
                "disposable": True,
                "spam_trap": True,
                "method": "both",
                "resubscribe": True,
                **({} if unsubscribe else {"enabled": False}),
            },
            type="object",
            properties={
                "hard_bounce": {"type": "boolean"},
                "disposable": {"type": "boolean"},
                "spam_trap": {"type": "boolean"},
                "enabled": {"type": "boolean"},
                "resubscribe": {"type": "boolean"},
                "sub_status_codes": {
                    "type": "array",
                    "items": {"type": "integer", "enum": sorted(SUB_STATUSES)},
                },
                "method": {"type": "string", "enum": [m.value for m in UnsubscribeMethod]},
            },
            additionalProperties=False,
            title="Unsubscribe policy",
            description=(
                "Which outcomes unsubscribe, and how: `profile` (MSG-email false), `subscribe_api`, or "
                "`both`; `sub_status_codes` adds codes such as 602 (blocklisted); `enabled` false never "
                "unsubscribes. `resubscribe` lifts an unsubscribe THIS provider made (the profile carries "
                "'Clearout Unsubscribed Reason') once the profile's current address verifies valid; a "
                "profile switched off without that marker (the person opted out) is never resubscribed."
            ),
        ),
    }


def run_mode_params() -> dict[str, Param]:
    """``dry_run``, ``write_back`` and ``max_rejected_share``: what a run may spend and write."""
    return {
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Spend nothing and write nothing: the report says what would be verified, what it "
            "may cost (after the verdict ledger, dedupe and syntax checks) and what would change.",
        ),
        "write_back": Param(
            True,
            type="boolean",
            title="Write back to CleverTap",
            description=(
                "Off: verify (the verdicts are kept in the verdict ledger, so the next run pays 0 for "
                "them) but write nothing to CleverTap; the report shows what would change."
            ),
        ),
        "max_rejected_share": Param(
            0.01,
            type="number",
            minimum=0,
            maximum=1,
            title="Most rows CleverTap may reject",
            description="The run fails (after writing its report) when CleverTap rejects a larger share of "
            "the rows than this.",
        ),
    }
