"""ClearoutBulkJobTrigger without a server: what it serialises, the settings it refuses, how it judges a
progress status.

The trigger against a live sandbox (one event per outcome, cancel on kill and on deadline) is tested in
tests/integration/test_bulk_job_trigger_live.py.
"""

from __future__ import annotations

import json

import pytest

from clearout_provider.clearout.statuses import job_state
from clearout_provider.triggers.bulk_job import (
    OUTCOMES,
    ClearoutBulkJobFailed,
    ClearoutBulkJobTrigger,
    raise_for_event,
)


def test_serialize_holds_ids_and_settings_only_and_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "5a4db0c5a4db0c5a4db0c5a4db0c5a4d:" + "f" * 64
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLEAROUT_DEFAULT", json.dumps({"conn_type": "clearout", "password": token})
    )
    trigger = ClearoutBulkJobTrigger(
        job_id="a" * 24,
        kind="finder",
        conn_id="clearout_default",
        poll_interval=2,
        max_poll_interval=9,
        deadline=1_900_000_000.5,
        cancel_on_deadline=False,
    )
    trigger.jobs().hook.get_conn()  # type: ignore[attr-defined]  # even with a hook built, nothing secret
    classpath, kwargs = trigger.serialize()
    assert classpath == "clearout_provider.triggers.bulk_job.ClearoutBulkJobTrigger"
    assert kwargs == {
        "job_id": "a" * 24,
        "verifier": "clearout",
        "kind": "finder",
        "conn_id": "clearout_default",
        "poll_interval": 2.0,
        "max_poll_interval": 9.0,
        "deadline": 1_900_000_000.5,
        "cancel_on_deadline": False,
    }
    text = json.dumps(kwargs) + repr(trigger)
    assert token not in text and token.split(":")[1] not in text
    assert ClearoutBulkJobTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_bad_settings_are_refused_when_the_trigger_is_built() -> None:
    with pytest.raises(ValueError, match="kind"):
        ClearoutBulkJobTrigger(job_id="x", kind="instant")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_poll_interval"):
        ClearoutBulkJobTrigger(job_id="x", poll_interval=10, max_poll_interval=5)
    with pytest.raises(ValueError, match="Unknown verifier"):
        ClearoutBulkJobTrigger(job_id="x", verifier="zerobounce")
    with pytest.raises(ValueError, match="no bulk Email Finder"):
        ClearoutBulkJobTrigger(job_id="x", verifier="mailso", kind="finder").jobs()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("completed", "success"),
        ("running", None),
        ("cancelled", "cancelled"),
        ("Canceled", "cancelled"),
        ("failed", "error"),
        ("queued", None),
    ],
)
def test_progress_statuses_map_to_one_outcome(status: str, outcome: str | None) -> None:
    assert OUTCOMES.get(job_state(status)) == outcome


def test_an_undocumented_progress_status_fails_after_a_bounded_number_of_polls() -> None:
    """An unknown word must not hold a list's slot and a task until the 12-hour deadline."""
    from clearout_provider.clearout.models import BulkProgress
    from clearout_provider.clearout.verifier import ClearoutLists
    from clearout_provider.hooks.clearout import ClearoutHook
    from clearout_provider.triggers.bulk_job import MAX_UNKNOWN_POLLS

    trigger, lists = ClearoutBulkJobTrigger(job_id="a" * 24), ClearoutLists(ClearoutHook())
    weird = BulkProgress("a" * 24, "weird_status", 40.0)
    assert all(trigger.judge(weird, None, lists) is None for _ in range(MAX_UNKNOWN_POLLS - 1))
    running = BulkProgress("a" * 24, "running", 41.0)
    assert trigger.judge(running, None, lists) is None  # a known word resets it
    assert all(trigger.judge(weird, None, lists) is None for _ in range(MAX_UNKNOWN_POLLS - 1))
    event = trigger.judge(weird, None, lists)
    assert event is not None and event["status"] == "error" and "weird_status" in event["message"]
    with pytest.raises(ClearoutBulkJobFailed, match="undocumented progress status"):
        raise_for_event(event)


def test_a_mailso_job_is_done_when_every_batch_is_and_cannot_be_cancelled() -> None:
    """Mail.so's progress is finished batches over all; the ONE finished rule and the judge apply as is."""
    from clearout_provider.mailso.verifier import BatchesProgress, MailsoVerifier

    trigger = ClearoutBulkJobTrigger(job_id="b1,b2", verifier="mailso")
    verifier = MailsoVerifier()
    running, done = BatchesProgress(("b1", "b2"), 1, 50.0), BatchesProgress(("b1", "b2"), 2, 100.0)
    assert (running.job_id, running.finished, done.finished) == ("b1,b2", False, True)
    assert trigger.judge(running, None, verifier) is None
    event = trigger.judge(done, None, verifier)
    assert event is not None and event["status"] == "success" and event["verifier"] == "mailso"
    assert trigger.cancel_sync(verifier, "a test") is False  # said so in the log, nothing called
    timeout = trigger._timeout_payload(verifier, cancelled=False)
    assert "keeps running in Mail.so" in timeout["message"] and timeout["cancelled"] is False
