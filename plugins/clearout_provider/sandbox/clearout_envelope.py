"""Clearout's answer envelope, its error catalogue and its Joi-style request validation, in one place.

Success is ``{"status":"success","data":{...}}``; a failure is
``{"status":"failed","error":{"code":N,"message":...[,"additional_info":{...}]}}`` and, as on the real
service, MOST business failures travel with HTTP 200. Request validation fails the way Clearout's Joi
schemas do (Joi v15 wording: the fact sheet's ``any.empty``): HTTP 400, no code, one reason per field.
Handlers raise :class:`ClearoutError`; the router turns it into the response. :func:`token_of` reads the
token out of any Authorization form Clearout's clients send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

#: code → (HTTP status, message) for every error code the sandbox emits with a fixed text.
ERRORS: dict[int, tuple[int, str]] = {
    1000: (401, "Invalid API Token, please generate new token"),
    1001: (
        200,
        (
            "You have reached the maximum number of bulk verify requests, please try after the existing "
            "request completes or contact us@clearout.io"
        ),
    ),
    1002: (402, "You have exhausted your credits, please add additional credits to continue"),
    1004: (
        200,
        (
            "Oops!!! Unable to determine email address in your list, please ensure email addresses are "
            'present or explicitly specified in a header row with one of the column value either as "Email" '
            'or "Emails" or "Email address" or "Emailaddress"'
        ),
    ),
    1007: (200, "Result file got expired, contact us@clearout.io"),
    1008: (200, "You are not authorized to access this resource"),
    1017: (200, "You have reached daily verify limit, please try next day or contact us@clearout.io"),
    1029: (200, "List is not available"),
    1083: (
        200,
        (
            "You have reached the maximum number of email finder bulk requests, please try after the "
            "existing request completes or contact us@clearout.io"
        ),
    ),
    1088: (200, "Unsupported characters in name fields"),
    1099: (402, "You do not have sufficient credits for instant email finder"),
    1100: (200, "Invalid file type"),
    1104: (200, "Invalid queue ID"),
    1116: (200, "List is not in the cancellable stage"),
    2043: (200, "Duplicate file not allowed, set ignore_duplicate_file=true to allow duplicate file"),
}


class ClearoutError(Exception):
    """A failure answered with Clearout's envelope. ``code`` is None for Joi 400s and timeouts (524)."""

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        http_status: int = 200,
        additional_info: Mapping[str, Any] | None = None,
        reasons: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.additional_info = dict(additional_info) if additional_info is not None else None
        self.reasons = list(reasons) if reasons is not None else None

    @classmethod
    def of(cls, code: int, message: str | None = None, **additional_info: Any) -> ClearoutError:
        """The catalogued error ``code`` (its HTTP status and text unless ``message`` overrides it)."""
        http_status, text = ERRORS[code]
        return cls(code, message or text, http_status=http_status, additional_info=additional_info or None)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {}
        if self.code is not None:
            error["code"] = self.code
        error["message"] = self.message
        if self.additional_info is not None:
            error["additional_info"] = self.additional_info
        if self.reasons is not None:
            error["reasons"] = self.reasons
        return {"status": "failed", "error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.http_status)


def token_of(header: str) -> str:
    """The token of any accepted Authorization form: ``<t>``, ``Bearer <t>``, ``Bearer:<t>``."""
    value = header.strip()
    return value[7:].strip() if value[:7].lower() in ("bearer:", "bearer ") else value


def success(data: Mapping[str, Any]) -> JSONResponse:
    """``{"status":"success","data":data}`` with HTTP 200."""
    return JSONResponse({"status": "success", "data": dict(data)})


def timeout_error(resource_name: str, resource_value: str, queue_id: str | None = None) -> ClearoutError:
    """HTTP 524; the finder adds the queue id to fetch the result later (texts as each API documents them)."""
    info: dict[str, Any] = {"resource_name": resource_name, "resource_value": resource_value}
    if queue_id is not None:
        info["queue_id"] = queue_id
    message = "Timeout occurred" if resource_name == "email_finder" else "Timeout Occurred"
    return ClearoutError(None, message, http_status=524, additional_info=info)


UNSUPPORTED_MEDIA_TYPE = ClearoutError(
    None, "Invalid Content Type. Must be application/json", http_status=415
)


@dataclass
class Validator:
    """Reads and checks the fields of one request location, collecting Joi-style reasons.

    ``Validator(body, "body").string("email")`` returns the value or records why it is unusable; call
    :meth:`check` once all fields are read to raise the 400 listing every bad field.
    """

    values: Mapping[str, Any]
    location: str
    reasons: list[dict[str, Any]] | None = None

    def _fail(self, name: str, message: str, kind: str) -> None:
        reason = {
            "field": [name],
            "location": self.location,
            "messages": [f'"{name}" {message}'],
            "types": [kind],
        }
        self.reasons = [*(self.reasons or []), reason]

    def string(self, name: str, *, required: bool = True) -> str:
        value = self.values.get(name)
        if value is None:
            if required:
                self._fail(name, "is required", "any.required")
            return ""
        if not isinstance(value, str):
            self._fail(name, "must be a string", "string.base")
            return ""
        if not value.strip() and required:
            self._fail(name, "is not allowed to be empty", "any.empty")
        return value

    def file(self, name: str) -> Any:
        """An uploaded file part (a plain form field of that name does not count)."""
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            self._fail(name, "is required", "any.required")
            return None
        return value

    def number(
        self, name: str, *, default: int, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.values.get(name)
        if value is None:
            return default
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number):  # not a number at all (Joi converts numeric strings, as here)
            self._fail(name, "must be a number", "number.base")
        elif minimum is not None and number < minimum:
            self._fail(name, f"must be larger than or equal to {minimum}", "number.min")
        elif maximum is not None and number > maximum:
            self._fail(name, f"must be less than or equal to {maximum}", "number.max")
        else:
            return int(number)
        return default

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self._fail(name, "must be a boolean", "boolean.base")
        return default

    def choice(self, name: str, choices: Sequence[str], *, default: str) -> str:
        value = self.values.get(name)
        if value is None:
            return default
        if value not in choices:
            self._fail(name, f"must be one of [{', '.join(choices)}]", "any.allowOnly")
            return default
        return value

    def check(self) -> None:
        """Raise the 400 "validation failed" naming every bad field, if any."""
        if self.reasons:
            raise ClearoutError(None, "validation failed", http_status=400, reasons=self.reasons)


def not_an_object(location: str = "body") -> ClearoutError:
    """The Joi 400 for a body that is not a JSON object (or not JSON at all)."""
    reason = {
        "field": [],
        "location": location,
        "messages": ['"value" must be an object'],
        "types": ["object.base"],
    }
    return ClearoutError(None, "validation failed", http_status=400, reasons=[reason])
