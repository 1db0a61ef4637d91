"""The Airflow UI plugin: every run's report, and the trend across runs, inside the Airflow UI.

The list-cleaning DAGs write ``report.md`` / ``report.html`` into their task folders
(:mod:`clearout_provider.report`), on local disk or an object store. The plugin
(:mod:`clearout_provider.ui.plugin`, registered through the ``airflow.plugins`` entry point) mounts a
small FastAPI app in the api-server that reads them back and serves two pages, each also shown inside
the Airflow UI as an external view:

- ``/clearout/`` ("Clearout reports" in the Browse menu): the runs, their verifier and mode, and the
  trend of credits spent, invalid / unknown share and unsubscribes (:mod:`~clearout_provider.ui.trend`);
- ``/clearout/runs/<dag_id>/<run_id>`` ("Clearout report" tab of a DAG run): that run's report.

What a report says is read in ONE module, :mod:`~clearout_provider.ui.facts`. This module only names the
routes, so that :mod:`clearout_provider.operators.links` can point at them without importing the app.
"""

from __future__ import annotations

#: Where the plugin's FastAPI app is mounted in the api-server.
URL_PREFIX = "/clearout"
#: ``url_route`` of the run report's tab on the DAG run page (the UI shows it at
#: ``/dags/<dag_id>/runs/<run_id>/plugin/<RUN_VIEW_ROUTE>``).
RUN_VIEW_ROUTE = "clearout-report"
#: ``url_route`` of the reports page in the UI's menu (``/plugin/<LIST_VIEW_ROUTE>``).
LIST_VIEW_ROUTE = "clearout-reports"
