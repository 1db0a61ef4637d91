"""The bulk task's buttons: the run report in the Airflow UI; the Clearout app only for a Clearout account."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from clearout_provider.operators import links
from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator
from clearout_provider.operators.links import (
    ClearoutListLink,
    RunReportLink,
    is_clearout_account,
    run_report_url,
)

TI_KEY = SimpleNamespace(dag_id="nightly", task_id="verify_bulk", run_id="manual__2026-03-01T02:00:00+00:00")


@pytest.mark.parametrize(
    ("host", "real"),
    [
        (None, True),  # empty: the hook's default, Clearout's API
        ("", True),
        ("api.clearout.io", True),
        ("https://api.clearout.io/v2", True),
        ("http://127.0.0.1:8765/clearout/v2", False),  # the sandbox in tests and `make demo`
        ("http://localhost:8765/clearout/v2", False),
        ("http://sandbox:8765/clearout/v2", False),  # the sandbox service of docker-compose
        ("https://clearout.io.example.com/v2", False),
        ("https://notclearout.io/v2", False),
    ],
)
def test_only_clearouts_own_api_host_is_a_clearout_account(host: str | None, real: bool) -> None:
    assert is_clearout_account(host) is real


def test_report_link_opens_the_run_tab_of_the_airflow_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    expected = "/dags/nightly/runs/manual__2026-03-01T02%3A00%3A00%2B00%3A00/plugin/clearout-report"
    assert run_report_url(TI_KEY.dag_id, TI_KEY.run_id) == expected
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team-a/")
    link = RunReportLink().get_link(ClearoutBulkVerifyOperator(task_id="v", source="x.csv"), ti_key=TI_KEY)
    assert link == "https://airflow.example.com/team-a" + expected


def test_bulk_verify_task_shows_the_report_then_the_list() -> None:
    names = [link.name for link in ClearoutBulkVerifyOperator.operator_extra_links]
    assert names == ["Run report", "Clearout list"]


@pytest.fixture
def list_id(monkeypatch: pytest.MonkeyPatch) -> str:
    """The list id the task pushed (XCom is the task runner's; here only its answer is stood in for)."""
    from airflow.sdk.execution_time.xcom import XCom

    monkeypatch.setattr(XCom, "get_value", lambda **kwargs: "list-42" if kwargs["key"] == "list_id" else None)
    return "list-42"


def connection(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    conn = {"conn_type": "clearout", "host": host, "password": "t" * 32}
    monkeypatch.setenv("AIRFLOW_CONN_CLEAROUT_DEFAULT", json.dumps(conn))


def list_link(**operator: Any) -> str:
    task = ClearoutBulkVerifyOperator(task_id="v", source="x.csv", **operator)
    return ClearoutListLink().get_link(task, ti_key=TI_KEY)


def test_list_link_for_a_clearout_account(monkeypatch: pytest.MonkeyPatch, list_id: str) -> None:
    connection(monkeypatch, "api.clearout.io")
    assert list_link() == links.list_url(list_id, "verify")


def test_no_list_link_for_the_sandbox_mailso_or_a_missing_connection(
    monkeypatch: pytest.MonkeyPatch, list_id: str
) -> None:
    connection(monkeypatch, "http://127.0.0.1:8765/clearout/v2")
    assert list_link() == ""
    connection(monkeypatch, "api.clearout.io")
    assert list_link(verifier="mailso") == ""
    assert list_link(clearout_conn_id="no_such_connection") == ""
