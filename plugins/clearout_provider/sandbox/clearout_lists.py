"""Bulk lists of the Clearout sandbox: reading uploads, progress over time, credits due, result streaming.

Built for million-row lists without holding them in memory:

- the upload is copied to the sandbox's temp dir (an ``.xlsx`` is converted to CSV there, row by row
  with openpyxl's read-only mode) and read ONCE at upload time to count rows and price them: the only
  per-row state kept is the cumulative cost (4 bytes a row), so "credits due after N rows" is a lookup;
- progress is a pure function of wall-clock time: ``processed = base_rows + (now - anchor) * bulk_rate``,
  capped at the row count, frozen by a cancel or while lists are held (``stuck_lists``); credits are
  charged when rows are processed, computed lazily whenever the list is observed
  (:meth:`BulkList.observe`), so "charged" is always the cost of the first "observed" rows;
- the result file is never built: :meth:`BulkList.result_chunks` re-reads the stored CSV and yields the
  original row (same columns, same order, same values) plus the Clearout columns, in 64 KiB chunks;
- persistence (``state_dir``): the cumulative cost is saved once beside the stored CSV (``.npy``, mapped
  back into memory on restart instead of re-reading the list), and a list's life is a small record
  (:meth:`BulkList.to_record`) rewritten whenever it changes. A restored list resumes from the rows it
  had been observed to process, at the moment the new process starts: time the sandbox was down does
  not count, so a list neither restarts from 0 nor jumps to done.

Verdicts come from the same functions as the instant endpoints, so a list and an instant call always
agree about an address.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from clearout_provider.clearout.statuses import BULK_RESULT_COLUMNS, EMAIL_COLUMN_NAMES, FINDER_RESULT_COLUMNS
from clearout_provider.sandbox.clearout_envelope import ClearoutError
from clearout_provider.sandbox.clearout_finder import cancelled_result, find_email
from clearout_provider.sandbox.clearout_verdicts import cancelled, iso_utc, verdict_for
from clearout_provider.sandbox.state_files import unreadable

if TYPE_CHECKING:
    import numpy as np

SUPPORTED_SUFFIXES = (".csv", ".xlsx")
_CHUNK_CHARS = 64 * 1024
_FINDER_NAME = ("name", "full name", "fullname", "person name", "contact name")
_FINDER_FIRST = ("first name", "firstname", "given name")
_FINDER_LAST = ("last name", "lastname", "surname", "family name")
_FINDER_DOMAIN = ("domain", "domain name", "website", "company domain", "url")
_FINDER_COMPANY = ("company", "company name", "organization", "organisation", "account name")


class ListKind(StrEnum):
    VERIFY = "verify"
    FINDER = "finder"


class ListStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


def read_rows(path: Path) -> Iterator[list[str]]:
    """Rows of a stored list, header first, rows whose cells are all blank skipped.

    Bytes that are not UTF-8 survive unchanged (``surrogateescape``), so the result file repeats every
    original value exactly.
    """
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        for row in csv.reader(handle):
            if any(cell.strip() for cell in row):
                yield row


class Layout(Protocol):
    """Where a list's input columns are, how a row is priced, and what Clearout appends to it."""

    @property
    def result_columns(self) -> tuple[str, ...]: ...

    def key_and_cost(self, row: list[str]) -> tuple[str, int]: ...

    def result_cells(self, row: list[str], processed: bool, at: datetime) -> list[str]: ...


def _bad_finder_file(problem: str) -> ClearoutError:
    """The finder has no documented code for a file it cannot use: answer like a Joi 400 on ``file``."""
    reason = {
        "field": ["file"],
        "location": "body",
        "messages": [f'"file" {problem}'],
        "types": ["any.invalid"],
    }
    return ClearoutError(None, "validation failed", http_status=400, reasons=[reason])


def _cell(row: list[str], index: int | None) -> str:
    return row[index] if index is not None and index < len(row) else ""


@dataclass(frozen=True)
class VerifyLayout:
    """A verify list: the email column (error 1004 without one), 1 credit per billable verdict."""

    email: int
    result_columns: tuple[str, ...] = BULK_RESULT_COLUMNS

    @classmethod
    def locate(cls, header: list[str]) -> VerifyLayout:
        for index, name in enumerate(header):
            if name.strip().lower() in EMAIL_COLUMN_NAMES:
                return cls(index)
        raise ClearoutError.of(1004)

    def key_and_cost(self, row: list[str]) -> tuple[str, int]:
        email = _cell(row, self.email)
        return email.strip().lower(), int(verdict_for(email).billable)

    def result_cells(self, row: list[str], processed: bool, at: datetime) -> list[str]:
        email = _cell(row, self.email)
        return (verdict_for(email) if processed else cancelled(email)).as_bulk_row(at)


@dataclass(frozen=True)
class FinderLayout:
    """A finder list: a name column (or first + last) and a domain or company column."""

    name: int | None
    first: int | None
    last: int | None
    domain: int | None
    company: int | None
    result_columns: tuple[str, ...] = FINDER_RESULT_COLUMNS

    @classmethod
    def locate(cls, header: list[str]) -> FinderLayout:
        names = [" ".join(h.replace("_", " ").replace("-", " ").split()).lower() for h in header]

        def find(candidates: tuple[str, ...]) -> int | None:
            return next((i for i, n in enumerate(names) if n in candidates), None)

        layout = cls(find(_FINDER_NAME), find(_FINDER_FIRST), find(_FINDER_LAST), find(_FINDER_DOMAIN),
                     find(_FINDER_COMPANY))  # fmt: skip
        if (layout.name is None and layout.first is None) or (
            layout.domain is None and layout.company is None
        ):
            raise _bad_finder_file("must have a name column and a domain or company column")
        return layout

    def query(self, row: list[str]) -> tuple[str, str]:
        if self.name is not None and _cell(row, self.name).strip():
            name = _cell(row, self.name)
        else:
            name = f"{_cell(row, self.first).strip()} {_cell(row, self.last).strip()}".strip()
        domain = _cell(row, self.domain).strip() or _cell(row, self.company)
        return name, domain

    def key_and_cost(self, row: list[str]) -> tuple[str, int]:
        name, domain = self.query(row)
        key = f"{name.strip().lower()}|{domain.strip().lower()}" if name.strip() and domain.strip() else ""
        return key, find_email(name, domain).cost

    def result_cells(self, row: list[str], processed: bool, at: datetime) -> list[str]:
        name, domain = self.query(row)
        return (find_email(name, domain) if processed else cancelled_result(name, domain)).as_bulk_row(at)


def locate(kind: ListKind, header: list[str]) -> Layout:
    """The layout of a list of ``kind`` with this header row (1004 / 400 when the columns are missing)."""
    return VerifyLayout.locate(header) if kind is ListKind.VERIFY else FinderLayout.locate(header)


@dataclass(frozen=True)
class StoredList:
    """An accepted upload on disk, with what one pass over it learnt: row count and cumulative cost."""

    path: Path
    layout: Layout
    cumulative_cost: np.ndarray
    unique_rows: int
    costs_path: Path | None = None

    @property
    def total(self) -> int:
        return len(self.cumulative_cost)

    @property
    def total_cost(self) -> int:
        return self.cost_of_first(self.total)

    def cost_of_first(self, rows: int) -> int:
        """Credits due once the first ``rows`` rows are processed (duplicates and free rows cost 0)."""
        return int(self.cumulative_cost[rows - 1]) if rows > 0 else 0

    def with_saved_costs(self, costs_path: Path) -> StoredList:
        """Save the cumulative cost beside the list (atomically) so a restart need not price it again."""
        import numpy as np

        temp = costs_path.with_name(f".{costs_path.name}.{os.getpid()}.tmp")
        with open(temp, "wb") as out:
            np.save(out, self.cumulative_cost)
        os.replace(temp, costs_path)
        return StoredList(self.path, self.layout, self.cumulative_cost, self.unique_rows, costs_path)

    def delete(self) -> None:
        """Remove the stored CSV and its saved costs (blocking: run in a thread)."""
        self.path.unlink(missing_ok=True)
        if self.costs_path is not None:
            self.costs_path.unlink(missing_ok=True)


def load_stored(path: Path, costs_path: Path, kind: ListKind, unique_rows: int) -> StoredList:
    """A list stored by an earlier process: its header re-read, its costs memory-mapped (not loaded)."""
    import numpy as np

    try:
        header = next(read_rows(path), [])
        costs = np.load(costs_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise unreadable(costs_path if path.exists() else path, exc) from exc
    try:
        layout = locate(kind, header)
    except ClearoutError as exc:
        raise unreadable(path, exc.message) from exc
    return StoredList(path, layout, costs, unique_rows, costs_path)


def store_upload(src: BinaryIO, filename: str, dest: Path, kind: ListKind) -> StoredList:
    """Copy an upload to ``dest`` (a ``.csv`` path), read it once and price it. Blocking: run in a thread.

    Raises :class:`ClearoutError` 1100 (unreadable spreadsheet or CSV), 1004 (no email column / no rows),
    or a 400 for a finder file without name and domain/company columns; ``dest`` is removed on failure.
    """
    try:
        if filename.lower().endswith(".xlsx"):
            _xlsx_to_csv(src, dest)
        else:
            with open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        try:
            return _price(dest, kind)
        except csv.Error as exc:  # e.g. a binary file named .csv: a field past the csv module's size limit
            raise ClearoutError.of(1100) from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _xlsx_to_csv(src: BinaryIO, dest: Path) -> None:
    from openpyxl import load_workbook  # imported on first use: most lists are CSV

    try:
        workbook = load_workbook(src, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException for non-xlsx bytes
        raise ClearoutError.of(1100) from exc
    try:
        sheet = workbook.active
        if sheet is None or not hasattr(sheet, "iter_rows"):  # no worksheet to read (a chart sheet only)
            raise ClearoutError.of(1100)
        with open(dest, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            for values in sheet.iter_rows(values_only=True):
                cells = [_xlsx_cell(v) for v in values]
                while cells and not cells[-1]:
                    cells.pop()
                writer.writerow(cells)
    finally:
        workbook.close()


def _xlsx_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _price(path: Path, kind: ListKind) -> StoredList:
    import numpy as np  # imported on first upload: keeps the server's start (and every test fixture) fast

    rows = read_rows(path)
    header = next(rows, None)
    header = header or []
    layout = locate(kind, header)
    keys, costs = array("q"), bytearray()
    for row in rows:
        key, cost = layout.key_and_cost(row)
        keys.append(hash(key) if key else 0)  # dedup within this pass only, so hash() is fine here
        costs.append(cost)
    if not costs:
        raise (
            ClearoutError.of(1004)
            if kind is ListKind.VERIFY
            else _bad_finder_file("must have at least one row")
        )
    hashed = np.frombuffer(keys, dtype=np.int64)
    distinct, first_seen = np.unique(hashed, return_index=True)
    is_first = np.zeros(len(costs), dtype=bool)
    is_first[first_seen] = True
    priced = np.frombuffer(bytes(costs), dtype=np.uint8) * is_first
    unique_rows = len(distinct) - int(bool(np.any(hashed == 0)))
    return StoredList(path, layout, np.cumsum(priced, dtype=np.uint32), unique_rows)


@dataclass
class BulkList:
    """One uploaded list and its life: running → completed | cancelled, then maybe expired or removed.

    Times are wall-clock (``time.time()``) so that they mean the same in the next process.
    """

    id: str
    kind: ListKind
    name: str
    size: int
    stored: StoredList
    rate: float
    anchor: float
    """Wall-clock time from which the list advances at ``rate`` rows/s beyond ``base_rows``."""
    base_rows: int = 0
    paused: bool = False
    created_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: ListStatus = ListStatus.RUNNING
    cancelled_on: datetime | None = None
    observed_rows: int = 0
    charged: int = 0
    expired: bool = False
    downloaded: bool = False

    @property
    def total(self) -> int:
        return self.stored.total

    @property
    def advancing(self) -> bool:
        """Whether the list is still processing rows (running and not held)."""
        return self.status is ListStatus.RUNNING and not self.paused

    def processed(self, now: float) -> int:
        """Rows verified by wall-clock time ``now``; never fewer than already observed (clock steps back)."""
        if not self.advancing:
            return max(self.base_rows, self.observed_rows)
        advanced = self.base_rows + max(0, int((now - self.anchor) * self.rate))
        return max(self.observed_rows, min(self.total, advanced))

    def observe(self, now: float) -> bool:
        """Bring status and charges up to ``now``; True when something a record holds changed."""
        processed = self.processed(now)
        before = (self.status, self.observed_rows)
        if self.status is ListStatus.RUNNING and processed >= self.total:
            self.status, self.base_rows = ListStatus.COMPLETED, self.total
        self.observed_rows = processed
        self.charged = self.stored.cost_of_first(processed)
        return before != (self.status, self.observed_rows)

    def hold(self, now: float, paused: bool) -> None:
        """Freeze (``paused``) or resume the list from the rows it has processed by ``now``."""
        self.base_rows, self.anchor, self.paused = self.processed(now), now, paused

    @property
    def reserved(self) -> int:
        """Credits a running list will still charge (held back from new uploads and instant calls)."""
        return self.stored.total_cost - self.charged if self.status is ListStatus.RUNNING else 0

    def percent(self, now: float) -> int:
        if self.status is ListStatus.COMPLETED:
            return 100
        return self.processed(now) * 100 // self.total

    def cancel(self, now: float) -> None:
        """Stop at once: rows not yet processed become Unknown / 605 and are never charged."""
        self.base_rows = self.processed(now)
        self.status = ListStatus.CANCELLED
        self.cancelled_on = datetime.now(UTC)
        self.observe(now)

    def summary(self) -> dict[str, str]:
        """``data`` of the cancel and remove answers (Clearout's SDK reads ``list_id`` and ``name``)."""
        return {
            "list_id": self.id,
            "name": self.name,
            "source": "upload",
            "created_on": iso_utc(self.created_on),
        }

    def to_record(self) -> dict[str, Any]:
        """What a restart needs to resume the list: its ledger (observed rows and their charge) and life."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "name": self.name,
            "size": self.size,
            "total": self.total,
            "unique_rows": self.stored.unique_rows,
            "rate": self.rate,
            "created_on": self.created_on.isoformat(),
            "status": self.status.value,
            "cancelled_on": self.cancelled_on.isoformat() if self.cancelled_on else None,
            "processed": self.observed_rows,
            "charged": self.charged,
            "expired": self.expired,
            "downloaded": self.downloaded,
            "removed": False,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], stored: StoredList, now: float, paused: bool) -> BulkList:
        """The list of an earlier process, resuming at ``now`` from the rows it was observed to process."""
        processed = int(record["processed"])
        cancelled_on = record["cancelled_on"]
        return cls(
            id=record["id"], kind=ListKind(record["kind"]), name=record["name"], size=int(record["size"]),
            stored=stored, rate=float(record["rate"]), anchor=now, base_rows=processed, paused=paused,
            created_on=datetime.fromisoformat(record["created_on"]), status=ListStatus(record["status"]),
            cancelled_on=datetime.fromisoformat(cancelled_on) if cancelled_on else None,
            observed_rows=processed, charged=int(record["charged"]), expired=bool(record["expired"]),
            downloaded=bool(record["downloaded"]),
        )  # fmt: skip

    def retire(self) -> RetiredList:
        """What stays of a removed list: its charges and its share of the counters and the daily limit."""
        return RetiredList(self.id, self.kind, self.created_on, self.total, self.charged)

    @property
    def result_name(self) -> str:
        suffix = "clearout_results" if self.kind is ListKind.VERIFY else "appended_clearout_finder_results"
        return f"{Path(self.name).stem}_{suffix}.csv"

    def result_chunks(self, now: float) -> Iterator[bytes]:
        """The result CSV as it stands at ``now``, streamed from disk (a sync generator: runs in a thread)."""
        processed, layout = self.processed(now), self.stored.layout
        step = timedelta(seconds=1 / self.rate)
        stopped = self.cancelled_on or datetime.now(UTC)
        rows = read_rows(self.stored.path)
        header = next(rows)
        width = len(header)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*header, *layout.result_columns])
        for index, row in enumerate(rows):
            done = index < processed
            if len(row) < width:
                row += [""] * (width - len(row))
            at = self.created_on + step * (index + 1) if done else stopped
            writer.writerow([*row, *layout.result_cells(row, done, at)])
            if out.tell() >= _CHUNK_CHARS:
                yield out.getvalue().encode("utf-8", "surrogateescape")
                out.seek(0)
                out.truncate()
        yield out.getvalue().encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class RetiredList:
    """A removed list: gone from every endpoint, but its credits stay spent and its uploads counted."""

    id: str
    kind: ListKind
    created_on: datetime
    total: int
    charged: int

    def to_record(self) -> dict[str, Any]:
        """The tombstone written over the list's record."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "created_on": self.created_on.isoformat(),
            "total": self.total,
            "charged": self.charged,
            "removed": True,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RetiredList:
        return cls(
            record["id"],
            ListKind(record["kind"]),
            datetime.fromisoformat(record["created_on"]),
            int(record["total"]),
            int(record["charged"]),
        )
