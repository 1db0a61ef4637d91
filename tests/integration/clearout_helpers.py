"""Helpers of the ClearoutHook integration tests: sandbox witnesses and test files."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

#: ``connect(server, token=..., host=..., extra=..., conn_id=..., **hook_kwargs)`` (the conftest fixture).
Connect = Callable[..., ClearoutHook]


def expire_list(server: SandboxProcess, list_id: str) -> None:
    """Make a list's result expire now, as Clearout does after 30 days."""
    resp = requests.post(
        f"{server.clearout_url}/_sandbox/expire",
        json={"list_id": list_id},
        headers={"Authorization": server.settings.clearout_token},
        timeout=10,
    )
    resp.raise_for_status()


def sent_requests(caplog: pytest.LogCaptureFixture, path: str) -> list[int]:
    """HTTP statuses of the requests urllib3 logged for the API path ``path`` (query ignored).

    They are the client-side witness of each attempt.
    """
    pattern = re.compile(rf'"(?:GET|POST) [^" ]*{re.escape(path)}(?:\?[^" ]*)? HTTP/1\.1" (\d{{3}})')
    return [
        int(m.group(1))
        for r in caplog.records
        if r.name.startswith("urllib3") and (m := pattern.search(r.getMessage()))
    ]


def write_csv(folder: Path, rows: list[str], *, header: str = "Email", name: str | None = None) -> Path:
    """A CSV list with a unique name (Clearout flags same name + size as a duplicate upload)."""
    path = folder / (name or f"list-{uuid.uuid4().hex[:10]}.csv")
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


#: Sandbox settings of the tests that need their own server: compressed time, no waiting on limits.
def fast_settings(**overrides: Any) -> SandboxSettings:
    return SandboxSettings(**({"time_scale": 0.01, "finder_search_ms": 2_000} | overrides))
