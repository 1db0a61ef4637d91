"""ClearoutFailureNotifier called as Airflow calls an on_failure_callback, against a webhook on loopback.

The whole path (a DAG's task failing on low credits, the callback, the post) is in
tests/dags/test_metrics_nightly.py; here, what it does without a connection and when the webhook fails.
"""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace
from typing import Any

import pytest
from webhook_receiver import webhook_receiver

from clearout_provider.exceptions import ClearoutCreditsError
from clearout_provider.notifications.failure import ClearoutFailureNotifier


def _context() -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="nightly", task_id="verify_bulk", run_id="manual__1", try_number=1)
    return {"ti": ti, "exception": ClearoutCreditsError("Low clearout credit balance: 5 credits left")}


def _connect(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLEAROUT_ALERTS", json.dumps({"conn_type": "http", "host": url}))


def test_the_notifier_is_registered_with_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    assert (
        "clearout_provider.notifications.failure.ClearoutFailureNotifier" in ProvidersManager().notification
    )


def test_it_posts_the_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_receiver() as (url, received):
        _connect(monkeypatch, url)
        ClearoutFailureNotifier()(_context())
    [post] = received
    assert post["text"].startswith("Clearout credits are low") and "task verify_bulk" in post["text"]


def test_without_the_connection_it_only_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CLEAROUT_ALERTS", raising=False)
    with webhook_receiver() as (_, received):
        ClearoutFailureNotifier()(_context())  # no connection: nothing raised, nothing posted
    assert received == []


@pytest.mark.parametrize("broken", ["answers 500", "refuses connections"])
def test_a_broken_webhook_never_raises_nor_logs_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    if broken == "answers 500":
        with webhook_receiver(status=500) as (url, received):
            _connect(monkeypatch, url)
            ClearoutFailureNotifier()(_context())
        assert len(received) == 1
    else:
        with socket.socket() as free:  # a port nobody listens on
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        _connect(monkeypatch, f"http://127.0.0.1:{port}/hooks/T000/B000/secret-part")
        ClearoutFailureNotifier(timeout=30)(_context())
    out = capsys.readouterr()
    assert "secret-part" not in out.out + out.err
    assert ("HTTP 500" if broken == "answers 500" else "not reached") in out.out + out.err
