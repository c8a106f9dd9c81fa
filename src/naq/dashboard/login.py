"""The login form of a dashboard with a token: ``GET /login`` shows it, ``POST /login`` checks
the token and sets the session cookie, ``POST /logout`` clears it (see :mod:`.auth`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from .auth import LOGIN_PATH, LOGOUT_PATH, SESSION_COOKIE, Guard, cookie_header, local_path

TEMPLATES_DIR = Path(__file__).parent / "templates"


def login_router(guard: Guard) -> APIRouter:
    """The routes of the login form for the app ``guard`` protects."""
    router = APIRouter(include_in_schema=False)
    templates = Jinja2Templates(directory=TEMPLATES_DIR)

    def form(request: Request, next_path: str, error: str | None, status: int) -> Response:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": next_path, "error": error, "csrf_token": request.state.csrf_token},
            status_code=status,
        )

    @router.get(LOGIN_PATH)
    async def login_page(request: Request, next: str = "/") -> Response:
        next_path = local_path(next)
        if guard.token is None or guard.is_session(request.cookies.get(SESSION_COOKIE)):
            return RedirectResponse(next_path, status_code=303)
        return form(request, next_path, None, 200)

    @router.post(LOGIN_PATH)
    async def login(request: Request) -> Response:
        fields = await request.form()
        next_value = fields.get("next")
        next_path = local_path(next_value if isinstance(next_value, str) else None)
        if guard.token is None:
            return RedirectResponse(next_path, status_code=303)
        token = fields.get("token")
        if not isinstance(token, str) or not guard.is_token(token):
            return form(request, next_path, "That is not the dashboard's token.", 401)
        response = RedirectResponse(next_path, status_code=303)
        secure = request.url.scheme == "https"
        response.headers.append(
            "set-cookie", cookie_header(SESSION_COOKIE, guard.session_value(), secure=secure)
        )
        return response

    @router.post(LOGOUT_PATH)
    async def logout(request: Request) -> Response:
        target = "/" if guard.token is None else LOGIN_PATH
        response = RedirectResponse(target, status_code=303)
        secure = request.url.scheme == "https"
        response.headers.append(
            "set-cookie", cookie_header(SESSION_COOKIE, "", secure=secure, max_age=0)
        )
        return response

    return router
