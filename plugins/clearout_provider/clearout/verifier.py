"""ClearoutVerifier: Clearout behind the neutral verifier interfaces.

:class:`ClearoutLists` follows Clearout bulk lists of one kind (verify or Email Finder) for the trigger and
the sensor (:class:`~clearout_provider.verification.verifier.BulkJobs`). :class:`ClearoutVerifier` adds
instant verification (:class:`~clearout_provider.verification.verifier.InstantVerifier`: one address in,
one verdict row out) and bulk verification (:class:`~clearout_provider.verification.verifier.
BulkVerifier`: one uploaded list per file, its result file read into verdicts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clearout_provider.clearout.models import BulkProgress, Credits, VerifyResult
from clearout_provider.clearout.statuses import CANCELLED_CODE
from clearout_provider.exceptions import (
    CLEAROUT_ITEM_FAILURES,
    ClearoutCreditsError,
    ClearoutDailyLimitError,
    ClearoutError,
    ClearoutNotCancellable,
    ClearoutTimeout,
)
from clearout_provider.hooks.clearout import ClearoutHook, Optimize
from clearout_provider.verification.verifier import SPECS, BulkKind

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from clearout_provider.credit_check import Funds

log = logging.getLogger(__name__)


def verdict_data(result: VerifyResult) -> dict[str, Any]:
    """A typed instant answer back in the API's ``data`` shape, which ``normalise_instant_result`` reads."""
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


class ClearoutLists:
    """Clearout bulk lists of one ``kind``: progress (sync and async) and cancel, for the trigger and sensor.

    :param hook: the hook every call goes through.
    :param kind: ``"verify"`` or ``"finder"`` (their endpoints differ, their life does not).
    """

    can_cancel = True

    def __init__(self, hook: ClearoutHook, kind: BulkKind = "verify") -> None:
        self.hook = hook
        self.kind: BulkKind = kind
        self._noun = f"Clearout {kind} list"

    def progress(self, job_id: str) -> BulkProgress:
        if self.kind == "verify":
            return self.hook.get_bulk_progress(job_id)
        return self.hook.get_finder_bulk_progress(job_id)

    async def aprogress(self, job_id: str) -> BulkProgress:
        if self.kind == "verify":
            return await self.hook.aget_bulk_progress(job_id)
        return await self.hook.aget_finder_bulk_progress(job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel the list (its unprocessed addresses cost nothing); False when Clearout says 1116."""
        try:
            (self.hook.cancel_list if self.kind == "verify" else self.hook.cancel_finder_list)(job_id)
        except ClearoutNotCancellable:
            log.info("%s %s was not cancellable (already finished or cancelling)", self._noun, job_id)
            return False
        return True

    async def acancel(self, job_id: str) -> bool:
        """Async :meth:`cancel`."""
        try:
            await (self.hook.acancel_list if self.kind == "verify" else self.hook.acancel_finder_list)(job_id)
        except ClearoutNotCancellable:
            log.info("%s %s was not cancellable (already finished or cancelling)", self._noun, job_id)
            return False
        return True

    def keeps_polling(self, error: BaseException) -> bool:
        """Transient failures (5xx, network, 429) and timeouts heal; a bad token or a gone list does not."""
        return isinstance(error, ClearoutError) and (error.transient or isinstance(error, ClearoutTimeout))

    def close(self) -> None:
        self.hook.close()


class ClearoutVerifier(ClearoutLists):
    """Clearout verification through one :class:`ClearoutHook` (its rate limiter paces every thread).

    :param conn_id: a ``clearout`` connection (``clearout_default`` when None).
    :param timeout_ms: how long Clearout may work on one instant address (Clearout's default when None).
    :param optimize: a bulk list's ``highest_accuracy`` (default) or ``fastest_turnaround``.
    :param hook_options: passed to :class:`ClearoutHook` (retries).
    """

    spec = SPECS["clearout"]
    item_failures = CLEAROUT_ITEM_FAILURES

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        timeout_ms: int | None = None,
        optimize: Optimize = "highest_accuracy",
        **hook_options: Any,
    ) -> None:
        super().__init__(ClearoutHook(conn_id or ClearoutHook.default_conn_name, **hook_options), "verify")
        self.timeout_ms = timeout_ms
        self.optimize: Optimize = optimize

    def verify_one(self, email: str) -> dict[str, Any]:
        from clearout_provider.clearout.results import (
            normalise_instant_result,  # pyarrow: only when a task runs
        )

        row = normalise_instant_result(
            verdict_data(self.hook.verify_email(email, timeout_ms=self.timeout_ms))
        )
        row.pop("normalised_email", None)
        return row

    def balance(self) -> int | None:
        return self.hook.get_credits().available

    def funds(self) -> Credits:
        return self.hook.get_credits()

    def check_funds(self, to_send: int, funds: Funds | None = None) -> int:
        """Fail before uploading when the balance or the daily limit cannot cover every address (``funds``:
        a balance just read; None: read it now)."""
        credits = funds or self.hook.get_credits()
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

    def submit(self, upload: Path, *, journal: ObjectStoragePath | Path, fresh: bool = False) -> str:
        """Upload ``upload`` as one list (one call: ``journal`` is not needed).

        A lost answer needs no journal either: the upload's name is deterministic per task instance and
        content, so the retry's upload is answered 2043 (``ClearoutDuplicateFile``, a
        ``DuplicateSubmission``) naming the list the lost answer created.
        """
        return self.hook.upload_bulk_verify(
            upload, optimize=self.optimize, ignore_duplicate_file=fresh
        ).list_id

    def download(self, job_id: str, scratch: Path) -> pa.Table:
        """Stream the result CSV into ``scratch`` and read it; a cancelled list's unprocessed rows (605,
        "Request Cancelled") are no verdicts and are left out."""
        import pyarrow.compute as pc

        from clearout_provider.clearout.results import normalise_bulk_result

        raw = scratch / f"clearout-verify-result-{job_id}.csv"
        self.hook.download_bulk_result(job_id, raw)
        verdicts = normalise_bulk_result(raw)
        cancelled = pc.fill_null(pc.equal(verdicts["clearout_sub_status_code"], CANCELLED_CODE), False)
        return verdicts.filter(pc.invert(cancelled))
