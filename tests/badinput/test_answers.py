"""Malformed and hostile vendor answers, and bad connection settings: each ends in a NAMED exception.

The answers come from a scripted HTTP server on 127.0.0.1 (real HTTP, nothing mocked), because the
sandbox only says what the real services say. Every case checks three things: the exception's exact
class (what operators decide on), that its text holds neither the Clearout token nor the CleverTap
passcode, and that no raw Python failure (KeyError, JSONDecodeError, ...) leaks out of the hook.
Clearout cases run through both transports (requests and aiohttp), which must decide alike.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from clearout_provider.clevertap_errors import (
    CleverTapBadRequest,
    CleverTapConfigError,
    CleverTapError,
    CleverTapProtocolError,
    CleverTapRateLimited,
    CleverTapServerError,
)
from clearout_provider.exceptions import (
    ClearoutAuthError,
    ClearoutBadInput,
    ClearoutConfigError,
    ClearoutError,
    ClearoutListNotFound,
    ClearoutProtocolError,
    ClearoutRateLimited,
    ClearoutServerError,
    ServiceError,
)
from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.hooks.clevertap import CleverTapHook

TOKEN = "0123456789abcdef0123456789abcdef:" + "cd" * 32
PASSCODE = "QQQ-PASSCODE-7781"
LIST_ID = "0123456789abcdef01234567"
#: Names that only appear in a message when a Python failure escaped the hook undigested.
RAW_FAILURES = (
    "KeyError",
    "TypeError",
    "JSONDecodeError",
    "AttributeError",
    "ValueError",
    "IndexError",
    "RecursionError",
    "UnicodeDecodeError",
    "OverflowError",
    "Traceback",
)


# ---------------------------------------------------------------------------------- the scripted server


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def answer(payload: Any, status: int = 200, **headers: str) -> Answer:
    """A JSON answer (``payload`` bytes are sent as they are: broken JSON, HTML...)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    kind = (("Content-Type", "application/json"),) if not isinstance(payload, bytes) else ()
    return Answer(status, body, kind + tuple((k.replace("_", "-"), v) for k, v in headers.items()))


def success(data: Any) -> Answer:
    return answer({"status": "success", "data": data})


def failed(code: int, message: str = "failed", status: int = 200, **info: Any) -> Answer:
    error: dict[str, Any] = {"code": code, "message": message}
    if info:
        error["additional_info"] = info
    return answer({"status": "failed", "error": error}, status)


def rate_limited(reset: str) -> Answer:
    """A 429 whose ``x-ratelimit-reset`` header says ``reset``."""
    reply = failed(1030, "You have reached API rate limit", status=429)
    return Answer(reply.status, reply.body, (*reply.headers, ("x-ratelimit-reset", reset)))


@dataclass
class Scripted:
    """Answers requests in order from ``answers`` (the last one repeats); records each request line."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    barrier: threading.Barrier | None = None

    def next_answer(self, line: str) -> Answer:
        self.requests.append(line)
        if self.barrier is not None:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                return Answer(500, b"not all requests arrived together")
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        scripted: Scripted = self.server.scripted  # type: ignore[attr-defined]
        reply = scripted.next_answer(f"{self.command} {self.path}")
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    scripted = Scripted(url=f"http://127.0.0.1:{http.server_address[1]}")
    http.scripted = scripted  # type: ignore[attr-defined]
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield scripted
    http.shutdown()
    http.server_close()


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **conn: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def clearout(monkeypatch: pytest.MonkeyPatch, host: str, *, token: str = TOKEN, **extra: Any) -> ClearoutHook:
    conn = {"conn_type": "clearout", "host": host, "password": token, "extra": extra}
    set_connection(monkeypatch, "clearout_default", **conn)
    return ClearoutHook(max_retries=2, retry_backoff=0.01, retry_max_backoff=0.02)


def clevertap(
    monkeypatch: pytest.MonkeyPatch, host: str, *, passcode: str = PASSCODE, **extra: Any
) -> CleverTapHook:
    conn = {
        "conn_type": "clevertap",
        "login": "TEST-ACC-1",
        "password": passcode,
        "host": host,
        "extra": extra,
    }
    set_connection(monkeypatch, "clevertap_default", **conn)
    return CleverTapHook(max_retries=2, retry_wait=0.01, retry_max_wait=0.02, not_ready_wait=0.01)


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """No secret and no raw Python failure in anything a log line or a UI could show of ``exc``."""
    text = " ".join([str(exc), repr(exc), repr(exc.args), *getattr(exc, "__notes__", [])])
    for secret in (TOKEN, PASSCODE, *secrets):
        assert secret not in text
    assert not [name for name in RAW_FAILURES if name in text], text


# ---------------------------------------------------------------------------------- Clearout answers

#: Hook method (sync name; the async twin is "a" + name) and its arguments, given a scratch folder.
Call = tuple[str, Callable[[Path], tuple[Any, ...]]]


def _csv(folder: Path) -> Path:
    path = folder / f"list-{time.time_ns()}.csv"
    path.write_text("Email\nvalid@example.com\n", encoding="utf-8")
    return path


VERIFY: Call = ("verify_email", lambda _: ("valid@example.com",))
FLAG: Call = ("check_flag", lambda _: ("valid@example.com", "business"))
CREDITS: Call = ("get_credits", lambda _: ())
UPLOAD: Call = ("upload_bulk_verify", lambda folder: (_csv(folder),))
FINDER_UPLOAD: Call = ("upload_bulk_finder", lambda folder: (_csv(folder),))
PROGRESS: Call = ("get_bulk_progress", lambda _: (LIST_ID,))
FINDER_PROGRESS: Call = ("get_finder_bulk_progress", lambda _: (LIST_ID,))
DOWNLOAD: Call = ("download_bulk_result", lambda folder: (LIST_ID, folder / "result.csv"))
CANCEL: Call = ("cancel_list", lambda _: (LIST_ID,))
FIND: Call = ("find_email", lambda _: ("Steven Morris", "apple.com"))
QUEUE: Call = ("get_finder_queue_status", lambda _: (LIST_ID,))

VERIFIED = {"email_address": "valid@example.com", "status": "valid", "sub_status": {"code": 200}}
NESTED = b"[" * 50_000 + b"]" * 50_000

CLEAROUT_CASES: list[tuple[str, Call, Answer, type[ClearoutError]]] = [
    ("verify-no-data", VERIFY, answer({"status": "success"}), ClearoutProtocolError),
    ("verify-data-null", VERIFY, success(None), ClearoutProtocolError),
    ("verify-data-list", VERIFY, success([VERIFIED]), ClearoutProtocolError),
    ("verify-no-status", VERIFY, success({"email_address": "valid@example.com"}), ClearoutProtocolError),
    ("verify-no-address", VERIFY, success({"status": "valid"}), ClearoutProtocolError),
    ("verify-unknown-status", VERIFY, success(VERIFIED | {"status": "deliverable"}), ClearoutProtocolError),
    ("verify-status-number", VERIFY, success(VERIFIED | {"status": 7}), ClearoutProtocolError),
    ("verify-html-page", VERIFY, answer(b"<html>captive portal</html>", Content_Type="text/html"),
     ClearoutProtocolError),
    ("verify-empty-200", VERIFY, answer(b""), ClearoutProtocolError),
    ("verify-truncated-json", VERIFY, answer(b'{"status":"success","data":{"email_'), ClearoutProtocolError),
    ("verify-deep-nesting", VERIFY, answer(NESTED), ClearoutProtocolError),
    ("verify-json-string", VERIFY, answer("success"), ClearoutProtocolError),
    ("verify-odd-envelope", VERIFY, answer({"status": "weird", "data": VERIFIED}), ClearoutProtocolError),
    ("verify-broken-gzip", VERIFY, answer(b"definitely not gzip", Content_Encoding="gzip"),
     ClearoutProtocolError),
    ("flag-missing", FLAG, success({"email_address": "valid@example.com"}), ClearoutProtocolError),
    ("flag-not-yes-no", FLAG, success({"email_address": "a@b.c", "business_account": 3}),
     ClearoutProtocolError),
    ("credits-no-number", CREDITS, success({"credits": {"total": 5}}), ClearoutProtocolError),
    ("credits-infinity", CREDITS, answer(b'{"status":"success","data":{"available_credits":Infinity}}'),
     ClearoutProtocolError),
    ("credits-1008", CREDITS, failed(1008, "You are not authorized"), ClearoutAuthError),
    ("upload-no-list-id", UPLOAD, success({}), ClearoutProtocolError),
    ("upload-path-list-id", UPLOAD, success({"list_id": "../../etc/passwd"}), ClearoutProtocolError),
    ("upload-numeric-list-id", FINDER_UPLOAD, success({"list_id": 12345}), ClearoutProtocolError),
    ("upload-2043-bad-id", UPLOAD, failed(2043, "Duplicate file", list_id={"$gt": ""}),
     ClearoutProtocolError),
    ("progress-no-status", PROGRESS, success({"percentile": 50}), ClearoutProtocolError),
    ("progress-1008", PROGRESS, failed(1008, "You are not authorized to access this resource"),
     ClearoutListNotFound),
    ("finder-progress-1008", FINDER_PROGRESS, failed(1008, "Not authorized"), ClearoutListNotFound),
    ("cancel-1008", CANCEL, failed(1008, "Not authorized"), ClearoutAuthError),
    ("download-no-url", DOWNLOAD, success({}), ClearoutProtocolError),
    ("download-file-url", DOWNLOAD, success({"url": "file:///etc/passwd"}), ClearoutProtocolError),
    ("download-plain-http-url", DOWNLOAD, success({"url": "http://files.example.com/r.csv?sig=s3cr3t"}),
     ClearoutConfigError),
    ("finder-emails-not-list", FIND, success({"emails": "steven@apple.com"}), ClearoutProtocolError),
    ("finder-email-without-address", FIND, success({"emails": [{"role": "no"}]}), ClearoutProtocolError),
    ("queue-completed-no-emails", QUEUE, success({"query_status": "completed"}), ClearoutProtocolError),
    ("error-echoes-token", VERIFY, failed(1004, f"bad Authorization header {TOKEN}", status=400),
     ClearoutBadInput),
    ("error-huge-message", VERIFY, failed(9999, "x" * 1_000_000), ClearoutError),
    ("error-code-infinity", VERIFY, answer(b'{"status":"failed","error":{"code":1e999,"message":"?"}}'),
     ClearoutError),
    ("redirect", VERIFY, answer(b"", 302, Location="https://user:pw@elsewhere.example/v2"),
     ClearoutConfigError),
    ("429-after-retries", CREDITS, rate_limited("0.01"), ClearoutRateLimited),
    ("500-html", CREDITS, answer(b"<html>Bad gateway</html>", 502), ClearoutServerError),
]  # fmt: skip


def run(hook: ClearoutHook, call: Call, folder: Path, mode: str) -> Any:
    name, arguments = call
    if mode == "sync":
        return getattr(hook, name)(*arguments(folder))
    return asyncio.run(getattr(hook, f"a{name}")(*arguments(folder)))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("call", "reply", "expected"),
    [pytest.param(call, reply, expected, id=name) for name, call, reply, expected in CLEAROUT_CASES],
)
def test_clearout_answer_ends_in_a_named_exception(
    monkeypatch: pytest.MonkeyPatch,
    server: Scripted,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    call: Call,
    reply: Answer,
    expected: type[ClearoutError],
) -> None:
    caplog.set_level("DEBUG")
    server.answers = [reply]
    hook = clearout(monkeypatch, f"{server.url}/v2")
    with pytest.raises(ClearoutError) as info:
        run(hook, call, tmp_path, mode)
    assert type(info.value) is expected, info.value
    assert_clean(info.value)
    assert TOKEN not in caplog.text
    # What is not transient is not resent: a paid call may already have been charged for this answer.
    assert len(server.requests) == (1 + hook.max_retries if expected.transient else 1)
    assert not list(tmp_path.glob("*result*"))  # no result file, not even a partial one


def test_an_epoch_reset_header_waits_at_most_one_window(
    monkeypatch: pytest.MonkeyPatch, server: Scripted
) -> None:
    server.answers = [rate_limited(str(int(time.time()) + 86_400 * 365))]  # a Unix time a year ahead
    hook = clearout(monkeypatch, f"{server.url}/v2")
    hook.max_retries = 0
    with pytest.raises(ClearoutRateLimited) as info:
        hook.get_credits()
    assert info.value.retry_after == 60.0


# ----------------------------------------------------------------------------- rate limits without headers


def test_without_rate_headers_calls_run_concurrently_not_one_by_one(
    monkeypatch: pytest.MonkeyPatch, server: Scripted
) -> None:
    # Clearout's spec documents no x-ratelimit headers. The server answers only once 8 requests are
    # waiting at the same time: a limiter that serialised them would break the barrier (HTTP 500).
    server.barrier = threading.Barrier(8, timeout=5)
    server.answers = [success(VERIFIED)]
    hook = clearout(monkeypatch, f"{server.url}/v2", rpm=20)  # room for both bursts (16) in one window
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: hook.verify_email(f"u{i}@example.com"), range(8)))
    assert len(results) == 8 and len(server.requests) == 8

    async def burst() -> list[Any]:
        return await asyncio.gather(*(hook.averify_email(f"v{i}@example.com") for i in range(8)))

    assert len(asyncio.run(burst())) == 8 and len(server.requests) == 16


def test_without_rate_headers_the_rpm_extra_caps_the_window(
    monkeypatch: pytest.MonkeyPatch, server: Scripted
) -> None:
    server.answers = [success(VERIFIED)]
    hook = clearout(monkeypatch, f"{server.url}/v2", rpm=3)
    for i in range(3):
        hook.verify_email(f"u{i}@example.com")
    assert hook._buckets["verify"].try_acquire() > 50.0  # the 4th waits for the minute to pass


# ---------------------------------------------------------------------------------- CleverTap answers

CleverTapCall = Callable[[CleverTapHook, Path], Any]
UPLOAD_ROW = [{"identity": "10000001", "profileData": {"Plan": "pro"}}]


def ct_upload(hook: CleverTapHook, _: Path) -> Any:
    return hook.upload_profiles(UPLOAD_ROW)


def ct_subscribe(hook: CleverTapHook, _: Path) -> Any:
    return hook.subscribe(["someone@example.com"])


def ct_export(hook: CleverTapHook, folder: Path) -> Any:
    return hook.export_profiles({}, folder / "profiles.csv")


def ct_profile(hook: CleverTapHook, _: Path) -> Any:
    return hook.get_profile(identity="10000001")


CURSOR = answer({"status": "success", "cursor": "ZyZg%2BXwN"})

CLEVERTAP_CASES: list[tuple[str, CleverTapCall, list[Answer], type[CleverTapError]]] = [
    ("upload-html-200", ct_upload, [answer(b"<html>proxy login</html>")], CleverTapProtocolError),
    ("upload-json-list", ct_upload, [answer([{"processed": 1}])], CleverTapProtocolError),
    ("upload-no-processed", ct_upload, [answer({"status": "success"})], CleverTapProtocolError),
    ("upload-processed-text", ct_upload, [answer({"status": "success", "processed": "1"})],
     CleverTapProtocolError),
    ("upload-unprocessed-dict", ct_upload,
     [answer({"status": "partial", "processed": 0, "unprocessed": {"a": 1}})], CleverTapProtocolError),
    ("upload-unprocessed-strings", ct_upload,
     [answer({"status": "partial", "processed": 0, "unprocessed": ["515"]})], CleverTapProtocolError),
    ("upload-deep-nesting", ct_upload, [answer(NESTED)], CleverTapProtocolError),
    ("upload-broken-gzip", ct_upload, [answer(b"not gzip", Content_Encoding="gzip")], CleverTapProtocolError),
    ("upload-outage-503", ct_upload, [answer(b"", 503)], CleverTapServerError),
    ("upload-429-forever", ct_upload, [answer({"status": "fail", "error": "Too many concurrent requests",
                                               "code": 429}, 429)], CleverTapRateLimited),
    ("subscribe-outage-502", ct_subscribe, [answer(b"<html>bad gateway</html>", 502)], CleverTapServerError),
    ("upload-redirect", ct_upload, [answer(b"", 307, Location="https://elsewhere.example/1/upload")],
     CleverTapConfigError),
    ("upload-error-echoes-passcode", ct_upload,
     [answer({"status": "fail", "error": f"Passcode {PASSCODE} is not valid here", "code": 400}, 400)],
     CleverTapBadRequest),
    ("export-no-cursor", ct_export, [answer({"status": "success"})], CleverTapProtocolError),
    ("export-cursor-not-text", ct_export, [answer({"status": "success", "cursor": {"next": 1}})],
     CleverTapProtocolError),
    ("export-cursor-injects-query", ct_export,
     [answer({"status": "success", "cursor": "abc&batch_size=1#x"})], CleverTapProtocolError),
    ("export-records-not-list", ct_export, [CURSOR, answer({"status": "success", "records": "all of them"})],
     CleverTapProtocolError),
    ("export-record-not-object", ct_export, [CURSOR, answer({"status": "success", "records": [1, 2]})],
     CleverTapProtocolError),
    ("export-next-cursor-bad", ct_export,
     [CURSOR, answer({"status": "success", "records": [], "next_cursor": "a b\r\nX-Evil: 1"})],
     CleverTapProtocolError),
    ("profile-no-record", ct_profile, [answer({"status": "success"})], CleverTapProtocolError),
    ("profile-record-list", ct_profile, [answer({"status": "success", "record": []})],
     CleverTapProtocolError),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "replies", "expected"),
    [pytest.param(call, replies, expected, id=name) for name, call, replies, expected in CLEVERTAP_CASES],
)
def test_clevertap_answer_ends_in_a_named_exception(
    monkeypatch: pytest.MonkeyPatch,
    server: Scripted,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    call: CleverTapCall,
    replies: list[Answer],
    expected: type[CleverTapError],
) -> None:
    caplog.set_level("DEBUG")
    server.answers = list(replies)
    hook = clevertap(monkeypatch, server.url)
    with pytest.raises(CleverTapError) as info:
        call(hook, tmp_path)
    assert type(info.value) is expected, info.value
    assert_clean(info.value)
    assert PASSCODE not in caplog.text
    assert not list(tmp_path.iterdir())  # an export that failed leaves no file behind


# ---------------------------------------------------------------------------------- bad connection settings

BAD_CLEAROUT_SETTINGS: list[tuple[str, str, dict[str, Any], str]] = [
    ("plain-http-elsewhere", "http://api.clearout.io/v2", {}, "allow_insecure_http: true"),
    ("plain-http-private-ip", "http://10.0.0.8:8080/v2", {}, "use https"),
    ("ftp-scheme", "ftp://api.clearout.io/v2", {}, "scheme 'ftp'"),
    ("broken-ipv6", "https://[::1/v2", {}, "not a valid URL"),
    ("port-out-of-range", "https://api.clearout.io:99999/v2", {}, "not a valid URL"),
    ("credentials-in-url", "https://me:secret@api.clearout.io/v2", {}, "user name or password"),
    ("newline-in-host", "https://api.clearout.io/v2\r\nX-Evil: 1", {}, "control characters"),
    ("rpm-text", "https://api.clearout.io/v2", {"rpm": "ten"}, "'rpm'"),
    ("rpm-zero", "https://api.clearout.io/v2", {"rpm": 0}, "'rpm'"),
    ("rpm-bool", "https://api.clearout.io/v2", {"rpm": True}, "'rpm'"),
    ("rpm-fraction", "https://api.clearout.io/v2", {"finder_rpm": 2.5}, "'finder_rpm'"),
    ("timeout-negative", "https://api.clearout.io/v2", {"timeout": -1}, "'timeout'"),
    ("timeout-nan", "https://api.clearout.io/v2", {"timeout": "nan"}, "'timeout'"),
    ("insecure-flag-unclear", "http://api.clearout.io/v2", {"allow_insecure_http": "maybe"}, "true or false"),
]


@pytest.mark.parametrize(
    ("host", "extra", "says"),
    [pytest.param(host, extra, says, id=name) for name, host, extra, says in BAD_CLEAROUT_SETTINGS],
)
def test_bad_clearout_settings_fail_before_sending(
    monkeypatch: pytest.MonkeyPatch, host: str, extra: dict[str, Any], says: str
) -> None:
    hook = clearout(monkeypatch, host, **extra)
    for attempt in (hook.get_credits, lambda: asyncio.run(hook.aget_credits())):
        with pytest.raises(ClearoutConfigError) as info:
            attempt()
        assert says in str(info.value)
        assert_clean(info.value, "secret")


@pytest.mark.parametrize(
    "token",
    [
        TOKEN + "\n",
        TOKEN[:10] + "\r\nX-Evil: 1" + TOKEN[10:],
        TOKEN[:-1] + "é",
        TOKEN[:5] + "\x00" + TOKEN[5:],
    ],
    ids=["trailing-newline-is-stripped", "header-injection", "non-ascii", "nul-byte"],
)
def test_tokens_no_header_can_carry_are_refused_without_being_quoted(
    monkeypatch: pytest.MonkeyPatch, server: Scripted, token: str
) -> None:
    server.answers = [success({"available_credits": 1})]
    hook = clearout(monkeypatch, f"{server.url}/v2", token=token)
    if token.strip() == TOKEN:
        assert hook.get_credits().available == 1  # surrounding whitespace is not part of a token
        return
    with pytest.raises(ClearoutConfigError, match="API token contains") as info:
        hook.get_credits()
    assert_clean(info.value, token.strip(), TOKEN[10:40])
    assert server.requests == []


def test_a_non_object_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "clearout_default", conn_type="clearout", password=TOKEN, extra=[1, 2])
    with pytest.raises(ClearoutConfigError, match="JSON object"):
        ClearoutHook().get_credits()
    set_connection(
        monkeypatch, "clevertap_default", conn_type="clevertap", login="A", password="B", extra=[1]
    )
    with pytest.raises(CleverTapConfigError, match="JSON object"):
        CleverTapHook().get_profile(identity="1")


BAD_CLEVERTAP_SETTINGS: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("plain-http-elsewhere", "http://eu1.api.clevertap.com", PASSCODE, {}, "allow_insecure_http: true"),
    ("credentials-in-host", "https://u:secret@api.clevertap.com", PASSCODE, {}, "user name or password"),
    ("passcode-crlf", "", PASSCODE[:4] + "\r\nX-Evil: 1", {}, "Passcode contains"),
    ("passcode-non-ascii", "", PASSCODE + "ü", {}, "Passcode contains"),
    ("region-number", "", PASSCODE, {"region": 5}, "Unknown CleverTap region"),
    ("insecure-flag-unclear", "", PASSCODE, {"allow_insecure_http": "perhaps"}, "true or false"),
]


@pytest.mark.parametrize(
    ("host", "passcode", "extra", "says"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_CLEVERTAP_SETTINGS],
)
def test_bad_clevertap_settings_fail_before_sending(
    monkeypatch: pytest.MonkeyPatch, host: str, passcode: str, extra: dict[str, Any], says: str
) -> None:
    hook = clevertap(monkeypatch, host, passcode=passcode, **extra)
    with pytest.raises(CleverTapConfigError) as info:
        hook.upload_profiles(UPLOAD_ROW)
    assert says in str(info.value)
    assert_clean(info.value, passcode, "secret")


def test_every_named_exception_is_a_service_error() -> None:
    # Callers catch ServiceError (or the service's own base) to stop on anything a vendor did.
    for case in (*CLEAROUT_CASES, *CLEVERTAP_CASES):
        assert issubclass(case[-1], ServiceError)
