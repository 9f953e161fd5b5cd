"""The driving routes: the DeepRacer console's drive mode, start/stop, autonomous speed limit and
manual drive; the emergency stop; the WebSocket teleop channel (car.console.teleop)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from car.console import bodies
from car.console.errors import ApiError
from car.console.gate import credential
from car.console.live import LiveConnections
from car.console.responses import ok
from car.console.service import ConsoleService
from car.console.teleop import TeleopSession

DRIVE_MODES = {"manual": "manual", "auto": "autonomous", "autonomous": "autonomous"}


async def drive_mode(request: Request) -> Response:
    mode = bodies.choice(await bodies.read_object(request.stream()), "drive_mode", list(DRIVE_MODES))
    await run_in_threadpool(ConsoleService.of(request).command, "set_mode", DRIVE_MODES[mode])
    return ok()


async def start_stop(request: Request) -> Response:
    action = bodies.choice(await bodies.read_object(request.stream()), "start_stop", ["start", "stop"])
    await run_in_threadpool(ConsoleService.of(request).command, action)
    return ok()


async def emergency_stop(request: Request) -> Response:
    await ConsoleService.of(request).emergency_stop("api")  # on the event loop: never queued behind the thread pool
    return ok(message="emergency stop: the car stays stopped until the next start")


async def max_nav_throttle(request: Request) -> Response:
    """The autonomous speed limit, in percent."""
    percent = bodies.number(await bodies.read_object(request.stream()), "throttle", 0.0, 100.0)
    await run_in_threadpool(ConsoleService.of(request).command, "set_max_speed", percent / 100.0)
    return ok()


async def manual_drive(request: Request) -> Response:
    """DeepRacer convention: angle + = right, throttle - = forward; max_speed 0..1 sets the limit."""
    service = ConsoleService.of(request)
    body = await bodies.read_object(request.stream())
    angle, throttle = bodies.number(body, "angle", -1.0, 1.0), bodies.number(body, "throttle", -1.0, 1.0)
    max_speed = bodies.number(body, "max_speed", 0.0, 1.0)
    if service.node.mode != "manual":
        raise ApiError(409, f"manual_drive needs manual mode; the car is in {service.node.mode} mode")
    stamp = service.node.now()
    await run_in_threadpool(service.command, "set_manual_max_speed", max_speed)
    await run_in_threadpool(service.node.teleop, -angle, -throttle, stamp)
    return ok()


async def teleop(websocket: WebSocket) -> None:
    service = ConsoleService.of(websocket)
    async with LiveConnections.of(websocket).hold(credential(websocket)) as held:
        await TeleopSession(websocket, service.node, held.ended, service.emergency_stop).run()


ROUTES = [
    Route("/api/drive_mode", drive_mode, methods=["PUT", "POST"]),
    Route("/api/start_stop", start_stop, methods=["PUT", "POST"]),
    Route("/api/emergency_stop", emergency_stop, methods=["PUT", "POST"]),
    Route("/api/max_nav_throttle", max_nav_throttle, methods=["PUT", "POST"]),
    Route("/api/manual_drive", manual_drive, methods=["PUT", "POST"]),
    WebSocketRoute("/api/teleop", teleop),
]
