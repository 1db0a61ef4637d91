"""The verdict ledger: every verdict paid for, recorded the moment it arrives, asked before anything is sent.

Why a ledger: a verdict is bought once. Profiles carry their verdict back from CleverTap, but only once
the load succeeded; a run that failed after verifying (CleverTap down during the load, a dry run, a
cleared task, a duplicate address in another profile or another DAG) would otherwise pay again. Every
verify path therefore records each verdict here BEFORE anything is written to CleverTap, and looks here
first: an address with a verdict within its freshness TTL costs nothing and is not sent.

Where it lives: ``CLEAROUT_PROVIDER_LEDGER_DIR`` when set (any fsspec URL), else ``ledger/`` under the
data dir of :mod:`clearout_provider.run_files` (``CLEAROUT_PROVIDER_DATA_DIR``, default
``$AIRFLOW_HOME/clearout_data``). On one machine that is a local folder; in a distributed deployment it is
the shared volume or object store every worker and the triggerer already use for task files.

Layout, one folder per verifier so a second verifier's columns never meet the first one's
(``verifier=clearout/``, ``verifier=mailso/``, ...):

- ``segment-<ns>-<id>.parquet``: immutable, one per bulk result or per closed instant batch;
- ``journal-<ns>-<id>[-<seq>].jsonl``: the answers of an instant batch still running, one JSON line per
  answer, flushed as it arrives (on object stores, which cannot append, one small object per answer);
  closing the batch compacts them into a segment. A worker killed mid-batch leaves its journal, which is
  read like a segment: the answers it paid for are not lost.

Writers only ever create new files, so parallel mapped tasks never race on a read-modify-write; the
latest record of an address wins on read. Only :meth:`VerdictLedger.erase` rewrites files (GDPR erasure of
an address): run it when no verify task is running. ``python -m clearout_provider.verification.ledger
--help`` shows and erases addresses from the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Self, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath

from clearout_provider.contacts import (
    NORMALISED_EMAIL,
    Freshness,
    StoragePath,
    normalise_emails,
    resolve_path,
)
from clearout_provider.results import RESULT_SCHEMA, VERDICT_SCHEMA, upgrade_columns
from clearout_provider.run_files import base_folder
from clearout_provider.verification.model import NO_VERDICT, UNCERTAIN_VERDICTS, DecidedBy, Verdict
from clearout_provider.verification.verifier import spec

log = logging.getLogger(__name__)

LEDGER_DIR_ENV = "CLEAROUT_PROVIDER_LEDGER_DIR"
DEFAULT_VERIFIER = "clearout"
_SEGMENT, _JOURNAL = "segment-", "journal-"
_BATCH_ROWS = 1 << 16

_TIME = pa.timestamp("ms", tz="UTC")


@cache
def ledger_schema() -> pa.Schema:
    """One ledger record: the address, the verdict (the result columns), and where it came from."""
    return pa.schema(
        [
            pa.field("address", pa.string()),
            *RESULT_SCHEMA,
            pa.field("source", pa.string()),  # the bulk list id, or "instant"
            pa.field("billable", pa.bool_()),  # whether the verifier charged for it (by its rules)
            pa.field("recorded_at", _TIME),
            pa.field("recorded_by", pa.string()),  # dag/run/task[map] that paid for it
        ]
    )


def ledger_root(workdir: str | None = None) -> Path | ObjectStoragePath:
    """Where the ledger lives (see the module docstring for the order)."""
    configured = os.environ.get(LEDGER_DIR_ENV)
    return resolve_path(configured) if configured else resolve_path(base_folder(workdir) / "ledger")


class VerdictLedger:
    """The verdicts one verifier gave, by normalised address (see the module docstring).

    :param root: the ledger's folder (default :func:`ledger_root`).
    :param verifier: whose verdicts; each verifier has a folder of its own.
    """

    def __init__(self, root: StoragePath | None = None, *, verifier: str = DEFAULT_VERIFIER) -> None:
        base = resolve_path(root) if root is not None else ledger_root()
        self.verifier = verifier
        self.folder: Path | ObjectStoragePath = base / f"verifier={verifier}"

    def __repr__(self) -> str:
        return f"VerdictLedger({str(self.folder)!r})"

    # ------------------------------------------------------------------------------------ reading

    def _files(self, prefix: str, suffix: str) -> list[Path | ObjectStoragePath]:
        if not self.folder.exists():
            return []
        return sorted(
            (p for p in self.folder.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)),
            key=lambda p: p.name,
        )

    def _tables(self) -> Iterator[pa.Table]:
        """Every record, a batch at a time: segments first, then journals of batches still open."""
        for path in self._files(_SEGMENT, ".parquet"):
            try:
                with path.open("rb") as stream:
                    for batch in pq.ParquetFile(stream).iter_batches(batch_size=_BATCH_ROWS):
                        yield _as_records(pa.Table.from_batches([batch]))
            except (OSError, pa.ArrowException) as exc:
                log.warning("Ledger segment %s is unreadable (%s): skipped", path, exc)
        for path in self._files(_JOURNAL, ".jsonl"):
            rows = _journal_rows(path)
            if rows:
                yield _as_records(pa.Table.from_pylist(rows))

    def entries(self, addresses: Iterable[str] | None = None) -> pa.Table:
        """Every record (of ``addresses``, normalised, when given), oldest first: for inspection."""
        wanted = _addresses(addresses) if addresses is not None else None
        parts = [
            t if wanted is None else t.filter(pc.is_in(t["address"], value_set=wanted))
            for t in self._tables()
        ]
        return pa.concat_tables(parts) if parts else ledger_schema().empty_table()

    def lookup(
        self,
        addresses: Iterable[str] | pa.Array | pa.ChunkedArray,
        freshness: Freshness,
        *,
        now: datetime | None = None,
        always_from: str | None = None,
    ) -> pa.Table:
        """The reusable verdicts of ``addresses`` (normalised already) as a verdict table.

        One row per address whose LATEST verdict is still fresh: ``ttl_days`` for valid/invalid,
        ``uncertain_ttl_days`` for catch-all/unknown, counted from the verification time. A verdict
        recorded by ``always_from`` (a task instance's :func:`recorded_by` prefix) is reused whatever its
        age: a retry never pays again for what its own earlier try bought. ``decided_by`` is "ledger";
        the verification time is the original one.
        """
        wanted = pc.unique(_as_array(addresses).drop_null())
        if len(wanted) == 0:
            return VERDICT_SCHEMA.empty_table()
        parts = [
            m for t in self._tables() if (m := t.filter(pc.is_in(t["address"], value_set=wanted))).num_rows
        ]
        if not parts:
            return VERDICT_SCHEMA.empty_table()
        latest = _latest(pa.concat_tables(parts))
        keep = _fresh(latest, freshness, now or datetime.now(UTC))
        if always_from:
            own = pc.starts_with(latest["recorded_by"], always_from)
            keep = pc.or_(keep, pc.fill_null(own, False))
        found = latest.filter(keep)
        columns = {NORMALISED_EMAIL: found["address"], **{n: found[n] for n in RESULT_SCHEMA.names}}
        columns["decided_by"] = pa.array([DecidedBy.LEDGER.value] * found.num_rows, pa.string())
        return pa.table(columns, schema=VERDICT_SCHEMA)

    # ------------------------------------------------------------------------------------ writing

    def record(self, verdicts: pa.Table, *, source: str, recorded_by: str) -> int:
        """Record a verdict table's verdicts as one segment; returns how many were recorded.

        Rows without a verdict (no answer, dry run), rows taken from the ledger, and locally decided rows
        are not verdicts paid for and are skipped.
        """
        table = _paid_for(verdicts)
        if table.num_rows == 0:
            return 0
        self._write_segment(_records(table, verifier=self.verifier, source=source, recorded_by=recorded_by))
        log.info("Ledger: recorded %d %s verdicts from %s", table.num_rows, self.verifier, source)
        return table.num_rows

    def journal(self, *, source: str, recorded_by: str) -> LedgerJournal:
        """A journal for answers that arrive one at a time (instant calls); use it as a context manager."""
        return LedgerJournal(self, source=source, recorded_by=recorded_by)

    def _write_segment(self, table: pa.Table) -> None:
        name = f"{_SEGMENT}{time.time_ns()}-{uuid.uuid4().hex[:12]}.parquet"
        folder = self.folder
        if isinstance(folder, Path):  # write aside, then rename: a reader never sees half a file
            folder.mkdir(parents=True, exist_ok=True)
            scratch = folder / f".{name}.tmp"
            pq.write_table(table, scratch)
            os.replace(scratch, folder / name)
            return
        with (folder / name).open("wb") as stream:  # one put: atomic on object stores
            pq.write_table(table, stream)

    # ------------------------------------------------------------------------------------ erasing

    def erase(self, addresses: Iterable[str]) -> int:
        """Remove every record of ``addresses`` (normalised here) from every file; returns records removed.

        The GDPR erasure: files holding an address are rewritten without it. Run it while no verify task
        runs (a batch still open could write the address again).
        """
        wanted = _addresses(addresses)
        removed = 0
        for path in self._files(_SEGMENT, ".parquet"):
            with path.open("rb") as stream:
                table = _as_records(pq.read_table(stream))
            hit = pc.is_in(table["address"], value_set=wanted)
            count = pc.sum(hit).as_py() or 0
            if count:
                kept = table.filter(pc.invert(hit))
                if kept.num_rows:
                    self._write_segment(kept)
                path.unlink()
                removed += count
        erased = set(wanted.to_pylist())
        for path in self._files(_JOURNAL, ".jsonl"):
            rows = _journal_rows(path)
            kept_rows = [r for r in rows if r["address"] not in erased]
            if len(kept_rows) != len(rows):
                if kept_rows:
                    self._write_segment(_as_records(pa.Table.from_pylist(kept_rows)))
                path.unlink()
                removed += len(rows) - len(kept_rows)
        log.info("Ledger: erased %d records of %d addresses", removed, len(wanted))
        return removed


class LedgerJournal:
    """Answers recorded one by one as they arrive (thread-safe), compacted into a segment on close."""

    def __init__(self, ledger: VerdictLedger, *, source: str, recorded_by: str) -> None:
        self.ledger, self.source, self.recorded_by = ledger, source, recorded_by
        self._name = f"{_JOURNAL}{time.time_ns()}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._written: list[Path | ObjectStoragePath] = []
        self._handle: TextIO | None = None

    def add(self, verdict: Mapping[str, Any]) -> None:
        """Record one verdict row (a verdict table row: ``normalised_email`` + the result columns)."""
        row = _records(pa.Table.from_pylist([dict(verdict)], schema=VERDICT_SCHEMA),
                       verifier=self.ledger.verifier, source=self.source,
                       recorded_by=self.recorded_by).to_pylist()[0]  # fmt: skip
        line = json.dumps(row, default=_json_default, separators=(",", ":")) + "\n"
        folder = self.ledger.folder
        with self._lock:
            self._rows.append(row)
            if isinstance(folder, Path):
                if self._handle is None:
                    folder.mkdir(parents=True, exist_ok=True)
                    path = folder / f"{self._name}.jsonl"
                    self._handle = path.open("a", encoding="utf-8")
                    self._written.append(path)
                self._handle.write(line)
                self._handle.flush()
                return
            answer = folder / f"{self._name}-{len(self._rows):06d}.jsonl"
            with answer.open("w") as stream:
                stream.write(line)
            self._written.append(answer)

    def close(self) -> None:
        """Compact what was recorded into one segment and remove the journal files."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            if self._rows:
                self.ledger._write_segment(pa.Table.from_pylist(self._rows, schema=ledger_schema()))
            for path in self._written:
                path.unlink()
            self._rows, self._written = [], []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recorded_by(context: Mapping[str, Any]) -> str:
    """``dag/run/task[/map]/``: who paid.

    The prefix :meth:`VerdictLedger.lookup` reuses whatever its age.
    """
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    parts = [ti.dag_id, ti.run_id, ti.task_id] + ([str(map_index)] if map_index not in (-1, None) else [])
    return "/".join(parts) + "/"


# ------------------------------------------------------------------------------------------ helpers


def _as_array(values: Iterable[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks().cast(pa.string())
    if isinstance(values, pa.Array):
        return values.cast(pa.string())
    return pa.array(list(values), pa.string())


def _addresses(addresses: Iterable[str]) -> pa.Array:
    """User-given addresses normalised as the ledger keys them."""
    return pc.unique(normalise_emails(_as_array(addresses)).normalised.drop_null())


def _paid_for(verdicts: pa.Table) -> pa.Table:
    not_paid = pa.array([*NO_VERDICT, DecidedBy.LEDGER.value, DecidedBy.LOCAL_SYNTAX.value,
                         DecidedBy.LOCAL_DUPLICATE.value])  # fmt: skip
    keep = pc.and_(
        pc.is_valid(verdicts[NORMALISED_EMAIL]),
        pc.invert(pc.fill_null(pc.is_in(verdicts["decided_by"], value_set=not_paid), False)),
    )
    return verdicts.filter(pc.and_(keep, pc.is_valid(verdicts["verdict"])))


def _records(verdicts: pa.Table, *, verifier: str, source: str, recorded_by: str) -> pa.Table:
    n = verdicts.num_rows
    columns = {"address": verdicts[NORMALISED_EMAIL], **{c: verdicts[c] for c in RESULT_SCHEMA.names}}
    # What the verifier charged for, by its rules: Clearout does not charge "unknown"; Mail.so does.
    billable = (
        pa.array([True] * n, pa.bool_())
        if spec(verifier).charges_unknown
        else pc.not_equal(verdicts["verdict"], Verdict.UNKNOWN.value)
    )
    columns |= {
        "source": pa.array([source] * n, pa.string()),
        "billable": billable,
        "recorded_at": pa.array([datetime.now(UTC)] * n, _TIME),
        "recorded_by": pa.array([recorded_by] * n, pa.string()),
    }
    return pa.table(columns, schema=ledger_schema())


def _as_records(table: pa.Table) -> pa.Table:
    """A segment or journal as :func:`ledger_schema` records, 0.1 files (``clearout_*`` columns) included."""
    upgraded = upgrade_columns(table)
    return upgraded.select(ledger_schema().names).cast(ledger_schema())


def _latest(records: pa.Table) -> pa.Table:
    """The latest record of each address (by verification time, then by when it was recorded)."""
    at = pc.coalesce(records["verified_at"], records["recorded_at"])
    ordered = records.append_column("_at", at).sort_by(
        [("address", "ascending"), ("_at", "descending"), ("recorded_at", "descending")]
    )
    keys = ordered["address"].combine_chunks()
    first = pc.invert(pc.equal(keys[1:], keys[:-1])) if len(keys) > 1 else pa.array([], pa.bool_())
    mask = pa.concat_arrays([pa.array([True]), first]) if len(keys) else pa.array([], pa.bool_())
    return ordered.filter(mask).drop_columns(["_at"])


def _fresh(records: pa.Table, freshness: Freshness, now: datetime) -> pa.Array:
    at = pc.coalesce(records["verified_at"], records["recorded_at"])
    uncertain = pc.is_in(records["verdict"], value_set=pa.array(sorted(UNCERTAIN_VERDICTS)))
    return pc.fill_null(pc.greater_equal(at, freshness.oldest_fresh(uncertain, now)), False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot record {type(value).__name__} in the ledger journal")


_TIME_COLUMNS = ("verified_at", "clearout_verified_at", "recorded_at")  # the second: 0.1 journals


def _journal_rows(path: Path | ObjectStoragePath) -> list[dict[str, Any]]:
    """The records of a journal file; a line torn by a crash is skipped (that answer is asked again)."""
    rows = []
    try:
        with path.open("r") as stream:
            lines = stream.read().splitlines()
    except OSError as exc:
        log.warning("Ledger journal %s is unreadable (%s): skipped", path, exc)
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("address"), str):
            continue
        for name in _TIME_COLUMNS:
            if row.get(name):
                row[name] = datetime.fromisoformat(row[name])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``show`` or ``erase`` addresses in the ledger (``--root`` or the configured location)."""
    parser = argparse.ArgumentParser(
        prog="python -m clearout_provider.verification.ledger",
        description="Inspect or erase (GDPR) addresses in the verdict ledger.",
    )
    parser.add_argument("command", choices=("show", "erase"))
    parser.add_argument("addresses", nargs="+", help="email addresses (normalised before matching)")
    parser.add_argument(
        "--root", help=f"ledger folder or URL (default: ${LEDGER_DIR_ENV} or <data dir>/ledger)"
    )
    parser.add_argument("--verifier", default=DEFAULT_VERIFIER)
    args = parser.parse_args(argv)
    ledger = VerdictLedger(args.root, verifier=args.verifier)
    if args.command == "erase":
        print(f"erased {ledger.erase(args.addresses)} records from {ledger.folder}")
        return 0
    for row in ledger.entries(args.addresses).to_pylist():
        print(json.dumps(row, default=_json_default))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
