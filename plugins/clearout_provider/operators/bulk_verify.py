"""ClearoutBulkVerifyOperator: verify a contacts file with one Clearout bulk list, paying once.

1. **prepare** (:func:`clearout_provider.contacts.prepare_contacts`) into the task instance's folder
   (:func:`clearout_provider.run_files.task_folder`): normalised, deduplicated, syntax-checked addresses;
   nothing left to verify → the result is written from the local verdicts without calling Clearout;
2. **upload, wait, download** with :class:`~clearout_provider.operators.bulk_list.BulkListOperator` (which
   also holds the "never spend twice" and deadline rules), after checking that the credits and the daily
   limit cover the list;
3. **finish**: normalise the result and join it onto every input row (:mod:`clearout_provider.results`),
   write ONE result file, return its path and counts.

The data-file modules (contacts, results: pyarrow, pandas) are imported when the task runs, not at the
top: that keeps DAG parsing cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from airflow.sdk import ObjectStoragePath

from clearout_provider.exceptions import ClearoutCreditsError, ClearoutDailyLimitError
from clearout_provider.hooks.clearout import ClearoutHook, Optimize
from clearout_provider.hooks.clearout_models import BulkProgress
from clearout_provider.operators.bulk_list import STATE_FILE, BulkListOperator, ClearoutBulkSlotTimeout
from clearout_provider.run_files import task_folder

__all__ = ["STATE_FILE", "ClearoutBulkSlotTimeout", "ClearoutBulkVerifyOperator"]

RESULT_FORMATS = ("parquet", "csv")


class ClearoutBulkVerifyOperator(BulkListOperator):
    """Verify every address of a contacts file with a Clearout bulk list; write one result file.

    :param source: CSV or Parquet file (local path or any fsspec URL) with an email column. Templated.
    :param email_column: the email column; detected from its name when None. Templated.
    :param clearout_conn_id: connection of type ``clearout`` (the API token is its password).
    :param workdir: base folder for task files (see :func:`clearout_provider.run_files.base_folder`). Templated.
    :param optimize: Clearout's ``highest_accuracy`` (default) or ``fastest_turnaround``.
    :param max_rows: inputs with more rows are refused; None: Clearout's recommended maximum per list
        (:data:`clearout_provider.contacts.DEFAULT_MAX_ROWS`, 500,000).
    :param result_format: ``"parquet"`` or ``"csv"``.

    Waiting parameters (``deferrable``, ``poll_interval``, ``max_poll_interval``, ``timeout``,
    ``cancel_on_timeout``, ``bulk_slot_wait``) are those of
    :class:`~clearout_provider.operators.bulk_list.BulkListOperator`.

    Returns (XCom) ``{"result_path", "list_id", "rows", "counts", "by_sub_status_code", "by_decided_by",
    "prepared", "credits_spent"}``; ``counts`` is rows per status over ALL input rows, ``credits_spent``
    the account balance before the upload minus after the download (other work on the same account
    during the run counts too; None when the list was resumed without a recorded balance).
    """

    template_fields: Sequence[str] = ("source", "email_column", "workdir")
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

    def execute(self, context: Mapping[str, Any]) -> dict[str, Any]:
        from clearout_provider.contacts import DEFAULT_MAX_ROWS, prepare_contacts

        folder = task_folder(context, self.workdir)
        max_rows = DEFAULT_MAX_ROWS if self.max_rows is None else self.max_rows
        prepared = prepare_contacts(
            self.source, email_column=self.email_column, workdir=folder, max_rows=max_rows
        )
        if prepared.counts.to_verify == 0:
            self.log.info(
                "Nothing to send to Clearout (%s): writing the local verdicts only", prepared.counts
            )
            return self._finish_list(folder, str(prepared.rows_path), asdict(prepared.counts), None, None, 0)
        return self._run_list(context, folder, prepared, prepared.counts.to_verify)

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

    def _finish_list(
        self,
        folder: ObjectStoragePath,
        rows_path: str,
        prepared: Mapping[str, int],
        list_id: str | None,
        result_csv: Path | None,
        credits_spent: int | None,
    ) -> dict[str, Any]:
        """Join Clearout's verdicts (none when nothing was sent) onto every input row; one result file."""
        from clearout_provider.results import join_results, normalise_bulk_result, verdict_table

        verdicts = normalise_bulk_result(result_csv) if result_csv is not None else verdict_table([])
        out = folder / f"clearout-result.{self.result_format}"
        summary = join_results(rows_path, verdicts, out)
        return {
            "result_path": str(out),
            "list_id": list_id,
            "rows": summary.rows,
            "counts": summary.by_status,
            "by_sub_status_code": summary.by_sub_status_code,
            "by_decided_by": summary.by_decided_by,
            "prepared": dict(prepared),
            "credits_spent": credits_spent,
        }
