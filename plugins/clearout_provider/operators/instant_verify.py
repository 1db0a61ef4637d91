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
``verdict_reason``; it is not recorded, the load writes nothing for it, and the next run asks
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

from clearout_provider.credit_check import LowCreditAction, check_credits, low_credit_action
from clearout_provider.exceptions import ContactsError
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.instant_calls import DEFAULT_MAX_CONCURRENCY, Checkpoint, call_each
from clearout_provider.operators.settings import resolve_flag, resolve_freshness, templated
from clearout_provider.run_files import task_folder
from clearout_provider.verification.verifier import InstantVerifier, spec, verifier_for

if TYPE_CHECKING:
    from clearout_provider.contacts import Freshness, StoragePath
    from clearout_provider.lineage import Lineage
    from clearout_provider.verification.ledger import LedgerJournal

log = logging.getLogger(__name__)

#: Above this many unique addresses the instant path is refused: use ClearoutBulkVerifyOperator.
DEFAULT_MAX_ADDRESSES = 1_000
#: Mail.so: above this many addresses to send, batches instead of one call each.
DEFAULT_BATCH_ABOVE = 100
RESULT_FORMATS = ("parquet", "csv")


class TooManyForInstant(ContactsError):
    """More unique addresses than the instant path should take; the bulk operator is the way."""


@dataclass(frozen=True)
class InstantOutcome:
    """What :func:`verify_addresses` got: verdict rows by address sent, and per-address failures."""

    verdicts: dict[str, dict[str, Any]]
    failures: dict[str, Exception]


def verify_addresses(
    verifier: InstantVerifier,
    emails: Sequence[str],
    journal: LedgerJournal,
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> InstantOutcome:
    """Verify ``emails`` (normalised, unique), journalling every verdict in the ledger as it arrives.

    The verifier's shared rate limiter paces the calls; ``max_concurrency`` bounds those in flight. The
    operator, the sign-up DAG and ``bench/bench_instant.py`` all verify through here. Rows are keyed by
    the address SENT, whatever spelling the vendor echoes, so every answer finds its rows.
    """
    verdicts: dict[str, dict[str, Any]] = {}

    def on_result(email: str, row: dict[str, Any]) -> None:
        row = {**row, "normalised_email": email}
        journal.add(row)
        verdicts[email] = row

    failures = call_each(
        list(emails),
        verifier.verify_one,
        on_result=on_result,
        item_failures=verifier.item_failures,
        max_concurrency=max_concurrency,
        what=f"{verifier.spec.label} instant verifications",
    )
    return InstantOutcome(verdicts=verdicts, failures=failures)


class ClearoutInstantVerifyOperator(BaseOperator):
    """Verify the addresses of a small CSV/Parquet file one instant call each; write one result file.

    :param source: contacts file (local path or any fsspec URL), CSV or Parquet.
    :param email_column: the email column; detected from the usual header names when None.
    :param verifier: who verifies: ``"clearout"`` (instant verify API) or ``"mailso"`` (validate API).
    :param clearout_conn_id: Airflow connection of type ``clearout`` (verifier ``clearout``).
    :param mailso_conn_id: Airflow connection of type ``mailso`` (verifier ``mailso``).
    :param workdir: base folder for this task's files (see :mod:`clearout_provider.run_files`).
    :param max_concurrency: instant calls in flight at once (the account's rate limit sets the pace).
    :param timeout_ms: how long Clearout may work on one address (<= 180000; Clearout's default if None).
    :param max_addresses: refuse inputs with more addresses to send than this (use the bulk operator).
        Mail.so inputs above ``batch_above`` go as batches instead and are not limited.
    :param batch_above: Mail.so only: more addresses to send than this are validated as batches (of the
        connection's ``batch_size``; each batch id checkpointed before waiting), fewer one call each.
    :param result_format: ``"parquet"`` or ``"csv"`` (``<verifier>-result.<format>`` in the task folder).
    :param freshness: how long a verdict in the ledger is reused (:class:`~clearout_provider.contacts.
        Freshness` or a dict of its fields; None = its defaults). Templated.
    :param dry_run: send nothing; the result marks what would be sent (no verdict) and the return value
        says how many credits it may cost. Templated.
    :param low_credit: ``"warn"`` or ``"fail"`` when the balance is low before the first call (below one
        credit per address to send, or below Clearout's low-credit threshold;
        :mod:`clearout_provider.credit_check`); None: ``[clearout] low_credit_action``.

    Returns ``{"result_path", "list_id" (None), "rows", "counts", "by_verdict", "by_sub_status_code",
    "by_decided_by", "prepared", "credits_spent", "mode": "instant", "verifier", "sent", "reused",
    "verified", "failed", "credits_needed", "dry_run"}``: ``counts`` is by the verifier's own status
    words, ``by_verdict`` by the neutral verdict; ``reused`` addresses came from the ledger (not paid
    again), ``sent`` were asked of the verifier (``verified`` answered, ``failed`` without a verdict);
    ``credits_needed`` is at most one per address sent. ``credits_spent`` is the balance before minus
    after this try (other use of the account counts too; None when the verifier reports no balance).
    """

    template_fields: Sequence[str] = (
        "source",
        "email_column",
        "workdir",
        "freshness",
        "dry_run_enabled",
        "verifier",
    )
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        source: StoragePath,
        email_column: str | None = None,
        verifier: str = "clearout",
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        mailso_conn_id: str = "mailso_default",
        workdir: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        timeout_ms: int | None = None,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        batch_above: int = DEFAULT_BATCH_ABOVE,
        result_format: Literal["parquet", "csv"] = "parquet",
        freshness: Freshness | dict[str, Any] | str | None = None,
        dry_run: bool | str = False,
        low_credit: LowCreditAction | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if result_format not in RESULT_FORMATS:
            raise ValueError(f"result_format must be one of {RESULT_FORMATS}, not {result_format!r}")
        if low_credit is not None:
            low_credit_action(low_credit)  # a typo fails when the DAG is parsed
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if timeout_ms is not None and not 0 < timeout_ms <= 180_000:
            raise ValueError(
                f"timeout_ms must be between 1 and 180000 (Clearout's maximum), not {timeout_ms}"
            )
        if not templated(verifier):
            spec(verifier)  # an unknown verifier fails at parse time, with the choices
        self.source = source
        self.email_column = email_column
        self.verifier = verifier
        self.clearout_conn_id = clearout_conn_id
        self.mailso_conn_id = mailso_conn_id
        self.workdir = workdir
        self.max_concurrency = max_concurrency
        self.timeout_ms = timeout_ms
        self.max_addresses = max_addresses
        self.batch_above = batch_above
        self.result_format = result_format
        self.freshness = freshness
        self.dry_run_enabled = dry_run
        self.low_credit = low_credit

    def execute(self, context: Context) -> dict[str, Any]:
        import pyarrow as pa

        from clearout_provider.contacts import prepare_contacts
        from clearout_provider.results import join_results
        from clearout_provider.verification.ledger import VerdictLedger, recorded_by
        from clearout_provider.verification.model import DecidedBy
        from clearout_provider.verification.plan import not_sent, plan_verification, read_reused

        dry_run = resolve_flag(self.dry_run_enabled, "dry_run")
        who = spec(self.verifier)
        folder = task_folder(context, self.workdir)
        prepared = prepare_contacts(self.source, email_column=self.email_column, workdir=folder)
        ledger = VerdictLedger(verifier=who.name)
        plan = plan_verification(prepared, ledger, resolve_freshness(self.freshness), context)
        batched = who.name == "mailso" and plan.to_send > self.batch_above
        if plan.to_send > self.max_addresses and not batched:
            raise TooManyForInstant(
                f"{self.source} has {plan.to_send:,} addresses to verify, more than max_addresses="
                f"{self.max_addresses:,} for instant verification; use ClearoutBulkVerifyOperator (one bulk "
                "list, no rate-limit waits) or raise max_addresses"
            )
        emails = plan.emails()
        parts = [read_reused(plan.reused_path)]
        credits_spent: int | None = 0
        outcome = InstantOutcome({}, {})
        if dry_run:
            parts.append(not_sent(emails, DecidedBy.DRY_RUN, "dry run: not sent"))
        elif emails:
            outcome, credits_spent = self._verify(emails, ledger, recorded_by(context), folder, batched)
            parts.append(pa.Table.from_pylist(list(outcome.verdicts.values()), schema=parts[0].schema))
            for reason, failed in _by_reason(outcome.failures).items():
                parts.append(not_sent(failed, who.instant_failed, f"not verified: {reason}"))
        summary = join_results(
            prepared.rows_path,
            pa.concat_tables(parts),
            folder / f"{who.name}-result.{self.result_format}",
            verifier=who.name,
        )
        if outcome.failures:
            log.warning(
                "%d addresses got no verdict from %s: nothing is written for them and the next run "
                "asks again (reasons in the verdict_reason column)",
                len(outcome.failures),
                who.label,
            )
        self._lineage_facts = {
            "result_path": summary.out_path,
            "list_id": None,
            "rows": summary.rows,
            "counts": summary.by_status,
            "by_verdict": summary.by_verdict,
            "by_sub_status_code": summary.by_sub_status_code,
            "by_decided_by": summary.by_decided_by,
            "prepared": asdict(prepared.counts),
            "credits_spent": credits_spent,
            "mode": "batch" if batched else "instant",
            "verifier": who.name,
            "sent": 0 if dry_run else plan.to_send,
            "reused": plan.reused,
            "verified": len(outcome.verdicts),
            "failed": len(outcome.failures),
            "credits_needed": plan.to_send,
            "dry_run": dry_run,
        }
        return self._lineage_facts

    def _verify(
        self, emails: list[str], ledger: Any, paid_by: str, folder: Any, batched: bool
    ) -> tuple[InstantOutcome, int | None]:
        if self.verifier == "mailso":
            verifier = verifier_for("mailso", self.mailso_conn_id)
        else:
            verifier = verifier_for("clearout", self.clearout_conn_id, timeout_ms=self.timeout_ms)
        try:
            funds = check_credits(  # warns or fails (nothing sent yet) when the balance is low
                verifier,
                len(emails),
                action=low_credit_action(self.low_credit),
                verifier_name=verifier.spec.name,
                dag_id=self.dag_id,
            )
            before = funds.available if funds is not None else None
            with ledger.journal(source="batch" if batched else "instant", recorded_by=paid_by) as journal:
                if batched:
                    outcome = _verify_in_batches(verifier, emails, journal, folder)
                else:
                    outcome = verify_addresses(
                        verifier, emails, journal, max_concurrency=self.max_concurrency
                    )
            after = verifier.balance()
            if before is not None and after is not None:
                return outcome, before - after
            # No balance to read (Mail.so): it charges every answer, so count them.
            return outcome, len(outcome.verdicts) if verifier.spec.charges_unknown else None
        finally:
            verifier.close()

    #: What the last run returned, for OpenLineage (None until a run finished).
    _lineage_facts: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """OpenLineage (the ``openlineage`` extra): the contacts file read, the instant calls (Mail.so:
        or batches) the addresses went to, the verdicts file written."""
        from clearout_provider.lineage import verify_lineage

        conn_id = self.mailso_conn_id if self.verifier == "mailso" else self.clearout_conn_id
        return verify_lineage(self.verifier, conn_id, self.source, self._lineage_facts)


def _verify_in_batches(
    verifier: Any, emails: list[str], journal: LedgerJournal, folder: Any
) -> InstantOutcome:
    """Mail.so batches, each id checkpointed in the task folder before waiting (a retry collects it)."""
    verdicts: dict[str, dict[str, Any]] = {}

    def on_result(email: str, row: dict[str, Any]) -> None:
        row = {**row, "normalised_email": email}
        journal.add(row)
        verdicts[email] = row

    with Checkpoint(folder, "mailso-batches") as checkpoint:
        verifier.verify_in_batches(emails, checkpoint, on_result)
    missing = [e for e in emails if e not in verdicts]
    failures: dict[str, Exception] = {
        e: MissingFromBatch("Mail.so's finished batch did not answer this address") for e in missing
    }
    return InstantOutcome(verdicts=verdicts, failures=failures)


class MissingFromBatch(Exception):
    """A finished Mail.so batch without an answer for an address sent in it (no verdict: it stays due)."""


def _by_reason(failures: dict[str, Exception]) -> dict[str, list[str]]:
    """Failed addresses grouped by a short reason (the exception's class and message, no address)."""
    grouped: dict[str, list[str]] = {}
    for email, error in failures.items():
        reason = f"{type(error).__name__}: {error}".replace(email, "<address>")
        grouped.setdefault(reason[:200], []).append(email)
    return grouped
