"""MailsoHook: the Mail.so validation API (single validations and batches), sync and async.

The hook owns the wire and nothing else: it resolves the connection, paces requests with the client-side
rate limiter (:mod:`.rate_limit`), sends the :class:`~clearout_provider.mailso.protocol.Request` the
protocol module builds, and hands every answer to that request's reader, which returns a typed result
(:mod:`clearout_provider.mailso.models`) or raises a typed ``Mailso*`` exception. Both transports retry
with the ONE policy :func:`clearout_provider.mailso.protocol.retry_arguments`.

Connection (type ``mailso``): API key in the password, sent as the ``x-mails-api-key`` header and never
logged. Base URL from the host (default ``https://api.mails.so/v1``): a full URL is used as it is; a bare
host takes its scheme from the schema field (default https) and its port from the port field, and gets
``/v1`` when it has no path. Extras:

- ``timeout``: seconds per HTTP call, default 60;
- ``rpm``: requests per minute the hook sends at most (Mail.so publishes no limit), default 60;
- ``batch_size``: most addresses one batch may hold, default 500, at most 1000;
- ``allow_insecure_http``: default false. Plain ``http://`` is refused for any host but this machine
  (the sandbox): the key would cross the network in clear text.

Batches and retries ("never spend twice"): a ``POST /batch`` that may have reached Mail.so is never sent
again. Re-posting creates a second batch and pays for every address twice, so after a 5xx or a broken
connection :meth:`MailsoHook.create_batch` raises :class:`~clearout_provider.exceptions.MailsoUnavailable`
(only a connection that never opened is retried). Reads and single validations are retried.

Addresses in log lines are masked (:func:`clearout_provider.masking.mask_email`). One caveat: urllib3's
own DEBUG log prints request lines, and ``GET /validate`` carries the address in its query string, so
keep the ``urllib3`` logger above DEBUG in production (Airflow's default).

requests and aiohttp are imported by the methods that use them, as in the Clearout hook, so that a DAG
file importing this module parses quickly.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from tenacity import AsyncRetrying, Retrying

from clearout_provider.exceptions import (
    MailsoAuthError,
    MailsoBadRequest,
    MailsoBatchTimeout,
    MailsoConfigError,
    MailsoError,
    MailsoNotFound,
    MailsoProtocolError,
    MailsoUnavailable,
)
from clearout_provider.hooks.http_safety import (
    ALLOW_INSECURE_HTTP,
    as_flag,
    header_problem,
    origin,
    url_problem,
)
from clearout_provider.hooks.rate_limit import RateLimitBucket
from clearout_provider.hooks.session import USER_AGENT, VendorHook
from clearout_provider.mailso import protocol
from clearout_provider.mailso.models import MailsoBatch, MailsoValidation
from clearout_provider.mailso.protocol import Request, parse_body
from clearout_provider.masking import mask_email

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.mails.so/v1"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RPM = 60
DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 1000
#: The header carrying the API key.
API_KEY_HEADER = "x-mails-api-key"
#: Connect timeout (s): a host that does not accept a connection within it is unreachable.
CONNECT_TIMEOUT = 10.0
#: The batch id :meth:`MailsoHook.test_connection` asks for: no batch has it, so the probe is free.
_PROBE_BATCH_ID = "00000000-0000-0000-0000-000000000000"


def normalise_base_url(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """The API base URL from a connection's host, schema and port fields (see the module docstring)."""
    text = (host or "").strip().rstrip("/")
    if not text:
        return DEFAULT_BASE_URL
    if "://" not in text:
        scheme = (schema or "").strip().lower() or "https"
        name, slash, path = text.partition("/")
        text = f"{scheme}://{name}{f':{port}' if port and ':' not in name else ''}{slash}{path}"
    try:
        has_path = bool(urlsplit(text).path)
    except ValueError:
        return text  # not a URL at all: the connection check says so
    return text if has_path else text + "/v1"


@dataclass(frozen=True)
class _ConnSettings:
    """What the hook needs from the connection; the key is kept out of ``repr``."""

    base_url: str
    timeout: float
    api_key: str = field(repr=False)
    rpm: int = DEFAULT_RPM
    batch_size: int = DEFAULT_BATCH_SIZE


def _extras(where: str, conn: Any) -> Mapping[str, Any]:
    extra = conn.extra_dejson or {}
    if not isinstance(extra, Mapping):
        raise MailsoConfigError(f"{where}: the extra must be a JSON object")
    return extra


def _positive_seconds(where: str, extra: Mapping[str, Any], name: str, default: float) -> float:
    value = extra.get(name)
    if value is None or value == "":
        return default
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise MailsoConfigError(f"{where}: extra {name!r} must be a positive number of seconds")
    return seconds


def _whole_number(where: str, extra: Mapping[str, Any], name: str, default: int, maximum: int) -> int:
    value = extra.get(name)
    if value is None or value == "":
        return default
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise MailsoConfigError(f"{where}: extra {name!r} must be a whole number within 1..{maximum}")
    return int(text)


class MailsoHook(VendorHook["_ConnSettings"]):
    """Talk to the Mail.so validation API: validate one address, create and read batches.

    :param mailso_conn_id: Airflow connection of type ``mailso``.
    :param max_retries: retries of a transient failure (429, and 5xx / connection errors where a resend
        is safe) before giving up.
    :param retry_backoff: first backoff in seconds (doubles per retry, plus jitter).
    :param retry_max_backoff: cap of one backoff.
    """

    conn_name_attr = "mailso_conn_id"
    default_conn_name = "mailso_default"
    conn_type = "mailso"
    hook_name = "Mail.so"

    def __init__(
        self,
        mailso_conn_id: str = default_conn_name,
        *,
        max_retries: int = 5,
        retry_backoff: float = 1.0,
        retry_max_backoff: float = 60.0,
    ) -> None:
        super().__init__()
        self.mailso_conn_id = mailso_conn_id
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_max_backoff = retry_max_backoff
        self._init_runtime()

    runtime_attributes = (*VendorHook.runtime_attributes, "_bucket")

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._bucket: RateLimitBucket | None = None

    # ------------------------------------------------------------------ connection and transport

    @staticmethod
    def _settings_from(conn: Any) -> _ConnSettings:
        """Read and check the connection; every problem is found here, before anything is sent."""
        where = f"Connection {conn.conn_id!r}"
        api_key = (conn.password or "").strip()
        if not api_key:
            raise MailsoAuthError(f"{where} has no API key in its password field")
        if problem := header_problem(api_key):
            raise MailsoConfigError(f"{where}: the API key {problem}")
        extra = _extras(where, conn)
        insecure = as_flag(extra.get(ALLOW_INSECURE_HTTP))
        if insecure is None:
            raise MailsoConfigError(f"{where}: extra {ALLOW_INSECURE_HTTP!r} must be true or false")
        base_url = normalise_base_url(conn.host, conn.schema, conn.port)
        if problem := url_problem(base_url, allow_insecure_http=insecure):
            raise MailsoConfigError(f"{where}: the base URL {origin(base_url)} {problem}")
        return _ConnSettings(
            base_url=base_url,
            timeout=_positive_seconds(where, extra, "timeout", DEFAULT_TIMEOUT),
            api_key=api_key,
            rpm=_whole_number(where, extra, "rpm", DEFAULT_RPM, 1_000_000),
            batch_size=_whole_number(where, extra, "batch_size", DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE),
        )

    def _limiters(self, conn: _ConnSettings) -> None:
        self._bucket = RateLimitBucket("mailso", initial_limit=conn.rpm)

    @property
    def batch_size(self) -> int:
        """Most addresses one batch may hold (the connection's ``batch_size`` extra, default 500)."""
        return self._settings().batch_size

    def _retrying_kwargs(self, req: Request[Any]) -> dict[str, Any]:
        return protocol.retry_arguments(
            max_retries=self.max_retries,
            backoff=self.retry_backoff,
            max_backoff=self.retry_max_backoff,
            resend_safe=req.resend_safe,
            describe=f"Mail.so {req.method} {req.endpoint.path}",
        )

    @staticmethod
    def _headers(conn: _ConnSettings) -> dict[str, str]:
        return {API_KEY_HEADER: conn.api_key, "Accept": "application/json"}

    def _call(self, req: Request[T]) -> T:
        conn = self._settings()
        return Retrying(**self._retrying_kwargs(req))(self._send_once, conn, req)

    def _send_once(self, conn: _ConnSettings, req: Request[T]) -> T:
        import requests

        assert self._bucket is not None
        self._bucket.acquire()
        started = time.monotonic()
        try:
            resp = self.get_conn().request(
                req.method,
                conn.base_url + req.path,
                params=req.params,
                json=req.json,
                headers=self._headers(conn),
                timeout=(CONNECT_TIMEOUT, conn.timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise _transport_error(conn.base_url, exc) from None
        finally:
            self._bucket.release(None)  # Mail.so sends no rate headers: the configured rpm paces us
        log.debug(
            "Mail.so %s %s → HTTP %s in %.3f s",
            req.method,
            req.endpoint.path,
            resp.status_code,
            time.monotonic() - started,
        )
        return req.read(resp.status_code, resp.headers, parse_body(resp.content), (conn.api_key,))

    @asynccontextmanager
    async def _aclient(self) -> AsyncIterator[aiohttp.ClientSession]:
        """An aiohttp session for one public async call (sessions are bound to their event loop); aiohttp
        is imported in a worker thread so its first import never blocks a triggerer's event loop."""
        aiohttp = await asyncio.to_thread(importlib.import_module, "aiohttp")
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, trust_env=True) as session:
            yield session

    async def _arun(self, req: Request[T]) -> T:
        conn = await self._asettings()
        async with self._aclient() as session:
            return await AsyncRetrying(**self._retrying_kwargs(req))(self._asend_once, session, conn, req)

    async def _asend_once(self, session: aiohttp.ClientSession, conn: _ConnSettings, req: Request[T]) -> T:
        import aiohttp

        assert self._bucket is not None
        await self._bucket.aacquire()
        started = time.monotonic()
        try:
            async with session.request(
                req.method,
                conn.base_url + req.path,
                params=req.params,
                json=req.json,
                headers=self._headers(conn),
                timeout=aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=conn.timeout),
                allow_redirects=False,
            ) as resp:
                status, headers, raw = resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(conn.base_url, exc) from None
        finally:
            self._bucket.release(None)
        log.debug(
            "Mail.so %s %s → HTTP %s in %.3f s",
            req.method,
            req.endpoint.path,
            status,
            time.monotonic() - started,
        )
        return req.read(status, headers, parse_body(raw), (conn.api_key,))

    # ------------------------------------------------------------------ connection test

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test connection", free of charge: ask for a batch no account has.

        Mail.so checks the key before it looks for the batch, so "not found" proves URL and key without
        spending a validation.
        """
        try:
            self.get_batch(_PROBE_BATCH_ID)
        except MailsoNotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the UI, not raised
            return False, str(exc)
        return True, "Connected: Mail.so accepted the API key"

    # ------------------------------------------------------------------ single validation

    def validate(self, email: str) -> MailsoValidation:
        """Validate one address now (one credit)."""
        log.debug("Validating %s with Mail.so", mask_email(email))
        return self._call(protocol.validate_request(email))

    async def avalidate(self, email: str) -> MailsoValidation:
        """Async :meth:`validate`."""
        log.debug("Validating %s with Mail.so", mask_email(email))
        return await self._arun(protocol.validate_request(email))

    # ------------------------------------------------------------------ batches

    def _batch_request(self, emails: Sequence[str], batch_size: int) -> Request[MailsoBatch]:
        """The creation request, refused here when it cannot be right (nothing is sent, nothing paid)."""
        if isinstance(emails, str):
            raise MailsoBadRequest(
                "create_batch takes a sequence of addresses, not one string; nothing was sent"
            )
        if not emails:
            raise MailsoBadRequest("A Mail.so batch needs at least one address; nothing was sent")
        if len(emails) > batch_size:
            raise MailsoConfigError(
                f"{len(emails)} addresses exceed the connection's batch_size of {batch_size}; split them "
                "into several batches (or raise the batch_size extra, at most 1000)"
            )
        return protocol.create_batch_request(emails)

    def create_batch(self, emails: Sequence[str]) -> MailsoBatch:
        """Submit ``emails`` as one list validation (charged at creation); poll it with :meth:`get_batch`.

        Never resent once it may have arrived (see the module docstring): a
        :class:`~clearout_provider.exceptions.MailsoUnavailable` here means the batch may exist.
        """
        req = self._batch_request(emails, self.batch_size)
        batch = self._call(req)
        log.info("Created Mail.so batch %s of %d addresses", batch.id, batch.size)
        return batch

    async def acreate_batch(self, emails: Sequence[str]) -> MailsoBatch:
        """Async :meth:`create_batch`."""
        req = self._batch_request(emails, (await self._asettings()).batch_size)
        batch = await self._arun(req)
        log.info("Created Mail.so batch %s of %d addresses", batch.id, batch.size)
        return batch

    def get_batch(self, batch_id: str) -> MailsoBatch:
        """The batch as it stands (``finished`` once ``finished_at`` is set; ``emails`` is then whole)."""
        return self._call(protocol.get_batch_request(batch_id))

    async def aget_batch(self, batch_id: str) -> MailsoBatch:
        """Async :meth:`get_batch` (what a trigger polls)."""
        return await self._arun(protocol.get_batch_request(batch_id))

    def wait_for_batch(
        self, batch_id: str, *, poll_interval: float = 5.0, timeout: float = 3600.0
    ) -> MailsoBatch:
        """Poll :meth:`get_batch` every ``poll_interval`` s until the batch is finished; blocking.

        Raises :class:`~clearout_provider.exceptions.MailsoBatchTimeout` (with the ``batch_id``, which keeps
        running at Mail.so) when it is not finished within ``timeout`` s.
        """
        if not (poll_interval > 0 and timeout > 0):
            raise ValueError("poll_interval and timeout must be positive numbers of seconds")
        deadline = time.monotonic() + timeout
        while not (batch := self.get_batch(batch_id)).finished:
            if time.monotonic() + poll_interval > deadline:
                raise MailsoBatchTimeout(
                    f"Mail.so batch {batch_id} did not finish within {timeout:.0f} s", batch_id=batch_id
                )
            time.sleep(poll_interval)
        return batch


def _transport_error(where: str, exc: BaseException) -> MailsoError:
    """Describe a network failure, and whether the request may have reached Mail.so.

    A body that arrived but cannot be decoded is an unreadable answer (not resent: it may be charged).
    """
    import aiohttp
    import requests
    from aiohttp.http_exceptions import ContentEncodingError
    from urllib3.exceptions import NewConnectionError

    undecodable = isinstance(exc, requests.exceptions.ContentDecodingError)
    if undecodable or isinstance(exc.__cause__, ContentEncodingError):
        return MailsoProtocolError(
            f"The answer from {where} could not be decoded (a broken Content-Encoding)"
        )
    kind = type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout | aiohttp.ConnectionTimeoutError):
        return MailsoUnavailable(f"Could not connect to {where} ({kind})", maybe_processed=False)
    if isinstance(exc, requests.Timeout | aiohttp.SocketTimeoutError | TimeoutError):
        return MailsoUnavailable(f"No answer from {where} in time ({kind})")
    reason = getattr(exc.args[0], "reason", None) if exc.args else None  # requests wraps urllib3's error
    never_sent = isinstance(exc, aiohttp.ClientConnectorError) or isinstance(reason, NewConnectionError)
    return MailsoUnavailable(f"Could not reach {where} ({kind})", maybe_processed=not never_sent)
