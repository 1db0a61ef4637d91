"""Emulator of the Mail.so validation API, mounted by the sandbox app under ``/mailso/v1``.

Faithful to ``mailso-api.md``; where it is silent the choice is listed under "Inferred choices". Every
API call goes through :meth:`_MailsoApi.endpoint`, in this order:

1. ``latency_ms`` (shared with the other emulators);
2. an injected ``mailso_fault_rate_503`` → 503 with no body, nothing done (counted as ``faults_503``);
3. auth: the ``x-mails-api-key`` header must be ``mailso_api_key``, else 401 "Unauthorized";
4. rate limit: fixed windows of ``rate_window`` s holding ``mailso_rpm`` calls; past it 429 "Too many
   requests" with ``Retry-After`` (whole seconds until the window ends);
5. the handler, which raises :class:`MailsoFailure` for any failure.

Failures are ``{"data": null, "error": "<message>"}``. Endpoints:

- ``GET /validate?email=`` → ``{"data": <validation>, "error": null}`` (:mod:`.mailso_verdicts`), one credit;
  no or a blank ``email`` → 400 "The body provided has an invalid format.";
- ``POST /batch`` ``{"emails": [...]}`` → the batch object at the top level, ``finished_at: null``; charged
  at creation. ``mailso_paid_plan=false`` → 403 "Paid subscription required to use list validations";
  a body that is not an object with a non-empty list of non-empty strings → 400; the
  ``mailso_lost_batch_answers`` fault creates and charges the batch, then answers 503 with no body;
- ``GET /batch/{id}`` → the batch plus ``emails`` (those validated so far; all of them, and
  ``finished_at``, once ``size / mailso_batch_rate`` seconds have passed); unknown id → 404;
- ``GET /_sandbox/stats`` (key required, not rate-limited) → the ledger and counters
  (:meth:`.MailsoState.stats`).

Inferred choices: an exhausted account answers 429 "Quota exceeded" (the fact sheet only says 429 is
used for rate and quota) without ``Retry-After``; the plan error travels with HTTP 403; a batch that
needs more credits than are left is refused whole; ``name`` is generated (``batch-<first 8 of the id>``).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from clearout_provider.sandbox.faults import Faults
from clearout_provider.sandbox.mailso_state import MailsoState
from clearout_provider.sandbox.mailso_verdicts import validation_for
from clearout_provider.sandbox.settings import SandboxSettings

API_KEY_HEADER = "x-mails-api-key"
BAD_FORMAT = "The body provided has an invalid format."
PLAN_REQUIRED = "Paid subscription required to use list validations"


class MailsoFailure(Exception):
    """A failure the router answers as ``{"data": null, "error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse({"data": None, "error": self.message}, self.status, headers=self.headers)


Handler = Callable[[Request], Awaitable[Response | Mapping[str, Any]]]


def build_router(settings: SandboxSettings, faults: Faults | None = None) -> APIRouter:
    """The Mail.so routes (paths relative to ``/mailso/v1``), sharing one account."""
    api = _MailsoApi(settings, faults or Faults.from_settings(settings))
    router = APIRouter()
    router.add_api_route("/validate", api.endpoint(api.validate), methods=["GET"], include_in_schema=False)
    router.add_api_route("/batch", api.endpoint(api.create_batch), methods=["POST"], include_in_schema=False)
    router.add_api_route(
        "/batch/{batch_id}", api.endpoint(api.get_batch), methods=["GET"], include_in_schema=False
    )
    router.add_api_route(
        "/_sandbox/stats", api.endpoint(api.stats, api_call=False), methods=["GET"], include_in_schema=False
    )
    return router


class _MailsoApi:
    """The plumbing and the handlers; all state lives in :class:`MailsoState`."""

    def __init__(self, settings: SandboxSettings, faults: Faults) -> None:
        self.settings = settings
        self.faults = faults
        self.state = MailsoState(settings)

    def endpoint(
        self, handler: Handler, *, api_call: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` in the steps of the module docstring (only auth for sandbox-only routes)."""

        async def run(request: Request) -> Response:
            if api_call and self.settings.latency_ms:
                await asyncio.sleep(self.settings.latency_ms / 1000)
            rate = self.faults.mailso_fault_rate_503
            if api_call and rate > 0 and self.state.fault_rng.random() < rate:
                self.state.count("faults_503")
                return Response(status_code=503)
            try:
                self._check_key(request)
                if api_call:
                    self._take_rate_slot()
                result = await handler(request)
            except MailsoFailure as failure:
                return failure.response()
            return result if isinstance(result, Response) else JSONResponse(dict(result))

        return run

    def _check_key(self, request: Request) -> None:
        key = request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(key.encode(), self.settings.mailso_api_key.encode()):
            self.state.count("unauthorized")
            raise MailsoFailure(401, "Unauthorized")

    def _take_rate_slot(self) -> None:
        now = time.monotonic()
        window = self.state.window
        if not window.take(now):
            self.state.count("rate_limited")
            retry_after = max(1, math.ceil(window.reset_in(now)))
            raise MailsoFailure(429, "Too many requests", {"Retry-After": str(retry_after)})

    def _need_credits(self, credits: int) -> None:
        if credits > self.state.available:
            self.state.count("quota_exceeded")
            raise MailsoFailure(429, "Quota exceeded")

    # --- handlers ----------------------------------------------------------------------------------
    async def validate(self, request: Request) -> Mapping[str, Any]:
        email = request.query_params.get("email", "")
        if not email.strip():
            raise MailsoFailure(400, BAD_FORMAT)
        self._need_credits(1)
        self.state.charge_validation()
        return {"data": validation_for(email), "error": None}

    async def create_batch(self, request: Request) -> Response | Mapping[str, Any]:
        if not self.settings.mailso_paid_plan:
            raise MailsoFailure(403, PLAN_REQUIRED)
        try:
            body = await request.json()
        except ValueError:
            raise MailsoFailure(400, BAD_FORMAT) from None
        emails = body.get("emails") if isinstance(body, dict) else None
        if not (
            isinstance(emails, list) and emails and all(isinstance(e, str) and e.strip() for e in emails)
        ):
            raise MailsoFailure(400, BAD_FORMAT)
        self._need_credits(len(emails))
        now = time.time()
        batch = self.state.create_batch(emails, now)
        if self.faults.take_lost_batch_answer():
            self.state.count("lost_batch_answers")
            return Response(status_code=503)
        return batch.as_api(now, self.settings.mailso_batch_rate, with_emails=False)

    async def get_batch(self, request: Request) -> Mapping[str, Any]:
        batch = self.state.batches.get(request.path_params["batch_id"])
        if batch is None:
            raise MailsoFailure(404, "Batch not found")
        self.state.count("batch_polls")
        return batch.as_api(time.time(), self.settings.mailso_batch_rate, with_emails=True)

    async def stats(self, request: Request) -> Mapping[str, Any]:
        return self.state.stats()
