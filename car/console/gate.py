"""The console's security gate: which requests and WebSockets get in, with what, and how fast logins go.

`Gate` wraps the whole app, so a new route cannot be added open by mistake. The Host header must
name the console (one of `Site.hosts`, set at start), so a rebound DNS name cannot reach it. Every
path but /login and /api/server_ready needs a valid API token (Authorization: Bearer) or a session
cookie. With a session, anything that changes state also needs the session's CSRF token in
X-CSRFToken (a WebSocket: in the csrf query parameter) and, when the browser sends an Origin,
exactly this console's scheme, host and port. Creating an API token needs a session. Every answer
carries the security headers (CSP, no framing, no sniffing, no referrer, no caching). Password
checks run in `LoginPool`, which refuses rather than queues when it is full.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from car.console.auth import Auth, Credential, LoginRefused, Session
from car.console.responses import fail

PUBLIC_PATHS = frozenset({"/login", "/api/server_ready"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_CHANGING_GETS = frozenset({"/api/set_calibration_mode"})
SESSION_ONLY = frozenset({("POST", "/api/tokens")})


class LoginPool:
    """Password checks (scrypt, ~50 ms of CPU each) in a small pool of their own, refused when it is
    full: a login burst never queues work in front of anything else, nor behind itself."""

    def __init__(self, workers: int = 2):
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="login")
        self._slots = threading.BoundedSemaphore(workers)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self._slots.acquire(blocking=False):
            raise LoginRefused(429, "too many logins at once; try again in a second", retry_after=1)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._slots.release()


@dataclass(frozen=True)
class Site:
    """How clients reach this console: the Host names it answers to, HTTPS or not, the name of its
    session cookie, and its certificate's SHA-256 fingerprint (None over HTTP)."""

    hosts: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})
    secure: bool = False
    cookie: str = "racer_session"
    fingerprint: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"


@dataclass
class Access:
    """What the gate and the login routes share: sessions and tokens, the site, the login pool."""

    auth: Auth
    site: Site = field(default_factory=Site)
    logins: LoginPool = field(default_factory=LoginPool)

    @staticmethod
    def of(connection: HTTPConnection) -> Access:
        """The access of the app `connection` reached (car.console.app keeps it in the app's state)."""
        access: Access = connection.app.state.access
        return access


def credential(connection: HTTPConnection) -> Credential:
    """What the gate let this request or socket in with."""
    return connection.scope["state"]["credential"]


def style_hash(page: str) -> str:
    """CSP hash of a page's inline style (the login page's: it must work before any asset is allowed)."""
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    return "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"


class Gate:
    """Host check, authentication, CSRF and security headers for every HTTP request and WebSocket
    (ASGI middleware; `login_style` is the login page's `style_hash`)."""

    def __init__(self, app: ASGIApp, access: Access, login_style: str):
        self.app = app
        self.access = access
        self.headers = [
            (b"content-security-policy",
             f"default-src 'self'; img-src 'self' data: blob:; style-src 'self' {login_style}; script-src 'self'; "
             "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'".encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        refusal = self.host_refusal(scope)
        if refusal is None and scope["path"] not in PUBLIC_PATHS:
            refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send_with_headers)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": bytes(refusal.body).decode()[:120]})
        else:
            await refusal(scope, receive, send_with_headers)

    def host_refusal(self, scope: Scope) -> Response | None:
        host = HTTPConnection(scope).headers.get("host", "")
        try:
            name = urlsplit(f"//{host}").hostname
        except ValueError:
            name = None
        if name is None or name.lower() not in self.access.site.hosts:
            return fail(400, f"Host {host[:80]!r} is not a name this console serves")
        return None

    def refusal(self, scope: Scope) -> Response | None:
        conn = HTTPConnection(scope)
        state = scope.setdefault("state", {})
        authorization = conn.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            token_id = self.access.auth.token_id(authorization[7:].strip())
            if token_id is None:
                return fail(401, "invalid, expired or revoked API token")
            if (scope.get("method"), scope["path"]) in SESSION_ONLY:
                return fail(403, "API tokens are made from a logged-in session, not from another token")
            state["credential"] = Credential("token", token_id)
            return None
        sid = conn.cookies.get(self.access.site.cookie)
        session = self.access.auth.session(sid)
        if session is None or sid is None:
            if scope["type"] == "http" and scope["method"] == "GET" and "text/html" in conn.headers.get("accept", ""):
                return RedirectResponse("/login", status_code=303)
            return fail(401, "log in first (POST /login) or send an API token")
        state["session"] = session
        state["session_id"] = sid
        state["credential"] = Credential("session", sid)
        if scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS or scope["path"] in STATE_CHANGING_GETS:
            return self.csrf_refusal(conn, session, scope["type"] == "websocket")
        return None

    def csrf_refusal(self, conn: HTTPConnection, session: Session, websocket: bool) -> Response | None:
        origin = conn.headers.get("origin")
        if origin and origin.rstrip("/") != f"{self.access.site.scheme}://{conn.headers.get('host', '')}":
            return fail(403, f"cross-origin request from {origin[:80]} refused")
        token = QueryParams(conn.scope.get("query_string", b"")).get("csrf") if websocket \
            else conn.headers.get("x-csrftoken")
        if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            return fail(403, "missing or wrong CSRF token (send the page's csrf-token in X-CSRFToken)")
        return None
