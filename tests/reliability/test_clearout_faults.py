"""Clearout misbehaving during the nightly run: errors, rate limits, broken downloads, a stuck list.

Every scenario ends with a night with the faults off (``world.settle()``), then is judged (``judge``):
credits over all its nights = the clean night's, every profile = its verdict.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import requests
from world import INSTANT, Reference, World, judge, task_state


def test_flaky_clearout_during_a_bulk_night(world: Callable[..., World], reference: Reference) -> None:
    # A bulk night makes a few dozen Clearout calls; fault seed 7 fails three of the first twelve (random),
    # and a ~7 s list is polled a dozen times.
    w = world(bulk_rate=50.0, fault_seed=7)
    w.faults(fault_rate_503=0.10, fault_rate_524=0.05)

    night = w.night()

    assert w.clearout()["faults_503"] > 0
    assert night.ok, night.states  # the hook's retries ride out one call in ten failing
    w.settle()
    judge(w, reference, "Clearout 503 10% + 524 5%, bulk")


def test_flaky_clearout_during_an_instant_night(world: Callable[..., World], reference: Reference) -> None:
    w = world()
    w.faults(fault_rate_503=0.10, fault_rate_524=0.05)

    night = w.night(INSTANT)

    stats = w.clearout()
    assert stats["faults_503"] > 0 and stats["faults_524"] > 0
    if night.ok:  # a 524 is no verdict: reported, nothing written for it, due again tomorrow
        [load] = night.loads()
        assert load["not_verified"] > 0 and "not verified" in night.summary()
    w.settle(INSTANT)
    judge(w, reference, "Clearout 503 10% + 524 5%, instant")


def test_rate_limit_bursts_on_instant_calls(world: Callable[..., World], reference: Reference) -> None:
    """Another client of the same account empties the rate window in bursts: our calls meet 429s."""
    w = world(rpm=120, rate_window=2.0)
    instant = task_state("verify_instant")
    stop = threading.Event()

    def other_client() -> None:  # test addresses cost nothing, but take their share of the window
        with requests.Session() as http:
            while not stop.wait(2.0):  # once a window, take 100 of its 120 calls
                if instant() != "running":
                    continue
                for _ in range(100):
                    http.post(
                        f"{w.server.clearout_url}/email_verify/instant",
                        json={"email": "valid@example.com"},
                        headers={"Authorization": f"Bearer {w.server.settings.clearout_token}"},
                        timeout=60,
                    )

    competitor = threading.Thread(target=other_client, daemon=True)
    competitor.start()
    try:
        night = w.night(INSTANT)
    finally:
        stop.set()
        competitor.join(60)

    assert night.ok, night.states
    [verify] = night.xcom("verified")
    assert (
        w.clearout()["rate_limited"] > 0 and verify["failed"] == 0
    )  # limits met, waited out, no verdict lost
    w.settle(INSTANT)
    judge(w, reference, "Clearout 429 bursts (other client on the account), instant")


def test_result_download_reset_midway(world: Callable[..., World], reference: Reference) -> None:
    w = world()
    w.faults(download_resets=3, download_reset_after_bytes=2048)

    night = w.night()

    assert w.clearout()["download_resets"] == 3
    assert night.ok, night.states
    w.settle()
    judge(w, reference, "result download reset 3x mid-body")


def test_result_url_expired_until_the_task_is_retried(
    world: Callable[..., World], reference: Reference
) -> None:
    w = world()
    w.faults(result_url_ttl=0)  # every presigned URL has expired by the time it is fetched
    bulk = task_state("verify_bulk")
    w.during(lambda: bulk() == "up_for_retry", lambda: w.faults(result_url_ttl=300), "verify_bulk retried")

    night = w.night()

    assert night.ok, night.states
    assert w.clearout()["bulk_uploads"] == 1  # the retry resumed the list: not uploaded (nor paid) again
    w.settle()
    judge(w, reference, "result URL expired, task retried")


def test_a_stuck_list_keeps_the_run_waiting_not_failing_nor_paying_twice(
    world: Callable[..., World], reference: Reference
) -> None:
    w = world(bulk_rate=100.0)
    w.faults(stuck_lists=True)
    polls: list[int] = []

    def stuck_a_while() -> bool:
        # The list uploaded and frozen for 30 looks (3+ s, the task waiting on it); nothing written meanwhile.
        stats = w.clearout()
        if stats["bulk_uploads"] == 1 and not any(e["processed"] for e in stats["lists"].values()):
            polls.append(1)
        return len(polls) >= 30 and w.clevertap().get("saving_upload_calls", 0) == 0

    w.during(stuck_a_while, lambda: w.faults(stuck_lists=False), "list stuck while the task waits")

    night = w.night()

    assert night.ok, night.states
    assert w.clearout()["bulk_uploads"] == 1
    w.settle()
    judge(w, reference, "stuck list, then Clearout recovers")


def test_a_malformed_instant_answer_is_no_verdict(world: Callable[..., World], reference: Reference) -> None:
    w = world()
    w.faults(instant_malformed=0.05)

    night = w.night(INSTANT)

    assert night.ok, night.states
    [load] = night.loads()
    assert load["not_verified"] > 0 and w.clearout()["faults_malformed"] > 0
    w.settle(INSTANT)
    judge(w, reference, "malformed instant answers 5%")
