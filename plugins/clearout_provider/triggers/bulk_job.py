"""Wait for a Clearout bulk list (verify or Email Finder) to finish, without holding a worker slot.

:class:`ClearoutBulkJobTrigger` polls a list's progress with the hook's async methods, backing off from
``poll_interval`` to ``max_poll_interval``, logs the percentage, and yields exactly ONE
:class:`~airflow.triggers.base.TriggerEvent` — it never raises, so a failure reaches the operator as an
event it can turn into a clear error (:func:`raise_for_event`). The event payload::

    {"status": "success" | "error" | "timeout" | "cancelled", "list_id": ..., "kind": "verify" | "finder",
     "message": "...", "percent": 0..100, "progress_status": "...", "error_type": ..., "error_code": ...}

Why each decision:

* **Serialised state is ids and settings only** (connection id, list id, kind, intervals, the deadline
  as a Unix timestamp, ``cancel_on_deadline``): the triggerer stores it in the metadata DB and may run
  the trigger on another host, where the token is resolved from the connection again.
* **Transient failures keep polling** (5xx, network, 429, timeouts: the hook already retried them); a
  failure that will not heal (bad token, list unavailable, someone else's list) ends the wait with an
  ``error`` event at once rather than polling until the deadline.
* **The deadline is the trigger's, not Airflow's** ``defer(timeout=...)``: when it passes, the trigger
  can still cancel the list (``cancel_on_deadline``: unprocessed addresses then cost nothing) and say so
  in the event; Airflow's own timeout would fail the task without either.
* **on_kill cancels the list** (Airflow 3.3 calls it when a user marks the deferred task failed or
  success, or clears it); ``cleanup()`` is left alone because it also runs on every triggerer restart,
  when the list must keep running.

Non-deferrable operators and poking sensors run the SAME decisions through :meth:`run_sync` (blocking,
never called in the triggerer), so both modes end in identical events and identical errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from clearout_provider.clearout.models import BulkProgress
from clearout_provider.exceptions import ClearoutError, ClearoutNotCancellable, ClearoutTimeout
from clearout_provider.hooks.clearout import ClearoutHook

log = logging.getLogger(__name__)

BulkKind = Literal["verify", "finder"]
KINDS: tuple[str, ...] = ("verify", "finder")

#: Event statuses (the ``status`` of every payload this trigger yields).
SUCCESS, ERROR, TIMEOUT, CANCELLED = "success", "error", "timeout", "cancelled"

#: Each poll waits this much longer than the previous one, up to ``max_poll_interval``: a list that
#: takes hours is polled rarely, one that takes seconds is noticed quickly.
BACKOFF_FACTOR = 1.5
#: Seconds ``on_kill`` and a deadline cancellation may spend on the cancel call (Airflow allows on_kill 30 s).
CANCEL_TIMEOUT = 20.0

# Clearout documents "running" and "completed"; a cancelled list reports "cancelled". Other spellings are
# not documented: the obvious failure words are failures, the obvious working words keep polling, and any
# other status keeps polling only MAX_UNKNOWN_POLLS times in a row before the wait fails saying so (an
# unknown word must not hold a list's slot and a task until the 12-hour deadline).
_COMPLETED = frozenset({"completed", "complete"})
_CANCELLED = frozenset({"cancelled", "canceled"})
_FAILED = frozenset({"failed", "failure", "error", "aborted"})
_WORKING = frozenset(
    {"running", "queued", "pending", "processing", "in_progress", "in progress", "verifying", "uploaded",
     "new", "cancelling", "canceling"}
)  # fmt: skip
#: Polls in a row answering an undocumented progress status before the wait fails.
MAX_UNKNOWN_POLLS = 10


def progress_outcome(progress_status: str) -> str | None:
    """The event status a progress status ends the wait with.

    None while the list is (or may be) working.
    """
    status = progress_status.strip().lower()
    if status in _COMPLETED:
        return SUCCESS
    if status in _CANCELLED:
        return CANCELLED
    if status in _FAILED:
        return ERROR
    return None


def is_known_working(progress_status: str) -> bool:
    """Whether a progress status is one of the words for a list still being processed."""
    return progress_status.strip().lower() in _WORKING


def _keeps_polling(exc: BaseException) -> bool:
    """Whether a failed progress call is worth another poll (the hook has already retried it)."""
    return isinstance(exc, ClearoutError) and (exc.transient or isinstance(exc, ClearoutTimeout))


class ClearoutBulkJobTrigger(BaseTrigger):
    """Poll a Clearout bulk list until it completes, fails, is cancelled or passes its deadline.

    :param list_id: the Clearout list to wait for.
    :param kind: ``"verify"`` (bulk verification) or ``"finder"`` (bulk Email Finder).
    :param clearout_conn_id: Airflow connection holding the API token (resolved in the triggerer).
    :param poll_interval: seconds before the second poll (the first is immediate).
    :param max_poll_interval: longest wait between two polls.
    :param deadline: Unix timestamp after which the wait ends with a ``timeout`` event; None = never.
    :param cancel_on_deadline: cancel the list at the deadline (unprocessed addresses cost nothing).
    """

    def __init__(
        self,
        *,
        list_id: str,
        kind: BulkKind = "verify",
        clearout_conn_id: str = ClearoutHook.default_conn_name,
        poll_interval: float = 10.0,
        max_poll_interval: float = 120.0,
        deadline: float | None = None,
        cancel_on_deadline: bool = True,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if poll_interval <= 0 or max_poll_interval < poll_interval:
            raise ValueError("poll_interval must be > 0 and max_poll_interval >= poll_interval")
        self.list_id = list_id
        self.kind: BulkKind = kind
        self.clearout_conn_id = clearout_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.deadline = float(deadline) if deadline is not None else None
        self.cancel_on_deadline = cancel_on_deadline
        self._last_percent: float | None = None
        self._unknown_polls = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "list_id": self.list_id,
                "kind": self.kind,
                "clearout_conn_id": self.clearout_conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "deadline": self.deadline,
                "cancel_on_deadline": self.cancel_on_deadline,
            },
        )

    def hook(self) -> ClearoutHook:
        """A hook that retries briefly: the poll loop itself is the long-term retry."""
        return ClearoutHook(
            self.clearout_conn_id, max_retries=3, retry_max_backoff=min(30.0, self.max_poll_interval)
        )

    # ------------------------------------------------------------------ the async loop (triggerer)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self.hook()
        interval = self.poll_interval
        log.info("Waiting for Clearout %s list %s", self.kind, self.list_id)
        while True:
            try:
                progress, error = await self._aprogress(hook), None
            except Exception as exc:  # noqa: BLE001 - a trigger reports failures as events, never raises
                progress, error = None, exc
            payload = self.judge(progress, error)
            if payload is None and self._past_deadline():
                payload = await self._adeadline(hook)
            if payload is not None:
                yield TriggerEvent(payload)
                return
            await asyncio.sleep(self._sleep_for(interval))
            interval = min(interval * BACKOFF_FACTOR, self.max_poll_interval)

    async def on_kill(self) -> None:
        """The user stopped the deferred task (mark failed/success, clear): cancel the list, best effort."""
        await self._acancel(self.hook(), "its task was stopped by a user")

    async def _adeadline(self, hook: ClearoutHook) -> dict[str, Any]:
        """The deadline passed: cancel if asked. A refused cancel may mean the list finished meanwhile
        (completed, or cancelled by someone else): then one last look reports what happened instead."""
        if not self.cancel_on_deadline:
            return self._timeout_payload(cancelled=False)
        if await self._acancel(hook, "its deadline passed"):
            return self._timeout_payload(cancelled=True)
        try:
            last = self.judge(await self._aprogress(hook), None)
        except Exception:  # noqa: BLE001 - the timeout event below reports the failed cancel
            last = None
        return last or self._timeout_payload(cancelled=False)

    async def _aprogress(self, hook: ClearoutHook) -> BulkProgress:
        if self.kind == "verify":
            return await hook.aget_bulk_progress(self.list_id)
        return await hook.aget_finder_bulk_progress(self.list_id)

    async def _acancel(self, hook: ClearoutHook, why: str) -> bool:
        """Cancel the list; True when Clearout accepted the cancel. Never raises (logged instead)."""
        log.info("Cancelling Clearout %s list %s because %s", self.kind, self.list_id, why)
        call = hook.acancel_list if self.kind == "verify" else hook.acancel_finder_list
        try:
            await asyncio.wait_for(call(self.list_id), CANCEL_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - best effort: report, never raise from on_kill
            self._log_cancel_failure(exc)
            return False
        log.info("Cancelled Clearout %s list %s", self.kind, self.list_id)
        return True

    # ------------------------------------------------------------------ the sync twin (workers)

    def run_sync(self) -> dict[str, Any]:
        """The same loop with the hook's blocking methods: for non-deferrable operators. Returns the payload.

        Blocks (``time.sleep``) between polls: never call it from the triggerer's event loop.
        """
        hook = self.hook()
        interval = self.poll_interval
        log.info("Waiting for Clearout %s list %s (non-deferrable)", self.kind, self.list_id)
        while True:
            try:
                progress, error = self.progress_sync(hook), None
            except Exception as exc:  # noqa: BLE001 - decided by judge(), exactly as in run()
                progress, error = None, exc
            payload = self.judge(progress, error)
            if payload is None and self._past_deadline():
                payload = self._deadline_sync(hook)
            if payload is not None:
                return payload
            time.sleep(self._sleep_for(interval))
            interval = min(interval * BACKOFF_FACTOR, self.max_poll_interval)

    def _deadline_sync(self, hook: ClearoutHook) -> dict[str, Any]:
        """Blocking :meth:`_adeadline`."""
        if not self.cancel_on_deadline:
            return self._timeout_payload(cancelled=False)
        if self.cancel_sync(hook, "its deadline passed"):
            return self._timeout_payload(cancelled=True)
        try:
            last = self.judge(self.progress_sync(hook), None)
        except Exception:  # noqa: BLE001 - as in _adeadline
            last = None
        return last or self._timeout_payload(cancelled=False)

    def progress_sync(self, hook: ClearoutHook) -> BulkProgress:
        """One blocking progress call (also what a poking sensor asks)."""
        if self.kind == "verify":
            return hook.get_bulk_progress(self.list_id)
        return hook.get_finder_bulk_progress(self.list_id)

    def cancel_sync(self, hook: ClearoutHook, why: str) -> bool:
        """Blocking :meth:`_acancel` (for an operator's ``on_kill`` in non-deferrable mode)."""
        log.info("Cancelling Clearout %s list %s because %s", self.kind, self.list_id, why)
        try:
            (hook.cancel_list if self.kind == "verify" else hook.cancel_finder_list)(self.list_id)
        except Exception as exc:  # noqa: BLE001 - best effort, as in _acancel
            self._log_cancel_failure(exc)
            return False
        log.info("Cancelled Clearout %s list %s", self.kind, self.list_id)
        return True

    # ------------------------------------------------------------------ decisions shared by both loops

    def judge(self, progress: BulkProgress | None, error: BaseException | None) -> dict[str, Any] | None:
        """The payload one poll ends the wait with, or None to keep polling (see the module docstring)."""
        if error is not None:
            if _keeps_polling(error):
                log.warning(
                    "Progress of Clearout list %s unavailable for now, polling again: %s", self.list_id, error
                )
                return None
            what = (
                str(error)
                if isinstance(error, ClearoutError)
                else f"unexpected {type(error).__name__}: {error}"
            )
            return self._payload(
                ERROR,
                f"Could not follow Clearout {self.kind} list {self.list_id}: {what}",
                error_type=type(error).__name__,
                error_code=getattr(error, "code", None),
            )
        assert progress is not None
        self._last_percent = progress.percent
        outcome = progress_outcome(progress.status)
        self._unknown_polls = (
            0 if outcome is not None or is_known_working(progress.status) else self._unknown_polls + 1
        )
        if self._unknown_polls >= MAX_UNKNOWN_POLLS:
            return self._payload(
                ERROR,
                f"Clearout {self.kind} list {self.list_id} answered the undocumented progress status "
                f"{progress.status!r} {self._unknown_polls} times in a row ({progress.percent:.0f}% done): "
                "giving up instead of waiting until the deadline. Look at the list in the Clearout app; "
                "a retry of the task resumes the list if it is still usable",
                progress_status=progress.status,
            )
        if outcome is None:
            log.info(
                "Clearout %s list %s: %s, %.0f%% done",
                self.kind,
                self.list_id,
                progress.status,
                progress.percent,
            )
            return None
        if outcome == SUCCESS:
            message = f"Clearout {self.kind} list {self.list_id} completed"
        elif outcome == CANCELLED:
            message = (
                f"Clearout {self.kind} list {self.list_id} was cancelled at {progress.percent:.0f}% "
                "(in the Clearout app or by another process); unprocessed addresses cost nothing. "
                "A retry or a cleared task keeps the verdicts it already processed (verdict ledger) "
                "and uploads only the rest"
            )
        else:
            message = (
                f"Clearout {self.kind} list {self.list_id} ended with status {progress.status!r} at "
                f"{progress.percent:.0f}%; look at the list in the Clearout app, "
                "then retry the task to upload it again"
            )
        return self._payload(outcome, message, progress_status=progress.status)

    def _timeout_payload(self, cancelled: bool) -> dict[str, Any]:
        percent = f"{self._last_percent:.0f}%" if self._last_percent is not None else "an unknown share"
        if cancelled:
            fate = "it was cancelled, so unprocessed addresses cost nothing; a retry uploads it again"
        elif self.cancel_on_deadline:
            fate = "cancelling it failed (see the log), so it may still be running: check the Clearout app"
        else:
            fate = "it keeps running in Clearout and a retry of the task resumes it without paying again"
        return self._payload(
            TIMEOUT,
            f"Clearout {self.kind} list {self.list_id} did not finish before its deadline "
            f"({percent} done); {fate}. Allow more time with the operator's timeout for lists this size",
            cancelled=cancelled,
        )

    def _payload(self, status: str, message: str, **extra: Any) -> dict[str, Any]:
        return {
            "status": status,
            "list_id": self.list_id,
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

    def _log_cancel_failure(self, exc: BaseException) -> None:
        if isinstance(exc, ClearoutNotCancellable):
            log.info(
                "Clearout %s list %s was not cancellable (already finished or cancelling)",
                self.kind,
                self.list_id,
            )
        else:
            log.warning("Could not cancel Clearout %s list %s: %s", self.kind, self.list_id, exc)


# ---------------------------------------------------------------------- events → task outcome


class ClearoutBulkJobError(AirflowException):
    """A bulk list did not produce a result; ``list_id`` names it and the message says what to do."""

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
    message = event.get("message") or f"Clearout list {event.get('list_id')} ended with {status}"
    if status == CANCELLED:
        raise ClearoutBulkJobCancelled(message, **common)
    if status == TIMEOUT:
        raise ClearoutBulkJobTimedOut(message, cancelled=bool(event.get("cancelled")), **common)
    raise ClearoutBulkJobFailed(
        message, error_type=event.get("error_type"), error_code=event.get("error_code"), **common
    )
