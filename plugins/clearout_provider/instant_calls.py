"""Many instant calls for one task: bounded concurrency at the account's rate, and a checkpoint.

The instant operators (verify and Email Finder) pay per call, so two things matter more than speed:

- **Pace.** :func:`call_each` only bounds how many calls are in flight; the pace comes from the hook's
  rate limiter, which every thread of the pool shares (one hook per task). That keeps a burst of many
  times the RPM free of 429s without the operator knowing the account's plan.
- **Never pay twice.** ``on_result`` records every answer the moment it arrives: the verify operator in
  the verdict ledger (:mod:`clearout_provider.verification.ledger`), the Email Finder operator in a
  :class:`Checkpoint` in the task instance's folder; a retry skips what they hold. Airflow 3 clears a
  task's XComs when it retries, so both live in files.

A failure that concerns one item (the vendor timed out on it, refused it as bad input, or answered it
with something unreadable: the caller names those exceptions) is returned to the caller to record as that
item's outcome; anything else (auth, credits, a service still down after
the hook's retries) stops the batch: calls not yet started are dropped, calls in flight are waited for
(their answers are paid for, so they are checkpointed), and the error is raised with a note saying how
far the batch got.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TextIO, TypeVar

from airflow.sdk import ObjectStoragePath

if TYPE_CHECKING:
    from clearout_provider.contacts import StoragePath

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Default number of instant calls in flight at once; the rate limiter, not this, sets the pace.
DEFAULT_MAX_CONCURRENCY = 8


class Checkpoint:
    """Answers already paid for, one JSON object per line, kept across retries of a task instance.

    On a local folder every record is appended and flushed at once, so even a killed worker loses at
    most the line being written (a torn last line is skipped on load). Object stores cannot append: there
    records are buffered and written as a new segment object every ``flush_every`` records and on
    :meth:`close` (which the operators call in ``finally``), so only a hard crash can lose a buffer.
    Records are ``{"key": ..., **payload}``; a later record for the same key replaces an earlier one.
    """

    def __init__(self, folder: StoragePath, name: str, *, flush_every: int = 25) -> None:
        from clearout_provider.contacts import resolve_path  # contacts loads pyarrow: not at DAG parse time

        self.folder: Path | ObjectStoragePath = resolve_path(folder)
        self.name = name
        self.flush_every = flush_every
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._local = self.folder if isinstance(self.folder, Path) else None
        self._handle: TextIO | None = None

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.folder / self.name)!r})"

    def _files(self) -> Iterator[Path | ObjectStoragePath]:
        if not self.folder.exists():
            return iter(())
        return iter(
            sorted(
                p for p in self.folder.iterdir() if p.name.startswith(self.name) and p.name.endswith(".jsonl")
            )
        )

    def load(self) -> dict[str, dict[str, Any]]:
        """Every record written by earlier tries, by key (the latest record wins)."""
        records: dict[str, dict[str, Any]] = {}
        for path in self._files():
            with path.open("r") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line torn by a crash: that answer is simply asked again
                    if isinstance(record, dict) and isinstance(record.get("key"), str):
                        records[record["key"]] = record
        return records

    def add(self, key: str, payload: Mapping[str, Any]) -> None:
        """Record one answer (thread-safe)."""
        line = json.dumps({**payload, "key": key}, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            if self._local is not None:
                if self._handle is None:
                    self._local.mkdir(parents=True, exist_ok=True)
                    self._handle = (self._local / f"{self.name}.jsonl").open("a", encoding="utf-8")
                self._handle.write(line)
                self._handle.flush()
                return
            self._buffer.append(line)
            if len(self._buffer) >= self.flush_every:
                self._flush_segment()

    def _flush_segment(self) -> None:
        if not self._buffer:
            return
        segment = self.folder / f"{self.name}.{time.time_ns()}-{uuid.uuid4().hex[:8]}.jsonl"
        with segment.open("w") as handle:
            handle.write("".join(self._buffer))
        self._buffer.clear()

    def close(self) -> None:
        """Write what is buffered and release the file."""
        with self._lock:
            self._flush_segment()
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call_each(
    items: Sequence[T],
    call: Callable[[T], R],
    *,
    on_result: Callable[[T, R], None],
    item_failures: tuple[type[Exception], ...],
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    what: str = "instant calls",
    progress_every: float = 10.0,
) -> dict[T, Exception]:
    """Run ``call(item)`` for every item, at most ``max_concurrency`` at once; return per-item failures.

    ``on_result`` runs in the worker thread as soon as an answer arrives (checkpoint it there). Failures
    in ``item_failures`` (the vendor's per-item errors) are returned by item; the first other exception
    stops the batch (see the module docstring) and is raised with a note on how many items were done.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
    stop = threading.Event()
    failures: dict[T, Exception] = {}
    answered = 0
    answered_lock = threading.Lock()

    def work(item: T) -> None:
        nonlocal answered
        if stop.is_set():
            return
        try:
            result = call(item)
        except item_failures as exc:
            failures[item] = exc
            return
        except BaseException:
            stop.set()
            raise
        on_result(item, result)
        with answered_lock:
            answered += 1

    total = len(items)
    started = last_report = time.monotonic()
    first_error: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=min(max_concurrency, max(total, 1)), thread_name_prefix="instant")
    try:
        for future in as_completed([pool.submit(work, item) for item in items]):
            error = future.exception()
            if error is not None and first_error is None:
                first_error = error
            now = time.monotonic()
            if now - last_report >= progress_every:
                last_report = now
                log.info("%s: %d of %d answered in %.0f s", what, answered, total, now - started)
    finally:
        # On an error, or when the task is being killed: start nothing new, but let calls in flight end,
        # because their answers are paid for and on_result checkpoints them.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if first_error is not None:
        first_error.add_note(
            f"{what}: {answered} of {total} were answered before this error; their answers are checkpointed "
            "and a retry of the task does not pay for them again."
        )
        raise first_error
    log.info(
        "%s: %d of %d answered, %d failed, in %.1f s",
        what, answered, total, len(failures), time.monotonic() - started,
    )  # fmt: skip
    return failures
