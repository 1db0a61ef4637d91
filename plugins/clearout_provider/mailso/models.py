"""Typed results of the Mail.so validation API: one validation, and one batch of them.

Plain frozen dataclasses with no parsing of their own: :mod:`clearout_provider.mailso.protocol` reads
each answer once, checks it and builds these, so a malformed answer is a
:class:`~clearout_provider.exceptions.MailsoProtocolError` there and never a surprise here. Field names
are Mail.so's own, so the vendor's documentation reads straight onto them.

Mail.so's ``isv_*`` flags are *positive* checks (``isv_noblock`` = "is not on a blocklist"): ``False``
means the problem is present. The properties :attr:`MailsoValidation.role`,
:attr:`~MailsoValidation.catch_all` and :attr:`~MailsoValidation.blocklisted` say it the other way round,
so callers do not have to remember the double negation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

#: Mail.so's verdict vocabulary (``reason`` is open text, ``result`` is one of these).
MailsoResult = Literal["deliverable", "undeliverable", "risky", "unknown"]
RESULTS: tuple[MailsoResult, ...] = ("deliverable", "undeliverable", "risky", "unknown")


@dataclass(frozen=True)
class MailsoValidation:
    """What Mail.so says about one address (``GET /validate``, or one entry of a finished batch)."""

    id: str
    email: str
    username: str | None
    domain: str | None
    mx_record: str | None
    provider: str | None
    score: int | None
    """0..100; None when Mail.so gives none."""
    isv_format: bool
    isv_domain: bool
    isv_mx: bool | None
    """None when the MX check was not made (an address whose format is already invalid)."""
    isv_noblock: bool
    isv_nocatchall: bool
    isv_nogeneric: bool
    is_disposable: bool
    is_free: bool
    result: MailsoResult
    reason: str
    did_you_mean: str | None = None
    """Mail.so's correction of a likely typo (``john@gmial.com`` → ``john@gmail.com``), when it has one."""

    @property
    def role(self) -> bool:
        """A role address (``info@``, ``sales@``): Mail.so's ``isv_nogeneric`` is false."""
        return self.isv_nogeneric is False

    @property
    def catch_all(self) -> bool:
        """The domain accepts every address: ``isv_nocatchall`` is false."""
        return self.isv_nocatchall is False

    @property
    def blocklisted(self) -> bool:
        """The address or its domain is on a blocklist: ``isv_noblock`` is false."""
        return self.isv_noblock is False


@dataclass(frozen=True)
class MailsoBatch:
    """A list validation (``POST /batch``, ``GET /batch/{id}``); done once ``finished_at`` is set.

    Mail.so has no status field: a batch is finished exactly when ``finished_at`` is non-null. ``emails``
    is empty in the creation answer and holds the validations once ``GET /batch/{id}`` returns them.
    """

    id: str
    name: str | None
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    size: int
    emails: tuple[MailsoValidation, ...] = ()

    @property
    def finished(self) -> bool:
        return self.finished_at is not None
