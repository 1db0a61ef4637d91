"""Rows that share a key, found for millions of rows in bounded memory.

Both the streaming split (duplicates of an address stay in one chunk) and the merge of a parallel
CleverTap export (each profile once across its parts) ask the same question of a column of keys: which
earlier row holds the same key? A hash table (``dictionary_encode``, ``np.unique`` of its codes) answers
it at several times the strings' size, five million keys in well over a gigabyte between the two; a
stable sort answers it with the sort's indices and a few integer arrays.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Sorted keys compared at a time: a sorted copy of the whole column would double its size.
_COMPARE_ROWS = 1 << 18


def first_rows(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row of ``keys``, the first row holding the same key; a null key is a group of its own row.

    ``first_rows(keys) == arange(len(keys))`` marks each key's first occurrence (what a dedupe keeps).
    Integers of the smallest width that indexes every row. Chunked keys are never concatenated (that
    would hold the strings twice at once): sorting and taking work across chunks.
    """
    by_key = pc.array_sort_indices(keys, order="ascending", null_placement="at_end")  # stable
    rows = by_key.to_numpy().astype(np.int32 if len(by_key) < 2**31 else np.int64)
    valid = len(keys) - keys.null_count
    # In sorted order, where a new key starts.
    starts = np.ones(valid, dtype=bool)
    for begin in range(0, valid, _COMPARE_ROWS):
        end = min(begin + _COMPARE_ROWS + 1, valid)
        sorted_slice = keys.take(by_key[begin:end])
        starts[begin + 1 : end] = pc.not_equal(sorted_slice[1:], sorted_slice[:-1]).to_numpy(
            zero_copy_only=False
        )
    del by_key
    # The sort is stable: the first row of each key's run is its first row in the column.
    run_start = np.where(starts, np.arange(valid, dtype=rows.dtype), 0)
    del starts
    np.maximum.accumulate(run_start, out=run_start)
    first = np.arange(len(rows), dtype=rows.dtype)  # null keys: their own row
    first[rows[:valid]] = rows[run_start]
    return first
