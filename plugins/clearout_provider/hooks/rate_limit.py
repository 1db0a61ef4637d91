"""Client-side rate limiting that learns Clearout's quota from its ``x-ratelimit-*`` headers.

Clearout allows a number of instant requests per fixed window (60 s in production) and answers
429 past it. Responses normally say how many requests the window allows (``x-ratelimit-limit``), how
many are left (``x-ratelimit-remaining``) and how many seconds the window still lasts
(``x-ratelimit-reset``), but some may not. A :class:`RateLimitBucket` keeps requests under that
quota so a burst of many times the RPM finishes without a single 429 (the 429 path is still handled,
by retrying).

How it decides (all under one :class:`threading.Lock`, so threads and asyncio tasks share it):

- Before any answer with headers, the quota is the account's plan as configured (the connection extra
  ``rpm``; default the lowest plan's 10 per minute): up to that many requests may be sent within any
  window length, concurrently. Clearout's spec documents no response headers at all, so the limiter
  must work without them: it never serialises calls while it waits to learn.
- Once an answer carries the headers, they win: a request may go while ``remaining - in_flight > 0``
  (requests already sent but not yet answered might have been counted by the server, so they are
  assumed spent). The server's count is merged with ``min`` because answers can arrive out of order
  (an older answer shows more left).
- An answer without headers (503, connection error) is assumed to have consumed a request of
  whichever window is live, until one window length after it arrived (by then the window that could
  have counted it is over). It cannot be merged into the server's count: we do not know whether the
  server counted it before or after the answers we did see.
- When the window's quota is used, callers wait until the window's estimated end plus a small safety
  margin; the estimate is the earliest ``arrival time + reset`` seen, which is never earlier than the
  server's real end (the server computed ``reset`` before the answer reached us).
- ``reset`` is bounded: a value that looks like a Unix timestamp (above 10^9) is read as the time the
  window ends, and any wait is clamped to 0..60 s (Clearout's window), so a skewed or hostile header
  can neither make callers sleep for hours nor send a burst.
- An answer showing the whole quota unused means no window is open at all (the request's window
  ended while it was being answered); it is treated like a window end.
- After that end the next window's quota is the full ``limit`` (minus requests still in flight).
  Windows are told apart by their end times: a new window ends at least one window length after the
  previous one, while answers of the same window agree on the end up to network delay.

:meth:`RateLimitBucket.try_acquire` does the arithmetic and returns how long to wait;
:meth:`~RateLimitBucket.acquire` sleeps with :func:`time.sleep`, :meth:`~RateLimitBucket.aacquire`
with :func:`asyncio.sleep` (never blocking an event loop). The clock is injectable for unit tests.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: Clearout's rate-limit window (seconds), and the longest wait any ``x-ratelimit-reset`` may cause.
RATE_WINDOW_SECONDS = 60.0
#: Requests per minute of the lowest documented plans (pay-as-you-go 1-9,999 credits): verify, finder.
DEFAULT_VERIFY_RPM = 10
DEFAULT_FINDER_RPM = 6
#: A ``reset`` above this is a Unix timestamp (2001-09-09 onwards), not a number of seconds.
_EPOCH_THRESHOLD = 1e9
#: Windows whose estimated ends differ by less than this (or half the window) are the same window.
_MIN_WINDOW_TOLERANCE = 0.2
#: Extra seconds a send stays counted before the quota is known: Clearout counts a request when it
#: arrives, and the first request of its window may have travelled longer than the next window's first.
_UNLEARNED_SLACK = 1.0


@dataclass(frozen=True)
class RateLimitInfo:
    """The three ``x-ratelimit-*`` headers of one response (None when absent or unparseable)."""

    limit: int | None
    remaining: int | None
    reset: float | None

    @property
    def complete(self) -> bool:
        return self.limit is not None and self.remaining is not None and self.reset is not None


def _number(value: str | None) -> float | None:
    """A finite number from a header value, or None (absent, not a number, NaN or infinite)."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _count(value: str | None) -> int | None:
    """A non-negative request count, or None (a negative, fractional-garbage or infinite header)."""
    number = _number(value)
    return int(number) if number is not None and 0 <= number < 1e12 else None


def _quota(value: str | None) -> int | None:
    """A request quota: a count of at least 1 (a quota of 0 would stall every caller forever)."""
    count = _count(value)
    return count if count else None


def bounded_reset(reset: float, *, wall_now: float | None = None) -> float:
    """Seconds until the window resets: an epoch-looking value is a point in time; always 0..60 s."""
    if reset > _EPOCH_THRESHOLD:
        reset -= time.time() if wall_now is None else wall_now
    return min(max(reset, 0.0), RATE_WINDOW_SECONDS)


def parse_rate_headers(headers: Mapping[str, str] | None, *, wall_now: float | None = None) -> RateLimitInfo:
    """Read ``x-ratelimit-limit/remaining/reset`` from any header mapping, case-insensitively.

    ``reset`` may be an integer or a decimal number of seconds (the sandbox sends ``1.234``) or a Unix
    timestamp; it is returned as seconds from now, bounded by :func:`bounded_reset`. ``wall_now`` (the
    current Unix time) is for tests.
    """
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    reset = _number(lower.get("x-ratelimit-reset"))
    return RateLimitInfo(
        limit=_quota(lower.get("x-ratelimit-limit")),
        remaining=_count(lower.get("x-ratelimit-remaining")),
        reset=bounded_reset(reset, wall_now=wall_now) if reset is not None else None,
    )


class RateLimitBucket:
    """The quota of one endpoint family (instant verify, or instant finder) of one account.

    :param initial_limit: requests per ``window`` assumed until an answer carries the headers (the
        plan's RPM).
    :param window: the window length assumed until then (seconds).
    :param clock: monotonic time for the arithmetic; ``wall_clock``: Unix time for timestamp resets.
    """

    def __init__(
        self,
        name: str,
        *,
        initial_limit: int = DEFAULT_VERIFY_RPM,
        window: float = RATE_WINDOW_SECONDS,
        safety_margin: float = 0.05,
        poll_interval: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if initial_limit < 1:
            raise ValueError(f"initial_limit must be at least 1 request per window, not {initial_limit}")
        self.name = name
        self.initial_limit = initial_limit
        self.window = window
        self.safety_margin = safety_margin
        self.poll_interval = poll_interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()  # send times, while no answer has taught us the quota
        self._limit: int | None = None  # None until the first answer with headers
        self._remaining = 0  # requests the server still allows in the window we send into
        self._window_end: float | None = None  # clock time the latest known window ends
        self._window_len = 0.0  # longest reset seen ≈ window length
        self._rolled = False  # the latest known window is over; _remaining is the next one's quota
        self._in_flight = 0
        self._blind: deque[float] = deque()  # arrival times of answers without headers

    def __repr__(self) -> str:
        return (
            f"RateLimitBucket({self.name!r}, limit={self._limit or self.initial_limit}, "
            f"remaining={self._remaining}, in_flight={self._in_flight})"
        )

    def try_acquire(self) -> float:
        """Take a slot and return 0.0, or take nothing and return the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            wait = self._configured_wait(now) if self._limit is None else self._learned_wait(now)
            if wait <= 0.0:
                self._in_flight += 1
                return 0.0
            return wait

    def _configured_wait(self, now: float) -> float:
        """Before the server said anything: at most ``initial_limit`` sends within any window length."""
        horizon = self.window + self.safety_margin + _UNLEARNED_SLACK
        for times in (self._sent, self._blind):
            while times and times[0] + horizon <= now:  # the very expression of ``until_free`` below
                times.popleft()
        if len(self._sent) < self.initial_limit:
            self._sent.append(now)
            return 0.0
        until_free = self._sent[0] + horizon - now
        # An answer in flight may bring the headers (and a larger quota): look again soon.
        return min(self.poll_interval, until_free) if self._in_flight else until_free

    def _learned_wait(self, now: float) -> float:
        """With the server's quota known: what ``remaining``, requests in flight and blind answers allow."""
        assert self._limit is not None
        if not self._rolled and self._window_end is not None and now >= self._window_end + self.safety_margin:
            self._rolled = True
            self._remaining = self._limit
        while self._blind and self._blind[0] <= now - self._window_len - self.safety_margin:
            self._blind.popleft()
        if self._remaining - self._in_flight - len(self._blind) > 0:
            return 0.0
        if self._rolled or self._window_end is None:
            return self.poll_interval  # the quota is held by requests in flight: wait for answers
        until_reset = self._window_end + self.safety_margin - now
        # While answers are pending they may free nothing, but a new window frees everything.
        return until_reset if self._remaining <= 0 else min(self.poll_interval, until_reset)

    def release(self, headers: Mapping[str, str] | None) -> None:
        """A request taken with :meth:`try_acquire` has ended; learn from its headers (None if no answer)."""
        info = parse_rate_headers(headers, wall_now=self._wall_clock())
        with self._lock:
            now = self._clock()
            self._in_flight = max(0, self._in_flight - 1)
            if not info.complete:
                # Also before the quota is known: once headers come, their count may lack this request.
                self._blind.append(now)
                return
            assert info.limit is not None and info.remaining is not None and info.reset is not None
            self._limit = info.limit
            self._window_len = max(self._window_len, info.reset)
            if info.remaining >= info.limit:
                # Nothing counted, so no window is open (this answer outlived the window that counted
                # its request): the full quota is free, and the next request opens the next window.
                self._rolled = True
                self._remaining = info.limit
                return
            end = now + info.reset
            tolerance = max(self._window_len / 2, _MIN_WINDOW_TOLERANCE)
            if self._window_end is None or end > self._window_end + tolerance:
                # The first answer of a newer window: its count is the best we know of that window.
                self._window_end = end
                self._remaining = info.remaining
                self._rolled = False
            elif end >= self._window_end - tolerance and not self._rolled:
                self._window_end = min(self._window_end, end)
                self._remaining = min(self._remaining, info.remaining)
            # Otherwise a late answer from a window already over: it says nothing about the current one.

    def acquire(self) -> None:
        """Block the calling thread until a request may be sent (then it counts as in flight)."""
        while (wait := self.try_acquire()) > 0:
            time.sleep(wait)

    async def aacquire(self) -> None:
        """Like :meth:`acquire` for asyncio code: waits with ``asyncio.sleep``, never blocking the loop."""
        while (wait := self.try_acquire()) > 0:
            await asyncio.sleep(wait)
