"""ClearoutBulkJobTrigger against live sandboxes: one event per outcome, cancel on kill and on deadline.

What it serialises and how it judges a progress status, without a server:
tests/unit/test_bulk_job_trigger.py.

Every test drives a real list on a sandbox over loopback HTTP; ``bulk_rate`` compresses or stretches the
time a list runs. The connection reaches the trigger only as ``AIRFLOW_CONN_CLEAROUT_DEFAULT``, as in a
real triggerer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clearout_provider.clearout.models import BulkProgress
from clearout_provider.clearout.verifier import ClearoutLists
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.triggers.bulk_job import (
    ClearoutBulkJobCancelled,
    ClearoutBulkJobFailed,
    ClearoutBulkJobTimedOut,
    ClearoutBulkJobTrigger,
    raise_for_event,
)

Factory = Callable[[SandboxSettings], SandboxProcess]
#: Rows per second of the shared sandbox: list sizes below set how long each list runs.
RATE = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox for the tests that only need lists of their own (each list is independent)."""
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with SandboxProcess(SandboxSettings(bulk_rate=RATE, max_bulk_lists=20), log_path=log) as running:
        yield running


def connect(monkeypatch: pytest.MonkeyPatch, server: SandboxProcess, token: str | None = None) -> None:
    conn = {
        "conn_type": "clearout",
        "host": server.clearout_url,
        "password": token or server.settings.clearout_token,
    }
    monkeypatch.setenv("AIRFLOW_CONN_CLEAROUT_DEFAULT", json.dumps(conn))


def upload(tmp_path: Path, rows: int, hook: ClearoutHook | None = None) -> str:
    path = (
        tmp_path / f"list-{uuid.uuid4().hex}.csv"
    )  # a fresh name: the shared sandbox remembers uploads (2043)
    path.write_text("Email\n" + "".join(f"user{i}@example.org\n" for i in range(rows)))
    return (hook or ClearoutHook()).upload_bulk_verify(path).list_id


def lists(server: SandboxProcess) -> dict[str, dict[str, object]]:
    return server.clearout_stats()["lists"]


async def first_event(trigger: ClearoutBulkJobTrigger) -> dict[str, object]:
    events = [e async for e in trigger.run()]
    assert len(events) == 1, events
    return events[0].payload


async def test_success_event_after_progress_is_logged_without_blocking_the_loop(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    connect(monkeypatch, server)
    list_id = upload(tmp_path, RATE * 3 // 2)  # 1.5 s of work
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.2  # the triggerer warns about blocking beyond this
    caplog.set_level(logging.INFO)
    await (
        ClearoutHook().aget_credits()
    )  # first async connection lookup imports modules: not the trigger's doing
    caplog.clear()
    started = time.monotonic()
    event = await first_event(
        ClearoutBulkJobTrigger(job_id=list_id, poll_interval=0.2, max_poll_interval=0.5)
    )
    assert event["status"] == "success" and event["list_id"] == list_id and event["percent"] == 100.0
    assert time.monotonic() - started < 5
    assert raise_for_event(event) is event
    percents = [r.getMessage() for r in caplog.records if "% done" in r.getMessage()]
    assert percents and all(list_id in m for m in percents)
    assert not [r for r in caplog.records if r.name == "asyncio" and "Executing" in r.getMessage()]


async def test_backoff_grows_from_poll_interval_to_the_cap(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(monkeypatch, server)
    list_id = upload(tmp_path, RATE)  # 1 s of work
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:  # the trigger's pauses, recorded but not waited out
        pauses.append(seconds)
        await real_sleep(0.01)

    monkeypatch.setattr("clearout_provider.triggers.bulk_job.asyncio.sleep", record)
    event = await first_event(ClearoutBulkJobTrigger(job_id=list_id, poll_interval=1, max_poll_interval=3))
    assert event["status"] == "success"
    assert pauses[:4] == [1.0, 1.5, 2.25, 3.0] and set(pauses[3:]) == {3.0}


async def test_cancelled_list_ends_with_a_cancelled_event(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(monkeypatch, server)
    list_id = upload(tmp_path, RATE * 20)

    async def cancel_soon() -> None:
        await asyncio.sleep(0.5)
        await ClearoutHook().acancel_list(list_id)

    canceller = asyncio.create_task(cancel_soon())
    event = await first_event(
        ClearoutBulkJobTrigger(job_id=list_id, poll_interval=0.2, max_poll_interval=0.2)
    )
    await canceller
    assert event["status"] == "cancelled" and 0 <= event["percent"] < 100
    with pytest.raises(ClearoutBulkJobCancelled, match=f"list {list_id} was cancelled") as info:
        raise_for_event(event)
    assert info.value.list_id == list_id


@pytest.mark.parametrize("cancel", [True, False])
async def test_deadline_yields_timeout_and_cancels_only_when_asked(
    cancel: bool, server: SandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(monkeypatch, server)
    list_id = upload(tmp_path, RATE * 20)
    started = time.monotonic()
    trigger = ClearoutBulkJobTrigger(
        job_id=list_id,
        poll_interval=0.3,
        max_poll_interval=5,
        deadline=time.time() + 1.0,
        cancel_on_deadline=cancel,
    )
    event = await first_event(trigger)
    assert 0.9 < time.monotonic() - started < 4  # the deadline cuts the 5 s backoff short
    assert event["status"] == "timeout" and event["cancelled"] is cancel
    assert lists(server)[list_id]["status"] == ("cancelled" if cancel else "running")
    with pytest.raises(ClearoutBulkJobTimedOut, match="did not finish before its deadline") as info:
        raise_for_event(event)
    assert ("a retry uploads it again" in str(info.value)) is cancel
    assert ("resumes it without paying again" in str(info.value)) is not cancel


async def test_unavailable_list_fails_at_once_with_the_clearout_reason(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, server)
    started = time.monotonic()
    event = await first_event(
        ClearoutBulkJobTrigger(job_id="0" * 24, poll_interval=5, deadline=time.time() + 60)
    )
    assert time.monotonic() - started < 3
    assert (
        event["status"] == "error"
        and event["error_type"] == "ClearoutListNotFound"  # 1008: the spec's answer for a gone list
        and event["error_code"] == 1008
    )
    with pytest.raises(ClearoutBulkJobFailed, match="0{24}.*not authorized") as info:
        raise_for_event(event)
    assert info.value.error_code == 1008


async def test_a_wrong_token_fails_without_leaking_it(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "0123456789abcdef0123456789abcdef:" + "e" * 64
    connect(monkeypatch, server, token=wrong)
    event = await first_event(ClearoutBulkJobTrigger(job_id="0" * 24, poll_interval=5))
    assert event["status"] == "error" and event["error_type"] == "ClearoutAuthError"
    assert wrong not in json.dumps(event) and "e" * 64 not in json.dumps(event)


async def test_transient_503s_keep_the_trigger_polling_to_success(
    sandbox_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=20, fault_rate_503=0.5, fault_seed=7))
    connect(monkeypatch, server)
    list_id = upload(
        tmp_path, 20, hook=ClearoutHook(max_retries=30, retry_backoff=0.01, retry_max_backoff=0.01)
    )
    # No retries inside the hook: every 503 reaches the trigger's own loop.
    monkeypatch.setattr(
        ClearoutBulkJobTrigger, "jobs", lambda self: ClearoutLists(ClearoutHook(max_retries=0))
    )
    event = await first_event(
        ClearoutBulkJobTrigger(job_id=list_id, poll_interval=0.1, max_poll_interval=0.1)
    )
    assert event["status"] == "success"
    assert any("polling again" in r.getMessage() for r in caplog.records)


async def test_on_kill_cancels_the_running_list(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(monkeypatch, server)
    list_id = upload(tmp_path, RATE * 20)
    trigger = ClearoutBulkJobTrigger(job_id=list_id, poll_interval=0.2, max_poll_interval=0.2)
    waiting = asyncio.create_task(first_event(trigger))
    await asyncio.sleep(0.5)
    waiting.cancel()  # what the triggerer does before calling on_kill
    await trigger.on_kill()
    assert lists(server)[list_id]["status"] == "cancelled"
    await trigger.on_kill()  # a second kill (nothing left to cancel) is logged, never raised


def test_run_sync_reaches_the_same_events(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(monkeypatch, server)
    quick = upload(tmp_path, RATE // 2)
    assert ClearoutBulkJobTrigger(job_id=quick, poll_interval=0.2).run_sync()["status"] == "success"
    slow = upload(tmp_path, RATE * 100)
    event = ClearoutBulkJobTrigger(job_id=slow, poll_interval=0.2, deadline=time.time() + 0.6).run_sync()
    assert event["status"] == "timeout" and event["cancelled"] is True
    assert lists(server)[slow]["status"] == "cancelled"


async def test_a_list_that_completes_as_the_deadline_passes_is_a_success(
    server: SandboxProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connect(monkeypatch, server)
    list_id = upload(tmp_path, 2)
    await asyncio.sleep(0.3)  # completed by now; the trigger's first look below is stale ("running")
    real = ClearoutLists.aprogress
    looks = 0

    async def stale_first_look(self: ClearoutLists, job_id: str) -> BulkProgress:
        nonlocal looks
        looks += 1
        return BulkProgress(list_id, "running", 50.0) if looks == 1 else await real(self, job_id)

    monkeypatch.setattr(ClearoutLists, "aprogress", stale_first_look)
    trigger = ClearoutBulkJobTrigger(job_id=list_id, deadline=time.time() - 1, cancel_on_deadline=True)
    event = await first_event(trigger)  # the cancel is refused (1116: not cancellable), the last look wins
    assert event["status"] == "success" and looks == 2
    assert lists(server)[list_id]["status"] == "completed"
