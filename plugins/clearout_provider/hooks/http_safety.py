"""Checks a hook makes before it sends credentials anywhere: the base URL, and the header values.

Both hooks put a secret into every request (Clearout's token in ``Authorization``, CleverTap's
passcode in ``X-CleverTap-Passcode``), so:

- Plain ``http://`` is refused unless the host is this machine (127.0.0.0/8, ``::1``, ``localhost``:
  the sandbox) or the connection says ``allow_insecure_http: true``. Anywhere else the secret, and the
  addresses being verified, would cross the network in clear text.
- A URL with a user name or password in it is refused: it would be sent as a second, unintended
  credential and printed wherever the URL is.
- A secret with control, line-break or non-ASCII characters (a pasted newline) is refused before
  sending: HTTP clients reject such a header with an error that quotes the value, i.e. the secret.
- Text from an answer that goes into an exception message passes :func:`vendor_text`: a broken server
  echoing the request cannot put the secret into a message, nor megabytes into a log line.

Each check returns a description of the problem (or None) and the hook raises its own service's
configuration error, so the message names the right connection. Descriptions never quote the secret,
and URLs are shown as :func:`origin` (no user info, path or query).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

#: The connection extra that permits plain http to a host other than this machine.
ALLOW_INSECURE_HTTP = "allow_insecure_http"
#: Vendor text kept in an exception message; a longer one is cut (a hostile answer could be megabytes).
MAX_MESSAGE_CHARS = 500

_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off", ""})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP, IPv6 with or without brackets) is this machine."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: enough to name it in a message, without user info or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


def url_problem(url: str, *, allow_insecure_http: bool) -> str | None:
    """Why credentials must not be sent to ``url`` (a sentence fragment), or None when they may."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"uses the scheme {parts.scheme!r}: use https"
    if not host:
        return "has no host name"
    if parts.username is not None or parts.password is not None:
        return "contains a user name or password: keep credentials in the connection's own fields"
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(host):
        return (
            "uses plain http to another machine, which would send the credentials in clear text: use "
            f"https, or set the connection extra {ALLOW_INSECURE_HTTP}: true (only on a network you trust)"
        )
    return None


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value (without quoting it), or None."""
    if all(0x20 <= ord(ch) < 0x7F for ch in value):
        return None
    return "contains control, line-break or non-ASCII characters (paste it again without them)"


def as_flag(value: Any) -> bool | None:
    """A boolean extra as JSON or a form stores it (``true``, ``"true"``, ``"1"``...).

    None if it is neither.
    """
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def vendor_text(value: Any, secrets: Sequence[str]) -> str:
    """Text from an answer, safe for a message: the connection's secrets masked, the length bounded."""
    text = str(value)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"
