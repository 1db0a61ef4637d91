"""ClearoutHook: every endpoint of the Clearout API v2, sync (requests) and async (aiohttp).

The hook owns the wire: authentication, timeouts, the retry policy, the client-side rate limiter and
the translation of answers into typed results (:mod:`clearout_provider.clearout.models`) or typed exceptions
(:mod:`clearout_provider.exceptions`). Operators call the sync methods; triggers call the ``a``-prefixed
async twins, which never block the event loop. Both transports feed every answer to the ONE decision
function :func:`clearout_provider.clearout.protocol.interpret_response` and retry with the ONE policy
:func:`clearout_provider.clearout.protocol.retry_arguments`.

Connection (type ``clearout``): API token in the password; base URL in the host (default
``https://api.clearout.io/v2``; with or without scheme, a bare host gets ``/v2``). Extras:

- ``timeout``: seconds per HTTP call, default 190 (instant verifications may legitimately take 180 s);
- ``rpm`` / ``finder_rpm``: the plan's instant verify / finder requests per minute, default 10 / 6 (the
  lowest plans); the rate limiter starts from them and follows ``x-ratelimit-*`` headers once they come;
- ``allow_insecure_http``: default false. Plain ``http://`` is refused for any host but this machine
  (the sandbox on 127.0.0.1): the token would cross the network in clear text.

Both transports honour ``HTTP(S)_PROXY`` / ``NO_PROXY`` and never follow redirects on API calls.

Uploads and retries ("never spend twice"): an upload is retried after a 5xx or a broken connection,
because Clearout may not have received it — but it may have. With ``ignore_duplicate_file=False``
(the default) a resent file that Clearout already accepted is answered with 2043, which surfaces as
:class:`~clearout_provider.exceptions.ClearoutDuplicateFile` carrying the earlier ``list_id``: resume
that list instead of uploading again. With ``ignore_duplicate_file=True`` Clearout would start (and
charge) a second list, so such an upload is only resent when it provably never arrived (429 or a
connection that never opened).

requests and aiohttp are imported by the methods that use them, not at the top: every DAG file that uses
an operator imports this module, and the HTTP clients would double the time it takes to parse.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from tenacity import AsyncRetrying, Retrying

from clearout_provider.clearout import protocol
from clearout_provider.clearout.models import (
    FLAG_FIELDS,
    BulkProgress,
    BulkUpload,
    Credits,
    DownloadedFile,
    FinderResult,
    FlagCheck,
    FlagKind,
    ListInfo,
    VerifyResult,
)
from clearout_provider.clearout.protocol import (
    Endpoint,
    interpret_response,
    parse_body,
    retry_arguments,
)
from clearout_provider.exceptions import (
    ClearoutAuthError,
    ClearoutBadInput,
    ClearoutConfigError,
    ClearoutError,
    ClearoutProtocolError,
    ClearoutServerError,
    ClearoutTimeout,
)
from clearout_provider.hooks.http_safety import (
    ALLOW_INSECURE_HTTP,
    as_flag,
    header_problem,
    origin,
    url_problem,
)
from clearout_provider.hooks.multipart import MultipartFileBody, content_type_for
from clearout_provider.hooks.rate_limit import DEFAULT_FINDER_RPM, DEFAULT_VERIFY_RPM, RateLimitBucket
from clearout_provider.hooks.session import USER_AGENT, VendorHook
from clearout_provider.masking import mask_email

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.clearout.io/v2"
DEFAULT_TIMEOUT = 190.0
#: Clearout's own default wait of an instant verification (ms), used to size the HTTP timeout.
INSTANT_VERIFY_DEFAULT_MS = 130_000
#: The finder's default search time (ms).
FINDER_DEFAULT_MS = 30_000
#: Bytes per read while streaming a result file to disk.
DOWNLOAD_CHUNK = 1 << 20
#: Connect timeout (s): a host that does not accept a connection within it is unreachable.
CONNECT_TIMEOUT = 10.0

Optimize = Literal["highest_accuracy", "fastest_turnaround"]


def normalise_base_url(host: str | None) -> str:
    """The API base URL from a connection host: ``api.clearout.io`` → ``https://api.clearout.io/v2``."""
    text = (host or "").strip().rstrip("/")
    if not text:
        return DEFAULT_BASE_URL
    if "://" not in text:
        text = "https://" + text
    try:
        has_path = bool(urlsplit(text).path)
    except ValueError:
        return text  # not a URL at all: the connection check says so
    return text if has_path else text + "/v2"


@dataclass(frozen=True)
class _ConnSettings:
    """What the hook needs from the connection; the token is kept out of ``repr``."""

    base_url: str
    timeout: float
    token: str = field(repr=False)
    rpm: int = DEFAULT_VERIFY_RPM
    finder_rpm: int = DEFAULT_FINDER_RPM
    allow_insecure_http: bool = False


def _extras(conn: Any) -> Mapping[str, Any]:
    extra = conn.extra_dejson or {}
    if not isinstance(extra, Mapping):
        raise ClearoutConfigError(f"Connection {conn.conn_id!r}: the extra must be a JSON object")
    return extra


def _seconds_extra(where: str, extra: Mapping[str, Any], name: str, default: float) -> float:
    """A positive, finite number of seconds (absent or empty: ``default``)."""
    value = extra.get(name)
    if value is None or value == "":
        return default
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ClearoutConfigError(f"{where}: extra {name!r} must be a positive number of seconds")
    return seconds


def _rpm_extra(where: str, extra: Mapping[str, Any], name: str, default: int) -> int:
    """A plan's requests per minute: a whole number of at least 1 (absent or empty: ``default``)."""
    value = extra.get(name)
    if value is None or value == "":
        return default
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ClearoutConfigError(
            f"{where}: extra {name!r} must be a whole number of requests per minute (at least 1), "
            "the rate of the account's Clearout plan"
        )
    return int(text)


def _flag_extra(where: str, extra: Mapping[str, Any], name: str) -> bool:
    flag = as_flag(extra.get(name))
    if flag is None:
        raise ClearoutConfigError(f"{where}: extra {name!r} must be true or false")
    return flag


@dataclass(frozen=True)
class _Request:
    """One API call, described once and sent by either transport."""

    method: Literal["GET", "POST"]
    path: str
    json: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None
    bucket: Literal["verify", "finder"] | None = None
    """The rate-limit family of an instant endpoint; None for endpoints Clearout does not rate-limit."""
    read_timeout: float | None = None
    """Seconds to wait for the answer when the call itself may take long (instant calls)."""
    upload: tuple[Path, Mapping[str, str]] | None = None
    """A file and the form fields to send with it as multipart."""
    resend_safe: bool = True
    endpoint: Endpoint = protocol.ANY
    """How to read the answer: the fields its success must hold, and codes with a meaning of their own."""


class ClearoutHook(VendorHook["_ConnSettings"]):
    """Talk to the Clearout API v2: credits, instant and bulk verification, flag checks, Email Finder.

    :param clearout_conn_id: Airflow connection of type ``clearout``.
    :param max_retries: retries of a transient failure (5xx, connection error, 429) before giving up.
    :param retry_backoff: first backoff in seconds (doubles per retry, plus jitter).
    :param retry_max_backoff: cap of one backoff.
    :param rate_limit_margin: seconds added after a rate-limit window ends before sending again.
    :param finder_poll_interval: seconds between finder queue polls after a 524.
    :param finder_max_wait: seconds to keep polling a finder queue before raising ClearoutTimeout.
    """

    conn_name_attr = "clearout_conn_id"
    default_conn_name = "clearout_default"
    conn_type = "clearout"
    hook_name = "Clearout"

    def __init__(
        self,
        clearout_conn_id: str = default_conn_name,
        *,
        max_retries: int = 5,
        retry_backoff: float = 1.0,
        retry_max_backoff: float = 60.0,
        rate_limit_margin: float = 0.05,
        finder_poll_interval: float = 5.0,
        finder_max_wait: float = 600.0,
    ) -> None:
        super().__init__()
        self.clearout_conn_id = clearout_conn_id
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_max_backoff = retry_max_backoff
        self.rate_limit_margin = rate_limit_margin
        self.finder_poll_interval = finder_poll_interval
        self.finder_max_wait = finder_max_wait
        self._init_runtime()

    runtime_attributes = (*VendorHook.runtime_attributes, "_buckets")

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._buckets: dict[str, RateLimitBucket] = {}  # built with the connection: they start from its RPM

    # ------------------------------------------------------------------ connection and transport

    @staticmethod
    def _settings_from(conn: Any) -> _ConnSettings:
        """Read and check the connection; every problem is found here, before anything is sent."""
        where = f"Connection {conn.conn_id!r}"
        token = (conn.password or "").strip()
        if not token:
            raise ClearoutAuthError(f"{where} has no API token in its password field")
        if problem := header_problem(token):
            raise ClearoutConfigError(f"{where}: the API token {problem}")
        extra = _extras(conn)
        insecure = _flag_extra(where, extra, ALLOW_INSECURE_HTTP)
        base_url = normalise_base_url(conn.host)
        if problem := url_problem(base_url, allow_insecure_http=insecure):
            raise ClearoutConfigError(f"{where}: the base URL {origin(base_url)} {problem}")
        return _ConnSettings(
            base_url=base_url,
            timeout=_seconds_extra(where, extra, "timeout", DEFAULT_TIMEOUT),
            token=token,
            rpm=_rpm_extra(where, extra, "rpm", DEFAULT_VERIFY_RPM),
            finder_rpm=_rpm_extra(where, extra, "finder_rpm", DEFAULT_FINDER_RPM),
            allow_insecure_http=insecure,
        )

    def _limiters(self, conn: _ConnSettings) -> None:
        self._buckets = {
            family: RateLimitBucket(family, initial_limit=rpm, safety_margin=self.rate_limit_margin)
            for family, rpm in (("verify", conn.rpm), ("finder", conn.finder_rpm))
        }

    def _retrying_kwargs(self, req: _Request) -> dict[str, Any]:
        return retry_arguments(
            max_retries=self.max_retries,
            backoff=self.retry_backoff,
            max_backoff=self.retry_max_backoff,
            resend_safe=req.resend_safe,
            describe=f"Clearout {req.method} {req.path}",
        )

    @staticmethod
    def _headers(conn: _ConnSettings) -> dict[str, str]:
        return {"Authorization": conn.token, "Accept": "application/json"}

    def _call(self, req: _Request) -> dict[str, Any]:
        """Send ``req`` with retries and return the answer's ``data`` (or raise a ClearoutError)."""
        conn = self._settings()
        return Retrying(**self._retrying_kwargs(req))(self._send_once, conn, req)

    def _send_once(self, conn: _ConnSettings, req: _Request) -> dict[str, Any]:
        import requests

        bucket = self._buckets[req.bucket] if req.bucket else None
        if bucket:
            bucket.acquire()
        answer_headers: Mapping[str, str] | None = None
        started = time.monotonic()
        try:
            headers = self._headers(conn)
            timeout = (CONNECT_TIMEOUT, max(conn.timeout, req.read_timeout or 0.0))
            url = conn.base_url + req.path
            if req.upload:
                path, fields = req.upload
                with MultipartFileBody(fields, "file", path) as body:
                    headers["Content-Type"] = body.content_type
                    resp = self.get_conn().post(
                        url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                    )
            else:
                resp = self.get_conn().request(
                    req.method,
                    url,
                    json=req.json,
                    params=req.params,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
            answer_headers = resp.headers
        except requests.RequestException as exc:
            raise _transport_error(conn.base_url, exc) from None
        finally:
            if bucket:
                bucket.release(answer_headers)
        log.debug(
            "Clearout %s %s → HTTP %s in %.3f s",
            req.method,
            req.path,
            resp.status_code,
            time.monotonic() - started,
        )
        return interpret_response(
            resp.status_code, resp.headers, parse_body(resp.content), req.endpoint, secrets=(conn.token,)
        )

    @asynccontextmanager
    async def _aclient(self) -> AsyncIterator[aiohttp.ClientSession]:
        """An aiohttp session for one public async call (sessions are bound to their event loop).

        aiohttp is imported in a worker thread: the first import takes 0.1-0.3 s of CPU, which inline would
        block the event loop the triggerer shares with every other trigger (later calls find it loaded;
        the import lock makes concurrent first calls wait for the whole module).
        """
        aiohttp = await asyncio.to_thread(importlib.import_module, "aiohttp")
        # trust_env: HTTP(S)_PROXY / NO_PROXY apply as they do for requests on the sync path.
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, trust_env=True) as s:
            yield s

    async def _acall(self, session: aiohttp.ClientSession, req: _Request) -> dict[str, Any]:
        conn = await self._asettings()
        return await AsyncRetrying(**self._retrying_kwargs(req))(self._asend_once, session, conn, req)

    async def _arun(self, req: _Request) -> dict[str, Any]:
        async with self._aclient() as session:
            return await self._acall(session, req)

    async def _asend_once(
        self, session: aiohttp.ClientSession, conn: _ConnSettings, req: _Request
    ) -> dict[str, Any]:
        import aiohttp

        bucket = self._buckets[req.bucket] if req.bucket else None
        if bucket:
            await bucket.aacquire()
        answer_headers: Mapping[str, str] | None = None
        started = time.monotonic()
        try:
            timeout = aiohttp.ClientTimeout(
                sock_connect=CONNECT_TIMEOUT, sock_read=max(conn.timeout, req.read_timeout or 0.0)
            )
            kwargs: dict[str, Any] = {
                "headers": self._headers(conn),
                "timeout": timeout,
                "allow_redirects": False,
            }
            if req.upload:
                path, fields = req.upload
                with path.open("rb") as fh:
                    form = aiohttp.FormData(dict(fields))
                    form.add_field("file", fh, filename=path.name, content_type=content_type_for(path))
                    async with session.post(conn.base_url + req.path, data=form, **kwargs) as resp:
                        status, answer_headers, raw = resp.status, resp.headers, await resp.read()
            else:
                async with session.request(
                    req.method, conn.base_url + req.path, json=req.json, params=req.params, **kwargs
                ) as resp:
                    status, answer_headers, raw = resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(conn.base_url, exc) from None
        finally:
            if bucket:
                bucket.release(answer_headers)
        log.debug(
            "Clearout %s %s → HTTP %s in %.3f s", req.method, req.path, status, time.monotonic() - started
        )
        return interpret_response(
            status, answer_headers, parse_body(raw), req.endpoint, secrets=(conn.token,)
        )

    # ------------------------------------------------------------------ credits and connection test

    def get_credits(self) -> Credits:
        """The account's credit balance and daily limit."""
        return Credits.from_api(self._call(_CREDITS))

    async def aget_credits(self) -> Credits:
        """Async :meth:`get_credits`."""
        return Credits.from_api(await self._arun(_CREDITS))

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test connection": a getcredits call proves URL and token."""
        try:
            credits = self.get_credits()
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the UI, not raised
            return False, str(exc)
        return True, f"Connected: {credits.available} credits available"

    # ------------------------------------------------------------------ instant verification

    def verify_email(self, email: str, *, timeout_ms: int | None = None) -> VerifyResult:
        """Verify one address now (costs a credit unless unknown). ``timeout_ms``: Clearout's wait, ≤ 180000.

        A 524 (Clearout gave up after ``timeout_ms``) raises ClearoutTimeout and is not retried: each
        try may take minutes; retry later or use bulk verification.
        """
        log.debug("Verifying %s", mask_email(email))
        return VerifyResult.from_api(self._call(_verify(email, timeout_ms)))

    async def averify_email(self, email: str, *, timeout_ms: int | None = None) -> VerifyResult:
        """Async :meth:`verify_email`."""
        log.debug("Verifying %s", mask_email(email))
        return VerifyResult.from_api(await self._arun(_verify(email, timeout_ms)))

    def check_flag(self, email: str, kind: FlagKind, *, timeout_ms: int | None = None) -> FlagCheck:
        """One quick check: is the address catch-all / disposable / business / free / role / gibberish."""
        log.debug("Checking %s of %s", kind, mask_email(email))
        return FlagCheck.from_api(kind, self._call(_flag(email, kind, timeout_ms)))

    async def acheck_flag(self, email: str, kind: FlagKind, *, timeout_ms: int | None = None) -> FlagCheck:
        """Async :meth:`check_flag`."""
        log.debug("Checking %s of %s", kind, mask_email(email))
        return FlagCheck.from_api(kind, await self._arun(_flag(email, kind, timeout_ms)))

    # ------------------------------------------------------------------ bulk verification

    def upload_bulk_verify(
        self,
        path: str | os.PathLike[str],
        *,
        optimize: Optimize = "highest_accuracy",
        ignore_duplicate_file: bool = False,
    ) -> BulkUpload:
        """Upload a CSV/XLSX (email column named Email, Emails, Email address or Emailaddress), streamed.

        Raises ClearoutDuplicateFile (with the earlier ``list_id``) when the same file was uploaded
        recently, unless ``ignore_duplicate_file``; see the module docstring on retries.
        """
        return BulkUpload.from_api(self._call(_bulk_verify(Path(path), optimize, ignore_duplicate_file)))

    async def aupload_bulk_verify(
        self,
        path: str | os.PathLike[str],
        *,
        optimize: Optimize = "highest_accuracy",
        ignore_duplicate_file: bool = False,
    ) -> BulkUpload:
        """Async :meth:`upload_bulk_verify`."""
        return BulkUpload.from_api(
            await self._arun(_bulk_verify(Path(path), optimize, ignore_duplicate_file))
        )

    def get_bulk_progress(self, list_id: str) -> BulkProgress:
        """Progress of a bulk verify list (``percent`` 0–100; ``finished`` once completed or cancelled)."""
        return BulkProgress.from_api(list_id, self._call(_progress(_VERIFY, list_id)))

    async def aget_bulk_progress(self, list_id: str) -> BulkProgress:
        """Async :meth:`get_bulk_progress` (what a trigger polls)."""
        return BulkProgress.from_api(list_id, await self._arun(_progress(_VERIFY, list_id)))

    def download_bulk_result(self, list_id: str, dest_path: str | os.PathLike[str]) -> DownloadedFile:
        """Stream the result CSV of a completed list to ``dest_path`` (atomically: temp file, then rename)."""
        return self._download(_VERIFY, list_id, Path(dest_path))

    async def adownload_bulk_result(self, list_id: str, dest_path: str | os.PathLike[str]) -> DownloadedFile:
        """Async :meth:`download_bulk_result`."""
        return await self._adownload(_VERIFY, list_id, Path(dest_path))

    def cancel_list(self, list_id: str) -> ListInfo:
        """Cancel a running bulk verify list; unprocessed addresses become Unknown (605) and cost nothing."""
        return ListInfo.from_api(list_id, self._call(_cancel(_VERIFY, list_id)))

    async def acancel_list(self, list_id: str) -> ListInfo:
        """Async :meth:`cancel_list` (what a trigger calls when its task is killed)."""
        return ListInfo.from_api(list_id, await self._arun(_cancel(_VERIFY, list_id)))

    def remove_list(self, list_id: str, *, ignore_result: bool = False) -> ListInfo:
        """Delete a finished bulk verify list (and its result) from the account."""
        return ListInfo.from_api(list_id, self._call(_remove(_VERIFY, list_id, ignore_result)))

    async def aremove_list(self, list_id: str, *, ignore_result: bool = False) -> ListInfo:
        """Async :meth:`remove_list`."""
        return ListInfo.from_api(list_id, await self._arun(_remove(_VERIFY, list_id, ignore_result)))

    # ------------------------------------------------------------------ email finder

    def find_email(
        self, name: str, domain: str, *, timeout_ms: int | None = None, queue: bool = True
    ) -> FinderResult:
        """Find the address of ``name`` at ``domain`` (a domain or a company name).

        When Clearout times out (524) with a ``queue_id`` and ``queue`` is true, the search goes on in
        the background and :meth:`wait_for_finder_queue` waits for its answer.
        """
        try:
            return FinderResult.from_api(self._call(_find(name, domain, timeout_ms, queue)))
        except ClearoutTimeout as exc:
            if not (queue and exc.queue_id):
                raise
            qid = exc.queue_id
        return self.wait_for_finder_queue(qid)

    async def afind_email(
        self, name: str, domain: str, *, timeout_ms: int | None = None, queue: bool = True
    ) -> FinderResult:
        """Async :meth:`find_email`."""
        async with self._aclient() as session:
            try:
                return FinderResult.from_api(
                    await self._acall(session, _find(name, domain, timeout_ms, queue))
                )
            except ClearoutTimeout as exc:
                if not (queue and exc.queue_id):
                    raise
                qid = exc.queue_id
            deadline = time.monotonic() + self.finder_max_wait
            while (
                result := FinderResult.from_api(await self._acall(session, _queue_status(qid)))
            ).query_status != "completed":
                _check_deadline(qid, deadline, self.finder_poll_interval, self.finder_max_wait)
                await asyncio.sleep(self.finder_poll_interval)
            return result

    def wait_for_finder_queue(self, queue_id: str) -> FinderResult:
        """The answer of a queued finder search: poll its queue status every ``finder_poll_interval``
        seconds until it completes, for at most ``finder_max_wait`` seconds (then ClearoutTimeout with the
        ``queue_id``).

        :meth:`find_email` waits this way after a 524; a task that kept the ``queue_id`` of a search still
        running when its wait ended calls it to collect that answer instead of searching (and paying) again.
        """
        deadline = time.monotonic() + self.finder_max_wait
        while (result := self.get_finder_queue_status(queue_id)).query_status != "completed":
            _check_deadline(queue_id, deadline, self.finder_poll_interval, self.finder_max_wait)
            time.sleep(self.finder_poll_interval)
        return result

    def get_finder_queue_status(self, queue_id: str) -> FinderResult:
        """State of a queued finder search; ``query_status == "completed"`` once the fields are final."""
        return FinderResult.from_api(self._call(_queue_status(queue_id)))

    async def aget_finder_queue_status(self, queue_id: str) -> FinderResult:
        """Async :meth:`get_finder_queue_status`."""
        return FinderResult.from_api(await self._arun(_queue_status(queue_id)))

    def upload_bulk_finder(
        self, path: str | os.PathLike[str], *, ignore_duplicate_file: bool = False
    ) -> BulkUpload:
        """Upload a CSV/XLSX of names and domains/companies to the bulk Email Finder (streamed)."""
        return BulkUpload.from_api(self._call(_bulk_finder(Path(path), ignore_duplicate_file)))

    async def aupload_bulk_finder(
        self, path: str | os.PathLike[str], *, ignore_duplicate_file: bool = False
    ) -> BulkUpload:
        """Async :meth:`upload_bulk_finder`."""
        return BulkUpload.from_api(await self._arun(_bulk_finder(Path(path), ignore_duplicate_file)))

    def get_finder_bulk_progress(self, list_id: str) -> BulkProgress:
        """Progress of a bulk finder list."""
        return BulkProgress.from_api(list_id, self._call(_progress(_FINDER, list_id)))

    async def aget_finder_bulk_progress(self, list_id: str) -> BulkProgress:
        """Async :meth:`get_finder_bulk_progress`."""
        return BulkProgress.from_api(list_id, await self._arun(_progress(_FINDER, list_id)))

    def download_finder_result(self, list_id: str, dest_path: str | os.PathLike[str]) -> DownloadedFile:
        """Stream the result file of a completed finder list to ``dest_path``."""
        return self._download(_FINDER, list_id, Path(dest_path))

    async def adownload_finder_result(
        self, list_id: str, dest_path: str | os.PathLike[str]
    ) -> DownloadedFile:
        """Async :meth:`download_finder_result`."""
        return await self._adownload(_FINDER, list_id, Path(dest_path))

    def cancel_finder_list(self, list_id: str) -> ListInfo:
        """Cancel a running bulk finder list."""
        return ListInfo.from_api(list_id, self._call(_cancel(_FINDER, list_id)))

    async def acancel_finder_list(self, list_id: str) -> ListInfo:
        """Async :meth:`cancel_finder_list`."""
        return ListInfo.from_api(list_id, await self._arun(_cancel(_FINDER, list_id)))

    def remove_finder_list(self, list_id: str, *, ignore_result: bool = False) -> ListInfo:
        """Delete a finished bulk finder list."""
        return ListInfo.from_api(list_id, self._call(_remove(_FINDER, list_id, ignore_result)))

    async def aremove_finder_list(self, list_id: str, *, ignore_result: bool = False) -> ListInfo:
        """Async :meth:`remove_finder_list`."""
        return ListInfo.from_api(list_id, await self._arun(_remove(_FINDER, list_id, ignore_result)))

    # ------------------------------------------------------------------ streamed downloads

    def _download(self, family: _Family, list_id: str, dest: Path) -> DownloadedFile:
        """Ask for a presigned URL, then stream it to disk; a failed stream retries with a fresh URL."""
        request = _result_url(family, list_id)
        conn = self._settings()
        # One retry budget for both steps (asking for the URL is sent once per attempt, not retried inside).
        retrying = Retrying(**self._retrying_kwargs(request))
        return retrying(lambda: self._stream_to(self._send_once(conn, request)["url"], dest))

    def _stream_to(self, url: str, dest: Path) -> DownloadedFile:
        import requests

        conn = self._settings()
        _check_result_url(conn, url)
        part = _partial_path(dest)
        written = 0
        try:
            # No Authorization header: the URL carries its own signature and may point at a third party.
            with self.get_conn().get(url, stream=True, timeout=(CONNECT_TIMEOUT, conn.timeout)) as resp:
                _check_file_answer(resp.status_code, resp.headers)
                with part.open("wb") as fh:
                    for chunk in resp.iter_content(DOWNLOAD_CHUNK):
                        fh.write(chunk)
                        written += len(chunk)
            os.replace(part, dest)
        except requests.RequestException as exc:
            raise _transport_error(origin(url), exc) from None
        finally:
            part.unlink(missing_ok=True)
        log.info("Downloaded Clearout result %s (%d bytes) to %s", urlsplit(url).path, written, dest)
        return DownloadedFile(path=dest, bytes=written)

    async def _adownload(self, family: _Family, list_id: str, dest: Path) -> DownloadedFile:
        request = _result_url(family, list_id)
        async with self._aclient() as session:

            async def attempt() -> DownloadedFile:
                url = (await self._asend_once(session, await self._asettings(), request))["url"]
                return await self._astream_to(session, url, dest)

            return await AsyncRetrying(**self._retrying_kwargs(request))(attempt)

    async def _astream_to(self, session: aiohttp.ClientSession, url: str, dest: Path) -> DownloadedFile:
        import aiohttp

        conn = await self._asettings()
        _check_result_url(conn, url)
        part = _partial_path(dest)
        written = 0
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=conn.timeout)
        try:
            async with session.get(url, timeout=timeout) as resp:
                _check_file_answer(resp.status, resp.headers)
                fh = await asyncio.to_thread(part.open, "wb")
                try:
                    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                        await asyncio.to_thread(fh.write, chunk)
                        written += len(chunk)
                finally:
                    await asyncio.to_thread(fh.close)
            await asyncio.to_thread(os.replace, part, dest)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(origin(url), exc) from None
        finally:
            await asyncio.to_thread(part.unlink, True)
        log.info("Downloaded Clearout result %s (%d bytes) to %s", urlsplit(url).path, written, dest)
        return DownloadedFile(path=dest, bytes=written)


# ------------------------------------------------------- request builders (shared by both transports)

_Family = Literal["verify", "finder"]
_VERIFY: _Family = "verify"
_FINDER: _Family = "finder"

_CREDITS = _Request("GET", "/email_verify/getcredits", endpoint=protocol.CREDITS)


def _instant_wait(timeout_ms: int | None, default_ms: int) -> float:
    """HTTP read timeout of an instant call: Clearout's own wait plus headroom for the answer."""
    return (timeout_ms or default_ms) / 1000 + 10


def _with_timeout(body: dict[str, Any], timeout_ms: int | None) -> dict[str, Any]:
    if timeout_ms is not None:
        body["timeout"] = timeout_ms
    return body


def _verify(email: str, timeout_ms: int | None) -> _Request:
    return _Request(
        "POST",
        "/email_verify/instant",
        json=_with_timeout({"email": email}, timeout_ms),
        bucket="verify",
        read_timeout=_instant_wait(timeout_ms, INSTANT_VERIFY_DEFAULT_MS),
        endpoint=protocol.INSTANT_VERIFY,
    )


def _flag(email: str, kind: str, timeout_ms: int | None) -> _Request:
    if kind not in FLAG_FIELDS:
        raise ClearoutBadInput(f"Unknown flag check {kind!r}; expected one of {', '.join(FLAG_FIELDS)}")
    return _Request(
        "POST",
        f"/email/verify/{kind}",
        json=_with_timeout({"email": email}, timeout_ms),
        bucket="verify",
        read_timeout=_instant_wait(timeout_ms, INSTANT_VERIFY_DEFAULT_MS),
        endpoint=protocol.FLAG_CHECKS[kind],
    )


def _bulk_verify(path: Path, optimize: str, ignore_duplicate_file: bool) -> _Request:
    fields = {"optimize": optimize, "ignore_duplicate_file": "true" if ignore_duplicate_file else "false"}
    return _Request(
        "POST",
        "/email_verify/bulk",
        upload=(path, fields),
        resend_safe=not ignore_duplicate_file,
        endpoint=protocol.BULK_UPLOAD,
    )


def _bulk_finder(path: Path, ignore_duplicate_file: bool) -> _Request:
    fields = {"ignore_duplicate_file": "true" if ignore_duplicate_file else "false"}
    return _Request(
        "POST",
        "/email_finder/bulk",
        upload=(path, fields),
        resend_safe=not ignore_duplicate_file,
        endpoint=protocol.BULK_UPLOAD,
    )


_PROGRESS = {"verify": "/email_verify/bulk/progress_status", "finder": "/email_finder/bulk/progress_status"}
_RESULT = {"verify": "/download/result", "finder": "/email_finder/download/result"}
_LIST = {"verify": "/email_verify/list", "finder": "/email_finder/list"}


def _progress(family: _Family, list_id: str) -> _Request:
    return _Request("GET", _PROGRESS[family], params={"list_id": list_id}, endpoint=protocol.BULK_PROGRESS)


def _result_url(family: _Family, list_id: str) -> _Request:
    return _Request("POST", _RESULT[family], json={"list_id": list_id}, endpoint=protocol.RESULT_URL)


def _cancel(family: _Family, list_id: str) -> _Request:
    return _Request(
        "POST", f"{_LIST[family]}/cancel", json={"list_id": list_id}, endpoint=protocol.LIST_CHANGE
    )


def _remove(family: _Family, list_id: str, ignore_result: bool) -> _Request:
    return _Request(
        "POST",
        f"{_LIST[family]}/remove",
        json={"list_id": list_id, "ignore_result": ignore_result},
        endpoint=protocol.LIST_CHANGE,
    )


def _find(name: str, domain: str, timeout_ms: int | None, queue: bool) -> _Request:
    return _Request(
        "POST",
        "/email_finder/instant",
        json=_with_timeout({"name": name, "domain": domain, "queue": queue}, timeout_ms),
        bucket="finder",
        read_timeout=_instant_wait(timeout_ms, FINDER_DEFAULT_MS),
        endpoint=protocol.FINDER,
    )


def _queue_status(queue_id: str) -> _Request:
    return _Request(
        "GET",
        "/email_finder/instant/queue_status",
        params={"qid": queue_id},
        bucket="finder",
        endpoint=protocol.FINDER_QUEUE,
    )


# ---------------------------------------------------------------------- helpers


def _check_deadline(queue_id: str, deadline: float, poll: float, max_wait: float) -> None:
    """Raise ClearoutTimeout when another poll would end after ``deadline``."""
    if time.monotonic() + poll > deadline:
        raise ClearoutTimeout(
            f"The Email Finder search did not complete within {max_wait:.0f} s", queue_id=queue_id
        )


def _check_result_url(conn: _ConnSettings, url: str) -> None:
    """The presigned result URL carries the addresses' verdicts: the same transport rules as the API."""
    if problem := url_problem(url, allow_insecure_http=conn.allow_insecure_http):
        raise ClearoutConfigError(f"The result URL Clearout gave ({origin(url)}) {problem}")


def _partial_path(dest: Path) -> Path:
    """A temporary name next to ``dest``, so the final rename is atomic and readers never see half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")


_QUERY = re.compile(r"\?[^\s'\")]*")


def _check_file_answer(status: int, headers: Mapping[str, str]) -> None:
    """Fail on a result-file answer other than 200; a refused presigned URL is retried with a fresh one."""
    if status == 200:
        return
    if status == 403:
        raise ClearoutServerError(
            "The presigned result URL was refused (expired or altered); a fresh one is requested",
            http_status=403,
        )
    interpret_response(status, headers, None)


def _transport_error(where: str, exc: BaseException) -> ClearoutError:
    """Describe a network failure; query strings (a presigned URL's signature) are cut from its text.

    A body that arrived but cannot be decoded (a broken ``Content-Encoding``) is a malformed answer, not
    a network failure: like any unreadable answer it is not resent, since a paid call may have been charged.
    """
    import aiohttp
    import requests
    from aiohttp.http_exceptions import ContentEncodingError
    from urllib3.exceptions import NewConnectionError

    undecodable = isinstance(exc, requests.exceptions.ContentDecodingError)
    if undecodable or isinstance(exc.__cause__, ContentEncodingError):
        return ClearoutProtocolError(
            f"The answer from {where} could not be decoded (a broken Content-Encoding)"
        )
    kind = f"{type(exc).__name__}: {_QUERY.sub('?…', str(exc))}" if str(exc) else type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout | aiohttp.ConnectionTimeoutError):
        return ClearoutServerError(f"Could not connect to {where} ({kind})", maybe_processed=False)
    if isinstance(exc, requests.Timeout | aiohttp.SocketTimeoutError | TimeoutError):
        return ClearoutTimeout(f"No answer from {where} in time ({kind})")
    reason = getattr(exc.args[0], "reason", None) if exc.args else None  # requests wraps urllib3's error
    never_sent = isinstance(exc, aiohttp.ClientConnectorError) or isinstance(reason, NewConnectionError)
    return ClearoutServerError(f"Could not reach {where} ({kind})", maybe_processed=not never_sent)
