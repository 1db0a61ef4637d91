"""Every failure this provider names, in ONE hierarchy, so callers decide with ``except`` instead of parsing
codes::

    ServiceError                 a vendor API failed or refused (``transient``: worth retrying)
    ├── ClearoutError            Auth, Credits, DailyLimit, RateLimited, BulkLimitReached, BadInput, ...
    ├── CleverTapError           Config, Auth, BadRequest, RateLimited, ServerError, Protocol, ...
    └── MailsoError              Config, Auth, BadRequest, PlanRequired, RateLimited, Unavailable, ...
    InputError                   input this provider cannot use (ContactsError, malformed results/messages)
    AccountingError              counts that do not add up: a bug, never the input

Mail.so answers carry only an HTTP status and an ``error`` text; :mod:`clearout_provider.mailso.protocol`
maps them onto the ``Mailso*`` classes. CleverTap's are decided in :mod:`clearout_provider.hooks.clevertap`.

Clearout reports failures through an HTTP status, an error ``code`` and a ``message`` — and many of
them arrive as HTTP 200 with ``"status": "failed"``. :func:`clearout_provider.clearout.protocol.
interpret_response` turns that into one of the classes below; operators and triggers only ever see
these. Every exception keeps Clearout's ``code``, ``message`` and ``http_status``, and its ``str()``
adds what the user should do about it.

A 429 is a :class:`RateLimited` whichever vendor sent it (wait ``retry_after``). Bulk jobs are judged by
meaning across vendors: :class:`JobUnavailable` (the job cannot give a result:
submit again), :class:`JobSlotsFull` (submit later), :class:`DuplicateSubmission` (follow the earlier
job); the vendor classes that mean so inherit them, so the bulk operator never names a vendor's code.

Messages are built from what Clearout said plus fixed advice: never from request headers, so the API
token cannot end up in a message. ``args`` holds only Clearout's message, which also keeps the
exceptions picklable (``cls(message)`` + ``__dict__``) for executors that ship them between processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class ServiceError(Exception):
    """Any failure reported by (or on the way to) a vendor API; subclasses name the service.

    Shared by the Clearout and CleverTap error families so both read the same way: the message, the
    vendor's code and HTTP status in brackets, then one sentence of advice.
    """

    #: The vendor's name as it appears in messages ("Clearout code 1002").
    service: ClassVar[str] = "API"
    #: Whether retrying the same request later may succeed; the hooks' retry policies read it.
    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status

    @property
    def advice(self) -> str:
        """What the user should do next (one sentence)."""
        return ""

    def __str__(self) -> str:
        origin = ", ".join(
            part
            for part in (
                f"{self.service} code {self.code}" if self.code is not None else "",
                f"HTTP {self.http_status}" if self.http_status is not None else "",
            )
            if part
        )
        text = self.message.rstrip(". ") + (f" ({origin})" if origin else "")
        return f"{text}. {self.advice}" if self.advice else text


class JobUnavailable(ServiceError):
    """A bulk job can no longer give a result (gone, removed, expired, another account's).

    Vendor-neutral meaning (Clearout 1029 / 1008 / 1007, Mail.so 404): the bulk operator abandons the job
    and submits again instead of failing, so it catches this class, never a vendor code.
    """


class RateLimited(ServiceError):
    """Too many requests now (HTTP 429): wait ``retry_after`` seconds; the hooks' one retry policy does."""

    transient = True

    def __init__(self, message: str, *, retry_after: float = 60.0, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        #: Seconds to wait before the next request (the vendor's window reset or ``Retry-After``; else 60).
        self.retry_after = retry_after


class JobSlotsFull(ServiceError):
    """The vendor already runs its maximum of bulk jobs for the account: submit again later."""


class DuplicateSubmission(ServiceError):
    """The vendor already has this submission as ``job_id``: follow that job instead of paying twice.

    Clearout answers so for a file uploaded recently (2043); the Mail.so verifier for batches its earlier
    tries created (from their checkpoint). The bulk operator follows ``job_id`` when it can still deliver,
    and only otherwise submits again with ``fresh=True``.
    """

    @property
    def job_id(self) -> str | None:
        """The earlier job (None when the vendor did not name it)."""
        return None


class ClearoutError(ServiceError):
    """Any failure reported by (or on the way to) the Clearout API."""

    service = "Clearout"


class ClearoutConfigError(ClearoutError):
    """The Clearout connection cannot be used as configured; raised before any request is sent.

    Examples: a plain ``http://`` base URL to another machine (the token would travel in clear text),
    an extra of the wrong type (``timeout``, ``rpm``), a token with characters no token has. Never
    retried, and not a per-item failure: every call would fail the same way until the connection is fixed.
    """

    @property
    def advice(self) -> str:
        return "Fix the Clearout connection (host, API token or extras); nothing was sent to Clearout."


class ClearoutAuthError(ClearoutError):
    """Invalid token (1000, HTTP 401) or no access to the resource (1008, 1074, HTTP 403)."""

    @property
    def advice(self) -> str:
        return (
            "Check the API token stored as the password of the Clearout connection (Clearout App → "
            "Developer → API token); for someone else's list use that account's connection."
        )


class ClearoutCreditsError(ClearoutError):
    """Not enough credits (1002 exhausted, 1028 not enough for the list, 1099 finder; HTTP 402)."""

    def __init__(self, message: str, *, required_credits: int | None = None, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        #: Extra credits Clearout says are needed, when it says so (1028).
        self.required_credits = required_credits

    @property
    def advice(self) -> str:
        need = f" (at least {self.required_credits} more)" if self.required_credits else ""
        return f"Add credits in the Clearout App{need} or submit fewer addresses; nothing was charged."


class ClearoutDailyLimitError(ClearoutError):
    """The account's daily verification limit is used up (1017)."""

    @property
    def advice(self) -> str:
        return "Wait for the daily limit to reset (see get_credits()) or ask Clearout support to raise it."


class ClearoutRateLimited(ClearoutError, RateLimited):
    """Too many instant requests in the current window (HTTP 429 / 1030). Retried by the hook."""

    @property
    def advice(self) -> str:
        return (
            f"Retry after {self.retry_after:.1f} s (the hook does so up to max_retries times); "
            "lower the request rate or upgrade the plan for a higher RPM."
        )


class ClearoutBulkLimitReached(ClearoutError, JobSlotsFull):
    """Too many bulk lists running at once (1001 verify, 1083 finder)."""

    @property
    def advice(self) -> str:
        return "Wait for a running bulk list to finish (Clearout runs at most a few at a time) or cancel one."


class ClearoutDuplicateFile(ClearoutError, DuplicateSubmission):
    """The same file (name and size) was uploaded recently (2043); ``list_id`` is the earlier list."""

    def __init__(self, message: str, *, list_id: str | None = None, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        self.list_id = list_id

    @property
    def job_id(self) -> str | None:
        return self.list_id

    @property
    def advice(self) -> str:
        return (
            f"Resume the earlier list {self.list_id} instead of paying twice, or upload again with "
            "ignore_duplicate_file=True to force a second run."
        )


class ClearoutListUnavailable(ClearoutError, JobUnavailable):
    """The list does not exist, was removed, or is not available (1029)."""

    @property
    def advice(self) -> str:
        return "Check the list_id: the list does not exist, was removed, or belongs to another account."


class ClearoutListNotFound(ClearoutListUnavailable):
    """A progress poll answered 1008: the list is gone or belongs to another account.

    Clearout's OpenAPI spec documents 1008 (not only 1029) for the progress of a list that is not
    usable, so there it means "this list cannot give you a result", not "your token is wrong": a resumed
    task treats it like 1029 and uploads again. On every other endpoint 1008 stays a
    :class:`ClearoutAuthError`.
    """

    @property
    def advice(self) -> str:
        return (
            "The list is gone or belongs to another Clearout account: upload it again with this "
            "connection (a resumed task does so by itself)."
        )


class ClearoutResultExpired(ClearoutListUnavailable):
    """The list's result file has expired (1007); a kind of unavailable list."""

    @property
    def advice(self) -> str:
        return "Clearout keeps results for 30 days; upload the list again to get a fresh result."


class ClearoutNotCancellable(ClearoutError):
    """The list is not in a stage that can be cancelled (1116), e.g. already completed."""

    @property
    def advice(self) -> str:
        return "The list has already finished or is being cancelled; there is nothing to cancel."


@dataclass(frozen=True)
class FieldProblem:
    """One reason of a validation failure: which request field, where, and what is wrong with it."""

    field: str
    location: str
    messages: tuple[str, ...]


class ClearoutBadInput(ClearoutError):
    """The request itself is wrong: validation (HTTP 400/415), or codes 1004, 1027, 1088, 1100, 1104."""

    def __init__(self, message: str, *, reasons: tuple[FieldProblem, ...] = (), **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        self.reasons = reasons

    @property
    def field(self) -> str | None:
        """The first offending field named by a validation failure (None for coded failures)."""
        return self.reasons[0].field if self.reasons else None

    @property
    def messages(self) -> tuple[str, ...]:
        """Every validation message, flattened."""
        return tuple(m for r in self.reasons for m in r.messages)

    @property
    def advice(self) -> str:
        detail = "; ".join(f"{r.field}: {' '.join(r.messages)}" for r in self.reasons)
        prefix = f"{detail}. " if detail else ""
        return f"{prefix}Fix the input and send it again; retrying unchanged will fail the same way."


class ClearoutTimeout(ClearoutError):
    """Clearout did not answer in time (HTTP 524); a finder timeout names the ``queue_id`` to poll."""

    def __init__(self, message: str, *, queue_id: str | None = None, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        self.queue_id = queue_id

    @property
    def advice(self) -> str:
        if self.queue_id:
            return f"Clearout keeps searching: poll the finder queue status with queue_id {self.queue_id}."
        return "Try again later or with a longer timeout (up to 180000 ms)."


class ClearoutServerError(ClearoutError):
    """Clearout or the network failed (5xx, connection error): transient, retried by the hook."""

    transient = True

    def __init__(self, message: str, *, maybe_processed: bool = True, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        #: False only when the request provably never reached Clearout (connection refused), which
        #: makes even a non-repeatable request (an upload forced with ignore_duplicate_file) safe to resend.
        self.maybe_processed = maybe_processed

    @property
    def advice(self) -> str:
        return "Clearout or the network failed temporarily; try again later if retries did not help."


class ClearoutProtocolError(ClearoutError):
    """Clearout said "success" but the answer cannot be read: not JSON, no ``data`` object, or without a
    field the call needs (an instant verification without ``status``, an upload without ``list_id``...).

    Not transient, so the hook does not resend the request: a malformed answer is a vendor change or an
    intermediary (proxy, captive portal) rather than a hiccup that a resend within seconds fixes, and
    the paid calls (instant verify, finder, uploads) may already have been charged for the answer we
    could not read. The instant callers record it as that one address's "no verdict"; anything else
    fails the task, and Airflow's own task retry asks again later.
    """

    @property
    def advice(self) -> str:
        return (
            "The request was not resent (it may already have been charged); retry later, and if this "
            "persists check for a proxy between Airflow and Clearout or report it to Clearout support."
        )


# ------------------------------------------------------------------------------------------ CleverTap


class CleverTapError(ServiceError):
    """Any failure reported by (or on the way to) the CleverTap API."""

    service = "CleverTap"


class CleverTapConfigError(CleverTapError):
    """The connection itself is unusable (unknown region, missing or malformed Account ID or Passcode, a
    plain ``http://`` host on another machine); raised before any request is sent, never retried."""

    @property
    def advice(self) -> str:
        return "Fix the CleverTap connection (Account ID, Passcode, Region or host override)."


class CleverTapAuthError(CleverTapError):
    """HTTP 401/403: wrong Account ID or Passcode, or the right ones sent to the wrong region."""

    @property
    def advice(self) -> str:
        return (
            "Check the Account ID and Passcode (CleverTap dashboard → Settings → Project) and the region: "
            "a project in another region also answers 401 (the dashboard URL's sub-domain names it)."
        )


class CleverTapBadRequest(CleverTapError):
    """HTTP 400 and other non-retryable answers: the request is wrong (query, batch size, payload)."""

    @property
    def advice(self) -> str:
        return "Fix the request; sending it again unchanged will fail the same way."


class CleverTapRateLimited(CleverTapError):
    """HTTP 429 "Too many concurrent requests", or throttling (code 1) that outlasted the waits."""

    transient = True

    @property
    def advice(self) -> str:
        return (
            "Lower max_concurrency (CleverTap allows 15 concurrent uploads, about 3 exports) or retry later."
        )


class CleverTapServerError(CleverTapError):
    """HTTP 5xx or a network failure: transient, retried by the hook, then raised (also by uploads)."""

    transient = True

    @property
    def advice(self) -> str:
        return "CleverTap or the network failed temporarily; try again later if the retries did not help."


class CleverTapProtocolError(CleverTapError):
    """CleverTap answered 2xx with a body the hook cannot read: not a JSON object, an upload answer
    without a numeric ``processed`` or with a malformed ``unprocessed`` list, an export without a usable
    cursor or ``records`` list.

    Not transient: a malformed answer comes from an intermediary or an API change, not a hiccup a resend
    within seconds fixes, and an upload it answers may already have been applied. It fails the task, so
    Airflow's task retry (re-sending plain property sets is safe) decides when to ask again.
    """

    @property
    def advice(self) -> str:
        return (
            "The request was not resent; retry the task later, and if this persists check for a proxy "
            "between Airflow and CleverTap or report it to CleverTap support."
        )


class CleverTapCursorNotReady(CleverTapError):
    """An export cursor kept answering "not ready" (code 2) for longer than the hook waits."""

    transient = True

    @property
    def advice(self) -> str:
        return "CleverTap is still preparing the export; rerun later or raise cursor_wait_timeout."


#: Clearout failures that concern one address only (it timed out, was refused as input, or the answer
#: was unreadable): the instant runner records them as that item's outcome and goes on.
CLEAROUT_ITEM_FAILURES: tuple[type[Exception], ...] = (
    ClearoutTimeout,
    ClearoutBadInput,
    ClearoutProtocolError,
)


class MailsoError(ServiceError):
    """Any failure reported by (or on the way to) the Mail.so validation API.

    Mail.so answers failures as ``{"data": null, "error": "<message>"}`` with an HTTP status and no error
    code; :func:`clearout_provider.mailso.protocol.interpret` decides the class below from both.
    """

    service = "Mail.so"


class MailsoConfigError(MailsoError):
    """The Mail.so connection or the call cannot be used as configured; raised before anything is sent.

    Examples: plain ``http://`` to another machine (the API key would travel in clear text), a
    ``batch_size`` outside 1..1000, a batch larger than ``batch_size``. Never retried.
    """

    @property
    def advice(self) -> str:
        return (
            "Fix the Mail.so connection (host, API key or extras) or the call; nothing was sent to Mail.so."
        )


class MailsoAuthError(MailsoError):
    """The API key was refused (HTTP 401 "Unauthorized"), or the connection holds none."""

    @property
    def advice(self) -> str:
        return "Check the API key stored as the password of the Mail.so connection (Mail.so dashboard → API)."


class MailsoBadRequest(MailsoError):
    """The request itself is wrong (HTTP 400 "The body provided has an invalid format.")."""

    @property
    def advice(self) -> str:
        return "Fix the input and send it again; retrying unchanged will fail the same way."


class MailsoPlanRequired(MailsoError):
    """The account's plan does not include the feature ("Paid subscription required to use list
    validations"), whatever HTTP status carried it: batches need a paid plan, single validations do not."""

    @property
    def advice(self) -> str:
        return "Upgrade the Mail.so plan, or validate the addresses one by one with validate()."


class MailsoRateLimited(MailsoError, RateLimited):
    """Too many requests (HTTP 429). Retried by the hook after ``retry_after`` seconds."""

    @property
    def advice(self) -> str:
        return (
            f"Retry after {self.retry_after:.1f} s (the hook does so up to max_retries times); lower the "
            "connection's rpm extra to stay under Mail.so's limit."
        )


class MailsoQuotaExceeded(MailsoRateLimited):
    """A 429 that names the account's quota or credits: waiting seconds will not help, so not retried."""

    transient = False

    @property
    def advice(self) -> str:
        return "The Mail.so account's credits are used up: add credits or wait for the plan's next period."


class MailsoUnavailable(MailsoError):
    """Mail.so or the network failed (5xx, connection error, timeout): transient.

    The hook retries it for reads and single validations; a batch creation is retried only when
    ``maybe_processed`` is false (the connection never opened), because a resent ``POST /batch`` that
    had in fact arrived creates, and charges, a second batch.
    """

    transient = True

    def __init__(self, message: str, *, maybe_processed: bool = True, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        #: False only when the request provably never reached Mail.so (connection refused).
        self.maybe_processed = maybe_processed

    @property
    def advice(self) -> str:
        return (
            "Mail.so or the network failed temporarily; try again later. A failed batch creation may "
            "still have created the batch: look for it before creating another."
        )


class MailsoProtocolError(MailsoError):
    """An answer that cannot be read: not JSON, not the envelope, or without a field the result needs.

    Not transient: the call may have been charged for the answer we could not read, and an unreadable
    answer points at a vendor change or an intermediary (proxy) rather than a hiccup.
    """

    @property
    def advice(self) -> str:
        return (
            "The request was not resent (it may already have been charged); if this persists check for a "
            "proxy between Airflow and Mail.so or report it to Mail.so support."
        )


class MailsoNotFound(MailsoError, JobUnavailable):
    """The batch id is unknown to this account (HTTP 404)."""

    @property
    def advice(self) -> str:
        return "Check the batch id: it does not exist or belongs to another Mail.so account."


class MailsoBatchTimeout(MailsoError):
    """A batch did not finish within the wait's ``timeout``; it keeps running at Mail.so."""

    def __init__(self, message: str, *, batch_id: str = "", **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        self.batch_id = batch_id

    @property
    def advice(self) -> str:
        return (
            f"Wait for batch {self.batch_id} again later (get_batch / wait_for_batch); do not re-create it."
        )


class MailsoBatchesExist(MailsoError, DuplicateSubmission):
    """Every batch of this submission was created by an earlier try (its checkpoint names them)."""

    def __init__(self, message: str, *, batch_job: str = "", **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        self.batch_job = batch_job

    @property
    def job_id(self) -> str | None:
        return self.batch_job or None

    @property
    def advice(self) -> str:
        return "Collect the earlier batches instead of paying twice, or submit with fresh=True."


class MailsoBatchInDoubt(MailsoError):
    """A ``POST /batch`` was sent but its answer never arrived: the batch may exist and be charged.

    Mail.so cannot list an account's batches, so nothing can tell whether it does; re-posting would pay
    for those addresses twice if it does. Never retried by the provider: the task fails, naming the
    checkpoint line that holds the doubt, and a person decides (see the advice).
    """

    def __init__(self, message: str, *, checkpoint: str = "", key: str = "", **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        self.checkpoint, self.key = checkpoint, key

    @property
    def advice(self) -> str:
        return (
            "Look for the batch in the Mail.so dashboard. To post these addresses again anyway (paying "
            f"twice if the batch exists), remove the lines with key {self.key!r} from {self.checkpoint} "
            "and clear the task; batches recorded on other lines are collected, not posted again."
        )


# ------------------------------------------------------------------------------- input and accounting


class InputError(Exception):
    """Input this provider cannot use (a file without an email column, a malformed message); the message
    says what to fix. Never retried: the same input fails the same way."""


class AccountingError(Exception):
    """Counts that do not add up (rows out != rows in, a stage losing contacts): a bug, never a property
    of the input; the run fails rather than write something wrong."""


class ContactsError(InputError):
    """A contacts file this provider cannot prepare; the message says what to fix.

    Defined here rather than in :mod:`clearout_provider.contacts` (which re-exports it) so that an
    operator can subclass it without importing pyarrow when a DAG file is parsed.
    """
