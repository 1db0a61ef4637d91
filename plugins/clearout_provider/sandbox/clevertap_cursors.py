"""Export cursors of the sandbox: opaque, percent-encoded like CleverTap's, and strict about it.

A cursor is ``quote(base64(magic + scrambled json([export id, position, serial])))``: it always
contains ``%2B``, ``%2F`` and ``%3D``, as real cursors do. The server sees it once-decoded, so a client
that re-encodes it (``%252B``) or decodes it first (``+`` becomes a space) sends a cursor that fails
to decode and gets HTTP 400 — the sandbox catches both classic mistakes. Each query id refers to a
compiled query and the profile count at the time the export started (the export is a snapshot of
keys; later uploads may still change the records' contents).

``not_ready`` makes every newly issued cursor (the first and each ``next_cursor``) answer "not ready"
(code 2) that many times before serving its page, as CleverTap does while it prepares a page.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass
from urllib.parse import quote

from clearout_provider.sandbox.clevertap_cql import Predicate

#: Three bytes that base64-encode to ``+/+/``, so every cursor needs percent-encoding.
_MAGIC = b"\xfb\xff\xbf"
#: Scrambles the payload so a cursor reads as opaque, as CleverTap's do (not a security measure).
_KEY = b"clevertap-sandbox-cursor"


def _scramble(data: bytes) -> bytes:
    return bytes(b ^ _KEY[n % len(_KEY)] for n, b in enumerate(data))


class CursorError(ValueError):
    """A cursor that is malformed, re-encoded, or unknown to this server."""


@dataclass(frozen=True)
class Export:
    """One started export: what matches, and how far the snapshot of keys reaches."""

    predicate: Predicate
    end: int
    batch_size: int


@dataclass(frozen=True)
class Position:
    """Where a cursor points: an export and the first key of its page."""

    export_id: int
    start: int
    cursor: str


class CursorBook:
    """Issues and resolves cursors; remembers how many "not ready" answers each one still owes."""

    def __init__(self, not_ready: int = 0) -> None:
        self.not_ready = not_ready
        self._exports: dict[int, Export] = {}
        self._ids = itertools.count(1)
        self._serials = itertools.count(1)
        self._owed: dict[str, int] = {}

    def start(self, predicate: Predicate, end: int, batch_size: int) -> int:
        """Register an export; returns its id."""
        export_id = next(self._ids)
        self._exports[export_id] = Export(predicate, end, batch_size)
        return export_id

    def export(self, export_id: int) -> Export:
        """The export a position belongs to."""
        return self._exports[export_id]

    def issue(self, export_id: int, start: int) -> str:
        """A new cursor (percent-encoded, as sent to clients) for the page starting at ``start``."""
        payload = json.dumps([export_id, start, next(self._serials)], separators=(",", ":")).encode()
        payload += b" " * ((1 - len(_MAGIC + payload)) % 3)  # length ≡ 1 (mod 3) → "==" padding
        raw = base64.b64encode(_MAGIC + _scramble(payload)).decode()
        if self.not_ready:
            self._owed[raw] = self.not_ready
        return quote(raw, safe="")

    def resolve(self, raw: str) -> Position:
        """Decode a cursor as the server receives it (once-decoded); CursorError when it is not ours."""
        try:
            data = base64.b64decode(raw, validate=True)
            if not data.startswith(_MAGIC):
                raise CursorError("Invalid cursor")
            export_id, start, _ = json.loads(_scramble(data[len(_MAGIC) :]))
        except (binascii.Error, ValueError, TypeError) as exc:
            raise CursorError(
                "Invalid cursor: pass the cursor exactly as received, without re-encoding it"
            ) from exc
        if export_id not in self._exports:
            raise CursorError("Cursor has expired or belongs to another server")
        return Position(export_id, start, raw)

    def owes_not_ready(self, position: Position) -> bool:
        """True (and one less owed) while this cursor must still answer "not ready"."""
        left = self._owed.get(position.cursor, 0)
        if left <= 0:
            return False
        if left == 1:
            del self._owed[position.cursor]
        else:
            self._owed[position.cursor] = left - 1
        return True
