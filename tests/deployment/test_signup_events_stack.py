"""Sign-ups published on Redis pub/sub start DAG runs through a REAL triggerer (signup_events.py).

An Airflow stack (api-server, dag-processor, scheduler, triggerer; LocalExecutor on SQLite) runs as
separate processes (tests/deployment/airflow_stack.py) with the Redis connection only as
``AIRFLOW_CONN_REDIS_DEFAULT``. Each test has its own DAG scheduled on ``signup_asset(channel=...)``
with a channel unique to this run (tests/deployment/dags/dag_signup_events.py); its task writes the
sign-ups it extracted to a file.

Waiting: the watcher is subscribed once Redis counts a subscriber on the channel (``PUBSUB NUMSUB``);
messages published before that are lost (pub/sub keeps nothing), so every test waits for it first.
Every wait is a poll under a generous ceiling. The burst test must also conclude that nothing MORE
arrives: it waits for a quiet window (:data:`SETTLE_SECONDS` without a new run) after the watcher has
subscribed again, which is a measurement window, not a readiness wait.

The measured numbers (subscription delay, publish-to-done latency, how much of a burst arrives) are
printed (``pytest -s``) and recorded in the module docstring of clearout_provider.signup_events.
Without Redis the tests skip, except under ``CI=true`` (tests/deployment/local_services.py).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow_stack import RUN_TIMEOUT, AirflowStack
from local_services import REDIS_HOST, REDIS_PORT, redis_client, subscribers

TOKEN = secrets.token_hex(4)
DAGS = {
    "signup_events_single": f"test.{TOKEN}.single",
    "signup_events_burst": f"test.{TOKEN}.burst",
    "signup_events_bad": f"test.{TOKEN}.bad",
}
BURST = 5
#: The burst test's quiet window: no new run for this long (after the watcher is back) means the rest of
#: the burst is not coming. Several triggerer + scheduler loops (about 1 s each, slower when busy).
SETTLE_SECONDS = 30.0
#: Between two probe messages while waiting for a restarted watcher to take one.
PROBE_EVERY = 3.0
#: Ceiling of the watcher's subscription after unpausing (idle: a few seconds).
SUBSCRIBE_TIMEOUT = 300.0
TEST_TIMEOUT = 1800


@pytest.fixture(scope="module")
def redis() -> Any:
    return redis_client()


@pytest.fixture(scope="module")
def stack(redis: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("signup-stack")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(Path(__file__).parent / "dags" / "dag_signup_events.py", dags)
    connection = {"conn_type": "redis", "host": REDIS_HOST, "port": REDIS_PORT}
    airflow = AirflowStack(
        home=root / "airflow",
        dags_folder=dags,
        extra_env={
            "AIRFLOW_CONN_REDIS_DEFAULT": json.dumps(connection),
            "SIGNUP_TEST_CHANNELS": json.dumps(DAGS),
            "SIGNUP_TEST_OUTPUT": str(root / "output"),
        },
    )
    try:
        yield airflow.start(expect_dags=tuple(DAGS))
    finally:
        airflow.stop()


def output(stack: AirflowStack, dag_id: str) -> list[dict[str, Any]]:
    """What the DAG's runs recorded so far, oldest first."""
    folder = stack.home.parent / "output" / dag_id
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    return [json.loads(p.read_text()) for p in files]


def runs(stack: AirflowStack, dag_id: str) -> list[dict[str, Any]]:
    return stack.get(f"/dags/{dag_id}/dagRuns")["dag_runs"]


def unpause_and_wait_for_watcher(stack: AirflowStack, redis: Any, dag_id: str) -> float:
    """Unpause ``dag_id`` (REST, as the UI does); return the seconds until the triggerer subscribed."""
    stack.unpause(dag_id)
    started = time.monotonic()
    stack.wait_until(
        f"the watcher of {dag_id} subscribed to {DAGS[dag_id]}",
        lambda: subscribers(redis, DAGS[dag_id]) >= 1,
        SUBSCRIBE_TIMEOUT,
    )
    return time.monotonic() - started


def restart_gaps(stack: AirflowStack) -> list[float]:
    """Seconds from each "Trigger fired event" to the same trigger's next start, from the triggerer log:
    how long a watcher is not subscribed after each message."""
    line = re.compile(
        r"^(\S+Z) .*?(Trigger fired event|trigger ID (\d+) starting)(?:.*?name='ID (\d+)')?", re.M
    )
    fired: dict[str, datetime] = {}
    gaps = []
    for at, what, started_id, fired_id in line.findall(stack.log("triggerer")):
        when = datetime.fromisoformat(at)
        if what == "Trigger fired event" and fired_id:
            fired[fired_id] = when
        elif started_id and started_id in fired:
            gaps.append((when - fired.pop(started_id)).total_seconds())
    return gaps


def all_runs_succeeded(stack: AirflowStack, dag_id: str, count: int) -> bool:
    found = runs(stack, dag_id)
    assert not [r for r in found if r["state"] == "failed"], (found, stack.log("scheduler")[-3000:])
    return len(found) >= count and all(r["state"] == "success" for r in found)


def recorded_identities(stack: AirflowStack, dag_id: str) -> list[str]:
    return [s["identity"] for record in output(stack, dag_id) for s in record["signups"]]


def probe_until_received(stack: AirflowStack, redis: Any, dag_id: str, identity: str) -> int:
    """Publish ``identity`` every :data:`PROBE_EVERY` s until a run records it; return how many were sent.

    For a watcher that restarts after each message: it is subscribed again only some time later, and
    a message published in between is lost, so the probe is repeated (the first copy that lands wins).
    """
    sent = 0
    last = 0.0

    def received() -> bool:
        nonlocal sent, last
        if identity in recorded_identities(stack, dag_id):
            return True
        if time.monotonic() - last >= PROBE_EVERY and subscribers(redis, DAGS[dag_id]) >= 1:
            redis.publish(DAGS[dag_id], json.dumps({"identity": identity}))
            sent += 1
            last = time.monotonic()
        return False

    stack.wait_until(f"{identity} recorded by {dag_id}", received, RUN_TIMEOUT)
    return sent


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_published_signup_runs_the_dag_with_it(stack: AirflowStack, redis: Any) -> None:
    dag_id = "signup_events_single"
    subscribe_s = unpause_and_wait_for_watcher(stack, redis, dag_id)

    published_at = time.time()
    receivers = redis.publish(DAGS[dag_id], json.dumps({"identity": "user-1", "email": "ann@example.com"}))
    assert receivers >= 1
    stack.wait_until("the sign-up run", lambda: all_runs_succeeded(stack, dag_id, 1), RUN_TIMEOUT)
    stack.wait_until("the run's record", lambda: len(output(stack, dag_id)) == 1)

    [record] = output(stack, dag_id)
    [signup] = record["signups"]
    assert signup["identity"] == "user-1" and signup["email"] == "ann@example.com"
    assert signup["channel"] == DAGS[dag_id] and signup["received_at"]
    assert record["rejected"] == [] and record["events"] == 1
    latency = record["done_at"] - published_at
    print(
        f"\nsignup watcher: subscribed {subscribe_s:.1f} s after unpause; "
        f"publish -> task done {latency:.1f} s"
    )
    # The run's task log masks the address (what extract_signups logs is counts only; nothing raw).
    [run] = runs(stack, dag_id)
    assert "ann@example.com" not in stack.task_log(dag_id, run["dag_run_id"], "record")


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_burst_of_signups_and_what_arrives(stack: AirflowStack, redis: Any) -> None:
    """Measures, and pins the invariants only: at least one of the burst arrives, none twice, every run
    succeeds, and the watcher takes messages again afterwards. How many arrive is printed."""
    dag_id = "signup_events_burst"
    subscribe_s = unpause_and_wait_for_watcher(stack, redis, dag_id)
    print(f"\nsignup watcher: subscribed {subscribe_s:.1f} s after unpause")

    burst = [f"burst-{i}" for i in range(BURST)]
    for identity in burst:
        redis.publish(DAGS[dag_id], json.dumps({"identity": identity, "email": f"{identity}@example.com"}))
    stack.wait_until("a run of the burst", lambda: all_runs_succeeded(stack, dag_id, 1), RUN_TIMEOUT)

    quiet_since = time.monotonic()
    seen_runs = len(runs(stack, dag_id))

    def settled() -> bool:
        nonlocal quiet_since, seen_runs
        now_runs = len(runs(stack, dag_id))
        if now_runs != seen_runs:
            seen_runs, quiet_since = now_runs, time.monotonic()
        return (
            subscribers(redis, DAGS[dag_id]) >= 1
            and time.monotonic() - quiet_since >= SETTLE_SECONDS
            and all_runs_succeeded(stack, dag_id, seen_runs)
            and len(output(stack, dag_id)) == seen_runs
        )

    stack.wait_until("the burst to settle", settled, RUN_TIMEOUT)
    arrived = recorded_identities(stack, dag_id)
    events = sum(record["events"] for record in output(stack, dag_id))
    print(
        f"\nsignup watcher: burst of {BURST}: {events} asset event(s), {seen_runs} run(s), arrived {arrived}"
    )
    assert 1 <= len(arrived) <= BURST and len(set(arrived)) == len(arrived)
    assert set(arrived) <= set(burst)

    sent = probe_until_received(stack, redis, dag_id, "after-burst")
    stack.wait_until("every run to succeed", lambda: all_runs_succeeded(stack, dag_id, seen_runs + 1))
    gaps = restart_gaps(stack)
    print(
        f"signup watcher: after the burst, took a message again ({sent} probe(s) published); "
        f"watcher restart gaps after a message: {', '.join(f'{g:.1f}' for g in gaps)} s"
    )


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_malformed_and_non_utf8_messages_never_fail_a_run(stack: AirflowStack, redis: Any) -> None:
    dag_id = "signup_events_bad"
    unpause_and_wait_for_watcher(stack, redis, dag_id)

    redis.publish(DAGS[dag_id], '{"identity": "x", "email": "bob@example.com"')  # cut short
    stack.wait_until("the malformed message's run", lambda: all_runs_succeeded(stack, dag_id, 1), RUN_TIMEOUT)
    stack.wait_until("its record", lambda: len(output(stack, dag_id)) == 1)
    [record] = output(stack, dag_id)
    assert record["signups"] == []
    [[reason, preview]] = record["rejected"]
    assert reason == "not valid JSON" and "b***@example.com" in preview and "bob@" not in preview

    # Not UTF-8: the Redis trigger's own decode raises in the triggerer; the watcher must come back.
    stack.wait_until("the watcher back", lambda: subscribers(redis, DAGS[dag_id]) >= 1, SUBSCRIBE_TIMEOUT)
    redis.publish(DAGS[dag_id], b"\xff\xfe not utf-8")
    sent = probe_until_received(stack, redis, dag_id, "after-non-utf8")
    non_utf8_runs = [
        r for r in output(stack, dag_id) if r["rejected"] and r["rejected"][0][0] == "not UTF-8 text"
    ]
    print(
        f"\nsignup watcher: after a non-UTF-8 message, took a message again ({sent} probe(s)); "
        f"runs that saw the non-UTF-8 message: {len(non_utf8_runs)}; "
        f"UnicodeDecodeError in the triggerer log: {'UnicodeDecodeError' in stack.log('triggerer')}"
    )
    stack.wait_until(
        "every run to succeed", lambda: all_runs_succeeded(stack, dag_id, len(output(stack, dag_id)))
    )
