"""How a data engineer runs the DAG on a bad night: a dry run first, verify-only, a cleared run, and a
person fixing their address after the provider unsubscribed it.

Judged like every scenario (``judge``): credits over all nights = the clean night's (+ the new addresses
a scenario adds), every profile = the verdict of its current address.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from world import PROPERTIES, Reference, World, judge

from clearout_provider.hooks.clevertap import CleverTapHook
from clearout_provider.sandbox.clearout_verdicts import verdict_for


def prop(state: tuple[Any, ...], name: str) -> Any:
    return state[(*PROPERTIES, "subscription").index(name)]


def test_dry_run_then_real_run(world: Callable[..., World], reference: Reference) -> None:
    w = world()
    before = w.end_state()

    dry = w.night({"dry_run": True})

    assert dry.ok, dry.states
    [verify] = dry.xcom("verified")
    assert verify["credits_needed"] >= reference.end.credits_used  # an upper bound: unknowns are free
    assert w.end_state() == before  # no credit, no profile changed
    assert w.clearout()["bulk_uploads"] == 0 and w.clevertap().get("saving_upload_calls", 0) == 0

    w.settle()
    judge(w, reference, "dry run, then the real run")


def test_verify_only_then_real_run(world: Callable[..., World], reference: Reference) -> None:
    w = world()
    before = w.end_state()

    verify_only = w.night({"write_back": False})

    assert verify_only.ok, verify_only.states
    after = w.end_state()
    assert after.profiles == before.profiles and after.credits_used == reference.end.credits_used

    w.settle()  # the verdicts are in the ledger: writing them costs nothing more

    assert w.clearout()["bulk_uploads"] == 1
    judge(w, reference, "write_back=false, then the real run")


def test_a_finished_run_cleared_and_run_again(world: Callable[..., World], reference: Reference) -> None:
    w = world()
    logical_date = datetime.now(UTC).replace(microsecond=0)
    assert w.night(logical_date=logical_date).ok

    again = w.night(logical_date=logical_date)  # "Clear" on the whole run in the UI

    assert again.ok, again.states
    assert w.clearout()["bulk_uploads"] == 1
    judge(w, reference, "a finished run cleared and run again")


def test_an_address_fixed_after_the_provider_unsubscribed_it(
    world: Callable[..., World], reference: Reference
) -> None:
    w = world()
    assert w.night().ok
    state = w.end_state().profiles
    ours = [oid for oid, s in state.items() if prop(s, "MSG-email") is False][:8]
    opted_out = next(oid for oid, s in state.items() if prop(s, "Clearout Verification Status") == "valid")
    fresh = (f"fixed.reader{n}@acme-rockets.com" for n in range(1000))
    good = [a for a in fresh if verdict_for(a).sub.code == 200 and not verdict_for(a).role][: len(ours) + 1]
    fixes = dict(zip([*ours, opted_out], good, strict=True))
    records = [{"objectId": oid, "profileData": {"Email": email}} for oid, email in fixes.items()]
    # The person behind `opted_out` switched email off themselves: no provider marker on the profile.
    records[-1]["profileData"]["MSG-email"] = False
    assert ours and CleverTapHook().upload_profiles(records).ok

    # A changed address raises no signal here (no email-change event): the full sweep finds it.
    fixed = w.night({"selection": "full"})

    assert fixed.ok and fixed.to_verify == len(fixes), fixed.states
    end = w.end_state().profiles
    for oid, email in fixes.items():
        assert prop(end[oid], "Clearout Verified Email") == email and prop(end[oid], "Email") == email
        assert prop(end[oid], "Clearout Verification Status") == "valid"
    for oid in ours:  # lifted: back on, marker gone, the new address resubscribed
        assert prop(end[oid], "MSG-email") is True and prop(end[oid], "Clearout Unsubscribed Reason") is None
        assert prop(end[oid], "subscription") == "Resubscribed"
    assert prop(end[opted_out], "MSG-email") is False  # the person's own choice stands
    assert prop(end[opted_out], "subscription") is None
    w.settle()
    judge(
        w,
        reference,
        "address fixed after an unsubscribe",
        extra_credits=len(fixes),
        changed={oid: end[oid] for oid in fixes},
    )
