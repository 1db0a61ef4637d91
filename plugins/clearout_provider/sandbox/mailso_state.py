"""The one account of the Mail.so sandbox: its credit ledger, counters, rate window and batches.

Credit rule: every validated address costs one credit — a ``GET /validate`` when it is answered, a
batch's addresses all at once when the batch is created (so a batch whose answer was lost is still paid
for, which is exactly what a client that re-posts it pays twice for). Past ``mailso_credits`` the API
answers 429 "Quota exceeded".

A batch is immutable once created: how far it got is derived from the clock (``mailso_batch_rate``
addresses per second from ``created``), so nothing has to be saved while it runs and a restarted sandbox
serves it exactly as before.

Persistence, with ``state_dir`` (in ``<state_dir>/mailso/``), written before each answer leaves:

- ``account.json``: credits single validations used, and the counters of ``GET /_sandbox/stats``;
- ``batches/<id>.json``: one record per batch, written once at creation.

What batches cost and how many there are is derived from their records instead of stored twice, so a
kill between two writes can neither lose nor double a charge.

Not kept: the rate window (a restart opens a new one) and the fault stream's position. All mutations
happen on the event loop (handlers are ``async`` and never await in between), so no lock is needed.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clearout_provider.sandbox.clearout_state import FixedWindow
from clearout_provider.sandbox.clearout_verdicts import iso_utc
from clearout_provider.sandbox.mailso_verdicts import validation_for
from clearout_provider.sandbox.settings import SandboxSettings
from clearout_provider.sandbox.state_files import read_json, remove_leftovers, unreadable, write_json

#: Counters of ``GET /mailso/v1/_sandbox/stats``.
COUNTERS = (
    "validations",
    "batch_polls",
    "unauthorized",
    "rate_limited",
    "quota_exceeded",
    "faults_503",
    "lost_batch_answers",
)
#: The ``user_id`` every batch of the sandbox's one account carries.
USER_ID = "5a4db0c5-0000-4000-8000-000000000001"
_RECORD_PROBLEMS = (KeyError, TypeError, ValueError, AttributeError)


@dataclass(frozen=True)
class Batch:
    """One list validation: its addresses and when it was created (wall-clock seconds)."""

    id: str
    name: str
    created: float
    emails: tuple[str, ...]

    def done_at(self, rate: float) -> float:
        return self.created + len(self.emails) / rate

    def processed(self, now: float, rate: float) -> int:
        return min(len(self.emails), math.floor(max(0.0, now - self.created) * rate))

    def as_api(self, now: float, rate: float, *, with_emails: bool) -> dict[str, Any]:
        """The batch object of Mail.so's answers; ``finished_at`` is null until every address is done."""
        done = self.done_at(rate)
        finished = with_emails and now >= done
        answer: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "created_at": _iso(self.created),
            "updated_at": _iso(min(now, done) if with_emails else self.created),
            "deleted_at": None,
            "finished_at": _iso(done) if finished else None,
            "user_id": USER_ID,
            "size": len(self.emails),
        }
        if with_emails:
            count = len(self.emails) if finished else self.processed(now, rate)
            answer["emails"] = [
                validation_for(email, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.id}/{index}")))
                for index, email in enumerate(self.emails[:count])
            ]
        return answer

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created": self.created, "emails": list(self.emails)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Batch:
        emails = record["emails"]
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise TypeError("'emails' is not a list of strings")
        return cls(str(record["id"]), str(record["name"]), float(record["created"]), tuple(emails))


def _iso(moment: float) -> str:
    return iso_utc(datetime.fromtimestamp(moment, UTC))


class MailsoState:
    """Everything the Mail.so sandbox remembers about its single account (see the module docstring)."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.validation_credits = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.batches: dict[str, Batch] = {}
        self.window = FixedWindow(settings.mailso_rpm, settings.rate_window)
        self.fault_rng = random.Random(f"{settings.fault_seed}:mailso_fault_rate_503")
        self.folder = Path(settings.state_dir) / "mailso" if settings.state_dir else None
        if self.folder is not None:
            self._restore(self.folder)

    @property
    def used(self) -> int:
        return self.validation_credits + sum(len(b.emails) for b in self.batches.values())

    @property
    def available(self) -> int:
        return self.settings.mailso_credits - self.used

    def count(self, counter: str, by: int = 1) -> None:
        """Add to a counter of ``GET /_sandbox/stats`` (saved with the account)."""
        self.counters[counter] += by
        self._save_account()

    def charge_validation(self) -> None:
        """One single validation answered: one credit."""
        self.validation_credits += 1
        self.counters["validations"] += 1
        self._save_account()

    def create_batch(self, emails: list[str], now: float) -> Batch:
        """Accept and charge a batch; its record is on disk before the caller answers."""
        batch_id = str(uuid.uuid4())
        batch = Batch(batch_id, f"batch-{batch_id[:8]}", now, tuple(emails))
        self.batches[batch_id] = batch
        if self.folder is not None:
            write_json(self.folder / "batches" / f"{batch_id}.json", batch.to_record())
        return batch

    def stats(self) -> dict[str, Any]:
        """``GET /_sandbox/stats``: the ledger and counters as tests read them."""
        return {
            "mailso_credits_used": self.used,
            "mailso_credits_available": self.available,
            "batches_created": len(self.batches),
            "batch_emails": sum(len(b.emails) for b in self.batches.values()),
            **self.counters,
            "batches": sorted(self.batches),
        }

    # --- persistence ----------------------------------------------------------------------------------
    def _save_account(self) -> None:
        if self.folder is not None:
            write_json(
                self.folder / "account.json",
                {"validation_credits": self.validation_credits, "counters": self.counters},
            )

    def _restore(self, folder: Path) -> None:
        """Load what an earlier process saved in ``folder`` (creating it when new), or raise a clear error."""
        for sub in (folder, folder / "batches"):
            sub.mkdir(parents=True, exist_ok=True)
            remove_leftovers(sub)
        account = folder / "account.json"
        if account.exists():
            record = read_json(account)
            try:
                self.validation_credits = int(record["validation_credits"])
                self.counters.update({k: int(v) for k, v in record["counters"].items() if k in self.counters})
            except _RECORD_PROBLEMS as exc:
                raise unreadable(account, f"not an account record ({type(exc).__name__}: {exc})") from exc
        for path in (folder / "batches").glob("*.json"):
            try:
                batch = Batch.from_record(read_json(path))
            except _RECORD_PROBLEMS as exc:
                raise unreadable(path, f"not a batch record ({type(exc).__name__}: {exc})") from exc
            self.batches[batch.id] = batch
