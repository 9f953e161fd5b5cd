"""`model_metadata.json`, every schema version AWS DeepRacer and its community tools have written."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_FILE = "model_metadata.json"
CAMERA_SENSORS = ("FRONT_FACING_CAMERA", "LEFT_CAMERA", "STEREO_CAMERAS", "OBSERVATION")
KNOWN_SENSORS = CAMERA_SENSORS + ("LIDAR", "SECTOR_LIDAR", "DISCRETIZED_SECTOR_LIDAR")
ALGORITHMS = ("clipped_ppo", "sac")
# Sensors a car with one front camera can feed; LEFT_CAMERA and OBSERVATION are older names for it.
SINGLE_CAMERA = ("FRONT_FACING_CAMERA", "LEFT_CAMERA", "OBSERVATION")


class MetadataError(ValueError):
    """model_metadata.json cannot be used; the message is the one-line reason."""


@dataclass(frozen=True)
class Action:
    steering_deg: float
    speed: float


@dataclass(frozen=True)
class Range:
    low: float
    high: float


@dataclass(frozen=True)
class ModelMetadata:
    """Parsed metadata; legacy files without type or algorithm are discrete clipped_ppo, and
    without `sensor` have the legacy single camera OBSERVATION (the stock console's "Camera")."""

    action_space_type: str
    actions: tuple[Action, ...]
    steering: Range | None
    speed: Range | None
    training_algorithm: str
    sensors: tuple[str, ...]
    neural_network: str
    version: str | None
    raw: dict[str, Any]

    @property
    def discrete(self) -> bool:
        return self.action_space_type == "discrete"

    @property
    def max_steering_deg(self) -> float:
        if self.discrete:
            return max(abs(a.steering_deg) for a in self.actions)
        return max(abs(self.steering.low), abs(self.steering.high))

    @property
    def max_speed(self) -> float:
        if self.discrete:
            return max(abs(a.speed) for a in self.actions)
        return max(abs(self.speed.low), abs(self.speed.high))

    @property
    def camera_sensor(self) -> str:
        """The sensor whose name appears in the frozen graph's input node."""
        for sensor in self.sensors:
            if sensor in CAMERA_SENSORS:
                return sensor
        raise MetadataError(f"no camera sensor in {list(self.sensors)}")

    def output_size(self) -> int:
        """Number of policy outputs: one per discrete action, or steering+speed means."""
        return len(self.actions) if self.discrete else 2


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetadataError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise MetadataError(f"{what} must be finite, got {value!r}")
    return float(value)


def _range(space: dict[str, Any], key: str) -> Range:
    part = space.get(key)
    if not isinstance(part, dict) or "low" not in part or "high" not in part:
        raise MetadataError(f"continuous action_space.{key} needs low and high")
    low = _number(part["low"], f"action_space.{key}.low")
    high = _number(part["high"], f"action_space.{key}.high")
    if low >= high:
        raise MetadataError(f"action_space.{key}: low {low} must be below high {high}")
    return Range(low, high)


def parse_metadata(data: Any) -> ModelMetadata:
    if not isinstance(data, dict):
        raise MetadataError("model_metadata.json must hold a JSON object")
    space = data.get("action_space")
    kind = data.get("action_space_type", "discrete")
    if kind not in ("discrete", "continuous"):
        raise MetadataError(f"action_space_type must be discrete or continuous, got {kind!r}")
    algorithm = data.get("training_algorithm", "clipped_ppo")
    if algorithm not in ALGORITHMS:
        raise MetadataError(f"training_algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    actions: tuple[Action, ...] = ()
    steering = speed = None
    if kind == "discrete":
        if not isinstance(space, list) or not space:
            raise MetadataError("discrete action_space must be a non-empty list")
        parsed = []
        for i, item in enumerate(space):
            if not isinstance(item, dict) or "steering_angle" not in item or "speed" not in item:
                raise MetadataError(f"action_space[{i}] needs steering_angle and speed")
            parsed.append(Action(_number(item["steering_angle"], f"action_space[{i}].steering_angle"),
                                 _number(item["speed"], f"action_space[{i}].speed")))
        # Output i is action_space[i]: the AWS simulator trains and the stock car decodes by list
        # position; an `index` key (written by deepracer-utils and the AWS console) is a label only.
        actions = tuple(parsed)
    else:
        if not isinstance(space, dict):
            raise MetadataError("continuous action_space must be an object with steering_angle and speed")
        steering = _range(space, "steering_angle")
        speed = _range(space, "speed")
    # Models from before the `sensor` key had the one camera, named "observation" in their graph.
    sensors = data.get("sensor", ["OBSERVATION"])
    if isinstance(sensors, str):
        sensors = [sensors]
    if not isinstance(sensors, list) or not sensors:
        raise MetadataError("sensor must be a non-empty list")
    for sensor in sensors:
        if sensor not in KNOWN_SENSORS:
            raise MetadataError(f"unknown sensor {sensor!r}; known: {', '.join(KNOWN_SENSORS)}")
    meta = ModelMetadata(
        action_space_type=kind,
        actions=actions,
        steering=steering,
        speed=speed,
        training_algorithm=algorithm,
        sensors=tuple(sensors),
        neural_network=str(data.get("neural_network", "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW")),
        version=None if data.get("version") is None else str(data["version"]),
        raw=data,
    )
    if meta.max_steering_deg == 0 and kind == "discrete" and len(actions) > 1 and meta.max_speed == 0:
        raise MetadataError("action_space has neither steering nor speed")
    return meta


def json_limit(exc: ValueError | RecursionError) -> str:
    """Why Python's JSON reader gave up on a text that is valid JSON, in words: an integer longer than
    its digit limit (`sys.get_int_max_str_digits`, ValueError) or nesting deeper than the stack."""
    return "it nests too deeply" if isinstance(exc, RecursionError) else "a number in it has too many digits"


def load_metadata(path: str | Path) -> ModelMetadata:
    """The one reader of a model_metadata.json file; every MetadataError it raises names the file."""
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"missing {METADATA_FILE}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MetadataError(f"cannot read {METADATA_FILE}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise MetadataError(f"cannot read {METADATA_FILE}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{METADATA_FILE} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit; nesting past the stack
        raise MetadataError(f"{METADATA_FILE} cannot be read: {json_limit(exc)}") from None
    try:
        return parse_metadata(data)
    except MetadataError as exc:
        raise MetadataError(f"{METADATA_FILE}: {exc}") from None


def unrunnable_reason(metadata: ModelMetadata) -> str | None:
    """Why a car with one front camera cannot feed this model, or None."""
    others = [s for s in metadata.sensors if s not in SINGLE_CAMERA]
    if others:
        return f"model needs {' and '.join(others)}; this car has one front camera"
    if len(metadata.sensors) > 1:
        return f"model needs {len(metadata.sensors)} cameras; this car has one front camera"
    return None
