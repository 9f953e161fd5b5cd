"""The login routes and API tokens: the login page and POST /login (form field `password`, as the
DeepRacer console), logout, and the tokens the laptop tools use (car.console.auth keeps them)."""
from __future__ import annotations

import functools
import html
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from car.console import bodies
from car.console.auth import MAX_TOKEN_LIFETIME_DAYS, TOKEN_LIFETIME_DAYS, LoginRefused
from car.console.errors import ApiError
from car.console.events import event
from car.console.gate import Access, credential
from car.console.responses import fail, ok

log = logging.getLogger("racer.console")

LOGIN_PAGE = Path(__file__).resolve().parents[1] / "pages" / "login.html"
MAX_LOGIN_BODY = 4096


@functools.cache
def login_page() -> str:
    """The login page's template: `{{error}}` stands where a refusal's reason is shown."""
    return LOGIN_PAGE.read_text()


def render_login(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(login_page().replace("{{error}}", message), status_code=status, headers=headers)


async def login_form(request: Request) -> Response:
    access = Access.of(request)
    if access.auth.session(request.cookies.get(access.site.cookie)):
        return RedirectResponse("/", status_code=303)
    return render_login()


async def login(request: Request) -> Response:
    access = Access.of(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    client = request.client.host if request.client else "unknown"
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return fail(411, "send the password as a form with a Content-Length")
    if int(length) > MAX_LOGIN_BODY:
        return fail(413, f"a login form is at most {MAX_LOGIN_BODY} bytes")
    try:
        access.auth.check_login(client)
        async with request.form(max_files=0, max_fields=8, max_part_size=4096) as form:
            password = str(form.get("password") or "")
        sid, _ = await access.logins.run(access.auth.login, password, client)
    except LoginRefused as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        log.warning("console login refused for %s: %s", client, exc.reason)
        if wants_json:
            return fail(exc.status, exc.reason, headers)
        return render_login(exc.reason, exc.status, headers)
    response: Response = ok() if wants_json else RedirectResponse("/", status_code=303)
    response.set_cookie(access.site.cookie, sid, httponly=True, samesite="strict", secure=access.site.secure, path="/")
    event("login", client=client)
    return response


async def logout(request: Request) -> Response:
    """Ends the session (a token's request: nothing to end); its sockets close within 100 ms."""
    access = Access.of(request)
    access.auth.logout(request.scope["state"].get("session_id"))
    response = ok()
    response.delete_cookie(access.site.cookie, path="/", secure=access.site.secure, httponly=True, samesite="strict")
    return response


async def tokens(request: Request) -> Response:
    """A session sees every token; a token sees only itself."""
    own = credential(request)
    listed = Access.of(request).auth.tokens()
    return ok(tokens=listed if own.kind == "session" else [t for t in listed if t["id"] == own.key])


async def create_token(request: Request) -> Response:
    """{"name": who uses it, "days": lifetime 1..365 (default 90)} -> {id, token, expires}."""
    body = await bodies.read_object(request.stream())
    name = bodies.text(body, "name", 80)
    days = bodies.optional_integer(body, "days", 1, MAX_TOKEN_LIFETIME_DAYS, TOKEN_LIFETIME_DAYS)
    token_id, token, expires = Access.of(request).auth.create_token(name, days)
    event("token_created", id=token_id, name=name, expires=expires)
    return ok(id=token_id, token=token, expires=expires)


async def revoke_token(request: Request) -> Response:
    """Revokes the token; sockets opened with it close within 100 ms. A token revokes only itself."""
    own = credential(request)
    if own.kind == "token" and request.path_params["token_id"] != own.key:
        raise ApiError(403, "an API token can revoke only itself; log in to manage other tokens")
    if not Access.of(request).auth.revoke_token(request.path_params["token_id"]):
        raise ApiError(404, "no such token")
    event("token_revoked", id=request.path_params["token_id"])
    return ok()


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/api/tokens", tokens, methods=["GET"]),
    Route("/api/tokens", create_token, methods=["POST"]),
    Route("/api/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
