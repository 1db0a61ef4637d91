"""The sandbox's CleverTap profile store: lazily generated seed profiles plus an overlay of changes.

Profile ``key`` < ``seed.count`` is seeded profile ``key``; keys above are profiles created by uploads
with an unknown identity. Only what uploads and subscribes change is kept in memory (``overlay``:
key → changed properties, ``None`` meaning deleted; ``subscriptions``: address → status), so a store
of a million profiles costs a few megabytes.

With a ``state_path`` the overlay is written through to SQLite on every change and reloaded at start,
so a demo's results can be inspected after the run (``GET /clevertap/1/profile.json?email=``) and
survive a restart of the sandbox.

Address-level subscriptions (``POST /1/subscribe``) show on every profile with that address as
``"subscription": {"email": "Unsubscribed" | "Resubscribed"}`` (a sandbox convention; CleverTap shows
it in the dashboard's communication preferences).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from clearout_provider.sandbox.clevertap_cql import MISSING, field_value
from clearout_provider.sandbox.clevertap_seed import (
    NOT_CHEAP,
    SeedProfiles,
    email_of,
    index_of_identity,
    index_of_object_id,
    is_anonymous,
)

#: Overlay entry holding the events uploaded for a profile (name → count, first_seen, last_seen): a key
#: no profile property can have, since CleverTap property names cannot start with "$".
EVENTS = "$events"
#: Field names a query reads from the record's top level (see clevertap_cql.field_value), any case.
_SYSTEM = frozenset({"email", "name", "identity"})
#: Properties shown as top-level fields of a record rather than inside ``profileData``.
_TOP_LEVEL = {"Email": "email", "Name": "name"}
SUBSCRIPTION_STATES = {"Unsubscribe": "Unsubscribed", "Resubscribe": "Resubscribed"}


def _new_object_id(identity: str) -> str:
    return "__n" + hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()[:31]


class ProfileStore:
    """Seeded profiles + uploaded changes + created profiles + address subscriptions."""

    def __init__(self, seed: SeedProfiles, state_path: Path | None = None) -> None:
        self.seed = seed
        self.overlay: dict[int, dict[str, Any]] = {}
        self.subscriptions: dict[str, str] = {}
        self._created: list[str] = []
        self._created_keys: dict[str, int] = {}
        self._created_oids: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        if state_path is not None:
            self._open(state_path)

    # --- lookup ---------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of profiles (seeded + created)."""
        return self.seed.count + len(self._created)

    def key_of_identity(self, identity: str) -> int | None:
        """Key of the profile with ``identity`` (None if no profile has it)."""
        i = index_of_identity(identity)
        if i is not None and i < self.seed.count and not is_anonymous(i):
            return i
        return self._created_keys.get(identity)

    def key_of_object_id(self, object_id: str) -> int | None:
        """Key of the profile with CleverTap ID ``object_id`` (None if unknown)."""
        i = index_of_object_id(object_id)
        if i is not None and i < self.seed.count:
            return i
        return self._created_oids.get(object_id)

    def email(self, key: int) -> str | None:
        """The profile's current email, cheaply (no full record); used to scan by address."""
        changed = self.overlay.get(key, {})
        if "Email" in changed:
            return changed["Email"]
        return email_of(key)[0] if key < self.seed.count else None

    def key_of_email(self, email: str) -> int | None:
        """First profile whose email equals ``email`` case-insensitively (a scan: fine for a sandbox)."""
        wanted = email.strip().lower()
        for key in range(self.size):
            current = self.email(key)
            if current and current.lower() == wanted:
                return key
        return None

    def view(self, key: int) -> StoredProfile:
        """Profile ``key`` as a CQL query reads it: its record is built only if the overlay cannot answer."""
        return StoredProfile(self, key)

    def record(self, key: int) -> dict[str, Any]:
        """The profile as the export and ``profile.json`` show it."""
        if key < self.seed.count:
            p = self.seed.profile(key)
            rec: dict[str, Any] = {
                "identity": p.identity,
                "email": p.email,
                "name": p.name,
                "profileData": dict(p.profile_data),
                "events": p.events,
                "platformInfo": [{"platform": p.platform, "objectId": p.object_id}],
            }
        else:
            identity = self._created[key - self.seed.count]
            rec = {
                "identity": identity,
                "profileData": {},
                "events": {},
                "platformInfo": [{"platform": "API", "objectId": _new_object_id(identity)}],
            }
        data = rec["profileData"]
        for prop, value in self.overlay.get(key, {}).items():
            if prop == EVENTS:
                rec["events"] = {**rec["events"], **value}
            elif prop in _TOP_LEVEL:
                rec[_TOP_LEVEL[prop]] = value
                data.pop(prop, None)
            elif value is None:
                data.pop(prop, None)
            else:
                data[prop] = value
        address = rec.get("email") or data.get("Email")
        state = self.subscriptions.get(address.lower()) if address else None
        if state:
            rec["subscription"] = {"email": state}
        return {k: v for k, v in rec.items() if v is not None}

    # --- changes ----------------------------------------------------------------------------------
    def create(self, identity: str) -> int:
        """A new, empty profile for an unknown identity (as an upload does)."""
        key = self.size
        self._created.append(identity)
        self._created_keys[identity] = key
        self._created_oids[_new_object_id(identity)] = key
        return key

    def apply(self, key: int, profile_data: Mapping[str, Any]) -> None:
        """Apply one record's ``profileData`` (plain values overwrite; ``$add`` ... operators)."""
        changes = self.overlay.setdefault(key, {})
        current: dict[str, Any] | None = None
        for prop, value in profile_data.items():
            if isinstance(value, Mapping):
                if current is None:
                    current = self.record(key).get("profileData", {})
                changes[prop] = _operate(current.get(prop), value)
                current[prop] = changes[prop]
            else:
                changes[prop] = value

    def record_event(self, key: int, name: str, ts: int) -> None:
        """Count one uploaded event ``name`` at epoch ``ts`` on the profile (first and last seen)."""
        seen = self.record(key).get("events", {}).get(name)
        events = self.overlay.setdefault(key, {}).setdefault(EVENTS, {})
        if seen:
            ts_first, ts_last = min(seen["first_seen"], ts), max(seen["last_seen"], ts)
            events[name] = {"count": seen.get("count", 0) + 1, "first_seen": ts_first, "last_seen": ts_last}
        else:
            events[name] = {"count": 1, "first_seen": ts, "last_seen": ts}

    def subscribe(self, email: str, status: str) -> None:
        """Record ``Unsubscribe``/``Resubscribe`` for an address (every profile with it)."""
        self.subscriptions[email.strip().lower()] = SUBSCRIPTION_STATES[status]

    # --- persistence ------------------------------------------------------------------------------
    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS created (ordinal INTEGER PRIMARY KEY, identity TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS changes (profile TEXT PRIMARY KEY, props TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS subscriptions (email TEXT PRIMARY KEY, status TEXT)")
        for (identity,) in self._db.execute("SELECT identity FROM created ORDER BY ordinal"):
            self.create(identity)
        for profile, props in self._db.execute("SELECT profile, props FROM changes"):
            key = self._key_of_ref(profile)
            if key is not None:
                self.overlay[key] = json.loads(props)
        self.subscriptions.update(self._db.execute("SELECT email, status FROM subscriptions"))

    def _ref(self, key: int) -> str:
        """A reference to a profile that survives a change of ``seed_contacts`` between runs."""
        return f"s:{key}" if key < self.seed.count else f"n:{self._created[key - self.seed.count]}"

    def _key_of_ref(self, ref: str) -> int | None:
        kind, _, value = ref.partition(":")
        if kind == "s":
            return int(value) if int(value) < self.seed.count else None
        return self._created_keys.get(value)

    def save(self, keys: Iterable[int] = (), emails: Iterable[str] = ()) -> None:
        """Write the given profiles' overlays and addresses' subscriptions through to SQLite."""
        if self._db is None:
            return
        with self._db:
            self._db.execute("BEGIN")
            created = self._db.execute("SELECT COUNT(*) FROM created").fetchone()[0]
            self._db.executemany(
                "INSERT INTO created (ordinal, identity) VALUES (?, ?)",
                [(n, identity) for n, identity in enumerate(self._created) if n >= created],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO changes (profile, props) VALUES (?, ?)",
                [(self._ref(k), json.dumps(self.overlay[k])) for k in set(keys) if k in self.overlay],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO subscriptions (email, status) VALUES (?, ?)",
                [(e, self.subscriptions[e]) for e in {e.strip().lower() for e in emails}],
            )

    def close(self) -> None:
        """Close the state database (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None


class StoredProfile:
    """A lazy :class:`~clearout_provider.sandbox.clevertap_cql.Profile` of one stored profile.

    A property an upload wrote is answered from the overlay, as :meth:`ProfileStore.record` would show it
    (a deleted one is missing); anything else builds the record once. After a night that wrote every
    profile's verification, a delta query's first condition is answered for almost every profile
    without generating it.
    """

    def __init__(self, store: ProfileStore, key: int) -> None:
        self._store = store
        self._key = key
        self._record: dict[str, Any] | None = None

    def _full(self) -> dict[str, Any]:
        if self._record is None:
            self._record = self._store.record(self._key)
        return self._record

    def value(self, name: str) -> Any:
        changes = self._store.overlay.get(self._key)
        if name.lower() not in _SYSTEM:
            if changes and name in changes:
                value = changes[name]
                return MISSING if value in (None, "") else value
            if self._key < self._store.seed.count and self._record is None:
                value = self._store.seed.cheap_value(self._key, name)
                if value is not NOT_CHEAP:
                    return value
        return field_value(self._full(), name)

    def events(self) -> Mapping[str, Mapping[str, int]]:
        return self._full().get("events") or {}


def _operate(current: Any, operation: Mapping[str, Any]) -> Any:
    """Result of ``{"$incr": n}``, ``{"$add": [...]}``... on the current value (None = deleted)."""
    ((op, arg),) = operation.items()
    if op == "$delete":
        return None
    if op in ("$incr", "$decr"):
        base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
        return base + arg if op == "$incr" else base - arg
    items = list(current) if isinstance(current, list) else ([] if current is None else [str(current)])
    if op == "$add":
        return items + [v for v in arg if v not in items]
    return [v for v in items if v not in arg]
