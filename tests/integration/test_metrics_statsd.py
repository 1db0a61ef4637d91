"""The low-credit check against a live Clearout sandbox, and the names Airflow's StatsD client puts on the
wire (a real UDP listener on loopback: tests/dags/statsd_listener.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from statsd_listener import statsd_metrics

from clearout_provider import metrics
from clearout_provider.clearout.verifier import ClearoutVerifier
from clearout_provider.credit_check import check_credits
from clearout_provider.demo import sandbox_connections
from clearout_provider.exceptions import ClearoutCreditsError
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

Factory = Callable[[SandboxSettings], SandboxProcess]
DAG = "nightly.v2"  # a dot in a DAG id must not add a level to the StatsD name


def _verifier(server: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> ClearoutVerifier:
    for name, value in sandbox_connections(server).items():
        monkeypatch.setenv(name, value)
    return ClearoutVerifier()


def test_the_accounts_threshold_warns_or_fails_and_every_read_is_a_balance_gauge(
    sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = sandbox_factory(SandboxSettings(credits=300, low_credit_threshold=1_000))
    verifier = _verifier(server, monkeypatch)
    with statsd_metrics(monkeypatch) as listener:
        funds = check_credits(verifier, 10, action="warn", verifier_name="clearout", dag_id=DAG)
        assert funds is not None and funds.available == 300
        with pytest.raises(ClearoutCreditsError, match="threshold is 1,000"):
            check_credits(verifier, 10, action="fail", verifier_name="clearout", dag_id=DAG)
    assert listener.values("airflow.clearout.credit_balance") == [300, 300]
    assert listener.values("airflow.clearout.credit_balance.clearout.nightly__v2") == [300, 300]
    assert listener.total("airflow.clearout.low_credit.clearout.nightly__v2") == 2
    assert server.clearout_stats()["credits_available"] == 300  # checking costs nothing


def test_enough_credits_and_no_threshold_is_not_low(
    sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = sandbox_factory(SandboxSettings(credits=300))
    verifier = _verifier(server, monkeypatch)
    with statsd_metrics(monkeypatch) as listener:
        funds = check_credits(verifier, 300, action="fail", verifier_name="clearout", dag_id=DAG)
        assert funds is not None and funds.available == 300
        with pytest.raises(ClearoutCreditsError, match="may spend up to 301"):
            check_credits(verifier, 301, action="fail", verifier_name="clearout", dag_id=DAG)
    assert listener.total("airflow.clearout.low_credit") == 1


def test_legacy_names_follow_airflows_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__METRICS__LEGACY_NAMES_ON", "False")
    with statsd_metrics(monkeypatch) as listener:
        metrics.bulk_list_seconds(1.5, verifier="clearout", dag_id=DAG, kind="verify")
    assert [(m.name, m.value, m.kind) for m in listener.metrics("airflow.clearout")] == [
        ("airflow.clearout.bulk_list_seconds", 1500.0, "ms")
    ]
