"""launch/car.launch.py: what it declares (launch and launch_ros have no wheels, so stand-ins record it), and the
node command lines it produces, run as launch_ros would run them, on real rclpy: the car drives."""
import importlib.util
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

import ros_support  # noqa: F401  (first: without `make ros` it says so)
from car.config import NODES, load_params
from car.messages import CAMERA_TOPIC, DIAGNOSTICS_TOPIC, POLICY_TOPIC
from car.transport.ros import RosBus
from dds_support import Monitor, assert_it_drives, driving_model, free_port, loopback_domain, wait_for
from racer.cli import build_parser
from racer.laptop.client import CarAddress, CarClient, ClientError, KnownCars

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


def load_launch_file(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """launch/car.launch.py imported over stand-ins of the launch modules."""
    stubs: dict[str, dict[str, Any]] = {
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
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def launch_module(monkeypatch):
    return load_launch_file(monkeypatch)


def launch(module, **arguments):
    """Generate the description, resolve its arguments as `ros2 launch ... name:=value` would, return the nodes."""
    description = module.generate_launch_description()
    (entities,) = description.args
    defaults = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"]({**defaults, **arguments})


def test_hardware_graph_with_the_shared_parameter_file(launch_module):
    nodes = launch(launch_module)
    assert [n.kwargs["name"] for n in nodes] == ["camera", "policy", "control", "actuator", "console"]
    for node in nodes:
        name = node.kwargs["name"]
        assert node.kwargs["executable"] == "racer" and node.kwargs["respawn"] is True
        extra = ["--console", "0.0.0.0:443"] if name == "console" else []  # the stock console's port
        assert node.kwargs["arguments"] == ["node", name, "--transport", "ros", "--config", PARAMS, *extra]
        assert node.kwargs["parameters"] == [PARAMS, {"use_sim_time": False}]
    params = load_params(PARAMS)  # the file the nodes read: a section for each launched node
    assert {n.kwargs["name"] for n in nodes} <= set(NODES) <= set(params)


def test_the_console_node_shares_the_state_dir_and_model_and_can_be_left_out(launch_module):
    by_name = {n.kwargs["name"]: n.kwargs for n in launch(launch_module, state_dir="/var/lib/racer", model="/m/b")}
    assert by_name["console"]["arguments"][-6:] == ["--console", "0.0.0.0:443", "--model", "/m/b",
                                                     "--state-dir", "/var/lib/racer"]
    assert by_name["actuator"]["arguments"][-2:] == ["--state-dir", "/var/lib/racer"]  # the wizard's calibration
    for off in ("off", ""):
        assert "console" not in [n.kwargs["name"] for n in launch(launch_module, console=off)]


def test_the_foxglove_view_is_off_unless_asked_and_shares_the_state_dir(launch_module):
    assert "foxglove" not in [n.kwargs["name"] for n in launch(launch_module)]
    by_name = {n.kwargs["name"]: n.kwargs for n in launch(launch_module, sim="reinvent_base", foxglove="127.0.0.1:8765",
                                                           state_dir="/var/lib/racer")}
    assert by_name["foxglove"]["arguments"][-5:] == ["--sim-time", "--foxglove", "127.0.0.1:8765",
                                                      "--state-dir", "/var/lib/racer"]  # its API tokens


def test_simulated_graph_follows_sim_time_and_records(launch_module):
    nodes = launch(launch_module, sim="reinvent_base", autostart="true", record="/data/bags", model="/m/bundle")
    by_name = {n.kwargs["name"]: n.kwargs for n in nodes}
    assert list(by_name) == ["sim", "camera", "policy", "control", "actuator", "recorder", "console"]
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
    for node in launch(launch_module, sim="reinvent_base", autostart="true", record="/data/bags",
                       foxglove="127.0.0.1:8765"):
        name = node.kwargs["name"]
        args = parser.parse_args([*node.kwargs["arguments"], "--ros-args", "-r", f"__node:={name}",
                                  "--params-file", PARAMS])
        assert (args.subcommand, args.name, args.transport) == ("node", name, "ros")
        assert args.ros_args == ["-r", f"__node:={name}", "--params-file", PARAMS]


def test_autostart_without_the_simulator_is_refused(launch_module):
    with pytest.raises(ValueError, match="autostart:=true needs sim:=TRACK"):
        launch(launch_module, autostart="true")


def command_lines(nodes, work: Path) -> dict[str, list[str]]:
    """Each node's command line as launch_ros builds it: the executable from PATH, the arguments, then
    `--ros-args -r __node:=NAME` and one `--params-file` per parameter entry (a dict goes to a file first)."""
    racer = str(Path(sys.executable).with_name("racer"))
    lines = {}
    for node in nodes:
        name = node.kwargs["name"]
        params = []
        for i, entry in enumerate(node.kwargs["parameters"]):
            if isinstance(entry, dict):
                path = work / f"{name}_{i}.yaml"
                path.write_text(yaml.safe_dump({"/**": {"ros__parameters": entry}}))
                entry = str(path)
            params += ["--params-file", entry]
        lines[name] = [racer, *node.kwargs["arguments"], "--ros-args", "-r", f"__node:={name}", *params]
    return lines


def run_nodes(lines: dict[str, list[str]], work: Path) -> dict[str, subprocess.Popen]:
    procs = {}
    for name, argv in lines.items():
        with open(work / f"{name}.log", "w") as log:
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return procs


def console_answers(client: CarClient) -> bool:
    try:
        return client.request("GET", "/api/server_ready").status == 200
    except ClientError:
        return False


def stop_nodes(procs: dict[str, subprocess.Popen], work: Path) -> dict[str, int]:
    """SIGTERM every node, as launch does on Ctrl-C; their exit codes."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
        assert "Traceback" not in (work / f"{name}.log").read_text(), (work / f"{name}.log").read_text()[-2000:]
    return codes


def ros_node_names(monitor: Monitor) -> set[str]:
    """The node names in the ROS graph as the monitor (a RosBus) sees it."""
    return {name for name, _ in cast(RosBus, monitor.bus).node.get_node_names_and_namespaces()}


@pytest.mark.timeout(240)
def test_the_launched_command_lines_drive_the_car_on_real_rclpy(monkeypatch, tmp_path):
    """No autostart: a user starts the car at the launched console node, over HTTP."""
    model = str(driving_model())
    state = tmp_path / "state"
    subprocess.run([sys.executable, "-m", "racer.cli", "passwd", "--state-dir", str(state)], input="launch-pass-1\n",
                   text=True, check=True, capture_output=True)
    port = free_port()
    nodes = launch(load_launch_file(monkeypatch), sim="reinvent_base", model=model, console=f"127.0.0.1:{port}",
                   state_dir=str(state))
    with loopback_domain():
        monitor = Monitor((DIAGNOSTICS_TOPIC, CAMERA_TOPIC, POLICY_TOPIC), "ros")
        procs = run_nodes(command_lines(nodes, tmp_path), tmp_path)
        try:
            client = CarClient(CarAddress.parse(f"http://127.0.0.1:{port}"), lambda: "launch-pass-1", lambda _: None,
                               KnownCars(tmp_path / "cars.json"))
            wait_for(lambda: console_answers(client), 120, "the console node")
            wait_for(lambda: client.request("GET", "/api/status").body["mode"], 60, "control heard by the console")
            assert client.request("POST", "/api/drive_mode", {"drive_mode": "auto"}).status == 200
            assert client.request("POST", "/api/start_stop", {"start_stop": "start"}).status == 200
            assert_it_drives(monitor, 150, traced_share=0.5)
            # -r __node:=NAME took effect; a node's name reaches the monitor's graph some time after its topics
            launched = {"sim", "camera", "policy", "control", "actuator", "console"}
            wait_for(lambda: launched <= ros_node_names(monitor), 60, "every launched node's name in the ROS graph",
                     lambda: f": missing {sorted(launched - ros_node_names(monitor))}")
        finally:
            codes = stop_nodes(procs, tmp_path)
            monitor.close()
    assert codes == dict.fromkeys(procs, 0)
