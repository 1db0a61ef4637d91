"""Fixtures for the hook tests: a ``clearout`` or ``mailso`` connection pointing at a live sandbox.

Connections are configured the way users configure them without a metadata database: an
``AIRFLOW_CONN_<ID>`` environment variable holding the connection as JSON (set with monkeypatch, so
each test gets its own and nothing leaks between tests).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from clearout_helpers import Connect

from clearout_provider.hooks.clearout import ClearoutHook
from clearout_provider.hooks.mailso import MailsoHook
from clearout_provider.sandbox import SandboxProcess

#: Retry settings that keep tests fast: real backoff shape, milliseconds instead of seconds.
FAST = {"retry_backoff": 0.02, "retry_max_backoff": 0.2, "finder_poll_interval": 0.05}


@pytest.fixture
def clearout_connect(monkeypatch: pytest.MonkeyPatch) -> Connect:
    """``clearout_connect(server, token=..., host=..., extra=..., conn_id=..., **hook_kwargs)`` → a hook."""

    def connect(
        server: SandboxProcess,
        *,
        token: str | None = None,
        host: str | None = None,
        extra: dict[str, Any] | None = None,
        conn_id: str = "clearout_default",
        **hook_kwargs: Any,
    ) -> ClearoutHook:
        conn: dict[str, Any] = {
            "conn_type": "clearout",
            "host": host or server.clearout_url,
            "password": token if token is not None else server.settings.clearout_token,
        }
        if extra:
            conn["extra"] = extra
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return ClearoutHook(conn_id, **(FAST | hook_kwargs))

    return connect


@pytest.fixture
def clearout_hook(sandbox: SandboxProcess, clearout_connect: Connect) -> Iterator[ClearoutHook]:
    """A hook on the session-wide default sandbox (do not exhaust its credits or lists)."""
    hook = clearout_connect(sandbox)
    yield hook
    hook.close()


#: Mail.so hook retry settings for tests; rpm high enough that the client never paces a test's polls.
MAILSO_FAST = {"retry_backoff": 0.02, "retry_max_backoff": 0.2}


@pytest.fixture
def mailso_connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., MailsoHook]:
    """``mailso_connect(server, api_key=..., host=..., extra=..., conn_id=..., **hook_kwargs)`` → a hook."""

    def connect(
        server: SandboxProcess,
        *,
        api_key: str | None = None,
        host: str | None = None,
        extra: dict[str, Any] | None = None,
        conn_id: str = "mailso_default",
        **hook_kwargs: Any,
    ) -> MailsoHook:
        conn: dict[str, Any] = {
            "conn_type": "mailso",
            "host": host or server.mailso_url,
            "password": api_key if api_key is not None else server.settings.mailso_api_key,
            "extra": {"rpm": 6000} | (extra or {}),
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return MailsoHook(conn_id, **(MAILSO_FAST | hook_kwargs))

    return connect


@pytest.fixture
def mailso_hook(sandbox: SandboxProcess, mailso_connect: Callable[..., MailsoHook]) -> Iterator[MailsoHook]:
    """A Mail.so hook on the session-wide default sandbox (do not exhaust its credits)."""
    hook = mailso_connect(sandbox)
    yield hook
    hook.close()


@pytest.fixture
def http_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog capturing urllib3's per-request DEBUG lines."""
    caplog.set_level(logging.DEBUG, logger="urllib3")
    return caplog
