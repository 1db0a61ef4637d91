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
  ``"...Skipped record number : k"`` (k from 1). ``FBID``/``GPID`` are treated like identities. An
  ``event`` record is stored on its profile (count, first and last seen, at its ``ts``), so CQL event
  filters find it; an unknown identity gets a new profile, as CleverTap does.
* ``POST /subscribe``: ``{"d":[{"type":"email","value":...,"status":"Unsubscribe"|"Resubscribe"}]}``,
  same envelope as upload (inferred), stored per address.
* ``clevertap_export_max_concurrency`` export requests (``/profiles.json``) in flight at once, within
  the limit above; one more → 429. ``clevertap_export_page_ms``: a page request is answered no sooner
  than that (page building is CleverTap's slow part; the parallel-export benchmark runs at 300 ms).
* ``POST /profiles.json?batch_size=N`` (CQL body) or ``GET /profiles.json?query=...&batch_size=N`` →
  cursor; ``GET /profiles.json?cursor=...`` → page + ``next_cursor`` (absent on the last page). Not
  ready → ``{"status":"fail","code":2}``, throttled (every ``clevertap_throttle_every``-th page
  request) → ``{"status":"fail","code":1}``, both with HTTP 200 (inferred). Pages are built lazily
  from the store, so a million-profile export never holds more than one page.
* Fault switches (runtime-changeable, :mod:`.faults`), all answered before the call does anything:
  ``clevertap_down`` / ``clevertap_down_paths`` → 503 "Service Unavailable" for every call / the calls
  under those path prefixes (checked before auth: a service that is down checks nothing);
  ``clevertap_fault_rate_503`` → 503 and ``clevertap_fault_rate_429`` → 429 "Too many concurrent
  requests" for that fraction of calls (seeded by ``fault_seed``, one stream each);
  ``clevertap_reject_rate`` → that fraction of otherwise valid upload records comes back in
  ``unprocessed`` with code 515 ("Profile data is incorrect. Email is not valid.") and is not saved,
  chosen by a hash of ``fault_seed`` and the record's identifier, so a retry meets the same rejection.
  Counted in the stats as ``faults_down``, ``faults_503``, ``faults_429``, ``faults_rejected``.
* ``GET /profile.json?email=|identity=|objectId=`` → ``{"status":"success","record":{...}}`` or 404.
* ``GET /_sandbox/stats`` (sandbox only, auth required, not rate-limited): counters that tests and
  benchmarks use as a witness of what actually reached the server.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import secrets
import sqlite3
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
from clearout_provider.sandbox.faults import Faults
from clearout_provider.sandbox.settings import SandboxSettings
from clearout_provider.sandbox.state_files import unreadable

Handler = Callable[[Request], Awaitable[JSONResponse]]
STATE_FILE = "clevertap.sqlite3"
#: What an injected ``clevertap_reject_rate`` rejection says (CleverTap's 515 wording).
INJECTED_REJECTION = Violation(RecordCode.EMAIL_INVALID, "Profile data is incorrect. Email is not valid.")


def fail(http_status: int, error: str, code: int | None = None) -> JSONResponse:
    """CleverTap's request-level error body."""
    return JSONResponse(
        {"status": "fail", "error": error, "code": code or http_status}, status_code=http_status
    )


class CleverTapSandbox:
    """State of one emulated CleverTap account: profiles, cursors, counters, in-flight requests."""

    def __init__(self, settings: SandboxSettings, faults: Faults) -> None:
        self.settings = settings
        self.faults = faults
        state_path = Path(settings.state_dir) / STATE_FILE if settings.state_dir else None
        try:
            self.store = ProfileStore(SeedProfiles(settings.seed_contacts), state_path)
        except sqlite3.DatabaseError as exc:
            if state_path is None:  # an in-memory store has no file to delete
                raise
            raise unreadable(state_path, exc) from exc
        self.cursors = CursorBook(settings.clevertap_cursor_not_ready)
        self.stats: Counter[str] = Counter()
        self.in_flight = 0
        self.exports_in_flight = 0
        self._rng_503 = random.Random(settings.fault_seed)
        self._rng_429 = random.Random(f"{settings.fault_seed}:clevertap_fault_rate_429")

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
            if self.faults.clevertap_is_down(request.url.path):
                self.stats["faults_down"] += 1
                return fail(503, "Service Unavailable")
            problem = self.auth_problem(request)
            if problem:
                self.stats["unauthorized"] += 1
                return problem
            injected = self.injected_fault()
            if injected:
                return injected
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

    def injected_fault(self) -> JSONResponse | None:
        """An injected 503 or 429 for this call (``clevertap_fault_rate_503`` / ``_429``), if one is due."""
        rate_503, rate_429 = self.faults.clevertap_fault_rate_503, self.faults.clevertap_fault_rate_429
        if rate_503 and self._rng_503.random() < rate_503:
            self.stats["faults_503"] += 1
            return fail(503, "Service Unavailable")
        if rate_429 and self._rng_429.random() < rate_429:
            self.stats["faults_429"] += 1
            return fail(429, "Too many concurrent requests")
        return None

    def rejected(self, record: Any) -> bool:
        """Whether ``clevertap_reject_rate`` rejects this (valid) record: decided by its identifier alone."""
        rate = self.faults.clevertap_reject_rate
        if not rate:
            return False
        kind, ident = identifier_of(record)  # type: ignore[misc]  # a valid record has one
        digest = hashlib.sha256(f"{self.settings.fault_seed}:{kind}:{ident}".encode()).digest()
        return int.from_bytes(digest[:8]) / 2**64 < rate

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
            if problem is None and self.rejected(record):
                problem = INJECTED_REJECTION
                self.stats["faults_rejected"] += 1
            key = None
            if problem is None:
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
                if record["type"] == "event":
                    self.store.record_event(key, record["evtName"], int(record.get("ts") or now))
                else:
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
    def exporting(self, handler: Handler) -> Handler:
        """Wrap an export endpoint: ``clevertap_export_max_concurrency`` (inside :meth:`api`'s limit)."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> JSONResponse:
            if self.exports_in_flight >= self.settings.clevertap_export_max_concurrency:
                self.stats["export_too_many_requests"] += 1
                return fail(429, "Too many concurrent requests")
            self.exports_in_flight += 1
            self.stats["export_max_concurrent"] = max(
                self.stats["export_max_concurrent"], self.exports_in_flight
            )
            try:
                return await handler(request)
            finally:
                self.exports_in_flight -= 1

        return endpoint

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
        answer_at = time.monotonic() + self.settings.clevertap_export_page_ms / 1000
        export = self.cursors.export(position.export_id)
        records, next_start = self.page(export.predicate, position.start, export.end, export.batch_size)
        await asyncio.sleep(max(0.0, answer_at - time.monotonic()))
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
            if predicate(self.store.view(key)):
                if len(records) == size:
                    return records, key
                records.append(self.store.record(key))
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


def build_router(settings: SandboxSettings, faults: Faults | None = None) -> APIRouter:
    """The CleverTap emulator's routes (mount under ``/clevertap/1``); ``faults``: the runtime switches."""
    sandbox = CleverTapSandbox(settings, faults or Faults.from_settings(settings))
    router = APIRouter()
    router.add_api_route("/upload", sandbox.api(sandbox.upload), methods=["POST"])
    router.add_api_route("/subscribe", sandbox.api(sandbox.subscribe), methods=["POST"])
    router.add_api_route(
        "/profiles.json", sandbox.api(sandbox.exporting(sandbox.profiles_post)), methods=["POST"]
    )
    router.add_api_route(
        "/profiles.json", sandbox.api(sandbox.exporting(sandbox.profiles_get)), methods=["GET"]
    )
    router.add_api_route("/profile.json", sandbox.api(sandbox.profile), methods=["GET"])
    router.add_api_route("/_sandbox/stats", sandbox.stats_view, methods=["GET"])
    return router
