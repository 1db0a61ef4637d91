"""The rate limiter's arithmetic, on a simulated clock against a simulated fixed-window server.

The simulation has what hurts a limiter in real life: many concurrent callers, random network delay
in both directions, answers arriving out of order, and answers without headers. It runs in
milliseconds because the clock is simulated; the integration tests repeat the claim over real HTTP.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest

from clearout_provider.hooks.rate_limit import (
    DEFAULT_VERIFY_RPM,
    RATE_WINDOW_SECONDS,
    RateLimitBucket,
    bounded_reset,
    parse_rate_headers,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": f"{reset:.3f}",
    }


def test_headers_parse_case_insensitively_with_float_or_int_reset() -> None:
    info = parse_rate_headers(
        {"X-RateLimit-Limit": "20", "X-RATELIMIT-REMAINING": "3", "x-ratelimit-reset": "1.234"}
    )
    assert (info.limit, info.remaining, info.reset, info.complete) == (20, 3, 1.234, True)
    assert parse_rate_headers({"x-ratelimit-reset": "60"}).reset == 60.0
    partial = parse_rate_headers({"x-ratelimit-limit": "abc", "x-ratelimit-reset": "5"})
    assert partial.limit is None and not partial.complete
    assert not parse_rate_headers(None).complete


def test_before_any_headers_the_configured_rpm_goes_at_once_not_one_by_one() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", initial_limit=8, clock=clock)
    assert [bucket.try_acquire() for _ in range(8)] == [0.0] * 8  # 8 concurrent calls, none waits
    assert bucket.try_acquire() == pytest.approx(0.01)  # answers pending: they may teach the quota
    bucket.release(headers(20, 11, 60.0))
    assert sum(bucket.try_acquire() == 0.0 for _ in range(20)) == 11 - 7  # headers win once they come


def test_the_default_quota_is_the_lowest_plan() -> None:
    bucket = RateLimitBucket("verify", clock=Clock())
    assert DEFAULT_VERIFY_RPM == 10
    assert sum(bucket.try_acquire() == 0.0 for _ in range(20)) == 10
    with pytest.raises(ValueError):
        RateLimitBucket("verify", initial_limit=0)


def test_without_headers_the_configured_quota_is_a_sliding_window() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", initial_limit=3, window=60.0, safety_margin=0.05, clock=clock)
    for _ in range(3):
        assert bucket.try_acquire() == 0.0
    clock.now = 10.0
    for _ in range(3):
        bucket.release(None)  # answered, but without headers: the quota stays the configured one
    wait = bucket.try_acquire()
    assert 50.0 < wait <= 60.0 + 0.05 + 1.0  # until the first send leaves the window (plus slack)
    clock.now += wait
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() > 0.0


def test_a_failed_first_request_lets_the_next_one_learn() -> None:
    bucket = RateLimitBucket("verify", initial_limit=1, clock=Clock())
    assert bucket.try_acquire() == 0.0
    bucket.release(None)  # 503 without headers
    assert bucket.try_acquire() > 0.0  # the configured quota is spent either way
    bucket.release(headers(5, 4, 30.0))  # ... until an answer says what is left
    assert bucket.try_acquire() == 0.0


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("12.5", 12.5),
        ("3600", RATE_WINDOW_SECONDS),  # an hour: bounded by the window
        ("-4", 0.0),
        ("1700000030", 30.0),  # a Unix time 30 s after wall_now
        ("1700000000000", RATE_WINDOW_SECONDS),  # milliseconds since the epoch: far future, bounded
        ("1699990000", 0.0),  # a time already past
        ("nan", None),
        ("inf", None),
        ("soon", None),
    ],
)
def test_reset_values_are_bounded_and_epochs_are_times(reset: str, expected: float | None) -> None:
    info = parse_rate_headers({"x-ratelimit-reset": reset}, wall_now=1_700_000_000.0)
    assert info.reset == (pytest.approx(expected) if expected is not None else None)
    assert bounded_reset(1e18) == RATE_WINDOW_SECONDS


def test_an_epoch_reset_makes_the_bucket_wait_until_that_time_at_most_one_window() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", safety_margin=0.0, clock=clock, wall_clock=lambda: 1_700_000_000.0)
    bucket.try_acquire()
    bucket.release(headers(5, 0, 1_700_000_020.0))
    assert bucket.try_acquire() == pytest.approx(20.0)
    bucket = RateLimitBucket("verify", safety_margin=0.0, clock=clock, wall_clock=lambda: 1_700_000_000.0)
    bucket.try_acquire()
    bucket.release(headers(5, 0, 1_800_000_000.0))  # three years ahead: a clock skew or a bug
    assert bucket.try_acquire() == pytest.approx(RATE_WINDOW_SECONDS)


@pytest.mark.parametrize(
    "hostile",
    [
        {"x-ratelimit-limit": "0", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "60"},
        {"x-ratelimit-limit": "-5", "x-ratelimit-remaining": "-5", "x-ratelimit-reset": "60"},
        {"x-ratelimit-limit": "inf", "x-ratelimit-remaining": "inf", "x-ratelimit-reset": "60"},
        {"x-ratelimit-limit": "1e30", "x-ratelimit-remaining": "nan", "x-ratelimit-reset": "60"},
    ],
)
def test_hostile_headers_are_ignored_rather_than_stalling_callers(hostile: dict[str, str]) -> None:
    assert not parse_rate_headers(hostile).complete
    bucket = RateLimitBucket("verify", initial_limit=2, clock=Clock())
    bucket.try_acquire()
    bucket.release(hostile)
    assert bucket.try_acquire() == 0.0  # still the configured quota, not a quota of zero


def test_used_quota_waits_until_window_end_plus_margin() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", safety_margin=0.05, clock=clock)
    bucket.try_acquire()
    bucket.release(headers(3, 2, 10.0))
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == 0.0
    bucket.release(headers(3, 1, 10.0))
    bucket.release(headers(3, 0, 10.0))
    clock.now = 4.0
    assert bucket.try_acquire() == pytest.approx(10.05 - 4.0)
    clock.now = 10.05
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() > 0.0


def test_in_flight_requests_count_against_remaining() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", poll_interval=0.01, clock=clock)
    bucket.try_acquire()
    bucket.release(headers(10, 5, 30.0))
    taken = [bucket.try_acquire() for _ in range(6)]
    assert taken[:5] == [0.0] * 5
    assert taken[5] == pytest.approx(0.01)  # quota held by answers still pending: poll, don't sleep to reset


def test_out_of_order_answer_cannot_raise_remaining() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", clock=clock)
    bucket.try_acquire()
    bucket.release(headers(10, 9, 30.0))
    for _ in range(3):
        bucket.try_acquire()
    bucket.release(headers(10, 6, 29.9))  # the latest request's answer arrives first
    bucket.release(headers(10, 8, 29.8))  # an older, more optimistic answer arrives late
    bucket.release(headers(10, 7, 29.7))
    assert sum(bucket.try_acquire() == 0.0 for _ in range(10)) == 6


def test_answer_without_headers_is_assumed_to_have_used_a_request() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", clock=clock)
    bucket.try_acquire()
    bucket.release(headers(10, 2, 30.0))
    bucket.try_acquire()
    bucket.release(None)
    assert sum(bucket.try_acquire() == 0.0 for _ in range(5)) == 1


def test_late_answer_from_a_finished_window_does_not_shrink_the_next() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", safety_margin=0.0, clock=clock)
    bucket.try_acquire()
    bucket.release(headers(4, 3, 10.0))
    for _ in range(3):
        assert bucket.try_acquire() == 0.0
    bucket.release(headers(4, 0, 9.0))
    bucket.release(headers(4, 1, 9.0))
    clock.now = 10.0
    assert bucket.try_acquire() == 0.0  # new window; one old request still in flight
    bucket.release(headers(4, 2, 0.001))  # the old window's straggler
    assert sum(bucket.try_acquire() == 0.0 for _ in range(5)) == 3


def test_answer_showing_an_unused_quota_means_no_window_is_open() -> None:
    clock = Clock()
    bucket = RateLimitBucket("verify", safety_margin=0.0, clock=clock)
    bucket.try_acquire()
    bucket.release(headers(3, 2, 2.0))
    for _ in range(2):
        bucket.try_acquire()
    clock.now = 1.0
    bucket.release(headers(3, 0, 1.0))
    clock.now = 5.0  # a slow answer: its window closed meanwhile and the server reports a fresh quota
    bucket.release(headers(3, 3, 2.0))
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now = 5.1
    bucket.release(headers(3, 2, 1.95))  # the next window, opened by those requests
    assert bucket.try_acquire() > 0.0


async def test_async_acquire_waits_without_blocking_the_loop() -> None:
    bucket = RateLimitBucket("verify", initial_limit=1, poll_interval=0.005)
    await bucket.aacquire()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    waiter = asyncio.create_task(bucket.aacquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    bucket.release(headers(5, 4, 60.0))
    await asyncio.wait_for(waiter, 1.0)
    task.cancel()
    assert ticks > 10


# ------------------------------------------------------------------------------- simulation


@dataclass
class FixedWindowServer:
    """Clearout's limiter: a window of ``window`` s opened by the first request, ``limit`` requests in it."""

    limit: int
    window: float
    start: float | None = None
    count: int = 0
    rejected: int = 0
    accepted: list[float] = field(default_factory=list)

    def arrive(self, t: float) -> dict[str, str]:
        if self.start is None or t >= self.start + self.window:
            self.start, self.count = t, 0
        self.count += 1
        if self.count > self.limit:
            self.rejected += 1
        else:
            self.accepted.append(t)
        return headers(self.limit, max(0, self.limit - self.count), self.start + self.window - t)


def simulate(
    *,
    limit: int,
    window: float,
    total: int,
    workers: int,
    seed: int,
    fault_rate: float = 0.0,
    initial_limit: int = DEFAULT_VERIFY_RPM,
) -> tuple[FixedWindowServer, float]:
    """Run ``total`` requests from ``workers`` concurrent callers; return the server and the finish time."""
    rng = random.Random(seed)
    clock = Clock()
    bucket = RateLimitBucket(
        "verify", initial_limit=initial_limit, safety_margin=0.05, poll_interval=0.01, clock=clock
    )
    server = FixedWindowServer(limit, window)
    events: list[tuple[float, int, str, dict[str, str] | None]] = []
    order = itertools.count()
    for _ in range(workers):
        heapq.heappush(events, (0.0, next(order), "try", None))
    todo, done = total, 0
    while events:
        clock.now, _, kind, answer = heapq.heappop(events)
        if kind == "try":
            if todo == 0:
                continue
            wait = bucket.try_acquire()
            if wait > 0:
                heapq.heappush(events, (clock.now + wait, next(order), "try", None))
                continue
            todo -= 1
            arrival = clock.now + rng.uniform(0.001, 0.030)
            sent_headers = server.arrive(arrival)
            if rng.random() < fault_rate:
                sent_headers = None  # e.g. a 503 from a proxy: counted by the server, no headers for us
            heapq.heappush(events, (arrival + rng.uniform(0.0, 0.200), next(order), "answer", sent_headers))
        else:
            bucket.release(answer)
            done += 1
            heapq.heappush(events, (clock.now, next(order), "try", None))
    assert done == total
    return server, clock.now


@pytest.mark.parametrize("seed", range(8))
def test_burst_of_three_times_the_quota_never_gets_429(seed: int) -> None:
    server, finished = simulate(limit=20, window=60.0, total=60, workers=16, seed=seed)
    assert server.rejected == 0
    # Three windows' worth: the last third can start right after the second window ends.
    assert finished < 2 * 60.0 + 1.0


@pytest.mark.parametrize("seed", range(4))
def test_throughput_is_at_least_95_percent_of_the_quota_in_short_windows(seed: int) -> None:
    server, _ = simulate(limit=20, window=2.0, total=200, workers=24, seed=seed)
    assert server.rejected == 0
    # Ten windows of 20: the last window opens nine windows after the first. At >= 95 % of the quota's
    # throughput, the nine window changes take at most 9 * 2 s / 0.95.
    span = server.accepted[-1] - server.accepted[0]
    assert span <= 9 * 2.0 / 0.95


@pytest.mark.parametrize("seed", range(4))
def test_answers_without_headers_never_cause_429(seed: int) -> None:
    server, _ = simulate(limit=10, window=1.0, total=100, workers=12, seed=seed, fault_rate=0.3)
    assert server.rejected == 0


@pytest.mark.parametrize("seed", range(4))
def test_a_server_that_never_sends_headers_gets_the_configured_rpm_without_429(seed: int) -> None:
    # Clearout's spec documents no rate headers: fault_rate=1.0 strips them from every answer.
    server, finished = simulate(limit=10, window=60.0, total=30, workers=8, seed=seed, fault_rate=1.0)
    assert server.rejected == 0
    # Three windows of 10: the third starts about two windows (plus the limiter's slack) after the first.
    assert finished < 2 * (60.0 + 0.05 + 1.0) + 1.0
    assert server.accepted[9] - server.accepted[0] < 0.1  # the first 10 went together, not one by one


@pytest.mark.parametrize("seed", range(2))
def test_a_configured_rpm_above_the_real_quota_is_corrected_by_the_first_headers(seed: int) -> None:
    server, _ = simulate(limit=20, window=2.0, total=100, workers=16, seed=seed, initial_limit=16)
    assert server.rejected == 0
