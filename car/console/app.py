"""The console's web app: the AWS DeepRacer device console's /api/* contract, the page, the stream.

Paths, request bodies and response shapes follow the DeepRacer console, so its habits and
scripts carry over; unlike it, a failure is a 4xx/5xx with {"success": false, "reason": ...}
and nothing answers success before it happened. Every route but /login and /api/server_ready
sits behind the session-or-token gate in `Gate`, which is applied to the whole app, so a new
route cannot be added open by mistake.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from car.console.auth import Auth, LoginRefused, Session
from car.console.calibration import CalibrationService
from car.console.errors import ApiError
from car.console.limits import ConnectionLimits
from car.console.models import LoadingStatus, ModelStore
from car.console.node import ConsoleNode
from car.console.state import StateDir
from car.console.stream import BOUNDARY, JpegCache, mjpeg
from car.console.teleop import TeleopSession
from car.console.uploads import UploadLimits, folder_for, install_archive, receive_archive
from car.control.modes import Mode, brief
from car.inference import Policy
from car.runtime import CarRuntime

log = logging.getLogger("racer.console")

STATIC = Path(__file__).resolve().parent / "static"
PAGES = Path(__file__).resolve().parent / "pages"
MAX_LOGIN_BODY = 4096
SESSION_COOKIE = "racer_session"
PUBLIC_PATHS = frozenset({"/login", "/api/server_ready"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_CHANGING_GETS = frozenset({"/api/set_calibration_mode"})
MAX_JSON_BODY = 64 << 10
STREAM_FPS = 15.0
DRIVE_MODES = {"manual": "manual", "auto": "autonomous", "autonomous": "autonomous"}


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


@dataclass
class Console:
    """Everything the handlers share; built by car.console.server."""

    runtime: CarRuntime
    node: ConsoleNode
    auth: Auth
    store: ModelStore
    calibration: CalibrationService
    state: StateDir
    limits: UploadLimits = field(default_factory=UploadLimits)
    secure: bool = False
    fingerprint: str | None = None
    loading: LoadingStatus = field(default_factory=LoadingStatus)
    policy: Policy | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    logins: LoginPool = field(default_factory=LoginPool)

    @contextlib.contextmanager
    def job(self, kind: str, model: str, done: str) -> Iterator[None]:
        """One install or load at a time, reported through /api/isModelLoading."""
        if not self.loading.lock.acquire(blocking=False):
            raise ApiError(409, f"busy: {self.loading.job} of {self.loading.model!r} is still running")
        try:
            self.loading.begin(kind, model)
            try:
                yield
            except ApiError as exc:
                self.loading.finish("error", exc.reason)
                raise
            except Exception as exc:
                self.loading.finish("error", f"{type(exc).__name__}: {exc}")
                raise
            self.loading.finish(done)
        finally:
            self.loading.lock.release()

    def install(self, archive: Path, filename: str) -> str:
        folder = folder_for(filename)
        with self.job("install", folder, "installed"):
            install_archive(archive, folder, self.store, self.state.uploads, self.limits, self.loading.step)
        return folder

    def command(self, name: str, *args: Any) -> None:
        """A control command; control's refusals (start while a fault is present, calibration while
        driving) become 409 with control's reason."""
        try:
            self.runtime.command(name, *args)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None

    def emergency_stop(self) -> None:
        self.runtime.command("emergency_stop")
        log.warning("emergency stop from the console")

    def load(self, folder: str, model_name: str) -> None:
        """Compile the model, stop the car, swap the policy's model: the car needs a new start."""
        with self.job("load", folder, "loaded"):
            self.loading.step("compiling", 30)
            policy = self.store.compile(folder, model_name)
            self.loading.step("switching", 90)
            self.runtime.command("stop")
            self.runtime.call(self.runtime.stack.policy.core.load, policy.model())
            self.policy = policy
            self.node.model_name = folder


def ok(**extra: Any) -> JSONResponse:
    return JSONResponse({"success": True, **extra})


def fail(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "reason": reason}, status_code=status, headers=headers)


async def json_body(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise ApiError(413, f"request body is larger than {MAX_JSON_BODY} bytes")
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def number(body: dict[str, Any], key: str, low: float, high: float) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{key} must be a number, got {brief(value)}")
    if not low <= value <= high:
        raise ApiError(400, f"{key} must be within {low:g}..{high:g}, got {brief(value)}")
    return float(value)


def _style_hash(page: str) -> str:
    """CSP hash of the login page's inline style: the page must work before any asset is allowed."""
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    return "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"


class Gate:
    """Authentication, CSRF and security headers for every HTTP request and WebSocket.

    A request passes with a valid API token (Authorization: Bearer) or a session cookie. With a
    session, anything that changes state also needs the session's CSRF token in X-CSRFToken (a
    WebSocket: in the csrf query parameter) and, when the browser sends an Origin, the same origin.
    """

    def __init__(self, app: ASGIApp, console: Console, login_style: str):
        self.app = app
        self.console = console
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

        refusal = None if scope["path"] in PUBLIC_PATHS else self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send_with_headers)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal.body.decode()[:120]})
        else:
            await refusal(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> Response | None:
        conn = HTTPConnection(scope)
        authorization = conn.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            if self.console.auth.token_valid(authorization[7:].strip()):
                return None
            return fail(401, "invalid or revoked API token")
        sid = conn.cookies.get(SESSION_COOKIE)
        session = self.console.auth.session(sid)
        if session is None:
            if scope["type"] == "http" and scope["method"] == "GET" and "text/html" in conn.headers.get("accept", ""):
                return RedirectResponse("/login", status_code=303)
            return fail(401, "log in first (POST /login) or send an API token")
        scope.setdefault("state", {})["session"] = session
        scope["state"]["session_id"] = sid
        if scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS or scope["path"] in STATE_CHANGING_GETS:
            return self.csrf_refusal(conn, session, scope["type"] == "websocket")
        return None

    @staticmethod
    def csrf_refusal(conn: HTTPConnection, session: Session, websocket: bool) -> Response | None:
        origin = conn.headers.get("origin")
        if origin and urlsplit(origin).netloc != conn.headers.get("host", ""):
            return fail(403, f"cross-origin request from {origin} refused")
        token = QueryParams(conn.scope.get("query_string", b"")).get("csrf") if websocket \
            else conn.headers.get("x-csrftoken")
        if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            return fail(403, "missing or wrong CSRF token (send the page's csrf-token in X-CSRFToken)")
        return None


def create_app(console: Console) -> Starlette:
    login_page = (PAGES / "login.html").read_text()
    index_page = (PAGES / "index.html").read_text()
    cache = JpegCache(console.node)
    runtime = console.runtime

    def render_login(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return HTMLResponse(login_page.replace("{{error}}", message), status_code=status, headers=headers)

    async def login_form(request: Request) -> Response:
        if console.auth.session(request.cookies.get(SESSION_COOKIE)):
            return RedirectResponse("/", status_code=303)
        return render_login()

    async def login(request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        client = request.client.host if request.client else "unknown"
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return fail(411, "send the password as a form with a Content-Length")
        if int(length) > MAX_LOGIN_BODY:
            return fail(413, f"a login form is at most {MAX_LOGIN_BODY} bytes")
        try:
            console.auth.check_login(client)
            async with request.form(max_files=0, max_fields=8, max_part_size=4096) as form:
                password = str(form.get("password") or "")
            sid, _ = await console.logins.run(console.auth.login, password, client)
        except LoginRefused as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            log.warning("console login refused for %s: %s", client, exc.reason)
            if wants_json:
                return fail(exc.status, exc.reason, headers)
            return render_login(exc.reason, exc.status, headers)
        response: Response = ok() if wants_json else RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", secure=console.secure, path="/")
        return response

    async def logout(request: Request) -> Response:
        console.auth.logout(request.scope["state"].get("session_id"))
        response = ok()
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def index(request: Request) -> Response:
        session: Session | None = request.scope["state"].get("session")
        page = index_page.replace("{{csrf_token}}", html.escape(session.csrf if session else ""))
        return HTMLResponse(page.replace("{{fingerprint}}", html.escape(console.fingerprint or "")))

    async def server_ready(request: Request) -> Response:
        return ok()

    async def models(request: Request) -> Response:
        installed = await run_in_threadpool(console.store.list)
        camera = "connected" if console.node.camera_connected() else "not_connected"
        return ok(models=[m.to_json() for m in installed], loaded_model=console.node.model_name,
                  sensor_status={"camera_status": camera, "stereo_status": "not_connected",
                                 "lidar_status": "not_connected"})

    async def upload(request: Request) -> Response:
        if console.loading.lock.locked():
            raise ApiError(409, f"busy: {console.loading.job} of {console.loading.model!r} is still running")
        filename, archive = await receive_archive(request.headers.get("content-type", ""),
                                                  request.headers.get("content-length"), request.stream(),
                                                  console.state.uploads, console.limits.request_bytes)
        try:
            folder = await run_in_threadpool(console.install, archive, filename)
        finally:
            archive.unlink(missing_ok=True)
        log.info("console installed model %s", folder)
        return ok(message=f"Model {folder} uploaded and installed", model_folder_name=folder)

    async def delete_models(request: Request) -> Response:
        names = (await json_body(request)).get("filenames")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "filenames must be a non-empty list of model folder names")
        await run_in_threadpool(console.store.delete, names)
        return ok(message="Models deleted successfully from your vehicle")

    async def load_model(request: Request) -> Response:
        folder, model_name = request.path_params["folder"], request.path_params["model"]
        await run_in_threadpool(console.load, folder, model_name)
        return ok(message=f"Model {folder} loaded")

    async def is_model_loading(request: Request) -> Response:
        return JSONResponse(console.loading.to_json())

    async def drive_mode(request: Request) -> Response:
        mode = (await json_body(request)).get("drive_mode")
        if mode not in DRIVE_MODES:
            raise ApiError(400, f"drive_mode must be manual or auto, got {mode!r}")
        await run_in_threadpool(console.command, "set_mode", DRIVE_MODES[mode])
        return ok()

    async def start_stop(request: Request) -> Response:
        action = (await json_body(request)).get("start_stop")
        if action not in ("start", "stop"):
            raise ApiError(400, f"start_stop must be start or stop, got {action!r}")
        await run_in_threadpool(console.command, action)
        return ok()

    async def emergency_stop(request: Request) -> Response:
        console.emergency_stop()  # on the event loop: never queued behind the thread pool
        return ok(message="emergency stop: the car stays stopped until the next start")

    async def max_nav_throttle(request: Request) -> Response:
        """The autonomous speed limit, in percent."""
        percent = number(await json_body(request), "throttle", 0.0, 100.0)
        await run_in_threadpool(runtime.call, runtime.stack.control.core.set_max_speed, percent / 100.0)
        return ok()

    async def manual_drive(request: Request) -> Response:
        """DeepRacer convention: angle + = right, throttle - = forward; max_speed 0..1 sets the limit."""
        body = await json_body(request)
        angle, throttle = number(body, "angle", -1.0, 1.0), number(body, "throttle", -1.0, 1.0)
        max_speed = number(body, "max_speed", 0.0, 1.0)
        core = runtime.stack.control.core
        if core.state.mode is not Mode.MANUAL:
            raise ApiError(409, f"manual_drive needs manual mode; the car is in {core.state.mode.value} mode")
        stamp = console.node.now()
        await run_in_threadpool(runtime.call, core.set_manual_max_speed, max_speed)
        await run_in_threadpool(console.node.teleop, -angle, -throttle, stamp)
        return ok()

    async def set_calibration_mode(request: Request) -> Response:
        await run_in_threadpool(console.calibration.enter)
        return ok()

    async def get_calibration(request: Request) -> Response:
        return JSONResponse(console.calibration.get(request.path_params["kind"]))

    async def set_calibration(request: Request) -> Response:
        body = await json_body(request)
        await run_in_threadpool(console.calibration.set, request.path_params["kind"], body)
        return ok()

    async def adjust_wheels(request: Request) -> Response:
        body = await json_body(request)
        await run_in_threadpool(console.calibration.adjust, request.path_params["kind"], body)
        return ok()

    async def sensor_status(request: Request) -> Response:
        camera = "connected" if console.node.camera_connected() else "not_connected"
        return ok(camera_status=camera, stereo_status="not_connected", lidar_status="not_connected")

    async def battery_level(request: Request) -> Response:
        level = console.node.battery_level()
        if level is None:
            raise ApiError(503, "this car reports no battery level (no battery monitor in its diagnostics)")
        return ok(battery_level=level)

    async def status(request: Request) -> Response:
        snapshot = await run_in_threadpool(console.node.status)
        return JSONResponse({**snapshot, "loading": console.loading.to_json(), "fingerprint": console.fingerprint})

    async def camera(request: Request) -> Response:
        return StreamingResponse(mjpeg(cache, STREAM_FPS, console.stopping),
                                 media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    async def tokens(request: Request) -> Response:
        return ok(tokens=console.auth.tokens())

    async def create_token(request: Request) -> Response:
        name = (await json_body(request)).get("name", "")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "name the token (who or what uses it)")
        token_id, token = console.auth.create_token(name.strip())
        return ok(id=token_id, token=token)

    async def revoke_token(request: Request) -> Response:
        if not console.auth.revoke_token(request.path_params["token_id"]):
            raise ApiError(404, "no such token")
        return ok()

    async def teleop(websocket: WebSocket) -> None:
        await TeleopSession(websocket, console.node).run()

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return fail(exc.status, exc.reason)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return fail(exc.status_code, exc.detail)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("console request %s %s failed", request.method, request.url.path)
        return fail(500, f"internal error: {type(exc).__name__}: {exc}")

    write = ["PUT", "POST"]
    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", index, methods=["GET"]),
        Route("/api/server_ready", server_ready, methods=["GET"]),
        Route("/api/models", models, methods=["GET"]),
        Route("/api/uploadModels", upload, methods=write),
        Route("/api/deleteModels", delete_models, methods=write),
        Route("/api/models/{folder}/{model}", load_model, methods=write),
        Route("/api/isModelLoading", is_model_loading, methods=["GET"]),
        Route("/api/drive_mode", drive_mode, methods=write),
        Route("/api/start_stop", start_stop, methods=write),
        Route("/api/emergency_stop", emergency_stop, methods=write),
        Route("/api/max_nav_throttle", max_nav_throttle, methods=write),
        Route("/api/manual_drive", manual_drive, methods=write),
        Route("/api/set_calibration_mode", set_calibration_mode, methods=["GET", "POST"]),
        Route("/api/get_calibration/{kind}", get_calibration, methods=["GET"]),
        Route("/api/set_calibration/{kind}", set_calibration, methods=write),
        Route("/api/adjust_calibrating_wheels/{kind}", adjust_wheels, methods=write),
        Route("/api/get_sensor_status", sensor_status, methods=["GET"]),
        Route("/api/get_battery_level", battery_level, methods=["GET"]),
        Route("/api/status", status, methods=["GET"]),
        Route("/api/camera.mjpg", camera, methods=["GET"]),
        Route("/api/tokens", tokens, methods=["GET"]),
        Route("/api/tokens", create_token, methods=["POST"]),
        Route("/api/tokens/{token_id}", revoke_token, methods=["DELETE"]),
        WebSocketRoute("/api/teleop", teleop),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: api_error, HTTPException: http_error, Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers,
                     middleware=[Middleware(Gate, console=console, login_style=_style_hash(login_page))])
