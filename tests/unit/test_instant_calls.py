"""instant_calls: the checkpoint that survives retries, and the bounded, stoppable batch of calls."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from fsspec.implementations.memory import MemoryFileSystem

from clearout_provider.exceptions import CLEAROUT_ITEM_FAILURES as ITEMS
from clearout_provider.exceptions import ClearoutAuthError, ClearoutBadInput, ClearoutTimeout
from clearout_provider.instant_calls import Checkpoint, call_each


def test_local_checkpoint_appends_at_once_and_survives_a_torn_line(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path, "cp")
    checkpoint.add("a@x.io", {"data": {"status": "valid"}})
    checkpoint.add("b@x.io", {"queue_id": "q1"})
    # Written and flushed before close: a worker killed now loses nothing.
    assert set(Checkpoint(tmp_path, "cp").load()) == {"a@x.io", "b@x.io"}
    checkpoint.add("b@x.io", {"answer": {"finder_status": "found"}})  # a later record replaces the earlier
    checkpoint.close()
    with (tmp_path / "cp.jsonl").open("a") as handle:
        handle.write('{"key": "c@x.io", "data": {"sta')  # a crash in the middle of a line
    loaded = Checkpoint(tmp_path, "cp").load()
    assert set(loaded) == {"a@x.io", "b@x.io"}
    assert loaded["b@x.io"]["answer"] == {"finder_status": "found"}
    assert Checkpoint(tmp_path, "other").load() == {}


def test_object_store_checkpoint_writes_segments() -> None:
    attach("memory", fs=MemoryFileSystem())  # an object store that cannot append, like S3
    folder = ObjectStoragePath(f"memory://checkpoint-{uuid.uuid4().hex}/task")
    with Checkpoint(folder, "cp", flush_every=2) as checkpoint:
        for i in range(5):
            checkpoint.add(f"k{i}", {"n": i})
        assert len(list(folder.iterdir())) == 2  # two full segments so far; one record still buffered
    assert len(list(folder.iterdir())) == 3  # close wrote the rest
    assert {k: r["n"] for k, r in Checkpoint(folder, "cp").load().items()} == {f"k{i}": i for i in range(5)}


def test_call_each_bounds_concurrency_and_returns_item_failures() -> None:
    in_flight, peak, lock = 0, 0, threading.Lock()
    results: dict[int, int] = {}

    def call(item: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.01)
        with lock:
            in_flight -= 1
        if item == 3:
            raise ClearoutTimeout("Timeout Occurred", http_status=524)
        if item == 5:
            raise ClearoutBadInput("unsupported characters", code=1088)
        return item * 10

    failures = call_each(
        list(range(20)), call, on_result=results.__setitem__, item_failures=ITEMS, max_concurrency=3
    )

    assert peak == 3
    assert set(failures) == {3, 5}
    assert results == {i: i * 10 for i in range(20) if i not in (3, 5)}


def test_call_each_stops_at_an_account_error_and_says_how_far_it_got() -> None:
    started: list[int] = []
    answered: dict[int, int] = {}

    def call(item: int) -> int:
        started.append(item)
        if item == 4:
            raise ClearoutAuthError("Invalid API Token", code=1000, http_status=401)
        time.sleep(0.005)
        return item

    with pytest.raises(ClearoutAuthError) as raised:
        call_each(
            list(range(200)), call, on_result=answered.__setitem__, item_failures=ITEMS, max_concurrency=2
        )

    assert len(started) < 20  # the rest were never sent
    assert 4 not in answered and len(answered) == len(started) - 1  # calls in flight were still recorded
    assert f"{len(answered)} of 200 were answered" in raised.value.__notes__[0]


def test_call_each_rejects_a_pool_of_nothing() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        call_each([1], lambda i: i, on_result=lambda i, r: None, item_failures=ITEMS, max_concurrency=0)


def test_an_unreadable_answer_is_that_items_failure_not_the_batchs() -> None:
    """A malformed "success" is no verdict for that one address; the other answers still count."""
    from clearout_provider.exceptions import ClearoutProtocolError

    answered: list[str] = []

    def call(item: str) -> str:
        if item == "garbled":
            raise ClearoutProtocolError("Clearout answered success without data")
        return item

    failures = call_each(
        ["a", "garbled", "b"], call, on_result=lambda i, r: answered.append(r), item_failures=ITEMS
    )
    assert sorted(answered) == ["a", "b"]
    assert list(failures) == ["garbled"] and isinstance(failures["garbled"], ClearoutProtocolError)
