"""The assets the shipped DAGs update when they change CleverTap profiles, and the task that says so.

Each DAG that writes to CleverTap ends with :func:`announce_changes`: a task whose outlet is the DAG's
asset. Airflow records an asset event for every outlet of a task that SUCCEEDS, so the task succeeds
(and the event carries the run's counts) only when a load really changed a profile, and is skipped on a
dry run or a run that found nothing to write: a DAG scheduled on the asset runs after real changes only.
(A skipped task records no event; the alternative, an ``AssetAlias`` outlet, would hide the asset from
the DAG's graph until its first event.)

The URIs name the CleverTap connection and what changed, ``clevertap://<conn id>/<what>``:
``verified`` (verification properties and unsubscribes: the nightly and backfill DAGs, either verifier),
``validated_signups`` (the Mail.so sign-up DAG), ``enriched_leads`` (the Email Finder DAG).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Asset, get_current_context, task

VERIFIED_PROFILES = Asset(name="clevertap_verified_profiles", uri="clevertap://clevertap_default/verified")
"""Verification properties or subscriptions changed (nightly and backfill DAGs)."""
VALIDATED_SIGNUPS = Asset(
    name="clevertap_validated_signups", uri="clevertap://clevertap_default/validated_signups"
)
"""Sign-ups got their Mail.so result (mailso_signup_validation)."""
ENRICHED_LEADS = Asset(name="clevertap_enriched_leads", uri="clevertap://clevertap_default/enriched_leads")
"""Leads got the Email Finder's answer (clearout_email_finder_enrichment)."""

#: The load summary's counts an asset event carries (see the CleverTap load operators' return value).
_COUNTS = ("input", "updated", "unsubscribed_only", "unsubscribed", "resubscribed", "rejected")


def load_summaries(loaded: Any) -> list[Mapping[str, Any]]:
    """The load results of a run as a list: one dict, a mapped task's results, or None (no load ran)."""
    if loaded is None:
        return []
    if isinstance(loaded, Mapping):
        return [loaded]
    # A mapped task's lazy XCom sequence: one slice is one request (iterating would probe past the end).
    items = loaded[:] if isinstance(loaded, Sequence) else list(loaded)
    return [x for x in items if isinstance(x, Mapping)]


def changes(loaded: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The loads' counts summed; ``changed`` = profiles a load really wrote to (0 for a dry run)."""
    totals = {key: sum(int(x.get(key) or 0) for x in loaded) for key in _COUNTS}
    wrote = [x for x in loaded if not x.get("dry_run")]
    totals["changed"] = sum(int(x.get("updated") or 0) + int(x.get("unsubscribed_only") or 0) for x in wrote)
    return totals


# none_failed: also after a run whose loads were skipped (nothing to load); then it is skipped too.
@task(trigger_rule="none_failed")
def announce_changes(loaded: Any, report: Any = None) -> dict[str, Any]:
    """Emit the task's outlet asset events, with the run's counts, when a load changed a profile; skip
    (no event) otherwise. ``report``: the report task's result, whose ``report_markdown`` path the event
    carries."""
    from airflow.sdk.exceptions import AirflowSkipException

    context = get_current_context()
    counts = changes(load_summaries(loaded))
    if not counts["changed"]:
        raise AirflowSkipException(
            "No CleverTap profile changed (dry run or nothing to write): no asset event"
        )
    extra: dict[str, Any] = dict(counts)
    if isinstance(report, Mapping) and report.get("report_markdown"):
        extra["report"] = report["report_markdown"]
    for outlet in context["task"].outlets:
        context["outlet_events"][outlet].extra = extra
    return extra
