"""The vendor-neutral verdict: what every verifier's answer becomes, and the result columns that carry it.

Every verify path (Clearout bulk or instant, Mail.so single or batch, the local syntax pre-check, the
verdict ledger) writes the same result columns, so the CleverTap mapping, the unsubscribe policy, the
ledger and the report never ask who answered. Each vendor maps its own answer into this model in ONE
table of its own (:mod:`clearout_provider.clearout.statuses`, :mod:`clearout_provider.mailso.statuses`)
and keeps its own detail (Clearout's status and sub-status code, Mail.so's ``isv_*`` checks) in
columns named after it, beside the neutral ones.

Pure data, no pyarrow: DAG files and the DAG processor import this cheaply.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """Can mail be sent to this address? The one question every verifier answers."""

    DELIVERABLE = "deliverable"
    RISKY = "risky"  # catch-all, low deliverability: the mailbox may exist; sending is a gamble
    UNDELIVERABLE = "undeliverable"
    UNKNOWN = "unknown"  # the verifier could not tell (greylisted, timeout): ask again later


class Bounce(StrEnum):
    """Bounce class of an undeliverable address ("" when not a bounce)."""

    NONE = ""
    HARD = "hard"
    SOFT = "soft"


class DecidedBy(StrEnum):
    """Who decided a row's verdict (the ``decided_by`` result column)."""

    CLEAROUT_BULK = "clearout_bulk"
    CLEAROUT_INSTANT = "clearout_instant"
    #: Sent to the instant API, which gave no verdict (timed out, refused the input): not charged.
    CLEAROUT_INSTANT_FAILED = "clearout_instant_failed"
    MAILSO_BATCH = "mailso_batch"
    MAILSO_INSTANT = "mailso_instant"
    #: Sent to Mail.so, which gave no verdict (refused the input, unreadable answer).
    MAILSO_INSTANT_FAILED = "mailso_instant_failed"
    LOCAL_SYNTAX = "local_syntax"
    LOCAL_DUPLICATE = "local_duplicate"
    MISSING_FROM_RESULT = "missing_from_result"
    #: Taken from the verdict ledger: paid for earlier (another profile, an earlier run or try), still fresh.
    LEDGER = "ledger"
    #: Would have been sent, but the run is a dry run: no verdict, nothing spent.
    DRY_RUN = "dry_run_not_sent"


#: Deciders whose rows carry no verdict: never written over an earlier good one, never recorded as paid.
NO_VERDICT: frozenset[str] = frozenset(
    {
        DecidedBy.MISSING_FROM_RESULT,
        DecidedBy.CLEAROUT_INSTANT_FAILED,
        DecidedBy.MAILSO_INSTANT_FAILED,
        DecidedBy.DRY_RUN,
    }
)


class Kind(StrEnum):
    """The type of a result column (``clearout_provider.results`` turns it into an Arrow type)."""

    TEXT = "text"
    FLAG = "flag"  # boolean; null = the verifier did not say
    INT = "int"
    TIME = "time"  # UTC timestamp


#: The neutral result columns, in file order after the input columns. ``verified_email`` is the address
#: the verdict is for; ``verdict_reason`` the verifier's reason in its own words (Clearout's sub-status
#: description, Mail.so's ``reason``); ``safe_to_send`` True only for deliverable, null when unknown;
#: ``verdict_score`` 0-100 when the verifier gives one; ``verified_at`` when the verifier decided. The
#: names are prefixed (``is_*``, ``verdict_*``) so they never clash with a user's own columns ("role",
#: "score"): an input column under a result column's name is refused.
NEUTRAL_COLUMNS: dict[str, Kind] = {
    "verified_email": Kind.TEXT,
    "verifier": Kind.TEXT,
    "verdict": Kind.TEXT,
    "verdict_reason": Kind.TEXT,
    "safe_to_send": Kind.FLAG,
    "bounce": Kind.TEXT,
    "is_disposable": Kind.FLAG,
    "is_free": Kind.FLAG,
    "is_role": Kind.FLAG,
    "is_catch_all": Kind.FLAG,
    "is_gibberish": Kind.FLAG,
    "is_spam_trap": Kind.FLAG,
    "verdict_score": Kind.INT,
    "suggested_email": Kind.TEXT,
    "verified_at": Kind.TIME,
}

#: Each verifier's own detail, kept beside the neutral columns (null on other verifiers' rows).
DETAIL_COLUMNS: dict[str, dict[str, Kind]] = {
    "clearout": {
        "clearout_status": Kind.TEXT,
        "clearout_sub_status_code": Kind.INT,
    },
    "mailso": {
        "mailso_isv_format": Kind.FLAG,
        "mailso_isv_domain": Kind.FLAG,
        "mailso_isv_mx": Kind.FLAG,
        "mailso_isv_noblock": Kind.FLAG,
        "mailso_isv_nocatchall": Kind.FLAG,
        "mailso_isv_nogeneric": Kind.FLAG,
        "mailso_provider": Kind.TEXT,
        "mailso_mx_record": Kind.TEXT,
    },
}

#: Every result column and its kind, in file order: neutral, each verifier's detail, then decided_by.
RESULT_KINDS: dict[str, Kind] = {
    **NEUTRAL_COLUMNS,
    **{name: kind for detail in DETAIL_COLUMNS.values() for name, kind in detail.items()},
    "decided_by": Kind.TEXT,
}
RESULT_COLUMNS: tuple[str, ...] = tuple(RESULT_KINDS)

#: Result columns of files written before the neutral model (0.1), under their names today. Readers of
#: old result files, ledger segments and DAG params accept the old names.
LEGACY_COLUMNS: dict[str, str] = {
    "clearout_sub_status": "verdict_reason",
    "clearout_safe_to_send": "safe_to_send",
    "clearout_bounce_type": "bounce",
    "clearout_disposable": "is_disposable",
    "clearout_free": "is_free",
    "clearout_role": "is_role",
    "clearout_gibberish": "is_gibberish",
    "clearout_suggested_email": "suggested_email",
    "clearout_verified_at": "verified_at",
}

#: Whether to send, by verdict (risky is advice NOT to send; unknown is no advice).
SAFE_TO_SEND: dict[Verdict, bool | None] = {
    Verdict.DELIVERABLE: True,
    Verdict.RISKY: False,
    Verdict.UNDELIVERABLE: False,
    Verdict.UNKNOWN: None,
}

#: Verdicts that may change soon (greylisting clears, catch-all domains change): reused from the ledger
#: for ``Freshness.uncertain_ttl_days`` only.
UNCERTAIN_VERDICTS: frozenset[str] = frozenset({Verdict.RISKY, Verdict.UNKNOWN})


class JobState(StrEnum):
    """Where a bulk job (a Clearout list, a set of Mail.so batches) stands, in neutral words.

    Each vendor maps its own progress words here in ONE table (Clearout:
    :data:`clearout_provider.clearout.statuses.PROGRESS_STATES`); the trigger, the sensor and the bulk
    operator decide on these states only.
    """

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    #: A progress word the vendor's table does not know: it may be working, so polling goes on, but only
    #: a bounded number of times (an unknown word must not hold a task until its deadline).
    UNRECOGNISED = "unrecognised"


#: States a job never leaves: its result (or its failure) is final.
FINISHED_STATES: frozenset[JobState] = frozenset({JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED})


class JobProgress:
    """How far a bulk job has got: the neutral view every vendor's progress answer offers.

    ``job_id`` and ``state`` come from the vendor's model (Clearout's ``BulkProgress``, the Mail.so
    verifier's ``BatchesProgress``); :attr:`finished` is the ONE rule of "this job is done" the hook
    models, the trigger, the sensor and the operators share.
    """

    #: 0..100 (a progress bar, not a verdict).
    percent: float

    @property
    def job_id(self) -> str:
        raise NotImplementedError

    @property
    def state(self) -> JobState:
        raise NotImplementedError

    @property
    def vendor_status(self) -> str:
        """The vendor's own word for the state (messages and the sensor's XCom quote it)."""
        return self.state.value

    @property
    def finished(self) -> bool:
        """True once the job will not change any more (completed, cancelled or failed)."""
        return self.state in FINISHED_STATES
