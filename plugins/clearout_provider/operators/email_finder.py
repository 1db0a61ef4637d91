"""Email Finder operators: find addresses from name + domain (or company) rows, instantly or as a bulk list.

Both read the same input (:func:`clearout_provider.finder_files.prepare_finder_queries`: rows without a
name or without a domain/company are decided locally, repeated queries are sent once) and write the same
result file (input columns, then :data:`~clearout_provider.finder_files.FINDER_COLUMNS`), so a pipeline
can switch between them by size alone.

* :class:`ClearoutEmailFinderOperator` — one instant call per distinct query, at the account's finder
  rate (the hook's limiter), a bounded number in flight. A search that outlives ``timeout_ms`` answers
  524 with a ``queue_id`` and the hook polls the queue until the answer is ready. Every answer is
  checkpointed as it arrives, and so is the ``queue_id`` of a search still running when the wait ends:
  a rerun collects that answer from the queue instead of searching (and paying) again.
* :class:`ClearoutBulkEmailFinderOperator` — one bulk finder list, deferred to
  :class:`~clearout_provider.triggers.bulk_job.ClearoutBulkJobTrigger` (kind ``"finder"``), with the bulk
  verify operator's "never spend twice" rules: the list is remembered in the task folder's state file
  before waiting, a retry resumes it, and Clearout's duplicate-file answer (2043) resumes the list it
  names; a cancelled, removed or expired list is uploaded again.

:mod:`clearout_provider.finder_files` and :mod:`clearout_provider.contacts` (pyarrow, pandas) are imported
when the task runs, not at the top: that keeps DAG parsing cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator, Context, ObjectStoragePath

from clearout_provider.clearout.models import BulkProgress, FinderResult
from clearout_provider.exceptions import (
    CLEAROUT_ITEM_FAILURES,
    ClearoutBadInput,
    ClearoutTimeout,
)
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.instant_calls import DEFAULT_MAX_CONCURRENCY, Checkpoint, call_each
from clearout_provider.operators.bulk_list import BulkListOperator
from clearout_provider.operators.instant_verify import TooManyForInstant
from clearout_provider.run_files import task_folder

if TYPE_CHECKING:
    from clearout_provider.contacts import StoragePath
    from clearout_provider.finder_files import FinderQuery, FinderSummary, PreparedQueries

log = logging.getLogger(__name__)

#: Above this many distinct queries the instant finder is refused: use ClearoutBulkEmailFinderOperator.
DEFAULT_MAX_QUERIES = 500
CHECKPOINT_NAME = "instant-finder-checkpoint"
RESULT_FORMATS = ("parquet", "csv")


def _summary_dict(summary: FinderSummary, prepared: Mapping[str, int], **extra: Any) -> dict[str, Any]:
    """The XCom return value shared by both finder operators (the bulk verify operator's shape)."""
    return {
        "result_path": summary.out_path,
        "rows": summary.rows,
        "counts": summary.by_status,
        "by_decided_by": summary.by_decided_by,
        "prepared": dict(prepared),
        **extra,
    }


class _FinderFileOperator(BaseOperator):
    """What both finder operators share: the input file, its columns, the task folder, the result file."""

    template_fields: Sequence[str] = ("source", "workdir", "name_column", "domain_column", "company_column")

    def __init__(
        self,
        *,
        source: StoragePath,
        name_column: str | Sequence[str] | None = None,
        domain_column: str | None = None,
        company_column: str | None = None,
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        workdir: str | None = None,
        max_rows: int | None = None,
        result_format: Literal["parquet", "csv"] = "parquet",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if result_format not in RESULT_FORMATS:
            raise ValueError(f"result_format must be one of {RESULT_FORMATS}, not {result_format!r}")
        self.source = source
        self.name_column = name_column
        self.domain_column = domain_column
        self.company_column = company_column
        self.clearout_conn_id = clearout_conn_id
        self.workdir = workdir
        self.max_rows = max_rows
        self.result_format = result_format

    def _prepare(self, context: Context) -> tuple[ObjectStoragePath, PreparedQueries]:
        from clearout_provider.contacts import DEFAULT_MAX_ROWS
        from clearout_provider.finder_files import prepare_finder_queries

        folder = task_folder(context, self.workdir)
        prepared = prepare_finder_queries(
            self.source,
            workdir=folder,
            name_column=self.name_column,
            domain_column=self.domain_column,
            company_column=self.company_column,
            max_rows=DEFAULT_MAX_ROWS if self.max_rows is None else self.max_rows,
        )
        return folder, prepared

    def _result_path(self, folder: ObjectStoragePath) -> ObjectStoragePath:
        return folder / f"clearout-finder-result.{self.result_format}"


# ------------------------------------------------------------------------------------------- instant


@dataclass(frozen=True)
class FinderOutcome:
    """What :func:`find_emails` got: JSON-safe answer rows by query key, and per-query failures."""

    answers: dict[str, dict[str, Any]]
    failures: dict[str, Exception]
    resumed: int
    """How many of ``answers`` an earlier try had already paid for (checkpoint)."""


def find_emails(
    hook: ClearoutHook,
    queries: Sequence[FinderQuery],
    checkpoint: Checkpoint,
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    timeout_ms: int | None = None,
) -> FinderOutcome:
    """Search every query the checkpoint has no answer for.

    Queued searches are collected instead of repeated.
    """
    from clearout_provider.finder_files import instant_answer

    wanted = {q.key for q in queries}
    earlier = {k: r for k, r in checkpoint.load().items() if k in wanted}
    answers = {k: r["answer"] for k, r in earlier.items() if isinstance(r.get("answer"), dict)}
    queued = {k: str(r["queue_id"]) for k, r in earlier.items() if k not in answers and r.get("queue_id")}
    resumed = len(answers)
    pending = [q for q in queries if q.key not in answers]
    if resumed or queued:
        log.info(
            "Checkpoint of an earlier try: %d answers kept, %d searches to collect from Clearout's queue, "
            "%d left to search",
            resumed,
            len(queued),
            len(pending) - len(queued),
        )

    def search(query: FinderQuery) -> FinderResult:
        if query.key in queued:
            try:
                return hook.wait_for_finder_queue(queued[query.key])
            except ClearoutBadInput:  # 1104: Clearout no longer knows the queue id: search afresh
                log.warning(
                    "A queued search of an earlier try is no longer known to Clearout; searching again"
                )
        try:
            return hook.find_email(query.name, query.target, timeout_ms=timeout_ms)
        except ClearoutTimeout as exc:
            if exc.queue_id:  # still searching (and billable): a rerun must collect it, not search again
                checkpoint.add(query.key, {"queue_id": exc.queue_id})
            raise

    def on_result(query: FinderQuery, result: FinderResult) -> None:
        row = instant_answer(result)
        checkpoint.add(query.key, {"answer": row})
        answers[query.key] = row

    failures = call_each(
        pending,
        search,
        on_result=on_result,
        item_failures=CLEAROUT_ITEM_FAILURES,
        max_concurrency=max_concurrency,
        what="Clearout Email Finder searches",
    )
    return FinderOutcome(answers=answers, failures={q.key: e for q, e in failures.items()}, resumed=resumed)


def _failure_reason(error: Exception) -> str:
    if isinstance(error, ClearoutTimeout) and error.queue_id:
        return (
            f"Clearout was still searching when the wait ended (queue id {error.queue_id}); "
            "a rerun of the task collects the answer without searching again"
        )
    return f"Not searched: {error}"


class ClearoutEmailFinderOperator(_FinderFileOperator):
    """Find email addresses for a small file of people (name + domain or company), one instant call each.

    :param source: CSV or Parquet file (local path or any fsspec URL). Templated.
    :param name_column: the full-name column, or a (first name, last name) pair; detected when None.
    :param domain_column: the domain column (``acme.com``); detected when neither it nor ``company_column``
        is given.
    :param company_column: the company-name column, searched when a row has no domain.
    :param clearout_conn_id: connection of type ``clearout``.
    :param workdir: base folder for task files (see :mod:`clearout_provider.run_files`). Templated.
    :param max_concurrency: searches in flight at once (the account's finder rate sets the pace).
    :param timeout_ms: how long one call waits for the search (10000-180000; Clearout's default 30000 if
        None); a longer search continues in Clearout's queue.
    :param queue_poll_interval: seconds between polls of a queued search.
    :param queue_max_wait: how long to wait for one queued search before recording it as still running.
    :param max_queries: refuse inputs with more distinct queries (use ClearoutBulkEmailFinderOperator).
    :param max_rows: refuse inputs with more rows (None: :data:`clearout_provider.contacts.DEFAULT_MAX_ROWS`).
    :param result_format: ``"parquet"`` or ``"csv"`` (``clearout-finder-result.<format>``).

    Returns ``{"result_path", "rows", "counts" (rows per finder_status), "by_decided_by", "prepared",
    "list_id" (None), "credits_spent", "mode": "instant", "searched", "resumed", "failed"}``;
    ``credits_spent`` is the balance before minus after this try (other use of the account counts too).
    """

    ui_color = "#fdf2d0"

    def __init__(
        self,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        timeout_ms: int | None = None,
        queue_poll_interval: float = 5.0,
        queue_max_wait: float = 600.0,
        max_queries: int = DEFAULT_MAX_QUERIES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if timeout_ms is not None and not 10_000 <= timeout_ms <= 180_000:
            raise ValueError(
                f"timeout_ms must be between 10000 and 180000 (Clearout's limits), not {timeout_ms}"
            )
        self.max_concurrency = max_concurrency
        self.timeout_ms = timeout_ms
        self.queue_poll_interval = queue_poll_interval
        self.queue_max_wait = queue_max_wait
        self.max_queries = max_queries

    def execute(self, context: Context) -> dict[str, Any]:
        from clearout_provider.finder_files import answers_table, failed_answer, write_finder_result

        folder, prepared = self._prepare(context)
        if prepared.counts.to_find > self.max_queries:
            raise TooManyForInstant(
                f"{self.source} has {prepared.counts.to_find:,} distinct name + domain queries, more than "
                f"max_queries={self.max_queries:,} for the instant finder; use "
                "ClearoutBulkEmailFinderOperator (one bulk list, no rate-limit waits) or raise max_queries"
            )
        hook = ClearoutHook(
            self.clearout_conn_id,
            finder_poll_interval=self.queue_poll_interval,
            finder_max_wait=self.queue_max_wait,
        )
        try:
            credits_before = hook.get_credits().available if prepared.counts.to_find else None
            with Checkpoint(folder, CHECKPOINT_NAME) as checkpoint:
                outcome = find_emails(
                    hook,
                    list(prepared.queries()),
                    checkpoint,
                    max_concurrency=self.max_concurrency,
                    timeout_ms=self.timeout_ms,
                )
            credits_spent = credits_before - hook.get_credits().available if credits_before is not None else 0
        finally:
            hook.close()
        answers = {
            **outcome.answers,
            **{k: failed_answer(_failure_reason(e)) for k, e in outcome.failures.items()},
        }
        summary = write_finder_result(prepared.rows_path, answers_table(answers), self._result_path(folder))
        if outcome.failures:
            log.warning(
                "%d queries got no answer from Clearout (not_found, reason in finder_reason)",
                len(outcome.failures),
            )
        return _summary_dict(
            summary,
            asdict(prepared.counts),
            list_id=None,
            credits_spent=credits_spent,
            mode="instant",
            searched=len(outcome.answers) - outcome.resumed,
            resumed=outcome.resumed,
            failed=len(outcome.failures),
        )


# ---------------------------------------------------------------------------------------------- bulk


class ClearoutBulkEmailFinderOperator(_FinderFileOperator, BulkListOperator):
    """Find email addresses for a file of people with one Clearout bulk finder list (deferrable).

    Column and file parameters are those of :class:`ClearoutEmailFinderOperator`; waiting parameters
    (``deferrable``, ``poll_interval``, ``max_poll_interval``, ``timeout``, ``cancel_on_timeout``,
    ``bulk_slot_wait``) and the "never spend twice" rules those of
    :class:`~clearout_provider.operators.bulk_list.BulkListOperator`.

    Returns ``{"result_path", "list_id", "rows", "counts" (rows per finder_status), "by_decided_by",
    "prepared", "credits_spent", "mode": "bulk"}``.
    """

    clearout_kind = "finder"
    list_noun = "finder list"
    ui_color = "#fde7b0"

    @cached_property
    def hook(self) -> ClearoutHook:
        """The Clearout hook the finder list's upload, progress and download go through."""
        return ClearoutHook(self.clearout_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        folder, prepared = self._prepare(context)
        if prepared.counts.to_find == 0:
            log.info("Nothing to send to Clearout (%s): writing the local decisions only", prepared.counts)
            return self._finish_list(
                context, folder, str(prepared.rows_path), asdict(prepared.counts), None, None, 0
            )
        return self._run_list(context, folder, prepared, prepared.counts.to_find)

    def _send_upload(self, upload: Path, *, ignore_duplicate_file: bool) -> str:
        return self.hook.upload_bulk_finder(upload, ignore_duplicate_file=ignore_duplicate_file).list_id

    def _list_progress(self, list_id: str) -> BulkProgress:
        return self.hook.get_finder_bulk_progress(list_id)

    def _download_result(self, list_id: str, dest: Path) -> None:
        self.hook.download_finder_result(list_id, dest)

    def _check_credits(self, to_send: int) -> int:
        """No pre-check: a finder row costs 0, 2 or 4 credits depending on what is found, and Clearout
        itself refuses an upload it cannot cover (1028, with ``required_credits``) before charging."""
        return self.hook.get_credits().available

    def _finish_list(
        self,
        context: Mapping[str, Any],
        folder: ObjectStoragePath,
        rows_path: str,
        prepared: Mapping[str, int],
        list_id: str | None,
        result_csv: Path | None,
        credits_spent: int | None,
    ) -> dict[str, Any]:
        from clearout_provider.finder_files import answers_table, read_bulk_finder_result, write_finder_result

        answers = read_bulk_finder_result(result_csv) if result_csv is not None else answers_table({})
        summary = write_finder_result(rows_path, answers, self._result_path(folder))
        return _summary_dict(summary, prepared, list_id=list_id, credits_spent=credits_spent, mode="bulk")
