"""The sandbox's single ASGI app: one router per emulated vendor, mounted under its own prefix.

``/clearout/v2/...``, ``/clevertap/1/...`` and ``/mailso/v1/...`` are the emulated APIs; ``/healthz``
answers once the app is up (its state restored); ``/_sandbox/faults`` reads and flips the fault switches
the APIs share (see :mod:`.faults`).
"""

from __future__ import annotations

from fastapi import FastAPI

from clearout_provider.sandbox import clearout, clevertap, faults, mailso
from clearout_provider.sandbox.settings import SandboxSettings


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    """Build the app; raises :class:`.SandboxStateError` when ``state_dir`` holds unusable state."""
    settings = settings or SandboxSettings()
    app = FastAPI(title="clearout-provider sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    switches = faults.Faults.from_settings(settings)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(faults.build_router(switches, settings))
    app.include_router(clearout.build_router(settings, switches), prefix="/clearout/v2")
    app.include_router(clevertap.build_router(settings, switches), prefix="/clevertap/1")
    app.include_router(mailso.build_router(settings, switches), prefix="/mailso/v1")
    return app
