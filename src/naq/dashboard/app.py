"""The dashboard's FastAPI app, built by :func:`create_app` (no module-level state)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..settings import Settings, load_settings
from . import api, pages
from .auth import install_auth
from .backend import Backend
from .hub import LiveHub


def create_app(settings: Settings | None = None, *, token: str | None = None) -> FastAPI:
    """The dashboard app on ``settings`` (default: from the environment). ``token`` (default
    ``NAQ_DASHBOARD_TOKEN``): when set, every request must carry it."""
    settings = settings or load_settings()
    backend = Backend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.stop()

    app = FastAPI(
        title="naq dashboard",
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.hub = LiveHub(backend)
    app.state.token = token if token is not None else settings.dashboard_token
    install_auth(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    return app
