"""The one table writer (clearout_provider.tables) and the one stage-locally helper (run_files)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from fsspec.implementations.memory import MemoryFileSystem

from clearout_provider.run_files import staged_file
from clearout_provider.tables import TableWriter, table_format, write_table

SCHEMA = pa.schema([("name", pa.string()), ("score", pa.int32()), ("at", pa.timestamp("ms", tz="UTC"))])


def _table(names: list[str | None]) -> pa.Table:
    return pa.table(
        {"name": names, "score": [-5] * len(names), "at": [0] * len(names)},
        schema=SCHEMA,
    )


def _memory_path(name: str) -> ObjectStoragePath:
    """A path on an object store (fsspec's in-memory one): no local file behind it."""
    attach("memory", fs=MemoryFileSystem())
    return ObjectStoragePath(f"memory://tables-test-{uuid.uuid4().hex}/{name}")


def test_parquet_keeps_values_typed_and_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    with TableWriter(out, SCHEMA) as writer:
        writer.write(_table(["=HYPERLINK(1)"]))
        writer.write(_table(["plain"]))

    back = pq.read_table(out)
    assert back.schema == SCHEMA
    assert back.column("name").to_pylist() == ["=HYPERLINK(1)", "plain"]


def test_csv_is_for_people_formulas_neutralised_timestamps_iso(tmp_path: Path) -> None:
    out = tmp_path / "t.CSV"
    write_table(out, _table(["=HYPERLINK(1)", "plain", None]).rename_columns(["@name", "score", "at"]))

    back = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert back.column_names == ["'@name", "score", "at"]
    assert back.column("'@name").to_pylist() == ["'=HYPERLINK(1)", "plain", None]
    assert back.column("score").to_pylist() == [-5, -5, -5]  # numbers cannot hold a formula
    assert out.read_text().splitlines()[1].endswith('"1970-01-01T00:00:00.000Z"')


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet"])
def test_a_file_without_rows_still_has_its_header(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    with TableWriter(out, SCHEMA) as writer:
        writer.write(SCHEMA.empty_table())

    if name.endswith(".csv"):
        assert out.read_text().strip() == '"name","score","at"'
    else:
        assert pq.read_table(out).schema == SCHEMA


def test_write_casts_to_the_file_schema(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    loose = pa.table({"name": ["a"], "score": pa.array([1], pa.int64()), "at": _table(["a"]).column("at")})
    with TableWriter(out, SCHEMA) as writer:
        writer.write(loose)

    assert pq.read_table(out).schema == SCHEMA


def test_an_object_store_path_is_written_like_a_local_one() -> None:
    out = _memory_path("t.csv")
    write_table(out, _table(["+1"]))

    with out.open("rb") as stream:
        assert pacsv.read_csv(stream).column("name").to_pylist() == ["'+1"]


@pytest.mark.parametrize("name", ["t.json", "t.xlsx", "parquet"])
def test_any_other_suffix_is_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"result file .* must end in one of \['.csv', '.parquet', '.pq'\]"):
        TableWriter(tmp_path / name, SCHEMA, what="result file")
    assert not (tmp_path / name).exists()
    assert table_format(tmp_path / "x.PQ") == "parquet"


def test_staged_file_on_local_disk_is_the_target_itself(tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/export.parquet")
    with staged_file(target) as local:
        assert local == tmp_path / "export.parquet"


def test_staged_file_on_a_store_is_copied_up_when_the_block_succeeds() -> None:
    target = _memory_path("export.parquet")
    with staged_file(target) as local:
        assert isinstance(local, Path) and local.name == "export.parquet"
        local.write_bytes(b"content")
        assert not target.exists()  # nothing reaches the store before the block ends
    assert target.read_bytes() == b"content"
    assert not local.exists()  # the scratch copy is gone


def test_staged_file_uploads_nothing_when_the_block_fails() -> None:
    target = _memory_path("export.parquet")
    with pytest.raises(RuntimeError), staged_file(target) as local:
        local.write_bytes(b"half a file")
        raise RuntimeError("export failed")
    assert not target.exists()
    assert not local.exists()
