"""The car's console API as the laptop tools use it: one method per `/api` route, typed answers.

Paths, bodies and answers are the AWS DeepRacer device console's with racer's additions
(`car/console/`); the connection under it (pinned TLS, the API token) is `racer.laptop.client`.
Every method raises ClientError, "<the car's reason> (HTTP <status>)", when the car refuses.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from websockets.sync.client import ClientConnection

from calibration.wizard import Kind, OutputCalibration
from racer.laptop.client import CarAddress, CarClient, ClientError, Response

DriveMode = Literal["manual", "auto", "autonomous"]


@dataclass(frozen=True)
class Loading:
    """/api/isModelLoading: the running or last install/load job. `state` is "loading" while `job`
    ("install" or "load") of `model` runs (at `stage`, `progress` percent), then "loaded", "installed"
    or "error" (with `reason`)."""

    state: str
    job: str
    model: str
    stage: str
    progress: int
    reason: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Loading:
        return cls(state=body.get("isModelLoading", ""), job=body.get("job") or "", model=body.get("model") or "",
                   stage=body.get("stage") or "", progress=body.get("progress", 0), reason=body.get("reason"))


@dataclass(frozen=True)
class Status:
    """/api/status: what the car does now. `mode` manual|autonomous|calibration; `running` (autonomous
    started); `driven_by` who moves the car ("teleop", ... or None); `max_speed` 0..1; `fps` camera frames
    per second; `latency_ms` frame to command (autonomous only); `steering`, `throttle` the last command
    (-1..1, + = left / forward); `watchdog` and `reason` control's state and why; the monitors' scores
    when published. `body` is the answer as the car sent it (`racer status --json` prints it)."""

    mode: str
    running: bool
    driven_by: str | None
    max_speed: float
    model: str | None
    loading: Loading
    camera: str
    fps: float
    latency_ms: float | None
    steering: float
    throttle: float
    watchdog: str
    reason: str
    battery_level: float | None
    domain_shift: float | None
    uncertainty: float | None
    warning: float | None
    caution: str | None  # "slowing" or "off" for a model with a caution, else None
    body: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Status:
        try:
            return cls(mode=body["mode"], running=body["running"], driven_by=body.get("driven_by"),
                       max_speed=body["max_speed"], model=body["model"], loading=Loading.from_json(body["loading"]),
                       camera=body["camera"], fps=body["fps"], latency_ms=body.get("latency_ms"),
                       steering=body["command"]["steering"], throttle=body["command"]["throttle"],
                       watchdog=body["watchdog"], reason=body["reason"], battery_level=body.get("battery_level"),
                       domain_shift=body.get("domain_shift"), uncertainty=body.get("uncertainty"),
                       warning=body.get("warning"), caution=body.get("caution"), body=body)
        except (KeyError, TypeError) as exc:
            raise ClientError(f"the car's status lacks {exc}: is this a racer car?") from None


@dataclass(frozen=True)
class InstalledModel:
    """An entry of /api/models: the model's folder on the car and its name."""

    folder: str
    name: str


class Teleop:
    """The teleop WebSocket: a command each send (-1..1, + = left / forward), the emergency stop, and
    what the car says back. Closing it (or losing it) puts the car at neutral."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    def __enter__(self) -> Teleop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.close()

    def drive(self, steering: float, throttle: float) -> None:
        self.ws.send(json.dumps({"steering": steering, "throttle": throttle}))

    def emergency_stop(self) -> None:
        self.ws.send(json.dumps({"estop": True}))

    def notices(self) -> list[str]:
        """The reasons of the refusals and deadman stops the car sent since the last call (without waiting);
        reading them also keeps the car's messages from piling up."""
        reasons: list[str] = []
        while True:
            try:
                message = json.loads(self.ws.recv(timeout=0))
            except TimeoutError:
                return reasons
            if message.get("type") in ("error", "deadman"):
                reasons.append(message["reason"])


class ConsoleApi:
    """One car's console, over `client`."""

    def __init__(self, client: CarClient):
        self.client = client

    @property
    def address(self) -> CarAddress:
        return self.client.address

    @staticmethod
    def _checked(response: Response) -> dict[str, Any]:
        if response.status >= 400 or response.body.get("success") is False:
            raise ClientError(f"{response.reason} (HTTP {response.status})")
        return response.body

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._checked(self.client.request(method, path, payload))

    def server_ready(self) -> bool:
        """GET /api/server_ready, with the login it takes: the first contact (the certificate pinned, the
        password asked for) happens here rather than in the middle of a longer call."""
        return self.client.request("GET", "/api/server_ready").status == 200

    def status(self) -> Status:
        return Status.from_json(self._call("GET", "/api/status"))

    def is_model_loading(self) -> Loading:
        return Loading.from_json(self._call("GET", "/api/isModelLoading"))

    def models(self) -> list[InstalledModel]:
        return [InstalledModel(folder=m["model_folder_name"], name=m["model_name"])
                for m in self._call("GET", "/api/models")["models"]]

    def upload_model(self, archive: Path, progress: Callable[[int, int], None]) -> str:
        """POST /api/uploadModels; returns once the car has checked, converted and installed it, with the
        model's folder on the car. `progress(sent, total)` is called as the bytes go."""
        return str(self._checked(self.client.upload(archive, progress))["model_folder_name"])

    def load_model(self, model: InstalledModel) -> None:
        self._call("PUT", f"/api/models/{model.folder}/{model.name}")

    def set_drive_mode(self, mode: DriveMode) -> None:
        self._call("POST", "/api/drive_mode", {"drive_mode": mode})

    def teleop(self) -> Teleop:
        """The teleop channel; the car needs manual mode (set_drive_mode) to follow it."""
        return Teleop(self.client.websocket("/api/teleop"))

    def set_calibration_mode(self) -> None:
        """Calibration mode (only from stopped): the wheels then follow adjust_calibrating_wheels."""
        self._call("POST", "/api/set_calibration_mode")

    def get_calibration(self, kind: Kind) -> OutputCalibration:
        body = self._call("GET", f"/api/get_calibration/{kind}")
        return OutputCalibration(mid=body["mid"], min=body["min"], max=body["max"], polarity=body["polarity"])

    def set_calibration(self, kind: Kind, values: OutputCalibration) -> None:
        self._call("PUT", f"/api/set_calibration/{kind}", dataclasses.asdict(values))

    def adjust_calibrating_wheels(self, kind: Kind, pwm: float) -> None:
        """One raw value in console units, held for the car's deadman (250 ms): repeat it to keep it."""
        self._call("PUT", f"/api/adjust_calibrating_wheels/{kind}", {"pwm": pwm})
