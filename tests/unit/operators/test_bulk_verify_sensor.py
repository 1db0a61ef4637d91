"""ClearoutBulkVerifySensor with ClearoutHook mocked: poke, defer, and the typed end of the wait."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred
from operator_fakes import task_context

from clearout_provider.clearout.models import BulkProgress
from clearout_provider.exceptions import ClearoutListNotFound
from clearout_provider.operators.links import LIST_ID_XCOM_KEY
from clearout_provider.sensors.bulk_verify import ClearoutBulkVerifySensor
from clearout_provider.triggers.bulk_job import ClearoutBulkJobCancelled, ClearoutBulkJobFailed

LIST_ID = "a" * 24


@pytest.fixture
def hook() -> Iterator[mock.MagicMock]:
    with mock.patch("clearout_provider.sensors.bulk_verify.ClearoutHook", autospec=True) as cls:
        yield cls.return_value


def sensor(**kwargs: object) -> ClearoutBulkVerifySensor:
    return ClearoutBulkVerifySensor(task_id="wait", list_id=LIST_ID, poke_interval=1, **kwargs)


def test_poke_is_done_only_once_the_list_completed(hook: mock.MagicMock) -> None:
    hook.get_bulk_progress.return_value = BulkProgress(LIST_ID, "running", 40.0)
    assert sensor().poke(task_context("wait")).is_done is False

    hook.get_bulk_progress.return_value = BulkProgress(LIST_ID, "completed", 100.0)
    done = sensor().poke(task_context("wait"))

    assert done.is_done is True
    assert done.xcom_value == {
        "list_id": LIST_ID,
        "kind": "verify",
        "progress_status": "completed",
        "percent": 100.0,
    }
    hook.get_bulk_progress.assert_called_with(LIST_ID)


def test_a_finder_list_is_polled_with_the_finder_endpoint(hook: mock.MagicMock) -> None:
    hook.get_finder_bulk_progress.return_value = BulkProgress(LIST_ID, "completed", 100.0)
    assert sensor(kind="finder").poke(task_context("wait")).is_done is True
    hook.get_bulk_progress.assert_not_called()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (BulkProgress(LIST_ID, "cancelled", 10.0), ClearoutBulkJobCancelled),
        (
            ClearoutListNotFound("You are not authorized to access this resource", code=1008),
            ClearoutBulkJobFailed,
        ),
    ],
)
def test_a_list_that_cannot_complete_fails_the_poke_with_a_typed_error(
    hook: mock.MagicMock, answer: object, error: type[Exception]
) -> None:
    if isinstance(answer, Exception):
        hook.get_bulk_progress.side_effect = answer
    else:
        hook.get_bulk_progress.return_value = answer
    with pytest.raises(error):
        sensor().poke(task_context("wait"))


def test_deferrable_pushes_the_list_id_and_defers_while_the_list_runs(hook: mock.MagicMock) -> None:
    hook.get_bulk_progress.return_value = BulkProgress(LIST_ID, "running", 40.0)
    context = task_context("wait")
    with pytest.raises(TaskDeferred) as deferral:
        sensor(deferrable=True, timeout=600).execute(context)

    context["ti"].xcom_push.assert_called_once_with(key=LIST_ID_XCOM_KEY, value=LIST_ID)
    _, kwargs = deferral.value.trigger.serialize()
    assert kwargs["job_id"] == LIST_ID and kwargs["cancel_on_deadline"] is False  # a sensor never cancels
    assert kwargs["deadline"] is not None


def test_a_timeout_event_is_a_sensor_timeout() -> None:
    with pytest.raises(AirflowSensorTimeout, match="did not finish"):
        sensor().execute_complete(
            task_context("wait"), {"status": "timeout", "list_id": LIST_ID, "kind": "verify"}
        )
