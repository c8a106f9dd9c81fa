"""Who may use the dashboard, and its protection against cross-site requests.

:func:`install_auth` (called once by :func:`~naq.dashboard.app.create_app`) adds one ASGI
middleware and the routes ``GET /login``, ``POST /login`` and ``POST /logout``.

**Authentication** applies only when a token is set (``app.state.token``: ``--token`` or
``NAQ_DASHBOARD_TOKEN``):

- ``/api/...`` needs ``Authorization: Bearer <token>``; a browser that logged in may use its
  session cookie instead. Otherwise: ``401`` with ``{"detail": ...}`` and
  ``WWW-Authenticate: Bearer``.
- Pages (every other path) need the session cookie ``naq_session``, set by ``POST /login``
  (form fields ``token`` and ``csrf_token``; optional ``next``, a local path to go to after).
  Its value is an HMAC of the token under a key made when the app is built (the token itself
  never reaches the browser's cookie jar; a restart logs everyone out); it is HttpOnly,
  SameSite=Strict, and Secure when the page is served over https. Without it a ``GET`` or
  ``HEAD`` is redirected (``303``) to ``/login?next=<path>``; any other request gets ``401``
  with ``HX-Redirect: /login`` (htmx follows it). ``POST /logout`` clears the cookie.
- A request with a wrong ``Authorization: Bearer`` header is refused even with a good cookie.
- ``/static/...``, ``/login`` and ``/logout`` are public.

Without a token there is no login (every page and API call is open; ``/login`` redirects to
``/``); :func:`~naq.dashboard.server.serve` then refuses to listen beyond the loopback
interface.

**Cross-site requests**, with or without a token: every ``POST``, ``PUT``, ``DELETE`` and
``PATCH`` (``/login`` and ``/logout`` included) is refused with ``403`` unless

1. it carries an ``Authorization: Bearer`` header (the right token when one is set; any value
   without a token: a browser cannot add that header to a cross-site request), or the header
   ``X-CSRF-Token`` - for a form post, the field ``csrf_token`` also does - equal to the
   ``naq_csrf`` cookie; **and**
2. its ``Origin`` header, or when there is none its ``Referer``, if present, names this host
   (the request's ``Host`` header; ``Origin: null`` is refused).

The middleware sets ``request.state.csrf_token`` on every request, and sets the ``naq_csrf``
cookie (random, HttpOnly, SameSite=Strict, Secure over https) on every response outside
``/api`` and ``/static`` to a request that did not carry it. Templates render
``request.state.csrf_token`` into ``<meta name="csrf-token">`` and have htmx send it as
``hx-headers='{"X-CSRF-Token": "..."}'`` (plain forms: a hidden ``csrf_token`` input);
scripts and ``curl`` send the Bearer header.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "naq_session"
CSRF_COOKIE = "naq_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
STATIC_PREFIX = "/static/"
API_PREFIX = "/api"

_UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: A form larger than this is not read for its ``csrf_token`` (the request is refused).
_MAX_FORM_BYTES = 1 << 20
#: What :func:`secrets.token_urlsafe` (32 bytes) makes; any other cookie value is replaced.
_CSRF_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


@dataclass(frozen=True, slots=True)
class Guard:
    """The app whose ``state.token`` is checked (read on each request) and the key session
    cookies are made with."""

    app: FastAPI
    session_key: bytes

    @property
    def token(self) -> str | None:
        """The token every request must carry, or ``None``: no login."""
        token: str | None = getattr(self.app.state, "token", None)
        return token or None

    def is_token(self, given: str) -> bool:
        """Whether ``given`` is the token (compared in constant time)."""
        token = self.token
        return token is not None and hmac.compare_digest(given.encode(), token.encode())

    def session_value(self) -> str:
        """The session cookie's value: an HMAC of the token, never the token."""
        token = self.token or ""
        return hmac.new(self.session_key, token.encode(), hashlib.sha256).hexdigest()

    def is_session(self, cookie: str | None) -> bool:
        """Whether ``cookie`` is a session cookie of this app's token."""
        return (
            self.token is not None
            and cookie is not None
            and hmac.compare_digest(cookie.encode(), self.session_value().encode())
        )


def install_auth(app: FastAPI) -> None:
    """Protect ``app`` as the module docstring describes: the middleware and the login
    routes (``/login``, ``/logout``)."""
    from .login import login_router

    guard = Guard(app, secrets.token_bytes(32))
    app.add_middleware(AuthMiddleware, guard=guard)
    app.include_router(login_router(guard))


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value: path ``/``, HttpOnly, SameSite=Strict, Secure if asked."""
    jar: SimpleCookie = SimpleCookie()
    jar[name] = value
    morsel = jar[name]
    morsel["path"] = "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if secure:
        morsel["secure"] = True
    if max_age is not None:
        morsel["max-age"] = max_age
    return morsel.OutputString()


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site (no scheme, host or ``//``), else ``/``: where
    the login page may send the browser after."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(ch) < 0x20 or ch == "\\" for ch in value):
        return "/"
    return value


def route_path(scope: Scope) -> str:
    """The request's path inside the app (without the ``root_path`` it is mounted under)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def bearer_of(conn: HTTPConnection) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header, if there is one."""
    scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def _is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def _host_port(netloc: str, scheme: str) -> str:
    """``netloc`` lower-cased, without the default port of ``scheme``."""
    netloc = netloc.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(":" + default):
        netloc = netloc[: -len(default) - 1]
    return netloc


def _same_host(conn: HTTPConnection) -> bool:
    """Whether the ``Origin`` (else the ``Referer``), when present, names this host."""
    source = conn.headers.get("origin")
    if source is None:
        source = conn.headers.get("referer")
        if source is None:
            return True
    if source == "null":
        return False
    parts = urlsplit(source)
    host = conn.headers.get("host")
    if not parts.netloc or host is None:
        return False
    return _host_port(parts.netloc, parts.scheme) == _host_port(host, conn.url.scheme)


class AuthMiddleware:
    """The checks of the module docstring, as plain ASGI (streams such as Server-Sent
    Events pass through untouched)."""

    def __init__(self, app: ASGIApp, *, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _authenticated(self, conn: HTTPConnection, bearer: str | None) -> bool:
        if bearer is not None:
            return self.guard.is_token(bearer)
        return self.guard.is_session(conn.cookies.get(SESSION_COOKIE))

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = HTTPConnection(scope)
        if self.guard.token is not None and not (
            self._authenticated(conn, bearer_of(conn)) and _same_host(conn)
        ):
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = HTTPConnection(scope)
        path = route_path(scope)
        api = _is_api(path)
        csrf_token = conn.cookies.get(CSRF_COOKIE, "")
        new_csrf = not _CSRF_TOKEN_RE.fullmatch(csrf_token)
        if new_csrf:
            csrf_token = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_token"] = csrf_token
        secure = conn.url.scheme in ("https", "wss")
        if new_csrf and not api and not path.startswith(STATIC_PREFIX):
            send = _adding_cookie(send, cookie_header(CSRF_COOKIE, csrf_token, secure=secure))

        bearer = bearer_of(conn)
        public = path in (LOGIN_PATH, LOGOUT_PATH) or path.startswith(STATIC_PREFIX)
        if self.guard.token is not None and not public and not self._authenticated(conn, bearer):
            await _unauthenticated(conn, path, api)(scope, receive, send)
            return

        if scope["method"] in _UNSAFE_METHODS:
            refusal, receive = await self._cross_site_refusal(conn, bearer, receive, new_csrf)
            if refusal is not None:
                response: Response
                if api:
                    response = JSONResponse({"detail": refusal}, status_code=403)
                else:
                    response = PlainTextResponse(refusal, status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _cross_site_refusal(
        self, conn: HTTPConnection, bearer: str | None, receive: Receive, new_csrf: bool
    ) -> tuple[str | None, Receive]:
        """Why a state-changing request is refused (``None``: allowed), and the ``receive``
        to read its body with from now on (the body may have been read for the form)."""
        if not _same_host(conn):
            return "cross-site request refused: its Origin is not this host", receive
        if bearer is not None and (self.guard.token is None or self.guard.is_token(bearer)):
            return None, receive
        refusal = (
            f"missing or wrong CSRF token: send header {CSRF_HEADER} (or form field "
            f"{CSRF_FIELD}) equal to the {CSRF_COOKIE} cookie, or an Authorization: Bearer header"
        )
        if new_csrf:  # no cookie to match
            return refusal, receive
        expected = conn.cookies[CSRF_COOKIE]
        given = conn.headers.get(CSRF_HEADER)
        if given is None:
            given, receive = await _form_field(conn, receive, CSRF_FIELD)
        if given is not None and hmac.compare_digest(given.encode(), expected.encode()):
            return None, receive
        return refusal, receive


def _unauthenticated(conn: HTTPConnection, path: str, api: bool) -> Response:
    """The answer to a request without valid credentials."""
    if api:
        return JSONResponse(
            {"detail": "missing or wrong token: send header 'Authorization: Bearer <token>'"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if conn.scope["method"] in ("GET", "HEAD") and "hx-request" not in conn.headers:
        query = conn.scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)
    return PlainTextResponse("login required", status_code=401, headers={"HX-Redirect": LOGIN_PATH})


def _adding_cookie(send: Send, set_cookie: str) -> Send:
    """``send`` with one more ``Set-Cookie`` header on the response."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).append("set-cookie", set_cookie)
        await send(message)

    return wrapped


async def _form_field(
    conn: HTTPConnection, receive: Receive, name: str
) -> tuple[str | None, Receive]:
    """Field ``name`` of a form body (``None`` if the body is no form, too large or has no
    such field), and a ``receive`` that gives the app the body again."""
    content_type = conn.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _FORM_TYPES:
        return None, receive
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            return None, receive
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    try:
        form = await Request(conn.scope, _replaying(body, receive)).form()
    except (MultiPartException, HTTPException):  # a malformed form has no token
        return None, _replaying(body, receive)
    try:
        value = form.get(name)
    finally:
        await form.close()
    return (value if isinstance(value, str) else None), _replaying(body, receive)


def _replaying(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives ``body`` first, then whatever ``receive`` gives."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            message: dict[str, Any] = {"type": "http.request", "body": body, "more_body": False}
            return message
        return await receive()

    return replay
