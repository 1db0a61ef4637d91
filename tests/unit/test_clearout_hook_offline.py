"""The parts of ClearoutHook that need no server: result parsing, the streamed multipart body, URL,
connection-extra and secret handling. (Everything that talks HTTP is tested against the sandbox in
tests/integration, and against hostile local servers in tests/badinput.)"""

from __future__ import annotations

import email.parser
import email.policy
import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clearout_provider.clearout.models import (
    BulkProgress,
    Credits,
    FinderResult,
    FlagCheck,
    VerifyResult,
)
from clearout_provider.exceptions import ClearoutConfigError
from clearout_provider.hooks.clearout import ClearoutHook, normalise_base_url
from clearout_provider.hooks.multipart import MultipartFileBody
from clearout_provider.masking import mask_email
from clearout_provider.verdicts import Bounce, Status

TOKEN = "0123456789abcdef0123456789abcdef:" + "ab" * 32


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "https://api.clearout.io/v2"),
        ("", "https://api.clearout.io/v2"),
        ("api.clearout.io", "https://api.clearout.io/v2"),
        ("api.clearout.io/v2/", "https://api.clearout.io/v2"),
        ("http://127.0.0.1:8000/clearout/v2/", "http://127.0.0.1:8000/clearout/v2"),
        ("https://eu.example.com/v2", "https://eu.example.com/v2"),
    ],
)
def test_base_url_from_connection_host(host: str | None, url: str) -> None:
    assert normalise_base_url(host) == url


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("john.doe@example.com", "j***@example.com"),
        ("x@y.org", "x***@y.org"),
        ("nonsense", "***"),
        ("@a.b", "***"),
    ],
)
def test_mask_email(email: str, masked: str) -> None:
    assert mask_email(email) == masked


def test_hook_repr_and_pickle_hold_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLEAROUT_DEFAULT",
        f'{{"conn_type": "clearout", "host": "http://127.0.0.1:1/clearout/v2", "password": "{TOKEN}"}}',
    )
    hook = ClearoutHook(max_retries=2)
    settings = hook._settings()  # resolve the connection: the token is now in memory
    assert settings.token == TOKEN
    for text in (repr(hook), str(hook), repr(settings), str(pickle.dumps(hook))):
        assert TOKEN not in text
    assert repr(hook) == "ClearoutHook(clearout_conn_id='clearout_default')"
    copy = pickle.loads(pickle.dumps(hook))
    assert copy.max_retries == 2 and copy._conn is None


def test_conn_type_attributes() -> None:
    assert (ClearoutHook.conn_type, ClearoutHook.default_conn_name, ClearoutHook.conn_name_attr) == (
        "clearout",
        "clearout_default",
        "clearout_conn_id",
    )
    assert ClearoutHook.hook_name == "Clearout"


def test_multipart_body_streams_a_parseable_form(tmp_path: Path) -> None:
    path = tmp_path / 'odd "name".csv'
    payload = b"Email\n" + b"".join(f"user{i}@example.com\n".encode() for i in range(20_000))
    path.write_bytes(payload)
    with MultipartFileBody(
        {"optimize": "highest_accuracy", "ignore_duplicate_file": "false"}, "file", path
    ) as body:
        chunks = list(iter(body))
        assert max(len(c) for c in chunks) <= 1 << 16  # read block by block, never whole
        raw = b"".join(chunks)
        assert len(raw) == body.len
        content_type = body.content_type
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
    assert parts["optimize"].get_content().strip() == "highest_accuracy"
    assert parts["file"].get_filename() == 'odd "name".csv'
    assert parts["file"].get_content_type() == "text/csv"
    assert parts["file"].get_payload(decode=True) == payload


def test_verify_result_normalises_types() -> None:
    result = VerifyResult.from_api(
        {
            "email_address": "a@b.com",
            "status": "Catch-All",
            "sub_status": {"code": 411, "desc": "Catch-All Server"},
            "safe_to_send": "Risky",
            "disposable": "no",
            "free": "yes",
            "role": "no",
            "gibberish": "no",
            "bounce_type": "",
            "suggested_email_address": "",
            "ai_verdict": "risky",
            "detail_info": {"account": "a", "domain": "b.com", "mx_record": "mx.b.com", "smtp_provider": ""},
            "verified_on": "2024-05-01T10:00:00.000Z",
            "time_taken": 812,
        }
    )
    assert result.status is Status.CATCH_ALL and result.sub_status_code == 411
    assert (result.free, result.disposable, result.safe_to_send) == (True, False, "risky")
    assert result.bounce_type is Bounce.NONE and result.suggested_email is None
    assert result.detail_info.smtp_provider is None and result.detail_info.mx_record == "mx.b.com"
    assert result.verified_on == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert result.time_taken_ms == 812


def test_verify_result_with_unknown_optional_fields_falls_back_to_the_sub_status() -> None:
    # status and email_address are checked by the protocol (an unknown status is a ClearoutProtocolError).
    result = VerifyResult.from_api(
        {"email_address": "a@b.com", "status": "invalid", "sub_status": {"code": 406}, "bounce_type": "odd"}
    )
    assert result.status is Status.INVALID
    assert result.bounce_type is Bounce.HARD
    assert result.sub_status_desc == "Mailbox Not Found"
    odd = VerifyResult.from_api({"email_address": "a@b.com", "status": "valid", "time_taken": 1e400})
    assert odd.time_taken_ms is None and odd.sub_status_code == 500


def test_progress_reads_either_percent_key() -> None:
    verify = BulkProgress.from_api("l1", {"progress_status": "running", "percentile": 42.5})
    finder = BulkProgress.from_api("l2", {"progress_status": "Completed", "percentage": "100"})
    assert (verify.percent, verify.finished) == (42.5, False)
    assert (finder.percent, finder.status, finder.finished) == (100.0, "completed", True)
    for odd, percent in (("NaN", 0.0), (1e400, 0.0), (-3, 0.0), (250, 100.0), ({"x": 1}, 0.0)):
        assert (
            BulkProgress.from_api("l3", {"progress_status": "running", "percentile": odd}).percent == percent
        )


def test_credits_flag_and_finder_parsing() -> None:
    credits = Credits.from_api(
        {"available_credits": 95, "credits": {"total": 100, "available_daily_verify_limit": 7}}
    )
    assert (credits.available, credits.total, credits.daily_verify_limit_remaining) == (95, 100, 7)
    flag = FlagCheck.from_api("business", {"email_address": "a@b.com", "business_account": "yes"})
    assert flag.value is True
    finder = FinderResult.from_api(
        {
            "emails": [{"email_address": "steven@apple.com", "role": "no", "business": "yes"}],
            "confidence_score": 83,
            "company": {"name": "apple"},
            "found_on": "2021-08-21T03:10:02.796Z",
        }
    )
    assert finder.email_address == "steven@apple.com" and finder.emails[0].business is True
    assert (finder.confidence_score, finder.company, finder.query_status) == (83, "apple", None)
    assert FinderResult.from_api({"emails": []}).email_address is None


def test_network_errors_are_named_without_query_strings() -> None:
    import requests

    from clearout_provider.hooks.clearout import _transport_error
    from clearout_provider.sandbox.process import free_port

    url = f"http://127.0.0.1:{free_port()}/clearout/v2/_files/x.csv?expires=1&signature=s3cr3t"
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(url, timeout=2)
    error = _transport_error("http://127.0.0.1", info.value)
    assert "s3cr3t" not in str(error) and "ConnectionError" in str(error)
    assert error.transient and error.maybe_processed is False


def connect(monkeypatch: pytest.MonkeyPatch, host: str, **extra: object) -> ClearoutHook:
    conn = {"conn_type": "clearout", "host": host, "password": TOKEN, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_CLEAROUT_DEFAULT", json.dumps(conn))
    return ClearoutHook()


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:8000/clearout/v2",
        "http://127.8.9.10/v2",
        "http://localhost:8000/v2",
        "http://LOCALHOST/v2",
        "http://[::1]:8000/v2",
        "https://api.clearout.io/v2",
        "api.clearout.io",
    ],
)
def test_https_anywhere_and_plain_http_only_on_this_machine(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    assert connect(monkeypatch, host)._settings().base_url.startswith(("http://", "https://"))


def test_plain_http_to_another_machine_needs_the_explicit_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClearoutConfigError) as info:
        connect(monkeypatch, "http://api.clearout.io/v2")._settings()
    assert "use https" in str(info.value) and "allow_insecure_http: true" in str(info.value)
    assert TOKEN not in str(info.value)
    settings = connect(monkeypatch, "http://10.0.0.5/v2", allow_insecure_http=True)._settings()
    assert settings.allow_insecure_http and settings.base_url == "http://10.0.0.5/v2"


def test_rate_limiters_start_from_the_connections_rpm(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = connect(monkeypatch, "https://api.clearout.io/v2", rpm="55", finder_rpm=40, timeout="30")
    settings = hook._settings()
    assert (settings.rpm, settings.finder_rpm, settings.timeout) == (55, 40, 30.0)
    assert (hook._buckets["verify"].initial_limit, hook._buckets["finder"].initial_limit) == (55, 40)
    defaults = connect(monkeypatch, "https://api.clearout.io/v2")
    defaults._settings()
    assert (defaults._buckets["verify"].initial_limit, defaults._buckets["finder"].initial_limit) == (10, 6)
