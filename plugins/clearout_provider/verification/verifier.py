"""The Verifier interface: what the verify operators, the trigger and the instant runner need from a vendor.

Three things per verifier. Its :class:`VerifierSpec`, plain data every module may read (which column is its
headline status, who decided, whether it charges for "unknown", what the local syntax check writes in its
words). And, when a task runs, an :class:`InstantVerifier`: one address in, one verdict row out (the
result columns of :mod:`.model`), with the per-item failures named so that :func:`~clearout_provider.
instant_calls.call_each` records them as that address's outcome and stops on anything else (auth,
credits, an outage after the hook's retries). :func:`verifier_for` builds one from a connection id;
the vendor classes (:class:`clearout_provider.clearout.verifier.ClearoutVerifier`,
:class:`clearout_provider.mailso.verifier.MailsoVerifier`) are imported only then, so this module stays
cheap for DAG parsing. And a :class:`BulkVerifier` (the same object): a whole file submitted as one
job, followed and downloaded as a verdict table.

Bulk jobs are followed through :class:`BulkJobs`, the part the trigger and the sensor need (progress,
sync and async; cancel; which failures of a poll are worth another poll). Which failures end what is
said by the vendor's exceptions in their neutral families (:mod:`clearout_provider.exceptions`):
:class:`~clearout_provider.exceptions.JobUnavailable` (submit again), :class:`~clearout_provider.
exceptions.JobSlotsFull` (submit later), :class:`~clearout_provider.exceptions.DuplicateSubmission`
(follow the earlier job); anything else is fatal to the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from clearout_provider.clearout import statuses as clearout_statuses
from clearout_provider.mailso import statuses as mailso_statuses
from clearout_provider.verification.model import DecidedBy, JobProgress

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from clearout_provider.credit_check import Funds

#: What a bulk job holds: Clearout's bulk verify or bulk Email Finder lists (Mail.so: verify only).
BulkKind = Literal["verify", "finder"]
BULK_KINDS: tuple[str, ...] = ("verify", "finder")


@dataclass(frozen=True)
class VerifierSpec:
    """What the neutral pipeline knows about one verifier (no I/O, no client)."""

    name: str
    label: str
    #: The result column of the verifier's own status words (reports count by it).
    headline_column: str
    instant: DecidedBy
    instant_failed: DecidedBy
    bulk: DecidedBy
    #: Whether an "unknown" verdict costs a credit (Clearout: free; Mail.so: every validation costs one).
    charges_unknown: bool
    #: The result columns the local syntax pre-check writes, as the verifier answers a syntax error.
    local_syntax: Mapping[str, Any]
    #: What the verifier calls one bulk job in messages ("list", "batch job").
    bulk_job_noun: str


SPECS: dict[str, VerifierSpec] = {
    "clearout": VerifierSpec(
        name="clearout",
        label="Clearout",
        headline_column="clearout_status",
        instant=DecidedBy.CLEAROUT_INSTANT,
        instant_failed=DecidedBy.CLEAROUT_INSTANT_FAILED,
        bulk=DecidedBy.CLEAROUT_BULK,
        charges_unknown=False,
        local_syntax=clearout_statuses.SYNTAX_VERDICT,
        bulk_job_noun="list",
    ),
    "mailso": VerifierSpec(
        name="mailso",
        label="Mail.so",
        headline_column="verdict",
        instant=DecidedBy.MAILSO_INSTANT,
        instant_failed=DecidedBy.MAILSO_INSTANT_FAILED,
        bulk=DecidedBy.MAILSO_BATCH,
        charges_unknown=True,
        local_syntax=mailso_statuses.SYNTAX_VERDICT,
        bulk_job_noun="batch job",
    ),
}
VERIFIERS: tuple[str, ...] = tuple(SPECS)


def spec(verifier: str) -> VerifierSpec:
    """The spec of ``verifier``, or a ValueError naming the choices."""
    try:
        return SPECS[verifier]
    except KeyError:
        raise ValueError(f"Unknown verifier {verifier!r}: choose one of {list(VERIFIERS)}") from None


def local_syntax_verdict(verifier: str) -> dict[str, Any]:
    """The result columns of a locally rejected address, in ``verifier``'s words."""
    return dict(spec(verifier).local_syntax)


class InstantVerifier(Protocol):
    """One address at a time, for the instant operator and the sign-up DAG (thread-safe: one per task)."""

    spec: VerifierSpec
    #: Failures that concern one address only (recorded as its outcome; the batch goes on).
    item_failures: tuple[type[Exception], ...]

    def verify_one(self, email: str) -> dict[str, Any]:
        """The verdict row (result columns, no ``normalised_email``) for ``email``; raises on no answer."""
        ...

    def balance(self) -> int | None:
        """Credits left, when the vendor says (to report what a run spent); None when it does not."""
        ...

    def funds(self) -> Funds | None:
        """The balance and the account's low-credit threshold (the low-credit check); None when the vendor
        publishes none."""
        ...

    def close(self) -> None:
        """Release the connection pool."""
        ...


class BulkJobs(Protocol):
    """Follow and stop bulk jobs: what the trigger (async) and the sensor (sync) need.

    One object per task or trigger run; it holds the vendor's hook, never a secret that is serialised.
    """

    #: Whether the vendor can stop a running job (Clearout: yes; Mail.so: no endpoint for it).
    can_cancel: bool

    def progress(self, job_id: str) -> JobProgress:
        """The job's progress now (blocking); raises the vendor's typed error when it cannot say."""
        ...

    async def aprogress(self, job_id: str) -> JobProgress:
        """Async :meth:`progress` (what the trigger awaits)."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Stop the job; True when the vendor accepted, False when it says there is nothing to cancel."""
        ...

    async def acancel(self, job_id: str) -> bool:
        """Async :meth:`cancel` (the trigger's ``on_kill`` and deadline)."""
        ...

    def keeps_polling(self, error: BaseException) -> bool:
        """Whether a failed progress call is worth another poll (the hook has already retried it)."""
        ...

    def close(self) -> None:
        """Release the connection pool."""
        ...


class BulkVerifier(BulkJobs, Protocol):
    """A whole file verified as one bulk job, for the bulk verify operator.

    The operator records the job id :meth:`submit` returns BEFORE it waits, so a retried or cleared task
    follows the job instead of paying again; :meth:`download` turns a finished job into verdicts.
    """

    spec: VerifierSpec

    def submit(self, upload: Path, *, journal: ObjectStoragePath | Path, fresh: bool = False) -> str:
        """Submit the addresses of ``upload`` (a CSV with an ``Email`` header) as one job; its id.

        ``journal`` is the task instance's folder: a verifier that submits in several calls records each
        one there before the next (Mail.so: every batch id), so a retry never posts again what an earlier
        try created. Without ``fresh`` a submission the vendor (or the journal) already has raises
        :class:`~clearout_provider.exceptions.DuplicateSubmission` naming the earlier job; ``fresh`` (the
        earlier job proved unusable) submits anew and pays again.
        """
        ...

    def download(self, job_id: str, scratch: Path) -> pa.Table:
        """The verdicts of a finished job: result columns plus ``normalised_email``, ``decided_by`` =
        ``spec.bulk``. Addresses the job did not process (a cancelled list's rest) get no row: no
        verdict, they stay due. ``scratch`` is a local folder for files the vendor hands over."""
        ...

    def check_funds(self, to_send: int, funds: Funds | None = None) -> int | None:
        """Fail (a typed accounting error, nothing sent) when the account cannot cover ``to_send``
        addresses; return the balance, or None when the vendor publishes none. ``funds``: a balance just
        read (by the low-credit check), else it is read now."""
        ...

    def balance(self) -> int | None:
        """Credits left, or None when the vendor publishes no balance."""
        ...

    def funds(self) -> Funds | None:
        """The balance and the account's low-credit threshold; None when the vendor publishes none."""
        ...


def bulk_jobs(
    verifier: str, kind: BulkKind = "verify", conn_id: str | None = None, **hook_options: Any
) -> BulkJobs:
    """The :class:`BulkJobs` that follows ``verifier``'s jobs of ``kind`` on ``conn_id`` (default when None).

    ``hook_options`` go to the vendor's hook (the trigger retries briefly: its poll loop is the retry).
    """
    spec(verifier)
    if kind not in BULK_KINDS:
        raise ValueError(f"kind must be one of {BULK_KINDS}, not {kind!r}")
    if kind == "finder":
        if verifier != "clearout":
            raise ValueError(f"{spec(verifier).label} has no bulk Email Finder: kind 'finder' is Clearout's")
        from clearout_provider.clearout.verifier import ClearoutLists
        from clearout_provider.hooks.clearout import ClearoutHook

        return ClearoutLists(
            ClearoutHook(conn_id or ClearoutHook.default_conn_name, **hook_options), "finder"
        )
    return verifier_for(verifier, conn_id, **hook_options)


class Verifier(InstantVerifier, BulkVerifier, Protocol):
    """Everything a verifier does: one address at a time, and whole files as bulk jobs."""


def verifier_for(verifier: str, conn_id: str | None = None, **options: Any) -> Verifier:
    """The :class:`Verifier` of ``verifier`` on connection ``conn_id`` (its default when None).

    ``options`` are the vendor's own (Clearout: ``timeout_ms``, ``optimize``) and its hook's
    (``max_retries``...). The vendor class is imported only now, so this module stays cheap to parse.
    """
    spec(verifier)
    if verifier == "mailso":
        from clearout_provider.mailso.verifier import MailsoVerifier

        return MailsoVerifier(conn_id, **options)
    from clearout_provider.clearout.verifier import ClearoutVerifier

    return ClearoutVerifier(conn_id, **options)
