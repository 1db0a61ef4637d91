"""The Clearout sandbox over real loopback HTTP: the wire behaviour the hook is built against.

Raw ``requests`` calls (no hook), so these tests pin the sandbox itself to clearout-api.md and the wire
contract: envelope and HTTP codes, Joi 400s, auth forms, credits, limits, bulk lists, the finder, faults.
Time is compressed (``time_scale``, small rate windows, fast ``bulk_rate``) so the suite takes seconds.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openpyxl import Workbook

from clearout_provider.sandbox import SandboxProcess, SandboxSettings
from clearout_provider.verdicts import BULK_RESULT_COLUMNS, FINDER_RESULT_COLUMNS

TOKEN = SandboxSettings().clearout_token
VERIFY, FINDER = "verify", "finder"
_PATHS = {
    VERIFY: {
        "upload": "/email_verify/bulk",
        "progress": "/email_verify/bulk/progress_status",
        "download": "/download/result",
        "cancel": "/email_verify/list/cancel",
        "remove": "/email_verify/list/remove",
    },
    FINDER: {
        "upload": "/email_finder/bulk",
        "progress": "/email_finder/bulk/progress_status",
        "download": "/email_finder/download/result",
        "cancel": "/email_finder/list/cancel",
        "remove": "/email_finder/list/remove",
    },
}
_PROGRESS_KEY = {VERIFY: "percentile", FINDER: "percentage"}

#: Every test address the fact sheet names (newer and older spellings), independent of the sandbox's table.
# fmt: off
FACT_SHEET_TEST_ADDRESSES = (
    "invalid", "valid", "catch_all", "unknown", "safe_to_send_yes", "safe_to_send_no", "safe_to_send_risky",
    "disposable", "role", "free", "gibberish", "hard_bounce", "soft_bounce", "suggested_email_address",
    "syntax_error", "greylisted", "spamtrap", "blocklist_email_address", "allowlist_email_address",
    "blocklist_domain", "allowlist_domain", "domain_not_found", "not_a_mailserver", "mailbox_not_found",
    "mailbox_quota_exceeded", "dns_query_timeout", "unroutable_mailserver", "overquota_and_inactive",
    "receiving_limit_reached", "blacklisted_email_address", "whitelisted_email_address",
    "blacklisted_domain", "whitelisted_domain",
)
# fmt: on


class Clearout:
    """A thin raw-HTTP client for one sandbox: requests in, parsed envelopes out."""

    def __init__(self, server: SandboxProcess, token: str = TOKEN) -> None:
        self.base = server.clearout_url
        self.auth = {"Authorization": token}

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(self.base + path, params=params, headers=self.auth, timeout=60)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=self.auth, timeout=60)

    def upload(self, kind: str, name: str, content: bytes, **fields: str) -> requests.Response:
        files = {"file": (name, content)}
        return requests.post(self.base + _PATHS[kind]["upload"], files=files, data=fields, headers=self.auth,
                             timeout=120)  # fmt: skip

    def stats(self) -> dict[str, Any]:
        response = self.get("/_sandbox/stats")
        assert response.status_code == 200
        return response.json()

    def instant(self, email: str, **extra: Any) -> dict[str, Any]:
        return data_of(self.post("/email_verify/instant", {"email": email, **extra}))

    def list_of(self, kind: str, name: str, content: bytes, **fields: str) -> str:
        return data_of(self.upload(kind, name, content, **fields))["list_id"]

    def progress(self, kind: str, list_id: str) -> dict[str, Any]:
        return data_of(self.get(_PATHS[kind]["progress"], list_id=list_id))

    def wait(self, kind: str, list_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (progress := self.progress(kind, list_id))["progress_status"] == "running":
            assert time.monotonic() < deadline, f"list {list_id} still running"
            time.sleep(0.05)
        return progress

    def result_url(self, kind: str, list_id: str) -> str:
        return data_of(self.post(_PATHS[kind]["download"], {"list_id": list_id}))["url"]

    def result(self, kind: str, list_id: str) -> list[list[str]]:
        response = requests.get(self.result_url(kind, list_id), timeout=60)
        assert response.status_code == 200, response.text
        return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


def data_of(response: requests.Response) -> dict[str, Any]:
    """The ``data`` of a success envelope (fails the test with the body otherwise)."""
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (response.status_code, body)
    return body["data"]


def failure(response: requests.Response, http: int, code: int | None) -> dict[str, Any]:
    """Assert a failed envelope with this HTTP status and Clearout code; return its ``error``."""
    body = response.json()
    assert response.status_code == http, (response.status_code, body)
    assert body["status"] == "failed", body
    assert body["error"].get("code") == code, body
    return body["error"]


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def emails_csv(emails: list[str], name: str = "contacts") -> bytes:
    return csv_bytes(["id", "Email", "note"], [[str(i), e, f"{name}-{i}"] for i, e in enumerate(emails)])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One fast server for tests that only look at answers (each waits for its own lists to finish)."""
    settings = SandboxSettings(
        time_scale=0.01, instant_verify_ms=1_000, finder_search_ms=15_000, bulk_rate=5_000, rpm=100_000,
        finder_rpm=100_000,
    )  # fmt: skip
    with SandboxProcess(settings, log_path=tmp_path_factory.mktemp("clearout") / "sandbox.log") as started:
        yield started


@pytest.fixture
def co(server: SandboxProcess) -> Clearout:
    return Clearout(server)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """Lists that take seconds (40 rows/s), one at a time per kind, result URLs valid for 1 s."""
    settings = SandboxSettings(bulk_rate=40, max_bulk_lists=1, result_url_ttl=1.0)
    with SandboxProcess(settings, log_path=tmp_path_factory.mktemp("clearout") / "slow.log") as started:
        yield started


@pytest.fixture
def slow(slow_server: SandboxProcess) -> Iterator[Clearout]:
    """The slow server, left with no running list (so each test gets the one bulk slot of each kind)."""
    client = Clearout(slow_server)
    yield client
    for list_id, info in client.stats()["lists"].items():
        if info["status"] == "running":
            client.post(_PATHS[info["kind"]]["cancel"], {"list_id": list_id})


# --- plumbing: auth, content type, validation, rate headers -------------------------------------------
@pytest.mark.parametrize("header", [TOKEN, f"Bearer {TOKEN}", f"Bearer:{TOKEN}"])
def test_all_three_authorization_forms_are_accepted(server: SandboxProcess, header: str) -> None:
    data = data_of(
        requests.get(server.clearout_url + "/email_verify/getcredits", headers={"Authorization": header})
    )
    assert data["available_credits"] == data["credits"]["available"] >= 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN[:-1]}])
def test_missing_or_wrong_token_is_401_code_1000(server: SandboxProcess, headers: dict[str, str]) -> None:
    response = requests.get(server.clearout_url + "/email_verify/getcredits", headers=headers)
    assert failure(response, 401, 1000)["message"] == "Invalid API Token, please generate new token"
    assert response.headers["x-ratelimit-limit"] == "100000"


def test_json_post_needs_json_content_type_415(co: Clearout) -> None:
    response = requests.post(co.base + "/email_verify/instant", data='{"email":"valid@example.com"}',
                             headers={**co.auth, "Content-Type": "text/plain"})  # fmt: skip
    assert response.status_code == 415
    assert response.json()["error"]["message"] == "Invalid Content Type. Must be application/json"
    charset = requests.post(
        co.base + "/email_verify/instant",
        data=b'{"email":"valid@example.com"}',
        headers={**co.auth, "Content-Type": "application/json; charset=utf-8"},
    )
    assert data_of(charset)["status"] == "valid"


@pytest.mark.parametrize(
    ("path", "body", "field", "message", "kind"),
    [
        ("/email_verify/instant", {}, "email", '"email" is required', "any.required"),
        ("/email_verify/instant", {"email": ""}, "email", '"email" is not allowed to be empty', "any.empty"),
        ("/email_verify/instant", {"email": 42}, "email", '"email" must be a string', "string.base"),
        ("/email_verify/instant", {"email": "a@b.co", "timeout": 180_001}, "timeout",
         '"timeout" must be less than or equal to 180000', "number.max"),
        ("/email_verify/instant", {"email": "a@b.co", "timeout": "soon"}, "timeout",
         '"timeout" must be a number', "number.base"),
        ("/email/verify/role", {"email": ""}, "email", '"email" is not allowed to be empty', "any.empty"),
        ("/email_finder/instant", {"name": "Ann Lee", "domain": "x.com", "timeout": 9_999}, "timeout",
         '"timeout" must be larger than or equal to 10000', "number.min"),
        ("/email_finder/instant", {"name": "", "domain": "x.com"}, "name",
         '"name" is not allowed to be empty', "any.empty"),
        ("/email_finder/instant", {"name": "Ann Lee", "domain": "x.com", "queue": "maybe"}, "queue",
         '"queue" must be a boolean', "boolean.base"),
        ("/download/result", {}, "list_id", '"list_id" is required', "any.required"),
        ("/email_verify/list/cancel", {"list_id": ""}, "list_id", '"list_id" is not allowed to be empty',
         "any.empty"),
        ("/email_finder/list/remove", {"list_id": "a" * 24, "ignore_result": "perhaps"}, "ignore_result",
         '"ignore_result" must be a boolean', "boolean.base"),
    ],
)  # fmt: skip
def test_bad_json_input_is_a_joi_400(
    co: Clearout, path: str, body: dict, field: str, message: str, kind: str
) -> None:
    error = failure(co.post(path, body), 400, None)
    assert error["message"] == "validation failed"
    assert {"field": [field], "location": "body", "messages": [message], "types": [kind]} in error["reasons"]


@pytest.mark.parametrize(("path", "field"), [("/email_verify/bulk/progress_status", "list_id"),
                                             ("/email_finder/instant/queue_status", "qid")])  # fmt: skip
def test_missing_query_parameter_is_a_joi_400_in_query(co: Clearout, path: str, field: str) -> None:
    error = failure(co.get(path), 400, None)
    assert error["reasons"] == [
        {
            "field": [field],
            "location": "query",
            "messages": [f'"{field}" is required'],
            "types": ["any.required"],
        }
    ]


def test_a_body_that_is_not_a_json_object_is_a_400(co: Clearout) -> None:
    assert failure(co.post("/email_verify/instant", ["valid@example.com"]), 400, None)["reasons"][0][
        "types"
    ] == ["object.base"]


@pytest.mark.parametrize(
    ("fields", "field", "kind"),
    [({"optimize": "cheapest"}, "optimize", "any.allowOnly"),
     ({"ignore_duplicate_file": "yes"}, "ignore_duplicate_file", "any.allowOnly")],
)  # fmt: skip
def test_bad_upload_options_are_a_joi_400(
    co: Clearout, fields: dict[str, str], field: str, kind: str
) -> None:
    error = failure(co.upload(VERIFY, "opts.csv", emails_csv(["valid@example.com"]), **fields), 400, None)
    assert error["reasons"][0]["field"] == [field] and error["reasons"][0]["types"] == [kind]


def test_upload_without_a_file_is_a_joi_400(co: Clearout) -> None:
    response = requests.post(
        co.base + "/email_verify/bulk", data={"optimize": "highest_accuracy"}, headers=co.auth
    )
    assert failure(response, 400, None)["reasons"][0]["messages"] == ['"file" is required']


def test_every_response_carries_rate_headers(co: Clearout) -> None:
    """Bulk / credit endpoints report the verify bucket without consuming it; instant calls consume it."""
    responses = [
        co.get("/email_verify/getcredits"),
        co.get("/email_verify/bulk/progress_status", list_id="f" * 24),
        co.post("/download/result", {"list_id": "f" * 24}),
        co.get("/email_finder/bulk/progress_status", list_id="f" * 24),
    ]
    remaining = {int(r.headers["x-ratelimit-remaining"]) for r in responses}
    assert len(remaining) == 1, "non-instant endpoints must not consume the quota"
    for response in responses:
        assert response.headers["x-ratelimit-limit"] == "100000"
        assert re.fullmatch(r"\d+(\.\d{1,3})?", response.headers["x-ratelimit-reset"])
        assert 0 <= float(response.headers["x-ratelimit-reset"]) <= 60
    instant = co.post("/email_verify/instant", {"email": "valid@example.com"})
    assert int(instant.headers["x-ratelimit-remaining"]) == remaining.pop() - 1


def test_rate_limit_fixed_window_429_code_1030(sandbox_factory: Callable[..., SandboxProcess]) -> None:
    co = Clearout(sandbox_factory(SandboxSettings(rpm=3, finder_rpm=2, rate_window=1.0)))
    answers = [co.post("/email/verify/free", {"email": "free@example.com"}) for _ in range(3)]
    assert [int(r.headers["x-ratelimit-remaining"]) for r in answers] == [2, 1, 0]
    limited = co.post("/email_verify/instant", {"email": "valid@example.com"})
    error = failure(limited, 429, 1030)
    assert error["message"].startswith("You have reached API rate limit, try calling after ")
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert 0 < float(limited.headers["x-ratelimit-reset"]) <= 1.0
    # The finder has its own bucket, and bulk / credit endpoints are not limited.
    finder = co.get("/email_finder/instant/queue_status", qid="a" * 24)
    assert failure(finder, 200, 1104) and finder.headers["x-ratelimit-limit"] == "2"
    assert finder.headers["x-ratelimit-remaining"] == "1"
    assert data_of(co.get("/email_verify/getcredits"))["available_credits"] == 100_000
    time.sleep(float(limited.headers["x-ratelimit-reset"]) + 0.05)
    again = co.post("/email_verify/instant", {"email": "valid@example.com"})
    assert data_of(again)["status"] == "valid" and again.headers["x-ratelimit-remaining"] == "2"
    assert co.stats()["rate_limited"] == 1


# --- verdicts -----------------------------------------------------------------------------------------
_DOCUMENTED: dict[str, dict[str, Any]] = {
    "valid": {"status": "valid", "code": 200, "safe_to_send": "yes"},
    "invalid": {"status": "invalid"},
    "catch_all": {"status": "catch_all", "code": 411},
    "unknown": {"status": "unknown"},
    "safe_to_send_yes": {"safe_to_send": "yes"},
    "safe_to_send_no": {"safe_to_send": "no"},
    "safe_to_send_risky": {"safe_to_send": "risky"},
    "disposable": {"disposable": "yes"},
    "role": {"role": "yes"},
    "free": {"free": "yes"},
    "gibberish": {"gibberish": "yes"},
    "hard_bounce": {"status": "invalid", "bounce_type": "hard"},
    "soft_bounce": {"status": "invalid", "bounce_type": "soft"},
    "syntax_error": {"status": "invalid", "code": 400, "bounce_type": "hard"},
    "greylisted": {"status": "unknown", "code": 407},
    "spamtrap": {"status": "invalid", "code": 401},
    "blocklist_email_address": {"status": "invalid", "code": 602},
    "allowlist_email_address": {"status": "valid", "code": 601},
    "blocklist_domain": {"status": "invalid", "code": 604},
    "allowlist_domain": {"status": "valid", "code": 603},
    "blacklisted_email_address": {"code": 602},
    "whitelisted_email_address": {"code": 601},
    "blacklisted_domain": {"code": 604},
    "whitelisted_domain": {"code": 603},
    "domain_not_found": {"status": "invalid", "code": 403},
    "not_a_mailserver": {"status": "invalid", "code": 404},
    "mailbox_not_found": {"status": "invalid", "code": 406},
    "mailbox_quota_exceeded": {"status": "invalid", "code": 413, "bounce_type": "soft"},
    "dns_query_timeout": {"status": "unknown", "code": 417},
    "overquota_and_inactive": {"status": "invalid", "code": 428},
    "receiving_limit_reached": {"status": "invalid", "code": 421},
}


@pytest.mark.parametrize("name", FACT_SHEET_TEST_ADDRESSES)
def test_documented_test_address_outcome(co: Clearout, name: str) -> None:
    data = co.instant(f"{name.upper()}@Example.com")  # test addresses are case-insensitive
    assert data["email_address"] == f"{name.upper()}@Example.com"
    expected = _DOCUMENTED.get(name, {})
    actual = {**data, "code": data["sub_status"]["code"]}
    assert {key: actual[key] for key in expected} == expected
    assert data["status"] in ("valid", "invalid", "catch_all", "unknown")
    assert data["safe_to_send"] in ("yes", "no", "risky", "unknown")
    if name == "suggested_email_address":
        assert data["suggested_email_address"]


def test_test_addresses_are_free_and_other_addresses_are_not(
    sandbox_factory: Callable[..., SandboxProcess],
) -> None:
    co = Clearout(sandbox_factory(SandboxSettings(credits=3)))
    for name in FACT_SHEET_TEST_ADDRESSES:
        co.instant(f"{name}@example.com")
    assert co.stats()["credits_used"] == 0
    # Unknown results are free, valid / invalid / catch-all cost one credit each.
    charged = 0
    for i in range(40):
        status = co.instant(f"someone{i}@acme-{i}.io")["status"]
        charged += status != "unknown"
        assert co.stats()["credits_used"] == charged
        if charged == 3:
            break
    assert charged == 3
    short = co.post("/email_verify/instant", {"email": "another@acme.io"})
    assert failure(short, 402, 1002)["message"].startswith("You have exhausted your credits")
    assert co.instant("valid@example.com")["status"] == "valid", "test addresses work without credits"


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("jane.doe@gmail.com", {"free": "yes"}),
        ("Mary@Outlook.com", {"free": "yes"}),
        ("info@acme-widgets.com", {"role": "yes"}),
        ("support@acme-widgets.com", {"role": "yes"}),
        ("temp.user@mailinator.com", {"disposable": "yes"}),
        ("not-an-address", {"status": "invalid", "code": 400, "bounce_type": "hard", "safe_to_send": "no"}),
        ("two@@signs.com", {"status": "invalid", "code": 400}),
        ("josé@acme.com", {"status": "invalid", "code": 606}),
        ("bob@gmial.com", {"status": "invalid", "suggested_email_address": "bob@gmail.com"}),
        ("xkcdqrtz@acme.com", {"gibberish": "yes"}),
    ],
)
def test_generated_verdict_rules(co: Clearout, email: str, expected: dict[str, Any]) -> None:
    data = co.instant(email)
    actual = {**data, "code": data["sub_status"]["code"]}
    assert {key: actual[key] for key in expected} == expected


def test_disposable_addresses_are_never_safe_to_send(co: Clearout) -> None:
    answers = [co.instant(f"user{i}@yopmail.com") for i in range(12)]
    assert {a["safe_to_send"] for a in answers} <= {"no", "risky"}
    assert {a["status"] for a in answers} == {"valid", "invalid"}


def _bulk_verdict(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row[c] for c in ("Clearout Verification Status", "Clearout Reason", "Clearout Safe to Send",
                                  "Clearout Bounce Type", "Clearout Free Account Status",
                                  "Clearout Role Account Status", "Clearout Disposable Status"))  # fmt: skip


def _instant_verdict(data: dict[str, Any]) -> tuple[str, ...]:
    label = {"valid": "Valid", "invalid": "Invalid", "catch_all": "Catch All", "unknown": "Unknown"}
    return (label[data["status"]], data["sub_status"]["desc"], data["safe_to_send"].capitalize(),
            data["bounce_type"].capitalize(), data["free"].capitalize(), data["role"].capitalize(),
            data["disposable"].capitalize())  # fmt: skip


def test_verdicts_are_a_realistic_deterministic_mix_shared_by_bulk_and_instant(co: Clearout) -> None:
    emails = [f"person{i}@company{i % 97}.org" for i in range(4000)]
    list_id = co.list_of(VERIFY, "mix.csv", emails_csv(emails))
    co.wait(VERIFY, list_id)
    header, *rows = co.result(VERIFY, list_id)
    records = [dict(zip(header, row, strict=True)) for row in rows]
    shares = {s: sum(r["Clearout Verification Status"] == s for r in records) / len(records)
              for s in ("Valid", "Invalid", "Catch All", "Unknown")}  # fmt: skip
    assert shares["Valid"] == pytest.approx(0.70, abs=0.04)
    assert shares["Invalid"] == pytest.approx(0.12, abs=0.03)
    assert shares["Catch All"] == pytest.approx(0.10, abs=0.03)
    assert shares["Unknown"] == pytest.approx(0.08, abs=0.03)
    reasons = {r["Clearout Reason"] for r in records if r["Clearout Verification Status"] == "Invalid"}
    assert {"Mailbox Not Found", "Mailbox Quota Exceeded", "Receiving Limit Reached"} <= reasons
    for record in records[:: len(records) // 25]:
        assert _instant_verdict(co.instant(record["Email"])) == _bulk_verdict(record), record["Email"]
    # Same input, same answers: a second upload (forced past the duplicate check) yields identical rows.
    again = co.list_of(VERIFY, "mix.csv", emails_csv(emails), ignore_duplicate_file="true")
    co.wait(VERIFY, again)
    verdict_columns = slice(len(header) - len(BULK_RESULT_COLUMNS), len(header) - 3)  # up to Verified At
    assert [row[verdict_columns] for row in co.result(VERIFY, again)[1:]] == [
        row[verdict_columns] for row in rows
    ]


@pytest.mark.parametrize(
    ("path", "email", "key", "expected"),
    [
        ("catchall", "catch_all@example.com", "catchall", "yes"),
        ("catchall", "valid@example.com", "catchall", "no"),
        ("disposable", "disposable@example.com", "disposable", "yes"),
        ("business", "valid@example.com", "business_account", "yes"),
        ("business", "free@example.com", "business_account", "no"),
        ("free", "someone@gmail.com", "free_account", "yes"),
        ("role", "role@example.com", "role_account", "yes"),
        ("role", "jane@acme.com", "role_account", "no"),
        ("gibberish", "gibberish@example.com", "gibberish", "yes"),
    ],
)
def test_single_flag_checks(co: Clearout, path: str, email: str, key: str, expected: str) -> None:
    data = data_of(co.post(f"/email/verify/{path}", {"email": email}))
    assert data["email_address"] == email
    assert data[key] == expected
    assert data["verified_on"].endswith("Z") and data["time_taken"] >= 0


def test_instant_verify_times_out_with_524_when_the_client_timeout_is_shorter(co: Clearout) -> None:
    """The server's verification takes 1000 ms (x time_scale 0.01 = 10 ms); a 500 ms timeout is too short."""
    response = co.post("/email_verify/instant", {"email": "valid@example.com", "timeout": 500})
    error = failure(response, 524, None)
    assert error == {
        "message": "Timeout Occurred",
        "additional_info": {"resource_name": "email", "resource_value": "valid@example.com"},
    }
    started = time.monotonic()
    assert co.instant("valid@example.com", timeout=2_000)["time_taken"] == 1_000
    assert time.monotonic() - started >= 0.01


# --- bulk verify --------------------------------------------------------------------------------------
def test_bulk_result_keeps_original_columns_and_appends_clearout_columns(co: Clearout) -> None:
    header = ["First Name", "EMAIL ADDRESS", "Plan", "Notes, with comma"]
    rows = [["Ann", "valid@example.com", "pro", 'says "hi"'], ["Bob", "invalid@example.com", "", "x,y"],
            ["Cé", "catch_all@example.com", "free", "ünïcode"], ["Dan", "", "basic"]]  # fmt: skip
    list_id = co.list_of(VERIFY, "columns.csv", csv_bytes(header, rows))
    assert re.fullmatch(r"[0-9a-f]{24}", list_id)
    assert co.wait(VERIFY, list_id) == {"progress_status": "completed", "percentile": 100}
    result = co.result(VERIFY, list_id)
    assert result[0] == header + list(BULK_RESULT_COLUMNS)
    assert [row[: len(header)] for row in result[1:]] == [r + [""] * (len(header) - len(r)) for r in rows]
    statuses = [row[len(header) + 1] for row in result[1:]]
    assert statuses == ["Valid", "Invalid", "Catch All", "Invalid"]


def test_bulk_xlsx_upload_is_read_like_csv(co: Clearout, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["Emails", "Phone", "Score"])
    sheet.append(["valid@example.com", 9876543210, 1.5])
    sheet.append(["role@example.com", None, 2])
    path = tmp_path / "contacts.xlsx"
    book.save(path)
    list_id = co.list_of(VERIFY, "contacts.xlsx", path.read_bytes())
    co.wait(VERIFY, list_id)
    header, *rows = co.result(VERIFY, list_id)
    assert header[:3] == ["Emails", "Phone", "Score"]
    assert [row[:3] for row in rows] == [
        ["valid@example.com", "9876543210", "1.5"],
        ["role@example.com", "", "2"],
    ]
    assert [row[header.index("Clearout Role Account Status")] for row in rows] == ["No", "Yes"]


@pytest.mark.parametrize(("column", "accepted"), [("Email", True), ("EMAILS", True), ("email address", True),
                                                  ("EmailAddress", True), ("E-mail", False),
                                                  ("mail", False)])  # fmt: skip
def test_email_column_rule_1004(co: Clearout, column: str, accepted: bool) -> None:
    response = co.upload(
        VERIFY, f"col-{column}.csv", csv_bytes(["name", column], [["a", "valid@example.com"]])
    )
    if accepted:
        co.wait(VERIFY, data_of(response)["list_id"])
    else:
        assert failure(response, 200, 1004)["message"].startswith("Oops!!! Unable to determine email address")


def test_a_header_without_rows_is_1004(co: Clearout) -> None:
    failure(co.upload(VERIFY, "empty.csv", b"Email\n"), 200, 1004)


@pytest.mark.parametrize(("name", "content"), [("list.txt", b"Email\na@b.com\n"), ("list.xlsx", b"not a zip"),
                                               ("list", b"Email\na@b.com\n")])  # fmt: skip
def test_unsupported_or_unreadable_file_is_1100(co: Clearout, name: str, content: bytes) -> None:
    assert failure(co.upload(VERIFY, name, content), 200, 1100)["message"] == "Invalid file type"
    assert failure(co.upload(FINDER, name, content), 200, 1100)


@pytest.mark.parametrize("kind", [VERIFY, FINDER])
def test_duplicate_file_2043_names_the_earlier_list(co: Clearout, kind: str) -> None:
    content = csv_bytes(["Name", "Domain", "Email"], [["Ann Lee", "acme.com", "valid@example.com"]])
    first = co.list_of(kind, f"dup-{kind}.csv", content)
    error = failure(co.upload(kind, f"dup-{kind}.csv", content), 200, 2043)
    assert error["additional_info"] == {"list_id": first}
    assert co.list_of(kind, f"dup-{kind}.csv", content + b"\n")  # another size is another file
    forced = co.list_of(kind, f"dup-{kind}.csv", content, ignore_duplicate_file="true")
    assert forced != first
    for list_id in (first, forced):
        co.wait(kind, list_id)


@pytest.mark.parametrize("kind", [VERIFY, FINDER])
def test_unknown_or_other_kind_list_is_1008_for_progress_and_1029_otherwise(co: Clearout, kind: str) -> None:
    """Clearout's spec documents 1008 on progress_status for a list that is gone or not yours."""
    other = FINDER if kind == VERIFY else VERIFY
    content = csv_bytes(["Name", "Domain", "Email"], [["Ann Lee", "acme.com", "valid@example.com"]])
    list_id = co.list_of(other, f"kind-{kind}.csv", content)
    co.wait(other, list_id)
    for candidate in ("0" * 24, list_id):
        progress = co.get(_PATHS[kind]["progress"], list_id=candidate)
        assert progress.status_code == 200 and progress.json() == {
            "status": "failed",
            "error": {"code": 1008, "message": "You are not authorized to access this resource"},
        }
        for action in ("download", "cancel", "remove"):
            error = failure(co.post(_PATHS[kind][action], {"list_id": candidate}), 200, 1029)
            assert error["message"] == "List is not available"


def test_presigned_result_url_needs_no_token_and_rejects_tampering(co: Clearout) -> None:
    list_id = co.list_of(VERIFY, "signed.csv", emails_csv(["valid@example.com"]))
    co.wait(VERIFY, list_id)
    url = co.result_url(VERIFY, list_id)
    assert url.startswith(co.base + f"/_files/{list_id}/signed_clearout_results.csv?")
    download = requests.get(url, stream=True)
    assert download.status_code == 200 and download.headers.get("transfer-encoding") == "chunked"
    assert download.text.splitlines()[1].startswith("0,valid@example.com,contacts-0,Yes,Valid")
    tampered = re.sub(r"signature=[0-9a-f]", "signature=x", url)
    denied = requests.get(tampered)
    assert denied.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in denied.text
    later = re.sub(r"expires=[0-9.]+", "expires=9999999999.000", url)
    assert requests.get(later).status_code == 403, "the expiry is part of the signature"


def test_expired_result_is_1007_and_its_url_stops_working(co: Clearout) -> None:
    list_id = co.list_of(VERIFY, "expiring.csv", emails_csv(["valid@example.com"]))
    co.wait(VERIFY, list_id)
    url = co.result_url(VERIFY, list_id)
    assert data_of(co.post("/_sandbox/expire", {"list_id": list_id})) == {"list_id": list_id, "expired": True}
    error = failure(co.post("/download/result", {"list_id": list_id}), 200, 1007)
    assert error["message"] == "Result file got expired, contact us@clearout.io"
    assert requests.get(url).status_code == 403
    failure(co.post("/_sandbox/expire", {"list_id": "0" * 24}), 200, 1029)


def test_bulk_credits_charge_each_unique_billable_address_once(
    sandbox_factory: Callable[..., SandboxProcess],
) -> None:
    co = Clearout(sandbox_factory(SandboxSettings(credits=1_000, bulk_rate=5_000)))
    real = [f"buyer{i}@shop{i}.net" for i in range(60)]
    emails = (
        real + [e.upper() for e in real[:20]] + ["valid@example.com", "invalid@example.com"] * 5 + ["", " "]
    )
    list_id = co.list_of(VERIFY, "credits.csv", emails_csv(emails))
    co.wait(VERIFY, list_id)
    header, *rows = co.result(VERIFY, list_id)
    status = header.index("Clearout Verification Status")
    expected = sum(row[status] != "Unknown" for row in rows[: len(real)])
    assert 40 < expected < 60, "the mix must hold both billable and free (unknown) results"
    stats = co.stats()
    assert stats["credits_used"] == stats["lists"][list_id]["charged"] == expected
    assert stats["credits_available"] == 1_000 - expected
    assert data_of(co.get("/email_verify/getcredits"))["available_credits"] == 1_000 - expected
    assert stats["bulk_uploads"] == 1


def _billable(reference: Clearout, emails: list[str]) -> list[str]:
    """The addresses whose verdict costs a credit (valid / invalid / catch-all), asked of another server."""
    return [e for e in emails if reference.instant(e)["status"] != "unknown"]


def test_bulk_upload_short_of_credits_is_1028_naming_balance_and_billable_count(
    co: Clearout, sandbox_factory: Callable[..., SandboxProcess]
) -> None:
    emails = [f"lead{i}@firm{i}.com" for i in range(30)]
    billable = _billable(co, emails)
    assert len(set(emails) - set(billable)) >= 1, "the sample must contain free unknowns"
    short = Clearout(sandbox_factory(SandboxSettings(credits=5)))
    content = emails_csv(emails + emails[:4] + ["valid@example.com", "spamtrap@example.com"])
    error = failure(short.upload(VERIFY, "big.csv", content), 402, 1028)
    assert (
        error["message"] == f"Your available credit is 5 which is not enough to verify {len(billable)} emails"
    )
    assert short.stats()["bulk_uploads"] == 0


def test_running_lists_reserve_their_credits(
    co: Clearout, sandbox_factory: Callable[..., SandboxProcess]
) -> None:
    billable = _billable(co, [f"ops{i}@plant{i}.de" for i in range(12)])[:5]
    account = Clearout(sandbox_factory(SandboxSettings(credits=5, bulk_rate=1)))
    list_id = account.list_of(VERIFY, "reserve.csv", emails_csv(billable))
    assert data_of(account.get("/email_verify/getcredits"))["available_credits"] == 5, "nothing charged yet"
    failure(account.post("/email_verify/instant", {"email": "newcomer@plant.de"}), 402, 1002)
    failure(account.upload(VERIFY, "more.csv", emails_csv(["other@plant.de"])), 402, 1002)
    assert account.stats()["credits_reserved"] == 5
    data_of(account.post("/email_verify/list/cancel", {"list_id": list_id}))
    stats = account.stats()
    assert stats["credits_reserved"] == 0 and stats["credits_used"] == stats["lists"][list_id]["charged"] <= 1
    assert account.instant("newcomer@plant.de")["email_address"] == "newcomer@plant.de"


def test_without_credits(sandbox_factory: Callable[..., SandboxProcess]) -> None:
    """1002 for verification, 1099 for the instant finder, 1028 + required_credits for the bulk finder."""
    co = Clearout(sandbox_factory(SandboxSettings(credits=0, finder_search_ms=0)))
    failure(co.post("/email_verify/instant", {"email": "jo@acme.com"}), 402, 1002)
    assert co.instant("valid@example.com")["status"] == "valid"
    failure(co.upload(VERIFY, "real.csv", emails_csv(["jo@acme.com", "al@acme.com"])), 402, 1002)
    free_list = co.list_of(VERIFY, "tests.csv", emails_csv(["valid@example.com", "invalid@example.com"]))
    assert co.wait(VERIFY, free_list)["progress_status"] == "completed"
    error = failure(co.post("/email_finder/instant", {"name": "Ann Lee", "domain": "acme.com"}), 402, 1099)
    assert error["message"] == "You do not have sufficient credits for instant email finder"
    people = csv_bytes(
        ["Name", "Domain"], [["Ann Lee", "acme.com"], ["Bo Chen", "acme.com"], ["Ann Lee", "acme.com"]]
    )
    error = failure(co.upload(FINDER, "people.csv", people), 402, 1028)
    assert error["additional_info"] == {"required_credits": 8}
    assert error["message"] == (
        "Your available credits 0 is not enough to find 2 email addresses from the list, "
        "so please purchase 8 more credits"
    )
    assert co.stats()["credits_used"] == 0


def test_daily_verify_limit_1017(sandbox_factory: Callable[..., SandboxProcess]) -> None:
    co = Clearout(sandbox_factory(SandboxSettings(daily_verify_limit=5)))
    credits = data_of(co.get("/email_verify/getcredits"))["credits"]
    assert credits["available_daily_verify_limit"] == 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00\.000Z", credits["reset_daily_verify_limit_date"])
    list_id = co.list_of(VERIFY, "three.csv", emails_csv(["a@x.io", "b@x.io", "valid@example.com"]))
    assert data_of(co.get("/email_verify/getcredits"))["credits"]["available_daily_verify_limit"] == 2
    error = failure(
        co.upload(VERIFY, "three-more.csv", emails_csv(["c@x.io", "d@x.io", "e@x.io"])), 200, 1017
    )
    assert error["message"].startswith("You have reached daily verify limit")
    co.instant("f@x.io")
    co.instant("g@x.io")
    failure(co.post("/email_verify/instant", {"email": "h@x.io"}), 200, 1017)
    co.wait(VERIFY, list_id)


# --- bulk lists over time: progress, concurrency, cancel, remove, URL expiry --------------------------
def test_progress_runs_then_completes(slow: Clearout) -> None:
    list_id = slow.list_of(VERIFY, "progress.csv", emails_csv([f"p{i}@corp.com" for i in range(120)]))  # 3 s
    first = slow.progress(VERIFY, list_id)
    assert first["progress_status"] == "running" and 0 <= first["percentile"] < 100
    failure(slow.post("/download/result", {"list_id": list_id}), 200, 1029)  # not downloadable while running
    time.sleep(0.5)
    second = slow.progress(VERIFY, list_id)
    assert first["percentile"] < second["percentile"] < 100
    assert slow.wait(VERIFY, list_id) == {"progress_status": "completed", "percentile": 100}


def test_bulk_concurrency_limits_per_kind(slow: Clearout) -> None:
    verify = slow.list_of(VERIFY, "busy.csv", emails_csv([f"b{i}@corp.com" for i in range(100)]))
    error = failure(slow.upload(VERIFY, "waiting.csv", emails_csv(["w@corp.com"])), 200, 1001)
    assert error["message"].startswith("You have reached the maximum number of bulk verify requests")
    people = csv_bytes(["name", "company"], [[f"Person {chr(65 + i)}", "Acme Inc"] for i in range(20)])
    slow.list_of(FINDER, "people.csv", people)  # the finder has its own limit
    error = failure(slow.upload(FINDER, "people2.csv", people), 200, 1083)
    assert error["message"].startswith("You have reached the maximum number of email finder bulk requests")
    data_of(slow.post("/email_verify/list/cancel", {"list_id": verify}))
    slow.wait(VERIFY, slow.list_of(VERIFY, "waiting.csv", emails_csv(["w@corp.com"])))


def test_cancel_stops_at_once_and_unprocessed_rows_are_free_unknown_605(slow: Clearout) -> None:
    emails = [f"c{i}@cancel{i}.com" for i in range(200)]
    list_id = slow.list_of(VERIFY, "cancel.csv", emails_csv(emails))
    time.sleep(0.5)
    summary = data_of(slow.post("/email_verify/list/cancel", {"list_id": list_id}))
    assert set(summary) == {"list_id", "name", "source", "created_on"}
    assert summary["list_id"] == list_id and summary["name"] == "cancel.csv" and summary["source"] == "upload"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", summary["created_on"])
    progress = slow.progress(VERIFY, list_id)
    assert progress["progress_status"] == "cancelled" and 0 < progress["percentile"] < 50
    info = slow.stats()["lists"][list_id]
    failure(slow.post("/email_verify/list/cancel", {"list_id": list_id}), 200, 1116)
    time.sleep(0.3)
    assert slow.stats()["lists"][list_id] == info, "a cancelled list neither progresses nor charges"
    header, *rows = slow.result(VERIFY, list_id)
    status, reason = header.index("Clearout Verification Status"), header.index("Clearout Reason")
    done, stopped = rows[: info["processed"]], rows[info["processed"] :]
    assert all(row[reason] != "Request Cancelled" for row in done)
    assert stopped and all((row[status], row[reason]) == ("Unknown", "Request Cancelled") for row in stopped)
    assert info["charged"] == sum(row[status] != "Unknown" for row in done)


def test_remove_rules(slow: Clearout) -> None:
    list_id = slow.list_of(VERIFY, "remove.csv", emails_csv([f"r{i}@corp.com" for i in range(20)]))
    error = failure(slow.post("/email_verify/list/remove", {"list_id": list_id}), 200, 1116)
    assert "running" in error["message"]
    slow.wait(VERIFY, list_id)
    failure(slow.post("/email_verify/list/cancel", {"list_id": list_id}), 200, 1116)  # completed already
    error = failure(slow.post("/email_verify/list/remove", {"list_id": list_id}), 200, 1116)
    assert "ignore_result" in error["message"]
    removed = data_of(slow.post("/email_verify/list/remove", {"list_id": list_id, "ignore_result": True}))
    assert removed["name"] == "remove.csv" and removed["list_id"] == list_id
    failure(slow.get("/email_verify/bulk/progress_status", list_id=list_id), 200, 1008)
    failure(slow.post("/email_verify/list/remove", {"list_id": list_id, "ignore_result": True}), 200, 1029)
    assert list_id not in slow.stats()["lists"]
    downloaded = slow.list_of(VERIFY, "downloaded.csv", emails_csv(["valid@example.com"]))
    slow.wait(VERIFY, downloaded)
    slow.result(VERIFY, downloaded)
    assert (
        data_of(slow.post("/email_verify/list/remove", {"list_id": downloaded}))["name"] == "downloaded.csv"
    )


def test_result_url_expires_after_its_ttl(slow: Clearout) -> None:
    list_id = slow.list_of(VERIFY, "ttl.csv", emails_csv(["valid@example.com"]))
    slow.wait(VERIFY, list_id)
    url = slow.result_url(VERIFY, list_id)
    assert requests.get(url).status_code == 200
    time.sleep(1.1)
    expired = requests.get(url)
    assert expired.status_code == 403 and "<Code>AccessDenied</Code>" in expired.text
    assert requests.get(slow.result_url(VERIFY, list_id)).status_code == 200, "a new URL works again"


# --- email finder -------------------------------------------------------------------------------------
def test_finder_instant_answer(co: Clearout) -> None:
    started = time.monotonic()
    data = data_of(co.post("/email_finder/instant", {"name": "Steven Morris", "domain": "apple.com"}))
    assert time.monotonic() - started >= 0.15, "the search takes finder_search_ms x time_scale"
    assert data["emails"] and data["total"] == len(data["emails"]) == 1
    assert data["emails"][0]["email_address"].endswith("@apple.com")
    assert data["emails"][0]["role"] == "no" and data["emails"][0]["business"] == "yes"
    assert (data["first_name"], data["last_name"], data["full_name"]) == ("steven", "morris", "steven morris")
    assert data["domain"] == "apple.com" and data["company"] == {"name": "apple"}
    assert 0 < data["confidence_score"] <= 100 and data["found_on"].endswith("Z")
    company = data_of(
        co.post("/email_finder/instant", {"name": "Mr. Tony Stark", "domain": "Stark Industries Inc."})
    )
    assert company["domain"] == "starkindustries.com" and company["first_name"] == "tony"
    role = data_of(co.post("/email_finder/instant", {"name": "Sales Team", "domain": "acme.com"}))
    assert role["emails"] == [{"email_address": "sales@acme.com", "role": "yes", "business": "yes"}]
    free = data_of(co.post("/email_finder/instant", {"name": "Jane Roe", "domain": "gmail.com"}))
    assert free["emails"] == [] and free["total"] == 0
    failure(co.post("/email_finder/instant", {"name": "R2-D2", "domain": "acme.com"}), 200, 1088)


def test_finder_timeout_gives_a_queue_id_answered_by_queue_status(co: Clearout) -> None:
    body = {"name": "Steven Morris", "domain": "apple.com", "timeout": 10_000}
    started = time.monotonic()
    error = failure(co.post("/email_finder/instant", body), 524, None)
    assert error["message"] == "Timeout occurred"
    info = error["additional_info"]
    assert info["resource_name"] == "email_finder" and re.fullmatch(r"[0-9a-f]{24}", info["queue_id"])
    pending = data_of(co.get("/email_finder/instant/queue_status", qid=info["queue_id"]))
    assert pending["query_status"] != "completed"
    time.sleep(max(0.0, 0.16 - (time.monotonic() - started)))
    done = data_of(co.get("/email_finder/instant/queue_status", qid=info["queue_id"]))
    direct = data_of(co.post("/email_finder/instant", {"name": "Steven Morris", "domain": "apple.com"}))
    assert done["query_status"] == "completed"
    assert {k: v for k, v in done.items() if k not in ("query_status", "found_on")} == {
        k: v for k, v in direct.items() if k != "found_on"
    }
    no_queue = failure(co.post("/email_finder/instant", {**body, "queue": False}), 524, None)
    assert "queue_id" not in no_queue["additional_info"]
    assert failure(co.get("/email_finder/instant/queue_status", qid="0" * 24), 200, 1104)["message"] == (
        "Invalid queue ID"
    )


def test_finder_credits(sandbox_factory: Callable[..., SandboxProcess]) -> None:
    """4 credits for a found person, 2 for a role address, 0 when not found; 1099 below 4."""
    co = Clearout(sandbox_factory(SandboxSettings(credits=10, finder_search_ms=0)))

    def find(name: str, domain: str) -> int:
        data_of(co.post("/email_finder/instant", {"name": name, "domain": domain}))
        return co.stats()["credits_used"]

    assert find("Steven Morris", "apple.com") == 4
    assert find("Sales Team", "acme.com") == 6
    assert find("Jane Roe", "gmail.com") == 6
    assert find("Steven Morris", "apple.com") == 10
    failure(co.post("/email_finder/instant", {"name": "Sales", "domain": "acme.com"}), 402, 1099)


def test_finder_bulk_round_trip(co: Clearout) -> None:
    header = ["Full Name", "Domain", "Company", "Owner"]
    rows = [["Steven Morris", "apple.com", "", "ann"], ["Tony Stark", "", "Stark Industries", "bo"],
            ["Sales Team", "acme.com", "", ""], ["Jane Roe", "gmail.com", "", "cy"],
            ["R2-D2", "acme.com", "", ""], ["Steven Morris", "apple.com", "", "dup"]]  # fmt: skip
    list_id = co.list_of(FINDER, "people.csv", csv_bytes(header, rows))
    assert co.wait(FINDER, list_id) == {"progress_status": "completed", "percentage": 100}
    result = co.result(FINDER, list_id)
    assert result[0] == header + list(FINDER_RESULT_COLUMNS)
    assert [row[:4] for row in result[1:]] == rows
    found = {c: result[0].index(c) for c in ("Clearout Finder Status", "Clearout Finder Email Address",
                                            "Clearout Finder Reason", "Clearout Finder Domain")}  # fmt: skip
    by_row = [{c: row[i] for c, i in found.items()} for row in result[1:]]
    direct = data_of(co.post("/email_finder/instant", {"name": "Steven Morris", "domain": "apple.com"}))
    assert by_row[0]["Clearout Finder Email Address"] == direct["emails"][0]["email_address"]
    assert by_row[1]["Clearout Finder Domain"] == "starkindustries.com"
    assert by_row[2]["Clearout Finder Email Address"] == "sales@acme.com"
    assert by_row[3]["Clearout Finder Status"] == "Not Found"
    assert by_row[4]["Clearout Finder Reason"] == "Unsupported characters in name fields"
    assert by_row[5] == by_row[0]


def test_finder_bulk_accepts_first_and_last_name_columns_and_needs_name_and_domain(co: Clearout) -> None:
    split = csv_bytes(["First Name", "Last Name", "Company Domain"], [["Steven", "Morris", "apple.com"]])
    list_id = co.list_of(FINDER, "split.csv", split)
    co.wait(FINDER, list_id)
    header, row = co.result(FINDER, list_id)
    assert row[header.index("Clearout Finder Full Name")] == "steven morris"
    error = failure(
        co.upload(FINDER, "nodomain.csv", csv_bytes(["Name", "City"], [["Ann", "Oslo"]])), 400, None
    )
    assert error["reasons"][0]["field"] == ["file"]


# --- faults, latency, inspection ----------------------------------------------------------------------
def test_injected_524_hits_instant_calls_only(sandbox_factory: Callable[..., SandboxProcess]) -> None:
    co = Clearout(sandbox_factory(SandboxSettings(fault_rate_524=1.0, finder_search_ms=0)))
    error = failure(co.post("/email_verify/instant", {"email": "valid@example.com"}), 524, None)
    assert error["additional_info"] == {"resource_name": "email", "resource_value": "valid@example.com"}
    failure(co.post("/email/verify/free", {"email": "free@example.com"}), 524, None)
    failure(co.post("/email_verify/instant", {"email": ""}), 400, None)  # input is validated first
    for i in range(5):
        failure(co.post("/email_verify/instant", {"email": f"buyer{i}@shop.com"}), 524, None)
    assert data_of(co.get("/email_verify/getcredits"))["available_credits"] == 100_000, (
        "timeouts cost nothing"
    )
    body = {"name": "Steven Morris", "domain": "apple.com"}
    queued = failure(co.post("/email_finder/instant", body), 524, None)
    status = data_of(co.get("/email_finder/instant/queue_status", qid=queued["additional_info"]["queue_id"]))
    assert status["query_status"] == "completed" and status["total"] == 1
    assert co.stats()["credits_used"] == 4, "a queued search is charged like an answered one"


def _fault_sequence(server: SandboxProcess) -> list[int]:
    co = Clearout(server)
    codes = []
    for i in range(24):
        response = (
            co.post("/email_verify/instant", {"email": "valid@example.com"})
            if i % 2
            else co.get("/email_verify/getcredits")
        )
        codes.append(response.status_code)
        if response.status_code == 503:
            assert response.content == b"" and "x-ratelimit-remaining" in response.headers
    assert co.stats()["instant_calls"] == sum(code == 200 for code in codes[1::2]), "stats are never faulted"
    return codes


def test_injected_503s_have_no_body_and_repeat_for_the_same_seed(
    sandbox_factory: Callable[..., SandboxProcess],
) -> None:
    first = _fault_sequence(sandbox_factory(SandboxSettings(fault_rate_503=0.5, fault_seed=7)))
    second = _fault_sequence(sandbox_factory(SandboxSettings(fault_rate_503=0.5, fault_seed=7)))
    other = _fault_sequence(sandbox_factory(SandboxSettings(fault_rate_503=0.5, fault_seed=8)))
    assert first == second and set(first) == {200, 503}
    assert other != first


def test_latency_is_added_without_blocking_other_requests(
    sandbox_factory: Callable[..., SandboxProcess],
) -> None:
    co = Clearout(sandbox_factory(SandboxSettings(latency_ms=300)))
    durations: list[float] = []

    def call() -> None:
        started = time.monotonic()
        assert co.get("/email_verify/getcredits").status_code == 200
        durations.append(time.monotonic() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(durations) == 4 and min(durations) >= 0.3
    assert time.monotonic() - started < 1.0, "four concurrent calls must overlap (in series: 1.2 s)"


def test_stats_endpoint_shape(co: Clearout) -> None:
    stats = co.stats()
    assert set(stats) >= {"credits_available", "credits_used", "bulk_uploads", "finder_uploads",
                          "instant_calls", "rate_limited", "lists"}  # fmt: skip
    for info in stats["lists"].values():
        assert set(info) == {"kind", "status", "total", "processed", "charged"}
        assert info["kind"] in (VERIFY, FINDER) and info["status"] in ("running", "completed", "cancelled")
    assert requests.get(co.base + "/_sandbox/stats").status_code == 401


# --- a million rows ---------------------------------------------------------------------------------------
def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.slow
def test_a_million_row_list_streams_through_in_modest_memory(
    sandbox_factory: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    rows = 1_000_000
    source = tmp_path / "million.csv"
    with open(source, "w", newline="") as out:
        out.write("id,name,email,city\n")
        out.writelines(f"{i},Person {i},user{i}@company{i % 997}.com,City {i % 50}\n" for i in range(rows))
    server = sandbox_factory(SandboxSettings(credits=2_000_000, bulk_rate=1_000_000))
    co = Clearout(server)
    with open(source, "rb") as handle:
        list_id = co.list_of(VERIFY, "million.csv", handle.read())
    assert co.wait(VERIFY, list_id, timeout=60)["progress_status"] == "completed"
    result = tmp_path / "result.csv"
    with (
        requests.get(co.result_url(VERIFY, list_id), stream=True, timeout=300) as response,
        open(result, "wb") as out,
    ):
        assert response.status_code == 200
        out.writelines(response.iter_content(1 << 16))
    with open(result, newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["id", "name", "email", "city", *BULK_RESULT_COLUMNS]
        count, last = 0, None
        for row in reader:
            count, last = count + 1, row
        assert count == rows
        assert last == [str(rows - 1), f"Person {rows - 1}", f"user{rows - 1}@company{(rows - 1) % 997}.com",
                        f"City {(rows - 1) % 50}", *last[4:]]  # fmt: skip
    stats = co.stats()
    assert stats["lists"][list_id]["processed"] == rows and 0 < stats["credits_used"] < rows
    assert server.pid is not None
    assert _peak_rss_kib(server.pid) < 250 * 1024, "the sandbox must not hold the list in memory"
