"""Wait for a bulk job (a Clearout verify or Email Finder list, Mail.so batches) without holding a worker.

:class:`ClearoutBulkJobTrigger` polls a job's progress through the verifier's async
:class:`~clearout_provider.verification.verifier.BulkJobs` methods, backing off from ``poll_interval`` to
``max_poll_interval``, logs the percentage, and yields exactly ONE :class:`~airflow.triggers.base.
TriggerEvent` — it never raises, so a failure reaches the operator as an event it can turn into a clear
error (:func:`raise_for_event`). It decides on neutral job states only
(:class:`~clearout_provider.verification.model.JobState`); the vendor's words and codes stay in its
verifier. The event payload::

    {"status": "success" | "error" | "timeout" | "cancelled", "list_id": <job id>, "verifier": ...,
     "kind": "verify" | "finder", "message": "...", "percent": 0..100, "progress_status": "...",
     "error_type": ..., "error_code": ...}

Why each decision:

* **Serialised state is ids and settings only** (verifier name, connection id, job id, kind, intervals,
  the deadline as a Unix timestamp, ``cancel_on_deadline``): the triggerer stores it in the metadata DB
  and may run the trigger on another host, where :meth:`ClearoutBulkJobTrigger.jobs` builds the verifier
  again and the secret is resolved from the connection.
* **Transient failures keep polling** (the verifier's ``keeps_polling``: 5xx, network, 429, timeouts,
  which the hook already retried); a failure that will not heal (bad token, job unavailable, someone
  else's list) ends the wait with an ``error`` event at once rather than polling until the deadline.
* **The deadline is the trigger's, not Airflow's** ``defer(timeout=...)``: when it passes, the trigger
  can still cancel the job (``cancel_on_deadline``, where the vendor can: Clearout's unprocessed
  addresses then cost nothing) and say so in the event; Airflow's own timeout would fail the task
  without either.
* **on_kill cancels the job** (Airflow 3.3 calls it when a user marks the deferred task failed or
  success, or clears it); ``cleanup()`` is left alone because it also runs on every triggerer restart,
  when the job must keep running. Mail.so cannot cancel a batch: its job runs on, already paid for.

Non-deferrable operators and poking sensors run the SAME decisions through :meth:`run_sync` (blocking,
never called in the triggerer), so both modes end in identical events and identical errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from clearout_provider.exceptions import ServiceError
from clearout_provider.verification.model import JobProgress, JobState
from clearout_provider.verification.verifier import (
    BULK_KINDS,
    BulkJobs,
    BulkKind,
    bulk_jobs,
    spec,
)

log = logging.getLogger(__name__)

#: Event statuses (the ``status`` of every payload this trigger yields).
SUCCESS, ERROR, TIMEOUT, CANCELLED = "success", "error", "timeout", "cancelled"

#: Each poll waits this much longer than the previous one, up to ``max_poll_interval``: a list that
#: takes hours is polled rarely, one that takes seconds is noticed quickly.
BACKOFF_FACTOR = 1.5
#: Seconds ``on_kill`` and a deadline cancellation may spend on the cancel call (Airflow allows on_kill 30 s).
CANCEL_TIMEOUT = 20.0

#: Polls in a row answering an undocumented progress status before the wait fails.
MAX_UNKNOWN_POLLS = 10
#: The event status each final job state ends the wait with.
OUTCOMES: dict[JobState, str] = {
    JobState.COMPLETED: SUCCESS,
    JobState.CANCELLED: CANCELLED,
    JobState.FAILED: ERROR,
}


class ClearoutBulkJobTrigger(BaseTrigger):
    """Poll a bulk job until it completes, fails, is cancelled or passes its deadline.

    :param job_id: the job to wait for (a Clearout list id; a Mail.so job's batch ids).
    :param verifier: ``"clearout"`` or ``"mailso"`` (:data:`~clearout_provider.verification.verifier.
        VERIFIERS`).
    :param kind: ``"verify"`` (bulk verification) or ``"finder"`` (Clearout's bulk Email Finder).
    :param conn_id: the verifier's Airflow connection (resolved in the triggerer); its default when None.
    :param poll_interval: seconds before the second poll (the first is immediate).
    :param max_poll_interval: longest wait between two polls.
    :param deadline: Unix timestamp after which the wait ends with a ``timeout`` event; None = never.
    :param cancel_on_deadline: cancel the job at the deadline (Clearout: unprocessed addresses cost nothing).
    """

    def __init__(
        self,
        *,
        job_id: str,
        verifier: str = "clearout",
        kind: BulkKind = "verify",
        conn_id: str | None = None,
        poll_interval: float = 10.0,
        max_poll_interval: float = 120.0,
        deadline: float | None = None,
        cancel_on_deadline: bool = True,
    ) -> None:
        super().__init__()
        vendor = spec(verifier)  # refuses an unknown verifier
        if kind not in BULK_KINDS:
            raise ValueError(f"kind must be one of {BULK_KINDS}, not {kind!r}")
        if poll_interval <= 0 or max_poll_interval < poll_interval:
            raise ValueError("poll_interval must be > 0 and max_poll_interval >= poll_interval")
        self.job_id = job_id
        self.verifier = verifier
        self.kind: BulkKind = kind
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.deadline = float(deadline) if deadline is not None else None
        self.cancel_on_deadline = cancel_on_deadline
        self.label = vendor.label
        self._what = f"{vendor.label} {kind} {vendor.bulk_job_noun} {job_id}"
        self._last_percent: float | None = None
        self._unknown_polls = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "verifier": self.verifier,
                "kind": self.kind,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "deadline": self.deadline,
                "cancel_on_deadline": self.cancel_on_deadline,
            },
        )

    def jobs(self) -> BulkJobs:
        """The verifier's jobs; its hook retries briefly, as the poll loop itself is the long-term retry."""
        return bulk_jobs(
            self.verifier,
            self.kind,
            self.conn_id,
            max_retries=3,
            retry_max_backoff=min(30.0, self.max_poll_interval),
        )

    # ------------------------------------------------------------------ the async loop (triggerer)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        jobs = self.jobs()
        interval = self.poll_interval
        log.info("Waiting for %s", self._what)
        while True:
            try:
                progress, error = await jobs.aprogress(self.job_id), None
            except Exception as exc:  # noqa: BLE001 - a trigger reports failures as events, never raises
                progress, error = None, exc
            payload = self.judge(progress, error, jobs)
            if payload is None and self._past_deadline():
                payload = await self._adeadline(jobs)
            if payload is not None:
                yield TriggerEvent(payload)
                return
            await asyncio.sleep(self._sleep_for(interval))
            interval = min(interval * BACKOFF_FACTOR, self.max_poll_interval)

    async def on_kill(self) -> None:
        """The user stopped the deferred task (mark failed/success, clear): cancel the job, best effort."""
        await self._acancel(self.jobs(), "its task was stopped by a user")

    async def _adeadline(self, jobs: BulkJobs) -> dict[str, Any]:
        """The deadline passed: cancel if asked. A refused cancel may mean the job finished meanwhile
        (completed, or cancelled by someone else): then one last look reports what happened instead."""
        if not (self.cancel_on_deadline and jobs.can_cancel):
            return self._timeout_payload(jobs, cancelled=False)
        if await self._acancel(jobs, "its deadline passed"):
            return self._timeout_payload(jobs, cancelled=True)
        try:
            last = self.judge(await jobs.aprogress(self.job_id), None, jobs)
        except Exception:  # noqa: BLE001 - the timeout event below reports the failed cancel
            last = None
        return last or self._timeout_payload(jobs, cancelled=False)

    async def _acancel(self, jobs: BulkJobs, why: str) -> bool:
        """Cancel the job; True when the vendor accepted the cancel. Never raises (logged instead)."""
        if not jobs.can_cancel:
            log.info("%s cannot be cancelled (%s has no cancel): it runs on", self._what, self.label)
            return False
        log.info("Cancelling %s because %s", self._what, why)
        try:
            accepted = await asyncio.wait_for(jobs.acancel(self.job_id), CANCEL_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - best effort: report, never raise from on_kill
            log.warning("Could not cancel %s: %s", self._what, exc)
            return False
        if accepted:
            log.info("Cancelled %s", self._what)
        return accepted

    # ------------------------------------------------------------------ the sync twin (workers)

    def run_sync(self) -> dict[str, Any]:
        """The same loop with the verifier's blocking methods: for non-deferrable operators. Returns the
        payload. Blocks (``time.sleep``) between polls: never call it from the triggerer's event loop."""
        jobs = self.jobs()
        interval = self.poll_interval
        log.info("Waiting for %s (non-deferrable)", self._what)
        while True:
            try:
                progress, error = jobs.progress(self.job_id), None
            except Exception as exc:  # noqa: BLE001 - decided by judge(), exactly as in run()
                progress, error = None, exc
            payload = self.judge(progress, error, jobs)
            if payload is None and self._past_deadline():
                payload = self._deadline_sync(jobs)
            if payload is not None:
                return payload
            time.sleep(self._sleep_for(interval))
            interval = min(interval * BACKOFF_FACTOR, self.max_poll_interval)

    def _deadline_sync(self, jobs: BulkJobs) -> dict[str, Any]:
        """Blocking :meth:`_adeadline`."""
        if not (self.cancel_on_deadline and jobs.can_cancel):
            return self._timeout_payload(jobs, cancelled=False)
        if self.cancel_sync(jobs, "its deadline passed"):
            return self._timeout_payload(jobs, cancelled=True)
        try:
            last = self.judge(jobs.progress(self.job_id), None, jobs)
        except Exception:  # noqa: BLE001 - as in _adeadline
            last = None
        return last or self._timeout_payload(jobs, cancelled=False)

    def cancel_sync(self, jobs: BulkJobs, why: str) -> bool:
        """Blocking :meth:`_acancel` (for an operator's ``on_kill`` in non-deferrable mode)."""
        if not jobs.can_cancel:
            log.info("%s cannot be cancelled (%s has no cancel): it runs on", self._what, self.label)
            return False
        log.info("Cancelling %s because %s", self._what, why)
        try:
            accepted = jobs.cancel(self.job_id)
        except Exception as exc:  # noqa: BLE001 - best effort, as in _acancel
            log.warning("Could not cancel %s: %s", self._what, exc)
            return False
        if accepted:
            log.info("Cancelled %s", self._what)
        return accepted

    # ------------------------------------------------------------------ decisions shared by both loops

    def judge(
        self, progress: JobProgress | None, error: BaseException | None, jobs: BulkJobs
    ) -> dict[str, Any] | None:
        """The payload one poll ends the wait with, or None to keep polling (see the module docstring)."""
        if error is not None:
            if jobs.keeps_polling(error):
                log.warning("Progress of %s unavailable for now, polling again: %s", self._what, error)
                return None
            what = (
                str(error)
                if isinstance(error, ServiceError)
                else f"unexpected {type(error).__name__}: {error}"
            )
            return self._payload(
                ERROR,
                f"Could not follow {self._what}: {what}",
                error_type=type(error).__name__,
                error_code=getattr(error, "code", None),
            )
        assert progress is not None
        self._last_percent = progress.percent
        state, word = progress.state, progress.vendor_status
        self._unknown_polls = self._unknown_polls + 1 if state is JobState.UNRECOGNISED else 0
        if self._unknown_polls >= MAX_UNKNOWN_POLLS:
            return self._payload(
                ERROR,
                f"{self._what} answered the undocumented progress status {word!r} {self._unknown_polls} "
                f"times in a row ({progress.percent:.0f}% done): giving up instead of waiting until the "
                f"deadline. Look at the job in the {self.label} app; a retry of the task resumes it if it "
                "is still usable",
                progress_status=word,
            )
        outcome = OUTCOMES.get(state)
        if outcome is None:
            log.info("%s: %s, %.0f%% done", self._what, word, progress.percent)
            return None
        if outcome == SUCCESS:
            message = f"{self._what} completed"
        elif outcome == CANCELLED:
            message = (
                f"{self._what} was cancelled at {progress.percent:.0f}% (in the {self.label} app or by "
                "another process); unprocessed addresses cost nothing. A retry or a cleared task keeps "
                "the verdicts it already processed (verdict ledger) and uploads only the rest"
            )
        else:
            message = (
                f"{self._what} ended with status {word!r} at {progress.percent:.0f}%; look at it in the "
                f"{self.label} app, then retry the task to submit it again"
            )
        return self._payload(outcome, message, progress_status=word)

    def _timeout_payload(self, jobs: BulkJobs, cancelled: bool) -> dict[str, Any]:
        percent = f"{self._last_percent:.0f}%" if self._last_percent is not None else "an unknown share"
        if cancelled:
            fate = "it was cancelled, so unprocessed addresses cost nothing; a retry uploads it again"
        elif self.cancel_on_deadline and jobs.can_cancel:
            fate = (
                f"cancelling it failed (see the log), so it may still be running: check the {self.label} app"
            )
        else:
            fate = f"it keeps running in {self.label} and a retry of the task resumes it without paying again"
        return self._payload(
            TIMEOUT,
            f"{self._what} did not finish before its deadline ({percent} done); {fate}. Allow more time "
            "with the operator's timeout for jobs this size",
            cancelled=cancelled,
        )

    def _payload(self, status: str, message: str, **extra: Any) -> dict[str, Any]:
        return {
            "status": status,
            "list_id": self.job_id,
            "verifier": self.verifier,
            "kind": self.kind,
            "message": message,
            "percent": 100.0 if status == SUCCESS else self._last_percent,
            **extra,
        }

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def _sleep_for(self, interval: float) -> float:
        """The next pause: ``interval``, cut short so the deadline is checked when it passes."""
        if self.deadline is None:
            return interval
        return max(0.0, min(interval, self.deadline - time.time()))


# ---------------------------------------------------------------------- events → task outcome


class ClearoutBulkJobError(AirflowException):
    """A bulk job did not produce a result; ``list_id`` names it and the message says what to do."""

    def __init__(self, message: str, *, list_id: str, kind: str, percent: float | None = None) -> None:
        super().__init__(message)
        self.list_id, self.kind, self.percent = list_id, kind, percent


class ClearoutBulkJobFailed(ClearoutBulkJobError):
    """The list failed, or could not be followed (bad token, list unavailable or not ours)."""

    def __init__(
        self, message: str, *, error_type: str | None = None, error_code: int | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.error_type, self.error_code = error_type, error_code


class ClearoutBulkJobCancelled(ClearoutBulkJobError):
    """The list was cancelled before it completed."""


class ClearoutBulkJobTimedOut(ClearoutBulkJobError):
    """The list did not complete before the deadline (``cancelled`` tells whether it was stopped)."""

    def __init__(self, message: str, *, cancelled: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.cancelled = cancelled


def raise_for_event(event: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return a ``success`` payload; raise the matching :class:`ClearoutBulkJobError` for any other."""
    if not isinstance(event, Mapping) or "status" not in event:
        raise AirflowException(f"Unexpected event from ClearoutBulkJobTrigger: {event!r}")
    status = event["status"]
    if status == SUCCESS:
        return event
    common: dict[str, Any] = {
        "list_id": event.get("list_id"),
        "kind": event.get("kind"),
        "percent": event.get("percent"),
    }
    message = event.get("message") or f"Bulk job {event.get('list_id')} ended with {status}"
    if status == CANCELLED:
        raise ClearoutBulkJobCancelled(message, **common)
    if status == TIMEOUT:
        raise ClearoutBulkJobTimedOut(message, cancelled=bool(event.get("cancelled")), **common)
    raise ClearoutBulkJobFailed(
        message, error_type=event.get("error_type"), error_code=event.get("error_code"), **common
    )
