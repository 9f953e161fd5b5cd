"""DeepRacer reward functions: the `params` dict the AWS simulator passes, and a user's own
`reward_function(params)` loaded from a .py file unchanged, so DeepRacer users keep their work."""
from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim2real.sim.track import Track
from sim2real.sim.world import StepInfo

RewardFunction = Callable[[dict[str, Any]], float]
# Axle-to-axle and wheel-to-wheel spacing of the DeepRacer chassis, for all_wheels_on_track.
WHEELBASE_M = 0.165
WHEEL_TRACK_M = 0.16


class RewardFunctionError(ValueError):
    """A reward file that does not load, lacks reward_function, or a reward that is not a number."""


def load_reward_function(path: str | Path) -> RewardFunction:
    """`reward_function` from a DeepRacer-style .py file, executed as its own module."""
    path = Path(path)
    if not path.is_file():
        raise RewardFunctionError(f"{path}: no such reward file")
    name = "racer_reward_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RewardFunctionError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any failure is a load error with its message
        raise RewardFunctionError(f"{path}: failed to load: {type(exc).__name__}: {exc}") from None
    function = getattr(module, "reward_function", None)
    if not callable(function):
        raise RewardFunctionError(f"{path}: defines no reward_function(params)")
    return function


class RewardCaller:
    """A user's reward function called as the AWS simulator calls it, its failures located.

    The module stays loaded (a reward function may keep state between calls). An exception, or a
    result that is not a finite number (None, NaN, a string, a bool), raises RewardFunctionError
    `FILE:LINE: reward_function ...` with the line that raised or returned it and the value."""

    def __init__(self, path: str | Path, function: RewardFunction | None = None) -> None:
        self.path = Path(path)
        self.function = function or load_reward_function(self.path)

    def __call__(self, params: dict[str, Any]) -> float:
        try:
            value = self.function(params)
        except Exception as exc:  # the user's code: whatever it raises stops training, located
            line = _line_in(exc.__traceback__, self.path)
            raise RewardFunctionError(f"{self.path}:{line}: reward_function raised "
                                      f"{type(exc).__name__}: {exc}") from None
        if _finite(value):
            return float(value)
        # training stops here, so one more call (traced, to find the return statement) changes nothing
        line = _return_line(self.function, params) or self.function.__code__.co_firstlineno
        raise RewardFunctionError(f"{self.path}:{line}: reward_function returned {value!r}; expected a finite number")


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _line_in(tb: Any, path: Path) -> int | str:
    """The deepest line of `path` in a traceback (where the user's code raised), else '?'."""
    lines = [frame.lineno for frame in traceback.extract_tb(tb) if Path(frame.filename) == path]
    return lines[-1] if lines else "?"


def _return_line(function: RewardFunction, params: dict[str, Any]) -> int | None:
    """The line of the `return` that ended a call of `function`, by tracing one call."""
    code, found = function.__code__, []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is code:
            if event == "return":
                found.append(frame.f_lineno)
            return tracer
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        function(params)
    except Exception:  # the traced call is for the line only
        pass
    finally:
        sys.settrace(previous)
    return found[-1] if found else None


def reward(function: RewardFunction, params: dict[str, Any]) -> float:
    """Call the user's function; its result must be a finite number."""
    value = function(params)
    if not _finite(value):
        raise RewardFunctionError(f"reward_function returned {value!r}; expected a finite number")
    return float(value)


def follow_centre_line(params: dict[str, Any]) -> float:
    """The default: reward staying near the centre line, in three bands, and nothing off track."""
    if params["is_offtrack"]:
        return 1e-3
    distance = params["distance_from_center"] / (0.5 * params["track_width"])
    if distance <= 0.2:
        return 1.0
    if distance <= 0.5:
        return 0.5
    return 0.1 if distance <= 1.0 else 1e-3


class ParamsBuilder:
    """Builds DeepRacer's `params` for one track (waypoints listed once, shared by every step)."""

    def __init__(self, track: Track) -> None:
        self.track = track
        self.waypoints = [(float(x), float(y)) for x, y in track.centre]

    def __call__(self, info: StepInfo, steps: int, steering_deg: float, speed_mps: float,
                 reversed_direction: bool = False) -> dict[str, Any]:
        """`steering_deg` (+ = left) and `speed_mps` are the agent's action, as in DeepRacer."""
        track = self.track
        index, s, lateral, _ = track.project(info.x, info.y)
        following = (index + 1) % track.waypoint_count if track.closed else min(index + 1, track.waypoint_count - 1)
        return {
            "all_wheels_on_track": self._wheels_on_track(info),
            "x": info.x,
            "y": info.y,
            "heading": math.degrees(info.yaw),
            "progress": info.progress,
            "steps": steps,
            "speed": speed_mps,
            "steering_angle": steering_deg,
            "track_width": 2.0 * float(track.half_width[index]),
            "track_length": track.length,
            "distance_from_center": abs(lateral),
            "is_left_of_center": lateral > 0.0,
            "waypoints": self.waypoints,
            "closest_waypoints": [index, following],
            "projection_distance": s,
            "is_offtrack": info.off_track,
            "is_reversed": reversed_direction,
            "is_crashed": False,
            "closest_objects": [0, 0],
            "objects_location": [],
            "objects_left_of_center": [],
            "object_in_camera": False,
            "objects_speed": [],
            "objects_heading": [],
            "objects_distance": [],
            "objects_distance_from_center": [],
        }

    def _wheels_on_track(self, info: StepInfo) -> bool:
        c, s = math.cos(info.yaw), math.sin(info.yaw)
        for along in (-0.5 * WHEELBASE_M, 0.5 * WHEELBASE_M):
            for side in (-0.5 * WHEEL_TRACK_M, 0.5 * WHEEL_TRACK_M):
                if not self.track.on_track(info.x + along * c - side * s, info.y + along * s + side * c, 0.0):
                    return False
        return True
