"""``naq dashboard``: serve the web dashboard (``pip install 'naq[dashboard]'``)."""

from __future__ import annotations

import importlib.util

import typer

from ..log import setup_logging
from ..settings import load_settings
from .common import URL_OPTION, fail, handle_errors

#: The modules of the ``dashboard`` extra.
DASHBOARD_MODULES = ("fastapi", "jinja2", "uvicorn", "python_multipart")


def missing_modules() -> list[str]:
    """The modules of the ``dashboard`` extra that cannot be imported here."""
    return [name for name in DASHBOARD_MODULES if importlib.util.find_spec(name) is None]


def register(app: typer.Typer) -> None:
    """Add ``naq dashboard`` to ``app``."""

    @app.command()
    @handle_errors
    def dashboard(
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to listen on (beyond loopback: needs a token)."
        ),
        port: int = typer.Option(8080, "--port", "-p", help="Port to listen on."),
        token: str = typer.Option(
            None,
            "--token",
            help="Token every request must carry (default: NAQ_DASHBOARD_TOKEN, which "
            "other users cannot read in the process list).",
            show_default=False,
        ),
        url: str = URL_OPTION,
    ) -> None:
        """Serve the web dashboard: pages at http://HOST:PORT/, JSON API under /api."""
        missing = missing_modules()
        if missing:
            raise fail(f"the dashboard needs {', '.join(missing)}: pip install 'naq[dashboard]'")
        try:
            from ..dashboard.server import serve
        except ImportError as exc:
            raise fail(
                f"the dashboard cannot start ({exc}): pip install 'naq[dashboard]'"
            ) from None
        settings = load_settings(url)
        setup_logging(settings.log_level)
        serve(host, port, token, settings)
