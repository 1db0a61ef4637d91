"""ClearoutBulkVerifyOperator: verify a contacts file as one bulk job (a Clearout list, Mail.so batches),
paying once.

1. **prepare** (:func:`clearout_provider.contacts.prepare_contacts`) into the task instance's folder
   (:func:`clearout_provider.run_files.task_folder`): normalised, deduplicated, syntax-checked addresses;
2. **ask the ledger** (:mod:`clearout_provider.verification.plan`): addresses with a fresh verdict in the
   verdict ledger are not sent; nothing left to verify → the result is written without calling Clearout;
   ``dry_run`` stops here and says what would be sent;
3. **upload, wait, download** with :class:`~clearout_provider.operators.bulk_list.BulkListOperator` (which
   also holds the "never spend twice" and deadline rules), after checking that the credits and the daily
   limit cover the list (Mail.so publishes no balance: nothing to check), through the verifier's
   :class:`~clearout_provider.verification.verifier.BulkVerifier` (``verifier="clearout"`` or
   ``"mailso"``): the operator never names a vendor's code;
4. **finish**: take the job's verdicts, record them in the ledger at once (before anything is written to
   CleverTap), and join them with the reused verdicts onto every input row
   (:mod:`clearout_provider.results`): ONE result file, its path and counts returned.

Mail.so (``verifier="mailso"``, connection ``mailso_conn_id``): the job is the file's batches of the
connection's ``batch_size`` extra, each batch id checkpointed in the task folder before the next is posted
(:mod:`clearout_provider.mailso.verifier`), so a retried or cleared task collects them instead of paying
again. A batch whose creation answer was lost is never re-posted: the task fails
(:class:`~clearout_provider.exceptions.MailsoBatchInDoubt`) and says how to decide. Mail.so cannot cancel
a batch: ``cancel_on_timeout`` and a cleared task leave it running (it is paid for at creation), and
``credits_spent`` is None (no balance endpoint; ``sent`` is what was charged, one per address).

The data-file modules (contacts, results: pyarrow, pandas) are imported when the task runs, not at the
top: that keeps DAG parsing cheap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import ObjectStoragePath

from clearout_provider.credit_check import LowCreditAction, check_credits, low_credit_action
from clearout_provider.exceptions import JobUnavailable
from clearout_provider.hooks.clearout import ClearoutHook, Optimize
from clearout_provider.hooks.mailso import MailsoHook
from clearout_provider.operators.bulk_list import (
    STATE_FILE,
    BulkListOperator,
    ClearoutBulkSlotTimeout,
)
from clearout_provider.operators.links import BULK_VERIFY_LINKS
from clearout_provider.operators.settings import resolve_flag, resolve_freshness, templated
from clearout_provider.run_files import scratch_dir, task_folder
from clearout_provider.verification.model import JobProgress
from clearout_provider.verification.verifier import BulkVerifier, spec, verifier_for

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from clearout_provider.contacts import ContactCounts, Freshness
    from clearout_provider.lineage import Lineage

__all__ = ["STATE_FILE", "ClearoutBulkSlotTimeout", "ClearoutBulkVerifyOperator"]

RESULT_FORMATS = ("parquet", "csv")


class ClearoutBulkVerifyOperator(BulkListOperator):
    """Verify every address of a contacts file as one bulk job; write one result file.

    :param source: CSV or Parquet file (local path or any fsspec URL) with an email column. Templated.
    :param email_column: the email column; detected from its name when None. Templated.
    :param verifier: ``"clearout"`` (a bulk list, default) or ``"mailso"`` (Mail.so batches).
    :param clearout_conn_id: connection of type ``clearout`` (the API token is its password).
    :param mailso_conn_id: connection of type ``mailso`` (with ``verifier="mailso"``; its ``batch_size``
        extra sets the addresses per batch).
    :param workdir: base folder for task files (see :func:`clearout_provider.run_files.base_folder`).
        Templated.
    :param optimize: Clearout's ``highest_accuracy`` (default) or ``fastest_turnaround`` (Clearout only).
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
    :param low_credit: ``"warn"`` or ``"fail"`` when the balance is low before the upload (below what the
        list may cost, or below Clearout's low-credit threshold; :mod:`clearout_provider.credit_check`);
        None: ``[clearout] low_credit_action``.

    Returns (XCom) ``{"result_path", "list_id", "rows", "counts", "by_sub_status_code", "by_decided_by",
    "prepared", "credits_spent", "sent", "reused", "credits_needed", "dry_run", "verifier"}``; ``counts``
    is rows per status over ALL input rows; ``reused`` addresses were answered by the ledger, ``sent``
    were in the list; ``credits_spent`` the account balance before the upload minus after the download
    (other work on the same account during the run counts too; None when the list was resumed without a
    recorded balance, and for Mail.so, which publishes no balance). ``list_id`` is the job id (Mail.so:
    its batch ids); ``verifier`` who verified.
    """

    template_fields: Sequence[str] = (
        "source",
        "email_column",
        "workdir",
        "freshness",
        "dry_run_enabled",
        "verifier_name",
    )
    clearout_kind = "verify"
    list_noun = "bulk list"
    operator_extra_links = BULK_VERIFY_LINKS
    ui_color = "#d3f1ff"

    def __init__(
        self,
        *,
        source: str | os.PathLike[str],
        email_column: str | None = None,
        verifier: str = "clearout",
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        mailso_conn_id: str = MailsoHook.default_conn_name,
        workdir: str | None = None,
        optimize: Optimize = "highest_accuracy",
        max_rows: int | None = None,
        result_format: Literal["parquet", "csv"] = "parquet",
        freshness: Freshness | Mapping[str, Any] | str | None = None,
        dry_run: bool | str = False,
        low_credit: LowCreditAction | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if result_format not in RESULT_FORMATS:
            raise ValueError(f"result_format must be one of {RESULT_FORMATS}, not {result_format!r}")
        if low_credit is not None:
            low_credit_action(low_credit)  # a typo fails when the DAG is parsed
        if not templated(verifier):
            spec(verifier)  # refuses an unknown verifier when the DAG is parsed (a template: when it runs)
        self.source = source
        self.email_column = email_column
        self.verifier_name = verifier
        self.clearout_conn_id = clearout_conn_id
        self.mailso_conn_id = mailso_conn_id
        self.workdir = workdir
        self.optimize = optimize
        self.max_rows = max_rows
        self.result_format = result_format
        self.freshness = freshness
        self.dry_run_enabled = dry_run
        self.low_credit = low_credit
        self._journal: ObjectStoragePath | None = None

    @property
    def _conn_id(self) -> str:
        return self.mailso_conn_id if self.verifier_name == "mailso" else self.clearout_conn_id

    @cached_property
    def bulk(self) -> BulkVerifier:
        """The verifier every upload, poll, download and balance goes through (one per task run)."""
        options = {"optimize": self.optimize} if self.verifier_name == "clearout" else {}
        return verifier_for(self.verifier_name, self._conn_id, **options)

    def _jobs(self) -> BulkVerifier:
        return self.bulk

    def execute(self, context: Context) -> dict[str, Any]:
        from clearout_provider.contacts import DEFAULT_MAX_ROWS, prepare_contacts
        from clearout_provider.verification.ledger import VerdictLedger
        from clearout_provider.verification.model import DecidedBy
        from clearout_provider.verification.plan import not_sent, plan_verification

        spec(self.verifier_name)  # a rendered "{{ params.verifier }}" is checked here
        folder = self._journal = task_folder(context, self.workdir)
        max_rows = DEFAULT_MAX_ROWS if self.max_rows is None else self.max_rows
        prepared = prepare_contacts(
            self.source, email_column=self.email_column, workdir=folder, max_rows=max_rows
        )
        plan = plan_verification(prepared, VerdictLedger(), resolve_freshness(self.freshness), context)
        counts = asdict(prepared.counts)
        if resolve_flag(self.dry_run_enabled, "dry_run"):
            self.log.info("Dry run: %d addresses would be sent to %s; nothing uploaded",
                          plan.to_send, self.bulk.spec.label)  # fmt: skip
            pending = not_sent(plan.emails(), DecidedBy.DRY_RUN, "dry run: not sent")
            return self._finish_list(context, folder, str(prepared.rows_path), counts, None, None, 0, pending)
        if plan.upload_path is None:
            self.log.info(
                "Nothing to send to %s (%s, %d from the ledger): writing the known verdicts only",
                self.bulk.spec.label,
                prepared.counts,
                plan.reused,
            )
            return self._finish_list(context, folder, str(prepared.rows_path), counts, None, None, 0)
        upload = _PlannedUpload(plan.upload_path, prepared.rows_path, prepared.counts)
        return self._run_list(context, folder, upload, plan.to_send)

    def _send_upload(self, upload: Path, *, ignore_duplicate_file: bool) -> str:
        assert self._journal is not None, "execute() sets the task folder before uploading"
        return self.bulk.submit(upload, journal=self._journal, fresh=ignore_duplicate_file)

    def _list_progress(self, list_id: str) -> JobProgress:
        return self.bulk.progress(list_id)

    def _result_file(self, scratch: Path, list_id: str) -> Path:
        """The job's verdicts as Parquet, named by a digest (a Mail.so job id is many batch ids long)."""
        digest = hashlib.sha256(list_id.encode()).hexdigest()[:16]
        return scratch / f"{self.verifier_name}-verify-verdicts-{digest}.parquet"

    def _download_result(self, list_id: str, dest: Path) -> None:
        """Download the job's verdicts (result columns) and keep them in ``dest`` for ``_finish_list``."""
        import pyarrow.parquet as pq

        pq.write_table(self.bulk.download(list_id, dest.parent), dest)

    def _check_credits(self, to_send: int) -> int | None:
        """Before uploading: the low-credit check (warn or fail), then fail when the balance or the daily
        limit cannot cover every address (one balance read). ``_check_credits(0)``, after the download,
        reads the balance."""
        if not to_send:
            return self.bulk.check_funds(0)
        action = low_credit_action(self.low_credit)
        funds = check_credits(
            self.bulk, to_send, action=action, verifier_name=self.verifier_name, dag_id=self.dag_id
        )
        return self.bulk.check_funds(to_send, funds)

    def _harvest(self, context: Mapping[str, Any], list_id: str) -> int:
        """Record the verdicts a cancelled job processed (the verifier leaves out the rows it did not)."""
        from clearout_provider.verification.ledger import VerdictLedger, recorded_by

        try:
            with scratch_dir(task_folder(context, self.workdir)) as scratch:
                processed = self.bulk.download(list_id, scratch)
        except JobUnavailable as gone:
            self.log.warning(
                "The result of cancelled job %s is not available (%s): nothing kept", list_id, gone
            )
            return 0
        kept = VerdictLedger().record(processed, source=list_id, recorded_by=recorded_by(context))
        self.log.info("Cancelled job %s had processed %d addresses: their verdicts are kept", list_id, kept)
        return kept

    def _finish_list(
        self,
        context: Mapping[str, Any],
        folder: ObjectStoragePath,
        rows_path: str,
        prepared: Mapping[str, int],
        list_id: str | None,
        result_file: Path | None,
        credits_spent: int | None,
        pending: pa.Table | None = None,
    ) -> dict[str, Any]:
        """Record the job's verdicts (``result_file``, see ``_download_result``) in the ledger, then join
        them, the reused ones and any ``pending`` (no-verdict rows) onto every input row; one result file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from clearout_provider.results import join_results
        from clearout_provider.verification.ledger import VerdictLedger, recorded_by
        from clearout_provider.verification.plan import REUSED_FILE, read_reused

        reused = read_reused(folder / REUSED_FILE)
        parts = [reused]
        if result_file is not None:
            verdicts = pq.read_table(result_file)
            VerdictLedger().record(verdicts, source=str(list_id), recorded_by=recorded_by(context))
            parts.append(verdicts)
        if pending is not None:
            parts.append(pending)
        out = folder / f"clearout-result.{self.result_format}"
        summary = join_results(rows_path, pa.concat_tables(parts), out)
        sent = 0 if list_id is None else prepared["to_verify"] - reused.num_rows
        self._lineage_facts = {
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
            "verifier": self.verifier_name,
        }
        return self._lineage_facts

    #: What the last run returned, for OpenLineage (None until a run finished).
    _lineage_facts: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """OpenLineage (the ``openlineage`` extra): the contacts file read, the bulk job (a Clearout list,
        Mail.so batches) the addresses went to, the verdicts file written."""
        from clearout_provider.lineage import verify_lineage

        return verify_lineage(self.verifier_name, self._conn_id, self.source, self._lineage_facts)


@dataclass(frozen=True)
class _PlannedUpload:
    """What the list uploads after the ledger's answers are taken out (see BulkListOperator)."""

    upload_path: Path | ObjectStoragePath
    rows_path: Path | ObjectStoragePath
    counts: ContactCounts
