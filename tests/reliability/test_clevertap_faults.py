"""CleverTap misbehaving: flaky calls, slow export cursors, an outage during the load, rejected records.

Judged like every scenario (``judge``): credits over all nights = the clean night's, every profile = its
verdict. A CleverTap outage must fail the run (Airflow retries it) and the next night must pay nothing
again: the verdicts were in the ledger before the first write.
"""

from __future__ import annotations

from collections.abc import Callable

from world import CLEVERTAP_CALLS, Reference, World, judge


def test_flaky_clevertap_during_extract_and_load(world: Callable[..., World], reference: Reference) -> None:
    w = world(fault_seed=7)
    w.faults(clevertap_fault_rate_503=0.10, clevertap_fault_rate_429=0.05)

    night = w.night()

    assert night.ok, night.states  # the hook retries 503s and waits out 429s
    w.settle()
    judge(w, reference, "CleverTap 503 10% + 429 5%")


def test_export_cursors_not_ready_and_throttled(world: Callable[..., World], reference: Reference) -> None:
    w = world(clevertap_cursor_not_ready=2, clevertap_throttle_every=3)

    night = w.night()

    assert night.ok, night.states
    assert night.exported == reference.exported  # every page came, none twice
    w.settle()
    judge(w, reference, "CleverTap cursors not ready x2, every 3rd page throttled")


def test_clevertap_down_for_the_whole_load(world: Callable[..., World], reference: Reference) -> None:
    w = world(retries=0)  # each try spends a minute in the hook's own backoff: one try shows the point
    w.faults(clevertap_down_paths=CLEVERTAP_CALLS["write"])

    first = w.night()

    # Honest: the run failed (after its retries), nothing was written, nothing counted as "rejected".
    assert not first.ok and "load_back[0]" in first.failed_tasks(), first.states
    assert w.clevertap().get("saving_upload_calls", 0) == 0
    paid = w.clearout()["credits_used"]
    assert paid == reference.end.credits_used

    w.settle()  # the next night: CleverTap is back; the verdicts come from the ledger

    assert w.clearout()["credits_used"] == paid and w.clearout()["bulk_uploads"] == 1
    judge(w, reference, "CleverTap down during the load, next night")


def test_clevertap_down_until_the_load_is_retried(world: Callable[..., World], reference: Reference) -> None:
    from world import task_state

    w = world()
    w.faults(clevertap_down_paths=CLEVERTAP_CALLS["write"])
    load = task_state("load_back")
    w.during(lambda: load() == "up_for_retry", lambda: w.faults(clevertap_down_paths=[]), "load_back retried")

    night = w.night()

    assert night.ok, night.states
    w.settle()
    judge(w, reference, "CleverTap down until load_back is retried")


def test_records_rejected_with_515_are_never_unsubscribed(
    world: Callable[..., World], reference: Reference
) -> None:
    import pandas as pd

    w = world(fault_seed=3)
    before = w.end_state()
    w.faults(clevertap_reject_rate=0.05)

    first = w.night()

    # 5% rejected is over the default max_rejected_share (1%): the report is written, then the run fails.
    assert not first.ok and first.states["report"] == "failed", first.states
    [load] = first.loads()
    assert load["rejected"] > 0 and "rejected" in first.summary()
    outcome = pd.read_parquet(load["outcome_path"].removeprefix("file://"))
    rejected = outcome[outcome["outcome"] == "rejected"]
    assert len(rejected) == load["rejected"] and set(rejected["rejection_code"]) == {515}
    assert not rejected["unsubscribed"].any()
    after = w.end_state()
    for object_id in rejected["objectId"]:  # nothing written, no unsubscribe by either method
        assert after.profiles[object_id] == before.profiles[object_id], object_id

    w.settle()  # the rejections stop: the rejected rows are still due, and their verdicts cost nothing

    judge(w, reference, "CleverTap 515 on 5% of records, next night")
