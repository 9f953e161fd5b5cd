"""The console's web app: the AWS DeepRacer device console's /api/* contract, the page, the stream.

Paths, request bodies and response shapes follow the DeepRacer console, so its habits and
scripts carry over; unlike it, a failure is a 4xx/5xx with {"success": false, "reason": ...}
and nothing answers success before it happened. Every route but /login and /api/server_ready
sits behind the session-or-token gate (car.console.gate), which is applied to the whole app, so a
new route cannot be added open by mistake; every body is read through car.console.bodies. Each
change a user makes (mode, start/stop, e-stop, model load, upload, calibration save) is logged as
one structured line (`events`).
"""
from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from car.console import bodies
from car.console.auth import MAX_TOKEN_LIFETIME_DAYS, TOKEN_LIFETIME_DAYS, LoginRefused, Session
from car.console.errors import ApiError
from car.console.events import event
from car.console.gate import Access, Gate, credential, style_hash
from car.console.live import LiveConnections
from car.console.responses import fail, ok
from car.console.service import ConsoleService
from car.console.stream import BOUNDARY, mjpeg
from car.console.teleop import TeleopSession

log = logging.getLogger("racer.console")

STATIC = Path(__file__).resolve().parent / "static"
PAGES = Path(__file__).resolve().parent / "pages"
MAX_LOGIN_BODY = 4096
STREAM_FPS = 15.0
DRIVE_MODES = {"manual": "manual", "auto": "autonomous", "autonomous": "autonomous"}


@dataclass
class Console:
    """A console's parts; built by car.console.server."""

    service: ConsoleService
    access: Access
    live: LiveConnections


async def json_body(request: Request) -> dict[str, Any]:
    return await bodies.read_object(request.stream())


def create_app(console: Console) -> Starlette:
    login_page = (PAGES / "login.html").read_text()
    index_page = (PAGES / "index.html").read_text()
    service = console.service

    def render_login(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return HTMLResponse(login_page.replace("{{error}}", message), status_code=status, headers=headers)

    async def login_form(request: Request) -> Response:
        if console.access.auth.session(request.cookies.get(console.access.site.cookie)):
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
            console.access.auth.check_login(client)
            async with request.form(max_files=0, max_fields=8, max_part_size=4096) as form:
                password = str(form.get("password") or "")
            sid, _ = await console.access.logins.run(console.access.auth.login, password, client)
        except LoginRefused as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            log.warning("console login refused for %s: %s", client, exc.reason)
            if wants_json:
                return fail(exc.status, exc.reason, headers)
            return render_login(exc.reason, exc.status, headers)
        response: Response = ok() if wants_json else RedirectResponse("/", status_code=303)
        response.set_cookie(console.access.site.cookie, sid, httponly=True, samesite="strict", secure=console.access.site.secure, path="/")
        event("login", client=client)
        return response

    async def logout(request: Request) -> Response:
        """Ends the session (a token's request: nothing to end); its sockets close within 100 ms."""
        console.access.auth.logout(request.scope["state"].get("session_id"))
        response = ok()
        response.delete_cookie(console.access.site.cookie, path="/", secure=console.access.site.secure, httponly=True, samesite="strict")
        return response

    async def index(request: Request) -> Response:
        session: Session | None = request.scope["state"].get("session")
        page = index_page.replace("{{csrf_token}}", html.escape(session.csrf if session else ""))
        return HTMLResponse(page.replace("{{fingerprint}}", html.escape(console.access.site.fingerprint or "")))

    async def server_ready(request: Request) -> Response:
        return ok()

    async def models(request: Request) -> Response:
        installed = await run_in_threadpool(service.store.list)
        return ok(models=[m.to_json() for m in installed], loaded_model=service.node.model_name,
                  sensor_status=service.sensor_status())

    async def upload(request: Request) -> Response:
        """One upload at a time, from the first byte of its body to its install (409 for another)."""
        folder = await service.upload(request.headers.get("content-type", ""), request.headers.get("content-length"),
                                      request.stream())
        return ok(message=f"Model {folder} uploaded and installed", model_folder_name=folder)

    async def delete_models(request: Request) -> Response:
        names = bodies.text_list(await json_body(request), "filenames", 100, 64)
        await run_in_threadpool(service.delete, names)
        event("models_deleted", models=names)
        return ok(message="Models deleted successfully from your vehicle")

    async def load_model(request: Request) -> Response:
        folder, model_name = request.path_params["folder"], request.path_params["model"]
        await run_in_threadpool(service.load, folder, model_name)
        return ok(message=f"Model {folder} loaded")

    async def is_model_loading(request: Request) -> Response:
        return JSONResponse(service.loading.to_json())

    async def drive_mode(request: Request) -> Response:
        mode = bodies.choice(await json_body(request), "drive_mode", list(DRIVE_MODES))
        await run_in_threadpool(service.command, "set_mode", DRIVE_MODES[mode])
        return ok()

    async def start_stop(request: Request) -> Response:
        action = bodies.choice(await json_body(request), "start_stop", ["start", "stop"])
        await run_in_threadpool(service.command, action)
        return ok()

    async def emergency_stop(request: Request) -> Response:
        await service.emergency_stop("api")  # on the event loop: never queued behind the thread pool
        return ok(message="emergency stop: the car stays stopped until the next start")

    async def max_nav_throttle(request: Request) -> Response:
        """The autonomous speed limit, in percent."""
        percent = bodies.number(await json_body(request), "throttle", 0.0, 100.0)
        await run_in_threadpool(service.command, "set_max_speed", percent / 100.0)
        return ok()

    async def manual_drive(request: Request) -> Response:
        """DeepRacer convention: angle + = right, throttle - = forward; max_speed 0..1 sets the limit."""
        body = await json_body(request)
        angle, throttle = bodies.number(body, "angle", -1.0, 1.0), bodies.number(body, "throttle", -1.0, 1.0)
        max_speed = bodies.number(body, "max_speed", 0.0, 1.0)
        if service.node.mode != "manual":
            raise ApiError(409, f"manual_drive needs manual mode; the car is in {service.node.mode} mode")
        stamp = service.node.now()
        await run_in_threadpool(service.command, "set_manual_max_speed", max_speed)
        await run_in_threadpool(service.node.teleop, -angle, -throttle, stamp)
        return ok()

    async def set_calibration_mode(request: Request) -> Response:
        await run_in_threadpool(service.calibration.enter)
        event("command", command="set_mode", args=["calibration"])
        return ok()

    async def get_calibration(request: Request) -> Response:
        return JSONResponse(service.calibration.get(request.path_params["kind"]))

    async def set_calibration(request: Request) -> Response:
        body = await json_body(request)
        await run_in_threadpool(service.calibration.set, request.path_params["kind"], body)
        event("calibration_saved", kind=request.path_params["kind"],
              values={key: body[key] for key in ("min", "mid", "max", "polarity")})
        return ok()

    async def adjust_wheels(request: Request) -> Response:
        body = await json_body(request)
        await run_in_threadpool(service.calibration.adjust, request.path_params["kind"], body)
        return ok()

    async def sensor_status(request: Request) -> Response:
        return ok(**service.sensor_status())

    async def battery_level(request: Request) -> Response:
        level = service.node.battery_level()
        if level is None:
            raise ApiError(503, "this car reports no battery level (no battery monitor in its diagnostics)")
        return ok(battery_level=level)

    async def status(request: Request) -> Response:
        snapshot = await run_in_threadpool(service.node.status)
        return JSONResponse({**snapshot, "loading": service.loading.to_json(), "fingerprint": console.access.site.fingerprint})

    async def camera(request: Request) -> Response:
        """The stream ends when the console stops or the credential it was opened with ends."""
        async def frames() -> AsyncIterator[bytes]:
            async with console.live.hold(credential(request)) as held:
                async for part in mjpeg(service.camera, STREAM_FPS, console.live.stopping, held.ended):
                    yield part

        return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    async def tokens(request: Request) -> Response:
        """A session sees every token; a token sees only itself."""
        own = credential(request)
        listed = console.access.auth.tokens()
        return ok(tokens=listed if own.kind == "session" else [t for t in listed if t["id"] == own.key])

    async def create_token(request: Request) -> Response:
        """{"name": who uses it, "days": lifetime 1..365 (default 90)} -> {id, token, expires}."""
        body = await json_body(request)
        name = bodies.text(body, "name", 80)
        days = bodies.optional_integer(body, "days", 1, MAX_TOKEN_LIFETIME_DAYS, TOKEN_LIFETIME_DAYS)
        token_id, token, expires = console.access.auth.create_token(name, days)
        event("token_created", id=token_id, name=name, expires=expires)
        return ok(id=token_id, token=token, expires=expires)

    async def revoke_token(request: Request) -> Response:
        """Revokes the token; sockets opened with it close within 100 ms. A token revokes only itself."""
        own = credential(request)
        if own.kind == "token" and request.path_params["token_id"] != own.key:
            raise ApiError(403, "an API token can revoke only itself; log in to manage other tokens")
        if not console.access.auth.revoke_token(request.path_params["token_id"]):
            raise ApiError(404, "no such token")
        event("token_revoked", id=request.path_params["token_id"])
        return ok()

    async def teleop(websocket: WebSocket) -> None:
        async with console.live.hold(credential(websocket)) as held:
            await TeleopSession(websocket, service.node, held.ended, service.emergency_stop).run()

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
                     middleware=[Middleware(Gate, access=console.access, login_style=style_hash(login_page))])
