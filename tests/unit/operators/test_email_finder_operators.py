"""ClearoutEmailFinderOperator and ClearoutBulkEmailFinderOperator with ClearoutHook mocked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import TaskDeferred
from operator_fakes import credits, task_context

from clearout_provider.clearout.models import BulkUpload, FinderResult
from clearout_provider.exceptions import ClearoutServerError, ClearoutTimeout
from clearout_provider.operators.email_finder import (
    ClearoutBulkEmailFinderOperator,
    ClearoutEmailFinderOperator,
    TooManyForInstant,
)
from clearout_provider.sandbox.clearout_finder import find_email

#: Two people to search, one of them twice, and one without a domain (not searched).
PEOPLE = "name,domain\nSteven Morris,apple.com\nJane Roe,acme.com\nsteven morris,APPLE.COM\nAnn Lee,\n"


def answer(name: str, domain: str, **kwargs: Any) -> FinderResult:
    """The Email Finder's answer (the sandbox's deterministic one)."""
    return FinderResult.from_api(find_email(name, domain).as_instant(datetime.now(UTC)))


@pytest.fixture
def hook() -> Iterator[mock.MagicMock]:
    with mock.patch("clearout_provider.operators.email_finder.ClearoutHook", autospec=True) as cls:
        instance = cls.return_value
        instance.find_email.side_effect = answer
        instance.get_credits.side_effect = credits(50, 46)
        yield instance


def finder(tmp_path: Path, **kwargs: Any) -> ClearoutEmailFinderOperator:
    (tmp_path / "people.csv").write_text(PEOPLE)
    return ClearoutEmailFinderOperator(
        task_id="find", source=str(tmp_path / "people.csv"), workdir=str(tmp_path / "w"), **kwargs
    )


def rows_of(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return pq.read_table(summary["result_path"].removeprefix("file://")).to_pylist()


def test_each_distinct_query_is_searched_once_and_every_row_gets_its_answer(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    summary = finder(tmp_path, timeout_ms=20_000).execute(task_context("find"))

    searched = sorted((c.args[0].lower(), c.args[1].lower()) for c in hook.find_email.call_args_list)
    assert searched == [("jane roe", "acme.com"), ("steven morris", "apple.com")]
    assert all(c.kwargs == {"timeout_ms": 20_000} for c in hook.find_email.call_args_list)
    assert (summary["searched"], summary["resumed"], summary["failed"]) == (2, 0, 0)
    assert summary["credits_spent"] == 4 and summary["rows"] == 4
    found = [r["finder_email"] for r in rows_of(summary)]
    assert found == ["stevenmorris@apple.com", "jane@acme.com", "stevenmorris@apple.com", None]


def test_a_retry_searches_only_what_the_earlier_try_left_unanswered(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    def first_try(name: str, domain: str, **kwargs: Any) -> FinderResult:
        if name.startswith("Jane"):
            raise ClearoutServerError("Clearout answered 503", http_status=503)  # kills the try
        return answer(name, domain)

    hook.find_email.side_effect = first_try
    with pytest.raises(ClearoutServerError):
        finder(tmp_path, max_concurrency=1).execute(task_context("find", try_number=1))
    hook.find_email.reset_mock(side_effect=True)
    hook.find_email.side_effect = answer
    hook.get_credits.side_effect = credits(48, 46)

    summary = finder(tmp_path).execute(task_context("find", try_number=2))

    assert [c.args[0] for c in hook.find_email.call_args_list] == ["Jane Roe"]  # Steven was paid for
    assert (summary["searched"], summary["resumed"]) == (1, 1)


def test_a_search_still_queued_when_the_wait_ends_is_a_row_without_an_answer(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    def slow(name: str, domain: str, **kwargs: Any) -> FinderResult:
        if name.startswith("Jane"):
            raise ClearoutTimeout("still searching", queue_id="q-123", http_status=524)
        return answer(name, domain)

    hook.find_email.side_effect = slow
    summary = finder(tmp_path).execute(task_context("find"))

    assert summary["failed"] == 1
    jane = rows_of(summary)[1]
    assert jane["finder_email"] is None and "queue id q-123" in jane["finder_reason"]


def test_more_queries_than_max_queries_are_refused_before_any_search(
    hook: mock.MagicMock, tmp_path: Path
) -> None:
    with pytest.raises(TooManyForInstant, match="max_queries=1"):
        finder(tmp_path, max_queries=1).execute(task_context("find"))
    hook.find_email.assert_not_called()


def test_the_bulk_finder_uploads_one_list_and_defers_on_it(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(PEOPLE)
    with mock.patch("clearout_provider.operators.email_finder.ClearoutHook", autospec=True) as cls:
        hook = cls.return_value
        hook.get_credits.return_value = credits(50)[0]
        hook.upload_bulk_finder.return_value = BulkUpload("f" * 24)
        op = ClearoutBulkEmailFinderOperator(
            task_id="find", source=str(tmp_path / "people.csv"), workdir=str(tmp_path / "w"), deferrable=True
        )
        context = task_context("find")
        with pytest.raises(TaskDeferred) as deferral:
            op.execute(context)

    hook.upload_bulk_finder.assert_called_once()
    assert hook.upload_bulk_finder.call_args.kwargs == {"ignore_duplicate_file": False}
    _, kwargs = deferral.value.trigger.serialize()
    assert (kwargs["job_id"], kwargs["kind"]) == ("f" * 24, "finder")
