"""ClearoutHook (sync, requests) against the live sandbox over loopback HTTP.

Every method, every error path.
"""

from __future__ import annotations

import csv
import logging
import pickle
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from clearout_helpers import Connect, expire_list, fast_settings, sent_requests, write_csv

from clearout_provider.clearout.models import BulkProgress
from clearout_provider.exceptions import (
    ClearoutAuthError,
    ClearoutBadInput,
    ClearoutBulkLimitReached,
    ClearoutCreditsError,
    ClearoutDailyLimitError,
    ClearoutDuplicateFile,
    ClearoutError,
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
from clearout_provider.verdicts import BULK_RESULT_COLUMNS, FINDER_RESULT_COLUMNS, Bounce, Status

StartSandbox = Callable[..., SandboxProcess]


def wait_finished(poll: Callable[[], BulkProgress], timeout: float = 20.0) -> BulkProgress:
    deadline = time.monotonic() + timeout
    while not (progress := poll()).finished:
        assert time.monotonic() < deadline, f"list still {progress.status} at {progress.percent}%"
        time.sleep(0.05)
    return progress


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------------- credits, connection


def test_get_credits_and_test_connection(clearout_hook: ClearoutHook) -> None:
    credits = clearout_hook.get_credits()
    assert credits.available > 0
    assert credits.total is not None
    ok, message = clearout_hook.test_connection()
    assert ok
    assert message.startswith("Connected: ") and message.endswith(" credits available")


def test_base_url_with_trailing_slash_and_timeout_extra(
    sandbox: SandboxProcess, clearout_connect: Connect
) -> None:
    hook = clearout_connect(sandbox, host=sandbox.clearout_url + "/", extra={"timeout": 5})
    assert hook.get_credits().available > 0
    assert hook._settings().timeout == 5.0


def test_bad_token_fails_at_once_with_advice(
    sandbox: SandboxProcess, clearout_connect: Connect, http_log
) -> None:
    hook = clearout_connect(sandbox, token="0" * 32 + ":" + "1" * 64)
    with pytest.raises(ClearoutAuthError) as info:
        hook.verify_email("valid@example.com")
    assert info.value.code == 1000 and info.value.http_status == 401
    assert "API token" in str(info.value)
    assert sent_requests(http_log, "/email_verify/instant") == [401]  # not retried
    ok, message = hook.test_connection()
    assert not ok and "1000" in message


def test_connection_without_token_is_an_auth_error(
    sandbox: SandboxProcess, clearout_connect: Connect
) -> None:
    hook = clearout_connect(sandbox, token="")
    with pytest.raises(ClearoutAuthError, match="no API token"):
        hook.get_credits()


# ----------------------------------------------------------------------------------- instant verify


@pytest.mark.parametrize(
    ("email", "status", "code", "bounce"),
    [
        ("valid@example.com", Status.VALID, 200, Bounce.NONE),
        ("mailbox_not_found@example.com", Status.INVALID, 406, Bounce.HARD),
        ("mailbox_quota_exceeded@example.com", Status.INVALID, 413, Bounce.SOFT),
        ("catch_all@example.com", Status.CATCH_ALL, 411, Bounce.NONE),
        ("greylisted@example.com", Status.UNKNOWN, 407, Bounce.NONE),
    ],
)
def test_verify_email_test_addresses(
    clearout_hook: ClearoutHook, email: str, status: Status, code: int, bounce: Bounce
) -> None:
    result = clearout_hook.verify_email(email)
    assert (result.email_address, result.status, result.sub_status_code, result.bounce_type) == (
        email,
        status,
        code,
        bounce,
    )
    assert result.sub_status_desc
    assert result.verified_on is not None and result.verified_on.tzinfo is not None
    assert result.time_taken_ms is not None


def test_verify_email_flags_and_suggestion(clearout_hook: ClearoutHook) -> None:
    assert clearout_hook.verify_email("disposable@example.com").disposable is True
    role = clearout_hook.verify_email("role@example.com")
    assert role.role is True and role.free is False and role.safe_to_send == "risky"
    suggested = clearout_hook.verify_email("suggested_email_address@example.com")
    assert suggested.suggested_email == "valid@example.com"
    plain = clearout_hook.verify_email("valid@example.com")
    assert plain.suggested_email is None and plain.ai_verdict
    assert plain.detail_info.domain == "example.com"


@pytest.mark.parametrize(
    ("kind", "yes", "no"),
    [
        ("catchall", "catch_all@example.com", "valid@example.com"),
        ("disposable", "disposable@example.com", "valid@example.com"),
        ("business", "valid@example.com", "someone@gmail.com"),
        ("free", "free@example.com", "valid@example.com"),
        ("role", "role@example.com", "valid@example.com"),
        ("gibberish", "gibberish@example.com", "valid@example.com"),
    ],
)
def test_check_flag_all_six(clearout_hook: ClearoutHook, kind: str, yes: str, no: str) -> None:
    hit = clearout_hook.check_flag(yes, kind)  # type: ignore[arg-type]
    assert (hit.kind, hit.value, hit.email_address) == (kind, True, yes)
    assert clearout_hook.check_flag(no, kind).value is False  # type: ignore[arg-type]


def test_unknown_flag_is_rejected_before_any_request(clearout_hook: ClearoutHook, http_log) -> None:
    with pytest.raises(ClearoutBadInput, match="Unknown flag check"):
        clearout_hook.check_flag("valid@example.com", "spammy")  # type: ignore[arg-type]
    assert sent_requests(http_log, "/email/verify/spammy") == []


def test_validation_failure_names_the_field(clearout_hook: ClearoutHook) -> None:
    with pytest.raises(ClearoutBadInput) as info:
        clearout_hook.verify_email("")
    assert info.value.http_status == 400 and info.value.field == "email"
    assert any("not allowed to be empty" in m for m in info.value.messages)
    with pytest.raises(ClearoutBadInput) as info:
        clearout_hook.get_bulk_progress("")
    assert info.value.field == "list_id" and info.value.reasons[0].location == "query"


def test_instant_timeout_524_is_not_retried(
    sandbox_factory: StartSandbox, clearout_connect: Connect, http_log
) -> None:
    server = sandbox_factory(fast_settings(instant_verify_ms=20_000))
    hook = clearout_connect(server)
    with pytest.raises(ClearoutTimeout) as info:
        hook.verify_email("valid@example.com", timeout_ms=10_000)
    assert info.value.http_status == 524 and info.value.queue_id is None
    assert sent_requests(http_log, "/email_verify/instant") == [524]


# ----------------------------------------------------------------------------------- credits and limits


def test_credit_and_daily_limit_errors(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path
) -> None:
    server = sandbox_factory(fast_settings(credits=0, daily_verify_limit=2))
    hook = clearout_connect(server)
    assert hook.verify_email("valid@example.com").status is Status.VALID  # test addresses are free
    with pytest.raises(ClearoutCreditsError) as info:
        hook.verify_email("jane.doe@acme-widgets.com")
    assert (info.value.code, info.value.http_status) == (1002, 402)
    assert "Add credits" in str(info.value)
    with pytest.raises(ClearoutCreditsError) as info:
        hook.find_email("Steven Morris", "apple.com")
    assert (info.value.code, info.value.http_status) == (1099, 402)
    finder_list = write_csv(tmp_path, ["Steven Morris,apple.com"], header="Name,Domain")
    with pytest.raises(ClearoutCreditsError) as info:
        hook.upload_bulk_finder(finder_list)
    assert info.value.code == 1028 and info.value.required_credits == 4
    hook.verify_email("invalid@example.com")
    with pytest.raises(ClearoutDailyLimitError) as daily:
        hook.verify_email("valid@example.com")
    assert daily.value.code == 1017


def test_bulk_list_larger_than_the_balance_is_1028(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path
) -> None:
    server = sandbox_factory(fast_settings(credits=2))
    hook = clearout_connect(server)
    rows = [f"person{i}@acme-widgets.com" for i in range(40)]
    with pytest.raises(ClearoutCreditsError) as info:
        hook.upload_bulk_verify(write_csv(tmp_path, rows))
    assert (info.value.code, info.value.http_status) == (1028, 402)


# ----------------------------------------------------------------------------------- bulk verify


def test_bulk_verify_upload_progress_download_remove(clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    emails = ["valid@example.com", "invalid@example.com", "catch_all@example.com", "someone@gmail.com"]
    src = tmp_path / "in.csv"
    src.write_text("Name,Email\n" + "".join(f"n{i},{e}\n" for i, e in enumerate(emails)), encoding="utf-8")
    src = src.rename(tmp_path / f"contacts-{time.time_ns()}.csv")
    upload = clearout_hook.upload_bulk_verify(src, optimize="fastest_turnaround")
    assert len(upload.list_id) == 24
    progress = wait_finished(lambda: clearout_hook.get_bulk_progress(upload.list_id))
    assert (progress.status, progress.percent, progress.list_id) == ("completed", 100.0, upload.list_id)
    downloaded = clearout_hook.download_bulk_result(upload.list_id, tmp_path / "out" / "result.csv")
    assert downloaded.path == tmp_path / "out" / "result.csv"
    assert downloaded.bytes == downloaded.path.stat().st_size
    rows = read_csv(downloaded.path)
    assert [r["Email"] for r in rows] == emails
    assert list(rows[0]) == ["Name", "Email", *BULK_RESULT_COLUMNS]
    assert [r["Clearout Verification Status"] for r in rows[:3]] == ["Valid", "Invalid", "Catch All"]
    assert not list((tmp_path / "out").glob(".*part"))  # no temp file left behind
    removed = clearout_hook.remove_list(upload.list_id)
    assert removed.list_id == upload.list_id and removed.name == src.name and removed.created_on is not None
    with pytest.raises(ClearoutListNotFound) as gone:  # 1008 on progress: gone, a resumed task re-uploads
        clearout_hook.get_bulk_progress(upload.list_id)
    assert gone.value.code == 1008 and isinstance(gone.value, ClearoutListUnavailable)
    with pytest.raises(ClearoutListUnavailable) as unavailable:  # 1029 on the other list endpoints
        clearout_hook.download_bulk_result(upload.list_id, tmp_path / "again.csv")
    assert unavailable.value.code == 1029 and type(unavailable.value) is ClearoutListUnavailable


def test_bulk_verify_accepts_xlsx(clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Email address", "Score"])
    for email in ("valid@example.com", "role@example.com"):
        sheet.append([email, 1])
    path = tmp_path / f"book-{time.time_ns()}.xlsx"
    book.save(path)
    upload = clearout_hook.upload_bulk_verify(path)
    wait_finished(lambda: clearout_hook.get_bulk_progress(upload.list_id))
    rows = read_csv(clearout_hook.download_bulk_result(upload.list_id, tmp_path / "r.csv").path)
    assert [r["Email address"] for r in rows] == ["valid@example.com", "role@example.com"]


def test_duplicate_upload_names_the_earlier_list(clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["valid@example.com"])
    first = clearout_hook.upload_bulk_verify(path)
    with pytest.raises(ClearoutDuplicateFile) as info:
        clearout_hook.upload_bulk_verify(path)
    assert info.value.code == 2043 and info.value.list_id == first.list_id
    assert first.list_id in str(info.value)
    forced = clearout_hook.upload_bulk_verify(path, ignore_duplicate_file=True)
    assert forced.list_id != first.list_id


@pytest.mark.parametrize(
    ("header", "suffix", "code"),
    [("Mail,Name", ".csv", 1004), ("Email", ".txt", 1100)],
)
def test_bad_list_files(
    clearout_hook: ClearoutHook, tmp_path: Path, header: str, suffix: str, code: int
) -> None:
    path = write_csv(tmp_path, ["valid@example.com,x"], header=header, name=f"bad-{time.time_ns()}{suffix}")
    with pytest.raises(ClearoutBadInput) as info:
        clearout_hook.upload_bulk_verify(path)
    assert info.value.code == code


def test_expired_result_is_1007(sandbox: SandboxProcess, clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    upload = clearout_hook.upload_bulk_verify(write_csv(tmp_path, ["valid@example.com"]))
    wait_finished(lambda: clearout_hook.get_bulk_progress(upload.list_id))
    expire_list(sandbox, upload.list_id)
    with pytest.raises(ClearoutResultExpired) as info:
        clearout_hook.download_bulk_result(upload.list_id, tmp_path / "r.csv")
    assert info.value.code == 1007
    assert isinstance(info.value, ClearoutListUnavailable)  # callers catching "unavailable" see it too
    assert not (tmp_path / "r.csv").exists()


def test_unknown_list_is_1029(clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    with pytest.raises(ClearoutListUnavailable) as info:
        clearout_hook.download_bulk_result("0123456789abcdef01234567", tmp_path / "r.csv")
    assert info.value.code == 1029


def test_cancel_concurrency_limit_and_not_cancellable(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path
) -> None:
    server = sandbox_factory(fast_settings(max_bulk_lists=1, bulk_rate=20))
    hook = clearout_connect(server)
    rows = [f"user{i}@example.org" for i in range(500)]
    running = hook.upload_bulk_verify(write_csv(tmp_path, rows))
    with pytest.raises(ClearoutBulkLimitReached) as limit:
        hook.upload_bulk_verify(write_csv(tmp_path, rows[:3]))
    assert limit.value.code == 1001
    finder_rows = [f"Person{chr(97 + i)} Smith,acme{i}.com" for i in range(100)]
    finder = hook.upload_bulk_finder(write_csv(tmp_path, finder_rows, header="Name,Domain"))
    with pytest.raises(ClearoutBulkLimitReached) as limit:
        hook.upload_bulk_finder(write_csv(tmp_path, finder_rows[:2], header="Name,Domain"))
    assert limit.value.code == 1083

    cancelled = hook.cancel_list(running.list_id)
    assert cancelled.list_id == running.list_id and cancelled.source
    progress = hook.get_bulk_progress(running.list_id)
    assert progress.status == "cancelled" and progress.finished and progress.percent < 100
    with pytest.raises(ClearoutNotCancellable) as info:
        hook.cancel_list(running.list_id)
    assert info.value.code == 1116
    result = read_csv(hook.download_bulk_result(running.list_id, tmp_path / "cancelled.csv").path)
    assert len(result) == 500
    assert result[-1]["Clearout Reason"] == "Request Cancelled"
    hook.remove_list(running.list_id)

    assert hook.get_finder_bulk_progress(finder.list_id).status == "running"
    hook.cancel_finder_list(finder.list_id)
    assert hook.get_finder_bulk_progress(finder.list_id).status == "cancelled"
    hook.remove_finder_list(finder.list_id, ignore_result=True)
    with pytest.raises(ClearoutListNotFound):
        hook.get_finder_bulk_progress(finder.list_id)


def test_streamed_download_of_a_large_result_keeps_memory_flat(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path
) -> None:
    server = sandbox_factory(fast_settings(bulk_rate=10_000_000, credits=1_000_000))
    hook = clearout_connect(server)
    rows = 200_000
    src = tmp_path / "big.csv"
    with src.open("w", encoding="utf-8") as fh:
        fh.write("Email\n")
        fh.writelines(f"user{i}@example.net\n" for i in range(rows))
    upload = hook.upload_bulk_verify(src)
    wait_finished(lambda: hook.get_bulk_progress(upload.list_id), timeout=60)
    hook.get_credits()  # warm the session so the measurement sees only the download
    tracemalloc.start()
    try:
        downloaded = hook.download_bulk_result(upload.list_id, tmp_path / "big-result.csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert downloaded.bytes > 20_000_000
    assert peak < downloaded.bytes / 5, f"peak {peak} bytes for a {downloaded.bytes}-byte file"
    with downloaded.path.open("rb") as fh:
        assert sum(1 for _ in fh) == rows + 1


def test_presigned_url_gets_no_authorization_header(clearout_hook: ClearoutHook, tmp_path: Path) -> None:
    sent: list[tuple[str, dict[str, str]]] = []
    clearout_hook.get_conn().hooks["response"].append(
        lambda resp, **_: sent.append((resp.request.url, dict(resp.request.headers)))
    )
    upload = clearout_hook.upload_bulk_verify(write_csv(tmp_path, ["valid@example.com"]))
    wait_finished(lambda: clearout_hook.get_bulk_progress(upload.list_id))
    clearout_hook.download_bulk_result(upload.list_id, tmp_path / "r.csv")
    file_requests = [headers for url, headers in sent if "/_files/" in url]
    api_requests = [headers for url, headers in sent if "/_files/" not in url]
    assert len(file_requests) == 1 and "Authorization" not in file_requests[0]
    assert all("Authorization" in headers for headers in api_requests)


# ----------------------------------------------------------------------------------- email finder


def test_find_email_direct_and_bulk(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path
) -> None:
    server = sandbox_factory(fast_settings())
    hook = clearout_connect(server)
    found = hook.find_email("Sales", "Acme Inc.")
    assert found.email_address == "sales@acme.com"
    assert found.emails[0].role is True and found.domain == "acme.com" and found.company == "acme"
    assert found.query_status is None and found.found_on is not None
    assert hook.find_email("Steven Morris", "gmail.com").emails == ()

    upload = hook.upload_bulk_finder(
        write_csv(tmp_path, ["Steven Morris,apple.com", "Sales,acme.com"], header="Name,Domain")
    )
    progress = wait_finished(lambda: hook.get_finder_bulk_progress(upload.list_id))
    assert progress.percent == 100.0
    rows = read_csv(hook.download_finder_result(upload.list_id, tmp_path / "finder.csv").path)
    assert list(rows[0]) == ["Name", "Domain", *FINDER_RESULT_COLUMNS]
    assert rows[1]["Clearout Finder Email Address"] == "sales@acme.com"
    hook.remove_finder_list(upload.list_id)


def test_find_email_queue_path(sandbox_factory: StartSandbox, clearout_connect: Connect, http_log) -> None:
    server = sandbox_factory(fast_settings(finder_search_ms=30_000))  # 0.3 s; a 10 s timeout is 0.1 s
    hook = clearout_connect(server)
    result = hook.find_email("Sales", "acme.com", timeout_ms=10_000)
    assert result.query_status == "completed" and result.email_address == "sales@acme.com"
    assert sent_requests(http_log, "/email_finder/instant") == [524]
    polls = sent_requests(http_log, "/email_finder/instant/queue_status")
    assert len(polls) >= 2 and set(polls) == {200}

    with pytest.raises(ClearoutTimeout) as info:
        hook.find_email("Sales", "acme.com", timeout_ms=10_000, queue=False)
    assert info.value.queue_id is None

    impatient = clearout_connect(server, finder_max_wait=0.1)
    with pytest.raises(ClearoutTimeout) as info:
        impatient.find_email("Sales", "acme.com", timeout_ms=10_000)
    assert info.value.queue_id and info.value.queue_id in str(info.value)
    status = hook.get_finder_queue_status(info.value.queue_id)
    assert status.query_status in {"running", "completed"}
    # The queue id of a search still running when the wait ended: collected, not searched (paid) again.
    searches = len(sent_requests(http_log, "/email_finder/instant"))
    collected = hook.wait_for_finder_queue(info.value.queue_id)
    assert collected.query_status == "completed" and collected.email_address == "sales@acme.com"
    assert len(sent_requests(http_log, "/email_finder/instant")) == searches


def test_finder_input_errors(clearout_hook: ClearoutHook) -> None:
    with pytest.raises(ClearoutBadInput) as info:
        clearout_hook.find_email("R2-D2", "apple.com", timeout_ms=10_000)
    assert info.value.code == 1088
    with pytest.raises(ClearoutBadInput) as info:
        clearout_hook.get_finder_queue_status("0123456789abcdef01234567")
    assert info.value.code == 1104
    with pytest.raises(ClearoutBadInput) as info:
        clearout_hook.find_email("", "apple.com")
    assert info.value.field == "name"


# ----------------------------------------------------------------------------------- retries and rate limits


def test_transient_503s_are_recovered(
    sandbox_factory: StartSandbox, clearout_connect: Connect, http_log
) -> None:
    server = sandbox_factory(fast_settings(fault_rate_503=0.3, fault_seed=7))
    hook = clearout_connect(server, max_retries=8)
    results = [hook.verify_email("valid@example.com").status for _ in range(15)]
    assert results == [Status.VALID] * 15
    statuses = sent_requests(http_log, "/email_verify/instant")
    assert statuses.count(503) >= 1 and statuses.count(200) == 15


def test_forced_upload_is_not_resent_after_an_ambiguous_failure(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path, http_log
) -> None:
    server = sandbox_factory(fast_settings(fault_rate_503=1.0))
    hook = clearout_connect(server, max_retries=2)
    path = write_csv(tmp_path, ["valid@example.com"])
    with pytest.raises(ClearoutServerError):
        hook.upload_bulk_verify(path, ignore_duplicate_file=True)
    assert sent_requests(http_log, "/email_verify/bulk") == [503]
    with pytest.raises(ClearoutServerError):
        hook.upload_bulk_verify(path)  # a resend can only meet 2043 (resumable), never a second list
    assert sent_requests(http_log, "/email_verify/bulk") == [503] * 4


def test_unreachable_server_is_transient_and_retried(
    sandbox: SandboxProcess, clearout_connect: Connect, caplog
) -> None:
    from clearout_provider.sandbox.process import free_port

    caplog.set_level(logging.WARNING, logger="clearout_provider")
    hook = clearout_connect(sandbox, host=f"http://127.0.0.1:{free_port()}/clearout/v2", max_retries=2)
    with pytest.raises(ClearoutServerError) as info:
        hook.get_credits()
    assert info.value.maybe_processed is False and "Could not" in str(info.value)
    assert sum("retry" in r.getMessage() for r in caplog.records) == 2


def test_429_is_recovered_by_waiting_for_the_reset(
    sandbox_factory: StartSandbox, clearout_connect: Connect, http_log
) -> None:
    server = sandbox_factory(fast_settings(rpm=2, rate_window=1.0))
    token = server.settings.clearout_token
    for _ in range(2):  # another client spends the window first
        requests.post(
            f"{server.clearout_url}/email_verify/instant",
            json={"email": "valid@example.com"},
            headers={"Authorization": token},
            timeout=10,
        ).raise_for_status()
    hook = clearout_connect(server)
    started = time.monotonic()
    assert hook.verify_email("valid@example.com").status is Status.VALID
    assert time.monotonic() - started < 3.0
    assert sent_requests(http_log, "/email_verify/instant") == [200, 200, 429, 200]
    assert server.clearout_stats()["rate_limited"] == 1


def test_burst_of_three_times_the_rpm_from_threads_gets_no_429(
    sandbox_factory: StartSandbox, clearout_connect: Connect
) -> None:
    server = sandbox_factory(fast_settings(rpm=20, rate_window=2.0))
    hook = clearout_connect(server)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: hook.verify_email(f"user{i}@example.org"), range(60)))
    elapsed = time.monotonic() - started
    assert len(results) == 60
    stats = server.clearout_stats()
    assert stats["rate_limited"] == 0
    assert stats["instant_calls"] == 60
    # 60 calls at 20 per 2 s window need two full windows; >= 95 % throughput keeps it near that.
    assert 4.0 <= elapsed < 4.0 / 0.95 + 1.0


def test_the_connections_rpm_is_the_starting_quota_and_a_burst_gets_no_429(
    sandbox_factory: StartSandbox, clearout_connect: Connect
) -> None:
    server = sandbox_factory(fast_settings(rpm=5, rate_window=1.0))
    hook = clearout_connect(server, extra={"rpm": 5})
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: hook.verify_email(f"user{i}@example.org"), range(15)))
    assert len(results) == 15
    stats = server.clearout_stats()
    assert stats["rate_limited"] == 0 and stats["instant_calls"] == 15


# ----------------------------------------------------------------------------------- malformed answers


def test_malformed_instant_success_is_a_protocol_error_and_not_resent(
    sandbox_factory: StartSandbox, clearout_connect: Connect, http_log
) -> None:
    server = sandbox_factory(fast_settings(instant_malformed=1.0))
    hook = clearout_connect(server)
    for _ in range(2):  # the sandbox alternates {"status":"success"} and {"status":"success","data":{}}
        with pytest.raises(ClearoutProtocolError) as info:
            hook.verify_email("valid@example.com")
        assert "instant verify" in str(info.value) and not info.value.transient
    assert sent_requests(http_log, "/email_verify/instant") == [200, 200]  # one request per call


def test_upload_answer_without_list_id_is_a_protocol_error(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path, http_log
) -> None:
    server = sandbox_factory(fast_settings(upload_without_list_id=True))
    hook = clearout_connect(server)
    with pytest.raises(ClearoutProtocolError, match="list_id"):
        hook.upload_bulk_verify(write_csv(tmp_path, ["valid@example.com"]))
    with pytest.raises(ClearoutProtocolError, match="list_id"):
        hook.upload_bulk_finder(write_csv(tmp_path, ["Steven Morris,apple.com"], header="Name,Domain"))
    assert sent_requests(http_log, "/email_verify/bulk") == [200]


# ----------------------------------------------------------------------------------- secrets


def test_token_never_in_logs_repr_or_exceptions(
    sandbox_factory: StartSandbox, clearout_connect: Connect, tmp_path: Path, caplog, capsys
) -> None:
    caplog.set_level(logging.DEBUG)
    server = sandbox_factory(fast_settings(fault_rate_503=0.2, fault_seed=3, rpm=5, rate_window=1.0))
    token = server.settings.clearout_token
    hook = clearout_connect(server)
    wrong = "f" * 32 + ":" + "e" * 64
    bad = clearout_connect(server, token=wrong, conn_id="clearout_wrong")
    errors: list[ClearoutError] = []

    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except ClearoutError as exc:
            errors.append(exc)

    attempt(hook.get_credits)
    attempt(lambda: [hook.verify_email(f"jane{i}@acme.org") for i in range(8)])
    attempt(lambda: hook.check_flag("role@example.com", "role"))
    attempt(lambda: hook.verify_email(""))
    attempt(lambda: bad.get_credits())
    attempt(lambda: hook.get_bulk_progress("0123456789abcdef01234567"))
    upload = hook.upload_bulk_verify(write_csv(tmp_path, ["valid@example.com"]))
    wait_finished(lambda: hook.get_bulk_progress(upload.list_id))
    attempt(lambda: hook.download_bulk_result(upload.list_id, tmp_path / "r.csv"))
    attempt(lambda: hook.find_email("R2-D2", "acme.com"))
    assert hook.test_connection()[0] is True
    assert bad.test_connection()[0] is False

    assert errors, "the scenario must include failures"
    captured = capsys.readouterr()
    texts = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    texts += [captured.out, captured.err, repr(hook), str(hook), repr(bad), str(pickle.dumps(hook))]
    texts += [f"{e!s} {e!r} {e.args}" for e in errors]
    for secret in (token, wrong):
        assert not [t for t in texts if secret in t]
    assert not [t for t in texts if "jane0@acme.org" in t]  # addresses are logged masked
    assert any("j***@acme.org" in r.getMessage() for r in caplog.records)
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the transport's DEBUG log was captured


def test_pickled_hook_resolves_its_connection_again(clearout_hook: ClearoutHook) -> None:
    clearout_hook.get_credits()
    copy = pickle.loads(pickle.dumps(clearout_hook))
    assert copy._conn is None
    assert copy.max_retries == clearout_hook.max_retries
    assert copy.get_credits().available > 0
