"""CleverTap operators: extract the profiles to verify, and load the verdicts back (Append + Unsubscribe).

The two ends of the nightly list-cleaning pipeline; verification in between is either Clearout operator.

**Extract** exports a segment (a CQL query) with the properties an earlier Append wrote, drops profiles
without an email (counted), and keeps only the profiles whose verification is missing, stale or about
another address (:func:`clearout_provider.contacts.freshness_reasons`), so a nightly run pays only for
the delta. ``exported == no_email + fresh + to_verify``, always.

**Load** turns every result row into a profile update with the ONE mapping of
:mod:`clearout_provider.verdicts` and sends only what differs from what the export read back: a profile
whose properties already hold the same values is not re-sent ("unchanged"). Undeliverable addresses
are unsubscribed as the :class:`~clearout_provider.verdicts.UnsubscribePolicy` says (``MSG-email: false``
on the profile, the Subscribe API per address, or both; each address is sent once). Every row gets an
outcome — updated, unsubscribed_only, unchanged or rejected with CleverTap's code and message — in a
Parquet outcome file, and ``input == updated + unsubscribed_only + unchanged + rejected`` or the task
fails. ``dry_run`` validates the updates with CleverTap's ``dryRun`` and sends no unsubscribe: the
outcome file then shows what WOULD change.
"""

from __future__ import annotations

import ast
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from airflow.sdk import BaseOperator, Context, ObjectStoragePath

from clearout_provider.contacts import (
    Freshness,
    FreshnessReason,
    StoragePath,
    freshness_reasons,
    read_csv_header,
    resolve_path,
)
from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.hooks.clevertap_export import as_text
from clearout_provider.hooks.clevertap_models import RecordRejection, UploadReport
from clearout_provider.operators.instant_verify import INSTANT_FAILED
from clearout_provider.results import RESULT_SCHEMA, DecidedBy
from clearout_provider.run_files import task_folder
from clearout_provider.verdicts import (
    CLEVERTAP_PROPERTIES,
    RESULT_COLUMNS,
    UNSUBSCRIBE_PROPERTY,
    PropertyMapping,
    UnsubscribePolicy,
)

OUTPUT_FORMATS = ("parquet", "csv")
#: Column the extract adds: why the profile is verified (a :class:`FreshnessReason`, null when fresh).
FRESHNESS_REASON = "freshness_reason"
#: ``decided_by`` values that carry no verdict: writing them would overwrite a good one with "unknown".
NO_VERDICT = frozenset({DecidedBy.MISSING_FROM_RESULT.value, INSTANT_FAILED})
_DELETE = {"$delete": 1}


class Outcome:
    """Values of the outcome file's ``outcome`` column."""

    UPDATED = "updated"
    UNSUBSCRIBED_ONLY = "unsubscribed_only"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    ALL = (UPDATED, UNSUBSCRIBED_ONLY, UNCHANGED, REJECTED)


class CleverTapLoadError(Exception):
    """A result file the load cannot read (not a result file, unknown format)."""


class CleverTapAccountingError(Exception):
    """Counts that do not add up (extract or load): a bug, never a property of the input."""


def _native(value: Any, what: str) -> Any:
    """A templated setting as a Python value: DAGs without ``render_template_as_native_obj`` render
    lists, dicts and numbers as text, so text is read back as JSON (or a Python literal)."""
    if not isinstance(value, str):
        return value
    if value.strip() in ("", "None"):
        return None
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ValueError(f"{what} must be a JSON value, got {value!r}") from None


def _templated(value: Any) -> bool:
    """Whether a setting still holds a Jinja template (checked when the task runs, not at parse time)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_templated(v) for v in value)
    return False


def resolve_mapping(value: PropertyMapping | Mapping[str, Any] | str | None) -> PropertyMapping:
    """``mapping=`` as given to an operator: a PropertyMapping, ``{"columns": [...], "renames": {...}}``
    (or its JSON), or None for every column under its default name."""
    value = _native(value, "mapping")
    if isinstance(value, PropertyMapping):
        return value
    settings = dict(value or {})
    unknown = sorted(set(settings) - {"columns", "renames"})
    if unknown:
        raise ValueError(f"Unknown mapping settings {unknown}: use 'columns' and 'renames'")
    return PropertyMapping.from_params(
        _native(settings.get("columns"), "mapping columns"),
        _native(settings.get("renames"), "mapping renames"),
    )


def resolve_unsubscribe(value: UnsubscribePolicy | Mapping[str, Any] | str | None) -> UnsubscribePolicy:
    """``unsubscribe=`` as given to an operator: a policy, a dict of its fields (or its JSON), or None."""
    value = _native(value, "unsubscribe")
    if isinstance(value, UnsubscribePolicy):
        return value
    settings = dict(value or {})
    for key in ("hard_bounce", "disposable", "spam_trap", "enabled"):
        if key in settings:
            settings[key] = resolve_flag(settings[key], f"unsubscribe.{key}")
    return UnsubscribePolicy.from_params(settings)


def resolve_freshness(value: Freshness | Mapping[str, Any] | str | None) -> Freshness:
    """``freshness=`` as given to an operator: a Freshness, a dict of its fields (or its JSON), or None."""
    value = _native(value, "freshness")
    if isinstance(value, Freshness):
        return value
    settings = dict(value or {})
    known = {"ttl_days", "uncertain_ttl_days"}
    if set(settings) - known:
        raise ValueError(f"Unknown freshness settings {sorted(set(settings) - known)}: use {sorted(known)}")
    try:
        return Freshness(**{k: float(v) for k, v in settings.items()})
    except (TypeError, ValueError):
        raise ValueError(f"freshness TTLs must be numbers of days >= 0, got {settings}") from None


def resolve_flag(value: Any, what: str) -> bool:
    """A boolean setting that may arrive as rendered text ("True", "false", "1")."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise ValueError(f"{what} must be true or false, got {value!r}")


# --------------------------------------------------------------------------------------------- extract


class CleverTapExtractProfilesOperator(BaseOperator):
    """Export a CleverTap segment to a contacts file, keeping the profiles that need verifying.

    :param query: CQL query (dict, or its JSON text), e.g. profiles whose Email exists. Templated.
    :param clevertap_conn_id: connection of type ``clevertap``.
    :param workdir: base folder for task files (see :mod:`clearout_provider.run_files`). Templated.
    :param freshness: how long a verification stays good (:class:`Freshness`, or a dict of its fields;
        None = the defaults).
    :param only_delta: keep only profiles never verified, stale, or whose email changed; False keeps
        every profile with an email (a full re-verification).
    :param output_format: ``"parquet"`` or ``"csv"`` (``clevertap-profiles.<format>`` in the task folder).
    :param mapping: the load's :class:`PropertyMapping` when it renames properties, so the export reads
        the renamed ones back.
    :param batch_size: profiles per export page (≤ 5000).

    Returns ``{"path", "exported", "no_email", "fresh", "to_verify", "by_reason"}`` with
    ``exported == no_email + fresh + to_verify``; ``by_reason`` counts the reasons of the selected
    profiles ("never_verified", "stale", "email_changed"; with ``only_delta=False`` the fresh ones selected
    anyway are the difference to ``to_verify``). The file holds the export columns (identity, objectId,
    email, name, the verification properties, ``MSG-email``) plus ``freshness_reason``.
    """

    template_fields: Sequence[str] = ("query", "workdir", "freshness", "mapping")
    template_fields_renderers: ClassVar[dict[str, str]] = {"query": "json"}
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        query: Mapping[str, Any] | str,
        clevertap_conn_id: str = CleverTapHook.default_conn_name,
        workdir: str | None = None,
        freshness: Freshness | Mapping[str, float] | None = None,
        only_delta: bool = True,
        output_format: Literal["parquet", "csv"] = "parquet",
        mapping: PropertyMapping | Mapping[str, Any] | None = None,
        batch_size: int = 5000,
        **kwargs: Any,
    ) -> None:
        # Each returned key is its own XCom too, so a DAG can write ``extract.output["path"]``.
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
        self.query = query
        self.clevertap_conn_id = clevertap_conn_id
        self.workdir = workdir
        self.freshness = freshness
        self.only_delta = only_delta
        self.output_format = output_format
        self.mapping = mapping
        self.batch_size = batch_size
        # Plain settings fail at parse time; templated ones when the task renders them.
        if not _templated(freshness):
            resolve_freshness(freshness)
        if not _templated(mapping):
            resolve_mapping(mapping)

    def _query(self) -> dict[str, Any]:
        if isinstance(self.query, str):
            try:
                query = json.loads(self.query) if self.query.strip() else {}
            except ValueError as exc:
                raise ValueError(f"query is not valid CQL JSON: {exc}") from None
        else:
            query = self.query
        if not isinstance(query, Mapping):
            raise TypeError(f"query must be a CQL JSON object, not {type(query).__name__}")
        return dict(query)

    def execute(self, context: Context) -> dict[str, Any]:
        folder = task_folder(context, self.workdir)
        freshness, mapping = resolve_freshness(self.freshness), resolve_mapping(self.mapping)
        names = mapping.property_names()
        properties = (*names.values(), UNSUBSCRIBE_PROPERTY)
        # Freshness reads the default property names; a renamed mapping is read under those names.
        defaults = {names[c]: CLEVERTAP_PROPERTIES[c] for c in names}
        hook = CleverTapHook(self.clevertap_conn_id)
        out = folder / f"clevertap-profiles.{self.output_format}"
        now = datetime.now(UTC)
        counts: Counter[str] = Counter()
        with _local_file(folder, "clevertap-export.parquet") as raw:
            export = hook.export_profiles(
                self._query(), raw, batch_size=self.batch_size, properties=properties
            )
            parquet = pq.ParquetFile(raw)
            schema = parquet.schema_arrow.append(pa.field(FRESHNESS_REASON, pa.string()))
            with _TableWriter(out, schema) as writer:
                for batch in parquet.iter_batches(batch_size=65_536):
                    table = pa.Table.from_batches([batch])
                    email = pc.utf8_trim_whitespace(table.column("email"))
                    has_email = pc.fill_null(pc.greater(pc.binary_length(email), 0), False)
                    for_freshness = table.rename_columns([defaults.get(c, c) for c in table.column_names])
                    reasons = freshness_reasons(for_freshness, freshness, now)
                    due = pc.and_(has_email, pc.is_valid(reasons))
                    keep = has_email if not self.only_delta else due
                    counts["no_email"] += table.num_rows - (pc.sum(has_email).as_py() or 0)
                    counts["to_verify"] += pc.sum(keep).as_py() or 0
                    counts.update(pc.filter(reasons, due).to_pylist())
                    writer.write(table.append_column(FRESHNESS_REASON, reasons).filter(keep))
        exported = export.count
        result = {
            "path": str(out),
            "exported": exported,
            "no_email": counts["no_email"],
            "fresh": exported - counts["no_email"] - counts["to_verify"],
            "to_verify": counts["to_verify"],
            "by_reason": {r.value: counts[r.value] for r in FreshnessReason},
        }
        if result["fresh"] < 0 or (
            self.only_delta and sum(result["by_reason"].values()) != result["to_verify"]
        ):
            raise CleverTapAccountingError(f"extract counts do not add up: {result}")
        self.log.info(
            "CleverTap extract: %d profiles exported, %d without email, %d fresh, %d to verify %s",
            exported,
            result["no_email"],
            result["fresh"],
            result["to_verify"],
            result["by_reason"],
        )
        return result


@contextmanager
def _local_file(folder: ObjectStoragePath, name: str) -> Iterator[Path]:
    """A local path for ``folder / name`` (the hook streams into local files); copied up when remote."""
    target = folder / name
    local = resolve_path(target)
    if isinstance(local, Path):
        yield local
        return
    scratch = Path(tempfile.mkdtemp(prefix="clevertap-"))
    try:
        yield scratch / name
        with (scratch / name).open("rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _TableWriter:
    """Parquet or CSV by suffix, written a batch at a time (an empty file still has its header)."""

    def __init__(self, path: Path | ObjectStoragePath | StoragePath, schema: pa.Schema) -> None:
        self.path = resolve_path(path)
        self.schema = schema

    def __enter__(self) -> Self:
        self._stream = self.path.open("wb")
        if str(self.path).lower().endswith(".csv"):
            self._writer: Any = pacsv.CSVWriter(self._stream, self.schema)
        else:
            self._writer = pq.ParquetWriter(self._stream, self.schema)
        return self

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema))

    def __exit__(self, *exc: object) -> None:
        self._writer.close()
        self._stream.close()


# ------------------------------------------------------------------------------------------------ load


@dataclass
class RowPlan:
    """What the load sends for one result row."""

    identity: str | None
    object_id: str | None
    email: str | None
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Property → {"from": exported text, "to": new value as the export will read it} for each property
    that differs (``MSG-email`` included): what the outcome file shows, dry run or not."""
    update: dict[str, Any] = field(default_factory=dict)
    """The ``profileData`` to send (changed properties, ``$delete`` for cleared ones, ``MSG-email``)."""
    unsubscribe_reason: str | None = None
    address: str | None = None
    """The address to unsubscribe with the Subscribe API (None = no call)."""
    no_verdict: str | None = None
    """Why the row has no verdict to write (None = it has one)."""


def _exported_text(row: Mapping[str, Any], prop: str) -> str | None:
    value = row.get(prop)
    return None if value is None else as_text(value)


def plan_row(
    row: Mapping[str, Any],
    mapping: PropertyMapping,
    policy: UnsubscribePolicy,
    *,
    exported: frozenset[str],
    decided_at: datetime,
) -> RowPlan:
    """What to send for one result row (input columns + RESULT_COLUMNS), sending only what differs.

    ``exported`` names the property columns the export read back; a property not among them is always
    sent. Values are compared in the export's text form (:func:`as_text`), so what this run writes and
    what the next export reads compare equal. ``decided_at`` dates a verdict that carries no time of
    its own (decided locally, e.g. a syntax error). A row without any verdict must not reach here: its
    "unknown" would overwrite an earlier good verdict.
    """
    plan = RowPlan(
        identity=_text(row.get("identity")),
        object_id=_text(row.get("objectId")),
        email=_text(row.get("email")),
    )
    for prop, value in mapping.properties(row, verified_at_default=decided_at).items():
        new = None if value is None else as_text(value)
        old = _exported_text(row, prop) if prop in exported else None
        if new == old and prop in exported:
            continue
        if value is None:
            if old is None:
                continue
            plan.update[prop] = _DELETE
        else:
            plan.update[prop] = value
        plan.changes[prop] = {"from": old, "to": new}
    plan.unsubscribe_reason = policy.reason(row)
    if plan.unsubscribe_reason:
        old = _exported_text(row, UNSUBSCRIBE_PROPERTY) if UNSUBSCRIBE_PROPERTY in exported else None
        if policy.via_profile and old != as_text(False):
            plan.update[UNSUBSCRIBE_PROPERTY] = False
            plan.changes[UNSUBSCRIBE_PROPERTY] = {"from": old, "to": as_text(False)}
        if policy.via_subscribe_api:
            plan.address = (_text(row.get("verified_email")) or plan.email or "").lower()
    return plan


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def written_at(path: StoragePath) -> datetime:
    """When a result file was written: the date of its locally decided verdicts, which carry none.

    Taken from the file, not the clock, so loading the same result file twice writes the same values
    (the second load finds them unchanged). A remote file whose store reports no time: now.
    """
    try:
        return datetime.fromtimestamp(resolve_path(path).stat().st_mtime, UTC)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return datetime.now(UTC)


def read_result_file(path: StoragePath) -> pa.Table:
    """A result file (Parquet or CSV) with RESULT_COLUMNS typed as :data:`RESULT_SCHEMA`, other columns
    as written (CSV: text, so exported property values compare as the export wrote them)."""
    local = resolve_path(path)
    suffix = str(local).lower().rsplit(".", 1)[-1]
    with local.open("rb") as stream:
        if suffix in ("parquet", "pq"):
            table = pq.read_table(stream)
        elif suffix == "csv":
            names = read_csv_header(stream, str(path))
            stream.seek(0)
            types = {
                n: (RESULT_SCHEMA.field(n).type if n in RESULT_SCHEMA.names else pa.string()) for n in names
            }
            table = pacsv.read_csv(stream, convert_options=pacsv.ConvertOptions(column_types=types))
        else:
            raise CleverTapLoadError(f"{path} is not a result file: expected .parquet or .csv")
    missing = [c for c in RESULT_COLUMNS if c not in table.column_names]
    if missing:
        raise CleverTapLoadError(f"{path} is not a verification result file: columns {missing} are missing")
    return table.set_column(
        table.column_names.index("clearout_verified_at"),
        "clearout_verified_at",
        table.column("clearout_verified_at").cast(RESULT_SCHEMA.field("clearout_verified_at").type),
    )


class CleverTapLoadVerificationOperator(BaseOperator):
    """Write verification results back to CleverTap: properties (Append) and unsubscribes.

    :param result_path: result file of a verify operator (input columns incl. identity, objectId,
        email and the exported properties, then RESULT_COLUMNS), Parquet or CSV. Templated.
    :param clevertap_conn_id: connection of type ``clevertap``.
    :param workdir: base folder for task files. Templated.
    :param mapping: which result columns to write under which names (:class:`PropertyMapping`, or
        ``{"columns": [...], "renames": {...}}``); None = every column under its default name.
    :param unsubscribe: :class:`UnsubscribePolicy` or a dict of its fields; None = the defaults.
    :param dry_run: validate the updates with CleverTap's ``dryRun`` and send no unsubscribe; the
        outcome file shows what would change.
    :param max_concurrency: concurrent CleverTap requests (CleverTap allows 15 uploads per account).

    Returns ``{"outcome_path", "input", "updated", "unsubscribed_only", "unchanged", "rejected",
    "unsubscribed", "by_rejection_code", "by_unsubscribe_reason", "dry_run"}``; ``unsubscribed`` counts
    the rows whose unsubscribe was applied (would be, in a dry run); ``by_rejection_code`` is keyed by
    CleverTap's code as text, or "no_verdict" for rows the verification left without a verdict.
    """

    template_fields: Sequence[str] = ("result_path", "workdir", "mapping", "unsubscribe", "dry_run")
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        result_path: str,
        clevertap_conn_id: str = CleverTapHook.default_conn_name,
        workdir: str | None = None,
        mapping: PropertyMapping | Mapping[str, Any] | None = None,
        unsubscribe: UnsubscribePolicy | Mapping[str, Any] | None = None,
        dry_run: bool = False,
        max_concurrency: int = 15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.result_path = result_path
        self.clevertap_conn_id = clevertap_conn_id
        self.workdir = workdir
        self.mapping = mapping
        self.unsubscribe = unsubscribe
        self.dry_run = dry_run
        self.max_concurrency = max_concurrency
        # Plain settings fail at parse time; templated ones when the task renders them.
        if not _templated(mapping):
            resolve_mapping(mapping)
        if not _templated(unsubscribe):
            resolve_unsubscribe(unsubscribe)
        if not _templated(dry_run):
            resolve_flag(dry_run, "dry_run")

    def execute(self, context: Context) -> dict[str, Any]:
        folder = task_folder(context, self.workdir)
        mapping, policy = resolve_mapping(self.mapping), resolve_unsubscribe(self.unsubscribe)
        dry_run = resolve_flag(self.dry_run, "dry_run")
        table = read_result_file(self.result_path)
        plans = _plan(table, mapping, policy, decided_at=written_at(self.result_path))
        hook = CleverTapHook(self.clevertap_conn_id, max_concurrency=self.max_concurrency)
        upload = _upload(hook, plans, dry_run=dry_run)
        subscribe = _subscribe(hook, plans, dry_run=dry_run)
        rows = _settle(plans, upload, subscribe, dry_run=dry_run)
        outcome_path = folder / "clevertap-load-outcome.parquet"
        with outcome_path.open("wb") as stream:
            pq.write_table(pa.Table.from_pylist(rows, schema=OUTCOME_SCHEMA), stream)
        summary = _summarise(rows, table.num_rows, str(outcome_path), dry_run=dry_run)
        self.log.info(
            "CleverTap load%s: %d rows: %d updated, %d unsubscribed only, %d unchanged, %d rejected %s; "
            "%d unsubscribed %s",
            " (DRY RUN: nothing saved, no unsubscribe sent)" if dry_run else "",
            summary["input"],
            summary["updated"],
            summary["unsubscribed_only"],
            summary["unchanged"],
            summary["rejected"],
            summary["by_rejection_code"],
            summary["unsubscribed"],
            summary["by_unsubscribe_reason"],
        )
        return summary


# --- the load's steps ----------------------------------------------------------------------------


def _plan(
    table: pa.Table, mapping: PropertyMapping, policy: UnsubscribePolicy, *, decided_at: datetime
) -> list[RowPlan]:
    exported = frozenset(
        c for c in (*mapping.property_names().values(), UNSUBSCRIBE_PROPERTY) if c in table.column_names
    )
    plans = []
    for batch in table.to_batches(max_chunksize=65_536):
        for row in batch.to_pylist():
            if row.get("decided_by") in NO_VERDICT:
                plan = RowPlan(
                    _text(row.get("identity")), _text(row.get("objectId")), _text(row.get("email"))
                )
                detail = row.get("clearout_sub_status")
                plan.no_verdict = f"no verdict to write ({row['decided_by']})" + (
                    f": {detail}" if detail else ""
                )
            else:
                plan = plan_row(row, mapping, policy, exported=exported, decided_at=decided_at)
            plans.append(plan)
    return plans


def _upload(hook: CleverTapHook, plans: list[RowPlan], *, dry_run: bool) -> dict[int, RecordRejection | None]:
    """Send every non-empty update; row → its rejection (None = applied / validated)."""
    rows = [n for n, p in enumerate(plans) if p.update]
    if not rows:
        return {}

    def records() -> Iterator[dict[str, Any]]:
        for n in rows:
            plan = plans[n]
            yield {"identity": plan.identity, "objectId": plan.object_id, "profileData": plan.update}

    report = hook.upload_profiles(records(), dry_run=dry_run)
    return _by_row(rows, report, len(rows))


def _subscribe(
    hook: CleverTapHook, plans: list[RowPlan], *, dry_run: bool
) -> dict[int, RecordRejection | None]:
    """Unsubscribe each address once (none in a dry run); row → its rejection (None = applied)."""
    rows_of: dict[str, list[int]] = {}
    for n, plan in enumerate(plans):
        if plan.address is not None:
            rows_of.setdefault(plan.address, []).append(n)
    if not rows_of:
        return {}
    if dry_run:
        return {n: None for rows in rows_of.values() for n in rows}
    addresses = list(rows_of)
    report = hook.subscribe(addresses, "Unsubscribe")
    by_address = _by_row(list(range(len(addresses))), report, len(addresses))
    return {n: by_address[i] for i, address in enumerate(addresses) for n in rows_of[address]}


def _by_row(rows: list[int], report: UploadReport, sent: int) -> dict[int, RecordRejection | None]:
    if report.received != sent:
        raise CleverTapAccountingError(f"CleverTap hook saw {report.received} records of {sent} sent")
    outcome: dict[int, RecordRejection | None] = dict.fromkeys(rows)
    for rejection in report.rejections:
        outcome[rows[rejection.row]] = rejection
    return outcome


def _settle(
    plans: list[RowPlan],
    upload: Mapping[int, RecordRejection | None],
    subscribe: Mapping[int, RecordRejection | None],
    *,
    dry_run: bool,
) -> list[dict[str, Any]]:
    """One outcome row per plan: what was sent, what came of it, and the row's outcome."""
    sent = "validated" if dry_run else "applied"
    rows = []
    for n, plan in enumerate(plans):
        up, sub = upload.get(n), subscribe.get(n)
        rejection, where = (up, "profile_update") if up is not None else (sub, "subscribe")
        if plan.no_verdict is not None:
            stage, code, message = "no_verdict", None, plan.no_verdict
        elif rejection is not None:
            stage, code, message = where, rejection.code, f"{rejection.stage}: {rejection.error}"
        else:
            stage = code = message = None
        unsubscribes = UNSUBSCRIBE_PROPERTY in plan.update or n in subscribe
        if stage is not None:
            outcome = Outcome.REJECTED
        elif set(plan.changes) - {UNSUBSCRIBE_PROPERTY}:
            outcome = Outcome.UPDATED
        elif unsubscribes:
            outcome = Outcome.UNSUBSCRIBED_ONLY
        else:
            outcome = Outcome.UNCHANGED
        rows.append(
            {
                "row": n,
                "identity": plan.identity,
                "objectId": plan.object_id,
                "email": plan.email,
                "outcome": outcome,
                "changes": json.dumps(plan.changes, ensure_ascii=False) if plan.changes else None,
                "unsubscribe_reason": plan.unsubscribe_reason,
                "unsubscribed": outcome != Outcome.REJECTED and unsubscribes,
                "profile_update": _state(n in upload, up, sent),
                "subscribe": _state(n in subscribe, sub, "not_sent_dry_run" if dry_run else "applied"),
                "rejection_code": code,
                "rejection_stage": stage,
                "rejection_message": message,
                "dry_run": dry_run,
            }
        )
    return rows


def _summarise(
    rows: list[dict[str, Any]], rows_in: int, outcome_path: str, *, dry_run: bool
) -> dict[str, Any]:
    by_outcome = Counter(r["outcome"] for r in rows)
    rejected = [r for r in rows if r["outcome"] == Outcome.REJECTED]
    summary = {
        "outcome_path": outcome_path,
        "input": rows_in,
        **{o: by_outcome[o] for o in Outcome.ALL},
        "unsubscribed": sum(r["unsubscribed"] for r in rows),
        "by_rejection_code": dict(
            Counter(
                str(r["rejection_code"]) if r["rejection_code"] is not None else r["rejection_stage"]
                for r in rejected
            )
        ),
        "by_unsubscribe_reason": dict(Counter(r["unsubscribe_reason"] for r in rows if r["unsubscribed"])),
        "dry_run": dry_run,
    }
    if len(rows) != rows_in or rows_in != sum(by_outcome[o] for o in Outcome.ALL):
        raise CleverTapAccountingError(
            f"{rows_in} input rows but {len(rows)} outcomes: {dict(by_outcome)} "
            "(input must equal updated + unsubscribed_only + unchanged + rejected)"
        )
    return summary


def _state(attempted: bool, rejection: RecordRejection | None, done: str) -> str:
    if not attempted:
        return "not_needed"
    return "rejected" if rejection is not None else done


#: Schema of the outcome file.
OUTCOME_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("identity", pa.string()),
        ("objectId", pa.string()),
        ("email", pa.string()),
        ("outcome", pa.string()),
        ("changes", pa.string()),
        ("unsubscribe_reason", pa.string()),
        ("unsubscribed", pa.bool_()),
        ("profile_update", pa.string()),
        ("subscribe", pa.string()),
        ("rejection_code", pa.int32()),
        ("rejection_stage", pa.string()),
        ("rejection_message", pa.string()),
        ("dry_run", pa.bool_()),
    ]
)
