"""launch/car.launch.py, checked without ROS 2: the launch modules are stand-ins that record what the file declares."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from car.config import NODES, load_params
from racer.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "car.launch.py"
PARAMS = str(ROOT / "launch" / "params" / "car.yaml")


class Declared:
    """Any launch action: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture
def launch_module(monkeypatch):
    stubs = {
        "launch": {"LaunchDescription": Declared},
        "launch.actions": {"DeclareLaunchArgument": type("DeclareLaunchArgument", (Declared,), {}),
                           "OpaqueFunction": type("OpaqueFunction", (Declared,), {})},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (Declared,), {})},
    }
    for name, attrs in stubs.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    spec = importlib.util.spec_from_file_location("car_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch(module, **arguments):
    """Generate the description, resolve its arguments as `ros2 launch ... name:=value` would, return the nodes."""
    description = module.generate_launch_description()
    (entities,) = description.args
    defaults = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"]({**defaults, **arguments})


def test_hardware_graph_with_the_shared_parameter_file(launch_module):
    nodes = launch(launch_module)
    assert [n.kwargs["name"] for n in nodes] == ["camera", "policy", "control", "actuator"]
    for node in nodes:
        name = node.kwargs["name"]
        assert node.kwargs["executable"] == "racer" and node.kwargs["respawn"] is True
        assert node.kwargs["arguments"] == ["node", name, "--transport", "ros", "--config", PARAMS]
        assert node.kwargs["parameters"] == [PARAMS, {"use_sim_time": False}]
    params = load_params(PARAMS)  # the file the nodes read: a section for each launched node
    assert {n.kwargs["name"] for n in nodes} <= set(NODES) <= set(params)


def test_simulated_graph_follows_sim_time_and_records(launch_module):
    nodes = launch(launch_module, sim="reinvent_base", autostart="true", record="/data/bags", model="/m/bundle")
    by_name = {n.kwargs["name"]: n.kwargs for n in nodes}
    assert list(by_name) == ["sim", "camera", "policy", "control", "actuator", "recorder"]
    followers = [k for name, k in by_name.items() if name != "sim"]
    assert all(k["parameters"][1] == {"use_sim_time": True} and "--sim-time" in k["arguments"] for k in followers)
    assert by_name["sim"]["parameters"][1] == {"use_sim_time": False}  # it publishes /clock, on wall time
    assert by_name["sim"]["arguments"][-2:] == ["--track", "reinvent_base"]
    assert by_name["camera"]["arguments"][-2:] == ["--camera", "sim"]
    assert by_name["actuator"]["arguments"][-2:] == ["--actuator", "sim"]
    assert by_name["policy"]["arguments"][-2:] == ["--model", "/m/bundle"]
    assert by_name["control"]["arguments"][-1] == "--autostart"
    assert by_name["recorder"]["arguments"][-2:] == ["--record", "/data/bags"]


def test_every_launched_command_line_is_one_racer_accepts(launch_module):
    """launch_ros appends --ros-args to each node's arguments; `racer node` must take them."""
    parser = build_parser()
    for node in launch(launch_module, sim="reinvent_base", autostart="true", record="/data/bags"):
        name = node.kwargs["name"]
        args = parser.parse_args([*node.kwargs["arguments"], "--ros-args", "-r", f"__node:={name}",
                                  "--params-file", PARAMS])
        assert (args.command, args.name, args.transport) == ("node", name, "ros")
        assert args.ros_args == ["-r", f"__node:={name}", "--params-file", PARAMS]


def test_autostart_without_the_simulator_is_refused(launch_module):
    with pytest.raises(ValueError, match="autostart:=true needs sim:=TRACK"):
        launch(launch_module, autostart="true")
