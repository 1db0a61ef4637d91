"""
### Historical backfill: verify the whole CleverTap base in chunks

The nightly DAG keeps new and changed contacts clean; this one catches up on everything already in
CleverTap, a slice at a time, within what a Clearout account can run at once.

1. **segment_query** builds the CQL query: `segment`, narrowed to the profiles whose
   `created_property` (a date property such as "Signup Date") falls in this run's data interval, or
   the whole segment when `full_history` is on.
2. **extract** exports those profiles and keeps only the ones that need verifying (never verified,
   stale, or verified for another address), so anything done before costs nothing.
3. **split** cuts them into chunk files of at most `chunk_rows` rows (Clearout recommends at most
   500,000 per list). Every copy of an address lands in the same chunk, so it is paid for once.
4. **verify_chunk** runs once per chunk (dynamic task mapping): **verify** sends the chunk to Clearout
   as one bulk list and waits for it deferred in the triggerer; **load** writes the verdicts back to
   those profiles as soon as that chunk is done (`append_columns`, as the nightly DAG writes them)
   and unsubscribes undeliverable addresses as `unsubscribe` says.
5. **report** writes `report.md` / `report.html` next to the run's files and fails the run if any
   contact is unaccounted for.
6. **announce_changes** updates the `clevertap_verified_profiles` asset
   (`clevertap://clevertap_default/verified`, as the nightly DAG does) when a chunk's load changed a
   profile; it is skipped (no asset event) on a dry run or a month with nothing to write.

#### Never more bulk lists than the account allows
Clearout runs at most 3 bulk verify lists at once per account. Each run caps itself at 3 verify tasks
(`max_active_tis_per_dagrun`), and a list Clearout refuses because 3 are running (1001) waits for a
free slot. To share the limit between DAGs (a backfill beside the nightly run), create a pool counting
deferred tasks (a waiting list is deferred, not running, yet it holds one of Clearout's slots) and name
it in `[clearout] bulk_list_pool` (the docker-compose stack does both):

```bash
airflow pools set clearout_bulk_lists 3 "Clearout bulk lists" --include-deferred
export AIRFLOW__CLEAROUT__BULK_LIST_POOL=clearout_bulk_lists
```

#### Mail.so instead of Clearout
`verifier` = `mailso` sends each chunk to Mail.so as batches (the connection's `batch_size`, waited for in
the triggerer like a Clearout list; a retry collects the batches it created instead of posting them again)
and writes the "Mailso ..." properties. Connection `mailso_default`.

#### What a run may spend and write
Every verdict paid for goes into the verdict ledger before it is written back, and every chunk asks the
ledger first: clearing or retrying a chunk, or running again after a failure, never pays twice.
`dry_run` spends and writes nothing; `write_back` = false verifies into the ledger without writing to
CleverTap. The run fails (after its report) when CleverTap rejects more than `max_rejected_share`.

#### Two ways to run it
* **Date ranges of profile creation** with a backfill, one run per month of sign-ups:
  ```bash
  airflow backfill create --dag-id clevertap_backfill_historical_contacts \\
      --from-date 2022-01-01 --to-date 2024-12-31
  ```
  The runs it creates **stay queued while the DAG is paused** (the shipped DAGs start paused):
  unpause it first, `airflow dags unpause clevertap_backfill_historical_contacts`. Months are read in
  `[clearout] schedule_timezone` (default UTC).
* **Everything in one run**: trigger it with `full_history` = true (no date filter).

CleverTap has no queryable "created at" field: the date filter reads a date property your app
sets when a profile is created (`created_property`, "Signup Date" by default; change it to yours).
A query without an event covers the profiles active in the last 365 days; to reach older ones put
an event with a `from`/`to` range (e.g. "App Launched") in `segment`.

#### Resuming after a failure (credits ran out, a list was cancelled, ...)
Finished chunks are written back to CleverTap as soon as they finish, so nothing they did is lost:
* **Clear the failed tasks** of the run (UI: *Clear → Only failed*): only the unfinished chunks run
  again, and a chunk whose Clearout list was already uploaded resumes that list instead of paying
  for it twice.
* **Or trigger a new run**: the extract skips every profile a finished chunk verified (they are now
  fresh), so only what is left is chunked and verified.

Connections: `clevertap_default` (Account ID, Passcode, Region) and `clearout_default` (API token).
Polling: the wait for a list asks Clearout after `[clearout] bulk_poll_interval` seconds (default
30), backing off to 10 times that.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task, task_group

from clearout_provider.dag_params import (
    EVERY_PROFILE_WITH_AN_EMAIL,
    run_mode_params,
    schedule_timezone,
    segment_param,
    start_date,
    task_defaults,
    verifier_param,
    write_back_params,
)
from clearout_provider.operators.bulk_list import MAX_CONCURRENT_BULK_LISTS, bulk_list_pool
from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator
from clearout_provider.operators.clevertap import (
    CleverTapExtractProfilesOperator,
    CleverTapLoadVerificationOperator,
)
from clearout_provider.profile_assets import VERIFIED_PROFILES, announce_changes


def created_between(
    segment: dict[str, Any], created_property: str, start: datetime, end: datetime
) -> dict[str, Any]:
    """``segment`` narrowed to profiles whose ``created_property`` date is in ``[start, end)``.

    Dates go out as CleverTap writes them (``$D_<epoch seconds>``), so any interval, not only whole
    days, selects exactly its profiles and consecutive intervals never overlap.
    """
    query = dict(segment)
    common = dict(query.get("common_profile_properties") or {})
    common["profile_fields"] = [
        *(common.get("profile_fields") or []),
        {
            "name": created_property,
            "operator": "greater_than_equals",
            "value": f"$D_{int(start.timestamp())}",
        },
        {"name": created_property, "operator": "less_than", "value": f"$D_{int(end.timestamp())}"},
    ]
    query["common_profile_properties"] = common
    return query


def per_chunk_results(value: Any) -> list[dict[str, Any]]:
    """A mapped task's results as a list: Airflow hands over None for no map index and the bare value
    for exactly one."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)


@dag(
    # Data intervals (not Airflow 3's default trigger timetable): each run, and each run a backfill
    # creates, covers one calendar month of sign-ups, [data_interval_start, data_interval_end).
    schedule=CronDataIntervalTimetable("@monthly", timezone=schedule_timezone()),
    start_date=start_date(2010, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(),
    doc_md=__doc__,
    tags=["clearout", "clevertap", "backfill"],
    render_template_as_native_obj=True,  # the mapping and unsubscribe params reach the operators as objects
    params={
        "segment": segment_param(
            EVERY_PROFILE_WITH_AN_EMAIL,
            title="Segment (CQL)",
            description_md="CleverTap CQL query selecting the profiles to verify (the body of "
            "`POST /1/profiles.json`). The creation-date filter is added to it.",
        ),
        "created_property": Param(
            "Signup Date",
            type="string",
            minLength=1,
            title="Creation date property",
            description_md="Date property holding when a profile was created; each run verifies the "
            "profiles created in its data interval (one calendar month).",
        ),
        "full_history": Param(
            False,
            type="boolean",
            title="Whole history in one run",
            description_md="Verify the whole segment in this one run, ignoring the data interval.",
        ),
        "chunk_rows": Param(
            500_000,
            type="integer",
            minimum=1,
            maximum=500_000,
            title="Profiles per bulk list",
            description_md="Most profiles per Clearout bulk list (Clearout recommends at most 500,000).",
        ),
        "verifier": verifier_param(),
        **write_back_params(),
        **run_mode_params(),
    },
)
def clevertap_backfill_historical_contacts() -> None:
    @task
    def segment_query() -> dict[str, Any]:
        """The run's CQL: the segment, limited to this data interval's sign-ups unless full_history."""
        context = get_current_context()
        params = context["params"]
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if params["full_history"] or start is None or end is None:
            return dict(params["segment"])
        return created_between(params["segment"], params["created_property"], start, end)

    # The extract reads back the properties the load writes (renamed ones too): one mapping for both.
    mapping = {
        "columns": "{{ params.append_columns }}",
        "renames": "{{ params.renames }}",
        "verifier": "{{ params.verifier }}",
    }
    extract = CleverTapExtractProfilesOperator(
        task_id="extract",
        query=segment_query(),
        only_delta=True,
        mapping=mapping,
        # Each run is one period's slice of the base, exported whole and checked locally (an address
        # changed since an earlier verification is found too); the nightly's delta selection is for a
        # segment asked again every night.
        selection="full",
    )

    @task
    def split(extracted: dict[str, Any]) -> list[str]:
        """Chunk files of the profiles to verify, each address's rows in one chunk (deterministic)."""
        from clearout_provider.contacts import split_into_chunks
        from clearout_provider.run_files import task_folder

        context = get_current_context()
        return split_into_chunks(extracted["path"], task_folder(context), context["params"]["chunk_rows"])

    @task_group
    def verify_chunk(chunk: str) -> None:
        verify = ClearoutBulkVerifyOperator(
            task_id="verify",
            source=chunk,
            verifier="{{ params.verifier }}",
            deferrable=True,
            pool=bulk_list_pool(),
            max_active_tis_per_dagrun=MAX_CONCURRENT_BULK_LISTS,
            dry_run="{{ params.dry_run }}",
        )
        load = CleverTapLoadVerificationOperator(
            task_id="load",
            # The same chunk's verify result (the operator takes a path; XCom carries the whole dict).
            result_path="{{ ti.xcom_pull(task_ids='verify_chunk.verify', map_indexes=ti.map_index)"
            "['result_path'] }}",
            mapping=mapping,
            unsubscribe="{{ params.unsubscribe }}",
            dry_run="{{ params.dry_run or not params.write_back }}",
        )
        verify >> load

    per_chunk = verify_chunk.expand(chunk=split(extract.output))

    # none_failed: the report also runs when there was nothing to verify (no chunk: mapped tasks skipped).
    @task(trigger_rule="none_failed")
    def report(extracted: dict[str, Any], verified: Any, loaded: Any) -> dict[str, Any]:
        """Sum the chunks into one report (report.md + report.html); fail if any contact is unaccounted."""
        from clearout_provider.report import finish_run

        chunks, loads = per_chunk_results(verified), per_chunk_results(loaded)
        _, files = finish_run(get_current_context(), extracted, chunks, loads, mode="bulk")
        return {"report_markdown": files.markdown, "report_html": files.html, "chunks": len(chunks)}

    # Every chunk's verify and load result, in chunk order (mapped XCom, read lazily). expand() is typed
    # as returning a DAGNode; for a group function that returns nothing it is the (mapped) group itself.
    tasks = per_chunk.children  # type: ignore[attr-defined]
    loads = tasks["verify_chunk.load"].output
    reported = report(extract.output, tasks["verify_chunk.verify"].output, loads)
    announce_changes.override(outlets=[VERIFIED_PROFILES])(loads, reported)


clevertap_backfill_historical_contacts()
