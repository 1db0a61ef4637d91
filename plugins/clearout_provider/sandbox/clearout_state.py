"""The one account of a Clearout sandbox: credits, limits, rate windows, lists, finder queue, persistence.

Every mutation happens on the event loop (handlers are ``async``; only file reading runs in threads and
those threads never touch this object's fields), so no lock is needed. Credit rules:

- ``used = instant_used + Σ charged`` over every list ever accepted (removed ones included):
  ``instant_used`` grows when instant calls are answered, a list's ``charged`` when its rows are
  processed (lazily, see :meth:`ClearoutState.settle`).
- A running list *reserves* what its remaining rows will cost; admission checks (1002, 1028, 1099) use
  ``spendable = balance - reserved`` so concurrent lists and instant calls can never overdraw the account.
- The daily verify limit (1017) counts addresses submitted today (UTC): instant verifications and the
  rows of verify lists accepted today.

Persistence, with ``state_dir`` (in ``<state_dir>/clearout/``):

- ``account.json``: instant charges, counters, today's instant verifications, the URL-signing key (URLs
  handed out before a restart keep working) and the finder queue;
- ``lists/<id>.json``: one record per list (:meth:`.BulkList.to_record`), a tombstone once removed;
- ``files/<id>.csv`` and ``files/<id>.costs.npy``: the stored upload and its cumulative cost, written once.

What two files would have to agree on is derived instead of stored — the credits lists used, the upload
counters, the rows lists add to the daily limit — so every file is consistent on its own and a kill
between two writes cannot double-charge or lose a charge. Handlers mark what they change; :meth:`flush`
writes it when the request ends, before its answer leaves, and the app's heartbeat writes list progress
meanwhile. Not kept: the rate-limit windows (a restart opens new ones) and the fault streams' positions.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from clearout_provider.sandbox.clearout_envelope import ClearoutError
from clearout_provider.sandbox.clearout_finder import FinderResult, find_email
from clearout_provider.sandbox.clearout_lists import (
    BulkList,
    ListKind,
    ListStatus,
    RetiredList,
    StoredList,
    load_stored,
    store_upload,
)
from clearout_provider.sandbox.settings import SandboxSettings
from clearout_provider.sandbox.state_files import read_json, remove_leftovers, unreadable, write_json

#: Counters of ``GET /_sandbox/stats`` kept in the account (the upload counters are derived from lists).
COUNTERS = (
    "instant_calls",
    "rate_limited",
    "faults_503",
    "faults_524",
    "faults_malformed",
    "uploads_without_list_id",
    "download_resets",
)
_RECORD_PROBLEMS = (KeyError, TypeError, ValueError, AttributeError)


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
    """An instant finder search that outlived its request; queue_status answers it once ``ready_at``.

    ``ready_at`` is wall-clock time and the query is kept, so a restarted sandbox answers it the same.
    """

    ready_at: float
    name: str
    domain: str
    result: FinderResult

    @classmethod
    def of(cls, ready_at: float, name: str, domain: str) -> QueuedSearch:
        return cls(ready_at, name, domain, find_email(name, domain))


class ClearoutState:
    """Everything one sandbox remembers about its single account (see the module docstring)."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.instant_used = 0
        self.lists: dict[str, BulkList] = {}
        self.retired: list[RetiredList] = []
        self.queue: dict[str, QueuedSearch] = {}
        self.windows = {
            Bucket.VERIFY: FixedWindow(settings.rpm, settings.rate_window),
            Bucket.FINDER: FixedWindow(settings.finder_rpm, settings.rate_window),
        }
        self.fault_rng = random.Random(settings.fault_seed)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.stuck = settings.stuck_lists
        self._daily_date = _today()
        self._daily_instant = 0
        self._url_key = secrets.token_bytes(32)
        self._account_dirty = False
        self._dirty_lists: set[str] = set()
        self.folder = Path(settings.state_dir) / "clearout" if settings.state_dir else None
        if self.folder is None:
            self._files = tempfile.TemporaryDirectory(prefix="clearout-sandbox-", ignore_cleanup_errors=True)
            self.files_dir = Path(self._files.name)
        else:
            self.files_dir = self.folder / "files"
            self._restore(self.folder)

    # --- credits -------------------------------------------------------------------------------------
    def settle(self, now: float | None = None) -> None:
        """Charge every list for the rows it processed since it was last observed."""
        now = time.time() if now is None else now
        for bulk in self.lists.values():
            if bulk.observe(now):
                self.touch(bulk)

    @property
    def used(self) -> int:
        return (
            self.instant_used
            + sum(b.charged for b in self.lists.values())
            + sum(r.charged for r in self.retired)
        )

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
        """Charge an instant call (bulk rows are charged by their list)."""
        if credits:
            self.instant_used += credits
            self._account_dirty = True

    def count(self, counter: str) -> None:
        """Add one to a counter of ``GET /_sandbox/stats``."""
        self.counters[counter] += 1
        self._account_dirty = True

    # --- daily verify limit ---------------------------------------------------------------------------
    def _daily_used(self) -> int:
        today = _today()
        if today != self._daily_date:
            self._daily_date, self._daily_instant = today, 0
        lists: Iterable[BulkList | RetiredList] = [*self.lists.values(), *self.retired]
        bulk = sum(b.total for b in lists if b.kind is ListKind.VERIFY and b.created_on.date() == today)
        return self._daily_instant + bulk

    def daily_remaining(self) -> int | None:
        """Verifications left today, None when the account has no daily limit."""
        if not self.settings.daily_verify_limit:
            return None
        return max(0, self.settings.daily_verify_limit - self._daily_used())

    def daily_reset_date(self) -> datetime | None:
        if not self.settings.daily_verify_limit:
            return None
        return datetime.combine(_today() + timedelta(days=1), datetime.min.time(), UTC)

    def check_daily(self, addresses: int) -> None:
        """Raise 1017 when ``addresses`` more verifications would pass today's limit."""
        remaining = self.daily_remaining()
        if remaining is not None and addresses > remaining:
            raise ClearoutError.of(1017)

    def count_instant_verification(self) -> None:
        """One instant verification submitted today (a list's rows count through the list itself)."""
        self._daily_used()  # rolls the day over first
        self._daily_instant += 1
        self._account_dirty = True

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

    def get(self, kind: ListKind, list_id: str, missing: int = 1029) -> BulkList:
        """The list, brought up to date; error ``missing`` when unknown, removed, or of the other kind."""
        bulk = self.lists.get(list_id)
        if bulk is None or bulk.kind is not kind:
            raise ClearoutError.of(missing)
        self.settle()
        return bulk

    def store(self, src: BinaryIO, filename: str, list_id: str, kind: ListKind) -> StoredList:
        """Store and price an upload (:func:`.store_upload`), saving its costs when persistent. Blocking."""
        stored = store_upload(src, filename, self.files_dir / f"{list_id}.csv", kind)
        if self.folder is None:
            return stored
        try:
            return stored.with_saved_costs(self.files_dir / f"{list_id}.costs.npy")
        except BaseException:
            stored.delete()
            raise

    def add_list(self, list_id: str, kind: ListKind, name: str, size: int, stored: StoredList) -> BulkList:
        """Accept a stored upload as a running list (held from the start while lists are stuck)."""
        bulk = BulkList(list_id, kind, name, size, stored, self.settings.bulk_rate, time.time(),
                        paused=self.stuck)  # fmt: skip
        self.lists[list_id] = bulk
        self.touch(bulk)
        return bulk

    def touch(self, bulk: BulkList) -> None:
        """Mark a list's record as changed (written at the next :meth:`flush`)."""
        if self.folder is not None:
            self._dirty_lists.add(bulk.id)

    def retire(self, bulk: BulkList) -> None:
        """Forget a removed list but keep its charges; its tombstone is written before its files go."""
        del self.lists[bulk.id]
        retired = bulk.retire()
        self.retired.append(retired)
        self._dirty_lists.discard(bulk.id)
        if self.folder is not None:
            write_json(self._record_path(bulk.id), retired.to_record())

    def hold_lists(self, stuck: bool) -> None:
        """Freeze every running list where it stands (``stuck``), or let them all go on from there."""
        now = time.time()
        self.settle(now)
        self.stuck = stuck
        for bulk in self.lists.values():
            if bulk.status is ListStatus.RUNNING:
                bulk.hold(now, stuck)

    @property
    def advancing(self) -> bool:
        """Whether some list is processing rows (the heartbeat then saves its progress)."""
        return any(bulk.advancing for bulk in self.lists.values())

    def enqueue(self, queue_id: str, search: QueuedSearch) -> None:
        self.queue[queue_id] = search
        self._account_dirty = True

    # --- presigned result URLs ------------------------------------------------------------------------
    def sign(self, list_id: str, expires: str) -> str:
        return hmac.new(self._url_key, f"{list_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def signature_ok(self, list_id: str, expires: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(list_id, expires), signature)

    # --- inspection -----------------------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        """``GET /_sandbox/stats``: the account as tests and the demo see it."""
        now = time.time()
        self.settle(now)
        kinds = [b.kind for b in self.lists.values()] + [r.kind for r in self.retired]
        return {
            "credits_available": self.balance,
            "credits_used": self.used,
            "credits_reserved": self.reserved,
            "bulk_uploads": kinds.count(ListKind.VERIFY),
            "finder_uploads": kinds.count(ListKind.FINDER),
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

    # --- persistence ----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write what changed since the last flush (nothing without ``state_dir``)."""
        if self.folder is None:
            return
        for list_id in sorted(self._dirty_lists):
            bulk = self.lists.get(list_id)
            if bulk is not None:
                write_json(self._record_path(list_id), bulk.to_record())
        self._dirty_lists.clear()
        if self._account_dirty:
            write_json(self.folder / "account.json", self._account_record())
            self._account_dirty = False

    def _record_path(self, list_id: str) -> Path:
        assert self.folder is not None
        return self.folder / "lists" / f"{list_id}.json"

    def _account_record(self) -> dict[str, Any]:
        return {
            "instant_used": self.instant_used,
            "counters": self.counters,
            "daily": {"date": self._daily_date.isoformat(), "instant": self._daily_instant},
            "url_key": self._url_key.hex(),
            "queue": {qid: [q.ready_at, q.name, q.domain] for qid, q in self.queue.items()},
        }

    def _restore(self, folder: Path) -> None:
        """Load what an earlier process saved in ``folder`` (creating it when new), or raise a clear error."""
        for sub in (folder, folder / "lists", self.files_dir):
            sub.mkdir(parents=True, exist_ok=True)
            remove_leftovers(sub)
        account = folder / "account.json"
        if account.exists():
            self._restore_account(account, read_json(account))
        records = [(path, read_json(path)) for path in (folder / "lists").glob("*.json")]
        records.sort(key=lambda item: str(item[1].get("created_on", "")))
        now = time.time()
        for path, record in records:
            self._restore_list(path, record, now)
        self._remove_orphan_files()

    def _restore_account(self, path: Path, record: dict[str, Any]) -> None:
        try:
            self.instant_used = int(record["instant_used"])
            self.counters.update({k: int(v) for k, v in record["counters"].items()})
            self._daily_date = date.fromisoformat(record["daily"]["date"])
            self._daily_instant = int(record["daily"]["instant"])
            self._url_key = bytes.fromhex(record["url_key"])
            self.queue = {
                qid: QueuedSearch.of(float(ready_at), name, domain)
                for qid, (ready_at, name, domain) in record["queue"].items()
            }
        except _RECORD_PROBLEMS as exc:
            raise unreadable(path, f"not an account record ({type(exc).__name__}: {exc})") from exc

    def _restore_list(self, path: Path, record: dict[str, Any], now: float) -> None:
        try:
            if record["removed"]:
                self.retired.append(RetiredList.from_record(record))
                return
            list_id, kind = record["id"], ListKind(record["kind"])
            csv_path, costs_path = self.files_dir / f"{list_id}.csv", self.files_dir / f"{list_id}.costs.npy"
            stored = load_stored(csv_path, costs_path, kind, int(record["unique_rows"]))
            self.lists[list_id] = BulkList.from_record(record, stored, now, self.stuck)
        except _RECORD_PROBLEMS as exc:
            raise unreadable(path, f"not a list record ({type(exc).__name__}: {exc})") from exc

    def _remove_orphan_files(self) -> None:
        """Delete the files of removed lists and of uploads a kill interrupted before they were accepted."""
        for path in self.files_dir.iterdir():
            if path.name.split(".")[0] not in self.lists:
                path.unlink(missing_ok=True)


def _today() -> date:
    return datetime.now(UTC).date()
