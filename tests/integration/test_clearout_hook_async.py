"""ClearoutHook's async (aiohttp) methods against the live sandbox: what triggers use, and the rest.

The connection is resolved through ``get_async_connection`` from an ``AIRFLOW_CONN_*`` variable, as
in a real triggerer. Attempts are counted from the hook's per-response DEBUG line (aiohttp has no
request log of its own).
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from clearout_helpers import Connect, expire_list, fast_settings, write_csv

from clearout_provider.clearout.models import BulkProgress
from clearout_provider.exceptions import (
    ClearoutAuthError,
    ClearoutBadInput,
    ClearoutCreditsError,
    ClearoutDuplicateFile,
    ClearoutListNotFound,
    ClearoutListUnavailable,
    ClearoutNotCancellable,
    ClearoutProtocolError,
    ClearoutResultExpired,
    ClearoutServerError,
    ClearoutTimeout,
)
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.sandbox import SandboxProcess
from clearout_provider.verdicts import BULK_RESULT_COLUMNS, FINDER_RESULT_COLUMNS, Status

StartSandbox = Callable[..., SandboxProcess]


async def wait_finished(poll: Callable[[], Awaitable[BulkProgress]], timeout: float = 20.0) -> BulkProgress:
    deadline = time.monotonic() + timeout
    while not (progress := await poll()).finished:
        assert time.monotonic() < deadline, f"list still {progress.status} at {progress.percent}%"
        await asyncio.sleep(0.05)
    return progress


def attempts(caplog: pytest.LogCaptureFixture, path: str) -> list[int]:
    """HTTP statuses of the answers the hook received for ``path``, in order."""
    return [
        int(r.args[2])  # type: ignore[index]
        for r in caplog.records
        if r.name == "clearout_provider.hooks.clearout"
        and r.msg.startswith("Clearout %s %s")
        and r.args[1] == path  # type: ignore[index]
    ]


@pytest.fixture
def hook_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="clearout_provider")
    return caplog


async def test_credits_verify_and_flags(clearout_hook: ClearoutHook) -> None:
    credits = await clearout_hook.aget_credits()
    assert credits.available > 0
    results = await asyncio.gather(
        clearout_hook.averify_email("valid@example.com"),
        clearout_hook.averify_email("catch_all@example.com"),
        clearout_hook.acheck_flag("disposable@example.com", "disposable"),
    )
    assert results[0].status is Status.VALID and results[0].sub_status_code == 200
    assert results[1].status is Status.CATCH_ALL
    assert results[2].value is True and results[2].kind == "disposable"


async def test_auth_failure_is_not_retried(
    sandbox: SandboxProcess, clearout_connect: Connect, hook_log
) -> None:
    hook = clearout_connect(sandbox, token="0" * 32 + ":" + "1" * 64)
    with pytest.raises(ClearoutAuthError) as info:
        await hook.aget_bulk_progress("0123456789abcdef01234567")
    assert info.value.code == 1000
    assert attempts(hook_log, "/email_verify/bulk/progress_status") == [401]


async def test_bulk_verify_lifecycle(clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    emails = ["valid@example.com", "invalid@example.com", "role@example.com"]
    path = write_csv(tmp_path, emails)
    upload = await clearout_hook.aupload_bulk_verify(path)
    with pytest.raises(ClearoutDuplicateFile) as dup:
        await clearout_hook.aupload_bulk_verify(path)
    assert dup.value.list_id == upload.list_id
    progress = await wait_finished(lambda: clearout_hook.aget_bulk_progress(upload.list_id))
    assert progress.status == "completed" and progress.percent == 100.0
    with pytest.raises(ClearoutNotCancellable):
        await clearout_hook.acancel_list(upload.list_id)
    downloaded = await clearout_hook.adownload_bulk_result(upload.list_id, tmp_path / "result.csv")
    with downloaded.path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Email"] for r in rows] == emails
    assert list(rows[0]) == ["Email", *BULK_RESULT_COLUMNS]
    assert downloaded.bytes == downloaded.path.stat().st_size
    removed = await clearout_hook.aremove_list(upload.list_id)
    assert removed.list_id == upload.list_id
    with pytest.raises(ClearoutListNotFound) as gone:  # the sync path's decision: one protocol table
        await clearout_hook.aget_bulk_progress(upload.list_id)
    assert gone.value.code == 1008 and isinstance(gone.value, ClearoutListUnavailable)


async def test_expired_result(sandbox: SandboxProcess, clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    upload = await clearout_hook.aupload_bulk_verify(write_csv(tmp_path, ["valid@example.com"]))
    await wait_finished(lambda: clearout_hook.aget_bulk_progress(upload.list_id))
    await asyncio.to_thread(expire_list, sandbox, upload.list_id)
    with pytest.raises(ClearoutResultExpired):
        await clearout_hook.adownload_bulk_result(upload.list_id, tmp_path / "r.csv")
    assert list(tmp_path.glob("*r.csv*")) == []


async def test_cancel_running_list(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path
) -> None:
    server = sandbox_factory(fast_settings(bulk_rate=20))
    hook = clearout_connect(server)
    upload = await hook.aupload_bulk_verify(write_csv(tmp_path, [f"u{i}@example.org" for i in range(300)]))
    assert (await hook.aget_bulk_progress(upload.list_id)).status == "running"
    cancelled = await hook.acancel_list(upload.list_id)
    assert cancelled.list_id == upload.list_id
    assert (await hook.aget_bulk_progress(upload.list_id)).status == "cancelled"
    await hook.aremove_list(upload.list_id, ignore_result=True)


async def test_finder_async(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path, hook_log
) -> None:
    server = sandbox_factory(fast_settings(finder_search_ms=30_000))
    hook = clearout_connect(server)
    queued = await hook.afind_email("Support", "acme.com", timeout_ms=10_000)
    assert queued.query_status == "completed" and queued.email_address == "support@acme.com"
    assert attempts(hook_log, "/email_finder/instant") == [524]
    assert len(attempts(hook_log, "/email_finder/instant/queue_status")) >= 2
    direct = await hook.afind_email("Support", "acme.com", timeout_ms=60_000)
    assert direct.emails == queued.emails and direct.query_status is None
    with pytest.raises(ClearoutTimeout) as info:
        await hook.afind_email("Support", "acme.com", timeout_ms=10_000, queue=False)
    assert info.value.queue_id is None
    with pytest.raises(ClearoutBadInput) as bad:
        await hook.aget_finder_queue_status("0123456789abcdef01234567")
    assert bad.value.code == 1104

    rows = ["Support,acme.com", "Steven Morris,gmail.com"]
    upload = await hook.aupload_bulk_finder(write_csv(tmp_path, rows, header="Name,Domain"))
    await wait_finished(lambda: hook.aget_finder_bulk_progress(upload.list_id))
    result = await hook.adownload_finder_result(upload.list_id, tmp_path / "finder.csv")
    with result.path.open(newline="", encoding="utf-8") as fh:
        found = list(csv.DictReader(fh))
    assert list(found[0]) == ["Name", "Domain", *FINDER_RESULT_COLUMNS]
    assert [r["Clearout Finder Status"] for r in found] == ["Found", "Not Found"]
    await hook.aremove_finder_list(upload.list_id)

    running = await hook.aupload_bulk_finder(
        write_csv(
            tmp_path,
            [f"Person{chr(97 + i % 26)} Jones,site{i}.com" for i in range(200)],
            header="Name,Domain",
        )
    )
    await hook.acancel_finder_list(running.list_id)
    assert (await hook.aget_finder_bulk_progress(running.list_id)).status == "cancelled"


async def test_finder_credits(sandbox_factory: StartSandbox, clearout_connect: Connect) -> None:
    hook = clearout_connect(sandbox_factory(fast_settings(credits=3)))
    with pytest.raises(ClearoutCreditsError) as info:
        await hook.afind_email("Steven Morris", "apple.com")
    assert info.value.code == 1099


async def test_503s_are_recovered(sandbox_factory: StartSandbox, clearout_connect: Connect, hook_log) -> None:
    hook = clearout_connect(sandbox_factory(fast_settings(fault_rate_503=0.3, fault_seed=11)), max_retries=8)
    results = await asyncio.gather(*(hook.aget_credits() for _ in range(10)))
    assert len(results) == 10
    statuses = attempts(hook_log, "/email_verify/getcredits")
    assert statuses.count(503) >= 1 and statuses.count(200) == 10


async def test_burst_from_asyncio_gather_gets_no_429_and_never_blocks_the_loop(
    sandbox_factory: StartSandbox, clearout_connect: Connect
) -> None:
    server = sandbox_factory(fast_settings(rpm=20, rate_window=2.0))
    hook = clearout_connect(server)
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    started = time.monotonic()
    results = await asyncio.gather(*(hook.averify_email(f"user{i}@example.org") for i in range(60)))
    elapsed = time.monotonic() - started
    done.set()
    await beat
    assert len(results) == 60
    stats = await asyncio.to_thread(server.clearout_stats)
    assert stats["rate_limited"] == 0 and stats["instant_calls"] == 60
    assert 4.0 <= elapsed < 4.0 / 0.95 + 1.0
    assert max(gaps) < 0.2  # the triggerer's "blocked event loop" threshold


async def test_malformed_answers_are_protocol_errors_as_on_the_sync_path(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path, hook_log
) -> None:
    server = sandbox_factory(fast_settings(instant_malformed=1.0, upload_without_list_id=True))
    hook = clearout_connect(server)
    for _ in range(2):
        with pytest.raises(ClearoutProtocolError, match="instant verify"):
            await hook.averify_email("valid@example.com")
    with pytest.raises(ClearoutProtocolError, match="list_id"):
        await hook.aupload_bulk_verify(write_csv(tmp_path, ["valid@example.com"]))
    assert attempts(hook_log, "/email_verify/instant") == [200, 200]  # never resent
    assert attempts(hook_log, "/email_verify/bulk") == [200]


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself, recording the absolute URL it was asked for."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Proxy.seen.append(self.path)
        body = json.dumps({"status": "success", "data": {"available_credits": 42}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    _Proxy.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_both_transports_honour_http_proxy_and_no_proxy(
    sandbox: SandboxProcess, clearout_connect: Connect, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clearout_provider.sandbox.process import free_port

    api = f"http://127.0.0.1:{free_port()}/v2"  # nothing listens here: only the proxy can answer
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    hook = clearout_connect(sandbox, host=api, max_retries=0)
    assert (await hook.aget_credits()).available == 42
    assert (await asyncio.to_thread(hook.get_credits)).available == 42
    assert _Proxy.seen == [f"{api}/email_verify/getcredits"] * 2  # absolute URLs: proxied requests

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(ClearoutServerError):
        await clearout_connect(sandbox, host=api, max_retries=0).aget_credits()
    assert len(_Proxy.seen) == 2
