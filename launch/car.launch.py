"""ROS 2 launch description of the racer car graph: `ros2 launch racer car.launch.py` in the Docker image,
or `ros2 launch launch/car.launch.py` from a checkout on a machine with ROS 2.

Each node is `racer node NAME --transport ros`, a real rclpy node with the parameters of
launch/params/car.yaml (the file `racer car` reads too), respawned by launch when it dies as the
`racer car` supervisor would. Arguments: `params:=FILE`, `model:=BUNDLE`, `sim:=TRACK` (simulator
instead of hardware: sim world node, use_sim_time, sim camera and actuator), `autostart:=true`
(simulator only), `record:=DIR` (rosbag2 MCAP recorder), `console:=HOST:PORT` (the device console node,
by default on every interface at 443, HTTPS; `console:=off` leaves it out), `foxglove:=HOST:PORT` (the
live Foxglove view node, off by default; beyond loopback it needs the console's API tokens), `state_dir:=DIR`
(the console's models, password, certificate and API tokens, and the calibration the actuator applies).
"""
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PARAMS = Path(__file__).resolve().parent / "params" / "car.yaml"
ARGUMENTS = {
    "params": (str(PARAMS), "ROS 2 parameter YAML for every node"),
    "model": ("", "model bundle for the policy node (default: policy.model, else the bundled model)"),
    "sim": ("", "simulate this track instead of driving hardware"),
    "autostart": ("false", "start in autonomous mode (only with sim)"),
    "record": ("", "record a rosbag2 (MCAP) into this directory"),
    "console": ("0.0.0.0:443", "serve the device console on HOST:PORT (HTTPS unless loopback); off: no console"),
    "foxglove": ("off", "serve the live Foxglove view on HOST:PORT (e.g. 127.0.0.1:8765; beyond loopback only "
                        "with the console's API tokens); off: no view"),
    "state_dir": ("", "the car's state dir (models, password, calibration); empty: the default one"),
}
RESPAWN_DELAY_S = 0.5


def _node(name: str, params: str, sim_time: bool, *extra: str) -> Node:
    return Node(executable="racer", name=name, output="screen", respawn=True, respawn_delay=RESPAWN_DELAY_S,
                arguments=["node", name, "--transport", "ros", "--config", params,
                           *(["--sim-time"] if sim_time else []), *extra],
                parameters=[params, {"use_sim_time": sim_time}])


def graph_nodes(context) -> list[Node]:
    """The nodes for the resolved launch arguments."""
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params, track = value["params"], value["sim"]
    autostart = value["autostart"].lower() in ("true", "1", "yes")
    if autostart and not track:
        raise ValueError("autostart:=true needs sim:=TRACK: a real car starts only on a user action")
    sim = bool(track)
    model = ["--model", value["model"]] if value["model"] else []
    state_dir = ["--state-dir", value["state_dir"]] if value["state_dir"] else []
    nodes = [_node("sim", params, False, "--track", track)] if sim else []  # the clock the others follow
    nodes += [
        _node("camera", params, sim, *(["--camera", "sim"] if sim else [])),
        _node("policy", params, sim, *model),
        _node("control", params, sim, *(["--autostart"] if autostart else [])),
        _node("actuator", params, sim, *(["--actuator", "sim"] if sim else []), *state_dir),
    ]
    if value["record"]:
        nodes.append(_node("recorder", params, sim, "--record", value["record"]))
    if value["console"].lower() not in ("", "off", "false"):
        nodes.append(_node("console", params, sim, "--console", value["console"], *model, *state_dir))
    if value["foxglove"].lower() not in ("", "off", "false"):
        nodes.append(_node("foxglove", params, sim, "--foxglove", value["foxglove"], *state_dir))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, (default, text) in ARGUMENTS.items()),
        OpaqueFunction(function=graph_nodes),
    ])
