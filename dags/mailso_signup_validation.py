"""
### Sign-up validation: seed 004 (Mail.so x CleverTap), as a pipeline

CleverTap's Linked Content asks Mail.so about an address while a campaign runs. This DAG does the same
work a few minutes (or, event-driven, a few seconds) after the sign-up, and leaves the answer on the
profile, where every later campaign can branch on it without calling Mail.so again:

1. **window** takes the DAG's watermark (the start of its last successful run, minus `overlap_minutes`;
   `first_lookback_hours` before the first run) and builds the CQL query: profiles with an email whose
   `signup_property` (a date property your app sets when a user submits or changes their email, e.g.
   "Signup Date") is at or after it.
2. **extract_signups** exports those profiles and keeps the ones Mail.so has not answered for their
   current address (no "Mailso Verified Email", or another one: the email changed).
3. **validate** asks Mail.so (one validate call each; batches above 100), the verdict ledger first: a
   user who signs up twice with one address, or two profiles sharing one, cost one validation.
4. **write_back** writes "Mailso Result" (deliverable / risky / undeliverable / unknown), "Mailso Reason",
   "Mailso Safe To Send", "Mailso Suggested Email" and **"Mailso Prompt Email Fix"** (true unless the
   result is deliverable) with the verified address and date. Nobody is unsubscribed by default:
   sign-ups are asked to fix their address instead (`unsubscribe`).
5. **report** writes the run report and checks that every profile is accounted for; **advance** then
   moves the watermark to this run's start. A failed run never advances it, so the next run asks again
   from the same point and no sign-up is skipped.
6. **announce_changes** updates the `clevertap_validated_signups` asset
   (`clevertap://clevertap_default/validated_signups`) when the write-back changed a profile; it is
   skipped (no asset event) on a dry run or a run without new sign-ups, so a DAG scheduled on the asset
   is not woken every 5 minutes for nothing.

The campaign (seed 004's Liquid, reading the property instead of a Linked Content call):

```liquid
{% if Profile["Mailso Result"] == "deliverable" %}
Email verified successfully.
{% else %}
Invalid email address provided. Please enter a valid email.
{% endif %}
```
or target the segment "Mailso Prompt Email Fix is true" with the in-app "please correct your email".

#### Every few minutes, or within seconds of the event
By default the DAG runs every 5 minutes (`[clearout] signup_schedule`, a cron read in
`[clearout] schedule_timezone`, default UTC). Set
`[clearout] signup_events_channel` to a Redis pub/sub channel (and install the `events` extra, with a
`redis_default` connection) and it ALSO runs as soon as a message arrives there: the app publishes
`{"identity": "..."}` when a user signs up. A message only wakes the DAG; what is validated is decided by
the watermark query, so a lost message (Redis pub/sub keeps nothing; the watcher takes one message per
cycle) delays that sign-up to the next scheduled run and never skips it. Connections:
`clevertap_default`, `mailso_default` (API key in the password field).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task
from airflow.sdk.configuration import conf

from clearout_provider.dag_params import (
    run_mode_params,
    schedule_timezone,
    start_date,
    task_defaults,
    write_back_params,
)
from clearout_provider.operators.clevertap import (
    CleverTapExtractProfilesOperator,
    CleverTapLoadVerificationOperator,
)
from clearout_provider.operators.instant_verify import ClearoutInstantVerifyOperator
from clearout_provider.profile_assets import VALIDATED_SIGNUPS, announce_changes

DAG_ID = "mailso_signup_validation"
#: What the write-back appends by default (the verified address and date are always written).
SIGNUP_PROPERTIES = [
    "Mailso Result",
    "Mailso Reason",
    "Mailso Safe To Send",
    "Mailso Suggested Email",
    "Mailso Prompt Email Fix",
]


def signup_schedule() -> CronTriggerTimetable | AssetOrTimeSchedule:
    """The cron of ``[clearout] signup_schedule``, or that cron OR a sign-up message when
    ``[clearout] signup_events_channel`` names a Redis channel."""
    cron = CronTriggerTimetable(
        conf.get("clearout", "signup_schedule", fallback="*/5 * * * *"), timezone=schedule_timezone()
    )
    channel = conf.get("clearout", "signup_events_channel", fallback="")
    if not channel:
        return cron
    from clearout_provider.signup_events import signup_asset

    return AssetOrTimeSchedule(timetable=cron, assets=[signup_asset(channel)])


@dag(
    dag_id=DAG_ID,
    schedule=signup_schedule(),
    start_date=start_date(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(),
    doc_md=__doc__,
    tags=["mailso", "clevertap", "sign-up"],
    render_template_as_native_obj=True,
    params={
        "signup_property": Param(
            "Signup Date",
            type="string",
            minLength=1,
            title="Sign-up date property",
            description_md="The CleverTap date property your app sets when a user submits (or changes) their "
            "email; profiles where it is at or after the watermark are validated.",
        ),
        "first_lookback_hours": Param(
            24,
            type="number",
            minimum=0,
            title="First run looks back (hours)",
            description_md="How far back the very first run (no watermark yet) looks for sign-ups.",
        ),
        "overlap_minutes": Param(
            10,
            type="number",
            minimum=0,
            title="Overlap (minutes)",
            description_md="Each run also looks this far before the watermark (late property writes, clock "
            "skew); profiles already validated for their current address cost nothing.",
        ),
        **write_back_params(append=SIGNUP_PROPERTIES, unsubscribe=False),
        **run_mode_params(),
    },
)
def mailso_signup_validation() -> None:
    mapping = {
        "columns": "{{ params.append_columns }}",
        "renames": "{{ params.renames }}",
        "verifier": "mailso",
    }

    @task
    def window(triggering_asset_events: Any = None) -> dict[str, Any]:
        """The watermark query; the sign-ups that woke this run (if any) are logged, masked."""
        from clearout_provider.watermark import Watermark

        params = get_current_context()["params"]
        started = datetime.now(UTC)
        mark = Watermark(DAG_ID).read()
        since = (
            mark - timedelta(minutes=float(params["overlap_minutes"]))
            if mark
            else started - timedelta(hours=float(params["first_lookback_hours"]))
        )
        woken = 0
        if triggering_asset_events:
            from clearout_provider.signup_events import extract_signups

            batch = extract_signups(triggering_asset_events)
            woken = len(batch.signups)
            print(f"Woken by {woken} sign-up message(s): {[s.identity for s in batch.signups]}")
        fields = [
            {"name": "Email", "operator": "exists"},
            {
                "name": params["signup_property"],
                "operator": "greater_than_equals",
                "value": f"$D_{int(since.timestamp())}",
            },
        ]
        return {
            "since": since.isoformat(),
            "started": started.isoformat(),
            "woken_by": woken,
            "query": {"common_profile_properties": {"profile_fields": fields}},
        }

    span = window()
    extract = CleverTapExtractProfilesOperator(
        task_id="extract_signups", query=span["query"], mapping=mapping, freshness=None
    )
    validate = ClearoutInstantVerifyOperator(
        task_id="validate",
        verifier="mailso",
        source="{{ ti.xcom_pull(task_ids='extract_signups')['path'] }}",
        dry_run="{{ params.dry_run }}",
    )
    write_back = CleverTapLoadVerificationOperator(
        task_id="write_back",
        result_path="{{ ti.xcom_pull(task_ids='validate')['result_path'] }}",
        mapping=mapping,
        unsubscribe="{{ params.unsubscribe }}",
        dry_run="{{ params.dry_run or not params.write_back }}",
    )

    @task
    def report(
        extracted: dict[str, Any], validated: dict[str, Any], loaded: dict[str, Any]
    ) -> dict[str, Any]:
        """The run report (and the accounting check: every profile extracted is accounted for)."""
        from clearout_provider.report import finish_run

        _, files = finish_run(get_current_context(), extracted, validated, loaded, mode="instant")
        return {"report_markdown": files.markdown, "summary": files.summary}

    @task
    def advance(span: dict[str, Any]) -> str | None:
        """Move the watermark to this run's start: the last step, so a failed run never skips anyone.
        A dry run leaves it (it wrote nothing)."""
        from clearout_provider.watermark import Watermark

        if get_current_context()["params"]["dry_run"]:
            return None
        Watermark(DAG_ID).advance(datetime.fromisoformat(span["started"]))
        return span["started"]

    extract >> validate >> write_back
    reported = report(extract.output, validate.output, write_back.output)
    reported >> advance(span)
    announce_changes.override(outlets=[VALIDATED_SIGNUPS])(write_back.output, reported)


mailso_signup_validation()
