"""The "Clearout list" button on a task in the Airflow UI: opens the task's bulk list in the Clearout app.

Operators and sensors that work on a bulk list push its id to XCom under :data:`LIST_ID_XCOM_KEY`
before they defer; at the end of each run of the task (deferral included) Airflow's task runner calls
:meth:`ClearoutListLink.get_link` on the worker and stores the URL, which the UI then shows.

The app URLs are INFERRED: Clearout documents the app's "Email Verifier → Lists" and "Email Finder →
Lists" pages but no per-list URL. The list id goes in the query string, so if the app ignores it the
link still lands on the right list page. Change :data:`APP_LIST_URLS` if Clearout publishes one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key under which a task publishes the Clearout list it works on.
LIST_ID_XCOM_KEY = "list_id"

#: Clearout app page of a list, by kind (inferred, see the module docstring).
APP_LIST_URLS = {
    "verify": "https://app.clearout.io/email-verifier/lists?list_id={list_id}",
    "finder": "https://app.clearout.io/email-finder/lists?list_id={list_id}",
}


def list_url(list_id: str, kind: str = "verify") -> str:
    """The Clearout app URL of a bulk list."""
    return APP_LIST_URLS[kind].format(list_id=list_id)


class ClearoutListLink(BaseOperatorLink):
    """Link to the task's bulk list in the Clearout app (empty until the task has a list).

    The kind (verify or finder) is read from the operator's ``clearout_kind`` attribute.
    """

    name = "Clearout list"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        list_id = XCom.get_value(ti_key=ti_key, key=LIST_ID_XCOM_KEY)
        if not list_id:
            return ""
        return list_url(str(list_id), getattr(operator, "clearout_kind", "verify"))
