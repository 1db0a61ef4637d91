"""Verdicts → CleverTap profile properties: the ONE table of property names, per verifier.

The Clearout x CleverTap integration's "Append" export writes a verdict as "Clearout ..." properties;
those names never change for Clearout users. A Mail.so verdict lands under "Mail.so ..." names (seed
004's campaigns branch on "Mailso Result" == "deliverable"). Both tables read the neutral result columns
of :mod:`clearout_provider.verification.model` (plus Clearout's own status and code), and every name can
be renamed: deployment-wide in ``include/clevertap_property_names.json`` (:func:`deployment_renames`),
and per DAG run on top of that (the ``renames`` param). The unsubscribe markers
(:data:`UNSUBSCRIBED_REASON_PROPERTY`) are this provider's own and shared by every verifier, so a Mail.so
verdict can lift an unsubscribe a Clearout verdict made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clearout_provider.clevertap_rules import check_key, date_value, parse_date_value
from clearout_provider.verification.model import LEGACY_COLUMNS, RESULT_KINDS, Kind, Verdict

if TYPE_CHECKING:
    from clearout_provider.contacts import Freshness

#: Result column → default CleverTap property name, per verifier (the Append export's column names).
PROPERTY_TABLES: dict[str, dict[str, str]] = {
    "clearout": {
        "clearout_status": "Clearout Verification Status",
        "safe_to_send": "Clearout Safe To Send",
        "clearout_sub_status_code": "Clearout Sub Status Code",
        "verdict_reason": "Clearout Sub Status",
        "bounce": "Clearout Bounce Type",
        "is_disposable": "Clearout Disposable",
        "is_role": "Clearout Role Account",
        "is_free": "Clearout Free Account",
        "is_gibberish": "Clearout Gibberish",
        "suggested_email": "Clearout Suggested Email",
        "verified_at": "Clearout Verified At",
        "verified_email": "Clearout Verified Email",
        "reverify_after": "Clearout Reverify After",
    },
    "mailso": {
        "verdict": "Mailso Result",
        "safe_to_send": "Mailso Safe To Send",
        "verdict_reason": "Mailso Reason",
        "verdict_score": "Mailso Score",
        "is_disposable": "Mailso Disposable",
        "is_role": "Mailso Role Account",
        "is_free": "Mailso Free Account",
        "is_catch_all": "Mailso Catch All",
        "suggested_email": "Mailso Suggested Email",
        "verified_at": "Mailso Verified At",
        "verified_email": "Mailso Verified Email",
        "reverify_after": "Mailso Reverify After",
        "prompt_email_fix": "Mailso Prompt Email Fix",
    },
}
VERIFIERS: tuple[str, ...] = tuple(PROPERTY_TABLES)
DEFAULT_VERIFIER = "clearout"

#: The column each verifier's headline property reads (its own status words): a DAG param naming one
#: verifier's headline (e.g. "Clearout Verification Status") means the other's under that verifier.
_HEADLINE: dict[str, str] = {"clearout": "clearout_status", "mailso": "verdict"}


def _prompt_email_fix(row: Mapping[str, Any]) -> bool | None:
    """Seed 004's branch: anything but a deliverable verdict asks the user to correct the address."""
    verdict = row.get("verdict")
    return None if is_missing(verdict) else verdict != Verdict.DELIVERABLE.value


#: Properties computed from a row rather than read from one result column (written as flags).
DERIVED_COLUMNS: dict[str, Callable[[Mapping[str, Any]], Any]] = {"prompt_email_fix": _prompt_email_fix}

#: Clearout's table, under its 0.1 name.
CLEVERTAP_PROPERTIES: dict[str, str] = PROPERTY_TABLES["clearout"]

#: The due date of a verification: its time plus the verdict's lifetime (:meth:`Freshness.lifetime`),
#: computed by the load rather than read from a result column. The delta selection asks CleverTap for
#: the profiles past it, which spares it one query per TTL class.
DUE_COLUMN = "reverify_after"

#: Result columns always written, chosen or not: the freshness filter reads them back on the next run
#: (the verification date for "stale", the verified address for "email changed"), the delta selection
#: the due date.
ALWAYS_WRITTEN: tuple[str, ...] = ("verified_email", "verified_at", DUE_COLUMN)

#: What the Clearout x CleverTap integration recommends appending (seed 001): the DAGs' default choice.
RECOMMENDED_APPEND: tuple[str, ...] = ("Clearout Safe To Send", "Clearout Verification Status")

#: The per-profile email preference; ``False`` stops email to that one profile.
UNSUBSCRIBE_PROPERTY = "MSG-email"

#: The marker of an unsubscribe THIS provider made: why (the policy reason, e.g. "hard_bounce:406") and
#: when. Only a profile carrying it is ever resubscribed (a later deliverable verdict for its current
#: address lifts it); a profile switched off without it (the person opted out) is never touched.
UNSUBSCRIBED_REASON_PROPERTY = "Clearout Unsubscribed Reason"
UNSUBSCRIBED_AT_PROPERTY = "Clearout Unsubscribed At"
#: Properties the load manages itself (never a mapping's target name), and the export reads back.
MANAGED_PROPERTIES: tuple[str, ...] = (
    UNSUBSCRIBE_PROPERTY,
    UNSUBSCRIBED_REASON_PROPERTY,
    UNSUBSCRIBED_AT_PROPERTY,
)


def _table(verifier: str) -> dict[str, str]:
    try:
        return PROPERTY_TABLES[verifier]
    except KeyError:
        raise ValueError(f"Unknown verifier {verifier!r}: choose one of {list(VERIFIERS)}") from None


def verification_properties(verifier: str = DEFAULT_VERIFIER) -> tuple[str, ...]:
    """The default property names of ``verifier``'s verdicts (what an export reads back)."""
    return tuple(_table(verifier).values())


#: Clearout's default properties, under their 0.1 name (what an export copies by default).
VERIFICATION_PROPERTIES: tuple[str, ...] = verification_properties("clearout")

#: Every name a DAG param may use for a column: result columns (today's and 0.1's) and every verifier's
#: default property names.
COLUMN_NAMES: tuple[str, ...] = tuple(
    sorted(
        {*LEGACY_COLUMNS, *(c for t in PROPERTY_TABLES.values() for c in t)}
        | {name for t in PROPERTY_TABLES.values() for name in t.values()}
    )
)


def is_missing(value: Any) -> bool:
    """None, NaN, NaT or pandas.NA (rows may come from pyarrow, pandas or plain dicts)."""
    if value is None:
        return True
    try:
        return bool(value != value)  # noqa: PLR0124  -- NaN and NaT are the values unequal to themselves
    except TypeError:  # pandas.NA refuses to be a bool
        return True


def clevertap_value(column: str, value: Any) -> Any:
    """One result value as CleverTap stores it: booleans as booleans, codes as ints, dates as
    ``$D_<epoch>``, text trimmed; missing or blank as None (the property is then absent)."""
    if is_missing(value):
        return None
    kind = (
        Kind.FLAG
        if column in DERIVED_COLUMNS
        else Kind.TIME
        if column == DUE_COLUMN
        else RESULT_KINDS.get(column, Kind.TEXT)
    )
    if kind is Kind.TIME:
        return date_value(value)
    if kind is Kind.INT:
        return int(value)
    if kind is Kind.FLAG:
        if isinstance(value, str):
            return {"true": True, "yes": True, "false": False, "no": False}.get(value.strip().lower())
        return bool(value)
    text = str(value).strip()
    return text or None


def resolve_column(name: str, verifier: str = DEFAULT_VERIFIER) -> str:
    """The result column of ``verifier``'s table that ``name`` means: a result column (today's or a 0.1
    ``clearout_*`` name), or a default property name of any verifier (any case)."""
    table = _table(verifier)
    key = LEGACY_COLUMNS.get(str(name).strip(), str(name).strip()).casefold()
    by_name: dict[str, str] = {}
    for other, other_table in PROPERTY_TABLES.items():
        for column, prop in other_table.items():
            meant = _HEADLINE[verifier] if column == _HEADLINE[other] else column
            by_name.setdefault(column.casefold(), meant)
            by_name.setdefault(prop.casefold(), meant)
    for column, prop in table.items():  # this verifier's own names win
        by_name[column.casefold()] = column
        by_name[prop.casefold()] = column
    found = by_name.get(key)
    if found is None or found not in table:
        raise ValueError(
            f"Unknown CleverTap mapping column {name!r} for verifier {verifier!r}: choose from the result "
            f"columns {list(table)} or their property names {list(table.values())}"
        )
    return found


#: The file under ``include/`` renaming properties for the whole deployment, per verifier:
#: ``{"clearout": {"Clearout Safe To Send": "Email Safe"}, "mailso": {}}`` (keys: result columns or
#: default property names, as in the ``renames`` param).
PROPERTY_NAMES_FILE = "clevertap_property_names.json"


def deployment_renames(verifier: str = DEFAULT_VERIFIER) -> dict[str, str]:
    """``verifier``'s renames in ``include/`` :data:`PROPERTY_NAMES_FILE` (result column → property name);
    {} when the deployment has no such file. Read on every call, so an edit applies to the next task.

    Every DAG that writes or reads back properties builds its mapping through
    :meth:`PropertyMapping.from_params`, which applies these first: the nightly, backfill and sign-up DAGs
    then agree on the names without repeating them in each DAG's params.
    """
    from clearout_provider.include_files import include_file

    path = include_file(PROPERTY_NAMES_FILE)
    if path is None:
        return {}
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict) or not set(overrides) <= set(VERIFIERS):
        raise ValueError(f"{path} must be a JSON object keyed by verifier ({list(VERIFIERS)})")
    renames = overrides.get(verifier) or {}
    if not isinstance(renames, dict):
        raise ValueError(f"{path}: {verifier!r} must map columns or property names to new names")
    try:
        return {resolve_column(k, verifier): str(v).strip() for k, v in renames.items()}
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class PropertyMapping:
    """Which result columns become which CleverTap properties (the Append export, user-overridable).

    ``columns`` are result columns of ``verifier``'s table (see :data:`PROPERTY_TABLES`); ``renames`` maps
    a result column to the property name to write instead of the default. :data:`ALWAYS_WRITTEN` columns
    are written even when not chosen.
    """

    columns: tuple[str, ...] = tuple(CLEVERTAP_PROPERTIES)
    renames: Mapping[str, str] = field(default_factory=dict)
    verifier: str = DEFAULT_VERIFIER

    def __post_init__(self) -> None:
        table = _table(self.verifier)
        for column in (*self.columns, *self.renames):
            if column not in table:
                resolve_column(column, self.verifier)  # raises with the choices
                raise ValueError(
                    "PropertyMapping takes result column names; "
                    f"use PropertyMapping.from_params for {column!r}"
                )
        names = list(self.property_names().values())
        for name in names:
            problem = check_key(name)
            if problem:
                raise ValueError(f"Cannot write CleverTap property: {problem.message}")
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"Several columns would write the same CleverTap property: {clashes}")
        for managed in MANAGED_PROPERTIES:
            if managed in names:
                raise ValueError(
                    f"{managed!r} is managed by the load (unsubscribes); rename to another property"
                )

    @classmethod
    def from_params(
        cls,
        columns: Sequence[str] | None = None,
        renames: Mapping[str, str] | None = None,
        *,
        verifier: str = DEFAULT_VERIFIER,
    ) -> PropertyMapping:
        """From DAG params: names may be result columns or default property names; None = all columns.

        ``renames`` apply on top of the deployment's (:func:`deployment_renames`): a run's own rename wins.
        """
        chosen = (
            tuple(dict.fromkeys(resolve_column(c, verifier) for c in columns))
            if columns
            else tuple(_table(verifier))
        )
        return cls(
            columns=chosen,
            renames={
                **deployment_renames(verifier),
                **{resolve_column(k, verifier): str(v).strip() for k, v in (renames or {}).items()},
            },
            verifier=verifier,
        )

    @property
    def defaults(self) -> dict[str, str]:
        """Result column → default property name in this verifier's table."""
        return _table(self.verifier)

    def property_names(self) -> dict[str, str]:
        """Result column → property name for every column written (chosen + always written)."""
        written = dict.fromkeys((*self.columns, *ALWAYS_WRITTEN))
        return {c: self.renames.get(c, p) for c, p in self.defaults.items() if c in written}

    def properties(
        self, row: Mapping[str, Any], *, verified_at_default: Any = None, freshness: Freshness | None = None
    ) -> dict[str, Any]:
        """The profile properties for one result row: property name → CleverTap value (None = absent).

        ``verified_at_default`` stands in for a missing verification time (a verdict decided locally,
        such as a syntax error, carries none), so freshness still sees when it was decided. The due date
        (:data:`DUE_COLUMN`) is that time plus ``freshness``'s lifetime of the row's neutral verdict (None:
        the default TTLs).
        """
        from clearout_provider.contacts import Freshness  # pyarrow and email-validator: not at DAG parse

        values = {}
        names = self.property_names()
        for column, name in names.items():
            if column == DUE_COLUMN:
                continue
            derive = DERIVED_COLUMNS.get(column)
            raw = derive(row) if derive else row.get(column)
            if column == "verified_at" and is_missing(raw):
                raw = verified_at_default
            values[name] = clevertap_value(column, raw)
        verified = parse_date_value(values[names["verified_at"]])
        lifetime = (freshness or Freshness()).lifetime(row.get("verdict")).total_seconds()
        due = None if verified is None else verified + lifetime
        values[names[DUE_COLUMN]] = clevertap_value(DUE_COLUMN, due)
        return values
