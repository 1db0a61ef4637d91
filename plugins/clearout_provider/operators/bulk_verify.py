"""ClearoutBulkVerifyOperator: verify a contacts file with one Clearout bulk list, paying once.

1. **prepare** (:func:`clearout_provider.contacts.prepare_contacts`) into the task instance's folder
   (:func:`clearout_provider.run_files.task_folder`): normalised, deduplicated, syntax-checked addresses;
2. **ask the ledger** (:mod:`clearout_provider.verification.plan`): addresses with a fresh verdict in the
   verdict ledger are not sent; nothing left to verify → the result is written without calling Clearout;
   ``dry_run`` stops here and says what would be sent;
3. **upload, wait, download** with :class:`~clearout_provider.operators.bulk_list.BulkListOperator` (which
   also holds the "never spend twice" and deadline rules), after checking that the credits and the daily
   limit cover the list;
4. **finish**: normalise the result, record it in the ledger at once (before anything is written to
   CleverTap), and join it with the reused verdicts onto every input row (:mod:`clearout_provider.results`):
   ONE result file, its path and counts returned.

The data-file modules (contacts, results: pyarrow, pandas) are imported when the task runs, not at the
top: that keeps DAG parsing cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import ObjectStoragePath

from clearout_provider.clearout.models import BulkProgress
from clearout_provider.clearout.statuses import CANCELLED_CODE
from clearout_provider.exceptions import ClearoutCreditsError, ClearoutDailyLimitError
from clearout_provider.hooks.clearout import ClearoutHook, Optimize
from clearout_provider.operators.bulk_list import (
    STATE_FILE,
    BulkListOperator,
    ClearoutBulkSlotTimeout,
    local_dir,
)
from clearout_provider.operators.settings import resolve_flag, resolve_freshness
from clearout_provider.run_files import task_folder

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from clearout_provider.contacts import ContactCounts, Freshness

__all__ = ["STATE_FILE", "ClearoutBulkSlotTimeout", "ClearoutBulkVerifyOperator"]

RESULT_FORMATS = ("parquet", "csv")


class ClearoutBulkVerifyOperator(BulkListOperator):
    """Verify every address of a contacts file with a Clearout bulk list; write one result file.

    :param source: CSV or Parquet file (local path or any fsspec URL) with an email column. Templated.
    :param email_column: the email column; detected from its name when None. Templated.
    :param clearout_conn_id: connection of type ``clearout`` (the API token is its password).
    :param workdir: base folder for task files (see :func:`clearout_provider.run_files.base_folder`).
        Templated.
    :param optimize: Clearout's ``highest_accuracy`` (default) or ``fastest_turnaround``.
    :param max_rows: inputs with more rows are refused; None: Clearout's recommended maximum per list
        (:data:`clearout_provider.contacts.DEFAULT_MAX_ROWS`, 500,000).
    :param result_format: ``"parquet"`` or ``"csv"``.

    Waiting parameters (``deferrable``, ``poll_interval``, ``max_poll_interval``, ``timeout``,
    ``cancel_on_timeout``, ``bulk_slot_wait``) are those of
    :class:`~clearout_provider.operators.bulk_list.BulkListOperator`.

    :param freshness: how long a verdict in the verdict ledger is reused instead of sending the address
        (:class:`~clearout_provider.contacts.Freshness` or a dict of its fields; None = its defaults).
        Templated.
    :param dry_run: upload nothing: the result marks the addresses that would be sent (no verdict, nothing
        written for them downstream) and ``credits_needed`` says what the list may cost. Templated.

    Returns (XCom) ``{"result_path", "list_id", "rows", "counts", "by_sub_status_code", "by_decided_by",
    "prepared", "credits_spent", "sent", "reused", "credits_needed", "dry_run"}``; ``counts`` is rows per
    status over ALL input rows; ``reused`` addresses were answered by the ledger, ``sent`` were in the
    list; ``credits_spent`` the account balance before the upload minus after the download (other work on
    the same account during the run counts too; None when the list was resumed without a recorded balance).
    """

    template_fields: Sequence[str] = ("source", "email_column", "workdir", "freshness", "dry_run_enabled")
    clearout_kind = "verify"
    list_noun = "bulk list"
    limit_code = 1001
    ui_color = "#d3f1ff"

    def __init__(
        self,
        *,
        source: str | os.PathLike[str],
        email_column: str | None = None,
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        workdir: str | None = None,
        optimize: Optimize = "highest_accuracy",
        max_rows: int | None = None,
        result_format: Literal["parquet", "csv"] = "parquet",
        freshness: Freshness | Mapping[str, Any] | str | None = None,
        dry_run: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if result_format not in RESULT_FORMATS:
            raise ValueError(f"result_format must be one of {RESULT_FORMATS}, not {result_format!r}")
        self.source = source
        self.email_column = email_column
        self.clearout_conn_id = clearout_conn_id
        self.workdir = workdir
        self.optimize = optimize
        self.max_rows = max_rows
        self.result_format = result_format
        self.freshness = freshness
        self.dry_run_enabled = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        from clearout_provider.contacts import DEFAULT_MAX_ROWS, prepare_contacts
        from clearout_provider.verification.ledger import VerdictLedger
        from clearout_provider.verification.model import DecidedBy
        from clearout_provider.verification.plan import not_sent, plan_verification

        folder = task_folder(context, self.workdir)
        max_rows = DEFAULT_MAX_ROWS if self.max_rows is None else self.max_rows
        prepared = prepare_contacts(
            self.source, email_column=self.email_column, workdir=folder, max_rows=max_rows
        )
        plan = plan_verification(prepared, VerdictLedger(), resolve_freshness(self.freshness), context)
        counts = asdict(prepared.counts)
        if resolve_flag(self.dry_run_enabled, "dry_run"):
            self.log.info("Dry run: %d addresses would be sent to Clearout; nothing uploaded", plan.to_send)
            pending = not_sent(plan.emails(), DecidedBy.DRY_RUN, "dry run: not sent")
            return self._finish_list(context, folder, str(prepared.rows_path), counts, None, None, 0, pending)
        if plan.upload_path is None:
            self.log.info(
                "Nothing to send to Clearout (%s, %d from the ledger): writing the known verdicts only",
                prepared.counts,
                plan.reused,
            )
            return self._finish_list(context, folder, str(prepared.rows_path), counts, None, None, 0)
        upload = _PlannedUpload(plan.upload_path, prepared.rows_path, prepared.counts)
        return self._run_list(context, folder, upload, plan.to_send)

    def _send_upload(self, upload: Path, *, ignore_duplicate_file: bool) -> str:
        return self.hook.upload_bulk_verify(
            upload, optimize=self.optimize, ignore_duplicate_file=ignore_duplicate_file
        ).list_id

    def _list_progress(self, list_id: str) -> BulkProgress:
        return self.hook.get_bulk_progress(list_id)

    def _download_result(self, list_id: str, dest: Path) -> None:
        self.hook.download_bulk_result(list_id, dest)

    def _check_credits(self, to_send: int) -> int:
        """Fail before uploading when the balance or the daily limit cannot cover every address."""
        credits = self.hook.get_credits()
        if credits.available < to_send:
            raise ClearoutCreditsError(
                f"The Clearout account has {credits.available} credits but this list has {to_send} addresses "
                "to verify (each may cost a credit); nothing was uploaded",
                required_credits=to_send - credits.available,
            )
        daily = credits.daily_verify_limit_remaining
        if daily is not None and daily < to_send:
            raise ClearoutDailyLimitError(
                f"The Clearout account may verify {daily} more addresses today but this list has {to_send}; "
                "nothing was uploaded"
            )
        return credits.available

    def _harvest(self, context: Mapping[str, Any], list_id: str) -> int:
        """Record the verdicts a cancelled list processed (its unprocessed rows, 605, are no verdicts)."""
        import pyarrow.compute as pc

        from clearout_provider.exceptions import ClearoutListUnavailable
        from clearout_provider.results import normalise_bulk_result
        from clearout_provider.verification.ledger import VerdictLedger, recorded_by

        raw = local_dir(task_folder(context, self.workdir)) / f"clearout-verify-cancelled-{list_id}.csv"
        try:
            self._download_result(list_id, raw)
        except ClearoutListUnavailable as gone:
            self.log.warning(
                "The result of cancelled list %s is not available (%s): nothing kept", list_id, gone
            )
            return 0
        verdicts = normalise_bulk_result(raw)
        processed = verdicts.filter(
            pc.invert(pc.fill_null(pc.equal(verdicts["clearout_sub_status_code"], CANCELLED_CODE), False))
        )
        kept = VerdictLedger().record(processed, source=list_id, recorded_by=recorded_by(context))
        self.log.info("Cancelled list %s had processed %d of %d addresses: their verdicts are kept",
                      list_id, kept, verdicts.num_rows)  # fmt: skip
        return kept

    def _finish_list(
        self,
        context: Mapping[str, Any],
        folder: ObjectStoragePath,
        rows_path: str,
        prepared: Mapping[str, int],
        list_id: str | None,
        result_csv: Path | None,
        credits_spent: int | None,
        pending: pa.Table | None = None,
    ) -> dict[str, Any]:
        """Record Clearout's verdicts in the ledger, then join them, the reused ones and any ``pending``
        (no-verdict rows) onto every input row; one result file."""
        import pyarrow as pa

        from clearout_provider.results import join_results, normalise_bulk_result
        from clearout_provider.verification.ledger import VerdictLedger, recorded_by
        from clearout_provider.verification.plan import REUSED_FILE, read_reused

        reused = read_reused(folder / REUSED_FILE)
        parts = [reused]
        if result_csv is not None:
            verdicts = normalise_bulk_result(result_csv)
            VerdictLedger().record(verdicts, source=str(list_id), recorded_by=recorded_by(context))
            parts.append(verdicts)
        if pending is not None:
            parts.append(pending)
        out = folder / f"clearout-result.{self.result_format}"
        summary = join_results(rows_path, pa.concat_tables(parts), out)
        sent = 0 if list_id is None else prepared["to_verify"] - reused.num_rows
        return {
            "result_path": str(out),
            "list_id": list_id,
            "rows": summary.rows,
            "counts": summary.by_status,
            "by_sub_status_code": summary.by_sub_status_code,
            "by_decided_by": summary.by_decided_by,
            "prepared": dict(prepared),
            "credits_spent": credits_spent,
            "sent": sent,
            "reused": reused.num_rows,
            "credits_needed": prepared["to_verify"] - reused.num_rows,
            "dry_run": pending is not None,
        }


#: Clearout's sub-status of the unprocessed rows of a cancelled list ("Request Cancelled"): no verdict.


@dataclass(frozen=True)
class _PlannedUpload:
    """What the list uploads after the ledger's answers are taken out (see BulkListOperator)."""

    upload_path: Path | ObjectStoragePath
    rows_path: Path | ObjectStoragePath
    counts: ContactCounts
