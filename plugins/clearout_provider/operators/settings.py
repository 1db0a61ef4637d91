"""Operator settings as DAGs give them: objects, dicts, or the text a template rendered to.

Every operator of this provider reads its structured settings (property mapping, unsubscribe policy,
freshness, flags) through these functions, so ``"{{ params.unsubscribe }}"`` means the same everywhere and
a typo fails with the same message before anything is spent.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import XComArg

from clearout_provider.clevertap.mapping import PropertyMapping
from clearout_provider.verification.policy import UnsubscribePolicy

if TYPE_CHECKING:
    from clearout_provider.contacts import Freshness


def native(value: Any, what: str) -> Any:
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


def _settings(value: Any, what: str) -> dict[str, Any]:
    """A setting made of named fields (a dict, or the JSON object a template rendered); empty: none."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be an object of named settings, got {value!r}")
    return dict(value)


def templated(value: Any) -> bool:
    """Whether a setting still holds a Jinja template or an upstream task's output (checked when the task
    runs, not at parse time)."""
    if isinstance(value, XComArg):
        return True
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(templated(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(templated(v) for v in value)
    return False


def resolve_mapping(value: PropertyMapping | Mapping[str, Any] | str | None) -> PropertyMapping:
    """``mapping=`` as given to an operator: a PropertyMapping, ``{"columns": [...], "renames": {...},
    "verifier": "clearout"}`` (or its JSON), or None for every Clearout column under its default name."""
    value = native(value, "mapping")
    if isinstance(value, PropertyMapping):
        return value
    settings = _settings(value, "mapping")
    unknown = sorted(set(settings) - {"columns", "renames", "verifier"})
    if unknown:
        raise ValueError(f"Unknown mapping settings {unknown}: use 'columns', 'renames' and 'verifier'")
    return PropertyMapping.from_params(
        native(settings.get("columns"), "mapping columns"),
        native(settings.get("renames"), "mapping renames"),
        verifier=str(settings.get("verifier") or "clearout"),
    )


def resolve_unsubscribe(value: UnsubscribePolicy | Mapping[str, Any] | str | None) -> UnsubscribePolicy:
    """``unsubscribe=`` as given to an operator: a policy, a dict of its fields (or its JSON), or None."""
    value = native(value, "unsubscribe")
    if isinstance(value, UnsubscribePolicy):
        return value
    settings = _settings(value, "unsubscribe")
    for key in ("hard_bounce", "disposable", "spam_trap", "enabled"):
        if key in settings:
            settings[key] = resolve_flag(settings[key], f"unsubscribe.{key}")
    return UnsubscribePolicy.from_params(settings)


def resolve_freshness(value: Freshness | Mapping[str, Any] | str | None) -> Freshness:
    """``freshness=`` as given to an operator: a Freshness, a dict of its fields (or its JSON), or None."""
    from clearout_provider.contacts import Freshness

    value = native(value, "freshness")
    if isinstance(value, Freshness):
        return value
    settings = _settings(value, "freshness")
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
