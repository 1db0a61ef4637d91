"""The sandbox's synthetic CleverTap contacts: profile ``i`` is a pure function of ``i`` (and the anchor day).

Nothing is stored: a million seeded profiles cost no memory until something changes one of them (the
store keeps only an overlay of changes). The mix is what a real CleverTap account holds and what a
list-cleaning pipeline must cope with:

* the first profiles carry every Clearout test address (``valid@example.com``, ``spamtrap@example.com``,
  ...), followed by a few deliberate edge cases: the same address on several profiles, upper-case
  variants, malformed addresses, an empty and a missing email, an email kept only in
  ``profileData.Email``;
* the rest is drawn from a keyed hash of ``i``: free-mail and company addresses, duplicates and
  upper-case variants of nearby profiles, malformed, empty and missing emails, anonymous profiles (no
  identity), custom properties, "App Launched"/"Charged" events, and for about one in five profiles
  an earlier Clearout verification with an old "Clearout Verified At" date;
* half of the profiles without an email (about 1 %) are B2B leads: a name, a "Company" and a
  "Company Domain", the input of the Email Finder enrichment DAG.

Identities are ``str(10_000_000 + i)`` and objectIds embed ``i``, so both map back to ``i`` without an
index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from clearout_provider.clevertap_rules import DATE_PREFIX
from clearout_provider.sandbox.clearout_verdicts import TEST_ADDRESSES, TEST_DOMAIN

IDENTITY_BASE = 10_000_000
SIGNUP_DATE = "Signup Date"
#: :meth:`SeedProfiles.cheap_value`'s answer for a property it cannot compute on its own.
NOT_CHEAP = object()
_DAY = 86_400

#: Local parts of the Clearout test addresses (at example.com), from the Clearout sandbox's one table.
CLEAROUT_TEST_LOCAL_PARTS: tuple[str, ...] = tuple(TEST_ADDRESSES)

#: ``(email, where)`` of the hand-written profiles after the test addresses. ``where`` is "top"
#: (top-level ``email``), "profileData" (only ``profileData.Email``) or "missing" (no email at all).
EDGE_CASES: tuple[tuple[str, str], ...] = (
    ("valid@example.com", "top"),  # same address on a second profile
    ("Valid@Example.COM", "top"),  # upper-case variant of it
    ("invalid@example.com", "top"),
    ("DISPOSABLE@EXAMPLE.COM", "top"),
    ("not-an-email", "top"),
    ("john@@example.com", "top"),
    ("jane.doe@example", "top"),
    ("two words@example.com", "top"),
    ("", "top"),
    ("", "missing"),
    ("role@example.com", "profileData"),
)

HEAD: tuple[tuple[str, str], ...] = (
    tuple((f"{p}@{TEST_DOMAIN}", "top") for p in CLEAROUT_TEST_LOCAL_PARTS) + EDGE_CASES
)

_FIRST = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Priya", "Karen",
    "Rahul", "Nancy", "Wei", "Lisa", "Ahmed", "Betty", "Carlos", "Sofia", "Yuki", "Fatima", "Olga",
    "Lucas", "Amara", "Noah", "Zoe", "Ivan", "Mei", "Omar", "Chloe", "Arjun",
)  # fmt: skip
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sharma", "Clark", "Ramirez", "Lewis", "Robinson",
    "Patel", "Nguyen", "Kim", "Chen", "Singh", "Kowalski", "Müller", "Rossi", "Dubois", "Silva",
)  # fmt: skip
_FREE_DOMAINS = (
    "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com", "proton.me",
    "gmx.de", "yahoo.co.in", "mail.ru",
)  # fmt: skip
#: Fictional companies (name, domain).
_COMPANIES = (
    ("Acme Rockets", "acme-rockets.com"), ("Globex", "globex-corp.com"), ("Initech", "initech.io"),
    ("Umbrella Labs", "umbrella-labs.net"), ("Hooli", "hooli.xyz"), ("Vandelay Industries", "vandelay.co"),
    ("Stark Freight", "stark-freight.com"), ("Wonka Foods", "wonkafoods.co.uk"),
    ("Tyrell Systems", "tyrell-systems.com"), ("Soylent Retail", "soylent-retail.in"),
    ("Cyberdyne Health", "cyberdyne-health.org"), ("Wayne Logistics", "wayne-logistics.ae"),
)  # fmt: skip
_CITIES = ("London", "Mumbai", "New York", "Singapore", "Jakarta", "Dubai", "Berlin", "Bengaluru", "Austin")
_CUSTOMER_TYPES = ("Bronze", "Silver", "Gold", "Platinum")
_PLATFORMS = ("Web", "Android", "iOS")
_OLD_STATUSES = ("valid", "valid", "valid", "invalid", "catch_all", "unknown")


@dataclass(frozen=True)
class SeedProfile:
    """The seeded state of one profile, before any upload changed it."""

    index: int
    identity: str | None
    object_id: str
    email: str | None
    email_in_profile_data: bool
    name: str | None
    platform: str
    profile_data: dict[str, Any]
    events: dict[str, dict[str, int]]


def _digest(i: int) -> bytes:
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=32, key=b"clevertap-sandbox").digest()


def object_id_of(i: int, h: bytes | None = None) -> str:
    """CleverTap-ID-looking id (``__`` + 32 hex) whose last 8 hex digits are ``i`` (``h``: its digest)."""
    return f"__{(h or _digest(i))[16:28].hex()}{i:08x}"


def index_of_object_id(object_id: str) -> int | None:
    """Inverse of :func:`object_id_of` (None when ``object_id`` is not a seeded one)."""
    if len(object_id) != 34 or not object_id.startswith("__"):
        return None
    try:
        i = int(object_id[-8:], 16)
    except ValueError:
        return None
    return i if object_id_of(i) == object_id else None


def index_of_identity(identity: str) -> int | None:
    """Inverse of the seeded identity ``str(10_000_000 + i)`` (None for any other identity)."""
    if not identity.isdigit() or len(identity) < 8 or identity.startswith("0"):
        return None
    return int(identity) - IDENTITY_BASE if int(identity) >= IDENTITY_BASE else None


def is_anonymous(i: int, h: bytes | None = None) -> bool:
    """Whether seeded profile ``i`` has no identity (only its objectId)."""
    return i >= len(HEAD) and (h or _digest(i))[2] % 20 == 0


def _names(h: bytes) -> tuple[str, str]:
    return _FIRST[h[0] % len(_FIRST)], _LAST[h[1] % len(_LAST)]


def plain_email(i: int, h: bytes | None = None) -> str:
    """The well-formed address profile ``i`` would have (its own, or one others copy)."""
    h = h or _digest(i)
    first, last = _names(h)
    first, last = first.lower(), last.lower().replace("ü", "u")
    if h[4] >= 150 and h[4] < 210:
        return f"{first}.{last}@{_COMPANIES[h[7] % len(_COMPANIES)][1]}"
    style = h[5] % 5
    local = (
        f"{first}.{last}",
        f"{first}{last}",
        f"{first}_{last}",
        f"{first[0]}.{last}",
        f"{first}.{last}{h[6]}",
    )
    return f"{local[style]}@{_FREE_DOMAINS[h[6] % len(_FREE_DOMAINS)]}"


def _malformed(address: str, pick: int) -> str:
    local, _, domain = address.partition("@")
    return (
        f"{local}@@{domain}",
        f"{local}@{domain.rsplit('.', 1)[0]}",
        f"{local} {domain}",
        f"{local}@{domain}.",
        f"{local.replace('.', ' ')}@{domain}",
    )[pick % 5]


def email_of(i: int, h: bytes | None = None) -> tuple[str | None, str]:
    """``(email, where)`` of seeded profile ``i``; cheaper than :func:`profile` for scans by email."""
    if i < len(HEAD):
        email, where = HEAD[i]
        return (None if where == "missing" else email), where
    h = h or _digest(i)
    roll = h[4]
    if roll < 210:
        return plain_email(i, h), "top"
    other = max(len(HEAD), i - 1 - h[8] % 7)
    if roll < 220:
        return plain_email(other), "top"
    if roll < 228:
        local, _, domain = plain_email(other).partition("@")
        return f"{local.title()}@{domain.capitalize()}", "top"
    if roll < 236:
        return _malformed(plain_email(i, h), h[9]), "top"
    if roll < 244:
        return "", "top"
    if roll < 250:
        return None, "missing"
    return plain_email(i, h), "profileData"


class SeedProfiles:
    """The ``count`` seeded profiles of one sandbox, dated relative to ``anchor`` (default: today, UTC)."""

    def __init__(self, count: int, anchor: date | None = None) -> None:
        self.count = count
        self.anchor = anchor or datetime.now(UTC).date()
        self.anchor_epoch = int(
            datetime(self.anchor.year, self.anchor.month, self.anchor.day, tzinfo=UTC).timestamp()
        )

    def days_ago(self, days: int) -> int:
        """Epoch seconds (midnight UTC) ``days`` before the anchor day."""
        return self.anchor_epoch - days * _DAY

    def signup_date(self, i: int, h: bytes | None = None) -> str:
        """Seeded profile ``i``'s "Signup Date" (every seeded profile has one, 400 to 1900 days ago).

        Computed on its own, without the rest of the profile: it is the property a parallel export
        partitions by, so a partitioned query must not generate every profile to test it.
        """
        h = h or _digest(i)
        return f"{DATE_PREFIX}{self.days_ago(400 + (h[14] * 256 + h[15]) % 1500)}"

    def cheap_value(self, i: int, name: str) -> Any:
        """Property ``name`` of seeded profile ``i`` when it can be had without the whole profile, else
        :data:`NOT_CHEAP`."""
        return self.signup_date(i) if name == SIGNUP_DATE else NOT_CHEAP

    def profile(self, i: int) -> SeedProfile:
        """Seeded profile ``i`` (0 <= i < count)."""
        h = _digest(i)
        first, last = _names(h)
        email, where = email_of(i, h)
        anonymous = is_anonymous(i, h)
        company = _COMPANIES[h[7] % len(_COMPANIES)][0] if 150 <= h[4] < 210 else None
        data: dict[str, Any] = {
            "Customer Type": _CUSTOMER_TYPES[h[10] % 4],
            "Orders": h[11] % 40,
            "Newsletter": h[12] % 2 == 0,
            "City": _CITIES[h[13] % len(_CITIES)],
            SIGNUP_DATE: self.signup_date(i, h),
        }
        if company:
            data["Company"] = company
        elif where == "missing" and i >= len(HEAD) and h[25] % 2 == 0:  # a B2B lead: no email yet
            data["Company"], data["Company Domain"] = _COMPANIES[h[26] % len(_COMPANIES)]
        if where == "profileData":
            data["Email"] = email
        if email and h[3] < 51:  # ~20% were verified before, long ago
            data["Clearout Verification Status"] = _OLD_STATUSES[h[28] % len(_OLD_STATUSES)]
            data["Clearout Safe To Send"] = "yes" if data["Clearout Verification Status"] == "valid" else "no"
            data["Clearout Verified At"] = (
                f"{DATE_PREFIX}{self.days_ago(90 + (h[29] * 256 + h[30]) % 800) + 3600}"
            )
        last_seen = self.days_ago(h[17] % 365) + (h[18] * 337) % _DAY
        first_seen = min(last_seen, self.days_ago(365 + h[19] % 700))
        events = {"App Launched": {"count": 1 + h[20] % 60, "first_seen": first_seen, "last_seen": last_seen}}
        if h[21] % 3 == 0:
            events["Charged"] = {"count": 1 + h[22] % 9, "first_seen": first_seen, "last_seen": last_seen}
        return SeedProfile(
            index=i,
            identity=None if anonymous else str(IDENTITY_BASE + i),
            object_id=object_id_of(i, h),
            email=None if where != "top" else email,
            email_in_profile_data=where == "profileData",
            name=None if anonymous or h[23] % 25 == 0 else f"{first} {last}",
            platform=_PLATFORMS[h[24] % 3],
            profile_data=data,
            events=events,
        )
