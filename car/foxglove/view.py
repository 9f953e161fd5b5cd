"""The Foxglove view's core: bus messages in, Foxglove messages out (no I/O, no threads, no clock).

One Foxglove channel per thing to see, named after the bus topic it shows (a compressed camera keeps
image_transport's `/compressed` suffix). Standard Foxglove schemas where Foxglove has one (images, the 3D
scene), JSON with a JSON Schema otherwise, so Plot and Raw Messages panels read every field by name:

| channel | from | Foxglove message |
|---|---|---|
| /camera/image_raw/compressed | /camera/image_raw | foxglove.CompressedImage (JPEG) |
| /policy/input | /policy/input | foxglove.RawImage (32FC1, the values the model was fed) |
| /policy/output | /policy/output | JSON: kind, values, action (discrete: the argmax) |
| /policy/drive, /drive | the same topics | JSON: steering (rad, deg), speed (m/s) |
| /control/status | /diagnostics | JSON: mode, running, latched, emergency stop, watchdog, faults |
| /policy/domain_shift | /diagnostics (policy) | JSON: score, warning, uncertainty (a modular model's), infer_ms |
| /sim/scene | /sim/pose, /sim/track/* | foxglove.SceneUpdate: track lines, car, recent path |
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import cv2
import numpy as np
from foxglove import messages as fm

from car.messages import (
    ERROR,
    AckermannDriveStamped,
    DiagnosticArray,
    DiagnosticStatus,
    Float32MultiArray,
    Image,
    PolygonStamped,
    PoseStamped,
    Time,
)
from car.policy.introspect import DISCRETE_LABEL
from car.transport.wire import SIM_FRAME, SIM_TRACK_TOPICS

JPEG_QUALITY = 80
PATH_POINTS = 300  # the recent path: 20 s of frames at 15 fps
CAR_SIZE_M = (0.28, 0.2, 0.12)  # a 1/18 DeepRacer's body, roughly
TRACK_COLORS = {"center_line": (1.0, 0.85, 0.0, 1.0), "inner_border": (1.0, 1.0, 1.0, 1.0),
                "outer_border": (1.0, 1.0, 1.0, 1.0)}

NUMBER = {"type": ["number", "null"]}
DRIVE_SCHEMA = {"type": "object", "properties": {
    "stamp": NUMBER, "steering_rad": NUMBER, "steering_deg": NUMBER, "speed_mps": NUMBER}}
OUTPUT_SCHEMA = {"type": "object", "properties": {
    "kind": {"type": "string", "enum": ["discrete", "continuous"]}, "label": {"type": "string"},
    "values": {"type": "array", "items": {"type": "number"}}, "action": {"type": ["integer", "null"]}}}
STATUS_SCHEMA = {"type": "object", "properties": {
    "mode": {"type": ["string", "null"]}, "running": {"type": "boolean"}, "latched": {"type": ["string", "null"]},
    "emergency_stop": {"type": "boolean"}, "driving": {"type": "boolean"}, "watchdog": {"type": ["string", "null"]},
    "reason": {"type": "string"},
    "faults": {"type": "array", "items": {"type": "object", "properties": {
        "node": {"type": "string"}, "message": {"type": "string"}}}}}}
SHIFT_SCHEMA = {"type": "object", "properties": {"score": NUMBER, "warning": NUMBER, "uncertainty": NUMBER,
                                                 "infer_ms": NUMBER}}
JSON_SCHEMAS = {"/policy/output": OUTPUT_SCHEMA, "/policy/drive": DRIVE_SCHEMA, "/drive": DRIVE_SCHEMA,
                "/control/status": STATUS_SCHEMA, "/policy/domain_shift": SHIFT_SCHEMA}
CAMERA_CHANNEL, INPUT_CHANNEL, SCENE_CHANNEL = "/camera/image_raw/compressed", "/policy/input", "/sim/scene"
CHANNELS = (CAMERA_CHANNEL, INPUT_CHANNEL, SCENE_CHANNEL, *JSON_SCHEMAS)


def _stamp(t: Time) -> fm.Timestamp:
    return fm.Timestamp(t.sec, t.nanosec)


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _color(rgba: tuple[float, float, float, float]) -> fm.Color:
    return fm.Color(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])


def _pose(x: float, y: float, qz: float = 0.0, qw: float = 1.0) -> fm.Pose:
    return fm.Pose(position=fm.Vector3(x=x, y=y, z=0.0), orientation=fm.Quaternion(x=0.0, y=0.0, z=qz, w=qw))


class FoxgloveView:
    """Keeps what a view needs across messages (the track's lines, the recent path, each node's newest status)."""

    def __init__(self, path_points: int = PATH_POINTS, jpeg_quality: int = JPEG_QUALITY):
        self.jpeg_quality = jpeg_quality
        self.track: dict[str, fm.LinePrimitive] = {}
        self.path: deque[tuple[float, float]] = deque(maxlen=path_points)
        self.statuses: dict[str, DiagnosticStatus] = {}

    def camera(self, msg: Image) -> fm.CompressedImage:
        """The bgr8 frame as JPEG; ValueError when OpenCV cannot encode it."""
        ok, jpeg = cv2.imencode(".jpg", msg.data, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError(f"cannot encode a {msg.data.shape} frame as JPEG")
        return fm.CompressedImage(timestamp=_stamp(msg.header.stamp), frame_id=msg.header.frame_id,
                                  data=jpeg.tobytes(), format="jpeg")

    @staticmethod
    def model_input(msg: Image) -> fm.RawImage:
        """The model's input (32FC1) as it is: Foxglove's Image panel maps the values to grey."""
        data = np.ascontiguousarray(msg.data, np.dtype("<f4"))
        return fm.RawImage(timestamp=_stamp(msg.header.stamp), frame_id=msg.header.frame_id, width=msg.width,
                           height=msg.height, encoding=msg.encoding, step=msg.step, data=data.tobytes())

    @staticmethod
    def policy_output(msg: Float32MultiArray) -> dict[str, Any]:
        label = msg.dim[0].label if msg.dim else ""
        discrete = label == DISCRETE_LABEL
        values = [float(v) for v in msg.data]
        action = int(np.argmax(values)) if discrete and values else None
        return {"kind": "discrete" if discrete else "continuous", "label": label, "values": values, "action": action}

    @staticmethod
    def drive(msg: AckermannDriveStamped) -> dict[str, Any]:
        steering = float(msg.drive.steering_angle)
        return {"stamp": msg.header.stamp.to_seconds(), "steering_rad": steering,
                "steering_deg": math.degrees(steering), "speed_mps": float(msg.drive.speed)}

    def diagnostics(self, msg: DiagnosticArray) -> dict[str, dict[str, Any]]:
        """The control status and the policy's monitors (car.policy.warning) after this array (channel -> message)."""
        for status in msg.status:
            self.statuses[status.name] = status
        control, policy = self.statuses.get("control"), self.statuses.get("policy")
        value = (lambda key: control.value(key)) if control else (lambda key: None)
        faults = [{"node": s.name, "message": s.message} for s in self.statuses.values() if s.level >= ERROR]
        out = {"/control/status": {
            "mode": value("mode"), "running": value("running") == "true", "latched": value("latched") or None,
            "emergency_stop": value("emergency_stop") == "true", "driving": value("driving") == "true",
            "watchdog": value("watchdog"), "reason": control.message if control else "control not heard yet",
            "faults": faults}}
        if policy is not None:
            out["/policy/domain_shift"] = {key: _float(policy.value(name)) for key, name in (
                ("score", "domain_shift"), ("warning", "warning"), ("uncertainty", "uncertainty"),
                ("infer_ms", "infer_ms"))}
        return out

    def track_line(self, topic: str, msg: PolygonStamped) -> fm.SceneUpdate:
        """The track entity with this line (one of SIM_TRACK_TOPICS) replaced."""
        name = next(name for name, line_topic in SIM_TRACK_TOPICS.items() if line_topic == topic)
        self.track[name] = fm.LinePrimitive(
            type=fm.LinePrimitiveLineType.LineStrip, thickness=0.05 if name != "center_line" else 0.02,
            points=[fm.Point3(x=p.x, y=p.y, z=0.0) for p in msg.points], color=_color(TRACK_COLORS[name]))
        return fm.SceneUpdate(entities=[fm.SceneEntity(
            timestamp=_stamp(msg.header.stamp), frame_id=SIM_FRAME, id="track", lines=list(self.track.values()))])

    def pose(self, msg: PoseStamped) -> fm.SceneUpdate:
        """The car at its pose, and its path so far."""
        p, q = msg.position, msg.orientation
        self.path.append((p.x, p.y))
        stamp = _stamp(msg.header.stamp)
        length, width, height = CAR_SIZE_M
        car = fm.SceneEntity(
            timestamp=stamp, frame_id=SIM_FRAME, id="car",
            cubes=[fm.CubePrimitive(pose=_pose(p.x, p.y, q.z, q.w), size=fm.Vector3(x=length, y=width, z=height),
                                    color=_color((0.9, 0.1, 0.1, 1.0)))],
            arrows=[fm.ArrowPrimitive(pose=_pose(p.x, p.y, q.z, q.w), shaft_length=0.25, shaft_diameter=0.03,
                                      head_length=0.1, head_diameter=0.08, color=_color((1.0, 0.5, 0.0, 1.0)))])
        path = fm.SceneEntity(timestamp=stamp, frame_id=SIM_FRAME, id="path", lines=[fm.LinePrimitive(
            type=fm.LinePrimitiveLineType.LineStrip, thickness=0.03,
            points=[fm.Point3(x=x, y=y, z=0.01) for x, y in self.path], color=_color((0.2, 0.6, 1.0, 1.0)))])
        return fm.SceneUpdate(entities=[car, path])
