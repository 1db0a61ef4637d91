"""What the Clearout sandbox answers for an address: the documented test addresses and a deterministic mix.

The same address always gets the same verdict, whether it is verified instantly, through a single-flag
check or inside a bulk list, in this process or the next one. The rules, applied in this order:

1. **Test addresses** (``<name>@example.com``, case-insensitive): the outcome listed in
   :data:`TEST_ADDRESSES`, the one table of Clearout's documented test addresses. They are free.
2. **Blank** address: invalid, sub-status 400 (Syntax Error); free, since there is nothing to verify.
3. **Unsupported characters** (anything outside ASCII): invalid, 606 (Unsupported Character).
4. **Malformed syntax** (not ``local@domain.tld`` by RFC 5322's dot-atom rules): invalid, 400.
5. **Typo of a big free-mail domain** (``gmial.com``, ``hotmial.com``, ... see :data:`TYPO_DOMAINS`):
   invalid, 403 (no DNS records), with ``suggested_email_address`` naming the corrected address.
6. **Disposable domain** (:data:`DISPOSABLE_DOMAINS`): ``disposable=yes``; the hash picks valid (200, safe
   to send "risky") or invalid (406, hard bounce).
7. **Everything else**: the first 8 bytes of ``sha256(lower-cased address)`` (never Python's randomised
   ``hash()``), modulo 1000, pick the sub-status:

   ======== =========================================== =======
   bucket   sub-status                                  share
   ======== =========================================== =======
   0-699    200 valid                                   70 %
   700-789  406 mailbox not found (invalid, hard)       9 %
   790-804  413 mailbox quota exceeded (invalid, soft)  1.5 %
   805-819  421 receiving limit reached (invalid, soft) 1.5 %
   820-919  411 catch-all                               10 %
   920-949  402 connection timeout (unknown)            3 %
   950-969  407 greylisted (unknown)                    2 %
   970-984  417 DNS timeout (unknown)                   1.5 %
   985-999  405 SMTP server unavailable (unknown)       1.5 %
   ======== =========================================== =======

Flags, independent of the status: ``free=yes`` for :data:`FREE_MAIL_DOMAINS`, ``role=yes`` for local parts
in :data:`ROLE_LOCAL_PARTS`, ``gibberish=yes`` for a local part with a run of five consonants.
``safe_to_send`` follows from status and flags (:func:`safe_to_send`); ``bounce_type`` from the sub-status
(:func:`clearout_provider.verdicts.sub_status`, the one table of sub-status meanings).

Billing (Clearout's rule): valid, invalid and catch-all results cost one credit; unknown results, test
addresses and blank cells are free (duplicates inside one list are the list store's business).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from clearout_provider.clearout.statuses import STATUS_LABELS, Status, SubStatus, sub_status

TEST_DOMAIN = "example.com"


@dataclass(frozen=True)
class TestAddress:
    """Documented outcome of one ``<local>@example.com`` test address."""

    code: int
    safe_to_send: str
    disposable: bool = False
    free: bool = False
    role: bool = False
    gibberish: bool = False
    suggested: str = ""


_T = TestAddress
#: Every test address of Clearout's API docs (local part at example.com) → its outcome. Older names
#: (blacklisted_/whitelisted_) answer like their newer (blocklist_/allowlist_) twins. The docs name the
#: behaviour, not always the sub-status; where they do not, the closest documented code is used.
TEST_ADDRESSES: dict[str, TestAddress] = {
    # local part                  sub-status  safe_to_send  flags / suggestion
    "valid":                      _T(200, "yes"),
    "invalid":                    _T(406, "no"),
    "catch_all":                  _T(411, "risky"),
    "unknown":                    _T(412, "unknown"),
    "safe_to_send_yes":           _T(200, "yes"),
    "safe_to_send_no":            _T(406, "no"),
    "safe_to_send_risky":         _T(411, "risky"),
    "disposable":                 _T(200, "risky", disposable=True),
    "role":                       _T(200, "risky", role=True),
    "free":                       _T(200, "yes", free=True),
    "gibberish":                  _T(200, "risky", gibberish=True),
    "hard_bounce":                _T(406, "no"),
    "soft_bounce":                _T(413, "no"),
    "suggested_email_address":    _T(406, "no", suggested="valid@example.com"),
    "syntax_error":               _T(400, "no"),
    "greylisted":                 _T(407, "unknown"),
    "spamtrap":                   _T(401, "no"),
    "blocklist_email_address":    _T(602, "no"),
    "allowlist_email_address":    _T(601, "yes"),
    "blocklist_domain":           _T(604, "no"),
    "allowlist_domain":           _T(603, "yes"),
    "blacklisted_email_address":  _T(602, "no"),
    "whitelisted_email_address":  _T(601, "yes"),
    "blacklisted_domain":         _T(604, "no"),
    "whitelisted_domain":         _T(603, "yes"),
    "domain_not_found":           _T(403, "no"),
    "not_a_mailserver":           _T(404, "no"),
    "mailbox_not_found":          _T(406, "no"),
    "mailbox_quota_exceeded":     _T(413, "no"),
    "dns_query_timeout":          _T(417, "unknown"),
    "unroutable_mailserver":      _T(402, "unknown"),
    "overquota_and_inactive":     _T(428, "no"),
    "receiving_limit_reached":    _T(421, "no"),
}  # fmt: skip

# fmt: off
FREE_MAIL_DOMAINS: frozenset[str] = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.in", "yahoo.co.uk", "ymail.com", "outlook.com",
    "hotmail.com", "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "protonmail.com", "proton.me",
    "gmx.com", "gmx.de", "zoho.com", "yandex.com", "mail.com", "rediffmail.com",
})
ROLE_LOCAL_PARTS: frozenset[str] = frozenset({
    "info", "admin", "administrator", "sales", "support", "contact", "hello", "help", "billing", "office",
    "marketing", "noreply", "no-reply", "webmaster", "postmaster", "hostmaster", "team", "careers", "jobs",
    "hr", "accounts", "accounting", "enquiries", "inquiries", "press", "service", "abuse", "security",
    "feedback", "orders",
})
DISPOSABLE_DOMAINS: frozenset[str] = frozenset({
    "mailinator.com", "guerrillamail.com", "10minutemail.com", "tempmail.com", "temp-mail.org",
    "yopmail.com", "trashmail.com", "sharklasers.com", "getnada.com", "dispostable.com", "maildrop.cc",
    "throwawaymail.com",
})
# fmt: on
#: Misspelt free-mail domains → the domain the user meant (drives ``suggested_email_address``).
TYPO_DOMAINS: dict[str, str] = {
    "gmial.com": "gmail.com",
    "gmai.com": "gmail.com",
    "gnail.com": "gmail.com",
    "hotmial.com": "hotmail.com",
    "yaho.com": "yahoo.com",
    "outlok.com": "outlook.com",
}
#: (upper bound of the hash bucket, sub-status code) for ordinary addresses; see the module docstring.
_HASHED_MIX: tuple[tuple[int, int], ...] = (
    (700, 200), (790, 406), (805, 413), (820, 421), (920, 411),
    (950, 402), (970, 407), (985, 417), (1000, 405),
)  # fmt: skip
_MX_BY_DOMAIN = {
    "gmail.com": ("gmail-smtp-in.l.google.com", "google"),
    "googlemail.com": ("gmail-smtp-in.l.google.com", "google"),
    "outlook.com": ("outlook-com.olc.protection.outlook.com", "microsoft"),
    "hotmail.com": ("hotmail-com.olc.protection.outlook.com", "microsoft"),
    "live.com": ("live-com.olc.protection.outlook.com", "microsoft"),
    "yahoo.com": ("mta5.am0.yahoodns.net", "yahoo"),
}
_PROVIDERS = ("google", "microsoft", "zoho", "proofpoint", "mimecast", "")
_NO_MAIL_SERVER = {400, 403, 404, 606}

_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SYNTAX = re.compile(rf"^(?P<local>{_DOT_ATOM})@(?P<domain>{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}})$")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{5}")


def address_hash(value: str) -> int:
    """Stable 64-bit hash of a case-folded value (sha256, so it is the same in every process)."""
    return int.from_bytes(
        hashlib.sha256(value.strip().lower().encode("utf-8", "surrogateescape")).digest()[:8]
    )


def iso_utc(moment: datetime) -> str:
    """``2021-08-21T03:10:02.796Z``, the timestamp format of Clearout's answers."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def safe_to_send(status: Status, *, disposable: bool, role: bool, gibberish: bool) -> str:
    """Clearout's send advice: only clean valid mailboxes are "yes"; flags make a valid one "risky"."""
    if status is Status.INVALID:
        return "no"
    if status is Status.UNKNOWN:
        return "unknown"
    if status is Status.CATCH_ALL or disposable or role or gibberish:
        return "risky"
    return "yes"


@dataclass(frozen=True)
class Verdict:
    """Everything Clearout says about one address, rendered for the instant API or a bulk result row."""

    email: str
    sub: SubStatus
    safe_to_send: str
    disposable: bool = False
    free: bool = False
    role: bool = False
    gibberish: bool = False
    suggested: str = ""
    account: str = ""
    domain: str = ""
    mx_record: str = ""
    smtp_provider: str = ""
    time_taken_ms: int = 0
    is_test: bool = False

    @property
    def status(self) -> Status:
        return self.sub.status

    @property
    def billable(self) -> bool:
        """One credit for a definite answer about a real address (Clearout's credit rule)."""
        return bool(self.email) and not self.is_test and self.status is not Status.UNKNOWN

    @property
    def catchall(self) -> bool:
        return self.status is Status.CATCH_ALL

    @property
    def business(self) -> bool:
        return not self.free and not self.disposable and self.sub.code not in _NO_MAIL_SERVER

    @property
    def ai_verdict(self) -> str:
        advice = {
            "yes": "safe to send",
            "risky": "risky to send",
            "no": "not safe to send",
            "unknown": "could not be determined",
        }[self.safe_to_send]
        return f"{STATUS_LABELS[self.status]} address ({self.sub.desc}); {advice}."

    def as_instant(self, verified_on: datetime, time_taken_ms: int | None = None) -> dict[str, object]:
        """The ``data`` object of ``POST /email_verify/instant``."""
        return {
            "email_address": self.email,
            "safe_to_send": self.safe_to_send,
            "status": self.status.value,
            "verified_on": iso_utc(verified_on),
            "time_taken": self.time_taken_ms if time_taken_ms is None else time_taken_ms,
            "sub_status": {"code": self.sub.code, "desc": self.sub.desc},
            "detail_info": {
                "account": self.account,
                "domain": self.domain,
                "mx_record": self.mx_record,
                "smtp_provider": self.smtp_provider,
            },
            "disposable": _yes_no(self.disposable),
            "free": _yes_no(self.free),
            "role": _yes_no(self.role),
            "gibberish": _yes_no(self.gibberish),
            "suggested_email_address": self.suggested,
            "bounce_type": self.sub.bounce.value,
            "ai_verdict": self.ai_verdict,
        }

    def as_bulk_row(self, verified_at: datetime) -> list[str]:
        """Values for :data:`clearout_provider.verdicts.BULK_RESULT_COLUMNS`, in that order."""
        return [
            self.safe_to_send.capitalize(),
            STATUS_LABELS[self.status],
            self.sub.desc,
            self.suggested,
            self.sub.bounce.value.capitalize(),
            _yes_no(self.disposable).capitalize(),
            _yes_no(self.free).capitalize(),
            _yes_no(self.role).capitalize(),
            _yes_no(self.gibberish).capitalize(),
            self.account,
            self.domain,
            self.mx_record,
            self.smtp_provider,
            iso_utc(verified_at),
            str(self.time_taken_ms),
            self.ai_verdict,
        ]


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def verdict_for(email: str) -> Verdict:
    """The deterministic verdict for ``email`` (rules in the module docstring)."""
    email = email.strip()
    if not email:
        return Verdict(email="", sub=sub_status(400), safe_to_send="no")
    h = address_hash(email)
    if not email.isascii():
        return _finish(email, h, 606, "", "")
    match = _SYNTAX.match(email)
    if not match or len(email) > 254 or len(match["local"]) > 64:
        return _finish(email, h, 400, "", "")
    local, domain = match["local"].lower(), match["domain"].lower()
    if domain == TEST_DOMAIN and local in TEST_ADDRESSES:
        t = TEST_ADDRESSES[local]
        return Verdict(
            email=email, sub=sub_status(t.code), safe_to_send=t.safe_to_send, disposable=t.disposable,
            free=t.free, role=t.role, gibberish=t.gibberish, suggested=t.suggested,
            **_details(local, domain, t.code, h), is_test=True,
        )  # fmt: skip
    if domain in TYPO_DOMAINS:
        return _finish(email, h, 403, local, domain, suggested=f"{match['local']}@{TYPO_DOMAINS[domain]}")
    if domain in DISPOSABLE_DOMAINS:
        return _finish(email, h, 200 if h % 2 else 406, local, domain, disposable=True)
    bucket = h % 1000
    code = next(code for bound, code in _HASHED_MIX if bucket < bound)
    return _finish(email, h, code, local, domain)


def cancelled(email: str) -> Verdict:
    """The verdict of a bulk row that a cancel stopped before it was verified (free)."""
    return Verdict(email=email.strip(), sub=sub_status(605), safe_to_send="unknown")


def _finish(
    email: str, h: int, code: int, local: str, domain: str, *, suggested: str = "", disposable: bool = False
) -> Verdict:
    """A verdict with the flags every non-test address gets from its local part and domain."""
    sub = sub_status(code)
    role = local in ROLE_LOCAL_PARTS
    gibberish = bool(_CONSONANT_RUN.search(local))
    return Verdict(
        email=email, sub=sub, free=domain in FREE_MAIL_DOMAINS, role=role, gibberish=gibberish,
        disposable=disposable, suggested=suggested, **_details(local, domain, code, h),
        safe_to_send=safe_to_send(sub.status, disposable=disposable, role=role, gibberish=gibberish),
    )  # fmt: skip


class _Details(TypedDict):
    """The :class:`Verdict` fields of ``detail_info`` and ``time_taken``."""

    account: str
    domain: str
    mx_record: str
    smtp_provider: str
    time_taken_ms: int


def _details(local: str, domain: str, code: int, h: int) -> _Details:
    """``detail_info`` and ``time_taken``: plausible, and derived from the same hash as the verdict."""
    time_taken = 150 + (h >> 20) % 2850
    if code in _NO_MAIL_SERVER or not domain:
        return {
            "account": local,
            "domain": domain,
            "mx_record": "",
            "smtp_provider": "",
            "time_taken_ms": time_taken,
        }
    mx, provider = _MX_BY_DOMAIN.get(domain, (f"mx1.{domain}", _PROVIDERS[(h >> 40) % len(_PROVIDERS)]))
    return {
        "account": local,
        "domain": domain,
        "mx_record": mx,
        "smtp_provider": provider,
        "time_taken_ms": time_taken,
    }
