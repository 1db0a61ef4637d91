"""What a night asks CleverTap for: the delta of a segment as CQL, split into export parts.

A nightly run needs only the profiles whose verification can be due, and CleverTap can select them
server-side from the properties the load writes (:data:`~clearout_provider.clevertap.mapping.ALWAYS_WRITTEN`):

* ``never_verified``: the verification date property does not exist;
* ``due``: the due date the load wrote ("Clearout Reverify After": the verification time plus the
  verdict's lifetime, :meth:`~clearout_provider.contacts.Freshness.lifetime`, so uncertain verdicts
  come back sooner) has passed;
* ``email_change_event`` (optional): profiles that raised the app's own "email changed" event since the
  last delta night (CQL cannot compare two properties).

Each part costs at least two requests (the cursor and its last page), so there are as few as the
selection allows: one query for every TTL class thanks to the due date, and none for email changes when
the app resets the verification as it changes the address — ``{"Clearout Verified At": {"$delete": 1}}``
in the same upload, which makes the profile ``never_verified``. An address changed with neither signal
is caught by the periodic FULL sweep (the whole segment, every ``full_sweep_days``), whose rows the
extract checks locally as before (:func:`clearout_provider.contacts.freshness_reasons`, which also finds
"email_changed"). So is a profile the delta cannot see: verified before the load wrote due dates (or by
another tool), or under a TTL that has since been shortened. It waits at most until that sweep; none is
lost, and the local check applies tonight's TTLs to every row the delta brings.

A large part is split further by date ranges of a profile date property (:func:`by_date_ranges`), so
one segment is exported as several cursors at once within CleverTap's concurrency limit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

#: How a night selects: the delta queries, or the whole segment (the periodic sweep).
Mode = Literal["delta", "full"]
MODES: tuple[Mode, ...] = ("delta", "full")


@dataclass(frozen=True)
class Part:
    """One export cursor: a CQL query and the label the report counts it under."""

    label: str
    query: dict[str, Any]


def _date(moment: datetime) -> str:
    """A CQL date value (``$D_<epoch seconds>``) for a date-property comparison, rounded up: CleverTap
    dates are whole seconds, so ``at < ceil(moment)`` is the local check's ``at < moment``."""
    return f"$D_{math.ceil(moment.timestamp())}"


def _yyyymmdd(moment: datetime) -> int:
    return int(moment.astimezone(UTC).strftime("%Y%m%d"))


def with_fields(query: Mapping[str, Any], *fields: Mapping[str, Any], first: bool = True) -> dict[str, Any]:
    """``query`` AND the profile-field conditions ``fields`` (the query is copied, never changed).

    AND does not care about order, but a server that stops at the first failing condition (the sandbox
    does) rejects a fresh profile on its verification date at once: the delta's conditions go ``first``,
    a partition's after them.
    """
    combined = copy.deepcopy(dict(query))
    common = combined.setdefault("common_profile_properties", {})
    before, after = ([*map(dict, fields)], []) if first else ([], [*map(dict, fields)])
    common["profile_fields"] = [*before, *common.get("profile_fields", []), *after]
    return combined


def delta_parts(
    segment: Mapping[str, Any],
    *,
    verified_at: str,
    due_at: str,
    now: datetime,
    email_change_event: str | None = None,
    since: datetime | None = None,
) -> list[Part]:
    """The parts of ``segment`` whose verification can be due at ``now`` (see the module doc).

    ``verified_at`` and ``due_at`` are the CleverTap property names of the verification date and the due
    date. ``email_change_event`` adds the profiles that raised that event from ``since`` (the last delta
    night; today when None) to today — only when the segment has no event filter of its own (CQL allows
    one event per query). Parts may overlap (a profile with a due date but no verification date): the
    merge keeps each profile once.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    parts = [
        Part("never_verified", with_fields(segment, {"name": verified_at, "operator": "does_not_exist"})),
        Part("due", with_fields(segment, {"name": due_at, "operator": "less_than", "value": _date(now)})),
    ]
    if email_change_event and "event_name" not in segment:
        start = min(since or now, now)
        event = {"event_name": email_change_event, "from": _yyyymmdd(start), "to": _yyyymmdd(now)}
        parts.append(Part("email_change_event", {**copy.deepcopy(dict(segment)), **event}))
    return parts


def by_date_ranges(
    parts: Sequence[Part], prop: str, *, start: datetime, end: datetime, count: int
) -> list[Part]:
    """Each part split into ``count`` disjoint ranges of date property ``prop`` — plus one part for the
    profiles without it — covering every value: the first range is open below ``start``, the last open
    above ``end``. ``count`` <= 1 returns the parts unchanged.

    The ranges are equal in time, not in profiles: pick a property spread over the base (a sign-up date).
    A profile whose ``prop`` holds something that is not a date matches no range: use a date property.
    """
    if count <= 1:
        return list(parts)
    if not start < end:
        raise ValueError(f"date ranges need start < end, got {start} and {end}")
    step = (end - start) / count
    bounds = [_date(start + step * i) for i in range(1, count)]
    split: list[Part] = []
    for part in parts:
        split.append(
            Part(
                f"{part.label}/no {prop}",
                with_fields(part.query, {"name": prop, "operator": "does_not_exist"}, first=False),
            )
        )
        for i in range(count):
            conditions: list[dict[str, Any]] = []
            if i > 0:
                conditions.append({"name": prop, "operator": "greater_than_equals", "value": bounds[i - 1]})
            if i < count - 1:
                conditions.append({"name": prop, "operator": "less_than", "value": bounds[i]})
            split.append(
                Part(
                    f"{part.label}/{prop} {i + 1} of {count}",
                    with_fields(part.query, *conditions, first=False),
                )
            )
    return split


def choose_mode(
    requested: Literal["auto", "delta", "full"],
    last_full: datetime | None,
    now: datetime,
    full_sweep_days: float,
) -> Mode:
    """The mode of tonight's run: as requested, or in ``auto`` a full sweep when none ran in the last
    ``full_sweep_days`` (or ever), else the delta."""
    if requested in MODES:
        return requested
    if requested != "auto":
        raise ValueError(f"mode must be 'auto', 'delta' or 'full', not {requested!r}")
    if last_full is None or now - last_full >= timedelta(days=full_sweep_days):
        return "full"
    return "delta"


class SelectionHistory:
    """When an extract's last successful night and last full sweep selected (two watermarks in the data
    dir, :class:`~clearout_provider.watermark.Watermark`), keyed by ``<dag_id>.<task_id>``.

    Recorded by the run's LAST step (:func:`clearout_provider.report.finish_run`), never by the extract
    itself: a night that fails after a full sweep leaves the sweep due, so whatever it found (an
    address changed without an event) is found again the next night instead of waiting a week.
    """

    def __init__(self, key: str, workdir: str | None = None) -> None:
        from clearout_provider.watermark import Watermark

        self.key = key
        self._last_run = Watermark(f"{key}.last-night", workdir)
        self._last_full = Watermark(f"{key}.full-sweep", workdir)

    def last_night(self) -> datetime | None:
        """When the last successful night selected (the start of the next email-change window)."""
        return self._last_run.read()

    def last_full_sweep(self) -> datetime | None:
        """When the last successful full sweep selected, or None before the first."""
        return self._last_full.read()

    def record(self, mode: Mode, selected_at: datetime) -> None:
        """A night that selected at ``selected_at`` in ``mode`` succeeded."""
        self._last_run.advance(selected_at)
        if mode == "full":
            self._last_full.advance(selected_at)
