"""The status routes: the DeepRacer console's server_ready, sensor status and battery level; racer's
/api/status (mode, model, fps, latency, watchdog, domain-shift score, the install/load job) and the
live camera as MJPEG (car.console.stream)."""
from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from car.console.errors import ApiError
from car.console.gate import Access, credential
from car.console.live import LiveConnections
from car.console.responses import ok
from car.console.service import ConsoleService
from car.console.stream import BOUNDARY, mjpeg

STREAM_FPS = 15.0


async def server_ready(request: Request) -> Response:
    return ok()


async def get_sensor_status(request: Request) -> Response:
    return ok(**ConsoleService.of(request).sensor_status())


async def get_battery_level(request: Request) -> Response:
    level = ConsoleService.of(request).node.battery_level()
    if level is None:
        raise ApiError(503, "this car reports no battery level (no battery monitor in its diagnostics)")
    return ok(battery_level=level)


async def status(request: Request) -> Response:
    service = ConsoleService.of(request)
    snapshot = await run_in_threadpool(service.node.status)
    return JSONResponse({**snapshot, "loading": service.loading.to_json(),
                         "fingerprint": Access.of(request).site.fingerprint})


async def camera(request: Request) -> Response:
    """The stream ends when the console stops or the credential it was opened with ends."""
    live, frames = LiveConnections.of(request), ConsoleService.of(request).camera

    async def parts() -> AsyncIterator[bytes]:
        async with live.hold(credential(request)) as held:
            async for part in mjpeg(frames, STREAM_FPS, live.stopping, held.ended):
                yield part

    return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")


ROUTES = [
    Route("/api/server_ready", server_ready, methods=["GET"]),
    Route("/api/get_sensor_status", get_sensor_status, methods=["GET"]),
    Route("/api/get_battery_level", get_battery_level, methods=["GET"]),
    Route("/api/status", status, methods=["GET"]),
    Route("/api/camera.mjpg", camera, methods=["GET"]),
]
