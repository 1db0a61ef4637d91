"""ClearoutBulkVerifyOperator with ClearoutHook mocked (under ClearoutVerifier): one upload per list,
deferral, resume, collection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import TaskDeferred
from operator_fakes import contacts_csv, credits, task_context, write_bulk_result

from clearout_provider.clearout.models import BulkProgress, BulkUpload, Credits
from clearout_provider.exceptions import ClearoutCreditsError
from clearout_provider.operators.bulk_verify import ClearoutBulkVerifyOperator
from clearout_provider.operators.links import LIST_ID_XCOM_KEY
from clearout_provider.results import DecidedBy
from clearout_provider.triggers.bulk_job import (
    ClearoutBulkJobCancelled,
    ClearoutBulkJobFailed,
    ClearoutBulkJobTrigger,
)

#: Three distinct addresses (Clearout's documented test addresses), a repeat, and one malformed.
EMAILS = [
    "valid@example.com",
    "mailbox_not_found@example.com",
    "catch_all@example.com",
    "valid@example.com",
    "bad@",
]
LIST_ID = "5f0c" * 6  # 24 hex characters, as Clearout's list ids are


@pytest.fixture
def hook() -> Iterator[mock.MagicMock]:
    """The ClearoutHook the operator builds: it accepts uploads and serves their results."""
    with mock.patch("clearout_provider.clearout.verifier.ClearoutHook", autospec=True) as cls:
        instance = cls.return_value
        instance.get_credits.side_effect = credits(100, 97)
        instance.upload_bulk_verify.return_value = BulkUpload(LIST_ID)
        instance.get_bulk_progress.return_value = BulkProgress(LIST_ID, "running", 40.0)
        instance.uploaded: list[Path] = []

        def upload(path: Path, **kwargs: Any) -> BulkUpload:
            instance.uploaded.append(Path(path))
            return BulkUpload(LIST_ID)

        instance.upload_bulk_verify.side_effect = upload
        instance.download_bulk_result.side_effect = lambda list_id, dest: write_bulk_result(
            instance.uploaded[-1], Path(dest)
        )
        yield instance


def operator(tmp_path: Path, **kwargs: Any) -> ClearoutBulkVerifyOperator:
    source = contacts_csv(tmp_path / "contacts.csv", EMAILS)
    return ClearoutBulkVerifyOperator(
        task_id="verify", source=source, workdir=str(tmp_path / "w"), deferrable=True, **kwargs
    )


def deferred(op: ClearoutBulkVerifyOperator, context: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as raised:
        op.execute(context)
    return raised.value


def test_uploads_the_distinct_valid_addresses_once_then_defers_on_the_list(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    context = task_context("verify")
    deferral = deferred(operator(tmp_path, optimize="fastest_turnaround"), context)

    hook.upload_bulk_verify.assert_called_once()
    assert hook.upload_bulk_verify.call_args.kwargs == {
        "optimize": "fastest_turnaround",
        "ignore_duplicate_file": False,
    }
    uploaded = hook.uploaded[0].read_text().split()
    assert uploaded == [
        "Email",
        "valid@example.com",
        "mailbox_not_found@example.com",
        "catch_all@example.com",
    ]
    hook.get_credits.assert_called_once()  # checked before uploading
    context["ti"].xcom_push.assert_called_once_with(key=LIST_ID_XCOM_KEY, value=LIST_ID)
    assert isinstance(deferral.trigger, ClearoutBulkJobTrigger)
    assert deferral.method_name == "execute_complete"
    _, kwargs = deferral.trigger.serialize()
    assert (kwargs["job_id"], kwargs["verifier"], kwargs["kind"]) == (LIST_ID, "clearout", "verify")
    assert kwargs["conn_id"] == "clearout_default"  # the connection's id, never its token


def test_the_success_event_downloads_the_result_and_joins_it_onto_every_row(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    context = task_context("verify")
    op = operator(tmp_path)
    deferred(op, context)

    summary = op.execute_complete(context, {"status": "success", "list_id": LIST_ID, "kind": "verify"})

    hook.download_bulk_result.assert_called_once()
    assert hook.download_bulk_result.call_args.args[0] == LIST_ID
    assert summary["list_id"] == LIST_ID and summary["rows"] == 5  # every input row
    assert summary["sent"] == 3 and summary["credits_spent"] == 3  # the balance before minus after
    rows = pq.read_table(summary["result_path"].removeprefix("file://")).to_pylist()
    assert [r["decided_by"] for r in rows] == [
        DecidedBy.CLEAROUT_BULK,
        DecidedBy.CLEAROUT_BULK,
        DecidedBy.CLEAROUT_BULK,
        DecidedBy.LOCAL_DUPLICATE,
        DecidedBy.LOCAL_SYNTAX,
    ]
    assert [r["clearout_status"] for r in rows[:4]] == ["valid", "invalid", "catch_all", "valid"]


def test_a_retried_task_resumes_its_list_instead_of_uploading_again(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    deferred(operator(tmp_path), task_context("verify", try_number=1))
    hook.get_credits.side_effect = credits(97)

    again = deferred(operator(tmp_path), task_context("verify", try_number=2))

    hook.upload_bulk_verify.assert_called_once()  # the first try's upload only
    hook.get_bulk_progress.assert_called_once_with(LIST_ID)  # asked whether the list is still usable
    assert again.trigger.serialize()[1]["job_id"] == LIST_ID


def test_a_list_cancelled_midway_keeps_what_it_verified_and_uploads_only_the_rest(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    deferred(operator(tmp_path), task_context("verify", try_number=1))
    hook.get_bulk_progress.return_value = BulkProgress(LIST_ID, "cancelled", 33.0)
    hook.download_bulk_result.side_effect = lambda list_id, dest: write_bulk_result(
        hook.uploaded[-1], Path(dest), processed=1
    )
    hook.get_credits.side_effect = credits(99)

    deferred(operator(tmp_path), task_context("verify", try_number=2))

    assert hook.upload_bulk_verify.call_count == 2
    assert hook.uploaded[1].read_text().split() == [
        "Email",
        "mailbox_not_found@example.com",
        "catch_all@example.com",
    ]


def test_too_few_credits_fail_before_anything_is_uploaded(hook: mock.MagicMock, tmp_path: Path) -> None:
    hook.get_credits.side_effect = [Credits(available=2)]
    with pytest.raises(ClearoutCreditsError, match="2 credits but this list has 3 addresses"):
        operator(tmp_path).execute(task_context("verify"))
    hook.upload_bulk_verify.assert_not_called()


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"status": "cancelled", "list_id": LIST_ID, "kind": "verify"}, ClearoutBulkJobCancelled),
        ({"status": "error", "list_id": LIST_ID, "kind": "verify", "message": "boom"}, ClearoutBulkJobFailed),
        (None, Exception),
    ],
)
def test_an_event_other_than_success_fails_with_its_typed_error(
    hook: mock.MagicMock, tmp_path: Path, event: dict[str, Any] | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        operator(tmp_path).execute_complete(task_context("verify"), event)
    hook.download_bulk_result.assert_not_called()


def test_dry_run_calls_clearout_for_nothing(hook: mock.MagicMock, tmp_path: Path) -> None:
    summary = operator(tmp_path, dry_run=True).execute(task_context("verify"))

    assert hook.mock_calls == []
    assert (summary["dry_run"], summary["list_id"], summary["credits_needed"]) == (True, None, 3)
