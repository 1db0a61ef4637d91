"""MailsoVerifier: Mail.so behind the neutral verifier interfaces, one address at a time or in batches.

One address: ``GET /validate`` (:meth:`MailsoVerifier.verify_one`, what the instant runner calls). Many:
``POST /batch`` then poll until ``finished_at`` is set, either in the worker
(:meth:`MailsoVerifier.verify_in_batches`, the instant operator above its ``batch_above``) or as a bulk job
(:meth:`~MailsoVerifier.submit` / :meth:`~MailsoVerifier.progress` / :meth:`~MailsoVerifier.download`,
the bulk operator and the trigger). A bulk job is the batches of one file: its id is their ids joined by
``,``; its progress is finished batches over all; Mail.so cannot cancel a batch.

A batch is paid for when it is created and re-posting creates (and charges) a new one, so every batch
goes through a :class:`~clearout_provider.instant_calls.Checkpoint` (:class:`_BatchBook`): "posting" is
written BEFORE the ``POST``, the batch id as soon as it is answered. A retried task collects the batches
its earlier try created instead of posting them again. A ``POST`` whose answer was lost (a 5xx after
Mail.so may have created the batch, a broken connection, an unreadable answer, a killed worker) leaves
"posting": Mail.so cannot list batches, so nothing can tell whether that batch exists, and the task fails
with :class:`~clearout_provider.exceptions.MailsoBatchInDoubt` (on this try and every retry) instead of
paying twice without knowing; its message says how a person lifts the doubt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clearout_provider.exceptions import (
    MailsoBadRequest,
    MailsoBatchesExist,
    MailsoBatchInDoubt,
    MailsoError,
    MailsoProtocolError,
    MailsoUnavailable,
)
from clearout_provider.hooks.mailso import MailsoHook
from clearout_provider.instant_calls import Checkpoint
from clearout_provider.mailso.models import MailsoBatch, MailsoValidation
from clearout_provider.mailso.statuses import verdict_row
from clearout_provider.masking import mask_email
from clearout_provider.verification.model import DecidedBy, JobProgress, JobState
from clearout_provider.verification.verifier import SPECS

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from clearout_provider.credit_check import Funds

log = logging.getLogger(__name__)

#: Mail.so failures that concern one address only: refused as input, or an unreadable answer.
MAILSO_ITEM_FAILURES: tuple[type[Exception], ...] = (MailsoBadRequest, MailsoProtocolError)
#: Joins the batch ids of one bulk job into its job id (Mail.so's ids are UUIDs: no comma in them).
JOB_SEPARATOR = ","
_POSTING, _NOT_SENT = "posting", "not_sent"


def _row(validation: MailsoValidation, decided_by: DecidedBy) -> dict[str, Any]:
    return verdict_row(asdict(validation), decided_by=decided_by)


def _batch_rows(validations: Sequence[MailsoValidation]) -> list[dict[str, Any]]:
    """A batch's answers as verdict rows keyed by the address normalised exactly as the upload was
    (``normalised_email``), whatever spelling Mail.so echoes: the one rule both batch paths match by."""
    from clearout_provider.contacts import normalise_emails  # pyarrow: only when a task runs

    keys = normalise_emails([v.email for v in validations]).normalised.to_pylist()
    return [
        {**_row(v, DecidedBy.MAILSO_BATCH), "normalised_email": key}
        for v, key in zip(validations, keys, strict=True)
    ]


def batch_ids(job_id: str) -> tuple[str, ...]:
    """The batches of a bulk job id."""
    return tuple(part for part in job_id.split(JOB_SEPARATOR) if part)


@dataclass(frozen=True)
class BatchesProgress(JobProgress):
    """How far the batches of one bulk job have got (done when every batch has ``finished_at``)."""

    batches: tuple[str, ...]
    finished_batches: int
    percent: float

    @property
    def job_id(self) -> str:
        return JOB_SEPARATOR.join(self.batches)

    @property
    def state(self) -> JobState:
        return JobState.COMPLETED if self.finished_batches == len(self.batches) else JobState.RUNNING

    @property
    def vendor_status(self) -> str:
        return f"{self.finished_batches} of {len(self.batches)} batches finished"


class _BatchBook:
    """The batches of one submission in a checkpoint: recorded before waiting, doubts never re-posted."""

    def __init__(self, hook: MailsoHook, checkpoint: Checkpoint) -> None:
        self.hook, self.checkpoint = hook, checkpoint
        self.known = checkpoint.load()

    def batch_id(self, key: str) -> str | None:
        """The batch an earlier try created under ``key``; raises when its creation is in doubt."""
        entry = self.known.get(key, {})
        if entry.get("state") == _POSTING:
            raise MailsoBatchInDoubt(
                f"An earlier try sent Mail.so batch {key} but its answer never arrived: the batch may "
                "exist and be charged, and Mail.so cannot list batches to tell. Not posting it again",
                checkpoint=repr(self.checkpoint),
                key=key,
            )
        batch_id = entry.get("batch_id")
        return str(batch_id) if batch_id else None

    def create(self, key: str, emails: Sequence[str]) -> str:
        """Post ``emails`` as one batch: "posting" first, then its id (see the module docstring)."""
        self.checkpoint.add(key, {"state": _POSTING})
        try:
            batch = self.hook.create_batch(emails)
        except (MailsoUnavailable, MailsoProtocolError) as exc:
            if isinstance(exc, MailsoUnavailable) and not exc.maybe_processed:
                self.checkpoint.add(key, {"state": _NOT_SENT})  # the connection never opened
                raise
            raise MailsoBatchInDoubt(
                f"Mail.so batch {key} ({len(emails)} addresses) was sent but its answer was lost ({exc}): "
                "it may exist and be charged, and Mail.so cannot list batches to tell. Not posting it "
                "again, on this try or a retry",
                checkpoint=repr(self.checkpoint),
                key=key,
            ) from exc
        except MailsoError:
            self.checkpoint.add(key, {"state": _NOT_SENT})  # refused (4xx, 429): nothing was created
            raise
        # Anything else (the task killed mid-request...) leaves "posting": in doubt, never re-posted.
        self.checkpoint.add(key, {"batch_id": batch.id})
        return batch.id


def _chunks(emails: Sequence[str], size: int) -> list[list[str]]:
    return [list(emails[i : i + size]) for i in range(0, len(emails), size)]


class MailsoVerifier:
    """Mail.so validation through one :class:`MailsoHook` (its rate limiter paces every thread).

    :param conn_id: a ``mailso`` connection (``mailso_default`` when None).
    :param poll_interval: seconds between polls of a running batch (:meth:`verify_in_batches`).
    :param batch_timeout: how long one batch may run before the task fails (the batch id is kept, so a
        retry collects it without paying again).
    :param hook_options: passed to :class:`MailsoHook` (retries).
    """

    spec = SPECS["mailso"]
    item_failures = MAILSO_ITEM_FAILURES
    #: Mail.so has no endpoint to stop a batch: it runs to its end and is paid for at creation.
    can_cancel = False

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        poll_interval: float = 5.0,
        batch_timeout: float = 3600.0,
        **hook_options: Any,
    ) -> None:
        self.hook = MailsoHook(conn_id or MailsoHook.default_conn_name, **hook_options)
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout
        #: Batches seen finished (a finished batch never changes): later polls skip them.
        self._finished: set[str] = set()

    def verify_one(self, email: str) -> dict[str, Any]:
        return _row(self.hook.validate(email), DecidedBy.MAILSO_INSTANT)

    def balance(self) -> int | None:
        """Mail.so publishes no balance endpoint: spending is counted from the answers (one each)."""
        return None

    def funds(self) -> None:
        """No balance endpoint: the low-credit check has nothing to read."""
        return None

    def check_funds(self, to_send: int, funds: Funds | None = None) -> None:
        """Mail.so publishes no balance: nothing to check before creating (a plan or quota refusal comes
        with the first ``POST /batch``, before anything is charged)."""
        return None

    def close(self) -> None:
        self.hook.close()

    # ------------------------------------------------------------------ batches waited for in the worker

    def verify_in_batches(
        self,
        emails: Sequence[str],
        checkpoint: Checkpoint,
        on_result: Callable[[str, dict[str, Any]], None],
    ) -> dict[str, dict[str, Any]]:
        """Validate ``emails`` (normalised, unique) as batches of the connection's ``batch_size``.

        ``on_result(address, row)`` gets every answer as its batch is read (journal it there). Returns the
        rows by address sent; an address a finished batch does not answer gets no row (no verdict: it
        stays due). Batches recorded in ``checkpoint`` by an earlier try are collected, not re-posted.
        """
        book = _BatchBook(self.hook, checkpoint)
        # Create every batch first (each id checkpointed at once), then collect them: Mail.so works on
        # them side by side, so a night of N batches waits about as long as its largest one.
        running: list[tuple[str, list[str]]] = []
        for number, chunk in enumerate(_chunks(emails, self.hook.batch_size)):
            key = f"batch-{number}-{chunk[0]}-{len(chunk)}"
            batch_id = book.batch_id(key)
            if batch_id is None:
                batch_id = book.create(key, chunk)
            else:
                log.info("Collecting Mail.so batch %s created by an earlier try (not re-posted)", batch_id)
            running.append((batch_id, chunk))
        rows: dict[str, dict[str, Any]] = {}
        for batch_id, chunk in running:
            batch = self.hook.wait_for_batch(
                batch_id, poll_interval=self.poll_interval, timeout=self.batch_timeout
            )
            sent = set(chunk)
            for validation, row in zip(batch.emails, _batch_rows(batch.emails), strict=True):
                address = row.pop("normalised_email")
                if address not in sent:
                    log.warning(
                        "Mail.so batch %s answered an address not sent: %s",
                        batch_id,
                        mask_email(validation.email),
                    )
                    continue
                on_result(address, row)
                rows[address] = row
        return rows

    # ------------------------------------------------------------------ bulk jobs (BulkVerifier)

    def submit(self, upload: Path, *, journal: ObjectStoragePath | Path, fresh: bool = False) -> str:
        """Create the batches of ``upload``'s addresses; the job id (their ids joined by ``,``).

        Every batch goes through the checkpoint ``mailso-<upload name>`` in ``journal`` (see the module
        docstring), flushed per record so even an object store holds each id before the next ``POST``.
        A checkpoint holding every batch already raises
        :class:`~clearout_provider.exceptions.MailsoBatchesExist` (follow those); one holding some of them
        (an earlier try stopped midway) keeps those and creates the rest. ``fresh`` starts a new
        generation of batches (the earlier ones proved unusable) and pays again.
        """
        from clearout_provider.contacts import read_upload

        emails = read_upload(upload).to_pylist()
        checkpoint = Checkpoint(journal, f"mailso-{upload.stem}", flush_every=1)
        try:
            book = _BatchBook(self.hook, checkpoint)
            generation = int(book.known.get("generation", {}).get("number", 0)) + (1 if fresh else 0)
            if fresh:
                checkpoint.add("generation", {"number": generation})
            ids, created = [], 0
            for number, chunk in enumerate(_chunks(emails, self.hook.batch_size)):
                key = f"g{generation}-batch-{number}-{len(chunk)}"
                batch_id = book.batch_id(key)
                if batch_id is None:
                    batch_id, created = book.create(key, chunk), created + 1
                ids.append(batch_id)
        finally:
            checkpoint.close()
        job_id = JOB_SEPARATOR.join(ids)
        if not created:
            raise MailsoBatchesExist(
                f"An earlier try created all {len(ids)} Mail.so batches of this file", batch_job=job_id
            )
        log.info("Created %d of the %d Mail.so batches of %d addresses", created, len(ids), len(emails))
        return job_id

    def _progress(self, job_id: str, batches: Sequence[MailsoBatch]) -> BatchesProgress:
        self._finished.update(batch.id for batch in batches if batch.finished)
        ids = batch_ids(job_id)
        done = sum(1 for batch_id in ids if batch_id in self._finished)
        return BatchesProgress(ids, done, 100.0 * done / len(ids) if ids else 100.0)

    def progress(self, job_id: str) -> BatchesProgress:
        """Ask every batch not yet seen finished (a batch gone from Mail.so raises ``MailsoNotFound``)."""
        pending = [b for b in batch_ids(job_id) if b not in self._finished]
        return self._progress(job_id, [self.hook.get_batch(batch_id) for batch_id in pending])

    async def aprogress(self, job_id: str) -> BatchesProgress:
        """Async :meth:`progress`: one batch at a time, paced by the hook's rate limiter."""
        pending = [b for b in batch_ids(job_id) if b not in self._finished]
        return self._progress(job_id, [await self.hook.aget_batch(batch_id) for batch_id in pending])

    def cancel(self, job_id: str) -> bool:
        """Mail.so cannot stop a batch (no endpoint): it runs to its end, paid for at creation."""
        log.info("Mail.so cannot cancel batches: %s keeps running (already paid for)", job_id)
        return False

    async def acancel(self, job_id: str) -> bool:
        """Async :meth:`cancel` (as little: nothing to call)."""
        return self.cancel(job_id)

    def keeps_polling(self, error: BaseException) -> bool:
        """Transient failures (5xx, network, 429 within the quota) heal; auth, plan or a gone batch not."""
        return isinstance(error, MailsoError) and error.transient

    def download(self, job_id: str, scratch: Path) -> pa.Table:
        """Read every finished batch of the job into verdicts (``decided_by`` mailso_batch).

        ``scratch`` is not needed: the answers come as JSON, not as a file. An address a batch does not
        answer gets no row (no verdict: it stays due).
        """
        from clearout_provider.results import verdict_table

        validations = [v for batch_id in batch_ids(job_id) for v in self._finished_batch(batch_id).emails]
        return verdict_table(_batch_rows(validations))

    def _finished_batch(self, batch_id: str) -> MailsoBatch:
        batch = self.hook.get_batch(batch_id)
        if not batch.finished:
            raise MailsoProtocolError(
                f"Mail.so batch {batch_id} is not finished yet; its answers are not whole"
            )
        return batch
