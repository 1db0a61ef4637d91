"""The bulk operator's pure decisions: instant-or-bulk, and the upload file's deterministic name."""

from __future__ import annotations

import pytest

from clearout_provider.operators import choose_verification_mode
from clearout_provider.operators.bulk_list import upload_file_name


@pytest.mark.parametrize(("n", "mode"), [(0, "instant"), (199, "instant"), (200, "bulk"), (500_000, "bulk")])
def test_instant_below_the_threshold_bulk_from_it(n: int, mode: str) -> None:
    assert choose_verification_mode(n) == mode


def test_threshold_is_configurable_and_negative_counts_are_refused() -> None:
    assert choose_verification_mode(50, threshold=10) == "bulk"
    with pytest.raises(ValueError, match="n_addresses"):
        choose_verification_mode(-1)


def test_upload_name_is_stable_per_task_instance_and_content_and_differs_otherwise() -> None:
    base = ("nightly", "scheduled__2026-03-01T00:00:00+00:00", "verify", -1, "a" * 64)
    name = upload_file_name(*base)
    assert name == upload_file_name(*base)  # a retry re-uploads the same name: Clearout answers 2043
    assert name.startswith("nightly.verify.") and name.endswith(".csv")
    others = {
        upload_file_name("other", *base[1:]),
        upload_file_name(base[0], "manual__2026-03-02", *base[2:]),
        upload_file_name(*base[:2], "verify_eu", *base[3:]),
        upload_file_name(*base[:3], 4, base[4]),
        upload_file_name(*base[:4], "b" * 64),
    }
    assert name not in others and len(others) == 5
    assert upload_file_name("d/a g:x", "r", "t+1", 2, "c").startswith("d_a_g_x.t_1.2.")
