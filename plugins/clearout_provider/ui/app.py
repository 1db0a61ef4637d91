"""The plugin's FastAPI app, mounted by the api-server at :data:`~clearout_provider.ui.URL_PREFIX`.

Two server-rendered pages (Jinja2 templates, inline SVG, no script), each asking Airflow's auth manager
who the caller is (the UI's session cookie or a bearer token, as Airflow's own API does) and showing
only the DAGs whose runs that user may read in the Airflow UI. A caller who is not logged in is sent to
the login page; a DAG the user may not read answers 404, as if it had no report.

Reports are read where the runs wrote them (:func:`clearout_provider.run_files.base_folder`: the
``CLEAROUT_PROVIDER_DATA_DIR`` the workers use must be set for the api-server too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse
    from jinja2 import Environment
    from starlette.types import Receive, Scope, Send

#: Reports are our own escaped HTML; the policy makes sure no script or outside request could run
#: even if a stored file were tampered with, and that only the Airflow UI may frame the pages.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; form-action 'none'"
)


class ReportsApp:
    """The ASGI app the plugin registers: builds the FastAPI app (:func:`create_app`) on its first request.

    Every Airflow component loads plugins, the workers for each task too; only the api-server serves
    this app, so nothing of it (FastAPI, Airflow's API security, Jinja2) is imported before a request.
    """

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


def _readable_dag_ids(user: BaseUser) -> set[str]:
    """The DAGs whose runs ``user`` may see: the same filter the UI's DAG run list applies."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


def _templates() -> Environment:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("clearout_provider.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _page(template: str, **values: Any) -> HTMLResponse:
    from fastapi.responses import HTMLResponse

    html = _templates().get_template(template).render(**values)
    return HTMLResponse(html, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


def create_app() -> FastAPI:
    """The app: ``GET /`` the runs and their trend (``?dag_id=`` one DAG), ``GET /runs/{dag_id}/{run_id}``
    one run's report."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException, Request, status
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse, RedirectResponse, Response

    app = FastAPI(title="Clearout reports", docs_url=None, redoc_url=None, openapi_url=None)
    # Who is asking: Airflow's own dependency (the UI's session cookie, or a bearer token). A default
    # rather than an Annotated type: the annotations of this module are strings FastAPI resolves in
    # the module's globals, where the lazily imported dependency is not.
    caller = Depends(get_user)

    @app.exception_handler(HTTPException)
    async def login(request: Request, error: HTTPException) -> Response:
        """Not logged in (no session, an expired or a revoked one): to the login page, and back here."""
        if error.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            login_url = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login_url, status_code=status.HTTP_303_SEE_OTHER)
        return await http_exception_handler(request, error)

    @app.get("/", response_class=HTMLResponse)
    def runs_page(dag_id: str | None = None, user: BaseUser = caller) -> HTMLResponse:
        from clearout_provider.run_files import base_folder
        from clearout_provider.ui.facts import read_reports
        from clearout_provider.ui.trend import trend_charts, trend_runs

        every = read_reports(base_folder(), _readable_dag_ids(user))
        reports = [r for r in every if dag_id in (None, r.dag_id)]
        reports.sort(key=lambda r: (r.written_at is not None, r.written_at, r.run_id), reverse=True)
        shown = trend_runs(reports)
        return _page(
            "runs.html",
            reports=reports,
            charts=trend_charts(shown),
            trend_count=len(shown),
            dag_id=dag_id,
            dag_ids=sorted({r.dag_id for r in every}),
        )

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run_page(dag_id: str, run_id: str, user: BaseUser = caller) -> HTMLResponse:
        from clearout_provider.run_files import base_folder
        from clearout_provider.ui.facts import find_report, report_html, report_markdown

        facts = find_report(base_folder(), dag_id, run_id) if dag_id in _readable_dag_ids(user) else None
        report = _report_parts(report_html(facts)) if facts else None
        markdown = report_markdown(facts) if facts and not report else None
        response = _page(
            "run.html", facts=facts, report=report, markdown=markdown, dag_id=dag_id, run_id=run_id
        )
        if facts is None:
            response.status_code = status.HTTP_404_NOT_FOUND
        return response

    return app


def _report_parts(html: str | None) -> dict[str, str] | None:
    """The ``<style>`` and the ``<main>`` content of a report page, to show inside ours; None if absent."""
    if html is None:
        return None
    style = html.partition("<style>")[2].partition("</style>")[0]
    main = html.partition("<main>")[2].rpartition("</main>")[0]
    return {"style": style, "main": main} if main else None
