"""The trend's chart data: which runs are drawn, in what order, and where each value lands."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from clearout_provider.ui import trend
from clearout_provider.ui.facts import ReportFacts
from clearout_provider.ui.trend import nice_ceiling, trend_charts, trend_runs

DAY = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
PLOT_BOTTOM, PLOT_TOP = trend.HEIGHT - trend.BOTTOM, trend.TOP


def run(night: int, **changes: Any) -> ReportFacts:
    base = ReportFacts(
        dag_id="nightly",
        run_id=f"scheduled__{night}",
        mode="bulk",
        verifier="clearout",
        dry_run=False,
        verified=100,
        credits_spent=80,
        unsubscribed=5,
        statuses={"valid": 70, "invalid": 20, "unknown": 10},
        adds_up=True,
        written_at=DAY + timedelta(days=night),
        folder=ObjectStoragePath("file:///nowhere"),
    )
    return replace(base, **changes)


def test_runs_oldest_first_without_dry_runs_newest_kept() -> None:
    runs = [run(3), run(1), run(2, dry_run=True), run(0, written_at=None), run(4)]
    assert [r.run_id for r in trend_runs(runs)] == [
        "scheduled__0",
        "scheduled__1",
        "scheduled__3",
        "scheduled__4",
    ]
    many = [run(n) for n in range(40)]
    kept = trend_runs(many, limit=30)
    assert len(kept) == 30 and kept[0].run_id == "scheduled__10" and kept[-1].run_id == "scheduled__39"


@pytest.mark.parametrize(
    ("value", "top"), [(0, 2), (1, 2), (2, 2), (3, 4), (5, 10), (10, 10), (11, 20), (399, 400), (401, 1000)]
)
def test_axis_top_is_round_and_covers_the_value(value: float, top: float) -> None:
    assert nice_ceiling(value) == top


def test_credit_bars_scale_to_the_largest_and_a_missing_measure_draws_nothing() -> None:
    runs = [run(0, credits_spent=40), run(1, credits_spent=None), run(2, credits_spent=100)]
    credits, shares, unsubscribed = trend_charts(runs)
    assert (credits.kind, shares.kind, unsubscribed.kind) == ("bars", "lines", "bars")
    marks = credits.series[0].marks
    assert [m.value for m in marks] == [40, None, 100]
    assert "not measured" in marks[1].text and "scheduled__1" in marks[1].text
    top = nice_ceiling(100)  # 100 -> an axis to 100
    assert marks[2].height == pytest.approx((PLOT_BOTTOM - PLOT_TOP) * 100 / top)
    assert marks[0].height == pytest.approx(marks[2].height * 0.4)
    assert marks[0].y + marks[0].height == pytest.approx(PLOT_BOTTOM)  # bars stand on the axis
    assert marks[0].x < marks[1].x < marks[2].x  # oldest on the left
    assert [t.text for t in credits.y_ticks] == ["0", "50", "100"]


def test_share_lines_are_per_run_percentages() -> None:
    runs = [
        run(0, statuses={"invalid": 30, "unknown": 10, "valid": 60}),
        run(1, verified=50, statuses={"undeliverable": 5, "unknown": 5, "deliverable": 40}),
    ]
    _, shares, _ = trend_charts(runs)
    invalid, unknown = shares.series
    assert (invalid.name, unknown.name) == ("invalid", "unknown")
    assert [m.value for m in invalid.marks] == pytest.approx([0.3, 0.1])
    assert [m.value for m in unknown.marks] == pytest.approx([0.1, 0.1])
    assert [t.text for t in shares.y_ticks] == ["0%", "20%", "40%"]  # 30% -> an axis to 40%
    assert invalid.marks[0].y == pytest.approx(PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * 0.3 / 0.4)
    assert invalid.points.count(",") == 2


def test_unsubscribes_and_dates_on_the_run_axis() -> None:
    runs = [run(n, unsubscribed=n) for n in range(3)]
    *_, unsubscribed = trend_charts(runs)
    assert [m.value for m in unsubscribed.series[0].marks] == [0, 1, 2]
    assert [t.text for t in unsubscribed.x_ticks] == ["03-01", "03-02", "03-03"]
    crowded = trend_charts([run(n) for n in range(30)])[0]
    assert 1 < len(crowded.x_ticks) <= 10


def test_a_run_that_verified_nothing_has_no_share_and_no_runs_no_chart() -> None:
    _, shares, _ = trend_charts([run(0, verified=0, statuses={})])
    assert [m.value for s in shares.series for m in s.marks] == [0.0, 0.0]
    assert trend_charts([]) == []


def test_runs_sharing_a_day_are_told_apart_by_their_time() -> None:
    same_day = [run(0), run(0, run_id="manual__again", written_at=DAY + timedelta(hours=3))]
    assert [t.text for t in trend_charts(same_day)[0].x_ticks] == ["03-01 02:00", "03-01 05:00"]
