"""Masking of personal data in log lines.

Email addresses are personal data: logs keep enough to recognise which contact a line is about
(first character and the domain, which is also what matters when debugging deliverability) and no
more. Every module that logs an address uses :func:`mask_email` so there is one masking rule.
"""

from __future__ import annotations


def mask_email(email: str) -> str:
    """``john.doe@example.com`` → ``j***@example.com``; anything without an ``@`` → ``***``."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"
