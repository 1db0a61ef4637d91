"""Masking of personal data in log lines.

Email addresses are personal data: logs keep enough to recognise which contact a line is about
(first character and the domain, which is also what matters when debugging deliverability) and no
more. Every module that logs an address uses :func:`mask_email` so there is one masking rule.

Input cells are often not bare addresses (``a@b.com (Ann Smith)``, ``a@b.com; c@d.com``,
``Ann <a@b.com>``), so the domain is cut at the first character a domain cannot hold: what follows
it (a name, a second address) never reaches the log.
"""

from __future__ import annotations

import re

# A domain, or a bracketed IP literal; anything after it is dropped.
_DOMAIN = re.compile(r"\[[0-9A-Za-z.:]*\]?|[^\s<>()\[\]\"',;:]*")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff\u00a0\u2060\u00ad"))


def mask_email(email: str) -> str:
    """``john.doe@example.com`` → ``j***@example.com``; anything without an ``@`` → ``***``."""
    local, at, domain = email.translate(_INVISIBLE).strip().rpartition("@")
    if not at or not local:
        return "***"
    match = _DOMAIN.match(domain)
    return f"{local[0]}***@{match.group() if match else ''}"
