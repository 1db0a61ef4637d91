"""What the sandbox's Email Finder "discovers" for a name and a domain (or company): deterministic guesses.

The rules, so tests and demos can predict the answer:

- The name is split into first and last name after dropping honorifics (Mr, Dr, Jr, ...); accents are
  folded (José → jose). A name with anything but letters, spaces and ``. ' - ,`` is rejected (1088 for the
  instant call, "Not Found" with that reason in a bulk row).
- ``domain`` may be a domain (``apple.com``, ``https://www.apple.com/``) or a company name
  (``Apple Inc.`` → ``apple.com``: words after dropping legal suffixes, joined, plus ``.com``).
- A free-mail domain (gmail.com, ...) never yields a person's address: Not Found, 0 credits.
- A name that is a role word alone (``Sales``, ``Support Team``) finds the role address
  (``sales@domain``) with ``role=yes``: 2 credits.
- Otherwise the sha256 of ``first last@domain`` decides: 75 % found (4 credits) with one of the patterns
  first.last, first, flast, firstlast, first_last and a confidence score of 55-99; 25 % Not Found (0).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from clearout_provider.sandbox.clearout_verdicts import (
    FREE_MAIL_DOMAINS,
    ROLE_LOCAL_PARTS,
    address_hash,
    iso_utc,
)

#: Credits a finder result costs (Clearout: 4 for a found person, 2 for a role address, 0 when not found).
FOUND_COST, ROLE_COST = 4, 2

_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "jr", "sr", "ii", "iii"})
_LEGAL_SUFFIXES = frozenset(
    {"inc", "ltd", "llc", "llp", "plc", "gmbh", "corp", "corporation", "company", "co", "limited", "pvt"}
)
_ROLE_FILLERS = frozenset({"team", "dept", "department", "desk"})
_PATTERNS = ("{f}.{l}", "{f}", "{fi}{l}", "{f}{l}", "{f}_{l}")


def has_unsupported_characters(name: str) -> bool:
    """True when ``name`` holds anything but letters, spaces and ``. ' - ,`` (Clearout error 1088)."""
    return any(not (ch.isalpha() or ch in " .'-,") for ch in name)


@dataclass(frozen=True)
class FinderResult:
    """The finder's answer for one (name, domain) query."""

    first_name: str
    last_name: str
    domain: str
    company: str
    email: str = ""
    role: bool = False
    business: bool = True
    confidence: int = 0
    reason: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def found(self) -> bool:
        return bool(self.email)

    @property
    def cost(self) -> int:
        if not self.found:
            return 0
        return ROLE_COST if self.role else FOUND_COST

    def as_instant(self, found_on: datetime) -> dict[str, object]:
        """The ``data`` object of ``POST /email_finder/instant`` (and of a completed queue_status)."""
        emails = (
            [{"email_address": self.email, "role": _yes_no(self.role), "business": _yes_no(self.business)}]
            if self.found
            else []
        )
        return {
            "emails": emails,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "full_name": self.full_name,
            "domain": self.domain,
            "confidence_score": self.confidence,
            "total": len(emails),
            "company": {"name": self.company},
            "found_on": iso_utc(found_on),
        }

    def as_bulk_row(self, processed_at: datetime) -> list[str]:
        """Values for :data:`clearout_provider.verdicts.FINDER_RESULT_COLUMNS`, in that order."""
        return [
            self.full_name,
            self.first_name,
            self.last_name,
            self.domain,
            self.company,
            self.email,
            str(self.confidence) if self.found else "",
            _yes_no(self.business).capitalize() if self.found else "",
            "Found" if self.found else "Not Found",
            self.reason,
            iso_utc(processed_at),
        ]


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def split_name(name: str) -> tuple[str, str]:
    """``"Mr. Tony Stark"`` → ``("tony", "stark")``; a single word has no last name."""
    words = [w.strip(".'-") for w in re.split(r"[\s,]+", _fold(name))]
    words = [w for w in words if w and w not in _HONORIFICS]
    if not words:
        return "", ""
    return words[0], words[-1] if len(words) > 1 else ""


def domain_and_company(value: str) -> tuple[str, str]:
    """A domain (``www.apple.com``) or a company name (``Apple Inc.``) → ``("apple.com", "apple")``."""
    text = _fold(value).strip()
    text = re.sub(r"^[a-z]+://", "", text).split("/")[0]
    text = text.removeprefix("www.")
    if "." in text and " " not in text:
        return text, text.split(".")[0]
    words = [w for w in re.findall(r"[a-z0-9]+", text) if w not in _LEGAL_SUFFIXES]
    slug = "".join(words)
    return (f"{slug}.com" if slug else ""), " ".join(words)


def cancelled_result(name: str, domain: str) -> FinderResult:
    """A bulk finder row that a cancel stopped before it was searched (free)."""
    first, last = split_name(name)
    dom, company = domain_and_company(domain)
    return FinderResult(first, last, dom, company, reason="Request Cancelled")


def find_email(name: str, domain: str) -> FinderResult:
    """The deterministic finder answer for ``name`` at ``domain`` (rules in the module docstring)."""
    first, last = split_name(name)
    dom, company = domain_and_company(domain)
    if has_unsupported_characters(name):
        return FinderResult(first, last, dom, company, reason="Unsupported characters in name fields")
    if not first or not dom:
        return FinderResult(first, last, dom, company, reason="Name or domain missing")
    if dom in FREE_MAIL_DOMAINS:
        return FinderResult(first, last, dom, company, business=False, reason="Email Not Found")
    h = address_hash(f"{first} {last}@{dom}")
    if first in ROLE_LOCAL_PARTS and (not last or last in _ROLE_FILLERS):
        return FinderResult(
            first, "", dom, company, email=f"{first}@{dom}", role=True, confidence=90 + h % 10
        )
    if h % 100 >= 75:
        return FinderResult(first, last, dom, company, reason="Email Not Found")
    pattern = _PATTERNS[(h >> 8) % len(_PATTERNS)] if last else "{f}"
    local = pattern.format(f=first, l=last, fi=first[:1])
    return FinderResult(first, last, dom, company, email=f"{local}@{dom}", confidence=55 + (h >> 16) % 45)
