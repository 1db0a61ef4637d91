"""ClearoutBulkVerifyOperator: verify a contacts file with one Clearout bulk list, paying once.

The steps, each in one method:

1. **prepare** (:func:`clearout_provider.contacts.prepare_contacts`) into the task instance's folder
   (:func:`clearout_provider.run_files.task_folder`): normalised, deduplicated, syntax-checked addresses;
   nothing left to verify → the result is written from the local verdicts without calling Clearout;
2. **find or upload** the list: resume the list an earlier try of this task instance started, else check
   the credits and upload (a duplicate-file answer, 2043, resumes the list it names); a full bulk queue
   (1001) waits and tries again until the deadline — deferred to a timer, not holding a worker;
3. record the list in the state file and in XCom (``list_id``, which also feeds the "Clearout list"
   link) BEFORE waiting;
4. **wait** with :class:`~clearout_provider.triggers.bulk_job.ClearoutBulkJobTrigger`: deferred to the
   triggerer, or the same loop on the worker when ``deferrable=False``;
5. **finish** (``execute_complete``): stream the result CSV down, normalise it and join it onto every
   input row (:mod:`clearout_provider.results`), write ONE result file, return its path and counts.

**Never spend twice.** Airflow 3 clears a task's XComs when a new try starts, so the memory of an
uploaded list is the state file ``clearout_list.json`` in the task instance's folder (stable across
retries and clears of the same run). It names the list and a hash of the uploaded content; a later try
with the same content resumes that list unless Clearout says it was cancelled or is gone (then it
uploads again). If the state file is lost, Clearout's own duplicate-file check catches the re-upload:
the upload file's NAME is deterministic per task instance and content (dag, run, task, map index and a
content hash), and Clearout answers 2043 with the earlier list's id for the same name and size.

**Deadline.** ``timeout`` bounds one try, from its first upload attempt to the list's completion; the
trigger enforces it and, with ``cancel_on_timeout``, cancels the list (its unprocessed addresses then
cost nothing). Without cancelling, a retry resumes the still-running list with a fresh deadline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from clearout_provider.contacts import DEFAULT_MAX_ROWS, PreparedContacts, prepare_contacts, resolve_path
from clearout_provider.exceptions import (
    ClearoutBulkLimitReached,
    ClearoutCreditsError,
    ClearoutDailyLimitError,
    ClearoutDuplicateFile,
    ClearoutListUnavailable,
)
from clearout_provider.hooks.clearout import ClearoutHook, Optimize
from clearout_provider.operators.links import LIST_ID_XCOM_KEY, ClearoutListLink
from clearout_provider.results import join_results, normalise_bulk_result, verdict_table
from clearout_provider.run_files import read_json, task_folder, write_json
from clearout_provider.triggers.bulk_job import (
    CANCELLED,
    ERROR,
    ClearoutBulkJobTrigger,
    progress_outcome,
    raise_for_event,
)

#: The task folder's memory of its bulk list (see the module docstring).
STATE_FILE = "clearout_list.json"
RESULT_FORMATS = ("parquet", "csv")

log = logging.getLogger(__name__)


class ClearoutBulkSlotTimeout(AirflowException):
    """Clearout's limit of concurrent bulk lists (1001) stayed reached until the deadline."""


@dataclass
class ListRecord:
    """What ``clearout_list.json`` remembers for one task instance, across its tries."""

    upload_sha256: str
    """Hash of the upload file's content: a record for other content is not resumed."""
    rows_path: str
    """The ROWS file of :func:`~clearout_provider.contacts.prepare_contacts`, joined with the result."""
    prepared: dict[str, int]
    """The preparation's :class:`~clearout_provider.contacts.ContactCounts`."""
    list_id: str | None = None
    uploaded_by: str | None = None
    """Id of the try that uploaded ``list_id`` (a resumed list has another try's id)."""
    credits_before: int | None = None
    """The balance just before ``list_id`` was uploaded, for ``credits_spent``."""
    completed: bool = False
    abandoned: list[str] = field(default_factory=list)
    """Lists of this content that are cancelled, removed or expired: never resumed."""
    attempt: str | None = None
    deadline: float | None = None
    """Unix time the current try (``attempt``) gives up at."""

    @classmethod
    def load(cls, path: ObjectStoragePath) -> ListRecord | None:
        saved = read_json(path)
        return cls(**{k: v for k, v in saved.items() if k in cls.__dataclass_fields__}) if saved else None

    @classmethod
    def for_upload(
        cls, path: ObjectStoragePath, upload_sha256: str, prepared: PreparedContacts
    ) -> ListRecord:
        """The saved record if it is about this content, else a fresh one (the input changed)."""
        saved = cls.load(path)
        if saved is not None and saved.upload_sha256 == upload_sha256:
            return saved
        if saved is not None and saved.list_id:
            log.warning(
                "The input changed since Clearout list %s was uploaded: it is not resumed", saved.list_id
            )
        return cls(upload_sha256, str(prepared.rows_path), asdict(prepared.counts))

    def save(self, path: ObjectStoragePath) -> None:
        write_json(path, asdict(self))

    def adopt(
        self, list_id: str | None, *, uploaded_by: str | None = None, credits_before: int | None = None
    ) -> None:
        """Make ``list_id`` this task's list (None: no list); what was known about the previous one goes."""
        self.list_id, self.uploaded_by, self.credits_before = list_id, uploaded_by, credits_before
        self.completed = False

    def abandon(self, list_id: str) -> None:
        if list_id not in self.abandoned:
            self.abandoned.append(list_id)
        if self.list_id == list_id:
            self.adopt(None)


def upload_file_name(dag_id: str, run_id: str, task_id: str, map_index: int, content_sha256: str) -> str:
    """The upload's file name: readable, and unique per task instance and content (see the module docstring)."""
    key = "\n".join((dag_id, run_id, task_id, str(map_index), content_sha256))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    readable = f"{dag_id}.{task_id}" + (f".{map_index}" if map_index >= 0 else "")
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', readable)[:80]}.{digest}.csv"


def _local_dir(folder: ObjectStoragePath) -> Path:
    """Where files the hook reads or writes live: the task folder itself when local, else a temp folder
    (the hook streams to and from local files)."""
    local = resolve_path(folder)
    if isinstance(local, Path):
        return local
    scratch = (
        Path(tempfile.gettempdir())
        / "clearout_provider"
        / hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    )
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def _sha256(path: Path | ObjectStoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ClearoutBulkVerifyOperator(BaseOperator):
    """Verify every address of a contacts file with a Clearout bulk list; write one result file.

    :param source: CSV or Parquet file (local path or any fsspec URL) with an email column. Templated.
    :param email_column: the email column; detected from its name when None. Templated.
    :param clearout_conn_id: connection of type ``clearout`` (the API token is its password).
    :param workdir: base folder for task files (see :func:`clearout_provider.run_files.base_folder`). Templated.
    :param optimize: Clearout's ``highest_accuracy`` (default) or ``fastest_turnaround``.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param poll_interval: seconds before the second progress poll; each pause is 1.5 times the previous one.
    :param max_poll_interval: longest pause between two polls.
    :param timeout: how long one try may take from upload to completion (timedelta or seconds).
    :param cancel_on_timeout: cancel the list when ``timeout`` passes (else a retry resumes it).
    :param max_rows: inputs with more rows are refused (Clearout recommends at most 500,000 per list).
    :param result_format: ``"parquet"`` or ``"csv"``.
    :param bulk_slot_wait: seconds between upload attempts while Clearout runs its maximum of bulk lists.

    Returns (XCom) ``{"result_path", "list_id", "rows", "counts", "by_sub_status_code", "by_decided_by",
    "prepared", "credits_spent"}``; ``counts`` is rows per status over ALL input rows, ``credits_spent``
    the account balance before the upload minus after the download (other work on the same account
    during the run counts too; None when the list was resumed without a recorded balance).
    """

    template_fields: Sequence[str] = ("source", "email_column", "workdir")
    operator_extra_links = (ClearoutListLink(),)
    clearout_kind = "verify"
    ui_color = "#d3f1ff"

    def __init__(
        self,
        *,
        source: str | os.PathLike[str],
        email_column: str | None = None,
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        workdir: str | None = None,
        optimize: Optimize = "highest_accuracy",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        max_poll_interval: float = 300.0,
        timeout: timedelta | float = timedelta(hours=12),
        cancel_on_timeout: bool = True,
        max_rows: int = DEFAULT_MAX_ROWS,
        result_format: Literal["parquet", "csv"] = "parquet",
        bulk_slot_wait: float = 60.0,
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
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max(max_poll_interval, poll_interval)
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        self.cancel_on_timeout = cancel_on_timeout
        self.max_rows = max_rows
        self.result_format = result_format
        self.bulk_slot_wait = bulk_slot_wait
        self._waiting: ClearoutBulkJobTrigger | None = None

    @cached_property
    def hook(self) -> ClearoutHook:
        return ClearoutHook(self.clearout_conn_id)

    # ------------------------------------------------------------------ steps 1-4

    def execute(self, context: Mapping[str, Any]) -> dict[str, Any]:
        folder = task_folder(context, self.workdir)
        prepared = prepare_contacts(
            self.source, email_column=self.email_column, workdir=folder, max_rows=self.max_rows
        )
        if prepared.counts.to_verify == 0:
            self.log.info(
                "Nothing to send to Clearout (%s): writing the local verdicts only", prepared.counts
            )
            return self._finish(
                folder,
                str(prepared.rows_path),
                asdict(prepared.counts),
                list_id=None,
                credits_spent=0,
                result_csv=None,
            )
        upload, content_sha256 = self._stage_upload(context, folder, prepared)
        state_path = folder / STATE_FILE
        record = ListRecord.for_upload(state_path, content_sha256, prepared)
        attempt = f"{context['ti'].id}/{context['ti'].try_number}"  # new per try and per clear
        if record.attempt != attempt:  # a new try (or a cleared task) gets a fresh deadline
            record.attempt, record.deadline = attempt, time.time() + self.timeout
        record.save(state_path)

        while not self._resume(record) and not self._upload(record, upload, prepared, attempt):
            wait = self._bulk_slot_wait(record)
            record.save(state_path)
            if self.deferrable:
                from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

                self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=wait)), method_name="retry_upload")
            time.sleep(wait)
        record.save(state_path)
        assert record.list_id is not None
        context["ti"].xcom_push(key=LIST_ID_XCOM_KEY, value=record.list_id)
        if record.completed:  # a cleared task whose list finished before: fetch the result again, no wait
            self.log.info(
                "Clearout list %s completed in an earlier run: downloading its result again", record.list_id
            )
            return self._collect(context, folder, record)

        trigger = ClearoutBulkJobTrigger(
            list_id=record.list_id,
            kind="verify",
            clearout_conn_id=self.clearout_conn_id,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            deadline=record.deadline,
            cancel_on_deadline=self.cancel_on_timeout,
        )
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete")
        self._waiting = trigger
        try:
            event = trigger.run_sync()
        finally:
            self._waiting = None
        return self.execute_complete(context, event)

    def retry_upload(self, context: Mapping[str, Any], event: Any = None) -> dict[str, Any]:
        """Back from waiting for a free bulk slot (1001): start over; preparation is deterministic."""
        return self.execute(context)

    def _stage_upload(
        self, context: Mapping[str, Any], folder: ObjectStoragePath, prepared: PreparedContacts
    ) -> tuple[Path, str]:
        """The upload file under its deterministic name, on local disk for the hook to stream; its sha256."""
        ti = context["ti"]
        content = _sha256(prepared.upload_path)
        name = upload_file_name(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), content)
        target = _local_dir(folder) / name
        if isinstance(prepared.upload_path, Path):
            os.replace(prepared.upload_path, target)
        else:
            with prepared.upload_path.open("rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return target, content

    def _usable(self, record: ListRecord, list_id: str) -> bool:
        """Whether ``list_id`` can still give this task its result (running or completed, not cancelled)."""
        if list_id in record.abandoned:
            return False
        try:
            progress = self.hook.get_bulk_progress(list_id)
        except ClearoutListUnavailable as gone:
            self.log.warning("Clearout list %s is no longer available (%s)", list_id, gone.message)
            record.abandon(list_id)
            return False
        if progress_outcome(progress.status) in (CANCELLED, ERROR):
            self.log.warning("Clearout list %s is %s: it will not be resumed", list_id, progress.status)
            record.abandon(list_id)
            return False
        return True

    def _resume(self, record: ListRecord) -> bool:
        """Resume the list an earlier try started, if it can still deliver."""
        if record.list_id and self._usable(record, record.list_id):
            self.log.info(
                "Resuming Clearout list %s uploaded by an earlier try: no new upload, no new charge",
                record.list_id,
            )
            return True
        return False

    def _upload(self, record: ListRecord, upload: Path, prepared: PreparedContacts, attempt: str) -> bool:
        """Upload the list (or adopt the duplicate Clearout names); False when Clearout's bulk slots are full."""
        credits = self._check_credits(prepared.counts.to_verify)
        try:
            try:
                list_id = self.hook.upload_bulk_verify(upload, optimize=self.optimize).list_id
            except ClearoutDuplicateFile as duplicate:
                if not duplicate.list_id:
                    raise
                if self._usable(record, duplicate.list_id):
                    self.log.info(
                        "Clearout already has this file as list %s (2043): resuming it instead of "
                        "paying twice",
                        duplicate.list_id,
                    )
                    record.adopt(duplicate.list_id)
                    return True
                # The duplicate is cancelled or gone: only now is a second list (and its cost) justified.
                list_id = self.hook.upload_bulk_verify(
                    upload, optimize=self.optimize, ignore_duplicate_file=True
                ).list_id
        except ClearoutBulkLimitReached:
            self.log.info("Clearout is running its maximum of bulk lists (1001); trying again later")
            return False
        self.log.info("Uploaded %d addresses as Clearout list %s", prepared.counts.to_verify, list_id)
        record.adopt(list_id, uploaded_by=attempt, credits_before=credits)
        return True

    def _check_credits(self, to_verify: int) -> int:
        """Fail before uploading when the balance or the daily limit cannot cover every address."""
        credits = self.hook.get_credits()
        if credits.available < to_verify:
            raise ClearoutCreditsError(
                f"The Clearout account has {credits.available} credits but this list has {to_verify} addresses "
                "to verify (each may cost a credit); nothing was uploaded",
                required_credits=to_verify - credits.available,
            )
        daily = credits.daily_verify_limit_remaining
        if daily is not None and daily < to_verify:
            raise ClearoutDailyLimitError(
                f"The Clearout account may verify {daily} more addresses today but this list has {to_verify}; "
                "nothing was uploaded"
            )
        return credits.available

    def _bulk_slot_wait(self, record: ListRecord) -> float:
        """Seconds to wait before the next upload attempt; raise when the deadline leaves no time."""
        remaining = (record.deadline or 0.0) - time.time()
        if remaining <= 0:
            raise ClearoutBulkSlotTimeout(
                "Clearout kept answering that the maximum number of bulk lists is running (1001) until this "
                "task's deadline; nothing was uploaded or charged. Let running lists finish (or cancel one), "
                "raise `timeout`, or schedule fewer bulk tasks at once (a pool)"
            )
        return min(self.bulk_slot_wait, remaining)

    # ------------------------------------------------------------------ step 5

    def execute_complete(
        self, context: Mapping[str, Any], event: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Back from the trigger: fail with a clear error, or download, join and write the result."""
        raise_for_event(event)
        folder = task_folder(context, self.workdir)
        record = ListRecord.load(folder / STATE_FILE)
        if record is None or record.list_id != event["list_id"]:  # type: ignore[index]
            raise AirflowException(
                f"{folder / STATE_FILE} does not name list {event['list_id']}: the task folder must be "  # type: ignore[index]
                "shared by the workers and tries of one task (set CLEAROUT_PROVIDER_DATA_DIR to shared storage)"
            )
        return self._collect(context, folder, record)

    def _collect(
        self, context: Mapping[str, Any], folder: ObjectStoragePath, record: ListRecord
    ) -> dict[str, Any]:
        """Download the completed list's result, join it onto every input row and write the result file."""
        state_path = folder / STATE_FILE
        list_id = str(record.list_id)
        raw = _local_dir(folder) / f"clearout-result-{list_id}.csv"
        try:
            self.hook.download_bulk_result(list_id, raw)
        except ClearoutListUnavailable as gone:
            if record.uploaded_by == record.attempt:
                raise  # uploaded by this very try: uploading again could loop and spend again
            self.log.warning(
                "The result of resumed list %s is gone (%s): uploading the list again", list_id, gone
            )
            record.abandon(list_id)
            record.save(state_path)
            return self.execute(context)
        record.completed = True
        record.save(state_path)
        credits_spent = None
        if record.credits_before is not None:
            credits_spent = record.credits_before - self.hook.get_credits().available
        return self._finish(
            folder,
            record.rows_path,
            record.prepared,
            list_id=list_id,
            credits_spent=credits_spent,
            result_csv=raw,
        )

    def _finish(
        self,
        folder: ObjectStoragePath,
        rows_path: str,
        prepared: dict[str, int],
        *,
        list_id: str | None,
        credits_spent: int | None,
        result_csv: Path | None,
    ) -> dict[str, Any]:
        """Join Clearout's verdicts (none when nothing was sent) onto every input row; one result file."""
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
            "prepared": prepared,
            "credits_spent": credits_spent,
        }

    def on_kill(self) -> None:
        """Killed while waiting on the worker (non-deferrable): cancel the list, best effort.

        While deferred this never runs; the trigger's ``on_kill`` cancels instead.
        """
        if self._waiting is not None:
            self._waiting.cancel_sync(self.hook, "its task was killed")
