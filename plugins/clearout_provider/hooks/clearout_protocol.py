"""Clearout's wire protocol, without I/O: what an answer means, and when to try again.

Both transports of :class:`~clearout_provider.hooks.clearout.ClearoutHook` (requests and aiohttp)
hand every answer to :func:`interpret_response` and build their tenacity retry loop from
:func:`retry_arguments`, so the sync and async paths cannot drift apart. Everything here is a pure
function of its arguments, which is what lets the decision table be unit-tested exhaustively.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from clearout_provider.exceptions import (
    ClearoutAuthError,
    ClearoutBadInput,
    ClearoutBulkLimitReached,
    ClearoutCreditsError,
    ClearoutDailyLimitError,
    ClearoutDuplicateFile,
    ClearoutError,
    ClearoutListUnavailable,
    ClearoutNotCancellable,
    ClearoutRateLimited,
    ClearoutResultExpired,
    ClearoutServerError,
    ClearoutTimeout,
    FieldProblem,
)
from clearout_provider.hooks.rate_limit import parse_rate_headers

log = logging.getLogger(__name__)

#: Clearout's rate-limit window; the wait assumed for a 429 that names no reset time.
RATE_WINDOW_SECONDS = 60.0

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
    """The decoded JSON body, or None when there is none or it is not JSON (503s have no body)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
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
    except (TypeError, ValueError):
        return None


def _error_for(status: int, headers: Mapping[str, str] | None, error: Mapping[str, Any]) -> ClearoutError:
    code = _int_or_none(error.get("code"))
    message = str(error.get("message") or "Clearout request failed")
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
        cls = ERROR_CODES.get(code) or HTTP_STATUSES.get(status) or ClearoutError  # type: ignore[arg-type]
    common: dict[str, Any] = {"code": code, "http_status": status}
    if cls is ClearoutRateLimited:
        return ClearoutRateLimited(message, retry_after=retry_after_seconds(headers, message), **common)
    if cls is ClearoutCreditsError:
        return ClearoutCreditsError(
            message, required_credits=_int_or_none(info.get("required_credits")), **common
        )
    if cls is ClearoutDuplicateFile:
        return ClearoutDuplicateFile(message, list_id=info.get("list_id"), **common)
    if cls is ClearoutTimeout:
        return ClearoutTimeout(message, queue_id=info.get("queue_id"), **common)
    if cls is ClearoutBadInput:
        return ClearoutBadInput(message, reasons=_field_problems(error), **common)
    return cls(message, **common)


def interpret_response(status: int, headers: Mapping[str, str] | None, body: Any | None) -> dict[str, Any]:
    """The ``data`` of a successful Clearout answer, or raise the typed exception it means.

    Success needs BOTH a 2xx status and ``"status": "success"``: many failures are HTTP 200 with
    ``"status": "failed"``. Answers without a JSON body are decided by the status alone (a 503 has
    no body; a proxy may answer HTML).
    """
    if isinstance(body, Mapping) and body.get("status") == "success" and 200 <= status < 300:
        data = body.get("data")
        return dict(data) if isinstance(data, Mapping) else {}
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        raise _error_for(status, headers, error)
    if 200 <= status < 300:
        raise ClearoutError("Clearout answered without the expected JSON envelope", http_status=status)
    default = (
        "Clearout is unavailable" if status >= 500 else f"Clearout answered HTTP {status} without details"
    )
    raise _error_for(status, headers, {"message": default})


def retry_arguments(
    *,
    max_retries: int,
    backoff: float,
    max_backoff: float,
    resend_safe: bool = True,
    describe: str = "Clearout call",
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``: THE retry policy of the hook.

    - :class:`ClearoutServerError` (5xx, connection errors) is retried with exponential backoff and
      jitter; :class:`ClearoutRateLimited` waits the ``retry_after`` the server named (plus jitter,
      so parallel callers do not return in lock-step).
    - Everything else (auth, credits, bad input, business failures, 524 timeouts) fails at once.
    - ``resend_safe=False`` is for requests that must not run twice (an upload forced with
      ``ignore_duplicate_file``): they are only retried when Clearout provably did not act on them
      (429, or a connection that never opened).
    - At most ``max_retries`` retries; the last exception is re-raised unchanged.
    """
    exponential = wait_exponential_jitter(initial=backoff, max=max_backoff, jitter=backoff)

    def should_retry(exc: BaseException) -> bool:
        if not (isinstance(exc, ClearoutError) and exc.transient):
            return False
        return resend_safe or not (isinstance(exc, ClearoutServerError) and exc.maybe_processed)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ClearoutRateLimited):
            return exc.retry_after + random.uniform(0.0, backoff)
        return exponential(state)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait_s = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (%s), retry %d/%d in %.2f s",
            describe,
            type(exc).__name__,
            state.attempt_number,
            max_retries,
            wait_s,
        )

    return {
        "stop": stop_after_attempt(max_retries + 1),
        "retry": retry_if_exception(should_retry),
        "wait": wait,
        "before_sleep": before_sleep,
        "reraise": True,
    }
