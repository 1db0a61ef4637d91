"""The trend across runs, as charts ready to draw: every coordinate is computed here, the template
(``templates/runs.html``) only writes the SVG elements.

Three charts over the last runs, oldest first, one slot per run: the credits each run spent, the share
of its verified rows that were invalid and unknown, and the profiles it unsubscribed. Dry runs are left
out (they spend nothing and write nothing). For the nightly DAG one run is one night.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from clearout_provider.ui.facts import ReportFacts

#: Most runs one chart shows (the newest).
MAX_RUNS = 30
WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 40  # margins around the plot area
_MAX_BAR = 40.0
_MAX_X_LABELS = 10

_BLUE, _RED, _GREY, _AMBER = "#3b6fd4", "#d64545", "#8a94a6", "#e0a030"


@dataclass(frozen=True)
class Mark:
    """One run's value in one series: a bar (``x``, ``y`` top-left, ``width``, ``height``) or a line
    point (``x``, ``y`` its centre). ``value`` None: nothing to draw (not measured); ``text`` says so."""

    x: float
    y: float
    width: float
    height: float
    value: float | None
    text: str


@dataclass(frozen=True)
class Series:
    """One named quantity across the runs; ``points`` is the SVG polyline of a line series."""

    name: str
    colour: str
    marks: tuple[Mark, ...]

    @property
    def points(self) -> str:
        return " ".join(f"{m.x:.1f},{m.y:.1f}" for m in self.marks if m.value is not None)


@dataclass(frozen=True)
class Tick:
    """An axis label at ``at`` (y for the value axis, x for the run axis)."""

    at: float
    text: str


@dataclass(frozen=True)
class Chart:
    """A titled chart: ``kind`` "bars" or "lines", its series, and both axes' labels."""

    title: str
    kind: str
    series: tuple[Series, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def trend_runs(runs: Sequence[ReportFacts], limit: int = MAX_RUNS) -> list[ReportFacts]:
    """The runs the trend draws: not dry runs, oldest first (undated ones first), the newest ``limit``."""
    real = [r for r in runs if not r.dry_run]
    real.sort(key=lambda r: (r.written_at is not None, r.written_at or datetime.min, r.run_id))
    return real[-limit:]


def nice_ceiling(value: float) -> float:
    """The axis top for ``value``: 2, 4 or 10 times a power of ten (so that its half is a round
    number too), never below 2."""
    if value <= 2:
        return 2.0
    power = 10.0 ** (math.floor(math.log10(value)) - 1)
    return next(round(step * power, 6) for step in (2, 4, 10, 20, 40, 100) if step * power >= value)


def _slots(count: int) -> tuple[float, float]:
    """Left edge of the first run's slot and the width of one slot."""
    return float(LEFT), (WIDTH - LEFT - RIGHT) / max(count, 1)


def _x_ticks(runs: Sequence[ReportFacts]) -> tuple[Tick, ...]:
    """Each run's date under its slot (with the time when two runs share a day), thinned to fit."""
    start, slot = _slots(len(runs))
    every = max(1, math.ceil(len(runs) / _MAX_X_LABELS))
    days = [r.written_at.date() for r in runs if r.written_at]
    form = "%m-%d" if len(days) == len(set(days)) else "%m-%d %H:%M"
    return tuple(
        Tick(start + (i + 0.5) * slot, r.written_at.strftime(form) if r.written_at else "?")
        for i, r in enumerate(runs)
        if i % every == 0
    )


def _y_ticks(top: float, fmt: Callable[[float], str]) -> tuple[Tick, ...]:
    bottom, height = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    return tuple(Tick(bottom - share * height, fmt(top * share)) for share in (0.0, 0.5, 1.0))


def _y(value: float, top: float) -> float:
    return (HEIGHT - BOTTOM) - value / top * (HEIGHT - BOTTOM - TOP)


def _bars(
    title: str, name: str, colour: str, values: Sequence[int | None], runs: Sequence[ReportFacts]
) -> Chart:
    top = nice_ceiling(max((v for v in values if v is not None), default=0))
    start, slot = _slots(len(values))
    width = min(slot * 0.7, _MAX_BAR)
    marks = []
    for i, value in enumerate(values):
        x = start + (i + 0.5) * slot - width / 2
        y = _y(value or 0, top)
        text = f"{_label(runs[i])}: " + (f"{value:,}" if value is not None else "not measured")
        marks.append(Mark(x, y, width, (HEIGHT - BOTTOM) - y, value, text))
    return Chart(
        title,
        "bars",
        (Series(name, colour, tuple(marks)),),
        _y_ticks(top, lambda v: f"{v:,.0f}"),
        _x_ticks(runs),
    )


def _label(run: ReportFacts) -> str:
    when = run.written_at.strftime("%Y-%m-%d %H:%M") if run.written_at else "date unknown"
    return f"{run.dag_id} / {run.run_id} ({when})"


def _shares(runs: Sequence[ReportFacts]) -> Chart:
    lines = (
        ("invalid", _RED, [r.invalid_share for r in runs]),
        ("unknown", _GREY, [r.unknown_share for r in runs]),
    )
    top = nice_ceiling(100 * max((s for _, _, shares in lines for s in shares), default=0)) / 100
    start, slot = _slots(len(runs))
    series = tuple(
        Series(
            name,
            colour,
            tuple(
                Mark(
                    start + (i + 0.5) * slot,
                    _y(share, top),
                    0.0,
                    0.0,
                    share,
                    f"{_label(runs[i])}: {share:.1%} {name}",
                )
                for i, share in enumerate(shares)
            ),
        )
        for name, colour, shares in lines
    )
    return Chart(
        "Share of verified rows: invalid and unknown",
        "lines",
        series,
        _y_ticks(top, lambda v: f"{v:.0%}"),
        _x_ticks(runs),
    )


def trend_charts(runs: Sequence[ReportFacts]) -> list[Chart]:
    """The three trend charts of ``runs`` (as chosen by :func:`trend_runs`); none without a run."""
    if not runs:
        return []
    return [
        _bars("Credits spent per run", "credits spent", _BLUE, [r.credits_spent for r in runs], runs),
        _shares(runs),
        _bars("Profiles unsubscribed per run", "unsubscribed", _AMBER, [r.unsubscribed for r in runs], runs),
    ]
