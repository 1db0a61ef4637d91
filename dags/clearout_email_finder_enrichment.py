"""
### Email Finder enrichment: CleverTap leads without an email → Clearout Email Finder → CleverTap

B2B sign-ups often leave a name and a company but no email address. Every day this DAG looks those
leads up with Clearout's Email Finder and writes what it found back onto the profiles.

1. **export_leads** exports the profiles of `segment` that have a name and a `domain_property` (e.g.
   "Company Domain") but no email, and were never looked up before (no "Clearout Finder Status"):
   each lead is paid for once, not every day.
2. **find_emails** sends them to Clearout as one bulk Email Finder list (deferred in the triggerer).
   Repeated name + domain pairs are asked once; leads without a usable name or domain are decided
   locally and cost nothing.
3. **found_addresses** keeps the found addresses; **choose_verification** sends them to
   **verify_found** (one bulk verify list) when `verify_found` is on, else straight to the write-back.
4. **lead_properties** joins each lead's finder answer and verification into one file of properties;
   **write_back** (the CleverTap property load: only what differs is sent, every lead gets a row in
   its outcome file, CleverTap's per-record rejections are counted) sets on each lead: "Clearout
   Finder Status" (found / not_found), "Clearout Finder
   Reason", "Clearout Finder Email Address", "Clearout Finder Confidence Score" (0-100), "Clearout
   Finder Business Account" and "Clearout Finder Processed At (UTC)"; with verification also the
   verification properties of the found address (`append_columns`, as the list-cleaning DAGs write
   them, and "Clearout Verified Email" = the found address, "Clearout Verified At").
   With `set_email`, found addresses with a confidence of at least `min_confidence` (and safe to
   send, when verified) become the profile's Email, so campaigns can reach the lead. Leads Clearout
   could not answer (a failed or missing answer) are left untouched and tried again next run.
5. **announce_changes** updates the `clevertap_enriched_leads` asset
   (`clevertap://clevertap_default/enriched_leads`) when the write-back changed a lead; it is skipped
   (no asset event) when there was no lead to look up.

Credits: Clearout charges up to 4 credits per found address (2 for a role address, 0 when not
found) and 1 per verified address. Connections: `clevertap_default` and `clearout_default`.
Polling: `[clearout] bulk_poll_interval` seconds (default 30), backing off to 10 times that.
Schedule: daily at midnight in `[clearout] schedule_timezone` (default UTC).

Try it against the bundled sandbox, whose seed holds such leads (some found, some not, the same every
time): `make demo-finder` (`python -m clearout_provider.demo --dag finder`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from clearout_provider.clevertap.mapping import COLUMN_NAMES, RECOMMENDED_APPEND, PropertyMapping
from clearout_provider.dag_params import segment_param, start_date
from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator
from clearout_provider.operators.clevertap import CleverTapLoadPropertiesOperator
from clearout_provider.operators.email_finder import ClearoutBulkEmailFinderOperator
from clearout_provider.profile_assets import ENRICHED_LEADS, announce_changes

#: Finder result column → the CleverTap property it is written to (the names of Clearout's own export).
FINDER_PROPERTIES = {
    "finder_status": "Clearout Finder Status",
    "finder_reason": "Clearout Finder Reason",
    "finder_email": "Clearout Finder Email Address",
    "finder_confidence_score": "Clearout Finder Confidence Score",
    "finder_business": "Clearout Finder Business Account",
    "finder_found_at": "Clearout Finder Processed At (UTC)",
}
#: Columns of the found-addresses file (what the verification reads and returns, row for row).
FOUND_COLUMNS = ("identity", "objectId", "finder_email", "finder_confidence_score")


def lead_query(segment: dict[str, Any], domain_property: str) -> dict[str, Any]:
    """``segment`` narrowed to leads: a name and a domain, no email, and never looked up before."""
    query = dict(segment)
    common = dict(query.get("common_profile_properties") or {})
    common["profile_fields"] = [
        *(common.get("profile_fields") or []),
        {"name": "Name", "operator": "exists"},
        {"name": domain_property, "operator": "exists"},
        {"name": "Email", "operator": "does_not_exist"},
        {"name": FINDER_PROPERTIES["finder_status"], "operator": "does_not_exist"},
    ]
    query["common_profile_properties"] = common
    return query


def profile_update(
    finder_row: dict[str, Any],
    verdict_row: dict[str, Any] | None,
    mapping: PropertyMapping,
    *,
    set_email: bool,
    min_confidence: int,
) -> dict[str, Any]:
    """The ``profileData`` for one looked-up lead (None values are left out: the property stays absent)."""
    data = {prop: finder_row.get(column) for column, prop in FINDER_PROPERTIES.items()}
    if verdict_row is not None:
        data.update(mapping.properties(verdict_row))
    found = finder_row.get("finder_status") == "found" and finder_row.get("finder_email")
    confident = (finder_row.get("finder_confidence_score") or 0) >= min_confidence
    deliverable = verdict_row is None or verdict_row.get("safe_to_send") is True
    if set_email and found and confident and deliverable:
        data["Email"] = finder_row["finder_email"]
    return {k: v for k, v in data.items() if v is not None}


@dag(
    schedule="@daily",
    start_date=start_date(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["clearout", "clevertap", "email-finder"],
    params={
        "segment": segment_param(
            {},
            title="Narrow the leads (CQL)",
            description_md="Optional CleverTap CQL query to narrow the leads (the body of "
            "`POST /1/profiles.json`); the lead conditions (a name and a domain, no email, not looked up "
            "yet) are added to it. Empty: every lead.",
        ),
        "domain_property": Param(
            "Company Domain",
            type="string",
            minLength=1,
            title="Company domain property",
            description_md="Profile property holding the lead's company domain or website.",
        ),
        "company_property": Param(
            "Company",
            type="string",
            minLength=1,
            title="Company name property",
            description_md="Profile property holding the company name (helps Clearout when the domain is "
            "vague).",
        ),
        "verify_found": Param(
            True,
            type="boolean",
            title="Verify found addresses",
            description_md="Verify the found addresses with Clearout (1 credit each).",
        ),
        "append_columns": Param(
            list(RECOMMENDED_APPEND),
            type="array",
            items={"type": "string", "enum": list(COLUMN_NAMES)},
            uniqueItems=True,
            title="Verification properties",
            description_md="With verification: the Clearout properties to write for the found address "
            "(keep them the same as the list-cleaning DAGs'). The verified address and date are always "
            "written.",
        ),
        "set_email": Param(
            False,
            type="boolean",
            title="Make found addresses the Email",
            description_md="Also make a found address the profile's *Email* (when confident enough and, "
            "if verified, safe to send), so campaigns can reach the lead.",
        ),
        "min_confidence": Param(
            80,
            type="integer",
            minimum=0,
            maximum=100,
            title="Lowest confidence for the Email",
            description_md="Lowest Clearout confidence score (0-100) for *Make found addresses the Email*.",
        ),
    },
)
def clearout_email_finder_enrichment() -> None:
    @task
    def export_leads() -> dict[str, Any]:
        """Export the leads to a Parquet file (name, domain and company columns)."""
        from clearout_provider.hooks.clevertap import CleverTapHook
        from clearout_provider.run_files import staged_file, task_folder

        context = get_current_context()
        params = context["params"]
        out = task_folder(context) / "clevertap-leads.parquet"
        properties = [params["domain_property"], params["company_property"]]
        with staged_file(out) as local:  # the hook writes local files; the task folder may be remote
            exported = CleverTapHook().export_profiles(
                lead_query(params["segment"], params["domain_property"]), local, properties=properties
            )
        return {"path": str(out), "leads": exported.count}

    leads = export_leads()
    find = ClearoutBulkEmailFinderOperator(
        task_id="find_emails",
        source=leads["path"],
        name_column="name",
        domain_column="{{ params.domain_property }}",
        company_column="{{ params.company_property }}",
        deferrable=True,
    )

    @task
    def found_addresses(finder: dict[str, Any]) -> dict[str, Any]:
        """The found addresses, one row per lead, with only what the verification needs (the finder's own
        ``decided_by`` would clash with the verification's)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from clearout_provider.contacts import resolve_path
        from clearout_provider.run_files import task_folder

        with resolve_path(finder["result_path"]).open("rb") as stream:
            result = pq.read_table(stream, columns=["finder_status", *FOUND_COLUMNS])
        found = result.filter(pc.equal(result.column("finder_status"), "found")).select(FOUND_COLUMNS)
        out = task_folder(get_current_context()) / "found-addresses.parquet"
        with out.open("wb") as stream:
            pq.write_table(found, stream)
        return {"path": str(out), "found": found.num_rows}

    found = found_addresses(find.output)

    @task.branch
    def choose_verification(found: dict[str, Any]) -> str:
        """Verify only when asked to and something was found."""
        asked = get_current_context()["params"]["verify_found"]
        return "verify_found" if asked and found["found"] else "lead_properties"

    verify = ClearoutBulkVerifyOperator(
        task_id="verify_found",
        source=found["path"],
        email_column="finder_email",
        deferrable=True,
    )

    @task(trigger_rule="none_failed_min_one_success")
    def lead_properties(finder: dict[str, Any]) -> dict[str, Any]:
        """Each lead's properties to write (:func:`profile_update`: the finder's answer, the verification of
        the found address, the Email), one row per lead and one column per property, for write_back."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from clearout_provider.contacts import resolve_path
        from clearout_provider.run_files import task_folder
        from clearout_provider.tables import write_table

        context = get_current_context()
        params = context["params"]
        verification = context["ti"].xcom_pull(task_ids="verify_found")  # None: skipped
        with resolve_path(finder["result_path"]).open("rb") as stream:
            rows = pq.read_table(stream).to_pylist()
        verdicts: dict[tuple[Any, Any], dict[str, Any]] = {}
        if verification:
            with resolve_path(verification["result_path"]).open("rb") as stream:
                for row in pq.read_table(stream).to_pylist():
                    verdicts[row["identity"], row["objectId"]] = row
        mapping = PropertyMapping.from_params(params["append_columns"])
        updates = [
            profile_update(
                r,
                verdicts.get((r["identity"], r["objectId"])),
                mapping,
                set_email=params["set_email"],
                min_confidence=params["min_confidence"],
            )
            for r in rows
        ]
        properties = list(
            dict.fromkeys([*FINDER_PROPERTIES.values(), *mapping.property_names().values(), "Email"])
        )
        columns = {name: [r[name] for r in rows] for name in ("identity", "objectId", "decided_by")}
        columns.update({prop: [u.get(prop) for u in updates] for prop in properties})
        out = task_folder(context) / "lead-properties.parquet"
        write_table(out, pa.table(columns))
        return {
            "path": str(out),
            "properties": properties,
            "leads": len(rows),
            "found": sum(1 for r in rows if r["finder_status"] == "found"),
            "verified": len(verdicts),
            "emails_set": sum(1 for u in updates if "Email" in u),
        }

    choice = choose_verification(found)
    properties = lead_properties(find.output)
    # Leads Clearout gave no answer for (NO_ANSWER) are written nothing: they are looked up again next run.
    written = CleverTapLoadPropertiesOperator(
        task_id="write_back", source=properties["path"], properties=properties["properties"]
    )
    choice >> [verify, properties]
    verify >> properties >> written
    announce_changes.override(outlets=[ENRICHED_LEADS])(written.output)


clearout_email_finder_enrichment()
