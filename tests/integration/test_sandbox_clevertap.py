"""The CleverTap sandbox answers like CleverTap (fact sheet), over real loopback HTTP.

Seed and query-language details are checked in-process (they are pure functions); everything a
client sees — auth, cursors, envelopes, codes, limits, persistence — is checked over HTTP.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests

from clearout_provider.clevertap_rules import parse_date_value
from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.sandbox.clearout_verdicts import TEST_ADDRESSES
from clearout_provider.sandbox.clevertap_cql import CqlError, compile_query
from clearout_provider.sandbox.clevertap_seed import (
    SeedProfiles,
    index_of_identity,
    index_of_object_id,
    object_id_of,
)
from clearout_provider.sandbox.clevertap_store import ProfileStore
from clearout_provider.sandbox.clevertap_validation import email_problem

SETTINGS = SandboxSettings()
HEADERS = {
    "X-CleverTap-Account-Id": SETTINGS.clevertap_account_id,
    "X-CleverTap-Passcode": SETTINGS.clevertap_passcode,
}


class Api:
    """A thin client of one sandbox's CleverTap routes (the tests' view of the wire)."""

    def __init__(self, server: SandboxProcess) -> None:
        self.base = f"{server.url}/clevertap/1"
        self.session = requests.Session()
        self.session.headers.update(HEADERS)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, timeout=30, **kwargs)

    def stats(self) -> Counter[str]:
        return Counter(self.get("/_sandbox/stats").json()["stats"])

    def export(self, query: dict[str, Any], batch_size: int) -> list[requests.Response]:
        cursor = self.post(f"/profiles.json?batch_size={batch_size}", json=query).json()["cursor"]
        pages = []
        while cursor:
            page = self.get(f"/profiles.json?cursor={cursor}")
            pages.append(page)
            cursor = page.json().get("next_cursor")
        return pages

    def profile(self, **params: str) -> dict[str, Any]:
        return self.get("/profile.json", params=params).json()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """Read-only tests share one server (1000 seeded profiles)."""
    log = tmp_path_factory.mktemp("clevertap") / "sandbox.log"
    with SandboxProcess(SandboxSettings(seed_contacts=1000), log_path=log) as server:
        yield Api(server)


@pytest.fixture
def api_for(sandbox_factory: Callable[..., SandboxProcess]) -> Callable[..., Api]:
    """A dedicated server (for tests that change state or need special settings)."""
    return lambda **settings: Api(sandbox_factory(SandboxSettings(**settings)))


# --- seed -------------------------------------------------------------------------------------------
def test_seed_is_a_pure_function_of_the_index() -> None:
    day = date(2025, 6, 1)
    a, b = SeedProfiles(500_000, day), SeedProfiles(10, day)
    for i in (0, 7, 33, 999, 123_456):
        assert a.profile(i) == b.profile(i)
    assert a.profile(5) != a.profile(6)
    store = ProfileStore(SeedProfiles(1_000_000, day))
    last = store.record(999_999)
    assert store.key_of_object_id(last["platformInfo"][0]["objectId"]) == 999_999
    assert store.overlay == {} and store.size == 1_000_000  # nothing materialised


def test_seed_holds_the_mix_a_cleaning_pipeline_must_handle() -> None:
    seed = SeedProfiles(3000, date(2025, 6, 1))
    profiles = [seed.profile(i) for i in range(seed.count)]
    top = [p.email for p in profiles if p.email is not None]
    lowered = Counter(e.lower() for e in top if e)
    assert {f"{local}@example.com" for local in TEST_ADDRESSES} <= set(top)
    assert lowered["valid@example.com"] >= 3  # same address on several profiles, one upper-cased
    assert any(e != e.lower() and lowered[e.lower()] > 1 for e in top if e)
    assert sum(1 for e in top if e and email_problem(e)) >= 30  # malformed
    assert sum(1 for e in top if e == "") >= 30
    assert sum(1 for p in profiles if p.email is None and not p.email_in_profile_data) >= 30  # missing
    assert sum(1 for p in profiles if p.email_in_profile_data) >= 10
    assert sum(1 for p in profiles if p.identity is None) >= 50  # anonymous: objectId only
    domains = Counter(e.rpartition("@")[2].lower() for e in top if e and "@" in e)
    assert domains["gmail.com"] > 50 and any(d.endswith(".io") for d in domains)  # free mail and companies
    verified = [p for p in profiles if "Clearout Verified At" in p.profile_data]
    assert len(verified) > 300
    ages = [
        (seed.anchor_epoch - parse_date_value(p.profile_data["Clearout Verified At"])) / 86_400
        for p in verified
    ]
    assert min(ages) > 80 and max(ages) < 900


def test_identities_and_object_ids_map_back_to_their_index() -> None:
    assert index_of_identity("10000042") == 42
    assert index_of_identity("042") is None and index_of_identity("abc") is None
    assert index_of_object_id(object_id_of(123)) == 123
    assert index_of_object_id(object_id_of(123)[:-1] + "0") is None


# --- auth, limits, latency, faults ----------------------------------------------------------------------
def test_bad_credentials_answer_401_in_clevertap_shape(shared: Api) -> None:
    url = shared.base + "/profile.json?identity=10000001"
    assert requests.get(url, timeout=10).json() == {
        "status": "fail",
        "error": "Account ID is not valid",
        "code": 401,
    }
    wrong = requests.get(url, headers={**HEADERS, "X-CleverTap-Passcode": "nope"}, timeout=10)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "Passcode is not valid")
    assert requests.get(shared.base + "/_sandbox/stats", timeout=10).status_code == 401


def test_concurrency_limit_answers_429(api_for: Callable[..., Api]) -> None:
    api = api_for(clevertap_max_concurrency=2, latency_ms=300)
    answers: list[requests.Response] = []

    def call() -> None:
        answers.append(
            requests.get(api.base + "/profile.json?identity=10000001", headers=HEADERS, timeout=10)
        )

    threads = [threading.Thread(target=call) for _ in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started >= 0.3  # latency applies
    codes = Counter(a.status_code for a in answers)
    assert codes[200] >= 2 and codes[429] >= 1
    assert next(a for a in answers if a.status_code == 429).json() == {
        "status": "fail",
        "error": "Too many concurrent requests",
        "code": 429,
    }
    stats = api.stats()
    assert stats["max_concurrent"] == 2 and stats["too_many_requests"] == codes[429]


def test_fault_injection_answers_503(api_for: Callable[..., Api]) -> None:
    api = api_for(clevertap_fault_rate_503=1.0)
    assert api.get("/profile.json?identity=10000001").status_code == 503
    assert api.stats()["faults_503"] == 1


# --- export -------------------------------------------------------------------------------------------
def test_export_pages_through_all_profiles_with_percent_encoded_cursors(shared: Api) -> None:
    first = shared.post("/profiles.json?batch_size=300", json={}).json()
    assert first["status"] == "success" and all(t in first["cursor"] for t in ("%2B", "%2F", "%3D"))
    pages = shared.export({}, 300)
    sizes = [len(p.json()["records"]) for p in pages]
    assert sizes == [300, 300, 300, 100]  # ceil(1000 / 300) pages, the last one not empty
    assert "next_cursor" not in pages[-1].json()
    records = [r for p in pages for r in p.json()["records"]]
    assert len({r["platformInfo"][0]["objectId"] for r in records}) == 1000
    sample = records[0]
    assert sample["email"] == "valid@example.com" and sample["identity"] == "10000000"
    assert {"profileData", "events", "platformInfo", "name"} <= set(sample)


def test_legacy_get_query_form_starts_an_export(shared: Api) -> None:
    query = quote(
        '{"common_profile_properties":{"profile_fields":[{"name":"Email","operator":"equals","value":"valid@example.com"}]}}'
    )
    cursor = shared.get(f"/profiles.json?query={query}&batch_size=10").json()["cursor"]
    records = shared.get(f"/profiles.json?cursor={cursor}").json()["records"]
    assert [r["email"] for r in records] == ["valid@example.com", "valid@example.com"]


def test_reencoded_or_decoded_cursors_are_rejected(shared: Api) -> None:
    cursor = shared.post("/profiles.json?batch_size=10", json={}).json()["cursor"]
    for broken in (quote(cursor, safe=""), unquote(cursor)):
        answer = shared.get(f"/profiles.json?cursor={broken}")
        assert answer.status_code == 400 and "without re-encoding" in answer.json()["error"]
    assert shared.get(f"/profiles.json?cursor={cursor}").status_code == 200


@pytest.mark.parametrize("size", [0, 5001, "many"])
def test_batch_size_outside_1_to_5000_is_rejected(shared: Api, size: object) -> None:
    answer = shared.post(f"/profiles.json?batch_size={size}", json={})
    assert answer.status_code == 400 and answer.json()["status"] == "fail"


def test_cursor_not_ready_and_throttling(api_for: Callable[..., Api]) -> None:
    api = api_for(seed_contacts=30, clevertap_cursor_not_ready=2, clevertap_throttle_every=4)
    cursor = api.post("/profiles.json?batch_size=20", json={}).json()["cursor"]
    answers = [api.get(f"/profiles.json?cursor={cursor}").json() for _ in range(5)]
    assert [a.get("code") for a in answers] == [
        2,
        2,
        None,
        1,
        None,
    ]  # the same cursor, served twice once ready
    assert answers[2]["records"] == answers[4]["records"] and len(answers[2]["records"]) == 20
    assert answers[3]["status"] == "fail"
    second = api.get(f"/profiles.json?cursor={answers[2]['next_cursor']}").json()
    assert second["code"] == 2  # every new cursor has to get ready


def _matching(api: Api, fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pages = api.export({"common_profile_properties": {"profile_fields": fields}}, 5000)
    return [r for p in pages for r in p.json()["records"]]


def test_profile_field_filters(shared: Api) -> None:
    everyone = _matching(shared, [])
    with_email = _matching(shared, [{"name": "Email", "operator": "exists"}])
    without = _matching(shared, [{"name": "Email", "operator": "does_not_exist"}])
    assert len(with_email) + len(without) == len(everyone) == 1000 and len(without) > 0
    assert all(not r.get("email") and not r["profileData"].get("Email") for r in without)
    assert any(
        "email" not in r and r["profileData"].get("Email") for r in with_email
    )  # profileData.Email counts

    gmail = _matching(shared, [{"name": "Email", "operator": "contains", "value": "@gmail.com"}])
    assert gmail and all("@gmail.com" in (r.get("email") or r["profileData"]["Email"]) for r in gmail)
    not_gmail = _matching(shared, [{"name": "Email", "operator": "does_not_contain", "value": "@gmail.com"}])
    assert len(gmail) + len(not_gmail) == 1000

    gold = _matching(shared, [{"name": "Customer Type", "operator": "equals", "value": ["Gold", "Platinum"]}])
    others = _matching(
        shared, [{"name": "Customer Type", "operator": "not_equals", "value": ["Gold", "Platinum"]}]
    )
    assert len(gold) + len(others) == 1000 and {r["profileData"]["Customer Type"] for r in gold} == {
        "Gold",
        "Platinum",
    }

    many = _matching(shared, [{"name": "Orders", "operator": "greater_than", "value": 30}])
    assert many and all(r["profileData"]["Orders"] > 30 for r in many)
    mid = _matching(shared, [{"name": "Orders", "operator": "between", "value": [10, 12]}])
    assert mid and {r["profileData"]["Orders"] for r in mid} == {10, 11, 12}
    news = _matching(shared, [{"name": "Newsletter", "operator": "equals", "value": "True"}])
    assert news and all(r["profileData"]["Newsletter"] is True for r in news)

    never = _matching(shared, [{"name": "Clearout Verified At", "operator": "does_not_exist"}])
    verified = _matching(shared, [{"name": "Clearout Verified At", "operator": "exists"}])
    assert len(never) + len(verified) == 1000 and verified


def test_date_comparisons_accept_yyyymmdd_and_d_epoch(shared: Api) -> None:
    cut = datetime.now(UTC) - timedelta(days=365)
    as_int = int(cut.strftime("%Y%m%d"))
    midnight = int(datetime(cut.year, cut.month, cut.day, tzinfo=UTC).timestamp())
    old = _matching(shared, [{"name": "Clearout Verified At", "operator": "less_than", "value": as_int}])
    same = _matching(
        shared, [{"name": "Clearout Verified At", "operator": "less_than", "value": f"$D_{midnight}"}]
    )
    recent = _matching(
        shared, [{"name": "Clearout Verified At", "operator": "greater_than_equals", "value": as_int}]
    )
    verified = _matching(shared, [{"name": "Clearout Verified At", "operator": "exists"}])
    assert old and recent and old == same and len(old) + len(recent) == len(verified)
    assert all(parse_date_value(r["profileData"]["Clearout Verified At"]) < midnight for r in old)


def test_event_queries_and_their_date_range(shared: Api) -> None:
    today = datetime.now(UTC).date()
    recent = {"event_name": "App Launched", "from": int((today - timedelta(days=30)).strftime("%Y%m%d")),
              "to": int(today.strftime("%Y%m%d"))}  # fmt: skip
    records = [r for p in shared.export(recent, 5000) for r in p.json()["records"]]
    start = int(datetime(*(today - timedelta(days=30)).timetuple()[:3], tzinfo=UTC).timestamp())
    assert 0 < len(records) < 1000 and all(r["events"]["App Launched"]["last_seen"] >= start for r in records)

    future = dict(recent, to=int((today + timedelta(days=1)).strftime("%Y%m%d")))
    answer = shared.post("/profiles.json?batch_size=10", json=future)
    assert answer.status_code == 400 and "future" in answer.json()["error"]
    backwards = dict(recent, **{"from": recent["to"], "to": recent["from"]})
    assert shared.post("/profiles.json?batch_size=10", json=backwards).status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        {"segment_id": 12},
        {"common_profile_properties": {"profile_fields": [{"name": "Email", "operator": "matches"}]}},
        {"common_profile_properties": {"profile_fields": [{"name": "Orders", "operator": "greater_than"}]}},
        {
            "common_profile_properties": {
                "profile_fields": [{"name": "Orders", "operator": "less_than", "value": "x"}]
            }
        },
        {"from": 20250101, "to": 20250102},
    ],
)
def test_unsupported_or_malformed_queries_are_400_not_ignored(shared: Api, query: dict[str, Any]) -> None:
    answer = shared.post("/profiles.json?batch_size=10", json=query)
    assert answer.status_code == 400 and answer.json()["error"]
    with pytest.raises(CqlError):
        compile_query(query, date.today())


# --- upload / subscribe / profile ------------------------------------------------------------------------
def test_upload_reports_each_bad_record_with_code_and_number(api_for: Callable[..., Api]) -> None:
    api = api_for(seed_contacts=100)
    now = int(time.time())
    batch = [
        {"identity": "10000050", "type": "profile", "ts": now,
         "profileData": {"Clearout Verification Status": "valid"}},
        {"identity": "10000051", "type": "profile", "profileData": {"Email": "bad@@example.com"}},
        {"type": "profile", "profileData": {"Plan": "pro"}},
        {"identity": "10000052", "type": "profile", "ts": 0, "profileData": {"Plan": "pro"}},
        {"identity": "10000053", "type": "profile", "ts": now * 1000, "profileData": {"Plan": "pro"}},
        {"objectId": "__doesnotexist", "type": "profile", "profileData": {"Plan": "pro"}},
        {"identity": "10000054", "type": "profile", "profileData": {"Bad.Key": 1}},
        {"identity": "10000055", "type": "profile", "profileData": {"Notes": "x" * 513}},
        {"identity": "10000056", "profileData": {"Plan": "pro"}},
        {"identity": "10000057", "type": "profile", "profileData": {"Phone": "12345"}},
        {"identity": "brand-new-customer", "type": "profile",
         "profileData": {"Plan": "trial", "Email": "New@Example.com"}},
        {"objectId": object_id_of(58), "type": "profile", "profileData": {"Orders": {"$incr": 2}}},
    ]  # fmt: skip
    body = api.post("/upload", json={"d": batch}).json()
    assert body["status"] == "partial" and body["processed"] == 3
    codes = {e["error"].rsplit(": ", 1)[1]: e["code"] for e in body["unprocessed"]}
    assert codes == {
        "2": 515,
        "3": 523,
        "4": 525,
        "5": 525,
        "6": 526,
        "7": 521,
        "8": 522,
        "9": 524,
        "10": 516,
    }
    first = body["unprocessed"][0]
    assert first["error"] == "Profile data is incorrect. Email is not valid.Skipped record number : 2"
    assert first["record"] == batch[1]

    assert (
        api.profile(identity="10000050")["record"]["profileData"]["Clearout Verification Status"] == "valid"
    )
    created = api.profile(identity="brand-new-customer")["record"]
    assert created["email"] == "New@Example.com" and created["profileData"] == {"Plan": "trial"}
    before = SeedProfiles(100).profile(58).profile_data["Orders"]
    assert api.profile(objectId=object_id_of(58))["record"]["profileData"]["Orders"] == before + 2
    stats = api.stats()
    assert (stats["records_processed"], stats["records_rejected"]) == (3, 9)


def test_upload_envelope_fail_and_request_limits(api_for: Callable[..., Api]) -> None:
    api = api_for(seed_contacts=10)
    all_bad = api.post("/upload", json={"d": [{"type": "profile", "profileData": {"a": 1}}]}).json()
    assert all_bad["status"] == "fail" and all_bad["processed"] == 0
    good = {"identity": "10000001", "type": "profile", "profileData": {"Plan": "pro"}}
    assert api.post("/upload", json={"d": [good]}).json() == {
        "status": "success",
        "processed": 1,
        "unprocessed": [],
    }
    assert api.post("/upload", json={"d": [good] * 1000}).json()["processed"] == 1000
    too_many = api.post("/upload", json={"d": [good] * 1001})
    assert too_many.status_code == 400 and "1000" in too_many.json()["error"]
    assert api.post("/upload", json={"d": []}).status_code == 400
    assert api.post("/upload", data=b"{not json").status_code == 400


def test_dry_run_validates_without_saving(shared: Api) -> None:
    api = shared
    before = api.stats()["dry_run_calls"]
    batch = [
        {"identity": "10000002", "type": "profile", "profileData": {"Plan": "dry"}},
        {"identity": "someone-new", "type": "profile", "profileData": {"Plan": "dry"}},
        {"identity": "10000003", "type": "profile", "profileData": {"Email": "nope"}},
    ]
    body = api.post("/upload?dryRun=1", json={"d": batch}).json()
    assert (body["status"], body["processed"], body["unprocessed"][0]["code"]) == ("partial", 2, 515)
    assert "Plan" not in api.profile(identity="10000002")["record"]["profileData"]
    assert api.get("/profile.json?identity=someone-new").status_code == 404
    assert api.stats()["dry_run_calls"] == before + 1


def test_subscribe_is_stored_per_address_and_shown_on_every_profile(shared: Api) -> None:
    api = shared
    body = api.post("/subscribe", json={"d": [
        {"type": "email", "value": "valid@example.com", "status": "Unsubscribe"},
        {"type": "email", "value": "not an email", "status": "Unsubscribe"},
        {"type": "email", "value": "role@example.com", "status": "Pause"},
    ]}).json()  # fmt: skip
    assert body["status"] == "partial" and [e["code"] for e in body["unprocessed"]] == [515, 524]
    sharing = [
        api.profile(identity=str(10_000_000 + i))["record"] for i in (0, 33, 34)
    ]  # incl. Valid@Example.COM
    assert [r["subscription"] for r in sharing] == [{"email": "Unsubscribed"}] * 3
    assert "subscription" not in api.profile(identity="10000001")["record"]
    api.post(
        "/subscribe", json={"d": [{"type": "email", "value": "VALID@example.com", "status": "Resubscribe"}]}
    )
    assert api.profile(email="valid@example.com")["record"]["subscription"] == {"email": "Resubscribed"}


def test_profile_lookup(shared: Api) -> None:
    by_email = shared.profile(email="SPAMTRAP@example.com")
    assert by_email["status"] == "success" and by_email["record"]["email"] == "spamtrap@example.com"
    assert shared.get("/profile.json?email=nobody@example.org").status_code == 404
    assert shared.get("/profile.json").status_code == 400


def test_state_dir_keeps_changes_across_restarts(tmp_path: Path) -> None:
    settings = SandboxSettings(seed_contacts=50, state_dir=str(tmp_path / "state"))
    with SandboxProcess(settings) as server:
        api = Api(server)
        api.post("/upload", json={"d": [
            {"identity": "10000005", "type": "profile",
             "profileData": {"Clearout Verification Status": "invalid", "MSG-email": False}},
            {"identity": "late-signup", "type": "profile", "profileData": {"Email": "late@example.com"}},
        ]})  # fmt: skip
        api.post(
            "/subscribe",
            json={"d": [{"type": "email", "value": "spamtrap@example.com", "status": "Unsubscribe"}]},
        )
    with SandboxProcess(settings) as server:
        api = Api(server)
        data = api.profile(identity="10000005")["record"]["profileData"]
        assert data["Clearout Verification Status"] == "invalid" and data["MSG-email"] is False
        assert api.profile(email="late@example.com")["record"]["identity"] == "late-signup"
        assert api.profile(email="spamtrap@example.com")["record"]["subscription"] == {
            "email": "Unsubscribed"
        }
        assert api.get("/_sandbox/stats").json()["profiles"] == 51


def test_cli_options_of_the_clevertap_sandbox() -> None:
    from clearout_provider.sandbox.cli import build_parser, settings_from_args

    argv = ["--clevertap-account-id", "ACC-1", "--clevertap-passcode", "PASS-1", "--seed-contacts", "1000000",
            "--latency-ms", "200", "--state-dir", "/tmp/x", "--clevertap-max-concurrency", "3",
            "--clevertap-cursor-not-ready", "2", "--clevertap-throttle-every", "7"]  # fmt: skip
    assert settings_from_args(build_parser().parse_args(argv)) == SandboxSettings(
        clevertap_account_id="ACC-1",
        clevertap_passcode="PASS-1",
        seed_contacts=1_000_000,
        latency_ms=200,
        state_dir="/tmp/x",
        clevertap_max_concurrency=3,
        clevertap_cursor_not_ready=2,
        clevertap_throttle_every=7,
    )
