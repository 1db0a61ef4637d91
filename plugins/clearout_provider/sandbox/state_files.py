"""Small JSON state files of the sandbox: written atomically, read back with a clear error when unusable.

A write goes to a temporary file beside the target and is moved over it with ``os.replace`` (atomic on
POSIX), so a process killed at any instant — SIGKILL included — leaves either the old file or the new one,
never a torn one; a temporary file left behind by such a kill is ignored and removed at the next start.
There is no ``fsync``: a killed *process* loses nothing the kernel already holds, and guarding against
a power cut would cost milliseconds per request on a busy disk for no test the sandbox serves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


class SandboxStateError(RuntimeError):
    """The state folder holds something the sandbox cannot resume from; the message says what and where."""


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically (see the module docstring)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    with open(temp, "w", encoding="utf-8") as out:
        json.dump(data, out, separators=(",", ":"))
    os.replace(temp, path)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or :class:`SandboxStateError` naming the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise unreadable(path, exc) from exc
    if not isinstance(data, dict):
        raise unreadable(path, "not a JSON object")
    return data


def unreadable(path: Path, problem: object) -> SandboxStateError:
    """The error for a state file that cannot be resumed from, with the way out."""
    return SandboxStateError(
        f"unreadable sandbox state file {path}: {problem}. Delete it (or the whole state folder) to start "
        "afresh, or point --state-dir elsewhere."
    )


def remove_leftovers(folder: Path) -> None:
    """Delete temporary files that a killed process left half-written (never read: see the docstring)."""
    for temp in folder.glob(f".*{TEMP_SUFFIX}"):
        temp.unlink(missing_ok=True)
