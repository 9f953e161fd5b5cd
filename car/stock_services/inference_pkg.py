"""The stock DeepRacer model-load services, on the policy node: `/inference_pkg/load_model` (LoadModelSrv:
`artifact_path`, a model folder under the state dir's models/ or a file in one) and `/ctrl_pkg/model_state`
(ModelStateSrv: `model_name`, the folder's name). The other request fields describe the model; racer reads
them from the bundle's own model_metadata.json instead.

A load stops the car first, with a `stop` through control's request path (/control/command), so it stays
stopped until a user starts it; then the model is compiled on this node's thread (which sends no drive
commands meanwhile) and swapped in. A failed load keeps the old model. Unlike the stock node, `error` 0
means the model is loaded. The status goes on /diagnostics as `policy/model` ("loading", "loaded",
"error"), which control serves as /ctrl_pkg/is_model_loading.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from car.clock import Clock
from car.console.errors import ApiError
from car.console.models import ModelStore
from car.console.state import StateDir
from car.control.requests import control_request_json
from car.messages import DIAGNOSTICS_TOPIC, OK, WARN, DiagnosticArray, DiagnosticStatus, Header, KeyValue, Time
from car.policy.core import PolicyCore
from car.stock_services.ctrl_pkg import DONE, LOADING_KEY, MODEL_STATUS, PACKAGE, REFUSED, ServiceBus
from car.transport.wire import CONTROL_REQUEST_TOPIC

log = logging.getLogger("racer.services")

LOAD_MODEL = "/inference_pkg/load_model"
MODEL_STATE = "/ctrl_pkg/model_state"
REPORT_PERIOD_S = 1.0


def model_folder(artifact_path: Any, models: Path) -> str:
    """The folder under `models` that `artifact_path` names (the folder itself or a file in it; a relative
    path is taken from `models`); ValueError for anything else, links out of `models` included."""
    if not isinstance(artifact_path, str) or not artifact_path.strip():
        raise ValueError("artifact_path is empty: give a model folder under the state dir's models/")
    root = models.resolve()
    path = (models / artifact_path).resolve()  # an absolute artifact_path replaces `models` here
    if path == root or not path.is_relative_to(root):
        raise ValueError(f"artifact_path {artifact_path!r} is not a model folder under {models}")
    return path.relative_to(root).parts[0]


def named_folder(model_name: Any, models: Path) -> str:
    """ModelStateSrv's `model_name`: one folder under `models`, by its name alone; ValueError otherwise."""
    if isinstance(model_name, str) and "/" in model_name:
        raise ValueError(f"model_name {model_name!r} must be a folder name, not a path")
    return model_folder(model_name, models)


class ModelLoadService:
    """Serves both load services for a policy node on `bus`; models and their compile cache live in `state_dir`."""

    def __init__(self, bus: ServiceBus, clock: Clock, core: PolicyCore, state_dir: Path):
        state = StateDir(state_dir)
        self.models = state.models
        self.store = ModelStore(state.models, state.cache)
        self.core, self.clock = core, clock
        self.status, self.model, self.reason = "loaded", "", ""
        self._control = bus.publisher(CONTROL_REQUEST_TOPIC)
        self._diagnostics = bus.publisher(DIAGNOSTICS_TOPIC)
        bus.serve(LOAD_MODEL, f"{PACKAGE}/LoadModelSrv",
                  self._handler(lambda r: model_folder(r["artifact_path"], self.models)))
        bus.serve(MODEL_STATE, f"{PACKAGE}/ModelStateSrv",
                  self._handler(lambda r: named_folder(r["model_name"], self.models)))
        bus.timer(REPORT_PERIOD_S, self.publish_diagnostics, clock)  # a restarted control node learns it too

    def _handler(self, folder_of: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], dict[str, int]]:
        def handle(request: dict[str, Any]) -> dict[str, int]:
            try:
                folder = folder_of(request)
            except ValueError as exc:  # names no model: nothing happens, the car included
                log.info("model load refused: %s", exc)
                return {"error": REFUSED}
            return {"error": DONE if self.load(folder) else REFUSED}
        return handle

    def load(self, folder: str) -> bool:
        """Stop the car, then compile and swap in `folder`'s model; False (the old model kept) when it fails.
        A folder that is not there changes nothing, the car's motion included."""
        try:
            model = self.store.get(folder)
        except ApiError as exc:
            log.info("model load refused: %s", exc.reason)
            return False
        self._control(control_request_json("stop", id=LOAD_MODEL))
        self._report("loading", folder)
        try:
            policy = self.store.compile(folder, model.model_name)
            self.core.load(policy.model())
        except ApiError as exc:
            return self._report("error", folder, exc.reason)
        except (ValueError, OSError, RuntimeError) as exc:  # a bundle or OpenVINO that cannot run it
            return self._report("error", folder, f"{type(exc).__name__}: {exc}")
        return self._report("loaded", folder)

    def _report(self, status: str, folder: str, reason: str = "") -> bool:
        self.status, self.model, self.reason = status, folder, reason
        log.info("model %s: %s%s", folder, status, f" ({reason})" if reason else "")
        self.publish_diagnostics()
        return status != "error"

    def publish_diagnostics(self) -> None:
        self._diagnostics(DiagnosticArray(Header(Time.from_seconds(self.clock.now())), (DiagnosticStatus(
            level=WARN if self.status == "error" else OK, name=MODEL_STATUS, message=self.reason or self.status,
            values=(KeyValue(LOADING_KEY, self.status), KeyValue("model", self.model))),)))
