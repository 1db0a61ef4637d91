"""ClearoutInstantVerifyOperator: verify a small file of addresses now, one instant call per address.

For small deltas (a nightly handful of new sign-ups) an instant call per address answers in seconds where
a bulk list queues for minutes. The result file has exactly the bulk operator's shape (input columns, then
:data:`clearout_provider.verdicts.RESULT_COLUMNS`, one row per input row), so downstream tasks do not care
which path verified. The operator picks nothing by itself: the caller (or ``choose_verification_mode``)
decides instant versus bulk, and inputs above ``max_addresses`` are refused with a pointer to the bulk
operator rather than spending an hour in rate-limit waits.

Spending: only the unique, locally valid addresses of :func:`contacts.prepare_contacts` are sent; every
answer is checkpointed as it arrives (:class:`clearout_provider.instant_calls.Checkpoint`, in the task
instance's folder) and a retry, or a cleared-and-rerun task, sends only what the checkpoint lacks.
An address Clearout times out on (524) or refuses becomes ``unknown`` with the reason in
``clearout_sub_status`` and ``decided_by = "clearout_instant_failed"`` — it is not charged and not
checkpointed, so a rerun asks again; auth, credit and daily-limit errors fail the task, keeping the
checkpoint, with a note saying how many addresses were verified first.

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
from clearout_provider.instant_calls import DEFAULT_MAX_CONCURRENCY, Checkpoint, call_each
from clearout_provider.run_files import task_folder
from clearout_provider.verdicts import Status

if TYPE_CHECKING:
    from clearout_provider.contacts import StoragePath

log = logging.getLogger(__name__)

#: Above this many unique addresses the instant path is refused: use ClearoutBulkVerifyOperator.
DEFAULT_MAX_ADDRESSES = 1_000
CHECKPOINT_NAME = "instant-verify-checkpoint"
RESULT_FORMATS = ("parquet", "csv")


class TooManyForInstant(ContactsError):
    """More unique addresses than the instant path should take; the bulk operator is the way."""


def verdict_data(result: VerifyResult) -> dict[str, Any]:
    """A typed instant answer back in the API's ``data`` shape, which ``normalise_instant_result`` reads.

    JSON-safe, so it is also what the checkpoint stores: a retry re-normalises it exactly like a fresh one.
    """
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
    """What :func:`verify_addresses` got: API ``data`` by address, and per-address failures."""

    answers: dict[str, dict[str, Any]]
    failures: dict[str, Exception]
    resumed: int
    """How many of ``answers`` came from the checkpoint of an earlier try (not paid again)."""


def verify_addresses(
    hook: ClearoutHook,
    emails: Sequence[str],
    checkpoint: Checkpoint,
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeout_ms: int | None = None,
) -> InstantOutcome:
    """Verify the ``emails`` (normalised, unique) that ``checkpoint`` does not hold yet.

    The hook's shared rate limiter paces the calls; ``max_concurrency`` bounds those in flight. The
    operator and ``bench/bench_instant.py`` both verify through here.
    """
    wanted = set(emails)
    answers = {
        k: r["data"] for k, r in checkpoint.load().items() if k in wanted and isinstance(r.get("data"), dict)
    }
    resumed = len(answers)
    pending = [e for e in emails if e not in answers]
    if resumed:
        log.info("%d addresses were verified by an earlier try (checkpoint); %d left", resumed, len(pending))

    def on_result(email: str, result: VerifyResult) -> None:
        data = verdict_data(result)
        checkpoint.add(email, {"data": data})
        answers[email] = data

    failures = call_each(
        pending,
        lambda email: hook.verify_email(email, timeout_ms=timeout_ms),
        on_result=on_result,
        max_concurrency=max_concurrency,
        what="Clearout instant verifications",
    )
    return InstantOutcome(answers=answers, failures=failures, resumed=resumed)


def _failed_row(email: str, error: Exception) -> dict[str, Any]:
    from clearout_provider.results import DecidedBy

    return {
        "normalised_email": email,
        "verified_email": email,
        "clearout_status": Status.UNKNOWN.value,
        "clearout_sub_status": f"Not verified: {error}",
        "decided_by": DecidedBy.CLEAROUT_INSTANT_FAILED.value,
    }


class ClearoutInstantVerifyOperator(BaseOperator):
    """Verify the addresses of a small CSV/Parquet file with Clearout's instant API; write one result file.

    :param source: contacts file (local path or any fsspec URL), CSV or Parquet.
    :param email_column: the email column; detected from Clearout's header names when None.
    :param clearout_conn_id: Airflow connection of type ``clearout``.
    :param workdir: base folder for this task's files (see :mod:`clearout_provider.run_files`).
    :param max_concurrency: instant calls in flight at once (the account's rate limit sets the pace).
    :param timeout_ms: how long Clearout may work on one address (≤ 180000; Clearout's default if None).
    :param max_addresses: refuse inputs with more unique addresses than this (use the bulk operator).
    :param result_format: ``"parquet"`` or ``"csv"`` (``clearout-result.<format>`` in the task folder).

    Returns the bulk operator's shape, ``{"result_path", "list_id" (None), "rows", "counts",
    "by_sub_status_code", "by_decided_by", "prepared", "credits_spent"}``, plus ``"mode": "instant"``,
    ``verified`` (addresses answered by this try), ``resumed`` (taken from an earlier try's checkpoint) and
    ``failed`` (addresses without a verdict). ``counts`` is rows per status over ALL input rows;
    ``credits_spent`` is the balance before minus after this try (other use of the account counts too).
    """

    template_fields: Sequence[str] = ("source", "email_column", "workdir")
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

    def execute(self, context: Context) -> dict[str, Any]:
        from clearout_provider.contacts import prepare_contacts
        from clearout_provider.results import join_results, normalise_instant_result, verdict_table

        folder = task_folder(context, self.workdir)
        prepared = prepare_contacts(self.source, email_column=self.email_column, workdir=folder)
        counts = prepared.counts
        if counts.to_verify > self.max_addresses:
            raise TooManyForInstant(
                f"{self.source} has {counts.to_verify:,} unique addresses to verify, more than max_addresses="
                f"{self.max_addresses:,} for instant verification; use ClearoutBulkVerifyOperator (one bulk "
                "list, no rate-limit waits) or raise max_addresses"
            )
        hook = ClearoutHook(self.clearout_conn_id)
        try:
            # Only asked when something is sent: a delta of known or invalid addresses needs no token.
            credits_before = hook.get_credits().available if counts.to_verify else None
            with Checkpoint(folder, CHECKPOINT_NAME) as checkpoint:
                outcome = verify_addresses(
                    hook,
                    list(prepared.emails_to_verify()),
                    checkpoint,
                    max_concurrency=self.max_concurrency,
                    timeout_ms=self.timeout_ms,
                )
            credits_spent = credits_before - hook.get_credits().available if credits_before is not None else 0
        finally:
            hook.close()
        # Keyed by the address SENT, whatever spelling Clearout echoes, so every answer finds its rows.
        rows = [
            {**normalise_instant_result(data), "normalised_email": e} for e, data in outcome.answers.items()
        ]
        rows += [_failed_row(email, error) for email, error in outcome.failures.items()]
        summary = join_results(
            prepared.rows_path, verdict_table(rows), folder / f"clearout-result.{self.result_format}"
        )
        if outcome.failures:
            log.warning(
                "%d addresses got no verdict from Clearout (unknown in the result, reason in clearout_sub_status)",
                len(outcome.failures),
            )
        return {
            "result_path": summary.out_path,
            "list_id": None,
            "rows": summary.rows,
            "counts": summary.by_status,
            "by_sub_status_code": summary.by_sub_status_code,
            "by_decided_by": summary.by_decided_by,
            "prepared": asdict(counts),
            "credits_spent": credits_spent,
            "mode": "instant",
            "verified": len(outcome.answers) - outcome.resumed,
            "resumed": outcome.resumed,
            "failed": len(outcome.failures),
        }
