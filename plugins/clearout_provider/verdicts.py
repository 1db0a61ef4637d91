"""The 0.1 import path of the Clearout taxonomy, the CleverTap mapping and the unsubscribe policy.

They now live where a newcomer looks for them: Clearout's statuses and sub-status table in
:mod:`clearout_provider.clearout.statuses`, the neutral verdict and result columns in
:mod:`clearout_provider.verification.model`, verdict → CleverTap property in
:mod:`clearout_provider.clevertap.mapping`, who gets unsubscribed in
:mod:`clearout_provider.verification.policy`. This module re-exports them for DAGs written against 0.1
and will be removed in 0.3.
"""

from clearout_provider.clearout.statuses import (
    BULK_RESULT_COLUMNS,
    EMAIL_COLUMN_NAMES,
    FINDER_RESULT_COLUMNS,
    STATUS_LABELS,
    SUB_STATUSES,
    Status,
    SubStatus,
    normalise_status,
    sub_status,
    sub_status_from_reason,
)
from clearout_provider.clevertap.mapping import (
    ALWAYS_WRITTEN,
    CLEVERTAP_PROPERTIES,
    MANAGED_PROPERTIES,
    RECOMMENDED_APPEND,
    UNSUBSCRIBE_PROPERTY,
    UNSUBSCRIBED_AT_PROPERTY,
    UNSUBSCRIBED_REASON_PROPERTY,
    VERIFICATION_PROPERTIES,
    PropertyMapping,
)
from clearout_provider.verification.model import RESULT_COLUMNS, Bounce
from clearout_provider.verification.policy import UnsubscribeMethod, UnsubscribePolicy

__all__ = [
    "ALWAYS_WRITTEN",
    "BULK_RESULT_COLUMNS",
    "CLEVERTAP_PROPERTIES",
    "EMAIL_COLUMN_NAMES",
    "FINDER_RESULT_COLUMNS",
    "MANAGED_PROPERTIES",
    "RECOMMENDED_APPEND",
    "RESULT_COLUMNS",
    "STATUS_LABELS",
    "SUB_STATUSES",
    "UNSUBSCRIBED_AT_PROPERTY",
    "UNSUBSCRIBED_REASON_PROPERTY",
    "UNSUBSCRIBE_PROPERTY",
    "VERIFICATION_PROPERTIES",
    "Bounce",
    "PropertyMapping",
    "Status",
    "SubStatus",
    "UnsubscribeMethod",
    "UnsubscribePolicy",
    "normalise_status",
    "sub_status",
    "sub_status_from_reason",
]
