"""Mail.so's wire protocol, without I/O: the requests, what an answer means, and when to try again.

Both transports of :class:`~clearout_provider.hooks.mailso.MailsoHook` (requests and aiohttp) send the
:class:`Request` built here, hand the answer's status, headers and decoded body to the request's
``read`` function, and retry with :func:`retry_arguments`; so the sync and async paths cannot drift
apart, and the whole decision table is unit-testable without a server.

The wire, from the fact sheet (``shared/reference/mailso-api.md``):

- ``GET /validate?email=`` → ``{"data": {...}, "error": null}``;
- ``POST /batch`` ``{"emails": [...]}`` → the batch object at the top level (no ``data`` wrapper), with
  ``finished_at: null``; ``GET /batch/{id}`` → the same object plus ``emails: [<validation>, ...]``;
- failures → ``{"data": null, "error": "<message>"}``: 401 "Unauthorized", 400 "The body provided has an
  invalid format.", a plan error "Paid subscription required to use list validations" (recognised by
  its text, whatever the status), 429 for rate or quota, 404 for an unknown batch.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Literal, NamedTuple, TypeVar
from urllib.parse import quote

from clearout_provider.clearout.protocol import parse_body
from clearout_provider.exceptions import (
    MailsoAuthError,
    MailsoBadRequest,
    MailsoConfigError,
    MailsoError,
    MailsoNotFound,
    MailsoPlanRequired,
    MailsoProtocolError,
    MailsoQuotaExceeded,
    MailsoRateLimited,
    MailsoUnavailable,
)
from clearout_provider.hooks.http_safety import origin, vendor_text
from clearout_provider.hooks.retry_policy import retry_arguments as vendor_retry_arguments
from clearout_provider.mailso.models import RESULTS, MailsoBatch, MailsoResult, MailsoValidation

__all__ = [
    "BATCH_CREATE",
    "BATCH_GET",
    "VALIDATE",
    "Endpoint",
    "Request",
    "create_batch_request",
    "get_batch_request",
    "parse_body",
    "read_batch",
    "read_validation",
    "retry_after_seconds",
    "retry_arguments",
    "validate_request",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Endpoint(NamedTuple):
    """One Mail.so endpoint as (METHOD, path template), relative to the base URL (``.../v1``)."""

    method: Literal["GET", "POST"]
    path: str


VALIDATE = Endpoint("GET", "/validate")
BATCH_CREATE = Endpoint("POST", "/batch")
BATCH_GET = Endpoint("GET", "/batch/{batch_id}")

#: Wait used when a 429 names none, and the longest any ``Retry-After`` may make the hook sleep.
DEFAULT_RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 300.0
#: What a batch id may look like: it becomes part of a URL path (Mail.so's are UUIDs).
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Words of a 429's text that mean the account's allowance is gone, not that we are too fast.
_QUOTA_WORDS = ("quota", "credit")
_PLAN_TEXT = "paid subscription"

Headers = Mapping[str, str] | None
Reader = Callable[[int, Headers, Any, Sequence[str]], T]


@dataclass(frozen=True)
class Request(Generic[T]):
    """One call, described once and sent by either transport; ``read`` turns its answer into ``T``."""

    endpoint: Endpoint
    path: str
    read: Reader[T]
    params: Mapping[str, str] | None = None
    json: Mapping[str, Any] | None = None

    @property
    def method(self) -> Literal["GET", "POST"]:
        return self.endpoint.method

    @property
    def resend_safe(self) -> bool:
        """Whether a request that may have arrived can be sent again: not a batch creation, since a
        second ``POST /batch`` creates (and charges) a second batch."""
        return self.endpoint != BATCH_CREATE


# ------------------------------------------------------------------------------------ request builders


def validate_request(email: str) -> Request[MailsoValidation]:
    return Request(VALIDATE, VALIDATE.path, read_validation, params={"email": email})


def create_batch_request(emails: Sequence[str]) -> Request[MailsoBatch]:
    return Request(BATCH_CREATE, BATCH_CREATE.path, read_batch, json={"emails": list(emails)})


def get_batch_request(batch_id: str) -> Request[MailsoBatch]:
    """``GET /batch/{id}``; an id that is not an id is refused here, before it reaches a URL path."""
    if not isinstance(batch_id, str) or not _BATCH_ID.fullmatch(batch_id):
        raise MailsoBadRequest(f"{batch_id!r} is not a Mail.so batch id; nothing was sent")
    return Request(BATCH_GET, BATCH_GET.path.format(batch_id=quote(batch_id, safe="")), read_batch)


# ------------------------------------------------------------------------------------ answers


def read_validation(
    status: int, headers: Headers, body: Any, secrets: Sequence[str] = ()
) -> MailsoValidation:
    """The validation in a ``GET /validate`` answer, or raise the typed exception the answer means."""
    _raise_for_failure(status, headers, body, secrets, "validate")
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise MailsoProtocolError(
            "Mail.so's validate answer is malformed: it has no 'data' object", http_status=status
        )
    return _validation(data, "validate answer", status)


def read_batch(status: int, headers: Headers, body: Any, secrets: Sequence[str] = ()) -> MailsoBatch:
    """The batch in a ``POST /batch`` or ``GET /batch/{id}`` answer (top level, no ``data`` wrapper)."""
    _raise_for_failure(status, headers, body, secrets, "batch")
    data = body.get("data")
    # Tolerate a wrapped batch too, should Mail.so ever align the batch answers with /validate.
    obj = data if "id" not in body and isinstance(data, Mapping) else body
    return _batch(obj, status)


def _raise_for_failure(status: int, headers: Headers, body: Any, secrets: Sequence[str], what: str) -> None:
    """Return only for a 2xx JSON object without an ``error``; raise what anything else means."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if 200 <= status < 300 and isinstance(body, Mapping) and error is None:
        return
    if error is not None:
        raise error_for(status, headers, vendor_text(error, secrets))
    if 200 <= status < 300:
        shape = "an empty or non-JSON body" if body is None else "JSON that is not an object"
        raise MailsoProtocolError(f"Mail.so's {what} answer is unreadable: {shape}", http_status=status)
    raise error_for(status, headers, "")


def error_for(status: int, headers: Headers, message: str) -> MailsoError:
    """THE decision table of failures: HTTP status plus Mail.so's ``error`` text → exception."""
    text = message.strip()
    folded = text.casefold()
    common: dict[str, Any] = {"http_status": status}
    if _PLAN_TEXT in folded:
        return MailsoPlanRequired(text, **common)
    if status == 429:
        if any(word in folded for word in _QUOTA_WORDS):
            return MailsoQuotaExceeded(text, retry_after=retry_after_seconds(headers), **common)
        return MailsoRateLimited(
            text or "Too many requests", retry_after=retry_after_seconds(headers), **common
        )
    if status >= 500:
        return MailsoUnavailable(text or "Mail.so is unavailable", **common)
    if 300 <= status < 400:
        location = _header(headers, "location")
        target = f" to {origin(location)}" if location else ""
        return MailsoConfigError(
            f"Mail.so answered a redirect{target}; API calls are not redirected (the API key must not "
            "follow one): set the connection's host to the API's real base URL",
            **common,
        )
    if status in (401, 403):
        return MailsoAuthError(text or "Unauthorized", **common)
    if status == 404:
        return MailsoNotFound(text or "Not found", **common)
    if status in (400, 413, 422):
        return MailsoBadRequest(text or "The body provided has an invalid format.", **common)
    if 200 <= status < 300:  # a success status with an error text: the text is all we have
        return MailsoError(text, **common)
    return MailsoError(text or f"Mail.so answered HTTP {status} without details", **common)


def retry_after_seconds(headers: Headers) -> float:
    """Seconds a 429 asks us to wait: ``Retry-After`` as seconds or an HTTP date, within 0..300 s."""
    value = _header(headers, "retry-after")
    if value is None:
        return DEFAULT_RETRY_AFTER
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            return DEFAULT_RETRY_AFTER
        seconds = when.timestamp() - datetime.now(when.tzinfo).timestamp()
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _header(headers: Headers, name: str) -> str | None:
    """One header, case-insensitively, from any mapping (requests, aiohttp, or a plain dict in tests)."""
    return next((v for k, v in (headers or {}).items() if k.lower() == name), None)


# ------------------------------------------------------------------------------------ models


class _Reader:
    """Reads the fields of one answer object; the first problem becomes a MailsoProtocolError."""

    def __init__(self, data: Mapping[str, Any], where: str, status: int) -> None:
        self.data, self.where, self.status = data, where, status

    def fail(self, problem: str) -> MailsoProtocolError:
        return MailsoProtocolError(f"Mail.so's {self.where} is malformed: {problem}", http_status=self.status)

    def ident(self, name: str) -> str:
        value = self.data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value.strip():
            return value
        raise self.fail(f"{name!r} is missing or not an id")

    def text(self, name: str) -> str:
        value = self.data.get(name)
        if isinstance(value, str) and value.strip():
            return value
        raise self.fail(f"{name!r} is missing or not a non-empty string")

    def optional_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None or isinstance(value, str):
            return value or None
        raise self.fail(f"{name!r} is not a string")

    def flag(self, name: str) -> bool:
        value = self.data.get(name)
        if isinstance(value, bool):
            return value
        raise self.fail(f"{name!r} is not true or false")

    def optional_flag(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise self.fail(f"{name!r} is not true, false or null")

    def score(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise self.fail(f"{name!r} is not a number within 0..100")
        return round(value)

    def count(self, name: str) -> int:
        value = self.data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self.fail(f"{name!r} is missing or not a count")

    def moment(self, name: str) -> datetime | None:
        value = self.data.get(name)
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None

    def result(self, name: str) -> MailsoResult:
        value = self.data.get(name)
        for known in RESULTS:
            if value == known:
                return known
        raise self.fail(f"{name!r} is not one of {', '.join(RESULTS)}")


def _validation(data: Mapping[str, Any], where: str, status: int) -> MailsoValidation:
    r = _Reader(data, where, status)
    return MailsoValidation(
        id=r.ident("id"),
        email=r.text("email"),
        username=r.optional_text("username"),
        domain=r.optional_text("domain"),
        mx_record=r.optional_text("mx_record"),
        provider=r.optional_text("provider"),
        score=r.score("score"),
        isv_format=r.flag("isv_format"),
        isv_domain=r.flag("isv_domain"),
        isv_mx=r.optional_flag("isv_mx"),
        isv_noblock=r.flag("isv_noblock"),
        isv_nocatchall=r.flag("isv_nocatchall"),
        isv_nogeneric=r.flag("isv_nogeneric"),
        is_disposable=r.flag("is_disposable"),
        is_free=r.flag("is_free"),
        result=r.result("result"),
        reason=r.optional_text("reason") or "",
        did_you_mean=r.optional_text("did_you_mean"),
    )


def _batch(data: Mapping[str, Any], status: int) -> MailsoBatch:
    r = _Reader(data, "batch answer", status)
    finished_at = r.moment("finished_at")
    if finished_at is None and data.get("finished_at") is not None:
        # Done-ness rests on this one field: a value we cannot read must not pass for "still running".
        raise r.fail("'finished_at' is not an ISO 8601 timestamp")
    emails = data.get("emails")
    if emails is not None and not isinstance(emails, list):
        raise r.fail("'emails' is not a list")
    validations = []
    for index, entry in enumerate(emails or ()):
        if not isinstance(entry, Mapping):
            raise r.fail(f"emails[{index}] is not an object")
        validations.append(_validation(entry, f"batch answer (emails[{index}])", status))
    return MailsoBatch(
        id=r.ident("id"),
        name=r.optional_text("name"),
        created_at=r.moment("created_at"),
        updated_at=r.moment("updated_at"),
        finished_at=finished_at,
        size=r.count("size"),
        emails=tuple(validations),
    )


# ------------------------------------------------------------------------------------ retries


def retry_arguments(
    *,
    max_retries: int,
    backoff: float,
    max_backoff: float,
    resend_safe: bool = True,
    describe: str = "Mail.so call",
) -> dict[str, Any]:
    """THE retry policy of the hook: :func:`clearout_provider.hooks.retry_policy.retry_arguments` for
    the ``Mailso*`` errors this module decides (their ``transient``, ``retry_after`` and
    ``maybe_processed`` say what may be retried)."""
    return vendor_retry_arguments(
        MailsoError,
        max_retries=max_retries,
        backoff=backoff,
        max_backoff=max_backoff,
        resend_safe=resend_safe,
        describe=describe,
    )
