"""The reference every scenario is judged against, judged itself against the sandbox's own verdict rules.

So a scenario whose end state equals the reference's has, for every profile, the verdict Clearout gives
its current address (or nothing, without one), the unsubscribes the default policy asks for, and paid
once per billable address.
"""

from __future__ import annotations

import pandas as pd
from world import PROPERTIES, Reference

from clearout_provider.sandbox.clearout_verdicts import verdict_for
from clearout_provider.verdicts import Bounce

STATUS, VERIFIED_EMAIL, MSG_EMAIL, REASON = (
    PROPERTIES.index(p)
    for p in (
        "Clearout Verification Status",
        "Clearout Verified Email",
        "MSG-email",
        "Clearout Unsubscribed Reason",
    )
)


def test_the_clean_night_writes_each_address_its_own_verdict_and_pays_each_billable_address_once(
    reference: Reference,
) -> None:
    results = pd.concat(pd.read_parquet(p.removeprefix("file://")) for p in reference.result_paths)
    sent = results[results["decided_by"].str.startswith("clearout")]
    addresses = set(sent["verified_email"])

    # Credits: Clearout's ledger charged one per billable unique address, by the sandbox's own rule.
    assert reference.end.credits_used == sum(verdict_for(a).billable for a in addresses) > 0

    by_object = results.set_index("objectId")
    checked = unsubscribed = 0
    for object_id, state in reference.end.profiles.items():
        if object_id not in by_object.index:  # no email: never exported, must be untouched
            assert state[STATUS] is None and state[MSG_EMAIL] is None, object_id
            continue
        row = by_object.loc[object_id]
        if not row["decided_by"].startswith("clearout"):
            continue  # decided locally (syntax) or a duplicate: judged with its address's own row
        verdict = verdict_for(row["verified_email"])
        assert state[STATUS] == verdict.status.value, object_id
        assert state[VERIFIED_EMAIL] == row["verified_email"], object_id
        # The default policy: hard bounces, disposable addresses and spam traps are switched off, with
        # the provider's marker; nothing else is touched.
        should = verdict.sub.bounce is Bounce.HARD or verdict.disposable or verdict.sub.code == 401
        assert (state[MSG_EMAIL] is False) == should, (object_id, verdict)
        assert (state[REASON] is not None) == should, object_id
        checked += 1
        unsubscribed += should
    assert checked > 0.8 * len(addresses) and unsubscribed > 0
