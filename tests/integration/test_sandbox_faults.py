"""The sandbox's runtime fault switches (``/_sandbox/faults``, via :class:`SandboxProcess`) over HTTP.

Each switch does what its settings field says while it is set, and the sandbox behaves again once it is
switched off; rates replay the same way for the same ``fault_seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from test_sandbox_clearout import FINDER, VERIFY, Clearout, csv_bytes, data_of, emails_csv, failure
from test_sandbox_clevertap import Api

from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clearout_verdicts import verdict_for
from clearout_provider.sandbox.faults import SWITCHES, Faults

FAST = {"time_scale": 0.01, "bulk_rate": 5_000, "rpm": 100_000, "finder_rpm": 100_000, "seed_contacts": 100}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with SandboxProcess(
        SandboxSettings(**FAST), log_path=tmp_path_factory.mktemp("faults") / "log"
    ) as server:
        yield server


@pytest.fixture
def sb(shared: SandboxProcess) -> Iterator[SandboxProcess]:
    """The shared server, its switches back at their start-up values after each test."""
    yield shared
    shared.reset_faults()


def _profile_record(identity: str) -> dict[str, Any]:
    return {"identity": identity, "type": "profile", "profileData": {"Plan": "pro"}}


# --- the admin routes -------------------------------------------------------------------------------------
def test_switches_are_read_set_all_or_none_and_reset(sb: SandboxProcess) -> None:
    start = sb.faults()
    assert list(start) == list(SWITCHES) and start == Faults().as_dict()
    now = sb.set_faults(stuck_lists=True, clevertap_down_paths=["/1/upload"], progress_status_override="x")
    assert (now["stuck_lists"], now["clevertap_down_paths"], now["progress_status_override"]) == (
        True, ["/1/upload"], "x",
    )  # fmt: skip
    for bad in ({"no_such_switch": 1}, {"fault_rate_503": 1.5}, {"download_resets": -1},
                {"stuck_lists": "yes"}, {"clevertap_down_paths": ["upload"]}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            sb.set_faults(fault_rate_524=0.5, **bad)
    assert sb.faults() == now, "a rejected update changes nothing"
    assert sb.reset_faults() == start and sb.faults() == start
    unauthorised = requests.post(f"{sb.url}/_sandbox/faults", json={"stuck_lists": True}, timeout=30)
    assert unauthorised.status_code == 401 and requests.get(f"{sb.url}/_sandbox/faults").status_code == 401
    bearer = {"Authorization": f"Bearer {sb.settings.clearout_token}"}
    assert requests.get(f"{sb.url}/_sandbox/faults", headers=bearer, timeout=30).json() == start


def test_start_up_values_come_from_the_settings(sandbox_factory: Callable[..., SandboxProcess]) -> None:
    settings = SandboxSettings(instant_malformed=0.25, clevertap_down_paths=("/1/upload",),
                               progress_status_override="queued", result_url_ttl=5.0)  # fmt: skip
    server = sandbox_factory(settings)
    faults = server.faults()
    assert (faults["instant_malformed"], faults["clevertap_down_paths"]) == (0.25, ["/1/upload"])
    assert (faults["progress_status_override"], faults["result_url_ttl"]) == ("queued", 5.0)
    server.set_faults(instant_malformed=0.0)
    assert server.reset_faults()["instant_malformed"] == 0.25


# --- Clearout -------------------------------------------------------------------------------------------
def test_503_and_524_rates_switch_on_and_off_at_run_time(sb: SandboxProcess) -> None:
    co = Clearout(sb)
    before = co.stats()
    sb.set_faults(fault_rate_503=1.0)
    unavailable = co.get("/email_verify/getcredits")
    assert unavailable.status_code == 503 and unavailable.content == b""
    sb.set_faults(fault_rate_503=0.0, fault_rate_524=1.0)
    assert co.get("/email_verify/getcredits").status_code == 200
    failure(co.post("/email_verify/instant", {"email": "valid@example.com"}), 524, None)
    sb.set_faults(fault_rate_524=0.0)
    assert co.instant("valid@example.com")["status"] == "valid"
    after = co.stats()
    assert (after["faults_503"], after["faults_524"]) == (before["faults_503"] + 1, before["faults_524"] + 1)


def test_instant_malformed_alternates_two_bodies_and_charges_nothing(sb: SandboxProcess) -> None:
    co = Clearout(sb)
    email = "malformed.check@corp.com"
    assert verdict_for(email).billable
    before = co.stats()
    sb.set_faults(instant_malformed=1.0)
    bodies = [co.post("/email_verify/instant", {"email": email}) for _ in range(4)]
    assert {b.status_code for b in bodies} == {200}
    shapes = [b.json() for b in bodies]
    assert shapes[0] != shapes[1] and shapes[:2] == shapes[2:]
    assert sorted(shapes[:2], key=len) == [{"status": "success"}, {"status": "success", "data": {}}]
    assert data_of(co.post("/email/verify/role", {"email": "role@example.com"}))["role_account"] == "yes"
    after = co.stats()
    assert (
        after["credits_used"] == before["credits_used"]
        and after["faults_malformed"] == before["faults_malformed"] + 4
    )
    sb.set_faults(instant_malformed=0.0)
    assert co.instant(email)["email_address"] == email
    assert co.stats()["credits_used"] == before["credits_used"] + 1


@pytest.mark.parametrize("kind", [VERIFY, FINDER])
def test_upload_without_list_id_accepts_and_charges_nothing(sb: SandboxProcess, kind: str) -> None:
    co = Clearout(sb)
    content = csv_bytes(["Name", "Domain", "Email"], [["Ann Lee", "acme.com", "ann.lee@acme.com"]])
    before = co.stats()
    sb.set_faults(upload_without_list_id=True)
    answer = co.upload(kind, f"no-id-{kind}.csv", content)
    assert answer.status_code == 200 and answer.json() == {"status": "success", "data": {}}
    after = co.stats()
    assert after["lists"] == before["lists"] and after["credits_used"] == before["credits_used"]
    assert (after["bulk_uploads"], after["finder_uploads"]) == (
        before["bulk_uploads"],
        before["finder_uploads"],
    )
    assert after["uploads_without_list_id"] == before["uploads_without_list_id"] + 1
    sb.set_faults(upload_without_list_id=False)
    co.wait(kind, co.list_of(kind, f"no-id-{kind}.csv", content))


def test_progress_status_override_reports_the_given_status_for_every_list(sb: SandboxProcess) -> None:
    co = Clearout(sb)
    verify = co.list_of(VERIFY, "override.csv", emails_csv(["valid@example.com"]))
    finder = co.list_of(
        FINDER, "override-people.csv", csv_bytes(["Name", "Domain"], [["Ann Lee", "acme.com"]])
    )
    co.wait(VERIFY, verify)
    co.wait(FINDER, finder)
    sb.set_faults(progress_status_override="weird_status")
    assert co.progress(VERIFY, verify) == {"progress_status": "weird_status", "percentile": 100}
    assert co.progress(FINDER, finder) == {"progress_status": "weird_status", "percentage": 100}
    failure(co.get("/email_verify/bulk/progress_status", list_id="0" * 24), 200, 1008)
    sb.set_faults(progress_status_override=None)
    assert co.progress(VERIFY, verify)["progress_status"] == "completed"


def test_stuck_lists_freeze_progress_and_charges_until_switched_off(
    sandbox_factory: Callable[..., SandboxProcess],
) -> None:
    server = sandbox_factory(SandboxSettings(bulk_rate=400))
    co = Clearout(server)
    emails = [f"stuck{i}@hold{i}.com" for i in range(1_500)]
    held = co.list_of(VERIFY, "held.csv", emails_csv(emails))
    while co.stats()["lists"][held]["processed"] == 0:
        time.sleep(0.05)
    server.set_faults(stuck_lists=True)
    frozen = co.stats()
    late = co.list_of(VERIFY, "late.csv", emails_csv(["valid@example.com", "late@hold.com"]))
    time.sleep(0.6)  # long enough for 240 rows at the list's rate: none may be processed meanwhile
    stats = co.stats()
    assert stats["lists"][held] == frozen["lists"][held] and stats["lists"][held]["status"] == "running"
    assert stats["lists"][late]["processed"] == 0 and stats["credits_used"] == frozen["credits_used"]
    assert co.progress(VERIFY, held)["progress_status"] == "running"
    server.set_faults(stuck_lists=False)
    assert co.wait(VERIFY, held, timeout=60)["progress_status"] == "completed"
    assert co.wait(VERIFY, late)["progress_status"] == "completed"
    charged = co.stats()["lists"]
    assert charged[held]["charged"] == sum(verdict_for(e).billable for e in emails)


def _received(url: str) -> tuple[bytes, bool]:
    """The body bytes a download got, and whether the connection broke before the body ended."""
    got = bytearray()
    try:
        with requests.get(url, stream=True, timeout=60) as response:
            assert response.status_code == 200
            for chunk in response.iter_content(1024):
                got += chunk
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
        return bytes(got), True
    return bytes(got), False


def test_download_resets_cut_the_next_downloads_after_n_bytes(sb: SandboxProcess) -> None:
    co = Clearout(sb)
    list_id = co.list_of(VERIFY, "resets.csv", emails_csv([f"r{i}@reset.com" for i in range(3_000)]))
    co.wait(VERIFY, list_id)
    url = co.result_url(VERIFY, list_id)
    whole, broken = _received(url)
    assert not broken and len(whole) > 100_000
    before = co.stats()["download_resets"]
    sb.set_faults(download_reset_after_bytes=100_000, download_resets=2)
    for _ in range(2):
        assert _received(url) == (whole[:100_000], True)
    assert sb.faults()["download_resets"] == 0
    assert _received(url) == (whole, False), "the next download behaves"
    sb.set_faults(download_reset_after_bytes=0, download_resets=1)
    assert _received(url) == (b"", True)
    assert co.stats()["download_resets"] == before + 3


def test_result_url_ttl_is_changed_at_run_time(sb: SandboxProcess) -> None:
    co = Clearout(sb)
    list_id = co.list_of(VERIFY, "ttl-runtime.csv", emails_csv(["valid@example.com"]))
    co.wait(VERIFY, list_id)
    sb.set_faults(result_url_ttl=0.0)
    expired = requests.get(co.result_url(VERIFY, list_id), timeout=60)
    assert expired.status_code == 403 and "<Message>Request has expired</Message>" in expired.text
    sb.set_faults(result_url_ttl=300.0)
    assert requests.get(co.result_url(VERIFY, list_id), timeout=60).status_code == 200


# --- CleverTap ------------------------------------------------------------------------------------------
def test_clevertap_down_everywhere_or_under_path_prefixes(sb: SandboxProcess) -> None:
    api = Api(sb)
    down = {"status": "fail", "error": "Service Unavailable", "code": 503}
    before = api.stats()["faults_down"]
    sb.set_faults(clevertap_down=True)
    answers = (
        api.post("/upload", json={"d": [_profile_record("10000001")]}),
        api.get("/profile.json?identity=10000001"),
        api.post("/profiles.json", json={}),
    )
    for response in answers:
        assert (response.status_code, response.json()) == (503, down)
    sb.set_faults(clevertap_down=False, clevertap_down_paths=["/1/upload", "/clevertap/1/subscribe"])
    assert api.post("/upload", json={"d": [_profile_record("10000001")]}).status_code == 503
    unsubscribe = {"d": [{"type": "email", "value": "valid@example.com", "status": "Unsubscribe"}]}
    assert api.post("/subscribe", json=unsubscribe).status_code == 503
    assert api.get("/profile.json?identity=10000001").status_code == 200
    sb.set_faults(clevertap_down_paths=[])
    assert api.post("/upload", json={"d": [_profile_record("10000001")]}).json()["status"] == "success"
    assert api.stats()["faults_down"] == before + 5


def test_clevertap_503_and_429_rates_switch_on_and_off(sb: SandboxProcess) -> None:
    api = Api(sb)
    sb.set_faults(clevertap_fault_rate_429=1.0)
    throttled = api.get("/profile.json?identity=10000001")
    assert (throttled.status_code, throttled.json()) == (
        429, {"status": "fail", "error": "Too many concurrent requests", "code": 429},
    )  # fmt: skip
    sb.set_faults(clevertap_fault_rate_429=0.0, clevertap_fault_rate_503=1.0)
    assert api.get("/profile.json?identity=10000001").status_code == 503
    sb.set_faults(clevertap_fault_rate_503=0.0)
    assert api.get("/profile.json?identity=10000001").status_code == 200


def _rejected_numbers(body: dict[str, Any]) -> list[int]:
    return [int(entry["error"].rsplit(": ", 1)[1]) for entry in body["unprocessed"]]


def test_clevertap_reject_rate_rejects_the_same_records_on_every_retry(sb: SandboxProcess) -> None:
    api = Api(sb)
    batch = [_profile_record(f"reject-me-{i}") for i in range(40)]
    sb.set_faults(clevertap_reject_rate=0.5)
    first = api.post("/upload", json={"d": batch}).json()
    assert first["status"] == "partial" and 8 <= len(first["unprocessed"]) <= 32
    assert first["processed"] + len(first["unprocessed"]) == 40
    entry = first["unprocessed"][0]
    number = _rejected_numbers(first)[0]
    assert entry == {
        "status": "fail",
        "code": 515,
        "error": f"Profile data is incorrect. Email is not valid.Skipped record number : {number}",
        "record": batch[number - 1],
    }
    retry = api.post("/upload", json={"d": batch}).json()
    assert _rejected_numbers(retry) == _rejected_numbers(first)
    rejected = {f"reject-me-{n - 1}" for n in _rejected_numbers(first)}
    for record in batch[:10]:
        found = api.get(f"/profile.json?identity={record['identity']}").status_code
        assert found == (404 if record["identity"] in rejected else 200), "a rejected record is not saved"
    sb.set_faults(clevertap_reject_rate=0.0)
    assert api.post("/upload", json={"d": batch}).json() == {
        "status": "success",
        "processed": 40,
        "unprocessed": [],
    }


# --- replay ---------------------------------------------------------------------------------------------
def _fault_trace(server: SandboxProcess) -> tuple[list[str], list[int], list[int]]:
    """What 16 instant calls, 16 CleverTap calls and one upload meet under 50 % rates set at run time."""
    server.set_faults(instant_malformed=0.5, clevertap_fault_rate_429=0.5)
    co, api = Clearout(server), Api(server)
    instant = [co.post("/email_verify/instant", {"email": "valid@example.com"}).text[:30] for _ in range(16)]
    clevertap = [api.get("/profile.json?identity=10000001").status_code for _ in range(16)]
    server.set_faults(clevertap_fault_rate_429=0.0, clevertap_reject_rate=0.5)
    body = api.post("/upload", json={"d": [_profile_record(f"replay-{i}") for i in range(20)]}).json()
    return instant, clevertap, _rejected_numbers(body)


def test_rates_replay_for_the_same_fault_seed(sandbox_factory: Callable[..., SandboxProcess]) -> None:
    first = _fault_trace(sandbox_factory(SandboxSettings(seed_contacts=10, fault_seed=3)))
    second = _fault_trace(sandbox_factory(SandboxSettings(seed_contacts=10, fault_seed=3)))
    other = _fault_trace(sandbox_factory(SandboxSettings(seed_contacts=10, fault_seed=4)))
    assert first == second
    assert len(set(first[0])) > 1 and set(first[1]) == {200, 429} and first[2]
    assert other != first
