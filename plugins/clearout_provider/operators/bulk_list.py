"""One bulk job (a Clearout list, a set of Mail.so batches) per task instance, paid for once.

This is what the bulk verify and bulk finder operators share.

:class:`BulkListOperator` owns the life of the job and decides on neutral states and failures only
(:class:`~clearout_provider.verification.model.JobState`; the ``JobUnavailable`` / ``JobSlotsFull`` /
``DuplicateSubmission`` families of :mod:`clearout_provider.exceptions`); the operators only say how to
upload, poll, download and finish (``_send_upload``, ``_list_progress``, ``_download_result``,
``_check_credits``, ``_finish_list``) and whose jobs they are (``verifier_name``, ``_conn_id``):

1. **find or upload** the job: resume the job an earlier try of this task instance started, else check
   the credits and upload (a duplicate submission — Clearout's 2043, Mail.so batches an earlier try
   created — resumes the job it names); a full bulk queue (Clearout's 1001 / 1083) waits and tries again
   until the deadline — deferred to a timer, not holding a worker;
2. record the job in the state file and in XCom (``list_id``, which also feeds the "Clearout list"
   link) BEFORE waiting;
3. **wait** with :class:`~clearout_provider.triggers.bulk_job.ClearoutBulkJobTrigger`: deferred to the
   triggerer, or the same loop on the worker when ``deferrable=False``;
4. **collect** (``execute_complete``): download the result and hand it to ``_finish_list``.

**Never spend twice.** Airflow 3 clears a task's XComs when a new try starts, so the memory of an
uploaded list is the state file ``clearout_list.json`` in the task instance's folder (stable across
retries and clears of the same run). It names the list and a hash of the uploaded content; a later try
with the same content resumes that list unless Clearout says it was cancelled or is gone (then it
uploads again). What a cancelled list processed before the cancel (a user cleared the deferred task,
whose trigger cancels the list; a deadline; the Clearout app) was paid for: the bulk verify operator
downloads it into the verdict ledger and uploads only the rest. If the state file is lost, Clearout's
own duplicate-file check catches the re-upload: the upload file's NAME is deterministic per task
instance and content (dag, run, task, map index and a content hash), and Clearout answers 2043 with
the earlier list's id for the same name and size.

**Deadline.** ``timeout`` bounds one try, from its first upload attempt to the list's completion; the
trigger enforces it and, with ``cancel_on_timeout``, cancels the list (its unprocessed rows then cost
nothing). Without cancelling, a retry resumes the still-running list with a fresh deadline.

:mod:`clearout_provider.contacts` (pyarrow) is imported when the task runs, not at the top: that keeps DAG
parsing cheap.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from airflow.sdk import BaseOperator, BaseOperatorLink, ObjectStoragePath
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from clearout_provider import metrics
from clearout_provider.exceptions import DuplicateSubmission, JobSlotsFull, JobUnavailable
from clearout_provider.operators.links import LIST_ID_XCOM_KEY, ClearoutListLink
from clearout_provider.run_files import read_json, scratch_dir, task_folder, write_json
from clearout_provider.triggers.bulk_job import ClearoutBulkJobTrigger, raise_for_event
from clearout_provider.verification.model import JobProgress, JobState
from clearout_provider.verification.verifier import BulkJobs, bulk_jobs, spec

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The task folder's memory of its bulk list (see the module docstring).
STATE_FILE = "clearout_list.json"

#: The pool that keeps a deployment within Clearout's limit of concurrent bulk lists. Create it counting
#: deferred tasks (a waiting list is deferred, yet holds one of Clearout's slots):
#: ``airflow pools set clearout_bulk_lists 3 "Clearout bulk lists" --include-deferred``.
BULK_LIST_POOL = "clearout_bulk_lists"
#: Bulk lists Clearout runs at once per account and kind (1001 / 1083 beyond it).
MAX_CONCURRENT_BULK_LISTS = 3


def bulk_list_pool() -> str | None:
    """``[clearout] bulk_list_pool``: the pool of the shipped DAGs' bulk tasks, None for no pool.

    A pool is an optimisation for deployments that run several DAGs against one Clearout account (the
    docker-compose init creates it); without it a run caps itself at :data:`MAX_CONCURRENT_BULK_LISTS` and
    Clearout's 1001 answer makes a task wait for a free slot, so a DAG never waits on a pool nobody made.
    """
    return conf.get("clearout", "bulk_list_pool", fallback="") or None


def default_poll_interval() -> float:
    """``[clearout] bulk_poll_interval`` (default 30 s): one setting for every bulk wait of a deployment
    (tests and the demo shorten it with ``AIRFLOW__CLEAROUT__BULK_POLL_INTERVAL``)."""
    return conf.getfloat("clearout", "bulk_poll_interval", fallback=30.0)


log = logging.getLogger(__name__)


class ClearoutBulkSlotTimeout(AirflowException):
    """The vendor's limit of concurrent bulk jobs (Clearout 1001 / 1083) stayed reached until the deadline."""


class _Harvested(Exception):
    """A cancelled list's processed results were kept: prepare again without them."""


class PreparedUpload(Protocol):
    """What a preparation step hands over (``PreparedContacts`` or ``PreparedQueries``)."""

    @property
    def upload_path(self) -> Path | ObjectStoragePath: ...
    @property
    def rows_path(self) -> Path | ObjectStoragePath: ...
    @property
    def counts(self) -> Any: ...


@dataclass
class ListRecord:
    """What ``clearout_list.json`` remembers for one task instance, across its tries."""

    upload_sha256: str
    """Hash of the upload file's content: a record for other content is not resumed."""
    rows_path: str
    """The ROWS file of the preparation step, joined with the result."""
    prepared: dict[str, int]
    """The preparation's counts."""
    list_id: str | None = None
    uploaded_by: str | None = None
    """Id of the try that uploaded ``list_id`` (a resumed list has another try's id)."""
    credits_before: int | None = None
    """The balance just before ``list_id`` was uploaded, for ``credits_spent``."""
    uploaded_at: float | None = None
    """Unix time ``list_id`` was uploaded (None: adopted, not uploaded here), for ``bulk_list_seconds``."""
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
    def for_upload(cls, path: ObjectStoragePath, upload_sha256: str, prepared: PreparedUpload) -> ListRecord:
        """The saved record if it is about this content, else a fresh one (the input changed)."""
        saved = cls.load(path)
        if saved is not None and saved.upload_sha256 == upload_sha256:
            return saved
        if saved is not None and saved.list_id:
            log.warning("The input changed since bulk job %s was uploaded: it is not resumed", saved.list_id)
        return cls(upload_sha256, str(prepared.rows_path), asdict(prepared.counts))

    def save(self, path: ObjectStoragePath) -> None:
        write_json(path, asdict(self))

    def adopt(
        self,
        list_id: str | None,
        *,
        uploaded_by: str | None = None,
        credits_before: int | None = None,
        uploaded_at: float | None = None,
    ) -> None:
        """Make ``list_id`` this task's list (None: no list); what was known about the previous one goes."""
        self.list_id, self.uploaded_by, self.credits_before = list_id, uploaded_by, credits_before
        self.uploaded_at = uploaded_at
        self.completed = False

    def abandon(self, list_id: str) -> None:
        if list_id not in self.abandoned:
            self.abandoned.append(list_id)
        if self.list_id == list_id:
            self.adopt(None)


def upload_file_name(dag_id: str, run_id: str, task_id: str, map_index: int, content_sha256: str) -> str:
    """The upload's file name: readable, and unique per task instance and content.

    See the module docstring.
    """
    key = "\n".join((dag_id, run_id, task_id, str(map_index), content_sha256))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    readable = f"{dag_id}.{task_id}" + (f".{map_index}" if map_index >= 0 else "")
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', readable)[:80]}.{digest}.csv"


def file_sha256(path: Path | ObjectStoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BulkListOperator(BaseOperator):
    """Base of the bulk operators: the list's life (see the module docstring); subclasses say what to send.

    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param poll_interval: seconds before the second progress poll; each pause is 1.5 times the previous one
        (default :func:`default_poll_interval`).
    :param max_poll_interval: longest pause between two polls (default 10 times ``poll_interval``).
    :param timeout: how long one try may take from upload to completion (timedelta or seconds).
    :param cancel_on_timeout: cancel the list when ``timeout`` passes (else a retry resumes it).
    :param bulk_slot_wait: seconds between upload attempts while Clearout runs its maximum of bulk lists.
    """

    clearout_kind: ClassVar[Literal["verify", "finder"]]
    #: How logs and errors name this kind of list.
    list_noun: ClassVar[str]
    operator_extra_links: tuple[BaseOperatorLink, ...] = (ClearoutListLink(),)
    #: Whose jobs these are (:data:`~clearout_provider.verification.verifier.SPECS`): the trigger builds
    #: that verifier's :class:`~clearout_provider.verification.verifier.BulkJobs` from it.
    verifier_name: str = "clearout"

    clearout_conn_id: str
    workdir: str | None

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        timeout: timedelta | float = timedelta(hours=12),
        cancel_on_timeout: bool = True,
        bulk_slot_wait: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poll_interval = default_poll_interval() if poll_interval is None else poll_interval
        self.max_poll_interval = max(max_poll_interval or 10 * self.poll_interval, self.poll_interval)
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        self.cancel_on_timeout = cancel_on_timeout
        self.bulk_slot_wait = bulk_slot_wait
        self._waiting: ClearoutBulkJobTrigger | None = None
        self._slots_full: JobSlotsFull | None = None

    # ------------------------------------------------------------------ what each kind says

    @property
    def _conn_id(self) -> str:
        """The connection of ``verifier_name`` the trigger follows the job with."""
        return self.clearout_conn_id

    @property
    def _job_noun(self) -> str:
        """How logs and errors name one job ("Clearout bulk list")."""
        return f"{spec(self.verifier_name).label} {self.list_noun}"

    def _jobs(self) -> BulkJobs:
        """The verifier's jobs, for cancelling from the worker (``on_kill`` in non-deferrable mode)."""
        return bulk_jobs(self.verifier_name, self.clearout_kind, self._conn_id)

    def _send_upload(self, upload: Path, *, ignore_duplicate_file: bool) -> str:
        """Submit the file; return the new job's id. Raise a ``DuplicateSubmission`` naming the earlier
        job when the vendor already has it, unless ``ignore_duplicate_file``."""
        raise NotImplementedError

    def _list_progress(self, list_id: str) -> JobProgress:
        raise NotImplementedError

    def _download_result(self, list_id: str, dest: Path) -> None:
        raise NotImplementedError

    def _check_credits(self, to_send: int) -> int | None:
        """Fail before uploading when the account cannot cover ``to_send`` rows; return the balance (None:
        the vendor publishes none). ``_check_credits(0)`` reads the balance after the download."""
        raise NotImplementedError

    def _result_file(self, scratch: Path, list_id: str) -> Path:
        """Where in ``scratch`` (:func:`~clearout_provider.run_files.scratch_dir`) ``_download_result``
        puts the result: the hook streams to local files."""
        return scratch / f"clearout-{self.clearout_kind}-result-{list_id}.csv"

    def _harvest(self, context: Mapping[str, Any], list_id: str) -> int:
        """Keep what a cancelled list already processed (paid for); return how many results were kept.

        The default keeps nothing; the bulk verify operator records the processed verdicts in the ledger.
        """
        return 0

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
        """Join the result (None: nothing was sent) onto every input row; the XCom return value."""
        raise NotImplementedError

    # ------------------------------------------------------------------ steps 1-3

    def _run_list(
        self, context: Context, folder: ObjectStoragePath, prepared: PreparedUpload, to_send: int
    ) -> dict[str, Any]:
        """Upload (or resume) the prepared list, wait for it, and finish: the operator's whole ``execute``."""
        with scratch_dir(folder) as scratch:  # the upload's local copy, for the hook to stream
            upload, content_sha256 = self._stage_upload(context, scratch, prepared.upload_path)
            state_path = folder / STATE_FILE
            record = ListRecord.for_upload(state_path, content_sha256, prepared)
            attempt = f"{context['ti'].id}/{context['ti'].try_number}"  # new per try and per clear
            if record.attempt != attempt:  # a new try (or a cleared task) gets a fresh deadline
                record.attempt, record.deadline = attempt, time.time() + self.timeout
            record.save(state_path)

            try:
                while not self._resume(context, record) and not self._upload(
                    context, record, upload, to_send, attempt
                ):
                    wait = self._bulk_slot_wait(record)
                    record.save(state_path)
                    if self.deferrable:
                        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

                        self.defer(
                            trigger=TimeDeltaTrigger(timedelta(seconds=wait)), method_name="retry_upload"
                        )
                    time.sleep(wait)
            except _Harvested:
                record.save(state_path)
                self.log.info("Preparing again without the addresses the cancelled list already verified")
                return self.execute(context)
        record.save(state_path)
        assert record.list_id is not None
        if self.verifier_name == "clearout":  # the "Clearout list" link: Mail.so batches have no app page
            context["ti"].xcom_push(key=LIST_ID_XCOM_KEY, value=record.list_id)
        if record.completed:  # a cleared task whose list finished before: fetch the result again, no wait
            self.log.info("%s %s completed in an earlier run: downloading its result again",
                          self._job_noun, record.list_id)  # fmt: skip
            return self._collect(context, folder, record)

        trigger = ClearoutBulkJobTrigger(
            job_id=record.list_id,
            verifier=self.verifier_name,
            kind=self.clearout_kind,
            conn_id=self._conn_id,
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

    def retry_upload(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Back from waiting for a free bulk slot: start over; preparation is deterministic."""
        return self.execute(context)

    def _stage_upload(
        self, context: Mapping[str, Any], scratch: Path, source: Path | ObjectStoragePath
    ) -> tuple[Path, str]:
        """The upload file under its deterministic name in ``scratch``, for the hook to stream; its sha256."""
        ti = context["ti"]
        content = file_sha256(source)
        name = upload_file_name(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), content)
        target = scratch / name
        if isinstance(source, Path):
            os.replace(source, target)
        else:
            with source.open("rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return target, content

    def _usable(self, context: Mapping[str, Any], record: ListRecord, list_id: str) -> bool:
        """Whether ``list_id`` can still give this task its result (running or completed, not cancelled).

        A cancelled list is abandoned, but what it processed before the cancel was paid for: it is kept
        (:meth:`_harvest`) and :class:`_Harvested` makes the task prepare again without those addresses.
        """
        if list_id in record.abandoned:
            return False
        try:
            progress = self._list_progress(list_id)
        except JobUnavailable as gone:
            self.log.warning("%s %s is no longer available (%s)", self._job_noun, list_id, gone.message)
            record.abandon(list_id)
            return False
        if progress.state in (JobState.CANCELLED, JobState.FAILED):
            self.log.warning("%s %s is %s: it will not be resumed",
                             self._job_noun, list_id, progress.vendor_status)  # fmt: skip
            record.abandon(list_id)
            if progress.state is JobState.CANCELLED and self._harvest(context, list_id):
                raise _Harvested(list_id)
            return False
        return True

    def _resume(self, context: Mapping[str, Any], record: ListRecord) -> bool:
        """Resume the list an earlier try started, if it can still deliver."""
        if record.list_id and self._usable(context, record, record.list_id):
            self.log.info("Resuming %s %s uploaded by an earlier try: no new upload, no new charge",
                          self._job_noun, record.list_id)  # fmt: skip
            return True
        return False

    def _upload(
        self, context: Mapping[str, Any], record: ListRecord, upload: Path, to_send: int, attempt: str
    ) -> bool:
        """Upload the list (or adopt the duplicate the vendor names).

        False when the vendor's bulk slots are full.
        """
        credits = self._check_credits(to_send)
        try:
            try:
                list_id = self._send_upload(upload, ignore_duplicate_file=False)
            except DuplicateSubmission as duplicate:
                if not duplicate.job_id:
                    raise
                if self._usable(context, record, duplicate.job_id):
                    self.log.info("The vendor already has this file as %s %s: resuming it instead of "
                                  "paying twice", self._job_noun, duplicate.job_id)  # fmt: skip
                    record.adopt(duplicate.job_id)
                    return True
                # The duplicate is cancelled or gone: only now is a second list (and its cost) justified.
                list_id = self._send_upload(upload, ignore_duplicate_file=True)
        except JobSlotsFull as full:
            self._slots_full = full
            self.log.info("%s: the maximum of %ss is running; trying again later", full, self.list_noun)
            return False
        self.log.info("Uploaded %d rows as %s %s", to_send, self._job_noun, list_id)
        record.adopt(list_id, uploaded_by=attempt, credits_before=credits, uploaded_at=time.time())
        return True

    def _bulk_slot_wait(self, record: ListRecord) -> float:
        """Seconds to wait before the next upload attempt; raise when the deadline leaves no time."""
        remaining = (record.deadline or 0.0) - time.time()
        if remaining <= 0:
            code = f" ({self._slots_full.code})" if self._slots_full and self._slots_full.code else ""
            raise ClearoutBulkSlotTimeout(
                f"{spec(self.verifier_name).label} kept answering that the maximum number of "
                f"{self.list_noun}s is running{code} until this task's deadline; nothing was uploaded or "
                "charged. Let running lists finish (or cancel one), raise `timeout`, or schedule fewer "
                "bulk tasks at once (a pool)"
            )
        return min(self.bulk_slot_wait, remaining)

    # ------------------------------------------------------------------ step 4

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Back from the trigger: fail with a clear error, or download the result and finish."""
        list_id = raise_for_event(event)["list_id"]
        folder = task_folder(context, self.workdir)
        record = ListRecord.load(folder / STATE_FILE)
        if record is None or record.list_id != list_id:
            raise AirflowException(
                f"{folder / STATE_FILE} does not name list {list_id}: the task folder must be shared by "
                "the workers and tries of one task (set CLEAROUT_PROVIDER_DATA_DIR to shared storage)"
            )
        return self._collect(context, folder, record)

    def _collect(self, context: Context, folder: ObjectStoragePath, record: ListRecord) -> dict[str, Any]:
        """Download the completed list's result and finish; a resumed list whose result is gone is redone."""
        state_path = folder / STATE_FILE
        list_id = str(record.list_id)
        with scratch_dir(folder) as scratch:  # the downloaded result, until _finish_list has read it
            raw = self._result_file(scratch, list_id)
            try:
                self._download_result(list_id, raw)
            except JobUnavailable as gone:
                if record.uploaded_by == record.attempt:
                    raise  # uploaded by this very try: uploading again could loop and spend again
                self.log.warning("The result of resumed %s %s is gone (%s): uploading it again",
                                 self.list_noun, list_id, gone)  # fmt: skip
                record.abandon(list_id)
                record.save(state_path)
                return self.execute(context)
            if not record.completed and record.uploaded_at is not None:  # once per list, not per re-download
                metrics.bulk_list_seconds(time.time() - record.uploaded_at, verifier=self.verifier_name,
                                          dag_id=self.dag_id, kind=self.clearout_kind)  # fmt: skip
            record.completed = True
            record.save(state_path)
            credits_spent = None
            if record.credits_before is not None and (balance := self._check_credits(0)) is not None:
                credits_spent = record.credits_before - balance
            return self._finish_list(
                context, folder, record.rows_path, record.prepared, list_id, raw, credits_spent
            )

    def on_kill(self) -> None:
        """Killed while waiting on the worker (non-deferrable): cancel the list, best effort.

        While deferred this never runs; the trigger's ``on_kill`` cancels instead.
        """
        if self._waiting is not None:
            self._waiting.cancel_sync(self._jobs(), "its task was killed")
