"""Metrics and low-credit alerts of the shipped nightly DAG, observed for real under ``dag.test()``.

Airflow's StatsD client sends to a UDP listener on loopback (statsd_listener.py); the witnesses the
metrics are held to are the sandbox's own credit balance, the result file and the run's report facts.
A webhook receiver on loopback (the ``clearout_alerts`` connection) shows what the failure notifier
of the shipped DAGs' ``default_args`` posts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.observability import stats
from dag_runs import shipped_dag, states, xcom
from statsd_listener import StatsdListener, statsd_metrics
from webhook_receiver import webhook_receiver

from clearout_provider.demo import sandbox_connections
from clearout_provider.report import RunFacts, finish_run
from clearout_provider.sandbox import SandboxProcess, SandboxSettings

pytestmark = pytest.mark.usefixtures("airflow_db", "data_dir")

DAG_ID = "clevertap_nightly_list_cleaning"
Factory = Callable[[SandboxSettings], SandboxProcess]
BULK_SEED, INSTANT_SEED = 1500, 60  # above / below the DAG's instant threshold of 200 addresses to verify
FAR_ABOVE = 10_000_000  # a low-credit threshold no sandbox balance reaches


def night(factory: Factory, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> SandboxProcess:
    server = factory(SandboxSettings(bulk_rate=20_000, **settings))
    for name, value in sandbox_connections(server).items():
        monkeypatch.setenv(name, value)
    return server


def ours(listener: StatsdListener, metric: str) -> float:
    """The counter under its name carrying verifier and DAG (what plain StatsD keeps)."""
    return listener.total(f"airflow.clearout.{metric}.clearout.{DAG_ID}")


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What the ``clearout_alerts`` webhook received (JSON bodies), from a receiver on loopback."""
    with webhook_receiver() as (url, received):
        monkeypatch.setenv("AIRFLOW_CONN_CLEAROUT_ALERTS", json.dumps({"conn_type": "http", "host": url}))
        yield received


def test_a_bulk_night_counts_what_the_sandbox_charged_and_the_report_says(
    sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch, webhook: list[dict[str, Any]]
) -> None:
    server = night(sandbox_factory, monkeypatch, seed_contacts=BULK_SEED)
    before = server.clearout_stats()["credits_available"]

    with statsd_metrics(monkeypatch) as listener:
        started = time.monotonic()
        dr = shipped_dag(DAG_ID).test()
        wall = time.monotonic() - started

    assert states(dr)["report"] == "success" and states(dr)["verify_bulk[0]"] == "success"
    spent = before - server.clearout_stats()["credits_available"]
    extract, verified = xcom(dr, "extract_delta"), xcom(dr, "verified")
    loaded = [xcom(dr, "load_back", i) for i in range(len(verified))]
    facts = RunFacts.from_xcom(extract, verified, loaded, dag_id=DAG_ID, run_id=dr.run_id, mode="bulk")
    decided = pd.read_parquet(verified[0]["result_path"].removeprefix("file://"))["decided_by"].value_counts()

    assert ours(listener, "credits_spent") == spent > 0
    assert listener.total("airflow.clearout.credits_spent") == spent  # the stable name (tags) too
    assert ours(listener, "verified") == decided["clearout_bulk"] > 0
    assert ours(listener, "decided_locally") == decided.get("local_syntax", 0) > 0
    assert ours(listener, "duplicates") == decided.get("local_duplicate", 0)
    assert ours(listener, "skipped_fresh") == extract["fresh"] == facts.fresh
    assert ours(listener, "unsubscribed") == facts.unsubscribed > 0
    assert ours(listener, "rejected") == facts.rejected
    assert ours(listener, "no_verdict") == 0 and ours(listener, "low_credit") == 0
    assert listener.values(f"airflow.clearout.credit_balance.clearout.{DAG_ID}") == [before]
    [list_ms] = listener.values(f"airflow.clearout.bulk_list_seconds.clearout.{DAG_ID}")
    assert 0 < list_ms < wall * 1000
    assert not any("@" in m.name for m in listener.metrics())  # no address in any metric name
    assert webhook == []  # nothing failed

    # The report task run again for the same run (a retry, a clear): its counters are not sent twice.
    with statsd_metrics(monkeypatch) as again:
        finish_run(
            {"ti": dr.get_task_instance("report"), "params": shipped_dag(DAG_ID).params.dump()},
            extract,
            verified,
            loaded,
            mode="bulk",
        )
        stats.incr("after_the_report")  # sent after anything the report sent: once it is here, all is
        deadline = time.monotonic() + 60
        while not again.metrics("airflow.after_the_report") and time.monotonic() < deadline:
            time.sleep(0.05)
    assert again.metrics("airflow.after_the_report")
    assert again.metrics("airflow.clearout.") == []


def test_warn_goes_on_below_the_accounts_threshold_and_counts_it(
    sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch, webhook: list[dict[str, Any]]
) -> None:
    server = night(sandbox_factory, monkeypatch, seed_contacts=BULK_SEED, low_credit_threshold=FAR_ABOVE)
    before = server.clearout_stats()["credits_available"]

    with statsd_metrics(monkeypatch) as listener:
        dr = shipped_dag(DAG_ID).test()  # [clearout] low_credit_action: warn (the default)

    assert states(dr)["report"] == "success"
    assert before - server.clearout_stats()["credits_available"] == ours(listener, "credits_spent") > 0
    assert ours(listener, "low_credit") == 1
    assert webhook == []


@pytest.mark.parametrize(
    ("seed", "verify_task"), [(BULK_SEED, "verify_bulk[0]"), (INSTANT_SEED, "verify_instant")]
)
def test_fail_stops_before_any_credit_is_spent_and_the_notifier_says_why(
    sandbox_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    webhook: list[dict[str, Any]],
    seed: int,
    verify_task: str,
) -> None:
    server = night(sandbox_factory, monkeypatch, seed_contacts=seed, low_credit_threshold=FAR_ABOVE)
    monkeypatch.setenv("AIRFLOW__CLEAROUT__LOW_CREDIT_ACTION", "fail")
    before = server.clearout_stats()

    with statsd_metrics(monkeypatch) as listener:
        dr = shipped_dag(DAG_ID).test()

    assert states(dr)[verify_task] == "failed" and states(dr)["report"] != "success"
    after = server.clearout_stats()
    assert after["credits_available"] == before["credits_available"]
    assert after["bulk_uploads"] == before["bulk_uploads"] == 0
    assert after["instant_calls"] == before["instant_calls"] == 0
    assert ours(listener, "low_credit") == 1
    [post] = webhook  # the verify task; the tasks after it are upstream_failed, not failed
    text = post["text"]
    assert text.startswith("Clearout credits are low: the task stopped before spending"), text
    assert f"task {verify_task.split('[')[0]}" in text and "ClearoutCreditsError" in text
    assert f"threshold is {FAR_ABOVE:,}" in text
    assert server.settings.clearout_token not in text and "secret-part" not in text
