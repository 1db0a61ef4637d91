"""run_files.scratch_dir: where a hook's local files live while one try works on them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach
from fsspec.implementations.memory import MemoryFileSystem

from clearout_provider.run_files import scratch_dir


def test_on_local_disk_it_is_the_task_folder_and_the_files_stay(tmp_path: Path) -> None:
    with scratch_dir(ObjectStoragePath(f"file://{tmp_path}")) as scratch:
        (scratch / "upload.csv").write_text("email\n")
    assert scratch == tmp_path
    assert (tmp_path / "upload.csv").read_text() == "email\n"


def test_on_a_store_it_is_a_local_folder_of_its_own_removed_after_the_block() -> None:
    attach("memory", fs=MemoryFileSystem())
    folder = ObjectStoragePath(f"memory://scratch-test-{uuid.uuid4().hex}/task")
    with scratch_dir(folder) as scratch, scratch_dir(folder) as other:
        (scratch / "result.csv").write_text("email\n")
        assert scratch.is_dir() and scratch != other  # two tries on one worker never share one
    assert not scratch.exists() and not other.exists()
    assert not folder.exists()  # nothing went to the store


def test_on_a_store_it_is_removed_when_the_block_fails() -> None:
    attach("memory", fs=MemoryFileSystem())
    folder = ObjectStoragePath(f"memory://scratch-test-{uuid.uuid4().hex}/task")
    with pytest.raises(RuntimeError), scratch_dir(folder) as scratch:
        (scratch / "upload.csv").write_text("a@example.com\n")
        raise RuntimeError("upload refused")
    assert not scratch.exists()
