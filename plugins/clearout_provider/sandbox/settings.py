"""Every knob of the sandbox in one dataclass, shared by the CLI, the app and :class:`SandboxProcess`.

Each field maps one-to-one to a ``--kebab-case`` command-line option (see :mod:`.cli`), so a test can
describe the server it wants as a ``SandboxSettings`` and get the same server a user gets from the CLI.
The fault switches among them (:data:`clearout_provider.sandbox.faults.SWITCHES`) are only start-up
values: ``POST /_sandbox/faults`` changes them while the server runs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: Shape of a real Clearout token (32 hex, colon, 64 hex); the sandbox default is recognisably fake.
DEFAULT_CLEAROUT_TOKEN = "5a4db0c5a4db0c5a4db0c5a4db0c5a4d:" + "5a4db0c" * 9 + "5"
#: A Mail.so API key is a UUID; the sandbox default is recognisably fake.
DEFAULT_MAILSO_API_KEY = "5a4db0c5-a4db-4c5a-8db0-c5a4db0c5a4d"


@dataclass(frozen=True)
class SandboxSettings:
    """Configuration of one sandbox server. Times are compressible so tests need not wait minutes."""

    # --- Clearout ---------------------------------------------------------------------------------
    clearout_token: str = DEFAULT_CLEAROUT_TOKEN
    """The API token the Clearout endpoints accept (any of the three Authorization header forms)."""
    credits: int = 100_000
    """Starting credit balance of the Clearout account (402 / 1002 when a request needs more)."""
    low_credit_threshold: int = 0
    """What getcredits answers as ``low_credit_balance_min_threshold`` (the account's low-balance alert
    level, set in the Clearout app); 0 = none."""
    rpm: int = 300
    """Instant-verify requests allowed per rate window (Clearout's plans: 10..400 per minute)."""
    finder_rpm: int = 190
    """Instant-finder requests allowed per rate window."""
    rate_window: float = 60.0
    """Length of the rate-limit window in seconds; shrink it to compress time in tests."""
    daily_verify_limit: int = 0
    """Addresses verifiable per day; 0 = unlimited (1017 when exceeded)."""
    bulk_rate: float = 2_000.0
    """Addresses a bulk verify/finder list processes per second."""
    max_bulk_lists: int = 3
    """Bulk lists that may run at once per kind (1001 for verify, 1083 for finder beyond it)."""
    finder_search_ms: int = 2_000
    """How long an instant finder search takes; a shorter request timeout answers 524 + queue_id."""
    instant_verify_ms: int = 0
    """How long an instant verification takes; a shorter request timeout answers 524."""
    result_url_ttl: float = 300.0
    """Seconds a presigned result URL stays valid (runtime switch: 0 makes new URLs expire at once)."""
    fault_rate_503: float = 0.0
    """Fraction of API calls answered 503, no body (deterministic given ``fault_seed``; runtime switch)."""
    fault_rate_524: float = 0.0
    """Fraction of instant calls answered 524 (timeout; runtime switch)."""
    instant_malformed: float = 0.0
    """Fraction of instant verify calls answered HTTP 200 with a malformed success body, alternately
    ``{"status":"success"}`` and ``{"status":"success","data":{}}``; nothing is charged (runtime switch)."""
    upload_without_list_id: bool = False
    """Bulk uploads (verify and finder) answer 200 ``{"status":"success","data":{}}`` without creating a
    list or charging anything (runtime switch)."""
    progress_status_override: str = ""
    """When set, every progress_status answer reports this progress_status (e.g. "weird_status") instead of
    the real one; "" = off (runtime switch)."""
    stuck_lists: bool = False
    """Bulk lists stop advancing while true (progress frozen, nothing more charged); they go on from where
    they stood when it is switched off (runtime switch)."""
    download_reset_after_bytes: int = 0
    """A reset download sends this many bytes of the result CSV and then drops the connection mid-body
    (runtime switch; see ``download_resets``)."""
    download_resets: int = 0
    """How many of the next presigned result downloads are reset after ``download_reset_after_bytes``
    bytes; each reset counts down, 0 = downloads behave (runtime switch)."""
    fault_seed: int = 0
    """Seed of the fault injection, so a failing run can be replayed."""
    time_scale: float = 1.0
    """Multiplies every simulated duration (instant verify time, finder search, client timeouts), not the
    rate window, which has its own knob."""
    latency_ms: int = 0
    """Every API call (not /healthz) answers no sooner than this after it arrived: a network round trip."""

    # --- CleverTap --------------------------------------------------------------------------------
    clevertap_account_id: str = "TEST-SBX-000"
    """The CleverTap Account ID the CleverTap endpoints accept (X-CleverTap-Account-Id)."""
    clevertap_passcode: str = "sandbox-passcode"
    """The CleverTap Passcode the CleverTap endpoints accept (X-CleverTap-Passcode)."""
    seed_contacts: int = 1000
    """Synthetic CleverTap profiles (deterministic; generated lazily, so 1,000,000 cost no memory)."""
    clevertap_max_concurrency: int = 15
    """CleverTap requests allowed in flight at once; one more answers 429 "Too many concurrent requests"."""
    clevertap_export_max_concurrency: int = 3
    """Export requests (``/profiles.json``: cursor starts and pages) allowed in flight at once, within
    ``clevertap_max_concurrency``; one more answers 429 "Too many concurrent requests". The fact sheet's
    "about 3 concurrent requests" for the Get/export APIs."""
    clevertap_export_page_ms: int = 0
    """Every export page request (``GET /profiles.json?cursor=...``) answers no sooner than this after it
    arrived: CleverTap builds a page server-side, which takes far longer than a round trip (the benchmarks
    of parallel export run at 300 ms)."""
    clevertap_cursor_not_ready: int = 0
    """Times each new export cursor answers "not ready" (code 2) before it serves its page."""
    clevertap_throttle_every: int = 0
    """Every N-th export page request answers "throttled" (code 1); 0 = never."""
    clevertap_fault_rate_503: float = 0.0
    """Fraction of CleverTap calls answered 503 (deterministic given ``fault_seed``; runtime switch)."""
    clevertap_fault_rate_429: float = 0.0
    """Fraction of CleverTap calls answered 429 "Too many concurrent requests" (deterministic given
    ``fault_seed``; runtime switch)."""
    clevertap_down: bool = False
    """Every CleverTap call answers 503 "Service Unavailable" while true (runtime switch)."""
    clevertap_down_paths: tuple[str, ...] = ()
    """CleverTap paths answering 503 while listed, as prefixes under /clevertap (e.g. /1/upload,/1/subscribe;
    comma-separated on the command line; runtime switch)."""
    clevertap_reject_rate: float = 0.0
    """Fraction of otherwise valid /1/upload records answered unprocessed with code 515, chosen by a hash of
    the record's identifier and ``fault_seed`` so a retry of the same record is rejected again (runtime
    switch)."""
    # --- Mail.so ----------------------------------------------------------------------------------
    mailso_api_key: str = DEFAULT_MAILSO_API_KEY
    """The API key the Mail.so endpoints accept (x-mails-api-key header); anything else answers 401."""
    mailso_credits: int = 100_000
    """Starting credit balance of the Mail.so account: one per validated address (batch addresses are
    charged when the batch is created); past it the account answers 429 "Quota exceeded"."""
    mailso_rpm: int = 600
    """Mail.so requests allowed per rate window (``rate_window`` seconds); one more answers 429 with
    Retry-After."""
    mailso_batch_rate: float = 200.0
    """Addresses a Mail.so batch validates per second; ``finished_at`` is set once all of them are done."""
    mailso_paid_plan: bool = True
    """Whether the Mail.so account may create batches; false answers "Paid subscription required to use
    list validations"."""
    mailso_fault_rate_503: float = 0.0
    """Fraction of Mail.so calls answered 503 before doing anything (deterministic given ``fault_seed``;
    runtime switch)."""
    mailso_lost_batch_answers: int = 0
    """How many of the next POST /batch calls create (and charge) their batch but answer 503, as if the
    answer was lost on the way; each counts down, 0 = answers arrive (runtime switch)."""
    state_dir: str | None = None
    """Folder where the sandbox keeps its state across restarts: CleverTap profile changes and the whole
    Clearout account (credits, limits, counters, finder queue, bulk lists, their progress) and the Mail.so
    account (credits, counters, batches); None = memory."""

    @classmethod
    def option_names(cls) -> list[str]:
        """The ``--kebab-case`` option of every field, in declaration order."""
        return ["--" + f.name.replace("_", "-") for f in fields(cls)]
