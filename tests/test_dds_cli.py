"""Command-line errors of `racer car --transport dds` and `racer node`: each a one-line reason, exit 2, no traceback."""
import subprocess
import sys

import pytest

from dds_support import loopback_domain


def racer(*args):
    with loopback_domain() as env:
        return subprocess.run([sys.executable, "-m", "racer.cli", *args], capture_output=True, text=True, timeout=60,
                              env=env)


@pytest.mark.parametrize("args, reason", [
    (["car", "--transport", "dds"], "nothing to drive: pass --sim TRACK"),
    (["car", "--transport", "dds", "--sim", "reinvent_base", "--sim-rate", "0"], "--sim-rate must be positive"),
    (["car", "--sim", "reinvent_base", "--sim-rate", "2"], "--sim-rate needs --transport dds or ros"),
    (["car", "--transport", "dds", "--sim", "reinvent_base", "--console", "8080"], "expected HOST:PORT"),
    (["node", "recorder"], "the recorder needs --record DIR"),
    (["node", "sim"], "the sim node needs --track NAME"),
    (["node", "sim", "--track", "Monaco"], "unknown track"),
    (["node", "control", "--autostart"], "--autostart is for the simulator"),
    (["node", "policy", "--model", "/nonexistent/bundle"], "/nonexistent/bundle"),
    (["node", "camera", "--camera", "v4l2:/dev/video99"], "/dev/video99 does not exist"),
    (["node", "actuator", "--actuator", "servo:1"], "unknown actuator spec 'servo:1'"),
])
def test_bad_input_is_a_clear_error(args, reason):
    proc = racer(*args)
    assert proc.returncode == 2, proc.stderr
    assert reason.lower() in proc.stderr.lower()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, reason", [
    (["node", "camera", "--track", "reinvent_base"],
     "racer node camera: --track is not for the camera node; leave it out"),
    (["node", "actuator", "--model", "m", "--autostart"],
     "racer node actuator: --model and --autostart are not for the actuator node; leave them out"),
    (["node", "policy", "--sim-rate", "2"], "racer node policy: --sim-rate is not for the policy node; leave it out"),
    (["node", "camera", "--state-dir", "s"], "racer node camera: --state-dir is not for the camera node; leave it out"),
    (["node", "policy", "--calibration", "c.json", "--state-dir", "s"],
     "racer node policy: --calibration is not for the policy node; leave it out"),
])
def test_an_option_another_node_uses_is_refused(args, reason):
    proc = racer(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == reason


def test_a_broken_state_dir_calibration_stops_a_ros_sim_car_at_once(tmp_path):
    """On ros the control node serves the calibration (get/set_car_cal), simulated car or not: a file it cannot
    read stops `racer car` before any node starts, instead of a control node that fails at every restart."""
    (tmp_path / "calibration.json").write_text("{not json")
    proc = racer("car", "--transport", "ros", "--sim", "reinvent_base", "--state-dir", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"racer car: {tmp_path / 'calibration.json'}: not valid JSON")
