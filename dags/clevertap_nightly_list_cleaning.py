"""
### Nightly list cleaning: CleverTap → Clearout → CleverTap

Every night, for one CleverTap segment:

1. **extract_delta** pulls the segment's profiles and keeps only those that need verifying: never
   verified, verified longer ago than the freshness TTL (`ttl_days`; `unknown` and `catch_all`
   verdicts after `uncertain_ttl_days`), or whose email changed since it was verified. The rest cost
   nothing tonight. On a normal night CleverTap itself selects those profiles (`selection` = auto:
   CQL on the verification date and the due date "Clearout Reverify After" the load writes, a few
   cursors paged side by side), so the export costs what changed, not the size of the base. When
   your app changes a profile's email, have it delete "Clearout Verified At" in the same upload
   (`{"$delete": 1}`; or raise an event named in `email_change_event`): the next night verifies it.
   Every `full_sweep_days` the whole segment is exported and checked, which also catches an address
   changed without either signal. The report says which selection ran.
2. **choose_mode** sends a small delta to Clearout's instant API (below `instant_threshold`
   addresses) and anything larger to bulk lists that wait in the triggerer, not on a worker.
   **split_for_bulk** cuts a large delta into files of at most 500,000 rows (Clearout's recommended
   list size), keeping every copy of an address in one file so it is paid for once.
3. **verify_instant** / **verify_bulk** (one mapped task per file, at most 3 lists at once: Clearout's
   limit) deduplicate and syntax-check the addresses first (those are decided locally and never
   billed), take what the **verdict ledger** already knows (every verdict ever paid for, still fresh:
   another profile's, an earlier failed run's, an earlier try's), then verify the rest. Every verdict
   goes into the ledger the moment it arrives, before anything is written to CleverTap.
4. **load_back** writes the chosen "Clearout ..." properties to each profile (only where a value
   changed) and unsubscribes undeliverable addresses according to the unsubscribe policy, marking
   them "Clearout Unsubscribed Reason" / "At". Records CleverTap rejects are listed per row with
   CleverTap's code and message, and are never unsubscribed. An address without a verdict (Clearout
   gave no answer) gets nothing written and stays due.
5. **report** writes `report.md` and `report.html` next to the run's files and fails the run if any
   contact is unaccounted for or CleverTap rejected more than `max_rejected_share` of the rows.
6. **announce_changes** updates the `clevertap_verified_profiles` asset
   (`clevertap://clevertap_default/verified`), which downstream DAGs can schedule on, with the run's
   counts and the report's path, only when the load changed a profile: it is skipped (no asset event)
   on a dry run or a night with nothing to write.

#### A bad night costs nothing extra
* Clearout or CleverTap unreachable: the task fails and Airflow retries it (`[clearout] task_retries`,
  exponential backoff). A retry, a cleared task or the next night pays nothing for what was already
  verified: the ledger has it. A cleared bulk task whose list was cancelled keeps what the list
  processed and uploads only the rest.
* `dry_run` = true spends nothing and writes nothing: the report says how many addresses would be sent
  and what they may cost. `write_back` = false verifies (into the ledger) without writing to CleverTap;
  the following real run pays 0 for those addresses.

#### Unsubscribes that can be lifted
The load only resubscribes a profile it unsubscribed itself: it carries "Clearout Unsubscribed
Reason". When that profile's current address later verifies valid, the marker is removed and
MSG-email set back to true (and the address resubscribed through the Subscribe API when the policy's
method includes it). A profile switched off without the marker (the person opted out) is never
resubscribed. Turn it off with `"resubscribe": false` in `unsubscribe`.

#### Mail.so instead of Clearout
`verifier` = `mailso` verifies with Mail.so: one validate call per address for a small delta, Mail.so
batches (each batch id checkpointed before waiting, so a retry collects it rather than paying again)
for more than 100. The load then writes "Mailso Result", "Mailso Safe To Send" (the properties the
chosen columns mean for Mail.so) and the verified address and date; the unsubscribe policy and the
report are the same. Connection `mailso_default` (API key in the password field).

A second run right after a successful one finds nothing to verify and spends no credit. Connections:
`clevertap_default` (Account ID, Passcode, Region) and `clearout_default` (API token). Bulk lists run
in the pool named by `[clearout] bulk_list_pool` when one is configured (the docker-compose stack
creates `clearout_bulk_lists`); without one, a run caps itself at 3 lists.

#### Schedule
02:00 every night in `[clearout] schedule_timezone` (default UTC; e.g. `Europe/Berlin` runs it at 02:00
Berlin time, summer and winter). Runs you create with `airflow backfill create` stay **queued while the
DAG is paused**: unpause it first (`airflow dags unpause clevertap_nightly_list_cleaning`).

#### Segments
`segment` takes any CleverTap CQL query; the examples in `include/segments/*.json` are listed under the
param in the trigger form. Property renames for the whole deployment go in
`include/clevertap_property_names.json`, and report template overrides in `include/report/`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from clearout_provider.dag_params import (
    EVERY_PROFILE_WITH_AN_EMAIL,
    run_mode_params,
    segment_param,
    selection_params,
    start_date,
    task_defaults,
    verifier_param,
    write_back_params,
)
from clearout_provider.operators import INSTANT_THRESHOLD, choose_verification_mode
from clearout_provider.operators.bulk_list import MAX_CONCURRENT_BULK_LISTS, bulk_list_pool
from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator
from clearout_provider.operators.clevertap import (
    CleverTapExtractProfilesOperator,
    CleverTapLoadVerificationOperator,
)
from clearout_provider.operators.instant_verify import DEFAULT_MAX_ADDRESSES, ClearoutInstantVerifyOperator
from clearout_provider.profile_assets import VERIFIED_PROFILES, announce_changes


@dag(
    schedule="0 2 * * *",
    start_date=start_date(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(),
    doc_md=__doc__,
    tags=["clearout", "clevertap", "list-cleaning"],
    render_template_as_native_obj=True,
    params={
        "segment": segment_param(
            EVERY_PROFILE_WITH_AN_EMAIL,
            title="Segment (CQL)",
            description_md="CleverTap CQL query selecting the profiles to keep clean (the body of "
            "`POST /1/profiles.json`). The default selects every profile with an email (CleverTap: those "
            "active in the last 365 days); leads without an email are the Email Finder DAG's.",
        ),
        "ttl_days": Param(
            30,
            type="number",
            minimum=0,
            title="Freshness (days)",
            description_md="Re-verify an address after this many days (also how long the verdict ledger's "
            "verdicts are reused).",
        ),
        "uncertain_ttl_days": Param(
            1,
            type="number",
            minimum=0,
            title="Freshness of uncertain verdicts (days)",
            description_md="Re-verify *unknown* and *catch-all* verdicts sooner.",
        ),
        **selection_params(),
        "verifier": verifier_param(),
        **write_back_params(),
        "instant_threshold": Param(
            INSTANT_THRESHOLD,
            type="integer",
            minimum=1,
            maximum=DEFAULT_MAX_ADDRESSES,
            title="Instant threshold",
            description_md="Fewer addresses than this go to the instant API; more go to bulk lists (at "
            f"most {DEFAULT_MAX_ADDRESSES:,}: above it instant calls would spend an hour in rate-limit "
            "waits). Mail.so always validates per address, in batches above 100.",
        ),
        **run_mode_params(),
    },
)
def clevertap_nightly_list_cleaning() -> None:
    # The extract reads back the properties the load writes (renamed ones too): one mapping for both.
    mapping = {
        "columns": "{{ params.append_columns }}",
        "renames": "{{ params.renames }}",
        "verifier": "{{ params.verifier }}",
    }
    # The extract's freshness, the verdict ledger's reuse and the due date the load writes are one rule.
    freshness = {"ttl_days": "{{ params.ttl_days }}", "uncertain_ttl_days": "{{ params.uncertain_ttl_days }}"}
    extract = CleverTapExtractProfilesOperator(
        task_id="extract_delta",
        query="{{ params.segment }}",
        freshness=freshness,
        mapping=mapping,
        selection="{{ params.selection }}",
        full_sweep_days="{{ params.full_sweep_days }}",
        email_change_event="{{ params.email_change_event }}",
        partition_by="{{ params.partition_by }}",
    )

    @task.branch
    def choose_mode(extracted: dict[str, Any]) -> str:
        """Instant calls finish a small delta sooner than a bulk list's queue (choose_verification_mode).

        Mail.so always takes the instant operator, which sends larger inputs as Mail.so batches.
        """
        params = get_current_context()["params"]
        if params["verifier"] == "mailso":
            return "verify_instant"
        mode = choose_verification_mode(extracted["to_verify"], threshold=params["instant_threshold"])
        return "verify_instant" if mode == "instant" else "split_for_bulk"

    @task
    def split_for_bulk(extracted: dict[str, Any]) -> list[str]:
        """One file per bulk list; duplicates of an address stay in one file (see split_into_chunks)."""
        from clearout_provider.contacts import DEFAULT_MAX_ROWS, split_into_chunks
        from clearout_provider.run_files import task_folder

        return split_into_chunks(extracted["path"], task_folder(get_current_context()), DEFAULT_MAX_ROWS)

    chunks = split_for_bulk(extract.output)
    verify_instant = ClearoutInstantVerifyOperator(
        task_id="verify_instant",
        source="{{ ti.xcom_pull(task_ids='extract_delta')['path'] }}",
        verifier="{{ params.verifier }}",
        freshness=freshness,
        dry_run="{{ params.dry_run }}",
    )
    verify_bulk = ClearoutBulkVerifyOperator.partial(
        task_id="verify_bulk",
        deferrable=True,
        pool=bulk_list_pool(),
        max_active_tis_per_dagrun=MAX_CONCURRENT_BULK_LISTS,
        freshness=freshness,
        dry_run="{{ params.dry_run }}",
    ).expand(source=chunks)

    @task(trigger_rule="none_failed_min_one_success")
    def verified() -> list[dict[str, Any]]:
        """The outcomes of whichever verify path ran (the other was skipped by choose_mode), one per file."""
        ti = get_current_context()["ti"]
        for mode in ("instant", "bulk"):
            pulled = ti.xcom_pull(task_ids=f"verify_{mode}")  # every map index
            outcomes = [o for o in (pulled if isinstance(pulled, list) else [pulled]) if o]
            if outcomes:
                return [{**outcome, "mode": mode} for outcome in outcomes]
        raise RuntimeError("neither verify_instant nor verify_bulk left a result")

    verification = verified()
    load = CleverTapLoadVerificationOperator.partial(
        task_id="load_back",
        mapping=mapping,
        unsubscribe="{{ params.unsubscribe }}",
        freshness=freshness,
        dry_run="{{ params.dry_run or not params.write_back }}",
    ).expand(result_path=verification.map(lambda outcome: outcome["result_path"]))

    @task
    def report(
        extracted: dict[str, Any], verification: list[dict[str, Any]], loaded: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Write report.md + report.html; fail on any unaccounted contact or too many rejections."""
        from clearout_provider.report import finish_run

        context = get_current_context()
        loaded = loaded[:]  # the mapped loads' results in one request (iterating would probe past the end)
        _, files = finish_run(context, extracted, verification, loaded, mode=verification[0]["mode"])
        return {"report_markdown": files.markdown, "report_html": files.html, "summary": files.summary}

    choose_mode(extract.output) >> [verify_instant, chunks]
    [verify_instant, verify_bulk] >> verification
    reported = report(extract.output, verification, load.output)
    announce_changes.override(outlets=[VERIFIED_PROFILES])(load.output, reported)


clevertap_nightly_list_cleaning()
