"""ClearoutInstantVerifyOperator: verify a small file of addresses now, one instant call per address.

For small deltas (a nightly handful of new sign-ups) an instant call per address answers in seconds where
a bulk list queues for minutes. The result file has exactly the bulk operator's shape (input columns, then
:data:`clearout_provider.verdicts.RESULT_COLUMNS`, one row per input row), so downstream tasks do not care
which path verified. The operator picks nothing by itself: the caller (or ``choose_verification_mode``)
decides instant versus bulk, and inputs above ``max_addresses`` are refused with a pointer to the bulk
operator rather than spending an hour in rate-limit waits.

Spending: only the unique, locally valid addresses of :func:`contacts.prepare_contacts` that the verdict
ledger (:mod:`clearout_provider.verification.ledger`) cannot answer are sent; every answer is journalled
in the ledger the moment it arrives, so a retry, a cleared-and-rerun task, a later run or another DAG
sends only what the ledger lacks. An address Clearout gives no verdict for (524 timeout, refused input,
a malformed answer) is "no verdict": ``decided_by = "clearout_instant_failed"``, no status, the reason in
``clearout_sub_status``; it is not recorded, the load writes nothing for it, and the next run asks
again. Auth, credit and daily-limit errors fail the task with a note saying how many addresses were
verified first (those are in the ledger). ``dry_run`` sends nothing: it says what would be sent.

The data-file modules (contacts, results: pyarrow, pandas) are imported when the task runs, not at the
top: that keeps DAG parsing cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator, Context

from clearout_provider.exceptions import ContactsError
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.hooks.clearout_models import VerifyResult
from clearout_provider.instant_calls import DEFAULT_MAX_CONCURRENCY, call_each
from clearout_provider.operators.settings import resolve_flag, resolve_freshness
from clearout_provider.run_files import task_folder

if TYPE_CHECKING:
    from clearout_provider.contacts import Freshness, StoragePath
    from clearout_provider.verification.ledger import LedgerJournal

log = logging.getLogger(__name__)

#: Above this many unique addresses the instant path is refused: use ClearoutBulkVerifyOperator.
DEFAULT_MAX_ADDRESSES = 1_000
RESULT_FORMATS = ("parquet", "csv")


class TooManyForInstant(ContactsError):
    """More unique addresses than the instant path should take; the bulk operator is the way."""


def verdict_data(result: VerifyResult) -> dict[str, Any]:
    """A typed instant answer back in the API's ``data`` shape, which ``normalise_instant_result`` reads."""
    yes_no = {True: "yes", False: "no"}
    return {
        "email_address": result.email_address,
        "status": result.status.value,
        "sub_status": {"code": result.sub_status_code, "desc": result.sub_status_desc},
        "safe_to_send": result.safe_to_send,
        "bounce_type": result.bounce_type.value,
        "disposable": yes_no[result.disposable],
        "free": yes_no[result.free],
        "role": yes_no[result.role],
        "gibberish": yes_no[result.gibberish],
        "suggested_email_address": result.suggested_email or "",
        "verified_on": result.verified_on.isoformat() if result.verified_on else None,
    }


@dataclass(frozen=True)
class InstantOutcome:
    """What :func:`verify_addresses` got: verdict rows by address sent, and per-address failures."""

    verdicts: dict[str, dict[str, Any]]
    failures: dict[str, Exception]


def verify_addresses(
    hook: ClearoutHook,
    emails: Sequence[str],
    journal: LedgerJournal,
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeout_ms: int | None = None,
) -> InstantOutcome:
    """Verify ``emails`` (normalised, unique), journalling every verdict in the ledger as it arrives.

    The hook's shared rate limiter paces the calls; ``max_concurrency`` bounds those in flight. The
    operator and ``bench/bench_instant.py`` both verify through here. Rows are keyed by the address SENT,
    whatever spelling Clearout echoes, so every answer finds its rows.
    """
    from clearout_provider.results import normalise_instant_result

    verdicts: dict[str, dict[str, Any]] = {}

    def on_result(email: str, result: VerifyResult) -> None:
        row = {**normalise_instant_result(verdict_data(result)), "normalised_email": email}
        journal.add(row)
        verdicts[email] = row

    failures = call_each(
        list(emails),
        lambda email: hook.verify_email(email, timeout_ms=timeout_ms),
        on_result=on_result,
        max_concurrency=max_concurrency,
        what="Clearout instant verifications",
    )
    return InstantOutcome(verdicts=verdicts, failures=failures)


class ClearoutInstantVerifyOperator(BaseOperator):
    """Verify the addresses of a small CSV/Parquet file with Clearout's instant API; write one result file.

    :param source: contacts file (local path or any fsspec URL), CSV or Parquet.
    :param email_column: the email column; detected from Clearout's header names when None.
    :param clearout_conn_id: Airflow connection of type ``clearout``.
    :param workdir: base folder for this task's files (see :mod:`clearout_provider.run_files`).
    :param max_concurrency: instant calls in flight at once (the account's rate limit sets the pace).
    :param timeout_ms: how long Clearout may work on one address (<= 180000; Clearout's default if None).
    :param max_addresses: refuse inputs with more addresses to send than this (use the bulk operator).
    :param result_format: ``"parquet"`` or ``"csv"`` (``clearout-result.<format>`` in the task folder).
    :param freshness: how long a verdict in the ledger is reused (:class:`~clearout_provider.contacts.
        Freshness` or a dict of its fields; None = its defaults). Templated.
    :param dry_run: send nothing; the result marks what would be sent (no verdict) and the return value
        says how many credits it may cost. Templated.

    Returns ``{"result_path", "list_id" (None), "rows", "counts", "by_sub_status_code", "by_decided_by",
    "prepared", "credits_spent", "mode": "instant", "sent", "reused", "verified", "failed",
    "credits_needed", "dry_run"}``: ``reused`` addresses came from the ledger (not paid again), ``sent``
    were asked of Clearout (``verified`` answered, ``failed`` without a verdict); ``credits_needed`` is
    at most one per address sent (unknown verdicts are free). ``credits_spent`` is the balance before
    minus after this try (other use of the account counts too).
    """

    template_fields: Sequence[str] = ("source", "email_column", "workdir", "freshness", "dry_run_enabled")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        source: StoragePath,
        email_column: str | None = None,
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        workdir: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        timeout_ms: int | None = None,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        result_format: Literal["parquet", "csv"] = "parquet",
        freshness: Freshness | dict[str, Any] | str | None = None,
        dry_run: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if result_format not in RESULT_FORMATS:
            raise ValueError(f"result_format must be one of {RESULT_FORMATS}, not {result_format!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if timeout_ms is not None and not 0 < timeout_ms <= 180_000:
            raise ValueError(
                f"timeout_ms must be between 1 and 180000 (Clearout's maximum), not {timeout_ms}"
            )
        self.source = source
        self.email_column = email_column
        self.clearout_conn_id = clearout_conn_id
        self.workdir = workdir
        self.max_concurrency = max_concurrency
        self.timeout_ms = timeout_ms
        self.max_addresses = max_addresses
        self.result_format = result_format
        self.freshness = freshness
        self.dry_run_enabled = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        import pyarrow as pa

        from clearout_provider.contacts import prepare_contacts
        from clearout_provider.results import DecidedBy, join_results
        from clearout_provider.verification.ledger import VerdictLedger, recorded_by
        from clearout_provider.verification.plan import not_sent, plan_verification, read_reused

        dry_run = resolve_flag(self.dry_run_enabled, "dry_run")
        folder = task_folder(context, self.workdir)
        prepared = prepare_contacts(self.source, email_column=self.email_column, workdir=folder)
        ledger = VerdictLedger()
        plan = plan_verification(prepared, ledger, resolve_freshness(self.freshness), context)
        if plan.to_send > self.max_addresses:
            raise TooManyForInstant(
                f"{self.source} has {plan.to_send:,} addresses to verify, more than max_addresses="
                f"{self.max_addresses:,} for instant verification; use ClearoutBulkVerifyOperator (one bulk "
                "list, no rate-limit waits) or raise max_addresses"
            )
        emails = plan.emails()
        parts = [read_reused(plan.reused_path)]
        credits_spent, outcome = 0, InstantOutcome({}, {})
        if dry_run:
            parts.append(not_sent(emails, DecidedBy.DRY_RUN, "dry run: not sent"))
        elif emails:
            outcome, credits_spent = self._verify(emails, ledger, recorded_by(context))
            parts.append(pa.Table.from_pylist(list(outcome.verdicts.values()), schema=parts[0].schema))
            for reason, failed in _by_reason(outcome.failures).items():
                parts.append(not_sent(failed, DecidedBy.CLEAROUT_INSTANT_FAILED, f"not verified: {reason}"))
        summary = join_results(
            prepared.rows_path, pa.concat_tables(parts), folder / f"clearout-result.{self.result_format}"
        )
        if outcome.failures:
            log.warning(
                "%d addresses got no verdict from Clearout: nothing is written for them and the next run "
                "asks again (reasons in clearout_sub_status)",
                len(outcome.failures),
            )
        return {
            "result_path": summary.out_path,
            "list_id": None,
            "rows": summary.rows,
            "counts": summary.by_status,
            "by_sub_status_code": summary.by_sub_status_code,
            "by_decided_by": summary.by_decided_by,
            "prepared": asdict(prepared.counts),
            "credits_spent": credits_spent,
            "mode": "instant",
            "sent": 0 if dry_run else plan.to_send,
            "reused": plan.reused,
            "verified": len(outcome.verdicts),
            "failed": len(outcome.failures),
            "credits_needed": plan.to_send,
            "dry_run": dry_run,
        }

    def _verify(self, emails: list[str], ledger: Any, paid_by: str) -> tuple[InstantOutcome, int]:
        hook = ClearoutHook(self.clearout_conn_id)
        try:
            credits_before = hook.get_credits().available
            with ledger.journal(source="instant", recorded_by=paid_by) as journal:
                outcome = verify_addresses(
                    hook, emails, journal, max_concurrency=self.max_concurrency, timeout_ms=self.timeout_ms
                )
            return outcome, credits_before - hook.get_credits().available
        finally:
            hook.close()


def _by_reason(failures: dict[str, Exception]) -> dict[str, list[str]]:
    """Failed addresses grouped by a short reason (the exception's class and message, no address)."""
    grouped: dict[str, list[str]] = {}
    for email, error in failures.items():
        reason = f"{type(error).__name__}: {error}".replace(email, "<address>")
        grouped.setdefault(reason[:200], []).append(email)
    return grouped
