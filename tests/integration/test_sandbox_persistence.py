"""The Clearout sandbox's account survives a restart of its process when it has a ``state_dir``.

Over real loopback HTTP through :class:`SandboxProcess`: a graceful restart and a SIGKILL keep bulk lists
(with their progress, which goes on from where it stood: the time the sandbox was down does not count),
credits (each row charged exactly once in total), the daily limit, the finder queue, the counters and the
URL-signing key; a torn or unreadable state file stops the start-up with a message naming it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_sandbox_clearout import FINDER, VERIFY, Clearout, csv_bytes, data_of, emails_csv, failure

from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clearout_verdicts import verdict_for

#: Rows a second in the restart tests: slow enough to stop a list part-way, fast enough to finish it.
RATE = 400


def _persistent(tmp_path: Path, **overrides: Any) -> SandboxSettings:
    return SandboxSettings(state_dir=str(tmp_path / "state"), **overrides)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[SandboxProcess]]:
    """Servers a test starts (stopped afterwards, whatever happened)."""
    servers: list[SandboxProcess] = []
    yield servers
    for server in servers:
        server.stop()


def _start(started: list[SandboxProcess], settings: SandboxSettings, tmp_path: Path) -> SandboxProcess:
    server = SandboxProcess(settings, log_path=tmp_path / "sandbox.log")
    started.append(server)
    return server.start()


def _list_info(co: Clearout, list_id: str) -> dict[str, Any]:
    return co.stats()["lists"][list_id]


def _wait_processed(
    co: Clearout, list_id: str, rows: int, timeout: float = 120
) -> tuple[dict[str, Any], float]:
    """Poll the stats until the list has processed ``rows`` rows (never a fixed sleep); the list's info and
    the monotonic time just before the answering request was sent."""
    deadline = time.monotonic() + timeout
    while True:
        asked_at = time.monotonic()
        info = _list_info(co, list_id)
        if info["processed"] >= rows:
            return info, asked_at
        assert asked_at < deadline, f"list {list_id} stuck at {info}"
        time.sleep(0.05)


def _billable(emails: list[str]) -> int:
    return sum(verdict_for(email).billable for email in emails)


def test_restart_mid_list_goes_on_from_where_it_stood_and_charges_each_row_once(
    started: list[SandboxProcess], tmp_path: Path
) -> None:
    emails = [f"buyer{i}@shop{i % 50}.net" for i in range(4_000)]
    instant = "first.buyer@shop.net"
    assert verdict_for(instant).billable and 1_000 < _billable(emails) < 4_000
    server = _start(started, _persistent(tmp_path, credits=10_000, bulk_rate=RATE,
                                         daily_verify_limit=100_000), tmp_path)  # fmt: skip
    co = Clearout(server)
    co.instant(instant)
    list_id = co.list_of(VERIFY, "resume.csv", emails_csv(emails))
    before, checked_at = _wait_processed(co, list_id, 1_600)  # 40 %
    limit_before = data_of(co.get("/email_verify/getcredits"))["credits"]["available_daily_verify_limit"]
    assert limit_before == 100_000 - 4_001

    server.stop()
    stopped_at = time.monotonic()
    time.sleep(3)  # the sandbox is down: this time must not count as processing time
    restarted_at = time.monotonic()
    server.start()
    after = _list_info(co, list_id)
    seen_at = time.monotonic()

    assert after["status"] == "running" and after["processed"] >= before["processed"], "not from 0"
    alive = (stopped_at - checked_at) + (seen_at - restarted_at)
    assert after["processed"] <= before["processed"] + RATE * alive + 2, "the downtime was counted"
    assert after["charged"] >= before["charged"]
    credits = data_of(co.get("/email_verify/getcredits"))["credits"]
    assert credits["available_daily_verify_limit"] == limit_before
    assert co.wait(VERIFY, list_id, timeout=120)["progress_status"] == "completed"
    stats = co.stats()
    assert stats["lists"][list_id]["charged"] == _billable(emails)
    assert stats["credits_used"] == _billable(emails) + 1
    assert data_of(co.get("/email_verify/getcredits"))["available_credits"] == 10_000 - _billable(emails) - 1
    assert (stats["bulk_uploads"], stats["instant_calls"]) == (1, 1)
    header, *rows = co.result(VERIFY, list_id)
    reason = header.index("Clearout Reason")
    assert len(rows) == 4_000 and not any(row[reason] == "Request Cancelled" for row in rows)


def _account_snapshot(co: Clearout) -> tuple[dict[str, Any], dict[str, Any]]:
    return co.stats(), data_of(co.get("/email_verify/getcredits"))


def test_sigkill_restart_keeps_lists_credits_limits_queue_counters_and_urls(
    started: list[SandboxProcess], tmp_path: Path
) -> None:
    settings = _persistent(tmp_path, credits=50_000, bulk_rate=RATE, daily_verify_limit=100_000,
                           time_scale=0.01, finder_search_ms=15_000)  # fmt: skip
    server = _start(started, settings, tmp_path)
    co = Clearout(server)
    done = co.list_of(VERIFY, "done.csv", emails_csv(["valid@example.com", "a@corp.com", "b@corp.com"]))
    co.wait(VERIFY, done)
    url = co.result_url(VERIFY, done)
    cancelled = co.list_of(VERIFY, "cancelled.csv", emails_csv([f"c{i}@cancel{i}.com" for i in range(4_000)]))
    _wait_processed(co, cancelled, 100)
    assert data_of(co.post("/email_verify/list/cancel", {"list_id": cancelled}))["list_id"] == cancelled
    people = csv_bytes(["Name", "Domain"], [[f"Person {i} Lee", f"firm{i}.com"] for i in range(8_000)])
    running = co.list_of(FINDER, "people.csv", people)
    queued = failure(co.post("/email_finder/instant", {"name": "Steven Morris", "domain": "apple.com",
                                                       "timeout": 10_000}), 524, None)  # fmt: skip
    queue_id = queued["additional_info"]["queue_id"]
    co.instant("x@corp.com")
    co.instant("y@corp.com")
    stats, credits = _account_snapshot(co)

    server.restart(kill=True)

    stats_after, credits_after = _account_snapshot(co)
    for list_id in (done, cancelled):
        assert stats_after["lists"][list_id] == stats["lists"][list_id]
    was, now = stats["lists"][running], stats_after["lists"][running]
    assert (
        now["status"] == "running"
        and now["processed"] >= was["processed"]
        and now["charged"] >= was["charged"]
    )
    assert stats_after["credits_used"] - stats["credits_used"] == now["charged"] - was["charged"]
    for counter in ("bulk_uploads", "finder_uploads", "instant_calls", "rate_limited"):
        assert stats_after[counter] == stats[counter], counter
    assert (
        credits_after["credits"]["available_daily_verify_limit"]
        == credits["credits"]["available_daily_verify_limit"]
    )
    status = data_of(co.get("/email_finder/instant/queue_status", qid=queue_id))
    assert status["query_status"] == "completed" and status["emails"]
    assert requests.get(url, timeout=60).status_code == 200, "URLs handed out before the restart still work"
    header, *rows = co.result(VERIFY, cancelled)
    status_col, reason = header.index("Clearout Verification Status"), header.index("Clearout Reason")
    processed = stats["lists"][cancelled]["processed"]
    assert all((r[status_col], r[reason]) == ("Unknown", "Request Cancelled") for r in rows[processed:])
    assert not any(r[reason] == "Request Cancelled" for r in rows[:processed])
    state = tmp_path / "state" / "clearout"
    assert not list(state.rglob("*.tmp"))
    for record in state.rglob("*.json"):
        json.loads(record.read_text())


def _hammer(co: Clearout, list_id: str, stop: threading.Event, answered: list[int]) -> None:
    """Instant calls and progress polls (each a state write) until ``stop`` or the server dies; counts
    the instant calls answered 200 in ``answered``."""
    while not stop.is_set():
        try:
            response = co.post("/email_verify/instant", {"email": "hammer@corp.com"})
            answered.append(response.status_code == 200)
            co.get("/email_verify/bulk/progress_status", list_id=list_id)
        except requests.ConnectionError:
            return


def test_sigkill_under_a_stream_of_changes_never_leaves_a_torn_state_file(
    started: list[SandboxProcess], tmp_path: Path
) -> None:
    server = _start(started, _persistent(tmp_path, rpm=100_000, bulk_rate=RATE), tmp_path)
    co = Clearout(server)
    list_id = co.list_of(VERIFY, "busy.csv", emails_csv([f"u{i}@busy{i}.com" for i in range(40_000)]))
    answered = 0
    for kill_after in (0.3, 0.7, 1.1):
        stop, counts = threading.Event(), []
        threads = [threading.Thread(target=_hammer, args=(co, list_id, stop, counts)) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(kill_after)  # let the stream of writes run before the kill lands somewhere inside it
        server.stop(kill=True)
        stop.set()
        for thread in threads:
            thread.join()
        answered += sum(counts)
        server.start()  # a torn file would stop this start
        persisted = co.stats()["instant_calls"]
        assert answered <= persisted <= answered + len(threads), "every answered call is on disk"
        answered = persisted
    assert _list_info(co, list_id)["status"] == "running"


def test_unreadable_state_is_reported_at_start_up(started: list[SandboxProcess], tmp_path: Path) -> None:
    settings = _persistent(tmp_path)
    server = _start(started, settings, tmp_path)
    co = Clearout(server)
    list_id = co.list_of(VERIFY, "one.csv", emails_csv(["valid@example.com"]))
    co.instant("z@corp.com")
    server.stop()
    state = tmp_path / "state" / "clearout"
    leftover = state / ".account.json.12345.tmp"
    leftover.write_text('{"instant_used": 12')  # what a kill in the middle of a write leaves
    server.start()
    assert not leftover.exists() and co.stats()["instant_calls"] == 1, "a temporary file is never read"
    server.stop()

    record = state / "lists" / f"{list_id}.json"
    record.write_text(record.read_text()[:40])
    with pytest.raises(RuntimeError) as info:
        server.start()
    message = str(info.value)
    assert "exited with code 2" in message and f"unreadable sandbox state file {record}" in message
    assert "Traceback" not in message

    record.unlink()
    (state / "account.json").write_text('{"instant_used": "many"}')
    with pytest.raises(RuntimeError, match="account.json: not an account record"):
        server.start()
