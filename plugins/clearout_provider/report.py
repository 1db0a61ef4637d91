"""The end-of-run report: what a list-cleaning run found, spent, saved and wrote, and whether it adds up.

A run's tasks hand each other counts through XCom (extract → verify → load); this module turns those
dicts into :class:`RunFacts`, checks that every contact is accounted for (:func:`check_accounting`) and
writes ``report.md`` and a self-contained ``report.html`` (inline CSS and SVG bar charts, no external
asset, so it opens from an object store or an email attachment) next to the run's files. The HTML page
and its stylesheet are templates (``report_templates/``) a deployment may override from
``include/report/`` (:func:`report_template`).

The bounce-type breakdown is the one number no XCom carries: it is counted from the result file(s),
reading only the ``bounce`` column in batches, so a million-row file costs a few MB.

Personal data: the report holds counts, codes and ids only. No email address is read from the result
files (only the bounce column is), and none is written.

Use, in a DAG's last task::

    facts = RunFacts.from_xcom(extract, verify, load, dag_id=..., run_id=..., mode=mode)
    files = write_report(facts, folder)  # always written, even when the counts do not add up
    log.info(files.summary)
    check_accounting(facts)  # then fail the run on a mismatch
"""

from __future__ import annotations

import html
import json
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath

from clearout_provider.clearout.statuses import STATUS_LABELS, SUB_STATUSES, Status
from clearout_provider.clevertap_rules import RecordCode
from clearout_provider.contacts import ContactCounts, resolve_path
from clearout_provider.exceptions import AccountingError
from clearout_provider.verification.model import Bounce, DecidedBy, Verdict

_MODES = ("instant", "bulk")
#: In the report's task folder: the counters the run has sent so far (see :func:`finish_run`).
METRICS_SENT_FILE = "metrics-sent.json"
#: What each CleverTap selection of the extract asked for (the report's words).
_SELECTIONS = {
    "delta": "delta: only profiles never verified or past their due date (server-side CQL)",
    "full": "full sweep: the whole segment, checked locally (also finds changed addresses)",
}
_BOUNCE_COLUMN = "bounce"
_NO_BOUNCE = "none"  # key of rows without a bounce class in RunFacts.by_bounce_type
_NO_CODE = "none"  # key of rows without a sub-status code (as in the verify operators' XCom)
_BATCH_ROWS = 65_536


class RunAccountingError(AccountingError):
    """The run's counts do not add up: some contacts were lost or counted twice between the stages."""


# ------------------------------------------------------------------------------------------ facts


@dataclass(frozen=True)
class RunFacts:
    """Every number the report shows, summed over mapped chunks.

    Extract (CleverTapExtractProfilesOperator): ``exported == no_email + fresh + to_verify``.
    Verify (Clearout{Bulk,Instant}VerifyOperator): ``rows`` result rows, broken down by status,
    sub-status code ("none" = no code), who decided, and bounce type (counted from the result files);
    ``prepared`` says where the input rows went before anything was sent. ``credits_spent`` is the sum
    of the measured balance drops (0 when nothing was verified, None when no chunk measured one;
    ``credits_unmeasured`` counts the chunks that did not).
    The verdict ledger: of the ``prepared.to_verify`` unique addresses, ``reused`` were answered by the
    ledger (paid for earlier), ``sent`` went to Clearout, ``not_sent`` were held back by a dry run;
    ``credits_needed`` is what the sent (or, in a dry run, the held-back) addresses may cost.
    Load (CleverTapLoadVerificationOperator): ``load_input == updated + unsubscribed_only + unchanged +
    not_verified + rejected``; ``unsubscribed`` / ``resubscribed`` count the profiles switched off / back
    on among them (by policy reason, e.g. "hard_bounce:406", in ``by_unsubscribe_reason``);
    ``by_rejection_code`` is keyed by CleverTap's code; ``by_no_verdict`` counts the rows left without a
    verdict (nothing written, still due) by decider.
    """

    dag_id: str
    run_id: str
    mode: str
    # extract
    exported: int
    no_email: int
    fresh: int
    to_verify: int
    by_reason: dict[str, int]
    # verify
    rows: int
    by_status: dict[str, int]
    by_sub_status_code: dict[str, int]
    by_decided_by: dict[str, int]
    by_bounce_type: dict[str, int]
    prepared: ContactCounts
    credits_spent: int | None
    credits_unmeasured: int
    list_ids: tuple[str, ...]
    verify_chunks: int
    reused: int
    sent: int
    credits_needed: int
    # load
    load_input: int
    updated: int
    unsubscribed_only: int
    unchanged: int
    not_verified: int
    rejected: int
    unsubscribed: int
    resubscribed: int
    by_rejection_code: dict[str, int]
    by_unsubscribe_reason: dict[str, int]
    by_no_verdict: dict[str, int]
    dry_run: bool
    write_back: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    selection: str = ""
    """Which CleverTap selection the extract ran: "delta", "full" (the periodic sweep), "" when unknown."""
    by_part: dict[str, int] = field(default_factory=dict)
    export_requests: int = 0

    @classmethod
    def from_xcom(
        cls,
        extract: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        verify: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        load: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        dag_id: str,
        run_id: str,
        mode: str,
        timings: Mapping[str, float] | None = None,
        write_back: bool = True,
    ) -> RunFacts:
        """Facts from the operators' return values; a sequence (a mapped task's XCom) is summed per key.

        ``timings``: optional seconds per stage, shown in the report in the order given. The verify
        result files are read here (bounce-type column only); a missing file raises FileNotFoundError.
        A dict lacking a key its operator always returns raises ValueError naming it.
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, not {mode!r}")
        ext, ver, lod = _chunks(extract), _chunks(verify), _chunks(load)
        spent = [c.get("credits_spent") for c in ver]
        measured = [int(s) for s in spent if s is not None]
        return cls(
            dag_id=dag_id,
            run_id=run_id,
            mode=mode,
            exported=_total(ext, "exported", "extract"),
            no_email=_total(ext, "no_email", "extract"),
            fresh=_total(ext, "fresh", "extract"),
            to_verify=_total(ext, "to_verify", "extract"),
            by_reason=_merged(ext, "by_reason", "extract"),
            rows=_total(ver, "rows", "verify"),
            by_status=_merged(ver, "counts", "verify"),
            by_sub_status_code=_merged(ver, "by_sub_status_code", "verify"),
            by_decided_by=_merged(ver, "by_decided_by", "verify"),
            by_bounce_type=_bounce_types(_need(c, "result_path", "verify") for c in ver),
            prepared=_prepared(ver),
            credits_spent=sum(measured) if measured or not ver else None,
            credits_unmeasured=len(spent) - len(measured),
            list_ids=tuple(str(c["list_id"]) for c in ver if c.get("list_id") is not None),
            verify_chunks=len(ver),
            reused=_total(ver, "reused", "verify"),
            sent=_total(ver, "sent", "verify"),
            credits_needed=_total(ver, "credits_needed", "verify"),
            load_input=_total(lod, "input", "load"),
            updated=_total(lod, "updated", "load"),
            unsubscribed_only=_total(lod, "unsubscribed_only", "load"),
            unchanged=_total(lod, "unchanged", "load"),
            not_verified=_total(lod, "not_verified", "load"),
            rejected=_total(lod, "rejected", "load"),
            unsubscribed=_total(lod, "unsubscribed", "load"),
            resubscribed=_total(lod, "resubscribed", "load"),
            by_rejection_code=_merged(lod, "by_rejection_code", "load"),
            by_unsubscribe_reason=_merged(lod, "by_unsubscribe_reason", "load"),
            by_no_verdict=_merged(lod, "by_no_verdict", "load"),
            dry_run=any(bool(c.get("dry_run")) for c in (*lod, *ver)),
            write_back=write_back,
            selection="+".join(sorted({str(c["selection"]) for c in ext if c.get("selection")})),
            by_part=_merged(ext, "by_part", "extract"),
            export_requests=sum(int(c.get("export_requests") or 0) for c in ext),
            timings={str(k): float(v) for k, v in (timings or {}).items()},
        )

    @property
    def credits_saved_by(self) -> dict[str, int]:
        """Credits not spent, by reason (one credit per address Clearout would otherwise have verified)."""
        return {
            "duplicates": self.prepared.duplicates,
            "syntax_invalid": self.prepared.syntax_invalid,
            "empty": self.prepared.empty,
            "fresh": self.fresh,
            "ledger": self.reused,
        }

    @property
    def not_sent(self) -> int:
        """Addresses a dry run held back (what they may cost is in ``credits_needed``)."""
        return self.prepared.to_verify - self.reused - self.sent if self.dry_run else 0

    @property
    def rejected_share(self) -> float:
        """Share of the load's rows CleverTap rejected."""
        return self.rejected / self.load_input if self.load_input else 0.0

    @property
    def credits_saved(self) -> int:
        return sum(self.credits_saved_by.values())


def _chunks(value: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One dict, or a mapped task's sequence of them (a list, or Airflow's lazy XCom sequence)."""
    if isinstance(value, Mapping):
        return [value]
    chunks = list(value)
    for chunk in chunks:
        if not isinstance(chunk, Mapping):
            raise TypeError(f"expected an operator's return dict (or a list of them), got {chunk!r:.80}")
    return chunks


def _prepared(chunks: Sequence[Mapping[str, Any]]) -> ContactCounts:
    """The verify chunks' ``prepared`` counts (ContactCounts as a dict), summed."""
    parts = [_need(c, "prepared", "verify") for c in chunks]
    return ContactCounts(**{f.name: _total(parts, f.name, "verify prepared") for f in fields(ContactCounts)})


def _need(chunk: Mapping[str, Any], key: str, stage: str) -> Any:
    if chunk.get(key) is None:
        raise ValueError(
            f"the {stage} XCom has no {key!r} (keys: {sorted(chunk)}): "
            f"pass the {stage} operator's return value"
        )
    return chunk[key]


def _total(chunks: Iterable[Mapping[str, Any]], key: str, stage: str) -> int:
    return sum(int(_need(c, key, stage)) for c in chunks)


def _merged(chunks: Iterable[Mapping[str, Any]], key: str, stage: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for chunk in chunks:
        for name, count in (chunk.get(key) or {}).items():
            total[str(name)] += int(count)
    return dict(total)


def _bounce_types(paths: Iterable[str]) -> dict[str, int]:
    """Rows per bounce class over all result files ("none" = not a bounce), reading one column in batches."""
    total: Counter[str] = Counter()
    for text in paths:
        path = resolve_path(text)
        if not path.exists():
            raise FileNotFoundError(f"result file {text} is gone: the report counts bounce types from it")
        with path.open("rb") as stream:
            for batch in _column_batches(stream, path, text):
                for item in pc.value_counts(batch).to_pylist():
                    total[item["values"] or _NO_BOUNCE] += item["counts"]
    return dict(total)


def _column_batches(stream: Any, path: Path | ObjectStoragePath, source: str) -> Iterable[pa.Array]:
    if path.suffix.lower() == ".csv":
        reader = pacsv.open_csv(
            stream,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[_BOUNCE_COLUMN], column_types={_BOUNCE_COLUMN: pa.string()}
            ),
        )
        yield from (batch.column(0) for batch in reader)
        return
    parquet = pq.ParquetFile(stream)
    if _BOUNCE_COLUMN not in parquet.schema_arrow.names:
        raise ValueError(f"{source} has no {_BOUNCE_COLUMN} column: not a Clearout result file")
    yield from (b.column(0) for b in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=[_BOUNCE_COLUMN]))


# ------------------------------------------------------------------------------------- accounting


@dataclass(frozen=True)
class _Equation:
    """``left == sum(right)``, with names, so a failure can say which count is off and by how much."""

    stage: str
    left: tuple[str, int]
    right: tuple[tuple[str, int], ...]

    @property
    def holds(self) -> bool:
        return self.left[1] == sum(v for _, v in self.right)

    @property
    def formula(self) -> str:
        return f"{self.left[0]} = {' + '.join(name for name, _ in self.right)}"

    @property
    def values(self) -> str:
        parts = " + ".join(f"{v:,}" for _, v in self.right)
        if self.holds:
            return f"{self.left[1]:,} = {parts}"
        total = sum(v for _, v in self.right)
        sum_text = f" (= {total:,})" if len(self.right) > 1 else ""
        return f"{self.left[1]:,} ≠ {parts}{sum_text}"


def _equations(facts: RunFacts) -> list[_Equation]:
    """Every count that must add up, stage by stage, and across each hand-over between stages."""
    p = facts.prepared
    return [
        _Equation(
            "extract",
            ("exported", facts.exported),
            (("no email", facts.no_email), ("fresh", facts.fresh), ("to verify", facts.to_verify)),
        ),
        _Equation("extract → verify", ("to verify", facts.to_verify), (("verify rows", facts.rows),)),
        _Equation(
            "prepare",
            ("input rows", p.total_rows),
            (
                ("empty", p.empty),
                ("syntax invalid", p.syntax_invalid),
                ("duplicates", p.duplicates),
                ("unique to verify", p.to_verify),
            ),
        ),
        _Equation(
            "ledger",
            ("unique to verify", p.to_verify),
            (
                ("from the verdict ledger", facts.reused),
                ("sent to Clearout", facts.sent),
                ("held back (dry run)", facts.not_sent),
            ),
        ),
        _Equation("prepare → verify", ("verify rows", facts.rows), (("input rows", p.total_rows),)),
        _Equation(
            "verify", ("verify rows", facts.rows), (("rows by status", sum(facts.by_status.values())),)
        ),
        _Equation(
            "verify", ("verify rows", facts.rows), (("rows by decider", sum(facts.by_decided_by.values())),)
        ),
        _Equation(
            "result files",
            ("verify rows", facts.rows),
            (("rows read from the result files", sum(facts.by_bounce_type.values())),),
        ),
        _Equation("verify → load", ("load input", facts.load_input), (("verify rows", facts.rows),)),
        _Equation(
            "load",
            ("load input", facts.load_input),
            (
                ("updated", facts.updated),
                ("unsubscribed only", facts.unsubscribed_only),
                ("unchanged", facts.unchanged),
                ("not verified", facts.not_verified),
                ("rejected", facts.rejected),
            ),
        ),
    ]


class RunRejectedError(Exception):
    """CleverTap rejected more of the run's rows than the run allows (``max_rejected_share``)."""


def check_rejections(facts: RunFacts, max_rejected_share: float) -> None:
    """Raise :class:`RunRejectedError` when CleverTap rejected more than ``max_rejected_share`` of the rows.

    A few rejections are per-record problems (a value over 512 bytes, a profile without identity) and
    are listed in the report; many mean something is wrong with the mapping or the account, and the run
    must not look green. Call it AFTER :func:`write_report`, like :func:`check_accounting`.
    """
    if facts.rejected_share > max_rejected_share:
        raise RunRejectedError(
            f"CleverTap rejected {facts.rejected:,} of {facts.load_input:,} rows "
            f"({facts.rejected_share:.1%}), more than the allowed {max_rejected_share:.1%}: "
            f"{facts.by_rejection_code}. The report lists "
            "each code; the outcome files list each row"
        )


def check_accounting(facts: RunFacts) -> None:
    """Raise :class:`RunAccountingError` unless every contact is accounted for at every stage.

    The message lists each failing equation with its values. Call it AFTER :func:`write_report`, so a
    failed run still leaves a report (whose accounting table marks the failing lines ✗) to look at.
    """
    failing = [e for e in _equations(facts) if not e.holds]
    if failing:
        lines = "\n".join(f"  ✗ {e.stage}: {e.formula}: {e.values}" for e in failing)
        raise RunAccountingError(
            f"The counts of run {facts.run_id} of {facts.dag_id} do not add up "
            f"({len(failing)} of {len(_equations(facts))} checks fail):\n{lines}"
        )


# ------------------------------------------------------------------------------ what is shown

_GREEN, _RED, _AMBER, _GREY, _BLUE, _TEAL = "#2e9d5b", "#d64545", "#e0a030", "#8a94a6", "#3b6fd4", "#2a9d9d"
_STATUS_COLOURS: dict[str, str] = {  # by status value: Clearout's words, or a neutral verdict (Mail.so)
    Status.VALID: _GREEN,
    Status.INVALID: _RED,
    Status.CATCH_ALL: _AMBER,
    Status.UNKNOWN: _GREY,
    Verdict.DELIVERABLE: _GREEN,
    Verdict.UNDELIVERABLE: _RED,
    Verdict.RISKY: _AMBER,
}
_STATUS_ORDER = list(dict.fromkeys([*Status, *Verdict]))
_BOUNCE_LABELS = {Bounce.HARD.value: "hard bounce", Bounce.SOFT.value: "soft bounce", _NO_BOUNCE: "no bounce"}
_BOUNCE_COLOURS = {Bounce.HARD.value: _RED, Bounce.SOFT.value: _AMBER, _NO_BOUNCE: _GREEN}
_DECIDERS = {
    DecidedBy.CLEAROUT_BULK.value: "Clearout bulk list",
    DecidedBy.CLEAROUT_INSTANT.value: "Clearout instant API",
    DecidedBy.LOCAL_SYNTAX.value: "local syntax check (empty or malformed; not sent)",
    DecidedBy.LOCAL_DUPLICATE.value: "duplicate in the same file (answer of its first occurrence)",
    DecidedBy.MISSING_FROM_RESULT.value: (
        "not verified: sent, but missing from Clearout's result (nothing written; due next run)"
    ),
    DecidedBy.CLEAROUT_INSTANT_FAILED.value: (
        "not verified: Clearout gave no answer (nothing written; due next run)"
    ),
    DecidedBy.MAILSO_BATCH.value: "Mail.so batch",
    DecidedBy.MAILSO_INSTANT.value: "Mail.so validate API",
    DecidedBy.MAILSO_INSTANT_FAILED.value: (
        "not verified: Mail.so gave no answer (nothing written; due next run)"
    ),
    DecidedBy.LEDGER.value: "verdict ledger (paid for earlier and still fresh; not sent again)",
    DecidedBy.DRY_RUN.value: "not verified: dry run (nothing sent, nothing written)",
}
_SAVINGS = {
    "duplicates": "duplicates (same address twice)",
    "syntax_invalid": "syntax invalid (decided locally)",
    "empty": "empty email (decided locally)",
    "fresh": "fresh (verified recently; skipped)",
    "ledger": "verdict ledger (paid for earlier; not sent again)",
}


@dataclass(frozen=True)
class _Bar:
    label: str
    value: float
    text: str
    colour: str


@dataclass(frozen=True)
class _Section:
    """One titled table, and the bars the HTML draws above it (none: table only)."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    bars: list[_Bar] = field(default_factory=list)
    note: str = ""


def _share(n: int, total: int) -> str:
    return f"{n / total:.1%}" if total else "–"


def _status_label(key: str) -> str:
    try:
        return STATUS_LABELS[Status(key)]
    except ValueError:
        return key.capitalize()


def _status_sort(item: tuple[str, int]) -> tuple[int, int]:
    order = [s.value for s in _STATUS_ORDER]
    return (order.index(item[0]) if item[0] in order else len(order), -item[1])


def _sub_status(code: str) -> tuple[str, str]:
    """(meaning, colour) of a sub-status code key."""
    if code == _NO_CODE:
        return "no sub-status (no Clearout answer)", _GREY
    known = SUB_STATUSES.get(int(code)) if code.lstrip("-").isdigit() else None
    if known is None:
        return "not in Clearout's sub-status table", _GREY
    return known.desc, _STATUS_COLOURS[known.status]


def _rejection(code: str) -> str:
    """What a rejection key means: CleverTap's per-record code, or the load operator's own reason."""
    try:
        return RecordCode(int(code)).name.replace("_", " ").lower()
    except ValueError:
        return code.replace("_", " ") if not code.isdigit() else "—"


def _seconds(value: float) -> str:
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)} min {seconds:04.1f} s" if minutes else f"{seconds:.1f} s"


def _credits_spent(facts: RunFacts) -> str:
    if facts.credits_spent is None:
        return "not measured"
    if facts.credits_unmeasured:
        return f"≥ {facts.credits_spent:,} ({facts.credits_unmeasured} chunk(s) not measured)"
    return f"{facts.credits_spent:,}"


def _headline(facts: RunFacts) -> list[tuple[str, str]]:
    """The numbers a reader looks for first: (label, value)."""
    failing = sum(not e.holds for e in _equations(facts))
    return [
        ("profiles exported", f"{facts.exported:,}"),
        ("verified this run", f"{facts.rows:,}"),
        ("credits spent", _credits_spent(facts)),
        ("credits saved", f"{facts.credits_saved:,}"),
        ("profiles updated", f"{facts.updated:,}"),
        ("unsubscribed", f"{facts.unsubscribed:,}"),
        ("not verified (no verdict; still due)", f"{facts.not_verified:,}"),
        ("rejected by CleverTap", f"{facts.rejected:,}"),
        ("accounting", "✓ adds up" if not failing else f"✗ {failing} check(s) fail"),
    ]


def _sections(facts: RunFacts) -> list[_Section]:
    rows = facts.rows
    statuses = sorted(facts.by_status.items(), key=_status_sort)
    codes = sorted(facts.by_sub_status_code.items(), key=lambda kv: (-kv[1], kv[0]))
    bounces = sorted(facts.by_bounce_type.items(), key=lambda kv: (kv[0] == _NO_BOUNCE, -kv[1]))
    deciders = sorted(facts.by_decided_by.items(), key=lambda kv: -kv[1])
    saved = facts.credits_saved_by
    sent = facts.sent
    outcomes = [
        ("updated", facts.updated, _GREEN),
        ("unsubscribed only", facts.unsubscribed_only, _AMBER),
        ("unchanged", facts.unchanged, _GREY),
        ("not verified (nothing written)", facts.not_verified, _GREY),
        ("rejected", facts.rejected, _RED),
    ]
    sections = [
        _Section(
            "Verification status",
            ("Status", "Rows", "Share"),
            [(_status_label(k), f"{n:,}", _share(n, rows)) for k, n in statuses],
            [
                _Bar(_status_label(k), n, f"{n:,} ({_share(n, rows)})", _STATUS_COLOURS.get(k, _GREY))
                for k, n in statuses
            ],
        ),
        _Section(
            "Sub-status",
            ("Code", "Meaning", "Rows", "Share"),
            [(k, _sub_status(k)[0], f"{n:,}", _share(n, rows)) for k, n in codes],
            [_Bar(f"{k} {_sub_status(k)[0]}", n, f"{n:,}", _sub_status(k)[1]) for k, n in codes],
        ),
        _Section(
            "Bounce type",
            ("Bounce", "Rows", "Share"),
            [(_BOUNCE_LABELS.get(k, k), f"{n:,}", _share(n, rows)) for k, n in bounces],
            [
                _Bar(_BOUNCE_LABELS.get(k, k), n, f"{n:,} ({_share(n, rows)})", _BOUNCE_COLOURS.get(k, _GREY))
                for k, n in bounces
            ],
        ),
        _Section(
            "Credits: spent vs. saved",
            ("", "Credits"),
            [
                ("spent (Clearout balance before − after)", _credits_spent(facts)),
                ("addresses sent to Clearout", f"{sent:,}"),
                *(
                    [
                        (
                            f"dry run: addresses that would be sent (≤ {facts.credits_needed:,} credits)",
                            f"{facts.not_sent:,}",
                        )
                    ]
                    if facts.dry_run
                    else []
                ),
                *((f"saved: {_SAVINGS[k]}", f"{n:,}") for k, n in saved.items()),
                ("saved in total", f"{facts.credits_saved:,}"),
            ],
            [
                _Bar("spent", facts.credits_spent or 0, _credits_spent(facts), _BLUE),
                *(_Bar(f"saved: {k.replace('_', ' ')}", n, f"{n:,}", _TEAL) for k, n in saved.items()),
            ],
            note="One credit per address Clearout verifies. The spend is the account balance measured "
            "before and after the verification, so other use of the account in that window counts too.",
        ),
        _Section(
            "Who decided each verdict",
            ("Decided by", "What it means", "Rows"),
            [(k, _DECIDERS.get(k, ""), f"{n:,}") for k, n in deciders],
        ),
        _Section(
            "Extract from CleverTap",
            ("", "Profiles"),
            [
                *(
                    (("selection", _SELECTIONS.get(facts.selection, facts.selection)),)
                    if facts.selection
                    else ()
                ),
                *(
                    (f"  part {label}", f"{n:,}")
                    for label, n in facts.by_part.items()
                    if len(facts.by_part) > 1
                ),
                ("exported", f"{facts.exported:,}"),
                *((("export requests", f"{facts.export_requests:,}"),) if facts.export_requests else ()),
                ("without an email (skipped)", f"{facts.no_email:,}"),
                ("fresh (verified recently; skipped)", f"{facts.fresh:,}"),
                ("to verify", f"{facts.to_verify:,}"),
                *(
                    (f"  of which {k.replace('_', ' ')}", f"{n:,}")
                    for k, n in sorted(facts.by_reason.items(), key=lambda kv: -kv[1])
                ),
            ],
            [
                _Bar("no email", facts.no_email, f"{facts.no_email:,}", _GREY),
                _Bar("fresh", facts.fresh, f"{facts.fresh:,}", _TEAL),
                _Bar("to verify", facts.to_verify, f"{facts.to_verify:,}", _BLUE),
            ],
        ),
        _Section(
            "Written back to CleverTap" + (" (dry run: nothing was written)" if facts.dry_run else ""),
            ("", "Profiles"),
            [
                *((label, f"{n:,}") for label, n, _ in outcomes),
                ("unsubscribed from email (among the above)", f"{facts.unsubscribed:,}"),
                ("resubscribed: an unsubscribe of ours lifted (among the above)", f"{facts.resubscribed:,}"),
            ],
            [_Bar(label, n, f"{n:,}", colour) for label, n, colour in outcomes],
        ),
    ]
    if facts.by_rejection_code:
        sections.append(
            _Section(
                "CleverTap rejections",
                ("Code", "Meaning", "Profiles"),
                [
                    (k, _rejection(k), f"{n:,}")
                    for k, n in sorted(facts.by_rejection_code.items(), key=lambda kv: -kv[1])
                ],
            )
        )
    if facts.by_no_verdict:
        sections.append(
            _Section(
                "Not verified (no verdict: nothing written, verified again next run)",
                ("Why", "Profiles"),
                [
                    (_DECIDERS.get(k, k), f"{n:,}")
                    for k, n in sorted(facts.by_no_verdict.items(), key=lambda kv: -kv[1])
                ],
            )
        )
    if facts.by_unsubscribe_reason:
        reasons = sorted(facts.by_unsubscribe_reason.items(), key=lambda kv: -kv[1])
        sections.append(
            _Section(
                "Unsubscribed, by reason",
                ("Reason", "Profiles"),
                [(k, f"{n:,}") for k, n in reasons],
                [_Bar(k, n, f"{n:,}", _AMBER) for k, n in reasons],
            )
        )
    if facts.timings:
        sections.append(
            _Section(
                "Timings",
                ("Stage", "Time"),
                [(k, _seconds(s)) for k, s in facts.timings.items()],
                [_Bar(k, s, _seconds(s), _BLUE) for k, s in facts.timings.items()],
            )
        )
    return sections


def _accounting_rows(facts: RunFacts) -> list[tuple[str, str, str, str]]:
    return [(e.stage, e.formula, e.values, "✓" if e.holds else "✗") for e in _equations(facts)]


def _run_line(facts: RunFacts) -> list[tuple[str, str]]:
    lists = ", ".join(facts.list_ids) if facts.list_ids else "none"
    line = [
        ("DAG", facts.dag_id),
        ("run", facts.run_id),
        ("mode", facts.mode),
        ("Clearout list(s)", lists),
    ]
    if facts.verify_chunks > 1:
        line.append(("chunks", str(facts.verify_chunks)))
    if facts.dry_run:
        line.append(("dry run", "yes: nothing spent, nothing written"))
    elif not facts.write_back:
        line.append(("write-back", "off: verified into the ledger, nothing written to CleverTap"))
    return line


# -------------------------------------------------------------------------------------- markdown


def _md(text: str) -> str:
    """A value inside a Markdown table cell: no pipe or HTML may break the table."""
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "\\<")
        .replace(">", "\\>")
        .replace("\n", " ")
    )


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines


def _markdown(facts: RunFacts) -> str:
    out = [f"# Clearout verification report: {_md(facts.dag_id)}", ""]
    out.append(" · ".join(f"**{_md(k)}** {_md(v)}" for k, v in _run_line(facts)))
    out.append("")
    if any(not e.holds for e in _equations(facts)):
        out += ["> **✗ The counts do not add up: this run fails.** See *Accounting* below.", ""]
    out += _md_table(("At a glance", ""), _headline(facts))
    for section in _sections(facts):
        out += ["", f"## {_md(section.title)}", ""]
        out += _md_table(section.header, section.rows) if section.rows else ["Nothing to show."]
        if section.note:
            out += ["", _md(section.note)]
    out += ["", "## Accounting", ""]
    out += _md_table(("Stage", "Equation", "Values", ""), _accounting_rows(facts))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ html

#: The HTML page around the report (``${title}``, ``${style}``, ``${content}``: string.Template fields)
#: and its stylesheet. The packaged files in ``report_templates/`` are the defaults; a deployment
#: overrides either by putting a file of that name in ``include/report/`` (see :func:`report_template`).
PAGE_TEMPLATE, STYLESHEET = "report.html", "report.css"


def report_template(name: str) -> str:
    """``include/report/<name>`` when the deployment has one, else the packaged default of that name.

    Read when a report is written (a task), never at import: an edited override applies to the next run,
    and the package works installed without any ``include/`` folder.
    """
    from importlib.resources import files

    from clearout_provider.include_files import include_file

    override = include_file("report", name)
    if override is not None:
        return override.read_text(encoding="utf-8")
    return files("clearout_provider").joinpath("report_templates", name).read_text(encoding="utf-8")


_LABEL_W, _BAR_W, _TEXT_W, _ROW_H = 300, 420, 190, 24
_NUMBER = re.compile(r"[\d,.]+%?")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _svg_bars(title: str, bars: Sequence[_Bar]) -> str:
    """A horizontal bar chart as inline SVG (bars scaled to the largest value)."""
    top = max((b.value for b in bars), default=0) or 1
    width, height = _LABEL_W + _BAR_W + _TEXT_W, _ROW_H * len(bars) + 8
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="100%" viewBox="0 0 {width} {height}" '
            f'preserveAspectRatio="xMinYMin meet" style="max-width:{width}px"><title>{_e(title)}</title>'
        )
    ]
    for i, bar in enumerate(bars):
        y = 4 + i * _ROW_H
        length = bar.value / top * _BAR_W
        if bar.value > 0:
            length = max(length, 2)
        label = bar.label if len(bar.label) <= 44 else bar.label[:43] + "…"
        parts.append(
            f'<text x="{_LABEL_W - 8}" y="{y + 16}" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{_LABEL_W}" y="{y + 4}" width="{length:.1f}" height="{_ROW_H - 8}" rx="3" '
            f'fill="{_e(bar.colour)}"><title>{_e(bar.label)}: {_e(bar.text)}</title></rect>'
            f'<text x="{_LABEL_W + length + 6:.1f}" y="{y + 16}">{_e(bar.text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]], marks: bool = False) -> str:
    def cell(text: str, tag: str = "td") -> str:
        if marks and text in ("✓", "✗"):
            css = "ok" if text == "✓" else "bad"
        else:
            css = "num" if tag == "td" and _NUMBER.fullmatch(text) else ""
        return f'<{tag} class="{css}">{_e(text)}</{tag}>' if css else f"<{tag}>{_e(text)}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(facts: RunFacts) -> str:
    failing = any(not e.holds for e in _equations(facts))
    out = [
        f"<h1>Clearout verification report: {_e(facts.dag_id)}</h1>",
        '<p class="run">' + " · ".join(f"<b>{_e(k)}</b> {_e(v)}" for k, v in _run_line(facts)) + "</p>",
    ]
    if failing:
        out.append(
            '<div class="alert"><b>✗ The counts do not add up: this run fails.</b> '
            "See the accounting table at the end.</div>"
        )
    out.append('<div class="cards">')
    for label, value in _headline(facts):
        css = ' class="value bad"' if value.startswith("✗") else ' class="value"'
        out.append(f'<div class="card"><div{css}>{_e(value)}</div><div class="label">{_e(label)}</div></div>')
    out.append("</div>")
    for section in _sections(facts):
        out.append(f"<section><h2>{_e(section.title)}</h2>")
        if any(b.value for b in section.bars):
            out.append(_svg_bars(section.title, section.bars))
        out.append(_html_table(section.header, section.rows) if section.rows else "<p>Nothing to show.</p>")
        if section.note:
            out.append(f'<p class="note">{_e(section.note)}</p>')
        out.append("</section>")
    out.append("<section><h2>Accounting</h2>")
    out.append(_html_table(("Stage", "Equation", "Values", ""), _accounting_rows(facts), marks=True))
    out.append("</section>")
    page = string.Template(report_template(PAGE_TEMPLATE))
    filled = page.safe_substitute(
        title=f"Clearout report: {_e(facts.dag_id)} {_e(facts.run_id)}",
        style=report_template(STYLESHEET),
        content="\n".join(out),
    )
    return filled.rstrip("\n") + "\n"


# -------------------------------------------------------------------------------------- summary


def _summary(facts: RunFacts, markdown: str, html_path: str) -> str:
    statuses = sorted(facts.by_status.items(), key=_status_sort)
    failing = [e for e in _equations(facts) if not e.holds]
    saved = facts.credits_saved_by
    lists = f", list {', '.join(facts.list_ids)}" if facts.list_ids else ""
    selection = f"{facts.selection} selection, " if facts.selection else ""
    run = (
        f"Clearout report for {facts.dag_id} / {facts.run_id} ({facts.mode}{lists}): "
        f"{selection}{facts.exported:,} exported, {facts.to_verify:,} to verify, {facts.fresh:,} fresh, "
        f"{facts.no_email:,} without email"
    )
    status = " · ".join(f"{_status_label(k)} {n:,}" for k, n in statuses) or "nothing verified"
    credits = (
        f"{_credits_spent(facts)} spent, {facts.credits_saved:,} saved (duplicates {saved['duplicates']:,}, "
        f"syntax/empty {saved['syntax_invalid'] + saved['empty']:,}, fresh {saved['fresh']:,}, "
        f"ledger {saved['ledger']:,})"
    )
    clevertap = (
        f"{facts.updated:,} updated, {facts.unsubscribed:,} unsubscribed, "
        f"{facts.resubscribed:,} resubscribed, "
        f"{facts.not_verified:,} not verified, {facts.rejected:,} rejected"
        + (" (dry run: nothing written)" if facts.dry_run else "")
    )
    accounting = (
        f"✗ {len(failing)} check(s) fail: " + "; ".join(f"{e.stage}: {e.formula}" for e in failing)
        if failing
        else f"✓ all {len(_equations(facts))} checks add up"
    )
    return "\n".join(
        [
            run,
            f"Status: {status}",
            f"Credits: {credits}",
            f"CleverTap: {clevertap}",
            f"Accounting: {accounting}",
            f"Report: {markdown} · {html_path}",
        ]
    )


# -------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went (``markdown``, ``html``: paths as text) and ``summary``: lines for the log."""

    markdown: str
    html: str
    summary: str


def _write(path: Path | ObjectStoragePath, text: str) -> None:
    with path.open("wb") as stream:
        stream.write(text.encode("utf-8"))


def write_report(facts: RunFacts, folder: Path | ObjectStoragePath) -> ReportFiles:
    """Write ``report.md`` and ``report.html`` into ``folder`` (created if missing); local or object store.

    Never raises on a count mismatch: the report is written whatever the numbers, with the failing
    equations marked ✗, so that a run failed by :func:`check_accounting` (call it next) leaves
    something to look at. Writing the same facts again replaces the files with identical ones.
    """
    folder.mkdir(parents=True, exist_ok=True)
    md_path, html_path = folder / "report.md", folder / "report.html"
    _write(md_path, _markdown(facts))
    _write(html_path, _html(facts))
    return ReportFiles(
        markdown=str(md_path), html=str(html_path), summary=_summary(facts, str(md_path), str(html_path))
    )


def finish_run(
    context: Mapping[str, Any],
    extracted: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    verified: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    loaded: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    mode: str,
) -> tuple[RunFacts, ReportFiles]:
    """The last task of every list-cleaning DAG: facts from the XComs, the report in the task folder
    (and ``summary.txt``, printed), the run's metrics (:mod:`clearout_provider.metrics`), then the
    accounting and rejection checks.

    The checks come AFTER the files are written, so a run failed by them still has its report. Reads
    the run's ``write_back`` and ``max_rejected_share`` params.
    """
    from clearout_provider import metrics
    from clearout_provider.run_files import task_folder

    ti, params = context["ti"], context["params"]
    facts = RunFacts.from_xcom(
        extracted,
        verified,
        loaded,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        mode=mode,
        write_back=bool(params["write_back"]),
    )
    folder = task_folder(context)
    files = write_report(facts, folder)
    (folder / "summary.txt").write_text(files.summary)  # the few lines `make demo` prints last
    print(files.summary)
    # Before the checks (spend is spend), and once per run however often this task runs.
    sent_file = folder / METRICS_SENT_FILE
    already = json.loads(sent_file.read_text()) if sent_file.exists() else {}
    sent = metrics.record_run(facts, verifier=metrics.verifier_of(verified), already_sent=already)
    sent_file.write_text(json.dumps(sent, sort_keys=True))
    check_accounting(facts)
    check_rejections(facts, float(params["max_rejected_share"]))
    # A sweep counts only when every due profile got its verdict written: one left without (no
    # answer, a CleverTap rejection, a dry run) may be one the delta cannot see (no due date yet).
    swept = facts.not_verified == 0 and facts.rejected == 0 and facts.write_back and not facts.dry_run
    record_selections(extracted, full_sweep_done=swept)
    return facts, files


def record_selections(
    extracted: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, full_sweep_done: bool = True
) -> None:
    """Remember, once the run has passed its checks, when each extract selected and how: the next
    night's email-change window and sweep schedule (:mod:`clearout_provider.clevertap.selection`).

    ``full_sweep_done`` False records a full night as a delta one, so the sweep stays due: the next
    night sweeps again instead of leaving what this one could not write for a week.
    """
    from datetime import datetime

    from clearout_provider.clevertap.selection import Mode, SelectionHistory

    for chunk in _chunks(extracted):
        if chunk.get("selection_key") and chunk.get("selection") in ("delta", "full"):
            history = SelectionHistory(str(chunk["selection_key"]), chunk.get("selection_workdir"))
            mode: Mode = chunk["selection"] if full_sweep_done else "delta"
            history.record(mode, datetime.fromisoformat(str(chunk["selected_at"])))
