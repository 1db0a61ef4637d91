"""Emulator of the Clearout API v2, mounted by the sandbox app under ``/clearout/v2``.

Faithful to ``clearout-api.md`` and the wire contract; where both are silent the choice is listed under
"Inferred choices" below. Every call goes through :meth:`_ClearoutApi.endpoint`, in this order:

1. ``latency_ms`` (``asyncio.sleep``: slow, never blocking);
2. an injected ``fault_rate_503`` → 503 with no body (counted as ``faults_503``);
3. auth: ``Authorization: <token>``, ``Bearer <token>`` or ``Bearer:<token>``, else 401 / 1000;
4. JSON POSTs need ``Content-Type: application/json`` (415) and a JSON object (Joi 400);
5. rate limit: fixed windows of ``rate_window`` s, ``rpm`` for instant verify + the six single-flag
   checks, ``finder_rpm`` for instant finder + queue_status; past the quota 429 / 1030. Every answer
   carries the ``x-ratelimit-*`` headers of its bucket (other endpoints report the verify bucket
   without consuming it);
6. on ``POST /email_verify/instant`` an injected ``instant_malformed`` → HTTP 200 with a malformed success
   body instead of the handler (nothing validated, charged or counted against the daily limit);
7. an injected ``fault_rate_524`` on instant calls (decided here, raised after input validation);
8. the handler, which raises :class:`ClearoutError` for any failure (HTTP 200 "failed" for most);
9. the state's :meth:`~.ClearoutState.flush`: with ``state_dir``, what the call changed is on disk before
   its answer leaves (see :mod:`.clearout_state`); a heartbeat saves running lists' progress meanwhile.

Faults are drawn from ``random.Random(fault_seed)`` streams, so the same request sequence meets the same
faults; all of them are runtime switches (:mod:`.faults`) read at each call. Besides those above:
``upload_without_list_id`` (uploads answer ``data: {}`` and accept nothing), ``progress_status_override``,
``stuck_lists`` (lists hold where they stand), ``result_url_ttl`` (for URLs handed out from then on) and
``download_resets`` (the next K presigned downloads send ``download_reset_after_bytes`` bytes of the CSV,
then drop the connection mid-body). Each injected fault adds to its counter in ``GET /_sandbox/stats``.
Simulated durations (instant verify time, finder search, the client's ``timeout``) are multiplied by
``time_scale``; bulk lists progress at ``bulk_rate`` rows/s (see :mod:`.clearout_lists`).

Unknown lists: ``progress_status`` of a list that does not exist, was removed or is of the other kind
answers 1008 (HTTP 200, "You are not authorized to access this resource"), as Clearout's spec documents
for lists that are gone or not yours; download, cancel and remove answer 1029 ("List is not available").

Inferred choices: the single-flag checks are free and outside the daily limit; instant finder needs 4
spendable credits (a found address's price) and charges when the search completes, also for a queued
search; a list counts as downloaded once its result URL was requested; downloading a running list
answers "failed" 1029, removing a running list or (without ``ignore_result``) a never-downloaded one
"failed" 1116, each with a message saying why. The presigned ``/_files/...`` URL stands in for S3: no
token, no API latency or injected faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Send

from clearout_provider.sandbox.clearout_envelope import (
    UNSUPPORTED_MEDIA_TYPE,
    ClearoutError,
    Validator,
    not_an_object,
    success,
    timeout_error,
    token_of,
)
from clearout_provider.sandbox.clearout_finder import FOUND_COST, find_email, has_unsupported_characters
from clearout_provider.sandbox.clearout_lists import SUPPORTED_SUFFIXES, BulkList, ListKind, ListStatus
from clearout_provider.sandbox.clearout_state import Bucket, ClearoutState, QueuedSearch
from clearout_provider.sandbox.clearout_verdicts import Verdict, iso_utc, verdict_for
from clearout_provider.sandbox.faults import Faults
from clearout_provider.sandbox.settings import SandboxSettings

#: ``/email/verify/<path>`` → (key of the answer, the verdict property it reports).
FLAG_CHECKS: dict[str, tuple[str, Callable[[Verdict], bool]]] = {
    "catchall": ("catchall", lambda v: v.catchall),
    "disposable": ("disposable", lambda v: v.disposable),
    "business": ("business_account", lambda v: v.business),
    "free": ("free_account", lambda v: v.free),
    "role": ("role_account", lambda v: v.role),
    "gibberish": ("gibberish", lambda v: v.gibberish),
}
OPTIMIZE_CHOICES = ("highest_accuracy", "fastest_turnaround")
_LIMIT_CODES = {ListKind.VERIFY: 1001, ListKind.FINDER: 1083}
_PROGRESS_KEYS = {ListKind.VERIFY: "percentile", ListKind.FINDER: "percentage"}
#: The two malformed success bodies ``instant_malformed`` alternates between.
MALFORMED_BODIES: tuple[dict[str, Any], ...] = ({"status": "success"}, {"status": "success", "data": {}})
#: Seconds between two saves of running lists' progress (with ``state_dir``): what a SIGKILL can lose.
PROGRESS_SAVE_INTERVAL = 0.5


@dataclass(frozen=True)
class Policy:
    """How the plumbing treats one endpoint (see the module docstring for the order of the steps)."""

    bucket: Bucket = Bucket.VERIFY
    consumes: bool = False
    instant: bool = False
    json_body: bool = False
    api: bool = True
    auth: bool = True
    malformable: bool = False


NOT_LIMITED = Policy()  # credits, bulk, progress: report the verify bucket without consuming it
JSON_POST = Policy(json_body=True)
INSTANT_VERIFY = Policy(consumes=True, instant=True, json_body=True)
INSTANT_VERIFY_MAIN = Policy(consumes=True, instant=True, json_body=True, malformable=True)
INSTANT_FINDER = Policy(bucket=Bucket.FINDER, consumes=True, instant=True, json_body=True)
QUEUE_STATUS = Policy(bucket=Bucket.FINDER, consumes=True)
RESULT_FILE = Policy(auth=False, api=False)  # stands in for S3: no token, no API latency or faults
SANDBOX_GET = Policy(api=False)
SANDBOX_POST = Policy(api=False, json_body=True)


@dataclass(frozen=True)
class Call:
    """One request after the plumbing: its parsed JSON body (``{}`` otherwise) and arrival time."""

    request: Request
    body: Mapping[str, Any]
    started: float
    inject_timeout: bool = False

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query_params


Handler = Callable[[Call], Awaitable[Response | Mapping[str, Any]]]


def build_router(settings: SandboxSettings, faults: Faults | None = None) -> APIRouter:
    """The Clearout routes (paths relative to ``/clearout/v2``), sharing one account.

    ``faults`` are the runtime switches (shared with the admin routes); the router's lifespan runs the
    progress heartbeat and saves the account once more at shutdown.
    """
    api = _ClearoutApi(settings, faults or Faults.from_settings(settings))
    router = APIRouter(lifespan=api.lifespan)

    def add(method: str, path: str, handler: Handler, policy: Policy, name: str | None = None) -> None:
        router.add_api_route(path, api.endpoint(handler, policy), methods=[method], name=name,
                             include_in_schema=False)  # fmt: skip

    verify, finder = ListKind.VERIFY, ListKind.FINDER
    add("GET", "/email_verify/getcredits", api.getcredits, NOT_LIMITED)
    add("POST", "/email_verify/instant", api.instant_verify, INSTANT_VERIFY_MAIN)
    for path in FLAG_CHECKS:
        add("POST", f"/email/verify/{path}", api.flag_check(path), INSTANT_VERIFY)
    add("POST", "/email_verify/bulk", api.upload(verify), NOT_LIMITED)
    add("GET", "/email_verify/bulk/progress_status", api.progress(verify), NOT_LIMITED)
    add("POST", "/download/result", api.download(verify), JSON_POST)
    add("POST", "/email_verify/list/cancel", api.cancel(verify), JSON_POST)
    add("POST", "/email_verify/list/remove", api.remove(verify), JSON_POST)
    add("POST", "/email_finder/instant", api.finder_instant, INSTANT_FINDER)
    add("GET", "/email_finder/instant/queue_status", api.queue_status, QUEUE_STATUS)
    add("POST", "/email_finder/bulk", api.upload(finder), NOT_LIMITED)
    add("GET", "/email_finder/bulk/progress_status", api.progress(finder), NOT_LIMITED)
    add("POST", "/email_finder/download/result", api.download(finder), JSON_POST)
    add("POST", "/email_finder/list/cancel", api.cancel(finder), JSON_POST)
    add("POST", "/email_finder/list/remove", api.remove(finder), JSON_POST)
    add("GET", "/_files/{list_id}/{filename}", api.result_file, RESULT_FILE, name="clearout_result_file")
    add("GET", "/_sandbox/stats", api.stats, SANDBOX_GET)
    add("POST", "/_sandbox/expire", api.expire, SANDBOX_POST)
    return router


def _js_date(moment: datetime) -> str:
    """JavaScript's ``Date.toString()``, the form of the date in Clearout's 1030 message."""
    return moment.astimezone(UTC).strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)")


def _s3_denied(code: str, message: str) -> Response:
    """HTTP 403 with the XML error body S3 gives for a bad or expired presigned URL."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{ClearoutState.new_id()}</RequestId></Error>"
    )
    return Response(body, status_code=403, media_type="application/xml")


class _ResetResponse(StreamingResponse):
    """A streamed answer that stops after its chunks without ending the body: the server (uvicorn) then
    closes the connection, which the client sees as a reset mid-download."""

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _first_bytes(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The first ``limit`` bytes of a stream of chunks."""
    for chunk in chunks:
        if limit <= 0:
            return
        yield chunk[:limit]
        limit -= len(chunk)


class _ClearoutApi:
    """The plumbing and the handlers; all state lives in :class:`ClearoutState`."""

    def __init__(self, settings: SandboxSettings, faults: Faults) -> None:
        self.settings = settings
        self.faults = faults
        self.state = ClearoutState(settings)
        self._malformed_rng = random.Random(f"{settings.fault_seed}:instant_malformed")
        faults.on_change(self._faults_changed)

    def _faults_changed(self, changed: frozenset[str]) -> None:
        if "stuck_lists" in changed:
            self.state.hold_lists(self.faults.stuck_lists)
            self.state.flush()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Save running lists' progress every :data:`PROGRESS_SAVE_INTERVAL` s; save all at shutdown."""
        heartbeat = asyncio.create_task(self._save_progress()) if self.state.folder else None
        try:
            yield
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            self.state.settle()
            self.state.flush()

    async def _save_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_SAVE_INTERVAL)
            if self.state.advancing:
                self.state.settle()
                self.state.flush()

    # --- plumbing -------------------------------------------------------------------------------------
    def _fault(self, rate: float, rng: random.Random | None = None) -> bool:
        return rate > 0 and (rng or self.state.fault_rng).random() < rate

    def endpoint(self, handler: Handler, policy: Policy) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` in the steps of the module docstring."""

        async def run(request: Request) -> Response:
            if policy.api and self.settings.latency_ms:
                await asyncio.sleep(self.settings.latency_ms / 1000)
            window = self.state.windows[policy.bucket]
            try:
                if policy.api and self._fault(self.faults.fault_rate_503):
                    self.state.count("faults_503")
                    response = Response(status_code=503)
                else:
                    response = await self._answer(request, handler, policy)
            except ClearoutError as error:
                response = error.response()
            finally:
                self.state.flush()
            response.headers.update(window.headers(time.monotonic()))
            return response

        return run

    async def _answer(self, request: Request, handler: Handler, policy: Policy) -> Response:
        if policy.auth and not self._authorised(request):
            raise ClearoutError.of(1000)
        body: Mapping[str, Any] = {}
        if policy.json_body:
            if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                raise UNSUPPORTED_MEDIA_TYPE
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise not_an_object() from None
            if not isinstance(body, dict):
                raise not_an_object()
        now = time.monotonic()
        if policy.consumes:
            window = self.state.windows[policy.bucket]
            if not window.take(now):
                self.state.count("rate_limited")
                retry_at = datetime.now(UTC) + timedelta(seconds=window.reset_in(now))
                raise ClearoutError(
                    1030,
                    f"You have reached API rate limit, try calling after {_js_date(retry_at)} or to increase "
                    "limit upgrade plan or reach us@clearout.io",
                    http_status=429,
                )
            self.state.count("instant_calls")
        if policy.malformable and self._fault(self.faults.instant_malformed, self._malformed_rng):
            return self._malformed()
        inject = policy.instant and self._fault(self.faults.fault_rate_524)
        if inject:
            self.state.count("faults_524")
        result = await handler(Call(request, body, now, inject))
        return result if isinstance(result, Response) else success(result)

    def _malformed(self) -> Response:
        """The next malformed success body, alternating deterministically between the two shapes."""
        body = MALFORMED_BODIES[self.state.counters["faults_malformed"] % len(MALFORMED_BODIES)]
        self.state.count("faults_malformed")
        return JSONResponse(body)

    def _authorised(self, request: Request) -> bool:
        token = token_of(request.headers.get("authorization", ""))
        return hmac.compare_digest(token.encode(), self.settings.clearout_token.encode())

    def _seconds(self, ms: float) -> float:
        """A simulated duration in ms → real seconds, compressed by ``time_scale``."""
        return ms * self.settings.time_scale / 1000

    # --- credits and instant verification ---------------------------------------------------------
    async def getcredits(self, call: Call) -> Mapping[str, Any]:
        state = self.state
        state.settle()
        reset = state.daily_reset_date()
        return {
            "available_credits": state.balance,
            "credits": {
                "available": state.balance,
                "subs": 0,
                "available_daily_verify_limit": state.daily_remaining(),
                "reset_daily_verify_limit_date": iso_utc(reset) if reset else None,
                "total": state.balance,
            },
            "low_credit_balance_min_threshold": self.settings.low_credit_threshold,
        }

    def _instant_input(self, call: Call) -> tuple[str, int]:
        check = Validator(call.body, "body")
        email = check.string("email")
        timeout = check.number("timeout", default=130_000, minimum=0, maximum=180_000)
        check.check()
        return email, timeout

    async def _verify_wait(self, call: Call, email: str, timeout_ms: int) -> None:
        """Spend the simulated verification time, or time out (524) like Clearout does."""
        work, patience = self._seconds(self.settings.instant_verify_ms), self._seconds(timeout_ms)
        if call.inject_timeout:
            raise timeout_error("email", email)
        if patience < work:
            await asyncio.sleep(patience)
            raise timeout_error("email", email)
        await asyncio.sleep(work)

    async def instant_verify(self, call: Call) -> Mapping[str, Any]:
        email, timeout = self._instant_input(call)
        state = self.state
        state.check_daily(1)
        verdict = verdict_for(email)
        state.settle()
        if not verdict.is_test and state.spendable <= 0:
            raise ClearoutError.of(1002)
        await self._verify_wait(call, email, timeout)
        state.count_instant_verification()
        state.charge(int(verdict.billable))
        return verdict.as_instant(datetime.now(UTC), self.settings.instant_verify_ms or None)

    def flag_check(self, path: str) -> Handler:
        key, flag = FLAG_CHECKS[path]

        async def check(call: Call) -> Mapping[str, Any]:
            email, timeout = self._instant_input(call)
            verdict = verdict_for(email)
            await self._verify_wait(call, email, timeout)
            return {
                "email_address": verdict.email,
                key: "yes" if flag(verdict) else "no",
                "verified_on": iso_utc(datetime.now(UTC)),
                "time_taken": self.settings.instant_verify_ms or verdict.time_taken_ms,
            }

        return check

    # --- bulk lists (verify and finder alike) -----------------------------------------------------
    def upload(self, kind: ListKind) -> Handler:
        async def upload(call: Call) -> Mapping[str, Any]:
            try:
                form = await call.request.form()
            except HTTPException as exc:  # malformed multipart body
                reason = {
                    "field": ["file"],
                    "location": "body",
                    "messages": [exc.detail],
                    "types": ["any.invalid"],
                }
                raise ClearoutError(None, "validation failed", http_status=400, reasons=[reason]) from None
            try:
                if self.faults.upload_without_list_id:  # the body was read: the client sees a normal answer
                    self.state.count("uploads_without_list_id")
                    return {}
                check = Validator(form, "body")
                upload = check.file("file")
                if kind is ListKind.VERIFY:
                    check.choice("optimize", OPTIMIZE_CHOICES, default="highest_accuracy")
                force = check.choice("ignore_duplicate_file", ("true", "false"), default="false") == "true"
                check.check()
                return await self._accept(kind, upload, force)
            finally:
                await form.close()

        return upload

    async def _accept(self, kind: ListKind, upload: UploadFile, force: bool) -> Mapping[str, Any]:
        state, name = self.state, upload.filename or ""
        size = upload.size if upload.size is not None else 0
        if not name.lower().endswith(SUPPORTED_SUFFIXES):
            raise ClearoutError.of(1100)
        earlier = None if force else state.duplicate_of(kind, name, size)
        if earlier is not None:
            raise ClearoutError.of(2043, list_id=earlier.id)
        self._check_concurrency(kind)
        list_id = state.new_id()
        stored = await run_in_threadpool(state.store, upload.file, name, list_id, kind)
        try:
            state.settle()
            self._check_concurrency(kind)  # again: other uploads may have been accepted meanwhile
            if kind is ListKind.VERIFY:
                state.check_daily(stored.total)
                self._check_verify_credits(stored.total_cost)
            else:
                self._check_finder_credits(stored.unique_rows)
        except ClearoutError:
            await run_in_threadpool(stored.delete)
            raise
        state.add_list(list_id, kind, name, size, stored)
        return {"list_id": list_id}

    def _check_concurrency(self, kind: ListKind) -> None:
        if self.state.running(kind) >= self.settings.max_bulk_lists:
            raise ClearoutError.of(_LIMIT_CODES[kind])

    def _check_verify_credits(self, billable: int) -> None:
        spendable = self.state.spendable
        if billable and spendable <= 0:
            raise ClearoutError.of(1002)
        if billable > spendable:
            message = f"Your available credit is {spendable} which is not enough to verify {billable} emails"
            raise ClearoutError(1028, message, http_status=402)

    def _check_finder_credits(self, rows: int) -> None:
        spendable, required = self.state.spendable, FOUND_COST * rows
        if required > spendable:
            short = required - max(spendable, 0)
            message = (
                f"Your available credits {spendable} is not enough to find {rows} email addresses from the "
                f"list, so please purchase {short} more credits"
            )
            raise ClearoutError(1028, message, http_status=402, additional_info={"required_credits": short})

    def _list_of(
        self, kind: ListKind, values: Mapping[str, Any], location: str, missing: int = 1029
    ) -> BulkList:
        check = Validator(values, location)
        list_id = check.string("list_id")
        check.check()
        return self.state.get(kind, list_id, missing)

    def progress(self, kind: ListKind) -> Handler:
        async def progress(call: Call) -> Mapping[str, Any]:
            bulk = self._list_of(kind, call.query, "query", missing=1008)
            return {
                "progress_status": self.faults.progress_status_override or bulk.status.value,
                _PROGRESS_KEYS[kind]: bulk.percent(time.time()),
            }

        return progress

    def download(self, kind: ListKind) -> Handler:
        async def download(call: Call) -> Mapping[str, Any]:
            bulk = self._list_of(kind, call.body, "body")
            if bulk.expired:
                raise ClearoutError.of(1007)
            if bulk.status is ListStatus.RUNNING:
                raise ClearoutError.of(1029, "List is not available for download until it completes")
            bulk.downloaded = True
            self.state.touch(bulk)
            expires = f"{time.time() + self.faults.result_url_ttl:.3f}"
            url = call.request.url_for("clearout_result_file", list_id=bulk.id, filename=bulk.result_name)
            query = urlencode({"expires": expires, "signature": self.state.sign(bulk.id, expires)})
            return {"url": f"{url}?{query}"}

        return download

    async def result_file(self, call: Call) -> Response:
        """The presigned result URL: no Authorization, an expiry and a signature, streamed from disk."""
        list_id = call.request.path_params["list_id"]
        expires, signature = call.query.get("expires", ""), call.query.get("signature", "")
        if not self.state.signature_ok(list_id, expires, signature):
            return _s3_denied("SignatureDoesNotMatch", "The request signature we calculated does not match")
        if time.time() > float(expires):
            return _s3_denied("AccessDenied", "Request has expired")
        bulk = self.state.lists.get(list_id)
        if bulk is None or bulk.expired:
            return _s3_denied("AccessDenied", "Access Denied")
        headers = {"content-disposition": f'attachment; filename="{bulk.result_name}"'}
        chunks = bulk.result_chunks(time.time())
        reset_after = self.faults.take_download_reset()
        if reset_after is None:
            return StreamingResponse(chunks, media_type="text/csv", headers=headers)
        self.state.count("download_resets")
        return _ResetResponse(_first_bytes(chunks, reset_after), media_type="text/csv", headers=headers)

    def cancel(self, kind: ListKind) -> Handler:
        async def cancel(call: Call) -> Mapping[str, Any]:
            bulk = self._list_of(kind, call.body, "body")
            if bulk.expired:
                raise ClearoutError.of(1007)
            if bulk.status is not ListStatus.RUNNING:
                raise ClearoutError.of(1116)
            bulk.cancel(time.time())
            self.state.touch(bulk)
            return bulk.summary()

        return cancel

    def remove(self, kind: ListKind) -> Handler:
        async def remove(call: Call) -> Mapping[str, Any]:
            check = Validator(call.body, "body")
            list_id = check.string("list_id")
            ignore_result = check.boolean("ignore_result", default=False)
            check.check()
            bulk = self.state.get(kind, list_id)
            if bulk.expired:
                raise ClearoutError.of(1007)
            if bulk.status is ListStatus.RUNNING:
                raise ClearoutError.of(1116, "List is still running and cannot be removed, cancel it first")
            if not bulk.downloaded and not ignore_result:
                raise ClearoutError.of(
                    1116, "Result file not downloaded yet, set ignore_result=true to remove the list anyway"
                )
            self.state.retire(bulk)
            await run_in_threadpool(bulk.stored.delete)
            return bulk.summary()

        return remove

    # --- email finder instant ---------------------------------------------------------------------
    async def finder_instant(self, call: Call) -> Mapping[str, Any]:
        check = Validator(call.body, "body")
        name, domain = check.string("name"), check.string("domain")
        timeout = check.number("timeout", default=30_000, minimum=10_000, maximum=180_000)
        queue = check.boolean("queue", default=True)
        check.check()
        if has_unsupported_characters(name):
            raise ClearoutError.of(1088)
        state = self.state
        state.settle()
        if state.spendable < FOUND_COST:
            raise ClearoutError.of(1099)
        result = find_email(name, domain)
        search, patience = self._seconds(self.settings.finder_search_ms), self._seconds(timeout)
        if call.inject_timeout or patience < search:
            if not call.inject_timeout:
                await asyncio.sleep(patience)
            queue_id = None
            if queue:  # the search goes on in the background: answerable through queue_status later
                queue_id = state.new_id()
                ready_at = time.time() + max(0.0, call.started + search - time.monotonic())
                state.enqueue(queue_id, QueuedSearch(ready_at, name, domain, result))
                state.charge(result.cost)
            raise timeout_error("email_finder", json.dumps(dict(call.body), separators=(",", ":")), queue_id)
        await asyncio.sleep(search)
        state.charge(result.cost)
        return result.as_instant(datetime.now(UTC))

    async def queue_status(self, call: Call) -> Mapping[str, Any]:
        check = Validator(call.query, "query")
        queue_id = check.string("qid")
        check.check()
        queued = self.state.queue.get(queue_id)
        if queued is None:
            raise ClearoutError.of(1104)
        if time.time() < queued.ready_at:
            return {"query_status": "running"}
        return {"query_status": "completed", **queued.result.as_instant(datetime.now(UTC))}

    # --- sandbox-only inspection ------------------------------------------------------------------
    async def stats(self, call: Call) -> Response:
        return JSONResponse(self.state.stats())

    async def expire(self, call: Call) -> Mapping[str, Any]:
        """Mark a list's result expired, as Clearout does after 30 days (download answers 1007)."""
        check = Validator(call.body, "body")
        list_id = check.string("list_id")
        check.check()
        bulk = self.state.lists.get(list_id)
        if bulk is None:
            raise ClearoutError.of(1029)
        bulk.expired = True
        self.state.touch(bulk)
        return {"list_id": list_id, "expired": True}
