"""Emulator of CleverTap's server API (``/1/...``), mounted by the sandbox app under ``/clevertap/1``.

Faithful to the CleverTap fact sheet where it speaks, and explicit where it does not:

* Auth: ``X-CleverTap-Account-Id`` + ``X-CleverTap-Passcode``; anything else → 401
  ``{"status":"fail","error":"Account ID is not valid","code":401}`` (or "Passcode is not valid").
* ``clevertap_max_concurrency`` requests in flight at once (all endpoints together, the ``latency_ms``
  wait included); one more → 429 "Too many concurrent requests".
* ``latency_ms``: a call is answered that long after its body has arrived (or when its handling is done,
  if later). The sandbox's own work runs inside that time, not after it: handlers run one at a time on
  the event loop, so 15 concurrent uploads answered "latency, then work" would each also wait for the
  others' validation (up to ~130 ms), which CleverTap, serving calls side by side, does not add.
* ``POST /upload[?dryRun=1]``: ≤ 1000 records; per-record codes of :mod:`.clevertap_validation` in
  the success/partial/fail envelope, each rejection echoing its record and
  ``"...Skipped record number : k"`` (k from 1). ``FBID``/``GPID`` are treated like identities.
* ``POST /subscribe``: ``{"d":[{"type":"email","value":...,"status":"Unsubscribe"|"Resubscribe"}]}``,
  same envelope as upload (inferred), stored per address.
* ``POST /profiles.json?batch_size=N`` (CQL body) or ``GET /profiles.json?query=...&batch_size=N`` →
  cursor; ``GET /profiles.json?cursor=...`` → page + ``next_cursor`` (absent on the last page). Not
  ready → ``{"status":"fail","code":2}``, throttled (every ``clevertap_throttle_every``-th page
  request) → ``{"status":"fail","code":1}``, both with HTTP 200 (inferred). Pages are built lazily
  from the store, so a million-profile export never holds more than one page.
* ``clevertap_fault_rate_503`` of the calls answer 503 before doing anything (seeded by ``fault_seed``).
* ``GET /profile.json?email=|identity=|objectId=`` → ``{"status":"success","record":{...}}`` or 404.
* ``GET /_sandbox/stats`` (sandbox only, auth required, not rate-limited): counters that tests and
  benchmarks use as a witness of what actually reached the server.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clearout_provider.clevertap_rules import (
    MAX_EXPORT_BATCH_SIZE,
    MAX_RECORDS_PER_CALL,
    RecordCode,
    Violation,
    identifier_of,
)
from clearout_provider.sandbox.clevertap_cql import CqlError, compile_query
from clearout_provider.sandbox.clevertap_cursors import CursorBook, CursorError
from clearout_provider.sandbox.clevertap_seed import SeedProfiles
from clearout_provider.sandbox.clevertap_store import ProfileStore
from clearout_provider.sandbox.clevertap_validation import check_subscription, check_upload_record
from clearout_provider.sandbox.settings import SandboxSettings

Handler = Callable[[Request], Awaitable[JSONResponse]]
STATE_FILE = "clevertap.sqlite3"


def fail(http_status: int, error: str, code: int | None = None) -> JSONResponse:
    """CleverTap's request-level error body."""
    return JSONResponse(
        {"status": "fail", "error": error, "code": code or http_status}, status_code=http_status
    )


class CleverTapSandbox:
    """State of one emulated CleverTap account: profiles, cursors, counters, in-flight requests."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        state_path = Path(settings.state_dir) / STATE_FILE if settings.state_dir else None
        self.store = ProfileStore(SeedProfiles(settings.seed_contacts), state_path)
        self.cursors = CursorBook(settings.clevertap_cursor_not_ready)
        self.stats: Counter[str] = Counter()
        self.in_flight = 0
        self._faults = random.Random(settings.fault_seed)

    def auth_problem(self, request: Request) -> JSONResponse | None:
        """401 unless both credential headers match (compared in constant time, as a server should)."""
        account = request.headers.get("X-CleverTap-Account-Id", "")
        if not secrets.compare_digest(account.encode(), self.settings.clevertap_account_id.encode()):
            return fail(401, "Account ID is not valid")
        passcode = request.headers.get("X-CleverTap-Passcode", "")
        if not secrets.compare_digest(passcode.encode(), self.settings.clevertap_passcode.encode()):
            return fail(401, "Passcode is not valid")
        return None

    def api(self, handler: Handler) -> Handler:
        """Wrap an endpoint: auth, the concurrency limit, the configured latency, request counting."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> JSONResponse:
            problem = self.auth_problem(request)
            if problem:
                self.stats["unauthorized"] += 1
                return problem
            if (
                self.settings.clevertap_fault_rate_503
                and self._faults.random() < self.settings.clevertap_fault_rate_503
            ):
                self.stats["faults_503"] += 1
                return fail(503, "Service Unavailable")
            if self.in_flight >= self.settings.clevertap_max_concurrency:
                self.stats["too_many_requests"] += 1
                return fail(429, "Too many concurrent requests")
            self.in_flight += 1
            self.stats["requests"] += 1
            self.stats["max_concurrent"] = max(self.stats["max_concurrent"], self.in_flight)
            try:
                if not self.settings.latency_ms:
                    return await handler(request)
                await request.body()  # receive the whole request first, as a real server does
                # The work happens within the latency, not after it (see the module docstring).
                answer_at = time.monotonic() + self.settings.latency_ms / 1000
                response = await handler(request)
                await asyncio.sleep(max(0.0, answer_at - time.monotonic()))
                return response
            finally:
                self.in_flight -= 1

        return endpoint

    # --- upload / subscribe -------------------------------------------------------------------------
    async def records_of(self, request: Request) -> list[Any] | JSONResponse:
        """The ``d`` list of an upload/subscribe body, or the 400 answer for a malformed request."""
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return fail(400, "Invalid JSON payload")
        records = payload.get("d") if isinstance(payload, dict) else None
        if not isinstance(records, list) or not records:
            return fail(400, 'Payload must be {"d": [...]} with at least one record')
        if len(records) > MAX_RECORDS_PER_CALL:
            return fail(400, f"Too many records: at most {MAX_RECORDS_PER_CALL} per request")
        return records

    async def upload(self, request: Request) -> JSONResponse:
        records = await self.records_of(request)
        if isinstance(records, JSONResponse):
            return records
        dry_run = request.query_params.get("dryRun", "0").lower() in ("1", "true")
        now = int(time.time())
        processed, unprocessed, touched = 0, [], set()
        for number, record in enumerate(records, 1):
            problem = check_upload_record(record, now)
            key = None
            if problem is None and record["type"] == "profile":
                kind, ident = identifier_of(record)  # type: ignore[misc]  # checked above
                if kind == "objectId":
                    key = self.store.key_of_object_id(ident)
                    if key is None:
                        problem = Violation(RecordCode.OBJECT_ID_INVALID, "objectId is not valid.")
                else:
                    key = self.store.key_of_identity(ident)
                    if key is None and not dry_run:
                        key = self.store.create(ident)
            if problem is not None:
                unprocessed.append(_rejection(problem.code, problem.message, number, record))
                continue
            processed += 1
            if key is not None and not dry_run:
                self.store.apply(key, record["profileData"])
                touched.add(key)
        if touched:
            self.store.save(touched)
        self.stats["upload_calls"] += 1
        self.stats["dry_run_calls" if dry_run else "saving_upload_calls"] += 1
        self.stats["records_processed"] += processed
        self.stats["records_rejected"] += len(unprocessed)
        return _envelope(processed, unprocessed)

    async def subscribe(self, request: Request) -> JSONResponse:
        records = await self.records_of(request)
        if isinstance(records, JSONResponse):
            return records
        processed, unprocessed, emails = 0, [], []
        for number, record in enumerate(records, 1):
            problem = check_subscription(record)
            if problem is not None:
                unprocessed.append(_rejection(problem.code, problem.message, number, record))
                continue
            processed += 1
            self.store.subscribe(record["value"], record["status"])
            emails.append(record["value"])
        if emails:
            self.store.save(emails=emails)
        self.stats["subscribe_calls"] += 1
        self.stats["subscriptions_processed"] += processed
        self.stats["subscriptions_rejected"] += len(unprocessed)
        return _envelope(processed, unprocessed)

    # --- export -----------------------------------------------------------------------------------
    async def start_export(self, query: Any, batch_size_text: str | None) -> JSONResponse:
        try:
            batch_size = int(batch_size_text or 10)
        except ValueError:
            return fail(400, "batch_size must be an integer")
        if not 1 <= batch_size <= MAX_EXPORT_BATCH_SIZE:
            return fail(400, f"batch_size must be between 1 and {MAX_EXPORT_BATCH_SIZE}")
        try:
            predicate = compile_query(query, self.store.seed.anchor)
        except CqlError as exc:
            return fail(400, str(exc))
        export_id = self.cursors.start(predicate, self.store.size, batch_size)
        self.stats["export_cursors"] += 1
        return JSONResponse({"status": "success", "cursor": self.cursors.issue(export_id, 0)})

    async def profiles_post(self, request: Request) -> JSONResponse:
        try:
            query = json.loads(await request.body() or b"{}")
        except ValueError:
            return fail(400, "Invalid JSON query")
        return await self.start_export(query, request.query_params.get("batch_size"))

    async def profiles_get(self, request: Request) -> JSONResponse:
        params = request.query_params
        if "cursor" not in params:
            try:
                query = json.loads(params.get("query", "{}"))
            except ValueError:
                return fail(400, "query must be URL-encoded JSON")
            return await self.start_export(query, params.get("batch_size"))
        try:
            position = self.cursors.resolve(params["cursor"])
        except CursorError as exc:
            return fail(400, str(exc))
        self.stats["page_requests"] += 1
        every = self.settings.clevertap_throttle_every
        if every and self.stats["page_requests"] % every == 0:
            self.stats["throttled"] += 1
            return JSONResponse({"status": "fail", "code": 1, "error": "Too many requests, retry after 30 s"})
        if self.cursors.owes_not_ready(position):
            self.stats["not_ready"] += 1
            return JSONResponse({"status": "fail", "code": 2, "error": "Cursor not ready, retry after 5 s"})
        export = self.cursors.export(position.export_id)
        records, next_start = self.page(export.predicate, position.start, export.end, export.batch_size)
        body: dict[str, Any] = {"status": "success", "records": records}
        if next_start is not None:
            body["next_cursor"] = self.cursors.issue(position.export_id, next_start)
        self.stats["export_pages"] += 1
        self.stats["export_records"] += len(records)
        return JSONResponse(body)

    def page(
        self, predicate: Any, start: int, end: int, size: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to ``size`` matching records from key ``start``, and the key of the next match (or None).

        Looking ahead for the next match means the last page never comes back empty, so an export of
        N profiles takes exactly ceil(N / batch_size) page requests.
        """
        records: list[dict[str, Any]] = []
        key = start
        while key < end:
            record = self.store.record(key)
            if predicate(record):
                if len(records) == size:
                    return records, key
                records.append(record)
            key += 1
        return records, None

    async def profile(self, request: Request) -> JSONResponse:
        params = request.query_params
        if params.get("email"):
            key = self.store.key_of_email(params["email"])
        elif params.get("identity"):
            key = self.store.key_of_identity(params["identity"])
        elif params.get("objectId"):
            key = self.store.key_of_object_id(params["objectId"])
        else:
            return fail(400, "Specify one of email, identity or objectId")
        self.stats["profile_lookups"] += 1
        if key is None:
            return fail(404, "Profile not found")
        return JSONResponse({"status": "success", "record": self.store.record(key)})

    async def stats_view(self, request: Request) -> JSONResponse:
        problem = self.auth_problem(request)
        return problem or JSONResponse(
            {"status": "success", "stats": dict(self.stats), "profiles": self.store.size}
        )


def _rejection(code: int, message: str, number: int, record: Any) -> dict[str, Any]:
    return {
        "status": "fail",
        "code": code,
        "error": f"{message}Skipped record number : {number}",
        "record": record,
    }


def _envelope(processed: int, unprocessed: list[dict[str, Any]]) -> JSONResponse:
    status = "success" if not unprocessed else ("fail" if processed == 0 else "partial")
    return JSONResponse({"status": status, "processed": processed, "unprocessed": unprocessed})


def build_router(settings: SandboxSettings) -> APIRouter:
    """The CleverTap emulator's routes (mount under ``/clevertap/1``)."""
    sandbox = CleverTapSandbox(settings)
    router = APIRouter()
    router.add_api_route("/upload", sandbox.api(sandbox.upload), methods=["POST"])
    router.add_api_route("/subscribe", sandbox.api(sandbox.subscribe), methods=["POST"])
    router.add_api_route("/profiles.json", sandbox.api(sandbox.profiles_post), methods=["POST"])
    router.add_api_route("/profiles.json", sandbox.api(sandbox.profiles_get), methods=["GET"])
    router.add_api_route("/profile.json", sandbox.api(sandbox.profile), methods=["GET"])
    router.add_api_route("/_sandbox/stats", sandbox.stats_view, methods=["GET"])
    return router
