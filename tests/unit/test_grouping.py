"""grouping.first_rows: each row's first row of the same key, against a plain dictionary's answer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clearout_provider import grouping
from clearout_provider.grouping import first_rows


def _reference(keys: list[str | None]) -> list[int]:
    seen: dict[str, int] = {}
    return [i if key is None else seen.setdefault(key, i) for i, key in enumerate(keys)]


def test_repeats_point_at_the_first_row_and_nulls_at_themselves() -> None:
    keys = ["b", None, "a", "b", None, "a", "c", "b"]
    assert first_rows(pa.array(keys, pa.string())).tolist() == [0, 1, 2, 0, 4, 2, 6, 0]


def test_empty_and_all_null_columns() -> None:
    assert first_rows(pa.array([], pa.string())).tolist() == []
    assert first_rows(pa.array([None, None], pa.string())).tolist() == [0, 1]


@pytest.mark.parametrize("compare_rows", [1, 3, 1 << 18])
def test_random_keys_across_comparison_slices(monkeypatch: pytest.MonkeyPatch, compare_rows: int) -> None:
    """The sorted keys are compared a slice at a time: a run of one key across a slice edge stays one."""
    monkeypatch.setattr(grouping, "_COMPARE_ROWS", compare_rows)
    rng = np.random.default_rng(3)
    keys = [None if r < 0.1 else f"k{int(r * 50)}" for r in rng.random(2_000)]
    found = first_rows(pa.array(keys, pa.string()))
    assert found.tolist() == _reference(keys)
    dedupe = found == np.arange(len(keys))
    assert int(dedupe.sum()) == len({k for k in keys if k is not None}) + keys.count(None)


def test_chunked_keys_give_the_answer_of_the_same_keys_in_one_array() -> None:
    keys = [f"k{(i * 7) % 13}" if i % 5 else None for i in range(300)]
    pieces = (keys[:100], keys[100:101], keys[101:])  # the middle chunk is one null
    chunked = pa.chunked_array([pa.array(p, pa.string()) for p in pieces])
    assert (
        first_rows(chunked).tolist() == first_rows(pa.array(keys, pa.string())).tolist() == _reference(keys)
    )
