"""Every metric this provider emits, in ONE place, through Airflow's own metrics (StatsD, Datadog, OTel).

Names sit under ``clearout.`` (after Airflow's ``[metrics] statsd_prefix``, so ``airflow.clearout.…`` on
StatsD) and never hold personal data: only fixed words, the verifier and the DAG id. Airflow's
convention is followed: the name itself is stable and ``dag_id`` / ``verifier`` travel as tags; while
``[metrics] legacy_names_on`` is true (Airflow's default) each metric is ALSO sent under a name that
carries them, ``clearout.<metric>.<verifier>.<dag_id>``, because plain StatsD drops tags.

Per run (:func:`record_run`, from the report's :class:`~clearout_provider.report.RunFacts`, so the metrics
and the report can never disagree), counters:

========================  ==================================================================
``credits_spent``         the measured balance drop (not sent when no chunk measured one)
``verified``              rows the verifier decided (bulk or instant; each paid at most once)
``decided_locally``       rows the local syntax check decided (never billed)
``duplicates``            rows that were a copy of another row's address (paid once)
``reused``                rows answered by the verdict ledger (paid for earlier)
``skipped_fresh``         profiles the extract skipped: verified recently
``no_verdict``            rows the verifier gave no verdict for (timeouts, refused input; still due)
``unsubscribed``          profiles the load unsubscribed (not sent for a dry run / write_back off)
``rejected``              records CleverTap refused (not sent for a dry run / write_back off)
========================  ==================================================================

From the tasks themselves: ``credit_balance`` (gauge, every balance the low-credit check reads),
``low_credit`` (counter, each time that check finds the balance low) and ``bulk_list_seconds`` (timer,
upload of a bulk list to its result downloaded; tagged ``kind``: verify or finder).

A retried or cleared report task sends only what its run's counters grew by since its earlier try
(kept in the report's task folder, ``metrics-sent.json``): a counter summed over runs counts each run
once. A report task killed between sending and keeping that file sends again (at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk.configuration import conf
from airflow.sdk.observability import stats

from clearout_provider.verification.model import NO_VERDICT, DecidedBy
from clearout_provider.verification.verifier import SPECS

if TYPE_CHECKING:
    from clearout_provider.report import RunFacts

log = logging.getLogger(__name__)

PREFIX = "clearout"

#: Who decides on the verifier's side (the rows counted as ``verified``).
_VENDOR_DECIDERS = frozenset(d for s in SPECS.values() for d in (s.bulk, s.instant))


def run_counts(facts: RunFacts) -> dict[str, int]:
    """The per-run counters of the module docstring, by metric name (without the prefix)."""
    decided = facts.by_decided_by
    counts = {
        "verified": sum(n for d, n in decided.items() if d in _VENDOR_DECIDERS),
        "decided_locally": decided.get(DecidedBy.LOCAL_SYNTAX, 0),
        "duplicates": decided.get(DecidedBy.LOCAL_DUPLICATE, 0),
        "reused": decided.get(DecidedBy.LEDGER, 0),
        "skipped_fresh": facts.fresh,
        "no_verdict": sum(n for d, n in decided.items() if d in NO_VERDICT and d != DecidedBy.DRY_RUN),
    }
    if facts.credits_spent is not None:
        counts["credits_spent"] = facts.credits_spent
    if not facts.dry_run:  # a dry run (or write_back off) writes nothing to CleverTap
        counts["unsubscribed"] = facts.unsubscribed
        counts["rejected"] = facts.rejected
    return counts


def verifier_of(verified: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """The verifier named by the verify task's XCom (one dict, or a mapped task's list: every chunk of a
    run has the same verifier, so only the first is read); Clearout if it names none."""
    first = verified if isinstance(verified, Mapping) else next(iter(verified), {})
    return str(first.get("verifier") or "clearout")


def record_run(
    facts: RunFacts, *, verifier: str, already_sent: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Send the run's counters (the report task calls this once its report is written), less what an
    earlier try of the same run already sent (``already_sent``: what this returned then), so a retried
    or cleared report task adds only what grew and a counter summed over runs counts each run once.

    Returns what the run has now sent in all, per counter, for the next try. A counter that shrank (a
    cleared run verified what its first try got no answer for) cannot be taken back: it stays as sent.
    """
    sent = dict(already_sent or {})
    for metric, value in run_counts(facts).items():
        more = value - sent.get(metric, 0)
        if more > 0:
            _send("incr", metric, more, verifier=verifier, dag_id=facts.dag_id)
            sent[metric] = value
    log.info("Metrics %s.* sent for %s, in all for this run: %s", PREFIX, verifier, sent)
    return sent


def credit_balance(available: int, *, verifier: str, dag_id: str) -> None:
    """The account's credits left, as just read."""
    _send("gauge", "credit_balance", available, verifier=verifier, dag_id=dag_id)


def low_credit(*, verifier: str, dag_id: str, action: str) -> None:
    """The low-credit check found the balance low (``action``: what it did about it, ``warn`` or ``fail``)."""
    _send("incr", "low_credit", 1, verifier=verifier, dag_id=dag_id, action=action)


def bulk_list_seconds(seconds: float, *, verifier: str, dag_id: str, kind: str) -> None:
    """How long one bulk list (``kind``: verify or finder) took, from its upload to its result downloaded."""
    _send(
        "timing", "bulk_list_seconds", timedelta(seconds=seconds), verifier=verifier, dag_id=dag_id, kind=kind
    )


def _send(
    method: Literal["incr", "gauge", "timing"],
    metric: str,
    value: Any,
    *,
    verifier: str,
    dag_id: str,
    **extra: str,
) -> None:
    """One metric under its stable name with tags, and (``legacy_names_on``) under the name with both."""
    name = f"{PREFIX}.{metric}"
    tags = {"dag_id": dag_id, "verifier": verifier, **extra}
    send = getattr(stats, method)
    send(name, value, tags=tags)
    if conf.getboolean("metrics", "legacy_names_on", fallback=True):
        send(f"{name}.{_segment(verifier)}.{_segment(dag_id)}", value)


def _segment(value: str) -> str:
    """A name part: a dot would add a level to the StatsD hierarchy (Airflow writes it as ``__``)."""
    return stats.normalize_name_for_stats(value.replace(".", "__"), log_warning=False)
