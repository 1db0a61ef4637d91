"""Fault switches that reliability tests flip while the sandbox runs (Clearout, CleverTap and Mail.so).

Every switch is also a :class:`~clearout_provider.sandbox.settings.SandboxSettings` field (and so a
``--kebab-case`` option) giving its start-up value; at run time the admin routes change it:

- ``GET /_sandbox/faults`` → the current switches as one JSON object;
- ``POST /_sandbox/faults`` with a JSON object of overrides (``{"stuck_lists": true}``) → applies them all
  or none (400 ``{"error": ...}`` naming an unknown switch or a bad value) and answers the current switches;
- ``DELETE /_sandbox/faults`` → back to the start-up values, answered like GET.

The admin routes sit at the app root, outside both emulated APIs, and require the Clearout token in any
form the Clearout routes accept (401 ``{"error": ...}`` otherwise), so nothing reaches them by accident.
Switches live in the process: a restarted sandbox starts again from its settings.

Rates are fractions 0..1 drawn from ``random.Random`` streams seeded by ``fault_seed`` (one stream per
switch that is new here, so turning one on does not shift another's sequence), hence replayable for the
same request sequence.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clearout_provider.sandbox.clearout_envelope import token_of
from clearout_provider.sandbox.settings import SandboxSettings

#: Switches that are fractions and must stay within 0..1.
RATES = frozenset(
    {
        "fault_rate_503",
        "fault_rate_524",
        "instant_malformed",
        "clevertap_fault_rate_503",
        "clevertap_fault_rate_429",
        "clevertap_reject_rate",
        "mailso_fault_rate_503",
    }
)
CLEVERTAP_PREFIX = "/clevertap"

Listener = Callable[[frozenset[str]], None]


class FaultError(ValueError):
    """An override naming no switch or holding a value the switch cannot take (answered 400)."""


@dataclass
class Faults:
    """The current value of every runtime switch (meanings: the settings field of the same name)."""

    fault_rate_503: float = 0.0
    fault_rate_524: float = 0.0
    instant_malformed: float = 0.0
    upload_without_list_id: bool = False
    progress_status_override: str = ""
    stuck_lists: bool = False
    download_reset_after_bytes: int = 0
    download_resets: int = 0
    result_url_ttl: float = 300.0
    clevertap_down: bool = False
    clevertap_down_paths: tuple[str, ...] = ()
    clevertap_fault_rate_503: float = 0.0
    clevertap_fault_rate_429: float = 0.0
    clevertap_reject_rate: float = 0.0
    mailso_fault_rate_503: float = 0.0
    mailso_lost_batch_answers: int = 0
    _listeners: list[Listener] = dataclasses.field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> Faults:
        """The start-up values: each switch from the settings field of the same name."""
        return cls(**{name: getattr(settings, name) for name in SWITCHES})

    def as_dict(self) -> dict[str, Any]:
        """The switches as JSON values (the path prefixes as a list)."""
        return {name: _jsonable(getattr(self, name)) for name in SWITCHES}

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(changed names)`` after each update that changed something (e.g. to hold lists)."""
        self._listeners.append(listener)

    def update(self, overrides: Mapping[str, Any]) -> frozenset[str]:
        """Apply every override or none (:class:`FaultError`); returns the names whose value changed."""
        values = {name: _coerce(name, value) for name, value in overrides.items()}
        changed = frozenset(name for name, value in values.items() if getattr(self, name) != value)
        for name, value in values.items():
            setattr(self, name, value)
        if changed:
            for listener in self._listeners:
                listener(changed)
        return changed

    def take_download_reset(self) -> int | None:
        """Bytes after which this download must be cut (counting one reset down), None when it behaves."""
        if self.download_resets <= 0:
            return None
        self.download_resets -= 1
        return self.download_reset_after_bytes

    def take_lost_batch_answer(self) -> bool:
        """Whether this batch creation's answer must be lost (counting one down)."""
        if self.mailso_lost_batch_answers <= 0:
            return False
        self.mailso_lost_batch_answers -= 1
        return True

    def clevertap_is_down(self, path: str) -> bool:
        """Whether a CleverTap request to ``path`` (the full URL path) must answer 503."""
        relative = path.removeprefix(CLEVERTAP_PREFIX)
        return self.clevertap_down or any(
            relative.startswith(prefix.removeprefix(CLEVERTAP_PREFIX)) for prefix in self.clevertap_down_paths
        )


#: The runtime switches, in declaration order; each is also a settings field.
SWITCHES: tuple[str, ...] = tuple(f.name for f in fields(Faults) if not f.name.startswith("_"))
_HINTS = typing.get_type_hints(Faults)


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, value: Any) -> Any:
    """``value`` as switch ``name`` holds it, or :class:`FaultError` saying what the switch accepts."""
    if name not in _HINTS or name.startswith("_"):
        raise FaultError(f"unknown fault switch {name!r}; known: {', '.join(SWITCHES)}")
    kind = _HINTS[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise FaultError(f"{name} must be true or false, not {value!r}")
        return value
    if kind is str:
        if value is not None and not isinstance(value, str):
            raise FaultError(f"{name} must be a string (or null for off), not {value!r}")
        return value or ""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FaultError(f"{name} must be an integer >= 0, not {value!r}")
        return value
    if kind is float:
        return _coerce_float(name, value)
    return _coerce_paths(name, value)


def _coerce_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{name} must be a number, not {value!r}")
    if name in RATES and not 0 <= value <= 1:
        raise FaultError(f"{name} is a fraction and must be within 0..1, not {value!r}")
    return float(value)


def _coerce_paths(name: str, value: Any) -> tuple[str, ...]:
    """A list of path prefixes, or one comma-separated string of them (the command-line form)."""
    if isinstance(value, str):
        value = value.split(",")
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise FaultError(f"{name} must be a list of path prefixes such as ['/1/upload'], not {value!r}")
    prefixes = tuple(item.strip() for item in value if item.strip())
    if not all(prefix.startswith("/") for prefix in prefixes):
        raise FaultError(f"{name}: every prefix must start with '/', not {value!r}")
    return prefixes


def parse_paths(text: str) -> tuple[str, ...]:
    """The command line's comma-separated ``--clevertap-down-paths`` as a tuple of prefixes."""
    return _coerce_paths("clevertap_down_paths", text)


def build_router(faults: Faults, settings: SandboxSettings) -> APIRouter:
    """``GET``/``POST``/``DELETE /_sandbox/faults`` (mount at the app root; see the module docstring)."""
    router = APIRouter()
    start_values = Faults.from_settings(settings).as_dict()

    def denied(request: Request) -> JSONResponse | None:
        token = token_of(request.headers.get("authorization", ""))
        if hmac.compare_digest(token.encode(), settings.clearout_token.encode()):
            return None
        return JSONResponse({"error": "the Clearout token is required (Authorization header)"}, 401)

    async def current(request: Request) -> JSONResponse:
        return denied(request) or JSONResponse(faults.as_dict())

    async def override(request: Request) -> JSONResponse:
        problem = denied(request)
        if problem:
            return problem
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON object of switch overrides"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object of switch overrides"}, 400)
        try:
            faults.update(body)
        except FaultError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(faults.as_dict())

    async def reset(request: Request) -> JSONResponse:
        problem = denied(request)
        if problem:
            return problem
        faults.update(start_values)
        return JSONResponse(faults.as_dict())

    router.add_api_route("/_sandbox/faults", current, methods=["GET"], include_in_schema=False)
    router.add_api_route("/_sandbox/faults", override, methods=["POST"], include_in_schema=False)
    router.add_api_route("/_sandbox/faults", reset, methods=["DELETE"], include_in_schema=False)
    return router
