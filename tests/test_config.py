"""The car's configuration: the ROS 2 parameter file's merge rules, one default per option, flags over the
file, and every way the file can be wrong."""
from dataclasses import replace
from pathlib import Path

import pytest

from car.config import (
    DEFAULT_MODEL,
    DEFAULT_PARAMS,
    STALE_INPUT_S,
    ActuatorParams,
    CameraParams,
    CarConfig,
    ControlParams,
    load_params,
    resolve_config,
)


def test_shipped_params_merge_the_wildcard_into_each_node():
    params = load_params()
    assert params["actuator"]["max_speed_mps"] == 4.0 and params["policy"]["max_steering_rad"] == 0.5236
    assert params["control"]["max_speed"] == 0.5
    assert load_params(DEFAULT_PARAMS) == params


def test_node_value_overrides_wildcard(tmp_path):
    f = tmp_path / "car.yaml"
    f.write_text("/**:\n  ros__parameters:\n    max_speed_mps: 3.0\n"
                 "actuator:\n  ros__parameters:\n    max_speed_mps: 2.0\n")
    params = load_params(f)
    assert params["actuator"]["max_speed_mps"] == 2.0 and params["control"]["max_speed_mps"] == 3.0


@pytest.mark.parametrize("text, message", [
    ("camera: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping of node names"),
    ("planner:\n  ros__parameters: {}\n", "unknown node(s) planner"),
    ("control:\n  max_speed: 0.5\n", "control must hold only ros__parameters"),
    ("control:\n  ros__parameters: [1]\n", "control.ros__parameters must be a mapping"),
    ("control:\n  ros__parameters:\n    policy_timeout_s: fast\n",
     "control.policy_timeout_s must be a number, got 'fast'"),
    ("control:\n  ros__parameters:\n    max_speed: true\n", "control.max_speed must be a number, got True"),
    ("camera:\n  ros__parameters:\n    fps: .nan\n", "camera.fps must be a number, got nan"),
    ("actuator:\n  ros__parameters:\n    spec: 7\n", "actuator.spec must be a string, got 7"),
])
def test_bad_params_files_are_one_line_errors(tmp_path, text, message):
    """Each names the file and the node (and the key of a value of the wrong type)."""
    f = tmp_path / "car.yaml"
    f.write_text(text)
    with pytest.raises(ValueError) as caught:
        resolve_config(f)
    assert str(f) in str(caught.value) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_params_file_names_it(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.yaml: cannot read: No such file"):
        load_params(tmp_path / "nope.yaml")


def test_the_shipped_file_holds_the_defaults():
    """One default per option: the shipped parameter file says what car.config's fields say."""
    assert resolve_config() == CarConfig()
    assert resolve_config(DEFAULT_PARAMS) == replace(CarConfig(), params_file=DEFAULT_PARAMS)


def test_the_stale_input_timeout_fits_the_250_ms_stop():
    """The safety promise: neutral within 250 ms of the last command, after control's tick and the hop on."""
    from car.graph.multiprocess import TICK_HZ

    config = CarConfig()
    for timeout in (config.control.policy_timeout_s, config.control.camera_timeout_s, config.actuator.timeout_s):
        assert timeout == STALE_INPUT_S and timeout + 1.0 / TICK_HZ <= 0.25 - 0.03


def test_a_flag_wins_over_the_file_which_wins_over_the_default(tmp_path):
    f = tmp_path / "car.yaml"
    f.write_text("/**:\n  ros__parameters:\n    max_speed_mps: 3.0\n"
                 "camera:\n  ros__parameters:\n    source: v4l2:/dev/video0\n"
                 "control:\n  ros__parameters:\n    policy_timeout_s: 0.1\n    max_speed: 1\n"
                 "actuator:\n  ros__parameters:\n    spec: maestro:/dev/ttyACM0\n    calibration: /etc/cal.json\n"
                 "console:\n  ros__parameters:\n    address: 0.0.0.0:443\n")
    from_file = resolve_config(f)
    assert from_file.camera == CameraParams("v4l2:/dev/video0", 15.0)
    assert from_file.control == ControlParams(policy_timeout_s=0.1, max_speed=1.0, max_speed_mps=3.0)
    assert from_file.actuator == ActuatorParams("maestro:/dev/ttyACM0", Path("/etc/cal.json"), STALE_INPUT_S)
    assert (from_file.console, from_file.params_file, from_file.model) == ("0.0.0.0:443", f, DEFAULT_MODEL)
    given = resolve_config(f, camera="file:drive.mp4", actuator="sim", calibration="mine.json", model="m",
                           console="off", state_dir=tmp_path)
    assert (given.camera.source, given.actuator.spec, given.actuator.calibration) == ("file:drive.mp4", "sim",
                                                                                      Path("mine.json"))
    assert (given.model, given.console, given.state_dir) == (Path("m"), None, tmp_path)  # off beats the file

