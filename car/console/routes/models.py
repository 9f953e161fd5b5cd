"""The models routes of the DeepRacer console: list, upload (multipart `file`), delete and load, and
the install/load job's status (/api/isModelLoading)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from car.console import bodies
from car.console.events import event
from car.console.responses import ok
from car.console.service import ConsoleService


async def models(request: Request) -> Response:
    service = ConsoleService.of(request)
    installed = await run_in_threadpool(service.store.list)
    return ok(models=[m.to_json() for m in installed], loaded_model=service.node.model_name,
              sensor_status=service.sensor_status())


async def upload_models(request: Request) -> Response:
    """One upload at a time, from the first byte of its body to its install (409 for another)."""
    folder = await ConsoleService.of(request).upload(
        request.headers.get("content-type", ""), request.headers.get("content-length"), request.stream())
    return ok(message=f"Model {folder} uploaded and installed", model_folder_name=folder)


async def delete_models(request: Request) -> Response:
    names = bodies.text_list(await bodies.read_object(request.stream()), "filenames", 100, 64)
    await run_in_threadpool(ConsoleService.of(request).delete, names)
    event("models_deleted", models=names)
    return ok(message="Models deleted successfully from your vehicle")


async def load_model(request: Request) -> Response:
    folder, model_name = request.path_params["folder"], request.path_params["model"]
    await run_in_threadpool(ConsoleService.of(request).load, folder, model_name)
    return ok(message=f"Model {folder} loaded")


async def is_model_loading(request: Request) -> Response:
    return JSONResponse(ConsoleService.of(request).loading.to_json())


ROUTES = [
    Route("/api/models", models, methods=["GET"]),
    Route("/api/uploadModels", upload_models, methods=["PUT", "POST"]),
    Route("/api/deleteModels", delete_models, methods=["PUT", "POST"]),
    Route("/api/models/{folder}/{model}", load_model, methods=["PUT", "POST"]),
    Route("/api/isModelLoading", is_model_loading, methods=["GET"]),
]
