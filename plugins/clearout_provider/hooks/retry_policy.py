"""THE retry policy of every vendor hook, as keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``.

Each vendor's protocol module decides what an answer means (a typed exception with ``transient``,
``retry_after`` and ``maybe_processed``); this module decides what to do about it, once for all vendors,
so the Clearout and Mail.so hooks (sync and async) cannot drift apart:

- a transient error of the vendor's family is retried with exponential backoff and jitter;
- a :class:`~clearout_provider.exceptions.RateLimited` (a 429) waits its ``retry_after``, plus jitter
  so parallel callers do not return in lock-step;
- a request that is not ``resend_safe`` (an upload forced past a duplicate check, a batch creation: it
  would be paid twice) is retried only when the vendor provably did not act on it (a 429, or a
  connection that never opened: ``maybe_processed`` false);
- everything else fails at once; at most ``max_retries`` retries, the last exception re-raised unchanged.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from clearout_provider.exceptions import RateLimited, ServiceError

log = logging.getLogger(__name__)


def retry_arguments(
    family: type[ServiceError],
    *,
    max_retries: int,
    backoff: float,
    max_backoff: float,
    resend_safe: bool = True,
    describe: str = "API call",
) -> dict[str, Any]:
    """The policy of the module docstring for errors of ``family`` (e.g. ``ClearoutError``)."""
    exponential = wait_exponential_jitter(initial=backoff, max=max_backoff, jitter=backoff)

    def should_retry(exc: BaseException) -> bool:
        if not (isinstance(exc, family) and exc.transient):
            return False
        return resend_safe or not getattr(exc, "maybe_processed", False)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
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
