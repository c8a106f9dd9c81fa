"""The web dashboard (``naq dashboard``, ``pip install 'naq[dashboard]'``): one FastAPI app
with server-rendered pages (Jinja2 + htmx), live updates over Server-Sent Events and a JSON
API under ``/api`` described by ``/api/openapi.json``. Built by :func:`create_app` from the
settings, with no module-level state; every static file ships in the package."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
