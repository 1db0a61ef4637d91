"""CleverTapHook against the CleverTap sandbox over real loopback HTTP (connections from AIRFLOW_CONN_*)."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clearout_provider.clevertap_errors import (
    CleverTapAuthError,
    CleverTapBadRequest,
    CleverTapConfigError,
    CleverTapError,
    CleverTapProtocolError,
    CleverTapRateLimited,
    CleverTapServerError,
)
from clearout_provider.hooks.clevertap import (
    REGION_HOSTS,
    CleverTapHook,
    interpret_response,
    resolve_base_url,
)
from clearout_provider.hooks.clevertap_models import EXPORT_BASE_COLUMNS, VERIFICATION_PROPERTIES
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clevertap_seed import object_id_of

SETTINGS = SandboxSettings()
PASSCODE = SETTINGS.clevertap_passcode
FAST = {"retry_wait": 0.01, "retry_max_wait": 0.05, "not_ready_wait": 0.01, "throttle_wait": 0.02}


def connect(
    monkeypatch: pytest.MonkeyPatch,
    server: SandboxProcess | None,
    *,
    conn_id: str = "clevertap_default",
    passcode: str = PASSCODE,
    region: str | None = "eu1",
    host: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Point connection ``conn_id`` at ``server`` (or at a region when ``server`` is None)."""
    conn: dict[str, Any] = {
        "conn_type": "clevertap",
        "login": SETTINGS.clevertap_account_id,
        "password": passcode,
    }
    if server is not None:
        conn["host"] = f"{server.url}/clevertap"
    if host is not None:
        conn["host"] = host
    if region is not None or extra:
        conn["extra"] = ({"region": region} if region is not None else {}) | (extra or {})
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def stats(server: SandboxProcess) -> Counter[str]:
    return Counter(server.clevertap_stats())


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One server for the tests that only read, or write to profiles no other test reads."""
    settings = SandboxSettings(seed_contacts=2000, clevertap_cursor_not_ready=1, clevertap_throttle_every=5)
    with SandboxProcess(settings, log_path=tmp_path_factory.mktemp("ct") / "sandbox.log") as server:
        yield server


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, shared: SandboxProcess) -> CleverTapHook:
    connect(monkeypatch, shared)
    return CleverTapHook(**FAST)


# --- connection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("region", list(REGION_HOSTS))
def test_every_region_resolves_to_its_api_host(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    connect(monkeypatch, None, region=f" {region.upper()} ")
    expected = "https://api.clevertap.com" if region == "eu1" else f"https://{region}.api.clevertap.com"
    assert CleverTapHook().base_url == expected


def test_region_defaults_to_eu1_and_host_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    connect(monkeypatch, None, region=None)
    assert CleverTapHook().base_url == "https://api.clevertap.com"
    assert resolve_base_url("in1", "proxy.internal/clevertap/") == "https://proxy.internal/clevertap"
    assert resolve_base_url("in1", "http://127.0.0.1/clevertap", 8765) == "http://127.0.0.1:8765/clevertap"


def test_region_typo_is_a_named_error_listing_the_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    connect(monkeypatch, None, region="eu2")
    hook = CleverTapHook()
    with pytest.raises(CleverTapConfigError) as err:
        hook.upload_profiles([{"identity": "1", "profileData": {"a": 1}}])
    assert "'eu2'" in str(err.value) and all(r in str(err.value) for r in REGION_HOSTS)
    ok, message = hook.test_connection()
    assert not ok and "eu2" in message


def test_connection_without_passcode_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLEVERTAP_DEFAULT", json.dumps({"conn_type": "clevertap", "login": "X"}))
    with pytest.raises(CleverTapConfigError, match="Passcode"):
        CleverTapHook().get_profile(identity="1")


def test_test_connection_against_the_sandbox(monkeypatch: pytest.MonkeyPatch, shared: SandboxProcess) -> None:
    connect(monkeypatch, shared)
    ok, message = CleverTapHook().test_connection()
    assert ok and SETTINGS.clevertap_account_id in message
    connect(monkeypatch, shared, passcode="WRONG-PASSCODE")
    ok, message = CleverTapHook().test_connection()
    assert not ok and "Passcode is not valid" in message and "region" in message


def test_provider_registers_the_clevertap_connection_form() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook_info = ProvidersManagerTaskRuntime().hooks["clevertap"]
    assert (
        hook_info is not None
        and hook_info.hook_class_name == "clearout_provider.hooks.clevertap.CleverTapHook"
    )
    pm = ProvidersManager()
    region = pm.connection_form_widgets["extra__clevertap__region"].field
    assert region["schema"]["enum"] == list(REGION_HOSTS) and region["value"] == "eu1"
    assert pm.field_behaviours["clevertap"]["relabeling"] == {
        "login": "Account ID",
        "password": "Passcode",
        "host": "Host override (optional)",
    }


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"status": "fail", "error": "Account ID is not valid", "code": 401}, CleverTapAuthError),
        (429, {"status": "fail", "error": "Too many concurrent requests", "code": 429}, CleverTapRateLimited),
        (503, None, CleverTapServerError),
        (400, {"status": "fail", "error": "batch_size too big", "code": 400}, CleverTapBadRequest),
        (200, {"status": "fail", "error": "Something request-level", "code": 555}, CleverTapBadRequest),
        (200, "not json", CleverTapProtocolError),
        (200, ["a", "list"], CleverTapProtocolError),
        (302, None, CleverTapConfigError),
    ],
)
def test_interpret_response_decides_in_one_place(status: int, body: Any, expected: type[Exception]) -> None:
    with pytest.raises(expected) as err:
        interpret_response(status, body)
    # Only what a resend can fix is transient; an unreadable answer is not resent (it may have been applied).
    assert isinstance(err.value, CleverTapError) and err.value.transient == (status in (429, 503))


def test_vendor_text_in_messages_is_bounded_and_masks_the_passcode() -> None:
    body = {"status": "fail", "error": f"bad passcode {PASSCODE} " + "x" * 5000, "code": 400}
    with pytest.raises(CleverTapBadRequest) as err:
        interpret_response(400, body, secrets=(PASSCODE,))
    assert PASSCODE not in str(err.value) and len(err.value.message) < 600


@pytest.mark.parametrize(
    "host",
    ["http://api.clevertap.example/clevertap", "http://10.1.2.3:8765/clevertap"],
)
def test_plain_http_to_another_machine_is_refused(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    connect(monkeypatch, None, host=host)
    with pytest.raises(CleverTapConfigError) as err:
        CleverTapHook().get_profile(identity="1")
    assert "use https" in str(err.value) and "allow_insecure_http: true" in str(err.value)
    assert PASSCODE not in str(err.value)
    connect(monkeypatch, None, host=host, extra={"allow_insecure_http": "true"})
    assert CleverTapHook().base_url == host  # the explicit opt-in (a trusted network) is honoured


def test_loopback_http_is_the_sandbox_and_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("http://127.0.0.1:1/clevertap", "http://localhost:1/clevertap", "http://[::1]:1/clevertap"):
        connect(monkeypatch, None, host=host)
        assert CleverTapHook().base_url == host


def test_waitable_and_per_record_answers_are_returned() -> None:
    assert (
        interpret_response(400, {"status": "fail", "code": 2})["code"] == 2
    )  # not ready, whatever the status
    partial = {"status": "fail", "processed": 0, "unprocessed": [{"code": 515}]}
    assert interpret_response(200, partial) is partial


# --- export -------------------------------------------------------------------------------------------
def test_export_streams_every_page_and_waits_out_not_ready_cursors(
    hook: CleverTapHook, shared: SandboxProcess, tmp_path: Path
) -> None:
    before = stats(shared)
    result = hook.export_profiles({}, tmp_path / "all.parquet", batch_size=150)
    after = stats(shared)
    pages = math.ceil(2000 / 150)
    assert (result.count, result.pages) == (2000, pages)
    waits = (after["not_ready"] - before["not_ready"]) + (after["throttled"] - before["throttled"])
    assert after["not_ready"] - before["not_ready"] == pages  # every cursor was "not ready" once
    assert after["throttled"] > before["throttled"]
    assert result.requests == 1 + pages + waits
    frame = pd.read_parquet(result.path)
    assert list(frame.columns) == [*EXPORT_BASE_COLUMNS, *VERIFICATION_PROPERTIES]
    assert len(frame) == 2000 and frame["objectId"].is_unique
    assert frame.loc[0, "objectId"] == object_id_of(0) and frame.loc[0, "identity"] == "10000000"
    assert "role@example.com" in set(frame["email"])  # only in profileData.Email at the source
    assert frame["identity"].isna().sum() > 50  # anonymous profiles keep their objectId
    dates = frame["Clearout Verified At"].dropna()
    assert len(dates) > 200 and dates.str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").all()
    assert frame["Clearout Sub Status"].isna().all()  # column present though no profile has it


def test_export_filtered_to_csv(hook: CleverTapHook, tmp_path: Path) -> None:
    cut = 20250101
    query = {"common_profile_properties": {"profile_fields": [
        {"name": "Email", "operator": "exists"},
        {"name": "Clearout Verified At", "operator": "less_than", "value": cut},
    ]}}  # fmt: skip
    result = hook.export_profiles(
        query, tmp_path / "stale.csv", batch_size=5000, properties=["Clearout Verified At"]
    )
    frame = pd.read_csv(result.path, dtype=str)
    assert result.pages == 1 and len(frame) == result.count > 0
    assert list(frame.columns) == [*EXPORT_BASE_COLUMNS, "Clearout Verified At"]
    assert (pd.to_datetime(frame["Clearout Verified At"]) < datetime(2025, 1, 1, tzinfo=UTC)).all()


def test_export_refuses_bad_arguments_and_leaves_no_partial_file(hook: CleverTapHook, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        hook.export_profiles({}, tmp_path / "x.parquet", batch_size=5001)
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        hook.export_profiles({}, tmp_path / "x.json")
    with pytest.raises(CleverTapBadRequest, match="future"):
        hook.export_profiles(
            {"event_name": "App Launched", "from": 20990101, "to": 20990102}, tmp_path / "x.csv"
        )
    assert list(tmp_path.iterdir()) == []


# --- upload -------------------------------------------------------------------------------------------
def test_upload_reports_partial_failures_per_row(
    hook: CleverTapHook, shared: SandboxProcess, tmp_path: Path
) -> None:
    verified = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    records = [
        {
            "identity": "10001000",
            "profileData": {"Clearout Verification Status": "valid", "Clearout Verified At": verified},
        },
        {"identity": "10001001", "profileData": {"Email": "broken@@example.com"}},  # CleverTap: 515
        {"profileData": {"Clearout Verification Status": "valid"}},  # local: no identifier
        {"identity": "10001003", "profileData": {"Clearout Notes": "x" * 600}},  # local: value > 512 bytes
        # CleverTap: 526
        {"objectId": "__unknown", "profileData": {"Clearout Verification Status": "invalid"}},
        {"identity": "10001005", "profileData": {"Clearout: Status": "valid"}},  # local: forbidden ':'
        {"objectId": object_id_of(1006), "profileData": {"Clearout Verification Status": "invalid"}},
        {"identity": "10001007", "profileData": {"Phone": "call me"}},  # CleverTap: 516
    ]  # fmt: skip
    before = stats(shared)
    report = hook.upload_profiles(records, batch_size=2, max_concurrency=3)
    after = stats(shared)
    assert (report.received, report.sent, report.processed, report.batches) == (8, 5, 2, 3)
    assert report.received == report.processed + len(report.rejections)
    assert report.sent == report.processed + report.rejected
    outcome = {r.row: (r.code, r.stage) for r in report.rejections}
    assert outcome == {1: (515, "api"), 2: (523, "local"), 3: (522, "local"), 4: (526, "api"),
                       5: (521, "local"), 7: (516, "api")}  # fmt: skip
    by_row = {r.row: r for r in report.rejections}
    assert by_row[1].identity == "10001001" and "Email is not valid" in by_row[1].error
    assert by_row[4].object_id == "__unknown" and "Skipped record number" not in by_row[4].error
    assert "600 bytes" in by_row[3].error and "':'" in by_row[5].error
    assert after["records_processed"] - before["records_processed"] == 2
    assert after["records_rejected"] - before["records_rejected"] == 3  # local rejections never sent
    data = hook.get_profile(identity="10001000")["profileData"]  # type: ignore[index]
    assert data["Clearout Verified At"] == f"$D_{int(verified.timestamp())}"
    assert (
        hook.get_profile(object_id=object_id_of(1006))["profileData"]["Clearout Verification Status"]
        == "invalid"
    )  # type: ignore[index]


def test_property_rule_violations_are_never_sent(hook: CleverTapHook, shared: SandboxProcess) -> None:
    records = [
        {"identity": "10001100", "profileData": {"k" * 121: "v"}},
        {"identity": "10001101", "profileData": {"Status#": "v"}},
        {"identity": "10001102", "profileData": {"Bio": "é" * 257}},  # 514 bytes
        {"identity": "10001103", "profileData": {"Score": float("nan")}},
        {"identity": "10001104", "profileData": {"Status": None}},
        {"identity": "10001105", "profileData": {}},
    ]
    before = stats(shared)
    report = hook.upload_profiles(records)
    assert stats(shared)["upload_calls"] == before["upload_calls"]
    assert (report.sent, report.invalid) == (0, 6)
    assert [r.code for r in report.rejections] == [521, 521, 522, 522, 522, 524]
    assert "121 bytes" in report.rejections[0].error and "514 bytes" in report.rejections[2].error


def test_dry_run_sends_but_saves_nothing(hook: CleverTapHook, shared: SandboxProcess) -> None:
    records = [{"identity": "10001200", "profileData": {"Plan": "dry"}},
               {"identity": "dry-run-newcomer", "profileData": {"Plan": "dry"}},
               {"identity": "10001202", "profileData": {"Email": "nope"}}]  # fmt: skip
    before = stats(shared)
    report = hook.upload_profiles(records, dry_run=True)
    assert report.dry_run and report.processed == 2 and [r.code for r in report.rejections] == [515]
    assert stats(shared)["dry_run_calls"] == before["dry_run_calls"] + 1
    assert "Plan" not in hook.get_profile(identity="10001200")["profileData"]  # type: ignore[index]
    assert hook.get_profile(identity="dry-run-newcomer") is None


def test_429_answers_are_retried_until_every_batch_lands(
    monkeypatch: pytest.MonkeyPatch, sandbox_factory: Callable[..., SandboxProcess]
) -> None:
    server = sandbox_factory(SandboxSettings(seed_contacts=100, clevertap_max_concurrency=2, latency_ms=50))
    connect(monkeypatch, server)
    records = (
        {"identity": f"load-{n}", "profileData": {"Clearout Verification Status": "valid"}}
        for n in range(6000)
    )
    report = CleverTapHook(**FAST, max_retries=20).upload_profiles(records, batch_size=500, max_concurrency=8)
    seen = stats(server)
    assert report.ok and report.processed == 6000 and report.batches == 12
    assert seen["too_many_requests"] > 0 and report.requests == 12 + seen["too_many_requests"]
    assert seen["records_processed"] == 6000 and seen["max_concurrent"] == 2


def test_server_errors_are_retried_and_an_outage_fails_the_upload(
    monkeypatch: pytest.MonkeyPatch, sandbox_factory: Callable[..., SandboxProcess]
) -> None:
    flaky = sandbox_factory(SandboxSettings(seed_contacts=100, clevertap_fault_rate_503=0.4, fault_seed=3))
    connect(monkeypatch, flaky)
    rows = [{"identity": f"1000000{n}", "profileData": {"Plan": "pro"}} for n in range(10)]
    report = CleverTapHook(**FAST, max_retries=10).upload_profiles(rows, batch_size=1)
    assert report.ok and report.processed == 10 and stats(flaky)["faults_503"] > 0

    # An outage is not "every row rejected" (a green task): it raises, and Airflow retries the task.
    down = sandbox_factory(SandboxSettings(seed_contacts=100, clevertap_fault_rate_503=1.0))
    connect(monkeypatch, down)
    with pytest.raises(CleverTapServerError) as err:
        CleverTapHook(**FAST, max_retries=2).upload_profiles(rows, batch_size=4, max_concurrency=1)
    assert err.value.http_status == 503
    assert any("0 confirmed before this error" in note for note in err.value.__notes__)
    # The failing batch made 1 + 2 attempts; the next one may have started (it then finishes its own
    # attempts), the one queued behind it is cancelled: never 3 x 3.
    assert stats(down)["faults_503"] in (3, 6)
    with pytest.raises(CleverTapServerError):
        CleverTapHook(**FAST, max_retries=0).subscribe(["a@example.com"])


def test_429_that_outlasts_the_backoff_fails_the_upload(
    monkeypatch: pytest.MonkeyPatch, sandbox_factory: Callable[..., SandboxProcess]
) -> None:
    server = sandbox_factory(SandboxSettings(seed_contacts=100, clevertap_max_concurrency=1, latency_ms=300))
    connect(monkeypatch, server)
    rows = ({"identity": f"busy-{n}", "profileData": {"Plan": "pro"}} for n in range(40))
    with pytest.raises(CleverTapRateLimited) as err:
        CleverTapHook(**FAST, max_retries=1).upload_profiles(rows, batch_size=10, max_concurrency=4)
    assert err.value.transient and err.value.http_status == 429  # transient: Airflow's retry may succeed
    assert stats(server)["too_many_requests"] >= 2  # the failing batch was retried before giving up


def test_bad_credentials_abort_the_upload(monkeypatch: pytest.MonkeyPatch, shared: SandboxProcess) -> None:
    connect(monkeypatch, shared, passcode="WRONG-PASSCODE")
    with pytest.raises(CleverTapAuthError):
        CleverTapHook(**FAST).upload_profiles([{"identity": "1", "profileData": {"a": 1}}])


# --- subscribe / profile ----------------------------------------------------------------------------------
def test_subscribe_shows_on_the_profiles_of_that_address(hook: CleverTapHook) -> None:
    report = hook.subscribe(["spamtrap@example.com", "not an address", "  "], "Unsubscribe")
    assert report.processed == 1 and [(r.row, r.code, r.stage) for r in report.rejections] == [
        (1, 515, "api"),
        (2, 515, "local"),
    ]
    assert report.rejections[0].email == "not an address"
    assert hook.get_profile(email="spamtrap@example.com")["subscription"] == {"email": "Unsubscribed"}  # type: ignore[index]
    hook.subscribe(["SPAMTRAP@example.com"], "Resubscribe")
    assert hook.get_profile(email="spamtrap@example.com")["subscription"] == {"email": "Resubscribed"}  # type: ignore[index]
    with pytest.raises(ValueError, match="Unsubscribe"):
        hook.subscribe(["a@example.com"], "Pause")


def test_get_profile(hook: CleverTapHook) -> None:
    assert hook.get_profile(identity="10000003")["email"] == "unknown@example.com"  # type: ignore[index]
    assert hook.get_profile(email="nobody@nowhere.example") is None
    with pytest.raises(ValueError):
        hook.get_profile(email="a@example.com", identity="1")


# --- secrets and personal data --------------------------------------------------------------------------
def test_passcode_never_reaches_logs_messages_or_repr(
    monkeypatch: pytest.MonkeyPatch,
    shared: SandboxProcess,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "ZZ-SECRET-PASSCODE-93"
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    connect(monkeypatch, shared, conn_id="ct_wrong", passcode=secret)
    wrong = CleverTapHook("ct_wrong", **FAST)
    texts += [repr(wrong), repr(wrong.credentials), str(wrong.test_connection())]
    for call in (
        lambda: wrong.export_profiles({}, tmp_path / "x.csv"),
        lambda: wrong.upload_profiles([{"identity": "1", "profileData": {"a": 1}}]),
        lambda: wrong.get_profile(identity="1"),
    ):
        with pytest.raises(CleverTapAuthError) as err:
            call()
        texts += [str(err.value), repr(err.value), repr(err.value.args)]
    connect(monkeypatch, shared, conn_id="ct_typo", passcode=secret, region="xx9")
    with pytest.raises(CleverTapConfigError) as typo:
        CleverTapHook("ct_typo").get_profile(identity="1")
    texts.append(str(typo.value))

    connect(monkeypatch, shared)
    hook = CleverTapHook(**FAST)  # the sandbox's own passcode, in a full successful round trip
    hook.export_profiles({}, tmp_path / "ok.csv", batch_size=1000)
    hook.upload_profiles([{"identity": "someone.private@secret-domain.com", "profileData": {"Bad.Key": 1}}])
    texts += [repr(hook), repr(hook.credentials), caplog.text]
    assert all(secret not in t and PASSCODE not in t for t in texts)
    assert "someone.private@" not in caplog.text and "s***@secret-domain.com" in caplog.text
