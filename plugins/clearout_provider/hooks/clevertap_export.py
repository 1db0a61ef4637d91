"""Profile export files: one flat row per CleverTap record, written page by page.

A million-profile export must not sit in memory, so :class:`ProfileFileWriter` appends each page as it
arrives (a Parquet row group, or CSV lines) to a temporary file that is renamed into place only when
the export completed: a failed export never leaves a truncated file that looks finished. Every
column is a nullable string and every column is present even when no record has it, so downstream
code can rely on the schema.

A segment exported as several cursors at once lands in one part file per cursor; :func:`merge_parts`
joins them into the export file, each profile once (by CleverTap ID, else identity), streaming.

Parquet (the default) is for machines: values byte for byte. CSV is for people: profile values come
from the app's users, so a text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
tab, CR first) gets a leading quote (:mod:`clearout_provider.safe_csv`; ``safe_csv.restore`` undoes it).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from clearout_provider.clevertap_rules import parse_date_value
from clearout_provider.hooks.clevertap_models import EXPORT_BASE_COLUMNS
from clearout_provider.safe_csv import neutralise

SUFFIXES = (".parquet", ".csv")


def as_text(value: Any) -> str | None:
    """A property value as a nullable string: ``$D_`` dates as ISO-8601 UTC, lists/objects as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        epoch = parse_date_value(value)
        return (
            datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch is not None else value
        )
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def object_id_of(record: Mapping[str, Any]) -> str | None:
    """The CleverTap ID of an export record (``platformInfo[].objectId``, else a top-level ``objectId``)."""
    for info in record.get("platformInfo") or ():
        if isinstance(info, Mapping) and info.get("objectId"):
            return str(info["objectId"])
    value = record.get("objectId")
    return str(value) if value else None


def flatten(record: Mapping[str, Any], properties: Sequence[str]) -> dict[str, str | None]:
    """One export row: identity, objectId, email (top-level, else ``profileData.Email``), name, properties."""
    data = record.get("profileData") or {}
    email = record.get("email")
    if email in (None, ""):
        email = data.get("Email", email)
    row = {
        "identity": as_text(record.get("identity")),
        "objectId": object_id_of(record),
        "email": as_text(email),
        "name": as_text(record.get("name") if record.get("name") is not None else data.get("Name")),
    }
    for prop in properties:
        row[prop] = as_text(data.get(prop))
    return row


def export_columns(properties: Sequence[str]) -> tuple[str, ...]:
    """The file's columns: the base columns, then the requested properties (duplicates dropped)."""
    return tuple(dict.fromkeys((*EXPORT_BASE_COLUMNS, *properties)))


class ProfileFileWriter:
    """``with ProfileFileWriter(path, columns) as w: w.write(rows)`` — Parquet (for machines) or CSV (for
    people: formula-leading cells neutralised) by suffix."""

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str]) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in SUFFIXES:
            raise ValueError(
                f"Cannot write an export to {self.path.name!r}: use a .parquet or .csv file name"
            )
        self.columns = tuple(columns)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._schema = pa.schema([(c, pa.string()) for c in self.columns])
        self._parquet: pq.ParquetWriter | None = None
        self._csv_file: Any = None
        self._csv: Any = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix.lower() == ".parquet":
            self._parquet = pq.ParquetWriter(self._tmp, self._schema)
        else:
            self._csv_file = open(self._tmp, "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow([neutralise(c) for c in self.columns])
        return self

    def write_table(self, table: pa.Table) -> None:
        """Append rows that are already a table of this file's columns (a part of a parallel export)."""
        table = table.select(list(self.columns))
        if self._parquet is not None:
            self._parquet.write_table(table.cast(self._schema))
        else:
            self.write(table.to_pylist())

    def write(self, rows: Iterable[Mapping[str, str | None]]) -> None:
        """Append one page of rows."""
        rows = list(rows)
        if self._parquet is not None:
            if rows:
                arrays = [pa.array([r.get(c) for r in rows], pa.string()) for c in self.columns]
                self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        else:
            self._csv.writerows([[neutralise(r.get(c)) for c in self.columns] for r in rows])

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv_file is not None:
            self._csv_file.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def first_of_each_profile(parts: Sequence[str | os.PathLike[str]]) -> list[pa.Array]:
    """Per part, a boolean mask: True for each profile's first row across all parts in order.

    A profile is keyed by its CleverTap ID (every record has one), else its identity; a row with
    neither is always kept. Only the two key columns are read, and the repeats are found by a sort
    (:func:`~clearout_provider.grouping.first_rows`): 5,000,000 profiles cost a few hundred MB.
    """
    import numpy as np
    import pyarrow.compute as pc

    from clearout_provider.grouping import first_rows

    keys = [
        pc.coalesce(t.column("objectId"), pc.binary_join_element_wise("identity:", t.column("identity"), ""))
        for t in (pq.read_table(p, columns=["objectId", "identity"]) for p in parts)
    ]
    sizes = [len(k) for k in keys]
    every = pa.chunked_array([c for k in keys for c in k.chunks], pa.string())
    del keys
    keep = first_rows(every) == np.arange(len(every))
    del every
    bounds = np.cumsum([0, *sizes])
    return [pa.array(keep[bounds[i] : bounds[i + 1]]) for i in range(len(parts))]


def merge_parts(
    parts: Sequence[str | os.PathLike[str]], dest: str | os.PathLike[str], columns: Sequence[str]
) -> tuple[int, int]:
    """Write the Parquet ``parts`` into ``dest`` (Parquet or CSV), each profile once; returns
    ``(profiles written, repeats dropped)``. Read and written a row group at a time."""
    masks = first_of_each_profile(parts)
    written = 0
    with ProfileFileWriter(dest, columns) as writer:
        for part, mask in zip(parts, masks, strict=True):
            offset = 0
            for batch in pq.ParquetFile(part).iter_batches(batch_size=65_536):
                table = pa.Table.from_batches([batch]).filter(mask.slice(offset, batch.num_rows))
                offset += batch.num_rows
                writer.write_table(table)
                written += table.num_rows
    total = sum(len(m) for m in masks)
    return written, total - written
