"""What the shipped DAGs share, so they read and behave the same: params, schedules and task defaults.

A profile should carry the same set of "Clearout ..." properties whichever DAG verified it last (the
nightly run reads back what the backfill wrote): one definition keeps the defaults from drifting apart.
Every param carries a JSON schema, so a typo in the unsubscribe policy, an unknown column or an instant
threshold above Clearout's instant limit is refused when the run is triggered, before any credit is
spent. Every param has a ``title`` (the label of the trigger form) and a ``description_md`` (rendered as
Markdown under it; the form shows a plain ``description`` instead when one is set, so none is).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param
from airflow.sdk.configuration import conf

from clearout_provider.clearout.statuses import SUB_STATUSES
from clearout_provider.clevertap.mapping import COLUMN_NAMES, PROPERTY_NAMES_FILE, RECOMMENDED_APPEND
from clearout_provider.include_files import include_folder
from clearout_provider.notifications.failure import ClearoutFailureNotifier
from clearout_provider.verification.policy import UnsubscribeMethod
from clearout_provider.verification.verifier import VERIFIERS

#: CQL selecting every profile with an email (CleverTap answers for those active in the last 365 days).
EVERY_PROFILE_WITH_AN_EMAIL = {
    "common_profile_properties": {"profile_fields": [{"name": "Email", "operator": "exists"}]}
}

#: A column may be named by its result column or its default property name (PropertyMapping.from_params).
_COLUMN_NAMES = list(COLUMN_NAMES)


#: Labels of the verifiers in the trigger form's drop-down.
_VERIFIER_LABELS = {"clearout": "Clearout", "mailso": "Mail.so"}


def schedule_timezone() -> str:
    """``[clearout] schedule_timezone`` (default UTC): the zone the shipped DAGs' crons are read in.

    A nightly "0 2 * * *" then runs at 02:00 in that zone, also across daylight-saving changes (pendulum
    zones, as Airflow uses). An unknown zone fails the DAG import with pendulum's message.
    """
    name = conf.get("clearout", "schedule_timezone", fallback="UTC").strip() or "UTC"
    pendulum.timezone(name)  # raises for an unknown zone, at parse time
    return name


def start_date(year: int, month: int, day: int) -> pendulum.DateTime:
    """A timezone-aware ``start_date`` in :func:`schedule_timezone`; a cron string schedule follows it."""
    return pendulum.datetime(year, month, day, tz=schedule_timezone())


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
        values_display=_VERIFIER_LABELS,
        title="Verifier",
        description_md="Who verifies the addresses: **Clearout** (bulk lists or instant calls; writes the "
        "*Clearout ...* properties) or **Mail.so** (validate calls, or batches for larger inputs; writes "
        "*Mailso ...* properties such as *Mailso Result*). Keep one verifier per DAG: each verifier's "
        "properties and verdict ledger are its own.",
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
            description_md="Properties to append to each profile (Clearout's recommendation: *Safe To "
            "Send* + *Verification Status*; under Mail.so the same columns write *Mailso Safe To Send* and "
            "*Mailso Result*); keep the same set in every DAG that writes them. The verified address and "
            "date are always written.",
        ),
        "renames": Param(
            {},
            type="object",
            propertyNames={"enum": _COLUMN_NAMES},
            additionalProperties={"type": "string", "minLength": 1},
            title="Property renames",
            description_md="Optional new names for appended properties, for this run: "
            '`{"Clearout Safe To Send": "Email Safe"}` (a column or default name → the new name). '
            f"Deployment-wide renames belong in `include/{PROPERTY_NAMES_FILE}`; these apply on top.",
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
            description_md=(
                "Which outcomes unsubscribe, and how: `method` is `profile` (MSG-email false), "
                "`subscribe_api`, or `both`; `sub_status_codes` adds codes such as 602 (blocklisted); "
                "`enabled: false` never unsubscribes. `resubscribe` lifts an unsubscribe **this provider** "
                "made (the profile carries *Clearout Unsubscribed Reason*) once the profile's current "
                "address verifies valid; a profile switched off without that marker (the person opted out) "
                "is never resubscribed."
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
            description_md="Spend nothing and write nothing: the report says what would be verified, what "
            "it may cost (after the verdict ledger, dedupe and syntax checks) and what would change.",
        ),
        "write_back": Param(
            True,
            type="boolean",
            title="Write back to CleverTap",
            description_md=(
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
            description_md="The run fails (after writing its report) when CleverTap rejects a larger share "
            "of the rows than this (0.01 = 1 %).",
        ),
    }


#: include/segments/: one CQL query per ``<name>.json`` file, offered under the DAGs' segment params.
SEGMENTS_FOLDER = "segments"


def segment_examples() -> dict[str, dict[str, Any]]:
    """The CQL examples of ``include/segments/*.json`` by file stem ({} without the folder).

    Read when a DAG file is parsed (a few small files); a file that is not a JSON object is left out
    rather than breaking every DAG that offers the examples.
    """
    folder = include_folder() / SEGMENTS_FOLDER
    examples: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            query = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(query, dict):
            examples[path.stem] = query
    return examples


def segment_param(default: dict[str, Any], *, title: str, description_md: str) -> Param:
    """A CleverTap CQL ``segment`` param (the POST /1/profiles.json body), its description followed by the
    deployment's examples (:func:`segment_examples`) to copy into the form."""
    examples = segment_examples()
    listed = "".join(
        f"\n* **{name.replace('_', ' ')}**: `{json.dumps(query, separators=(',', ':'))}`"
        for name, query in examples.items()
    )
    more = f"\n\nExamples (from `include/{SEGMENTS_FOLDER}/`):{listed}" if examples else ""
    schema: dict[str, Any] = {"type": "object", "title": title, "description_md": description_md + more}
    if examples:
        schema["examples"] = list(examples.values())
    return Param(default, schema=schema)


def selection_params() -> dict[str, Param]:
    """``selection``, ``full_sweep_days``, ``email_change_event`` and ``partition_by``: what the extract
    asks CleverTap for (:mod:`clearout_provider.clevertap.selection`)."""
    return {
        "selection": Param(
            "auto",
            type="string",
            enum=["auto", "delta", "full"],
            title="CleverTap selection",
            description_md="*auto*: only the profiles that can be due (never verified, or past the due "
            'date "Clearout Reverify After" the load writes; selected by CleverTap), with a full sweep '
            "of the segment every *Full sweep every* days. *delta*: never the sweep. *full*: the whole "
            "segment tonight (also finds addresses changed without a signal: an app that changes an "
            'email should delete "Clearout Verified At" in the same upload, or raise the event named in '
            "*Email-change event*).",
        ),
        "full_sweep_days": Param(
            7,
            type="number",
            minimum=0,
            title="Full sweep every (days)",
            description_md="How often *auto* exports the whole segment instead of the delta. Counted from "
            "the last successful sweep, so a failed one is tried again the next night.",
        ),
        "email_change_event": Param(
            None,
            type=["null", "string"],
            title="Email-change event",
            description_md="A CleverTap event your app raises when a user changes their email (e.g. "
            "*Email Changed*): the delta then also selects the profiles that raised it since the last "
            "successful night, so a changed address is verified the next night, not at the next sweep.",
        ),
        "partition_by": Param(
            None,
            type=["null", "object"],
            title="Export in parallel by",
            description_md="Split the export into date ranges of a profile date property, paged side by "
            'side within CleverTap\'s concurrency limit, e.g. `{"property": "Signup Date", "since": '
            '"2020-01-01", "parts": 4}`. Empty: one cursor per selected part.',
        ),
    }
