"""The one in-memory account of a Clearout sandbox: credits, limits, rate windows, lists, finder queue.

Every mutation happens on the event loop (handlers are ``async``; only file reading runs in threads and
those threads never touch this object's fields), so no lock is needed. Credit rules:

- ``balance = credits - used``; ``used`` grows when instant calls are answered and when bulk rows are
  processed (lazily, see :meth:`ClearoutState.settle`).
- A running list *reserves* what its remaining rows will cost; admission checks (1002, 1028, 1099) use
  ``spendable = balance - reserved`` so concurrent lists and instant calls can never overdraw the account.
- The daily verify limit (1017) counts addresses submitted today (UTC): instant verifications and the
  rows of accepted bulk verify lists.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from clearout_provider.sandbox.clearout_envelope import ClearoutError
from clearout_provider.sandbox.clearout_finder import FinderResult
from clearout_provider.sandbox.clearout_lists import BulkList, ListKind, ListStatus
from clearout_provider.sandbox.settings import SandboxSettings


class Bucket(StrEnum):
    """Rate-limit buckets: instant verify (+ the single-flag checks) and instant finder (+ queue_status)."""

    VERIFY = "verify"
    FINDER = "finder"


@dataclass
class FixedWindow:
    """``limit`` requests per window of ``length`` seconds, the window opened by its first request."""

    limit: int
    length: float
    opened: float | None = None
    used: int = 0

    def _roll(self, now: float) -> None:
        if self.opened is not None and now - self.opened >= self.length:
            self.opened, self.used = None, 0

    def take(self, now: float) -> bool:
        """Count one request; False (and nothing counted) when the window's quota is spent."""
        self._roll(now)
        if self.used >= self.limit:
            return False
        if self.opened is None:
            self.opened = now
        self.used += 1
        return True

    def reset_in(self, now: float) -> float:
        """Seconds until the current window closes (a full window when none is open)."""
        self._roll(now)
        return self.length if self.opened is None else max(0.0, self.length - (now - self.opened))

    def headers(self, now: float) -> dict[str, str]:
        """``x-ratelimit-*`` headers; reset is decimal seconds with up to 3 decimals (``1.234``, ``60``)."""
        reset = f"{self.reset_in(now):.3f}".rstrip("0").rstrip(".")
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.limit - self.used)),
            "x-ratelimit-reset": reset,
        }


@dataclass(frozen=True)
class QueuedSearch:
    """An instant finder search that outlived its request; queue_status answers it once ``ready_at``."""

    ready_at: float
    result: FinderResult


class ClearoutState:
    """Everything one sandbox remembers about its single account (see the module docstring)."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.used = 0
        self.lists: dict[str, BulkList] = {}
        self.queue: dict[str, QueuedSearch] = {}
        self.windows = {
            Bucket.VERIFY: FixedWindow(settings.rpm, settings.rate_window),
            Bucket.FINDER: FixedWindow(settings.finder_rpm, settings.rate_window),
        }
        self.faults = random.Random(settings.fault_seed)
        self.counters = {"bulk_uploads": 0, "finder_uploads": 0, "instant_calls": 0, "rate_limited": 0}
        self._daily_date = datetime.now(UTC).date()
        self._daily_used = 0
        self._files = tempfile.TemporaryDirectory(prefix="clearout-sandbox-", ignore_cleanup_errors=True)
        self.files_dir = Path(self._files.name)
        self._url_key = secrets.token_bytes(32)

    # --- credits -------------------------------------------------------------------------------------
    def settle(self, now: float | None = None) -> None:
        """Charge every list for the rows it processed since it was last observed."""
        now = time.monotonic() if now is None else now
        for bulk in self.lists.values():
            self.used += bulk.observe(now)

    @property
    def balance(self) -> int:
        return self.settings.credits - self.used

    @property
    def reserved(self) -> int:
        return sum(bulk.reserved for bulk in self.lists.values())

    @property
    def spendable(self) -> int:
        """Credits free for new work: the balance minus what running lists will still charge."""
        return self.balance - self.reserved

    def charge(self, credits: int) -> None:
        self.used += credits

    # --- daily verify limit ---------------------------------------------------------------------------
    def _roll_day(self) -> None:
        today = datetime.now(UTC).date()
        if today != self._daily_date:
            self._daily_date, self._daily_used = today, 0

    def daily_remaining(self) -> int | None:
        """Verifications left today, None when the account has no daily limit."""
        if not self.settings.daily_verify_limit:
            return None
        self._roll_day()
        return max(0, self.settings.daily_verify_limit - self._daily_used)

    def daily_reset_date(self) -> datetime | None:
        if not self.settings.daily_verify_limit:
            return None
        return datetime.combine(self._daily_date + timedelta(days=1), datetime.min.time(), UTC)

    def check_daily(self, addresses: int) -> None:
        """Raise 1017 when ``addresses`` more verifications would pass today's limit."""
        remaining = self.daily_remaining()
        if remaining is not None and addresses > remaining:
            raise ClearoutError.of(1017)

    def count_verifications(self, addresses: int) -> None:
        self._roll_day()
        self._daily_used += addresses

    # --- lists ----------------------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        """A 24-hex id, the shape of Clearout's list and queue ids."""
        return secrets.token_hex(12)

    def running(self, kind: ListKind) -> int:
        return sum(1 for b in self.lists.values() if b.kind is kind and b.status is ListStatus.RUNNING)

    def duplicate_of(self, kind: ListKind, name: str, size: int) -> BulkList | None:
        """The earlier list of this kind uploaded from a file with the same name and size (2043)."""
        return next((b for b in self.lists.values() if (b.kind, b.name, b.size) == (kind, name, size)), None)

    def get(self, kind: ListKind, list_id: str) -> BulkList:
        """The list, brought up to date; 1029 when unknown, removed, or of the other kind."""
        bulk = self.lists.get(list_id)
        if bulk is None or bulk.kind is not kind:
            raise ClearoutError.of(1029)
        self.settle()
        return bulk

    # --- presigned result URLs ------------------------------------------------------------------------
    def sign(self, list_id: str, expires: str) -> str:
        return hmac.new(self._url_key, f"{list_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def signature_ok(self, list_id: str, expires: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(list_id, expires), signature)

    # --- inspection -----------------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        """``GET /_sandbox/stats``: the account as tests and the demo see it."""
        now = time.monotonic()
        self.settle(now)
        return {
            "credits_available": self.balance,
            "credits_used": self.used,
            "credits_reserved": self.reserved,
            **self.counters,
            "lists": {
                b.id: {
                    "kind": b.kind.value,
                    "status": b.status.value,
                    "total": b.total,
                    "processed": b.processed(now),
                    "charged": b.charged,
                }
                for b in self.lists.values()
            },
        }
