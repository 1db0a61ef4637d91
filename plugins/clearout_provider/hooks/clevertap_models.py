"""Typed results of :class:`~clearout_provider.hooks.clevertap.CleverTapHook`: what an export wrote, and
what happened to every record of an upload or subscribe call.

Reports account for every input row: ``received == processed + len(rejections)``, and rows that
were sent satisfy ``sent == processed + rejected``. A row is never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The mapping's home is verdicts.py (one table); re-exported here for the hook and existing imports.
from clearout_provider.clevertap.mapping import VERIFICATION_PROPERTIES  # noqa: F401

#: Columns every export file starts with, in order.
EXPORT_BASE_COLUMNS: tuple[str, ...] = ("identity", "objectId", "email", "name")

#: Where a record was turned away: by the hook's own checks before sending ("local"), or by CleverTap
#: in the response ("api"). A request that fails as a whole is not a rejection: the hook raises.
Stage = Literal["local", "api"]


@dataclass(frozen=True)
class ExportResult:
    """An export written to ``path``: ``count`` profiles over ``pages`` pages in ``requests`` HTTP calls.

    A parallel export (:meth:`CleverTapHook.export_partitions`) also says how many rows each part had and
    how many repeats the merge dropped (``count == sum(part_counts) - duplicates``).
    """

    path: str
    count: int
    pages: int
    requests: int
    columns: tuple[str, ...]
    duplicates: int = 0
    part_counts: tuple[int, ...] = ()


@dataclass(frozen=True)
class RecordRejection:
    """One input row that was not applied, with CleverTap's code and message (or the hook's own)."""

    row: int
    """0-based position of the record in the input iterable."""
    code: int
    error: str
    stage: Stage
    identity: str | None = None
    object_id: str | None = None
    email: str | None = None


@dataclass
class UploadReport:
    """Outcome of ``upload_profiles`` / ``subscribe``."""

    dry_run: bool = False
    received: int = 0
    """Input rows seen."""
    sent: int = 0
    """Rows sent to CleverTap (received minus local rejections)."""
    processed: int = 0
    """Rows CleverTap accepted (validated only, for a dry run)."""
    batches: int = 0
    requests: int = 0
    """HTTP calls made, retries included."""
    rejections: list[RecordRejection] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """Rows that were sent and not applied (CleverTap's per-record rejections)."""
        return sum(1 for r in self.rejections if r.stage != "local")

    @property
    def invalid(self) -> int:
        """Rows the hook refused to send (property rules, missing identifier)."""
        return sum(1 for r in self.rejections if r.stage == "local")

    @property
    def ok(self) -> bool:
        """True when every row was applied."""
        return not self.rejections
