"""split_into_chunks: every row once, duplicates together, deterministic files, bounded chunk size."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath

from clearout_provider.contacts import (
    ContactCounts,
    EmailColumnNotFound,
    EmptyContactsFile,
    MalformedContactsFile,
    prepare_contacts,
    split_into_chunks,
)


def contacts_table(n: int, seed: int = 7) -> pa.Table:
    """``n`` rows with repeated addresses (case and whitespace variants), malformed and empty ones."""
    rng = random.Random(seed)
    emails: list[str | None] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.15 and i:
            earlier = emails[rng.randrange(max(0, i - 300), i)] or "x@example.org"
            emails.append(f"  {earlier.upper()} " if rng.random() < 0.5 else earlier)
        elif roll < 0.2:
            emails.append(f"broken{i}@@example.org")
        elif roll < 0.23:
            emails.append(None if rng.random() < 0.5 else "")
        else:
            emails.append(f"user{i}@company{i % 13}.com")
    return pa.table(
        {
            "id": pa.array([f"{i:06d}" for i in range(n)]),
            "Email": pa.array(emails, pa.string()),
            "orders": pa.array(range(n), pa.int32()),
        }
    )


def write_parquet(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


def read(path: str) -> pa.Table:
    return pq.read_table(path.removeprefix("file://"))


def prepared_counts(source: str | Path, workdir: Path) -> ContactCounts:
    return prepare_contacts(source, workdir=workdir).counts


def test_every_row_lands_in_exactly_one_chunk_of_bounded_size(tmp_path: Path) -> None:
    table = contacts_table(2_000)
    paths = split_into_chunks(write_parquet(table, tmp_path / "in.parquet"), tmp_path / "chunks", 300)

    chunks = [read(p) for p in paths]
    assert len(paths) >= 7 and all(0 < c.num_rows <= 300 for c in chunks)
    assert sorted(i for c in chunks for i in c.column("id").to_pylist()) == table.column("id").to_pylist()
    assert all(c.schema == table.schema for c in chunks)  # columns, order and types kept
    by_id = {r["id"]: r for r in table.to_pylist()}
    assert all(by_id[r["id"]] == r for c in chunks for r in c.to_pylist())  # rows unchanged


def test_duplicates_share_a_chunk_so_chunking_costs_no_extra_credit(tmp_path: Path) -> None:
    source = write_parquet(contacts_table(2_000), tmp_path / "in.parquet")
    whole = prepared_counts(source, tmp_path / "whole")

    paths = split_into_chunks(source, tmp_path / "chunks", 250)

    parts = [prepared_counts(p, tmp_path / f"part{i}") for i, p in enumerate(paths)]
    assert whole.duplicates > 200  # the input really repeats addresses across any 250-row window
    assert sum(p.to_verify for p in parts) == whole.to_verify
    assert sum(p.duplicates for p in parts) == whole.duplicates
    assert sum(p.total_rows for p in parts) == whole.total_rows


def test_same_input_gives_the_same_chunk_files(tmp_path: Path) -> None:
    source = write_parquet(contacts_table(1_000), tmp_path / "in.parquet")

    first = split_into_chunks(source, tmp_path / "a", 200)
    again = split_into_chunks(source, tmp_path / "b", 200)

    assert [Path(p).name for p in first] == [Path(p).name for p in again]
    assert [Path(p).read_bytes() for p in first] == [Path(p).read_bytes() for p in again]
    assert Path(first[0]).name.startswith("chunk-00000-") and Path(first[1]).name.startswith("chunk-00001-")
    other = split_into_chunks(
        write_parquet(contacts_table(1_000, seed=8), tmp_path / "o.parquet"), tmp_path / "c", 200
    )
    assert {Path(p).name for p in other}.isdisjoint(Path(p).name for p in first)  # names carry the content


def test_rows_without_a_valid_address_keep_their_order_and_are_cut_anywhere(tmp_path: Path) -> None:
    emails = ["a@x.com", "", "bad@@x", None, "A@X.COM", "b@x.com", "bad@@x", "c@x.com"]
    table = pa.table({"id": [str(i) for i in range(len(emails))], "email": pa.array(emails, pa.string())})

    paths = split_into_chunks(write_parquet(table, tmp_path / "in.parquet"), tmp_path / "chunks", 3)

    assert [read(p).column("id").to_pylist() for p in paths] == [["0", "4", "1"], ["2", "3", "5"], ["6", "7"]]


def test_a_group_is_never_split_unless_it_alone_exceeds_the_chunk(tmp_path: Path) -> None:
    emails = ["a@x.com", "b@x.com", "b@x.com", "B@x.com", "c@x.com"] + ["d@x.com"] * 5 + ["e@x.com"]
    table = pa.table({"Email": emails})

    paths = split_into_chunks(write_parquet(table, tmp_path / "in.parquet"), tmp_path / "chunks", 3)

    assert [read(p).column("Email").to_pylist() for p in paths] == [
        ["a@x.com"],  # cut early: b's three rows do not fit behind it
        ["b@x.com", "b@x.com", "B@x.com"],
        ["c@x.com"],
        ["d@x.com", "d@x.com", "d@x.com"],  # d alone is longer than a chunk: the only group ever split
        ["d@x.com", "d@x.com", "e@x.com"],
    ]


def test_csv_input_keeps_text_and_object_storage_folders_work(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,E-Mail,phone\n1,a@x.com,0044\n2,b@x.com,007\n3,A@X.com,01\n")
    folder = ObjectStoragePath(f"file://{tmp_path / 'chunks'}")

    paths = split_into_chunks(source, folder, 2)

    assert all(Path(p).parent == tmp_path / "chunks" for p in paths)  # local folders come back as paths
    assert [read(p).to_pydict() for p in paths] == [
        {"id": ["1", "3"], "E-Mail": ["a@x.com", "A@X.com"], "phone": ["0044", "01"]},
        {"id": ["2"], "E-Mail": ["b@x.com"], "phone": ["007"]},
    ]
    assert prepared_counts(paths[0], tmp_path / "p").duplicates == 1  # the operator reads chunks as-is


def test_an_input_without_rows_has_no_chunks(tmp_path: Path) -> None:
    source = tmp_path / "header-only.csv"
    source.write_text("email,name\n")
    assert split_into_chunks(source, tmp_path / "chunks", 10) == []


@pytest.mark.parametrize("chunk_rows", [0, -5])
def test_chunk_size_must_be_positive(tmp_path: Path, chunk_rows: int) -> None:
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        split_into_chunks(tmp_path / "unused.csv", tmp_path, chunk_rows)


def test_bad_inputs_get_the_contacts_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EmptyContactsFile):
        split_into_chunks(tmp_path / "empty.csv", tmp_path / "chunks", 10)
    (tmp_path / "noemail.csv").write_text("id,phone\n1,2\n")
    with pytest.raises(EmailColumnNotFound, match="columns present: \\['id', 'phone'\\]"):
        split_into_chunks(tmp_path / "noemail.csv", tmp_path / "chunks", 10)


def test_a_corrupt_page_deep_in_a_parquet_file_is_a_named_error(tmp_path: Path) -> None:
    """The split reads a Parquet input a batch at a time: a bad page found late is still
    MalformedContactsFile, not pyarrow's own OSError."""
    table = pa.table({"email": [f"user{i}@example.com" for i in range(200_000)]})
    pq.write_table(table, tmp_path / "good.parquet", row_group_size=50_000, compression="none")
    data = bytearray((tmp_path / "good.parquet").read_bytes())
    middle = len(data) * 3 // 4
    data[middle : middle + 4000] = b"\xff" * 4000
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    with pytest.raises(MalformedContactsFile, match="not a readable Parquet file"):
        split_into_chunks(tmp_path / "bad.parquet", tmp_path / "chunks", 100_000)
