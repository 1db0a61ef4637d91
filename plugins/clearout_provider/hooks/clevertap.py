"""CleverTapHook: export profiles by CQL query, upload profile properties, (un)subscribe addresses.

Connection ``clevertap`` (default ``clevertap_default``): login = Account ID, password = Passcode,
extra ``region`` (eu1, in1, us1, sg1, aps3, mec1; default eu1) and an optional host override (the
sandbox, or a proxy) that wins over the region. A region typo fails at first use with the list of
valid regions, instead of the 401 CleverTap would answer later. A plain ``http://`` host override is
refused unless it is this machine (the sandbox) or the extra ``allow_insecure_http`` is true: the
passcode travels in a header of every request.

Why the hook looks the way it does:

* Export pages are streamed into a file (:mod:`.clevertap_export`), never collected in a list; the
  cursor is put into the URL exactly as CleverTap sent it (already percent-encoded) because
  re-encoding it is the classic way to break the cursor API. "Not ready" (code 2) and throttled
  (code 1) answers are waited out on the SAME cursor.
* Uploads run ≤ 1000-record batches on up to ``max_concurrency`` threads (CleverTap allows 15
  concurrent uploads per account). Every response's ``unprocessed[]`` is mapped back to input rows,
  by "Skipped record number : k" or by the echoed record, so the report accounts for every row.
* Transient failures (429, 5xx, network) are retried with exponential backoff by tenacity, decided
  in one place (:func:`interpret_response` + :attr:`CleverTapError.transient`). Once the retries are
  used up the error is RAISED, by uploads too: an outage fails the task (and Airflow retries it)
  instead of ending it green with every row "rejected". A 2xx answer the hook cannot read raises
  :class:`~clearout_provider.clevertap_errors.CleverTapProtocolError`. Only CleverTap's own per-record
  verdicts (``unprocessed``) and the hook's pre-send checks are rows of the upload report.
* Redirects are never followed: requests would carry the passcode header to wherever one points.
* The passcode lives only in request headers: never in a message, a log line or ``repr``; emails in
  log lines are masked.

requests and the export file writer (pyarrow) are imported by the methods that use them, not at the top:
a DAG file that names this hook then parses without loading them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseHook
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from clearout_provider.clevertap_rules import (
    MAX_EXPORT_BATCH_SIZE,
    MAX_RECORDS_PER_CALL,
    RecordCode,
    identifier_of,
    prepare_profile_record,
)
from clearout_provider.exceptions import (
    CleverTapAuthError,
    CleverTapBadRequest,
    CleverTapConfigError,
    CleverTapCursorNotReady,
    CleverTapError,
    CleverTapProtocolError,
    CleverTapRateLimited,
    CleverTapServerError,
)
from clearout_provider.hooks.clevertap_models import (
    VERIFICATION_PROPERTIES,
    ExportResult,
    RecordRejection,
    UploadReport,
)
from clearout_provider.hooks.http_safety import (
    ALLOW_INSECURE_HTTP,
    as_flag,
    header_problem,
    origin,
    url_problem,
    vendor_text,
)
from clearout_provider.masking import mask_email

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

#: API host of each CleverTap region (the dashboard URL's sub-domain names the region).
REGION_HOSTS: dict[str, str] = {
    "eu1": "api.clevertap.com",
    "in1": "in1.api.clevertap.com",
    "us1": "us1.api.clevertap.com",
    "sg1": "sg1.api.clevertap.com",
    "aps3": "aps3.api.clevertap.com",
    "mec1": "mec1.api.clevertap.com",
}
DEFAULT_REGION = "eu1"
SUBSCRIBE_STATUSES = ("Unsubscribe", "Resubscribe")
_SKIPPED_RE = re.compile(r"Skipped record number\s*:\s*(\d+)")
_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: What an export cursor may contain: it goes back into the URL verbatim (already percent-encoded).
_CURSOR_RE = re.compile(r"[A-Za-z0-9%._~+/=-]{1,4096}")


def resolve_region(region: str | None) -> str:
    """A connection's ``region`` extra as CleverTap names it (None = the default, eu1); raises
    CleverTapConfigError for a region CleverTap does not have."""
    name = str(region or DEFAULT_REGION).strip().lower()
    if name not in REGION_HOSTS:
        raise CleverTapConfigError(
            f"Unknown CleverTap region {region!r}: choose one of {', '.join(REGION_HOSTS)} "
            "(the sub-domain of your dashboard URL, e.g. in1 for in1.dashboard.clevertap.com)"
        )
    return name


def resolve_base_url(region: str | None, host: str | None = None, port: int | None = None) -> str:
    """The API root (without ``/1``) for a region, or for a host override (scheme optional).

    >>> resolve_base_url("in1")
    'https://in1.api.clevertap.com'
    >>> resolve_base_url("eu1", "http://127.0.0.1:8765/clevertap")
    'http://127.0.0.1:8765/clevertap'
    """
    name = resolve_region(region)
    if not host or not host.strip():
        return f"https://{REGION_HOSTS[name]}"
    url = host.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    try:
        parts = urlsplit(url)
        if port and parts.port is None:
            url = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    except ValueError:
        pass  # not a URL at all: the connection check (url_problem) says so
    return url


def interpret_response(http_status: int, body: Any, *, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """CleverTap's answer → its JSON body, or the typed error it means. The ONE place that decides.

    Export "not ready" (code 2) and "throttled" (code 1) answers are returned, whatever their HTTP
    status, for the export loop to wait out on the same cursor. An HTTP 200 ``"status": "fail"`` is
    returned when it carries per-record results (``unprocessed``) and raised otherwise: a request-level
    failure must not pass for "zero records processed". A 2xx body that is not a JSON object is a
    :class:`CleverTapProtocolError`; a redirect is a configuration error (the host is not the API's).
    Vendor text is bounded and has ``secrets`` (the passcode) masked, in case a server echoes a request.
    """
    data = body if isinstance(body, dict) else {}
    if data.get("status") == "fail" and data.get("code") in (1, 2):
        return data
    message = vendor_text(data.get("error") or f"HTTP {http_status} from CleverTap", secrets)
    code = data.get("code") if type(data.get("code")) is int else None
    if 300 <= http_status < 400:
        raise CleverTapConfigError(
            f"CleverTap answered HTTP {http_status}, a redirect; API calls are not redirected (the passcode "
            "would follow it): set the connection's host override to the API's real address",
            http_status=http_status,
        )
    if http_status in (401, 403):
        raise CleverTapAuthError(message, code=code, http_status=http_status)
    if http_status == 429:
        raise CleverTapRateLimited(message, code=code, http_status=http_status)
    if http_status >= 500:
        raise CleverTapServerError(message, code=code, http_status=http_status)
    if http_status >= 400:
        raise CleverTapBadRequest(message, code=code, http_status=http_status)
    if not isinstance(body, dict):
        raise CleverTapProtocolError(
            "CleverTap answered with a body that is not a JSON object", http_status=http_status
        )
    if data.get("status") == "fail" and "unprocessed" not in data:
        raise CleverTapBadRequest(message, code=code, http_status=http_status)
    return data


@dataclass(frozen=True)
class _Credentials:
    base_url: str
    account_id: str
    region: str
    """The project's region (eu1, in1, ...), also with a host override: with the account id it names the
    project in lineage (:mod:`clearout_provider.lineage`)."""
    passcode: str = field(repr=False)


class _Item(NamedTuple):
    """One input row on its way to CleverTap: its position, its wire form, and how to recognise it."""

    row: int
    payload: dict[str, Any]
    key: str
    value: str


@dataclass(frozen=True)
class _Batch:
    """One request's worth of records, ready to send: the encoded body and, in body order, each record's
    input row and identifier (to map CleverTap's per-record answers back).

    Plain lists of ints and strings, not the records' dicts: a batch waits in the queue and in flight
    for several hundred ms, and 1000 dicts per batch living that long are promoted into the garbage
    collector's oldest generation and set off a full collection every ~100 batches: a pause of ~200 ms
    (growing with the caller's heap) that holds the GIL and stalls every sender thread at once.
    """

    body: bytes
    rows: list[int]
    keys: list[str]
    values: list[str]


@dataclass
class _BatchOutcome:
    processed: int = 0
    requests: int = 0
    rejections: list[RecordRejection] = field(default_factory=list)


def _masked(value: str | None) -> str:
    """An identifier safe for a log line (identities are sometimes email addresses)."""
    return mask_email(value) if value and "@" in value else str(value)


class CleverTapHook(BaseHook):
    """Talks to CleverTap's server API (``/1/...``) for one project (Account ID + Passcode + region).

    :param clevertap_conn_id: Airflow connection of type ``clevertap``.
    :param timeout: seconds for one HTTP call.
    :param max_retries: retries of a transient failure (429, 5xx, network), with exponential backoff.
    :param retry_wait: first backoff in seconds (doubles each retry, capped by ``retry_max_wait``).
    :param not_ready_wait: seconds to wait before asking again for a cursor that is not ready (code 2).
    :param throttle_wait: seconds to wait after a throttled export page (code 1).
    :param cursor_wait_timeout: give up on one export page after waiting this long in total.
    :param max_concurrency: concurrent upload/subscribe requests (CleverTap's limit is 15 per account).
    :param export_concurrency: export cursors paged at once by :meth:`export_partitions` (the fact
        sheet's "about 3 concurrent requests" for the Get/export APIs; CleverTap answers 429 past its
        limit, which the retry policy waits out).
    """

    conn_name_attr = "clevertap_conn_id"
    default_conn_name = "clevertap_default"
    conn_type = "clevertap"
    hook_name = "CleverTap"

    def __init__(
        self,
        clevertap_conn_id: str = default_conn_name,
        *,
        timeout: float = 60.0,
        max_retries: int = 6,
        retry_wait: float = 1.0,
        retry_max_wait: float = 60.0,
        not_ready_wait: float = 5.0,
        throttle_wait: float = 30.0,
        cursor_wait_timeout: float = 1800.0,
        max_concurrency: int = 15,
        export_concurrency: int = 3,
    ) -> None:
        super().__init__()
        self.clevertap_conn_id = clevertap_conn_id
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self.retry_max_wait = retry_max_wait
        self.not_ready_wait = not_ready_wait
        self.throttle_wait = throttle_wait
        self.cursor_wait_timeout = cursor_wait_timeout
        self.max_concurrency = max_concurrency
        self.export_concurrency = export_concurrency
        self._credentials: _Credentials | None = None
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(clevertap_conn_id={self.clevertap_conn_id!r})"

    # --- connection -----------------------------------------------------------------------------
    @property
    def credentials(self) -> _Credentials:
        """Account ID, passcode and API root from the connection (read once; every setting checked here)."""
        if self._credentials is None:
            self._credentials = self._credentials_from(self.get_connection(self.clevertap_conn_id))
        return self._credentials

    def _credentials_from(self, conn: Any) -> _Credentials:
        where = f"Connection {self.clevertap_conn_id!r}"
        account_id, passcode = (conn.login or "").strip(), (conn.password or "").strip()
        if not account_id or not passcode:
            raise CleverTapConfigError(f"{where} needs the Account ID as login and the Passcode as password")
        for name, value in (("Account ID", account_id), ("Passcode", passcode)):
            if problem := header_problem(value):
                raise CleverTapConfigError(f"{where}: the {name} {problem}")
        extra = conn.extra_dejson or {}
        if not isinstance(extra, Mapping):
            raise CleverTapConfigError(f"{where}: the extra must be a JSON object")
        region = resolve_region(_extra(extra, "region"))
        base_url = resolve_base_url(region, conn.host, conn.port)
        insecure = as_flag(_extra(extra, ALLOW_INSECURE_HTTP))
        if insecure is None:
            raise CleverTapConfigError(f"{where}: extra {ALLOW_INSECURE_HTTP!r} must be true or false")
        if problem := url_problem(base_url, allow_insecure_http=insecure):
            raise CleverTapConfigError(f"{where}: the host {origin(base_url)} {problem}")
        return _Credentials(base_url=base_url, account_id=account_id, region=region, passcode=passcode)

    @property
    def base_url(self) -> str:
        """API root without ``/1`` (e.g. ``https://in1.api.clevertap.com``)."""
        return self.credentials.base_url

    def _session(self) -> requests.Session:
        """One session per thread: requests sessions are not safe to share between threads."""
        import requests
        from requests.adapters import HTTPAdapter

        session = getattr(self._local, "session", None)
        if session is None:
            creds = self.credentials
            session = requests.Session()
            session.headers.update(
                {
                    "X-CleverTap-Account-Id": creds.account_id,
                    "X-CleverTap-Passcode": creds.passcode,
                    "Content-Type": "application/json; charset=utf-8",
                }
            )
            session.mount("http://", HTTPAdapter(pool_maxsize=2))
            session.mount("https://", HTTPAdapter(pool_maxsize=2))
            self._local.session = session
        return session

    # --- transport ------------------------------------------------------------------------------
    def _call_once(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        import requests

        url = self.base_url + path
        data = body if isinstance(body, bytes) or body is None else json.dumps(body, separators=(",", ":"))
        try:
            response = self._session().request(
                method, url, data=data, timeout=self.timeout, allow_redirects=False
            )
        except requests.exceptions.ContentDecodingError:
            raise CleverTapProtocolError(
                f"The answer from CleverTap at {self.base_url} could not be decoded "
                "(a broken Content-Encoding)"
            ) from None
        except requests.RequestException as exc:
            raise CleverTapServerError(
                f"Network error talking to CleverTap at {self.base_url} ({type(exc).__name__})"
            ) from None
        try:
            payload = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            payload = None
        return interpret_response(response.status_code, payload, secrets=(self.credentials.passcode,))

    def _call(self, method: str, path: str, body: Any = None) -> tuple[dict[str, Any], int]:
        """One API call, retried while the failure is transient; returns (body, HTTP calls made).

        ``body`` is a JSON-able object, or bytes already encoded (uploads encode ahead of sending).
        """
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, CleverTapError) and exc.transient),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential(multiplier=self.retry_wait, max=self.retry_max_wait),
            reraise=True,
            before_sleep=lambda state: log.info(
                "CleverTap %s %s failed (%s); retry %d of %d",
                method,
                path.split("?")[0],
                state.outcome.exception() if state.outcome else "?",
                state.attempt_number,
                self.max_retries,
            ),
        )
        for attempt in retrying:
            with attempt:
                return self._call_once(method, path, body), attempt.retry_state.attempt_number
        raise AssertionError("unreachable")  # pragma: no cover  (tenacity reraises)

    def test_connection(self) -> tuple[bool, str]:
        """Cheap authenticated call: look up a profile that does not exist (401 = bad credentials)."""
        try:
            self.get_profile(identity="airflow-connection-test")
        except CleverTapError as exc:
            return False, str(exc)
        return True, f"Connected to CleverTap account {self.credentials.account_id} at {self.base_url}"

    # --- profiles -------------------------------------------------------------------------------
    def get_profile(
        self, *, email: str | None = None, identity: str | None = None, object_id: str | None = None
    ) -> dict[str, Any] | None:
        """One profile (``GET /1/profile.json``) by exactly one of email, identity or objectId.

        None if absent.
        """
        given = [(k, v) for k, v in (("email", email), ("identity", identity), ("objectId", object_id)) if v]
        if len(given) != 1:
            raise ValueError("get_profile takes exactly one of email, identity or object_id")
        key, value = given[0]
        try:
            body, _ = self._call("GET", f"/1/profile.json?{key}={quote(str(value), safe='')}")
        except CleverTapBadRequest as exc:
            if 404 in (exc.http_status, exc.code):
                return None
            raise
        if body.get("status") != "success":
            return None
        record = body.get("record")
        if not isinstance(record, dict):
            raise CleverTapProtocolError("CleverTap's profile answer says success but has no 'record' object")
        return record

    def export_profiles(
        self,
        query: Mapping[str, Any] | None,
        dest_path: str | PathLike[str],
        *,
        batch_size: int = MAX_EXPORT_BATCH_SIZE,
        properties: Sequence[str] = VERIFICATION_PROPERTIES,
    ) -> ExportResult:
        """Export the profiles matching a CQL ``query`` into a Parquet or CSV file, page by page.

        Columns: identity, objectId, email (top-level, else ``profileData.Email``), name, then each of
        ``properties`` (nullable strings; ``$D_`` dates as ISO-8601 UTC). Takes ceil(N / batch_size)
        page requests plus one for the cursor (plus any waits on not-ready or throttled cursors).
        """
        if not 1 <= batch_size <= MAX_EXPORT_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_EXPORT_BATCH_SIZE}, got {batch_size}")
        from clearout_provider.hooks.clevertap_export import ProfileFileWriter, export_columns, flatten

        columns = export_columns(properties)
        count = pages = 0
        with (
            ProfileFileWriter(dest_path, columns) as writer,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="clevertap-export") as fetcher,
        ):
            body, requests_made = self._call(
                "POST", f"/1/profiles.json?batch_size={batch_size}", dict(query or {})
            )
            cursor = _cursor(body.get("cursor"), "export start")
            if cursor is None:
                raise CleverTapProtocolError("CleverTap's export start answer has no cursor")
            upcoming: Future[tuple[dict[str, Any], int]] | None = fetcher.submit(self._page, cursor)
            while upcoming is not None:
                page, calls = upcoming.result()
                requests_made += calls
                records = _records(page)
                cursor = _cursor(page.get("next_cursor"), "export page")
                # Fetch the next page while this one is written: at most two pages are ever in memory.
                upcoming = fetcher.submit(self._page, cursor) if cursor else None
                writer.write(flatten(r, properties) for r in records)
                count += len(records)
                pages += 1
                log.debug("CleverTap export: page %d, %d profiles so far", pages, count)
        log.info("CleverTap export: %d profiles in %d pages written to %s", count, pages, dest_path)
        return ExportResult(str(dest_path), count, pages, requests_made, columns)

    def export_partitions(
        self,
        queries: Sequence[Mapping[str, Any]],
        dest_path: str | PathLike[str],
        *,
        batch_size: int = MAX_EXPORT_BATCH_SIZE,
        properties: Sequence[str] = VERIFICATION_PROPERTIES,
        concurrency: int | None = None,
    ) -> ExportResult:
        """Export several CQL ``queries`` (the parts of one segment) side by side into ONE file.

        Each query is its own cursor, paged on its own thread (one request in flight each), at most
        ``concurrency`` (default :attr:`export_concurrency`) at a time; each lands in a part file beside
        ``dest_path``, and the parts are merged with every profile once (parts may overlap: a profile
        that changed while the parts were paged, or an event part). ``count`` is the profiles written,
        ``duplicates`` the repeats dropped, ``part_counts`` each part's rows. A failed part fails the
        whole export and no file is left behind.
        """
        from clearout_provider.hooks.clevertap_export import export_columns, merge_parts

        if not queries:
            raise ValueError("export_partitions needs at least one query")
        if len(queries) == 1:  # one cursor: nothing to merge
            single = self.export_profiles(queries[0], dest_path, batch_size=batch_size, properties=properties)
            return dataclasses.replace(single, part_counts=(single.count,))
        dest = Path(dest_path)
        parts = [dest.with_name(f".{dest.name}.part{i:03d}.parquet") for i in range(len(queries))]
        workers = max(1, min(concurrency or self.export_concurrency, len(queries)))
        self.credentials  # noqa: B018  -- resolve the connection (and a region typo) before starting threads
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clevertap-part") as pool:
                futures = [
                    pool.submit(self.export_profiles, q, part, batch_size=batch_size, properties=properties)
                    for q, part in zip(queries, parts, strict=True)
                ]
                try:
                    results = [f.result() for f in futures]
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
            count, duplicates = merge_parts(parts, dest, export_columns(properties))
        finally:
            for part in parts:
                part.unlink(missing_ok=True)
        log.info(
            "CleverTap export: %d parts (%d at a time) merged into %d profiles (%d repeats dropped) in %s",
            len(parts),
            workers,
            count,
            duplicates,
            dest,
        )
        return ExportResult(
            str(dest),
            count,
            sum(r.pages for r in results),
            sum(r.requests for r in results),
            export_columns(properties),
            duplicates=duplicates,
            part_counts=tuple(r.count for r in results),
        )

    def _page(self, cursor: str) -> tuple[dict[str, Any], int]:
        """One export page for ``cursor`` (sent exactly as received), waiting out codes 1 and 2."""
        deadline = time.monotonic() + self.cursor_wait_timeout
        calls = 0
        error: type[CleverTapError]
        while True:
            body, made = self._call("GET", f"/1/profiles.json?cursor={cursor}")
            calls += made
            code = body.get("code") if body.get("status") == "fail" else None
            if code is None:
                return body, calls
            if code == 2:
                pause, error = self.not_ready_wait, CleverTapCursorNotReady
            elif code == 1:
                pause, error = self.throttle_wait, CleverTapRateLimited
            else:  # interpret_response only lets codes 1 and 2 through
                raise CleverTapBadRequest(str(body.get("error")), code=code)
            if time.monotonic() + pause > deadline:
                raise error(
                    f"Export page still unavailable after {self.cursor_wait_timeout:.0f} s", code=code
                )
            log.info(
                "CleverTap export cursor %s (code %s); asking again in %.1f s",
                "not ready" if code == 2 else "throttled",
                code,
                pause,
            )
            time.sleep(pause)

    # --- upload / subscribe ---------------------------------------------------------------------
    def upload_profiles(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        dry_run: bool = False,
        batch_size: int = MAX_RECORDS_PER_CALL,
        max_concurrency: int | None = None,
    ) -> UploadReport:
        """Set profile properties: ``records`` are ``{"identity" | "objectId": ..., "profileData": {...}}``.

        Each record is checked against CleverTap's property rules first (datetimes become ``$D_``);
        a record that breaks one is reported (stage "local") and not sent. With ``dry_run`` CleverTap
        validates without saving (``?dryRun=1``). A batch whose request failed transiently is sent
        again: safe for plain values, not for ``$incr``/``$add`` operators, which may then apply twice.
        When a batch still fails after the retries (CleverTap down, 429s that outlast the backoff) or
        is answered with something unreadable, the call raises (CleverTapServerError,
        CleverTapRateLimited, CleverTapProtocolError...; a note says how far it got): the rows are
        not reported as rejected, because CleverTap never judged them.
        """

        def prepared() -> Iterator[RecordRejection | _Item]:
            for row, record in enumerate(records):
                entry, problem = prepare_profile_record(record)
                if problem is None:
                    key, value = identifier_of(entry)  # type: ignore[arg-type,misc]
                    yield _Item(row, entry, key, value)  # type: ignore[arg-type]
                else:
                    yield RecordRejection(
                        row=row,
                        code=int(problem.code),
                        error=problem.message,
                        stage="local",
                        identity=_text(record.get("identity")),
                        object_id=_text(record.get("objectId")),
                    )

        path = "/1/upload?dryRun=1" if dry_run else "/1/upload"
        return self._send(
            path, prepared(), dry_run=dry_run, batch_size=batch_size, max_concurrency=max_concurrency
        )

    def subscribe(
        self,
        emails: Iterable[str],
        status: str = "Unsubscribe",
        *,
        batch_size: int = MAX_RECORDS_PER_CALL,
        max_concurrency: int | None = None,
    ) -> UploadReport:
        """Unsubscribe (or Resubscribe) email addresses for every profile that has them (``/1/subscribe``)."""
        if status not in SUBSCRIBE_STATUSES:
            raise ValueError(f"status must be one of {SUBSCRIBE_STATUSES}, got {status!r}")

        def prepared() -> Iterator[RecordRejection | _Item]:
            for row, email in enumerate(emails):
                address = email.strip() if isinstance(email, str) else ""
                if not address:
                    yield RecordRejection(row, int(RecordCode.EMAIL_INVALID), "Email is empty.", "local")
                    continue
                yield _Item(row, {"type": "email", "value": address, "status": status}, "value", address)

        return self._send(
            "/1/subscribe", prepared(), dry_run=False, batch_size=batch_size, max_concurrency=max_concurrency
        )

    def _send(
        self,
        path: str,
        items: Iterable[RecordRejection | _Item],
        *,
        dry_run: bool,
        batch_size: int,
        max_concurrency: int | None,
    ) -> UploadReport:
        """Batch ``items``, send the batches concurrently, and merge every outcome into one report."""
        if not 1 <= batch_size <= MAX_RECORDS_PER_CALL:
            raise ValueError(f"batch_size must be between 1 and {MAX_RECORDS_PER_CALL}, got {batch_size}")
        workers = max_concurrency or self.max_concurrency
        report = UploadReport(dry_run=dry_run)
        self.credentials  # noqa: B018  -- resolve the connection (and a region typo) before starting threads

        def merge(done: Iterable[Future[_BatchOutcome]]) -> None:
            for future in done:
                outcome = future.result()
                report.processed += outcome.processed
                report.requests += outcome.requests
                report.rejections.extend(outcome.rejections)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clevertap") as pool:
            pending: set[Future[_BatchOutcome]] = set()
            try:
                # Batches are encoded here, ahead of the senders, so a request leaves as soon as a slot frees.
                for batch in self._batches(items, batch_size, report):
                    pending.add(pool.submit(self._send_batch, path, batch))
                    report.batches += 1
                    report.sent += len(batch.rows)
                    if len(pending) >= 3 * workers:  # a queue of encoded batches ready to go
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        merge(done)
                done, pending = wait(pending)
                merge(done)
            except BaseException as exc:
                for future in pending:
                    future.cancel()
                if isinstance(exc, CleverTapError):
                    exc.add_note(_progress_note(report, path))
                raise
        report.rejections.sort(key=lambda r: r.row)
        log.info(
            "CleverTap %s: %d rows, %d sent in %d batches (%d requests), "
            "%d processed, %d rejected, %d not sent%s",
            path.split("?")[0],
            report.received,
            report.sent,
            report.batches,
            report.requests,
            report.processed,
            report.rejected,
            report.invalid,
            " (dry run)" if dry_run else "",
        )
        for rejection in report.rejections[:5]:
            log.info(
                "  row %d (%s): code %d %s",
                rejection.row,
                _masked(rejection.identity or rejection.object_id or rejection.email),
                rejection.code,
                rejection.error,
            )
        return report

    @staticmethod
    def _batches(
        items: Iterable[RecordRejection | _Item], size: int, report: UploadReport
    ) -> Iterator[_Batch]:
        """Group items into encoded batches; local rejections go straight into the report.

        Each record is encoded as soon as it is taken, so its dicts are freed at once (see :class:`_Batch`).
        """
        parts: list[str] = []
        rows: list[int] = []
        keys: list[str] = []
        values: list[str] = []
        for item in items:
            report.received += 1
            if isinstance(item, RecordRejection):
                report.rejections.append(item)
                continue
            parts.append(_ENCODER.encode(item.payload))
            rows.append(item.row)
            keys.append(item.key)
            values.append(item.value)
            if len(parts) == size:
                yield _Batch(_body(parts), rows, keys, values)
                parts, rows, keys, values = [], [], [], []
        if parts:
            yield _Batch(_body(parts), rows, keys, values)

    def _send_batch(self, path: str, batch: _Batch) -> _BatchOutcome:
        """Send one encoded batch; map every ``unprocessed`` entry back to its input row.

        A request that fails as a whole raises (after the retries of :meth:`_call`). When CleverTap's
        counts do not add up (it confirms N of M records but names fewer than M - N as unprocessed), the
        rows it did not name are reported as rejected (code 0, "may not have been applied") rather than
        raised: the request succeeded, only those rows are in doubt, and failing the task would resend
        every batch of the load for them. A later run sends them again.
        """
        size = len(batch.rows)
        body, calls = self._call("POST", path, batch.body)
        processed, unprocessed = _upload_answer(body)
        outcome = _BatchOutcome(requests=calls)
        claimed: set[int] = set()
        unexplained = 0
        for entry in unprocessed:
            index = _index_of(entry, batch, claimed)
            if index is None:
                unexplained += 1
                continue
            claimed.add(index)
            error = vendor_text(entry.get("error", ""), (self.credentials.passcode,))
            outcome.rejections.append(
                _rejection(batch, index, _record_code(entry), _SKIPPED_RE.sub("", error).strip())
            )
        remaining = [n for n in range(size) if n not in claimed]
        if processed == len(remaining) and not unexplained:
            outcome.processed = processed
        else:  # CleverTap's counts do not say which rows were applied: report them all, never guess
            message = (
                f"CleverTap confirmed {processed} of {size} records in this batch without saying which; "
                "this row may not have been applied"
            )
            outcome.rejections.extend(_rejection(batch, n, 0, message) for n in remaining)
        return outcome


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    """A connection extra by its name, or by the ``extra__clevertap__`` prefix older form UIs stored."""
    return extra.get(name, extra.get(f"extra__clevertap__{name}"))


def _upload_answer(body: Mapping[str, Any]) -> tuple[int, list[Mapping[str, Any]]]:
    """``processed`` and ``unprocessed`` of an upload/subscribe answer, or CleverTapProtocolError."""
    processed, unprocessed = body.get("processed"), body.get("unprocessed", [])
    if type(processed) is not int or processed < 0:
        raise CleverTapProtocolError("CleverTap's upload answer has no count of processed records")
    if not isinstance(unprocessed, list) or not all(isinstance(e, Mapping) for e in unprocessed):
        raise CleverTapProtocolError(
            "CleverTap's upload answer has an 'unprocessed' that is not a list of records"
        )
    return processed, unprocessed


def _record_code(entry: Mapping[str, Any]) -> int:
    """CleverTap's per-record code (515, 516, ...), 0 when it gave none or something else."""
    code = entry.get("code")
    if type(code) is int:
        return code
    return int(code) if isinstance(code, str) and code.isdigit() and len(code) < 10 else 0


def _cursor(value: Any, where: str) -> str | None:
    """An export cursor to send back verbatim; None at the end; CleverTapProtocolError if unusable."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and _CURSOR_RE.fullmatch(value):
        return value
    raise CleverTapProtocolError(f"CleverTap's {where} answer has a cursor that cannot go back into a URL")


def _records(page: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The profiles of one export page (none when absent), or CleverTapProtocolError."""
    records = page.get("records") or []
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise CleverTapProtocolError("CleverTap's export page has 'records' that are not a list of profiles")
    return records


def _progress_note(report: UploadReport, path: str) -> str:
    """What a failed upload/subscribe had done before the error, for the task log."""
    return (
        f"CleverTap {path.split('?')[0]}: {report.received} rows read, {report.processed} confirmed "
        "before this error. A retry of the task sends the rows again, which is safe for plain property "
        "values and (un)subscribes, not for $incr/$add operators."
    )


def _body(parts: list[str]) -> bytes:
    """The request body ``{"d":[...]}`` around records already encoded one by one."""
    return ('{"d":[' + ",".join(parts) + "]}").encode()


def _index_of(entry: Mapping[str, Any], batch: _Batch, claimed: set[int]) -> int | None:
    """Which batch position an ``unprocessed`` entry is about: its record number, else its echo."""
    match = _SKIPPED_RE.search(str(entry.get("error", "")))
    if match and 1 <= int(match.group(1)) <= len(batch.rows) and int(match.group(1)) - 1 not in claimed:
        return int(match.group(1)) - 1
    echo = entry.get("record")
    if isinstance(echo, Mapping):
        for n, (key, value) in enumerate(zip(batch.keys, batch.values, strict=True)):
            if n not in claimed and str(echo.get(key)) == value:
                return n
    return None


def _rejection(batch: _Batch, n: int, code: int, error: str) -> RecordRejection:
    """CleverTap's rejection of the batch's ``n``-th record.

    Its identifier is the one key its payload carried.
    """
    key, value = batch.keys[n], batch.values[n]
    return RecordRejection(
        row=batch.rows[n],
        code=code,
        error=error,
        stage="api",
        identity=value if key == "identity" else None,
        object_id=value if key == "objectId" else None,
        email=value if key == "value" else None,
    )
