"""The Airflow plugin: the reports app in the api-server, and where the Airflow UI shows its pages.

Registered through the ``airflow.plugins`` entry point (``pyproject.toml``), which every Airflow 3.3
component reads. (The provider's ``plugins`` entry of ``get_provider_info()`` is read only with
``[core] lazy_discover_providers = False``, and would then register the plugin twice.)
"""

from __future__ import annotations

from airflow.sdk.plugins_manager import AirflowPlugin

from clearout_provider.ui import LIST_VIEW_ROUTE, RUN_VIEW_ROUTE, URL_PREFIX
from clearout_provider.ui.app import ReportsApp


class ClearoutReportsPlugin(AirflowPlugin):
    """Clearout run reports and their trend, in the Airflow UI."""

    name = "clearout_reports"
    fastapi_apps = [{"app": ReportsApp(), "url_prefix": URL_PREFIX, "name": "Clearout reports"}]
    external_views = [
        {
            "name": "Clearout reports",
            "href": f"{URL_PREFIX}/",
            "url_route": LIST_VIEW_ROUTE,
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Clearout report",
            "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "url_route": RUN_VIEW_ROUTE,
            "destination": "dag_run",
        },
    ]
