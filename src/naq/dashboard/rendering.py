"""Rendering the dashboard's templates: the Jinja2 environment (autoescaped: job data is
never marked safe), the context every page gets, and small display helpers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from .backend import Backend

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

#: Plot size (SVG user units) and how many samples it shows.
PLOT_WIDTH = 600
PLOT_HEIGHT = 120
PLOT_SAMPLES = 150


def when(moment: datetime | None) -> str:
    """A time as ``2024-05-01 12:00:03 UTC`` (``-`` for none)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(moment: datetime | None) -> str:
    """How long ago ``moment`` was (``3 s ago``, ``in 5 min``)."""
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"in {text}" if future else f"{text} ago"


def plot_points(samples: Iterable[float]) -> str:
    """An SVG polyline's ``points`` for ``samples`` (newest last, right-aligned)."""
    values = list(samples)[-PLOT_SAMPLES:]
    if not values:
        return ""
    top = max(max(values), 1e-9)
    step = PLOT_WIDTH / (PLOT_SAMPLES - 1)
    offset = PLOT_SAMPLES - len(values)
    return " ".join(
        f"{(offset + i) * step:.1f},{PLOT_HEIGHT - 4 - (v / top) * (PLOT_HEIGHT - 12):.1f}"
        for i, v in enumerate(values)
    )


@cache
def templates() -> Jinja2Templates:
    """The dashboard's templates (a loader over the package's ``templates/``)."""
    found = Jinja2Templates(directory=str(TEMPLATES_DIR))
    found.env.filters["when"] = when
    found.env.filters["ago"] = ago
    found.env.globals["plot_points"] = plot_points
    found.env.globals["plot_width"] = PLOT_WIDTH
    found.env.globals["plot_height"] = PLOT_HEIGHT
    return found


def backend_of(request: Request) -> Backend:
    """The app's :class:`Backend`."""
    backend: Backend = request.app.state.backend
    return backend


def csrf_token(request: Request) -> str:
    """The CSRF token the auth middleware set for this request (empty without one)."""
    return str(getattr(request.state, "csrf_token", "") or "")


def render_text(request: Request, template: str, **context: Any) -> str:
    """A template (usually a fragment) rendered to text."""
    context.setdefault("request", request)
    context.setdefault("connected", backend_of(request).connected)
    return templates().get_template(template).render(context)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page (or fragment) as a response, with the context every page needs."""
    context.setdefault("connected", backend_of(request).connected)
    context.setdefault("csrf_token", csrf_token(request))
    context.setdefault("token_set", bool(request.app.state.token))
    return templates().TemplateResponse(request, template, context, status_code=status_code)
