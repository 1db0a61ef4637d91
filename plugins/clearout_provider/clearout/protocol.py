"""Clearout's wire protocol, without I/O: what an answer means, and when to try again.

Both transports of :class:`~clearout_provider.hooks.clearout.ClearoutHook` (requests and aiohttp)
hand every answer to :func:`interpret_response` and build their tenacity retry loop from
:func:`retry_arguments`, so the sync and async paths cannot drift apart. Everything here is a pure
function of its arguments, which is what lets the decision table be unit-tested exhaustively.

Each request names its :class:`Endpoint`: what the ``data`` of a success must hold for the hook's
typed result (a malformed success raises :class:`ClearoutProtocolError`, never a KeyError later), and
the error codes that mean something else on that endpoint than elsewhere (1008 on a progress poll).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from clearout_provider.clearout.models import FLAG_FIELDS
from clearout_provider.clearout.statuses import Status, normalise_status
from clearout_provider.exceptions import (
    ClearoutAuthError,
    ClearoutBadInput,
    ClearoutBulkLimitReached,
    ClearoutConfigError,
    ClearoutCreditsError,
    ClearoutDailyLimitError,
    ClearoutDuplicateFile,
    ClearoutError,
    ClearoutListNotFound,
    ClearoutListUnavailable,
    ClearoutNotCancellable,
    ClearoutProtocolError,
    ClearoutRateLimited,
    ClearoutResultExpired,
    ClearoutServerError,
    ClearoutTimeout,
    FieldProblem,
)
from clearout_provider.hooks.http_safety import origin, vendor_text
from clearout_provider.hooks.rate_limit import RATE_WINDOW_SECONDS, parse_rate_headers
from clearout_provider.hooks.retry_policy import retry_arguments as vendor_retry_arguments

log = logging.getLogger(__name__)

__all__ = ["RATE_WINDOW_SECONDS", "Endpoint", "interpret_response", "parse_body", "retry_arguments"]

#: What list and queue ids may look like (Clearout's are 24 hex digits); they end up in file names.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Clearout error code → exception class. Codes missing here are decided by the HTTP status.
ERROR_CODES: dict[int, type[ClearoutError]] = {
    1000: ClearoutAuthError,
    1008: ClearoutAuthError,
    1074: ClearoutAuthError,
    1002: ClearoutCreditsError,
    1028: ClearoutCreditsError,
    1099: ClearoutCreditsError,
    1017: ClearoutDailyLimitError,
    1030: ClearoutRateLimited,
    1001: ClearoutBulkLimitReached,
    1083: ClearoutBulkLimitReached,
    2043: ClearoutDuplicateFile,
    1029: ClearoutListUnavailable,
    1007: ClearoutResultExpired,
    1116: ClearoutNotCancellable,
    1004: ClearoutBadInput,
    1027: ClearoutBadInput,
    1088: ClearoutBadInput,
    1100: ClearoutBadInput,
    1104: ClearoutBadInput,
}

#: HTTP status → exception class, for failures that carry no (known) Clearout code.
HTTP_STATUSES: dict[int, type[ClearoutError]] = {
    400: ClearoutBadInput,
    401: ClearoutAuthError,
    402: ClearoutCreditsError,
    403: ClearoutAuthError,
    415: ClearoutBadInput,
    429: ClearoutRateLimited,
    524: ClearoutTimeout,
}

_RETRY_AFTER_DATE = re.compile(
    r"after\s+(?:[A-Za-z]{3}\s+)?(?P<date>[A-Za-z]{3}\s+\d{1,2}\s+\d{4}\s+\d{1,2}:\d{2}:\d{2})\s*"
    r"(?:GMT|UTC)(?P<offset>[+-]\d{4})?"
)
_RETRY_AFTER_ISO = re.compile(
    r"after\s+(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)


def parse_body(raw: bytes) -> Any | None:
    """The decoded JSON body, or None when there is none or it is not JSON (503s have no body).

    Nesting deep enough to exhaust the parser's recursion counts as "not JSON" too.
    """
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def retry_after_seconds(
    headers: Mapping[str, str] | None, message: str, *, now: float | None = None
) -> float:
    """How long a 429 asks us to wait: ``x-ratelimit-reset``, else the date in the 1030 message, else 60 s.

    The message date ("try calling after Fri Jul 27 2021 10:59:19 GMT+0530 (IST)") is clamped to one
    window, so a skewed clock can neither make us hammer the API nor sleep for hours.
    """
    reset = parse_rate_headers(headers).reset
    if reset is not None:
        return reset
    when: datetime | None = None
    if match := _RETRY_AFTER_DATE.search(message):
        stamp = f"{' '.join(match['date'].split())} {match['offset'] or '+0000'}"
        try:
            when = datetime.strptime(stamp, "%b %d %Y %H:%M:%S %z")
        except ValueError:
            when = None
    elif match := _RETRY_AFTER_ISO.search(message):
        try:
            when = datetime.fromisoformat(match["iso"])
        except ValueError:
            when = None
    if when is None or when.tzinfo is None:
        return RATE_WINDOW_SECONDS
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), RATE_WINDOW_SECONDS)


def _field_problems(error: Mapping[str, Any]) -> tuple[FieldProblem, ...]:
    problems = []
    for reason in error.get("reasons") or ():
        if not isinstance(reason, Mapping):
            continue
        field = reason.get("field")
        name = ".".join(str(f) for f in field) if isinstance(field, list) else str(field or "")
        messages = reason.get("messages") or ()
        problems.append(
            FieldProblem(
                field=name,
                location=str(reason.get("location") or ""),
                messages=tuple(str(m) for m in (messages if isinstance(messages, list) else [messages])),
            )
        )
    return tuple(problems)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _identifier(value: Any) -> str | None:
    """A list or queue id as Clearout writes them, or None: an id becomes part of file names and URLs."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


# ---------------------------------------------------------------------------------- success answers

#: Problem with a success ``data`` object (a sentence fragment), or None when the hook can read it.
Check = Callable[[Mapping[str, Any]], "str | None"]


def _readable(_: Mapping[str, Any]) -> str | None:
    """Any object will do (cancel/remove: every field of the result is optional)."""
    return None


def _text_problem(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if isinstance(value, str) and value.strip():
        return None
    return f"{name!r} is missing" if value is None else f"{name!r} is not a non-empty string"


def _number_or_none(value: Any) -> float | None:
    """A finite JSON number (or a numeric string); booleans, NaN and infinities are not numbers here."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _verify_problem(data: Mapping[str, Any]) -> str | None:
    if problem := _text_problem(data, "email_address") or _text_problem(data, "status"):
        return problem
    try:
        normalise_status(data["status"])
    except ValueError:
        known = ", ".join(s.value for s in Status)
        return f"'status' is not one of {known}"
    return None


def _flag_problem(flag: str) -> Check:
    def check(data: Mapping[str, Any]) -> str | None:
        value = data.get(flag)
        if problem := _text_problem(data, "email_address"):
            return problem
        if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in {"yes", "no"}):
            return None
        return f'{flag!r} is not "yes" or "no"'

    return check


def _upload_problem(data: Mapping[str, Any]) -> str | None:
    return None if _identifier(data.get("list_id")) else "'list_id' is missing or not a list id"


def _progress_problem(data: Mapping[str, Any]) -> str | None:
    return _text_problem(data, "progress_status")


def _url_problem(data: Mapping[str, Any]) -> str | None:
    if problem := _text_problem(data, "url"):
        return problem
    try:
        parts = urlsplit(data["url"])
    except ValueError:
        return "'url' is not a URL"
    return None if parts.scheme in ("http", "https") and parts.netloc else "'url' is not an http(s) URL"


def _credits_problem(data: Mapping[str, Any]) -> str | None:
    credits = data.get("credits")
    nested = credits.get("available") if isinstance(credits, Mapping) else None
    if _number_or_none(data.get("available_credits")) is None and _number_or_none(nested) is None:
        return "neither 'available_credits' nor 'credits.available' is a number"
    return None


def _finder_problem(data: Mapping[str, Any]) -> str | None:
    emails = data.get("emails")
    if not isinstance(emails, list):
        return "'emails' is not a list"
    if not all(isinstance(e, Mapping) and _text_problem(e, "email_address") is None for e in emails):
        return "an entry of 'emails' has no 'email_address'"
    return None


def _queue_problem(data: Mapping[str, Any]) -> str | None:
    if problem := _text_problem(data, "query_status"):
        return problem
    return _finder_problem(data) if str(data["query_status"]).lower() == "completed" else None


@dataclass(frozen=True)
class Endpoint:
    """How to read the answers of one Clearout endpoint.

    ``check`` says what the success ``data`` must hold for the hook's typed result; ``codes`` overrides
    :data:`ERROR_CODES` where a code means something else on this endpoint.
    """

    name: str
    check: Check = _readable
    codes: Mapping[int, type[ClearoutError]] = field(default_factory=dict)


ANY = Endpoint("API")
CREDITS = Endpoint("getcredits", _credits_problem)
INSTANT_VERIFY = Endpoint("instant verify", _verify_problem)
FLAG_CHECKS = {kind: Endpoint(f"{kind} check", _flag_problem(flag)) for kind, flag in FLAG_FIELDS.items()}
BULK_UPLOAD = Endpoint("bulk upload", _upload_problem)
#: The spec documents 1008 for the progress of a list that is gone or not this account's: resumable.
BULK_PROGRESS = Endpoint("bulk progress", _progress_problem, {1008: ClearoutListNotFound})
RESULT_URL = Endpoint("result download", _url_problem)
LIST_CHANGE = Endpoint("list cancel/remove")
FINDER = Endpoint("email finder", _finder_problem)
FINDER_QUEUE = Endpoint("finder queue status", _queue_problem)


def _success_data(status: int, body: Mapping[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, Mapping):
        problem = "it has no 'data' object" if data is None else "its 'data' is not an object"
        raise ClearoutProtocolError(
            f"Clearout's {endpoint.name} answer is malformed: {problem}", http_status=status
        )
    if unusable := endpoint.check(data):
        raise ClearoutProtocolError(
            f"Clearout's {endpoint.name} answer is malformed: {unusable}", http_status=status
        )
    return dict(data)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """One header, case-insensitively, from any mapping (requests, aiohttp, or a plain dict in tests)."""
    return next((v for k, v in (headers or {}).items() if k.lower() == name), None)


def _unreadable(
    status: int, headers: Mapping[str, str] | None, body: Any, endpoint: Endpoint
) -> ClearoutError:
    """The error for a 2xx answer that is not Clearout's envelope (HTML from a proxy, a bare list...)."""
    if body is None:
        kind = _header(headers, "content-type")
        shown = f" ({vendor_text(kind, ())[:60]})" if kind else ""
        what = f"an empty or non-JSON body{shown}"
    elif not isinstance(body, Mapping):
        what = "JSON that is not an object"
    else:
        what = 'an object without "status": "success" or an \'error\' object'
    return ClearoutProtocolError(
        f"Clearout's {endpoint.name} answer is unreadable: {what}", http_status=status
    )


def _redirect(status: int, headers: Mapping[str, str] | None) -> ClearoutConfigError:
    """API calls are never redirected (the token must not follow a redirect); say where it pointed."""
    location = _header(headers, "location")
    target = f" to {origin(location)}" if location else ""
    return ClearoutConfigError(
        f"Clearout answered HTTP {status}, a redirect{target}; API calls are not redirected: set the "
        "connection's host to the API's real base URL",
        http_status=status,
    )


def _error_for(
    status: int,
    headers: Mapping[str, str] | None,
    error: Mapping[str, Any],
    *,
    codes: Mapping[int, type[ClearoutError]],
    secrets: Sequence[str],
) -> ClearoutError:
    code = _int_or_none(error.get("code"))
    message = vendor_text(error.get("message") or "Clearout request failed", secrets)
    info = error.get("additional_info")
    info = info if isinstance(info, Mapping) else {}
    # The status wins for the three answers whose meaning is the transport's, whatever the code says.
    if status == 429:
        cls: type[ClearoutError] = ClearoutRateLimited
    elif status == 524:
        cls = ClearoutTimeout
    elif status >= 500:
        cls = ClearoutServerError
    else:
        cls = (
            codes.get(code)  # type: ignore[arg-type]
            or ERROR_CODES.get(code)  # type: ignore[arg-type]
            or HTTP_STATUSES.get(status)
            or ClearoutError
        )
    common: dict[str, Any] = {"code": code, "http_status": status}
    if cls is ClearoutRateLimited:
        return ClearoutRateLimited(message, retry_after=retry_after_seconds(headers, message), **common)
    if cls is ClearoutCreditsError:
        return ClearoutCreditsError(
            message, required_credits=_int_or_none(info.get("required_credits")), **common
        )
    if cls is ClearoutDuplicateFile:
        return _duplicate(message, info, common)
    if cls is ClearoutTimeout:
        return ClearoutTimeout(message, queue_id=_identifier(info.get("queue_id")), **common)
    if cls is ClearoutBadInput:
        return ClearoutBadInput(message, reasons=_field_problems(error), **common)
    return cls(message, **common)


def _duplicate(message: str, info: Mapping[str, Any], common: dict[str, Any]) -> ClearoutError:
    """2043 names the earlier list to resume; one that names no usable list id is malformed."""
    list_id = _identifier(info.get("list_id"))
    if list_id is None and info.get("list_id") is not None:
        return ClearoutProtocolError(
            "Clearout's duplicate-file answer (2043) names an earlier list with an id that is not a list id",
            **common,
        )
    return ClearoutDuplicateFile(message, list_id=list_id, **common)


def interpret_response(
    status: int,
    headers: Mapping[str, str] | None,
    body: Any | None,
    endpoint: Endpoint = ANY,
    *,
    secrets: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``data`` of a successful Clearout answer, or raise the typed exception it means.

    Success needs BOTH a 2xx status and ``"status": "success"``: many failures are HTTP 200 with
    ``"status": "failed"``; a success's ``data`` must then satisfy ``endpoint.check``. A 2xx answer
    that is not the envelope (no JSON body, a proxy's HTML page) is a :class:`ClearoutProtocolError`;
    other answers without a JSON body are decided by the status alone (a 503 has no body). Vendor text
    is bounded and has ``secrets`` (the token) masked, in case a broken server echoes the request.
    """
    ok = 200 <= status < 300
    if ok and isinstance(body, Mapping) and body.get("status") == "success":
        return _success_data(status, body, endpoint)
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        raise _error_for(status, headers, error, codes=endpoint.codes, secrets=secrets)
    if ok:
        raise _unreadable(status, headers, body, endpoint)
    if 300 <= status < 400:
        raise _redirect(status, headers)
    default = (
        "Clearout is unavailable" if status >= 500 else f"Clearout answered HTTP {status} without details"
    )
    raise _error_for(status, headers, {"message": default}, codes=endpoint.codes, secrets=secrets)


def retry_arguments(
    *,
    max_retries: int,
    backoff: float,
    max_backoff: float,
    resend_safe: bool = True,
    describe: str = "Clearout call",
) -> dict[str, Any]:
    """THE retry policy of the hook: :func:`clearout_provider.hooks.retry_policy.retry_arguments` for
    the ``Clearout*`` errors this module decides (their ``transient``, ``retry_after`` and
    ``maybe_processed`` say what may be retried)."""
    return vendor_retry_arguments(
        ClearoutError,
        max_retries=max_retries,
        backoff=backoff,
        max_backoff=max_backoff,
        resend_safe=resend_safe,
        describe=describe,
    )
