"""The calibration routes of the DeepRacer console: calibration mode, and the steering (`angle`) and
throttle calibration read, saved and tried on the wheels (car.console.calibration)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from car.console import bodies
from car.console.events import event
from car.console.responses import ok
from car.console.service import ConsoleService


async def set_calibration_mode(request: Request) -> Response:
    await run_in_threadpool(ConsoleService.of(request).calibration.enter)
    event("command", command="set_mode", args=["calibration"])
    return ok()


async def get_calibration(request: Request) -> Response:
    return JSONResponse(ConsoleService.of(request).calibration.get(request.path_params["kind"]))


async def set_calibration(request: Request) -> Response:
    body = await bodies.read_object(request.stream())
    await run_in_threadpool(ConsoleService.of(request).calibration.set, request.path_params["kind"], body)
    event("calibration_saved", kind=request.path_params["kind"],
          values={key: body[key] for key in ("min", "mid", "max", "polarity")})
    return ok()


async def adjust_calibrating_wheels(request: Request) -> Response:
    body = await bodies.read_object(request.stream())
    await run_in_threadpool(ConsoleService.of(request).calibration.adjust, request.path_params["kind"], body)
    return ok()


ROUTES = [
    Route("/api/set_calibration_mode", set_calibration_mode, methods=["GET", "POST"]),
    Route("/api/get_calibration/{kind}", get_calibration, methods=["GET"]),
    Route("/api/set_calibration/{kind}", set_calibration, methods=["PUT", "POST"]),
    Route("/api/adjust_calibrating_wheels/{kind}", adjust_calibrating_wheels, methods=["PUT", "POST"]),
]
