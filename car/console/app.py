"""The console's web app: the AWS DeepRacer device console's /api/* contract, the page, the stream.

Paths, request bodies and response shapes follow the DeepRacer console, so its habits and
scripts carry over; unlike it, a failure is a 4xx/5xx with {"success": false, "reason": ...}
and nothing answers success before it happened. The routes live in car.console.routes, one module
per concern (models, drive, calibration, status and stream, login and tokens), as plain handlers
that find the console's parts in the app's state. Every route but /login and /api/server_ready
sits behind the session-or-token gate (car.console.gate), which is applied to the whole app, so a
new route cannot be added open by mistake; every body is read through car.console.bodies. Each
change a user makes (mode, start/stop, e-stop, model load, upload, calibration save) is logged as
one structured line (`events`).
"""
from __future__ import annotations

import functools
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from car.console.auth import Session
from car.console.errors import ApiError
from car.console.gate import Access, Gate, style_hash
from car.console.live import LiveConnections
from car.console.responses import fail
from car.console.routes import auth, calibration, drive, models, status
from car.console.service import ConsoleService

log = logging.getLogger("racer.console")

STATIC = Path(__file__).resolve().parent / "static"
INDEX_PAGE = Path(__file__).resolve().parent / "pages" / "index.html"


@dataclass
class Console:
    """A console's parts; built by car.console.server."""

    service: ConsoleService
    access: Access
    live: LiveConnections


@functools.cache
def index_page() -> str:
    return INDEX_PAGE.read_text()


async def index(request: Request) -> Response:
    """The page, with the session's CSRF token and the certificate's fingerprint filled in."""
    session: Session | None = request.scope["state"].get("session")
    page = index_page().replace("{{csrf_token}}", html.escape(session.csrf if session else ""))
    return HTMLResponse(page.replace("{{fingerprint}}", html.escape(Access.of(request).site.fingerprint or "")))


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return fail(exc.status, exc.reason)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return fail(exc.status_code, exc.detail)


async def server_error(request: Request, exc: Exception) -> Response:
    """The details go to the car's log, not to the client."""
    log.exception("console request %s %s failed", request.method, request.url.path)
    return fail(500, "internal error; the car's log has the details")


def create_app(console: Console) -> Starlette:
    routes = [*auth.ROUTES, Route("/", index, methods=["GET"]), *status.ROUTES, *models.ROUTES, *drive.ROUTES,
              *calibration.ROUTES, Mount("/static", StaticFiles(directory=STATIC), name="static")]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: api_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers,
                    middleware=[Middleware(Gate, access=console.access, login_style=style_hash(auth.login_page()))])
    app.state.service, app.state.access, app.state.live = console.service, console.access, console.live
    return app
