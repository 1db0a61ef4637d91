"""The 0.1 import path of the CleverTap errors: they live in :mod:`clearout_provider.exceptions` (the one
hierarchy) and are re-exported here for DAGs written against 0.1; this module goes in 0.3."""

from clearout_provider.exceptions import (
    CleverTapAuthError,
    CleverTapBadRequest,
    CleverTapConfigError,
    CleverTapCursorNotReady,
    CleverTapError,
    CleverTapProtocolError,
    CleverTapRateLimited,
    CleverTapServerError,
)

__all__ = [
    "CleverTapError",
    "CleverTapConfigError",
    "CleverTapAuthError",
    "CleverTapBadRequest",
    "CleverTapRateLimited",
    "CleverTapServerError",
    "CleverTapProtocolError",
    "CleverTapCursorNotReady",
]
