"""A ``multipart/form-data`` request body that streams its file from disk.

``requests`` builds multipart bodies in memory (``files=`` reads the whole file), which a bulk list of
a million addresses should not cost. :class:`MultipartFileBody` is a file-like object with a known
length: requests sends it with a ``Content-Length`` and http.client reads it block by block, so only
one block of the file is in memory at a time. (aiohttp's ``FormData`` already streams files.)
"""

from __future__ import annotations

import io
import mimetypes
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

_BLOCK = 1 << 16


def content_type_for(path: Path) -> str:
    """MIME type announced for an uploaded list (Clearout accepts .csv and .xlsx)."""
    if path.suffix.lower() == ".csv":
        return "text/csv"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


class MultipartFileBody:
    """Text fields plus one file part; read it like a file, close it (or use ``with``) when done."""

    def __init__(self, fields: Mapping[str, str], file_field: str, path: Path) -> None:
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = b"".join(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n{value}\r\n'
            ).encode()
            for name, value in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(file_field)}"; '
            f'filename="{_quote(path.name)}"\r\nContent-Type: {content_type_for(path)}\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = path.stat().st_size
        self._parts: list[BinaryIO] = [io.BytesIO(head), path.open("rb"), io.BytesIO(tail)]
        #: Total body length in bytes; requests reads it (``super_len``) to send Content-Length.
        self.len = len(head) + size + len(tail)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (all of the rest when negative), in order."""
        out = bytearray()
        while self._parts and (size < 0 or len(out) < size):
            chunk = self._parts[0].read(-1 if size < 0 else size - len(out))
            if chunk:
                out += chunk
            else:
                self._parts.pop(0).close()
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_BLOCK):
            yield chunk

    def close(self) -> None:
        for part in self._parts:
            part.close()
        self._parts.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
