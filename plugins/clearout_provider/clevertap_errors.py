"""Typed CleverTap failures, by meaning, so callers decide with ``except`` instead of parsing bodies.

CleverTap reports request-level failures as an HTTP status plus ``{"status":"fail","error":...,
"code":...}``; :func:`clearout_provider.hooks.clevertap.interpret_response` turns those into the classes
below, in one place. Per-record rejections inside an upload are NOT exceptions: they are rows of the
upload report, because one bad record must not fail the other 999. A request that fails as a whole
(after the hook's retries, for the transient kinds) IS one: an outage must fail the task, not end it
green with every row "rejected".

Messages are built from what CleverTap said plus fixed advice, never from request headers, so the
passcode cannot end up in a message, a log line or a traceback.
"""

from __future__ import annotations

from clearout_provider.exceptions import ServiceError


class CleverTapError(ServiceError):
    """Any failure reported by (or on the way to) the CleverTap API."""

    service = "CleverTap"


class CleverTapConfigError(CleverTapError):
    """The connection itself is unusable (unknown region, missing or malformed Account ID or Passcode, a
    plain ``http://`` host on another machine); raised before any request is sent, never retried."""

    @property
    def advice(self) -> str:
        return "Fix the CleverTap connection (Account ID, Passcode, Region or host override)."


class CleverTapAuthError(CleverTapError):
    """HTTP 401/403: wrong Account ID or Passcode, or the right ones sent to the wrong region."""

    @property
    def advice(self) -> str:
        return (
            "Check the Account ID and Passcode (CleverTap dashboard → Settings → Project) and the region: "
            "a project in another region also answers 401 (the dashboard URL's sub-domain names it)."
        )


class CleverTapBadRequest(CleverTapError):
    """HTTP 400 and other non-retryable answers: the request is wrong (query, batch size, payload)."""

    @property
    def advice(self) -> str:
        return "Fix the request; sending it again unchanged will fail the same way."


class CleverTapRateLimited(CleverTapError):
    """HTTP 429 "Too many concurrent requests", or throttling (code 1) that outlasted the waits."""

    transient = True

    @property
    def advice(self) -> str:
        return (
            "Lower max_concurrency (CleverTap allows 15 concurrent uploads, about 3 exports) or retry later."
        )


class CleverTapServerError(CleverTapError):
    """HTTP 5xx or a network failure: transient, retried by the hook, then raised (also by uploads)."""

    transient = True

    @property
    def advice(self) -> str:
        return "CleverTap or the network failed temporarily; try again later if the retries did not help."


class CleverTapProtocolError(CleverTapError):
    """CleverTap answered 2xx with a body the hook cannot read: not a JSON object, an upload answer
    without a numeric ``processed`` or with a malformed ``unprocessed`` list, an export without a usable
    cursor or ``records`` list.

    Not transient: a malformed answer comes from an intermediary or an API change, not a hiccup a resend
    within seconds fixes, and an upload it answers may already have been applied. It fails the task, so
    Airflow's task retry (re-sending plain property sets is safe) decides when to ask again.
    """

    @property
    def advice(self) -> str:
        return (
            "The request was not resent; retry the task later, and if this persists check for a proxy "
            "between Airflow and CleverTap or report it to CleverTap support."
        )


class CleverTapCursorNotReady(CleverTapError):
    """An export cursor kept answering "not ready" (code 2) for longer than the hook waits."""

    transient = True

    @property
    def advice(self) -> str:
        return "CleverTap is still preparing the export; rerun later or raise cursor_wait_timeout."
