"""The car's configuration: one frozen value, resolved once from the command line and the ROS 2 parameter file.

Every option has one default, the field's default below. `resolve_config` fills each from the command line's
value when given, else the parameter file's (`ros__parameters` format, launch/params/car.yaml by default: a
node's own section over the `/**` wildcard; an empty string counts as unset), else that default. The nodes
(`car.graph`, `car.console`) and the processes that start them (`racer.processes`) read this value, never
the file or the command line again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from car.yamlfile import read_yaml

DEFAULT_PARAMS = Path(__file__).resolve().parent.parent / "launch" / "params" / "car.yaml"
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"  # the bundled model
NODES = ("camera", "policy", "control", "actuator", "console", "recorder")

# The safety promise (docs/architecture.md, Safety): a stale input puts the outputs at neutral within 250 ms
# of the last command. The timeout plus control's 10 ms tick and, across processes, the hop to the actuator
# must fit in that budget, so a policy command, a camera frame or a /drive goes stale after 200 ms.
STALE_INPUT_S = 0.2
# The teleop (and calibration wizard) deadman: a held stick repeats well within it (the console's own
# deadman is 180 ms).
TELEOP_DEADMAN_S = 0.25
CONSOLE_ADDRESS = "127.0.0.1:8080"  # the console node's, and `racer demo`'s, when none is given
FOXGLOVE_ADDRESS = "127.0.0.1:8765"  # the foxglove node's when none is given


@dataclass(frozen=True)
class CameraParams:
    """The camera node's section: `source` a camera spec (sim | v4l2:/dev/videoN | file: | images: | bag:),
    `fps` frames per second (also the simulator's render rate)."""

    source: str = "sim"
    fps: float = 15.0


@dataclass(frozen=True)
class ControlParams:
    """The control node's section (timeouts in seconds on the node clock, speed settings 0..1) and the vehicle
    constants every node converts with (`/**`: rad at full servo travel, m/s at full throttle, open loop)."""

    policy_timeout_s: float = STALE_INPUT_S
    teleop_timeout_s: float = TELEOP_DEADMAN_S
    camera_timeout_s: float = STALE_INPUT_S
    max_speed: float = 0.5
    manual_max_speed: float = 0.5
    max_steering_rad: float = 0.5236
    max_speed_mps: float = 4.0


@dataclass(frozen=True)
class ActuatorParams:
    """The actuator node's section: `spec` a driver spec (sim | pwm-sysfs[:DIR] | pca9685:BUS:ADDR | maestro:PORT),
    `calibration` a DeepRacer calibration.json used unless the state dir has one (None: the stock file, else
    factory values), `timeout_s` no /drive for this long puts it at neutral (also the DDS deadline on /drive)."""

    spec: str = "sim"
    calibration: Path | None = None
    timeout_s: float = STALE_INPUT_S


@dataclass(frozen=True)
class CarConfig:
    """What `racer car`, `racer node` and `racer demo` run: the nodes' sections, then the run's own options.

    `console` is the console's HOST:PORT (None: no console; the console node itself serves on
    CONSOLE_ADDRESS then), `console_names` more DNS names it answers to; `foxglove` the live view's HOST:PORT;
    `state_dir` the car's state (models, password, calibration; None: the console's default); `record` a
    directory for a rosbag2; `sim` a simulator track (None: hardware), `sim_rate` simulated seconds per wall
    second, `sim_time` follow the simulator's /clock; `ros_args` what ros2 launch adds; `params_file` the
    parameter file it was resolved from (handed on to node processes; None: the shipped one).
    """

    camera: CameraParams = CameraParams()
    model: Path = DEFAULT_MODEL
    control: ControlParams = ControlParams()
    actuator: ActuatorParams = ActuatorParams()
    console: str | None = None
    console_names: tuple[str, ...] = ()
    foxglove: str | None = None
    state_dir: Path | None = None
    record: Path | None = None
    transport: str = "local"
    sim: str | None = None
    sim_rate: float = 1.0
    sim_time: bool = False
    autostart: bool = False
    params_file: Path | None = None
    ros_args: tuple[str, ...] = ()


def resolve_config(params_file: str | Path | None = None, *, camera: str | None = None, actuator: str | None = None,
                   calibration: str | Path | None = None, model: str | Path | None = None,
                   console: str | None = None, **run: Any) -> CarConfig:
    """The configuration from command-line values (None: not given) over the parameter file over the defaults.

    `console="off"` is no console whatever the file says; `run` sets CarConfig's run options (transport, sim,
    state_dir, console_names as a tuple, ...) as given. ValueError (one line, naming the file and the key)
    for a file that cannot be read, an unknown node, or a value of the wrong type.
    """
    path = Path(params_file) if params_file else DEFAULT_PARAMS
    params = load_params(path)
    where = f"parameters {path}"
    cam = _section(CameraParams, params["camera"], f"{where}: camera")
    act = _section(ActuatorParams, params["actuator"], f"{where}: actuator")
    from_file = params["console"].get("address") or None
    resolved = CarConfig(
        camera=replace(cam, source=camera or cam.source),
        model=Path(model or params["policy"].get("model") or DEFAULT_MODEL),
        control=_section(ControlParams, params["control"], f"{where}: control"),
        actuator=replace(act, spec=actuator or act.spec,
                         calibration=Path(calibration) if calibration else act.calibration),
        console=None if console == "off" else console or from_file,
        params_file=Path(params_file) if params_file else None)
    return replace(resolved, **run)


def _section(kind: type, values: dict[str, Any], where: str) -> Any:
    """`kind` from a node's parameters: its own keys, typed (other keys are other nodes' or ROS 2's)."""
    typed: dict[str, Any] = {}
    for f in fields(kind):
        value = values.get(f.name)
        if value is None or value == "":
            continue  # unset: the default
        if isinstance(f.default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}.{f.name} must be a number, got {value!r}")
            value = float(value)
        elif not isinstance(value, str):
            raise ValueError(f"{where}.{f.name} must be a string, got {value!r}")
        elif f.name == "calibration":
            value = Path(value)
        typed[f.name] = value
    return kind(**typed)


def load_params(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Per-node parameters with the `/**` wildcard section merged under each node's own."""
    path = Path(path) if path else DEFAULT_PARAMS
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"parameters {path}: expected a mapping of node names")
    common = _ros_parameters(data, "/**", path)
    out = {}
    for node in NODES:
        out[node] = {**common, **_ros_parameters(data, node, path)}
    unknown = sorted(set(data) - set(NODES) - {"/**"})
    if unknown:
        raise ValueError(f"parameters {path}: unknown node(s) {', '.join(unknown)}")
    return out


def _ros_parameters(data: dict, node: str, path: Path) -> dict[str, Any]:
    section = data.get(node) or {}
    if not isinstance(section, dict) or set(section) - {"ros__parameters"}:
        raise ValueError(f"parameters {path}: {node} must hold only ros__parameters")
    params = section.get("ros__parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"parameters {path}: {node}.ros__parameters must be a mapping")
    return params
