"""The buttons on a bulk task in the Airflow UI: "Run report" and "Clearout list".

At the end of each run of a task (deferral included) Airflow's task runner calls each link's
``get_link`` on the worker and stores the URL in XCom, which the UI then shows; an empty URL shows no
button.

- :class:`RunReportLink` opens the run's report in the Airflow UI: the "Clearout report" tab of the DAG
  run, served by the UI plugin (:mod:`clearout_provider.ui`). It is there from the first try on; until
  the run's report task has written the report, the tab says so.
- :class:`ClearoutListLink` opens the task's bulk list in the Clearout app, but only when the task's
  connection is a real Clearout account (its API host is Clearout's): a list in the sandbox, or a
  Mail.so batch, is in no Clearout app. Operators and sensors that work on a bulk list push its id to
  XCom under :data:`LIST_ID_XCOM_KEY` before they defer.

The app URLs are INFERRED: Clearout documents the app's "Email Verifier → Lists" and "Email Finder →
Lists" pages but no per-list URL. The list id goes in the query string, so if the app ignores it the
link still lands on the right list page. Change :data:`APP_LIST_URLS` if Clearout publishes one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

from clearout_provider.ui import RUN_VIEW_ROUTE

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
#: The domain of Clearout's own API hosts (``api.clearout.io``).
CLEAROUT_DOMAIN = "clearout.io"


def list_url(list_id: str, kind: str = "verify") -> str:
    """The Clearout app URL of a bulk list."""
    return APP_LIST_URLS[kind].format(list_id=list_id)


def is_clearout_account(host: str | None) -> bool:
    """Whether a ``clearout`` connection with this host talks to Clearout itself (an empty host does:
    it means Clearout's default API), not to a sandbox or another stand-in."""
    from clearout_provider.hooks.clearout import normalise_base_url

    try:
        hostname = urlsplit(normalise_base_url(host)).hostname or ""
    except ValueError:
        return False
    return hostname == CLEAROUT_DOMAIN or hostname.endswith("." + CLEAROUT_DOMAIN)


def run_report_url(dag_id: str, run_id: str) -> str:
    """The run report's tab on the DAG run page of the Airflow UI.

    Absolute when ``[api] base_url`` is set (as every deployment behind a proxy or on a sub-path must),
    else a path on the UI's own host.
    """
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/plugin/{RUN_VIEW_ROUTE}"


class RunReportLink(BaseOperatorLink):
    """Link to the run's report in the Airflow UI (see :func:`run_report_url`)."""

    name = "Run report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return run_report_url(ti_key.dag_id, ti_key.run_id)


class ClearoutListLink(BaseOperatorLink):
    """Link to the task's bulk list in the Clearout app; empty until the task has a list, and for a
    job that is not in a Clearout account (another verifier, a sandbox connection).

    The kind (verify or finder) is read from the operator's ``clearout_kind`` attribute, the verifier
    from ``verifier_name`` (default Clearout) and the connection from ``clearout_conn_id``.
    """

    name = "Clearout list"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.execution_time.xcom import XCom

        if getattr(operator, "verifier_name", "clearout") != "clearout":
            return ""
        list_id = XCom.get_value(ti_key=ti_key, key=LIST_ID_XCOM_KEY)
        if not list_id:
            return ""
        try:
            host = BaseHook.get_connection(getattr(operator, "clearout_conn_id", "clearout_default")).host
        except AirflowNotFoundException:
            return ""
        if not is_clearout_account(host):
            return ""
        return list_url(str(list_id), getattr(operator, "clearout_kind", "verify"))


#: The buttons of a bulk verify task: its run's report first, then its list in the Clearout app.
BULK_VERIFY_LINKS: tuple[BaseOperatorLink, ...] = (RunReportLink(), ClearoutListLink())
