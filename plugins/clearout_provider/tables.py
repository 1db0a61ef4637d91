"""Table files between tasks: Parquet for machines, CSV for people, by the file's suffix.

Every table file this provider writes for a user — the verification result, the finder result, the
CleverTap extract — goes through :class:`TableWriter`, so the rules are decided once: ``.parquet`` (or
``.pq``) keeps every value typed, byte for byte (what the load and a later run should read back);
``.csv`` goes through :mod:`clearout_provider.safe_csv` (formula-leading text cells and header names
quoted, lists and structs as JSON, timestamps as ISO 8601), because a person opens it in a spreadsheet.

The writer streams: tables are appended a batch at a time (a Parquet row group, or CSV lines), so a
million-row file never sits in memory whole, and a file that got no rows still carries its header. It
writes to a local :class:`~pathlib.Path` or any :class:`~airflow.sdk.ObjectStoragePath` alike.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clearout_provider.safe_csv import csv_schema, csv_table

if TYPE_CHECKING:
    from clearout_provider.contacts import StoragePath

TableFormat = Literal["parquet", "csv"]
#: The formats an operator's ``output_format`` / ``result_format`` offers.
FORMATS: tuple[TableFormat, ...] = ("parquet", "csv")
_FORMAT_OF_SUFFIX: dict[str, TableFormat] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
SUFFIXES: tuple[str, ...] = tuple(sorted(_FORMAT_OF_SUFFIX))


def table_format(path: StoragePath, what: str = "table file") -> TableFormat:
    """``"parquet"`` or ``"csv"`` by ``path``'s suffix; ValueError naming ``what`` for any other suffix."""
    name = str(path).lower()
    for suffix, kind in _FORMAT_OF_SUFFIX.items():
        if name.endswith(suffix):
            return kind
    raise ValueError(f"{what} {path} must end in one of {list(SUFFIXES)}")


class TableWriter:
    """``with TableWriter(path, schema) as writer: writer.write(table)`` — one file of ``schema``,
    Parquet or CSV by suffix (see the module docstring), appended a table at a time.

    :param what: what the file is, for the error about a suffix that is neither Parquet nor CSV.
    """

    def __init__(self, path: StoragePath, schema: pa.Schema, *, what: str = "table file") -> None:
        from clearout_provider.contacts import resolve_path

        self.format = table_format(path, what)
        self.path = resolve_path(path)
        self.schema = schema

    def __enter__(self) -> Self:
        self._stream = self.path.open("wb")
        try:
            if self.format == "csv":
                self._writer: pq.ParquetWriter | pacsv.CSVWriter = pacsv.CSVWriter(
                    self._stream, csv_schema(self.schema)
                )
            else:
                self._writer = pq.ParquetWriter(self._stream, self.schema)
        except BaseException:
            self._stream.close()
            raise
        return self

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (cast to the file's schema: same column names, compatible types)."""
        if not table.num_rows:
            return
        if table.schema != self.schema:
            table = table.cast(self.schema)
        self._writer.write_table(csv_table(table) if self.format == "csv" else table)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._writer.close()
        finally:
            self._stream.close()


def write_table(path: StoragePath, table: pa.Table, *, what: str = "table file") -> None:
    """Write a whole table at once (a :class:`TableWriter` of its schema)."""
    with TableWriter(path, table.schema, what=what) as writer:
        writer.write(table)
