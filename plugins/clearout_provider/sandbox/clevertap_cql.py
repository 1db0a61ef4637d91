"""The subset of CleverTap's query language (CQL) the sandbox's profile export understands.

A query is ``{"event_name": ..., "from": YYYYMMDD, "to": YYYYMMDD,
"common_profile_properties": {"profile_fields": [{"name": ..., "operator": ..., "value": ...}]}}``;
every part is optional and all parts must match (AND). Decisions where CleverTap's docs are silent:

* Field names ``Email``, ``Name`` and ``Identity`` (any case) read the system fields; ``Email`` falls
  back to ``profileData.Email``. Every other name reads ``profileData`` verbatim.
* ``exists`` means present and not an empty string. String comparisons are case-sensitive.
* ``equals`` / ``not_equals`` take a value or a list of values (any of them).
* Comparisons (``greater_than``, ``less_than``, ``greater_than_equals``, ``less_than_equals``,
  ``between`` with ``[low, high]`` inclusive) are numeric for numbers; for a date property (a
  ``"$D_<epoch>"`` value) the query value may be ``"$D_<epoch>"``, epoch seconds, or a ``YYYYMMDD``
  int/string (midnight UTC). A profile without the property, or whose value cannot be compared (text
  that is not a number), never matches a comparison; a query value that is neither a number nor a
  date is an error.
* Booleans compare with ``"True"``/``"False"`` (or JSON booleans).
* An event filter matches profiles whose [first_seen, last_seen] of that event overlaps the range;
  ``to`` after today, ``from`` after ``to`` or a missing bound is an error. Without an event every
  profile is a candidate (the sandbox treats all profiles as active in the last 365 days).

Anything else (unknown keys or operators) is rejected with a message, so a test can never silently
run a filter the sandbox ignored.

A predicate reads a :class:`Profile` (a field lookup and the events), not a whole record, and tests its
conditions in the query's order, stopping at the first that fails: the store answers a lookup of a
property an upload wrote from its overlay without generating the seeded profile, so a delta night's
query ("verified at" first) scans a million profiles in seconds (:meth:`ProfileStore.view`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol

from clearout_provider.clevertap_rules import parse_date_value

Record = Mapping[str, Any]


class Profile(Protocol):
    """What a query reads of one profile."""

    def value(self, name: str) -> Any:
        """Field ``name`` as :func:`field_value` reads it from the profile's record (or ``MISSING``)."""
        ...

    def events(self) -> Mapping[str, Mapping[str, int]]:
        """Event name → its ``count``, ``first_seen`` and ``last_seen``."""
        ...


Predicate = Callable[[Profile], bool]

_SYSTEM_FIELDS = {"email", "name", "identity"}
_COMPARISONS = {"greater_than", "less_than", "greater_than_equals", "less_than_equals", "between"}
_OPERATORS = {
    "equals",
    "not_equals",
    "contains",
    "does_not_contain",
    "exists",
    "does_not_exist",
} | _COMPARISONS
_MISSING = object()
#: What :meth:`Profile.value` returns for a field the profile does not have.
MISSING = _MISSING


class CqlError(ValueError):
    """The query is malformed or uses something the sandbox does not emulate (answered as HTTP 400)."""


def field_value(record: Record, name: str) -> Any:
    """The value of field ``name`` in an export record, or ``_MISSING``."""
    key = name.lower()
    data = record.get("profileData") or {}
    if key in _SYSTEM_FIELDS:
        value = record.get(key)
        if value in (None, "") and key == "email":
            value = data.get("Email")
        return _MISSING if value in (None, "") else value
    value = data.get(name, _MISSING)
    return _MISSING if value in (None, "") else value


class RecordProfile:
    """A :class:`Profile` over an export record (as ``profile.json`` and the export return it)."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def value(self, name: str) -> Any:
        return field_value(self.record, name)

    def events(self) -> Mapping[str, Mapping[str, int]]:
        return self.record.get("events") or {}


def yyyymmdd_epoch(value: object) -> int:
    """``20250131`` (int or str) → epoch seconds at midnight UTC; CqlError when not such a date."""
    text = str(value)
    if not (text.isdigit() and len(text) == 8):
        raise CqlError(f"Expected a date as YYYYMMDD, got {value!r}")
    try:
        day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise CqlError(f"Invalid date {value!r}: {exc}") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _as_epoch(value: object) -> int:
    """A query value for a date comparison → epoch seconds."""
    parsed = parse_date_value(value)
    if parsed is not None:
        return parsed
    if isinstance(value, int | str) and len(str(value)) == 8 and str(value).isdigit():
        return yyyymmdd_epoch(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    raise CqlError(
        f"Cannot compare a date property with {value!r}: use $D_<epoch>, epoch seconds or YYYYMMDD"
    )


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if str(value) in ("True", "true", "False", "false"):
        return str(value).lower() == "true"
    raise CqlError(f"Boolean properties compare with 'True' or 'False', got {value!r}")


def _coerce(stored: Any, value: object) -> tuple[Any, Any]:
    """Bring a stored value and a query value to comparable types (dates, booleans, numbers, strings)."""
    stored_date = parse_date_value(stored)
    if stored_date is not None:
        return stored_date, _as_epoch(value)
    if isinstance(stored, bool):
        return stored, _as_bool(value)
    if isinstance(stored, int | float):
        try:
            return stored, float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise CqlError(f"Cannot compare a number with {value!r}") from None
    return str(stored), str(value)


def _compare(op: str, stored: Any, value: Any) -> bool:
    if isinstance(stored, str) and parse_date_value(stored) is None:
        if not _numeric(stored):
            raise CqlError(f"{stored!r} is neither a number nor a date")
        stored = float(stored)
    if op == "between":
        s, low = _coerce(stored, value[0])
        _, high = _coerce(stored, value[1])
        return low <= s <= high
    s, v = _coerce(stored, value)
    try:
        return {
            "greater_than": s > v,
            "less_than": s < v,
            "greater_than_equals": s >= v,
            "less_than_equals": s <= v,
        }[op]
    except TypeError:
        raise CqlError(f"Cannot compare {stored!r} with {value!r}") from None


def _equals_any(stored: Any, value: object) -> bool:
    options = value if isinstance(value, list) else [value]
    for option in options:
        s, v = _coerce(stored, option)
        if s == v:
            return True
    return False


def _check_comparable(op: str, value: object) -> None:
    """Reject, up front, comparison values no property type could be compared with."""
    if op != "between":
        values = [value]
    elif isinstance(value, list) and len(value) == 2:
        values = value
    else:
        raise CqlError("between takes a [low, high] pair")
    for v in values:
        if isinstance(v, bool) or not (
            isinstance(v, int | float) or parse_date_value(v) is not None or _numeric(v)
        ):
            raise CqlError(f"{op} compares numbers or dates ($D_<epoch>, epoch seconds, YYYYMMDD), not {v!r}")


def _numeric(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _field_predicate(spec: object) -> Predicate:
    if not isinstance(spec, Mapping) or "name" not in spec or "operator" not in spec:
        raise CqlError("Each profile field needs 'name' and 'operator'")
    name, op = str(spec["name"]), str(spec["operator"])
    if op not in _OPERATORS:
        raise CqlError(f"Unsupported operator {op!r}; the sandbox knows {', '.join(sorted(_OPERATORS))}")
    if op not in ("exists", "does_not_exist") and "value" not in spec:
        raise CqlError(f"Operator {op!r} on {name!r} needs a 'value'")
    value = spec.get("value")
    if op in _COMPARISONS:
        _check_comparable(op, value)

    def test(profile: Profile) -> bool:
        try:
            return matches(profile)
        except CqlError:  # a property whose type does not fit the value (e.g. text vs number)
            return False

    def matches(profile: Profile) -> bool:
        stored = profile.value(name)
        if op == "exists":
            return stored is not _MISSING
        if op == "does_not_exist":
            return stored is _MISSING
        if stored is _MISSING:
            return op in ("not_equals", "does_not_contain")
        if op == "equals":
            return _equals_any(stored, value)
        if op == "not_equals":
            return not _equals_any(stored, value)
        if op == "contains":
            return str(value) in str(stored)
        if op == "does_not_contain":
            return str(value) not in str(stored)
        return _compare(op, stored, value)

    return test


def _event_predicate(query: Mapping[str, Any], today: date) -> Predicate:
    name = query["event_name"]
    if "from" not in query or "to" not in query:
        raise CqlError("An event query needs both 'from' and 'to' (YYYYMMDD)")
    start, end = yyyymmdd_epoch(query["from"]), yyyymmdd_epoch(query["to"])
    if end > int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()):
        raise CqlError("Invalid date range: 'to' cannot be in the future")
    if start > end:
        raise CqlError("Invalid date range: 'from' is after 'to'")
    end += 86_399

    def test(profile: Profile) -> bool:
        seen = profile.events().get(name)
        if not seen:
            return False
        return seen["first_seen"] <= end and seen["last_seen"] >= start

    return test


def compile_query(query: object, today: date) -> Predicate:
    """A predicate over export records for ``query``; CqlError for anything malformed or unsupported."""
    if not isinstance(query, Mapping):
        raise CqlError("The query must be a JSON object")
    unknown = set(query) - {"event_name", "from", "to", "common_profile_properties"}
    if unknown:
        raise CqlError(f"Unsupported query keys for the sandbox: {', '.join(sorted(unknown))}")
    tests: list[Predicate] = []
    if "event_name" in query:
        tests.append(_event_predicate(query, today))
    elif "from" in query or "to" in query:
        raise CqlError("'from'/'to' need an 'event_name'")
    common = query.get("common_profile_properties")
    if common is not None:
        if not isinstance(common, Mapping) or set(common) - {"profile_fields"}:
            raise CqlError("common_profile_properties supports only 'profile_fields' in the sandbox")
        fields = common.get("profile_fields") or []
        if not isinstance(fields, list):
            raise CqlError("profile_fields must be a list")
        tests.extend(_field_predicate(spec) for spec in fields)
    return lambda profile: all(test(profile) for test in tests)
