"""The sandbox's single ASGI app: one router per emulated vendor, mounted under its own prefix."""

from __future__ import annotations

from fastapi import FastAPI

from clearout_provider.sandbox import clearout, clevertap
from clearout_provider.sandbox.settings import SandboxSettings


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    """Build the app: ``/clearout/v2/...`` (and later ``/clevertap/1/...``, ``/mailso/v1/...``)."""
    settings = settings or SandboxSettings()
    app = FastAPI(title="clearout-provider sandbox", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(clearout.build_router(settings), prefix="/clearout/v2")
    app.include_router(clevertap.build_router(settings), prefix="/clevertap/1")
    return app
