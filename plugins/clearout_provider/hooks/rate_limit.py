"""Client-side rate limiting that learns Clearout's quota from its ``x-ratelimit-*`` headers.

Clearout allows a number of instant requests per fixed window (60 s in production) and answers
429 past it. Every response says how many requests the window allows (``x-ratelimit-limit``), how
many are left (``x-ratelimit-remaining``) and how many seconds the window still lasts
(``x-ratelimit-reset``). A :class:`RateLimitBucket` keeps requests under that quota so a burst of
many times the RPM finishes without a single 429 (the 429 path is still handled, by retrying).

How it decides (all under one :class:`threading.Lock`, so threads and asyncio tasks share it):

- Before any response it lets ONE request through, to learn the quota without risking a burst.
- Afterwards a request may go while ``remaining - in_flight > 0``: requests already sent but not yet
  answered might have been counted by the server, so they are assumed spent. The server's count is
  merged with ``min`` because answers can arrive out of order (an older answer shows more left).
- An answer without headers (503, connection error) is assumed to have consumed a request of
  whichever window is live, until one window length after it arrived (by then the window that could
  have counted it is over). It cannot be merged into the server's count: we do not know whether the
  server counted it before or after the answers we did see.
- When the window's quota is used, callers wait until the window's estimated end plus a small safety
  margin; the estimate is the earliest ``arrival time + reset`` seen, which is never earlier than the
  server's real end (the server computed ``reset`` before the answer reached us).
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
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: Windows whose estimated ends differ by less than this (or half the window) are the same window.
_MIN_WINDOW_TOLERANCE = 0.2


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
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_rate_headers(headers: Mapping[str, str] | None) -> RateLimitInfo:
    """Read ``x-ratelimit-limit/remaining/reset`` from any header mapping, case-insensitively.

    ``reset`` may be an integer or a decimal number of seconds (the sandbox sends ``1.234``).
    """
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    limit = _number(lower.get("x-ratelimit-limit"))
    remaining = _number(lower.get("x-ratelimit-remaining"))
    reset = _number(lower.get("x-ratelimit-reset"))
    return RateLimitInfo(
        limit=int(limit) if limit is not None else None,
        remaining=int(remaining) if remaining is not None else None,
        reset=max(0.0, reset) if reset is not None else None,
    )


class RateLimitBucket:
    """The quota of one endpoint family (instant verify, or instant finder) of one account."""

    def __init__(
        self,
        name: str,
        *,
        safety_margin: float = 0.05,
        poll_interval: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.safety_margin = safety_margin
        self.poll_interval = poll_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._limit: int | None = None  # None until the first answer with headers
        self._remaining = 0  # requests the server still allows in the window we send into
        self._window_end: float | None = None  # clock time the latest known window ends
        self._window_len = 0.0  # longest reset seen ≈ window length
        self._rolled = False  # the latest known window is over; _remaining is the next one's quota
        self._in_flight = 0
        self._blind: deque[float] = deque()  # arrival times of answers without headers

    def __repr__(self) -> str:
        return (
            f"RateLimitBucket({self.name!r}, limit={self._limit}, remaining={self._remaining}, "
            f"in_flight={self._in_flight})"
        )

    def try_acquire(self) -> float:
        """Take a slot and return 0.0, or take nothing and return the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            if self._limit is None:
                if self._in_flight == 0:
                    self._in_flight = 1
                    return 0.0
                return self.poll_interval
            if (
                not self._rolled
                and self._window_end is not None
                and now >= self._window_end + self.safety_margin
            ):
                self._rolled = True
                self._remaining = self._limit
            while self._blind and self._blind[0] <= now - self._window_len - self.safety_margin:
                self._blind.popleft()
            if self._remaining - self._in_flight - len(self._blind) > 0:
                self._in_flight += 1
                return 0.0
            if self._rolled or self._window_end is None:
                return self.poll_interval  # the quota is held by requests in flight: wait for answers
            until_reset = self._window_end + self.safety_margin - now
            # While answers are pending they may free nothing, but a new window frees everything.
            return until_reset if self._remaining <= 0 else min(self.poll_interval, until_reset)

    def release(self, headers: Mapping[str, str] | None) -> None:
        """A request taken with :meth:`try_acquire` has ended; learn from its headers (None if no answer)."""
        info = parse_rate_headers(headers)
        with self._lock:
            now = self._clock()
            self._in_flight = max(0, self._in_flight - 1)
            if not info.complete:
                if self._limit is not None:
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
