"""Typed Clearout failures, by meaning, so callers decide with ``except`` instead of parsing codes.

Clearout reports failures through an HTTP status, an error ``code`` and a ``message`` — and many of
them arrive as HTTP 200 with ``"status": "failed"``. :func:`clearout_provider.hooks.clearout_protocol.
interpret_response` turns that into one of the classes below; operators and triggers only ever see
these. Every exception keeps Clearout's ``code``, ``message`` and ``http_status``, and its ``str()``
adds what the user should do about it.

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


class ClearoutRateLimited(ClearoutError):
    """Too many instant requests in the current window (HTTP 429 / 1030). Retried by the hook."""

    transient = True

    def __init__(self, message: str, *, retry_after: float = 60.0, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        #: Seconds until the rate-limit window resets.
        self.retry_after = retry_after

    @property
    def advice(self) -> str:
        return (
            f"Retry after {self.retry_after:.1f} s (the hook does so up to max_retries times); "
            "lower the request rate or upgrade the plan for a higher RPM."
        )


class ClearoutBulkLimitReached(ClearoutError):
    """Too many bulk lists running at once (1001 verify, 1083 finder)."""

    @property
    def advice(self) -> str:
        return "Wait for a running bulk list to finish (Clearout runs at most a few at a time) or cancel one."


class ClearoutDuplicateFile(ClearoutError):
    """The same file (name and size) was uploaded recently (2043); ``list_id`` is the earlier list."""

    def __init__(self, message: str, *, list_id: str | None = None, **kwargs: int | None) -> None:
        super().__init__(message, **kwargs)
        self.list_id = list_id

    @property
    def advice(self) -> str:
        return (
            f"Resume the earlier list {self.list_id} instead of paying twice, or upload again with "
            "ignore_duplicate_file=True to force a second run."
        )


class ClearoutListUnavailable(ClearoutError):
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


#: Clearout failures that concern one address only (it timed out, was refused as input, or the answer
#: was unreadable): the instant runner records them as that item's outcome and goes on.
CLEAROUT_ITEM_FAILURES: tuple[type[Exception], ...] = (
    ClearoutTimeout,
    ClearoutBadInput,
    ClearoutProtocolError,
)


class ContactsError(Exception):
    """A contacts file this provider cannot prepare; the message says what to fix.

    Defined here rather than in :mod:`clearout_provider.contacts` (which re-exports it) so that an
    operator can subclass it without importing pyarrow when a DAG file is parsed.
    """
