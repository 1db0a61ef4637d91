"""CleverTap operators: extract the profiles to verify, and load the verdicts back (Append + Unsubscribe).

The two ends of the nightly list-cleaning pipeline; verification in between is either Clearout operator.

**Extract** exports a segment (a CQL query) with the properties an earlier Append wrote, drops profiles
without an email (counted), and keeps only the profiles whose verification is missing, stale or about
another address (:func:`clearout_provider.contacts.freshness_reasons`), so a nightly run pays only for
the delta. On a normal night it asks CleverTap only for the profiles that can be due (the "delta"
selection of :mod:`clearout_provider.clevertap.selection`, several cursors at once); every
``full_sweep_days`` it exports the whole segment, which also finds addresses changed without a signal.
``exported == no_email + fresh + to_verify``, always.

**Load** turns every result row into a profile update with the ONE mapping of
:mod:`clearout_provider.verdicts` and sends only what differs from what the export read back: a profile
whose properties already hold the same values is not re-sent ("unchanged"). Undeliverable addresses
are unsubscribed as the :class:`~clearout_provider.verdicts.UnsubscribePolicy` says (``MSG-email: false``
on the profile, the Subscribe API per address, or both; each address is sent once; an address that
failed the local syntax check only on its profile, see :func:`plan_row`). Every row gets an
outcome — updated, unsubscribed_only, unchanged or rejected with CleverTap's code and message — in a
Parquet outcome file, and ``input == updated + unsubscribed_only + unchanged + rejected`` or the task
fails. ``dry_run`` validates the updates with CleverTap's ``dryRun`` and sends no unsubscribe: the
outcome file then shows what WOULD change.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from airflow.sdk import BaseOperator

from clearout_provider.clevertap.mapping import (
    DUE_COLUMN,
    MANAGED_PROPERTIES,
    UNSUBSCRIBE_PROPERTY,
    UNSUBSCRIBED_AT_PROPERTY,
    UNSUBSCRIBED_REASON_PROPERTY,
    PropertyMapping,
)
from clearout_provider.clevertap.selection import (
    Mode,
    Part,
    SelectionHistory,
    by_date_ranges,
    choose_mode,
    delta_parts,
)
from clearout_provider.exceptions import AccountingError
from clearout_provider.lineage import property_type
from clearout_provider.operators.settings import (
    resolve_flag,
    resolve_freshness,
    resolve_mapping,
    resolve_unsubscribe,
    templated,
)
from clearout_provider.run_files import staged_file, task_folder
from clearout_provider.verification.model import RESULT_COLUMNS
from clearout_provider.verification.policy import UnsubscribePolicy

# pyarrow, the hook and the contacts/results modules are imported where they are used, so that a DAG
# file importing these operators parses fast (the DAG processor imports it every few seconds).
if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from clearout_provider.contacts import Freshness, StoragePath
    from clearout_provider.hooks.clevertap import CleverTapHook
    from clearout_provider.hooks.clevertap_models import RecordRejection, UploadReport
    from clearout_provider.lineage import Lineage

OUTPUT_FORMATS = ("parquet", "csv")
#: Column the extract adds: why the profile is verified (a :class:`FreshnessReason`, null when fresh).
FRESHNESS_REASON = "freshness_reason"
#: The hook's default connection (``CleverTapHook.default_conn_name``), here so parsing needs no hook.
DEFAULT_CONN_ID = "clevertap_default"
#: Result rows read, planned, sent and written at a time: what bounds the load's memory. A multiple of
#: the 1000 records CleverTap takes per call, so a batch of updates leaves no part-filled request.
LOAD_BATCH_ROWS = 64_000
_DELETE = {"$delete": 1}


@cache
def _decided_locally_as_syntax_invalid() -> str:
    """The ``decided_by`` of addresses the pipeline found malformed itself (never sent to Clearout)."""
    from clearout_provider.verification.model import DecidedBy

    return DecidedBy.LOCAL_SYNTAX.value


class Outcome:
    """Values of the outcome file's ``outcome`` column."""

    UPDATED = "updated"
    UNSUBSCRIBED_ONLY = "unsubscribed_only"
    UNCHANGED = "unchanged"
    NOT_VERIFIED = "not_verified"
    """The verification gave no verdict (no answer, dry run): nothing written, the profile stays due."""
    REJECTED = "rejected"
    """CleverTap's own per-record code (or the hook's property rules) refused the row."""
    ALL = (UPDATED, UNSUBSCRIBED_ONLY, UNCHANGED, NOT_VERIFIED, REJECTED)


class CleverTapLoadError(Exception):
    """A result file the load cannot read (not a result file, unknown format)."""


class CleverTapAccountingError(AccountingError):
    """Counts that do not add up (extract or load): a bug, never a property of the input."""


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
    :param selection: ``"auto"`` (the delta, and a full sweep when none succeeded in the last
        ``full_sweep_days``), ``"delta"`` or ``"full"``. ``only_delta=False`` always exports in full.
        Templated.
    :param full_sweep_days: how often ``auto`` exports the whole segment.
    :param email_change_event: a CleverTap event the app raises when a user changes their address; the
        delta then also asks for the profiles that raised it since the last successful night.
    :param partition_by: ``{"property": <a profile date property>, "since": "YYYY-MM-DD", "parts": N}``
        splits every selected part into N date ranges of that property (plus the profiles without it),
        exported side by side: a large segment pages N cursors at once instead of one. Templated.
    :param export_concurrency: cursors paged at once (default: the hook's, CleverTap's limit of 3).

    Returns ``{"path", "exported", "no_email", "fresh", "to_verify", "by_reason", "selection", "by_part",
    "export_requests", "selected_at", "selection_key"}`` with ``exported == no_email + fresh + to_verify``;
    ``selection`` says which mode ran and ``by_part`` how many profiles each export part held (before repeats
    across parts were dropped); ``by_reason`` counts the reasons of the selected profiles ("never_verified",
    "stale", "email_changed"; with ``only_delta=False`` the fresh ones selected anyway are the difference to
    ``to_verify``). The file holds the export columns (identity, objectId, email, name, the verification
    properties, ``MSG-email``) plus ``freshness_reason``.
    """

    template_fields: Sequence[str] = (
        "query",
        "workdir",
        "freshness",
        "mapping",
        "selection",
        "full_sweep_days",
        "email_change_event",
        "partition_by",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"query": "json"}
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        query: Mapping[str, Any] | str,
        clevertap_conn_id: str = DEFAULT_CONN_ID,
        workdir: str | None = None,
        freshness: Freshness | Mapping[str, Any] | str | None = None,
        only_delta: bool = True,
        output_format: Literal["parquet", "csv"] = "parquet",
        mapping: PropertyMapping | Mapping[str, Any] | str | None = None,
        batch_size: int = 5000,
        selection: str = "auto",
        full_sweep_days: float | str = 7,
        email_change_event: str | None = None,
        partition_by: Mapping[str, Any] | str | None = None,
        export_concurrency: int | None = None,
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
        self.selection = selection
        self.full_sweep_days = full_sweep_days
        self.email_change_event = email_change_event or None
        self.partition_by = partition_by
        self.export_concurrency = export_concurrency
        # Plain settings fail at parse time; templated ones when the task renders them.
        if not templated(selection):
            choose_mode(selection, None, datetime.now(UTC), full_sweep_days)  # type: ignore[arg-type]
        if partition_by is not None and not templated(partition_by):
            _partitioning(partition_by)
        if freshness is not None and not templated(freshness):
            resolve_freshness(freshness)
        if not templated(mapping):
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

    def _parts(
        self, mode: Mode, names: Mapping[str, str], now: datetime, since: datetime | None
    ) -> list[Part]:
        """The export parts of tonight's selection (see :mod:`clearout_provider.clevertap.selection`)."""
        segment = self._query()
        if mode == "full":
            parts = [Part("segment", segment)]
        else:
            parts = delta_parts(
                segment,
                verified_at=names["verified_at"],
                due_at=names[DUE_COLUMN],
                now=now,
                email_change_event=self.email_change_event or None,
                since=since,
            )
        if self.partition_by is None:
            return parts
        prop, start, count = _partitioning(self.partition_by)
        return by_date_ranges(parts, prop, start=start, end=now, count=count)

    def execute(self, context: Context) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from clearout_provider.contacts import FreshnessReason, freshness_reasons
        from clearout_provider.hooks.clevertap import CleverTapHook
        from clearout_provider.tables import TableWriter
        from clearout_provider.verification.verifier import spec

        folder = task_folder(context, self.workdir)
        freshness, mapping = resolve_freshness(self.freshness), resolve_mapping(self.mapping)
        names = mapping.property_names()
        properties = (*names.values(), *MANAGED_PROPERTIES)
        # Freshness reads result-column roles, whatever the properties are called (FRESHNESS_COLUMNS).
        headline = spec(mapping.verifier).headline_column
        roles = {names[c]: ("status" if c == headline else c) for c in names}
        hook = CleverTapHook(self.clevertap_conn_id)
        out = folder / f"clevertap-profiles.{self.output_format}"
        now = datetime.now(UTC)
        key = f"{context['ti'].dag_id}.{context['ti'].task_id}"
        history = SelectionHistory(key, self.workdir)
        mode: Mode = (
            choose_mode(self.selection, history.last_full_sweep(), now, float(self.full_sweep_days))  # type: ignore[arg-type]
            if self.only_delta
            else "full"
        )
        parts = self._parts(mode, names, now, history.last_night())
        self.log.info("CleverTap extract: %s selection in %d export part(s)", mode, len(parts))
        counts: Counter[str] = Counter()
        with staged_file(folder / "clevertap-export.parquet") as raw:
            export = hook.export_partitions(
                [p.query for p in parts],
                raw,
                batch_size=self.batch_size,
                properties=properties,
                concurrency=self.export_concurrency,
            )
            parquet = pq.ParquetFile(raw)
            schema = parquet.schema_arrow.append(pa.field(FRESHNESS_REASON, pa.string()))
            with TableWriter(out, schema, what="extract file") as writer:
                for batch in parquet.iter_batches(batch_size=65_536):
                    table = pa.Table.from_batches([batch])
                    email = pc.utf8_trim_whitespace(table.column("email"))
                    has_email = pc.fill_null(pc.greater(pc.binary_length(email), 0), False)
                    for_freshness = table.rename_columns([roles.get(c, c) for c in table.column_names])
                    reasons = freshness_reasons(for_freshness, freshness, now)
                    due = pc.and_(has_email, pc.is_valid(reasons))
                    keep = has_email if not self.only_delta else due
                    counts["no_email"] += table.num_rows - (pc.sum(has_email).as_py() or 0)
                    counts["to_verify"] += pc.sum(keep).as_py() or 0
                    counts.update(pc.filter(reasons, due).to_pylist())
                    writer.write(table.append_column(FRESHNESS_REASON, reasons).filter(keep))
        exported = export.count
        fresh = exported - counts["no_email"] - counts["to_verify"]
        by_reason = {r.value: counts[r.value] for r in FreshnessReason}
        result = {
            "path": str(out),
            "exported": exported,
            "no_email": counts["no_email"],
            "fresh": fresh,
            "to_verify": counts["to_verify"],
            "by_reason": by_reason,
            "selection": mode,
            "by_part": dict(zip((p.label for p in parts), export.part_counts or (exported,), strict=True)),
            "export_requests": export.requests,
            "selected_at": now.isoformat(),
            "selection_key": key,
            "selection_workdir": self.workdir,
        }
        if fresh < 0 or (self.only_delta and sum(by_reason.values()) != counts["to_verify"]):
            raise CleverTapAccountingError(f"extract counts do not add up: {result}")
        self.log.info(
            "CleverTap extract (%s): %d profiles exported in %d requests, %d without email, %d fresh, "
            "%d to verify %s",
            mode,
            exported,
            export.requests,
            result["no_email"],
            result["fresh"],
            result["to_verify"],
            result["by_reason"],
        )
        self._lineage_facts = result
        return result

    #: What the last run returned, for OpenLineage (None until a run finished).
    _lineage_facts: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """OpenLineage (the ``openlineage`` extra): the segment read, the contacts file written."""
        from clearout_provider.lineage import extract_lineage

        return extract_lineage(self.clevertap_conn_id, self._query(), self._lineage_facts)


def _partitioning(partition_by: Mapping[str, Any] | str) -> tuple[str, datetime, int]:
    """``partition_by`` checked: (date property, start of the ranges, number of ranges)."""
    spec = json.loads(partition_by) if isinstance(partition_by, str) else partition_by
    if not isinstance(spec, Mapping) or not spec.get("property"):
        raise ValueError(
            f'partition_by needs {{"property": ..., "since": "YYYY-MM-DD", "parts": N}}, got {spec!r}'
        )
    try:
        since = datetime.fromisoformat(str(spec.get("since", "2015-01-01")))
        parts = int(spec.get("parts", 4))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"partition_by: {exc}") from None
    if parts < 1:
        raise ValueError(f"partition_by parts must be >= 1, got {parts}")
    return str(spec["property"]), since if since.tzinfo else since.replace(tzinfo=UTC), parts


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
    resubscribe: bool = False
    """Whether this row lifts an unsubscribe this provider made earlier (see UnsubscribePolicy.lifts)."""
    address: str | None = None
    """The address to send to the Subscribe API (None = no call), with ``subscription`` as its status."""
    subscription: str | None = None
    no_verdict: str | None = None
    """Why the row has no verdict to write (None = it has one)."""


def plan_row(
    row: Mapping[str, Any],
    mapping: PropertyMapping,
    policy: UnsubscribePolicy,
    *,
    exported: frozenset[str],
    decided_at: datetime,
    freshness: Freshness | None = None,
) -> RowPlan:
    """What to send for one result row (input columns + RESULT_COLUMNS), sending only what differs.

    ``exported`` names the property columns the export read back; a property not among them is always
    sent. Values are compared in the export's text form (:func:`as_text`), so what this run writes and
    what the next export reads compare equal. ``decided_at`` dates a verdict that carries no time of
    its own (decided locally, e.g. a syntax error); ``freshness`` sets its due date (None: the default
    TTLs). A row without any verdict must not reach here: its
    "unknown" would overwrite an earlier good verdict.

    An address the pipeline found malformed itself (``decided_by == "local_syntax"``) is unsubscribed
    through its profile only (``MSG-email: false``), whatever the policy's method: CleverTap's Subscribe
    API refuses every malformed address (515 "Email is not valid"), so sending it could never succeed
    and would report a correctly handled row as "rejected" on every run (~3% of a real list). The
    profile is the only place such an address can be switched off.
    """
    values = mapping.properties(row, freshness=freshness, verified_at_default=decided_at)
    plan = _plan_properties(row, values, exported=exported)
    _plan_subscription(plan, row, policy, exported=exported, decided_at=decided_at)
    return plan


def _plan_properties(
    row: Mapping[str, Any], values: Mapping[str, Any], *, exported: frozenset[str]
) -> RowPlan:
    """The plan of one row's new property ``values`` (property → value; None = absent): only what differs
    from the exported text of the property (``exported`` names the properties read back), a ``$delete``
    for a value that is gone. What both loads share, verdicts or any property columns."""
    from clearout_provider.hooks.clevertap_export import as_text

    plan = RowPlan(
        identity=_text(row.get("identity")),
        object_id=_text(row.get("objectId")),
        email=_text(row.get("email")),
    )
    for prop, value in values.items():
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
    return plan


def _plan_subscription(
    plan: RowPlan,
    row: Mapping[str, Any],
    policy: UnsubscribePolicy,
    *,
    exported: frozenset[str],
    decided_at: datetime,
) -> None:
    """Unsubscribe (with the marker), lift an unsubscribe of ours, or leave the email preference alone.

    The marker (:data:`UNSUBSCRIBED_REASON_PROPERTY` and ``..._AT``) is written only when this run is what
    switches email off: a profile already switched off without the marker was switched off by someone
    else (the person opted out) and must never be resubscribed by us, so it never gets one.
    """
    from clearout_provider.clevertap_rules import date_value
    from clearout_provider.hooks.clevertap_export import as_text

    def old(prop: str) -> str | None:
        return _exported_text(row, prop) if prop in exported else None

    def change(prop: str, value: Any) -> None:
        new = None if value is _DELETE else as_text(value)
        if new != old(prop):
            plan.update[prop] = value
            plan.changes[prop] = {"from": old(prop), "to": new}

    email_off = old(UNSUBSCRIBE_PROPERTY) == as_text(False)
    marker = old(UNSUBSCRIBED_REASON_PROPERTY)
    address = (_text(row.get("verified_email")) or plan.email or "").lower() or None
    plan.unsubscribe_reason = policy.reason(row)
    if plan.unsubscribe_reason:
        malformed = row.get("decided_by") == _decided_locally_as_syntax_invalid()
        if policy.via_profile or malformed:
            change(UNSUBSCRIBE_PROPERTY, False)
        if policy.via_subscribe_api and not malformed:
            plan.address, plan.subscription = address, "Unsubscribe"
        if (not email_off or marker) and marker != plan.unsubscribe_reason:
            change(UNSUBSCRIBED_REASON_PROPERTY, plan.unsubscribe_reason)
            change(UNSUBSCRIBED_AT_PROPERTY, date_value(decided_at))
    elif marker and policy.lifts(row):
        plan.resubscribe = True
        change(UNSUBSCRIBE_PROPERTY, True)
        change(UNSUBSCRIBED_REASON_PROPERTY, _DELETE)
        change(UNSUBSCRIBED_AT_PROPERTY, _DELETE)
        if policy.via_subscribe_api:
            plan.address, plan.subscription = address, "Resubscribe"


def _exported_text(row: Mapping[str, Any], prop: str) -> str | None:
    from clearout_provider.hooks.clevertap_export import as_text

    value = row.get(prop)
    return None if value is None else as_text(value)


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
    from clearout_provider.contacts import resolve_path

    try:
        return datetime.fromtimestamp(resolve_path(path).stat().st_mtime, UTC)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return datetime.now(UTC)


#: Bytes of CSV text parsed at a time (~30-60k result rows).
_CSV_BLOCK_BYTES = 16 << 20


def iter_result_batches(path: StoragePath, rows: int = LOAD_BATCH_ROWS) -> Iterator[pa.Table]:
    """A result file (Parquet or CSV) as :func:`iter_table_batches` reads it, RESULT_COLUMNS typed as
    :data:`RESULT_SCHEMA`; :class:`CleverTapLoadError` before the first batch for a file that is not a
    result file."""
    from clearout_provider.results import RESULT_SCHEMA

    return iter_table_batches(
        path,
        rows,
        types={f.name: f.type for f in RESULT_SCHEMA},
        required=RESULT_COLUMNS,
        what="verification result file",
    )


def iter_table_batches(
    path: StoragePath,
    rows: int = LOAD_BATCH_ROWS,
    *,
    types: Mapping[str, pa.DataType] | None = None,
    required: Sequence[str] = (),
    what: str = "table file",
) -> Iterator[pa.Table]:
    """A table file (Parquet or CSV), ``rows`` rows at a time (CSV: a block of text at a time): the
    columns named in ``types`` of that type, the others as written (CSV: text, so exported property
    values compare as the export wrote them). Raises :class:`CleverTapLoadError` before the first batch
    for a file that is neither Parquet nor CSV or lacks a ``required`` column."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from clearout_provider.contacts import read_csv_header, resolve_path
    from clearout_provider.tables import table_format

    try:
        kind = table_format(path)
    except ValueError:
        raise CleverTapLoadError(f"{path} is not a {what}: expected .parquet or .csv") from None
    types = dict(types or {})
    with resolve_path(path).open("rb") as stream:
        if kind == "csv":
            names = read_csv_header(stream, str(path))
            stream.seek(0)
            reader: Any = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: types.get(n, pa.string()) for n in names}
                ),
            )
            schema, batches = reader.schema, iter(reader)
        else:
            parquet = pq.ParquetFile(stream)
            schema, batches = parquet.schema_arrow, parquet.iter_batches(batch_size=rows)
        missing = [c for c in required if c not in schema.names]
        if missing:
            raise CleverTapLoadError(f"{path} is not a {what}: columns {missing} are missing")
        recast = [
            (i, f.name, types[f.name]) for i, f in enumerate(schema) if types.get(f.name, f.type) != f.type
        ]
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for at, name, type_ in recast:
                table = table.set_column(at, name, table.column(at).cast(type_))
            yield table


#: One row's plan, given the properties the export read back for the row's batch (see :func:`plan_row`).
Planner = Callable[[Mapping[str, Any], frozenset[str]], RowPlan]


class _CleverTapLoadOperator(BaseOperator):
    """What both loads share: read → plan → upload → (un)subscribe → outcome rows, a batch at a time,
    with one outcome per row and the counts that must add up (:class:`_Tally`)."""

    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        clevertap_conn_id: str = DEFAULT_CONN_ID,
        workdir: str | None = None,
        dry_run: bool | str = False,
        max_concurrency: int = 15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.clevertap_conn_id = clevertap_conn_id
        self.workdir = workdir
        # ``dry_run_enabled``, not ``dry_run``: BaseOperator.dry_run() is a method.
        self.dry_run_enabled = dry_run
        self.max_concurrency = max_concurrency
        if not templated(dry_run):
            resolve_flag(dry_run, "dry_run")

    def _load(
        self, context: Context, batches: Iterable[pa.Table], plan: Planner, written: Iterable[str]
    ) -> dict[str, Any]:
        """Load every batch; ``written`` names the properties ``plan`` may write (those of them a batch
        has as columns are what the export read back: a row sends only what differs from them)."""
        import pyarrow.parquet as pq

        from clearout_provider.hooks.clevertap import CleverTapHook

        folder = task_folder(context, self.workdir)
        dry_run = resolve_flag(self.dry_run_enabled, "dry_run")
        hook = CleverTapHook(self.clevertap_conn_id, max_concurrency=self.max_concurrency)
        subscriptions = _Subscriptions(hook, dry_run=dry_run)
        tally = _Tally(dry_run=dry_run)
        written = tuple(written)
        outcome_path = folder / "clevertap-load-outcome.parquet"
        with outcome_path.open("wb") as stream, pq.ParquetWriter(stream, outcome_schema()) as writer:
            for table in batches:
                planned = _plan_batch(table, plan, written)
                tally.rows_in += table.num_rows
                del table  # the plans hold what the rest of the batch needs
                upload = _upload(hook, planned, dry_run=dry_run)
                writer.write_table(_settle(planned, upload, subscriptions(planned, upload), tally))
        summary = tally.summary(str(outcome_path))
        self._lineage_facts = {"written": tally.written, "profiles": tally.profiles_written}
        self.log.info(
            "CleverTap load%s: %d rows: %d updated, %d unsubscribed only, %d unchanged, %d not verified %s, "
            "%d rejected %s; %d unsubscribed %s, %d resubscribed",
            " (DRY RUN: nothing saved, no unsubscribe sent)" if dry_run else "",
            summary["input"],
            summary["updated"],
            summary["unsubscribed_only"],
            summary["unchanged"],
            summary["not_verified"],
            summary["by_no_verdict"],
            summary["rejected"],
            summary["by_rejection_code"],
            summary["unsubscribed"],
            summary["by_unsubscribe_reason"],
            summary["resubscribed"],
        )
        return summary

    #: What the last run read and wrote, for OpenLineage (None until a run finished).
    _lineage_facts: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Lineage:
        """OpenLineage (the ``openlineage`` extra): the file read, the profile properties written."""
        from clearout_provider.lineage import load_lineage

        facts = self._lineage_facts or {"written": None, "profiles": 0}  # None: the load did not finish
        return load_lineage(self.clevertap_conn_id, self._source(), facts["written"], facts["profiles"])

    def _source(self) -> str:
        """The file the load reads (each load names its parameter)."""
        raise NotImplementedError


def _unanswered(row: Mapping[str, Any], why: str) -> RowPlan:
    """The plan of a row without an answer to write: nothing is sent, the outcome says ``why``."""
    return RowPlan(
        identity=_text(row.get("identity")),
        object_id=_text(row.get("objectId")),
        email=_text(row.get("email")),
        no_verdict=why,
    )


class CleverTapLoadVerificationOperator(_CleverTapLoadOperator):
    """Write verification results back to CleverTap: properties (Append) and unsubscribes.

    :param result_path: result file of a verify operator (input columns incl. identity, objectId,
        email and the exported properties, then RESULT_COLUMNS), Parquet or CSV. Templated.
    :param clevertap_conn_id: connection of type ``clevertap``.
    :param workdir: base folder for task files. Templated.
    :param mapping: which result columns to write under which names (:class:`PropertyMapping`, or
        ``{"columns": [...], "renames": {...}}``); None = every column under its default name.
    :param unsubscribe: :class:`UnsubscribePolicy` or a dict of its fields; None = the defaults.
    :param freshness: the TTLs of the extract (:class:`Freshness` or a dict of its fields; None = the
        defaults): each profile's due date ("Clearout Reverify After") is its verification time plus its
        verdict's lifetime, and the next delta night asks CleverTap for the profiles past it.
    :param dry_run: validate the updates with CleverTap's ``dryRun`` and send no unsubscribe; the
        outcome file shows what would change.
    :param max_concurrency: concurrent CleverTap requests (CleverTap allows 15 uploads per account).

    Returns ``{"outcome_path", "input", "updated", "unsubscribed_only", "unchanged", "not_verified",
    "rejected", "unsubscribed", "resubscribed", "by_rejection_code", "by_unsubscribe_reason",
    "by_no_verdict", "dry_run"}``; ``input == updated + unsubscribed_only + unchanged + not_verified +
    rejected``. ``unsubscribed`` / ``resubscribed`` count the rows whose change was applied (would be, in a
    dry run); ``by_rejection_code`` is keyed by CleverTap's code as text (only CleverTap's own per-record
    codes and the hook's property rules reject a row: a transport failure fails the task so Airflow
    retries it); ``by_no_verdict`` counts rows the verification left without a verdict, by decider (nothing
    is written for them; they stay due).

    The file is loaded :data:`LOAD_BATCH_ROWS` rows at a time (read → plan → upload → unsubscribe →
    outcome rows appended to the outcome file), so memory stays flat however large the file: only the
    addresses already sent to the Subscribe API are kept across batches (each is sent once per run).
    """

    template_fields: Sequence[str] = (
        "result_path",
        "workdir",
        "mapping",
        "unsubscribe",
        "freshness",
        "dry_run_enabled",
    )

    def __init__(
        self,
        *,
        result_path: str,
        mapping: PropertyMapping | Mapping[str, Any] | str | None = None,
        unsubscribe: UnsubscribePolicy | Mapping[str, Any] | str | None = None,
        freshness: Freshness | Mapping[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.result_path = result_path
        self.mapping = mapping
        self.unsubscribe = unsubscribe
        self.freshness = freshness
        # Plain settings fail at parse time; templated ones when the task renders them.
        if not templated(mapping):
            resolve_mapping(mapping)
        if not templated(unsubscribe):
            resolve_unsubscribe(unsubscribe)
        if freshness is not None and not templated(freshness):
            resolve_freshness(freshness)

    def execute(self, context: Context) -> dict[str, Any]:
        from clearout_provider.verification.model import NO_VERDICT

        mapping, policy = resolve_mapping(self.mapping), resolve_unsubscribe(self.unsubscribe)
        freshness = resolve_freshness(self.freshness)
        decided_at = written_at(self.result_path)

        def plan(row: Mapping[str, Any], exported: frozenset[str]) -> RowPlan:
            if row.get("decided_by") in NO_VERDICT:
                return _unanswered(
                    row, f"{row['decided_by']}: {row.get('verdict_reason') or 'no verdict to write'}"
                )
            return plan_row(
                row, mapping, policy, freshness=freshness, exported=exported, decided_at=decided_at
            )

        written = (*mapping.property_names().values(), *MANAGED_PROPERTIES)
        return self._load(context, iter_result_batches(self.result_path), plan, written)

    def _source(self) -> str:
        return self.result_path


class CleverTapLoadPropertiesOperator(_CleverTapLoadOperator):
    """Write property columns of a table file onto CleverTap profiles, sending only what differs.

    The load of :class:`CleverTapLoadVerificationOperator` for any columns (the Email Finder's write-back,
    a warehouse's scores): the same diffing against the properties the export read back, the same
    per-row outcomes in the outcome file (CleverTap's own per-record codes such as 515, and the hook's
    property rules, reject a row; a transport failure fails the task), the same ``dry_run`` and the same
    accounting, ``input == updated + unchanged + not_verified + rejected``. It never changes a
    subscription: ``unsubscribed_only``, ``unsubscribed`` and ``resubscribed`` are 0.

    :param source: Parquet or CSV file: ``identity`` and/or ``objectId`` per row, then the property
        columns. CSV values are text: write Parquet to send numbers, flags and dates typed. Templated.
    :param properties: file column → CleverTap property, or a list of columns written under their own
        names. A file column named like a property (and not its source) is that property's exported
        value: the row sends the property only when it differs. A missing value leaves the property as
        it is. Templated.
    :param no_answer: ``decided_by`` values of rows that carry no answer: nothing is written for them
        (they stay due) and their outcome is ``not_verified``, counted by decider in ``by_no_verdict``.
        None = every decider of this provider that is not an answer (a verification's
        :data:`~clearout_provider.verification.model.NO_VERDICT`, the finder's
        :data:`~clearout_provider.finder_files.NO_ANSWER`); ``()`` writes every row.
    :param clevertap_conn_id, workdir, dry_run, max_concurrency: as for
        :class:`CleverTapLoadVerificationOperator`.

    Returns the summary of :class:`CleverTapLoadVerificationOperator`.
    """

    template_fields: Sequence[str] = ("source", "properties", "workdir", "dry_run_enabled")

    def __init__(
        self,
        *,
        source: str,
        properties: Mapping[str, str] | Sequence[str],
        no_answer: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.properties = properties
        self.no_answer = None if no_answer is None else frozenset(no_answer)
        if not templated(properties):
            property_columns(properties)

    def execute(self, context: Context) -> dict[str, Any]:
        from clearout_provider.clevertap.mapping import is_missing
        from clearout_provider.clevertap_rules import encode_value

        columns = property_columns(self.properties)
        no_answer = self.no_answer
        if no_answer is None:  # imported here: both modules load pyarrow, which DAG parsing must not
            from clearout_provider.finder_files import NO_ANSWER
            from clearout_provider.verification.model import NO_VERDICT

            no_answer = NO_VERDICT | NO_ANSWER

        def plan(row: Mapping[str, Any], exported: frozenset[str]) -> RowPlan:
            if row.get("decided_by") in no_answer:
                return _unanswered(row, f"{row['decided_by']}: no answer to write")
            values = {
                p: None if is_missing(row.get(c)) else encode_value(row.get(c)) for c, p in columns.items()
            }
            return _plan_properties(row, values, exported=exported)

        batches = iter_table_batches(self.source, required=list(columns), what="property file")
        return self._load(context, batches, plan, [p for c, p in columns.items() if p != c])

    def _source(self) -> str:
        return self.source


def property_columns(properties: Mapping[str, str] | Sequence[str] | str) -> dict[str, str]:
    """``properties`` of :class:`CleverTapLoadPropertiesOperator` as file column → property name; raises
    ValueError for a property name CleverTap refuses (checked before any row is sent)."""
    from clearout_provider.clevertap_rules import check_key

    if isinstance(properties, str):
        raise TypeError("properties must be a mapping of column to property, or a list of columns")
    columns = dict(properties) if isinstance(properties, Mapping) else {str(c): str(c) for c in properties}
    for prop in columns.values():
        violation = check_key(prop)
        if violation is not None:
            raise ValueError(violation.message)
    if not columns:
        raise ValueError("properties names no column to write")
    return columns


# --- the load's steps, one batch at a time ---------------------------------------------------------

#: Result rows turned into Python dicts at a time while planning (the dicts are dropped right away).
_ROWS_AS_DICTS = 4096


class _Planned(NamedTuple):
    """A :class:`RowPlan` as the load keeps it until its batch is settled: the update to send, and the
    changes already as the outcome file's JSON (a RowPlan's dicts of dicts cost ~2 KB a row)."""

    identity: str | None
    object_id: str | None
    email: str | None
    update: dict[str, Any] | None
    """``profileData`` to send; None = nothing to send."""
    changes: str | None
    """The outcome file's ``changes`` (JSON); None = nothing differs."""
    updates_properties: bool
    """Whether a property other than those the load manages (``MSG-email`` and the marker) differs."""
    unsubscribe_reason: str | None
    resubscribe: bool
    address: str | None
    subscription: str | None
    no_verdict: str | None

    @classmethod
    def of(cls, plan: RowPlan) -> _Planned:
        return cls(
            plan.identity,
            plan.object_id,
            plan.email,
            plan.update or None,
            json.dumps(plan.changes, ensure_ascii=False) if plan.changes else None,
            bool(plan.changes.keys() - set(MANAGED_PROPERTIES)),
            plan.unsubscribe_reason,
            plan.resubscribe,
            plan.address,
            plan.subscription,
            plan.no_verdict,
        )


def _plan_batch(table: pa.Table, plan: Planner, written: Sequence[str]) -> list[_Planned]:
    exported = frozenset(p for p in written if p in table.column_names)
    planned: list[_Planned] = []
    for start in range(0, table.num_rows, _ROWS_AS_DICTS):
        planned.extend(
            _Planned.of(plan(row, exported)) for row in table.slice(start, _ROWS_AS_DICTS).to_pylist()
        )
    return planned


def _upload(
    hook: CleverTapHook, planned: list[_Planned], *, dry_run: bool
) -> dict[int, RecordRejection | None]:
    """Send every non-empty update; row → its rejection (None = applied / validated)."""
    rows = [n for n, p in enumerate(planned) if p.update]
    if not rows:
        return {}
    records = (
        {"identity": planned[n].identity, "objectId": planned[n].object_id, "profileData": planned[n].update}
        for n in rows
    )
    report = hook.upload_profiles(records, dry_run=dry_run)
    return _by_row(rows, report, len(rows))


class _Subscriptions:
    """The Subscribe API side of the load: each (address, status) is sent once per run, in the batch where it
    first appears; rows of later batches with the same address share that answer (None in a dry run, which
    sends nothing). A row whose profile update CleverTap rejected sends nothing: a rejected row is never
    unsubscribed (nor resubscribed) by any method."""

    def __init__(self, hook: CleverTapHook, *, dry_run: bool) -> None:
        self.hook = hook
        self.dry_run = dry_run
        self.answers: dict[tuple[str, str], RecordRejection | None] = {}
        """(address, status) → its rejection (None = applied), for everything sent so far."""

    def __call__(
        self, planned: list[_Planned], upload: Mapping[int, RecordRejection | None]
    ) -> dict[int, RecordRejection | None]:
        """Row of ``planned`` → its address's rejection (None = applied), for rows that send one."""
        rows_of: dict[tuple[str, str], list[int]] = {}
        for n, plan in enumerate(planned):
            if plan.address is not None and plan.subscription is not None and upload.get(n) is None:
                rows_of.setdefault((plan.address, plan.subscription), []).append(n)
        if self.dry_run:
            return {n: None for rows in rows_of.values() for n in rows}
        for status in ("Unsubscribe", "Resubscribe"):
            new = [address for address, s in rows_of if s == status and (address, status) not in self.answers]
            if new:
                report = self.hook.subscribe(new, status)
                by_index = _by_row(list(range(len(new))), report, len(new))
                self.answers.update(((address, status), by_index[i]) for i, address in enumerate(new))
        return {n: self.answers[key] for key, rows in rows_of.items() for n in rows}


def _by_row(rows: list[int], report: UploadReport, sent: int) -> dict[int, RecordRejection | None]:
    if report.received != sent:
        raise CleverTapAccountingError(f"CleverTap hook saw {report.received} records of {sent} sent")
    outcome: dict[int, RecordRejection | None] = dict.fromkeys(rows)
    for rejection in report.rejections:
        outcome[rows[rejection.row]] = rejection
    return outcome


@dataclass
class _Tally:
    """The load's counts, added up batch by batch (the outcome rows themselves go to the file)."""

    dry_run: bool
    rows_in: int = 0
    rows_out: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    unsubscribed: int = 0
    resubscribed: int = 0
    by_rejection_code: Counter[str] = field(default_factory=Counter)
    by_unsubscribe_reason: Counter[str] = field(default_factory=Counter)
    by_no_verdict: Counter[str] = field(default_factory=Counter)
    written: dict[str, str | None] = field(default_factory=dict)
    """Property → its value type (:func:`clearout_provider.lineage.property_type`) for every property an
    applied profile update wrote or cleared: what lineage shows as written (empty in a dry run)."""
    profiles_written: int = 0
    """Profiles whose update CleverTap applied (0 in a dry run)."""

    def wrote(self, update: Mapping[str, Any]) -> None:
        """Count one applied profile update."""
        self.profiles_written += 1
        for prop, value in update.items():
            if self.written.get(prop) is None:
                self.written[prop] = property_type(value)

    def summary(self, outcome_path: str) -> dict[str, Any]:
        """The operator's return value; raises when input != updated + unsubscribed_only + unchanged +
        rejected (or a row has no outcome)."""
        outcomes = sum(self.by_outcome[o] for o in Outcome.ALL)
        if self.rows_out != self.rows_in or self.rows_in != outcomes:
            raise CleverTapAccountingError(
                f"{self.rows_in} input rows but {self.rows_out} outcomes: {dict(self.by_outcome)} "
                "(input must equal updated + unsubscribed_only + unchanged + not_verified + rejected)"
            )
        return {
            "outcome_path": outcome_path,
            "input": self.rows_in,
            **{o: self.by_outcome[o] for o in Outcome.ALL},
            "unsubscribed": self.unsubscribed,
            "resubscribed": self.resubscribed,
            "by_rejection_code": dict(self.by_rejection_code),
            "by_unsubscribe_reason": dict(self.by_unsubscribe_reason),
            "by_no_verdict": dict(self.by_no_verdict),
            "dry_run": self.dry_run,
        }


def _settle(
    planned: list[_Planned],
    upload: Mapping[int, RecordRejection | None],
    subscribe: Mapping[int, RecordRejection | None],
    tally: _Tally,
) -> pa.Table:
    """The batch's outcome rows (what was sent, what came of it, each row's outcome), counted in ``tally``."""
    import pyarrow as pa

    dry_run = tally.dry_run
    sent = "validated" if dry_run else "applied"
    schema = outcome_schema()
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    first_row = tally.rows_out
    stage: str | None
    code: int | None
    message: str | None
    for n, plan in enumerate(planned):
        up, sub = upload.get(n), subscribe.get(n)
        rejection, where = (up, "profile_update") if up is not None else (sub, "subscribe")
        if plan.no_verdict is not None:
            stage, code, message = "no_verdict", None, plan.no_verdict
        elif rejection is not None:
            stage, code, message = where, rejection.code, f"{rejection.stage}: {rejection.error}"
        else:
            stage = code = message = None
        switches = (plan.update is not None and UNSUBSCRIBE_PROPERTY in plan.update) or n in subscribe
        unsubscribes = plan.unsubscribe_reason is not None and switches
        if plan.no_verdict is not None:
            outcome = Outcome.NOT_VERIFIED
            tally.by_no_verdict[plan.no_verdict.split(":")[0]] += 1
        elif stage is not None:
            outcome = Outcome.REJECTED
            tally.by_rejection_code[str(code)] += 1
        elif plan.updates_properties:
            outcome = Outcome.UPDATED
        elif unsubscribes:
            outcome = Outcome.UNSUBSCRIBED_ONLY
        else:
            outcome = Outcome.UNCHANGED
        unsubscribed = outcome != Outcome.REJECTED and unsubscribes
        resubscribed = outcome != Outcome.REJECTED and plan.resubscribe
        tally.by_outcome[outcome] += 1
        if plan.update and n in upload and up is None and not dry_run:
            tally.wrote(plan.update)
        tally.resubscribed += resubscribed
        if unsubscribed and plan.unsubscribe_reason is not None:  # (unsubscribing implies a reason)
            tally.unsubscribed += 1
            tally.by_unsubscribe_reason[plan.unsubscribe_reason] += 1
        for name, value in (
            ("row", first_row + n),
            ("identity", plan.identity),
            ("objectId", plan.object_id),
            ("email", plan.email),
            ("outcome", outcome),
            ("changes", plan.changes),
            ("unsubscribe_reason", plan.unsubscribe_reason),
            ("unsubscribed", unsubscribed),
            ("resubscribed", resubscribed),
            ("profile_update", _state(n in upload, up, sent)),
            ("subscribe", _state(n in subscribe, sub, "not_sent_dry_run" if dry_run else "applied")),
            ("rejection_code", code),
            ("rejection_stage", stage),
            ("rejection_message", message),
            ("dry_run", dry_run),
        ):
            columns[name].append(value)
    tally.rows_out += len(planned)
    return pa.Table.from_pydict(columns, schema=schema)


def _state(attempted: bool, rejection: RecordRejection | None, done: str) -> str:
    if not attempted:
        return "not_needed"
    return "rejected" if rejection is not None else done


@cache
def outcome_schema() -> pa.Schema:
    """Schema of the outcome file (one row per result row)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("row", pa.int64()),
            ("identity", pa.string()),
            ("objectId", pa.string()),
            ("email", pa.string()),
            ("outcome", pa.string()),
            ("changes", pa.string()),
            ("unsubscribe_reason", pa.string()),
            ("unsubscribed", pa.bool_()),
            ("resubscribed", pa.bool_()),
            ("profile_update", pa.string()),
            ("subscribe", pa.string()),
            ("rejection_code", pa.int32()),
            ("rejection_stage", pa.string()),
            ("rejection_message", pa.string()),
            ("dry_run", pa.bool_()),
        ]
    )
