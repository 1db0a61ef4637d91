"""What counts as "the run changed CleverTap profiles": the one rule behind each shipped DAG's asset event."""

from __future__ import annotations

from clearout_provider.profile_assets import changes, load_summaries


def load(updated: int = 0, unsubscribed_only: int = 0, *, dry_run: bool = False, **more: int) -> dict:
    """A CleverTap load operator's summary (the counts that matter here)."""
    counts = {"input": 10, "updated": updated, "unsubscribed_only": unsubscribed_only, **more}
    return {**counts, "dry_run": dry_run}


def test_updates_and_unsubscribes_count_across_mapped_loads() -> None:
    totals = changes(load_summaries([load(3), None, load(0, 2, unsubscribed=2), load()]))
    assert totals["changed"] == 5 and totals["input"] == 30 and totals["unsubscribed"] == 2


def test_a_dry_run_or_a_load_that_wrote_nothing_changed_nothing() -> None:
    assert changes(load_summaries(load(7, 1, dry_run=True)))["changed"] == 0  # what WOULD change
    assert changes(load_summaries(load(0, 0, unchanged=10)))["changed"] == 0
    nothing = changes(load_summaries(None))  # no load ran at all (e.g. no chunk to verify)
    assert nothing["changed"] == nothing["input"] == 0
